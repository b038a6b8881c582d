//! Benchmark of the book and the engine (run with `cargo bench -p engine`): bet decisions per
//! second in memory on one core, and durable bet placements per second through the sequencer
//! with the file journal and group commit at batch sizes 1, 64 and 1024. Batch size 1 (one
//! fdatasync per bet) is the baseline measured in the same run; the ratios are against it.
//!
//! Then the sequencer's longest pause while periodic snapshots are taken with a large book: the
//! book is filled flat out with `BENCH_PAUSE_BETS` bets (default 1,000,000), then
//! `BENCH_PACED_BETS` more (default 200,000) are placed at `BENCH_PACED_RATE` per second
//! (default 20,000), with a snapshot every `BENCH_SNAPSHOT_EVERY` commands (default 200,000,
//! so one falls into the paced phase). For the paced phase it reports the slowest placements,
//! the longest gap between two durable batches seen by a commit hook, and the engine's own
//! counters (longest sequencer cycle with and without the journal append, snapshots by writer).
//!
//! Sizes can be changed with `BENCH_DECISIONS` and `BENCH_DURABLE_BETS`; `BENCH_ONLY=pause`
//! runs only the pause measurement.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use book::{
    AccountId, BetKind, Book, Command, Config, EventId, LegRequest, NewSelection, PlaceBet, PricePolicy, SelectionId,
};
use domain::{Currency, Money, Odds};
use engine::{open_data_dir, EngineOptions, SystemClock};

const PLAYERS: u64 = 10_000;
const EVENTS: u64 = 200;
/// 2026-11-25T12:00:00Z.
const START: u64 = 1_795_608_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn setup_commands() -> Vec<Command> {
    let mut commands = Vec::new();
    for player in 1..=PLAYERS {
        commands.push(Command::OpenAccount { currency: Currency::EUR });
        commands.push(Command::Deposit {
            account: AccountId(player),
            amount: Money::from_minor(10_000_000),
            payment_ref: "bench".into(),
            idempotency: None,
        });
    }
    for event in 1..=EVENTS {
        commands.push(Command::CreateEvent {
            name: format!("Match {event}"),
            sport: "football".into(),
            competition: String::new(),
            starts_at: START + 365 * 86_400_000,
        });
        commands.push(Command::CreateMarket {
            event: EventId(event),
            name: "1X2".into(),
            kind: "1x2".into(),
            selections: ["Home", "Draw", "Away"]
                .iter()
                .map(|name| NewSelection { name: (*name).into(), price: Odds::parse("2.50").expect("odds") })
                .collect(),
            each_way: None,
        });
    }
    commands
}

/// Derby-night mix: 90% singles, most of them on five hot markets, 10% trebles.
fn bet(sequence: u64) -> Command {
    let mix = sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let account = AccountId(1 + mix % PLAYERS);
    let event = if (mix >> 20) % 10 < 9 { 1 + (mix >> 24) % 5 } else { 1 + (mix >> 24) % EVENTS };
    let selection = |event: u64| SelectionId(3 * event - 2 + (mix >> 40) % 3);
    let price = Odds::parse("2.50").expect("odds");
    let (kind, legs) = if (mix >> 32).is_multiple_of(10) {
        let first = 1 + (mix >> 24) % (EVENTS - 2);
        (BetKind::Multiple, (first..first + 3).map(|event| LegRequest { selection: selection(event), price }).collect())
    } else {
        (BetKind::Single, vec![LegRequest { selection: selection(event), price }])
    };
    Command::PlaceBet(PlaceBet {
        account,
        kind,
        legs,
        stake: Money::from_minor(100 + (mix >> 48) as i64 % 1_000),
        each_way: false,
        policy: PricePolicy::Any,
        idempotency: None,
    })
}

fn in_memory(decisions: u64) -> f64 {
    let mut book = Book::new(Config::default());
    let mut events = Vec::with_capacity(16);
    for command in setup_commands() {
        book.apply(START, &command, &mut events).expect("setup");
        events.clear();
    }
    let commands: Vec<Command> = (0..decisions).map(bet).collect();
    let mut accepted = 0u64;
    let started = Instant::now();
    for (index, command) in commands.iter().enumerate() {
        // Time moves as it would under load: a millisecond per thousand bets.
        let now = START + index as u64 / 1_000;
        if book.apply(now, command, &mut events).is_ok() {
            accepted += 1;
        }
        events.clear();
    }
    let elapsed = started.elapsed();
    assert_eq!(accepted, decisions, "every benchmark bet should be accepted");
    book.check_invariants().expect("invariants after the benchmark");
    decisions as f64 / elapsed.as_secs_f64()
}

struct Durable {
    bets_per_second: f64,
    batches: u64,
    p50: Duration,
    p99: Duration,
}

