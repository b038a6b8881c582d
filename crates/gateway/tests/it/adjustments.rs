//! Manual balance adjustments and staff management over a real socket: each role against each
//! adjustment route (support within its limit at once, above it pending; the requester never
//! approves; another compliance officer does; a trader and an API key are refused), the
//! ledger's balances after, the audit trail naming who asked and who approved; staff listed,
//! their roles changed with a reason, logged out; a staff member's reason required for voids,
//! resettlements and account risk changes.

use serde_json::{json, Value};

use crate::actors::audited;
use crate::harness::{spawn_app, TestApp, ADMIN_KEY};
use crate::staff::{code, create, login, Member};

struct Desk {
    support: String,
    compliance: String,
    compliance_2: String,
    trader: String,
    admin: String,
    members: Vec<Member>,
}

async fn desk(app: &TestApp) -> Desk {
    let mut tokens = Vec::new();
    let mut members = Vec::new();
    for (name, role) in [
        ("desk.support", "support"),
        ("desk.compliance", "compliance"),
        ("desk.compliance2", "compliance"),
        ("desk.trader", "trader"),
        ("desk.admin", "admin"),
    ] {
        let member = create(app, name, &[role]).await;
        tokens.push(login(app, &member).await);
        members.push(member);
    }
    let mut tokens = tokens.into_iter();
    let mut next = || tokens.next().expect("a token");
    Desk { support: next(), compliance: next(), compliance_2: next(), trader: next(), admin: next(), members }
}

