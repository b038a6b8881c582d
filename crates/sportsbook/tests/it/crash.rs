//! Process-level crash test: the real server under concurrent clients is killed with SIGKILL at
//! random moments, several times, and restarted on the same data directory. Every acknowledged
//! bet and deposit must be there exactly once; every unacknowledged request, retried with its
//! idempotency key, must take effect at most once; the ledger must balance.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::server::{request, Server};

const ADMIN_KEY: &str = "sk_crash_test_admin_key";
const CLIENTS: usize = 4;
const CRASHES: usize = 3;

/// What a client sent: the idempotency key, what kind, and the id the server acknowledged
/// (None when the server died or refused before answering).
#[derive(Clone, Debug)]
struct Sent {
    key: String,
    deposit: bool,
    body: Value,
    acknowledged: Option<String>,
}

fn send(address: &str, token: &str, sent: &Sent) -> Option<(u16, Value)> {
    // A dead server shows up as a failed connection or an empty reply: not acknowledged.
    let path = if sent.deposit { "/v1/wallet/deposits" } else { "/v1/bets" };
    request_with_key(address, path, token, &sent.body, &sent.key)
}

pub(crate) fn request_with_key(
    address: &str,
    path: &str,
    token: &str,
    body: &Value,
    key: &str,
) -> Option<(u16, Value)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, payload) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok())?;
    Some((status, serde_json::from_str(payload).unwrap_or(Value::Null)))
}

/// Sends until the server answers with something other than a rate limit or overload.
fn answered(address: &str, token: &str, sent: &Sent) -> (u16, Value) {
    for _ in 0..600 {
        match send(address, token, sent) {
            Some((429 | 503, _)) | None => std::thread::sleep(Duration::from_millis(50)),
            Some(answer) => return answer,
        }
    }
    panic!("the restarted server kept refusing {sent:?}");
}

/// A GET that waits out rate limits (the checks above just spent this client's burst).
fn get_answered(server: &Server, path: &str, token: &str) -> (u16, Value) {
    for _ in 0..600 {
        match server.get(path, Some(token)) {
            (429 | 503, _) => std::thread::sleep(Duration::from_millis(50)),
            answer => return answer,
        }
    }
    panic!("the server kept refusing GET {path}");
}

/// Commands between snapshots: small, so that the kills land between snapshots the projector's
/// follower book wrote (`serve` runs no snapshot follower beside its projector) and the restarts
/// recover from them.
const SNAPSHOT_EVERY: &str = "150";

fn start(dir: &std::path::Path) -> Server {
    Server::start(
        dir,
        &["--snapshot-every", SNAPSHOT_EVERY],
        &[("SPORTSBOOK_ADMIN_KEY", ADMIN_KEY), ("SPORTSBOOK_JWT_SECRET", "crash-test-secret-crash-test-secret-0123")],
    )
}

