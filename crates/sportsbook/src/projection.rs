//! `sportsbook projector`: runs the projector on a data directory, alone (a server may be
//! running on it: the journal is read without its lock), into the embedded SQLite store
//! (`DATA_DIR/projector/read-models.sqlite3`) or a PostgreSQL database. It catches up and
//! exits, or with `--follow` keeps following the journal until it is killed (which is safe at
//! any moment: every commit carries its checkpoint).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
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
    /// The journal's archive (`--journal-archive`, default DATA_DIR/archive).
    pub archive_dir: PathBuf,
    /// [`ProjectorOptions::pipeline`].
    pub pipeline: bool,
    /// [`ProjectorOptions::whole_bet_rows`].
    pub whole_bet_rows: bool,
}

/// The embedded store's path in a data directory.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    projector::sqlite_path(data_dir)
}

pub fn open_store(args: &ProjectorArgs) -> anyhow::Result<Box<dyn Store>> {
    open_store_at(&args.store, Some(&args.data_dir), &args.schema)
}

/// Opens the store `store` names; the embedded SQLite default lives in `data_dir`, without which
/// it is refused.
pub fn open_store_at(store: &StoreArg, data_dir: Option<&Path>, schema: &str) -> anyhow::Result<Box<dyn Store>> {
    Ok(match store {
        StoreArg::Sqlite(path) => {
            let path = match (path, data_dir) {
                (Some(path), _) => path.clone(),
                (None, Some(data_dir)) => sqlite_path(data_dir),
                (None, None) => anyhow::bail!("the embedded SQLite store needs a data directory: give sqlite:PATH"),
            };
            Box::new(SqliteStore::open(&path).with_context(|| format!("opening the SQLite store {}", path.display()))?)
        }
        StoreArg::Postgres(url) => Box::new(
            PostgresStore::connect(url, schema).with_context(|| format!("opening the PostgreSQL store {url}"))?,
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
        archive_dir: Some(args.archive_dir.clone()),
        pipeline: args.pipeline,
        whole_bet_rows: args.whole_bet_rows,
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
            "projector: at journal position {}, {} rows written ({:.0} rows/s, {:.0} batches/s)",
            progress.position,
            progress.rows,
            progress.rows as f64 / seconds,
            progress.batches as f64 / seconds
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
        "projected {} to journal position {} ({} batches, {} commands): {} rows in {:.1} s ({:.0} rows/s, {:.0} \
         batches/s, {:.0} commands/s)",
        args.data_dir.display(),
        progress.position,
        progress.batches,
        progress.commands,
        progress.rows,
        seconds,
        progress.rows as f64 / seconds.max(1e-9),
        progress.batches as f64 / seconds.max(1e-9),
        progress.commands as f64 / seconds.max(1e-9)
    );
    // Where the time went: the journal read and decided again with rows built, the store's
    // commits, and what of the commits the deciding thread waited for (with the commit
    // pipelined, the rest overlapped the deciding).
    let seconds_of = |nanos: u64| nanos as f64 / 1e9;
    println!(
        "time: deciding and building rows {:.1} s, store commits {:.1} s, waiting for commits {:.1} s",
        seconds_of(progress.decide_nanos),
        seconds_of(progress.commit_nanos),
        seconds_of(progress.wait_nanos)
    );
    if args.digest {
        println!("store digest {}", projector::digest(projector.store())?);
    }
    Ok(())
}

/// Starts the projector inside `serve` on its own thread (`projector::spawn`), following the
/// data directory's journal into `store` (reading the journal's files, never the engine's inbox
/// or lock, so it cannot slow the sequencer beyond sharing the CPU). Each commit is published
/// to `published`, which the gateway's history routes wait on. A failure is logged and ends the
/// projector, never the server. With `snapshots` (the engine's, `PeriodicSnapshots::External`)
/// its follower book also writes the engine's periodic snapshots.
pub fn spawn(
    data_dir: &Path,
    store: StoreArg,
    schema: String,
    published: Arc<projector::Published>,
    archive_dir: &Path,
    snapshots: Option<engine::SnapshotWriter>,
) -> anyhow::Result<projector::ProjectorThread> {
    let args = ProjectorArgs {
        data_dir: data_dir.to_owned(),
        store,
        schema,
        rebuild: false,
        follow: true,
        commit_rows: projector::COMMIT_ROWS_DEFAULT,
        digest: false,
        archive_dir: archive_dir.to_owned(),
        pipeline: true,
        whole_bet_rows: false,
    };
    let readers_waiting = published.readers_waiting();
    projector::spawn(
        move || {
            let store = open_store(&args).map_err(|error| projector::ProjectorError::Store(format!("{error:#}")))?;
            let options = ProjectorOptions {
                archive_dir: Some(args.archive_dir.clone()),
                snapshots: snapshots.clone(),
                gather: projector::projector::GATHER_DEFAULT,
                readers_waiting: Some(readers_waiting.clone()),
                ..ProjectorOptions::new(&args.data_dir)
            };
            Projector::open(store, options, false)
        },
        published,
    )
    .context("starting the projector thread")
}

/// Where the gateway's readers find the models `store` names.
pub fn read_store(data_dir: &Path, store: &StoreArg, schema: &str) -> projector::ReadStore {
    match store {
        StoreArg::Sqlite(path) => projector::ReadStore::Sqlite(path.clone().unwrap_or_else(|| sqlite_path(data_dir))),
        StoreArg::Postgres(url) => projector::ReadStore::Postgres { url: url.clone(), schema: schema.to_owned() },
    }
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
