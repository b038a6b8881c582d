//! On-disk record format of the file journal: pure encode/decode/scan functions (no I/O), so
//! fuzz targets and tests can drive them with arbitrary bytes.
//!
//! Layout (all integers little endian), version 1:
//!
//! | bytes  | field      | notes                                         |
//! |--------|------------|-----------------------------------------------|
//! | 0..4   | `magic`    | [`RECORD_MAGIC`]                              |
//! | 4      | `version`  | [`RECORD_VERSION`]                            |
//! | 5      | `flags`    | 0                                             |
//! | 6..8   | `reserved` | 0                                             |
//! | 8..12  | `len`      | payload length, at most [`RECORD_PAYLOAD_BYTES_MAX`] |
//! | 12..20 | `position` | the record's journal position                 |
//! | 20..24 | `crc32c`   | CRC-32C over bytes 0..20 and the payload      |
//! | 24..   | payload    |                                               |

use crate::{JournalError, Position};

/// "JRNL" in file order. Non-zero so that zero-filled blocks left by a crash never look like a
/// record.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"JRNL");

/// The only format version this build reads and writes.
pub const RECORD_VERSION: u8 = 1;

/// Size of the fixed record header.
pub const RECORD_HEADER_BYTES: usize = 24;

/// Largest payload of one record. Bounds the memory one record read can take.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Largest encoded record: header plus the largest payload.
pub const RECORD_BYTES_MAX: usize = RECORD_HEADER_BYTES + RECORD_PAYLOAD_BYTES_MAX;

/// Bytes of the header the CRC covers (everything before the CRC field).
const CRC_COVERED_HEADER_BYTES: usize = 20;

/// Decoded fixed header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub version: u8,
    pub flags: u8,
    pub reserved: u16,
    pub len: u32,
    pub position: Position,
    pub crc32c: u32,
}

impl RecordHeader {
    /// Header plus payload bytes of this record.
    pub fn record_bytes(&self) -> usize {
        RECORD_HEADER_BYTES + self.len as usize
    }
}

/// Why bytes do not decode as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header or the payload extends past the end of the bytes.
    #[error("record incomplete: needs {needed} bytes, only {available} present")]
    Incomplete { needed: usize, available: usize },
    #[error("bad record magic {found:#010x}")]
    BadMagic { found: u32 },
    #[error("unsupported record version {version}")]
    UnsupportedVersion { version: u8 },
    #[error("record payload length {len} exceeds the maximum of {max}")]
    TooLarge { len: u32, max: usize },
    /// The whole record is present but its checksum does not match.
    #[error("record crc32c mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32, record_bytes: usize },
    /// The checksum matches but flags/reserved bits this version does not define are set.
    #[error("record has unknown flags {flags:#04x} / reserved {reserved:#06x}")]
    UnknownFlags { flags: u8, reserved: u16 },
}

/// Encodes one record into `buf` (cleared first). Reusing `buf` keeps appends allocation-free
/// once it has grown to the largest record seen.
pub fn encode_record(buf: &mut Vec<u8>, position: Position, payload: &[u8]) -> Result<(), JournalError> {
    let len = checked_payload_len(payload.len())?;
    buf.clear();
    buf.reserve(RECORD_HEADER_BYTES + payload.len());
    buf.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    buf.push(RECORD_VERSION);
    buf.push(0); // flags
    buf.extend_from_slice(&0u16.to_le_bytes()); // reserved
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&position.to_le_bytes());
    let crc = record_crc(&buf[..CRC_COVERED_HEADER_BYTES], payload);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(payload);
    Ok(())
}

/// Checks a payload length against [`RECORD_PAYLOAD_BYTES_MAX`] and narrows it to the header's
/// `u32` field.
pub fn checked_payload_len(len: usize) -> Result<u32, JournalError> {
    let too_large = JournalError::RecordTooLarge { len, max: RECORD_PAYLOAD_BYTES_MAX };
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(too_large);
    }
    u32::try_from(len).map_err(|_| too_large)
}

/// CRC-32C over the header bytes before the CRC field and the payload.
pub fn record_crc(covered_header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(covered_header), payload)
}

/// Decodes and checks the fixed header (magic, version, length bound). The checksum needs the
/// payload too: see [`verify_record`].
pub fn decode_header(bytes: &[u8]) -> Result<RecordHeader, DecodeError> {
    let Some(h) = bytes.first_chunk::<RECORD_HEADER_BYTES>() else {
        return Err(DecodeError::Incomplete { needed: RECORD_HEADER_BYTES, available: bytes.len() });
    };
    let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if magic != RECORD_MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    let version = h[4];
    if version != RECORD_VERSION {
        // Checked before anything else of the layout: a newer version may change it.
        return Err(DecodeError::UnsupportedVersion { version });
    }
    let len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if len as usize > RECORD_PAYLOAD_BYTES_MAX {
        return Err(DecodeError::TooLarge { len, max: RECORD_PAYLOAD_BYTES_MAX });
    }
    Ok(RecordHeader {
        version,
        flags: h[5],
        reserved: u16::from_le_bytes([h[6], h[7]]),
        len,
        position: u64::from_le_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]),
        crc32c: u32::from_le_bytes([h[20], h[21], h[22], h[23]]),
    })
}

