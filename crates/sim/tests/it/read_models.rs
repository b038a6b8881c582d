//! The projector inside the simulation: its read models must equal the auditor's prediction
//! at every check, it is killed (mid-transaction, between commits, with the engine) and
//! resumes, and its store equals a rebuild at the end. And the check can fail: a row damaged
//! in the SQLite file with a direct SQL statement is reported, for each model. In some runs the
//! projector also writes the engine's snapshots, which every crash then recovers from.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sim::{JournalKind, SimOptions};

const OPS: u64 = 1_500;

#[test]
fn the_read_models_equal_the_prediction_through_projector_kills_and_a_rebuild() {
    let mut kills = std::collections::BTreeMap::new();
    for seed in [1, 3] {
        let mut options = SimOptions::new(seed, OPS);
        options.journal = JournalKind::File;
        options.read_model_check_every = 100;
        // Seed 1 as drawn (its engine's follower writes the snapshots), seed 3 as `serve` runs.
        if seed == 3 {
            options.projector_writes_snapshots = Some(true);
        }
        let report = sim::run(options).unwrap_or_else(|failure| panic!("{failure}"));
        assert!(report.read_model_checks >= 15, "{report:?}");
        assert!(report.read_model_rows > 10_000, "{report:?}");
        for (fault, count) in &report.faults {
            if fault.starts_with("projector_") || fault.starts_with("rebuild_") || fault.starts_with("snapshots_") {
                *kills.entry(*fault).or_insert(0) += count;
            }
        }
    }
    for fault in [
        "projector_killed",
        "projector_killed_mid_transaction",
        "projector_killed_with_engine",
        "projector_resumed",
        // Transactions that gather at the journal's end until full, flushed or killed.
        "projector_gathering",
        "rebuild_compared",
        // The engine's snapshots written by the projector's follower book, recovered from.
        "snapshots_by_projector",
    ] {
        assert!(kills.get(fault).copied().unwrap_or(0) > 0, "no {fault}: {kills:?}");
    }
}

/// Runs seed 1 on the file journal with `statement` executed on the store once, before the
/// first check of the read models after step 600; returns the failure's message.
fn damaged(statement: &'static str) -> String {
    let done = Arc::new(AtomicBool::new(false));
    let mut options = SimOptions::new(1, 1_200);
    options.journal = JournalKind::File;
    options.read_model_check_every = 600;
    let once = Arc::clone(&done);
    options.read_model_tamper = Some(Arc::new(move |path: &Path| {
        if once.swap(true, Ordering::SeqCst) {
            return;
        }
        let connection = rusqlite::Connection::open(path).expect("open the read models");
        let changed = connection.execute(statement, []).expect("damage a row");
        assert!(changed > 0, "{statement} changed nothing");
    }));
    let failure = match sim::run(options) {
        Ok(report) => panic!("a damaged read model went unnoticed: {statement}\n{report:?}"),
        Err(failure) => failure.to_string(),
    };
    assert!(done.load(Ordering::SeqCst));
    assert!(failure.contains("the read models differ from the auditor's prediction"), "{failure}");
    failure
}

#[test]
fn a_bet_with_another_stake_is_reported() {
    let failure = damaged("UPDATE bets SET total_stake = total_stake + 1 WHERE id = (SELECT max(id) FROM bets)");
    assert!(failure.contains("read model bets") && failure.contains("total_stake"), "{failure}");
}

#[test]
fn a_statement_with_another_balance_after_is_reported() {
    let failure = damaged(
        "UPDATE transfers SET balance_after = balance_after - 1 \
         WHERE id = (SELECT min(transfer) FROM statements WHERE code = 'deposit')",
    );
    assert!(failure.contains("read model statements") && failure.contains("balance_after"), "{failure}");
}

#[test]
fn a_missing_statement_row_is_reported() {
    // The statements are a view of `transfers` (migration 8): a transfer that lost its
    // player is a statement row missing.
    let failure = damaged("UPDATE transfers SET account = NULL WHERE id = (SELECT max(transfer) FROM statements)");
    assert!(failure.contains("read model statements") && failure.contains("missing"), "{failure}");
}

#[test]
fn a_missing_audit_row_is_reported() {
    let failure = damaged(
        "DELETE FROM audit WHERE (position, ordinal) = \
         (SELECT position, ordinal FROM audit WHERE command = 'deposit' ORDER BY position LIMIT 1)",
    );
    assert!(failure.contains("read model audit"), "{failure}");
}

#[test]
fn a_bet_status_changed_in_the_history_is_reported() {
    let failure = damaged(
        "UPDATE bet_history SET status = 'won' WHERE (position, ordinal) = \
         (SELECT position, ordinal FROM bet_history WHERE status = 'lost' LIMIT 1)",
    );
    assert!(failure.contains("read model bet_history"), "{failure}");
}

#[test]
fn a_daily_total_off_by_one_is_reported() {
    let failure = damaged("UPDATE daily_totals SET payouts = payouts + 1 WHERE bets_placed > 0");
    assert!(failure.contains("read model daily_totals") && failure.contains("payouts"), "{failure}");
}
