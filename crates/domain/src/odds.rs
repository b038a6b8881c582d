//! Odds in exact fixed point (four decimal places), parsed from and shown as decimal `2.50`,
//! fractional `3/2` and American `+150` / `-200`.
//!
//! The fixed-point value is the price the book pays: what a bettor sees as `"1.3333"` is exactly
//! what is paid. Fractional or American prices that have no exact four-place decimal (`1/3`,
//! `-300`) are rounded down to the next ten-thousandth when parsed, so the rounding never
//! favours the bettor over the published price.

use std::fmt;

/// Odds are stored as decimal odds times `ODDS_SCALE`.
pub const ODDS_SCALE: u32 = 10_000;
/// Lowest odds the book offers: `1.0001`. Odds of exactly 1 pay back the stake and are only
/// used internally for void legs.
pub const ODDS_SCALED_MIN: u32 = ODDS_SCALE + 1;
/// Highest odds the book offers: `10000.00`.
pub const ODDS_SCALED_MAX: u32 = 10_000 * ODDS_SCALE;
/// Largest denominator searched when showing odds as a fraction.
const FRACTION_DENOMINATOR_MAX: u64 = 10_000;

/// Decimal odds in fixed point: `Odds(25_000)` is `2.50`, `3/2`, `+150`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Odds(u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OddsError {
    #[error("odds are not decimal (\"2.50\"), fractional (\"3/2\") or American (\"+150\")")]
    Malformed,
    #[error("decimal odds have more than four decimal places")]
    TooManyPlaces,
    #[error("odds are outside 1.0001 to 10000")]
    OutOfRange,
}

impl Odds {
    /// Odds of exactly 1: the multiplier of a void leg. Never offered as a price.
    pub const EVENS_REFUND: Odds = Odds(ODDS_SCALE);

    /// Builds odds from the scaled value; rejects values outside the offered range.
    pub fn from_scaled(scaled: u32) -> Result<Odds, OddsError> {
        if (ODDS_SCALED_MIN..=ODDS_SCALED_MAX).contains(&scaled) {
            Ok(Odds(scaled))
        } else {
            Err(OddsError::OutOfRange)
        }
    }

    pub const fn scaled(self) -> u32 {
        self.0
    }

    /// Parses any of the three formats: `"2.50"`, `"3/2"`, `"+150"`, `"-200"`.
    pub fn parse(text: &str) -> Result<Odds, OddsError> {
        if text.starts_with('+') || text.starts_with('-') {
            Odds::parse_american(text)
        } else if text.contains('/') {
            Odds::parse_fractional(text)
        } else {
            Odds::parse_decimal(text)
        }
    }

