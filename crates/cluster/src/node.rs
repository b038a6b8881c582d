//! `BookNode`: one book process of the cluster (`sportsbook book`), leader or hot standby.
//!
//! **Standby.** Recovers its book from its own data directory's newest snapshot and the
//! replicated journal (`engine::recover` over a `NatsJournal`), then follows the journal as
//! records are stored (`NatsJournal::follow`), applying each exactly as recovery does
//! (`engine::Replica::apply_record`: decided again at its time, reply digest checked, hash
//! chain extended), and writes a snapshot every `snapshot_every_commands`. Meanwhile it asks
//! for the lease every [`LEASE_POLL_MIN`] to [`LEASE_POLL_MAX`].
//!
//! **Taking over.** With the lease, it stops following, opens the journal as a writer (which
//! reads the stream's end), reads on to that end, and appends a **leader marker**: an empty
//! batch (no commands, reply digest 0; replay passes over it). From then on the journal refuses
//! every append of the previous leader, whatever it believes (its expected last sequence is
//! stale), even if no command comes for a while. Should the previous leader have appended
//! between the open and the marker, the marker is the one refused: the node reads on and tries
//! again. Then the sequencer starts on the warm book (no recovery) and the node subscribes to
//! the submit subject. Nothing acknowledged is lost: an acknowledged batch is in the stream,
//! and the new leader's book holds every record before its marker.
//!
//! **Leading.** It renews the lease every third of it. It steps down, back to standby, when
//! the lease is lost (another node holds it), when it could not renew for
//! `lease::SELF_FENCE_SHARE` sixths of it (self-fencing: it stops taking commands before
//! anyone else can have the lease), or when the engine stopped (an append fenced by a newer
//! leader, or one whose outcome is unknown). Stepping down unsubscribes, lets the engine finish
//! what it took (the journal decides whether those appends land), and recovers a standby's
//! book afresh from the local snapshots and the journal: the engine's book may hold a batch
//! the journal refused.
//!
//! Threads: the node's control loop (`book-node`), the standby's follower (`book-follower`),
//! the engine's sequencer and snapshot threads while leading, and a small tokio runtime
//! (`book-node-io`) for the lease, the registry and the request/reply subscriptions. The
//! journal runs its own client on its own runtime.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::Client;
use engine::{EngineError, EngineHandle, EngineOptions, Replica, SystemClock};
use futures_util::StreamExt;
use journal::{Journal, JournalError, SnapshotStore};
use journal_nats::{NatsJournal, NatsJournalOptions};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::lease::{wall_clock_ms, Grant, Lease, RenewError, LEASE_BUCKET_DEFAULT, LEASE_DEFAULT};
use crate::protocol::{self, Answer, Refusal, SUBJECT_PREFIX_DEFAULT, SUBMIT_QUEUE_GROUP};
use crate::registry::{NodeInfo, Registry, REGISTRY_BUCKET_DEFAULT, REGISTRY_INTERVAL};
use crate::ClusterError;

/// Longest node id: it names the node's registry key and its journal writer id.
pub const NODE_ID_BYTES_MAX: usize = 40;

/// A standby asks for the lease at least this far apart...
pub const LEASE_POLL_MIN: Duration = Duration::from_millis(50);
/// ... and at most this far apart (a tenth of the lease between the two).
pub const LEASE_POLL_MAX: Duration = Duration::from_millis(500);

/// Pause before a standby that lost the journal's servers tries again.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Deadline of one request to NATS by the node's own client (connecting, the lease).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Snapshots a node keeps in its data directory.
pub const SNAPSHOTS_KEPT: usize = journal::snapshot::SNAPSHOTS_KEPT_MAX;

/// Everything a book node needs.
#[derive(Clone, Debug)]
pub struct BookNodeOptions {
    /// NATS server URLs.
    pub servers: Vec<String>,
    /// This node's own directory: its snapshots (`DIR/snapshots`).
    pub data_dir: PathBuf,
    /// Unique in the cluster: `[A-Za-z0-9_-]`, at most [`NODE_ID_BYTES_MAX`] bytes.
    pub node_id: String,
    /// The lease (the bucket's maximum age: every node must use the same).
    pub lease: Duration,
    /// Replicas of the journal's stream and of the buckets: 3 on a 3-node cluster.
    pub replicas: usize,
    pub journal_stream: String,
    pub journal_subject: String,
    /// Prefix of the protocol's subjects (`protocol::submit_subject`).
    pub subject_prefix: String,
    pub lease_bucket: String,
    pub registry_bucket: String,
    /// The book's configuration for an empty journal (a snapshot carries its own).
    pub config: book::Config,
    /// A snapshot every this many commands, by the leader's engine and by standbys alike.
    pub snapshot_every_commands: u64,
    /// This node's HTTP address (`/healthz`, `/readyz`, `/metrics`), for the registry.
    pub url: Option<String>,
}

