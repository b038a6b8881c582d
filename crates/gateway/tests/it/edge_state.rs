//! Edge state: one conformance suite run against the in-process store and against Redis (the
//! real server at 127.0.0.1:6379, or `SPORTSBOOK_TEST_REDIS_URL`; the tests fail, saying so,
//! when it is not there), then several gateways sharing one Redis, and what happens when Redis
//! is away, slow or lost mid-way (a closed port; a real TCP proxy that stalls or is dropped).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use book::{AccountId, StaffId};
use domain::Currency;
use gateway::{
    EdgeSettings, EdgeStateConfig, EdgeStore, GatewayConfig, LocalEdge, LoginKey, LoginOutcome, Metrics, PrincipalKey,
    RateLimit, RedisEdge, RefreshGrant, Streams,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::harness::{serve_engine, spawn_app_on, TestApp, ADMIN_KEY};

const SECRET: &[u8] = b"test-secret-test-secret-test-secret";
const PASSWORD: &str = "correct horse battery staple";

fn redis_url() -> String {
    std::env::var("SPORTSBOOK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A prefix no other test (or run) uses, so that tests share the server without meeting.
fn fresh_prefix() -> String {
    format!("sportsbook-test:{}:{:016x}:", std::process::id(), rand::random::<u64>())
}

/// Fails loudly when the test's Redis is not there: these tests never skip.
async fn require_redis() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).expect("redis URL");
    let connection = tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection()).await;
    match connection {
        Ok(Ok(mut connection)) => {
            let pong: String = redis::cmd("PING").query_async(&mut connection).await.expect("PING");
            assert_eq!(pong, "PONG");
            connection
        }
        Ok(Err(error)) => panic!("Redis is required at {url} (set SPORTSBOOK_TEST_REDIS_URL): {error}"),
        Err(_) => panic!("Redis is required at {url} (set SPORTSBOOK_TEST_REDIS_URL): no answer in 5 s"),
    }
}

fn settings() -> EdgeSettings {
    let mut settings = EdgeSettings::new(
        Some(RateLimit { per_second: 10, burst: 3 }),
        Some(RateLimit { per_second: 10, burst: 2 }),
        Duration::from_secs(1),
        Duration::from_secs(2),
    );
    settings.login_failures_max = 3;
    settings.login_window = Duration::from_secs(2);
    settings
}

// ---- the conformance suite ------------------------------------------------------------------

/// Runs `check` against a fresh in-process store and a fresh Redis store (two handles on one
/// prefix, as two gateways would have).
async fn conformance<F, Fut>(check: F)
where
    F: Fn(&'static str, Arc<dyn EdgeStore>, Arc<dyn EdgeStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let local: Arc<dyn EdgeStore> = Arc::new(LocalEdge::new(settings(), None));
    check("in_process", Arc::clone(&local), local).await;
    let mut raw = require_redis().await;
    let prefix = fresh_prefix();
    let first: Arc<dyn EdgeStore> = Arc::new(RedisEdge::new(&redis_url(), &prefix, settings()).expect("store"));
    let second: Arc<dyn EdgeStore> = Arc::new(RedisEdge::new(&redis_url(), &prefix, settings()).expect("store"));
    check("redis", first, second).await;
    // Nothing the suite left in Redis lives for ever.
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut raw).await.expect("KEYS");
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut raw).await.expect("PTTL");
        assert!(ttl > 0 || ttl == -2, "{key} has no expiry ({ttl})");
    }
}

fn address(last: u8) -> Option<std::net::IpAddr> {
    Some(std::net::IpAddr::from([192, 0, 2, last]))
}

