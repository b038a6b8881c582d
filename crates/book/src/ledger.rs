//! The double-entry ledger, in the spirit of TigerBeetle: accounts hold running totals that only
//! transfers change, and every transfer debits one account and credits another by the same
//! amount, so money is conserved by construction.
//!
//! A transfer is posted at once, or pending (a hold: a stake on an open bet, a withdrawal on its
//! way to the payment provider) and later posted or voided. Player cash accounts may never go
//! negative, counting pending debits; house and payment-clearing accounts are the outside world
//! and may. `Ledger::verify` recomputes every total from the transfer log: the totals are a
//! cache of the postings, never a second source of truth.

use std::collections::BTreeMap;

use domain::{Currency, Money};

use crate::ids::{AccountId, LedgerAccountId, Timestamp, TransferId};

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
}

impl TransferCode {
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

#[derive(Clone, Debug, Default)]
pub struct Ledger {
    accounts: Vec<LedgerAccount>,
    transfers: Vec<Transfer>,
    /// For each player account (cash or debt), the transfers that touch it, oldest first: the
    /// player's statement without scanning the whole log. Derived; rebuilt when restored.
    postings: Vec<Vec<TransferId>>,
    /// Pending transfers not yet posted or voided: bit `index` of the transfer id. A bitset
    /// because ids are dense and this is on the hot path of every bet.
    open_pending: Vec<u64>,
    /// House and payment-clearing accounts, one pair per currency, created on first use.
    system: BTreeMap<Currency, (LedgerAccountId, LedgerAccountId)>,
}

impl Ledger {
    pub fn open_account(&mut self, kind: AccountKind, currency: Currency) -> LedgerAccountId {
        let id = LedgerAccountId(self.accounts.len() as u64 + 1);
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

    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    pub fn transfer(&self, id: TransferId) -> Option<&Transfer> {
        self.transfers.get(id.index())
    }

    pub fn is_open_pending(&self, id: TransferId) -> bool {
        let index = id.index();
        self.open_pending.get(index / 64).is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    pub fn open_pending(&self) -> impl Iterator<Item = TransferId> + '_ {
        self.open_pending.iter().enumerate().flat_map(|(word_index, word)| {
            (0..64)
                .filter(move |bit| word & (1u64 << bit) != 0)
                .map(move |bit| TransferId((word_index * 64 + bit) as u64 + 1))
        })
    }

    fn set_open(&mut self, id: TransferId, open: bool) {
        let index = id.index();
        if self.open_pending.len() <= index / 64 {
            self.open_pending.resize(index / 64 + 1, 0);
        }
        if open {
            self.open_pending[index / 64] |= 1 << (index % 64);
        } else {
            self.open_pending[index / 64] &= !(1 << (index % 64));
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
        let original = &self.transfers[pending.index()];
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
        let id = TransferId(self.transfers.len() as u64 + 1);
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

    /// Rebuilds every account total from the transfer log and checks it against the running
    /// totals, that each currency's posted and pending balances sum to zero, and that no
    /// player cash is negative. Returns a description of the first violation.
    pub fn verify(&self) -> Result<(), String> {
        let mut rebuilt: Vec<LedgerAccount> = self
            .accounts
            .iter()
            .map(|account| LedgerAccount {
                debits_posted: 0,
                credits_posted: 0,
                debits_pending: 0,
                credits_pending: 0,
                debits_pending_stakes: 0,
                ..account.clone()
            })
            .collect();
        let mut open: BTreeMap<TransferId, ()> = BTreeMap::new();
        for (index, transfer) in self.transfers.iter().enumerate() {
            if transfer.id.index() != index {
                return Err(format!("transfer {} stored at index {index}", transfer.id));
            }
            let amount = transfer.amount.minor();
            let stake = transfer.code == TransferCode::Stake;
            let (debit, credit) = (transfer.debit.index(), transfer.credit.index());
            match transfer.kind {
                TransferKind::Posted => {
                    rebuilt[debit].debits_posted += amount;
                    rebuilt[credit].credits_posted += amount;
                }
                TransferKind::Pending => {
                    rebuilt[debit].debits_pending += amount;
                    rebuilt[debit].debits_pending_stakes += if stake { amount } else { 0 };
                    rebuilt[credit].credits_pending += amount;
                    open.insert(transfer.id, ());
                }
                TransferKind::PostPending(pending) | TransferKind::VoidPending(pending) => {
                    if open.remove(&pending).is_none() {
                        return Err(format!("transfer {} resolves {pending}, which is not open", transfer.id));
                    }
                    rebuilt[debit].debits_pending -= amount;
                    rebuilt[debit].debits_pending_stakes -= if stake { amount } else { 0 };
                    rebuilt[credit].credits_pending -= amount;
                    if matches!(transfer.kind, TransferKind::PostPending(_)) {
                        rebuilt[debit].debits_posted += amount;
                        rebuilt[credit].credits_posted += amount;
                    }
                }
            }
        }
        if !open.keys().copied().eq(self.open_pending()) {
            return Err("open pending transfers differ from the log".to_string());
        }
        for (stored, derived) in self.accounts.iter().zip(&rebuilt) {
            if stored != derived {
                return Err(format!("account {} totals {stored:?} differ from the postings {derived:?}", stored.id));
            }
            if !stored.kind.may_go_negative() && stored.available() < 0 {
                return Err(format!("player cash {} is negative: {}", stored.id, stored.available()));
            }
        }
        let mut sums: BTreeMap<Currency, (i64, i64, i64)> = BTreeMap::new();
        for account in &self.accounts {
            let sum = sums.entry(account.currency).or_default();
            sum.0 += account.posted_balance();
            sum.1 += account.debits_pending;
            sum.2 += account.credits_pending;
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

    /// Checks that a ledger's parts refer only to what they contain: ids in storage order,
    /// every transfer between known accounts, every open or resolved pending transfer a known
    /// earlier one. Run on decoded parts before `from_parts`, whose bitset and indexes, and
    /// `verify`, index by these ids: a corrupt snapshot is then an error, never a panic or a
    /// huge allocation.
    pub fn check_parts(
        accounts: &[LedgerAccount],
        transfers: &[Transfer],
        open_pending: &[TransferId],
        system: &[(Currency, LedgerAccountId, LedgerAccountId)],
    ) -> Result<(), String> {
        let account_known = |id: LedgerAccountId| id.0 >= 1 && id.0 <= accounts.len() as u64;
        for (index, account) in accounts.iter().enumerate() {
            if account.id.index() != index || account.id.0 == 0 {
                return Err(format!("ledger account {} stored at index {index}", account.id));
            }
        }
        for (index, transfer) in transfers.iter().enumerate() {
            if transfer.id.index() != index || transfer.id.0 == 0 {
                return Err(format!("transfer {} stored at index {index}", transfer.id));
            }
            if !account_known(transfer.debit) || !account_known(transfer.credit) {
                return Err(format!("transfer {} moves money between unknown accounts", transfer.id));
            }
            if let TransferKind::PostPending(pending) | TransferKind::VoidPending(pending) = transfer.kind {
                if pending.0 == 0 || pending.0 >= transfer.id.0 {
                    return Err(format!("transfer {} resolves {pending}, not an earlier transfer", transfer.id));
                }
            }
        }
        if let Some(id) = open_pending.iter().find(|id| id.0 == 0 || id.0 > transfers.len() as u64) {
            return Err(format!("open pending transfer {id} does not exist"));
        }
        if system.iter().any(|(_, house, clearing)| !account_known(*house) || !account_known(*clearing)) {
            return Err("a house or clearing account does not exist".to_string());
        }
        Ok(())
    }

    /// Restores a ledger from its parts (used by snapshot decoding); `verify` checks it.
    pub fn from_parts(
        accounts: Vec<LedgerAccount>,
        transfers: Vec<Transfer>,
        open_pending: Vec<TransferId>,
        system: Vec<(Currency, LedgerAccountId, LedgerAccountId)>,
    ) -> Ledger {
        let mut ledger = Ledger {
            accounts,
            transfers: Vec::new(),
            postings: Vec::new(),
            open_pending: Vec::new(),
            system: system.into_iter().map(|(currency, house, clearing)| (currency, (house, clearing))).collect(),
        };
        for id in open_pending {
            ledger.set_open(id, true);
        }
        for transfer in &transfers {
            for account in [transfer.debit, transfer.credit] {
                let kind = ledger.accounts.get(account.index()).map(|account| account.kind);
                if matches!(kind, Some(AccountKind::PlayerCash(_) | AccountKind::PlayerDebt(_))) {
                    ledger.index_posting(account, transfer.id);
                }
            }
        }
        ledger.transfers = transfers;
        ledger
    }
}
