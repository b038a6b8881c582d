//! Reality checks end to end: the interval chosen (and refused out of range), a check falling
//! due on book time (the engine's clock moved by the test, as a `Tick` from the sequencer's
//! timer would decide it), the `reality_check` stream message with the time played and the net
//! position, bets refused while it is due, the acknowledgement, and a login starting a new
//! session.

use std::time::Duration;

use book::Command;
use engine::{EngineOptions, ManualClock};
use futures_util::{SinkExt, StreamExt};
use gateway::{GatewayConfig, Metrics, Streams};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{now_ms, serve_engine, start_projector, TestApp};

const PASSWORD: &str = "correct horse battery staple";

/// The stack on an engine whose clock the test moves.
async fn spawn_with_clock(clock: ManualClock) -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    config.admin_key = Some(crate::harness::ADMIN_KEY.to_string());
    let metrics = Metrics::new();
    let streams = Streams::new(&config, &metrics);
    let options =
        EngineOptions { on_commit: vec![metrics.engine_hook(), streams.engine_hook()], ..EngineOptions::default() };
    let engine =
        engine::open_data_dir(&path, book::Config::default(), Box::new(clock), options).expect("open data directory").0;
    let projector = start_projector(&path, &mut config, book::Config::default());
    let mut app = serve_engine(engine, path, Some(dir), config, metrics, streams).await;
    app.projector = Some(projector);
    app
}

async fn bet(app: &TestApp, token: &str, selection: &str) -> (u16, Value) {
    let body = json!({"type": "single", "legs": [{"selection_id": selection, "price": "2.50"}], "stake": "10.00",
        "accept_price_changes": "any"});
    app.call("POST", "/v1/bets", Some(token), Some(body)).await
}

/// The next stream message of `kind`, skipping others (snapshot, balance, bet, heartbeat).
async fn next_of(
    client: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    kind: &str,
) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), client.next()).await.expect("a message in time");
        if let Message::Text(text) = message.expect("open").expect("message") {
            let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if value["type"] == kind {
                return value;
            }
        }
    }
}

#[tokio::test]
async fn a_reality_check_falls_due_on_the_stream_pauses_bets_until_acknowledged() {
    let clock = ManualClock::new(now_ms());
    let app = spawn_with_clock(clock.clone()).await;
    let player = app.funded_player("reality_ann", "100.00").await;
    let token = player.access_token.as_str();
    let (_, _, selections) = app.football_match("Reality v Check").await;

    // Without a choice: nothing, and nothing to acknowledge.
    let (status, view) = app.call("GET", "/v1/reality-check", Some(token), None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["interval_minutes"], Value::Null);
    assert_eq!(view["due"], json!(false));
    let (status, body) = app.call("POST", "/v1/reality-check/acknowledge", Some(token), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("no_reality_check_due")), "{body}");

    // Bad input: out of range, missing, of the wrong type, unknown fields.
    for interval in [json!(9), json!(241), json!(0)] {
        let (status, body) =
            app.call("PUT", "/v1/reality-check", Some(token), Some(json!({"interval_minutes": interval}))).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_request")), "{interval}: {body}");
    }
    for bad in [json!({}), json!({"interval_minutes": "10"}), json!({"interval_minutes": 10, "colour": "red"})] {
        let (status, body) = app.call("PUT", "/v1/reality-check", Some(token), Some(bad.clone())).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{bad}: {body}");
    }
    assert_eq!(app.call("PUT", "/v1/reality-check", None, Some(json!({"interval_minutes": 10}))).await.0, 401);

    // Every 10 minutes; the session starts now.
    let (status, view) = app.call("PUT", "/v1/reality-check", Some(token), Some(json!({"interval_minutes": 10}))).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!((view["interval_minutes"].as_u64(), view["due"].as_bool()), (Some(10), Some(false)), "{view}");
    assert_eq!(view["net_position"], json!("0.00"));
    assert!(view["next_due_at"].is_string() && view["session_started_at"].is_string(), "{view}");

    // A stake is money out of the session's net position.
    let (status, placed) = bet(&app, token, &selections[0]).await;
    assert_eq!(status, 201, "{placed}");
    let (_, view) = app.call("GET", "/v1/reality-check", Some(token), None).await;
    assert_eq!(view["net_position"], json!("-10.00"), "{view}");

    let url = format!("ws://{}/v1/stream?token={token}", app.address);
    let (mut client, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
    client.send(Message::text(json!({"op": "subscribe", "account": true}).to_string())).await.expect("send");
    let snapshot = next_of(&mut client, "snapshot").await;

    // Ten minutes of book time later the check falls due: the sequencer's timer would tick;
    // here the test ticks once the clock has moved.
    clock.advance(10 * 60_000 + 1_000);
    let engine = app.engine.clone();
    let ticked = tokio::task::spawn_blocking(move || engine.submit(Command::Tick)).await.expect("join");
    assert!(matches!(ticked, Ok(Ok(book::Ack::Done))), "{ticked:?}");
    let message = next_of(&mut client, "reality_check").await;
    assert!(message["seq"].as_u64() > snapshot["seq"].as_u64(), "{message}");
    assert_eq!(message["net_position"], json!("-10.00"), "{message}");
    assert_eq!(message["session_started_at"], view["session_started_at"], "{message}");
    let played = message["time_played_seconds"].as_u64().expect("seconds");
    assert!((601..=610).contains(&played), "{message}");

    let (_, due) = app.call("GET", "/v1/reality-check", Some(token), None).await;
    assert_eq!((due["due"].as_bool(), &due["next_due_at"]), (Some(true), &Value::Null), "{due}");
    let (status, body) = bet(&app, token, &selections[1]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("reality_check_due")), "{body}");
    // Stopping the checks is no way around the pause: the due one is acknowledged first.
    let (status, body) =
        app.call("PUT", "/v1/reality-check", Some(token), Some(json!({"interval_minutes": null}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("reality_check_due")), "{body}");

    let (status, acknowledged) = app.call("POST", "/v1/reality-check/acknowledge", Some(token), None).await;
    assert_eq!((status, acknowledged["due"].as_bool()), (200, Some(false)), "{acknowledged}");
    assert!(acknowledged["next_due_at"].is_string(), "{acknowledged}");
    let (status, again) = app.call("POST", "/v1/reality-check/acknowledge", Some(token), None).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("no_reality_check_due")), "{again}");
    let (status, placed) = bet(&app, token, &selections[1]).await;
    assert_eq!(status, 201, "{placed}");

    // A login starts a new session: time played and the net position count from zero.
    let (status, _) =
        app.call("POST", "/v1/auth/login", None, Some(json!({"username": "reality_ann", "password": PASSWORD}))).await;
    assert_eq!(status, 200);
    let (_, session) = app.call("GET", "/v1/reality-check", Some(token), None).await;
    assert_eq!(session["net_position"], json!("0.00"), "{session}");
    assert!(session["session_started_at"] != view["session_started_at"], "{session}");

    // Stopped: nothing due any more, bets as usual.
    let (status, stopped) =
        app.call("PUT", "/v1/reality-check", Some(token), Some(json!({"interval_minutes": null}))).await;
    assert_eq!((status, &stopped["interval_minutes"]), (200, &Value::Null), "{stopped}");
    let commands = crate::actors::audited(&app).await;
    for kind in ["set_reality_check", "acknowledge_reality_check", "start_session"] {
        assert_eq!(crate::actors::actor_of(&commands, kind)["kind"], json!("player"), "{kind}");
    }
}
