//! Snapshots written by the follower, never by the sequencer in steady state: each one is byte
//! for byte what the sequencer would have written at its position (the live book's encoding,
//! its next sequence number, the chain head there), it recovers to the live book's digest, and
//! the sequencer's own encoder only runs at shutdown. The longest sequencer pause is counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use book::Config;
use engine::{
    chain_next, recover, BookAt, ChainHead, Committed, EngineHandle, EngineOptions, ManualClock, CHAIN_HEAD_GENESIS,
};
use journal::{MemoryJournal, Position, SnapshotStore};
use sha2::{Digest, Sha256};

use crate::workload::{random_command, setup, Rng, START};

/// The live book after each batch, by the journal position after it: the next sequence number
/// and the SHA-256 of the book's encoding (`codec::encode_snapshot`).
type LiveStates = Arc<Mutex<BTreeMap<Position, (u64, [u8; 32])>>>;

fn start(journal: &MemoryJournal, store_dir: &std::path::Path, options: EngineOptions) -> EngineHandle {
    let store = SnapshotStore::open(store_dir).expect("store");
    let recovered = recover(journal, Some(&store), Config::default()).expect("recover");
    EngineHandle::start(Box::new(journal.clone()), Some(store), recovered, Box::new(ManualClock::new(START)), options)
        .expect("start")
}

/// A commit hook that records the live state after every batch (test only: it encodes the
/// whole book on the sequencer thread).
fn recording_hook(live: &LiveStates) -> Box<dyn FnMut(&Committed<'_>) + Send> {
    let live = Arc::clone(live);
    Box::new(move |committed: &Committed<'_>| {
        let encoded: [u8; 32] = Sha256::digest(codec::encode_snapshot(committed.book)).into();
        let next_sequence = committed.first_sequence + committed.commands;
        live.lock().unwrap().insert(committed.position + 1, (next_sequence, encoded));
    })
}

fn chain_head_at(journal: &MemoryJournal, position: Position) -> ChainHead {
    journal
        .records()
        .iter()
        .take(position as usize)
        .enumerate()
        .fold(CHAIN_HEAD_GENESIS, |head, (at, record)| chain_next(&head, at as Position, record))
}

