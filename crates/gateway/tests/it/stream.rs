//! `GET /v1/stream` over real sockets with a real WebSocket client (tokio-tungstenite): snapshots
//! then deltas, account streams, limits, resume, and slow consumers.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::{spawn_app, spawn_app_on, TestApp, ADMIN_KEY};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

fn test_config() -> gateway::GatewayConfig {
    gateway::GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec())
}

async fn spawn_with(change: impl FnOnce(&mut gateway::GatewayConfig)) -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = test_config();
    change(&mut config);
    spawn_app_on(&path, Some(dir), config).await
}

/// Connects with the token in `Authorization`.
async fn connect(app: &TestApp, token: &str) -> Client {
    let mut request = format!("ws://{}/v1/stream", app.address).into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let (client, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    assert_eq!(response.status(), 101);
    client
}

/// Connects with `?token=`, as a browser would.
async fn connect_query(app: &TestApp, token: &str) -> Client {
    let url = format!("ws://{}/v1/stream?token={token}", app.address);
    tokio_tungstenite::connect_async(url).await.expect("upgrade").0
}

/// The status of a refused upgrade.
async fn refused(app: &TestApp, token: &str) -> (u16, Value) {
    let url = format!("ws://{}/v1/stream?token={token}", app.address);
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_ref().map(|body| serde_json::from_slice(body).unwrap_or(Value::Null));
            (response.status().as_u16(), body.unwrap_or(Value::Null))
        }
        Err(error) => panic!("unexpected error: {error}"),
    }
}

async fn send(client: &mut Client, message: Value) {
    client.send(Message::text(message.to_string())).await.expect("send");
}

/// The next JSON message that is not a heartbeat.
async fn next(client: &mut Client) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, client.next()).await.expect("a message in time");
        match message.expect("open").expect("message") {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if value["type"] != "heartbeat" {
                    return value;
                }
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Nothing but heartbeats for `quiet`.
async fn assert_silent(client: &mut Client, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
                assert_eq!(value["type"], "heartbeat", "expected silence, got {value}");
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("connection ended: {other:?}"),
        }
    }
}