/// Checks the CRC of a record whose header was decoded from `header_bytes` (at least
/// [`RECORD_HEADER_BYTES`] long) and whose payload is `payload`, then the flags.
pub fn verify_record(header: &RecordHeader, header_bytes: &[u8], payload: &[u8]) -> Result<(), DecodeError> {
    let covered = header_bytes
        .get(..CRC_COVERED_HEADER_BYTES)
        .ok_or(DecodeError::Incomplete { needed: RECORD_HEADER_BYTES, available: header_bytes.len() })?;
    let computed = record_crc(covered, payload);
    if computed != header.crc32c {
        return Err(DecodeError::CrcMismatch { stored: header.crc32c, computed, record_bytes: header.record_bytes() });
    }
    // Flags are only trusted once the CRC says the header is what the writer wrote.
    if header.flags != 0 || header.reserved != 0 {
        return Err(DecodeError::UnknownFlags { flags: header.flags, reserved: header.reserved });
    }
    Ok(())
}

/// Decodes the record at the start of `bytes`: returns its header, its payload and the number
/// of bytes it takes (header + payload).
pub fn decode_record(bytes: &[u8]) -> Result<(RecordHeader, &[u8], usize), DecodeError> {
    let header = decode_header(bytes)?;
    let consumed = header.record_bytes();
    let Some(record) = bytes.get(..consumed) else {
        return Err(DecodeError::Incomplete { needed: consumed, available: bytes.len() });
    };
    let (header_bytes, payload) = record.split_at(RECORD_HEADER_BYTES);
    verify_record(&header, header_bytes, payload)?;
    Ok((header, payload, consumed))
}

/// Result of scanning one segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// Good records found, with consecutive positions from the segment's first position.
    pub records: u64,
    /// Bytes taken by those records; everything after is the torn tail, if any.
    pub valid_bytes: u64,
    /// Bytes after the good records that look like an interrupted last write.
    pub torn_tail: Option<TornTail>,
}

/// Bytes after the last good record that a crash during the last append can explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub offset: u64,
    pub bytes: u64,
    pub reason: String,
}

/// A bad record that a crash during the last append cannot explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub offset: u64,
    /// The position the bad record should have had.
    pub position: Position,
    pub kind: ScanErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanErrorKind {
    Corrupt(String),
    UnsupportedVersion(u8),
}