#[test]
fn follower_snapshots_are_what_the_sequencer_would_write_and_recover_to_the_live_book() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("snapshots");
    let journal = MemoryJournal::new();
    let live: LiveStates = Arc::default();
    let options = EngineOptions {
        snapshot_every_commands: 97,
        on_commit: vec![recording_hook(&live)],
        ..EngineOptions::default()
    };
    let engine = start(&journal, &store_dir, options);
    let store = SnapshotStore::open_read_only(&store_dir);
    let mut checked: BTreeSet<Position> = BTreeSet::new();
    let mut first_checked: Option<(Position, Vec<u8>)> = None;
    let mut check_new_snapshots = |checked: &mut BTreeSet<Position>| {
        for (position, path) in store.list().unwrap() {
            if checked.contains(&position) {
                continue;
            }
            // The follower prunes old snapshots as it writes new ones.
            let Ok(file) = std::fs::read(&path) else { continue };
            let (header_position, payload) = journal::snapshot::decode_snapshot(&file).expect("a complete snapshot");
            assert_eq!(header_position, position);
            let (next_sequence, encoded) = live.lock().unwrap()[&position];
            // Byte for byte: [next_sequence][chain head][the book's encoding at that position].
            assert_eq!(payload[..8], next_sequence.to_le_bytes(), "next sequence at {position}");
            assert_eq!(payload[8..40], chain_head_at(&journal, position), "chain head at {position}");
            let book_bytes: [u8; 32] = Sha256::digest(&payload[40..]).into();
            assert_eq!(book_bytes, encoded, "the book's encoding at {position}");
            if first_checked.is_none() {
                first_checked = Some((position, file.clone()));
            }
            checked.insert(position);
        }
    };
    for command in setup() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    let mut rng = Rng::new(21);
    for step in 0..1_500 {
        let _reply = engine.submit(random_command(&mut rng)).expect("durable");
        if step % 10 == 0 {
            check_new_snapshots(&mut checked);
        }
    }
    // An explicit snapshot goes to the follower too, at the sequencer's position.
    let explicit = engine.snapshot().expect("snapshot");
    assert_eq!(explicit, engine.chain_head().unwrap().1);
    check_new_snapshots(&mut checked);
    assert!(checked.contains(&explicit), "{checked:?}");
    assert!(checked.len() >= 10, "only {} follower snapshots were seen: {checked:?}", checked.len());

    let stats = engine.stats();
    assert_eq!(stats.snapshots_sequencer.load(Ordering::Relaxed), 0, "the sequencer encoded a snapshot");
    assert!(stats.snapshots_follower.load(Ordering::Relaxed) >= checked.len() as u64);
    assert_eq!(stats.follower_detached.load(Ordering::Relaxed), 0);
    assert_eq!(stats.snapshots_skipped.load(Ordering::Relaxed), 0);
    assert!(!stats.follower_failed.load(Ordering::Relaxed));
    let pause = stats.sequencer_pause_nanos_max.load(Ordering::Relaxed);
    assert!(pause > 0 && pause >= stats.journal_sync_nanos_max.load(Ordering::Relaxed));
    assert!(!stats.take_recent_pause_max().is_zero());
    assert!(stats.take_recent_pause_max().is_zero(), "taking the recent maximum resets it");
    let end = engine.chain_head().unwrap();
    engine.shutdown();
    // Shutdown: the follower finished, then the sequencer wrote the final snapshot.
    assert_eq!(engine.stats().snapshots_sequencer.load(Ordering::Relaxed), 1);
    assert_eq!(SnapshotStore::open_read_only(&store_dir).highest_position().unwrap(), end.1);

    // The first follower snapshot seen recovers, with no replay, to the live book there.
    let (position, file) = first_checked.expect("a follower snapshot");
    let alone = tempfile::tempdir().unwrap();
    let alone_store = SnapshotStore::open(alone.path()).unwrap();
    std::fs::write(alone_store.path_for(position), &file).unwrap();
    let mut prefix = MemoryJournal::new();
    for record in journal.records().iter().take(position as usize) {
        journal::Journal::append(&mut prefix, record).unwrap();
    }
    let recovered = recover(&prefix, Some(&alone_store), Config::default()).expect("recover from the follower's");
    assert_eq!(recovered.report.snapshot_position, Some(position));
    assert_eq!(recovered.report.replayed_batches, 0);
    assert_eq!(recovered.report.chain_head, chain_head_at(&journal, position));
    let digest: [u8; 32] = Sha256::digest(codec::encode_snapshot(&recovered.book)).into();
    assert_eq!(digest, live.lock().unwrap()[&position].1);
    recovered.book.check_invariants().expect("invariants");
}

#[test]
fn without_a_snapshot_store_nothing_is_encoded_and_the_pause_is_still_measured() {
    let journal = MemoryJournal::new();
    let recovered = recover(&journal, None, Config::default()).unwrap();
    let options = EngineOptions { snapshot_every_commands: 10, ..EngineOptions::default() };
    let engine = EngineHandle::start(Box::new(journal), None, recovered, Box::new(ManualClock::new(START)), options)
        .expect("start");
    for command in setup() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    assert_eq!(engine.snapshot().unwrap(), engine.chain_head().unwrap().1);
    let stats = engine.stats();
    assert_eq!(stats.snapshots.load(Ordering::Relaxed), 0);
    assert_eq!(stats.snapshots_skipped.load(Ordering::Relaxed), 0);
    assert!(stats.sequencer_pause_nanos_max.load(Ordering::Relaxed) > 0);
    engine.shutdown();
}