fn durable(batch_commands_max: usize, bets: u64) -> Durable {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = EngineOptions { batch_commands_max, snapshot_every_commands: 0, ..EngineOptions::default() };
    let (engine, _) = open_data_dir(dir.path(), Config::default(), Box::new(SystemClock), options).expect("open");
    let mut setup = VecDeque::new();
    for command in setup_commands() {
        setup.push_back(engine.submit_waiting(command).expect("submit"));
        if setup.len() >= 1024 {
            setup
                .pop_front()
                .and_then(|receiver| receiver.recv().ok())
                .expect("setup reply")
                .expect("durable")
                .expect("accepted");
        }
    }
    for receiver in setup.drain(..) {
        receiver.recv().expect("setup reply").expect("durable").expect("accepted");
    }
    let mut pending: VecDeque<(Instant, oneshot::Receiver<engine::Outcome>)> = VecDeque::new();
    let batches_before = engine.stats().batches.load(std::sync::atomic::Ordering::Relaxed);
    // Keep enough bets in flight to fill batches: the sequencer takes what has arrived.
    let window = (2 * batch_commands_max).max(1);
    let mut latencies = Vec::with_capacity(bets as usize);
    let started = Instant::now();
    for sequence in 0..bets {
        if pending.len() >= window {
            let (sent, receiver) = pending.pop_front().expect("in flight");
            receiver.recv().expect("reply").expect("durable").expect("accepted");
            latencies.push(sent.elapsed());
        }
        pending.push_back((Instant::now(), engine.submit_waiting(bet(sequence)).expect("submit")));
    }
    for (sent, receiver) in pending.drain(..) {
        receiver.recv().expect("reply").expect("durable").expect("accepted");
        latencies.push(sent.elapsed());
    }
    let elapsed = started.elapsed();
    let batches = engine.stats().batches.load(std::sync::atomic::Ordering::Relaxed) - batches_before;
    engine.shutdown();
    latencies.sort();
    let at = |quantile: f64| latencies[((latencies.len() as f64 - 1.0) * quantile) as usize];
    Durable { bets_per_second: bets as f64 / elapsed.as_secs_f64(), batches, p50: at(0.50), p99: at(0.99) }
}

