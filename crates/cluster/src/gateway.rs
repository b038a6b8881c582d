//! `GatewayReplica`: what a cluster gateway (`sportsbook gateway`) runs besides HTTP: a local
//! read replica of the book, fed from the replicated journal, with commands forwarded to the
//! leader.
//!
//! The replica is an `engine::EngineHandle` started with `EngineHandle::start_replica`, so the
//! gateway's code is the same as on `serve`: reads run on the replica's book between records,
//! the commit hooks (the WebSocket stream, metrics) run after each record applied, so the
//! stream's updates come from NATS and clients can connect to any gateway; commands go to the
//! leader through [`BookClient`] (retried across elections with their idempotency key) and
//! their reply is delivered once the replica has applied the reply's batch (read-your-writes
//! on the same gateway, and `try_submit_then`'s view taken on a book holding the command).
//!
//! Threads: the tail (`gateway-tail`, `NatsJournal::follow` into the replica's feed), the
//! replica's own thread, a poller (`gateway-poll`: the stream's end, the lease, the NATS
//! connection, every [`POLL_INTERVAL`]) and a small tokio runtime for the client and the
//! registry entry. The data directory, if any, keeps the replica's snapshots so that a restart
//! replays only the journal's tail.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use book::Command;
use engine::{
    CommitHook, EngineError, EngineHandle, Forward, ForwardDone, Forwarded, ReplicaEngineOptions, ReplicaFeed,
    Submission, REPLICA_CATCH_UP_WAIT_MAX,
};
use journal::{JournalError, SnapshotStore};
use journal_nats::{NatsJournal, NatsJournalOptions};
use tracing::{info, warn};

use crate::client::{BookClient, BookClientOptions, ClientError};
use crate::lease::{wall_clock_ms, Lease, LEASE_BUCKET_DEFAULT};
use crate::protocol::{Refusal, SUBJECT_PREFIX_DEFAULT};
use crate::registry::{ClusterView, NodeInfo, Registry, REGISTRY_BUCKET_DEFAULT, REGISTRY_INTERVAL, ROLE_GATEWAY};
use crate::ClusterError;

/// How often the poller reads the stream's end, the lease and the connection.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Pause before the tail follows again after the stream could not be read.
pub const TAIL_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A gateway whose replica is more than this many records behind the journal is not ready.
pub const REPLICA_LAG_READY_MAX_RECORDS: u64 = 10_000;

/// ... nor one whose replica's state is older than this while records wait.
pub const REPLICA_LAG_READY_MAX: Duration = Duration::from_secs(5);

/// Commands waiting to be forwarded with [`GatewayReplicaOptions::ordered`].
pub const ORDERED_QUEUE_MAX: usize = 4_096;

/// Upper bounds (seconds) of the submit latency histogram's buckets.
pub const SUBMIT_SECONDS_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Clone, Debug)]
pub struct GatewayReplicaOptions {
    pub servers: Vec<String>,
    /// The gateway's own directory (its replica's snapshots); `None`: every start replays the
    /// whole journal.
    pub data_dir: Option<PathBuf>,
    /// The gateway's id in the registry: `[A-Za-z0-9_-]`, at most `NODE_ID_BYTES_MAX` bytes.
    pub gateway_id: String,
    /// The gateway's public HTTP address, for the registry (`GET /v1/admin/cluster`).
    pub url: Option<String>,
    /// The role of its registry entry: [`ROLE_GATEWAY`], or the feed role's
    /// [`crate::ROLE_FEED`] / [`crate::ROLE_FEED_STANDBY`] (`sportsbook feed` follows and
    /// forwards like a gateway); changed later with [`GatewayReplica::set_role`].
    pub role: String,
    /// Replicas of the registry bucket, should the gateway be the first to make it.
    pub replicas: usize,
    pub journal_stream: String,
    pub journal_subject: String,
    pub subject_prefix: String,
    pub lease_bucket: String,
    pub registry_bucket: String,
    /// The book's configuration for an empty journal (a snapshot carries its own).
    pub config: book::Config,
    /// A replica snapshot every this many commands (with a data directory).
    pub snapshot_every_commands: u64,
    /// How long a reply waits for the replica to reach its batch (`REPLICA_CATCH_UP_WAIT_MAX`).
    pub catch_up_wait_max: Duration,
    /// How long one submission is retried across elections (`client::RETRY_FOR_DEFAULT`).
    pub retry_for: Duration,
    /// Forwards commands one at a time, in the order they were submitted, each after the
    /// previous one's answer (at most [`ORDERED_QUEUE_MAX`] waiting; beyond, `Overloaded`).
    /// The feed role needs it: a provider's messages must reach the book in order (the book
    /// takes a message whose sequence is below one applied for a duplicate), and concurrent
    /// requests may overtake each other. A gateway forwards concurrently (requests of different
    /// clients have no order to keep), except feed messages (`Command::Feed`, `FeedHealth`),
    /// which always go through the ordered queue: a provider pushing its messages through a
    /// gateway (`POST /v1/feed/messages`) submits the next before the previous is answered.
    pub ordered: bool,
}

