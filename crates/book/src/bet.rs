//! Bets: singles, multiples and system bets, their lines, and the arithmetic of their payouts.
//!
//! A bet is a set of lines. A single has one line, a multiple one line over all its legs, a
//! system bet one line per combination its kind covers (a yankee: 6 doubles, 4 trebles and a
//! fourfold). Each-way doubles the lines: every line is struck once to win and once to place.
//! Every line pays `floor(stake_per_line × Π leg multipliers)`; the bet pays the sum.

use domain::{payout_floor, Money, Multiplier, Odds, Ratio};

use crate::catalog::{EachWayTerms, Outcome, SelectionResult};
use crate::ids::{AccountId, BetId, EventId, MarketId, QuoteId, SelectionId, Timestamp, TransferId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemKind {
    Trixie,
    Patent,
    Yankee,
    Lucky15,
    Canadian,
    Heinz,
    SuperHeinz,
    Goliath,
}

impl SystemKind {
    pub const ALL: [SystemKind; 8] = [
        SystemKind::Trixie,
        SystemKind::Patent,
        SystemKind::Yankee,
        SystemKind::Lucky15,
        SystemKind::Canadian,
        SystemKind::Heinz,
        SystemKind::SuperHeinz,
        SystemKind::Goliath,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SystemKind::Trixie => "trixie",
            SystemKind::Patent => "patent",
            SystemKind::Yankee => "yankee",
            SystemKind::Lucky15 => "lucky15",
            SystemKind::Canadian => "canadian",
            SystemKind::Heinz => "heinz",
            SystemKind::SuperHeinz => "super_heinz",
            SystemKind::Goliath => "goliath",
        }
    }

    pub fn parse(text: &str) -> Option<SystemKind> {
        SystemKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Number of selections the kind takes.
    pub fn selections(self) -> usize {
        match self {
            SystemKind::Trixie | SystemKind::Patent => 3,
            SystemKind::Yankee | SystemKind::Lucky15 => 4,
            SystemKind::Canadian => 5,
            SystemKind::Heinz => 6,
            SystemKind::SuperHeinz => 7,
            SystemKind::Goliath => 8,
        }
    }

    /// Smallest combination covered: 1 when the kind includes singles.
    pub fn smallest_line(self) -> usize {
        match self {
            SystemKind::Patent | SystemKind::Lucky15 => 1,
            _ => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetKind {
    Single,
    Multiple,
    System(SystemKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PricePolicy {
    /// Only the price the bettor saw.
    None,
    /// The price seen or a higher one.
    Better,
    /// Whatever the book's price is at commit.
    Any,
}

impl PricePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PricePolicy::None => "none",
            PricePolicy::Better => "better",
            PricePolicy::Any => "any",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetStatus {
    /// Waiting out an in-play bet delay; the stake is held.
    Pending,
    Accepted,
    Rejected,
    Won,
    Lost,
    Void,
    HalfWon,
    HalfLost,
    CashedOut,
}

impl BetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BetStatus::Pending => "pending",
            BetStatus::Accepted => "accepted",
            BetStatus::Rejected => "rejected",
            BetStatus::Won => "won",
            BetStatus::Lost => "lost",
            BetStatus::Void => "void",
            BetStatus::HalfWon => "half_won",
            BetStatus::HalfLost => "half_lost",
            BetStatus::CashedOut => "cashed_out",
        }
    }

    /// Open bets still carry liability and may still be settled.
    pub fn is_open(self) -> bool {
        matches!(self, BetStatus::Pending | BetStatus::Accepted)
    }

    /// Settled by results (not cash-out, not rejection): these a resettlement can reverse.
    pub fn is_settled_by_result(self) -> bool {
        matches!(self, BetStatus::Won | BetStatus::Lost | BetStatus::Void | BetStatus::HalfWon | BetStatus::HalfLost)
    }
}

/// How the price a leg was bound to relates to the price the bettor asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceTaken {
    Requested,
    Better,
    Changed,
}

impl PriceTaken {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceTaken::Requested => "requested",
            PriceTaken::Better => "better",
            PriceTaken::Changed => "changed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    pub selection: SelectionId,
    pub market: MarketId,
    pub event: EventId,
    pub requested: Odds,
    /// The book's price at commit: what the leg pays.
    pub odds: Odds,
    pub price_version: u64,
    pub taken: PriceTaken,
    /// The each-way terms struck with an each-way bet.
    pub each_way: Option<EachWayTerms>,
    /// Set while the leg's market is settled or voided.
    pub result: Option<SelectionResult>,
}

/// The money of a settlement, kept so that a resettlement can reverse it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub payout: Money,
    /// The posting of the stake hold.
    pub stake_posted: TransferId,
    pub payout_transfer: Option<TransferId>,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bet {
    pub id: BetId,
    pub account: AccountId,
    pub kind: BetKind,
    pub legs: Vec<Leg>,
    pub each_way: bool,
    pub stake_per_line: Money,
    pub line_count: u32,
    pub total_stake: Money,
    pub potential_payout: Money,
    pub policy: PricePolicy,
    pub status: BetStatus,
    /// Accepted or pending, as first answered (what an idempotent retry is told).
    pub placed_status: BetStatus,
    pub placed_at: Timestamp,
    /// When a pending bet's delay ends.
    pub delay_until: Option<Timestamp>,
    /// The open stake hold (pending transfer), while the bet is open.
    pub hold: Option<TransferId>,
    pub settlement: Option<Settlement>,
    /// How many times the bet has been settled (a resettlement counts again).
    pub settlement_count: u32,
    pub rejection: Option<&'static str>,
    pub cashout_quote: Option<QuoteId>,
    /// The exchange rate its liability was converted into the base currency with, at placement.
    pub fx: crate::fx::AppliedRate,
}

/// Which legs a line combines (bit i = leg i) and whether it is the place part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub legs: u32,
    pub place: bool,
}

/// Every line of a bet of this kind over `leg_count` legs.
pub fn lines(kind: BetKind, leg_count: usize, each_way: bool) -> Vec<Line> {
    let mut masks: Vec<u32> = match kind {
        BetKind::Single | BetKind::Multiple => vec![(1u32 << leg_count) - 1],
        BetKind::System(system) => {
            (1u32..(1u32 << leg_count)).filter(|mask| mask.count_ones() as usize >= system.smallest_line()).collect()
        }
    };
    // Stable order: by size, then by legs; the order does not change any amount.
    masks.sort_by_key(|mask| (mask.count_ones(), *mask));
    let mut lines: Vec<Line> = masks.iter().map(|&legs| Line { legs, place: false }).collect();
    if each_way {
        lines.extend(masks.iter().map(|&legs| Line { legs, place: true }));
    }
    lines
}

/// The place odds of each-way terms: `(odds - 1) × fraction + 1`, rounded down to the odds
/// scale (never in the bettor's favour).
pub fn place_odds(odds: Odds, terms: EachWayTerms) -> Multiplier {
    let scale = u128::from(domain::ODDS_SCALE);
    let excess = u128::from(odds.scaled()) - scale;
    let num = excess * u128::from(terms.fraction.num());
    let den = u128::from(terms.fraction.den());
    Multiplier::from_odds_scaled(scale + num / den)
}

/// What the money on one leg becomes: the odds to win, place odds for the place part, 1 when
/// void, 0 when lost, scaled by the dead-heat factor and mixed with a refund by the void factor.
pub fn leg_multiplier(result: &SelectionResult, win_odds: Multiplier, place: Option<Multiplier>) -> Multiplier {
    let base = match (result.outcome, place) {
        (Outcome::Void, _) => Multiplier::ONE,
        (Outcome::Lose, _) => Multiplier::ZERO,
        (Outcome::Win, None) => win_odds,
        (Outcome::Place, None) => Multiplier::ZERO,
        (Outcome::Win | Outcome::Place, Some(place_odds)) => place_odds,
    };
    let base = if result.outcome == Outcome::Void || result.dead_heat.is_one() {
        base
    } else {
        base.times(Multiplier::ratio(result.dead_heat))
    };
    if result.void_factor.is_zero() {
        base
    } else {
        Multiplier::mix(result.void_factor, Multiplier::ONE, base)
    }
}

/// Payout of one line given each leg's multiplier.
pub fn line_payout(stake_per_line: Money, line: Line, multipliers: &[Multiplier]) -> Money {
    let mut chosen: [Multiplier; 32] = [Multiplier::ONE; 32];
    let mut count = 0;
    for (index, multiplier) in multipliers.iter().enumerate() {
        if line.legs & (1 << index) != 0 {
            chosen[count] = *multiplier;
            count += 1;
        }
    }
    payout_floor(stake_per_line, &chosen[..count])
}

/// The bet status a settled payout means.
pub fn settled_status(bet: &Bet, payout: Money) -> BetStatus {
    let all_void = bet.legs.iter().all(|leg| leg.result.is_some_and(|result| result.outcome == Outcome::Void));
    if all_void {
        return BetStatus::Void;
    }
    if bet.kind == BetKind::Single && !bet.each_way {
        if let Some(result) = bet.legs[0].result {
            if !result.void_factor.is_zero() && result.void_factor != Ratio::ONE {
                return if payout > bet.total_stake { BetStatus::HalfWon } else { BetStatus::HalfLost };
            }
        }
    }
    if payout.minor() == 0 {
        BetStatus::Lost
    } else {
        BetStatus::Won
    }
}
