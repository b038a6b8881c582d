//! The conformance suite: the same workload, projected into each store, read back and compared
//! with what the engine's book says: every bet and leg, every transfer, every balance after a
//! transfer (recomputed here from the book's transfer log, and the last one equal to the book's
//! wallet), every command's outcome, the report inputs and the accounts. Both stores must give
//! the same models, byte for byte in the dump.

use std::collections::BTreeMap;

use book::{AccountKind, BetKind, BetStatus, Book, LedgerAccountId, TransferCode, TransferKind, MILLIS_PER_DAY};
use projector::schema::{
    Table, Value, ACCOUNTS, ALERTS, AUDIT, BETS, BET_HISTORY, BET_LEGS, CASES, CHECKPOINT, DAILY_TOTALS, FIRST_REPLIES,
    STATEMENTS, TRANSFERS,
};
use projector::{digest_paged, dump, Changes, Checkpoint, PostgresStore, Store, DIGEST_ROWS_PER_PAGE};
use sha2::{Digest, Sha256};

use crate::{finished, open_store, postgres_schema, project, Backend, POSTGRES_URL};

fn get<'a>(table: &Table, row: &'a [Value], column: &str) -> &'a Value {
    &row[table.index_of(column)]
}

fn int(table: &Table, row: &[Value], column: &str) -> i64 {
    get(table, row, column).int().unwrap_or_else(|| panic!("{}.{column} is not an integer: {row:?}", table.name))
}

fn text<'a>(table: &Table, row: &'a [Value], column: &str) -> &'a str {
    get(table, row, column).text().unwrap_or_else(|| panic!("{}.{column} is not text: {row:?}", table.name))
}

fn opt_int(table: &Table, row: &[Value], column: &str) -> Option<i64> {
    match get(table, row, column) {
        Value::Null => None,
        value => Some(value.int().expect("integer")),
    }
}

/// `history`: the models began at position 0 (seeded models have no history before their
/// snapshot).
pub fn check_bets(store: &mut dyn Store, book: &Book, history: bool) {
    let rows = store.rows(&BETS).expect("bets");
    assert_eq!(rows.len(), book.bets().len(), "one row per bet");
    let t = &BETS;
    for (row, bet) in rows.iter().zip(book.bets()) {
        assert_eq!(int(t, row, "id") as u64, bet.id.0);
        assert_eq!(int(t, row, "account") as u64, bet.account.0, "{}", bet.id);
        assert_eq!(text(t, row, "status"), bet.status.as_str(), "{}", bet.id);
        assert_eq!(text(t, row, "placed_status"), bet.placed_status.as_str(), "{}", bet.id);
        assert_eq!(int(t, row, "total_stake"), bet.total_stake.minor(), "{}", bet.id);
        assert_eq!(int(t, row, "stake_per_line"), bet.stake_per_line.minor(), "{}", bet.id);
        assert_eq!(int(t, row, "potential_payout"), bet.potential_payout.minor(), "{}", bet.id);
        assert_eq!(int(t, row, "placed_at") as u64, bet.placed_at, "{}", bet.id);
        assert_eq!(opt_int(t, row, "payout"), bet.settlement.map(|s| s.payout.minor()), "{}", bet.id);
        assert_eq!(opt_int(t, row, "settled_at"), bet.settlement.map(|s| s.at as i64), "{}", bet.id);
        assert_eq!(int(t, row, "settlement_count"), i64::from(bet.settlement_count), "{}", bet.id);
        let kind = match bet.kind {
            BetKind::Single => "single",
            BetKind::Multiple => "multiple",
            BetKind::System(system) => system.as_str(),
        };
        assert_eq!(text(t, row, "kind"), kind);
    }
    let legs = store.rows(&BET_LEGS).expect("legs");
    let expected: Vec<(u64, usize, book::Leg)> = book
        .bets()
        .iter()
        .flat_map(|bet| bet.legs.iter().cloned().enumerate().map(|(i, leg)| (bet.id.0, i, leg)).collect::<Vec<_>>())
        .collect();
    assert_eq!(legs.len(), expected.len(), "one row per leg");
    let t = &BET_LEGS;
    for (row, (bet, index, leg)) in legs.iter().zip(expected) {
        assert_eq!((int(t, row, "bet") as u64, int(t, row, "leg") as usize), (bet, index));
        assert_eq!(int(t, row, "selection") as u64, leg.selection.0);
        assert_eq!(int(t, row, "market") as u64, leg.market.0);
        assert_eq!(int(t, row, "odds"), i64::from(leg.odds.scaled()));
        let result = get(t, row, "result").text().map(str::to_owned);
        assert_eq!(result, leg.result.map(|result| result.outcome.as_str().to_owned()), "bet_{bet} leg {index}");
    }
    if !history {
        return;
    }
    // Every bet's history begins with its placement and ends with its status now.
    let history = store.rows(&BET_HISTORY).expect("history");
    let t = &BET_HISTORY;
    let mut by_bet: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for row in &history {
        by_bet.entry(int(t, row, "bet")).or_default().push(text(t, row, "status"));
    }
    assert_eq!(by_bet.len(), book.bets().len(), "every bet has a history");
    for bet in book.bets() {
        let statuses = &by_bet[&(bet.id.0 as i64)];
        assert_eq!(statuses[0], bet.placed_status.as_str(), "{} placement", bet.id);
        assert_eq!(*statuses.last().expect("one"), bet.status.as_str(), "{} history ends at its status", bet.id);
        assert!(statuses.len() as u32 > bet.settlement_count, "{}: every settlement is in its history", bet.id);
    }
}

