//! The auditor: an independent, deliberately simple model of the book's rules. Given the same
//! commands at the same times it predicts every reply (accepted or the rejection with its code
//! and details), every bet's status and payout, every player's money and every transfer, so the
//! simulator can compare the real engine against it after each step.
//!
//! It shares only vocabulary with the book (`Command`, `Reply`, ids, `Money`, `Odds`, `Ratio`)
//! and none of its decision code: payouts come from `exact`, lines of system bets are enumerated
//! here, money moves between plain integer buckets, and limits, liabilities, quotes and
//! idempotency keys live in plain vectors and maps.
//!
//! Modelled in full: accounts and registration, deposits, withdrawals and their completion,
//! responsible-gambling limits with cooling-off and calendar periods, time-outs, self-exclusion,
//! freezes and stake factors, the catalog (events, markets, prices and their versions, status,
//! in-play), bet placement with every check in the book's order (shape, market state, price
//! policy, stake and payout limits, limits, funds, per-selection and per-market liability caps,
//! suspension at a liability threshold), in-play delays ended by time, settlement with
//! dead heats, void factors and each-way place terms, resettlement with debt, voids, cash-out
//! quotes and their acceptance, and idempotency keys with their 24-hour retention; a Unified
//! Odds Feed provider's messages in the book's form (`feed`: the id mapping, duplicates, stale
//! odds, markets and outcomes as listed, settlements, cancellations with and without a time
//! window, rollbacks of both).
//!
//! Manual adjustments by staff: each role's limit in the base currency (the widest of a
//! member's roles), the amount converted at the rate now rounding up, at once within it, else
//! pending until another member whose limit covers it approves (never the requester), someone
//! rejects it, or 24 hours pass; debits never beyond the free cash less any debt.
//!
//! Currencies: the operator's exchange-rate table (one base currency, a rate per other
//! currency, versioned) and every conversion: stake and payout limits, all in the base
//! currency, are converted into the bettor's currency rounding down (the minimum stake rounding
//! up); a bet's liability is counted in its own currency and, converted with the rate in force
//! at placement (rounding up), in the base currency, where the caps apply; the deposit cap is in
//! the base currency too, converted at the rate now (rounding down; no rate: `fx_rate_missing`).
//! The conversions are
//! written here as exact fractions, not taken from `domain`.
//!
//! Reality checks: a player's interval (10 to 240 minutes), a check falling due an interval
//! after it was chosen, a session started or the last acknowledgement, bets refused while one
//! is due, an acknowledgement refused when none is; personal details kept for registered
//! players only. (The session's net position is shown, never decided by, so it is not modelled.)
//!
//! The order of checks is part of the rules here: when two things are wrong with a command the
//! book answers with the first, and so must the model.
//!
//! Where amounts reach the money maximum the model states the book's bounds too: placement and
//! the end of a delay refuse a potential payout at it, a `stake_too_high` offers the largest
//! stake that fits (searched here by halving), and deposits, settlements, unsettlements and
//! cash-outs that would take a balance, a debt or a liability past it are refused whole
//! (`amount_too_large`). A player in debt repays it from every credit and released hold and
//! withdraws nothing while owing. The simulator adds the invariants no model is needed for: money
//! conserved in the book's ledger, no negative balance, a bet settled at most once between
//! reversals, exposure equal to the open liabilities, and the book's own `check_invariants`.

use std::collections::{BTreeMap, BTreeSet};

use book::{
    AccountId, Ack, ApiKeyId, BetId, BetKind, BetStatus, Command, Config, EachWayTerms, EventId, EventState,
    LegRequest, LimitChange, LimitKind, MarketAction, MarketId, MarketRisk, MarketRiskChange, MarketStatus,
    NewSelection, Outcome, Period, PlaceBet, PricePolicy, QuoteId, Rejection, Reply, ResultRequest, SelectionId,
    SystemKind, TransferCode, TransferId,
};
use book::{DepositOutcome, DepositState, KycRules, KycState};
use domain::{Currency, Date, ExchangeRate, Money, Odds, Ratio, MONEY_MINOR_MAX};

use crate::exact::{payout, Fraction, ODDS_SCALE};
use crate::readmodels::{Log, LoggedTransfer};

mod feed;

pub use feed::FeedModel;

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;
/// Bounds the book documents in its API; repeated here on purpose, as rules to check against.
const NAME_BYTES_MAX: usize = 200;
const PAYMENT_REF_BYTES_MAX: usize = 200;
const KEY_BYTES_MAX: usize = 128;
const SELECTIONS_MAX: usize = 64;
const MARKETS_PER_EVENT_MAX: usize = 512;
const LEGS_MAX: usize = 20;
const DELAY_SECONDS_MAX: u32 = 60;
const TIME_OUT_HOURS_MAX: u32 = 24 * 42;
const EXCLUSION_DAYS: std::ops::RangeInclusive<u32> = 182..=(5 * 365 + 1);
const API_KEYS_MAX: usize = 1_024;
const PASSWORD_HASH_BYTES_MAX: usize = 256;

/// How a transfer moved money, as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Movement {
    Posted,
    Hold,
    PostHold,
    VoidHold,
}

/// One transfer the model expects: why, how and how much.
pub type ExpectedTransfer = (TransferCode, Movement, i64);

/// A bet event the model expects, in the book's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetChange {
    Placed { bet: BetId, account: AccountId, status: BetStatus },
    Changed { bet: BetId, account: AccountId, status: BetStatus, payout: i64 },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitModel {
    pub current: Option<i64>,
    /// A loosening waiting out its cooling-off: the new value (`None` removes) and when.
    pub pending: Option<(Option<i64>, u64)>,
}

impl LimitModel {
    fn in_force(&self, now: u64) -> Option<i64> {
        match self.pending {
            Some((value, from)) if now >= from => value,
            _ => self.current,
        }
    }
}

/// What a player did within one calendar period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageModel {
    pub period: u64,
    pub deposited: i64,
    pub staked: i64,
    /// Stakes less returns: negative when the player is ahead.
    pub net_loss: i64,
}

#[derive(Clone, Debug)]
pub struct PlayerModel {
    pub id: u64,
    pub currency: Currency,
    /// Posted cash: every credit less every posted debit.
    pub cash: i64,
    pub pending_stakes: i64,
    pub pending_withdrawals: i64,
    /// Deposits the provider has yet to confirm: counted in no balance.
    pub pending_deposits: i64,
    /// What the player owes the house after a resettlement took back more than their cash.
    pub debt: i64,
    pub stake_factor: Ratio,
    pub frozen: bool,
    pub timed_out_until: u64,
    pub excluded_until: u64,
    /// `[kind][period]`, kinds deposit, loss, stake; periods day, week, month.
    pub limits: [[LimitModel; 3]; 3],
    pub usage: [UsageModel; 3],
}

impl PlayerModel {
    pub fn available(&self) -> i64 {
        self.cash - self.pending_stakes - self.pending_withdrawals
    }
}

#[derive(Clone, Debug)]
pub struct EventModel {
    pub id: u64,
    pub starts_at: u64,
    pub state: EventState,
    pub delay_seconds: u32,
    pub markets: Vec<u64>,
    /// The provider's id of the event, when a feed created it.
    pub feed: Option<String>,
}

/// The result of one selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultModel {
    pub selection: u64,
    pub outcome: Outcome,
    pub dead_heat: Ratio,
    pub void_factor: Ratio,
}

#[derive(Clone, Debug)]
pub struct MarketModel {
    pub id: u64,
    pub event: u64,
    pub status: MarketStatus,
    pub in_play: bool,
    pub selections: Vec<u64>,
    pub each_way: Option<EachWayTerms>,
    pub risk: MarketRisk,
    pub settlement_version: u32,
    /// One per selection while the market is settled or voided; empty otherwise.
    pub results: Vec<ResultModel>,
    /// Bets with a leg here, oldest first.
    pub bets: Vec<u64>,
}

impl MarketModel {
    pub fn is_resulted(&self) -> bool {
        matches!(self.status, MarketStatus::Settled | MarketStatus::Voided)
    }
}

#[derive(Clone, Debug)]
pub struct SelectionModel {
    pub id: u64,
    pub market: u64,
    /// Decimal odds × 10,000.
    pub price: u32,
    pub version: u64,
    /// Sum over open bets of what they would cost the house if this selection won, in the base
    /// currency (each bet's share converted when it was placed).
    pub liability: i64,
    /// The same per bettor currency, in that currency; no zero entries.
    pub by_currency: BTreeMap<Currency, i64>,
}

#[derive(Clone, Debug)]
pub struct LegModel {
    pub selection: u64,
    pub market: u64,
    pub event: u64,
    pub requested: u32,
    /// The price bound at commit: what the leg pays.
    pub odds: u32,
    pub version: u64,
    pub terms: Option<EachWayTerms>,
}

#[derive(Clone, Debug)]
pub struct BetModel {
    pub id: u64,
    pub account: u64,
    pub kind: BetKind,
    pub legs: Vec<LegModel>,
    pub each_way: bool,
    pub policy: PricePolicy,
    pub stake_per_line: i64,
    pub line_count: u32,
    pub total_stake: i64,
    pub potential_payout: i64,
    pub status: BetStatus,
    pub placed_at: u64,
    pub delay_until: Option<u64>,
    /// The payout of the settlement in force.
    pub payout: Option<i64>,
    /// Settlements so far, counting each resettlement again.
    pub settlements: u32,
    pub rejection: Option<&'static str>,
    pub quote: Option<u64>,
    /// What this bet adds to each leg's selection liability while open, in its currency;
    /// empty when closed.
    pub liability: Vec<i64>,
    /// The same in the base currency.
    pub liability_base: Vec<i64>,
    /// The rate the bet was converted with at placement.
    pub fx: RateModel,
}

/// The exchange-rate table as the model sees it.
#[derive(Clone, Debug)]
pub struct FxModel {
    pub base: Currency,
    pub version: u64,
    pub set_at: u64,
    pub rates: BTreeMap<Currency, ExchangeRate>,
}

/// A rate as applied to one bet: units of its currency per unit of `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateModel {
    pub base: Currency,
    pub version: u64,
    pub rate: ExchangeRate,
}

impl RateModel {
    /// The rate as a fraction of minor units: minor units of `currency` per minor unit of base,
    /// `(mantissa × 10^e_currency) / (10^scale × 10^e_base)`.
    fn minor_per_base_minor(&self, currency: Currency) -> (u128, u128) {
        let ten = |exponent: u8| 10u128.pow(u32::from(exponent));
        (
            u128::from(self.rate.mantissa()) * ten(currency.exponent()),
            ten(self.rate.scale()) * ten(self.base.exponent()),
        )
    }

    /// A limit of the base currency in `currency`, rounded down (`up`: rounded up).
    fn limit_in(&self, amount: i64, currency: Currency, up: bool) -> i64 {
        assert!(amount >= 0, "limits are never negative");
        let (num, den) = self.minor_per_base_minor(currency);
        let product = amount as u128 * num;
        let quotient = if up { product.div_ceil(den) } else { product / den };
        quotient.min(MONEY_MINOR_MAX as u128) as i64
    }

    /// An amount at risk in `currency`, in the base currency, rounded towards +infinity.
    fn at_risk_in_base(&self, amount: i64, currency: Currency) -> i64 {
        let (num, den) = self.minor_per_base_minor(currency);
        let magnitude = u128::from(amount.unsigned_abs()) * den;
        let converted = if amount >= 0 { magnitude.div_ceil(num) as i128 } else { -((magnitude / num) as i128) };
        converted.clamp(-i128::from(MONEY_MINOR_MAX), i128::from(MONEY_MINOR_MAX)) as i64
    }
}

#[derive(Clone, Debug)]
pub struct QuoteModel {
    pub bet: u64,
    pub amount: i64,
    pub expires_at: u64,
    pub versions: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct WithdrawalModel {
    pub account: u64,
    pub amount: i64,
    pub open: bool,
    /// Approved for payout (`ApproveWithdrawal`).
    pub approved: bool,
}

/// A deposit through the provider, as the model sees it.
#[derive(Clone, Debug)]
pub struct DepositModel {
    pub account: u64,
    pub amount: i64,
    pub created_at: u64,
    /// `pending`, `completed`, `failed` or `charged_back`.
    pub state: DepositState,
    pub resolution: Option<u64>,
    pub chargeback: Option<u64>,
}

#[derive(Clone, Debug)]
struct RememberedReply {
    body_hash: u64,
    reply: Reply,
    at: u64,
}

/// Bucket balances of one currency outside the players: the house, the payment provider and
/// the operator's adjustments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemBalances {
    pub house: i64,
    pub clearing: i64,
    pub adjustments: i64,
}

/// A manual adjustment waiting for a second staff member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingAdjustment {
    pub account: u64,
    pub amount: i64,
    pub credit: bool,
    pub requested_by: u64,
    pub expires_at: u64,
}

/// How long a pending adjustment waits for approval: 24 hours, the API's documented window.
const ADJUSTMENT_APPROVAL_MS: u64 = DAY_MS;
const ADJUSTMENTS_PENDING_MAX: usize = 1_024;
const ADJUSTMENT_REASON_BYTES_MAX: usize = 500;

/// One player's identity verification as the rules say it goes: the state last set and when,
/// the jurisdiction's rules, lifetime deposits and those at the last verification.
#[derive(Clone, Debug)]
pub struct KycModel {
    pub state: KycState,
    pub since: u64,
    pub reference: Option<String>,
    pub deposit_cap: Option<i64>,
    pub reverify_above: Option<i64>,
    pub expiry_ms: Option<u64>,
    pub deposited: i64,
    pub deposited_when_verified: i64,
}

