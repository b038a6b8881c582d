//! The demo trader's pricing models: Poisson football (1X2, total goals 2.5, Asian handicap
//! -0.25), a logistic tennis match and a Plackett-Luce horse race, each turned into published
//! prices on the exchange-style price ladder.
//!
//! The models work in `f64`: they only decide which price the demo publishes, never money. The
//! book receives exact `Odds` from `ladder`, and every payout is decided by the book from those.

use domain::{Odds, ODDS_SCALE};

/// Goals per side considered when pricing the rest of a football match; the tail beyond it is
/// negligible for the rates the demo uses.
pub const GOALS_PER_SIDE_MAX: usize = 12;
/// The book's overround on two- and three-way markets (5 %) and on a race (15 %).
pub const MARGIN_MATCH: f64 = 0.05;
pub const MARGIN_RACE: f64 = 0.15;
/// Lowest and highest published decimal price, in hundredths.
const PRICE_HUNDREDTHS_MIN: u32 = 101;
const PRICE_HUNDREDTHS_MAX: u32 = 100_000;
/// The price ladder: below each bound (hundredths), prices move in steps of this many
/// hundredths (1.01, 1.02 ... 2.00, 2.02 ... 3.00, 3.05 ... 1000).
const LADDER: [(u32, u32); 9] =
    [(200, 1), (300, 2), (400, 5), (600, 10), (1_000, 20), (2_000, 50), (3_000, 100), (5_000, 200), (10_000, 500)];
const LADDER_TOP_STEP: u32 = 1_000;

const _: () = assert!(ODDS_SCALE.is_multiple_of(100), "ladder prices are whole hundredths");

/// Rounds a decimal price to the nearest rung of the ladder, within the published range.
pub fn ladder(decimal: f64) -> Odds {
    let hundredths = if decimal.is_finite() { (decimal * 100.0).round().clamp(0.0, f64::from(u32::MAX)) } else { 0.0 };
    let hundredths = (hundredths as u32).clamp(PRICE_HUNDREDTHS_MIN, PRICE_HUNDREDTHS_MAX);
    let step = LADDER.iter().find(|(below, _)| hundredths < *below).map_or(LADDER_TOP_STEP, |(_, step)| *step);
    let rung = ((hundredths + step / 2) / step * step).clamp(PRICE_HUNDREDTHS_MIN, PRICE_HUNDREDTHS_MAX);
    Odds::from_scaled(rung * (ODDS_SCALE / 100)).unwrap_or(Odds::EVENS_REFUND)
}

/// The published price of an outcome with fair decimal odds `fair`, after the margin.
pub fn with_margin(fair: f64, margin: f64) -> f64 {
    fair / (1.0 + margin)
}

/// The probability a published price implies, margin included.
pub fn implied_probability(odds: Odds) -> f64 {
    f64::from(ODDS_SCALE) / f64::from(odds.scaled())
}

fn poisson(mean: f64) -> [f64; GOALS_PER_SIDE_MAX + 1] {
    let mut probabilities = [0.0; GOALS_PER_SIDE_MAX + 1];
    let mut term = (-mean.max(0.0)).exp();
    for (goals, probability) in probabilities.iter_mut().enumerate() {
        *probability = term;
        term *= mean.max(0.0) / (goals as f64 + 1.0);
    }
    probabilities
}

/// Final-result probabilities of a football match.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FootballOutlook {
    pub home: f64,
    pub draw: f64,
    pub away: f64,
    /// Three goals or more.
    pub over: f64,
}

/// The outlook of a match with `score` so far, where each side still scores at its rate (goals
/// per 90 minutes) over the `remaining` fraction of the match.
pub fn football_outlook(rates: [f64; 2], remaining: f64, score: [u32; 2]) -> FootballOutlook {
    let remaining = remaining.clamp(0.0, 1.0);
    let home_goals = poisson(rates[0] * remaining);
    let away_goals = poisson(rates[1] * remaining);
    let mut outlook = FootballOutlook { home: 0.0, draw: 0.0, away: 0.0, over: 0.0 };
    let mut total = 0.0;
    for (home_more, home_probability) in home_goals.iter().enumerate() {
        for (away_more, away_probability) in away_goals.iter().enumerate() {
            let probability = home_probability * away_probability;
            let home = score[0] as usize + home_more;
            let away = score[1] as usize + away_more;
            total += probability;
            match home.cmp(&away) {
                std::cmp::Ordering::Greater => outlook.home += probability,
                std::cmp::Ordering::Equal => outlook.draw += probability,
                std::cmp::Ordering::Less => outlook.away += probability,
            }
            if home + away >= 3 {
                outlook.over += probability;
            }
        }
    }
    // The truncated tail is tiny; spread it proportionally so the outcomes sum to one.
    if total > 0.0 {
        outlook.home /= total;
        outlook.draw /= total;
        outlook.away /= total;
        outlook.over /= total;
    }
    outlook
}

fn fair(probability: f64) -> f64 {
    1.0 / probability.max(1e-6)
}

/// Published prices of the three football markets, in selection order: match result (home,
/// draw, away), total goals 2.5 (over, under), Asian handicap -0.25 (home -0.25, away +0.25).
///
/// On the quarter line a draw settles half the stake as lost (home -0.25) or won (away +0.25)
/// and refunds the other half, so the fair prices are `(1 - d/2) / h` and
/// `(1 - d/2) / (a + d/2)`.
pub fn football_prices(outlook: FootballOutlook) -> [Vec<Odds>; 3] {
    let price = |fair_odds: f64| ladder(with_margin(fair_odds, MARGIN_MATCH));
    let half_draw = outlook.draw / 2.0;
    [
        vec![price(fair(outlook.home)), price(fair(outlook.draw)), price(fair(outlook.away))],
        vec![price(fair(outlook.over)), price(fair(1.0 - outlook.over))],
        vec![
            price((1.0 - half_draw) / outlook.home.max(1e-6)),
            price((1.0 - half_draw) / (outlook.away + half_draw).max(1e-6)),
        ],
    ]
}

/// The probability that the first player wins, from the logit of the match.
pub fn logistic(logit: f64) -> f64 {
    1.0 / (1.0 + (-logit).exp())
}

pub fn tennis_prices(logit: f64) -> Vec<Odds> {
    let first = logistic(logit);
    vec![ladder(with_margin(fair(first), MARGIN_MATCH)), ladder(with_margin(fair(1.0 - first), MARGIN_MATCH))]
}

/// Win probabilities of runners with log-strengths `strengths` (a softmax).
pub fn race_probabilities(strengths: &[f64]) -> Vec<f64> {
    let top = strengths.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = strengths.iter().map(|strength| (strength - top).exp()).collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|weight| weight / total).collect()
}

pub fn race_prices(strengths: &[f64]) -> Vec<Odds> {
    race_probabilities(strengths)
        .into_iter()
        .map(|probability| ladder(with_margin(fair(probability), MARGIN_RACE)))
        .collect()
}