/// A ledger account's running totals, recomputed here from the transfer log.
#[derive(Clone, Copy, Default)]
struct Totals {
    posted: i64,
    pending: i64,
    stakes: i64,
}

/// The transfers the models must hold and the balances before the first of them: every
/// transfer the book made from where the models begin (genesis, or the snapshot they were
/// seeded from: the transfers its book held, on top of what had left its ledger), in id order.
/// The book itself no longer keeps them all (a settled bet's transfers leave it at once), so
/// they are collected from the `Transferred` events of a replay of the journal.
pub struct TransferHistory {
    pub transfers: Vec<book::Transfer>,
    pub opening: Vec<book::Folded>,
}

impl TransferHistory {
    /// Replays the journal of `data` from `start` (a book and its position; genesis if `None`)
    /// to its end.
    pub fn replay(data: &std::path::Path, start: Option<(journal::Position, Book)>) -> TransferHistory {
        let (position, mut book) = start.unwrap_or_else(|| (0, Book::new(book::Config::default())));
        let opening = book.ledger().folded().to_vec();
        let mut transfers: Vec<book::Transfer> = book.ledger().transfers().iter().cloned().collect();
        let mut cursor = projector::reader::JournalCursor::with_archive(
            &projector::journal_dir(data),
            position,
            Some(&data.join("archive")),
        );
        let mut events = Vec::new();
        let mut visit = |_position: journal::Position, payload: &[u8]| {
            let batch = codec::decode_batch(payload).expect("a batch");
            for command in &batch.commands {
                events.clear();
                let _ = book.apply(batch.timestamp, command, &mut events);
                transfers.extend(events.iter().filter_map(|event| match event {
                    book::BookEvent::Transferred(transfer) => Some(transfer.clone()),
                    _ => None,
                }));
            }
            Ok(projector::reader::Flow::Continue)
        };
        while cursor.poll(&mut visit).expect("the journal").records > 0 {}
        TransferHistory { transfers, opening }
    }

    /// From the genesis of the journal of `data`.
    pub fn of(data: &std::path::Path) -> TransferHistory {
        TransferHistory::replay(data, None)
    }
}

