//! The demo: a believable match day through the real engine on a real data directory.
//!
//! Football with 1X2, over/under and an Asian handicap quarter line, tennis, and a horse race
//! with each-way terms; a thousand funded players; bets of every kind placed by concurrent
//! clients while prices move; a match taken in play with a bet delay; results with a dead heat
//! and a half-won line; one market resettled. Then the ledger is checked and the data directory
//! is recovered from disk to show the same book comes back.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context};
use book::{
    AccountId, Ack, BetKind, Command, EachWayTerms, EventId, LegRequest, MarketId, NewSelection, Outcome, PlaceBet,
    PricePolicy, ResultRequest, SelectionId, SystemKind,
};
use domain::{Currency, Money, Odds, Ratio};
use engine::{EngineHandle, EngineOptions, SystemClock};

const PLAYERS: u64 = 1_000;
const CLIENTS: u64 = 4;
const HOUR_MS: u64 = 3_600_000;

fn odds(text: &str) -> Odds {
    Odds::parse(text).unwrap_or(Odds::EVENS_REFUND)
}

/// The demo's traffic is the platform's own: the system actor `demo`.
fn demo() -> book::Origin {
    book::Origin::system("demo")
}

fn accepted(engine: &EngineHandle, command: Command) -> anyhow::Result<Ack> {
    let reply = engine.submit((command, demo())).context("engine")?;
    reply.map_err(|rejection| anyhow::anyhow!("demo command rejected: {rejection}"))
}

struct Catalog {
    /// (market, selections) of every market, in creation order.
    markets: Vec<(MarketId, Vec<SelectionId>)>,
    derby: EventId,
}

fn seed_catalog(engine: &EngineHandle, now: u64) -> anyhow::Result<Catalog> {
    let mut markets = Vec::new();
    let event = |name: &str, sport: &str, competition: &str, starts_in_hours: u64| -> anyhow::Result<EventId> {
        match accepted(
            engine,
            Command::CreateEvent {
                name: name.into(),
                sport: sport.into(),
                competition: competition.into(),
                starts_at: now + starts_in_hours * HOUR_MS,
            },
        )? {
            Ack::EventCreated(id) => Ok(id),
            other => bail!("unexpected reply {other:?}"),
        }
    };
    let fixtures = [
        ("Arsenal v Tottenham", "football", "Premier League", 2),
        ("Liverpool v Everton", "football", "Premier League", 3),
        ("Real Madrid v Barcelona", "football", "La Liga", 4),
        ("Sinner v Alcaraz", "tennis", "ATP Finals", 5),
        ("14:30 Cheltenham", "horse_racing", "Cheltenham", 6),
    ];
    let mut events = Vec::new();
    for (name, sport, competition, hours) in fixtures {
        events.push((event(name, sport, competition, hours)?, sport));
    }
    let mut market = |event: EventId,
                      name: &str,
                      kind: &str,
                      selections: &[(&str, &str)],
                      each_way: Option<EachWayTerms>|
     -> anyhow::Result<()> {
        let selections =
            selections.iter().map(|(name, price)| NewSelection { name: (*name).into(), price: odds(price) }).collect();
        match accepted(
            engine,
            Command::CreateMarket { event, name: name.into(), kind: kind.into(), selections, each_way },
        )? {
            Ack::MarketCreated { market, selections } => {
                markets.push((market, selections));
                Ok(())
            }
            other => bail!("unexpected reply {other:?}"),
        }
    };
    for (event, sport) in &events {
        match *sport {
            "football" => {
                market(*event, "Match result", "1x2", &[("Home", "2.10"), ("Draw", "3.40"), ("Away", "3.60")], None)?;
                market(*event, "Total goals 2.5", "over_under", &[("Over 2.5", "1.90"), ("Under 2.5", "1.90")], None)?;
                market(
                    *event,
                    "Asian handicap -0.25",
                    "asian_handicap",
                    &[("Home -0.25", "1.95"), ("Away +0.25", "1.85")],
                    None,
                )?;
            }
            "tennis" => market(*event, "Match winner", "winner", &[("Sinner", "1.80"), ("Alcaraz", "2.00")], None)?,
            _ => {
                let terms = EachWayTerms { places: 3, fraction: Ratio::new(1, 5)? };
                let runners = [
                    ("Galopin", "3/1"),
                    ("Constitution Hill", "7/2"),
                    ("State Man", "5/1"),
                    ("Lossiemouth", "6/1"),
                    ("Impaire", "10/1"),
                    ("Brighterdaysahead", "12/1"),
                    ("Ballyburn", "16/1"),
                    ("Jonbon", "20/1"),
                ];
                market(*event, "Win", "winner", &runners, Some(terms))?;
            }
        }
    }
    Ok(Catalog { markets, derby: events[0].0 })
}

