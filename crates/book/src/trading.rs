//! Trading commands: fixtures, markets, prices, market status, in-play and risk settings.

use domain::Odds;

use crate::book::Book;
use crate::catalog::{EachWayTerms, Event, EventState, Market, MarketRisk, MarketStatus, Selection};
use crate::command::{MarketAction, MarketRiskChange, NewSelection};
use crate::constants::{BET_DELAY_SECONDS_MAX, MARKETS_PER_EVENT_MAX, NAME_BYTES_MAX, SELECTIONS_PER_MARKET_MAX};
use crate::event::{Ack, BookEvent, Reply};
use crate::ids::{EventId, MarketId, SelectionId, Timestamp};
use crate::rejection::Rejection;

pub(crate) fn check_name(name: &str) -> Result<(), Rejection> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        Err(Rejection::InvalidRequest { reason: "names are 1 to 200 bytes" })
    } else {
        Ok(())
    }
}

impl Book {
    pub(crate) fn create_event(
        &mut self,
        name: &str,
        sport: &str,
        competition: &str,
        starts_at: Timestamp,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        check_name(name)?;
        check_name(sport)?;
        if competition.len() > NAME_BYTES_MAX {
            return Err(Rejection::InvalidRequest { reason: "names are 1 to 200 bytes" });
        }
        let id = EventId(self.events.issued() + 1);
        self.events.push(Event {
            id,
            name: name.to_string(),
            sport: sport.to_string(),
            competition: competition.to_string(),
            starts_at,
            state: EventState::Scheduled,
            bet_delay_seconds: 0,
            markets: Vec::new(),
        });
        events.push(BookEvent::EventCreated { event: id });
        Ok(Ack::EventCreated(id))
    }

    pub(crate) fn create_market(
        &mut self,
        event: EventId,
        name: &str,
        kind: &str,
        selections: &[NewSelection],
        each_way: Option<EachWayTerms>,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        let parent = self.events.get(event.index()).ok_or(Rejection::UnknownEvent)?;
        if parent.state == EventState::Ended {
            return Err(Rejection::InvalidRequest { reason: "event has ended" });
        }
        if parent.markets.len() >= MARKETS_PER_EVENT_MAX {
            return Err(Rejection::InvalidRequest { reason: "event has too many markets" });
        }
        check_name(name)?;
        if kind.len() > NAME_BYTES_MAX {
            return Err(Rejection::InvalidRequest { reason: "names are 1 to 200 bytes" });
        }
        if selections.is_empty() || selections.len() > SELECTIONS_PER_MARKET_MAX {
            return Err(Rejection::InvalidRequest { reason: "a market has 1 to 64 selections" });
        }
        for selection in selections {
            check_name(&selection.name)?;
        }
        if let Some(terms) = each_way {
            if terms.places == 0 || !terms.fraction.is_unit_fraction() {
                return Err(Rejection::InvalidRequest {
                    reason: "each-way terms need places and a fraction in (0, 1]",
                });
            }
        }
        let in_play = parent.state == EventState::InPlay;
        let id = MarketId(self.markets.issued() + 1);
        let mut selection_ids = Vec::with_capacity(selections.len());
        for selection in selections {
            let selection_id = SelectionId(self.selections.issued() + 1);
            self.selections.push(Selection {
                id: selection_id,
                market: id,
                name: selection.name.clone(),
                price: selection.price,
                price_version: 1,
                liability: domain::Money::ZERO,
                liabilities: Vec::new(),
            });
            selection_ids.push(selection_id);
        }
        self.markets.push(Market {
            id,
            event,
            name: name.to_string(),
            kind: kind.to_string(),
            status: MarketStatus::Open,
            in_play,
            selections: selection_ids.clone(),
            each_way,
            risk: MarketRisk::default(),
            settlement_version: 0,
            results: Vec::new(),
            bets: Vec::new(),
            closed_at: None,
        });
        self.events[event.index()].markets.push(id);
        events.push(BookEvent::MarketCreated { market: id });
        Ok(Ack::MarketCreated { market: id, selections: selection_ids })
    }

    pub(crate) fn set_prices(
        &mut self,
        market: MarketId,
        prices: &[(SelectionId, Odds)],
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        let found = self.markets.get(market.index()).ok_or(Rejection::UnknownMarket)?;
        if found.status.is_resulted() {
            return Err(Rejection::MarketClosed);
        }
        if prices.len() > SELECTIONS_PER_MARKET_MAX {
            return Err(Rejection::InvalidRequest { reason: "too many prices" });
        }
        let belongs =
            |selection: SelectionId| self.selections.get(selection.index()).is_some_and(|s| s.market == market);
        if !prices.iter().all(|(selection, _)| belongs(*selection)) {
            return Err(Rejection::SelectionUnavailable);
        }
        for (selection, price) in prices {
            let selection = &mut self.selections[selection.index()];
            if selection.price != *price {
                selection.price = *price;
                selection.price_version += 1;
                events.push(BookEvent::PriceChanged {
                    market,
                    selection: selection.id,
                    price: *price,
                    version: selection.price_version,
                });
            }
        }
        Ok(Ack::Done)
    }

