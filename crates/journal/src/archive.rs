//! Journal retention: whole segments that recovery no longer needs are moved out of the live
//! journal into an archive directory, compressed, and stay readable (and verifiable through the
//! engine's hash chain) from there. Nothing is ever deleted without a complete, synced,
//! read-back copy.
//!
//! An archive file `<first position:020>.jarc` holds one segment (little endian), version 1:
//! `magic: u32` ([`ARCHIVE_MAGIC`]), `version: u8`, `reserved: [u8; 3]` (0),
//! `first: u64` (position of its first record), `records: u64`, `raw_bytes: u64` (the segment's
//! length), `compressed_bytes: u64`, `crc32c: u32` over the 40 bytes before it; then one zstd
//! frame (with its content checksum) of the segment's bytes exactly as they were: every record
//! keeps its own header and CRC, so an archived record is checked exactly like a live one.
//!
//! **Crash safety.** [`archive_segment`] writes the archive under a temporary name, syncs it,
//! renames it, syncs the directory, reads it back and compares it with the segment, and only
//! then removes the segment and syncs the journal directory. A crash leaves the segment alone,
//! or the segment and a complete archive of it (the next run compares the two and removes the
//! segment), or the archive alone. Readers prefer the live segment wherever both exist.

use std::fs::{self, File};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use crate::file::{create_dir_durably, io_error, list_segments, private_file, sync_dir, tighten, PRIVATE_DIR_MODE};
use crate::record::{self, decode_header, verify_record, RECORD_HEADER_BYTES};
use crate::{JournalError, Position};

/// "JARC" in file order.
pub const ARCHIVE_MAGIC: u32 = u32::from_le_bytes(*b"JARC");
/// The only archive format version this build reads and writes.
pub const ARCHIVE_VERSION: u8 = 1;
/// Size of the fixed archive header.
pub const ARCHIVE_HEADER_BYTES: usize = 44;
/// Suffix of archive file names.
pub const ARCHIVE_SUFFIX: &str = ".jarc";
/// zstd level of archives: level 3 (zstd's default) compresses journal batches several times
/// over at a few hundred MB/s, on the archiver's own thread.
pub const ARCHIVE_ZSTD_LEVEL: i32 = 3;

const CRC_COVERED_HEADER_BYTES: usize = 40;
const NAME_DIGITS: usize = 20;
const TMP_SUFFIX: &str = ".tmp";

/// The header of an archive file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveHeader {
    pub first: Position,
    pub records: u64,
    /// The archived segment's length.
    pub raw_bytes: u64,
    /// Bytes of the zstd frame after the header.
    pub compressed_bytes: u64,
}

impl ArchiveHeader {
    /// The position after its last record.
    pub fn end(&self) -> Position {
        self.first.saturating_add(self.records)
    }

    /// The header's bytes, with its CRC.
    pub fn encode(&self) -> [u8; ARCHIVE_HEADER_BYTES] {
        let mut bytes = [0u8; ARCHIVE_HEADER_BYTES];
        bytes[0..4].copy_from_slice(&ARCHIVE_MAGIC.to_le_bytes());
        bytes[4] = ARCHIVE_VERSION;
        bytes[8..16].copy_from_slice(&self.first.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.records.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.raw_bytes.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.compressed_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..CRC_COVERED_HEADER_BYTES]);
        bytes[40..44].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes a header; the error says why the bytes are not one.
    pub fn decode(bytes: &[u8; ARCHIVE_HEADER_BYTES]) -> Result<ArchiveHeader, String> {
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if magic != ARCHIVE_MAGIC {
            return Err(format!("bad archive magic {magic:#010x}"));
        }
        if bytes[4] != ARCHIVE_VERSION {
            return Err(format!("unsupported archive version {}", bytes[4]));
        }
        if bytes[5..8] != [0, 0, 0] {
            return Err("nonzero reserved bytes in the archive header".to_owned());
        }
        let stored = u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]);
        let computed = crc32c::crc32c(&bytes[..CRC_COVERED_HEADER_BYTES]);
        if stored != computed {
            return Err(format!("archive header crc32c mismatch: stored {stored:#010x}, computed {computed:#010x}"));
        }
        Ok(ArchiveHeader { first: u64_at(8), records: u64_at(16), raw_bytes: u64_at(24), compressed_bytes: u64_at(32) })
    }
}

