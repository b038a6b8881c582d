//! The projector loop: open a store, put a follower book where the store's checkpoint says,
//! then read the journal from there and commit rows in transactions that carry their
//! checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use book::{Book, Config};
use engine::CHAIN_HEAD_GENESIS;
use journal::Position;

use crate::follower::{Changes, Checkpoint, Follower};
use crate::reader::Flow;
use crate::source::{FileSource, RecordSource};
use crate::store::{self, Store};
use crate::ProjectorError;

/// Rows a transaction collects before it commits (it also commits when it has read all there
/// is and gathered long enough: [`ProjectorOptions::gather`]). Larger transactions write
/// faster (SQLite: 200,000 rows write a third of the bytes 50,000 do, and 400,000 two fifths
/// fewer again, since a commit dirties a page per active account in each account index
/// however few rows it holds; `docs/benchmarks.md`); the lag a reader sees while the projector
/// is behind grows with them, and so does memory (a few hundred bytes a pending row, twice
/// over while one commits and the next gathers: about 65 MiB more at 400,000 than at 200,000).
pub const COMMIT_ROWS_DEFAULT: usize = 400_000;

/// How long a transaction gathers batches at the journal's end before it commits
/// ([`ProjectorOptions::gather`]) in `serve`, the soak and the projector role.
pub const GATHER_DEFAULT: Duration = Duration::from_millis(250);
/// How long `--follow` sleeps when the journal has nothing new.
pub const FOLLOW_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How often progress is reported during a long catch-up.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// How far a projector got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The journal position the store is at (after its last committed batch).
    pub position: Position,
    pub batches: u64,
    pub commands: u64,
    /// Rows committed by this process.
    pub rows: u64,
    pub commits: u64,
    /// Time spent reading the journal, deciding it again and building rows, by this process.
    pub decide_nanos: u64,
    /// Time the store spent in commits (writing rows and committing), on whichever thread.
    pub commit_nanos: u64,
    /// Time the deciding thread waited for a commit in flight (pipelined: what the overlap
    /// did not hide).
    pub wait_nanos: u64,
    /// Snapshots of the follower book written for the engine ([`ProjectorOptions::snapshots`])
    /// by this process (the engine's `EngineStats` counts their time).
    pub snapshots: u64,
}

#[derive(Debug, Clone)]
pub struct ProjectorOptions {
    pub data_dir: PathBuf,
    pub config: Config,
    pub commit_rows: usize,
    /// Test hook standing for a crash: stop after projecting this many batches in this process
    /// and return without committing what was collected since the last commit.
    pub crash_after_batches: Option<u64>,
    /// Called about every [`PROGRESS_INTERVAL`] while a resume replays the journal up to the
    /// store's checkpoint (no rows are written then): `(position reached, checkpoint)`.
    pub on_replay: Option<fn(Position, Position)>,
    /// Where the journal's archived segments are (`None`: none are read). Positions the live
    /// journal no longer holds are read from there, so a rebuild or a projector far behind
    /// still starts at position 0.
    pub archive_dir: Option<PathBuf>,
    /// While behind, commit a transaction on a writer thread of its own while this one
    /// decides the batches of the next ([`Projector::step`]). At most one commit is in flight
    /// and each still carries its checkpoint, so exactly-once is unchanged; when the journal
    /// has nothing more the commit is made before `step` returns.
    pub pipeline: bool,
    /// Write a bet and its legs whole whenever they change, as before the partial updates of
    /// accepted bets (`schema::BET_SETTLEMENTS`): for comparing the two; the models are the same.
    pub whole_bet_rows: bool,
    /// Write the engine's periodic snapshots from the follower book, which is at the journal's
    /// position anyway, so that the engine need not keep a second book for them
    /// (`engine::PeriodicSnapshots::External`; `serve` with its projector in process). Written
    /// between batches once one is due and its position is durable; a failure is logged and
    /// counted by the engine, and the projector goes on.
    pub snapshots: Option<engine::SnapshotWriter>,
    /// While following the journal's end, how long a transaction keeps gathering batches
    /// before it commits. It commits sooner once `commit_rows` rows are pending, as soon as a
    /// reader waits for the models ([`ProjectorOptions::readers_waiting`]), and when the
    /// projector stops ([`Projector::flush`]). Fewer, larger transactions write far fewer
    /// pages (SQLite writes each page a transaction dirtied to its WAL, and again at the
    /// checkpoint; the indexes keyed by account dirty nearly one a row); the price is up to
    /// this much more lag while nobody reads. Zero (the default): commit what each step read.
    pub gather: Duration,
    /// Readers waiting for the models to reach a position (`Published::wait_for` counts
    /// them): while any waits, a gathering transaction commits at the next step.
    pub readers_waiting: Option<Arc<AtomicUsize>>,
}

