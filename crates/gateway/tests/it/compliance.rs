//! Black-box tests of the compliance routes: the audit trail (listing, pagination, no
//! secrets, hash-chain verification across a restart and against a forged record), the
//! regulator reports with exact figures, and the `compliance` scope.

use gateway::GatewayConfig;
use serde_json::{json, Value};

use crate::harness::{now_ms, spawn_app, spawn_app_on, Player, TestApp, ADMIN_KEY};

const PASSWORD: &str = "correct horse battery staple";

/// Registers and logs in a player; returns the player and the account id.
async fn register(app: &TestApp, username: &str) -> (Player, String) {
    let (status, registered) = app
        .call(
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({"username": username, "password": PASSWORD, "date_of_birth": "1990-05-17", "country": "GB",
                        "currency": "EUR"})),
        )
        .await;
    assert_eq!(status, 201, "register: {registered}");
    let (status, tokens) =
        app.call("POST", "/v1/auth/login", None, Some(json!({"username": username, "password": PASSWORD}))).await;
    assert_eq!(status, 200, "login: {tokens}");
    let player = Player {
        access_token: tokens["access_token"].as_str().expect("access token").to_string(),
        refresh_token: tokens["refresh_token"].as_str().expect("refresh token").to_string(),
        username: username.to_string(),
    };
    (player, registered["id"].as_str().expect("account id").to_string())
}

async fn deposit(app: &TestApp, player: &Player, amount: &str) {
    // Each deposit is a payment of its own: a reference credits once.
    let body = json!({"amount": amount, "payment_ref": format!("psp-{}", crate::harness::fresh_idempotency_key())});
    let (status, answer) = app.call("POST", "/v1/wallet/deposits", Some(&player.access_token), Some(body)).await;
    assert_eq!(status, 201, "deposit: {answer}");
}

/// Places a single; returns the bet id.
async fn bet(app: &TestApp, player: &Player, selection: &str, price: &str, stake: &str) -> String {
    let body = json!({"type": "single", "legs": [{"selection_id": selection, "price": price}], "stake": stake});
    let (status, placed) = app.call("POST", "/v1/bets", Some(&player.access_token), Some(body)).await;
    assert_eq!(status, 201, "bet: {placed}");
    placed["id"].as_str().expect("bet id").to_string()
}

async fn api_key(app: &TestApp, name: &str, scopes: &[&str]) -> String {
    let (status, body) =
        app.call("POST", "/v1/admin/api-keys", Some(ADMIN_KEY), Some(json!({"name": name, "scopes": scopes}))).await;
    assert_eq!(status, 201, "api key: {body}");
    body["key"].as_str().expect("key").to_string()
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.call("GET", path, Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// A report as CSV (`?format=csv`), with its content type and attachment name checked.
async fn get_csv(app: &TestApp, path: &str) -> String {
    let response = reqwest::Client::new().get(app.url(path)).bearer_auth(ADMIN_KEY).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200, "{path}");
    let header = |name: &str| response.headers()[name].to_str().expect("header").to_string();
    assert_eq!(header("content-type"), "text/csv; charset=utf-8");
    assert!(header("content-disposition").starts_with("attachment; filename="), "{path}");
    response.text().await.expect("body")
}

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!((status, body["error"]["code"].as_str()), (expected_status, Some(code)), "{body}");
}

/// Every batch of the audit trail, walking pages of `limit`; checks that the pages join up.
async fn audit_trail(app: &TestApp, limit: usize) -> Vec<Value> {
    let mut batches: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/admin/audit?limit={limit}&cursor={cursor}"),
            None => format!("/v1/admin/audit?limit={limit}"),
        };
        let page = get_ok(app, &path).await;
        let items = page["items"].as_array().expect("items");
        assert!(!items.is_empty() && items.len() <= limit, "{page}");
        batches.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return batches,
        }
    }
}

fn commands(batches: &[Value]) -> Vec<Value> {
    batches.iter().flat_map(|batch| batch["commands"].as_array().expect("commands").iter().cloned()).collect()
}

async fn verification(app: &TestApp) -> Value {
    get_ok(app, "/v1/admin/audit?verify=true").await
}

