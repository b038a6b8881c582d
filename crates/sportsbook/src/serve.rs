//! `sportsbook serve`: every role in one process. Opens the data directory (the engine
//! recovers the book), serves the gateway on a multi-threaded tokio runtime, and with `--demo`
//! seeds an empty directory and runs the live simulation next to it.
//!
//! Shutdown on Ctrl-C or SIGTERM goes outside in: the gateway stops accepting and drains its
//! requests (bounded by `SHUTDOWN_GRACE`), the simulation stops, the runtime winds down, and
//! last the engine stops after the commands already queued and writes a snapshot. Nothing the
//! engine acknowledged is lost at any point in between: every reply follows its fsync.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use book::{scopes, Ack, Command};
use domain::{Currency, Date, Money};
use engine::{Clock, EngineHandle, EngineOptions, SystemClock};
use gateway::{AppState, GatewayConfig, Metrics, RateLimit, Streams};

use crate::output::{print_text, LossyStderr};
use crate::secrets::{self, env_value};
use crate::simulation::{self, Simulation, SimulationHandle, SimulationOptions};

/// The file in the data directory where logged-out sessions are kept until their access
/// tokens expire.
pub const REVOKED_SESSIONS_FILE: &str = "revoked-sessions";
/// How long the gateway may take to finish its requests after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the runtime waits for its remaining tasks after the gateway stopped.
const RUNTIME_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The demo player's username, and what a fresh demo deposits for them (EUR 1,000.00).
pub const DEMO_USERNAME: &str = "demo";
const DEMO_DEPOSIT_MINOR: i64 = 100_000;
/// The demo player's credentials, kept in the data directory so a restart prints them again.
pub const DEMO_CREDENTIALS_FILE_NAME: &str = "demo-player";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub demo: bool,
    /// Seed of the demo simulation; random when `None`.
    pub seed: Option<u64>,
    pub log_format: LogFormat,
    /// Odds providers' sources to follow, primary first.
    pub feed_sources: Vec<crate::feeds::FeedSource>,
    /// How providers are watched: silence limit and what a stale feed does to its markets.
    pub feed_settings: gateway::ProviderSettings,
    /// The UOF provider's API (recovery, descriptions, fixtures) for `uof+` sources.
    pub uof: crate::feeds::UofOptions,
    /// Rate limits per client address and per credential; `None` turns one off (benchmarks).
    pub rate_limit_per_address: Option<RateLimit>,
    pub rate_limit_per_credential: Option<RateLimit>,
    /// Connections and `/metrics` (issue 11, items 3 and 14).
    pub connections: ConnectionOptions,
    /// Age of the exchange-rate table past which `/readyz` warns.
    pub fx_rates_age_max: std::time::Duration,
    /// The book's resettlement window (`--resettlement-window`), in milliseconds.
    pub resettlement_window_ms: u64,
    /// The book's idempotency window (`--idempotency-window`), in milliseconds.
    pub idempotency_window_ms: u64,
    /// `--monitoring-rules`: a JSON file of AML and markers-of-harm rules.
    pub monitoring_rules: Option<std::path::PathBuf>,
    /// Role limits of manual adjustments (`--adjustment-limit ROLE=LIMIT`) over the defaults.
    pub adjustment_limits: Vec<String>,
    /// The payment provider (`--payments`, `--withdrawal-approval-above`, ...).
    pub payments: PaymentOptions,
    /// Reverse proxies whose forwarding headers name the client (`--trusted-proxy`).
    pub trusted_proxies: Vec<gateway::IpNet>,
    /// Password hashes computed at once (`--password-hash-workers`).
    pub password_hash_workers: usize,
    /// The read models' store for the in-process projector (its own thread); `None`: off.
    pub projector: Option<crate::projection::StoreArg>,
    /// The PostgreSQL schema of the read models.
    pub projector_schema: String,
    /// `--journal-retention`.
    pub journal_retention: engine::JournalRetention,
    /// `--journal-archive`; `None`: DATA_DIR/archive.
    pub journal_archive: Option<PathBuf>,
    /// `--snapshots-keep`.
    pub snapshots_keep: usize,
    /// `--snapshot-every`: `EngineOptions::snapshot_every_commands`.
    pub snapshot_every_commands: u64,
    /// `--edge-state` / `SPORTSBOOK_EDGE_STATE` with `--edge-state-prefix`: where the gateway
    /// keeps rate limits, login throttles, refresh tokens and revoked sessions.
    pub edge_state: gateway::EdgeStateConfig,
    /// `--edge-state-timeout-ms`: the bound of one call to a shared edge state.
    pub edge_state_timeout: Duration,
    /// `--exclusion-register` with `--exclusion-register-file`: the national self-exclusion
    /// register asked at registration and login (`gateway::register`).
    pub exclusion_register: gateway::register::ExclusionRegisterConfig,
}

