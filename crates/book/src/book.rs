//! The book: one deterministic state machine that owns the ledger, the catalog and the bets.
//!
//! `Book::apply(now, command, events)` decides one command at the time the sequencer gives and
//! pushes what happened into `events`. It does no IO, reads no clock and draws no random
//! numbers; the same commands at the same times always give the same state, which is what
//! makes journal replay and the simulator possible.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sha2::{Digest, Sha256};

use domain::{Currency, Money, Ratio};

use crate::bet::Bet;
use crate::catalog::{Event, Market, Selection};
use crate::command::{Command, LimitChange};
use crate::config::Config;
use crate::constants::{
    IDEMPOTENCY_KEY_BYTES_MAX, SELF_EXCLUSION_DAYS_MAX, SELF_EXCLUSION_DAYS_MIN, TIME_OUT_HOURS_MAX,
};
use crate::degraded::{Degraded, DegradedParts};
use crate::event::{Ack, BookEvent, Reply};
use crate::feed::{FeedBook, FeedParts};
use crate::ids::{AccountId, BetId, MarketId, QuoteId, Timestamp, TransferId, MILLIS_PER_DAY, MILLIS_PER_HOUR};
use crate::ledger::{Ledger, TransferCode, TransferKind, TransferRequest};
use crate::player::{LimitKind, PendingLimit, Player};
use crate::records::Records;
use crate::rejection::Rejection;

/// A cash-out offer, bound to the price versions it was computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    pub id: QuoteId,
    pub bet: BetId,
    pub amount: Money,
    pub expires_at: Timestamp,
    /// The price version of each leg when quoted.
    pub price_versions: Vec<u64>,
}

/// What an idempotency key remembers, under `idempotency_key_hash(account, key)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remembered {
    pub body_hash: u64,
    pub reply: Reply,
    pub at: Timestamp,
}

/// How the book keeps a remembered key (`Book::idempotency`): 32 bytes beside its 16-byte
/// hash, against 56 for a `Remembered` (a `Reply` is 40 bytes). At the default window (10
/// minutes) and 15,000 bets a second a book holds 9 million keys, so their size is most of
/// what a book bounded by open state holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Kept {
    body_hash: u64,
    at: Timestamp,
    reply: KeptReply,
}

/// A remembered reply: the common ones (a bet placed, a transfer made) in 16 bytes, any other
/// boxed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KeptReply {
    BetPlaced(BetId, crate::bet::BetStatus),
    Transfer(TransferId),
    Other(Box<Reply>),
}

impl Kept {
    pub(crate) fn new(body_hash: u64, at: Timestamp, reply: Reply) -> Kept {
        let reply = match reply {
            Ok(Ack::BetPlaced { bet, status }) => KeptReply::BetPlaced(bet, status),
            Ok(Ack::Transfer(transfer)) => KeptReply::Transfer(transfer),
            other => KeptReply::Other(Box::new(other)),
        };
        Kept { body_hash, at, reply }
    }

    fn reply(&self) -> Reply {
        match &self.reply {
            KeptReply::BetPlaced(bet, status) => Ok(Ack::BetPlaced { bet: *bet, status: *status }),
            KeptReply::Transfer(transfer) => Ok(Ack::Transfer(*transfer)),
            KeptReply::Other(reply) => (**reply).clone(),
        }
    }

    fn remembered(&self) -> Remembered {
        Remembered { body_hash: self.body_hash, reply: self.reply(), at: self.at }
    }
}

/// The 128 bits an idempotency key is remembered by: the first 16 bytes of
/// SHA-256(account id as u64 little-endian || key). Stable (stored in snapshots); a collision
/// between two keys is as likely as one of SHA-256's truncated to 128 bits (negligible), and
/// nobody can aim one at another account's key.
pub fn idempotency_key_hash(account: AccountId, key: &str) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(account.0.to_le_bytes());
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(bytes)
}

/// The book's sizes, for metrics and the memory bound (`Book::sizes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BookSizes {
    pub open_bets: u64,
    /// Bets held that are no longer open (settled, cashed out, rejected) and wait out the
    /// resettlement window.
    pub closed_bets: u64,
    pub bets_issued: u64,
    pub markets: u64,
    pub events: u64,
    pub transfers: u64,
    pub transfers_issued: u64,
    pub idempotency_keys: u64,
}

/// A player's money as they see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wallet {
    pub currency: Currency,
    /// Cash with the stakes of open bets already taken out.
    pub balance: Money,
    /// What can be staked or withdrawn now: balance less pending withdrawals.
    pub available: Money,
    pub pending_stakes: Money,
    /// What the player owes after a resettlement took back more than their cash.
    pub debt: Money,
}

