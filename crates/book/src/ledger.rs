//! The double-entry ledger, in the spirit of TigerBeetle: accounts hold running totals that only
//! transfers change, and every transfer debits one account and credits another by the same
//! amount, so money is conserved by construction.
//!
//! A transfer is posted at once, or pending (a hold: a stake on an open bet, a withdrawal on its
//! way to the payment provider) and later posted or voided. Player cash accounts may never go
//! negative, counting pending debits; house and payment-clearing accounts are the outside world
//! and may. `Ledger::verify` recomputes every total from the transfer log: the totals are a
//! cache of the postings, never a second source of truth.

use std::collections::{BTreeMap, BTreeSet};

use domain::{Currency, Money};

use crate::ids::{AccountId, LedgerAccountId, Timestamp, TransferId};
use crate::records::{IndexSet, Records};

/// The largest total an account may carry (a quarter of `i64::MAX`, some 2.3e18 minor units,
/// 2,300 times `MONEY_MINOR_MAX`): far beyond any real book, and low enough that balances,
/// available cash and sums over accounts computed from such totals cannot overflow.
pub const TOTAL_MAX: i64 = i64::MAX / 4;

/// What a ledger account stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountKind {
    /// A player's cash. Never negative, counting pending debits.
    PlayerCash(AccountId),
    /// What a player owes after a resettlement took back more than their cash held. Its
    /// balance is a receivable of the house, repaid from the player's next credits.
    PlayerDebt(AccountId),
    /// The house: takes lost stakes, pays winnings.
    House,
    /// Money in transit to or from the payment provider.
    PaymentClearing,
    /// The operator's account for manual balance adjustments by staff (`operator:adjustments`
    /// in the API): the other side of every adjustment, one per currency.
    Adjustments,
}

impl AccountKind {
    fn may_go_negative(self) -> bool {
        !matches!(self, AccountKind::PlayerCash(_))
    }
}

/// Running totals of one account, changed only by `Ledger::apply`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerAccount {
    pub id: LedgerAccountId,
    pub kind: AccountKind,
    pub currency: Currency,
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
    /// The part of `debits_pending` held for open bets (the rest is pending withdrawals).
    pub debits_pending_stakes: i64,
}

impl LedgerAccount {
    /// Credits less debits, posted only.
    pub fn posted_balance(&self) -> i64 {
        self.credits_posted - self.debits_posted
    }

    /// Posted balance less every pending debit: what may still be debited.
    pub fn available(&self) -> i64 {
        self.posted_balance() - self.debits_pending
    }
}

/// Why money moved. Statements and reports group by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransferCode {
    Deposit,
    Withdrawal,
    Stake,
    Payout,
    Cashout,
    /// Takes back a payout when a settlement is reversed.
    PayoutReversal,
    /// Gives back a posted stake when a settlement is reversed (a new hold follows).
    StakeReversal,
    /// Records money a player owes when a reversal exceeds their cash.
    DebtRecognised,
    /// Repays that debt from a later credit.
    DebtRepaid,
    /// A staff member's manual credit to a player.
    AdjustmentCredit,
    /// A staff member's manual debit of a player.
    AdjustmentDebit,
    /// A completed deposit taken back by the payer's bank, from the player's free cash
    /// (`reference` is the account id).
    Chargeback,
    /// The part of a chargeback the player's free cash did not cover: a debt the player owes
    /// (from their debt account), repaid from their next credits.
    ChargebackDebt,
}

impl TransferCode {
    /// Money of a bet (`reference` is the bet's id): its stake, payout or cash-out and the
    /// reversals of a resettlement.
    pub fn is_of_a_bet(self) -> bool {
        matches!(
            self,
            TransferCode::Stake
                | TransferCode::Payout
                | TransferCode::Cashout
                | TransferCode::PayoutReversal
                | TransferCode::StakeReversal
        )
    }

