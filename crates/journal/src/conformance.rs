//! Conformance checks every `Journal` backend must pass. Public (not `cfg(test)`) so other
//! crates' backends run the same checks; this is test code and panics on failure.
//!
//! The checks run in sequence on one harness and share its durable data: each one starts from
//! whatever the earlier ones appended and checks the whole journal against a model.

use crate::record::RECORD_PAYLOAD_BYTES_MAX;
use crate::{Journal, JournalError, Position};

/// Small records appended by the "many records" check.
pub const MANY_RECORDS: usize = 10_000;

/// Size of the large payloads that must round trip.
pub const LARGE_PAYLOAD_BYTES: usize = 3 * 1024 * 1024;

/// Opens a backend over durable storage that outlives each opened journal.
pub trait JournalHarness {
    type J: Journal;

    /// Opens (or reopens, seeing the same durable data) the journal. The previous journal
    /// returned by `open` has been dropped when this is called again.
    fn open(&mut self) -> Self::J;
}

/// Runs every conformance check. The harness must start out empty.
pub fn run_all<H: JournalHarness>(harness: &mut H) {
    let mut model = Vec::new();
    empty_journal(harness);
    consecutive_positions(harness, &mut model);
    read_tails(harness, &model);
    empty_and_large_payloads(harness, &mut model);
    oversized_payload_is_rejected(harness, &mut model);
    visitor_error_stops_reading(harness, &model);
    reopen_continues(harness, &mut model);
    many_small_records(harness, &mut model);
    read_while_appending(harness, &mut model);
}

/// A fresh journal has no records.
pub fn empty_journal<H: JournalHarness>(harness: &mut H) {
    let journal = harness.open();
    assert_eq!(journal.next_position(), 0, "conformance: a fresh journal must have next_position 0");
    for from in [0, 1, 100] {
        let got = read_all(&journal, from);
        assert!(got.is_empty(), "conformance: read_from({from}) on an empty journal visited {} records", got.len());
    }
}

/// Appends return consecutive positions continuing `model`, and reading returns them all.
pub fn consecutive_positions<H: JournalHarness>(harness: &mut H, model: &mut Vec<Vec<u8>>) {
    let mut journal = harness.open();
    check_next_position(&journal, model, "after open");
    for i in 0..20u8 {
        let payload: Vec<u8> = (0..=i).map(|b| b.wrapping_mul(31) ^ i).collect();
        append_checked(&mut journal, model, payload);
    }
    check_contents(&journal, model, "after consecutive appends");
}

/// `read_from(k)` returns exactly the records from `k`, for every `k` up to past the end.
pub fn read_tails<H: JournalHarness>(harness: &mut H, model: &[Vec<u8>]) {
    let journal = harness.open();
    let end = model.len() as Position;
    for from in (0..=end).chain([end + 1, end + 1000]) {
        let got = read_all(&journal, from);
        let expected: Vec<(Position, Vec<u8>)> = model
            .iter()
            .enumerate()
            .skip(usize::try_from(from).unwrap_or(usize::MAX))
            .map(|(p, payload)| (p as Position, payload.clone()))
            .collect();
        assert!(
            got == expected,
            "conformance: read_from({from}) returned {} records (positions {:?}), expected {} from {from}",
            got.len(),
            got.iter().map(|(p, _)| *p).take(5).collect::<Vec<_>>(),
            expected.len()
        );
    }
}

/// Empty payloads and payloads of a few MiB round trip byte for byte, also after a reopen.
pub fn empty_and_large_payloads<H: JournalHarness>(harness: &mut H, model: &mut Vec<Vec<u8>>) {
    let mut journal = harness.open();
    append_checked(&mut journal, model, Vec::new());
    append_checked(&mut journal, model, patterned(LARGE_PAYLOAD_BYTES, 7));
    append_checked(&mut journal, model, Vec::new());
    append_checked(&mut journal, model, patterned(LARGE_PAYLOAD_BYTES + 13, 11));
    append_checked(&mut journal, model, vec![0xAB]);
    check_contents(&journal, model, "after empty and large payloads");
    drop(journal);
    let journal = harness.open();
    check_contents(&journal, model, "after reopening with empty and large payloads");
}

/// A payload over [`Journal::payload_bytes_max`] (at most [`RECORD_PAYLOAD_BYTES_MAX`]) is
/// refused without writing or poisoning.
pub fn oversized_payload_is_rejected<H: JournalHarness>(harness: &mut H, model: &mut Vec<Vec<u8>>) {
    let mut journal = harness.open();
    let max = journal.payload_bytes_max();
    assert!(
        max <= RECORD_PAYLOAD_BYTES_MAX,
        "conformance: payload_bytes_max {max} exceeds the journal's format limit {RECORD_PAYLOAD_BYTES_MAX}"
    );
    let mut lengths = vec![RECORD_PAYLOAD_BYTES_MAX + 1];
    if max < RECORD_PAYLOAD_BYTES_MAX {
        lengths.push(max + 1);
    }
    for length in lengths {
        let oversized = vec![0u8; length];
        match journal.append(&oversized) {
            Err(JournalError::RecordTooLarge { len, max: reported }) => {
                assert_eq!(len, oversized.len(), "conformance: RecordTooLarge must report the payload length");
                assert_eq!(reported, max, "conformance: RecordTooLarge must report payload_bytes_max");
            }
            other => {
                panic!("conformance: an append of {length} bytes must fail with RecordTooLarge, got {other:?}")
            }
        }
    }
    check_next_position(&journal, model, "after a refused oversized append");
    append_checked(&mut journal, model, b"after oversized".to_vec());
    check_contents(&journal, model, "after a refused oversized append");
}

