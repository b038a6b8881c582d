//! Degraded modes over a real socket: pre-match only, cached odds, per-market throttles, and
//! the circuit breaker around book reads.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{spawn_app, spawn_app_on, TestApp, ADMIN_KEY};

async fn bet(app: &TestApp, token: &str, selection: &str, price: &str) -> (u16, Value, Option<String>) {
    let response = app
        .client
        .post(app.url("/v1/bets"))
        .bearer_auth(token)
        .header("idempotency-key", crate::harness::fresh_idempotency_key())
        .json(&json!({"type": "single", "stake": "1.00", "legs": [{"selection_id": selection, "price": price}], "accept_price_changes": "any"}))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|value| value.to_str().expect("ascii").to_string());
    (status, response.json().await.unwrap_or(Value::Null), retry_after)
}

async fn mode(app: &TestApp, body: Value) -> Value {
    let (status, view) = app.call("PUT", "/v1/admin/trading-mode", Some(ADMIN_KEY), Some(body)).await;
    assert_eq!(status, 200, "{view}");
    view
}

#[tokio::test]
async fn pre_match_only_refuses_in_play_bets_and_cached_odds_delays_every_bet() {
    let app = spawn_app().await;
    let player = app.funded_player("switches", "100.00").await;
    let (live_event, _, live) = app.football_match("Live FC v Now United").await;
    let (_, prematch_market, later) = app.football_match("Later FC v Soon United").await;
    let (status, body) = app
        .call(
            "POST",
            &format!("/v1/admin/events/{live_event}/in-play"),
            Some(ADMIN_KEY),
            Some(json!({"bet_delay_seconds": 0})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(
        mode(&app, json!({"pre_match_only": true})).await,
        json!({"pre_match_only": true, "cached_odds": false})
    );
    let (status, body, _) = bet(&app, &player.access_token, &live[0], "2.50").await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("market_suspended")), "{body}");
    let (status, body, _) = bet(&app, &player.access_token, &later[0], "2.50").await;
    assert_eq!((status, body["status"].as_str()), (201, Some("accepted")), "{body}");

    let view = mode(&app, json!({"pre_match_only": false, "cached_odds": true})).await;
    assert_eq!(view, json!({"pre_match_only": false, "cached_odds": true}));
    let (status, body, _) = bet(&app, &player.access_token, &live[0], "2.50").await;
    assert_eq!((status, body["status"].as_str()), (202, Some("pending")), "cached odds delay every bet: {body}");
    let (_, market) = app.call("GET", &format!("/v1/markets/{prematch_market}"), None, None).await;
    assert_eq!(market["delayed"], true);
    let (status, view) = app.call("GET", "/v1/admin/trading-mode", Some(ADMIN_KEY), None).await;
    assert_eq!((status, view), (200, json!({"pre_match_only": false, "cached_odds": true})));
    let (_, metrics) = app.call("GET", "/metrics", None, None).await;
    assert!(metrics.as_str().expect("text").contains(r#"sportsbook_trading_mode{switch="cached_odds"} 1"#));

    mode(&app, json!({"cached_odds": false})).await;
    let (_, market) = app.call("GET", &format!("/v1/markets/{prematch_market}"), None, None).await;
    assert_eq!(market["delayed"], false);
    let player_token = player.access_token.clone();
    let (status, _) =
        app.call("PUT", "/v1/admin/trading-mode", Some(&player_token), Some(json!({"cached_odds": true}))).await;
    assert_eq!(status, 403);
    let (status, _) = app.call("PUT", "/v1/admin/trading-mode", Some(ADMIN_KEY), Some(json!({"cached": true}))).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_throttled_market_refuses_bets_beyond_its_rate_with_retry_after() {
    let app = spawn_app().await;
    let player = app.funded_player("throttled", "100.00").await;
    let (_, hot_market, hot) = app.football_match("Hot FC v Derby United").await;
    let (_, _, calm) = app.football_match("Calm FC v Quiet United").await;
    let (status, view) = app
        .call(
            "PUT",
            &format!("/v1/admin/markets/{hot_market}/throttle"),
            Some(ADMIN_KEY),
            Some(json!({"bets_per_second": 2})),
        )
        .await;
    assert_eq!((status, view["bets_per_second"].as_u64()), (200, Some(2)), "{view}");
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let (status, body, retry) = bet(&app, &player.access_token, &hot[0], "2.50").await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "market_throttled", "{body}");
            retry_after = retry;
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..2], [201, 201], "the burst is the rate: {statuses:?}");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let (status, _, _) = bet(&app, &player.access_token, &calm[0], "2.50").await;
    assert_eq!(status, 201, "other markets are not throttled");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _, _) = bet(&app, &player.access_token, &hot[0], "2.50").await;
    assert_eq!(status, 201, "tokens come back with time");
    // Bad settings and unknown markets.
    let (status, body) = app
        .call(
            "PUT",
            &format!("/v1/admin/markets/{hot_market}/throttle"),
            Some(ADMIN_KEY),
            Some(json!({"bets_per_second": 0})),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_request")), "{body}");
    let (status, _) =
        app.call("PUT", &format!("/v1/admin/markets/{hot_market}/throttle"), Some(ADMIN_KEY), Some(json!({}))).await;
    assert_eq!(status, 400, "the field must be sent, as a number or null");
    let (status, _) = app
        .call("PUT", "/v1/admin/markets/mkt_999/throttle", Some(ADMIN_KEY), Some(json!({"bets_per_second": 5})))
        .await;
    assert_eq!(status, 404);
    let (status, view) = app
        .call(
            "PUT",
            &format!("/v1/admin/markets/{hot_market}/throttle"),
            Some(ADMIN_KEY),
            Some(json!({"bets_per_second": null})),
        )
        .await;
    assert_eq!((status, &view["bets_per_second"]), (200, &Value::Null));
    for _ in 0..4 {
        let (status, body, _) = bet(&app, &player.access_token, &hot[0], "2.50").await;
        assert_eq!(status, 201, "unthrottled: {body}");
    }
}