#[tokio::test]
async fn rate_limits_take_a_burst_then_the_sustained_rate_per_key() {
    conformance(|name, a, b| async move {
        // Burst 3 per address, spread over both handles.
        for store in [&a, &b, &a] {
            let checked = store.admit(None, address(1), None).await.expect("admit");
            assert_eq!(checked.rate, Ok(()), "{name}");
        }
        let refused = b.admit(None, address(1), None).await.expect("admit").rate.expect_err(name);
        assert!(refused > Duration::ZERO && refused <= Duration::from_millis(100), "{name}: {refused:?}");
        assert_eq!(a.admit(None, address(2), None).await.expect("admit").rate, Ok(()), "{name}: another address");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(b.admit(None, address(1), None).await.expect("admit").rate, Ok(()), "{name}: refilled");
        // The principal's own bucket (burst 2), behind a roomy address.
        let player = Some(PrincipalKey::Player(AccountId(7)));
        for store in [&a, &b] {
            assert_eq!(store.admit(None, address(3), player).await.expect("admit").rate, Ok(()), "{name}");
        }
        assert!(a.admit(None, address(4), player).await.expect("admit").rate.is_err(), "{name}: principal");
        let other = Some(PrincipalKey::ApiKey(book::ApiKeyId(7)));
        assert_eq!(a.admit(None, address(5), other).await.expect("admit").rate, Ok(()), "{name}: other principal");
    })
    .await;
}

#[tokio::test]
async fn login_throttles_count_failures_and_attempts_in_flight_per_key() {
    conformance(|name, a, b| async move {
        let key = LoginKey::Account(AccountId(1));
        // Attempts in flight count: three held, the fourth waits.
        let held = [
            a.reserve_login(key).await.expect("store").expect("reserved"),
            b.reserve_login(key).await.expect("store").expect("reserved"),
            a.reserve_login(key).await.expect("store").expect("reserved"),
        ];
        let wait = b.reserve_login(key).await.expect("store").expect_err(name);
        assert!(wait <= Duration::from_secs(1), "{name}: {wait:?}");
        // Another account, and unknown usernames from an address, are not touched.
        let other = LoginKey::Account(AccountId(2));
        let reserved = a.reserve_login(other).await.expect("store").expect("another account");
        a.settle_login(other, reserved, LoginOutcome::Succeeded).await.expect("settle");
        let from = LoginKey::UnknownUsernameFrom("192.0.2.9".parse().expect("ip"));
        let reserved = b.reserve_login(from).await.expect("store").expect("an address");
        b.settle_login(from, reserved, LoginOutcome::Released).await.expect("settle");
        // Released attempts do not count; failures do, on whichever handle.
        for (index, id) in held.iter().enumerate() {
            let store = if index % 2 == 0 { &a } else { &b };
            let outcome = if index == 0 { LoginOutcome::Released } else { LoginOutcome::Failed };
            store.settle_login(key, *id, outcome).await.expect("settle");
        }
        let id = b.reserve_login(key).await.expect("store").expect("two failures and nothing in flight");
        b.settle_login(key, id, LoginOutcome::Failed).await.expect("settle");
        let wait = a.reserve_login(key).await.expect("store").expect_err(name);
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(2), "{name}: window left {wait:?}");
        // The window passes: the account may try again, and a success clears its failures.
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        for _ in 0..2 {
            let id = a.reserve_login(key).await.expect("store").expect("a new window");
            a.settle_login(key, id, LoginOutcome::Failed).await.expect("settle");
        }
        let id = b.reserve_login(key).await.expect("store").expect("two failures");
        b.settle_login(key, id, LoginOutcome::Succeeded).await.expect("settle");
        for _ in 0..3 {
            let id = a.reserve_login(key).await.expect("store").expect("cleared by the success");
            a.settle_login(key, id, LoginOutcome::Released).await.expect("settle");
        }
    })
    .await;
}

#[tokio::test]
async fn concurrent_guesses_never_pass_the_limit_together() {
    conformance(|name, a, b| async move {
        let key = LoginKey::Staff(StaffId(3));
        let attempts = (0..40).map(|index| {
            let store = if index % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            async move { store.reserve_login(key).await.expect("store").is_ok() }
        });
        let reserved = futures_util::future::join_all(attempts).await.into_iter().filter(|ok| *ok).count();
        assert_eq!(reserved, 3, "{name}");
    })
    .await;
}

