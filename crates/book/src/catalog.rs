//! Events, markets, selections and prices as the book sees them.

use domain::{Money, Odds, Ratio};

use crate::ids::{BetId, EventId, MarketId, SelectionId, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventState {
    Scheduled,
    InPlay,
    Ended,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    pub name: String,
    pub sport: String,
    pub competition: String,
    pub starts_at: Timestamp,
    pub state: EventState,
    /// In-play bet delay for every market of the event unless the market sets its own.
    pub bet_delay_seconds: u32,
    pub markets: Vec<MarketId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarketStatus {
    Open,
    Suspended,
    Closed,
    Settled,
    Voided,
}

impl MarketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MarketStatus::Open => "open",
            MarketStatus::Suspended => "suspended",
            MarketStatus::Closed => "closed",
            MarketStatus::Settled => "settled",
            MarketStatus::Voided => "voided",
        }
    }

    /// Settled and voided markets have results; only an unsettle reopens them to change.
    pub fn is_resulted(self) -> bool {
        matches!(self, MarketStatus::Settled | MarketStatus::Voided)
    }
}

/// Each-way terms: the place part pays `(odds - 1) × fraction + 1` if the selection finishes
/// within `places`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EachWayTerms {
    pub places: u32,
    pub fraction: Ratio,
}

/// Risk settings of a market. `None` means the book's default from `Config`, or no cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MarketRisk {
    pub max_stake: Option<Money>,
    /// Cap on the market's worst-case liability (its largest selection liability).
    pub liability_cap: Option<Money>,
    /// Cap on any one selection's liability.
    pub selection_liability_cap: Option<Money>,
    /// The market suspends itself when its liability reaches this.
    pub suspend_at_liability: Option<Money>,
    /// In-play bet delay of this market, overriding the event's.
    pub in_play_delay_seconds: Option<u32>,
    pub max_payout: Option<Money>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Win,
    Lose,
    Void,
    /// Placed within the each-way places but did not win: win parts lose, place parts win.
    Place,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Win => "win",
            Outcome::Lose => "lose",
            Outcome::Void => "void",
            Outcome::Place => "place",
        }
    }
}

/// The result of one selection. `dead_heat` and `void_factor` are 1 and 0 when they do not
/// apply; a void factor of 1/2 is an Asian quarter line's half refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectionResult {
    pub selection: SelectionId,
    pub outcome: Outcome,
    pub dead_heat: Ratio,
    pub void_factor: Ratio,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Market {
    pub id: MarketId,
    pub event: EventId,
    pub name: String,
    pub kind: String,
    pub status: MarketStatus,
    pub in_play: bool,
    pub selections: Vec<SelectionId>,
    pub each_way: Option<EachWayTerms>,
    pub risk: MarketRisk,
    /// Increases on every settlement, void or unsettlement.
    pub settlement_version: u32,
    /// The results in force, one per selection, when the market is settled or voided.
    pub results: Vec<SelectionResult>,
    /// Every bet with a leg on this market still in the book, in placement order.
    pub bets: Vec<BetId>,
    /// When the market was last settled or voided; `None` while it is not resulted. The
    /// resettlement window runs from here (`Config::resettlement_window_ms`).
    pub closed_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub id: SelectionId,
    pub market: MarketId,
    pub name: String,
    pub price: Odds,
    /// Increases on every change of `price`.
    pub price_version: u64,
    /// The house's net loss if this selection wins, over open bets, in the base currency: for
    /// every open bet line that includes it, the line's potential payout less the line's stake,
    /// converted with the bet's recorded rate (rounded up per bet and leg).
    pub liability: Money,
    /// The same liability in each bettor's own currency, sorted by currency, without zeros.
    pub liabilities: Vec<(domain::Currency, Money)>,
}
