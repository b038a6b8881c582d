//! File backend of the journal: a directory of segment files, each named by the position of its
//! first record, group-committed with one `fdatasync` per append.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::record::{
    self, ScanErrorKind, SegmentScan, RECORD_BYTES_MAX, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX,
};
use crate::{Journal, JournalError, Position};

/// Default size at which the journal starts a new segment.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;

/// Largest allowed `segment_bytes_max`. Open reads one whole segment into memory to verify
/// it, so this bounds the memory recovery needs.
pub const SEGMENT_BYTES_MAX_LIMIT_MAX: u64 = 1024 * 1024 * 1024;

/// Largest segment file open accepts. A segment exceeds `segment_bytes_max` only by holding a
/// single record larger than it; anything bigger was not written by this journal.
pub const SEGMENT_FILE_BYTES_MAX: u64 = SEGMENT_BYTES_MAX_LIMIT_MAX + RECORD_BYTES_MAX as u64;

/// Read buffer of `read_from`; large enough to amortise syscalls over small records.
pub const READ_BUFFER_BYTES_MAX: usize = 256 * 1024;

/// Suffix of segment file names.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// Digits of the zero-padded first position in a segment file name (`u64::MAX` has 20).
const SEGMENT_NAME_DIGITS: usize = 20;

/// Mode of every file the journal and the snapshot store create: the journal holds password
/// hashes and dates of birth, so only the owner may read it.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Mode of the directories they create; existing directories with group or other bits are
/// tightened to this on open.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Name of the file [`FileJournal::check_space`] writes and removes to see whether the disk
/// has room again. Not a segment name, so open ignores a leftover.
const SPACE_PROBE_NAME: &str = "space-probe.tmp";

/// Smallest write of [`FileJournal::check_space`]: room for a typical batch, not just a header.
pub const SPACE_PROBE_BYTES_MIN: usize = 64 * 1024;

/// The visitor of [`Journal::read_from`].
type Visitor<'a> = dyn FnMut(Position, &[u8]) -> Result<(), JournalError> + 'a;

/// Options of [`FileJournal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileJournalOptions {
    /// Start a new segment when the current one would grow beyond this many bytes. A record
    /// larger than this gets a segment of its own.
    pub segment_bytes_max: u64,
    /// Sync every append. `false` is only for benchmarks of the in-memory path: appends are
    /// then not durable.
    pub sync: bool,
    /// The journal is known to have reached this position (the highest position a snapshot
    /// covers). Open refuses a journal that ends below it, and never cuts a torn tail below
    /// it: appending there would reuse positions the snapshot already covers, and recovery,
    /// which replays from the snapshot on, would silently skip the new records.
    pub min_next_position: Position,
}

impl Default for FileJournalOptions {
    fn default() -> Self {
        Self { segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT, sync: true, min_next_position: 0 }
    }
}

/// What [`FileJournal::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Records in the retained segments (earlier ones may have been pruned).
    pub records: u64,
    /// Bytes of a torn tail cut off the last segment.
    pub truncated_bytes: u64,
    /// Segment files in the directory after open.
    pub segments: usize,
    /// Position of the first retained record.
    pub first_position: Position,
    /// Directories and segment files whose group/other permission bits open removed.
    pub tightened: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
struct Segment {
    first: Position,
    path: PathBuf,
}

/// The embedded, file-backed journal. One writer per directory.
#[derive(Debug)]
pub struct FileJournal {
    dir: PathBuf,
    options: FileJournalOptions,
    /// Oldest first; never empty, the last one is the segment appended to.
    segments: Vec<Segment>,
    active: File,
    active_bytes: u64,
    next_position: Position,
    poisoned: bool,
    /// Opened with [`FileJournal::open_read_only`]: appends are refused, nothing is written.
    read_only: bool,
    /// Reused encoding buffer: no allocation per append once it fits the largest record.
    buf: Vec<u8>,
    /// Held for the journal's lifetime: a second process appending to the same directory would
    /// interleave records, so only one may open it. A read-only open holds a shared lock
    /// (`None` when there is no LOCK file: it never creates one).
    _lock: Option<File>,
}

impl FileJournal {
    /// Opens (creating if needed) the journal in `dir`, verifying every record and cutting off a
    /// torn tail left by a crash during the last append. A complete record that fails its
    /// checksum is corruption ([`JournalError::Corrupt`]), never cut: see
    /// [`record::scan_segment`] and [`crate::repair`] for the operator's way forward.
    pub fn open(dir: &Path, options: FileJournalOptions) -> Result<(FileJournal, OpenReport), JournalError> {
        Self::open_mode(dir, options, false)
    }