impl KycModel {
    fn fresh(now: u64) -> KycModel {
        KycModel {
            state: KycState::Unverified,
            since: now,
            reference: None,
            deposit_cap: None,
            reverify_above: None,
            expiry_ms: None,
            deposited: 0,
            deposited_when_verified: 0,
        }
    }

    /// Verified, and not past the expiry.
    pub fn verified_at(&self, now: u64) -> bool {
        self.state == KycState::Verified && self.expiry_ms.is_none_or(|expiry| now < self.since.saturating_add(expiry))
    }

    fn state_at(&self, now: u64) -> KycState {
        if self.state == KycState::Verified && !self.verified_at(now) {
            KycState::Expired
        } else {
            self.state
        }
    }
}

#[derive(Clone, Debug)]
pub struct Auditor {
    pub config: Config,
    pub now: u64,
    pub players: Vec<PlayerModel>,
    pub usernames: BTreeSet<String>,
    /// Accounts opened by registration (they have a profile for personal details).
    pub registered: BTreeSet<u64>,
    /// Reality checks by account: the interval in ms, and when the next check falls due
    /// (`None`: one is due and not acknowledged).
    pub reality: BTreeMap<u64, (u64, Option<u64>)>,
    /// Stored key hashes (lower case) and whether revoked.
    pub api_keys: Vec<(String, bool)>,
    /// Staff usernames (lower case) and whether each is disabled.
    pub staff: Vec<(String, bool)>,
    /// Each staff member's roles (`book::roles` bits), by id.
    pub staff_roles: Vec<u8>,
    /// Each role's adjustment limit in base minor units, in the order of `roles::NAMES`:
    /// `None` may not adjust, `Some(i64::MAX)` without a limit.
    pub adjustment_limits: [Option<i64>; 5],
    pub pending_adjustments: BTreeMap<u64, PendingAdjustment>,
    pub adjustments_issued: u64,
    pub events: Vec<EventModel>,
    pub markets: Vec<MarketModel>,
    pub selections: Vec<SelectionModel>,
    pub bets: Vec<BetModel>,
    pub quotes: BTreeMap<u64, QuoteModel>,
    pub quotes_issued: u64,
    pub withdrawals: BTreeMap<u64, WithdrawalModel>,
    /// Deposits through the provider by their hold's id.
    pub deposits: BTreeMap<u64, DepositModel>,
    /// Transfers the ledger has recorded: their ids are 1..=transfers.
    pub transfers: u64,
    pub system: BTreeMap<Currency, SystemBalances>,
    /// Bets waiting out an in-play delay, by when it ends.
    delayed: BTreeSet<(u64, u64)>,
    keys: BTreeMap<(u64, String), RememberedReply>,
    /// The payment references each account was credited with, in full: a reference credits
    /// an account once. (The book keeps a hash; the model keeps the text.)
    pub payment_refs: BTreeSet<(u64, String)>,
    /// Identity verifications of the players tracked, by account.
    pub kyc: BTreeMap<u64, KycModel>,
    /// What the command being applied did, for the simulator to compare.
    pub bet_changes: Vec<BetChange>,
    pub transfers_made: Vec<ExpectedTransfer>,
    pub fx: FxModel,
    /// Every transfer and bet status so far: what the read models must hold (`readmodels`).
    pub log: Log,
    /// The feed's mapping, windows and recent messages.
    pub feed: FeedModel,
    /// How often the model took paths worth counting (the feed's windows), for the report.
    pub paths: BTreeMap<&'static str, u64>,
}

fn invalid(reason: &'static str) -> Rejection {
    Rejection::InvalidRequest { reason }
}

fn kind_slot(kind: LimitKind) -> usize {
    match kind {
        LimitKind::Deposit => 0,
        LimitKind::Loss => 1,
        LimitKind::Stake => 2,
    }
}

const PERIODS: [Period; 3] = [Period::Day, Period::Week, Period::Month];

fn period_slot(period: Period) -> usize {
    match period {
        Period::Day => 0,
        Period::Week => 1,
        Period::Month => 2,
    }
}

/// Numbers the calendar period (UTC day, ISO week from Monday, month) containing `at`.
pub fn period_number(period: Period, at: u64) -> u64 {
    let days = at / DAY_MS;
    match period {
        Period::Day => days,
        // 1970-01-01 was a Thursday, three days after a Monday.
        Period::Week => (days + 3) / 7,
        Period::Month => {
            let date = Date::from_unix_millis(at);
            u64::from(date.year()) * 12 + u64::from(date.month())
        }
    }
}

fn ratio_fraction(ratio: Ratio) -> Fraction {
    Fraction::new(u128::from(ratio.num()), u128::from(ratio.den()))
}

/// Place odds of each-way terms: `1 + (odds - 1) × fraction`, rounded down to the odds scale.
fn place_odds(odds: u32, terms: EachWayTerms) -> Fraction {
    let excess = u128::from(odds) - ODDS_SCALE;
    let scaled = ODDS_SCALE + excess * u128::from(terms.fraction.num()) / u128::from(terms.fraction.den());
    Fraction::new(scaled, ODDS_SCALE)
}

fn system_legs(kind: SystemKind) -> usize {
    match kind {
        SystemKind::Trixie | SystemKind::Patent => 3,
        SystemKind::Yankee | SystemKind::Lucky15 => 4,
        SystemKind::Canadian => 5,
        SystemKind::Heinz => 6,
        SystemKind::SuperHeinz => 7,
        SystemKind::Goliath => 8,
    }
}

/// Every line of a bet: which legs it combines and whether it is the place part of each-way.
/// A patent and a lucky 15 include singles; the other system bets start at doubles.
pub fn bet_lines(kind: BetKind, legs: usize, each_way: bool) -> Vec<(Vec<usize>, bool)> {
    let mut combinations: Vec<Vec<usize>> = Vec::new();
    match kind {
        BetKind::Single | BetKind::Multiple => combinations.push((0..legs).collect()),
        BetKind::System(system) => {
            let smallest = if matches!(system, SystemKind::Patent | SystemKind::Lucky15) { 1 } else { 2 };
            for mask in 1u32..(1 << legs) {
                let chosen: Vec<usize> = (0..legs).filter(|leg| mask & (1 << leg) != 0).collect();
                if chosen.len() >= smallest {
                    combinations.push(chosen);
                }
            }
        }
    }
    let mut lines: Vec<(Vec<usize>, bool)> = combinations.iter().map(|legs| (legs.clone(), false)).collect();
    if each_way {
        lines.extend(combinations.into_iter().map(|legs| (legs, true)));
    }
    lines
}

/// Potential payout of a bet and what it adds to each leg's selection liability.
struct Pricing {
    potential: i64,
    liability: Vec<i64>,
}

/// Prices a bet as if every leg won: each line's payout, and per leg the sum over the lines
/// containing it of the line's payout less its stake.
fn price(kind: BetKind, legs: &[LegModel], each_way: bool, stake: i64) -> Pricing {
    let win: Vec<Fraction> = legs.iter().map(|leg| Fraction::odds(leg.odds)).collect();
    let place: Vec<Fraction> =
        legs.iter().map(|leg| leg.terms.map_or(Fraction::ZERO, |terms| place_odds(leg.odds, terms))).collect();
    let mut potential = 0i128;
    let mut liability = vec![0i128; legs.len()];
    for (members, is_place) in bet_lines(kind, legs.len(), each_way) {
        let table = if is_place { &place } else { &win };
        let factors: Vec<Fraction> = members.iter().map(|&leg| table[leg]).collect();
        let line_payout = i128::from(payout(stake, &factors));
        potential += line_payout;
        for &leg in &members {
            liability[leg] += line_payout - i128::from(stake);
        }
    }
    let max = i128::from(MONEY_MINOR_MAX);
    Pricing {
        potential: potential.min(max) as i64,
        liability: liability.into_iter().map(|value| value.clamp(-max, max) as i64).collect(),
    }
}

/// What one leg turns the money riding on it into, for the win part or the place part.
fn leg_factor(result: &ResultModel, odds: u32, terms: Option<EachWayTerms>, place_part: bool) -> Fraction {
    let base = match (result.outcome, place_part.then_some(terms)) {
        // A leg struck without each-way terms has no place part at all.
        (_, Some(None)) => return Fraction::ZERO,
        (Outcome::Void, _) => Fraction::ONE,
        (Outcome::Lose, _) => Fraction::ZERO,
        (Outcome::Win, None) => Fraction::odds(odds),
        (Outcome::Place, None) => Fraction::ZERO,
        (Outcome::Win | Outcome::Place, Some(Some(terms))) => place_odds(odds, terms),
    };
    let base = if result.outcome != Outcome::Void { base.times(ratio_fraction(result.dead_heat)) } else { base };
    if result.void_factor.is_zero() {
        base
    } else {
        Fraction::mix(ratio_fraction(result.void_factor), Fraction::ONE, base)
    }
}

impl Auditor {
    pub fn new(config: Config) -> Auditor {
        Auditor {
            config,
            now: 0,
            players: Vec::new(),
            usernames: BTreeSet::new(),
            registered: BTreeSet::new(),
            reality: BTreeMap::new(),
            api_keys: Vec::new(),
            staff: Vec::new(),
            staff_roles: Vec::new(),
            // The documented defaults: traders and settlement none, compliance 1,000.00,
            // support 50.00, admin without a limit.
            adjustment_limits: [None, None, Some(100_000), Some(5_000), Some(i64::MAX)],
            pending_adjustments: BTreeMap::new(),
            adjustments_issued: 0,
            events: Vec::new(),
            markets: Vec::new(),
            selections: Vec::new(),
            bets: Vec::new(),
            quotes: BTreeMap::new(),
            quotes_issued: 0,
            withdrawals: BTreeMap::new(),
            deposits: BTreeMap::new(),
            transfers: 0,
            system: BTreeMap::new(),
            delayed: BTreeSet::new(),
            keys: BTreeMap::new(),
            payment_refs: BTreeSet::new(),
            kyc: BTreeMap::new(),
            bet_changes: Vec::new(),
            transfers_made: Vec::new(),
            log: Log::default(),
            feed: FeedModel::default(),
            paths: BTreeMap::new(),
            fx: FxModel { base: Currency::EUR, version: 0, set_at: 0, rates: BTreeMap::new() },
        }
    }

    /// Applies one command at `now` and returns the reply the book must give. What it did is
    /// added to `bet_changes` and `transfers_made` until `take_effects`.
    pub fn apply(&mut self, now: u64, command: &Command) -> Reply {
        self.advance(now);
        let keyed = match command {
            Command::Deposit { account, idempotency, .. }
            | Command::BeginDeposit { account, idempotency, .. }
            | Command::Withdraw { account, idempotency, .. }
            | Command::AcceptCashout { account, idempotency, .. }
            | Command::RequestAdjustment { account, idempotency, .. } => {
                idempotency.as_ref().map(|key| (account.0, key))
            }
            Command::PlaceBet(place) => place.idempotency.as_ref().map(|key| (place.account.0, key)),
            _ => None,
        };
        if let Some((account, key)) = keyed {
            if key.key.is_empty() || key.key.len() > KEY_BYTES_MAX {
                return Err(invalid("idempotency keys are 1 to 128 bytes"));
            }
            let retention = self.config.idempotency_window_ms;
            if let Some(remembered) = self.keys.get(&(account, key.key.clone())) {
                if remembered.at + retention > now {
                    return if remembered.body_hash == key.body_hash {
                        remembered.reply.clone()
                    } else {
                        Err(Rejection::IdempotencyKeyReused)
                    };
                }
            }
        }
        let reply = self.decide(command);
        if let Some((account, key)) = keyed {
            let remembered = RememberedReply { body_hash: key.body_hash, reply: reply.clone(), at: now };
            self.keys.insert((account, key.key.clone()), remembered);
        }
        reply
    }

