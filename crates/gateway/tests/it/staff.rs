//! Staff accounts over a real socket: a login with the TOTP code computed here from the
//! `otpauth://` URI the admin was shown, refused without a valid code, a disabled member
//! locked out (across a restart too), each role against a route of each scope, and a staff
//! member's action in the audit trail.

use gateway::GatewayConfig;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::actors::{actor_of, audited};
use crate::harness::{spawn_app, spawn_app_on, TestApp, ADMIN_KEY};

pub const PASSWORD: &str = "staff passphrase for tests";

pub struct Member {
    pub id: String,
    pub username: String,
    pub secret: Vec<u8>,
}

/// RFC 6238 with SHA-1, 30-second steps and 6 digits, written here apart from the server's.
pub fn totp(secret: &[u8], unix_seconds: u64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("key");
    mac.update(&(unix_seconds / 30).to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let value =
        u32::from_be_bytes([digest[offset], digest[offset + 1], digest[offset + 2], digest[offset + 3]]) & 0x7fff_ffff;
    format!("{:06}", value % 1_000_000)
}

pub fn now_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

/// The `secret` parameter of an `otpauth://totp/...` URI, decoded from base32.
fn secret_of(uri: &str) -> Vec<u8> {
    assert!(uri.starts_with("otpauth://totp/Sportsbook:"), "{uri}");
    for parameter in ["algorithm=SHA1", "digits=6", "period=30", "issuer=Sportsbook"] {
        assert!(uri.contains(parameter), "{uri} lacks {parameter}");
    }
    let query = uri.split_once('?').expect("query").1;
    let secret = query.split('&').find_map(|pair| pair.strip_prefix("secret=")).expect("secret");
    data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).expect("base32 secret")
}

pub async fn create(app: &TestApp, username: &str, roles: &[&str]) -> Member {
    let body = json!({"username": username, "password": PASSWORD, "roles": roles});
    let (status, created) = app.call("POST", "/v1/admin/staff", Some(ADMIN_KEY), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["roles"], json!(roles), "{created}");
    assert_eq!(created["disabled"], json!(false), "{created}");
    Member {
        id: created["id"].as_str().expect("id").to_string(),
        username: username.to_string(),
        secret: secret_of(created["otpauth_uri"].as_str().expect("otpauth_uri")),
    }
}

pub async fn login_with(app: &TestApp, username: &str, password: &str, code: &str) -> (u16, Value) {
    app.call("POST", "/v1/staff/login", None, Some(json!({"username": username, "password": password, "totp": code})))
        .await
}

pub async fn login(app: &TestApp, member: &Member) -> String {
    let (status, body) = login_with(app, &member.username, PASSWORD, &totp(&member.secret, now_seconds())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], json!(900), "{body}");
    body["access_token"].as_str().expect("token").to_string()
}

pub fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

#[tokio::test]
async fn a_staff_member_logs_in_with_the_totp_code_and_is_the_actor_of_what_they_do() {
    let app = spawn_app().await;
    let (_, market, _) = app.football_match("Staff v Trail").await;
    let trader = create(&app, "Ops.Anna", &["trader"]).await;
    assert_eq!(trader.username, "Ops.Anna");
    let token = login(&app, &Member { username: "ops.anna".into(), ..trader }).await;
    let (status, body) = app.call("POST", &format!("/v1/admin/markets/{market}/suspend"), Some(&token), None).await;
    assert_eq!(status, 200, "{body}");

    let commands = audited(&app).await;
    assert_eq!(actor_of(&commands, "set_market_status"), json!({"kind": "staff", "id": "stf_1"}));
    let created = commands.iter().find(|command| command["type"] == "create_staff").expect("create_staff");
    assert_eq!(created["username"], "ops.anna");
    assert_eq!(created["roles"], json!(["trader"]));
    assert_eq!(created["actor"], json!({"kind": "api_key", "id": "bootstrap"}));
    let text = serde_json::to_string(&commands).expect("json");
    assert!(!text.contains("$argon2") && !text.contains("totp") && !text.contains("secret"), "{text}");
}

