//! Odds-feed messages, decided by the book.
//!
//! A provider names fixtures, markets and outcomes with its own ids. The book keeps the mapping
//! from those ids to its own, which messages it has already applied (by the provider's sequence)
//! and the provider time of the last odds applied to each market, so that none of it is lost on a
//! restart, a replay decides it again, and the audit trail shows what the feed did:
//!
//! - a message is applied at most once: a sequence already seen, or older than the window the
//!   book remembers, is answered `duplicate` and changes nothing. A message without a sequence
//!   (`sequence` 0: a Unified Odds Feed has none) is identified by its content instead: a
//!   digest of the provider, time and items. The last `FEED_DIGESTS_MAX` digests of each
//!   provider are remembered, so a redelivered message (the same bytes again, or the same
//!   message on the backup connection) is a `duplicate`;
//! - an older price never overwrites a newer one: odds stamped no later than the last odds
//!   applied to the market are answered `stale` and change nothing (without a sequence, odds
//!   stamped earlier than the last are stale; distinct messages of the same millisecond apply
//!   in the order they arrive);
//! - `Markets` items (a UOF `odds_change`) create a market the first time it has an outcome
//!   with odds, add outcomes that appear later as new selections, mark outcomes inactive
//!   (bets on them are refused `selection_unavailable`) and follow the provider's market
//!   status; a market listed without odds is legitimate and changes only its status;
//! - `CancelWindow` voids only the bets placed in a time window; the window stays in force,
//!   so a later settlement of the market leaves those bets void, until `RollbackCancel`
//!   withdraws it;
//! - when the feed adapter judges a provider stale (`FeedHealth`), the provider's open markets
//!   are suspended, or marked delayed, as configured; they reopen only when the provider's
//!   recovery snapshot has brought prices back (`SnapshotComplete`).
//!
//! Items of one message are applied in order; an item the book cannot apply (a settlement for
//! a market it never heard of) is skipped and reported with its rejection, and the rest still
//! apply: one bad item must not hold back the prices behind it.

use std::collections::{BTreeMap, BTreeSet};

use domain::{Odds, Ratio};

use crate::bet::BetStatus;
use crate::book::Book;
use crate::catalog::{EachWayTerms, MarketStatus, Outcome};
use crate::catalog::{Selection, SelectionResult};
use crate::command::{MarketAction, NewSelection, ResultRequest};
use crate::constants::{
    FEED_CANCEL_WINDOWS_MAX, FEED_DIGESTS_MAX, FEED_ID_BYTES_MAX, FEED_ITEMS_MAX, FEED_WINDOW, NAME_BYTES_MAX,
    SELECTIONS_PER_MARKET_MAX,
};
use crate::event::{Ack, BookEvent, Reply};
use crate::ids::{BetId, EventId, MarketId, SelectionId, Timestamp};
use crate::rejection::Rejection;

/// One message of a provider: a sequence for de-duplication, the provider's time, and what
/// it says, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedMessage {
    pub provider: String,
    /// The provider's message sequence, from 1, increasing. Primary and backup sources of one
    /// provider carry the same sequence, so a message seen on both applies once. 0: the
    /// provider has no sequence (a Unified Odds Feed); the message is identified by content.
    pub sequence: u64,
    /// When the provider produced the message (milliseconds since the epoch).
    pub timestamp: Timestamp,
    pub items: Vec<FeedItem>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedItem {
    /// A fixture is created, or changed (name, start time).
    Fixture {
        event: String,
        name: String,
        sport: String,
        competition: String,
        starts_at: Timestamp,
    },
    /// A market with its outcomes; nothing happens if the book already has it.
    Market {
        event: String,
        market: String,
        name: String,
        kind: String,
        selections: Vec<FeedSelection>,
        each_way: Option<EachWayTerms>,
    },
    /// New prices for markets of an event; `active` reopens (`true`) or suspends (`false`).
    Odds {
        event: String,
        markets: Vec<FeedOdds>,
    },
    /// Stops betting on the listed markets of an event, or all of them when none are listed.
    BetStop {
        event: String,
        markets: Vec<String>,
    },
    /// The event started and is in play, with a bet delay.
    InPlay {
        event: String,
        bet_delay_seconds: u32,
    },
    /// The event is over: its markets close.
    Ended {
        event: String,
    },
    Settlement {
        event: String,
        market: String,
        results: Vec<FeedResult>,
    },
    /// The market is cancelled: every bet on it is void.
    Cancel {
        event: String,
        market: String,
    },
    /// A settlement or cancellation is withdrawn: bets are reopened exactly as before it.
    Rollback {
        event: String,
        market: String,
    },
    /// The provider's recovery snapshot is complete: its prices are current again, so markets
    /// the book suspended or delayed because the feed was stale reopen.
    SnapshotComplete,
    /// A fixture is created if the book does not have it yet; an existing one keeps its name
    /// (unlike `Fixture`, which renames) and moves to `starts_at` only with `reschedule`.
    Announce {
        event: String,
        name: String,
        sport: String,
        competition: String,
        starts_at: Timestamp,
        reschedule: bool,
    },
    /// Markets of an event as the provider lists them (a UOF `odds_change`): created when
    /// first priced, outcomes added when first priced, statuses followed.
    Markets {
        event: String,
        markets: Vec<FeedMarket>,
    },
    /// Voids the bets on a market placed in `[from, to)` (`None`: unbounded on that side) and
    /// keeps them void until the window is withdrawn by a `RollbackCancel` of the same window.
    CancelWindow {
        event: String,
        market: String,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    },
    /// Withdraws a cancellation: with no window, a cancelled (voided) market's results are
    /// withdrawn (a settled market is left alone); with a window, that window's bets reopen
    /// (or take the market's results if it is settled).
    RollbackCancel {
        event: String,
        market: String,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    },
}

/// The provider's status of a market (UOF `marketStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedMarketStatus {
    /// 1: open for bets.
    Active,
    /// 0: deactivated; it may come back.
    Inactive,
    /// -1: suspended.
    Suspended,
    /// -2: handed over to another producer of the provider (pre-match to live): this message's
    /// prices and status for it are ignored, the other producer's apply.
    HandedOver,
    /// -3: settled by the provider; the settlement follows.
    Settled,
    /// -4: cancelled by the provider; the cancellation follows.
    Cancelled,
}

