//! The most CPU time a single `Book::apply` of each command kind took, and its longest and mean
//! wall time, in the soak's shape (10,000 funded players, 200 markets taking bets at once, a
//! market retired and settled after 1,000 bets, one bet every 50 µs of book time, a 30 s
//! resettlement window): what one command can cost the sequencer.
//! `cargo run --release -p book --example command_cost -- [BETS]`.

use std::collections::BTreeMap;
use std::time::Duration;

use book::{
    AccountId, BetKind, Book, Command, Config, EventId, Idempotency, LegRequest, MarketId, NewSelection, Outcome,
    PlaceBet, PricePolicy, ResultRequest, SelectionId,
};
use domain::{Currency, Money, Odds};

const PLAYERS: u64 = 10_000;
const LIVE: u64 = 200;
const PER_MARKET: u64 = 1_000;

/// Per command kind: the longest CPU time, the longest wall time, how many, their total wall time.
type Worst = BTreeMap<&'static str, (Duration, Duration, u64, Duration)>;

/// This thread's time on the CPU so far (Linux `/proc/thread-self/schedstat`, nanoseconds):
/// the machine may be shared, and a command's wall time then counts other processes' turns.
fn cpu_nanos() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|field| field.parse().ok()))
        .unwrap_or(0)
}

fn apply(book: &mut Book, now: u64, command: &Command, worst: &mut Worst) -> book::Reply {
    let mut events = Vec::new();
    let began = cpu_nanos();
    let wall = std::time::Instant::now();
    let reply = book.apply(now, command, &mut events);
    let wall = wall.elapsed();
    let took = Duration::from_nanos(cpu_nanos().saturating_sub(began));
    if took > Duration::from_millis(5) {
        let sizes = book.sizes();
        println!(
            "  slow: {} took {took:.2?} (keys {}, bets held {}, transfers held {}, markets {})",
            command.name(),
            sizes.idempotency_keys,
            sizes.open_bets + sizes.closed_bets,
            sizes.transfers,
            sizes.markets
        );
    }
    let entry = worst.entry(command.name()).or_default();
    entry.0 = entry.0.max(took);
    entry.1 = entry.1.max(wall);
    entry.2 += 1;
    entry.3 += wall;
    reply
}

fn open(book: &mut Book, now: u64, next_market: &mut u64, worst: &mut Worst) -> u64 {
    *next_market += 1;
    let id = *next_market;
    apply(
        book,
        now,
        &Command::CreateEvent {
            name: format!("Match {id}"),
            sport: "football".into(),
            competition: "League".into(),
            starts_at: now + 86_400_000,
        },
        worst,
    )
    .expect("event");
    apply(
        book,
        now,
        &Command::CreateMarket {
            event: EventId(id),
            name: "1X2".into(),
            kind: "1x2".into(),
            selections: ["Home", "Draw", "Away"]
                .iter()
                .map(|name| NewSelection { name: (*name).into(), price: Odds::parse("2.50").expect("odds") })
                .collect(),
            each_way: None,
        },
        worst,
    )
    .expect("market");
    id
}

fn main() {
    let bets: u64 = std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(1_000_000);
    let config = Config { resettlement_window_ms: 30_000, ..Config::default() };
    let mut book = Book::new(config);
    let mut now = 1_795_608_000_000u64;
    let mut worst: Worst = BTreeMap::new();
    for player in 1..=PLAYERS {
        apply(&mut book, now, &Command::OpenAccount { currency: Currency::EUR }, &mut worst).expect("account");
        apply(
            &mut book,
            now,
            &Command::Deposit {
                account: AccountId(player),
                amount: Money::from_minor(10_000_000),
                payment_ref: format!("psp-{player}"),
                idempotency: None,
            },
            &mut worst,
        )
        .expect("deposit");
    }
    let mut next_market = 0u64;
    // Live markets and the bets each took, staggered so that they retire one after another.
    let mut live: Vec<(u64, u64)> = (0..LIVE)
        .map(|index| (open(&mut book, now, &mut next_market, &mut worst), index * PER_MARKET / LIVE))
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for number in 0..bets {
        now += if number % 20 == 0 { 1 } else { 0 };
        let slot = (random() % LIVE) as usize;
        let market = live[slot].0;
        let command = Command::PlaceBet(PlaceBet {
            account: AccountId(1 + random() % PLAYERS),
            kind: BetKind::Single,
            legs: vec![LegRequest {
                selection: SelectionId(3 * market - 2 + random() % 3),
                price: Odds::parse("2.50").expect("odds"),
            }],
            stake: Money::from_minor(100 + 100 * (random() % 100) as i64),
            each_way: false,
            policy: PricePolicy::None,
            idempotency: Some(Idempotency { key: format!("soak-{number}"), body_hash: random() }),
        });
        let _ = apply(&mut book, now, &command, &mut worst);
        live[slot].1 += 1;
        if live[slot].1 >= PER_MARKET {
            let settle = Command::SettleMarket {
                market: MarketId(market),
                results: vec![ResultRequest {
                    selection: SelectionId(3 * market - 2),
                    outcome: Outcome::Win,
                    dead_heat: None,
                    void_factor: None,
                }],
            };
            apply(&mut book, now, &settle, &mut worst).expect("settle");
            live[slot] = (open(&mut book, now, &mut next_market, &mut worst), 0);
        }
    }
    println!("{bets} bets, book time {} s, sizes {:?}", (now - 1_795_608_000_000) / 1000, book.sizes());
    for (name, (took, wall, count, total)) in worst {
        let mean = total / u32::try_from(count).unwrap_or(u32::MAX).max(1);
        println!("  {name:<16} {count:>9} commands, longest {took:.2?} CPU, {wall:.2?} wall, mean {mean:.2?} wall");
    }
}
