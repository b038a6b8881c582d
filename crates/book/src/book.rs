//! The book: one deterministic state machine that owns the ledger, the catalog and the bets.
//!
//! `Book::apply(now, command, events)` decides one command at the time the sequencer gives and
//! pushes what happened into `events`. It does no IO, reads no clock and draws no random
//! numbers; the same commands at the same times always give the same state, which is what
//! makes journal replay and the simulator possible.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use domain::{Currency, Money, Ratio, MONEY_MINOR_MAX};

use crate::bet::Bet;
use crate::catalog::{Event, Market, Selection};
use crate::command::{Command, Idempotency, LimitChange};
use crate::config::Config;
use crate::constants::{
    IDEMPOTENCY_KEY_BYTES_MAX, PAYMENT_REF_BYTES_MAX, SELF_EXCLUSION_DAYS_MAX, SELF_EXCLUSION_DAYS_MIN,
    TIME_OUT_HOURS_MAX,
};
use crate::degraded::{Degraded, DegradedParts};
use crate::event::{Ack, BookEvent, Reply};
use crate::feed::{FeedBook, FeedParts};
use crate::ids::{AccountId, BetId, QuoteId, Timestamp, TransferId, MILLIS_PER_DAY, MILLIS_PER_HOUR};
use crate::ledger::{Ledger, TransferCode, TransferKind, TransferRequest};
use crate::player::{LimitKind, PendingLimit, Player};
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

/// What an idempotency key remembers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remembered {
    pub body_hash: u64,
    pub reply: Reply,
    pub at: Timestamp,
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
    pub(crate) events: Vec<Event>,
    pub(crate) markets: Vec<Market>,
    pub(crate) selections: Vec<Selection>,
    pub(crate) bets: Vec<Bet>,
    /// Bets waiting out an in-play delay, by when it ends.
    pub(crate) delayed: BTreeSet<(Timestamp, BetId)>,
    pub(crate) quotes: BTreeMap<QuoteId, Quote>,
    pub(crate) quotes_issued: u64,
    pub(crate) idempotency: HashMap<(AccountId, String), Remembered>,
    /// Keys in the order they were stored, for expiry (book time only moves forward).
    pub(crate) idempotency_order: VecDeque<(Timestamp, AccountId, String)>,
    /// Registered usernames; rebuilt from the players' profiles when restored.
    pub(crate) usernames: BTreeMap<String, AccountId>,
    pub(crate) api_keys: Vec<crate::identity::ApiKey>,
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
}

