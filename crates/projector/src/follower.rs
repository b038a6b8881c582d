//! The follower: a book of its own that decides every journaled batch again (the book is
//! deterministic), checks the replies against the digest the sequencer recorded, and turns the
//! events and the book's state after each batch into rows of the read models.
//!
//! Balances after each transfer are computed here, transfer by transfer, with the ledger's own
//! rules on a mirror of the ledger's running totals; after each batch the mirror of every
//! account the batch touched is compared with the follower book's ledger, so a statement's
//! `balance_after` can never drift from the book.

use std::collections::BTreeSet;

use book::{
    AccountId, AccountKind, Ack, AppliedRate, Bet, BetId, BetKind, BetStatus, Book, BookEvent, Command,
    LedgerAccountId, LimitKind, Period, Remembered, Reply, Transfer, TransferCode, TransferKind, MILLIS_PER_DAY,
};
use codec::{decode_batch, encode_batch, reply_digest, Wire};
use domain::{Currency, Money};
use engine::{chain_next, ChainHead, CHAIN_HEAD_GENESIS};
use journal::Position;

pub use crate::changes::Changes;
use crate::schema::{
    Value, ACCOUNTS, ACCOUNT_LIMITS, ALERTS, AUDIT, BETS, BET_HISTORY, BET_LEGS, BET_SETTLEMENTS, CASES, CASE_ACTIONS,
    CHECKPOINT, DAILY_TOTALS, FIRST_REPLIES, LEG_RESULTS, TRANSFERS,
};
use crate::ProjectorError;

/// Where a store is: the journal position after the last applied batch and the chain head
/// there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub next_position: Position,
    pub chain_head: ChainHead,
    pub batches: u64,
    pub commands: u64,
    /// The position the models begin at: 0, or the snapshot they were seeded from.
    pub base_position: Position,
}

impl Checkpoint {
    pub fn row(&self) -> Vec<Value> {
        vec![
            Value::Int(1),
            int(self.next_position),
            Value::from(hex::encode(self.chain_head)),
            int(self.batches),
            int(self.commands),
            int(self.base_position),
        ]
    }

    pub fn from_row(row: &[Value]) -> Result<Checkpoint, ProjectorError> {
        let bad = || ProjectorError::Store(format!("unreadable checkpoint row {row:?}"));
        let number = |index: usize| row.get(index).and_then(Value::int).map(|value| value as u64).ok_or_else(bad);
        let head_text = row.get(2).and_then(Value::text).ok_or_else(bad)?;
        let mut chain_head = CHAIN_HEAD_GENESIS;
        hex::decode_to_slice(head_text, &mut chain_head).map_err(|_| bad())?;
        Ok(Checkpoint {
            next_position: number(1)?,
            chain_head,
            batches: number(3)?,
            commands: number(4)?,
            base_position: number(5)?,
        })
    }
}

/// Running totals of one ledger account, kept with the ledger's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mirror {
    kind: AccountKind,
    currency: Currency,
    posted: i64,
    debits_pending: i64,
    pending_stakes: i64,
}

/// A follower book and what the projector needs beside it.
#[derive(Debug)]
pub struct Follower {
    book: Book,
    checkpoint: Checkpoint,
    mirror: Vec<Mirror>,
    /// Bets waiting out an in-play delay: counted as placed when they leave it accepted.
    pending_bets: BTreeSet<BetId>,
    /// Each market's `settlement_version` as last projected: when it moves, the results of
    /// the legs on it changed (a multiple's leg can be resulted while the bet stays open).
    settlement_versions: Vec<u32>,
    events: Vec<BookEvent>,
    scratch: Vec<u8>,
    /// Write a changed bet and its legs whole, as at placement, rather than only what changes
    /// once a bet is accepted ([`BET_SETTLEMENTS`], [`LEG_RESULTS`]): for comparing the two
    /// (`sportsbook projector --whole-bet-rows`); the models are the same.
    whole_bet_rows: bool,
    /// The sequence number of the next command: the first of the next batch (checked), and
    /// what a snapshot of the book records.
    next_sequence: u64,
}

fn int(value: u64) -> Value {
    Value::Int(value as i64)
}