impl FeedMarketStatus {
    /// From the UOF code; `None` for a code the schema does not define.
    pub fn from_code(code: i64) -> Option<FeedMarketStatus> {
        Some(match code {
            1 => FeedMarketStatus::Active,
            0 => FeedMarketStatus::Inactive,
            -1 => FeedMarketStatus::Suspended,
            -2 => FeedMarketStatus::HandedOver,
            -3 => FeedMarketStatus::Settled,
            -4 => FeedMarketStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        match self {
            FeedMarketStatus::Active => 1,
            FeedMarketStatus::Inactive => 0,
            FeedMarketStatus::Suspended => -1,
            FeedMarketStatus::HandedOver => -2,
            FeedMarketStatus::Settled => -3,
            FeedMarketStatus::Cancelled => -4,
        }
    }
}

/// One market of a `Markets` item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedMarket {
    pub market: String,
    pub name: String,
    pub kind: String,
    pub status: FeedMarketStatus,
    pub outcomes: Vec<FeedOutcome>,
}

/// One outcome of a `FeedMarket`: without odds it is listed but not priced (legitimate: a
/// live market often lists outcomes without odds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedOutcome {
    pub id: String,
    pub name: String,
    pub odds: Option<Odds>,
    pub active: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedSelection {
    pub id: String,
    pub name: String,
    pub price: Odds,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedOdds {
    pub market: String,
    pub prices: Vec<(String, Odds)>,
    pub active: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedResult {
    pub selection: String,
    pub outcome: Outcome,
    pub dead_heat: Option<Ratio>,
    pub void_factor: Option<Ratio>,
}

/// What the book does with a provider's markets while its feed is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleMode {
    /// Suspend them: bets are rejected with `market_suspended`.
    Suspend,
    /// Keep them open with cached odds, flagged `delayed`; bets wait out a delay first.
    Delay,
}

/// What a feed message did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedApplied {
    /// The message was applied before (or is older than the window): nothing changed.
    pub duplicate: bool,
    /// Items that were applied.
    pub applied: u32,
    /// Odds for a market older than the odds already applied to it, skipped.
    pub stale: u32,
    /// Items the book could not apply, by position, with why.
    pub ignored: Vec<(u32, Rejection)>,
}

/// A provider as the book knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderFeed {
    pub name: String,
    /// The highest sequence applied.
    pub highest: u64,
    /// Bit `i` set: sequence `highest - i` was applied (bit 0 is `highest` itself).
    pub window: u128,
    pub stale: Option<StaleMode>,
    /// Its markets, in creation order.
    pub markets: Vec<MarketId>,
    /// Markets suspended because the feed went stale, to reopen on recovery.
    pub suspended: Vec<MarketId>,
    /// Markets marked delayed because the feed went stale.
    pub delayed: Vec<MarketId>,
    /// Content digests of the last sequence-less messages applied, oldest first (at most
    /// `FEED_DIGESTS_MAX`).
    pub recent: Vec<u64>,
}

/// The book's feed state: providers and the mapping of their ids to the book's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedBook {
    pub(crate) providers: Vec<ProviderFeed>,
    /// (provider, provider event id) → event.
    pub(crate) events: BTreeMap<(String, String), EventId>,
    /// (provider, provider event id, provider market id) → market.
    pub(crate) markets: BTreeMap<(String, String, String), MarketId>,
    /// (market, provider outcome id) → selection.
    pub(crate) selections: BTreeMap<(MarketId, String), SelectionId>,
    /// Provider time and sequence of the last odds applied to a market.
    pub(crate) odds_stamps: BTreeMap<MarketId, (Timestamp, u64)>,
    /// Markets flagged delayed (derived from the providers; rebuilt when restored).
    pub(crate) delayed: BTreeSet<MarketId>,
    /// Selections the provider marked inactive: bets on them are refused.
    pub(crate) inactive: BTreeSet<SelectionId>,
    /// Cancellation windows in force per market, `[from, to)`.
    pub(crate) windows: BTreeMap<MarketId, Vec<(Timestamp, Timestamp)>>,
}

/// Every part of the feed state, for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedParts {
    pub providers: Vec<ProviderFeed>,
    pub events: Vec<(String, String, EventId)>,
    pub markets: Vec<(String, String, String, MarketId)>,
    pub selections: Vec<(MarketId, String, SelectionId)>,
    pub odds_stamps: Vec<(MarketId, Timestamp, u64)>,
    pub inactive: Vec<SelectionId>,
    pub windows: Vec<(MarketId, Vec<(Timestamp, Timestamp)>)>,
}

/// Whether keys are in strictly increasing order: the one encoding of a map.
fn strictly_increasing<K: Ord>(keys: impl Iterator<Item = K>) -> bool {
    let mut previous: Option<K> = None;
    for key in keys {
        if previous.as_ref().is_some_and(|previous| *previous >= key) {
            return false;
        }
        previous = Some(key);
    }
    true
}

impl FeedParts {
    /// Ids point inside the book's tables (`events`, `markets`, `selections` are their sizes)
    /// and every map is in its one canonical order, so that a decoded snapshot encodes back to
    /// the same bytes.
    pub fn check_structure(
        &self,
        event_held: &dyn Fn(u64) -> bool,
        market_held: &dyn Fn(u64) -> bool,
        selection_held: &dyn Fn(u64) -> bool,
    ) -> Result<(), String> {
        let mut names = BTreeSet::new();
        for provider in &self.providers {
            let lists = provider.markets.iter().chain(&provider.suspended).chain(&provider.delayed);
            if provider.name.is_empty()
                || provider.recent.len() > FEED_DIGESTS_MAX
                || !names.insert(provider.name.as_str())
                || !lists.into_iter().all(|m| market_held(m.0))
            {
                return Err(format!("feed provider {:?} is unnamed, repeated or lists unknown markets", provider.name));
            }
        }
        let canonical = strictly_increasing(self.events.iter().map(|(p, e, _)| (p, e)))
            && strictly_increasing(self.markets.iter().map(|(p, e, m, _)| (p, e, m)))
            && strictly_increasing(self.selections.iter().map(|(m, o, _)| (m, o)))
            && strictly_increasing(self.odds_stamps.iter().map(|(m, _, _)| m))
            && strictly_increasing(self.inactive.iter())
            && strictly_increasing(self.windows.iter().map(|(m, _)| m));
        let ids_known = self.events.iter().all(|(_, _, id)| event_held(id.0))
            && self.markets.iter().all(|(_, _, _, id)| market_held(id.0))
            && self.selections.iter().all(|(market, _, id)| market_held(market.0) && selection_held(id.0))
            && self.odds_stamps.iter().all(|(market, _, _)| market_held(market.0))
            && self.inactive.iter().all(|selection| selection_held(selection.0))
            && self.windows.iter().all(|(market, windows)| {
                market_held(market.0)
                    && !windows.is_empty()
                    && windows.len() <= FEED_CANCEL_WINDOWS_MAX
                    && windows.iter().all(|(from, to)| from < to)
            });
        if !canonical || !ids_known {
            return Err("feed mapping out of order or naming unknown ids".to_string());
        }
        Ok(())
    }
}

