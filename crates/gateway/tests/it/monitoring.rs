//! AML monitoring and markers of harm (issue 13, items 4 and 5), over a real socket: each role
//! and scope against each route, rules fired through the HTTP flows (deposits, bets in the
//! night hours, a shared payment instrument), the case queue's actions with their reasons
//! (a freeze refusing bets with `account_frozen` until the unfreeze), the suspicious-activity
//! report in JSON and CSV, and the case commands in the audit trail. The reads come from the
//! read models, so a closed case, its alerts and its place in the report stay served.
//!
//! The harness runs on the system clock, so the night-hours test sets the night to the hours
//! around now rather than moving time (the book's unit tests move time).

use serde_json::{json, Value};

use crate::actors::audited;
use crate::harness::{spawn_app, spawn_app_without_projector, TestApp, ADMIN_KEY};
use crate::staff::{code, create, login};

/// Every rule off; a test turns on what it tests.
fn rules_off() -> Value {
    json!({
        "deposits": null, "withdrawals": null, "turnover": null, "rapid_in_out": null,
        "shared_accounts_max": null, "deposits_per_day": null, "night_bets_per_day": null,
        "night_start_hour": 0, "night_end_hour": 6, "refused_withdrawals": null,
        "deposit_while_withdrawal_pending": false
    })
}

async fn set_rules(app: &TestApp, changes: Value) {
    let mut rules = rules_off();
    for (key, value) in changes.as_object().expect("object") {
        rules[key] = value.clone();
    }
    let (status, body) = app.call("PUT", "/v1/admin/monitoring-rules", Some(ADMIN_KEY), Some(rules)).await;
    assert_eq!(status, 200, "{body}");
}

async fn deposit(app: &TestApp, token: &str, amount: &str, instrument: Option<&str>) -> (u16, Value) {
    let mut body = json!({"amount": amount, "payment_ref": format!("psp-{}", crate::harness::fresh_idempotency_key())});
    if let Some(instrument) = instrument {
        body["instrument"] = json!(instrument);
    }
    app.call("POST", "/v1/wallet/deposits", Some(token), Some(body)).await
}

async fn id_of(app: &TestApp, username: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, body) = app.call("GET", &format!("/v1/admin/accounts?q={username}"), Some(ADMIN_KEY), None).await;
        if status == 200 {
            if let Some(id) =
                body["items"].as_array().and_then(|items| items.first()).and_then(|item| item["id"].as_str())
            {
                return id.to_string();
            }
        }
        assert!(std::time::Instant::now() < deadline, "account of {username}: {status} {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn bet(app: &TestApp, token: &str, selection: &str) -> (u16, Value) {
    app.call(
        "POST",
        "/v1/bets",
        Some(token),
        Some(json!({"type": "single", "legs": [{"selection_id": selection, "price": "2.50"}], "stake": "1.00",
                    "accept_price_changes": "any"})),
    )
    .await
}

async fn act(app: &TestApp, token: &str, case: &str, body: Value) -> (u16, Value) {
    app.call("POST", &format!("/v1/admin/cases/{case}/actions"), Some(token), Some(body)).await
}

