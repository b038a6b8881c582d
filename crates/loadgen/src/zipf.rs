//! A Zipf sampler over market ranks: rank k (from 0) is drawn with probability proportional to
//! 1 / (k + 1)^s, so a few markets take most of the bets, as on a derby night.
//!
//! A table of the cumulative distribution and a binary search: exact for any exponent, and the
//! table (8 bytes a market) is built once per run.

/// Markets a sampler may rank.
pub const RANKS_MAX: usize = 1_000_000;

#[derive(Clone, Debug)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// A sampler over `ranks` ranks (1..=`RANKS_MAX`) with exponent `exponent` (>= 0; 0 is uniform).
    pub fn new(ranks: usize, exponent: f64) -> Zipf {
        assert!((1..=RANKS_MAX).contains(&ranks), "Zipf over {ranks} ranks");
        assert!(exponent >= 0.0 && exponent.is_finite(), "Zipf exponent {exponent}");
        let mut cumulative = Vec::with_capacity(ranks);
        let mut total = 0.0;
        for rank in 0..ranks {
            total += 1.0 / ((rank + 1) as f64).powf(exponent);
            cumulative.push(total);
        }
        for value in &mut cumulative {
            *value /= total;
        }
        Zipf { cumulative }
    }

    pub fn ranks(&self) -> usize {
        self.cumulative.len()
    }

    /// The rank for a uniform draw in [0, 1).
    pub fn sample(&self, uniform: f64) -> usize {
        let rank = self.cumulative.partition_point(|&cumulative| cumulative <= uniform);
        rank.min(self.cumulative.len() - 1)
    }

    /// The probability of ranks 0..`top`: how hot the hot markets are.
    pub fn share_of_top(&self, top: usize) -> f64 {
        match top {
            0 => 0.0,
            top => self.cumulative[top.min(self.cumulative.len()) - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::SplitMix64;

    #[test]
    fn frequencies_follow_the_power_law() {
        let zipf = Zipf::new(1_000, 1.2);
        let mut random = SplitMix64::new(7);
        let draws = 400_000;
        let mut counts = vec![0u64; 1_000];
        for _ in 0..draws {
            counts[zipf.sample(random.next_f64())] += 1;
        }
        // Rank 0 against rank 1 and rank 9: ratios 2^1.2 = 2.30 and 10^1.2 = 15.8.
        let ratio_1 = counts[0] as f64 / counts[1] as f64;
        let ratio_9 = counts[0] as f64 / counts[9] as f64;
        assert!((2.15..2.45).contains(&ratio_1), "{ratio_1}");
        assert!((14.0..17.8).contains(&ratio_9), "{ratio_9}");
        // The five hottest markets take the share the table says (about 47%).
        let top_five = counts[..5].iter().sum::<u64>() as f64 / draws as f64;
        assert!((top_five - zipf.share_of_top(5)).abs() < 0.01, "{top_five} vs {}", zipf.share_of_top(5));
        assert!(counts[999] > 0, "the coldest market is reachable");
    }

    #[test]
    fn edges() {
        let uniform = Zipf::new(4, 0.0);
        assert_eq!(uniform.sample(0.0), 0);
        assert_eq!(uniform.sample(0.2499), 0);
        assert_eq!(uniform.sample(0.25), 1);
        assert_eq!(uniform.sample(0.999_999), 3);
        assert_eq!(uniform.sample(1.0), 3, "never past the last rank");
        let single = Zipf::new(1, 3.0);
        assert_eq!(single.sample(0.9), 0);
        assert!((uniform.share_of_top(2) - 0.5).abs() < 1e-12);
    }
}
