//! The simulator: drives the real engine (sequencer, journal, snapshots, recovery) with the
//! workload, and the auditor in lockstep, on a clock only it moves; injects journal faults and
//! crashes; and checks after every step that the book answered what the model predicted.
//!
//! After every step: the reply equals the prediction; the bet events the engine published equal
//! the model's, and no bet is settled twice without a reversal between; the transfers the engine
//! published are the model's; every wallet equals the model's and none is negative. Every
//! `full_check_every` steps, at every crash and at the end: the book's invariants, money
//! conserved per currency, exposure equal to the open liabilities, and every account, market,
//! selection and bet equal to the model.
//!
//! One step in eight submits a group of commands without waiting, held back until the whole
//! group is queued, so the sequencer decides and journals them as one batch (group commit).
//!
//! Faults and crashes, all drawn from the seed:
//! - a failed sync (the record lost, or written but unacknowledged) stops the engine; the
//!   simulator crashes it, recovers from the durable journal and checks that exactly the
//!   acknowledged commands are there, plus the failed batch only when it was written;
//! - a crash at a random step, after a shutdown that leaves every snapshot, all but the
//!   newest, none, or the newest with a flipped byte (which recovery must skip);
//! - with the file journal, garbage after the last record or a torn unacknowledged record,
//!   which recovery must cut off;
//! - with the file journal, a flipped byte in the last (complete, acknowledged) record at a
//!   crash: opening the journal must refuse it as corruption at that record's position and cut
//!   nothing. Then the operator's way forward: when the newest snapshot covers the record,
//!   `journal::repair::truncate_at` (the journal continues at the snapshot's position and
//!   nothing acknowledged is lost), else the record restored from the backup the refusal asks
//!   for. Half the time a second crash follows right after the repair, and every later crash
//!   checks that no position below the snapshot was reused;
//! - a full disk at write time: the step's commands are refused with `StorageFull`, the engine
//!   is not stopped, the model goes back to before the step, and the engine resumes by itself
//!   once the (injected) disk has room, without a restart.
//!
//! Clients the book cannot see (the workload's): a client that hangs up once its command
//! reached the book never retries, and a withdrawal's hold it leaves is paid out by the payments
//! step; a client answered 504 `outcome_unknown` by the gateway retries later with the same key
//! and must get the first outcome. The payments step (`payments.sweep`) runs now and then and
//! after every recovery, as the gateway's sweep does on start; at the end it runs to its end
//! and no withdrawal hold may be left open, in the book or the model. Deposits now and then
//! send a payment reference again, which credits an account once.
//!
//! After every crash the recovered book must equal the book before the crash (by digest), the
//! book replayed from the journal alone, and the model.
//!
//! The model only ever holds durable history: commands of a step whose sync fails are taken
//! back (the model is restored to before the step) and the part of the failed batch that the
//! journal turns out to hold is applied again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use book::{Ack, BetStatus, Book, BookEvent, Command, Config, Reply, TransferKind};
use domain::{Money, Ratio};
use engine::{EngineHandle, EngineOptions, ManualClock, Recovered};
use journal::{FaultKind, FileJournal, FileJournalOptions, Journal, MemoryJournal, Position, SnapshotStore};

use crate::auditor::{Auditor, BetChange, ExpectedTransfer, Movement};
use crate::check;
use crate::faults::{FaultSwitch, SimJournal};
use crate::projection::SimProjector;
use crate::readmodels::AuditEntry;
use crate::rng::Rng;
use crate::workload::{Op, Workload, START_MS};

/// Which durable journal the engine writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalKind {
    /// `MemoryJournal`: fast; clones share the records, standing in for a reopen.
    Memory,
    /// `FileJournal` in a temporary directory: real segment files, syncs, torn tails.
    File,
}

impl JournalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalKind::Memory => "memory",
            JournalKind::File => "file",
        }
    }
}

/// Turns the command the workload made into the one the engine is given. The auditor always
/// sees the original: a transform that changes meaning is a bug the simulator must catch.
pub type CommandTransform = Arc<dyn Fn(&Command) -> Command + Send + Sync>;
/// Wraps the durable journal before the simulator's fault injection (a journal with a bug).
pub type JournalWrapper = Arc<dyn Fn(Box<dyn Journal>) -> Box<dyn Journal> + Send + Sync>;
/// Called every tenth of the run with the step reached.
pub type ProgressFn = Box<dyn FnMut(u64, &Report)>;
/// Called with the read-model store's file (SQLite) right before each check of the read
/// models: a test's way of damaging a row, which the check must then report.
pub type ReadModelTamper = Arc<dyn Fn(&Path) + Send + Sync>;

/// How to run one simulation. `SimOptions::new(seed, ops)` has every fault on.
pub struct SimOptions {
    pub seed: u64,
    /// Steps to run.
    pub ops: u64,
    pub journal: JournalKind,
    /// Failed syncs, crashes and torn tails; off runs the workload and checks only.
    pub faults: bool,
    /// One step in this many fails its sync (when faults are on).
    pub sync_failure_one_in: u64,
    /// One step in this many finds the disk full (when faults are on).
    pub storage_full_one_in: u64,
    /// One crash in this many flips a byte of the last journal record (file journal).
    pub corrupt_tail_one_in: u64,
    /// One step in this many is preceded by a crash (when faults are on).
    pub crash_one_in: u64,
    /// Steps between full comparisons of the book with the model.
    pub full_check_every: u64,
    /// Where the run's temporary directory goes (snapshots, the file journal).
    pub work_dir: PathBuf,
    pub command_transform: Option<CommandTransform>,
    pub journal_wrapper: Option<JournalWrapper>,
    pub progress: Option<ProgressFn>,
    /// With the file journal: run the projector beside the engine (killed at random moments)
    /// and check its read models against the auditor's prediction.
    pub read_models: bool,
    /// Steps between checks of the read models (also at every crash of a healthy engine and
    /// at the end).
    pub read_model_check_every: u64,
    pub read_model_tamper: Option<ReadModelTamper>,
    /// Whether the projector writes the engine's periodic snapshots
    /// (`engine::PeriodicSnapshots::External`, as `serve` runs it); `None`: drawn from the
    /// seed, half the runs.
    pub projector_writes_snapshots: Option<bool>,
}