impl BookNodeOptions {
    pub fn new(servers: Vec<String>, data_dir: PathBuf) -> BookNodeOptions {
        BookNodeOptions {
            servers,
            data_dir,
            node_id: format!("book-{}-{:04x}", std::process::id(), rand::random::<u16>()),
            lease: LEASE_DEFAULT,
            replicas: journal_nats::REPLICAS_DEFAULT,
            journal_stream: journal_nats::STREAM_DEFAULT.to_owned(),
            journal_subject: journal_nats::SUBJECT_DEFAULT.to_owned(),
            subject_prefix: SUBJECT_PREFIX_DEFAULT.to_owned(),
            lease_bucket: LEASE_BUCKET_DEFAULT.to_owned(),
            registry_bucket: REGISTRY_BUCKET_DEFAULT.to_owned(),
            config: book::Config::default(),
            snapshot_every_commands: 1_000_000,
            url: None,
        }
    }

    fn validate(&self) -> Result<(), ClusterError> {
        let invalid = |reason: String| Err(ClusterError::InvalidOptions(reason));
        if self.servers.is_empty() {
            return invalid("no NATS server URL given".into());
        }
        validate_node_id(&self.node_id)?;
        if !(crate::lease::LEASE_MIN..=crate::lease::LEASE_MAX).contains(&self.lease) {
            return invalid(format!(
                "the lease must be {:?} to {:?}",
                crate::lease::LEASE_MIN,
                crate::lease::LEASE_MAX
            ));
        }
        Ok(())
    }

    fn journal_options(&self, writer_id: Option<String>) -> NatsJournalOptions {
        let mut options = NatsJournalOptions::new(self.servers.clone());
        options.stream = self.journal_stream.clone();
        options.subject = self.journal_subject.clone();
        options.replicas = self.replicas;
        options.writer_id = writer_id;
        options
    }

    fn snapshots(&self) -> Result<SnapshotStore, ClusterError> {
        Ok(SnapshotStore::open(&self.data_dir.join("snapshots"))?.with_keep(SNAPSHOTS_KEPT))
    }
}

/// Checks a node's (or gateway's) id: it names a registry key and a journal writer id.
pub(crate) fn validate_node_id(id: &str) -> Result<(), ClusterError> {
    if id.is_empty()
        || id.len() > NODE_ID_BYTES_MAX
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ClusterError::InvalidOptions(format!(
            "node id {id:?} must be 1 to {NODE_ID_BYTES_MAX} letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

/// What a node is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Recovering its book, or taking over.
    Starting,
    /// A hot standby following the journal.
    Follower,
    /// Holds the lease and takes commands.
    Leader,
    /// Stopped (cleanly, or failed: see `NodeStatus::failure`).
    Stopped,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Follower => "follower",
            Role::Leader => "leader",
            Role::Stopped => "stopped",
        }
    }

    fn from_u8(value: u8) -> Role {
        match value {
            1 => Role::Follower,
            2 => Role::Leader,
            3 => Role::Stopped,
            _ => Role::Starting,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Role::Starting => 0,
            Role::Follower => 1,
            Role::Leader => 2,
            Role::Stopped => 3,
        }
    }
}

/// A node's state, as its status request, `/readyz` and `/metrics` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub pid: u32,
    pub role: Role,
    /// Journal position after the last record its book holds.
    pub position: u64,
    /// The book's state digest at `position` (`codec::digest`); only in answers to a status
    /// request (it encodes the whole book).
    pub digest: Option<String>,
    /// While leading: when the lease lapses unless renewed (wall clock, ms since the epoch).
    pub lease_expires_at_ms: Option<u64>,
    /// Times this node took the lease.
    pub takeovers: u64,
    /// Times it stepped down.
    pub step_downs: u64,
    /// Why it last stepped down, or why it stopped.
    pub last_step_down: Option<String>,
    pub failure: Option<String>,
}

