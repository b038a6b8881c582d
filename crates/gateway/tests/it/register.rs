//! The national self-exclusion register (the GAMSTOP-like sandbox over a real socket, or a
//! register that is down): an excluded person cannot register (and nothing is created), a
//! player added to the register later is refused at login and their bets are refused (a
//! self-exclusion journaled with the register as its origin), and a register that cannot
//! answer refuses registrations and logins with 503 and `Retry-After` (fail closed).

use std::path::Path;
use std::time::Duration;

use gateway::register::ExclusionRegisterConfig;
use gateway::GatewayConfig;
use serde_json::{json, Value};

use crate::harness::{spawn_app_on, TestApp};

const PASSWORD: &str = "correct horse battery staple";

fn config(register: ExclusionRegisterConfig) -> GatewayConfig {
    let mut config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    config.exclusion_register = register;
    config
}

async fn spawn_with(path: &Path, dir: Option<tempfile::TempDir>, config: GatewayConfig) -> TestApp {
    spawn_app_on(path, dir, config).await
}

fn list(path: &Path, persons: Value) {
    std::fs::write(path, persons.to_string()).expect("write the register's list");
}

async fn register(app: &TestApp, username: &str, first_name: &str, last_name: &str) -> (u16, Value) {
    let body = json!({"username": username, "password": PASSWORD, "date_of_birth": "1990-05-17", "country": "GB",
        "first_name": first_name, "last_name": last_name, "email": format!("{username}@example.com"),
        "postcode": "SW1A 1AA", "address": "1 Example Street, London"});
    app.call("POST", "/v1/auth/register", None, Some(body)).await
}

async fn login(app: &TestApp, username: &str) -> (u16, Value) {
    app.call("POST", "/v1/auth/login", None, Some(json!({"username": username, "password": PASSWORD}))).await
}

#[tokio::test]
async fn an_excluded_person_cannot_register_and_nothing_is_created() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let file = path.join("excluded.json");
    list(&file, json!([{"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1990-05-17"}]));
    let app = spawn_with(&path, Some(dir), config(ExclusionRegisterConfig::Sandbox { file: Some(file) })).await;

    let (status, body) = register(&app, "ada", "ADA", "lovelace").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], json!("self_excluded"), "{body}");
    assert_eq!(body["error"]["source"], json!("register"), "{body}");
    assert_eq!(login(&app, "ada").await.0, 401, "no account was created");

    // Another person takes the username: it was never taken.
    let (status, body) = register(&app, "ada", "Grace", "Hopper").await;
    assert_eq!(status, 201, "{body}");
    // Bad personal details are refused before the register is asked.
    let bad = json!({"username": "bad_email", "password": PASSWORD, "date_of_birth": "1990-05-17", "country": "GB",
        "email": "not-an-address"});
    let (status, body) = app.call("POST", "/v1/auth/register", None, Some(bad)).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("email")), "{body}");
    let long = json!({"username": "long_name", "password": PASSWORD, "date_of_birth": "1990-05-17", "country": "GB",
        "first_name": "x".repeat(201)});
    let (status, body) = app.call("POST", "/v1/auth/register", None, Some(long)).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("first_name")), "{body}");
}

