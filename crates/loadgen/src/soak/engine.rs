//! The soak through the engine in this process: no HTTP. The data directory is opened as
//! `sportsbook serve` opens it (`engine::open_data_dir`: the file journal with a sync per
//! batch, a snapshot every `EngineOptions::snapshot_every_commands`, the default book
//! configuration on the system clock), and the projector follows the journal on its own thread
//! into SQLite or PostgreSQL, as `serve` runs it: its follower book writes the engine's periodic
//! snapshots (`engine::PeriodicSnapshots::External`). Without a projector the engine's snapshot
//! follower writes them. Resident memory is this process's: the book, the projector's follower
//! book (or the snapshot follower's) and the generator (whose own state is small: the open bets'
//! counters and the live markets).
//!
//! Projector lag: a commit hook stamps every durable batch's journal position with the time it
//! was committed (in a ring of `COMMIT_TIMES` entries, no lock); the lag is the time since the
//! oldest batch the projector has not committed, and the records between its position and the
//! journal's end.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use book::{
    AccountId, Ack, BetKind, BetStatus, Command, Config, EventId, Idempotency, LegRequest, MarketId, NewSelection,
    Outcome as ResultOutcome, PlaceBet, PricePolicy, ResultRequest, SelectionId,
};
use domain::{Currency, Money, Odds};
use engine::{EngineHandle, EngineOptions, SystemClock};
use projector::{PostgresStore, Projector, ProjectorOptions, SqliteStore, Store};
use serde::Serialize;

use super::{process_memory, MarketIds, SoakBet, SoakTarget, TargetSample, SELECTIONS};
use crate::stats::Outcome;
use crate::LoadgenError;

/// Batches whose commit time is remembered for the projector's lag (a ring: a lag longer than
/// this many batches is reported from the oldest one still remembered, a lower bound).
const COMMIT_TIMES: usize = 1 << 16;
/// Accounts opened at once during setup.
const SETUP_WAVE: usize = 4_096;
/// A day, in milliseconds: events start a day after they are created (pre-match all run long).
const DAY_MS: u64 = 86_400_000;

/// Where the in-process projector writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum StoreChoice {
    /// The embedded store in the data directory (`projector/read-models.sqlite3`), or this file.
    Sqlite(Option<PathBuf>),
    /// A PostgreSQL database and the schema of the models (emptied first).
    Postgres { url: String, schema: String },
}

#[derive(Clone, Debug)]
pub struct EngineTargetOptions {
    /// The data directory; `None`: a fresh temporary one, removed at the end.
    pub data_dir: Option<PathBuf>,
    /// The projector's store; `None`: no projector.
    pub store: Option<StoreChoice>,
    /// `EngineOptions::snapshot_every_commands` (`serve` uses the default).
    pub snapshot_every_commands: u64,
    /// `serve --resettlement-window`: see [`resettlement_window_ms`].
    pub resettlement_window: Option<Duration>,
    /// `serve --idempotency-window`: journaled like the resettlement window.
    pub idempotency_window: Option<Duration>,
    /// The nice value of the projector's threads (`--projector-nice`; 0, as `serve` runs it).
    pub projector_nice: i32,
    /// `EngineOptions::batch_commands_max` (`--batch-commands-max`; `serve` uses the default).
    pub batch_commands_max: usize,
    pub players: usize,
    /// Bets carry an idempotency key as they do through the gateway.
    pub idempotency_keys: bool,
}

impl Default for EngineTargetOptions {
    fn default() -> EngineTargetOptions {
        EngineTargetOptions {
            data_dir: None,
            store: Some(StoreChoice::Sqlite(None)),
            snapshot_every_commands: EngineOptions::default().snapshot_every_commands,
            resettlement_window: None,
            idempotency_window: None,
            projector_nice: 0,
            batch_commands_max: engine::BATCH_COMMANDS_MAX_DEFAULT,
            players: 10_000,
            idempotency_keys: true,
        }
    }
}