#[derive(Clone, Debug, Default)]
pub struct Book {
    pub(crate) config: Config,
    pub(crate) now: Timestamp,
    pub(crate) ledger: Ledger,
    pub(crate) players: Vec<Player>,
    pub(crate) events: Records<Event>,
    pub(crate) markets: Records<Market>,
    pub(crate) selections: Records<Selection>,
    /// Open bets in full, closed ones packed until they leave (`Bets`).
    pub(crate) bets: crate::bets::BetStore,
    /// Bets unpacked or closed during the command being decided: packed again at its end
    /// (`pack_closed`).
    pub(crate) unpacked: Vec<BetId>,
    /// Bets open now (`Pending` or `Accepted`).
    pub(crate) open_bets: u64,
    /// Bets waiting out an in-play delay, by when it ends.
    pub(crate) delayed: BTreeSet<(Timestamp, BetId)>,
    pub(crate) quotes: BTreeMap<QuoteId, Quote>,
    pub(crate) quotes_issued: u64,
    /// Idempotency keys of the last `Config::idempotency_window_ms`, by `idempotency_key_hash`.
    /// A hash map is fine here: nothing iterates it (expiry and snapshots follow the order).
    /// It grows a few keys per insert, never all at once (`KeyMap`).
    pub(crate) idempotency: crate::keymap::KeyMap,
    /// Keys in the order they were stored, for expiry (book time only moves forward; each
    /// key's time is in `idempotency`).
    pub(crate) idempotency_order: VecDeque<u128>,
    /// Resulted markets by when they closed: their resettlement windows, oldest first.
    /// Derived (rebuilt from `Market::closed_at` when restored).
    pub(crate) closing_markets: BTreeSet<(Timestamp, MarketId)>,
    /// Bets closed on their own (cashed out, rejected after a delay) by when they closed.
    /// Derived.
    pub(crate) closing_bets: BTreeSet<(Timestamp, BetId)>,
    /// Registered usernames; rebuilt from the players' profiles when restored.
    pub(crate) usernames: BTreeMap<String, AccountId>,
    pub(crate) api_keys: Vec<crate::identity::ApiKey>,
    pub(crate) staff: Vec<crate::identity::Staff>,
    /// Each player's bets, oldest first. Derived; rebuilt when restored.
    pub(crate) bets_by_account: Vec<Vec<BetId>>,
    pub(crate) feed: FeedBook,
    pub(crate) degraded: Degraded,
    pub(crate) fx: crate::fx::FxTable,
    /// The payment references each account was credited with, as `payment_ref_hash`es: a
    /// provider's payment credits at most once, across restarts and replays. Kept for as long
    /// as the ledger keeps the deposits themselves (for ever): 16 bytes a deposit against the
    /// deposit transfer's 64.
    pub(crate) payment_refs: BTreeSet<(AccountId, u64)>,
    /// Manual adjustments: the role limits and the requests waiting for approval.
    pub(crate) adjustments: crate::adjustment::Adjustments,
    /// Deposits waiting for (or settled by) the payment provider, and approved withdrawals.
    pub(crate) payments: crate::payments::PaymentBook,
    /// The tracked players' identity verifications (`kyc.rs`).
    pub(crate) kyc: crate::kyc::KycBook,
    /// The reality checks of players who chose an interval (`reality.rs`).
    pub(crate) reality: crate::reality::RealityChecks,
    /// AML monitoring and markers of harm: counters, open cases, shared keys (`monitor.rs`).
    pub(crate) monitor: crate::monitor::Monitor,
}

/// Every part of a book, for snapshots. `Book::from_parts` checks nothing; call
/// `check_invariants` after restoring.
#[derive(Clone, Debug)]
pub struct BookParts {
    pub config: Config,
    pub now: Timestamp,
    pub ledger: Ledger,
    pub players: Vec<Player>,
    /// The events, markets, selections and bets still held, in id order, and how many ids
    /// of each were ever issued.
    pub events: Vec<Event>,
    pub events_issued: u64,
    pub markets: Vec<Market>,
    pub markets_issued: u64,
    pub selections: Vec<Selection>,
    pub selections_issued: u64,
    pub bets: Vec<Bet>,
    pub bets_issued: u64,
    pub delayed: Vec<(Timestamp, BetId)>,
    pub quotes: Vec<Quote>,
    pub quotes_issued: u64,
    /// By `idempotency_key_hash`, in storage order.
    pub idempotency: Vec<(u128, Remembered)>,
    pub api_keys: Vec<crate::identity::ApiKey>,
    pub staff: Vec<crate::identity::Staff>,
    pub feed: FeedParts,
    pub degraded: DegradedParts,
    pub fx: crate::fx::FxTable,
    /// Sorted.
    pub payment_refs: Vec<(AccountId, u64)>,
    pub adjustments: crate::adjustment::Adjustments,
    pub payments: crate::payments::PaymentParts,
    /// In account order.
    pub kyc: Vec<(AccountId, crate::kyc::Kyc)>,
    /// In account order.
    pub reality_checks: Vec<(AccountId, crate::reality::RealityCheck)>,
    pub monitor: crate::monitor::MonitorParts,
}

/// A book's parts borrowed for a snapshot (`Book::snapshot_parts`): the fields of
/// `BookParts`, the large ones as references to the book's own collections. The idempotency
/// keys are `Book::remembered_keys`, `idempotency_keys` of them.
#[derive(Debug)]
pub struct SnapshotParts<'a> {
    pub config: Config,
    pub now: Timestamp,
    pub ledger: &'a Ledger,
    pub players: &'a [Player],
    pub events: &'a Records<Event>,
    pub markets: &'a Records<Market>,
    pub selections: &'a Records<Selection>,
    pub bets: crate::bets::Bets<'a>,
    pub delayed: &'a BTreeSet<(Timestamp, BetId)>,
    pub quotes: &'a BTreeMap<QuoteId, Quote>,
    pub quotes_issued: u64,
    pub idempotency_keys: usize,
    pub api_keys: &'a [crate::identity::ApiKey],
    pub staff: &'a [crate::identity::Staff],
    pub feed: FeedParts,
    pub degraded: DegradedParts,
    pub fx: &'a crate::fx::FxTable,
    pub payment_refs: &'a BTreeSet<(AccountId, u64)>,
    pub adjustments: &'a crate::adjustment::Adjustments,
    pub payments: crate::payments::PaymentParts,
    pub kyc: Vec<(AccountId, crate::kyc::Kyc)>,
    pub reality_checks: Vec<(AccountId, crate::reality::RealityCheck)>,
    pub monitor: crate::monitor::MonitorParts,
}