impl FeedBook {
    /// Drops every trace of a market that left the book: a provider's later messages about it
    /// find an unknown market (`unknown_market`, reported per item, never a panic).
    pub(crate) fn forget_market(&mut self, market: MarketId) {
        for provider in &mut self.providers {
            for list in [&mut provider.markets, &mut provider.suspended, &mut provider.delayed] {
                list.retain(|listed| *listed != market);
            }
        }
        self.markets.retain(|_, id| *id != market);
        self.selections.retain(|(owner, _), _| *owner != market);
        self.odds_stamps.remove(&market);
        self.delayed.remove(&market);
    }

    /// Drops the mapping of an event that left the book: a provider's fixture for it later
    /// creates a new event.
    pub(crate) fn forget_event(&mut self, event: EventId) {
        self.events.retain(|_, id| *id != event);
    }

    pub fn providers(&self) -> &[ProviderFeed] {
        &self.providers
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderFeed> {
        self.providers.iter().find(|provider| provider.name == name)
    }

    pub fn event(&self, provider: &str, event: &str) -> Option<EventId> {
        self.events.get(&(provider.to_string(), event.to_string())).copied()
    }

    pub fn market(&self, provider: &str, event: &str, market: &str) -> Option<MarketId> {
        self.markets.get(&(provider.to_string(), event.to_string(), market.to_string())).copied()
    }

    pub fn selection(&self, market: MarketId, outcome: &str) -> Option<SelectionId> {
        self.selections.get(&(market, outcome.to_string())).copied()
    }

    /// A provider's events, by its ids.
    pub fn events_of<'a>(&'a self, provider: &'a str) -> impl Iterator<Item = (&'a str, EventId)> + 'a {
        self.events
            .iter()
            .filter(move |((owner, _), _)| owner == provider)
            .map(|((_, event), id)| (event.as_str(), *id))
    }

    /// A provider's markets of one event, by its ids.
    pub fn markets_of<'a>(
        &'a self,
        provider: &'a str,
        event: &'a str,
    ) -> impl Iterator<Item = (&'a str, MarketId)> + 'a {
        self.markets
            .iter()
            .filter(move |((owner, of, _), _)| owner == provider && of == event)
            .map(|((_, _, market), id)| (market.as_str(), *id))
    }

    /// Whether the market's odds may be behind because its feed is stale.
    pub fn is_delayed(&self, market: MarketId) -> bool {
        self.delayed.contains(&market)
    }

    /// Whether the provider marked the selection inactive (bets on it are refused).
    pub fn is_inactive(&self, selection: SelectionId) -> bool {
        self.inactive.contains(&selection)
    }

    /// The cancellation windows in force on a market.
    pub fn cancel_windows(&self, market: MarketId) -> &[(Timestamp, Timestamp)] {
        self.windows.get(&market).map_or(&[], Vec::as_slice)
    }

    /// Whether a bet placed at `placed_at` on `market` falls in one of its cancellation windows.
    pub fn in_cancel_window(&self, market: MarketId, placed_at: Timestamp) -> bool {
        self.cancel_windows(market).iter().any(|(from, to)| *from <= placed_at && placed_at < *to)
    }

    /// Provider time of the last odds applied to the market.
    pub fn odds_stamp(&self, market: MarketId) -> Option<(Timestamp, u64)> {
        self.odds_stamps.get(&market).copied()
    }

    pub fn to_parts(&self) -> FeedParts {
        FeedParts {
            providers: self.providers.clone(),
            events: self.events.iter().map(|((provider, event), id)| (provider.clone(), event.clone(), *id)).collect(),
            markets: self
                .markets
                .iter()
                .map(|((provider, event, market), id)| (provider.clone(), event.clone(), market.clone(), *id))
                .collect(),
            selections: self.selections.iter().map(|((market, outcome), id)| (*market, outcome.clone(), *id)).collect(),
            odds_stamps: self.odds_stamps.iter().map(|(market, (at, sequence))| (*market, *at, *sequence)).collect(),
            inactive: self.inactive.iter().copied().collect(),
            windows: self.windows.iter().map(|(market, windows)| (*market, windows.clone())).collect(),
        }
    }

    pub fn from_parts(parts: FeedParts) -> FeedBook {
        let delayed = parts.providers.iter().flat_map(|provider| provider.delayed.iter().copied()).collect();
        FeedBook {
            providers: parts.providers,
            events: parts.events.into_iter().map(|(provider, event, id)| ((provider, event), id)).collect(),
            markets: parts
                .markets
                .into_iter()
                .map(|(provider, event, market, id)| ((provider, event, market), id))
                .collect(),
            selections: parts.selections.into_iter().map(|(market, outcome, id)| ((market, outcome), id)).collect(),
            odds_stamps: parts.odds_stamps.into_iter().map(|(market, at, sequence)| (market, (at, sequence))).collect(),
            delayed,
            inactive: parts.inactive.into_iter().collect(),
            windows: parts.windows.into_iter().collect(),
        }
    }

    fn provider_index(&mut self, name: &str) -> usize {
        match self.providers.iter().position(|provider| provider.name == name) {
            Some(index) => index,
            None => {
                self.providers.push(ProviderFeed { name: name.to_string(), ..ProviderFeed::default() });
                self.providers.len() - 1
            }
        }
    }
}