    /// The name statements and reports use (`GET /v1/wallet/transactions`' `type`).
    pub fn name(self) -> &'static str {
        match self {
            TransferCode::Deposit => "deposit",
            TransferCode::Withdrawal => "withdrawal",
            TransferCode::Stake => "stake",
            TransferCode::Payout => "payout",
            TransferCode::Cashout => "cashout",
            TransferCode::PayoutReversal => "payout_reversal",
            TransferCode::StakeReversal => "stake_reversal",
            TransferCode::DebtRecognised => "debt_recognised",
            TransferCode::DebtRepaid => "debt_repaid",
            TransferCode::AdjustmentCredit => "adjustment_credit",
            TransferCode::AdjustmentDebit => "adjustment_debit",
            TransferCode::Chargeback => "chargeback",
            TransferCode::ChargebackDebt => "chargeback_debt",
        }
    }
}

/// How a transfer affects balances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferKind {
    Posted,
    Pending,
    /// Posts the whole amount of an open pending transfer.
    PostPending(TransferId),
    /// Voids an open pending transfer.
    VoidPending(TransferId),
}

/// An immutable ledger record. `reference` ties it to what caused it (a bet id, a deposit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub debit: LedgerAccountId,
    pub credit: LedgerAccountId,
    pub amount: Money,
    pub code: TransferCode,
    pub kind: TransferKind,
    pub reference: u64,
    pub timestamp: Timestamp,
}

/// Why the ledger refused a transfer. The book checks first, so outside tests only
/// `InsufficientFunds` is expected; the rest are guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerError {
    InsufficientFunds,
    NotPending,
    CurrencyMismatch,
    AmountInvalid,
}

/// A transfer to make; the ledger assigns id and time.
#[derive(Clone, Copy, Debug)]
pub struct TransferRequest {
    pub debit: LedgerAccountId,
    pub credit: LedgerAccountId,
    pub amount: Money,
    pub code: TransferCode,
    pub reference: u64,
}

/// What transfers that left the ledger added to one account's totals (`Ledger::folded`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
    pub debits_pending_stakes: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Ledger {
    accounts: Vec<LedgerAccount>,
    /// For each account, the sum of what every transfer that left the ledger did to its
    /// totals: the running totals are always `folded` plus the transfers still held, which is
    /// what `verify` checks without the history.
    folded: Vec<Folded>,
    /// The transfers still held: open pending ones, and the rest until their resettlement
    /// window passed (`Ledger::forget_until`).
    transfers: Records<Transfer>,
    /// Transfers with ids up to this one were considered for leaving (ids and times grow
    /// together, so this is a cursor over time).
    swept: u64,
    /// For each player account (cash or debt), the held transfers that touch it, oldest
    /// first: the player's recent statement without scanning the log. Derived; rebuilt when
    /// restored.
    postings: Vec<Vec<TransferId>>,
    /// Pending transfers not yet posted or voided.
    open_pending: IndexSet,
    /// House and payment-clearing accounts, one pair per currency, created on first use.
    system: BTreeMap<Currency, (LedgerAccountId, LedgerAccountId)>,
    /// The operator's adjustments account of each currency, created on first use. Derived
    /// from the accounts' kinds when restored (no snapshot field of its own).
    adjustments: BTreeMap<Currency, LedgerAccountId>,
}

impl Ledger {
    pub fn open_account(&mut self, kind: AccountKind, currency: Currency) -> LedgerAccountId {
        let id = LedgerAccountId(self.accounts.len() as u64 + 1);
        self.folded.push(Folded::default());
        self.accounts.push(LedgerAccount {
            id,
            kind,
            currency,
            debits_posted: 0,
            credits_posted: 0,
            debits_pending: 0,
            credits_pending: 0,
            debits_pending_stakes: 0,
        });
        id
    }

    /// The house account of a currency.
    pub fn house(&mut self, currency: Currency) -> LedgerAccountId {
        self.system_accounts(currency).0
    }