    /// Parses decimal odds with at most four decimal places.
    pub fn parse_decimal(text: &str) -> Result<Odds, OddsError> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || (text.contains('.') && fraction.is_empty()) {
            return Err(OddsError::Malformed);
        }
        if fraction.len() > 4 {
            return Err(OddsError::TooManyPlaces);
        }
        if whole.len() > 6 {
            return Err(OddsError::OutOfRange);
        }
        let whole: u64 = whole.parse().map_err(|_| OddsError::Malformed)?;
        let mut fraction_scaled: u64 = 0;
        for place in 0..4 {
            let digit = fraction.as_bytes().get(place).map_or(0, |byte| u64::from(byte - b'0'));
            fraction_scaled = fraction_scaled * 10 + digit;
        }
        Odds::from_wide(whole * u64::from(ODDS_SCALE) + fraction_scaled)
    }

    /// Parses fractional odds `num/den` (profit over stake): `3/2` is decimal `2.50`.
    pub fn parse_fractional(text: &str) -> Result<Odds, OddsError> {
        let (num, den) = text.split_once('/').ok_or(OddsError::Malformed)?;
        let digits = |part: &str| !part.is_empty() && part.len() <= 9 && part.bytes().all(|byte| byte.is_ascii_digit());
        if !digits(num) || !digits(den) {
            return Err(OddsError::Malformed);
        }
        let num: u64 = num.parse().map_err(|_| OddsError::Malformed)?;
        let den: u64 = den.parse().map_err(|_| OddsError::Malformed)?;
        if den == 0 {
            return Err(OddsError::Malformed);
        }
        // floor(SCALE * (num + den) / den): rounds down, never in the bettor's favour.
        Odds::from_wide((num + den) * u64::from(ODDS_SCALE) / den)
    }

    /// Parses American odds: `+150` (profit on 100 staked) or `-200` (stake to win 100).
    pub fn parse_american(text: &str) -> Result<Odds, OddsError> {
        let (sign, magnitude) = text.split_at(1);
        if magnitude.is_empty() || magnitude.len() > 9 || !magnitude.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(OddsError::Malformed);
        }
        let magnitude: u64 = magnitude.parse().map_err(|_| OddsError::Malformed)?;
        if magnitude < 100 {
            // American odds between -100 and +100 do not exist.
            return Err(OddsError::OutOfRange);
        }
        let scale = u64::from(ODDS_SCALE);
        let scaled = match sign {
            "+" => scale + magnitude * scale / 100,
            _ => scale + 100 * scale / magnitude,
        };
        Odds::from_wide(scaled)
    }

    fn from_wide(scaled: u64) -> Result<Odds, OddsError> {
        u32::try_from(scaled).map_err(|_| OddsError::OutOfRange).and_then(Odds::from_scaled)
    }

    /// Decimal form with at least two places and no trailing zeros beyond them: `"2.50"`,
    /// `"1.3333"`, `"1.125"`.
    pub fn decimal(self) -> String {
        let whole = self.0 / ODDS_SCALE;
        let fraction = self.0 % ODDS_SCALE;
        if fraction.is_multiple_of(100) {
            format!("{whole}.{:02}", fraction / 100)
        } else if fraction.is_multiple_of(10) {
            format!("{whole}.{:03}", fraction / 10)
        } else {
            format!("{whole}.{fraction:04}")
        }
    }

    /// The simplest fraction `p/q` that parses back to exactly these odds: `"3/2"`, `"1/3"`.
    pub fn fractional(self) -> String {
        let excess = u64::from(self.0 - ODDS_SCALE);
        let scale = u64::from(ODDS_SCALE);
        for den in 1..=FRACTION_DENOMINATOR_MAX {
            // Smallest numerator with floor(scale * num / den) >= excess.
            let num = (excess * den).div_ceil(scale);
            if num * scale / den == excess {
                return format!("{num}/{den}");
            }
        }
        // Unreachable: den = scale always matches; kept total rather than panicking.
        format!("{excess}/{scale}")
    }

    /// American form rounded to the nearest whole number: `"+150"`, `"-200"`, `"+100"`.
    pub fn american(self) -> String {
        let excess = u64::from(self.0 - ODDS_SCALE);
        let scale = u64::from(ODDS_SCALE);
        if excess >= scale {
            format!("+{}", (excess * 100 + scale / 2) / scale)
        } else {
            format!("-{}", (100 * scale + excess / 2) / excess)
        }
    }
}

impl fmt::Display for Odds {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.decimal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_format() {
        let two_fifty = Odds::from_scaled(25_000).unwrap();
        assert_eq!(Odds::parse("2.50"), Ok(two_fifty));
        assert_eq!(Odds::parse("2.5"), Ok(two_fifty));
        assert_eq!(Odds::parse("3/2"), Ok(two_fifty));
        assert_eq!(Odds::parse("+150"), Ok(two_fifty));
        assert_eq!(Odds::parse("-200"), Odds::parse("1.5"));
        assert_eq!(Odds::parse("+100"), Odds::parse("2"));
        assert_eq!(Odds::parse("-100"), Odds::parse("2"));
        assert_eq!(Odds::parse("1/3"), Odds::parse("1.3333"));
        assert_eq!(Odds::parse("-300"), Odds::parse("1.3333"));
        assert_eq!(Odds::parse("2.50001"), Err(OddsError::TooManyPlaces));
        assert_eq!(Odds::parse("1"), Err(OddsError::OutOfRange));
        assert_eq!(Odds::parse("1.00"), Err(OddsError::OutOfRange));
        assert_eq!(Odds::parse("+99"), Err(OddsError::OutOfRange));
        assert_eq!(Odds::parse("10001"), Err(OddsError::OutOfRange));
        for bad in ["", "x", "2.", ".5", "2,5", "1/0", "/2", "+", "-", "+1.5", "2.5.0", " 2"] {
            assert_eq!(Odds::parse(bad), Err(OddsError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn shows_every_format() {
        let cases = [
            ("2.50", "2.50", "3/2", "+150"),
            ("1.5", "1.50", "1/2", "-200"),
            ("2", "2.00", "1/1", "+100"),
            ("1/3", "1.3333", "1/3", "-300"),
            ("1.125", "1.125", "1/8", "-800"),
            ("11", "11.00", "10/1", "+1000"),
            ("1.91", "1.91", "91/100", "-110"),
        ];
        for (input, decimal, fractional, american) in cases {
            let odds = Odds::parse(input).unwrap();
            assert_eq!(
                (odds.decimal().as_str(), odds.fractional().as_str(), odds.american().as_str()),
                (decimal, fractional, american),
                "{input}"
            );
        }
    }
}