impl ProviderFeed {
    /// Whether `sequence` is new; records it if so.
    fn admit(&mut self, sequence: u64) -> bool {
        if sequence > self.highest {
            let shift = sequence - self.highest;
            self.window = if shift >= FEED_WINDOW { 0 } else { self.window << shift };
            self.window |= 1;
            self.highest = sequence;
            return true;
        }
        let age = self.highest - sequence;
        if age >= FEED_WINDOW || self.window & (1u128 << age) != 0 {
            return false;
        }
        self.window |= 1u128 << age;
        true
    }

    /// Whether a sequence-less message with this content digest is new; records it if so.
    fn admit_digest(&mut self, digest: u64) -> bool {
        if self.recent.contains(&digest) {
            return false;
        }
        if self.recent.len() >= FEED_DIGESTS_MAX {
            self.recent.remove(0);
        }
        self.recent.push(digest);
        true
    }
}

/// FNV-1a over a canonical encoding: the same message gives the same digest on every build
/// and platform (the book decides duplicates with it, and a replay decides them again).
struct Digest(u64);

impl Digest {
    fn new() -> Digest {
        Digest(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }
    fn text(&mut self, text: &str) {
        self.u64(text.len() as u64);
        self.bytes(text.as_bytes());
    }
    fn optional(&mut self, value: Option<u64>) {
        match value {
            None => self.bytes(&[0]),
            Some(value) => {
                self.bytes(&[1]);
                self.u64(value);
            }
        }
    }
    fn ratio(&mut self, ratio: Option<Ratio>) {
        self.optional(ratio.map(|r| u64::from(r.num())));
        self.optional(ratio.map(|r| u64::from(r.den())));
    }
}

impl FeedMessage {
    /// The content digest that identifies a sequence-less message: provider, time and items.
    pub fn digest(&self) -> u64 {
        let mut d = Digest::new();
        d.text(&self.provider);
        d.u64(self.timestamp);
        d.u64(self.items.len() as u64);
        for item in &self.items {
            match item {
                FeedItem::Fixture { event, name, sport, competition, starts_at }
                | FeedItem::Announce { event, name, sport, competition, starts_at, .. } => {
                    let tag = match item {
                        FeedItem::Announce { reschedule, .. } => 10 + u8::from(*reschedule) * 100,
                        _ => 0,
                    };
                    d.bytes(&[tag]);
                    for text in [event, name, sport, competition] {
                        d.text(text);
                    }
                    d.u64(*starts_at);
                }
                FeedItem::Market { event, market, name, kind, selections, each_way } => {
                    d.bytes(&[1]);
                    for text in [event, market, name, kind] {
                        d.text(text);
                    }
                    d.u64(selections.len() as u64);
                    for selection in selections {
                        d.text(&selection.id);
                        d.text(&selection.name);
                        d.u64(u64::from(selection.price.scaled()));
                    }
                    d.optional(each_way.map(|terms| u64::from(terms.places)));
                    d.ratio(each_way.map(|terms| terms.fraction));
                }
                FeedItem::Odds { event, markets } => {
                    d.bytes(&[2]);
                    d.text(event);
                    d.u64(markets.len() as u64);
                    for odds in markets {
                        d.text(&odds.market);
                        d.optional(odds.active.map(u64::from));
                        d.u64(odds.prices.len() as u64);
                        for (outcome, price) in &odds.prices {
                            d.text(outcome);
                            d.u64(u64::from(price.scaled()));
                        }
                    }
                }
                FeedItem::BetStop { event, markets } => {
                    d.bytes(&[3]);
                    d.text(event);
                    d.u64(markets.len() as u64);
                    for market in markets {
                        d.text(market);
                    }
                }
                FeedItem::InPlay { event, bet_delay_seconds } => {
                    d.bytes(&[4]);
                    d.text(event);
                    d.u64(u64::from(*bet_delay_seconds));
                }
                FeedItem::Ended { event } => {
                    d.bytes(&[5]);
                    d.text(event);
                }
                FeedItem::Settlement { event, market, results } => {
                    d.bytes(&[6]);
                    d.text(event);
                    d.text(market);
                    d.u64(results.len() as u64);
                    for result in results {
                        d.text(&result.selection);
                        d.text(result.outcome.as_str());
                        d.ratio(result.dead_heat);
                        d.ratio(result.void_factor);
                    }
                }
                FeedItem::Cancel { event, market } | FeedItem::Rollback { event, market } => {
                    d.bytes(&[if matches!(item, FeedItem::Cancel { .. }) { 7 } else { 8 }]);
                    d.text(event);
                    d.text(market);
                }
                FeedItem::SnapshotComplete => d.bytes(&[9]),
                FeedItem::Markets { event, markets } => {
                    d.bytes(&[11]);
                    d.text(event);
                    d.u64(markets.len() as u64);
                    for market in markets {
                        d.text(&market.market);
                        d.text(&market.name);
                        d.text(&market.kind);
                        d.bytes(&market.status.code().to_le_bytes());
                        d.u64(market.outcomes.len() as u64);
                        for outcome in &market.outcomes {
                            d.text(&outcome.id);
                            d.text(&outcome.name);
                            d.optional(outcome.odds.map(|odds| u64::from(odds.scaled())));
                            d.bytes(&[u8::from(outcome.active)]);
                        }
                    }
                }
                FeedItem::CancelWindow { event, market, from, to }
                | FeedItem::RollbackCancel { event, market, from, to } => {
                    d.bytes(&[if matches!(item, FeedItem::CancelWindow { .. }) { 12 } else { 13 }]);
                    d.text(event);
                    d.text(market);
                    d.optional(*from);
                    d.optional(*to);
                }
            }
        }
        d.0
    }
}

impl FeedMessage {
    /// Whether every id and name of the message is 1 to `FEED_ID_BYTES_MAX` bytes (a
    /// competition may be empty), so that an edge can refuse a malformed message before it
    /// reaches the journal. The book checks each item again when it applies it.
    pub fn check_text(&self) -> Result<(), &'static str> {
        let id = |text: &str| !text.is_empty() && text.len() <= FEED_ID_BYTES_MAX;
        let optional = |text: &str| text.len() <= FEED_ID_BYTES_MAX;
        let fits = id(&self.provider)
            && self.items.iter().all(|item| match item {
                FeedItem::Fixture { event, name, sport, competition, .. } => {
                    id(event) && id(name) && id(sport) && optional(competition)
                }
                FeedItem::Market { event, market, name, kind, selections, .. } => {
                    id(event)
                        && id(market)
                        && id(name)
                        && optional(kind)
                        && selections.iter().all(|selection| id(&selection.id) && id(&selection.name))
                }
                FeedItem::Odds { event, markets } => {
                    id(event)
                        && markets.iter().all(|odds| id(&odds.market) && odds.prices.iter().all(|(price, _)| id(price)))
                }
                FeedItem::BetStop { event, markets } => id(event) && markets.iter().all(|market| id(market)),
                FeedItem::InPlay { event, .. } | FeedItem::Ended { event } => id(event),
                FeedItem::Settlement { event, market, results } => {
                    id(event) && id(market) && results.iter().all(|result| id(&result.selection))
                }
                FeedItem::Cancel { event, market }
                | FeedItem::Rollback { event, market }
                | FeedItem::CancelWindow { event, market, .. }
                | FeedItem::RollbackCancel { event, market, .. } => id(event) && id(market),
                FeedItem::SnapshotComplete => true,
                FeedItem::Announce { event, name, sport, competition, .. } => {
                    id(event) && id(name) && id(sport) && optional(competition)
                }
                FeedItem::Markets { event, markets } => {
                    id(event)
                        && markets.iter().all(|market| {
                            id(&market.market)
                                && id(&market.name)
                                && optional(&market.kind)
                                && market.outcomes.iter().all(|outcome| id(&outcome.id) && id(&outcome.name))
                        })
                }
            });
        if fits {
            Ok(())
        } else {
            Err("feed ids and names are 1 to 200 bytes")
        }
    }
}