#[tokio::test]
async fn the_audit_trail_lists_the_journey_in_order_without_secrets() {
    let app = spawn_app().await;
    let (player, account) = register(&app, "auditee").await;
    deposit(&app, &player, "50.00").await;
    let key = api_key(&app, "desk", &["trading"]).await;
    let (event, market, selections) = app.football_match("Audit v Trail").await;
    let bet_id = bet(&app, &player, &selections[0], "2.50", "10.00").await;

    let everything = get_ok(&app, "/v1/admin/audit?limit=200").await;
    assert_eq!(everything["next_cursor"], Value::Null, "{everything}");
    let text = everything.to_string();
    assert!(!text.contains("$argon2"), "a password hash leaked: {text}");
    assert!(!text.contains(&gateway::sha256_hex(key.as_bytes())), "an API key hash leaked: {text}");
    assert!(!text.contains(&key) && !text.contains(PASSWORD), "{text}");
    assert!(!text.contains("password") && !text.contains("key_hash"), "{text}");

    let batches = everything["items"].as_array().expect("items").clone();
    // In cluster mode position 0 is the book leader's marker (an empty batch the trail passes
    // over); every batch after it is listed.
    let first = usize::from(crate::harness::cluster_mode());
    for (index, batch) in batches.iter().enumerate() {
        assert_eq!(batch["position"], json!(first + index), "{batch}");
        assert!(gateway::parse_rfc3339(batch["recorded_at"].as_str().expect("recorded_at")).is_some(), "{batch}");
        let commands = batch["commands"].as_array().expect("commands");
        assert_eq!(batch["sequence_from"], commands[0]["sequence"], "{batch}");
        assert_eq!(batch["sequence_to"], commands[commands.len() - 1]["sequence"], "{batch}");
    }
    let commands = commands(&batches);
    for (index, command) in commands.iter().enumerate() {
        assert_eq!(command["sequence"], json!(index), "sequences are consecutive from 0: {command}");
    }
    let kinds: Vec<&str> = commands.iter().map(|command| command["type"].as_str().expect("type")).collect();
    assert_eq!(
        kinds,
        ["register_player", "deposit", "create_api_key", "create_event", "create_market", "place_bet"],
        "{everything}"
    );
    assert_eq!(
        commands[0],
        json!({"sequence": 0, "type": "register_player", "username": "auditee", "date_of_birth": "1990-05-17",
               "country": "GB", "currency": "EUR", "actor": {"kind": "system", "id": "registration"}})
    );
    // The reference and the key are the client's (fresh for each deposit).
    let mut deposit = commands[1].clone();
    let payment_ref = deposit["payment_ref"].take();
    let key = deposit["idempotency_key"].take();
    assert!(payment_ref.as_str().is_some_and(|text| text.starts_with("psp-")), "{payment_ref}");
    assert!(key.as_str().is_some_and(|text| !text.is_empty()), "{key}");
    assert_eq!(
        deposit,
        json!({"sequence": 1, "type": "deposit", "account_id": account, "amount": "50.00", "payment_ref": null,
               "idempotency_key": null, "actor": {"kind": "player", "id": account}})
    );
    assert_eq!(
        commands[2],
        json!({"sequence": 2, "type": "create_api_key", "name": "desk", "scopes": ["trading"],
               "actor": {"kind": "api_key", "id": "bootstrap"}})
    );
    assert_eq!(commands[4]["event_id"], json!(event));
    assert_eq!(commands[4]["selections"][0], json!({"name": "Home", "price": "2.50"}));
    let mut placed = commands[5].clone();
    assert!(placed["idempotency_key"].take().as_str().is_some_and(|key| !key.is_empty()), "{placed}");
    assert_eq!(
        placed,
        json!({"sequence": 5, "type": "place_bet", "account_id": account, "bet_type": "single", "system": null,
               "each_way": false, "legs": [{"selection_id": selections[0], "price": "2.50"}], "stake": "10.00",
               "accept_price_changes": "none", "idempotency_key": null, "actor": {"kind": "player", "id": account}})
    );

    // Settling shows the results; then a walk one batch at a time gives the same trail.
    let body = json!({"results": [{"selection_id": selections[0], "outcome": "win"}]});
    let (status, answer) =
        app.call("POST", &format!("/v1/admin/markets/{market}/settle"), Some(ADMIN_KEY), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let walked = audit_trail(&app, 1).await;
    assert_eq!(walked.len(), batches.len() + 1);
    assert_eq!(walked[..batches.len()], batches[..]);
    assert_eq!(
        walked[batches.len()]["commands"][0],
        json!({"sequence": 6, "type": "settle_market", "market_id": market, "results": [
            {"selection_id": selections[0], "outcome": "win", "dead_heat_factor": null, "void_factor": null}],
            "actor": {"kind": "api_key", "id": "bootstrap"}})
    );
    assert_eq!(audit_trail(&app, 4).await, walked);
    assert!(!bet_id.is_empty());

    let verified = verification(&app).await;
    assert_eq!(verified["verified"], true, "{verified}");
    // The chain covers every record, the leader's marker too.
    assert_eq!(verified["records"], json!(first + walked.len()), "{verified}");
    assert_eq!(verified["head"], verified["expected_head"], "{verified}");
    assert_eq!(verified["head"].as_str().map(str::len), Some(64), "{verified}");
    assert_eq!(verified["reason"], Value::Null);

    // Past the end: an empty last page.
    let end = get_ok(&app, &format!("/v1/admin/audit?cursor=pos_{}", first + walked.len())).await;
    assert_eq!(end, json!({"items": [], "next_cursor": null}));
    for bad in [
        "/v1/admin/audit?cursor=bet_1",
        "/v1/admin/audit?limit=0",
        "/v1/admin/audit?limit=201",
        "/v1/admin/audit?verify=maybe",
        "/v1/admin/audit?verify=true&limit=5",
        "/v1/admin/audit?page=2",
    ] {
        let (status, body) = app.call("GET", bad, Some(ADMIN_KEY), None).await;
        assert_error(status, &body, 400, "invalid_request");
    }
}

#[tokio::test]
async fn verification_holds_across_restarts_from_a_snapshot_and_from_the_journal_alone() {
    let app = spawn_app().await;
    let player = app.funded_player("restarter", "20.00").await;
    let (_, _, selections) = app.football_match("Before v After").await;
    bet(&app, &player, &selections[1], "3.20", "2.00").await;
    let before = verification(&app).await;
    assert_eq!(before["verified"], true, "{before}");

    // The engine writes a snapshot at shutdown; the head comes back from it.
    let (path, dir) = app.stop().await;
    let secret = b"test-secret-test-secret-test-secret".to_vec();
    let app = spawn_app_on(&path, dir, GatewayConfig::new(secret.clone())).await;
    assert_eq!(verification(&app).await, before);
    deposit(&app, &player_after_restart(&app, "restarter").await, "5.00").await;
    let after = verification(&app).await;
    assert_eq!(after["verified"], true, "{after}");
    assert_eq!(after["records"], json!(before["records"].as_u64().unwrap() + 1), "{after}");

    // Without snapshots the journal alone rebuilds the same head.
    let (path, dir) = app.stop().await;
    std::fs::remove_dir_all(path.join("snapshots")).expect("remove snapshots");
    let app = spawn_app_on(&path, dir, GatewayConfig::new(secret)).await;
    assert_eq!(verification(&app).await, after);
}

/// Logs in again (refresh tokens do not survive a restart of the gateway).
async fn player_after_restart(app: &TestApp, username: &str) -> Player {
    let (status, tokens) =
        app.call("POST", "/v1/auth/login", None, Some(json!({"username": username, "password": PASSWORD}))).await;
    assert_eq!(status, 200, "login: {tokens}");
    Player {
        access_token: tokens["access_token"].as_str().expect("access token").to_string(),
        refresh_token: tokens["refresh_token"].as_str().expect("refresh token").to_string(),
        username: username.to_string(),
    }
}

#[tokio::test]
async fn a_record_forged_on_disk_fails_verification() {
    let app = spawn_app().await;
    let player = app.funded_player("forger", "20.00").await;
    deposit(&app, &player, "30.00").await;
    let honest = verification(&app).await;
    // The listing reads the read models and waits until they hold the deposit.
    let trail = audit_trail(&app, 50).await;
    assert_eq!(commands(&trail).last().expect("deposit")["amount"], "30.00", "{trail:?}");
    let (path, dir) = app.stop().await;

    // Rewrite the second deposit's record with a bigger amount and a valid checksum. The
    // shutdown snapshot covers it, so recovery does not read it again.
    let segment = journal::testing::last_segment(&path.join("journal")).expect("segment");
    let spans = journal::testing::record_spans(&segment).expect("spans");
    let span = *spans.last().expect("a record");
    let bytes = std::fs::read(&segment).expect("read segment");
    let header = journal::record::RECORD_HEADER_BYTES;
    let start = usize::try_from(span.offset).expect("offset");
    let mut payload = bytes[start + header..start + usize::try_from(span.len).expect("len")].to_vec();
    let mut batch = codec::decode_batch(&payload).expect("decodes");
    let book::Command::Deposit { amount, .. } = &mut batch.commands[0] else { panic!("{batch:?}") };
    *amount = domain::Money::from_minor(amount.minor() * 10);
    payload.clear();
    let entries = batch.commands.iter().zip(&batch.origins);
    codec::encode_batch(batch.first_sequence, batch.timestamp, batch.reply_digest, entries, &mut payload);
    let mut forged = Vec::new();
    journal::record::encode_record(&mut forged, span.position, &payload).expect("encode");
    assert_eq!(forged.len() as u64, span.len, "same length, so the segment stays well-formed");
    journal::testing::overwrite(&segment, span.offset, &forged).expect("overwrite");

    let app = spawn_app_on(&path, dir, GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec())).await;
    let trail = audit_trail(&app, 50).await;
    // The listing reads the read models, which projected the honest record before the forgery:
    // they keep it. The chain check below, over the journal itself, is what finds the forgery.
    assert_eq!(commands(&trail).last().expect("deposit")["amount"], "30.00", "the models keep what was projected");
    let forged = verification(&app).await;
    assert_eq!(forged["verified"], false, "{forged}");
    assert_eq!(forged["expected_head"], honest["head"], "{forged}");
    assert_ne!(forged["head"], honest["head"], "{forged}");
    assert_eq!(forged["records"], honest["records"], "{forged}");
    assert!(forged["reason"].as_str().is_some_and(|reason| reason.contains("differs")), "{forged}");
}

