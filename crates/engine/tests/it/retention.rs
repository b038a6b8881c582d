//! Journal retention through the engine, on real files: segments below the oldest kept
//! snapshot are archived by the archiver thread while commands flow; the chain verifies from
//! position 0 across archives and live segments; restarts recover (also from archives alone,
//! with every snapshot gone); a crash between an archive's write and its segment's removal
//! (both present) recovers and verifies; a tampered archive fails verification.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use book::Config;
use engine::{open_data_dir, EngineHandle, EngineOptions, JournalRetention, ManualClock, RecoveryReport};
use journal::archive::{list_archives, read_archive_bytes, History};
use journal::file::list_segments;
use journal::Position;

use crate::workload::{random_command, setup, Rng, START};

fn options(retention: JournalRetention) -> EngineOptions {
    EngineOptions {
        snapshot_every_commands: 400,
        journal_retention: retention,
        retention_interval: Duration::from_millis(20),
        snapshots_keep: 2,
        journal_segment_bytes_max: 16 * 1024,
        ..EngineOptions::default()
    }
}

fn open(dir: &Path, options: EngineOptions) -> (EngineHandle, RecoveryReport) {
    open_data_dir(dir, Config::default(), Box::new(ManualClock::new(START)), options).expect("open")
}

fn run(engine: &EngineHandle, seed: u64, commands: usize) {
    let mut rng = Rng::new(seed);
    for _ in 0..commands {
        let _reply = engine.submit(random_command(&mut rng)).expect("durable");
    }
}

