//! Recovery: the latest valid snapshot, then every journal batch after it, decided again at the
//! time the sequencer stamped. Each batch's replies must hash to the digest recorded with it;
//! a difference means the code or the data changed under us, and recovery stops rather than
//! serve a book that is not the one the journal describes.
//!
//! Recovery also rebuilds the journal's hash chain (`chain_next`): the snapshot stores the head
//! at its position, and every record replayed after it extends the head.

use book::{Book, BookEvent, Config};
use codec::{decode_batch, decode_snapshot, reply_digest};
use journal::snapshot::SkippedSnapshot;
use journal::{Journal, JournalError, Position, SnapshotStore};
use sha2::{Digest, Sha256};

use crate::error::EngineError;

/// The head of the journal's hash chain: SHA-256 over every record so far.
pub type ChainHead = [u8; 32];

/// The head of an empty journal.
pub const CHAIN_HEAD_GENESIS: ChainHead = [0; 32];

/// Extends the hash chain by the record appended at `position`:
/// `SHA-256(head || position as u64 little-endian || record)`.
///
/// The chain makes the journal tamper-evident: changing, dropping or reordering any record
/// changes every head after it. The position is hashed so that records cannot be moved; the
/// record is the journal payload (the encoded batch), not the journal's own framing, so the
/// chain does not depend on the backend.
pub fn chain_next(head: &ChainHead, position: Position, record: &[u8]) -> ChainHead {
    let mut hasher = Sha256::new();
    hasher.update(head);
    hasher.update(position.to_le_bytes());
    hasher.update(record);
    hasher.finalize().into()
}

#[derive(Debug)]
pub struct Recovered {
    pub book: Book,
    pub report: RecoveryReport,
    /// Snapshots newer than the one used that failed verification, newest first: the caller
    /// logs each as a warning (recovery fell back to an older snapshot or to the journal).
    pub skipped_snapshots: Vec<SkippedSnapshot>,
}

/// What recovery found, for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Journal position after the last batch.
    pub position: Position,
    /// Sequence number the next command gets.
    pub next_sequence: u64,
    pub snapshot_position: Option<Position>,
    pub replayed_batches: u64,
    pub replayed_commands: u64,
    /// Bytes of a torn tail the journal cut off when it was opened.
    pub truncated_bytes: u64,
    /// Head of the journal's hash chain at `position`; the sequencer continues it.
    /// `CHAIN_HEAD_GENESIS` for an empty journal.
    pub chain_head: ChainHead,
    /// Corrupt snapshots passed over (see `Recovered::skipped_snapshots`).
    pub skipped_snapshots: u64,
}

/// Bytes of the snapshot payload's header: `next_sequence` then the chain head.
const SNAPSHOT_PAYLOAD_HEADER_BYTES: usize = 8 + 32;

/// A snapshot payload, in this layout (there is no older one in use):
///
/// | bytes | field |
/// | --- | --- |
/// | 0..8 | `next_sequence`, u64 little-endian |
/// | 8..40 | the journal's chain head at the snapshot's position |
/// | 40.. | the codec's snapshot of the book (`codec::encode_snapshot`, itself versioned) |
///
/// Written in pieces straight into the store's file (`codec::write_snapshot`,
/// `SnapshotStore::save_with`): neither a copy of the book nor its whole encoding is ever held,
/// so a snapshot costs a buffer of `codec::SNAPSHOT_WRITE_BUFFER_BYTES`, not the book's size
/// three times over.
pub(crate) fn save_snapshot_payload(
    store: &SnapshotStore,
    position: Position,
    next_sequence: u64,
    chain_head: &ChainHead,
    book: &Book,
) -> Result<(), EngineError> {
    store.save_with(position, &mut |out| {
        out.write_all(&next_sequence.to_le_bytes())?;
        out.write_all(chain_head)?;
        codec::write_snapshot(book, out)
    })?;
    Ok(())
}

pub(crate) fn decode_snapshot_payload(bytes: &[u8]) -> Result<(u64, ChainHead, Book), EngineError> {
    let (header, rest) = bytes.split_at_checked(SNAPSHOT_PAYLOAD_HEADER_BYTES).ok_or_else(|| {
        EngineError::Snapshot(codec::DecodeError { offset: 0, reason: "snapshot shorter than its header".to_string() })
    })?;
    let (sequence_bytes, head_bytes) = header.split_at(8);
    let mut sequence = [0u8; 8];
    sequence.copy_from_slice(sequence_bytes);
    let mut chain_head = CHAIN_HEAD_GENESIS;
    chain_head.copy_from_slice(head_bytes);
    let book = decode_snapshot(rest).map_err(|error| {
        EngineError::Snapshot(codec::DecodeError {
            offset: error.offset + SNAPSHOT_PAYLOAD_HEADER_BYTES,
            reason: error.reason,
        })
    })?;
    Ok((u64::from_le_bytes(sequence), chain_head, book))
}