#[tokio::test]
async fn a_login_without_a_valid_totp_code_is_refused_and_throttled() {
    let app = spawn_app().await;
    let member = create(&app, "ops.ben", &["compliance"]).await;
    let now = now_seconds();
    let good = totp(&member.secret, now);
    let (status, body) = login_with(&app, "ops.ben", PASSWORD, &good).await;
    assert_eq!(status, 200, "{body}");
    // A code works once; a wrong, empty or malformed one never; a wrong password says so.
    let (status, body) = login_with(&app, "ops.ben", PASSWORD, &good).await;
    assert_eq!((status, code(&body)), (401, Some("totp_invalid")), "{body}");
    let wrong = format!("{:06}", (good.parse::<u32>().expect("digits") + 1) % 1_000_000);
    let (status, body) = login_with(&app, "ops.ben", PASSWORD, &wrong).await;
    assert_eq!((status, code(&body)), (401, Some("totp_invalid")), "{body}");
    let (status, body) = login_with(&app, "ops.ben", PASSWORD, "").await;
    assert_eq!((status, code(&body)), (401, Some("totp_invalid")), "{body}");
    let (status, body) = login_with(&app, "ops.ben", "not the password", &totp(&member.secret, now + 30)).await;
    assert_eq!((status, code(&body)), (401, Some("unauthenticated")), "{body}");
    let (status, body) = login_with(&app, "ops.ben", PASSWORD, "12345a").await;
    assert_eq!((status, code(&body)), (401, Some("totp_invalid")), "{body}");
    // Five failures: throttled like a player's login, even with a good code.
    let (status, body) = login_with(&app, "ops.ben", PASSWORD, &totp(&member.secret, now + 30)).await;
    assert_eq!((status, code(&body)), (429, Some("rate_limited")), "{body}");
    // A staff token is no player's, and an unknown member is refused like a wrong password.
    let (status, body) = login_with(&app, "nobody.here", PASSWORD, &good).await;
    assert_eq!((status, code(&body)), (401, Some("unauthenticated")), "{body}");
}

#[tokio::test]
async fn a_disabled_staff_member_is_locked_out_across_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let config = || GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    let app = spawn_app_on(&path, Some(dir), config()).await;
    let leaving = create(&app, "ops.cleo", &["trader"]).await;
    let staying = create(&app, "ops.dan", &["settlement"]).await;
    let token = login(&app, &leaving).await;
    let (status, body) = app.call("GET", "/v1/admin/exposure", Some(&token), None).await;
    assert_eq!(status, 200, "{body}");

    // Only an admin disables; the member's token stops working at once.
    let staying_token = login(&app, &staying).await;
    let disable = format!("/v1/admin/staff/{}/disable", leaving.id);
    let (status, body) = app.call("POST", &disable, Some(&staying_token), None).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");
    let (status, body) = app.call("POST", &disable, Some(ADMIN_KEY), None).await;
    assert_eq!((status, &body["disabled"]), (200, &json!(true)), "{body}");
    let (status, body) = app.call("GET", "/v1/admin/exposure", Some(&token), None).await;
    assert_eq!((status, code(&body)), (401, Some("unauthenticated")), "{body}");
    let (status, body) = login_with(&app, "ops.cleo", PASSWORD, &totp(&leaving.secret, now_seconds())).await;
    assert_eq!((status, code(&body)), (403, Some("staff_disabled")), "{body}");
    let (status, body) = app.call("POST", "/v1/admin/staff/stf_99/disable", Some(ADMIN_KEY), None).await;
    assert_eq!((status, code(&body)), (404, Some("not_found")), "{body}");

    // The journal keeps both: after a restart the one is still disabled, the other logs in.
    let (path, dir) = app.stop().await;
    let app = spawn_app_on(&path, dir, config()).await;
    let (status, body) = login_with(&app, "ops.cleo", PASSWORD, &totp(&leaving.secret, now_seconds())).await;
    assert_eq!((status, code(&body)), (403, Some("staff_disabled")), "{body}");
    let token = login(&app, &staying).await;
    let body = Some(json!({"reason": "scope check"}));
    let (status, body) = app.call("POST", "/v1/admin/markets/mkt_404/void", Some(&token), body).await;
    assert_eq!((status, code(&body)), (404, Some("not_found")), "settlement scope: {body}");
}

