//! The projector inside the simulation (file journal runs): the real `projector::Projector`
//! follows the simulator's data directory (`DIR/journal`, `DIR/snapshots`) into a SQLite store
//! (`DIR/projector/read-models.sqlite3`), and is killed at moments drawn from the seed.
//!
//! It runs on the simulator's thread between steps, never while a step is in flight, so it
//! only ever reads records the engine acknowledged (a record written before a failed sync is
//! never read before the crash that follows decides its fate). Its kills:
//! - `projector_killed_mid_transaction`: `ProjectorOptions::crash_after_batches` stops it
//!   after a number of batches drawn from the seed, with the rows collected since its last
//!   commit thrown away, as a `kill -9` would;
//! - `projector_killed`: dropped between two commits;
//! - `projector_killed_with_engine`: dropped at a crash of the engine (the projector that runs
//!   inside `serve` dies with it), the engine's recovery and the projector's resume then race
//!   no further than the simulator lets them.
//!
//! After every kill it reopens on its store, resumes at the store's checkpoint, and goes on.
//! At the end of the run its store must equal a rebuild from scratch (`store::digest`).
//!
//! In half the runs (drawn from the seed) it also writes the engine's periodic snapshots, as in
//! `serve` (`engine::PeriodicSnapshots::External`): the engine then runs no snapshot follower,
//! and every crash recovers from snapshots the projector's follower book wrote (or overdue
//! ones a catch-up thread wrote from the journal's files), checked like any other against the
//! journal replayed from scratch and the auditor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use book::Config;
use projector::{Projector, ProjectorError, ProjectorOptions, SqliteStore, Store};

use crate::rng::Rng;

/// Fault and event counters, merged into the run's report.
pub type Counts = BTreeMap<&'static str, u64>;

pub struct SimProjector {
    data_dir: PathBuf,
    config: Config,
    rng: Rng,
    projector: Option<Projector>,
    /// Off once a repair moved the journal's start up to a snapshot (see `stop_kills`).
    kills: bool,
    /// Whether this run's projector writes the engine's snapshots (drawn once per run).
    writes_snapshots: bool,
    /// The running engine's writer, while `writes_snapshots`.
    snapshot_writer: Option<engine::SnapshotWriter>,
}

impl std::fmt::Debug for SimProjector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SimProjector").field("data_dir", &self.data_dir).finish()
    }
}

fn failed(what: &str, error: impl std::fmt::Display) -> String {
    format!("the projector failed to {what}: {error}")
}

/// The store file of a data directory.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("projector").join(projector::SQLITE_FILE_NAME)
}

impl SimProjector {
    /// `writes_snapshots`: whether it writes the engine's snapshots; `None`: drawn, half the
    /// runs.
    pub fn new(data_dir: &Path, config: Config, mut rng: Rng, writes_snapshots: Option<bool>) -> SimProjector {
        let drawn = rng.chance(1, 2);
        let writes_snapshots = writes_snapshots.unwrap_or(drawn);
        SimProjector {
            data_dir: data_dir.to_owned(),
            config,
            rng,
            projector: None,
            kills: true,
            writes_snapshots,
            snapshot_writer: None,
        }
    }

    /// Whether the engine should leave its periodic snapshots to this projector.
    pub fn writes_snapshots(&self) -> bool {
        self.writes_snapshots
    }

    /// A (re)started engine's snapshot writer: the projector writes through it from now on,
    /// whether it outlived the engine or opens later.
    pub fn set_snapshot_writer(&mut self, writer: Option<engine::SnapshotWriter>) {
        self.snapshot_writer = writer.filter(|_| self.writes_snapshots);
        if let Some(projector) = self.projector.as_mut() {
            projector.set_snapshot_writer(self.snapshot_writer.clone());
        }
    }

    pub fn store_path(&self) -> PathBuf {
        store_path(&self.data_dir)
    }