#[test]
fn a_follower_too_far_behind_is_detached_and_its_snapshots_are_skipped_never_taken_by_the_sequencer() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("snapshots");
    let journal = MemoryJournal::new();
    // One queued command at most: any batch of two or more commands finds it full.
    let options =
        EngineOptions { snapshot_every_commands: 5, follower_queue_commands_max: 1, ..EngineOptions::default() };
    let engine = start(&journal, &store_dir, options);
    for command in setup() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    let mut rng = Rng::new(31);
    let stats = engine.stats();
    // Submitted without waiting, commands pile up and the sequencer takes several per batch.
    for _ in 0..100 {
        let receivers: Vec<_> =
            (0..500).map(|_| engine.submit_waiting(random_command(&mut rng)).expect("submit")).collect();
        for receiver in receivers {
            let _reply = receiver.recv().expect("reply").expect("durable");
        }
        if stats.follower_detached.load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    assert_eq!(stats.follower_detached.load(Ordering::Relaxed), 1);
    for _ in 0..20 {
        let _reply = engine.submit(random_command(&mut rng)).expect("durable");
    }
    assert!(stats.snapshots_skipped.load(Ordering::Relaxed) >= 3, "{stats:?}");
    assert_eq!(
        stats.snapshots_sequencer.load(Ordering::Relaxed),
        0,
        "a periodic snapshot was encoded by the sequencer"
    );
    // An explicit snapshot is still taken: by the sequencer, since the follower is gone.
    let position = engine.snapshot().expect("snapshot");
    assert_eq!(stats.snapshots_sequencer.load(Ordering::Relaxed), 1);
    let live = engine.read(codec::digest).unwrap();
    engine.shutdown();
    let store = SnapshotStore::open(&store_dir).unwrap();
    assert!(store.highest_position().unwrap() >= position);
    let recovered = recover(&journal, Some(&store), Config::default()).unwrap();
    assert_eq!(codec::digest(&recovered.book), live);
}

/// A full disk refuses a batch and the sequencer rebuilds its book (from the follower's
/// snapshots and the journal); the follower never saw the refused batch and goes on writing
/// snapshots that recover to the live book.
#[test]
fn after_a_full_disk_the_follower_goes_on_from_the_durable_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("snapshots");
    let memory = MemoryJournal::new();
    let plan = journal::FaultPlan::fail_sync_at(setup().len() as u64 + 3)
        .with_kind(journal::FaultKind::StorageFull)
        .with_full_attempts(1);
    let faulty = journal::FaultyJournal::new(memory.clone(), plan);
    let store = SnapshotStore::open(&store_dir).unwrap();
    let recovered = recover(&memory, Some(&store), Config::default()).unwrap();
    let retry = std::time::Duration::from_millis(100);
    let options = EngineOptions { snapshot_every_commands: 1, storage_full_retry: retry, ..EngineOptions::default() };
    let engine =
        EngineHandle::start(Box::new(faulty), Some(store), recovered, Box::new(ManualClock::new(START)), options)
            .unwrap();
    for command in setup() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    let mut rng = Rng::new(41);
    let mut refused = 0;
    for _ in 0..60 {
        match engine.submit(random_command(&mut rng)) {
            Ok(_) => {}
            Err(engine::EngineError::StorageFull) => {
                refused += 1;
                std::thread::sleep(retry);
            }
            Err(error) => panic!("{error}"),
        }
    }
    let stats = engine.stats();
    assert!(refused >= 1 && stats.storage_full_events.load(Ordering::Relaxed) == 1, "refused {refused}");
    assert!(!stats.stopped.load(Ordering::SeqCst));
    // The newest snapshot, once the follower has written it, is at the live position.
    let (_, end) = engine.chain_head().unwrap();
    let live = engine.read(codec::digest).unwrap();
    assert_eq!(engine.snapshot().unwrap(), end);
    assert!(!stats.follower_failed.load(Ordering::SeqCst), "{:?}", stats.follower_failure);
    assert_eq!(stats.follower_detached.load(Ordering::Relaxed), 0);
    assert_eq!(stats.snapshots_sequencer.load(Ordering::Relaxed), 0);
    let store = SnapshotStore::open_read_only(&store_dir);
    assert_eq!(store.highest_position().unwrap(), end);
    let from_snapshot = recover(&memory, Some(&store), Config::default()).unwrap();
    assert_eq!(from_snapshot.report.snapshot_position, Some(end));
    assert_eq!(codec::digest(&from_snapshot.book), live);
    engine.shutdown();
}

/// Periodic snapshots every `every` commands by an external writer, every snapshot kept.
fn external_writer_options(every: u64) -> EngineOptions {
    EngineOptions {
        snapshot_every_commands: every,
        periodic_snapshots: engine::PeriodicSnapshots::External,
        snapshots_keep: 1_000,
        ..EngineOptions::default()
    }
}