#[tokio::test]
async fn a_player_added_to_the_register_is_refused_at_login_and_may_not_bet() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let file = path.join("excluded.json");
    list(&file, json!([]));
    let mut settings = config(ExclusionRegisterConfig::Sandbox { file: Some(file.clone()) });
    // Every login asks (the cache of `NotFound` answers is tested below).
    settings.exclusion_register_cache_ttl = Duration::ZERO;
    let app = spawn_with(&path, Some(dir), settings).await;
    let (status, body) = register(&app, "grace", "Grace", "Hopper").await;
    assert_eq!(status, 201, "{body}");
    let (status, tokens) = login(&app, "grace").await;
    assert_eq!(status, 200, "{tokens}");
    let token = tokens["access_token"].as_str().expect("token").to_string();
    let deposit = json!({"amount": "50.00", "payment_ref": "register-1"});
    assert_eq!(app.call("POST", "/v1/wallet/deposits", Some(&token), Some(deposit)).await.0, 201);
    let (_, _, selections) = app.football_match("Register v Check").await;

    // Found by e-mail and date of birth: refused at the next login.
    list(
        &file,
        json!([{"first_name": "G", "last_name": "H", "date_of_birth": "1990-05-17",
        "email": "GRACE@example.com"}]),
    );
    let (status, body) = login(&app, "grace").await;
    assert_eq!(
        (status, &body["error"]["code"], &body["error"]["source"]),
        (403, &json!("self_excluded"), &json!("register"))
    );
    // The exclusion is the book's now: a token from before may not bet.
    let bet = json!({"type": "single", "legs": [{"selection_id": selections[0], "price": "2.50"}], "stake": "5.00",
        "accept_price_changes": "any"});
    let (status, body) = app.call("POST", "/v1/bets", Some(&token), Some(bet)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("self_excluded")), "{body}");
    let (_, limits) = app.call("GET", "/v1/limits", Some(&token), None).await;
    assert!(limits["self_excluded_until"].is_string(), "{limits}");
    let commands = crate::actors::audited(&app).await;
    let excluded = commands.iter().rev().find(|command| command["type"] == "self_exclude").expect("self_exclude");
    assert_eq!(excluded["actor"], json!({"kind": "system", "id": "exclusion_register"}), "{excluded}");
    // The personal details were kept (journaled with the registration), not shown in the trail.
    let details = commands.iter().find(|command| command["type"] == "set_personal_details").expect("details");
    assert_eq!(details["fields"], json!(["first_name", "last_name", "email", "postcode", "address"]), "{details}");
    assert!(!details.to_string().contains("Hopper"), "{details}");
}

#[tokio::test]
async fn a_login_found_in_no_exclusion_is_not_asked_again_within_the_cache_ttl() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let file = path.join("excluded.json");
    list(&file, json!([]));
    let app = spawn_with(&path, Some(dir), config(ExclusionRegisterConfig::Sandbox { file: Some(file.clone()) })).await;
    assert_eq!(register(&app, "linus", "Linus", "Pauling").await.0, 201);
    assert_eq!(login(&app, "linus").await.0, 200);
    list(&file, json!([{"first_name": "Linus", "last_name": "Pauling", "date_of_birth": "1990-05-17"}]));
    // Within `EXCLUSION_REGISTER_CACHE_TTL` of a `NotFound` the register is not asked again.
    assert_eq!(login(&app, "linus").await.0, 200);
    // Registration always asks.
    assert_eq!(register(&app, "linus2", "Linus", "Pauling").await.0, 403);
}

#[tokio::test]
async fn a_register_that_cannot_answer_refuses_registrations_and_logins_with_503() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    // A player registered while the register answered.
    let app = spawn_with(&path, None, config(ExclusionRegisterConfig::Sandbox { file: None })).await;
    assert_eq!(register(&app, "hedy", "Hedy", "Lamarr").await.0, 201);
    app.stop().await;

    // Down: nothing listens on the port.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let down = ExclusionRegisterConfig::Http { url: format!("http://{closed}/"), key: "key".to_string() };
    let app = spawn_with(&path, None, config(down)).await;
    check_unavailable(&app, "down").await;
    app.stop().await;

    // Silent: it accepts the connection and never answers; the named timeout ends the wait.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = silent.local_addr().expect("address");
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut settings = config(ExclusionRegisterConfig::Http { url: format!("http://{address}/"), key: "k".into() });
    settings.exclusion_register_timeout = Duration::from_millis(300);
    let app = spawn_with(&path, Some(dir), settings).await;
    let started = std::time::Instant::now();
    check_unavailable(&app, "silent").await;
    assert!(started.elapsed() < Duration::from_secs(10), "the timeout bounds the wait");
    held.abort();
}

async fn check_unavailable(app: &TestApp, what: &str) {
    let response = app
        .client
        .post(app.url("/v1/auth/register"))
        .json(&json!({"username": format!("new_{what}"), "password": PASSWORD, "date_of_birth": "1990-05-17",
            "country": "GB", "first_name": "New", "last_name": "Player"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 503, "{what}");
    assert!(response.headers().get("retry-after").is_some(), "{what}");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], json!("exclusion_register_unavailable"), "{what}: {body}");
    let (status, body) = login(app, "hedy").await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("exclusion_register_unavailable")), "{what}");
    // Nothing was created (and the register is asked only after a password is verified).
    assert_eq!(login(app, &format!("new_{what}")).await.0, 401, "{what}");
}
