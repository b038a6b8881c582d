//! Snapshot store: atomic saves, retention, fallback past corrupt snapshots.

use std::fs;

use journal::snapshot::{decode_snapshot, encode_snapshot, SnapshotDecodeError, SNAPSHOTS_KEPT_MAX};
use journal::testing::flip_byte;
use journal::SnapshotStore;
use tempfile::TempDir;

fn snapshot_files(store: &SnapshotStore) -> Vec<u64> {
    store.list().unwrap().into_iter().map(|(p, _)| p).collect()
}

#[test]
fn empty_store_has_no_snapshot() {
    let dir = TempDir::new().unwrap();
    let store = SnapshotStore::open(&dir.path().join("snapshots")).unwrap();
    assert_eq!(store.load_latest().unwrap(), None);
}

#[test]
fn save_then_load_latest() {
    let dir = TempDir::new().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    store.save(10, b"state at 10").unwrap();
    store.save(25, b"state at 25").unwrap();
    assert_eq!(store.load_latest().unwrap(), Some((25, b"state at 25".to_vec())));
    assert!(store.path_for(25).ends_with("snapshot-00000000000000000025.bin"));

    // A reopened store sees the same; empty snapshots are valid too.
    let store = SnapshotStore::open(dir.path()).unwrap();
    store.save(30, b"").unwrap();
    assert_eq!(store.load_latest().unwrap(), Some((30, Vec::new())));
    assert_eq!(store.corrupt_skipped(), 0);
}

#[test]
fn keeps_only_the_newest_snapshots() {
    let dir = TempDir::new().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    for position in [5, 1, 9, 7, 3] {
        store.save(position, &position.to_le_bytes()).unwrap();
    }
    assert_eq!(SNAPSHOTS_KEPT_MAX, 3);
    assert_eq!(snapshot_files(&store), vec![5, 7, 9]);
    assert_eq!(store.load_latest().unwrap(), Some((9, 9u64.to_le_bytes().to_vec())));
}

#[test]
fn corrupt_newest_falls_back_to_an_older_snapshot() {
    let dir = TempDir::new().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    store.save(1, b"one").unwrap();
    store.save(2, b"two").unwrap();
    store.save(3, b"three").unwrap();
    flip_byte(&store.path_for(3), 30).unwrap(); // in the payload
    fs::write(store.path_for(2), b"SNAP").unwrap(); // truncated

    let load = store.load_latest_detailed().unwrap();
    assert_eq!(load.latest, Some((1, b"one".to_vec())));
    assert_eq!(load.skipped.iter().map(|s| s.position).collect::<Vec<_>>(), vec![3, 2]);
    assert!(load.skipped[0].reason.contains("crc"), "{}", load.skipped[0].reason);
    assert_eq!(store.load_latest().unwrap(), Some((1, b"one".to_vec())));
    assert_eq!(store.corrupt_skipped(), 4);
}

#[test]
fn all_corrupt_means_no_snapshot() {
    let dir = TempDir::new().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    store.save(4, b"four").unwrap();
    flip_byte(&store.path_for(4), 0).unwrap();
    assert_eq!(store.load_latest().unwrap(), None);
}

#[test]
fn snapshot_renamed_to_another_position_is_rejected() {
    let dir = TempDir::new().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    store.save(4, b"four").unwrap();
    fs::rename(store.path_for(4), store.path_for(8)).unwrap();
    let load = store.load_latest_detailed().unwrap();
    assert_eq!(load.latest, None);
    assert!(load.skipped[0].reason.contains("position"));
}

#[test]
fn temp_file_leftovers_are_ignored_and_cleaned_up() {
    let dir = TempDir::new().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    store.save(5, b"five").unwrap();
    // An interrupted save of a newer snapshot.
    let leftover = dir.path().join("snapshot-00000000000000000009.bin.tmp");
    fs::write(&leftover, b"partial").unwrap();
    fs::write(dir.path().join("notes.txt"), b"unrelated").unwrap();
    assert_eq!(store.load_latest().unwrap(), Some((5, b"five".to_vec())));
    assert_eq!(store.corrupt_skipped(), 0);

    let store = SnapshotStore::open(dir.path()).unwrap();
    assert!(!leftover.exists());
    assert!(dir.path().join("notes.txt").exists());
    assert_eq!(store.load_latest().unwrap(), Some((5, b"five".to_vec())));
}

#[test]
fn encoding_round_trips_and_rejects_damage() {
    let encoded = encode_snapshot(77, b"payload").unwrap();
    assert_eq!(decode_snapshot(&encoded).unwrap(), (77, &b"payload"[..]));
    assert!(matches!(decode_snapshot(&encoded[..10]), Err(SnapshotDecodeError::Truncated { .. })));
    assert!(matches!(decode_snapshot(&encoded[..encoded.len() - 1]), Err(SnapshotDecodeError::LengthMismatch { .. })));
    let mut versioned = encoded.clone();
    versioned[4] = 2;
    assert_eq!(decode_snapshot(&versioned), Err(SnapshotDecodeError::UnsupportedVersion { version: 2 }));
}

/// A payload written in pieces (more than one sync chunk, pieces of odd sizes) makes the file
/// `encode_snapshot` makes of the whole payload; a writer that fails leaves no file and the
/// snapshots before it as they were.
#[test]
fn a_snapshot_saved_in_pieces_is_the_same_file_and_a_failed_one_leaves_nothing() {
    use std::io::Write;
    let dir = TempDir::new().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let payload: Vec<u8> =
        (0..journal::snapshot::SNAPSHOT_WRITE_CHUNK_BYTES * 2 + 12_345).map(|i| (i * 7 % 251) as u8).collect();
    store
        .save_with(40, &mut |out: &mut dyn Write| {
            for piece in payload.chunks(65_537) {
                out.write_all(piece)?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(fs::read(store.path_for(40)).unwrap(), encode_snapshot(40, &payload).unwrap());
    assert_eq!(store.load_latest().unwrap(), Some((40, payload.clone())));

    let failed = store.save_with(50, &mut |out: &mut dyn Write| {
        out.write_all(&payload[..1_000])?;
        Err(std::io::Error::other("the encoder gave up"))
    });
    let message = failed.unwrap_err().to_string();
    assert!(message.contains("the encoder gave up"), "{message}");
    assert_eq!(snapshot_files(&store), vec![40]);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file is left");
    assert_eq!(store.load_latest().unwrap(), Some((40, payload)));
}