    /// Opens an existing journal without writing anything: no directory or LOCK file is
    /// created, a torn tail is reported in [`OpenReport::truncated_bytes`] but not cut (reads
    /// stop before it), permissions are left alone, and [`Journal::append`] is refused. Holds
    /// a shared lock on LOCK when it exists, so a running writer makes it fail with
    /// [`JournalError::Locked`]. For `sportsbook verify`.
    pub fn open_read_only(dir: &Path) -> Result<(FileJournal, OpenReport), JournalError> {
        Self::open_mode(dir, FileJournalOptions::default(), true)
    }

    fn open_mode(
        dir: &Path,
        options: FileJournalOptions,
        read_only: bool,
    ) -> Result<(FileJournal, OpenReport), JournalError> {
        if options.segment_bytes_max == 0 || options.segment_bytes_max > SEGMENT_BYTES_MAX_LIMIT_MAX {
            return Err(JournalError::InvalidOptions {
                reason: format!(
                    "segment_bytes_max must be in 1..={SEGMENT_BYTES_MAX_LIMIT_MAX}, got {}",
                    options.segment_bytes_max
                ),
            });
        }
        let mut report = OpenReport::default();
        let lock = if read_only {
            if !dir.is_dir() {
                return Err(io_error("open journal directory", dir, std::io::Error::from(ErrorKind::NotFound)));
            }
            lock_dir_shared(dir)?
        } else {
            create_dir_durably(dir)?;
            if tighten(dir, PRIVATE_DIR_MODE)? {
                report.tightened.push(dir.to_owned());
            }
            Some(lock_dir(dir)?)
        };

        let mut segments: Vec<Segment> =
            list_segments(dir)?.into_iter().map(|(first, path)| Segment { first, path }).collect();
        let mut expected: Option<Position> = None;
        let mut active_bytes = 0;
        let mut torn_cut: Option<(PathBuf, u64)> = None;
        let count = segments.len();
        for (index, segment) in segments.iter().enumerate() {
            if let Some(expected) = expected {
                if segment.first != expected {
                    return Err(JournalError::Corrupt {
                        position: expected,
                        segment: segment.path.clone(),
                        offset: 0,
                        reason: format!(
                            "segment starts at position {} but the previous one ends before {expected}",
                            segment.first
                        ),
                    });
                }
            }
            if !read_only && tighten(&segment.path, PRIVATE_FILE_MODE)? {
                report.tightened.push(segment.path.clone());
            }
            let is_last = index + 1 == count;
            let scan = scan_segment_file(segment, is_last)?;
            if let Some(torn) = &scan.torn_tail {
                torn_cut = Some((segment.path.clone(), scan.valid_bytes));
                report.truncated_bytes = torn.bytes;
            }
            report.records += scan.records;
            active_bytes = scan.valid_bytes;
            expected = Some(segment.first.checked_add(scan.records).ok_or_else(|| JournalError::Corrupt {
                position: segment.first,
                segment: segment.path.clone(),
                offset: 0,
                reason: "positions overflow u64".to_owned(),
            })?);
        }
        let first_position = segments.first().map_or(0, |segment| segment.first);
        let next_position = expected.unwrap_or(first_position);
        if next_position < options.min_next_position {
            // Checked before anything is cut or created: the journal lost records a snapshot
            // says it had, and appending would reuse their positions.
            let (segment, offset) = match (&torn_cut, segments.last()) {
                (Some((path, valid)), _) => (path.clone(), *valid),
                (None, Some(last)) => (last.path.clone(), active_bytes),
                (None, None) => (dir.to_owned(), 0),
            };
            return Err(JournalError::Corrupt {
                position: next_position,
                segment,
                offset,
                reason: format!(
                    "the journal ends at position {next_position} but a snapshot covers positions up to {}: \
                     records are missing, and appending would reuse their positions",
                    options.min_next_position
                ),
            });
        }
        if !read_only {
            if let Some((path, valid_bytes)) = &torn_cut {
                truncate_file(path, *valid_bytes)?;
            }
            if segments.is_empty() {
                let path = segment_path(dir, 0);
                create_segment_file(dir, &path)?;
                segments.push(Segment { first: 0, path });
            }
        }
        let active = match segments.last() {
            Some(last) if read_only => File::open(&last.path),
            Some(last) => OpenOptions::new().append(true).open(&last.path),
            // Read only and empty: nothing to read; a handle on the directory stands in.
            None => File::open(dir),
        }
        .map_err(|source| io_error("open segment for append", dir, source))?;
        if segments.is_empty() {
            // Only read-only opens get here; `first_position` needs a segment.
            segments.push(Segment { first: 0, path: segment_path(dir, 0) });
        }

        report.segments = segments.len();
        report.first_position = first_position;
        let journal = FileJournal {
            dir: dir.to_owned(),
            options,
            segments,
            active,
            active_bytes,
            next_position,
            poisoned: false,
            read_only,
            buf: Vec::new(),
            _lock: lock,
        };
        Ok((journal, report))
    }

