//! Manual balance adjustments by staff: a credit or a debit of a player's cash against the
//! operator's adjustments account of the currency (`AccountKind::Adjustments`, shown as
//! `operator:adjustments`), always with a reason.
//!
//! Each staff role has a per-adjustment limit in the base currency (`AdjustmentLimits`, set by
//! the journaled `SetAdjustmentLimits`; `serve` submits it at start when the book's differ). A
//! request within the requester's limit is done at once; above it, it waits as a pending
//! request until a *different* staff member whose limit covers it approves it (four eyes), or
//! someone rejects it, or it expires `ADJUSTMENT_APPROVAL_WINDOW_MS` after it was made (book
//! time). The book decides all of it, from the staff ids the commands carry: the gateway only
//! says who asked.

use std::collections::BTreeMap;

use domain::{Currency, Money, MONEY_MINOR_MAX};

use crate::book::Book;
use crate::event::{Ack, BookEvent, Reply};
use crate::identity::roles;
use crate::ids::{AccountId, AdjustmentId, StaffId, Timestamp, MILLIS_PER_DAY};
use crate::ledger::{TransferCode, TransferRequest};
use crate::rejection::Rejection;

/// Bytes of an adjustment's reason (at least 1: a reason is mandatory).
pub const ADJUSTMENT_REASON_BYTES_MAX: usize = crate::constants::REASON_BYTES_MAX;
/// Adjustments waiting for approval at once; past it a request above the limit is refused.
pub const ADJUSTMENTS_PENDING_MAX: usize = 1_024;
/// How long a request above the requester's limit waits for approval (book time): 24 hours.
pub const ADJUSTMENT_APPROVAL_WINDOW_MS: u64 = MILLIS_PER_DAY;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustmentDirection {
    /// Money to the player.
    Credit,
    /// Money from the player; never more than their free cash.
    Debit,
}

impl AdjustmentDirection {
    pub fn name(self) -> &'static str {
        match self {
            AdjustmentDirection::Credit => "credit",
            AdjustmentDirection::Debit => "debit",
        }
    }
}

/// What one role may adjust on its own, per adjustment, in the base currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustmentLimit {
    /// The role may not adjust balances (nor approve or reject requests).
    Forbidden,
    /// Up to this amount in the base currency, inclusive.
    UpTo(Money),
    Unlimited,
}

impl AdjustmentLimit {
    /// Whether an amount of `base_amount` (in the base currency) is within the limit.
    pub fn covers(self, base_amount: Money) -> bool {
        match self {
            AdjustmentLimit::Forbidden => false,
            AdjustmentLimit::UpTo(limit) => base_amount <= limit,
            AdjustmentLimit::Unlimited => true,
        }
    }

    /// The wider of two limits.
    fn max(self, other: AdjustmentLimit) -> AdjustmentLimit {
        match (self, other) {
            (AdjustmentLimit::Unlimited, _) | (_, AdjustmentLimit::Unlimited) => AdjustmentLimit::Unlimited,
            (AdjustmentLimit::UpTo(a), AdjustmentLimit::UpTo(b)) => AdjustmentLimit::UpTo(a.max(b)),
            (AdjustmentLimit::UpTo(a), AdjustmentLimit::Forbidden)
            | (AdjustmentLimit::Forbidden, AdjustmentLimit::UpTo(a)) => AdjustmentLimit::UpTo(a),
            (AdjustmentLimit::Forbidden, AdjustmentLimit::Forbidden) => AdjustmentLimit::Forbidden,
        }
    }
}

/// The limit of each role, in the order of `roles::NAMES` (trader, settlement, compliance,
/// support, admin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdjustmentLimits(pub [AdjustmentLimit; 5]);

impl Default for AdjustmentLimits {
    /// Traders and settlement may not adjust; support up to 50.00 and compliance up to
    /// 1,000.00 of the base currency (in minor units of a 2-decimal currency); admin without
    /// a limit.
    fn default() -> AdjustmentLimits {
        AdjustmentLimits([
            AdjustmentLimit::Forbidden,
            AdjustmentLimit::Forbidden,
            AdjustmentLimit::UpTo(Money::from_minor(100_000)),
            AdjustmentLimit::UpTo(Money::from_minor(5_000)),
            AdjustmentLimit::Unlimited,
        ])
    }
}

