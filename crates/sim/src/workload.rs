//! The workload: a seeded generator of commands that mixes everything the book does.
//!
//! Each step looks at the auditor's model (what exists, what is open, what the prices are) so
//! that most commands name real records and most bets get past the first checks, and then
//! spoils a fraction of them on purpose (an unknown id, a stale price, a stake below the minimum,
//! a bad factor) so the rejection paths run as well. Nothing here reads the book: the same seed
//! gives the same commands whatever the engine does, as long as the auditor agrees with it.
//!
//! It is also a Unified Odds Feed provider (`feed`): fixtures, markets, prices, settlements,
//! cancellations and rollbacks as schema-shaped XML, each with the feed message it means.

use std::collections::VecDeque;

use book::{
    AccountId, ApiKeyId, BetId, BetKind, BetStatus, Command, EachWayTerms, EventId, EventState, Idempotency, KycRules,
    KycState, LegRequest, LimitChange, LimitKind, MarketAction, MarketId, MarketRiskChange, MarketStatus, NewSelection,
    Outcome, Period, PlaceBet, PricePolicy, QuoteId, ResultRequest, SelectionId, SystemKind, TransferId,
};
use domain::{Currency, Date, Money, Odds, Ratio};

use crate::auditor::Auditor;
use crate::rng::Rng;

mod feed;

pub use feed::PROVIDER;

/// 2026-11-25T12:00:00Z: book time when a run starts.
pub const START_MS: u64 = 1_795_608_000_000;
/// Accounts the workload opens at most; beyond, registrations are still tried but rarely.
const PLAYERS_MAX: usize = 40;
/// Fixtures not yet ended that the workload keeps around.
const LIVE_EVENTS_MIN: usize = 8;
const LIVE_EVENTS_MAX: usize = 16;
/// Keyed commands remembered for retries.
const RECENT_KEYED_MAX: usize = 64;
/// Prices the workload quotes, in odds × 10,000, short to long.
const PRICES: [u32; 23] = [
    10_001,
    10_500,
    12_500,
    13_333,
    15_000,
    18_000,
    19_000,
    20_000,
    21_000,
    25_000,
    30_000,
    32_000,
    45_000,
    60_000,
    80_000,
    110_000,
    150_000,
    210_000,
    340_000,
    510_000,
    1_010_000,
    10_000_000,
    100_000_000,
];
const ODDS_SCALED_MAX: u32 = 100_000_000;

/// What the simulator does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Submit a command to the engine (and the auditor).
    Command(Command),
    /// Let time pass by this many milliseconds, then submit a `Tick` so the book catches up.
    Advance(u64),
    /// A provider's message: the simulator translates it as the feed role does and submits
    /// the translation.
    Feed(FeedDelivery),
}

/// One Unified Odds Feed message as a producer publishes it, with what the workload means by
/// it: the feed's translator must turn `xml` (published under `routing` by producer `product`)
/// into exactly `expected` and refuse exactly the parts named in `refused` (by reason). The
/// auditor applies `expected`; the engine gets the translation (nothing when it has no items:
/// the feed role submits no empty message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedDelivery {
    pub routing: String,
    pub xml: String,
    pub product: u32,
    pub expected: book::FeedMessage,
    pub refused: Vec<&'static str>,
}

/// One step of the workload with a label for the statistics.
#[derive(Clone, Debug)]
pub struct Step {
    pub label: &'static str,
    pub op: Op,
}

#[derive(Debug)]
pub struct Workload {
    rng: Rng,
    keys_issued: u64,
    names_issued: u64,
    recent_keyed: VecDeque<Command>,
    /// Commands that reached the book while their client was gone: it hung up, or the
    /// gateway answered 504 `outcome_unknown`. A timed-out client retries with the same key
    /// later (`retry.unknown`); one that hung up never comes back.
    unanswered: VecDeque<Command>,
    /// Recent deposits' accounts and payment references, to send one again.
    recent_refs: VecDeque<(AccountId, String)>,
    /// Withdrawal holds the payments step is completing, one a step (`payments.sweep`): what
    /// the gateway's sweep does at start and every interval, whether or not a client waits.
    sweep: VecDeque<(u64, u64)>,
    /// Feed fixtures created so far (their URNs are numbered from it).
    feed_events_issued: u64,
    /// The last feed messages sent, to deliver one again.
    feed_sent: VecDeque<FeedDelivery>,
}

/// The staff desk the simulation creates first, by role: support, two compliance officers, a
/// trader and an admin.
const STAFF_DESK: [u8; 5] =
    [book::roles::SUPPORT, book::roles::COMPLIANCE, book::roles::COMPLIANCE, book::roles::TRADER, book::roles::ADMIN];

/// Commands without an answer kept for a retry, and deposits kept for a repeated reference.
const UNANSWERED_MAX: usize = 32;
const RECENT_REFS_MAX: usize = 32;