fn digest(engine: &EngineHandle) -> String {
    engine.read(|book| codec::digest(book).to_string()).expect("read")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let began = Instant::now();
    while !done() {
        assert!(began.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A data directory with archived segments: returns the digest and chain head at shutdown.
fn archived_data_dir(dir: &Path) -> (String, (engine::ChainHead, Position)) {
    let (engine, _) = open(dir, options(JournalRetention::Archive));
    for command in setup() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    run(&engine, 7, 3_000);
    wait_for("an archived segment", || engine.stats().journal_segments_archived.load(Ordering::Relaxed) > 2);
    assert!(engine.archived_below() > 0);
    let verification = engine.verify_chain().expect("verify");
    assert!(verification.verified, "{verification:?}");
    assert_eq!(verification.records, engine.chain_head().expect("head").1);
    let digest = digest(&engine);
    let head = engine.chain_head().expect("head");
    engine.shutdown();
    (digest, head)
}

#[test]
fn segments_below_the_oldest_kept_snapshot_are_archived_and_a_restart_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (digest_before, head) = archived_data_dir(dir.path());
    let archives = list_archives(&dir.path().join("archive")).expect("archives");
    let live = list_segments(&dir.path().join("journal")).expect("segments");
    let snapshots = journal::SnapshotStore::open_read_only(&dir.path().join("snapshots")).list().expect("snapshots");
    assert!(!archives.is_empty());
    assert_eq!(snapshots.len(), 2, "--snapshots-keep 2");
    // Never below what the oldest kept snapshot needs: the live journal starts at or before it.
    assert!(
        live[0].0 <= snapshots[0].0,
        "live from {} but the oldest kept snapshot is at {}",
        live[0].0,
        snapshots[0].0
    );
    let archived_bytes: u64 = archives.iter().map(|(_, path)| std::fs::metadata(path).expect("stat").len()).sum();
    let raw_bytes: u64 =
        archives.iter().map(|(first, path)| read_archive_bytes(path, *first).expect("read").0.raw_bytes).sum();
    assert!(archived_bytes * 2 < raw_bytes, "compressed: {archived_bytes} of {raw_bytes} bytes");

    // Restart (retention off now): the same book and head; audit pages from position 0 come
    // from the archive.
    let (engine, report) = open(dir.path(), options(JournalRetention::Off));
    assert_eq!(report.chain_head, head.0);
    assert_eq!(digest(&engine), digest_before);
    let page = engine.journal_page(0, 10).expect("archived page");
    assert_eq!(page.iter().map(|(position, _)| *position).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    let verification = engine.verify_chain().expect("verify");
    assert!(verification.verified, "{verification:?}");
    engine.shutdown();

    // Offline, read-only, like `sportsbook verify`.
    let recovered = engine::recover_read_only(dir.path(), Config::default()).expect("read-only recovery");
    let history = History::new(&dir.path().join("journal"), Some(&dir.path().join("archive")));
    let verification =
        engine::verify_history(&history, recovered.report.chain_head, recovered.report.position).expect("verify");
    assert!(verification.verified, "{verification:?}");
}

#[test]
fn with_every_snapshot_gone_recovery_replays_the_archives_from_position_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (digest_before, head) = archived_data_dir(dir.path());
    std::fs::remove_dir_all(dir.path().join("snapshots")).expect("remove snapshots");
    let (engine, report) = open(dir.path(), options(JournalRetention::Off));
    assert_eq!(report.snapshot_position, None);
    assert_eq!(report.replayed_batches, head.1, "every batch replayed, archived ones included");
    assert_eq!(report.chain_head, head.0);
    assert_eq!(digest(&engine), digest_before);
    engine.shutdown();
}

#[test]
fn a_crash_between_copy_and_remove_leaves_both_and_recovery_and_verify_handle_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (digest_before, head) = archived_data_dir(dir.path());
    // The crash: every archived segment back in the live journal, beside its archive.
    for (first, path) in list_archives(&dir.path().join("archive")).expect("archives") {
        let (_, raw) = read_archive_bytes(&path, first).expect("read");
        std::fs::write(journal::file::segment_path(&dir.path().join("journal"), first), raw).expect("restore");
    }
    assert_eq!(list_segments(&dir.path().join("journal")).expect("segments")[0].0, 0);
    let (engine, report) = open(dir.path(), options(JournalRetention::Archive));
    assert_eq!(report.chain_head, head.0);
    assert_eq!(digest(&engine), digest_before);
    assert!(engine.verify_chain().expect("verify").verified);
    // The archiver finishes the job: the segments go again, the archives are kept.
    wait_for("the restored segments to be removed", || {
        list_segments(&dir.path().join("journal")).expect("segments")[0].0 > 0
    });
    let verification = engine.verify_chain().expect("verify");
    assert!(verification.verified, "{verification:?}");
    engine.shutdown();
}

#[test]
fn a_tampered_archive_fails_verification_with_its_file_and_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _ = archived_data_dir(dir.path());
    let archives = list_archives(&dir.path().join("archive")).expect("archives");
    let (first, path) = archives[1].clone();
    let (header, mut raw) = read_archive_bytes(&path, first).expect("read");
    let pristine = std::fs::read(&path).expect("bytes");

    // A forged record with a valid checksum, recompressed: only the chain catches it.
    let (record, payload, _) = journal::record::decode_record(&raw).expect("the archive's first record");
    assert_eq!(record.position, first);
    let mut payload = payload.to_vec();
    let last = payload.len() - 1;
    payload[last] ^= 0x01;
    let mut forged = Vec::new();
    journal::record::encode_record(&mut forged, first, &payload).expect("encode");
    raw[..forged.len()].copy_from_slice(&forged);
    let bytes = journal::archive::encode_archive(first, header.records, &raw).expect("encode");
    std::fs::write(&path, &bytes).expect("forge");

    let (engine, _) = open(dir.path(), options(JournalRetention::Off));
    let verification = engine.verify_chain().expect("verify");
    assert!(!verification.verified);
    assert!(verification.reason.as_deref().is_some_and(|reason| reason.contains("differs")), "{verification:?}");
    assert_eq!(verification.records, engine.chain_head().expect("head").1, "every record read");

    // A flipped byte in the compressed frame: the file and a position in it.
    let mut damaged = pristine.clone();
    let at = damaged.len() - 10;
    damaged[at] ^= 0x10;
    std::fs::write(&path, &damaged).expect("damage");
    let verification = engine.verify_chain().expect("verify");
    assert!(!verification.verified);
    let (position, file) = verification.problem.clone().expect("a problem");
    assert_eq!(file.as_deref(), Some(path.as_path()), "{verification:?}");
    assert!((first..=first + header.records).contains(&position), "{verification:?}");
    assert!(verification.reason.as_deref().is_some_and(|reason| reason.contains(&path.display().to_string())));
    engine.shutdown();
}

#[test]
fn a_reader_checkpoint_holds_archiving_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, _) = open(dir.path(), options(JournalRetention::Archive));
    let hold = Arc::new(AtomicU64::new(0));
    engine.hold_retention(Arc::clone(&hold));
    for command in setup() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    run(&engine, 3, 2_000);
    engine.snapshot().expect("snapshot");
    engine.snapshot().expect("snapshot");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(engine.stats().journal_segments_archived.load(Ordering::Relaxed), 0, "held at position 0");
    assert!(list_archives(&dir.path().join("archive")).expect("archives").is_empty());
    // The reader commits up to the middle: only segments wholly below it go.
    let middle = engine.chain_head().expect("head").1 / 2;
    hold.store(middle, Ordering::SeqCst);
    wait_for("archiving up to the hold", || engine.stats().journal_segments_archived.load(Ordering::Relaxed) > 0);
    std::thread::sleep(Duration::from_millis(100));
    let live = list_segments(&dir.path().join("journal")).expect("segments");
    assert!(live[0].0 <= middle, "live from {} past the hold {middle}", live[0].0);
    assert!(engine.verify_chain().expect("verify").verified);
    engine.shutdown();
}