    /// The payment-clearing account of a currency.
    pub fn clearing(&mut self, currency: Currency) -> LedgerAccountId {
        self.system_accounts(currency).1
    }

    /// The operator's adjustments account of a currency.
    pub fn adjustments(&mut self, currency: Currency) -> LedgerAccountId {
        if let Some(account) = self.adjustments.get(&currency) {
            return *account;
        }
        let account = self.open_account(AccountKind::Adjustments, currency);
        self.adjustments.insert(currency, account);
        account
    }

    fn system_accounts(&mut self, currency: Currency) -> (LedgerAccountId, LedgerAccountId) {
        if let Some(pair) = self.system.get(&currency) {
            return *pair;
        }
        let house = self.open_account(AccountKind::House, currency);
        let clearing = self.open_account(AccountKind::PaymentClearing, currency);
        self.system.insert(currency, (house, clearing));
        (house, clearing)
    }

    pub fn account(&self, id: LedgerAccountId) -> &LedgerAccount {
        &self.accounts[id.index()]
    }

    pub fn accounts(&self) -> &[LedgerAccount] {
        &self.accounts
    }

    /// The transfers still held, in id order (`transfers().issued()` counts every one ever).
    pub fn transfers(&self) -> &Records<Transfer> {
        &self.transfers
    }

    /// A held transfer; `None` for one that never existed or has left the ledger.
    pub fn transfer(&self, id: TransferId) -> Option<&Transfer> {
        self.transfers.get(id.index())
    }

    /// What the transfers that left added to each account, by account index.
    pub fn folded(&self) -> &[Folded] {
        &self.folded
    }

    /// Transfers with ids up to this one were considered for leaving.
    pub fn swept(&self) -> u64 {
        self.swept
    }

    pub fn is_open_pending(&self, id: TransferId) -> bool {
        self.open_pending.contains(id.index())
    }