pub fn check_transfers_and_statements(store: &mut dyn Store, book: &Book, history: &TransferHistory) {
    let ledger = book.ledger();
    let rows = store.rows(&TRANSFERS).expect("transfers");
    assert_eq!(rows.len(), history.transfers.len(), "one row per transfer");
    let t = &TRANSFERS;
    for (row, transfer) in rows.iter().zip(&history.transfers) {
        assert_eq!(int(t, row, "id") as u64, transfer.id.0);
        assert_eq!(int(t, row, "amount"), transfer.amount.minor());
        assert_eq!(int(t, row, "debit") as u64, transfer.debit.0);
        assert_eq!(int(t, row, "credit") as u64, transfer.credit.0);
        assert_eq!(int(t, row, "at") as u64, transfer.timestamp);
        assert_eq!(int(t, row, "reference") as u64, transfer.reference);
    }

    let mut totals: BTreeMap<LedgerAccountId, Totals> = history
        .opening
        .iter()
        .enumerate()
        .map(|(index, folded)| {
            let totals = Totals {
                posted: folded.credits_posted - folded.debits_posted,
                pending: folded.debits_pending,
                stakes: folded.debits_pending_stakes,
            };
            (LedgerAccountId(index as u64 + 1), totals)
        })
        .collect();
    let mut expected = Vec::new();
    for transfer in &history.transfers {
        let amount = transfer.amount.minor();
        let stake = transfer.code == TransferCode::Stake;
        let debit = totals.entry(transfer.debit).or_default();
        match transfer.kind {
            TransferKind::Posted => debit.posted -= amount,
            TransferKind::Pending => {
                debit.pending += amount;
                debit.stakes += if stake { amount } else { 0 };
            }
            TransferKind::PostPending(_) => {
                debit.pending -= amount;
                debit.stakes -= if stake { amount } else { 0 };
                debit.posted -= amount;
            }
            TransferKind::VoidPending(_) => {
                debit.pending -= amount;
                debit.stakes -= if stake { amount } else { 0 };
            }
        }
        if matches!(transfer.kind, TransferKind::Posted | TransferKind::PostPending(_)) {
            totals.entry(transfer.credit).or_default().posted += amount;
        }
        let owner = |id: LedgerAccountId| match ledger.account(id).kind {
            AccountKind::PlayerCash(account) | AccountKind::PlayerDebt(account) => Some(account),
            _ => None,
        };
        let mut owners = vec![];
        for account in [owner(transfer.credit), owner(transfer.debit)].into_iter().flatten() {
            if !owners.contains(&account) {
                owners.push(account);
            }
        }
        for account in owners {
            let player = &book.players()[account.index()];
            let cash = totals.get(&player.cash).copied().unwrap_or_default();
            let debt = totals.get(&player.debt).copied().unwrap_or_default();
            let sign = if owner(transfer.credit) == Some(account) { 1 } else { -1 };
            expected.push((
                account.0 as i64,
                transfer.id.0 as i64,
                sign * amount,
                cash.posted - cash.stakes,
                cash.posted - cash.pending,
                cash.stakes,
                -debt.posted,
            ));
        }
    }
    expected.sort();
    let t = &STATEMENTS;
    let statements: Vec<_> = store
        .rows(&STATEMENTS)
        .expect("statements")
        .iter()
        .map(|row| {
            (
                int(t, row, "account"),
                int(t, row, "transfer"),
                int(t, row, "amount"),
                int(t, row, "balance_after"),
                int(t, row, "available_after"),
                int(t, row, "pending_stakes_after"),
                int(t, row, "debt_after"),
            )
        })
        .collect();
    assert_eq!(statements.len(), expected.len(), "one statement row per player and transfer");
    for (row, expected) in statements.iter().zip(&expected) {
        assert_eq!(row, expected, "(account, transfer, amount, balance, available, stakes, debt)");
    }
    // The last row of every player is the wallet the book shows.
    for player in book.players() {
        let wallet = book.wallet(player.id).expect("wallet");
        let last = statements.iter().rev().find(|row| row.0 == player.id.0 as i64).expect("a player with a deposit");
        assert_eq!(
            (last.3, last.4, last.5, last.6),
            (wallet.balance.minor(), wallet.available.minor(), wallet.pending_stakes.minor(), wallet.debt.minor()),
            "{}'s last statement row is its wallet",
            player.id
        );
    }
}

