//! Who writes the periodic snapshots, and the one door every snapshot of an engine's store goes
//! through.
//!
//! By default the engine's own snapshot follower writes them (`crate::follower`): a second book
//! fed every durable batch. A process that already keeps a book at the journal's position for
//! another reason (`serve`'s in-process projector decides every batch again to build its read
//! models) need not pay for a second one: with [`PeriodicSnapshots::External`] the engine runs
//! no follower and hands out a [`SnapshotWriter`] instead, through which that book writes them.
//!
//! Every writer (the sequencer, the follower, an external one) saves through the same
//! [`SnapshotWriter`], which holds the store's lock (one writer at a time: the store keeps the
//! newest few and prunes the rest, and two saves would race on that) and counts each save under
//! its writer in `EngineStats`.
//!
//! An external writer's book may be behind the sequencer, or may stop (its store failed, it
//! was stopped). Two rules keep that safe:
//! - it only writes at a position the journal has made durable
//!   (`EngineStats::committed_position`): a reader of the journal's files sees a record a moment
//!   before its sync returns, and a snapshot past the journal's durable end would, after a
//!   machine crash, describe commands the journal lost (the engine refuses to open then);
//! - if none is written for [`SNAPSHOT_OVERDUE_FACTOR`] times `snapshot_every_commands`, one is
//!   written without it (counted in `EngineStats::snapshots_overdue`), so that recovery stays
//!   bounded whatever the external writer does. With the journal's files known
//!   ([`SnapshotWriter::catch_up_from`]; `open_data_dir` sets them) a catch-up thread writes it
//!   (`book-catch-up`, at `FOLLOWER_NICE`): it loads the newest snapshot, replays the durable
//!   journal after it from the files, writes a snapshot there and ends. The sequencer never
//!   waits for it; the process holds one more book while it runs. Without the files (an engine
//!   on a journal of its own, tests) the sequencer writes it, pausing every command meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::Instant;

use book::{Book, Config};
use journal::{History, JournalError, Position, SnapshotStore};

use crate::error::EngineError;
use crate::recovery::{decode_snapshot_payload, save_snapshot_payload, ChainHead, Replica, CHAIN_HEAD_GENESIS};
use crate::sequencer::EngineStats;

/// A book and where it stands in the journal: what a snapshot records.
#[derive(Clone, Copy, Debug)]
pub struct BookAt<'a> {
    /// The journal position after the book's last batch.
    pub position: Position,
    /// The sequence number of the next command.
    pub next_sequence: u64,
    /// The journal's hash-chain head at `position`.
    pub chain_head: &'a ChainHead,
    pub book: &'a Book,
}

/// A replica where it stands, as a snapshot records it.
fn replica_at(replica: &Replica) -> BookAt<'_> {
    BookAt {
        position: replica.position(),
        next_sequence: replica.next_sequence(),
        chain_head: replica.chain_head_ref(),
        book: replica.book(),
    }
}

/// Who writes an engine's periodic snapshots (`EngineOptions::periodic_snapshots`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeriodicSnapshots {
    /// The engine's snapshot follower, a second book on its own thread (`crate::follower`).
    #[default]
    Follower,
    /// Whoever holds the engine's [`SnapshotWriter`] (`EngineHandle::snapshot_writer`), from a
    /// book of its own that follows the journal; the engine keeps no second book. The
    /// sequencer still writes one when none was written for [`SNAPSHOT_OVERDUE_FACTOR`] times
    /// the interval, and at shutdown.
    External,
}

impl PeriodicSnapshots {
    /// As `serve` chooses: an in-process projector's follower book writes them; without one,
    /// the snapshot follower.
    pub fn by_projector_if(projector_in_process: bool) -> PeriodicSnapshots {
        if projector_in_process {
            PeriodicSnapshots::External
        } else {
            PeriodicSnapshots::Follower
        }
    }
}

/// With [`PeriodicSnapshots::External`], how many snapshot intervals (`snapshot_every_commands`)
/// may pass without a snapshot before one is written without it (by a catch-up thread, or by the
/// sequencer on an engine that does not know its journal's files). Four: an external writer a
/// few intervals behind (a projector catching up) is left to catch up; one that stopped costs a
/// catch-up per four intervals, and recovery never replays much more than five.
pub const SNAPSHOT_OVERDUE_FACTOR: u64 = 4;

/// Who wrote a snapshot, for `EngineStats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Writer {
    Sequencer,
    Follower,
    External,
    CatchUp,
}

/// What the lock guards: where the newest snapshot is.
#[derive(Debug)]
struct Newest {
    /// Journal position of the newest snapshot written since start or found at start (0: none).
    position: Position,
}

