//! Exchange rates between a base currency and the currencies players hold, and the one rounding
//! rule for converting amounts between them.
//!
//! A rate says how many units of a currency one unit of the base currency buys ("1 EUR = 160.00
//! JPY"), as an exact decimal. Conversions work in minor units and round once, always in the
//! direction that lets no more risk through:
//!
//! - a limit set in the base currency (a stake or payout cap) converted into a player's
//!   currency rounds DOWN (`base_to_currency_floor`), so a converted cap never admits more than the cap;
//! - a lower bound (a minimum stake) converted into a player's currency rounds UP
//!   (`base_to_currency_ceil`), so it is never below the bound;
//! - an amount at risk (a stake or a liability) converted into the base currency rounds UP,
//!   towards positive infinity (`to_base_ceil`), so exposure is never under-counted.
//!
//! Everything is integer arithmetic in `i128`: with at most `FX_RATE_DECIMALS_MAX` decimal places,
//! a rate below `FX_RATE_WHOLE_MAX` and exponents of at most 3, no product can overflow.

use std::fmt;

use crate::money::{Currency, Money, MONEY_MINOR_MAX};

/// Most decimal places a rate may have.
pub const FX_RATE_DECIMALS_MAX: u8 = 8;
/// Rates are below this many units of a currency per unit of the base (the weakest currencies
/// trade at tens of thousands per euro; a billion leaves room without risking overflow).
pub const FX_RATE_WHOLE_MAX: u64 = 1_000_000_000;

/// Units of a currency per one unit of the base currency: `mantissa / 10^scale`, positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExchangeRate {
    mantissa: u64,
    scale: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeRateError {
    #[error("rate is not a decimal number")]
    Malformed,
    #[error("rate has more than 8 decimal places")]
    TooPrecise,
    #[error("rate must be positive and below 1000000000")]
    OutOfRange,
}

impl ExchangeRate {
    /// The base currency's own rate.
    pub const ONE: ExchangeRate = ExchangeRate { mantissa: 1, scale: 0 };

    /// Builds `mantissa / 10^scale`; checks the same bounds as `parse`.
    pub fn new(mantissa: u64, scale: u8) -> Result<ExchangeRate, ExchangeRateError> {
        if scale > FX_RATE_DECIMALS_MAX {
            return Err(ExchangeRateError::TooPrecise);
        }
        let limit = u128::from(FX_RATE_WHOLE_MAX) * 10u128.pow(u32::from(scale));
        if mantissa == 0 || u128::from(mantissa) >= limit {
            return Err(ExchangeRateError::OutOfRange);
        }
        Ok(ExchangeRate { mantissa, scale })
    }

    /// Parses a positive decimal such as `"160.00"`, `"0.8512"` or `"1450"`. The scale written is
    /// kept, so a rate reads back as it was set.
    pub fn parse(text: &str) -> Result<ExchangeRate, ExchangeRateError> {
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
            Some(_) => return Err(ExchangeRateError::Malformed),
            None => (text, ""),
        };
        let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) {
            return Err(ExchangeRateError::Malformed);
        }
        if fraction.len() > usize::from(FX_RATE_DECIMALS_MAX) {
            return Err(ExchangeRateError::TooPrecise);
        }
        // More than ten whole digits is at least the maximum: refuse before parsing overflows.
        if whole.trim_start_matches('0').len() > 10 {
            return Err(ExchangeRateError::OutOfRange);
        }
        let mantissa: u64 = format!("{whole}{fraction}").parse().map_err(|_| ExchangeRateError::OutOfRange)?;
        ExchangeRate::new(mantissa, fraction.len() as u8)
    }

    pub const fn mantissa(self) -> u64 {
        self.mantissa
    }

    pub const fn scale(self) -> u8 {
        self.scale
    }

    /// `amount` (minor units of `currency`) in minor units of `base`, rounded up (towards
    /// positive infinity): `amount × 10^e_base × 10^scale / (mantissa × 10^e_currency)`.
    pub fn to_base_ceil(self, amount: Money, currency: Currency, base: Currency) -> Money {
        let numerator = i128::from(amount.minor()) * pow10(base.exponent()) * pow10(self.scale);
        let denominator = i128::from(self.mantissa) * pow10(currency.exponent());
        clamp(div_ceil(numerator, denominator))
    }

    /// `amount` (minor units of `base`) in minor units of `currency`, rounded down (towards
    /// negative infinity): a cap converted this way never admits more than the cap.
    pub fn base_to_currency_floor(self, amount: Money, currency: Currency, base: Currency) -> Money {
        let (numerator, denominator) = self.base_to_currency_parts(amount, currency, base);
        clamp(numerator.div_euclid(denominator))
    }

    /// `amount` (minor units of `base`) in minor units of `currency`, rounded up: a lower bound
    /// converted this way is never below the bound.
    pub fn base_to_currency_ceil(self, amount: Money, currency: Currency, base: Currency) -> Money {
        let (numerator, denominator) = self.base_to_currency_parts(amount, currency, base);
        clamp(div_ceil(numerator, denominator))
    }

    fn base_to_currency_parts(self, amount: Money, currency: Currency, base: Currency) -> (i128, i128) {
        let numerator = i128::from(amount.minor()) * i128::from(self.mantissa) * pow10(currency.exponent());
        let denominator = pow10(self.scale) * pow10(base.exponent());
        (numerator, denominator)
    }
}