impl ProjectorOptions {
    pub fn new(data_dir: &Path) -> ProjectorOptions {
        ProjectorOptions {
            data_dir: data_dir.to_owned(),
            config: Config::default(),
            commit_rows: COMMIT_ROWS_DEFAULT,
            crash_after_batches: None,
            on_replay: None,
            archive_dir: Some(data_dir.join(engine::ARCHIVE_DIR_NAME)),
            pipeline: true,
            whole_bet_rows: false,
            snapshots: None,
            gather: Duration::ZERO,
            readers_waiting: None,
        }
    }
}

/// What happened when the projector opened its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// An empty store, projecting from journal position 0.
    Genesis,
    /// An empty store on a journal whose early segments are gone: the models begin at this
    /// snapshot's position (rows for what the snapshot's book held are seeded).
    Snapshot(Position),
    /// The store's checkpoint, reached by replaying the journal (from a snapshot at or before
    /// it, or from 0) without writing.
    Resumed { checkpoint: Position, replayed_from: Position },
}

/// A transaction handed to the writer thread: the store is lent with it and comes back with
/// the (emptied) changes and the result.
struct CommitJob {
    store: Box<dyn Store>,
    changes: Changes,
    previous: Option<Position>,
}

struct CommitDone {
    store: Box<dyn Store>,
    changes: Changes,
    result: Result<(), ProjectorError>,
    nanos: u64,
}

/// The writer thread of [`ProjectorOptions::pipeline`]: it commits one job at a time and
/// frees the job's rows afterwards (freeing 50,000 rows is itself worth taking off the
/// deciding thread).
struct CommitThread {
    jobs: Option<mpsc::Sender<CommitJob>>,
    done: mpsc::Receiver<CommitDone>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CommitThread {
    fn spawn() -> Result<CommitThread, ProjectorError> {
        let (jobs, job_receiver) = mpsc::channel::<CommitJob>();
        let (done_sender, done) = mpsc::channel::<CommitDone>();
        let thread = std::thread::Builder::new()
            .name("projector-commit".to_owned())
            .spawn(move || {
                for CommitJob { mut store, mut changes, previous } in job_receiver {
                    let began = Instant::now();
                    let result = store.commit(&changes, previous);
                    let nanos = began.elapsed().as_nanos() as u64;
                    changes.clear();
                    if done_sender.send(CommitDone { store, changes, result, nanos }).is_err() {
                        return;
                    }
                }
            })
            .map_err(|source| ProjectorError::Store(format!("starting the projector's commit thread: {source}")))?;
        Ok(CommitThread { jobs: Some(jobs), done, thread: Some(thread) })
    }
}

impl Drop for CommitThread {
    /// Lets a commit in flight finish (a transaction is never left half-sent), then ends.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the store will be at once the commit in flight succeeds.
#[derive(Clone, Copy)]
struct InFlight {
    checkpoint: Checkpoint,
    rows: u64,
    /// Book time of the last batch it holds.
    book_time: u64,
}

pub struct Projector {
    /// `None` only while lent to the writer thread for the commit in flight.
    store: Option<Box<dyn Store>>,
    /// The commit in flight on `writer` (see [`ProjectorOptions::pipeline`]).
    in_flight: Option<InFlight>,
    writer: Option<CommitThread>,
    /// An emptied `Changes` to fill next, back from the writer thread.
    spare: Option<Changes>,
    /// A commit failure found outside `step` (by [`Projector::store`]), returned by the next
    /// `step`.
    deferred: Option<ProjectorError>,
    /// Set when a pipelined commit failed: the follower book is past rows that were not
    /// written, so this projector must not go on (it would commit later batches over the
    /// gap); it is reopened at its store's checkpoint instead.
    poisoned: Option<String>,
    follower: Follower,
    cursor: Box<dyn RecordSource>,
    changes: Changes,
    options: ProjectorOptions,
    committed: Position,
    /// The chain head at `committed`.
    committed_chain: engine::ChainHead,
    /// Book time of the last batch before `committed` (0: none).
    committed_book_time: u64,
    start: Start,
    progress: Progress,
    /// Batches projected by this process (committed or not).
    applied: u64,
    /// Whether the store has a checkpoint (at `committed`).
    stored: bool,
    /// When the pending transaction got its first row (see [`ProjectorOptions::gather`]).
    gathering_since: Option<Instant>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Projector").field("committed", &self.committed).field("start", &self.start).finish()
    }
}

/// The journal directory of a data directory.
pub fn journal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("journal")
}

