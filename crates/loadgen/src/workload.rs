//! What each request is: a bet drawn from the run's seed and its sequence number alone, so
//! the sportsbook and the PostgreSQL baseline get exactly the same bets in the same order
//! (player, markets by Zipf rank, kind, stake, price policy), and a request can be drawn on any
//! task without sharing a random number generator.
//!
//! Prices live in a `PriceTable` both the bets and the price driver see: bets name the price
//! the table holds when they are sent (what the bettor saw), and the price driver moves it.

use std::sync::atomic::{AtomicU32, Ordering};

pub use book::{BetKind, PricePolicy, SystemKind};

use crate::zipf::Zipf;

/// Selections of every market the generator creates (a match result: home, draw, away).
pub const SELECTIONS_PER_MARKET: usize = 3;
/// Legs of the largest multiple drawn.
pub const MULTIPLE_LEGS_MAX: usize = 4;
/// Draws before giving up on finding distinct markets for a multiple's legs.
const DISTINCT_MARKET_DRAWS_MAX: usize = 64;
/// Prices in ten-thousandths (the book's odds scale): 1.01 to 50.00, starting between 1.50
/// and 6.00 in whole hundredths. Moves walk in hundredths; the price drivers then make each
/// price unique in the run (`UniquePrices`), which takes the last two decimals.
pub const PRICE_SCALE: u32 = 10_000;
pub const PRICE_MIN: u32 = 10_100;
pub const PRICE_MAX: u32 = 500_000;
const INITIAL_PRICE_HUNDREDTHS: (u32, u32) = (150, 600);

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast generator whose seeding is one addition,
/// so every request can have its own stream.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high);
        low + self.next_u64() % (high - low + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.next_u64() % 100 < u64::from(percent)
    }
}

/// Percentages of the bet mix.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BetMix {
    /// Multiples (accumulators of 2 to `MULTIPLE_LEGS_MAX` legs on distinct markets).
    pub multiple_percent: u32,
    /// System bets (a trixie on 3 legs or a yankee on 4, half each).
    pub system_percent: u32,
    /// Price policies: `better` and `any`; the rest take `none`.
    pub policy_better_percent: u32,
    pub policy_any_percent: u32,
    /// Bets sent a second time with the same Idempotency-Key after the first answer.
    pub retry_percent: u32,
}

