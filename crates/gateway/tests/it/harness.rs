//! `spawn_app`: the engine on a temporary data directory and the gateway on 127.0.0.1:0,
//! with helpers to register players and call the API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use engine::{EngineHandle, EngineOptions, SystemClock};
use gateway::{AppState, GatewayConfig, Metrics, Streams};
use serde_json::{json, Value};

pub const ADMIN_KEY: &str = "sk_test_bootstrap_admin_key";

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub engine: EngineHandle,
    pub data_dir: PathBuf,
    /// The projector keeping the read models (a temporary SQLite store in the data directory)
    /// beside the engine, as `serve` runs it; `None` when the engine has no journal on disk.
    pub projector: Option<projector::ProjectorThread>,
    /// Keeps the temporary directory alive (None when the caller owns the directory).
    _dir: Option<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    spawn_app_on(&path, Some(dir), GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec())).await
}

/// Starts the stack on an existing data directory (to test restarts).
pub async fn spawn_app_on(path: &Path, dir: Option<tempfile::TempDir>, config: GatewayConfig) -> TestApp {
    spawn_app_with_book(path, dir, config, book::Config::default()).await
}

/// The stack with a book configuration of the test's (e.g. a short idempotency window); the
/// projector replays with the same one.
pub async fn spawn_app_with_book(
    path: &Path,
    dir: Option<tempfile::TempDir>,
    mut config: GatewayConfig,
    book_config: book::Config,
) -> TestApp {
    config.admin_key = Some(ADMIN_KEY.to_string());
    let metrics = Metrics::new();
    let streams = Streams::new(&config, &metrics);
    let options =
        EngineOptions { on_commit: vec![metrics.engine_hook(), streams.engine_hook()], ..EngineOptions::default() };
    let (engine, _) = tokio::task::spawn_blocking({
        let path = path.to_path_buf();
        move || engine::open_data_dir(&path, book_config, Box::new(SystemClock), options)
    })
    .await
    .expect("join")
    .expect("open data directory");
    let projector = start_projector(path, &mut config, book_config);
    let mut app = serve_engine(engine, path.to_path_buf(), dir, config, metrics, streams).await;
    app.projector = Some(projector);
    app
}

/// The stack with the read models `config` names and no projector thread of the harness's
/// (the test publishes what it wants the gateway to see).
pub async fn spawn_app_with_models(path: &Path, dir: Option<tempfile::TempDir>, mut config: GatewayConfig) -> TestApp {
    config.admin_key = Some(ADMIN_KEY.to_string());
    let metrics = Metrics::new();
    let streams = Streams::new(&config, &metrics);
    let options =
        EngineOptions { on_commit: vec![metrics.engine_hook(), streams.engine_hook()], ..EngineOptions::default() };
    let engine = engine::open_data_dir(path, book::Config::default(), Box::new(SystemClock), options)
        .expect("open data directory")
        .0;
    serve_engine(engine, path.to_path_buf(), dir, config, metrics, streams).await
}

/// The stack as `serve --projector off` runs it: no read models, history routes answer 503.
pub async fn spawn_app_without_projector() -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    config.admin_key = Some(ADMIN_KEY.to_string());
    config.projector_off_warning = true;
    let metrics = Metrics::new();
    let streams = Streams::new(&config, &metrics);
    let options =
        EngineOptions { on_commit: vec![metrics.engine_hook(), streams.engine_hook()], ..EngineOptions::default() };
    let engine = engine::open_data_dir(&path, book::Config::default(), Box::new(SystemClock), options)
        .expect("open data directory")
        .0;
    serve_engine(engine, path, Some(dir), config, metrics, streams).await
}

/// Starts a real projector following `data_dir`'s journal into the SQLite store of the data
/// directory (`projector::sqlite_path`), and points the gateway's history routes at it. The
/// projector replays with `book_config`, the engine's.
pub fn start_projector(
    data_dir: &Path,
    config: &mut GatewayConfig,
    book_config: book::Config,
) -> projector::ProjectorThread {
    let published = projector::Published::new();
    let store_path = projector::sqlite_path(data_dir);
    let mut options = projector::ProjectorOptions::new(data_dir);
    options.config = book_config;
    let opened_path = store_path.clone();
    let thread = projector::spawn(
        move || {
            let store = projector::SqliteStore::open(&opened_path)?;
            projector::Projector::open(Box::new(store), options.clone(), false)
        },
        published.clone(),
    )
    .expect("start the projector");
    config.read_models = Some(projector::ReadModels::new(projector::ReadStore::Sqlite(store_path), published));
    thread
}

