//! The UOF provider's HTTP API against a local stand-in of the provider (a real axum server on
//! 127.0.0.1:0: the one fake allowed, since no provider is reachable from here). The stand-in
//! checks the access token, records every request, and serves descriptions and fixtures; the
//! test plays the feed side by delivering the `snapshot_complete` of the request it recorded.
//! Over `https://`, a real TLS endpoint (tokio-rustls, a test CA's certificate for `localhost`)
//! stands in front of the stand-in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use feed::names::{DescriptionsSource, EventNames, NameStore, Namer};
use feed::recovery::{Action, DownReason, ProducerRecovery, RecoveryConfig, RequestIds};
use feed::uof_api::{ApiSettings, UofApi};

use crate::tls::{certificates, test_ca, tls_terminator, Certificates, TlsTerminator};

const TOKEN: &str = "secret-token";

#[derive(Debug, Clone)]
struct Recorded {
    method: &'static str,
    path: String,
    query: HashMap<String, String>,
}

#[derive(Default)]
struct Provider {
    requests: Mutex<Vec<Recorded>>,
    /// Recovery requests to refuse with 503 before accepting.
    refuse_next: Mutex<u32>,
    /// Whether the descriptions and fixture routes answer (false: 500).
    serving: Mutex<bool>,
}

type Shared = Arc<Provider>;

fn authorised(headers: &HeaderMap) -> bool {
    headers.get("x-access-token").and_then(|v| v.to_str().ok()) == Some(TOKEN)
}

async fn recovery(
    State(p): State<Shared>,
    Path(producer): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, &'static str) {
    if !authorised(&headers) {
        return (StatusCode::FORBIDDEN, "<response response_code=\"FORBIDDEN\"/>");
    }
    let path = format!("/v1/{producer}/recovery/initiate_request");
    p.requests.lock().unwrap().push(Recorded { method: "POST", path, query });
    let mut refuse = p.refuse_next.lock().unwrap();
    if *refuse > 0 {
        *refuse -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "busy");
    }
    (StatusCode::ACCEPTED, "<response response_code=\"ACCEPTED\"/>")
}

const MARKETS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<market_descriptions response_code="OK">
  <market id="18" name="Total goals" groups="all">
    <outcomes><outcome id="12" name="over {total}"/><outcome id="13" name="under {total}"/></outcomes>
    <specifiers><specifier name="total" type="decimal"/></specifiers>
    <mappings><mapping product_id="1" product_ids="1|4" sport_id="sr:sport:1" market_id="8:1730"/></mappings>
  </market>
  <market id="16" name="Handicap" groups="all">
    <outcomes>
      <outcome id="1714" name="{$competitor1} ({+hcp})"/><outcome id="1715" name="{$competitor2} ({-hcp})"/>
    </outcomes>
    <specifiers><specifier name="hcp" type="decimal"/></specifiers>
  </market>
</market_descriptions>"#;

const FIXTURE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<fixtures_fixture generated_at="2024-05-01T10:00:00+00:00">
  <fixture id="sr:match:42" scheduled="2024-05-01T18:30:00+00:00" start_time_tbd="false">
    <tournament id="sr:tournament:17" name="Premier League">
      <sport id="sr:sport:1" name="Soccer"/><category id="sr:category:1" name="England"/>
    </tournament>
    <competitors>
      <competitor qualifier="home" id="sr:competitor:1" name="Arsenal"/>
      <competitor qualifier="away" id="sr:competitor:2" name="Chelsea"/>
    </competitors>
  </fixture>
</fixtures_fixture>"#;

async fn markets(
    State(p): State<Shared>,
    Path(lang): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, &'static str) {
    if !authorised(&headers) {
        return (StatusCode::FORBIDDEN, "forbidden");
    }
    let path = format!("/v1/descriptions/{lang}/markets.xml");
    p.requests.lock().unwrap().push(Recorded { method: "GET", path, query });
    if !*p.serving.lock().unwrap() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down");
    }
    (StatusCode::OK, MARKETS)
}