#[tokio::test]
async fn refresh_tokens_work_once_and_logout_revokes_the_session() {
    conformance(|name, a, b| async move {
        let grant =
            RefreshGrant { account: AccountId(9), currency: Currency::parse("EUR").expect("EUR"), session: 0xabc };
        a.put_refresh([1; 32], grant).await.expect("put");
        assert_eq!(b.take_refresh([1; 32]).await.expect("take"), Some(grant), "{name}");
        assert_eq!(a.take_refresh([1; 32]).await.expect("take"), None, "{name}: works once");
        assert_eq!(a.take_refresh([2; 32]).await.expect("take"), None, "{name}: unknown");
        // Logout: the token is taken and the session revoked for every handle.
        a.put_refresh([3; 32], grant).await.expect("put");
        assert!(!b.admit(Some(0xabc), None, None).await.expect("admit").session_revoked, "{name}");
        b.revoke([3; 32]).await.expect("revoke");
        assert!(a.admit(Some(0xabc), None, None).await.expect("admit").session_revoked, "{name}");
        assert!(!a.admit(Some(0xabd), None, None).await.expect("admit").session_revoked, "{name}: other session");
        assert_eq!(a.take_refresh([3; 32]).await.expect("take"), None, "{name}: taken by the logout");
        // A token of the session issued before the logout no longer refreshes.
        a.put_refresh([4; 32], grant).await.expect("put");
        assert_eq!(b.take_refresh([4; 32]).await.expect("take"), None, "{name}: session revoked");
        // A revoked session's principal bucket is not spent (the address's is).
        let player = Some(PrincipalKey::Player(AccountId(9)));
        for _ in 0..5 {
            let checked = a.admit(Some(0xabc), None, player).await.expect("admit");
            assert_eq!(checked.rate, Ok(()), "{name}");
        }
        // Unknown tokens revoke nothing; revocations and tokens expire with their lifetimes.
        a.revoke([5; 32]).await.expect("revoke");
        a.put_refresh([6; 32], grant).await.expect("put");
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        assert!(!a.admit(Some(0xabc), None, None).await.expect("admit").session_revoked, "{name}: expired");
        assert_eq!(b.take_refresh([6; 32]).await.expect("take"), None, "{name}: expired token");
    })
    .await;
}

#[tokio::test]
async fn a_totp_step_works_once_across_handles() {
    conformance(|name, a, b| async move {
        let staff = StaffId(4);
        assert!(a.use_totp_step(staff, 100).await.expect("step"), "{name}");
        assert!(!b.use_totp_step(staff, 100).await.expect("step"), "{name}: the same step again");
        assert!(!b.use_totp_step(staff, 99).await.expect("step"), "{name}: an earlier step");
        assert!(b.use_totp_step(staff, 101).await.expect("step"), "{name}: a later step");
        assert!(a.use_totp_step(StaffId(5), 100).await.expect("step"), "{name}: another member");
        a.ping().await.expect("ping");
    })
    .await;
}

// ---- several gateways sharing one Redis ---------------------------------------------------------

fn redis_config(prefix: &str) -> GatewayConfig {
    let mut config = GatewayConfig::new(SECRET.to_vec());
    config.edge_state = EdgeStateConfig::Redis { url: redis_url(), prefix: prefix.to_string() };
    // These tests check what is shared, not the bound: a machine busy with parallel tests
    // can hold a call past 50 ms, which would (rightly) answer 503.
    config.edge_state_timeout = Duration::from_secs(2);
    config
}

