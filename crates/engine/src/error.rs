//! Operational failures of the engine. Business rejections are not errors: they are replies.

use journal::{JournalError, Position};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("journal record at position {position} cannot be decoded: {source}")]
    Decode { position: Position, source: codec::DecodeError },
    #[error("snapshot cannot be decoded: {0}")]
    Snapshot(codec::DecodeError),
    #[error("replay of the batch at position {position} decided differently than recorded (reply digest {recorded:#x}, replayed {replayed:#x})")]
    Diverged { position: Position, recorded: u64, replayed: u64 },
    /// The journal failed to make a batch durable. The engine stops accepting commands: a
    /// failed sync cannot be retried safely, and nothing that was not durable is acknowledged.
    #[error("the engine stopped after a journal failure: {0}")]
    Stopped(String),
    /// The journal's disk is full: the command was not journaled and not decided (the book is
    /// as before it). The engine refuses commands until the disk has room again, which it
    /// checks every `EngineOptions::storage_full_retry`, and then resumes without a restart.
    #[error("the journal's disk is full; the command was not taken")]
    StorageFull,
    /// The command's encoding (with its origin) is larger than a journal record can hold after
    /// the batch header: no batch could carry it, so it was refused before it was decided, and
    /// retrying it cannot succeed. The engine goes on with the next command.
    #[error("the command takes {bytes} bytes in the journal, more than the {max} a batch holds; it was not taken")]
    CommandTooLarge { bytes: usize, max: usize },
    /// The inbox is full: shed load rather than queue without bound.
    #[error("the engine's inbox is full")]
    Overloaded,
    /// A replica engine's command was decided by the leader, but the replica did not apply
    /// its batch in time (`crate::replicated`): the reply is held back rather than shown
    /// against stale state. A retry with the same idempotency key gets the reply.
    #[error("the command was decided at position {needed}, but the replica is still at {at}")]
    ReplicaBehind { needed: Position, at: Position },
    /// A replica engine found no leader to take its command: it reached no book.
    #[error("no book leader answered; the command was not applied: {0}")]
    NoLeader(String),
    /// A replica engine's command was refused by the leader before it was decided, and
    /// retrying it cannot succeed: larger than a journal record holds (the leader's
    /// `CommandTooLarge`), or a request the leader could not decode.
    #[error("the book's leader refused the command before deciding it: {0}")]
    NotTaken(String),
    #[error("the engine has shut down")]
    ShutDown,
    #[error("cannot start the sequencer thread: {0}")]
    Spawn(std::io::Error),
}