async fn set_price(app: &TestApp, market: &str, selection: &str, price: &str) -> Value {
    let (status, body) = app
        .call(
            "PUT",
            &format!("/v1/admin/markets/{market}/prices"),
            Some(ADMIN_KEY),
            Some(json!({"prices": [{"selection_id": selection, "price": price}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn seq(message: &Value) -> u64 {
    message["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {message}"))
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let (_, text) = app.call("GET", "/metrics", None, None).await;
    let text = text.as_str().expect("metrics text").to_string();
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics"))
}

#[tokio::test]
async fn a_price_change_reaches_a_market_subscriber_after_its_snapshot() {
    let app = spawn_app().await;
    let (event, market, selections) = app.football_match("Arsenal v Chelsea").await;
    let player = app.player("alice").await;
    let mut client = connect(&app, &player.access_token).await;
    send(&mut client, json!({"op": "subscribe", "markets": [market]})).await;

    let snapshot = next(&mut client).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["markets"][0]["id"], market.as_str());
    assert_eq!(snapshot["markets"][0]["event_id"], event.as_str());
    assert_eq!(snapshot["markets"][0]["status"], "open");
    assert_eq!(snapshot["markets"][0]["in_play"], false);
    assert_eq!(snapshot["markets"][0]["selections"][0]["price"], "2.50");
    let version = snapshot["markets"][0]["selections"][0]["price_version"].as_u64().expect("version");

    let rest = set_price(&app, &market, &selections[0], "2.75").await;
    let price = next(&mut client).await;
    assert_eq!(price["type"], "price");
    assert_eq!(price["market_id"], market.as_str());
    assert_eq!(price["event_id"], event.as_str());
    assert_eq!(price["selection_id"], selections[0].as_str());
    assert_eq!(price["price"], "2.75");
    assert_eq!(price["price_version"], version + 1);
    assert_eq!(price["price_version"], rest["selections"][0]["price_version"]);
    assert!(seq(&price) > seq(&snapshot), "{price} after {snapshot}");

    let second = set_price(&app, &market, &selections[1], "3.10").await;
    let price = next(&mut client).await;
    assert_eq!((price["selection_id"].as_str(), price["price"].as_str()), (Some(selections[1].as_str()), Some("3.10")));
    assert_eq!(price["price_version"], second["selections"][1]["price_version"]);
    assert!(metric(&app, "sportsbook_stream_connections").await >= 1.0);
    assert!(metric(&app, "sportsbook_stream_messages_total").await >= 2.0);
}

#[tokio::test]
async fn an_event_subscription_gets_its_markets_and_unsubscribe_stops_them() {
    let app = spawn_app().await;
    let (event, market, selections) = app.football_match("Leeds v Everton").await;
    let (_, other_market, other_selections) = app.football_match("Spurs v Fulham").await;
    let mut client = connect_query(&app, ADMIN_KEY).await;
    send(&mut client, json!({"op": "subscribe", "events": [event]})).await;
    let snapshot = next(&mut client).await;
    assert_eq!(snapshot["type"], "snapshot");
    let markets: Vec<&str> =
        snapshot["markets"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(markets, [market.as_str()]);

    // Another event's prices do not come; this event's do.
    set_price(&app, &other_market, &other_selections[0], "1.90").await;
    set_price(&app, &market, &selections[2], "2.90").await;
    let price = next(&mut client).await;
    assert_eq!((price["market_id"].as_str(), price["price"].as_str()), (Some(market.as_str()), Some("2.90")));

    send(&mut client, json!({"op": "unsubscribe", "events": [event]})).await;
    // The unsubscribe is ordered before the next change by a round trip on the connection.
    send(&mut client, json!({"op": "dance"})).await;
    assert_eq!(next(&mut client).await["code"], "invalid_request");
    set_price(&app, &market, &selections[2], "3.00").await;
    assert_silent(&mut client, Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_suspension_sends_market_status() {
    let app = spawn_app().await;
    let (_, market, _) = app.football_match("Derby v Forest").await;
    let mut client = connect(&app, ADMIN_KEY).await;
    send(&mut client, json!({"op": "subscribe", "markets": [market]})).await;
    assert_eq!(next(&mut client).await["type"], "snapshot");
    let (status, _) = app.call("POST", &format!("/v1/admin/markets/{market}/suspend"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200);
    let message = next(&mut client).await;
    assert_eq!(message["type"], "market_status", "{message}");
    assert_eq!(message["market_id"], market.as_str());
    assert_eq!(message["status"], "suspended");
    let (status, _) = app.call("POST", &format!("/v1/admin/markets/{market}/resume"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200);
    assert_eq!(next(&mut client).await["status"], "open");
}

#[tokio::test]
async fn the_account_stream_shows_a_delayed_bet_pending_then_accepted_and_the_balance() {
    let app = spawn_app().await;
    let (event, _, selections) = app.football_match("Villa v Wolves").await;
    let (status, body) = app
        .call(
            "POST",
            &format!("/v1/admin/events/{event}/in-play"),
            Some(ADMIN_KEY),
            Some(json!({"bet_delay_seconds": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let alice = app.funded_player("alice", "100.00").await;
    let bob = app.funded_player("bob", "50.00").await;
    let mut alice_stream = connect(&app, &alice.access_token).await;
    let mut bob_stream = connect(&app, &bob.access_token).await;
    send(&mut alice_stream, json!({"op": "subscribe", "account": true})).await;
    send(&mut bob_stream, json!({"op": "subscribe", "account": true})).await;
    let snapshot = next(&mut alice_stream).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["account"]["balance"], "100.00");
    assert_eq!(snapshot["account"]["open_bets"], json!([]));
    assert_eq!(next(&mut bob_stream).await["account"]["balance"], "50.00");

    let (status, bet) = app
        .call(
            "POST",
            "/v1/bets",
            Some(&alice.access_token),
            Some(
                json!({"type": "single", "legs": [{"selection_id": selections[0], "price": "2.50"}], "stake": "10.00"}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{bet}");
    let bet_id = bet["id"].as_str().unwrap();
    let mut statuses = Vec::new();
    let mut balances = Vec::new();
    while statuses.len() < 2 {
        let message = next(&mut alice_stream).await;
        match message["type"].as_str() {
            Some("bet") => {
                assert_eq!(message["bet_id"], bet_id);
                statuses.push(message["status"].as_str().unwrap().to_string());
            }
            Some("balance") => balances.push(message["balance"].as_str().unwrap().to_string()),
            _ => panic!("unexpected {message}"),
        }
    }
    assert_eq!(statuses, ["pending", "accepted"]);
    assert_eq!(balances.first().map(String::as_str), Some("90.00"), "the stake is taken at placement");

    // Bob sees nothing of Alice's account, and may not name it.
    assert_silent(&mut bob_stream, Duration::from_millis(300)).await;
    let (status, _) = app
        .call(
            "POST",
            "/v1/wallet/deposits",
            Some(&bob.access_token),
            Some(json!({"amount": "5.00", "payment_ref": "t"})),
        )
        .await;
    assert_eq!(status, 201);
    let balance = next(&mut bob_stream).await;
    assert_eq!((balance["type"].as_str(), balance["balance"].as_str()), (Some("balance"), Some("55.00")));
    send(&mut bob_stream, json!({"op": "subscribe", "account": "acc_1"})).await;
    assert_eq!(next(&mut bob_stream).await["code"], "invalid_request");

    // An operator has no account to subscribe to.
    let mut operator = connect(&app, ADMIN_KEY).await;
    send(&mut operator, json!({"op": "subscribe", "account": true})).await;
    assert_eq!(next(&mut operator).await["code"], "forbidden");
}

#[tokio::test]
async fn the_subscription_and_connection_limits_answer_with_their_codes() {
    let app = spawn_with(|config| {
        config.stream.subscriptions_max = 2;
        config.stream.connections_per_principal_max = 1;
    })
    .await;
    let (_, first, _) = app.football_match("A v B").await;
    let (_, second, _) = app.football_match("C v D").await;
    let (_, third, _) = app.football_match("E v F").await;
    let mut client = connect(&app, ADMIN_KEY).await;
    send(&mut client, json!({"op": "subscribe", "markets": [first, second]})).await;
    assert_eq!(next(&mut client).await["type"], "snapshot");
    send(&mut client, json!({"op": "subscribe", "markets": [third]})).await;
    let error = next(&mut client).await;
    assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some("too_many_subscriptions")));
    send(&mut client, json!({"op": "subscribe", "markets": [first, second, third]})).await;
    assert_eq!(next(&mut client).await["code"], "too_many_subscriptions");

    // A second connection with the same credential is refused at the upgrade.
    let (status, body) = refused(&app, ADMIN_KEY).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "too_many_connections");
    // Once the first is gone, its place is free again.
    client.close(None).await.expect("close");
    drop(client);
    let deadline = Instant::now() + WAIT;
    loop {
        let url = format!("ws://{}/v1/stream?token={ADMIN_KEY}", app.address);
        if tokio_tungstenite::connect_async(url).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the place was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn invalid_messages_get_invalid_request_and_the_connection_stays_usable() {
    let app = spawn_app().await;
    let (_, market, _) = app.football_match("G v H").await;
    let mut client = connect(&app, ADMIN_KEY).await;
    for bad in [
        Message::text("not json"),
        Message::text(r#"{"op":"subscribe","markets":["mkt_1"],"extra":1}"#),
        Message::text(r#"{"op":"subscribe","markets":["sel_1"]}"#),
        Message::text(r#"{"op":"resume"}"#),
        Message::binary(vec![1u8, 2, 3]),
    ] {
        client.send(bad).await.expect("send");
        let error = next(&mut client).await;
        assert_eq!(
            (error["type"].as_str(), error["code"].as_str()),
            (Some("error"), Some("invalid_request")),
            "{error}"
        );
        assert!(error["message"].as_str().is_some_and(|message| !message.is_empty()));
    }
    send(&mut client, json!({"op": "subscribe", "markets": ["mkt_999"]})).await;
    let messages = [next(&mut client).await, next(&mut client).await];
    assert!(messages.iter().any(|message| message["code"] == "not_found"), "{messages:?}");
    send(&mut client, json!({"op": "subscribe", "markets": [market]})).await;
    assert_eq!(next(&mut client).await["type"], "snapshot");
}

#[tokio::test]
async fn a_bad_token_or_a_plain_get_is_refused() {
    let app = spawn_app().await;
    let (status, body) = refused(&app, "not-a-token").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")));
    let (status, body) = refused(&app, "sk_unknown_key").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")));
    let (status, body) = app.call("GET", "/v1/stream", Some(ADMIN_KEY), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (426, Some("upgrade_required")));
    let (status, _) = app.call("GET", "/v1/stream", None, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn resume_replays_the_missed_deltas() {
    let app = spawn_app().await;
    let (_, market, selections) = app.football_match("I v J").await;
    let mut client = connect(&app, ADMIN_KEY).await;
    send(&mut client, json!({"op": "subscribe", "markets": [market]})).await;
    assert_eq!(next(&mut client).await["type"], "snapshot");
    set_price(&app, &market, &selections[0], "2.60").await;
    let last_seen = seq(&next(&mut client).await);
    drop(client);

    // Missed while disconnected.
    set_price(&app, &market, &selections[0], "2.70").await;
    set_price(&app, &market, &selections[1], "3.30").await;
    let mut client = connect(&app, ADMIN_KEY).await;
    send(&mut client, json!({"op": "resume", "seq": last_seen})).await;
    send(&mut client, json!({"op": "subscribe", "markets": [market]})).await;
    let first = next(&mut client).await;
    let second = next(&mut client).await;
    assert_eq!((first["type"].as_str(), first["price"].as_str()), (Some("price"), Some("2.70")), "{first}");
    assert_eq!((second["type"].as_str(), second["price"].as_str()), (Some("price"), Some("3.30")), "{second}");
    assert!(last_seen < seq(&first) && seq(&first) < seq(&second));
    // Then live.
    set_price(&app, &market, &selections[2], "2.95").await;
    assert_eq!(next(&mut client).await["price"], "2.95");

    // A sequence the server does not hold (before this process) gets a snapshot instead.
    let mut client = connect(&app, ADMIN_KEY).await;
    send(&mut client, json!({"op": "resume", "seq": 1})).await;
    send(&mut client, json!({"op": "subscribe", "markets": [market]})).await;
    let snapshot = next(&mut client).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["markets"][0]["selections"][2]["price"], "2.95");
    // And resume after subscribing is refused.
    send(&mut client, json!({"op": "resume", "seq": last_seen})).await;
    assert_eq!(next(&mut client).await["code"], "invalid_request");
}

/// A client that stops reading: its prices conflate, then non-conflatable messages overflow and
/// it is closed with `slow_consumer`, while a normal client keeps getting every update promptly.
#[tokio::test]
async fn a_slow_consumer_is_conflated_then_disconnected_while_others_keep_up() {
    let app = spawn_with(|config| {
        config.stream.queue_messages_max = 4;
        config.stream.queue_messages_hard_max = 16;
        // Thousands of price changes from one address, quickly.
        config.rate_limit_per_address = None;
        config.rate_limit_per_principal = None;
    })
    .await;
    // A market with the most selections, every price changed at once: many messages per
    // change, to fill the socket buffers between the server and the slow client.
    let (market, selections) = winner_market(&app, "K v L", book::constants::SELECTIONS_PER_MARKET_MAX).await;
    // The slow client's receive buffer is small, so its socket fills sooner.
    let mut slow = connect_with_receive_buffer(&app, SLOW_RECEIVE_BUFFER_BYTES).await;
    send(&mut slow, json!({"op": "subscribe", "markets": [market]})).await;
    assert_eq!(next(&mut slow).await["type"], "snapshot");
    let mut normal = connect(&app, ADMIN_KEY).await;
    send(&mut normal, json!({"op": "subscribe", "markets": [market]})).await;
    assert_eq!(next(&mut normal).await["type"], "snapshot");

    // Prices until the slow client's queue conflates; the normal client sees each one at once.
    let mut changes = 0u32;
    while metric(&app, "sportsbook_stream_conflated_total").await == 0.0 {
        assert!(changes < 3_000, "never conflated");
        for _ in 0..10 {
            changes += 1;
            let price = format!("{}.{:02}", 2 + changes % 7, changes % 100);
            set_all_prices(&app, &market, &selections, &price).await;
            // Each arrives (`next` waits at most `WAIT`): the slow client holds nobody up.
            for _ in &selections {
                let message = next(&mut normal).await;
                assert_eq!(message["price"], price.as_str(), "{message}");
            }
        }
    }
    // Market status changes cannot be conflated: they overflow the slow client's queue.
    let mut toggles = 0;
    while metric(&app, "sportsbook_stream_slow_consumers_total").await == 0.0 {
        assert!(toggles < 200, "never disconnected");
        toggles += 1;
        let action = if toggles % 2 == 1 { "suspend" } else { "resume" };
        let (status, _) =
            app.call("POST", &format!("/v1/admin/markets/{market}/{action}"), Some(ADMIN_KEY), None).await;
        assert_eq!(status, 200);
        let message = next(&mut normal).await;
        assert_eq!(message["type"], "market_status");
    }
    // The slow client, reading at last, finds the close frame with its reason after its backlog.
    let reason = loop {
        match tokio::time::timeout(WAIT, slow.next()).await.expect("the close in time") {
            Some(Ok(Message::Close(Some(frame)))) => break frame.reason.to_string(),
            Some(Ok(_)) => {}
            other => panic!("ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(reason, "slow_consumer");
    assert!(metric(&app, "sportsbook_stream_dropped_total").await > 0.0);
    // The normal client is still served.
    set_price(&app, &market, &selections[0], "9.50").await;
    assert_eq!(next(&mut normal).await["price"], "9.50");
}

/// A market of `count` selections priced 5.00 in a new event: its id and the selections' ids.
async fn winner_market(app: &TestApp, event_name: &str, count: usize) -> (String, Vec<String>) {
    let (event, _, _) = app.football_match(event_name).await;
    let names: Vec<Value> =
        (0..count).map(|index| json!({"name": format!("Runner {index}"), "price": "5.00"})).collect();
    let (status, created) = app
        .call(
            "POST",
            &format!("/v1/admin/events/{event}/markets"),
            Some(ADMIN_KEY),
            Some(json!({"name": "Winner", "selections": names})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let market = created["id"].as_str().unwrap().to_string();
    let selections = created["selections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|selection| selection["id"].as_str().unwrap().to_string())
        .collect();
    (market, selections)
}

/// The receive buffer of a client meant to fall behind (`SO_RCVBUF`, set before connecting so
/// the window it advertises stays small).
const SLOW_RECEIVE_BUFFER_BYTES: usize = 4 * 1024;

/// Connects as the operator with a small socket receive buffer.
async fn connect_with_receive_buffer(app: &TestApp, bytes: usize) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(bytes as u32).expect("buffer");
    let stream = socket.connect(app.address).await.expect("connect");
    let mut request = format!("ws://{}/v1/stream", app.address).into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {ADMIN_KEY}").parse().expect("header"));
    tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await.expect("upgrade").0
}

/// Sets every selection of `market` to `price` in one change.
async fn set_all_prices(app: &TestApp, market: &str, selections: &[String], price: &str) {
    let prices: Vec<Value> =
        selections.iter().map(|selection| json!({"selection_id": selection, "price": price})).collect();
    let (status, body) = app
        .call("PUT", &format!("/v1/admin/markets/{market}/prices"), Some(ADMIN_KEY), Some(json!({"prices": prices})))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A client that stops reading: once its socket buffers are full its queue ages past
/// `price_age_max`, and from then on each new price replaces the queued ones of its selection.
/// When it reads again it gets what the kernel held, then the latest price per selection, not
/// the backlog; a normal client alongside gets every update. Only age conflates here: the
/// queue's length limit is out of reach.
#[tokio::test]
async fn a_client_that_stops_reading_gets_the_latest_prices_when_it_reads_again() {
    const SEND_BUFFER_BYTES: usize = 4 * 1024;
    const WRITE_FRAMES_MAX: usize = 4;
    const SELECTIONS: usize = 30;
    const ROUNDS: usize = 40;
    let price_age_max = Duration::from_millis(50);
    let app = spawn_with(|config| {
        config.stream.socket_send_buffer_bytes = Some(SEND_BUFFER_BYTES);
        config.stream.price_age_max = price_age_max;
        config.stream.write_frames_max = WRITE_FRAMES_MAX;
        config.stream.queue_messages_max = 100_000;
        config.stream.queue_messages_hard_max = 100_000;
        config.rate_limit_per_address = None;
        config.rate_limit_per_principal = None;
    })
    .await;
    let (market, selections) = winner_market(&app, "M v N", SELECTIONS).await;
    let mut slow = connect_with_receive_buffer(&app, SLOW_RECEIVE_BUFFER_BYTES).await;
    send(&mut slow, json!({"op": "subscribe", "markets": [market]})).await;
    assert_eq!(next(&mut slow).await["type"], "snapshot");
    let mut normal = connect(&app, ADMIN_KEY).await;
    send(&mut normal, json!({"op": "subscribe", "markets": [market]})).await;
    assert_eq!(next(&mut normal).await["type"], "snapshot");

    // Each round sets every selection to a price unique in the test; the slow client reads
    // nothing. The normal client reads every round before the next, so its queue is empty
    // whenever a price comes and it never conflates.
    let price_of = |round: usize| format!("{}.{:02}", 2 + round / 100, round % 100);
    let mut frame_bytes_min = usize::MAX;
    for round in 1..=ROUNDS {
        let price = price_of(round);
        set_all_prices(&app, &market, &selections, &price).await;
        for selection in &selections {
            let message = next(&mut normal).await;
            assert_eq!((&message["selection_id"], &message["price"]), (&json!(selection), &json!(price)), "{message}");
            frame_bytes_min = frame_bytes_min.min(message.to_string().len());
        }
        // Let the slow client's queue age past the limit between rounds (a sleep to let time
        // pass, not a bound on how long anything takes).
        tokio::time::sleep(price_age_max + Duration::from_millis(10)).await;
    }

    // The slow client reads again, until it has the last price of every selection.
    let last = price_of(ROUNDS);
    let mut seen: Vec<(String, String, u64)> = Vec::new();
    let mut missing: std::collections::HashSet<&String> = selections.iter().collect();
    while !missing.is_empty() {
        let message = next(&mut slow).await;
        assert_eq!(message["type"], "price", "{message}");
        let selection = message["selection_id"].as_str().unwrap().to_string();
        let price = message["price"].as_str().unwrap().to_string();
        if price == last {
            missing.remove(&selection);
        }
        seen.push((selection, price, seq(&message)));
    }
    // In order, and each selection's prices only ever newer.
    assert!(seen.windows(2).all(|pair| pair[0].2 < pair[1].2), "sequences go up");
    for selection in &selections {
        let rounds: Vec<&str> = seen.iter().filter(|seen| &seen.0 == selection).map(|seen| seen.1.as_str()).collect();
        assert!(rounds.windows(2).all(|pair| pair[0] < pair[1]), "{selection}: {rounds:?}");
    }
    // Old prices come only from what was already past the outbox when the client stopped: the
    // kernel's buffers (Linux doubles both sizes) and the writer's frames in hand. After the
    // first latest price, nothing old.
    let first_latest = seen.iter().position(|seen| seen.1 == last).expect("a latest price");
    assert!(seen[first_latest..].iter().all(|seen| seen.1 == last), "old after new: {seen:?}");
    let held_max = 2 * (SEND_BUFFER_BYTES + SLOW_RECEIVE_BUFFER_BYTES) / frame_bytes_min + WRITE_FRAMES_MAX;
    assert!(first_latest <= held_max, "{first_latest} old prices, more than the {held_max} the buffers hold");
    assert_eq!(seen.len() - first_latest, SELECTIONS);
    // Every price the slow client did not get was conflated (none was dropped, it was not
    // closed, and the normal client conflated nothing).
    let pushed = (ROUNDS * SELECTIONS) as f64;
    assert_eq!(metric(&app, "sportsbook_stream_conflated_total").await, pushed - seen.len() as f64);
    assert_eq!(metric(&app, "sportsbook_stream_slow_consumers_total").await, 0.0);

    // Both stay live.
    set_price(&app, &market, &selections[0], "9.50").await;
    assert_eq!(next(&mut normal).await["price"], "9.50");
    assert_eq!(next(&mut slow).await["price"], "9.50");
}

/// The whole path of a price: a provider pushes an odds change to `POST /v1/feed/messages`, the
/// book applies it, and a subscribed client receives the new price; a duplicate of the message
/// sends nothing more.
#[tokio::test]
async fn a_feed_odds_change_reaches_a_subscribed_client_once() {
    let app = spawn_app().await;
    let now = crate::harness::now_ms();
    let fixture = json!({"provider": "acme", "sequence": 1, "timestamp": now, "items": [
        {"type": "fixture", "event": "m9", "name": "Feed FC v Stream United", "sport": "football", "starts_at": now + 86_400_000},
        {"type": "market", "event": "m9", "market": "1x2", "name": "Match result",
         "selections": [{"id": "h", "name": "Home", "price": "2.00"}, {"id": "a", "name": "Away", "price": "1.90"}]}]});
    let (status, body) =
        app.call("POST", "/v1/feed/messages", Some(ADMIN_KEY), Some(json!({"messages": [fixture]}))).await;
    assert_eq!(status, 200, "{body}");
    let (_, events) = app.call("GET", "/v1/events", None, None).await;
    let event = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["name"] == "Feed FC v Stream United")
        .expect("event")
        .clone();
    let market = event["markets"][0]["id"].as_str().expect("market").to_string();
    let home = event["markets"][0]["selections"][0]["id"].as_str().expect("selection").to_string();

    let mut client = connect(&app, ADMIN_KEY).await;
    send(&mut client, json!({"op": "subscribe", "markets": [market]})).await;
    let snapshot = next(&mut client).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let odds = json!({"provider": "acme", "sequence": 2, "timestamp": now + 5, "items": [
        {"type": "odds_change", "event": "m9", "markets": [{"market": "1x2", "prices": [{"selection": "h", "price": "2.25"}]}]}]});
    let (status, body) =
        app.call("POST", "/v1/feed/messages", Some(ADMIN_KEY), Some(json!({"messages": [odds.clone()]}))).await;
    assert_eq!((status, body["results"][0]["status"].as_str()), (200, Some("applied")), "{body}");
    let price = next(&mut client).await;
    assert_eq!(price["type"], "price", "{price}");
    assert_eq!((price["selection_id"].as_str(), price["price"].as_str()), (Some(home.as_str()), Some("2.25")));
    assert!(seq(&price) > seq(&snapshot));
    let (_, body) = app.call("POST", "/v1/feed/messages", Some(ADMIN_KEY), Some(json!({"messages": [odds]}))).await;
    assert_eq!(body["results"][0]["status"], "duplicate");
    assert_silent(&mut client, Duration::from_millis(300)).await;
}
