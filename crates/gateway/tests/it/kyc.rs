//! Identity verification (issue 13, item 3), over a real socket: the sandbox verifying every
//! player when no jurisdiction is configured; with jurisdictions, a country not allowed and an
//! age under the jurisdiction's refused at registration, a deposit cap and no withdrawal until
//! verified, the provider's signed webhooks (a bad signature refused, a replay answered once),
//! re-verification above lifetime deposits, a rejection, compliance staff's hand (with a
//! reason, audited) and an expiry.

use std::time::Duration;

use gateway::{GatewayConfig, KycSettings, PaymentCallbacks};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::actors::audited;
use crate::harness::{now_ms, spawn_app, spawn_app_on, TestApp};
use crate::staff::{code, create, login};

const SECRET: &[u8] = b"kyc-provider-shared-secret-tests";
const PASSWORD: &str = "correct horse battery staple";

/// The stack with two jurisdictions: `uk` (GB; 21+, 200.00 until verified, verified again past
/// 500.00 of deposits) and `mt` (MT; a verification lasts a day); the sandbox leaves players
/// pending for the webhook.
async fn app_with_jurisdictions() -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    let mut kyc = KycSettings::from_json(
        &json!({
            "jurisdictions": [
                {"name": "uk", "countries": ["GB"], "age_min_years": 21, "deposit_cap_minor": 20000,
                 "reverify_above_minor": 50000},
                {"name": "mt", "countries": ["MT"], "expiry_days": 1}
            ],
            "sandbox": "pending"
        })
        .to_string(),
    )
    .expect("jurisdictions");
    kyc.callbacks = Some(PaymentCallbacks { secret: SECRET.to_vec(), window: Duration::from_secs(300) });
    config.kyc = kyc;
    spawn_app_on(&path, Some(dir), config).await
}

fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_webhook(app: &TestApp, body: Vec<u8>, signature: Option<String>) -> (u16, Value) {
    let mut request =
        app.client.post(app.url("/v1/kyc/callbacks/sandbox")).header("content-type", "application/json").body(body);
    if let Some(signature) = signature {
        request = request.header("payment-signature", signature);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn webhook_body(id: &str, account: &str, state: &str, created_at_ms: u64) -> Vec<u8> {
    json!({"id": id, "created_at": gateway::format_rfc3339(created_at_ms), "account_id": account, "state": state,
           "reference": format!("ref-{id}")})
    .to_string()
    .into_bytes()
}

async fn webhook(app: &TestApp, id: &str, account: &str, state: &str) -> (u16, Value) {
    let body = webhook_body(id, account, state, now_ms());
    let signed = signature(SECRET, &body);
    post_webhook(app, body, Some(signed)).await
}

/// Registers a player; returns (status, body).
async fn register(app: &TestApp, username: &str, country: &str, date_of_birth: &str) -> (u16, Value) {
    let body = json!({"username": username, "password": PASSWORD, "date_of_birth": date_of_birth,
                      "country": country, "currency": "EUR"});
    app.call("POST", "/v1/auth/register", None, Some(body)).await
}

/// Registers and logs in; returns (account id, access token).
async fn player(app: &TestApp, username: &str, country: &str) -> (String, String) {
    let (status, registered) = register(app, username, country, "1990-05-17").await;
    assert_eq!(status, 201, "{registered}");
    let login = json!({"username": username, "password": PASSWORD});
    let (status, tokens) = app.call("POST", "/v1/auth/login", None, Some(login)).await;
    assert_eq!(status, 200, "{tokens}");
    (registered["id"].as_str().expect("id").to_string(), tokens["access_token"].as_str().expect("token").to_string())
}

async fn kyc_state(app: &TestApp, token: &str) -> Value {
    let (status, view) = app.call("GET", "/v1/players/me/kyc", Some(token), None).await;
    assert_eq!(status, 200, "{view}");
    view
}

async fn deposit(app: &TestApp, token: &str, amount: &str) -> (u16, Value) {
    let body = json!({"amount": amount, "payment_ref": format!("psp-{}", crate::harness::fresh_idempotency_key())});
    app.call("POST", "/v1/wallet/deposits", Some(token), Some(body)).await
}

async fn withdraw(app: &TestApp, token: &str, amount: &str) -> (u16, Value) {
    app.call("POST", "/v1/wallet/withdrawals", Some(token), Some(json!({"amount": amount}))).await
}

#[tokio::test]
async fn without_jurisdictions_the_sandbox_verifies_every_player_at_registration() {
    let app = spawn_app().await;
    let (_, token) = player(&app, "kyc_default", "US").await;
    let view = kyc_state(&app, &token).await;
    assert_eq!(view["state"], "verified", "{view}");
    assert_eq!(view["deposit_cap"], Value::Null, "{view}");
    let (status, _) = deposit(&app, &token, "1000.00").await;
    assert_eq!(status, 201);
    let (status, held) = withdraw(&app, &token, "900.00").await;
    assert_eq!(status, 201, "{held}");
    // No secret configured: webhooks verify nothing.
    let (status, refused) = webhook(&app, "w-0", "acc_1", "rejected").await;
    assert_eq!((status, code(&refused)), (401, Some("bad_signature")), "{refused}");
    // Nothing more is journaled than before: existing journals and audit trails stay as they were.
    let entries = audited(&app).await;
    assert!(entries.iter().all(|entry| entry["type"] != "set_kyc_state" && entry["type"] != "set_kyc_rules"));
    // Staff can still track the player by hand (here: a rejection, withdrawals blocked).
    let path = "/v1/admin/accounts/acc_1/kyc";
    let body = json!({"state": "rejected", "reason": "forged passport reported"});
    let (status, set) = app.call("PUT", path, Some(crate::harness::ADMIN_KEY), Some(body)).await;
    assert_eq!((status, set["state"].as_str()), (200, Some("rejected")), "{set}");
    let (status, refused) = withdraw(&app, &token, "10.00").await;
    assert_eq!((status, code(&refused)), (403, Some("kyc_required")), "{refused}");
}

#[tokio::test]
async fn a_country_not_allowed_and_an_age_under_the_jurisdictions_are_refused() {
    let app = app_with_jurisdictions().await;
    let (status, refused) = register(&app, "kyc_far", "US", "1990-05-17").await;
    assert_eq!((status, code(&refused)), (422, Some("country_not_allowed")), "{refused}");
    // 19 years old: over the book's 18, under the uk jurisdiction's 21.
    let nineteen = domain::Date::from_unix_millis(now_ms() - 19 * 366 * 86_400_000).to_string();
    let (status, refused) = register(&app, "kyc_young", "GB", &nineteen).await;
    assert_eq!((status, code(&refused)), (422, Some("underage")), "{refused}");
    assert_eq!(refused["error"]["age_min_years"], 21, "{refused}");
    // Nineteen is old enough in Malta (the book's 18).
    let (status, registered) = register(&app, "kyc_young_mt", "MT", &nineteen).await;
    assert_eq!(status, 201, "{registered}");
}

#[tokio::test]
async fn an_unverified_player_is_capped_and_cannot_withdraw_until_the_signed_webhook_verifies() {
    let app = app_with_jurisdictions().await;
    let (account, token) = player(&app, "kyc_uk", "GB").await;
    let view = kyc_state(&app, &token).await;
    assert_eq!(view["state"], "pending", "{view}");
    assert_eq!(view["deposit_cap"], "200.00", "{view}");
    let (status, _) = deposit(&app, &token, "150.00").await;
    assert_eq!(status, 201);
    let (status, capped) = deposit(&app, &token, "60.00").await;
    assert_eq!((status, code(&capped)), (403, Some("kyc_deposit_cap")), "{capped}");
    assert_eq!(capped["error"]["cap"], "200.00", "{capped}");
    let (status, refused) = withdraw(&app, &token, "10.00").await;
    assert_eq!((status, code(&refused)), (403, Some("kyc_required")), "{refused}");

    // A bad signature, none, and a stale timestamp change nothing.
    let body = webhook_body("w-1", &account, "verified", now_ms());
    let (status, bad) = post_webhook(&app, body.clone(), Some(signature(b"another-secret-of-16-bytes", &body))).await;
    assert_eq!((status, code(&bad)), (401, Some("bad_signature")), "{bad}");
    let (status, bad) = post_webhook(&app, body.clone(), None).await;
    assert_eq!((status, code(&bad)), (401, Some("bad_signature")), "{bad}");
    let stale = webhook_body("w-2", &account, "verified", now_ms() - 3_600_000);
    let (status, bad) = post_webhook(&app, stale.clone(), Some(signature(SECRET, &stale))).await;
    assert_eq!((status, code(&bad)), (400, Some("stale_timestamp")), "{bad}");
    assert_eq!(kyc_state(&app, &token).await["state"], "pending");

    // The signed webhook verifies; its replay is answered the same and does nothing more.
    let (status, answer) = post_webhook(&app, body.clone(), Some(signature(SECRET, &body))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "verified", "{answer}");
    let (status, again) = post_webhook(&app, body.clone(), Some(signature(SECRET, &body))).await;
    assert_eq!((status, &again), (200, &answer));
    let entries = audited(&app).await;
    let by_webhook =
        entries.iter().filter(|entry| entry["type"] == "set_kyc_state" && entry["reference"] == "ref-w-1").count();
    assert_eq!(by_webhook, 1, "a replayed webhook reaches the book once");
    let view = kyc_state(&app, &token).await;
    assert_eq!((view["state"].as_str(), view["reference"].as_str()), (Some("verified"), Some("ref-w-1")), "{view}");
    let (status, held) = withdraw(&app, &token, "10.00").await;
    assert_eq!(status, 201, "{held}");
    let (status, _) = deposit(&app, &token, "60.00").await;
    assert_eq!(status, 201, "no cap once verified");

    // Past 500.00 of lifetime deposits: verified again before any withdrawal.
    let (status, _) = deposit(&app, &token, "300.00").await;
    assert_eq!(status, 201);
    assert_eq!(kyc_state(&app, &token).await["state"], "pending");
    let (status, refused) = withdraw(&app, &token, "10.00").await;
    assert_eq!((status, code(&refused)), (403, Some("kyc_required")), "{refused}");
    let (status, answer) = webhook(&app, "w-3", &account, "verified").await;
    assert_eq!(status, 200, "{answer}");
    let (status, held) = withdraw(&app, &token, "10.00").await;
    assert_eq!(status, 201, "{held}");

    // The customer view shows it to staff.
    let (status, customer) =
        app.call("GET", &format!("/v1/admin/accounts/{account}"), Some(crate::harness::ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{customer}");
    assert_eq!(customer["kyc"]["verification"]["state"], "verified", "{customer}");
    assert_eq!(customer["kyc"]["verification"]["deposited"], "510.00", "{customer}");
}

#[tokio::test]
async fn rejected_by_the_provider_then_set_by_compliance_with_a_reason_and_expired() {
    let app = app_with_jurisdictions().await;
    // The sandbox rejects a username ending in `_kycreject`.
    let (account, token) = player(&app, "mt_kycreject", "MT").await;
    assert_eq!(kyc_state(&app, &token).await["state"], "rejected");
    let (status, _) = deposit(&app, &token, "50.00").await;
    assert_eq!(status, 201, "the mt jurisdiction has no deposit cap");
    let (status, refused) = withdraw(&app, &token, "10.00").await;
    assert_eq!((status, code(&refused)), (403, Some("kyc_required")), "{refused}");

    // Support staff may not; compliance may, with a reason.
    let support = create(&app, "kyc_support", &["support"]).await;
    let support_token = login(&app, &support).await;
    let path = format!("/v1/admin/accounts/{account}/kyc");
    let body = json!({"state": "verified", "reason": "passport checked by hand"});
    let (status, refused) = app.call("PUT", &path, Some(&support_token), Some(body.clone())).await;
    assert_eq!((status, code(&refused)), (403, Some("forbidden")), "{refused}");
    let compliance = create(&app, "kyc_compliance", &["compliance"]).await;
    let compliance_token = login(&app, &compliance).await;
    let (status, missing) =
        app.call("PUT", &path, Some(&compliance_token), Some(json!({"state": "verified", "reason": ""}))).await;
    assert_eq!((status, code(&missing)), (400, Some("invalid_request")), "{missing}");
    let (status, set) = app.call("PUT", &path, Some(&compliance_token), Some(body)).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["state"], "verified", "{set}");
    assert!(set["expires_at"].is_string(), "the mt jurisdiction's verification lasts a day: {set}");
    let (status, held) = withdraw(&app, &token, "10.00").await;
    assert_eq!(status, 201, "{held}");
    let entries = audited(&app).await;
    let by_hand = entries
        .iter()
        .find(|entry| entry["type"] == "set_kyc_state" && entry["actor"]["kind"] == "staff")
        .expect("audited");
    assert_eq!(by_hand["actor"]["id"], compliance.id, "{by_hand}");
    assert_eq!(by_hand["reason"], "passport checked by hand", "{by_hand}");

    // Expired (by hand here; by time under the jurisdiction's expiry): no withdrawal.
    let expire = json!({"state": "expired", "reason": "document expired"});
    let (status, set) = app.call("PUT", &path, Some(&compliance_token), Some(expire)).await;
    assert_eq!((status, set["state"].as_str()), (200, Some("expired")), "{set}");
    let (status, refused) = withdraw(&app, &token, "10.00").await;
    assert_eq!((status, code(&refused)), (403, Some("kyc_required")), "{refused}");
    // Expired again: nothing moves (a replay); `unverified` to `expired` is not a move.
    let (status, conflict) =
        app.call("PUT", &path, Some(&compliance_token), Some(json!({"state": "unverified", "reason": "reset"}))).await;
    assert_eq!(status, 200, "{conflict}");
    let (status, conflict) =
        app.call("PUT", &path, Some(&compliance_token), Some(json!({"state": "expired", "reason": "again"}))).await;
    assert_eq!((status, code(&conflict)), (409, Some("kyc_conflict")), "{conflict}");

    // The player asks again: pending (the sandbox is told to leave players pending).
    let (status, asked) = app.call("POST", "/v1/players/me/kyc", Some(&token), None).await;
    assert_eq!(status, 200, "{asked}");
    assert_eq!(asked["state"], "rejected", "the sandbox rejects this username again: {asked}");
}
