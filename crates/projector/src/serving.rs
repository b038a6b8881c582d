//! The projector as a service of the process it runs in (`serve`, the gateway's tests): a
//! thread that follows the journal ([`spawn`]), what it publishes to the readers in the same
//! process ([`Published`]: the committed journal position and the chain head there, and whether
//! it is running), and the readers' handle ([`ReadModels`]: a small pool of store connections
//! used off the async runtime, and a bounded wait for a position).
//!
//! **Read-your-writes.** A reader that must see a write waits until the published position is
//! past the write's journal position ([`ReadModels::wait_for`], bounded by the caller). The
//! position is published after the transaction that holds the rows committed, so a reader that
//! sees it also sees the rows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::ChainHead;
use journal::Position;
use std::sync::mpsc;

use tokio::sync::{oneshot, watch, Semaphore};

use crate::projector::{Projector, FOLLOW_POLL_INTERVAL, PROGRESS_INTERVAL};
use crate::query::FirstReply;
use crate::sqlite::SqliteStore;
use crate::store::Store;
use crate::{PostgresStore, ProjectorError};

/// Store connections the readers of one process hold at most (queries beyond it wait for one).
pub const READERS_MAX: usize = 4;

/// What the projector thread is doing, for `/readyz` and the history routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectorState {
    /// Opening its store and replaying to the checkpoint: nothing is published yet.
    Starting,
    /// Following the journal; `position` is what the models hold.
    Running,
    /// Stopped by its owner (shutdown, a test).
    Stopped,
    /// Stopped by an error; the models stay at their last commit.
    Failed(String),
}

/// What the projector publishes to readers in the same process.
#[derive(Debug)]
pub struct Published {
    /// The journal position the models are at (after their last committed batch).
    position: watch::Sender<Position>,
    chain_head: Mutex<ChainHead>,
    state: Mutex<ProjectorState>,
    /// Book time of the last batch the models hold (0: none yet).
    book_time: AtomicU64,
    /// The same position for the engine's journal retention (`EngineHandle::hold_retention`):
    /// segments from it on stay live. 0 until the projector has opened its store.
    hold: Arc<AtomicU64>,
    /// Readers in [`Published::wait_for`]: a gathering transaction commits for them at once
    /// (`ProjectorOptions::readers_waiting`).
    waiting: Arc<AtomicUsize>,
}

