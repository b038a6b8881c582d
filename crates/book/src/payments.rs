//! Payments that wait for the provider: deposits held until the provider's callback says how
//! they went (completed, failed, charged back), and the approval of withdrawals before they are
//! paid out.
//!
//! A pending deposit is a hold in the ledger from the payment-clearing account to the player's
//! cash (`TransferKind::Pending`, code `Deposit`): it counts in no balance the player can spend,
//! and the provider's answer posts it (completed) or voids it (failed). A chargeback after the
//! deposit completed takes the amount back: from the player's free cash first, the rest as a
//! debt (`AccountKind::PlayerDebt`), exactly as a resettlement that takes back more than the
//! cash holds; the player's next credits repay it.
//!
//! Each deposit is settled once per outcome: the same outcome again (a provider's retried or
//! replayed callback) answers with the transfer of the first, and changes nothing; an outcome
//! that contradicts the deposit's state is `payment_conflict`. The book remembers a deposit
//! for `CHARGEBACK_WINDOW_MS` after it was made (chargebacks arrive weeks later), pending ones
//! until they are settled.
//!
//! A withdrawal hold (`Command::Withdraw`) is paid out only once it is approved
//! (`Command::ApproveWithdrawal`): the payments step approves it on its own below the
//! configured threshold, a compliance or admin staff member above it. The book records the
//! approval (journaled with its actor and reason); who may approve is decided at the edge.
//! There is no command by which a player takes a withdrawal back (UKGC RTS 14B).

use std::collections::{BTreeMap, BTreeSet};

use domain::{Money, MONEY_MINOR_MAX};

use crate::book::{payment_ref_hash, Book};
use crate::event::{Ack, BookEvent, Reply};
use crate::ids::{AccountId, Timestamp, TransferId, MILLIS_PER_DAY};
use crate::ledger::{TransferCode, TransferKind, TransferRequest};
use crate::player::LimitKind;
use crate::rejection::Rejection;

/// How long the book remembers a settled deposit after it was made: a chargeback can arrive
/// this late (card schemes allow about 120 days; 180 leaves room).
pub const CHARGEBACK_WINDOW_MS: u64 = 180 * MILLIS_PER_DAY;
/// Deposits waiting for the provider at once; past it a new pending deposit is refused
/// (`payments_busy`), the provider's callbacks drain them.
pub const DEPOSITS_PENDING_MAX: usize = 65_536;

/// What the provider says happened to a deposit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DepositOutcome {
    /// The money arrived: the hold is posted and the player may spend it.
    Completed,
    /// The payment failed: the hold is voided and nothing was credited.
    Failed,
    /// The payer's bank took back a completed deposit.
    ChargedBack,
}

impl DepositOutcome {
    pub fn name(self) -> &'static str {
        match self {
            DepositOutcome::Completed => "completed",
            DepositOutcome::Failed => "failed",
            DepositOutcome::ChargedBack => "charged_back",
        }
    }
}

/// Where a deposit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DepositState {
    Pending,
    Completed,
    Failed,
    ChargedBack,
}

impl DepositState {
    pub fn name(self) -> &'static str {
        match self {
            DepositState::Pending => "pending",
            DepositState::Completed => "completed",
            DepositState::Failed => "failed",
            DepositState::ChargedBack => "charged_back",
        }
    }
}

/// A deposit made through the provider, while the book remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deposit {
    /// The pending transfer (the hold) that is the deposit.
    pub id: TransferId,
    pub account: AccountId,
    pub amount: Money,
    /// The payment reference it was made with (at most `PAYMENT_REF_BYTES_MAX` bytes): the
    /// provider is asked to collect it by it again after a restart.
    pub payment_ref: String,
    pub created_at: Timestamp,
    pub state: DepositState,
    /// The transfer that posted or voided the hold, once the provider answered.
    pub resolution: Option<TransferId>,
    /// The first transfer of the chargeback, once there was one.
    pub chargeback: Option<TransferId>,
}

/// The deposits the book remembers and the withdrawals approved for payout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentBook {
    /// By the deposit's (hold's) id: ids grow with time.
    pub(crate) deposits: BTreeMap<TransferId, Deposit>,
    /// Settled deposits by when they were made, for forgetting them. Derived.
    pub(crate) settled: BTreeSet<(Timestamp, TransferId)>,
    /// Pending deposits. Derived.
    pub(crate) pending: usize,
    /// Open withdrawal holds approved for payout; an entry leaves when its hold is completed.
    pub(crate) approved: BTreeSet<TransferId>,
}

/// Every part of a `PaymentBook`, for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentParts {
    /// In id order.
    pub deposits: Vec<Deposit>,
    /// Sorted.
    pub approved: Vec<TransferId>,
}

