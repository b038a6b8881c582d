//! `sportsbook serve` end to end: the real binary on 127.0.0.1:0, its printed address and demo
//! credentials, health, the demo catalog, login, SIGTERM, restarts and its secrets.

use serde_json::Value;

use crate::server::{binary, Server};

fn events(server: &Server) -> Vec<Value> {
    let (status, body) = server.get("/v1/events?limit=200", None);
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

fn event_ids(events: &[Value]) -> Vec<String> {
    events.iter().filter_map(|event| event["id"].as_str().map(str::to_string)).collect()
}

#[test]
fn serve_prints_its_address_answers_healthz_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&dir.path().join("data"), &[], &[]);
    let (status, body) = server.get("/healthz", None);
    assert_eq!(status, 200, "{body}");
    let (status, log) = server.terminate();
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("snapshot written"), "{log}");
}

#[test]
fn the_demo_prints_credentials_and_serves_a_catalog_with_every_market_kind() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&dir.path().join("data"), &["--demo", "--seed", "7"], &[]);
    let credentials = server.demo_credentials();
    assert_eq!(credentials.username, "demo");
    assert!(credentials.password.len() >= 8, "{credentials:?}");
    assert!(credentials.operator_key.starts_with("sk_") && credentials.operator_key.len() > 32, "{credentials:?}");
    let examples: Vec<String> = (0..8)
        .map_while(|_| server.lines.recv_timeout(std::time::Duration::from_secs(5)).ok())
        .filter(|line| line.trim_start().starts_with("curl"))
        .collect();
    assert!(
        examples.iter().any(|line| line.contains(&credentials.operator_key) && line.contains(&server.address)),
        "{examples:?}"
    );
    assert_eq!(server.get("/healthz", None).0, 200);

    let events = events(&server);
    let kinds: Vec<&str> = events
        .iter()
        .flat_map(|event| event["markets"].as_array().into_iter().flatten())
        .filter_map(|market| market["kind"].as_str())
        .collect();
    for kind in ["1x2", "over_under", "asian_handicap", "winner"] {
        assert!(kinds.contains(&kind), "no {kind} market in {kinds:?}");
    }
    let sports: Vec<&str> = events.iter().filter_map(|event| event["sport"].as_str()).collect();
    for sport in ["football", "tennis", "horse_racing"] {
        assert!(sports.contains(&sport), "no {sport} in {sports:?}");
    }
    let each_way = events
        .iter()
        .flat_map(|event| event["markets"].as_array().into_iter().flatten())
        .find(|market| !market["each_way"].is_null())
        .map(|market| market["each_way"].clone());
    assert!(each_way.is_some(), "no each-way market");

    // The generated operator key was stored (hashed) and loaded by the gateway.
    let (status, body) = server.get("/v1/admin/exposure", Some(&credentials.operator_key));
    assert_eq!(status, 200, "{body}");
    let (status, log) = server.terminate();
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(log.contains("fixture created"), "{log}");
}

/// Needs the gateway's `POST /v1/auth/login`.
#[test]
fn the_demo_player_printed_at_launch_can_log_in() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&dir.path().join("data"), &["--demo"], &[("SPORTSBOOK_ADMIN_KEY", "sk_demo")]);
    let credentials = server.demo_credentials();
    assert_eq!(credentials.operator_key, "sk_demo");
    let token = server.login(&credentials.username, &credentials.password);
    let (status, wallet) = server.get("/v1/wallet", Some(&token));
    assert_eq!(status, 200, "{wallet}");
    assert_eq!(wallet["balance"], "1000.00", "{wallet}");
    let (status, _) = server.get("/v1/admin/exposure", Some("sk_demo"));
    assert_eq!(status, 200);
    assert!(server.terminate().0.success());
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_keeps_the_book_the_player_and_the_tokens() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--demo"], &[]);
    let credentials = server.demo_credentials();
    let token = server.login(&credentials.username, &credentials.password);
    let before = event_ids(&events(&server));
    assert!(before.len() >= 6, "{before:?}");
    let secret = std::fs::read(data.join("jwt-secret")).expect("the generated JWT secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("jwt-secret")).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "jwt-secret mode {mode:o}");
    }

    let (status, log) = server.terminate();
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(log.contains("snapshot written"), "{log}");
    let snapshots = std::fs::read_dir(data.join("snapshots")).expect("snapshots").count();
    assert!(snapshots > 0, "no snapshot after a clean shutdown");

    let verified = binary().args(["verify", "--data-dir"]).arg(&data).output().expect("verify runs");
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));

    let restarted = Server::start(&data, &["--demo"], &[]);
    let again = restarted.demo_credentials_or_note();
    assert_eq!(again.as_deref(), Some(credentials.password.as_str()), "{:?}", restarted.banner);
    assert_eq!(std::fs::read(data.join("jwt-secret")).expect("secret"), secret, "the JWT secret changed");
    let after = event_ids(&events(&restarted));
    for id in &before {
        assert!(after.contains(id), "{id} lost in the restart: {after:?}");
    }
    // Signed with the same secret, the token from before the restart still works.
    let (status, wallet) = restarted.get("/v1/wallet", Some(&token));
    assert_eq!(status, 200, "{wallet}");
    restarted.login(&credentials.username, &credentials.password);
    assert!(restarted.log().contains("demo resumed"), "{}", restarted.log());
    assert!(restarted.terminate().0.success());
}

