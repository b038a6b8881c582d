//! The journal's hash chain: the sequencer's live head is what recovery rebuilds (from a
//! snapshot, from a snapshot plus replay, from replay alone), the chain recomputed from
//! `journal_page` records matches it, and any changed record, even one with a valid checksum
//! that recovery never reads again, makes the recomputed chain differ.

use book::Config;
use engine::{
    chain_next, open_data_dir, ChainHead, EngineHandle, EngineOptions, ManualClock, RecoveryReport,
    AUDIT_PAGE_RECORDS_MAX, CHAIN_HEAD_GENESIS,
};
use journal::Position;

use crate::workload::{random_command, setup, Rng, START};

fn open(dir: &std::path::Path, options: EngineOptions) -> (EngineHandle, RecoveryReport) {
    open_data_dir(dir, Config::default(), Box::new(ManualClock::new(START)), options).expect("open")
}

/// Runs the setup and `commands` random commands; returns the live chain head at the end.
fn run_workload(dir: &std::path::Path, seed: u64, commands: usize, options: EngineOptions) -> (ChainHead, Position) {
    let (engine, _) = open(dir, options);
    for command in setup() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    let mut rng = Rng::new(seed);
    for _ in 0..commands {
        let _reply = engine.submit(random_command(&mut rng)).expect("durable");
    }
    let head = engine.chain_head().expect("chain head");
    engine.shutdown();
    head
}

/// Every record from position 0, in pages of `limit`.
fn all_records(engine: &EngineHandle, limit: usize) -> Vec<(Position, Vec<u8>)> {
    let mut records = Vec::new();
    loop {
        let from = records.last().map_or(0, |(position, _)| position + 1);
        let page = engine.journal_page(from, limit).expect("page");
        if page.is_empty() {
            return records;
        }
        assert!(page.len() <= limit);
        records.extend(page);
    }
}

fn chain(records: &[(Position, Vec<u8>)]) -> ChainHead {
    records.iter().fold(CHAIN_HEAD_GENESIS, |head, (position, record)| chain_next(&head, *position, record))
}

fn reopened_head(dir: &std::path::Path) -> ((ChainHead, Position), RecoveryReport) {
    let (engine, report) = open(dir, EngineOptions::default());
    let head = engine.chain_head().expect("chain head");
    engine.shutdown();
    (head, report)
}

#[test]
fn a_new_journal_starts_at_the_genesis_head() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, report) = open(dir.path(), EngineOptions::default());
    assert_eq!(report.chain_head, CHAIN_HEAD_GENESIS);
    assert_eq!(engine.chain_head().unwrap(), (CHAIN_HEAD_GENESIS, 0));
    assert!(engine.journal_page(0, 10).unwrap().is_empty());
    engine.submit(book::Command::OpenAccount { currency: domain::Currency::EUR }).unwrap().expect("accepted");
    let (head, position) = engine.chain_head().unwrap();
    let records = engine.journal_page(0, 10).unwrap();
    assert_eq!(position, 1);
    assert_eq!(head, chain_next(&CHAIN_HEAD_GENESIS, 0, &records[0].1));
    engine.shutdown();
}

#[test]
fn recovery_rebuilds_the_live_head_from_snapshots_and_from_replay() {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions { snapshot_every_commands: 300, ..EngineOptions::default() };
    let live = run_workload(dir.path(), 11, 1_500, options);
    assert_ne!(live.0, CHAIN_HEAD_GENESIS);

    // From the final snapshot alone: nothing to replay, the head comes from the snapshot.
    let (head, report) = reopened_head(dir.path());
    assert_eq!(head, live);
    assert_eq!((report.chain_head, report.position), live);
    assert_eq!(report.replayed_batches, 0, "{report:?}");

    // Only the oldest snapshot kept: its head, extended by the records replayed after it.
    let store = journal::SnapshotStore::open(&dir.path().join("snapshots")).unwrap();
    let snapshots = store.list().unwrap();
    assert!(snapshots.len() >= 2, "{snapshots:?}");
    for (_, path) in &snapshots[1..] {
        std::fs::remove_file(path).unwrap();
    }
    let (head, report) = reopened_head(dir.path());
    assert_eq!(head, live);
    assert!(report.snapshot_position.is_some() && report.replayed_batches > 0, "{report:?}");

    // From the journal alone.
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let (head, report) = reopened_head(dir.path());
    assert_eq!(head, live);
    assert_eq!(report.snapshot_position, None);
    assert_eq!(report.replayed_batches, live.1, "{report:?}");
}