fn pow10(exponent: u8) -> i128 {
    10i128.pow(u32::from(exponent))
}

/// Ceiling division for a positive denominator.
fn div_ceil(numerator: i128, denominator: i128) -> i128 {
    debug_assert!(denominator > 0);
    -((-numerator).div_euclid(denominator))
}

/// Converted amounts saturate at the money maximum; callers compare them with caps that are
/// themselves within it, and refuse amounts at the maximum.
fn clamp(minor: i128) -> Money {
    Money::from_minor(minor.clamp(-i128::from(MONEY_MINOR_MAX), i128::from(MONEY_MINOR_MAX)) as i64)
}

impl fmt::Display for ExchangeRate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(formatter, "{}", self.mantissa);
        }
        let divisor = 10u64.pow(u32::from(self.scale));
        let width = usize::from(self.scale);
        write!(formatter, "{}.{:0width$}", self.mantissa / divisor, self.mantissa % divisor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn currency(code: &str) -> Currency {
        Currency::parse(code).expect("a known currency")
    }

    #[test]
    fn parses_and_shows_rates_as_written() {
        assert_eq!(ExchangeRate::parse("160.00").map(|rate| rate.to_string()), Ok("160.00".to_string()));
        assert_eq!(ExchangeRate::parse("0.8512").map(|rate| rate.to_string()), Ok("0.8512".to_string()));
        assert_eq!(ExchangeRate::parse("1450").map(|rate| rate.to_string()), Ok("1450".to_string()));
        for bad in ["", ".5", "5.", "-1", "1e3", "1,5", " 1", "abc", "1.2.3"] {
            assert_eq!(ExchangeRate::parse(bad), Err(ExchangeRateError::Malformed), "{bad:?}");
        }
        assert_eq!(ExchangeRate::parse("0"), Err(ExchangeRateError::OutOfRange));
        assert_eq!(ExchangeRate::parse("0.00"), Err(ExchangeRateError::OutOfRange));
        assert_eq!(ExchangeRate::parse("1000000000"), Err(ExchangeRateError::OutOfRange));
        assert_eq!(ExchangeRate::parse("99999999999999999999999"), Err(ExchangeRateError::OutOfRange));
        assert_eq!(ExchangeRate::parse("1.123456789"), Err(ExchangeRateError::TooPrecise));
        assert!(ExchangeRate::parse("999999999.99999999").is_ok());
    }

    #[test]
    fn converts_between_exponents_rounding_against_risk() {
        let (eur, jpy, krw, bhd) = (currency("EUR"), currency("JPY"), currency("KRW"), currency("BHD"));
        let yen = ExchangeRate::parse("160.00").expect("rate");
        // €100.00 is ¥16,000 exactly; ¥20,000 is €125.00.
        assert_eq!(yen.base_to_currency_floor(Money::from_minor(10_000), jpy, eur), Money::from_minor(16_000));
        assert_eq!(yen.to_base_ceil(Money::from_minor(20_000), jpy, eur), Money::from_minor(12_500));
        // ¥1 is 0.625 cents: up to 1 cent at risk; €0.01 admits no whole yen more than 1.
        assert_eq!(yen.to_base_ceil(Money::from_minor(1), jpy, eur), Money::from_minor(1));
        assert_eq!(yen.base_to_currency_floor(Money::from_minor(1), jpy, eur), Money::from_minor(1));
        assert_eq!(yen.base_to_currency_ceil(Money::from_minor(1), jpy, eur), Money::from_minor(2));
        // A negative liability rounds towards positive infinity too.
        assert_eq!(yen.to_base_ceil(Money::from_minor(-1), jpy, eur), Money::ZERO);
        let won = ExchangeRate::parse("1540.5").expect("rate");
        // ₩10,000 is €6.4914...: €6.50 of risk.
        assert_eq!(won.to_base_ceil(Money::from_minor(10_000), krw, eur), Money::from_minor(650));
        assert_eq!(won.base_to_currency_floor(Money::from_minor(10_000), krw, eur), Money::from_minor(154_050));
        let dinar = ExchangeRate::parse("0.41").expect("rate");
        // €100.00 is 41.000 BHD; 1 fils is 0.2439 cents, at risk as 1 cent.
        assert_eq!(dinar.base_to_currency_floor(Money::from_minor(10_000), bhd, eur), Money::from_minor(41_000));
        assert_eq!(dinar.to_base_ceil(Money::from_minor(1), bhd, eur), Money::from_minor(1));
        assert_eq!(ExchangeRate::ONE.to_base_ceil(Money::from_minor(1234), eur, eur), Money::from_minor(1234));
        // Extremes saturate instead of overflowing.
        let strong = ExchangeRate::parse("999999999.99999999").expect("rate");
        let most = Money::from_minor(MONEY_MINOR_MAX);
        assert_eq!(strong.base_to_currency_floor(most, bhd, jpy), most);
        assert_eq!(ExchangeRate::parse("0.00000001").expect("rate").to_base_ceil(most, jpy, bhd), most);
    }
}
