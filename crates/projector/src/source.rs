//! Where the projector's records come from: a small trait over a journal's records
//! ([`RecordSource`]), so that the same [`crate::Projector`] (exactly once, resume,
//! `--rebuild`, `--follow`, `--digest`) runs over the file journal's segments
//! ([`crate::reader::JournalCursor`], `sportsbook projector --data-dir`) and over the replicated
//! journal on NATS JetStream ([`NatsSource`], `sportsbook projector --nats`).
//!
//! A source reads records in order from a cursor, stops when the visitor says so, and says
//! where the journal begins and how far it is ahead of the cursor (the projector's lag). Snapshots
//! are where a source can give them: a data directory's `snapshots/` (the engine's for the file
//! journal; a book node's, when the projector runs beside one, for NATS). The projector begins
//! an empty store at position 0 when the journal still holds it, else at the oldest snapshot
//! the journal continues from; a resume replays its follower book from the newest snapshot at
//! or before the store's checkpoint, else from position 0.

use std::path::{Path, PathBuf};

#[cfg(feature = "nats")]
use journal::JournalError;
use journal::Position;
#[cfg(feature = "nats")]
use journal_nats::{NatsJournalOptions, NatsReader};

#[cfg(feature = "nats")]
use crate::reader::Flow;
use crate::reader::{JournalCursor, Polled, Visitor};
use crate::ProjectorError;

/// The records of one journal, read in order from a cursor. See the module documentation.
pub trait RecordSource: Send {
    /// What the source reads, for messages (`journal DIR`, `NATS stream S`).
    fn describe(&self) -> String;
    /// The first position the journal still holds, `None` when it has no record yet.
    fn first_available(&mut self) -> Result<Option<Position>, ProjectorError>;
    /// Position of the next record the cursor reads.
    fn next_position(&self) -> Position;
    /// Moves the cursor to `next`.
    fn seek(&mut self, next: Position);
    /// Calls `visit` for every record from the cursor on, in order, until the end of what is
    /// stored now or until `visit` says stop.
    fn poll(&mut self, visit: &mut Visitor<'_>) -> Result<Polled, ProjectorError>;
    /// Records stored beyond the cursor. Does not move it.
    fn records_ahead(&mut self) -> Result<u64, ProjectorError>;
    /// A directory whose `snapshots/` holds engine snapshots of this journal (`None`: the
    /// source has none, and a resume replays from position 0).
    fn snapshot_dir(&self) -> Option<&Path>;
}

/// The file journal of a data directory, its archive, and the engine's snapshots there.
#[derive(Debug)]
pub struct FileSource {
    data_dir: PathBuf,
    archive_dir: Option<PathBuf>,
    cursor: JournalCursor,
}

impl FileSource {
    /// The journal of `data_dir` (`DATA_DIR/journal`), with archived segments read from
    /// `archive_dir`.
    pub fn new(data_dir: &Path, archive_dir: Option<&Path>) -> FileSource {
        let cursor = JournalCursor::with_archive(&crate::journal_dir(data_dir), 0, archive_dir);
        FileSource { data_dir: data_dir.to_owned(), archive_dir: archive_dir.map(Path::to_owned), cursor }
    }
}

impl RecordSource for FileSource {
    fn describe(&self) -> String {
        format!("journal {}", crate::journal_dir(&self.data_dir).display())
    }

    fn first_available(&mut self) -> Result<Option<Position>, ProjectorError> {
        Ok(self.cursor.first_available()?)
    }

    fn next_position(&self) -> Position {
        self.cursor.next_position()
    }

    fn seek(&mut self, next: Position) {
        if next != self.cursor.next_position() {
            self.cursor =
                JournalCursor::with_archive(&crate::journal_dir(&self.data_dir), next, self.archive_dir.as_deref());
        }
    }

    fn poll(&mut self, visit: &mut Visitor<'_>) -> Result<Polled, ProjectorError> {
        self.cursor.poll(visit)
    }

    fn records_ahead(&mut self) -> Result<u64, ProjectorError> {
        self.cursor.records_ahead()
    }

    fn snapshot_dir(&self) -> Option<&Path> {
        Some(&self.data_dir)
    }
}

#[cfg(feature = "nats")]
/// Records a poll of [`NatsSource`] reads at most, so that a projector far behind still
/// returns to its caller (to commit, to see a stop) between polls.
pub const NATS_POLL_RECORDS_MAX: u64 = 10_000;

#[cfg(feature = "nats")]
/// The replicated journal on a NATS JetStream stream (the one `sportsbook book` writes), read
/// with an ordered consumer kept between polls ([`NatsReader`]). Each poll asks the stream
/// where it ends and reads up to there, so a poll never waits for records that are not stored.
#[derive(Debug)]
pub struct NatsSource {
    reader: NatsReader,
    stream: String,
    next: Position,
    snapshot_dir: Option<PathBuf>,
}

#[cfg(feature = "nats")]
impl NatsSource {
    /// Connects to the stream of `options` (which must exist: a book node makes it).
    /// `snapshot_dir`: a data directory whose `snapshots/` holds snapshots of this journal (a
    /// book node's on the same machine), to resume from without replaying from position 0.
    pub fn open(options: NatsJournalOptions, snapshot_dir: Option<&Path>) -> Result<NatsSource, ProjectorError> {
        let stream = options.stream.clone();
        let reader = NatsReader::open(options)?;
        Ok(NatsSource { reader, stream, next: 0, snapshot_dir: snapshot_dir.map(Path::to_owned) })
    }
}

#[cfg(feature = "nats")]
impl RecordSource for NatsSource {
    fn describe(&self) -> String {
        format!("NATS stream {}", self.stream)
    }

    fn first_available(&mut self) -> Result<Option<Position>, ProjectorError> {
        let (first, end) = self.reader.bounds()?;
        Ok((end > first || first > 0).then_some(first))
    }

    fn next_position(&self) -> Position {
        self.next
    }

    fn seek(&mut self, next: Position) {
        self.next = next;
    }

    fn poll(&mut self, visit: &mut Visitor<'_>) -> Result<Polled, ProjectorError> {
        let (first, end) = self.reader.bounds()?;
        if self.next < first {
            return Err(JournalError::Pruned { requested: self.next, first_available: first }.into());
        }
        let until = end.min(self.next.saturating_add(NATS_POLL_RECORDS_MAX));
        let mut polled = Polled::default();
        let mut failure = None;
        let read = self.reader.read_range(self.next, until, &mut |position, payload| match visit(position, payload) {
            Ok(flow) => {
                polled.records += 1;
                Ok(flow == Flow::Continue)
            }
            Err(error) => {
                failure = Some(error);
                Err(JournalError::Poisoned)
            }
        });
        match read {
            Ok(reached) => {
                self.next = reached;
                // Stopped by the visitor, or by the poll's bound with more stored.
                polled.stopped = reached < end;
                Ok(polled)
            }
            Err(_) if failure.is_some() => Err(failure.take().expect("set above")),
            Err(error) => Err(error.into()),
        }
    }

    fn records_ahead(&mut self) -> Result<u64, ProjectorError> {
        let (_, end) = self.reader.bounds()?;
        Ok(end.saturating_sub(self.next))
    }

    fn snapshot_dir(&self) -> Option<&Path> {
        self.snapshot_dir.as_deref()
    }
}