/// The account id of a registered player.
async fn account_of(app: &TestApp, username: &str) -> String {
    let (status, found) = app.call("GET", &format!("/v1/admin/accounts?q={username}"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{found}");
    found["items"][0]["id"].as_str().expect("id").to_string()
}

async fn adjust(app: &TestApp, token: &str, account: &str, body: Value) -> (u16, Value) {
    app.call("POST", &format!("/v1/admin/accounts/{account}/adjustments"), Some(token), Some(body)).await
}

fn credit(amount: &str) -> Value {
    json!({"amount": amount, "direction": "credit", "reason": "goodwill after the outage"})
}

async fn balance(app: &TestApp, token: &str) -> String {
    let (status, wallet) = app.call("GET", "/v1/wallet", Some(token), None).await;
    assert_eq!(status, 200, "{wallet}");
    wallet["balance"].as_str().expect("balance").to_string()
}

#[tokio::test]
async fn adjustments_within_a_role_limit_post_at_once_and_above_it_need_a_second_staff_member() {
    let app = spawn_app().await;
    let player = app.funded_player("adjusted.amy", "100.00").await;
    let account = account_of(&app, "adjusted.amy").await;
    let desk = desk(&app).await;

    // Support: up to 50.00 at once.
    let (status, done) = adjust(&app, &desk.support, &account, credit("30.00")).await;
    assert_eq!(status, 201, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["amount"], "30.00");
    assert_eq!(done["currency"], "EUR");
    assert_eq!(done["requested_by"], desk.members[0].id.as_str());
    assert!(done["transaction_id"].as_str().expect("transaction").starts_with("trf_"), "{done}");
    assert_eq!(balance(&app, &player.access_token).await, "130.00");

    // Above it: pending, nothing posted, listed for the desk.
    let (status, pending) = adjust(&app, &desk.support, &account, credit("80.00")).await;
    assert_eq!((status, &pending["status"]), (201, &json!("pending_approval")), "{pending}");
    assert!(pending["expires_at"].is_string(), "{pending}");
    let id = pending["adjustment_id"].as_str().expect("id").to_string();
    assert_eq!(balance(&app, &player.access_token).await, "130.00");
    let (status, listed) = app.call("GET", "/v1/admin/adjustments?status=pending", Some(&desk.support), None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"].as_array().expect("items").len(), 1, "{listed}");
    assert_eq!(listed["items"][0]["adjustment_id"], id.as_str());
    assert_eq!(listed["items"][0]["reason"], "goodwill after the outage");
    let (status, body) = app.call("GET", "/v1/admin/adjustments?status=completed", Some(&desk.admin), None).await;
    assert_eq!((status, code(&body)), (400, Some("invalid_request")), "{body}");
    let (status, body) = app.call("GET", "/v1/admin/adjustments", Some(&desk.trader), None).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");

    // Four eyes: the requester never approves; a trader never; an API key never, whatever its
    // scopes; another compliance officer does.
    let approve = format!("/v1/admin/adjustments/{id}/approve");
    let (status, body) = app.call("POST", &approve, Some(&desk.support), None).await;
    assert_eq!((status, code(&body)), (403, Some("self_approval")), "{body}");
    let (status, body) = app.call("POST", &approve, Some(&desk.trader), None).await;
    assert_eq!((status, code(&body)), (403, Some("adjustment_forbidden")), "{body}");
    let (status, body) = app.call("POST", &approve, Some(ADMIN_KEY), None).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");
    let (status, approved) = app.call("POST", &approve, Some(&desk.compliance), None).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "completed");
    assert_eq!(approved["decided_by"], desk.members[1].id.as_str());
    assert_eq!(balance(&app, &player.access_token).await, "210.00");
    let (status, body) = app.call("POST", &approve, Some(&desk.admin), None).await;
    assert_eq!((status, code(&body)), (409, Some("adjustment_not_pending")), "posted once: {body}");
    let (status, body) = app.call("POST", "/v1/admin/adjustments/adj_999/approve", Some(&desk.admin), None).await;
    assert_eq!((status, code(&body)), (404, Some("not_found")), "{body}");

    // Traders and API keys may not adjust at all.
    let (status, body) = adjust(&app, &desk.trader, &account, credit("1.00")).await;
    assert_eq!((status, code(&body)), (403, Some("adjustment_forbidden")), "{body}");
    let (status, body) = adjust(&app, ADMIN_KEY, &account, credit("1.00")).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");
    let (status, body) = adjust(&app, &player.access_token, &account, credit("1.00")).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");

    // A debit above compliance's limit: the other compliance officer's limit does not cover
    // it, the admin's does but not beyond the player's cash; it is rejected with a reason.
    let debit = json!({"amount": "1500.00", "direction": "debit", "reason": "duplicate credit"});
    let (status, pending) = adjust(&app, &desk.compliance, &account, debit).await;
    assert_eq!((status, &pending["status"]), (201, &json!("pending_approval")), "{pending}");
    let id = pending["adjustment_id"].as_str().expect("id").to_string();
    let (status, body) =
        app.call("POST", &format!("/v1/admin/adjustments/{id}/approve"), Some(&desk.compliance_2), None).await;
    assert_eq!((status, code(&body)), (403, Some("approval_limit")), "{body}");
    let (status, body) =
        app.call("POST", &format!("/v1/admin/adjustments/{id}/approve"), Some(&desk.admin), None).await;
    assert_eq!((status, code(&body)), (422, Some("insufficient_funds")), "{body}");
    let reject = format!("/v1/admin/adjustments/{id}/reject");
    let (status, body) = app.call("POST", &reject, Some(&desk.compliance_2), Some(json!({}))).await;
    assert_eq!((status, code(&body)), (400, Some("invalid_request")), "a reason is required: {body}");
    let (status, rejected) =
        app.call("POST", &reject, Some(&desk.compliance_2), Some(json!({"reason": "amount mistyped"}))).await;
    assert_eq!((status, &rejected["status"]), (200, &json!("rejected")), "{rejected}");
    let (status, body) = app.call("POST", &reject, Some(&desk.admin), Some(json!({"reason": "again"}))).await;
    assert_eq!((status, code(&body)), (409, Some("adjustment_not_pending")), "{body}");

    // Debits within the free cash; never beyond it.
    let (status, body) =
        adjust(&app, &desk.compliance, &account, json!({"amount": "210.01", "direction": "debit", "reason": "x"}))
            .await;
    assert_eq!((status, code(&body)), (422, Some("insufficient_funds")), "{body}");
    let (status, done) =
        adjust(&app, &desk.compliance, &account, json!({"amount": "10.00", "direction": "debit", "reason": "fee"}))
            .await;
    assert_eq!((status, &done["status"]), (201, &json!("completed")), "{done}");
    assert_eq!(balance(&app, &player.access_token).await, "200.00");

    // Bad requests never reach the book.
    for (body, field) in [
        (json!({"amount": "1.00", "direction": "credit", "reason": ""}), "reason"),
        (json!({"amount": "1.00", "direction": "credit", "reason": "r".repeat(501)}), "reason"),
        (json!({"amount": "1.001", "direction": "credit", "reason": "why"}), "amount"),
        (json!({"amount": "0.00", "direction": "credit", "reason": "why"}), "amount"),
        (json!({"amount": "1.00", "currency": "GBP", "direction": "credit", "reason": "why"}), "currency"),
    ] {
        let (status, answer) = adjust(&app, &desk.admin, &account, body).await;
        assert_eq!(
            (status, code(&answer), answer["error"]["field"].as_str()),
            (400, Some("invalid_request"), Some(field))
        );
    }
    let (status, body) = adjust(&app, &desk.admin, "acc_999", credit("1.00")).await;
    assert_eq!((status, code(&body)), (404, Some("not_found")), "{body}");
    // Idempotent: the same key and body answer the same, posted once.
    let headers = [("idempotency-key", "adjust-once")];
    let path = format!("/v1/admin/accounts/{account}/adjustments");
    let (status, first) = app.call_with("POST", &path, Some(&desk.admin), Some(credit("5.00")), &headers).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = app.call_with("POST", &path, Some(&desk.admin), Some(credit("5.00")), &headers).await;
    assert_eq!((status, &again), (201, &first));
    assert_eq!(balance(&app, &player.access_token).await, "205.00");

    // The player sees each adjustment among their transactions; the customer view too.
    let (status, transactions) = app.call("GET", "/v1/wallet/transactions", Some(&player.access_token), None).await;
    assert_eq!(status, 200, "{transactions}");
    let kinds: Vec<(&str, &str)> = transactions["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| (item["type"].as_str().expect("type"), item["amount"].as_str().expect("amount")))
        .collect();
    assert_eq!(
        kinds,
        [
            ("adjustment_credit", "5.00"),
            ("adjustment_debit", "-10.00"),
            ("adjustment_credit", "80.00"),
            ("adjustment_credit", "30.00"),
            ("deposit", "100.00")
        ]
    );
    let (status, view) = app.call("GET", &format!("/v1/admin/accounts/{account}"), Some(&desk.support), None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["wallet"]["balance"], "205.00");
    assert_eq!(view["transactions"][0]["type"], "adjustment_credit");

    // The audit trail: who asked, why, and who approved.
    let commands = audited(&app).await;
    let requests: Vec<&Value> = commands.iter().filter(|command| command["type"] == "request_adjustment").collect();
    assert_eq!(requests[1]["actor"], json!({"kind": "staff", "id": desk.members[0].id}));
    assert_eq!(requests[1]["requested_by"], desk.members[0].id.as_str());
    assert_eq!(requests[1]["reason"], "goodwill after the outage");
    assert_eq!(requests[1]["amount"], "80.00");
    assert_eq!(requests[1]["direction"], "credit");
    let approvals: Vec<&Value> = commands.iter().filter(|command| command["type"] == "approve_adjustment").collect();
    let approval = approvals.iter().find(|command| command["actor"]["id"] == desk.members[1].id.as_str());
    let approval = approval.expect("the compliance officer's approval");
    assert_eq!(approval["approved_by"], desk.members[1].id.as_str());
    assert_eq!(approval["account_id"], account.as_str());
    let rejection = commands.iter().find(|command| command["type"] == "reject_adjustment").expect("rejection");
    assert_eq!(rejection["reason"], "amount mistyped");
    assert_eq!(rejection["rejected_by"], desk.members[2].id.as_str());
}

#[tokio::test]
async fn staff_are_listed_their_roles_changed_with_a_reason_and_their_tokens_logged_out() {
    let app = spawn_app().await;
    let trader = create(&app, "list.trader", &["trader"]).await;
    let admin = create(&app, "list.admin", &["admin"]).await;
    let trader_token = login(&app, &trader).await;
    let admin_token = login(&app, &admin).await;

    let (status, listed) = app.call("GET", "/v1/admin/staff?limit=1", Some(&admin_token), None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"][0]["username"], "list.trader");
    let cursor = listed["next_cursor"].as_str().expect("a second page").to_string();
    let (_, second) = app.call("GET", &format!("/v1/admin/staff?cursor={cursor}"), Some(ADMIN_KEY), None).await;
    assert_eq!(second["items"][0]["username"], "list.admin");
    assert_eq!(second["next_cursor"], Value::Null);
    let text = serde_json::to_string(&second).expect("json");
    assert!(!text.contains("argon2") && !text.contains("secret") && !text.contains("otpauth"), "{text}");
    let (status, body) = app.call("GET", "/v1/admin/staff", Some(&trader_token), None).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");

    // A role change needs a reason and applies to the live token at once.
    let roles = format!("/v1/admin/staff/{}/roles", trader.id);
    let (status, body) = app.call("PUT", &roles, Some(&admin_token), Some(json!({"roles": ["compliance"]}))).await;
    assert_eq!((status, code(&body)), (400, Some("invalid_request")), "{body}");
    let (status, body) =
        app.call("PUT", &roles, Some(&trader_token), Some(json!({"roles": ["admin"], "reason": "promote me"}))).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");
    let (status, body) = app.call("GET", "/v1/admin/audit?limit=1", Some(&trader_token), None).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "a trader reads no audit: {body}");
    let change = json!({"roles": ["compliance"], "reason": "moved to the compliance team"});
    let (status, changed) = app.call("PUT", &roles, Some(&admin_token), Some(change)).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["roles"], json!(["compliance"]));
    let (status, body) = app.call("GET", "/v1/admin/audit?limit=1", Some(&trader_token), None).await;
    assert_eq!(status, 200, "compliance now: {body}");
    let (status, body) = app.call("GET", "/v1/admin/exposure", Some(&trader_token), None).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "no longer a trader: {body}");
    let (status, body) = app
        .call(
            "PUT",
            "/v1/admin/staff/stf_99/roles",
            Some(&admin_token),
            Some(json!({"roles": ["admin"], "reason": "x"})),
        )
        .await;
    assert_eq!((status, code(&body)), (404, Some("not_found")), "{body}");
    let commands = audited(&app).await;
    let audited_change = commands.iter().find(|command| command["type"] == "set_staff_roles").expect("audited");
    assert_eq!(audited_change["reason"], "moved to the compliance team");
    assert_eq!(audited_change["actor"], json!({"kind": "staff", "id": admin.id}));

    // Logout revokes that token only; a player or an API key cannot use the staff logout.
    let (status, body) = app.call("POST", "/v1/staff/logout", Some(&trader_token), None).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = app.call("GET", "/v1/admin/audit?limit=1", Some(&trader_token), None).await;
    assert_eq!((status, code(&body)), (401, Some("unauthenticated")), "{body}");
    let (status, body) = app.call("GET", "/v1/admin/staff", Some(&admin_token), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.call("POST", "/v1/staff/logout", Some(ADMIN_KEY), None).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");

    // A disabled member's live token stops at once.
    let disable = format!("/v1/admin/staff/{}/disable", admin.id);
    let other_admin = create(&app, "list.admin2", &["admin"]).await;
    let other_token = login(&app, &other_admin).await;
    let (status, body) = app.call("POST", &disable, Some(&other_token), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.call("GET", "/v1/admin/staff", Some(&admin_token), None).await;
    assert_eq!((status, code(&body)), (401, Some("unauthenticated")), "{body}");
}

#[tokio::test]
async fn staff_give_a_reason_for_voids_resettlements_and_freezes_api_keys_may_not() {
    let app = spawn_app().await;
    let _player = app.funded_player("reasoned.rob", "10.00").await;
    let account = account_of(&app, "reasoned.rob").await;
    let (_, market, selections) = app.football_match("Reason v Rhyme").await;
    let settler = create(&app, "reason.settler", &["trader", "settlement"]).await;
    let token = login(&app, &settler).await;

    let void = format!("/v1/admin/markets/{market}/void");
    let (status, body) = app.call("POST", &void, Some(&token), None).await;
    assert_eq!((status, code(&body)), (400, Some("reason_required")), "{body}");
    let (status, body) = app.call("POST", &void, Some(&token), Some(json!({}))).await;
    assert_eq!((status, code(&body)), (400, Some("reason_required")), "{body}");
    let risk = format!("/v1/admin/accounts/{account}/risk");
    let (status, body) = app.call("PUT", &risk, Some(&token), Some(json!({"frozen": true}))).await;
    assert_eq!((status, code(&body)), (400, Some("reason_required")), "{body}");
    let (status, body) =
        app.call("PUT", &risk, Some(&token), Some(json!({"frozen": true, "reason": "fraud check"}))).await;
    assert_eq!((status, &body["frozen"]), (200, &json!(true)), "{body}");

    let settle = format!("/v1/admin/markets/{market}/settle");
    let results = json!({"results": [{"selection_id": selections[0], "outcome": "win"}]});
    let (status, body) = app.call("POST", &settle, Some(&token), Some(results)).await;
    assert_eq!(status, 200, "{body}");
    let unsettle = format!("/v1/admin/markets/{market}/unsettle");
    let (status, body) = app.call("POST", &unsettle, Some(&token), None).await;
    assert_eq!((status, code(&body)), (400, Some("reason_required")), "{body}");
    let (status, body) = app.call("POST", &unsettle, Some(&token), Some(json!({"reason": "wrong result"}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.call("POST", &void, Some(&token), Some(json!({"reason": "abandoned"}))).await;
    assert_eq!(status, 200, "{body}");
    // API keys keep the optional reason of the contract.
    let (status, body) = app.call("PUT", &risk, Some(ADMIN_KEY), Some(json!({"frozen": false}))).await;
    assert_eq!(status, 200, "{body}");

    let commands = audited(&app).await;
    let reason_of = |kind: &str| {
        commands.iter().rev().find(|command| command["type"] == kind).map(|command| command["reason"].clone())
    };
    assert_eq!(reason_of("unsettle_market"), Some(json!("wrong result")));
    assert_eq!(reason_of("void_market"), Some(json!("abandoned")));
}
