//! The sequencer: the one thread that owns the book.
//!
//! It blocks for the first request, drains up to `batch_commands_max` more without waiting,
//! stamps the batch with one time, decides every command, appends the batch to the journal as
//! ONE record with ONE sync, and only then sends the replies, publishes the events and runs the
//! reads that arrived with the batch. A failed append stops the engine for good: the replies of
//! that batch and of everything after it are errors, never acknowledgements. The one exception
//! is a full disk at write time (`JournalError::StorageFull`: nothing written, no sync tried,
//! the journal unchanged): the batch is refused, the book is rebuilt from the journal (it had
//! decided the batch), commands are refused with `EngineError::StorageFull` while the disk is
//! full, and every `storage_full_retry` the sequencer checks for room and then resumes.
//!
//! The sequencer also keeps the head of the journal's hash chain (`chain_next`), extended with
//! every record it appends, and serves the audit trail: the chain head and pages of raw journal
//! records, read on this thread between batches like the book reads.
//!
//! A batch is bounded in bytes as well as in commands: each command is encoded into the batch's
//! record as it is taken, and the batch ends before the command that would take the record past
//! the journal's `payload_bytes_max` (that command starts the next batch), so an append never
//! fails for its size. A command that fits in no batch on its own is refused undecided with
//! `EngineError::CommandTooLarge`; the engine goes on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use book::{Book, BookEvent, Command, Origin, Reply};
use codec::{begin_batch, encode_batch_entry, finish_batch, reply_digest, BATCH_COMMANDS_MAX, BATCH_HEADER_BYTES};
use journal::{Journal, JournalError, Position, SnapshotStore};

use crate::clock::Clock;
use crate::error::EngineError;
use crate::follower::{DurableBatch, Follower, ToFollower, FOLLOWER_QUEUE_COMMANDS_MAX_DEFAULT};
use crate::recovery::{chain_next, recover, ChainHead, Recovered};
use crate::snapshot_writer::{BookAt, PeriodicSnapshots, SnapshotWriter, Writer};

/// Requests waiting for the sequencer; beyond this, `try_submit` sheds load.
pub const INBOX_MAX_DEFAULT: usize = 65_536;
/// Commands decided and journaled together.
pub const BATCH_COMMANDS_MAX_DEFAULT: usize = 4_096;

/// How often a sequencer that found the disk full checks whether there is room again.
pub const STORAGE_FULL_RETRY_DEFAULT: Duration = Duration::from_secs(1);

/// Journal records in one `journal_page`: the sequencer reads them between batches, so this
/// bounds how long an audit read holds it up.
pub const AUDIT_PAGE_RECORDS_MAX: usize = 1_024;
/// Payload bytes of one `journal_page`, beyond which it ends early (after at least one record).
pub const AUDIT_PAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

const _: () = assert!(BATCH_COMMANDS_MAX_DEFAULT <= BATCH_COMMANDS_MAX);
// A batch's bytes are its fixed header plus its commands: the header must leave room for
// commands in the largest record of every backend (`EngineHandle::start` checks the journal's).
const _: () = assert!(BATCH_HEADER_BYTES < journal::RECORD_PAYLOAD_BYTES_MAX);
const _: () = assert!(AUDIT_PAGE_RECORDS_MAX > 0 && AUDIT_PAGE_BYTES_MAX > 0);

/// Raw journal records with their positions, oldest first.
pub type JournalPage = Vec<(Position, Vec<u8>)>;

/// What a caller gets back: the book's reply once it is durable, or why there is none.
pub type Outcome = Result<Reply, EngineError>;

/// `Outcome` with a view of the book taken right after the reply's batch.
pub type OutcomeWith<R> = Result<(Reply, R), EngineError>;

/// A batch that is durable, with the events its commands produced.
#[derive(Debug)]
pub struct Committed<'a> {
    pub position: Position,
    pub commands: u64,
    /// How long the journal append (write and sync) took.
    pub sync_nanos: u64,
    pub first_sequence: u64,
    pub timestamp: u64,
    pub events: &'a [BookEvent],
    /// The book with the batch applied, for hooks that attach what their readers need (a
    /// market's event, an account's new balance). Read-only: hooks observe, never decide.
    pub book: &'a Book,
}

/// Called on the sequencer thread after each durable batch. It holds up the next batch while it
/// runs, so it must be cheap and must never block (no IO, no locks a slow reader can hold).
pub type CommitHook = Box<dyn FnMut(&Committed<'_>) + Send>;
pub(crate) type ReadFn = Box<dyn FnOnce(&Book) + Send>;
/// A look at the engine's own state (chain head, journal): durable data only.
pub(crate) type InspectFn = Box<dyn FnOnce(&dyn JournalView) + Send>;

/// What an inspection sees of an engine: the sequencer's journal, or the replicated journal a
/// replica engine follows (`crate::replicated`).
pub(crate) trait JournalView {
    /// The chain head and the position after the last record it covers.
    fn chain_head(&self) -> (ChainHead, Position);
    fn journal_page(&self, from: Position, limit: usize) -> Result<JournalPage, EngineError>;
}

pub struct EngineOptions {
    pub inbox_max: usize,
    pub batch_commands_max: usize,
    /// Take a snapshot after this many commands (0: only at shutdown). Periodic snapshots are
    /// written by the snapshot follower (`crate::follower`) or by an external writer
    /// (`periodic_snapshots`), not on the sequencer thread.
    pub snapshot_every_commands: u64,
    /// Who writes the periodic snapshots: the engine's snapshot follower (the default), or a
    /// book outside the engine through `EngineHandle::snapshot_writer` (`crate::snapshot_writer`).
    pub periodic_snapshots: PeriodicSnapshots,
    /// Called in order on the sequencer thread after each durable batch (metrics, streams,
    /// read models).
    pub on_commit: Vec<CommitHook>,
    /// While the journal's disk is full, how often to check for room again.
    pub storage_full_retry: Duration,
    /// Commands the snapshot follower may be behind before it is detached (periodic snapshots
    /// are then skipped until the next start).
    pub follower_queue_commands_max: u64,
    /// What happens to journal segments recovery no longer needs (`crate::retention`); only
    /// `open_data_dir` acts on it. Off by default here; `serve` archives by default.
    pub journal_retention: crate::retention::JournalRetention,
    /// Where archived segments go; `None`: `DATA_DIR/archive`. Recovery and the audit route read
    /// archives from here whatever `journal_retention` says.
    pub journal_archive: Option<std::path::PathBuf>,
    /// How often the archiver runs.
    pub retention_interval: Duration,
    /// Snapshots the store keeps (`journal::snapshot::SNAPSHOTS_KEPT_MAX` by default).
    pub snapshots_keep: usize,
    /// Size at which the file journal starts a new segment (the unit retention archives);
    /// `journal::file::SEGMENT_BYTES_MAX_DEFAULT` by default.
    pub journal_segment_bytes_max: u64,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            inbox_max: INBOX_MAX_DEFAULT,
            batch_commands_max: BATCH_COMMANDS_MAX_DEFAULT,
            snapshot_every_commands: 1_000_000,
            periodic_snapshots: PeriodicSnapshots::Follower,
            on_commit: Vec::new(),
            storage_full_retry: STORAGE_FULL_RETRY_DEFAULT,
            follower_queue_commands_max: FOLLOWER_QUEUE_COMMANDS_MAX_DEFAULT,
            journal_retention: crate::retention::JournalRetention::Off,
            journal_archive: None,
            retention_interval: crate::retention::RETENTION_INTERVAL_DEFAULT,
            snapshots_keep: journal::snapshot::SNAPSHOTS_KEPT_MAX,
            journal_segment_bytes_max: journal::file::SEGMENT_BYTES_MAX_DEFAULT,
        }
    }
}

