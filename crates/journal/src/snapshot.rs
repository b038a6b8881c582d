//! Snapshot store: atomically written, checksummed snapshots of engine state, each tagged with
//! the journal position of the first record it does not include.
//!
//! File `snapshot-<position:020>.bin` layout (little endian), version 1:
//! `magic: u32` ([`SNAPSHOT_MAGIC`]), `version: u8`, `reserved: [u8; 3]` (0), `position: u64`,
//! `len: u64`, `crc32c: u32` over the 24 bytes before it and the payload, then the payload.

use std::fs;
use std::io::{ErrorKind, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::file::{create_dir_durably, io_error, private_file, sync_dir, tighten, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
use crate::{JournalError, Position};

/// Snapshots kept on disk by default (`serve --snapshots-keep`); older ones are deleted after
/// each save. More than one so that a corrupt newest snapshot still leaves something to recover
/// from. Deleting is safe: a snapshot is derived from the journal, which retention archives and
/// never deletes, so any older snapshot can be rebuilt by replaying it.
pub const SNAPSHOTS_KEPT_MAX: usize = 3;

/// Largest `--snapshots-keep`.
pub const SNAPSHOTS_KEEP_LIMIT: usize = 1_000;

/// Largest snapshot payload. Loading reads a snapshot whole, so this bounds its memory.
pub const SNAPSHOT_PAYLOAD_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// "SNAP" in file order.
pub const SNAPSHOT_MAGIC: u32 = u32::from_le_bytes(*b"SNAP");

/// The only snapshot format version this build reads and writes.
pub const SNAPSHOT_VERSION: u8 = 1;

/// Size of the fixed snapshot header.
pub const SNAPSHOT_HEADER_BYTES: usize = 28;

/// Header bytes covered by the CRC (everything before the CRC field).
const CRC_COVERED_HEADER_BYTES: usize = 24;

/// A snapshot is written and synced this many bytes at a time. On ext4 (data=ordered) the
/// journal's own fdatasync also flushes every other file's dirty data in the same transaction:
/// a snapshot written whole and synced once would hold up the journal's sync of a batch for as
/// long as it takes to write the snapshot out (measured: 430 ms at 1.2M bets). Syncing in
/// chunks keeps what the journal can wait for to one chunk.
pub const SNAPSHOT_WRITE_CHUNK_BYTES: usize = 4 * 1024 * 1024;

const NAME_PREFIX: &str = "snapshot-";
const NAME_SUFFIX: &str = ".bin";
const TMP_SUFFIX: &str = ".tmp";
const NAME_DIGITS: usize = 20;

/// Why bytes are not a valid snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotDecodeError {
    #[error("snapshot of {len} bytes is shorter than its header")]
    Truncated { len: usize },
    #[error("bad snapshot magic {found:#010x}")]
    BadMagic { found: u32 },
    #[error("unsupported snapshot version {version}")]
    UnsupportedVersion { version: u8 },
    #[error("snapshot header says {declared} payload bytes, file has {actual}")]
    LengthMismatch { declared: u64, actual: u64 },
    #[error("snapshot crc32c mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("snapshot has nonzero reserved bytes")]
    Reserved,
    #[error("snapshot header says position {header} but its file name says {name}")]
    PositionMismatch { header: Position, name: Position },
}

/// Encodes a snapshot file's bytes.
pub fn encode_snapshot(position: Position, payload: &[u8]) -> Result<Vec<u8>, JournalError> {
    let len = payload.len() as u64;
    if len > SNAPSHOT_PAYLOAD_BYTES_MAX {
        return Err(JournalError::SnapshotTooLarge { len, max: SNAPSHOT_PAYLOAD_BYTES_MAX });
    }
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + payload.len());
    out.extend_from_slice(&header(position, len, crc32c::crc32c(payload)));
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes and verifies a snapshot file's bytes: returns its position and payload.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(Position, &[u8]), SnapshotDecodeError> {
    let Some((header, payload)) = bytes.split_first_chunk::<SNAPSHOT_HEADER_BYTES>() else {
        return Err(SnapshotDecodeError::Truncated { len: bytes.len() });
    };
    let u32_at = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let u64_at = |i: usize| (u64::from(u32_at(i + 4)) << 32) | u64::from(u32_at(i));
    let magic = u32_at(0);
    if magic != SNAPSHOT_MAGIC {
        return Err(SnapshotDecodeError::BadMagic { found: magic });
    }
    if header[4] != SNAPSHOT_VERSION {
        return Err(SnapshotDecodeError::UnsupportedVersion { version: header[4] });
    }
    let position = u64_at(8);
    let declared = u64_at(16);
    if declared != payload.len() as u64 {
        return Err(SnapshotDecodeError::LengthMismatch { declared, actual: payload.len() as u64 });
    }
    let stored = u32_at(CRC_COVERED_HEADER_BYTES);
    let computed = crc32c::crc32c_append(crc32c::crc32c(&header[..CRC_COVERED_HEADER_BYTES]), payload);
    if stored != computed {
        return Err(SnapshotDecodeError::CrcMismatch { stored, computed });
    }
    if header[5..8] != [0; 3] {
        return Err(SnapshotDecodeError::Reserved);
    }
    Ok((position, payload))
}

