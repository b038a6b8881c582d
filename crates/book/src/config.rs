//! Book-wide rules that are settings rather than code. The configuration is part of the book's
//! state (it is in every snapshot), so replay decides with the settings in force at the time.

use domain::{Money, Ratio};

use crate::ids::{Timestamp, MILLIS_PER_DAY, MILLIS_PER_SECOND};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Smallest stake per line.
    pub min_stake: Money,
    /// Largest stake per line for a customer with stake factor 1 on a market without its own.
    pub max_stake: Money,
    /// Largest potential payout of one bet on a market without its own.
    pub max_payout: Money,
    /// Largest single deposit, in the base currency: a deposit in another currency is checked
    /// against it converted at the current rate, rounded down (`fx::AppliedRate::cap_in`).
    pub deposit_max: Money,
    /// How long an idempotency key is remembered (at least 24 hours).
    pub idempotency_retention_ms: Timestamp,
    /// How long a cash-out quote is valid.
    pub cashout_quote_ttl_ms: Timestamp,
    /// The house's margin taken off the fair value of a cash-out.
    pub cashout_margin: Ratio,
    /// Wait before a raised or removed responsible-gambling limit takes effect.
    pub limit_increase_cooling_off_ms: Timestamp,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            min_stake: Money::from_minor(10),
            max_stake: Money::from_minor(1_000_000),
            max_payout: Money::from_minor(100_000_000),
            deposit_max: Money::from_minor(10_000_000),
            idempotency_retention_ms: MILLIS_PER_DAY,
            cashout_quote_ttl_ms: 5 * MILLIS_PER_SECOND,
            cashout_margin: Ratio::new(5, 100).unwrap_or(Ratio::ZERO),
            limit_increase_cooling_off_ms: MILLIS_PER_DAY,
        }
    }
}
