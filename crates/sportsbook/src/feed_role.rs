//! `sportsbook feed`: the feed role of a cluster (issue 15). It runs what `serve` runs in
//! process for the odds providers: the sources given with `--feed-source` (UOF over AMQP, the
//! native JSON feed over WebSocket), the simulated provider when none is given (as the demo's),
//! and the feed hub's staleness watchdog (failovers between a provider's sources, its markets
//! suspended or delayed while it is silent). Their commands reach the book's leader the way a
//! gateway's do: the process follows the journal with a local read replica and forwards
//! commands to the leader (`cluster::GatewayReplica`, `EngineHandle::start_replica`), so the
//! adapters' code is the same as on `serve` and there is no second protocol.
//!
//! **One active feed per cluster.** Every adapter submits what its provider says, so two active
//! feed processes would submit everything twice (and two watchdogs every stale transition). The
//! feed role takes a lease in the cluster's key-value store (`cluster::lease`, the book's
//! mechanism, in its own bucket [`FEED_LEASE_BUCKET`]): the holder feeds, any other `sportsbook
//! feed` is a hot standby (its replica warm, its NATS connection open) that takes the lease
//! when it lapses, i.e. at most one lease after the active one died, and starts its adapters
//! then. The holder renews every third of the lease and stops feeding when it could not renew
//! within [`cluster::lease::SELF_FENCE_SHARE`] sixths of it (or learns it lost it). Unlike the
//! book's, this lease is not backed by journal fencing: a feed process paused past its lease
//! (SIGSTOP) may submit what it had in hand before it notices; the book de-duplicates feed
//! messages by provider and sequence and ignores odds older than those applied, so such a late
//! message is at worst a duplicate or stale.
//!
//! `--listen` serves `/healthz`, `/readyz` (the replica's reasons as on a gateway, and while
//! active `feed_stale` with the stale providers, as `serve` has it) and `/metrics` (the feed's
//! metrics, the replica's, and `sportsbook_feed_active`). It prints `{"role": "feed", "pid",
//! "node", "url"}` on standard output once it listens and follows, and stops cleanly on Ctrl-C
//! or SIGTERM (an active feed releases the lease, so a standby takes over at once).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cluster::lease::{Grant, Lease, RenewError};
use cluster::{GatewayReplica, GatewayReplicaOptions};
use engine::{EngineHandle, SystemClock};
use feed::FeedHub;
use gateway::Metrics;

use crate::feeds::{FeedSource, UofOptions};
use crate::serve::{init_logging, LogFormat, ShutdownSignals};
use crate::simulation::{self, SimulationHandle};

/// The key-value bucket of the feed role's lease (the book's is `sportsbook_book_lease`).
pub const FEED_LEASE_BUCKET: &str = "sportsbook_feed_lease";
/// The feed lease unless `--lease` says otherwise: a dead active feed is replaced after at
/// most this long (plus the standby's catching up), the book's default.
pub const FEED_LEASE_DEFAULT: Duration = cluster::LEASE_DEFAULT;
/// How long a new holder waits at most for its replica to reach the journal's end before it
/// starts its adapters (the simulated provider continues after the last sequence the book
/// applied, which it reads from the replica).
pub const CATCH_UP_WAIT_MAX: Duration = Duration::from_secs(10);
/// How long the HTTP endpoints may take to finish at a stop.
const HTTP_STOP_GRACE: Duration = Duration::from_secs(5);

pub struct FeedRoleOptions {
    pub nats: Vec<String>,
    pub listen: SocketAddr,
    /// The feed role's own state: UOF recovery points and names (`uof/`), the demo player's
    /// credentials, its replica's snapshots (`replica/`).
    pub data_dir: PathBuf,
    /// Its id in the registry; default `feed-PID-RANDOM`.
    pub node_id: Option<String>,
    /// Replicas of the lease and registry buckets, should this process create them.
    pub replicas: usize,
    pub lease: Duration,
    /// Providers' sources, primary first; none: the simulated provider.
    pub feed_sources: Vec<FeedSource>,
    pub feed_settings: gateway::ProviderSettings,
    pub uof: UofOptions,
    /// Seeds the demo (player, catalog) into an empty book and runs the demo's simulation while
    /// active, as `serve --demo` does.
    pub demo: bool,
    pub seed: Option<u64>,
    pub log_format: LogFormat,
}

