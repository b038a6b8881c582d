//! Journal retention on real files: segments archived below a floor, read back across archives
//! and live segments, every crash point between the archive's write and the segment's removal,
//! and damage to an archive reported with its file and position.

use std::path::Path;

use journal::archive::{
    archive_below, archive_path, list_archives, read_archive_bytes, ArchiveHeader, History, WithArchive,
    ARCHIVE_HEADER_BYTES,
};
use journal::file::list_segments;
use journal::{FileJournal, Journal, JournalError, Position};

use crate::{append_all, open, read_all, sample_payloads};

fn history(journal_dir: &Path, archive_dir: &Path) -> History {
    History::new(journal_dir, Some(archive_dir))
}

fn read_history(history: &History, from: Position, end: Position) -> Result<Vec<(Position, Vec<u8>)>, JournalError> {
    let mut got = Vec::new();
    history.read(from, end, &mut |position, payload| {
        got.push((position, payload.to_vec()));
        Ok(true)
    })?;
    Ok(got)
}

fn no_hook() -> impl FnMut(Position) {
    |_| {}
}

/// A journal of 60 sample records in many tiny segments, in `dir/journal`.
fn journal_with_records(dir: &Path) -> (FileJournal, Vec<Vec<u8>>) {
    let (mut journal, _) = open(&dir.join("journal"));
    let payloads = sample_payloads(60);
    append_all(&mut journal, &payloads);
    assert!(list_segments(&dir.join("journal")).expect("segments").len() > 10, "many segments");
    (journal, payloads)
}

#[test]
fn segments_below_the_floor_are_archived_compressed_and_read_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (journal, payloads) = journal_with_records(dir.path());
    let journal_dir = dir.path().join("journal");
    let archive_dir = dir.path().join("archive");
    let before = list_segments(&journal_dir).expect("segments");
    let floor = 30;
    let mut raised = Vec::new();
    let done = archive_below(&journal_dir, &archive_dir, floor, &mut |end| raised.push(end)).expect("archive");

    // Exactly the segments wholly below the floor, oldest first, never the last one.
    let expected: Vec<Position> = before.windows(2).filter(|pair| pair[1].0 <= floor).map(|pair| pair[0].0).collect();
    assert!(!expected.is_empty());
    assert_eq!(done.iter().map(|segment| segment.first).collect::<Vec<_>>(), expected);
    assert_eq!(raised, done.iter().map(|segment| segment.first + segment.records).collect::<Vec<_>>());
    let after = list_segments(&journal_dir).expect("segments");
    assert_eq!(
        after.first().map(|(first, _)| *first),
        Some(done.last().expect("one").first + done.last().expect("one").records)
    );
    assert!(after.first().expect("live").0 <= floor);
    assert_eq!(list_archives(&archive_dir).expect("archives").len(), done.len());
    for segment in &done {
        let (header, raw) = read_archive_bytes(&segment.path, segment.first).expect("archive reads back");
        assert_eq!(header.raw_bytes, raw.len() as u64);
        assert_eq!(segment.raw_bytes, raw.len() as u64);
        assert!(!segment.resumed);
    }

    // The history reads every record from 0, across archives and live segments.
    let history = history(&journal_dir, &archive_dir);
    assert_eq!(history.first_available().expect("first"), Some(0));
    let all = read_history(&history, 0, journal.next_position()).expect("history");
    assert_eq!(all.into_iter().map(|(_, payload)| payload).collect::<Vec<_>>(), payloads);
    let tail = read_history(&history, 17, 41).expect("a window");
    assert_eq!(tail.first().map(|(position, _)| *position), Some(17));
    assert_eq!(tail.len(), 24);

    // The live journal still opens (it starts where the archive ends) and, read with its
    // archive, is the whole journal again.
    drop(journal);
    let (journal, report) = open(&journal_dir);
    assert_eq!(report.first_position, after.first().expect("live").0);
    let with_archive = WithArchive { live: &journal, live_first: report.first_position, history };
    assert_eq!(read_all(&with_archive, 0).into_iter().map(|(_, payload)| payload).collect::<Vec<_>>(), payloads);
    assert!(
        matches!(read_all_result(&journal, 0), Err(JournalError::Pruned { .. })),
        "the live journal alone lacks them"
    );
}

