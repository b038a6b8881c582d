//! Payments that behave like real ones (issue 13, item 6), over a real socket: deposits pending
//! until the provider's signed callback, credited once however often it is delivered; bad
//! signatures, stale timestamps and replayed callbacks; the callback sandbox completing,
//! failing and charging back on its own; a chargeback after the money was staked leaving the
//! player in debt; withdrawals approved automatically below the threshold and by compliance
//! staff above it (support staff and API keys refused), refused with the money returned, paid
//! on the provider's confirmation, never cancelled by the player; a frozen account.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::{CallbackSandbox, GatewayConfig, PaymentCallbacks, SandboxPayouts};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::actors::audited;
use crate::harness::{now_ms, spawn_app, spawn_app_on, TestApp, ADMIN_KEY};
use crate::staff::{create, login};

const SECRET: &[u8] = b"provider-shared-secret-for-tests";

/// The stack with deposits waiting for the callback sandbox (answering after `delay`), and
/// withdrawals above `approval_above` EUR waiting for staff.
async fn app_with_provider(delay: Duration, payouts: SandboxPayouts, approval_above: Option<i64>) -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    config.payment_provider = Arc::new(CallbackSandbox::new(SECRET.to_vec(), delay, payouts));
    config.payment_callbacks = Some(PaymentCallbacks { secret: SECRET.to_vec(), window: Duration::from_secs(300) });
    config.withdrawal_approval_above = approval_above.map(domain::Money::from_minor);
    config.payment_sweep_interval = Duration::from_millis(50);
    config.payment_wait = Duration::from_millis(500);
    spawn_app_on(&path, Some(dir), config).await
}

/// HMAC-SHA256 of `body` under `secret`, computed here (not with the gateway's code).
fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn callback_body(id: &str, kind: &str, payment: &str, created_at_ms: u64) -> Vec<u8> {
    json!({"id": id, "created_at": gateway::format_rfc3339(created_at_ms), "type": kind, "payment_id": payment})
        .to_string()
        .into_bytes()
}

/// Posts a raw callback body with a signature header (or none).
async fn post_callback(app: &TestApp, provider: &str, body: Vec<u8>, signature: Option<String>) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/payments/callbacks/{provider}")))
        .header("content-type", "application/json")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("payment-signature", signature);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A signed, current callback.
async fn callback(app: &TestApp, id: &str, kind: &str, payment: &str) -> (u16, Value) {
    let body = callback_body(id, kind, payment, now_ms());
    let signed = signature(SECRET, &body);
    post_callback(app, "sandbox", body, Some(signed)).await
}

async fn deposit(app: &TestApp, token: &str, amount: &str, payment_ref: &str) -> Value {
    let body = json!({"amount": amount, "payment_ref": payment_ref});
    let (status, deposit) = app.call("POST", "/v1/wallet/deposits", Some(token), Some(body)).await;
    assert_eq!(status, 201, "{deposit}");
    deposit
}

async fn wallet(app: &TestApp, token: &str) -> Value {
    let (status, wallet) = app.call("GET", "/v1/wallet", Some(token), None).await;
    assert_eq!(status, 200, "{wallet}");
    wallet
}

/// Waits until the wallet's `field` reads `expected`.
async fn until_wallet(app: &TestApp, token: &str, field: &str, expected: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let wallet = wallet(app, token).await;
        if wallet[field] == expected {
            return wallet;
        }
        assert!(Instant::now() < deadline, "{field} never became {expected}: {wallet}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The player's statement entries (newest first) as (type, status, amount).
async fn statement(app: &TestApp, token: &str) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = app.call("GET", "/v1/wallet/transactions?limit=200", Some(token), None).await;
        if status == 503 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(status, 200, "{page}");
        let text = |item: &Value, key: &str| item[key].as_str().unwrap_or_default().to_string();
        return page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| (text(item, "type"), text(item, "status"), text(item, "amount")))
            .collect();
    }
}