pub fn recover(
    journal: &dyn Journal,
    snapshots: Option<&SnapshotStore>,
    config: Config,
) -> Result<Recovered, EngineError> {
    recover_to(journal, snapshots, config, None)
}

/// [`recover`], stopping at journal position `end` (`None`: the journal's end): the book as it
/// was after the batch before `end`, from the newest valid snapshot at or before it. For
/// comparing the book with read models that stand at `end` (`sportsbook verify`). An `end`
/// beyond the journal's end is an error.
pub fn recover_to(
    journal: &dyn Journal,
    snapshots: Option<&SnapshotStore>,
    config: Config,
    end: Option<Position>,
) -> Result<Recovered, EngineError> {
    let journal_end = journal.next_position();
    if let Some(end) = end.filter(|end| *end > journal_end) {
        return Err(EngineError::Journal(JournalError::Corrupt {
            position: journal_end,
            segment: std::path::PathBuf::new(),
            offset: 0,
            reason: format!("recovery to position {end} asked, but the journal ends at {journal_end}"),
        }));
    }
    let end = end.unwrap_or(journal_end);
    let mut book = Book::new(config);
    let mut next_sequence = 0u64;
    let mut chain_head = CHAIN_HEAD_GENESIS;
    let mut from = 0;
    let mut snapshot_position = None;
    let mut skipped_snapshots = Vec::new();
    if let Some(store) = snapshots {
        let load = store.load_at_or_before(end)?;
        skipped_snapshots = load.skipped;
        // Every snapshot file, valid or not, was saved once the journal had reached its
        // position: a journal ending before it lost records, and appending to it would put new
        // records where recovery from that snapshot never reads.
        let highest = store.highest_position()?;
        if journal.next_position() < highest {
            return Err(EngineError::Journal(JournalError::Corrupt {
                position: journal.next_position(),
                segment: store.dir().to_owned(),
                offset: 0,
                reason: format!(
                    "the journal ends at position {} but a snapshot covers positions up to {highest}: records are missing",
                    journal.next_position()
                ),
            }));
        }
        if let Some((position, bytes)) = load.latest {
            let (sequence, head, restored) = decode_snapshot_payload(&bytes)?;
            book = restored;
            next_sequence = sequence;
            chain_head = head;
            from = position;
            snapshot_position = Some(position);
        }
    }
    let mut replica = Replica::starting_at(book, from, next_sequence, chain_head);
    let mut failure: Option<EngineError> = None;
    let mut reached_end = false;
    let read = journal.read_from(from, &mut |position, payload| {
        if position >= end {
            reached_end = true;
            return Err(JournalError::Poisoned);
        }
        if let Err(error) = replica.apply_record(position, payload) {
            failure = Some(error);
            return Err(JournalError::Poisoned);
        }
        Ok(())
    });
    if let Err(error) = read {
        if let Some(failure) = failure.take() {
            return Err(failure);
        }
        if !reached_end {
            return Err(EngineError::Journal(error));
        }
    }
    let Replica { book, next_sequence, chain_head, replayed_batches, replayed_commands, .. } = replica;
    let report = RecoveryReport {
        position: end,
        next_sequence,
        snapshot_position,
        replayed_batches,
        replayed_commands,
        truncated_bytes: 0,
        chain_head,
        skipped_snapshots: skipped_snapshots.len() as u64,
    };
    Ok(Recovered { book, report, skipped_snapshots })
}

// ---- for followers that read a data directory on their own (the projector) ----------------

/// Decodes a snapshot payload as the engine writes it (the payload inside a snapshot file of
/// `journal::SnapshotStore`): `(next_sequence, chain head, book)` at the snapshot's position.
pub fn decode_snapshot_payload_for_follower(bytes: &[u8]) -> Result<(u64, ChainHead, Book), EngineError> {
    decode_snapshot_payload(bytes)
}

// ---- a book that follows the journal record by record (cluster followers) ------------------

/// A book kept warm by replaying journal records as they come, exactly as recovery replays
/// them (recovery itself runs on one): each record's batch decided again at its stamped time,
/// its reply digest checked, the hash chain extended. A standby book node tails the replicated
/// journal with one, writes snapshots of it, and starts its sequencer from it on taking over
/// ([`Replica::into_recovered`]), without a full recovery.
#[derive(Debug)]
pub struct Replica {
    book: Book,
    /// Journal position after the last record applied.
    position: Position,
    next_sequence: u64,
    chain_head: ChainHead,
    replayed_batches: u64,
    replayed_commands: u64,
    /// The events of the last batch applied, all its commands' (a replica engine's commit
    /// hooks read them).
    events: Vec<BookEvent>,
    /// The last batch applied: its first sequence, stamped time and commands.
    last_batch: LastBatch,
    scratch: Vec<u8>,
}

