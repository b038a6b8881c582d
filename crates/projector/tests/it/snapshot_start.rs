//! Models that cannot begin at journal position 0 (the early segments were removed): they
//! begin at the oldest snapshot the journal continues from, seeded with everything that
//! snapshot's book holds, then follow the journal; a crash after that resumes the same way.

use book::Config;
use engine::{recover, EngineHandle, EngineOptions, ManualClock};
use journal::{FileJournal, FileJournalOptions, SnapshotStore};
use projector::{digest, Projector, ProjectorError, ProjectorOptions, Start};

use crate::conformance::{check_accounts, check_bets, check_daily_totals, check_transfers_and_statements};
use crate::{open_store, project, workload, Backend};

/// Segments this small make the workload span many of them.
const SEGMENT_BYTES: u64 = 16 * 1024;

pub fn open_engine(dir: &std::path::Path) -> (EngineHandle, ManualClock) {
    let (journal, _) = FileJournal::open(
        &dir.join("journal"),
        FileJournalOptions { segment_bytes_max: SEGMENT_BYTES, ..FileJournalOptions::default() },
    )
    .expect("journal");
    let snapshots = SnapshotStore::open(&dir.join("snapshots")).expect("snapshots");
    let recovered = recover(&journal, Some(&snapshots), Config::default()).expect("recover");
    let clock = ManualClock::new(workload::START);
    let options = EngineOptions { snapshot_every_commands: 0, ..EngineOptions::default() };
    let engine = EngineHandle::start(Box::new(journal), Some(snapshots), recovered, Box::new(clock.clone()), options)
        .expect("start");
    (engine, clock)
}

#[test]
fn models_begin_at_a_snapshot_when_the_journal_no_longer_begins_at_zero() {
    let data = tempfile::tempdir().expect("tempdir");
    let (engine, clock) = open_engine(data.path());
    let mut run = workload::Run::with_engine(engine, clock, 5);
    run.setup();
    run.steps(60);
    let snapshot = run.engine.snapshot().expect("snapshot");
    run.steps(60);
    let book = run.engine.read(|book| book.clone()).expect("read");
    run.shutdown();
    {
        let (mut journal, _) = FileJournal::open(
            &data.path().join("journal"),
            FileJournalOptions { segment_bytes_max: SEGMENT_BYTES, ..FileJournalOptions::default() },
        )
        .expect("reopen the journal");
        assert!(journal.remove_segments_before(snapshot).expect("prune") > 0, "segments before the snapshot removed");
        assert!(journal.first_position() > 0);
    }

    let scratch = tempfile::tempdir().expect("tempdir");
    let mut projector = project(data.path(), open_store(Backend::Sqlite, scratch.path(), "seeded", true), false);
    assert_eq!(projector.start(), Start::Snapshot(snapshot), "the oldest snapshot the journal continues from");
    assert!(projector.progress().batches > 50, "then the journal after it");
    let store = projector.store();
    check_bets(store, &book, false);
    let at_snapshot = engine::recover_read_only_to(data.path(), None, Config::default(), snapshot).expect("recover");
    let history = crate::conformance::TransferHistory::replay(data.path(), Some((snapshot, at_snapshot.book)));
    check_transfers_and_statements(store, &book, &history);
    check_daily_totals(store, &book, &history);
    check_accounts(store, &book);
    let seeded = digest(store).expect("digest");
    drop(projector);

    // A crash after the seed resumes from the snapshot and ends with the same models.
    let store = open_store(Backend::Sqlite, scratch.path(), "seeded_crash", true);
    let options =
        ProjectorOptions { commit_rows: 50, crash_after_batches: Some(30), ..ProjectorOptions::new(data.path()) };
    let mut crashing = Projector::open(store, options, false).expect("open");
    assert!(matches!(crashing.catch_up(&mut |_| {}), Err(ProjectorError::CrashForTest { .. })));
    drop(crashing);
    let mut resumed = project(data.path(), open_store(Backend::Sqlite, scratch.path(), "seeded_crash", false), false);
    assert!(matches!(resumed.start(), Start::Resumed { replayed_from, .. } if replayed_from == snapshot));
    assert_eq!(digest(resumed.store()).expect("digest"), seeded);
}
