//! Exactly once: a projector that dies after any batch (before its transaction commits)
//! resumes from its store's checkpoint and ends with models equal to a rebuild from scratch;
//! running it again changes nothing; a store built from another journal is refused.

use projector::{digest, Projector, ProjectorError, ProjectorOptions, Start};

use crate::{finished, open_store, project, workload, Backend};

/// The digest of the finished workload's models projected in one go.
fn reference() -> String {
    static REFERENCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    REFERENCE
        .get_or_init(|| {
            let scratch = tempfile::tempdir().expect("tempdir");
            let mut projector =
                project(finished().dir.path(), open_store(Backend::Sqlite, scratch.path(), "reference", true), false);
            digest(projector.store()).expect("digest")
        })
        .clone()
}

fn crash_and_resume(backend: Backend, name: &str) {
    let data_dir = finished().dir.path();
    let scratch = tempfile::tempdir().expect("tempdir");
    let reference = reference();
    let total = {
        let projector = project(data_dir, open_store(backend, scratch.path(), name, true), false);
        projector.progress().batches
    };
    assert!(total > 300, "a workload of {total} batches");
    for crash_after in [1, 2, 37, 150, total / 2 + 1, total - 1] {
        let store = open_store(backend, scratch.path(), name, true);
        let options = ProjectorOptions {
            commit_rows: 97,
            crash_after_batches: Some(crash_after),
            ..ProjectorOptions::new(data_dir)
        };
        let mut projector = Projector::open(store, options, false).expect("open");
        match projector.catch_up(&mut |_| {}) {
            Err(ProjectorError::CrashForTest { applied }) => assert_eq!(applied, crash_after),
            other => panic!("expected the simulated crash, got {other:?}"),
        }
        let committed = projector.position();
        assert!(committed < crash_after, "the batches since the last commit were not committed");
        drop(projector);

        // A second crash right after resuming, then the resume that finishes.
        let store = open_store(backend, scratch.path(), name, false);
        let options =
            ProjectorOptions { commit_rows: 97, crash_after_batches: Some(3), ..ProjectorOptions::new(data_dir) };
        let mut projector = Projector::open(store, options, false).expect("reopen");
        assert_eq!(projector.position(), committed, "resumes where its store says");
        if committed > 0 {
            assert!(matches!(projector.start(), Start::Resumed { checkpoint, .. } if checkpoint == committed));
        }
        // It crashes again on its 3rd batch unless fewer than 3 were left to apply (how the engine
        // groups the workload into batches varies from run to run).
        let second = projector.catch_up(&mut |_| {});
        if total - committed >= 3 {
            assert!(matches!(second, Err(ProjectorError::CrashForTest { applied: 3 })), "{second:?}");
        } else {
            assert!(second.is_ok(), "{second:?}");
        }
        drop(projector);

        let mut projector = project(data_dir, open_store(backend, scratch.path(), name, false), false);
        if total - committed >= 3 {
            assert_eq!(projector.progress().batches, total);
        }
        assert_eq!(
            digest(projector.store()).expect("digest"),
            reference,
            "{backend:?}: crash after {crash_after} batches"
        );
    }
}

#[test]
fn sqlite_resumes_after_a_crash_to_the_models_of_a_rebuild() {
    crash_and_resume(Backend::Sqlite, "crash");
}

#[test]
fn postgres_resumes_after_a_crash_to_the_models_of_a_rebuild() {
    crash_and_resume(Backend::Postgres, "crash");
}

fn rerun_and_rebuild(backend: Backend, name: &str) {
    let data_dir = finished().dir.path();
    let scratch = tempfile::tempdir().expect("tempdir");
    let first = {
        let mut projector = project(data_dir, open_store(backend, scratch.path(), name, true), false);
        digest(projector.store()).expect("digest")
    };
    assert_eq!(first, reference());
    let mut again =
        Projector::open(open_store(backend, scratch.path(), name, false), ProjectorOptions::new(data_dir), false)
            .expect("reopen");
    assert_eq!(again.catch_up(&mut |_| {}).expect("catch up"), 0, "nothing new to apply");
    assert_eq!(digest(again.store()).expect("digest"), first, "a re-run changes nothing");
    drop(again);
    let mut rebuilt = project(data_dir, open_store(backend, scratch.path(), name, false), true);
    assert_eq!(rebuilt.start(), Start::Genesis, "a rebuild starts from scratch");
    assert_eq!(digest(rebuilt.store()).expect("digest"), first, "a rebuild gives equal models");
}