impl Default for Published {
    fn default() -> Published {
        Published {
            position: watch::Sender::new(0),
            chain_head: Mutex::new(engine::CHAIN_HEAD_GENESIS),
            state: Mutex::new(ProjectorState::Starting),
            book_time: AtomicU64::new(0),
            hold: Arc::new(AtomicU64::new(0)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Published {
    pub fn new() -> Arc<Published> {
        Arc::new(Published::default())
    }

    /// The journal position the models are at: every batch before it is in them.
    pub fn position(&self) -> Position {
        *self.position.borrow()
    }

    /// The journal's hash-chain head at [`Published::position`].
    pub fn chain_head(&self) -> ChainHead {
        *self.chain_head.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn state(&self) -> ProjectorState {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The committed position, shared with the engine's journal retention, which keeps the
    /// segments from it on live (the projector could read them archived, but more slowly).
    pub fn retention_hold(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.hold)
    }

    /// Book time of the last batch the models hold: every keyed command decided before it has
    /// its first reply in them (0 when they hold none).
    pub fn book_time(&self) -> u64 {
        self.book_time.load(Ordering::Acquire)
    }

    /// Called after a commit: the models hold every batch before `position`, the last of them
    /// decided at `book_time`.
    pub fn publish(&self, position: Position, chain_head: ChainHead, book_time: u64) {
        self.hold.store(position, Ordering::Relaxed);
        self.book_time.store(book_time, Ordering::Release);
        *self.chain_head.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = chain_head;
        self.position.send_if_modified(|current| {
            let moved = position != *current;
            *current = position;
            moved
        });
    }

    pub fn set_state(&self, state: ProjectorState) {
        *self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = state;
    }

    /// Waits until the models are at `position` or past it, at most `timeout`; whether they
    /// are. Cheap when they already are. Counted in [`Published::readers_waiting`] meanwhile.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        if self.position() >= position {
            return true;
        }
        let _waiting = Waiting::new(&self.waiting);
        let mut receiver = self.position.subscribe();
        let reached = matches!(tokio::time::timeout(timeout, receiver.wait_for(|at| *at >= position)).await, Ok(Ok(_)));
        reached
    }

    /// How many readers are in [`Published::wait_for`] now, for the projector
    /// (`ProjectorOptions::readers_waiting`).
    pub fn readers_waiting(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.waiting)
    }
}

/// One reader counted while it waits (also when its future is dropped mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The projector's thread, following the journal into its store until stopped.
#[derive(Debug)]
pub struct ProjectorThread {
    stop: Arc<AtomicBool>,
    published: Arc<Published>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProjectorThread {
    /// The journal position the read models are at (committed).
    pub fn position(&self) -> Position {
        self.published.position()
    }

    pub fn published(&self) -> &Arc<Published> {
        &self.published
    }

    /// Stops after the transaction in progress and waits for the thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if !matches!(self.published.state(), ProjectorState::Failed(_)) {
            self.published.set_state(ProjectorState::Stopped);
        }
    }
}

impl Drop for ProjectorThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// How long the projector waits before reopening after a store or journal failure.
pub const PROJECTOR_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Whether a failure may pass by itself (a full disk, a lost connection, a file being
/// rotated): the projector reopens at its checkpoint and goes on. The others (a divergence,
/// a rewritten journal, a second writer) need an operator.
pub fn transient(error: &ProjectorError) -> bool {
    matches!(error, ProjectorError::Store(_) | ProjectorError::Journal(_))
}

/// Starts a projector on its own thread: `open` opens it (store, follower book, replay to the
/// checkpoint) on that thread, then it follows the journal one transaction at a time,
/// publishing each commit to `published`. A failure is logged and published as
/// [`ProjectorState::Failed`]; a transient one (the store or the journal failing, say a full
/// disk) is retried every [`PROJECTOR_RETRY_INTERVAL`] by opening again at the checkpoint
/// (exactly once: rows and checkpoint commit together), any other ends the projector. Never
/// the process.
pub fn spawn(
    open: impl Fn() -> Result<Projector, ProjectorError> + Send + 'static,
    published: Arc<Published>,
) -> std::io::Result<ProjectorThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let (thread_stop, thread_published) = (stop.clone(), published.clone());
    let thread = std::thread::Builder::new().name("projector".to_owned()).spawn(move || {
        let published = thread_published;
        while !thread_stop.load(Ordering::Relaxed) {
            let error = match open() {
                Ok(mut projector) => match follow(&mut projector, &thread_stop, &published) {
                    Ok(()) => return,
                    Err(error) => error,
                },
                Err(error) => error,
            };
            published.set_state(ProjectorState::Failed(error.to_string()));
            if !transient(&error) {
                tracing::error!(%error, "the projector stopped; read models stay at their last commit");
                return;
            }
            tracing::warn!(%error, retry_in = ?PROJECTOR_RETRY_INTERVAL, "the projector failed; retrying");
            let deadline = Instant::now() + PROJECTOR_RETRY_INTERVAL;
            while Instant::now() < deadline && !thread_stop.load(Ordering::Relaxed) {
                std::thread::sleep(FOLLOW_POLL_INTERVAL);
            }
        }
    })?;
    Ok(ProjectorThread { stop, published, thread: Some(thread) })
}

/// Follows the journal until `stop` is set, publishing each commit.
fn follow(projector: &mut Projector, stop: &AtomicBool, published: &Published) -> Result<(), ProjectorError> {
    tracing::info!(start = ?projector.start(), "projector following the journal");
    published.publish(projector.position(), projector.chain_head(), projector.committed_book_time());
    published.set_state(ProjectorState::Running);
    // One transaction at a time, so a stop request is seen promptly even during a long
    // catch-up.
    let mut last_report = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let (_, more) = projector.step()?;
        published.publish(projector.position(), projector.chain_head(), projector.committed_book_time());
        if more && last_report.elapsed() >= PROGRESS_INTERVAL {
            let progress = projector.progress();
            tracing::info!(position = progress.position, rows = progress.rows, "projector catching up");
            last_report = Instant::now();
        }
        if !more {
            std::thread::sleep(FOLLOW_POLL_INTERVAL);
        }
    }
    // What a gathering transaction holds goes in before the thread ends.
    projector.flush()?;
    published.publish(projector.position(), projector.chain_head(), projector.committed_book_time());
    Ok(())
}

/// Where readers connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadStore {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