/// Whether odds stamped `stamp` are stale against the last applied: with a sequence, no later
/// than the last; without one (sequence 0), earlier than the last.
fn older(stamp: (Timestamp, u64), last: (Timestamp, u64)) -> bool {
    if stamp.1 == 0 {
        stamp.0 < last.0
    } else {
        last >= stamp
    }
}

/// A cancellation window `[from, to)`; `None` when neither end is given (the whole market).
fn window(from: Option<Timestamp>, to: Option<Timestamp>) -> Result<Option<(Timestamp, Timestamp)>, Rejection> {
    if from.is_none() && to.is_none() {
        return Ok(None);
    }
    let window = (from.unwrap_or(0), to.unwrap_or(Timestamp::MAX));
    if window.0 >= window.1 {
        return Err(Rejection::InvalidRequest { reason: "a cancellation window ends after it starts" });
    }
    Ok(Some(window))
}

fn check_external(id: &str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > NAME_BYTES_MAX {
        Err(Rejection::InvalidRequest { reason: "feed ids are 1 to 200 bytes" })
    } else {
        Ok(())
    }
}

impl Book {
    pub fn feed(&self) -> &FeedBook {
        &self.feed
    }

    pub(crate) fn apply_feed(&mut self, message: &FeedMessage, events: &mut Vec<BookEvent>) -> Reply {
        check_external(&message.provider)?;
        if message.items.len() > FEED_ITEMS_MAX {
            return Err(Rejection::InvalidRequest { reason: "too many items in a feed message" });
        }
        let provider = self.feed.provider_index(&message.provider);
        let new = if message.sequence == 0 {
            self.feed.providers[provider].admit_digest(message.digest())
        } else {
            self.feed.providers[provider].admit(message.sequence)
        };
        if !new {
            return Ok(Ack::Feed(FeedApplied { duplicate: true, applied: 0, stale: 0, ignored: Vec::new() }));
        }
        let mut outcome = FeedApplied { duplicate: false, applied: 0, stale: 0, ignored: Vec::new() };
        for (index, item) in message.items.iter().enumerate() {
            match self.apply_feed_item(provider, message, item, events) {
                Ok(true) => outcome.applied += 1,
                Ok(false) => outcome.stale += 1,
                Err(rejection) => outcome.ignored.push((index as u32, rejection)),
            }
        }
        Ok(Ack::Feed(outcome))
    }