/// Counters the sequencer keeps, readable from any thread.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// The journal position after the last durable batch: every batch before it is durable.
    /// Stored before that batch's replies are sent, so a client holding a reply reads a
    /// position at or past its command's (read-your-writes waits on it).
    pub committed_position: AtomicU64,
    pub batches: AtomicU64,
    pub commands: AtomicU64,
    pub last_batch_commands: AtomicU64,
    pub journal_sync_nanos_total: AtomicU64,
    pub journal_sync_nanos_max: AtomicU64,
    /// Snapshots written, by either writer.
    pub snapshots: AtomicU64,
    /// Snapshots encoded and written on the sequencer thread: only at shutdown, for an explicit
    /// `snapshot()` while the follower is detached or when there is no follower, and when an
    /// external writer's are overdue on an engine that does not know its journal's files (no
    /// catch-up thread). Each one pauses every command for as long as it takes.
    pub snapshots_sequencer: AtomicU64,
    pub snapshot_nanos_total_sequencer: AtomicU64,
    pub snapshot_nanos_max_sequencer: AtomicU64,
    /// Snapshots written by the follower from its own book (the periodic ones).
    pub snapshots_follower: AtomicU64,
    pub snapshot_nanos_total_follower: AtomicU64,
    pub snapshot_nanos_max_follower: AtomicU64,
    /// Snapshots written through `EngineHandle::snapshot_writer` by a book outside the engine
    /// (`PeriodicSnapshots::External`: the in-process projector's).
    pub snapshots_external: AtomicU64,
    pub snapshot_nanos_total_external: AtomicU64,
    pub snapshot_nanos_max_external: AtomicU64,
    /// Snapshots written by a catch-up thread (`crate::snapshot_writer`) because the external
    /// writer's were overdue.
    pub snapshots_catch_up: AtomicU64,
    pub snapshot_nanos_total_catch_up: AtomicU64,
    pub snapshot_nanos_max_catch_up: AtomicU64,
    /// Times the external writer had written no snapshot for `SNAPSHOT_OVERDUE_FACTOR`
    /// intervals and one was written without it: by a catch-up thread (`snapshots_catch_up`),
    /// or, when the engine does not know its journal's files, by the sequencer (also counted in
    /// `snapshots_sequencer`).
    pub snapshots_overdue: AtomicU64,
    /// The next sequence number of the book at the newest snapshot written or attempted (or at
    /// start): the periodic and overdue snapshots count commands from it.
    pub snapshot_next_sequence: AtomicU64,
    /// Periodic snapshots not written because the follower was detached.
    pub snapshots_skipped: AtomicU64,
    /// Snapshot saves that failed, by any writer (a periodic one is tried again later).
    pub snapshot_failures: AtomicU64,
    /// Commands handed to the follower and not yet applied by it.
    pub follower_queue_commands: AtomicU64,
    /// Times the follower fell `EngineOptions::follower_queue_commands_max` behind and was
    /// detached.
    pub follower_detached: AtomicU64,
    /// The follower decided a batch differently than the sequencer and stopped.
    pub follower_failed: AtomicBool,
    pub follower_failure: Mutex<Option<String>>,
    /// The longest sequencer cycle since start: from taking a batch's first request to being
    /// ready to wait for the next (decide, append and sync, replies, hooks, reads). Every
    /// command that arrives meanwhile waits at least this long.
    pub sequencer_pause_nanos_max: AtomicU64,
    /// The same maximum since the last `take_recent_pause_max` (one scraper resets it).
    pub sequencer_pause_nanos_max_recent: AtomicU64,
    /// The longest sequencer cycle without its journal append (write and sync): the time the
    /// sequencer itself spends per batch, whatever the disk does.
    pub sequencer_work_nanos_max: AtomicU64,
    /// The same maximum since the last `take_recent_work_max` (one scraper resets it).
    pub sequencer_work_nanos_max_recent: AtomicU64,
    /// The most CPU time the sequencer thread spent in one cycle (the thread's own CPU clock,
    /// journal write's system time included, waiting for the sync not). Beside the cycle's
    /// wall time it tells work from waiting: a cycle far longer in wall time than in CPU time
    /// was the thread off the CPU (other threads or processes on the cores), not its work.
    pub sequencer_cpu_nanos_max: AtomicU64,
    /// The same maximum since the last `take_recent_cpu_max` (one scraper resets it).
    pub sequencer_cpu_nanos_max_recent: AtomicU64,
    /// Requests submitted and not yet taken by the sequencer.
    pub inbox_depth: AtomicU64,
    pub stopped: AtomicBool,
    /// The stamped time (book milliseconds) of the last batch applied: a replica engine's lag
    /// in time is the wall clock minus this while records wait (`crate::replicated`).
    pub last_batch_timestamp_ms: AtomicU64,
    /// Why the engine stopped (the journal's error), once `stopped`.
    pub stop_reason: Mutex<Option<String>>,
    /// The journal's disk is full: commands are refused until there is room again.
    pub storage_full: AtomicBool,
    /// Appends that found the disk full.
    pub storage_full_events: AtomicU64,
    /// Journal segments the archiver moved into the archive (`crate::retention`).
    pub journal_segments_archived: AtomicU64,
    /// Bytes of those segments.
    pub journal_archived_bytes: AtomicU64,
    /// Bytes of their archive files (compressed).
    pub journal_archive_bytes: AtomicU64,
    /// Archiver runs that failed.
    pub journal_archive_failures: AtomicU64,
    /// Archiver runs that failed since the last one that succeeded.
    pub journal_archive_failures_consecutive: AtomicU64,
}