impl PaymentBook {
    pub fn to_parts(&self) -> PaymentParts {
        PaymentParts {
            deposits: self.deposits.values().cloned().collect(),
            approved: self.approved.iter().copied().collect(),
        }
    }

    pub fn from_parts(parts: PaymentParts) -> PaymentBook {
        let mut book = PaymentBook { approved: parts.approved.into_iter().collect(), ..PaymentBook::default() };
        for deposit in parts.deposits {
            book.index(&deposit);
            book.deposits.insert(deposit.id, deposit);
        }
        book
    }

    fn index(&mut self, deposit: &Deposit) {
        if deposit.state == DepositState::Pending {
            self.pending += 1;
        } else {
            self.settled.insert((deposit.created_at, deposit.id));
        }
    }

    /// A deposit the book remembers.
    pub fn deposit(&self, id: TransferId) -> Option<&Deposit> {
        self.deposits.get(&id)
    }

    /// Every deposit the book remembers, oldest first.
    pub fn deposits(&self) -> impl Iterator<Item = &Deposit> + '_ {
        self.deposits.values()
    }

    /// Deposits waiting for the provider, oldest first.
    pub fn pending_deposits(&self) -> impl Iterator<Item = &Deposit> + '_ {
        self.deposits.values().filter(|deposit| deposit.state == DepositState::Pending)
    }

    pub fn is_approved(&self, withdrawal: TransferId) -> bool {
        self.approved.contains(&withdrawal)
    }

    /// Approved withdrawal holds, oldest first.
    pub fn approved(&self) -> impl Iterator<Item = TransferId> + '_ {
        self.approved.iter().copied()
    }

    /// Checks that the parts agree with each other; run on decoded parts.
    pub fn check_parts(parts: &PaymentParts) -> Result<(), String> {
        if !parts.deposits.windows(2).all(|pair| pair[0].id < pair[1].id) {
            return Err("deposits out of order".to_string());
        }
        if !parts.approved.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err("approved withdrawals out of order".to_string());
        }
        for deposit in &parts.deposits {
            let resolved = deposit.resolution.is_some();
            let consistent = match deposit.state {
                DepositState::Pending => !resolved && deposit.chargeback.is_none(),
                DepositState::Completed | DepositState::Failed => resolved && deposit.chargeback.is_none(),
                DepositState::ChargedBack => resolved && deposit.chargeback.is_some(),
            };
            if !consistent
                || !deposit.amount.is_positive()
                || deposit.payment_ref.is_empty()
                || deposit.payment_ref.len() > crate::constants::PAYMENT_REF_BYTES_MAX
            {
                return Err(format!("deposit {} is inconsistent", deposit.id));
            }
        }
        Ok(())
    }
}

impl Book {
    /// The deposits and approved withdrawals.
    pub fn payments(&self) -> &PaymentBook {
        &self.payments
    }

    /// Forgets settled deposits made longer ago than `CHARGEBACK_WINDOW_MS`.
    pub(crate) fn forget_old_deposits(&mut self) {
        let payments = &mut self.payments;
        while let Some(&(created_at, id)) = payments.settled.first() {
            if created_at.saturating_add(CHARGEBACK_WINDOW_MS) > self.now {
                break;
            }
            payments.settled.remove(&(created_at, id));
            payments.deposits.remove(&id);
        }
    }

    /// A deposit the provider has yet to confirm: checked like one that completes at once, then
    /// held from the clearing account until `settle_deposit`. It counts against the deposit
    /// limits now (a gross limit counts what the player asked to deposit), and again not if it
    /// fails within the same period.
    pub(crate) fn begin_deposit(
        &mut self,
        account: AccountId,
        amount: Money,
        payment_ref: &str,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        let (currency, cash, payment) = self.check_deposit(account, amount, payment_ref)?;
        if self.payments.pending >= DEPOSITS_PENDING_MAX {
            return Err(Rejection::PaymentsBusy);
        }
        let clearing = self.ledger.clearing(currency);
        let request = TransferRequest {
            debit: clearing,
            credit: cash,
            amount,
            code: TransferCode::Deposit,
            reference: account.0,
        };
        let hold =
            self.ledger.hold(request, self.now).map_err(|_| Rejection::InvalidRequest { reason: "deposit refused" })?;
        self.emit_transfer(hold, events);
        self.payment_refs.insert(payment);
        self.players[account.index()].record(self.now, amount.minor(), 0, 0);
        self.record_kyc_deposit(account, amount.minor());
        let deposit = Deposit {
            id: hold,
            account,
            amount,
            payment_ref: payment_ref.to_string(),
            created_at: self.now,
            state: DepositState::Pending,
            resolution: None,
            chargeback: None,
        };
        self.payments.index(&deposit);
        self.payments.deposits.insert(hold, deposit);
        self.monitor_deposit(account, amount, events);
        Ok(Ack::Transfer(hold))
    }

