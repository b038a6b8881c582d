//! The book's running totals against the full history the read models keep (`sportsbook
//! verify`). The book is bounded: transfers leave it after the resettlement window and the
//! ledger keeps what they did as folded totals per account (`book::Ledger::folded`), so the
//! book alone can only check its totals against what it still holds. The `transfers` model
//! keeps every transfer ever made; summed per ledger account, it must give the book's running
//! totals exactly, and the last `statements` row of every player must show the book's wallet.
//!
//! Both sides must stand at the same journal position: the caller recovers the book to the
//! models' checkpoint. Models seeded from a snapshot (`Checkpoint::base_position` above 0) lack
//! the history before it and cannot be compared this way.

use std::collections::BTreeMap;

use book::{AccountKind, Book, Folded, LedgerAccount, LedgerAccountId};

use crate::schema::{Type, Value};
use crate::store::Store;
use crate::ProjectorError;

/// One figure on which the book and the read models disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The account, named for an operator: `led_7 (acc_3 cash, EUR)`.
    pub account: String,
    /// The figure: `debits_posted`, `balance_after`, ….
    pub figure: &'static str,
    /// What the book holds, in minor units.
    pub book: i64,
    /// What the read models' history sums to, in minor units.
    pub models: i64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{}: {} is {} in the book and {} in the read models (minor units)",
            self.account, self.figure, self.book, self.models
        )
    }
}

/// What [`compare`] looked at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Ledger accounts compared (every account of the book, and any the models name besides).
    pub ledger_accounts: usize,
    /// Players whose last statement was compared with their wallet.
    pub players: usize,
    /// Transfers in the models' history.
    pub transfers: i64,
    /// Transfers the book still holds (the rest left it and live on as folded totals).
    pub transfers_held: usize,
    pub mismatches: Vec<Mismatch>,
}

/// Every ledger account's totals as the `transfers` model sums them, by ledger account id
/// (an account no transfer touched is absent).
pub fn ledger_totals(store: &mut dyn Store) -> Result<BTreeMap<i64, Folded>, ProjectorError> {
    let mut totals: BTreeMap<i64, Folded> = BTreeMap::new();
    let debits = store.select_typed(
        "transfers",
        &[Type::Int, Type::Text, Type::Int, Type::Int],
        "SELECT debit, status, CAST(SUM(amount) AS BIGINT), \
         CAST(SUM(CASE WHEN code = 'stake' THEN amount ELSE 0 END) AS BIGINT) \
         FROM transfers GROUP BY debit, status",
        &[],
    )?;
    for row in debits {
        let (account, status, amount, stakes) = parse(&row)?;
        let totals = totals.entry(account).or_default();
        match status.as_str() {
            "posted" => totals.debits_posted += amount,
            "pending" => {
                totals.debits_pending += amount;
                totals.debits_pending_stakes += stakes;
            }
            "posts" | "voids" => {
                totals.debits_pending -= amount;
                totals.debits_pending_stakes -= stakes;
                if status == "posts" {
                    totals.debits_posted += amount;
                }
            }
            other => return Err(unknown_status(other)),
        }
    }
    let credits = store.select_typed(
        "transfers",
        &[Type::Int, Type::Text, Type::Int, Type::Int],
        "SELECT credit, status, CAST(SUM(amount) AS BIGINT), CAST(0 AS BIGINT) FROM transfers GROUP BY credit, status",
        &[],
    )?;
    for row in credits {
        let (account, status, amount, _) = parse(&row)?;
        let totals = totals.entry(account).or_default();
        match status.as_str() {
            "posted" => totals.credits_posted += amount,
            "pending" => totals.credits_pending += amount,
            "posts" | "voids" => {
                totals.credits_pending -= amount;
                if status == "posts" {
                    totals.credits_posted += amount;
                }
            }
            other => return Err(unknown_status(other)),
        }
    }
    Ok(totals)
}

fn unknown_status(status: &str) -> ProjectorError {
    ProjectorError::Store(format!("transfers: unknown status `{status}`"))
}

fn parse(row: &[Value]) -> Result<(i64, String, i64, i64), ProjectorError> {
    let bad = || ProjectorError::Store(format!("transfers: unreadable sum row {row:?}"));
    let int = |index: usize| row.get(index).and_then(Value::int).ok_or_else(bad);
    let status = row.get(1).and_then(Value::text).ok_or_else(bad)?.to_owned();
    Ok((int(0)?, status, int(2)?, int(3)?))
}

