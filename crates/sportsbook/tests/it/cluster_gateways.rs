//! Cluster gateways (issue 15 item 3): two `sportsbook book` processes and two `sportsbook
//! gateway` processes on a real 3-node NATS cluster (started here; the test fails saying why
//! when `nats-server` is missing). A player registered, funded and betting through gateway A
//! reads it at once on A and soon on B with the same token (one JWT secret); a WebSocket client
//! on B sees the price a trader set on A; `GET /v1/admin/cluster` lists the leader, the standby
//! and both gateways; then the leader is killed with SIGKILL while keyed deposits go through
//! both gateways, each retried with its key until acknowledged: afterwards the balance is
//! exactly the acknowledged deposits on both gateways and the journal's ledger balances.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use journal_nats::cluster::LocalCluster;
use journal_nats::{NatsJournal, NatsJournalOptions};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::cluster::{start_nats, BookProcess};
use crate::server::binary;

pub(crate) const ADMIN_KEY: &str = "sk_cluster_test_admin_key_0123456789abcdef";
const DEPOSITS_PER_WORKER: u64 = 50;
pub(crate) const JWT_SECRET: &str = "a-shared-secret-of-the-gateways-0123456789";

pub(crate) struct GatewayProcess {
    child: Child,
    pub(crate) address: String,
    log: std::path::PathBuf,
}

impl GatewayProcess {
    fn start(cluster: &LocalCluster, dir: &Path, name: &str) -> GatewayProcess {
        GatewayProcess::start_with(cluster, dir, name, &[])
    }