/// Serves the gateway in front of an engine that is already running (e.g. on a faulty journal).
pub async fn serve_engine(
    engine: EngineHandle,
    data_dir: PathBuf,
    dir: Option<tempfile::TempDir>,
    config: GatewayConfig,
    metrics: Metrics,
    streams: Streams,
) -> TestApp {
    let state = AppState::new(engine.clone(), config, metrics, streams).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        gateway::serve(listener, state, async move {
            let _ = signal.await;
        })
        .await
        .expect("serve");
    });
    TestApp {
        address,
        client: reqwest::Client::new(),
        engine,
        data_dir,
        projector: None,
        _dir: dir,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

pub struct Player {
    pub access_token: String,
    pub refresh_token: String,
    pub username: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Stops the server and the engine (taking a final snapshot) and gives back the directory.
    pub async fn stop(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Some(projector) = self.projector.take() {
            tokio::task::spawn_blocking(move || projector.stop()).await.expect("join");
        }
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.shutdown()).await.expect("join");
        (self.data_dir.clone(), self._dir.take())
    }

    /// Sends a request; returns the status and the JSON body (`Value::Null` when empty).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let method_name = method;
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        // Like a client library, give every write that needs one a fresh idempotency key unless
        // the test chose its own (`call_without_key` sends none).
        let chose_key = headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("idempotency-key"));
        if !chose_key && needs_idempotency_key(method_name, path) {
            request = request.header("idempotency-key", fresh_idempotency_key());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    /// Registers and logs in a player born in 1990.
    pub async fn player(&self, username: &str) -> Player {
        let password = "correct horse battery staple";
        let (status, body) = self
            .call(
                "POST",
                "/v1/auth/register",
                None,
                Some(json!({"username": username, "password": password, "date_of_birth": "1990-05-17", "country": "GB", "currency": "EUR"})),
            )
            .await;
        assert_eq!(status, 201, "register {username}: {body}");
        let (status, tokens) =
            self.call("POST", "/v1/auth/login", None, Some(json!({"username": username, "password": password}))).await;
        assert_eq!(status, 200, "login {username}: {tokens}");
        Player {
            access_token: tokens["access_token"].as_str().expect("access token").to_string(),
            refresh_token: tokens["refresh_token"].as_str().expect("refresh token").to_string(),
            username: username.to_string(),
        }
    }

    /// A player with `amount` deposited.
    pub async fn funded_player(&self, username: &str, amount: &str) -> Player {
        let player = self.player(username).await;
        let (status, body) = self
            .call(
                "POST",
                "/v1/wallet/deposits",
                Some(&player.access_token),
                Some(json!({"amount": amount, "payment_ref": format!("test-{}", fresh_idempotency_key())})),
            )
            .await;
        assert_eq!(status, 201, "deposit: {body}");
        player
    }

    /// Creates an event starting in a day with a 1X2 market; returns (event id, market id,
    /// selection ids).
    pub async fn football_match(&self, name: &str) -> (String, String, Vec<String>) {
        let starts_at = gateway::format_rfc3339(now_ms() + 86_400_000);
        let (status, event) = self
            .call(
                "POST",
                "/v1/admin/events",
                Some(ADMIN_KEY),
                Some(json!({"name": name, "sport": "football", "starts_at": starts_at})),
            )
            .await;
        assert_eq!(status, 201, "event: {event}");
        let event_id = event["id"].as_str().expect("event id").to_string();
        let (status, market) = self
            .call(
                "POST",
                &format!("/v1/admin/events/{event_id}/markets"),
                Some(ADMIN_KEY),
                Some(json!({"name": "Match result", "kind": "1x2", "selections": [
                    {"name": "Home", "price": "2.50"}, {"name": "Draw", "price": "3.20"}, {"name": "Away", "price": "2.80"}
                ]})),
            )
            .await;
        assert_eq!(status, 201, "market: {market}");
        let selections = market["selections"]
            .as_array()
            .expect("selections")
            .iter()
            .map(|selection| selection["id"].as_str().expect("selection id").to_string())
            .collect();
        (event_id, market["id"].as_str().expect("market id").to_string(), selections)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Whether `METHOD path` is a write that moves money or places a bet, which takes an
/// `Idempotency-Key` (400 `idempotency_key_required` without one).
pub fn needs_idempotency_key(method: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    method == "POST"
        && (path == "/v1/wallet/deposits"
            || path == "/v1/wallet/withdrawals"
            || path == "/v1/bets"
            || (path.starts_with("/v1/bets/") && path.ends_with("/cashout"))
            || (path.starts_with("/v1/admin/accounts/") && path.ends_with("/adjustments")))
}

/// A key no other request of this test process uses.
pub fn fresh_idempotency_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
