//! Property tests of the exact arithmetic: money text round trips in every currency, odds round
//! trips in all three formats, and the payout rounding rule checked against exact rationals.

use domain::{
    payout_floor, Currency, Money, MoneyError, Multiplier, Odds, OddsError, Ratio, MONEY_MINOR_MAX, ODDS_SCALE,
};
use num_bigint::BigUint;
use proptest::prelude::*;

/// The lowest and highest odds the book offers, in `ODDS_SCALE` units.
const LOWEST_ODDS: u32 = ODDS_SCALE + 1;
const HIGHEST_ODDS: u32 = 10_000 * ODDS_SCALE;

fn currency() -> impl Strategy<Value = Currency> {
    let all: Vec<Currency> = Currency::all().collect();
    assert_eq!(all.len(), 14, "every currency of the table parses");
    prop::sample::select(all)
}

/// Amounts across every magnitude: small ones, the maximum and its neighbours, and the rest.
fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 0i64..=100_000,
        3 => 0i64..=MONEY_MINOR_MAX,
        1 => (MONEY_MINOR_MAX - 1_000)..=MONEY_MINOR_MAX,
        1 => (0u32..=15).prop_map(|power| 10i64.pow(power)),
    ]
}

fn scaled_odds() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => LOWEST_ODDS..=HIGHEST_ODDS,
        4 => LOWEST_ODDS..=20 * ODDS_SCALE,
        1 => LOWEST_ODDS..=LOWEST_ODDS + 100,
        1 => HIGHEST_ODDS - 100..=HIGHEST_ODDS,
    ]
}

fn odds(scaled: u32) -> Odds {
    Odds::from_scaled(scaled).expect("generated odds are in the offered range")
}