    fn decide(&mut self, command: &Command) -> Reply {
        match command {
            Command::OpenAccount { currency } => Ok(Ack::AccountOpened(self.open_player(*currency))),
            Command::RegisterPlayer { username, password_hash, date_of_birth, country, currency } => {
                self.register(username, password_hash, *date_of_birth, country, *currency)
            }
            Command::CreateApiKey { name, key_hash, scopes } => self.create_api_key(name, key_hash, *scopes),
            Command::RevokeApiKey { key } => match self.api_keys.get_mut((key.0 as usize).wrapping_sub(1)) {
                Some(found) => {
                    found.1 = true;
                    Ok(Ack::Done)
                }
                None => Err(invalid("unknown API key")),
            },
            Command::CreateStaff { username, password_hash, totp_secret, roles } => {
                self.create_staff(username, password_hash, totp_secret, *roles)
            }
            Command::DisableStaff { staff } => match self.staff.get_mut((staff.0 as usize).wrapping_sub(1)) {
                Some(found) => {
                    found.1 = true;
                    Ok(Ack::Done)
                }
                None => Err(invalid("unknown staff member")),
            },
            Command::SetStaffRoles { staff, roles } => {
                if *roles == 0 || roles & !book::roles::ALL != 0 {
                    return Err(invalid("a staff member needs known roles"));
                }
                match self.staff_roles.get_mut((staff.0 as usize).wrapping_sub(1)) {
                    Some(found) => {
                        *found = *roles;
                        Ok(Ack::Done)
                    }
                    None => Err(invalid("unknown staff member")),
                }
            }
            Command::SetAdjustmentLimits { limits } => {
                let mut model = [None; 5];
                for (slot, limit) in model.iter_mut().zip(limits.0) {
                    *slot = match limit {
                        book::AdjustmentLimit::Forbidden => None,
                        book::AdjustmentLimit::UpTo(amount) if amount.minor() < 0 => {
                            return Err(invalid("adjustment limits cannot be negative"))
                        }
                        book::AdjustmentLimit::UpTo(amount) => Some(amount.minor()),
                        book::AdjustmentLimit::Unlimited => Some(i64::MAX),
                    };
                }
                self.adjustment_limits = model;
                Ok(Ack::Done)
            }
            Command::RequestAdjustment { account, amount, direction, reason, staff, .. } => self.request_adjustment(
                account.0,
                amount.minor(),
                *direction == book::AdjustmentDirection::Credit,
                reason,
                staff.0,
            ),
            Command::ApproveAdjustment { adjustment, account, staff } => {
                self.approve_adjustment(adjustment.0, account.0, staff.0)
            }
            Command::RejectAdjustment { adjustment, account, staff, reason } => {
                self.pending_adjustment(adjustment.0, account.0)?;
                self.adjustment_limit(staff.0)?;
                if reason.is_empty() || reason.len() > ADJUSTMENT_REASON_BYTES_MAX {
                    return Err(invalid("an adjustment's reason is 1 to 500 bytes"));
                }
                self.pending_adjustments.remove(&adjustment.0);
                Ok(Ack::Done)
            }
            Command::Deposit { account, amount, payment_ref, .. } => {
                self.deposit(account.0, amount.minor(), payment_ref)
            }
            Command::BeginDeposit { account, amount, payment_ref, .. } => {
                self.begin_deposit(account.0, amount.minor(), payment_ref)
            }
            Command::SettleDeposit { account, deposit, outcome } => self.settle_deposit(account.0, deposit.0, *outcome),
            Command::ApproveWithdrawal { account, withdrawal } => {
                self.player(account.0)?;
                match self.withdrawals.get_mut(&withdrawal.0) {
                    Some(found) if found.account == account.0 && found.open => {
                        found.approved = true;
                        Ok(Ack::Transfer(*withdrawal))
                    }
                    _ => Err(Rejection::UnknownWithdrawal),
                }
            }
            Command::RefuseWithdrawal { account, withdrawal } => {
                if self.withdrawals.get(&withdrawal.0).is_some_and(|found| found.approved) {
                    return Err(Rejection::PaymentConflict);
                }
                self.complete_withdrawal(account.0, withdrawal.0, false)
            }
            Command::Withdraw { account, amount, .. } => self.withdraw(account.0, amount.minor()),
            Command::SetKycRules { account, rules } => self.set_kyc_rules(account.0, *rules),
            Command::SetKycState { account, state, reference } => {
                self.set_kyc_state(account.0, *state, reference.as_deref())
            }
            Command::CompleteWithdrawal { account, withdrawal, paid } => {
                self.complete_withdrawal(account.0, withdrawal.0, *paid)
            }
            Command::SetRealityCheck { account, interval_minutes } => {
                self.player(account.0)?;
                let Some(minutes) = interval_minutes else {
                    // Stopping the checks waits for a due one's acknowledgement.
                    if self.reality.get(&account.0).is_some_and(|entry| entry.1.is_none()) {
                        return Err(Rejection::RealityCheckDue);
                    }
                    self.reality.remove(&account.0);
                    return Ok(Ack::Done);
                };
                if !(10..=240).contains(minutes) {
                    return Err(invalid("reality check interval out of range"));
                }
                let interval = u64::from(*minutes) * 60_000;
                let now = self.now;
                let entry = self.reality.entry(account.0).or_insert((interval, Some(now)));
                entry.0 = interval;
                if entry.1.is_some() {
                    entry.1 = Some(now + interval);
                }
                Ok(Ack::Done)
            }
            Command::StartSession { account } => {
                self.player(account.0)?;
                let now = self.now;
                // A check still due stays due.
                if let Some(entry) = self.reality.get_mut(&account.0).filter(|entry| entry.1.is_some()) {
                    entry.1 = Some(now + entry.0);
                }
                Ok(Ack::Done)
            }
            Command::AcknowledgeRealityCheck { account } => {
                self.player(account.0)?;
                let now = self.now;
                match self.reality.get_mut(&account.0) {
                    Some(entry) if entry.1.is_none() => {
                        entry.1 = Some(now + entry.0);
                        Ok(Ack::Done)
                    }
                    _ => Err(Rejection::NoRealityCheckDue),
                }
            }
            Command::SetPersonalDetails { account, details } => {
                self.player(account.0)?;
                let valid = details
                    .fields()
                    .into_iter()
                    .flatten()
                    .all(|field| (1..=200).contains(&field.len()) && !field.chars().any(char::is_control));
                if !valid {
                    return Err(invalid("personal details out of range"));
                }
                if !self.registered.contains(&account.0) {
                    return Err(invalid("personal details of a player without a profile"));
                }
                Ok(Ack::Done)
            }
            Command::SetLimits { account, changes } => self.set_limits(account.0, changes),
            Command::TimeOut { account, hours } => {
                self.player(account.0)?;
                if *hours == 0 || *hours > TIME_OUT_HOURS_MAX {
                    return Err(invalid("time-out hours out of range"));
                }
                let until = self.now + u64::from(*hours) * HOUR_MS;
                let player = self.player_mut(account.0);
                player.timed_out_until = player.timed_out_until.max(until);
                Ok(Ack::Done)
            }
            Command::SelfExclude { account, days } => {
                self.player(account.0)?;
                if !EXCLUSION_DAYS.contains(days) {
                    return Err(invalid("self-exclusion days out of range"));
                }
                let until = self.now + u64::from(*days) * DAY_MS;
                let player = self.player_mut(account.0);
                player.excluded_until = player.excluded_until.max(until);
                Ok(Ack::Done)
            }
            Command::SetAccountRisk { account, stake_factor, frozen } => {
                self.player(account.0)?;
                if stake_factor.is_some_and(|factor| u64::from(factor.num()) > 100 * u64::from(factor.den())) {
                    return Err(invalid("stake factor above 100"));
                }
                let player = self.player_mut(account.0);
                if let Some(factor) = stake_factor {
                    player.stake_factor = *factor;
                }
                if let Some(frozen) = frozen {
                    player.frozen = *frozen;
                }
                Ok(Ack::Done)
            }
            Command::CreateEvent { name, sport, competition, starts_at } => {
                self.create_event(name, sport, competition, *starts_at)
            }
            Command::CreateMarket { event, name, kind, selections, each_way } => {
                self.create_market(event.0, name, kind, selections, *each_way)
            }
            Command::SetPrices { market, prices } => self.set_prices(market.0, prices),
            Command::SetMarketStatus { market, action } => self.set_market_status(market.0, *action),
            Command::SetInPlay { event, bet_delay_seconds } => {
                let found = self.event(event.0).ok_or(Rejection::UnknownEvent)?;
                if found.state == EventState::Ended {
                    return Err(invalid("event has ended"));
                }
                if *bet_delay_seconds > DELAY_SECONDS_MAX {
                    return Err(invalid("bet delay above 60 seconds"));
                }
                let found = &mut self.events[event.0 as usize - 1];
                found.delay_seconds = *bet_delay_seconds;
                found.state = EventState::InPlay;
                for market in found.markets.clone() {
                    self.markets[market as usize - 1].in_play = true;
                }
                Ok(Ack::Done)
            }
            Command::EndEvent { event } => {
                let found = self.event(event.0).ok_or(Rejection::UnknownEvent)?;
                if found.state == EventState::Ended {
                    return Ok(Ack::Done);
                }
                let found = &mut self.events[event.0 as usize - 1];
                found.state = EventState::Ended;
                for market in found.markets.clone() {
                    let market = &mut self.markets[market as usize - 1];
                    if matches!(market.status, MarketStatus::Open | MarketStatus::Suspended) {
                        market.status = MarketStatus::Closed;
                    }
                }
                Ok(Ack::Done)
            }
            Command::SetMarketRisk { market, change } => self.set_market_risk(market.0, change),
            Command::PlaceBet(place) => self.place_bet(place),
            Command::QuoteCashout { account, bet } => self.quote_cashout(account.0, bet.0),
            Command::AcceptCashout { account, bet, quote, .. } => self.accept_cashout(account.0, bet.0, quote.0),
            Command::SettleMarket { market, results } => self.settle_market(market.0, results),
            Command::UnsettleMarket { market } => self.unsettle_market(market.0),
            Command::VoidMarket { market } => self.void_market(market.0),
            Command::Tick => Ok(Ack::Done),
            Command::SetFxRates { base, rates } => self.set_fx_rates(*base, rates),
            // The simulator runs with a window nothing passes (`RESETTLEMENT_WINDOW_NEVER_MS`)
            // and the workload never changes it: nothing leaves (the book's property tests
            // cover what does).
            Command::SetResettlementWindow { window_ms } => {
                self.config.resettlement_window_ms = *window_ms;
                Ok(Ack::Done)
            }
            // The workload keeps the default window (10 minutes, longer than any run's retries)
            // and never changes it: the book's tests cover a changed window.
            Command::SetIdempotencyWindow { .. } => {
                unreachable!("the simulator sends no idempotency window")
            }
            Command::Feed(message) => self.feed_message(message),
            // The workload's provider is never stale and the book never degraded: the book's
            // scenarios and the feed crate's tests cover those.
            Command::FeedHealth { .. } | Command::SetTradingMode { .. } | Command::SetMarketThrottle { .. } => {
                unreachable!("the simulator sends no feed-health or degraded-mode commands")
            }
            // Alerts change no reply (they are events), so the model ignores the monitor; the
            // workload sends no monitoring command (the book's unit tests and the gateway's
            // black-box tests cover rules, cases and freezes by case).
            Command::SetMonitoringRules { .. } | Command::CaseAction(_) | Command::NoteShared { .. } => {
                unreachable!("the simulator sends no monitoring commands")
            }
        }
    }

    /// The bet events and transfers of the commands applied since the last call.
    pub fn take_effects(&mut self) -> (Vec<BetChange>, Vec<ExpectedTransfer>) {
        (std::mem::take(&mut self.bet_changes), std::mem::take(&mut self.transfers_made))
    }

    // ---- time ------------------------------------------------------------------------------

    /// Time passes: quotes expire and in-play delays that are due end, oldest first.
    fn advance(&mut self, now: u64) {
        assert!(now >= self.now, "model time moves forward only");
        self.now = now;
        let expired: Vec<(u64, u64)> = self
            .quotes
            .iter()
            .filter(|(_, quote)| quote.expires_at < now)
            .map(|(id, quote)| (*id, quote.bet))
            .collect();
        for (id, bet) in expired {
            self.quotes.remove(&id);
            let found = self.bet_mut(bet);
            if found.quote == Some(id) {
                found.quote = None;
            }
        }
        while let Some(&(due, bet)) = self.delayed.first() {
            if due > now {
                break;
            }
            self.delayed.remove(&(due, bet));
            self.end_delay(bet);
        }
        self.pending_adjustments.retain(|_, pending| pending.expires_at > now);
        for (_, next) in self.reality.values_mut() {
            if next.is_some_and(|due| due <= now) {
                *next = None;
            }
        }
    }

    // ---- lookups -----------------------------------------------------------------------------

    fn player(&self, account: u64) -> Result<&PlayerModel, Rejection> {
        self.players.get((account as usize).wrapping_sub(1)).ok_or(Rejection::UnknownAccount)
    }

    fn player_mut(&mut self, account: u64) -> &mut PlayerModel {
        &mut self.players[account as usize - 1]
    }

    pub fn event(&self, event: u64) -> Option<&EventModel> {
        self.events.get((event as usize).wrapping_sub(1))
    }

    pub fn market(&self, market: u64) -> Option<&MarketModel> {
        self.markets.get((market as usize).wrapping_sub(1))
    }

    pub fn selection(&self, selection: u64) -> Option<&SelectionModel> {
        self.selections.get((selection as usize).wrapping_sub(1))
    }

    pub fn bet(&self, bet: u64) -> Option<&BetModel> {
        self.bets.get((bet as usize).wrapping_sub(1))
    }

    fn market_mut(&mut self, market: u64) -> &mut MarketModel {
        &mut self.markets[market as usize - 1]
    }

    fn bet_mut(&mut self, bet: u64) -> &mut BetModel {
        &mut self.bets[bet as usize - 1]
    }

    /// Open bets' liability on every selection, summed from scratch (the model's own check of
    /// its running totals).
    pub fn liability_from_scratch(&self) -> Vec<(i64, BTreeMap<Currency, i64>)> {
        let mut liability = vec![(0i64, BTreeMap::new()); self.selections.len()];
        for bet in self.bets.iter().filter(|bet| matches!(bet.status, BetStatus::Pending | BetStatus::Accepted)) {
            let pricing = price(bet.kind, &bet.legs, bet.each_way, bet.stake_per_line);
            let currency = self.players[bet.account as usize - 1].currency;
            for (leg, added) in bet.legs.iter().zip(pricing.liability) {
                let (base, by_currency) = &mut liability[leg.selection as usize - 1];
                *base += bet.fx.at_risk_in_base(added, currency);
                add_by_currency(by_currency, currency, added);
            }
        }
        liability
    }

    /// Whether bets may be struck on `market` now; the rejection when not.
    pub fn market_open(&self, market: u64) -> Result<(), Rejection> {
        let found = &self.markets[market as usize - 1];
        match found.status {
            MarketStatus::Open => {}
            MarketStatus::Suspended => return Err(Rejection::MarketSuspended),
            MarketStatus::Closed | MarketStatus::Settled | MarketStatus::Voided => return Err(Rejection::MarketClosed),
        }
        let event = &self.events[found.event as usize - 1];
        match event.state {
            EventState::Ended => Err(Rejection::MarketClosed),
            // Kicked off but nobody took it in play: no live prices, no bets.
            EventState::Scheduled if self.now >= event.starts_at && !found.in_play => Err(Rejection::MarketSuspended),
            _ => Ok(()),
        }
    }

