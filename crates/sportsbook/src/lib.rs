//! The `sportsbook` binary's parts, as a library so that tests can drive them: `serve` (the
//! gateway over the engine, with the live demo), `admin` (operator keys offline), the engine-only
//! `demo`, `verify`, and the feed role (`feeds`: sources, the demo's simulated provider,
//! `feed-sim`).

pub mod admin;
pub mod demo;
pub mod feeds;
mod names;
pub mod pricing;
pub mod projection;
pub mod secrets;
pub mod serve;
pub mod simulation;

use std::path::Path;

use anyhow::Context;
use engine::{EngineError, EngineHandle, EngineOptions, RecoveryReport, SystemClock};

/// Opens a data directory on the real clock. A directory another process holds (a running
/// server) is refused with a message that says so.
pub fn open_engine(dir: &Path) -> anyhow::Result<(EngineHandle, RecoveryReport)> {
    open_engine_with(dir, EngineOptions::default())
}

/// `open_engine` with options (the server passes the gateway's commit hook).
pub fn open_engine_with(dir: &Path, options: EngineOptions) -> anyhow::Result<(EngineHandle, RecoveryReport)> {
    match engine::open_data_dir(dir, book::Config::default(), Box::new(SystemClock), options) {
        Ok(opened) => Ok(opened),
        Err(EngineError::Journal(journal::JournalError::Locked { .. })) => anyhow::bail!(
            "the data directory {} is in use by another process (is a sportsbook server running on it?); stop it first",
            dir.display()
        ),
        Err(error) => Err(error).with_context(|| format!("opening the data directory {}", dir.display())),
    }
}

/// Recovers a data directory (latest snapshot plus journal), checks every invariant and prints
/// the state digest.
pub fn verify(dir: &Path) -> anyhow::Result<()> {
    let (engine, report) = open_engine(dir)?;
    println!(
        "recovered {}: snapshot at {:?}, {} batches ({} commands) replayed, {} torn bytes cut",
        dir.display(),
        report.snapshot_position,
        report.replayed_batches,
        report.replayed_commands,
        report.truncated_bytes
    );
    let (checked, digest) = engine.read(|book| (book.check_invariants(), codec::digest(book)))?;
    engine.shutdown();
    checked.map_err(|violation| anyhow::anyhow!("invariant violated: {violation}"))?;
    println!("invariants hold; state digest {digest}");
    Ok(())
}