fn check_audit(store: &mut dyn Store, outcomes: &[String]) {
    let rows = store.rows(&AUDIT).expect("audit");
    let t = &AUDIT;
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(int(t, row, "sequence"), index as i64, "sequences are consecutive from 0");
    }
    let seen: Vec<&str> =
        rows.iter().filter(|row| text(t, row, "command") != "tick").map(|row| text(t, row, "outcome")).collect();
    assert_eq!(seen, outcomes.iter().map(String::as_str).collect::<Vec<_>>(), "every command's outcome, in order");
    assert!(rows.iter().any(|row| text(t, row, "outcome") != "ok"), "rejections are audited too");
    // Migration 4: each row's origin as journaled (the workload submits bare commands: the
    // engine's `internal` system actor; ticks are its own or the sequencer's).
    for row in rows.iter().filter(|row| text(t, row, "command") != "tick") {
        let origin = (text(t, row, "actor_kind"), text(t, row, "actor_id"));
        assert_eq!(origin, ("system", engine::INTERNAL_ACTOR), "{row:?}");
    }
    let checkpoint = store.rows(&CHECKPOINT).expect("checkpoint");
    assert_eq!(int(&CHECKPOINT, &checkpoint[0], "commands"), rows.len() as i64);
}

pub fn check_daily_totals(store: &mut dyn Store, book: &Book, history: &TransferHistory) {
    // (day, currency) -> [bets, stakes, settlements, stakes settled, payouts, cashouts,
    // reversals, payouts reversed, as debt, stakes reversed], folded as `gateway::compliance`.
    let mut expected: BTreeMap<(i64, String), [i64; 10]> = BTreeMap::new();
    for bet in book.bets() {
        if matches!(bet.status, BetStatus::Pending | BetStatus::Rejected) {
            continue;
        }
        let currency = book.players()[bet.account.index()].currency.to_string();
        let line = expected.entry(((bet.placed_at / MILLIS_PER_DAY) as i64, currency)).or_default();
        line[0] += 1;
        line[1] += bet.total_stake.minor();
    }
    let ledger = book.ledger();
    for transfer in &history.transfers {
        let amount = transfer.amount.minor();
        let posted = transfer.kind == TransferKind::Posted;
        let key = ((transfer.timestamp / MILLIS_PER_DAY) as i64, ledger.account(transfer.debit).currency.to_string());
        let adds: &[(usize, i64)] = match (transfer.code, transfer.kind) {
            (TransferCode::Stake, TransferKind::PostPending(_)) => &[(2, 1), (3, amount)],
            (TransferCode::Payout, _) if posted => &[(4, amount)],
            (TransferCode::Cashout, _) if posted => &[(4, amount), (5, amount)],
            (TransferCode::PayoutReversal, _) if posted => &[(7, amount)],
            (TransferCode::DebtRecognised, _) if posted => &[(7, amount), (8, amount)],
            (TransferCode::StakeReversal, _) if posted => &[(6, 1), (9, amount)],
            _ => &[],
        };
        if adds.is_empty() {
            continue;
        }
        let line = expected.entry(key).or_default();
        for (index, value) in adds {
            line[*index] += value;
        }
    }
    let t = &DAILY_TOTALS;
    let rows: BTreeMap<(i64, String), [i64; 10]> = store
        .rows(&DAILY_TOTALS)
        .expect("daily totals")
        .iter()
        .map(|row| {
            let mut values = [0; 10];
            for (index, value) in values.iter_mut().enumerate() {
                *value = row[2 + index].int().expect("integer");
            }
            ((int(t, row, "day"), text(t, row, "currency").to_owned()), values)
        })
        .collect();
    assert_eq!(rows, expected);
    assert!(rows.values().any(|line| line[2] > 0 && line[6] > 0), "settlements and reversals are counted");
}

pub fn check_accounts(store: &mut dyn Store, book: &Book) {
    let rows = store.rows(&ACCOUNTS).expect("accounts");
    assert_eq!(rows.len(), book.players().len());
    let t = &ACCOUNTS;
    for (row, player) in rows.iter().zip(book.players()) {
        assert_eq!(int(t, row, "id") as u64, player.id.0);
        assert_eq!(text(t, row, "currency"), player.currency.to_string());
        assert_eq!(get(t, row, "username").text(), player.profile.as_ref().map(|p| p.username.as_str()));
        assert_eq!(get(t, row, "frozen").bool(), Some(player.frozen), "{}", player.id);
        assert_eq!(int(t, row, "timed_out_until") as u64, player.timed_out_until);
        assert_eq!(int(t, row, "excluded_until") as u64, player.excluded_until);
    }
    assert!(rows.iter().any(|row| get(t, row, "frozen").bool() == Some(true)), "a frozen account");
}