impl Default for BetMix {
    fn default() -> BetMix {
        BetMix {
            multiple_percent: 10,
            system_percent: 5,
            policy_better_percent: 25,
            policy_any_percent: 15,
            retry_percent: 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WorkloadOptions {
    pub seed: u64,
    pub markets: usize,
    /// Zipf exponent of market popularity.
    pub zipf_exponent: f64,
    pub mix: BetMix,
    /// Stake per line in minor units, uniform: the baseline's `random(100, 10000)`.
    pub stake_minor_min: u64,
    pub stake_minor_max: u64,
}

impl Default for WorkloadOptions {
    fn default() -> WorkloadOptions {
        WorkloadOptions {
            seed: 1,
            markets: 1_000,
            zipf_exponent: 1.2,
            mix: BetMix::default(),
            stake_minor_min: 100,
            stake_minor_max: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    /// Zipf rank of the market: 0 is the hottest.
    pub market: usize,
    pub selection: usize,
}

/// One bet to send.
#[derive(Clone, Debug, PartialEq)]
pub struct BetSpec {
    pub sequence: u64,
    /// A uniform draw each target maps onto its own accounts (players or wallet rows).
    pub account_draw: u64,
    pub kind: BetKind,
    /// Distinct markets, one leg each.
    pub legs: Vec<Leg>,
    pub stake_minor: u64,
    pub policy: PricePolicy,
    /// Send again with the same Idempotency-Key once the first answer is in.
    pub retry: bool,
}

impl BetSpec {
    /// Lines the stake applies to.
    pub fn lines(&self) -> u64 {
        match self.kind {
            BetKind::System(_) => book::lines(self.kind, self.legs.len(), false).len() as u64,
            BetKind::Single | BetKind::Multiple => 1,
        }
    }

    pub fn total_stake_minor(&self) -> u64 {
        self.stake_minor * self.lines()
    }
}

/// Draws the bets of a run.
#[derive(Clone, Debug)]
pub struct Workload {
    options: WorkloadOptions,
    zipf: Zipf,
}

impl Workload {
    pub fn new(options: WorkloadOptions) -> Workload {
        let zipf = Zipf::new(options.markets, options.zipf_exponent);
        Workload { options, zipf }
    }

    pub fn options(&self) -> &WorkloadOptions {
        &self.options
    }

    pub fn zipf(&self) -> &Zipf {
        &self.zipf
    }

    /// The bet of request `sequence`: the same for every target and every run with this seed.
    pub fn bet(&self, sequence: u64) -> BetSpec {
        // Two rounds of mixing so that neighbouring sequence numbers get unrelated streams.
        let mut random = SplitMix64::new(SplitMix64::new(self.options.seed ^ sequence.rotate_left(32)).next_u64());
        let mix = &self.options.mix;
        let roll = random.next_u64() % 100;
        let kind = if roll < u64::from(mix.system_percent) {
            BetKind::System(if random.percent(50) { SystemKind::Trixie } else { SystemKind::Yankee })
        } else if roll < u64::from(mix.system_percent + mix.multiple_percent) {
            BetKind::Multiple
        } else {
            BetKind::Single
        };
        let leg_count = match kind {
            BetKind::Single => 1,
            BetKind::Multiple => random.between(2, MULTIPLE_LEGS_MAX as u64) as usize,
            BetKind::System(system) => system.selections(),
        }
        .min(self.options.markets);
        let mut legs: Vec<Leg> = Vec::with_capacity(leg_count);
        for _ in 0..DISTINCT_MARKET_DRAWS_MAX {
            if legs.len() == leg_count {
                break;
            }
            let market = self.zipf.sample(random.next_f64());
            if legs.iter().all(|leg| leg.market != market) {
                legs.push(Leg { market, selection: (random.next_u64() % SELECTIONS_PER_MARKET as u64) as usize });
            }
        }
        // Too few distinct markets drawn (a tiny catalog with a steep exponent): bet a single.
        let kind = if legs.len() == leg_count { kind } else { BetKind::Single };
        legs.truncate(if kind == BetKind::Single { 1 } else { legs.len() });
        let policy_roll = (random.next_u64() % 100) as u32;
        let policy = if policy_roll < mix.policy_better_percent {
            PricePolicy::Better
        } else if policy_roll < mix.policy_better_percent + mix.policy_any_percent {
            PricePolicy::Any
        } else {
            PricePolicy::None
        };
        BetSpec {
            sequence,
            account_draw: random.next_u64(),
            kind,
            legs,
            stake_minor: random.between(self.options.stake_minor_min, self.options.stake_minor_max),
            policy,
            retry: random.percent(mix.retry_percent),
        }
    }

    /// The mean total stake of a bet, for funding the players.
    pub fn mean_total_stake_minor(&self) -> f64 {
        let mix = &self.options.mix;
        let stake = (self.options.stake_minor_min + self.options.stake_minor_max) as f64 / 2.0;
        let lines = |kind: SystemKind| book::lines(BetKind::System(kind), kind.selections(), false).len();
        let system_lines = (lines(SystemKind::Trixie) + lines(SystemKind::Yankee)) as f64 / 2.0;
        let system = f64::from(mix.system_percent) / 100.0;
        stake * (1.0 - system + system * system_lines)
    }
}

/// Current prices, in ten-thousandths, of every selection of every market (by Zipf rank).
#[derive(Debug)]
pub struct PriceTable {
    prices: Vec<AtomicU32>,
}

impl PriceTable {
    /// Initial prices drawn from the seed, the same for every target.
    pub fn new(seed: u64, markets: usize) -> PriceTable {
        let mut random = SplitMix64::new(seed ^ 0x5052_4943_4553);
        let (low, high) = INITIAL_PRICE_HUNDREDTHS;
        let prices = (0..markets * SELECTIONS_PER_MARKET)
            .map(|_| AtomicU32::new(random.between(u64::from(low), u64::from(high)) as u32 * 100))
            .collect();
        PriceTable { prices }
    }

    pub fn get(&self, leg: Leg) -> u32 {
        self.prices[leg.market * SELECTIONS_PER_MARKET + leg.selection].load(Ordering::Relaxed)
    }

    pub fn set(&self, leg: Leg, price: u32) {
        self.prices[leg.market * SELECTIONS_PER_MARKET + leg.selection].store(price, Ordering::Relaxed);
    }

    /// The market's prices after one move: each selection by up to ±5%, to whole hundredths,
    /// within the bounds.
    pub fn moved(&self, market: usize, random: &mut SplitMix64) -> [u32; SELECTIONS_PER_MARKET] {
        std::array::from_fn(|selection| {
            let current = f64::from(self.get(Leg { market, selection })) / 100.0;
            let factor = 1.0 + (random.next_f64() - 0.5) / 10.0;
            ((current * factor).round() as u32 * 100).clamp(PRICE_MIN, PRICE_MAX)
        })
    }
}

/// Gives every price change a price no other change of the run had, as close as it can to
/// the price the move wanted, so that a subscriber knows from a price alone which change it
/// got (and when that change was sent). Between 1.01 and 50.00 there are 489,901 prices; a run
/// that uses them all starts again, and a delivery of a price from before that is not matched.
#[derive(Clone, Debug)]
pub struct UniquePrices {
    used: Vec<bool>,
    claimed: usize,
}

impl Default for UniquePrices {
    fn default() -> UniquePrices {
        UniquePrices { used: vec![false; (PRICE_MAX - PRICE_MIN + 1) as usize], claimed: 0 }
    }
}

impl UniquePrices {
    /// The unused price nearest `wanted` (below it first on a tie), now used.
    pub fn claim(&mut self, wanted: u32) -> u32 {
        if self.claimed == self.used.len() {
            self.used.fill(false);
            self.claimed = 0;
        }
        let wanted = (wanted.clamp(PRICE_MIN, PRICE_MAX) - PRICE_MIN) as usize;
        let last = self.used.len() - 1;
        let index = (0..=last)
            .flat_map(|distance| [wanted.checked_sub(distance), Some(wanted + distance).filter(|up| *up <= last)])
            .flatten()
            .find(|index| !self.used[*index])
            .expect("an unused price exists: the table is emptied when full");
        self.used[index] = true;
        self.claimed += 1;
        PRICE_MIN + index as u32
    }
}

/// The price drivers' changes: a market by Zipf popularity (hot markets move most), each of
/// its selections moved by `PriceTable::moved`, then made unique in the run.
#[derive(Clone, Debug)]
pub struct PriceMoves {
    random: SplitMix64,
    unique: UniquePrices,
}

impl PriceMoves {
    pub fn new(seed: u64) -> PriceMoves {
        PriceMoves { random: SplitMix64::new(seed ^ 0x0DD5), unique: UniquePrices::default() }
    }

    /// The next change: its market (Zipf rank) and the new price of each selection.
    pub fn next(&mut self, workload: &Workload, prices: &PriceTable) -> (usize, [u32; SELECTIONS_PER_MARKET]) {
        let market = workload.zipf().sample(self.random.next_f64());
        let moved = prices.moved(market, &mut self.random);
        (market, moved.map(|price| self.unique.claim(price)))
    }
}

/// "2.50" from 25,000 and "2.5013" from 25,013: at least two decimals, at most four.
pub fn format_price(price: u32) -> String {
    let (whole, fraction) = (price / PRICE_SCALE, price % PRICE_SCALE);
    if fraction.is_multiple_of(100) {
        format!("{whole}.{:02}", fraction / 100)
    } else if fraction.is_multiple_of(10) {
        format!("{whole}.{:03}", fraction / 10)
    } else {
        format!("{whole}.{fraction:04}")
    }
}

/// The price in ten-thousandths of a decimal price as the API renders it ("2.5", "2.50",
/// "2.5013"), if it has at most four decimals.
pub fn parse_price(text: &str) -> Option<u32> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 4 || !fraction.bytes().all(|digit| digit.is_ascii_digit()) {
        return None;
    }
    let mut price = whole.parse::<u32>().ok()?.checked_mul(PRICE_SCALE)?;
    let mut scale = PRICE_SCALE / 10;
    for digit in fraction.bytes() {
        price = price.checked_add(u32::from(digit - b'0') * scale)?;
        scale /= 10;
    }
    Some(price)
}

/// "12.34" from 1234 minor units (every currency the generator uses has two decimals).
pub fn format_money(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bets_depend_on_seed_and_sequence_only() {
        let workload = Workload::new(WorkloadOptions::default());
        let again = Workload::new(WorkloadOptions::default());
        for sequence in [0, 1, 2, 99, 1_000_000] {
            assert_eq!(workload.bet(sequence), again.bet(sequence));
        }
        let other = Workload::new(WorkloadOptions { seed: 2, ..WorkloadOptions::default() });
        assert_ne!(workload.bet(5), other.bet(5));
    }

    #[test]
    fn the_mix_matches_its_percentages() {
        let workload = Workload::new(WorkloadOptions::default());
        let draws = 100_000u64;
        let (mut singles, mut multiples, mut systems, mut retries, mut any) = (0, 0, 0, 0, 0);
        let mut stake_total = 0u64;
        for sequence in 0..draws {
            let bet = workload.bet(sequence);
            let markets: Vec<usize> = bet.legs.iter().map(|leg| leg.market).collect();
            let mut distinct = markets.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), markets.len(), "legs on distinct markets: {bet:?}");
            assert!((100..=10_000).contains(&bet.stake_minor));
            match bet.kind {
                BetKind::Single => {
                    assert_eq!(bet.legs.len(), 1);
                    singles += 1;
                }
                BetKind::Multiple => {
                    assert!((2..=MULTIPLE_LEGS_MAX).contains(&bet.legs.len()));
                    multiples += 1;
                }
                BetKind::System(system) => {
                    assert_eq!(bet.legs.len(), system.selections());
                    systems += 1;
                }
            }
            retries += u64::from(bet.retry);
            any += u64::from(bet.policy == PricePolicy::Any);
            stake_total += bet.total_stake_minor();
        }
        let share = |count: u64| count as f64 * 100.0 / draws as f64;
        assert!((84.0..86.0).contains(&share(singles)), "{}", share(singles));
        assert!((9.0..11.0).contains(&share(multiples)));
        assert!((4.5..5.5).contains(&share(systems)));
        assert!((1.5..2.5).contains(&share(retries)));
        assert!((14.0..16.0).contains(&share(any)));
        let mean = stake_total as f64 / draws as f64;
        let expected = workload.mean_total_stake_minor();
        assert!((mean - expected).abs() / expected < 0.03, "{mean} vs {expected}");
    }

    #[test]
    fn prices_move_within_bounds() {
        let table = PriceTable::new(1, 10);
        let mut random = SplitMix64::new(3);
        for _ in 0..10_000 {
            let moved = table.moved(0, &mut random);
            for (selection, price) in moved.into_iter().enumerate() {
                assert!((PRICE_MIN..=PRICE_MAX).contains(&price));
                assert_eq!(price % 100, 0, "moves are whole hundredths");
                table.set(Leg { market: 0, selection }, price);
            }
        }
        assert_eq!(format_price(25_000), "2.50");
        assert_eq!(format_price(10_100), "1.01");
        assert_eq!(format_price(25_010), "2.501");
        assert_eq!(format_price(25_013), "2.5013");
        assert_eq!(format_money(1_234), "12.34");
        assert_eq!(format_money(5), "0.05");
        for price in [10_100, 25_000, 25_010, 25_013, 500_000] {
            assert_eq!(parse_price(&format_price(price)), Some(price));
        }
        assert_eq!(parse_price("2.5"), Some(25_000));
        assert_eq!(parse_price("3"), Some(30_000));
        assert_eq!(parse_price("2.50131"), None);
        assert_eq!(parse_price("2.5x"), None);
    }

    #[test]
    fn unique_prices_never_repeat_and_stay_near_the_wanted_price() {
        let mut unique = UniquePrices::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1_000 {
            let price = unique.claim(25_000);
            assert!(seen.insert(price), "{price} twice");
            assert!(price.abs_diff(25_000) <= 500, "{price}");
        }
        assert_eq!(unique.claim(1), PRICE_MIN);
        assert_eq!(unique.claim(1), PRICE_MIN + 1);
        assert_eq!(unique.claim(u32::MAX), PRICE_MAX);
        // Once every price is used, the table starts again rather than failing.
        let mut small = UniquePrices::default();
        let total = (PRICE_MAX - PRICE_MIN + 1) as usize;
        small.used.fill(true);
        small.claimed = total;
        assert_eq!(small.claim(30_000), 30_000);
    }
}