/// Two gateways in front of one book, sharing the edge state of `config`.
async fn two_gateways(config: GatewayConfig) -> (TestApp, TestApp) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let first = spawn_app_on(&path, Some(dir), config.clone()).await;
    let mut second_config = config;
    second_config.admin_key = Some(ADMIN_KEY.to_string());
    let metrics = Metrics::new();
    let streams = Streams::new(&second_config, &metrics);
    let second = serve_engine(first.engine.clone(), path, None, second_config, metrics, streams).await;
    (first, second)
}

async fn status_of(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    app.call("GET", path, token, None).await
}

async fn login(app: &TestApp, username: &str, password: &str) -> (u16, Value) {
    app.call("POST", "/v1/auth/login", None, Some(json!({"username": username, "password": password}))).await
}

#[tokio::test]
async fn a_rate_per_address_is_the_total_over_every_gateway() {
    require_redis().await;
    let mut config = redis_config(&fresh_prefix());
    config.rate_limit_per_address = Some(RateLimit { per_second: 1, burst: 6 });
    let (a, b) = two_gateways(config).await;
    for index in 0..6 {
        let app = if index % 2 == 0 { &a } else { &b };
        assert_eq!(status_of(app, "/v1/events", None).await.0, 200, "request {index}");
    }
    for app in [&a, &b] {
        let (status, body) = status_of(app, "/v1/events", None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")));
    }
    // In process, each gateway would have had its own six.
    let mut local = GatewayConfig::new(SECRET.to_vec());
    local.rate_limit_per_address = Some(RateLimit { per_second: 1, burst: 6 });
    let (c, d) = two_gateways(local).await;
    for index in 0..12 {
        let app = if index % 2 == 0 { &c } else { &d };
        assert_eq!(status_of(app, "/v1/events", None).await.0, 200, "in process, request {index}");
    }
}

#[tokio::test]
async fn a_session_logged_out_on_one_gateway_is_refused_by_the_other_at_once() {
    require_redis().await;
    let (a, b) = two_gateways(redis_config(&fresh_prefix())).await;
    let alice = a.player("alice").await;
    assert_eq!(status_of(&b, "/v1/wallet", Some(&alice.access_token)).await.0, 200);
    // A refresh token issued by A refreshes on B, once.
    let (status, rotated) =
        b.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": alice.refresh_token}))).await;
    assert_eq!(status, 200, "{rotated}");
    let (status, _) =
        a.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": alice.refresh_token}))).await;
    assert_eq!(status, 401, "the old refresh token stopped working everywhere");
    let rotated_access = rotated["access_token"].as_str().expect("access token");
    let rotated_refresh = rotated["refresh_token"].as_str().expect("refresh token");
    // Logout on A: B refuses both access tokens of the session and the refresh token.
    let (status, _) = a.call("POST", "/v1/auth/logout", None, Some(json!({"refresh_token": rotated_refresh}))).await;
    assert_eq!(status, 204);
    for token in [alice.access_token.as_str(), rotated_access] {
        let (status, body) = status_of(&b, "/v1/wallet", Some(token)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")), "{body}");
    }
    let (status, _) = b.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": rotated_refresh}))).await;
    assert_eq!(status, 401);
    // Another session of the same player still works.
    let (status, tokens) =
        b.call("POST", "/v1/auth/login", None, Some(json!({"username": "alice", "password": PASSWORD}))).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(status_of(&a, "/v1/wallet", tokens["access_token"].as_str()).await.0, 200);
}

#[tokio::test]
async fn login_failures_count_across_gateways_and_throttle_only_that_account() {
    require_redis().await;
    let (a, b) = two_gateways(redis_config(&fresh_prefix())).await;
    a.player("target").await;
    a.player("bystander").await;
    for index in 0..gateway::LOGIN_FAILURES_MAX {
        let app = if index % 2 == 0 { &a } else { &b };
        assert_eq!(login(app, "target", "wrong password entirely").await.0, 401, "failure {index}");
    }
    for app in [&a, &b] {
        let (status, body) = login(app, "target", PASSWORD).await;
        assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")), "{body}");
    }
    // The account that did not fail logs in from the same address, on either gateway.
    assert_eq!(login(&b, "bystander", PASSWORD).await.0, 200);
    assert_eq!(login(&a, "bystander", PASSWORD).await.0, 200);
}

// ---- Redis away, slow, or lost mid-way ---------------------------------------------------------

/// A real TCP proxy in front of Redis: forwards, stalls (holds what it reads), or is dropped
/// (listener and connections closed) and brought back on the same port.
struct Proxy {
    address: SocketAddr,
    stalled: Arc<AtomicBool>,
    resumed: Arc<Notify>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Proxy {
            address: listener.local_addr().expect("address"),
            stalled: Arc::new(AtomicBool::new(false)),
            resumed: Arc::new(Notify::new()),
            tasks: Arc::default(),
        };
        proxy.accept_on(listener, upstream);
        proxy
    }

    fn accept_on(&self, listener: TcpListener, upstream: SocketAddr) {
        let (stalled, resumed, tasks) = (Arc::clone(&self.stalled), Arc::clone(&self.resumed), Arc::clone(&self.tasks));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let Ok(server) = TcpStream::connect(upstream).await else { return };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (from, to) in [
                    (
                        Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                    ),
                    (Box::new(server_read), Box::new(client_write)),
                ] {
                    let (stalled, resumed) = (Arc::clone(&stalled), Arc::clone(&resumed));
                    let pump = tokio::spawn(pump(from, to, stalled, resumed));
                    tasks.lock().expect("tasks").push(pump);
                }
            }
        });
        self.tasks.lock().expect("tasks").push(accept);
    }

    fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
        if !stalled {
            self.resumed.notify_waiters();
        }
    }

    /// Closes the listener and every connection: the port refuses.
    fn drop_all(&self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }

    async fn restart(&self, upstream: SocketAddr) {
        let listener = TcpListener::bind(self.address).await.expect("bind the same port again");
        self.accept_on(listener, upstream);
    }
}