/// The monitor's alerts and cases (migration 7): every alert the book raised once, in id order,
/// and every case the book still holds as it stands.
fn check_monitoring(store: &mut dyn Store, book: &Book) {
    let alerts = store.rows(&ALERTS).expect("alerts");
    assert_eq!(alerts.len() as u64, book.monitor().alerts_issued(), "every alert once");
    assert!(!alerts.is_empty(), "the workload raises alerts under the default rules");
    for (index, row) in alerts.iter().enumerate() {
        assert_eq!(int(&ALERTS, row, "id"), index as i64 + 1);
    }
    let cases = store.rows(&CASES).expect("cases");
    assert_eq!(cases.len() as u64, book.monitor().cases_issued());
    for case in book.monitor().cases() {
        let row = cases.iter().find(|row| int(&CASES, row, "id") as u64 == case.id.0).expect("the case's row");
        assert_eq!(int(&CASES, row, "account") as u64, case.account.0);
        assert_eq!(text(&CASES, row, "status"), case.status.as_str());
        assert_eq!(int(&CASES, row, "alerts_total"), i64::from(case.alerts_total));
        let held = alerts.iter().filter(|alert| opt_int(&ALERTS, alert, "case_id") == Some(case.id.0 as i64)).count();
        assert_eq!(held as u32, case.alerts_total, "{}", case.id);
    }
}