/// The environment variable holding the API key of a national self-exclusion register given
/// by URL (never a flag: command lines are visible to every user of the host).
pub const EXCLUSION_REGISTER_KEY_ENV: &str = "SPORTSBOOK_EXCLUSION_REGISTER_KEY";

/// Says at start which national self-exclusion register registrations and logins ask
/// (`serve` and `sportsbook gateway`).
pub fn log_exclusion_register(register: &gateway::register::ExclusionRegisterConfig) {
    match register {
        gateway::register::ExclusionRegisterConfig::Off => {
            tracing::warn!("no national self-exclusion register is asked (--exclusion-register none)")
        }
        gateway::register::ExclusionRegisterConfig::Sandbox { file } => {
            tracing::info!(file = ?file, "the exclusion register sandbox answers registrations and logins")
        }
        gateway::register::ExclusionRegisterConfig::Http { url, .. } => {
            tracing::info!(%url, "registrations and logins ask the national self-exclusion register")
        }
    }
}

/// The register `serve` asks: `sandbox` (the default; its list in `file`, empty without
/// one), `none`, or an `http(s)://` URL of a GAMSTOP-like register with its key from
/// `SPORTSBOOK_EXCLUSION_REGISTER_KEY`.
pub fn exclusion_register_config(
    flag: &str,
    file: Option<PathBuf>,
    key: Option<String>,
) -> anyhow::Result<gateway::register::ExclusionRegisterConfig> {
    use gateway::register::ExclusionRegisterConfig as Register;
    if file.is_some() && flag != "sandbox" {
        bail!("--exclusion-register-file lists the sandbox's excluded persons: it needs --exclusion-register sandbox");
    }
    match flag {
        "none" => Ok(Register::Off),
        "sandbox" => {
            if let Some(path) = &file {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| anyhow::anyhow!("--exclusion-register-file {}: {error}", path.display()))?;
                gateway::register::parse_list(&text)
                    .map_err(|error| anyhow::anyhow!("--exclusion-register-file {}: {error}", path.display()))?;
            }
            Ok(Register::Sandbox { file })
        }
        url if url.starts_with("http://") || url.starts_with("https://") => {
            let Some(key) = key.filter(|key| !key.is_empty()) else {
                bail!("--exclusion-register {url} needs {EXCLUSION_REGISTER_KEY_ENV}; refusing to start");
            };
            Ok(Register::Http { url: url.to_string(), key })
        }
        other => bail!("--exclusion-register is `sandbox`, `none` or an http(s):// URL, not {other:?}"),
    }
}

/// The environment variable naming the edge state when `--edge-state` is not given.
pub const EDGE_STATE_ENV: &str = "SPORTSBOOK_EDGE_STATE";

/// The edge state `serve` uses: `--edge-state`, else `SPORTSBOOK_EDGE_STATE`, else in
/// process. `in-process`, or `redis://HOST[:PORT][/DB]` with every key under `prefix`.
pub fn edge_state_config(flag: Option<String>, prefix: &str) -> anyhow::Result<gateway::EdgeStateConfig> {
    let Some(value) = flag.or_else(|| env_value(EDGE_STATE_ENV)) else {
        return Ok(gateway::EdgeStateConfig::InProcess);
    };
    if value == "in-process" {
        return Ok(gateway::EdgeStateConfig::InProcess);
    }
    gateway::check_redis_url(&value)
        .map_err(|error| anyhow::anyhow!("--edge-state is `in-process` or redis://HOST[:PORT][/DB]: {error}"))?;
    gateway::check_key_prefix(prefix).map_err(|error| anyhow::anyhow!("--edge-state-prefix: {error}"))?;
    Ok(gateway::EdgeStateConfig::Redis { url: value, prefix: prefix.to_string() })
}

