//! Test utilities that damage a file journal's directory the way crashes and bit rot do:
//! torn last records, garbage tails and flipped bytes. Not for production paths.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::file::{io_error, list_segments};
use crate::record::decode_header;
use crate::{JournalError, Position};

/// Where one record sits in a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    pub position: Position,
    /// Byte offset of the record's header in the segment.
    pub offset: u64,
    /// Header plus payload bytes.
    pub len: u64,
}

/// Segment files of the journal in `dir`, oldest first.
pub fn segment_paths(dir: &Path) -> Result<Vec<PathBuf>, JournalError> {
    Ok(list_segments(dir)?.into_iter().map(|(_, path)| path).collect())
}

/// The newest segment file of the journal in `dir`.
pub fn last_segment(dir: &Path) -> Result<PathBuf, JournalError> {
    segment_paths(dir)?.pop().ok_or_else(|| invalid_input(dir, "journal directory has no segment"))
}

/// Spans of the well-formed records at the start of a segment file (headers only are
/// checked; stops at the first one that does not decode or is incomplete).
pub fn record_spans(segment: &Path) -> Result<Vec<RecordSpan>, JournalError> {
    let bytes = fs::read(segment).map_err(|source| io_error("read segment", segment, source))?;
    let mut spans = Vec::new();
    let mut offset = 0usize;
    while let Some(rest) = bytes.get(offset..) {
        let Ok(header) = decode_header(rest) else {
            break;
        };
        if header.record_bytes() > rest.len() {
            break;
        }
        spans.push(RecordSpan { position: header.position, offset: offset as u64, len: header.record_bytes() as u64 });
        offset += header.record_bytes();
    }
    Ok(spans)
}

/// Simulates a crash during the last append: truncates the last segment so that only the first
/// `keep_bytes` bytes of its last record remain (`keep_bytes` must be less than the record's
/// length). Returns the number of bytes cut.
pub fn tear_last_record(dir: &Path, keep_bytes: u64) -> Result<u64, JournalError> {
    let segment = last_segment(dir)?;
    let last =
        record_spans(&segment)?.pop().ok_or_else(|| invalid_input(&segment, "last segment has no record to tear"))?;
    if keep_bytes >= last.len {
        return Err(invalid_input(&segment, "keep_bytes must be less than the last record's length"));
    }
    let file_len = fs::metadata(&segment).map_err(|source| io_error("stat segment", &segment, source))?.len();
    let new_len = last.offset + keep_bytes;
    set_len(&segment, new_len)?;
    Ok(file_len - new_len)
}

/// Appends `bytes` to the last segment, like a crash that left garbage after the last record.
pub fn append_garbage(dir: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let segment = last_segment(dir)?;
    let mut file =
        OpenOptions::new().append(true).open(&segment).map_err(|source| io_error("open segment", &segment, source))?;
    file.write_all(bytes).map_err(|source| io_error("append garbage", &segment, source))
}

/// Inverts every bit of the byte at `offset` in `path`.
pub fn flip_byte(path: &Path, offset: u64) -> Result<(), JournalError> {
    let mut bytes = fs::read(path).map_err(|source| io_error("read file", path, source))?;
    let byte = usize::try_from(offset)
        .ok()
        .and_then(|i| bytes.get_mut(i))
        .ok_or_else(|| invalid_input(path, "offset past the end of the file"))?;
    *byte = !*byte;
    fs::write(path, &bytes).map_err(|source| io_error("write file", path, source))
}

/// Overwrites bytes at `offset` in `path` with `with`.
pub fn overwrite(path: &Path, offset: u64, with: &[u8]) -> Result<(), JournalError> {
    let mut bytes = fs::read(path).map_err(|source| io_error("read file", path, source))?;
    let range = usize::try_from(offset)
        .ok()
        .and_then(|start| Some(start..start.checked_add(with.len())?))
        .ok_or_else(|| invalid_input(path, "offset out of range"))?;
    bytes.get_mut(range).ok_or_else(|| invalid_input(path, "range past the end of the file"))?.copy_from_slice(with);
    fs::write(path, &bytes).map_err(|source| io_error("write file", path, source))
}

/// Sets the length of `path` (cutting or zero-extending it).
pub fn set_len(path: &Path, len: u64) -> Result<(), JournalError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(len))
        .map_err(|source| io_error("set file length", path, source))
}

fn invalid_input(path: &Path, message: &'static str) -> JournalError {
    io_error("testing helper", path, io::Error::new(io::ErrorKind::InvalidInput, message))
}
