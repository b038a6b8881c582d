//! `spawn_app`: the engine on a temporary data directory and the gateway on 127.0.0.1:0,
//! with helpers to register players and call the API.
//!
//! **Cluster mode** (issue 15: "every existing black-box test also passes against a
//! dev-cluster gateway"). With `SPORTSBOOK_TEST_CLUSTER=1` every `spawn_app*` builds, instead
//! of the embedded engine, the stack of `sportsbook gateway` in this process: a `BookNode`
//! leader (its snapshots in the test's data directory) on a 3-node `LocalCluster` shared by
//! the whole test binary, a `GatewayReplica` as the gateway's engine (commands forwarded to the
//! leader, reads on the replica), and a projector following the NATS journal
//! (`projector::NatsSource`) into the test's SQLite file, read by the gateway through
//! `projector::watch_store` as `sportsbook gateway --read-models` does. Each data directory
//! gets its own stream, subjects and buckets (named after the directory, so a restart on the
//! same directory finds its journal again). The gateway gets the `cluster::ReplicaStatus` of
//! `sportsbook gateway` (`/readyz` reasons, cluster metrics, `GET /v1/admin/cluster`), and a
//! test starts only once it says ready. The tests named in [`EMBEDDED_ONLY`] run embedded in
//! both modes, each for the reason given there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{EngineHandle, EngineOptions, SystemClock};
use gateway::{AppState, GatewayConfig, Metrics, Streams};
use serde_json::{json, Value};

pub const ADMIN_KEY: &str = "sk_test_bootstrap_admin_key";

/// Set to `1` to run every `spawn_app*` against a cluster stack (see the module documentation).
pub const CLUSTER_MODE_ENV: &str = "SPORTSBOOK_TEST_CLUSTER";

/// Tests that run on the embedded engine even in cluster mode, with why each cannot mean the
/// same thing against a cluster. Matched against the test's name (`module::test`).
pub const EMBEDDED_ONLY: &[(&str, &str)] = &[
    (
        "actors::a_journal_of_the_previous_batch_format_replays",
        "writes a journal file of the previous batch format into the data directory: the file journal's",
    ),
    (
        "compliance::a_record_forged_on_disk_fails_verification",
        "rewrites a record in the file journal on disk; a JetStream stream has no file to forge",
    ),
    (
        "compliance::verification_holds_across_restarts_from_a_snapshot_and_from_the_journal_alone",
        "restarts expecting the same record count, and deletes the engine's `snapshots` directory; in a cluster \
         every takeover appends a leader marker (a record), and the book node keeps its own snapshots",
    ),
    (
        "payments::requests_refused_for_oversized_text_leave_the_journal_as_it_was",
        "measures the bytes of the file journal under the data directory",
    ),
    (
        "actors::each_actor_kind_appears_in_the_audit_trail",
        "expects the feed watchdog's `feed_health` command; cluster gateways run no watchdog (the feed role does, \
         `GatewayConfig::feed_watchdog` false)",
    ),
    (
        "feed::a_bet_stop_blocks_bets_and_a_silent_provider_is_suspended_until_its_snapshot",
        "a silent provider is suspended by the feed watchdog, which cluster gateways do not run (the feed role does)",
    ),
    (
        "reads::a_stopped_projector_makes_reads_answer_unavailable_after_the_bound",
        "stops the in-process projector and expects `/readyz` to say `stopped`; a cluster gateway watches the \
         store's checkpoint (`watch_store`) and sees a stopped projector process only as lag",
    ),
];

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub engine: EngineHandle,
    pub data_dir: PathBuf,
    /// The projector keeping the read models (a temporary SQLite store in the data directory)
    /// beside the engine, as `serve` runs it; `None` when the engine has no journal on disk.
    /// In cluster mode it follows the NATS journal.
    pub projector: Option<projector::ProjectorThread>,
    /// In cluster mode: the book's leader, the gateway's replica and the read models' watch.
    cluster: Option<ClusterParts>,
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
    if cluster_mode() {
        return spawn_cluster(path, dir, config, book_config, ReadSide::Projector).await;
    }
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
    if cluster_mode() {
        return spawn_cluster(path, dir, config, book::Config::default(), ReadSide::Given).await;
    }
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
    if cluster_mode() {
        return spawn_cluster(&path, Some(dir), config, book::Config::default(), ReadSide::Given).await;
    }
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
        cluster: None,
        _dir: dir,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

