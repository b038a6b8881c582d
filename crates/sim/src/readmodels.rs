//! What the read models must hold, predicted from the auditor alone, and the check of a
//! projector's store against it.
//!
//! The auditor logs every transfer it expects (with the player it concerns and the bet it
//! belongs to) and every status each bet took; the simulator keeps the commands that were
//! acknowledged with their outcomes. From those alone, and never from the book or the
//! projector, this module predicts:
//!
//! - `bets`: every bet exactly once, with its account, currency, kind, stake, lines, potential
//!   payout, policy, status, placement status and time, payout, settlement time and count and
//!   rejection; `bet_legs`: each leg's selection, market, event, prices, version and each-way
//!   terms;
//! - `bet_history`: each bet's statuses in order (placement first), with payout and time;
//! - `statements`: every transfer on a player's cash or debt, exactly once, with its code,
//!   status, signed amount, bet, and the wallet after it, computed here transfer by transfer
//!   from the transfer's movement (the auditor's running balance). At the end of the log these
//!   running balances must equal the auditor's own wallets, and each player's last row must
//!   equal the wallet the book reports; `transfers`: every transfer's code, status, amount,
//!   currency, time, player, signed amount and (for bet transfers) bet (the statements are a
//!   view of `transfers` since the projector's migration 8: checked as both);
//! - `audit`: one row per acknowledged command, in order, with its time, kind, account and
//!   outcome (the sequencer's own ticks aside);
//! - `daily_totals`: turnover and GGR inputs per UTC day and currency, summed here;
//! - `accounts`: currency, freeze, time-out and exclusion ends, stake factor.
//!
//! A difference is reported with the table and the row, the first few of each kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use book::{BetStatus, TransferCode, Wallet};
use projector::schema::{
    Table, Value, ACCOUNTS, AUDIT, BETS, BET_HISTORY, BET_LEGS, DAILY_TOTALS, STATEMENTS, TRANSFERS,
};
use projector::Store;

use crate::auditor::{Auditor, Movement};

const DAY_MS: u64 = 86_400_000;
/// Differences listed per table before the rest are only counted.
const DIFFERENCES_SHOWN: usize = 4;

/// One ledger transfer the auditor expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoggedTransfer {
    /// The ledger's transfer id (they count from 1).
    pub id: u64,
    /// The player whose cash or debt account it moves.
    pub account: u64,
    pub bet: Option<u64>,
    pub code: TransferCode,
    pub movement: Movement,
    pub amount: i64,
    /// Book time.
    pub at: u64,
}

/// What the auditor has seen happen, for the read models.
#[derive(Clone, Debug, Default)]
pub struct Log {
    pub transfers: Vec<LoggedTransfer>,
    /// Per bet (index = id - 1): every status it took, with the payout and the book time.
    pub history: Vec<Vec<(BetStatus, i64, u64)>>,
}

/// One acknowledged command as the audit view must show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: u64,
    pub command: &'static str,
    pub account: Option<u64>,
    /// `ok` or the rejection's code.
    pub outcome: &'static str,
}

/// What a check compared.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checked {
    pub rows: u64,
}

/// A player's money as the statements track it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Buckets {
    cash: i64,
    pending_stakes: i64,
    pending_withdrawals: i64,
    pending_deposits: i64,
    debt: i64,
}

impl Buckets {
    /// The rules of each movement on a player's money, stated once here.
    fn apply(&mut self, code: TransferCode, movement: Movement, amount: i64) -> Result<(), String> {
        use Movement::{Hold, PostHold, Posted, VoidHold};
        use TransferCode::*;
        match (code, movement) {
            (Deposit | Payout | Cashout | StakeReversal | AdjustmentCredit, Posted) => self.cash += amount,
            (PayoutReversal | AdjustmentDebit, Posted) => self.cash -= amount,
            (DebtRecognised, Posted) => self.debt += amount,
            (DebtRepaid, Posted) => {
                self.cash -= amount;
                self.debt -= amount;
            }
            (Chargeback, Posted) => self.cash -= amount,
            (ChargebackDebt, Posted) => self.debt += amount,
            (Deposit, Hold) => self.pending_deposits += amount,
            (Deposit, VoidHold) => self.pending_deposits -= amount,
            (Deposit, PostHold) => {
                self.pending_deposits -= amount;
                self.cash += amount;
            }
            (Withdrawal, Hold) => self.pending_withdrawals += amount,
            (Withdrawal, VoidHold) => self.pending_withdrawals -= amount,
            (Withdrawal, PostHold) => {
                self.pending_withdrawals -= amount;
                self.cash -= amount;
            }
            (Stake, Hold) => self.pending_stakes += amount,
            (Stake, VoidHold) => self.pending_stakes -= amount,
            (Stake, PostHold) => {
                self.pending_stakes -= amount;
                self.cash -= amount;
            }
            other => return Err(format!("the model logged a transfer no rule covers: {other:?}")),
        }
        Ok(())
    }