/// The longest gap between two commit hooks, in nanoseconds: under a saturating load, the
/// longest the sequencer went without finishing a batch.
fn gap_hook(longest: &std::sync::Arc<std::sync::atomic::AtomicU64>) -> engine::CommitHook {
    let longest = std::sync::Arc::clone(longest);
    let mut last: Option<Instant> = None;
    Box::new(move |_committed: &engine::Committed<'_>| {
        let now = Instant::now();
        if let Some(last) = last {
            longest.fetch_max(now.duration_since(last).as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        last = Some(now);
    })
}

fn pause(fill: u64, snapshot_every: u64, paced: u64, rate: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().expect("temporary directory");
    let longest_gap = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let options = EngineOptions {
        snapshot_every_commands: snapshot_every,
        on_commit: vec![gap_hook(&longest_gap)],
        ..EngineOptions::default()
    };
    let (engine, _) = open_data_dir(dir.path(), Config::default(), Box::new(SystemClock), options).expect("open");
    for command in setup_commands() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    // Fill the book as fast as the engine takes bets.
    let window = 2 * engine::BATCH_COMMANDS_MAX_DEFAULT;
    let mut pending: VecDeque<oneshot::Receiver<engine::Outcome>> = VecDeque::new();
    let started = Instant::now();
    for sequence in 0..fill {
        if pending.len() >= window {
            pending.pop_front().expect("in flight").recv().expect("reply").expect("durable").expect("accepted");
        }
        pending.push_back(engine.submit_waiting(bet(sequence)).expect("submit"));
    }
    for receiver in pending.drain(..) {
        receiver.recv().expect("reply").expect("durable").expect("accepted");
    }
    println!("  filled the book with {fill} bets in {:.1?}", started.elapsed());
    // Then the measured phase: `paced` bets at `rate` per second, with the periodic snapshots
    // of the full book falling into it. The maxima count from here.
    longest_gap.store(0, Relaxed);
    let stats = engine.stats();
    stats.sequencer_pause_nanos_max.store(0, Relaxed);
    stats.sequencer_work_nanos_max.store(0, Relaxed);
    stats.sequencer_cpu_nanos_max.store(0, Relaxed);
    stats.journal_sync_nanos_max.store(0, Relaxed);
    let snapshots_before = (stats.snapshots_follower.load(Relaxed), stats.snapshots_sequencer.load(Relaxed));
    let mut in_flight: VecDeque<(Instant, oneshot::Receiver<engine::Outcome>)> = VecDeque::new();
    let mut latencies = Vec::with_capacity(paced as usize);
    let started = Instant::now();
    for index in 0..paced {
        let due = started + Duration::from_secs_f64(index as f64 / rate.max(1) as f64);
        while let Some((sent, receiver)) = in_flight.front() {
            match receiver.try_recv() {
                Ok(outcome) => {
                    outcome.expect("durable").expect("accepted");
                    latencies.push(sent.elapsed());
                    in_flight.pop_front();
                }
                Err(oneshot::TryRecvError::Empty) => break,
                Err(error) => panic!("reply lost: {error:?}"),
            }
        }
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        in_flight.push_back((Instant::now(), engine.submit_waiting(bet(fill + index)).expect("submit")));
    }
    for (sent, receiver) in in_flight.drain(..) {
        receiver.recv().expect("reply").expect("durable").expect("accepted");
        latencies.push(sent.elapsed());
    }
    let elapsed = started.elapsed();
    let nanos = |value: u64| Duration::from_nanos(value);
    latencies.sort();
    let at = |quantile: f64| latencies[((latencies.len() as f64 - 1.0) * quantile) as usize];
    println!(
        "  then {paced} bets at {rate}/s in {elapsed:.1?} ({:.0} bets/s), snapshot every {snapshot_every} commands",
        paced as f64 / elapsed.as_secs_f64()
    );
    println!("  placement p50 {:.2?}  p99 {:.2?}  p99.9 {:.2?}  max {:.2?}", at(0.5), at(0.99), at(0.999), at(1.0));
    println!("  longest gap between durable batches (commit hook): {:.2?}", nanos(longest_gap.load(Relaxed)));
    println!(
        "  longest sequencer cycle (EngineStats): {:.2?}  without its journal append: {:.2?}  longest journal \
         append: {:.2?}",
        nanos(stats.sequencer_pause_nanos_max.load(Relaxed)),
        nanos(stats.sequencer_work_nanos_max.load(Relaxed)),
        nanos(stats.journal_sync_nanos_max.load(Relaxed))
    );
    println!(
        "  most CPU time of one sequencer cycle (its thread's clock): {:.2?}",
        nanos(stats.sequencer_cpu_nanos_max.load(Relaxed))
    );
    println!(
        "  snapshots in the measured phase: follower {}, sequencer {} (longest follower snapshot {:.2?}); skipped \
         {}, follower detached {}",
        stats.snapshots_follower.load(Relaxed) - snapshots_before.0,
        stats.snapshots_sequencer.load(Relaxed) - snapshots_before.1,
        nanos(stats.snapshot_nanos_max_follower.load(Relaxed)),
        stats.snapshots_skipped.load(Relaxed),
        stats.follower_detached.load(Relaxed)
    );
    engine.shutdown();
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    if std::env::var("BENCH_ONLY").as_deref() != Ok("pause") {
        throughput();
    }
    println!();
    println!("sequencer pauses with a large book and periodic snapshots:");
    pause(
        env_or("BENCH_PAUSE_BETS", 1_000_000),
        env_or("BENCH_SNAPSHOT_EVERY", 200_000),
        env_or("BENCH_PACED_BETS", 200_000),
        env_or("BENCH_PACED_RATE", 20_000),
    );
}

fn throughput() {
    let decisions = env_or("BENCH_DECISIONS", 1_000_000);
    let durable_bets = env_or("BENCH_DURABLE_BETS", 300_000);
    println!(
        "book benchmark: {decisions} in-memory decisions, {durable_bets} durable bets per batch size (1 uses a tenth)"
    );
    println!();
    println!("in memory, one core ...");
    let rate = in_memory(decisions);
    println!("  bet decisions per second: {rate:>12.0}  ({:.2} us per decision)", 1e6 / rate);
    println!();
    println!("durable through the engine (file journal, fdatasync per batch):");
    println!(
        "  {:>10} {:>14} {:>10} {:>12} {:>10} {:>10} {:>10}",
        "batch max", "bets/s", "batches", "bets/batch", "p50", "p99", "vs 1"
    );
    let mut baseline = None;
    for batch in [1usize, 64, 1024] {
        let bets = if batch == 1 { (durable_bets / 10).max(1_000) } else { durable_bets };
        let result = durable(batch, bets);
        let base = *baseline.get_or_insert(result.bets_per_second);
        println!(
            "  {:>10} {:>14.0} {:>10} {:>12.1} {:>10.2?} {:>10.2?} {:>9.1}x",
            batch,
            result.bets_per_second,
            result.batches,
            bets as f64 / result.batches.max(1) as f64,
            result.p50,
            result.p99,
            result.bets_per_second / base
        );
    }
}