/// An error returned by the visitor stops the read and is returned.
pub fn visitor_error_stops_reading<H: JournalHarness>(harness: &mut H, model: &[Vec<u8>]) {
    assert!(model.len() >= 3, "conformance: visitor_error_stops_reading needs at least 3 records");
    let journal = harness.open();
    let mut visited = 0;
    let result = journal.read_from(0, &mut |_, _| {
        visited += 1;
        if visited == 3 {
            Err(JournalError::Poisoned)
        } else {
            Ok(())
        }
    });
    assert!(
        matches!(result, Err(JournalError::Poisoned)),
        "conformance: read_from must return the visitor's error, got {result:?}"
    );
    assert_eq!(visited, 3, "conformance: read_from must stop at the visitor's first error");
}

/// After dropping and reopening, every record is there and appends continue after them.
pub fn reopen_continues<H: JournalHarness>(harness: &mut H, model: &mut Vec<Vec<u8>>) {
    for round in 0..3u8 {
        let mut journal = harness.open();
        check_contents(&journal, model, "after reopen");
        for i in 0..5u8 {
            append_checked(&mut journal, model, vec![round, i, 0xEE]);
        }
    }
    let journal = harness.open();
    check_contents(&journal, model, "after appending across reopens");
}

/// [`MANY_RECORDS`] small records (spanning several segments where the backend has them)
/// round trip, also after a reopen.
pub fn many_small_records<H: JournalHarness>(harness: &mut H, model: &mut Vec<Vec<u8>>) {
    let mut journal = harness.open();
    for i in 0..MANY_RECORDS {
        let len = (i * 7) % 61;
        let payload: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
        append_checked(&mut journal, model, payload);
    }
    check_contents(&journal, model, "after many small records");
    drop(journal);
    let journal = harness.open();
    check_contents(&journal, model, "after reopening with many small records");
}

/// Reads on a journal that is being appended to see every record appended so far.
pub fn read_while_appending<H: JournalHarness>(harness: &mut H, model: &mut Vec<Vec<u8>>) {
    let mut journal = harness.open();
    for i in 0..50u32 {
        let position = append_checked(&mut journal, model, i.to_le_bytes().repeat(i as usize % 9));
        let got = read_all(&journal, position);
        assert!(
            got.len() == 1 && got[0].0 == position && got[0].1 == model[position as usize],
            "conformance: read_from({position}) right after appending it returned {:?}",
            got.iter().map(|(p, b)| (*p, b.len())).collect::<Vec<_>>()
        );
        if i % 10 == 0 {
            check_contents(&journal, model, "while appending");
        }
    }
    check_contents(&journal, model, "after reads interleaved with appends");
}

fn append_checked<J: Journal>(journal: &mut J, model: &mut Vec<Vec<u8>>, payload: Vec<u8>) -> Position {
    let expected = model.len() as Position;
    let position =
        journal.append(&payload).unwrap_or_else(|err| panic!("conformance: append #{expected} failed: {err}"));
    assert_eq!(position, expected, "conformance: append returned position {position}, expected {expected}");
    model.push(payload);
    check_next_position(journal, model, "after append");
    position
}

fn check_next_position<J: Journal>(journal: &J, model: &[Vec<u8>], when: &str) {
    assert_eq!(
        journal.next_position(),
        model.len() as Position,
        "conformance: next_position {when} must equal the number of records appended"
    );
}

fn check_contents<J: Journal>(journal: &J, model: &[Vec<u8>], when: &str) {
    check_next_position(journal, model, when);
    let mut count = 0usize;
    journal
        .read_from(0, &mut |position, payload| {
            assert_eq!(
                position, count as Position,
                "conformance: {when}: read_from(0) visited position {position} out of order"
            );
            let expected = model.get(count).unwrap_or_else(|| {
                panic!("conformance: {when}: read_from(0) visited position {position} past the end")
            });
            assert!(
                payload == expected.as_slice(),
                "conformance: {when}: payload at position {position} differs ({} bytes read, {} appended)",
                payload.len(),
                expected.len()
            );
            count += 1;
            Ok(())
        })
        .unwrap_or_else(|err| panic!("conformance: {when}: read_from(0) failed: {err}"));
    assert_eq!(
        count,
        model.len(),
        "conformance: {when}: read_from(0) visited {count} records, expected {}",
        model.len()
    );
}

fn read_all<J: Journal>(journal: &J, from: Position) -> Vec<(Position, Vec<u8>)> {
    let mut got = Vec::new();
    journal
        .read_from(from, &mut |position, payload| {
            got.push((position, payload.to_vec()));
            Ok(())
        })
        .unwrap_or_else(|err| panic!("conformance: read_from({from}) failed: {err}"));
    got
}

/// A payload whose bytes depend on their index, so misplaced chunks are detected.
fn patterned(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(seed) ^ ((i >> 8) as u8)).collect()
}
