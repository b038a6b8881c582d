//! Reads the file journal's segments without opening the journal: no `LOCK`, no truncation of
//! a torn tail, nothing written. The engine may be appending to the last segment while we read
//! it, so a record that is cut short or fails its checksum at the end of the last segment is
//! "not yet written" and the read stops before it; the next poll tries again. Anywhere else a
//! bad record is corruption.
//!
//! A record is visible here once the engine has written it, which is a moment before its sync
//! returns. A process crash loses nothing written, but a machine crash can lose a written,
//! unsynced record, and the restarted engine then writes a different one at that position.
//! The projector stores the journal's hash-chain head with its position and checks it when it
//! resumes, so that case is reported (and `--rebuild` repairs it) rather than served.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use journal::archive::History;
use journal::file::{list_segments, READ_BUFFER_BYTES_MAX};
use journal::record::{decode_header, verify_record, DecodeError, RECORD_HEADER_BYTES};
use journal::{JournalError, Position};

/// A read position in a journal directory: the next record's position and, once found, the
/// segment and byte offset it starts at.
#[derive(Debug)]
pub struct JournalCursor {
    dir: PathBuf,
    /// The journal's history with its archive: positions below the live journal are read from
    /// archived segments (journal retention, `journal::archive`).
    archive: Option<History>,
    next: Position,
    /// `(first position of the segment, path, byte offset of record `next`)`.
    at: Option<(Position, PathBuf, u64)>,
    payload: Vec<u8>,
}

/// What one poll read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    pub records: u64,
    /// True when the poll stopped because `visit` asked it to (not at the end of the journal).
    pub stopped: bool,
}

/// Whether to go on after a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The visitor of [`JournalCursor::poll`].
pub type Visitor<'a> = dyn FnMut(Position, &[u8]) -> Result<Flow, crate::ProjectorError> + 'a;

enum Next {
    Record(u32),
    /// Nothing more (yet) in this segment.
    End,
}

impl JournalCursor {
    /// A cursor at `next` in the journal directory `dir` (`DATA_DIR/journal`).
    pub fn new(dir: &Path, next: Position) -> JournalCursor {
        JournalCursor { dir: dir.to_owned(), archive: None, next, at: None, payload: Vec::new() }
    }

    /// A cursor that also reads archived segments in `archive_dir` (`None`: live segments only).
    pub fn with_archive(dir: &Path, next: Position, archive_dir: Option<&Path>) -> JournalCursor {
        let archive = archive_dir.map(|archive| History::new(dir, Some(archive)));
        JournalCursor { dir: dir.to_owned(), archive, next, at: None, payload: Vec::new() }
    }

    /// The first live position, when `next` is below it and an archive can serve it.
    fn archived_until(&self) -> Result<Option<Position>, JournalError> {
        let Some(history) = &self.archive else { return Ok(None) };
        if self.at.is_some() {
            return Ok(None);
        }
        Ok(history.first_live()?.filter(|first_live| self.next < *first_live))
    }

    /// Position of the next record to read.
    pub fn next_position(&self) -> Position {
        self.next
    }

    /// The first position the journal still holds (0 unless old segments were removed), or
    /// `None` when it has no segment yet.
    pub fn first_available(&self) -> Result<Option<Position>, JournalError> {
        if let Some(history) = &self.archive {
            return history.first_available();
        }
        if !self.dir.is_dir() {
            return Ok(None);
        }
        Ok(list_segments(&self.dir)?.first().map(|(first, _)| *first))
    }

