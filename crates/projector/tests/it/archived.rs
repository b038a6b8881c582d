//! Models projected from scratch after journal retention archived the early segments: the
//! projector reads the archive (`DATA_DIR/archive`) for positions the live journal no longer
//! holds, so it still starts at position 0 and its models equal those of the same journal
//! never archived; a crash while it reads archived records resumes there.

use journal::archive::archive_below;
use journal::file::list_segments;
use projector::{digest, Projector, ProjectorError, ProjectorOptions, Start};

use crate::conformance::{check_accounts, check_bets, check_transfers_and_statements};
use crate::{open_store, project, workload, Backend};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

#[test]
fn a_projector_started_from_scratch_after_archiving_reads_the_archive_from_position_0() {
    let data = tempfile::tempdir().expect("tempdir");
    let (engine, clock) = crate::snapshot_start::open_engine(data.path());
    let mut run = workload::Run::with_engine(engine, clock, 9);
    run.setup();
    run.steps(60);
    let snapshot = run.engine.snapshot().expect("snapshot");
    run.steps(60);
    let book = run.engine.read(|book| book.clone()).expect("read");
    run.shutdown();

    let never_archived = tempfile::tempdir().expect("tempdir");
    copy_dir(data.path(), never_archived.path());
    let archived = archive_below(&data.path().join("journal"), &data.path().join("archive"), snapshot, &mut |_| {})
        .expect("archive");
    assert!(!archived.is_empty(), "segments archived");
    assert!(list_segments(&data.path().join("journal")).expect("segments")[0].0 > 0);

    let scratch = tempfile::tempdir().expect("tempdir");
    let mut projector = project(data.path(), open_store(Backend::Sqlite, scratch.path(), "archived", true), false);
    assert_eq!(projector.start(), Start::Genesis, "from position 0, through the archive");
    let store = projector.store();
    check_bets(store, &book, true);
    check_transfers_and_statements(store, &book, &crate::conformance::TransferHistory::of(data.path()));
    check_accounts(store, &book);
    let from_archive = digest(store).expect("digest");
    drop(projector);
    let mut reference =
        project(never_archived.path(), open_store(Backend::Sqlite, scratch.path(), "reference", true), false);
    assert_eq!(digest(reference.store()).expect("digest"), from_archive, "the same models as without retention");

    // A crash while reading archived records resumes at its checkpoint, inside the archive.
    let store = open_store(Backend::Sqlite, scratch.path(), "archived_crash", true);
    let options =
        ProjectorOptions { commit_rows: 50, crash_after_batches: Some(20), ..ProjectorOptions::new(data.path()) };
    let mut crashing = Projector::open(store, options, false).expect("open");
    assert!(matches!(crashing.catch_up(&mut |_| {}), Err(ProjectorError::CrashForTest { .. })));
    let checkpoint = crashing.position();
    let first_live = list_segments(&data.path().join("journal")).expect("segments")[0].0;
    assert!(checkpoint > 0 && checkpoint < first_live, "{checkpoint} inside the archive, below {first_live}");
    drop(crashing);
    let mut resumed = project(data.path(), open_store(Backend::Sqlite, scratch.path(), "archived_crash", false), false);
    assert!(matches!(resumed.start(), Start::Resumed { .. }), "{:?}", resumed.start());
    assert_eq!(digest(resumed.store()).expect("digest"), from_archive);
}
