//! The soak profile (issue 12, "How it is checked"): markets opened, bet on and settled in a
//! cycle, players recycled, so that the book's open state stays about constant while tens of
//! millions of bets pass through it. What grows with the bets that passed (and not with the
//! bets open) is what the book keeps for ever.
//!
//! **The cycle.** `live_markets` markets take bets at any time. Each bet picks one of them at
//! random (two distinct ones for a multiple). A market takes `quota` bets
//! (`2 × open_bets / live_markets`), then is retired: it takes no more bets, a new market
//! replaces it, and once every bet sent to it has been answered it is settled (its first
//! selection wins for even indexes, the others in turn). The first generation's quotas are
//! staggered (`quota × (i + 1) / live_markets`), so markets retire one after another instead of
//! all at once, and the live markets hold between 0 and `quota` bets each: about `open_bets`
//! in all. A multiple stays open until its last market is settled.
//!
//! **Players.** Each player starts with one deposit of `DEPOSIT_MINOR`; the generator keeps an
//! estimate of each balance (deposits less stakes; winnings are not counted, so the estimate is
//! never above the real balance) and deposits again before a stake would take it below zero.
//!
//! **Targets.** The same dispatcher, cycle and report run against the engine in this process
//! (`engine.rs`: no HTTP, the file journal and snapshots as `serve` sets them up, the projector
//! following on its own thread) or a running `sportsbook serve` over HTTP (`http.rs`).
//!
//! **Measured**, per window (10 s by default): bets per second, placement latency (p50, p99,
//! max: from the intended send time, so a stalled server or generator shows), resident memory
//! (`VmRSS`, `VmHWM`: of this process in engine mode, of the server over HTTP), the longest
//! sequencer pause (`EngineStats` / `sportsbook_sequencer_pause_seconds_interval_max`),
//! snapshots written, the projector's lag in journal records and in time (and its p99 over the
//! window's samples), and rows per second into the read-model store. The aims of the issue are
//! printed as PASS or MISS with the figure; a run never fails on an aim.

pub mod engine;
pub mod http;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;

use crate::stats::{latency_histogram, micros, quantile_ms, Outcome};
use crate::workload::{SplitMix64, PRICE_SCALE};
use crate::{LoadgenError, Machine};

/// Selections of every soak market (home, draw, away).
pub const SELECTIONS: usize = 3;
/// What a player deposits each time (EUR 10,000.00; the book's default cap is 100,000.00).
pub const DEPOSIT_MINOR: i64 = 1_000_000;
/// Live markets at most, and open bets aimed at at most.
pub const LIVE_MARKETS_MAX: usize = 100_000;
pub const OPEN_BETS_MAX: u64 = 100_000_000;
/// Players at most (engine mode opens accounts without passwords; over HTTP each costs two
/// argon2 hashes, see `http::PLAYERS_MAX`).
pub const PLAYERS_MAX: usize = 1_000_000;
/// Legs of a multiple in the soak mix.
pub const MULTIPLE_LEGS: usize = 2;
/// The aims.
pub const AIM_MEMORY_BYTES: u64 = 1 << 30;
pub const AIM_OPEN_BETS: u64 = 100_000;
pub const AIM_P99_MS: f64 = 25.0;
pub const AIM_P99_RATE: f64 = 15_000.0;
pub const AIM_PAUSE_MS: f64 = 5.0;
pub const AIM_LAG_MS: f64 = 1_000.0;
pub const AIM_LAG_RATE: f64 = 20_000.0;
/// How long the end of a run waits for the projector to catch up before reporting it behind.
pub const CATCH_UP_WAIT_MAX: Duration = Duration::from_secs(120);
/// The largest projector lag the histograms hold (an hour; longer lags are recorded as this).
const LAG_MICROS_MAX: u64 = 3_600_000_000;

fn lag_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LAG_MICROS_MAX, 2).expect("valid histogram bounds")
}

/// Everything a soak run needs besides its target.
#[derive(Clone, Debug, Serialize)]
pub struct SoakOptions {
    /// Bets offered per second; `None`: flat out (as many as `concurrency` in flight allow).
    pub rate: Option<f64>,
    /// Bets in the run at most.
    pub bets: u64,
    /// The run ends after this long even if bets remain.
    pub duration: Option<Duration>,
    /// Open bets aimed at (about; see the module's notes).
    pub open_bets: u64,
    pub live_markets: usize,
    pub players: usize,
    pub multiple_percent: u32,
    pub stake_minor_min: u64,
    pub stake_minor_max: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    #[serde(serialize_with = "seconds")]
    pub request_timeout: Duration,
    /// Length of a report window.
    #[serde(serialize_with = "seconds")]
    pub window: Duration,
    /// How often the target is sampled (memory, pauses, projector lag).
    #[serde(serialize_with = "seconds")]
    pub sample_every: Duration,
    pub seed: u64,
    /// The run stops sending early when the target's resident memory passes this (a guard for
    /// a shared machine: before the bounded book, memory grows with every bet).
    pub rss_max_bytes: Option<u64>,
    /// Progress lines on standard error.
    #[serde(skip)]
    pub progress: bool,
}

fn seconds<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

impl SoakOptions {
    /// Bets a market takes before it is retired and settled.
    pub fn quota(&self) -> u64 {
        (2 * self.open_bets / self.live_markets.max(1) as u64).max(1)
    }

