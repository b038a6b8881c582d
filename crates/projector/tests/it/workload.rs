//! A deterministic workload through the real engine on a data directory with the file
//! journal: players (opened and registered), deposits, withdrawals completed or refused by the
//! payment provider, singles, multiples and system bets, in-play delays, price moves, cash-outs,
//! settlements, resettlements (which can leave players in debt), voids, and responsible-gambling
//! commands. Commands are submitted in waves so that batches hold several commands.

use std::path::Path;

use book::{
    AccountId, Ack, BetKind, BetStatus, Command, Config, EventId, LegRequest, MarketId, NewSelection, PlaceBet,
    PricePolicy, Reply, ResultRequest, SelectionId, SystemKind, TransferId,
};
use domain::{Currency, Money, Odds};
use engine::{open_data_dir, EngineHandle, EngineOptions, ManualClock};

/// 2026-11-25T12:00:00Z.
pub const START: u64 = 1_795_608_000_000;
pub const PLAYERS: u64 = 24;
pub const EVENTS: u64 = 10;
/// Commands submitted before waiting for their replies.
const WAVE: usize = 16;

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

/// A running engine on a data directory with a manual clock, and every reply it gave to the
/// workload's commands, in the order they were decided.
pub struct Run {
    pub engine: EngineHandle,
    pub clock: ManualClock,
    pub replies: Vec<(Command, Reply)>,
    rng: Rng,
    withdrawals: Vec<(AccountId, TransferId)>,
    bets: Vec<(AccountId, book::BetId)>,
    /// Idempotency keys handed out (`keyed`).
    keys: u64,
}

impl Run {
    pub fn open(dir: &Path, seed: u64) -> Run {
        let clock = ManualClock::new(START);
        let options = EngineOptions { snapshot_every_commands: 0, ..EngineOptions::default() };
        let (engine, _) = open_data_dir(dir, Config::default(), Box::new(clock.clone()), options).expect("open engine");
        Run::with_engine(engine, clock, seed)
    }

    /// On an engine the caller opened (`clock` must be the engine's).
    pub fn with_engine(engine: EngineHandle, clock: ManualClock, seed: u64) -> Run {
        Run {
            engine,
            clock,
            replies: Vec::new(),
            rng: Rng::new(seed),
            withdrawals: Vec::new(),
            bets: Vec::new(),
            keys: 0,
        }
    }

    /// Submits commands in one wave and records their replies.
    fn wave(&mut self, commands: Vec<Command>) {
        let receivers: Vec<_> =
            commands.iter().map(|command| self.engine.submit_waiting(command.clone()).expect("submit")).collect();
        for (command, receiver) in commands.into_iter().zip(receivers) {
            let reply = receiver.recv().expect("reply").expect("durable");
            match &reply {
                Ok(Ack::Transfer(id)) if matches!(command, Command::Withdraw { .. }) => {
                    if let Command::Withdraw { account, .. } = command {
                        self.withdrawals.push((account, *id));
                    }
                }
                Ok(Ack::BetPlaced { bet, .. }) => {
                    if let Command::PlaceBet(place) = &command {
                        self.bets.push((place.account, *bet));
                    }
                }
                _ => {}
            }
            self.replies.push((command, reply));
        }
    }