/// A recovered book where it stands, as a snapshot records it.
fn book_at(recovered: &engine::Recovered) -> BookAt<'_> {
    let report = &recovered.report;
    BookAt {
        position: report.position,
        next_sequence: report.next_sequence,
        chain_head: &report.chain_head,
        book: &recovered.book,
    }
}

/// Every snapshot in `store_dir` is what recovery gives at its position from the journal's
/// files replayed from position 0, byte for byte; returns how many there are.
fn check_snapshots_against_a_replay(data_dir: &std::path::Path) -> usize {
    let (journal, _) = journal::FileJournal::open_read_only(&data_dir.join("journal")).unwrap();
    let snapshots = SnapshotStore::open_read_only(&data_dir.join("snapshots")).list().unwrap();
    for (position, path) in &snapshots {
        let file = std::fs::read(path).unwrap();
        let (_, payload) = journal::snapshot::decode_snapshot(&file).unwrap();
        let replayed = engine::recover_to(&journal, None, Config::default(), Some(*position)).unwrap();
        assert_eq!(payload[..8], replayed.report.next_sequence.to_le_bytes(), "next sequence at {position}");
        assert_eq!(payload[8..40], replayed.report.chain_head, "chain head at {position}");
        assert!(payload[40..] == codec::encode_snapshot(&replayed.book), "the book at {position}");
    }
    snapshots.len()
}

/// `PeriodicSnapshots::External`: the engine keeps no follower book and hands out a
/// `SnapshotWriter`. A snapshot written through it from another book at the same position is
/// byte for byte the sequencer's; it is refused past the durable position and behind the
/// newest snapshot; while none is written the sequencer (this engine on a memory journal knows no
/// journal files to catch up from) writes one itself every `SNAPSHOT_OVERDUE_FACTOR` intervals,
/// and not before.
#[test]
fn an_external_writer_writes_the_periodic_snapshots_and_the_sequencer_only_overdue_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("snapshots");
    let journal = MemoryJournal::new();
    let every = 40u64;
    let options = external_writer_options(every);
    let engine = start(&journal, &store_dir, options);
    let writer = engine.snapshot_writer().expect("an external writer is handed out");
    let stats = engine.stats();
    let mut rng = Rng::new(41);
    let mut submit = |engine: &EngineHandle, count: u64| {
        for _ in 0..count {
            let _reply = engine.submit(random_command(&mut rng)).expect("durable");
        }
    };
    for command in setup() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    let at_setup = setup().len() as u64;
    // No external writer writes: the sequencer waits four intervals, then writes one itself.
    submit(&engine, every * engine::SNAPSHOT_OVERDUE_FACTOR - at_setup - 1);
    assert!(writer.due(every * engine::SNAPSHOT_OVERDUE_FACTOR - 1));
    assert_eq!(stats.snapshots.load(Ordering::Relaxed), 0, "overdue only after four intervals");
    submit(&engine, 1);
    // The sequencer writes it after the batch's replies: a read is served after that.
    engine.read(|_| ()).unwrap();
    assert_eq!(stats.snapshots_overdue.load(Ordering::Relaxed), 1);
    assert_eq!(stats.snapshots_sequencer.load(Ordering::Relaxed), 1);
    assert_eq!(stats.snapshots_follower.load(Ordering::Relaxed), 0, "no follower runs");
    assert!(!writer.due(every * engine::SNAPSHOT_OVERDUE_FACTOR), "counted from the overdue snapshot");

    // Another book at the journal's end, as a projector's would be: its snapshot is the
    // sequencer's at that position, byte for byte.
    submit(&engine, every);
    let (_, end) = engine.chain_head().unwrap();
    let replayed = recover(&journal, None, Config::default()).unwrap();
    assert_eq!(replayed.report.position, end);
    let next_sequence = replayed.report.next_sequence;
    assert!(writer.due(next_sequence));
    let beyond = BookAt { position: end + 1, ..book_at(&replayed) };
    assert_eq!(writer.save(beyond).unwrap(), None, "not durable yet");
    assert_eq!(writer.save(book_at(&replayed)).unwrap(), Some(end));
    assert_eq!(stats.snapshots_external.load(Ordering::Relaxed), 1);
    assert!(!writer.due(next_sequence));
    assert_eq!(writer.save(book_at(&replayed)).unwrap(), None, "one at that position already");
    let path = SnapshotStore::open_read_only(&store_dir).path_for(end);
    let external = std::fs::read(&path).unwrap();
    assert_eq!(engine.snapshot().unwrap(), end);
    assert_eq!(std::fs::read(&path).unwrap(), external, "the sequencer's snapshot at {end} is the same file");

    // External snapshots keep the sequencer's overdue ones away.
    let mut overdue_free = 0;
    for _ in 0..6 {
        submit(&engine, every);
        let replayed = recover(&journal, None, Config::default()).unwrap();
        if writer.save(book_at(&replayed)).unwrap().is_some() {
            overdue_free += 1;
        }
    }
    assert_eq!(overdue_free, 6);
    engine.read(|_| ()).unwrap();
    assert_eq!(stats.snapshots_overdue.load(Ordering::Relaxed), 1);
    assert_eq!(stats.snapshots_external.load(Ordering::Relaxed), 7);
    assert_eq!(stats.snapshot_failures.load(Ordering::Relaxed), 0);
    let live = engine.read(codec::digest).unwrap();
    engine.shutdown();
    let store = SnapshotStore::open(&store_dir).unwrap();
    let recovered = recover(&journal, Some(&store), Config::default()).unwrap();
    assert_eq!(codec::digest(&recovered.book), live);
}