async fn fixture(
    State(p): State<Shared>,
    Path((lang, urn)): Path<(String, String)>,
    headers: HeaderMap,
) -> (StatusCode, &'static str) {
    if !authorised(&headers) {
        return (StatusCode::FORBIDDEN, "forbidden");
    }
    let path = format!("/v1/sports/{lang}/sport_events/{urn}/fixture.xml");
    p.requests.lock().unwrap().push(Recorded { method: "GET", path, query: HashMap::new() });
    if !*p.serving.lock().unwrap() || urn != "sr:match:42" {
        return (StatusCode::NOT_FOUND, "not found");
    }
    (StatusCode::OK, FIXTURE)
}

async fn start_provider() -> (String, Shared) {
    let shared: Shared = Arc::new(Provider { serving: Mutex::new(true), ..Provider::default() });
    let app = Router::new()
        .route("/v1/{producer}/recovery/initiate_request", post(recovery))
        .route("/v1/descriptions/{lang}/markets.xml", get(markets))
        .route("/v1/sports/{lang}/sport_events/{urn}/fixture.xml", get(fixture))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), shared)
}

/// Carries out the state machine's actions the way the runtime must: sends requests through the
/// API and reports their outcome. Returns the actions for the test to inspect.
async fn drive(api: &UofApi, p: &mut ProducerRecovery, now: u64, ids: &mut RequestIds) -> Vec<Action> {
    let actions = p.poll(now, ids);
    for action in &actions {
        if let Action::SendRequest(request) = action {
            match api.initiate_recovery(request).await {
                Ok(()) => p.on_request_sent(now, request.request_id),
                Err(_) => {
                    p.on_request_failed(now, request.request_id);
                }
            }
        }
    }
    actions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_against_the_provider_stand_in() {
    let (base, provider) = start_provider().await;
    let mut settings = ApiSettings::new(&base, TOKEN);
    settings.node_id = Some(7);
    settings.timeout = Duration::from_secs(5);
    let api = UofApi::new(settings).expect("api");
    let config = RecoveryConfig {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        ..RecoveryConfig::default()
    };
    let mut ids = RequestIds::starting_at(1_000);
    let mut live = ProducerRecovery::new(1, config, Some(1_714_000_000_000), 0);

    // The first request is refused (503): the machine backs off, then asks again with a new id.
    *provider.refuse_next.lock().unwrap() = 1;
    drive(&api, &mut live, 0, &mut ids).await;
    assert!(!live.is_up());
    assert!(drive(&api, &mut live, 99, &mut ids).await.is_empty(), "no retry before the backoff");
    drive(&api, &mut live, 100, &mut ids).await;
    let recorded = provider.requests.lock().unwrap().clone();
    assert_eq!(recorded.len(), 2);
    for (r, id) in recorded.iter().zip(["1000", "1001"]) {
        assert_eq!((r.method, r.path.as_str()), ("POST", "/v1/liveodds/recovery/initiate_request"));
        assert_eq!(r.query.get("request_id").map(String::as_str), Some(id));
        assert_eq!(r.query.get("after").map(String::as_str), Some("1714000000000"));
        assert_eq!(r.query.get("node_id").map(String::as_str), Some("7"));
    }
    assert_eq!(live.counts().request_failures, 1);

    // The feed delivers alive and an old request's snapshot_complete: still down.
    assert!(live.on_alive(150, 1_714_000_050_000, true).is_empty());
    assert!(live.on_snapshot_complete(160, 1_000).is_empty());
    assert!(!live.is_up());
    // The snapshot_complete of the accepted request: up.
    let accepted: u64 = recorded[1].query["request_id"].parse().unwrap();
    assert_eq!(live.on_snapshot_complete(170, accepted), vec![Action::MarkUp]);

    // Up, messages advance `after`; alive subscribed="0" takes it down and asks again from there.
    live.on_alive(1_000, 1_714_000_060_000, true);
    live.on_message(1_714_000_061_000);
    assert_eq!(live.on_alive(2_000, 1_714_000_062_000, false), vec![Action::MarkDown(DownReason::Unsubscribed)]);
    drive(&api, &mut live, 2_000, &mut ids).await;
    let last = provider.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.query.get("after").map(String::as_str), Some("1714000061000"));
    assert_eq!(last.query.get("request_id").map(String::as_str), Some("1002"));

    // A full recovery for the pre-match producer (no stored timestamp) omits `after`.
    let mut pre = ProducerRecovery::new(3, RecoveryConfig::default(), None, 0);
    drive(&api, &mut pre, 0, &mut ids).await;
    let last = provider.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.path, "/v1/pre/recovery/initiate_request");
    assert!(!last.query.contains_key("after"));

    // A wrong token is refused by the provider and reported as a failure with its status.
    let wrong = UofApi::new(ApiSettings::new(&base, "wrong")).expect("api");
    let err = wrong.market_descriptions().await.unwrap_err();
    assert_eq!(err.code(), "status");
    assert!(err.to_string().contains("403"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_the_api_are_cached_and_survive_an_outage() {
    let (base, provider) = start_provider().await;
    let dir = tempfile::tempdir().expect("dir");
    let api = UofApi::new(ApiSettings::new(&base, TOKEN)).expect("api");
    let store = NameStore::new(dir.path(), Some(api));

    let (descriptions, source, failure) = store.descriptions().await;
    assert_eq!(source, DescriptionsSource::Api, "{failure:?}");
    assert!(store.descriptions_path().exists());
    let fixture = store.fixture("sr:match:42", false).await.expect("fixture");
    assert_eq!((fixture.name.as_str(), fixture.sport.as_deref()), ("Arsenal vs Chelsea", Some("Soccer")));
    assert_eq!(fixture.start_time_ms, Some(1_714_588_200_000));
    {
        let recorded = provider.requests.lock().unwrap();
        assert_eq!(recorded[0].path, "/v1/descriptions/en/markets.xml");
        assert_eq!(recorded[0].query.get("include_mappings").map(String::as_str), Some("true"));
        assert_eq!(recorded[1].path, "/v1/sports/en/sport_events/sr:match:42/fixture.xml");
    }

    let namer = Namer::new(descriptions);
    let event = EventNames::from(&fixture);
    assert_eq!(namer.market_name(18, "total=2.5", &event), "Total goals");
    assert_eq!(namer.outcome_name(18, "13", "total=2.5", &event), "under 2.5");
    assert_eq!(namer.outcome_name(16, "1715", "hcp=0.75", &event), "Chelsea (-0.75)");
    assert_eq!(namer.market_name(1, "", &event), "Market 1", "not in the fetched descriptions");
    assert_eq!(namer.fallbacks.total(), 1);

    // The provider fails: descriptions and fixtures come from the cache written above.
    *provider.serving.lock().unwrap() = false;
    let (cached, source, failure) = store.descriptions().await;
    assert_eq!(source, DescriptionsSource::Cache);
    assert!(failure.expect("the API failure is reported").to_string().contains("500"));
    assert_eq!(cached.get(18).map(|m| m.name.as_str()), Some("Total goals"));
    let again = store.fixture("sr:match:42", true).await.expect("cached fixture");
    assert_eq!(again, fixture);
    assert!(store.fixture("sr:match:43", false).await.is_err(), "never fetched, not cached");

    // No API and no cache: the bundled descriptions.
    let empty = tempfile::tempdir().expect("dir");
    let (bundled, source, _) = NameStore::new(empty.path(), None).descriptions().await;
    assert_eq!(source, DescriptionsSource::Bundled);
    assert_eq!(bundled.get(1).map(|m| m.name.as_str()), Some("1x2"));
}

/// The provider stand-in behind a TLS endpoint whose certificate the test CA issued for
/// `localhost`.
async fn start_https_provider(certificates: &Certificates) -> (TlsTerminator, Shared) {
    let (base, provider) = start_provider().await;
    let upstream: SocketAddr = base.trim_start_matches("http://").parse().expect("address");
    (tls_terminator(certificates, upstream).await, provider)
}

fn https_settings(host: &str, terminator: &TlsTerminator, ca_pem: Option<&str>) -> ApiSettings {
    let mut settings = ApiSettings::new(format!("https://{host}:{}", terminator.address.port()), TOKEN);
    settings.timeout = Duration::from_secs(5);
    settings.ca_pem = ca_pem.map(str::to_string);
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_ca_configured_requests_recovery_and_fetches_descriptions() {
    let certificates = certificates();
    let (terminator, provider) = start_https_provider(&certificates).await;
    let api = UofApi::new(https_settings("localhost", &terminator, Some(&certificates.ca_pem))).expect("api");

    // A recovery request over TLS is accepted by the provider.
    let mut ids = RequestIds::starting_at(500);
    let mut live = ProducerRecovery::new(1, RecoveryConfig::default(), Some(1_714_000_000_000), 0);
    let actions = drive(&api, &mut live, 0, &mut ids).await;
    assert!(actions.iter().any(|a| matches!(a, Action::SendRequest(_))), "{actions:?}");
    assert_eq!(live.counts().request_failures, 0);
    {
        let recorded = provider.requests.lock().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!((recorded[0].method, recorded[0].path.as_str()), ("POST", "/v1/liveodds/recovery/initiate_request"));
        assert_eq!(recorded[0].query.get("request_id").map(String::as_str), Some("500"));
        assert_eq!(recorded[0].query.get("after").map(String::as_str), Some("1714000000000"));
    }
    assert_eq!(live.on_snapshot_complete(100, 500), vec![Action::MarkUp]);

    // Market descriptions and a fixture over TLS, through the name store (then cached).
    let dir = tempfile::tempdir().expect("dir");
    let store = NameStore::new(dir.path(), Some(api.clone()));
    let (descriptions, source, failure) = store.descriptions().await;
    assert_eq!(source, DescriptionsSource::Api, "{failure:?}");
    assert_eq!(descriptions.get(18).map(|m| m.name.as_str()), Some("Total goals"));
    assert!(store.descriptions_path().exists());
    let fixture = store.fixture("sr:match:42", true).await.expect("fixture");
    assert_eq!(fixture.name, "Arsenal vs Chelsea");
    assert_eq!(provider.requests.lock().unwrap().len(), 3);

    // The token still matters over TLS.
    let wrong = UofApi::new(ApiSettings { access_token: "wrong".to_string(), ..api.settings().clone() }).expect("api");
    assert_eq!(wrong.market_descriptions().await.unwrap_err().code(), "status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_refuses_an_unknown_ca_and_a_wrong_host_name() {
    let certificates = certificates();
    let (terminator, provider) = start_https_provider(&certificates).await;

    // The system's roots only: the test CA is not among them.
    let roots_only = UofApi::new(https_settings("localhost", &terminator, None)).expect("api");
    let mut ids = RequestIds::starting_at(1);
    let mut live = ProducerRecovery::new(1, RecoveryConfig::default(), None, 0);
    drive(&roots_only, &mut live, 0, &mut ids).await;
    assert_eq!(live.counts().request_failures, 1, "the refused request counts as a failed one");
    assert!(!live.is_up());
    let request = feed::recovery::RecoveryRequest { producer: 1, request_id: 99, after: None };
    let err = roots_only.initiate_recovery(&request).await.expect_err("an unknown CA must be refused");
    assert_eq!(err.code(), "tls_certificate", "{err}");
    assert!(err.to_string().contains("certificate was refused"), "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    let dir = tempfile::tempdir().expect("dir");
    let (_, source, failure) = NameStore::new(dir.path(), Some(roots_only)).descriptions().await;
    assert_eq!(source, DescriptionsSource::Bundled);
    let failure = failure.expect("the certificate failure is reported").to_string();
    assert!(failure.contains("certificate was refused") && failure.contains("UnknownIssuer"), "{failure}");

    // Another CA configured: still refused.
    let (other, _) = test_ca("another CA");
    let other_ca = UofApi::new(https_settings("localhost", &terminator, Some(&other.pem()))).expect("api");
    let err = other_ca.market_descriptions().await.expect_err("a certificate of another CA must be refused");
    assert_eq!(err.code(), "tls_certificate", "{err}");

    // The right CA, the wrong host name: the certificate is for localhost, not 127.0.0.1.
    let wrong_host = UofApi::new(https_settings("127.0.0.1", &terminator, Some(&certificates.ca_pem))).expect("api");
    let err = wrong_host.initiate_recovery(&request).await.expect_err("a wrong host name must be refused");
    assert_eq!(err.code(), "tls_certificate", "{err}");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    let err = wrong_host.market_descriptions().await.expect_err("a wrong host name must be refused");
    assert_eq!(err.code(), "tls_certificate", "{err}");

    // Nothing reached the provider.
    assert!(provider.requests.lock().unwrap().is_empty());
}