#[test]
fn sqlite_rerun_and_rebuild_give_equal_models() {
    rerun_and_rebuild(Backend::Sqlite, "rerun");
}

#[test]
fn postgres_rerun_and_rebuild_give_equal_models() {
    rerun_and_rebuild(Backend::Postgres, "rerun");
}

#[test]
fn the_projector_follows_a_journal_a_running_engine_holds() {
    let data = tempfile::tempdir().expect("tempdir");
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut run = workload::Run::open(data.path(), 11);
    run.setup();
    run.steps(20);
    // The engine holds the journal's lock; the projector reads the segments without it.
    let store = open_store(Backend::Sqlite, scratch.path(), "live", true);
    let mut projector =
        Projector::open(store, ProjectorOptions::new(data.path()), false).expect("open beside the engine");
    let first = projector.catch_up(&mut |_| {}).expect("catch up");
    assert!(first > 20, "{first} batches");
    assert_eq!(projector.lag().expect("lag"), 0);
    run.steps(20);
    let lag = projector.lag().expect("lag");
    let second = projector.catch_up(&mut |_| {}).expect("catch up again");
    assert!(second > 20, "{second} more batches");
    assert_eq!(lag, second, "the lag counted the batches then applied");
    assert_eq!(projector.lag().expect("lag"), 0);
    let engine_book = run.engine.read(codec::digest).expect("read");
    assert_eq!(codec::digest(projector.book()), engine_book, "the follower book is the engine's");
    let live = digest(projector.store()).expect("digest");
    drop(projector);
    run.shutdown();
    let mut rebuilt = project(data.path(), open_store(Backend::Sqlite, scratch.path(), "live_rebuilt", true), false);
    assert_eq!(digest(rebuilt.store()).expect("digest"), live, "followed live = projected after the fact");
}

#[test]
fn a_store_built_from_another_journal_is_refused() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    let mut run = workload::Run::open(other.path(), 99);
    run.setup();
    run.steps(200);
    run.shutdown();
    // A store of the shared workload, opened on a different (longer) journal.
    drop(project(finished().dir.path(), open_store(Backend::Sqlite, scratch.path(), "foreign", true), false));
    let error = Projector::open(
        open_store(Backend::Sqlite, scratch.path(), "foreign", false),
        ProjectorOptions::new(other.path()),
        false,
    )
    .expect_err("a foreign store");
    assert!(matches!(error, ProjectorError::ChainMismatch { .. } | ProjectorError::Diverged { .. }), "{error}");
    // `--rebuild` repairs it.
    let mut rebuilt = project(other.path(), open_store(Backend::Sqlite, scratch.path(), "foreign", false), true);
    let mut fresh = project(other.path(), open_store(Backend::Sqlite, scratch.path(), "native", true), false);
    assert!(rebuilt.position() > 0);
    assert_eq!(digest(rebuilt.store()).expect("digest"), digest(fresh.store()).expect("digest"));
}

fn two_writers(backend: Backend, name: &str) {
    let data_dir = finished().dir.path();
    let scratch = tempfile::tempdir().expect("tempdir");
    drop(open_store(backend, scratch.path(), name, true));
    let options = ProjectorOptions { commit_rows: 500, ..ProjectorOptions::new(data_dir) };
    let mut first =
        Projector::open(open_store(backend, scratch.path(), name, false), options.clone(), false).expect("open");
    let mut second = Projector::open(open_store(backend, scratch.path(), name, false), options, false).expect("open");
    first.catch_up(&mut |_| {}).expect("the first writer");
    match second.catch_up(&mut |_| {}) {
        Err(ProjectorError::ConcurrentWriter { expected: None, found: Some(found) }) => {
            assert_eq!(found, first.position())
        }
        other => panic!("expected a refused second writer, got {other:?}"),
    }
    assert_eq!(digest(first.store()).expect("digest"), reference(), "the second writer wrote nothing");
}

