//! Write, stop, reopen on the same directory: the same book, by digest. Torn tails are cut;
//! corruption in the middle is an error that names the position; a recovery that decides a
//! batch differently than recorded refuses to start.

use book::{Command, Config};
use engine::{open_data_dir, EngineOptions, ManualClock};
use journal::{FileJournal, FileJournalOptions};

use crate::workload::{random_command, setup, Rng, START};

fn run_workload(dir: &std::path::Path, seed: u64, commands: usize, options: EngineOptions) -> String {
    let clock = ManualClock::new(START);
    let (engine, _) = open_data_dir(dir, Config::default(), Box::new(clock.clone()), options).expect("open");
    for command in setup() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    let mut rng = Rng::new(seed);
    for step in 0..commands {
        if step % 50 == 0 {
            clock.advance(1_000);
        }
        let _reply = engine.submit(random_command(&mut rng)).expect("durable");
    }
    let digest = engine.read(codec::digest).expect("read");
    engine.shutdown();
    digest
}

fn reopen_digest(dir: &std::path::Path) -> (String, engine::RecoveryReport) {
    let (engine, report) =
        open_data_dir(dir, Config::default(), Box::new(ManualClock::new(START)), EngineOptions::default())
            .expect("reopen");
    let digest = engine.read(|book| {
        book.check_invariants().expect("invariants after recovery");
        codec::digest(book)
    });
    engine.shutdown();
    (digest.expect("read"), report)
}

#[test]
fn reopening_gives_the_same_book_from_snapshot_or_from_replay() {
    let dir = tempfile::tempdir().unwrap();
    let written = run_workload(dir.path(), 1, 2_000, EngineOptions::default());
    let (from_snapshot, report) = reopen_digest(dir.path());
    assert_eq!(written, from_snapshot);
    assert!(report.snapshot_position.is_some());
    // Without snapshots, the journal alone rebuilds the same book.
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let (from_replay, report) = reopen_digest(dir.path());
    assert_eq!(written, from_replay);
    assert_eq!(report.snapshot_position, None);
    assert!(report.replayed_commands > 2_000, "{report:?}");
}

#[test]
fn a_snapshot_in_the_middle_plus_the_journal_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions { snapshot_every_commands: 700, ..EngineOptions::default() };
    let written = run_workload(dir.path(), 2, 2_000, options);
    // Drop the final snapshot taken at shutdown: recovery must use an earlier one and replay.
    let store = journal::SnapshotStore::open(&dir.path().join("snapshots")).unwrap();
    let snapshots = store.list().unwrap();
    assert!(snapshots.len() >= 2, "{snapshots:?}");
    std::fs::remove_file(&snapshots.last().unwrap().1).unwrap();
    let (recovered, report) = reopen_digest(dir.path());
    assert_eq!(written, recovered);
    assert!(report.snapshot_position.is_some() && report.replayed_batches > 0, "{report:?}");
}

#[test]
fn a_torn_final_record_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let written =
        run_workload(dir.path(), 3, 300, EngineOptions { snapshot_every_commands: 0, ..EngineOptions::default() });
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    // A crash in the middle of writing one more record leaves half of it on disk.
    journal::testing::append_garbage(&dir.path().join("journal"), &[0x4a, 0x52, 0x4e, 0x4c, 1, 0, 0, 0, 200]).unwrap();
    let (recovered, report) = reopen_digest(dir.path());
    assert_eq!(written, recovered);
    assert!(report.truncated_bytes > 0, "{report:?}");
}

#[test]
fn corruption_in_the_middle_names_the_position() {
    let dir = tempfile::tempdir().unwrap();
    run_workload(dir.path(), 4, 300, EngineOptions { snapshot_every_commands: 0, ..EngineOptions::default() });
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let journal_dir = dir.path().join("journal");
    let spans = journal::testing::record_spans(&journal::testing::last_segment(&journal_dir).unwrap()).unwrap();
    let offset = spans[3].offset;
    journal::testing::flip_byte(&journal::testing::last_segment(&journal_dir).unwrap(), offset + 30).unwrap();
    let error =
        open_data_dir(dir.path(), Config::default(), Box::new(ManualClock::new(START)), EngineOptions::default())
            .expect_err("corruption must not open");
    let message = error.to_string();
    assert!(message.contains("position 3"), "{message}");
}

#[test]
fn replay_that_decides_differently_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    run_workload(dir.path(), 5, 500, EngineOptions { snapshot_every_commands: 0, ..EngineOptions::default() });
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    // Other rules than the ones the journal was decided with: stakes above 5.00 now fail.
    let config = Config { max_stake: domain::Money::from_minor(500), ..Config::default() };
    let (journal, _) = FileJournal::open(&dir.path().join("journal"), FileJournalOptions::default()).unwrap();
    let error = engine::recover(&journal, None, config).expect_err("must diverge");
    assert!(matches!(error, engine::EngineError::Diverged { .. }), "{error}");
}

#[test]
fn every_command_kind_round_trips_through_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    run_workload(dir.path(), 6, 3_000, EngineOptions { snapshot_every_commands: 0, ..EngineOptions::default() });
    let (journal, _) = FileJournal::open(&dir.path().join("journal"), FileJournalOptions::default()).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    journal::Journal::read_from(&journal, 0, &mut |_, payload| {
        let batch = codec::decode_batch(payload).expect("decodes");
        for command in &batch.commands {
            let mut bytes = Vec::new();
            codec::Wire::encode(command, &mut bytes);
            let decoded: Command = codec::Wire::decode(&mut codec::Reader::new(&bytes)).expect("decodes");
            assert_eq!(&decoded, command);
            kinds.insert(bytes[0]);
        }
        Ok(())
    })
    .unwrap();
    assert!(kinds.len() >= 9, "{kinds:?}");
}
