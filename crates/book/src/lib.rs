//! The book: a deterministic, synchronous state machine that owns the ledger, the catalog as the
//! book sees it, bets, exposure, responsible-gambling limits and settlement.
//!
//! `Book::apply(now, &command, &mut events) -> Reply` is the whole interface that changes state.
//! The crate does no IO, reads no clock, draws no random numbers, and never lets hash-map order
//! reach its output. The engine crate wraps it in a sequencer with a journal.

mod adjustment;
mod bet;
mod bets;
mod book;
mod calendar;
mod catalog;
mod command;
mod config;
pub mod constants;
mod degraded;
mod event;
mod feed;
mod fx;
mod identity;
mod ids;
mod invariants;
mod keymap;
mod kyc;
mod ledger;
mod monitor;
mod payments;
mod placement;
mod player;
mod reality;
mod records;
mod rejection;
mod settlement;
mod trading;

pub use adjustment::{
    Adjustment, AdjustmentDirection, AdjustmentLimit, AdjustmentLimits, Adjustments, ADJUSTMENTS_PENDING_MAX,
    ADJUSTMENT_APPROVAL_WINDOW_MS, ADJUSTMENT_REASON_BYTES_MAX,
};
pub use bet::{lines, Bet, BetKind, BetStatus, Leg, Line, PricePolicy, PriceTaken, Settlement, SystemKind};
pub use bets::Bets;
pub use book::{
    idempotency_key_hash, payment_ref_hash, Book, BookParts, BookSizes, Quote, Remembered, SnapshotParts, Wallet,
};
pub use calendar::Period;
pub use catalog::{
    EachWayTerms, Event, EventState, Market, MarketRisk, MarketStatus, Outcome, Selection, SelectionResult,
};
pub use command::{
    Actor, Command, Idempotency, LegRequest, LimitChange, MarketAction, MarketRiskChange, NewSelection, Origin,
    PlaceBet, ResultRequest,
};
pub use config::{
    Config, IDEMPOTENCY_WINDOW_DEFAULT_MS, IDEMPOTENCY_WINDOW_MAX_MS, IDEMPOTENCY_WINDOW_MIN_MS,
    RESETTLEMENT_WINDOW_DEFAULT_MS, RESETTLEMENT_WINDOW_MAX_MS, RESETTLEMENT_WINDOW_MIN_MS,
    RESETTLEMENT_WINDOW_NEVER_MS,
};
pub use degraded::{Degraded, DegradedParts, Throttle, TradingMode};
pub use event::{Ack, BookEvent, Reply};
pub use feed::{
    FeedApplied, FeedBook, FeedItem, FeedMarket, FeedMarketStatus, FeedMessage, FeedOdds, FeedOutcome, FeedParts,
    FeedResult, FeedSelection, ProviderFeed, StaleMode,
};
pub use fx::{AppliedRate, FxTable, FX_RATES_MAX};
pub use identity::{
    normalise_username, roles, scopes, ApiKey, PersonalDetails, Profile, Staff, AGE_MIN_YEARS, API_KEYS_MAX,
    PASSWORD_HASH_BYTES_MAX, PERSONAL_DETAIL_BYTES_MAX, STAFF_MAX, TOTP_SECRET_BYTES_MAX,
};
pub use ids::{
    AccountId, AdjustmentId, ApiKeyId, BetId, EventId, LedgerAccountId, MarketId, QuoteId, SelectionId, StaffId,
    Timestamp, TransferId, MILLIS_PER_DAY, MILLIS_PER_HOUR, MILLIS_PER_SECOND,
};
pub use kyc::{Kyc, KycBook, KycRules, KycState, KYC_REFERENCE_BYTES_MAX};
pub use ledger::{
    AccountKind, Folded, Ledger, LedgerAccount, LedgerParts, Transfer, TransferCode, TransferKind, TOTAL_MAX,
};
pub use monitor::{
    Alert, AlertId, AlertKind, Case, CaseAction, CaseActionKind, CaseActionRequest, CaseId, CaseStatus, CaseSummary,
    Counters, Monitor, MonitorParts, MonitoringRules, RapidInOut, Rule, SharedKey, Threshold, Watch, CASES_OPEN_MAX,
    CASE_ACTIONS_MAX, CASE_ALERTS_MAX, CASE_TEXT_BYTES_MAX, RAPID_WITHIN_HOURS_MAX, REFUSED_WITHDRAWALS_MAX,
    REFUSED_WITHDRAWALS_WINDOW_MS, RULE_COUNT_MAX, SHARED_ACCOUNTS_MAX_LIMIT, SHARED_KEYS_MAX,
};
pub use payments::{
    Deposit, DepositOutcome, DepositState, PaymentBook, PaymentParts, CHARGEBACK_WINDOW_MS, DEPOSITS_PENDING_MAX,
};
pub use player::{LimitKind, LimitSlot, PendingLimit, Player, Usage};
pub use reality::{
    RealityCheck, RealityChecks, REALITY_CHECK_INTERVAL_MINUTES_MAX, REALITY_CHECK_INTERVAL_MINUTES_MIN,
};
pub use records::Records;
pub use rejection::{intern_code, intern_reason, Rejection, CODES, REASONS};
