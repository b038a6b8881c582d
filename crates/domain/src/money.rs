//! Money: integer minor units of a currency, parsed from and shown as decimal strings.

use std::fmt;

/// The largest amount, in minor units, that any single value may hold. Keeping every amount
/// far below `i64::MAX` means sums of many amounts cannot overflow in practice, and the ledger
/// still checks every addition.
pub const MONEY_MINOR_MAX: i64 = 1_000_000_000_000_000;

/// An amount in minor units (cents for EUR). Its currency is the currency of the account or
/// bet it belongs to; the ledger never moves money between accounts of different currencies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    /// Wraps minor units. Panics in debug builds outside ±`MONEY_MINOR_MAX`: callers build
    /// amounts from parsed input or from ledger arithmetic that is itself checked.
    pub const fn from_minor(minor: i64) -> Money {
        debug_assert!(minor <= MONEY_MINOR_MAX && minor >= -MONEY_MINOR_MAX);
        Money(minor)
    }

    pub const fn minor(self) -> i64 {
        self.0
    }

    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).filter(|sum| in_range(*sum)).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).filter(|sum| in_range(*sum)).map(Money)
    }

    /// Multiplies by a count (for example the number of lines of a system bet).
    pub fn checked_mul(self, count: u32) -> Option<Money> {
        self.0.checked_mul(i64::from(count)).filter(|product| in_range(*product)).map(Money)
    }

    pub fn min(self, other: Money) -> Money {
        Money(self.0.min(other.0))
    }

    pub fn max(self, other: Money) -> Money {
        Money(self.0.max(other.0))
    }
}

/// Whether minor units are within ±`MONEY_MINOR_MAX`. A range test, not `abs`, which overflows
/// on `i64::MIN` (reachable: `-2^49 × 16384`).
const fn in_range(minor: i64) -> bool {
    minor >= -MONEY_MINOR_MAX && minor <= MONEY_MINOR_MAX
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount is not a decimal number")]
    Malformed,
    #[error("amount has more than {exponent} decimal places")]
    TooManyPlaces { exponent: u8 },
    #[error("amount is too large")]
    TooLarge,
    #[error("unknown currency")]
    UnknownCurrency,
}

/// An ISO 4217 currency with its number of decimal places (its exponent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// The currencies the book accepts, with their exponents. Adding one is a line here.
const CURRENCIES: &[(&str, u8)] = &[
    ("EUR", 2),
    ("GBP", 2),
    ("USD", 2),
    ("CHF", 2),
    ("SEK", 2),
    ("NOK", 2),
    ("DKK", 2),
    ("PLN", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("BHD", 3),
    ("KWD", 3),
];

impl Currency {
    pub const EUR: Currency = Currency { code: *b"EUR", exponent: 2 };

    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(known, _)| *known == code)
            .map(|(known, exponent)| {
                let bytes = known.as_bytes();
                Currency { code: [bytes[0], bytes[1], bytes[2]], exponent: *exponent }
            })
            .ok_or(MoneyError::UnknownCurrency)
    }

    /// Every currency the book accepts.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().filter_map(|(code, _)| Currency::parse(code).ok())
    }

    pub fn code(&self) -> &str {
        // The code is one of the ASCII entries of `CURRENCIES`.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// [`Currency::code`] as a `'static` string (for rows built by the thousand without
    /// allocating one per value).
    pub fn static_code(&self) -> &'static str {
        CURRENCIES.iter().map(|(code, _)| *code).find(|code| code.as_bytes() == self.code).unwrap_or("???")
    }

    pub const fn exponent(&self) -> u8 {
        self.exponent
    }

    /// Parses a non-negative decimal amount such as `"10.50"`, `"10.5"` or `"10"`. More decimal
    /// places than the currency has are rejected, never rounded: rounding input would move money.
    pub fn parse_amount(&self, text: &str) -> Result<Money, MoneyError> {
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        if whole.is_empty() || !whole.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(MoneyError::Malformed);
        }
        let fraction = fraction.unwrap_or("");
        if text.contains('.') && fraction.is_empty() {
            return Err(MoneyError::Malformed);
        }
        if !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(MoneyError::Malformed);
        }
        if fraction.len() > usize::from(self.exponent) {
            return Err(MoneyError::TooManyPlaces { exponent: self.exponent });
        }
        if whole.len() > 18 {
            return Err(MoneyError::TooLarge);
        }
        let mut minor: i64 = whole.parse().map_err(|_| MoneyError::TooLarge)?;
        for _ in 0..self.exponent {
            minor = minor.checked_mul(10).ok_or(MoneyError::TooLarge)?;
        }
        let mut fraction_minor: i64 = 0;
        for place in 0..usize::from(self.exponent) {
            let digit = fraction.as_bytes().get(place).map_or(0, |byte| i64::from(byte - b'0'));
            fraction_minor = fraction_minor * 10 + digit;
        }
        let minor = minor.checked_add(fraction_minor).ok_or(MoneyError::TooLarge)?;
        if minor > MONEY_MINOR_MAX {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money(minor))
    }

    /// Shows an amount with exactly the currency's number of decimal places: `"10.50"`.
    pub fn format(&self, amount: Money) -> String {
        FormattedMoney { amount, exponent: self.exponent }.to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code())
    }
}

