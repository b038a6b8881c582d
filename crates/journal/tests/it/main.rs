//! Integration tests of the journal crate: conformance of every backend, crash recovery of the
//! file backend, fault injection, snapshots and property tests.

mod archive;
mod conformance;
mod faulty;
mod file;
mod prop;
mod record;
mod snapshot;

use std::path::Path;

use journal::{FileJournal, FileJournalOptions, Journal, Position};

/// Small enough that a few records fill a segment, so rotation is exercised everywhere.
pub const TINY_SEGMENT_BYTES: u64 = 256;

pub fn tiny_options() -> FileJournalOptions {
    FileJournalOptions { segment_bytes_max: TINY_SEGMENT_BYTES, sync: true, min_next_position: 0 }
}

pub fn open(dir: &Path) -> (FileJournal, journal::OpenReport) {
    FileJournal::open(dir, tiny_options()).expect("open journal")
}

pub fn read_all(journal: &impl Journal, from: Position) -> Vec<(Position, Vec<u8>)> {
    let mut got = Vec::new();
    journal
        .read_from(from, &mut |position, payload| {
            got.push((position, payload.to_vec()));
            Ok(())
        })
        .expect("read_from");
    got
}

pub fn payloads(journal: &impl Journal) -> Vec<Vec<u8>> {
    read_all(journal, 0).into_iter().map(|(_, p)| p).collect()
}

/// `count` distinct payloads of varying length.
pub fn sample_payloads(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| (0..(i * 13) % 90 + 1).map(|j| (i * 7 + j) as u8).collect()).collect()
}

pub fn append_all(journal: &mut impl Journal, payloads: &[Vec<u8>]) {
    for payload in payloads {
        journal.append(payload).expect("append");
    }
}
