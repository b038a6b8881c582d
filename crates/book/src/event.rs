//! What the book tells the world after deciding a command: events for streams, projections and
//! the audit trail, and the reply for the caller. Effects are data; the shell decides what to
//! do with them.

use domain::{Currency, Money, Odds};

use crate::bet::BetStatus;
use crate::catalog::{EventState, MarketStatus};
use crate::feed::FeedApplied;
use crate::ids::{
    AccountId, AdjustmentId, ApiKeyId, BetId, EventId, MarketId, QuoteId, SelectionId, StaffId, Timestamp, TransferId,
};
use crate::ledger::Transfer;
use crate::rejection::Rejection;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BookEvent {
    AccountOpened {
        account: AccountId,
        currency: Currency,
    },
    /// A ledger posting; balances of the accounts it touches changed.
    Transferred(Transfer),
    EventCreated {
        event: EventId,
    },
    EventStateChanged {
        event: EventId,
        state: EventState,
    },
    MarketCreated {
        market: MarketId,
    },
    MarketStatusChanged {
        market: MarketId,
        status: MarketStatus,
    },
    PriceChanged {
        market: MarketId,
        selection: SelectionId,
        price: Odds,
        version: u64,
    },
    BetPlaced {
        bet: BetId,
        account: AccountId,
        status: BetStatus,
    },
    /// A bet moved from one status to another (delay ended, settled, resettled, cashed out).
    BetStatusChanged {
        bet: BetId,
        account: AccountId,
        status: BetStatus,
        payout: Money,
    },
    AccountRestricted {
        account: AccountId,
    },
    ApiKeysChanged,
    /// A staff member was created or disabled.
    StaffChanged,
    /// A command answered from its idempotency key: nothing was decided again.
    IdempotentReplay {
        account: AccountId,
    },
    LimitsChanged {
        account: AccountId,
    },
    /// A player's reality check fell due: the stream tells them (`reality.rs`).
    RealityCheckDue {
        account: AccountId,
    },
    /// A monitoring rule fired for an account (`monitor.rs`).
    Alert(crate::monitor::Alert),
    /// A staff action on a case, with the case's status after it.
    CaseActed {
        case: crate::monitor::CaseId,
        account: AccountId,
        action: crate::monitor::CaseAction,
        status: crate::monitor::CaseStatus,
    },
    /// A case was opened, joined by an alert, acted on or closed: as it stands after.
    CaseChanged(crate::monitor::CaseSummary),
}

/// A successful reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    AccountOpened(AccountId),
    ApiKeyCreated(ApiKeyId),
    StaffCreated(StaffId),
    Transfer(TransferId),
    EventCreated(EventId),
    MarketCreated {
        market: MarketId,
        selections: Vec<SelectionId>,
    },
    BetPlaced {
        bet: BetId,
        status: BetStatus,
    },
    CashoutQuote {
        quote: QuoteId,
        amount: Money,
        expires_at: Timestamp,
    },
    CashedOut {
        bet: BetId,
        amount: Money,
    },
    /// Number of bets whose settlement changed.
    Settled {
        bets: u32,
    },
    Done,
    Feed(FeedApplied),
    /// A manual adjustment posted: at once within the requester's limit, or on approval.
    AdjustmentCompleted {
        adjustment: AdjustmentId,
        transfer: TransferId,
    },
    /// A manual adjustment above the requester's limit, waiting for approval until then.
    AdjustmentPending {
        adjustment: AdjustmentId,
        expires_at: Timestamp,
    },
}

pub type Reply = Result<Ack, Rejection>;