/// How `serve` bounds its HTTP connections and where it serves `/metrics`.
#[derive(Clone, Debug)]
pub struct ConnectionOptions {
    /// `--connections-max`: HTTP connections open at once.
    pub connections_max: usize,
    /// `--header-read-timeout`: time a client has to send a request head.
    pub header_read_timeout: Duration,
    /// `--keep-alive-idle-timeout`: time a kept-alive connection may wait for a request.
    pub keep_alive_idle_timeout: Duration,
    /// `--metrics-listen`: serve `/metrics` there, not on the main listener.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ConnectionOptions {
    fn default() -> ConnectionOptions {
        ConnectionOptions {
            connections_max: gateway::CONNECTIONS_MAX,
            header_read_timeout: gateway::HEADER_READ_TIMEOUT,
            keep_alive_idle_timeout: gateway::KEEP_ALIVE_IDLE_TIMEOUT,
            metrics_listen: None,
        }
    }
}

/// The bearer token `/metrics` requires, from the environment (never a flag: command lines
/// are visible to every user of the host). Unset: `/metrics` answers loopback clients only on
/// the main listener, anyone on `--metrics-listen`.
pub const METRICS_KEY_ENV: &str = "SPORTSBOOK_METRICS_KEY";
/// Files the process needs besides HTTP connections (journal, snapshots, the runtime, a few
/// streams): with fewer left under `ulimit -n` than `--connections-max`, a warning says so.
pub const FILES_RESERVED: u64 = 256;
/// Below this length a metrics key is accepted but logged as weak.
pub const METRICS_KEY_BYTES_RECOMMENDED: usize = 32;

/// What the demo prints at start-up.
struct DemoBanner {
    /// (username, password) when known: created now, or kept from the first run.
    player: Option<(String, String)>,
    /// The operator key when it can be shown: `SPORTSBOOK_ADMIN_KEY`, or generated now.
    operator_key: Option<String>,
}

pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log line that cannot be written is dropped and counted, never a panic (`output.rs`).
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| LossyStderr).log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