/// Whether `spawn_app*` build cluster stacks for this test: [`CLUSTER_MODE_ENV`] is `1` and
/// the test is not in [`EMBEDDED_ONLY`].
pub fn cluster_mode() -> bool {
    if std::env::var(CLUSTER_MODE_ENV).as_deref() != Ok("1") {
        return false;
    }
    // libtest names each test's thread after the test; `#[tokio::test]` runs the test's future
    // on that thread.
    let thread = std::thread::current();
    let name = thread.name().unwrap_or_default();
    !EMBEDDED_ONLY.iter().any(|(test, _)| name == *test)
}

/// Where a cluster-mode gateway reads its history from.
enum ReadSide {
    /// A projector of the harness's follows the NATS journal into the data directory's SQLite
    /// store; the gateway watches that store's checkpoint.
    Projector,
    /// Whatever the test's `GatewayConfig` says (its own models, or none).
    Given,
}

/// The cluster parts of a cluster-mode app, stopped in this order when the app stops or drops.
struct ClusterParts {
    replica: Arc<cluster::GatewayReplica>,
    node: Option<cluster::BookNode>,
    watch: Option<projector::StoreWatch>,
}

impl ClusterParts {
    /// Blocking: on a thread of its own, since both stop their own runtimes.
    fn stop(&mut self) {
        let replica = Arc::clone(&self.replica);
        let node = self.node.take();
        let watch = self.watch.take();
        std::thread::spawn(move || {
            drop(watch);
            replica.stop();
            if let Some(node) = node {
                if let Err(failure) = node.stop() {
                    panic!("the test's book node had failed: {failure}");
                }
            }
        })
        .join()
        .expect("the cluster stack stopped");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(mut parts) = self.cluster.take() {
            if let Some(projector) = self.projector.take() {
                std::thread::spawn(move || projector.stop()).join().expect("the projector stopped");
            }
            if !std::thread::panicking() {
                parts.stop();
            } else {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parts.stop()));
            }
        }
    }
}

/// The test binary's NATS cluster: 3 local servers, started by the first cluster-mode test.
fn shared_cluster() -> &'static journal_nats::cluster::LocalCluster {
    static CLUSTER: std::sync::OnceLock<journal_nats::cluster::LocalCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("sportsbook-test-cluster-").tempdir().expect("temporary directory");
        let cluster = journal_nats::cluster::LocalCluster::start(dir.path(), 3)
            .unwrap_or_else(|error| panic!("{CLUSTER_MODE_ENV}=1 needs nats-server: {error}"));
        // A static is never dropped: a watcher process kills the servers and removes their
        // files once this process is gone (after the last test, or killed).
        let pids: Vec<String> = (0..cluster.len()).filter_map(|i| cluster.pid(i)).map(|pid| pid.to_string()).collect();
        let dir = dir.keep();
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 0.2; done; kill -9 {} 2>/dev/null; sleep 0.5; rm -rf '{}'",
            std::process::id(),
            pids.join(" "),
            dir.display()
        );
        // Never waited for: it outlives this process by design (its parent becomes init).
        #[allow(clippy::zombie_processes)]
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the test cluster's watcher (sh)");
        cluster
    })
}

