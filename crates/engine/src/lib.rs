//! The engine runs the book: one sequencer thread owns it, drains a bounded inbox in batches,
//! stamps each batch with the time, decides every command, appends the batch to the journal
//! with one sync (group commit), and only then replies. Recovery loads the latest snapshot and
//! replays the journal after it, checking each batch's reply digest. A hash chain over the
//! journal's records (`chain_next`) makes the audit trail tamper-evident.

mod clock;
mod error;
mod follower;
mod recovery;
mod sequencer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::EngineError;
pub use follower::{lower_thread_priority, FOLLOWER_NICE, FOLLOWER_POLL_INTERVAL, FOLLOWER_QUEUE_COMMANDS_MAX_DEFAULT};
pub use recovery::{
    chain_next, decode_snapshot_payload_for_follower, recover, ChainHead, Recovered, RecoveryReport, CHAIN_HEAD_GENESIS,
};
pub use sequencer::{
    CommitHook, Committed, EngineHandle, EngineOptions, EngineStats, JournalPage, Outcome, OutcomeWith,
    AUDIT_PAGE_BYTES_MAX, AUDIT_PAGE_RECORDS_MAX, BATCH_COMMANDS_MAX_DEFAULT, INBOX_MAX_DEFAULT,
};

use std::path::Path;

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
    let snapshots = SnapshotStore::open(&dir.join("snapshots"))?;
    let journal_options =
        FileJournalOptions { min_next_position: snapshots.highest_position()?, ..FileJournalOptions::default() };
    let (journal, opened) = FileJournal::open(&dir.join("journal"), journal_options)?;
    let mut recovered = recover(&journal, Some(&snapshots), config)?;
    recovered.report.truncated_bytes = opened.truncated_bytes;
    let report = recovered.report;
    let findings = OpenFindings {
        skipped_snapshots: std::mem::take(&mut recovered.skipped_snapshots),
        tightened: opened.tightened,
    };
    let handle = EngineHandle::start(Box::new(journal), Some(snapshots), recovered, clock, options)?;
    Ok((handle, report, findings))
}

/// Recovers a data directory without writing to it: the journal is opened read-only (a torn
/// tail is reported in `truncated_bytes`, not cut; no LOCK file is created), snapshots are
/// only read, no snapshot is saved and no sequencer runs. Fails with `JournalError::Locked`
/// while a server holds the directory. For `sportsbook verify`.
pub fn recover_read_only(dir: &Path, config: book::Config) -> Result<Recovered, EngineError> {
    let (journal, opened) = FileJournal::open_read_only(&dir.join("journal"))?;
    let snapshots = SnapshotStore::open_read_only(&dir.join("snapshots"));
    let mut recovered = recover(&journal, Some(&snapshots), config)?;
    recovered.report.truncated_bytes = opened.truncated_bytes;
    Ok(recovered)
}
