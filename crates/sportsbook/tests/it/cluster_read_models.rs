//! The cluster's read side (issue 15 item 3): a 3-node NATS cluster (started here), a book
//! leader, `sportsbook projector --nats` into a fresh PostgreSQL schema, and two gateways with
//! `--read-models` on it. A bet acknowledged by gateway A is read at once on gateway B (its
//! `X-Journal-Position` sent as `X-Min-Position`): the bet, the statement, the audit view.
//! Then, under keyed load through both gateways, the projector is killed with SIGKILL: the
//! gateways' projector lag grows (records and seconds) and comes back to 0 once a new projector
//! process resumes; its `--digest` equals a `--rebuild --digest` into another schema. Needs
//! `nats-server` and PostgreSQL at 127.0.0.1:5432 (the test fails saying which is missing).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use journal_nats::cluster::LocalCluster;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::cluster::{start_nats, BookProcess};
use crate::cluster_gateways::{created, GatewayProcess, ADMIN_KEY};
use crate::server::binary;

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A `sportsbook projector --nats ... --follow --listen` process.
struct ProjectorProcess {
    child: Child,
    address: String,
    log: PathBuf,
}

impl ProjectorProcess {
    fn start(cluster: &LocalCluster, dir: &Path, schema: &str, name: &str) -> ProjectorProcess {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("a log file");
        let mut child = binary()
            .args(["projector", "--nats", &cluster.urls().join(","), "--store", POSTGRES_URL, "--schema", schema])
            .args(["--follow", "--listen", "127.0.0.1:0", "--commit-rows", "500"])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start `sportsbook projector --nats`");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("its first line");
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        let announced: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("unexpected first line {line:?}; log:\n{log_text}"));
        assert_eq!(announced["role"], "projector", "{line}");
        assert_eq!(announced["pid"], json!(child.id()), "{line}");
        let address = announced["url"].as_str().expect("a url").trim_start_matches("http://").to_owned();
        ProjectorProcess { child, address, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProjectorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request: status, headers (lower-case names) and body text.
fn http(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let Ok(mut stream) = TcpStream::connect(address) else { return (0, Vec::new(), String::new()) };
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).is_err() {
        return (0, Vec::new(), String::new());
    }
    let mut response = Vec::new();
    if stream.read_to_end(&mut response).is_err() {
        return (0, Vec::new(), String::new());
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers, payload.to_owned())
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(found, _)| found == name).map(|(_, value)| value.clone())
}

/// A gauge's value in a Prometheus text page.
fn gauge(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn gateway_gauge(gateway: &GatewayProcess, name: &str) -> f64 {
    let (status, _, page) = http(&gateway.address, "GET", "/metrics", None, None, &[]);
    assert_eq!(status, 200, "{page}");
    gauge(&page, name).unwrap_or_else(|| panic!("no {name} in the gateway's /metrics:\n{page}"))
}

/// Runs `sportsbook projector --nats` to the stream's end (no --follow) and returns its digest.
fn digest(cluster: &LocalCluster, schema: &str, rebuild: bool) -> String {
    let mut command = binary();
    command.args(["projector", "--nats", &cluster.urls().join(","), "--store", POSTGRES_URL, "--schema", schema]);
    command.arg("--digest");
    if rebuild {
        command.arg("--rebuild");
    }
    let output = command.output().expect("run the projector");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    if let Some(summary) = stdout.lines().find(|line| line.starts_with("projected NATS stream")) {
        println!("{schema}: {summary}");
    }
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("store digest "))
        .unwrap_or_else(|| panic!("no digest in {stdout}"))
        .to_owned()
}

fn fresh_schema(name: &str) -> String {
    let schema = format!("it_{name}_{}", std::process::id());
    projector::PostgresStore::drop_schema(POSTGRES_URL, &schema).unwrap_or_else(|error| {
        panic!("this test needs PostgreSQL at {POSTGRES_URL} (trust authentication, database `test`): {error}")
    });
    schema
}