/// Snapshot files of a data directory, `(position, path)`, oldest first, read without
/// `SnapshotStore::open` (which would remove a running engine's temporary files).
fn snapshot_files(data_dir: Option<&Path>) -> Vec<(Position, PathBuf)> {
    let Some(data_dir) = data_dir else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(data_dir.join("snapshots")) else { return Vec::new() };
    let mut files: Vec<(Position, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let digits = name.strip_prefix("snapshot-")?.strip_suffix(".bin")?;
            if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            Some((digits.parse().ok()?, entry.path()))
        })
        .collect();
    files.sort_unstable_by_key(|(position, _)| *position);
    files
}

/// A follower book where a snapshot leaves it: the book, its checkpoint, and the sequence number
/// of the next command.
type FromSnapshot = (Book, Checkpoint, u64);

/// A snapshot file as a follower book with its checkpoint; `None` when unreadable (the engine
/// may be pruning it) or not a valid snapshot.
fn read_snapshot(position: Position, path: &Path) -> Option<FromSnapshot> {
    let bytes = std::fs::read(path).ok()?;
    let (header_position, payload) = journal::snapshot::decode_snapshot(&bytes).ok()?;
    if header_position != position {
        return None;
    }
    // Like recovery, the book decides with the configuration the snapshot carries.
    let (next_sequence, chain_head, book) = engine::decode_snapshot_payload_for_follower(payload).ok()?;
    let checkpoint =
        Checkpoint { next_position: position, chain_head, batches: 0, commands: 0, base_position: position };
    Some((book, checkpoint, next_sequence))
}

/// The newest readable snapshot at or before `at` and not before `first_available`: where a
/// follower catching up to a checkpoint can begin.
fn snapshot_at_or_before(data_dir: Option<&Path>, at: Position, first_available: Position) -> Option<FromSnapshot> {
    snapshot_files(data_dir)
        .into_iter()
        .rev()
        .filter(|(position, _)| (first_available..=at).contains(position))
        .find_map(|(position, path)| read_snapshot(position, &path))
}

/// The oldest readable snapshot the journal continues from (at or after `first_available`):
/// where models that cannot begin at position 0 begin, keeping as much history as there is.
fn snapshot_from(data_dir: Option<&Path>, first_available: Position) -> Option<FromSnapshot> {
    snapshot_files(data_dir)
        .into_iter()
        .filter(|(position, _)| *position >= first_available)
        .find_map(|(position, path)| read_snapshot(position, &path))
}

