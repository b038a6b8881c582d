//! Business rejections: a closed set of values with stable codes. The API returns the code,
//! tests assert it, the journal's replay decides it again. `Err` is for operational failure only.

use domain::{Money, Odds};

use crate::calendar::Period;
use crate::ids::SelectionId;
use crate::player::LimitKind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    PriceChanged {
        selection: SelectionId,
        current_price: Odds,
    },
    MarketSuspended,
    MarketClosed,
    SelectionUnavailable,
    InsufficientFunds,
    StakeTooLow {
        min_stake: Money,
    },
    StakeTooHigh {
        max_stake: Money,
    },
    LiabilityLimit,
    LimitReached {
        limit: LimitKind,
        period: Period,
    },
    SelfExcluded,
    TimedOut,
    AccountFrozen,
    InvalidBet {
        reason: &'static str,
    },
    IdempotencyKeyReused,
    UnknownAccount,
    UnknownEvent,
    UnknownMarket,
    UnknownBet,
    UnknownWithdrawal,
    /// A well-formed request the book cannot apply (a name too long, an amount of zero ...).
    InvalidRequest {
        reason: &'static str,
    },
    /// The market already has different results; unsettle it first.
    AlreadySettled,
    NotSettled,
    CashoutUnavailable {
        reason: &'static str,
    },
    QuoteExpired,
    Underage,
    UsernameTaken,
    /// The market's acceptance throttle is empty: retry after this long.
    MarketThrottled {
        retry_after_ms: u64,
    },
    /// The command would take a balance, a debt, a liability or a payout past the money
    /// maximum (`domain::MONEY_MINOR_MAX`), which no stored amount may exceed.
    AmountTooLarge,
    /// The bettor's currency has no exchange rate against the base currency, so the book's
    /// limits (all set in the base currency) cannot be applied to it.
    FxRateMissing,
    /// The account was credited with this payment reference already: a provider's payment
    /// credits at most once.
    DuplicatePaymentRef,
    /// The market closed longer ago than the resettlement window (`Config::resettlement_window_ms`):
    /// its results are final and it may have left the book.
    ResettlementWindowClosed,
    /// The staff member may not adjust balances (their roles' limit forbids it, or they are
    /// disabled).
    AdjustmentForbidden,
    /// No such adjustment (of that account).
    UnknownAdjustment,
    /// The adjustment was done, rejected or expired already.
    AdjustmentNotPending,
    /// Four eyes: the staff member who asked for an adjustment cannot approve it.
    SelfApproval,
    /// The approver's own limit does not cover the adjustment.
    ApprovalLimit,
    /// No such deposit of that account (or it was settled longer ago than the book
    /// remembers).
    UnknownPayment,
    /// The provider's outcome contradicts what happened to the deposit already (a failure
    /// after it completed, a chargeback before it did).
    PaymentConflict,
    /// Deposits waiting for the provider are at their maximum (`DEPOSITS_PENDING_MAX`).
    PaymentsBusy,
    /// The player must be verified (KYC) first: a withdrawal of a tracked player who is not.
    KycRequired,
    /// A deposit would take an unverified player's lifetime deposits past their
    /// jurisdiction's cap.
    KycDepositCap {
        cap: Money,
    },
    /// The verification state cannot move so (`Kyc::allows`).
    KycConflict,
    /// A reality check is due and not acknowledged: play pauses until it is.
    RealityCheckDue,
    /// An acknowledgement with no reality check due.
    NoRealityCheckDue,
    /// No such case of the monitoring queue.
    UnknownCase,
    /// The case was closed: it takes no more actions.
    CaseClosed,
    /// The case's status does not allow the action (escalating a reported case ...).
    InvalidTransition,
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
            Rejection::Underage => "underage",
            Rejection::UsernameTaken => "username_taken",
            Rejection::MarketThrottled { .. } => "market_throttled",
            Rejection::AmountTooLarge => "amount_too_large",
            Rejection::FxRateMissing => "fx_rate_missing",
            Rejection::DuplicatePaymentRef => "duplicate_payment_ref",
            Rejection::ResettlementWindowClosed => "resettlement_window_closed",
            Rejection::AdjustmentForbidden => "adjustment_forbidden",
            Rejection::UnknownAdjustment => "unknown_adjustment",
            Rejection::AdjustmentNotPending => "adjustment_not_pending",
            Rejection::SelfApproval => "self_approval",
            Rejection::ApprovalLimit => "approval_limit",
            Rejection::UnknownPayment => "unknown_payment",
            Rejection::PaymentConflict => "payment_conflict",
            Rejection::PaymentsBusy => "payments_busy",
            Rejection::KycRequired => "kyc_required",
            Rejection::KycDepositCap { .. } => "kyc_deposit_cap",
            Rejection::KycConflict => "kyc_conflict",
            Rejection::RealityCheckDue => "reality_check_due",
            Rejection::NoRealityCheckDue => "no_reality_check_due",
            Rejection::UnknownCase => "unknown_case",
            Rejection::CaseClosed => "case_closed",
            Rejection::InvalidTransition => "invalid_transition",
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

