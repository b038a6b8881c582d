//! The simulated provider's HTTP API (our simulator's side of `uof_api`): what `sportsbook
//! feed-sim` and the tests run so that a UOF consumer recovers the way it does against the real
//! provider. It answers
//! - `POST /v1/{producer}/recovery/initiate_request?after=..&request_id=..[&node_id=..]` with
//!   202 and hands the request to the simulator, which replays on the feed with that
//!   `request_id` and ends with `snapshot_complete`;
//! - `GET /v1/descriptions/{lang}/markets.xml`: the bundled market descriptions;
//! - `GET /v1/sports/{lang}/sport_events/{urn}/fixture.xml`: fixtures registered with
//!   [`ProviderApi::set_fixture`], else 404;
//! - `GET /v1/descriptions/producers.xml`: the producers it offers ([`default_producers`]: the
//!   live producer 1 that `feed-sim` publishes; tests set others with
//!   [`ProviderApi::set_producers`], or `None` to answer 503 as an unreachable list);
//!
//! A recovery request whose `after` is older than the producer's
//! `stateful_recovery_window_in_minutes` (measured back from the wall clock) is refused with
//! 400, as the provider refuses it; so is one for a producer its list shows inactive.
//!
//! and refuses a request without the expected `x-access-token` with 403, as the provider does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::names::BUNDLED_MARKETS_EN;
use crate::producers::ProducerDescription;
use crate::transport::RecoveryRequest;

/// Recovery requests queued for the simulator.
pub const RECOVERY_QUEUE_MAX: usize = 64;

/// A recovery request as the provider's API received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRecovery {
    /// The producer's name in the path (`liveodds`, `pre`).
    pub producer: String,
    /// `after`, if given (absent: a full recovery).
    pub after: Option<u64>,
    pub request_id: u64,
    pub node_id: Option<u32>,
}

struct Shared {
    token: String,
    requests: mpsc::Sender<RecoveryRequest>,
    received: Mutex<Vec<ApiRecovery>>,
    fixtures: Mutex<HashMap<String, String>>,
    producers: Mutex<Option<Vec<ProducerDescription>>>,
}