/// Writes the engine's periodic snapshot from the follower book when one is due
/// ([`ProjectorOptions::snapshots`]). The writer refuses a position not yet durable (tried again
/// after the next batch) and one behind the newest snapshot.
fn snapshot_if_due(writer: &engine::SnapshotWriter, follower: &Follower, progress: &mut Progress) {
    let next_sequence = follower.next_sequence();
    if !writer.due(next_sequence) {
        return;
    }
    let checkpoint = follower.checkpoint();
    let at = engine::BookAt {
        position: checkpoint.next_position,
        next_sequence,
        chain_head: &checkpoint.chain_head,
        book: follower.book(),
    };
    match writer.save(at) {
        Ok(Some(_)) => progress.snapshots += 1,
        Ok(None) => {}
        Err(error) => tracing::warn!(
            %error,
            position = checkpoint.next_position,
            "the projector could not write the engine's snapshot; the next interval tries again"
        ),
    }
}

impl Projector {
    /// Opens the projector on `store` over the data directory's file journal
    /// ([`FileSource`]): see [`Projector::open_source`].
    pub fn open(store: Box<dyn Store>, options: ProjectorOptions, rebuild: bool) -> Result<Projector, ProjectorError> {
        let source = FileSource::new(&options.data_dir, options.archive_dir.as_deref());
        Projector::open_source(store, Box::new(source), options, rebuild)
    }

    /// Opens the projector on `store` reading `source`: with `rebuild`, the store is emptied
    /// first. An empty store starts at journal position 0 (or, when the journal no longer holds
    /// it, at the oldest snapshot the journal continues from); a store with a checkpoint resumes
    /// there, its follower book replayed from the newest snapshot at or before it (else from 0).
    /// `options.data_dir` is not read: the source says where its snapshots are.
    pub fn open_source(
        store: Box<dyn Store>,
        source: Box<dyn RecordSource>,
        options: ProjectorOptions,
        rebuild: bool,
    ) -> Result<Projector, ProjectorError> {
        let mut store = store;
        if rebuild {
            store.clear()?;
        }
        let mut cursor = source;
        cursor.seek(0);
        let snapshot_dir = cursor.snapshot_dir().map(Path::to_owned);
        let snapshot_dir = snapshot_dir.as_deref();
        let first_available = cursor.first_available()?.unwrap_or(0);
        let mut changes = Changes::default();
        let (follower, start) = match store::checkpoint(store.as_mut())? {
            None if first_available == 0 => {
                let checkpoint = Checkpoint {
                    next_position: 0,
                    chain_head: CHAIN_HEAD_GENESIS,
                    batches: 0,
                    commands: 0,
                    base_position: 0,
                };
                (Follower::new(Book::new(options.config), checkpoint, 0), Start::Genesis)
            }
            None => {
                let (book, checkpoint, next_sequence) =
                    snapshot_from(snapshot_dir, first_available).ok_or(ProjectorError::NoStart { first_available })?;
                let position = checkpoint.next_position;
                let mut follower = Follower::new(book, checkpoint, next_sequence);
                follower.seed(&mut changes)?;
                (follower, Start::Snapshot(position))
            }
            Some(stored) => {
                let snapshot = snapshot_at_or_before(snapshot_dir, stored.next_position, first_available);
                let (book, checkpoint, next_sequence) = match snapshot {
                    // A snapshot saves replaying everything before it.
                    Some(found) => found,
                    // Nothing to replay from: the journal no longer begins at 0 (a repair moved
                    // it up to a snapshot, since pruned), and the records before it are not in
                    // the archive either.
                    None if first_available > 0 => {
                        return Err(ProjectorError::NoResumePoint { checkpoint: stored.next_position, first_available })
                    }
                    None => (
                        Book::new(options.config),
                        Checkpoint {
                            next_position: 0,
                            chain_head: CHAIN_HEAD_GENESIS,
                            batches: 0,
                            commands: 0,
                            base_position: 0,
                        },
                        0,
                    ),
                };
                let replayed_from = checkpoint.next_position;
                let mut follower = Follower::new(book, checkpoint, next_sequence);
                cursor.seek(replayed_from);
                let target = stored.next_position;
                let mut last_report = Instant::now();
                // A source may return before its end (NATS reads a bounded number of records a
                // poll): poll until the checkpoint or until a poll reads nothing.
                while follower.checkpoint().next_position < target {
                    let polled = cursor.poll(&mut |position, payload| {
                        follower.replay(position, payload)?;
                        if let Some(on_replay) = options.on_replay {
                            if last_report.elapsed() >= PROGRESS_INTERVAL {
                                on_replay(position + 1, target);
                                last_report = Instant::now();
                            }
                        }
                        Ok(if position + 1 >= target { Flow::Stop } else { Flow::Continue })
                    })?;
                    if polled.records == 0 {
                        break;
                    }
                }
                if follower.checkpoint().next_position != target {
                    return Err(ProjectorError::JournalBehind {
                        store: target,
                        journal: follower.checkpoint().next_position,
                    });
                }
                if follower.checkpoint().chain_head != stored.chain_head {
                    return Err(ProjectorError::ChainMismatch { position: target });
                }
                follower.restore_counts(&stored);
                (follower, Start::Resumed { checkpoint: target, replayed_from })
            }
        };
        let mut follower = follower;
        follower.set_whole_bet_rows(options.whole_bet_rows);
        let position = follower.checkpoint().next_position;
        let committed_chain = follower.checkpoint().chain_head;
        let follower_time = follower.book().now();
        cursor.seek(position);
        let mut projector = Projector {
            store: Some(store),
            in_flight: None,
            writer: None,
            spare: None,
            deferred: None,
            poisoned: None,
            follower,
            cursor,
            changes,
            options,
            committed: position,
            committed_chain,
            committed_book_time: follower_time,
            start,
            progress: Progress::default(),
            applied: 0,
            stored: matches!(start, Start::Resumed { .. }),
            gathering_since: None,
        };
        if !projector.changes.is_empty() {
            projector.commit()?;
        }
        projector.progress.position = projector.committed;
        // A resumed store's counters (its checkpoint's), not this process's zero.
        projector.progress.batches = projector.follower.checkpoint().batches;
        projector.progress.commands = projector.follower.checkpoint().commands;
        Ok(projector)
    }