#[test]
fn sqlite_refuses_a_second_writer() {
    two_writers(Backend::Sqlite, "writers");
}

#[test]
fn postgres_refuses_a_second_writer() {
    two_writers(Backend::Postgres, "writers");
}

/// The commit pipeline (`ProjectorOptions::pipeline`: a transaction committed on a writer
/// thread while the next is decided) writes the same transactions as committing in line, and
/// a catch-up ends with everything committed.
fn pipelined_and_in_line(backend: Backend, name: &str) {
    let data_dir = finished().dir.path();
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut commits = Vec::new();
    for pipeline in [true, false] {
        let name = format!("{name}_{pipeline}");
        let options = ProjectorOptions { commit_rows: 97, pipeline, ..ProjectorOptions::new(data_dir) };
        let mut projector =
            Projector::open(open_store(backend, scratch.path(), &name, true), options, false).expect("open");
        let applied = projector.catch_up(&mut |_| {}).expect("catch up");
        assert_eq!(projector.lag().expect("lag"), 0, "pipeline {pipeline}: everything committed");
        assert_eq!(projector.position(), applied, "pipeline {pipeline}: the store is at the journal's end");
        let progress = projector.progress();
        assert!(progress.commits > 10, "pipeline {pipeline}: {} commits", progress.commits);
        assert!(progress.commit_nanos > 0 && progress.decide_nanos > 0, "{progress:?}");
        commits.push((progress.commits, progress.rows));
        assert_eq!(digest(projector.store()).expect("digest"), reference(), "pipeline {pipeline}");
    }
    assert_eq!(commits[0], commits[1], "the same transactions either way");
}

#[test]
fn sqlite_pipelined_commits_equal_in_line_commits() {
    pipelined_and_in_line(Backend::Sqlite, "pipelined");
}

#[test]
fn postgres_pipelined_commits_equal_in_line_commits() {
    pipelined_and_in_line(Backend::Postgres, "pipelined");
}

/// A projector dropped (or killed) while a pipelined commit is in flight leaves its store at a
/// checkpoint, the one before that commit or the one after it, and resumes from there to the
/// models of a rebuild.
fn dropped_with_a_commit_in_flight(backend: Backend, name: &str) {
    let data_dir = finished().dir.path();
    let scratch = tempfile::tempdir().expect("tempdir");
    for steps in [1, 2, 5] {
        let options = ProjectorOptions { commit_rows: 97, ..ProjectorOptions::new(data_dir) };
        let mut projector =
            Projector::open(open_store(backend, scratch.path(), name, true), options, false).expect("open");
        let mut read = 0;
        for _ in 0..steps {
            let (applied, more) = projector.step().expect("step");
            assert!(more, "the journal holds more than {steps} transactions");
            read += applied;
        }
        // The last transaction read is still being committed on the writer thread.
        assert!(projector.position() < read, "step {steps}: a commit in flight ({} of {read})", projector.position());
        drop(projector);

        let mut resumed = project(data_dir, open_store(backend, scratch.path(), name, false), false);
        match resumed.start() {
            Start::Resumed { checkpoint, .. } => assert_eq!(checkpoint, read, "the commit in flight landed on drop"),
            other => panic!("expected a resume, got {other:?}"),
        }
        assert_eq!(digest(resumed.store()).expect("digest"), reference(), "after {steps} steps");
    }
}

#[test]
fn sqlite_projector_dropped_with_a_commit_in_flight_resumes() {
    dropped_with_a_commit_in_flight(Backend::Sqlite, "in_flight");
}

#[test]
fn postgres_projector_dropped_with_a_commit_in_flight_resumes() {
    dropped_with_a_commit_in_flight(Backend::Postgres, "in_flight");
}