/// The soak's resettlement window in milliseconds, checked against the book's bounds (`None`:
/// the book's default). Like `serve --resettlement-window`, it reaches the book as a journaled
/// `SetResettlementWindow` command after the data directory is opened, not through the
/// `Config` the engine starts with: the snapshot follower copies the engine's book, but the
/// projector replays the journal from a default book, so a window given only as
/// configuration would never reach the projector's book, which would then keep every settled
/// bet for the default seven days (the soak's 300 s runs measured exactly that).
pub fn resettlement_window_ms(window: Option<Duration>) -> Result<Option<u64>, LoadgenError> {
    window_ms("--resettlement-window", window, book::RESETTLEMENT_WINDOW_MIN_MS, book::RESETTLEMENT_WINDOW_MAX_MS)
}

/// The soak's idempotency window in milliseconds, checked like [`resettlement_window_ms`] and
/// journaled the same way.
pub fn idempotency_window_ms(window: Option<Duration>) -> Result<Option<u64>, LoadgenError> {
    window_ms("--idempotency-window", window, book::IDEMPOTENCY_WINDOW_MIN_MS, book::IDEMPOTENCY_WINDOW_MAX_MS)
}

fn window_ms(flag: &str, window: Option<Duration>, min_ms: u64, max_ms: u64) -> Result<Option<u64>, LoadgenError> {
    let Some(window) = window else { return Ok(None) };
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    if !(min_ms..=max_ms).contains(&window_ms) {
        return Err(LoadgenError::Config(format!(
            "{flag} {window:?}: must be between {} s and {} s",
            min_ms / 1_000,
            max_ms / 1_000
        )));
    }
    Ok(Some(window_ms))
}

/// Commit times of recent batches, written by the engine's commit hook: every batch's in a ring
/// of [`COMMIT_TIMES`], and every [`COMMIT_TIMES_COARSE_EVERY`]th batch's in a second ring of
/// the same size, so that a projector far behind (more than `COMMIT_TIMES` records, minutes at
/// these rates) still gets its lag from the commit time of a batch at most that many records
/// before its own, rather than from the oldest batch the first ring remembers (which made long
/// runs report too small a lag).
struct CommitTimes {
    epoch: std::time::Instant,
    /// The journal position after the last durable batch.
    next_position: AtomicU64,
    /// Per slot: position + 1 (0: empty) and nanoseconds since `epoch`.
    ring: Box<[(AtomicU64, AtomicU64)]>,
    /// The same for every `COMMIT_TIMES_COARSE_EVERY`th position.
    coarse: Box<[(AtomicU64, AtomicU64)]>,
}

/// One batch in this many has its commit time kept in the coarse ring (at about 250 batches a
/// second at 15,000 bets/s, the two rings cover 4 minutes exactly and 19 hours to within a
/// second).
const COMMIT_TIMES_COARSE_EVERY: u64 = 256;

fn ring(len: usize) -> Box<[(AtomicU64, AtomicU64)]> {
    (0..len).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect()
}

