//! Integration tests of the load generator: short runs against a real server (engine on a
//! temporary data directory with fdatasync per batch, gateway on a real socket, in this
//! process) and against the real PostgreSQL on 127.0.0.1:5432, which must be running: a test
//! that cannot reach it fails and says so.

mod soak;

use std::time::Duration;

use domain::Money;
use engine::{EngineOptions, SystemClock};
use gateway::{AppState, GatewayConfig};
use loadgen::driver::OpenLoopOptions;
use loadgen::http::{PriceRoute, SportsbookOptions};
use loadgen::postgres::PostgresOptions;
use loadgen::schedule::{Phase, ProfileKind};
use loadgen::subscribers::SubscriberOptions;
use loadgen::workload::{BetMix, WorkloadOptions};
use loadgen::{Options, ResultFile, RunReport, TargetKind};

const ADMIN_KEY: &str = "sk_loadgen_test_admin";
const POSTGRES: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// Starts the engine and the gateway on a free port; returns the base URL. The book refuses
/// stakes over 50.00, so about half of the bets are rejected with `stake_too_high`.
async fn spawn_app(dir: &std::path::Path) -> String {
    let metrics = gateway::Metrics::new();
    let mut config = GatewayConfig::new(b"loadgen-test-secret-loadgen-test-secret".to_vec());
    config.admin_key = Some(ADMIN_KEY.to_string());
    config.rate_limit_per_address = None;
    config.rate_limit_per_principal = None;
    let streams = gateway::Streams::new(&config, &metrics);
    let options =
        EngineOptions { on_commit: vec![metrics.engine_hook(), streams.engine_hook()], ..EngineOptions::default() };
    let path = dir.to_path_buf();
    let book_config = book::Config { max_stake: Money::from_minor(5_000), ..book::Config::default() };
    let (engine, _) =
        tokio::task::spawn_blocking(move || engine::open_data_dir(&path, book_config, Box::new(SystemClock), options))
            .await
            .expect("join")
            .expect("open the engine");
    let state = AppState::new(engine, config, metrics, streams).await.expect("gateway state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = gateway::serve(listener, state, std::future::pending()).await;
    });
    base
}

fn options(target: TargetKind, base_url: String) -> Options {
    Options {
        target,
        profile: ProfileKind::Steady,
        phases: vec![
            Phase::constant("warm", Duration::from_secs(1), 100.0),
            Phase::constant("hot", Duration::from_secs(1), 200.0),
        ],
        requests_max: 10_000,
        workload: WorkloadOptions {
            markets: 20,
            mix: BetMix { retry_percent: 20, ..BetMix::default() },
            ..WorkloadOptions::default()
        },
        sportsbook: SportsbookOptions {
            base_url,
            extra_urls: Vec::new(),
            admin_key: ADMIN_KEY.to_string(),
            // Two argon2 hashes each, slow in a debug build: few players.
            players: 2,
            price_updates_per_second: 20.0,
            price_route: PriceRoute::Feed,
            feed_batch: Duration::from_millis(50),
            subscribers: SubscriberOptions { count: 8, markets_each: 3 },
            concurrency: 64,
            request_timeout: Duration::from_secs(5),
            progress: false,
        },
        postgres: PostgresOptions {
            connection: POSTGRES.to_string(),
            pool_connections: 4,
            wallets: 1_000,
            markets: 20,
        },
        open_loop: OpenLoopOptions {
            concurrency: 64,
            request_timeout: Duration::from_secs(5),
            send_grace: Duration::from_secs(2),
            progress: false,
        },
    }
}

/// Subscribers read the prices the run moved, and the delay of each from its feed request.
fn assert_stream_sane(run: &RunReport, subscribers: usize) {
    let stream = run.stream.as_ref().expect("stream reported");
    assert_eq!(stream.subscribers, subscribers);
    assert_eq!(stream.open_at_end, subscribers, "{stream:?}");
    assert_eq!(stream.connections, subscribers as u64, "nobody reconnected: {stream:?}");
    assert!(stream.closes.is_empty(), "{:?}", stream.closes);
    assert_eq!(stream.phases.len(), 2);
    let total = &stream.total;
    // Most subscribers watch the hottest market, which takes a fifth of the changes.
    assert!(total.prices >= 20, "{total:?}");
    assert!(total.delay_ms.count * 10 >= total.prices * 9, "prices matched to their change: {stream:?}");
    let delay = &total.delay_ms;
    assert!(delay.p50 > 0.0 && delay.p50 <= delay.p99 && delay.p99 <= delay.p999 && delay.p999 <= delay.max);
    assert!(delay.p50 < 1_000.0, "{delay:?}");
    assert!(total.messages_per_second > 0.0);
    let read: u64 = stream.seconds.iter().map(|second| second.messages).sum();
    assert_eq!(read, total.messages, "every message lands in a second");
}