/// An accepted bet that changes (settled, voided, cashed out, resettled) is written as an
/// update of the columns it can change (`schema::BET_SETTLEMENTS`, `LEG_RESULTS`), not whole
/// again: the same models as writing it whole (`ProjectorOptions::whole_bet_rows`), with
/// small transactions so that most settlements update rows of earlier commits.
fn partial_updates_and_whole_rows(backend: Backend, name: &str) {
    let data_dir = finished().dir.path();
    let scratch = tempfile::tempdir().expect("tempdir");
    for whole_bet_rows in [false, true] {
        let name = format!("{name}_{whole_bet_rows}");
        let options = ProjectorOptions { commit_rows: 97, whole_bet_rows, ..ProjectorOptions::new(data_dir) };
        let mut projector =
            Projector::open(open_store(backend, scratch.path(), &name, true), options, false).expect("open");
        projector.catch_up(&mut |_| {}).expect("catch up");
        assert!(projector.progress().commits > 10, "{} commits", projector.progress().commits);
        assert_eq!(digest(projector.store()).expect("digest"), reference(), "whole bet rows {whole_bet_rows}");
    }
}

#[test]
fn sqlite_partial_bet_updates_equal_whole_rows() {
    partial_updates_and_whole_rows(Backend::Sqlite, "partial");
}

#[test]
fn postgres_partial_bet_updates_equal_whole_rows() {
    partial_updates_and_whole_rows(Backend::Postgres, "partial");
}

/// Steps until the projector has read the whole journal.
fn step_to_the_end(projector: &mut Projector) {
    while projector.step().expect("step").1 {}
}

/// At the journal's end a transaction gathers (`ProjectorOptions::gather`) instead of
/// committing each step's batches: it commits once a reader waits, once it is old enough, or
/// when flushed, and then holds everything read, never part of it.
#[test]
fn at_the_journals_end_a_transaction_gathers_until_a_reader_waits_it_ages_or_it_is_flushed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let data_dir = finished().dir.path();
    let scratch = tempfile::tempdir().expect("tempdir");
    let waiting = Arc::new(AtomicUsize::new(0));
    let gathering = |gather: Duration| ProjectorOptions {
        // Never full: only the journal's end ends a transaction here.
        commit_rows: usize::MAX,
        gather,
        readers_waiting: Some(waiting.clone()),
        ..ProjectorOptions::new(data_dir)
    };
    let open = |name: &str, options: ProjectorOptions| {
        Projector::open(open_store(Backend::Sqlite, scratch.path(), name, true), options, false).expect("open")
    };

    // A reader waiting makes the gathering transaction commit at the next step.
    let mut projector = open("reader", gathering(Duration::from_secs(3600)));
    step_to_the_end(&mut projector);
    let end = projector.lag().expect("lag");
    assert!(end > 0 && projector.position() == 0, "nothing committed while gathering");
    step_to_the_end(&mut projector);
    assert_eq!(projector.position(), 0, "still gathering with nobody waiting");
    assert_eq!(projector.committed_book_time(), 0, "the models' book time is that of what they hold");
    waiting.fetch_add(1, Ordering::SeqCst);
    step_to_the_end(&mut projector);
    waiting.fetch_sub(1, Ordering::SeqCst);
    assert_eq!((projector.position(), projector.lag().expect("lag")), (end, 0), "committed for the reader");
    assert_eq!(projector.committed_book_time(), projector.book().now());
    assert_eq!(digest(projector.store()).expect("digest"), reference());

    // An old enough transaction commits by itself.
    let mut projector = open("aged", gathering(Duration::from_millis(50)));
    step_to_the_end(&mut projector);
    std::thread::sleep(Duration::from_millis(60));
    step_to_the_end(&mut projector);
    assert_eq!(projector.position(), end, "committed once 50 ms old");

    // A flush commits it (a stopping projector); a catch-up ends with one.
    let mut projector = open("flushed", gathering(Duration::from_secs(3600)));
    step_to_the_end(&mut projector);
    assert_eq!(projector.position(), 0);
    projector.flush().expect("flush");
    assert_eq!(projector.position(), end);
    assert_eq!(digest(projector.store()).expect("digest"), reference());
    let mut projector = open("caught_up", gathering(Duration::from_secs(3600)));
    projector.catch_up(&mut |_| {}).expect("catch up");
    assert_eq!(projector.position(), end);
}