    /// Opens (or reopens after a kill) on the store: from the journal's start on an empty
    /// store, else resuming at its checkpoint. Transactions of 1 to 400 rows; half the
    /// processes are set to die after a few batches; half gather at the journal's end
    /// (`ProjectorOptions::gather`) until full or flushed, so a kill loses more.
    fn open(&mut self, counts: &mut Counts) -> Result<&mut Projector, String> {
        if self.projector.is_none() {
            let store = SqliteStore::open(&self.store_path()).map_err(|error| failed("open its store", error))?;
            let mut options = ProjectorOptions::new(&self.data_dir);
            options.config = self.config;
            options.commit_rows = self.rng.between(1, 400) as usize;
            options.snapshots = self.snapshot_writer.clone();
            if self.rng.chance(1, 2) {
                options.gather = std::time::Duration::from_secs(3_600);
                *counts.entry("projector_gathering").or_default() += 1;
            }
            if self.kills && self.rng.chance(1, 2) {
                options.crash_after_batches = Some(self.rng.between(1, 300));
            }
            let projector =
                Projector::open(Box::new(store), options, false).map_err(|error| failed("resume", error))?;
            if matches!(projector.start(), projector::Start::Resumed { .. }) {
                *counts.entry("projector_resumed").or_default() += 1;
            }
            self.projector = Some(projector);
        }
        self.projector.as_mut().ok_or_else(|| "no projector".to_string())
    }

    /// Kills the process: whatever it had not committed is gone.
    pub fn kill(&mut self, counts: &mut Counts, label: &'static str) {
        if self.projector.take().is_some() {
            *counts.entry(label).or_default() += 1;
        }
    }

    /// No more kills from here on (the process keeps running): after a repair the journal
    /// begins at a snapshot, and once the engine prunes it a killed projector could not resume.
    pub fn stop_kills(&mut self) {
        self.kills = false;
    }

    /// One transaction's worth of progress; `Ok(false)` at the end of the journal.
    fn step(&mut self, counts: &mut Counts) -> Result<bool, String> {
        match self.open(counts)?.step() {
            Ok((_, more)) => Ok(more),
            Err(ProjectorError::CrashForTest { .. }) => {
                self.kill(counts, "projector_killed_mid_transaction");
                Ok(true)
            }
            Err(error) => Err(failed("project", error)),
        }
    }

    /// Between two steps of the simulation: a few transactions, and now and then a kill.
    pub fn advance(&mut self, counts: &mut Counts) -> Result<(), String> {
        for _ in 0..self.rng.between(1, 3) {
            if !self.step(counts)? {
                break;
            }
        }
        if self.kills && self.rng.chance(1, 10) {
            self.kill(counts, "projector_killed");
        }
        Ok(())
    }

    /// Projects everything the journal holds now (kills included).
    pub fn catch_up(&mut self, counts: &mut Counts) -> Result<(), String> {
        while self.step(counts)? {}
        Ok(())
    }

    /// The store, caught up with the journal (a gathering transaction flushed, as for a
    /// reader waiting).
    pub fn store(&mut self, counts: &mut Counts) -> Result<&mut dyn Store, String> {
        self.catch_up(counts)?;
        let projector = self.open(counts)?;
        projector.flush().map_err(|error| failed("flush", error))?;
        Ok(projector.store())
    }

    /// Compares the store (caught up) with a rebuild from scratch into a second store, by
    /// dump (the text `store::digest` hashes); what differs is reported with the first rows
    /// apart.
    pub fn compare_with_rebuild(&mut self, counts: &mut Counts) -> Result<(), String> {
        let live = projector::dump(self.store(counts)?).map_err(|error| failed("read its store", error))?;
        let path = self.data_dir.join("projector").join("rebuild.sqlite3");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let store = SqliteStore::open(&path).map_err(|error| failed("open the rebuild's store", error))?;
        let mut options = ProjectorOptions::new(&self.data_dir);
        options.config = self.config;
        let mut rebuilt =
            Projector::open(Box::new(store), options, true).map_err(|error| failed("start a rebuild", error))?;
        rebuilt.catch_up(&mut |_| {}).map_err(|error| failed("rebuild", error))?;
        let rebuilt = projector::dump(rebuilt.store()).map_err(|error| failed("read the rebuild", error))?;
        if live == rebuilt {
            return Ok(());
        }
        let apart: Vec<String> = live
            .lines()
            .zip(rebuilt.lines())
            .filter(|(kept, again)| kept != again)
            .take(3)
            .map(|(kept, again)| format!("\n    kept:    {kept}\n    rebuilt: {again}"))
            .collect();
        Err(format!(
            "the read models of the projector killed and resumed during the run ({} rows) differ from a \
             rebuild from scratch ({} rows):{}",
            live.lines().count(),
            rebuilt.lines().count(),
            apart.concat()
        ))
    }
}