#[tokio::test]
async fn reads_that_keep_timing_out_open_the_breaker_fail_fast_and_recover() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = gateway::GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    config.book_reply_timeout = Duration::from_millis(100);
    let app = spawn_app_on(&path, Some(dir), config).await;
    // The book stalls for three seconds (a slow dependency): its sequencer is busy.
    let stall = app.engine.read_async(|_| std::thread::sleep(Duration::from_secs(3))).expect("stall");
    let mut codes = Vec::new();
    for _ in 0..gateway::BREAKER_FAILURES + 3 {
        let started = std::time::Instant::now();
        let (status, body) = app.call("GET", "/v1/events", None, None).await;
        assert_eq!(status, 503, "{body}");
        let code = body["error"]["code"].as_str().expect("code").to_string();
        if code == "unavailable" {
            assert!(started.elapsed() < Duration::from_millis(50), "an open breaker answers at once");
        }
        codes.push(code);
    }
    let timeouts = gateway::BREAKER_FAILURES as usize;
    assert!(codes[..timeouts].iter().all(|code| code == "overloaded"), "{codes:?}");
    assert!(codes[timeouts..].iter().all(|code| code == "unavailable"), "then it fails fast: {codes:?}");
    let (_, metrics) = app.call("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().expect("text").to_string();
    assert!(metrics.contains(r#"sportsbook_breaker_state{dependency="book_reads"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"sportsbook_breaker_opens_total{dependency="book_reads"} 1"#), "{metrics}");
    stall.await.expect("the stall ends");
    // After the open period a probe goes through and closes the breaker.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = app.call("GET", "/v1/events", None, None).await;
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the breaker never closed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, metrics) = app.call("GET", "/metrics", None, None).await;
    assert!(metrics.as_str().expect("text").contains(r#"sportsbook_breaker_state{dependency="book_reads"} 0"#));
}

/// Admission control: when even the fastest command of an interval took longer than the
/// target, the next interval refuses new commands at once with 503 and `Retry-After`; an
/// interval with nothing to judge admits again. With a target no reply can meet, the gateway
/// alternates between deciding and shedding, and never lets a request wait.
#[tokio::test]
async fn a_queue_above_the_target_sheds_the_next_interval_then_admits_again() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = gateway::GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    config.admission_target = Duration::from_nanos(1);
    config.admission_samples_min = 1;
    let app = spawn_app_on(&path, Some(dir), config).await;
    // Set up between sheds: each reply makes the next interval shed.
    let admitted = |method: &'static str, path: String, token: Option<String>, body: Value| {
        let app = &app;
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let (status, answer) = app.call(method, &path, token.as_deref(), Some(body.clone())).await;
                if status != 503 {
                    assert!(status < 300, "{path}: {answer}");
                    return answer;
                }
            }
        }
    };
    let event = admitted("POST", "/v1/admin/events".into(), Some(ADMIN_KEY.into()), json!({"name": "Queue FC v Backlog United", "sport": "football", "starts_at": gateway::format_rfc3339(crate::harness::now_ms() + 86_400_000)})).await;
    let market = admitted(
        "POST",
        format!("/v1/admin/events/{}/markets", event["id"].as_str().expect("id")),
        Some(ADMIN_KEY.into()),
        json!({"name": "Match result", "selections": [{"name": "Home", "price": "2.50"}, {"name": "Away", "price": "2.80"}]}),
    )
    .await;
    let selections = [market["selections"][0]["id"].as_str().expect("id").to_string()];
    admitted("POST", "/v1/auth/register".into(), None, json!({"username": "queued", "password": "correct horse battery staple", "date_of_birth": "1990-05-17", "country": "GB", "currency": "EUR"})).await;
    let tokens = admitted(
        "POST",
        "/v1/auth/login".into(),
        None,
        json!({"username": "queued", "password": "correct horse battery staple"}),
    )
    .await;
    let token = tokens["access_token"].as_str().expect("token").to_string();
    admitted(
        "POST",
        "/v1/wallet/deposits".into(),
        Some(token.clone()),
        json!({"amount": "100.00", "payment_ref": "test"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (mut decided, mut shed) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_millis(800);
    while std::time::Instant::now() < deadline {
        let started = std::time::Instant::now();
        let (status, body, retry_after) = bet(&app, &token, &selections[0], "2.50").await;
        match status {
            201 => decided += 1,
            503 => {
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
                assert_eq!(retry_after.as_deref(), Some("1"));
                assert!(started.elapsed() < Duration::from_millis(100), "shed at once");
                shed += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(decided > 0 && shed > 0, "decided {decided}, shed {shed}");
    let (_, metrics) = app.call("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().expect("text").to_string();
    let counted: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(r#"sportsbook_http_shed_total{reason="queue_delay"} "#))
        .and_then(|value| value.parse().ok())
        .expect("the queue_delay series");
    assert!(counted >= shed, "counted {counted}, seen {shed}");
}
