//! Runs the public conformance suite against the file and memory backends.

use journal::conformance::{run_all, JournalHarness};
use journal::{FileJournal, FileJournalOptions, MemoryJournal};
use tempfile::TempDir;

struct FileHarness {
    dir: TempDir,
    options: FileJournalOptions,
}

impl JournalHarness for FileHarness {
    type J = FileJournal;

    fn open(&mut self) -> FileJournal {
        FileJournal::open(self.dir.path(), self.options.clone()).expect("open file journal").0
    }
}

struct MemoryHarness(MemoryJournal);

impl JournalHarness for MemoryHarness {
    type J = MemoryJournal;

    fn open(&mut self) -> MemoryJournal {
        self.0.clone()
    }
}

#[test]
fn file_journal_with_tiny_segments_conforms() {
    let mut harness = FileHarness {
        dir: TempDir::new().unwrap(),
        options: FileJournalOptions { segment_bytes_max: 4096, sync: true, min_next_position: 0 },
    };
    run_all(&mut harness);
    let (journal, report) = FileJournal::open(harness.dir.path(), harness.options.clone()).unwrap();
    assert!(
        journal.segment_count() > 10,
        "tiny segments must have rotated many times, got {}",
        journal.segment_count()
    );
    assert_eq!(report.truncated_bytes, 0);
}

#[test]
fn file_journal_with_default_options_conforms() {
    let mut harness = FileHarness { dir: TempDir::new().unwrap(), options: FileJournalOptions::default() };
    run_all(&mut harness);
}

#[test]
fn file_journal_without_sync_conforms() {
    let mut harness = FileHarness {
        dir: TempDir::new().unwrap(),
        options: FileJournalOptions { segment_bytes_max: 512, sync: false, min_next_position: 0 },
    };
    run_all(&mut harness);
}

#[test]
fn memory_journal_conforms() {
    run_all(&mut MemoryHarness(MemoryJournal::new()));
}