async fn pump(
    mut from: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    mut to: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    stalled: Arc<AtomicBool>,
    resumed: Arc<Notify>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else { return };
        if read == 0 {
            return;
        }
        while stalled.load(Ordering::SeqCst) {
            let notified = resumed.notified();
            if !stalled.load(Ordering::SeqCst) {
                break;
            }
            notified.await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

fn redis_address() -> SocketAddr {
    let url = redis_url();
    let rest = url.trim_start_matches("redis://");
    let host_port = rest.split('/').next().unwrap_or(rest);
    use std::net::ToSocketAddrs;
    host_port.to_socket_addrs().expect("redis address").next().expect("an address")
}

async fn metrics_text(app: &TestApp) -> String {
    app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("body")
}

fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .map_or(0, |value| value as u64)
}

#[tokio::test]
async fn with_redis_on_a_closed_port_sessions_fail_closed_and_limits_fall_back() {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("address");
    let mut config = GatewayConfig::new(SECRET.to_vec());
    config.edge_state = EdgeStateConfig::Redis { url: format!("redis://{closed}"), prefix: fresh_prefix() };
    config.rate_limit_per_address = Some(RateLimit { per_second: 1, burst: 8 });
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let app = spawn_app_on(&path, Some(dir), config).await;
    // Registration needs no edge state; a login cannot keep its refresh token: 503, not a
    // token that would never refresh.
    let (status, body) = app
        .call(
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({"username": "carol", "password": PASSWORD, "date_of_birth": "1990-05-17", "country": "GB", "currency": "EUR"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let started = Instant::now();
    let (status, body) = login(&app, "carol", PASSWORD).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "{body}");
    // Refresh tokens live in the store: a refresh cannot be decided either.
    let (status, body) =
        app.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": "0".repeat(64)}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "failures are fast: {:?}", started.elapsed());
    // API keys name no session and still work; the address's limit falls back to this
    // gateway's own (8 in all, some already spent above).
    let mut answered = 0;
    loop {
        let (status, body) = status_of(&app, "/v1/admin/trading-mode", Some(ADMIN_KEY)).await;
        if status == 429 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        answered += 1;
        assert!(answered <= 8, "the fallback limiter never refused");
    }
    let (status, body) = status_of(&app, "/readyz", None).await;
    assert_eq!(status, 200, "a warning, not a reason: {body}");
    assert_eq!(body["warnings"], json!(["edge_state_unavailable"]), "{body}");
    let metrics = metrics_text(&app).await;
    assert!(counter(&metrics, r#"sportsbook_edge_state_errors_total{op="admit"}"#) >= 1, "{metrics}");
    assert!(counter(&metrics, r#"sportsbook_edge_state_errors_total{op="refresh_put"}"#) >= 1, "{metrics}");
}

#[tokio::test]
async fn redis_stalled_or_lost_mid_way_fails_closed_then_recovers() {
    require_redis().await;
    let upstream = redis_address();
    let proxy = Proxy::start(upstream).await;
    let mut config = GatewayConfig::new(SECRET.to_vec());
    config.edge_state = EdgeStateConfig::Redis { url: format!("redis://{}", proxy.address), prefix: fresh_prefix() };
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let app = spawn_app_on(&path, Some(dir), config).await;
    let dave = app.player("dave").await;
    let leaving = app.player("erin").await;
    let (status, _) =
        app.call("POST", "/v1/auth/logout", None, Some(json!({"refresh_token": leaving.refresh_token}))).await;
    assert_eq!(status, 204);
    assert_eq!(status_of(&app, "/v1/wallet", Some(&dave.access_token)).await.0, 200);

    // Stalled: Redis is slow. The request is answered within the timeout, not held.
    proxy.stall(true);
    let started = Instant::now();
    let (status, body) = status_of(&app, "/v1/wallet", Some(&dave.access_token)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(started.elapsed() < Duration::from_millis(1_000), "bounded: {:?}", started.elapsed());
    // A revoked token never works, slow Redis or not.
    let (status, _) = status_of(&app, "/v1/wallet", Some(&leaving.access_token)).await;
    assert_ne!(status, 200);
    assert_eq!(status_of(&app, "/v1/admin/trading-mode", Some(ADMIN_KEY)).await.0, 200, "API keys are not held up");

    // Lost: the proxy is dropped with its connections.
    proxy.drop_all();
    proxy.stall(false);
    for _ in 0..10 {
        let started = Instant::now();
        let (status, _) = status_of(&app, "/v1/wallet", Some(&dave.access_token)).await;
        assert_eq!(status, 503);
        assert!(started.elapsed() < Duration::from_millis(1_000), "bounded: {:?}", started.elapsed());
        let (status, _) = status_of(&app, "/v1/wallet", Some(&leaving.access_token)).await;
        assert_ne!(status, 200, "a revoked token must never work");
    }
    let (_, body) = status_of(&app, "/readyz", None).await;
    assert_eq!(body["warnings"], json!(["edge_state_unavailable"]), "{body}");
    let metrics = metrics_text(&app).await;
    assert!(counter(&metrics, r#"sportsbook_breaker_opens_total{dependency="edge_state"}"#) >= 1, "{metrics}");

    // Back: after the breaker's pause the gateway uses Redis again, revocations intact.
    proxy.restart(upstream).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = status_of(&app, "/v1/wallet", Some(&dave.access_token)).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = status_of(&app, "/v1/wallet", Some(&leaving.access_token)).await;
    assert_eq!(status, 401, "still revoked after the outage");
    let (status, body) = status_of(&app, "/readyz", None).await;
    assert_eq!(status, 200);
    assert!(body.get("warnings").is_none(), "{body}");
    proxy.drop_all();
}