/// What the stand-in lists unless told otherwise: the live producer (1, `liveodds`, 72 h
/// window), the one `sportsbook feed-sim` publishes.
pub fn default_producers() -> Vec<ProducerDescription> {
    vec![ProducerDescription {
        id: 1,
        name: "LO".to_string(),
        description: "Live Odds".to_string(),
        api_url: "http://127.0.0.1/v1/liveodds/".to_string(),
        active: true,
        scope: "live".to_string(),
        stateful_recovery_window_in_minutes: Some(4320),
    }]
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn bad_request(message: &str) -> (StatusCode, String) {
    (
        StatusCode::BAD_REQUEST,
        format!(r#"<response response_code="BAD_REQUEST"><message>{message}</message></response>"#),
    )
}

/// The simulated provider's HTTP API on a local address.
pub struct ProviderApi {
    address: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ProviderApi {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ProviderApi").field("address", &self.address).finish_non_exhaustive()
    }
}

fn authorised(shared: &Shared, headers: &HeaderMap) -> bool {
    headers.get("x-access-token").and_then(|value| value.to_str().ok()) == Some(shared.token.as_str())
}

async fn recovery(
    State(shared): State<Arc<Shared>>,
    Path(producer): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if !authorised(&shared, &headers) {
        return (StatusCode::FORBIDDEN, r#"<response response_code="FORBIDDEN"/>"#.to_string());
    }
    let number = |name: &str| query.get(name).map(|value| value.parse::<u64>());
    let (after, request_id, node_id) = match (number("after"), number("request_id"), number("node_id")) {
        (after, Some(Ok(request_id)), node) if !matches!(after, Some(Err(_))) && !matches!(node, Some(Err(_))) => (
            after.and_then(Result::ok),
            request_id,
            node.and_then(Result::ok).and_then(|node| u32::try_from(node).ok()),
        ),
        _ => {
            return bad_request("after, request_id and node_id are numbers");
        }
    };
    // The producer as its list describes it (by the name its api_url gives the path).
    let listed = shared
        .producers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .flatten()
        .find(|listed| listed.path_name().as_deref() == Some(producer.as_str()))
        .cloned();
    if let Some(listed) = listed {
        if !listed.active {
            return bad_request("the producer is not active");
        }
        let window = listed.recovery_window().map(|window| window.as_millis() as u64);
        if let (Some(after), Some(window)) = (after, window) {
            if after < wall_ms().saturating_sub(window) {
                return bad_request("after is older than the producer's stateful recovery window");
            }
        }
    }
    shared.received.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(ApiRecovery {
        producer,
        after,
        request_id,
        node_id,
    });
    if shared.requests.try_send(RecoveryRequest { after: after.unwrap_or(0), request_id }).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, r#"<response response_code="SERVICE_UNAVAILABLE"/>"#.to_string());
    }
    (StatusCode::ACCEPTED, r#"<response response_code="ACCEPTED"/>"#.to_string())
}

async fn markets(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> (StatusCode, String) {
    if !authorised(&shared, &headers) {
        return (StatusCode::FORBIDDEN, String::new());
    }
    (StatusCode::OK, BUNDLED_MARKETS_EN.to_string())
}

async fn producers(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> (StatusCode, String) {
    if !authorised(&shared, &headers) {
        return (StatusCode::FORBIDDEN, String::new());
    }
    match &*shared.producers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) {
        Some(list) => (StatusCode::OK, crate::producers::render(list)),
        None => (StatusCode::SERVICE_UNAVAILABLE, r#"<response response_code="SERVICE_UNAVAILABLE"/>"#.to_string()),
    }
}

async fn fixture(
    State(shared): State<Arc<Shared>>,
    Path((_, urn)): Path<(String, String)>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if !authorised(&shared, &headers) {
        return (StatusCode::FORBIDDEN, String::new());
    }
    match shared.fixtures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&urn) {
        Some(xml) => (StatusCode::OK, xml.clone()),
        None => (StatusCode::NOT_FOUND, r#"<response response_code="NOT_FOUND"/>"#.to_string()),
    }
}

impl ProviderApi {
    /// Listens on `address`; accepted recovery requests arrive on the returned receiver.
    pub async fn bind(
        address: SocketAddr,
        token: &str,
    ) -> std::io::Result<(ProviderApi, mpsc::Receiver<RecoveryRequest>)> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (requests, receiver) = mpsc::channel(RECOVERY_QUEUE_MAX);
        let shared = Arc::new(Shared {
            token: token.to_string(),
            requests,
            received: Mutex::new(Vec::new()),
            fixtures: Mutex::new(HashMap::new()),
            producers: Mutex::new(Some(default_producers())),
        });
        let router = Router::new()
            .route("/v1/{producer}/recovery/initiate_request", post(recovery))
            .route("/v1/descriptions/producers.xml", get(producers))
            .route("/v1/descriptions/{lang}/markets.xml", get(markets))
            .route("/v1/sports/{lang}/sport_events/{urn}/fixture.xml", get(fixture))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "simulated provider API stopped");
            }
        });
        Ok((ProviderApi { address, shared, task }, receiver))
    }

    /// `http://127.0.0.1:port`: the base URL a consumer's API settings take.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every recovery request received so far, in order.
    pub fn received(&self) -> Vec<ApiRecovery> {
        self.shared.received.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Lists `producers` from now on; `None` answers the list with 503 (unreachable).
    pub fn set_producers(&self, producers: Option<Vec<ProducerDescription>>) {
        *self.shared.producers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = producers;
    }

    /// Serves `xml` as the fixture of `urn`.
    pub fn set_fixture(&self, urn: &str, xml: &str) {
        self.shared
            .fixtures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(urn.to_string(), xml.to_string());
    }
}

impl Drop for ProviderApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}
