//! Property tests: arbitrary payload sequences round trip through append/reopen/read, and
//! scanning never panics and treats every cut of a valid segment as a torn tail.

use journal::record::{encode_record, scan_segment};
use journal::{FileJournal, FileJournalOptions, Journal};
use proptest::prelude::*;
use tempfile::TempDir;

use crate::{payloads, read_all};

fn payload_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![0usize..64, 0usize..3000], 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn payloads_round_trip_through_append_reopen_read(
        sizes in payload_sizes(),
        split in any::<prop::sample::Index>(),
        segment_bytes_max in 1u64..4096,
        from in any::<prop::sample::Index>(),
    ) {
        let dir = TempDir::new().unwrap();
        let options = FileJournalOptions { segment_bytes_max, sync: true, min_next_position: 0 };
        let records: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| (0..len).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let split = if records.is_empty() { 0 } else { split.index(records.len() + 1) };

        for part in [&records[..split], &records[split..]] {
            let (mut journal, report) = FileJournal::open(dir.path(), options.clone()).unwrap();
            prop_assert_eq!(report.truncated_bytes, 0);
            for payload in part {
                journal.append(payload).unwrap();
            }
        }
        let (journal, report) = FileJournal::open(dir.path(), options).unwrap();
        prop_assert_eq!(report.records, records.len() as u64);
        prop_assert_eq!(journal.next_position(), records.len() as u64);
        prop_assert_eq!(payloads(&journal), records.clone());

        let from = from.index(records.len() + 1);
        let tail: Vec<Vec<u8>> = read_all(&journal, from as u64).into_iter().map(|(_, p)| p).collect();
        prop_assert_eq!(tail, records[from..].to_vec());
    }

    #[test]
    fn scan_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), first in any::<u64>()) {
        let _ = scan_segment(&bytes, first);
    }

    #[test]
    fn every_cut_of_a_valid_segment_is_a_clean_prefix(
        sizes in prop::collection::vec(0usize..200, 1..10),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut segment = Vec::new();
        let mut ends = Vec::new();
        let mut buf = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|j| (i ^ j) as u8 | 1).collect();
            encode_record(&mut buf, 50 + i as u64, &payload).unwrap();
            segment.extend_from_slice(&buf);
            ends.push(segment.len());
        }
        let cut = cut.index(segment.len() + 1);
        let scan = scan_segment(&segment[..cut], 50).unwrap();
        let complete = ends.iter().filter(|&&end| end <= cut).count();
        prop_assert_eq!(scan.records, complete as u64);
        let valid = if complete == 0 { 0 } else { ends[complete - 1] };
        prop_assert_eq!(scan.valid_bytes, valid as u64);
        prop_assert_eq!(scan.torn_tail.map(|t| t.bytes).unwrap_or(0), (cut - valid) as u64);
    }
}