    /// Directory of the segment files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Position of the oldest record still on disk (earlier ones were pruned).
    pub fn first_position(&self) -> Position {
        self.segments[0].first
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Whether an earlier write or sync failure poisoned this journal.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Deletes whole segments whose records all have positions `< position` (after a snapshot
    /// covering them was saved). The segment being appended to is never deleted, so positions
    /// stay stable. Returns how many segments were deleted.
    pub fn remove_segments_before(&mut self, position: Position) -> Result<usize, JournalError> {
        let mut removed = 0;
        // Oldest first, so a crash midway still leaves a contiguous run of segments.
        while self.segments.len() > 1 && self.segments[1].first <= position {
            let path = &self.segments[0].path;
            fs::remove_file(path).map_err(|source| io_error("remove segment", path, source))?;
            self.segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Path of the segment appended to (the last one; `segments` is never empty).
    fn active_path(&self) -> &Path {
        &self.segments[self.segments.len() - 1].path
    }

    fn poison<T>(&mut self, err: JournalError) -> Result<T, JournalError> {
        self.poisoned = true;
        Err(err)
    }

    /// Starts a new segment for the record at `next_position`.
    fn rotate(&mut self) -> Result<(), JournalError> {
        let path = segment_path(&self.dir, self.next_position);
        let file = match private_file().append(true).create_new(true).open(&path) {
            Ok(file) => file,
            // Nothing was created (or an empty file that open accepts): nothing to undo.
            Err(source) if is_storage_full(&source) => return Err(JournalError::StorageFull { source }),
            Err(source) => return Err(io_error("create segment", &path, source)),
        };
        // From here the file exists; if its directory entry cannot be made durable the
        // directory's state is unknown, so the journal must be reopened (rescanned).
        if self.options.sync {
            if let Err(err) = sync_dir(&self.dir) {
                return self.poison(err);
            }
        }
        self.segments.push(Segment { first: self.next_position, path });
        self.active = file;
        self.active_bytes = 0;
        Ok(())
    }

    fn read_segment(
        &self,
        segment: &Segment,
        end: Position,
        from: Position,
        payload: &mut Vec<u8>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), JournalError> {
        let path = &segment.path;
        let file = File::open(path).map_err(|source| io_error("open segment for reading", path, source))?;
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES_MAX, file);
        let mut offset = 0u64;
        let corrupt = |position: Position, offset: u64, reason: String| JournalError::Corrupt {
            position,
            segment: path.clone(),
            offset,
            reason,
        };
        for position in segment.first..end {
            let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
            read_exact_or_corrupt(&mut reader, &mut header_bytes, path, position, offset)?;
            let header = record::decode_header(&header_bytes).map_err(|err| match err {
                record::DecodeError::UnsupportedVersion { version } => {
                    JournalError::UnsupportedVersion { version, position }
                }
                other => corrupt(position, offset, other.to_string()),
            })?;
            if header.position != position {
                return Err(corrupt(position, offset, format!("record carries position {}", header.position)));
            }
            if position < from {
                // Open verified these records; skipping avoids reading payloads not asked for.
                reader
                    .seek_relative(i64::from(header.len))
                    .map_err(|source| io_error("seek in segment", path, source))?;
            } else {
                payload.clear();
                payload.resize(header.len as usize, 0);
                read_exact_or_corrupt(&mut reader, payload, path, position, offset)?;
                record::verify_record(&header, &header_bytes, payload)
                    .map_err(|err| corrupt(position, offset, err.to_string()))?;
                visit(position, payload)?;
            }
            offset += header.record_bytes() as u64;
        }
        Ok(())
    }
}

impl Journal for FileJournal {
    fn append(&mut self, payload: &[u8]) -> Result<Position, JournalError> {
        if self.read_only {
            return Err(JournalError::ReadOnly);
        }
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
            return Err(JournalError::RecordTooLarge { len: payload.len(), max: RECORD_PAYLOAD_BYTES_MAX });
        }
        let position = self.next_position;
        let next = position.checked_add(1).ok_or_else(|| JournalError::Corrupt {
            position,
            segment: self.active_path().to_owned(),
            offset: self.active_bytes,
            reason: "journal positions exhausted".to_owned(),
        })?;
        let record_bytes = (RECORD_HEADER_BYTES + payload.len()) as u64;
        if self.active_bytes > 0 && self.active_bytes + record_bytes > self.options.segment_bytes_max {
            self.rotate()?;
        }
        record::encode_record(&mut self.buf, position, payload)?;

        // One write per record keeps a crash to at most one torn record at the tail.
        if let Err(source) = self.active.write_all(&self.buf) {
            let path = self.active_path().to_owned();
            if is_storage_full(&source) {
                // The disk (or quota) is full. The write failed before any sync was tried, so
                // no sync ever failed and the page cache holds nothing the kernel may drop:
                // cutting the file back to the last good record and syncing that cut leaves
                // the journal exactly as it was, and appends may be retried once space is
                // back. If the cut itself fails, the file's state is unknown: poison.
                return match truncate_file(&path, self.active_bytes) {
                    Ok(()) => Err(JournalError::StorageFull { source }),
                    Err(err) => self.poison(err),
                };
            }
            // Part of the record may be in the file: appending more would bury it mid-segment.
            return self.poison(io_error("write record", &path, source));
        }
        if self.options.sync {
            if let Err(source) = self.active.sync_data() {
                return self.poison(JournalError::SyncFailed { source });
            }
        }
        self.active_bytes += record_bytes;
        self.next_position = next;
        Ok(position)
    }

    fn next_position(&self) -> Position {
        self.next_position
    }

    /// Writes `bytes` (at least [`SPACE_PROBE_BYTES_MIN`]) to a probe file in the journal
    /// directory and removes it: `Err(StorageFull)` while the disk has no room for them.
    fn check_space(&mut self, bytes: usize) -> Result<(), JournalError> {
        if self.read_only {
            return Err(JournalError::ReadOnly);
        }
        let path = self.dir.join(SPACE_PROBE_NAME);
        let written = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut file| file.write_all(&vec![0u8; bytes.max(SPACE_PROBE_BYTES_MIN)]));
        let removed = fs::remove_file(&path);
        match (written, removed) {
            (Err(source), _) if is_storage_full(&source) => Err(JournalError::StorageFull { source }),
            (Err(source), _) => Err(io_error("write space probe", &path, source)),
            (Ok(()), Err(source)) => Err(io_error("remove space probe", &path, source)),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    fn read_from(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        let first_available = self.first_position();
        if from < first_available {
            return Err(JournalError::Pruned { requested: from, first_available });
        }
        if from >= self.next_position {
            return Ok(());
        }
        // The last segment starting at or before `from`; index 0 qualifies, checked above.
        let start = self.segments.partition_point(|s| s.first <= from) - 1;
        let mut payload = Vec::new();
        for (index, segment) in self.segments.iter().enumerate().skip(start) {
            let end = self.segments.get(index + 1).map_or(self.next_position, |next| next.first);
            // Reading stops at `next_position`: bytes of a failed (poisoned) append are never
            // returned.
            self.read_segment(segment, end, from, &mut payload, visit)?;
        }
        Ok(())
    }
}

/// Segment files in `dir` as `(first position, path)`, oldest first. Other files are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<(Position, PathBuf)>, JournalError> {
    let entries = fs::read_dir(dir).map_err(|source| io_error("list journal directory", dir, source))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| io_error("list journal directory", dir, source))?;
        let name = entry.file_name();
        let Some(first) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        segments.push((first, entry.path()));
    }
    segments.sort_unstable_by_key(|(first, _)| *first);
    Ok(segments)
}

