//! The book bounded by open state, from the outside: `serve --resettlement-window 2s`. A
//! settled market cannot be unsettled once its window passed (409
//! `resettlement_window_closed`), and its bets, the market and its transfers leave the book
//! (the book's sizes in `/metrics` fall) while balances stay.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{binary, request, Server};

const ADMIN_KEY: &str = "sk_bounded_test_admin_key";

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

/// `sportsbook_book_size{what="..."}` from `/metrics`.
fn book_size(server: &Server, what: &str) -> i64 {
    let (status, body) = server.get("/metrics", None);
    assert_eq!(status, 200, "{body}");
    let text = body.as_str().expect("metrics text");
    let prefix = format!("sportsbook_book_size{{what=\"{what}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in the metrics"))
}

#[test]
fn a_settled_market_leaves_the_book_after_its_resettlement_window() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(
        &dir.path().join("data"),
        &["--resettlement-window", "2s", "--idempotency-window", "45s"],
        &[("SPORTSBOOK_ADMIN_KEY", ADMIN_KEY), ("SPORTSBOOK_JWT_SECRET", "bounded-test-secret-bounded-test-secret-01")],
    );
    let address = server.address.clone();
    let admin = |method: &str, path: &str, body: Value| request(&address, method, path, Some(ADMIN_KEY), Some(&body));
    let (status, body) = admin("PUT", "/v1/admin/fx-rates", json!({"base": "EUR", "rates": {}}));
    assert!(status == 200 || status == 204, "{status} {body}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let starts_at = gateway::format_rfc3339(now + 86_400_000);
    let (status, event) = admin(
        "POST",
        "/v1/admin/events",
        json!({"name": "Bounded Derby", "sport": "football", "starts_at": starts_at}),
    );
    assert_eq!(status, 201, "{event}");
    let event_id = event["id"].as_str().expect("event id").to_string();
    let (status, market) = admin(
        "POST",
        &format!("/v1/admin/events/{event_id}/markets"),
        json!({"name": "Match result", "selections": [{"name": "Home", "price": "2.00"}, {"name": "Away", "price": "2.00"}]}),
    );
    assert_eq!(status, 201, "{market}");
    let market_id = market["id"].as_str().expect("market id").to_string();
    let home = market["selections"][0]["id"].as_str().expect("selection").to_string();
    let away = market["selections"][1]["id"].as_str().expect("selection").to_string();

    let (status, body) = server.post(
        "/v1/auth/register",
        None,
        &json!({"username": "bounded", "password": "bounded test password", "date_of_birth": "1990-01-01", "country": "GB"}),
    );
    assert_eq!(status, 201, "{body}");
    let token = server.login("bounded", "bounded test password");
    let (status, body) =
        post_keyed(&address, "/v1/wallet/deposits", &token, &json!({"amount": "50.00", "payment_ref": "psp-1"}), "d1");
    assert_eq!(status, 201, "{body}");
    for bet in 0..3 {
        let legs = json!([{"selection_id": if bet == 0 { &away } else { &home }, "price": "2.00"}]);
        let (status, body) = post_keyed(
            &address,
            "/v1/bets",
            &token,
            &json!({"type": "single", "legs": legs, "stake": "5.00"}),
            &format!("bet-{bet}"),
        );
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(book_size(&server, "open_bets"), 3);
    let settle = json!({"results": [{"selection_id": home, "outcome": "win"}]});
    let (status, body) = admin("POST", &format!("/v1/admin/markets/{market_id}/settle"), settle);
    assert_eq!(status, 200, "{body}");
    assert_eq!(book_size(&server, "open_bets"), 0);
    assert_eq!(book_size(&server, "closed_bets"), 3);
    // Within the window an unsettle works; settle again and wait the window out.
    let (status, body) = admin("POST", &format!("/v1/admin/markets/{market_id}/unsettle"), json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(book_size(&server, "open_bets"), 3);
    let settle = json!({"results": [{"selection_id": home, "outcome": "win"}]});
    let (status, body) = admin("POST", &format!("/v1/admin/markets/{market_id}/settle"), settle);
    assert_eq!(status, 200, "{body}");
    let transfers_settled = book_size(&server, "transfers");
    std::thread::sleep(Duration::from_millis(2_500));
    let (status, body) = admin("POST", &format!("/v1/admin/markets/{market_id}/unsettle"), json!({}));
    assert_eq!((status, &body["error"]["code"]), (409, &json!("resettlement_window_closed")), "{body}");
    let (status, body) = admin("POST", &format!("/v1/admin/markets/{market_id}/void"), json!({}));
    assert_eq!((status, &body["error"]["code"]), (409, &json!("resettlement_window_closed")), "{body}");
    // The refused commands moved book time on: the bets, the market and the event have left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while book_size(&server, "closed_bets") != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(book_size(&server, "closed_bets"), 0);
    assert_eq!(book_size(&server, "open_bets"), 0);
    assert_eq!(book_size(&server, "bets_issued"), 3);
    assert_eq!(book_size(&server, "markets"), 0);
    assert!(book_size(&server, "transfers") < transfers_settled, "transfers left the ledger");
    // Balances stay: 50 deposited, 15 staked, two winners paid 10 each.
    let (status, wallet) = server.get("/v1/wallet", Some(&token));
    assert_eq!(status, 200, "{wallet}");
    assert_eq!(wallet["balance"], json!("55.00"), "{wallet}");
    // A bet on the market that left is refused with a stable code, not a panic.
    let (status, body) = post_keyed(
        &address,
        "/v1/bets",
        &token,
        &json!({"type": "single", "legs": [{"selection_id": home, "price": "2.00"}], "stake": "5.00"}),
        "bet-late",
    );
    assert!(status == 409 || status == 404, "{status} {body}");
    let (status, log) = server.terminate();
    assert!(status.success(), "exit {status}; log:\n{log}");
    // Both windows are in the journal: the book replayed from its start with the default
    // configuration (as the projector and every recovery replay it) has them.
    std::fs::remove_dir_all(dir.path().join("data").join("snapshots")).expect("snapshots set aside");
    let replayed = engine::recover_read_only(&dir.path().join("data"), book::Config::default()).expect("replayed");
    assert_eq!(replayed.report.snapshot_position, None);
    let config = replayed.book.config();
    assert_eq!((config.resettlement_window_ms, config.idempotency_window_ms), (2_000, 45_000));
}

/// `sportsbook verify` checks the book's running totals against the read models' history:
/// after settled bets and their transfers left the book (a 1 s resettlement window), the
/// ledger's folded totals still equal what the `transfers` model sums to; a row of that
/// history altered by SQL fails it, naming the accounts and both figures.
#[test]
fn verify_checks_the_running_totals_against_the_read_models() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        &["--resettlement-window", "1s"],
        &[("SPORTSBOOK_ADMIN_KEY", ADMIN_KEY), ("SPORTSBOOK_JWT_SECRET", "bounded-test-secret-bounded-test-secret-02")],
    );
    let address = server.address.clone();
    let admin = |method: &str, path: &str, body: Value| request(&address, method, path, Some(ADMIN_KEY), Some(&body));
    let (status, body) = admin("PUT", "/v1/admin/fx-rates", json!({"base": "EUR", "rates": {}}));
    assert!(status == 200 || status == 204, "{status} {body}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let starts_at = gateway::format_rfc3339(now + 86_400_000);
    let (status, event) =
        admin("POST", "/v1/admin/events", json!({"name": "Verify Derby", "sport": "football", "starts_at": starts_at}));
    assert_eq!(status, 201, "{event}");
    let event_id = event["id"].as_str().expect("event id").to_string();
    let mut markets = Vec::new();
    for name in ["Match result", "Next goal"] {
        let (status, market) = admin(
            "POST",
            &format!("/v1/admin/events/{event_id}/markets"),
            json!({"name": name, "selections": [{"name": "Home", "price": "2.00"}, {"name": "Away", "price": "2.00"}]}),
        );
        assert_eq!(status, 201, "{market}");
        markets.push(market);
    }
    let (settled, open) = (&markets[0], &markets[1]);
    let settled_id = settled["id"].as_str().expect("market id").to_string();
    let home = settled["selections"][0]["id"].as_str().expect("selection").to_string();
    let away = settled["selections"][1]["id"].as_str().expect("selection").to_string();
    let open_home = open["selections"][0]["id"].as_str().expect("selection").to_string();

    let (status, player) = server.post(
        "/v1/auth/register",
        None,
        &json!({"username": "verifier", "password": "verify test password", "date_of_birth": "1990-01-01", "country": "GB"}),
    );
    assert_eq!(status, 201, "{player}");
    let player_id = player["id"].as_str().expect("player id").to_string();
    let token = server.login("verifier", "verify test password");
    let (status, body) =
        post_keyed(&address, "/v1/wallet/deposits", &token, &json!({"amount": "50.00", "payment_ref": "psp-v1"}), "d1");
    assert_eq!(status, 201, "{body}");
    for (bet, selection) in [&away, &home, &home, &open_home].into_iter().enumerate() {
        let legs = json!([{"selection_id": selection, "price": "2.00"}]);
        let (status, body) = post_keyed(
            &address,
            "/v1/bets",
            &token,
            &json!({"type": "single", "legs": legs, "stake": "5.00"}),
            &format!("bet-{bet}"),
        );
        assert_eq!(status, 201, "{body}");
    }
    let settle = json!({"results": [{"selection_id": home, "outcome": "win"}]});
    let (status, body) = admin("POST", &format!("/v1/admin/markets/{settled_id}/settle"), settle);
    assert_eq!(status, 200, "{body}");
    // Unsettled and settled again: reversals are in the history too.
    let (status, body) = admin("POST", &format!("/v1/admin/markets/{settled_id}/unsettle"), json!({}));
    assert_eq!(status, 200, "{body}");
    let settle = json!({"results": [{"selection_id": home, "outcome": "win"}]});
    let (status, body) = admin("POST", &format!("/v1/admin/markets/{settled_id}/settle"), settle);
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(1_500));
    let (status, body) = admin("POST", &format!("/v1/admin/markets/{settled_id}/unsettle"), json!({}));
    assert_eq!((status, &body["error"]["code"]), (409, &json!("resettlement_window_closed")), "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while book_size(&server, "closed_bets") != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(book_size(&server, "closed_bets"), 0, "the settled bets left the book");
    assert_eq!(book_size(&server, "open_bets"), 1);
    // A history read waits until the read models hold everything acknowledged.
    let (status, bets) = server.get("/v1/bets", Some(&token));
    assert_eq!(status, 200, "{bets}");
    let (status, log) = server.terminate();
    assert!(status.success(), "exit {status}; log:\n{log}");

    let verify = || binary().args(["verify", "--data-dir"]).arg(&data).output().expect("runs verify");
    let output = verify();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "verify failed:\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|line| line.starts_with("running totals match the read models"))
        .unwrap_or_else(|| panic!("no comparison in:\n{stdout}"));
    // "... against T transfers of history (H still in the book)": most transfers left.
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse().expect("number"))
        .collect();
    let (total, held) = (numbers[numbers.len() - 2], numbers[numbers.len() - 1]);
    assert!(held < total, "transfers left the book: {line}");

    // The same check against PostgreSQL models (`--store postgres://…`).
    const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
    let schema = format!("verify_totals_{}", std::process::id());
    projector::PostgresStore::drop_schema(POSTGRES_URL, &schema)
        .unwrap_or_else(|error| panic!("this test needs PostgreSQL at {POSTGRES_URL}: {error}"));
    let projected = binary()
        .args(["projector", "--store", POSTGRES_URL, "--schema", &schema, "--data-dir"])
        .arg(&data)
        .output()
        .expect("runs the projector");
    assert!(projected.status.success(), "{}", String::from_utf8_lossy(&projected.stderr));
    let output = binary()
        .args(["verify", "--store", POSTGRES_URL, "--schema", &schema, "--data-dir"])
        .arg(&data)
        .output()
        .expect("runs verify");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    projector::PostgresStore::drop_schema(POSTGRES_URL, &schema).expect("drop the schema");
    assert!(
        output.status.success(),
        "verify against PostgreSQL failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("running totals match the read models {POSTGRES_URL} (schema {schema})")),
        "{stdout}"
    );

    // One payout of the history, altered: the book (which no longer holds it) and the models
    // now disagree on the player's cash and the house.
    let models = rusqlite::Connection::open(data.join("projector").join("read-models.sqlite3")).expect("models");
    let changed = models
        .execute(
            "UPDATE transfers SET amount = amount + 1 WHERE id = (SELECT MIN(id) FROM transfers WHERE code = 'payout')",
            [],
        )
        .expect("alter a row");
    assert_eq!(changed, 1);
    drop(models);
    let output = verify();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!output.status.success(), "verify passed on altered models:\n{stderr}");
    let cash = format!("({player_id} cash, EUR): credits_posted is ");
    let line = stderr.lines().find(|line| line.contains(&cash)).unwrap_or_else(|| panic!("no {cash} in:\n{stderr}"));
    let figures: Vec<i64> = line
        .rsplit_once("credits_posted is ")
        .map(|(_, rest)| rest)
        .expect("figures")
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse().expect("number"))
        .collect();
    assert_eq!(figures[1], figures[0] + 1, "{line}");
    assert!(stderr.contains("(house, EUR): debits_posted is "), "{stderr}");
}