    pub fn setup(&mut self) {
        // A rate for the GBP player's deposit (the deposit cap is in the base currency), taken
        // away again after it: the workload keeps a player whose bets are refused
        // (`fx_rate_missing`).
        let pound = (Currency::parse("GBP").expect("GBP"), domain::ExchangeRate::parse("0.85").expect("rate"));
        let mut commands = vec![Command::SetFxRates { base: Currency::EUR, rates: vec![pound] }];
        for _ in 0..PLAYERS - 2 {
            commands.push(Command::OpenAccount { currency: Currency::EUR });
        }
        for (name, currency) in [("derby_fan", Currency::EUR), ("pound_punter", Currency::parse("GBP").expect("GBP"))] {
            commands.push(Command::RegisterPlayer {
                username: name.into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                date_of_birth: domain::Date::parse("1990-05-17").expect("date"),
                country: "GB".into(),
                currency,
            });
        }
        self.wave(commands);
        let mut commands = Vec::new();
        for player in 1..=PLAYERS {
            commands.push(Command::Deposit {
                account: AccountId(player),
                amount: Money::from_minor(20_000),
                payment_ref: format!("psp-{player}"),
                idempotency: None,
            });
        }
        commands.push(Command::SetFxRates { base: Currency::EUR, rates: Vec::new() });
        for event in 1..=EVENTS {
            commands.push(Command::CreateEvent {
                name: format!("Match {event}"),
                sport: "football".into(),
                competition: "League".into(),
                starts_at: START + 30 * 86_400_000,
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
        self.wave(commands);
        // Event 1 goes in play with a delay: its bets wait, then are accepted or refused.
        self.wave(vec![Command::SetInPlay { event: EventId(1), bet_delay_seconds: 2 }]);
    }

    fn random_command(&mut self) -> Command {
        let rng = &mut self.rng;
        let account = AccountId(1 + rng.below(PLAYERS - 1));
        let selection = |rng: &mut Rng, event: u64| SelectionId(3 * event - 2 + rng.below(3));
        let price = |rng: &mut Rng| Odds::from_scaled(15_000 + 1_000 * rng.below(20) as u32).expect("odds");
        match rng.below(100) {
            0..=54 => {
                let event = 1 + rng.below(EVENTS);
                let chosen = selection(rng, event);
                Command::PlaceBet(PlaceBet {
                    account,
                    kind: BetKind::Single,
                    legs: vec![LegRequest { selection: chosen, price: price(rng) }],
                    stake: Money::from_minor(100 + 100 * rng.below(20) as i64),
                    each_way: false,
                    policy: if rng.below(4) == 0 { PricePolicy::None } else { PricePolicy::Any },
                    idempotency: None,
                })
            }
            55..=64 => {
                let first = 2 + rng.below(EVENTS - 3);
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
            65..=76 => {
                let event = 1 + rng.below(EVENTS);
                let chosen = selection(rng, event);
                Command::SetPrices { market: MarketId(event), prices: vec![(chosen, price(rng))] }
            }
            77..=84 => Command::Deposit {
                account,
                amount: Money::from_minor(1_000),
                payment_ref: "psp".into(),
                idempotency: None,
            },
            85..=90 => Command::Withdraw {
                account,
                amount: Money::from_minor(3_000 + 100 * rng.below(50) as i64),
                idempotency: None,
            },
            91 => Command::SetAccountRisk { account, stake_factor: None, frozen: Some(rng.below(2) == 0) },
            92 => Command::SetLimits {
                account,
                changes: vec![book::LimitChange {
                    kind: book::LimitKind::Stake,
                    period: book::Period::Day,
                    value: Some(Money::from_minor(50_000)),
                }],
            },
            93 => Command::TimeOut { account: AccountId(PLAYERS), hours: 1 },
            _ => {
                let market = MarketId(1 + rng.below(EVENTS));
                match rng.below(4) {
                    0 | 1 => Command::SettleMarket {
                        market,
                        results: vec![ResultRequest {
                            selection: SelectionId(3 * market.0 - 2 + rng.below(3)),
                            outcome: book::Outcome::Win,
                            dead_heat: None,
                            void_factor: None,
                        }],
                    },
                    2 => Command::UnsettleMarket { market },
                    _ => Command::VoidMarket { market },
                }
            }
        }
    }

    /// The command with an idempotency key of its own (bet placement, deposit, withdrawal,
    /// cash-out; others unchanged). Draws nothing from the generator.
    fn keyed(&mut self, mut command: Command) -> Command {
        let key = book::Idempotency { key: format!("key-{}", self.keys), body_hash: 0x5eed_0000 + self.keys };
        let slot = match &mut command {
            Command::PlaceBet(place) => &mut place.idempotency,
            Command::Deposit { idempotency, .. }
            | Command::Withdraw { idempotency, .. }
            | Command::AcceptCashout { idempotency, .. } => idempotency,
            _ => return command,
        };
        *slot = Some(key);
        self.keys += 1;
        command
    }

    /// The last keyed command sent, again (a retry: the book answers it from its window) and
    /// with another body (`idempotency_key_reused`).
    fn retry_last_keyed(&mut self) {
        let Some(command) =
            self.replies.iter().rev().map(|(command, _)| command).find(|command| command.idempotency().is_some())
        else {
            return;
        };
        let same = command.clone();
        let mut other = command.clone();
        if let Command::PlaceBet(book::PlaceBet { idempotency: Some(key), .. })
        | Command::Deposit { idempotency: Some(key), .. }
        | Command::Withdraw { idempotency: Some(key), .. }
        | Command::AcceptCashout { idempotency: Some(key), .. } = &mut other
        {
            key.body_hash ^= 1;
        }
        self.wave(vec![same, other]);
    }

    /// `waves` waves of random commands, with withdrawals completed, cash-outs taken and time
    /// moving between them.
    pub fn steps(&mut self, waves: usize) {
        for wave in 0..waves {
            let commands = (0..WAVE)
                .map(|_| {
                    let command = self.random_command();
                    self.keyed(command)
                })
                .collect();
            self.wave(commands);
            if wave % 7 == 3 {
                self.retry_last_keyed();
            }
            self.clock.advance(700);
            if let Some((account, withdrawal)) = self.withdrawals.pop() {
                let paid = wave % 3 != 0;
                self.wave(vec![Command::CompleteWithdrawal { account, withdrawal, paid }]);
            }
            if wave % 4 == 1 && !self.bets.is_empty() {
                let (account, bet) = self.bets[self.rng.below(self.bets.len() as u64) as usize];
                self.wave(vec![Command::QuoteCashout { account, bet }]);
                if let Some((_, Ok(Ack::CashoutQuote { quote, .. }))) = self.replies.last() {
                    let quote = *quote;
                    let accept = self.keyed(Command::AcceptCashout { account, bet, quote, idempotency: None });
                    self.wave(vec![accept]);
                }
            }
            if wave % 5 == 0 {
                // Lets the in-play delays end.
                self.clock.advance(2_500);
                self.wave(vec![Command::Tick]);
            }
        }
    }

    /// The replies of the commands the workload sent (not the sequencer's own ticks).
    pub fn outcomes(&self) -> Vec<String> {
        self.replies
            .iter()
            .filter(|(command, _)| !matches!(command, Command::Tick))
            .map(|(_, reply)| match reply {
                Ok(_) => "ok".to_owned(),
                Err(rejection) => rejection.code().to_owned(),
            })
            .collect()
    }

    /// The first reply of every idempotency key the workload used: `(account, key, body
    /// hash, reply)`, in the order decided.
    pub fn first_replies(&self) -> Vec<(AccountId, String, u64, Reply)> {
        let mut seen = std::collections::BTreeSet::new();
        let mut first = Vec::new();
        for (command, reply) in &self.replies {
            if let Some((account, key)) = command.idempotency() {
                if seen.insert((account, key.key.clone())) {
                    first.push((account, key.key.clone(), key.body_hash, reply.clone()));
                }
            }
        }
        first
    }

    pub fn shutdown(self) {
        self.engine.shutdown();
    }
}

/// Whether the workload reached the interesting cases; a weak workload makes weak tests.
/// What the workload reached, from the book it ended with and every transfer it made.
pub fn coverage(book: &book::Book, transfers: &[book::Transfer]) -> Vec<&'static str> {
    let mut missing = Vec::new();
    let bets = book.bets();
    let has = |status: BetStatus| bets.iter().any(|bet| bet.status == status);
    for (status, name) in [
        (BetStatus::Won, "won"),
        (BetStatus::Lost, "lost"),
        (BetStatus::Void, "void"),
        (BetStatus::Accepted, "accepted"),
        (BetStatus::CashedOut, "cashed out"),
    ] {
        if !has(status) {
            missing.push(name);
        }
    }
    if !bets.iter().any(|bet| bet.placed_status == BetStatus::Pending) {
        missing.push("in-play delay");
    }
    if !bets.iter().any(|bet| bet.settlement_count > 1) {
        missing.push("resettlement");
    }
    let codes: Vec<book::TransferCode> = transfers.iter().map(|transfer| transfer.code).collect();
    for (code, name) in [
        (book::TransferCode::Withdrawal, "withdrawal"),
        (book::TransferCode::PayoutReversal, "payout reversal"),
        (book::TransferCode::StakeReversal, "stake reversal"),
        (book::TransferCode::Cashout, "cash-out"),
    ] {
        if !codes.contains(&code) {
            missing.push(name);
        }
    }
    missing
}