impl Follower {
    /// A follower at `checkpoint` on `book`, the state the journal leads to at
    /// `checkpoint.next_position`, where the next command's sequence number is `next_sequence`.
    pub fn new(book: Book, checkpoint: Checkpoint, next_sequence: u64) -> Follower {
        let mut follower = Follower {
            book,
            checkpoint,
            next_sequence,
            mirror: Vec::new(),
            pending_bets: BTreeSet::new(),
            settlement_versions: Vec::new(),
            events: Vec::new(),
            scratch: Vec::new(),
            whole_bet_rows: false,
        };
        follower.resync();
        follower
    }

    /// Takes the mirror and the pending bets from the book (after a replay without rows).
    fn resync(&mut self) {
        self.mirror = self
            .book
            .ledger()
            .accounts()
            .iter()
            .map(|account| Mirror {
                kind: account.kind,
                currency: account.currency,
                posted: account.posted_balance(),
                debits_pending: account.debits_pending,
                pending_stakes: account.debits_pending_stakes,
            })
            .collect();
        self.pending_bets =
            self.book.bets().iter().filter(|bet| bet.status == BetStatus::Pending).map(|bet| bet.id).collect();
        self.settlement_versions = self.book.markets().iter().map(|market| market.settlement_version).collect();
    }

    /// See [`Follower::whole_bet_rows`](Follower).
    pub fn set_whole_bet_rows(&mut self, whole_bet_rows: bool) {
        self.whole_bet_rows = whole_bet_rows;
    }

