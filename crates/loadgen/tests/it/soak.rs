//! The soak profile through the engine in this process: a few thousand bets with a small open
//! set, so that the cycle turns over many times. Not a timing test: it checks that markets are
//! really settled and replaced, that the money balances, and that the projector follows.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use book::{BetStatus, MarketStatus};
use loadgen::soak::engine::{EngineTarget, EngineTargetOptions, StoreChoice};
use loadgen::soak::{self, SoakOptions};

fn options(bets: u64) -> SoakOptions {
    SoakOptions {
        rate: None,
        bets,
        duration: None,
        open_bets: 300,
        live_markets: 10,
        players: 20,
        multiple_percent: 20,
        stake_minor_min: 100,
        // Large stakes for few players: they run low and deposit again during the run.
        stake_minor_max: 200_000,
        concurrency: 256,
        request_timeout: Duration::from_secs(30),
        window: Duration::from_secs(1),
        sample_every: Duration::from_millis(50),
        seed: 7,
        rss_max_bytes: None,
        progress: false,
    }
}

#[test]
fn the_soak_cycle_settles_markets_recycles_players_and_the_money_balances() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let target_options = EngineTargetOptions {
        data_dir: Some(dir.path().join("data")),
        store: Some(StoreChoice::Sqlite(None)),
        snapshot_every_commands: 1_000,
        resettlement_window: None,
        idempotency_window: Some(Duration::from_secs(60)),
        projector_nice: 0,
        batch_commands_max: engine::BATCH_COMMANDS_MAX_DEFAULT,
        players: 20,
        idempotency_keys: true,
    };
    let (target, setup) = EngineTarget::open(&target_options).expect("open the engine");
    let target = Arc::new(target);
    let options = options(3_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let result = runtime
        .block_on(soak::run(target.clone(), &options, serde_json::to_value(&setup).expect("json")))
        .expect("the soak runs");
    let total = &result.total;

    // Every bet was sent and answered; none failed (rejections would be the book's business,
    // and with deposits ahead of every stake there should be none).
    assert_eq!(total.bets_sent, 3_000);
    assert!(total.failed.is_empty(), "{:?}", total.failed);
    assert!(total.rejected.is_empty(), "{:?}", total.rejected);
    assert_eq!(total.bets_accepted, 3_000);
    // Quota 60 bets a market, 10 live: about 3,000 × (1.2 legs) / 60 ≈ 60 markets retired.
    assert_eq!(result.quota_per_market, 60);
    assert!(total.markets_settled >= 40, "{total:?}");
    assert_eq!(total.settle_failures, 0);
    assert_eq!(total.markets_opened, 10 + total.markets_settled, "each settled market was replaced");
    // Players ran low and deposited again (20 first deposits, then more).
    assert!(total.deposits > 20, "{total:?}");
    assert_eq!(total.deposit_failures, 0);
    // The open set stayed bounded: nowhere near the 3,000 bets that passed.
    assert!(total.open_bets_max <= 2 * 300 + 60 * 10, "{total:?}");
    assert_eq!(total.bets_closed_by_settlement + total.open_bets_end, total.bets_accepted);
    // The projector followed every batch, and the figures the aims need are there.
    assert!(total.projector_catch_up_s.is_some(), "the projector caught up");
    assert!(total.projector_rows.is_some_and(|rows| rows > 3_000), "{total:?}");
    assert!(total.rss_max_mib.is_some_and(|rss| rss > 0.0));
    assert!(total.sequencer_pause_max_ms.is_some());
    assert_eq!(result.aims.len(), 4);
    assert!(!result.windows.is_empty());
    assert!(result.windows.iter().all(|window| window.rss_mib.is_some()));
    assert!(soak::summary(&result).contains("aim: "));

    // The book agrees: the ledger verifies, every invariant holds, the markets the generator
    // settled are settled, and every bet whose markets are all settled is settled.
    let (verified, invariants, settled_markets, open_markets, bets, unsettled, settled_bets, open_bets) = target
        .engine()
        .read(|book| {
            let settled: HashSet<u64> = book
                .markets()
                .iter()
                .filter(|market| market.status == MarketStatus::Settled)
                .map(|market| market.id.0)
                .collect();
            let open = book.markets().iter().filter(|market| market.status == MarketStatus::Open).count();
            let mut unsettled = 0;
            let mut settled_bets = 0;
            let mut open_bets = 0;
            for bet in book.bets() {
                let all_settled = bet.legs.iter().all(|leg| settled.contains(&leg.market.0));
                let is_open = matches!(bet.status, BetStatus::Accepted | BetStatus::Pending);
                if all_settled && is_open {
                    unsettled += 1;
                }
                if !is_open {
                    settled_bets += 1;
                } else {
                    open_bets += 1;
                }
            }
            (
                book.ledger().verify(),
                book.check_invariants(),
                settled.len() as u64,
                open,
                book.bets().len() as u64,
                unsettled,
                settled_bets,
                open_bets,
            )
        })
        .expect("read the book");
    assert_eq!(verified, Ok(()));
    assert!(invariants.is_ok(), "{invariants:?}");
    assert_eq!(settled_markets, total.markets_settled);
    assert_eq!(open_markets, 10, "the live markets are still open");
    assert_eq!(bets, 3_000);
    assert_eq!(unsettled, 0, "a bet on settled markets only is still open");
    // The generator counts a multiple open until its last market is settled; the book settles
    // it as lost at its first losing leg, so it can count a few more settled.
    assert!(settled_bets >= total.bets_closed_by_settlement, "{settled_bets} {total:?}");
    assert!(open_bets <= total.open_bets_end, "{open_bets} {total:?}");
    assert_eq!(settled_bets + open_bets, total.bets_accepted);
    assert!(settled_bets > 1_000, "most bets passed through: {settled_bets}");

    // The projector's read models are at the journal's end.
    assert_eq!(target.projector_position(), Some(target.journal_position()));
    // Every setting the run used is in the journal: a book replayed from its start with the
    // default configuration (as the projector's is) is the engine's book, byte for byte. A
    // setting given to the engine as configuration only would make them differ.
    let digest = target.engine().read(codec::digest).expect("read the book");
    target.finish();
    let snapshots = dir.path().join("data").join("snapshots");
    std::fs::remove_dir_all(&snapshots).expect("snapshots set aside");
    let replayed = engine::recover_read_only(&dir.path().join("data"), book::Config::default()).expect("replayed");
    assert_eq!(replayed.report.snapshot_position, None, "replayed from the journal's start");
    assert_eq!(codec::digest(&replayed.book), digest);
}

