//! `sportsbook projector`: runs the projector on a data directory, alone (a server may be
//! running on it: the journal is read without its lock), into the embedded SQLite store
//! (`DATA_DIR/projector/read-models.sqlite3`) or a PostgreSQL database. It catches up and
//! exits, or with `--follow` keeps following the journal until it is killed (which is safe at
//! any moment: every commit carries its checkpoint).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use projector::{PostgresStore, Progress, Projector, ProjectorOptions, SqliteStore, Start, Store};

/// Where the read models go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreArg {
    /// The embedded default, or a SQLite file elsewhere.
    Sqlite(Option<PathBuf>),
    /// A `postgres://` URL.
    Postgres(String),
}

/// `sqlite`, `sqlite:PATH` or `postgres://…`.
pub fn parse_store(value: &str) -> Result<StoreArg, String> {
    if value == "sqlite" {
        return Ok(StoreArg::Sqlite(None));
    }
    if let Some(path) = value.strip_prefix("sqlite:") {
        if path.is_empty() {
            return Err("`sqlite:` needs a file path".to_owned());
        }
        return Ok(StoreArg::Sqlite(Some(PathBuf::from(path))));
    }
    if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        return Ok(StoreArg::Postgres(value.to_owned()));
    }
    Err(format!("`{value}`: expected `sqlite`, `sqlite:PATH` or a `postgres://` URL"))
}

#[derive(Clone, Debug)]
pub struct ProjectorArgs {
    pub data_dir: PathBuf,
    pub store: StoreArg,
    /// The PostgreSQL schema of the models.
    pub schema: String,
    pub rebuild: bool,
    pub follow: bool,
    pub commit_rows: usize,
    /// Print the digest of the store's content at the end.
    pub digest: bool,
}

/// The embedded store's path in a data directory.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("projector").join(projector::SQLITE_FILE_NAME)
}

pub fn open_store(args: &ProjectorArgs) -> anyhow::Result<Box<dyn Store>> {
    Ok(match &args.store {
        StoreArg::Sqlite(path) => {
            let path = path.clone().unwrap_or_else(|| sqlite_path(&args.data_dir));
            Box::new(SqliteStore::open(&path).with_context(|| format!("opening the SQLite store {}", path.display()))?)
        }
        StoreArg::Postgres(url) => Box::new(
            PostgresStore::connect(url, &args.schema).with_context(|| format!("opening the PostgreSQL store {url}"))?,
        ),
    })
}

pub fn run(args: &ProjectorArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.data_dir.join("journal").is_dir(),
        "{} has no journal (is it a sportsbook data directory?)",
        args.data_dir.display()
    );
    let store = open_store(args)?;
    let kind = store.kind();
    let options = ProjectorOptions {
        commit_rows: args.commit_rows.max(1),
        on_replay: Some(|position, checkpoint| {
            eprintln!("projector: replaying the journal to the store's checkpoint: {position} of {checkpoint}")
        }),
        ..ProjectorOptions::new(&args.data_dir)
    };
    let began = Instant::now();
    let mut projector = Projector::open(store, options, args.rebuild).context("opening the projector")?;
    match projector.start() {
        Start::Genesis => eprintln!("projector: {kind} store, from journal position 0"),
        Start::Snapshot(position) => {
            eprintln!("projector: {kind} store, seeded from the snapshot at journal position {position}")
        }
        Start::Resumed { checkpoint, replayed_from } => eprintln!(
            "projector: {kind} store, resumed at journal position {checkpoint} (follower book replayed from {replayed_from})"
        ),
    }
    let mut report = |progress: &Progress| {
        let seconds = began.elapsed().as_secs_f64().max(1e-9);
        eprintln!(
            "projector: at journal position {}, {} rows written ({:.0} rows/s)",
            progress.position,
            progress.rows,
            progress.rows as f64 / seconds
        );
    };
    if args.follow {
        // Runs until the process is killed or interrupted; a kill loses at most the rows of
        // an uncommitted transaction, which the next run applies again.
        projector.follow(&AtomicBool::new(false), &mut report).context("following the journal")?;
    } else {
        projector.catch_up(&mut report).context("projecting the journal")?;
    }
    let progress = projector.progress();
    let seconds = began.elapsed().as_secs_f64();
    println!(
        "projected {} to journal position {} ({} batches, {} commands): {} rows in {:.1} s ({:.0} rows/s)",
        args.data_dir.display(),
        progress.position,
        progress.batches,
        progress.commands,
        progress.rows,
        seconds,
        progress.rows as f64 / seconds.max(1e-9)
    );
    if args.digest {
        println!("store digest {}", projector::digest(projector.store())?);
    }
    Ok(())
}

