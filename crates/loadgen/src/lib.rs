//! `sportsbook loadgen`: an open-loop load generator for the sportsbook's HTTP API, and the
//! PostgreSQL row-lock baseline driven with the same workload in the same run.
//!
//! A run is: a `Schedule` of intended send times (the profile: steady, derby, soak), a
//! `Workload` that turns each send into a bet from the seed alone, a `Target` that places it
//! (`SportsbookTarget` over HTTP, `PostgresTarget` as one transaction per bet), and the
//! open-loop dispatcher of `driver.rs` that sends each bet on time and records its outcome and
//! its latency from the intended send time. Beside the bets run the price driver (an odds
//! provider on the feed route, `provider.rs`, or the operator route) and WebSocket
//! subscribers reading the prices (`subscribers.rs`).
//!
//! The soak profile (`soak/`) is a run of its own: markets opened, bet on and settled in a
//! cycle, through the engine in this process or over HTTP, reported per 10 s window.
//!
//! The generator only aims at this machine: `--url` must be a loopback address and `--pg` a
//! local database.

pub mod cli;
pub mod driver;
pub mod failover;
pub mod http;
pub mod plot;
pub mod postgres;
pub mod provider;
pub mod schedule;
pub mod soak;
pub mod stats;
pub mod subscribers;
pub mod workload;
pub mod zipf;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::driver::{run_open_loop, run_open_loop_from, OpenLoopOptions};
use crate::http::{PriceDriverReport, PriceRoute, RetryReport, SportsbookOptions, SportsbookTarget};
use crate::postgres::{PostgresOptions, PostgresTarget};
use crate::provider::FeedDriverReport;
use crate::schedule::{DerbyShape, Phase, ProfileKind, Schedule};
use crate::stats::{PhaseReport, Recorder, SecondReport};
use crate::subscribers::{SendTimes, StreamReport, Subscribers};
use crate::workload::{PriceTable, Workload, WorkloadOptions};

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("invalid options: {0}")]
    Config(String),
    #[error("setting up the sportsbook: {0}")]
    Setup(String),
    #[error("PostgreSQL baseline: {0}")]
    Postgres(String),
    #[error("writing {path}: {source}")]
    Output { path: String, source: std::io::Error },
    /// The failover benchmark's run or its final check failed (lost or doubled bets).
    #[error("failover benchmark: {0}")]
    Check(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    Sportsbook,
    PostgresBaseline,
    /// The sportsbook, then the baseline with the same schedule and bets, and their ratios.
    Both,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Options {
    pub target: TargetKind,
    pub profile: ProfileKind,
    pub phases: Vec<Phase>,
    pub requests_max: u64,
    pub workload: WorkloadOptions,
    pub sportsbook: SportsbookOptions,
    pub postgres: PostgresOptions,
    pub open_loop: OpenLoopOptions,
}

impl Options {
    /// The phases of `profile` with its default rate and duration unless given.
    pub fn phases_of(
        profile: ProfileKind,
        rate: Option<f64>,
        duration: Option<Duration>,
        derby: &DerbyShape,
    ) -> Vec<Phase> {
        let (default_rate, default_duration) = profile_defaults(profile);
        schedule::phases(profile, rate.unwrap_or(default_rate), duration.unwrap_or(default_duration), derby)
    }
}

/// Rate (the derby's base rate) and duration of each profile when not given: steady at the
/// issue's aim of 20,000 bets a second; a derby whose spike is 15 × 1,500 = 22,500; a soak at a
/// tenth of the steady aim for ten minutes.
pub fn profile_defaults(profile: ProfileKind) -> (f64, Duration) {
    match profile {
        ProfileKind::Steady => (20_000.0, Duration::from_secs(30)),
        ProfileKind::Derby => (1_500.0, Duration::ZERO),
        ProfileKind::Soak => (2_000.0, Duration::from_secs(600)),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseSpec {
    pub name: String,
    pub duration_s: f64,
    pub rate_start: f64,
    pub rate_end: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    /// `/proc/loadavg` when the run ended: other work on the same cores shows here.
    pub load_average: Option<String>,
    pub os: &'static str,
    pub arch: &'static str,
}

/// This machine, now.
pub fn machine() -> Machine {
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |cpus| cpus.get()),
        load_average: std::fs::read_to_string("/proc/loadavg").ok().map(|text| text.trim().to_string()),
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
    }
}

/// One target's run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub target: String,
    pub setup: serde_json::Value,
    pub total: PhaseReport,
    pub phases: Vec<PhaseReport>,
    pub seconds: Vec<SecondReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotent_retries: Option<RetryReport>,
    /// Prices moved through the operator route (`--price-route admin`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_updates: Option<PriceDriverReport>,
    /// Prices moved through the feed (`--price-route feed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed: Option<FeedDriverReport>,
    /// The WebSocket subscribers (`--subscribers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamReport>,
    /// Bets in the baseline's table after the run (a check on the accepted count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bets_stored: Option<i64>,
}

