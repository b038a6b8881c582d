//! The projector over the replicated journal (`projector::NatsSource`): an engine writes the
//! workload to a JetStream stream on a real `nats-server` (started here; the test fails saying
//! why when it is missing) and a snapshot of it to a directory; the projector reads the stream
//! into models that match the book; killed after any batch it resumes, its follower book
//! replayed from the snapshot (or from position 0 without one), to the models of one run; its
//! lag is the stream's records beyond its checkpoint.

use book::Config;
use engine::{recover, EngineHandle, EngineOptions, ManualClock};
use journal::SnapshotStore;
use journal_nats::cluster::LocalCluster;
use journal_nats::{NatsJournal, NatsJournalOptions};
use projector::{digest, NatsSource, Projector, ProjectorError, ProjectorOptions, Start};

use crate::conformance::{check_accounts, check_bets};
use crate::{open_store, workload, Backend};

fn journal_options(cluster: &LocalCluster) -> NatsJournalOptions {
    let mut options = NatsJournalOptions::new(cluster.urls());
    options.stream = "PROJECTOR_SOURCE".to_owned();
    options.subject = "projector.source".to_owned();
    options.replicas = 1;
    options
}

fn options(commit_rows: usize, crash_after_batches: Option<u64>) -> ProjectorOptions {
    ProjectorOptions {
        commit_rows,
        crash_after_batches,
        archive_dir: None,
        ..ProjectorOptions::new(std::path::Path::new(""))
    }
}

#[test]
fn the_projector_follows_the_jetstream_journal_exactly_once_and_resumes_from_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = LocalCluster::start(&dir.path().join("nats"), 1)
        .unwrap_or_else(|err| panic!("this test needs nats-server: cannot start it: {err}"));
    let data = dir.path().join("book");

    // The workload through an engine whose journal is the stream, with a snapshot half way.
    let journal = NatsJournal::open(journal_options(&cluster)).expect("open the stream");
    let snapshots = SnapshotStore::open(&data.join("snapshots")).expect("snapshots");
    let recovered = recover(&journal, Some(&snapshots), Config::default()).expect("recover");
    let clock = ManualClock::new(workload::START);
    let engine_options = EngineOptions { snapshot_every_commands: 0, ..EngineOptions::default() };
    let engine =
        EngineHandle::start(Box::new(journal), Some(snapshots), recovered, Box::new(clock.clone()), engine_options)
            .expect("start the engine");
    let mut run = workload::Run::with_engine(engine, clock, 17);
    run.setup();
    run.steps(40);
    let snapshot = run.engine.snapshot().expect("snapshot");
    run.steps(40);
    let book = run.engine.read(|book| book.clone()).expect("read");
    let end = run.engine.stats().committed_position.load(std::sync::atomic::Ordering::Acquire);
    run.shutdown();
    assert!(snapshot > 20 && end > snapshot + 20, "a snapshot at {snapshot} of {end} records");

    // One run from position 0: the models match the book, and the lag was the whole stream.
    let scratch = tempfile::tempdir().expect("tempdir");
    let source = NatsSource::open(journal_options(&cluster), None).expect("open the source");
    let store = open_store(Backend::Sqlite, scratch.path(), "nats_once", true);
    let mut projector = Projector::open_source(store, Box::new(source), options(200, None), false).expect("open");
    assert_eq!(projector.start(), Start::Genesis);
    assert_eq!(projector.lag().expect("lag"), end, "every record of the stream is ahead");
    projector.catch_up(&mut |_| {}).expect("catch up");
    assert_eq!(projector.position(), end);
    assert_eq!(projector.lag().expect("lag"), 0);
    check_bets(projector.store(), &book, true);
    check_accounts(projector.store(), &book);
    let reference = digest(projector.store()).expect("digest");
    drop(projector);

    // Killed after any batch, on either side of the snapshot; resumed with the snapshot's
    // directory (replaying from it once the checkpoint is past it) or without (from 0).
    for (crash_after, with_snapshots) in [(1, true), (snapshot / 2, true), (snapshot + 7, true), (snapshot + 7, false)]
    {
        let name = format!("nats_crash_{crash_after}_{with_snapshots}");
        let source = NatsSource::open(journal_options(&cluster), None).expect("open the source");
        let store = open_store(Backend::Sqlite, scratch.path(), &name, true);
        let mut crashing =
            Projector::open_source(store, Box::new(source), options(97, Some(crash_after)), false).expect("open");
        match crashing.catch_up(&mut |_| {}) {
            Err(ProjectorError::CrashForTest { applied }) => assert_eq!(applied, crash_after),
            other => panic!("expected the simulated crash, got {other:?}"),
        }
        let committed = crashing.position();
        assert!(committed < crash_after, "the batches since the last commit were not committed");
        drop(crashing);
        let snapshot_dir = with_snapshots.then_some(data.as_path());
        let source = NatsSource::open(journal_options(&cluster), snapshot_dir).expect("open the source");
        let store = open_store(Backend::Sqlite, scratch.path(), &name, false);
        let mut resumed = Projector::open_source(store, Box::new(source), options(97, None), false).expect("reopen");
        if committed > 0 {
            let from = if with_snapshots && committed >= snapshot { snapshot } else { 0 };
            assert_eq!(resumed.start(), Start::Resumed { checkpoint: committed, replayed_from: from }, "{name}");
        }
        resumed.catch_up(&mut |_| {}).expect("resume");
        assert_eq!(resumed.position(), end);
        assert_eq!(digest(resumed.store()).expect("digest"), reference, "{name}: equal to one run");
    }

    // PostgreSQL too: a rebuild over the stream gives the same models.
    let source = NatsSource::open(journal_options(&cluster), Some(&data)).expect("open the source");
    let store = open_store(Backend::Postgres, scratch.path(), "nats_source", true);
    let mut projector = Projector::open_source(store, Box::new(source), options(500, None), true).expect("open");
    projector.catch_up(&mut |_| {}).expect("catch up");
    assert_eq!(digest(projector.store()).expect("digest"), reference, "PostgreSQL models equal SQLite's");
}

#[test]
fn the_nats_source_refuses_a_stream_no_book_has_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = LocalCluster::start(&dir.path().join("nats"), 1)
        .unwrap_or_else(|err| panic!("this test needs nats-server: cannot start it: {err}"));
    let error = NatsSource::open(journal_options(&cluster), None).expect_err("no stream yet");
    assert!(error.to_string().contains("PROJECTOR_SOURCE"), "{error}");
}