#[test]
fn only_an_engine_told_so_hands_out_a_snapshot_writer() {
    let dir = tempfile::tempdir().unwrap();
    let follower = start(&MemoryJournal::new(), &dir.path().join("a"), EngineOptions::default());
    assert!(follower.snapshot_writer().is_none(), "its follower writes the periodic snapshots");
    follower.shutdown();
    let journal = MemoryJournal::new();
    let recovered = recover(&journal, None, Config::default()).unwrap();
    let options = EngineOptions { periodic_snapshots: engine::PeriodicSnapshots::External, ..EngineOptions::default() };
    let storeless = EngineHandle::start(Box::new(journal), None, recovered, Box::new(ManualClock::new(START)), options)
        .expect("start");
    assert!(storeless.snapshot_writer().is_none(), "no snapshot store, nothing to write");
    storeless.shutdown();
}

/// On a data directory an overdue snapshot is not written on the sequencer thread: a catch-up
/// thread loads the newest snapshot, replays the journal's files after it and writes one at the
/// durable position it was given, byte for byte what recovery gives there.
#[test]
fn an_overdue_snapshot_is_caught_up_from_the_journal_files_off_the_sequencer() {
    let dir = tempfile::tempdir().unwrap();
    let every = 40u64;
    let options = external_writer_options(every);
    let (engine, _) =
        engine::open_data_dir(dir.path(), Config::default(), Box::new(ManualClock::new(START)), options).unwrap();
    let stats = engine.stats();
    for command in setup() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    let mut rng = Rng::new(43);
    // Past two overdue points, with none written by an external writer; each catch-up is
    // waited for, so that the next one starts from its snapshot.
    for round in 1..=2u64 {
        while stats.snapshots_overdue.load(Ordering::Relaxed) < round {
            let _reply = engine.submit(random_command(&mut rng)).expect("durable");
            engine.read(|_| ()).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while stats.snapshots_catch_up.load(Ordering::Relaxed) < round {
            assert!(std::time::Instant::now() < deadline, "no catch-up snapshot: {stats:?}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    assert_eq!(stats.snapshots_sequencer.load(Ordering::Relaxed), 0, "the sequencer wrote one");
    assert_eq!(stats.snapshots_follower.load(Ordering::Relaxed), 0);
    assert_eq!(stats.snapshot_failures.load(Ordering::Relaxed), 0);
    engine.shutdown();
    // Two caught up (the sequencer's final one is at the second's position or after it).
    assert!(check_snapshots_against_a_replay(dir.path()) >= 2);
}
