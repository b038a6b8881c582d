//! The read side. The projector follows the committed journal of a data directory (reading its
//! segment files, never taking the engine's lock), decides every batch again in a follower
//! book of its own (the book is deterministic; each batch's replies are checked against the
//! digest the sequencer recorded), and keeps read models in a store: bets with their legs and
//! every status change, account statements with the balances after every transfer, the audit
//! view of every command, daily regulator report inputs, and accounts for operator search.
//!
//! **Exactly once.** A commit writes the rows of whole batches together with the checkpoint
//! (the position after the last of them and the journal's hash-chain head there) in one
//! transaction. Killed at any point, the projector reopens at the stored checkpoint, rebuilds
//! its follower book up to it without writing, checks the chain head, and goes on; the models
//! then equal a rebuild from scratch (`--rebuild`), which `store::digest` shows.
//!
//! **Two stores, one trait** ([`store::Store`]): SQLite ([`sqlite::SqliteStore`], embedded, a
//! file in the data directory) and PostgreSQL ([`postgres::PostgresStore`], a schema of its
//! own), the same tables ([`schema`]) and versioned migrations.
//!
//! The projector sits below the gateway: journal, codec, book and the engine's recovery
//! helpers (`chain_next`, the snapshot payload) are all it uses.

pub mod changes;
pub mod follower;
pub mod postgres;
pub mod projector;
pub mod query;
pub mod reader;
pub mod schema;
pub mod serving;
pub mod source;
pub mod sqlite;
pub mod store;
pub mod totals;

pub use follower::{Changes, Checkpoint, Follower};
pub use postgres::{PostgresStore, POSTGRES_SCHEMA_DEFAULT};
pub use projector::{journal_dir, Progress, Projector, ProjectorOptions, Start, COMMIT_ROWS_DEFAULT};
pub use serving::{
    spawn, sqlite_path, watch_store, ProjectorState, ProjectorThread, Published, ReadModels, ReadStore, StoreWatch,
    READERS_MAX,
};
#[cfg(feature = "nats")]
pub use source::NatsSource;
pub use source::{FileSource, RecordSource};
pub use sqlite::{SqliteStore, SQLITE_FILE_NAME};
pub use store::{digest, digest_paged, dump, Store, DIGEST_ROWS_PER_PAGE};

use journal::{JournalError, Position};

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("journal record {position} does not decode as a batch: {source}")]
    Decode {
        position: Position,
        #[source]
        source: codec::DecodeError,
    },
    #[error(
        "replaying journal record {position} gave reply digest {replayed:#018x}, the journal recorded {recorded:#018x}: \
         this build decides differently from the one that wrote the journal"
    )]
    Diverged { position: Position, recorded: u64, replayed: u64 },
    #[error("after journal record {position} the projected balances of ledger account {ledger_account} differ from the book's")]
    BalanceDiverged { position: Position, ledger_account: u64 },
    #[error(
        "journal record {position}: transfer {transfer} moves money between two players (a statement row has one)"
    )]
    TwoPlayers { position: Position, transfer: u64 },
    #[error("journal record {position} refers to a {what} the follower book does not have")]
    Missing { position: Position, what: &'static str },
    #[error("expected journal record {expected}, read {found}")]
    Gap { expected: Position, found: Position },
    #[error(
        "journal record {position} begins at command sequence {found}, but the commands before it end at {expected}"
    )]
    SequenceGap { position: Position, expected: u64, found: u64 },
    #[error(
        "the store is at journal position {store} but the journal ends at {journal}: it was built from another \
         journal; run with --rebuild"
    )]
    JournalBehind { store: Position, journal: Position },
    #[error(
        "the journal's hash chain at position {position} differs from the one the store was built from (the journal \
         was rewritten, e.g. unsynced records lost in a machine crash); run with --rebuild"
    )]
    ChainMismatch { position: Position },
    #[error(
        "the store is empty and the journal begins at position {first_available} with no snapshot at or after it to \
         start from"
    )]
    NoStart { first_available: Position },
    #[error(
        "the read models stand at journal position {checkpoint}, but the journal begins at {first_available} (after \
         a `sportsbook repair`, or segments removed) and no snapshot between {first_available} and {checkpoint} is \
         left to rebuild the projector's book from (snapshots are pruned, `--snapshots-keep`): the models cannot \
         resume; run `sportsbook projector --rebuild` (they then begin at the oldest snapshot the journal continues \
         from)"
    )]
    NoResumePoint { checkpoint: Position, first_available: Position },
    #[error(
        "another projector writes to this store: its checkpoint is at {found:?}, this one expected {expected:?}; \
         run one projector per store"
    )]
    ConcurrentWriter { expected: Option<Position>, found: Option<Position> },
    #[error("read-model store: {0}")]
    Store(String),
    /// Only from `ProjectorOptions::crash_after_batches`.
    #[error("stopped after {applied} batches without committing them (a simulated crash)")]
    CrashForTest { applied: u64 },
}