    /// The provider's word on a deposit. The same outcome twice answers the first transfer and
    /// changes nothing; a contradicting one is `payment_conflict`.
    pub(crate) fn settle_deposit(
        &mut self,
        account: AccountId,
        id: TransferId,
        outcome: DepositOutcome,
        events: &mut Vec<BookEvent>,
    ) -> Reply {
        self.player(account)?;
        let Some(deposit) = self.payments.deposits.get(&id).filter(|deposit| deposit.account == account) else {
            return Err(Rejection::UnknownPayment);
        };
        let (state, resolution, chargeback) = (deposit.state, deposit.resolution, deposit.chargeback);
        match (state, outcome) {
            (DepositState::Pending, DepositOutcome::Completed) => self.complete_deposit(id, events),
            (DepositState::Pending, DepositOutcome::Failed) => self.fail_deposit(id, events),
            (DepositState::Completed, DepositOutcome::ChargedBack) => self.charge_back(id, events),
            // A replay of what happened already: the first answer again.
            (DepositState::Completed | DepositState::ChargedBack, DepositOutcome::Completed)
            | (DepositState::Failed, DepositOutcome::Failed) => {
                resolution.map(Ack::Transfer).ok_or(Rejection::UnknownPayment)
            }
            (DepositState::ChargedBack, DepositOutcome::ChargedBack) => {
                chargeback.map(Ack::Transfer).ok_or(Rejection::UnknownPayment)
            }
            (DepositState::Pending, DepositOutcome::ChargedBack)
            | (DepositState::Completed | DepositState::ChargedBack, DepositOutcome::Failed)
            | (DepositState::Failed, DepositOutcome::Completed | DepositOutcome::ChargedBack) => {
                Err(Rejection::PaymentConflict)
            }
        }
    }

    fn complete_deposit(&mut self, id: TransferId, events: &mut Vec<BookEvent>) -> Reply {
        let deposit = &self.payments.deposits[&id];
        let (account, amount) = (deposit.account, deposit.amount);
        let cash = self.players[account.index()].cash;
        // The money arrived, but no balance may pass the money maximum: the deposit stays
        // pending for an operator (the provider's retry gets the same answer).
        if self.ledger.account(cash).posted_balance() + amount.minor() > MONEY_MINOR_MAX {
            return Err(Rejection::AmountTooLarge);
        }
        debug_assert!(self.ledger.is_open_pending(id), "a pending deposit's hold is open");
        let posted = self.ledger.post_pending(id, self.now).map_err(|_| Rejection::UnknownPayment)?;
        self.emit_transfer(posted, events);
        self.settled_deposit(id, DepositState::Completed, posted);
        self.repay_debt(account, events);
        Ok(Ack::Transfer(posted))
    }

    fn fail_deposit(&mut self, id: TransferId, events: &mut Vec<BookEvent>) -> Reply {
        let deposit = &self.payments.deposits[&id];
        let (account, amount, created_at) = (deposit.account, deposit.amount, deposit.created_at);
        let voided = self.ledger.void_pending(id, self.now).map_err(|_| Rejection::UnknownPayment)?;
        self.emit_transfer(voided, events);
        self.settled_deposit(id, DepositState::Failed, voided);
        // Nothing arrived: the deposit no longer counts against the limits of the periods it
        // was counted in, where they are still current.
        let now = self.now;
        let player = &mut self.players[account.index()];
        for period in crate::calendar::Period::ALL {
            if period.index(created_at) == period.index(now) {
                player.usage_mut(period, now).deposited -= amount.minor();
            }
        }
        self.record_kyc_deposit(account, -amount.minor());
        Ok(Ack::Transfer(voided))
    }

