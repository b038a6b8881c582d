//! `sportsbook dev-cluster` (issue 15 item 4), black-box: it starts 3 nats-server nodes, two
//! book processes, two gateways (edge state in Redis at 127.0.0.1:6379: the command refuses to
//! start, and this test fails saying so, when Redis is missing) and the feed role, prints one
//! JSON line per process and `ready`. Then: a player betting on gateway 1 is seen on gateway 2
//! (wallet from its replica), the feed role's prices reach WebSocket clients of both gateways,
//! `GET /v1/admin/cluster` names the leader and the follower by the pids printed, the follower
//! killed with SIGKILL is reported on standard error, a logout on gateway 2 is honoured by
//! gateway 1 (edge state in Redis), and SIGINT stops the cluster leaving no process behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::cluster_gateways::request;
use crate::server::binary;

/// How long the whole cluster may take to print `ready` (debug build, shared machine).
const READY_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a clean stop may take (every child gets up to 20 s, tier by tier).
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

struct DevCluster {
    child: Child,
    /// Every JSON line printed before `ready`.
    processes: Vec<Value>,
    stderr: std::path::PathBuf,
}

impl DevCluster {
    fn start(dir: &Path) -> DevCluster {
        let stderr = dir.join("dev-cluster.err");
        let mut child = binary()
            .args(["dev-cluster", "--seed", "7", "--data-dir"])
            .arg(dir.join("cluster"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("a stderr file"))
            .spawn()
            .expect("start `sportsbook dev-cluster`");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let mut cluster = DevCluster { child, processes: Vec::new(), stderr };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) if line == "ready" => break,
                Ok(line) => {
                    let process: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|error| panic!("{line:?} is not a JSON line: {error}"));
                    cluster.processes.push(process);
                }
                Err(_) => panic!("no `ready` line in time; standard error:\n{}", cluster.stderr()),
            }
        }
        cluster
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn of_role(&self, role: &str) -> Vec<&Value> {
        self.processes.iter().filter(|process| process["role"] == role).collect()
    }

    fn pids(&self) -> Vec<i32> {
        self.processes.iter().map(|process| process["pid"].as_i64().expect("a pid") as i32).collect()
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        // A failed test: stop it cleanly (it stops its children), kill it if it hangs.
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id() as i32, rustix::process::Signal::TERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: i32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The process exists (a zombie counts: its parent has not reaped it).
fn alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid).is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

fn address(process: &Value) -> String {
    process["url"].as_str().expect("a url").trim_start_matches("http://").to_owned()
}

fn ok(answer: (u16, Value), what: &str) -> Value {
    assert!(answer.0 == 200 || answer.0 == 201, "{what}: {} {}", answer.0, answer.1);
    answer.1
}

/// Waits for the first `price` message on a stream subscribed to `markets` of `address`.
async fn first_price(address: &str, token: &str, markets: &[String]) -> Value {
    let url = format!("ws://{address}/v1/stream?token={token}");
    let (mut client, _) = tokio_tungstenite::connect_async(url).await.expect("a WebSocket upgrade");
    let subscribe = json!({"op": "subscribe", "markets": markets}).to_string();
    client.send(tokio_tungstenite::tungstenite::Message::text(subscribe)).await.expect("subscribe");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let message = tokio::time::timeout_at(deadline, client.next()).await.expect("a price within 60 s");
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = message else { continue };
        let message: Value = serde_json::from_str(&text).expect("JSON");
        if message["type"] == "price" {
            return message;
        }
    }
}

