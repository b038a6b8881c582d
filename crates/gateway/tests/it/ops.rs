//! Black-box tests: health, readiness, metrics and request ids.

use book::Command;
use engine::{EngineOptions, SystemClock};
use gateway::{GatewayConfig, Metrics};
use journal::{FaultPlan, FaultyJournal, MemoryJournal};
use serde_json::json;

use crate::harness::{serve_engine, spawn_app, TestApp};

async fn metrics_text(app: &TestApp) -> String {
    let response = app.client.get(app.url("/metrics")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("content type").to_string();
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    response.text().await.expect("body")
}

#[tokio::test]
async fn healthz_and_readyz_answer_ok() {
    let app = spawn_app().await;
    assert_eq!(app.call("GET", "/healthz", None, None).await, (200, json!({"status": "ok"})));
    assert_eq!(app.call("GET", "/readyz", None, None).await, (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn readyz_is_unavailable_once_the_engine_has_shut_down() {
    let app = spawn_app().await;
    let engine = app.engine.clone();
    tokio::task::spawn_blocking(move || engine.shutdown()).await.expect("join");
    let (status, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!((status, body), (503, json!({"status": "unavailable", "reasons": ["book_stopped"]})));
    // The process is still up.
    assert_eq!(app.call("GET", "/healthz", None, None).await.0, 200);
}

#[tokio::test]
async fn readyz_is_unavailable_after_a_journal_failure() {
    let metrics = Metrics::new();
    let config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    let streams = gateway::Streams::new(&config, &metrics);
    let journal = FaultyJournal::new(MemoryJournal::new(), FaultPlan::fail_sync_at(0));
    let recovered = engine::recover(&journal, None, book::Config::default()).expect("recover");
    let options =
        EngineOptions { on_commit: vec![metrics.engine_hook(), streams.engine_hook()], ..EngineOptions::default() };
    let engine =
        engine::EngineHandle::start(Box::new(journal), None, recovered, Box::new(SystemClock), options).expect("start");
    let app = serve_engine(engine.clone(), std::env::temp_dir(), None, config, metrics, streams).await;
    assert_eq!(app.call("GET", "/readyz", None, None).await.0, 200);

    // The first append fails its sync: the engine stops for good.
    let outcome = tokio::task::spawn_blocking(move || engine.submit(Command::Tick)).await.expect("join");
    assert!(outcome.is_err(), "{outcome:?}");
    let (status, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!((status, body), (503, json!({"status": "unavailable", "reasons": ["journal_failed"]})));
    let text = metrics_text(&app).await;
    assert!(text.contains("\nsportsbook_book_stopped 1\n"), "{text}");
}

#[tokio::test]
async fn metrics_name_every_series_and_count_requests_by_route_template() {
    let app = spawn_app().await;
    assert_eq!(app.call("GET", "/healthz", None, None).await.0, 200);
    assert_eq!(app.call("GET", "/v1/events/evt_424242", None, None).await.0, 404);
    assert_eq!(app.call("GET", "/no/such/path", None, None).await.0, 404);
    let text = metrics_text(&app).await;
    for name in [
        "sportsbook_bet_placement_seconds",
        "sportsbook_bets",
        "sportsbook_book_batch_commands",
        "sportsbook_journal_sync_seconds",
        "sportsbook_idempotency_hits",
        "sportsbook_book_inbox_depth",
        "sportsbook_http_requests",
        "sportsbook_http_request_seconds",
        "sportsbook_http_shed",
    ] {
        assert!(text.contains(&format!("\n# TYPE {name} ")), "{name} missing:\n{text}");
    }
    assert!(text.contains(r#"sportsbook_bets_total{code="accepted"} 0"#), "{text}");
    assert!(text.contains(r#"sportsbook_http_shed_total{reason="overloaded"} 0"#), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains(r#"sportsbook_http_requests_total{route="/healthz",method="GET",status="200"} 1"#), "{text}");
    assert!(
        text.contains(r#"sportsbook_http_requests_total{route="/v1/events/{id}",method="GET",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    assert!(!text.contains("evt_424242") && !text.contains("/no/such/path"), "raw paths leak into labels:\n{text}");
    assert!(text.contains(r#"sportsbook_http_request_seconds_count{route="/healthz"} 1"#), "{text}");
}

#[tokio::test]
async fn metrics_follow_the_engine_and_idempotent_replays() {
    let app = spawn_app().await;
    let player = app.funded_player("metered", "50.00").await;
    let deposit = json!({"amount": "5.00", "payment_ref": "again"});
    for _ in 0..2 {
        let (status, body) = app
            .call_with(
                "POST",
                "/v1/wallet/deposits",
                Some(&player.access_token),
                Some(deposit.clone()),
                &[("Idempotency-Key", "metered-deposit-1")],
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let text = metrics_text(&app).await;
    assert!(text.contains("\nsportsbook_idempotency_hits_total 1\n"), "{text}");
    let batches = series_value(&text, "sportsbook_book_batch_commands_count");
    assert!(batches >= 3.0, "register, deposit, deposit: {batches} batches\n{text}");
    assert!(series_value(&text, "sportsbook_journal_sync_seconds_count") >= batches, "{text}");
    assert!(text.contains("\nsportsbook_book_inbox_depth 0\n"), "{text}");
}

#[tokio::test]
async fn metrics_show_the_longest_sequencer_pause_and_snapshots_by_writer() {
    let metrics = Metrics::new();
    let config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    let streams = gateway::Streams::new(&config, &metrics);
    let dir = tempfile::tempdir().expect("temporary directory");
    // A snapshot after every batch: each one is the follower's, none the sequencer's.
    let options = EngineOptions {
        snapshot_every_commands: 1,
        on_commit: vec![metrics.engine_hook(), streams.engine_hook()],
        ..EngineOptions::default()
    };
    let path = dir.path().to_path_buf();
    let (engine, _) = tokio::task::spawn_blocking(move || {
        engine::open_data_dir(&path, book::Config::default(), Box::new(SystemClock), options)
    })
    .await
    .expect("join")
    .expect("open");
    let app = serve_engine(engine.clone(), dir.path().to_path_buf(), Some(dir), config, metrics, streams).await;
    let _player = app.funded_player("paused", "10.00").await;
    let follower = r#"sportsbook_snapshots_total{writer="follower"} "#;
    let mut text = metrics_text(&app).await;
    for _ in 0..100 {
        if labelled_value(&text, follower) >= 2.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        text = metrics_text(&app).await;
    }
    assert!(labelled_value(&text, follower) >= 2.0, "{text}");
    assert!(text.contains("\nsportsbook_snapshots_total{writer=\"sequencer\"} 0\n"), "{text}");
    assert!(labelled_value(&text, r#"sportsbook_snapshot_seconds_total{writer="follower"} "#) > 0.0, "{text}");
    assert!(series_value(&text, "sportsbook_sequencer_pause_seconds_max") > 0.0, "{text}");
    assert!(text.contains("\n# TYPE sportsbook_sequencer_pause_seconds_interval_max gauge\n"), "{text}");
    assert!(text.contains("\n# TYPE sportsbook_sequencer_cpu_seconds_interval_max gauge\n"), "{text}");
    assert!(text.contains("\n# TYPE sportsbook_sequencer_work_seconds_interval_max gauge\n"), "{text}");
    assert!(text.contains("\nsportsbook_snapshots_skipped_total 0\n"), "{text}");
    assert!(text.contains("\nsportsbook_snapshot_follower_failed 0\n"), "{text}");
}

/// The value of a series given with its labels and the space after them.
fn labelled_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"))
}

/// The value of an unlabelled series.
fn series_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = spawn_app().await;
    let response =
        app.client.get(app.url("/healthz")).header("x-request-id", "client-id-42").send().await.expect("request");
    assert_eq!(response.headers()["x-request-id"], "client-id-42");

    // Made when missing, also on errors, and different every time.
    let mut made = Vec::new();
    for path in ["/healthz", "/no/such/path"] {
        let response = app.client.get(app.url(path)).send().await.expect("request");
        let id = response.headers()["x-request-id"].to_str().expect("id").to_string();
        assert!(!id.is_empty());
        made.push(id);
    }
    assert_ne!(made[0], made[1]);

    // An unfit id (too long) is replaced, not echoed.
    let long = "x".repeat(gateway::REQUEST_ID_BYTES_MAX + 1);
    let response = app.client.get(app.url("/healthz")).header("x-request-id", &long).send().await.expect("request");
    let id = response.headers()["x-request-id"].to_str().expect("id");
    assert!(!id.is_empty() && id != long, "{id}");
}

async fn scrape(url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let challenge =
        response.headers().get("www-authenticate").and_then(|value| value.to_str().ok()).map(str::to_string);
    (status, challenge, response.text().await.expect("body"))
}

#[tokio::test]
async fn with_a_metrics_key_metrics_take_it_as_a_bearer_token() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    config.metrics_key = Some("mk_test_metrics_key_0123456789abcdef".to_string());
    let app = crate::harness::spawn_app_on(&path, Some(dir), config).await;
    let url = app.url("/metrics");
    for headers in [&[][..], &[("authorization", "Bearer mk_wrong")][..], &[("authorization", "Basic bWs6bWs=")][..]] {
        let (status, challenge, body) = scrape(&url, headers).await;
        assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")), "{headers:?}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    // An operator API key is not the metrics key.
    let (status, _, _) = scrape(&url, &[("authorization", &format!("Bearer {}", crate::harness::ADMIN_KEY))]).await;
    assert_eq!(status, 401);
    let (status, _, text) = scrape(&url, &[("authorization", "bearer mk_test_metrics_key_0123456789abcdef")]).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("sportsbook_http_requests_total"), "{text}");
    // The rest of the API is untouched by it.
    assert_eq!(app.call("GET", "/healthz", None, None).await.0, 200);
    assert_eq!(app.call("GET", "/openapi.json", None, None).await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn without_a_key_metrics_answer_loopback_clients_only_and_not_through_a_proxy() {
    let app = spawn_app().await;
    let url = app.url("/metrics");
    assert_eq!(scrape(&url, &[]).await.0, 200);
    for forwarded in
        [("x-forwarded-for", "203.0.113.9"), ("forwarded", "for=203.0.113.9"), ("x-real-ip", "203.0.113.9")]
    {
        let (status, _, body) = scrape(&url, &[forwarded]).await;
        assert_eq!(status, 403, "{forwarded:?}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    app.stop().await;
}

#[tokio::test]
async fn metrics_on_their_own_listener_are_not_on_the_main_one() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    config.metrics_listener_separate = true;
    let metrics = Metrics::new();
    let streams = gateway::Streams::new(&config, &metrics);
    let options =
        EngineOptions { on_commit: vec![metrics.engine_hook(), streams.engine_hook()], ..EngineOptions::default() };
    let (engine, _) = engine::open_data_dir(dir.path(), book::Config::default(), Box::new(SystemClock), options)
        .expect("open data directory");
    let state = gateway::AppState::new(engine.clone(), config, metrics, streams).await.expect("state");
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let private = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (main_address, private_address) = (main.local_addr().expect("address"), private.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let main_server = tokio::spawn(gateway::serve(main, state.clone(), until_stopped(stopped.clone())));
    let private_server = tokio::spawn(gateway::serve_metrics(private, state, until_stopped(stopped)));

    let (status, _, body) = scrape(&format!("http://{main_address}/metrics"), &[]).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, text) = scrape(&format!("http://{private_address}/metrics"), &[]).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("sportsbook_http_requests_total"), "{text}");
    // The metrics listener serves nothing else; the main one serves the rest.
    assert_eq!(scrape(&format!("http://{private_address}/v1/events"), &[]).await.0, 404);
    assert_eq!(scrape(&format!("http://{main_address}/v1/events"), &[]).await.0, 200);

    let _ = stop.send(true);
    main_server.await.expect("join").expect("serve");
    private_server.await.expect("join").expect("serve metrics");
    tokio::task::spawn_blocking(move || engine.shutdown()).await.expect("join");
}

#[tokio::test]
async fn the_cluster_route_names_this_process_as_the_only_node_and_takes_admins_only() {
    let app = spawn_app().await;
    let player = app.player("cluster_curious").await;
    let (status, view) = app.call("GET", "/v1/admin/cluster", Some(crate::harness::ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{view}");
    let pid = std::process::id();
    assert_eq!(view["leader"]["pid"], pid, "{view}");
    let position = view["leader"]["position"].as_u64().expect("a position");
    assert_eq!(view["followers"], json!([]), "{view}");
    assert_eq!(view["gateways"][0]["pid"], pid, "{view}");
    if app.in_cluster() {
        // In the harness's cluster mode the book node and the gateway replica run in this
        // process too, and the leader holds a lease that lapses unless renewed.
        assert!(view["leader"]["lease_expires_at"].is_string(), "{view}");
        assert_eq!(view["gateways"].as_array().map(Vec::len), Some(1), "{view}");
        // The leader's position as of its last renewal or registry update (it may predate
        // the leader marker the takeover appended).
        let _ = position;
    } else {
        assert!(position >= 1, "{view}");
        assert_eq!(view["leader"]["lease_expires_at"], serde_json::Value::Null, "{view}");
    }
    let (status, body) = app.call("GET", "/v1/admin/cluster", Some(&player.access_token), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, _) = app.call("GET", "/v1/admin/cluster", None, None).await;
    assert_eq!(status, 401);
}