    /// Applies one item; `Ok(false)` when it was stale odds.
    fn apply_feed_item(
        &mut self,
        provider: usize,
        message: &FeedMessage,
        item: &FeedItem,
        events: &mut Vec<BookEvent>,
    ) -> Result<bool, Rejection> {
        let name = &message.provider;
        match item {
            FeedItem::Fixture { event, name: title, sport, competition, starts_at } => {
                check_external(event)?;
                match self.feed.event(name, event) {
                    Some(id) => {
                        crate::trading::check_name(title)?;
                        let found = &mut self.events[id.index()];
                        found.name = title.clone();
                        found.starts_at = *starts_at;
                    }
                    None => {
                        let Ack::EventCreated(id) = self.create_event(title, sport, competition, *starts_at, events)?
                        else {
                            unreachable!("create_event acknowledges with EventCreated");
                        };
                        self.feed.events.insert((name.clone(), event.clone()), id);
                    }
                }
                Ok(true)
            }
            FeedItem::Market { event, market, name: title, kind, selections, each_way } => {
                check_external(market)?;
                let event_id = self.feed.event(name, event).ok_or(Rejection::UnknownEvent)?;
                if self.feed.market(name, event, market).is_some() {
                    return Ok(true);
                }
                let mut seen = BTreeSet::new();
                for selection in selections {
                    check_external(&selection.id)?;
                    if !seen.insert(selection.id.as_str()) {
                        return Err(Rejection::InvalidRequest { reason: "feed outcome ids repeat" });
                    }
                }
                let new: Vec<NewSelection> = selections
                    .iter()
                    .map(|selection| NewSelection { name: selection.name.clone(), price: selection.price })
                    .collect();
                let Ack::MarketCreated { market: id, selections: ids } =
                    self.create_market(event_id, title, kind, &new, *each_way, events)?
                else {
                    unreachable!("create_market acknowledges with MarketCreated");
                };
                self.feed.markets.insert((name.clone(), event.clone(), market.clone()), id);
                for (selection, id_in_book) in selections.iter().zip(ids) {
                    self.feed.selections.insert((id, selection.id.clone()), id_in_book);
                }
                self.adopt_market(provider, id, events);
                Ok(true)
            }
            FeedItem::Odds { event, markets } => {
                // Markets apply one by one: one the book cannot take does not hold back the rest,
                // and the item reports the first refusal.
                let mut refused = None;
                let mut any = false;
                let mut stale = false;
                for odds in markets {
                    match self.apply_odds(provider, name, event, odds, (message.timestamp, message.sequence), events) {
                        Ok(true) => any = true,
                        Ok(false) => stale = true,
                        Err(rejection) => refused = refused.or(Some(rejection)),
                    }
                }
                match refused {
                    Some(rejection) => Err(rejection),
                    None => Ok(any || !stale),
                }
            }
            FeedItem::BetStop { event, markets } => {
                let event_id = self.feed.event(name, event).ok_or(Rejection::UnknownEvent)?;
                let targets: Vec<MarketId> = if markets.is_empty() {
                    self.events[event_id.index()].markets.clone()
                } else {
                    markets
                        .iter()
                        .map(|market| self.feed.market(name, event, market).ok_or(Rejection::UnknownMarket))
                        .collect::<Result<_, _>>()?
                };
                for market in targets {
                    if self.markets[market.index()].status == MarketStatus::Open {
                        self.change_market_status(market, MarketStatus::Suspended, events);
                    }
                }
                Ok(true)
            }
            FeedItem::InPlay { event, bet_delay_seconds } => {
                let event_id = self.feed.event(name, event).ok_or(Rejection::UnknownEvent)?;
                self.set_in_play(event_id, *bet_delay_seconds, events)?;
                Ok(true)
            }
            FeedItem::Ended { event } => {
                let event_id = self.feed.event(name, event).ok_or(Rejection::UnknownEvent)?;
                self.end_event(event_id, events)?;
                Ok(true)
            }
            FeedItem::Settlement { event, market, results } => {
                let market_id = self.feed.market(name, event, market).ok_or(Rejection::UnknownMarket)?;
                let requests = results
                    .iter()
                    .map(|result| {
                        Ok(ResultRequest {
                            selection: self
                                .feed
                                .selection(market_id, &result.selection)
                                .ok_or(Rejection::SelectionUnavailable)?,
                            outcome: result.outcome,
                            dead_heat: result.dead_heat,
                            void_factor: result.void_factor,
                        })
                    })
                    .collect::<Result<Vec<_>, Rejection>>()?;
                self.settle_market(market_id, &requests, events)?;
                Ok(true)
            }
            FeedItem::Cancel { event, market } => {
                let market_id = self.feed.market(name, event, market).ok_or(Rejection::UnknownMarket)?;
                self.void_market(market_id, events)?;
                Ok(true)
            }
            FeedItem::Rollback { event, market } => {
                let market_id = self.feed.market(name, event, market).ok_or(Rejection::UnknownMarket)?;
                self.unsettle_market(market_id, events)?;
                Ok(true)
            }
            FeedItem::SnapshotComplete => {
                self.recover_provider(provider, events);
                Ok(true)
            }
            FeedItem::Announce { event, name: title, sport, competition, starts_at, reschedule } => {
                check_external(event)?;
                match self.feed.event(name, event) {
                    Some(id) => {
                        if *reschedule {
                            self.events[id.index()].starts_at = *starts_at;
                        }
                    }
                    None => {
                        let Ack::EventCreated(id) = self.create_event(title, sport, competition, *starts_at, events)?
                        else {
                            unreachable!("create_event acknowledges with EventCreated");
                        };
                        self.feed.events.insert((name.clone(), event.clone()), id);
                    }
                }
                Ok(true)
            }
            FeedItem::Markets { event, markets } => {
                let event_id = self.feed.event(name, event).ok_or(Rejection::UnknownEvent)?;
                let mut refused = None;
                let mut any = false;
                let mut stale = false;
                for market in markets {
                    match self.apply_feed_market(provider, event_id, event, market, message, events) {
                        Ok(true) => any = true,
                        Ok(false) => stale = true,
                        Err(rejection) => refused = refused.or(Some(rejection)),
                    }
                }
                match refused {
                    Some(rejection) => Err(rejection),
                    None => Ok(any || !stale),
                }
            }
            FeedItem::CancelWindow { event, market, from, to } => {
                let market_id = self.feed.market(name, event, market).ok_or(Rejection::UnknownMarket)?;
                match window(*from, *to)? {
                    None => {
                        self.void_market(market_id, events)?;
                    }
                    Some(window) => self.cancel_window(market_id, window, events)?,
                }
                Ok(true)
            }
            FeedItem::RollbackCancel { event, market, from, to } => {
                let market_id = self.feed.market(name, event, market).ok_or(Rejection::UnknownMarket)?;
                match window(*from, *to)? {
                    None => {
                        if self.markets[market_id.index()].status != MarketStatus::Voided {
                            return Err(Rejection::NotSettled);
                        }
                        self.unsettle_market(market_id, events)?;
                    }
                    Some(window) => self.rollback_cancel_window(market_id, window, events)?,
                }
                Ok(true)
            }
        }
    }