#[test]
fn the_chain_recomputed_from_journal_pages_is_the_live_head_and_any_change_breaks_it() {
    let dir = tempfile::tempdir().unwrap();
    let live = run_workload(dir.path(), 12, 400, EngineOptions { snapshot_every_commands: 0, ..Default::default() });
    let (engine, _) = open(dir.path(), EngineOptions::default());
    assert_eq!(engine.chain_head().unwrap(), live);
    // Small pages, so that the walk crosses many page boundaries.
    let records = all_records(&engine, 7);
    engine.shutdown();
    assert_eq!(records.len() as u64, live.1);
    assert!(records.iter().enumerate().all(|(index, (position, _))| *position == index as u64));
    assert_eq!(chain(&records), live.0);

    // One byte changed in one record, a record dropped, two records swapped: each differs.
    let mut changed = records.clone();
    changed[records.len() / 2].1[9] ^= 0x01;
    assert_ne!(chain(&changed), live.0);
    let mut dropped = records.clone();
    dropped.remove(3);
    assert_ne!(chain(&dropped), live.0);
    let mut swapped = records.clone();
    let (first, second) = (swapped[4].1.clone(), swapped[5].1.clone());
    swapped[4].1 = second;
    swapped[5].1 = first;
    assert_ne!(chain(&swapped), live.0);
}

#[test]
fn a_record_rewritten_on_disk_with_a_valid_checksum_is_caught_by_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let live = run_workload(dir.path(), 13, 300, EngineOptions::default());
    // Backdate a batch that the shutdown snapshot covers: recovery never reads it again, and
    // its checksum is recomputed, so only the chain can tell.
    let journal_dir = dir.path().join("journal");
    let segment = journal::testing::last_segment(&journal_dir).unwrap();
    let span = journal::testing::record_spans(&segment).unwrap()[5];
    let bytes = std::fs::read(&segment).unwrap();
    let header = journal::record::RECORD_HEADER_BYTES;
    let start = usize::try_from(span.offset).unwrap();
    let mut payload = bytes[start + header..start + usize::try_from(span.len).unwrap()].to_vec();
    let timestamp_offset = 1 + 8;
    payload[timestamp_offset] ^= 0x01;
    assert!(codec::decode_batch(&payload).is_ok(), "the forged record still decodes");
    let mut forged = Vec::new();
    journal::record::encode_record(&mut forged, span.position, &payload).unwrap();
    journal::testing::overwrite(&segment, span.offset, &forged).unwrap();

    let (engine, report) = open(dir.path(), EngineOptions::default());
    assert_eq!(report.replayed_batches, 0, "{report:?}");
    assert_eq!(engine.chain_head().unwrap(), live, "the live head comes from the snapshot");
    let records = all_records(&engine, AUDIT_PAGE_RECORDS_MAX);
    engine.shutdown();
    assert_eq!(records[5].1, payload, "the journal serves the forged record");
    assert_ne!(chain(&records), live.0);
}

#[test]
fn journal_pages_are_bounded() {
    let journal = journal::MemoryJournal::new();
    let recovered = engine::recover(&journal, None, Config::default()).unwrap();
    let engine =
        EngineHandle::start(Box::new(journal), None, recovered, Box::new(ManualClock::new(START)), Default::default())
            .unwrap();
    let records = AUDIT_PAGE_RECORDS_MAX + 5;
    for _ in 0..records {
        engine.submit(book::Command::OpenAccount { currency: domain::Currency::EUR }).unwrap().expect("accepted");
    }
    assert_eq!(engine.journal_page(0, usize::MAX).unwrap().len(), AUDIT_PAGE_RECORDS_MAX);
    assert!(engine.journal_page(0, 0).unwrap().is_empty());
    let tail = engine.journal_page(AUDIT_PAGE_RECORDS_MAX as u64, usize::MAX).unwrap();
    assert_eq!(tail.len(), 5);
    assert_eq!(tail[0].0, AUDIT_PAGE_RECORDS_MAX as u64);
    assert!(engine.journal_page(records as u64, 10).unwrap().is_empty());
    assert!(engine.journal_page(u64::MAX, 10).unwrap().is_empty());
    let (head, position) = engine.chain_head().unwrap();
    assert_eq!(position, records as u64);
    assert_eq!(head, chain(&all_records(&engine, AUDIT_PAGE_RECORDS_MAX)));
    engine.shutdown();
}