#[derive(Debug)]
struct Inner {
    store: Arc<SnapshotStore>,
    newest: Mutex<Newest>,
    stats: Arc<EngineStats>,
    every_commands: u64,
    /// Where the catch-up thread reads the journal (`catch_up_from`).
    history: OnceLock<History>,
    /// A catch-up thread is running.
    catching_up: AtomicBool,
}

/// The door to an engine's snapshot store: every snapshot the engine's books write goes
/// through it, one at a time. Cheap to clone. See the module documentation.
#[derive(Clone, Debug)]
pub struct SnapshotWriter(Arc<Inner>);

impl SnapshotWriter {
    /// `next_sequence`: the sequence the book starts at (commands are counted from it, as the
    /// follower counts them from start).
    pub(crate) fn new(
        store: Arc<SnapshotStore>,
        stats: Arc<EngineStats>,
        every_commands: u64,
        next_sequence: u64,
    ) -> Result<SnapshotWriter, EngineError> {
        let position = store.highest_position()?;
        stats.snapshot_next_sequence.store(next_sequence, Ordering::Relaxed);
        Ok(SnapshotWriter(Arc::new(Inner {
            store,
            newest: Mutex::new(Newest { position }),
            stats,
            every_commands,
            history: OnceLock::new(),
            catching_up: AtomicBool::new(false),
        })))
    }

    /// Overdue snapshots are written by a catch-up thread reading the journal's files in
    /// `history` (live segments and archive) rather than on the sequencer thread. Set once;
    /// `open_data_dir` sets it.
    pub fn catch_up_from(&self, history: History) {
        let _ = self.0.history.set(history);
    }

    /// Starts a catch-up thread that writes a snapshot at durable position `end`, where the
    /// next sequence number is `next_sequence`: `Some(true)` when started, `Some(false)` when
    /// one is running already, `None` when the journal's files are not known (the caller writes
    /// it itself). `config`: the book's, for a journal with no snapshot yet.
    pub(crate) fn start_catch_up(&self, end: Position, next_sequence: u64, config: Config) -> Option<bool> {
        let history = self.0.history.get()?.clone();
        if self.0.catching_up.swap(true, Ordering::AcqRel) {
            return Some(false);
        }
        let writer = self.clone();
        let spawned = std::thread::Builder::new().name("book-catch-up".to_string()).spawn(move || {
            // Best effort, like the snapshot follower: it only competes more at normal priority.
            let _ = crate::follower::lower_thread_priority(crate::follower::FOLLOWER_NICE);
            // A failed save counts itself; a failed load or replay is counted here.
            let saved = match writer.replay_to(&history, end, next_sequence, config) {
                Ok(replica) => writer.save_as(Writer::CatchUp, replica_at(&replica)).map(|_| ()),
                Err(error) => {
                    writer.0.stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                    // Attempted: the next one is due as if this one had been written.
                    writer.0.stats.snapshot_next_sequence.fetch_max(next_sequence, Ordering::Relaxed);
                    Err(error)
                }
            };
            if let Err(error) = saved {
                tracing::warn!(%error, end, "the catch-up snapshot failed; the next interval tries again");
            }
            writer.0.catching_up.store(false, Ordering::Release);
        });
        if spawned.is_err() {
            self.0.catching_up.store(false, Ordering::Release);
            return None;
        }
        Some(true)
    }

    /// The catch-up's book: the newest snapshot at or before `end`, and the journal after it
    /// replayed from the files up to `end` (where the next sequence number must be
    /// `next_sequence`).
    fn replay_to(
        &self,
        history: &History,
        end: Position,
        next_sequence: u64,
        config: Config,
    ) -> Result<Replica, EngineError> {
        let load = self.0.store.load_at_or_before(end)?;
        let mut replica = match load.latest {
            Some((position, bytes)) => {
                let (sequence, chain_head, book) = decode_snapshot_payload(&bytes)?;
                Replica::starting_at(book, position, sequence, chain_head)
            }
            None => Replica::starting_at(Book::new(config), 0, 0, CHAIN_HEAD_GENESIS),
        };
        let mut failure = None;
        let from = replica.position();
        let read = history.read(from, end, &mut |position, payload| match replica.apply_record(position, payload) {
            Ok(()) => Ok(true),
            Err(error) => {
                failure = Some(error);
                Err(JournalError::Poisoned)
            }
        });
        if let Some(failure) = failure {
            return Err(failure);
        }
        let reached = read?;
        if reached != end || replica.position() != end || replica.next_sequence() != next_sequence {
            return Err(EngineError::Journal(JournalError::Corrupt {
                position: reached,
                segment: history.journal_dir.clone(),
                offset: 0,
                reason: format!(
                    "the catch-up snapshot read the journal to position {reached} (sequence {}), not to {end} (sequence \
                     {next_sequence})",
                    replica.next_sequence()
                ),
            }));
        }
        Ok(replica)
    }