impl AdjustmentLimits {
    /// The limit of a staff member with `role_bits`: the widest of their roles'.
    pub fn for_roles(&self, role_bits: u8) -> AdjustmentLimit {
        roles::NAMES
            .iter()
            .zip(self.0)
            .filter(|((_, bit), _)| role_bits & bit != 0)
            .fold(AdjustmentLimit::Forbidden, |widest, (_, limit)| widest.max(limit))
    }

    /// The limit of the role named `name` (`roles::NAMES`).
    pub fn of_role(&self, name: &str) -> Option<AdjustmentLimit> {
        roles::NAMES.iter().position(|(known, _)| *known == name).map(|index| self.0[index])
    }
}

/// A request above its requester's limit, waiting for a second staff member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjustment {
    pub id: AdjustmentId,
    pub account: AccountId,
    /// In the player's currency; positive.
    pub amount: Money,
    pub direction: AdjustmentDirection,
    pub reason: String,
    pub requested_by: StaffId,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The book's adjustment state: the role limits, the requests waiting for approval (by id,
/// which is also their expiry order: one approval window for all) and how many ids were
/// issued. Completed, rejected and expired requests leave: the journal and the read models
/// keep them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adjustments {
    pub limits: AdjustmentLimits,
    pub pending: BTreeMap<AdjustmentId, Adjustment>,
    pub issued: u64,
}

impl Book {
    pub fn adjustments(&self) -> &Adjustments {
        &self.adjustments
    }

    /// The limit of an enabled staff member, or why they may not act on adjustments.
    fn adjustment_limit_of(&self, staff: StaffId) -> Result<AdjustmentLimit, Rejection> {
        let member =
            self.staff.get(staff.index()).ok_or(Rejection::InvalidRequest { reason: "unknown staff member" })?;
        let limit = self.adjustments.limits.for_roles(member.roles);
        if member.disabled || limit == AdjustmentLimit::Forbidden {
            return Err(Rejection::AdjustmentForbidden);
        }
        Ok(limit)
    }

    /// `amount` of `currency` in the base currency at the rate now, rounded up (against the
    /// one who adjusts, like every amount at risk).
    fn adjustment_in_base(&self, amount: Money, currency: Currency) -> Result<Money, Rejection> {
        Ok(self.rate_for(currency)?.to_base(amount, currency))
    }

    pub(crate) fn set_adjustment_limits(&mut self, limits: AdjustmentLimits) -> Reply {
        if limits.0.iter().any(|limit| matches!(limit, AdjustmentLimit::UpTo(amount) if amount.minor() < 0)) {
            return Err(Rejection::InvalidRequest { reason: "adjustment limits cannot be negative" });
        }
        self.adjustments.limits = limits;
        Ok(Ack::Done)
    }

    pub(crate) fn request_adjustment(
        &mut self,
        account: AccountId,
        amount: Money,
        direction: AdjustmentDirection,
        reason: &str,
        staff: StaffId,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        let limit = self.adjustment_limit_of(staff)?;
        if reason.is_empty() || reason.len() > ADJUSTMENT_REASON_BYTES_MAX {
            return Err(Rejection::InvalidRequest { reason: "an adjustment's reason is 1 to 500 bytes" });
        }
        if !amount.is_positive() {
            return Err(Rejection::InvalidRequest { reason: "adjustment amount must be positive" });
        }
        let currency = self.player(account)?.currency;
        let base_amount = self.adjustment_in_base(amount, currency)?;
        let id = AdjustmentId(self.adjustments.issued + 1);
        if limit.covers(base_amount) {
            let transfer = self.post_adjustment(id, account, amount, direction, events)?;
            self.adjustments.issued += 1;
            return Ok(Ack::AdjustmentCompleted { adjustment: id, transfer });
        }
        if self.adjustments.pending.len() >= ADJUSTMENTS_PENDING_MAX {
            return Err(Rejection::InvalidRequest { reason: "pending adjustments at their maximum" });
        }
        let expires_at = self.now.saturating_add(ADJUSTMENT_APPROVAL_WINDOW_MS);
        self.adjustments.issued += 1;
        self.adjustments.pending.insert(
            id,
            Adjustment {
                id,
                account,
                amount,
                direction,
                reason: reason.to_string(),
                requested_by: staff,
                requested_at: self.now,
                expires_at,
            },
        );
        Ok(Ack::AdjustmentPending { adjustment: id, expires_at })
    }