/// The reads the gateway will serve from, paged by cursor, against the book.
fn check_queries(store: &mut dyn Store, book: &Book) {
    use projector::query::{audit_from, bets_of_player, search_accounts, statement_of};
    for player in book.players().iter().take(6) {
        let account = player.id.0;
        for open in [None, Some(true), Some(false)] {
            let expected: Vec<i64> = book
                .bets_of(player.id)
                .iter()
                .rev()
                .filter(|id| open.is_none_or(|open| book.bet(**id).expect("bet").status.is_open() == open))
                .map(|id| id.0 as i64)
                .collect();
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let page = bets_of_player(store, account, cursor, open, 7).expect("bets page");
                seen.extend(page.iter().map(|row| int(&BETS, row, "id")));
                if page.len() < 7 {
                    break;
                }
                cursor = seen.last().map(|id| *id as u64);
            }
            assert_eq!(seen, expected, "{} bets, open {open:?}", player.id);
        }
        let all: Vec<i64> = store
            .rows(&STATEMENTS)
            .expect("statements")
            .iter()
            .filter(|row| int(&STATEMENTS, row, "account") == account as i64)
            .map(|row| int(&STATEMENTS, row, "transfer"))
            .rev()
            .collect();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = statement_of(store, account, cursor, 5).expect("statement page");
            seen.extend(page.iter().map(|row| int(&STATEMENTS, row, "transfer")));
            if page.len() < 5 {
                break;
            }
            cursor = seen.last().map(|id| *id as u64);
        }
        assert_eq!(seen, all, "{}'s statement, newest first", player.id);
    }
    // The operator's search, paged, against the book.
    use projector::query::{search_bets, BetSearch};
    let settled_at = book.bets().iter().filter_map(|bet| bet.settlement.map(|s| s.at)).min().expect("a settlement");
    let placed_mid = book.bets().get(book.bets().len() / 2).expect("a bet").placed_at;
    let searches = [
        BetSearch { market: Some(3), ..BetSearch::default() },
        BetSearch { event: Some(4), status: Some("lost".into()), ..BetSearch::default() },
        BetSearch {
            account: Some(book.bets().get(10).expect("a bet").account.0),
            stake_at_least: Some(book.bets().get(10).expect("a bet").total_stake.minor()),
            ..BetSearch::default()
        },
        BetSearch { placed_from: Some(placed_mid), settled_from: Some(settled_at), ..BetSearch::default() },
        BetSearch { placed_to: Some(placed_mid), market: Some(5), ..BetSearch::default() },
    ];
    for search in searches {
        let expected: Vec<i64> = book
            .bets()
            .iter()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .filter(|bet| search.account.is_none_or(|account| bet.account.0 == account))
            .filter(|bet| search.market.is_none_or(|market| bet.legs.iter().any(|leg| leg.market.0 == market)))
            .filter(|bet| search.event.is_none_or(|event| bet.legs.iter().any(|leg| leg.event.0 == event)))
            .filter(|bet| search.status.as_deref().is_none_or(|status| bet.status.as_str() == status))
            .filter(|bet| search.placed_from.is_none_or(|from| bet.placed_at >= from))
            .filter(|bet| search.placed_to.is_none_or(|to| bet.placed_at < to))
            .filter(|bet| search.settled_from.is_none_or(|from| bet.settlement.is_some_and(|s| s.at >= from)))
            .filter(|bet| search.stake_at_least.is_none_or(|stake| bet.total_stake.minor() >= stake))
            .map(|bet| bet.id.0 as i64)
            .collect();
        assert!(!expected.is_empty(), "a search that finds something: {search:?}");
        let mut seen = Vec::new();
        let mut cursor = BetSearch { ..search.clone() };
        loop {
            let page = search_bets(store, &cursor, 9).expect("search page");
            seen.extend(page.iter().map(|row| int(&BETS, row, "id")));
            if page.len() < 9 {
                break;
            }
            cursor.before = seen.last().map(|id| *id as u64);
        }
        assert_eq!(seen, expected, "{search:?}");
    }

    let page = audit_from(store, 40, 10).expect("audit page");
    assert_eq!(page.len(), 10);
    assert_eq!(int(&AUDIT, &page[0], "position"), 40);
    let keys: Vec<(i64, i64)> =
        page.iter().map(|row| (int(&AUDIT, row, "position"), int(&AUDIT, row, "ordinal"))).collect();
    assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "in journal order");

    let derby = book
        .players()
        .iter()
        .find(|p| p.profile.as_ref().is_some_and(|p| p.username == "derby_fan"))
        .expect("derby_fan");
    for q in ["derby", "DERBY_F", "derby_fan", &derby.id.to_string(), &derby.id.0.to_string()] {
        let found: Vec<i64> =
            search_accounts(store, q, 10).expect("search").iter().map(|row| int(&ACCOUNTS, row, "id")).collect();
        assert_eq!(found, vec![derby.id.0 as i64], "search {q:?}");
    }
    for q in ["derby%", "_erby", "nobody"] {
        assert!(search_accounts(store, q, 10).expect("search").is_empty(), "search {q:?} is literal");
    }
}

