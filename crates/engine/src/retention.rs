//! Journal retention and the journal's history.
//!
//! **Policy.** A live segment is archived (compressed into the archive directory, then removed
//! from `DATA_DIR/journal`; `journal::archive`) once it is complete and wholly below the
//! *retention floor*: the smaller of
//! - the position of the oldest snapshot the store keeps (`EngineOptions::snapshots_keep`, the
//!   newest N files): recovery uses the newest valid one and may fall back as far as the oldest
//!   kept, which must then find its records in the live journal; and
//! - every registered reader's checkpoint (`EngineHandle::hold_retention`), e.g. the in-process
//!   projector's committed position, so that a reader that follows the live files never has to
//!   read an archive in the normal course.
//!
//! Without a snapshot nothing is archived. Readers still can read archives (the projector, the
//! audit route, recovery and `verify` all do): the floor keeps the common path fast, it is not
//! what keeps them correct. The archiver runs on its own thread (`journal-archiver`) every
//! `EngineOptions::retention_interval`, never on the sequencer's; see `journal::archive` for
//! its crash safety.
//!
//! Snapshots beyond the kept ones are deleted by the snapshot store: a snapshot is derived from
//! the journal, which is kept whole (live or archived) from position 0.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use journal::archive::{archive_below, History};
use journal::{JournalError, Position, SnapshotStore};

use crate::error::EngineError;
use crate::recovery::{chain_next, ChainHead, CHAIN_HEAD_GENESIS};
use crate::sequencer::EngineStats;

/// Default archive directory's name inside the data directory (`serve --journal-archive`).
pub const ARCHIVE_DIR_NAME: &str = "archive";
/// How often the archiver looks for segments to archive.
pub const RETENTION_INTERVAL_DEFAULT: Duration = Duration::from_secs(10);
/// Consecutive failed archiver runs after which `/readyz` warns `journal_archive_failing`.
pub const ARCHIVE_FAILURES_WARN: u64 = 3;

/// What happens to journal segments that recovery no longer needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JournalRetention {
    /// Every segment stays in the live journal for ever.
    #[default]
    Off,
    /// Segments below the retention floor are compressed into the archive directory.
    Archive,
}

/// A reader's position below which it no longer needs the live journal (its committed
/// checkpoint). Registered with `EngineHandle::hold_retention`; the reader stores into it.
pub type RetentionHold = Arc<AtomicU64>;

