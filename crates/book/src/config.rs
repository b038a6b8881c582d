//! Book-wide rules that are settings rather than code. The configuration is part of the book's
//! state (it is in every snapshot), so replay decides with the settings in force at the time.

use domain::{Money, Ratio};

use crate::ids::{Timestamp, MILLIS_PER_DAY, MILLIS_PER_SECOND};

/// The book's idempotency window by default: 10 minutes.
pub const IDEMPOTENCY_WINDOW_DEFAULT_MS: Timestamp = 10 * 60 * MILLIS_PER_SECOND;
/// The shortest idempotency window `SetIdempotencyWindow` accepts: 30 seconds. A keyed write
/// that missed the read models must reach the book within half a window
/// (`gateway::idempotency`), which admission control keeps far shorter than 15 s.
pub const IDEMPOTENCY_WINDOW_MIN_MS: Timestamp = 30 * MILLIS_PER_SECOND;
/// The longest: one day. Older retries are the read models' (they keep every first reply);
/// a longer window only costs memory (about 85 bytes a key in each book).
pub const IDEMPOTENCY_WINDOW_MAX_MS: Timestamp = MILLIS_PER_DAY;
/// The resettlement window by default: 7 days, the longest a sportsbook usually corrects a
/// result (a late disqualification, a data provider's correction) before it is final.
pub const RESETTLEMENT_WINDOW_DEFAULT_MS: Timestamp = 7 * MILLIS_PER_DAY;
/// The shortest resettlement window `SetResettlementWindow` accepts: one second.
pub const RESETTLEMENT_WINDOW_MIN_MS: Timestamp = MILLIS_PER_SECOND;
/// The longest: ten years (a window is a bound, not "for ever").
pub const RESETTLEMENT_WINDOW_MAX_MS: Timestamp = 3_653 * MILLIS_PER_DAY;
/// The window a snapshot written before the book was bounded decodes with: nothing leaves,
/// so its journal replays exactly as it was decided.
pub const RESETTLEMENT_WINDOW_NEVER_MS: Timestamp = u64::MAX / 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Smallest stake per line.
    pub min_stake: Money,
    /// Largest stake per line for a customer with stake factor 1 on a market without its own.
    pub max_stake: Money,
    /// Largest potential payout of one bet on a market without its own.
    pub max_payout: Money,
    /// Largest single deposit, in the base currency: a deposit in another currency is checked
    /// against it converted at the current rate, rounded down (`fx::AppliedRate::cap_in`).
    pub deposit_max: Money,
    /// How long the book itself remembers an idempotency key (`IDEMPOTENCY_WINDOW_DEFAULT_MS`,
    /// 10 minutes). Older retries are answered from the projector's read model, which keeps
    /// the first reply of every keyed command for the full retention; the window must exceed
    /// the projector's largest allowed lag, so that a key is in the read model before the book
    /// forgets it (`../../ARCHITECTURE.md`, "Idempotency: the book's window and the read model").
    /// Set by the journaled `SetIdempotencyWindow` (`serve --idempotency-window`).
    pub idempotency_window_ms: Timestamp,
    /// How long a settled or voided market (and its bets, and every transfer) stays in the book
    /// after it closed: an unsettle or void after it is refused (`resettlement_window_closed`)
    /// and the market, its settled bets and their transfers leave the book
    /// (`RESETTLEMENT_WINDOW_DEFAULT_MS`, 7 days; `serve --resettlement-window`).
    pub resettlement_window_ms: Timestamp,
    /// How long a cash-out quote is valid.
    pub cashout_quote_ttl_ms: Timestamp,
    /// The house's margin taken off the fair value of a cash-out.
    pub cashout_margin: Ratio,
    /// Wait before a raised or removed responsible-gambling limit takes effect.
    pub limit_increase_cooling_off_ms: Timestamp,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            min_stake: Money::from_minor(10),
            max_stake: Money::from_minor(1_000_000),
            max_payout: Money::from_minor(100_000_000),
            deposit_max: Money::from_minor(10_000_000),
            idempotency_window_ms: IDEMPOTENCY_WINDOW_DEFAULT_MS,
            resettlement_window_ms: RESETTLEMENT_WINDOW_DEFAULT_MS,
            cashout_quote_ttl_ms: 5 * MILLIS_PER_SECOND,
            cashout_margin: Ratio::new(5, 100).unwrap_or(Ratio::ZERO),
            limit_increase_cooling_off_ms: MILLIS_PER_DAY,
        }
    }
}
