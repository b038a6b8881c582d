//! Black-box tests: the edge of the gateway. Rate limits, load shedding, the request deadline,
//! body limits and malformed bodies.

use std::io::{Read, Write};
use std::time::Duration;

use gateway::{GatewayConfig, RateLimit};
use serde_json::{json, Value};

use crate::harness::{spawn_app_on, TestApp};

fn config() -> GatewayConfig {
    GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec())
}

async fn spawn_with(config: GatewayConfig) -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    spawn_app_on(&path, Some(dir), config).await
}

/// Status, `Retry-After` and the JSON body of a GET.
async fn get(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Option<String>, Value) {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|value| value.to_str().expect("ascii").to_string());
    (status, retry_after, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_burst_from_one_principal_is_rate_limited_and_others_are_not() {
    let mut config = config();
    config.rate_limit_per_address = None;
    config.rate_limit_per_principal = Some(RateLimit { per_second: 1, burst: 3 });
    let app = spawn_with(config).await;
    let alice = app.player("alice").await;
    let bob = app.player("bob").await;

    for _ in 0..3 {
        let (status, _, body) = get(&app, "/v1/wallet", Some(&alice.access_token)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, retry_after, body) = get(&app, "/v1/wallet", Some(&alice.access_token)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let seconds: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=2).contains(&seconds), "{seconds}");

    let (status, _, body) = get(&app, "/v1/wallet", Some(&bob.access_token)).await;
    assert_eq!(status, 200, "{body}");
    // Operations routes are never throttled.
    assert_eq!(get(&app, "/healthz", Some(&alice.access_token)).await.0, 200);
    let metrics = app.client.get(app.url("/metrics")).send().await.expect("request").text().await.expect("body");
    assert!(metrics.contains(r#"sportsbook_http_shed_total{reason="rate_limited"} 1"#), "{metrics}");
    assert!(
        metrics.contains(r#"sportsbook_http_requests_total{route="/v1/wallet",method="GET",status="429"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_burst_from_one_address_is_rate_limited() {
    let mut config = config();
    config.rate_limit_per_address = Some(RateLimit { per_second: 1, burst: 2 });
    let app = spawn_with(config).await;
    assert_eq!(get(&app, "/v1/events", None).await.0, 200);
    assert_eq!(get(&app, "/v1/events", None).await.0, 200);
    let (status, retry_after, body) = get(&app, "/v1/events", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")));
    assert!(retry_after.is_some());
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = app.client.get(app.url(path)).send().await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn too_many_requests_in_flight_are_shed_with_retry_after() {
    let mut config = config();
    config.http_in_flight_max = 0;
    let app = spawn_with(config).await;
    let (status, retry_after, body) = get(&app, "/v1/events", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("overloaded")));
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(get(&app, "/readyz", None).await.0, 200);
    let metrics = app.client.get(app.url("/metrics")).send().await.expect("request").text().await.expect("body");
    assert!(metrics.contains(r#"sportsbook_http_shed_total{reason="overloaded"} 1"#), "{metrics}");
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_503() {
    let mut config = config();
    config.request_timeout = Duration::from_millis(200);
    let app = spawn_with(config).await;
    // A client that announces a body and never sends all of it: the handler waits for the
    // body until the deadline answers for it.
    let address = app.address;
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let head = "POST /v1/auth/login HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                    content-length: 100\r\nconnection: close\r\n\r\n{\"username\":";
        stream.write_all(head.as_bytes()).expect("write");
        let mut response = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => response.extend_from_slice(&buffer[..read]),
                Err(error) if response.is_empty() => panic!("no response: {error}"),
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .expect("join");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.to_ascii_lowercase().contains("retry-after: 1"), "{response}");
    assert!(response.contains(r#""code":"timeout""#), "{response}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_with(config()).await;
    let huge = json!({"username": "x".repeat(gateway::BODY_BYTES_MAX + 1), "password": "whatever"});
    let (status, body) = app.call("POST", "/v1/auth/login", None, Some(huge)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("payload_too_large")), "{body}");
}

#[tokio::test]
async fn a_malformed_body_is_400() {
    let app = spawn_with(config()).await;
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body(r#"{"username": "alice", "password": "#)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_with_the_error_shape() {
    let app = crate::harness::spawn_app().await;
    let (status, body) = app.call("GET", "/v1/nowhere", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, body) = app.call("DELETE", "/v1/wallet", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (405, Some("method_not_allowed")));
    let (status, body) = app.call("GET", "/v1/bets?status=open&unknown=1", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")));
}
