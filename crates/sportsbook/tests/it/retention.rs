//! Journal retention with the real binary: `sportsbook verify` recomputes the hash chain from
//! position 0 across the archive and the live journal, follows `--archive` when the archive
//! was moved, and fails naming the file and the position when an archive is damaged or missing.

use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use engine::{EngineOptions, JournalRetention, SystemClock};

use crate::server::binary;

fn verify(data: &Path, archive: Option<&Path>) -> Output {
    let mut command = binary();
    command.args(["verify", "--data-dir"]).arg(data);
    if let Some(archive) = archive {
        command.arg("--archive").arg(archive);
    }
    command.output().expect("runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A data directory whose early segments the engine archived.
fn archived_data_dir(data: &Path) {
    let options = EngineOptions {
        snapshot_every_commands: 300,
        journal_retention: JournalRetention::Archive,
        retention_interval: Duration::from_millis(20),
        journal_segment_bytes_max: 8 * 1024,
        ..EngineOptions::default()
    };
    let (engine, _) =
        engine::open_data_dir(data, book::Config::default(), Box::new(SystemClock), options).expect("open");
    for _ in 0..1_500 {
        engine.submit(book::Command::OpenAccount { currency: domain::Currency::EUR }).expect("durable").expect("ok");
    }
    let began = Instant::now();
    while engine.stats().journal_segments_archived.load(Ordering::Relaxed) < 3 {
        assert!(began.elapsed() < Duration::from_secs(30), "nothing archived");
        std::thread::sleep(Duration::from_millis(10));
    }
    engine.shutdown();
}

#[test]
fn verify_walks_the_chain_across_the_archive_and_names_a_damaged_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    archived_data_dir(&data);
    let archives = journal::archive::list_archives(&data.join("archive")).expect("archives");
    assert!(archives.len() >= 3);

    let verified = verify(&data, None);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains("hash chain verified over 1500 records from position 0"), "{}", text(&verified));
    assert!(text(&verified).contains("invariants hold"), "{}", text(&verified));

    // The archive moved elsewhere: without `--archive` the early records are missing (named);
    // with it, verified.
    let moved = dir.path().join("cold-storage");
    std::fs::rename(data.join("archive"), &moved).expect("move the archive");
    let missing = verify(&data, None);
    assert!(!missing.status.success(), "{}", text(&missing));
    assert!(text(&missing).contains("the journal record at position 0 is in no live segment"), "{}", text(&missing));
    let verified = verify(&data, Some(&moved));
    assert!(verified.status.success(), "{}", text(&verified));

    // A damaged archive: the file and a position in it.
    let (first, _) = archives[1];
    let path = journal::archive::archive_path(&moved, first);
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes.len() - 12;
    bytes[at] ^= 0x20;
    std::fs::write(&path, &bytes).expect("damage");
    let damaged = verify(&data, Some(&moved));
    assert!(!damaged.status.success(), "{}", text(&damaged));
    assert!(text(&damaged).contains(&path.display().to_string()), "{}", text(&damaged));
    assert!(text(&damaged).contains("is corrupt"), "{}", text(&damaged));
}