/// The hash a client would send with an idempotency key: of the command without its key.
pub fn body_hash(command: &Command) -> u64 {
    let mut bare = command.clone();
    set_key(&mut bare, None);
    let text = format!("{bare:?}");
    // FNV-1a.
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

fn set_key(command: &mut Command, key: Option<Idempotency>) {
    match command {
        Command::Deposit { idempotency, .. }
        | Command::BeginDeposit { idempotency, .. }
        | Command::Withdraw { idempotency, .. }
        | Command::AcceptCashout { idempotency, .. }
        | Command::RequestAdjustment { idempotency, .. } => *idempotency = key,
        Command::PlaceBet(place) => place.idempotency = key,
        _ => {}
    }
}

fn key_of(command: &Command) -> Option<&Idempotency> {
    match command {
        Command::Deposit { idempotency, .. }
        | Command::BeginDeposit { idempotency, .. }
        | Command::Withdraw { idempotency, .. }
        | Command::AcceptCashout { idempotency, .. }
        | Command::RequestAdjustment { idempotency, .. } => idempotency.as_ref(),
        Command::PlaceBet(place) => place.idempotency.as_ref(),
        _ => None,
    }
}

fn odds(scaled: u32) -> Odds {
    Odds::from_scaled(scaled.clamp(10_001, ODDS_SCALED_MAX)).expect("clamped into the offered range")
}

fn ratio(num: u32, den: u32) -> Ratio {
    Ratio::new(num, den).expect("small fractions are valid ratios")
}

fn money(minor: i64) -> Money {
    Money::from_minor(minor)
}

/// Sport of an event, from its id: football, racing (each-way) or tennis.
fn sport_of(event: u64) -> usize {
    (event % 3) as usize
}

const SPORTS: [&str; 3] = ["football", "racing", "tennis"];

impl Workload {
    pub fn new(rng: Rng) -> Workload {
        Workload {
            rng,
            keys_issued: 0,
            names_issued: 0,
            recent_keyed: VecDeque::new(),
            unanswered: VecDeque::new(),
            recent_refs: VecDeque::new(),
            sweep: VecDeque::new(),
            feed_events_issued: 0,
            feed_sent: VecDeque::new(),
        }
    }

    /// The payments step resumes: every withdrawal hold open in the model is paid out, one a
    /// step, before anything else (called after every recovery, and by `payments.sweep`).
    pub fn resume_payments(&mut self, auditor: &Auditor) {
        self.sweep = auditor
            .withdrawals
            .iter()
            .filter(|(_, found)| found.open)
            .map(|(id, found)| (*id, found.account))
            .collect();
    }

    /// Whether the payments step has holds left to complete.
    pub fn is_sweeping(&self) -> bool {
        !self.sweep.is_empty()
    }

    /// The next hold of a sweep still open, paid out as the sandbox provider does.
    fn sweep_step(&mut self, auditor: &Auditor) -> Option<Step> {
        while let Some((withdrawal, account)) = self.sweep.pop_front() {
            if auditor.withdrawals.get(&withdrawal).is_some_and(|found| found.open) {
                let command = Command::CompleteWithdrawal {
                    account: AccountId(account),
                    withdrawal: TransferId(withdrawal),
                    paid: true,
                };
                return Some(Step { label: "payments.sweep", op: Op::Command(command) });
            }
        }
        None
    }

    /// A money command whose client is gone once it reached the book: it hung up (never
    /// retried; a withdrawal's hold is left to the payments step), or the gateway gave up
    /// waiting and answered 504 `outcome_unknown` (retried with the same key later).
    fn unanswered_command(&mut self, auditor: &Auditor) -> Step {
        let step = match self.rng.below(3) {
            0 => self.deposit(auditor),
            1 => self.withdraw(auditor),
            _ => self.bet(auditor, BetShape::Single),
        };
        let Op::Command(mut command) = step.op else { return step };
        // Keys are required on these routes: a client that may not see its answer sends one.
        if key_of(&command).is_none_or(|key| key.key.is_empty() || key.key.len() > 128) {
            self.keys_issued += 1;
            set_key(&mut command, Some(Idempotency { key: format!("key-{}", self.keys_issued), body_hash: 0 }));
        }
        let hung_up = self.rng.chance(1, 2);
        let label = if hung_up { "client.hung_up" } else { "gateway.timeout" };
        let step = self.keyed(label, command);
        if !hung_up {
            if let Op::Command(command) = &step.op {
                if self.unanswered.len() == UNANSWERED_MAX {
                    self.unanswered.pop_front();
                }
                self.unanswered.push_back(command.clone());
            }
        }
        step
    }

    /// A client that was answered 504 `outcome_unknown` sends the same request with the same
    /// key: it must get the first outcome, never a second deposit, withdrawal or bet.
    fn retry_unknown(&mut self, auditor: &Auditor) -> Step {
        match self.unanswered.pop_front() {
            Some(command) => Step { label: "retry.unknown", op: Op::Command(command) },
            None => self.unanswered_command(auditor),
        }
    }

    /// The next step, chosen against the model as it is now.
    pub fn next(&mut self, auditor: &Auditor) -> Step {
        if let Some(step) = self.sweep_step(auditor) {
            return step;
        }
        let live = live_events(auditor);
        if auditor.players.len() < 4 {
            return self.register(auditor);
        }
        if live.len() < LIVE_EVENTS_MIN {
            return self.create_event(auditor);
        }
        if let Some(&event) = live.iter().find(|&&event| {
            let found = &auditor.events[event as usize - 1];
            found.markets.is_empty() && found.feed.is_none()
        }) {
            return self.create_market(auditor, event);
        }
        if auditor.staff.len() < STAFF_DESK.len() {
            return self.create_staff(auditor);
        }
        // Fixtures are created only while there are few enough.
        let create_event = if live.len() < LIVE_EVENTS_MAX { 2 } else { 0 };
        let weights: [u64; 47] = [
            20, // single
            7,  // multiple
            5,  // system
            5,  // each-way
            5,  // retry
            7,  // deposit
            3,  // withdraw
            3,  // complete withdrawal
            2,  // register
            10, // prices
            3,  // market status
            2,  // in play
            2,  // end event
            create_event,
            2, // create market
            2, // market risk
            5, // settle
            2, // unsettle
            1, // void
            4, // quote
            4, // accept
            7, // advance
            2, // limits
            1, // time-out
            1, // self-exclusion
            2, // account risk
            1, // api keys
            1, // open account
            2, // exchange rates
            2, // a client gone after its command reached the book
            2, // its retry with the same key
            1, // the payments sweep
            1, // feed: a new fixture
            2, // feed: a new market
            6, // feed: prices and market status
            4, // feed: settlement
            2, // feed: rollback of a settlement
            3, // feed: cancellation
            2, // feed: rollback of a cancellation
            1, // feed: a message delivered again
            1, // feed: a fixture rescheduled
            2, // a staff member's manual adjustment
            2, // another staff member approves or rejects one
            3, // the payment provider's callback on a deposit (completed, failed, charged back)
            1, // a withdrawal approved for payout
            2, // identity verification: a jurisdiction's rules, a provider's or staff member's state
            3, // reality checks (an interval, a session, an acknowledgement) and personal details
        ];
        match self.rng.weighted(&weights) {
            0 => self.bet(auditor, BetShape::Single),
            1 => self.bet(auditor, BetShape::Multiple),
            2 => self.bet(auditor, BetShape::System),
            3 => self.bet(auditor, BetShape::EachWay),
            4 => self.retry(auditor),
            5 => self.deposit(auditor),
            6 => self.withdraw(auditor),
            7 => self.complete_withdrawal(auditor),
            8 => self.register(auditor),
            9 => self.set_prices(auditor, &live),
            10 => self.market_status(auditor, &live),
            11 => self.in_play(auditor, &live),
            12 => self.end_event(auditor, &live),
            13 => self.create_event(auditor),
            14 => {
                let event = *self.rng.pick(&live).expect("live events exist");
                self.create_market(auditor, event)
            }
            15 => self.market_risk(auditor, &live),
            16 => self.settle(auditor),
            17 => self.unsettle(auditor),
            18 => self.void(auditor),
            19 => self.quote(auditor),
            20 => self.accept(auditor),
            21 => self.advance(),
            22 => self.limits(auditor),
            23 => self.time_out(auditor),
            24 => self.self_exclude(auditor),
            25 => self.account_risk(auditor),
            26 => self.api_key(auditor),
            28 => self.fx_rates(auditor),
            29 => self.unanswered_command(auditor),
            30 => self.retry_unknown(auditor),
            31 => {
                self.resume_payments(auditor);
                self.sweep_step(auditor).unwrap_or_else(|| self.deposit(auditor))
            }
            choice @ 32..=40 => self.feed_step(auditor, choice - 32).unwrap_or_else(|| self.deposit(auditor)),
            41 => self.adjustment(auditor),
            42 => self.adjustment_decision(auditor),
            43 => self.settle_deposit(auditor),
            44 => self.approve_withdrawal(auditor),
            45 => self.kyc(auditor),
            46 => self.reality_check(auditor),
            _ => Step { label: "open_account", op: Op::Command(Command::OpenAccount { currency: self.currency() }) },
        }
    }

    // ---- picking ids -----------------------------------------------------------------------

    /// Usually `id`; one time in thirty an id that names nothing.
    fn spoil(&mut self, id: u64, existing: usize) -> u64 {
        if self.rng.chance(1, 30) {
            [0, existing as u64 + 1, existing as u64 + 7][self.rng.index(3)]
        } else {
            id
        }
    }

    fn any_account(&mut self, auditor: &Auditor) -> AccountId {
        let id = self.rng.between(1, auditor.players.len().max(1) as u64);
        AccountId(self.spoil(id, auditor.players.len()))
    }

    /// A player who may bet and has money, most of the time.
    fn bettor(&mut self, auditor: &Auditor) -> AccountId {
        let now = auditor.now;
        let able: Vec<u64> = auditor
            .players
            .iter()
            .filter(|player| {
                !player.frozen
                    && player.excluded_until <= now
                    && player.timed_out_until <= now
                    && player.available() > 100
            })
            .map(|player| player.id)
            .collect();
        if !able.is_empty() && self.rng.chance(9, 10) {
            let id = *self.rng.pick(&able).expect("not empty");
            return AccountId(self.spoil(id, auditor.players.len()));
        }
        self.any_account(auditor)
    }

    /// The player with the most money to stake who may bet now.
    fn richest(&mut self, auditor: &Auditor) -> AccountId {
        let now = auditor.now;
        auditor
            .players
            .iter()
            .filter(|player| {
                let unlimited =
                    player.limits[1..].iter().flatten().all(|limit| limit.current.is_none() && limit.pending.is_none());
                unlimited && !player.frozen && player.excluded_until <= now && player.timed_out_until <= now
            })
            .max_by_key(|player| player.available())
            .map_or_else(|| self.any_account(auditor), |player| AccountId(player.id))
    }

    fn currency(&mut self) -> Currency {
        let code =
            ["EUR", "EUR", "EUR", "EUR", "EUR", "EUR", "GBP", "GBP", "JPY", "KRW", "BHD", "JPY"][self.rng.index(12)];
        Currency::parse(code).expect("known currency")
    }

    /// An idempotency key for a third of the commands that take one (a few malformed).
    fn maybe_key(&mut self) -> Option<Idempotency> {
        if !self.rng.chance(3, 10) {
            return None;
        }
        self.keys_issued += 1;
        let key = match self.rng.below(100) {
            0 => String::new(),
            1 => "k".repeat(129),
            _ => format!("key-{}", self.keys_issued),
        };
        Some(Idempotency { key, body_hash: 0 })
    }

    /// Fills in the body hash of a keyed command and remembers it for retries.
    fn keyed(&mut self, label: &'static str, mut command: Command) -> Step {
        if let Some(key) = key_of(&command).cloned() {
            let hash = body_hash(&command);
            set_key(&mut command, Some(Idempotency { key: key.key, body_hash: hash }));
            if self.recent_keyed.len() == RECENT_KEYED_MAX {
                self.recent_keyed.pop_front();
            }
            self.recent_keyed.push_back(command.clone());
        }
        Step { label, op: Op::Command(command) }
    }

    fn stake(&mut self, auditor: &Auditor, per_line_max: i64) -> Money {
        let whale = auditor.config.max_stake.minor() >= 1_000_000_000;
        money(match self.rng.below(100) {
            0..=2 => self.rng.between(1, 9) as i64,
            3 => 0,
            4 => -100,
            5..=7 => self.rng.between(500_000, 3_000_000) as i64,
            8..=19 if whale => self.rng.between(1_000_000, auditor.config.max_stake.minor() as u64) as i64,
            _ => self.rng.between(10, per_line_max as u64) as i64,
        })
    }

    /// A stake per line whose payout, with every leg winning at today's prices, comes just under
    /// the money maximum: where sums saturate, and where a small price rise crosses it.
    fn stake_at_the_cap(&mut self, auditor: &Auditor, legs: &[LegRequest]) -> Option<Money> {
        let mut stake = u128::from(domain::MONEY_MINOR_MAX as u64) * u128::from(self.rng.between(950, 999)) / 1_000;
        for leg in legs {
            let price = auditor.selection(leg.selection.0)?.price;
            stake = stake * 10_000 / u128::from(price);
        }
        let stake = stake.min(auditor.config.max_stake.minor() as u128) as i64;
        (stake > 0).then(|| money(stake))
    }

    /// The price a bettor asks for, given the price on offer.
    fn requested(&mut self, current: u32) -> Odds {
        match self.rng.below(100) {
            0..=69 => odds(current),
            70..=81 => odds(current - (current - 10_000) / self.rng.between(3, 10) as u32),
            82..=93 => odds(current + current / self.rng.between(5, 20) as u32),
            _ => odds(*self.rng.pick(&PRICES).expect("prices")),
        }
    }

    fn policy(&mut self) -> PricePolicy {
        [PricePolicy::None, PricePolicy::Better, PricePolicy::Any][self.rng.index(3)]
    }

    // ---- bets --------------------------------------------------------------------------------

    /// Legs on `count` distinct events, from markets open for betting (and with each-way terms
    /// when asked); now and then one from anywhere, or two on the same event.
    fn legs(&mut self, auditor: &Auditor, count: usize, each_way: bool) -> Vec<LegRequest> {
        // Only fixtures not yet ended have markets open for betting.
        let mut candidates: Vec<u64> = live_events(auditor)
            .into_iter()
            .flat_map(|event| auditor.events[event as usize - 1].markets.iter().copied())
            .filter(|&market| {
                auditor.market_open(market).is_ok()
                    && (!each_way || auditor.markets[market as usize - 1].each_way.is_some())
            })
            .collect();
        if count == 1 && self.rng.chance(1, 3) {
            // Singles on the feed's markets, often: their settlements, cancellations and
            // rollbacks have bets to move.
            let feed: Vec<u64> = candidates
                .iter()
                .copied()
                .filter(|&market| {
                    auditor.events[auditor.markets[market as usize - 1].event as usize - 1].feed.is_some()
                })
                .collect();
            if !feed.is_empty() {
                candidates = feed;
            }
        }
        let mut legs = Vec::new();
        let mut events = Vec::new();
        while legs.len() < count && !candidates.is_empty() {
            let market = candidates.swap_remove(self.rng.index(candidates.len()));
            let found = &auditor.markets[market as usize - 1];
            if events.contains(&found.event) && !self.rng.chance(1, 20) {
                continue;
            }
            events.push(found.event);
            let selection = *self.rng.pick(&found.selections).expect("markets have selections");
            let current = auditor.selections[selection as usize - 1].price;
            legs.push(LegRequest { selection: SelectionId(selection), price: self.requested(current) });
        }
        if self.rng.chance(1, 25) && !auditor.selections.is_empty() {
            // A leg on any selection at all: closed, suspended, settled or unknown.
            let selection = self.rng.between(1, auditor.selections.len() as u64);
            let selection = self.spoil(selection, auditor.selections.len());
            let price = auditor.selection(selection).map_or(20_000, |found| found.price);
            let leg = LegRequest { selection: SelectionId(selection), price: odds(price) };
            if legs.is_empty() {
                legs.push(leg);
            } else {
                let at = self.rng.index(legs.len());
                legs[at] = leg;
            }
        }
        legs
    }

    fn bet(&mut self, auditor: &Auditor, shape: BetShape) -> Step {
        let at_the_cap = auditor.config.max_payout.minor() >= domain::MONEY_MINOR_MAX && self.rng.chance(1, 3);
        let account = if at_the_cap { self.richest(auditor) } else { self.bettor(auditor) };
        let (label, kind, legs, stake, each_way) = match shape {
            BetShape::Single => {
                ("bet.single", BetKind::Single, self.legs(auditor, 1, false), self.stake(auditor, 5_000), false)
            }
            BetShape::Multiple => {
                let count = if self.rng.chance(1, 10) { self.rng.between(6, 9) } else { self.rng.between(2, 5) };
                let legs = self.legs(auditor, count as usize, false);
                ("bet.multiple", BetKind::Multiple, legs, self.stake(auditor, 2_000), false)
            }
            BetShape::System => {
                let system = SystemKind::ALL[self.rng.weighted(&[6, 6, 5, 5, 3, 2, 1, 1])];
                let count = system_selections(system);
                // A system bet of the wrong size now and then.
                let count = if self.rng.chance(1, 20) { count - 1 } else { count };
                let legs = self.legs(auditor, count, false);
                ("bet.system", BetKind::System(system), legs, self.stake(auditor, 200), false)
            }
            BetShape::EachWay => {
                let (kind, count) = match self.rng.below(4) {
                    0 | 1 => (BetKind::Single, 1),
                    2 => (BetKind::Multiple, 2),
                    _ => (BetKind::System(SystemKind::Trixie), 3),
                };
                let spoilt = self.rng.chance(1, 15);
                let legs = self.legs(auditor, count, !spoilt);
                ("bet.each_way", kind, legs, self.stake(auditor, 1_000), true)
            }
        };
        let (legs, stake) = if at_the_cap {
            // At the price on offer: the point is the payout, not the price policy.
            let legs: Vec<LegRequest> = legs
                .into_iter()
                .map(|leg| match auditor.selection(leg.selection.0) {
                    Some(found) => LegRequest { selection: leg.selection, price: odds(found.price) },
                    None => leg,
                })
                .collect();
            let stake = self.stake_at_the_cap(auditor, &legs).unwrap_or(stake);
            (legs, stake)
        } else {
            (legs, stake)
        };
        let place =
            PlaceBet { account, kind, legs, stake, each_way, policy: self.policy(), idempotency: self.maybe_key() };
        self.keyed(label, Command::PlaceBet(place))
    }

    /// The same key again: with the same body (the first answer must come back) or another
    /// (refused as a reused key, unless the key has expired).
    fn retry(&mut self, auditor: &Auditor) -> Step {
        let Some(original) = self.rng.pick(self.recent_keyed.make_contiguous()).cloned() else {
            return self.deposit(auditor);
        };
        if self.rng.chance(6, 10) {
            return Step { label: "retry.same", op: Op::Command(original) };
        }
        let mut changed = original.clone();
        match &mut changed {
            Command::Deposit { amount, .. }
            | Command::BeginDeposit { amount, .. }
            | Command::Withdraw { amount, .. } => *amount = money(amount.minor() + 1),
            Command::PlaceBet(place) => place.stake = money(place.stake.minor() + 1),
            Command::AcceptCashout { quote, .. } => *quote = QuoteId(quote.0 + 1),
            _ => {}
        }
        let key = key_of(&original).cloned().map(|key| Idempotency { key: key.key, body_hash: body_hash(&changed) });
        set_key(&mut changed, key);
        Step { label: "retry.different", op: Op::Command(changed) }
    }

    // ---- money -------------------------------------------------------------------------------

    fn deposit(&mut self, auditor: &Auditor) -> Step {
        let account = self.any_account(auditor);
        let deposit_max = auditor.config.deposit_max.minor();
        // The cap is in the base currency: in the player's currency at the rate now, rounded
        // down (worked out here on its own terms; the auditor's model decides).
        let currency = auditor.players.get((account.0 as usize).wrapping_sub(1)).map(|player| player.currency);
        let rate = currency.and_then(|currency| {
            if currency == auditor.fx.base {
                return Some((1u128, 1u128));
            }
            let rate = auditor.fx.rates.get(&currency)?;
            let ten = |exponent: u8| 10u128.pow(u32::from(exponent));
            Some((
                u128::from(rate.mantissa()) * ten(currency.exponent()),
                ten(rate.scale()) * ten(auditor.fx.base.exponent()),
            ))
        });
        let cap = rate.map_or(deposit_max, |(num, den)| {
            (deposit_max as u128 * num / den).min(domain::MONEY_MINOR_MAX as u128) as i64
        });
        let amount = match self.rng.below(100) {
            0..=2 => 0,
            3 => -500,
            // At the converted cap and just past it.
            4..=5 => cap + self.rng.between(0, 2) as i64,
            6 => deposit_max + self.rng.between(1, 1_000) as i64,
            7..=16 => self.rng.between(1_000, deposit_max as u64) as i64,
            _ => self.rng.between(1_000, 200_000) as i64,
        };
        self.names_issued += 1;
        // Now and then the same payment again (under another key or none): refused, unless
        // for another account; and a reference empty or too long.
        let (account, payment_ref) = match self.rng.below(50) {
            0 => (account, "x".repeat(201)),
            1 => (account, String::new()),
            2..=5 if !self.recent_refs.is_empty() => {
                self.rng.pick(self.recent_refs.make_contiguous()).cloned().expect("not empty")
            }
            _ => (account, format!("psp-{}", self.names_issued)),
        };
        if self.recent_refs.len() == RECENT_REFS_MAX {
            self.recent_refs.pop_front();
        }
        self.recent_refs.push_back((account, payment_ref.clone()));
        // One in four waits for the provider's callback (`serve --payments callbacks`).
        if self.rng.chance(1, 4) {
            let command =
                Command::BeginDeposit { account, amount: money(amount), payment_ref, idempotency: self.maybe_key() };
            return self.keyed("deposit.pending", command);
        }
        let command = Command::Deposit { account, amount: money(amount), payment_ref, idempotency: self.maybe_key() };
        self.keyed("deposit", command)
    }

    /// The provider's word on a deposit: mostly completing or failing a pending one, charging
    /// back a completed one, delivered again, contradicting, or about a deposit that is not.
    fn settle_deposit(&mut self, auditor: &Auditor) -> Step {
        let pending: Vec<(u64, u64)> = auditor
            .deposits
            .iter()
            .filter(|(_, found)| found.state == book::DepositState::Pending)
            .map(|(id, found)| (*id, found.account))
            .collect();
        let settled: Vec<(u64, u64)> = auditor
            .deposits
            .iter()
            .filter(|(_, found)| found.state != book::DepositState::Pending)
            .map(|(id, found)| (*id, found.account))
            .collect();
        let choice = self.rng.below(20);
        let from_pending = choice < 14 || settled.is_empty();
        let picked = if from_pending { self.rng.pick(&pending).copied() } else { self.rng.pick(&settled).copied() };
        let (deposit, account) = match (picked, self.rng.below(20)) {
            (Some((id, account)), 0..=17) => (id, AccountId(account)),
            (Some((id, _)), 18) => (id, self.any_account(auditor)),
            _ => (self.rng.between(0, auditor.transfers + 2), self.any_account(auditor)),
        };
        let outcome = match (from_pending, self.rng.below(10)) {
            (true, 0..=5) => book::DepositOutcome::Completed,
            (true, 6..=8) => book::DepositOutcome::Failed,
            (false, 0..=4) => book::DepositOutcome::ChargedBack,
            (false, 5..=7) => book::DepositOutcome::Completed,
            (_, _) => [book::DepositOutcome::ChargedBack, book::DepositOutcome::Failed][self.rng.index(2)],
        };
        let command = Command::SettleDeposit { account, deposit: TransferId(deposit), outcome };
        Step { label: "payments.callback", op: Op::Command(command) }
    }

    /// A withdrawal approved for payout (by the payments step or a staff member), sometimes
    /// twice, sometimes one that is not open or not the account's.
    fn approve_withdrawal(&mut self, auditor: &Auditor) -> Step {
        let open: Vec<(u64, u64)> = auditor
            .withdrawals
            .iter()
            .filter(|(_, found)| found.open)
            .map(|(id, found)| (*id, found.account))
            .collect();
        let (withdrawal, account) = match (self.rng.pick(&open).copied(), self.rng.below(10)) {
            (Some((id, account)), 0..=7) => (id, AccountId(account)),
            (Some((id, _)), 8) => (id, self.any_account(auditor)),
            _ => (self.rng.between(0, auditor.transfers + 2), self.any_account(auditor)),
        };
        if self.rng.chance(1, 3) {
            let command = Command::RefuseWithdrawal { account, withdrawal: TransferId(withdrawal) };
            return Step { label: "refuse_withdrawal", op: Op::Command(command) };
        }
        let command = Command::ApproveWithdrawal { account, withdrawal: TransferId(withdrawal) };
        Step { label: "approve_withdrawal", op: Op::Command(command) }
    }

    /// Identity verification: a player tracked under a jurisdiction's rules (a deposit cap
    /// until verified, re-verification above lifetime deposits, an expiry, sometimes out of
    /// range), or a state set by the provider or staff: mostly a verification, sometimes a
    /// move the state machine refuses, a delivery again, a reference too long.
    /// A reality check interval (sometimes out of range, sometimes stopped), a login's new
    /// session, an acknowledgement (due or not), or personal details (sometimes too long, or
    /// of an account without a profile).
    fn reality_check(&mut self, auditor: &Auditor) -> Step {
        let account = self.any_account(auditor);
        let (label, command) = match self.rng.below(10) {
            0..=2 => {
                let interval_minutes = match self.rng.below(10) {
                    0 => None,
                    1 => Some([0, 9, 241][self.rng.index(3)]),
                    _ => Some(self.rng.between(10, 60) as u32),
                };
                ("reality.interval", Command::SetRealityCheck { account, interval_minutes })
            }
            3..=4 => ("reality.session", Command::StartSession { account }),
            5..=8 => ("reality.acknowledge", Command::AcknowledgeRealityCheck { account }),
            _ => {
                let name = if self.rng.chance(1, 10) { "n".repeat(201) } else { format!("Name{}", self.rng.below(9)) };
                let details = book::PersonalDetails {
                    first_name: Some(name),
                    last_name: self.rng.chance(1, 2).then(|| "Lovelace".to_string()),
                    email: None,
                    postcode: self.rng.chance(1, 20).then(String::new),
                    address: Some(format!("{} Example Street", self.rng.below(50))),
                };
                ("reality.details", Command::SetPersonalDetails { account, details })
            }
        };
        Step { label, op: Op::Command(command) }
    }

    fn kyc(&mut self, auditor: &Auditor) -> Step {
        let account = self.any_account(auditor);
        if self.rng.chance(1, 3) {
            let amount =
                |rng: &mut Rng, low: u64, high: u64| rng.chance(2, 3).then(|| money(rng.between(low, high) as i64));
            let rules = KycRules {
                deposit_cap: if self.rng.chance(1, 20) { Some(money(-1)) } else { amount(&mut self.rng, 0, 300_000) },
                reverify_above: amount(&mut self.rng, 1_000, 1_000_000),
                expiry_ms: match self.rng.below(10) {
                    0 => Some(0),
                    1..=4 => Some(self.rng.between(60_000, 30 * 86_400_000)),
                    _ => None,
                },
            };
            let command = Command::SetKycRules { account, rules };
            return Step { label: "kyc.rules", op: Op::Command(command) };
        }
        let state = match self.rng.below(20) {
            0..=9 => KycState::Verified,
            10..=12 => KycState::Pending,
            13..=14 => KycState::Rejected,
            15..=17 => KycState::Expired,
            _ => KycState::Unverified,
        };
        let reference = match self.rng.below(10) {
            0..=3 => None,
            4 => Some("k".repeat(129)),
            5 => Some(String::new()),
            _ => Some(format!("kyc-{}", self.rng.below(8))),
        };
        let command = Command::SetKycState { account, state, reference };
        Step { label: "kyc.state", op: Op::Command(command) }
    }

    fn withdraw(&mut self, auditor: &Auditor) -> Step {
        let account = self.any_account(auditor);
        let available =
            auditor.players.get((account.0 as usize).wrapping_sub(1)).map_or(0, |player| player.available());
        let amount = match self.rng.below(100) {
            0..=59 if available > 0 => self.rng.between(1, available as u64) as i64,
            60..=84 => self.rng.between(1, 100_000) as i64,
            85..=94 => available + self.rng.between(1, 1_000) as i64,
            95..=97 => 0,
            _ => -100,
        };
        let command = Command::Withdraw { account, amount: money(amount), idempotency: self.maybe_key() };
        self.keyed("withdraw", command)
    }

    fn complete_withdrawal(&mut self, auditor: &Auditor) -> Step {
        let open: Vec<(u64, u64)> = auditor
            .withdrawals
            .iter()
            .filter(|(_, found)| found.open)
            .map(|(id, found)| (*id, found.account))
            .collect();
        let (withdrawal, account) = match (self.rng.pick(&open).copied(), self.rng.below(10)) {
            (Some((id, account)), 0..=7) => (id, AccountId(account)),
            (Some((id, _)), 8) => (id, self.any_account(auditor)),
            _ => (self.rng.between(0, auditor.transfers + 2), self.any_account(auditor)),
        };
        let paid = self.rng.chance(7, 10);
        let command = Command::CompleteWithdrawal { account, withdrawal: TransferId(withdrawal), paid };
        Step { label: "complete_withdrawal", op: Op::Command(command) }
    }

    // ---- accounts ----------------------------------------------------------------------------

    fn register(&mut self, auditor: &Auditor) -> Step {
        if auditor.players.len() >= PLAYERS_MAX && !self.rng.chance(1, 10) {
            return self.deposit(auditor);
        }
        self.names_issued += 1;
        let username = match self.rng.below(100) {
            0..=7 if !auditor.usernames.is_empty() => {
                let taken: Vec<&String> = auditor.usernames.iter().collect();
                taken[self.rng.index(taken.len())].to_ascii_uppercase()
            }
            8..=10 => ["ab", "bad name", &"x".repeat(33)][self.rng.index(3)].to_string(),
            11..=30 => format!("Punter.{}", self.names_issued),
            _ => format!("punter_{}", self.names_issued),
        };
        let today = Date::from_unix_millis(auditor.now);
        let date_of_birth = if self.rng.chance(1, 20) {
            Date::new(today.year() - 17, today.month(), today.day().min(28)).expect("a valid date")
        } else if self.rng.chance(1, 20) {
            // Eighteen today or tomorrow: the boundary of the age check.
            let day = (today.day() + self.rng.below(2) as u8).min(28);
            Date::new(today.year() - 18, today.month(), day).expect("a valid date")
        } else {
            Date::new(1950 + self.rng.below(55) as u16, 1 + self.rng.below(12) as u8, 1 + self.rng.below(28) as u8)
                .expect("a valid date")
        };
        let country =
            ["GB", "DE", "SE", "IE", "MT", "GB", "gb", "GBR"][self.rng.weighted(&[30, 20, 15, 15, 15, 1, 2, 2])];
        let password_hash =
            if self.rng.chance(1, 50) { String::new() } else { "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into() };
        let command = Command::RegisterPlayer {
            username,
            password_hash,
            date_of_birth,
            country: country.to_string(),
            currency: self.currency(),
        };
        Step { label: "register", op: Op::Command(command) }
    }

    fn limits(&mut self, auditor: &Auditor) -> Step {
        let account = self.any_account(auditor);
        let count = if self.rng.chance(1, 50) { 10 } else { self.rng.between(1, 3) };
        let changes = (0..count)
            .map(|_| LimitChange {
                kind: LimitKind::ALL[self.rng.index(3)],
                period: Period::ALL[self.rng.index(3)],
                value: match self.rng.below(100) {
                    0..=19 => None,
                    20..=21 => Some(money(-1)),
                    _ => Some(money(self.rng.between(1_000, 500_000) as i64)),
                },
            })
            .collect();
        Step { label: "set_limits", op: Op::Command(Command::SetLimits { account, changes }) }
    }

    fn time_out(&mut self, auditor: &Auditor) -> Step {
        let account = self.any_account(auditor);
        let hours =
            if self.rng.chance(9, 10) { self.rng.between(1, 3) as u32 } else { [0, 24 * 42 + 1][self.rng.index(2)] };
        Step { label: "time_out", op: Op::Command(Command::TimeOut { account, hours }) }
    }

    fn self_exclude(&mut self, auditor: &Auditor) -> Step {
        let account = self.any_account(auditor);
        let days = match self.rng.below(100) {
            0..=4 => self.rng.between(182, 400) as u32,
            5..=9 => 5 * 365 + 2,
            _ => self.rng.between(0, 181) as u32,
        };
        Step { label: "self_exclude", op: Op::Command(Command::SelfExclude { account, days }) }
    }

    fn account_risk(&mut self, auditor: &Auditor) -> Step {
        let account = self.any_account(auditor);
        let stake_factor = match self.rng.below(100) {
            0..=39 => None,
            40..=42 => Some(ratio(101, 1)),
            _ => Some([ratio(1, 10), ratio(1, 2), Ratio::ONE, Ratio::ONE, ratio(3, 2), ratio(2, 1)][self.rng.index(6)]),
        };
        let frozen = match self.rng.below(100) {
            0..=59 => None,
            60..=69 => Some(true),
            _ => Some(false),
        };
        Step { label: "account_risk", op: Op::Command(Command::SetAccountRisk { account, stake_factor, frozen }) }
    }

    // ---- staff and manual adjustments -------------------------------------------------------

    fn create_staff(&mut self, auditor: &Auditor) -> Step {
        let roles = STAFF_DESK[auditor.staff.len() % STAFF_DESK.len()];
        self.names_issued += 1;
        let command = Command::CreateStaff {
            username: format!("staff.{}", self.names_issued),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$simulated".to_string(),
            totp_secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".to_string(),
            roles,
        };
        Step { label: "create_staff", op: Op::Command(command) }
    }

    /// A staff member (a few ids that name nobody).
    fn any_staff(&mut self, auditor: &Auditor) -> book::StaffId {
        let id = self.rng.between(1, auditor.staff.len().max(1) as u64);
        book::StaffId(self.spoil(id, auditor.staff.len()))
    }

    /// A manual credit or debit by a random member of the desk: amounts within support's limit,
    /// above compliance's, beyond the player's cash; now and then a role change, new limits,
    /// or a reason missing or too long.
    fn adjustment(&mut self, auditor: &Auditor) -> Step {
        match self.rng.below(40) {
            0 => {
                let staff = self.any_staff(auditor);
                let roles = STAFF_DESK[self.rng.index(STAFF_DESK.len())];
                return Step { label: "set_staff_roles", op: Op::Command(Command::SetStaffRoles { staff, roles }) };
            }
            1 => {
                let pick = |rng: &mut crate::rng::Rng| match rng.below(4) {
                    0 => book::AdjustmentLimit::Forbidden,
                    1 => book::AdjustmentLimit::Unlimited,
                    _ => book::AdjustmentLimit::UpTo(money(rng.between(0, 200_000) as i64)),
                };
                let limits = book::AdjustmentLimits([
                    pick(&mut self.rng),
                    pick(&mut self.rng),
                    pick(&mut self.rng),
                    pick(&mut self.rng),
                    pick(&mut self.rng),
                ]);
                return Step {
                    label: "set_adjustment_limits",
                    op: Op::Command(Command::SetAdjustmentLimits { limits }),
                };
            }
            _ => {}
        }
        let account = self.any_account(auditor);
        let cash = auditor.players.get((account.0 as usize).wrapping_sub(1)).map_or(0, |player| player.available());
        let amount = match self.rng.below(100) {
            0..=39 => self.rng.between(1, 5_000) as i64,
            40..=59 => self.rng.between(5_001, 100_000) as i64,
            60..=74 => self.rng.between(100_001, 1_000_000) as i64,
            75..=89 if cash > 0 => cash + self.rng.between(0, 2) as i64 - 1,
            90..=93 => 0,
            _ => self.rng.between(1, 20_000) as i64,
        };
        let direction =
            if self.rng.chance(1, 2) { book::AdjustmentDirection::Credit } else { book::AdjustmentDirection::Debit };
        let reason = match self.rng.below(40) {
            0 => String::new(),
            1 => "r".repeat(501),
            _ => "goodwill".to_string(),
        };
        let staff = self.any_staff(auditor);
        let command = Command::RequestAdjustment {
            account,
            amount: money(amount),
            direction,
            reason,
            staff,
            idempotency: self.maybe_key(),
        };
        self.keyed("request_adjustment", command)
    }

    /// Another (or the same) staff member approves or rejects a pending adjustment; now and
    /// then one that is no longer pending, another account's, or none at all.
    fn adjustment_decision(&mut self, auditor: &Auditor) -> Step {
        let pending: Vec<(u64, u64)> =
            auditor.pending_adjustments.iter().map(|(id, found)| (*id, found.account)).collect();
        let (adjustment, account) = match (self.rng.pick(&pending).copied(), self.rng.below(10)) {
            (Some((id, account)), 0..=7) => (id, AccountId(account)),
            (Some((id, _)), 8) => (id, self.any_account(auditor)),
            _ => (self.rng.between(0, auditor.adjustments_issued + 2), self.any_account(auditor)),
        };
        let adjustment = book::AdjustmentId(adjustment);
        let staff = self.any_staff(auditor);
        let command = if self.rng.chance(3, 4) {
            Command::ApproveAdjustment { adjustment, account, staff }
        } else {
            let reason = if self.rng.chance(1, 20) { String::new() } else { "not justified".to_string() };
            Command::RejectAdjustment { adjustment, account, staff, reason }
        };
        Step { label: "adjustment_decision", op: Op::Command(command) }
    }

    fn api_key(&mut self, auditor: &Auditor) -> Step {
        if !auditor.api_keys.is_empty() && self.rng.chance(3, 10) {
            let key = self.rng.between(0, auditor.api_keys.len() as u64 + 1);
            return Step { label: "revoke_api_key", op: Op::Command(Command::RevokeApiKey { key: ApiKeyId(key) }) };
        }
        let key_hash = if !auditor.api_keys.is_empty() && self.rng.chance(1, 10) {
            let stored = auditor.api_keys[self.rng.index(auditor.api_keys.len())].0.clone();
            // A duplicate in upper case is the same key.
            if self.rng.chance(1, 2) {
                stored.to_ascii_uppercase()
            } else {
                stored
            }
        } else if self.rng.chance(1, 20) {
            "not a hash".to_string()
        } else {
            (0..4).map(|_| format!("{:016x}", self.rng.next_u64())).collect()
        };
        let scopes = if self.rng.chance(1, 20) { 0 } else { 1 + self.rng.below(31) as u8 };
        self.names_issued += 1;
        let command = Command::CreateApiKey { name: format!("key {}", self.names_issued), key_hash, scopes };
        Step { label: "create_api_key", op: Op::Command(command) }
    }

    // ---- catalog -----------------------------------------------------------------------------

    fn create_event(&mut self, auditor: &Auditor) -> Step {
        let id = auditor.events.len() as u64 + 1;
        let now = auditor.now;
        let starts_at = match self.rng.below(100) {
            0..=9 => now - self.rng.between(60_000, 3_600_000),
            10..=14 => now + self.rng.between(86_400_000, 3 * 86_400_000),
            _ => now + self.rng.between(600_000, 4 * 3_600_000),
        };
        let name = if self.rng.chance(1, 50) { String::new() } else { format!("Fixture {id}") };
        let command = Command::CreateEvent {
            name,
            sport: SPORTS[sport_of(id)].to_string(),
            competition: "Simulated League".to_string(),
            starts_at,
        };
        Step { label: "create_event", op: Op::Command(command) }
    }

    fn create_market(&mut self, auditor: &Auditor, event: u64) -> Step {
        let price = |rng: &mut Rng, low: usize, high: usize| odds(PRICES[low + rng.index(high - low)]);
        let (name, count, each_way) = match sport_of(event) {
            0 => match self.rng.below(3) {
                0 => ("Match result", 3, None),
                1 => ("Asian handicap", 2, None),
                _ => ("Correct score", 6, None),
            },
            1 => {
                let terms = EachWayTerms {
                    places: self.rng.between(2, 4) as u32,
                    fraction: [ratio(1, 4), ratio(1, 5)][self.rng.index(2)],
                };
                ("Win", self.rng.between(5, 8) as usize, if self.rng.chance(9, 10) { Some(terms) } else { None })
            }
            _ => ("Match winner", 2, None),
        };
        let mut selections: Vec<NewSelection> = (0..count)
            .map(|index| NewSelection {
                name: format!("Runner {}", index + 1),
                price: if count <= 3 { price(&mut self.rng, 3, 13) } else { price(&mut self.rng, 7, 21) },
            })
            .collect();
        let mut each_way = each_way;
        match self.rng.below(100) {
            0 => selections.clear(),
            1 => selections[0].name.clear(),
            2 => each_way = Some(EachWayTerms { places: 0, fraction: ratio(1, 4) }),
            3 => each_way = Some(EachWayTerms { places: 3, fraction: ratio(3, 2) }),
            _ => {}
        }
        let event = if self.rng.chance(1, 40) { self.rng.between(0, auditor.events.len() as u64 + 2) } else { event };
        let command = Command::CreateMarket {
            event: EventId(event),
            name: name.into(),
            kind: name.to_lowercase(),
            selections,
            each_way,
        };
        Step { label: "create_market", op: Op::Command(command) }
    }

    fn any_market(&mut self, auditor: &Auditor, live: &[u64]) -> u64 {
        let live_markets: Vec<u64> =
            live.iter().flat_map(|event| auditor.events[*event as usize - 1].markets.iter().copied()).collect();
        let market = match self.rng.pick(&live_markets) {
            Some(market) if self.rng.chance(9, 10) => *market,
            _ => self.rng.between(1, auditor.markets.len().max(1) as u64),
        };
        self.spoil(market, auditor.markets.len())
    }

    fn set_prices(&mut self, auditor: &Auditor, live: &[u64]) -> Step {
        // In play, prices move while bets wait out their delay: a third of the moves are there.
        let waiting: Vec<u64> = auditor
            .bets
            .iter()
            .rev()
            .take(200)
            .filter(|bet| bet.status == BetStatus::Pending)
            .flat_map(|bet| bet.legs.iter().map(|leg| leg.market))
            .collect();
        let market = match self.rng.pick(&waiting) {
            Some(&market) if self.rng.chance(1, 3) => market,
            _ => self.any_market(auditor, live),
        };
        let mut prices = Vec::new();
        if let Some(found) = auditor.market(market) {
            for &selection in &found.selections {
                if self.rng.chance(1, 2) {
                    continue;
                }
                let current = auditor.selections[selection as usize - 1].price;
                let price = match self.rng.below(10) {
                    0 => current,
                    1 => *self.rng.pick(&PRICES).expect("prices"),
                    _ => {
                        let step = (current / 20).max(1);
                        if self.rng.chance(1, 2) {
                            current + step
                        } else {
                            current.saturating_sub(step)
                        }
                    }
                };
                prices.push((SelectionId(selection), odds(price)));
            }
        }
        if self.rng.chance(1, 30) {
            let stray = self.rng.between(1, auditor.selections.len().max(1) as u64);
            prices.push((SelectionId(stray), odds(20_000)));
        }
        Step { label: "set_prices", op: Op::Command(Command::SetPrices { market: MarketId(market), prices }) }
    }

    fn market_status(&mut self, auditor: &Auditor, live: &[u64]) -> Step {
        let market = self.any_market(auditor, live);
        let action =
            [MarketAction::Suspend, MarketAction::Resume, MarketAction::Close][self.rng.weighted(&[35, 50, 15])];
        Step { label: "market_status", op: Op::Command(Command::SetMarketStatus { market: MarketId(market), action }) }
    }

    fn in_play(&mut self, auditor: &Auditor, live: &[u64]) -> Step {
        let mut scheduled: Vec<&u64> =
            live.iter().filter(|event| auditor.events[**event as usize - 1].state == EventState::Scheduled).collect();
        scheduled.sort_by_key(|event| auditor.events[**event as usize - 1].starts_at);
        let event = match scheduled.first() {
            Some(first) if self.rng.chance(7, 10) => **first,
            _ => *self.rng.pick(live).expect("live events exist"),
        };
        let event = self.spoil(event, auditor.events.len());
        let bet_delay_seconds = match self.rng.below(100) {
            0..=39 => 0,
            40..=95 => self.rng.between(1, 8) as u32,
            _ => 61,
        };
        Step { label: "in_play", op: Op::Command(Command::SetInPlay { event: EventId(event), bet_delay_seconds }) }
    }

    fn end_event(&mut self, auditor: &Auditor, live: &[u64]) -> Step {
        let playing: Vec<u64> = live
            .iter()
            .copied()
            .filter(|event| auditor.events[*event as usize - 1].state == EventState::InPlay)
            .collect();
        let event = match self.rng.pick(&playing) {
            Some(event) if self.rng.chance(8, 10) => *event,
            _ => *self.rng.pick(live).expect("live events exist"),
        };
        let event = self.spoil(event, auditor.events.len());
        Step { label: "end_event", op: Op::Command(Command::EndEvent { event: EventId(event) }) }
    }

    fn market_risk(&mut self, auditor: &Auditor, live: &[u64]) -> Step {
        let market = self.any_market(auditor, live);
        let mut change = MarketRiskChange::default();
        let amount = |rng: &mut Rng, low: u64, high: u64| -> Option<Option<Money>> {
            match rng.below(10) {
                0..=5 => None,
                6 => Some(None),
                _ => Some(Some(money(rng.between(low, high) as i64))),
            }
        };
        change.max_stake = amount(&mut self.rng, 100, 50_000);
        change.liability_cap = amount(&mut self.rng, 20_000, 2_000_000);
        change.selection_liability_cap = amount(&mut self.rng, 10_000, 1_000_000);
        change.suspend_at_liability = amount(&mut self.rng, 50_000, 1_000_000);
        change.max_payout = amount(&mut self.rng, 20_000, 5_000_000);
        change.in_play_delay_seconds = match self.rng.below(10) {
            0..=6 => None,
            7 => Some(None),
            _ => Some(Some(if self.rng.chance(1, 10) { 61 } else { self.rng.between(0, 8) as u32 })),
        };
        if self.rng.chance(1, 40) {
            change.max_stake = Some(Some(money(-1)));
        }
        Step { label: "market_risk", op: Op::Command(Command::SetMarketRisk { market: MarketId(market), change }) }
    }

    /// A new exchange-rate table against EUR: rates near the market for GBP, JPY, KRW and
    /// BHD, each now and then left out (its players cannot bet until the next table), and a few
    /// tables the book refuses (a rate for the base, another base once markets exist).
    fn fx_rates(&mut self, auditor: &Auditor) -> Step {
        let currency = |code: &str| Currency::parse(code).expect("known currency");
        let candidates: [(&str, &[&str]); 4] = [
            ("GBP", &["0.85", "0.8612", "0.79", "1.1"]),
            ("JPY", &["160.00", "158.4", "171.25", "0.5"]),
            ("KRW", &["1540.5", "1450", "1612.37"]),
            ("BHD", &["0.41", "0.376", "0.4099"]),
        ];
        let mut rates = Vec::new();
        for (code, choices) in candidates {
            if self.rng.chance(9, 10) {
                let text = choices[self.rng.index(choices.len())];
                rates.push((currency(code), domain::ExchangeRate::parse(text).expect("a valid rate")));
            }
        }
        let mut base = auditor.fx.base;
        match self.rng.below(40) {
            0 => rates.push((base, domain::ExchangeRate::ONE)),
            1 => base = currency("GBP"),
            2 if !rates.is_empty() => rates.push(rates[0]),
            _ => {}
        }
        Step { label: "fx_rates", op: Op::Command(Command::SetFxRates { base, rates }) }
    }

    // ---- settlement --------------------------------------------------------------------------

    fn settle(&mut self, auditor: &Auditor) -> Step {
        // Markets of ended fixtures first, then anything not resulted, then resulted ones.
        let closed: Vec<u64> = auditor
            .markets
            .iter()
            .filter(|market| market.status == MarketStatus::Closed)
            .map(|market| market.id)
            .collect();
        let resulted: Vec<u64> =
            auditor.markets.iter().filter(|market| market.is_resulted()).map(|market| market.id).collect();
        let market = match self.rng.below(100) {
            0..=69 if !closed.is_empty() => *self.rng.pick(&closed).expect("not empty"),
            70..=79 if !resulted.is_empty() => *self.rng.pick(&resulted).expect("not empty"),
            _ => self.rng.between(1, auditor.markets.len().max(1) as u64),
        };
        let market = self.spoil(market, auditor.markets.len());
        let results = match auditor.market(market) {
            Some(found) if found.status == MarketStatus::Settled && self.rng.chance(1, 2) => found
                .results
                .iter()
                .map(|result| ResultRequest {
                    selection: SelectionId(result.selection),
                    outcome: result.outcome,
                    dead_heat: Some(result.dead_heat),
                    void_factor: Some(result.void_factor),
                })
                .collect(),
            Some(found) => self.results(&found.selections, found.each_way),
            None => Vec::new(),
        };
        Step { label: "settle", op: Op::Command(Command::SettleMarket { market: MarketId(market), results }) }
    }

    /// Results for a market: a winner and losers, dead heats, places, Asian quarter lines,
    /// non-runners, and now and then an invalid factor or a stray selection.
    fn results(&mut self, selections: &[u64], each_way: Option<EachWayTerms>) -> Vec<ResultRequest> {
        let mut order = selections.to_vec();
        for index in (1..order.len()).rev() {
            order.swap(index, self.rng.index(index + 1));
        }
        let result = |selection: u64, outcome: Outcome, dead_heat: Option<Ratio>, void_factor: Option<Ratio>| {
            ResultRequest { selection: SelectionId(selection), outcome, dead_heat, void_factor }
        };
        let mut results = vec![result(order[0], Outcome::Win, None, None)];
        match self.rng.below(100) {
            0..=29 => {}
            30..=39 => results.extend(order[1..].iter().map(|&selection| result(selection, Outcome::Lose, None, None))),
            40..=51 if order.len() >= 2 => {
                let ways = if order.len() >= 3 && self.rng.chance(1, 3) { 3 } else { 2 };
                results = order[..ways]
                    .iter()
                    .map(|&selection| result(selection, Outcome::Win, Some(ratio(1, ways as u32)), None))
                    .collect();
            }
            52..=69 if each_way.is_some() => {
                let places = each_way.map_or(1, |terms| terms.places as usize).min(order.len());
                for &selection in &order[1..places] {
                    results.push(result(selection, Outcome::Place, None, None));
                }
                if self.rng.chance(1, 3) && places < order.len() {
                    // A dead heat for the last place.
                    results.push(result(order[places], Outcome::Place, Some(ratio(1, 2)), None));
                    if let Some(last) = results.get_mut(places - 1).filter(|_| places >= 2) {
                        last.dead_heat = Some(ratio(1, 2));
                    }
                }
            }
            70..=79 if order.len() >= 2 => {
                let factor = if self.rng.chance(1, 5) { Ratio::ONE } else { ratio(1, 2) };
                results[0].void_factor = Some(factor);
                if self.rng.chance(1, 2) {
                    results.push(result(order[1], Outcome::Lose, None, Some(factor)));
                }
            }
            80..=86 if order.len() >= 2 => results.push(result(order[1], Outcome::Void, None, None)),
            87..=89 => results = order.iter().map(|&selection| result(selection, Outcome::Void, None, None)).collect(),
            90 => results[0].dead_heat = Some(Ratio::ZERO),
            91 => results[0].dead_heat = Some(ratio(3, 2)),
            92 => results[0].void_factor = Some(ratio(3, 2)),
            93 if each_way.is_none() && order.len() >= 2 => results.push(result(order[1], Outcome::Place, None, None)),
            94 => results.push(results[0].clone()),
            95 => results.push(result(order[0] + 1_000, Outcome::Lose, None, None)),
            _ => {}
        }
        results
    }

    fn unsettle(&mut self, auditor: &Auditor) -> Step {
        let resulted: Vec<u64> =
            auditor.markets.iter().filter(|market| market.is_resulted()).map(|market| market.id).collect();
        let market = match self.rng.pick(&resulted) {
            Some(market) if self.rng.chance(8, 10) => *market,
            _ => self.rng.between(1, auditor.markets.len().max(1) as u64),
        };
        let market = self.spoil(market, auditor.markets.len());
        Step { label: "unsettle", op: Op::Command(Command::UnsettleMarket { market: MarketId(market) }) }
    }

    fn void(&mut self, auditor: &Auditor) -> Step {
        let market = self.rng.between(1, auditor.markets.len().max(1) as u64);
        let market = self.spoil(market, auditor.markets.len());
        Step { label: "void", op: Op::Command(Command::VoidMarket { market: MarketId(market) }) }
    }

    // ---- cash-out ----------------------------------------------------------------------------

    fn quote(&mut self, auditor: &Auditor) -> Step {
        let open: Vec<(u64, u64)> = auditor
            .bets
            .iter()
            .rev()
            .take(500)
            .filter(|bet| bet.status == BetStatus::Accepted && !bet.each_way && !matches!(bet.kind, BetKind::System(_)))
            .map(|bet| (bet.id, bet.account))
            .collect();
        let (bet, account) = match self.rng.pick(&open) {
            Some(&(bet, account)) if self.rng.chance(9, 10) => (bet, AccountId(account)),
            _ => {
                let bet = self.rng.between(1, auditor.bets.len().max(1) as u64);
                (self.spoil(bet, auditor.bets.len()), self.any_account(auditor))
            }
        };
        Step { label: "quote_cashout", op: Op::Command(Command::QuoteCashout { account, bet: BetId(bet) }) }
    }

    fn accept(&mut self, auditor: &Auditor) -> Step {
        let quotes: Vec<(u64, u64)> = auditor.quotes.iter().map(|(id, quote)| (*id, quote.bet)).collect();
        let (quote, bet) = match self.rng.pick(&quotes) {
            Some(&(quote, bet)) if self.rng.chance(9, 10) => (quote, bet),
            _ => {
                (self.rng.between(0, auditor.quotes_issued + 1), self.rng.between(1, auditor.bets.len().max(1) as u64))
            }
        };
        let account = match auditor.bet(bet) {
            Some(found) if self.rng.chance(19, 20) => AccountId(found.account),
            _ => self.any_account(auditor),
        };
        let command =
            Command::AcceptCashout { account, bet: BetId(bet), quote: QuoteId(quote), idempotency: self.maybe_key() };
        self.keyed("accept_cashout", command)
    }

    // ---- time --------------------------------------------------------------------------------

    fn advance(&mut self) -> Step {
        let millis = match self.rng.below(100) {
            0..=69 => self.rng.between(100, 10_000),
            70..=89 => self.rng.between(10_000, 900_000),
            90..=97 => self.rng.between(900_000, 6 * 3_600_000),
            // Past the 24 hours an idempotency key is kept, into another day's limits.
            _ => self.rng.between(24 * 3_600_000, 26 * 3_600_000),
        };
        Step { label: "advance_time", op: Op::Advance(millis) }
    }
}

#[derive(Clone, Copy, Debug)]
enum BetShape {
    Single,
    Multiple,
    System,
    EachWay,
}

fn system_selections(kind: SystemKind) -> usize {
    match kind {
        SystemKind::Trixie | SystemKind::Patent => 3,
        SystemKind::Yankee | SystemKind::Lucky15 => 4,
        SystemKind::Canadian => 5,
        SystemKind::Heinz => 6,
        SystemKind::SuperHeinz => 7,
        SystemKind::Goliath => 8,
    }
}

/// Fixtures not yet ended.
fn live_events(auditor: &Auditor) -> Vec<u64> {
    auditor.events.iter().filter(|event| event.state != EventState::Ended).map(|event| event.id).collect()
}
