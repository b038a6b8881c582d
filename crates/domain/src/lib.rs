//! Exact value types of the sportsbook: money in integer minor units, odds in fixed point, factors
//! as small rationals, and the single rounding rule for payouts.
//!
//! Nothing here uses floating point. Every type is built by `parse`/`new` at the boundary and is
//! valid by construction afterwards.

mod date;
mod fx;
mod money;
mod odds;
mod payout;
mod ratio;

pub use date::{Date, DateError};
pub use fx::{ExchangeRate, ExchangeRateError, FX_RATE_DECIMALS_MAX, FX_RATE_WHOLE_MAX};
pub use money::{Currency, Money, MoneyError, MONEY_MINOR_MAX};
pub use odds::{Odds, OddsError, ODDS_SCALE};
pub use payout::{payout_floor, payout_floor_wide, Multiplier};
pub use ratio::{Ratio, RatioError};