    pub fn start(&self) -> Start {
        self.start
    }

    /// Writes the engine's periodic snapshots through `writer` from now on
    /// ([`ProjectorOptions::snapshots`]; `None`: writes none): for a projector that outlives an
    /// engine (the engine was restarted beside it).
    pub fn set_snapshot_writer(&mut self, writer: Option<engine::SnapshotWriter>) {
        self.options.snapshots = writer;
    }

    /// The journal position the store is at: every batch before it is in the models.
    pub fn position(&self) -> Position {
        self.committed
    }

    /// The journal's hash-chain head at [`Projector::position`].
    pub fn chain_head(&self) -> engine::ChainHead {
        self.committed_chain
    }

    /// Book time of the last batch the store holds (0: none yet). The follower book may be
    /// further on, by the batches of a transaction still gathering or in flight.
    pub fn committed_book_time(&self) -> u64 {
        self.committed_book_time
    }

    /// Journal records written beyond [`Projector::position`] (read but uncommitted, and not
    /// yet read): the projector's lag in batches. Reads segment headers, not payloads.
    pub fn lag(&mut self) -> Result<u64, ProjectorError> {
        let read_uncommitted = self.cursor.next_position().saturating_sub(self.committed);
        Ok(read_uncommitted + self.cursor.records_ahead()?)
    }

    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// The store, once any commit in flight has finished (a failure of that commit is
    /// returned by the next [`Projector::step`]).
    pub fn store(&mut self) -> &mut dyn Store {
        if let Err(error) = self.finish_commit() {
            self.deferred.get_or_insert(error);
        }
        self.store.as_deref_mut().expect("the store is home once no commit is in flight")
    }