/// Minor units of a money string such as `"-14.00"`.
fn minor(text: &Value) -> i64 {
    let text = text.as_str().expect("money string");
    let (sign, digits) = text.strip_prefix('-').map_or((1, text), |rest| (-1, rest));
    let (whole, fraction) = digits.split_once('.').expect("two decimal places");
    assert_eq!(fraction.len(), 2, "{text}");
    sign * (whole.parse::<i64>().expect("whole") * 100 + fraction.parse::<i64>().expect("fraction"))
}

fn eur(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", minor.abs() / 100, minor.abs() % 100)
}

/// Sleeps past the current millisecond, so that book times before and after differ.
async fn tick() -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let now = now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    now
}

#[tokio::test]
async fn reports_show_exact_turnover_ggr_and_liabilities_after_a_resettlement() {
    let app = spawn_app().await;
    let started = tick().await;
    let ann = app.funded_player("ann", "100.00").await;
    let bob = app.funded_player("bob", "100.00").await;
    let cat = app.funded_player("cat", "100.00").await;
    let (_, settled_market, settled) = app.football_match("Settled v Resettled").await;
    let (open_event, open_market, open) = app.football_match("Still v Open").await;
    let (_, cashout_market, cashout) = app.football_match("Cash v Out").await;

    // Ann: 10.00 at 2.50, settled won (25.00), unsettled, resettled lost.
    bet(&app, &ann, &settled[0], "2.50", "10.00").await;
    // Bob: 4.00 at 3.20 stays open: liability 12.80 - 4.00 = 8.80.
    bet(&app, &bob, &open[1], "3.20", "4.00").await;
    // Cat: 10.00 at 2.50, cashed out for 19.00 after the price shortens to 1.25.
    let cat_bet = bet(&app, &cat, &cashout[0], "2.50", "10.00").await;
    let prices = json!({"prices": [{"selection_id": cashout[0], "price": "1.25"}]});
    let (status, body) =
        app.call("PUT", &format!("/v1/admin/markets/{cashout_market}/prices"), Some(ADMIN_KEY), Some(prices)).await;
    assert_eq!(status, 200, "{body}");
    let (status, quote) = app.call("GET", &format!("/v1/bets/{cat_bet}/cashout"), Some(&cat.access_token), None).await;
    assert_eq!((status, quote["amount"].as_str()), (200, Some("19.00")), "{quote}");
    let accept = json!({"quote_id": quote["quote_id"]});
    let (status, body) =
        app.call("POST", &format!("/v1/bets/{cat_bet}/cashout"), Some(&cat.access_token), Some(accept)).await;
    assert_eq!(status, 200, "{body}");

    let settle = |outcome_for: &str| json!({"results": [{"selection_id": outcome_for, "outcome": "win"}]});
    let path = |action: &str| format!("/v1/admin/markets/{settled_market}/{action}");
    assert_eq!(app.call("POST", &path("settle"), Some(ADMIN_KEY), Some(settle(&settled[0]))).await.0, 200);
    let between = tick().await;
    assert_eq!(app.call("POST", &path("unsettle"), Some(ADMIN_KEY), None).await.0, 200);
    assert_eq!(app.call("POST", &path("settle"), Some(ADMIN_KEY), Some(settle(&settled[2]))).await.0, 200);

    let turnover = get_ok(&app, "/v1/admin/reports/turnover").await;
    assert_eq!(turnover["report"], "turnover");
    assert_eq!((&turnover["from"], &turnover["to"]), (&Value::Null, &Value::Null));
    assert!(gateway::parse_rfc3339(turnover["as_of"].as_str().expect("as_of")).is_some());
    // Settled: Ann twice, less one reversal, and Cat's cash-out.
    assert_eq!(
        turnover["currencies"],
        json!([{"currency": "EUR", "bets_placed": 3, "stakes_placed": "24.00", "bets_settled": 2,
                "stakes_settled": "20.00"}])
    );

    let ggr = get_ok(&app, "/v1/admin/reports/ggr").await;
    assert_eq!(
        ggr["currencies"],
        json!([{"currency": "EUR", "stakes_settled": "30.00", "payouts": "44.00", "cashouts": "19.00",
                "gross_gaming_revenue": "-14.00",
                "resettlements": {"payouts_reversed": "25.00", "recognised_as_debt": "0.00",
                                  "stakes_reversed": "10.00", "adjustment": "15.00"},
                "net_gaming_revenue": "1.00"}])
    );
    // In the base currency itself every conversion is exact: the base total is the EUR line.
    assert_eq!(ggr["base_total"], ggr["currencies"][0], "{ggr}");
    assert_eq!(turnover["base_total"], turnover["currencies"][0], "{turnover}");
    assert_eq!((&ggr["missing_rates"], &turnover["missing_rates"]), (&json!([]), &json!([])));
    // The net is what the house kept: Ann's lost 10.00 less the 9.00 Cat's cash-out won.
    let line = &ggr["currencies"][0];
    assert_eq!(
        minor(&line["gross_gaming_revenue"]) + minor(&line["resettlements"]["adjustment"]),
        minor(&line["net_gaming_revenue"])
    );
    assert_eq!(eur(1_000 - 900), line["net_gaming_revenue"].as_str().expect("net"));

    // A window from just before the unsettlement: the reversal and the resettlement only.
    let from = gateway::format_rfc3339(between);
    let window = get_ok(&app, &format!("/v1/admin/reports/ggr?from={from}")).await;
    assert_eq!(window["from"], json!(from));
    assert_eq!(
        window["currencies"],
        json!([{"currency": "EUR", "stakes_settled": "10.00", "payouts": "0.00", "cashouts": "0.00",
                "gross_gaming_revenue": "10.00",
                "resettlements": {"payouts_reversed": "25.00", "recognised_as_debt": "0.00",
                                  "stakes_reversed": "10.00", "adjustment": "15.00"},
                "net_gaming_revenue": "25.00"}])
    );
    let window = get_ok(&app, &format!("/v1/admin/reports/turnover?from={from}")).await;
    assert_eq!(
        window["currencies"],
        json!([{"currency": "EUR", "bets_placed": 0, "stakes_placed": "0.00", "bets_settled": 0,
                "stakes_settled": "0.00"}])
    );
    // Before anything happened: nothing.
    let before = gateway::format_rfc3339(started);
    let empty = get_ok(&app, &format!("/v1/admin/reports/turnover?to={before}")).await;
    assert_eq!(empty["currencies"], json!([]), "{empty}");
    let empty = get_ok(&app, &format!("/v1/admin/reports/ggr?from={before}&to={before}")).await;
    assert_eq!(empty["currencies"], json!([]), "{empty}");

    let liabilities = get_ok(&app, "/v1/admin/reports/liabilities").await;
    assert_eq!(
        liabilities,
        json!({"report": "liabilities", "as_of": liabilities["as_of"],
               "open_bets": [{"currency": "EUR", "bets": 1, "stakes": "4.00"}],
               "total_liability": "8.80", "currency": "EUR",
               "total_liability_by_currency": [{"currency": "EUR", "liability": "8.80"}],
               "items": [{"market_id": open_market, "event_id": open_event, "liability": "8.80", "currency": "EUR",
                          "by_currency": [{"currency": "EUR", "liability": "8.80"}], "selections": [
                   {"selection_id": open[0], "liability": "0.00", "currency": "EUR", "by_currency": []},
                   {"selection_id": open[1], "liability": "8.80", "currency": "EUR",
                    "by_currency": [{"currency": "EUR", "liability": "8.80"}]},
                   {"selection_id": open[2], "liability": "0.00", "currency": "EUR", "by_currency": []}]}],
               "next_cursor": null})
    );
    // The same as CSV: a row per fact, every amount with its currency.
    let (market, event) = (open_market.as_str(), open_event.as_str());
    assert_eq!(
        get_csv(&app, "/v1/admin/reports/liabilities?format=csv").await,
        format!(
            "line,currency,bets,stakes,liability,market_id,event_id,selection_id,cursor\r\n\
             open_bets,EUR,1,4.00,,,,,\r\n\
             total_liability,EUR,,,8.80,,,,\r\n\
             total_liability_by_currency,EUR,,,8.80,,,,\r\n\
             market,EUR,,,8.80,{market},{event},,\r\n\
             market_by_currency,EUR,,,8.80,{market},{event},,\r\n\
             selection,EUR,,,0.00,{market},{event},{},\r\n\
             selection,EUR,,,8.80,{market},{event},{},\r\n\
             selection_by_currency,EUR,,,8.80,{market},{event},{},\r\n\
             selection,EUR,,,0.00,{market},{event},{},\r\n",
            open[0], open[1], open[1], open[2]
        )
    );

    for (path, code) in [
        ("/v1/admin/reports/nonsense", 404),
        ("/v1/admin/reports/turnover?from=yesterday", 400),
        ("/v1/admin/reports/ggr?from=2026-11-25T20:00:00Z&to=2026-11-25T19:00:00Z", 400),
        ("/v1/admin/reports/liabilities?from=2026-11-25T20:00:00Z", 400),
        ("/v1/admin/reports/turnover?limit=10", 400),
        ("/v1/admin/reports/ggr?currency=EUR", 400),
        ("/v1/admin/reports/liabilities?limit=0", 400),
    ] {
        let (status, body) = app.call("GET", path, Some(ADMIN_KEY), None).await;
        assert_error(status, &body, code, if code == 404 { "not_found" } else { "invalid_request" });
    }
}

