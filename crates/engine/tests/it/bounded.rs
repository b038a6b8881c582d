//! Recovery of a bounded book: settled bets, their markets and their transfers left the book
//! once the resettlement window passed (on book time, while the engine ran), and a book
//! recovered from a snapshot taken after that, from an earlier snapshot and the journal, or
//! from the journal alone, is the book that ran, by digest. An unsettle after the window is
//! still refused after recovery.

use book::{
    AccountId, BetKind, Command, Config, LegRequest, MarketId, Outcome, PlaceBet, PricePolicy, ResultRequest,
    SelectionId,
};
use domain::{Money, Odds};
use engine::{open_data_dir, EngineHandle, EngineOptions, ManualClock};

use crate::workload::{setup, START};

const WINDOW_MS: u64 = 2_000;

fn config() -> Config {
    Config { resettlement_window_ms: WINDOW_MS, ..Config::default() }
}

fn open(dir: &std::path::Path, clock: &ManualClock) -> (EngineHandle, engine::RecoveryReport) {
    let options = EngineOptions { snapshot_every_commands: 0, ..EngineOptions::default() };
    open_data_dir(dir, config(), Box::new(clock.clone()), options).expect("open")
}

fn bet(account: u64, selection: u64) -> Command {
    Command::PlaceBet(PlaceBet {
        account: AccountId(account),
        kind: BetKind::Single,
        legs: vec![LegRequest { selection: SelectionId(selection), price: Odds::parse("2.50").unwrap() }],
        stake: Money::from_minor(500),
        each_way: false,
        policy: PricePolicy::Any,
        idempotency: None,
    })
}

/// Market N's selections are 3N-2..3N (see `workload::setup`): bets on its home and away,
/// then home wins.
fn bet_and_settle(engine: &EngineHandle, market: u64) {
    for account in 1..=6 {
        let selection = 3 * market - 2 + 2 * (account % 2);
        engine.submit(bet(account, selection)).expect("durable").expect("bet accepted");
    }
    let results = vec![ResultRequest {
        selection: SelectionId(3 * market - 2),
        outcome: Outcome::Win,
        dead_heat: None,
        void_factor: None,
    }];
    engine.submit(Command::SettleMarket { market: MarketId(market), results }).expect("durable").expect("settled");
}

fn digest(engine: &EngineHandle) -> String {
    engine
        .read(|book| {
            book.check_invariants().expect("invariants");
            book.ledger().verify().expect("ledger totals");
            codec::digest(book)
        })
        .expect("read")
}

/// A command that only moves book time on (the book lets what passed its window leave then).
fn tick(engine: &EngineHandle, clock: &ManualClock, payment: &str) {
    clock.advance(WINDOW_MS + 1_000);
    let deposit = Command::Deposit {
        account: AccountId(7),
        amount: Money::from_minor(100),
        payment_ref: payment.into(),
        idempotency: None,
    };
    engine.submit(deposit).expect("durable").expect("deposit");
}

#[test]
fn a_book_whose_settled_bets_left_recovers_the_same_from_snapshot_and_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let (engine, _) = open(dir.path(), &clock);
    for command in setup() {
        engine.submit(command).expect("durable").expect("accepted");
    }
    // Open bets on market 2 stay in the book throughout (their stakes are held).
    engine.submit(bet(8, 4)).expect("durable").expect("open bet");
    bet_and_settle(&engine, 1);
    let before = engine.read(|book| book.sizes()).expect("read");
    tick(&engine, &clock, "psp-tick-1");
    let after = engine.read(|book| book.sizes()).expect("read");
    assert_eq!((after.closed_bets, after.open_bets), (0, 1), "{after:?}");
    assert!(after.transfers < before.transfers && after.markets < before.markets, "{before:?} -> {after:?}");
    assert_eq!(after.bets_issued, before.bets_issued);

    // A snapshot after the eviction, then more bets settled and evicted after it.
    let middle = digest(&engine);
    let snapshot_at = engine.snapshot().expect("snapshot");
    bet_and_settle(&engine, 3);
    tick(&engine, &clock, "psp-tick-2");
    let sizes = engine.read(|book| book.sizes()).expect("read");
    assert_eq!(sizes.closed_bets, 0, "{sizes:?}");
    let live = digest(&engine);
    engine.shutdown();

    // From the final snapshot, from the one in the middle and the journal after it, and from
    // the journal alone: the same book.
    let (engine, report) = open(dir.path(), &clock);
    assert_eq!(digest(&engine), live, "{report:?}");
    engine.shutdown();
    let store = journal::SnapshotStore::open(&dir.path().join("snapshots")).unwrap();
    let snapshots = store.list().unwrap();
    for (position, path) in &snapshots {
        if *position > snapshot_at {
            std::fs::remove_file(path).unwrap();
        }
    }
    let (engine, report) = open(dir.path(), &clock);
    assert_eq!(report.snapshot_position, Some(snapshot_at));
    assert!(report.replayed_batches > 0, "{report:?}");
    assert_eq!(digest(&engine), live, "from the snapshot taken after eviction and the journal");
    engine.shutdown();
    // Recovered read-only to the position of that snapshot (`sportsbook verify` compares a
    // book there with read models): from it, never from the later one written at shutdown.
    let recovered = engine::recover_read_only_to(dir.path(), None, config(), snapshot_at).expect("recover to");
    assert_eq!((recovered.report.position, recovered.report.snapshot_position), (snapshot_at, Some(snapshot_at)));
    assert_eq!(codec::digest(&recovered.book), middle);
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let (engine, report) = open(dir.path(), &clock);
    assert_eq!(report.snapshot_position, None);
    assert_eq!(digest(&engine), live, "from the journal alone");

    // Past the window an unsettle is refused, after recovery as before it.
    for market in [1, 3] {
        let refused = engine.submit(Command::UnsettleMarket { market: MarketId(market) }).expect("durable");
        let rejection = refused.expect_err("unsettle after the window");
        assert_eq!(rejection.code(), "resettlement_window_closed", "market {market}");
    }
    engine.shutdown();

    // The same position with only later snapshots: replayed from 0 up to it.
    let recovered = engine::recover_read_only_to(dir.path(), None, config(), snapshot_at).expect("recover to");
    assert_eq!((recovered.report.position, recovered.report.snapshot_position), (snapshot_at, None));
    assert_eq!(codec::digest(&recovered.book), middle, "replayed from 0 to the snapshot's position");
    let beyond = engine::recover_read_only_to(dir.path(), None, config(), u64::MAX);
    assert!(beyond.is_err(), "a position beyond the journal's end is refused");
}
