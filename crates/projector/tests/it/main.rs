//! The projector's integration tests: one conformance suite run on both stores (SQLite and
//! PostgreSQL), exactly-once across crashes, and following a journal a running engine holds.
//!
//! PostgreSQL must be reachable at 127.0.0.1:5432 (user `postgres`, trust, database `test`);
//! each test uses a schema of its own. Without it the PostgreSQL tests fail, saying so.

mod archived;
mod conformance;
mod exactly_once;
mod migrations;
#[cfg(feature = "nats")]
mod nats_source;
mod repaired;
mod snapshot_start;
mod snapshots;
mod workload;

use std::path::Path;
use std::sync::OnceLock;

use book::Book;
use projector::{PostgresStore, Projector, ProjectorOptions, SqliteStore, Store};

pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL schema [`open_store`] gives the store `name` in this test process.
pub fn postgres_schema(name: &str) -> String {
    format!("it_{name}_{}", std::process::id())
}

/// A store of `backend` named `name`: a SQLite file in `dir`, or the PostgreSQL schema
/// `it_<name>_<pid>`. `fresh` empties it first (a PostgreSQL schema left by an earlier run).
pub fn open_store(backend: Backend, dir: &Path, name: &str, fresh: bool) -> Box<dyn Store> {
    match backend {
        Backend::Sqlite => {
            let path = dir.join(format!("{name}.sqlite3"));
            if fresh {
                let _ = std::fs::remove_file(&path);
            }
            Box::new(SqliteStore::open(&path).expect("open the SQLite store"))
        }
        Backend::Postgres => {
            let schema = postgres_schema(name);
            if fresh {
                PostgresStore::drop_schema(POSTGRES_URL, &schema).unwrap_or_else(|error| {
                    panic!(
                        "these tests need PostgreSQL at {POSTGRES_URL} (trust authentication, database `test`); \
                         it is not usable: {error}"
                    )
                });
            }
            Box::new(PostgresStore::connect(POSTGRES_URL, &schema).unwrap_or_else(|error| {
                panic!("these tests need PostgreSQL at {POSTGRES_URL}; it is not usable: {error}")
            }))
        }
    }
}

/// A finished workload on a data directory, shared by the tests that only read it: the book
/// the engine ended with and the outcome of every command the workload sent.
pub struct Finished {
    pub dir: tempfile::TempDir,
    pub book: Book,
    pub outcomes: Vec<String>,
    /// `Run::first_replies`.
    pub first_replies: Vec<(book::AccountId, String, u64, book::Reply)>,
    /// Every transfer the book made (`conformance::TransferHistory`).
    pub transfers: conformance::TransferHistory,
}

pub fn finished() -> &'static Finished {
    static FINISHED: OnceLock<Finished> = OnceLock::new();
    FINISHED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut run = workload::Run::open(dir.path(), 7);
        run.setup();
        run.steps(150);
        let book = run.engine.read(|book| book.clone()).expect("read");
        let outcomes = run.outcomes();
        let first_replies = run.first_replies();
        run.shutdown();
        let transfers = conformance::TransferHistory::of(dir.path());
        let missing = workload::coverage(&book, &transfers.transfers);
        assert!(missing.is_empty(), "the workload never reached: {missing:?}");
        Finished { dir, book, outcomes, first_replies, transfers }
    })
}

/// Projects the data directory into `store` until the journal's end.
pub fn project(data_dir: &Path, store: Box<dyn Store>, rebuild: bool) -> Projector {
    let mut projector = Projector::open(store, ProjectorOptions::new(data_dir), rebuild).expect("open projector");
    projector.catch_up(&mut |_| {}).expect("catch up");
    projector
}