impl Book {
    pub fn new(config: Config) -> Book {
        Book { config, ..Book::default() }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Book time of the last command.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Decides one command at `now`. Pushes what happened into `events`; returns the reply.
    pub fn apply(&mut self, now: Timestamp, command: &Command, events: &mut Vec<BookEvent>) -> Reply {
        let reply = self.apply_unpacked(now, command, events);
        self.pack_closed();
        reply
    }

    fn apply_unpacked(&mut self, now: Timestamp, command: &Command, events: &mut Vec<BookEvent>) -> Reply {
        self.advance(now, events);
        let mut remembered = None;
        if let Some((account, key)) = command.idempotency() {
            if key.key.is_empty() || key.key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
                return Err(Rejection::InvalidRequest { reason: "idempotency keys are 1 to 128 bytes" });
            }
            let hash = idempotency_key_hash(account, &key.key);
            if let Some(reply) = self.recall(hash, key.body_hash) {
                events.push(BookEvent::IdempotentReplay { account });
                return reply;
            }
            remembered = Some((hash, key.body_hash));
        }
        let reply = self.decide(command, events);
        if let Some((hash, body_hash)) = remembered {
            self.remember(hash, body_hash, reply.clone());
        }
        // A command may close what is already past its window (a window made shorter, a bet
        // rejected after a delay longer than the window): it leaves now, not at the next
        // command, so that a book restored from a snapshot decides exactly like this one.
        self.forget_closed();
        reply
    }

    fn decide(&mut self, command: &Command, events: &mut Vec<BookEvent>) -> Reply {
        match command {
            Command::OpenAccount { currency } => Ok(Ack::AccountOpened(self.open_player(*currency, events))),
            Command::RegisterPlayer { username, password_hash, date_of_birth, country, currency } => {
                self.register_player(username, password_hash, *date_of_birth, country, *currency, events)
            }
            Command::CreateApiKey { name, key_hash, scopes } => self.create_api_key(name, key_hash, *scopes, events),
            Command::RevokeApiKey { key } => self.revoke_api_key(*key, events),
            Command::CreateStaff { username, password_hash, totp_secret, roles } => {
                self.create_staff(username, password_hash, totp_secret, *roles, events)
            }
            Command::DisableStaff { staff } => self.disable_staff(*staff, events),
            Command::SetStaffRoles { staff, roles } => self.set_staff_roles(*staff, *roles, events),
            Command::RequestAdjustment { account, amount, direction, reason, staff, .. } => {
                self.request_adjustment(*account, *amount, *direction, reason, *staff, events)
            }
            Command::ApproveAdjustment { adjustment, account, staff } => {
                self.approve_adjustment(*adjustment, *account, *staff, events)
            }
            Command::RejectAdjustment { adjustment, account, staff, reason } => {
                self.reject_adjustment(*adjustment, *account, *staff, reason)
            }
            Command::SetAdjustmentLimits { limits } => self.set_adjustment_limits(*limits),
            Command::Deposit { account, amount, payment_ref, .. } => {
                self.deposit(*account, *amount, payment_ref, events)
            }
            Command::BeginDeposit { account, amount, payment_ref, .. } => {
                self.begin_deposit(*account, *amount, payment_ref, events)
            }
            Command::SettleDeposit { account, deposit, outcome } => {
                self.settle_deposit(*account, *deposit, *outcome, events)
            }
            Command::ApproveWithdrawal { account, withdrawal } => self.approve_withdrawal(*account, *withdrawal),
            Command::RefuseWithdrawal { account, withdrawal } => {
                if self.payments.is_approved(*withdrawal) {
                    return Err(Rejection::PaymentConflict);
                }
                self.complete_withdrawal(*account, *withdrawal, false, events)
            }
            Command::Withdraw { account, amount, .. } => self.withdraw(*account, *amount, events),
            Command::SetKycRules { account, rules } => self.set_kyc_rules(*account, *rules),
            Command::SetKycState { account, state, reference } => {
                self.set_kyc_state(*account, *state, reference.as_deref())
            }
            Command::SetRealityCheck { account, interval_minutes } => {
                self.set_reality_check(*account, *interval_minutes)
            }
            Command::StartSession { account } => self.start_session(*account),
            Command::AcknowledgeRealityCheck { account } => self.acknowledge_reality_check(*account),
            Command::SetPersonalDetails { account, details } => self.set_personal_details(*account, details, events),
            Command::CompleteWithdrawal { account, withdrawal, paid } => {
                self.complete_withdrawal(*account, *withdrawal, *paid, events)
            }
            Command::SetLimits { account, changes } => self.set_limits(*account, changes, events),
            Command::TimeOut { account, hours } => self.time_out(*account, *hours, events),
            Command::SelfExclude { account, days } => self.self_exclude(*account, *days, events),
            Command::SetAccountRisk { account, stake_factor, frozen } => {
                self.set_account_risk(*account, *stake_factor, *frozen, events)
            }
            Command::CreateEvent { name, sport, competition, starts_at } => {
                self.create_event(name, sport, competition, *starts_at, events)
            }
            Command::CreateMarket { event, name, kind, selections, each_way } => {
                self.create_market(*event, name, kind, selections, *each_way, events)
            }
            Command::SetPrices { market, prices } => self.set_prices(*market, prices, events),
            Command::SetMarketStatus { market, action } => self.set_market_status(*market, *action, events),
            Command::SetInPlay { event, bet_delay_seconds } => self.set_in_play(*event, *bet_delay_seconds, events),
            Command::EndEvent { event } => self.end_event(*event, events),
            Command::SetMarketRisk { market, change } => self.set_market_risk(*market, change),
            Command::PlaceBet(place) => self.place_bet(place, events),
            Command::QuoteCashout { account, bet } => self.quote_cashout(*account, *bet),
            Command::AcceptCashout { account, bet, quote, .. } => self.accept_cashout(*account, *bet, *quote, events),
            Command::SettleMarket { market, results } => self.settle_market(*market, results, events),
            Command::UnsettleMarket { market } => self.unsettle_market(*market, events),
            Command::VoidMarket { market } => self.void_market(*market, events),
            Command::Feed(message) => self.apply_feed(message, events),
            Command::FeedHealth { provider, stale } => self.set_feed_health(provider, *stale, events),
            Command::SetTradingMode { pre_match_only, cached_odds } => {
                self.set_trading_mode(*pre_match_only, *cached_odds)
            }
            Command::SetMarketThrottle { market, bets_per_second } => {
                self.set_market_throttle(*market, *bets_per_second)
            }
            Command::SetFxRates { base, rates } => self.set_fx_rates(*base, rates),
            Command::SetResettlementWindow { window_ms } => self.set_resettlement_window(*window_ms),
            Command::SetIdempotencyWindow { window_ms } => self.set_idempotency_window(*window_ms),
            Command::SetMonitoringRules { rules } => self.set_monitoring_rules(*rules),
            Command::CaseAction(request) => self.act_on_case(request, events),
            Command::NoteShared { account, key } => self.note_shared(*key, *account, events),
            Command::Tick => Ok(Ack::Done),
        }
    }

