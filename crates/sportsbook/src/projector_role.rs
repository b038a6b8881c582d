//! `sportsbook projector --nats URLS`: the projector of a cluster. It follows the replicated
//! journal on NATS JetStream (the stream `sportsbook book` writes, `projector::NatsSource`)
//! into PostgreSQL (or a SQLite file), with the same `Projector` as on a data directory:
//! exactly once (rows, checkpoint and chain head in one transaction), resume, `--rebuild`,
//! `--follow`, `--digest`.
//!
//! Where it starts: an empty store at position 0 (the journal's stream never drops a message:
//! it denies deletes and purges); a store with a checkpoint resumes there, its follower book
//! replayed from the newest snapshot at or before the checkpoint in `--snapshots-from DIR` (a
//! book node's data directory on the same machine; its snapshots are of the same journal), else
//! from position 0. A stream that no longer begins at position 0 (made by hand with limits)
//! needs such a snapshot, as the file journal after a repair does.
//!
//! With `--follow` it prints `{"role": "projector", "pid": N}` (with `"url"` when it listens)
//! on standard output once following, progress on standard error, and stops cleanly on Ctrl-C
//! or SIGTERM (after the transaction in progress; a kill -9 is safe too). A failure that may
//! pass (NATS or the store unreachable, the stream not made yet) is retried every
//! [`RETRY_INTERVAL`] by opening again at the checkpoint. `--listen ADDR` serves `/healthz`,
//! `/readyz` (ready while following no more than `gateway::PROJECTOR_LAG_READY_MAX` records
//! behind) and `/metrics` (position, lag in records and seconds, rows and rows/s).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use journal_nats::NatsJournalOptions;
use projector::{NatsSource, Progress, Projector, ProjectorError, ProjectorOptions, Start};

use crate::projection::{open_store_at, StoreArg};
use crate::serve::ShutdownSignals;

/// Pause before opening again after a failure that may pass.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How often the lag (the stream's end) is read while following.
pub const LAG_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub struct NatsProjectorArgs {
    pub nats: Vec<String>,
    /// The journal's stream (`sportsbook book` uses `journal_nats::STREAM_DEFAULT`).
    pub stream: String,
    /// Replicas the stream has (checked, as every node checks it).
    pub replicas: usize,
    /// A directory whose `snapshots/` holds snapshots of this journal (a book node's).
    pub snapshots_from: Option<PathBuf>,
    pub store: StoreArg,
    pub schema: String,
    pub rebuild: bool,
    pub follow: bool,
    pub commit_rows: usize,
    pub digest: bool,
    pub listen: Option<SocketAddr>,
    /// [`projector::ProjectorOptions::pipeline`].
    pub pipeline: bool,
}

/// What the projector is doing, for `/readyz` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Following,
    /// Failed; retried (the message of the last failure).
    Retrying(String),
}

/// Shared between the projector's loop and the HTTP handlers.
#[derive(Debug)]
struct Status {
    phase: Mutex<Phase>,
    position: AtomicU64,
    /// The stream's end at the last look.
    stream_end: AtomicU64,
    /// Book time (ms) of the last batch committed.
    book_time_ms: AtomicU64,
    rows: AtomicU64,
    commits: AtomicU64,
    /// Rows per second over the last progress interval, as f64 bits.
    rows_per_second: AtomicU64,
    restarts: AtomicU64,
}

impl Status {
    fn new() -> Status {
        Status {
            phase: Mutex::new(Phase::Starting),
            position: AtomicU64::new(0),
            stream_end: AtomicU64::new(0),
            book_time_ms: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            rows_per_second: AtomicU64::new(0f64.to_bits()),
            restarts: AtomicU64::new(0),
        }
    }

    fn phase(&self) -> Phase {
        self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = phase;
    }

    fn lag_records(&self) -> u64 {
        self.stream_end.load(Ordering::Relaxed).saturating_sub(self.position.load(Ordering::Relaxed))
    }

    /// How old the models' state is while records wait: the wall clock minus the book time of
    /// the last batch they hold (the leader's clock); 0 when caught up.
    fn lag_seconds(&self) -> f64 {
        if self.lag_records() == 0 {
            return 0.0;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64);
        now.saturating_sub(self.book_time_ms.load(Ordering::Relaxed)) as f64 / 1_000.0
    }

    fn publish(&self, projector: &Projector) {
        let progress = projector.progress();
        self.position.store(progress.position, Ordering::Relaxed);
        self.book_time_ms.store(projector.committed_book_time(), Ordering::Relaxed);
        self.stream_end.fetch_max(progress.position, Ordering::Relaxed);
    }
}

fn journal_options(args: &NatsProjectorArgs) -> NatsJournalOptions {
    let mut options = NatsJournalOptions::new(args.nats.clone());
    options.stream = args.stream.clone();
    options.replicas = args.replicas;
    options
}