fn read_all_result(journal: &impl Journal, from: Position) -> Result<(), JournalError> {
    journal.read_from(from, &mut |_, _| Ok(()))
}

#[test]
fn the_active_segment_and_segments_reaching_the_floor_stay_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (journal, _) = journal_with_records(dir.path());
    let journal_dir = dir.path().join("journal");
    let archive_dir = dir.path().join("archive");
    let before = list_segments(&journal_dir).expect("segments");
    // A floor inside the second segment archives only the first.
    let done = archive_below(&journal_dir, &archive_dir, before[2].0 - 1, &mut no_hook()).expect("archive");
    assert_eq!(done.iter().map(|segment| segment.first).collect::<Vec<_>>(), vec![before[0].0]);
    let done = archive_below(&journal_dir, &archive_dir, u64::MAX, &mut no_hook()).expect("archive");
    let live = list_segments(&journal_dir).expect("segments");
    assert_eq!(live.len(), 1, "only the segment appended to is left");
    assert_eq!(done.len(), before.len() - 2);
    assert_eq!(live[0].0, before.last().expect("last").0);
    // Nothing below the first record: nothing archived, not even a directory made.
    let other = tempfile::tempdir().expect("tempdir");
    let (_journal2, _) = journal_with_records(other.path());
    assert!(archive_below(&other.path().join("journal"), &other.path().join("archive"), 0, &mut no_hook())
        .expect("nothing")
        .is_empty());
    assert!(!other.path().join("archive").exists());
    drop(journal);
}

#[test]
fn a_crash_between_the_archive_and_the_removal_leaves_both_and_is_finished_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (journal, payloads) = journal_with_records(dir.path());
    let journal_dir = dir.path().join("journal");
    let archive_dir = dir.path().join("archive");
    let segments = list_segments(&journal_dir).expect("segments");
    let (first, path) = segments[0].clone();
    let copy = std::fs::read(&path).expect("segment bytes");
    archive_below(&journal_dir, &archive_dir, segments[1].0, &mut no_hook()).expect("archive one");
    // The crash: the segment is back beside its complete archive; and a temporary file of a
    // second archive's interrupted write.
    std::fs::write(&path, &copy).expect("restore the segment");
    std::fs::write(archive_dir.join(format!("{:020}.jarc.tmp", segments[1].0)), b"partial").expect("tmp");

    // Both present: the live journal opens as it was and every reader prefers the segment.
    drop(journal);
    let (journal, report) = open(&journal_dir);
    assert_eq!(report.first_position, 0);
    let history = history(&journal_dir, &archive_dir);
    let all = read_history(&history, 0, journal.next_position()).expect("history");
    assert_eq!(all.into_iter().map(|(_, payload)| payload).collect::<Vec<_>>(), payloads);

    // The next run compares the archive with the segment and removes the segment.
    let done = archive_below(&journal_dir, &archive_dir, segments[2].0, &mut no_hook()).expect("archive again");
    assert_eq!(
        done.iter().map(|segment| (segment.first, segment.resumed)).collect::<Vec<_>>(),
        vec![(first, true), (segments[1].0, false)]
    );
    assert!(!path.exists());
    assert!(!archive_dir.join(format!("{:020}.jarc.tmp", segments[1].0)).exists(), "leftover removed");
    let all = read_history(&history, 0, journal.next_position()).expect("history");
    assert_eq!(all.len(), payloads.len());
}

#[test]
fn an_archive_that_differs_from_its_live_segment_is_reported_and_nothing_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_journal, _) = journal_with_records(dir.path());
    let journal_dir = dir.path().join("journal");
    let archive_dir = dir.path().join("archive");
    let segments = list_segments(&journal_dir).expect("segments");
    let copy = std::fs::read(&segments[1].1).expect("second segment");
    archive_below(&journal_dir, &archive_dir, segments[1].0, &mut no_hook()).expect("archive the first");
    // A different segment back under the first one's name, beside its archive.
    std::fs::write(&segments[0].1, &copy).expect("a wrong segment");
    let error = archive_below(&journal_dir, &archive_dir, segments[1].0, &mut no_hook()).expect_err("refused");
    assert!(matches!(error, JournalError::Corrupt { .. }), "{error}");
    assert!(segments[0].1.exists(), "the live segment stays");
}