impl SimOptions {
    pub fn new(seed: u64, ops: u64) -> SimOptions {
        SimOptions {
            seed,
            ops,
            journal: if seed.is_multiple_of(2) { JournalKind::Memory } else { JournalKind::File },
            faults: true,
            // Each crash replays the whole journal twice, so long runs crash less often: about
            // 130 times at most, and as often as short runs before that.
            sync_failure_one_in: 250.max(ops / 80),
            storage_full_one_in: 250.max(ops / 80),
            corrupt_tail_one_in: 3,
            crash_one_in: 400.max(ops / 50),
            full_check_every: 100.max(ops / 100),
            work_dir: std::env::temp_dir(),
            command_transform: None,
            journal_wrapper: None,
            progress: None,
            read_models: true,
            read_model_check_every: 500.max(ops / 20),
            read_model_tamper: None,
            projector_writes_snapshots: None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub steps: u64,
    pub journal: &'static str,
    pub ops_by_kind: BTreeMap<&'static str, u64>,
    pub replies_by_code: BTreeMap<&'static str, u64>,
    pub faults: BTreeMap<&'static str, u64>,
    /// Bet statuses and transfer codes the engine published, e.g. `bet.half_won`,
    /// `transfer.DebtRecognised`, and bets placed per currency (`bet_placed.JPY`): evidence of
    /// which paths a run exercised.
    pub published: BTreeMap<String, u64>,
    pub crashes: u64,
    pub recoveries: u64,
    pub full_checks: u64,
    /// Checks of the projector's read models against the auditor, and rows compared.
    pub read_model_checks: u64,
    pub read_model_rows: u64,
    pub bets: u64,
    pub final_digest: String,
}

/// A violation: where, and what.
#[derive(Debug, thiserror::Error)]
#[error("FAILED at seed {seed} step {step}: {message}")]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub message: String,
}

/// Runs one simulation. `Err` names the seed, the step and the first violation.
pub fn run(options: SimOptions) -> Result<Report, Failure> {
    let seed = options.seed;
    let dir = options.work_dir.join(format!("sim-{}-{seed}-{}", std::process::id(), unique()));
    let result = Simulator::new(options, &dir).and_then(|mut simulator| {
        let outcome = simulator.run();
        simulator.stop();
        outcome.map(|()| simulator.report)
    });
    let _ = std::fs::remove_dir_all(&dir);
    result.map_err(|(step, message)| Failure { seed, step, message })
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A failure at a step: the step number and the message.
type Fail = (u64, String);

/// The durable journal behind the engine, reopened after every crash.
enum Durable {
    Memory(MemoryJournal),
    File(PathBuf),
}

/// A command submitted in one step, with what the model predicted for it.
struct Submitted {
    step: u64,
    time: u64,
    /// What the workload made and the model applied.
    original: Command,
    /// What the engine was given.
    command: Command,
    predicted: Reply,
}

/// The commands of a step whose batch failed its sync. Recovery may find a prefix of them (the
/// failed batch, when it was written and not torn); the model goes back to how it was before
/// the step and applies that prefix.
struct InDoubt {
    commands: Vec<Submitted>,
    kind: FaultKind,
    tear: bool,
    model_before: Auditor,
}

/// A command the engine acknowledged (ticks aside): what the journal must hold, in order.
struct Acknowledged {
    step: u64,
    time: u64,
    command: Command,
    /// `ok` or the rejection's code: what the audit view must show.
    outcome: &'static str,
}

struct Simulator {
    ops: u64,
    kind: JournalKind,
    faults_on: bool,
    sync_failure_one_in: u64,
    storage_full_one_in: u64,
    corrupt_tail_one_in: u64,
    /// After a repair that moved the journal up to a snapshot's position: the journal starts
    /// there, so the snapshot (or a newer one) must stay, and there is no replay from scratch.
    journal_floor: Option<Position>,
    crash_one_in: u64,
    full_check_every: u64,
    command_transform: Option<CommandTransform>,
    journal_wrapper: Option<JournalWrapper>,
    progress: Option<ProgressFn>,
    config: Config,
    faults: Rng,
    workload: Workload,
    auditor: Auditor,
    clock: ManualClock,
    durable: Durable,
    snapshots_dir: PathBuf,
    engine: Option<EngineHandle>,
    switch: FaultSwitch,
    /// Events the engine published since the last step.
    published: Arc<Mutex<Vec<BookEvent>>>,
    acknowledged: Vec<Acknowledged>,
    /// The journal before this position, and the acknowledged commands before this index,
    /// were checked at an earlier crash.
    verified: (Position, usize),
    in_doubt: Option<InDoubt>,
    /// Time passing that came up inside a group, done first in the next step.
    deferred: Option<crate::workload::Step>,
    /// Each bet's state as the published events tell it: open (placed, accepted, reversed)
    /// or not. A settlement of a bet that is not open is a double payment.
    bet_open: Vec<bool>,
    step: u64,
    report: Report,
    /// The projector and its read models (file journal runs with `read_models`).
    projection: Option<SimProjector>,
    read_model_check_every: u64,
    read_model_tamper: Option<ReadModelTamper>,
    /// Decides when the projector runs (its own stream: the faults' draws stay as they were).
    projection_rng: Rng,
    /// The feed role's Unified Odds Feed translator, for the workload's provider messages.
    translator: feed::uof::UofTranslator,
}

/// The book's configuration for a seed: the defaults, varied a little so limits bite
/// differently from run to run. A quarter of the seeds are whales, with amounts up to the money
/// maximum, where payouts saturate and every bound on a balance, a debt or a liability bites.
fn config_for(rng: &mut Rng) -> Config {
    // Nothing leaves the book during a run: the model keeps every record, and runs of a few
    // thousand steps pass the default window of seven days (what leaves is the book's
    // property tests' subject).
    let mut config = Config { resettlement_window_ms: book::RESETTLEMENT_WINDOW_NEVER_MS, ..Config::default() };
    if rng.chance(1, 4) {
        // Whales: stakes and payouts up to the money maximum, where sums saturate and clamp.
        config.max_stake = Money::from_minor(10_000_000_000_000);
        config.max_payout = Money::from_minor(domain::MONEY_MINOR_MAX);
        config.deposit_max = Money::from_minor(10_000_000_000_000);
        return config;
    }
    config.min_stake = Money::from_minor([10, 10, 50][rng.index(3)]);
    config.max_stake = Money::from_minor([1_000_000, 100_000, 20_000][rng.index(3)]);
    config.max_payout = Money::from_minor([100_000_000, 10_000_000, 2_000_000][rng.index(3)]);
    config.deposit_max = Money::from_minor([10_000_000, 500_000][rng.index(2)]);
    config.cashout_margin =
        [Ratio::new(5, 100), Ratio::new(3, 100), Ratio::new(0, 1)][rng.index(3)].unwrap_or(Ratio::ZERO);
    config
}

impl Simulator {
    fn new(options: SimOptions, dir: &Path) -> Result<Simulator, Fail> {
        let mut rng = Rng::new(options.seed);
        let config = config_for(&mut rng);
        let faults = rng.fork(1);
        let workload = Workload::new(rng.fork(2));
        let mut projection_rng = rng.fork(3);
        let projection = (options.read_models && options.journal == JournalKind::File)
            .then(|| SimProjector::new(dir, config, projection_rng.fork(1), options.projector_writes_snapshots));
        std::fs::create_dir_all(dir).map_err(|error| (0, format!("cannot create {}: {error}", dir.display())))?;
        let durable = match options.journal {
            JournalKind::Memory => Durable::Memory(MemoryJournal::new()),
            JournalKind::File => Durable::File(dir.join("journal")),
        };
        let mut simulator = Simulator {
            ops: options.ops,
            kind: options.journal,
            faults_on: options.faults,
            sync_failure_one_in: options.sync_failure_one_in.max(1),
            storage_full_one_in: options.storage_full_one_in.max(1),
            corrupt_tail_one_in: options.corrupt_tail_one_in.max(1),
            journal_floor: None,
            crash_one_in: options.crash_one_in.max(1),
            full_check_every: options.full_check_every.max(1),
            command_transform: options.command_transform,
            journal_wrapper: options.journal_wrapper,
            progress: options.progress,
            config,
            faults,
            workload,
            auditor: Auditor::new(config),
            clock: ManualClock::new(START_MS),
            durable,
            snapshots_dir: dir.join("snapshots"),
            engine: None,
            switch: FaultSwitch::default(),
            published: Arc::new(Mutex::new(Vec::new())),
            acknowledged: Vec::new(),
            verified: (0, 0),
            in_doubt: None,
            deferred: None,
            bet_open: Vec::new(),
            step: 0,
            report: Report { seed: options.seed, journal: options.journal.as_str(), ..Report::default() },
            projection,
            read_model_check_every: options.read_model_check_every.max(1),
            read_model_tamper: options.read_model_tamper,
            projection_rng,
            translator: feed::uof::UofTranslator::new(crate::workload::PROVIDER, 0),
        };
        let (journal, _) = simulator.open_durable()?;
        let recovered =
            engine::recover(journal.as_ref(), None, config).map_err(|error| (0, format!("recover: {error}")))?;
        simulator.start_engine(journal, recovered)?;
        Ok(simulator)
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, Fail> {
        Err((self.step, message.into()))
    }

    fn run(&mut self) -> Result<(), Fail> {
        let tenth = (self.ops / 10).max(1);
        for step in 1..=self.ops {
            self.step = step;
            if self.faults_on && self.faults.chance(1, self.crash_one_in) {
                self.crash(None)?;
            }
            self.step_once()?;
            if step.is_multiple_of(self.full_check_every) {
                self.full_check()?;
            }
            self.advance_projector()?;
            if step.is_multiple_of(self.read_model_check_every) {
                let wallets = self.read(|book| {
                    (1..=book.players().len() as u64).map(|id| book.wallet(book::AccountId(id))).collect::<Vec<_>>()
                })?;
                self.check_read_models(&wallets)?;
            }
            self.report.steps = step;
            if step.is_multiple_of(tenth) {
                if let Some(progress) = self.progress.as_mut() {
                    progress(step, &self.report);
                }
            }
        }
        // The end: a last crash and recovery checks the journal, the snapshot and the replay.
        self.step = self.ops;
        self.finish_payments()?;
        self.crash(None)?;
        let digest = self.read(codec::digest)?;
        self.report.final_digest = digest;
        // The engine journals ticks of its own: stopped, the journal holds still for both.
        self.stop();
        self.compare_with_rebuild()?;
        self.report.bets = self.auditor.bets.len() as u64;
        for (path, count) in &self.auditor.paths {
            self.report.published.insert(format!("model.{path}"), *count);
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(engine) = self.engine.take() {
            engine.shutdown();
        }
    }

    fn engine(&self) -> Result<&EngineHandle, Fail> {
        self.engine.as_ref().ok_or_else(|| (self.step, "no engine is running".to_string()))
    }

    fn read<R: Send + 'static>(&self, read: impl FnOnce(&Book) -> R + Send + 'static) -> Result<R, Fail> {
        self.engine()?.read(read).map_err(|error| (self.step, format!("read failed: {error}")))
    }

    fn transformed(&self, command: &Command) -> Command {
        match &self.command_transform {
            Some(transform) => transform(command),
            None => command.clone(),
        }
    }

    fn clock_now(&self) -> u64 {
        use engine::Clock;
        self.clock.now_ms()
    }

    // ---- one step ----------------------------------------------------------------------------

    /// One step: one command, or a group of up to six submitted without waiting so the
    /// sequencer batches them (group commit), or time passing. The model applies each command
    /// as it is submitted, so the workload sees the state the command will meet.
    fn step_once(&mut self) -> Result<(), Fail> {
        let size = if self.faults.chance(1, 8) { self.faults.between(2, 6) } else { 1 };
        let fault = if self.faults_on && self.faults.chance(1, self.sync_failure_one_in) {
            Some(if self.faults.chance(1, 2) { FaultKind::Lost } else { FaultKind::WrittenButUnacknowledged })
        } else {
            None
        };
        let mut fault = fault.or_else(|| self.storage_full_fault());
        let model_before = fault.map(|_| self.auditor.clone());
        let mut submitted = Vec::new();
        let mut receivers = Vec::new();
        // A group is enqueued while the sequencer waits inside a read, so that it drains the
        // whole group into one batch. Otherwise how the group splits into batches, and so how
        // much of it a failed sync takes with it, would depend on thread timing.
        let gate = if size > 1 { Some(self.hold_sequencer()?) } else { None };
        for index in 0..size {
            let next = self.deferred.take().unwrap_or_else(|| self.workload.next(&self.auditor));
            let original = match next.op {
                Op::Advance(millis) if index == 0 => {
                    self.clock.advance(millis);
                    Command::Tick
                }
                // Time passes between steps, never inside a group: its commands share one time.
                Op::Advance(_) => {
                    self.deferred = Some(next);
                    break;
                }
                Op::Command(command) => command,
                Op::Feed(delivery) => self.translate(&delivery)?,
            };
            *self.report.ops_by_kind.entry(next.label).or_default() += 1;
            let time = self.clock_now();
            let predicted = self.auditor.apply(time, &original);
            let command = self.transformed(&original);
            match (index, fault) {
                // A full disk armed for a tick could hit a tick batch the sequencer makes on
                // its own, which the disk may then outlast or not depending on timing: only
                // steps that start with a command find the disk full.
                (0, Some(FaultKind::StorageFull)) if command == Command::Tick => fault = None,
                (0, Some(FaultKind::StorageFull)) => {
                    let attempts = self.faults.below(4);
                    self.switch.arm_storage_full(attempts, false);
                }
                (0, Some(kind)) => self.switch.arm(kind, command == Command::Tick),
                _ => {}
            }
            let receiver = self
                .engine()?
                .submit_waiting(command.clone())
                .map_err(|error| (self.step, format!("the engine refused {original:?}: {error}")))?;
            receivers.push(receiver);
            submitted.push(Submitted { step: self.step, time, original, command, predicted });
        }
        if let Some(release) = gate {
            let _ = release.send(());
        }
        let outcomes: Vec<engine::Outcome> = receivers
            .into_iter()
            .map(|receiver| receiver.recv().unwrap_or(Err(engine::EngineError::ShutDown)))
            .collect();
        match (fault, model_before) {
            (Some(FaultKind::StorageFull), Some(model_before)) => {
                self.storage_full_step(submitted, outcomes, model_before)
            }
            (Some(kind), Some(model_before)) => self.failed_sync(kind, submitted, outcomes, model_before),
            _ => self.acknowledge(submitted, outcomes),
        }
    }

    /// A provider's message as the feed role takes it: the routing key parsed, the XML
    /// translated. The translation must be the message the workload meant, refusing exactly
    /// what it expected refused; it is the command submitted (a `Tick` when it has no items,
    /// since the feed role submits no empty message).
    fn translate(&self, delivery: &crate::workload::FeedDelivery) -> Result<Command, Fail> {
        let routing = feed::uof::RoutingKey::parse(&delivery.routing)
            .map_err(|refusal| (self.step, format!("the routing key {:?} was refused: {refusal}", delivery.routing)))?;
        let translation = self
            .translator
            .translate(&delivery.xml, Some(&routing))
            .map_err(|refusal| (self.step, format!("the feed refused {:?}: {refusal}", delivery.xml)))?;
        let refused: Vec<&str> = translation.refused.iter().map(|refusal| refusal.reason).collect();
        let message = match translation.event {
            feed::uof::UofEvent::Feed { product, message } if product == delivery.product => message,
            other => return self.fail(format!("{:?} translated to {other:?}", delivery.xml)),
        };
        if message != delivery.expected || refused != delivery.refused {
            return self.fail(format!(
                "the UOF translation differs from the message the workload sent
  xml:      {}
                   feed:     {message:?} refusing {refused:?}
  workload: {:?} refusing {:?}",
                delivery.xml, delivery.expected, delivery.refused
            ));
        }
        Ok(if message.items.is_empty() { Command::Tick } else { Command::Feed(message) })
    }

    /// Parks the sequencer inside a read until the returned sender is used (or dropped).
    fn hold_sequencer(&self) -> Result<std::sync::mpsc::Sender<()>, Fail> {
        let (entered, wait_entered) = std::sync::mpsc::channel::<()>();
        let (release, wait_release) = std::sync::mpsc::channel::<()>();
        let _done = self
            .engine()?
            .read_async(move |_| {
                let _ = entered.send(());
                let _ = wait_release.recv();
            })
            .map_err(|error| (self.step, format!("the engine refused a read: {error}")))?;
        wait_entered.recv().map_err(|_| (self.step, "the sequencer did not run a read".to_string()))?;
        Ok(release)
    }

    /// Every command of the step was acknowledged: each reply must be the model's, then the
    /// step's events, transfers and wallets are checked.
    fn acknowledge(&mut self, submitted: Vec<Submitted>, outcomes: Vec<engine::Outcome>) -> Result<(), Fail> {
        let mut described = Vec::new();
        for (entry, outcome) in submitted.into_iter().zip(outcomes) {
            let reply = match outcome {
                Ok(reply) => reply,
                Err(error) => {
                    return self
                        .fail(format!("the engine failed {:?} without an injected fault: {error}", entry.original));
                }
            };
            *self.report.replies_by_code.entry(reply_code(&reply)).or_default() += 1;
            if let Ok(Ack::Feed(applied)) = &reply {
                let published = &mut self.report.published;
                *published.entry("feed.items_applied".to_string()).or_default() += u64::from(applied.applied);
                *published.entry("feed.items_stale".to_string()).or_default() += u64::from(applied.stale);
                *published.entry("feed.duplicate".to_string()).or_default() += u64::from(applied.duplicate);
                for (_, rejection) in &applied.ignored {
                    *published.entry(format!("feed.item_refused.{}", rejection.code())).or_default() += 1;
                }
            }
            if reply != entry.predicted {
                return self.fail(format!(
                    "the reply differs from the model's\n  command: {:?}\n  book:    {reply:?}\n  model:   {:?}",
                    entry.original, entry.predicted
                ));
            }
            described.push(format!("{:?}", entry.original));
            if entry.command != Command::Tick {
                let outcome = reply_outcome(&reply);
                self.acknowledged.push(Acknowledged {
                    step: entry.step,
                    time: entry.time,
                    command: entry.command,
                    outcome,
                });
            }
        }
        self.check_step(&described.join("; "))
    }

    /// The step's first batch failed its sync. The engine must have refused every command of
    /// the step and stopped; the simulator crashes it and recovers.
    fn failed_sync(
        &mut self,
        kind: FaultKind,
        submitted: Vec<Submitted>,
        outcomes: Vec<engine::Outcome>,
        model_before: Auditor,
    ) -> Result<(), Fail> {
        let fired = self.switch.take_fired();
        if fired != Some(kind) {
            return self.fail(format!("an armed {kind:?} fault did not fire (fired {fired:?})"));
        }
        for (entry, outcome) in submitted.iter().zip(&outcomes) {
            match outcome {
                Err(engine::EngineError::Stopped(_)) => {}
                Ok(reply) => {
                    return self.fail(format!("{:?} was acknowledged ({reply:?}) after a failed sync", entry.original));
                }
                Err(error) => {
                    return self
                        .fail(format!("{:?} failed with {error} instead of stopping the engine", entry.original));
                }
            }
        }
        // A later command must be refused too: the engine has stopped for good.
        match self.engine()?.submit(Command::Tick) {
            Err(engine::EngineError::Stopped(_)) => {}
            other => return self.fail(format!("the engine took a command after a failed sync: {other:?}")),
        }
        let tear =
            kind == FaultKind::WrittenButUnacknowledged && self.kind == JournalKind::File && self.faults.chance(1, 2);
        let label = match kind {
            FaultKind::Lost => "sync_failed_lost",
            FaultKind::WrittenButUnacknowledged => "sync_failed_written",
            FaultKind::StorageFull => "storage_full",
        };
        *self.report.faults.entry(label).or_default() += 1;
        if submitted.len() > 1 {
            *self.report.faults.entry("sync_failed_in_a_group").or_default() += 1;
        }
        self.in_doubt = Some(InDoubt { commands: submitted, kind, tear, model_before });
        self.crash(Some(kind))
    }

    /// The checks after every step: published bet events and transfers, double settlement,
    /// wallets.
    fn check_step(&mut self, described: &str) -> Result<(), Fail> {
        let wallets = self.read(|book| {
            (1..=book.players().len() as u64).map(|id| book.wallet(book::AccountId(id))).collect::<Vec<_>>()
        })?;
        let events = std::mem::take(&mut *self.published.lock().unwrap_or_else(PoisonError::into_inner));
        let (expected_changes, mut expected_transfers) = self.auditor.take_effects();
        let mut changes = Vec::new();
        let mut transfers: Vec<ExpectedTransfer> = Vec::new();
        for event in &events {
            match event {
                BookEvent::BetPlaced { bet, account, status } => {
                    let currency = self.auditor.players.get(account.index()).map(|player| player.currency);
                    if let Some(currency) = currency {
                        *self.report.published.entry(format!("bet_placed.{currency}")).or_default() += 1;
                    }
                    changes.push(BetChange::Placed { bet: *bet, account: *account, status: *status });
                }
                BookEvent::BetStatusChanged { bet, account, status, payout } => {
                    *self.report.published.entry(format!("bet.{}", status.as_str())).or_default() += 1;
                    changes.push(BetChange::Changed {
                        bet: *bet,
                        account: *account,
                        status: *status,
                        payout: payout.minor(),
                    });
                }
                BookEvent::Transferred(transfer) => {
                    *self.report.published.entry(format!("transfer.{:?}", transfer.code)).or_default() += 1;
                    let movement = match transfer.kind {
                        TransferKind::Posted => Movement::Posted,
                        TransferKind::Pending => Movement::Hold,
                        TransferKind::PostPending(_) => Movement::PostHold,
                        TransferKind::VoidPending(_) => Movement::VoidHold,
                    };
                    transfers.push((transfer.code, movement, transfer.amount.minor()));
                }
                _ => {}
            }
        }
        self.check_settled_once(&changes)?;
        if changes != expected_changes {
            return self.fail(format!(
                "the published bet events differ from the model's\n  commands: {described}\n  book:     {changes:?}\n  model:    {expected_changes:?}"
            ));
        }
        transfers.sort();
        expected_transfers.sort();
        if transfers != expected_transfers {
            return self.fail(format!(
                "the published transfers differ from the model's\n  commands: {described}\n  book:     {transfers:?}\n  model:    {expected_transfers:?}"
            ));
        }
        check::compare_wallets(&wallets, &self.auditor)
            .map_err(|message| (self.step, format!("after {described}: {message}")))
    }

    /// A bet is settled (or cashed out) only while open, so twice only with a reversal between:
    /// at most once per settlement version.
    fn check_settled_once(&mut self, changes: &[BetChange]) -> Result<(), Fail> {
        for change in changes {
            match *change {
                BetChange::Placed { bet, .. } => {
                    if bet.index() != self.bet_open.len() {
                        return self.fail(format!("{bet} placed out of order ({} bets known)", self.bet_open.len()));
                    }
                    self.bet_open.push(true);
                }
                BetChange::Changed { bet, status, .. } => {
                    let Some(open) = self.bet_open.get_mut(bet.index()) else {
                        return self.fail(format!("{bet} changed to {status:?} before it was placed"));
                    };
                    let reopens = status == BetStatus::Accepted;
                    if !*open && !reopens {
                        return self.fail(format!("{bet} settled again ({status:?}) without a reversal in between"));
                    }
                    *open = matches!(status, BetStatus::Accepted | BetStatus::Pending);
                }
            }
        }
        Ok(())
    }

    fn full_check(&mut self) -> Result<(), Fail> {
        let book = self.read(|book| book.clone())?;
        self.report.full_checks += 1;
        check::compare_all(&book, &self.auditor)
            .map_err(|message| (self.step, format!("the book differs from the model: {message}")))
    }

    // ---- crashes and recovery ----------------------------------------------------------------

    /// Stops the engine as a crash would and brings up a new one from what is durable. `fault`
    /// is the failed sync that stopped it, or `None` for a crash of a healthy engine.
    fn crash(&mut self, fault: Option<FaultKind>) -> Result<(), Fail> {
        let before = if fault.is_none() {
            let book = self.read(|book| book.clone())?;
            check::compare_all(&book, &self.auditor).map_err(|message| {
                (self.step, format!("before a crash, the book differs from the model: {message}"))
            })?;
            let wallets: Vec<_> =
                (1..=book.players().len() as u64).map(|id| book.wallet(book::AccountId(id))).collect();
            self.check_read_models(&wallets)?;
            Some(codec::digest(&book))
        } else {
            None
        };
        if let Some(engine) = self.engine.take() {
            engine.shutdown();
            let stats = engine.stats();
            for (label, count) in [
                ("snapshots_by_projector", &stats.snapshots_external),
                ("snapshots_overdue", &stats.snapshots_overdue),
                ("snapshots_caught_up", &stats.snapshots_catch_up),
            ] {
                let count = count.load(std::sync::atomic::Ordering::Relaxed);
                if count > 0 {
                    *self.report.faults.entry(label).or_default() += count;
                }
            }
        }
        self.projector_at_crash(fault.is_none())?;
        self.report.crashes += 1;
        let use_snapshots = self.drop_snapshots()?;
        let expected_truncation = self.damage_tail(fault.is_none())?;
        let repaired =
            if fault.is_none() && expected_truncation == 0 { self.corrupt_tail(use_snapshots)? } else { false };
        if repaired {
            // The repair moved the segments the projector was reading: it restarts, at the
            // snapshot the journal now begins at (it had read everything up to there).
            // After a repair the journal begins at a snapshot the engine will prune: a projector
            // killed once it is gone could not resume (a known limit), so no more kills.
            if let Some(projection) = self.projection.as_mut() {
                projection.kill(&mut self.report.faults, "projector_killed_by_repair");
                projection.stop_kills();
            }
        }
        let (journal, truncated) = self.open_durable()?;
        if truncated != expected_truncation {
            return self
                .fail(format!("the journal cut {truncated} bytes off its tail, {expected_truncation} expected"));
        }
        self.verify_journal(journal.as_ref())?;
        let store = if use_snapshots { Some(self.snapshot_store()?) } else { None };
        let recovered = engine::recover(journal.as_ref(), store.as_ref(), self.config)
            .map_err(|error| (self.step, format!("recovery failed: {error}")))?;
        let digest = codec::digest(&recovered.book);
        // After a repair up to a snapshot the journal starts there: no replay from scratch.
        if self.journal_floor.is_none() {
            let replayed = engine::recover(journal.as_ref(), None, self.config)
                .map_err(|error| (self.step, format!("replay from scratch failed: {error}")))?;
            if codec::digest(&replayed.book) != digest {
                return self
                    .fail("the book recovered from the snapshot differs from the journal replayed from scratch");
            }
        }
        if let Some(before) = before {
            if before != digest {
                return self.fail(format!(
                    "the recovered book differs from the book before the crash (snapshot used: {:?})",
                    recovered.report.snapshot_position
                ));
            }
        }
        check::compare_all(&recovered.book, &self.auditor)
            .map_err(|message| (self.step, format!("after recovery, the book differs from the model: {message}")))?;
        self.bet_open = recovered
            .book
            .bets()
            .iter()
            .map(|bet| matches!(bet.status, BetStatus::Pending | BetStatus::Accepted))
            .collect();
        self.start_engine(journal, recovered)?;
        self.report.recoveries += 1;
        // The recovered book may be behind the clock (a lost tick): catch up at once, so an
        // in-play delay the sequencer's own timer would end is ended at this time either way.
        let time = self.clock_now();
        let predicted = self.auditor.apply(time, &Command::Tick);
        let receiver = self.engine()?.submit_waiting(Command::Tick);
        let outcome = receiver
            .map_err(|error| (self.step, format!("the recovered engine refused a tick: {error}")))?
            .recv()
            .unwrap_or(Err(engine::EngineError::ShutDown));
        let entry = Submitted { step: self.step, time, original: Command::Tick, command: Command::Tick, predicted };
        self.acknowledge(vec![entry], vec![outcome])?;
        if repaired {
            // Resumes at once, while the snapshot the journal begins at is there.
            let step = self.step;
            if let Some(projection) = self.projection.as_mut() {
                projection.catch_up(&mut self.report.faults).map_err(|message| (step, message))?;
            }
        }
        // The payments step resumes on start: every withdrawal hold left open (its client hung
        // up, or the process died before the provider's answer was journaled) is paid out.
        self.workload.resume_payments(&self.auditor);
        // A restart between them: a crash right after the repair and a command.
        if repaired && self.faults.chance(1, 2) {
            *self.report.faults.entry("crash_after_repair").or_default() += 1;
            return self.crash(None);
        }
        Ok(())
    }

    /// Runs the payments step to its end, with no other traffic: every withdrawal hold is
    /// then completed, in the model and in the book, and none stays pending for ever.
    fn finish_payments(&mut self) -> Result<(), Fail> {
        self.workload.resume_payments(&self.auditor);
        while self.workload.is_sweeping() {
            let step = self.workload.next(&self.auditor);
            let Op::Command(original) = step.op else { return self.fail("the payments step let time pass") };
            *self.report.ops_by_kind.entry(step.label).or_default() += 1;
            let time = self.clock_now();
            let predicted = self.auditor.apply(time, &original);
            let command = self.transformed(&original);
            let outcome = self
                .engine()?
                .submit_waiting(command.clone())
                .map_err(|error| (self.step, format!("the engine refused {original:?}: {error}")))?
                .recv()
                .unwrap_or(Err(engine::EngineError::ShutDown));
            let entry = Submitted { step: self.step, time, original, command, predicted };
            self.acknowledge(vec![entry], vec![outcome])?;
        }
        let open = self.read(|book| {
            let ledger = book.ledger();
            ledger
                .open_pending()
                .filter(|id| {
                    ledger.transfer(*id).is_some_and(|transfer| transfer.code == book::TransferCode::Withdrawal)
                })
                .count()
        })?;
        if open > 0 || self.auditor.withdrawals.values().any(|found| found.open) {
            return self.fail(format!("{open} withdrawal holds still open after the payments step"));
        }
        Ok(())
    }

    /// Chooses which snapshots the crash leaves: all, all but the newest, none, the newest
    /// corrupted (one byte flipped: recovery must fall back past it), or recovery without the
    /// store. Returns whether recovery should use the store.
    fn drop_snapshots(&mut self) -> Result<bool, Fail> {
        let store = self.snapshot_store()?;
        let snapshots = store.list().map_err(|error| (self.step, format!("list snapshots: {error}")))?;
        let mut choice = self.faults.below(5);
        if self.journal_floor.is_some_and(|floor| !self.may_lose_newest_snapshot(&snapshots, floor, choice)) {
            choice = 0;
        }
        let remove = match choice {
            1 => 1.min(snapshots.len()),
            2 => snapshots.len(),
            _ => 0,
        };
        // Oldest first: the newest are at the end.
        for (_, path) in snapshots.iter().rev().take(remove) {
            std::fs::remove_file(path).map_err(|error| (self.step, format!("remove {}: {error}", path.display())))?;
        }
        if remove > 0 {
            *self.report.faults.entry("snapshot_dropped").or_default() += 1;
        }
        if let (4, Some((_, newest))) = (choice, snapshots.last()) {
            let len = std::fs::metadata(newest).map_err(|error| (self.step, format!("stat snapshot: {error}")))?.len();
            journal::testing::flip_byte(newest, self.faults.below(len))
                .map_err(|error| (self.step, format!("corrupt snapshot: {error}")))?;
            let load = store.load_latest_detailed().map_err(|error| (self.step, format!("load snapshots: {error}")))?;
            if load.skipped.is_empty() {
                return self.fail("a snapshot with a flipped byte was not skipped");
            }
            *self.report.faults.entry("snapshot_corrupted").or_default() += 1;
        }
        Ok(choice != 3)
    }

    /// With the file journal: tears a written but unacknowledged record, or leaves garbage
    /// after the last record. Returns how many bytes recovery must cut.
    fn damage_tail(&mut self, healthy: bool) -> Result<u64, Fail> {
        let Durable::File(dir) = &self.durable else {
            return Ok(0);
        };
        let dir = dir.clone();
        if self.in_doubt.as_ref().is_some_and(|in_doubt| in_doubt.tear) {
            let segment =
                journal::testing::last_segment(&dir).map_err(|error| (self.step, format!("tear: {error}")))?;
            let spans =
                journal::testing::record_spans(&segment).map_err(|error| (self.step, format!("tear: {error}")))?;
            let last = spans.last().map_or(0, |span| span.len);
            let keep = self.faults.below(last);
            journal::testing::tear_last_record(&dir, keep).map_err(|error| (self.step, format!("tear: {error}")))?;
            *self.report.faults.entry("torn_record").or_default() += 1;
            return Ok(keep);
        }
        if !healthy || !self.faults.chance(1, 2) {
            return Ok(0);
        }
        let garbage: Vec<u8> = match self.faults.below(3) {
            // The start of a record header, cut short.
            0 => {
                let mut bytes = b"JRNL".to_vec();
                bytes.extend_from_slice(&[1, 0, 0, 0, 200, 0]);
                bytes.truncate(1 + self.faults.index(bytes.len()));
                bytes
            }
            // Zeros, as a file system may leave after a crash.
            1 => vec![0; 1 + self.faults.index(64)],
            // Anything else that is not a record.
            _ => (0..1 + self.faults.index(40)).map(|_| b'a' + self.faults.below(26) as u8).collect(),
        };
        journal::testing::append_garbage(&dir, &garbage).map_err(|error| (self.step, format!("garbage: {error}")))?;
        *self.report.faults.entry("garbage_tail").or_default() += 1;
        Ok(garbage.len() as u64)
    }

    /// Opens the durable journal as a restart would; returns it with the bytes cut off its tail.
    fn open_durable(&self) -> Result<(Box<dyn Journal>, u64), Fail> {
        match &self.durable {
            Durable::Memory(journal) => Ok((Box::new(journal.clone()), 0)),
            Durable::File(dir) => {
                // Small segments, so that runs roll over many of them. Opened, as the server
                // does, knowing the highest snapshot position: never below it.
                let floor = self
                    .snapshot_store()?
                    .highest_position()
                    .map_err(|error| (self.step, format!("list snapshots: {error}")))?;
                let options = FileJournalOptions {
                    segment_bytes_max: 256 * 1024,
                    min_next_position: floor,
                    ..FileJournalOptions::default()
                };
                let (journal, opened) = FileJournal::open(dir, options)
                    .map_err(|error| (self.step, format!("open the journal: {error}")))?;
                Ok((Box::new(journal), opened.truncated_bytes))
            }
        }
    }

    // ---- a corrupt last record and the operator's repair --------------------------------------

    /// At a crash of a healthy engine, with the file journal, sometimes: flips a byte of the
    /// last record (complete and acknowledged). Opening must refuse it as corruption at its
    /// position and cut nothing. Then the operator: a repair when the newest snapshot covers
    /// the record (nothing acknowledged is lost; the journal continues at the snapshot's
    /// position), else the record restored from the backup. Returns whether it repaired.
    fn corrupt_tail(&mut self, use_snapshots: bool) -> Result<bool, Fail> {
        let Durable::File(dir) = &self.durable else {
            return Ok(false);
        };
        let dir = dir.clone();
        if !self.faults.chance(1, self.corrupt_tail_one_in) {
            return Ok(false);
        }
        let fail = |what: &str, error: journal::JournalError| (self.step, format!("{what}: {error}"));
        let segment = journal::testing::last_segment(&dir).map_err(|error| fail("corrupt tail", error))?;
        let Some(last) = journal::testing::record_spans(&segment).map_err(|error| fail("corrupt tail", error))?.pop()
        else {
            return Ok(false);
        };
        let backup = std::fs::read(&segment).map_err(|error| (self.step, format!("back up the segment: {error}")))?;
        journal::testing::flip_byte(&segment, last.offset + self.faults.below(last.len))
            .map_err(|error| fail("flip a byte", error))?;
        let damaged = std::fs::read(&segment).map_err(|error| (self.step, format!("read the segment: {error}")))?;
        match self.open_durable() {
            Err((_, message)) if message.contains(&format!("position {}", last.position)) => {}
            Err((_, message)) => {
                return self.fail(format!("a corrupt last record was refused for another reason: {message}"));
            }
            Ok((_, cut)) => {
                return self.fail(format!(
                    "a complete last record with a flipped byte was taken for a torn tail ({cut} bytes cut): \
                     the acknowledged record at position {} is silently lost",
                    last.position
                ));
            }
        }
        let after = std::fs::read(&segment).map_err(|error| (self.step, format!("read the segment: {error}")))?;
        if after != damaged {
            return self.fail("the refused open changed the corrupt segment");
        }
        *self.report.faults.entry("corrupt_tail_refused").or_default() += 1;

        let store = self.snapshot_store()?;
        let newest_valid = store.load_latest().map_err(|error| fail("load snapshots", error))?.map(|(at, _)| at);
        let highest = store.highest_position().map_err(|error| fail("list snapshots", error))?;
        let covered = use_snapshots && newest_valid == Some(highest) && highest > last.position;
        if !covered {
            std::fs::write(&segment, &backup).map_err(|error| (self.step, format!("restore the record: {error}")))?;
            *self.report.faults.entry("corrupt_tail_restored").or_default() += 1;
            return Ok(false);
        }
        let cut_dir = dir.with_file_name(format!("journal-cut-{}-{}", last.position, self.report.crashes));
        let repaired = journal::repair::truncate_at(&dir, &self.snapshots_dir, last.position, &cut_dir)
            .map_err(|error| fail("repair", error))?;
        if repaired.next_position != highest || !repaired.covered_by_snapshot() {
            return self.fail(format!("the repair below the snapshot at {highest} went wrong: {repaired:?}"));
        }
        // The acknowledged commands up to the snapshot are in it, not in the journal any more.
        self.verified = (highest, self.acknowledged.len());
        self.journal_floor = Some(highest);
        *self.report.faults.entry("corrupt_tail_repaired").or_default() += 1;
        Ok(true)
    }

    /// After a repair up to `floor`, recovery needs a valid snapshot at or after it: the crash
    /// may drop or corrupt the newest snapshot (`choice` 1 or 4) only if the one before it is at
    /// or after the floor, and never drop them all or recover without them (2, 3).
    fn may_lose_newest_snapshot(&self, snapshots: &[(Position, PathBuf)], floor: Position, choice: u64) -> bool {
        let valid =
            |path: &PathBuf| std::fs::read(path).is_ok_and(|bytes| journal::snapshot::decode_snapshot(&bytes).is_ok());
        let older = snapshots.len().saturating_sub(1);
        match choice {
            0 => true,
            // An older snapshot at or after the floor that is itself valid (an earlier crash
            // may have corrupted one).
            1 | 4 => snapshots[..older].iter().any(|(position, path)| *position >= floor && valid(path)),
            _ => false,
        }
    }

    // ---- a full disk --------------------------------------------------------------------------

    /// Sometimes (when faults are on): the next step's batch finds the disk full.
    fn storage_full_fault(&mut self) -> Option<FaultKind> {
        (self.faults_on && self.faults.chance(1, self.storage_full_one_in)).then_some(FaultKind::StorageFull)
    }

    /// The step's batch found the disk full: every command was refused with `StorageFull`, the
    /// engine did not stop, and nothing of the step is in the book (the model goes back to
    /// before it). The engine must resume by itself once the disk has room, without a restart;
    /// then a tick catches book time up with the clock.
    fn storage_full_step(
        &mut self,
        submitted: Vec<Submitted>,
        outcomes: Vec<engine::Outcome>,
        model_before: Auditor,
    ) -> Result<(), Fail> {
        let fired = self.switch.take_fired();
        if fired != Some(FaultKind::StorageFull) {
            return self.fail(format!("an armed full disk did not fire (fired {fired:?})"));
        }
        for (entry, outcome) in submitted.iter().zip(&outcomes) {
            match outcome {
                Err(engine::EngineError::StorageFull) => {}
                Ok(reply) => {
                    return self.fail(format!("{:?} was acknowledged ({reply:?}) on a full disk", entry.original));
                }
                Err(error) => {
                    return self.fail(format!("{:?} failed with {error} instead of StorageFull", entry.original));
                }
            }
        }
        if self.engine()?.stats().stopped.load(std::sync::atomic::Ordering::SeqCst) {
            // Its reason says what it found (e.g. an acknowledged command missing from the
            // journal it rebuilt the book from).
            let reason = match self.engine()?.submit(Command::Tick) {
                Err(error) => error.to_string(),
                Ok(reply) => format!("{reply:?}"),
            };
            return self.fail(format!("a full disk stopped the engine: {reason}"));
        }
        self.auditor = model_before;
        *self.report.faults.entry("storage_full").or_default() += 1;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.engine()?.stats().storage_full.load(std::sync::atomic::Ordering::SeqCst) {
            if self.engine()?.stats().stopped.load(std::sync::atomic::Ordering::SeqCst) {
                let reason = match self.engine()?.submit(Command::Tick) {
                    Err(error) => error.to_string(),
                    Ok(reply) => format!("{reply:?}"),
                };
                // A crash and recovery check the journal against what was acknowledged first,
                // naming a lost command if that is why the rebuild failed.
                self.crash(Some(FaultKind::StorageFull))?;
                return self.fail(format!("the engine stopped after a full disk: {reason}"));
            }
            if std::time::Instant::now() > deadline {
                return self.fail("the engine did not resume after the disk had room again");
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let time = self.clock_now();
        let predicted = self.auditor.apply(time, &Command::Tick);
        let outcome = self
            .engine()?
            .submit_waiting(Command::Tick)
            .map_err(|error| (self.step, format!("the engine refused a tick after a full disk: {error}")))?
            .recv()
            .unwrap_or(Err(engine::EngineError::ShutDown));
        let entry = Submitted { step: self.step, time, original: Command::Tick, command: Command::Tick, predicted };
        self.acknowledge(vec![entry], vec![outcome])
    }

    // ---- the projector and its read models ------------------------------------------------------

    /// Between steps, now and then: the projector reads on (and is sometimes killed).
    fn advance_projector(&mut self) -> Result<(), Fail> {
        let step = self.step;
        let Some(projection) = self.projection.as_mut() else { return Ok(()) };
        if self.projection_rng.chance(1, 8) {
            projection.advance(&mut self.report.faults).map_err(|message| (step, message))?;
        }
        Ok(())
    }

    /// At a crash of the engine: a healthy engine's journal is read to its end first (the
    /// projector had it all before the journal is damaged); the projector running inside the
    /// server dies with it half the time. After a failed sync nothing more is read: the
    /// batch in doubt may be in the file, and the recovery decides whether it stays.
    fn projector_at_crash(&mut self, healthy: bool) -> Result<(), Fail> {
        let step = self.step;
        let Some(projection) = self.projection.as_mut() else { return Ok(()) };
        if healthy {
            projection.catch_up(&mut self.report.faults).map_err(|message| (step, message))?;
        }
        if self.journal_floor.is_none() && self.projection_rng.chance(1, 2) {
            projection.kill(&mut self.report.faults, "projector_killed_with_engine");
        }
        Ok(())
    }

    /// The projector's read models against the auditor's prediction (the projector catches up
    /// first). `wallets`: the book's wallets now.
    fn check_read_models(&mut self, wallets: &[Option<book::Wallet>]) -> Result<(), Fail> {
        let step = self.step;
        let Some(projection) = self.projection.as_mut() else { return Ok(()) };
        let audit: Vec<AuditEntry> = self
            .acknowledged
            .iter()
            .map(|entry| AuditEntry {
                at: entry.time,
                command: entry.command.name(),
                account: entry.command.account().map(|account| account.0),
                outcome: entry.outcome,
            })
            .collect();
        let path = projection.store_path();
        let store = projection.store(&mut self.report.faults).map_err(|message| (step, message))?;
        if let Some(tamper) = &self.read_model_tamper {
            tamper(&path);
        }
        let checked = crate::readmodels::check(store, &self.auditor, &audit, wallets)
            .map_err(|message| (step, format!("the read models differ from the auditor's prediction:\n  {message}")))?;
        self.report.read_model_checks += 1;
        self.report.read_model_rows += checked.rows;
        Ok(())
    }

    /// At the end: the store the killed and resumed projector kept equals a rebuild from
    /// scratch, by digest. (After a repair the journal begins at a snapshot, so a rebuild
    /// begins there too and holds less history: not compared.)
    fn compare_with_rebuild(&mut self) -> Result<(), Fail> {
        let step = self.step;
        let Some(projection) = self.projection.as_mut() else { return Ok(()) };
        if self.journal_floor.is_some() {
            *self.report.faults.entry("rebuild_not_compared_after_repair").or_default() += 1;
            return Ok(());
        }
        projection.compare_with_rebuild(&mut self.report.faults).map_err(|message| (step, message))?;
        *self.report.faults.entry("rebuild_compared").or_default() += 1;
        Ok(())
    }

    fn snapshot_store(&self) -> Result<SnapshotStore, Fail> {
        SnapshotStore::open(&self.snapshots_dir).map_err(|error| (self.step, format!("open snapshots: {error}")))
    }

    /// Checks that the journal holds exactly the acknowledged commands (ticks aside) at the
    /// times they were decided, followed by at most a prefix of the commands in doubt, and puts
    /// the model back on the durable history: as before the failed step, plus that prefix.
    fn verify_journal(&mut self, journal: &dyn Journal) -> Result<(), Fail> {
        let in_doubt = self.in_doubt.take();
        let doubtful: Vec<&Submitted> = in_doubt
            .iter()
            .flat_map(|in_doubt| in_doubt.commands.iter())
            .filter(|entry| entry.command != Command::Tick)
            .collect();
        let (from, first) = self.verified;
        let mut next = first;
        let mut found_in_doubt = 0;
        let mut end = from;
        let mut last_time = 0;
        let mut problem: Option<String> = None;
        let acknowledged = &self.acknowledged;
        let visited = journal.read_from(from, &mut |position, payload| {
            let batch = match codec::decode_batch(payload) {
                Ok(batch) => batch,
                Err(error) => {
                    problem = Some(format!("journal record {position} does not decode: {error}"));
                    return Err(journal::JournalError::Poisoned);
                }
            };
            last_time = last_time.max(batch.timestamp);
            for command in batch.commands.iter().filter(|command| **command != Command::Tick) {
                let matches = |time: u64, expected: &Command| *expected == *command && time == batch.timestamp;
                if let Some(expected) = acknowledged.get(next) {
                    if matches(expected.time, &expected.command) {
                        next += 1;
                        continue;
                    }
                    // A record the journal dropped (one command, or a group) shows as a later
                    // acknowledged command found early.
                    let later =
                        acknowledged.iter().skip(next + 1).take(64).find(|later| matches(later.time, &later.command));
                    problem = Some(match later {
                        Some(later) => format!(
                            "the acknowledged command of step {} is missing from the journal: {:?} at {} \
                             (record {position} holds the command of step {} instead)",
                            expected.step, expected.command, expected.time, later.step
                        ),
                        None => format!(
                            "journal record {position} holds {command:?} at {}, but step {} acknowledged {:?} at {}",
                            batch.timestamp, expected.step, expected.command, expected.time
                        ),
                    });
                    return Err(journal::JournalError::Poisoned);
                }
                match doubtful.get(found_in_doubt) {
                    Some(entry) if matches(entry.time, &entry.command) => found_in_doubt += 1,
                    _ => {
                        problem =
                            Some(format!("journal record {position} holds {command:?}, which nobody acknowledged"));
                        return Err(journal::JournalError::Poisoned);
                    }
                }
            }
            end = position + 1;
            Ok(())
        });
        if let Some(problem) = problem {
            return self.fail(problem);
        }
        visited.map_err(|error| (self.step, format!("read the journal: {error}")))?;
        if let Some(missing) = self.acknowledged.get(next) {
            return self.fail(format!(
                "the acknowledged command of step {} is missing from the journal: {:?} at {} ({} of {} found)",
                missing.step,
                missing.command,
                missing.time,
                next,
                self.acknowledged.len()
            ));
        }
        if let Some(in_doubt) = in_doubt {
            let lost = in_doubt.kind == FaultKind::Lost || in_doubt.tear;
            if lost && found_in_doubt > 0 {
                return self
                    .fail(format!("{found_in_doubt} commands whose sync failed and whose record was lost came back"));
            }
            let first_is_command = in_doubt.commands.first().is_some_and(|entry| entry.command != Command::Tick);
            if !lost && first_is_command && found_in_doubt == 0 {
                return self.fail("a written but unacknowledged batch is missing after recovery");
            }
            self.auditor = in_doubt.model_before;
            let mut remaining = found_in_doubt;
            for entry in in_doubt.commands {
                if remaining == 0 {
                    break;
                }
                let reply = self.auditor.apply(entry.time, &entry.original);
                if entry.command != Command::Tick {
                    remaining -= 1;
                    let outcome = reply_outcome(&reply);
                    self.acknowledged.push(Acknowledged {
                        step: entry.step,
                        time: entry.time,
                        command: entry.command,
                        outcome,
                    });
                    next += 1;
                }
            }
            // A tick the sequencer journaled on its own may have moved book time on.
            if last_time > self.auditor.now {
                let _unseen = self.auditor.apply(last_time, &Command::Tick);
            }
            let _ = self.auditor.take_effects();
        }
        self.verified = (end, next);
        Ok(())
    }

    fn start_engine(&mut self, journal: Box<dyn Journal>, recovered: Recovered) -> Result<(), Fail> {
        let journal = match &self.journal_wrapper {
            Some(wrap) => wrap(journal),
            None => journal,
        };
        let journal: Box<dyn Journal> = Box::new(SimJournal::new(journal, self.switch.clone()));
        let published = Arc::clone(&self.published);
        published.lock().unwrap_or_else(PoisonError::into_inner).clear();
        let periodic_snapshots = engine::PeriodicSnapshots::by_projector_if(
            self.projection.as_ref().is_some_and(SimProjector::writes_snapshots),
        );
        let options = EngineOptions {
            snapshot_every_commands: self.faults.between(50, 600),
            periodic_snapshots,
            // The injected full disk has room again after a few checks: check often.
            storage_full_retry: std::time::Duration::from_millis(1),
            on_commit: vec![Box::new(move |committed: &engine::Committed<'_>| {
                published.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(committed.events);
            })],
            ..EngineOptions::default()
        };
        let store = self.snapshot_store()?;
        let engine = EngineHandle::start(journal, Some(store), recovered, Box::new(self.clock.clone()), options)
            .map_err(|error| (self.step, format!("start the engine: {error}")))?;
        if let Some(projection) = self.projection.as_mut() {
            // As `open_data_dir` does: overdue snapshots are caught up from the journal's files.
            if let (Some(writer), Durable::File(journal_dir)) = (engine.snapshot_writer(), &self.durable) {
                writer.catch_up_from(journal::History::new(journal_dir, None));
            }
            projection.set_snapshot_writer(engine.snapshot_writer());
        }
        self.engine = Some(engine);
        Ok(())
    }
}

/// A reply as the audit view shows its outcome: `ok` or the rejection's code.
fn reply_outcome(reply: &Reply) -> &'static str {
    match reply {
        Ok(_) => "ok",
        Err(rejection) => rejection.code(),
    }
}

/// A reply's code for the statistics: `ok.<kind>` or the rejection's stable code.
pub fn reply_code(reply: &Reply) -> &'static str {
    match reply {
        Ok(Ack::AccountOpened(_)) => "ok.account_opened",
        Ok(Ack::ApiKeyCreated(_)) => "ok.api_key_created",
        Ok(Ack::StaffCreated(_)) => "ok.staff_created",
        Ok(Ack::Transfer(_)) => "ok.transfer",
        Ok(Ack::EventCreated(_)) => "ok.event_created",
        Ok(Ack::MarketCreated { .. }) => "ok.market_created",
        Ok(Ack::BetPlaced { status: BetStatus::Pending, .. }) => "ok.bet_pending",
        Ok(Ack::BetPlaced { .. }) => "ok.bet_accepted",
        Ok(Ack::CashoutQuote { .. }) => "ok.cashout_quote",
        Ok(Ack::CashedOut { .. }) => "ok.cashed_out",
        Ok(Ack::Settled { .. }) => "ok.settled",
        Ok(Ack::Done) => "ok.done",
        Ok(Ack::Feed(_)) => "ok.feed",
        Ok(Ack::AdjustmentCompleted { .. }) => "ok.adjustment_completed",
        Ok(Ack::AdjustmentPending { .. }) => "ok.adjustment_pending",
        Err(rejection) => rejection.code(),
    }
}