/// `GET /v1/admin/accounts/{id}` of the player named `username`.
async fn customer_view(app: &TestApp, username: &str) -> Value {
    let (status, found) = app.call("GET", &format!("/v1/admin/accounts?q={username}"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{found}");
    let account = found["items"][0]["id"].as_str().expect("account").to_string();
    let (status, view) = app.call("GET", &format!("/v1/admin/accounts/{account}"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{view}");
    view
}

#[tokio::test]
async fn the_default_sandbox_completes_deposits_at_once_and_takes_no_callbacks() {
    let app = spawn_app().await;
    let player = app.player("instant").await;
    let done = deposit(&app, &player.access_token, "25.00", "psp_instant").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(wallet(&app, &player.access_token).await["available"], "25.00");
    let (status, refused) = callback(&app, "evt_1", "deposit.completed", done["id"].as_str().expect("id")).await;
    assert_eq!((status, &refused["error"]["code"]), (401, &json!("bad_signature")), "{refused}");
}

#[tokio::test]
async fn a_deposit_waits_for_a_signed_callback_and_is_credited_once() {
    let app = app_with_provider(Duration::ZERO, SandboxPayouts::Pay, None).await;
    let player = app.player("waits").await;
    let token = &player.access_token;
    let pending = deposit(&app, token, "50.00", "delay-card-1").await;
    assert_eq!(pending["status"], "pending", "{pending}");
    let id = pending["id"].as_str().expect("id").to_string();
    let held = wallet(&app, token).await;
    assert_eq!((&held["balance"], &held["available"]), (&json!("0.00"), &json!("0.00")), "{held}");
    // The statement shows the pending deposit, and so does the customer view.
    assert!(statement(&app, token).await.contains(&("deposit".into(), "pending".into(), "50.00".into())));
    let view = customer_view(&app, "waits").await;
    assert_eq!(
        (
            &view["pending_payments"][0]["type"],
            &view["pending_payments"][0]["amount"],
            &view["pending_payments"][0]["id"]
        ),
        (&json!("deposit"), &json!("50.00"), &json!(id)),
        "{view}"
    );

    // Refused before anything is believed: no signature, a wrong one, another secret, a body
    // changed after signing, a stale or future timestamp, an unknown provider.
    let body = callback_body("evt_ok", "deposit.completed", &id, now_ms());
    for (signed, what) in [
        (None, "no signature"),
        (Some("sha256=00".to_string()), "a wrong signature"),
        (Some(signature(b"another-secret-another-secret", &body)), "another secret"),
        (Some(signature(SECRET, b"{}")), "another body"),
    ] {
        let (status, refused) = post_callback(&app, "sandbox", body.clone(), signed).await;
        assert_eq!((status, &refused["error"]["code"]), (401, &json!("bad_signature")), "{what}: {refused}");
    }
    for at in [now_ms() - 600_000, now_ms() + 600_000] {
        let stale = callback_body("evt_stale", "deposit.completed", &id, at);
        let signed = signature(SECRET, &stale);
        let (status, refused) = post_callback(&app, "sandbox", stale, Some(signed)).await;
        assert_eq!((status, &refused["error"]["code"]), (400, &json!("stale_timestamp")), "{refused}");
    }
    let signed = signature(SECRET, &body);
    let (status, refused) = post_callback(&app, "acme", body.clone(), Some(signed.clone())).await;
    assert_eq!((status, &refused["error"]["code"]), (404, &json!("not_found")), "{refused}");
    let unknown_type = callback_body("evt_type", "deposit.maybe", &id, now_ms());
    let unknown_signed = signature(SECRET, &unknown_type);
    assert_eq!(post_callback(&app, "sandbox", unknown_type, Some(unknown_signed)).await.0, 400);
    assert_eq!(wallet(&app, token).await["available"], "0.00", "nothing refused was applied");

    // The real one credits the deposit.
    let (status, first) = post_callback(&app, "sandbox", body.clone(), Some(signed.clone())).await;
    assert_eq!((status, &first["status"]), (200, &json!("completed")), "{first}");
    assert_eq!(wallet(&app, token).await["available"], "50.00");
    // Replayed (the same id): the same answer, nothing more.
    let (status, replayed) = post_callback(&app, "sandbox", body, Some(signed)).await;
    assert_eq!((status, &replayed), (200, &first));
    // Delivered again under a new id: the book answers the same transfer, credits nothing.
    let (status, again) = callback(&app, "evt_again", "deposit.completed", &id).await;
    assert_eq!((status, &again["transfer_id"]), (200, &first["transfer_id"]), "{again}");
    assert_eq!(wallet(&app, token).await["available"], "50.00");
    // A contradicting outcome, an unknown payment.
    let (status, conflict) = callback(&app, "evt_fail", "deposit.failed", &id).await;
    assert_eq!((status, &conflict["error"]["code"]), (409, &json!("payment_conflict")), "{conflict}");
    let (status, unknown) = callback(&app, "evt_unknown", "deposit.completed", "trf_99999").await;
    assert_eq!((status, &unknown["error"]["code"]), (404, &json!("unknown_payment")), "{unknown}");
    // The idempotent retry of the deposit request shows where the deposit is now.
    let entries = statement(&app, token).await;
    assert!(entries.contains(&("deposit".into(), "posts".into(), "50.00".into())), "{entries:?}");
    // The audit trail names the provider as the actor of the completion.
    let commands = audited(&app).await;
    let settled = commands.iter().find(|command| command["type"] == "settle_deposit").expect("settle_deposit");
    assert_eq!(settled["actor"], json!({"kind": "system", "id": "payments:sandbox"}), "{settled}");
    assert_eq!(settled["outcome"], "completed", "{settled}");
}

#[tokio::test]
async fn the_sandbox_completes_fails_and_charges_back_by_payment_reference() {
    let app = app_with_provider(Duration::from_millis(20), SandboxPayouts::Pay, None).await;
    let player = app.player("sandboxed").await;
    let token = &player.access_token;
    assert_eq!(deposit(&app, token, "10.00", "card-ok").await["status"], "pending");
    until_wallet(&app, token, "available", "10.00").await;
    let failing = deposit(&app, token, "20.00", "fail-card").await;
    assert_eq!(failing["status"], "pending");
    let charged = deposit(&app, token, "5.00", "chargeback-card").await;
    assert_eq!(charged["status"], "pending");
    // The failed deposit never counts; the charged-back one comes and goes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = statement(&app, token).await;
        let voided = entries.contains(&("deposit".into(), "voids".into(), "20.00".into()));
        let charged_back = entries.contains(&("chargeback".into(), "posted".into(), "-5.00".into()));
        if voided && charged_back {
            break;
        }
        assert!(Instant::now() < deadline, "{entries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled = wallet(&app, token).await;
    assert_eq!((&settled["available"], &settled["debt"]), (&json!("10.00"), &json!("0.00")), "{settled}");
}

#[tokio::test]
async fn a_chargeback_after_the_money_was_staked_leaves_the_player_in_debt() {
    let app = app_with_provider(Duration::ZERO, SandboxPayouts::Pay, None).await;
    let player = app.player("charged").await;
    let token = &player.access_token;
    let id = deposit(&app, token, "100.00", "delay-cb").await["id"].as_str().expect("id").to_string();
    assert_eq!(callback(&app, "evt_cb_1", "deposit.completed", &id).await.0, 200);
    let (_, _, selections) = app.football_match("Chargeback FC v Debt United").await;
    let bet = json!({"type": "single", "legs": [{"selection_id": selections[0], "price": "2.50"}], "stake": "70.00",
        "accept_price_changes": "any"});
    let (status, placed) = app.call("POST", "/v1/bets", Some(token), Some(bet)).await;
    assert_eq!(status, 201, "{placed}");
    let (status, charged) = callback(&app, "evt_cb_2", "deposit.charged_back", &id).await;
    assert_eq!((status, &charged["status"]), (200, &json!("charged_back")), "{charged}");
    let owed = wallet(&app, token).await;
    assert_eq!(
        (&owed["available"], &owed["pending_stakes"], &owed["debt"]),
        (&json!("0.00"), &json!("70.00"), &json!("70.00")),
        "{owed}"
    );
    // Delivered again: the same transfer, no second chargeback.
    let (status, again) = callback(&app, "evt_cb_3", "deposit.charged_back", &id).await;
    assert_eq!((status, &again["transfer_id"], &again["status"]), (200, &charged["transfer_id"], &charged["status"]));
    assert_eq!(wallet(&app, token).await["debt"], "70.00");
    // Nothing of it may leave, and the next deposit repays the debt first.
    let (status, refused) =
        app.call("POST", "/v1/wallet/withdrawals", Some(token), Some(json!({"amount": "1.00"}))).await;
    assert_eq!((status, &refused["error"]["code"]), (422, &json!("insufficient_funds")), "{refused}");
    let next = deposit(&app, token, "30.00", "delay-next").await["id"].as_str().expect("id").to_string();
    assert_eq!(callback(&app, "evt_cb_4", "deposit.completed", &next).await.0, 200);
    let repaid = wallet(&app, token).await;
    assert_eq!((&repaid["available"], &repaid["debt"]), (&json!("0.00"), &json!("40.00")), "{repaid}");
    let entries = statement(&app, token).await;
    assert!(entries.contains(&("chargeback".into(), "posted".into(), "-30.00".into())), "{entries:?}");
    assert!(entries.contains(&("chargeback_debt".into(), "posted".into(), "-70.00".into())), "{entries:?}");
}

#[tokio::test]
async fn withdrawals_are_approved_below_the_threshold_and_by_compliance_staff_above_it() {
    // Above 50.00 EUR a staff member decides; the sandbox takes payouts and the test confirms.
    let app = app_with_provider(Duration::ZERO, SandboxPayouts::Hold, Some(5_000)).await;
    let support = login(&app, &create(&app, "pay.support", &["support"]).await).await;
    let compliance = login(&app, &create(&app, "pay.compliance", &["compliance"]).await).await;
    let trader = login(&app, &create(&app, "pay.trader", &["trader"]).await).await;
    let player = app.player("withdrawer").await;
    let token = &player.access_token;
    let id = deposit(&app, token, "300.00", "delay-funds").await["id"].as_str().expect("id").to_string();
    assert_eq!(callback(&app, "evt_w_1", "deposit.completed", &id).await.0, 200);

    let withdraw = |amount: &str| {
        let body = json!({"amount": amount});
        let app = &app;
        async move {
            let (status, held) = app.call("POST", "/v1/wallet/withdrawals", Some(token), Some(body)).await;
            assert_eq!(status, 201, "{held}");
            held["id"].as_str().expect("id").to_string()
        }
    };
    let listed = |id: String| {
        let app = &app;
        async move {
            let (status, page) = app.call("GET", "/v1/admin/payments", Some(ADMIN_KEY), None).await;
            assert_eq!(status, 200, "{page}");
            page["items"].as_array().expect("items").iter().find(|item| item["id"] == id.as_str()).cloned()
        }
    };
    // Small: approved by the payments step and handed to the provider, paid on its callback.
    let small = withdraw("20.00").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let item = listed(small.clone()).await.expect("listed while the provider has it");
        if item["submitted"] == true {
            assert_eq!(item["approval"], "approved", "{item}");
            break;
        }
        assert!(Instant::now() < deadline, "never submitted: {item}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, paid) = callback(&app, "evt_w_2", "withdrawal.paid", &small).await;
    assert_eq!((status, &paid["status"]), (200, &json!("paid")), "{paid}");
    assert_eq!(callback(&app, "evt_w_3", "withdrawal.paid", &small).await.1["transfer_id"], paid["transfer_id"]);
    let (status, conflict) = callback(&app, "evt_w_4", "withdrawal.failed", &small).await;
    assert_eq!((status, &conflict["error"]["code"]), (409, &json!("payment_conflict")), "{conflict}");
    assert_eq!(wallet(&app, token).await["balance"], "280.00");

    // Large: waits for a staff member; support, a trader and API keys are refused.
    let large = withdraw("100.00").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let item = listed(large.clone()).await.expect("listed");
    assert_eq!((&item["approval"], &item["submitted"]), (&json!("awaiting_approval"), &json!(false)), "{item}");
    let view = customer_view(&app, "withdrawer").await;
    let waiting = view["pending_payments"].as_array().expect("pending payments");
    assert!(
        waiting.iter().any(|payment| payment["id"] == large.as_str() && payment["approval"] == "awaiting"),
        "{view}"
    );
    let approve = format!("/v1/admin/payments/{large}/approve");
    let reason = json!({"reason": "source of funds checked"});
    for (who, credential) in [("support", support.as_str()), ("trader", trader.as_str()), ("an API key", ADMIN_KEY)] {
        let (status, refused) = app.call("POST", &approve, Some(credential), Some(reason.clone())).await;
        assert_eq!((status, &refused["error"]["code"]), (403, &json!("forbidden")), "{who}: {refused}");
    }
    assert_eq!(app.call("POST", &approve, Some(token), Some(reason.clone())).await.0, 403);
    let (status, refused) = app.call("POST", &approve, Some(&compliance), Some(json!({"reason": ""}))).await;
    assert_eq!(status, 400, "{refused}");
    let (status, approved) = app.call("POST", &approve, Some(&compliance), Some(reason.clone())).await;
    assert_eq!((status, &approved["approval"]), (200, &json!("approved")), "{approved}");
    assert_eq!(callback(&app, "evt_w_5", "withdrawal.paid", &large).await.0, 200);
    assert_eq!(wallet(&app, token).await["balance"], "180.00");

    // Refused by compliance: the hold is voided, the money is the player's again.
    let refused_id = withdraw("60.00").await;
    assert_eq!(wallet(&app, token).await["available"], "120.00");
    let refuse = format!("/v1/admin/payments/{refused_id}/refuse");
    assert_eq!(app.call("POST", &refuse, Some(&support), Some(reason.clone())).await.0, 403);
    let (status, done) =
        app.call("POST", &refuse, Some(&compliance), Some(json!({"reason": "documents expired"}))).await;
    assert_eq!((status, &done["status"]), (200, &json!("refused")), "{done}");
    assert_eq!(wallet(&app, token).await["available"], "180.00");
    let (status, again) = app.call("POST", &refuse, Some(&compliance), Some(reason.clone())).await;
    assert_eq!((status, &again["error"]["code"]), (409, &json!("payment_not_pending")), "{again}");

    // No reverse withdrawals (RTS 14B): a player has no route to cancel one.
    let pending = withdraw("70.00").await;
    let (status, _) = app.call("POST", &format!("/v1/wallet/withdrawals/{pending}/cancel"), Some(token), None).await;
    assert!(status == 404 || status == 405, "{status}");
    let (status, _) = app.call("DELETE", &format!("/v1/wallet/withdrawals/{pending}"), Some(token), None).await;
    assert!(status == 404 || status == 405, "{status}");

    // The audit trail: who approved and refused, and why.
    let commands = audited(&app).await;
    let approvals: Vec<&Value> = commands.iter().filter(|command| command["type"] == "approve_withdrawal").collect();
    assert_eq!(approvals.len(), 2, "the automatic one and the staff one: {approvals:?}");
    assert_eq!(approvals[0]["actor"], json!({"kind": "system", "id": "payments"}));
    assert_eq!(approvals[1]["actor"]["kind"], "staff");
    assert_eq!(approvals[1]["reason"], "source of funds checked");
    let refusal = commands.iter().find(|command| command["type"] == "refuse_withdrawal").expect("the refusal");
    assert_eq!((&refusal["reason"], &refusal["actor"]["kind"]), (&json!("documents expired"), &json!("staff")));
    // An approved withdrawal cannot be refused: the provider may have it.
    let (status, approved_one) =
        app.call("POST", &format!("/v1/admin/payments/{large}/refuse"), Some(&compliance), Some(reason.clone())).await;
    assert_eq!((status, &approved_one["error"]["code"]), (409, &json!("payment_not_pending")), "{approved_one}");
}

#[tokio::test]
async fn a_frozen_account_neither_deposits_nor_withdraws_but_pending_deposits_still_complete() {
    let app = app_with_provider(Duration::ZERO, SandboxPayouts::Pay, None).await;
    let player = app.player("frozen.payer").await;
    let token = &player.access_token;
    let id = deposit(&app, token, "40.00", "delay-frozen").await["id"].as_str().expect("id").to_string();
    let (status, found) = app.call("GET", "/v1/admin/accounts?q=frozen.payer", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{found}");
    let account = found["items"][0]["id"].as_str().expect("account").to_string();
    let (status, frozen) = app
        .call("PUT", &format!("/v1/admin/accounts/{account}/risk"), Some(ADMIN_KEY), Some(json!({"frozen": true})))
        .await;
    assert_eq!(status, 200, "{frozen}");
    let body = json!({"amount": "10.00", "payment_ref": "delay-more"});
    let (status, refused) = app.call("POST", "/v1/wallet/deposits", Some(token), Some(body)).await;
    assert_eq!((status, &refused["error"]["code"]), (403, &json!("account_frozen")), "{refused}");
    // Money the provider collected before the freeze still arrives.
    assert_eq!(callback(&app, "evt_f_1", "deposit.completed", &id).await.0, 200);
    assert_eq!(wallet(&app, token).await["balance"], "40.00");
    let (status, refused) =
        app.call("POST", "/v1/wallet/withdrawals", Some(token), Some(json!({"amount": "5.00"}))).await;
    assert_eq!((status, &refused["error"]["code"]), (403, &json!("account_frozen")), "{refused}");
}
