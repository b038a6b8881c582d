//! The gateway: the public HTTP API of `../shared/API.md` in front of the book.
//!
//! Stateless apart from caches: every decision is the book's. A handler validates and parses
//! the request into a book `Command`, submits it through the engine (bounded: a full book
//! answers 503 at once), waits for the durable reply, and renders it. Reads run against the
//! book's committed state.

mod admission;
mod auth;
mod breaker;
mod catalog;
mod compliance;
mod degraded;
mod dto;
mod error;
mod feed;
mod limits;
mod metrics;
mod openapi;
mod operators;
mod ops;
mod outcome;
mod payments;
mod players;
pub mod requests;
mod stream;
mod time;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use ::feed::{FeedHub, ProviderSettings};
pub use admission::{Admission, ADMISSION_INTERVAL, ADMISSION_SAMPLES_MIN, ADMISSION_TARGET};
use axum::extract::DefaultBodyLimit;
use axum::Router;
use book::{Book, Command, Reply};
pub use breaker::{Admit, Breaker, BreakerState, BREAKER_FAILURES, BREAKER_OPEN_FOR};
use engine::{EngineError, EngineHandle};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use auth::{hash_password, random_token, sha256_hex, Auth, Principal, API_KEY_PREFIX};
pub use compliance::{AUDIT_PAGE_COMMANDS_MAX, REPORT_ROWS_PER_READ_MAX, RG_EVENTS_SCAN_RECORDS_MAX};
pub use error::ApiError;
pub use limits::{
    RateLimit, RateLimits, BURST_PER_ADDRESS, BURST_PER_PRINCIPAL, HTTP_IN_FLIGHT_MAX, RATE_LIMIT_KEYS_MAX,
    RATE_PER_ADDRESS_PER_SECOND, RATE_PER_PRINCIPAL_PER_SECOND, REQUEST_TIMEOUT,
};
pub use metrics::{Metrics, ShedReason, METRICS_CONTENT_TYPE};
pub use ops::{RequestIds, READY_BOOK_TIMEOUT, REQUEST_ID_BYTES_MAX};
pub use outcome::outcome_unknown;
pub use payments::{
    PayFuture, PaymentProvider, Payments, Payout, PayoutOutcome, ProviderError, SandboxProvider, PAYMENT_JOBS_MAX,
    PAYMENT_PROVIDER_TIMEOUT, PAYMENT_SWEEP_INTERVAL, PAYMENT_WAIT,
};
pub use stream::{
    StreamConfig, Streams, STREAM_CLIENT_MESSAGES_BURST, STREAM_CLIENT_MESSAGES_PER_SECOND,
    STREAM_CLIENT_MESSAGE_BYTES_MAX, STREAM_CONNECTIONS_MAX, STREAM_CONNECTIONS_PER_PRINCIPAL_MAX,
    STREAM_DISPATCH_BATCHES_MAX, STREAM_HEARTBEAT_INTERVAL, STREAM_IDLE_TIMEOUT, STREAM_QUEUE_MESSAGES_HARD_MAX,
    STREAM_QUEUE_MESSAGES_MAX, STREAM_RETAINED_UPDATES_MAX, STREAM_SNAPSHOT_BETS_MAX, STREAM_SUBSCRIPTIONS_MAX,
    STREAM_WRITE_TIMEOUT,
};
pub use time::{format_rfc3339, parse_rfc3339};