pub fn run(options: ServeOptions) -> anyhow::Result<()> {
    init_logging(options.log_format);
    // Refuse a bad bootstrap key before touching anything.
    let admin_key = secrets::admin_key(env_value(secrets::ADMIN_KEY_ENV))?;
    let metrics_key = env_value(METRICS_KEY_ENV);
    if let Some(key) = &metrics_key {
        if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
            bail!("{METRICS_KEY_ENV} must be printable ASCII without spaces; refusing to start");
        }
        if key.len() < METRICS_KEY_BYTES_RECOMMENDED {
            tracing::warn!("{METRICS_KEY_ENV} is short: use a long random key (for example `openssl rand -hex 32`)");
        }
    }
    let dir = &options.data_dir;
    crate::secure_data_dir(dir)?;
    let (jwt_secret, secret_source) = secrets::jwt_secret(
        env_value(secrets::JWT_SECRET_ENV),
        env_value(secrets::JWT_SECRET_FILE_ENV).map(PathBuf::from),
        dir,
    )?;
    tracing::info!(source = %secret_source, "JWT secret loaded");
    if let Some(key) = &admin_key {
        if key.len() < secrets::ADMIN_KEY_BYTES_RECOMMENDED {
            tracing::warn!("{} is short: fine for a demo, use a long random key in production", secrets::ADMIN_KEY_ENV);
        }
    }

    // The gateway's metrics follow every durable batch through the engine's commit hook.
    let mut config = GatewayConfig::new(jwt_secret);
    config.admin_key = admin_key;
    config.feed_defaults = options.feed_settings;
    config.rate_limit_per_address = options.rate_limit_per_address;
    config.rate_limit_per_principal = options.rate_limit_per_credential;
    config.connections_max = options.connections.connections_max;
    if let Some(files) = open_files_limit() {
        if options.connections.connections_max as u64 + FILES_RESERVED > files {
            tracing::warn!(
                files,
                connections_max = options.connections.connections_max,
                "the open files limit (ulimit -n) is below --connections-max plus {FILES_RESERVED}: past it, accepting \
                 fails (EMFILE) and idle connections are closed to make room; raise the limit or lower the cap"
            );
        }
    }
    config.header_read_timeout = options.connections.header_read_timeout;
    config.keep_alive_idle_timeout = options.connections.keep_alive_idle_timeout;
    config.metrics_key = metrics_key;
    config.metrics_listener_separate = options.connections.metrics_listen.is_some();
    config.fx_rates_age_max = options.fx_rates_age_max;
    config.trusted_proxies = options.trusted_proxies.clone();
    config.password_hash_workers = options.password_hash_workers;
    config.revoked_sessions_path = Some(dir.join(REVOKED_SESSIONS_FILE));
    match &options.edge_state {
        gateway::EdgeStateConfig::InProcess => tracing::info!("edge state in process"),
        gateway::EdgeStateConfig::Redis { url, prefix } => {
            // The URL may carry a password: log where, not how.
            let (_, host) = url.rsplit_once('@').unwrap_or(("", url.trim_start_matches("redis://")));
            tracing::info!(redis = %host, %prefix, "edge state in Redis, shared with every gateway using it");
        }
    }
    config.edge_state = options.edge_state.clone();
    config.exclusion_register = options.exclusion_register.clone();
    log_exclusion_register(&options.exclusion_register);
    config.edge_state_timeout = options.edge_state_timeout;
    if options.rate_limit_per_address.is_none() || options.rate_limit_per_credential.is_none() {
        tracing::warn!(
            per_address = ?options.rate_limit_per_address,
            per_credential = ?options.rate_limit_per_credential,
            "a rate limit is off: for benchmarks, not for production"
        );
    }
    let metrics = Metrics::new();
    // The stream follows them too: its hook hands every batch's updates to the dispatcher.
    let streams = Streams::new(&config, &metrics);
    let archive_dir = engine::archive_dir(dir, options.journal_archive.as_deref());
    let engine_options = EngineOptions {
        on_commit: vec![metrics.engine_hook(), streams.engine_hook()],
        journal_retention: options.journal_retention,
        journal_archive: Some(archive_dir.clone()),
        snapshots_keep: options.snapshots_keep,
        snapshot_every_commands: options.snapshot_every_commands,
        // The in-process projector's follower book is at the journal's position anyway: it
        // writes the periodic snapshots, and the engine keeps no snapshot follower (a third
        // copy of the book). Without a projector, the engine's follower writes them.
        periodic_snapshots: engine::PeriodicSnapshots::by_projector_if(options.projector.is_some()),
        ..EngineOptions::default()
    };
    let (engine, report) = crate::open_engine_with(dir, engine_options)?;
    tracing::info!(
        data_dir = %dir.display(),
        snapshot_position = ?report.snapshot_position,
        replayed_batches = report.replayed_batches,
        replayed_commands = report.replayed_commands,
        truncated_bytes = report.truncated_bytes,
        skipped_snapshots = report.skipped_snapshots,
        "book recovered"
    );
    let fresh = report.snapshot_position.is_none() && report.replayed_commands == 0;
    crate::set_resettlement_window(&engine, options.resettlement_window_ms)?;
    crate::set_idempotency_window(&engine, options.idempotency_window_ms)?;
    if let Some(path) = &options.monitoring_rules {
        crate::set_monitoring_rules(&engine, path)?;
    }
    crate::set_adjustment_limits(&engine, &options.adjustment_limits)?;
    configure_payments(&engine, &mut config, &options.payments)?;
    // The history routes read the models the projector keeps; without it they answer 503.
    let mut config = config;
    let projector = match &options.projector {
        Some(store) => {
            let published = projector::Published::new();
            let thread = crate::projection::spawn(
                dir,
                store.clone(),
                options.projector_schema.clone(),
                published.clone(),
                &archive_dir,
                engine.snapshot_writer(),
            )?;
            // Segments the projector has not committed stay live (it could read them archived,
            // but more slowly).
            engine.hold_retention(published.retention_hold());
            let read_store = crate::projection::read_store(dir, store, &options.projector_schema);
            config.read_models = Some(projector::ReadModels::new(read_store, published));
            Some(thread)
        }
        None => {
            config.projector_off_warning = true;
            None
        }
    };
    let served = serve_engine(&engine, &options, fresh, config, metrics, streams);
    if let Some(projector) = projector {
        projector.stop();
    }
    // Last: the engine decides what is queued, then writes a snapshot.
    engine.shutdown();
    if engine.stats().stopped.load(std::sync::atomic::Ordering::SeqCst) {
        tracing::error!("engine stopped after a journal failure; recovery will replay the journal");
    } else {
        tracing::info!("engine stopped; snapshot written");
    }
    served
}

