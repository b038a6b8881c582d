//! The model of a provider's feed messages (the book's normalised form of a Unified Odds Feed
//! message): the provider-to-book mapping of events, markets and outcomes, the order of odds,
//! duplicates, settlements with their factors, cancellations with and without a time window,
//! and the rollbacks of both.
//!
//! The rules, stated here on their own terms:
//! - a message applies at most once: one equal in provider, time and items to one of the last
//!   `DIGESTS_MAX` applied is a duplicate and changes nothing;
//! - items apply in order; one that cannot apply is refused with its rejection and the rest
//!   still apply; odds of a market stamped earlier than the last applied to it are stale;
//! - a market is created when it is first listed with a priced outcome; an outcome priced later
//!   becomes a selection; an outcome listed inactive refuses bets (`selection_unavailable`);
//!   status 1 reopens a suspended market, the others suspend an open one;
//! - a cancellation window `[from, to)` (an end left out is unbounded) voids, on its market, the
//!   legs of the bets placed in it, whatever the market's results say, until it is withdrawn;
//!   no bet is taken on a market while now is inside one of its windows. A bet settled by
//!   result whose leg there was not void already is reversed exactly and settled again; a bet
//!   still in its in-play delay is rejected. Withdrawing the window gives those bets the
//!   market's results again (or reopens them). A rollback of a settlement leaves the bets of a
//!   window void. A cancellation without a window voids the market, and its rollback withdraws
//!   that void (only of a voided market).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use book::{
    Ack, BetStatus, FeedApplied, FeedItem, FeedMarket, FeedMarketStatus, FeedMessage, MarketAction, MarketStatus,
    NewSelection, Rejection, Reply, ResultRequest, SelectionId,
};

use super::{invalid, name_ok, Auditor, SelectionModel, NAME_BYTES_MAX, SELECTIONS_MAX};

/// Messages remembered for duplicates, per provider.
pub const DIGESTS_MAX: usize = 4_096;
/// Items in one message.
const ITEMS_MAX: usize = 1_024;
/// Cancellation windows in force per market.
pub const WINDOWS_MAX: usize = 64;

/// What the model knows of the providers' feeds.
#[derive(Clone, Debug, Default)]
pub struct FeedModel {
    /// (provider, provider event) → event.
    pub events: BTreeMap<(String, String), u64>,
    /// (provider, provider event, provider market) → market.
    pub markets: BTreeMap<(String, String, String), u64>,
    /// (market, provider outcome) → selection.
    pub selections: BTreeMap<(u64, String), u64>,
    /// Provider time of the last odds applied to a market.
    pub stamps: BTreeMap<u64, u64>,
    /// Selections the provider listed inactive.
    pub inactive: BTreeSet<u64>,
    /// Windows in force per market, `[from, to)`, in the order they came.
    pub windows: BTreeMap<u64, Vec<(u64, u64)>>,
    /// The last messages applied per provider (their time and items), oldest first.
    pub recent: BTreeMap<String, VecDeque<(u64, Vec<FeedItem>)>>,
}

impl FeedModel {
    /// Whether a bet placed at `placed_at` on `market` is inside one of its windows.
    pub fn in_window(&self, market: u64, placed_at: u64) -> bool {
        self.windows
            .get(&market)
            .is_some_and(|windows| windows.iter().any(|(from, to)| *from <= placed_at && placed_at < *to))
    }

    /// The provider's outcome id of a selection.
    pub fn outcome_of(&self, selection: u64) -> Option<&str> {
        self.selections.iter().find(|(_, id)| **id == selection).map(|((_, outcome), _)| outcome.as_str())
    }
}

fn external_ok(id: &str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > NAME_BYTES_MAX {
        Err(invalid("feed ids are 1 to 200 bytes"))
    } else {
        Ok(())
    }
}

/// A window from its ends; `None` for the whole market.
fn window(from: Option<u64>, to: Option<u64>) -> Result<Option<(u64, u64)>, Rejection> {
    if from.is_none() && to.is_none() {
        return Ok(None);
    }
    let (from, to) = (from.unwrap_or(0), to.unwrap_or(u64::MAX));
    if from >= to {
        return Err(invalid("a cancellation window ends after it starts"));
    }
    Ok(Some((from, to)))
}