impl CommitTimes {
    fn new() -> CommitTimes {
        CommitTimes {
            epoch: std::time::Instant::now(),
            next_position: AtomicU64::new(0),
            ring: ring(COMMIT_TIMES),
            coarse: ring(COMMIT_TIMES),
        }
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn committed(&self, position: u64) {
        self.record(position, self.nanos());
    }

    fn record(&self, position: u64, nanos: u64) {
        let store = |ring: &[(AtomicU64, AtomicU64)], index: u64| {
            let slot = &ring[index as usize % COMMIT_TIMES];
            slot.1.store(nanos, Ordering::Release);
            slot.0.store(position + 1, Ordering::Release);
        };
        store(&self.ring, position);
        if position.is_multiple_of(COMMIT_TIMES_COARSE_EVERY) {
            store(&self.coarse, position / COMMIT_TIMES_COARSE_EVERY);
        }
        self.next_position.store(position + 1, Ordering::Release);
    }

    /// When the batch at `position` was committed, if remembered; else when the last batch at
    /// or before it that the coarse ring keeps was (earlier: the lag is then overstated by at
    /// most `COMMIT_TIMES_COARSE_EVERY` batches' time); else the oldest one kept.
    fn committed_at(&self, position: u64) -> Option<u64> {
        let read = |ring: &[(AtomicU64, AtomicU64)], index: u64, position: u64| {
            let slot = &ring[index as usize % COMMIT_TIMES];
            let tag = slot.0.load(Ordering::Acquire);
            let nanos = slot.1.load(Ordering::Acquire);
            (tag == position + 1 && slot.0.load(Ordering::Acquire) == tag).then_some(nanos)
        };
        let coarse = |position: u64| {
            let index = position / COMMIT_TIMES_COARSE_EVERY;
            read(&self.coarse, index, index * COMMIT_TIMES_COARSE_EVERY)
        };
        read(&self.ring, position, position).or_else(|| coarse(position)).or_else(|| {
            let end = self.next_position.load(Ordering::Acquire);
            let oldest = end.saturating_sub((COMMIT_TIMES as u64 - 1) * COMMIT_TIMES_COARSE_EVERY);
            coarse(oldest.next_multiple_of(COMMIT_TIMES_COARSE_EVERY))
        })
    }
}

/// The projector's thread and what it publishes.
struct ProjectorThread {
    stop: Arc<AtomicBool>,
    position: Arc<AtomicU64>,
    rows: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProjectorThread {
    fn spawn(
        data_dir: &Path,
        store: &StoreChoice,
        nice: i32,
        snapshots: Option<engine::SnapshotWriter>,
    ) -> Result<ProjectorThread, LoadgenError> {
        let (store, rebuild): (Box<dyn Store>, bool) = match store {
            StoreChoice::Sqlite(path) => {
                let path = path.clone().unwrap_or_else(|| data_dir.join("projector").join(projector::SQLITE_FILE_NAME));
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|error| LoadgenError::Setup(format!("creating {}: {error}", parent.display())))?;
                }
                let store = SqliteStore::open(&path).map_err(|error| {
                    LoadgenError::Setup(format!("opening the SQLite store {}: {error}", path.display()))
                })?;
                (Box::new(store), false)
            }
            StoreChoice::Postgres { url, schema } => {
                let store = PostgresStore::connect(url, schema)
                    .map_err(|error| LoadgenError::Setup(format!("opening the PostgreSQL store {url}: {error}")))?;
                // A schema left by an earlier run belongs to another journal: start it empty.
                (Box::new(store), true)
            }
        };
        // As `serve` runs it (no reader waits here).
        let options = ProjectorOptions {
            snapshots,
            gather: projector::projector::GATHER_DEFAULT,
            ..ProjectorOptions::new(data_dir)
        };
        let mut projector = Projector::open(store, options, rebuild)
            .map_err(|error| LoadgenError::Setup(format!("opening the projector: {error}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let position = Arc::new(AtomicU64::new(projector.position()));
        let rows = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicBool::new(true));
        let (thread_stop, thread_position, thread_rows, thread_running) =
            (stop.clone(), position.clone(), rows.clone(), running.clone());
        let thread = std::thread::Builder::new()
            .name("projector".to_string())
            .spawn(move || {
                // As `serve` runs it: one transaction at a time (the next decided while one
                // commits), a short sleep when caught up. `--projector-nice`: its commit
                // thread, started from this one, inherits the value.
                if nice > 0 {
                    let _ = engine::lower_thread_priority(nice);
                }
                while !thread_stop.load(Ordering::Relaxed) {
                    match projector.step() {
                        Ok((_, more)) => {
                            thread_position.store(projector.position(), Ordering::Release);
                            thread_rows.store(projector.progress().rows, Ordering::Release);
                            if !more {
                                std::thread::sleep(projector::projector::FOLLOW_POLL_INTERVAL);
                            }
                        }
                        Err(error) => {
                            eprintln!("soak: the projector stopped: {error}");
                            break;
                        }
                    }
                }
                if let Err(error) = projector.flush() {
                    eprintln!("soak: the projector's last commit failed: {error}");
                }
                thread_position.store(projector.position(), Ordering::Release);
                thread_rows.store(projector.progress().rows, Ordering::Release);
                thread_running.store(false, Ordering::Release);
            })
            .map_err(|error| LoadgenError::Setup(format!("starting the projector thread: {error}")))?;
        Ok(ProjectorThread { stop, position, rows, running, thread: Some(thread) })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What setup built, for the result file.
#[derive(Clone, Debug, Serialize)]
pub struct EngineSetup {
    pub data_dir: String,
    pub data_dir_temporary: bool,
    pub store: Option<StoreChoice>,
    pub snapshot_every_commands: u64,
    pub resettlement_window_s: Option<f64>,
    pub idempotency_window_s: Option<f64>,
    pub players: usize,
    pub idempotency_keys: bool,
    pub setup_seconds: f64,
}

pub struct EngineTarget {
    engine: EngineHandle,
    dir: PathBuf,
    temporary: Option<tempfile::TempDir>,
    accounts: Vec<AccountId>,
    run_id: String,
    idempotency_keys: bool,
    commits: Arc<CommitTimes>,
    projector: Mutex<Option<ProjectorThread>>,
    projector_position: Option<Arc<AtomicU64>>,
    projector_rows: Option<Arc<AtomicU64>>,
    projector_running: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for EngineTarget {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("EngineTarget").field("dir", &self.dir).finish()
    }
}

fn setup_error(what: &str) -> impl Fn(String) -> LoadgenError + '_ {
    move |error| LoadgenError::Setup(format!("{what}: {error}"))
}

impl EngineTarget {
    /// Opens the data directory, starts the projector and opens the players' accounts (their
    /// deposits are the soak's own). Blocking: call it off the async runtime's workers.
    pub fn open(options: &EngineTargetOptions) -> Result<(EngineTarget, EngineSetup), LoadgenError> {
        let began = std::time::Instant::now();
        let windows = [
            resettlement_window_ms(options.resettlement_window)?
                .map(|window_ms| Command::SetResettlementWindow { window_ms }),
            idempotency_window_ms(options.idempotency_window)?
                .map(|window_ms| Command::SetIdempotencyWindow { window_ms }),
        ];
        let (dir, temporary) = match &options.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temporary = tempfile::Builder::new()
                    .prefix("sportsbook-soak-")
                    .tempdir()
                    .map_err(|error| setup_error("creating a temporary data directory")(error.to_string()))?;
                (temporary.path().to_path_buf(), Some(temporary))
            }
        };
        let commits = Arc::new(CommitTimes::new());
        let hook_commits = commits.clone();
        let engine_options = EngineOptions {
            snapshot_every_commands: options.snapshot_every_commands,
            batch_commands_max: options.batch_commands_max,
            on_commit: vec![Box::new(move |committed| hook_commits.committed(committed.position))],
            // As `serve` sets it: the projector's follower book writes the periodic snapshots.
            periodic_snapshots: engine::PeriodicSnapshots::by_projector_if(options.store.is_some()),
            ..EngineOptions::default()
        };
        let (engine, report) = engine::open_data_dir(&dir, Config::default(), Box::new(SystemClock), engine_options)
            .map_err(|error| setup_error("opening the data directory")(error.to_string()))?;
        if report.snapshot_position.is_some() || report.replayed_commands > 0 {
            engine.shutdown();
            return Err(LoadgenError::Config(format!(
                "{} already holds a book: the soak needs an empty data directory",
                dir.display()
            )));
        }
        for command in windows.into_iter().flatten() {
            let name = command.name();
            let set = engine.submit(command);
            if !matches!(set, Ok(Ok(_))) {
                engine.shutdown();
                return Err(setup_error(name)(format!("{set:?}")));
            }
        }
        let projector = match &options.store {
            Some(store) => Some(
                ProjectorThread::spawn(&dir, store, options.projector_nice, engine.snapshot_writer())
                    .inspect_err(|_| engine.shutdown())?,
            ),
            None => None,
        };
        let mut accounts = Vec::with_capacity(options.players);
        let opening: Vec<usize> = (0..options.players).collect();
        for wave in opening.chunks(SETUP_WAVE) {
            let receivers = wave
                .iter()
                .map(|_| engine.submit_waiting(Command::OpenAccount { currency: Currency::EUR }))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| setup_error("opening accounts")(error.to_string()))?;
            for receiver in receivers {
                match receiver.recv() {
                    Ok(Ok(Ok(Ack::AccountOpened(account)))) => accounts.push(account),
                    other => return Err(setup_error("opening accounts")(format!("{other:?}"))),
                }
            }
        }
        let run_id = format!(
            "{:x}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis())
        );
        let setup = EngineSetup {
            data_dir: dir.display().to_string(),
            data_dir_temporary: temporary.is_some(),
            store: options.store.clone(),
            snapshot_every_commands: options.snapshot_every_commands,
            resettlement_window_s: options.resettlement_window.map(|window| window.as_secs_f64()),
            idempotency_window_s: options.idempotency_window.map(|window| window.as_secs_f64()),
            players: accounts.len(),
            idempotency_keys: options.idempotency_keys,
            setup_seconds: began.elapsed().as_secs_f64(),
        };
        let target = EngineTarget {
            engine,
            dir,
            temporary,
            accounts,
            run_id,
            idempotency_keys: options.idempotency_keys,
            commits,
            projector_position: projector.as_ref().map(|projector| projector.position.clone()),
            projector_rows: projector.as_ref().map(|projector| projector.rows.clone()),
            projector_running: projector.as_ref().map(|projector| projector.running.clone()),
            projector: Mutex::new(projector),
        };
        Ok((target, setup))
    }