/// Path of the archive of the segment whose first record has position `first`.
pub fn archive_path(dir: &Path, first: Position) -> PathBuf {
    dir.join(format!("{first:0NAME_DIGITS$}{ARCHIVE_SUFFIX}"))
}

fn parse_name(name: &str) -> Option<Position> {
    let digits = name.strip_suffix(ARCHIVE_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Archive files in `dir` as `(first position from the name, path)`, oldest first. A missing
/// directory holds none.
pub fn list_archives(dir: &Path) -> Result<Vec<(Position, PathBuf)>, JournalError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_error("list archive directory", dir, source)),
    };
    let mut archives = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| io_error("list archive directory", dir, source))?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_name) {
            archives.push((first, entry.path()));
        }
    }
    archives.sort_unstable_by_key(|(first, _)| *first);
    Ok(archives)
}

fn corrupt(position: Position, path: &Path, offset: u64, reason: impl Into<String>) -> JournalError {
    JournalError::Corrupt { position, segment: path.to_owned(), offset, reason: reason.into() }
}

/// Reads and checks the header of the archive at `path`, named for position `named`.
pub fn read_header(path: &Path, named: Position) -> Result<ArchiveHeader, JournalError> {
    let mut file = File::open(path).map_err(|source| io_error("open archive", path, source))?;
    read_header_from(&mut file, path, named)
}

fn read_header_from(file: &mut File, path: &Path, named: Position) -> Result<ArchiveHeader, JournalError> {
    let mut bytes = [0u8; ARCHIVE_HEADER_BYTES];
    file.read_exact(&mut bytes).map_err(|source| match source.kind() {
        ErrorKind::UnexpectedEof => corrupt(named, path, 0, "archive shorter than its header"),
        _ => io_error("read archive", path, source),
    })?;
    let header = ArchiveHeader::decode(&bytes).map_err(|reason| corrupt(named, path, 0, reason))?;
    if header.first != named {
        return Err(corrupt(named, path, 0, format!("archive header says first position {}", header.first)));
    }
    let length = file.metadata().map_err(|source| io_error("stat archive", path, source))?.len();
    if length != ARCHIVE_HEADER_BYTES as u64 + header.compressed_bytes {
        return Err(corrupt(
            named,
            path,
            0,
            format!(
                "archive of {length} bytes, its header says {} compressed bytes after the header",
                header.compressed_bytes
            ),
        ));
    }
    Ok(header)
}

fn scan_reason(kind: &record::ScanErrorKind) -> String {
    match kind {
        record::ScanErrorKind::Corrupt(reason) => reason.clone(),
        record::ScanErrorKind::UnsupportedVersion(version) => format!("unsupported record version {version}"),
    }
}

/// Whether to go on after a record (`true`) or stop (`false`).
pub type ArchiveVisitor<'a> = dyn FnMut(Position, &[u8]) -> Result<bool, JournalError> + 'a;