/// The data directory's journal files as the handle knows them: where the history is read
/// from, how far it is archived, and the archiver thread.
pub(crate) struct JournalFiles {
    pub(crate) history: History,
    /// Every position below this is archived (no longer in the live journal): the first live
    /// position, raised by the archiver *before* it removes a segment.
    pub(crate) archived_below: Arc<AtomicU64>,
    holds: Arc<Mutex<Vec<RetentionHold>>>,
    archiver: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl JournalFiles {
    pub(crate) fn new(journal_dir: &Path, archive_dir: &Path, first_live: Position) -> JournalFiles {
        JournalFiles {
            history: History::new(journal_dir, Some(archive_dir)),
            archived_below: Arc::new(AtomicU64::new(first_live)),
            holds: Arc::new(Mutex::new(Vec::new())),
            archiver: Mutex::new(None),
        }
    }

    /// Starts the archiver thread.
    pub(crate) fn start_archiver(
        &self,
        snapshots_dir: &Path,
        snapshots_keep: usize,
        interval: Duration,
        stats: Arc<EngineStats>,
    ) -> Result<(), EngineError> {
        let archiver = Archiver {
            journal_dir: self.history.journal_dir.clone(),
            archive_dir: self.history.archive_dir.clone().unwrap_or_default(),
            snapshots_dir: snapshots_dir.to_owned(),
            snapshots_keep,
            holds: Arc::clone(&self.holds),
            archived_below: Arc::clone(&self.archived_below),
            stats,
        };
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("journal-archiver".to_owned())
            .spawn(move || archiver.run(&stopped, interval))
            .map_err(EngineError::Spawn)?;
        *self.archiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((stop, thread));
        Ok(())
    }

    pub(crate) fn hold(&self, hold: RetentionHold) {
        self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(hold);
    }

    /// Stops the archiver (after the segment it is archiving, if any) and waits for it.
    pub(crate) fn stop(&self) {
        let archiver = self.archiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some((stop, thread)) = archiver {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }

    /// Up to `limit` archived records from `from` on (below `archived_below`), at most
    /// `bytes_max` payload bytes (after at least one record).
    pub(crate) fn archived_page(
        &self,
        from: Position,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<(Position, Vec<u8>)>, EngineError> {
        let until = self.archived_below.load(Ordering::SeqCst);
        let mut page = Vec::new();
        let mut bytes = 0usize;
        if limit == 0 {
            return Ok(page);
        }
        self.history.read_archived(from, until, &mut |position, payload| {
            page.push((position, payload.to_vec()));
            bytes += payload.len();
            Ok(page.len() < limit && bytes < bytes_max)
        })?;
        Ok(page)
    }
}

struct Archiver {
    journal_dir: PathBuf,
    archive_dir: PathBuf,
    snapshots_dir: PathBuf,
    snapshots_keep: usize,
    holds: Arc<Mutex<Vec<RetentionHold>>>,
    archived_below: Arc<AtomicU64>,
    stats: Arc<EngineStats>,
}

impl Archiver {
    fn run(self, stop: &mpsc::Receiver<()>, interval: Duration) {
        loop {
            match stop.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            match self.run_once() {
                Ok(()) => self.stats.journal_archive_failures_consecutive.store(0, Ordering::Relaxed),
                Err(error) => {
                    self.stats.journal_archive_failures.fetch_add(1, Ordering::Relaxed);
                    let consecutive =
                        self.stats.journal_archive_failures_consecutive.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(
                        %error,
                        consecutive,
                        archive_dir = %self.archive_dir.display(),
                        "archiving journal segments failed; they stay in the live journal and the next run tries again"
                    );
                }
            }
        }
    }

    fn floor(&self) -> Result<Option<Position>, JournalError> {
        let store = SnapshotStore::open_read_only(&self.snapshots_dir).with_keep(self.snapshots_keep);
        let Some(oldest_kept) = store.oldest_kept_position()? else { return Ok(None) };
        let holds = self.holds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Some(holds.iter().map(|hold| hold.load(Ordering::SeqCst)).fold(oldest_kept, Position::min)))
    }

    fn run_once(&self) -> Result<(), JournalError> {
        let Some(floor) = self.floor()? else { return Ok(()) };
        let archived_below = &self.archived_below;
        let done = archive_below(&self.journal_dir, &self.archive_dir, floor, &mut |end| {
            archived_below.fetch_max(end, Ordering::SeqCst);
        })?;
        for segment in &done {
            self.stats.journal_segments_archived.fetch_add(1, Ordering::Relaxed);
            self.stats.journal_archived_bytes.fetch_add(segment.raw_bytes, Ordering::Relaxed);
            self.stats.journal_archive_bytes.fetch_add(segment.archive_bytes, Ordering::Relaxed);
            tracing::info!(
                first = segment.first,
                records = segment.records,
                bytes = segment.raw_bytes,
                archive_bytes = segment.archive_bytes,
                resumed = segment.resumed,
                archive = %segment.path.display(),
                "journal segment archived"
            );
        }
        Ok(())
    }
}

/// The result of walking the journal's hash chain from position 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainVerification {
    /// The chain recomputed over every record matches the engine's head.
    pub verified: bool,
    /// Records hashed (the position reached).
    pub records: Position,
    /// The head recomputed over those records.
    pub head: ChainHead,
    /// The engine's head (or, offline, the recovered one).
    pub expected_head: ChainHead,
    /// Why not verified: which position, in which file, what is wrong.
    pub reason: Option<String>,
    /// The position and file of a bad or missing record.
    pub problem: Option<(Position, Option<PathBuf>)>,
}

/// Recomputes the hash chain over the records `[0, end)` of `history` (archives below the live
/// journal, then live segments) and compares it with `expected`. A bad, missing or
/// undecodable record is a finding (not verified, with the file and position), not an error;
/// errors are I/O failures.
pub fn verify_history(history: &History, expected: ChainHead, end: Position) -> Result<ChainVerification, EngineError> {
    let mut head = CHAIN_HEAD_GENESIS;
    let mut reached: Position = 0;
    let read = history.read(0, end, &mut |position, payload| {
        head = chain_next(&head, position, payload);
        reached = position + 1;
        Ok(true)
    });
    let (reason, problem) = match read {
        Ok(_) if head == expected => (None, None),
        Ok(_) => (Some("the head recomputed from the journal differs from the engine's".to_owned()), None),
        Err(JournalError::Corrupt { position, segment, offset, reason }) => (
            Some(format!(
                "the journal record at position {position} is corrupt: {} at byte {offset} (of the segment's \
                 records): {reason}",
                segment.display()
            )),
            Some((position, Some(segment))),
        ),
        Err(JournalError::UnsupportedVersion { version, position }) => (
            Some(format!("the journal record at position {position} has unsupported format version {version}")),
            Some((position, None)),
        ),
        Err(JournalError::Pruned { requested, first_available }) => (
            Some(format!(
                "the journal record at position {requested} is in no live segment (the live journal starts at {}) \
                 and no archive in {} (archives begin at {first_available})",
                history.first_live()?.map_or_else(|| "no segment".to_owned(), |first| first.to_string()),
                history.archive_dir.as_deref().map_or_else(|| "(none)".to_owned(), |dir| dir.display().to_string()),
            )),
            Some((requested, history.archive_dir.clone())),
        ),
        Err(other) => return Err(other.into()),
    };
    Ok(ChainVerification {
        verified: reason.is_none(),
        records: reached,
        head,
        expected_head: expected,
        reason,
        problem,
    })
}