    /// The engine (tests read the book through it).
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The account of player `index`.
    pub fn account(&self, index: usize) -> AccountId {
        self.accounts[index]
    }

    /// The projector's journal position (committed), if it runs.
    pub fn projector_position(&self) -> Option<u64> {
        self.projector_position.as_ref().map(|position| position.load(Ordering::Acquire))
    }

    /// The journal position after the last durable batch.
    pub fn journal_position(&self) -> u64 {
        self.commits.next_position.load(Ordering::Acquire)
    }

    /// Stops the projector, then the engine (which writes its final snapshot), and removes a
    /// temporary data directory. Blocking.
    pub fn finish(&self) {
        if let Some(mut projector) = super::lock(&self.projector).take() {
            projector.stop();
        }
        self.engine.shutdown();
        let _ = &self.temporary;
    }
}

impl Drop for EngineTarget {
    fn drop(&mut self) {
        if let Some(mut projector) = super::lock(&self.projector).take() {
            projector.stop();
        }
    }
}

fn engine_outcome(outcome: Result<engine::Outcome, oneshot::RecvError>) -> Result<Ack, String> {
    match outcome {
        Ok(Ok(Ok(ack))) => Ok(ack),
        Ok(Ok(Err(rejection))) => Err(rejection.code().to_string()),
        Ok(Err(error)) => Err(format!("engine: {error}")),
        Err(_) => Err("engine: no reply".to_string()),
    }
}