    pub fn check(&self) -> Result<(), LoadgenError> {
        let fail = |message: String| Err(LoadgenError::Config(message));
        if !(1..=LIVE_MARKETS_MAX).contains(&self.live_markets) {
            return fail(format!("--live-markets must be 1 to {LIVE_MARKETS_MAX}"));
        }
        if self.multiple_percent > 0 && self.live_markets < MULTIPLE_LEGS {
            return fail(format!("multiples need at least {MULTIPLE_LEGS} live markets"));
        }
        if !(1..=OPEN_BETS_MAX).contains(&self.open_bets) {
            return fail(format!("--open-bets must be 1 to {OPEN_BETS_MAX}"));
        }
        if !(1..=PLAYERS_MAX).contains(&self.players) {
            return fail(format!("--players must be 1 to {PLAYERS_MAX}"));
        }
        if self.multiple_percent > 100 {
            return fail("--multiple-percent must be at most 100".to_string());
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return fail(format!("--rate {rate}: must be above 0 (or 0 for flat out)"));
            }
        }
        if self.stake_minor_min == 0 || self.stake_minor_min > self.stake_minor_max {
            return fail("stakes: 0 < min <= max".to_string());
        }
        if u64::try_from(DEPOSIT_MINOR).unwrap_or(0) < self.stake_minor_max {
            return fail("a stake must fit in one deposit".to_string());
        }
        if self.window < Duration::from_secs(1) || self.sample_every.is_zero() || self.sample_every > self.window {
            return fail("the window must be at least 1 s and sampled at least once in it".to_string());
        }
        if self.concurrency == 0 || self.concurrency > crate::driver::CONCURRENCY_MAX {
            return fail(format!("--concurrency must be 1 to {}", crate::driver::CONCURRENCY_MAX));
        }
        Ok(())
    }
}

/// The book's ids of one market, as the target names them.
#[derive(Clone, Debug)]
pub enum MarketIds {
    Engine { market: u64, selections: [u64; SELECTIONS] },
    Http { market: String, selections: [String; SELECTIONS] },
}

/// The prices of market `index` in ten-thousandths: fixed for the market's life (nothing moves
/// them, so a bet's price is always the book's).
pub fn market_prices(index: u64) -> [u32; SELECTIONS] {
    let tick = PRICE_SCALE / 100;
    [150 + (index % 7) as u32 * 25, 320, 200 + (index % 5) as u32 * 40].map(|hundredths| hundredths * tick)
}

/// The selection that wins market `index`.
pub fn market_winner(index: u64) -> usize {
    (index % SELECTIONS as u64) as usize
}

/// One market of the cycle.
#[derive(Debug)]
pub struct MarketSlot {
    pub index: u64,
    pub ids: MarketIds,
    pub prices: [u32; SELECTIONS],
    quota: u64,
    /// Bets sent to it (dispatcher only).
    assigned: AtomicU64,
    /// Bets sent and not yet answered.
    in_flight: AtomicU64,
    retired: AtomicBool,
    answered: Notify,
    /// Accepted singles on it, and the open-leg counters of accepted multiples with a leg on it.
    singles: AtomicU64,
    multiples: Mutex<Vec<Arc<AtomicU32>>>,
}

impl MarketSlot {
    fn new(index: u64, ids: MarketIds, quota: u64) -> MarketSlot {
        MarketSlot {
            index,
            ids,
            prices: market_prices(index),
            quota,
            assigned: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            answered: Notify::new(),
            singles: AtomicU64::new(0),
            multiples: Mutex::new(Vec::new()),
        }
    }