    /// Calls `visit` for every complete record from the cursor on, in order, until the end of
    /// what is written or until `visit` says stop.
    pub fn poll(&mut self, visit: &mut Visitor<'_>) -> Result<Polled, crate::ProjectorError> {
        let mut polled = Polled::default();
        if let (Some(until), Some(history)) = (self.archived_until()?, self.archive.clone()) {
            // Archived records first (decompressed from the start of their archive each poll;
            // only a projector far behind, or rebuilding, reads them).
            let mut failure = None;
            let read =
                history.read_archived(self.next, until, &mut |position, payload| match visit(position, payload) {
                    Ok(flow) => {
                        polled.records += 1;
                        Ok(flow == Flow::Continue)
                    }
                    Err(error) => {
                        failure = Some(error);
                        Err(JournalError::Poisoned)
                    }
                });
            let (reached, stopped) = match read {
                Ok(done) => done,
                Err(_) if failure.is_some() => return Err(failure.take().expect("set above")),
                Err(error) => return Err(error.into()),
            };
            self.next = reached;
            if stopped {
                polled.stopped = true;
                return Ok(polled);
            }
        }
        loop {
            if self.at.is_none() && !self.locate()? {
                return Ok(polled);
            }
            let Some((first, path, offset)) = self.at.clone() else { return Ok(polled) };
            let file = File::open(&path).map_err(|source| io("open segment for reading", &path, source))?;
            let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES_MAX, file);
            reader.seek(SeekFrom::Start(offset)).map_err(|source| io("seek in segment", &path, source))?;
            let mut offset = offset;
            while let Next::Record(bytes) = read_record(&mut reader, &path, self.next, offset, &mut self.payload)? {
                let flow = visit(self.next, &self.payload)?;
                self.next += 1;
                offset += u64::from(bytes);
                self.at = Some((first, path.clone(), offset));
                polled.records += 1;
                if flow == Flow::Stop {
                    polled.stopped = true;
                    return Ok(polled);
                }
            }
            // The end of this segment: go on only if a later one starts where it ends (the
            // engine rotated); otherwise this is the end of the journal for now.
            let segments = list_segments(&self.dir)?;
            match segments.iter().find(|(start, _)| *start > first) {
                Some((start, next_path)) if *start == self.next => {
                    self.at = Some((*start, next_path.clone(), 0));
                }
                Some((start, next_path)) => {
                    // A later segment exists, so this one is complete: a record is missing.
                    if *start > self.next {
                        return Err(corrupt(
                            self.next,
                            next_path,
                            0,
                            format!(
                                "segment starts at position {start} but the previous one ends before {}",
                                self.next
                            ),
                        ));
                    }
                    return Err(corrupt(self.next, next_path, 0, "segments overlap".to_owned()));
                }
                None => return Ok(polled),
            }
        }
    }

    /// Complete records written beyond the cursor (checked by their headers' framing only; a
    /// record being written at the tail is not counted). Does not move the cursor.
    pub fn records_ahead(&mut self) -> Result<u64, crate::ProjectorError> {
        if let Some(until) = self.archived_until()? {
            let mut live = JournalCursor::new(&self.dir, until);
            return Ok(until - self.next + live.records_ahead()?);
        }
        if self.at.is_none() && !self.locate()? {
            return Ok(0);
        }
        let Some((first, path, offset)) = self.at.clone() else { return Ok(0) };
        let mut ahead = 0u64;
        let segments = list_segments(&self.dir)?;
        let mut current = Some((first, path, offset));
        while let Some((start, path, offset)) = current.take() {
            let length = std::fs::metadata(&path).map_err(|source| io("stat segment", &path, source))?.len();
            let file = File::open(&path).map_err(|source| io("open segment for reading", &path, source))?;
            let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES_MAX, file);
            reader.seek(SeekFrom::Start(offset)).map_err(|source| io("seek in segment", &path, source))?;
            let mut at = offset;
            let mut position = if start == first { self.next } else { start };
            loop {
                let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
                if !read_full(&mut reader, &mut header_bytes, &path)? {
                    break;
                }
                let Ok(header) = decode_header(&header_bytes) else { break };
                let end = at + header.record_bytes() as u64;
                if header.position != position || end > length {
                    break;
                }
                reader.seek_relative(i64::from(header.len)).map_err(|source| io("seek in segment", &path, source))?;
                at = end;
                position += 1;
                ahead += 1;
            }
            current = segments
                .iter()
                .find(|(next_start, _)| *next_start == position && *next_start > start)
                .map(|(next_start, next_path)| (*next_start, next_path.clone(), 0));
        }
        Ok(ahead)
    }

    /// Finds the segment and offset of `next`. False when the journal has no record at or
    /// before it yet (an empty or missing journal).
    fn locate(&mut self) -> Result<bool, crate::ProjectorError> {
        if !self.dir.is_dir() {
            return Ok(false);
        }
        let segments = list_segments(&self.dir)?;
        let Some((first_available, _)) = segments.first() else { return Ok(false) };
        if self.next < *first_available {
            return Err(JournalError::Pruned { requested: self.next, first_available: *first_available }.into());
        }
        let index = segments.partition_point(|(first, _)| *first <= self.next) - 1;
        let (first, path) = &segments[index];
        let file = File::open(path).map_err(|source| io("open segment for reading", path, source))?;
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES_MAX, file);
        let mut offset = 0u64;
        let mut position = *first;
        while position < self.next {
            let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
            if !read_full(&mut reader, &mut header_bytes, path)? {
                // The record asked for is not written yet.
                return Ok(false);
            }
            let header = decode_header(&header_bytes).map_err(|error| decode_error(position, path, offset, error))?;
            if header.position != position {
                return Err(corrupt(position, path, offset, format!("record carries position {}", header.position)));
            }
            reader.seek_relative(i64::from(header.len)).map_err(|source| io("seek in segment", path, source))?;
            offset += header.record_bytes() as u64;
            position += 1;
        }
        self.at = Some((*first, path.clone(), offset));
        Ok(true)
    }
}

