//! Exchange rates as the book sees them: the operator's table of rates against one base
//! currency, versioned and set by a command, and the rate each bet was converted with.
//!
//! Every risk setting (a market's stake and payout limits, its liability caps and suspension
//! threshold, the `Config` defaults) is in the base currency. A bet in another currency is
//! checked against those limits converted into its currency (caps round down, the minimum stake
//! rounds up: `domain::ExchangeRate`), and the liability it adds is converted into the base
//! currency (rounded up) with the rate in force when it was placed. That rate is recorded on
//! the bet, so the liability it removes when it settles is exactly what it added, whatever the
//! table says by then. A currency with no rate cannot be bet in at all (`fx_rate_missing`):
//! every market has at least the book's default stake and payout limits, which cannot be
//! applied without a rate.

use domain::{Currency, ExchangeRate, Money};

use crate::book::Book;
use crate::event::{Ack, Reply};
use crate::ids::Timestamp;
use crate::rejection::Rejection;

/// Rates in one table: one per currency the book accepts, at most.
pub const FX_RATES_MAX: usize = 64;

/// The operator's exchange rates: 1 unit of `base` buys `rate` units of each listed currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FxTable {
    pub base: Currency,
    /// 0 before any table was set; each `SetFxRates` adds one.
    pub version: u64,
    /// Book time of the last `SetFxRates`.
    pub set_at: Timestamp,
    /// Sorted by currency, without the base currency.
    pub rates: Vec<(Currency, ExchangeRate)>,
}

impl Default for FxTable {
    fn default() -> FxTable {
        FxTable { base: Currency::EUR, version: 0, set_at: 0, rates: Vec::new() }
    }
}

impl FxTable {
    /// The rate of `currency` now, with the table's version; the base currency's is one.
    pub fn rate(&self, currency: Currency) -> Option<AppliedRate> {
        let rate = if currency == self.base {
            ExchangeRate::ONE
        } else {
            self.rates.iter().find(|(listed, _)| *listed == currency).map(|(_, rate)| *rate)?
        };
        Some(AppliedRate { base: self.base, version: self.version, rate })
    }
}

/// The rate a bet was converted with: which base, which table version, and the rate itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedRate {
    pub base: Currency,
    pub version: u64,
    pub rate: ExchangeRate,
}

impl AppliedRate {
    /// An amount at risk in `currency`, in the base currency, rounded up.
    pub fn to_base(&self, amount: Money, currency: Currency) -> Money {
        self.rate.to_base_ceil(amount, currency, self.base)
    }

    /// A cap in the base currency, in `currency`, rounded down.
    pub fn cap_in(&self, cap: Money, currency: Currency) -> Money {
        self.rate.base_to_currency_floor(cap, currency, self.base)
    }

    /// A lower bound in the base currency, in `currency`, rounded up.
    pub fn floor_in(&self, bound: Money, currency: Currency) -> Money {
        self.rate.base_to_currency_ceil(bound, currency, self.base)
    }
}

impl Book {
    pub fn fx(&self) -> &FxTable {
        &self.fx
    }

    /// The rate a bet in `currency` is converted with now.
    pub(crate) fn rate_for(&self, currency: Currency) -> Result<AppliedRate, Rejection> {
        self.fx.rate(currency).ok_or(Rejection::FxRateMissing)
    }

    /// Replaces the whole table. The base currency may change only before the first market:
    /// markets' risk settings and open bets' liabilities are amounts in the base currency, and
    /// would silently change meaning under another.
    pub(crate) fn set_fx_rates(&mut self, base: Currency, rates: &[(Currency, ExchangeRate)]) -> Reply {
        if rates.len() > FX_RATES_MAX {
            return Err(Rejection::InvalidRequest { reason: "too many exchange rates" });
        }
        if rates.iter().any(|(currency, _)| *currency == base) {
            return Err(Rejection::InvalidRequest { reason: "the base currency has no rate" });
        }
        let mut sorted = rates.to_vec();
        sorted.sort_by_key(|(currency, _)| *currency);
        if sorted.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return Err(Rejection::InvalidRequest { reason: "a currency has two rates" });
        }
        if base != self.fx.base && !self.markets.is_empty() {
            return Err(Rejection::InvalidRequest { reason: "the base currency is fixed once a market exists" });
        }
        self.fx = FxTable { base, version: self.fx.version + 1, set_at: self.now, rates: sorted };
        Ok(Ack::Done)
    }
}