fn open(args: &NatsProjectorArgs, rebuild: bool) -> Result<Projector, ProjectorError> {
    // The source first: a stream the projector cannot read is said before any store is made.
    let source = NatsSource::open(journal_options(args), args.snapshots_from.as_deref())?;
    let store =
        open_store_at(&args.store, None, &args.schema).map_err(|error| ProjectorError::Store(format!("{error:#}")))?;
    let options = ProjectorOptions {
        commit_rows: args.commit_rows.max(1),
        pipeline: args.pipeline,
        on_replay: Some(|position, checkpoint| {
            eprintln!("projector: replaying the journal to the store's checkpoint: {position} of {checkpoint}")
        }),
        archive_dir: None,
        gather: projector::projector::GATHER_DEFAULT,
        ..ProjectorOptions::new(Path::new(""))
    };
    Projector::open_source(store, Box::new(source), options, rebuild)
}

fn describe_start(projector: &Projector, stream: &str) {
    match projector.start() {
        Start::Genesis => eprintln!("projector: NATS stream {stream}, from journal position 0"),
        Start::Snapshot(position) => {
            eprintln!("projector: NATS stream {stream}, seeded from the snapshot at journal position {position}")
        }
        Start::Resumed { checkpoint, replayed_from } => eprintln!(
            "projector: NATS stream {stream}, resumed at journal position {checkpoint} (follower book replayed from \
             {replayed_from})"
        ),
    }
}

pub fn run(args: &NatsProjectorArgs) -> anyhow::Result<()> {
    if let StoreArg::Sqlite(None) = args.store {
        anyhow::bail!("with --nats there is no data directory: give --store sqlite:PATH or a postgres:// URL");
    }
    if !args.follow {
        return run_once(args);
    }
    let status = Arc::new(Status::new());
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("projector-http")
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let url = match args.listen {
        Some(listen) => {
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(listen))
                .with_context(|| format!("listening on {listen}"))?;
            let address = listener.local_addr().context("the listen address")?;
            let app = app(Arc::clone(&status));
            runtime.spawn(async move { axum::serve(listener, app).await });
            Some(format!("http://{address}"))
        }
        None => None,
    };
    {
        let stop = Arc::clone(&stop);
        let mut signals = runtime.block_on(async { ShutdownSignals::install() });
        runtime.spawn(async move {
            let signal = signals.recv().await;
            eprintln!("projector: {signal}: stopping after the transaction in progress");
            stop.store(true, Ordering::SeqCst);
        });
    }
    let mut rebuild = args.rebuild;
    let mut announced = false;
    while !stop.load(Ordering::SeqCst) {
        let failure = match open(args, rebuild) {
            Ok(mut projector) => {
                // A rebuild empties the store once; a reopen after a failure resumes.
                rebuild = false;
                describe_start(&projector, &args.stream);
                status.publish(&projector);
                status.set_phase(Phase::Following);
                if !announced {
                    announced = true;
                    match &url {
                        Some(url) => {
                            println!(r#"{{"role": "projector", "pid": {}, "url": "{url}"}}"#, std::process::id())
                        }
                        None => println!(r#"{{"role": "projector", "pid": {}}}"#, std::process::id()),
                    }
                }
                match follow(&mut projector, &stop, &status) {
                    Ok(()) => break,
                    Err(error) => error,
                }
            }
            Err(error) => error,
        };
        // Options or a stream the projector cannot work with do not pass by themselves.
        let invalid = matches!(failure, ProjectorError::Journal(journal::JournalError::InvalidOptions { .. }));
        if invalid || !projector::serving::transient(&failure) {
            return Err(failure).context("the projector stopped");
        }
        eprintln!("projector: {failure}; opening again in {RETRY_INTERVAL:?}");
        status.set_phase(Phase::Retrying(failure.to_string()));
        status.restarts.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + RETRY_INTERVAL;
        while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    eprintln!("projector: stopped at journal position {}", status.position.load(Ordering::Relaxed));
    Ok(())
}

/// Follows until `stop`, one transaction at a time, publishing to `status`.
fn follow(projector: &mut Projector, stop: &AtomicBool, status: &Status) -> Result<(), ProjectorError> {
    let began = Instant::now();
    let rows_before = projector.progress().rows;
    let mut last_report = Instant::now();
    let mut rows_at_report = rows_before;
    let mut last_lag = Instant::now() - LAG_INTERVAL;
    while !stop.load(Ordering::SeqCst) {
        let (_, more) = projector.step()?;
        status.publish(projector);
        let progress = projector.progress();
        status.rows.store(progress.rows, Ordering::Relaxed);
        status.commits.store(progress.commits, Ordering::Relaxed);
        if last_lag.elapsed() >= LAG_INTERVAL {
            let lag = projector.lag()?;
            status.stream_end.store(progress.position + lag, Ordering::Relaxed);
            last_lag = Instant::now();
        }
        if last_report.elapsed() >= projector::projector::PROGRESS_INTERVAL {
            let rate = (progress.rows - rows_at_report) as f64 / last_report.elapsed().as_secs_f64().max(1e-9);
            status.rows_per_second.store(rate.to_bits(), Ordering::Relaxed);
            if more {
                eprintln!(
                    "projector: at journal position {}, {} rows written ({:.0} rows/s), {} records behind",
                    progress.position,
                    progress.rows,
                    (progress.rows - rows_before) as f64 / began.elapsed().as_secs_f64().max(1e-9),
                    status.lag_records()
                );
            }
            rows_at_report = progress.rows;
            last_report = Instant::now();
        }
        if !more {
            std::thread::sleep(projector::projector::FOLLOW_POLL_INTERVAL);
        }
    }
    // What a gathering transaction holds goes in before the projector stops.
    projector.flush()?;
    status.publish(projector);
    Ok(())
}

/// Catches up and exits (`--follow` not given).
fn run_once(args: &NatsProjectorArgs) -> anyhow::Result<()> {
    let began = Instant::now();
    let mut projector = open(args, args.rebuild).context("opening the projector")?;
    describe_start(&projector, &args.stream);
    let mut report = |progress: &Progress| {
        eprintln!(
            "projector: at journal position {}, {} rows written ({:.0} rows/s)",
            progress.position,
            progress.rows,
            progress.rows as f64 / began.elapsed().as_secs_f64().max(1e-9)
        );
    };
    projector.catch_up(&mut report).context("projecting the journal")?;
    let progress = projector.progress();
    let seconds = began.elapsed().as_secs_f64();
    println!(
        "projected NATS stream {} to journal position {} ({} batches, {} commands): {} rows in {:.1} s ({:.0} rows/s)",
        args.stream,
        progress.position,
        progress.batches,
        progress.commands,
        progress.rows,
        seconds,
        progress.rows as f64 / seconds.max(1e-9)
    );
    if args.digest {
        println!("store digest {}", projector::digest(projector.store())?);
    }
    Ok(())
}

fn app(status: Arc<Status>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(status)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(status): State<Arc<Status>>) -> impl IntoResponse {
    let lag = status.lag_records();
    let (phase, failure) = match status.phase() {
        Phase::Starting => ("starting", None),
        Phase::Following => ("following", None),
        Phase::Retrying(message) => ("retrying", Some(message)),
    };
    let mut reasons = Vec::new();
    if phase != "following" {
        reasons.push(if phase == "starting" { "projector_starting" } else { "projector_failed" });
    }
    if lag > gateway::PROJECTOR_LAG_READY_MAX {
        reasons.push("projector_lagging");
    }
    let code = if reasons.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if reasons.is_empty() { "ready" } else { "not_ready" },
        "reasons": reasons,
        "role": "projector",
        "pid": std::process::id(),
        "state": phase,
        "position": status.position.load(Ordering::Relaxed),
        "lag_records": lag,
        "lag_seconds": status.lag_seconds(),
        "failure": failure,
    });
    (code, Json(body))
}

