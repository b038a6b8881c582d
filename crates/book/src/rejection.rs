//! Business rejections: a closed set of values with stable codes. The API returns the code,
//! tests assert it, the journal's replay decides it again. `Err` is for operational failure only.

use domain::{Money, Odds};

use crate::calendar::Period;
use crate::ids::SelectionId;
use crate::player::LimitKind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    PriceChanged { selection: SelectionId, current_price: Odds },
    MarketSuspended,
    MarketClosed,
    SelectionUnavailable,
    InsufficientFunds,
    StakeTooLow { min_stake: Money },
    StakeTooHigh { max_stake: Money },
    LiabilityLimit,
    LimitReached { limit: LimitKind, period: Period },
    SelfExcluded,
    TimedOut,
    AccountFrozen,
    InvalidBet { reason: &'static str },
    IdempotencyKeyReused,
    UnknownAccount,
    UnknownEvent,
    UnknownMarket,
    UnknownBet,
    UnknownWithdrawal,
    /// A well-formed request the book cannot apply (a name too long, an amount of zero ...).
    InvalidRequest { reason: &'static str },
    /// The market already has different results; unsettle it first.
    AlreadySettled,
    NotSettled,
    CashoutUnavailable { reason: &'static str },
    QuoteExpired,
}

impl Rejection {
    /// The stable code of `../shared/API.md`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::PriceChanged { .. } => "price_changed",
            Rejection::MarketSuspended => "market_suspended",
            Rejection::MarketClosed => "market_closed",
            Rejection::SelectionUnavailable => "selection_unavailable",
            Rejection::InsufficientFunds => "insufficient_funds",
            Rejection::StakeTooLow { .. } => "stake_too_low",
            Rejection::StakeTooHigh { .. } => "stake_too_high",
            Rejection::LiabilityLimit => "liability_limit",
            Rejection::LimitReached { .. } => "limit_reached",
            Rejection::SelfExcluded => "self_excluded",
            Rejection::TimedOut => "timed_out",
            Rejection::AccountFrozen => "account_frozen",
            Rejection::InvalidBet { .. } => "invalid_bet",
            Rejection::IdempotencyKeyReused => "idempotency_key_reused",
            Rejection::UnknownAccount => "unknown_account",
            Rejection::UnknownEvent => "unknown_event",
            Rejection::UnknownMarket => "unknown_market",
            Rejection::UnknownBet => "unknown_bet",
            Rejection::UnknownWithdrawal => "unknown_withdrawal",
            Rejection::InvalidRequest { .. } => "invalid_request",
            Rejection::AlreadySettled => "already_settled",
            Rejection::NotSettled => "not_settled",
            Rejection::CashoutUnavailable { .. } => "cashout_unavailable",
            Rejection::QuoteExpired => "quote_expired",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::PriceChanged { selection, current_price } => {
                write!(formatter, "price_changed({selection} now {current_price})")
            }
            Rejection::StakeTooLow { min_stake } => write!(formatter, "stake_too_low(min {})", min_stake.minor()),
            Rejection::StakeTooHigh { max_stake } => write!(formatter, "stake_too_high(max {})", max_stake.minor()),
            Rejection::LimitReached { limit, period } => {
                write!(formatter, "limit_reached({} {})", limit.as_str(), period.as_str())
            }
            Rejection::InvalidBet { reason }
            | Rejection::InvalidRequest { reason }
            | Rejection::CashoutUnavailable { reason } => write!(formatter, "{}({reason})", self.code()),
            _ => formatter.write_str(self.code()),
        }
    }
}
