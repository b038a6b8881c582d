//! Rows per second into each read-model store: a workload of bets through the real engine on a
//! temporary data directory (file journal, group commit), then the projector over its journal
//! into SQLite and into PostgreSQL, each from an empty store.
//!
//! `cargo run --release -p projector --example bench -- [BETS] [POSTGRES_URL]`
//! (defaults: 200000 and postgres://postgres@127.0.0.1:5432/test).

use std::time::Instant;

use book::{
    AccountId, BetKind, Command, Config, EventId, Idempotency, LegRequest, MarketId, NewSelection, Outcome, PlaceBet,
    PricePolicy, ResultRequest, SelectionId,
};
use domain::{Currency, Money, Odds};
use engine::{open_data_dir, EngineOptions, ManualClock};
use projector::{digest, PostgresStore, Projector, ProjectorOptions, SqliteStore, Store};

const PLAYERS: u64 = 1_000;
const MARKETS: u64 = 100;
/// Commands in flight before waiting for their replies: lets the sequencer batch.
const WAVE: usize = 4_096;
/// 2026-11-25T12:00:00Z.
const START: u64 = 1_795_608_000_000;

/// User plus system CPU seconds of this process so far (Linux `/proc/self/stat`; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; after the name the state (field 3) is
    // index 0, so they are indexes 11 and 12.
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
    // The kernel's USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bets: u64 = args.next().map(|text| text.parse()).transpose()?.unwrap_or(200_000);
    let url = args.next().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::new(START);
    let options = EngineOptions { snapshot_every_commands: 0, ..EngineOptions::default() };
    let (engine, _) = open_data_dir(dir.path(), Config::default(), Box::new(clock.clone()), options)?;

    let began = Instant::now();
    let run = |commands: Vec<Command>| -> Result<(), Box<dyn std::error::Error>> {
        for chunk in commands.chunks(WAVE) {
            let receivers =
                chunk.iter().map(|command| engine.submit_waiting(command.clone())).collect::<Result<Vec<_>, _>>()?;
            for receiver in receivers {
                receiver.recv()??.map_err(|rejection| format!("rejected: {rejection}"))?;
            }
        }
        Ok(())
    };
    let mut setup = Vec::new();
    for player in 1..=PLAYERS {
        setup.push(Command::OpenAccount { currency: Currency::EUR });
        setup.push(Command::Deposit {
            account: AccountId(player),
            amount: Money::from_minor(10_000_000),
            payment_ref: format!("psp-{player}"),
            idempotency: None,
        });
    }
    for market in 1..=MARKETS {
        setup.push(Command::CreateEvent {
            name: format!("Match {market}"),
            sport: "football".into(),
            competition: "League".into(),
            starts_at: START + 86_400_000,
        });
        setup.push(Command::CreateMarket {
            event: EventId(market),
            name: "1X2".into(),
            kind: "1x2".into(),
            selections: ["Home", "Draw", "Away"]
                .iter()
                .map(|name| NewSelection { name: (*name).into(), price: Odds::parse("2.50").expect("odds") })
                .collect(),
            each_way: None,
        });
    }
    run(setup)?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let placing: Vec<Command> = (0..bets)
        .map(|number| {
            let market = 1 + next() % MARKETS;
            Command::PlaceBet(PlaceBet {
                account: AccountId(1 + next() % PLAYERS),
                kind: BetKind::Single,
                legs: vec![LegRequest {
                    selection: SelectionId(3 * market - 2 + next() % 3),
                    price: Odds::parse("2.50").expect("odds"),
                }],
                stake: Money::from_minor(100 + 100 * (next() % 20) as i64),
                each_way: false,
                policy: PricePolicy::Any,
                // Every bet carries its client's idempotency key, as over HTTP.
                idempotency: Some(Idempotency { key: format!("bet-{number:016x}"), body_hash: next() }),
            })
        })
        .collect();
    run(placing)?;
    let settling: Vec<Command> = (1..=MARKETS)
        .map(|market| Command::SettleMarket {
            market: MarketId(market),
            results: vec![ResultRequest {
                selection: SelectionId(3 * market - 2),
                outcome: Outcome::Win,
                dead_heat: None,
                void_factor: None,
            }],
        })
        .collect();
    run(settling)?;
    let batches = engine.stats().batches.load(std::sync::atomic::Ordering::Relaxed);
    engine.shutdown();
    println!(
        "engine: {bets} bets placed and settled, {batches} journal batches, {:.1} s",
        began.elapsed().as_secs_f64()
    );

    let measure = |name: &str, store: Box<dyn Store>| -> Result<String, Box<dyn std::error::Error>> {
        let began = Instant::now();
        let cpu_began = cpu_seconds();
        let mut projector = Projector::open(store, ProjectorOptions::new(dir.path()), false)?;
        projector.catch_up(&mut |_| {})?;
        let seconds = began.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_began;
        let progress = projector.progress();
        println!(
            "{name:>8}: {} rows in {} commits, {:.2} s: {:.0} rows/s, {:.0} bets/s ({} batches, {} commands); \
             projector CPU {:.2} s ({:.0} rows per CPU-second, the database server's CPU not counted)",
            progress.rows,
            progress.commits,
            seconds,
            progress.rows as f64 / seconds,
            bets as f64 / seconds,
            progress.batches,
            progress.commands,
            cpu,
            progress.rows as f64 / cpu.max(1e-9)
        );
        Ok(digest(projector.store())?)
    };
    let sqlite = measure("sqlite", Box::new(SqliteStore::open(&dir.path().join("bench.sqlite3"))?))?;
    let schema = format!("bench_{}", std::process::id());
    PostgresStore::drop_schema(&url, &schema).map_err(|error| format!("PostgreSQL at {url} is needed: {error}"))?;
    let postgres = measure("postgres", Box::new(PostgresStore::connect(&url, &schema)?))?;
    PostgresStore::drop_schema(&url, &schema)?;
    assert_eq!(sqlite, postgres, "both stores hold the same models");
    println!("both stores hold the same models (digest {sqlite})");
    Ok(())
}