/// What a replica last applied, for commit hooks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastBatch {
    pub first_sequence: u64,
    pub timestamp: u64,
    pub commands: u64,
}

impl Replica {
    /// A replica of `book` standing at journal `position` (a snapshot's, or 0 for a new
    /// book), where the next command's sequence number is `next_sequence` and the chain head
    /// `chain_head`; nothing replayed yet.
    pub(crate) fn starting_at(book: Book, position: Position, next_sequence: u64, chain_head: ChainHead) -> Replica {
        Replica {
            book,
            position,
            next_sequence,
            chain_head,
            replayed_batches: 0,
            replayed_commands: 0,
            events: Vec::new(),
            last_batch: LastBatch::default(),
            scratch: Vec::new(),
        }
    }

    /// Continues from a recovered book (its report says where it stands).
    pub fn from_recovered(recovered: Recovered) -> Replica {
        let report = recovered.report;
        Replica {
            book: recovered.book,
            position: report.position,
            next_sequence: report.next_sequence,
            chain_head: report.chain_head,
            replayed_batches: report.replayed_batches,
            replayed_commands: report.replayed_commands,
            events: Vec::new(),
            last_batch: LastBatch::default(),
            scratch: Vec::new(),
        }
    }

    /// Applies the record at `position`, which must be the next one. Fails, changing nothing
    /// the caller may use afterwards, when the record is not the next, does not decode, or
    /// decides differently than its reply digest says (the book is then unusable: rebuild it).
    pub fn apply_record(&mut self, position: Position, payload: &[u8]) -> Result<(), EngineError> {
        if position != self.position {
            return Err(EngineError::Journal(JournalError::Corrupt {
                position,
                segment: std::path::PathBuf::new(),
                offset: 0,
                reason: format!("record at position {position} handed to a replica at position {}", self.position),
            }));
        }
        let batch = decode_batch(payload).map_err(|source| EngineError::Decode { position, source })?;
        if batch.first_sequence != self.next_sequence {
            return Err(EngineError::Journal(JournalError::Corrupt {
                position,
                segment: std::path::PathBuf::new(),
                offset: 0,
                reason: format!(
                    "the batch at position {position} starts at sequence {}, the replica is at {}",
                    batch.first_sequence, self.next_sequence
                ),
            }));
        }
        let mut digest = 0u64;
        self.events.clear();
        for command in &batch.commands {
            let reply = self.book.apply(batch.timestamp, command, &mut self.events);
            digest = reply_digest(digest, &reply, &mut self.scratch);
        }
        if digest != batch.reply_digest {
            return Err(EngineError::Diverged { position, recorded: batch.reply_digest, replayed: digest });
        }
        self.chain_head = chain_next(&self.chain_head, position, payload);
        self.next_sequence = batch.first_sequence + batch.commands.len() as u64;
        self.last_batch = LastBatch {
            first_sequence: batch.first_sequence,
            timestamp: batch.timestamp,
            commands: batch.commands.len() as u64,
        };
        self.position += 1;
        self.replayed_batches += 1;
        self.replayed_commands += batch.commands.len() as u64;
        Ok(())
    }

    /// Journal position after the last record applied.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Sequence number the next command gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Head of the journal's hash chain at [`Replica::position`].
    pub fn chain_head(&self) -> ChainHead {
        self.chain_head
    }

    /// [`Replica::chain_head`], borrowed (for a `BookAt`).
    pub(crate) fn chain_head_ref(&self) -> &ChainHead {
        &self.chain_head
    }

    /// Commands applied since the replica was made (recovery's included).
    pub fn replayed_commands(&self) -> u64 {
        self.replayed_commands
    }

    pub fn book(&self) -> &Book {
        &self.book
    }

    /// The events of the last record applied (every command's, in order).
    pub fn last_events(&self) -> &[BookEvent] {
        &self.events
    }

    /// The last record applied: first sequence, time, commands.
    pub fn last_batch(&self) -> LastBatch {
        self.last_batch
    }

    /// Saves a snapshot of the book at its position, in the engine's layout: what the
    /// sequencer would have written there, so recovery reads it like any other.
    pub fn save_snapshot(&self, store: &SnapshotStore) -> Result<Position, EngineError> {
        save_snapshot_payload(store, self.position, self.next_sequence, &self.chain_head, &self.book)?;
        Ok(self.position)
    }

    /// The replica as a recovery's result, for `EngineHandle::start`.
    pub fn into_recovered(self) -> Recovered {
        let report = RecoveryReport {
            position: self.position,
            next_sequence: self.next_sequence,
            snapshot_position: None,
            replayed_batches: self.replayed_batches,
            replayed_commands: self.replayed_commands,
            truncated_bytes: 0,
            chain_head: self.chain_head,
            skipped_snapshots: 0,
        };
        Recovered { book: self.book, report, skipped_snapshots: Vec::new() }
    }
}