/// Everything between opening the engine and shutting it down: the demo, the runtime, the
/// gateway until a signal, then the simulation and the runtime stopped in that order.
fn serve_engine(
    engine: &EngineHandle,
    options: &ServeOptions,
    fresh: bool,
    config: GatewayConfig,
    metrics: Metrics,
    streams: Streams,
) -> anyhow::Result<()> {
    let admin_key = config.admin_key.as_deref();
    let (banner, simulation) = if options.demo {
        let (banner, simulation) = prepare_demo(engine, &options.data_dir, fresh, admin_key, options.seed)?;
        (Some(banner), simulation)
    } else {
        (None, None)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sportsbook-gateway")
        .build()
        .context("starting the tokio runtime")?;
    let served =
        runtime.block_on(serve_until_signal(engine.clone(), config, metrics, streams, options, banner, simulation));
    let (served, simulation) = match served {
        Ok((outcome, simulation)) => (outcome, simulation),
        Err(error) => (Err(error), None),
    };
    if let Some(simulation) = simulation {
        let stats = simulation.stop();
        tracing::info!(?stats, "simulation stopped");
    }
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    served
}

type Served = (anyhow::Result<()>, Option<SimulationHandle>);

async fn serve_until_signal(
    engine: EngineHandle,
    config: GatewayConfig,
    metrics: Metrics,
    streams: Streams,
    options: &ServeOptions,
    banner: Option<DemoBanner>,
    simulation: Option<Simulation>,
) -> anyhow::Result<Served> {
    let listen = options.listen;
    // Before anything says "listening": a SIGTERM sent as soon as a supervisor (or a test) sees
    // that line must shut down cleanly, not kill the process with the default action.
    let mut signals = ShutdownSignals::install();
    let state = AppState::new(engine.clone(), config, metrics, streams)
        .await
        .map_err(|error| anyhow::anyhow!("starting the gateway: {}: {}", error.code, error.message))?;
    // The feed role: the sources given, and in the demo (on a book it seeded) a simulated
    // provider in process.
    let mut feed_tasks =
        crate::feeds::follow(state.feed(), &options.feed_sources, &options.data_dir, &options.uof).await?;
    if simulation.is_some() {
        let seed = options.seed.unwrap_or_else(rand::random);
        feed_tasks.push(crate::feeds::spawn_demo_feed(state.feed(), &engine, seed).await?);
    }
    let metrics_server = match options.connections.metrics_listen {
        Some(metrics_listen) => {
            let listener = tokio::net::TcpListener::bind(metrics_listen)
                .await
                .with_context(|| format!("listening for /metrics on {metrics_listen}"))?;
            let address = listener.local_addr().context("reading the bound metrics address")?;
            tracing::info!(%address, "metrics listening");
            print_text(&format!("metrics on http://{address}/metrics\n"));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(gateway::serve_metrics(listener, state.clone(), async move {
                let _ = stopped.await;
            }));
            Some((stop, server))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%address, "gateway listening");
    print_text(&format!("listening on http://{address}\n"));
    if let Some(banner) = &banner {
        print_banner(address, banner);
    }
    let simulation = match simulation {
        Some(simulation) => {
            Some(simulation::spawn(simulation, engine, Box::new(SystemClock)).context("starting the simulation")?)
        }
        None => None,
    };

    let (stop_gateway, gateway_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(gateway::serve(listener, state, async move {
        let _ = gateway_stopped.await;
    }));
    let outcome = tokio::select! {
        signal = signals.recv() => {
            tracing::info!(signal, "shutting down: the gateway stops accepting and drains");
            let _ = stop_gateway.send(());
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(error))) => Err(error).context("serving HTTP"),
                Ok(Err(join)) => Err(anyhow::anyhow!("the gateway task failed: {join}")),
                Err(_) => {
                    tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still open after the grace period; closing them");
                    server.abort();
                    Ok(())
                }
            }
        }
        finished = &mut server => match finished {
            Ok(Ok(())) => Err(anyhow::anyhow!("the gateway stopped by itself")),
            Ok(Err(error)) => Err(error).context("serving HTTP"),
            Err(join) => Err(anyhow::anyhow!("the gateway task failed: {join}")),
        },
    };
    for task in feed_tasks {
        task.abort();
    }
    if let Some((stop, mut server)) = metrics_server {
        let _ = stop.send(());
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
            server.abort();
        }
    }
    Ok((outcome, simulation))
}

