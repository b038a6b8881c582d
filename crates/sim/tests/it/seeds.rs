//! A bounded number of seeds with every fault on, on both journal backends: every one must
//! pass, and a seed must reproduce its run exactly.

use sim::{JournalKind, Report, SimOptions};

const OPS: u64 = 2_000;

fn run(seed: u64, journal: JournalKind) -> Report {
    let mut options = SimOptions::new(seed, OPS);
    options.journal = journal;
    let report = sim::run(options).unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.steps, OPS);
    assert!(report.recoveries >= 1, "{report:?}");
    report
}

#[test]
fn memory_journal_seeds() {
    for seed in [2, 4, 6, 8] {
        run(seed, JournalKind::Memory);
    }
}

#[test]
fn file_journal_seeds() {
    for seed in [1, 3, 5, 7] {
        run(seed, JournalKind::File);
    }
}

#[test]
fn a_seed_reproduces_its_run() {
    // Seed 15 has group commits and both kinds of failed sync within its first 2,000 steps.
    let first = run(15, JournalKind::File);
    let second = run(15, JournalKind::File);
    assert!(first.faults.contains_key("sync_failed_written"), "{first:?}");
    assert!(first.faults.contains_key("sync_failed_lost"), "{first:?}");
    assert!(first.faults.contains_key("sync_failed_in_a_group"), "{first:?}");
    // Clients gone once their command reached the book, their retries, the payments step and
    // repeated payment references all happen, and the model predicted every reply.
    for label in ["client.hung_up", "gateway.timeout", "retry.unknown", "payments.sweep"] {
        assert!(first.ops_by_kind.contains_key(label), "{label}: {:?}", first.ops_by_kind);
    }
    assert!(first.replies_by_code.contains_key("duplicate_payment_ref"), "{:?}", first.replies_by_code);
    assert_eq!(first.final_digest, second.final_digest);
    assert_eq!(first.ops_by_kind, second.ops_by_kind);
    assert_eq!(first.replies_by_code, second.replies_by_code);
    assert_eq!(first.faults, second.faults);
    assert_eq!(first.published, second.published);
}