async fn decide(engine: &EngineHandle, command: Command) -> Result<Ack, String> {
    let receiver = engine.try_submit(command).map_err(|error| format!("engine: {error}"))?;
    engine_outcome(receiver.await)
}

/// A stable hash of what makes a bet (the gateway hashes the request body).
fn body_hash(bet: &SoakBet) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut mix = |value: u64| {
        hash ^= value;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    mix(bet.player as u64);
    mix(bet.stake_minor);
    for (slot, selection) in &bet.legs {
        mix(slot.index);
        mix(*selection as u64);
    }
    hash
}

impl SoakTarget for EngineTarget {
    fn name(&self) -> &'static str {
        "engine"
    }

    fn player_count(&self) -> usize {
        self.accounts.len()
    }

    fn place(this: &Arc<Self>, bet: SoakBet) -> impl std::future::Future<Output = Outcome> + Send + 'static {
        let legs: Result<Vec<LegRequest>, String> = bet
            .legs
            .iter()
            .map(|(slot, selection)| match &slot.ids {
                MarketIds::Engine { selections, .. } => Ok(LegRequest {
                    selection: SelectionId(selections[*selection]),
                    price: Odds::from_scaled(slot.prices[*selection]).map_err(|error| error.to_string())?,
                }),
                MarketIds::Http { .. } => Err("an HTTP market given to the engine target".to_string()),
            })
            .collect();
        let submitted = legs.map(|legs| {
            let command = Command::PlaceBet(PlaceBet {
                account: this.accounts[bet.player],
                kind: if legs.len() == 1 { BetKind::Single } else { BetKind::Multiple },
                legs,
                stake: Money::from_minor(i64::try_from(bet.stake_minor).unwrap_or(i64::MAX)),
                each_way: false,
                policy: PricePolicy::None,
                idempotency: this.idempotency_keys.then(|| Idempotency {
                    key: format!("soak-{}-{}", this.run_id, bet.sequence),
                    body_hash: body_hash(&bet),
                }),
            });
            this.engine.try_submit(command)
        });
        async move {
            match submitted {
                Err(error) => Outcome::Unexpected { code: error },
                Ok(Err(engine::EngineError::Overloaded)) => {
                    Outcome::Shed { code: "overloaded".to_string(), retry_after_seconds: Some(1) }
                }
                Ok(Err(error)) => Outcome::Unexpected { code: format!("engine: {error}") },
                Ok(Ok(receiver)) => match engine_outcome(receiver.await) {
                    Ok(Ack::BetPlaced { status: BetStatus::Pending, .. }) => Outcome::Pending,
                    Ok(Ack::BetPlaced { .. }) => Outcome::Accepted,
                    Ok(other) => Outcome::Unexpected { code: format!("{other:?}") },
                    Err(code) if code.starts_with("engine") => Outcome::Unexpected { code },
                    Err(code) => Outcome::Rejected { code },
                },
            }
        }
    }

    fn deposit(
        this: &Arc<Self>,
        player: usize,
        amount_minor: i64,
        number: u64,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let command = Command::Deposit {
            account: this.accounts[player],
            amount: Money::from_minor(amount_minor),
            payment_ref: format!("soak-{}-{player}-{number}", this.run_id),
            idempotency: None,
        };
        let submitted = this.engine.try_submit(command).map_err(|error| format!("engine: {error}"));
        async move { engine_outcome(submitted?.await).map(|_| ()) }
    }

    fn open_market(
        this: &Arc<Self>,
        index: u64,
    ) -> impl std::future::Future<Output = Result<MarketIds, String>> + Send + 'static {
        let this = this.clone();
        async move {
            // The book runs on the system clock, as in `serve`.
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
            let starts_at = now_ms + DAY_MS;
            let event = match decide(
                &this.engine,
                Command::CreateEvent {
                    name: format!("Soak {} match {index}", this.run_id),
                    sport: "football".to_string(),
                    competition: "Soak".to_string(),
                    starts_at,
                },
            )
            .await?
            {
                Ack::EventCreated(event) => event,
                other => return Err(format!("creating an event: {other:?}")),
            };
            let prices = super::market_prices(index);
            let selections = ["Home", "Draw", "Away"]
                .iter()
                .zip(prices)
                .map(|(name, price)| {
                    Ok(NewSelection {
                        name: (*name).to_string(),
                        price: Odds::from_scaled(price).map_err(|error| error.to_string())?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let created = decide(
                &this.engine,
                Command::CreateMarket {
                    event: EventId(event.0),
                    name: "Match result".to_string(),
                    kind: "1x2".to_string(),
                    selections,
                    each_way: None,
                },
            )
            .await?;
            match created {
                Ack::MarketCreated { market, selections } => {
                    let selections: [u64; SELECTIONS] = selections
                        .iter()
                        .map(|selection| selection.0)
                        .collect::<Vec<_>>()
                        .try_into()
                        .map_err(|_| "a market without three selections".to_string())?;
                    Ok(MarketIds::Engine { market: market.0, selections })
                }
                other => Err(format!("creating a market: {other:?}")),
            }
        }
    }

    fn settle_market(
        this: &Arc<Self>,
        ids: MarketIds,
        winner: usize,
    ) -> impl std::future::Future<Output = Result<u64, String>> + Send + 'static {
        let submitted = match ids {
            MarketIds::Engine { market, selections } => this
                .engine
                .try_submit(Command::SettleMarket {
                    market: MarketId(market),
                    results: vec![ResultRequest {
                        selection: SelectionId(selections[winner]),
                        outcome: ResultOutcome::Win,
                        dead_heat: None,
                        void_factor: None,
                    }],
                })
                .map_err(|error| format!("engine: {error}")),
            MarketIds::Http { .. } => Err("an HTTP market given to the engine target".to_string()),
        };
        async move {
            match engine_outcome(submitted?.await)? {
                Ack::Settled { bets } => Ok(u64::from(bets)),
                other => Err(format!("settling: {other:?}")),
            }
        }
    }

    fn sample(this: &Arc<Self>) -> impl std::future::Future<Output = TargetSample> + Send + 'static {
        let (rss, hwm) = process_memory(None);
        let stats = this.engine.stats();
        let snapshot_max = [
            &stats.snapshot_nanos_max_follower,
            &stats.snapshot_nanos_max_sequencer,
            &stats.snapshot_nanos_max_external,
            &stats.snapshot_nanos_max_catch_up,
        ]
        .iter()
        .map(|max| max.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
        let end = this.commits.next_position.load(Ordering::Acquire);
        let (lag_records, lag) = match &this.projector_position {
            Some(position) => {
                let position = position.load(Ordering::Acquire);
                let records = end.saturating_sub(position);
                let lag = if records == 0 {
                    Duration::ZERO
                } else {
                    this.commits
                        .committed_at(position)
                        .map_or(Duration::ZERO, |at| Duration::from_nanos(this.commits.nanos().saturating_sub(at)))
                };
                // A stopped projector has no lag to report: it will never catch up.
                let running = this.projector_running.as_ref().is_some_and(|running| running.load(Ordering::Acquire));
                if running || records == 0 {
                    (Some(records), Some(lag))
                } else {
                    (None, None)
                }
            }
            None => (None, None),
        };
        let sample = TargetSample {
            rss_bytes: rss,
            hwm_bytes: hwm,
            pause_max: Some(stats.take_recent_pause_max()),
            work_max: Some(stats.take_recent_work_max()),
            cpu_max: Some(stats.take_recent_cpu_max()),
            snapshots: Some(stats.snapshots.load(Ordering::Relaxed)),
            snapshot_max: Some(Duration::from_nanos(snapshot_max)),
            lag_records,
            lag,
            projector_rows: this.projector_rows.as_ref().map(|rows| rows.load(Ordering::Acquire)),
        };
        std::future::ready(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch's commit time is exact within the last `COMMIT_TIMES` batches and, further back,
    /// the time of the last coarse batch at or before it: never later than its own.
    #[test]
    fn commit_times_cover_a_projector_far_behind() {
        let times = CommitTimes::new();
        let end = 3 * COMMIT_TIMES as u64 + 1_000;
        for position in 0..end {
            times.record(position, position * 1_000);
        }
        assert_eq!(times.committed_at(end - 1), Some((end - 1) * 1_000));
        assert_eq!(times.committed_at(end - COMMIT_TIMES as u64), Some((end - COMMIT_TIMES as u64) * 1_000));
        let far = end - 2 * COMMIT_TIMES as u64 - 77;
        let coarse = far / COMMIT_TIMES_COARSE_EVERY * COMMIT_TIMES_COARSE_EVERY;
        assert_eq!(times.committed_at(far), Some(coarse * 1_000));
        assert_eq!(times.committed_at(0), Some(0));
    }
}