/// Ours against the baseline, for one phase or the whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub phase: String,
    /// Accepted bets per second, ours ÷ the baseline's (above 1: we take more); null when the
    /// baseline accepted nothing in the phase.
    pub throughput: f64,
    /// p99 latency of accepted bets, ours ÷ the baseline's (below 1: ours is lower).
    pub p99: f64,
}

/// The JSON result file.
#[derive(Clone, Debug, Serialize)]
pub struct ResultFile {
    pub profile: String,
    pub schedule: Vec<PhaseSpec>,
    pub requests_max: u64,
    pub concurrency: usize,
    pub request_timeout_s: f64,
    pub workload: WorkloadOptions,
    pub machine: Machine,
    pub runs: Vec<RunReport>,
    /// With `--target both`: per phase and for the whole run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ratios: Vec<Ratio>,
}

/// Runs the profile against the target(s) on a tokio runtime of its own.
pub fn run_blocking(options: &Options) -> Result<ResultFile, LoadgenError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("loadgen")
        .build()
        .map_err(|error| LoadgenError::Config(format!("starting the tokio runtime: {error}")))?;
    runtime.block_on(run(options))
}

pub async fn run(options: &Options) -> Result<ResultFile, LoadgenError> {
    let schedule = Schedule::new(options.phases.clone(), options.requests_max)
        .map_err(|error| LoadgenError::Config(error.to_string()))?;
    let workload = Arc::new(Workload::new(options.workload.clone()));
    let mut runs = Vec::new();
    if matches!(options.target, TargetKind::Sportsbook | TargetKind::Both) {
        runs.push(run_sportsbook(options, &schedule, &workload).await?);
    }
    if matches!(options.target, TargetKind::PostgresBaseline | TargetKind::Both) {
        runs.push(run_postgres(options, &schedule, &workload).await?);
    }
    let ratios = match runs.as_slice() {
        [ours, baseline] => ratios(ours, baseline),
        _ => Vec::new(),
    };
    Ok(ResultFile {
        profile: options.profile.name().to_string(),
        schedule: schedule
            .phases()
            .iter()
            .map(|phase| PhaseSpec {
                name: phase.name.clone(),
                duration_s: phase.duration.as_secs_f64(),
                rate_start: phase.rate_start,
                rate_end: phase.rate_end,
            })
            .collect(),
        requests_max: options.requests_max,
        concurrency: options.open_loop.concurrency,
        request_timeout_s: options.open_loop.request_timeout.as_secs_f64(),
        workload: options.workload.clone(),
        machine: machine(),
        runs,
        ratios,
    })
}