    pub(crate) fn store(&self) -> &SnapshotStore {
        &self.0.store
    }

    /// Commands between periodic snapshots (`EngineOptions::snapshot_every_commands`; 0: none).
    pub fn every_commands(&self) -> u64 {
        self.0.every_commands
    }

    /// Commands decided since the newest snapshot, for a book at `next_sequence`.
    pub fn commands_since_snapshot(&self, next_sequence: u64) -> u64 {
        next_sequence.saturating_sub(self.0.stats.snapshot_next_sequence.load(Ordering::Relaxed))
    }

    /// Whether a book at `next_sequence` should write a periodic snapshot now.
    pub fn due(&self, next_sequence: u64) -> bool {
        self.0.every_commands > 0 && self.commands_since_snapshot(next_sequence) >= self.0.every_commands
    }

    /// Whether a snapshot is overdue for a book at `next_sequence`: none was written for
    /// [`SNAPSHOT_OVERDUE_FACTOR`] intervals.
    pub(crate) fn overdue(&self, next_sequence: u64) -> bool {
        self.0.every_commands > 0
            && self.commands_since_snapshot(next_sequence)
                >= self.0.every_commands.saturating_mul(SNAPSHOT_OVERDUE_FACTOR)
    }

    /// Writes a snapshot of a book outside the engine ([`PeriodicSnapshots::External`]).
    /// Returns the position written, or `None` when it was not written: the book's position is
    /// not durable yet (the caller tries again after a later batch), or a snapshot at or past it
    /// exists already. Waits while another writer is saving.
    pub fn save(&self, at: BookAt<'_>) -> Result<Option<Position>, EngineError> {
        if at.position > self.0.stats.committed_position.load(Ordering::Acquire) {
            return Ok(None);
        }
        self.save_locked(self.lock(), Writer::External, at)
    }

    /// A save by the engine's own threads (their position is always durable).
    pub(crate) fn save_as(&self, writer: Writer, at: BookAt<'_>) -> Result<Option<Position>, EngineError> {
        self.save_locked(self.lock(), writer, at)
    }

    /// [`SnapshotWriter::save_as`] unless another writer is saving right now (`Ok(None)`):
    /// for the sequencer's overdue snapshot, which must not wait for one in progress.
    pub(crate) fn try_save_as(&self, writer: Writer, at: BookAt<'_>) -> Result<Option<Position>, EngineError> {
        let newest = match self.0.newest.try_lock() {
            Ok(newest) => newest,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(None),
        };
        self.save_locked(newest, writer, at)
    }

    fn lock(&self) -> MutexGuard<'_, Newest> {
        self.0.newest.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save_locked(
        &self,
        mut newest: MutexGuard<'_, Newest>,
        writer: Writer,
        at: BookAt<'_>,
    ) -> Result<Option<Position>, EngineError> {
        let BookAt { position, next_sequence, chain_head, book } = at;
        // The sequencer's explicit and final snapshots are written even at the same position
        // (a caller asked for one); an external or catch-up writer behind the newest one writes
        // nothing.
        if matches!(writer, Writer::External | Writer::CatchUp) && newest.position >= position {
            return Ok(None);
        }
        let stats = &self.0.stats;
        let started = Instant::now();
        let saved = save_snapshot_payload(&self.0.store, position, next_sequence, chain_head, book);
        // Attempted: the next periodic one is an interval from here either way, so that a
        // failing disk gets one attempt per interval, not one per batch.
        stats.snapshot_next_sequence.fetch_max(next_sequence, Ordering::Relaxed);
        if let Err(error) = saved {
            stats.snapshot_failures.fetch_add(1, Ordering::Relaxed);
            return Err(error);
        }
        let nanos = started.elapsed().as_nanos() as u64;
        newest.position = newest.position.max(position);
        stats.snapshots.fetch_add(1, Ordering::Relaxed);
        let (count, total, max) = match writer {
            Writer::Sequencer => {
                (&stats.snapshots_sequencer, &stats.snapshot_nanos_total_sequencer, &stats.snapshot_nanos_max_sequencer)
            }
            Writer::Follower => {
                (&stats.snapshots_follower, &stats.snapshot_nanos_total_follower, &stats.snapshot_nanos_max_follower)
            }
            Writer::External => {
                (&stats.snapshots_external, &stats.snapshot_nanos_total_external, &stats.snapshot_nanos_max_external)
            }
            Writer::CatchUp => {
                (&stats.snapshots_catch_up, &stats.snapshot_nanos_total_catch_up, &stats.snapshot_nanos_max_catch_up)
            }
        };
        count.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(nanos, Ordering::Relaxed);
        max.fetch_max(nanos, Ordering::Relaxed);
        Ok(Some(position))
    }
}
