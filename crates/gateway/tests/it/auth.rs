//! Black-box tests of authentication under attack: password hashing bounded by its pool, the
//! login throttle's reservations, per-principal rate limits whatever the token's spelling,
//! sessions revoked at logout, trusted proxies, the password policy, and Content-Type on every
//! JSON body.

use futures_util::future::join_all;
use gateway::{GatewayConfig, RateLimit, LOGIN_FAILURES_MAX};
use serde_json::{json, Value};

use crate::harness::{spawn_app_on, TestApp, ADMIN_KEY};

const PASSWORD: &str = "correct horse battery staple";

fn config() -> GatewayConfig {
    GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec())
}

async fn spawn_with(config: GatewayConfig) -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    spawn_app_on(&path, Some(dir), config).await
}

fn registration(username: &str, password: &str) -> Value {
    json!({"username": username, "password": password, "date_of_birth": "1990-05-17", "country": "GB"})
}

/// Status, `Retry-After` and the JSON body of a POST with extra headers.
async fn post(app: &TestApp, path: &str, body: &Value, headers: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let mut request = app.client.post(app.url(path)).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|value| value.to_str().expect("ascii").to_string());
    (status, retry_after, response.json().await.unwrap_or(Value::Null))
}

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

#[tokio::test]
async fn registrations_past_the_hash_pool_are_shed_503_overloaded_with_retry_after() {
    let mut config = config();
    config.password_hash_workers = 1;
    config.password_hash_queue_max = 2;
    let app = spawn_with(config).await;
    let requests = (0..24).map(|index| {
        let app = &app;
        async move { post(app, "/v1/auth/register", &registration(&format!("racer{index}"), PASSWORD), &[]).await }
    });
    let answers = join_all(requests).await;
    let created = answers.iter().filter(|(status, _, _)| *status == 201).count();
    let shed: Vec<_> = answers.iter().filter(|(status, _, _)| *status == 503).collect();
    for (status, _, body) in &answers {
        assert!(matches!(status, 201 | 503), "only created or shed, never a hang or a 500: {status} {body}");
    }
    assert!(created >= 1, "the pool works through what it admits");
    assert!(created <= 1 + 2 + 2, "one running and two queued at a time: {created} created");
    assert!(!shed.is_empty(), "past the pool, registrations are shed");
    for (_, retry_after, body) in shed {
        assert_eq!(code(body), Some("overloaded"), "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
}

#[tokio::test]
async fn concurrent_guesses_evaluate_at_most_the_failure_limit() {
    let app = spawn_with(config()).await;
    let (status, body) = app.call("POST", "/v1/auth/register", None, Some(registration("target", PASSWORD))).await;
    assert_eq!(status, 201, "{body}");
    // Sixty wrong guesses and the right password, all at once.
    let guesses = (0..61).map(|index| {
        let app = &app;
        let password = if index == 30 { PASSWORD.to_string() } else { format!("wrong guess {index}") };
        async move { post(app, "/v1/auth/login", &json!({"username": "target", "password": password}), &[]).await }
    });
    let answers = join_all(guesses).await;
    let evaluated = answers.iter().filter(|(status, _, _)| matches!(status, 200 | 401)).count();
    let throttled = answers.iter().filter(|(status, _, _)| *status == 429).count();
    assert!(
        evaluated <= LOGIN_FAILURES_MAX as usize,
        "{evaluated} guesses evaluated: {:?}",
        answers.iter().map(|(status, _, _)| *status).collect::<Vec<_>>()
    );
    assert_eq!(evaluated + throttled, answers.len(), "every other guess is throttled");
    for (status, retry_after, body) in &answers {
        if *status == 429 {
            assert_eq!(code(body), Some("rate_limited"));
            assert!(retry_after.is_some());
        }
    }
}

#[tokio::test]
async fn failures_never_lock_out_an_account_that_did_not_fail() {
    let app = spawn_with(config()).await;
    for username in ["alice", "bob"] {
        let (status, body) = app.call("POST", "/v1/auth/register", None, Some(registration(username, PASSWORD))).await;
        assert_eq!(status, 201, "{body}");
    }
    let login = |username: &str, password: &str| json!({"username": username, "password": password});
    // From this one address: alice's password guessed, and unknown usernames tried.
    for attempt in 0..LOGIN_FAILURES_MAX {
        let (status, _, _) = post(&app, "/v1/auth/login", &login("alice", &format!("guess {attempt}")), &[]).await;
        assert_eq!(status, 401);
        let (status, _, _) = post(&app, "/v1/auth/login", &login(&format!("nobody{attempt}"), PASSWORD), &[]).await;
        assert_eq!(status, 401);
    }
    let (status, _, body) = post(&app, "/v1/auth/login", &login("alice", PASSWORD), &[]).await;
    assert_eq!((status, code(&body)), (429, Some("rate_limited")), "the account that failed is throttled");
    let (status, _, body) = post(&app, "/v1/auth/login", &login("nobody-else", PASSWORD), &[]).await;
    assert_eq!((status, code(&body)), (429, Some("rate_limited")), "unknown usernames from the address too");
    let (status, _, body) = post(&app, "/v1/auth/login", &login("bob", PASSWORD), &[]).await;
    assert_eq!(status, 200, "bob did not fail, from the same address: {body}");
}

#[tokio::test]
async fn the_rate_limit_counts_a_principal_however_its_token_is_spelled() {
    let mut config = config();
    config.rate_limit_per_address = None;
    config.rate_limit_per_principal = Some(RateLimit { per_second: 1, burst: 3 });
    let app = spawn_with(config).await;
    let alice = app.player("alice").await;
    // Login consumed no bucket of alice's: her token's first use is below.
    let spellings: Vec<String> = (1..=12)
        .map(|spaces| format!("Bearer{}{}", " ".repeat(spaces), alice.access_token))
        .chain(["bearer", "BEARER"].map(|scheme| format!("{scheme} {}", alice.access_token)))
        .collect();
    let mut statuses = Vec::new();
    for spelling in &spellings {
        let response =
            app.client.get(app.url("/v1/wallet")).header("authorization", spelling).send().await.expect("request");
        statuses.push(response.status().as_u16());
    }
    let ok = statuses.iter().filter(|status| **status == 200).count();
    assert!((3..=4).contains(&ok), "one bucket of 3 (and maybe one refill): {statuses:?}");
    assert_eq!(ok + statuses.iter().filter(|status| **status == 429).count(), statuses.len(), "{statuses:?}");
}

#[tokio::test]
async fn logout_revokes_the_access_tokens_of_its_session_only() {
    let app = spawn_with(config()).await;
    let first = app.player("heidi").await;
    let (status, second) =
        app.call("POST", "/v1/auth/login", None, Some(json!({"username": "heidi", "password": PASSWORD}))).await;
    assert_eq!(status, 200);
    let second_access = second["access_token"].as_str().expect("access token");
    // The first session refreshed once: its old and new access tokens are one session.
    let (status, rotated) =
        app.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": first.refresh_token}))).await;
    assert_eq!(status, 200, "{rotated}");
    let rotated_access = rotated["access_token"].as_str().expect("access token");
    let rotated_refresh = rotated["refresh_token"].as_str().expect("refresh token");
    for token in [first.access_token.as_str(), rotated_access, second_access] {
        assert_eq!(app.call("GET", "/v1/wallet", Some(token), None).await.0, 200);
    }

    let (status, _) = app.call("POST", "/v1/auth/logout", None, Some(json!({"refresh_token": rotated_refresh}))).await;
    assert_eq!(status, 204);
    for token in [first.access_token.as_str(), rotated_access] {
        let (status, body) = app.call("GET", "/v1/wallet", Some(token), None).await;
        assert_eq!((status, code(&body)), (401, Some("unauthenticated")), "a logged-out session's access token");
    }
    assert_eq!(app.call("GET", "/v1/wallet", Some(second_access), None).await.0, 200, "another session lives on");
    let (status, _) = app.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": rotated_refresh}))).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let limited = |trusted: bool| {
        let mut config = config();
        config.rate_limit_per_address = Some(RateLimit { per_second: 1, burst: 2 });
        if trusted {
            config.trusted_proxies = vec![gateway::parse_trusted_proxy("127.0.0.0/8").expect("cidr")];
        }
        config
    };
    let get = |app: &TestApp, client: &'static str| {
        let request = app.client.get(app.url("/v1/events")).header("x-forwarded-for", client);
        async move { request.send().await.expect("request").status().as_u16() }
    };

    // Behind a trusted proxy each client has its own bucket.
    let app = spawn_with(limited(true)).await;
    assert_eq!(get(&app, "203.0.113.1").await, 200);
    assert_eq!(get(&app, "203.0.113.1").await, 200);
    assert_eq!(get(&app, "203.0.113.1").await, 429);
    assert_eq!(get(&app, "203.0.113.2").await, 200, "another client behind the same proxy");
    let forwarded = app
        .client
        .get(app.url("/v1/events"))
        .header("forwarded", r#"for="[2001:db8::5]:4711";proto=https"#)
        .send()
        .await
        .expect("request");
    assert_eq!(forwarded.status(), 200, "RFC 7239 Forwarded names a third client");

    // The login throttle of unknown usernames follows the forwarded address too.
    let mut config = limited(true);
    config.rate_limit_per_address = None;
    let app = spawn_with(config).await;
    let login = json!({"username": "nobody", "password": PASSWORD});
    for _ in 0..LOGIN_FAILURES_MAX {
        assert_eq!(post(&app, "/v1/auth/login", &login, &[("x-forwarded-for", "198.51.100.1")]).await.0, 401);
    }
    assert_eq!(post(&app, "/v1/auth/login", &login, &[("x-forwarded-for", "198.51.100.1")]).await.0, 429);
    assert_eq!(post(&app, "/v1/auth/login", &login, &[("x-forwarded-for", "198.51.100.2")]).await.0, 401);

    // From a peer that is not a trusted proxy, the header is ignored: a client cannot pick a
    // fresh address per request.
    let app = spawn_with(limited(false)).await;
    let statuses = [
        get(&app, "203.0.113.1").await,
        get(&app, "203.0.113.2").await,
        get(&app, "203.0.113.3").await,
        get(&app, "203.0.113.4").await,
    ];
    assert_eq!(statuses.iter().filter(|status| **status == 429).count(), 2, "{statuses:?}");
}

#[tokio::test]
async fn passwords_are_8_to_128_characters_and_not_common() {
    let app = spawn_with(config()).await;
    let register = |username: &str, password: &str| {
        app.call("POST", "/v1/auth/register", None, Some(registration(username, password)))
    };
    // Seven characters of two bytes each: 14 bytes, but 7 characters.
    let (status, body) = register("short", "ééééééé").await;
    assert_eq!(
        (status, code(&body), body["error"]["field"].as_str()),
        (400, Some("invalid_request"), Some("password"))
    );
    let (status, body) = register("long", &"x".repeat(gateway::PASSWORD_CHARS_MAX + 1)).await;
    assert_eq!((status, code(&body)), (400, Some("invalid_request")), "{body}");
    for common in ["password1", "Password123", "iloveyou1", "qwertyuiop", "1q2w3e4r5t"] {
        let (status, body) = register("common", common).await;
        assert_eq!((status, code(&body)), (422, Some("weak_password")), "{common}: {body}");
        assert_eq!(body["error"]["field"], "password");
    }
    assert_eq!(register("unicode", "éàüøßçñå").await.0, 201, "eight characters are enough");
    assert_eq!(register("longest", &"y".repeat(gateway::PASSWORD_CHARS_MAX)).await.0, 201);
}

#[tokio::test]
async fn every_route_with_a_json_body_refuses_another_content_type() {
    let app = spawn_with(config()).await;
    let player = app.funded_player("alice", "50.00").await;
    let (event, market, selections) = app.football_match("Content types FC").await;
    let player_token = player.access_token.as_str();
    let routes: Vec<(&str, String, Option<&str>, Value)> = vec![
        ("POST", "/v1/auth/register".into(), None, registration("bob", PASSWORD)),
        ("POST", "/v1/auth/login".into(), None, json!({"username": "alice", "password": PASSWORD})),
        ("POST", "/v1/auth/logout".into(), None, json!({"refresh_token": player.refresh_token})),
        ("POST", "/v1/wallet/deposits".into(), Some(player_token), json!({"amount": "5.00", "payment_ref": "ct"})),
        ("POST", "/v1/wallet/withdrawals".into(), Some(player_token), json!({"amount": "5.00"})),
        (
            "POST",
            "/v1/bets".into(),
            Some(player_token),
            json!({"type": "single", "legs": [{"selection_id": selections[0], "price": "2.50"}], "stake": "1.00"}),
        ),
        ("POST", "/v1/bets/bet_1/cashout".into(), Some(player_token), json!({"quote_id": "quo_1"})),
        ("PUT", "/v1/limits".into(), Some(player_token), json!({"deposit": {"day": "10.00"}})),
        ("POST", "/v1/time-out".into(), Some(player_token), json!({"hours": 24})),
        (
            "POST",
            "/v1/admin/events".into(),
            Some(ADMIN_KEY),
            json!({"name": "x", "sport": "football", "starts_at": "2030-01-01T00:00:00Z"}),
        ),
        (
            "PUT",
            format!("/v1/admin/markets/{market}/prices"),
            Some(ADMIN_KEY),
            json!({"prices": [{"selection_id": selections[0], "price": "2.60"}]}),
        ),
        ("POST", format!("/v1/admin/events/{event}/in-play"), Some(ADMIN_KEY), json!({"in_play": true})),
        ("POST", "/v1/feed/messages".into(), Some(ADMIN_KEY), json!({"messages": []})),
    ];
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        for (method, path, token, body) in &routes {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut request = app.client.request(method.clone(), app.url(path)).body(body.to_string());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request = request.header("idempotency-key", format!("ct-{path}"));
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(
                (status, code(&body)),
                (415, Some("unsupported_media_type")),
                "{method} {path} with {content_type:?}: {body}"
            );
        }
    }
    let (status, wallet) = app.call("GET", "/v1/wallet", Some(player_token), None).await;
    assert_eq!((status, wallet["balance"].as_str()), (200, Some("50.00")), "nothing was deposited or withdrawn");
}

#[tokio::test]
async fn a_restart_does_not_revive_a_logged_out_access_token() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let with_file = || {
        let mut config = config();
        config.revoked_sessions_path = Some(path.join("revoked-sessions"));
        config
    };
    let app = spawn_app_on(&path, None, with_file()).await;
    let leaving = app.player("leaving").await;
    let staying = app.player("staying").await;
    let (status, _) =
        app.call("POST", "/v1/auth/logout", None, Some(json!({"refresh_token": leaving.refresh_token}))).await;
    assert_eq!(status, 204);
    assert_eq!(app.call("GET", "/v1/wallet", Some(&leaving.access_token), None).await.0, 401);
    app.stop().await;

    let app = spawn_app_on(&path, None, with_file()).await;
    let (status, body) = app.call("GET", "/v1/wallet", Some(&leaving.access_token), None).await;
    assert_eq!((status, code(&body)), (401, Some("unauthenticated")), "still logged out after the restart");
    assert_eq!(app.call("GET", "/v1/wallet", Some(&staying.access_token), None).await.0, 200);
    app.stop().await;
}