    /// Moves book time forward: forgets expired idempotency keys and quotes, and decides bets
    /// whose in-play delay has ended.
    fn advance(&mut self, now: Timestamp, events: &mut Vec<BookEvent>) {
        debug_assert!(now >= self.now, "book time moves forward only");
        self.now = now.max(self.now);
        let window = self.config.idempotency_window_ms;
        while let Some(hash) = self.idempotency_order.front() {
            if self.idempotency.get(hash).is_some_and(|kept| kept.at.saturating_add(window) > self.now) {
                break;
            }
            if let Some(hash) = self.idempotency_order.pop_front() {
                self.idempotency.remove_oldest(&hash);
            }
        }
        while let Some((&id, quote)) = self.quotes.first_key_value() {
            // Quotes are issued in time order with one TTL, so the first is the oldest.
            if quote.expires_at >= self.now {
                break;
            }
            let bet = quote.bet;
            self.quotes.remove(&id);
            // A bet with a quote is open (in full); closing cleared its quote already.
            if let Some(bet) = self.bets.full_mut(bet.index()) {
                if bet.cashout_quote == Some(id) {
                    bet.cashout_quote = None;
                }
            }
        }
        while let Some(&(due, bet)) = self.delayed.first() {
            if due > self.now {
                break;
            }
            self.delayed.remove(&(due, bet));
            self.end_delay(bet, events);
        }
        self.fall_due_reality_checks(events);
        self.expire_adjustments();
        self.forget_old_deposits();
        self.forget_closed();
    }

    /// When the next in-play delay ends or the next reality check falls due, for the
    /// sequencer's timer.
    pub fn next_delay_due(&self) -> Option<Timestamp> {
        let delay = self.delayed.first().map(|(due, _)| *due);
        match (delay, self.reality.next_due()) {
            (Some(delay), Some(check)) => Some(delay.min(check)),
            (delay, check) => delay.or(check),
        }
    }

    fn recall(&self, hash: u128, body_hash: u64) -> Option<Reply> {
        let kept = self.idempotency.get(&hash)?;
        if kept.body_hash == body_hash {
            Some(kept.reply())
        } else {
            Some(Err(Rejection::IdempotencyKeyReused))
        }
    }

    fn remember(&mut self, hash: u128, body_hash: u64, reply: Reply) {
        self.idempotency.insert(hash, Kept::new(body_hash, self.now, reply), &self.idempotency_order);
        self.idempotency_order.push_back(hash);
    }

    /// What the book remembers of `key` of `account`, while it is within the book's window.
    pub fn remembered(&self, account: AccountId, key: &str) -> Option<Remembered> {
        self.idempotency.get(&idempotency_key_hash(account, key)).map(Kept::remembered)
    }