    pub fn book(&self) -> &Book {
        &self.book
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The sequence number of the next command (after the last batch decided).
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Takes the counters of a store's checkpoint after replaying up to it.
    pub fn restore_counts(&mut self, stored: &Checkpoint) {
        self.checkpoint.batches = stored.batches;
        self.checkpoint.commands = stored.commands;
        self.checkpoint.base_position = stored.base_position;
    }

    /// Rows for everything the book holds, for models that begin at a snapshot: every account,
    /// every bet as it stands (no status history before the snapshot), every transfer with the
    /// balances after it (the ledger's log replayed from zero), and the report inputs they
    /// imply. The audit view begins at the snapshot.
    pub fn seed(&mut self, changes: &mut Changes) -> Result<(), ProjectorError> {
        let position = self.checkpoint.next_position;
        // The balances start at what the transfers that left the book did (`Ledger::folded`:
        // a settled bet's transfers leave at once, the rest after their window), and the held
        // ones are replayed on top in id order.
        let ledger = self.book.ledger();
        self.mirror = ledger
            .accounts()
            .iter()
            .zip(ledger.folded())
            .map(|(account, folded)| Mirror {
                kind: account.kind,
                currency: account.currency,
                posted: folded.credits_posted - folded.debits_posted,
                debits_pending: folded.debits_pending,
                pending_stakes: folded.debits_pending_stakes,
            })
            .collect();
        let held: Vec<Transfer> = ledger.transfers().iter().cloned().collect();
        for transfer in &held {
            self.transfer(position, transfer, changes)?;
        }
        for index in 0..self.mirror.len() {
            self.check_mirror(position, LedgerAccountId(index as u64 + 1))?;
        }
        self.resync();
        for bet in self.book.bets() {
            let currency = self.currency_of(bet.account);
            if !matches!(bet.status, BetStatus::Pending | BetStatus::Rejected) {
                self.count_placed(bet.id, changes);
            }
            changes.put(&BETS, bet_row(&bet, currency, self.player_currency(bet.account), position));
            for (index, leg) in bet.legs.iter().enumerate() {
                changes.put(&BET_LEGS, leg_row(bet.id, index, leg));
            }
        }
        // The keys the book still remembers: a retry of one of them after the book's window is
        // answered from here (the account is not known from the hash alone).
        for (hash, remembered) in self.book.remembered_keys() {
            changes.put(&FIRST_REPLIES, first_reply_row(hash, None, &remembered, position));
        }
        // The monitor's open cases and the alerts they hold (closed cases before the snapshot
        // are not in it: the models begin here).
        for case in self.book.monitor().cases() {
            changes.put(&CASES, case_row(&case.summary(), position));
            for alert in &case.alerts {
                changes.put(&ALERTS, alert_row(alert, position));
            }
        }
        for player in self.book.players() {
            changes.put(&ACCOUNTS, account_row(player, position));
            if has_limits(player) {
                limit_rows(player, position, changes);
            }
        }
        changes.put(&CHECKPOINT, self.checkpoint.row());
        Ok(())
    }

    /// Decides a batch again without producing rows (catching up to a store's checkpoint).
    pub fn replay(&mut self, position: Position, payload: &[u8]) -> Result<(), ProjectorError> {
        self.decide(position, payload, None)?;
        self.resync();
        Ok(())
    }

    /// Decides a batch again and adds the rows it produced, and the new checkpoint, to
    /// `changes`. On an error nothing of the batch should be committed.
    pub fn project(&mut self, position: Position, payload: &[u8], changes: &mut Changes) -> Result<(), ProjectorError> {
        self.decide(position, payload, Some(changes))
    }

    fn decide(
        &mut self,
        position: Position,
        payload: &[u8],
        mut changes: Option<&mut Changes>,
    ) -> Result<(), ProjectorError> {
        if position != self.checkpoint.next_position {
            return Err(ProjectorError::Gap { expected: self.checkpoint.next_position, found: position });
        }
        let batch = decode_batch(payload).map_err(|source| ProjectorError::Decode { position, source })?;
        if batch.first_sequence != self.next_sequence {
            return Err(ProjectorError::SequenceGap {
                position,
                expected: self.next_sequence,
                found: batch.first_sequence,
            });
        }
        let at = batch.timestamp;
        let mut digest = 0u64;
        let mut touched_bets = BTreeSet::new();
        // Bets placed in this batch or waiting out (or leaving) an in-play delay in it: written
        // whole (a delayed bet's legs are bound again, its potential payout and delay change).
        // Any other bet is already in the store as accepted, and only its settlement and its
        // legs' results can have changed since.
        let mut whole_bets = BTreeSet::new();
        let mut touched_accounts = BTreeSet::new();
        let mut touched_limits = BTreeSet::new();
        let mut touched_ledger = BTreeSet::new();
        let mut ordinal = 0i64;
        let mut action_ordinal = 0i64;
        let mut resulted_markets = BTreeSet::new();
        let mut feed = false;
        let mut events = std::mem::take(&mut self.events);
        for (index, (command, origin)) in batch.commands.iter().zip(&batch.origins).enumerate() {
            events.clear();
            let reply = self.book.apply(at, command, &mut events);
            digest = reply_digest(digest, &reply, &mut self.scratch);
            let Some(changes) = changes.as_deref_mut() else { continue };
            match command {
                Command::SettleMarket { market, .. }
                | Command::UnsettleMarket { market }
                | Command::VoidMarket { market } => {
                    resulted_markets.insert(*market);
                }
                Command::Feed(_) | Command::FeedHealth { .. } => feed = true,
                _ => {}
            }
            changes.put(
                &AUDIT,
                vec![
                    int(position),
                    Value::Int(index as i64),
                    int(batch.first_sequence + index as u64),
                    int(at),
                    Value::constant(command.name()),
                    Value::from(command.account().map(|account| account.0 as i64)),
                    Value::constant(match &reply {
                        Ok(_) => "ok",
                        Err(rejection) => rejection.code(),
                    }),
                    Value::from(reply_reference(&reply)),
                    Value::from(format!("{:016x}", batch.reply_digest)),
                    Value::from(audit_body(batch.first_sequence + index as u64, at, command)),
                    Value::constant(origin.actor.kind()),
                    Value::from(origin.actor.id()),
                    Value::from(origin.reason.clone()),
                ],
            );
            if let Some((account, key)) = command.idempotency() {
                let replayed = events.iter().any(|event| matches!(event, BookEvent::IdempotentReplay { .. }));
                // The book's first decision of the key, as it remembered it (a malformed key is
                // refused without being remembered, and so is not written either).
                if let Some(remembered) = self.book.remembered(account, &key.key).filter(|_| !replayed) {
                    let hash = book::idempotency_key_hash(account, &key.key);
                    changes.put(&FIRST_REPLIES, first_reply_row(hash, Some(account), &remembered, position));
                }
            }
            for event in &events {
                match event {
                    BookEvent::AccountOpened { account, .. } | BookEvent::AccountRestricted { account } => {
                        touched_accounts.insert(*account);
                    }
                    BookEvent::LimitsChanged { account } => {
                        touched_accounts.insert(*account);
                        touched_limits.insert(*account);
                    }
                    BookEvent::Transferred(transfer) => {
                        touched_ledger.insert(transfer.debit);
                        touched_ledger.insert(transfer.credit);
                        self.transfer(position, transfer, changes)?;
                    }
                    BookEvent::BetPlaced { bet, status, .. } => {
                        touched_bets.insert(*bet);
                        whole_bets.insert(*bet);
                        changes.put(
                            &BET_HISTORY,
                            vec![
                                int(position),
                                Value::Int(ordinal),
                                int(bet.0),
                                int(at),
                                Value::constant(status.as_str()),
                                Value::Int(0),
                            ],
                        );
                        ordinal += 1;
                        match status {
                            BetStatus::Pending => {
                                self.pending_bets.insert(*bet);
                            }
                            BetStatus::Rejected => {}
                            _ => self.count_placed(*bet, changes),
                        }
                    }
                    BookEvent::BetStatusChanged { bet, status, payout, .. } => {
                        touched_bets.insert(*bet);
                        if self.pending_bets.contains(bet) {
                            whole_bets.insert(*bet);
                        }
                        changes.put(
                            &BET_HISTORY,
                            vec![
                                int(position),
                                Value::Int(ordinal),
                                int(bet.0),
                                int(at),
                                Value::constant(status.as_str()),
                                Value::Int(payout.minor()),
                            ],
                        );
                        ordinal += 1;
                        if *status != BetStatus::Pending
                            && self.pending_bets.remove(bet)
                            && *status != BetStatus::Rejected
                        {
                            self.count_placed(*bet, changes);
                        }
                    }
                    BookEvent::Alert(alert) => changes.put(&ALERTS, alert_row(alert, position)),
                    BookEvent::CaseChanged(summary) => changes.put(&CASES, case_row(summary, position)),
                    BookEvent::CaseActed { case, account, action, status } => {
                        changes.put(
                            &CASE_ACTIONS,
                            vec![
                                int(position),
                                Value::Int(action_ordinal),
                                int(case.0),
                                int(account.0),
                                Value::constant(action.action.as_str()),
                                Value::constant(action.by.kind()),
                                Value::from(action.by.id()),
                                Value::from(action.reason.clone()),
                                Value::from(action.note.clone()),
                                Value::from(action.reference.clone()),
                                Value::constant(status.as_str()),
                                int(action.at),
                            ],
                        );
                        action_ordinal += 1;
                    }
                    _ => {}
                }
            }
        }
        self.events = events;
        if digest != batch.reply_digest {
            return Err(ProjectorError::Diverged { position, recorded: batch.reply_digest, replayed: digest });
        }
        self.checkpoint.chain_head = chain_next(&self.checkpoint.chain_head, position, payload);
        self.checkpoint.next_position = position + 1;
        self.next_sequence += batch.commands.len() as u64;
        self.checkpoint.batches += 1;
        self.checkpoint.commands += batch.commands.len() as u64;
        let Some(changes) = changes else { return Ok(()) };
        for ledger in touched_ledger {
            self.check_mirror(position, ledger)?;
        }
        if feed {
            resulted_markets.extend(self.book.markets().iter().map(|market| market.id));
        }
        for market in resulted_markets {
            let Some(found) = self.book.market(market) else { continue };
            if self.settlement_versions.len() <= market.index() {
                self.settlement_versions.resize(market.index() + 1, 0);
            }
            if self.settlement_versions[market.index()] != found.settlement_version {
                self.settlement_versions[market.index()] = found.settlement_version;
                touched_bets.extend(found.bets.iter().copied());
            }
        }
        for bet in touched_bets {
            let whole = self.whole_bet_rows || whole_bets.contains(&bet) || self.pending_bets.contains(&bet);
            let bet = self.book.bet(bet).ok_or(ProjectorError::Missing { position, what: "bet" })?;
            if !whole {
                changes.put(&BET_SETTLEMENTS, bet_settlement_row(&bet, position));
                for (index, leg) in bet.legs.iter().enumerate() {
                    changes.put(&LEG_RESULTS, leg_result_row(bet.id, index, leg));
                }
                continue;
            }
            let currency = self.currency_of(bet.account);
            changes.put(&BETS, bet_row(&bet, currency, self.player_currency(bet.account), position));
            for (index, leg) in bet.legs.iter().enumerate() {
                changes.put(&BET_LEGS, leg_row(bet.id, index, leg));
            }
        }
        for account in touched_accounts {
            let player = self
                .book
                .players()
                .get(account.index())
                .ok_or(ProjectorError::Missing { position, what: "account" })?;
            changes.put(&ACCOUNTS, account_row(player, position));
            if touched_limits.contains(&account) || has_limits(player) {
                limit_rows(player, position, changes);
            }
        }
        changes.put(&CHECKPOINT, self.checkpoint.row());
        Ok(())
    }

    fn player_currency(&self, account: AccountId) -> Option<Currency> {
        self.book.players().get(account.index()).map(|player| player.currency)
    }

    fn currency_of(&self, account: AccountId) -> &'static str {
        self.book.players().get(account.index()).map_or("", |player| player.currency.static_code())
    }

