//! File backend: crash recovery (torn tails, garbage), corruption detection, versioning,
//! pruning and error reporting.

use std::fs;

use journal::file::segment_path;
use journal::testing::{
    append_garbage, flip_byte, last_segment, overwrite, record_spans, segment_paths, set_len, tear_last_record,
};
use journal::{FileJournal, FileJournalOptions, Journal, JournalError};
use tempfile::TempDir;

use crate::{append_all, open, payloads, read_all, sample_payloads, tiny_options};

const RECORDS: usize = 20;

/// A journal directory holding `RECORDS` sample records in tiny segments.
fn filled() -> (TempDir, Vec<Vec<u8>>) {
    let dir = TempDir::new().unwrap();
    let records = sample_payloads(RECORDS);
    let (mut journal, _) = open(dir.path());
    append_all(&mut journal, &records);
    (dir, records)
}

/// Like [`filled`] but with every record in one segment, so the last segment has many.
fn filled_single_segment() -> (TempDir, Vec<Vec<u8>>) {
    let dir = TempDir::new().unwrap();
    let records = sample_payloads(RECORDS);
    let options = FileJournalOptions { segment_bytes_max: 1 << 20, sync: true, min_next_position: 0 };
    let (mut journal, _) = FileJournal::open(dir.path(), options).unwrap();
    append_all(&mut journal, &records);
    (dir, records)
}

fn open_err(dir: &std::path::Path) -> JournalError {
    match FileJournal::open(dir, tiny_options()) {
        Ok(_) => panic!("open must fail"),
        Err(err) => err,
    }
}

#[test]
fn fresh_directory_is_created_with_one_empty_segment() {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("a").join("journal");
    let (journal, report) = open(&dir);
    assert_eq!(journal.next_position(), 0);
    assert_eq!(report, journal::OpenReport { segments: 1, ..Default::default() });
    assert_eq!(segment_paths(&dir).unwrap(), vec![dir.join("00000000000000000000.seg")]);
}

#[test]
fn segments_are_named_by_their_first_position() {
    let (dir, _) = filled();
    let paths = segment_paths(dir.path()).unwrap();
    assert!(paths.len() > 3, "tiny segments must rotate, got {}", paths.len());
    for path in paths {
        let spans = record_spans(&path).unwrap();
        let first = spans[0].position;
        assert_eq!(path, segment_path(dir.path(), first));
    }
}

#[test]
fn torn_last_record_is_truncated_at_every_cut_point() {
    let (probe, _) = filled();
    let last_len = record_spans(&last_segment(probe.path()).unwrap()).unwrap().last().unwrap().len;
    // Inside the header (1, 10, 23), right after it (24), inside the payload, one byte short.
    for keep in [1, 4, 10, 23, 24, 25, last_len / 2, last_len - 1] {
        let (dir, records) = filled();
        let cut = tear_last_record(dir.path(), keep).unwrap();
        assert_eq!(cut, last_len - keep);

        let (mut journal, report) = open(dir.path());
        assert_eq!(report.truncated_bytes, keep, "keep {keep}");
        assert_eq!(report.records, RECORDS as u64 - 1);
        assert_eq!(journal.next_position(), RECORDS as u64 - 1);
        assert_eq!(payloads(&journal), records[..RECORDS - 1]);
        assert_eq!(journal.append(b"after the tear").unwrap(), RECORDS as u64 - 1);
        drop(journal);

        let (journal, report) = open(dir.path());
        assert_eq!(report.truncated_bytes, 0, "keep {keep}: the cut must have been durable");
        let mut expected = records[..RECORDS - 1].to_vec();
        expected.push(b"after the tear".to_vec());
        assert_eq!(payloads(&journal), expected);
    }
}

#[test]
fn cut_exactly_at_a_record_boundary_truncates_nothing() {
    let (dir, records) = filled();
    tear_last_record(dir.path(), 0).unwrap();
    let (journal, report) = open(dir.path());
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(payloads(&journal), records[..RECORDS - 1]);
}