/// Visits the records of one archive with positions in `[from, until)`, checking each one's
/// framing and CRC; a full read (to the archive's end) also checks the zstd frame's checksum
/// and the segment's length. Returns the position after the last record visited and whether
/// `visit` stopped.
fn read_archive(
    path: &Path,
    named: Position,
    from: Position,
    until: Position,
    visit: &mut ArchiveVisitor<'_>,
) -> Result<(Position, bool), JournalError> {
    let mut file = File::open(path).map_err(|source| io_error("open archive", path, source))?;
    let header = read_header_from(&mut file, path, named)?;
    let end = header.end().min(until);
    let mut decoder = zstd::stream::read::Decoder::with_buffer(BufReader::new(file))
        .map_err(|source| io_error("start decompressing archive", path, source))?;
    let mut offset = 0u64;
    let mut payload = Vec::new();
    let mut position = header.first;
    let unreadable = |position: Position, offset: u64, source: std::io::Error| {
        corrupt(position, path, offset, format!("the archive does not decompress: {source}"))
    };
    while position < end {
        let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
        decoder.read_exact(&mut header_bytes).map_err(|source| unreadable(position, offset, source))?;
        let record = decode_header(&header_bytes).map_err(|err| match err {
            record::DecodeError::UnsupportedVersion { version } => {
                JournalError::UnsupportedVersion { version, position }
            }
            other => corrupt(position, path, offset, other.to_string()),
        })?;
        if record.position != position {
            return Err(corrupt(position, path, offset, format!("record carries position {}", record.position)));
        }
        payload.clear();
        payload.resize(record.len as usize, 0);
        decoder.read_exact(&mut payload).map_err(|source| unreadable(position, offset, source))?;
        verify_record(&record, &header_bytes, &payload)
            .map_err(|err| corrupt(position, path, offset, err.to_string()))?;
        offset += record.record_bytes() as u64;
        if position >= from && !visit(position, &payload)? {
            return Ok((position + 1, true));
        }
        position += 1;
    }
    if position == header.end() {
        // Read whole: nothing may follow the last record, and the frame's checksum must hold
        // (zstd checks it when the frame ends).
        let mut rest = Vec::new();
        decoder.read_to_end(&mut rest).map_err(|source| unreadable(position, offset, source))?;
        if !rest.is_empty() || offset != header.raw_bytes {
            return Err(corrupt(
                position,
                path,
                offset,
                format!(
                    "{} bytes follow the last record; the header says the segment had {} bytes",
                    rest.len(),
                    header.raw_bytes
                ),
            ));
        }
    }
    Ok((position, false))
}

/// Decompresses a whole archive and checks it: its header, every record, the frame checksum.
/// Returns the header and the segment's bytes.
pub fn read_archive_bytes(path: &Path, named: Position) -> Result<(ArchiveHeader, Vec<u8>), JournalError> {
    let mut file = File::open(path).map_err(|source| io_error("open archive", path, source))?;
    let header = read_header_from(&mut file, path, named)?;
    let mut compressed = Vec::new();
    file.read_to_end(&mut compressed).map_err(|source| io_error("read archive", path, source))?;
    let raw = zstd::stream::decode_all(compressed.as_slice())
        .map_err(|source| corrupt(named, path, 0, format!("the archive does not decompress: {source}")))?;
    if raw.len() as u64 != header.raw_bytes {
        return Err(corrupt(
            named,
            path,
            0,
            format!("the archive holds {} bytes, its header says {}", raw.len(), header.raw_bytes),
        ));
    }
    let scan = record::scan_segment(&raw, named)
        .map_err(|err| corrupt(err.position, path, err.offset, scan_reason(&err.kind)))?;
    if scan.torn_tail.is_some() || scan.records != header.records {
        return Err(corrupt(
            named + scan.records,
            path,
            scan.valid_bytes,
            format!("the archive holds {} whole records, its header says {}", scan.records, header.records),
        ));
    }
    Ok((header, raw))
}

/// Reads the journal's history: archived segments (in `archive_dir`) below the first live
/// segment, live segments (in `journal_dir`) from there. Reads files only: no lock, nothing
/// written, so it runs beside a running engine (which may archive a segment meanwhile: a live
/// segment that vanished is looked for in the archive).
#[derive(Clone, Debug)]
pub struct History {
    pub journal_dir: PathBuf,
    /// `None`: no archive (retention off); positions below the live journal are missing.
    pub archive_dir: Option<PathBuf>,
}

impl History {
    pub fn new(journal_dir: &Path, archive_dir: Option<&Path>) -> History {
        History { journal_dir: journal_dir.to_owned(), archive_dir: archive_dir.map(Path::to_owned) }
    }

    fn live_segments(&self) -> Result<Vec<(Position, PathBuf)>, JournalError> {
        if !self.journal_dir.is_dir() {
            return Ok(Vec::new());
        }
        list_segments(&self.journal_dir)
    }

    fn archives(&self) -> Result<Vec<(Position, PathBuf)>, JournalError> {
        self.archive_dir.as_deref().map_or(Ok(Vec::new()), list_archives)
    }

    /// The first position the history holds (archives or live), `None` when empty.
    pub fn first_available(&self) -> Result<Option<Position>, JournalError> {
        let archived = self.archives()?.first().map(|(first, _)| *first);
        let live = self.live_segments()?.first().map(|(first, _)| *first);
        Ok(match (archived, live) {
            (Some(a), Some(l)) => Some(a.min(l)),
            (a, l) => a.or(l),
        })
    }

