//! The one rounding rule of the book: every payout is `floor(stake × product of multipliers)`,
//! computed exactly and rounded down to the minor unit once, at the end.
//!
//! A multiplier is what one leg does to the money riding on it: its odds on a win, 0 on a loss,
//! 1 when void, the odds times the dead-heat factor on a dead heat, and the void-factor mix of
//! refund and result on an Asian quarter line. Rounding once, down, means the book never pays a
//! fraction of a minor unit it does not owe, and a multiple pays the same whatever order its
//! legs are listed in.

use num_bigint::BigUint;

use crate::{Money, Odds, Ratio, ODDS_SCALE};

/// An exact non-negative rational multiplier `num / den`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Multiplier {
    num: u128,
    den: u128,
}

impl Multiplier {
    pub const ZERO: Multiplier = Multiplier { num: 0, den: 1 };
    pub const ONE: Multiplier = Multiplier { num: 1, den: 1 };

    pub fn odds(odds: Odds) -> Multiplier {
        Multiplier { num: u128::from(odds.scaled()), den: u128::from(ODDS_SCALE) }
    }

    /// Decimal odds given in `ODDS_SCALE` units, for derived odds such as each-way place odds.
    pub fn from_odds_scaled(scaled: u128) -> Multiplier {
        Multiplier { num: scaled, den: u128::from(ODDS_SCALE) }.reduced()
    }

    /// `num / den` of two positive integers (for example struck odds over current odds).
    pub fn ratio_of(num: u32, den: u32) -> Multiplier {
        Multiplier { num: u128::from(num), den: u128::from(den.max(1)) }.reduced()
    }

    pub fn ratio(ratio: Ratio) -> Multiplier {
        Multiplier { num: u128::from(ratio.num()), den: u128::from(ratio.den()) }
    }

    pub fn num(self) -> u128 {
        self.num
    }

    pub fn den(self) -> u128 {
        self.den
    }

    /// `self × other`. Operands are odds (den 10^4) and factors (den ≤ 10^6), combined at most
    /// three deep per leg, so products stay far below `u128::MAX`.
    pub fn times(self, other: Multiplier) -> Multiplier {
        Multiplier { num: self.num * other.num, den: self.den * other.den }.reduced()
    }

    /// `weight × self + (1 - weight) × other`: the mix used by void factors.
    pub fn mix(weight: Ratio, first: Multiplier, second: Multiplier) -> Multiplier {
        let weight_num = u128::from(weight.num());
        let weight_den = u128::from(weight.den());
        debug_assert!(weight_num <= weight_den);
        let num = weight_num * first.num * second.den + (weight_den - weight_num) * second.num * first.den;
        Multiplier { num, den: weight_den * first.den * second.den }.reduced()
    }

    fn reduced(self) -> Multiplier {
        let (mut a, mut b) = (self.num, self.den);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        let divisor = a.max(1);
        Multiplier { num: self.num / divisor, den: self.den / divisor }
    }
}

/// `floor(stake × Π multipliers)`, exact. This is the only place a payout is rounded.
///
/// Uses `u128` while the running product fits and falls back to arbitrary precision for long
/// accumulators at long odds; the result saturates at the money maximum, which no payout the
/// book accepts reaches.
pub fn payout_floor(stake: Money, multipliers: &[Multiplier]) -> Money {
    let payout = payout_floor_wide(stake, multipliers);
    Money::from_minor(i64::try_from(payout).unwrap_or(i64::MAX).min(crate::money::MONEY_MINOR_MAX))
}

/// `payout_floor` before it saturates at the money maximum (saturating only at `u128::MAX`):
/// how far over a cap a payout is, for scaling a refused stake down to one that fits.
pub fn payout_floor_wide(stake: Money, multipliers: &[Multiplier]) -> u128 {
    debug_assert!(stake.minor() >= 0, "stakes are never negative");
    let stake = stake.minor().max(0) as u128;
    let mut num = Some(stake);
    let mut den = Some(1u128);
    for multiplier in multipliers {
        num = num.and_then(|n| n.checked_mul(multiplier.num));
        den = den.and_then(|d| d.checked_mul(multiplier.den));
    }
    match (num, den) {
        (Some(num), Some(den)) => num / den,
        _ => {
            let mut num = BigUint::from(stake);
            let mut den = BigUint::from(1u8);
            for multiplier in multipliers {
                num *= multiplier.num;
                den *= multiplier.den;
            }
            u128::try_from(num / den).unwrap_or(u128::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn odds(text: &str) -> Multiplier {
        Multiplier::odds(Odds::parse(text).unwrap())
    }

    #[test]
    fn rounds_down_once() {
        let stake = Money::from_minor(1000);
        assert_eq!(payout_floor(stake, &[odds("2.50")]), Money::from_minor(2500));
        // 10.00 at 1/3 (1.3333) pays 13.333 -> 13.33, never 13.34.
        assert_eq!(payout_floor(stake, &[odds("1/3")]), Money::from_minor(1333));
        // 0.01 at 1.5 pays 0.015 -> 0.01.
        assert_eq!(payout_floor(Money::from_minor(1), &[odds("1.5")]), Money::from_minor(1));
        // One rounding for a multiple: 1.00 at 1.5 x 1.5 = 2.25 exactly.
        assert_eq!(payout_floor(Money::from_minor(100), &[odds("1.5"), odds("1.5")]), Money::from_minor(225));
        // 0.03 at 1.5 x 1.5 = 0.0675 -> 0.06; rounding each leg would give floor(floor(4.5)*1.5)=0.06
        // here but differs in general, e.g. 0.01 at 1.5 x 1.5 = 0.0225 -> 0.02 (per leg: 0.01).
        assert_eq!(payout_floor(Money::from_minor(1), &[odds("1.5"), odds("1.5")]), Money::from_minor(2));
        assert_eq!(payout_floor(stake, &[Multiplier::ZERO]), Money::ZERO);
        assert_eq!(payout_floor(stake, &[]), stake);
    }

    #[test]
    fn dead_heat_and_void_factors() {
        let stake = Money::from_minor(6000);
        // Three-way dead heat for first at 6.0: 60 * 6 / 3 = 120.
        let dead_heat = odds("6").times(Multiplier::ratio(Ratio::parse("1/3").unwrap()));
        assert_eq!(payout_floor(stake, &[dead_heat]), Money::from_minor(12000));
        // Asian quarter line, half won at 1.90: half refunded, half paid at 1.90.
        let half_won = Multiplier::mix(Ratio::HALF, Multiplier::ONE, odds("1.90"));
        assert_eq!(payout_floor(Money::from_minor(1000), &[half_won]), Money::from_minor(1450));
        let half_lost = Multiplier::mix(Ratio::HALF, Multiplier::ONE, Multiplier::ZERO);
        assert_eq!(payout_floor(Money::from_minor(1000), &[half_lost]), Money::from_minor(500));
    }

    #[test]
    fn long_accumulators_use_big_integers() {
        let legs = vec![odds("1000"); 20];
        assert_eq!(payout_floor(Money::from_minor(100), &legs).minor(), crate::money::MONEY_MINOR_MAX);
        let legs = vec![odds("1.0001"); 30];
        // 1.0001^30 = 1.003004..., so 10,000.00 pays 10,030.04.
        assert_eq!(payout_floor(Money::from_minor(1_000_000), &legs), Money::from_minor(1_003_004));
    }
}
