//! Odds-feed messages, decided by the book.
//!
//! A provider names fixtures, markets and outcomes with its own ids. The book keeps the mapping
//! from those ids to its own, which messages it has already applied (by the provider's sequence)
//! and the provider time of the last odds applied to each market, so that none of it is lost on a
//! restart, a replay decides it again, and the audit trail shows what the feed did:
//!
//! - a message is applied at most once: a sequence already seen, or older than the window the
//!   book remembers, is answered `duplicate` and changes nothing;
//! - an older price never overwrites a newer one: odds stamped no later than the last odds
//!   applied to the market are answered `stale` and change nothing;
//! - when the feed adapter judges a provider stale (`FeedHealth`), the provider's open markets
//!   are suspended, or marked delayed, as configured; they reopen only when the provider's
//!   recovery snapshot has brought prices back (`SnapshotComplete`).
//!
//! Items of one message are applied in order; an item the book cannot apply (a settlement for
//! a market it never heard of) is skipped and reported with its rejection, and the rest still
//! apply: one bad item must not hold back the prices behind it.

use std::collections::{BTreeMap, BTreeSet};

use domain::{Odds, Ratio};

use crate::book::Book;
use crate::catalog::{EachWayTerms, MarketStatus, Outcome};
use crate::command::{MarketAction, NewSelection, ResultRequest};
use crate::constants::{FEED_ID_BYTES_MAX, FEED_ITEMS_MAX, FEED_WINDOW, NAME_BYTES_MAX};
use crate::event::{Ack, BookEvent, Reply};
use crate::ids::{EventId, MarketId, SelectionId, Timestamp};
use crate::rejection::Rejection;

/// One message of a provider: a sequence for de-duplication, the provider's time, and what
/// it says, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedMessage {
    pub provider: String,
    /// The provider's message sequence, from 1, increasing. Primary and backup sources of one
    /// provider carry the same sequence, so a message seen on both applies once.
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
}

/// Every part of the feed state, for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedParts {
    pub providers: Vec<ProviderFeed>,
    pub events: Vec<(String, String, EventId)>,
    pub markets: Vec<(String, String, String, MarketId)>,
    pub selections: Vec<(MarketId, String, SelectionId)>,
    pub odds_stamps: Vec<(MarketId, Timestamp, u64)>,
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
                || !names.insert(provider.name.as_str())
                || !lists.into_iter().all(|m| market_held(m.0))
            {
                return Err(format!("feed provider {:?} is unnamed, repeated or lists unknown markets", provider.name));
            }
        }
        let canonical = strictly_increasing(self.events.iter().map(|(p, e, _)| (p, e)))
            && strictly_increasing(self.markets.iter().map(|(p, e, m, _)| (p, e, m)))
            && strictly_increasing(self.selections.iter().map(|(m, o, _)| (m, o)))
            && strictly_increasing(self.odds_stamps.iter().map(|(m, _, _)| m));
        let ids_known = self.events.iter().all(|(_, _, id)| event_held(id.0))
            && self.markets.iter().all(|(_, _, _, id)| market_held(id.0))
            && self.selections.iter().all(|(market, _, id)| market_held(market.0) && selection_held(id.0))
            && self.odds_stamps.iter().all(|(market, _, _)| market_held(market.0));
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
                FeedItem::Cancel { event, market } | FeedItem::Rollback { event, market } => id(event) && id(market),
                FeedItem::SnapshotComplete => true,
            });
        if fits {
            Ok(())
        } else {
            Err("feed ids and names are 1 to 200 bytes")
        }
    }
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
        if message.sequence == 0 {
            return Err(Rejection::InvalidRequest { reason: "feed sequences start at 1" });
        }
        if message.items.len() > FEED_ITEMS_MAX {
            return Err(Rejection::InvalidRequest { reason: "too many items in a feed message" });
        }
        let provider = self.feed.provider_index(&message.provider);
        if !self.feed.providers[provider].admit(message.sequence) {
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
                let feed = &mut self.feed.providers[provider];
                feed.markets.push(id);
                // A market born while its feed is stale waits for the recovery like the others.
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
        }
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
        if self.feed.odds_stamps.get(&market).is_some_and(|last| *last >= stamp) {
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