    /// The first position of the live journal (`None` without a segment).
    pub fn first_live(&self) -> Result<Option<Position>, JournalError> {
        Ok(self.live_segments()?.first().map(|(first, _)| *first))
    }

    /// Visits archived records in `[from, until)` in order (callers pass the first live
    /// position as `until`). Every position must be in an archive: a gap is
    /// [`JournalError::Pruned`]. Returns the position reached and whether `visit` stopped.
    pub fn read_archived(
        &self,
        from: Position,
        until: Position,
        visit: &mut ArchiveVisitor<'_>,
    ) -> Result<(Position, bool), JournalError> {
        let archives = self.archives()?;
        let mut next = from;
        while next < until {
            let index = archives.partition_point(|(first, _)| *first <= next);
            let missing = || JournalError::Pruned {
                requested: next,
                first_available: archives.first().map_or(until, |(first, _)| (*first).min(until)),
            };
            let Some((named, path)) = index.checked_sub(1).map(|index| &archives[index]) else {
                return Err(missing());
            };
            let header = read_header(path, *named)?;
            if header.end() <= next {
                return Err(missing());
            }
            let (reached, stopped) = read_archive(path, *named, next, until, visit)?;
            next = reached;
            if stopped {
                return Ok((next, true));
            }
        }
        Ok((next, false))
    }

    /// Visits every record in `[from, end)`, from the archives below the live journal and from
    /// the live segments from there on. `end` must be durable (the engine's next position): a
    /// record before it that is missing or bad is an error, never the end.
    pub fn read(
        &self,
        from: Position,
        end: Position,
        visit: &mut ArchiveVisitor<'_>,
    ) -> Result<Position, JournalError> {
        let mut next = from;
        let mut vanished = 0;
        while next < end {
            let live = self.live_segments()?;
            let first_live = live.first().map_or(end, |(first, _)| *first);
            if next < first_live {
                let (reached, stopped) = self.read_archived(next, first_live.min(end), visit)?;
                next = reached;
                if stopped {
                    return Ok(next);
                }
                continue;
            }
            let index = live.partition_point(|(first, _)| *first <= next) - 1;
            match read_live(&live, index, next, end, visit) {
                Ok((reached, stopped)) => {
                    next = reached;
                    if stopped || next >= end {
                        return Ok(next);
                    }
                    let (last_first, last_path) = &live[live.len() - 1];
                    return Err(corrupt(
                        next,
                        last_path,
                        0,
                        format!(
                        "the journal ends at position {next} (its last segment starts at {last_first}), before the \
                         engine's position {end}"
                    ),
                    ));
                }
                Err(ReadLive::Vanished(reached)) if vanished < 3 => {
                    // Archived meanwhile: look again.
                    vanished += 1;
                    next = reached;
                }
                Err(ReadLive::Vanished(reached)) => {
                    return Err(JournalError::Pruned { requested: reached, first_available: first_live })
                }
                Err(ReadLive::Failed(error)) => return Err(error),
            }
        }
        Ok(next)
    }
}

enum ReadLive {
    /// A segment file was gone when opened (archived meanwhile); the position reached.
    Vanished(Position),
    Failed(JournalError),
}

impl From<JournalError> for ReadLive {
    fn from(error: JournalError) -> ReadLive {
        ReadLive::Failed(error)
    }
}