/// Every reason text the book gives, so a decoder can turn a stored reason back into the same
/// `&'static str`. A test checks that every reason written in the source is listed.
pub const REASONS: &[&str] = &[
    "API key refused",
    "a market has 1 to 64 selections",
    "a currency has two rates",
    "a market is not open",
    "a selection is resulted twice",
    "a throttle allows at least one bet a second",
    "a throttle allows at most 1,000,000 bets a second",
    "an API key needs a SHA-256 hash and known scopes",
    "bet delay above 60 seconds",
    "bet is not open",
    "country must be an ISO 3166-1 alpha-2 code",
    "dead-heat factor must be in (0, 1] and void factor in [0, 1]",
    "deposit amount out of range",
    "deposit refused",
    "kyc rules out of range",
    "kyc reference must be 1 to 128 bytes",
    "reality check interval out of range",
    "personal details out of range",
    "personal details of a player without a profile",
    "each-way and system bets cannot be cashed out",
    "each-way terms need places and a fraction in (0, 1]",
    "event has ended",
    "event has too many markets",
    "feed ids are 1 to 200 bytes",
    "feed outcome ids repeat",
    "feed sequences start at 1",
    "idempotency keys are 1 to 128 bytes",
    "limits cannot be negative",
    "market has no each-way terms",
    "names are 1 to 200 bytes",
    "the base currency is fixed once a market exists",
    "the base currency has no rate",
    "no value to cash out",
    "password hash out of range",
    "payment reference missing",
    "payment reference too long",
    "place results need each-way terms",
    "resettlement window out of range",
    "idempotency window out of range",
    "risk settings cannot be negative",
    "self-exclusion days out of range",
    "stake factor above 100",
    "stake must be positive",
    "time-out hours out of range",
    "too many exchange rates",
    "too many items in a feed message",
    "too many limit changes",
    "too many prices",
    "too many results",
    "two legs on the same event",
    "unknown API key",
    "usernames are 3 to 32 of a-z, 0-9, _ . -",
    "withdrawal amount must be positive",
    "wrong number of legs for the bet type",
    "a TOTP secret is 16 to 64 base32 characters",
    "a staff member needs known roles",
    "staff members at their maximum",
    "unknown staff member",
    "adjustment limits cannot be negative",
    "an adjustment's reason is 1 to 500 bytes",
    "adjustment amount must be positive",
    "pending adjustments at their maximum",
    "monitoring rules out of range",
    "a case action needs a reason of 1 to 500 bytes",
    "a case note or reference is at most 1,000 bytes",
    "a note action needs a note",
    "mark_reported needs a reference",
    "the case has its most actions: close it",
];

/// The listed `&'static str` equal to `text`.
pub fn intern_reason(text: &str) -> Option<&'static str> {
    REASONS.iter().copied().find(|reason| *reason == text)
}

/// Every rejection code, for decoding a stored code back into a `&'static str`.
pub const CODES: &[&str] = &[
    "price_changed",
    "market_suspended",
    "market_closed",
    "selection_unavailable",
    "insufficient_funds",
    "stake_too_low",
    "stake_too_high",
    "liability_limit",
    "limit_reached",
    "self_excluded",
    "timed_out",
    "account_frozen",
    "invalid_bet",
    "idempotency_key_reused",
    "unknown_account",
    "unknown_event",
    "unknown_market",
    "unknown_bet",
    "unknown_withdrawal",
    "invalid_request",
    "already_settled",
    "not_settled",
    "cashout_unavailable",
    "quote_expired",
    "underage",
    "username_taken",
    "market_throttled",
    "amount_too_large",
    "fx_rate_missing",
    "duplicate_payment_ref",
    "resettlement_window_closed",
    "adjustment_forbidden",
    "unknown_adjustment",
    "adjustment_not_pending",
    "self_approval",
    "approval_limit",
    "unknown_payment",
    "payment_conflict",
    "payments_busy",
    "kyc_required",
    "kyc_deposit_cap",
    "kyc_conflict",
    "reality_check_due",
    "no_reality_check_due",
    "unknown_case",
    "case_closed",
    "invalid_transition",
];

pub fn intern_code(text: &str) -> Option<&'static str> {
    CODES.iter().copied().find(|code| *code == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_in_the_source_is_listed() {
        let sources = [
            include_str!("book.rs"),
            include_str!("placement.rs"),
            include_str!("settlement.rs"),
            include_str!("trading.rs"),
            include_str!("identity.rs"),
            include_str!("fx.rs"),
            include_str!("adjustment.rs"),
            include_str!("payments.rs"),
            include_str!("monitor.rs"),
        ];
        for source in sources {
            for (index, _) in source.match_indices("reason: \"") {
                let rest = &source[index + "reason: \"".len()..];
                let reason = &rest[..rest.find('"').unwrap_or(0)];
                assert!(intern_reason(reason).is_some(), "reason {reason:?} is missing from REASONS");
            }
        }
    }

    #[test]
    fn every_code_is_listed() {
        // Every code `Rejection::code` gives, read from its source, and nothing else.
        let source = include_str!("rejection.rs");
        let start = source.find("pub fn code(&self)").unwrap_or(0);
        let body = &source[start..start + source[start..].find("\n    }\n").unwrap_or(0)];
        let mut codes = Vec::new();
        for (index, _) in body.match_indices("=> \"") {
            let rest = &body[index + "=> \"".len()..];
            codes.push(&rest[..rest.find('"').unwrap_or(0)]);
        }
        assert_eq!(codes.len(), CODES.len(), "{codes:?}");
        for code in codes {
            assert_eq!(intern_code(code), Some(code), "code {code:?} is missing from CODES");
        }
        assert_eq!(Rejection::AmountTooLarge.code(), "amount_too_large");
    }
}