/// Reads the record at `offset`. `End` when it is not (completely, validly) written yet.
fn read_record(
    reader: &mut BufReader<File>,
    path: &Path,
    position: Position,
    offset: u64,
    payload: &mut Vec<u8>,
) -> Result<Next, crate::ProjectorError> {
    let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
    if !read_full(reader, &mut header_bytes, path)? {
        return Ok(Next::End);
    }
    let header = match decode_header(&header_bytes) {
        Ok(header) => header,
        // A header being written (zeros, a half-written magic) at the tail.
        Err(DecodeError::BadMagic { .. }) => return Ok(Next::End),
        Err(error) => return Err(decode_error(position, path, offset, error)),
    };
    if header.position != position {
        return Err(corrupt(position, path, offset, format!("record carries position {}", header.position)));
    }
    payload.clear();
    payload.resize(header.len as usize, 0);
    if !read_full(reader, payload, path)? {
        return Ok(Next::End);
    }
    if verify_record(&header, &header_bytes, payload).is_err() {
        // Written partly so far; the next poll reads it whole.
        return Ok(Next::End);
    }
    Ok(Next::Record(header.record_bytes() as u32))
}

/// Fills `buf`; false at end of file (a partial fill is also "not written yet").
fn read_full(reader: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<bool, crate::ProjectorError> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(source) if source.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(source) => Err(io("read segment", path, source)),
    }
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> crate::ProjectorError {
    JournalError::Io { op, path: path.to_owned(), source }.into()
}

fn corrupt(position: Position, path: &Path, offset: u64, reason: String) -> crate::ProjectorError {
    JournalError::Corrupt { position, segment: path.to_owned(), offset, reason }.into()
}

fn decode_error(position: Position, path: &Path, offset: u64, error: DecodeError) -> crate::ProjectorError {
    match error {
        DecodeError::UnsupportedVersion { version } => JournalError::UnsupportedVersion { version, position }.into(),
        other => corrupt(position, path, offset, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use journal::{FileJournal, FileJournalOptions, Journal};

    use super::*;

    fn read_all(cursor: &mut JournalCursor) -> Vec<(Position, Vec<u8>)> {
        let mut seen = Vec::new();
        cursor
            .poll(&mut |position, payload| {
                seen.push((position, payload.to_vec()));
                Ok(Flow::Continue)
            })
            .expect("poll");
        seen
    }

    #[test]
    fn a_record_being_written_is_read_once_it_is_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, _) = FileJournal::open(dir.path(), FileJournalOptions::default()).expect("open");
        for index in 0..3u8 {
            journal.append(&[index; 10]).expect("append");
        }
        let mut cursor = JournalCursor::new(dir.path(), 0);
        assert_eq!(read_all(&mut cursor).len(), 3, "read beside the writer, without its lock");
        assert_eq!(cursor.records_ahead().expect("ahead"), 0);

        // The engine's next record, written in two parts.
        let mut record = Vec::new();
        journal::record::encode_record(&mut record, 3, &[7; 100]).expect("encode");
        let (_, segment) = list_segments(dir.path()).expect("segments").pop().expect("a segment");
        let mut file = std::fs::OpenOptions::new().append(true).open(&segment).expect("segment");
        for cut in [5, RECORD_HEADER_BYTES + 40] {
            file.write_all(&record[..cut]).expect("write");
            assert!(read_all(&mut cursor).is_empty(), "nothing before the record is whole ({cut} bytes)");
            assert_eq!(cursor.records_ahead().expect("ahead"), 0);
            file.set_len(file.metadata().expect("stat").len() - cut as u64).expect("cut");
        }
        file.write_all(&record).expect("write");
        assert_eq!(cursor.records_ahead().expect("ahead"), 1);
        assert_eq!(read_all(&mut cursor), vec![(3, vec![7; 100])]);
        assert_eq!(cursor.next_position(), 4);
    }

    #[test]
    fn rotations_are_followed_and_a_cursor_starts_anywhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = FileJournalOptions { segment_bytes_max: 200, ..FileJournalOptions::default() };
        let (mut journal, _) = FileJournal::open(dir.path(), options).expect("open");
        let mut cursor = JournalCursor::new(dir.path(), 0);
        for index in 0..40u64 {
            journal.append(&index.to_le_bytes()).expect("append");
            if index % 7 == 0 {
                assert_eq!(read_all(&mut cursor).last().map(|(position, _)| *position), Some(index));
            }
        }
        assert!(list_segments(dir.path()).expect("segments").len() > 5, "several segments");
        read_all(&mut cursor);
        assert_eq!(cursor.next_position(), 40);
        let mut middle = JournalCursor::new(dir.path(), 23);
        assert_eq!(middle.records_ahead().expect("ahead"), 17);
        let seen = read_all(&mut middle);
        assert_eq!(
            seen.first().map(|(position, payload)| (*position, payload.clone())),
            Some((23, 23u64.to_le_bytes().to_vec()))
        );
        assert_eq!(seen.len(), 17);
    }
}