    /// One market of a `Markets` item; `Ok(false)` when its odds were stale.
    fn apply_feed_market(
        &mut self,
        provider: usize,
        event_id: EventId,
        event: &str,
        listed: &FeedMarket,
        message: &FeedMessage,
        events: &mut Vec<BookEvent>,
    ) -> Result<bool, Rejection> {
        check_external(&listed.market)?;
        let name = &message.provider;
        let mut seen = BTreeSet::new();
        for outcome in &listed.outcomes {
            check_external(&outcome.id)?;
            if !seen.insert(outcome.id.as_str()) {
                return Err(Rejection::InvalidRequest { reason: "feed outcome ids repeat" });
            }
        }
        if listed.status == FeedMarketStatus::HandedOver {
            // Another producer of the provider prices it now.
            return Ok(true);
        }
        let stamp = (message.timestamp, message.sequence);
        let market = match self.feed.market(name, event, &listed.market) {
            Some(market) => {
                if self.feed.odds_stamps.get(&market).is_some_and(|last| older(stamp, *last)) {
                    return Ok(false);
                }
                market
            }
            None => {
                let priced: Vec<&FeedOutcome> =
                    listed.outcomes.iter().filter(|outcome| outcome.odds.is_some()).collect();
                if priced.is_empty() {
                    // Listed without odds: nothing to offer yet, and nothing wrong.
                    return Ok(true);
                }
                let new: Vec<NewSelection> = priced
                    .iter()
                    .map(|outcome| NewSelection {
                        name: outcome.name.clone(),
                        price: outcome.odds.unwrap_or(Odds::EVENS_REFUND),
                    })
                    .collect();
                let Ack::MarketCreated { market: id, selections: ids } =
                    self.create_market(event_id, &listed.name, &listed.kind, &new, None, events)?
                else {
                    unreachable!("create_market acknowledges with MarketCreated");
                };
                self.feed.markets.insert((name.clone(), event.to_string(), listed.market.clone()), id);
                for (outcome, id_in_book) in priced.iter().zip(ids) {
                    self.feed.selections.insert((id, outcome.id.clone()), id_in_book);
                }
                self.adopt_market(provider, id, events);
                id
            }
        };
        if self.markets[market.index()].status.is_resulted() {
            // Settled or cancelled here: its prices no longer matter.
            return Ok(true);
        }
        let mut prices = Vec::new();
        for outcome in &listed.outcomes {
            let known = self.feed.selection(market, &outcome.id);
            let selection = match (known, outcome.odds) {
                (Some(selection), _) => selection,
                (None, Some(price)) => self.add_feed_selection(market, &outcome.id, &outcome.name, price, events)?,
                (None, None) => continue,
            };
            if let Some(price) = outcome.odds {
                prices.push((selection, price));
            }
            if outcome.active {
                self.feed.inactive.remove(&selection);
            } else {
                self.feed.inactive.insert(selection);
            }
        }
        self.set_prices(market, &prices, events)?;
        self.feed.odds_stamps.insert(market, stamp);
        let held = self.feed.providers[provider].stale.is_some();
        let status = self.markets[market.index()].status;
        match listed.status {
            FeedMarketStatus::Active => {
                if !held && status == MarketStatus::Suspended {
                    self.set_market_status(market, MarketAction::Resume, events)?;
                }
            }
            FeedMarketStatus::HandedOver => {}
            FeedMarketStatus::Inactive
            | FeedMarketStatus::Suspended
            | FeedMarketStatus::Settled
            | FeedMarketStatus::Cancelled => {
                if status == MarketStatus::Open {
                    self.set_market_status(market, MarketAction::Suspend, events)?;
                }
            }
        }
        Ok(true)
    }

    /// Registers a new market with its provider; one born while its feed is stale waits for
    /// the recovery like the others.
    fn adopt_market(&mut self, provider: usize, id: MarketId, events: &mut Vec<BookEvent>) {
        let feed = &mut self.feed.providers[provider];
        feed.markets.push(id);
        match feed.stale {
            Some(StaleMode::Suspend) => {
                feed.suspended.push(id);
                self.change_market_status(id, MarketStatus::Suspended, events);
            }
            Some(StaleMode::Delay) => {
                feed.delayed.push(id);
                self.feed.delayed.insert(id);
            }
            None => {}
        }
    }

    /// An outcome the provider prices for the first time becomes a selection of its market.
    fn add_feed_selection(
        &mut self,
        market: MarketId,
        outcome: &str,
        title: &str,
        price: Odds,
        events: &mut Vec<BookEvent>,
    ) -> Result<SelectionId, Rejection> {
        crate::trading::check_name(title)?;
        let found = &self.markets[market.index()];
        if found.selections.len() >= SELECTIONS_PER_MARKET_MAX {
            return Err(Rejection::InvalidRequest { reason: "a market has 1 to 64 selections" });
        }
        let id = SelectionId(self.selections.len() as u64 + 1);
        self.selections.push(Selection {
            id,
            market,
            name: title.to_string(),
            price,
            price_version: 1,
            liability: domain::Money::ZERO,
            liabilities: Vec::new(),
        });
        self.markets[market.index()].selections.push(id);
        self.feed.selections.insert((market, outcome.to_string()), id);
        events.push(BookEvent::PriceChanged { market, selection: id, price, version: 1 });
        Ok(id)
    }

    /// Bets on the market placed in the window, in placement order.
    fn bets_in_window(&self, market: MarketId, (from, to): (Timestamp, Timestamp)) -> Vec<BetId> {
        self.markets[market.index()]
            .bets
            .iter()
            .copied()
            .filter(|bet| {
                let placed = self.bets[bet.index()].placed_at;
                from <= placed && placed < to
            })
            .collect()
    }

    /// Voids the legs on `market` of the bets placed in the window and keeps them void.
    fn cancel_window(
        &mut self,
        market: MarketId,
        window: (Timestamp, Timestamp),
        events: &mut Vec<BookEvent>,
    ) -> Result<(), Rejection> {
        let listed = self.feed.windows.get(&market).map_or(&[][..], Vec::as_slice);
        if listed.contains(&window) {
            return Ok(());
        }
        if listed.len() >= FEED_CANCEL_WINDOWS_MAX {
            return Err(Rejection::InvalidRequest { reason: "too many cancellation windows on a market" });
        }
        self.unpack_market(market);
        let in_window = self.bets_in_window(market, window);
        // Before anything changes: reversing the settled bets must not take a balance or a
        // liability past the money maximum (found by the simulator: it panicked).
        self.check_reversal_amounts(&in_window)?;
        self.feed.windows.entry(market).or_default().push(window);
        for bet in in_window {
            let found = &self.bets[bet.index()];
            let void_here = found
                .legs
                .iter()
                .filter(|leg| leg.market == market)
                .all(|leg| leg.result.is_some_and(|result| result.outcome == Outcome::Void));
            match found.status {
                BetStatus::Pending => self.reject_pending(bet, Rejection::MarketClosed, events),
                BetStatus::Accepted => {}
                // Already void on this market (the whole market was cancelled): nothing to redo.
                status if status.is_settled_by_result() && void_here => continue,
                status if status.is_settled_by_result() => self.reverse_settlement(bet, events),
                _ => continue,
            }
            if self.bets[bet.index()].status != BetStatus::Accepted {
                continue;
            }
            for leg in self.bets[bet.index()].legs.iter_mut().filter(|leg| leg.market == market) {
                leg.result = Some(SelectionResult {
                    selection: leg.selection,
                    outcome: Outcome::Void,
                    dead_heat: Ratio::ONE,
                    void_factor: Ratio::ZERO,
                });
            }
            self.try_settle(bet, events);
        }
        Ok(())
    }