/// A snapshot file `load` passed over because it failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSnapshot {
    pub position: Position,
    pub path: PathBuf,
    pub reason: String,
}

/// Result of [`SnapshotStore::load_latest_detailed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotLoad {
    /// The newest valid snapshot: (position of the first record not included, payload).
    pub latest: Option<(Position, Vec<u8>)>,
    /// Newer snapshots that were corrupt, newest first.
    pub skipped: Vec<SkippedSnapshot>,
}

/// A directory of snapshots. One writer per directory.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    corrupt_skipped: AtomicU64,
    /// Snapshots kept after a save (at least 1).
    keep: usize,
}

impl SnapshotStore {
    /// Opens (creating if needed) the store in `dir` and deletes temp files of interrupted saves.
    pub fn open(dir: &Path) -> Result<SnapshotStore, JournalError> {
        create_dir_durably(dir)?;
        tighten(dir, PRIVATE_DIR_MODE)?;
        let entries = fs::read_dir(dir).map_err(|source| io_error("list snapshot directory", dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| io_error("list snapshot directory", dir, source))?;
            let name = entry.file_name();
            let is_tmp = name.to_str().is_some_and(|n| n.starts_with(NAME_PREFIX) && n.ends_with(TMP_SUFFIX));
            if is_tmp {
                let path = entry.path();
                fs::remove_file(&path)
                    .map_err(|source| io_error("remove leftover snapshot temp file", &path, source))?;
            } else if name.to_str().and_then(parse_name).is_some() {
                // Snapshots hold password hashes and dates of birth: owner-only.
                tighten(&entry.path(), PRIVATE_FILE_MODE)?;
            }
        }
        Ok(SnapshotStore { dir: dir.to_owned(), corrupt_skipped: AtomicU64::new(0), keep: SNAPSHOTS_KEPT_MAX })
    }

    /// Opens an existing store without writing anything (no directory created, no leftover
    /// temp file removed): for `sportsbook verify`. A missing directory is an empty store.
    pub fn open_read_only(dir: &Path) -> SnapshotStore {
        SnapshotStore { dir: dir.to_owned(), corrupt_skipped: AtomicU64::new(0), keep: SNAPSHOTS_KEPT_MAX }
    }

    /// Keeps the newest `keep` snapshots (clamped to `1..=SNAPSHOTS_KEEP_LIMIT`) after each save
    /// instead of [`SNAPSHOTS_KEPT_MAX`].
    pub fn with_keep(mut self, keep: usize) -> SnapshotStore {
        self.keep = keep.clamp(1, SNAPSHOTS_KEEP_LIMIT);
        self
    }

