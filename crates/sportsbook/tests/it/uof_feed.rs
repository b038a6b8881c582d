//! The README's Unified Odds Feed demo end to end: `sportsbook feed-sim` publishing UOF XML on
//! the real RabbitMQ (127.0.0.1:5672, guest/guest) with its provider API, and `sportsbook serve`
//! following it with `--uof-api-url`. Its markets take bets within seconds of the start; after
//! a restart the markets the first run left open refuse bets (`market_suspended`, `/readyz`
//! `feed_stale`) while the provider cannot answer the recovery, and take them again once it
//! has.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{binary, Server};

const RABBITMQ: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const TOKEN: &str = "feed-sim-token";
const PROVIDER: &str = "uofsim";

/// `sportsbook feed-sim` publishing to `exchange`, its API on `api_listen`.
struct FeedSim {
    child: Child,
    /// `http://127.0.0.1:PORT`
    api: String,
}

impl FeedSim {
    fn start(exchange: &str, api_listen: &str) -> FeedSim {
        let mut child = binary()
            .args(["feed-sim", "--provider", PROVIDER, "--amqp-url", RABBITMQ, "--exchange", exchange])
            .args(["--api-listen", api_listen, "--fixtures", "2", "--seed", "5", "--minute-ms", "600000"])
            .args(["--price-changes-per-second", "5"])
            .env("SPORTSBOOK_UOF_ACCESS_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn feed-sim");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut api = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("feed-sim did not start (RabbitMQ must run on 127.0.0.1:5672 with guest/guest)")
            });
            if let Some(url) = line.strip_prefix("feed provider API (recovery) on ") {
                api = Some(url.trim().to_string());
            }
            if line.contains("publishing UOF XML to exchange") {
                break;
            }
        }
        FeedSim { child, api: api.expect("the API line") }
    }
}

impl Drop for FeedSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post_keyed(address: &str, path: &str, token: &str, body: &Value, key: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("receive");
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

fn serve(data: &std::path::Path, exchange: &str, api: &str) -> Server {
    let source = format!("{PROVIDER}=uof+{RABBITMQ}#{exchange}");
    Server::start(
        data,
        &["--feed-source", &source, "--uof-api-url", api, "--feed-stale-after", "30"],
        &[("SPORTSBOOK_ADMIN_KEY", "sk_uof_feed_test"), ("SPORTSBOOK_UOF_ACCESS_TOKEN", TOKEN)],
    )
}

/// The first selection of the provider's markets that are open, if any.
fn open_selection(server: &Server) -> Option<String> {
    let (status, body) = server.get("/v1/events?limit=200", None);
    assert_eq!(status, 200, "{body}");
    body["items"]
        .as_array()?
        .iter()
        .flat_map(|event| event["markets"].as_array().cloned().unwrap_or_default())
        .find(|market| market["status"] == json!("open"))
        .and_then(|market| market["selections"][0]["id"].as_str().map(str::to_string))
}

fn bet(server: &Server, token: &str, selection: &str, key: &str) -> (u16, Value) {
    let body = json!({"type": "single", "legs": [{"selection_id": selection, "price": "1.01"}], "stake": "1.00", "accept_price_changes": "any"});
    post_keyed(&server.address, "/v1/bets", token, &body, key)
}

#[test]
fn the_uof_demo_takes_bets_soon_after_a_start_and_refuses_them_after_a_restart_until_recovered() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let exchange = format!("uof-e2e-{}-{nanos}", std::process::id());
    let feed_sim = FeedSim::start(&exchange, "127.0.0.1:0");
    let api = feed_sim.api.clone();

    // The first start: the provider recovers through feed-sim's API and its markets open.
    let server = serve(&data, &exchange, &api);
    let started = Instant::now();
    let (status, body) = server.post(
        "/v1/auth/register",
        None,
        &json!({"username": "punter", "password": "uof feed test password", "date_of_birth": "1990-01-01", "country": "GB"}),
    );
    assert_eq!(status, 201, "{body}");
    let token = server.login("punter", "uof feed test password");
    let (status, body) = post_keyed(
        &server.address,
        "/v1/wallet/deposits",
        &token,
        &json!({"amount": "50.00", "payment_ref": "psp-1"}),
        "d1",
    );
    assert_eq!(status, 201, "{body}");
    let selection = loop {
        if let Some(selection) = open_selection(&server) {
            break selection;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no market open; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, body) = bet(&server, &token, &selection, "b1");
    assert_eq!(status, 201, "{body}");
    assert!(started.elapsed() < Duration::from_secs(20), "bets taken {:?} after the start", started.elapsed());
    // The recovery point is stored before the stop.
    let stored = data.join("uof").join(format!("recovery-{PROVIDER}.txt"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&stored).unwrap_or_default().starts_with("1 ") {
        assert!(Instant::now() < deadline, "recovery point never stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, log) = server.terminate();
    assert!(status.success(), "exit {status}; log:\n{log}");

    // The restart while the provider cannot answer: the market left open refuses bets.
    let api_listen = api.trim_start_matches("http://").to_string();
    drop(feed_sim);
    let server = serve(&data, &exchange, &api);
    let (status, body) = bet(&server, &token, &selection, "b2");
    assert_eq!((status, &body["error"]["code"]), (409, &json!("market_suspended")), "{body}");
    let (status, ready) = server.get("/readyz", None);
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["stale_providers"], json!([PROVIDER]), "{ready}");
    std::thread::sleep(Duration::from_secs(2));
    let (status, body) = bet(&server, &token, &selection, "b3");
    assert_eq!((status, &body["error"]["code"]), (409, &json!("market_suspended")), "{body}");

    // The provider is back: its replay ends with the snapshot_complete of the request, and the
    // market takes bets again.
    let _feed_sim = FeedSim::start(&exchange, &api_listen);
    let back = Instant::now();
    loop {
        let (status, body) = bet(&server, &token, &selection, &format!("b4-{}", back.elapsed().as_millis()));
        if status == 201 {
            break;
        }
        assert_eq!((status, &body["error"]["code"]), (409, &json!("market_suspended")), "{body}");
        assert!(back.elapsed() < Duration::from_secs(40), "never reopened; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = server.log();
    assert!(log.contains("feed provider starts stale"), "{log}");
    assert!(log.contains("feed provider recovered at start"), "{log}");
    let (status, log) = server.terminate();
    assert!(status.success(), "exit {status}; log:\n{log}");
}
