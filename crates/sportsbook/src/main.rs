//! The `sportsbook` command: `demo` runs a simulated match day through the engine on an
//! embedded data directory; `verify` recovers a data directory and checks it.

mod demo;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sportsbook", version, about = "An exact, durable sportsbook engine")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Seeds a catalog and players, runs a match day of bets, price moves, in-play delays and
    /// settlements through the engine, then proves the ledger balances and that recovery
    /// rebuilds the same book.
    Demo {
        /// Data directory (a fresh temporary one when omitted).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Bets to place.
        #[arg(long, default_value_t = 50_000)]
        bets: u64,
    },
    /// Recovers a data directory (latest snapshot plus journal), checks every invariant and
    /// prints the state digest.
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Commands::Demo { data_dir, bets } => {
            let temporary = match &data_dir {
                Some(_) => None,
                None => Some(tempfile_dir()?),
            };
            let dir = data_dir.unwrap_or_else(|| temporary.clone().unwrap_or_default());
            demo::run(&dir, bets)?;
            if let Some(temporary) = temporary {
                std::fs::remove_dir_all(&temporary).with_context(|| format!("removing {}", temporary.display()))?;
            }
            Ok(())
        }
        Commands::Verify { data_dir } => verify(&data_dir),
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sportsbook-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn verify(dir: &std::path::Path) -> anyhow::Result<()> {
    let (engine, report) = engine::open_data_dir(
        dir,
        book::Config::default(),
        Box::new(engine::SystemClock),
        engine::EngineOptions::default(),
    )
    .with_context(|| format!("recovering {}", dir.display()))?;
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