/// A player with an open case (two deposits with `deposits_per_day` 2); returns the player's
/// token, account id and case id.
async fn player_with_case(app: &TestApp, username: &str) -> (String, String, String) {
    set_rules(app, json!({"deposits_per_day": 2})).await;
    let player = app.player(username).await;
    deposit(app, &player.access_token, "50.00", None).await;
    let (status, body) = deposit(app, &player.access_token, "50.00", None).await;
    assert_eq!(status, 201, "{body}");
    let account = id_of(app, &player.username).await;
    let (status, cases) = app.call("GET", &format!("/v1/admin/cases?account={account}"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{cases}");
    let case = cases["items"][0]["id"].as_str().expect("a case").to_string();
    (player.access_token, account, case)
}

#[tokio::test]
async fn each_role_and_scope_against_each_monitoring_route() {
    let app = spawn_app().await;
    let (player, _, case) = player_with_case(&app, "watched").await;
    let mut tokens: Vec<(String, String)> = Vec::new();
    for role in ["trader", "settlement", "compliance", "support", "admin"] {
        let member = create(&app, &format!("staff.{role}"), &[role]).await;
        tokens.push((role.to_string(), login(&app, &member).await));
    }
    for scope in ["trading", "settlement", "compliance", "admin"] {
        let (status, key) = app
            .call("POST", "/v1/admin/api-keys", Some(ADMIN_KEY), Some(json!({"name": scope, "scopes": [scope]})))
            .await;
        assert_eq!(status, 201, "{key}");
        tokens.push((format!("key:{scope}"), key["key"].as_str().expect("key").to_string()));
    }
    tokens.push(("player".to_string(), player));
    let rules = {
        let (_, rules) = app.call("GET", "/v1/admin/monitoring-rules", Some(ADMIN_KEY), None).await;
        rules
    };
    let reads = [
        "/v1/admin/monitoring-rules".to_string(),
        "/v1/admin/alerts".to_string(),
        "/v1/admin/cases".to_string(),
        format!("/v1/admin/cases/{case}"),
        "/v1/admin/reports/suspicious-activity".to_string(),
    ];
    for (who, token) in &tokens {
        let reader = ["compliance", "support", "admin", "key:compliance", "key:admin"].contains(&who.as_str());
        for path in &reads {
            let (status, body) = app.call("GET", path, Some(token), None).await;
            assert_eq!(status, if reader { 200 } else { 403 }, "{who} GET {path}: {body}");
            if !reader {
                assert_eq!(code(&body), Some("forbidden"), "{who} GET {path}");
            }
        }
        let admin = ["admin", "key:admin"].contains(&who.as_str());
        let (status, body) = app.call("PUT", "/v1/admin/monitoring-rules", Some(token), Some(rules.clone())).await;
        assert_eq!(status, if admin { 200 } else { 403 }, "{who} PUT rules: {body}");
        let actor = ["compliance", "admin", "key:compliance", "key:admin"].contains(&who.as_str());
        let (status, body) = act(&app, token, &case, json!({"action": "note", "reason": "checked", "note": who})).await;
        assert_eq!(status, if actor { 200 } else { 403 }, "{who} POST action: {body}");
    }
    for path in &reads {
        let (status, body) = app.call("GET", path, None, None).await;
        assert_eq!((status, code(&body)), (401, Some("unauthenticated")), "GET {path}");
    }
    let (status, case_view) = app.call("GET", &format!("/v1/admin/cases/{case}"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200);
    assert_eq!(case_view["actions"].as_array().expect("actions").len(), 4, "{case_view}");
    app.stop().await;
}

#[tokio::test]
async fn deposits_open_a_case_and_a_freeze_refuses_bets_until_the_unfreeze() {
    let app = spawn_app().await;
    let (_, _, selections) = app.football_match("Watch v Ward").await;
    let (player, account, case) = player_with_case(&app, "frequent").await;
    // The alert: a marker of harm, in the alerts list with its figures.
    let (status, alerts) =
        app.call("GET", &format!("/v1/admin/alerts?account={account}&kind=harm"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{alerts}");
    let alert = &alerts["items"][0];
    assert_eq!(
        (&alert["rule"], &alert["kind"], &alert["value"], &alert["threshold"], &alert["case_id"]),
        (&json!("deposit_frequency"), &json!("harm"), &json!("2"), &json!("2"), &json!(case)),
        "{alerts}"
    );
    let (_, none) =
        app.call("GET", &format!("/v1/admin/alerts?account={account}&kind=aml"), Some(ADMIN_KEY), None).await;
    assert_eq!(none["items"], json!([]), "{none}");
    let (status, bad) = app.call("GET", "/v1/admin/alerts?rule=nonsense", Some(ADMIN_KEY), None).await;
    assert_eq!((status, code(&bad)), (400, Some("invalid_request")));
    // The customer view names the open case.
    let (status, customer) = app.call("GET", &format!("/v1/admin/accounts/{account}"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{customer}");
    assert_eq!(customer["open_case"], json!({"id": case, "status": "open"}), "{customer}");
    let compliance = login(&app, &create(&app, "comp.officer", &["compliance"]).await).await;
    // A reason is required.
    let (status, body) = act(&app, &compliance, &case, json!({"action": "freeze"})).await;
    assert_eq!((status, code(&body), &body["error"]["field"]), (400, Some("invalid_request"), &json!("reason")));
    let (status, body) = act(&app, &compliance, &case, json!({"action": "freeze", "reason": "source of funds"})).await;
    assert_eq!((status, &body["frozen"], &body["status"]), (200, &json!(true), &json!("open")), "{body}");
    let (status, refused) = bet(&app, &player, &selections[0]).await;
    assert_eq!((status, code(&refused)), (403, Some("account_frozen")), "{refused}");
    let (status, body) = act(&app, &compliance, &case, json!({"action": "unfreeze", "reason": "documents seen"})).await;
    assert_eq!((status, &body["frozen"]), (200, &json!(false)), "{body}");
    let (status, placed) = bet(&app, &player, &selections[0]).await;
    assert_eq!(status, 201, "{placed}");
    // Escalate, then report with a reference; transitions out of order are refused.
    let (status, body) = act(&app, &compliance, &case, json!({"action": "escalate", "reason": "pattern"})).await;
    assert_eq!((status, &body["status"]), (200, &json!("escalated")), "{body}");
    let (status, body) = act(&app, &compliance, &case, json!({"action": "escalate", "reason": "again"})).await;
    assert_eq!((status, code(&body)), (409, Some("invalid_transition")), "{body}");
    let (status, body) = act(&app, &compliance, &case, json!({"action": "mark_reported", "reason": "filed"})).await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("reference")), "{body}");
    let (status, body) =
        act(&app, &compliance, &case, json!({"action": "mark_reported", "reason": "filed", "reference": "SAR-2026-7"}))
            .await;
    assert_eq!((status, &body["status"], &body["reference"]), (200, &json!("reported"), &json!("SAR-2026-7")));
    let (status, body) = act(&app, &compliance, &case, json!({"action": "dance", "reason": "x"})).await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("action")), "{body}");
    // The suspicious-activity report, JSON and CSV.
    let (status, report) = app.call("GET", "/v1/admin/reports/suspicious-activity", Some(&compliance), None).await;
    assert_eq!(status, 200, "{report}");
    let listed = report["cases"].as_array().expect("cases").iter().find(|item| item["case_id"] == json!(case));
    let listed = listed.expect("the reported case is in the report");
    assert_eq!((&listed["status"], &listed["rules"]), (&json!("reported"), &json!(["deposit_frequency"])), "{listed}");
    assert_eq!(listed["actions"].as_array().expect("actions").len(), 4, "{listed}");
    let response = app
        .client
        .get(app.url("/v1/admin/reports/suspicious-activity?format=csv"))
        .bearer_auth(&compliance)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("type").starts_with("text/csv"));
    let csv = response.text().await.expect("body");
    let mut lines = csv.split("\r\n");
    assert_eq!(
        lines.next(),
        Some("case_id,account_id,status,opened_at,updated_at,reference,rules,alerts,largest_amount,currency,actions")
    );
    let row = lines.find(|line| line.starts_with(&format!("{case},"))).expect("the case's row");
    assert!(row.contains(&format!(",{account},reported,")) && row.contains("SAR-2026-7"), "{row}");
    assert!(row.contains("escalate:") && row.contains("mark_reported:"), "{row}");
    let (status, _) = app.call("GET", "/v1/admin/reports/suspicious-activity?format=xml", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 400);
    // Closing takes the case out of the queue; it takes no more actions.
    let (status, body) = act(&app, &compliance, &case, json!({"action": "close", "reason": "reported, done"})).await;
    assert_eq!((status, &body["status"]), (200, &json!("closed")), "{body}");
    // Still served, closed, from the read models.
    let (status, body) = app.call("GET", &format!("/v1/admin/cases/{case}"), Some(ADMIN_KEY), None).await;
    assert_eq!((status, &body["status"]), (200, &json!("closed")), "{body}");
    let (status, body) = act(&app, &compliance, &case, json!({"action": "note", "reason": "late", "note": "x"})).await;
    assert_eq!((status, code(&body)), (409, Some("case_closed")));
    let (status, body) =
        act(&app, &compliance, "case_999", json!({"action": "note", "reason": "r", "note": "x"})).await;
    assert_eq!((status, code(&body)), (404, Some("unknown_case")));
    let (status, body) = app.call("GET", "/v1/admin/cases/nonsense", Some(ADMIN_KEY), None).await;
    assert_eq!((status, code(&body)), (404, Some("unknown_case")));
    let (_, customer) = app.call("GET", &format!("/v1/admin/accounts/{account}"), Some(ADMIN_KEY), None).await;
    assert_eq!(customer["open_case"], Value::Null);
    // The audit trail shows every case action with the staff member and the reason.
    let commands = audited(&app).await;
    let actions: Vec<&Value> = commands.iter().filter(|command| command["type"] == "case_action").collect();
    assert!(actions.len() >= 6, "{actions:?}");
    let freeze = actions.iter().find(|command| command["action"] == "freeze").expect("the freeze");
    assert_eq!((&freeze["actor"]["kind"], &freeze["reason"]), (&json!("staff"), &json!("source of funds")), "{freeze}");
    assert!(commands.iter().any(|command| command["type"] == "set_monitoring_rules"));
    app.stop().await;
}

#[tokio::test]
async fn bets_in_the_night_hours_raise_late_night_play() {
    let app = spawn_app().await;
    let (_, _, selections) = app.football_match("Night v Owls").await;
    // The night is the hours around now (the harness's clock is the system's).
    let hour = (crate::harness::now_ms() / 3_600_000) % 24;
    set_rules(&app, json!({"night_bets_per_day": 2, "night_start_hour": hour, "night_end_hour": (hour + 2) % 24}))
        .await;
    let player = app.funded_player("owl", "100.00").await;
    let account = id_of(&app, "owl").await;
    let (status, placed) = bet(&app, &player.access_token, &selections[0]).await;
    assert_eq!(status, 201, "{placed}");
    let (_, alerts) = app.call("GET", &format!("/v1/admin/alerts?account={account}"), Some(ADMIN_KEY), None).await;
    assert_eq!(alerts["items"], json!([]), "one night bet is below the count");
    bet(&app, &player.access_token, &selections[0]).await;
    let (_, alerts) = app
        .call("GET", &format!("/v1/admin/alerts?account={account}&rule=late_night_play"), Some(ADMIN_KEY), None)
        .await;
    assert_eq!(alerts["items"][0]["kind"], json!("harm"), "{alerts}");
    assert_eq!(alerts["items"][0]["value"], json!("2"), "{alerts}");
    app.stop().await;
}

#[tokio::test]
async fn accounts_sharing_a_payment_instrument_are_each_alerted() {
    let app = spawn_app().await;
    set_rules(&app, json!({"shared_accounts_max": 1, "deposits": {"period": "day", "amount": "1000.00"}})).await;
    let first = app.player("card.one").await;
    let second = app.player("card.two").await;
    let (status, body) = deposit(&app, &first.access_token, "10.00", Some("tok_card_4242")).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = deposit(&app, &first.access_token, "10.00", Some("")).await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("instrument")), "{body}");
    let (status, body) = deposit(&app, &second.access_token, "10.00", Some("tok_card_4242")).await;
    assert_eq!(status, 201, "{body}");
    for username in ["card.one", "card.two"] {
        let account = id_of(&app, username).await;
        let (_, alerts) = app.call("GET", &format!("/v1/admin/alerts?account={account}"), Some(ADMIN_KEY), None).await;
        let rules: Vec<&Value> =
            alerts["items"].as_array().expect("items").iter().map(|alert| &alert["rule"]).collect();
        assert_eq!(rules, [&json!("shared_instrument")], "{username}: {alerts}");
        assert_eq!(alerts["items"][0]["value"], json!("2"), "two accounts share it");
    }
    // A money threshold: in the base currency, just below and then at the threshold.
    let (status, body) = deposit(&app, &first.access_token, "989.99", None).await;
    assert_eq!(status, 201, "{body}");
    let account = id_of(&app, "card.one").await;
    let path = format!("/v1/admin/alerts?account={account}&rule=deposit_threshold");
    let (_, alerts) = app.call("GET", &path, Some(ADMIN_KEY), None).await;
    assert_eq!(alerts["items"], json!([]), "999.99 deposited today");
    let (status, body) = deposit(&app, &first.access_token, "0.01", None).await;
    assert_eq!(status, 201, "{body}");
    let (_, alerts) = app.call("GET", &path, Some(ADMIN_KEY), None).await;
    let alert = &alerts["items"][0];
    assert_eq!(
        (&alert["value"], &alert["threshold"], &alert["currency"]),
        (&json!("1000.00"), &json!("1000.00"), &json!("EUR"))
    );
    // Rules out of range are refused with the field's reason.
    let mut bad = rules_off();
    bad["shared_accounts_max"] = json!(0);
    let (status, body) = app.call("PUT", "/v1/admin/monitoring-rules", Some(ADMIN_KEY), Some(bad)).await;
    assert_eq!((status, code(&body)), (400, Some("invalid_request")), "{body}");
    let (status, body) =
        app.call("PUT", "/v1/admin/monitoring-rules", Some(ADMIN_KEY), Some(json!({"deposits": null}))).await;
    assert_eq!(status, 400, "every field is required: {body}");
    let (_, rules) = app.call("GET", "/v1/admin/monitoring-rules", Some(ADMIN_KEY), None).await;
    assert_eq!((&rules["shared_accounts_max"], &rules["base_currency"]), (&json!(1), &json!("EUR")), "{rules}");
    app.stop().await;
}