    /// Takes a completed deposit back: from the player's free cash what it covers, the rest as
    /// a debt the player owes (repaid from their next credits).
    fn charge_back(&mut self, id: TransferId, events: &mut Vec<BookEvent>) -> Reply {
        let deposit = &self.payments.deposits[&id];
        let (account, amount) = (deposit.account, deposit.amount);
        let player = &self.players[account.index()];
        let (cash, debt, currency) = (player.cash, player.debt, player.currency);
        let owed = -self.ledger.account(debt).posted_balance();
        let free = self.ledger.account(cash).available().max(0);
        let from_cash = amount.minor().min(free);
        let shortfall = amount.minor() - from_cash;
        if owed + shortfall > MONEY_MINOR_MAX {
            return Err(Rejection::AmountTooLarge);
        }
        let clearing = self.ledger.clearing(currency);
        let mut first = None;
        for (from, part, code) in
            [(cash, from_cash, TransferCode::Chargeback), (debt, shortfall, TransferCode::ChargebackDebt)]
        {
            if part == 0 {
                continue;
            }
            let request = TransferRequest {
                debit: from,
                credit: clearing,
                amount: Money::from_minor(part),
                code,
                reference: account.0,
            };
            // Cannot fail: the cash part is at most the free cash, and debt may go negative.
            let transfer =
                self.post(request, events).map_err(|_| Rejection::InvalidRequest { reason: "deposit refused" })?;
            first.get_or_insert(transfer);
        }
        let Some(first) = first else { return Err(Rejection::UnknownPayment) };
        let deposit = self.payments.deposits.get_mut(&id).expect("the deposit exists");
        deposit.state = DepositState::ChargedBack;
        deposit.chargeback = Some(first);
        debug_assert!(
            self.ledger.account(cash).available() >= 0,
            "a chargeback never takes more than the free cash from the cash account"
        );
        Ok(Ack::Transfer(first))
    }

    fn settled_deposit(&mut self, id: TransferId, state: DepositState, resolution: TransferId) {
        let payments = &mut self.payments;
        let deposit = payments.deposits.get_mut(&id).expect("the deposit exists");
        debug_assert_eq!(deposit.state, DepositState::Pending);
        deposit.state = state;
        deposit.resolution = Some(resolution);
        payments.pending -= 1;
        payments.settled.insert((deposit.created_at, id));
    }

    /// Approves an open withdrawal hold of `account` for payout. Approving it again answers
    /// the same.
    pub(crate) fn approve_withdrawal(&mut self, account: AccountId, withdrawal: TransferId) -> Reply {
        let player = self.player(account)?;
        let is_own_open_withdrawal = self.ledger.transfer(withdrawal).is_some_and(|transfer| {
            transfer.code == TransferCode::Withdrawal
                && transfer.kind == TransferKind::Pending
                && transfer.debit == player.cash
                && self.ledger.is_open_pending(withdrawal)
        });
        if !is_own_open_withdrawal {
            return Err(Rejection::UnknownWithdrawal);
        }
        self.payments.approved.insert(withdrawal);
        Ok(Ack::Transfer(withdrawal))
    }

    /// The payment reference of a deposit checked, with the limits, the account's state and
    /// the money maximum: what a deposit that completes at once and one that waits for the
    /// provider both check.
    pub(crate) fn check_deposit(
        &self,
        account: AccountId,
        amount: Money,
        payment_ref: &str,
    ) -> Result<(domain::Currency, crate::ids::LedgerAccountId, (AccountId, u64)), Rejection> {
        let player = self.player(account)?;
        self.check_may_gamble(player)?;
        if !amount.is_positive() {
            return Err(Rejection::InvalidRequest { reason: "deposit amount out of range" });
        }
        // The cap is in the base currency: converted into the player's at the rate now, rounded
        // down (against the player, like every cap). Without a rate there is no cap to apply, and
        // the deposit is refused like a bet would be.
        let cap = self.rate_for(player.currency)?.cap_in(self.config.deposit_max, player.currency);
        if amount > cap {
            return Err(Rejection::InvalidRequest { reason: "deposit amount out of range" });
        }
        // The reason for a long reference is the one older journals recorded, so that they
        // replay to the same replies.
        if payment_ref.len() > crate::constants::PAYMENT_REF_BYTES_MAX {
            return Err(Rejection::InvalidRequest { reason: "payment reference too long" });
        }
        if payment_ref.is_empty() {
            return Err(Rejection::InvalidRequest { reason: "payment reference missing" });
        }
        let payment = (account, payment_ref_hash(payment_ref));
        if self.payment_refs.contains(&payment) {
            return Err(Rejection::DuplicatePaymentRef);
        }
        if let Some(period) = player.exceeded_limit(LimitKind::Deposit, amount, self.now) {
            return Err(Rejection::LimitReached { limit: LimitKind::Deposit, period });
        }
        self.check_kyc_deposit(account, amount)?;
        let (currency, cash) = (player.currency, player.cash);
        // Pending deposits count: each may complete.
        let pending_in = self.ledger.account(cash).credits_pending;
        if self.ledger.account(cash).posted_balance() + pending_in + amount.minor() > MONEY_MINOR_MAX {
            return Err(Rejection::AmountTooLarge);
        }
        Ok((currency, cash, payment))
    }
}
