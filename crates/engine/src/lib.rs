//! The engine runs the book: one sequencer thread owns it, drains a bounded inbox in batches,
//! stamps each batch with the time, decides every command, appends the batch to the journal
//! with one sync (group commit), and only then replies. Recovery loads the latest snapshot and
//! replays the journal after it, checking each batch's reply digest. A hash chain over the
//! journal's records (`chain_next`) makes the audit trail tamper-evident.

mod clock;
mod error;
mod recovery;
mod sequencer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::EngineError;
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
    let (journal, opened) = FileJournal::open(&dir.join("journal"), FileJournalOptions::default())?;
    let snapshots = SnapshotStore::open(&dir.join("snapshots"))?;
    let mut recovered = recover(&journal, Some(&snapshots), config)?;
    recovered.report.truncated_bytes = opened.truncated_bytes;
    let report = recovered.report;
    let handle = EngineHandle::start(Box::new(journal), Some(snapshots), recovered, clock, options)?;
    Ok((handle, report))
}