    pub fn open_pending(&self) -> impl Iterator<Item = TransferId> + '_ {
        self.open_pending.iter().map(|index| TransferId(index as u64 + 1))
    }

    /// How many pending transfers are open.
    pub fn open_pending_count(&self) -> usize {
        self.open_pending.len()
    }

    fn set_open(&mut self, id: TransferId, open: bool) {
        if open {
            self.open_pending.insert(id.index());
        } else {
            self.open_pending.remove(id.index());
        }
    }

    /// Lets every transfer stamped at or before `cutoff` leave, except open pending ones (a
    /// pending transfer leaves with the transfer that resolves it). What each one did to its
    /// accounts is added to `folded`, so balances and `verify` are unchanged.
    pub(crate) fn forget_until(&mut self, cutoff: Timestamp) {
        while self.swept < self.transfers.issued() {
            let index = self.swept as usize;
            let Some(transfer) = self.transfers.get(index) else {
                self.swept += 1;
                continue;
            };
            if transfer.timestamp > cutoff {
                break;
            }
            let (id, kind) = (transfer.id, transfer.kind);
            self.swept += 1;
            if let TransferKind::PostPending(pending) | TransferKind::VoidPending(pending) = kind {
                self.forget(pending);
            }
            if !self.open_pending.contains(id.index()) {
                self.forget(id);
            }
        }
    }

    /// Lets a transfer leave at once unless it is an open hold: a bet's transfers once it
    /// settled (its stake's posting, its payout, the reversals of a resettlement). Nothing reads
    /// them after: a resettlement reverses the bet's `Settlement` (payout and stake), not the
    /// transfers, and statements come from the read models; what each did stays in `folded`, so
    /// balances and `verify` are unchanged. A resolution takes the hold it resolved with it.
    pub(crate) fn let_go(&mut self, id: TransferId) {
        if self.open_pending.contains(id.index()) {
            return;
        }
        let Some(transfer) = self.transfers.get(id.index()) else { return };
        if let TransferKind::PostPending(pending) | TransferKind::VoidPending(pending) = transfer.kind {
            self.forget(pending);
        }
        self.forget(id);
    }

    fn forget(&mut self, id: TransferId) {
        let Some(transfer) = self.transfers.get(id.index()) else { return };
        // Cannot fail for totals the ledger reached by `apply`; if it did, the transfer stays.
        if add_effect(&mut self.folded, transfer).is_err() {
            return;
        }
        let Some(transfer) = self.transfers.remove(id.index()) else { return };
        for account in [transfer.debit, transfer.credit] {
            if let Some(list) = self.postings.get_mut(account.index()) {
                if let Ok(at) = list.binary_search(&id) {
                    list.remove(at);
                }
            }
        }
    }

    pub fn system_currencies(&self) -> impl Iterator<Item = (Currency, LedgerAccountId, LedgerAccountId)> + '_ {
        self.system.iter().map(|(currency, (house, clearing))| (*currency, *house, *clearing))
    }

    /// Posts `request` at once.
    pub fn post(&mut self, request: TransferRequest, now: Timestamp) -> Result<TransferId, LedgerError> {
        self.apply(request, TransferKind::Posted, now)
    }

    /// Places a hold: a pending transfer, posted or voided later.
    pub fn hold(&mut self, request: TransferRequest, now: Timestamp) -> Result<TransferId, LedgerError> {
        self.apply(request, TransferKind::Pending, now)
    }

    /// Posts an open pending transfer in full.
    pub fn post_pending(&mut self, pending: TransferId, now: Timestamp) -> Result<TransferId, LedgerError> {
        self.resolve_pending(pending, true, now)
    }

    /// Voids an open pending transfer: the held money is free again.
    pub fn void_pending(&mut self, pending: TransferId, now: Timestamp) -> Result<TransferId, LedgerError> {
        self.resolve_pending(pending, false, now)
    }

    fn resolve_pending(&mut self, pending: TransferId, post: bool, now: Timestamp) -> Result<TransferId, LedgerError> {
        if !self.is_open_pending(pending) {
            return Err(LedgerError::NotPending);
        }
        let Some(original) = self.transfers.get(pending.index()) else {
            return Err(LedgerError::NotPending);
        };
        let request = TransferRequest {
            debit: original.debit,
            credit: original.credit,
            amount: original.amount,
            code: original.code,
            reference: original.reference,
        };
        let kind = if post { TransferKind::PostPending(pending) } else { TransferKind::VoidPending(pending) };
        self.apply(request, kind, now)
    }

    fn apply(
        &mut self,
        request: TransferRequest,
        kind: TransferKind,
        now: Timestamp,
    ) -> Result<TransferId, LedgerError> {
        let amount = request.amount.minor();
        if amount <= 0 || request.debit == request.credit {
            return Err(LedgerError::AmountInvalid);
        }
        let debit = &self.accounts[request.debit.index()];
        let credit = &self.accounts[request.credit.index()];
        if debit.currency != credit.currency {
            return Err(LedgerError::CurrencyMismatch);
        }
        // Only a new debit can drive an account negative: posting a pending debit moves an
        // amount already counted from pending to posted, and voiding one releases it.
        let adds_debit = matches!(kind, TransferKind::Posted | TransferKind::Pending);
        if adds_debit && !debit.kind.may_go_negative() && debit.available() < amount {
            return Err(LedgerError::InsufficientFunds);
        }
        // Totals only grow by `amount`; none may pass `TOTAL_MAX`, so every snapshot loads.
        let largest = [debit.debits_posted, debit.debits_pending, credit.credits_posted, credit.credits_pending];
        if largest.iter().any(|total| *total > TOTAL_MAX - amount) {
            return Err(LedgerError::AmountInvalid);
        }
        let id = TransferId(self.transfers.issued() + 1);
        let is_stake = request.code == TransferCode::Stake;
        {
            let debit = &mut self.accounts[request.debit.index()];
            match kind {
                TransferKind::Posted => debit.debits_posted += amount,
                TransferKind::Pending => {
                    debit.debits_pending += amount;
                    if is_stake {
                        debit.debits_pending_stakes += amount;
                    }
                }
                TransferKind::PostPending(_) | TransferKind::VoidPending(_) => {
                    debit.debits_pending -= amount;
                    if is_stake {
                        debit.debits_pending_stakes -= amount;
                    }
                    if matches!(kind, TransferKind::PostPending(_)) {
                        debit.debits_posted += amount;
                    }
                }
            }
            debug_assert!(debit.kind.may_go_negative() || debit.available() >= 0, "player cash went negative");
        }
        {
            let credit = &mut self.accounts[request.credit.index()];
            match kind {
                TransferKind::Posted => credit.credits_posted += amount,
                TransferKind::Pending => credit.credits_pending += amount,
                TransferKind::PostPending(_) => {
                    credit.credits_pending -= amount;
                    credit.credits_posted += amount;
                }
                TransferKind::VoidPending(_) => credit.credits_pending -= amount,
            }
        }
        match kind {
            TransferKind::Pending => self.set_open(id, true),
            TransferKind::PostPending(pending) | TransferKind::VoidPending(pending) => self.set_open(pending, false),
            TransferKind::Posted => {}
        }
        for account in [request.debit, request.credit] {
            if matches!(self.accounts[account.index()].kind, AccountKind::PlayerCash(_) | AccountKind::PlayerDebt(_)) {
                self.index_posting(account, id);
            }
        }
        self.transfers.push(Transfer {
            id,
            debit: request.debit,
            credit: request.credit,
            amount: request.amount,
            code: request.code,
            kind,
            reference: request.reference,
            timestamp: now,
        });
        Ok(id)
    }

    fn index_posting(&mut self, account: LedgerAccountId, transfer: TransferId) {
        if self.postings.len() <= account.index() {
            self.postings.resize_with(account.index() + 1, Vec::new);
        }
        self.postings[account.index()].push(transfer);
    }

    /// The transfers touching a player's cash or debt account, oldest first (empty for house
    /// and clearing accounts, which are not indexed).
    pub fn postings_of(&self, account: LedgerAccountId) -> &[TransferId] {
        self.postings.get(account.index()).map_or(&[], Vec::as_slice)
    }

    /// Rebuilds every account total from what left the ledger (`folded`) and the transfers
    /// it holds, and checks it against the running totals; that each currency's posted and
    /// pending balances sum to zero; that every resolution of a held pending transfer finds
    /// it open; and that no player cash is negative. Returns the first violation.
    pub fn verify(&self) -> Result<(), String> {
        if self.folded.len() != self.accounts.len() {
            return Err(format!("{} folded totals for {} accounts", self.folded.len(), self.accounts.len()));
        }
        let mut rebuilt = self.folded.clone();
        let mut open: BTreeSet<TransferId> = BTreeSet::new();
        let mut previous = 0;
        for transfer in &self.transfers {
            if transfer.id.0 <= previous || transfer.id.0 > self.transfers.issued() {
                return Err(format!("transfer {} out of order", transfer.id));
            }
            previous = transfer.id.0;
            match transfer.kind {
                TransferKind::Pending => {
                    open.insert(transfer.id);
                }
                TransferKind::PostPending(pending) | TransferKind::VoidPending(pending) => {
                    // A pending transfer that left was resolved before it left.
                    if self.transfers.contains(pending.index()) && !open.remove(&pending) {
                        return Err(format!("transfer {} resolves {pending}, which is not open", transfer.id));
                    }
                }
                TransferKind::Posted => {}
            }
            add_effect(&mut rebuilt, transfer)?;
        }
        if !open.iter().copied().eq(self.open_pending()) {
            return Err("open pending transfers differ from the log".to_string());
        }
        for (stored, derived) in self.accounts.iter().zip(&rebuilt) {
            let totals = Folded {
                debits_posted: stored.debits_posted,
                credits_posted: stored.credits_posted,
                debits_pending: stored.debits_pending,
                credits_pending: stored.credits_pending,
                debits_pending_stakes: stored.debits_pending_stakes,
            };
            if totals != *derived {
                return Err(format!("account {} totals {stored:?} differ from the postings {derived:?}", stored.id));
            }
            if !stored.kind.may_go_negative() && stored.available() < 0 {
                return Err(format!("player cash {} is negative: {}", stored.id, stored.available()));
            }
        }
        // i128: a sum over every account of totals each below `TOTAL_MAX` cannot overflow it.
        let mut sums: BTreeMap<Currency, (i128, i128, i128)> = BTreeMap::new();
        for account in &self.accounts {
            let sum = sums.entry(account.currency).or_default();
            sum.0 += i128::from(account.posted_balance());
            sum.1 += i128::from(account.debits_pending);
            sum.2 += i128::from(account.credits_pending);
        }
        for (currency, (posted, debits_pending, credits_pending)) in sums {
            if posted != 0 || debits_pending != credits_pending {
                return Err(format!(
                    "{currency} is not conserved: posted sum {posted}, pending debits {debits_pending}, pending credits {credits_pending}"
                ));
            }
        }
        Ok(())
    }

    /// Checks that a ledger's parts refer only to what they contain: accounts in storage
    /// order with one folded total each, held transfers in increasing id order below the count
    /// issued, between known accounts, every resolution naming an earlier transfer, every open
    /// pending transfer a held one. Run on decoded parts before `from_parts`, whose indexes
    /// and `verify` index by these ids: a corrupt snapshot is then an error, never a panic.
    pub fn check_parts(parts: &LedgerParts) -> Result<(), String> {
        let accounts = &parts.accounts;
        let account_known = |id: LedgerAccountId| id.0 >= 1 && id.0 <= accounts.len() as u64;
        for (index, account) in accounts.iter().enumerate() {
            if account.id.index() != index || account.id.0 == 0 {
                return Err(format!("ledger account {} stored at index {index}", account.id));
            }
            let totals = [
                account.debits_posted,
                account.credits_posted,
                account.debits_pending,
                account.credits_pending,
                account.debits_pending_stakes,
            ];
            let folded = parts.folded.get(index).map_or([0; 5], |folded| {
                [
                    folded.debits_posted,
                    folded.credits_posted,
                    folded.debits_pending,
                    folded.credits_pending,
                    folded.debits_pending_stakes,
                ]
            });
            if totals.iter().chain(&folded).any(|total| !(0..=TOTAL_MAX).contains(total)) {
                return Err(format!("ledger account {} has a total outside 0..={TOTAL_MAX}", account.id));
            }
        }
        if parts.folded.len() != accounts.len() {
            return Err(format!("{} folded totals for {} ledger accounts", parts.folded.len(), accounts.len()));
        }
        if parts.swept > parts.transfers_issued {
            return Err(format!("transfers swept up to {} of {}", parts.swept, parts.transfers_issued));
        }
        let mut previous = 0;
        for transfer in &parts.transfers {
            if transfer.id.0 <= previous || transfer.id.0 > parts.transfers_issued {
                return Err(format!("transfer {} out of order or never issued", transfer.id));
            }
            previous = transfer.id.0;
            if !account_known(transfer.debit) || !account_known(transfer.credit) {
                return Err(format!("transfer {} moves money between unknown accounts", transfer.id));
            }
            if transfer.amount.minor() <= 0 {
                return Err(format!("transfer {} moves {} minor units", transfer.id, transfer.amount.minor()));
            }
            if let TransferKind::PostPending(pending) | TransferKind::VoidPending(pending) = transfer.kind {
                if pending.0 == 0 || pending.0 >= transfer.id.0 {
                    return Err(format!("transfer {} resolves {pending}, not an earlier transfer", transfer.id));
                }
            }
        }
        let held = |id: TransferId| parts.transfers.binary_search_by_key(&id, |transfer| transfer.id).is_ok();
        if let Some(id) = parts.open_pending.iter().find(|id| !held(**id)) {
            return Err(format!("open pending transfer {id} is not held"));
        }
        if !parts.open_pending.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err("open pending transfers out of order".to_string());
        }
        if parts.system.iter().any(|(_, house, clearing)| !account_known(*house) || !account_known(*clearing)) {
            return Err("a house or clearing account does not exist".to_string());
        }
        let mut adjustment_currencies = BTreeSet::new();
        for account in accounts.iter().filter(|account| account.kind == AccountKind::Adjustments) {
            if !adjustment_currencies.insert(account.currency) {
                return Err(format!("two adjustments accounts in {}", account.currency));
            }
        }
        Ok(())
    }

    /// Every part of the ledger, for snapshots.
    pub fn to_parts(&self) -> LedgerParts {
        LedgerParts {
            accounts: self.accounts.clone(),
            folded: self.folded.clone(),
            transfers: self.transfers.to_vec(),
            transfers_issued: self.transfers.issued(),
            swept: self.swept,
            open_pending: self.open_pending().collect(),
            system: self.system_currencies().collect(),
        }
    }

    /// Restores a ledger from its parts (used by snapshot decoding); `check_parts` first,
    /// `verify` after.
    pub fn from_parts(parts: LedgerParts) -> Ledger {
        let adjustments = parts
            .accounts
            .iter()
            .filter(|account| account.kind == AccountKind::Adjustments)
            .map(|account| (account.currency, account.id))
            .collect();
        let mut ledger = Ledger {
            adjustments,
            accounts: parts.accounts,
            folded: parts.folded,
            transfers: Records::default(),
            swept: parts.swept,
            postings: Vec::new(),
            open_pending: parts.open_pending.into_iter().map(|id| id.index()).collect(),
            system: parts.system.into_iter().map(|(currency, house, clearing)| (currency, (house, clearing))).collect(),
        };
        for transfer in &parts.transfers {
            for account in [transfer.debit, transfer.credit] {
                let kind = ledger.accounts.get(account.index()).map(|account| account.kind);
                if matches!(kind, Some(AccountKind::PlayerCash(_) | AccountKind::PlayerDebt(_))) {
                    ledger.index_posting(account, transfer.id);
                }
            }
        }
        ledger.transfers = Records::from_parts(parts.transfers_issued, parts.transfers, |transfer| transfer.id.index());
        ledger
    }
}