    /// Whether the player may gamble (bet or deposit) now.
    fn may_gamble(&self, player: &PlayerModel) -> Result<(), Rejection> {
        if player.frozen {
            Err(Rejection::AccountFrozen)
        } else if player.excluded_until > self.now {
            Err(Rejection::SelfExcluded)
        } else if player.timed_out_until > self.now {
            Err(Rejection::TimedOut)
        } else {
            Ok(())
        }
    }

    // ---- money -----------------------------------------------------------------------------

    /// Records one ledger transfer and returns its id.
    /// `account` is the player whose cash or debt it moves; `bet` the bet it belongs to.
    fn transfer(&mut self, account: u64, bet: Option<u64>, code: TransferCode, movement: Movement, amount: i64) -> u64 {
        assert!(amount > 0, "the ledger records only positive amounts");
        self.transfers += 1;
        self.transfers_made.push((code, movement, amount));
        self.log.transfers.push(LoggedTransfer {
            id: self.transfers,
            account,
            bet,
            code,
            movement,
            amount,
            at: self.now,
        });
        self.transfers
    }

    /// A bet event: for the simulator to compare, and kept in the bet's history.
    fn bet_change(&mut self, change: BetChange) {
        let (bet, status, payout) = match change {
            BetChange::Placed { bet, status, .. } => (bet, status, 0),
            BetChange::Changed { bet, status, payout, .. } => (bet, status, payout),
        };
        let history = &mut self.log.history;
        if history.len() < bet.0 as usize {
            history.resize(bet.0 as usize, Vec::new());
        }
        history[bet.0 as usize - 1].push((status, payout, self.now));
        self.bet_changes.push(change);
    }

    fn system_mut(&mut self, currency: Currency) -> &mut SystemBalances {
        self.system.entry(currency).or_default()
    }

    fn record_usage(&mut self, account: u64, deposited: i64, staked: i64, net_loss: i64) {
        let now = self.now;
        let player = self.player_mut(account);
        for period in PERIODS {
            let usage = &mut player.usage[period_slot(period)];
            let number = period_number(period, now);
            if usage.period != number {
                *usage = UsageModel { period: number, ..UsageModel::default() };
            }
            usage.deposited += deposited;
            usage.staked += staked;
            usage.net_loss += net_loss;
        }
    }

    /// The usage of the current period (zero when nothing happened in it yet).
    pub fn usage_now(&self, account: u64, period: Period) -> UsageModel {
        let usage = self.players[account as usize - 1].usage[period_slot(period)];
        if usage.period == period_number(period, self.now) {
            usage
        } else {
            UsageModel::default()
        }
    }

    /// The first period whose limit of `kind` `amount` more would break.
    fn limit_broken(&self, account: u64, kind: LimitKind, amount: i64) -> Option<Period> {
        let player = &self.players[account as usize - 1];
        PERIODS.into_iter().find(|&period| {
            let Some(limit) = player.limits[kind_slot(kind)][period_slot(period)].in_force(self.now) else {
                return false;
            };
            let usage = self.usage_now(account, period);
            let used = match kind {
                LimitKind::Deposit => usage.deposited,
                LimitKind::Stake => usage.staked,
                // A stake can at most be lost in full, so it counts as lost.
                LimitKind::Loss => usage.net_loss.max(0),
            };
            used + amount > limit
        })
    }

    /// Pays down a player's debt from their free cash.
    fn repay_debt(&mut self, account: u64) {
        let player = &self.players[account as usize - 1];
        let amount = player.debt.min(player.available());
        if amount > 0 {
            self.transfer(account, None, TransferCode::DebtRepaid, Movement::Posted, amount);
            let player = self.player_mut(account);
            player.cash -= amount;
            player.debt -= amount;
        }
    }

    // ---- accounts ----------------------------------------------------------------------------

    fn open_player(&mut self, currency: Currency) -> AccountId {
        let id = self.players.len() as u64 + 1;
        self.system_mut(currency);
        self.players.push(PlayerModel {
            id,
            currency,
            cash: 0,
            pending_stakes: 0,
            pending_withdrawals: 0,
            pending_deposits: 0,
            debt: 0,
            stake_factor: Ratio::ONE,
            frozen: false,
            timed_out_until: 0,
            excluded_until: 0,
            limits: [[LimitModel::default(); 3]; 3],
            usage: [UsageModel::default(); 3],
        });
        AccountId(id)
    }