#[tokio::test]
async fn rg_events_show_measures_in_force_and_the_commands_behind_them() {
    let app = spawn_app().await;
    let (ann, ann_account) = register(&app, "ann_rg").await;
    let (bob, bob_account) = register(&app, "bob_rg").await;
    let (_, cat_account) = register(&app, "cat_rg").await;
    let (_, _untouched) = register(&app, "dan_rg").await;
    let limits = json!({"deposit": {"day": "50.00"}});
    let (status, body) = app.call("PUT", "/v1/limits", Some(&ann.access_token), Some(limits)).await;
    assert_eq!(status, 200, "{body}");
    // Refused by the book (shorter than the minimum), yet journaled: the note says so.
    let (status, body) =
        app.call("POST", "/v1/self-exclusion", Some(&ann.access_token), Some(json!({"days": 10}))).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) =
        app.call("POST", "/v1/self-exclusion", Some(&ann.access_token), Some(json!({"days": 182}))).await;
    assert_eq!(status, 200, "{body}");
    let excluded_until = body["self_excluded_until"].clone();
    let (status, body) = app.call("POST", "/v1/time-out", Some(&bob.access_token), Some(json!({"hours": 24}))).await;
    assert_eq!(status, 200, "{body}");
    let freeze = json!({"frozen": true});
    let (status, body) =
        app.call("PUT", &format!("/v1/admin/accounts/{cat_account}/risk"), Some(ADMIN_KEY), Some(freeze)).await;
    assert_eq!(status, 200, "{body}");

    let report = get_ok(&app, "/v1/admin/reports/rg-events").await;
    assert_eq!(report["report"], "rg-events");
    assert!(report["note"].as_str().is_some_and(|note| note.contains("refused")), "{report}");
    assert_eq!(report["next_cursor"], Value::Null, "{report}");
    let accounts = report["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), 3, "{report}");
    assert_eq!(accounts[0]["account_id"], json!(ann_account));
    assert_eq!(accounts[0]["self_excluded_until"], excluded_until);
    assert_eq!(accounts[0]["timed_out_until"], Value::Null);
    assert_eq!(accounts[0]["limits"], json!([{"kind": "deposit", "period": "day", "value": "50.00", "pending": null}]));
    assert_eq!(accounts[1]["account_id"], json!(bob_account));
    assert!(accounts[1]["timed_out_until"].is_string(), "{report}");
    assert_eq!(
        accounts[2],
        json!({"account_id": cat_account, "frozen": true, "self_excluded_until": null, "timed_out_until": null,
               "limits": []})
    );

    let events = report["events"].as_array().expect("events");
    let shown: Vec<(String, String)> = events
        .iter()
        .map(|event| {
            (
                event["type"].as_str().expect("type").to_string(),
                event["account_id"].as_str().expect("account").to_string(),
            )
        })
        .collect();
    let expected = [
        ("set_limits", &ann_account),
        ("self_exclude", &ann_account),
        ("self_exclude", &ann_account),
        ("time_out", &bob_account),
        ("set_account_risk", &cat_account),
    ];
    assert_eq!(shown, expected.map(|(kind, account)| (kind.to_string(), account.clone())));
    assert_eq!(events[0]["changes"], json!([{"kind": "deposit", "period": "day", "value": "50.00"}]));
    assert_eq!((events[1]["days"].as_u64(), events[2]["days"].as_u64()), (Some(10), Some(182)));
    assert_eq!(events[3]["hours"], 24);
    assert_eq!((&events[4]["frozen"], &events[4]["stake_factor"]), (&json!(true), &Value::Null));
    for event in events {
        assert!(event["position"].is_u64() && event["sequence"].is_u64(), "{event}");
        assert!(gateway::parse_rfc3339(event["recorded_at"].as_str().expect("recorded_at")).is_some(), "{event}");
    }

    // One item per page: accounts first, then events, the same facts in the same order.
    let (mut walked_accounts, mut walked_events) = (Vec::new(), Vec::new());
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let path = match &cursor {
            Some(cursor) => format!("/v1/admin/reports/rg-events?limit=1&cursor={cursor}"),
            None => "/v1/admin/reports/rg-events?limit=1".to_string(),
        };
        let page = get_ok(&app, &path).await;
        walked_accounts.extend(page["accounts"].as_array().expect("accounts").iter().cloned());
        walked_events.extend(page["events"].as_array().expect("events").iter().cloned());
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(cursor, None, "the walk ends");
    assert_eq!(&walked_accounts, accounts);
    assert_eq!(&walked_events, events);

    // A window after everything: the measures are still in force, no commands in it.
    let later = gateway::format_rfc3339(now_ms() + 60_000);
    let window = get_ok(&app, &format!("/v1/admin/reports/rg-events?from={later}")).await;
    assert_eq!(window["accounts"].as_array().map(Vec::len), Some(3), "{window}");
    assert_eq!(window["events"], json!([]), "{window}");
    assert_eq!(window["next_cursor"], Value::Null, "{window}");
    let (status, body) = app.call("GET", "/v1/admin/reports/rg-events?cursor=pos_x", Some(ADMIN_KEY), None).await;
    assert_error(status, &body, 400, "invalid_request");

    // The same as CSV: the accounts with their limits, then a row per command (and per limit
    // change); a page of one item ends with the cursor of the next.
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    let at = |event: &Value| format!("{},{},{}", event["position"], text(&event["recorded_at"]), event["sequence"]);
    let (ann_until, bob_until) = (text(&accounts[0]["self_excluded_until"]), text(&accounts[1]["timed_out_until"]));
    assert_eq!(
        get_csv(&app, "/v1/admin/reports/rg-events?format=csv").await,
        format!(
            "line,account_id,currency,frozen,self_excluded_until,timed_out_until,kind,period,value,pending_value,\
             effective_at,position,recorded_at,sequence,type,hours,days,stake_factor,cursor\r\n\
             account,{ann_account},EUR,false,{ann_until},,,,,,,,,,,,,,\r\n\
             limit,{ann_account},EUR,,,,deposit,day,50.00,,,,,,,,,,\r\n\
             account,{bob_account},EUR,false,,{bob_until},,,,,,,,,,,,,\r\n\
             account,{cat_account},EUR,true,,,,,,,,,,,,,,,\r\n\
             event,{ann_account},EUR,,,,deposit,day,50.00,,,{},set_limits,,,,\r\n\
             event,{ann_account},EUR,,,,,,,,,{},self_exclude,,10,,\r\n\
             event,{ann_account},EUR,,,,,,,,,{},self_exclude,,182,,\r\n\
             event,{bob_account},EUR,,,,,,,,,{},time_out,24,,,\r\n\
             event,{cat_account},EUR,true,,,,,,,,{},set_account_risk,,,,\r\n",
            at(&events[0]),
            at(&events[1]),
            at(&events[2]),
            at(&events[3]),
            at(&events[4])
        )
    );
    let first_page = get_ok(&app, "/v1/admin/reports/rg-events?limit=1").await;
    let cursor = text(&first_page["next_cursor"]);
    assert!(!cursor.is_empty(), "{first_page}");
    let csv = get_csv(&app, "/v1/admin/reports/rg-events?limit=1&format=csv").await;
    assert!(csv.ends_with(&format!("next_cursor,,,,,,,,,,,,,,,,,,{cursor}\r\n")), "{csv}");
    assert_eq!(csv.lines().count(), 4, "header, the account, its limit, the cursor: {csv}");
}