    /// The follower book, at the position of the last batch read.
    pub fn book(&self) -> &Book {
        self.follower.book()
    }

    /// Records a successful commit up to `checkpoint`.
    fn committed(&mut self, checkpoint: Checkpoint, rows: u64, book_time: u64) {
        self.stored = true;
        self.committed_book_time = book_time;
        self.progress.rows += rows;
        self.progress.commits += 1;
        self.committed = checkpoint.next_position;
        self.committed_chain = checkpoint.chain_head;
        self.progress.position = self.committed;
        self.progress.batches = checkpoint.batches;
        self.progress.commands = checkpoint.commands;
    }

    /// Waits for the commit in flight, if any, and takes back the store.
    fn finish_commit(&mut self) -> Result<(), ProjectorError> {
        let Some(in_flight) = self.in_flight.take() else { return Ok(()) };
        let writer = self.writer.as_ref().expect("a commit in flight has a writer");
        let began = Instant::now();
        let done = writer.done.recv().map_err(|_| {
            ProjectorError::Store("the projector's commit thread ended with a commit in flight".to_owned())
        })?;
        self.progress.wait_nanos += began.elapsed().as_nanos() as u64;
        self.progress.commit_nanos += done.nanos;
        self.store = Some(done.store);
        self.spare = Some(done.changes);
        if let Err(error) = done.result {
            self.poisoned = Some(error.to_string());
            return Err(error);
        }
        self.committed(in_flight.checkpoint, in_flight.rows, in_flight.book_time);
        Ok(())
    }

    /// Commits the pending changes on this thread.
    fn commit(&mut self) -> Result<(), ProjectorError> {
        self.finish_commit()?;
        let store = self.store.as_deref_mut().expect("the store is home once no commit is in flight");
        let began = Instant::now();
        let result = store.commit(&self.changes, self.stored.then_some(self.committed));
        self.progress.commit_nanos += began.elapsed().as_nanos() as u64;
        result?;
        let rows = self.changes.rows() as u64;
        self.changes.clear();
        self.gathering_since = None;
        self.committed(*self.follower.checkpoint(), rows, self.follower.book().now());
        Ok(())
    }

    /// Hands the pending changes to the writer thread and returns at once; the follower goes
    /// on deciding into an empty `Changes` meanwhile.
    fn commit_in_background(&mut self) -> Result<(), ProjectorError> {
        self.finish_commit()?;
        if self.writer.is_none() {
            self.writer = Some(CommitThread::spawn()?);
        }
        let store = self.store.take().expect("the store is home once no commit is in flight");
        let changes = std::mem::replace(&mut self.changes, self.spare.take().unwrap_or_default());
        self.gathering_since = None;
        let in_flight = InFlight {
            checkpoint: *self.follower.checkpoint(),
            rows: changes.rows() as u64,
            book_time: self.follower.book().now(),
        };
        let job = CommitJob { store, changes, previous: self.stored.then_some(self.committed) };
        let jobs = self.writer.as_ref().and_then(|writer| writer.jobs.as_ref()).expect("a running writer");
        if let Err(mpsc::SendError(job)) = jobs.send(job) {
            self.store = Some(job.store);
            self.changes = job.changes;
            return Err(ProjectorError::Store("the projector's commit thread is gone".to_owned()));
        }
        self.in_flight = Some(in_flight);
        Ok(())
    }