/// An operator's name for a ledger account.
fn account_name(account: &LedgerAccount) -> String {
    let owner = match account.kind {
        AccountKind::PlayerCash(player) => format!("{player} cash"),
        AccountKind::PlayerDebt(player) => format!("{player} debt"),
        AccountKind::House => "house".to_owned(),
        AccountKind::PaymentClearing => "payment clearing".to_owned(),
        AccountKind::Adjustments => "operator adjustments".to_owned(),
    };
    format!("{} ({owner}, {})", account.id, account.currency)
}

/// Compares `book` (recovered to the models' checkpoint) with the history in `store`: every
/// ledger account's five running totals with the sums of the `transfers` model, and every
/// player's wallet (balance, available, held stakes, debt) with their last `statements` row.
/// Reads the whole of both models (a scan each, grouped in the database): an offline check.
pub fn compare(store: &mut dyn Store, book: &Book) -> Result<Comparison, ProjectorError> {
    let mut summed = ledger_totals(store)?;
    let ledger = book.ledger();
    let mut comparison = Comparison { transfers_held: ledger.transfers().len(), ..Comparison::default() };
    let mut differ = |account: String, figure: &'static str, book: i64, models: i64| {
        if book != models {
            comparison.mismatches.push(Mismatch { account, figure, book, models });
        }
    };
    for account in ledger.accounts() {
        let models = summed.remove(&(account.id.0 as i64)).unwrap_or_default();
        let name = account_name(account);
        differ(name.clone(), "debits_posted", account.debits_posted, models.debits_posted);
        differ(name.clone(), "credits_posted", account.credits_posted, models.credits_posted);
        differ(name.clone(), "debits_pending", account.debits_pending, models.debits_pending);
        differ(name.clone(), "credits_pending", account.credits_pending, models.credits_pending);
        differ(name, "debits_pending_stakes", account.debits_pending_stakes, models.debits_pending_stakes);
    }
    let unknown = summed.len();
    for (id, models) in summed {
        let name = format!("{} (in the read models only)", LedgerAccountId(id as u64));
        differ(name.clone(), "debits_posted", 0, models.debits_posted);
        differ(name.clone(), "credits_posted", 0, models.credits_posted);
        differ(name.clone(), "debits_pending", 0, models.debits_pending);
        differ(name, "credits_pending", 0, models.credits_pending);
    }
    // Each player's wallet after the last transfer that touched them, as `statements` has it.
    let rows = store.select_typed(
        "statements",
        &[Type::Int, Type::Int, Type::Int, Type::Int, Type::Int],
        "SELECT s.account, s.balance_after, s.available_after, s.pending_stakes_after, s.debt_after \
         FROM statements s JOIN (SELECT account, MAX(transfer) AS last FROM statements GROUP BY account) m \
         ON s.account = m.account AND s.transfer = m.last",
        &[],
    )?;
    let mut last: BTreeMap<i64, [i64; 4]> = BTreeMap::new();
    for row in rows {
        let values: Option<Vec<i64>> = row.iter().map(Value::int).collect();
        let values = values.ok_or_else(|| ProjectorError::Store(format!("statements: unreadable row {row:?}")))?;
        last.insert(values[0], [values[1], values[2], values[3], values[4]]);
    }
    for player in book.players() {
        let cash = ledger.account(player.cash);
        let debt = ledger.account(player.debt);
        let wallet = [
            cash.posted_balance() - cash.debits_pending_stakes,
            cash.available(),
            cash.debits_pending_stakes,
            -debt.posted_balance(),
        ];
        let models = last.remove(&(player.id.0 as i64)).unwrap_or_default();
        let name = format!("{} ({} wallet, last statement)", player.id, player.currency);
        for (index, figure) in
            ["balance_after", "available_after", "pending_stakes_after", "debt_after"].into_iter().enumerate()
        {
            differ(name.clone(), figure, wallet[index], models[index]);
        }
    }
    for (account, models) in last {
        differ(format!("acc_{account} (in the read models only)"), "balance_after", 0, models[0]);
    }
    comparison.ledger_accounts = ledger.accounts().len() + unknown;
    comparison.players = book.players().len();
    let count = store.select_typed("transfers", &[Type::Int], "SELECT COUNT(*) FROM transfers", &[])?;
    comparison.transfers = count.first().and_then(|row| row.first()).and_then(Value::int).unwrap_or(0);
    Ok(comparison)
}