    /// Withdraws a cancellation window: its bets reopen, or take the market's results if it
    /// has them.
    fn rollback_cancel_window(
        &mut self,
        market: MarketId,
        window: (Timestamp, Timestamp),
        events: &mut Vec<BookEvent>,
    ) -> Result<(), Rejection> {
        let listed = self.feed.windows.get(&market).ok_or(Rejection::NotSettled)?;
        let position = listed.iter().position(|listed| *listed == window).ok_or(Rejection::NotSettled)?;
        self.unpack_market(market);
        let in_window = self.bets_in_window(market, window);
        self.check_reversal_amounts(&in_window)?;
        let windows = self.feed.windows.get_mut(&market).ok_or(Rejection::NotSettled)?;
        windows.remove(position);
        if windows.is_empty() {
            self.feed.windows.remove(&market);
        }
        for bet in in_window {
            let placed = self.bets[bet.index()].placed_at;
            if self.feed.in_cancel_window(market, placed) {
                continue;
            }
            let status = self.bets[bet.index()].status;
            if status.is_settled_by_result() {
                self.reverse_settlement(bet, events);
            } else if status != BetStatus::Accepted {
                continue;
            }
            let found = &self.markets[market.index()];
            let results = if found.status.is_resulted() { found.results.clone() } else { Vec::new() };
            for leg in self.bets[bet.index()].legs.iter_mut().filter(|leg| leg.market == market) {
                leg.result = results.iter().find(|result| result.selection == leg.selection).copied();
            }
            self.try_settle(bet, events);
        }
        Ok(())
    }

    /// Applies the odds of one market unless odds as new or newer were applied before;
    /// `Ok(false)` when they were stale.
    fn apply_odds(
        &mut self,
        provider: usize,
        name: &str,
        event: &str,
        odds: &FeedOdds,
        stamp: (Timestamp, u64),
        events: &mut Vec<BookEvent>,
    ) -> Result<bool, Rejection> {
        let market = self.feed.market(name, event, &odds.market).ok_or(Rejection::UnknownMarket)?;
        if self.feed.odds_stamps.get(&market).is_some_and(|last| older(stamp, *last)) {
            return Ok(false);
        }
        let prices = odds
            .prices
            .iter()
            .map(|(outcome, price)| {
                Ok((self.feed.selection(market, outcome).ok_or(Rejection::SelectionUnavailable)?, *price))
            })
            .collect::<Result<Vec<_>, Rejection>>()?;
        self.set_prices(market, &prices, events)?;
        self.feed.odds_stamps.insert(market, stamp);
        let held = self.feed.providers[provider].stale.is_some();
        match odds.active {
            Some(false) => {
                self.set_market_status(market, MarketAction::Suspend, events)?;
            }
            // A stale feed's markets wait for its recovery snapshot to complete.
            Some(true) if !held && self.markets[market.index()].status == MarketStatus::Suspended => {
                self.set_market_status(market, MarketAction::Resume, events)?;
            }
            _ => {}
        }
        Ok(true)
    }

    /// The feed adapter's judgement of a provider: stale (suspend or delay its markets) or
    /// fresh again (nothing reopens until its recovery snapshot completes).
    pub(crate) fn set_feed_health(
        &mut self,
        provider: &str,
        stale: Option<StaleMode>,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        check_external(provider)?;
        let index = self.feed.provider_index(provider);
        let feed = &mut self.feed.providers[index];
        let Some(mode) = stale else {
            return Ok(Ack::Done);
        };
        if feed.stale == Some(mode) {
            return Ok(Ack::Done);
        }
        feed.stale = Some(mode);
        let markets = feed.markets.clone();
        for market in markets {
            let status = self.markets[market.index()].status;
            match mode {
                StaleMode::Suspend if status == MarketStatus::Open => {
                    self.change_market_status(market, MarketStatus::Suspended, events);
                    self.feed.providers[index].suspended.push(market);
                }
                StaleMode::Delay
                    if matches!(status, MarketStatus::Open | MarketStatus::Suspended)
                        && !self.feed.delayed.contains(&market) =>
                {
                    self.feed.delayed.insert(market);
                    self.feed.providers[index].delayed.push(market);
                }
                _ => {}
            }
        }
        Ok(Ack::Done)
    }

    fn recover_provider(&mut self, provider: usize, events: &mut Vec<BookEvent>) {
        let feed = &mut self.feed.providers[provider];
        feed.stale = None;
        let suspended = std::mem::take(&mut feed.suspended);
        let delayed = std::mem::take(&mut feed.delayed);
        for market in delayed {
            self.feed.delayed.remove(&market);
        }
        for market in suspended {
            if self.markets[market.index()].status == MarketStatus::Suspended {
                self.change_market_status(market, MarketStatus::Open, events);
            }
        }
    }
}

impl Book {
    /// The feed's mapping points at what exists, each market of a provider is listed once, and
    /// what the feed suspended or delayed belongs to a stale provider.
    pub(crate) fn check_feed_invariants(&self) -> Result<(), String> {
        let feed = &self.feed;
        for ((provider, event), id) in &feed.events {
            if self.events.get(id.index()).is_none() {
                return Err(format!("feed event {provider}/{event} maps to missing {id}"));
            }
        }
        let mut owners = BTreeMap::new();
        for provider in &feed.providers {
            if (provider.highest > 0) != (provider.window & 1 == 1) {
                return Err(format!("feed provider {} window does not hold its highest sequence", provider.name));
            }
            if provider.stale.is_none() && !(provider.suspended.is_empty() && provider.delayed.is_empty()) {
                return Err(format!("feed provider {} is fresh but still holds markets", provider.name));
            }
            for market in &provider.markets {
                if owners.insert(*market, provider.name.as_str()).is_some() {
                    return Err(format!("{market} belongs to two feed providers"));
                }
            }
        }
        for ((provider, _, external), id) in &feed.markets {
            if self.markets.get(id.index()).is_none() || owners.get(id) != Some(&provider.as_str()) {
                return Err(format!("feed market {provider}/{external} maps to {id}, not among its provider's"));
            }
        }
        for ((market, outcome), selection) in &feed.selections {
            if self.selections.get(selection.index()).is_none_or(|found| found.market != *market) {
                return Err(format!("feed outcome {outcome} of {market} maps to {selection} of another market"));
            }
        }
        let delayed: BTreeSet<MarketId> =
            feed.providers.iter().flat_map(|provider| provider.delayed.iter().copied()).collect();
        if delayed != feed.delayed {
            return Err("delayed markets differ from those their providers delayed".to_string());
        }
        Ok(())
    }
}
