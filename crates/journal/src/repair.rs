//! The operator's way forward after corruption: cut the journal at a position, keeping a copy
//! of everything cut. Never run automatically: open refuses a corrupt journal and names the
//! position, and an operator decides (after a backup) to run `sportsbook repair`.
//!
//! Positions are never reused below a snapshot: when a snapshot covers positions beyond the
//! cut, the records left are all covered by it too, so they move to the copy as well and the
//! journal continues with an empty segment at the snapshot's position. Recovery then loads
//! that snapshot and replays what is appended after it; nothing the snapshot holds is lost.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::file::{
    create_dir_durably, io_error, list_segments, lock_dir, private_file, segment_path, sync_dir, truncate_file,
};
use crate::record::decode_record;
use crate::snapshot::SnapshotStore;
use crate::{JournalError, Position};

/// What [`truncate_at`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// The first position cut off.
    pub cut_at: Position,
    /// Bytes moved out of the journal into the copy (the cut records and any segments after).
    pub bytes_cut: u64,
    /// Where the cut bytes (and any segments a snapshot made redundant) were copied.
    pub backup_dir: PathBuf,
    /// The highest position a snapshot is named for (0 without snapshots).
    pub snapshot_position: Position,
    /// Position the next append gets: `cut_at`, or `snapshot_position` when a snapshot covers
    /// the cut records.
    pub next_position: Position,
}

impl RepairReport {
    /// Whether a snapshot holds the effect of every cut record (nothing acknowledged is lost).
    pub fn covered_by_snapshot(&self) -> bool {
        self.snapshot_position > self.cut_at
    }
}

/// Cuts the journal in `journal_dir` so that its next record gets position `cut_at` (or the
/// highest snapshot position in `snapshots_dir` when that is beyond it), after copying every
/// byte it removes into `backup_dir` (created; must not exist yet) and syncing the copy. Every
/// record before `cut_at` must be intact. Takes the journal's lock: the server must be stopped.
pub fn truncate_at(
    journal_dir: &Path,
    snapshots_dir: &Path,
    cut_at: Position,
    backup_dir: &Path,
) -> Result<RepairReport, JournalError> {
    if !journal_dir.is_dir() {
        return Err(io_error("open journal directory", journal_dir, std::io::ErrorKind::NotFound.into()));
    }
    let _lock = lock_dir(journal_dir)?;
    let segments = list_segments(journal_dir)?;
    let invalid = |reason: String| JournalError::InvalidOptions { reason };
    let index = segments
        .iter()
        .rposition(|(first, _)| *first <= cut_at)
        .ok_or_else(|| invalid(format!("position {cut_at} is before the first record on disk")))?;
    let (first, path) = &segments[index];
    let bytes = fs::read(path).map_err(|source| io_error("read segment", path, source))?;
    let mut offset = 0usize;
    let mut position = *first;
    while position < cut_at {
        let rest = bytes.get(offset..).unwrap_or_default();
        if rest.is_empty() {
            return Err(invalid(format!(
                "the journal ends at position {position}, before {cut_at}: there is nothing to cut there"
            )));
        }
        match decode_record(rest) {
            Ok((header, _, consumed)) if header.position == position => offset += consumed,
            Ok((header, _, _)) => {
                return Err(invalid(format!(
                    "the record at position {position} carries position {}: cut at {position} instead",
                    header.position
                )))
            }
            Err(err) => {
                return Err(invalid(format!(
                    "the record at position {position} is bad too ({err}): cut at {position} instead"
                )))
            }
        }
        position += 1;
    }

    let snapshot_position = SnapshotStore::open_read_only(snapshots_dir).highest_position()?;
    if backup_dir.exists() {
        return Err(invalid(format!("the backup directory {} already exists", backup_dir.display())));
    }
    create_dir_durably(backup_dir)?;
    let name = |path: &Path| path.file_name().map(PathBuf::from).unwrap_or_default();
    let mut bytes_cut = 0u64;
    // The copy first, synced, then the cut: a crash in between leaves the journal whole.
    let tail = &bytes[offset..];
    if !tail.is_empty() {
        let mut copy_name = name(path).into_os_string();
        copy_name.push(format!(".from-byte-{offset}"));
        write_synced(&backup_dir.join(copy_name), tail)?;
        bytes_cut += tail.len() as u64;
    }
    for (_, later) in &segments[index + 1..] {
        let later_bytes = fs::read(later).map_err(|source| io_error("read segment", later, source))?;
        write_synced(&backup_dir.join(name(later)), &later_bytes)?;
        bytes_cut += later_bytes.len() as u64;
    }
    sync_dir(backup_dir)?;

    truncate_file(path, offset as u64)?;
    for (_, later) in &segments[index + 1..] {
        fs::remove_file(later).map_err(|source| io_error("remove segment", later, source))?;
    }
    let mut next_position = cut_at;
    if snapshot_position > cut_at {
        // Every record left is below the snapshot: it holds them. Appending at `cut_at` would
        // put new records below the snapshot, where recovery never reads; so the journal
        // continues at the snapshot's position, and the old segments join the copy.
        for (_, kept) in &segments[..=index] {
            let moved = backup_dir.join(name(kept));
            let moved = if moved.exists() { backup_dir.join(format!("{}.kept", name(kept).display())) } else { moved };
            fs::rename(kept, &moved).map_err(|source| io_error("move segment to the backup", kept, source))?;
        }
        sync_dir(backup_dir)?;
        let path = segment_path(journal_dir, snapshot_position);
        private_file()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| io_error("create segment", &path, source))?;
        next_position = snapshot_position;
    }
    sync_dir(journal_dir)?;
    Ok(RepairReport { cut_at, bytes_cut, backup_dir: backup_dir.to_owned(), snapshot_position, next_position })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let mut file: File = private_file()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| io_error("create backup file", path, source))?;
    file.write_all(bytes).map_err(|source| io_error("write backup file", path, source))?;
    file.sync_all().map_err(|source| io_error("sync backup file", path, source))
}