/// A deterministic bet from a sequence number: mostly singles on the derby, some multiples,
/// system bets and each-way bets on the race.
fn demo_bet(sequence: u64, catalog: &Catalog, prices: &BTreeMap<SelectionId, Odds>) -> Command {
    let mix = sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (sequence >> 7);
    let account = AccountId(1 + mix % PLAYERS);
    let leg = |market_index: usize, salt: u64| {
        let (_, selections) = &catalog.markets[market_index];
        let selection = selections[((mix >> salt) % selections.len() as u64) as usize];
        LegRequest { selection, price: prices.get(&selection).copied().unwrap_or(Odds::EVENS_REFUND) }
    };
    let policy = match (mix >> 50) % 3 {
        0 => PricePolicy::None,
        1 => PricePolicy::Better,
        _ => PricePolicy::Any,
    };
    let stake = Money::from_minor(100 * (1 + ((mix >> 40) % 20) as i64));
    let (kind, legs, each_way) = match (mix >> 20) % 20 {
        0..=11 => (BetKind::Single, vec![leg(((mix >> 24) % 3) as usize, 30)], false),
        12..=14 => (BetKind::Multiple, vec![leg(0, 30), leg(3, 33), leg(6, 36)], false),
        15 => (BetKind::System(SystemKind::Trixie), vec![leg(0, 30), leg(3, 33), leg(9, 36)], false),
        16 => (BetKind::System(SystemKind::Yankee), vec![leg(1, 30), leg(4, 33), leg(7, 36), leg(9, 39)], false),
        17 => (BetKind::Single, vec![leg(10, 30)], true),
        _ => (BetKind::Single, vec![leg(((mix >> 24) % catalog.markets.len() as u64) as usize, 30)], false),
    };
    Command::PlaceBet(PlaceBet { account, kind, legs, stake, each_way, policy, idempotency: None })
}

pub fn run(dir: &Path, bets: u64) -> anyhow::Result<()> {
    println!("sportsbook demo: data directory {}", dir.display());
    let started = Instant::now();
    let (engine, report) =
        engine::open_data_dir(dir, book::Config::default(), Box::new(SystemClock), EngineOptions::default())?;
    if report.replayed_commands > 0 || report.snapshot_position.is_some() {
        bail!("{} already holds a book; the demo needs an empty data directory", dir.display());
    }
    let now = SystemClock.now_ms_value();
    println!("[1/6] seeding the catalog: football (1X2, over/under, Asian handicap), tennis, a horse race with each-way terms");
    let catalog = seed_catalog(&engine, now)?;
    println!("[2/6] opening and funding {PLAYERS} players");
    for player in 1..=PLAYERS {
        accepted(&engine, Command::OpenAccount { currency: Currency::EUR })?;
        accepted(
            &engine,
            Command::Deposit {
                account: AccountId(player),
                amount: Money::from_minor(50_000),
                payment_ref: format!("sandbox-{player}"),
                idempotency: None,
            },
        )?;
    }
    println!("[3/6] {bets} bets from {CLIENTS} concurrent clients while prices move; the derby is in play with a 2 s bet delay");
    accepted(&engine, Command::SetInPlay { event: catalog.derby, bet_delay_seconds: 2 })?;
    let prices: BTreeMap<SelectionId, Odds> =
        engine.read(|book| book.selections().iter().map(|s| (s.id, s.price)).collect())?;
    let codes = place_bets(&engine, &catalog, &prices, bets)?;
    for (code, count) in &codes {
        println!("      {code:<24} {count:>8}");
    }
    println!("[4/6] settling: the derby 2-2 (Asian handicap half lost), a dead heat for the race's third place, one market resettled");
    settle(&engine, &catalog)?;
    println!("[5/6] checking the ledger");
    let (checked, digest, summary) = engine.read(|book| {
        let house: i64 = book
            .ledger()
            .accounts()
            .iter()
            .filter(|account| account.kind == book::AccountKind::House)
            .map(|account| account.posted_balance())
            .sum();
        let summary = format!(
            "{} bets, {} transfers, house result {}",
            book.bets().len(),
            book.ledger().transfers().len(),
            Currency::EUR.format(Money::from_minor(house))
        );
        (book.check_invariants(), codec::digest(book), summary)
    })?;
    checked.map_err(|violation| anyhow::anyhow!("invariant violated: {violation}"))?;
    let stats = engine.stats();
    println!(
        "      {summary}; {} batches for {} commands; money conserved, no negative balance",
        stats.batches.load(Ordering::Relaxed),
        stats.commands.load(Ordering::Relaxed)
    );
    engine.shutdown();
    println!("[6/6] recovering {} from disk", dir.display());
    let (reopened, report) =
        engine::open_data_dir(dir, book::Config::default(), Box::new(SystemClock), EngineOptions::default())?;
    let recovered = reopened.read(codec::digest)?;
    reopened.shutdown();
    if recovered != digest {
        bail!("recovered digest {recovered} differs from {digest}");
    }
    println!("      snapshot at position {:?}, same state digest {digest}", report.snapshot_position);
    println!("done in {:.1?}", started.elapsed());
    Ok(())
}