fn report_of(target: &str, setup: serde_json::Value, recorder: &Recorder) -> RunReport {
    RunReport {
        target: target.to_string(),
        setup,
        total: recorder.total_report("total"),
        phases: recorder.phase_reports(),
        seconds: recorder.second_reports(),
        idempotent_retries: None,
        price_updates: None,
        feed: None,
        stream: None,
        bets_stored: None,
    }
}

async fn run_sportsbook(
    options: &Options,
    schedule: &Schedule,
    workload: &Arc<Workload>,
) -> Result<RunReport, LoadgenError> {
    let sportsbook = &options.sportsbook;
    let prices = Arc::new(PriceTable::new(options.workload.seed, options.workload.markets));
    let expected_bets = schedule.len();
    let (target, setup) = SportsbookTarget::setup(sportsbook, workload, prices, expected_bets).await?;
    let target = Arc::new(target);
    let send_times = Arc::new(SendTimes::default());
    let subscribers = if sportsbook.subscribers.count > 0 {
        let phases = driver::phase_offsets(schedule);
        let horizon = driver::horizon(schedule, &options.open_loop);
        let progress = driver::status_line(sportsbook.progress, "subscribers");
        progress.set_message(format!("opening {} WebSocket connections ...", sportsbook.subscribers.count));
        let opened =
            Subscribers::open(&target, workload, &sportsbook.subscribers, send_times.clone(), &phases, horizon).await;
        progress.finish_and_clear();
        if opened.is_err() {
            if let Some(provider) = target.feed() {
                provider.stop_heartbeats();
            }
        }
        Some(opened?)
    } else {
        None
    };
    let start = tokio::time::Instant::now() + driver::START_LEAD;
    if let Some(subscribers) = &subscribers {
        subscribers.start_run(start);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (admin_driver, feed_driver) = match sportsbook.price_route {
        PriceRoute::Admin => (
            Some(tokio::spawn(http::drive_prices(
                target.clone(),
                workload.clone(),
                sportsbook.admin_key.clone(),
                sportsbook.price_updates_per_second,
                send_times.clone(),
                stopped.clone(),
            ))),
            None,
        ),
        PriceRoute::Feed => (
            None,
            Some(tokio::spawn(provider::drive_feed_prices(
                target.clone(),
                workload.clone(),
                sportsbook.price_updates_per_second,
                sportsbook.feed_batch,
                send_times.clone(),
                stopped.clone(),
            ))),
        ),
    };
    let refresher = tokio::spawn(http::refresh_tokens(target.clone(), stopped.clone()));
    let status = subscribers.as_ref().map(|subscribers| {
        let line = driver::status_line(sportsbook.progress, "stream");
        let progress = subscribers_progress(subscribers);
        tokio::spawn(show_stream_progress(line, progress, stopped))
    });
    let recorder =
        run_open_loop_from(start, schedule, workload, target.clone(), &options.open_loop, "sportsbook").await;
    let _ = stop.send(true);
    let mut report = report_of("sportsbook", serde_json::to_value(&setup).unwrap_or_default(), &recorder);
    if let Some(driver) = admin_driver {
        report.price_updates = Some(driver.await.unwrap_or_default());
    }
    if let Some(driver) = feed_driver {
        report.feed = driver.await.ok().flatten();
    }
    if let Some(provider) = target.feed() {
        provider.stop_heartbeats();
    }
    let _ = refresher.await;
    if let Some(status) = status {
        let _ = status.await;
    }
    if let Some(subscribers) = subscribers {
        report.stream = Some(subscribers.finish().await);
    }
    report.idempotent_retries = Some(target.retry_report());
    Ok(report)
}

type StreamProgress = Arc<dyn Fn() -> (u64, usize) + Send + Sync>;

fn subscribers_progress(subscribers: &Subscribers) -> StreamProgress {
    Arc::new(subscribers.progress_handle())
}

/// The subscribers' line under the progress bar: connections open and messages read a second.
async fn show_stream_progress(
    line: indicatif::ProgressBar,
    progress: StreamProgress,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = progress().0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let (messages, open) = progress();
        line.set_message(format!("{open} subscribers open, {} messages/s read", messages - last));
        last = messages;
    }
    line.finish_and_clear();
}

