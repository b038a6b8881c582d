//! Degraded modes an operator switches on when the book is under pressure (a derby night, a
//! feed outage), decided by the book so that they are journaled, audited and replayed:
//!
//! - **pre-match only**: bets on markets in play are refused (`market_suspended`), pre-match
//!   betting goes on;
//! - **cached odds**: every market is flagged `delayed` (its odds may be behind) and every bet
//!   waits out `FEED_DELAYED_BET_DELAY_SECONDS` before it stands, as a market of a stale feed
//!   in `delay` mode does;
//! - **per-market acceptance throttles**: at most N bets a second on a market (a token bucket
//!   on book time, a one-second burst); beyond it `market_throttled` with when to retry, so a
//!   hot market cannot take the whole book's capacity or outrun its traders.

use std::collections::BTreeMap;

use crate::bet::Leg;
use crate::book::Book;
use crate::constants::MARKET_BETS_PER_SECOND_MAX;
use crate::event::{Ack, Reply};
use crate::ids::{MarketId, Timestamp, MILLIS_PER_SECOND};
use crate::rejection::Rejection;

/// The operator's switches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TradingMode {
    pub pre_match_only: bool,
    pub cached_odds: bool,
}

/// A market's acceptance throttle: tokens in thousandths of a bet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub market: MarketId,
    pub bets_per_second: u32,
    pub tokens_milli: u64,
    pub refilled_at: Timestamp,
}

impl Throttle {
    fn capacity_milli(&self) -> u64 {
        u64::from(self.bets_per_second) * 1_000
    }

    /// Refills for the time passed since the last refill.
    fn refill(&mut self, now: Timestamp) {
        let elapsed = now.saturating_sub(self.refilled_at);
        // bets_per_second tokens per 1,000 ms: bets_per_second milli-tokens per ms.
        let added = elapsed.saturating_mul(u64::from(self.bets_per_second));
        self.tokens_milli = self.tokens_milli.saturating_add(added).min(self.capacity_milli());
        self.refilled_at = now;
    }

    /// Milliseconds until one bet's worth of tokens is back.
    fn wait_ms(&self) -> u64 {
        let missing = 1_000u64.saturating_sub(self.tokens_milli);
        missing.div_ceil(u64::from(self.bets_per_second.max(1)))
    }
}

/// Degraded-mode state of the book.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Degraded {
    pub(crate) mode: TradingMode,
    pub(crate) throttles: BTreeMap<MarketId, Throttle>,
}

/// Every part of it, for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DegradedParts {
    pub mode: TradingMode,
    pub throttles: Vec<Throttle>,
}

impl DegradedParts {
    /// Throttles are in market order, one per known market, with a rate in range and no more
    /// tokens than their burst: the one encoding of a valid state.
    pub fn check_structure(&self, market_held: &dyn Fn(u64) -> bool) -> Result<(), String> {
        let mut previous = 0;
        for throttle in &self.throttles {
            let rate_fits = (1..=MARKET_BETS_PER_SECOND_MAX).contains(&throttle.bets_per_second);
            if throttle.market.0 <= previous
                || !market_held(throttle.market.0)
                || !rate_fits
                || throttle.tokens_milli > throttle.capacity_milli()
            {
                return Err(format!("throttle of {} out of order, unknown or out of range", throttle.market));
            }
            previous = throttle.market.0;
        }
        Ok(())
    }
}

impl Degraded {
    pub fn mode(&self) -> TradingMode {
        self.mode
    }

    pub fn throttle(&self, market: MarketId) -> Option<u32> {
        self.throttles.get(&market).map(|throttle| throttle.bets_per_second)
    }

    pub fn to_parts(&self) -> DegradedParts {
        DegradedParts { mode: self.mode, throttles: self.throttles.values().copied().collect() }
    }

    pub fn from_parts(parts: DegradedParts) -> Degraded {
        Degraded {
            mode: parts.mode,
            throttles: parts.throttles.into_iter().map(|throttle| (throttle.market, throttle)).collect(),
        }
    }
}

impl Book {
    pub fn degraded(&self) -> &Degraded {
        &self.degraded
    }

    pub(crate) fn set_trading_mode(&mut self, pre_match_only: Option<bool>, cached_odds: Option<bool>) -> Reply {
        if let Some(value) = pre_match_only {
            self.degraded.mode.pre_match_only = value;
        }
        if let Some(value) = cached_odds {
            self.degraded.mode.cached_odds = value;
        }
        Ok(Ack::Done)
    }

    pub(crate) fn set_market_throttle(&mut self, market: MarketId, bets_per_second: Option<u32>) -> Reply {
        self.markets.get(market.index()).ok_or(Rejection::UnknownMarket)?;
        match bets_per_second {
            None => {
                self.degraded.throttles.remove(&market);
            }
            Some(0) => return Err(Rejection::InvalidRequest { reason: "a throttle allows at least one bet a second" }),
            Some(rate) if rate > MARKET_BETS_PER_SECOND_MAX => {
                return Err(Rejection::InvalidRequest { reason: "a throttle allows at most 1,000,000 bets a second" })
            }
            Some(rate) => {
                let throttle = Throttle {
                    market,
                    bets_per_second: rate,
                    tokens_milli: u64::from(rate) * 1_000,
                    refilled_at: self.now,
                };
                self.degraded.throttles.insert(market, throttle);
            }
        }
        Ok(Ack::Done)
    }

    /// Whether a market's odds count as behind: its feed is stale in `delay` mode, or the
    /// operator serves cached odds everywhere.
    pub fn is_delayed(&self, market: MarketId) -> bool {
        self.degraded.mode.cached_odds || self.feed.is_delayed(market)
    }

    /// Pre-match only refuses a bet with a leg in play.
    pub(crate) fn check_trading_mode(&self, legs: &[Leg]) -> Result<(), Rejection> {
        if self.degraded.mode.pre_match_only && legs.iter().any(|leg| self.markets[leg.market.index()].in_play) {
            return Err(Rejection::MarketSuspended);
        }
        Ok(())
    }

    /// Takes one bet from the throttle of every market of the bet, or refuses it (taking
    /// nothing) when one is empty. The last check before a bet is accepted.
    pub(crate) fn admit_to_markets(&mut self, legs: &[Leg]) -> Result<(), Rejection> {
        if self.degraded.throttles.is_empty() {
            return Ok(());
        }
        let now = self.now;
        let mut wait = 0;
        for leg in legs {
            if let Some(throttle) = self.degraded.throttles.get_mut(&leg.market) {
                throttle.refill(now);
                if throttle.tokens_milli < 1_000 {
                    wait = wait.max(throttle.wait_ms());
                }
            }
        }
        if wait > 0 {
            return Err(Rejection::MarketThrottled { retry_after_ms: wait.min(MILLIS_PER_SECOND) });
        }
        for leg in legs {
            if let Some(throttle) = self.degraded.throttles.get_mut(&leg.market) {
                throttle.tokens_milli -= 1_000;
            }
        }
        Ok(())
    }
}