#[test]
fn torn_only_record_of_last_segment_leaves_an_empty_segment_to_append_to() {
    let dir = TempDir::new().unwrap();
    let options = FileJournalOptions { segment_bytes_max: 1, sync: true, min_next_position: 0 };
    let records = sample_payloads(5);
    {
        let (mut journal, _) = FileJournal::open(dir.path(), options.clone()).unwrap();
        append_all(&mut journal, &records);
    }
    tear_last_record(dir.path(), 5).unwrap();
    let (mut journal, report) = FileJournal::open(dir.path(), options.clone()).unwrap();
    assert_eq!(report.truncated_bytes, 5);
    assert_eq!(report.segments, 5);
    assert_eq!(fs::metadata(last_segment(dir.path()).unwrap()).unwrap().len(), 0);
    assert_eq!(journal.append(b"again").unwrap(), 4);
    assert_eq!(journal.append(b"more").unwrap(), 5);
    drop(journal);
    let (journal, _) = FileJournal::open(dir.path(), options).unwrap();
    let mut expected = records[..4].to_vec();
    expected.extend([b"again".to_vec(), b"more".to_vec()]);
    assert_eq!(payloads(&journal), expected);
}

/// Flipping any byte of a complete last record is corruption with its position, never a torn
/// tail: the record was acknowledged. Nothing is truncated.
#[test]
fn any_flipped_byte_of_a_complete_last_record_is_corruption_not_a_torn_tail() {
    let (dir, _) = filled_single_segment();
    let segment = last_segment(dir.path()).unwrap();
    let last = *record_spans(&segment).unwrap().last().unwrap();
    let pristine = fs::read(&segment).unwrap();
    for byte in 0..last.len {
        flip_byte(&segment, last.offset + byte).unwrap();
        match FileJournal::open(dir.path(), tiny_options()) {
            Err(JournalError::Corrupt { position, offset, segment: path, .. }) => {
                assert_eq!((position, offset, &path), (last.position, last.offset, &segment), "byte {byte}");
            }
            // The version byte: reported as such, also without a cut.
            Err(JournalError::UnsupportedVersion { position, .. }) if byte == 4 => {
                assert_eq!(position, last.position);
            }
            Err(other) => panic!("byte {byte}: expected Corrupt, got {other:?}"),
            Ok((_, report)) => panic!("byte {byte}: opened (cut {} bytes)", report.truncated_bytes),
        }
        let mut expected = pristine.clone();
        expected[(last.offset + byte) as usize] ^= 0xFF;
        assert_eq!(fs::read(&segment).unwrap(), expected, "byte {byte}: open changed the segment");
        fs::write(&segment, &pristine).unwrap();
    }
}

#[test]
fn bad_crc_of_a_complete_last_record_followed_by_zeros_is_corruption() {
    let (dir, _) = filled();
    let segment = last_segment(dir.path()).unwrap();
    let len = fs::metadata(&segment).unwrap().len();
    flip_byte(&segment, len - 1).unwrap();
    append_garbage(dir.path(), &[0; 64]).unwrap();
    assert!(matches!(open_err(dir.path()), JournalError::Corrupt { .. }));
    assert_eq!(fs::metadata(&segment).unwrap().len(), len + 64, "nothing cut");
}

/// A block of the last record that never reached the disk reads as zeros: that is a torn
/// write, and it is cut.
#[test]
fn a_complete_last_record_with_a_zeroed_sector_is_a_torn_tail() {
    let dir = TempDir::new().unwrap();
    let options = FileJournalOptions { segment_bytes_max: 1 << 20, sync: true, min_next_position: 0 };
    let (mut journal, _) = FileJournal::open(dir.path(), options.clone()).unwrap();
    journal.append(b"first").unwrap();
    journal.append(&[0xAB; 3000]).unwrap();
    drop(journal);
    let segment = last_segment(dir.path()).unwrap();
    let last = *record_spans(&segment).unwrap().last().unwrap();
    let sector = (last.offset + 24).next_multiple_of(512);
    overwrite(&segment, sector, &[0; 512]).unwrap();
    let (journal, report) = FileJournal::open(dir.path(), options).unwrap();
    assert_eq!(report.truncated_bytes, last.len);
    assert_eq!(payloads(&journal), vec![b"first".to_vec()]);
}

/// A crash during the last append leaves a prefix of the record: still cut, as before.
#[test]
fn a_partial_last_record_is_still_a_torn_tail() {
    let (dir, records) = filled_single_segment();
    let cut = tear_last_record(dir.path(), 30).unwrap();
    let (mut journal, report) = open(dir.path());
    assert_eq!(report.truncated_bytes, 30);
    assert!(cut > 0);
    assert_eq!(payloads(&journal), records[..RECORDS - 1]);
    assert_eq!(journal.append(b"again").unwrap(), (RECORDS - 1) as u64);
}