#[tokio::test]
async fn each_role_holds_the_scopes_it_maps_to() {
    let app = spawn_app().await;
    // (route, scope, status when allowed): unknown ids after the scope check give 404.
    let routes: [(&str, &str, &str, Option<Value>, u16); 6] = [
        ("GET", "/v1/admin/exposure", "trading read", None, 200),
        ("PUT", "/v1/admin/markets/mkt_404/risk", "trading write", Some(json!({})), 404),
        ("POST", "/v1/admin/markets/mkt_404/void", "settlement", Some(json!({"reason": "scope check"})), 404),
        ("GET", "/v1/admin/audit?limit=1", "compliance read", None, 200),
        ("POST", "/v1/feed/messages", "feed", Some(json!({"messages": []})), 200),
        ("POST", "/v1/admin/staff/stf_404/disable", "admin", None, 404),
    ];
    let table: [(&str, [bool; 6]); 5] = [
        ("trader", [true, true, false, false, false, false]),
        ("settlement", [false, false, true, false, false, false]),
        ("compliance", [false, false, false, true, false, false]),
        ("support", [true, false, false, true, false, false]),
        ("admin", [true, true, true, true, true, true]),
    ];
    for (role, allowed) in table {
        let member = create(&app, &format!("role.{role}"), &[role]).await;
        let token = login(&app, &member).await;
        for ((method, path, scope, body, ok_status), allowed) in routes.iter().zip(allowed) {
            let (status, answer) = app.call(method, path, Some(&token), body.clone()).await;
            if allowed {
                assert_eq!(status, *ok_status, "{role} on {scope} ({method} {path}): {answer}");
            } else {
                assert_eq!((status, code(&answer)), (403, Some("forbidden")), "{role} on {scope}: {answer}");
            }
        }
    }
    // A player token is no staff token.
    let player = app.player("not.staff").await;
    let (status, body) = app.call("GET", "/v1/admin/exposure", Some(&player.access_token), None).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");
}

#[tokio::test]
async fn creating_staff_checks_roles_names_and_the_admin_scope() {
    let app = spawn_app().await;
    create(&app, "ops.eve", &["trader", "support"]).await;
    let call = |body: Value| async { app.call("POST", "/v1/admin/staff", Some(ADMIN_KEY), Some(body)).await };
    let (status, body) = call(json!({"username": "OPS.EVE", "password": PASSWORD, "roles": ["admin"]})).await;
    assert_eq!((status, code(&body)), (409, Some("username_taken")), "{body}");
    let (status, body) = call(json!({"username": "ops.fay", "password": PASSWORD, "roles": ["owner"]})).await;
    assert_eq!((status, code(&body), body["error"]["field"].as_str()), (400, Some("invalid_request"), Some("roles")));
    let (status, body) = call(json!({"username": "ops.fay", "password": PASSWORD, "roles": []})).await;
    assert_eq!((status, code(&body)), (400, Some("invalid_request")), "{body}");
    let (status, body) = call(json!({"username": "x", "password": PASSWORD, "roles": ["trader"]})).await;
    assert_eq!((status, code(&body)), (400, Some("invalid_request")), "{body}");
    let (status, body) = call(json!({"username": "ops.fay", "password": "password123", "roles": ["trader"]})).await;
    assert_eq!((status, code(&body)), (422, Some("weak_password")), "{body}");
    let (status, key) = app
        .call("POST", "/v1/admin/api-keys", Some(ADMIN_KEY), Some(json!({"name": "desk", "scopes": ["trading"]})))
        .await;
    assert_eq!(status, 201, "{key}");
    let body = json!({"username": "ops.gus", "password": PASSWORD, "roles": ["trader"]});
    let (status, answer) = app.call("POST", "/v1/admin/staff", key["key"].as_str(), Some(body)).await;
    assert_eq!((status, code(&answer)), (403, Some("forbidden")), "{answer}");
}