async fn run_postgres(
    options: &Options,
    schedule: &Schedule,
    workload: &Arc<Workload>,
) -> Result<RunReport, LoadgenError> {
    // The same initial prices as the sportsbook's; the baseline has no price table to move.
    let prices = Arc::new(PriceTable::new(options.workload.seed, options.workload.markets));
    let postgres_options = PostgresOptions { markets: options.workload.markets, ..options.postgres.clone() };
    let (target, setup) = PostgresTarget::setup(&postgres_options, prices).await?;
    let target = Arc::new(target);
    let recorder = run_open_loop(schedule, workload, target.clone(), &options.open_loop, "postgres").await;
    let mut report = report_of("postgres-baseline", serde_json::to_value(&setup).unwrap_or_default(), &recorder);
    report.bets_stored = Some(target.count_bets().await?);
    Ok(report)
}

fn ratios(ours: &RunReport, baseline: &RunReport) -> Vec<Ratio> {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    ours.phases
        .iter()
        .zip(&baseline.phases)
        .chain(std::iter::once((&ours.total, &baseline.total)))
        .map(|(ours, baseline)| Ratio {
            phase: ours.name.clone(),
            throughput: ratio(ours.accepted_per_second, baseline.accepted_per_second),
            p99: ratio(ours.latency_ms.p99, baseline.latency_ms.p99),
        })
        .collect()
}

/// The human summary printed after a run.
pub fn summary(result: &ResultFile) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for run in &result.runs {
        let _ = writeln!(out, "\n{} ({} profile)", run.target, result.profile);
        let _ = writeln!(
            out,
            "  {:<8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  other outcomes",
            "phase", "scheduled", "accepted", "acc/s", "p50 ms", "p95 ms", "p99 ms", "p99.9", "max ms",
        );
        for phase in run.phases.iter().chain(std::iter::once(&run.total)) {
            let latency = &phase.latency_ms;
            let _ = writeln!(
                out,
                "  {:<8} {:>9} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}",
                phase.name,
                phase.scheduled,
                phase.accepted + phase.pending,
                phase.accepted_per_second,
                latency.p50,
                latency.p95,
                latency.p99,
                latency.p999,
                latency.max,
                other_outcomes(phase)
            );
        }
        if let Some(retries) = &run.idempotent_retries {
            let _ = writeln!(
                out,
                "  idempotent retries: {} sent, {} same answer, {} after a shed first try, {} different, {} failed",
                retries.sent, retries.same_answer, retries.after_shed, retries.different_answer, retries.failed
            );
        }
        if let Some(retries) = &run.idempotent_retries {
            for example in &retries.different_examples {
                let _ = writeln!(out, "    different: {example}");
            }
        }
        if let Some(prices) = &run.price_updates {
            let _ = writeln!(
                out,
                "  price updates (operator route): {} sent, {} applied, {} failed",
                prices.sent, prices.applied, prices.failed
            );
        }
        if let Some(feed) = &run.feed {
            let _ = writeln!(
                out,
                "  feed: {} price changes in {} requests ({} failed): {} applied, {} duplicate, {} stale, {} refused; \
                 reply p50 {:.2} ms p99 {:.2} ms; {} heartbeats ({} failed)",
                feed.changes,
                feed.requests,
                feed.failed_requests,
                feed.applied,
                feed.duplicate,
                feed.stale,
                feed.refused,
                feed.reply_ms.p50,
                feed.reply_ms.p99,
                feed.heartbeats,
                feed.heartbeats_failed
            );
        }
        if let Some(stream) = &run.stream {
            let _ = writeln!(
                out,
                "  stream: {} subscribers watching {} markets each; {} connections ({} reconnections), {} open at the end",
                stream.subscribers, stream.markets_each, stream.connections, stream.reconnections, stream.open_at_end
            );
            let _ = writeln!(
                out,
                "  {:<8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}  (delay in ms from sending a change to reading it)",
                "phase", "messages", "msg/s", "prices", "p50", "p99", "p99.9", "max"
            );
            for phase in stream.phases.iter().chain(std::iter::once(&stream.total)) {
                let delay = &phase.delay_ms;
                let _ = writeln!(
                    out,
                    "  {:<8} {:>9} {:>9.0} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                    phase.name,
                    phase.messages,
                    phase.messages_per_second,
                    phase.prices,
                    delay.p50,
                    delay.p99,
                    delay.p999,
                    delay.max
                );
            }
            let closes: Vec<String> = stream.closes.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
            let _ = writeln!(
                out,
                "  stream errors and closes: {}; prices no change of the run set: {}",
                if closes.is_empty() { "none".to_string() } else { closes.join(", ") },
                stream.unmatched_prices
            );
        }
        if let Some(stored) = run.bets_stored {
            let _ = writeln!(out, "  bets stored in the baseline's table: {stored}");
        }
    }
    if let Some(load) = &result.machine.load_average {
        let _ = writeln!(out, "\nload average at the end (1, 5, 15 min ...): {load}");
    }
    if !result.ratios.is_empty() {
        let _ = writeln!(out, "\nours / baseline");
        for ratio in &result.ratios {
            let _ = writeln!(
                out,
                "  {:<8} throughput {}   p99 {}",
                ratio.phase,
                times(ratio.throughput, 2),
                times(ratio.p99, 3)
            );
        }
    }
    out
}

