//! A projector after `sportsbook repair` moved the journal's start up to a snapshot, once the
//! engine pruned that snapshot (`--snapshots-keep`): no snapshot between the journal's start
//! and the store's checkpoint is left to rebuild the follower book from, and the journal before
//! it is gone (in the repair's copy, not the archive). The projector cannot resume; it says so
//! with the way forward (`--rebuild`), which then works.

use book::Config;
use engine::{recover, EngineHandle, EngineOptions, ManualClock};
use journal::{FileJournal, FileJournalOptions, SnapshotStore};
use projector::{Projector, ProjectorError, ProjectorOptions, Start};

use crate::{open_store, project, workload, Backend};

/// The engine on `dir` keeping one snapshot (`serve --snapshots-keep 1`).
fn open_engine(dir: &std::path::Path, clock: &ManualClock) -> EngineHandle {
    let (journal, _) = FileJournal::open(&dir.join("journal"), FileJournalOptions::default()).expect("journal");
    let snapshots = SnapshotStore::open(&dir.join("snapshots")).expect("snapshots").with_keep(1);
    let recovered = recover(&journal, Some(&snapshots), Config::default()).expect("recover");
    let options = EngineOptions { snapshot_every_commands: 0, snapshots_keep: 1, ..EngineOptions::default() };
    EngineHandle::start(Box::new(journal), Some(snapshots), recovered, Box::new(clock.clone()), options).expect("start")
}

#[test]
fn after_a_repair_and_a_pruned_snapshot_the_projector_asks_for_a_rebuild() {
    let data = tempfile::tempdir().expect("tempdir");
    let scratch = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(workload::START);
    let mut run = workload::Run::with_engine(open_engine(data.path(), &clock), clock.clone(), 11);
    run.setup();
    run.steps(40);
    let snapshot = run.engine.snapshot().expect("snapshot");
    run.shutdown();
    // The models are at the snapshot's position, the end of the journal.
    let projector = project(data.path(), open_store(Backend::Sqlite, scratch.path(), "repaired", true), false);
    assert_eq!(projector.position(), snapshot);
    drop(projector);

    // A corrupt record before the snapshot, and the operator's repair: the journal continues,
    // empty, at the snapshot's position.
    let report = journal::repair::truncate_at(
        &data.path().join("journal"),
        &data.path().join("snapshots"),
        snapshot - 3,
        &data.path().join("journal-cut"),
    )
    .expect("repair");
    assert_eq!(report.next_position, snapshot);

    // The engine goes on and keeps one snapshot: the one the repair left is pruned.
    let engine = open_engine(data.path(), &clock);
    let mut run = workload::Run::with_engine(engine, clock.clone(), 12);
    run.steps(10);
    let later = run.engine.snapshot().expect("snapshot");
    run.steps(10);
    run.shutdown();
    let kept = SnapshotStore::open_read_only(&data.path().join("snapshots")).list().expect("list");
    assert!(kept.iter().all(|(position, _)| *position > snapshot), "{kept:?}");
    assert!(later > snapshot);

    let store = open_store(Backend::Sqlite, scratch.path(), "repaired", false);
    let error = Projector::open(store, ProjectorOptions::new(data.path()), false).expect_err("cannot resume");
    assert!(
        matches!(error, ProjectorError::NoResumePoint { checkpoint, first_available }
            if checkpoint == snapshot && first_available == snapshot),
        "{error:?}"
    );
    assert!(error.to_string().contains("sportsbook projector --rebuild"), "{error}");
    assert!(!projector::serving::transient(&error), "not retried: the data directory cannot change that");

    // In `serve` (`projector::spawn`): the projector is marked failed with that reason once,
    // not retried every second, and the process goes on.
    let opens = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (counted, dir, path) = (opens.clone(), data.path().to_owned(), scratch.path().to_owned());
    let thread = projector::spawn(
        move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let store = open_store(Backend::Sqlite, &path, "repaired", false);
            Projector::open(store, ProjectorOptions::new(&dir), false)
        },
        projector::Published::new(),
    )
    .expect("spawn");
    std::thread::sleep(projector::serving::PROJECTOR_RETRY_INTERVAL * 2);
    match thread.published().state() {
        projector::ProjectorState::Failed(reason) => assert!(reason.contains("--rebuild"), "{reason}"),
        state => panic!("the projector is {state:?}"),
    }
    assert_eq!(opens.load(std::sync::atomic::Ordering::Relaxed), 1, "opened once, not retried");
    thread.stop();

    // The way forward: a rebuild begins at the oldest snapshot the journal continues from.
    let store = open_store(Backend::Sqlite, scratch.path(), "repaired", false);
    let rebuilt = project(data.path(), store, true);
    assert!(matches!(rebuilt.start(), Start::Snapshot(position) if position > snapshot), "{:?}", rebuilt.start());
}