#[tokio::test]
async fn compliance_routes_need_the_compliance_scope() {
    let app = spawn_app().await;
    let player = app.funded_player("curious", "10.00").await;
    let trading = api_key(&app, "trader", &["trading", "settlement"]).await;
    let compliance = api_key(&app, "auditor", &["compliance"]).await;
    let paths = [
        "/v1/admin/audit",
        "/v1/admin/audit?verify=true",
        "/v1/admin/reports/turnover",
        "/v1/admin/reports/ggr",
        "/v1/admin/reports/liabilities",
        "/v1/admin/reports/rg-events",
    ];
    for path in paths {
        let (status, body) = app.call("GET", path, None, None).await;
        assert_error(status, &body, 401, "unauthenticated");
        let (status, body) = app.call("GET", path, Some(&player.access_token), None).await;
        assert_error(status, &body, 403, "forbidden");
        let (status, body) = app.call("GET", path, Some(&trading), None).await;
        assert_error(status, &body, 403, "forbidden");
        let (status, body) = app.call("GET", path, Some(&compliance), None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // The scope is checked first: a caller without it learns nothing about report names.
    let (status, body) = app.call("GET", "/v1/admin/reports/nonsense", Some(&trading), None).await;
    assert_error(status, &body, 403, "forbidden");
}