struct FormattedMoney {
    amount: Money,
    exponent: u8,
}

impl fmt::Display for FormattedMoney {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minor = self.amount.0;
        let sign = if minor < 0 { "-" } else { "" };
        let magnitude = minor.unsigned_abs();
        if self.exponent == 0 {
            return write!(formatter, "{sign}{magnitude}");
        }
        let divisor = 10u64.pow(u32::from(self.exponent));
        let width = usize::from(self.exponent);
        write!(formatter, "{sign}{}.{:0width$}", magnitude / divisor, magnitude % divisor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic_stays_in_range_without_overflowing() {
        // -2^49 × 2^14 is exactly i64::MIN, whose `abs` overflows.
        let amount = Money::from_minor(-(1 << 49));
        assert_eq!(amount.checked_mul(1 << 14), None);
        assert_eq!(Money::from_minor(MONEY_MINOR_MAX).checked_add(Money::from_minor(1)), None);
        assert_eq!(Money::from_minor(-MONEY_MINOR_MAX).checked_sub(Money::from_minor(1)), None);
        assert_eq!(Money::from_minor(-MONEY_MINOR_MAX).checked_mul(1), Some(Money::from_minor(-MONEY_MINOR_MAX)));
    }

    #[test]
    fn parses_and_formats_amounts() {
        let eur = Currency::EUR;
        assert_eq!(eur.parse_amount("10.50"), Ok(Money::from_minor(1050)));
        assert_eq!(eur.parse_amount("10.5"), Ok(Money::from_minor(1050)));
        assert_eq!(eur.parse_amount("10"), Ok(Money::from_minor(1000)));
        assert_eq!(eur.parse_amount("0.01"), Ok(Money::from_minor(1)));
        assert_eq!(eur.parse_amount("10.505"), Err(MoneyError::TooManyPlaces { exponent: 2 }));
        for bad in ["", ".5", "5.", "-1", "+1", "1,5", "1e3", " 1", "1.2.3", "abc"] {
            assert_eq!(eur.parse_amount(bad), Err(MoneyError::Malformed), "{bad:?}");
        }
        assert_eq!(eur.parse_amount("99999999999999999999"), Err(MoneyError::TooLarge));
        assert_eq!(eur.format(Money::from_minor(1050)), "10.50");
        assert_eq!(eur.format(Money::from_minor(5)), "0.05");
        assert_eq!(eur.format(Money::from_minor(-5)), "-0.05");
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(jpy.parse_amount("1.5"), Err(MoneyError::TooManyPlaces { exponent: 0 }));
        assert_eq!(jpy.format(Money::from_minor(1500)), "1500");
        let bhd = Currency::parse("BHD").unwrap();
        assert_eq!(bhd.parse_amount("1.5"), Ok(Money::from_minor(1500)));
        assert_eq!(bhd.format(Money::from_minor(1500)), "1.500");
        assert_eq!(Currency::parse("XXX"), Err(MoneyError::UnknownCurrency));
    }
}