/// The process's soft limit of open files, where the platform tells (Linux).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM, naming which.
/// SIGINT and SIGTERM, registered when installed (tokio's `ctrl_c()` and `signal()` futures
/// register only once polled, which left the default action, death, until then).
pub(crate) struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    pub(crate) fn install() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            ShutdownSignals {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// The name of the first signal received.
    pub(crate) async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(&mut self.interrupt) => "SIGINT",
                () = next(&mut self.terminate) => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// A demo player's username and password.
pub(crate) type Credentials = (String, String);

/// Seeds an empty data directory for the demo (catalog, punters, the demo player, an operator
/// key), or takes over the simulated catalog of an earlier run of the demo.
fn prepare_demo(
    engine: &EngineHandle,
    dir: &Path,
    fresh: bool,
    admin_key: Option<&str>,
    seed: Option<u64>,
) -> anyhow::Result<(DemoBanner, Option<Simulation>)> {
    let (player, simulation) = demo_book(engine, dir, fresh, seed)?;
    let operator_key = match admin_key {
        Some(key) => Some(key.to_string()),
        // A key made now can be shown; one made at the first start cannot (only its hash is kept).
        None if fresh => Some(create_operator_key(engine)?),
        None => None,
    };
    Ok((DemoBanner { player, operator_key }, simulation))
}

/// The demo's book: on a `fresh` book, the demo player (registered, funded, its credentials
/// written to `dir`) and the simulation's seeded catalog; on a book the demo seeded before
/// (its credentials are in `dir`), the simulation taking over that catalog; on any other book,
/// nothing (`--demo` must not trade an operator's real catalog). Also the feed role's
/// (`sportsbook feed --demo`), over its replica engine.
pub(crate) fn demo_book(
    engine: &EngineHandle,
    dir: &Path,
    fresh: bool,
    seed: Option<u64>,
) -> anyhow::Result<(Option<Credentials>, Option<Simulation>)> {
    let seed = seed.unwrap_or_else(rand::random);
    let mut simulation = Simulation::new(SimulationOptions { seed, ..SimulationOptions::default() });
    let now = SystemClock.now_ms();
    let credentials_path = dir.join(DEMO_CREDENTIALS_FILE_NAME);
    if !fresh {
        let Some(player) = read_credentials(&credentials_path) else {
            tracing::warn!(
                data_dir = %dir.display(),
                "--demo: this data directory holds a book the demo did not seed; serving it without the simulation"
            );
            return Ok((None, None));
        };
        simulation.adopt(engine, now).context("taking over the demo catalog")?;
        tracing::info!(seed, fixtures = simulation.fixtures_active(), "demo resumed on an existing book");
        return Ok((Some(player), Some(simulation)));
    }
    tracing::info!(seed, "seeding the demo into an empty book");
    let password = format!("demo-{}", &gateway::random_token()[..16]);
    let player = register_demo_player(engine, &password)?;
    write_credentials(&credentials_path, DEMO_USERNAME, &password)?;
    tracing::info!(account = %player, username = DEMO_USERNAME, "demo player registered and funded");
    simulation.seed(engine, now).context("seeding the demo catalog")?;
    Ok((Some((DEMO_USERNAME.to_string(), password)), Some(simulation)))
}

fn accepted(engine: &EngineHandle, command: Command) -> anyhow::Result<Ack> {
    engine
        .submit((command, book::Origin::system("demo")))
        .context("the engine failed")?
        .map_err(|rejection| anyhow::anyhow!("the book refused: {rejection}"))
}

fn register_demo_player(engine: &EngineHandle, password: &str) -> anyhow::Result<book::AccountId> {
    let password_hash = gateway::hash_password(password)
        .map_err(|error| anyhow::anyhow!("hashing the demo password: {}", error.message))?;
    let date_of_birth = Date::new(1990, 5, 17).map_err(|error| anyhow::anyhow!("{error}"))?;
    let account = match accepted(
        engine,
        Command::RegisterPlayer {
            username: DEMO_USERNAME.to_string(),
            password_hash,
            date_of_birth,
            country: "GB".to_string(),
            currency: Currency::EUR,
        },
    )
    .context("registering the demo player")?
    {
        Ack::AccountOpened(account) => account,
        other => bail!("unexpected reply {other:?}"),
    };
    accepted(
        engine,
        Command::Deposit {
            account,
            amount: Money::from_minor(DEMO_DEPOSIT_MINOR),
            payment_ref: "demo-welcome".to_string(),
            idempotency: None,
        },
    )
    .context("funding the demo player")?;
    Ok(account)
}

/// A fresh operator key with every scope; the book keeps only its hash.
fn create_operator_key(engine: &EngineHandle) -> anyhow::Result<String> {
    let key = format!("{}{}", gateway::API_KEY_PREFIX, gateway::random_token());
    accepted(
        engine,
        Command::CreateApiKey {
            name: "demo operator".to_string(),
            key_hash: gateway::sha256_hex(key.as_bytes()),
            scopes: scopes::ALL,
        },
    )
    .context("creating the demo operator key")?;
    Ok(key)
}

fn write_credentials(path: &Path, username: &str, password: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "username={username}\npassword={password}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn read_credentials(path: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
            .map(str::to_string)
    };
    Some((field("username")?, field("password")?))
}

