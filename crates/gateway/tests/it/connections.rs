//! Connection limits over real sockets: half-sent heads and idle keep-alive connections are
//! closed after their timeouts, the connection cap closes the longest idle connections so that
//! new clients are still answered (and answers 503 when every connection is busy), while
//! active keep-alive clients and WebSocket streams keep working.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{spawn_app_on, TestApp};

/// The longest any step below may take before the test fails (the limits are far shorter).
const WAIT: Duration = Duration::from_secs(10);

async fn spawn_with(change: impl FnOnce(&mut gateway::GatewayConfig)) -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = gateway::GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    change(&mut config);
    spawn_app_on(&path, Some(dir), config).await
}

/// Waits until the server closes `stream` (end of file or a reset); returns how long it took,
/// or `None` if it was still open after `within`. Bytes the server sends are read and dropped.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether the server closed `stream` already (looked at for a moment).
async fn is_closed(stream: &mut TcpStream) -> bool {
    closed_within(stream, Duration::from_millis(20)).await.is_some()
}

/// Sends one keep-alive request on `stream` and reads its response; returns the status and
/// the body.
async fn exchange(stream: &mut TcpStream, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    read_response(stream).await
}

async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read =
            tokio::time::timeout(WAIT, stream.read(&mut buffer)).await.expect("an answer in time").expect("read");
        assert!(read > 0, "closed before the response was complete: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&received).to_string();
        let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok()).flatten()
            })
            .expect("content-length");
        if body.len() >= length {
            let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("status");
            return (status, body.to_string());
        }
    }
}