#[test]
fn serve_refuses_an_admin_key_without_the_prefix() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let output = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("SPORTSBOOK_ADMIN_KEY", "letmein")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SPORTSBOOK_ADMIN_KEY must start with `sk_`"), "{stderr}");
    assert!(!data.exists(), "nothing is created before the key is checked");
}

#[test]
fn serve_refuses_a_short_jwt_secret_and_two_secret_sources() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let serve = |env: &[(&str, &str)]| {
        let mut command = binary();
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&data);
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().expect("runs");
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let stderr = serve(&[("SPORTSBOOK_JWT_SECRET", "too-short")]);
    assert!(stderr.contains("needs at least 32"), "{stderr}");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "0123456789abcdef0123456789abcdef\n").expect("write");
    let stderr = serve(&[
        ("SPORTSBOOK_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("SPORTSBOOK_JWT_SECRET_FILE", secret_file.to_str().expect("utf-8 path")),
    ]);
    assert!(stderr.contains("not both"), "{stderr}");
}

#[test]
fn a_jwt_secret_file_from_the_environment_is_used_and_nothing_is_generated() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "0123456789abcdef0123456789abcdef0123456789abcdef\n").expect("write");
    let path = secret_file.to_str().expect("utf-8 path");
    let server = Server::start(&data, &[], &[("SPORTSBOOK_JWT_SECRET_FILE", path)]);
    assert_eq!(server.get("/healthz", None).0, 200);
    assert!(!data.join("jwt-secret").exists());
    assert!(server.log().contains("SPORTSBOOK_JWT_SECRET_FILE"), "{}", server.log());
    assert!(server.terminate().0.success());
}

impl Server {
    /// The demo password printed by a restarted server, if it printed one.
    fn demo_credentials_or_note(&self) -> Option<String> {
        self.banner
            .iter()
            .find_map(|line| line.strip_prefix("demo player: username demo password "))
            .map(|password| password.trim().to_string())
    }
}

#[test]
fn the_demo_does_not_simulate_on_a_book_it_did_not_seed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data directory");
    let created = binary()
        .args(["admin", "create-key", "--scope", "all", "--name", "ops", "--data-dir"])
        .arg(&data)
        .output()
        .expect("admin runs");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let server = Server::start(&data, &["--demo"], &[]);
    assert!(server.log().contains("did not seed"), "{}", server.log());
    assert!(events(&server).is_empty(), "no fixtures are created in an operator's book");
    assert!(server.terminate().0.success());
}

/// Registers `username` and logs in: (access token, refresh token).
fn register_and_log_in(server: &Server, username: &str) -> (String, String) {
    let password = "correct horse battery staple";
    let (status, body) = server.post(
        "/v1/auth/register",
        None,
        &serde_json::json!({"username": username, "password": password, "date_of_birth": "1990-05-17", "country": "GB", "currency": "EUR"}),
    );
    assert_eq!(status, 201, "{body}");
    let (status, tokens) =
        server.post("/v1/auth/login", None, &serde_json::json!({"username": username, "password": password}));
    assert_eq!(status, 200, "login (the edge state must be reachable): {tokens}; log:\n{}", server.log());
    let field = |name: &str| tokens[name].as_str().expect("token").to_string();
    (field("access_token"), field("refresh_token"))
}