#[tokio::test]
async fn accounts_registered_at_one_address_are_each_alerted() {
    let app = spawn_app().await;
    set_rules(&app, json!({"shared_accounts_max": 1})).await;
    let register = |username: &str, address: &str, postcode: &str| {
        json!({
            "username": username, "password": "correct horse battery staple", "date_of_birth": "1990-05-17",
            "country": "GB", "first_name": "Sam", "last_name": username, "address": address, "postcode": postcode
        })
    };
    // The same address written two ways (case, spacing, punctuation), and a third elsewhere.
    for (username, address, postcode) in [
        ("flat.one", "12 Acacia Avenue, Flat 3", "AB1 2CD"),
        ("flat.two", "12 ACACIA AVENUE FLAT 3", "ab12cd"),
        ("elsewhere", "1 Other Road", "ZZ9 9ZZ"),
    ] {
        let (status, body) =
            app.call("POST", "/v1/auth/register", None, Some(register(username, address, postcode))).await;
        assert_eq!(status, 201, "{body}");
    }
    for (username, expected) in [("flat.one", json!(["shared_address"])), ("flat.two", json!(["shared_address"]))] {
        let account = id_of(&app, username).await;
        let (_, alerts) = app.call("GET", &format!("/v1/admin/alerts?account={account}"), Some(ADMIN_KEY), None).await;
        let rules: Vec<&Value> =
            alerts["items"].as_array().expect("items").iter().map(|alert| &alert["rule"]).collect();
        assert_eq!(json!(rules), expected, "{username}: {alerts}");
        assert_eq!(alerts["items"][0]["kind"], json!("aml"), "{alerts}");
    }
    let account = id_of(&app, "elsewhere").await;
    let (_, alerts) = app.call("GET", &format!("/v1/admin/alerts?account={account}"), Some(ADMIN_KEY), None).await;
    assert_eq!(alerts["items"], json!([]), "{alerts}");
    app.stop().await;
}

