//! Journal records (`journal::record`): decoding arbitrary bytes as a record or a whole segment
//! is total (an error, never a panic), whatever decodes re-encodes to the very same bytes, and
//! any payload round-trips through `encode_record`.

#![no_main]

use journal::record::{decode_record, encode_record, scan_segment, RECORD_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes as one record: a record that decodes is exactly what encoding its
    // position and payload gives.
    if let Ok((header, payload, consumed)) = decode_record(data) {
        assert_eq!(consumed, RECORD_HEADER_BYTES + payload.len());
        assert_eq!(header.len as usize, payload.len());
        let mut again = Vec::new();
        encode_record(&mut again, header.position, payload).expect("a decoded payload fits a record");
        assert_eq!(again.as_slice(), &data[..consumed], "decode then encode changed the record");
    }

    // Arbitrary bytes as a segment: the scan accounts for every byte it calls valid, and the
    // valid prefix scans again to the same records with no torn tail.
    let first = data.first().map_or(0, |byte| u64::from(*byte));
    if let Ok(scan) = scan_segment(data, first) {
        let valid = usize::try_from(scan.valid_bytes).expect("valid bytes fit usize");
        assert!(valid <= data.len());
        match &scan.torn_tail {
            Some(tail) => assert_eq!(tail.offset + tail.bytes, data.len() as u64),
            None => assert_eq!(valid, data.len()),
        }
        let rescan = scan_segment(&data[..valid], first).expect("the valid prefix scans");
        assert_eq!((rescan.records, rescan.valid_bytes, rescan.torn_tail), (scan.records, scan.valid_bytes, None));
    }

    // The bytes as a payload: two records round-trip through a segment scan.
    // (`encode_record` clears its buffer: each record is encoded alone, then appended.)
    let mut segment = Vec::new();
    let mut record = Vec::new();
    for position in [7, 8] {
        encode_record(&mut record, position, data).expect("fuzz inputs are far below the payload maximum");
        segment.extend_from_slice(&record);
    }
    let (header, payload, consumed) = decode_record(&segment).expect("an encoded record decodes");
    assert_eq!((header.position, payload), (7, data));
    let scan = scan_segment(&segment, 7).expect("two encoded records scan");
    assert_eq!((scan.records, scan.valid_bytes, scan.torn_tail), (2, segment.len() as u64, None));
    assert_eq!(consumed * 2, segment.len());
});