impl GatewayReplicaOptions {
    pub fn new(servers: Vec<String>) -> GatewayReplicaOptions {
        GatewayReplicaOptions {
            servers,
            data_dir: None,
            gateway_id: format!("gateway-{}-{:04x}", std::process::id(), rand::random::<u16>()),
            url: None,
            role: ROLE_GATEWAY.to_owned(),
            replicas: journal_nats::REPLICAS_DEFAULT,
            journal_stream: journal_nats::STREAM_DEFAULT.to_owned(),
            journal_subject: journal_nats::SUBJECT_DEFAULT.to_owned(),
            subject_prefix: SUBJECT_PREFIX_DEFAULT.to_owned(),
            lease_bucket: LEASE_BUCKET_DEFAULT.to_owned(),
            registry_bucket: REGISTRY_BUCKET_DEFAULT.to_owned(),
            config: book::Config::default(),
            snapshot_every_commands: 1_000_000,
            catch_up_wait_max: REPLICA_CATCH_UP_WAIT_MAX,
            retry_for: crate::client::RETRY_FOR_DEFAULT,
            ordered: false,
        }
    }

    fn journal_options(&self) -> NatsJournalOptions {
        let mut options = NatsJournalOptions::new(self.servers.clone());
        options.stream = self.journal_stream.clone();
        options.subject = self.journal_subject.clone();
        options.replicas = self.replicas;
        options
    }
}

/// What the gateway's `/readyz` and `/metrics` show of the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayHealth {
    /// The position after the last record the replica applied.
    pub position: u64,
    /// The stream's end at the last poll (0 before the first).
    pub stream_end: u64,
    /// Records stored and not yet applied.
    pub lag_records: u64,
    /// How old the replica's state is while records wait: the wall clock minus the stamped
    /// time of the last batch applied (the leader's clock); 0 when caught up.
    pub lag_seconds: f64,
    /// Someone holds the lease (at the last poll).
    pub leader_known: bool,
    /// The NATS connection is up.
    pub nats_connected: bool,
    /// Times the lease's holder was seen to change.
    pub leader_changes: u64,
    /// The replica stopped (a record that did not replay): the gateway serves nothing.
    pub replica_failed: Option<String>,
    /// Submissions by latency bucket ([`SUBMIT_SECONDS_BUCKETS`], cumulative), their count and
    /// total seconds.
    pub submit_buckets: Vec<(f64, u64)>,
    pub submit_count: u64,
    pub submit_seconds_total: f64,
}

struct Shared {
    stop: AtomicBool,
    stream_end: AtomicU64,
    leader_known: AtomicBool,
    leader: Mutex<Option<String>>,
    leader_changes: AtomicU64,
    nats_connected: AtomicBool,
    submit_buckets: [AtomicU64; SUBMIT_SECONDS_BUCKETS.len()],
    submit_count: AtomicU64,
    submit_nanos_total: AtomicU64,
}