/// Bytes of a request body; larger bodies get 413.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Requests waiting on the book at once; beyond it, 503 `overloaded` at once.
pub const BOOK_IN_FLIGHT_MAX: usize = 8_192;
/// How long a request waits for the book's reply to a read before giving up with 503, and for
/// the durable reply to a command before giving up with 504 `outcome_unknown` (the command was
/// handed to the book: it may still be decided).
pub const BOOK_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Items of one page of a list.
pub const PAGE_ITEMS_MAX: usize = 200;
pub const PAGE_ITEMS_DEFAULT: usize = 50;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Secret of the HS256 access tokens (from the environment or a file, never the repo).
    pub jwt_secret: Vec<u8>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// `SPORTSBOOK_ADMIN_KEY`: a bootstrap operator key with every scope.
    pub admin_key: Option<String>,
    pub body_bytes_max: usize,
    pub book_in_flight_max: usize,
    pub book_reply_timeout: Duration,
    /// Rate limit per client address; `None` turns it off (e.g. for a benchmark from one host).
    pub rate_limit_per_address: Option<RateLimit>,
    /// Rate limit per credential (`Authorization` header); `None` turns it off.
    pub rate_limit_per_principal: Option<RateLimit>,
    /// Keys remembered per rate-limit table.
    pub rate_limit_keys_max: usize,
    /// HTTP requests handled at once; beyond it, 503 `overloaded` at once.
    pub http_in_flight_max: usize,
    /// How long a request may take before it is answered 503 `timeout`.
    pub request_timeout: Duration,
    /// How feed providers are watched unless configured one by one (staleness limit, what
    /// happens to their markets when stale).
    pub feed_defaults: ProviderSettings,
    /// Limits of `GET /v1/stream` (subscriptions, connections, queues, heartbeats).
    pub stream: StreamConfig,
    /// The standing queue delay of the book beyond which new commands are shed (503).
    pub admission_target: Duration,
    /// Replies an interval needs before admission control judges it.
    pub admission_samples_min: u32,
    /// Who pays withdrawals out (`payments.rs`); the sandbox provider pays at once.
    pub payment_provider: Arc<dyn PaymentProvider>,
    /// How often open withdrawal holds without a payment job are looked for (and retried).
    pub payment_sweep_interval: Duration,
    /// How long the withdrawal route waits for the payment before answering with the hold.
    pub payment_wait: Duration,
}

impl GatewayConfig {
    pub fn new(jwt_secret: Vec<u8>) -> GatewayConfig {
        GatewayConfig {
            jwt_secret,
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3_600),
            admin_key: None,
            body_bytes_max: BODY_BYTES_MAX,
            book_in_flight_max: BOOK_IN_FLIGHT_MAX,
            book_reply_timeout: BOOK_REPLY_TIMEOUT,
            rate_limit_per_address: Some(RateLimit::PER_ADDRESS),
            rate_limit_per_principal: Some(RateLimit::PER_PRINCIPAL),
            rate_limit_keys_max: RATE_LIMIT_KEYS_MAX,
            http_in_flight_max: HTTP_IN_FLIGHT_MAX,
            request_timeout: REQUEST_TIMEOUT,
            feed_defaults: ProviderSettings::default(),
            stream: StreamConfig::default(),
            admission_target: ADMISSION_TARGET,
            admission_samples_min: ADMISSION_SAMPLES_MIN,
            payment_provider: Arc::new(SandboxProvider),
            payment_sweep_interval: PAYMENT_SWEEP_INTERVAL,
            payment_wait: PAYMENT_WAIT,
        }
    }
}

struct Inner {
    engine: EngineHandle,
    config: GatewayConfig,
    auth: Auth,
    in_flight: Semaphore,
    metrics: Metrics,
    rate_limits: RateLimits,
    http_in_flight: Semaphore,
    feed: FeedHub,
    read_breaker: Breaker,
    admission: Admission,
    streams: Streams,
    payments: Payments,
}

