//! The engine runs the book: one sequencer thread owns it, drains a bounded inbox in batches,
//! stamps each batch with the time, decides every command, appends the batch to the journal
//! with one sync (group commit), and only then replies. Recovery loads the latest snapshot and
//! replays the journal after it, checking each batch's reply digest. A hash chain over the
//! journal's records (`chain_next`) makes the audit trail tamper-evident.

mod clock;
mod error;
mod follower;
mod recovery;
mod replicated;
mod retention;
mod sequencer;
mod snapshot_writer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::EngineError;
pub use follower::{lower_thread_priority, FOLLOWER_NICE, FOLLOWER_POLL_INTERVAL, FOLLOWER_QUEUE_COMMANDS_MAX_DEFAULT};
pub use recovery::{
    chain_next, decode_snapshot_payload_for_follower, recover, recover_to, ChainHead, LastBatch, Recovered,
    RecoveryReport, Replica, CHAIN_HEAD_GENESIS,
};
pub use replicated::{Forward, ForwardDone, Forwarded, ReplicaEngineOptions, ReplicaFeed, REPLICA_CATCH_UP_WAIT_MAX};
pub use retention::{
    verify_history, ChainVerification, JournalRetention, RetentionHold, ARCHIVE_DIR_NAME, ARCHIVE_FAILURES_WARN,
    RETENTION_INTERVAL_DEFAULT,
};
pub use sequencer::{
    CommitHook, Committed, EngineHandle, EngineOptions, EngineStats, JournalPage, Outcome, OutcomeWith, Submission,
    AUDIT_PAGE_BYTES_MAX, AUDIT_PAGE_RECORDS_MAX, BATCH_COMMANDS_MAX_DEFAULT, INBOX_MAX_DEFAULT, INTERNAL_ACTOR,
};
pub use snapshot_writer::{BookAt, PeriodicSnapshots, SnapshotWriter, SNAPSHOT_OVERDUE_FACTOR};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use journal::archive::{History, WithArchive};
use journal::{FileJournal, FileJournalOptions, SnapshotStore};

/// Opens (or creates) a data directory with the embedded file journal and snapshot store,
/// recovers the book from it and starts the sequencer.
pub fn open_data_dir(
    dir: &Path,
    config: book::Config,
    clock: Box<dyn Clock>,
    options: EngineOptions,
) -> Result<(EngineHandle, RecoveryReport), EngineError> {
    let (handle, report, _) = open_data_dir_detailed(dir, config, clock, options)?;
    Ok((handle, report))
}

/// What opening a data directory found besides the `RecoveryReport`, for the logs.
#[derive(Debug, Default)]
pub struct OpenFindings {
    /// Corrupt snapshots recovery passed over (each deserves a warning).
    pub skipped_snapshots: Vec<journal::snapshot::SkippedSnapshot>,
    /// Directories and files whose group/other permission bits were removed.
    pub tightened: Vec<std::path::PathBuf>,
}

/// `open_data_dir`, also returning what an operator should be told about.
///
/// The journal is opened knowing the highest snapshot position, so that a journal ending below
/// a snapshot is refused before anything is cut (positions are never reused).
pub fn open_data_dir_detailed(
    dir: &Path,
    config: book::Config,
    clock: Box<dyn Clock>,
    options: EngineOptions,
) -> Result<(EngineHandle, RecoveryReport, OpenFindings), EngineError> {
    let snapshots = SnapshotStore::open(&dir.join("snapshots"))?.with_keep(options.snapshots_keep);
    let journal_options = FileJournalOptions {
        min_next_position: snapshots.highest_position()?,
        segment_bytes_max: options.journal_segment_bytes_max,
        ..FileJournalOptions::default()
    };
    let journal_dir = dir.join("journal");
    let archive_dir = archive_dir(dir, options.journal_archive.as_deref());
    let (journal, opened) = FileJournal::open(&journal_dir, journal_options)?;
    // Recovery reads archived records too, should it have to start below the live journal
    // (every kept snapshot corrupt).
    let live_first = journal.first_position();
    let with_archive =
        WithArchive { live: &journal, live_first, history: History::new(&journal_dir, Some(&archive_dir)) };
    let mut recovered = recover(&with_archive, Some(&snapshots), config)?;
    recovered.report.truncated_bytes = opened.truncated_bytes;
    let report = recovered.report;
    let findings = OpenFindings {
        skipped_snapshots: std::mem::take(&mut recovered.skipped_snapshots),
        tightened: opened.tightened,
    };
    let retention = (options.journal_retention, options.retention_interval, options.snapshots_keep);
    let files = Arc::new(retention::JournalFiles::new(&journal_dir, &archive_dir, live_first));
    let handle = EngineHandle::start(Box::new(journal), Some(snapshots), recovered, clock, options)?
        .with_files(Arc::clone(&files));
    // Snapshots an external writer leaves overdue are caught up from the journal's files.
    if let Some(writer) = handle.snapshot_writer() {
        writer.catch_up_from(History::new(&journal_dir, Some(&archive_dir)));
    }
    if retention.0 == JournalRetention::Archive {
        if let Err(error) =
            files.start_archiver(&dir.join("snapshots"), retention.2, retention.1, handle.stats_shared())
        {
            handle.shutdown();
            return Err(error);
        }
    }
    Ok((handle, report, findings))
}

/// Recovers a data directory without writing to it: the journal is opened read-only (a torn
/// tail is reported in `truncated_bytes`, not cut; no LOCK file is created), snapshots are
/// only read, no snapshot is saved and no sequencer runs. Fails with `JournalError::Locked`
/// while a server holds the directory. For `sportsbook verify`.
pub fn recover_read_only(dir: &Path, config: book::Config) -> Result<Recovered, EngineError> {
    recover_read_only_with_archive(dir, None, config)
}

/// The archive directory of a data directory: `archive`, or `DIR/archive` when `None`.
pub fn archive_dir(dir: &Path, archive: Option<&Path>) -> PathBuf {
    archive.map_or_else(|| dir.join(ARCHIVE_DIR_NAME), Path::to_owned)
}

/// `recover_read_only` with the journal's archive in `archive` (`None`: `DIR/archive`), read
/// when recovery starts below the live journal.
pub fn recover_read_only_with_archive(
    dir: &Path,
    archive: Option<&Path>,
    config: book::Config,
) -> Result<Recovered, EngineError> {
    recover_read_only_until(dir, archive, config, None)
}

/// [`recover_read_only_with_archive`] stopping at journal position `end`: the book as it was
/// there (from the newest valid snapshot at or before it), e.g. where read models stand.
pub fn recover_read_only_to(
    dir: &Path,
    archive: Option<&Path>,
    config: book::Config,
    end: journal::Position,
) -> Result<Recovered, EngineError> {
    recover_read_only_until(dir, archive, config, Some(end))
}

/// The read-only recovery both of the above are: to the journal's end, or to `end`.
fn recover_read_only_until(
    dir: &Path,
    archive: Option<&Path>,
    config: book::Config,
    end: Option<journal::Position>,
) -> Result<Recovered, EngineError> {
    let journal_dir = dir.join("journal");
    let (journal, opened) = FileJournal::open_read_only(&journal_dir)?;
    let snapshots = SnapshotStore::open_read_only(&dir.join("snapshots"));
    let with_archive = WithArchive {
        live: &journal,
        live_first: journal.first_position(),
        history: History::new(&journal_dir, Some(&archive_dir(dir, archive))),
    };
    let mut recovered = recovery::recover_to(&with_archive, Some(&snapshots), config, end)?;
    recovered.report.truncated_bytes = opened.truncated_bytes;
    Ok(recovered)
}