    /// Counts an accepted bet in the report inputs of the day it was placed.
    fn count_placed(&self, bet: BetId, changes: &mut Changes) {
        let Some(bet) = self.book.bet(bet) else { return };
        let mut row = daily_row(bet.placed_at, self.currency_of(bet.account));
        row[2] = Value::Int(1);
        row[3] = Value::Int(bet.total_stake.minor());
        changes.add(&DAILY_TOTALS, row);
    }

    fn mirror_of(&mut self, ledger: LedgerAccountId) -> &mut Mirror {
        // Accounts the ledger opened since: they start at zero and every transfer on them is an
        // event we see in order.
        let accounts = self.book.ledger().accounts();
        while self.mirror.len() <= ledger.index() && self.mirror.len() < accounts.len() {
            let account = &accounts[self.mirror.len()];
            self.mirror.push(Mirror {
                kind: account.kind,
                currency: account.currency,
                posted: 0,
                debits_pending: 0,
                pending_stakes: 0,
            });
        }
        &mut self.mirror[ledger.index()]
    }

    fn check_mirror(&self, position: Position, ledger: LedgerAccountId) -> Result<(), ProjectorError> {
        let account = self.book.ledger().account(ledger);
        let mirror =
            self.mirror.get(ledger.index()).ok_or(ProjectorError::Missing { position, what: "ledger account" })?;
        if mirror.posted != account.posted_balance()
            || mirror.debits_pending != account.debits_pending
            || mirror.pending_stakes != account.debits_pending_stakes
        {
            return Err(ProjectorError::BalanceDiverged { position, ledger_account: ledger.0 });
        }
        Ok(())
    }

