//! Logging never takes the server down: the real `sportsbook serve` with standard output and
//! standard error on `/dev/full` (every write fails with ENOSPC, as on a full disk) keeps
//! serving health checks, registrations, deposits and bets, and counts the lines it dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::binary;

const ADMIN_KEY: &str = "sk_full_disk_test_admin_key";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request with `Connection: close` and extra headers; `None` when the server did
/// not answer (refused, reset, or closed without a response).
fn call(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    key: Option<&str>,
) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(key) = key {
        head.push_str(&format!("Idempotency-Key: {key}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, payload) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok())?;
    Some((status, serde_json::from_str(payload).unwrap_or_else(|_| Value::String(payload.to_string()))))
}

fn answered(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    key: Option<&str>,
) -> (u16, Value) {
    call(address, method, path, token, body, key).unwrap_or_else(|| panic!("{method} {path}: no answer"))
}

#[test]
fn serve_keeps_serving_with_its_log_and_output_on_a_full_disk() {
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let dir = tempfile::tempdir().expect("temporary directory");
    // Nothing can be read from standard output, so the address is chosen here.
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("port").port();
    let address = format!("127.0.0.1:{port}");
    let mut child = binary()
        .args(["serve", "--listen", &address, "--data-dir"])
        .arg(dir.path().join("data"))
        .env("SPORTSBOOK_ADMIN_KEY", ADMIN_KEY)
        // Every request logs a line or more: every one of them fails to be written.
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(full()))
        .stderr(Stdio::from(full()))
        .spawn()
        .expect("spawn the server");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the server exited with {status} before answering /healthz");
        }
        if let Some((200, _)) = call(&address, "GET", "/healthz", None, None, None) {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not answer /healthz in time");
        std::thread::sleep(Duration::from_millis(100));
    }

    let credentials = json!({"username": "fulldisk", "password": "a full disk is no outage 42"});
    let mut register = credentials.clone();
    register["date_of_birth"] = json!("1990-05-17");
    register["country"] = json!("GB");
    register["currency"] = json!("EUR");
    let (status, body) = answered(&address, "POST", "/v1/auth/register", None, Some(&register), None);
    assert_eq!(status, 201, "register: {body}");
    let (status, tokens) = answered(&address, "POST", "/v1/auth/login", None, Some(&credentials), None);
    assert_eq!(status, 200, "login: {tokens}");
    let token = tokens["access_token"].as_str().expect("access token").to_string();
    let deposit = json!({"amount": "50.00", "payment_ref": "full-disk-1"});
    let (status, body) =
        answered(&address, "POST", "/v1/wallet/deposits", Some(&token), Some(&deposit), Some("full-disk-deposit"));
    assert_eq!(status, 201, "deposit: {body}");

    let starts_at = gateway::format_rfc3339(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
            + 86_400_000,
    );
    let event = json!({"name": "Full Disk FC v Log Rotation United", "sport": "football", "starts_at": starts_at});
    let (status, event) = answered(&address, "POST", "/v1/admin/events", Some(ADMIN_KEY), Some(&event), None);
    assert_eq!(status, 201, "event: {event}");
    let market = json!({"name": "Match result", "kind": "1x2", "selections": [
        {"name": "Home", "price": "2.50"}, {"name": "Draw", "price": "3.20"}, {"name": "Away", "price": "2.80"}
    ]});
    let path = format!("/v1/admin/events/{}/markets", event["id"].as_str().expect("event id"));
    let (status, market) = answered(&address, "POST", &path, Some(ADMIN_KEY), Some(&market), None);
    assert_eq!(status, 201, "market: {market}");
    let selection = market["selections"][0]["id"].as_str().expect("selection id");
    let bet = json!({"type": "single", "legs": [{"selection_id": selection, "price": "2.50"}], "stake": "10.00"});
    let (status, body) = answered(&address, "POST", "/v1/bets", Some(&token), Some(&bet), Some("full-disk-bet"));
    assert_eq!(status, 201, "bet: {body}");
    let (status, wallet) = answered(&address, "GET", "/v1/wallet", Some(&token), None, None);
    assert_eq!((status, wallet["balance"].as_str()), (200, Some("40.00")), "{wallet}");

    // The lines were dropped and counted, and the process is still up and serving.
    let (status, metrics) = answered(&address, "GET", "/metrics", None, None, None);
    assert_eq!(status, 200, "{metrics}");
    let text = metrics.as_str().expect("metrics text");
    let dropped: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("sportsbook_log_write_errors_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sportsbook_log_write_errors_total in\n{text}"));
    assert!(dropped > 0, "no log write failed: {dropped}");
    assert!(child.try_wait().expect("wait").is_none(), "the server died");
    assert_eq!(answered(&address, "GET", "/healthz", None, None, None).0, 200);

    let signalled = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    assert!(signalled.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status}");
}