/// A cut below the highest snapshot position is refused before anything is cut, and a journal
/// that ends below it is refused: appending there would reuse positions a snapshot covers.
#[test]
fn open_refuses_a_journal_ending_below_a_snapshot_and_cuts_nothing() {
    let (dir, _) = filled_single_segment();
    let floor = RECORDS as u64;
    let options = || FileJournalOptions { min_next_position: floor, ..tiny_options() };
    assert!(FileJournal::open(dir.path(), options()).is_ok());
    // A real torn write of the record at `floor - 1` is impossible (a snapshot at `floor` was
    // saved after it was synced); if the bytes say so anyway, open refuses rather than cut.
    tear_last_record(dir.path(), 30).unwrap();
    let segment = last_segment(dir.path()).unwrap();
    let len = fs::metadata(&segment).unwrap().len();
    match FileJournal::open(dir.path(), options()) {
        Err(JournalError::Corrupt { position, reason, .. }) => {
            assert_eq!(position, floor - 1);
            assert!(reason.contains("snapshot"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(fs::metadata(&segment).unwrap().len(), len, "nothing cut");
}

/// `repair::truncate_at` below a snapshot: the journal continues at the snapshot's position, so
/// the next record never reuses a position the snapshot covers; the cut bytes are kept.
#[test]
fn repair_below_a_snapshot_never_reuses_positions() {
    let root = TempDir::new().unwrap();
    let journal_dir = root.path().join("journal");
    let snapshots = journal::SnapshotStore::open(&root.path().join("snapshots")).unwrap();
    let options = FileJournalOptions { segment_bytes_max: 1 << 20, sync: true, min_next_position: 0 };
    let (mut journal, _) = FileJournal::open(&journal_dir, options.clone()).unwrap();
    append_all(&mut journal, &sample_payloads(5));
    snapshots.save(5, b"state after 5 records").unwrap();
    drop(journal);
    let segment = last_segment(&journal_dir).unwrap();
    let last = *record_spans(&segment).unwrap().last().unwrap();
    flip_byte(&segment, last.offset + last.len - 1).unwrap();
    let with_floor = FileJournalOptions { min_next_position: 5, ..options };
    assert!(matches!(
        FileJournal::open(&journal_dir, with_floor.clone()),
        Err(JournalError::Corrupt { position: 4, .. })
    ));

    let backup = root.path().join("cut");
    let report = journal::repair::truncate_at(&journal_dir, snapshots.dir(), 4, &backup).unwrap();
    assert_eq!((report.cut_at, report.next_position, report.snapshot_position), (4, 5, 5));
    assert!(report.covered_by_snapshot());
    let kept: u64 = fs::read_dir(&backup).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(kept >= report.bytes_cut && report.bytes_cut == last.len, "{kept} {report:?}");

    // Restart, append, "crash", restart: the new record is at 5, where recovery reads.
    let (mut journal, _) = FileJournal::open(&journal_dir, with_floor.clone()).unwrap();
    assert_eq!(journal.append(b"after the repair").unwrap(), 5);
    drop(journal);
    let (journal, _) = FileJournal::open(&journal_dir, with_floor).unwrap();
    assert_eq!(read_all(&journal, 5), vec![(5, b"after the repair".to_vec())]);
}

/// Without a snapshot beyond it, the repair cuts at the position and the journal goes on there.
#[test]
fn repair_without_a_snapshot_cuts_at_the_position_and_keeps_a_copy() {
    let (dir, records) = filled_single_segment();
    let segment = last_segment(dir.path()).unwrap();
    let last = *record_spans(&segment).unwrap().last().unwrap();
    flip_byte(&segment, last.offset + 30).unwrap();
    let backup = dir.path().join("cut");
    let no_snapshots = dir.path().join("no-snapshots");
    // Cutting after the bad record, or at a record that is not there, is refused.
    assert!(journal::repair::truncate_at(dir.path(), &no_snapshots, RECORDS as u64, &backup).is_err());
    assert!(!backup.exists());
    let report = journal::repair::truncate_at(dir.path(), &no_snapshots, last.position, &backup).unwrap();
    assert_eq!(report.next_position, last.position);
    let copy = fs::read_dir(&backup).unwrap().next().unwrap().unwrap().path();
    assert_eq!(fs::metadata(&copy).unwrap().len(), last.len);
    let (journal, report) = open(dir.path());
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(payloads(&journal), records[..RECORDS - 1]);
}

/// `open_read_only` writes nothing: a torn tail is reported, not cut; no LOCK is created; and
/// appends are refused.
#[test]
fn read_only_open_never_writes() {
    let (dir, records) = filled_single_segment();
    fs::remove_file(dir.path().join("LOCK")).unwrap();
    tear_last_record(dir.path(), 10).unwrap();
    let segment = last_segment(dir.path()).unwrap();
    let before = fs::read(&segment).unwrap();
    let (mut journal, report) = FileJournal::open_read_only(dir.path()).unwrap();
    assert_eq!(report.truncated_bytes, 10);
    assert_eq!(payloads(&journal), records[..RECORDS - 1]);
    assert!(matches!(journal.append(b"x"), Err(JournalError::ReadOnly)));
    drop(journal);
    assert_eq!(fs::read(&segment).unwrap(), before);
    assert!(!dir.path().join("LOCK").exists());
    // Beside a writer it is refused.
    let (_writer, _) = open(dir.path());
    assert!(matches!(FileJournal::open_read_only(dir.path()), Err(JournalError::Locked { .. })));
}

/// Files are created 0600 in 0700 directories; a looser existing directory is tightened.
#[test]
fn files_and_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = TempDir::new().unwrap();
    let dir = root.path().join("journal");
    let mode = |path: &std::path::Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let (mut journal, _) = FileJournal::open(&dir, tiny_options()).unwrap();
    append_all(&mut journal, &sample_payloads(10));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("LOCK")), 0o600);
    for segment in segment_paths(&dir).unwrap() {
        assert_eq!(mode(&segment), 0o600, "{}", segment.display());
    }
    drop(journal);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let first = segment_paths(&dir).unwrap().remove(0);
    fs::set_permissions(&first, fs::Permissions::from_mode(0o644)).unwrap();
    let (_journal, report) = open(&dir);
    assert_eq!((mode(&dir), mode(&first)), (0o700, 0o600));
    assert_eq!(report.tightened, vec![dir.clone(), first]);

    let store = journal::SnapshotStore::open(&root.path().join("snapshots")).unwrap();
    store.save(3, b"snapshot").unwrap();
    assert_eq!(mode(store.dir()), 0o700);
    assert_eq!(mode(&store.path_for(3)), 0o600);
    fs::set_permissions(store.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(store.path_for(3), fs::Permissions::from_mode(0o644)).unwrap();
    let store = journal::SnapshotStore::open(&root.path().join("snapshots")).unwrap();
    assert_eq!((mode(store.dir()), mode(&store.path_for(3))), (0o700, 0o600));
}

#[test]
fn trailing_zeros_are_truncated() {
    for zeros in [1usize, 7, 24, 100, 5000] {
        let (dir, records) = filled();
        append_garbage(dir.path(), &vec![0; zeros]).unwrap();
        let (mut journal, report) = open(dir.path());
        assert_eq!(report.truncated_bytes, zeros as u64, "{zeros} zeros");
        assert_eq!(payloads(&journal), records);
        assert_eq!(journal.append(b"x").unwrap(), RECORDS as u64);
    }
}

#[test]
fn random_garbage_tail_is_truncated() {
    let mut state = 0x1234_5678_9ABC_DEF0u64;
    for len in [1usize, 3, 23, 24, 25, 100, 4096] {
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                // xorshift64: any deterministic noise will do.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let (dir, records) = filled();
        append_garbage(dir.path(), &garbage).unwrap();
        let (journal, report) = open(dir.path());
        assert_eq!(report.truncated_bytes, len as u64, "{len} garbage bytes");
        assert_eq!(payloads(&journal), records);
    }
}

#[test]
fn partial_header_with_valid_magic_is_truncated() {
    let (dir, records) = filled();
    let mut garbage = b"JRNL\x01\x00\x00\x00".to_vec();
    garbage.extend_from_slice(&[0xFF; 30]); // a huge length: extends past EOF
    append_garbage(dir.path(), &garbage).unwrap();
    let (journal, report) = open(dir.path());
    assert_eq!(report.truncated_bytes, garbage.len() as u64);
    assert_eq!(payloads(&journal), records);
}

#[test]
fn flipped_payload_byte_in_an_early_segment_is_corrupt() {
    let (dir, _) = filled();
    let first = segment_paths(dir.path()).unwrap().remove(0);
    let spans = record_spans(&first).unwrap();
    assert!(spans.len() >= 2);
    let victim = spans[1];
    flip_byte(&first, victim.offset + 24 + 1).unwrap();
    match open_err(dir.path()) {
        JournalError::Corrupt { position, segment, offset, reason } => {
            assert_eq!(position, victim.position);
            assert_eq!(segment, first);
            assert_eq!(offset, victim.offset);
            assert!(reason.contains("crc"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn corruption_error_message_names_segment_and_position() {
    let (dir, _) = filled();
    let first = segment_paths(dir.path()).unwrap().remove(0);
    flip_byte(&first, 24).unwrap(); // record 0's payload
    let message = open_err(dir.path()).to_string();
    assert!(message.contains("position 0"), "{message}");
    assert!(message.contains(&first.display().to_string()), "{message}");
}

#[test]
fn bad_crc_in_the_last_segment_followed_by_records_is_corrupt() {
    let (dir, _) = filled_single_segment();
    let segment = last_segment(dir.path()).unwrap();
    let spans = record_spans(&segment).unwrap();
    assert!(spans.len() >= 2, "need a record after the damaged one");
    flip_byte(&segment, spans[0].offset + spans[0].len - 1).unwrap();
    match open_err(dir.path()) {
        JournalError::Corrupt { position, segment: path, .. } => {
            assert_eq!(position, spans[0].position);
            assert_eq!(path, segment);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn unreadable_header_followed_by_a_valid_record_is_corrupt() {
    for (field_offset, what) in [(0u64, "magic"), (10, "length")] {
        let (dir, _) = filled_single_segment();
        let segment = last_segment(dir.path()).unwrap();
        let spans = record_spans(&segment).unwrap();
        assert!(spans.len() >= 2);
        // Garbage in the magic or (high byte of the) length, so the header cannot be trusted
        // and the record's extent is unknown: the valid record after it must not be dropped.
        overwrite(&segment, spans[0].offset + field_offset + 1, &[0xFF, 0xFF]).unwrap();
        match open_err(dir.path()) {
            JournalError::Corrupt { position, reason, .. } => {
                assert_eq!(position, spans[0].position, "{what}");
                assert!(reason.contains("valid record follows"), "{what}: {reason}");
            }
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn torn_record_in_a_segment_that_is_not_the_last_is_corrupt() {
    let (dir, _) = filled();
    let paths = segment_paths(dir.path()).unwrap();
    let middle = &paths[1];
    let spans = record_spans(middle).unwrap();
    let last = spans.last().unwrap();
    set_len(middle, last.offset + 10).unwrap();
    match open_err(dir.path()) {
        JournalError::Corrupt { position, segment, offset, .. } => {
            assert_eq!(position, last.position);
            assert_eq!(&segment, middle);
            assert_eq!(offset, last.offset);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn missing_middle_segment_is_a_position_gap() {
    let (dir, _) = filled();
    let paths = segment_paths(dir.path()).unwrap();
    let missing_first = record_spans(&paths[1]).unwrap()[0].position;
    fs::remove_file(&paths[1]).unwrap();
    match open_err(dir.path()) {
        JournalError::Corrupt { position, segment, .. } => {
            assert_eq!(position, missing_first);
            assert_eq!(segment, paths[2]);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn record_with_wrong_position_is_corrupt() {
    let (dir, _) = filled();
    let first = segment_paths(dir.path()).unwrap().remove(0);
    // A renamed segment: its records carry positions that disagree with its name.
    let renamed = segment_path(dir.path(), 1);
    fs::rename(&first, &renamed).unwrap();
    match open_err(dir.path()) {
        JournalError::Corrupt { position, segment, reason, .. } => {
            assert_eq!(position, 1);
            assert_eq!(segment, renamed);
            assert!(reason.contains("position"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn unsupported_version_is_reported() {
    let (dir, _) = filled();
    let first = segment_paths(dir.path()).unwrap().remove(0);
    overwrite(&first, 4, &[2]).unwrap();
    match open_err(dir.path()) {
        JournalError::UnsupportedVersion { version, position } => {
            assert_eq!((version, position), (2, 0));
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn unsupported_version_of_the_last_record_is_not_mistaken_for_a_torn_tail() {
    let (dir, _) = filled();
    let segment = last_segment(dir.path()).unwrap();
    let last = *record_spans(&segment).unwrap().last().unwrap();
    overwrite(&segment, last.offset + 4, &[9]).unwrap();
    match open_err(dir.path()) {
        JournalError::UnsupportedVersion { version, position } => {
            assert_eq!((version, position), (9, last.position));
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn remove_segments_before_prunes_whole_segments_and_keeps_positions() {
    let (dir, records) = filled();
    let (mut journal, _) = open(dir.path());
    let segments_before = journal.segment_count();
    let removed = journal.remove_segments_before(12).unwrap();
    assert!(removed > 0);
    assert_eq!(journal.segment_count(), segments_before - removed);
    let first = journal.first_position();
    assert!(first > 0 && first <= 12, "first retained position {first}");
    assert_eq!(segment_paths(dir.path()).unwrap().len(), journal.segment_count());

    let tail = read_all(&journal, first);
    assert_eq!(tail.len(), RECORDS - first as usize);
    assert_eq!(tail[0], (first, records[first as usize].clone()));
    for requested in [0, first - 1] {
        match journal.read_from(requested, &mut |_, _| Ok(())) {
            Err(JournalError::Pruned { requested: r, first_available }) => {
                assert_eq!((r, first_available), (requested, first));
            }
            other => panic!("expected Pruned, got {other:?}"),
        }
    }
    assert_eq!(journal.append(b"new").unwrap(), RECORDS as u64);
    drop(journal);

    let (mut journal, report) = open(dir.path());
    assert_eq!(report.first_position, first);
    assert_eq!(report.records, RECORDS as u64 + 1 - first);
    assert_eq!(journal.next_position(), RECORDS as u64 + 1);
    assert_eq!(read_all(&journal, RECORDS as u64), vec![(RECORDS as u64, b"new".to_vec())]);

    // Everything but the active segment can go; positions still continue.
    journal.remove_segments_before(u64::MAX).unwrap();
    assert_eq!(journal.segment_count(), 1);
    assert_eq!(journal.append(b"newer").unwrap(), RECORDS as u64 + 1);
    let first = journal.first_position();
    assert_eq!(read_all(&journal, first).last().unwrap().1, b"newer");
}

#[test]
fn unrelated_files_in_the_directory_are_ignored() {
    let (dir, records) = filled();
    fs::write(dir.path().join("README"), b"not a segment").unwrap();
    fs::write(dir.path().join("123.seg"), b"short name").unwrap();
    let (journal, _) = open(dir.path());
    assert_eq!(payloads(&journal), records);
}

#[test]
fn invalid_options_are_rejected() {
    let dir = TempDir::new().unwrap();
    for segment_bytes_max in [0, journal::file::SEGMENT_BYTES_MAX_LIMIT_MAX + 1] {
        let options = FileJournalOptions { segment_bytes_max, sync: true, min_next_position: 0 };
        assert!(matches!(FileJournal::open(dir.path(), options), Err(JournalError::InvalidOptions { .. })));
    }
}

#[test]
fn io_error_names_the_operation_and_path() {
    let dir = TempDir::new().unwrap();
    let not_a_dir = dir.path().join("file");
    fs::write(&not_a_dir, b"").unwrap();
    let err = open_err(&not_a_dir);
    assert!(matches!(err, JournalError::Io { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("create directory"), "{message}");
    assert!(message.contains(&not_a_dir.display().to_string()), "{message}");
}

#[test]
fn oversized_record_gets_its_own_segment() {
    let dir = TempDir::new().unwrap();
    let (mut journal, _) = open(dir.path());
    journal.append(b"small").unwrap();
    let big = vec![0x5A; 10_000];
    journal.append(&big).unwrap();
    journal.append(b"after").unwrap();
    assert_eq!(journal.segment_count(), 3);
    drop(journal);
    let (journal, _) = open(dir.path());
    assert_eq!(payloads(&journal), vec![b"small".to_vec(), big, b"after".to_vec()]);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = journal::FileJournal::open(dir.path(), journal::FileJournalOptions::default()).unwrap();
    let second = journal::FileJournal::open(dir.path(), journal::FileJournalOptions::default());
    assert!(matches!(second, Err(journal::JournalError::Locked { .. })), "{:?}", second.err());
    drop(first);
    assert!(journal::FileJournal::open(dir.path(), journal::FileJournalOptions::default()).is_ok());
}
