//! Small exact fractions for factors: dead heat, void (Asian quarter lines), stake factors,
//! each-way place terms and the cash-out margin.

use std::fmt;

/// Denominators above this are rejected: factors are things like 1/2, 1/3, 1/4 or 0.25, and a
/// bound keeps every product of factors far inside `u128`.
pub const RATIO_DENOMINATOR_MAX: u32 = 1_000_000;

/// A non-negative fraction `num / den` in lowest terms, `den > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ratio {
    num: u32,
    den: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RatioError {
    #[error("factor is not a decimal (\"0.5\") or a fraction (\"1/3\")")]
    Malformed,
    #[error("factor has too many decimal places or too large a denominator")]
    TooPrecise,
    #[error("factor is out of range")]
    OutOfRange,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Ratio {
    pub const ZERO: Ratio = Ratio { num: 0, den: 1 };
    pub const ONE: Ratio = Ratio { num: 1, den: 1 };
    pub const HALF: Ratio = Ratio { num: 1, den: 2 };

    /// Builds `num / den` in lowest terms.
    pub fn new(num: u32, den: u32) -> Result<Ratio, RatioError> {
        if den == 0 {
            return Err(RatioError::OutOfRange);
        }
        let divisor = gcd(u64::from(num), u64::from(den)).max(1);
        let (num, den) = (u64::from(num) / divisor, u64::from(den) / divisor);
        if den > u64::from(RATIO_DENOMINATOR_MAX) {
            return Err(RatioError::TooPrecise);
        }
        // Both fit: they are at most the inputs.
        Ok(Ratio { num: num as u32, den: den as u32 })
    }

    /// Parses `"0.5"`, `"1"`, `"0.25"` or `"1/3"`.
    pub fn parse(text: &str) -> Result<Ratio, RatioError> {
        let digits = |part: &str| !part.is_empty() && part.len() <= 9 && part.bytes().all(|b| b.is_ascii_digit());
        if let Some((num, den)) = text.split_once('/') {
            if !digits(num) || !digits(den) {
                return Err(RatioError::Malformed);
            }
            let num: u32 = num.parse().map_err(|_| RatioError::Malformed)?;
            let den: u32 = den.parse().map_err(|_| RatioError::Malformed)?;
            return Ratio::new(num, den);
        }
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if !digits(whole) || (text.contains('.') && !digits(fraction)) {
            return Err(RatioError::Malformed);
        }
        if fraction.len() > 6 {
            return Err(RatioError::TooPrecise);
        }
        let den = 10u64.pow(fraction.len() as u32);
        let whole: u64 = whole.parse().map_err(|_| RatioError::Malformed)?;
        let fraction: u64 =
            if fraction.is_empty() { 0 } else { fraction.parse().map_err(|_| RatioError::Malformed)? };
        // Reduce in 64 bits first: "46874.984375" is 2999999/64, which fits in 32 bits although
        // 46874984375/1000000 does not.
        let num = whole * den + fraction;
        let divisor = gcd(num, den).max(1);
        let num = u32::try_from(num / divisor).map_err(|_| RatioError::OutOfRange)?;
        Ratio::new(num, (den / divisor) as u32)
    }

    pub const fn num(self) -> u32 {
        self.num
    }

    pub const fn den(self) -> u32 {
        self.den
    }

    pub fn is_zero(self) -> bool {
        self.num == 0
    }

    pub fn is_one(self) -> bool {
        self.num == self.den
    }

    /// True for `0 < self <= 1`, the range of dead-heat and void factors.
    pub fn is_unit_fraction(self) -> bool {
        self.num > 0 && self.num <= self.den
    }

    /// `1 - self`, for `self <= 1`.
    pub fn complement(self) -> Ratio {
        debug_assert!(self.num <= self.den);
        Ratio { num: self.den - self.num, den: self.den }
    }
}

impl fmt::Display for Ratio {
    /// Shows a decimal when the fraction has one with at most six places, else `num/den`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut places = 0u32;
        let mut scaled = u64::from(self.num);
        let den = u64::from(self.den);
        while places <= 6 {
            if scaled % den == 0 {
                let value = scaled / den;
                let divisor = 10u64.pow(places);
                return if places == 0 {
                    write!(formatter, "{value}")
                } else {
                    write!(formatter, "{}.{:0width$}", value / divisor, value % divisor, width = places as usize)
                };
            }
            scaled *= 10;
            places += 1;
        }
        write!(formatter, "{}/{}", self.num, self.den)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals_and_fractions() {
        assert_eq!(Ratio::parse("0.5"), Ok(Ratio::HALF));
        assert_eq!(Ratio::parse("1/2"), Ok(Ratio::HALF));
        assert_eq!(Ratio::parse("2/4"), Ok(Ratio::HALF));
        assert_eq!(Ratio::parse("1"), Ok(Ratio::ONE));
        assert_eq!(Ratio::parse("0.25").unwrap(), Ratio::new(1, 4).unwrap());
        assert_eq!(Ratio::parse("1/3").unwrap().to_string(), "1/3");
        assert_eq!(Ratio::parse("0.25").unwrap().to_string(), "0.25");
        assert_eq!(Ratio::parse("1.5").unwrap().to_string(), "1.5");
        assert_eq!(Ratio::parse("2").unwrap().to_string(), "2");
        for bad in ["", ".5", "1.", "1/0", "a", "1/ 2", "-1", "0.1234567"] {
            assert!(Ratio::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Ratio::parse("1/3").unwrap().is_unit_fraction());
        assert!(!Ratio::parse("0").unwrap().is_unit_fraction());
        assert_eq!(Ratio::parse("0.25").unwrap().complement(), Ratio::new(3, 4).unwrap());
        // Shown with six places, read back although the unreduced numerator passes 32 bits.
        let large = Ratio::new(2_999_999, 64).unwrap();
        assert_eq!(large.to_string(), "46874.984375");
        assert_eq!(Ratio::parse(&large.to_string()), Ok(large));
    }
}