fn print_banner(address: SocketAddr, banner: &DemoBanner) {
    use std::fmt::Write;
    let url = format!("http://{address}");
    // Writing into a String cannot fail.
    let mut text = String::from("\n");
    match &banner.player {
        Some((username, password)) => {
            let _ = writeln!(text, "demo player: username {username} password {password}");
        }
        None => text.push_str("demo player: not known (the data directory was not seeded by --demo)\n"),
    }
    match &banner.operator_key {
        Some(key) => {
            let _ = writeln!(text, "operator key: {key}");
        }
        None => {
            let _ = writeln!(
                text,
                "operator key: shown only at the first start; set {} or run `sportsbook admin create-key`",
                secrets::ADMIN_KEY_ENV
            );
        }
    }
    let _ = writeln!(text, "\ntry:\n  curl {url}/healthz\n  curl {url}/v1/events");
    if let Some((username, password)) = &banner.player {
        let _ = writeln!(
            text,
            "  curl -X POST {url}/v1/auth/login -H 'content-type: application/json' -d '{{\"username\":\"{username}\",\"password\":\"{password}\"}}'"
        );
    }
    if let Some(key) = &banner.operator_key {
        let _ = writeln!(text, "  curl -H 'authorization: Bearer {key}' {url}/v1/admin/exposure");
    }
    text.push('\n');
    print_text(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusion_register_flags() {
        use gateway::register::ExclusionRegisterConfig as Register;
        assert!(matches!(exclusion_register_config("sandbox", None, None), Ok(Register::Sandbox { file: None })));
        assert!(matches!(exclusion_register_config("none", None, None), Ok(Register::Off)));
        assert!(matches!(
            exclusion_register_config("https://register.example/check", None, Some("k".into())),
            Ok(Register::Http { .. })
        ));
        assert!(exclusion_register_config("https://register.example/check", None, None).is_err());
        assert!(exclusion_register_config("gamstop", None, None).is_err());
        assert!(exclusion_register_config("none", Some("list.json".into()), None).is_err());
        let dir = tempfile::tempdir().expect("temporary directory");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{}").expect("write");
        assert!(exclusion_register_config("sandbox", Some(bad), None).is_err());
    }

    #[test]
    fn edge_state_flags() {
        let prefix = gateway::EDGE_KEY_PREFIX_DEFAULT;
        assert_eq!(
            edge_state_config(Some("in-process".into()), prefix).expect("in process"),
            gateway::EdgeStateConfig::InProcess
        );
        assert_eq!(
            edge_state_config(Some("redis://127.0.0.1:6379/2".into()), "book-a:").expect("redis"),
            gateway::EdgeStateConfig::Redis { url: "redis://127.0.0.1:6379/2".into(), prefix: "book-a:".into() }
        );
        for refused in ["http://127.0.0.1:6379", "redis", "rediss://127.0.0.1", "memory"] {
            assert!(edge_state_config(Some(refused.into()), prefix).is_err(), "{refused}");
        }
        assert!(edge_state_config(Some("redis://127.0.0.1".into()), "has space").is_err());
        assert!(edge_state_config(Some("redis://127.0.0.1".into()), &"p".repeat(65)).is_err());
    }
}

/// The payment provider of `serve` (`--payments` and the flags after it).
#[derive(Clone, Debug, Default)]
pub struct PaymentOptions {
    /// Deposits wait for the callback sandbox's signed callback; `false`: they complete at once.
    pub callbacks: bool,
    pub callback_window: std::time::Duration,
    pub sandbox_delay: std::time::Duration,
    pub sandbox_payouts: gateway::SandboxPayouts,
    /// `--withdrawal-approval-above`, an amount of the book's base currency.
    pub withdrawal_approval_above: Option<String>,
    /// `--kyc-jurisdictions`: a JSON file of KYC jurisdictions (`gateway::KycSettings`).
    /// Without it the sandbox verifies every player at registration.
    pub kyc_jurisdictions: Option<std::path::PathBuf>,
}

/// The environment variable holding the secret the KYC provider signs webhooks with.
pub const KYC_SECRET_ENV: &str = "SPORTSBOOK_KYC_SECRET";

/// The environment variable holding the secret the payment provider signs callbacks with.
pub const PAYMENT_SECRET_ENV: &str = "SPORTSBOOK_PAYMENT_SECRET";

/// Sets the gateway's payment provider from the options: the instant sandbox by default, the
/// callback sandbox with `--payments callbacks` (its secret from `SPORTSBOOK_PAYMENT_SECRET`).
fn configure_payments(
    engine: &engine::EngineHandle,
    config: &mut GatewayConfig,
    options: &PaymentOptions,
) -> anyhow::Result<()> {
    if let Some(text) = &options.withdrawal_approval_above {
        let base = engine.read(|book| book.fx().base)?;
        let amount = base
            .parse_amount(text)
            .ok()
            .filter(|amount| amount.minor() >= 0)
            .ok_or_else(|| anyhow::anyhow!("--withdrawal-approval-above {text:?} is not an amount of {base}"))?;
        config.withdrawal_approval_above = Some(amount);
        tracing::info!(%base, threshold = %base.format(amount), "withdrawals above the threshold wait for staff approval");
    }
    if let Some(path) = &options.kyc_jurisdictions {
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("--kyc-jurisdictions {}: {error}", path.display()))?;
        config.kyc = gateway::KycSettings::from_json(&text)
            .map_err(|error| anyhow::anyhow!("--kyc-jurisdictions {}: {error}", path.display()))?;
        tracing::info!(jurisdictions = config.kyc.jurisdictions.len(), "KYC rules per jurisdiction");
    }
    if let Ok(secret) = std::env::var(KYC_SECRET_ENV) {
        if secret.len() < gateway::CALLBACK_SECRET_BYTES_MIN {
            anyhow::bail!("{KYC_SECRET_ENV} must be at least {} bytes", gateway::CALLBACK_SECRET_BYTES_MIN);
        }
        config.kyc.callbacks =
            Some(gateway::PaymentCallbacks { secret: secret.into_bytes(), window: options.callback_window });
    }
    if !options.callbacks {
        return Ok(());
    }
    let secret = std::env::var(PAYMENT_SECRET_ENV).unwrap_or_default().into_bytes();
    if secret.len() < gateway::CALLBACK_SECRET_BYTES_MIN {
        anyhow::bail!(
            "--payments callbacks needs {PAYMENT_SECRET_ENV} of at least {} bytes; refusing to start",
            gateway::CALLBACK_SECRET_BYTES_MIN
        );
    }
    config.payment_provider = std::sync::Arc::new(gateway::CallbackSandbox::new(
        secret.clone(),
        options.sandbox_delay,
        options.sandbox_payouts,
    ));
    config.payment_callbacks = Some(gateway::PaymentCallbacks { secret, window: options.callback_window });
    tracing::info!("deposits wait for the payment provider's signed callback (the callback sandbox)");
    Ok(())
}