#[test]
fn kill_dash_nine_under_load_loses_nothing_acknowledged_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let server = start(&data);
    // A match to bet on, and one player per client.
    let starts_at = gateway_time_in_a_day();
    let (status, event) = request(
        &server.address,
        "POST",
        "/v1/admin/events",
        Some(ADMIN_KEY),
        Some(&json!({"name": "Crash Derby", "sport": "football", "starts_at": starts_at})),
    );
    assert_eq!(status, 201, "{event}");
    let event_id = event["id"].as_str().expect("event id").to_string();
    let (status, market) = request(
        &server.address,
        "POST",
        &format!("/v1/admin/events/{event_id}/markets"),
        Some(ADMIN_KEY),
        Some(&json!({
            "name": "Match result", "selections": [{"name": "Home", "price": "2.00"}, {"name": "Draw", "price": "3.00"}, {"name": "Away", "price": "4.00"}]
        })),
    );
    assert_eq!(status, 201, "{market}");
    let selections: Vec<String> = market["selections"]
        .as_array()
        .expect("selections")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    let mut tokens = Vec::new();
    for client in 0..CLIENTS {
        let username = format!("crash{client}");
        let (status, body) = server.post("/v1/auth/register", None, &json!({"username": username, "password": "crash test password", "date_of_birth": "1990-01-01", "country": "GB"}));
        assert_eq!(status, 201, "{body}");
        tokens.push(server.login(&username, "crash test password"));
    }

    let log: Arc<Mutex<Vec<(usize, Sent)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut server = Some(server);
    let mut sequence = 0u64;
    let mut recovered_from_snapshots = 0;
    for crash in 0..CRASHES {
        let running = server.take().expect("a running server");
        let address = running.address.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (address, token, stop, log, selections) = (address.clone(), tokens[client].clone(), Arc::clone(&stop), Arc::clone(&log), selections.clone());
                let base = sequence + client as u64 * 1_000_000;
                std::thread::spawn(move || {
                    let mut step = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        step += 1;
                        let deposit = step % 3 == 1;
                        let body = if deposit {
                            json!({"amount": "5.00", "payment_ref": format!("psp-{base}-{step}")})
                        } else {
                            json!({"type": "single", "legs": [{"selection_id": selections[(step % 3) as usize], "price": "2.00"}], "stake": "1.00", "accept_price_changes": "any"})
                        };
                        let mut sent = Sent { key: format!("c{client}-{base}-{step}"), deposit, body, acknowledged: None };
                        match send(&address, &token, &sent) {
                            Some((201 | 202, body)) => sent.acknowledged = body["id"].as_str().map(str::to_string),
                            Some((429 | 503, _)) => std::thread::sleep(Duration::from_millis(20)),
                            Some((status, body)) if status == 422 && body["error"]["code"] == "insufficient_funds" => {}
                            Some((status, body)) => panic!("unexpected answer {status}: {body}"),
                            None => {}
                        }
                        log.lock().expect("log").push((client, sent));
                    }
                })
            })
            .collect();
        // Let the load build, then kill the server mid-flight.
        std::thread::sleep(Duration::from_millis(300 + 250 * crash as u64));
        running.kill();
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.join().expect("client thread");
        }
        sequence += 10_000_000;
        let restarted = start(&data);
        // The killed server wrote no final snapshot: a snapshot recovery starts from was
        // written while it ran, by the projector (or by the sequencer, were the projector's
        // overdue).
        let log = restarted.log();
        if log.contains("snapshot_position=Some(") {
            recovered_from_snapshots += 1;
        }
        server = Some(restarted);
    }
    assert!(recovered_from_snapshots > 0, "no restart recovered from a snapshot written under load");

    // Every request: an acknowledged one must be there with the same id; an unacknowledged one,
    // retried with its key, must come back (first answer or a first-time effect), exactly once.
    let server = server.expect("a running server");
    let entries = log.lock().expect("log").clone();
    let (mut acknowledged, mut retried) = (0, 0);
    let mut effects: BTreeMap<String, String> = BTreeMap::new();
    for (client, sent) in &entries {
        let (status, body) = answered(&server.address, &tokens[*client], sent);
        let id = match (status, body["id"].as_str()) {
            (201 | 202, Some(id)) => Some(id.to_string()),
            (422, _) if body["error"]["code"] == "insufficient_funds" && sent.acknowledged.is_none() => None,
            _ => panic!("retry of {sent:?} answered {status}: {body}"),
        };
        if let Some(acknowledged_id) = &sent.acknowledged {
            acknowledged += 1;
            assert_eq!(id.as_ref(), Some(acknowledged_id), "an acknowledged request must be found with its first id");
        } else {
            retried += 1;
        }
        if let Some(id) = id {
            assert!(effects.insert(id.clone(), sent.key.clone()).is_none(), "{id} answers two different keys");
        }
    }
    assert!(
        acknowledged > 0 && retried > 0,
        "the crashes should leave both kinds: {acknowledged} acknowledged, {retried} retried"
    );

    // Every effect in the book belongs to exactly one key, and the money adds up.
    for (client, token) in tokens.iter().enumerate() {
        let mut deposits = 0i64;
        let mut stakes = 0i64;
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(cursor) => format!("/v1/wallet/transactions?limit=200&cursor={cursor}"),
                None => "/v1/wallet/transactions?limit=200".to_string(),
            };
            let (status, page) = get_answered(&server, &path, token);
            assert_eq!(status, 200, "{page}");
            for item in page["items"].as_array().expect("items") {
                let cents = parse_cents(item["amount"].as_str().expect("amount"));
                match (item["type"].as_str(), item["status"].as_str()) {
                    (Some("deposit"), _) => {
                        deposits += cents;
                        assert!(effects.contains_key(item["id"].as_str().expect("id")), "deposit {item} has no key");
                    }
                    (Some("stake"), Some("pending")) => stakes -= cents,
                    _ => {}
                }
            }
            cursor = page["next_cursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        let (_, wallet) = get_answered(&server, "/v1/wallet", token);
        let balance = parse_cents(wallet["balance"].as_str().expect("balance"));
        let pending = parse_cents(wallet["pending_stakes"].as_str().expect("pending stakes"));
        assert_eq!(balance + pending, deposits, "client {client}: balance plus stakes equals deposits");
        assert_eq!(pending, stakes, "client {client}: open stakes equal the stake holds");
    }
    let (status, log_text) = server.terminate();
    assert!(status.success(), "{log_text}");
    let verified = crate::server::binary().args(["verify", "--data-dir"]).arg(&data).output().expect("verify runs");
    assert!(verified.status.success(), "verify: {}", String::from_utf8_lossy(&verified.stdout));
    println!(
        "crash test: {CRASHES} kills, {} requests, {acknowledged} acknowledged, {retried} unacknowledged and retried",
        entries.len()
    );
}

pub(crate) fn parse_cents(text: &str) -> i64 {
    let negative = text.starts_with('-');
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let value: i64 = digits.parse().expect("an amount");
    if negative {
        -value
    } else {
        value
    }
}

pub(crate) fn gateway_time_in_a_day() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    gateway::format_rfc3339(now + 86_400_000)
}
