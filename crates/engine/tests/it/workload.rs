//! A small deterministic workload for engine tests: players, fixtures, bets of every kind,
//! price moves, settlements and resettlements, drawn from a seeded generator.

use book::{
    AccountId, BetKind, Command, EventId, LegRequest, MarketId, NewSelection, Outcome, PlaceBet, PricePolicy,
    ResultRequest, SelectionId, SystemKind,
};
use domain::{Currency, Money, Odds};

/// 2026-11-25T12:00:00Z.
pub const START: u64 = 1_795_608_000_000;

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

pub const PLAYERS: u64 = 20;
pub const EVENTS: u64 = 8;

/// Commands that build the catalog and fund the players: players are acc_1..acc_20, event N
/// has market N with selections 3N-2..3N.
pub fn setup() -> Vec<Command> {
    let mut commands = Vec::new();
    for _ in 0..PLAYERS {
        commands.push(Command::OpenAccount { currency: Currency::EUR });
    }
    for player in 1..=PLAYERS {
        commands.push(Command::Deposit {
            account: AccountId(player),
            amount: Money::from_minor(100_000),
            payment_ref: format!("psp-{player}"),
            idempotency: None,
        });
    }
    for event in 1..=EVENTS {
        commands.push(Command::CreateEvent {
            name: format!("Match {event}"),
            sport: "football".into(),
            competition: String::new(),
            starts_at: START + 30 * 86_400_000,
        });
        commands.push(Command::CreateMarket {
            event: EventId(event),
            name: "1X2".into(),
            kind: "1x2".into(),
            selections: ["Home", "Draw", "Away"]
                .iter()
                .map(|name| NewSelection { name: (*name).into(), price: Odds::parse("2.50").unwrap() })
                .collect(),
            each_way: None,
        });
    }
    // A registered player (acc_21) and an operator key, so identity round trips too.
    commands.push(Command::RegisterPlayer {
        username: "derby_fan".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        date_of_birth: domain::Date::parse("1990-05-17").expect("date"),
        country: "GB".into(),
        currency: Currency::EUR,
    });
    commands.push(Command::CreateApiKey {
        name: "trader".into(),
        key_hash: "ab".repeat(32),
        scopes: book::scopes::TRADING,
    });
    commands
}

/// One random command of the steady workload.
pub fn random_command(rng: &mut Rng) -> Command {
    let account = AccountId(1 + rng.below(PLAYERS));
    let selection = |rng: &mut Rng, event: u64| SelectionId(3 * event - 2 + rng.below(3));
    let price = |rng: &mut Rng| Odds::from_scaled(15_000 + 1_000 * rng.below(20) as u32).unwrap();
    match rng.below(100) {
        0..=59 => {
            let event = 1 + rng.below(EVENTS);
            let chosen = selection(rng, event);
            Command::PlaceBet(PlaceBet {
                account,
                kind: BetKind::Single,
                legs: vec![LegRequest { selection: chosen, price: price(rng) }],
                stake: Money::from_minor(100 + 100 * rng.below(20) as i64),
                each_way: false,
                policy: PricePolicy::Any,
                idempotency: None,
            })
        }
        60..=69 => {
            let first = 1 + rng.below(EVENTS - 2);
            let legs = (first..first + 3)
                .map(|event| LegRequest { selection: selection(rng, event), price: price(rng) })
                .collect();
            let kind = if rng.below(2) == 0 { BetKind::Multiple } else { BetKind::System(SystemKind::Trixie) };
            Command::PlaceBet(PlaceBet {
                account,
                kind,
                legs,
                stake: Money::from_minor(100),
                each_way: false,
                policy: PricePolicy::Any,
                idempotency: None,
            })
        }
        70..=84 => {
            let event = 1 + rng.below(EVENTS);
            let chosen = selection(rng, event);
            Command::SetPrices { market: MarketId(event), prices: vec![(chosen, price(rng))] }
        }
        85..=92 => {
            Command::Deposit { account, amount: Money::from_minor(1_000), payment_ref: "psp".into(), idempotency: None }
        }
        93..=96 => Command::Withdraw { account, amount: Money::from_minor(500), idempotency: None },
        _ => {
            let market = MarketId(1 + rng.below(EVENTS));
            match rng.below(3) {
                0 => Command::SettleMarket {
                    market,
                    results: vec![ResultRequest {
                        selection: SelectionId(3 * market.0 - 2 + rng.below(3)),
                        outcome: Outcome::Win,
                        dead_heat: None,
                        void_factor: None,
                    }],
                },
                1 => Command::UnsettleMarket { market },
                _ => Command::VoidMarket { market },
            }
        }
    }
}
