//! Durable, append-only journal of the book engine: the `Journal` trait, its error type and backends.
//!
//! The engine's sequencer encodes each batch of commands as one opaque payload and appends it
//! with one sync (group commit); nothing is acknowledged before [`Journal::append`] returns `Ok`.
//! Recovery loads the newest snapshot from [`snapshot::SnapshotStore`] and replays the journal
//! from the snapshot's position with [`Journal::read_from`].
//!
//! Backends: [`FileJournal`] (segment files, the embedded default), [`MemoryJournal`] (tests)
//! and [`FaultyJournal`] (fault injection for tests and the deterministic simulator); the
//! replicated JetStream backend is the `journal-nats` crate.
//! [`conformance`] holds the checks every backend must pass.

use std::path::PathBuf;

pub mod archive;
pub mod conformance;
pub mod faulty;
pub mod file;
pub mod memory;
pub mod record;
pub mod repair;
pub mod snapshot;
pub mod testing;

pub use archive::History;
pub use faulty::{FaultKind, FaultPlan, FaultyJournal};
pub use file::{FileJournal, FileJournalOptions, OpenReport};
pub use memory::MemoryJournal;
pub use record::RECORD_PAYLOAD_BYTES_MAX;
pub use snapshot::SnapshotStore;

/// Position of a record: 0 for the first record ever appended, then +1 per record.
///
/// Positions are never reused or renumbered, not even after old segments are pruned, so a
/// snapshot can name the first record it does not include.
pub type Position = u64;

/// Everything that can go wrong in the journal and the snapshot store.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O operation other than the durability sync failed.
    #[error("journal i/o error: {op} on {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A bad record that is not a torn tail. It is reported rather than dropped, because the
    /// records after it were acknowledged to clients.
    #[error(
        "corrupt journal record at position {position} in {} at byte offset {offset}: {reason}",
        segment.display()
    )]
    Corrupt { position: Position, segment: PathBuf, offset: u64, reason: String },

    /// Syncing a record failed. The journal is poisoned afterwards: a failed fsync cannot be
    /// retried safely (the kernel may have dropped the dirty pages and report success on the
    /// next try, see PostgreSQL's "fsyncgate"), so only a reopen, which rescans what really is
    /// on disk, may continue. (A failed write poisons too, as [`JournalError::Io`], except a
    /// full disk: [`JournalError::StorageFull`].)
    #[error("journal sync failed, the journal is poisoned until reopened: {source}")]
    SyncFailed {
        #[source]
        source: std::io::Error,
    },

    /// The disk or the quota was full when a record was written (`ENOSPC`/`EDQUOT` from the
    /// write or the allocation of a new segment, before any sync). The journal cut the partial
    /// record off again and synced the cut, so it is exactly as before the append and **not**
    /// poisoned: appends may be retried once there is room ([`Journal::check_space`]). A full
    /// disk reported by the sync itself is a [`JournalError::SyncFailed`] and poisons.
    #[error("the journal's disk is full; nothing was written: {source}")]
    StorageFull {
        #[source]
        source: std::io::Error,
    },

    /// The journal was opened read-only ([`FileJournal::open_read_only`]).
    #[error("the journal is open read-only")]
    ReadOnly,

    /// An earlier write or sync failed; see [`JournalError::SyncFailed`].
    #[error("journal is poisoned by an earlier write or sync failure; reopen it to continue")]
    Poisoned,
    /// Another process has the journal open.
    #[error("the journal in {} is in use by another process", path.display())]
    Locked { path: PathBuf },

    /// The payload is larger than [`RECORD_PAYLOAD_BYTES_MAX`]; nothing was written.
    #[error("journal record payload of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },

    /// A record written by a newer (or unknown) format version.
    #[error("journal record at position {position} has unsupported format version {version}")]
    UnsupportedVersion { version: u8, position: Position },

    /// The requested records were removed by [`FileJournal::remove_segments_before`].
    #[error("journal records before position {first_available} were pruned; requested {requested}")]
    Pruned { requested: Position, first_available: Position },

    /// A snapshot larger than [`snapshot::SNAPSHOT_PAYLOAD_BYTES_MAX`]; nothing was written.
    #[error("snapshot of {len} bytes exceeds the maximum of {max} bytes")]
    SnapshotTooLarge { len: u64, max: u64 },

    /// Options that the backend cannot work with.
    #[error("invalid journal options: {reason}")]
    InvalidOptions { reason: String },

    /// A replicated journal (`journal-nats`) refused the append at `position` because another
    /// writer has appended since this one last did: this writer was deposed. Nothing was
    /// written, and this journal refuses every later append too; only a reopen, which reads
    /// the new end, may append again (and only as the new writer).
    #[error("journal append at position {position} fenced, another writer has appended: {reason}")]
    Fenced { position: Position, reason: String },

    /// A remote journal's servers failed or did not answer in time. After a failed append it
    /// is unknown whether the record was stored, so the journal is poisoned like after a
    /// failed sync ([`JournalError::SyncFailed`]): only a reopen, which reads what really is
    /// stored, may continue.
    #[error("journal backend failed during {op}: {reason}")]
    Remote { op: &'static str, reason: String },
}

/// An append-only log of opaque payloads with consecutive positions.
pub trait Journal: Send {
    /// Appends one record durably (written and synced) and returns its position.
    fn append(&mut self, payload: &[u8]) -> Result<Position, JournalError>;

    /// Position the next append will get (= number of records ever appended).
    fn next_position(&self) -> Position;

    /// The largest payload [`Journal::append`] accepts; larger ones fail with
    /// [`JournalError::RecordTooLarge`]. [`RECORD_PAYLOAD_BYTES_MAX`] unless the backend
    /// stores less (the JetStream backend: 31 MiB, JetStream's file store limit).
    fn payload_bytes_max(&self) -> usize {
        RECORD_PAYLOAD_BYTES_MAX
    }

    /// After a [`JournalError::StorageFull`]: whether a record of `bytes` would fit now,
    /// without appending it. Backends without a disk have room.
    fn check_space(&mut self, bytes: usize) -> Result<(), JournalError> {
        let _ = bytes;
        Ok(())
    }

    /// Calls `visit(position, payload)` for every record with position >= from, in order.
    ///
    /// Stops at the first error, including one returned by `visit`, and returns it.
    /// `from` at or beyond [`Journal::next_position`] visits nothing.
    // Spelled out rather than aliased: implementers in other crates copy this signature, and
    // an alias with its own lifetime would make the written-out form mismatch.
    #[allow(clippy::type_complexity)]
    fn read_from(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError>;
}

// Lets callers pick a backend at run time (`Box<dyn Journal>`) and still wrap it, e.g. in
// `FaultyJournal`.
impl<J: Journal + ?Sized> Journal for Box<J> {
    fn append(&mut self, payload: &[u8]) -> Result<Position, JournalError> {
        (**self).append(payload)
    }

    fn next_position(&self) -> Position {
        (**self).next_position()
    }

    fn payload_bytes_max(&self) -> usize {
        (**self).payload_bytes_max()
    }

    fn check_space(&mut self, bytes: usize) -> Result<(), JournalError> {
        (**self).check_space(bytes)
    }

    fn read_from(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        (**self).read_from(from, visit)
    }
}
