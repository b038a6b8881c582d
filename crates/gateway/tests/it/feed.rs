//! `POST /v1/feed/messages` over a real socket: a provider pushes fixtures, markets and odds;
//! duplicates and stale reorderings are ignored; a bet stop blocks bets at once; a silent
//! provider's markets are suspended (and `/readyz` says so) until its snapshot completes.

use std::time::Duration;

use gateway::{GatewayConfig, ProviderSettings};
use serde_json::{json, Value};

use crate::harness::{now_ms, spawn_app_on, TestApp, ADMIN_KEY};

async fn feed_app(stale_after: Duration) -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    config.feed_defaults = ProviderSettings { stale_after, on_stale: book::StaleMode::Suspend };
    spawn_app_on(&path, Some(dir), config).await
}

fn message(sequence: u64, timestamp: u64, items: Value) -> Value {
    json!({"provider": "acme", "sequence": sequence, "timestamp": timestamp, "items": items})
}

fn fixture_items() -> Value {
    json!([
        {"type": "fixture", "event": "m1", "name": "Reds v Blues", "sport": "football", "competition": "Cup", "starts_at": now_ms() + 86_400_000},
        {"type": "market", "event": "m1", "market": "1x2", "name": "Match result", "kind": "1x2",
         "selections": [{"id": "h", "name": "Reds", "price": "2.40"}, {"id": "d", "name": "Draw", "price": "3.30"}, {"id": "a", "name": "Blues", "price": "2.90"}]}
    ])
}

fn odds(price: &str) -> Value {
    json!([{"type": "odds_change", "event": "m1", "markets": [{"market": "1x2", "prices": [{"selection": "h", "price": price}], "active": true}]}])
}

async fn push(app: &TestApp, messages: Vec<Value>) -> Vec<Value> {
    let (status, body) =
        app.call("POST", "/v1/feed/messages", Some(ADMIN_KEY), Some(json!({"messages": messages}))).await;
    assert_eq!(status, 200, "{body}");
    body["results"].as_array().expect("results").clone()
}

/// The market created by the feed, found through the catalog.
async fn market(app: &TestApp) -> Value {
    let (status, events) = app.call("GET", "/v1/events?sport=football", None, None).await;
    assert_eq!(status, 200, "{events}");
    let event = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|event| event["name"] == "Reds v Blues")
        .expect("the feed's event")
        .clone();
    event["markets"][0].clone()
}

async fn bet(app: &TestApp, token: &str, selection: &str, price: &str) -> (u16, Value) {
    app.call(
        "POST",
        "/v1/bets",
        Some(token),
        Some(json!({"type": "single", "stake": "5.00", "legs": [{"selection_id": selection, "price": price}], "accept_price_changes": "any"})),
    )
    .await
}

#[tokio::test]
async fn pushed_messages_apply_once_and_never_let_older_odds_win() {
    let app = feed_app(Duration::from_secs(60)).await;
    let t = now_ms();
    let results = push(&app, vec![message(1, t, fixture_items()), message(2, t + 10, odds("2.50"))]).await;
    assert_eq!(results[0]["status"], "applied", "{results:?}");
    assert_eq!(results[1]["status"], "applied");
    // The same sequence again, an older price with a newer sequence, and a heartbeat.
    let results = push(
        &app,
        vec![
            message(2, t + 10, odds("9.00")),
            message(3, t + 5, odds("1.10")),
            json!({"provider": "acme", "sequence": 4, "timestamp": t + 20, "items": [{"type": "alive"}]}),
        ],
    )
    .await;
    let statuses: Vec<&str> = results.iter().map(|result| result["status"].as_str().expect("status")).collect();
    assert_eq!(statuses, ["duplicate", "stale", "heartbeat"]);
    let market = market(&app).await;
    assert_eq!(market["selections"][0]["price"], "2.50");
    assert_eq!(market["delayed"], false);
    // Refusals are per message and per item, with stable codes.
    let results = push(&app, vec![
        message(0, t, odds("2.0")),
        message(5, t + 30, json!([{"type": "settlement", "event": "m1", "market": "nope", "results": []}])),
        message(6, t + 31, json!([{"type": "odds_change", "event": "m1", "markets": [{"market": "1x2", "prices": [{"selection": "h", "price": "0.9"}]}]}])),
    ])
    .await;
    assert_eq!(results[0]["status"], "refused");
    assert_eq!(results[0]["code"], "invalid_request");
    assert_eq!(results[1]["status"], "refused");
    assert_eq!(results[1]["refused_items"][0]["code"], "unknown_market");
    assert_eq!(results[2]["code"], "invalid_request");
    // Malformed batches are refused whole; players cannot push.
    let (status, body) =
        app.call("POST", "/v1/feed/messages", Some(ADMIN_KEY), Some(json!({"messages": [{"provider": "acme"}]}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
    let player = app.player("punter").await;
    let (status, _) =
        app.call("POST", "/v1/feed/messages", Some(&player.access_token), Some(json!({"messages": []}))).await;
    assert_eq!(status, 403);
    let (_, metrics) = app.call("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().expect("text").to_string();
    assert!(metrics.contains(r#"sportsbook_feed_messages_total{provider="acme",outcome="duplicate"} 1"#), "{metrics}");
}

#[tokio::test]
async fn a_bet_stop_blocks_bets_and_a_silent_provider_is_suspended_until_its_snapshot() {
    let app = feed_app(Duration::from_millis(700)).await;
    let player = app.funded_player("backer", "100.00").await;
    let t = now_ms();
    push(&app, vec![message(1, t, fixture_items())]).await;
    let market = market(&app).await;
    let selection = market["selections"][0]["id"].as_str().expect("id").to_string();
    let (status, body) = bet(&app, &player.access_token, &selection, "2.40").await;
    assert_eq!(status, 201, "{body}");

    push(&app, vec![message(2, now_ms(), json!([{"type": "bet_stop", "event": "m1"}]))]).await;
    let (status, body) = bet(&app, &player.access_token, &selection, "2.40").await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("market_suspended")), "{body}");
    push(&app, vec![message(3, now_ms(), odds("2.30"))]).await;
    let (status, body) = bet(&app, &player.access_token, &selection, "2.30").await;
    assert_eq!(status, 201, "reopened by odds with active: {body}");

    // Silence beyond the limit: suspended, and not ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.call("GET", "/readyz", None, None).await;
        if status == 503 {
            assert_eq!(body["reasons"], json!(["feed_stale"]));
            assert_eq!(body["stale_providers"], json!(["acme"]));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the provider never went stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = bet(&app, &player.access_token, &selection, "2.30").await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("market_suspended")), "{body}");

    // Back: prices, then the snapshot completes and the market reopens.
    push(&app, vec![message(4, now_ms(), odds("2.20")), message(5, now_ms(), json!([{"type": "snapshot_complete"}]))])
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = bet(&app, &player.access_token, &selection, "2.20").await;
        if status == 201 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never reopened: {body}");
        // The watchdog tells the book the provider is fresh on its next pass; the snapshot may
        // have come first, so push it again as a provider would after its recovery.
        push(&app, vec![json!({"provider": "acme", "sequence": 6, "timestamp": now_ms(), "items": [{"type": "snapshot_complete"}]})]).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    push(&app, vec![json!({"provider": "acme", "sequence": 7, "timestamp": now_ms(), "items": [{"type": "alive"}]})])
        .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (status, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "{body}");
}