    fn transfer(
        &mut self,
        position: Position,
        transfer: &Transfer,
        changes: &mut Changes,
    ) -> Result<(), ProjectorError> {
        let amount = transfer.amount.minor();
        let is_stake = transfer.code == TransferCode::Stake;
        {
            let debit = self.mirror_of(transfer.debit);
            match transfer.kind {
                TransferKind::Posted => debit.posted -= amount,
                TransferKind::Pending => {
                    debit.debits_pending += amount;
                    if is_stake {
                        debit.pending_stakes += amount;
                    }
                }
                TransferKind::PostPending(_) | TransferKind::VoidPending(_) => {
                    debit.debits_pending -= amount;
                    if is_stake {
                        debit.pending_stakes -= amount;
                    }
                    if matches!(transfer.kind, TransferKind::PostPending(_)) {
                        debit.posted -= amount;
                    }
                }
            }
        }
        {
            let credit = self.mirror_of(transfer.credit);
            if matches!(transfer.kind, TransferKind::Posted | TransferKind::PostPending(_)) {
                credit.posted += amount;
            }
        }
        let currency = self.mirror[transfer.debit.index()].currency;
        let (status, pending) = match transfer.kind {
            TransferKind::Posted => ("posted", None),
            TransferKind::Pending => ("pending", None),
            TransferKind::PostPending(pending) => ("posts", Some(pending.0 as i64)),
            TransferKind::VoidPending(pending) => ("voids", Some(pending.0 as i64)),
        };
        let code = transfer.code.name();
        // Converted as the reports convert: with the rate recorded on the transfer's bet at
        // placement, else with the table's rate now (money not tied to a bet).
        let rate = match is_bet_code(transfer.code).then(|| self.book.bet(BetId(transfer.reference))).flatten() {
            Some(bet) => Some(bet.fx),
            None => self.book.fx().rate(currency),
        };
        let (fx_base, base_amount) = in_base(rate, transfer.amount, Some(currency));
        // The player's side of it, as their statement shows it (ledger accounts of two players
        // never meet in one transfer: the other side is the house's, the payment provider's or
        // the operator's, or the same player's debt).
        let bet = is_bet_code(transfer.code).then_some(transfer.reference as i64);
        let owner = |kind: AccountKind| match kind {
            AccountKind::PlayerCash(account) | AccountKind::PlayerDebt(account) => Some(account),
            _ => None,
        };
        let debit_owner = owner(self.mirror[transfer.debit.index()].kind);
        let credit_owner = owner(self.mirror[transfer.credit.index()].kind);
        let player = match (credit_owner, debit_owner) {
            (Some(credit), Some(debit)) if credit != debit => {
                return Err(ProjectorError::TwoPlayers { position, transfer: transfer.id.0 })
            }
            (Some(account), _) | (None, Some(account)) => {
                self.book.players().get(account.index()).map(|player| (account, player))
            }
            (None, None) => None,
        };
        let statement = match player {
            Some((account, player)) => {
                let cash = self.mirror.get(player.cash.index()).copied();
                let debt = self.mirror.get(player.debt.index()).map_or(0, |debt| debt.posted);
                let (posted, debits_pending, pending_stakes) =
                    cash.map_or((0, 0, 0), |cash| (cash.posted, cash.debits_pending, cash.pending_stakes));
                let sign = if credit_owner == Some(account) { 1 } else { -1 };
                [
                    int(account.0),
                    bet.into(),
                    Value::Int(sign * amount),
                    Value::Int(posted - pending_stakes),
                    Value::Int(posted - debits_pending),
                    Value::Int(pending_stakes),
                    Value::Int(-debt),
                ]
            }
            None => std::array::from_fn(|_| Value::Null),
        };
        let mut row = Vec::with_capacity(TRANSFERS.columns.len());
        row.extend([
            int(transfer.id.0),
            int(position),
            int(transfer.debit.0),
            int(transfer.credit.0),
            Value::constant(currency.static_code()),
            Value::Int(amount),
            Value::constant(code),
            Value::constant(status),
            pending.into(),
            int(transfer.reference),
            int(transfer.timestamp),
            fx_base,
            base_amount,
        ]);
        row.extend(statement);
        changes.put(&TRANSFERS, row);
        // Settlement money, on the terms of the GGR report (`gateway::compliance`).
        let posted = transfer.kind == TransferKind::Posted;
        let mut row = daily_row(transfer.timestamp, currency.static_code());
        let mut set = |column: usize, value: i64| row[column] = Value::Int(value);
        match (transfer.code, transfer.kind) {
            (TransferCode::Stake, TransferKind::PostPending(_)) => {
                set(4, 1);
                set(5, amount);
            }
            (TransferCode::Payout, _) if posted => set(6, amount),
            (TransferCode::Cashout, _) if posted => {
                set(6, amount);
                set(7, amount);
            }
            (TransferCode::PayoutReversal, _) if posted => set(9, amount),
            (TransferCode::DebtRecognised, _) if posted => {
                set(9, amount);
                set(10, amount);
            }
            (TransferCode::StakeReversal, _) if posted => {
                set(8, 1);
                set(11, amount);
            }
            _ => return Ok(()),
        }
        changes.add(&DAILY_TOTALS, row);
        Ok(())
    }
}

