//! Deterministic simulation of the book engine: the proof, step by step, that no money is lost.
//!
//! A seeded `workload` generates commands of every kind the book knows (and, as a Unified Odds
//! Feed provider, XML messages that the feed role's translator turns into feed commands); the `simulator` drives
//! the real engine with them (the sequencer thread, group commit to a `FileJournal` or a
//! `MemoryJournal`, snapshots, recovery) on a `ManualClock` it alone moves, and the `auditor`, an
//! independent and deliberately simple model of the rules, in lockstep. After every step the
//! book's reply must be the model's, and so must the bet events and transfers it published and
//! every wallet; at full checks every account, market, selection and bet, the book's invariants,
//! money conservation and exposure. Journal faults (a sync that fails with the batch lost, or
//! written but unacknowledged), crashes with and without snapshots, corrupt snapshots, and torn
//! or garbage tails of the file journal are injected from the seed; after each, recovery must
//! give back exactly the acknowledged commands and the same book, by digest, as before the
//! crash and as a replay of the journal from scratch.
//!
//! Everything a run does follows from its seed: a failure prints `FAILED at seed S step K:` and
//! `cargo run --release -p sim -- --seed S --ops N` reproduces it. The tests run eight seeds of
//! 2,000 steps; the longer run (about 50 s a seed in release builds) is
//!
//! ```text
//! cargo run --release -p sim -- --seeds 1..1000 --ops 100000
//! ```
//!
//! On the file journal the real projector follows the run's data directory into SQLite and is
//! killed at moments drawn from the seed (`projection`); the auditor predicts its read models
//! (`readmodels`: bets and legs, bet histories, statements with the balance after every
//! transfer, transfers, the audit view, daily report totals, accounts), checked at intervals,
//! at crashes and at the end, where the store must also equal a rebuild from scratch.
//!
//! A quarter of the seeds run a whale configuration, with deposits, stakes and payouts up to the
//! money maximum, where payouts saturate and balances and liabilities meet their bound.
//!
//! `tests/it/mutants.rs` injects bugs from outside the book (command transforms, a journal that
//! acknowledges what it then loses) and checks that the simulator catches each one.

pub mod auditor;
pub mod check;
pub mod exact;
pub mod faults;
pub mod projection;
pub mod readmodels;
pub mod rng;
pub mod simulator;
pub mod workload;

pub use simulator::{run, CommandTransform, Failure, JournalKind, JournalWrapper, ReadModelTamper, Report, SimOptions};