impl EngineStats {
    /// The longest sequencer cycle since the last call (or since start), resetting it: for a
    /// metrics scraper that exports the maximum per scrape interval.
    pub fn take_recent_pause_max(&self) -> Duration {
        Duration::from_nanos(self.sequencer_pause_nanos_max_recent.swap(0, Ordering::Relaxed))
    }

    /// The longest sequencer cycle without its journal append and sync since the last call,
    /// resetting it: what the sequencer itself held commands up for (a snapshot encoded on its
    /// thread would show here), apart from the disk.
    pub fn take_recent_work_max(&self) -> Duration {
        Duration::from_nanos(self.sequencer_work_nanos_max_recent.swap(0, Ordering::Relaxed))
    }

    /// The most CPU time of one sequencer cycle since the last call, resetting it (see
    /// `sequencer_cpu_nanos_max`).
    pub fn take_recent_cpu_max(&self) -> Duration {
        Duration::from_nanos(self.sequencer_cpu_nanos_max_recent.swap(0, Ordering::Relaxed))
    }
}

/// The calling thread's CPU time so far (Linux `CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
pub(crate) fn thread_cpu_nanos() -> u64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (time.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(time.tv_nsec as u64)
}

/// What a command's submitter gets back.
pub(crate) enum Responder {
    /// The reply, once durable.
    Reply(oneshot::Sender<Outcome>),
    /// The reply and the book right after the batch, on the sequencer thread (a view built
    /// from both saves the caller a second trip through the inbox).
    Then(ThenFn),
}

impl Responder {
    pub(crate) fn fail(self, book: &Book, error: EngineError) {
        match self {
            Responder::Reply(sender) => {
                let _ = sender.send(Err(error));
            }
            Responder::Then(then) => then(book, Err(error)),
        }
    }
}

pub(crate) type ThenFn = Box<dyn FnOnce(&Book, Outcome) + Send>;

/// A command with its origin (who submitted it, and why), as the engine takes and journals it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    pub command: Command,
    pub origin: Origin,
}

/// The actor of a bare `Command` submitted without an origin: work inside the process that
/// acts for nobody else (tests, the simulator, tools).
pub const INTERNAL_ACTOR: &str = "internal";

impl From<Command> for Submission {
    fn from(command: Command) -> Submission {
        Submission { command, origin: Origin::system(INTERNAL_ACTOR) }
    }
}

impl From<(Command, Origin)> for Submission {
    fn from((command, origin): (Command, Origin)) -> Submission {
        Submission { command, origin }
    }
}

pub(crate) enum Request {
    Command {
        submission: Submission,
        reply: Option<Responder>,
    },
    Read(ReadFn),
    Inspect(InspectFn),
    Snapshot(oneshot::Sender<Result<Position, EngineError>>),
    /// A record of the replicated journal, for a replica engine (`crate::replicated`); only a
    /// `ReplicaFeed` sends it, and only a replica engine has one.
    Record {
        position: Position,
        payload: Vec<u8>,
    },
    /// Wakes a replica engine: a forwarded command's answer arrived.
    Wake,
    Shutdown,
}

/// A cheap, cloneable handle to a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    pub(crate) inbox: SyncSender<Request>,
    pub(crate) stats: Arc<EngineStats>,
    pub(crate) thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// The journal's files, for engines on a data directory (`crate::open_data_dir`): archived
    /// records, chain verification, the archiver.
    pub(crate) files: Option<Arc<crate::retention::JournalFiles>>,
    /// With `PeriodicSnapshots::External` and a snapshot store: the writer handed out.
    pub(crate) snapshot_writer: Option<SnapshotWriter>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("EngineHandle").field("stats", &self.stats).finish()
    }
}

impl EngineHandle {
    /// Starts the sequencer on a recovered book.
    pub fn start(
        journal: Box<dyn Journal>,
        snapshots: Option<SnapshotStore>,
        recovered: Recovered,
        clock: Box<dyn Clock>,
        mut options: EngineOptions,
    ) -> Result<EngineHandle, EngineError> {
        if journal.payload_bytes_max() <= BATCH_HEADER_BYTES {
            return Err(EngineError::Journal(JournalError::InvalidOptions {
                reason: format!(
                    "records of at most {} bytes cannot hold a batch of one command (its header alone takes {})",
                    journal.payload_bytes_max(),
                    BATCH_HEADER_BYTES
                ),
            }));
        }
        let (inbox, requests) = mpsc::sync_channel(options.inbox_max.max(1));
        let stats = Arc::new(EngineStats::default());
        stats.committed_position.store(journal.next_position(), Ordering::Release);
        let snapshots = match snapshots {
            Some(store) => Some(SnapshotWriter::new(
                Arc::new(store),
                Arc::clone(&stats),
                options.snapshot_every_commands,
                recovered.report.next_sequence,
            )?),
            None => None,
        };
        // The follower starts from a copy of the recovered book: a one-time cost at start,
        // before anything is served.
        let follower = match &snapshots {
            Some(writer) if options.periodic_snapshots == PeriodicSnapshots::Follower => {
                let follower = Follower {
                    book: recovered.book.clone(),
                    position: recovered.report.position,
                    next_sequence: recovered.report.next_sequence,
                    chain_head: recovered.report.chain_head,
                    writer: writer.clone(),
                    stats: Arc::clone(&stats),
                };
                // Unbounded as a channel, bounded by the sequencer's count of queued commands.
                let (sender, batches) = mpsc::channel();
                let thread = std::thread::Builder::new()
                    .name("book-snapshots".to_string())
                    .spawn(move || follower.run(batches))
                    .map_err(EngineError::Spawn)?;
                Some(FollowerLink {
                    sender: Some(sender),
                    thread,
                    queue_commands_max: options.follower_queue_commands_max.max(1),
                })
            }
            _ => None,
        };
        let snapshot_writer = snapshots.clone().filter(|_| options.periodic_snapshots == PeriodicSnapshots::External);
        let sequencer = Sequencer {
            follower,
            last_now: recovered.book.now(),
            book: recovered.book,
            journal,
            snapshots,
            clock,
            next_sequence: recovered.report.next_sequence,
            chain_head: recovered.report.chain_head,
            skipped_through: recovered.report.next_sequence,
            cycle_sync_nanos: 0,
            batch_commands_max: options.batch_commands_max.clamp(1, BATCH_COMMANDS_MAX),
            on_commit: std::mem::take(&mut options.on_commit),
            stats: Arc::clone(&stats),
            stopped: None,
            storage_full: None,
            storage_full_retry: options.storage_full_retry,
        };
        let thread = std::thread::Builder::new()
            .name("book-sequencer".to_string())
            .spawn(move || sequencer.run(requests))
            .map_err(EngineError::Spawn)?;
        Ok(EngineHandle { inbox, stats, thread: Arc::new(Mutex::new(Some(thread))), files: None, snapshot_writer })
    }