    /// How many snapshots a save keeps.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// The oldest of the snapshots a save keeps (the newest [`SnapshotStore::keep`] files, valid
    /// or not): recovery may fall back as far as it, so the journal from its position on must
    /// stay live. `None` without snapshots.
    pub fn oldest_kept_position(&self) -> Result<Option<Position>, JournalError> {
        let snapshots = self.list()?;
        Ok(snapshots.get(snapshots.len().saturating_sub(self.keep)).map(|(position, _)| *position))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The highest position any snapshot file is named for, valid or not: the journal is
    /// known to have reached it, since a snapshot is only saved once every record before its
    /// position is durable. `0` without snapshots.
    pub fn highest_position(&self) -> Result<Position, JournalError> {
        Ok(self.list()?.last().map_or(0, |(position, _)| *position))
    }

    /// Path of the snapshot for `position`.
    pub fn path_for(&self, position: Position) -> PathBuf {
        self.dir.join(format!("{NAME_PREFIX}{position:0NAME_DIGITS$}{NAME_SUFFIX}"))
    }

    /// Corrupt snapshots skipped by [`SnapshotStore::load_latest`] since open.
    pub fn corrupt_skipped(&self) -> u64 {
        self.corrupt_skipped.load(Ordering::Relaxed)
    }

    /// Durably saves a snapshot taken just before journal record `position`, then deletes all
    /// but the newest [`SnapshotStore::keep`]. A crash leaves either the old set or the new
    /// snapshot complete, never a partial one under the final name.
    pub fn save(&self, position: Position, bytes: &[u8]) -> Result<(), JournalError> {
        self.save_with(position, &mut |out| out.write_all(bytes))
    }

    /// [`SnapshotStore::save`] of the payload that `write` writes, in as many pieces as it likes:
    /// the payload is never held whole, here or by the caller (a snapshot of a large book is
    /// hundreds of megabytes). Its length and CRC are counted as it goes and the header is
    /// written last, over the space kept for it. A payload over [`SNAPSHOT_PAYLOAD_BYTES_MAX`]
    /// is refused as soon as it passes it; an error from `write` is returned as an I/O error.
    /// Either way nothing is left under the final name.
    pub fn save_with(
        &self,
        position: Position,
        write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), JournalError> {
        let path = self.path_for(position);
        let mut tmp_name = path.clone().into_os_string();
        tmp_name.push(TMP_SUFFIX);
        let tmp = PathBuf::from(tmp_name);
        if let Err(err) = write_synced(&tmp, position, write) {
            // Best effort: a leftover is also removed by the next open.
            let _ = fs::remove_file(&tmp);
            return Err(err);
        }
        fs::rename(&tmp, &path).map_err(|source| io_error("rename snapshot", &path, source))?;
        sync_dir(&self.dir)?;
        self.prune()
    }

    /// The newest valid snapshot; corrupt newer ones are skipped and counted in
    /// [`SnapshotStore::corrupt_skipped`]. A corrupt snapshot is never returned.
    pub fn load_latest(&self) -> Result<Option<(Position, Vec<u8>)>, JournalError> {
        Ok(self.load_latest_detailed()?.latest)
    }

    /// Like [`SnapshotStore::load_latest`], also saying which snapshots were skipped and why.
    pub fn load_latest_detailed(&self) -> Result<SnapshotLoad, JournalError> {
        self.load_at_or_before(Position::MAX)
    }

    /// Like [`SnapshotStore::load_latest_detailed`], among the snapshots at or before `at`
    /// only (recovering a book to a past position; `sportsbook verify` against read models).
    pub fn load_at_or_before(&self, at: Position) -> Result<SnapshotLoad, JournalError> {
        let mut load = SnapshotLoad::default();
        let snapshots = self.list()?.into_iter().rev().filter(|(position, _)| *position <= at);
        for (name_position, path) in snapshots {
            match self.read_verified(name_position, &path)? {
                Ok(payload) => {
                    load.latest = Some((name_position, payload));
                    break;
                }
                Err(reason) => {
                    self.corrupt_skipped.fetch_add(1, Ordering::Relaxed);
                    load.skipped.push(SkippedSnapshot { position: name_position, path, reason });
                }
            }
        }
        Ok(load)
    }

    /// Snapshot files as `(position, path)`, oldest first.
    pub fn list(&self) -> Result<Vec<(Position, PathBuf)>, JournalError> {
        let dir = &self.dir;
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            // Only a read-only store can lack its directory.
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io_error("list snapshot directory", dir, source)),
        };
        let mut snapshots = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| io_error("list snapshot directory", dir, source))?;
            if let Some(position) = entry.file_name().to_str().and_then(parse_name) {
                snapshots.push((position, entry.path()));
            }
        }
        snapshots.sort_unstable_by_key(|(position, _)| *position);
        Ok(snapshots)
    }

    /// Reads one snapshot: the outer error is I/O, the inner one why the file is not valid.
    fn read_verified(&self, name_position: Position, path: &Path) -> Result<Result<Vec<u8>, String>, JournalError> {
        let len = fs::metadata(path).map_err(|source| io_error("stat snapshot", path, source))?.len();
        let len_max = SNAPSHOT_HEADER_BYTES as u64 + SNAPSHOT_PAYLOAD_BYTES_MAX;
        if len > len_max {
            return Ok(Err(format!("snapshot file of {len} bytes exceeds the maximum of {len_max}")));
        }
        let mut bytes = fs::read(path).map_err(|source| io_error("read snapshot", path, source))?;
        let payload_len = match decode_snapshot(&bytes) {
            Ok((header, _)) if header != name_position => {
                let err = SnapshotDecodeError::PositionMismatch { header, name: name_position };
                return Ok(Err(err.to_string()));
            }
            Ok((_, payload)) => payload.len(),
            Err(err) => return Ok(Err(err.to_string())),
        };
        // Reuse the read buffer instead of copying the payload out of it.
        bytes.drain(..bytes.len() - payload_len);
        Ok(Ok(bytes))
    }

    fn prune(&self) -> Result<(), JournalError> {
        let snapshots = self.list()?;
        let excess = snapshots.len().saturating_sub(self.keep);
        for (_, path) in &snapshots[..excess] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(source) => return Err(io_error("remove old snapshot", path, source)),
            }
        }
        if excess > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// The header of a snapshot whose payload has `len` bytes and CRC `payload_crc`.