fn read_live(
    live: &[(Position, PathBuf)],
    start: usize,
    from: Position,
    end: Position,
    visit: &mut ArchiveVisitor<'_>,
) -> Result<(Position, bool), ReadLive> {
    let mut next = from;
    let mut payload = Vec::new();
    for (index, (first, path)) in live.iter().enumerate().skip(start) {
        if *first != next && index != start {
            return Err(ReadLive::Failed(corrupt(
                next,
                path,
                0,
                format!("segment starts at position {first} but the previous one ends before {next}"),
            )));
        }
        let segment_end = live.get(index + 1).map_or(end, |(later, _)| (*later).min(end));
        let file = match File::open(path) {
            Ok(file) => file,
            Err(source) if source.kind() == ErrorKind::NotFound => return Err(ReadLive::Vanished(next)),
            Err(source) => return Err(io_error("open segment for reading", path, source).into()),
        };
        let mut reader = BufReader::with_capacity(crate::file::READ_BUFFER_BYTES_MAX, file);
        let mut offset = 0u64;
        let mut position = *first;
        while position < segment_end {
            let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
            let short = |source: std::io::Error| match source.kind() {
                ErrorKind::UnexpectedEof => {
                    corrupt(position, path, offset, "the segment ends inside or before a durable record")
                }
                _ => io_error("read segment", path, source),
            };
            reader.read_exact(&mut header_bytes).map_err(short)?;
            let header = decode_header(&header_bytes).map_err(|err| match err {
                record::DecodeError::UnsupportedVersion { version } => {
                    JournalError::UnsupportedVersion { version, position }
                }
                other => corrupt(position, path, offset, other.to_string()),
            })?;
            if header.position != position {
                return Err(
                    corrupt(position, path, offset, format!("record carries position {}", header.position)).into()
                );
            }
            if position < from {
                reader
                    .seek_relative(i64::from(header.len))
                    .map_err(|source| io_error("seek in segment", path, source))?;
            } else {
                payload.clear();
                payload.resize(header.len as usize, 0);
                reader.read_exact(&mut payload).map_err(short)?;
                verify_record(&header, &header_bytes, &payload)
                    .map_err(|err| corrupt(position, path, offset, err.to_string()))?;
                if !visit(position, &payload)? {
                    return Ok((position + 1, true));
                }
            }
            offset += header.record_bytes() as u64;
            position += 1;
        }
        next = position;
        if next >= end {
            break;
        }
    }
    Ok((next, false))
}

/// The archive file of a segment's bytes `raw` holding `records` records from `first`.
pub fn encode_archive(first: Position, records: u64, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut compressor = zstd::bulk::Compressor::new(ARCHIVE_ZSTD_LEVEL)?;
    compressor.include_checksum(true)?;
    compressor.include_contentsize(true)?;
    let compressed = compressor.compress(raw)?;
    let header =
        ArchiveHeader { first, records, raw_bytes: raw.len() as u64, compressed_bytes: compressed.len() as u64 };
    let mut bytes = Vec::with_capacity(ARCHIVE_HEADER_BYTES + compressed.len());
    bytes.extend_from_slice(&header.encode());
    bytes.extend_from_slice(&compressed);
    Ok(bytes)
}

/// What [`archive_segment`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedSegment {
    pub first: Position,
    pub records: u64,
    /// The segment's length.
    pub raw_bytes: u64,
    /// The archive file's length.
    pub archive_bytes: u64,
    pub path: PathBuf,
    /// A complete archive was already there (a crash between its write and the segment's
    /// removal); it was compared with the segment and kept.
    pub resumed: bool,
}