    /// The door through which a book outside the engine writes the periodic snapshots: `Some`
    /// only when the engine was started with `PeriodicSnapshots::External` and a snapshot store
    /// (`crate::snapshot_writer`).
    pub fn snapshot_writer(&self) -> Option<SnapshotWriter> {
        self.snapshot_writer.clone()
    }

    pub(crate) fn with_files(mut self, files: Arc<crate::retention::JournalFiles>) -> EngineHandle {
        self.files = Some(files);
        self
    }

    pub(crate) fn stats_shared(&self) -> Arc<EngineStats> {
        Arc::clone(&self.stats)
    }

    /// Registers a reader's checkpoint that holds journal retention back: no segment holding a
    /// position at or after it is archived (`crate::retention`). No effect on an engine without
    /// a data directory.
    pub fn hold_retention(&self, hold: crate::retention::RetentionHold) {
        if let Some(files) = &self.files {
            files.hold(hold);
        }
    }

    /// Every position below this is archived, out of the live journal: the first live position
    /// (0 for an engine without a data directory).
    pub fn archived_below(&self) -> Position {
        self.files.as_ref().map_or(0, |files| files.archived_below.load(Ordering::SeqCst))
    }

    /// Recomputes the journal's hash chain from position 0 up to the engine's position (across
    /// archived and live segments, read from the files on the calling thread, never on the
    /// sequencer's) and compares it with the engine's head. Blocking: call it off async
    /// runtimes' workers. Without a data directory the records are read page by page through
    /// the sequencer.
    pub fn verify_chain(&self) -> Result<crate::retention::ChainVerification, EngineError> {
        let (expected, end) = self.chain_head()?;
        if let Some(files) = &self.files {
            return crate::retention::verify_history(&files.history, expected, end);
        }
        let mut head = crate::recovery::CHAIN_HEAD_GENESIS;
        let mut position: Position = 0;
        let mut reason = None;
        let mut problem = None;
        while position < end && reason.is_none() {
            let page = match self.journal_page(position, AUDIT_PAGE_RECORDS_MAX) {
                Ok(page) => page,
                Err(EngineError::Journal(JournalError::Corrupt { position, segment, .. })) => {
                    reason = Some(format!("the journal record at position {position} is corrupt"));
                    problem = Some((position, Some(segment)));
                    break;
                }
                Err(EngineError::Journal(JournalError::Pruned { requested, first_available })) => {
                    reason = Some(format!("the journal records before position {first_available} were removed"));
                    problem = Some((requested, None));
                    break;
                }
                Err(other) => return Err(other),
            };
            let before = position;
            for (at, record) in &page {
                if *at != position || *at >= end {
                    break;
                }
                head = chain_next(&head, *at, record);
                position += 1;
            }
            if position == before {
                reason = Some(format!("the journal has no record at position {position}"));
                problem = Some((position, None));
            }
        }
        if reason.is_none() && head != expected {
            reason = Some("the head recomputed from the journal differs from the engine's".to_owned());
        }
        Ok(crate::retention::ChainVerification {
            verified: reason.is_none(),
            records: position,
            head,
            expected_head: expected,
            reason,
            problem,
        })
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Enqueues a command without blocking; fails fast with `Overloaded` when the inbox is full.
    pub fn try_submit(&self, command: impl Into<Submission>) -> Result<oneshot::Receiver<Outcome>, EngineError> {
        let (reply, receiver) = oneshot::channel();
        self.try_send_command(command.into(), Responder::Reply(reply))?;
        Ok(receiver)
    }

    fn try_send_command(&self, submission: Submission, responder: Responder) -> Result<(), EngineError> {
        self.stats.inbox_depth.fetch_add(1, Ordering::Relaxed);
        self.inbox.try_send(Request::Command { submission, reply: Some(responder) }).map_err(|error| {
            self.stats.inbox_depth.fetch_sub(1, Ordering::Relaxed);
            match error {
                TrySendError::Full(_) => EngineError::Overloaded,
                TrySendError::Disconnected(_) => EngineError::ShutDown,
            }
        })
    }

    /// `try_submit`, and once the reply is durable, `then(book, reply)` on the sequencer thread
    /// against the book as that batch left it; its result comes back with the reply. One trip
    /// through the inbox instead of a command and then a read. `then` must be quick: the
    /// sequencer waits for it.
    pub fn try_submit_then<R: Send + 'static>(
        &self,
        command: impl Into<Submission>,
        then: impl FnOnce(&Book, &Reply) -> R + Send + 'static,
    ) -> Result<oneshot::Receiver<OutcomeWith<R>>, EngineError> {
        let (sender, receiver) = oneshot::channel();
        let then: ThenFn = Box::new(move |book, outcome| {
            let _ = sender.send(outcome.map(|reply| {
                let view = then(book, &reply);
                (reply, view)
            }));
        });
        self.try_send_command(command.into(), Responder::Then(then))?;
        Ok(receiver)
    }

    /// Enqueues a command, waiting for room in the inbox.
    pub fn submit_waiting(&self, command: impl Into<Submission>) -> Result<oneshot::Receiver<Outcome>, EngineError> {
        let (reply, receiver) = oneshot::channel();
        self.stats.inbox_depth.fetch_add(1, Ordering::Relaxed);
        let submission = command.into();
        self.inbox.send(Request::Command { submission, reply: Some(Responder::Reply(reply)) }).map_err(|_| {
            self.stats.inbox_depth.fetch_sub(1, Ordering::Relaxed);
            EngineError::ShutDown
        })?;
        Ok(receiver)
    }

    /// Submits a command and blocks until its reply is durable.
    pub fn submit(&self, command: impl Into<Submission>) -> Outcome {
        self.submit_waiting(command)?.recv().map_err(|_| EngineError::ShutDown)?
    }