/// The reports' aggregates (`Store::aggregate`) over `bets` and `transfers` equal the book's
/// folds, base amounts included (each converted with the bet's recorded rate, rounded up, then
/// summed); every audit row's body is its command.
fn check_report_aggregates(store: &mut dyn Store, book: &Book, history: &TransferHistory) {
    use projector::query::{sum_of, Aggregate, Filter};
    let rows = store
        .aggregate(&Aggregate {
            table: &BETS,
            filters: vec![Filter::In("status", vec![Value::from("pending"), Value::from("rejected")], false)],
            group: vec!["currency", "fx_base"],
            sums: vec!["total_stake", "base_stake"],
        })
        .expect("bets aggregate");
    let found: BTreeMap<String, (i64, i128, i128)> = rows
        .iter()
        .map(|row| {
            assert_eq!(row[1].text(), Some(book.fx().base.to_string().as_str()), "{row:?}");
            assert_eq!(row[4], row[2], "every stake counted: {row:?}");
            assert_eq!(row[6], row[2], "every bet has a base amount: {row:?}");
            let key = row[0].text().expect("currency").to_owned();
            (key, (row[2].int().expect("count"), sum_of(&row[3]).expect("sum"), sum_of(&row[5]).expect("sum")))
        })
        .collect();
    let mut expected: BTreeMap<String, (i64, i128, i128)> = BTreeMap::new();
    for bet in book.bets() {
        if matches!(bet.status, BetStatus::Pending | BetStatus::Rejected) {
            continue;
        }
        let currency = book.players()[bet.account.index()].currency;
        let line = expected.entry(currency.to_string()).or_default();
        line.0 += 1;
        line.1 += i128::from(bet.total_stake.minor());
        line.2 += i128::from(bet.fx.to_base(bet.total_stake, currency).minor());
    }
    assert_eq!(found, expected);
    assert!(!found.is_empty());

    let rows = store
        .aggregate(&Aggregate {
            table: &TRANSFERS,
            filters: vec![Filter::Ge("at", Value::Int(0))],
            group: vec!["currency", "code", "status"],
            sums: vec!["amount"],
        })
        .expect("transfers aggregate");
    let found: BTreeMap<(String, String, String), (i64, i128)> = rows
        .iter()
        .map(|row| {
            let key = (0..3).map(|index| row[index].text().expect("text").to_owned()).collect::<Vec<_>>();
            (
                (key[0].clone(), key[1].clone(), key[2].clone()),
                (row[3].int().expect("count"), sum_of(&row[4]).expect("sum")),
            )
        })
        .collect();
    let mut expected: BTreeMap<(String, String, String), (i64, i128)> = BTreeMap::new();
    let ledger = book.ledger();
    for transfer in &history.transfers {
        let status = match transfer.kind {
            TransferKind::Posted => "posted",
            TransferKind::Pending => "pending",
            TransferKind::PostPending(_) => "posts",
            TransferKind::VoidPending(_) => "voids",
        };
        let key =
            (ledger.account(transfer.debit).currency.to_string(), transfer.code.name().to_owned(), status.to_owned());
        let line = expected.entry(key).or_default();
        line.0 += 1;
        line.1 += i128::from(transfer.amount.minor());
    }
    assert_eq!(found, expected);

    let t = &AUDIT;
    for row in store.rows(&AUDIT).expect("audit") {
        let body = text(t, &row, "body");
        let command = projector::follower::decode_audit_body(body).expect("a body decodes");
        assert_eq!(command.name(), text(t, &row, "command"));
        assert_eq!(text(t, &row, "reply_digest").len(), 16);
        if let book::Command::RegisterPlayer { password_hash, .. } = &command {
            assert!(password_hash.is_empty(), "a password hash in the audit view");
        }
    }
}

/// Every key's first reply, as the book gave it, refusals included; retries (the same body,
/// answered from the book's window, or another body, `idempotency_key_reused`) add nothing.
fn check_first_replies(store: &mut dyn Store, expected: &[(book::AccountId, String, u64, book::Reply)]) {
    assert!(expected.len() > 100, "a workload with keys");
    assert!(expected.iter().any(|(_, _, _, reply)| reply.is_err()), "a refused keyed command");
    assert!(expected.iter().any(|(_, _, _, reply)| reply.is_ok()), "an accepted keyed command");
    assert_eq!(store.rows(&projector::schema::FIRST_REPLIES).expect("rows").len(), expected.len());
    for (account, key, body_hash, reply) in expected {
        let found = projector::query::first_reply(store, *account, key).expect("query").expect("a first reply");
        assert_eq!(found.body_hash, *body_hash, "{key}");
        assert_eq!(&found.reply, reply, "{key}");
        assert!(found.position > 0 && found.at >= crate::workload::START, "{key}");
        // The hash covers the account: another player's key of the same text is not this one.
        let other = book::AccountId(account.0 + 1_000);
        assert_eq!(projector::query::first_reply(store, other, key).expect("query"), None);
    }
    assert_eq!(projector::query::first_reply(store, book::AccountId(1), "never-used").expect("query"), None);
}

fn conformance(backend: Backend, name: &str) -> String {
    let finished = finished();
    let scratch = tempfile::tempdir().expect("tempdir");
    let store = open_store(backend, scratch.path(), name, true);
    let mut projector = project(finished.dir.path(), store, false);
    assert_eq!(projector.start(), projector::Start::Genesis);
    assert_eq!(projector.lag().expect("lag"), 0);
    let book = &finished.book;
    let store = projector.store();
    assert_eq!(store.schema_version().expect("version"), projector::schema::SCHEMA_VERSION);
    check_bets(store, book, true);
    check_transfers_and_statements(store, book, &finished.transfers);
    check_audit(store, &finished.outcomes);
    check_daily_totals(store, book, &finished.transfers);
    check_accounts(store, book);
    check_queries(store, book);
    check_report_aggregates(store, book, &finished.transfers);
    check_first_replies(store, &finished.first_replies);
    check_running_totals(store, book);
    check_monitoring(store, book);
    check_digest(store);
    dump(store).expect("dump")
}