/// Who may read the node's current book.
enum BookAccess {
    None,
    Replica(Arc<Mutex<Replica>>),
    Engine(EngineHandle),
}

struct Shared {
    node: String,
    pid: u32,
    url: Option<String>,
    role: AtomicU8,
    position: AtomicU64,
    /// 0 when not leading.
    lease_expires_at_ms: AtomicU64,
    takeovers: AtomicU64,
    step_downs: AtomicU64,
    last_step_down: Mutex<Option<String>>,
    failure: Mutex<Option<String>>,
    stop: AtomicBool,
    book: Mutex<BookAccess>,
    /// Held while a digest is taken: status requests are answered one digest at a time, so a
    /// burst of them costs the book one encode after another, never many at once (on the
    /// leader each one pauses the sequencer for the encode).
    digesting: Mutex<()>,
}

impl Shared {
    fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::SeqCst))
    }

    fn set_role(&self, role: Role) {
        let before = Role::from_u8(self.role.swap(role.to_u8(), Ordering::SeqCst));
        if before != role {
            info!(node = %self.node, from = before.as_str(), to = role.as_str(), "book node role changed");
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn set_book(&self, access: BookAccess) {
        if let Ok(mut book) = self.book.lock() {
            *book = access;
        }
    }

    fn status(&self) -> NodeStatus {
        let lease = self.lease_expires_at_ms.load(Ordering::SeqCst);
        NodeStatus {
            node: self.node.clone(),
            pid: self.pid,
            role: self.role(),
            position: self.position.load(Ordering::SeqCst),
            digest: None,
            lease_expires_at_ms: (lease > 0).then_some(lease),
            takeovers: self.takeovers.load(Ordering::SeqCst),
            step_downs: self.step_downs.load(Ordering::SeqCst),
            last_step_down: self.last_step_down.lock().ok().and_then(|reason| reason.clone()),
            failure: self.failure.lock().ok().and_then(|failure| failure.clone()),
        }
    }

    /// The status with the book's digest at a position it holds (blocking: encodes the book).
    /// On a leader the encode runs on the sequencer thread and pauses it (about a second per
    /// million bets): it is for verification (the cluster tests, an operator comparing
    /// replicas), not for monitoring, which `status` serves.
    fn status_with_digest(&self) -> NodeStatus {
        let _one_at_a_time = self.digesting.lock();
        let mut status = self.status();
        let engine = {
            let Ok(book) = self.book.lock() else { return status };
            match &*book {
                BookAccess::None => None,
                // Encoded with the access still locked: a standby taking the lease must clear
                // the access (`set_book`) before it takes its replica back out of the `Arc`, so
                // it waits for this digest rather than find the replica still shared.
                BookAccess::Replica(replica) => {
                    if let Ok(replica) = replica.lock() {
                        status.position = replica.position();
                        status.digest = Some(codec::digest(replica.book()));
                    }
                    None
                }
                BookAccess::Engine(engine) => Some(engine.clone()),
            }
        };
        if let Some(engine) = engine {
            let stats = engine.clone();
            // On the sequencer thread, between batches: the committed position is the book's.
            if let Ok((position, digest)) =
                engine.read(move |book| (stats.stats().committed_position.load(Ordering::Acquire), codec::digest(book)))
            {
                status.position = position;
                status.digest = Some(digest);
            }
        }
        status
    }
}

/// A running book node. See the module documentation.
pub struct BookNode {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for BookNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BookNode").field("status", &self.shared.status()).finish_non_exhaustive()
    }
}

