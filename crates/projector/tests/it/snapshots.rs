//! The projector's follower book writes the engine's periodic snapshots
//! (`engine::PeriodicSnapshots::External`, as `serve` runs it): the engine keeps no follower
//! book, every snapshot the projector writes is byte for byte what recovery gives at its
//! position (a replay of the journal from position 0), and a projector that crashed resumes
//! from one of them and goes on writing them.

use std::sync::atomic::Ordering;

use book::Config;
use engine::{open_data_dir, EngineOptions, ManualClock, PeriodicSnapshots};
use journal::{FileJournal, SnapshotStore};
use projector::{Projector, ProjectorError, ProjectorOptions, Start};

use crate::{open_store, workload, Backend};

#[test]
fn the_projectors_follower_book_writes_the_engines_snapshots() {
    let data = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(workload::START);
    let options = EngineOptions {
        snapshot_every_commands: 150,
        periodic_snapshots: PeriodicSnapshots::External,
        snapshots_keep: 1_000,
        ..EngineOptions::default()
    };
    let (engine, _) = open_data_dir(data.path(), Config::default(), Box::new(clock.clone()), options).expect("open");
    let writer = engine.snapshot_writer().expect("the engine hands out its snapshot writer");
    let mut run = workload::Run::with_engine(engine, clock, 11);
    run.setup();
    let scratch = tempfile::tempdir().expect("tempdir");
    let projector_options = |crash_after_batches| ProjectorOptions {
        commit_rows: 200,
        crash_after_batches,
        snapshots: Some(writer.clone()),
        ..ProjectorOptions::new(data.path())
    };

    // Follow the engine, then crash without committing the last rows.
    let store = open_store(Backend::Sqlite, scratch.path(), "snapshots", true);
    let mut projector = Projector::open(store, projector_options(None), false).expect("open");
    for _ in 0..4 {
        run.steps(15);
        projector.catch_up(&mut |_| {}).expect("catch up");
    }
    let written = projector.progress().snapshots;
    assert!(written >= 2, "the projector wrote {written} snapshots");
    assert_eq!(run.engine.stats().snapshots_external.load(Ordering::Relaxed), written);
    drop(projector);
    run.steps(15);
    let store = open_store(Backend::Sqlite, scratch.path(), "snapshots", false);
    let mut crashing = Projector::open(store, projector_options(Some(10)), false).expect("open");
    assert!(matches!(crashing.catch_up(&mut |_| {}), Err(ProjectorError::CrashForTest { .. })));
    drop(crashing);

    // Resumed from a snapshot it wrote, it goes on writing them.
    let store = open_store(Backend::Sqlite, scratch.path(), "snapshots", false);
    let mut resumed = Projector::open(store, projector_options(None), false).expect("reopen");
    let Start::Resumed { replayed_from, .. } = resumed.start() else { panic!("{:?}", resumed.start()) };
    assert!(replayed_from > 0, "resumed from a snapshot, not from position 0");
    for _ in 0..3 {
        run.steps(15);
        resumed.catch_up(&mut |_| {}).expect("catch up");
    }
    assert!(resumed.progress().snapshots >= 1, "the resumed projector wrote none");
    let stats = run.engine.stats();
    assert_eq!(stats.snapshots_follower.load(Ordering::Relaxed), 0, "the engine ran no follower book");
    assert_eq!(stats.snapshots_sequencer.load(Ordering::Relaxed), 0, "none was overdue");
    assert_eq!(stats.snapshot_failures.load(Ordering::Relaxed), 0);
    let projector_written = stats.snapshots_external.load(Ordering::Relaxed);
    drop(resumed);
    run.shutdown();

    // Every snapshot, the projector's and the sequencer's final one, is recovery's at its
    // position.
    let (journal, _) = FileJournal::open_read_only(&data.path().join("journal")).expect("journal");
    let snapshots = SnapshotStore::open_read_only(&data.path().join("snapshots")).list().expect("list");
    assert_eq!(snapshots.len() as u64, projector_written + 1, "{snapshots:?}");
    for (position, path) in snapshots {
        let file = std::fs::read(&path).expect("read");
        let (header_position, payload) = journal::snapshot::decode_snapshot(&file).expect("a complete snapshot");
        assert_eq!(header_position, position);
        let replayed = engine::recover_to(&journal, None, Config::default(), Some(position)).expect("replay");
        assert_eq!(payload[..8], replayed.report.next_sequence.to_le_bytes(), "next sequence at {position}");
        assert_eq!(payload[8..40], replayed.report.chain_head, "chain head at {position}");
        assert!(payload[40..] == codec::encode_snapshot(&replayed.book), "the book at {position}");
    }
}