    /// Runs `read` on the sequencer thread against committed state, and returns its result.
    pub fn read<R: Send + 'static>(&self, read: impl FnOnce(&Book) -> R + Send + 'static) -> Result<R, EngineError> {
        let (sender, receiver) = oneshot::channel();
        let job: ReadFn = Box::new(move |book| {
            let _ = sender.send(read(book));
        });
        self.enqueue(Request::Read(job), true)?;
        receiver.recv().map_err(|_| EngineError::ShutDown)
    }

    /// `read` for async callers: await the receiver instead of blocking a runtime thread.
    pub fn read_async<R: Send + 'static>(
        &self,
        read: impl FnOnce(&Book) -> R + Send + 'static,
    ) -> Result<oneshot::Receiver<R>, EngineError> {
        let (sender, receiver) = oneshot::channel();
        let job: ReadFn = Box::new(move |book| {
            let _ = sender.send(read(book));
        });
        self.enqueue(Request::Read(job), false)?;
        Ok(receiver)
    }

    /// The head of the journal's hash chain and the position after the last record it covers
    /// (the journal's next position): both as of the last durable batch.
    pub fn chain_head(&self) -> Result<(ChainHead, Position), EngineError> {
        self.inspect_waiting(|view| view.chain_head())?.recv().map_err(|_| EngineError::ShutDown)
    }

    /// `chain_head` for async callers: fails fast with `Overloaded` when the inbox is full.
    pub fn chain_head_async(&self) -> Result<oneshot::Receiver<(ChainHead, Position)>, EngineError> {
        self.inspect_async(|view| view.chain_head())
    }

    /// Up to `limit` raw journal records from position `from` on, oldest first, read on the
    /// sequencer thread. `limit` is cut to `AUDIT_PAGE_RECORDS_MAX`, and a page ends early once
    /// it holds `AUDIT_PAGE_BYTES_MAX` bytes; empty when `from` is at or past the end.
    pub fn journal_page(&self, from: Position, limit: usize) -> Result<JournalPage, EngineError> {
        if let Some(files) = self.files.as_ref().filter(|files| from < files.archived_below.load(Ordering::SeqCst)) {
            // Archived records are read (and decompressed) here, never on the sequencer.
            return files.archived_page(from, limit.min(AUDIT_PAGE_RECORDS_MAX), AUDIT_PAGE_BYTES_MAX);
        }
        self.inspect_waiting(move |view| view.journal_page(from, limit))?.recv().map_err(|_| EngineError::ShutDown)?
    }

    /// `journal_page` for async callers: fails fast with `Overloaded` when the inbox is full.
    pub fn journal_page_async(
        &self,
        from: Position,
        limit: usize,
    ) -> Result<oneshot::Receiver<Result<JournalPage, EngineError>>, EngineError> {
        if let Some(files) = self.files.as_ref().filter(|files| from < files.archived_below.load(Ordering::SeqCst)) {
            // Archived records are read on a thread of their own, never on the sequencer nor on
            // the caller's (an async runtime's worker).
            let files = Arc::clone(files);
            let (sender, receiver) = oneshot::channel();
            std::thread::Builder::new()
                .name("journal-archive-read".to_owned())
                .spawn(move || {
                    let page = files.archived_page(from, limit.min(AUDIT_PAGE_RECORDS_MAX), AUDIT_PAGE_BYTES_MAX);
                    let _ = sender.send(page);
                })
                .map_err(EngineError::Spawn)?;
            return Ok(receiver);
        }
        self.inspect_async(move |view| view.journal_page(from, limit))
    }

    fn inspect_waiting<R: Send + 'static>(
        &self,
        inspect: impl FnOnce(&dyn JournalView) -> R + Send + 'static,
    ) -> Result<oneshot::Receiver<R>, EngineError> {
        self.inspect(inspect, true)
    }

    fn inspect_async<R: Send + 'static>(
        &self,
        inspect: impl FnOnce(&dyn JournalView) -> R + Send + 'static,
    ) -> Result<oneshot::Receiver<R>, EngineError> {
        self.inspect(inspect, false)
    }

    fn inspect<R: Send + 'static>(
        &self,
        inspect: impl FnOnce(&dyn JournalView) -> R + Send + 'static,
        wait: bool,
    ) -> Result<oneshot::Receiver<R>, EngineError> {
        let (sender, receiver) = oneshot::channel();
        let job: InspectFn = Box::new(move |view| {
            let _ = sender.send(inspect(view));
        });
        self.enqueue(Request::Inspect(job), wait)?;
        Ok(receiver)
    }

    /// Puts a request in the inbox: waiting for room, or failing fast with `Overloaded`.
    fn enqueue(&self, request: Request, wait: bool) -> Result<(), EngineError> {
        if wait {
            return self.inbox.send(request).map_err(|_| EngineError::ShutDown);
        }
        self.inbox.try_send(request).map_err(|error| match error {
            TrySendError::Full(_) => EngineError::Overloaded,
            TrySendError::Disconnected(_) => EngineError::ShutDown,
        })
    }

    /// Takes a snapshot now; returns the journal position it covers.
    pub fn snapshot(&self) -> Result<Position, EngineError> {
        let (sender, receiver) = oneshot::channel();
        self.enqueue(Request::Snapshot(sender), true)?;
        receiver.recv().map_err(|_| EngineError::ShutDown)?
    }

    /// Stops the sequencer after the requests already queued, taking a final snapshot.
    pub fn shutdown(&self) {
        if let Some(files) = &self.files {
            files.stop();
        }
        let _ = self.inbox.send(Request::Shutdown);
        let thread = self.thread.lock().ok().and_then(|mut thread| thread.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The sequencer's end of the snapshot follower.
struct FollowerLink {
    /// `None` once detached: the follower fell behind, failed, or the engine is stopping.
    sender: Option<mpsc::Sender<ToFollower>>,
    thread: JoinHandle<()>,
    /// `EngineOptions::follower_queue_commands_max`.
    queue_commands_max: u64,
}

struct Sequencer {
    book: Book,
    journal: Box<dyn Journal>,
    /// Every snapshot goes through it; `None` without a snapshot store.
    snapshots: Option<SnapshotWriter>,
    /// Writes the periodic snapshots; `None` without a snapshot store, or when an external
    /// writer does (`PeriodicSnapshots::External`).
    follower: Option<FollowerLink>,
    clock: Box<dyn Clock>,
    last_now: u64,
    next_sequence: u64,
    /// Head of the journal's hash chain over every durable record.
    chain_head: ChainHead,
    /// With a detached follower: the sequence up to which due snapshots were counted skipped.
    skipped_through: u64,
    /// Time of this cycle's journal append, for `EngineStats::sequencer_work_nanos_max`.
    cycle_sync_nanos: u64,
    batch_commands_max: usize,
    on_commit: Vec<CommitHook>,
    stats: Arc<EngineStats>,
    /// Set after a journal failure: why the engine refuses everything now.
    stopped: Option<String>,
    /// Set while the journal's disk is full.
    storage_full: Option<StorageFull>,
    storage_full_retry: Duration,
}

/// The journal's disk was full at the last append or space check.
struct StorageFull {
    checked: Instant,
    /// Size of the record that did not fit: the space check asks for at least this.
    record_bytes: usize,
}

/// One batch being assembled.
struct Pending {
    /// The batch's journal record: a header that `commit` fills in, then every command of
    /// `commands` with its origin, encoded as it was taken.
    record: Vec<u8>,
    /// The most `record` may hold: the journal's `payload_bytes_max`.
    record_bytes_max: usize,
    /// What `record` is allocated with, and shrunk back to after an oversized command.
    record_capacity: usize,
    /// The command that would have taken `record` past `record_bytes_max`: it starts the next
    /// batch, and nothing more is taken into this one.
    carried: Option<(Command, Origin, Option<Responder>)>,
    commands: Vec<Command>,
    /// Who submitted each of `commands`.
    origins: Vec<Origin>,
    replies: Vec<Option<Responder>>,
    reads: Vec<ReadFn>,
    inspections: Vec<InspectFn>,
    snapshots: Vec<oneshot::Sender<Result<Position, EngineError>>>,
    shutdown: bool,
}

impl Pending {
    fn new(record_bytes_max: usize, record_capacity: usize) -> Pending {
        let record_capacity = record_capacity.min(record_bytes_max);
        let mut record = Vec::with_capacity(record_capacity);
        begin_batch(&mut record);
        Pending {
            record,
            record_bytes_max,
            record_capacity,
            carried: None,
            commands: Vec::new(),
            origins: Vec::new(),
            replies: Vec::new(),
            reads: Vec::new(),
            inspections: Vec::new(),
            snapshots: Vec::new(),
            shutdown: false,
        }
    }

    /// Whether the batch takes more requests: not after a shutdown, nor once a command had to
    /// wait for the next batch (the requests after it must not pass it).
    fn open(&self) -> bool {
        !self.shutdown && self.carried.is_none()
    }

    fn add(&mut self, request: Request, stats: &EngineStats, book: &Book) {
        match request {
            Request::Command { submission, reply } => {
                stats.inbox_depth.fetch_sub(1, Ordering::Relaxed);
                self.take_command(submission.command, submission.origin, reply, book);
            }
            Request::Read(read) => self.reads.push(read),
            Request::Inspect(inspect) => self.inspections.push(inspect),
            Request::Snapshot(reply) => self.snapshots.push(reply),
            // Only a replica engine is sent these (its `ReplicaFeed` and forwarded answers).
            Request::Record { .. } | Request::Wake => {}
            Request::Shutdown => self.shutdown = true,
        }
    }

    /// Encodes a command into the batch's record and adds it to the batch, or, when it would
    /// take the record past `record_bytes_max`, carries it to the next batch; a command that
    /// would not fit even alone is refused without being decided.
    fn take_command(&mut self, command: Command, origin: Origin, reply: Option<Responder>, book: &Book) {
        let before = self.record.len();
        let bytes = encode_batch_entry(&command, &origin, &mut self.record);
        if self.record.len() <= self.record_bytes_max {
            self.commands.push(command);
            self.origins.push(origin);
            self.replies.push(reply);
            return;
        }
        // Cut it off again: the batch is what it was.
        self.record.truncate(before);
        let max = self.record_bytes_max - BATCH_HEADER_BYTES;
        if bytes <= max {
            self.carried = Some((command, origin, reply));
            return;
        }
        self.record.shrink_to(self.record_capacity);
        if let Some(reply) = reply {
            reply.fail(book, EngineError::CommandTooLarge { bytes, max });
        }
    }

    /// Starts a new batch with the command carried from the last one, if any; whether there
    /// was one.
    fn take_carried(&mut self, book: &Book) -> bool {
        match self.carried.take() {
            Some((command, origin, reply)) => {
                self.take_command(command, origin, reply, book);
                true
            }
            None => false,
        }
    }

    fn clear(&mut self) {
        self.record.truncate(BATCH_HEADER_BYTES);
        self.commands.clear();
        self.origins.clear();
        self.replies.clear();
        self.reads.clear();
        self.inspections.clear();
        self.snapshots.clear();
    }
}

impl Sequencer {
    fn run(mut self, requests: Receiver<Request>) {
        let mut pending = Pending::new(self.journal.payload_bytes_max(), 64 * self.batch_commands_max);
        let mut events: Vec<BookEvent> = Vec::with_capacity(4 * self.batch_commands_max);
        let mut scratch = Vec::new();
        loop {
            // A command that did not fit in the last batch starts this one, without waiting.
            let carried = pending.take_carried(&self.book);
            // Wait for work, but no longer than the next in-play delay that falls due or, while
            // the disk is full, than the next check for room.
            let wait = match (&self.storage_full, self.book.next_delay_due()) {
                _ if self.stopped.is_some() => None,
                (Some(_), _) => Some(self.storage_full_retry),
                (None, Some(due)) => Some(Duration::from_millis(due.saturating_sub(self.clock.now_ms()))),
                (None, None) => None,
            };
            let first = match wait {
                _ if carried => None,
                Some(wait) => match requests.recv_timeout(wait) {
                    Ok(request) => Some(request),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match requests.recv() {
                    Ok(request) => Some(request),
                    Err(_) => break,
                },
            };
            let cycle = Instant::now();
            let cycle_cpu = thread_cpu_nanos();
            match first {
                Some(request) => pending.add(request, &self.stats, &self.book),
                None if carried => {}
                // Nothing arrived while the disk is full: only check for room.
                None if self.storage_full.is_some() => {
                    self.space_is_back();
                    continue;
                }
                // The delay fell due with nothing else to do: decide it with a tick, journaled
                // like any command so that replay ends the delay at the same time.
                None => pending.take_command(Command::Tick, Origin::system("sequencer"), None, &self.book),
            }
            while pending.commands.len() < self.batch_commands_max && pending.open() {
                match requests.try_recv() {
                    Ok(request) => pending.add(request, &self.stats, &self.book),
                    Err(_) => break,
                }
            }
            self.commit(&mut pending, &mut events, &mut scratch);
            for read in pending.reads.drain(..) {
                if self.stopped.is_none() {
                    read(&self.book);
                }
            }
            // Unlike reads, these see only durable data (the journal and the chain over it), so
            // they still run after a failed append.
            for inspect in pending.inspections.drain(..) {
                inspect(&self);
            }
            for reply in pending.snapshots.drain(..) {
                self.request_snapshot(reply);
            }
            let pause = cycle.elapsed().as_nanos() as u64;
            self.stats.sequencer_pause_nanos_max.fetch_max(pause, Ordering::Relaxed);
            self.stats.sequencer_pause_nanos_max_recent.fetch_max(pause, Ordering::Relaxed);
            let work = pause.saturating_sub(std::mem::take(&mut self.cycle_sync_nanos));
            self.stats.sequencer_work_nanos_max.fetch_max(work, Ordering::Relaxed);
            self.stats.sequencer_work_nanos_max_recent.fetch_max(work, Ordering::Relaxed);
            let cpu = thread_cpu_nanos().saturating_sub(cycle_cpu);
            self.stats.sequencer_cpu_nanos_max.fetch_max(cpu, Ordering::Relaxed);
            self.stats.sequencer_cpu_nanos_max_recent.fetch_max(cpu, Ordering::Relaxed);
            if pending.shutdown {
                break;
            }
            pending.clear();
        }
        // Let the follower finish what it was handed (and any snapshot it owes), so that one
        // writer at a time uses the store; then the final snapshot, here, since nothing else
        // runs any more.
        if let Some(link) = self.follower.take() {
            drop(link.sender);
            let _ = link.thread.join();
        }
        if self.stopped.is_none() {
            let _ = self.take_snapshot();
        }
    }

    /// An explicit `snapshot()`: by the follower when it is attached (after every batch it was
    /// handed, so at the sequencer's current position), else here.
    fn request_snapshot(&mut self, reply: oneshot::Sender<Result<Position, EngineError>>) {
        if self.stopped.is_none() {
            if let Some(sender) = self.follower.as_ref().and_then(|link| link.sender.as_ref()) {
                match sender.send(ToFollower::Snapshot(reply)) {
                    Ok(()) => return,
                    Err(mpsc::SendError(ToFollower::Snapshot(reply))) => {
                        // The follower stopped.
                        self.detach_follower();
                        let _ = reply.send(self.take_snapshot());
                        return;
                    }
                    Err(_) => unreachable!("send gives back what it was given"),
                }
            }
        }
        let _ = reply.send(self.take_snapshot());
    }

    /// Hands a durable batch to the follower without ever waiting for it: past its bound, or
    /// once it stopped, the follower is detached instead.
    fn hand_to_follower(&mut self, batch: DurableBatch) {
        let Some(link) = &self.follower else {
            return;
        };
        let Some(sender) = &link.sender else {
            return;
        };
        let commands = batch.commands.len() as u64;
        let queued = self.stats.follower_queue_commands.fetch_add(commands, Ordering::Relaxed);
        if queued + commands > link.queue_commands_max || sender.send(ToFollower::Batch(batch)).is_err() {
            self.stats.follower_queue_commands.fetch_sub(commands, Ordering::Relaxed);
            self.detach_follower();
        }
    }

    /// Stops feeding the follower (it is too far behind, or it stopped): it applies what it
    /// was handed and ends. Periodic snapshots are skipped from now on, and counted.
    fn detach_follower(&mut self) {
        if let Some(link) = &mut self.follower {
            if link.sender.take().is_some() {
                self.stats.follower_detached.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn commit(&mut self, pending: &mut Pending, events: &mut Vec<BookEvent>, scratch: &mut Vec<u8>) {
        if pending.commands.is_empty() {
            return;
        }
        if let Some(reason) = &self.stopped {
            for reply in pending.replies.drain(..).flatten() {
                reply.fail(&self.book, EngineError::Stopped(reason.clone()));
            }
            return;
        }
        if self.storage_full.as_ref().is_some_and(|full| full.checked.elapsed() < self.storage_full_retry)
            || (self.storage_full.is_some() && !self.space_is_back())
        {
            for reply in pending.replies.drain(..).flatten() {
                reply.fail(&self.book, EngineError::StorageFull);
            }
            return;
        }
        // Book time never goes backwards, whatever the wall clock does.
        let now = self.clock.now_ms().max(self.last_now);
        self.last_now = now;
        events.clear();
        let mut replies: Vec<Reply> = Vec::with_capacity(pending.commands.len());
        let mut digest = 0u64;
        for command in &pending.commands {
            let reply = self.book.apply(now, command, events);
            digest = reply_digest(digest, &reply, scratch);
            replies.push(reply);
        }
        let first_sequence = self.next_sequence;
        debug_assert_eq!(pending.commands.len(), pending.origins.len());
        // The commands were encoded as they were taken; the header comes last.
        finish_batch(&mut pending.record, first_sequence, now, digest, pending.commands.len());
        let record = &pending.record;
        debug_assert!(record.len() <= self.journal.payload_bytes_max());
        let started = Instant::now();
        let appended = self.journal.append(record);
        let sync_nanos = started.elapsed().as_nanos() as u64;
        self.cycle_sync_nanos = sync_nanos;
        let position = match appended {
            Ok(position) => position,
            Err(JournalError::StorageFull { .. }) => {
                self.refuse_for_full_disk(pending, record.len());
                return;
            }
            Err(error) => {
                // The book has applied a batch that is not durable: it must never be served.
                // Stop, refuse this batch and everything after it; a restart recovers the book
                // from the journal, which does not contain this batch.
                let reason = error.to_string();
                for reply in pending.replies.drain(..).flatten() {
                    reply.fail(&self.book, EngineError::Stopped(reason.clone()));
                }
                self.stop(reason);
                return;
            }
        };
        self.chain_head = chain_next(&self.chain_head, position, record);
        let count = pending.commands.len() as u64;
        self.next_sequence += count;
        self.stats.committed_position.store(position + 1, Ordering::Release);
        self.stats.last_batch_timestamp_ms.store(now, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.commands.fetch_add(count, Ordering::Relaxed);
        self.stats.last_batch_commands.store(count, Ordering::Relaxed);
        self.stats.journal_sync_nanos_total.fetch_add(sync_nanos, Ordering::Relaxed);
        self.stats.journal_sync_nanos_max.fetch_max(sync_nanos, Ordering::Relaxed);
        for (reply, responder) in replies.into_iter().zip(pending.replies.drain(..)) {
            match responder {
                Some(Responder::Reply(sender)) => {
                    let _ = sender.send(Ok(reply));
                }
                Some(Responder::Then(then)) => then(&self.book, Ok(reply)),
                None => {}
            }
        }
        if !self.on_commit.is_empty() {
            let committed = Committed {
                position,
                commands: count,
                sync_nanos,
                first_sequence,
                timestamp: now,
                events,
                book: &self.book,
            };
            for on_commit in &mut self.on_commit {
                on_commit(&committed);
            }
        }
        if self.follower.is_some() {
            // The follower counts commands and writes the periodic snapshots itself.
            // Moved, not copied; the next batch's vector grows from empty as commands arrive.
            let commands = std::mem::take(&mut pending.commands);
            self.hand_to_follower(DurableBatch {
                position,
                first_sequence,
                timestamp: now,
                reply_digest: digest,
                commands,
                chain_head: self.chain_head,
            });
        }
        self.periodic_snapshot();
    }

    /// The sequencer's part in periodic snapshots: none with an attached follower (it writes
    /// them); with a detached one, skip and count the snapshot due (never encode here in steady
    /// state: recovery replays a longer tail instead); with an external writer, write one here
    /// only when the external writer's are overdue (`crate::snapshot_writer`).
    fn periodic_snapshot(&mut self) {
        let Some(writer) = &self.snapshots else { return };
        match &self.follower {
            Some(link) if link.sender.is_some() => {}
            Some(_) => {
                let since =
                    writer.commands_since_snapshot(self.next_sequence).min(self.next_sequence - self.skipped_through);
                if writer.every_commands() > 0 && since >= writer.every_commands() {
                    self.stats.snapshots_skipped.fetch_add(1, Ordering::Relaxed);
                    self.skipped_through = self.next_sequence;
                }
            }
            None => {
                if !writer.overdue(self.next_sequence) {
                    return;
                }
                let position = self.journal.next_position();
                match writer.start_catch_up(position, self.next_sequence, *self.book.config()) {
                    Some(true) => {
                        self.stats.snapshots_overdue.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(false) => {}
                    None => {
                        let saved = writer.try_save_as(Writer::Sequencer, self.at(position));
                        if let Ok(Some(_)) = saved {
                            self.stats.snapshots_overdue.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }

    /// The append found the disk full and left the journal as it was: refuse the batch, and
    /// since the book decided it, rebuild the book from what is durable.
    fn refuse_for_full_disk(&mut self, pending: &mut Pending, record_bytes: usize) {
        self.stats.storage_full.store(true, Ordering::SeqCst);
        self.stats.storage_full_events.fetch_add(1, Ordering::Relaxed);
        self.storage_full = Some(StorageFull { checked: Instant::now(), record_bytes });
        for reply in pending.replies.drain(..).flatten() {
            reply.fail(&self.book, EngineError::StorageFull);
        }
        let rebuilt =
            recover(self.journal.as_ref(), self.snapshots.as_ref().map(SnapshotWriter::store), *self.book.config());
        match rebuilt {
            Ok(recovered)
                if recovered.report.next_sequence == self.next_sequence
                    && recovered.report.chain_head == self.chain_head =>
            {
                self.book = recovered.book;
            }
            Ok(recovered) if recovered.report.next_sequence < self.next_sequence => self.stop(format!(
                "after a full disk, an acknowledged command is missing from the journal: it recovers to \
                 sequence {} but the engine was at {}",
                recovered.report.next_sequence, self.next_sequence
            )),
            Ok(recovered) => self.stop(format!(
                "after a full disk, the journal recovers to sequence {} and chain head {:02x?} but the engine \
                 was at {} and {:02x?}",
                recovered.report.next_sequence, recovered.report.chain_head, self.next_sequence, self.chain_head
            )),
            Err(error) => self.stop(format!("after a full disk, rebuilding the book failed: {error}")),
        }
    }

    /// While the disk is full: whether it has room again (checked now), which ends the state.
    fn space_is_back(&mut self) -> bool {
        let Some(full) = &mut self.storage_full else {
            return true;
        };
        match self.journal.check_space(full.record_bytes) {
            Ok(()) => {
                self.storage_full = None;
                self.stats.storage_full.store(false, Ordering::SeqCst);
                true
            }
            Err(JournalError::StorageFull { .. }) => {
                full.checked = Instant::now();
                false
            }
            Err(error) => {
                self.stop(format!("checking the journal's disk for room failed: {error}"));
                false
            }
        }
    }

    fn stop(&mut self, reason: String) {
        if let Ok(mut stop_reason) = self.stats.stop_reason.lock() {
            *stop_reason = Some(reason.clone());
        }
        self.stats.stopped.store(true, Ordering::SeqCst);
        self.stopped = Some(reason);
    }

    fn chain_head(&self) -> (ChainHead, Position) {
        (self.chain_head, self.journal.next_position())
    }

    fn journal_page(&self, from: Position, limit: usize) -> Result<JournalPage, EngineError> {
        read_journal_page(self.journal.as_ref(), from, limit)
    }

    /// The book as a snapshot at `position` records it.
    fn at(&self, position: Position) -> BookAt<'_> {
        BookAt { position, next_sequence: self.next_sequence, chain_head: &self.chain_head, book: &self.book }
    }

    fn take_snapshot(&mut self) -> Result<Position, EngineError> {
        if let Some(reason) = &self.stopped {
            return Err(EngineError::Stopped(reason.clone()));
        }
        let position = self.journal.next_position();
        if let Some(writer) = &self.snapshots {
            writer.save_as(Writer::Sequencer, self.at(position))?;
        }
        Ok(position)
    }
}

impl JournalView for Sequencer {
    fn chain_head(&self) -> (ChainHead, Position) {
        Sequencer::chain_head(self)
    }

    fn journal_page(&self, from: Position, limit: usize) -> Result<JournalPage, EngineError> {
        Sequencer::journal_page(self, from, limit)
    }
}

/// Up to `limit` records of `journal` from `from` on (at most `AUDIT_PAGE_RECORDS_MAX`, ending
/// early past `AUDIT_PAGE_BYTES_MAX` bytes).
pub(crate) fn read_journal_page(
    journal: &dyn Journal,
    from: Position,
    limit: usize,
) -> Result<JournalPage, EngineError> {
    let limit = limit.min(AUDIT_PAGE_RECORDS_MAX);
    let mut page = JournalPage::new();
    if limit == 0 {
        return Ok(page);
    }
    let mut bytes = 0usize;
    let mut full = false;
    let read = journal.read_from(from, &mut |position, payload| {
        page.push((position, payload.to_vec()));
        bytes += payload.len();
        if page.len() >= limit || bytes >= AUDIT_PAGE_BYTES_MAX {
            // `read_from` visits up to the end unless the visitor fails: stop it here with an
            // error that `full` marks as ours.
            full = true;
            return Err(JournalError::Poisoned);
        }
        Ok(())
    });
    match read {
        Ok(()) => Ok(page),
        Err(_) if full => Ok(page),
        Err(error) => Err(EngineError::Journal(error)),
    }
}
