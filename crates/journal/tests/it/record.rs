//! Pure record encoding, decoding and segment scanning.

use journal::record::{
    decode_header, decode_record, encode_record, scan_segment, DecodeError, RECORD_HEADER_BYTES, RECORD_MAGIC,
    RECORD_PAYLOAD_BYTES_MAX, RECORD_VERSION,
};
use journal::JournalError;

fn encoded(position: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_record(&mut buf, position, payload).unwrap();
    buf
}

#[test]
fn header_layout_is_as_documented() {
    let bytes = encoded(0x0102_0304_0506_0708, b"hello");
    assert_eq!(bytes.len(), RECORD_HEADER_BYTES + 5);
    assert_eq!(&bytes[0..4], b"JRNL");
    assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), RECORD_MAGIC);
    assert_eq!(bytes[4], RECORD_VERSION);
    assert_eq!(&bytes[5..8], &[0, 0, 0]);
    assert_eq!(&bytes[8..12], &5u32.to_le_bytes());
    assert_eq!(&bytes[12..20], &0x0102_0304_0506_0708u64.to_le_bytes());
    let mut covered = bytes[..20].to_vec();
    covered.extend_from_slice(b"hello");
    assert_eq!(&bytes[20..24], &crc32c::crc32c(&covered).to_le_bytes());
    assert_eq!(&bytes[24..], b"hello");
}

#[test]
fn decode_round_trips_and_reports_consumed_bytes() {
    let mut bytes = encoded(9, b"abc");
    bytes.extend_from_slice(b"next");
    let (header, payload, consumed) = decode_record(&bytes).unwrap();
    assert_eq!((header.position, header.len, payload, consumed), (9, 3, &b"abc"[..], 27));
}

#[test]
fn decode_errors() {
    let bytes = encoded(1, b"payload");
    assert_eq!(
        decode_record(&bytes[..10]),
        Err(DecodeError::Incomplete { needed: RECORD_HEADER_BYTES, available: 10 })
    );
    assert_eq!(
        decode_record(&bytes[..bytes.len() - 1]),
        Err(DecodeError::Incomplete { needed: bytes.len(), available: bytes.len() - 1 })
    );
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(matches!(decode_record(&bad), Err(DecodeError::BadMagic { .. })));
    let mut bad = bytes.clone();
    bad[4] = 7;
    assert_eq!(decode_record(&bad), Err(DecodeError::UnsupportedVersion { version: 7 }));
    let mut bad = bytes.clone();
    bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode_header(&bad), Err(DecodeError::TooLarge { .. })));
    let mut bad = bytes.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(
        matches!(decode_record(&bad), Err(DecodeError::CrcMismatch { record_bytes, .. }) if record_bytes == bytes.len())
    );
}

#[test]
fn unknown_flags_with_a_valid_crc_are_rejected() {
    let mut bytes = encoded(1, b"p");
    bytes[5] = 1;
    let mut covered = bytes[..20].to_vec();
    covered.push(b'p');
    bytes[20..24].copy_from_slice(&crc32c::crc32c(&covered).to_le_bytes());
    assert_eq!(decode_record(&bytes), Err(DecodeError::UnknownFlags { flags: 1, reserved: 0 }));
}

#[test]
fn encode_rejects_oversized_payloads() {
    let payload = vec![0; RECORD_PAYLOAD_BYTES_MAX + 1];
    let mut buf = Vec::new();
    assert!(matches!(
        encode_record(&mut buf, 0, &payload),
        Err(JournalError::RecordTooLarge { len, max }) if len == payload.len() && max == RECORD_PAYLOAD_BYTES_MAX
    ));
}

#[test]
fn scan_counts_records_and_classifies_tails() {
    let mut segment = Vec::new();
    for (i, payload) in [&b"a"[..], b"", b"ccc"].iter().enumerate() {
        segment.extend(encoded(100 + i as u64, payload));
    }
    let scan = scan_segment(&segment, 100).unwrap();
    assert_eq!((scan.records, scan.valid_bytes, scan.torn_tail), (3, segment.len() as u64, None));

    let mut torn = segment.clone();
    torn.extend(&encoded(103, b"dddd")[..26]);
    let scan = scan_segment(&torn, 100).unwrap();
    assert_eq!(scan.records, 3);
    assert_eq!(scan.torn_tail.unwrap().bytes, 26);

    let err = scan_segment(&segment, 101).unwrap_err();
    assert_eq!((err.offset, err.position), (0, 101));
}