    /// The pending request `adjustment` of `account`: unknown ids (or another account's) are
    /// `unknown_adjustment`; ids issued but no longer pending (done, rejected, expired) are
    /// `adjustment_not_pending`.
    fn pending_adjustment(&self, adjustment: AdjustmentId, account: AccountId) -> Result<&Adjustment, Rejection> {
        match self.adjustments.pending.get(&adjustment) {
            Some(found) if found.account == account => Ok(found),
            Some(_) => Err(Rejection::UnknownAdjustment),
            None if adjustment.0 >= 1 && adjustment.0 <= self.adjustments.issued => {
                Err(Rejection::AdjustmentNotPending)
            }
            None => Err(Rejection::UnknownAdjustment),
        }
    }

    pub(crate) fn approve_adjustment(
        &mut self,
        adjustment: AdjustmentId,
        account: AccountId,
        staff: StaffId,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        let found = self.pending_adjustment(adjustment, account)?;
        let (amount, direction, requested_by) = (found.amount, found.direction, found.requested_by);
        let limit = self.adjustment_limit_of(staff)?;
        // Four eyes: whoever asked never approves, whatever their limit.
        if requested_by == staff {
            return Err(Rejection::SelfApproval);
        }
        let currency = self.player(account)?.currency;
        if !limit.covers(self.adjustment_in_base(amount, currency)?) {
            return Err(Rejection::ApprovalLimit);
        }
        // A refused posting (a debit beyond the free cash now) leaves the request pending.
        let transfer = self.post_adjustment(adjustment, account, amount, direction, events)?;
        self.adjustments.pending.remove(&adjustment);
        Ok(Ack::AdjustmentCompleted { adjustment, transfer })
    }

    pub(crate) fn reject_adjustment(
        &mut self,
        adjustment: AdjustmentId,
        account: AccountId,
        staff: StaffId,
        reason: &str,
    ) -> Reply {
        self.pending_adjustment(adjustment, account)?;
        // Anyone who may adjust may refuse a request (the requester may withdraw their own):
        // refusing moves no money.
        self.adjustment_limit_of(staff)?;
        if reason.is_empty() || reason.len() > ADJUSTMENT_REASON_BYTES_MAX {
            return Err(Rejection::InvalidRequest { reason: "an adjustment's reason is 1 to 500 bytes" });
        }
        self.adjustments.pending.remove(&adjustment);
        Ok(Ack::Done)
    }

    /// Requests past their approval window leave (called as book time moves).
    pub(crate) fn expire_adjustments(&mut self) {
        while let Some((&id, found)) = self.adjustments.pending.first_key_value() {
            // One window for all and ids issued in time order: the first is the oldest.
            if found.expires_at > self.now {
                break;
            }
            self.adjustments.pending.remove(&id);
        }
    }

    /// Posts an adjustment between the player's cash and the operator's adjustments account.
    /// A debit takes at most the free cash beyond what the player owes (the ledger models debt
    /// only for reversed settlements); a credit repays a debt first, like every credit.
    fn post_adjustment(
        &mut self,
        adjustment: AdjustmentId,
        account: AccountId,
        amount: Money,
        direction: AdjustmentDirection,
        events: &mut Vec<BookEvent>,
    ) -> Result<crate::ids::TransferId, Rejection> {
        let player = self.player(account)?;
        let (currency, cash, debt) = (player.currency, player.cash, player.debt);
        let operator = self.ledger.adjustments(currency);
        let request = match direction {
            AdjustmentDirection::Credit => {
                if self.ledger.account(cash).posted_balance() + amount.minor() > MONEY_MINOR_MAX {
                    return Err(Rejection::AmountTooLarge);
                }
                TransferRequest {
                    debit: operator,
                    credit: cash,
                    amount,
                    code: TransferCode::AdjustmentCredit,
                    reference: adjustment.0,
                }
            }
            AdjustmentDirection::Debit => {
                let owed = -self.ledger.account(debt).posted_balance();
                if self.ledger.account(cash).available() - owed < amount.minor() {
                    return Err(Rejection::InsufficientFunds);
                }
                TransferRequest {
                    debit: cash,
                    credit: operator,
                    amount,
                    code: TransferCode::AdjustmentDebit,
                    reference: adjustment.0,
                }
            }
        };
        let transfer = self.post(request, events).map_err(|_| Rejection::InsufficientFunds)?;
        if direction == AdjustmentDirection::Credit {
            self.repay_debt(account, events);
        }
        Ok(transfer)
    }
}