    fn balance(&self) -> i64 {
        self.cash - self.pending_stakes
    }

    fn available(&self) -> i64 {
        self.cash - self.pending_stakes - self.pending_withdrawals
    }
}

/// The amount as the player's statement shows it: credits to the player's cash or debt
/// positive. A debt repayment moves money between the player's own two accounts and shows as
/// the credit to the debt.
fn signed(code: TransferCode, amount: i64) -> i64 {
    match code {
        TransferCode::Deposit
        | TransferCode::Payout
        | TransferCode::Cashout
        | TransferCode::StakeReversal
        | TransferCode::DebtRepaid
        | TransferCode::AdjustmentCredit => amount,
        TransferCode::Withdrawal
        | TransferCode::Stake
        | TransferCode::PayoutReversal
        | TransferCode::DebtRecognised
        | TransferCode::AdjustmentDebit
        | TransferCode::Chargeback
        | TransferCode::ChargebackDebt => -amount,
    }
}

fn status_name(movement: Movement) -> &'static str {
    match movement {
        Movement::Posted => "posted",
        Movement::Hold => "pending",
        Movement::PostHold => "posts",
        Movement::VoidHold => "voids",
    }
}

fn int(value: u64) -> Value {
    Value::Int(value as i64)
}

/// Rows of a table reduced to `columns`, keyed by the first `key` of them.
type Keyed = BTreeMap<Vec<Value>, Vec<Value>>;

fn project(table: &Table, rows: &[Vec<Value>], columns: &[&str], key: usize) -> Result<Keyed, String> {
    let indexes: Vec<usize> = columns.iter().map(|name| table.index_of(name)).collect();
    let mut keyed = Keyed::new();
    for row in rows {
        let projected: Vec<Value> = indexes.iter().map(|&index| row[index].clone()).collect();
        if keyed.insert(projected[..key].to_vec(), projected.clone()).is_some() {
            return Err(format!("read model {}: two rows for key {:?}", table.name, &projected[..key]));
        }
    }
    Ok(keyed)
}

/// Compares predicted and stored rows of one table; appends what differs to `problems`.
fn compare(table: &str, columns: &[&str], expected: &Keyed, found: &Keyed, problems: &mut Vec<String>) {
    let mut lines = Vec::new();
    let mut count = 0usize;
    let mut note = |line: String| {
        count += 1;
        if count <= DIFFERENCES_SHOWN {
            lines.push(line);
        }
    };
    for (key, row) in expected {
        match found.get(key) {
            None => note(format!("missing {key:?}: expected {row:?}")),
            Some(stored) if stored != row => {
                let differing: Vec<String> = columns
                    .iter()
                    .zip(row.iter().zip(stored))
                    .filter(|(_, (want, have))| want != have)
                    .map(|(name, (want, have))| format!("{name} = {have:?}, expected {want:?}"))
                    .collect();
                note(format!("row {key:?}: {}", differing.join(", ")));
            }
            Some(_) => {}
        }
    }
    for (key, row) in found {
        if !expected.contains_key(key) {
            note(format!("unexpected row {row:?}"));
        }
    }
    if count > 0 {
        let mut text = format!("read model {table}: {count} rows differ from the auditor's prediction");
        for line in lines {
            let _ = write!(text, "\n    {line}");
        }
        problems.push(text);
    }
}

fn rows(store: &mut dyn Store, table: &Table) -> Result<Vec<Vec<Value>>, String> {
    store.rows(table).map_err(|error| format!("read model {}: cannot read: {error}", table.name))
}