    fn register(
        &mut self,
        username: &str,
        password_hash: &str,
        date_of_birth: Date,
        country: &str,
        currency: Currency,
    ) -> Reply {
        let username = username.to_ascii_lowercase();
        let username_ok = (3..=32).contains(&username.len())
            && username.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
        if !username_ok {
            return Err(invalid("usernames are 3 to 32 of a-z, 0-9, _ . -"));
        }
        if password_hash.is_empty() || password_hash.len() > PASSWORD_HASH_BYTES_MAX {
            return Err(invalid("password hash out of range"));
        }
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid("country must be an ISO 3166-1 alpha-2 code"));
        }
        let today = Date::from_unix_millis(self.now);
        let had_birthday = (today.month(), today.day()) >= (date_of_birth.month(), date_of_birth.day());
        let age = i64::from(today.year()) - i64::from(date_of_birth.year()) - i64::from(!had_birthday);
        if age < 18 {
            return Err(Rejection::Underage);
        }
        if !self.usernames.insert(username) {
            return Err(Rejection::UsernameTaken);
        }
        let account = self.open_player(currency);
        self.registered.insert(account.0);
        Ok(Ack::AccountOpened(account))
    }

    fn create_api_key(&mut self, name: &str, key_hash: &str, scopes: u8) -> Reply {
        if !name_ok(name) {
            return Err(invalid("names are 1 to 200 bytes"));
        }
        let is_hash = key_hash.len() == 64 && key_hash.chars().all(|c| c.is_ascii_hexdigit());
        if !is_hash || scopes == 0 || scopes & !book::scopes::ALL != 0 {
            return Err(invalid("an API key needs a SHA-256 hash and known scopes"));
        }
        let hash = key_hash.to_ascii_lowercase();
        // Hashes are stored in lower case, so a duplicate is one whatever its case.
        let duplicate = self.api_keys.iter().any(|(stored, _)| *stored == hash);
        if self.api_keys.len() >= API_KEYS_MAX || duplicate {
            return Err(invalid("API key refused"));
        }
        self.api_keys.push((hash, false));
        Ok(Ack::ApiKeyCreated(ApiKeyId(self.api_keys.len() as u64)))
    }

    fn create_staff(&mut self, username: &str, password_hash: &str, totp_secret: &str, roles: u8) -> Reply {
        let Some(username) = book::normalise_username(username) else {
            return Err(invalid("usernames are 3 to 32 of a-z, 0-9, _ . -"));
        };
        if password_hash.is_empty() || password_hash.len() > book::PASSWORD_HASH_BYTES_MAX {
            return Err(invalid("password hash out of range"));
        }
        let base32 = totp_secret.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c));
        if !(16..=book::TOTP_SECRET_BYTES_MAX).contains(&totp_secret.len()) || !base32 {
            return Err(invalid("a TOTP secret is 16 to 64 base32 characters"));
        }
        if roles == 0 || roles & !book::roles::ALL != 0 {
            return Err(invalid("a staff member needs known roles"));
        }
        if self.staff.len() >= book::STAFF_MAX {
            return Err(invalid("staff members at their maximum"));
        }
        if self.staff.iter().any(|(stored, _)| *stored == username) {
            return Err(Rejection::UsernameTaken);
        }
        self.staff.push((username, false));
        self.staff_roles.push(roles);
        Ok(Ack::StaffCreated(book::StaffId(self.staff.len() as u64)))
    }

    // ---- manual adjustments ------------------------------------------------------------------

    /// A staff member's adjustment limit in base minor units (the widest of their roles').
    fn adjustment_limit(&self, staff: u64) -> Result<i64, Rejection> {
        let index = (staff as usize).wrapping_sub(1);
        let (_, disabled) = self.staff.get(index).ok_or(invalid("unknown staff member"))?;
        let roles = self.staff_roles[index];
        let widest = book::roles::NAMES
            .iter()
            .zip(self.adjustment_limits)
            .filter(|((_, bit), _)| roles & bit != 0)
            .filter_map(|(_, limit)| limit)
            .max();
        match widest {
            Some(limit) if !disabled => Ok(limit),
            _ => Err(Rejection::AdjustmentForbidden),
        }
    }

    fn pending_adjustment(&self, adjustment: u64, account: u64) -> Result<&PendingAdjustment, Rejection> {
        match self.pending_adjustments.get(&adjustment) {
            Some(found) if found.account == account => Ok(found),
            Some(_) => Err(Rejection::UnknownAdjustment),
            None if (1..=self.adjustments_issued).contains(&adjustment) => Err(Rejection::AdjustmentNotPending),
            None => Err(Rejection::UnknownAdjustment),
        }
    }

    fn request_adjustment(&mut self, account: u64, amount: i64, credit: bool, reason: &str, staff: u64) -> Reply {
        let limit = self.adjustment_limit(staff)?;
        if reason.is_empty() || reason.len() > ADJUSTMENT_REASON_BYTES_MAX {
            return Err(invalid("an adjustment's reason is 1 to 500 bytes"));
        }
        if amount <= 0 {
            return Err(invalid("adjustment amount must be positive"));
        }
        let currency = self.player(account)?.currency;
        let in_base = self.rate_now(currency)?.at_risk_in_base(amount, currency);
        let id = self.adjustments_issued + 1;
        if in_base <= limit {
            let transfer = self.post_adjustment(account, amount, credit)?;
            self.adjustments_issued += 1;
            return Ok(Ack::AdjustmentCompleted { adjustment: book::AdjustmentId(id), transfer: TransferId(transfer) });
        }
        if self.pending_adjustments.len() >= ADJUSTMENTS_PENDING_MAX {
            return Err(invalid("pending adjustments at their maximum"));
        }
        self.adjustments_issued += 1;
        let expires_at = self.now + ADJUSTMENT_APPROVAL_MS;
        self.pending_adjustments
            .insert(id, PendingAdjustment { account, amount, credit, requested_by: staff, expires_at });
        Ok(Ack::AdjustmentPending { adjustment: book::AdjustmentId(id), expires_at })
    }

    fn approve_adjustment(&mut self, adjustment: u64, account: u64, staff: u64) -> Reply {
        let found = self.pending_adjustment(adjustment, account)?.clone();
        let limit = self.adjustment_limit(staff)?;
        if found.requested_by == staff {
            return Err(Rejection::SelfApproval);
        }
        let currency = self.player(account)?.currency;
        if self.rate_now(currency)?.at_risk_in_base(found.amount, currency) > limit {
            return Err(Rejection::ApprovalLimit);
        }
        let transfer = self.post_adjustment(account, found.amount, found.credit)?;
        self.pending_adjustments.remove(&adjustment);
        Ok(Ack::AdjustmentCompleted { adjustment: book::AdjustmentId(adjustment), transfer: TransferId(transfer) })
    }

    /// Moves an adjustment between the player's cash and the operator's adjustments bucket.
    fn post_adjustment(&mut self, account: u64, amount: i64, credit: bool) -> Result<u64, Rejection> {
        let player = self.player(account)?;
        let currency = player.currency;
        if credit {
            if player.cash + amount > MONEY_MINOR_MAX {
                return Err(Rejection::AmountTooLarge);
            }
            let id = self.transfer(account, None, TransferCode::AdjustmentCredit, Movement::Posted, amount);
            self.player_mut(account).cash += amount;
            self.system_mut(currency).adjustments -= amount;
            self.repay_debt(account);
            Ok(id)
        } else {
            if player.available() - player.debt < amount {
                return Err(Rejection::InsufficientFunds);
            }
            let id = self.transfer(account, None, TransferCode::AdjustmentDebit, Movement::Posted, amount);
            self.player_mut(account).cash -= amount;
            self.system_mut(currency).adjustments += amount;
            Ok(id)
        }
    }

    /// What a deposit checks, whether it completes at once or waits for the provider.
    fn check_deposit(&self, account: u64, amount: i64, payment_ref: &str) -> Result<Currency, Rejection> {
        let player = self.player(account)?;
        self.may_gamble(player)?;
        if amount <= 0 {
            return Err(invalid("deposit amount out of range"));
        }
        // The cap is in the base currency, converted at the rate now and rounded down.
        let cap = self.rate_now(player.currency)?.limit_in(self.config.deposit_max.minor(), player.currency, false);
        if amount > cap {
            return Err(invalid("deposit amount out of range"));
        }
        if payment_ref.len() > PAYMENT_REF_BYTES_MAX {
            return Err(invalid("payment reference too long"));
        }
        if payment_ref.is_empty() {
            return Err(invalid("payment reference missing"));
        }
        if self.payment_refs.contains(&(account, payment_ref.to_string())) {
            return Err(Rejection::DuplicatePaymentRef);
        }
        if let Some(period) = self.limit_broken(account, LimitKind::Deposit, amount) {
            return Err(Rejection::LimitReached { limit: LimitKind::Deposit, period });
        }
        if let Some(kyc) = self.kyc.get(&account) {
            if let Some(cap) = kyc.deposit_cap {
                if !kyc.verified_at(self.now) && kyc.deposited + amount > cap {
                    return Err(Rejection::KycDepositCap { cap: Money::from_minor(cap) });
                }
            }
        }
        // Deposits still pending count: each may complete.
        if player.cash + player.pending_deposits + amount > MONEY_MINOR_MAX {
            return Err(Rejection::AmountTooLarge);
        }
        Ok(player.currency)
    }

    fn deposit(&mut self, account: u64, amount: i64, payment_ref: &str) -> Reply {
        let currency = self.check_deposit(account, amount, payment_ref)?;
        let id = self.transfer(account, None, TransferCode::Deposit, Movement::Posted, amount);
        self.system_mut(currency).clearing -= amount;
        self.player_mut(account).cash += amount;
        self.payment_refs.insert((account, payment_ref.to_string()));
        self.record_usage(account, amount, 0, 0);
        self.kyc_deposited(account, amount);
        self.repay_debt(account);
        Ok(Ack::Transfer(TransferId(id)))
    }

    fn begin_deposit(&mut self, account: u64, amount: i64, payment_ref: &str) -> Reply {
        self.check_deposit(account, amount, payment_ref)?;
        if self.deposits.values().filter(|deposit| deposit.state == DepositState::Pending).count()
            >= book::DEPOSITS_PENDING_MAX
        {
            return Err(Rejection::PaymentsBusy);
        }
        let id = self.transfer(account, None, TransferCode::Deposit, Movement::Hold, amount);
        self.player_mut(account).pending_deposits += amount;
        self.payment_refs.insert((account, payment_ref.to_string()));
        self.record_usage(account, amount, 0, 0);
        self.kyc_deposited(account, amount);
        let deposit = DepositModel {
            account,
            amount,
            created_at: self.now,
            state: DepositState::Pending,
            resolution: None,
            chargeback: None,
        };
        self.deposits.insert(id, deposit);
        Ok(Ack::Transfer(TransferId(id)))
    }

    /// The provider's word on a deposit, as the rules say: completes or fails a pending one,
    /// charges back a completed one (from free cash, the rest owed), answers a replay with the
    /// first transfer, refuses a contradiction.
    fn settle_deposit(&mut self, account: u64, id: u64, outcome: DepositOutcome) -> Reply {
        use DepositOutcome as O;
        use DepositState as S;
        self.player(account)?;
        let now = self.now;
        let Some(deposit) = self.deposits.get(&id).filter(|deposit| {
            deposit.account == account
                && (deposit.state == S::Pending || deposit.created_at + book::CHARGEBACK_WINDOW_MS > now)
        }) else {
            return Err(Rejection::UnknownPayment);
        };
        let (amount, created_at, state) = (deposit.amount, deposit.created_at, deposit.state);
        let (resolution, chargeback) = (deposit.resolution, deposit.chargeback);
        let currency = self.players[account as usize - 1].currency;
        match (state, outcome) {
            (S::Pending, O::Completed) => {
                let player = self.player(account)?;
                if player.cash + amount > MONEY_MINOR_MAX {
                    return Err(Rejection::AmountTooLarge);
                }
                let transfer = self.transfer(account, None, TransferCode::Deposit, Movement::PostHold, amount);
                let player = self.player_mut(account);
                player.pending_deposits -= amount;
                player.cash += amount;
                self.system_mut(currency).clearing -= amount;
                self.settled(id, S::Completed, transfer);
                self.repay_debt(account);
                Ok(Ack::Transfer(TransferId(transfer)))
            }
            (S::Pending, O::Failed) => {
                let transfer = self.transfer(account, None, TransferCode::Deposit, Movement::VoidHold, amount);
                self.player_mut(account).pending_deposits -= amount;
                self.settled(id, S::Failed, transfer);
                let player = self.player_mut(account);
                for period in PERIODS {
                    let usage = &mut player.usage[period_slot(period)];
                    if period_number(period, created_at) == period_number(period, now)
                        && usage.period == period_number(period, now)
                    {
                        usage.deposited -= amount;
                    }
                }
                self.kyc_deposited(account, -amount);
                Ok(Ack::Transfer(TransferId(transfer)))
            }
            (S::Completed, O::ChargedBack) => {
                let player = self.player(account)?;
                let from_cash = amount.min(player.available().max(0));
                let shortfall = amount - from_cash;
                if player.debt + shortfall > MONEY_MINOR_MAX {
                    return Err(Rejection::AmountTooLarge);
                }
                let mut first = None;
                if from_cash > 0 {
                    first = Some(self.transfer(account, None, TransferCode::Chargeback, Movement::Posted, from_cash));
                    self.player_mut(account).cash -= from_cash;
                }
                if shortfall > 0 {
                    let transfer =
                        self.transfer(account, None, TransferCode::ChargebackDebt, Movement::Posted, shortfall);
                    first.get_or_insert(transfer);
                    self.player_mut(account).debt += shortfall;
                }
                self.system_mut(currency).clearing += amount;
                let first = first.expect("a deposit is positive");
                if let Some(found) = self.deposits.get_mut(&id) {
                    found.state = S::ChargedBack;
                    found.chargeback = Some(first);
                }
                Ok(Ack::Transfer(TransferId(first)))
            }
            (S::Completed | S::ChargedBack, O::Completed) | (S::Failed, O::Failed) => {
                resolution.map(|transfer| Ack::Transfer(TransferId(transfer))).ok_or(Rejection::UnknownPayment)
            }
            (S::ChargedBack, O::ChargedBack) => {
                chargeback.map(|transfer| Ack::Transfer(TransferId(transfer))).ok_or(Rejection::UnknownPayment)
            }
            _ => Err(Rejection::PaymentConflict),
        }
    }

    fn settled(&mut self, id: u64, state: DepositState, resolution: u64) {
        if let Some(found) = self.deposits.get_mut(&id) {
            found.state = state;
            found.resolution = Some(resolution);
        }
    }

    /// Tracks a player under a jurisdiction's rules, or replaces their rules.
    fn set_kyc_rules(&mut self, account: u64, rules: KycRules) -> Reply {
        self.player(account)?;
        let negative = [rules.deposit_cap, rules.reverify_above].into_iter().flatten().any(|cap| cap.minor() < 0);
        if negative || rules.expiry_ms == Some(0) {
            return Err(invalid("kyc rules out of range"));
        }
        let kyc = self.kyc.entry(account).or_insert_with(|| KycModel::fresh(self.now));
        kyc.deposit_cap = rules.deposit_cap.map(|cap| cap.minor());
        kyc.reverify_above = rules.reverify_above.map(|cap| cap.minor());
        kyc.expiry_ms = rules.expiry_ms;
        Ok(Ack::Done)
    }

    /// A verification's new state: the same state again (same or no reference) is a replay;
    /// `expired` only from a verification; everything else goes.
    fn set_kyc_state(&mut self, account: u64, state: KycState, reference: Option<&str>) -> Reply {
        self.player(account)?;
        if reference.is_some_and(|reference| reference.is_empty() || reference.len() > 128) {
            return Err(invalid("kyc reference must be 1 to 128 bytes"));
        }
        let now = self.now;
        let kyc = self.kyc.entry(account).or_insert_with(|| KycModel::fresh(now));
        let current = kyc.state_at(now);
        if current == state && reference.is_none_or(|reference| kyc.reference.as_deref() == Some(reference)) {
            return Ok(Ack::Done);
        }
        if state == KycState::Expired && current != KycState::Verified && current != KycState::Expired {
            return Err(Rejection::KycConflict);
        }
        kyc.state = state;
        kyc.since = now;
        if reference.is_some() {
            kyc.reference = reference.map(str::to_string);
        }
        if state == KycState::Verified {
            kyc.deposited_when_verified = kyc.deposited;
        }
        Ok(Ack::Done)
    }

    /// Lifetime deposits of a tracked player; crossing the re-verification threshold after a
    /// verification below it asks for a new one.
    fn kyc_deposited(&mut self, account: u64, amount: i64) {
        let now = self.now;
        let Some(kyc) = self.kyc.get_mut(&account) else { return };
        kyc.deposited = (kyc.deposited + amount).max(0);
        if let Some(threshold) = kyc.reverify_above {
            if kyc.verified_at(now) && kyc.deposited_when_verified <= threshold && kyc.deposited > threshold {
                kyc.state = KycState::Pending;
                kyc.since = now;
            }
        }
    }

    fn withdraw(&mut self, account: u64, amount: i64) -> Reply {
        let player = self.player(account)?;
        // A time-out or self-exclusion does not keep a player from their money; a freeze does.
        if player.frozen {
            return Err(Rejection::AccountFrozen);
        }
        if amount <= 0 {
            return Err(invalid("withdrawal amount must be positive"));
        }
        if self.kyc.get(&account).is_some_and(|kyc| !kyc.verified_at(self.now)) {
            return Err(Rejection::KycRequired);
        }
        // Money owed to the house is not the player's to withdraw.
        if player.available() - player.debt < amount {
            return Err(Rejection::InsufficientFunds);
        }
        let id = self.transfer(account, None, TransferCode::Withdrawal, Movement::Hold, amount);
        self.player_mut(account).pending_withdrawals += amount;
        self.withdrawals.insert(id, WithdrawalModel { account, amount, open: true, approved: false });
        Ok(Ack::Transfer(TransferId(id)))
    }

    fn complete_withdrawal(&mut self, account: u64, withdrawal: u64, paid: bool) -> Reply {
        let player = self.player(account)?;
        let currency = player.currency;
        let amount = match self.withdrawals.get(&withdrawal) {
            Some(found) if found.account == account && found.open => found.amount,
            _ => return Err(Rejection::UnknownWithdrawal),
        };
        let movement = if paid { Movement::PostHold } else { Movement::VoidHold };
        let id = self.transfer(account, None, TransferCode::Withdrawal, movement, amount);
        if let Some(found) = self.withdrawals.get_mut(&withdrawal) {
            found.open = false;
            found.approved = false;
        }
        let player = self.player_mut(account);
        player.pending_withdrawals -= amount;
        if paid {
            player.cash -= amount;
            self.system_mut(currency).clearing += amount;
        } else {
            // The money is the player's again, and what they owe is paid from it first.
            self.repay_debt(account);
        }
        Ok(Ack::Transfer(TransferId(id)))
    }

    fn set_limits(&mut self, account: u64, changes: &[LimitChange]) -> Reply {
        self.player(account)?;
        if changes.len() > 9 {
            return Err(invalid("too many limit changes"));
        }
        if changes.iter().any(|change| change.value.is_some_and(|value| value.minor() < 0)) {
            return Err(invalid("limits cannot be negative"));
        }
        let now = self.now;
        let cooling_off = self.config.limit_increase_cooling_off_ms;
        let player = self.player_mut(account);
        for change in changes {
            let limit = &mut player.limits[kind_slot(change.kind)][period_slot(change.period)];
            // A loosening whose cooling-off has ended is simply the limit now.
            if let Some((value, from)) = limit.pending {
                if now >= from {
                    limit.current = value;
                    limit.pending = None;
                }
            }
            let new = change.value.map(Money::minor);
            let tightens = match (limit.current, new) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(current), Some(new)) => new <= current,
            };
            if tightens {
                // Tighter at once, and a loosening on its way is dropped.
                limit.current = new;
                limit.pending = None;
            } else if new != limit.current {
                limit.pending = Some((new, now + cooling_off));
            }
        }
        Ok(Ack::Done)
    }

    // ---- catalog -------------------------------------------------------------------------------

    fn create_event(&mut self, name: &str, sport: &str, competition: &str, starts_at: u64) -> Reply {
        if !name_ok(name) || !name_ok(sport) || competition.len() > NAME_BYTES_MAX {
            return Err(invalid("names are 1 to 200 bytes"));
        }
        let id = self.events.len() as u64 + 1;
        let event = EventModel {
            id,
            starts_at,
            state: EventState::Scheduled,
            delay_seconds: 0,
            markets: Vec::new(),
            feed: None,
        };
        self.events.push(event);
        Ok(Ack::EventCreated(EventId(id)))
    }

    fn create_market(
        &mut self,
        event: u64,
        name: &str,
        kind: &str,
        selections: &[NewSelection],
        each_way: Option<EachWayTerms>,
    ) -> Reply {
        let found = self.event(event).ok_or(Rejection::UnknownEvent)?;
        if found.state == EventState::Ended {
            return Err(invalid("event has ended"));
        }
        if found.markets.len() >= MARKETS_PER_EVENT_MAX {
            return Err(invalid("event has too many markets"));
        }
        if !name_ok(name) || kind.len() > NAME_BYTES_MAX {
            return Err(invalid("names are 1 to 200 bytes"));
        }
        if selections.is_empty() || selections.len() > SELECTIONS_MAX {
            return Err(invalid("a market has 1 to 64 selections"));
        }
        if !selections.iter().all(|selection| name_ok(&selection.name)) {
            return Err(invalid("names are 1 to 200 bytes"));
        }
        if each_way.is_some_and(|terms| {
            terms.places == 0 || terms.fraction.num() == 0 || terms.fraction.num() > terms.fraction.den()
        }) {
            return Err(invalid("each-way terms need places and a fraction in (0, 1]"));
        }
        let in_play = found.state == EventState::InPlay;
        let id = self.markets.len() as u64 + 1;
        let mut ids = Vec::new();
        for selection in selections {
            let selection_id = self.selections.len() as u64 + 1;
            self.selections.push(SelectionModel {
                id: selection_id,
                market: id,
                price: selection.price.scaled(),
                version: 1,
                liability: 0,
                by_currency: BTreeMap::new(),
            });
            ids.push(SelectionId(selection_id));
        }
        self.markets.push(MarketModel {
            id,
            event,
            status: MarketStatus::Open,
            in_play,
            selections: ids.iter().map(|selection| selection.0).collect(),
            each_way,
            risk: MarketRisk::default(),
            settlement_version: 0,
            results: Vec::new(),
            bets: Vec::new(),
        });
        self.events[event as usize - 1].markets.push(id);
        Ok(Ack::MarketCreated { market: MarketId(id), selections: ids })
    }

    fn set_prices(&mut self, market: u64, prices: &[(SelectionId, Odds)]) -> Reply {
        let found = self.market(market).ok_or(Rejection::UnknownMarket)?;
        if found.is_resulted() {
            return Err(Rejection::MarketClosed);
        }
        if prices.len() > SELECTIONS_MAX {
            return Err(invalid("too many prices"));
        }
        if !prices.iter().all(|(selection, _)| found.selections.contains(&selection.0)) {
            return Err(Rejection::SelectionUnavailable);
        }
        for (selection, price) in prices {
            let selection = &mut self.selections[selection.0 as usize - 1];
            if selection.price != price.scaled() {
                selection.price = price.scaled();
                selection.version += 1;
            }
        }
        Ok(Ack::Done)
    }

    fn set_market_status(&mut self, market: u64, action: MarketAction) -> Reply {
        let found = self.market(market).ok_or(Rejection::UnknownMarket)?;
        if matches!(found.status, MarketStatus::Closed | MarketStatus::Settled | MarketStatus::Voided) {
            // Closed is final until resulted; closing again is harmless.
            return if action == MarketAction::Close { Ok(Ack::Done) } else { Err(Rejection::MarketClosed) };
        }
        self.market_mut(market).status = match action {
            MarketAction::Suspend => MarketStatus::Suspended,
            MarketAction::Resume => MarketStatus::Open,
            MarketAction::Close => MarketStatus::Closed,
        };
        Ok(Ack::Done)
    }

    fn set_market_risk(&mut self, market: u64, change: &MarketRiskChange) -> Reply {
        self.market(market).ok_or(Rejection::UnknownMarket)?;
        let amounts = [
            change.max_stake,
            change.liability_cap,
            change.selection_liability_cap,
            change.suspend_at_liability,
            change.max_payout,
        ];
        if amounts.iter().any(|value| value.flatten().is_some_and(|money| money.minor() < 0)) {
            return Err(invalid("risk settings cannot be negative"));
        }
        if change.in_play_delay_seconds.flatten().is_some_and(|seconds| seconds > DELAY_SECONDS_MAX) {
            return Err(invalid("bet delay above 60 seconds"));
        }
        let risk = &mut self.market_mut(market).risk;
        if let Some(value) = change.max_stake {
            risk.max_stake = value;
        }
        if let Some(value) = change.liability_cap {
            risk.liability_cap = value;
        }
        if let Some(value) = change.selection_liability_cap {
            risk.selection_liability_cap = value;
        }
        if let Some(value) = change.suspend_at_liability {
            risk.suspend_at_liability = value;
        }
        if let Some(value) = change.max_payout {
            risk.max_payout = value;
        }
        if let Some(value) = change.in_play_delay_seconds {
            risk.in_play_delay_seconds = value;
        }
        Ok(Ack::Done)
    }

    // ---- placement -------------------------------------------------------------------------

    /// Binds a requested leg to the price on offer now, under the bettor's price policy.
    fn bind_leg(
        &self,
        selection: u64,
        requested: u32,
        policy: PricePolicy,
        each_way: bool,
    ) -> Result<LegModel, Rejection> {
        let found = self.selection(selection).ok_or(Rejection::SelectionUnavailable)?;
        self.market_open(found.market)?;
        if self.feed.inactive.contains(&selection) {
            return Err(Rejection::SelectionUnavailable);
        }
        if self.feed.in_window(found.market, self.now) {
            // A bet placed now would be void at once: a cancellation window is open-ended.
            return Err(Rejection::MarketSuspended);
        }
        let market = &self.markets[found.market as usize - 1];
        if each_way && market.each_way.is_none() {
            return Err(Rejection::InvalidBet { reason: "market has no each-way terms" });
        }
        let acceptable = found.price == requested
            || match policy {
                PricePolicy::None => false,
                PricePolicy::Better => found.price > requested,
                PricePolicy::Any => true,
            };
        if !acceptable {
            return Err(Rejection::PriceChanged {
                selection: SelectionId(found.id),
                current_price: Odds::from_scaled(found.price).expect("prices on offer are valid odds"),
            });
        }
        Ok(LegModel {
            selection: found.id,
            market: found.market,
            event: market.event,
            requested,
            odds: found.price,
            version: found.version,
            terms: if each_way { market.each_way } else { None },
        })
    }

    fn max_stake(&self, legs: &[LegModel], factor: Ratio, fx: &RateModel, currency: Currency) -> i64 {
        let default = self.config.max_stake.minor();
        let market_max = legs
            .iter()
            .map(|leg| self.markets[leg.market as usize - 1].risk.max_stake.map_or(default, Money::minor))
            .min()
            .unwrap_or(default);
        let market_max = fx.limit_in(market_max, currency, false);
        let scaled = i128::from(market_max) * i128::from(factor.num()) / i128::from(factor.den());
        scaled.min(i128::from(MONEY_MINOR_MAX)) as i64
    }

    fn max_payout(&self, legs: &[LegModel], fx: &RateModel, currency: Currency) -> i64 {
        let default = self.config.max_payout.minor();
        let base = legs
            .iter()
            .map(|leg| self.markets[leg.market as usize - 1].risk.max_payout.map_or(default, Money::minor))
            .min()
            .unwrap_or(default);
        fx.limit_in(base, currency, false)
    }

    /// Whether adding `liability` would break a selection or market cap. Beyond the money
    /// maximum no cap can be checked, so such liability is refused too.
    /// Caps are in the base currency and compared with base liabilities; the bettor's own
    /// currency total must stay representable too.
    fn liability_fits(
        &self,
        legs: &[LegModel],
        liability: &[i64],
        fx: &RateModel,
        currency: Currency,
    ) -> Result<(), Rejection> {
        for (leg, &added) in legs.iter().zip(liability) {
            if added <= 0 {
                continue;
            }
            let selection = &self.selections[leg.selection as usize - 1];
            let after = i128::from(selection.liability) + i128::from(fx.at_risk_in_base(added, currency));
            let own_after = i128::from(selection.by_currency.get(&currency).copied().unwrap_or(0)) + i128::from(added);
            let risk = &self.markets[leg.market as usize - 1].risk;
            let over = |cap: Option<Money>| cap.is_some_and(|cap| after > i128::from(cap.minor()));
            let too_large = after >= i128::from(MONEY_MINOR_MAX) || own_after >= i128::from(MONEY_MINOR_MAX);
            if too_large || over(risk.selection_liability_cap) || over(risk.liability_cap) {
                return Err(Rejection::LiabilityLimit);
            }
        }
        Ok(())
    }

    /// Counts an open bet's liability on its selections; a market whose threshold is reached
    /// suspends itself.
    fn open_liability(&mut self, bet: u64, liability: Vec<i64>) {
        let found = &self.bets[bet as usize - 1];
        let legs: Vec<(u64, u64)> = found.legs.iter().map(|leg| (leg.selection, leg.market)).collect();
        let (fx, currency) = (found.fx, self.players[found.account as usize - 1].currency);
        let liability_base: Vec<i64> = liability.iter().map(|&added| fx.at_risk_in_base(added, currency)).collect();
        let mut to_suspend = Vec::new();
        for ((&(selection, market), &added), &added_base) in legs.iter().zip(&liability).zip(&liability_base) {
            let selection = &mut self.selections[selection as usize - 1];
            selection.liability += added_base;
            add_by_currency(&mut selection.by_currency, currency, added);
            let market_found = &self.markets[market as usize - 1];
            let threshold = market_found.risk.suspend_at_liability;
            if market_found.status == MarketStatus::Open
                && threshold.is_some_and(|at| selection.liability >= at.minor())
            {
                to_suspend.push(market);
            }
        }
        for market in to_suspend {
            self.market_mut(market).status = MarketStatus::Suspended;
        }
        let found = self.bet_mut(bet);
        found.liability = liability;
        found.liability_base = liability_base;
    }

    fn close_liability(&mut self, bet: u64) {
        let found = &mut self.bets[bet as usize - 1];
        let liability = std::mem::take(&mut found.liability);
        let liability_base = std::mem::take(&mut found.liability_base);
        let account = found.account;
        let selections: Vec<u64> = found.legs.iter().map(|leg| leg.selection).collect();
        let currency = self.players[account as usize - 1].currency;
        for ((selection, removed), removed_base) in selections.into_iter().zip(liability).zip(liability_base) {
            let selection = &mut self.selections[selection as usize - 1];
            selection.liability -= removed_base;
            add_by_currency(&mut selection.by_currency, currency, -removed);
        }
    }

    /// The operator's table, replaced whole; the base is fixed once a market exists.
    fn set_fx_rates(&mut self, base: Currency, rates: &[(Currency, ExchangeRate)]) -> Reply {
        if rates.len() > 64 {
            return Err(invalid("too many exchange rates"));
        }
        if rates.iter().any(|(currency, _)| *currency == base) {
            return Err(invalid("the base currency has no rate"));
        }
        let table: BTreeMap<Currency, ExchangeRate> = rates.iter().copied().collect();
        if table.len() != rates.len() {
            return Err(invalid("a currency has two rates"));
        }
        if base != self.fx.base && !self.markets.is_empty() {
            return Err(invalid("the base currency is fixed once a market exists"));
        }
        self.fx = FxModel { base, version: self.fx.version + 1, set_at: self.now, rates: table };
        Ok(Ack::Done)
    }

    /// The rate a bet in `currency` converts with now; none for a currency without a rate.
    fn rate_now(&self, currency: Currency) -> Result<RateModel, Rejection> {
        let rate = if currency == self.fx.base {
            ExchangeRate::ONE
        } else {
            *self.fx.rates.get(&currency).ok_or(Rejection::FxRateMissing)?
        };
        Ok(RateModel { base: self.fx.base, version: self.fx.version, rate })
    }

    fn place_bet(&mut self, place: &PlaceBet) -> Reply {
        let account = place.account.0;
        let player = self.player(account)?;
        self.may_gamble(player)?;
        if self.reality.get(&account).is_some_and(|(_, next)| next.is_none()) {
            return Err(Rejection::RealityCheckDue);
        }
        let leg_count_fits = match place.kind {
            BetKind::Single => place.legs.len() == 1,
            BetKind::Multiple => (2..=LEGS_MAX).contains(&place.legs.len()),
            BetKind::System(system) => place.legs.len() == system_legs(system),
        };
        if !leg_count_fits {
            return Err(Rejection::InvalidBet { reason: "wrong number of legs for the bet type" });
        }
        if place.stake.minor() <= 0 {
            return Err(Rejection::InvalidBet { reason: "stake must be positive" });
        }
        let mut legs: Vec<LegModel> = Vec::new();
        for LegRequest { selection, price } in &place.legs {
            let leg = self.bind_leg(selection.0, price.scaled(), place.policy, place.each_way)?;
            if legs.iter().any(|other| other.event == leg.event) {
                return Err(Rejection::InvalidBet { reason: "two legs on the same event" });
            }
            legs.push(leg);
        }
        let currency = player.currency;
        let fx = self.rate_now(currency)?;
        let stake = place.stake.minor();
        let min_stake = fx.limit_in(self.config.min_stake.minor(), currency, true);
        if stake < min_stake {
            return Err(Rejection::StakeTooLow { min_stake: Money::from_minor(min_stake) });
        }
        let max_stake = self.max_stake(&legs, player.stake_factor, &fx, currency);
        if stake > max_stake {
            return Err(Rejection::StakeTooHigh { max_stake: Money::from_minor(max_stake) });
        }
        let line_count = bet_lines(place.kind, legs.len(), place.each_way).len() as u32;
        let total_stake = i128::from(stake) * i128::from(line_count);
        if total_stake > i128::from(MONEY_MINOR_MAX) {
            // The offer keeps the total across the lines within the money range too.
            let offered = max_stake.min(MONEY_MINOR_MAX / i64::from(line_count));
            return Err(Rejection::StakeTooHigh { max_stake: Money::from_minor(offered) });
        }
        let total_stake = total_stake as i64;
        let pricing = price(place.kind, &legs, place.each_way, stake);
        let max_payout = self.max_payout(&legs, &fx, currency);
        let fits = |potential: i64| potential <= max_payout && potential < MONEY_MINOR_MAX;
        if !fits(pricing.potential) {
            // The offer is the largest stake per line that would pass this check: found here by
            // halving the range below the refused stake, since payouts never fall as stakes grow.
            let (mut low, mut high) = (0i64, stake);
            while high - low > 1 {
                let middle = low + (high - low) / 2;
                if fits(price(place.kind, &legs, place.each_way, middle).potential) {
                    low = middle;
                } else {
                    high = middle;
                }
            }
            return Err(Rejection::StakeTooHigh { max_stake: Money::from_minor(low) });
        }
        for kind in [LimitKind::Stake, LimitKind::Loss] {
            if let Some(period) = self.limit_broken(account, kind, total_stake) {
                return Err(Rejection::LimitReached { limit: kind, period });
            }
        }
        if player.available() < total_stake {
            return Err(Rejection::InsufficientFunds);
        }
        self.liability_fits(&legs, &pricing.liability, &fx, currency)?;

        let id = self.bets.len() as u64 + 1;
        self.transfer(account, Some(id), TransferCode::Stake, Movement::Hold, total_stake);
        self.player_mut(account).pending_stakes += total_stake;
        let delay_seconds = legs
            .iter()
            .map(|leg| {
                let market = &self.markets[leg.market as usize - 1];
                if market.in_play {
                    market.risk.in_play_delay_seconds.unwrap_or(self.events[market.event as usize - 1].delay_seconds)
                } else {
                    0
                }
            })
            .max()
            .unwrap_or(0);
        let (status, delay_until) = if delay_seconds > 0 {
            (BetStatus::Pending, Some(self.now + u64::from(delay_seconds) * 1_000))
        } else {
            (BetStatus::Accepted, None)
        };
        for leg in &legs {
            self.market_mut(leg.market).bets.push(id);
        }
        self.bets.push(BetModel {
            id,
            account,
            kind: place.kind,
            legs,
            each_way: place.each_way,
            policy: place.policy,
            stake_per_line: stake,
            line_count,
            total_stake,
            potential_payout: pricing.potential,
            status,
            placed_at: self.now,
            delay_until,
            payout: None,
            settlements: 0,
            rejection: None,
            quote: None,
            liability: Vec::new(),
            liability_base: Vec::new(),
            fx,
        });
        self.record_usage(account, 0, total_stake, total_stake);
        self.open_liability(id, pricing.liability);
        if let Some(due) = delay_until {
            self.delayed.insert((due, id));
        }
        self.bet_change(BetChange::Placed { bet: BetId(id), account: AccountId(account), status });
        Ok(Ack::BetPlaced { bet: BetId(id), status })
    }

    /// An in-play delay has ended: the bet stands at the prices on offer now if every market is
    /// still open, every price still satisfies its policy and its risk still fits.
    fn end_delay(&mut self, bet: u64) {
        let found = &self.bets[bet as usize - 1];
        if found.status != BetStatus::Pending {
            return;
        }
        let (policy, each_way, kind, stake) = (found.policy, found.each_way, found.kind, found.stake_per_line);
        let requests: Vec<(u64, u32)> = found.legs.iter().map(|leg| (leg.selection, leg.requested)).collect();
        let mut rebound = Vec::new();
        for (selection, requested) in requests {
            match self.bind_leg(selection, requested, policy, each_way) {
                Ok(leg) => rebound.push(leg),
                Err(rejection) => {
                    self.close_liability(bet);
                    return self.reject(bet, rejection);
                }
            }
        }
        self.close_liability(bet);
        let pricing = price(kind, &rebound, each_way, stake);
        // The same payout bounds as placement, with the rate of the placement, which refuses a
        // potential payout at the money maximum (it may be a saturated one) as well as one over
        // the market's cap.
        let found = &self.bets[bet as usize - 1];
        let (fx, currency) = (found.fx, self.players[found.account as usize - 1].currency);
        let over_cap =
            pricing.potential > self.max_payout(&rebound, &fx, currency) || pricing.potential >= MONEY_MINOR_MAX;
        let verdict = if over_cap {
            Err(Rejection::StakeTooHigh { max_stake: Money::from_minor(stake) })
        } else {
            self.liability_fits(&rebound, &pricing.liability, &fx, currency)
        };
        if let Err(rejection) = verdict {
            return self.reject(bet, rejection);
        }
        let found = self.bet_mut(bet);
        found.legs = rebound;
        found.potential_payout = pricing.potential;
        found.status = BetStatus::Accepted;
        found.delay_until = None;
        let account = found.account;
        self.open_liability(bet, pricing.liability);
        self.bet_change(BetChange::Changed {
            bet: BetId(bet),
            account: AccountId(account),
            status: BetStatus::Accepted,
            payout: 0,
        });
    }

    /// Rejects a pending bet whose liability is already released: its stake is free again and
    /// no longer counts towards the limits of periods still current.
    fn reject(&mut self, bet: u64, rejection: Rejection) {
        let now = self.now;
        let found = self.bet_mut(bet);
        found.status = BetStatus::Rejected;
        found.rejection = Some(rejection.code());
        let due = found.delay_until.take();
        let (account, stake, placed_at) = (found.account, found.total_stake, found.placed_at);
        if let Some(due) = due {
            self.delayed.remove(&(due, bet));
        }
        self.transfer(account, Some(bet), TransferCode::Stake, Movement::VoidHold, stake);
        self.player_mut(account).pending_stakes -= stake;
        // The stake is free again, and pays a debt first.
        self.repay_debt(account);
        let player = self.player_mut(account);
        for period in PERIODS {
            if period_number(period, placed_at) == period_number(period, now) {
                let usage = &mut player.usage[period_slot(period)];
                usage.staked -= stake;
                usage.net_loss -= stake;
            }
        }
        self.bet_change(BetChange::Changed {
            bet: BetId(bet),
            account: AccountId(account),
            status: BetStatus::Rejected,
            payout: 0,
        });
    }

    // ---- settlement ------------------------------------------------------------------------

    /// What a leg of a bet placed at `placed_at` is resulted with: void inside a cancellation
    /// window of its market, else its selection's result while the market is resulted.
    fn leg_result(&self, placed_at: u64, leg: &LegModel) -> Option<ResultModel> {
        if self.feed.in_window(leg.market, placed_at) {
            return Some(ResultModel {
                selection: leg.selection,
                outcome: Outcome::Void,
                dead_heat: Ratio::ONE,
                void_factor: Ratio::ZERO,
            });
        }
        let market = &self.markets[leg.market as usize - 1];
        if !market.is_resulted() {
            return None;
        }
        market.results.iter().find(|result| result.selection == leg.selection).copied()
    }

    /// Settles an accepted bet if its results decide it; returns whether it settled.
    fn try_settle(&mut self, bet: u64) -> bool {
        match self.decision(bet) {
            Some((amount, status)) => {
                self.pay(bet, amount, status);
                true
            }
            None => false,
        }
    }

    /// What the results in force decide for an accepted bet: its payout and status, or `None`
    /// while they decide nothing yet.
    fn decision(&self, bet: u64) -> Option<(i64, BetStatus)> {
        let found = &self.bets[bet as usize - 1];
        if found.status != BetStatus::Accepted {
            return None;
        }
        let results: Vec<Option<ResultModel>> =
            found.legs.iter().map(|leg| self.leg_result(found.placed_at, leg)).collect();
        let all_resulted = results.iter().all(Option::is_some);
        // A single or multiple with a leg that pays nothing in any part has lost already.
        let lost_already = !matches!(found.kind, BetKind::System(_))
            && found.legs.iter().zip(&results).any(|(leg, result)| {
                result.is_some_and(|result| {
                    leg_factor(&result, leg.odds, None, false).is_zero()
                        && (!found.each_way || leg_factor(&result, leg.odds, leg.terms, true).is_zero())
                })
            });
        if !all_resulted && !lost_already {
            return None;
        }
        let amount = if lost_already {
            0
        } else {
            let mut total = 0i64;
            for (members, is_place) in bet_lines(found.kind, found.legs.len(), found.each_way) {
                let factors: Vec<Fraction> = members
                    .iter()
                    .map(|&index| {
                        let leg = &found.legs[index];
                        let result = results[index].expect("every leg is resulted");
                        leg_factor(&result, leg.odds, leg.terms, is_place)
                    })
                    .collect();
                total += payout(found.stake_per_line, &factors);
            }
            total
        };
        let status = if lost_already && !all_resulted {
            BetStatus::Lost
        } else if results.iter().all(|result| result.is_some_and(|result| result.outcome == Outcome::Void)) {
            BetStatus::Void
        } else if found.kind == BetKind::Single
            && !found.each_way
            && results[0].is_some_and(|result| !result.void_factor.is_zero() && result.void_factor != Ratio::ONE)
        {
            // An Asian quarter line: half the stake refunded, the other half won or lost.
            if amount > found.total_stake {
                BetStatus::HalfWon
            } else {
                BetStatus::HalfLost
            }
        } else if amount == 0 {
            BetStatus::Lost
        } else {
            BetStatus::Won
        };
        Some((amount, status))
    }

    /// Ends an open bet by result or cash-out: the stake goes to the house, the payout to the
    /// player.
    fn pay(&mut self, bet: u64, amount: i64, status: BetStatus) {
        self.close_liability(bet);
        let found = &self.bets[bet as usize - 1];
        let (account, stake) = (found.account, found.total_stake);
        let currency = self.players[account as usize - 1].currency;
        self.transfer(account, Some(bet), TransferCode::Stake, Movement::PostHold, stake);
        let player = self.player_mut(account);
        player.pending_stakes -= stake;
        player.cash -= stake;
        self.system_mut(currency).house += stake;
        if amount > 0 {
            let code = if status == BetStatus::CashedOut { TransferCode::Cashout } else { TransferCode::Payout };
            self.transfer(account, Some(bet), code, Movement::Posted, amount);
            self.player_mut(account).cash += amount;
            self.system_mut(currency).house -= amount;
        }
        let found = self.bet_mut(bet);
        found.status = status;
        found.payout = Some(amount);
        found.settlements += 1;
        found.quote = None;
        self.record_usage(account, 0, 0, -amount);
        self.repay_debt(account);
        self.bet_change(BetChange::Changed { bet: BetId(bet), account: AccountId(account), status, payout: amount });
    }

    /// Undoes a settlement: the payout comes back (from cash, the rest as debt), the stake is
    /// returned and held again, and the bet is open once more.
    fn reverse(&mut self, bet: u64) {
        let found = self.bet_mut(bet);
        let amount = found.payout.take().unwrap_or(0);
        let (account, stake) = (found.account, found.total_stake);
        let currency = self.players[account as usize - 1].currency;
        if amount > 0 {
            let from_cash = amount.min(self.players[account as usize - 1].available().max(0));
            let shortfall = amount - from_cash;
            if from_cash > 0 {
                self.transfer(account, Some(bet), TransferCode::PayoutReversal, Movement::Posted, from_cash);
                self.player_mut(account).cash -= from_cash;
            }
            if shortfall > 0 {
                self.transfer(account, Some(bet), TransferCode::DebtRecognised, Movement::Posted, shortfall);
                self.player_mut(account).debt += shortfall;
            }
            self.system_mut(currency).house += amount;
        }
        self.transfer(account, Some(bet), TransferCode::StakeReversal, Movement::Posted, stake);
        self.transfer(account, Some(bet), TransferCode::Stake, Movement::Hold, stake);
        self.system_mut(currency).house -= stake;
        let player = self.player_mut(account);
        player.cash += stake;
        player.pending_stakes += stake;
        let found = self.bet_mut(bet);
        found.status = BetStatus::Accepted;
        let (kind, each_way, stake_per_line) = (found.kind, found.each_way, found.stake_per_line);
        self.record_usage(account, 0, 0, amount);
        let pricing = price(kind, &self.bets[bet as usize - 1].legs, each_way, stake_per_line);
        self.open_liability(bet, pricing.liability);
        self.bet_change(BetChange::Changed {
            bet: BetId(bet),
            account: AccountId(account),
            status: BetStatus::Accepted,
            payout: 0,
        });
    }

    fn settle_market(&mut self, market: u64, requests: &[ResultRequest]) -> Reply {
        let found = self.market(market).ok_or(Rejection::UnknownMarket)?;
        if requests.len() > SELECTIONS_MAX {
            return Err(invalid("too many results"));
        }
        let mut results: Vec<ResultModel> = found
            .selections
            .iter()
            .map(|&selection| ResultModel {
                selection,
                outcome: Outcome::Lose,
                dead_heat: Ratio::ONE,
                void_factor: Ratio::ZERO,
            })
            .collect();
        for request in requests {
            let slot = results
                .iter_mut()
                .find(|result| result.selection == request.selection.0)
                .ok_or(Rejection::SelectionUnavailable)?;
            let dead_heat = request.dead_heat.unwrap_or(Ratio::ONE);
            let void_factor = request.void_factor.unwrap_or(Ratio::ZERO);
            let dead_heat_ok = dead_heat.num() > 0 && dead_heat.num() <= dead_heat.den();
            if !dead_heat_ok || void_factor.num() > void_factor.den() {
                return Err(invalid("dead-heat factor must be in (0, 1] and void factor in [0, 1]"));
            }
            if request.outcome == Outcome::Place && found.each_way.is_none() {
                return Err(invalid("place results need each-way terms"));
            }
            *slot = ResultModel { selection: request.selection.0, outcome: request.outcome, dead_heat, void_factor };
        }
        let distinct: BTreeSet<u64> = requests.iter().map(|request| request.selection.0).collect();
        if distinct.len() != requests.len() {
            return Err(invalid("a selection is resulted twice"));
        }
        match found.status {
            MarketStatus::Settled if found.results == results => return Ok(Ack::Settled { bets: 0 }),
            MarketStatus::Settled | MarketStatus::Voided => return Err(Rejection::AlreadySettled),
            _ => {}
        }
        self.check_results_fit(market, &results, MarketStatus::Settled)?;
        Ok(Ack::Settled { bets: self.apply_results(market, results, MarketStatus::Settled) })
    }

    fn void_market(&mut self, market: u64) -> Reply {
        let found = self.market(market).ok_or(Rejection::UnknownMarket)?;
        match found.status {
            MarketStatus::Voided => return Ok(Ack::Settled { bets: 0 }),
            MarketStatus::Settled => return Err(Rejection::AlreadySettled),
            _ => {}
        }
        let results: Vec<ResultModel> = found
            .selections
            .iter()
            .map(|&selection| ResultModel {
                selection,
                outcome: Outcome::Void,
                dead_heat: Ratio::ONE,
                void_factor: Ratio::ZERO,
            })
            .collect();
        self.check_results_fit(market, &results, MarketStatus::Voided)?;
        Ok(Ack::Settled { bets: self.apply_results(market, results, MarketStatus::Voided) })
    }

    /// Refuses results under which some player's cash would end past the money maximum, not
    /// counting what it repays of a debt: the market is resulted for a moment, each open bet's
    /// decision read, and the market put back as it was.
    fn check_results_fit(
        &mut self,
        market: u64,
        results: &[ResultModel],
        status: MarketStatus,
    ) -> Result<(), Rejection> {
        let found = self.market_mut(market);
        let saved =
            (std::mem::replace(&mut found.results, results.to_vec()), std::mem::replace(&mut found.status, status));
        let bets = found.bets.clone();
        let mut change: BTreeMap<u64, i128> = BTreeMap::new();
        for bet in bets {
            if let Some((amount, _)) = self.decision(bet) {
                let found = &self.bets[bet as usize - 1];
                *change.entry(found.account).or_default() += i128::from(amount) - i128::from(found.total_stake);
            }
        }
        let found = self.market_mut(market);
        (found.results, found.status) = saved;
        let over = change.into_iter().any(|(account, change)| {
            i128::from(self.players[account as usize - 1].cash) + change > i128::from(MONEY_MINOR_MAX)
        });
        if over {
            return Err(Rejection::AmountTooLarge);
        }
        Ok(())
    }

    /// Results a market and settles every bet they decide, oldest first. A bet still in its
    /// in-play delay never stands.
    fn apply_results(&mut self, market: u64, results: Vec<ResultModel>, status: MarketStatus) -> u32 {
        let found = self.market_mut(market);
        found.settlement_version += 1;
        found.results = results;
        found.status = status;
        let bets = found.bets.clone();
        let mut settled = 0;
        for bet in bets {
            if self.bets[bet as usize - 1].status == BetStatus::Pending {
                self.close_liability(bet);
                self.reject(bet, Rejection::MarketClosed);
            } else if self.try_settle(bet) {
                settled += 1;
            }
        }
        settled
    }

    /// Refuses reversing the settled bets among `bets` (an unsettlement, a feed's
    /// cancellation window or its rollback) when it could take something past the money
    /// maximum, bounded from above: every reopened bet's stake back in cash, its whole payout
    /// as debt, its liability (where positive) on its selections again.
    pub(crate) fn check_reversal_fits(&self, bets: &[u64]) -> Result<(), Rejection> {
        // Nothing may pass the money maximum, bounded from above: every reopened bet's stake
        // back in cash, its whole payout as debt, its liability (where positive) on its
        // selections again.
        let max = i128::from(MONEY_MINOR_MAX);
        let mut cash: BTreeMap<u64, i128> = BTreeMap::new();
        let mut debt: BTreeMap<u64, i128> = BTreeMap::new();
        // Per selection, base-currency (`None`) and own-currency liabilities.
        let mut liability: BTreeMap<(u64, Option<Currency>), i128> = BTreeMap::new();
        for &bet in bets {
            let bet = &self.bets[bet as usize - 1];
            if !matches!(
                bet.status,
                BetStatus::Won | BetStatus::Lost | BetStatus::Void | BetStatus::HalfWon | BetStatus::HalfLost
            ) {
                continue;
            }
            let player = &self.players[bet.account as usize - 1];
            *cash.entry(bet.account).or_insert(i128::from(player.cash)) += i128::from(bet.total_stake);
            *debt.entry(bet.account).or_insert(i128::from(player.debt)) += i128::from(bet.payout.unwrap_or(0));
            let pricing = price(bet.kind, &bet.legs, bet.each_way, bet.stake_per_line);
            for (leg, added) in bet.legs.iter().zip(pricing.liability) {
                let selection = &self.selections[leg.selection as usize - 1];
                let added_base = bet.fx.at_risk_in_base(added, player.currency);
                let now = i128::from(selection.liability);
                *liability.entry((leg.selection, None)).or_insert(now) += i128::from(added_base.max(0));
                let own = i128::from(selection.by_currency.get(&player.currency).copied().unwrap_or(0));
                *liability.entry((leg.selection, Some(player.currency))).or_insert(own) += i128::from(added.max(0));
            }
        }
        if cash.values().chain(debt.values()).chain(liability.values()).any(|&amount| amount > max) {
            return Err(Rejection::AmountTooLarge);
        }
        Ok(())
    }

    fn unsettle_market(&mut self, market: u64) -> Reply {
        let found = self.market(market).ok_or(Rejection::UnknownMarket)?;
        if !found.is_resulted() {
            return Err(Rejection::NotSettled);
        }
        self.check_reversal_fits(&found.bets)?;
        let found = self.market_mut(market);
        found.settlement_version += 1;
        found.results.clear();
        found.status = MarketStatus::Closed;
        let bets = found.bets.clone();
        let mut reversed = 0;
        for bet in bets {
            if self.feed.in_window(market, self.bets[bet as usize - 1].placed_at) {
                // Void by a cancellation window whatever the market's results: it stays so.
                *self.paths.entry("window_kept_void_by_rollback").or_default() += 1;
                continue;
            }
            let status = self.bets[bet as usize - 1].status;
            if matches!(
                status,
                BetStatus::Won | BetStatus::Lost | BetStatus::Void | BetStatus::HalfWon | BetStatus::HalfLost
            ) {
                self.reverse(bet);
                reversed += 1;
                // Another leg may still decide the bet on its own.
                self.try_settle(bet);
            }
        }
        Ok(Ack::Settled { bets: reversed })
    }

    // ---- cash-out ------------------------------------------------------------------------------

    /// The fair value of an open single or multiple at the prices on offer, less the margin.
    fn cashout_value(&self, bet: u64) -> Result<i64, Rejection> {
        let found = &self.bets[bet as usize - 1];
        if found.status != BetStatus::Accepted {
            return Err(Rejection::CashoutUnavailable { reason: "bet is not open" });
        }
        if found.each_way || matches!(found.kind, BetKind::System(_)) {
            return Err(Rejection::CashoutUnavailable { reason: "each-way and system bets cannot be cashed out" });
        }
        let mut factors = Vec::new();
        for leg in &found.legs {
            match self.leg_result(found.placed_at, leg) {
                Some(result) => factors.push(leg_factor(&result, leg.odds, None, false)),
                None => {
                    self.market_open(leg.market)
                        .map_err(|_| Rejection::CashoutUnavailable { reason: "a market is not open" })?;
                    let current = self.selections[leg.selection as usize - 1].price;
                    factors.push(Fraction::new(u128::from(leg.odds), u128::from(current)));
                }
            }
        }
        let margin = self.config.cashout_margin;
        factors.push(Fraction::new(u128::from(margin.den() - margin.num()), u128::from(margin.den())));
        let amount = payout(found.stake_per_line, &factors);
        if amount <= 0 {
            return Err(Rejection::CashoutUnavailable { reason: "no value to cash out" });
        }
        Ok(amount)
    }

    fn own_bet(&self, account: u64, bet: u64) -> Result<(), Rejection> {
        match self.bet(bet) {
            Some(found) if found.account == account => Ok(()),
            _ => Err(Rejection::UnknownBet),
        }
    }

    fn quote_cashout(&mut self, account: u64, bet: u64) -> Reply {
        self.own_bet(account, bet)?;
        let amount = self.cashout_value(bet)?;
        let versions = self.bets[bet as usize - 1]
            .legs
            .iter()
            .map(|leg| self.selections[leg.selection as usize - 1].version)
            .collect();
        self.quotes_issued += 1;
        let id = self.quotes_issued;
        let expires_at = self.now + self.config.cashout_quote_ttl_ms;
        if let Some(previous) = self.bet_mut(bet).quote.replace(id) {
            self.quotes.remove(&previous);
        }
        self.quotes.insert(id, QuoteModel { bet, amount, expires_at, versions });
        Ok(Ack::CashoutQuote { quote: QuoteId(id), amount: Money::from_minor(amount), expires_at })
    }

    fn accept_cashout(&mut self, account: u64, bet: u64, quote: u64) -> Reply {
        self.own_bet(account, bet)?;
        let offer = match self.quotes.get(&quote) {
            Some(offer) if offer.bet == bet && offer.expires_at >= self.now => offer.clone(),
            _ => return Err(Rejection::QuoteExpired),
        };
        let found = &self.bets[bet as usize - 1];
        if found.status != BetStatus::Accepted {
            return Err(Rejection::CashoutUnavailable { reason: "bet is not open" });
        }
        for (leg, version) in found.legs.iter().zip(&offer.versions) {
            if self.leg_result(found.placed_at, leg).is_some() {
                continue;
            }
            let selection = &self.selections[leg.selection as usize - 1];
            if selection.version != *version {
                return Err(Rejection::PriceChanged {
                    selection: SelectionId(selection.id),
                    current_price: Odds::from_scaled(selection.price).expect("prices on offer are valid odds"),
                });
            }
            self.market_open(leg.market)
                .map_err(|_| Rejection::CashoutUnavailable { reason: "a market is not open" })?;
        }
        // A leg resulted since the quote changes the value without changing a price version.
        if self.cashout_value(bet)? != offer.amount {
            return Err(Rejection::QuoteExpired);
        }
        let cash_after = i128::from(self.players[account as usize - 1].cash) + i128::from(offer.amount)
            - i128::from(self.bets[bet as usize - 1].total_stake);
        if cash_after > i128::from(MONEY_MINOR_MAX) {
            return Err(Rejection::AmountTooLarge);
        }
        self.quotes.remove(&quote);
        self.pay(bet, offer.amount, BetStatus::CashedOut);
        Ok(Ack::CashedOut { bet: BetId(bet), amount: Money::from_minor(offer.amount) })
    }

    // ---- the model's own consistency ----------------------------------------------------------

    /// Checks the model against itself: money is conserved per currency, nobody's available
    /// cash is negative, and the running liabilities equal a recount from the open bets.
    pub fn self_check(&self) -> Result<(), String> {
        let mut sums: BTreeMap<Currency, i64> = BTreeMap::new();
        for player in &self.players {
            if player.available() < 0
                || player.pending_stakes < 0
                || player.pending_withdrawals < 0
                || player.pending_deposits < 0
                || player.debt < 0
            {
                return Err(format!("model: acc_{} has negative money: {player:?}", player.id));
            }
            if player.debt > 0 && player.available() > 0 {
                return Err(format!("model: acc_{} owes {} and keeps free cash: {player:?}", player.id, player.debt));
            }
            *sums.entry(player.currency).or_default() += player.cash - player.debt;
        }
        for (currency, balances) in &self.system {
            let total =
                sums.get(currency).copied().unwrap_or(0) + balances.house + balances.clearing + balances.adjustments;
            if total != 0 {
                return Err(format!("model: {currency} is not conserved: off by {total}"));
            }
        }
        for (selection, (expected, by_currency)) in self.selections.iter().zip(self.liability_from_scratch()) {
            if selection.liability != expected || selection.by_currency != by_currency {
                return Err(format!(
                    "model: sel_{} liability {} {:?} but open bets add {expected} {by_currency:?}",
                    selection.id, selection.liability, selection.by_currency
                ));
            }
        }
        Ok(())
    }

    /// The total liability of every open bet: the exposure the house carries.
    pub fn exposure(&self) -> i64 {
        self.selections.iter().map(|selection| selection.liability).sum()
    }
}