/// An `ALERTS` row.
fn alert_row(alert: &book::Alert, position: Position) -> Vec<Value> {
    vec![
        int(alert.id.0),
        int(alert.account.0),
        Value::constant(alert.rule.as_str()),
        Value::constant(alert.kind().as_str()),
        Value::Int(alert.value),
        Value::Int(alert.threshold),
        Value::constant(alert.currency.static_code()),
        int(alert.at),
        Value::from(alert.case.map(|case| case.0 as i64)),
        int(position),
    ]
}

/// A `CASES` row.
fn case_row(case: &book::CaseSummary, position: Position) -> Vec<Value> {
    vec![
        int(case.id.0),
        int(case.account.0),
        Value::constant(case.status.as_str()),
        int(case.opened_at),
        int(case.updated_at),
        Value::Int(i64::from(case.alerts_total)),
        Value::from(case.reference.clone()),
        int(position),
    ]
}

/// A `FIRST_REPLIES` row.
fn first_reply_row(hash: u128, account: Option<AccountId>, remembered: &Remembered, position: Position) -> Vec<Value> {
    let mut reply = Vec::new();
    remembered.reply.encode(&mut reply);
    vec![
        Value::from(key_hash_text(hash)),
        Value::from(account.map(|account| account.0 as i64)),
        Value::from(format!("{:016x}", remembered.body_hash)),
        int(position),
        int(remembered.at),
        Value::constant(match &remembered.reply {
            Ok(_) => "ok",
            Err(rejection) => rejection.code(),
        }),
        Value::from(hex::encode(reply)),
    ]
}

/// How `FIRST_REPLIES` spells an `idempotency_key_hash`: 32 hex digits.
pub fn key_hash_text(hash: u128) -> String {
    format!("{hash:032x}")
}