/// Checks every read model of `store` against the auditor's prediction. `acknowledged` is the
/// audit trail the simulator expects (every acknowledged command, in order); `wallets` the
/// book's wallet of each account (index = id - 1), as the API reports them.
pub fn check(
    store: &mut dyn Store,
    auditor: &Auditor,
    acknowledged: &[AuditEntry],
    wallets: &[Option<Wallet>],
) -> Result<Checked, String> {
    let mut problems = Vec::new();
    let mut checked = Checked::default();
    let currency = |account: u64| {
        auditor
            .players
            .get((account as usize).wrapping_sub(1))
            .map_or_else(String::new, |player| player.currency.to_string())
    };

    // ---- statements and transfers, with the running balances -------------------------------
    let mut buckets: BTreeMap<u64, Buckets> = BTreeMap::new();
    let statement_columns = [
        "account",
        "transfer",
        "at",
        "code",
        "status",
        "amount",
        "bet",
        "balance_after",
        "available_after",
        "pending_stakes_after",
        "debt_after",
    ];
    // Since migration 8 the statements are a view of `transfers`: the player's side of each
    // transfer is checked there too, on the table itself.
    let transfer_columns = ["id", "currency", "amount", "code", "status", "at", "account", "bet", "signed_amount"];
    let mut statements = Keyed::new();
    let mut transfers = Keyed::new();
    let mut bet_references = BTreeMap::new();
    for (index, logged) in auditor.log.transfers.iter().enumerate() {
        if logged.id != index as u64 + 1 {
            return Err(format!("the model's transfer log is out of order at transfer {}", logged.id));
        }
        let money = buckets.entry(logged.account).or_default();
        money.apply(logged.code, logged.movement, logged.amount)?;
        let row = vec![
            int(logged.account),
            int(logged.id),
            int(logged.at),
            logged.code.name().into(),
            status_name(logged.movement).into(),
            Value::Int(signed(logged.code, logged.amount)),
            logged.bet.map(|bet| bet as i64).into(),
            Value::Int(money.balance()),
            Value::Int(money.available()),
            Value::Int(money.pending_stakes),
            Value::Int(money.debt),
        ];
        statements.insert(row[..2].to_vec(), row);
        let row = vec![
            int(logged.id),
            currency(logged.account).into(),
            Value::Int(logged.amount),
            logged.code.name().into(),
            status_name(logged.movement).into(),
            int(logged.at),
            int(logged.account),
            logged.bet.map(|bet| bet as i64).into(),
            Value::Int(signed(logged.code, logged.amount)),
        ];
        transfers.insert(row[..1].to_vec(), row);
        if let Some(bet) = logged.bet {
            bet_references.insert(logged.id, bet);
        }
    }
    // The running balances end where the auditor's wallets are.
    for player in &auditor.players {
        let money = buckets.get(&player.id).copied().unwrap_or_default();
        let model = Buckets {
            cash: player.cash,
            pending_stakes: player.pending_stakes,
            pending_withdrawals: player.pending_withdrawals,
            pending_deposits: player.pending_deposits,
            debt: player.debt,
        };
        if money != model {
            problems.push(format!(
                "the statement of account {} runs to {money:?}, the auditor's wallet is {model:?}",
                player.id
            ));
        }
    }
    let stored = rows(store, &STATEMENTS)?;
    checked.rows += stored.len() as u64;
    let found = project(&STATEMENTS, &stored, &statement_columns, 2)?;
    compare("statements", &statement_columns, &statements, &found, &mut problems);
    // The last row of each statement is the wallet the book reports.
    let mut last: BTreeMap<i64, &Vec<Value>> = BTreeMap::new();
    for row in found.values() {
        if let (Some(account), Some(transfer)) = (row[0].int(), row[1].int()) {
            let newer = last.get(&account).is_none_or(|previous| previous[1].int() < Some(transfer));
            if newer {
                last.insert(account, row);
            }
        }
    }
    for (index, wallet) in wallets.iter().enumerate() {
        let Some(wallet) = wallet else { continue };
        let account = index as i64 + 1;
        let reported =
            [wallet.balance.minor(), wallet.available.minor(), wallet.pending_stakes.minor(), wallet.debt.minor()];
        let stated =
            last.get(&account).map_or([0; 4], |row| [7, 8, 9, 10].map(|column| row[column].int().unwrap_or(i64::MIN)));
        if stated != reported {
            problems.push(format!(
                "read model statements: account {account} ends at (balance, available, pending stakes, debt) \
                 {stated:?}, the book's wallet is {reported:?}"
            ));
        }
    }
    let stored = rows(store, &TRANSFERS)?;
    checked.rows += stored.len() as u64;
    let found = project(&TRANSFERS, &stored, &transfer_columns, 1)?;
    compare("transfers", &transfer_columns, &transfers, &found, &mut problems);
    let reference = TRANSFERS.index_of("reference");
    for row in &stored {
        let Some(id) = row[0].int() else { continue };
        if let Some(&bet) = bet_references.get(&(id as u64)) {
            if row[reference].int() != Some(bet as i64) {
                problems
                    .push(format!("read model transfers: transfer {id} refers to {:?}, not bet {bet}", row[reference]));
            }
        }
    }

    // ---- bets, legs, history ---------------------------------------------------------------
    let bet_columns = [
        "id",
        "account",
        "currency",
        "kind",
        "each_way",
        "stake_per_line",
        "line_count",
        "total_stake",
        "potential_payout",
        "policy",
        "status",
        "placed_status",
        "placed_at",
        "settled_at",
        "payout",
        "settlement_count",
        "rejection",
    ];
    let leg_columns = [
        "bet",
        "leg",
        "selection",
        "market",
        "event",
        "requested_odds",
        "odds",
        "price_version",
        "each_way_places",
        "each_way_fraction",
    ];
    let mut bets = Keyed::new();
    let mut legs = Keyed::new();
    let mut history = Keyed::new();
    for bet in &auditor.bets {
        let statuses = auditor.log.history.get(bet.id as usize - 1).map_or(&[][..], Vec::as_slice);
        let Some(&(placed_status, _, _)) = statuses.first() else {
            return Err(format!("the model has no placement of bet {}", bet.id));
        };
        let settled_at = bet.payout.and_then(|_| statuses.last()).map(|(_, _, at)| *at as i64);
        let row = vec![
            int(bet.id),
            int(bet.account),
            currency(bet.account).into(),
            projector::follower::bet_kind_name(bet.kind).into(),
            bet.each_way.into(),
            Value::Int(bet.stake_per_line),
            Value::Int(i64::from(bet.line_count)),
            Value::Int(bet.total_stake),
            Value::Int(bet.potential_payout),
            bet.policy.as_str().into(),
            bet.status.as_str().into(),
            placed_status.as_str().into(),
            int(bet.placed_at),
            settled_at.into(),
            bet.payout.into(),
            Value::Int(i64::from(bet.settlements)),
            bet.rejection.into(),
        ];
        bets.insert(row[..1].to_vec(), row);
        for (index, leg) in bet.legs.iter().enumerate() {
            let row = vec![
                int(bet.id),
                Value::Int(index as i64),
                int(leg.selection),
                int(leg.market),
                int(leg.event),
                Value::Int(i64::from(leg.requested)),
                Value::Int(i64::from(leg.odds)),
                int(leg.version),
                leg.terms.map(|terms| i64::from(terms.places)).into(),
                leg.terms.map(|terms| terms.fraction.to_string()).into(),
            ];
            legs.insert(row[..2].to_vec(), row);
        }
        for (ordinal, (status, payout, at)) in statuses.iter().enumerate() {
            let row =
                vec![int(bet.id), Value::Int(ordinal as i64), status.as_str().into(), Value::Int(*payout), int(*at)];
            history.insert(row[..2].to_vec(), row);
        }
    }
    let stored = rows(store, &BETS)?;
    checked.rows += stored.len() as u64;
    compare("bets", &bet_columns, &bets, &project(&BETS, &stored, &bet_columns, 1)?, &mut problems);
    let stored = rows(store, &BET_LEGS)?;
    checked.rows += stored.len() as u64;
    compare("bet_legs", &leg_columns, &legs, &project(&BET_LEGS, &stored, &leg_columns, 2)?, &mut problems);
    // The history is stored by journal position; the model knows each bet's order of events.
    let mut stored = rows(store, &BET_HISTORY)?;
    checked.rows += stored.len() as u64;
    let (position, ordinal) = (BET_HISTORY.index_of("position"), BET_HISTORY.index_of("ordinal"));
    stored.sort_by(|a, b| (&a[position], &a[ordinal]).cmp(&(&b[position], &b[ordinal])));
    let mut per_bet: BTreeMap<i64, i64> = BTreeMap::new();
    let history_columns = ["bet", "ordinal", "status", "payout", "at"];
    let (bet_column, status_column, payout_column, at_column) = (
        BET_HISTORY.index_of("bet"),
        BET_HISTORY.index_of("status"),
        BET_HISTORY.index_of("payout"),
        BET_HISTORY.index_of("at"),
    );
    let mut found = Keyed::new();
    for row in &stored {
        let bet = row[bet_column].int().unwrap_or(-1);
        let next = per_bet.entry(bet).or_default();
        let projected = vec![
            row[bet_column].clone(),
            Value::Int(*next),
            row[status_column].clone(),
            row[payout_column].clone(),
            row[at_column].clone(),
        ];
        *next += 1;
        found.insert(projected[..2].to_vec(), projected);
    }
    compare("bet_history", &history_columns, &history, &found, &mut problems);

    // ---- the audit view --------------------------------------------------------------------
    let mut stored = rows(store, &AUDIT)?;
    checked.rows += stored.len() as u64;
    let (position, ordinal) = (AUDIT.index_of("position"), AUDIT.index_of("ordinal"));
    stored.sort_by(|a, b| (&a[position], &a[ordinal]).cmp(&(&b[position], &b[ordinal])));
    let audit_columns = ["n", "at", "command", "account", "outcome"];
    let (at, command, account, outcome) =
        (AUDIT.index_of("at"), AUDIT.index_of("command"), AUDIT.index_of("account"), AUDIT.index_of("outcome"));
    let found: Keyed = stored
        .iter()
        .filter(|row| row[command] != Value::from("tick"))
        .enumerate()
        .map(|(index, row)| {
            let projected = vec![
                Value::Int(index as i64),
                row[at].clone(),
                row[command].clone(),
                row[account].clone(),
                row[outcome].clone(),
            ];
            (projected[..1].to_vec(), projected)
        })
        .collect();
    let expected: Keyed = acknowledged
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let row = vec![
                Value::Int(index as i64),
                int(entry.at),
                entry.command.into(),
                entry.account.map(|account| account as i64).into(),
                entry.outcome.into(),
            ];
            (row[..1].to_vec(), row)
        })
        .collect();
    compare("audit", &audit_columns, &expected, &found, &mut problems);

    // ---- report inputs ---------------------------------------------------------------------
    let mut totals: BTreeMap<(u64, String), [i64; 10]> = BTreeMap::new();
    let mut add = |at: u64, account: u64, column: usize, value: i64| {
        totals.entry((at / DAY_MS, currency(account))).or_default()[column] += value;
    };
    for bet in &auditor.bets {
        if !matches!(bet.status, BetStatus::Pending | BetStatus::Rejected) {
            add(bet.placed_at, bet.account, 0, 1);
            add(bet.placed_at, bet.account, 1, bet.total_stake);
        }
    }
    for logged in &auditor.log.transfers {
        let (at, account, amount) = (logged.at, logged.account, logged.amount);
        match (logged.code, logged.movement) {
            (TransferCode::Stake, Movement::PostHold) => {
                add(at, account, 2, 1);
                add(at, account, 3, amount);
            }
            (TransferCode::Payout, Movement::Posted) => add(at, account, 4, amount),
            (TransferCode::Cashout, Movement::Posted) => {
                add(at, account, 4, amount);
                add(at, account, 5, amount);
            }
            (TransferCode::StakeReversal, Movement::Posted) => {
                add(at, account, 6, 1);
                add(at, account, 9, amount);
            }
            (TransferCode::PayoutReversal, Movement::Posted) => add(at, account, 7, amount),
            (TransferCode::DebtRecognised, Movement::Posted) => {
                add(at, account, 7, amount);
                add(at, account, 8, amount);
            }
            _ => {}
        }
    }
    let total_columns = [
        "day",
        "currency",
        "bets_placed",
        "stakes_placed",
        "settlements",
        "stakes_settled",
        "payouts",
        "cashouts",
        "reversals",
        "payouts_reversed",
        "recognised_as_debt",
        "stakes_reversed",
    ];
    let expected: Keyed = totals
        .into_iter()
        .map(|((day, currency), sums)| {
            let mut row = vec![int(day), Value::from(currency)];
            row.extend(sums.iter().map(|sum| Value::Int(*sum)));
            (row[..2].to_vec(), row)
        })
        .collect();
    let stored = rows(store, &DAILY_TOTALS)?;
    checked.rows += stored.len() as u64;
    compare(
        "daily_totals",
        &total_columns,
        &expected,
        &project(&DAILY_TOTALS, &stored, &total_columns, 2)?,
        &mut problems,
    );

    // ---- accounts --------------------------------------------------------------------------
    let account_columns = ["id", "currency", "frozen", "timed_out_until", "excluded_until", "stake_factor"];
    let expected: Keyed = auditor
        .players
        .iter()
        .map(|player| {
            let row = vec![
                int(player.id),
                player.currency.to_string().into(),
                player.frozen.into(),
                int(player.timed_out_until),
                int(player.excluded_until),
                player.stake_factor.to_string().into(),
            ];
            (row[..1].to_vec(), row)
        })
        .collect();
    let stored = rows(store, &ACCOUNTS)?;
    checked.rows += stored.len() as u64;
    compare("accounts", &account_columns, &expected, &project(&ACCOUNTS, &stored, &account_columns, 1)?, &mut problems);

    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems.join("\n  "))
    }
}