/// `--edge-state redis://` (or `SPORTSBOOK_EDGE_STATE`) keeps refresh tokens in Redis: one
/// issued before a restart still refreshes after it, where in process it dies with the
/// process. Needs Redis at 127.0.0.1:6379 (the login fails, saying so, without it).
#[test]
fn edge_state_in_redis_keeps_refresh_tokens_across_a_restart() {
    let redis = std::env::var("SPORTSBOOK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let prefix = format!("sportsbook-serve-test:{}:{}:", std::process::id(), crate::server::unique());
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--edge-state-prefix", &prefix], &[("SPORTSBOOK_EDGE_STATE", &redis)]);
    assert!(server.log().contains("edge state in Redis"), "{}", server.log());
    let (_, refresh) = register_and_log_in(&server, "redis_player");
    assert!(server.terminate().0.success());
    let restarted = Server::start(&data, &["--edge-state", &redis, "--edge-state-prefix", &prefix], &[]);
    let (status, body) = restarted.post("/v1/auth/refresh", None, &serde_json::json!({"refresh_token": refresh}));
    assert_eq!(status, 200, "{body}");
    let (status, wallet) = restarted.get("/v1/wallet", body["access_token"].as_str());
    assert_eq!(status, 200, "{wallet}");
    let (status, ready) = restarted.get("/readyz", None);
    assert_eq!(status, 200, "{ready}");
    assert!(ready.get("warnings").is_none(), "{ready}");
    assert!(restarted.terminate().0.success());

    // In process (the default), the same restart forgets the refresh token.
    let local_dir = tempfile::tempdir().expect("temporary directory");
    let local_data = local_dir.path().join("data");
    let local = Server::start(&local_data, &[], &[]);
    assert!(local.log().contains("edge state in process"), "{}", local.log());
    let (_, refresh) = register_and_log_in(&local, "local_player");
    assert!(local.terminate().0.success());
    let restarted = Server::start(&local_data, &["--edge-state", "in-process"], &[]);
    let (status, _) = restarted.post("/v1/auth/refresh", None, &serde_json::json!({"refresh_token": refresh}));
    assert_eq!(status, 401);
    assert!(restarted.terminate().0.success());
}

#[test]
fn serve_refuses_an_edge_state_that_is_not_redis() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let output = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--edge-state", "http://127.0.0.1:6379", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .expect("serve runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--edge-state is `in-process` or redis://"), "{stderr}");
}

#[test]
fn serve_monitoring_rules_from_a_file_are_the_rules_answered_and_a_bad_file_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let rules = serde_json::json!({
        "deposits": {"period": "week", "amount": "5000.00"},
        "withdrawals": null,
        "turnover": {"period": "month", "amount": "25000.50"},
        "rapid_in_out": {"within_hours": 12, "turnover_percent": 5},
        "shared_accounts_max": 3,
        "deposits_per_day": 7,
        "night_bets_per_day": null,
        "night_start_hour": 1,
        "night_end_hour": 5,
        "refused_withdrawals": 4,
        "deposit_while_withdrawal_pending": true
    });
    let file = dir.path().join("rules.json");
    std::fs::write(&file, serde_json::to_string_pretty(&rules).expect("json")).expect("write");
    let key = "sk_test_monitoring_rules_key";
    let path = file.to_str().expect("utf-8 path");
    let server = Server::start(&data, &["--monitoring-rules", path], &[("SPORTSBOOK_ADMIN_KEY", key)]);
    let (status, answered) = server.get("/v1/admin/monitoring-rules", Some(key));
    assert_eq!(status, 200, "{answered}");
    let mut expected = rules.clone();
    expected["base_currency"] = serde_json::json!("EUR");
    assert_eq!(answered, expected);
    assert!(server.terminate().0.success());
    // A rule out of range: the server does not start, and says which file.
    let mut bad = rules.clone();
    bad["shared_accounts_max"] = serde_json::json!(0);
    std::fs::write(&file, bad.to_string()).expect("write");
    let output = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--monitoring-rules", path, "--data-dir"])
        .arg(&data)
        .env("SPORTSBOOK_ADMIN_KEY", key)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--monitoring-rules"), "{stderr}");
}