/// The nice value of the projector's thread inside `serve` (Linux; higher is lower priority):
/// when the cores are busy, bet placement goes first and the read models lag; when they are
/// not, the projector catches up. At nice 10 it gets about a tenth of a normal thread's share
/// of a busy core.
pub const PROJECTOR_NICE: i32 = 10;

/// The projector inside `serve`: its own thread, reading the journal's files (never the
/// engine's inbox or lock), so it cannot slow the sequencer beyond sharing the CPU.
#[derive(Debug)]
pub struct ProjectorThread {
    stop: Arc<AtomicBool>,
    position: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProjectorThread {
    /// The journal position the read models are at (committed).
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    /// Stops after the transaction in progress and waits for the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the projector on its own thread, following the data directory's journal into
/// `store`. A failure is logged and ends the projector, never the server.
pub fn spawn(data_dir: &Path, store: StoreArg, schema: String) -> anyhow::Result<ProjectorThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let position = Arc::new(AtomicU64::new(0));
    let args = ProjectorArgs {
        data_dir: data_dir.to_owned(),
        store,
        schema,
        rebuild: false,
        follow: true,
        commit_rows: projector::COMMIT_ROWS_DEFAULT,
        digest: false,
    };
    let (thread_stop, thread_position) = (stop.clone(), position.clone());
    let thread = std::thread::Builder::new()
        .name("projector".to_owned())
        .spawn(move || {
            // Below the sequencer and the gateway's workers: under load the read models lag
            // rather than bet placement slowing down (the lag is a metric).
            if let Err(error) = engine::lower_thread_priority(PROJECTOR_NICE) {
                tracing::debug!(%error, "could not lower the projector thread's priority");
            }
            let opened = open_store(&args).and_then(|store| {
                let options = ProjectorOptions::new(&args.data_dir);
                Projector::open(store, options, false).context("opening the projector")
            });
            let mut projector = match opened {
                Ok(projector) => projector,
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "the projector did not start; read models stay as they are"
                    );
                    return;
                }
            };
            tracing::info!(start = ?projector.start(), "projector following the journal");
            thread_position.store(projector.position(), Ordering::Relaxed);
            // One transaction at a time, so a stop request is seen promptly even during a long
            // catch-up.
            let mut last_report = Instant::now();
            while !thread_stop.load(Ordering::Relaxed) {
                match projector.step() {
                    Ok((_, more)) => {
                        thread_position.store(projector.position(), Ordering::Relaxed);
                        if more && last_report.elapsed() >= projector::projector::PROGRESS_INTERVAL {
                            let progress = projector.progress();
                            tracing::info!(position = progress.position, rows = progress.rows, "projector catching up");
                            last_report = Instant::now();
                        }
                        if !more {
                            std::thread::sleep(projector::projector::FOLLOW_POLL_INTERVAL);
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "the projector stopped; read models stay at their last commit");
                        return;
                    }
                }
            }
        })
        .context("starting the projector thread")?;
    Ok(ProjectorThread { stop, position, thread: Some(thread) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_flags() {
        assert_eq!(parse_store("sqlite"), Ok(StoreArg::Sqlite(None)));
        assert_eq!(parse_store("sqlite:/tmp/x.db"), Ok(StoreArg::Sqlite(Some(PathBuf::from("/tmp/x.db")))));
        assert_eq!(
            parse_store("postgres://postgres@127.0.0.1/test"),
            Ok(StoreArg::Postgres("postgres://postgres@127.0.0.1/test".to_owned()))
        );
        for refused in ["", "sqlite:", "mysql://x", "postgres"] {
            assert!(parse_store(refused).is_err(), "{refused}");
        }
    }
}