    /// Waits until every bet sent to this (retired) market has been answered.
    async fn drained(&self) {
        loop {
            let notified = self.answered.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Bets this market's settlement closes: its singles, and the multiples whose last open
    /// leg it was.
    fn closed_by_settlement(&self) -> u64 {
        let multiples = std::mem::take(&mut *lock(&self.multiples));
        let last_legs = multiples.iter().filter(|open| open.fetch_sub(1, Ordering::AcqRel) == 1).count();
        self.singles.load(Ordering::Acquire) + last_legs as u64
    }
}

/// One bet of the soak.
#[derive(Clone, Debug)]
pub struct SoakBet {
    pub sequence: u64,
    pub player: usize,
    /// (market, selection index) per leg.
    pub legs: Vec<(Arc<MarketSlot>, usize)>,
    pub stake_minor: u64,
}

/// What a target reports when sampled. `None`: not known to this target.
#[derive(Clone, Debug, Default)]
pub struct TargetSample {
    pub rss_bytes: Option<u64>,
    pub hwm_bytes: Option<u64>,
    /// The longest sequencer pause since the last sample.
    pub pause_max: Option<Duration>,
    /// The longest sequencer cycle without the journal's write and sync since the last sample.
    pub work_max: Option<Duration>,
    /// The most CPU time of one sequencer cycle since the last sample (its thread's clock):
    /// beside `pause_max`, the part of a pause that was the sequencer's own work.
    pub cpu_max: Option<Duration>,
    /// Snapshots written since the start (by either writer).
    pub snapshots: Option<u64>,
    /// The longest snapshot so far.
    pub snapshot_max: Option<Duration>,
    /// Journal records written and not yet in the read models.
    pub lag_records: Option<u64>,
    /// Time since the oldest batch not yet in the read models was committed (0 when none).
    pub lag: Option<Duration>,
    /// Rows the projector has committed since the start.
    pub projector_rows: Option<u64>,
}

/// Where a soak's commands go.
pub trait SoakTarget: Send + Sync + 'static {
    /// A short name for reports: `engine` or `http`.
    fn name(&self) -> &'static str;
    fn player_count(&self) -> usize;
    /// Places a bet. Anything that must happen in order with later calls (submitting to the
    /// engine's inbox) happens before this returns; the future waits for the answer.
    fn place(this: &Arc<Self>, bet: SoakBet) -> impl Future<Output = Outcome> + Send + 'static;
    /// Deposits `amount_minor` for `player`; `number` makes its payment reference unique.
    fn deposit(
        this: &Arc<Self>,
        player: usize,
        amount_minor: i64,
        number: u64,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static;
    /// Opens market `index` (and its event) with `market_prices(index)`.
    fn open_market(this: &Arc<Self>, index: u64) -> impl Future<Output = Result<MarketIds, String>> + Send + 'static;
    /// Settles a market: `winner` wins, the others lose. Returns the bets the book settled.
    fn settle_market(
        this: &Arc<Self>,
        ids: MarketIds,
        winner: usize,
    ) -> impl Future<Output = Result<u64, String>> + Send + 'static;
    /// Memory, pauses, snapshots and the projector, as far as this target can tell.
    fn sample(this: &Arc<Self>) -> impl Future<Output = TargetSample> + Send + 'static;
}

/// Counts of one window, filled by the tasks as answers come.
#[derive(Clone, Debug)]
struct WindowCounts {
    sent: u64,
    accepted: u64,
    rejected: BTreeMap<String, u64>,
    failed: BTreeMap<String, u64>,
    late_sends: u64,
    latency: Histogram<u64>,
    deposits: u64,
    deposit_failures: u64,
    markets_opened: u64,
    markets_settled: u64,
    bets_settled_by_book: u64,
    settle_failures: u64,
    lag: Histogram<u64>,
    pause_max: Duration,
    work_max: Duration,
    cpu_max: Duration,
}

impl WindowCounts {
    fn new() -> WindowCounts {
        WindowCounts {
            sent: 0,
            accepted: 0,
            rejected: BTreeMap::new(),
            failed: BTreeMap::new(),
            late_sends: 0,
            latency: latency_histogram(2),
            deposits: 0,
            deposit_failures: 0,
            markets_opened: 0,
            markets_settled: 0,
            bets_settled_by_book: 0,
            settle_failures: 0,
            lag: lag_histogram(),
            pause_max: Duration::ZERO,
            work_max: Duration::ZERO,
            cpu_max: Duration::ZERO,
        }
    }
}

/// One window of the report.
#[derive(Clone, Debug, Serialize)]
pub struct WindowReport {
    pub window: u64,
    pub end_s: f64,
    pub bets_sent: u64,
    pub bets_accepted: u64,
    pub accepted_per_second: f64,
    pub rejected: BTreeMap<String, u64>,
    pub failed: BTreeMap<String, u64>,
    pub late_sends: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Accepted bets not yet closed by a settlement, at the window's end (the generator's count:
    /// a multiple counts until its last market is settled, while the book settles it as lost
    /// at its first losing leg, so this is an upper bound of the book's open bets).
    pub open_bets: u64,
    pub bets_total: u64,
    pub markets_opened: u64,
    pub markets_settled: u64,
    pub deposits: u64,
    pub rss_mib: Option<f64>,
    pub hwm_mib: Option<f64>,
    pub sequencer_pause_max_ms: Option<f64>,
    /// The same without the journal's write and sync (the sequencer's own work).
    pub sequencer_work_max_ms: Option<f64>,
    /// The most CPU time of one sequencer cycle (engine target only).
    pub sequencer_cpu_max_ms: Option<f64>,
    pub snapshots_in_window: Option<u64>,
    pub snapshots_total: Option<u64>,
    pub snapshot_max_s: Option<f64>,
    pub projector_lag_records: Option<u64>,
    pub projector_lag_ms: Option<f64>,
    pub projector_lag_p99_ms: Option<f64>,
    pub projector_lag_max_ms: Option<f64>,
    pub rows_per_second: Option<f64>,
}

/// One aim of the issue and how the run did.
#[derive(Clone, Debug, Serialize)]
pub struct Aim {
    pub aim: String,
    /// `PASS`, `MISS`, or `n/a` when the run cannot tell (with the reason in `figure`).
    pub verdict: &'static str,
    pub figure: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SoakTotals {
    pub seconds: f64,
    pub bets_sent: u64,
    pub bets_accepted: u64,
    pub accepted_per_second: f64,
    pub rejected: BTreeMap<String, u64>,
    pub failed: BTreeMap<String, u64>,
    pub late_sends: u64,
    pub missed_sends: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub markets_opened: u64,
    pub markets_settled: u64,
    pub bets_closed_by_settlement: u64,
    pub bets_settled_by_book: u64,
    pub settle_failures: u64,
    pub deposits: u64,
    pub deposit_failures: u64,
    pub open_bets_end: u64,
    pub open_bets_max: u64,
    pub rss_max_mib: Option<f64>,
    pub hwm_mib: Option<f64>,
    pub sequencer_pause_max_ms: Option<f64>,
    pub sequencer_work_max_ms: Option<f64>,
    pub sequencer_cpu_max_ms: Option<f64>,
    pub snapshots: Option<u64>,
    pub projector_lag_p99_ms: Option<f64>,
    pub projector_lag_max_ms: Option<f64>,
    pub projector_rows: Option<u64>,
    /// Why the run stopped before its bets or duration, if it did.
    pub stopped_early: Option<String>,
    /// After the last bet: how long the projector took to catch up (engine mode), if it did.
    pub projector_catch_up_s: Option<f64>,
}

/// The JSON result of a soak run.
#[derive(Clone, Debug, Serialize)]
pub struct SoakResult {
    pub profile: &'static str,
    pub target: String,
    pub options: SoakOptions,
    pub quota_per_market: u64,
    pub setup: serde_json::Value,
    pub machine: Machine,
    pub windows: Vec<WindowReport>,
    pub total: SoakTotals,
    pub aims: Vec<Aim>,
}

/// State shared by the dispatcher, the answer tasks, the market cycle and the sampler.
struct Shared {
    /// Set by the sampler when memory passes `rss_max_bytes`.
    memory_stop: Mutex<Option<String>>,
    window: Mutex<WindowCounts>,
    all: Mutex<WindowCounts>,
    accepted: AtomicU64,
    closed: AtomicU64,
    sent: AtomicU64,
    settled_book: AtomicU64,
}

impl Shared {
    fn with<R>(&self, update: impl Fn(&mut WindowCounts) -> R) -> R {
        update(&mut lock(&self.all));
        update(&mut lock(&self.window))
    }

    fn open_bets(&self) -> u64 {
        self.accepted.load(Ordering::Acquire).saturating_sub(self.closed.load(Ordering::Acquire))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Opens a market and hands it to the dispatcher.
async fn open_slot<T: SoakTarget>(target: &Arc<T>, index: u64, quota: u64) -> Result<Arc<MarketSlot>, String> {
    let ids = T::open_market(target, index).await?;
    Ok(Arc::new(MarketSlot::new(index, ids, quota)))
}

/// Settles a retired market once every bet sent to it has been answered.
async fn settle_slot<T: SoakTarget>(target: Arc<T>, slot: Arc<MarketSlot>, shared: Arc<Shared>) {
    slot.drained().await;
    match T::settle_market(&target, slot.ids.clone(), market_winner(slot.index)).await {
        Ok(bets) => {
            let closed = slot.closed_by_settlement();
            shared.closed.fetch_add(closed, Ordering::AcqRel);
            shared.settled_book.fetch_add(bets, Ordering::Relaxed);
            shared.with(|counts| {
                counts.markets_settled += 1;
                counts.bets_settled_by_book += bets;
            });
        }
        Err(error) => {
            eprintln!("soak: settling market {}: {error}", slot.index);
            shared.with(|counts| counts.settle_failures += 1);
        }
    }
}

/// The market cycle: a replacement for every retired market, and its settlement.
async fn cycle<T: SoakTarget>(
    target: Arc<T>,
    shared: Arc<Shared>,
    mut retired: mpsc::UnboundedReceiver<Arc<MarketSlot>>,
    opened: mpsc::UnboundedSender<Arc<MarketSlot>>,
    mut next_index: u64,
    quota: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut settlements = Vec::new();
    while let Some(slot) = retired.recv().await {
        settlements.retain(|task: &tokio::task::JoinHandle<()>| !task.is_finished());
        settlements.push(tokio::spawn(settle_slot(target.clone(), slot, shared.clone())));
        // The replacement; a failure is retried (the dispatcher bets on the others meanwhile).
        let index = next_index;
        next_index += 1;
        let mut attempts = 0;
        loop {
            match open_slot(&target, index, quota).await {
                Ok(slot) => {
                    shared.with(|counts| counts.markets_opened += 1);
                    if opened.send(slot).is_err() {
                        return settlements;
                    }
                    break;
                }
                Err(error) => {
                    attempts += 1;
                    eprintln!("soak: opening market {index} (attempt {attempts}): {error}");
                    if attempts >= 5 {
                        return settlements;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    settlements
}

/// Runs the soak against `target` (players already set up by the target). Returns the result;
/// `setup` is the target's own account of its setup, put into the result as it is.
pub async fn run<T: SoakTarget>(
    target: Arc<T>,
    options: &SoakOptions,
    setup: serde_json::Value,
) -> Result<SoakResult, LoadgenError> {
    options.check()?;
    let players = target.player_count();
    if players == 0 {
        return Err(LoadgenError::Setup("the target has no players".to_string()));
    }
    let quota = options.quota();
    let live_count = options.live_markets;
    let shared = Arc::new(Shared {
        memory_stop: Mutex::new(None),
        window: Mutex::new(WindowCounts::new()),
        all: Mutex::new(WindowCounts::new()),
        accepted: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        settled_book: AtomicU64::new(0),
    });

    // Players' first deposits, then the first generation of markets (staggered quotas).
    let mut balances = vec![0i64; players];
    let mut deposit_numbers = vec![0u64; players];
    let mut first = Vec::with_capacity(players);
    for player in 0..players {
        first.push(T::deposit(&target, player, DEPOSIT_MINOR, 0));
        balances[player] = DEPOSIT_MINOR;
        deposit_numbers[player] = 1;
    }
    for deposit in futures_util::future::join_all(first).await {
        deposit.map_err(|error| LoadgenError::Setup(format!("first deposits: {error}")))?;
    }
    let mut live: Vec<Arc<MarketSlot>> = Vec::with_capacity(live_count);
    let generation: Vec<_> = (0..live_count as u64)
        .map(|index| {
            let staggered = (quota * (index + 1) / live_count as u64).max(1);
            let target = target.clone();
            async move { open_slot(&target, index, staggered).await }
        })
        .collect();
    for slot in futures_util::future::join_all(generation).await {
        live.push(slot.map_err(|error| LoadgenError::Setup(format!("opening the first markets: {error}")))?);
    }
    shared.with(|counts| counts.markets_opened += live_count as u64);

    let (retire, retired) = mpsc::unbounded_channel();
    let (opened_tx, mut opened) = mpsc::unbounded_channel();
    let cycle_task = tokio::spawn(cycle(target.clone(), shared.clone(), retired, opened_tx, live_count as u64, quota));

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_loop(target.clone(), shared.clone(), options.clone(), start, stop.clone()));

    let slots = Arc::new(Semaphore::new(options.concurrency));
    let interval = options.rate.map(|rate| Duration::from_secs_f64(1.0 / rate));
    let ends_at = options.duration.map(|duration| start + duration);
    let mut missed = 0u64;
    let mut sequence = 0u64;
    while sequence < options.bets {
        let now = Instant::now();
        if ends_at.is_some_and(|end| now >= end)
            || (sequence.is_multiple_of(1_024) && lock(&shared.memory_stop).is_some())
        {
            break;
        }
        let intended = match interval {
            Some(interval) => {
                let intended = start + interval.mul_f64(sequence as f64);
                if intended > now {
                    tokio::time::sleep_until(intended).await;
                }
                intended
            }
            None => now,
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => slots.clone().acquire_owned().await.expect("the semaphore is never closed"),
        };
        while let Ok(slot) = opened.try_recv() {
            live.push(slot);
        }
        if live.len() < MULTIPLE_LEGS.min(live_count) {
            // Every live market retired and no replacement yet: wait for one.
            match tokio::time::timeout(Duration::from_secs(30), opened.recv()).await {
                Ok(Some(slot)) => live.push(slot),
                _ => {
                    eprintln!("soak: no market to bet on for 30 s (opening markets fails); stopping");
                    break;
                }
            }
            continue;
        }
        let mut random = SplitMix64::new(options.seed ^ sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let player = (random.next_u64() % players as u64) as usize;
        let stake_minor = random.between(options.stake_minor_min, options.stake_minor_max);
        let leg_count = if random.percent(options.multiple_percent) { MULTIPLE_LEGS } else { 1 };
        let mut picked: Vec<usize> = Vec::with_capacity(leg_count);
        while picked.len() < leg_count {
            let index = (random.next_u64() % live.len() as u64) as usize;
            if !picked.contains(&index) {
                picked.push(index);
            }
        }
        let legs: Vec<(Arc<MarketSlot>, usize)> = picked
            .iter()
            .map(|&index| (live[index].clone(), (random.next_u64() % SELECTIONS as u64) as usize))
            .collect();
        // Retire the markets that reached their quota (highest index first: removal by swap).
        picked.sort_unstable_by(|a, b| b.cmp(a));
        for index in picked {
            let slot = &live[index];
            slot.in_flight.fetch_add(1, Ordering::AcqRel);
            if slot.assigned.fetch_add(1, Ordering::AcqRel) + 1 >= slot.quota {
                slot.retired.store(true, Ordering::Release);
                let slot = live.swap_remove(index);
                let _ = retire.send(slot);
            }
        }
        // Deposit first when the estimate would go below zero: in engine mode it is in the
        // inbox before the bet.
        let stake = i64::try_from(stake_minor).unwrap_or(i64::MAX);
        if balances[player] < stake {
            let number = deposit_numbers[player];
            deposit_numbers[player] += 1;
            balances[player] += DEPOSIT_MINOR;
            let deposit = T::deposit(&target, player, DEPOSIT_MINOR, number);
            let shared = shared.clone();
            tokio::spawn(async move {
                let failed = deposit.await.is_err();
                shared.with(|counts| {
                    counts.deposits += 1;
                    counts.deposit_failures += u64::from(failed);
                });
            });
        }
        balances[player] -= stake;
        let bet = SoakBet { sequence, player, legs: legs.clone(), stake_minor };
        let answer = T::place(&target, bet);
        let late = Instant::now().saturating_duration_since(intended) > crate::stats::LATE_SEND_THRESHOLD;
        shared.sent.fetch_add(1, Ordering::Relaxed);
        let shared_task = shared.clone();
        let timeout = options.request_timeout;
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(timeout, answer).await.unwrap_or(Outcome::Timeout);
            let latency = Instant::now().saturating_duration_since(intended);
            if outcome == Outcome::Accepted || outcome == Outcome::Pending {
                shared_task.accepted.fetch_add(1, Ordering::AcqRel);
                if legs.len() == 1 {
                    legs[0].0.singles.fetch_add(1, Ordering::AcqRel);
                } else {
                    let open = Arc::new(AtomicU32::new(legs.len() as u32));
                    for (slot, _) in &legs {
                        lock(&slot.multiples).push(open.clone());
                    }
                }
            }
            shared_task.with(|counts| {
                counts.sent += 1;
                counts.late_sends += u64::from(late);
                match &outcome {
                    Outcome::Accepted | Outcome::Pending => {
                        counts.accepted += 1;
                        counts.latency.saturating_record(micros(latency));
                    }
                    Outcome::Rejected { code } => *counts.rejected.entry(code.clone()).or_default() += 1,
                    Outcome::Shed { code, .. } | Outcome::Unexpected { code } => {
                        *counts.failed.entry(code.clone()).or_default() += 1
                    }
                    Outcome::Timeout => *counts.failed.entry("timeout".to_string()).or_default() += 1,
                    Outcome::Transport => *counts.failed.entry("transport".to_string()).or_default() += 1,
                }
            });
            for (slot, _) in &legs {
                if slot.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 && slot.retired.load(Ordering::Acquire) {
                    slot.answered.notify_one();
                }
            }
            drop(permit);
        });
        sequence += 1;
    }
    if sequence < options.bets && options.duration.is_none() {
        missed = options.bets - sequence;
    }
    // Every answer in, then every retired market settled.
    let all = u32::try_from(options.concurrency).unwrap_or(u32::MAX);
    let _all_answered = slots.acquire_many(all).await.expect("the semaphore is never closed");
    drop(retire);
    let settlements = cycle_task.await.unwrap_or_default();
    for settlement in settlements {
        let _ = settlement.await;
    }
    let bets_seconds = start.elapsed().as_secs_f64();
    // The projector catches up with the last bets (where the target can tell).
    let caught_up = catch_up(&target, start, options).await;
    stop.store(true, Ordering::Release);
    let windows = sampler.await.unwrap_or_default();

    let all = lock(&shared.all).clone();
    let windows_ref = &windows;
    let max_of = |field: fn(&WindowReport) -> Option<f64>| {
        windows_ref
            .iter()
            .filter_map(field)
            .fold(None, |max: Option<f64>, value| Some(max.map_or(value, |m| m.max(value))))
    };
    let total = SoakTotals {
        seconds: bets_seconds,
        bets_sent: all.sent,
        bets_accepted: all.accepted,
        accepted_per_second: all.accepted as f64 / bets_seconds.max(1e-9),
        rejected: all.rejected.clone(),
        failed: all.failed.clone(),
        late_sends: all.late_sends,
        missed_sends: missed,
        latency_p50_ms: quantile_ms(&all.latency, 0.50),
        latency_p99_ms: quantile_ms(&all.latency, 0.99),
        latency_max_ms: if all.latency.is_empty() { 0.0 } else { all.latency.max() as f64 / 1_000.0 },
        markets_opened: all.markets_opened,
        markets_settled: all.markets_settled,
        bets_closed_by_settlement: shared.closed.load(Ordering::Acquire),
        bets_settled_by_book: all.bets_settled_by_book,
        settle_failures: all.settle_failures,
        deposits: all.deposits + players as u64,
        deposit_failures: all.deposit_failures,
        open_bets_end: shared.open_bets(),
        open_bets_max: windows.iter().map(|window| window.open_bets).max().unwrap_or(0),
        rss_max_mib: max_of(|window| window.rss_mib),
        hwm_mib: max_of(|window| window.hwm_mib),
        sequencer_pause_max_ms: max_of(|window| window.sequencer_pause_max_ms),
        sequencer_work_max_ms: max_of(|window| window.sequencer_work_max_ms),
        sequencer_cpu_max_ms: max_of(|window| window.sequencer_cpu_max_ms),
        snapshots: windows.iter().rev().find_map(|window| window.snapshots_total),
        projector_lag_p99_ms: (!all.lag.is_empty()).then(|| quantile_ms(&all.lag, 0.99)),
        projector_lag_max_ms: (!all.lag.is_empty()).then(|| all.lag.max() as f64 / 1_000.0),
        projector_rows: None,
        stopped_early: lock(&shared.memory_stop).clone(),
        projector_catch_up_s: caught_up.map(|(seconds, _)| seconds),
    };
    let mut total = total;
    total.projector_rows = match caught_up {
        Some((_, rows)) => rows,
        None => T::sample(&target).await.projector_rows,
    };
    let aims = aims(options, &total, &windows);
    Ok(SoakResult {
        profile: "soak",
        target: target.name().to_string(),
        options: options.clone(),
        quota_per_market: quota,
        setup,
        machine: crate::machine(),
        windows,
        total,
        aims,
    })
}

/// Waits (bounded) for the projector to have every batch; returns how long that took after the
/// last bet and the rows it wrote, or `None` when the target cannot tell.
async fn catch_up<T: SoakTarget>(target: &Arc<T>, start: Instant, options: &SoakOptions) -> Option<(f64, Option<u64>)> {
    let began = Instant::now();
    let mut last_line = Instant::now();
    loop {
        let sample = T::sample(target).await;
        let lag = sample.lag_records?;
        if lag == 0 {
            return Some((began.elapsed().as_secs_f64(), sample.projector_rows));
        }
        if began.elapsed() > CATCH_UP_WAIT_MAX {
            eprintln!(
                "soak: the projector is still {lag} records behind after {CATCH_UP_WAIT_MAX:?}; not waiting longer"
            );
            return None;
        }
        if options.progress && last_line.elapsed() >= options.window {
            eprintln!(
                "[{:>6.0}s] bets done; projector catching up: {lag} records behind",
                start.elapsed().as_secs_f64()
            );
            last_line = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Samples the target every `sample_every`, closes a window every `window`, prints its line.
async fn sample_loop<T: SoakTarget>(
    target: Arc<T>,
    shared: Arc<Shared>,
    options: SoakOptions,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<WindowReport> {
    let mut windows = Vec::new();
    let mut tick = tokio::time::interval_at(start + options.sample_every, options.sample_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut window_began = start;
    let mut last = TargetSample::default();
    let mut snapshots_at_start: Option<u64> = None;
    let mut rows_at_start: Option<u64> = None;
    let mut rss_max: Option<u64> = None;
    loop {
        tick.tick().await;
        let stopping = stop.load(Ordering::Acquire);
        let sample = T::sample(&target).await;
        if let Some(lag) = sample.lag {
            let lag = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX).clamp(1, LAG_MICROS_MAX);
            shared.with(|counts| counts.lag.saturating_record(lag));
        }
        if let Some(pause) = sample.pause_max {
            shared.with(|counts| counts.pause_max = counts.pause_max.max(pause));
        }
        if let Some(work) = sample.work_max {
            shared.with(|counts| counts.work_max = counts.work_max.max(work));
        }
        if let Some(cpu) = sample.cpu_max {
            shared.with(|counts| counts.cpu_max = counts.cpu_max.max(cpu));
        }
        rss_max = max_option(rss_max, sample.rss_bytes);
        if let (Some(rss), Some(limit)) = (sample.rss_bytes, options.rss_max_bytes) {
            let mut stop = lock(&shared.memory_stop);
            if rss > limit && stop.is_none() {
                let reason = format!(
                    "resident memory {} MiB passed --rss-max-mib {} after {} bets",
                    rss >> 20,
                    limit >> 20,
                    shared.sent.load(Ordering::Relaxed)
                );
                eprintln!("soak: stopping: {reason}");
                *stop = Some(reason);
            }
        }
        if snapshots_at_start.is_none() {
            snapshots_at_start = sample.snapshots;
        }
        if rows_at_start.is_none() {
            rows_at_start = sample.projector_rows;
        }
        last = TargetSample {
            rss_bytes: sample.rss_bytes.or(last.rss_bytes),
            hwm_bytes: sample.hwm_bytes.or(last.hwm_bytes),
            snapshots: sample.snapshots.or(last.snapshots),
            snapshot_max: sample.snapshot_max.or(last.snapshot_max),
            lag_records: sample.lag_records,
            lag: sample.lag,
            projector_rows: sample.projector_rows.or(last.projector_rows),
            pause_max: None,
            work_max: None,
            cpu_max: None,
        };
        let now = Instant::now();
        if now.duration_since(window_began) + options.sample_every / 2 < options.window && !stopping {
            continue;
        }
        let counts = std::mem::replace(&mut *lock(&shared.window), WindowCounts::new());
        let seconds = now.duration_since(window_began).as_secs_f64().max(1e-9);
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let report = WindowReport {
            window: windows.len() as u64,
            end_s: now.duration_since(start).as_secs_f64(),
            bets_sent: counts.sent,
            bets_accepted: counts.accepted,
            accepted_per_second: counts.accepted as f64 / seconds,
            rejected: counts.rejected.clone(),
            failed: counts.failed.clone(),
            late_sends: counts.late_sends,
            latency_p50_ms: quantile_ms(&counts.latency, 0.50),
            latency_p99_ms: quantile_ms(&counts.latency, 0.99),
            latency_max_ms: if counts.latency.is_empty() { 0.0 } else { counts.latency.max() as f64 / 1_000.0 },
            open_bets: shared.open_bets(),
            bets_total: shared.sent.load(Ordering::Relaxed),
            markets_opened: counts.markets_opened,
            markets_settled: counts.markets_settled,
            deposits: counts.deposits,
            rss_mib: rss_max.map(mib),
            hwm_mib: last.hwm_bytes.map(mib),
            sequencer_pause_max_ms: sample.pause_max.or(last.pause_max).map(|_| counts.pause_max.as_secs_f64() * 1e3),
            sequencer_work_max_ms: sample.work_max.map(|_| counts.work_max.as_secs_f64() * 1e3),
            sequencer_cpu_max_ms: sample.cpu_max.map(|_| counts.cpu_max.as_secs_f64() * 1e3),
            snapshots_in_window: match (last.snapshots, snapshots_at_start) {
                (Some(now), Some(then)) => Some(now - then.min(now)),
                _ => None,
            },
            snapshots_total: last.snapshots,
            snapshot_max_s: last.snapshot_max.map(|max| max.as_secs_f64()),
            projector_lag_records: last.lag_records,
            projector_lag_ms: last.lag.map(|lag| lag.as_secs_f64() * 1e3),
            projector_lag_p99_ms: (!counts.lag.is_empty()).then(|| quantile_ms(&counts.lag, 0.99)),
            projector_lag_max_ms: (!counts.lag.is_empty()).then(|| counts.lag.max() as f64 / 1_000.0),
            rows_per_second: match (last.projector_rows, rows_at_start) {
                (Some(now), Some(then)) => Some(now.saturating_sub(then) as f64 / seconds),
                _ => None,
            },
        };
        if options.progress {
            eprintln!("{}", progress_line(&report));
        }
        windows.push(report);
        window_began = now;
        snapshots_at_start = last.snapshots;
        rows_at_start = last.projector_rows;
        rss_max = None;
        if stopping {
            return windows;
        }
    }
}

fn max_option(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn figure(value: Option<f64>, unit: &str, digits: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |value| format!("{value:.digits$}{unit}"))
}

/// The line printed for every window.
pub fn progress_line(window: &WindowReport) -> String {
    let failed: u64 = window.failed.values().sum();
    let rejected: u64 = window.rejected.values().sum();
    format!(
        "[{:>6.0}s] {:>11} bets {:>7.0}/s p50 {:.2} p99 {:.2} max {:.1} ms | rej {rejected} fail {failed} late {} | \
         open {} | mkts +{} -{} | rss {} hwm {} | pause {} (work {} cpu {}) | snaps {} (+{}) max {} | lag {} rec {} p99 {} | rows {}/s",
        window.end_s,
        window.bets_total,
        window.accepted_per_second,
        window.latency_p50_ms,
        window.latency_p99_ms,
        window.latency_max_ms,
        window.late_sends,
        window.open_bets,
        window.markets_opened,
        window.markets_settled,
        figure(window.rss_mib, " MiB", 0),
        figure(window.hwm_mib, " MiB", 0),
        figure(window.sequencer_pause_max_ms, " ms", 2),
        figure(window.sequencer_work_max_ms, " ms", 2),
        figure(window.sequencer_cpu_max_ms, " ms", 2),
        window.snapshots_total.map_or("n/a".to_string(), |total| total.to_string()),
        window.snapshots_in_window.unwrap_or(0),
        figure(window.snapshot_max_s, " s", 2),
        window.projector_lag_records.map_or("n/a".to_string(), |lag| lag.to_string()),
        figure(window.projector_lag_ms, " ms", 0),
        figure(window.projector_lag_p99_ms, " ms", 0),
        figure(window.rows_per_second, "", 0),
    )
}

/// The aims against this run.
fn aims(options: &SoakOptions, total: &SoakTotals, windows: &[WindowReport]) -> Vec<Aim> {
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    let mut aims = Vec::new();
    let open_note = format!(
        "{} bets open at most ({} at the end; aimed at {}), {} bets in all",
        total.open_bets_max, total.open_bets_end, options.open_bets, total.bets_sent
    );
    aims.push(match total.rss_max_mib {
        Some(rss) => Aim {
            aim: format!("memory under 1 GiB with {AIM_OPEN_BETS} bets open"),
            verdict: verdict(rss * 1024.0 * 1024.0 < AIM_MEMORY_BYTES as f64),
            figure: format!("peak VmRSS {rss:.0} MiB (VmHWM {}); {open_note}", figure(total.hwm_mib, " MiB", 0)),
        },
        None => Aim {
            aim: format!("memory under 1 GiB with {AIM_OPEN_BETS} bets open"),
            verdict: "n/a",
            figure: "the server's memory is not known (give --server-pid)".to_string(),
        },
    });
    let worst = windows
        .iter()
        .filter(|window| window.bets_accepted > 0)
        .map(|window| (window.window, window.latency_p99_ms))
        .fold(None, |worst: Option<(u64, f64)>, (index, p99)| match worst {
            Some((_, max)) if max >= p99 => worst,
            _ => Some((index, p99)),
        });
    let over = windows.iter().filter(|window| window.bets_accepted > 0 && window.latency_p99_ms > AIM_P99_MS).count();
    let rate_note = match options.rate {
        Some(rate) => format!("offered {rate:.0}/s"),
        None => "flat out".to_string(),
    };
    let p99_figure = match worst {
        Some((index, p99)) => format!(
            "worst window p99 {p99:.2} ms (window {index}), {over} of {} windows above {AIM_P99_MS} ms; {rate_note}, \
             accepted {:.0}/s",
            windows.len(),
            total.accepted_per_second
        ),
        None => "no bets accepted".to_string(),
    };
    let p99_applies = options.rate.is_some_and(|rate| rate >= AIM_P99_RATE);
    aims.push(Aim {
        aim: format!("no 10 s window with p99 above {AIM_P99_MS} ms at {AIM_P99_RATE:.0} bets/s"),
        verdict: if !p99_applies { "n/a" } else { verdict(worst.is_some() && over == 0) },
        figure: if p99_applies { p99_figure } else { format!("{p99_figure} (the aim is for a paced 15,000/s)") },
    });
    aims.push(match total.sequencer_pause_max_ms {
        Some(pause) => Aim {
            aim: format!("longest sequencer pause under {AIM_PAUSE_MS} ms"),
            verdict: verdict(pause < AIM_PAUSE_MS),
            figure: match total.sequencer_work_max_ms {
                Some(work) => format!("{pause:.2} ms; without the journal's write and sync {work:.2} ms"),
                None => format!("{pause:.2} ms"),
            },
        },
        None => Aim {
            aim: format!("longest sequencer pause under {AIM_PAUSE_MS} ms"),
            verdict: "n/a",
            figure: "the target exports no sequencer pause".to_string(),
        },
    });
    let lag_applies = options.rate.is_none_or(|rate| rate >= AIM_LAG_RATE);
    aims.push(match total.projector_lag_p99_ms {
        Some(p99) => Aim {
            aim: format!("projector lag p99 under 1 s at {AIM_LAG_RATE:.0} bets/s"),
            verdict: if lag_applies { verdict(p99 < AIM_LAG_MS) } else { "n/a" },
            figure: format!(
                "p99 {p99:.0} ms, max {} over the run; {rate_note}, accepted {:.0}/s{}",
                figure(total.projector_lag_max_ms, " ms", 0),
                total.accepted_per_second,
                if lag_applies { "" } else { " (the aim is for 20,000/s)" }
            ),
        },
        None => Aim {
            aim: format!("projector lag p99 under 1 s at {AIM_LAG_RATE:.0} bets/s"),
            verdict: "n/a",
            figure: "the target exports no projector lag".to_string(),
        },
    });
    aims
}

/// The summary printed at the end: totals, then one line per aim.
pub fn summary(result: &SoakResult) -> String {
    use std::fmt::Write;
    let total = &result.total;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nsoak ({}): {} bets sent in {:.1} s, {} accepted ({:.0}/s); rejected {:?}; failed {:?}; late sends {}",
        result.target,
        total.bets_sent,
        total.seconds,
        total.bets_accepted,
        total.accepted_per_second,
        total.rejected,
        total.failed,
        total.late_sends
    );
    let _ = writeln!(
        out,
        "  placement p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        total.latency_p50_ms, total.latency_p99_ms, total.latency_max_ms
    );
    let _ = writeln!(
        out,
        "  markets opened {}, settled {} ({} failed; {} bets settled by the book, {} closed by the generator's count); \
         open bets at the end {}, at most {} (aimed at {}); deposits {} ({} failed)",
        total.markets_opened,
        total.markets_settled,
        total.settle_failures,
        total.bets_settled_by_book,
        total.bets_closed_by_settlement,
        total.open_bets_end,
        total.open_bets_max,
        result.options.open_bets,
        total.deposits,
        total.deposit_failures
    );
    let _ = writeln!(
        out,
        "  memory: peak VmRSS {}, VmHWM {}; longest sequencer pause {} (work {}, cpu {}); snapshots {}; projector lag p99 {} max {}; \
         projector rows {}{}",
        figure(total.rss_max_mib, " MiB", 0),
        figure(total.hwm_mib, " MiB", 0),
        figure(total.sequencer_pause_max_ms, " ms", 2),
        figure(total.sequencer_work_max_ms, " ms", 2),
        figure(total.sequencer_cpu_max_ms, " ms", 2),
        total.snapshots.map_or("n/a".to_string(), |snapshots| snapshots.to_string()),
        figure(total.projector_lag_p99_ms, " ms", 0),
        figure(total.projector_lag_max_ms, " ms", 0),
        total.projector_rows.map_or("n/a".to_string(), |rows| rows.to_string()),
        total
            .projector_catch_up_s
            .map_or(String::new(), |seconds| format!(" (caught up {seconds:.1} s after the last answer)")),
    );
    if let Some(reason) = &total.stopped_early {
        let _ = writeln!(out, "  stopped early: {reason}");
    }
    if let Some(load) = &result.machine.load_average {
        let _ = writeln!(out, "  load average at the end: {load}");
    }
    for aim in &result.aims {
        let _ = writeln!(out, "aim: {}: {} ({})", aim.aim, aim.verdict, aim.figure);
    }
    out
}

/// Writes the JSON result.
pub fn write_result(result: &SoakResult, path: &std::path::Path) -> Result<(), LoadgenError> {
    let json = serde_json::to_string_pretty(result).expect("a result always serializes");
    std::fs::write(path, json + "\n")
        .map_err(|source| LoadgenError::Output { path: path.display().to_string(), source })
}

/// `VmRSS` and `VmHWM` of a process in bytes (Linux), `None` elsewhere or when it is gone.
pub fn process_memory(pid: Option<u32>) -> (Option<u64>, Option<u64>) {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let Ok(status) = std::fs::read_to_string(path) else { return (None, None) };
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.trim().strip_suffix("kB")?;
            rest.trim().parse::<u64>().ok().map(|kib| kib * 1024)
        })
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_of_this_process() {
        let (rss, hwm) = process_memory(None);
        let (rss, hwm) = (rss.expect("VmRSS"), hwm.expect("VmHWM"));
        assert!(rss > 0 && hwm >= rss / 2, "{rss} {hwm}");
    }

    #[test]
    fn quota_keeps_about_the_open_bets_aimed_at() {
        let options = SoakOptions {
            rate: None,
            bets: 1,
            duration: None,
            open_bets: 100_000,
            live_markets: 200,
            players: 10,
            multiple_percent: 10,
            stake_minor_min: 100,
            stake_minor_max: 10_000,
            concurrency: 10,
            request_timeout: Duration::from_secs(1),
            window: Duration::from_secs(10),
            sample_every: Duration::from_millis(100),
            seed: 1,
            rss_max_bytes: None,
            progress: false,
        };
        assert_eq!(options.quota(), 1_000);
        assert!(options.check().is_ok());
        assert!(SoakOptions { live_markets: 1, ..options.clone() }.check().is_err(), "multiples need two markets");
        assert!(SoakOptions { rate: Some(0.0), ..options }.check().is_err());
        for index in 0..20 {
            let prices = market_prices(index);
            assert!(prices.iter().all(|&price| price > PRICE_SCALE), "{prices:?}");
        }
    }
}