impl Shared {
    fn record_submit(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bound, count) in SUBMIT_SECONDS_BUCKETS.iter().zip(&self.submit_buckets) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.submit_count.fetch_add(1, Ordering::Relaxed);
        self.submit_nanos_total.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// A running gateway replica. See the module documentation.
pub struct GatewayReplica {
    engine: EngineHandle,
    client: BookClient,
    shared: Arc<Shared>,
    options: GatewayReplicaOptions,
    registry: Registry,
    /// The role its registry entry shows (`GatewayReplicaOptions::role`, `set_role`).
    role: Arc<Mutex<String>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    publisher: tokio::task::JoinHandle<()>,
    /// Taken by `stop` and shut down there, so that a replica stopped with `stop` never drops
    /// its runtime inside another runtime's task (which panics). Drop it without `stop` only
    /// outside any runtime.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for GatewayReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayReplica").field("gateway_id", &self.options.gateway_id).finish_non_exhaustive()
    }
}

impl GatewayReplica {
    /// Connects, recovers the replica (its newest local snapshot and the journal), starts
    /// following the journal and registers the gateway. `on_commit` are the gateway's commit
    /// hooks (streams, metrics). Blocking: call it before the HTTP runtime serves.
    pub fn start(options: GatewayReplicaOptions, on_commit: Vec<CommitHook>) -> Result<GatewayReplica, ClusterError> {
        crate::node::validate_node_id(&options.gateway_id)?;
        if options.servers.is_empty() {
            return Err(ClusterError::InvalidOptions("no NATS server URL given".into()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gateway-cluster-io")
            .enable_all()
            .build()
            .map_err(|source| ClusterError::Io { op: "start the gateway's runtime", source })?;
        let mut client_options = BookClientOptions::new(options.servers.clone());
        client_options.subject_prefix = options.subject_prefix.clone();
        client_options.lease_bucket = options.lease_bucket.clone();
        client_options.registry_bucket = options.registry_bucket.clone();
        client_options.retry_for = options.retry_for;
        let client = runtime.block_on(BookClient::connect(client_options)).map_err(|error| match error {
            ClientError::Cluster(error) => error,
            other => ClusterError::nats("connect", other),
        })?;
        let registry = {
            let _runtime = runtime.enter();
            let jetstream = async_nats::jetstream::new(client.nats().clone());
            runtime.block_on(Registry::open(&jetstream, &options.registry_bucket, options.replicas))?
        };
        // One journal for the tail and the poller, one the replica reads audit pages from.
        let tail_journal = Arc::new(NatsJournal::open(options.journal_options())?);
        let reader = NatsJournal::open(options.journal_options())?;
        let snapshots = match &options.data_dir {
            Some(dir) => Some(SnapshotStore::open(&dir.join("snapshots"))?.with_keep(crate::node::SNAPSHOTS_KEPT)),
            None => None,
        };
        let started = Instant::now();
        let recovered = engine::recover(&reader, snapshots.as_ref(), options.config)?;
        info!(
            gateway = %options.gateway_id,
            position = recovered.report.position,
            snapshot = ?recovered.report.snapshot_position,
            replayed = recovered.report.replayed_batches,
            took = ?started.elapsed(),
            "gateway replica recovered"
        );
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stream_end: AtomicU64::new(0),
            leader_known: AtomicBool::new(false),
            leader: Mutex::new(None),
            leader_changes: AtomicU64::new(0),
            nats_connected: AtomicBool::new(true),
            submit_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            submit_count: AtomicU64::new(0),
            submit_nanos_total: AtomicU64::new(0),
        });
        let (queue, waiting) = tokio::sync::mpsc::channel(ORDERED_QUEUE_MAX);
        runtime.spawn(forward_in_order(client.clone(), Arc::clone(&shared), waiting));
        let forward = ToLeader {
            client: client.clone(),
            runtime: runtime.handle().clone(),
            shared: Arc::clone(&shared),
            ordered: queue,
            all_in_order: options.ordered,
        };
        let (engine, feed) = EngineHandle::start_replica(
            recovered,
            Box::new(reader),
            snapshots,
            Box::new(forward),
            ReplicaEngineOptions {
                on_commit,
                catch_up_wait_max: options.catch_up_wait_max,
                snapshot_every_commands: if options.data_dir.is_some() { options.snapshot_every_commands } else { 0 },
                ..ReplicaEngineOptions::default()
            },
        )?;
        let tail = {
            let (journal, shared, gateway) =
                (Arc::clone(&tail_journal), Arc::clone(&shared), options.gateway_id.clone());
            std::thread::Builder::new()
                .name("gateway-tail".into())
                .spawn(move || run_tail(&journal, &feed, &shared, &gateway))
                .map_err(|source| ClusterError::Io { op: "start the gateway's tail", source })?
        };
        let poller = {
            let (journal, shared, client) = (Arc::clone(&tail_journal), Arc::clone(&shared), client.clone());
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("gateway-poll".into())
                .spawn(move || run_poller(&journal, &client, &handle, &shared))
                .map_err(|source| ClusterError::Io { op: "start the gateway's poller", source })?
        };
        let role = Arc::new(Mutex::new(options.role.clone()));
        let publisher = runtime.spawn(publish_gateway(
            registry.clone(),
            engine.clone(),
            options.gateway_id.clone(),
            options.url.clone(),
            Arc::clone(&role),
        ));
        info!(gateway = %options.gateway_id, "gateway replica following the journal");
        let handle = runtime.handle().clone();
        Ok(GatewayReplica {
            engine,
            client,
            shared,
            options,
            registry,
            role,
            threads: Mutex::new(vec![tail, poller]),
            publisher,
            runtime: Mutex::new(Some(runtime)),
            handle,
        })
    }

    /// The replica engine: what the gateway's `AppState` is built on.
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    pub fn gateway_id(&self) -> &str {
        &self.options.gateway_id
    }

    pub fn health(&self) -> GatewayHealth {
        let stats = self.engine.stats();
        let position = stats.committed_position.load(Ordering::Acquire);
        let stream_end = self.shared.stream_end.load(Ordering::Acquire);
        let lag_records = stream_end.saturating_sub(position);
        let lag_seconds = if lag_records == 0 {
            0.0
        } else {
            wall_clock_ms().saturating_sub(stats.last_batch_timestamp_ms.load(Ordering::Relaxed)) as f64 / 1_000.0
        };
        let replica_failed = if stats.stopped.load(Ordering::SeqCst) {
            Some(stats.stop_reason.lock().ok().and_then(|reason| reason.clone()).unwrap_or_default())
        } else {
            None
        };
        GatewayHealth {
            position,
            stream_end,
            lag_records,
            lag_seconds,
            leader_known: self.shared.leader_known.load(Ordering::SeqCst),
            nats_connected: self.shared.nats_connected.load(Ordering::SeqCst) && self.client.connected(),
            leader_changes: self.shared.leader_changes.load(Ordering::Relaxed),
            replica_failed,
            submit_buckets: SUBMIT_SECONDS_BUCKETS
                .iter()
                .zip(&self.shared.submit_buckets)
                .map(|(bound, count)| (*bound, count.load(Ordering::Relaxed)))
                .collect(),
            submit_count: self.shared.submit_count.load(Ordering::Relaxed),
            submit_seconds_total: self.shared.submit_nanos_total.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// The lease and the registry (`GET /v1/admin/cluster`), read on the gateway's own runtime:
    /// callable from any async context.
    pub async fn cluster(&self) -> Result<ClusterView, ClientError> {
        let client = self.client.clone();
        match self.handle.spawn(async move { client.cluster().await }).await {
            Ok(view) => view,
            Err(error) => Err(ClusterError::nats("read the cluster", error).into()),
        }
    }

    /// Changes the role its registry entry shows (the feed role: `feed` while it holds the feed
    /// lease, `feed_standby` while it waits), published at the next refresh (within
    /// `REGISTRY_INTERVAL`).
    pub fn set_role(&self, role: &str) {
        if let Ok(mut current) = self.role.lock() {
            role.clone_into(&mut current);
        }
    }

    /// Opens a lease other than the book's in the cluster's key-value store, with this
    /// replica's NATS connection, as `node` (the feed role's: one active feed per cluster).
    /// Callable from any async context.
    pub async fn open_lease(&self, bucket: &str, lease: Duration, node: &str) -> Result<Lease, ClusterError> {
        let jetstream = async_nats::jetstream::new(self.client.nats().clone());
        let (bucket, node, replicas) = (bucket.to_owned(), node.to_owned(), self.options.replicas);
        match self.handle.spawn(async move { Lease::open(&jetstream, &bucket, lease, replicas, &node).await }).await {
            Ok(lease) => lease,
            Err(error) => Err(ClusterError::nats("open a lease", error)),
        }
    }

    /// Stops following, shuts the replica down (a last snapshot with a data directory) and
    /// removes the gateway from the registry. Blocking: call it outside async runtimes. Once
    /// is enough; later calls do nothing.
    pub fn stop(&self) {
        let Some(runtime) = self.runtime.lock().ok().and_then(|mut runtime| runtime.take()) else { return };
        self.shared.stop.store(true, Ordering::SeqCst);
        self.engine.shutdown();
        let threads = self.threads.lock().map(|mut threads| std::mem::take(&mut *threads)).unwrap_or_default();
        for thread in threads {
            let _ = thread.join();
        }
        self.publisher.abort();
        let _ = runtime.block_on(self.registry.remove(&self.options.gateway_id));
        runtime.shutdown_background();
    }
}

/// Forwards commands to the leader on the gateway's runtime.
struct ToLeader {
    client: BookClient,
    runtime: tokio::runtime::Handle,
    shared: Arc<Shared>,
    /// The queue of [`forward_in_order`]: every command with `GatewayReplicaOptions::ordered`,
    /// else feed messages only.
    ordered: tokio::sync::mpsc::Sender<(Submission, ForwardDone)>,
    all_in_order: bool,
}

impl Forward for ToLeader {
    fn forward(&self, submission: Submission, done: ForwardDone) {
        let in_order = self.all_in_order || matches!(submission.command, Command::Feed(_) | Command::FeedHealth { .. });
        if in_order {
            // Never blocks (the replica's thread calls this): a full queue is overload.
            if let Err(error) = self.ordered.try_send((submission, done)) {
                let (_, done) = match error {
                    tokio::sync::mpsc::error::TrySendError::Full(item)
                    | tokio::sync::mpsc::error::TrySendError::Closed(item) => item,
                };
                done(Err(EngineError::Overloaded));
            }
            return;
        }
        let client = self.client.clone();
        let shared = Arc::clone(&self.shared);
        self.runtime.spawn(async move {
            let started = Instant::now();
            let result = client.submit_with_position(&submission).await;
            shared.record_submit(started.elapsed());
            done(result.map(|(reply, position)| Forwarded { reply, position }).map_err(engine_error));
        });
    }
}

/// Forwards the queued commands one at a time, in order: the next leaves once the previous
/// one's answer came (retries across an election included).
async fn forward_in_order(
    client: BookClient,
    shared: Arc<Shared>,
    mut waiting: tokio::sync::mpsc::Receiver<(Submission, ForwardDone)>,
) {
    while let Some((submission, done)) = waiting.recv().await {
        let started = Instant::now();
        let result = client.submit_with_position(&submission).await;
        shared.record_submit(started.elapsed());
        done(result.map(|(reply, position)| Forwarded { reply, position }).map_err(engine_error));
    }
}

/// What a client's failure means to the engine's callers (the gateway's status codes).
fn engine_error(error: ClientError) -> EngineError {
    match error {
        ClientError::Refused { refusal: Refusal::Overloaded, .. } => EngineError::Overloaded,
        ClientError::Refused { refusal: Refusal::StorageFull, .. } => EngineError::StorageFull,
        ClientError::NoLeader(reason) => EngineError::NoLeader(reason),
        // Refused before it was decided (too large, or not decodable): not taken, and no retry
        // can change that.
        ClientError::Refused { refusal: Refusal::BadRequest, message } => EngineError::NotTaken(message),
        // Anything else may have been applied: say the outcome is unknown.
        other => EngineError::Stopped(other.to_string()),
    }
}

fn run_tail(journal: &NatsJournal, feed: &ReplicaFeed, shared: &Shared, gateway: &str) {
    let keep_going = || !shared.stop.load(Ordering::SeqCst) && !feed.stopped();
    while keep_going() {
        let from = feed.position();
        let followed = journal.follow(from, &keep_going, &mut |position, payload| {
            feed.apply(position, payload.to_vec()).map_err(|_| JournalError::Poisoned)
        });
        if let Err(error) = followed {
            if keep_going() {
                warn!(%gateway, %error, "following the journal failed; trying again");
                std::thread::sleep(TAIL_RETRY_PAUSE);
            }
        }
    }
}

fn run_poller(journal: &NatsJournal, client: &BookClient, runtime: &tokio::runtime::Handle, shared: &Shared) {
    let mut leader_seen: Option<Instant> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        match journal.stream_next_position() {
            Ok(end) => {
                shared.stream_end.fetch_max(end, Ordering::AcqRel);
                shared.nats_connected.store(true, Ordering::SeqCst);
            }
            Err(_) => shared.nats_connected.store(false, Ordering::SeqCst),
        }
        let view = runtime.block_on(async { tokio::time::timeout(POLL_INTERVAL * 4, client.cluster()).await });
        if let Ok(Ok(view)) = view {
            let holder = view.leader.map(|(lease, _)| format!("{}/{}", lease.node, lease.pid));
            if holder.is_some() {
                leader_seen = Some(Instant::now());
            }
            shared.leader_known.store(holder.is_some(), Ordering::SeqCst);
            if let (Ok(mut seen), Some(holder)) = (shared.leader.lock(), holder) {
                if seen.as_ref().is_some_and(|before| *before != holder) {
                    shared.leader_changes.fetch_add(1, Ordering::Relaxed);
                    info!(leader = %holder, "the book's leader changed");
                }
                *seen = Some(holder);
            }
        } else {
            // A read that failed or was slow (a loaded machine) says nothing of the lease: the
            // leader last seen is still known until a lease it held then would have lapsed.
            let known = leader_seen.is_some_and(|seen| seen.elapsed() < crate::LEASE_DEFAULT);
            shared.leader_known.store(known, Ordering::SeqCst);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

async fn publish_gateway(
    registry: Registry,
    engine: EngineHandle,
    gateway: String,
    url: Option<String>,
    role: Arc<Mutex<String>>,
) {
    let mut logged = false;
    loop {
        let role = role.lock().map_or_else(|_| ROLE_GATEWAY.to_owned(), |role| role.clone());
        let info = NodeInfo {
            node: gateway.clone(),
            pid: std::process::id(),
            role,
            position: engine.stats().committed_position.load(Ordering::Acquire),
            url: url.clone(),
            updated_at_ms: wall_clock_ms(),
        };
        match registry.publish(&info).await {
            Ok(()) => logged = false,
            Err(error) if !logged => {
                warn!(%gateway, %error, "cannot publish the gateway to the registry");
                logged = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(REGISTRY_INTERVAL).await;
    }
}