impl Auditor {
    pub(super) fn feed_message(&mut self, message: &FeedMessage) -> Reply {
        external_ok(&message.provider)?;
        if message.items.len() > ITEMS_MAX {
            return Err(invalid("too many items in a feed message"));
        }
        assert_eq!(message.sequence, 0, "the workload's provider has no sequence (a Unified Odds Feed)");
        let recent = self.feed.recent.entry(message.provider.clone()).or_default();
        let content = (message.timestamp, message.items.clone());
        if recent.contains(&content) {
            return Ok(Ack::Feed(FeedApplied { duplicate: true, applied: 0, stale: 0, ignored: Vec::new() }));
        }
        if recent.len() == DIGESTS_MAX {
            recent.pop_front();
        }
        recent.push_back(content);
        let mut outcome = FeedApplied { duplicate: false, applied: 0, stale: 0, ignored: Vec::new() };
        for (index, item) in message.items.iter().enumerate() {
            match self.feed_item(&message.provider, message.timestamp, item) {
                Ok(true) => outcome.applied += 1,
                Ok(false) => outcome.stale += 1,
                Err(rejection) => outcome.ignored.push((index as u32, rejection)),
            }
        }
        Ok(Ack::Feed(outcome))
    }

    fn feed_market_id(&self, provider: &str, event: &str, market: &str) -> Result<u64, Rejection> {
        self.feed
            .markets
            .get(&(provider.to_string(), event.to_string(), market.to_string()))
            .copied()
            .ok_or(Rejection::UnknownMarket)
    }