/// A keyed write through `address`, retried with its key until acknowledged.
fn keyed(address: &str, token: &str, path: &str, body: &Value, key: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, answer) = http(address, "POST", path, Some(token), Some(body), &[("Idempotency-Key", key)]);
        if status == 201 || status == 200 {
            return serde_json::from_str(&answer).expect("JSON");
        }
        assert!(matches!(status, 0 | 503 | 504), "{path} {key}: {status} {answer}");
        assert!(Instant::now() < deadline, "{path} {key} never acknowledged: {status} {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn gateways_serve_history_from_the_cluster_projector_and_a_killed_projector_resumes_to_a_rebuild() {
    let dir = TempDir::new().expect("temporary directory");
    let nats = start_nats(dir.path());
    let schema = fresh_schema("cluster_models");
    let rebuilt_schema = fresh_schema("cluster_models_rebuilt");
    let book = BookProcess::start(&nats, dir.path(), "book-a");
    let mut projector = ProjectorProcess::start(&nats, dir.path(), &schema, "projector-1");
    let read_models = ["--read-models", POSTGRES_URL, "--read-models-schema", schema.as_str()];
    let a = GatewayProcess::start_with(&nats, dir.path(), "gateway-a", &read_models);
    let b = GatewayProcess::start_with(&nats, dir.path(), "gateway-b", &read_models);
    a.wait_ready();
    b.wait_ready();

    // A player and a market through gateway A.
    let password = "correct horse battery staple";
    created(
        a.call(
            "POST",
            "/v1/auth/register",
            None,
            Some(&json!({"username": "grace", "password": password, "date_of_birth": "1990-05-17", "country": "GB", "currency": "EUR"})),
            None,
        ),
        "register",
    );
    let tokens = created(
        a.call("POST", "/v1/auth/login", None, Some(&json!({"username": "grace", "password": password})), None),
        "login",
    );
    let token = tokens["access_token"].as_str().expect("a token").to_owned();
    let deposit = json!({"amount": "500.00", "payment_ref": "p-0"});
    keyed(&a.address, &token, "/v1/wallet/deposits", &deposit, "dep-0");
    let event = created(
        a.call(
            "POST",
            "/v1/admin/events",
            Some(ADMIN_KEY),
            Some(&json!({"name": "C v D", "sport": "football", "starts_at": "2100-01-01T12:00:00Z"})),
            None,
        ),
        "event",
    );
    let market = created(
        a.call(
            "POST",
            &format!("/v1/admin/events/{}/markets", event["id"].as_str().expect("an event id")),
            Some(ADMIN_KEY),
            Some(&json!({"name": "Match result", "kind": "1x2", "selections": [
                {"name": "Home", "price": "2.50"}, {"name": "Draw", "price": "3.20"}, {"name": "Away", "price": "2.80"}
            ]})),
            None,
        ),
        "market",
    );
    let home = market["selections"][0]["id"].as_str().expect("a selection").to_owned();
    let bet_body = json!({"type": "single", "legs": [{"selection_id": home, "price": "2.50"}], "stake": "1.00", "accept_price_changes": "none"});

    // Read-your-writes across gateways: placed on A, read at once on B with A's position.
    for round in 0..10 {
        let (status, headers, placed) = http(
            &a.address,
            "POST",
            "/v1/bets",
            Some(&token),
            Some(&bet_body),
            &[("Idempotency-Key", &format!("ryw-{round}"))],
        );
        assert_eq!(status, 201, "{placed}");
        let placed: Value = serde_json::from_str(&placed).expect("JSON");
        let bet = placed["id"].as_str().expect("a bet id").to_owned();
        let position = header(&headers, "x-journal-position").expect("X-Journal-Position on a write");
        let min = [("X-Min-Position", position.as_str())];
        let (status, _, page) = http(&b.address, "GET", "/v1/bets?limit=1", Some(&token), None, &min);
        let page: Value = serde_json::from_str(&page).expect("JSON");
        assert_eq!((status, page["items"][0]["id"].as_str()), (200, Some(bet.as_str())), "round {round}: {page}");
        let (status, _, statement) =
            http(&b.address, "GET", "/v1/wallet/transactions?limit=1", Some(&token), None, &min);
        let statement: Value = serde_json::from_str(&statement).expect("JSON");
        assert_eq!(status, 200, "{statement}");
        assert_eq!(statement["items"][0]["type"], "stake", "round {round}: {statement}");
        assert_eq!(statement["items"][0]["bet_id"], bet.as_str(), "round {round}: {statement}");
        let (status, _, audit) = http(&b.address, "GET", "/v1/admin/audit?limit=5", Some(ADMIN_KEY), None, &min);
        let audit: Value = serde_json::from_str(&audit).expect("JSON");
        assert_eq!(status, 200, "{audit}");
        let placed_bets = audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .flat_map(|batch| batch["commands"].as_array().expect("commands").iter())
            .filter(|command| command["type"] == "place_bet")
            .count();
        assert!(placed_bets >= 1, "round {round}: the bet's command in the audit view: {audit}");
    }
    // The operator's routes on B: the player's bets and the customer view.
    let (status, _, found) = http(&b.address, "GET", "/v1/admin/bets?limit=20", Some(ADMIN_KEY), None, &[]);
    let found: Value = serde_json::from_str(&found).expect("JSON");
    assert_eq!((status, found["items"].as_array().map(Vec::len)), (200, Some(10)), "{found}");
    let player = found["items"][0]["player_id"].as_str().expect("player_id").to_owned();
    let (status, _, customer) =
        http(&b.address, "GET", &format!("/v1/admin/accounts/{player}"), Some(ADMIN_KEY), None, &[]);
    assert_eq!(status, 200, "{customer}");
    let (status, _, csv) = http(&b.address, "GET", "/v1/admin/reports/turnover?format=csv", Some(ADMIN_KEY), None, &[]);
    assert_eq!(status, 200, "{csv}");
    assert_eq!(gateway_gauge(&b, "sportsbook_projector_up"), 1.0);

    // Keyed load through both gateways; the projector is killed with SIGKILL under it.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = [a.address.clone(), b.address.clone(), a.address.clone(), b.address.clone()]
        .into_iter()
        .enumerate()
        .map(|(worker, address)| {
            let (stop, acknowledged, token, bet_body) =
                (Arc::clone(&stop), Arc::clone(&acknowledged), token.clone(), bet_body.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load-{worker}-{i}");
                    if i.is_multiple_of(2) {
                        keyed(
                            &address,
                            &token,
                            "/v1/wallet/deposits",
                            &json!({"amount": "1.00", "payment_ref": key}),
                            &key,
                        );
                    } else {
                        keyed(&address, &token, "/v1/bets", &bet_body, &key);
                    }
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let wait_for = |count: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged.load(Ordering::Relaxed) < count {
            assert!(Instant::now() < deadline, "the load does not progress");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(100);
    projector.kill();
    let killed_at = acknowledged.load(Ordering::Relaxed);
    wait_for(killed_at + 100);
    // Dead for over a second with writes going on: both gateways see the models fall behind.
    std::thread::sleep(Duration::from_millis(1_200));
    for gateway in [&a, &b] {
        let lag = gateway_gauge(gateway, "sportsbook_projector_lag_records");
        let seconds = gateway_gauge(gateway, "sportsbook_projector_lag_seconds");
        assert!(lag > 0.0 && seconds > 0.5, "lag {lag} records, {seconds} s with the projector dead");
        println!("projector dead: gateway {} sees a lag of {lag} records, {seconds} s", gateway.address);
    }
    let mut projector = ProjectorProcess::start(&nats, dir.path(), &schema, "projector-2");
    wait_for(acknowledged.load(Ordering::Relaxed) + 100);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("a worker");
    }

    // Caught up again: no lag on either gateway, nor on the projector's own /metrics.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lags: Vec<f64> =
            [&a, &b].iter().map(|gateway| gateway_gauge(gateway, "sportsbook_projector_lag_records")).collect();
        let (status, _, page) = http(&projector.address, "GET", "/metrics", None, None, &[]);
        let own = gauge(&page, "sportsbook_projector_lag_records");
        if status == 200 && lags.iter().all(|lag| *lag == 0.0) && own == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "lag {lags:?}, projector {own:?}\n{}", projector.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _, ready) = http(&projector.address, "GET", "/readyz", None, None, &[]);
    assert_eq!(status, 200, "{ready}");
    let (status, _, page) = http(&projector.address, "GET", "/metrics", None, None, &[]);
    assert_eq!(status, 200);
    assert!(gauge(&page, "sportsbook_projector_rows_total").is_some_and(|rows| rows > 0.0), "{page}");
    assert!(projector.log().contains("resumed at journal position"), "{}", projector.log());

    // Every acknowledged write is in the models read on B, then the resumed models equal a
    // rebuild from scratch.
    let (status, _, wallet) = http(&b.address, "GET", "/v1/wallet", Some(&token), None, &[]);
    assert_eq!(status, 200, "{wallet}");
    projector.kill();
    let resumed = digest(&nats, &schema, false);
    let rebuilt = digest(&nats, &rebuilt_schema, true);
    assert_eq!(resumed, rebuilt, "the models a killed and restarted projector wrote equal a rebuild");
    println!(
        "{} writes acknowledged, the projector killed after {killed_at}; resumed digest {resumed} = rebuilt",
        acknowledged.load(Ordering::Relaxed)
    );
    for schema in [&schema, &rebuilt_schema] {
        projector::PostgresStore::drop_schema(POSTGRES_URL, schema).expect("drop the schema");
    }
    drop(book);
}
