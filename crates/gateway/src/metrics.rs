//! Prometheus metrics: one registry per process, fed by the HTTP layer, the bet routes and the
//! engine's commit hook, and rendered in the OpenMetrics text format at `GET /metrics`.
//!
//! Every label has a bounded set of values: routes are matched path templates (never raw
//! paths), methods outside the standard ones are `other`, and outcomes are the stable codes of
//! the API. An unbounded label would let a client grow the registry without limit.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};

use axum::http::Method;
use book::BookEvent;
use engine::{Committed, EngineStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of what `Metrics::encode` produces (OpenMetrics text, which Prometheus
/// scrapes natively).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Log lines (and printed lines) that could not be written: a full disk or a closed pipe under
/// standard error or output. One counter per process, because logging is set up before any
/// `Metrics` exists; every registry shows it.
static LOG_WRITE_ERRORS: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Counts a log line (or printed line) that could not be written; the line is dropped. Logging
/// must never take the server down, so writers call this instead of failing or panicking.
pub fn record_log_write_error() {
    LOG_WRITE_ERRORS.inc();
}

/// Log lines dropped so far because they could not be written.
pub fn log_write_errors() -> u64 {
    LOG_WRITE_ERRORS.get()
}

/// The route label of a request that matched no route: one value for every unknown path.
pub const ROUTE_UNMATCHED: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SizeLabels {
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SwitchLabels {
    switch: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Why a request was refused before reaching its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShedReason {
    /// A rate limit of the client address or the credential (429).
    RateLimited,
    /// Too many HTTP requests in flight (503).
    Overloaded,
    /// The request took longer than `GatewayConfig::request_timeout` (503).
    Timeout,
    /// The book's queue stood above `ADMISSION_TARGET` (503): admission control.
    QueueDelay,
}

impl ShedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::RateLimited => "rate_limited",
            ShedReason::Overloaded => "overloaded",
            ShedReason::Timeout => "timeout",
            ShedReason::QueueDelay => "queue_delay",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriterLabels {
    writer: &'static str,
}

/// The snapshot writers: the follower or the in-process projector (periodic snapshots), a
/// catch-up thread (overdue ones) and the sequencer (the final one at shutdown, explicit ones
/// without a follower).
const SNAPSHOT_WRITERS: [&str; 4] = ["catch_up", "follower", "projector", "sequencer"];

/// Engine series that mirror `EngineStats` atomics, brought up to date at each scrape.
struct EngineSeries {
    /// Scrapes bring counters up to the engine's totals one at a time, so that two at once
    /// cannot both add the same difference.
    sync: std::sync::Mutex<()>,
    pause_seconds_max: Gauge<f64, AtomicU64>,
    pause_seconds_interval_max: Gauge<f64, AtomicU64>,
    work_seconds_max: Gauge<f64, AtomicU64>,
    work_seconds_interval_max: Gauge<f64, AtomicU64>,
    cpu_seconds_max: Gauge<f64, AtomicU64>,
    cpu_seconds_interval_max: Gauge<f64, AtomicU64>,
    snapshots: Family<WriterLabels, Counter>,
    snapshot_seconds: Family<WriterLabels, Counter<f64, AtomicU64>>,
    snapshot_seconds_max: Family<WriterLabels, Gauge<f64, AtomicU64>>,
    snapshots_skipped: Counter,
    snapshots_overdue: Counter,
    snapshot_failures: Counter,
    follower_detached: Counter,
    follower_queue_commands: Gauge,
    follower_failed: Gauge,
    journal_segments_archived: Counter,
    journal_archived_bytes: Counter,
    journal_archive_bytes: Counter,
    journal_archive_failures: Counter,
}

impl EngineSeries {
    fn new(registry: &mut Registry) -> EngineSeries {
        let series = EngineSeries {
            sync: std::sync::Mutex::new(()),
            pause_seconds_max: Gauge::default(),
            pause_seconds_interval_max: Gauge::default(),
            work_seconds_max: Gauge::default(),
            work_seconds_interval_max: Gauge::default(),
            cpu_seconds_max: Gauge::default(),
            cpu_seconds_interval_max: Gauge::default(),
            snapshots: Family::default(),
            snapshot_seconds: Family::default(),
            snapshot_seconds_max: Family::default(),
            snapshots_skipped: Counter::default(),
            snapshots_overdue: Counter::default(),
            snapshot_failures: Counter::default(),
            follower_detached: Counter::default(),
            follower_queue_commands: Gauge::default(),
            follower_failed: Gauge::default(),
            journal_segments_archived: Counter::default(),
            journal_archived_bytes: Counter::default(),
            journal_archive_bytes: Counter::default(),
            journal_archive_failures: Counter::default(),
        };
        registry.register(
            "sportsbook_sequencer_pause_seconds_max",
            "Longest sequencer cycle since start (take a batch, decide, append and sync, reply, hooks, reads): every \
             command arriving meanwhile waits",
            series.pause_seconds_max.clone(),
        );
        registry.register(
            "sportsbook_sequencer_pause_seconds_interval_max",
            "Longest sequencer cycle since the previous scrape",
            series.pause_seconds_interval_max.clone(),
        );
        registry.register(
            "sportsbook_sequencer_cpu_seconds_max",
            "Most CPU time the sequencer thread spent in one cycle since start (a pause far longer than this was \
             the thread waiting for a core, not working)",
            series.cpu_seconds_max.clone(),
        );
        registry.register(
            "sportsbook_sequencer_cpu_seconds_interval_max",
            "Most CPU time the sequencer thread spent in one cycle since the previous scrape",
            series.cpu_seconds_interval_max.clone(),
        );
        registry.register(
            "sportsbook_sequencer_work_seconds_max",
            "Longest sequencer cycle since start without its journal append (the sequencer's own time, whatever \
             the disk does)",
            series.work_seconds_max.clone(),
        );
        registry.register(
            "sportsbook_sequencer_work_seconds_interval_max",
            "Longest sequencer cycle without its journal append since the previous scrape",
            series.work_seconds_interval_max.clone(),
        );
        registry.register(
            "sportsbook_snapshots",
            "Book snapshots written, by writer (follower: periodic, by the engine's snapshot follower; projector: \
             periodic, by the in-process projector's follower book; catch_up: when the projector's are overdue; \
             sequencer: at shutdown, or while the follower is detached)",
            series.snapshots.clone(),
        );
        registry.register(
            "sportsbook_snapshot_seconds",
            "Time spent encoding and writing snapshots, by writer",
            series.snapshot_seconds.clone(),
        );
        registry.register(
            "sportsbook_snapshot_seconds_max",
            "Longest snapshot (encode and write), by writer",
            series.snapshot_seconds_max.clone(),
        );
        registry.register(
            "sportsbook_snapshots_skipped",
            "Periodic snapshots skipped because the snapshot follower was detached",
            series.snapshots_skipped.clone(),
        );
        registry.register(
            "sportsbook_snapshots_overdue",
            "Times the projector had written no snapshot for four intervals and a catch-up thread wrote one from the \
             journal (writer=\"catch_up\")",
            series.snapshots_overdue.clone(),
        );
        registry.register(
            "sportsbook_snapshot_failures",
            "Snapshot saves that failed, by any writer (a periodic one is tried again an interval later)",
            series.snapshot_failures.clone(),
        );
        registry.register(
            "sportsbook_snapshot_follower_detached",
            "Times the snapshot follower fell too far behind and was detached",
            series.follower_detached.clone(),
        );
        registry.register(
            "sportsbook_snapshot_follower_queue_commands",
            "Durable batches handed to the snapshot follower and not yet applied",
            series.follower_queue_commands.clone(),
        );
        registry.register(
            "sportsbook_snapshot_follower_failed",
            "1 once the snapshot follower decided a batch differently than the sequencer and stopped, else 0",
            series.follower_failed.clone(),
        );
        registry.register(
            "sportsbook_journal_segments_archived",
            "Journal segments moved out of the live journal into the compressed archive (journal retention)",
            series.journal_segments_archived.clone(),
        );
        registry.register(
            "sportsbook_journal_archived_bytes",
            "Bytes of the journal segments archived (before compression)",
            series.journal_archived_bytes.clone(),
        );
        registry.register(
            "sportsbook_journal_archive_bytes",
            "Bytes of the archive files written for them (compressed)",
            series.journal_archive_bytes.clone(),
        );
        registry.register(
            "sportsbook_journal_archive_failures",
            "Archiver runs that failed (the segments stay live; the next run tries again)",
            series.journal_archive_failures.clone(),
        );
        for writer in SNAPSHOT_WRITERS {
            let labels = WriterLabels { writer };
            let _ = series.snapshots.get_or_create(&labels);
            let _ = series.snapshot_seconds.get_or_create(&labels);
            let _ = series.snapshot_seconds_max.get_or_create(&labels);
        }
        series
    }

    /// Brings every series up to `stats`, and takes the pause maximum since the last scrape.
    fn update(&self, stats: &EngineStats) {
        use std::sync::atomic::Ordering::Relaxed;
        let seconds = |nanos: u64| nanos as f64 / 1e9;
        let _one_at_a_time = self.sync.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.pause_seconds_max.set(seconds(stats.sequencer_pause_nanos_max.load(Relaxed)));
        self.pause_seconds_interval_max.set(stats.take_recent_pause_max().as_secs_f64());
        self.work_seconds_max.set(seconds(stats.sequencer_work_nanos_max.load(Relaxed)));
        self.work_seconds_interval_max.set(stats.take_recent_work_max().as_secs_f64());
        self.cpu_seconds_max.set(seconds(stats.sequencer_cpu_nanos_max.load(Relaxed)));
        self.cpu_seconds_interval_max.set(stats.take_recent_cpu_max().as_secs_f64());
        let by_writer = [
            (
                "follower",
                &stats.snapshots_follower,
                &stats.snapshot_nanos_total_follower,
                &stats.snapshot_nanos_max_follower,
            ),
            (
                "catch_up",
                &stats.snapshots_catch_up,
                &stats.snapshot_nanos_total_catch_up,
                &stats.snapshot_nanos_max_catch_up,
            ),
            (
                "projector",
                &stats.snapshots_external,
                &stats.snapshot_nanos_total_external,
                &stats.snapshot_nanos_max_external,
            ),
            (
                "sequencer",
                &stats.snapshots_sequencer,
                &stats.snapshot_nanos_total_sequencer,
                &stats.snapshot_nanos_max_sequencer,
            ),
        ];
        for (writer, count, total, max) in by_writer {
            let labels = WriterLabels { writer };
            catch_up(&self.snapshots.get_or_create(&labels), count.load(Relaxed));
            let spent = self.snapshot_seconds.get_or_create(&labels);
            let behind = seconds(total.load(Relaxed)) - spent.get();
            if behind > 0.0 {
                spent.inc_by(behind);
            }
            self.snapshot_seconds_max.get_or_create(&labels).set(seconds(max.load(Relaxed)));
        }
        catch_up(&self.snapshots_skipped, stats.snapshots_skipped.load(Relaxed));
        catch_up(&self.snapshots_overdue, stats.snapshots_overdue.load(Relaxed));
        catch_up(&self.snapshot_failures, stats.snapshot_failures.load(Relaxed));
        catch_up(&self.follower_detached, stats.follower_detached.load(Relaxed));
        self.follower_queue_commands
            .set(i64::try_from(stats.follower_queue_commands.load(Relaxed)).unwrap_or(i64::MAX));
        self.follower_failed.set(i64::from(stats.follower_failed.load(Relaxed)));
        catch_up(&self.journal_segments_archived, stats.journal_segments_archived.load(Relaxed));
        catch_up(&self.journal_archived_bytes, stats.journal_archived_bytes.load(Relaxed));
        catch_up(&self.journal_archive_bytes, stats.journal_archive_bytes.load(Relaxed));
        catch_up(&self.journal_archive_failures, stats.journal_archive_failures.load(Relaxed));
    }
}

/// Raises a counter that mirrors an engine total to that total.
fn catch_up(counter: &Counter, total: u64) {
    let have = counter.get();
    if total > have {
        counter.inc_by(total - have);
    }
}

struct Inner {
    registry: Registry,
    engine: EngineSeries,
    bet_placement_seconds: HistogramFamily<OutcomeLabels>,
    bets: Family<CodeLabels, Counter>,
    book_batch_commands: Histogram,
    journal_sync_seconds: Histogram,
    idempotency_hits: Counter,
    book_inbox_depth: Gauge,
    book_stopped: Gauge,
    trading_mode: Family<SwitchLabels, Gauge>,
    book_size: Family<SizeLabels, Gauge>,
    breaker_state: Family<DependencyLabels, Gauge>,
    breaker_opens: Family<DependencyLabels, Counter>,
    edge_state_seconds: HistogramFamily<OpLabels>,
    edge_state_errors: Family<OpLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_request_seconds: HistogramFamily<RouteLabels>,
    http_shed: Family<ReasonLabels, Counter>,
    feed: feed::FeedMetrics,
    stream_connections: Gauge,
    stream_subscriptions: Gauge,
    stream_messages: Counter,
    stream_conflated: Counter,
    stream_dropped: Counter,
    stream_slow_consumers: Counter,
    stream_resyncs: Counter,
    stream_lag_seconds: Histogram,
    http_connections: Gauge,
    http_connections_closed: Family<ReasonLabels, Counter>,
    accept_errors: Counter,
    projector: ProjectorSeries,
}

/// The read side, set at each scrape from what the projector published.
struct ProjectorSeries {
    journal_position: Gauge,
    position: Gauge,
    lag_records: Gauge,
    up: Gauge,
    read_waits: Family<ReasonLabels, Counter>,
}

impl ProjectorSeries {
    fn new(registry: &mut Registry) -> ProjectorSeries {
        let series = ProjectorSeries {
            journal_position: Gauge::default(),
            position: Gauge::default(),
            lag_records: Gauge::default(),
            up: Gauge::default(),
            read_waits: Family::default(),
        };
        registry.register(
            "sportsbook_journal_position",
            "The journal position after the last durable batch",
            series.journal_position.clone(),
        );
        registry.register(
            "sportsbook_projector_position",
            "The journal position the read models are at (after their last committed batch)",
            series.position.clone(),
        );
        registry.register(
            "sportsbook_projector_lag_records",
            "Journal records durable but not yet in the read models",
            series.lag_records.clone(),
        );
        registry.register(
            "sportsbook_projector_up",
            "1 while the projector follows the journal, 0 when it is off, starting, stopped or failed",
            series.up.clone(),
        );
        registry.register(
            "sportsbook_history_read_waits",
            "History reads by how they met read-your-writes: immediate, waited, timed_out",
            series.read_waits.clone(),
        );
        for reason in ["immediate", "waited", "timed_out"] {
            let _ = series.read_waits.get_or_create(&ReasonLabels { reason });
        }
        series
    }
}

/// The process's metrics; cheap to clone (one shared registry).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Latencies of requests and bets: 100 µs to about 6.5 s.
fn request_seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let bet_placement_seconds: HistogramFamily<OutcomeLabels> =
            Family::new_with_constructor(request_seconds_histogram);
        registry.register(
            "sportsbook_bet_placement_seconds",
            "Time to place a bet, from request to durable decision, by outcome (status or rejection code)",
            bet_placement_seconds.clone(),
        );
        let bets = Family::<CodeLabels, Counter>::default();
        registry.register(
            "sportsbook_bets",
            "Bets placed, by code (accepted, pending or rejection code)",
            bets.clone(),
        );
        // 1 to 4,096 commands: up to `engine::BATCH_COMMANDS_MAX_DEFAULT`.
        let book_batch_commands = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "sportsbook_book_batch_commands",
            "Commands per durable batch of the book (group commit)",
            book_batch_commands.clone(),
        );
        // 10 µs to about 5 s.
        let journal_sync_seconds = Histogram::new(exponential_buckets(0.000_01, 2.0, 20));
        registry.register(
            "sportsbook_journal_sync_seconds",
            "Time of one journal append (write and sync) per batch",
            journal_sync_seconds.clone(),
        );
        let idempotency_hits = Counter::default();
        registry.register(
            "sportsbook_idempotency_hits",
            "Commands answered from their idempotency key without deciding again",
            idempotency_hits.clone(),
        );
        let book_inbox_depth = Gauge::default();
        registry.register(
            "sportsbook_book_inbox_depth",
            "Commands submitted to the book and not yet taken by the sequencer",
            book_inbox_depth.clone(),
        );
        let book_stopped = Gauge::default();
        registry.register(
            "sportsbook_book_stopped",
            "1 after a journal failure stopped the book, else 0",
            book_stopped.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "sportsbook_http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_request_seconds: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(request_seconds_histogram);
        registry.register(
            "sportsbook_http_request_seconds",
            "Time to answer an HTTP request, by route template",
            http_request_seconds.clone(),
        );
        let http_shed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "sportsbook_http_shed",
            "HTTP requests refused before their handler or the book, by reason (rate_limited, overloaded, timeout, \
             queue_delay)",
            http_shed.clone(),
        );
        let stream_connections = Gauge::default();
        registry.register(
            "sportsbook_stream_connections",
            "Open WebSocket stream connections",
            stream_connections.clone(),
        );
        let stream_subscriptions = Gauge::default();
        registry.register(
            "sportsbook_stream_subscriptions",
            "Stream subscriptions (markets, events, accounts) over every connection",
            stream_subscriptions.clone(),
        );
        let stream_messages = Counter::default();
        registry.register("sportsbook_stream_messages", "Stream messages written to sockets", stream_messages.clone());
        let stream_conflated = Counter::default();
        registry.register(
            "sportsbook_stream_conflated",
            "Queued prices replaced by a newer price of the same selection for a slow client",
            stream_conflated.clone(),
        );
        let stream_dropped = Counter::default();
        registry.register(
            "sportsbook_stream_dropped",
            "Stream updates dropped: lost before the dispatcher (every connection then resyncs) or queued for a \
             connection closed as a slow consumer",
            stream_dropped.clone(),
        );
        let stream_slow_consumers = Counter::default();
        registry.register(
            "sportsbook_stream_slow_consumers",
            "Stream connections closed as slow consumers (slow_consumer)",
            stream_slow_consumers.clone(),
        );
        let stream_resyncs = Counter::default();
        registry.register(
            "sportsbook_stream_resyncs",
            "Fresh snapshots sent to a connection after updates were lost",
            stream_resyncs.clone(),
        );
        // 50 µs to about 3.3 s.
        let stream_lag_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 17));
        registry.register(
            "sportsbook_stream_lag_seconds",
            "Time from a batch being durable to its update being written to a subscriber's socket (one observation per socket write, of its oldest update)",
            stream_lag_seconds.clone(),
        );
        // Series that exist before their first event, so that rates over them start at zero.
        for outcome in ["accepted", "pending"] {
            let _ = bets.get_or_create(&CodeLabels { code: outcome.to_string() });
            let _ = bet_placement_seconds.get_or_create(&OutcomeLabels { outcome: outcome.to_string() });
        }
        for reason in [ShedReason::RateLimited, ShedReason::Overloaded, ShedReason::Timeout, ShedReason::QueueDelay] {
            let _ = http_shed.get_or_create(&ReasonLabels { reason: reason.as_str() });
        }
        let trading_mode = Family::<SwitchLabels, Gauge>::default();
        registry.register(
            "sportsbook_trading_mode",
            "Degraded-mode switches of the book: 1 on, 0 off (pre_match_only, cached_odds)",
            trading_mode.clone(),
        );
        let book_size = Family::<SizeLabels, Gauge>::default();
        registry.register(
            "sportsbook_book_size",
            "What the book holds, after the last batch: open_bets, closed_bets (settled, cashed out or rejected, \
             waiting out the resettlement window), markets, events, transfers, idempotency_keys (within the book's \
             window); bets_issued and transfers_issued count every one ever",
            book_size.clone(),
        );
        let breaker_state = Family::<DependencyLabels, Gauge>::default();
        registry.register(
            "sportsbook_breaker_state",
            "Circuit breakers by dependency: 0 closed, 1 open (failing fast), 2 half-open (probing)",
            breaker_state.clone(),
        );
        let breaker_opens = Family::<DependencyLabels, Counter>::default();
        registry.register(
            "sportsbook_breaker_opens",
            "Times a circuit breaker opened, by dependency",
            breaker_opens.clone(),
        );
        for switch in ["pre_match_only", "cached_odds"] {
            let _ = trading_mode.get_or_create(&SwitchLabels { switch });
        }
        for dependency in ["book_reads", "edge_state"] {
            let _ = breaker_state.get_or_create(&DependencyLabels { dependency });
            let _ = breaker_opens.get_or_create(&DependencyLabels { dependency });
        }
        // 20 µs to about 5 s: a call to Redis on the same machine takes tens of µs.
        let edge_state_seconds: HistogramFamily<OpLabels> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_02, 2.0, 18)));
        registry.register(
            "sportsbook_edge_state_seconds",
            "Time of one call to the shared edge-state store (Redis), by operation, failed calls included",
            edge_state_seconds.clone(),
        );
        let edge_state_errors = Family::<OpLabels, Counter>::default();
        registry.register(
            "sportsbook_edge_state_errors",
            "Calls to the shared edge-state store that failed, timed out or were not made (breaker open), by \
             operation; each fell back to the in-process limiter or throttle, or answered 503",
            edge_state_errors.clone(),
        );
        for op in crate::edge::EdgeOp::ALL {
            let _ = edge_state_errors.get_or_create(&OpLabels { op: op.as_str() });
        }
        let http_connections = Gauge::default();
        registry.register(
            "sportsbook_http_connections",
            "Open HTTP connections (WebSocket streams leave them once upgraded)",
            http_connections.clone(),
        );
        let http_connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "sportsbook_http_connections_closed",
            "HTTP connections closed or refused by the server, by reason (header_timeout, idle_timeout, evicted: \
             closed to make room at the cap, refused: answered 503 at the cap)",
            http_connections_closed.clone(),
        );
        for reason in crate::connections::CloseReason::ALL {
            let _ = http_connections_closed.get_or_create(&ReasonLabels { reason: reason.as_str() });
        }
        let accept_errors = Counter::default();
        registry.register(
            "sportsbook_accept_errors",
            "Errors accepting connections that were not about one connection (out of files or memory)",
            accept_errors.clone(),
        );
        registry.register(
            "sportsbook_log_write_errors",
            "Log lines dropped because standard error (or output) could not be written, e.g. a full disk",
            LOG_WRITE_ERRORS.clone(),
        );
        let feed = feed::FeedMetrics::new();
        feed.register(&mut registry);
        let engine = EngineSeries::new(&mut registry);
        let projector = ProjectorSeries::new(&mut registry);
        Metrics(Arc::new(Inner {
            engine,
            registry,
            feed,
            bet_placement_seconds,
            bets,
            book_batch_commands,
            journal_sync_seconds,
            idempotency_hits,
            book_inbox_depth,
            book_stopped,
            trading_mode,
            book_size,
            breaker_state,
            breaker_opens,
            edge_state_seconds,
            edge_state_errors,
            http_requests,
            http_request_seconds,
            http_shed,
            stream_connections,
            stream_subscriptions,
            stream_messages,
            stream_conflated,
            stream_dropped,
            stream_slow_consumers,
            stream_resyncs,
            stream_lag_seconds,
            http_connections,
            http_connections_closed,
            accept_errors,
            projector,
        }))
    }

    /// The feed role's metrics, in the same registry.
    pub fn feed(&self) -> &feed::FeedMetrics {
        &self.0.feed
    }

    /// Records a bet placement: `outcome` is `accepted`, `pending` or the rejection code.
    pub fn record_bet(&self, outcome: &str, seconds: f64) {
        let inner = &self.0;
        inner.bets.get_or_create(&CodeLabels { code: outcome.to_string() }).inc();
        inner.bet_placement_seconds.get_or_create(&OutcomeLabels { outcome: outcome.to_string() }).observe(seconds);
    }

    /// Records an answered HTTP request. `route` is the matched path template (or
    /// `ROUTE_UNMATCHED`).
    pub fn record_http(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        let inner = &self.0;
        inner
            .http_requests
            .get_or_create(&HttpLabels { route: route.to_string(), method: method_label(method), status })
            .inc();
        inner.http_request_seconds.get_or_create(&RouteLabels { route: route.to_string() }).observe(seconds);
    }

    pub fn record_shed(&self, reason: ShedReason) {
        self.0.http_shed.get_or_create(&ReasonLabels { reason: reason.as_str() }).inc();
    }

    pub(crate) fn record_http_connections(&self, delta: i64) {
        self.0.http_connections.inc_by(delta);
    }

    pub(crate) fn record_connection_closed(&self, reason: crate::connections::CloseReason) {
        self.0.http_connections_closed.get_or_create(&ReasonLabels { reason: reason.as_str() }).inc();
    }

    pub(crate) fn record_accept_error(&self) {
        self.0.accept_errors.inc();
    }

    pub(crate) fn record_stream_connections(&self, delta: i64) {
        self.0.stream_connections.inc_by(delta);
    }

    pub(crate) fn record_stream_subscriptions(&self, delta: i64) {
        self.0.stream_subscriptions.inc_by(delta);
    }

    /// Messages written to one socket, with the lag of those that carry book updates.
    /// One socket write of `messages`; `oldest_lag_seconds`: how long after its commit the
    /// oldest update in the write was written.
    pub(crate) fn record_stream_sent(&self, messages: u64, oldest_lag_seconds: Option<f64>) {
        self.0.stream_messages.inc_by(messages);
        if let Some(lag) = oldest_lag_seconds {
            self.0.stream_lag_seconds.observe(lag);
        }
    }

    /// Prices dropped from a queue because a newer price of the same selection replaced them.
    pub(crate) fn record_stream_conflated(&self, replaced: u64) {
        self.0.stream_conflated.inc_by(replaced);
    }

    /// Updates the hook could not hand to the dispatcher.
    pub(crate) fn record_stream_lost(&self, updates: u64) {
        self.0.stream_dropped.inc_by(updates);
    }

    /// A connection closed as a slow consumer, with the messages queued for it.
    pub(crate) fn record_stream_slow_consumer(&self, dropped: u64) {
        self.0.stream_slow_consumers.inc();
        self.0.stream_dropped.inc_by(dropped);
    }

    pub(crate) fn record_stream_resync(&self) {
        self.0.stream_resyncs.inc();
    }

    /// The hook to pass as `EngineOptions::on_commit`: it runs on the sequencer thread after
    /// each durable batch, so it only updates atomics and never blocks.
    pub fn engine_hook(&self) -> Box<dyn FnMut(&Committed<'_>) + Send> {
        let metrics = self.clone();
        Box::new(move |committed: &Committed<'_>| metrics.record_commit(committed))
    }

    /// A circuit breaker opened.
    pub fn record_breaker_open(&self, dependency: &'static str) {
        self.0.breaker_opens.get_or_create(&DependencyLabels { dependency }).inc();
    }

    /// The state of a circuit breaker, read at scrape time.
    /// One call to the shared edge-state store and how long it took.
    pub(crate) fn record_edge_call(&self, op: crate::edge::EdgeOp, seconds: f64) {
        self.0.edge_state_seconds.get_or_create(&OpLabels { op: op.as_str() }).observe(seconds);
    }

    /// A call to the shared edge-state store that failed (or was not made: breaker open).
    pub(crate) fn record_edge_error(&self, op: crate::edge::EdgeOp) {
        self.0.edge_state_errors.get_or_create(&OpLabels { op: op.as_str() }).inc();
    }

    pub fn set_breaker_state(&self, dependency: &'static str, state: i64) {
        self.0.breaker_state.get_or_create(&DependencyLabels { dependency }).set(state);
    }

    fn record_commit(&self, committed: &Committed<'_>) {
        let inner = &self.0;
        let mode = committed.book.degraded().mode();
        inner
            .trading_mode
            .get_or_create(&SwitchLabels { switch: "pre_match_only" })
            .set(i64::from(mode.pre_match_only));
        inner.trading_mode.get_or_create(&SwitchLabels { switch: "cached_odds" }).set(i64::from(mode.cached_odds));
        let sizes = committed.book.sizes();
        for (what, value) in [
            ("open_bets", sizes.open_bets),
            ("closed_bets", sizes.closed_bets),
            ("bets_issued", sizes.bets_issued),
            ("markets", sizes.markets),
            ("events", sizes.events),
            ("transfers", sizes.transfers),
            ("transfers_issued", sizes.transfers_issued),
            ("idempotency_keys", sizes.idempotency_keys),
        ] {
            inner.book_size.get_or_create(&SizeLabels { what }).set(value as i64);
        }
        inner.book_batch_commands.observe(committed.commands as f64);
        inner.journal_sync_seconds.observe(committed.sync_nanos as f64 / 1e9);
        let replays =
            committed.events.iter().filter(|event| matches!(event, BookEvent::IdempotentReplay { .. })).count();
        if replays > 0 {
            inner.idempotency_hits.inc_by(replays as u64);
        }
    }

    /// A keyed write answered from the read models' first reply (a retry after the book's
    /// idempotency window): counted with the book's own replays.
    pub fn record_first_reply(&self) {
        self.0.idempotency_hits.inc();
    }

    /// A history read met read-your-writes `immediate`ly, `waited`, or `timed_out`.
    pub fn record_read_wait(&self, how: &'static str) {
        self.0.projector.read_waits.get_or_create(&ReasonLabels { reason: how }).inc();
    }

    /// The read side at this moment: the journal's end, and the read models' position when a
    /// projector runs in this process (`None`: off).
    pub fn set_projector(&self, journal_position: u64, models: Option<(u64, bool)>) {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let series = &self.0.projector;
        series.journal_position.set(gauge(journal_position));
        let (position, up) = models.unwrap_or((0, false));
        series.position.set(gauge(position));
        series.lag_records.set(gauge(journal_position.saturating_sub(position)));
        series.up.set(i64::from(up));
    }

    /// Renders every metric in the OpenMetrics text format (`METRICS_CONTENT_TYPE`), reading
    /// the engine's gauges at this moment.
    pub fn encode(&self, stats: &EngineStats) -> String {
        use std::sync::atomic::Ordering;
        let inner = &self.0;
        let depth = stats.inbox_depth.load(Ordering::Relaxed);
        inner.book_inbox_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        inner.book_stopped.set(i64::from(stats.stopped.load(Ordering::Relaxed)));
        inner.engine.update(stats);
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a metric.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &inner.registry) {
            tracing::error!(%error, "encoding metrics");
        }
        text
    }
}

/// The method as a label value: the standard methods by name, anything else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