/// `minor` as decimal text with `exponent` places, written here independently of `format`.
fn decimal_text(minor: u64, exponent: u8) -> String {
    let divisor = 10u64.pow(u32::from(exponent));
    if exponent == 0 {
        minor.to_string()
    } else {
        format!("{}.{:0width$}", minor / divisor, minor % divisor, width = usize::from(exponent))
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// `format` then `parse_amount` gives back every amount, in every currency, and `format`
    /// writes exactly the currency's number of places.
    #[test]
    fn money_text_round_trips(currency in currency(), minor in amount()) {
        let money = Money::from_minor(minor);
        let text = currency.format(money);
        prop_assert_eq!(&text, &decimal_text(minor.unsigned_abs(), currency.exponent()));
        prop_assert_eq!(currency.parse_amount(&text), Ok(money), "{} in {}", text, currency);
    }

    /// Shorter fractions mean the same amount: `"10.5"` is `"10.50"`, `"10"` is `"10.00"`.
    #[test]
    fn money_parses_fewer_places_than_the_exponent(currency in currency(), minor in amount(), dropped in 0u8..=3) {
        let text = currency.format(Money::from_minor(minor));
        let exponent = usize::from(currency.exponent());
        let Some((whole, fraction)) = text.split_once('.') else {
            return Ok(());
        };
        let keep = exponent.saturating_sub(usize::from(dropped));
        if fraction[keep..].bytes().any(|digit| digit != b'0') {
            return Ok(());
        }
        let shorter = if keep == 0 { whole.to_string() } else { format!("{whole}.{}", &fraction[..keep]) };
        prop_assert_eq!(currency.parse_amount(&shorter), Ok(Money::from_minor(minor)), "{}", shorter);
    }

    /// More places than the currency has are refused, never rounded, even when they are zeros.
    #[test]
    fn money_rejects_more_places_than_the_exponent(currency in currency(), minor in amount(), extra in "[0-9]{1,3}") {
        let text = currency.format(Money::from_minor(minor));
        let longer = if currency.exponent() == 0 { format!("{text}.{extra}") } else { format!("{text}{extra}") };
        prop_assert_eq!(
            currency.parse_amount(&longer),
            Err(MoneyError::TooManyPlaces { exponent: currency.exponent() }),
            "{}", longer
        );
    }

    /// Amounts above the maximum are refused as too large, and negative ones as malformed.
    #[test]
    fn money_rejects_too_large_and_negative(
        currency in currency(),
        excess in 1u64..=(u64::MAX / 1_000 - MONEY_MINOR_MAX as u64),
    ) {
        let too_large = decimal_text(MONEY_MINOR_MAX as u64 + excess, currency.exponent());
        prop_assert_eq!(currency.parse_amount(&too_large), Err(MoneyError::TooLarge), "{}", too_large);
        let negative = currency.format(Money::from_minor(-(excess.min(MONEY_MINOR_MAX as u64) as i64)));
        prop_assert_eq!(currency.parse_amount(&negative), Err(MoneyError::Malformed), "{}", negative);
    }

    /// `decimal` then `parse_decimal` (and `parse`) give back the same odds, written with two
    /// to four places.
    #[test]
    fn decimal_odds_round_trip(scaled in scaled_odds()) {
        let odds = odds(scaled);
        let text = odds.decimal();
        let places = text.split_once('.').map_or(0, |(_, fraction)| fraction.len());
        prop_assert!((2..=4).contains(&places), "{} has {} places", text, places);
        prop_assert_eq!(Odds::parse_decimal(&text), Ok(odds), "{}", text);
        prop_assert_eq!(Odds::parse(&text), Ok(odds), "{}", text);
    }

    /// `fractional` then `parse_fractional` gives back the same odds, and the fraction is in
    /// lowest terms (a smaller equal fraction would have been found first).
    #[test]
    fn fractional_odds_round_trip(scaled in scaled_odds()) {
        let odds = odds(scaled);
        let text = odds.fractional();
        prop_assert_eq!(Odds::parse_fractional(&text), Ok(odds), "{}", text);
        prop_assert_eq!(Odds::parse(&text), Ok(odds), "{}", text);
        let (num, den) = text.split_once('/').expect("a fraction has a slash");
        let (num, den): (u64, u64) = (num.parse().expect("numerator"), den.parse().expect("denominator"));
        prop_assert_eq!(gcd(num, den), 1, "{} is not in lowest terms", text);
    }

    /// A fraction `p/q` parses to the odds `floor(SCALE × (p + q) / q)`: never above the exact
    /// price, less than one unit below it. Showing those odds as a fraction and parsing that
    /// again gives the same odds.
    #[test]
    fn fractional_inputs_round_down_and_round_trip(num in 0u64..=2_000, den in 1u64..=2_000) {
        let scale = u64::from(ODDS_SCALE);
        let exact_times_den = (num + den) * scale;
        match Odds::parse_fractional(&format!("{num}/{den}")) {
            Ok(odds) => {
                let scaled = u64::from(odds.scaled());
                prop_assert!(
                    scaled * den <= exact_times_den && exact_times_den < (scaled + 1) * den,
                    "{}/{} -> {}", num, den, scaled
                );
                prop_assert_eq!(Odds::parse_fractional(&odds.fractional()), Ok(odds));
            }
            Err(error) => {
                prop_assert_eq!(error, OddsError::OutOfRange);
                let floor = exact_times_den / den;
                let out_of_range = floor < u64::from(LOWEST_ODDS) || floor > u64::from(HIGHEST_ODDS);
                prop_assert!(out_of_range, "{}/{} refused", num, den);
            }
        }
    }
}

/// Every American price from +100 to +100000 is exact in fixed point, so it shows as itself.
#[test]
fn positive_american_odds_show_as_themselves() {
    for magnitude in 100u32..=100_000 {
        let text = format!("+{magnitude}");
        let odds = Odds::parse(&text).unwrap_or_else(|error| panic!("{text}: {error}"));
        assert_eq!(odds.scaled(), ODDS_SCALE + magnitude * ODDS_SCALE / 100, "{text}");
        assert_eq!(odds.american(), text);
    }
}

/// Every American price from -101 to -100000: parsing rounds down (never in the bettor's
/// favour), the shown form is the same text when the price is exact in fixed point, and in all
/// cases parsing the shown form lands within one `ODDS_SCALE` unit of the first parse.
#[test]
fn negative_american_odds_round_down_and_show_back() {
    let scale = u64::from(ODDS_SCALE);
    for magnitude in 101u64..=100_000 {
        let text = format!("-{magnitude}");
        let odds = Odds::parse(&text).unwrap_or_else(|error| panic!("{text}: {error}"));
        // Decimal odds of -m are 1 + 100 / m.
        let scaled = u64::from(odds.scaled());
        let exact_times_magnitude = scale * magnitude + 100 * scale;
        assert!(scaled * magnitude <= exact_times_magnitude, "{text} rounded up to {scaled}");
        assert!(exact_times_magnitude < (scaled + 1) * magnitude, "{text} rounded down too far to {scaled}");
        let shown = odds.american();
        if (100 * scale) % magnitude == 0 {
            assert_eq!(shown, text, "{text} is exact");
        }
        let again = Odds::parse(&shown).unwrap_or_else(|error| panic!("{text} shown as {shown}: {error}"));
        assert!(
            again.scaled().abs_diff(odds.scaled()) <= 1,
            "{text} -> {scaled} shown as {shown} -> {}",
            again.scaled()
        );
    }
}

// ---- payouts ----------------------------------------------------------------------------------

/// The multipliers the book builds: odds, each-way place odds, dead-heat and void factors, the
/// void-factor mix, struck-over-current ratios for cash-out, their products, and 0 and 1.
fn multiplier() -> impl Strategy<Value = Multiplier> {
    let factor =
        (1u32..=1_000, 1u32..=1_000).prop_map(|(a, b)| Ratio::new(a.min(b), a.max(b)).expect("positive denominator"));
    let leaf = prop_oneof![
        6 => scaled_odds().prop_map(|scaled| Multiplier::odds(odds(scaled))),
        2 => (ODDS_SCALE..=HIGHEST_ODDS).prop_map(|scaled| Multiplier::from_odds_scaled(u128::from(scaled))),
        2 => factor.clone().prop_map(Multiplier::ratio),
        1 => (scaled_odds(), scaled_odds()).prop_map(|(struck, current)| Multiplier::ratio_of(struck, current)),
        1 => Just(Multiplier::ZERO),
        1 => Just(Multiplier::ONE),
    ];
    prop_oneof![
        6 => leaf.clone(),
        2 => (scaled_odds(), factor.clone()).prop_map(|(scaled, dead_heat)| {
            Multiplier::odds(odds(scaled)).times(Multiplier::ratio(dead_heat))
        }),
        2 => (factor, leaf).prop_map(|(void_factor, base)| Multiplier::mix(void_factor, Multiplier::ONE, base)),
    ]
}

fn stake() -> impl Strategy<Value = Money> {
    prop_oneof![
        4 => 0i64..=1_000_000,
        2 => 0i64..=1_000_000_000_000,
        1 => 0i64..=MONEY_MINOR_MAX,
    ]
    .prop_map(Money::from_minor)
}

/// `stake × Π multipliers` as an exact fraction.
fn exact_payout(stake: Money, multipliers: &[Multiplier]) -> (BigUint, BigUint) {
    let stake = u64::try_from(stake.minor()).expect("stakes are not negative");
    multipliers.iter().fold((BigUint::from(stake), BigUint::from(1u8)), |(num, den), multiplier| {
        (num * multiplier.num(), den * multiplier.den())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// `payout_floor` is the exact value rounded down once: never above it, less than one minor
    /// unit below it, and capped at the largest amount only when the exact value is above it.
    #[test]
    fn payout_is_the_exact_value_rounded_down(
        stake in stake(),
        multipliers in prop::collection::vec(multiplier(), 1..20),
    ) {
        let payout = payout_floor(stake, &multipliers);
        let (num, den) = exact_payout(stake, &multipliers);
        let floor = &num / &den;
        let cap = BigUint::from(MONEY_MINOR_MAX as u64);
        let expected = if floor > cap { cap } else { floor };
        let paid = BigUint::from(u64::try_from(payout.minor()).expect("payouts are not negative"));
        prop_assert_eq!(&paid, &expected, "stake {:?} x {:?}", stake, multipliers);
        // The same, spelled as the rounding rule: paid <= exact < paid + 1 unless capped.
        prop_assert!(&paid * &den <= num);
        prop_assert!(payout.minor() == MONEY_MINOR_MAX || num < (&paid + 1u8) * &den);
    }

    /// The order of the legs does not change what a multiple pays.
    #[test]
    fn payout_does_not_depend_on_the_order_of_legs(
        stake in stake(),
        (multipliers, shuffled) in prop::collection::vec(multiplier(), 1..20)
            .prop_flat_map(|multipliers| (Just(multipliers.clone()), Just(multipliers).prop_shuffle())),
    ) {
        prop_assert_eq!(payout_floor(stake, &multipliers), payout_floor(stake, &shuffled));
    }

    /// A single at decimal odds never pays more than the stake times the odds: rounding favours
    /// the house, by less than one minor unit.
    #[test]
    fn rounding_never_favours_the_bettor(stake in stake(), scaled in scaled_odds()) {
        let odds = odds(scaled);
        let payout = payout_floor(stake, &[Multiplier::odds(odds)]);
        let exact_times_scale = i128::from(stake.minor()) * i128::from(odds.scaled());
        let paid_times_scale = i128::from(payout.minor()) * i128::from(ODDS_SCALE);
        prop_assert!(paid_times_scale <= exact_times_scale, "{:?} at {} paid {:?}", stake, odds, payout);
        let capped = payout.minor() == MONEY_MINOR_MAX;
        prop_assert!(capped || exact_times_scale - paid_times_scale < i128::from(ODDS_SCALE));
    }

    /// Factors shown with `Display` parse back to themselves, for every factor the book uses
    /// (dead heats and void factors up to 1, stake factors up to 100). Far larger factors shown
    /// with six decimal places do not: `parse` multiplies the whole part by 10^6 in `u32`.
    #[test]
    fn ratio_text_round_trips(
        (num, den) in (1u32..=1_000_000).prop_flat_map(|den| (0..=100 * den, Just(den))),
    ) {
        let ratio = Ratio::new(num, den).expect("denominators up to 1,000,000 are accepted");
        prop_assert_eq!(Ratio::parse(&ratio.to_string()), Ok(ratio), "{}", ratio);
    }
}