/// Path of the segment whose first record has position `first`.
pub fn segment_path(dir: &Path, first: Position) -> PathBuf {
    dir.join(format!("{first:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_NAME_DIGITS))
}

fn parse_segment_name(name: &str) -> Option<Position> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Verifies one segment. A torn tail is only acceptable in the last segment: anywhere else the
/// records after it were acknowledged.
fn scan_segment_file(segment: &Segment, is_last: bool) -> Result<SegmentScan, JournalError> {
    let path = &segment.path;
    let len = fs::metadata(path).map_err(|source| io_error("stat segment", path, source))?.len();
    if len > SEGMENT_FILE_BYTES_MAX {
        return Err(JournalError::Corrupt {
            position: segment.first,
            segment: path.clone(),
            offset: 0,
            reason: format!("segment file of {len} bytes exceeds the maximum of {SEGMENT_FILE_BYTES_MAX}"),
        });
    }
    let bytes = fs::read(path).map_err(|source| io_error("read segment", path, source))?;
    let scan = record::scan_segment(&bytes, segment.first).map_err(|err| match err.kind {
        ScanErrorKind::UnsupportedVersion(version) => {
            JournalError::UnsupportedVersion { version, position: err.position }
        }
        ScanErrorKind::Corrupt(reason) => {
            JournalError::Corrupt { position: err.position, segment: path.clone(), offset: err.offset, reason }
        }
    })?;
    match &scan.torn_tail {
        Some(torn) if !is_last => Err(JournalError::Corrupt {
            position: segment.first + scan.records,
            segment: path.clone(),
            offset: torn.offset,
            reason: format!("{} (in a segment that is not the last)", torn.reason),
        }),
        _ => Ok(scan),
    }
}

fn read_exact_or_corrupt(
    reader: &mut impl Read,
    buf: &mut [u8],
    path: &Path,
    position: Position,
    offset: u64,
) -> Result<(), JournalError> {
    reader.read_exact(buf).map_err(|source| {
        if source.kind() == ErrorKind::UnexpectedEof {
            JournalError::Corrupt {
                position,
                segment: path.to_owned(),
                offset,
                reason: "segment ends inside a record that open verified".to_owned(),
            }
        } else {
            io_error("read segment", path, source)
        }
    })
}

pub(crate) fn truncate_file(path: &Path, len: u64) -> Result<(), JournalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| io_error("open segment to truncate torn tail", path, source))?;
    file.set_len(len).map_err(|source| io_error("truncate torn tail", path, source))?;
    // The cut must be durable before new records land after it.
    file.sync_all().map_err(|source| io_error("sync truncated segment", path, source))
}

