//! Exact arithmetic of the auditor: leg multipliers as fractions of integers, and the payout
//! rule `floor(stake × Π multipliers)` rounded down once.
//!
//! Written here rather than taken from `domain::payout_floor` so that the auditor's money does
//! not depend on the code it audits. Products that outgrow `u128` (an eight-leg goliath at long
//! odds) fall back to `Big`, a deliberately small unsigned big integer: schoolbook
//! multiplication, and division by searching the quotient bit by bit, which is all this needs.

use std::cmp::Ordering;

use domain::MONEY_MINOR_MAX;

/// The odds scale of the book's published prices: decimal odds × 10,000.
pub const ODDS_SCALE: u128 = 10_000;

/// A non-negative fraction `num / den`, `den > 0`, kept in lowest terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fraction {
    pub num: u128,
    pub den: u128,
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Fraction {
    pub const ZERO: Fraction = Fraction { num: 0, den: 1 };
    pub const ONE: Fraction = Fraction { num: 1, den: 1 };

    pub fn new(num: u128, den: u128) -> Fraction {
        assert!(den > 0, "a fraction needs a positive denominator");
        let divisor = gcd(num, den).max(1);
        Fraction { num: num / divisor, den: den / divisor }
    }

    /// Decimal odds given in scaled units (`25_000` is 2.5).
    pub fn odds(scaled: u32) -> Fraction {
        Fraction::new(u128::from(scaled), ODDS_SCALE)
    }

    pub fn is_zero(self) -> bool {
        self.num == 0
    }

    pub fn times(self, other: Fraction) -> Fraction {
        Fraction::new(self.num * other.num, self.den * other.den)
    }

    /// `weight × first + (1 - weight) × second`, for `weight` in [0, 1].
    pub fn mix(weight: Fraction, first: Fraction, second: Fraction) -> Fraction {
        assert!(weight.num <= weight.den, "a mixing weight is at most 1");
        let num = weight.num * first.num * second.den + (weight.den - weight.num) * second.num * first.den;
        Fraction::new(num, weight.den * first.den * second.den)
    }
}

/// `floor(stake × Π factors)` in minor units, saturating at the money maximum.
pub fn payout(stake: i64, factors: &[Fraction]) -> i64 {
    assert!(stake >= 0, "stakes are never negative");
    let cap = MONEY_MINOR_MAX as u128;
    let mut num = Some(stake as u128);
    let mut den = Some(1u128);
    for factor in factors {
        num = num.and_then(|value| value.checked_mul(factor.num));
        den = den.and_then(|value| value.checked_mul(factor.den));
    }
    let quotient = match (num, den) {
        (Some(num), Some(den)) => num / den,
        _ => {
            let mut num = Big::from(stake as u128);
            let mut den = Big::from(1);
            for factor in factors {
                num = num.times(&Big::from(factor.num));
                den = den.times(&Big::from(factor.den));
            }
            Big::floor_quotient(&num, &den)
        }
    };
    quotient.min(cap) as i64
}

/// An unsigned integer of any size: 32-bit limbs, least significant first, no leading zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Big(Vec<u32>);

impl From<u128> for Big {
    fn from(mut value: u128) -> Big {
        let mut limbs = Vec::new();
        while value > 0 {
            limbs.push(value as u32);
            value >>= 32;
        }
        Big(limbs)
    }
}

impl Big {
    pub fn times(&self, other: &Big) -> Big {
        if self.0.is_empty() || other.0.is_empty() {
            return Big(Vec::new());
        }
        let mut limbs = vec![0u32; self.0.len() + other.0.len()];
        for (i, &a) in self.0.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &b) in other.0.iter().enumerate() {
                let sum = u64::from(a) * u64::from(b) + u64::from(limbs[i + j]) + carry;
                limbs[i + j] = sum as u32;
                carry = sum >> 32;
            }
            let mut k = i + other.0.len();
            while carry > 0 {
                let sum = u64::from(limbs[k]) + carry;
                limbs[k] = sum as u32;
                carry = sum >> 32;
                k += 1;
            }
        }
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
        Big(limbs)
    }

    pub fn compare(&self, other: &Big) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }

    /// `floor(num / den)`, or `u128::MAX` when the quotient needs more than 64 bits (far above
    /// any amount of money the book holds).
    pub fn floor_quotient(num: &Big, den: &Big) -> u128 {
        assert!(!den.0.is_empty(), "division by zero");
        if den.times(&Big::from(1u128 << 64)).compare(num) != Ordering::Greater {
            return u128::MAX;
        }
        let mut quotient = 0u128;
        for bit in (0..64).rev() {
            let candidate = quotient | (1u128 << bit);
            if den.times(&Big::from(candidate)).compare(num) != Ordering::Greater {
                quotient = candidate;
            }
        }
        quotient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_down_once() {
        assert_eq!(payout(1_000, &[Fraction::odds(25_000)]), 2_500);
        // 10.00 at 1.3333 pays 13.333 -> 13.33.
        assert_eq!(payout(1_000, &[Fraction::odds(13_333)]), 1_333);
        // One rounding for the whole product: 0.01 at 1.5 x 1.5 = 0.0225 -> 0.02.
        assert_eq!(payout(1, &[Fraction::odds(15_000), Fraction::odds(15_000)]), 2);
        assert_eq!(payout(1_000, &[Fraction::ZERO]), 0);
        assert_eq!(payout(1_000, &[]), 1_000);
        let half_won = Fraction::mix(Fraction::new(1, 2), Fraction::ONE, Fraction::odds(19_000));
        assert_eq!(payout(1_000, &[half_won]), 1_450);
    }

    #[test]
    fn the_big_path_agrees_with_u128_where_both_fit() {
        let mut rng = crate::rng::Rng::new(7);
        for _ in 0..2_000 {
            let legs = 1 + rng.below(4) as usize;
            let factors: Vec<Fraction> = (0..legs)
                .map(|_| Fraction::new(u128::from(rng.between(0, 99_999)), rng.between(1, 9_999).into()))
                .collect();
            let stake = rng.between(0, 1_000_000) as i64;
            let mut num = Big::from(stake as u128);
            let mut den = Big::from(1);
            for factor in &factors {
                num = num.times(&Big::from(factor.num));
                den = den.times(&Big::from(factor.den));
            }
            let by_big = Big::floor_quotient(&num, &den).min(MONEY_MINOR_MAX as u128) as i64;
            assert_eq!(by_big, payout(stake, &factors), "{stake} {factors:?}");
        }
    }

    #[test]
    fn long_products_saturate_at_the_money_maximum() {
        let legs = vec![Fraction::odds(10_000 * 10_000); 20];
        assert_eq!(payout(100, &legs), MONEY_MINOR_MAX);
        // 1.0001^30 = 1.003004..., so 10,000.00 pays 10,030.04.
        let legs = vec![Fraction::odds(10_001); 30];
        assert_eq!(payout(1_000_000, &legs), 1_003_004);
    }
}