#[test]
fn dev_cluster_starts_every_role_serves_bets_and_prices_on_both_gateways_and_stops_leaving_no_process() {
    let dir = TempDir::new().expect("temporary directory");
    let cluster = DevCluster::start(dir.path());
    let roles = ["nats", "book", "projector", "gateway", "feed"].map(|role| cluster.of_role(role).len());
    assert_eq!(roles, [3, 2, 1, 2, 1], "{:?}\n{}", cluster.processes, cluster.stderr());
    assert_eq!(cluster.processes.len(), 9, "{:?}", cluster.processes);
    for process in &cluster.processes {
        assert!(process["url"].as_str().is_some_and(|url| url.starts_with("http://")), "{process}");
        assert!(alive(process["pid"].as_i64().expect("a pid") as i32), "{process}");
    }
    let admin_key = std::fs::read_to_string(dir.path().join("cluster").join("admin-key")).expect("the admin key");
    let admin_key = admin_key.trim();
    assert!(cluster.stderr().contains(admin_key), "the admin key is printed on standard error");
    assert!(cluster.stderr().contains("demo player: username demo password demo-"), "{}", cluster.stderr());
    let gateways: Vec<String> = cluster.of_role("gateway").into_iter().map(address).collect();
    let (one, two) = (gateways[0].as_str(), gateways[1].as_str());

    // A player on gateway 1 (tokens work on gateway 2: one JWT secret).
    let password = "correct horse battery staple";
    let register = json!({"username": "ada", "password": password, "date_of_birth": "1990-05-17", "country": "GB", "currency": "EUR"});
    ok(request(one, "POST", "/v1/auth/register", None, Some(&register), None), "register");
    let login = json!({"username": "ada", "password": password});
    let tokens = ok(request(one, "POST", "/v1/auth/login", None, Some(&login), None), "login");
    let token = tokens["access_token"].as_str().expect("a token").to_owned();
    let deposit = json!({"amount": "100.00", "payment_ref": "dev-cluster-0"});
    ok(request(one, "POST", "/v1/wallet/deposits", Some(&token), Some(&deposit), Some("dep-0")), "deposit");

    // A bet on gateway 1 on an open market of the demo's catalog (seeded through the feed
    // role); the simulation moves prices, so any price change is accepted.
    let events = ok(request(one, "GET", "/v1/events?limit=200", None, None, None), "events");
    let markets: Vec<&Value> = events["items"]
        .as_array()
        .expect("events")
        .iter()
        .flat_map(|event| event["markets"].as_array().into_iter().flatten())
        .collect();
    let market_ids: Vec<String> =
        markets.iter().map(|market| market["id"].as_str().expect("an id").to_owned()).collect();
    assert!(!market_ids.is_empty(), "the demo's catalog is seeded: {events}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempt = 0;
    let bet = loop {
        let events = ok(request(one, "GET", "/v1/events?limit=200", None, None, None), "events");
        let open: Vec<(String, String)> = events["items"]
            .as_array()
            .expect("events")
            .iter()
            .flat_map(|event| event["markets"].as_array().into_iter().flatten())
            .filter(|market| market["status"] == "open" && market["delayed"] == false && market["in_play"] == false)
            .filter_map(|market| {
                let selection = &market["selections"][0];
                Some((selection["id"].as_str()?.to_owned(), selection["price"].as_str()?.to_owned()))
            })
            .collect();
        if let Some((selection, price)) = open.get(attempt % open.len().max(1)) {
            attempt += 1;
            let body = json!({"type": "single", "legs": [{"selection_id": selection, "price": price}], "stake": "5.00", "accept_price_changes": "any"});
            let key = format!("bet-{attempt}");
            let (status, answer) = request(one, "POST", "/v1/bets", Some(&token), Some(&body), Some(&key));
            if status == 201 {
                break answer;
            }
            // The market may have been suspended or closed by the simulation meanwhile.
            assert_eq!(status, 409, "{answer}");
        }
        assert!(Instant::now() < deadline, "no bet accepted on an open market in time");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(bet["status"], "accepted", "{bet}");
    // Gateway 2's replica has the bet: the stake is held in the wallet it serves.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, wallet) = request(two, "GET", "/v1/wallet", Some(&token), None, None);
        if status == 200 && wallet["pending_stakes"] == "5.00" && wallet["balance"] == "95.00" {
            break;
        }
        assert!(Instant::now() < deadline, "gateway 2: {status} {wallet}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // History on gateway 2 comes from the projector's PostgreSQL models: the bet, its stake
    // in the statement, and the audit trail's record of it.
    let bet_id = bet["id"].as_str().expect("a bet id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, bets) = request(two, "GET", "/v1/bets", Some(&token), None, None);
        let listed =
            bets["items"].as_array().is_some_and(|items| items.iter().any(|item| item["id"] == bet_id.as_str()));
        if status == 200 && listed {
            break;
        }
        assert!(Instant::now() < deadline, "gateway 2's read models never showed bet {bet_id}: {status} {bets}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let transactions = ok(request(two, "GET", "/v1/wallet/transactions", Some(&token), None, None), "transactions");
    assert!(
        transactions["items"].as_array().is_some_and(|items| items.len() >= 2),
        "deposit and stake: {transactions}"
    );

    // The feed role's prices reach stream clients of both gateways.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let (price_one, price_two) = runtime
        .block_on(async { tokio::join!(first_price(one, &token, &market_ids), first_price(two, &token, &market_ids)) });
    for price in [&price_one, &price_two] {
        assert!(market_ids.contains(&price["market_id"].as_str().unwrap_or_default().to_owned()), "{price}");
        assert!(price["price"].is_string() && price["price_version"].is_u64(), "{price}");
    }

    // The cluster as a gateway sees it: the leader and the follower are the books printed.
    let book_pids: Vec<u64> = cluster.of_role("book").iter().map(|book| book["pid"].as_u64().expect("a pid")).collect();
    let feed_pid = cluster.of_role("feed")[0]["pid"].as_u64().expect("a pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    let follower = loop {
        let view = ok(request(two, "GET", "/v1/admin/cluster", Some(admin_key), None, None), "cluster");
        let leader = view["leader"]["pid"].as_u64();
        let followers: Vec<u64> =
            view["followers"].as_array().into_iter().flatten().filter_map(|node| node["pid"].as_u64()).collect();
        let feeds: Vec<(u64, bool)> = view["feeds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|node| Some((node["pid"].as_u64()?, node["active"].as_bool()?)))
            .collect();
        let gateways = view["gateways"].as_array().map_or(0, Vec::len);
        if leader.is_some_and(|pid| book_pids.contains(&pid))
            && followers.len() == 1
            && book_pids.contains(&followers[0])
            && Some(followers[0]) != leader
            && feeds == [(feed_pid, true)]
            && gateways == 2
        {
            break followers[0];
        }
        assert!(Instant::now() < deadline, "{view}");
        std::thread::sleep(Duration::from_millis(200));
    };

    // A child that dies is reported on standard error; the others keep running.
    signal(follower as i32, rustix::process::Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.stderr().contains(&format!("(pid {follower}) exited unexpectedly: signal: 9")) {
        assert!(Instant::now() < deadline, "the follower's death was not reported:\n{}", cluster.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = request(one, "GET", "/v1/wallet", Some(&token), None, None);
    assert_eq!(status, 200, "gateway 1 still serves");

    // The edge state is shared through Redis: a logout on gateway 2 revokes, on gateway 1, the
    // refresh token and the access token that gateway 1 issued (and leaves no refresh token in
    // Redis for weeks).
    let refresh = json!({"refresh_token": tokens["refresh_token"]});
    let (status, body) = request(two, "POST", "/v1/auth/logout", None, Some(&refresh), None);
    assert_eq!(status, 204, "{body}");
    let (status, body) = request(one, "POST", "/v1/auth/refresh", None, Some(&refresh), None);
    assert_eq!(status, 401, "a refresh token revoked on gateway 2 still works on gateway 1: {body}");
    let (status, body) = request(one, "GET", "/v1/wallet", Some(&token), None, None);
    assert_eq!(status, 401, "a session logged out on gateway 2 still works on gateway 1: {body}");

    // Ctrl-C: every child stopped, in order, then the command itself.
    let pids = cluster.pids();
    let mut cluster = cluster;
    signal(cluster.child.id() as i32, rustix::process::Signal::INT);
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(status) = cluster.child.try_wait().expect("the command's status") {
            break status;
        }
        assert!(Instant::now() < deadline, "not stopped in time:\n{}", cluster.stderr());
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = cluster.stderr();
    assert!(status.success(), "{status}\n{stderr}");
    for pid in pids {
        assert!(!alive(pid), "process {pid} still runs after the stop:\n{stderr}");
    }
    // In order: the feed, the gateways, the books, the NATS nodes last.
    let at = |text: &str| stderr.find(text).unwrap_or_else(|| panic!("{text:?} not in:\n{stderr}"));
    assert!(at("stopping feed-1") < at("stopping gateway-"), "{stderr}");
    assert!(at("stopping gateway-") < at("stopping book-"), "{stderr}");
    assert!(at("stopping book-") < at("stopping nats-server"), "{stderr}");
    assert_eq!(stderr.matches("exited unexpectedly").count(), 1, "only the follower killed: {stderr}");
    assert!(!stderr.contains("killing it"), "{stderr}");
    println!("{stderr}");
}

#[test]
fn dev_cluster_without_its_redis_stops_at_once_naming_it() {
    let dir = TempDir::new().expect("temporary directory");
    // Port 1: nothing listens there.
    let output = binary()
        .args(["dev-cluster", "--redis", "redis://127.0.0.1:1", "--data-dir"])
        .arg(dir.path().join("cluster"))
        .output()
        .expect("run `sportsbook dev-cluster`");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("Redis is not reachable at 127.0.0.1:1"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing announced: {}", String::from_utf8_lossy(&output.stdout));
    assert!(!dir.path().join("cluster").join("nats").exists(), "no NATS node was started");
}

/// `sportsbook bench-cluster` (issue 15 item 5) runs the embedded server and a 2-gateway
/// cluster with the same offered load, one after the other, and writes every run's figures
/// with the ratios against the embedded run; nothing it started is left running.
#[test]
fn bench_cluster_measures_embedded_and_each_gateway_count_in_one_run() {
    let dir = TempDir::new().expect("a temporary directory");
    let out = dir.path().join("result.json");
    let output = binary()
        .args(["bench-cluster", "--rate", "20", "--duration", "2", "--gateways", "2", "--players", "3"])
        .args(["--markets", "3", "--data-dir"])
        .arg(dir.path().join("bench"))
        .arg("--out")
        .arg(&out)
        .env_remove("SPORTSBOOK_ADMIN_KEY")
        .output()
        .expect("run `sportsbook bench-cluster`");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench-cluster failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("| serve (embedded) |") && stdout.contains("| cluster, 2 gateways |"), "{stdout}");
    let result: Value = serde_json::from_slice(&std::fs::read(&out).expect("the result file")).expect("JSON");
    let runs = result["runs"].as_array().expect("runs");
    let names: Vec<&str> = runs.iter().filter_map(|run| run["name"].as_str()).collect();
    assert_eq!(names, ["serve (embedded)", "cluster, 1 gateway", "cluster, 2 gateways"], "{result}");
    for run in runs {
        // 40 bets offered per run; on a loaded machine a few may be shed, none may fail.
        assert!(run["accepted"].as_u64().expect("accepted") > 0, "{run}");
        assert_eq!(run["failed"], 0, "{run}");
        assert!(run["p99_ms"].as_f64().expect("p99") >= run["p50_ms"].as_f64().expect("p50"), "{run}");
    }
    assert_eq!(runs[0]["throughput_ratio"], Value::Null, "{result}");
    for run in &runs[1..] {
        let ratio = run["throughput_ratio"].as_f64().expect("a ratio against the embedded run");
        let expected =
            run["accepted_per_second"].as_f64().expect("rate") / runs[0]["accepted_per_second"].as_f64().expect("rate");
        assert!((ratio - expected).abs() < 1e-9, "{run}");
    }
    // Its children stopped cleanly (SIGTERM, not the kill after the grace period).
    assert!(stderr.contains("stopping dev-cluster") && !stderr.contains("killing it"), "{stderr}");
    let logs = dir.path().join("bench").join("logs");
    let cluster_log = std::fs::read_to_string(logs.join("dev-cluster.log")).expect("dev-cluster's log");
    assert!(cluster_log.trim_end().ends_with("dev-cluster: stopped"), "{cluster_log}");
    let serve_log = std::fs::read_to_string(logs.join("embedded.log")).expect("serve's log");
    assert!(serve_log.contains("engine stopped; snapshot written"), "{serve_log}");
}