fn place_bets(
    engine: &EngineHandle,
    catalog: &Catalog,
    prices: &BTreeMap<SelectionId, Odds>,
    bets: u64,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let derby_markets: Vec<MarketId> = catalog.markets[..3].iter().map(|(market, _)| *market).collect();
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let engine = engine.clone();
                scope.spawn(move || -> anyhow::Result<BTreeMap<String, u64>> {
                    let mut codes = BTreeMap::new();
                    let mut in_flight = std::collections::VecDeque::new();
                    let mut record = |outcome: engine::Outcome| -> anyhow::Result<()> {
                        let code = match outcome? {
                            Ok(Ack::BetPlaced { status, .. }) => status.as_str().to_string(),
                            Ok(other) => format!("{other:?}"),
                            Err(rejection) => rejection.code().to_string(),
                        };
                        *codes.entry(code).or_insert(0) += 1;
                        Ok(())
                    };
                    for sequence in (client..bets).step_by(CLIENTS as usize) {
                        in_flight.push_back(engine.submit_waiting((demo_bet(sequence, catalog, prices), demo()))?);
                        if in_flight.len() >= 256 {
                            if let Some(receiver) = in_flight.pop_front() {
                                record(receiver.recv()?)?;
                            }
                        }
                        if client == 0 && sequence % 10_000 == 0 && sequence > 0 {
                            println!("      {sequence:>8} / {bets} bets");
                        }
                    }
                    for receiver in in_flight {
                        record(receiver.recv()?)?;
                    }
                    Ok(codes)
                })
            })
            .collect();
        // The trader: prices drift while the clients bet.
        for step in 0..20u64 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let (market, selections) = &catalog.markets[(step % 3) as usize];
            let moved: Vec<(SelectionId, Odds)> = selections
                .iter()
                .enumerate()
                .map(|(index, selection)| {
                    let base = prices.get(selection).map_or(20_000, |odds| odds.scaled());
                    let wobble = if (step + index as u64).is_multiple_of(2) { 500 } else { 0 };
                    (*selection, Odds::from_scaled(base + wobble).unwrap_or(Odds::EVENS_REFUND))
                })
                .collect();
            let _ = engine.submit((Command::SetPrices { market: *market, prices: moved }, demo()))?;
        }
        for client in clients {
            let client_codes = client.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
            for (code, count) in client_codes {
                *codes.entry(code).or_insert(0) += count;
            }
        }
        Ok(())
    })?;
    for market in derby_markets {
        let _ = engine.submit((Command::SetMarketStatus { market, action: book::MarketAction::Suspend }, demo()))?;
    }
    Ok(codes)
}

fn result(selection: SelectionId, outcome: Outcome) -> ResultRequest {
    ResultRequest { selection, outcome, dead_heat: None, void_factor: None }
}

fn settle(engine: &EngineHandle, catalog: &Catalog) -> anyhow::Result<()> {
    // Let in-play bets still in their delay be decided first.
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let markets = &catalog.markets;
    let settle = |market: MarketId, results: Vec<ResultRequest>| -> anyhow::Result<()> {
        match accepted(engine, Command::SettleMarket { market, results })? {
            Ack::Settled { bets } => {
                println!("      {market}: {bets} bets settled");
                Ok(())
            }
            other => bail!("unexpected reply {other:?}"),
        }
    };
    // Derby 2-2: the draw wins, over 2.5 wins, home -0.25 is half lost.
    let (derby_1x2, derby_ou, derby_ah) = (&markets[0], &markets[1], &markets[2]);
    settle(derby_1x2.0, vec![result(derby_1x2.1[1], Outcome::Win)])?;
    settle(derby_ou.0, vec![result(derby_ou.1[0], Outcome::Win)])?;
    let half = Some(Ratio::HALF);
    settle(
        derby_ah.0,
        vec![
            ResultRequest { selection: derby_ah.1[0], outcome: Outcome::Lose, dead_heat: None, void_factor: half },
            ResultRequest { selection: derby_ah.1[1], outcome: Outcome::Win, dead_heat: None, void_factor: half },
        ],
    )?;
    // The other football matches and the tennis.
    for (market, selections) in &markets[3..10] {
        settle(*market, vec![result(selections[0], Outcome::Win)])?;
    }
    // The race: a winner, a second, and a dead heat for third between two runners.
    let (race, runners) = &markets[10];
    let dead_heat = Some(Ratio::HALF);
    settle(
        *race,
        vec![
            result(runners[0], Outcome::Win),
            result(runners[2], Outcome::Place),
            ResultRequest { selection: runners[3], outcome: Outcome::Place, dead_heat, void_factor: None },
            ResultRequest { selection: runners[5], outcome: Outcome::Place, dead_heat, void_factor: None },
        ],
    )?;
    // A correction: the tennis was won by the other player. Unsettle reverses it exactly.
    let (tennis, players) = &markets[9];
    accepted(engine, Command::UnsettleMarket { market: *tennis })?;
    settle(*tennis, vec![result(players[1], Outcome::Win)])?;
    Ok(())
}

trait NowValue {
    fn now_ms_value(&self) -> u64;
}

impl NowValue for SystemClock {
    fn now_ms_value(&self) -> u64 {
        engine::Clock::now_ms(self)
    }
}