fn create_segment_file(dir: &Path, path: &Path) -> Result<(), JournalError> {
    private_file()
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(|source| io_error("create segment", path, source))?;
    sync_dir(dir)
}

/// Whether an I/O error says the disk or the user's quota is full (`ENOSPC`, `EDQUOT`).
pub fn is_storage_full(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

/// `OpenOptions` that create files with [`PRIVATE_FILE_MODE`].
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(PRIVATE_FILE_MODE);
    options
}

/// Removes the group and other bits of `path` beyond `mode` (a directory or file made by an
/// older version, or by hand). Returns whether it changed anything.
pub fn tighten(path: &Path, mode: u32) -> Result<bool, JournalError> {
    let metadata = fs::metadata(path).map_err(|source| io_error("stat", path, source))?;
    let current = metadata.permissions().mode() & 0o777;
    if current & !mode & 0o077 == 0 {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(current & mode))
        .map_err(|source| io_error("tighten permissions", path, source))?;
    Ok(true)
}

/// Creates `dir` (and missing parents) with [`PRIVATE_DIR_MODE`] if missing, and makes its
/// entry in the parent durable.
pub(crate) fn create_dir_durably(dir: &Path) -> Result<(), JournalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|source| io_error("create directory", dir, source))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Syncs a directory so that created, renamed or removed entries survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| io_error("sync directory", dir, source))
}

pub(crate) fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> JournalError {
    JournalError::Io { op, path: path.to_owned(), source }
}

/// Takes an exclusive advisory lock on `dir/LOCK` for as long as the returned file is open.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join("LOCK");
    let file = private_file()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| JournalError::Io { op: "open lock file", path: path.clone(), source })?;
    // The lock belongs to the open file, and a child process another thread is starting holds
    // a copy of every descriptor between its fork and its exec (which closes them): a reopen
    // in this process (a test, the engine rebuilding after a full disk) may find its own
    // released lock still held for that moment. Try again briefly; another process holding
    // it keeps holding it past `LOCK_RETRY_FOR`.
    let deadline = std::time::Instant::now() + LOCK_RETRY_FOR;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(JournalError::Locked { path }),
            Err(std::fs::TryLockError::Error(source)) => return Err(JournalError::Io { op: "lock", path, source }),
        }
    }
}

/// How long taking the journal's lock is tried again before the journal is reported locked.
const LOCK_RETRY_FOR: std::time::Duration = std::time::Duration::from_millis(200);

/// Takes a shared advisory lock on `dir/LOCK` if the file exists (never creating it): a
/// reader then cannot run beside a writer. `None` when there is no LOCK file.
fn lock_dir_shared(dir: &Path) -> Result<Option<File>, JournalError> {
    let path = dir.join("LOCK");
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(JournalError::Io { op: "open lock file", path, source }),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::Locked { path }),
        Err(std::fs::TryLockError::Error(source)) => Err(JournalError::Io { op: "lock", path, source }),
    }
}