/// `digest` reads a page of rows at a time; at any page size it is the hash of the whole dump.
fn check_digest(store: &mut dyn Store) -> String {
    let whole = hex::encode(Sha256::digest(dump(store).expect("dump").as_bytes()));
    for rows_per_page in [1, 2, 7, 1_000, DIGEST_ROWS_PER_PAGE] {
        assert_eq!(digest_paged(store, rows_per_page).expect("digest"), whole, "pages of {rows_per_page} rows");
    }
    whole
}

/// The dump orders text keys byte by byte, and so must the digest's pages, whatever the
/// database's collation: here PostgreSQL's `first_replies.key_hash` collates as English, which
/// puts "a" before "B" and ignores "_" at first, and both stores still give the dump's hash.
#[test]
fn the_digest_pages_through_text_keys_byte_by_byte_under_any_collation() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let keys = ["B", "a", "a_b", "ab", "Ab", "0", "\u{e9}", "a b", "_"];
    let mut digests = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let mut store = open_store(backend, scratch.path(), "collation", true);
        if backend == Backend::Postgres {
            let schema = postgres_schema("collation");
            let sql =
                format!("ALTER TABLE {schema}.first_replies ALTER COLUMN key_hash TYPE TEXT COLLATE \"en-x-icu\"");
            PostgresStore::execute(POSTGRES_URL, &sql)
                .unwrap_or_else(|error| panic!("these tests need PostgreSQL at {POSTGRES_URL}: {error}"));
        }
        let mut changes = Changes::default();
        for (position, key) in keys.iter().enumerate() {
            let row = vec![
                Value::from(key.to_string()),
                Value::Null,
                Value::constant("0"),
                Value::Int(position as i64),
                Value::Int(0),
                Value::constant("ok"),
                Value::constant("00"),
            ];
            assert_eq!(row.len(), FIRST_REPLIES.columns.len());
            changes.put(&FIRST_REPLIES, row);
        }
        let checkpoint =
            Checkpoint { next_position: 1, chain_head: [0; 32], batches: 1, commands: 1, base_position: 0 };
        changes.put(&CHECKPOINT, checkpoint.row());
        store.commit(&changes, None).expect("commit");
        digests.push(check_digest(store.as_mut()));
    }
    assert_eq!(digests[0], digests[1], "SQLite and PostgreSQL");
}

/// `projector::totals` (what `sportsbook verify` runs): the history summed per ledger account
/// in SQL gives every running total of the book, and the last statements its wallets, on both
/// stores (a difference found: `sportsbook/tests/it/bounded.rs`).
fn check_running_totals(store: &mut dyn Store, book: &Book) {
    let comparison = projector::totals::compare(store, book).expect("compare");
    assert_eq!(comparison.mismatches, Vec::new());
    assert_eq!(comparison.ledger_accounts, book.ledger().accounts().len());
    assert!(comparison.transfers > 100 && comparison.players > 10, "{comparison:?}");
    let summed = projector::totals::ledger_totals(store).expect("sums");
    let pending = summed.values().map(|totals| totals.debits_pending_stakes).sum::<i64>();
    assert!(pending > 0, "held stakes are summed too");
}

#[test]
fn sqlite_models_equal_the_book() {
    conformance(Backend::Sqlite, "conformance");
}

#[test]
fn postgres_models_equal_the_book() {
    conformance(Backend::Postgres, "conformance");
}

#[test]
fn both_stores_hold_the_same_models() {
    let sqlite = conformance(Backend::Sqlite, "same");
    let postgres = conformance(Backend::Postgres, "same");
    assert!(sqlite.lines().count() > 1_000, "a real workload");
    assert!(sqlite == postgres, "the dumps differ");
}