/// Archives the complete segment `segment` (first record at `first`, the next segment starting
/// at `end`) into `archive_dir`, then removes it from `journal_dir`, calling `before_remove(end)`
/// once the archive is complete and just before the removal. See the module's crash safety. An archive already there must hold exactly the segment's bytes, or nothing is
/// touched and the difference is reported.
pub fn archive_segment(
    journal_dir: &Path,
    first: Position,
    segment: &Path,
    end: Position,
    archive_dir: &Path,
    before_remove: &mut dyn FnMut(Position),
) -> Result<ArchivedSegment, JournalError> {
    let raw = fs::read(segment).map_err(|source| io_error("read segment", segment, source))?;
    let scan = record::scan_segment(&raw, first)
        .map_err(|err| corrupt(err.position, segment, err.offset, scan_reason(&err.kind)))?;
    if scan.torn_tail.is_some() || scan.valid_bytes != raw.len() as u64 || first + scan.records != end {
        return Err(corrupt(
            first + scan.records,
            segment,
            scan.valid_bytes,
            format!("a segment to archive must hold whole records up to position {end}; this one ends before"),
        ));
    }
    let path = archive_path(archive_dir, first);
    let resumed = path.exists();
    if resumed {
        let (_, archived) = read_archive_bytes(&path, first)?;
        if archived != raw {
            return Err(corrupt(
                first,
                &path,
                0,
                format!("an archive of the live segment {} exists and differs from it", segment.display()),
            ));
        }
    } else {
        let encoded = encode_archive(first, scan.records, &raw)
            .map_err(|source| io_error("compress segment", segment, source))?;
        let mut tmp_name = path.clone().into_os_string();
        tmp_name.push(TMP_SUFFIX);
        let tmp = PathBuf::from(tmp_name);
        let written = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(&encoded)?;
                file.sync_all()
            })
            .map_err(|source| io_error("write archive", &tmp, source));
        if let Err(error) = written {
            let _ = fs::remove_file(&tmp);
            return Err(error);
        }
        fs::rename(&tmp, &path).map_err(|source| io_error("rename archive", &path, source))?;
        sync_dir(archive_dir)?;
        // Read back what is on disk before the only other copy goes.
        let (_, archived) = read_archive_bytes(&path, first)?;
        if archived != raw {
            return Err(corrupt(first, &path, 0, "the archive read back differs from the segment"));
        }
    }
    let archive_bytes = fs::metadata(&path).map_err(|source| io_error("stat archive", &path, source))?.len();
    // Readers are sent to the archive for these positions before the segment goes.
    before_remove(end);
    fs::remove_file(segment).map_err(|source| io_error("remove archived segment", segment, source))?;
    sync_dir(journal_dir)?;
    Ok(ArchivedSegment { first, records: scan.records, raw_bytes: raw.len() as u64, archive_bytes, path, resumed })
}

/// Archives, oldest first, every live segment that is complete (not the last one) and wholly
/// below `floor`: all its records have positions `< floor`. Creates `archive_dir` (0700) and
/// removes temporary files of interrupted archive writes first. Stops at the first failure;
/// what was archived before it stays archived (the segments left are still contiguous).
pub fn archive_below(
    journal_dir: &Path,
    archive_dir: &Path,
    floor: Position,
    before_remove: &mut dyn FnMut(Position),
) -> Result<Vec<ArchivedSegment>, JournalError> {
    let segments = list_segments(journal_dir)?;
    let eligible = segments.windows(2).take_while(|pair| pair[1].0 <= floor).count();
    let mut done = Vec::new();
    if eligible == 0 {
        return Ok(done);
    }
    prepare_archive_dir(archive_dir)?;
    for pair in segments.windows(2).take(eligible) {
        let ((first, path), (end, _)) = (&pair[0], &pair[1]);
        done.push(archive_segment(journal_dir, *first, path, *end, archive_dir, before_remove)?);
    }
    Ok(done)
}

/// Creates the archive directory owner-only and removes leftover temporary files.
pub fn prepare_archive_dir(archive_dir: &Path) -> Result<(), JournalError> {
    create_dir_durably(archive_dir)?;
    tighten(archive_dir, PRIVATE_DIR_MODE)?;
    let entries =
        fs::read_dir(archive_dir).map_err(|source| io_error("list archive directory", archive_dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| io_error("list archive directory", archive_dir, source))?;
        if entry.file_name().to_str().is_some_and(|name| name.ends_with(TMP_SUFFIX)) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|source| io_error("remove leftover archive temp file", &path, source))?;
        }
    }
    Ok(())
}

/// A live journal read together with its archive: positions below the live journal are read
/// from the archive (recovery from an old snapshot or from position 0 after segments were
/// archived). Appends are refused: it is for reading only.
#[derive(Debug)]
pub struct WithArchive<'a, J: crate::Journal + ?Sized> {
    pub live: &'a J,
    pub live_first: Position,
    pub history: History,
}

impl<J: crate::Journal + Sync + ?Sized> crate::Journal for WithArchive<'_, J> {
    fn append(&mut self, _payload: &[u8]) -> Result<Position, JournalError> {
        Err(JournalError::ReadOnly)
    }

    fn next_position(&self) -> Position {
        self.live.next_position()
    }

    fn read_from(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        let mut from = from;
        if from < self.live_first {
            let (reached, _) = self.history.read_archived(from, self.live_first, &mut |position, payload| {
                visit(position, payload)?;
                Ok(true)
            })?;
            from = reached;
        }
        self.live.read_from(from, visit)
    }
}