/// Shared state of every handler: cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Builds the state, starts the stream's dispatcher and loads the operator keys from the
    /// book. `metrics` and `streams` are the ones whose `engine_hook`s the engine was started
    /// with (`Streams::new(&config, &metrics)`).
    pub async fn new(
        engine: EngineHandle,
        config: GatewayConfig,
        metrics: Metrics,
        streams: Streams,
    ) -> Result<AppState, ApiError> {
        streams.start(engine.clone());
        let auth = Auth::new(
            &config.jwt_secret,
            config.access_token_ttl,
            config.refresh_token_ttl,
            config.admin_key.as_deref(),
        );
        let rate_limits =
            RateLimits::new(config.rate_limit_per_address, config.rate_limit_per_principal, config.rate_limit_keys_max);
        let feed = FeedHub::new(engine.clone(), metrics.feed().clone(), config.feed_defaults);
        feed.spawn_watchdog();
        // The payments step resumes what a restart left open at once (`payments.rs`).
        let payments = Payments::new(engine.clone(), config.payment_provider.clone());
        payments.start(config.payment_sweep_interval);
        let state = AppState(Arc::new(Inner {
            feed,
            read_breaker: Breaker::new(breaker::BREAKER_FAILURES, breaker::BREAKER_OPEN_FOR),
            admission: Admission::new(
                config.admission_target,
                admission::ADMISSION_INTERVAL,
                config.admission_samples_min,
            ),
            in_flight: Semaphore::new(config.book_in_flight_max),
            http_in_flight: limits::http_in_flight(config.http_in_flight_max),
            engine,
            config,
            auth,
            metrics,
            rate_limits,
            streams,
            payments,
        }));
        state.reload_api_keys().await?;
        Ok(state)
    }

    pub fn engine(&self) -> &EngineHandle {
        &self.0.engine
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.0.config
    }

    pub fn auth(&self) -> &Auth {
        &self.0.auth
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The feed role: providers' freshness, failover and the push route's way to the book.
    pub fn feed(&self) -> &FeedHub {
        &self.0.feed
    }

    pub fn streams(&self) -> &Streams {
        &self.0.streams
    }

    /// The payments step: withdrawal holds on their way to the payment provider.
    pub fn payments(&self) -> &Payments {
        &self.0.payments
    }

    pub fn rate_limits(&self) -> &RateLimits {
        &self.0.rate_limits
    }

    /// The bound on HTTP requests in flight (`GatewayConfig::http_in_flight_max`).
    pub fn http_in_flight(&self) -> &Semaphore {
        &self.0.http_in_flight
    }

    pub async fn reload_api_keys(&self) -> Result<(), ApiError> {
        let keys = self.read(|book| book.api_keys().to_vec()).await?;
        self.auth().load_api_keys(&keys);
        Ok(())
    }

    /// Submits a command and waits for its durable reply. A full book is 503 at once, never a
    /// growing queue.
    pub async fn submit(&self, command: Command) -> Result<Reply, ApiError> {
        self.submit_then(command, |_, _| ()).await.map(|(reply, ())| reply)
    }

    /// `submit`, with `then(book, reply)` run on the sequencer thread right after the reply's
    /// batch is durable: one trip to the book for a command and what its answer shows. Keep
    /// `then` to copying what is needed; format it here, off the sequencer thread.
    pub async fn submit_then<R: Send + 'static>(
        &self,
        command: Command,
        then: impl FnOnce(&Book, &Reply) -> R + Send + 'static,
    ) -> Result<(Reply, R), ApiError> {
        if !self.0.admission.admit() {
            self.metrics().record_shed(ShedReason::QueueDelay);
            return Err(ApiError::overloaded());
        }
        let _permit = self.0.in_flight.try_acquire().map_err(|_| ApiError::overloaded())?;
        let started = std::time::Instant::now();
        let receiver = self.engine().try_submit_then(command, then)?;
        let answer = self.durable_reply(receiver).await;
        self.0.admission.record(started.elapsed());
        answer
    }

    /// Waits for a submitted command's durable outcome, at most `book_reply_timeout`. The
    /// command reached the book, so whatever keeps its reply from coming (too slow a journal,
    /// a book that stopped with it in flight) is 504 `outcome_unknown`, never a code that means
    /// "not done": the client retries with the same idempotency key to learn the outcome.
    pub(crate) async fn durable_reply<R>(
        &self,
        receiver: oneshot::Receiver<Result<R, EngineError>>,
    ) -> Result<R, ApiError> {
        outcome::Handed::mark_current();
        match tokio::time::timeout(self.config().book_reply_timeout, receiver).await {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(error))) => {
                tracing::warn!(%error, "a command in flight has no durable reply");
                Err(outcome_unknown())
            }
            Ok(Err(_)) => {
                tracing::warn!("the book stopped with a command in flight");
                Err(outcome_unknown())
            }
            Err(_) => Err(outcome_unknown()),
        }
    }

    /// Runs `read` against the book's committed state.
    pub async fn read<R: Send + 'static>(&self, read: impl FnOnce(&Book) -> R + Send + 'static) -> Result<R, ApiError> {
        self.ask(|engine| engine.read_async(read)).await
    }

    /// Sends a request that the sequencer answers between batches (a read, the chain head, a
    /// journal page) and awaits the answer, bounded like `submit`: 503 at once when the book
    /// is full, 503 when it does not answer in time.
    pub(crate) async fn ask<R: Send + 'static>(
        &self,
        request: impl FnOnce(&EngineHandle) -> Result<oneshot::Receiver<R>, EngineError>,
    ) -> Result<R, ApiError> {
        let breaker = &self.0.read_breaker;
        if let Admit::Refuse(wait) = breaker.admit() {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the book is not answering reads in time; retry shortly",
            )
            .retry_after(wait.as_secs().max(1)));
        }
        let Ok(_permit) = self.0.in_flight.try_acquire() else {
            breaker.release();
            return Err(ApiError::overloaded());
        };
        let receiver = match request(self.engine()) {
            Ok(receiver) => receiver,
            Err(error) => {
                breaker.release();
                return Err(error.into());
            }
        };
        let answer = tokio::time::timeout(self.config().book_reply_timeout, receiver).await;
        match answer {
            Ok(Ok(value)) => {
                breaker.success();
                Ok(value)
            }
            Ok(Err(_)) => {
                breaker.release();
                Err(ApiError::unavailable())
            }
            Err(_) => {
                if breaker.failure() {
                    tracing::warn!(open_for = ?breaker::BREAKER_OPEN_FOR, "book reads time out: breaker open");
                    self.metrics().record_breaker_open("book_reads");
                }
                Err(ApiError::overloaded())
            }
        }
    }

    /// The breaker around reads of the book.
    pub fn read_breaker(&self) -> &Breaker {
        &self.0.read_breaker
    }
}