impl ReadStore {
    fn open(&self) -> Result<Box<dyn Store>, ProjectorError> {
        Ok(match self {
            ReadStore::Sqlite(path) => Box::new(SqliteStore::open_reader(path)?),
            ReadStore::Postgres { url, schema } => Box::new(PostgresStore::connect(url, schema)?),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ReadStore::Sqlite(_) => "sqlite",
            ReadStore::Postgres { .. } => "postgres",
        }
    }
}

struct ReadInner {
    store: ReadStore,
    published: Arc<Published>,
    idle: Mutex<Vec<Box<dyn Store>>>,
    permits: Semaphore,
    /// The key lookups' thread, started by the first lookup.
    lookups: std::sync::OnceLock<Result<mpsc::Sender<Lookup>, String>>,
}

/// Key lookups one read transaction of the lookups' thread answers at most.
pub const LOOKUPS_PER_READ_MAX: usize = 512;

/// One key lookup waiting for the lookups' thread.
struct Lookup {
    hash: String,
    reply: oneshot::Sender<Result<Option<FirstReply>, ProjectorError>>,
}

/// The lookups' thread: takes every lookup waiting (up to [`LOOKUPS_PER_READ_MAX`]) and
/// answers them in one read transaction on a connection of its own. Every keyed write makes
/// one lookup, so this is on the path of every bet: batching them turns a thread hand-over,
/// a pooled connection and a read transaction per bet into one per batch. Ends when every
/// `ReadModels` handle is gone.
fn answer_lookups(store: ReadStore, receiver: mpsc::Receiver<Lookup>) {
    let mut connection: Option<Box<dyn Store>> = None;
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < LOOKUPS_PER_READ_MAX {
            match receiver.try_recv() {
                Ok(lookup) => batch.push(lookup),
                Err(_) => break,
            }
        }
        let hashes: Vec<String> = batch.iter().map(|lookup| lookup.hash.clone()).collect();
        let found = match &mut connection {
            Some(store) => Ok(store),
            None => store.open().map(|opened| connection.insert(opened)),
        }
        .and_then(|store| crate::query::first_replies(store.as_mut(), &hashes));
        match found {
            Ok(found) => {
                for (lookup, found) in batch.into_iter().zip(found) {
                    let _ = lookup.reply.send(Ok(found));
                }
            }
            Err(error) => {
                // A connection that failed is opened again for the next batch.
                connection = None;
                let message = error.to_string();
                for lookup in batch {
                    let _ = lookup.reply.send(Err(ProjectorError::Store(message.clone())));
                }
            }
        }
    }
}

/// The readers' handle to the models of one store: queries run on the blocking pool, on at most
/// [`READERS_MAX`] connections kept open between queries. Cheap to clone.
#[derive(Clone)]
pub struct ReadModels(Arc<ReadInner>);

impl std::fmt::Debug for ReadModels {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReadModels")
            .field("store", &self.0.store)
            .field("position", &self.0.published.position())
            .finish_non_exhaustive()
    }
}

impl ReadModels {
    pub fn new(store: ReadStore, published: Arc<Published>) -> ReadModels {
        ReadModels(Arc::new(ReadInner {
            store,
            published,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(READERS_MAX),
            lookups: std::sync::OnceLock::new(),
        }))
    }

    /// The first reply of `key` of `account` in the models ([`crate::query::first_reply`]),
    /// answered by the lookups' thread together with the other lookups waiting.
    pub async fn first_reply(&self, account: book::AccountId, key: &str) -> Result<Option<FirstReply>, ProjectorError> {
        let sender = self
            .0
            .lookups
            .get_or_init(|| {
                let (sender, receiver) = mpsc::channel();
                let store = self.0.store.clone();
                std::thread::Builder::new()
                    .name("read-model-keys".to_owned())
                    .spawn(move || answer_lookups(store, receiver))
                    .map(|_| sender)
                    .map_err(|error| format!("cannot start the key lookups' thread: {error}"))
            })
            .clone()
            .map_err(ProjectorError::Store)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Lookup { hash: crate::query::first_reply_hash(account, key), reply })
            .map_err(|_| ProjectorError::Store("the key lookups' thread has stopped".to_owned()))?;
        answer.await.map_err(|_| ProjectorError::Store("the key lookups' thread has stopped".to_owned()))?
    }

    pub fn published(&self) -> &Published {
        &self.0.published
    }

    pub fn kind(&self) -> &'static str {
        self.0.store.kind()
    }

    /// Runs `query` on a connection of the pool, on the blocking pool (never on the async
    /// runtime's threads). A connection that failed is dropped rather than reused.
    pub async fn query<R: Send + 'static>(
        &self,
        query: impl FnOnce(&mut dyn Store) -> Result<R, ProjectorError> + Send + 'static,
    ) -> Result<R, ProjectorError> {
        let _permit =
            self.0.permits.acquire().await.map_err(|_| ProjectorError::Store("the read pool is closed".to_owned()))?;
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let idle = inner.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
            let mut store = match idle {
                Some(store) => store,
                None => inner.store.open()?,
            };
            let result = query(store.as_mut());
            if result.is_ok() {
                inner.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(store);
            }
            result
        })
        .await
        .map_err(|error| ProjectorError::Store(format!("a read-model query did not finish: {error}")))?
    }
}

/// The embedded store's path in a data directory.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("projector").join(crate::SQLITE_FILE_NAME)
}

// ---- models written by a projector in another process (cluster gateways) --------------------