    /// One item; `Ok(false)` for stale odds.
    fn feed_item(&mut self, provider: &str, timestamp: u64, item: &FeedItem) -> Result<bool, Rejection> {
        match item {
            FeedItem::Announce { event, name, sport, competition, starts_at, reschedule } => {
                external_ok(event)?;
                match self.feed.events.get(&(provider.to_string(), event.clone())) {
                    Some(&id) => {
                        if *reschedule {
                            self.events[id as usize - 1].starts_at = *starts_at;
                        }
                    }
                    None => {
                        let Ack::EventCreated(id) = self.create_event(name, sport, competition, *starts_at)? else {
                            unreachable!("an event is created or refused");
                        };
                        self.events[id.0 as usize - 1].feed = Some(event.clone());
                        self.feed.events.insert((provider.to_string(), event.clone()), id.0);
                    }
                }
                Ok(true)
            }
            FeedItem::Markets { event, markets } => {
                let event_id =
                    *self.feed.events.get(&(provider.to_string(), event.clone())).ok_or(Rejection::UnknownEvent)?;
                let (mut refused, mut any, mut stale) = (None, false, false);
                for listed in markets {
                    match self.feed_market(provider, timestamp, event_id, event, listed) {
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
            FeedItem::Settlement { event, market, results } => {
                let market = self.feed_market_id(provider, event, market)?;
                let requests = results
                    .iter()
                    .map(|result| {
                        let selection = self
                            .feed
                            .selections
                            .get(&(market, result.selection.clone()))
                            .ok_or(Rejection::SelectionUnavailable)?;
                        Ok(ResultRequest {
                            selection: SelectionId(*selection),
                            outcome: result.outcome,
                            dead_heat: result.dead_heat,
                            void_factor: result.void_factor,
                        })
                    })
                    .collect::<Result<Vec<_>, Rejection>>()?;
                self.settle_market(market, &requests)?;
                Ok(true)
            }
            FeedItem::Rollback { event, market } => {
                let market = self.feed_market_id(provider, event, market)?;
                self.unsettle_market(market)?;
                Ok(true)
            }
            FeedItem::CancelWindow { event, market, from, to } => {
                let market = self.feed_market_id(provider, event, market)?;
                match window(*from, *to)? {
                    None => {
                        self.void_market(market)?;
                    }
                    Some(window) => self.cancel_window(market, window)?,
                }
                Ok(true)
            }
            FeedItem::RollbackCancel { event, market, from, to } => {
                let market = self.feed_market_id(provider, event, market)?;
                match window(*from, *to)? {
                    None => {
                        if self.markets[market as usize - 1].status != MarketStatus::Voided {
                            return Err(Rejection::NotSettled);
                        }
                        self.unsettle_market(market)?;
                    }
                    Some(window) => self.rollback_cancel_window(market, window)?,
                }
                Ok(true)
            }
            other => unreachable!("the workload sends no {other:?}"),
        }
    }

    /// One market of a `Markets` item.
    fn feed_market(
        &mut self,
        provider: &str,
        timestamp: u64,
        event_id: u64,
        event: &str,
        listed: &FeedMarket,
    ) -> Result<bool, Rejection> {
        external_ok(&listed.market)?;
        let mut seen = BTreeSet::new();
        for outcome in &listed.outcomes {
            external_ok(&outcome.id)?;
            if !seen.insert(outcome.id.as_str()) {
                return Err(invalid("feed outcome ids repeat"));
            }
        }
        if listed.status == FeedMarketStatus::HandedOver {
            return Ok(true);
        }
        let key = (provider.to_string(), event.to_string(), listed.market.clone());
        let market = match self.feed.markets.get(&key) {
            Some(&market) => {
                if self.feed.stamps.get(&market).is_some_and(|last| timestamp < *last) {
                    return Ok(false);
                }
                market
            }
            None => {
                let priced: Vec<_> = listed.outcomes.iter().filter(|outcome| outcome.odds.is_some()).collect();
                if priced.is_empty() {
                    return Ok(true);
                }
                let new: Vec<NewSelection> = priced
                    .iter()
                    .map(|outcome| NewSelection {
                        name: outcome.name.clone(),
                        price: outcome.odds.expect("priced outcomes have odds"),
                    })
                    .collect();
                let Ack::MarketCreated { market, selections } =
                    self.create_market(event_id, &listed.name, &listed.kind, &new, None)?
                else {
                    unreachable!("a market is created or refused");
                };
                self.feed.markets.insert(key, market.0);
                for (outcome, selection) in priced.iter().zip(selections) {
                    self.feed.selections.insert((market.0, outcome.id.clone()), selection.0);
                }
                market.0
            }
        };
        if self.markets[market as usize - 1].is_resulted() {
            return Ok(true);
        }
        let mut prices = Vec::new();
        for outcome in &listed.outcomes {
            let selection = match (self.feed.selections.get(&(market, outcome.id.clone())), outcome.odds) {
                (Some(&selection), _) => selection,
                (None, Some(price)) => self.add_feed_selection(market, &outcome.id, &outcome.name, price)?,
                (None, None) => continue,
            };
            if let Some(price) = outcome.odds {
                prices.push((SelectionId(selection), price));
            }
            if outcome.active {
                self.feed.inactive.remove(&selection);
            } else {
                self.feed.inactive.insert(selection);
            }
        }
        self.set_prices(market, &prices)?;
        self.feed.stamps.insert(market, timestamp);
        let status = self.markets[market as usize - 1].status;
        match listed.status {
            FeedMarketStatus::Active if status == MarketStatus::Suspended => {
                self.set_market_status(market, MarketAction::Resume)?;
            }
            FeedMarketStatus::Inactive
            | FeedMarketStatus::Suspended
            | FeedMarketStatus::Settled
            | FeedMarketStatus::Cancelled
                if status == MarketStatus::Open =>
            {
                self.set_market_status(market, MarketAction::Suspend)?;
            }
            _ => {}
        }
        Ok(true)
    }

    fn add_feed_selection(
        &mut self,
        market: u64,
        outcome: &str,
        name: &str,
        price: domain::Odds,
    ) -> Result<u64, Rejection> {
        if !name_ok(name) {
            return Err(invalid("names are 1 to 200 bytes"));
        }
        if self.markets[market as usize - 1].selections.len() >= SELECTIONS_MAX {
            return Err(invalid("a market has 1 to 64 selections"));
        }
        let id = self.selections.len() as u64 + 1;
        self.selections.push(SelectionModel {
            id,
            market,
            price: price.scaled(),
            version: 1,
            liability: 0,
            by_currency: BTreeMap::new(),
        });
        self.markets[market as usize - 1].selections.push(id);
        self.feed.selections.insert((market, outcome.to_string()), id);
        Ok(id)
    }

    /// Bets on the market placed in the window, oldest first.
    fn bets_in_window(&self, market: u64, (from, to): (u64, u64)) -> Vec<u64> {
        self.markets[market as usize - 1]
            .bets
            .iter()
            .copied()
            .filter(|bet| {
                let placed = self.bets[*bet as usize - 1].placed_at;
                from <= placed && placed < to
            })
            .collect()
    }

    fn cancel_window(&mut self, market: u64, window: (u64, u64)) -> Result<(), Rejection> {
        let windows = self.feed.windows.get(&market).map_or(&[][..], Vec::as_slice);
        if windows.contains(&window) {
            return Ok(());
        }
        if windows.len() >= WINDOWS_MAX {
            return Err(invalid("too many cancellation windows on a market"));
        }
        // Whether each bet's leg here pays as void already (a voided market, another window):
        // such a settled bet has nothing to redo.
        let bets: Vec<(u64, bool)> = self
            .bets_in_window(market, window)
            .into_iter()
            .map(|bet| {
                let found = &self.bets[bet as usize - 1];
                let void_here = found.legs.iter().filter(|leg| leg.market == market).all(|leg| {
                    self.leg_result(found.placed_at, leg).is_some_and(|result| result.outcome == book::Outcome::Void)
                });
                (bet, void_here)
            })
            .collect();
        let in_window: Vec<u64> = bets.iter().map(|(bet, _)| *bet).collect();
        self.check_reversal_fits(&in_window)?;
        self.feed.windows.entry(market).or_default().push(window);
        for (bet, void_here) in bets {
            let path = match self.bets[bet as usize - 1].status {
                BetStatus::Pending => {
                    self.close_liability(bet);
                    self.reject(bet, Rejection::MarketClosed);
                    "window_rejected_pending"
                }
                BetStatus::Accepted => {
                    if self.try_settle(bet) {
                        "window_settled_open_bet"
                    } else {
                        "window_voided_leg"
                    }
                }
                status if settled_by_result(status) && !void_here => {
                    self.reverse(bet);
                    self.try_settle(bet);
                    "window_resettled_bet"
                }
                _ => "window_left_alone",
            };
            *self.paths.entry(path).or_default() += 1;
        }
        Ok(())
    }

    fn rollback_cancel_window(&mut self, market: u64, window: (u64, u64)) -> Result<(), Rejection> {
        let listed = self.feed.windows.get(&market).ok_or(Rejection::NotSettled)?;
        let position = listed.iter().position(|listed| *listed == window).ok_or(Rejection::NotSettled)?;
        self.check_reversal_fits(&self.bets_in_window(market, window))?;
        let windows = self.feed.windows.get_mut(&market).ok_or(Rejection::NotSettled)?;
        windows.remove(position);
        if windows.is_empty() {
            self.feed.windows.remove(&market);
        }
        for bet in self.bets_in_window(market, window) {
            let found = &self.bets[bet as usize - 1];
            if self.feed.in_window(market, found.placed_at) {
                continue;
            }
            let path = match found.status {
                status if settled_by_result(status) => {
                    self.reverse(bet);
                    self.try_settle(bet);
                    "window_withdrawn_resettled"
                }
                BetStatus::Accepted => {
                    self.try_settle(bet);
                    "window_withdrawn_open_bet"
                }
                _ => "window_withdrawn_left_alone",
            };
            *self.paths.entry(path).or_default() += 1;
        }
        Ok(())
    }
}

pub(super) fn settled_by_result(status: BetStatus) -> bool {
    matches!(status, BetStatus::Won | BetStatus::Lost | BetStatus::Void | BetStatus::HalfWon | BetStatus::HalfLost)
}