fn assert_sane(run: &RunReport) {
    assert_eq!(run.phases.len(), 2);
    assert_eq!(run.phases[0].scheduled, 100);
    assert_eq!(run.phases[1].scheduled, 200);
    for phase in run.phases.iter().chain(std::iter::once(&run.total)) {
        let latency = &phase.latency_ms;
        assert!(phase.accepted > 0, "{}: {phase:?}", run.target);
        assert!(latency.p50 > 0.0, "{latency:?}");
        assert!(
            latency.p50 <= latency.p95
                && latency.p95 <= latency.p99
                && latency.p99 <= latency.p999
                && latency.p999 <= latency.max,
            "{latency:?}"
        );
        assert_eq!(phase.unexplained_failures(), 0, "{}: {phase:?}", run.target);
    }
    let answered: u64 = run.seconds.iter().map(|second| second.sent).sum();
    assert_eq!(answered, run.total.sent, "every answer lands in a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_against_the_sportsbook_counts_bets_rejections_retries_feed_and_stream() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let base_url = spawn_app(dir.path()).await;
    let result: ResultFile = loadgen::run(&options(TargetKind::Sportsbook, base_url)).await.expect("the run completes");
    let run = &result.runs[0];
    assert_eq!(run.target, "sportsbook");
    assert_sane(run);
    // Stakes are 1.00 to 100.00 and the book takes at most 50.00: about half are refused.
    let too_high = run.total.rejections.get("stake_too_high").copied().unwrap_or(0);
    assert!((60..=240).contains(&too_high), "{:?}", run.total.rejections);
    // Every bet is accepted, pending, refused with a code, or shed with `Retry-After` (admission
    // control sheds when the machine is busy, e.g. under a parallel build).
    let shed: u64 = run.total.shed.values().sum();
    assert_eq!(
        run.total.accepted + run.total.pending + run.total.rejections.values().sum::<u64>() + shed,
        run.total.sent,
        "{:?}",
        run.total
    );
    let retries = run.idempotent_retries.as_ref().expect("retries reported");
    assert!(retries.sent > 20, "{retries:?}");
    assert_eq!(retries.different_answer, 0, "a retried key gets the first answer: {retries:?}");
    // The markets came through the feed and were bet on; their prices moved through it too.
    assert_eq!(run.setup["price_route"], "feed");
    assert!(run.price_updates.is_none());
    let feed = run.feed.as_ref().expect("feed reported");
    assert!(feed.changes >= 30 && feed.requests > 5, "{feed:?}");
    assert_eq!(feed.failed_requests, 0, "{feed:?}");
    assert_eq!(feed.applied + feed.duplicate + feed.stale + feed.refused, feed.changes, "{feed:?}");
    assert!(feed.applied * 10 >= feed.changes * 9, "almost every change applies: {feed:?}");
    assert_eq!(feed.refused, 0, "{feed:?}");
    assert!(feed.heartbeats >= 2 && feed.heartbeats_failed == 0, "{feed:?}");
    assert!(feed.reply_ms.count == feed.requests && feed.reply_ms.p50 > 0.0);
    assert_stream_sane(run, 8);

    let json = serde_json::to_value(&result).expect("serializes");
    assert!(json["runs"][0]["feed"]["applied"].as_u64().is_some_and(|applied| applied > 0));
    assert!(json["runs"][0]["stream"]["total"]["delay_ms"]["p99"].as_f64().is_some_and(|p99| p99 > 0.0));

    assert!(json["runs"][0]["phases"][1]["latency_ms"]["p99"].as_f64().is_some_and(|p99| p99 > 0.0));
    let plot_dir = tempfile::tempdir().expect("temporary directory");
    let (json_path, plot_path) = (plot_dir.path().join("result.json"), plot_dir.path().join("result.svg"));
    loadgen::write_outputs(&result, Some(&json_path), Some(&plot_path)).expect("written");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("read")).expect("JSON");
    assert_eq!(written["runs"][0]["total"]["accepted"], json["runs"][0]["total"]["accepted"]);
    assert!(std::fs::read_to_string(&plot_path).expect("read").contains("<polyline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_targets_get_the_same_schedule_and_their_ratios() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let base_url = spawn_app(dir.path()).await;
    let result = match loadgen::run(&options(TargetKind::Both, base_url)).await {
        Ok(result) => result,
        Err(error) => panic!(
            "the PostgreSQL baseline needs PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`, user \
             `postgres`); it failed: {error}"
        ),
    };
    let [ours, baseline] = result.runs.as_slice() else { panic!("two runs: {:?}", result.runs.len()) };
    assert_eq!(baseline.target, "postgres-baseline");
    assert_sane(baseline);
    // The baseline refuses nothing, and stored exactly the bets it acknowledged.
    assert_eq!(baseline.total.accepted, baseline.total.sent);
    assert_eq!(baseline.bets_stored, Some(baseline.total.accepted as i64));
    assert_eq!(ours.total.scheduled, baseline.total.scheduled);
    assert_eq!(result.ratios.len(), 3, "two phases and the total");
    let total = &result.ratios[2];
    assert!(total.throughput > 0.0 && total.p99 > 0.0, "{total:?}");
    let expected = ours.total.accepted_per_second / baseline.total.accepted_per_second;
    assert!((total.throughput - expected).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_price_route_still_moves_prices_that_subscribers_read() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let base_url = spawn_app(dir.path()).await;
    let mut options = options(TargetKind::Sportsbook, base_url);
    options.sportsbook.price_route = PriceRoute::Admin;
    options.sportsbook.subscribers = SubscriberOptions { count: 4, markets_each: 2 };
    let result = loadgen::run(&options).await.expect("the run completes");
    let run = &result.runs[0];
    assert_sane(run);
    assert_eq!(run.setup["price_route"], "admin");
    assert!(run.feed.is_none());
    let prices = run.price_updates.as_ref().expect("price updates reported");
    assert!(prices.applied > 10 && prices.failed == 0, "{prices:?}");
    assert_stream_sane(run, 4);
}
