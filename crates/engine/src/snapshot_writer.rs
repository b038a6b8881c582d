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
//! - if none is written for [`SNAPSHOT_OVERDUE_FACTOR`] times `snapshot_every_commands`, the
//!   sequencer writes one itself (counted in `EngineStats::snapshots_overdue`): it pauses every
//!   command while it does, but recovery stays bounded whatever the external writer does.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use book::Book;
use journal::{Position, SnapshotStore};

use crate::error::EngineError;
use crate::recovery::{save_snapshot_payload, ChainHead};
use crate::sequencer::EngineStats;

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

/// With [`PeriodicSnapshots::External`], how many snapshot intervals (`snapshot_every_commands`)
/// may pass without a snapshot before the sequencer writes one itself. Four: an external writer
/// a few intervals behind (a projector catching up) is left to catch up; one that stopped costs
/// a sequencer pause per four intervals, and recovery never replays more than five.
pub const SNAPSHOT_OVERDUE_FACTOR: u64 = 4;

/// Who wrote a snapshot, for `EngineStats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Writer {
    Sequencer,
    Follower,
    External,
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
        Ok(SnapshotWriter(Arc::new(Inner { store, newest: Mutex::new(Newest { position }), stats, every_commands })))
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

    /// Whether the sequencer should write one itself, at `next_sequence`, because an external
    /// writer has not ([`SNAPSHOT_OVERDUE_FACTOR`]).
    pub(crate) fn overdue(&self, next_sequence: u64) -> bool {
        self.0.every_commands > 0
            && self.commands_since_snapshot(next_sequence)
                >= self.0.every_commands.saturating_mul(SNAPSHOT_OVERDUE_FACTOR)
    }

    /// Writes a snapshot of `book`, which is at journal `position` (after its last batch) with
    /// `next_sequence` and `chain_head` there, from a book outside the engine
    /// ([`PeriodicSnapshots::External`]). Returns the position written, or `None` when it was
    /// not written: `position` is not durable yet (the caller tries again after a later batch),
    /// or a snapshot at or past it exists already. Waits while another writer is saving.
    pub fn save(
        &self,
        position: Position,
        next_sequence: u64,
        chain_head: &ChainHead,
        book: &Book,
    ) -> Result<Option<Position>, EngineError> {
        if position > self.0.stats.committed_position.load(Ordering::Acquire) {
            return Ok(None);
        }
        let newest = self.lock();
        self.save_locked(newest, Writer::External, position, next_sequence, chain_head, book)
    }

    /// A save by the engine's own sequencer or follower (their position is always durable).
    pub(crate) fn save_as(
        &self,
        writer: Writer,
        position: Position,
        next_sequence: u64,
        chain_head: &ChainHead,
        book: &Book,
    ) -> Result<Option<Position>, EngineError> {
        let newest = self.lock();
        self.save_locked(newest, writer, position, next_sequence, chain_head, book)
    }

    /// [`SnapshotWriter::save_as`] unless another writer is saving right now (`Ok(None)`):
    /// for the sequencer's overdue snapshot, which must not wait for one in progress.
    pub(crate) fn try_save_as(
        &self,
        writer: Writer,
        position: Position,
        next_sequence: u64,
        chain_head: &ChainHead,
        book: &Book,
    ) -> Result<Option<Position>, EngineError> {
        let newest = match self.0.newest.try_lock() {
            Ok(newest) => newest,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(None),
        };
        self.save_locked(newest, writer, position, next_sequence, chain_head, book)
    }

    fn lock(&self) -> MutexGuard<'_, Newest> {
        self.0.newest.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save_locked(
        &self,
        mut newest: MutexGuard<'_, Newest>,
        writer: Writer,
        position: Position,
        next_sequence: u64,
        chain_head: &ChainHead,
        book: &Book,
    ) -> Result<Option<Position>, EngineError> {
        // The sequencer's explicit and final snapshots are written even at the same position
        // (a caller asked for one); an external writer behind the newest one writes nothing.
        if writer == Writer::External && newest.position >= position {
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
        };
        count.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(nanos, Ordering::Relaxed);
        max.fetch_max(nanos, Ordering::Relaxed);
        Ok(Some(position))
    }
}
