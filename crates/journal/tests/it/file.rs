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
    let options = FileJournalOptions { segment_bytes_max: 1 << 20, sync: true };
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
    let options = FileJournalOptions { segment_bytes_max: 1, sync: true };
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

#[test]
fn bad_crc_of_the_last_record_at_eof_is_a_torn_tail() {
    let (dir, records) = filled();
    let segment = last_segment(dir.path()).unwrap();
    let len = fs::metadata(&segment).unwrap().len();
    flip_byte(&segment, len - 1).unwrap();
    let last_len = record_spans(&segment).unwrap().last().unwrap().len;
    let (journal, report) = open(dir.path());
    assert_eq!(report.truncated_bytes, last_len);
    assert_eq!(payloads(&journal), records[..RECORDS - 1]);
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
fn bad_crc_followed_by_zeros_is_a_torn_tail() {
    let (dir, records) = filled();
    let segment = last_segment(dir.path()).unwrap();
    let len = fs::metadata(&segment).unwrap().len();
    flip_byte(&segment, len - 1).unwrap();
    append_garbage(dir.path(), &[0; 64]).unwrap();
    let (journal, report) = open(dir.path());
    assert_eq!(payloads(&journal), records[..RECORDS - 1]);
    assert!(report.truncated_bytes > 64);
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
        let options = FileJournalOptions { segment_bytes_max, sync: true };
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