#[test]
fn damage_to_an_archive_names_the_file_and_the_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (journal, _) = journal_with_records(dir.path());
    let journal_dir = dir.path().join("journal");
    let archive_dir = dir.path().join("archive");
    let done = archive_below(&journal_dir, &archive_dir, 40, &mut no_hook()).expect("archive");
    let victim = &done[done.len() / 2];
    let end = journal.next_position();
    let history = history(&journal_dir, &archive_dir);
    let pristine = std::fs::read(&victim.path).expect("archive bytes");

    // A flipped byte in the compressed frame.
    let mut bytes = pristine.clone();
    let at = ARCHIVE_HEADER_BYTES + (bytes.len() - ARCHIVE_HEADER_BYTES) / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&victim.path, &bytes).expect("damage");
    match read_history(&history, 0, end) {
        Err(JournalError::Corrupt { position, segment, .. }) => {
            assert_eq!(segment, victim.path);
            assert!((victim.first..victim.first + victim.records + 1).contains(&position), "{position}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }

    // A damaged header.
    let mut bytes = pristine.clone();
    bytes[9] ^= 1;
    std::fs::write(&victim.path, &bytes).expect("damage");
    match read_history(&history, 0, end) {
        Err(JournalError::Corrupt { position, segment, reason, .. }) => {
            assert_eq!((position, segment), (victim.first, victim.path.clone()), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }

    // A truncated archive.
    std::fs::write(&victim.path, &pristine[..pristine.len() - 3]).expect("truncate");
    assert!(
        matches!(read_history(&history, 0, end), Err(JournalError::Corrupt { segment, .. }) if segment == victim.path)
    );

    // A missing archive: a gap, reported as records not held anywhere.
    std::fs::remove_file(&victim.path).expect("remove");
    match read_history(&history, 0, end) {
        Err(JournalError::Pruned { requested, .. }) => assert_eq!(requested, victim.first),
        other => panic!("expected a gap, got {other:?}"),
    }
}

#[test]
fn a_record_rewritten_inside_an_archive_with_valid_checksums_still_reads() {
    // Framing cannot catch a careful forgery (the engine's hash chain does: see the engine's
    // and the binary's tests); the archive format keeps the records exactly, so it rewrites
    // like a segment.
    let dir = tempfile::tempdir().expect("tempdir");
    let (journal, payloads) = journal_with_records(dir.path());
    let journal_dir = dir.path().join("journal");
    let archive_dir = dir.path().join("archive");
    let done = archive_below(&journal_dir, &archive_dir, 40, &mut no_hook()).expect("archive");
    let victim = &done[0];
    let (header, mut raw) = read_archive_bytes(&victim.path, victim.first).expect("read");
    let mut forged = Vec::new();
    let mut forged_payload = payloads[0].clone();
    forged_payload[0] ^= 0xff;
    journal::record::encode_record(&mut forged, 0, &forged_payload).expect("encode");
    raw[..forged.len()].copy_from_slice(&forged);
    write_archive(&victim.path, header, &raw);
    let all = read_history(&history(&journal_dir, &archive_dir), 0, journal.next_position()).expect("reads");
    assert_eq!(all[0].1, forged_payload);
}

/// Writes an archive file with `raw` as its segment bytes (for forgeries in tests).
pub fn write_archive(path: &Path, header: ArchiveHeader, raw: &[u8]) {
    let bytes = journal::archive::encode_archive(header.first, header.records, raw).expect("encode");
    std::fs::write(path, bytes).expect("write archive");
}

#[test]
fn archive_names_sort_by_position() {
    let dir = Path::new("/a");
    assert_eq!(archive_path(dir, 42), Path::new("/a/00000000000000000042.jarc"));
}