/// How often [`watch_store`] reads the store's checkpoint.
pub const CHECKPOINT_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long [`watch_store`] waits before connecting again after the store failed.
pub const CHECKPOINT_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// A thread publishing the checkpoint of a store another process's projector writes
/// (`sportsbook projector --nats` into PostgreSQL) to `published`, for a gateway's readers
/// ([`ReadModels`] over the same `published`): [`watch_store`]. Stops when dropped.
#[derive(Debug)]
pub struct StoreWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StoreWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the checkpoint of `store` every [`CHECKPOINT_POLL_INTERVAL`] and publishes it: the
/// position (and chain head), and the book time of the last batch the models hold (the newest
/// audit row before the checkpoint). The checkpoint commits in the transaction of its rows, so
/// a reader that sees a published position sees every row before it: read-your-writes holds
/// across processes as it does in one. State: `Starting` until the store has a checkpoint (the
/// projector has not committed yet), `Running` while it is read, `Failed` while the store
/// cannot be read (connected again every [`CHECKPOINT_RETRY_INTERVAL`]); the history routes
/// then answer 503. Whether the projector process itself is alive shows as lag (the stream
/// moves, the checkpoint does not).
pub fn watch_store(store: ReadStore, published: Arc<Published>) -> std::io::Result<StoreWatch> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new().name("read-model-watch".to_owned()).spawn(move || {
        let mut connection: Option<Box<dyn Store>> = None;
        let mut last: Option<Position> = None;
        let mut logged = false;
        while !thread_stop.load(Ordering::Relaxed) {
            let read = match &mut connection {
                Some(opened) => Ok(opened),
                None => store.open().map(|opened| connection.insert(opened)),
            }
            .and_then(|opened| {
                let checkpoint = crate::store::checkpoint(opened.as_mut())?;
                let time = match checkpoint {
                    Some(checkpoint) if Some(checkpoint.next_position) != last => {
                        Some(last_book_time(opened.as_mut(), checkpoint.next_position)?)
                    }
                    _ => None,
                };
                Ok((checkpoint, time))
            });
            let pause = match read {
                Ok((None, _)) => {
                    published.set_state(ProjectorState::Starting);
                    CHECKPOINT_POLL_INTERVAL
                }
                Ok((Some(checkpoint), time)) => {
                    let time = time.unwrap_or_else(|| published.book_time());
                    published.publish(checkpoint.next_position, checkpoint.chain_head, time);
                    published.set_state(ProjectorState::Running);
                    last = Some(checkpoint.next_position);
                    logged = false;
                    CHECKPOINT_POLL_INTERVAL
                }
                Err(error) => {
                    connection = None;
                    if !logged {
                        tracing::warn!(%error, "cannot read the read models' checkpoint; retrying");
                        logged = true;
                    }
                    published.set_state(ProjectorState::Failed(format!("the read models cannot be read: {error}")));
                    CHECKPOINT_RETRY_INTERVAL
                }
            };
            let deadline = Instant::now() + pause;
            while Instant::now() < deadline && !thread_stop.load(Ordering::Relaxed) {
                std::thread::sleep(pause.min(CHECKPOINT_POLL_INTERVAL));
            }
        }
    })?;
    Ok(StoreWatch { stop, thread: Some(thread) })
}

/// Book time of the newest command in the models before `position` (0 when they hold none).
fn last_book_time(store: &mut dyn Store, position: Position) -> Result<u64, ProjectorError> {
    let rows = store.select(&crate::query::Query {
        table: &crate::schema::AUDIT,
        filters: vec![crate::query::Filter::Lt("position", crate::schema::Value::Int(position as i64))],
        order: vec![("position", true), ("ordinal", true)],
        limit: 1,
    })?;
    let at = rows.first().and_then(|row| row.get(crate::schema::AUDIT.index_of("at"))).and_then(|value| value.int());
    Ok(at.map_or(0, |at| at as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_is_counted_while_it_waits_for_the_models() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
        let published = Published::new();
        let waiting = published.readers_waiting();
        runtime.block_on(async {
            assert!(published.wait_for(0, Duration::from_secs(1)).await, "already there: not counted");
            assert_eq!(waiting.load(Ordering::SeqCst), 0);
            let reader = published.wait_for(5, Duration::from_secs(10));
            tokio::pin!(reader);
            // Not there yet: the reader waits, counted.
            assert!(tokio::time::timeout(Duration::from_millis(20), &mut reader).await.is_err());
            assert_eq!(waiting.load(Ordering::SeqCst), 1);
            published.publish(5, engine::CHAIN_HEAD_GENESIS, 1);
            assert!(reader.await, "the models reached 5");
            assert_eq!(waiting.load(Ordering::SeqCst), 0);
            // A reader that gives up (or whose request is dropped) is no longer counted.
            assert!(!published.wait_for(6, Duration::from_millis(10)).await);
            assert_eq!(waiting.load(Ordering::SeqCst), 0);
        });
    }
}