fn account_row(player: &book::Player, position: Position) -> Vec<Value> {
    let profile = player.profile.as_ref();
    vec![
        int(player.id.0),
        Value::constant(player.currency.static_code()),
        profile.map(|profile| profile.username.clone()).into(),
        profile.map(|profile| profile.country.clone()).into(),
        profile.map(|profile| profile.registered_at as i64).into(),
        player.frozen.into(),
        int(player.timed_out_until),
        int(player.excluded_until),
        player.stake_factor.to_string().into(),
        int(position),
    ]
}

/// A `DAILY_TOTALS` row of zeros for the day of `at`.
fn daily_row(at: u64, currency: &'static str) -> Vec<Value> {
    let mut row = vec![int(at / MILLIS_PER_DAY), Value::constant(currency)];
    row.resize(DAILY_TOTALS.columns.len(), Value::Int(0));
    row
}

pub fn bet_kind_name(kind: BetKind) -> &'static str {
    match kind {
        BetKind::Single => "single",
        BetKind::Multiple => "multiple",
        BetKind::System(system) => system.as_str(),
    }
}

/// `amount` in the rate's base currency, rounded up (`AppliedRate::to_base`), with that base:
/// nulls when there is no rate (or no currency).
fn in_base(rate: Option<AppliedRate>, amount: Money, currency: Option<Currency>) -> (Value, Value) {
    match (rate, currency) {
        (Some(rate), Some(currency)) => {
            (Value::constant(rate.base.static_code()), Value::Int(rate.to_base(amount, currency).minor()))
        }
        _ => (Value::Null, Value::Null),
    }
}

/// Whether any of the player's limit slots holds a limit or a pending change.
fn has_limits(player: &book::Player) -> bool {
    player.limits.iter().flatten().any(|slot| slot.current.is_some() || slot.pending.is_some())
}

/// The player's nine limit slots as `ACCOUNT_LIMITS` rows.
fn limit_rows(player: &book::Player, position: Position, changes: &mut Changes) {
    for kind in LimitKind::ALL {
        for period in Period::ALL {
            let slot = player.limits[kind.slot()][period.slot()];
            changes.put(
                &ACCOUNT_LIMITS,
                vec![
                    int(player.id.0),
                    Value::constant(kind.as_str()),
                    Value::constant(period.as_str()),
                    slot.current.map(Money::minor).into(),
                    slot.pending.is_some().into(),
                    slot.pending.and_then(|pending| pending.value).map(Money::minor).into(),
                    slot.pending.map(|pending| pending.effective_at as i64).into(),
                    int(position),
                ],
            );
        }
    }
}

/// The command as journaled, as a one-command batch in the codec's format (hex), with the
/// password, API key and TOTP secrets blanked: what the audit route renders.
pub fn audit_body(sequence: u64, at: u64, command: &Command) -> String {
    let blanked;
    let command = match command {
        Command::RegisterPlayer { username, password_hash: _, date_of_birth, country, currency } => {
            blanked = Command::RegisterPlayer {
                username: username.clone(),
                password_hash: String::new(),
                date_of_birth: *date_of_birth,
                country: country.clone(),
                currency: *currency,
            };
            &blanked
        }
        Command::CreateApiKey { name, key_hash: _, scopes } => {
            blanked = Command::CreateApiKey { name: name.clone(), key_hash: String::new(), scopes: *scopes };
            &blanked
        }
        Command::CreateStaff { username, password_hash: _, totp_secret: _, roles } => {
            blanked = Command::CreateStaff {
                username: username.clone(),
                password_hash: String::new(),
                totp_secret: String::new(),
                roles: *roles,
            };
            &blanked
        }
        other => other,
    };
    // The origin has its own columns; the body's is a placeholder.
    let origin = book::Origin::unrecorded();
    let mut out = Vec::new();
    encode_batch(sequence, at, 0, std::iter::once((command, &origin)), &mut out);
    hex::encode(out)
}

/// A command stored by [`audit_body`].
pub fn decode_audit_body(body: &str) -> Option<Command> {
    let bytes = hex::decode(body).ok()?;
    decode_batch(&bytes).ok()?.commands.into_iter().next()
}