/// Adds `delta` to a currency's entry, dropping it at zero.
fn add_by_currency(by_currency: &mut BTreeMap<Currency, i64>, currency: Currency, delta: i64) {
    let entry = by_currency.entry(currency).or_insert(0);
    *entry += delta;
    if *entry == 0 {
        by_currency.remove(&currency);
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_BYTES_MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_bets_have_the_usual_number_of_lines() {
        let expected = [
            (SystemKind::Trixie, 4),
            (SystemKind::Patent, 7),
            (SystemKind::Yankee, 11),
            (SystemKind::Lucky15, 15),
            (SystemKind::Canadian, 26),
            (SystemKind::Heinz, 57),
            (SystemKind::SuperHeinz, 120),
            (SystemKind::Goliath, 247),
        ];
        for (kind, lines) in expected {
            assert_eq!(bet_lines(BetKind::System(kind), system_legs(kind), false).len(), lines, "{kind:?}");
            assert_eq!(bet_lines(BetKind::System(kind), system_legs(kind), true).len(), 2 * lines, "{kind:?}");
        }
    }

    #[test]
    fn each_way_place_odds_round_down() {
        // 5.0 at a quarter: 1 + 4/4 = 2.0; 3.3333 at a fifth: 1 + 2.3333/5 = 1.46666 -> 1.4666.
        let quarter = EachWayTerms { places: 3, fraction: Ratio::new(1, 4).unwrap() };
        let fifth = EachWayTerms { places: 3, fraction: Ratio::new(1, 5).unwrap() };
        assert_eq!(place_odds(50_000, quarter), Fraction::new(2, 1));
        assert_eq!(place_odds(33_333, fifth), Fraction::new(14_666, 10_000));
    }

    #[test]
    fn periods_start_on_monday_and_on_the_first_of_the_month() {
        // 2026-02-01 (a Sunday) and 2026-02-02 (a Monday), both at noon.
        let sunday = 1_769_947_200_000;
        let monday = sunday + DAY_MS;
        assert_eq!(Date::from_unix_millis(sunday).to_string(), "2026-02-01");
        assert_ne!(period_number(Period::Week, sunday), period_number(Period::Week, monday));
        assert_eq!(period_number(Period::Week, monday), period_number(Period::Week, monday + 6 * DAY_MS));
        assert_ne!(period_number(Period::Month, sunday - DAY_MS), period_number(Period::Month, sunday));
    }
}