    pub(crate) fn set_market_status(
        &mut self,
        market: MarketId,
        action: MarketAction,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        let found = self.markets.get(market.index()).ok_or(Rejection::UnknownMarket)?;
        let from = found.status;
        let to = match (action, from) {
            (_, MarketStatus::Closed | MarketStatus::Settled | MarketStatus::Voided) => {
                if action == MarketAction::Close {
                    return Ok(Ack::Done);
                }
                return Err(Rejection::MarketClosed);
            }
            (MarketAction::Suspend, _) => MarketStatus::Suspended,
            (MarketAction::Resume, _) => MarketStatus::Open,
            (MarketAction::Close, _) => MarketStatus::Closed,
        };
        self.change_market_status(market, to, events);
        Ok(Ack::Done)
    }

    pub(crate) fn change_market_status(&mut self, market: MarketId, status: MarketStatus, events: &mut Vec<BookEvent>) {
        let found = &mut self.markets[market.index()];
        if found.status != status {
            found.status = status;
            events.push(BookEvent::MarketStatusChanged { market, status });
        }
    }

    pub(crate) fn set_in_play(&mut self, event: EventId, bet_delay_seconds: u32, events: &mut Vec<BookEvent>) -> Reply {
        let found = self.events.get_mut(event.index()).ok_or(Rejection::UnknownEvent)?;
        if found.state == EventState::Ended {
            return Err(Rejection::InvalidRequest { reason: "event has ended" });
        }
        if bet_delay_seconds > BET_DELAY_SECONDS_MAX {
            return Err(Rejection::InvalidRequest { reason: "bet delay above 60 seconds" });
        }
        found.bet_delay_seconds = bet_delay_seconds;
        if found.state != EventState::InPlay {
            found.state = EventState::InPlay;
            events.push(BookEvent::EventStateChanged { event, state: EventState::InPlay });
        }
        for market in found.markets.clone() {
            self.markets[market.index()].in_play = true;
        }
        Ok(Ack::Done)
    }

    pub(crate) fn end_event(&mut self, event: EventId, events: &mut Vec<BookEvent>) -> Reply {
        let found = self.events.get_mut(event.index()).ok_or(Rejection::UnknownEvent)?;
        if found.state == EventState::Ended {
            return Ok(Ack::Done);
        }
        found.state = EventState::Ended;
        events.push(BookEvent::EventStateChanged { event, state: EventState::Ended });
        for market in found.markets.clone() {
            if matches!(self.markets[market.index()].status, MarketStatus::Open | MarketStatus::Suspended) {
                self.change_market_status(market, MarketStatus::Closed, events);
            }
        }
        Ok(Ack::Done)
    }

    pub(crate) fn set_market_risk(&mut self, market: MarketId, change: &MarketRiskChange) -> Reply {
        let found = self.markets.get_mut(market.index()).ok_or(Rejection::UnknownMarket)?;
        let negative = [
            change.max_stake,
            change.liability_cap,
            change.selection_liability_cap,
            change.suspend_at_liability,
            change.max_payout,
        ]
        .into_iter()
        .any(|value| value.flatten().is_some_and(|money| money.minor() < 0));
        if negative {
            return Err(Rejection::InvalidRequest { reason: "risk settings cannot be negative" });
        }
        if change.in_play_delay_seconds.flatten().is_some_and(|seconds| seconds > BET_DELAY_SECONDS_MAX) {
            return Err(Rejection::InvalidRequest { reason: "bet delay above 60 seconds" });
        }
        let risk = &mut found.risk;
        let apply = |slot: &mut Option<domain::Money>, value: Option<Option<domain::Money>>| {
            if let Some(value) = value {
                *slot = value;
            }
        };
        apply(&mut risk.max_stake, change.max_stake);
        apply(&mut risk.liability_cap, change.liability_cap);
        apply(&mut risk.selection_liability_cap, change.selection_liability_cap);
        apply(&mut risk.suspend_at_liability, change.suspend_at_liability);
        apply(&mut risk.max_payout, change.max_payout);
        if let Some(delay) = change.in_play_delay_seconds {
            risk.in_play_delay_seconds = delay;
        }
        Ok(Ack::Done)
    }
}