fn bet_row(bet: &Bet, currency: &'static str, player_currency: Option<Currency>, position: Position) -> Vec<Value> {
    let (fx_base, base_stake) = in_base(Some(bet.fx), bet.total_stake, player_currency);
    vec![
        int(bet.id.0),
        int(bet.account.0),
        Value::constant(currency),
        Value::constant(bet_kind_name(bet.kind)),
        bet.each_way.into(),
        Value::Int(bet.stake_per_line.minor()),
        Value::Int(i64::from(bet.line_count)),
        Value::Int(bet.total_stake.minor()),
        Value::Int(bet.potential_payout.minor()),
        Value::constant(bet.policy.as_str()),
        Value::constant(bet.status.as_str()),
        Value::constant(bet.placed_status.as_str()),
        int(bet.placed_at),
        bet.delay_until.map(|at| at as i64).into(),
        bet.settlement.map(|settlement| settlement.at as i64).into(),
        bet.settlement.map(|settlement| settlement.payout.minor()).into(),
        Value::Int(i64::from(bet.settlement_count)),
        Value::constant_or_null(bet.rejection),
        int(position),
        fx_base,
        base_stake,
    ]
}

/// The columns of a `BETS` row an accepted bet can still change ([`BET_SETTLEMENTS`]), as
/// [`bet_row`] writes them.
fn bet_settlement_row(bet: &Bet, position: Position) -> Vec<Value> {
    vec![
        int(bet.id.0),
        Value::constant(bet.status.as_str()),
        bet.settlement.map(|settlement| settlement.at as i64).into(),
        bet.settlement.map(|settlement| settlement.payout.minor()).into(),
        Value::Int(i64::from(bet.settlement_count)),
        int(position),
    ]
}

/// A leg's result ([`LEG_RESULTS`]), as [`leg_row`] writes it.
fn leg_result_row(bet: BetId, index: usize, leg: &book::Leg) -> Vec<Value> {
    vec![
        int(bet.0),
        Value::Int(index as i64),
        Value::constant_or_null(leg.result.map(|result| result.outcome.as_str())),
        leg.result.map(|result| result.dead_heat.to_string()).into(),
        leg.result.map(|result| result.void_factor.to_string()).into(),
    ]
}

fn leg_row(bet: BetId, index: usize, leg: &book::Leg) -> Vec<Value> {
    vec![
        int(bet.0),
        Value::Int(index as i64),
        int(leg.selection.0),
        int(leg.market.0),
        int(leg.event.0),
        Value::Int(i64::from(leg.requested.scaled())),
        Value::Int(i64::from(leg.odds.scaled())),
        int(leg.price_version),
        Value::constant(leg.taken.as_str()),
        leg.each_way.map(|terms| i64::from(terms.places)).into(),
        leg.each_way.map(|terms| terms.fraction.to_string()).into(),
        Value::constant_or_null(leg.result.map(|result| result.outcome.as_str())),
        leg.result.map(|result| result.dead_heat.to_string()).into(),
        leg.result.map(|result| result.void_factor.to_string()).into(),
    ]
}

/// The transfer codes whose `reference` is a bet id.
pub fn is_bet_code(code: TransferCode) -> bool {
    matches!(
        code,
        TransferCode::Stake
            | TransferCode::Payout
            | TransferCode::Cashout
            | TransferCode::PayoutReversal
            | TransferCode::StakeReversal
            | TransferCode::DebtRecognised
    )
}

/// What an accepted command created or changed, as the API names it.
fn reply_reference(reply: &Reply) -> Option<String> {
    match reply.as_ref().ok()? {
        Ack::AccountOpened(account) => Some(account.to_string()),
        Ack::ApiKeyCreated(key) => Some(key.to_string()),
        Ack::StaffCreated(staff) => Some(staff.to_string()),
        Ack::Transfer(transfer) => Some(transfer.to_string()),
        Ack::EventCreated(event) => Some(event.to_string()),
        Ack::MarketCreated { market, .. } => Some(market.to_string()),
        Ack::BetPlaced { bet, .. } => Some(bet.to_string()),
        Ack::CashoutQuote { quote, .. } => Some(quote.to_string()),
        Ack::CashedOut { bet, .. } => Some(bet.to_string()),
        Ack::Settled { bets } => Some(format!("{bets} bets")),
        // The adjustment and, once done, the transfer that posted it.
        Ack::AdjustmentCompleted { adjustment, transfer } => Some(format!("{adjustment} {transfer}")),
        Ack::AdjustmentPending { adjustment, .. } => Some(adjustment.to_string()),
        Ack::Done | Ack::Feed(_) => None,
    }
}