/// A case action through the raw client: status, body and the write's `X-Journal-Position`.
async fn act_at(app: &TestApp, token: &str, case: &str, body: Value) -> (u16, Value, String) {
    let response = app
        .client
        .post(app.url(&format!("/v1/admin/cases/{case}/actions")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let position = response
        .headers()
        .get("x-journal-position")
        .map(|value| value.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    (status, response.json().await.expect("json"), position)
}

async fn read_at(app: &TestApp, path: &str, position: &str) -> (u16, Value) {
    app.call_with("GET", path, Some(ADMIN_KEY), None, &[("x-min-position", position)]).await
}

#[tokio::test]
async fn a_closed_case_stays_served_from_the_read_models() {
    let app = spawn_app().await;
    let compliance = login(&app, &create(&app, "comp.reader", &["compliance"]).await).await;
    let (_, account, case) = player_with_case(&app, "closing").await;
    // An action, then a read at its position sees it.
    let (status, body, position) =
        act_at(&app, &compliance, &case, json!({"action": "escalate", "reason": "large and frequent"})).await;
    assert_eq!((status, &body["status"]), (200, &json!("escalated")), "{body}");
    assert!(position.parse::<u64>().is_ok(), "a case action carries X-Journal-Position: {position:?}");
    let (status, seen) = read_at(&app, &format!("/v1/admin/cases/{case}"), &position).await;
    assert_eq!((status, &seen["status"]), (200, &json!("escalated")), "{seen}");
    assert_eq!(seen["actions"][0]["reason"], json!("large and frequent"), "{seen}");
    let (status, body, _) = act_at(
        &app,
        &compliance,
        &case,
        json!({"action": "mark_reported", "reason": "filed", "reference": "SAR-2026-42"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body, position) =
        act_at(&app, &compliance, &case, json!({"action": "close", "reason": "reported, nothing more"})).await;
    assert_eq!((status, &body["status"]), (200, &json!("closed")), "{body}");
    // The closed case, with its alerts and every action, at the close's position.
    let (status, closed) = read_at(&app, &format!("/v1/admin/cases/{case}"), &position).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(
        (&closed["status"], &closed["account_id"], &closed["reference"], &closed["alerts_total"]),
        (&json!("closed"), &json!(account), &json!("SAR-2026-42"), &json!(1)),
        "{closed}"
    );
    assert_eq!(closed["alerts"][0]["rule"], json!("deposit_frequency"), "{closed}");
    assert_eq!(closed["alerts"][0]["case_id"], json!(case), "{closed}");
    let actions: Vec<&Value> =
        closed["actions"].as_array().expect("actions").iter().map(|action| &action["action"]).collect();
    assert_eq!(actions, [&json!("escalate"), &json!("mark_reported"), &json!("close")], "{closed}");
    assert_eq!(closed["actions"][2]["reason"], json!("reported, nothing more"));
    assert_eq!(closed["actions"][2]["actor"]["kind"], json!("staff"));
    // A closed case takes no more actions; the book decides that.
    let (status, body) = act(&app, &compliance, &case, json!({"action": "note", "reason": "late", "note": "x"})).await;
    assert_eq!((status, code(&body)), (409, Some("case_closed")), "{body}");
    // Listed among the closed cases, not the open ones.
    let (status, page) = app.call("GET", "/v1/admin/cases?status=closed", Some(&compliance), None).await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&Value> = page["items"].as_array().expect("items").iter().map(|item| &item["id"]).collect();
    assert_eq!(ids, [&json!(case)], "{page}");
    assert_eq!(page["items"][0]["actions"].as_array().map(Vec::len), Some(3), "{page}");
    let (_, open) = app.call("GET", "/v1/admin/cases?status=open", Some(&compliance), None).await;
    assert_eq!(open["items"], json!([]), "{open}");
    // Its alert is still listed.
    let (status, alerts) =
        app.call("GET", &format!("/v1/admin/alerts?account={account}"), Some(&compliance), None).await;
    assert_eq!(status, 200, "{alerts}");
    assert_eq!(alerts["items"].as_array().map(Vec::len), Some(1), "{alerts}");
    assert_eq!((&alerts["items"][0]["case_id"], &alerts["items"][0]["value"]), (&json!(case), &json!("2")));
    // A second case, closed without an escalation or a report: listed, not in the report.
    let (_, other_account, other) = player_with_case(&app, "closing.too").await;
    let (status, body, position) =
        act_at(&app, &compliance, &other, json!({"action": "close", "reason": "benign"})).await;
    assert_eq!(status, 200, "{body}");
    // Pages of one case, by cursor, oldest first.
    let (status, first) = read_at(&app, "/v1/admin/cases?limit=1", &position).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["items"][0]["id"], json!(case), "{first}");
    let cursor = first["next_cursor"].as_str().expect("a next page").to_string();
    let (_, second) = app.call("GET", &format!("/v1/admin/cases?limit=1&cursor={cursor}"), Some(ADMIN_KEY), None).await;
    assert_eq!((&second["items"][0]["id"], &second["next_cursor"]), (&json!(other), &Value::Null), "{second}");
    let (_, alert_page) = app.call("GET", "/v1/admin/alerts?limit=1", Some(ADMIN_KEY), None).await;
    let cursor = alert_page["next_cursor"].as_str().expect("a next page of alerts").to_string();
    let (_, alert_page) =
        app.call("GET", &format!("/v1/admin/alerts?limit=1&cursor={cursor}"), Some(ADMIN_KEY), None).await;
    assert_eq!(alert_page["items"][0]["account_id"], json!(other_account), "{alert_page}");
    let (status, _) = app.call("GET", "/v1/admin/alerts?cursor=nonsense", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 400);
    let (_, later) = app.call("GET", "/v1/admin/alerts?from=2090-01-01T00:00:00Z", Some(ADMIN_KEY), None).await;
    assert_eq!(later["items"], json!([]), "{later}");
    let (_, earlier) = app.call("GET", "/v1/admin/alerts?from=2000-01-01T00:00:00Z", Some(ADMIN_KEY), None).await;
    assert_eq!(earlier["items"].as_array().map(Vec::len), Some(2), "{earlier}");
    let (status, body) = read_at(&app, "/v1/admin/cases", "not-a-position").await;
    assert_eq!((status, code(&body)), (400, Some("invalid_request")), "{body}");
    // The report keeps the reported-then-closed case, JSON and CSV.
    let (status, report) = app.call("GET", "/v1/admin/reports/suspicious-activity", Some(&compliance), None).await;
    assert_eq!(status, 200, "{report}");
    let listed: Vec<&Value> = report["cases"].as_array().expect("cases").iter().collect();
    assert_eq!(listed.len(), 1, "only the reported case: {report}");
    assert_eq!(
        (&listed[0]["case_id"], &listed[0]["status"], &listed[0]["reference"], &report["truncated"]),
        (&json!(case), &json!("closed"), &json!("SAR-2026-42"), &json!(false)),
        "{report}"
    );
    assert_eq!(listed[0]["rules"], json!(["deposit_frequency"]));
    assert_eq!(listed[0]["actions"].as_array().map(Vec::len), Some(3));
    let response = app
        .client
        .get(app.url("/v1/admin/reports/suspicious-activity?format=csv"))
        .bearer_auth(&compliance)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let csv = response.text().await.expect("body");
    let rows: Vec<&str> = csv.split("\r\n").skip(1).filter(|line| !line.is_empty()).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    assert!(rows[0].starts_with(&format!("{case},{account},closed,")), "{csv}");
    assert!(rows[0].contains("SAR-2026-42") && rows[0].contains("close:"), "{csv}");
    // A window that ends before the close leaves it out.
    let (_, empty) =
        app.call("GET", "/v1/admin/reports/suspicious-activity?to=2000-01-01T00:00:00Z", Some(&compliance), None).await;
    assert_eq!(empty["cases"], json!([]), "{empty}");
    // Unknown cases stay 404.
    let (status, body) = app.call("GET", "/v1/admin/cases/case_999", Some(ADMIN_KEY), None).await;
    assert_eq!((status, code(&body)), (404, Some("unknown_case")), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn with_the_projector_off_the_monitoring_reads_answer_unavailable() {
    let app = spawn_app_without_projector().await;
    for path in
        ["/v1/admin/alerts", "/v1/admin/cases", "/v1/admin/cases/case_1", "/v1/admin/reports/suspicious-activity"]
    {
        let (status, body) = app.call("GET", path, Some(ADMIN_KEY), None).await;
        assert_eq!((status, code(&body)), (503, Some("unavailable")), "{path}: {body}");
    }
    // The rules come from the book.
    let (status, body) = app.call("GET", "/v1/admin/monitoring-rules", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.call("GET", "/v1/admin/cases?limit=0", Some(ADMIN_KEY), None).await;
    assert_eq!((status, code(&body)), (400, Some("invalid_request")), "validated before the models: {body}");
    app.stop().await;
}