/// Every part of a book, for snapshots. `Book::from_parts` checks nothing; call
/// `check_invariants` after restoring.
#[derive(Clone, Debug)]
pub struct BookParts {
    pub config: Config,
    pub now: Timestamp,
    pub ledger: Ledger,
    pub players: Vec<Player>,
    pub events: Vec<Event>,
    pub markets: Vec<Market>,
    pub selections: Vec<Selection>,
    pub bets: Vec<Bet>,
    pub delayed: Vec<(Timestamp, BetId)>,
    pub quotes: Vec<Quote>,
    pub quotes_issued: u64,
    /// Sorted by storage order.
    pub idempotency: Vec<(AccountId, String, Remembered)>,
    pub api_keys: Vec<crate::identity::ApiKey>,
    pub feed: FeedParts,
    pub degraded: DegradedParts,
    pub fx: crate::fx::FxTable,
    /// Sorted.
    pub payment_refs: Vec<(AccountId, u64)>,
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
        self.advance(now, events);
        let remembered = command.idempotency().map(|(account, key)| (account, key.clone()));
        if let Some((account, key)) = &remembered {
            if key.key.is_empty() || key.key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
                return Err(Rejection::InvalidRequest { reason: "idempotency keys are 1 to 128 bytes" });
            }
            if let Some(reply) = self.recall(*account, key) {
                events.push(BookEvent::IdempotentReplay { account: *account });
                return reply;
            }
        }
        let reply = self.decide(command, events);
        if let Some((account, key)) = remembered {
            self.remember(account, key, reply.clone());
        }
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
            Command::Deposit { account, amount, payment_ref, .. } => {
                self.deposit(*account, *amount, payment_ref, events)
            }
            Command::Withdraw { account, amount, .. } => self.withdraw(*account, *amount, events),
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
            Command::Tick => Ok(Ack::Done),
        }
    }

    /// Moves book time forward: forgets expired idempotency keys and quotes, and decides bets
    /// whose in-play delay has ended.
    fn advance(&mut self, now: Timestamp, events: &mut Vec<BookEvent>) {
        debug_assert!(now >= self.now, "book time moves forward only");
        self.now = now.max(self.now);
        let retention = self.config.idempotency_retention_ms;
        while let Some((at, _, _)) = self.idempotency_order.front() {
            if at.saturating_add(retention) > self.now {
                break;
            }
            if let Some((_, account, key)) = self.idempotency_order.pop_front() {
                self.idempotency.remove(&(account, key));
            }
        }
        while let Some((&id, quote)) = self.quotes.first_key_value() {
            // Quotes are issued in time order with one TTL, so the first is the oldest.
            if quote.expires_at >= self.now {
                break;
            }
            let bet = quote.bet;
            self.quotes.remove(&id);
            if let Some(bet) = self.bets.get_mut(bet.index()) {
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
    }

    /// When the next in-play delay ends, for the sequencer's timer.
    pub fn next_delay_due(&self) -> Option<Timestamp> {
        self.delayed.first().map(|(due, _)| *due)
    }

    fn recall(&self, account: AccountId, key: &Idempotency) -> Option<Reply> {
        let remembered = self.idempotency.get(&(account, key.key.clone()))?;
        if remembered.body_hash == key.body_hash {
            Some(remembered.reply.clone())
        } else {
            Some(Err(Rejection::IdempotencyKeyReused))
        }
    }

    fn remember(&mut self, account: AccountId, key: Idempotency, reply: Reply) {
        self.idempotency_order.push_back((self.now, account, key.key.clone()));
        self.idempotency.insert((account, key.key), Remembered { body_hash: key.body_hash, reply, at: self.now });
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
        let player = self.player(account)?;
        self.check_may_gamble(player)?;
        if !amount.is_positive() {
            return Err(Rejection::InvalidRequest { reason: "deposit amount out of range" });
        }
        // The cap is in the base currency: converted into the player's at the rate now, rounded
        // down (against the player, like every cap). Without a rate there is no cap to apply, and
        // the deposit is refused like a bet would be.
        let cap = self.rate_for(player.currency)?.cap_in(self.config.deposit_max, player.currency);
        if amount > cap {
            return Err(Rejection::InvalidRequest { reason: "deposit amount out of range" });
        }
        // The reason for a long reference is the one older journals recorded, so that they
        // replay to the same replies.
        if payment_ref.len() > PAYMENT_REF_BYTES_MAX {
            return Err(Rejection::InvalidRequest { reason: "payment reference too long" });
        }
        if payment_ref.is_empty() {
            return Err(Rejection::InvalidRequest { reason: "payment reference missing" });
        }
        let payment = (account, payment_ref_hash(payment_ref));
        if self.payment_refs.contains(&payment) {
            return Err(Rejection::DuplicatePaymentRef);
        }
        if let Some(period) = player.exceeded_limit(LimitKind::Deposit, amount, self.now) {
            return Err(Rejection::LimitReached { limit: LimitKind::Deposit, period });
        }
        let (currency, cash) = (player.currency, player.cash);
        if self.ledger.account(cash).posted_balance() + amount.minor() > MONEY_MINOR_MAX {
            return Err(Rejection::AmountTooLarge);
        }
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
        self.emit_transfer(transfer, events);
        if !paid {
            // The released money is free cash again, and repays a debt first.
            self.repay_debt(account, events);
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

    pub(crate) fn emit_transfer(&self, transfer: TransferId, events: &mut Vec<BookEvent>) {
        if let Some(transfer) = self.ledger.transfer(transfer) {
            events.push(BookEvent::Transferred(transfer.clone()));
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

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn markets(&self) -> &[Market] {
        &self.markets
    }

    pub fn selections(&self) -> &[Selection] {
        &self.selections
    }

    pub fn bets(&self) -> &[Bet] {
        &self.bets
    }

    /// A player's bets, oldest first.
    pub fn bets_of(&self, account: AccountId) -> &[BetId] {
        self.bets_by_account.get(account.index()).map_or(&[], Vec::as_slice)
    }

    pub fn bet(&self, bet: BetId) -> Option<&Bet> {
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
            .filter_map(|(_, account, key)| {
                self.idempotency
                    .get(&(*account, key.clone()))
                    .map(|remembered| (*account, key.clone(), remembered.clone()))
            })
            .collect();
        BookParts {
            config: self.config,
            now: self.now,
            ledger: self.ledger.clone(),
            players: self.players.clone(),
            events: self.events.clone(),
            markets: self.markets.clone(),
            selections: self.selections.clone(),
            bets: self.bets.clone(),
            delayed: self.delayed.iter().copied().collect(),
            quotes: self.quotes.values().cloned().collect(),
            quotes_issued: self.quotes_issued,
            idempotency,
            api_keys: self.api_keys.clone(),
            feed: self.feed.to_parts(),
            degraded: self.degraded.to_parts(),
            fx: self.fx.clone(),
            payment_refs: self.payment_refs.iter().copied().collect(),
        }
    }

    pub fn from_parts(parts: BookParts) -> Book {
        let usernames = parts
            .players
            .iter()
            .filter_map(|player| player.profile.as_ref().map(|profile| (profile.username.clone(), player.id)))
            .collect();
        let mut bets_by_account: Vec<Vec<BetId>> = vec![Vec::new(); parts.players.len()];
        for bet in &parts.bets {
            if let Some(list) = bets_by_account.get_mut(bet.account.index()) {
                list.push(bet.id);
            }
        }
        let idempotency_order =
            parts.idempotency.iter().map(|(account, key, remembered)| (remembered.at, *account, key.clone())).collect();
        Book {
            config: parts.config,
            now: parts.now,
            ledger: parts.ledger,
            players: parts.players,
            events: parts.events,
            markets: parts.markets,
            selections: parts.selections,
            bets: parts.bets,
            delayed: parts.delayed.into_iter().collect(),
            quotes: parts.quotes.into_iter().map(|quote| (quote.id, quote)).collect(),
            quotes_issued: parts.quotes_issued,
            idempotency: parts
                .idempotency
                .into_iter()
                .map(|(account, key, remembered)| ((account, key), remembered))
                .collect(),
            idempotency_order,
            usernames,
            api_keys: parts.api_keys,
            bets_by_account,
            feed: FeedBook::from_parts(parts.feed),
            degraded: Degraded::from_parts(parts.degraded),
            fx: parts.fx,
            payment_refs: parts.payment_refs.into_iter().collect(),
        }
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