/// `12.34x`, or `n/a` when the baseline had nothing to divide by.
fn times(value: f64, digits: usize) -> String {
    if value.is_finite() {
        format!("{value:>7.digits$}x")
    } else {
        "    n/a".to_string()
    }
}

fn other_outcomes(phase: &PhaseReport) -> String {
    let mut parts = Vec::new();
    let mut codes = |label: &str, map: &std::collections::BTreeMap<String, u64>| {
        if !map.is_empty() {
            let codes: Vec<String> = map.iter().map(|(code, count)| format!("{code} {count}")).collect();
            parts.push(format!("{label}: {}", codes.join(", ")));
        }
    };
    codes("rejected", &phase.rejections);
    codes("shed", &phase.shed);
    codes("unexpected", &phase.unexpected);
    for (label, count) in [
        ("shed without Retry-After", phase.shed_without_retry_after),
        ("timeouts", phase.timeouts),
        ("transport errors", phase.transport_errors),
        ("missed sends", phase.missed_sends),
        ("late sends", phase.late_sends),
    ] {
        if count > 0 {
            parts.push(format!("{label}: {count}"));
        }
    }
    parts.join("; ")
}

/// Writes the JSON result and the SVG plot.
pub fn write_outputs(
    result: &ResultFile,
    json_path: Option<&std::path::Path>,
    plot_path: Option<&std::path::Path>,
) -> Result<(), LoadgenError> {
    let write = |path: &std::path::Path, contents: String| {
        std::fs::write(path, contents)
            .map_err(|source| LoadgenError::Output { path: path.display().to_string(), source })
    };
    if let Some(path) = json_path {
        let json = serde_json::to_string_pretty(result).expect("a result always serializes");
        write(path, json + "\n")?;
    }
    if let Some(path) = plot_path {
        let series: Vec<plot::Series<'_>> = result
            .runs
            .iter()
            .map(|run| plot::Series {
                name: &run.target,
                seconds: &run.seconds,
                stream: run.stream.as_ref().map_or(&[], |stream| stream.seconds.as_slice()),
            })
            .collect();
        let title = format!("sportsbook loadgen: {} profile", result.profile);
        write(path, plot::svg(&title, &series))?;
    }
    Ok(())
}