    /// Every idempotency key the book remembers, by `idempotency_key_hash`, oldest first (the
    /// projector seeds its first replies from them when its models begin at a snapshot).
    pub fn remembered_keys(&self) -> impl Iterator<Item = (u128, Remembered)> + '_ {
        self.idempotency_order
            .iter()
            .filter_map(|hash| self.idempotency.get(hash).map(|kept| (*hash, kept.remembered())))
    }

    // ---- closed bets, packed ----------------------------------------------------------------

    /// Unpacks a closed bet before a command may change it (cash-out paths; packed again at the
    /// end of the command).
    pub(crate) fn unpack_bet(&mut self, bet: BetId) {
        if self.bets.unpack(bet.index()) {
            self.unpacked.push(bet);
        }
    }

    /// Unpacks every closed bet on `market` before its results change (settle, void, unsettle,
    /// a feed's cancellation window).
    pub(crate) fn unpack_market(&mut self, market: MarketId) {
        let Some(found) = self.markets.get(market.index()) else { return };
        let packed: Vec<BetId> = found.bets.iter().copied().filter(|bet| self.bets.is_packed(bet.index())).collect();
        for bet in packed {
            self.unpack_bet(bet);
        }
    }

    /// Records that a bet closed (settled, cashed out, rejected): packed at the command's end.
    pub(crate) fn bet_closing(&mut self, bet: BetId) {
        self.unpacked.push(bet);
    }

    /// Packs every bet the command unpacked or closed that is not open (again).
    fn pack_closed(&mut self) {
        let mut unpacked = std::mem::take(&mut self.unpacked);
        for bet in unpacked.drain(..) {
            self.bets.pack(bet.index());
        }
        self.unpacked = unpacked;
    }

    // ---- the resettlement window: what leaves the book --------------------------------------

    fn set_resettlement_window(&mut self, window_ms: u64) -> Reply {
        use crate::config::{RESETTLEMENT_WINDOW_MAX_MS, RESETTLEMENT_WINDOW_MIN_MS};
        if !(RESETTLEMENT_WINDOW_MIN_MS..=RESETTLEMENT_WINDOW_MAX_MS).contains(&window_ms) {
            return Err(Rejection::InvalidRequest { reason: "resettlement window out of range" });
        }
        self.config.resettlement_window_ms = window_ms;
        Ok(Ack::Done)
    }

    fn set_idempotency_window(&mut self, window_ms: u64) -> Reply {
        use crate::config::{IDEMPOTENCY_WINDOW_MAX_MS, IDEMPOTENCY_WINDOW_MIN_MS};
        if !(IDEMPOTENCY_WINDOW_MIN_MS..=IDEMPOTENCY_WINDOW_MAX_MS).contains(&window_ms) {
            return Err(Rejection::InvalidRequest { reason: "idempotency window out of range" });
        }
        self.config.idempotency_window_ms = window_ms;
        Ok(Ack::Done)
    }

    /// Whether a market that closed at `closed_at` is past its resettlement window now.
    pub fn window_closed(&self, closed_at: Timestamp) -> bool {
        closed_at.saturating_add(self.config.resettlement_window_ms) <= self.now
    }

    /// Lets leave what is past its resettlement window: bets closed on their own, resulted
    /// markets with their settled bets (a market stays while a bet still held has a leg on
    /// it), events whose last market left, and every transfer (`Ledger::forget_until`).
    /// Deterministic: driven by book time and the closing order only.
    pub(crate) fn forget_closed(&mut self) {
        let Some(cutoff) = self.now.checked_sub(self.config.resettlement_window_ms) else { return };
        while let Some(&(closed, bet)) = self.closing_bets.first() {
            if closed > cutoff {
                break;
            }
            self.closing_bets.remove(&(closed, bet));
            self.forget_bet(bet, None);
        }
        while let Some(&(closed, market)) = self.closing_markets.first() {
            if closed > cutoff {
                break;
            }
            self.closing_markets.remove(&(closed, market));
            self.market_window_closed(market);
        }
        self.ledger.forget_until(cutoff);
    }

    /// Records that `market` was resulted now (its window starts) or unsettled (it ends).
    pub(crate) fn set_market_closed(&mut self, market: MarketId, closed: bool) {
        let now = self.now;
        let Some(found) = self.markets.get_mut(market.index()) else { return };
        if let Some(previous) = found.closed_at.take() {
            self.closing_markets.remove(&(previous, market));
        }
        if closed {
            found.closed_at = Some(now);
            self.closing_markets.insert((now, market));
        }
    }

    /// Records that an open bet closed on its own (cash-out, rejection): it leaves once its
    /// window passed, whatever its markets do.
    pub(crate) fn bet_closed_alone(&mut self, bet: BetId, at: Timestamp) {
        self.closing_bets.insert((at, bet));
    }

    fn market_window_closed(&mut self, market: MarketId) {
        let Some(found) = self.markets.get(market.index()) else { return };
        if !found.closed_at.is_some_and(|closed| self.window_closed(closed)) {
            return;
        }
        let leaving: Vec<BetId> = found.bets.iter().copied().filter(|bet| self.bet_may_leave(*bet)).collect();
        for bet in &leaving {
            self.forget_bet(*bet, Some(market));
        }
        if let Some(found) = self.markets.get_mut(market.index()) {
            if !leaving.is_empty() {
                let bets = &self.bets;
                found.bets.retain(|bet| bets.contains(bet.index()));
            }
            if found.bets.is_empty() {
                self.forget_market(market);
            }
        }
    }

    /// A bet settled by results leaves once every market it has a leg on is past its window
    /// (an unsettle of any of them would reopen it). Bets closed on their own leave by
    /// `closing_bets`; open bets stay.
    fn bet_may_leave(&self, bet: BetId) -> bool {
        let Some(found) = self.bets.get(bet.index()) else { return false };
        found.status.is_settled_by_result()
            && found.legs.iter().all(|leg| {
                self.markets
                    .get(leg.market.index())
                    .is_none_or(|market| market.closed_at.is_some_and(|closed| self.window_closed(closed)))
            })
    }

    /// Removes a bet and its index entries; a market it leaves empty and past its window
    /// leaves too. `pruned_by` is the market whose caller prunes its bet list in one pass.
    fn forget_bet(&mut self, bet: BetId, pruned_by: Option<MarketId>) {
        let Some(found) = self.bets.remove(bet.index()) else { return };
        if found.status.is_open() {
            self.open_bets = self.open_bets.saturating_sub(1);
        }
        if let Some(list) = self.bets_by_account.get_mut(found.account.index()) {
            if let Ok(at) = list.binary_search(&bet) {
                list.remove(at);
            }
        }
        for leg in &found.legs {
            if Some(leg.market) == pruned_by {
                continue;
            }
            let Some(market) = self.markets.get_mut(leg.market.index()) else { continue };
            if let Ok(at) = market.bets.binary_search(&bet) {
                market.bets.remove(at);
            }
            let closed = market.closed_at;
            if market.bets.is_empty() && closed.is_some_and(|closed| self.window_closed(closed)) {
                self.forget_market(leg.market);
            }
        }
    }

    /// Removes a market without bets, its selections, its feed mapping and throttle; the
    /// event leaves with its last market.
    fn forget_market(&mut self, market: MarketId) {
        let Some(found) = self.markets.remove(market.index()) else { return };
        for selection in &found.selections {
            self.selections.remove(selection.index());
        }
        if let Some(previous) = found.closed_at {
            self.closing_markets.remove(&(previous, market));
        }
        self.feed.forget_market(market);
        self.degraded.throttles.remove(&market);
        let Some(event) = self.events.get_mut(found.event.index()) else { return };
        event.markets.retain(|listed| *listed != market);
        if event.markets.is_empty() {
            let event = event.id;
            self.events.remove(event.index());
            self.feed.forget_event(event);
        }
    }

    /// The book's sizes now.
    pub fn sizes(&self) -> BookSizes {
        BookSizes {
            open_bets: self.open_bets,
            closed_bets: (self.bets.len() as u64).saturating_sub(self.open_bets),
            bets_issued: self.bets.issued(),
            markets: self.markets.len() as u64,
            events: self.events.len() as u64,
            transfers: self.ledger.transfers().len() as u64,
            transfers_issued: self.ledger.transfers().issued(),
            idempotency_keys: self.idempotency.len() as u64,
        }
    }

    // ---- accounts and money -------------------------------------------------------------

    pub(crate) fn player(&self, account: AccountId) -> Result<&Player, Rejection> {
        self.players.get(account.index()).ok_or(Rejection::UnknownAccount)
    }

    /// Rejects when the account may not gamble (bet or deposit) now.
    pub(crate) fn check_may_gamble(&self, player: &Player) -> Result<(), Rejection> {
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

    fn deposit(&mut self, account: AccountId, amount: Money, payment_ref: &str, events: &mut Vec<BookEvent>) -> Reply {
        let (currency, cash, payment) = self.check_deposit(account, amount, payment_ref)?;
        let clearing = self.ledger.clearing(currency);
        let request = TransferRequest {
            debit: clearing,
            credit: cash,
            amount,
            code: TransferCode::Deposit,
            reference: account.0,
        };
        let transfer =
            self.post(request, events).map_err(|_| Rejection::InvalidRequest { reason: "deposit refused" })?;
        self.payment_refs.insert(payment);
        self.players[account.index()].record(self.now, amount.minor(), 0, 0);
        self.record_kyc_deposit(account, amount.minor());
        self.monitor_deposit(account, amount, events);
        self.repay_debt(account, events);
        Ok(Ack::Transfer(transfer))
    }

    fn withdraw(&mut self, account: AccountId, amount: Money, events: &mut Vec<BookEvent>) -> Reply {
        let player = self.player(account)?;
        // Withdrawals stay possible during a time-out or self-exclusion; a freeze stops them.
        if player.frozen {
            return Err(Rejection::AccountFrozen);
        }
        if !amount.is_positive() {
            return Err(Rejection::InvalidRequest { reason: "withdrawal amount must be positive" });
        }
        self.check_kyc_withdrawal(account)?;
        let (currency, cash, debt) = (player.currency, player.cash, player.debt);
        // What a player owes the house comes first: only free cash beyond the debt may leave.
        // (Every credit and every released hold repays the debt at once, so in practice a
        // player in debt has no free cash at all.)
        let owed = -self.ledger.account(debt).posted_balance();
        if self.ledger.account(cash).available() - owed < amount.minor() {
            return Err(Rejection::InsufficientFunds);
        }
        let clearing = self.ledger.clearing(currency);
        let request = TransferRequest {
            debit: cash,
            credit: clearing,
            amount,
            code: TransferCode::Withdrawal,
            reference: account.0,
        };
        let transfer = self.ledger.hold(request, self.now).map_err(|_| Rejection::InsufficientFunds)?;
        self.emit_transfer(transfer, events);
        self.monitor_withdrawal(account, amount, events);
        Ok(Ack::Transfer(transfer))
    }

    fn complete_withdrawal(
        &mut self,
        account: AccountId,
        withdrawal: TransferId,
        paid: bool,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        let player = self.player(account)?;
        let is_own_open_withdrawal = self.ledger.transfer(withdrawal).is_some_and(|transfer| {
            transfer.code == TransferCode::Withdrawal
                && transfer.kind == TransferKind::Pending
                && transfer.debit == player.cash
                && self.ledger.is_open_pending(withdrawal)
        });
        if !is_own_open_withdrawal {
            return Err(Rejection::UnknownWithdrawal);
        }
        let result = if paid {
            self.ledger.post_pending(withdrawal, self.now)
        } else {
            self.ledger.void_pending(withdrawal, self.now)
        };
        let transfer = result.map_err(|_| Rejection::UnknownWithdrawal)?;
        self.payments.approved.remove(&withdrawal);
        self.emit_transfer(transfer, events);
        if !paid {
            // The released money is free cash again, and repays a debt first.
            self.repay_debt(account, events);
            // Refused by staff or failed at the provider: a marker of harm when repeated.
            self.monitor_withdrawal_refused(account, events);
        }
        Ok(Ack::Transfer(transfer))
    }

    /// Posts a transfer and reports it.
    pub(crate) fn post(
        &mut self,
        request: TransferRequest,
        events: &mut Vec<BookEvent>,
    ) -> Result<TransferId, crate::ledger::LedgerError> {
        let transfer = self.ledger.post(request, self.now)?;
        self.emit_transfer(transfer, events);
        Ok(transfer)
    }

    /// Reports a transfer just made. A bet's transfer that is not an open hold then leaves the
    /// ledger at once (`Ledger::let_go`): the bet's `Settlement` is what a resettlement
    /// reverses, so the book keeps no settled bet's transfers for its window (about 150 bytes
    /// each, two or three a bet). Deposits, withdrawals and debts stay until their window.
    pub(crate) fn emit_transfer(&mut self, transfer: TransferId, events: &mut Vec<BookEvent>) {
        let Some(found) = self.ledger.transfer(transfer) else { return };
        let of_a_bet = found.code.is_of_a_bet();
        events.push(BookEvent::Transferred(found.clone()));
        if of_a_bet {
            self.ledger.let_go(transfer);
        }
    }

    /// Pays back what a player owes from their free cash, after money came in or a hold was
    /// released: a player in debt keeps no free cash.
    pub(crate) fn repay_debt(&mut self, account: AccountId, events: &mut Vec<BookEvent>) {
        let player = &self.players[account.index()];
        let (cash, debt) = (player.cash, player.debt);
        let owed = -self.ledger.account(debt).posted_balance();
        let free = self.ledger.account(cash).available();
        let amount = owed.min(free);
        if amount > 0 {
            let request = TransferRequest {
                debit: cash,
                credit: debt,
                amount: Money::from_minor(amount),
                code: TransferCode::DebtRepaid,
                reference: account.0,
            };
            // Cannot fail: the amount is at most the free cash.
            let _ = self.post(request, events);
        }
    }

    pub fn wallet(&self, account: AccountId) -> Option<Wallet> {
        let player = self.players.get(account.index())?;
        let cash = self.ledger.account(player.cash);
        let debt = self.ledger.account(player.debt);
        let pending_stakes = cash.debits_pending_stakes;
        Some(Wallet {
            currency: player.currency,
            balance: Money::from_minor(cash.posted_balance() - pending_stakes),
            available: Money::from_minor(cash.available()),
            pending_stakes: Money::from_minor(pending_stakes),
            debt: Money::from_minor(-debt.posted_balance()),
        })
    }

    // ---- responsible gambling and account risk --------------------------------------------

    fn set_limits(&mut self, account: AccountId, changes: &[LimitChange], events: &mut Vec<BookEvent>) -> Reply {
        self.player(account)?;
        if changes.len() > LimitKind::ALL.len() * 3 {
            return Err(Rejection::InvalidRequest { reason: "too many limit changes" });
        }
        if changes.iter().any(|change| change.value.is_some_and(|value| value.minor() < 0)) {
            return Err(Rejection::InvalidRequest { reason: "limits cannot be negative" });
        }
        let now = self.now;
        let cooling_off = self.config.limit_increase_cooling_off_ms;
        let player = &mut self.players[account.index()];
        for change in changes {
            let slot = &mut player.limits[change.kind.slot()][change.period.slot()];
            slot.settle(now);
            let current = slot.current;
            let is_decrease = match (current, change.value) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(current), Some(new)) => new <= current,
            };
            if is_decrease {
                // Tighter at once; a pending loosening is dropped, the tighter limit stands.
                slot.current = change.value;
                slot.pending = None;
            } else if change.value != current {
                slot.pending = Some(PendingLimit { value: change.value, effective_at: now + cooling_off });
            }
        }
        events.push(BookEvent::LimitsChanged { account });
        Ok(Ack::Done)
    }

    fn time_out(&mut self, account: AccountId, hours: u32, events: &mut Vec<BookEvent>) -> Reply {
        self.player(account)?;
        if hours == 0 || hours > TIME_OUT_HOURS_MAX {
            return Err(Rejection::InvalidRequest { reason: "time-out hours out of range" });
        }
        let until = self.now + u64::from(hours) * MILLIS_PER_HOUR;
        let player = &mut self.players[account.index()];
        // A second time-out can lengthen a break, never shorten it.
        player.timed_out_until = player.timed_out_until.max(until);
        events.push(BookEvent::AccountRestricted { account });
        Ok(Ack::Done)
    }

    fn self_exclude(&mut self, account: AccountId, days: u32, events: &mut Vec<BookEvent>) -> Reply {
        self.player(account)?;
        if !(SELF_EXCLUSION_DAYS_MIN..=SELF_EXCLUSION_DAYS_MAX).contains(&days) {
            return Err(Rejection::InvalidRequest { reason: "self-exclusion days out of range" });
        }
        let until = self.now + u64::from(days) * MILLIS_PER_DAY;
        let player = &mut self.players[account.index()];
        player.excluded_until = player.excluded_until.max(until);
        events.push(BookEvent::AccountRestricted { account });
        Ok(Ack::Done)
    }

    fn set_account_risk(
        &mut self,
        account: AccountId,
        stake_factor: Option<Ratio>,
        frozen: Option<bool>,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        self.player(account)?;
        if stake_factor.is_some_and(|factor| factor.num() > 100 * factor.den()) {
            return Err(Rejection::InvalidRequest { reason: "stake factor above 100" });
        }
        let player = &mut self.players[account.index()];
        if let Some(stake_factor) = stake_factor {
            player.stake_factor = stake_factor;
        }
        if let Some(frozen) = frozen {
            player.frozen = frozen;
        }
        events.push(BookEvent::AccountRestricted { account });
        Ok(Ack::Done)
    }

    // ---- reads ------------------------------------------------------------------------------

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn players(&self) -> &[Player] {
        &self.players
    }

    /// The events held, in id order (`issued()` counts every one ever created).
    pub fn events(&self) -> &Records<Event> {
        &self.events
    }

    pub fn markets(&self) -> &Records<Market> {
        &self.markets
    }

    pub fn selections(&self) -> &Records<Selection> {
        &self.selections
    }

    /// The bets held: open ones, and closed ones within their resettlement window.
    pub fn bets(&self) -> crate::bets::Bets<'_> {
        crate::bets::Bets(&self.bets)
    }

    /// A player's bets, oldest first.
    pub fn bets_of(&self, account: AccountId) -> &[BetId] {
        self.bets_by_account.get(account.index()).map_or(&[], Vec::as_slice)
    }

    /// A held bet: borrowed when open, unpacked when closed (`Bets`).
    pub fn bet(&self, bet: BetId) -> Option<std::borrow::Cow<'_, Bet>> {
        self.bets.get(bet.index())
    }

    pub fn market(&self, market: crate::ids::MarketId) -> Option<&Market> {
        self.markets.get(market.index())
    }

    pub fn selection(&self, selection: crate::ids::SelectionId) -> Option<&Selection> {
        self.selections.get(selection.index())
    }

    pub fn quote(&self, quote: QuoteId) -> Option<&Quote> {
        self.quotes.get(&quote)
    }

    /// A copy of every part of the book, for a snapshot.
    pub fn to_parts(&self) -> BookParts {
        let idempotency = self
            .idempotency_order
            .iter()
            .filter_map(|hash| self.idempotency.get(hash).map(|kept| (*hash, kept.remembered())))
            .collect();
        BookParts {
            config: self.config,
            now: self.now,
            ledger: self.ledger.clone(),
            players: self.players.clone(),
            events: self.events.to_vec(),
            events_issued: self.events.issued(),
            markets: self.markets.to_vec(),
            markets_issued: self.markets.issued(),
            selections: self.selections.to_vec(),
            selections_issued: self.selections.issued(),
            bets: self.bets.to_vec(),
            bets_issued: self.bets.issued(),
            delayed: self.delayed.iter().copied().collect(),
            quotes: self.quotes.values().cloned().collect(),
            quotes_issued: self.quotes_issued,
            idempotency,
            api_keys: self.api_keys.clone(),
            staff: self.staff.clone(),
            feed: self.feed.to_parts(),
            degraded: self.degraded.to_parts(),
            fx: self.fx.clone(),
            payment_refs: self.payment_refs.iter().copied().collect(),
            adjustments: self.adjustments.clone(),
            payments: self.payments.to_parts(),
            kyc: self.kyc.to_parts(),
            reality_checks: self.reality.to_parts(),
            monitor: self.monitor.to_parts(),
        }
    }

    /// The book's parts as a snapshot writes them, without copying the book (`to_parts` copies
    /// every part): what grows with bets, transfers, keys and players is borrowed, to be
    /// walked once by the writer; the small parts are copied as `to_parts` copies them. The
    /// encoding of these parts and of `to_parts()` is the same, byte for byte.
    pub fn snapshot_parts(&self) -> SnapshotParts<'_> {
        SnapshotParts {
            config: self.config,
            now: self.now,
            ledger: &self.ledger,
            players: &self.players,
            events: &self.events,
            markets: &self.markets,
            selections: &self.selections,
            bets: crate::bets::Bets(&self.bets),
            delayed: &self.delayed,
            quotes: &self.quotes,
            quotes_issued: self.quotes_issued,
            idempotency_keys: self.idempotency.len(),
            api_keys: &self.api_keys,
            staff: &self.staff,
            feed: self.feed.to_parts(),
            degraded: self.degraded.to_parts(),
            fx: &self.fx,
            payment_refs: &self.payment_refs,
            adjustments: &self.adjustments,
            payments: self.payments.to_parts(),
            kyc: self.kyc.to_parts(),
            reality_checks: self.reality.to_parts(),
            monitor: self.monitor.to_parts(),
        }
    }

    pub fn from_parts(parts: BookParts) -> Book {
        let usernames = parts
            .players
            .iter()
            .filter_map(|player| player.profile.as_ref().map(|profile| (profile.username.clone(), player.id)))
            .collect();
        let mut bets_by_account: Vec<Vec<BetId>> = vec![Vec::new(); parts.players.len()];
        let mut closing_bets = BTreeSet::new();
        let mut open_bets = 0;
        for bet in &parts.bets {
            if let Some(list) = bets_by_account.get_mut(bet.account.index()) {
                list.push(bet.id);
            }
            if bet.status.is_open() {
                open_bets += 1;
            }
            if let Some(at) = closed_alone_at(bet) {
                closing_bets.insert((at, bet.id));
            }
        }
        let closing_markets =
            parts.markets.iter().filter_map(|market| market.closed_at.map(|closed| (closed, market.id))).collect();
        let idempotency_order = parts.idempotency.iter().map(|(hash, _)| *hash).collect();
        let monitor = crate::monitor::Monitor::from_parts(parts.monitor, parts.players.len());
        let mut book = Book {
            config: parts.config,
            now: parts.now,
            ledger: parts.ledger,
            players: parts.players,
            events: Records::from_parts(parts.events_issued, parts.events, |event| event.id.index()),
            markets: Records::from_parts(parts.markets_issued, parts.markets, |market| market.id.index()),
            selections: Records::from_parts(parts.selections_issued, parts.selections, |selection| {
                selection.id.index()
            }),
            bets: crate::bets::BetStore::from_parts(parts.bets_issued, parts.bets),
            unpacked: Vec::new(),
            open_bets,
            delayed: parts.delayed.into_iter().collect(),
            quotes: parts.quotes.into_iter().map(|quote| (quote.id, quote)).collect(),
            quotes_issued: parts.quotes_issued,
            idempotency: parts
                .idempotency
                .into_iter()
                .map(|(hash, remembered)| (hash, Kept::new(remembered.body_hash, remembered.at, remembered.reply)))
                .collect(),
            idempotency_order,
            closing_markets,
            closing_bets,
            usernames,
            api_keys: parts.api_keys,
            staff: parts.staff,
            bets_by_account,
            feed: FeedBook::from_parts(parts.feed),
            degraded: Degraded::from_parts(parts.degraded),
            fx: parts.fx,
            payment_refs: parts.payment_refs.into_iter().collect(),
            adjustments: parts.adjustments,
            payments: crate::payments::PaymentBook::from_parts(parts.payments),
            kyc: crate::kyc::KycBook::from_parts(parts.kyc),
            reality: crate::reality::RealityChecks::from_parts(parts.reality_checks),
            monitor,
        };
        // What a live book would have let leave by now has left (every command ends with
        // `forget_closed`); entries still due are those a live book keeps waiting too.
        book.closing_markets
            .retain(|&(closed, _)| closed.saturating_add(book.config.resettlement_window_ms) > book.now);
        book.closing_bets.retain(|&(closed, _)| closed.saturating_add(book.config.resettlement_window_ms) > book.now);
        book
    }
}

/// When a bet closed on its own, if it did: a cash-out at its settlement, a rejection after a
/// delay at its placement (rejected bets leave a window after they were placed).
pub(crate) fn closed_alone_at(bet: &Bet) -> Option<Timestamp> {
    match bet.status {
        crate::bet::BetStatus::CashedOut => bet.settlement.as_ref().map(|settlement| settlement.at),
        crate::bet::BetStatus::Rejected => Some(bet.placed_at),
        _ => None,
    }
}

/// The hash a payment reference is remembered by (`Book::payment_refs`): 64-bit FNV-1a, stable
/// across versions and platforms (it is stored in snapshots). A collision could only refuse a
/// player's own second deposit, never credit one twice; at a million deposits of one account
/// its chance is about 3 in 10^8.
pub fn payment_ref_hash(payment_ref: &str) -> u64 {
    payment_ref
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}