async fn metric(app: &TestApp, line_prefix: &str) -> f64 {
    let text = app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(line_prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in\n{text}"))
}

#[tokio::test]
async fn a_half_sent_head_and_a_silent_connection_are_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(800);
    let app = spawn_with(|config| {
        config.header_read_timeout = timeout;
        config.keep_alive_idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut half = TcpStream::connect(app.address).await.expect("connect");
    half.write_all(b"GET /v1/events HTTP/1.1\r\nHost: test\r\nX-Slow: ").await.expect("send");
    let mut silent = TcpStream::connect(app.address).await.expect("connect");
    let (half_closed, silent_closed) = tokio::join!(closed_within(&mut half, WAIT), closed_within(&mut silent, WAIT));
    for (what, closed) in [("half-sent head", half_closed), ("silent connection", silent_closed)] {
        let closed = closed.unwrap_or_else(|| panic!("the {what} was still open after {WAIT:?}"));
        assert!(closed >= timeout - Duration::from_millis(50), "the {what} closed too early: {closed:?}");
        assert!(closed < timeout + Duration::from_secs(3), "the {what} closed late: {closed:?}");
    }
    // A head sent slowly within the limit is answered.
    let mut slow = TcpStream::connect(app.address).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("send");
    tokio::time::sleep(timeout / 4).await;
    slow.write_all(b"Host: test\r\n").await.expect("send");
    tokio::time::sleep(timeout / 4).await;
    slow.write_all(b"\r\n").await.expect("send");
    assert_eq!(read_response(&mut slow).await.0, 200, "a head sent in three parts within the limit");
    assert!(metric(&app, "sportsbook_http_connections_closed_total{reason=\"header_timeout\"} ").await >= 2.0);
    app.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_an_active_one_is_not() {
    let idle_timeout = Duration::from_millis(800);
    let app = spawn_with(|config| {
        config.header_read_timeout = Duration::from_secs(30);
        config.keep_alive_idle_timeout = idle_timeout;
    })
    .await;
    let mut idle = TcpStream::connect(app.address).await.expect("connect");
    let mut active = TcpStream::connect(app.address).await.expect("connect");
    assert_eq!(exchange(&mut idle, "/healthz").await.0, 200);
    // The active client sends a request every fifth of the idle timeout, for three timeouts.
    let started = Instant::now();
    while started.elapsed() < idle_timeout * 3 {
        assert_eq!(exchange(&mut active, "/v1/events").await.0, 200, "after {:?}", started.elapsed());
        tokio::time::sleep(idle_timeout / 5).await;
    }
    assert!(is_closed(&mut idle).await, "the idle connection was still open after {:?}", started.elapsed());
    assert!(!is_closed(&mut active).await, "the active connection was closed");
    assert_eq!(exchange(&mut active, "/healthz").await.0, 200);
    // Left alone, the active one goes too.
    let closed = closed_within(&mut active, WAIT).await.expect("closed once idle");
    assert!(
        closed >= idle_timeout - Duration::from_millis(50) && closed < idle_timeout + Duration::from_secs(3),
        "{closed:?}"
    );
    assert!(metric(&app, "sportsbook_http_connections_closed_total{reason=\"idle_timeout\"} ").await >= 2.0);
    app.stop().await;
}

#[tokio::test]
async fn at_the_connection_cap_the_longest_idle_connections_make_room_for_new_clients() {
    const CAP: usize = 50;
    const OPENED: usize = 80;
    let app = spawn_with(|config| {
        config.connections_max = CAP;
        // Long limits: only the cap closes connections here.
        config.header_read_timeout = Duration::from_secs(60);
        config.keep_alive_idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut idle = Vec::new();
    for index in 0..OPENED {
        let mut stream = TcpStream::connect(app.address).await.expect("connect");
        // Half of them sent a request and wait on the kept-alive connection, half sent half a head.
        if index % 2 == 0 {
            assert_eq!(exchange(&mut stream, "/healthz").await.0, 200);
        } else {
            stream.write_all(b"GET /v1/events HTTP/1.1\r\n").await.expect("send");
        }
        idle.push(stream);
    }
    // A new client is answered at once.
    let started = Instant::now();
    let fresh = reqwest::Client::new();
    let response = tokio::time::timeout(WAIT, fresh.get(app.url("/v1/events")).send()).await;
    let status = response.expect("an answer in time").expect("response").status();
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // No more than the cap stayed open, and those closed were the first opened.
    let mut open = Vec::new();
    for stream in &mut idle {
        open.push(!is_closed(stream).await);
    }
    let still_open = open.iter().filter(|open| **open).count();
    assert!(still_open < CAP, "{still_open} of {OPENED} idle connections still open with a cap of {CAP}");
    let first_open = open.iter().position(|open| *open).expect("some idle connections stay open");
    assert!(open[first_open..].iter().all(|open| *open), "not the longest idle were closed: {open:?}");
    assert!(
        metric(&app, "sportsbook_http_connections_closed_total{reason=\"evicted\"} ").await >= (OPENED - CAP) as f64
    );
    app.stop().await;
}

#[tokio::test]
async fn at_the_connection_cap_with_every_connection_busy_a_new_one_gets_503() {
    const CAP: usize = 4;
    let app = spawn_with(|config| {
        config.connections_max = CAP;
        config.header_read_timeout = Duration::from_secs(60);
        config.keep_alive_idle_timeout = Duration::from_secs(60);
    })
    .await;
    // Each holds a request in its handler: the head is complete, the body is not.
    let mut busy = Vec::new();
    for _ in 0..CAP {
        let mut stream = TcpStream::connect(app.address).await.expect("connect");
        stream
            .write_all(b"POST /v1/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            .await
            .expect("send");
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = TcpStream::connect(app.address).await.expect("connect");
    refused.write_all(b"GET /v1/events HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, refused.read_to_end(&mut answer)).await.expect("closed in time").expect("read");
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").expect("body").1).expect("JSON");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    // Once one busy connection is gone, there is room again.
    drop(busy.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut stream = TcpStream::connect(app.address).await.expect("connect");
        let (status, _) = exchange(&mut stream, "/healthz").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a connection closed: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(busy);
    app.stop().await;
}

#[tokio::test]
async fn a_websocket_stream_outlives_the_http_timeouts_and_the_cap() {
    let app = spawn_with(|config| {
        config.header_read_timeout = Duration::from_millis(700);
        config.keep_alive_idle_timeout = Duration::from_millis(700);
        config.connections_max = 2;
    })
    .await;
    let player = app.player("streamer").await;
    let (_, market, _) = app.football_match("Stream FC v Timeout Town").await;
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/v1/stream",
        app.address
    ))
    .expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {}", player.access_token).parse().expect("header"));
    let (mut client, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    assert_eq!(response.status(), 101);
    // Longer than both timeouts, with other clients filling the cap meanwhile.
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(TcpStream::connect(app.address).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    client.send(Message::text(json!({"op": "subscribe", "markets": [market]}).to_string())).await.expect("send");
    let snapshot = loop {
        let message = tokio::time::timeout(WAIT, client.next()).await.expect("a message in time");
        if let Message::Text(text) = message.expect("open").expect("message") {
            let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if value["type"] != "heartbeat" {
                break value;
            }
        }
    };
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    for stream in &mut others {
        assert!(is_closed(stream).await, "a silent HTTP connection outlived the header timeout");
    }
    app.stop().await;
}