    /// A gateway with `extra` flags (`--read-models ...`).
    pub(crate) fn start_with(cluster: &LocalCluster, dir: &Path, name: &str, extra: &[&str]) -> GatewayProcess {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("a log file");
        let mut child = binary()
            .args(["gateway", "--nats", &cluster.urls().join(","), "--listen", "127.0.0.1:0", "--gateway-id", name])
            .args(["--rate-limit-per-address", "off", "--rate-limit-per-credential", "off", "--data-dir"])
            .arg(dir.join(name))
            .args(extra)
            .env("SPORTSBOOK_JWT_SECRET", JWT_SECRET)
            .env("SPORTSBOOK_ADMIN_KEY", ADMIN_KEY)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start `sportsbook gateway`");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("its first line");
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(line.contains(r#""role": "gateway""#), "unexpected first line {line:?}; log:\n{log_text}");
        let url: Value = serde_json::from_str(&line).expect("a JSON line");
        let address = url["url"].as_str().expect("a url").trim_start_matches("http://").to_owned();
        GatewayProcess { child, address, log }
    }

    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        request(&self.address, method, path, token, body, key)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `/readyz` 200 (a leader known, the replica caught up).
    pub(crate) fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.call("GET", "/readyz", None, None, None);
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "not ready: {body}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with an optional `Idempotency-Key`.
pub(crate) fn request(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    key: Option<&str>,
) -> (u16, Value) {
    let Ok(mut stream) = TcpStream::connect(address) else { return (0, Value::Null) };
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
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
    if stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).is_err() {
        return (0, Value::Null);
    }
    let mut response = Vec::new();
    if stream.read_to_end(&mut response).is_err() {
        return (0, Value::Null);
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let value = serde_json::from_str(payload).unwrap_or(Value::Null);
    (status, value)
}

pub(crate) fn created(answer: (u16, Value), what: &str) -> Value {
    assert!(answer.0 == 201 || answer.0 == 200, "{what}: {} {}", answer.0, answer.1);
    answer.1
}

#[test]
fn two_gateways_over_two_book_nodes_share_players_prices_and_survive_a_leader_kill() {
    let dir = TempDir::new().expect("temporary directory");
    let nats = start_nats(dir.path());
    let books = vec![BookProcess::start(&nats, dir.path(), "book-a"), BookProcess::start(&nats, dir.path(), "book-b")];
    let a = GatewayProcess::start(&nats, dir.path(), "gateway-a");
    let b = GatewayProcess::start(&nats, dir.path(), "gateway-b");
    a.wait_ready();
    b.wait_ready();

    // A player and a market, all through gateway A.
    let password = "correct horse battery staple";
    created(
        a.call(
            "POST",
            "/v1/auth/register",
            None,
            Some(&json!({"username": "ada", "password": password, "date_of_birth": "1990-05-17", "country": "GB", "currency": "EUR"})),
            None,
        ),
        "register",
    );
    let tokens = created(
        a.call("POST", "/v1/auth/login", None, Some(&json!({"username": "ada", "password": password})), None),
        "login",
    );
    let token = tokens["access_token"].as_str().expect("a token").to_owned();
    created(
        a.call(
            "POST",
            "/v1/wallet/deposits",
            Some(&token),
            Some(&json!({"amount": "100.00", "payment_ref": "p-0"})),
            Some("dep-0"),
        ),
        "deposit",
    );
    let starts_at = format!("{}-01-01T12:00:00Z", 2100);
    let event = created(
        a.call(
            "POST",
            "/v1/admin/events",
            Some(ADMIN_KEY),
            Some(&json!({"name": "A v B", "sport": "football", "starts_at": starts_at})),
            None,
        ),
        "event",
    );
    let market = created(
        a.call(
            "POST",
            &format!("/v1/admin/events/{}/markets", event["id"].as_str().unwrap()),
            Some(ADMIN_KEY),
            Some(&json!({"name": "Match result", "kind": "1x2", "selections": [
                {"name": "Home", "price": "2.50"}, {"name": "Draw", "price": "3.20"}, {"name": "Away", "price": "2.80"}
            ]})),
            None,
        ),
        "market",
    );
    let market_id = market["id"].as_str().unwrap().to_owned();
    let home = market["selections"][0]["id"].as_str().unwrap().to_owned();
    let bet = json!({"type": "single", "legs": [{"selection_id": home, "price": "2.50"}], "stake": "10.00", "accept_price_changes": "none"});
    let placed = created(a.call("POST", "/v1/bets", Some(&token), Some(&bet), Some("bet-0")), "bet");
    assert_eq!(placed["status"], "accepted", "{placed}");
    let bet_id = placed["id"].as_str().expect("a bet id").to_owned();

    // Read-your-writes on A, at once; on B (same token: one JWT secret) once its replica has it.
    let (status, wallet) = a.call("GET", "/v1/wallet", Some(&token), None, None);
    assert_eq!((status, wallet["balance"].as_str()), (200, Some("90.00")), "{wallet}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, wallet) = b.call("GET", "/v1/wallet", Some(&token), None, None);
        if status == 200 && wallet["balance"] == "90.00" {
            break;
        }
        assert!(Instant::now() < deadline, "gateway B: {status} {wallet}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A WebSocket client on B sees the price a trader sets on A.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let url = format!("ws://{}/v1/stream?token={token}", b.address);
        let (mut client, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade on B");
        let subscribe = json!({"op": "subscribe", "markets": [market_id]}).to_string();
        client.send(tokio_tungstenite::tungstenite::Message::text(subscribe)).await.expect("subscribe");
        let mut saw_snapshot = false;
        let mut set = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let message = tokio::time::timeout_at(deadline, client.next()).await.expect("a message in time");
            let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = message else { continue };
            let message: Value = serde_json::from_str(&text).expect("JSON");
            if message["type"] == "snapshot" {
                saw_snapshot = true;
            }
            if saw_snapshot && !set {
                set = true;
                let body = json!({"prices": [{"selection_id": home, "price": "2.75"}]});
                let (status, body) =
                    a.call("PUT", &format!("/v1/admin/markets/{market_id}/prices"), Some(ADMIN_KEY), Some(&body), None);
                assert_eq!(status, 200, "{body}");
            }
            if message["type"] == "price" && message["price"] == "2.75" {
                assert_eq!(message["selection_id"], home.as_str());
                break;
            }
        }
    });

    // The bet placed on A is read on B by id.
    let (status, got) = b.call("GET", &format!("/v1/bets/{bet_id}"), Some(&token), None, None);
    // History reads come from the read models, not wired in cluster mode yet: 503 saying so.
    assert!(status == 200 || status == 503, "{status} {got}");

    // The cluster as any gateway sees it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let (status, view) = b.call("GET", "/v1/admin/cluster", Some(ADMIN_KEY), None, None);
        assert_eq!(status, 200, "{view}");
        let gateways = view["gateways"].as_array().map_or(0, Vec::len);
        let followers = view["followers"].as_array().map_or(0, Vec::len);
        if view["leader"]["pid"].is_u64() && gateways == 2 && followers == 1 {
            assert!(view["leader"]["lease_expires_at"].is_string(), "{view}");
            break view["leader"]["node"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "{view}");
        std::thread::sleep(Duration::from_millis(200));
    };

    // Keyed deposits through both gateways; the leader is killed half way. Each deposit is
    // retried with its key until acknowledged.
    let acked = Arc::new(AtomicU64::new(0));
    let gateways = [a.address.clone(), b.address.clone()];
    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            let (address, token, acked) = (gateways[(worker % 2) as usize].clone(), token.clone(), Arc::clone(&acked));
            std::thread::spawn(move || {
                for i in 0..DEPOSITS_PER_WORKER {
                    let key = format!("load-{worker}-{i}");
                    let body = json!({"amount": "1.00", "payment_ref": key});
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        let (status, answer) =
                            request(&address, "POST", "/v1/wallet/deposits", Some(&token), Some(&body), Some(&key));
                        if status == 201 {
                            acked.fetch_add(100, Ordering::Relaxed);
                            break;
                        }
                        assert!(
                            matches!(status, 0 | 503 | 504),
                            "a deposit failed with {status} {answer}, not something to retry"
                        );
                        assert!(Instant::now() < deadline, "deposit {key} never acknowledged: {status} {answer}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        })
        .collect();
    // Kill the leader once a fifth of the deposits are acknowledged: the rest straddle it.
    let total = 4 * DEPOSITS_PER_WORKER * 100;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::Relaxed) < total / 5 {
        assert!(Instant::now() < deadline, "the load does not progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let index = books.iter().position(|book| book.node == leader).expect("the leader is ours");
    books[index].signal(rustix::process::Signal::KILL);
    let killed = Instant::now();
    let acked_at_kill = acked.load(Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("a worker");
    }
    assert!(acked_at_kill < total, "the load ended before the kill");
    assert_eq!(acked.load(Ordering::Relaxed), total, "every deposit acknowledged in the end");
    println!(
        "leader killed with {} of {} deposits acknowledged; all acknowledged {:?} after the kill",
        acked_at_kill / 100,
        total / 100,
        killed.elapsed()
    );
    let (_, view) = a.call("GET", "/v1/admin/cluster", Some(ADMIN_KEY), None, None);
    assert_ne!(view["leader"]["node"].as_str(), Some(leader.as_str()), "{view}");
    let expected = 9_000 + acked.load(Ordering::Relaxed);
    let expected = format!("{}.{:02}", expected / 100, expected % 100);
    for gateway in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, wallet) = gateway.call("GET", "/v1/wallet", Some(&token), None, None);
            if status == 200 && wallet["balance"] == expected.as_str() {
                break;
            }
            assert!(Instant::now() < deadline, "{status} {wallet}, expected {expected}\n{}", gateway.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The journal alone: the same balance, a balanced ledger.
    let mut options = NatsJournalOptions::new(nats.urls());
    options.replicas = 3;
    let reader = NatsJournal::open(options).expect("open the journal");
    let recovered = engine::recover(&reader, None, book::Config::default()).expect("replay the journal");
    recovered.book.ledger().verify().expect("the ledger balances");
    let wallet = recovered.book.wallet(book::AccountId(1)).expect("ada's account");
    assert_eq!(format!("{}", wallet.balance.minor()), expected.replace('.', ""));
    drop(books);
}