impl BookNode {
    /// Starts the node on a thread of its own: it recovers, follows, and leads when it gets
    /// the lease, until [`BookNode::stop`].
    pub fn start(options: BookNodeOptions) -> Result<BookNode, ClusterError> {
        options.validate()?;
        let shared = Arc::new(Shared {
            node: options.node_id.clone(),
            pid: std::process::id(),
            url: options.url.clone(),
            role: AtomicU8::new(Role::Starting.to_u8()),
            position: AtomicU64::new(0),
            lease_expires_at_ms: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
            step_downs: AtomicU64::new(0),
            last_step_down: Mutex::new(None),
            failure: Mutex::new(None),
            stop: AtomicBool::new(false),
            book: Mutex::new(BookAccess::None),
            digesting: Mutex::new(()),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("book-node".into())
            .spawn(move || {
                let result = run(options, Arc::clone(&thread_shared));
                if let Err(failure) = result {
                    error!(node = %thread_shared.node, %failure, "book node failed");
                    if let Ok(mut slot) = thread_shared.failure.lock() {
                        *slot = Some(failure.to_string());
                    }
                }
                thread_shared.set_role(Role::Stopped);
            })
            .map_err(|source| ClusterError::Io { op: "start the node's thread", source })?;
        Ok(BookNode { shared, thread: Some(thread) })
    }

    pub fn status(&self) -> NodeStatus {
        self.shared.status()
    }

    /// The status with the book's state digest (encodes the whole book: blocking).
    pub fn status_with_digest(&self) -> NodeStatus {
        self.shared.status_with_digest()
    }

    /// Whether the node stopped on its own (it failed: see `NodeStatus::failure`).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// A cheap view for the HTTP endpoints.
    pub fn probe(&self) -> NodeProbe {
        NodeProbe { shared: Arc::clone(&self.shared) }
    }

    /// Stops: a leader stops taking commands, lets its engine finish and releases the lease (a
    /// standby takes over at once); a standby stops following. Returns the failure, if the
    /// node failed before.
    pub fn stop(mut self) -> Result<(), String> {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        match self.shared.failure.lock().ok().and_then(|failure| failure.clone()) {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

/// A cheap, cloneable view of a node's state (for `/readyz`, `/metrics`).
#[derive(Clone)]
pub struct NodeProbe {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NodeProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProbe").finish_non_exhaustive()
    }
}

impl NodeProbe {
    pub fn status(&self) -> NodeStatus {
        self.shared.status()
    }
}

/// How a term as leader ended.
enum LeadEnd {
    Stopped,
    SteppedDown(String),
}

struct Node {
    options: BookNodeOptions,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    client: Client,
    lease: Lease,
}

fn run(options: BookNodeOptions, shared: Arc<Shared>) -> Result<(), ClusterError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("book-node-io")
        .enable_all()
        .build()
        .map_err(|source| ClusterError::Io { op: "start the node's runtime", source })?;
    let client = runtime.block_on(connect(&options.servers, &options.node_id))?;
    let jetstream = {
        // The JetStream context needs the runtime's context; held only here, since the journal
        // blocks on a runtime of its own from this thread later.
        let _runtime = runtime.enter();
        async_nats::jetstream::new(client.clone())
    };
    let opened = retry_until_stopped(&shared, "the lease's bucket", || {
        runtime.block_on(Lease::open(
            &jetstream,
            &options.lease_bucket,
            options.lease,
            options.replicas,
            &options.node_id,
        ))
    })?;
    let Some(lease) = opened else { return Ok(()) };
    let opened = retry_until_stopped(&shared, "the registry's bucket", || {
        runtime.block_on(Registry::open(&jetstream, &options.registry_bucket, options.replicas))
    })?;
    let Some(registry) = opened else { return Ok(()) };
    let publisher = runtime.spawn(publish_to_registry(registry.clone(), Arc::clone(&shared)));
    let status_subject = protocol::status_subject(&options.subject_prefix, &options.node_id);
    let status_requests = runtime
        .block_on(client.subscribe(status_subject))
        .map_err(|err| ClusterError::nats("subscribe to status requests", err))?;
    runtime.spawn(answer_status_requests(client.clone(), status_requests, Arc::clone(&shared)));
    info!(node = %options.node_id, pid = shared.pid, lease = ?options.lease, "book node started");
    let node = Node { options, shared, runtime, client, lease };
    let result = node.roles();
    node.shared.set_book(BookAccess::None);
    publisher.abort();
    let _ = node.runtime.block_on(registry.remove(&node.options.node_id));
    result
}

/// Runs `open` until it succeeds, as [`Node::open_journal`] opens the journal: creating a
/// replicated bucket waits for its replicas to elect a leader, and on a fresh or busy cluster
/// that may outlast one attempt (`lease::BUCKET_CREATE_TIMEOUT`) while another node creates
/// it. A bucket of other options is no passing state: that error ends the node. `None` once
/// the node is told to stop.
fn retry_until_stopped<T>(
    shared: &Shared,
    what: &str,
    mut open: impl FnMut() -> Result<T, ClusterError>,
) -> Result<Option<T>, ClusterError> {
    loop {
        if shared.stopping() {
            return Ok(None);
        }
        match open() {
            Ok(opened) => return Ok(Some(opened)),
            Err(error @ ClusterError::InvalidOptions(_)) => return Err(error),
            Err(error) => {
                warn!(node = %shared.node, %error, "cannot open {what}; trying again");
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

async fn connect(servers: &[String], name: &str) -> Result<Client, ClusterError> {
    async_nats::ConnectOptions::new()
        .name(format!("sportsbook-{name}"))
        .connection_timeout(REQUEST_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .connect(servers)
        .await
        .map_err(|err| ClusterError::nats("connect", format!("to {}: {err}", servers.join(", "))))
}

impl Node {
    fn roles(&self) -> Result<(), ClusterError> {
        loop {
            let Some((replica, grant)) = self.follow()? else {
                return Ok(());
            };
            match self.lead(replica, grant)? {
                LeadEnd::Stopped => return Ok(()),
                LeadEnd::SteppedDown(reason) => {
                    warn!(node = %self.options.node_id, %reason, "stepped down to follower");
                    self.shared.step_downs.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut last) = self.shared.last_step_down.lock() {
                        *last = Some(reason);
                    }
                }
            }
        }
    }

    /// Opens the journal, waiting out an unreachable cluster while not stopping. `None`: stop.
    fn open_journal(&self, writer_id: Option<String>) -> Result<Option<NatsJournal>, ClusterError> {
        loop {
            if self.shared.stopping() {
                return Ok(None);
            }
            match NatsJournal::open(self.options.journal_options(writer_id.clone())) {
                Ok(journal) => return Ok(Some(journal)),
                Err(error @ JournalError::InvalidOptions { .. }) => return Err(error.into()),
                Err(error) => {
                    warn!(node = %self.options.node_id, %error, "cannot open the journal; trying again");
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    /// The standby's term: recover, follow the journal, ask for the lease. Returns the warm
    /// book and the lease once this node has it; `None` when told to stop.
    fn follow(&self) -> Result<Option<(Replica, Grant)>, ClusterError> {
        self.shared.set_role(Role::Starting);
        self.shared.lease_expires_at_ms.store(0, Ordering::SeqCst);
        let Some(reader) = self.open_journal(None)? else {
            return Ok(None);
        };
        let snapshots = self.options.snapshots()?;
        let started = Instant::now();
        let recovered = engine::recover(&reader, Some(&snapshots), self.options.config)?;
        let report = recovered.report;
        info!(
            node = %self.options.node_id,
            position = report.position,
            snapshot = ?report.snapshot_position,
            replayed_batches = report.replayed_batches,
            elapsed = ?started.elapsed(),
            "recovered the book from the local snapshot and the journal"
        );
        self.shared.position.store(report.position, Ordering::SeqCst);
        let replica = Arc::new(Mutex::new(Replica::from_recovered(recovered)));
        self.shared.set_book(BookAccess::Replica(Arc::clone(&replica)));
        self.shared.set_role(Role::Follower);
        let following = Arc::new(AtomicBool::new(true));
        let tail = {
            let replica = Arc::clone(&replica);
            let following = Arc::clone(&following);
            let shared = Arc::clone(&self.shared);
            let every = self.options.snapshot_every_commands;
            std::thread::Builder::new()
                .name("book-follower".into())
                .spawn(move || tail(&reader, &replica, &following, &shared, &snapshots, every))
                .map_err(|source| ClusterError::Io { op: "start the follower thread", source })?
        };
        let poll = (self.options.lease / 10).clamp(LEASE_POLL_MIN, LEASE_POLL_MAX);
        let mut lease_error_logged = false;
        let grant = loop {
            if self.shared.stopping() || tail.is_finished() {
                break None;
            }
            let position = self.shared.position.load(Ordering::SeqCst);
            match self.runtime.block_on(self.lease.try_acquire(position)) {
                Ok(Some(grant)) => break Some(grant),
                Ok(None) => lease_error_logged = false,
                Err(error) => {
                    if !lease_error_logged {
                        warn!(node = %self.options.node_id, %error, "cannot ask for the lease");
                        lease_error_logged = true;
                    }
                }
            }
            std::thread::sleep(poll);
        };
        following.store(false, Ordering::SeqCst);
        let tailed = tail.join().unwrap_or_else(|_| {
            Err(ClusterError::Io { op: "follow the journal", source: std::io::Error::other("the follower panicked") })
        });
        self.shared.set_book(BookAccess::None);
        if let Err(failure) = tailed {
            if let Some(grant) = &grant {
                let _ = self.runtime.block_on(self.lease.release(grant));
            }
            return Err(failure);
        }
        let Some(grant) = grant else {
            return Ok(None);
        };
        let replica = Arc::try_unwrap(replica)
            .ok()
            .and_then(|replica| replica.into_inner().ok())
            .expect("the follower thread has ended and the access was cleared");
        Ok(Some((replica, grant)))
    }

    /// The leader's term, from the lease won to the end of leading.
    fn lead(&self, mut replica: Replica, mut grant: Grant) -> Result<LeadEnd, ClusterError> {
        let took_lease = Instant::now();
        info!(node = %self.options.node_id, position = replica.position(), "took the lease; taking over");
        self.shared.set_role(Role::Starting);
        let writer_id = format!("{}-r{}", self.options.node_id, grant.revision);
        let journal = loop {
            if self.shared.stopping() {
                let _ = self.runtime.block_on(self.lease.release(&grant));
                return Ok(LeadEnd::Stopped);
            }
            if let Err(reason) = self.keep_lease(&mut grant, replica.position()) {
                return Ok(LeadEnd::SteppedDown(reason));
            }
            let Some(mut journal) = self.open_journal(Some(writer_id.clone()))? else {
                continue;
            };
            let mut failure = None;
            let read = journal.read_from(replica.position(), &mut |position, payload| {
                replica.apply_record(position, payload).map_err(|error| {
                    failure = Some(error);
                    JournalError::Poisoned
                })
            });
            if let Some(failure) = failure {
                let _ = self.runtime.block_on(self.lease.release(&grant));
                return Err(failure.into());
            }
            if let Err(error) = read {
                warn!(node = %self.options.node_id, %error, "cannot read the journal to its end; trying again");
                continue;
            }
            if replica.position() != journal.next_position() {
                // Another writer appended since the open: the marker would be refused.
                continue;
            }
            // Opening the journal and reading it to its end may have taken long (an unreachable
            // server is retried): check the lease again right before the marker, so that a node
            // whose lease lapsed meanwhile does not fence the leader that took it.
            if let Err(reason) = self.keep_lease(&mut grant, replica.position()) {
                return Ok(LeadEnd::SteppedDown(reason));
            }
            let mut marker = Vec::new();
            codec::encode_batch(replica.next_sequence(), replica.book().now(), 0, std::iter::empty(), &mut marker);
            match journal.append(&marker) {
                Ok(position) => {
                    replica.apply_record(position, &marker)?;
                    break journal;
                }
                Err(JournalError::Fenced { reason, .. }) => {
                    info!(node = %self.options.node_id, %reason, "the previous leader appended meanwhile; reading on");
                }
                Err(error) => {
                    let _ = self.runtime.block_on(self.lease.release(&grant));
                    return Ok(LeadEnd::SteppedDown(format!("the leader marker could not be appended: {error}")));
                }
            }
        };
        let position = replica.position();
        let options = EngineOptions {
            snapshot_every_commands: self.options.snapshot_every_commands,
            snapshots_keep: SNAPSHOTS_KEPT,
            ..EngineOptions::default()
        };
        let engine = EngineHandle::start(
            Box::new(journal),
            Some(self.options.snapshots()?),
            replica.into_recovered(),
            Box::new(SystemClock),
            options,
        )?;
        self.shared.set_book(BookAccess::Engine(engine.clone()));
        self.shared.position.store(position, Ordering::SeqCst);
        self.shared.takeovers.fetch_add(1, Ordering::SeqCst);
        self.shared
            .lease_expires_at_ms
            .store(grant.renewed_at_ms + self.options.lease.as_millis() as u64, Ordering::SeqCst);
        if let Err(reason) = self.keep_lease(&mut grant, position) {
            engine.shutdown();
            return Ok(LeadEnd::SteppedDown(reason));
        }
        let subject = protocol::submit_subject(&self.options.subject_prefix);
        let subscription =
            match self.runtime.block_on(self.client.queue_subscribe(subject, SUBMIT_QUEUE_GROUP.to_owned())) {
                Ok(subscription) => subscription,
                Err(err) => {
                    engine.shutdown();
                    let _ = self.runtime.block_on(self.lease.release(&grant));
                    return Ok(LeadEnd::SteppedDown(format!("cannot subscribe to submissions: {err}")));
                }
            };
        let server = self.runtime.spawn(serve_submissions(self.client.clone(), subscription, engine.clone()));
        self.shared.set_role(Role::Leader);
        info!(
            node = %self.options.node_id,
            position,
            takeover = ?took_lease.elapsed(),
            "leading: the leader marker is appended and submissions are served"
        );
        let end = loop {
            if self.shared.stopping() {
                break LeadEnd::Stopped;
            }
            if engine.stats().stopped.load(Ordering::SeqCst) {
                let reason = engine.stats().stop_reason.lock().ok().and_then(|reason| reason.clone());
                break LeadEnd::SteppedDown(format!(
                    "the engine stopped: {}",
                    reason.unwrap_or_else(|| "no reason recorded".into())
                ));
            }
            let position = engine.stats().committed_position.load(Ordering::Acquire);
            self.shared.position.store(position, Ordering::SeqCst);
            if let Err(reason) = self.keep_lease(&mut grant, position) {
                break LeadEnd::SteppedDown(reason);
            }
            let to_fence = self.lease.self_fence_at(grant.sent_at).saturating_duration_since(Instant::now());
            std::thread::sleep((self.options.lease / 6).min(to_fence).max(Duration::from_millis(10)));
        };
        // Stop taking commands first, then let the engine finish what it took: the journal
        // decides whether those appends land.
        server.abort();
        let _ = self.runtime.block_on(self.client.flush());
        self.shared.set_book(BookAccess::None);
        self.shared.lease_expires_at_ms.store(0, Ordering::SeqCst);
        engine.shutdown();
        if let Some(reason) = engine.stats().stop_reason.lock().ok().and_then(|reason| reason.clone()) {
            warn!(node = %self.options.node_id, %reason, "the engine stopped after a failed append");
        }
        // Give the lease up if it is still ours (a clean stop, or an engine that stopped):
        // the revision check makes this a no-op once another node holds it.
        let _ = self.runtime.block_on(self.lease.release(&grant));
        Ok(end)
    }

    /// Renews the lease when a third of it has passed since the last renewal was sent; the
    /// reason to step down when it is lost or about to lapse.
    fn keep_lease(&self, grant: &mut Grant, position: u64) -> Result<(), String> {
        let fence_at = self.lease.self_fence_at(grant.sent_at);
        if Instant::now() >= fence_at {
            return Err(format!(
                "the lease could not be renewed within {:?} of the last renewal (self-fenced)",
                fence_at - grant.sent_at
            ));
        }
        if grant.sent_at.elapsed() < self.options.lease / 3 {
            return Ok(());
        }
        let remaining = fence_at.saturating_duration_since(Instant::now());
        match self.runtime.block_on(async { tokio::time::timeout(remaining, self.lease.renew(grant, position)).await })
        {
            Ok(Ok(renewed)) => {
                *grant = renewed;
                self.shared
                    .lease_expires_at_ms
                    .store(renewed.renewed_at_ms + self.options.lease.as_millis() as u64, Ordering::SeqCst);
                Ok(())
            }
            Ok(Err(RenewError::Lost(reason))) => Err(format!("the lease was lost: {reason}")),
            Ok(Err(RenewError::Unavailable(reason))) => {
                warn!(node = %self.options.node_id, %reason, "cannot renew the lease; trying again");
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }
}

/// The standby's follower thread: applies every record as it is stored, writes snapshots, and
/// rides out lost servers, until `following` is cleared. Fails only on a record that does not
/// replay (a book that diverged must not lead).
fn tail(
    reader: &NatsJournal,
    replica: &Mutex<Replica>,
    following: &AtomicBool,
    shared: &Shared,
    snapshots: &SnapshotStore,
    snapshot_every_commands: u64,
) -> Result<(), ClusterError> {
    let mut commands_at_snapshot = replica.lock().map(|replica| replica.replayed_commands()).unwrap_or(0);
    while following.load(Ordering::SeqCst) {
        let from = match replica.lock() {
            Ok(replica) => replica.position(),
            Err(_) => return Err(poisoned()),
        };
        let mut failure: Option<EngineError> = None;
        let followed = reader.follow(from, &|| following.load(Ordering::SeqCst), &mut |position, payload| {
            let Ok(mut replica) = replica.lock() else {
                return Err(JournalError::Poisoned);
            };
            if let Err(error) = replica.apply_record(position, payload) {
                failure = Some(error);
                return Err(JournalError::Poisoned);
            }
            shared.position.store(replica.position(), Ordering::SeqCst);
            if snapshot_every_commands > 0
                && replica.replayed_commands() - commands_at_snapshot >= snapshot_every_commands
            {
                commands_at_snapshot = replica.replayed_commands();
                match replica.save_snapshot(snapshots) {
                    Ok(position) => info!(node = %shared.node, position, "follower wrote a snapshot"),
                    Err(error) => warn!(node = %shared.node, %error, "follower could not write a snapshot"),
                }
            }
            Ok(())
        });
        if let Some(failure) = failure {
            return Err(failure.into());
        }
        if let Err(error) = followed {
            warn!(node = %shared.node, %error, "following the journal failed; trying again");
            std::thread::sleep(RETRY_PAUSE);
        }
    }
    Ok(())
}

fn poisoned() -> ClusterError {
    ClusterError::Io { op: "follow the journal", source: std::io::Error::other("the replica's lock is poisoned") }
}

/// Answers every submission with the engine's reply, each in a task of its own so that many
/// wait on the sequencer at once (one batch, one append for all of them). The engine's inbox
/// bounds them: past it, `overloaded` at once.
async fn serve_submissions(client: Client, mut subscription: async_nats::Subscriber, engine: EngineHandle) {
    while let Some(message) = subscription.next().await {
        let Some(reply_to) = message.reply else {
            continue;
        };
        let engine = engine.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let decoded = protocol::decode_request(&message.payload);
            let version = decoded.as_ref().map_or(protocol::PROTOCOL_VERSION, |(_, version)| *version);
            let answer = match decoded {
                Err(error) => Answer::Refused { refusal: Refusal::BadRequest, message: error.to_string() },
                Ok((submission, _)) => match engine.try_submit(submission) {
                    Ok(receiver) => match receiver.await {
                        // Stored before the reply was sent: at or past the reply's batch.
                        Ok(Ok(reply)) => {
                            Answer::Reply(reply, Some(engine.stats().committed_position.load(Ordering::Acquire)))
                        }
                        Ok(Err(error)) => {
                            Answer::Refused { refusal: Refusal::of_engine_error(&error), message: error.to_string() }
                        }
                        Err(_) => Answer::Refused {
                            refusal: Refusal::OutcomeUnknown,
                            message: "the engine ended without an answer".into(),
                        },
                    },
                    Err(EngineError::Overloaded) => {
                        Answer::Refused { refusal: Refusal::Overloaded, message: "the book's inbox is full".into() }
                    }
                    // Not taken: the engine is gone, this node no longer leads.
                    Err(error) => Answer::Refused { refusal: Refusal::NotLeader, message: error.to_string() },
                },
            };
            let _ = client.publish(reply_to, protocol::encode_answer(&answer, version).into()).await;
        });
    }
}

async fn answer_status_requests(client: Client, mut subscription: async_nats::Subscriber, shared: Arc<Shared>) {
    while let Some(message) = subscription.next().await {
        let Some(reply_to) = message.reply else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let client = client.clone();
        tokio::spawn(async move {
            let status = tokio::task::spawn_blocking(move || shared.status_with_digest()).await;
            if let Ok(status) = status {
                let body = serde_json::to_vec(&status).expect("a status serialises");
                let _ = client.publish(reply_to, body.into()).await;
            }
        });
    }
}

async fn publish_to_registry(registry: Registry, shared: Arc<Shared>) {
    let mut logged = false;
    loop {
        let status = shared.status();
        let info = NodeInfo {
            node: status.node,
            pid: status.pid,
            role: status.role.as_str().to_owned(),
            position: status.position,
            url: shared.url.clone(),
            updated_at_ms: wall_clock_ms(),
        };
        match registry.publish(&info).await {
            Ok(()) => logged = false,
            Err(error) if !logged => {
                warn!(node = %shared.node, %error, "cannot publish to the registry");
                logged = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(REGISTRY_INTERVAL).await;
    }
}