/// Every part of a ledger, for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerParts {
    pub accounts: Vec<LedgerAccount>,
    /// One per account.
    pub folded: Vec<Folded>,
    /// The held transfers, in id order.
    pub transfers: Vec<Transfer>,
    pub transfers_issued: u64,
    pub swept: u64,
    /// Sorted.
    pub open_pending: Vec<TransferId>,
    pub system: Vec<(Currency, LedgerAccountId, LedgerAccountId)>,
}

/// Adds what `transfer` does to its two accounts' totals; all or nothing. Checked: a live
/// ledger's totals stay far inside `i64` (`TOTAL_MAX`), so an overflow means corrupt parts.
fn add_effect(totals: &mut [Folded], transfer: &Transfer) -> Result<(), String> {
    let amount = transfer.amount.minor();
    let stake = if transfer.code == TransferCode::Stake { amount } else { 0 };
    let (d, c) = (transfer.debit.index(), transfer.credit.index());
    if d >= totals.len() || c >= totals.len() {
        return Ok(());
    }
    let overflow = || format!("transfer {} overflows its accounts' totals", transfer.id);
    let add = |total: &mut i64, by: i64| total.checked_add(by).map(|sum| *total = sum).ok_or_else(overflow);
    let mut debit = totals[d];
    let (debit_sign, posts) = match transfer.kind {
        TransferKind::Posted => (0, true),
        TransferKind::Pending => (1, false),
        TransferKind::PostPending(_) => (-1, true),
        TransferKind::VoidPending(_) => (-1, false),
    };
    // Pending totals move by `debit_sign`; posted totals grow when the transfer posts.
    let pending = amount.checked_mul(debit_sign).ok_or_else(overflow)?;
    let pending_stake = stake * debit_sign;
    add(&mut debit.debits_pending, pending)?;
    add(&mut debit.debits_pending_stakes, pending_stake)?;
    if posts {
        add(&mut debit.debits_posted, amount)?;
    }
    let mut credit = if c == d { debit } else { totals[c] };
    add(&mut credit.credits_pending, pending)?;
    if posts {
        add(&mut credit.credits_posted, amount)?;
    }
    if c != d {
        totals[d] = debit;
    }
    totals[c] = credit;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AccountId;

    fn euro() -> Currency {
        Currency::parse("EUR").expect("currency")
    }

    /// A ledger with one player who deposited 100 from the clearing account.
    fn funded() -> (Ledger, LedgerAccountId, LedgerAccountId) {
        let mut ledger = Ledger::default();
        let clearing = ledger.clearing(euro());
        let cash = ledger.open_account(AccountKind::PlayerCash(AccountId(1)), euro());
        let deposit = TransferRequest {
            debit: clearing,
            credit: cash,
            amount: Money::from_minor(100),
            code: TransferCode::Deposit,
            reference: 1,
        };
        ledger.post(deposit, 1).expect("deposit");
        ledger.verify().expect("balanced");
        (ledger, clearing, cash)
    }

    /// Found by the `codec_snapshot` fuzz target: decoded totals near `i64::MAX` made
    /// `verify` overflow (a panic with overflow checks) where an error was due. Totals past
    /// `TOTAL_MAX` and amounts not above zero are refused by `check_parts`; folding a transfer
    /// is checked, and all or nothing.
    #[test]
    fn parts_whose_totals_overflow_are_an_error_not_a_panic() {
        let (ledger, _, cash) = funded();
        let mut parts = ledger.to_parts();
        parts.accounts[cash.index()].credits_posted = i64::MAX;
        let error = Ledger::check_parts(&parts).expect_err("refused");
        assert!(error.contains("outside"), "{error}");
        let mut parts = ledger.to_parts();
        parts.folded[cash.index()].debits_posted = -1;
        assert!(Ledger::check_parts(&parts).is_err());
        let mut parts = ledger.to_parts();
        parts.transfers[0].amount = Money::from_minor(0);
        assert!(Ledger::check_parts(&parts).is_err());

        let transfer = ledger.transfer(TransferId(1)).expect("held").clone();
        let mut totals = ledger.folded().to_vec();
        totals[cash.index()].credits_posted = i64::MAX - 10;
        let before = totals.clone();
        let error = add_effect(&mut totals, &transfer).expect_err("overflows");
        assert!(error.contains("overflows"), "{error}");
        assert_eq!(totals, before, "nothing changed");
    }

    /// A live ledger never takes a total past `TOTAL_MAX`, so every snapshot it writes loads.
    #[test]
    fn a_transfer_that_would_pass_the_largest_total_is_refused() {
        let (mut ledger, clearing, cash) = funded();
        ledger.accounts[cash.index()].credits_posted = TOTAL_MAX - 50;
        ledger.accounts[clearing.index()].debits_posted = TOTAL_MAX - 50;
        let request = TransferRequest {
            debit: clearing,
            credit: cash,
            amount: Money::from_minor(51),
            code: TransferCode::Deposit,
            reference: 2,
        };
        assert_eq!(ledger.post(request, 2), Err(LedgerError::AmountInvalid));
        ledger.post(TransferRequest { amount: Money::from_minor(50), ..request }, 2).expect("up to the largest");
    }
}