/// Scans the records of one segment whose first record must have position `first_position`.
///
/// Appends are sequential and each is synced before the next starts, so a crash can only
/// damage the last record; and segments are append-only, never preallocated nor overwritten,
/// so what a crash leaves of that record is a *prefix* of it (the file is short), blocks that
/// never reached the disk (they read as zeros), or bytes that are not a record of ours at all
/// (a crash before the header landed). A flipped bit does none of these: it leaves the file
/// its full length and the record's header in place. Hence, for bad bytes after the last
/// good record with no valid record after them:
/// - all zero bytes, fewer bytes than a header, or bytes whose header is not this record's
///   (wrong magic, version, position) are a *torn tail*;
/// - a header of this record whose length runs past the end of the bytes is a torn tail (a
///   short write), unless the bytes to the end are the complete record with a damaged
///   length field (its CRC checks with the length the bytes have): corruption;
/// - a *complete* record (its length fits the bytes) with a bad CRC is **corruption**, unless
///   one of its whole [`TORN_SECTOR_BYTES`]-aligned sectors (aligned in the segment) reads
///   all zero: a block that never reached the disk;
/// - bytes that are this record with one header field damaged (the CRC checks once magic,
///   version, flags, length and position are what they must be) are corruption.
///
/// Everything else, and any bad record with a valid one after it, is a [`ScanError`]. Whether
/// a torn tail may be truncated (only in the last segment) is the caller's decision.
pub fn scan_segment(bytes: &[u8], first_position: Position) -> Result<SegmentScan, ScanError> {
    let mut offset = 0usize;
    let mut position = first_position;
    let mut records = 0u64;
    let corrupt = |offset: usize, position: Position, reason: String| ScanError {
        offset: offset as u64,
        position,
        kind: ScanErrorKind::Corrupt(reason),
    };
    while let Some(rest) = bytes.get(offset..).filter(|rest| !rest.is_empty()) {
        let torn = |reason: String| SegmentScan {
            records,
            valid_bytes: offset as u64,
            torn_tail: Some(TornTail { offset: offset as u64, bytes: rest.len() as u64, reason }),
        };
        match decode_record(rest) {
            Ok((header, _, consumed)) => {
                if header.position != position {
                    return Err(corrupt(
                        offset,
                        position,
                        format!(
                            "position gap: record carries position {} where {position} was expected",
                            header.position
                        ),
                    ));
                }
                offset += consumed;
                records += 1;
                position = position
                    .checked_add(1)
                    .ok_or_else(|| corrupt(offset, position, "position overflows u64".to_owned()))?;
            }
            Err(DecodeError::UnsupportedVersion { version }) => {
                return Err(ScanError {
                    offset: offset as u64,
                    position,
                    kind: ScanErrorKind::UnsupportedVersion(version),
                });
            }
            Err(err @ DecodeError::UnknownFlags { .. }) => {
                return Err(corrupt(offset, position, err.to_string()));
            }
            Err(err @ DecodeError::CrcMismatch { record_bytes, .. }) => {
                let after = rest.get(record_bytes..).unwrap_or_default();
                if !is_all_zero(after) {
                    return Err(corrupt(offset, position, format!("{err}, followed by {} more bytes", after.len())));
                }
                let record = rest.get(..record_bytes).unwrap_or(rest);
                if has_zero_sector(record, offset) {
                    return Ok(torn(format!("last record is torn (a sector of it never reached the disk): {err}")));
                }
                return Err(corrupt(
                    offset,
                    position,
                    format!("{err} in a complete last record: corruption, not a torn write"),
                ));
            }
            Err(
                err @ (DecodeError::Incomplete { .. } | DecodeError::BadMagic { .. } | DecodeError::TooLarge { .. }),
            ) => {
                if is_all_zero(rest) {
                    return Ok(torn("trailing zero bytes".to_owned()));
                }
                if let Some(found) = find_valid_record(rest, 1) {
                    return Err(corrupt(
                        offset,
                        position,
                        format!("{err}, but a valid record follows at byte offset {}", offset + found),
                    ));
                }
                if let Some(field) = complete_record_with_damaged_header(rest, position) {
                    return Err(corrupt(
                        offset,
                        position,
                        format!("{err}: the bytes to the end are this complete record with a damaged {field}"),
                    ));
                }
                return Ok(torn(format!("last record is torn: {err}")));
            }
        }
    }
    Ok(SegmentScan { records, valid_bytes: offset as u64, torn_tail: None })
}

/// Sector size a torn write is assumed to lose whole (the smallest disk sector): a block of a
/// record that never reached the disk reads as this many zero bytes at an aligned offset.
pub const TORN_SECTOR_BYTES: usize = 512;

/// Whether `record`, which starts at byte `start` of its segment, holds a whole
/// [`TORN_SECTOR_BYTES`]-aligned sector of zero bytes.
fn has_zero_sector(record: &[u8], start: usize) -> bool {
    let first = start.next_multiple_of(TORN_SECTOR_BYTES) - start;
    record.get(first..).unwrap_or_default().chunks_exact(TORN_SECTOR_BYTES).any(is_all_zero)
}

/// If `rest` (at least a header long) is the complete record at `position` once the header
/// fields a bit flip may have damaged are restored (magic, version, flags, reserved, length
/// = the bytes present, position), the name of the field that differs; `None` otherwise.
fn complete_record_with_damaged_header(rest: &[u8], position: Position) -> Option<&'static str> {
    let (stored, payload) = rest.split_first_chunk::<RECORD_HEADER_BYTES>()?;
    let len = u32::try_from(payload.len()).ok().filter(|&len| len as usize <= RECORD_PAYLOAD_BYTES_MAX)?;
    let mut canonical = [0u8; RECORD_HEADER_BYTES];
    canonical[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    canonical[4] = RECORD_VERSION;
    canonical[8..12].copy_from_slice(&len.to_le_bytes());
    canonical[12..20].copy_from_slice(&position.to_le_bytes());
    let stored_crc = u32::from_le_bytes([stored[20], stored[21], stored[22], stored[23]]);
    if record_crc(&canonical[..CRC_COVERED_HEADER_BYTES], payload) != stored_crc {
        return None;
    }
    let fields: [(&'static str, std::ops::Range<usize>); 5] =
        [("magic", 0..4), ("version", 4..5), ("flags", 5..8), ("length", 8..12), ("position", 12..20)];
    fields.into_iter().find(|(_, range)| stored[range.clone()] != canonical[range.clone()]).map(|(name, _)| name)
}

fn is_all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Offset of the first complete, CRC-valid record starting at or after `from` in `bytes`.
fn find_valid_record(bytes: &[u8], from: usize) -> Option<usize> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let candidates = bytes.get(from..)?;
    candidates
        .windows(magic.len())
        .enumerate()
        .filter(|(_, window)| *window == magic)
        .map(|(i, _)| from + i)
        .find(|&start| bytes.get(start..).is_some_and(|b| decode_record(b).is_ok()))
}