async fn metrics(State(status): State<Arc<Status>>) -> impl IntoResponse {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    family(
        "sportsbook_projector_up",
        "1 while the projector follows the journal, 0 while it starts or retries after a failure.",
        "gauge",
        f64::from(u8::from(status.phase() == Phase::Following)),
    );
    family(
        "sportsbook_projector_position",
        "The journal position the read models are at (after their last committed batch).",
        "gauge",
        status.position.load(Ordering::Relaxed) as f64,
    );
    family(
        "sportsbook_journal_position",
        "The journal stream's end at the last look.",
        "gauge",
        status.stream_end.load(Ordering::Relaxed) as f64,
    );
    family(
        "sportsbook_projector_lag_records",
        "Journal records stored but not yet in the read models.",
        "gauge",
        status.lag_records() as f64,
    );
    family(
        "sportsbook_projector_lag_seconds",
        "Age of the read models' state while records wait (0 when caught up).",
        "gauge",
        status.lag_seconds(),
    );
    family(
        "sportsbook_projector_rows_total",
        "Rows this process committed to the read models.",
        "counter",
        status.rows.load(Ordering::Relaxed) as f64,
    );
    family(
        "sportsbook_projector_rows_per_second",
        "Rows committed per second over the last progress interval (2 s).",
        "gauge",
        f64::from_bits(status.rows_per_second.load(Ordering::Relaxed)),
    );
    family(
        "sportsbook_projector_commits_total",
        "Transactions this process committed.",
        "counter",
        status.commits.load(Ordering::Relaxed) as f64,
    );
    family(
        "sportsbook_projector_restarts_total",
        "Times the projector opened again after a failure that may pass.",
        "counter",
        status.restarts.load(Ordering::Relaxed) as f64,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