fn header(position: Position, len: u64, payload_crc: u32) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    header[..4].copy_from_slice(&SNAPSHOT_MAGIC.to_le_bytes());
    header[4] = SNAPSHOT_VERSION;
    header[8..16].copy_from_slice(&position.to_le_bytes());
    header[16..24].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_combine(crc32c::crc32c(&header[..CRC_COVERED_HEADER_BYTES]), payload_crc, len as usize);
    header[CRC_COVERED_HEADER_BYTES..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Writes a snapshot file at `path`: room for the header, the payload as `write` writes it
/// (synced every [`SNAPSHOT_WRITE_CHUNK_BYTES`]), then the header, and syncs it all.
fn write_synced(
    path: &Path,
    position: Position,
    write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), JournalError> {
    let file = private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|source| io_error("create snapshot temp file", path, source))?;
    let mut payload = PayloadFile { file, len: 0, crc: 0, unsynced: 0, too_large: false };
    payload
        .file
        .write_all(&[0; SNAPSHOT_HEADER_BYTES])
        .map_err(|source| io_error("write snapshot temp file", path, source))?;
    let written = write(&mut payload);
    let PayloadFile { mut file, len, crc, too_large, .. } = payload;
    if too_large {
        return Err(JournalError::SnapshotTooLarge { len, max: SNAPSHOT_PAYLOAD_BYTES_MAX });
    }
    written.map_err(|source| io_error("write snapshot temp file", path, source))?;
    file.seek(SeekFrom::Start(0)).map_err(|source| io_error("write snapshot temp file", path, source))?;
    file.write_all(&header(position, len, crc)).map_err(|source| io_error("write snapshot temp file", path, source))?;
    file.sync_all().map_err(|source| io_error("sync snapshot temp file", path, source))
}

/// A snapshot's payload on its way to the file: counted, checksummed and synced in chunks.
struct PayloadFile {
    file: fs::File,
    len: u64,
    crc: u32,
    /// Bytes written since the last sync.
    unsynced: usize,
    /// The payload passed `SNAPSHOT_PAYLOAD_BYTES_MAX` (and the write was refused).
    too_large: bool,
}

impl Write for PayloadFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.len + buf.len() as u64 > SNAPSHOT_PAYLOAD_BYTES_MAX {
            self.too_large = true;
            self.len += buf.len() as u64;
            return Err(std::io::Error::other("the snapshot is larger than its maximum"));
        }
        let written = self.file.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..written]);
        self.len += written as u64;
        self.unsynced += written;
        if self.unsynced >= SNAPSHOT_WRITE_CHUNK_BYTES {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn parse_name(name: &str) -> Option<Position> {
    let digits = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