/// The whole API as a router.
///
/// Every request, outermost first: gets a request id (the client's `x-request-id` if fit, else
/// a new one) that is echoed in the response; runs in a `tracing` span that logs its answer;
/// is counted and timed by route template; passes admission control (rate limits, the
/// in-flight bound, the deadline; see `limits.rs`); and reaches its handler with the body
/// limit in force. The layers run after routing, so the route template is known to all.
pub fn app(state: AppState) -> Router {
    let body_bytes_max = state.config().body_bytes_max;
    let operations = ServiceBuilder::new()
        .map_request(ops::drop_unfit_request_id)
        .layer(SetRequestIdLayer::new(ops::REQUEST_ID_HEADER.clone(), RequestIds::new()))
        .layer(PropagateRequestIdLayer::new(ops::REQUEST_ID_HEADER.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(ops::request_span)
                .on_response(ops::log_response)
                // `log_response` already logs every status, 5xx included.
                .on_failure(()),
        )
        .layer(axum::middleware::from_fn_with_state(state.clone(), ops::observe))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::admit));
    Router::new()
        .merge(ops::routes())
        .merge(players::routes())
        .merge(catalog::routes())
        .merge(operators::routes())
        .merge(compliance::routes())
        .merge(feed::routes())
        .merge(degraded::routes())
        .merge(payments::routes())
        .route("/v1/stream", axum::routing::get(stream::stream))
        // Unknown paths and methods answer in the API's error shape too.
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .layer(operations)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let streams = state.streams().clone();
    let shutdown = async move {
        shutdown.await;
        // Upgraded connections are not HTTP requests that graceful shutdown waits for: tell
        // the stream's clients to go (close frame `going_away`).
        streams.close_all();
    };
    let listener = axum::serve::ListenerExt::tap_io(listener, stream::socket_options(state.streams().config()));
    axum::serve(listener, app(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