#[test]
fn the_resettlement_window_reaches_the_book_and_a_window_out_of_bounds_is_refused() {
    use loadgen::soak::engine::{idempotency_window_ms, resettlement_window_ms};
    assert_eq!(resettlement_window_ms(Some(Duration::from_secs(5))).expect("a valid window"), Some(5_000));
    assert_eq!(resettlement_window_ms(None).expect("default"), None);
    assert_eq!(idempotency_window_ms(Some(Duration::from_secs(60))).expect("a valid window"), Some(60_000));
    assert!(idempotency_window_ms(Some(Duration::from_secs(5))).is_err(), "under 30 s");
    // The windows are journaled: a book replayed from the journal with the default
    // configuration (as the projector replays it) has them too.
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("window");
    let options = EngineTargetOptions {
        data_dir: Some(data.clone()),
        store: None,
        resettlement_window: Some(Duration::from_secs(5)),
        idempotency_window: Some(Duration::from_secs(60)),
        players: 1,
        ..EngineTargetOptions::default()
    };
    {
        let (target, _) = EngineTarget::open(&options).expect("opened");
        target.finish();
    }
    let (engine, _) =
        engine::open_data_dir(&data, book::Config::default(), Box::new(engine::SystemClock), Default::default())
            .expect("reopened");
    let config = engine.read(|book| *book.config()).expect("read");
    assert_eq!((config.resettlement_window_ms, config.idempotency_window_ms), (5_000, 60_000));
    engine.shutdown();

    let options = EngineTargetOptions {
        data_dir: Some(dir.path().join("data")),
        store: None,
        resettlement_window: Some(Duration::from_millis(10)),
        players: 1,
        ..EngineTargetOptions::default()
    };
    let error = EngineTarget::open(&options).expect_err("refused");
    assert!(error.to_string().contains("resettlement-window"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soak_cycle_over_http_settles_markets_through_the_api() {
    use loadgen::soak::http::{HttpTarget, HttpTargetOptions};
    let dir = tempfile::tempdir().expect("temporary directory");
    let base_url = super::spawn_app(dir.path()).await;
    let http_options = HttpTargetOptions {
        base_url,
        metrics_url: None,
        metrics_key: None,
        admin_key: super::ADMIN_KEY.to_string(),
        // Two argon2 hashes each, slow in a debug build: few players.
        players: 2,
        concurrency: 32,
        request_timeout: Duration::from_secs(30),
        server_pid: None,
        progress: false,
    };
    let (target, setup) = HttpTarget::open(&http_options).await.expect("set up");
    let target = Arc::new(target);
    // The test server refuses stakes over 50.00.
    let options = SoakOptions {
        open_bets: 40,
        live_markets: 4,
        players: 2,
        stake_minor_max: 5_000,
        concurrency: 32,
        ..options(300)
    };
    let result = soak::run(target.clone(), &options, serde_json::to_value(&setup).expect("json")).await.expect("run");
    target.finish();
    let total = &result.total;
    assert_eq!(total.bets_sent, 300);
    assert!(total.failed.is_empty() && total.rejected.is_empty(), "{total:?}");
    assert_eq!(total.bets_accepted, 300);
    // Quota 20 bets a market: about 300 × 1.2 / 20 ≈ 18 markets settled through the API.
    assert!(total.markets_settled >= 10, "{total:?}");
    assert_eq!(total.settle_failures, 0);
    assert_eq!(total.markets_opened, 4 + total.markets_settled);
    assert!(total.bets_settled_by_book > 0, "the API reports the bets it settled");
    // Read from /metrics; the server is this process, not found by command line.
    assert!(total.sequencer_pause_max_ms.is_some() && total.snapshots.is_some(), "{total:?}");
    assert!(total.rss_max_mib.is_none());
}
