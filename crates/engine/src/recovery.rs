//! Recovery: the latest valid snapshot, then every journal batch after it, decided again at the
//! time the sequencer stamped. Each batch's replies must hash to the digest recorded with it;
//! a difference means the code or the data changed under us, and recovery stops rather than
//! serve a book that is not the one the journal describes.

use book::{Book, Config};
use codec::{decode_batch, decode_snapshot, reply_digest};
use journal::{Journal, JournalError, Position, SnapshotStore};

use crate::error::EngineError;

#[derive(Debug)]
pub struct Recovered {
    pub book: Book,
    pub report: RecoveryReport,
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
}

/// A snapshot payload: the next command sequence, then the codec's snapshot.
pub(crate) fn encode_snapshot_payload(next_sequence: u64, book: &Book) -> Vec<u8> {
    let mut payload = next_sequence.to_le_bytes().to_vec();
    payload.extend_from_slice(&codec::encode_snapshot(book));
    payload
}

fn decode_snapshot_payload(bytes: &[u8]) -> Result<(u64, Book), EngineError> {
    let (sequence, rest) = bytes.split_at_checked(8).ok_or_else(|| {
        EngineError::Snapshot(codec::DecodeError { offset: 0, reason: "snapshot shorter than its header".to_string() })
    })?;
    let mut sequence_bytes = [0u8; 8];
    sequence_bytes.copy_from_slice(sequence);
    let book = decode_snapshot(rest).map_err(EngineError::Snapshot)?;
    Ok((u64::from_le_bytes(sequence_bytes), book))
}

pub fn recover(
    journal: &dyn Journal,
    snapshots: Option<&SnapshotStore>,
    config: Config,
) -> Result<Recovered, EngineError> {
    let mut book = Book::new(config);
    let mut next_sequence = 0u64;
    let mut from = 0;
    let mut snapshot_position = None;
    if let Some(store) = snapshots {
        if let Some((position, bytes)) = store.load_latest()? {
            let (sequence, restored) = decode_snapshot_payload(&bytes)?;
            book = restored;
            next_sequence = sequence;
            from = position;
            snapshot_position = Some(position);
        }
    }
    let mut replayed_batches = 0;
    let mut replayed_commands = 0;
    let mut events = Vec::new();
    let mut scratch = Vec::new();
    let mut failure: Option<EngineError> = None;
    journal
        .read_from(from, &mut |position, payload| {
            let batch = match decode_batch(payload) {
                Ok(batch) => batch,
                Err(source) => {
                    failure = Some(EngineError::Decode { position, source });
                    return Err(JournalError::Poisoned);
                }
            };
            let mut digest = 0u64;
            for command in &batch.commands {
                events.clear();
                let reply = book.apply(batch.timestamp, command, &mut events);
                digest = reply_digest(digest, &reply, &mut scratch);
            }
            if digest != batch.reply_digest {
                failure = Some(EngineError::Diverged { position, recorded: batch.reply_digest, replayed: digest });
                return Err(JournalError::Poisoned);
            }
            next_sequence = batch.first_sequence + batch.commands.len() as u64;
            replayed_batches += 1;
            replayed_commands += batch.commands.len() as u64;
            Ok(())
        })
        .map_err(|error| failure.take().unwrap_or(EngineError::Journal(error)))?;
    let report = RecoveryReport {
        position: journal.next_position(),
        next_sequence,
        snapshot_position,
        replayed_batches,
        replayed_commands,
        truncated_bytes: 0,
    };
    Ok(Recovered { book, report })
}