/// The stack of a cluster gateway (`sportsbook gateway`, `crates/sportsbook/src/gateway_role.rs`)
/// over a book leader of its own, on the shared NATS cluster.
async fn spawn_cluster(
    path: &Path,
    dir: Option<tempfile::TempDir>,
    mut config: GatewayConfig,
    book_config: book::Config,
    read_side: ReadSide,
) -> TestApp {
    use std::hash::{Hash, Hasher};
    config.admin_key = Some(ADMIN_KEY.to_string());
    let servers = tokio::task::spawn_blocking(|| shared_cluster().urls()).await.expect("join");
    // Names of the data directory's own: a restart on it finds its journal and lease again.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut hasher);
    let tag = format!("t{:016x}", hasher.finish());
    let stream = format!("sbt_{tag}");
    let subject = format!("sbt.{tag}.journal");
    let subject_prefix = format!("sbt.{tag}.book");
    let lease_bucket = format!("sbt_{tag}_lease");
    let registry_bucket = format!("sbt_{tag}_nodes");

    let mut node_options = cluster::BookNodeOptions::new(servers.clone(), path.join("cluster-book"));
    node_options.node_id = format!("book-{tag}");
    node_options.replicas = 3;
    node_options.journal_stream = stream.clone();
    node_options.journal_subject = subject.clone();
    node_options.subject_prefix = subject_prefix.clone();
    node_options.lease_bucket = lease_bucket.clone();
    node_options.registry_bucket = registry_bucket.clone();
    node_options.config = book_config;
    let node = tokio::task::spawn_blocking(move || cluster::BookNode::start(node_options))
        .await
        .expect("join")
        .expect("start the test's book node");

    // As `sportsbook gateway` sets it up (`gateway_role.rs`), but a reply wait the test chose
    // (e.g. a short one, to time reads out) stays.
    let chosen_reply_timeout = config.book_reply_timeout;
    let identity = config.for_replica(cluster::client::RETRY_FOR_DEFAULT);
    if chosen_reply_timeout != gateway::BOOK_REPLY_TIMEOUT {
        config.book_reply_timeout = chosen_reply_timeout;
    }
    let mut projector_thread = None;
    let mut watch = None;
    let mut models_published = None;
    if let ReadSide::Projector = read_side {
        let store_path = projector::sqlite_path(path);
        let mut journal = journal_nats::NatsJournalOptions::new(servers.clone());
        journal.stream = stream.clone();
        journal.subject = subject.clone();
        journal.replicas = 3;
        let mut options = projector::ProjectorOptions::new(Path::new(""));
        options.config = book_config;
        let opened_path = store_path.clone();
        let projector_published = projector::Published::new();
        projector_thread = Some(
            projector::spawn(
                move || {
                    let source = projector::NatsSource::open(journal.clone(), None)?;
                    let store = projector::SqliteStore::open(&opened_path)?;
                    projector::Projector::open_source(Box::new(store), Box::new(source), options.clone(), false)
                },
                Arc::clone(&projector_published),
            )
            .expect("start the projector"),
        );
        // The projector process runs before its gateways (as `dev-cluster` starts them): its
        // store exists and is migrated when the gateway first reads it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match projector_published.state() {
                projector::ProjectorState::Running => break,
                state if std::time::Instant::now() > deadline => {
                    panic!("the test's projector did not start following the NATS journal: {state:?}")
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        let store = projector::ReadStore::Sqlite(store_path);
        let published = projector::Published::new();
        watch = Some(projector::watch_store(store.clone(), Arc::clone(&published)).expect("watch the read models"));
        models_published = Some(Arc::clone(&published));
        config.read_models = Some(projector::ReadModels::new(store, published));
    }
    let metrics = Metrics::new();
    let streams = Streams::new(&config, &metrics);
    let mut replica_options = cluster::GatewayReplicaOptions::new(servers);
    replica_options.gateway_id = format!("gateway-{tag}");
    replica_options.data_dir = Some(path.join("cluster-gateway"));
    replica_options.replicas = 3;
    replica_options.journal_stream = stream;
    replica_options.journal_subject = subject;
    replica_options.subject_prefix = subject_prefix;
    replica_options.lease_bucket = lease_bucket;
    replica_options.registry_bucket = registry_bucket;
    replica_options.config = book_config;
    let hooks = vec![metrics.engine_hook(), streams.engine_hook(), identity.engine_hook()];
    let replica = tokio::task::spawn_blocking(move || cluster::GatewayReplica::start(replica_options, hooks))
        .await
        .expect("join")
        .expect("start the test's gateway replica");
    let replica = Arc::new(replica);
    // What `/readyz`, `/metrics` and `GET /v1/admin/cluster` say of the cluster, as
    // `sportsbook gateway` installs it.
    let status = Arc::new(cluster::ReplicaStatus::new(Arc::clone(&replica), models_published));
    // Traffic only once the gateway says it is ready (it has seen the leader's lease, its
    // replica is caught up), as a load balancer would route it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let reasons = gateway::ClusterStatus::unready_reasons(status.as_ref());
        if reasons.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the test's cluster gateway did not become ready: {reasons:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    config.cluster = Some(status);
    let engine = replica.engine().clone();
    let mut app = serve_engine(engine, path.to_path_buf(), dir, config, metrics, streams).await;
    app.projector = projector_thread;
    app.cluster = Some(ClusterParts { replica, node: Some(node), watch });
    app
}

impl TestApp {
    /// Whether this app is a cluster stack (a book node and a gateway replica over NATS).
    pub fn in_cluster(&self) -> bool {
        self.cluster.is_some()
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
        if let Some(mut parts) = self.cluster.take() {
            // The replica's shutdown is the engine's (a last snapshot of the replica's).
            tokio::task::spawn_blocking(move || parts.stop()).await.expect("join");
        } else {
            let engine = self.engine.clone();
            tokio::task::spawn_blocking(move || engine.shutdown()).await.expect("join");
        }
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