    /// Reads up to one transaction's worth of batches and commits them. Returns the batches
    /// applied and whether the journal may hold more right now.
    ///
    /// With [`ProjectorOptions::pipeline`], a transaction that stopped because it was full
    /// (the journal holds more) is committed on the writer thread while the next `step`
    /// decides; [`Projector::position`] then moves when that commit is done. A `step` that
    /// read to the journal's end commits before it returns, unless the transaction is still
    /// gathering ([`ProjectorOptions::gather`]): then a later step commits it, or
    /// [`Projector::flush`].
    pub fn step(&mut self) -> Result<(u64, bool), ProjectorError> {
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        if let Some(reason) = &self.poisoned {
            return Err(ProjectorError::Store(format!(
                "a commit on the projector's writer thread failed ({reason}); reopen the projector at its store's \
                 checkpoint"
            )));
        }
        let mut applied = 0u64;
        let commit_rows = self.options.commit_rows.max(1);
        let crash_after = self.options.crash_after_batches.map(|limit| limit.saturating_sub(self.applied));
        let follower = &mut self.follower;
        let changes = &mut self.changes;
        let snapshots = self.options.snapshots.as_ref();
        let progress = &mut self.progress;
        let mut crashed = false;
        let began = Instant::now();
        let polled = self.cursor.poll(&mut |position, payload| {
            follower.project(position, payload, changes)?;
            if let Some(writer) = snapshots {
                snapshot_if_due(writer, follower, progress);
            }
            applied += 1;
            if crash_after.is_some_and(|limit| applied >= limit) {
                crashed = true;
                return Ok(Flow::Stop);
            }
            Ok(if changes.rows() >= commit_rows { Flow::Stop } else { Flow::Continue })
        })?;
        self.progress.decide_nanos += began.elapsed().as_nanos() as u64;
        self.applied += applied;
        if crashed {
            // The commit in flight (batches before the last commit point) may land or not,
            // as in a real crash; what was collected since is dropped.
            let _ = self.finish_commit();
            return Err(ProjectorError::CrashForTest { applied: self.applied });
        }
        if self.changes.is_empty() {
            self.finish_commit()?;
        } else if self.options.pipeline && polled.stopped {
            self.commit_in_background()?;
        } else if !polled.stopped && self.gathering() {
            // At the journal's end with nobody waiting: the transaction gathers more.
            self.finish_commit()?;
        } else {
            self.commit()?;
        }
        Ok((applied, polled.stopped))
    }

    /// Whether the pending transaction keeps gathering at the journal's end
    /// ([`ProjectorOptions::gather`]).
    fn gathering(&mut self) -> bool {
        let since = *self.gathering_since.get_or_insert_with(Instant::now);
        let waiting = self.options.readers_waiting.as_ref().is_some_and(|readers| readers.load(Ordering::Acquire) > 0);
        !waiting && since.elapsed() < self.options.gather
    }

    /// Commits what a gathering transaction holds (and waits for a commit in flight): the
    /// store is then at the position of the last batch read. Called when the projector stops;
    /// a projector dropped without it loses only work, which the next one does again.
    pub fn flush(&mut self) -> Result<(), ProjectorError> {
        if self.changes.is_empty() {
            self.finish_commit()
        } else {
            self.commit()
        }
    }

    /// Applies everything the journal holds now and commits it; returns the batches applied.
    /// `report` is called about every [`PROGRESS_INTERVAL`] during a long catch-up.
    pub fn catch_up(&mut self, report: &mut dyn FnMut(&Progress)) -> Result<u64, ProjectorError> {
        let mut applied = 0u64;
        let mut last_report = Instant::now();
        loop {
            let (batches, more) = self.step()?;
            applied += batches;
            if last_report.elapsed() >= PROGRESS_INTERVAL {
                report(&self.progress);
                last_report = Instant::now();
            }
            if !more {
                self.flush()?;
                return Ok(applied);
            }
        }
    }

    /// Catches up, then keeps following the journal until `stop` is set.
    /// `stop` is checked between transactions, so a long catch-up stops promptly too.
    pub fn follow(&mut self, stop: &AtomicBool, report: &mut dyn FnMut(&Progress)) -> Result<(), ProjectorError> {
        let mut last_report = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let (_, more) = self.step()?;
            if last_report.elapsed() >= PROGRESS_INTERVAL && more {
                report(&self.progress);
                last_report = Instant::now();
            }
            if !more {
                std::thread::sleep(FOLLOW_POLL_INTERVAL);
            }
        }
        self.flush()
    }
}