/// What the HTTP endpoints show.
struct Status {
    node: String,
    replica: Arc<GatewayReplica>,
    metrics: Metrics,
    active: AtomicBool,
    /// The active feed's hub (its providers' freshness), while active.
    hub: Mutex<Option<FeedHub>>,
    takeovers: AtomicU64,
    step_downs: AtomicU64,
}

/// What an active feed runs: stopped on a step-down or at the end.
struct Active {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    simulation: Option<SimulationHandle>,
}

impl Active {
    fn stop(self, status: &Status) {
        for task in self.tasks {
            task.abort();
        }
        if let Some(simulation) = self.simulation {
            let stats = simulation.stop();
            tracing::info!(?stats, "demo simulation stopped");
        }
        status.active.store(false, Ordering::SeqCst);
        if let Ok(mut hub) = status.hub.lock() {
            *hub = None;
        }
        status.replica.set_role(cluster::ROLE_FEED_STANDBY);
    }
}

pub fn run(options: FeedRoleOptions) -> anyhow::Result<()> {
    init_logging(options.log_format);
    crate::secure_data_dir(&options.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("feed-role")
        .build()
        .context("starting the runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(options.listen))
        .with_context(|| format!("listening on {}", options.listen))?;
    let url = format!("http://{}", listener.local_addr().context("the listen address")?);

    let metrics = Metrics::new();
    let mut replica_options = GatewayReplicaOptions::new(options.nats.clone());
    replica_options.gateway_id =
        options.node_id.clone().unwrap_or_else(|| format!("feed-{}-{:04x}", std::process::id(), rand::random::<u16>()));
    replica_options.role = cluster::ROLE_FEED_STANDBY.to_owned();
    replica_options.url = Some(url.clone());
    replica_options.data_dir = Some(options.data_dir.join("replica"));
    replica_options.replicas = options.replicas;
    // A provider's messages must reach the book in the order they came.
    replica_options.ordered = true;
    let node = replica_options.gateway_id.clone();
    // Blocking, outside the runtime: it recovers the replica and starts its own runtime.
    let replica = Arc::new(GatewayReplica::start(replica_options, vec![metrics.engine_hook()])?);
    let status = Arc::new(Status {
        node: node.clone(),
        replica: Arc::clone(&replica),
        metrics,
        active: AtomicBool::new(false),
        hub: Mutex::new(None),
        takeovers: AtomicU64::new(0),
        step_downs: AtomicU64::new(0),
    });
    let outcome = (|| {
        let lease = runtime
            .block_on(replica.open_lease(FEED_LEASE_BUCKET, options.lease, &node))
            .context("opening the feed lease")?;
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = runtime.spawn(http::serve(listener, Arc::clone(&status), async move {
            let _ = http_stopped.await;
        }));
        // The node id is letters, digits, '-' and '_' (validated), the URL an address.
        println!(r#"{{"role": "feed", "pid": {}, "node": "{node}", "url": "{url}"}}"#, std::process::id());
        tracing::info!(%url, %node, lease = ?options.lease, "feed role listening; a standby until it takes the feed lease");
        let fed = lead_while_holding(&runtime, &lease, &status, &options);
        let _ = stop_http.send(());
        runtime.block_on(async {
            if tokio::time::timeout(HTTP_STOP_GRACE, server).await.is_err() {
                tracing::warn!("the HTTP endpoints did not stop in time");
            }
        });
        fed
    })();
    runtime.shutdown_timeout(HTTP_STOP_GRACE);
    replica.stop();
    tracing::info!("feed role stopped");
    outcome
}

/// The lease loop until a signal: take the lease when free, feed while holding it (a keeper
/// task renews it meanwhile), step down when it is lost or could not be renewed in time; at a
/// signal, stop feeding and release it.
fn lead_while_holding(
    runtime: &tokio::runtime::Runtime,
    lease: &Lease,
    status: &Arc<Status>,
    options: &FeedRoleOptions,
) -> anyhow::Result<()> {
    let mut signals = runtime.block_on(async { ShutdownSignals::install() });
    let tick = lease.duration() / 6;
    let mut active: Option<(Active, Keeper)> = None;
    let mut last_error_logged: Option<Instant> = None;
    loop {
        let signal = runtime.block_on(async {
            tokio::select! {
                signal = signals.recv() => Some(signal),
                () = tokio::time::sleep(tick) => None,
            }
        });
        if let Some(signal) = signal {
            tracing::info!(signal, "stopping the feed role");
            break;
        }
        match active.take() {
            None => {
                let position = status.replica.health().position;
                let wait = lease.duration() / 3;
                let acquired =
                    runtime.block_on(async { tokio::time::timeout(wait, lease.try_acquire(position)).await });
                let error = match acquired {
                    Ok(Ok(Some(grant))) => {
                        status.takeovers.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(node = %status.node, "took the feed lease: starting the feed adapters");
                        // Renewed from now on, also while the adapters start (which may take
                        // longer than the lease: the replica's catching up, the demo's seeding).
                        let keeper = Keeper::start(runtime, lease.clone(), grant, status);
                        match start_feeding(runtime, status, options) {
                            Ok(started) => active = Some((started, keeper)),
                            Err(error) => {
                                // Give the lease back: another feed process may do better.
                                tracing::error!(error = format!("{error:#}"), "the feed adapters did not start");
                                keeper.release(runtime, lease);
                                return Err(error);
                            }
                        }
                        None
                    }
                    Ok(Ok(None)) => None,
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(_) => Some("timed out".to_string()),
                };
                // One line per lease at most: NATS down would otherwise log every tick.
                if let Some(error) = error {
                    if last_error_logged.is_none_or(|at| at.elapsed() >= lease.duration()) {
                        tracing::warn!(%error, "cannot read the feed lease");
                        last_error_logged = Some(Instant::now());
                    }
                }
            }
            Some((holding, keeper)) => {
                if keeper.lost() {
                    status.step_downs.fetch_add(1, Ordering::Relaxed);
                    keeper.task.abort();
                    holding.stop(status);
                } else {
                    active = Some((holding, keeper));
                }
            }
        }
    }
    if let Some((holding, keeper)) = active {
        holding.stop(status);
        keeper.release(runtime, lease);
    }
    Ok(())
}

/// Renews a lease this process holds, every third of it, on the runtime: `lost` once another
/// process holds it, or once it went unrenewed for `SELF_FENCE_SHARE` sixths of it.
struct Keeper {
    grant: Arc<Mutex<Grant>>,
    lost: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    fn start(runtime: &tokio::runtime::Runtime, lease: Lease, grant: Grant, status: &Arc<Status>) -> Keeper {
        let (shared, lost) = (Arc::new(Mutex::new(grant)), Arc::new(AtomicBool::new(false)));
        let task = runtime.spawn({
            let (shared, lost, status) = (Arc::clone(&shared), Arc::clone(&lost), Arc::clone(status));
            async move {
                let renew_every = lease.duration() / 3;
                let mut grant = grant;
                let mut logged = false;
                loop {
                    tokio::time::sleep(renew_every.saturating_sub(grant.sent_at.elapsed())).await;
                    let position = status.replica.health().position;
                    match tokio::time::timeout(renew_every, lease.renew(&grant, position)).await {
                        Ok(Ok(renewed)) => {
                            grant = renewed;
                            logged = false;
                            if let Ok(mut shared) = shared.lock() {
                                *shared = renewed;
                            }
                        }
                        Ok(Err(RenewError::Lost(reason))) => {
                            tracing::error!(%reason, "the feed lease was lost: stopping the feed adapters");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Ok(Err(RenewError::Unavailable(reason))) if !logged => {
                            tracing::warn!(%reason, "cannot renew the feed lease");
                            logged = true;
                        }
                        Ok(Err(RenewError::Unavailable(_))) => {}
                        Err(_) if !logged => {
                            tracing::warn!("renewing the feed lease timed out");
                            logged = true;
                        }
                        Err(_) => {}
                    }
                    if Instant::now() >= lease.self_fence_at(grant.sent_at) {
                        tracing::error!("the feed lease could not be renewed in time: stopping the feed adapters");
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
        Keeper { grant: shared, lost, task }
    }

    fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops renewing and gives the lease up (a clean stop: a standby takes over at once).
    fn release(self, runtime: &tokio::runtime::Runtime, lease: &Lease) {
        self.task.abort();
        if self.lost() {
            return;
        }
        let Ok(grant) = self.grant.lock().map(|grant| *grant) else { return };
        let wait = lease.duration() / 3;
        match runtime.block_on(async { tokio::time::timeout(wait, lease.release(&grant)).await }) {
            Ok(Ok(())) => tracing::info!("feed lease released"),
            Ok(Err(error)) => tracing::warn!(%error, "the feed lease was not released; it lapses on its own"),
            Err(_) => tracing::warn!("releasing the feed lease timed out; it lapses on its own"),
        }
    }
}

/// Starts the adapters on a lease just taken: waits for the replica to reach the journal's end
/// (bounded), then the watchdog, the sources (or the simulated provider) and, with `--demo`,
/// the demo's seeding and simulation.
fn start_feeding(
    runtime: &tokio::runtime::Runtime,
    status: &Arc<Status>,
    options: &FeedRoleOptions,
) -> anyhow::Result<Active> {
    let replica = &status.replica;
    let engine: EngineHandle = replica.engine().clone();
    // The poller reads the stream's end every `cluster::gateway::POLL_INTERVAL`: two of them
    // see the end as of now.
    std::thread::sleep(cluster::gateway::POLL_INTERVAL * 2);
    let deadline = Instant::now() + CATCH_UP_WAIT_MAX;
    while replica.health().lag_records > 0 {
        if Instant::now() >= deadline {
            tracing::warn!(lag = replica.health().lag_records, "the replica is still behind; feeding anyway");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let hub = FeedHub::new(engine.clone(), status.metrics.feed().clone(), options.feed_settings);
    // `spawn_watchdog` spawns on the current runtime: enter ours.
    let mut tasks = {
        let _entered = runtime.enter();
        vec![hub.spawn_watchdog()]
    };
    let simulation = if options.demo {
        let fresh = engine.read(|book| book.events().is_empty()).context("reading the book")?;
        let (player, simulation) = crate::serve::demo_book(&engine, &options.data_dir, fresh, options.seed)?;
        if let Some((username, _)) = player {
            tracing::info!(%username, "demo player (credentials in {})", options.data_dir.display());
        }
        match simulation {
            Some(simulation) => Some(
                simulation::spawn(simulation, engine.clone(), Box::new(SystemClock))
                    .context("starting the demo simulation")?,
            ),
            None => None,
        }
    } else {
        None
    };
    let followed = runtime.block_on(async {
        let mut tasks = crate::feeds::follow(&hub, &options.feed_sources, &options.data_dir, &options.uof).await?;
        if options.feed_sources.is_empty() {
            let seed = options.seed.unwrap_or_else(rand::random);
            tasks.push(crate::feeds::spawn_demo_feed(&hub, &engine, seed).await?);
        }
        anyhow::Ok(tasks)
    });
    let followed = match followed {
        Ok(followed) => followed,
        Err(error) => {
            for task in tasks {
                task.abort();
            }
            if let Some(simulation) = simulation {
                simulation.stop();
            }
            return Err(error);
        }
    };
    tasks.extend(followed);
    if let Ok(mut slot) = status.hub.lock() {
        *slot = Some(hub);
    }
    status.active.store(true, Ordering::SeqCst);
    replica.set_role(cluster::ROLE_FEED);
    tracing::info!(
        sources = options.feed_sources.len(),
        simulated = options.feed_sources.is_empty(),
        demo = options.demo,
        "feeding the book"
    );
    Ok(Active { tasks, simulation })
}

/// `/healthz`, `/readyz`, `/metrics` of the feed role.
mod http {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use axum::extract::State;
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::{Json, Router};

    use super::Status;

    pub(super) async fn serve(
        listener: tokio::net::TcpListener,
        status: Arc<Status>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(status);
        axum::serve(listener, app).with_graceful_shutdown(stop).await
    }

    async fn healthz() -> impl IntoResponse {
        Json(serde_json::json!({ "status": "ok" }))
    }

    /// 200 while the replica follows a cluster with a leader (a standby is ready to take over)
    /// and, when active, every provider is fresh; else 503 with the `reasons`.
    async fn readyz(State(status): State<Arc<Status>>) -> impl IntoResponse {
        let health = status.replica.health();
        let mut reasons: Vec<&'static str> = Vec::new();
        if !health.nats_connected {
            reasons.push("nats_down");
        }
        if !health.leader_known {
            reasons.push("no_leader");
        }
        if health.lag_records > cluster::REPLICA_LAG_READY_MAX_RECORDS
            || health.lag_seconds > cluster::REPLICA_LAG_READY_MAX.as_secs_f64()
        {
            reasons.push("replica_lagging");
        }
        if health.replica_failed.is_some() {
            reasons.push("replica_failed");
        }
        let active = status.active.load(Ordering::SeqCst);
        let stale = status.hub.lock().ok().and_then(|hub| hub.as_ref().map(feed::FeedHub::stale_providers));
        let stale = stale.unwrap_or_default();
        if !stale.is_empty() {
            reasons.push("feed_stale");
        }
        let mut body = serde_json::json!({
            "status": if reasons.is_empty() { "ok" } else { "unavailable" },
            "feed": if active { "active" } else { "standby" },
            "node": status.node,
            "pid": std::process::id(),
            "position": health.position,
        });
        if !reasons.is_empty() {
            body["reasons"] = serde_json::json!(reasons);
        }
        if !stale.is_empty() {
            body["stale_providers"] = serde_json::json!(stale);
        }
        let code = if reasons.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        (code, Json(body))
    }

    async fn metrics(State(status): State<Arc<Status>>) -> impl IntoResponse {
        let mut text = status.metrics.encode(status.replica.engine().stats());
        let health = status.replica.health();
        let mut families = String::new();
        let gauges = [
            (
                "sportsbook_feed_active",
                "1 while this process holds the feed lease and its adapters feed the book.",
                u64::from(status.active.load(Ordering::SeqCst)),
            ),
            ("sportsbook_replica_position", "Journal position the replica has applied.", health.position),
            (
                "sportsbook_replica_lag_records",
                "Journal records stored and not yet applied by the replica.",
                health.lag_records,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = write!(families, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
        }
        let counters = [
            ("sportsbook_feed_takeovers", "Times this process took the feed lease.", &status.takeovers),
            ("sportsbook_feed_step_downs", "Times this process lost the feed lease while feeding.", &status.step_downs),
        ];
        for (name, help, value) in counters {
            let value = value.load(Ordering::Relaxed);
            let _ = write!(families, "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total {value}\n");
        }
        // The OpenMetrics text ends with `# EOF`: these families go before it.
        let end = text.rfind("# EOF").unwrap_or(text.len());
        text.insert_str(end, &families);
        ([(header::CONTENT_TYPE, gateway::METRICS_CONTENT_TYPE)], text)
    }
}
