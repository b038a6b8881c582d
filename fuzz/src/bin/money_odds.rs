//! Money and odds parsing (`domain`): any text either parses or is an error; whatever parses
//! formats back to text that parses to the same value (for money in every currency, for odds in
//! the decimal and fractional forms), formatting is canonical (parse(format(x)) formats as x),
//! and the American form, rounded to whole numbers, parses back to within its rounding.

#![no_main]

use domain::{Currency, Money, Odds, ODDS_SCALE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for currency in Currency::all() {
        if let Ok(amount) = currency.parse_amount(text) {
            assert!(amount.minor() >= 0 && amount.minor() <= domain::MONEY_MINOR_MAX, "{text:?} gave {amount:?}");
            let shown = currency.format(amount);
            assert_eq!(currency.parse_amount(&shown), Ok(amount), "{currency}: {text:?} shows as {shown:?}");
            // Canonical: exactly the currency's decimal places.
            let places = shown.split_once('.').map_or(0, |(_, fraction)| fraction.len());
            assert_eq!(places, usize::from(currency.exponent()), "{currency}: {shown:?}");
        }
    }
    // Any eight bytes as an amount: formatting and parsing agree over the whole money range.
    if let Some(bytes) = data.get(..8) {
        let raw = i64::from_le_bytes(bytes.try_into().expect("eight bytes"));
        let minor = raw.rem_euclid(domain::MONEY_MINOR_MAX + 1);
        for currency in Currency::all() {
            let amount = Money::from_minor(minor);
            assert_eq!(currency.parse_amount(&currency.format(amount)), Ok(amount), "{currency} {minor}");
        }
    }
    if let Ok(odds) = Odds::parse(text) {
        assert_eq!(Odds::parse(&odds.decimal()), Ok(odds), "{text:?} decimal {:?}", odds.decimal());
        assert_eq!(Odds::parse(&odds.fractional()), Ok(odds), "{text:?} fractional {:?}", odds.fractional());
        assert_eq!(Odds::parse(&odds.decimal()).map(Odds::decimal), Ok(odds.decimal()));
        // American odds are whole numbers: the price they parse back to is within the rounding
        // of the original, and they never fail to parse.
        let american = Odds::parse(&odds.american()).unwrap_or_else(|error| panic!("{text:?}: {error}"));
        let (shown, exact) = (u64::from(american.scaled()), u64::from(odds.scaled()));
        let excess = exact - u64::from(ODDS_SCALE);
        // +X rounds the profit on 100 to a whole number: at most half of 1/100 of the stake
        // off. -X rounds the stake to win 100, which moves the price by about excess^2 / 10^6
        // per unit; half a unit, with room for the floor of parsing.
        let scale = u64::from(ODDS_SCALE);
        let step = if excess >= scale { scale / 200 } else { excess * excess / (100 * scale) + 2 };
        assert!(shown.abs_diff(exact) <= step, "{text:?}: american {} is {shown}, the price {exact}", odds.american());
    }
});
