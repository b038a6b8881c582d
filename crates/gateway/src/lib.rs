//! The gateway: the public HTTP API of `../shared/API.md` in front of the book.
//!
//! Stateless apart from caches: every decision is the book's. A handler validates and parses
//! the request into a book `Command`, submits it through the engine (bounded: a full book
//! answers 503 at once), waits for the durable reply, and renders it. Reads run against the
//! book's committed state.

mod adjustments;
mod admission;
mod auth;
mod breaker;
mod callbacks;
mod catalog;
mod cluster;
mod compliance;
mod connections;
mod degraded;
mod dto;
mod edge;
mod error;
mod feed;
mod fx;
mod history;
mod idempotency;
mod kyc;
mod limits;
mod metrics;
pub mod monitoring;
mod openapi;
mod operators;
mod ops;
mod outcome;
mod payments;
mod players;
mod reality;
pub mod register;
pub mod requests;
mod staff;
mod stream;
mod time;

use std::sync::Arc;
use std::time::Duration;

pub use ::feed::{FeedHub, ProviderSettings};
pub use admission::{Admission, ADMISSION_INTERVAL, ADMISSION_SAMPLES_MIN, ADMISSION_TARGET};
use axum::extract::DefaultBodyLimit;
use axum::Router;
use book::{Book, Command, Origin, Reply};
pub use breaker::{Admit, Breaker, BreakerState, BREAKER_FAILURES, BREAKER_OPEN_FOR};
use engine::{EngineError, EngineHandle};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use auth::{
    check_new_password, hash_password, password_hash_workers_default, random_token, sha256_hex, Auth, AuthOptions,
    LoginKey, PasswordHashPool, Principal, PrincipalKey, API_KEY_PREFIX, LOGIN_FAILURES_MAX, LOGIN_THROTTLE_KEYS_MAX,
    LOGIN_WINDOW, PASSWORD_CHARS_MAX, PASSWORD_CHARS_MIN, PASSWORD_HASH_QUEUE_MAX, PASSWORD_HASH_WORKERS_MAX,
    REFRESH_TOKENS_MAX, REVOKED_SESSIONS_MAX,
};
pub use callbacks::{
    sign as sign_callback, CALLBACK_IDS_MAX, CALLBACK_ID_BYTES_MAX, CALLBACK_SECRET_BYTES_MIN, CALLBACK_WINDOW,
    SIGNATURE_HEADER,
};
pub use cluster::{
    lease_expiry, ClusterStatus, ClusterView, FeedView, FollowerView, GatewayView, IdentityWatch, LeaderView,
};
pub use compliance::{AUDIT_PAGE_COMMANDS_MAX, RG_ACCOUNTS_SCAN_MAX};
pub use connections::{
    ACCEPT_ERROR_BACKOFF, CONNECTIONS_MAX, CONNECTION_CLOSE_GRACE, HEADER_READ_TIMEOUT, KEEP_ALIVE_IDLE_TIMEOUT,
    REFUSALS_IN_FLIGHT_MAX,
};
pub use edge::{
    check_key_prefix, check_redis_url, Checked, EdgeError, EdgeFuture, EdgeOp, EdgeSettings, EdgeState,
    EdgeStateConfig, EdgeStore, LocalEdge, LoginOutcome, LoginReservation, RedisEdge, RefreshGrant, SessionId,
    TokenHash, EDGE_KEY_PREFIX_BYTES_MAX, EDGE_KEY_PREFIX_DEFAULT, EDGE_STATE_BREAKER_OPEN_FOR, EDGE_STATE_TIMEOUT,
    LOGIN_RESERVATION_TTL, TOTP_STEP_MEMORY,
};
pub use error::ApiError;
pub use fx::FX_RATES_AGE_MAX;
pub use history::{
    ACCOUNT_QUERY_BYTES_MAX, ACCOUNT_RECENT_ITEMS, JOURNAL_POSITION_HEADER, MIN_POSITION_HEADER,
    PROJECTOR_LAG_READY_MAX, READ_YOUR_WRITES_WAIT,
};
pub use idempotency::{KEYED_WRITE_LAG_SHARE, KEYED_WRITE_MODELS_WAIT};
pub use ipnet::IpNet;
pub use kyc::{Jurisdiction, KycSettings, SandboxOutcome, JURISDICTIONS_MAX, KYC_SANDBOX_PROVIDER};
pub use limits::{
    parse_trusted_proxy, ClientAddress, RateLimit, RateLimits, BURST_PER_ADDRESS, BURST_PER_PRINCIPAL,
    HTTP_IN_FLIGHT_MAX, RATE_LIMIT_KEYS_MAX, RATE_PER_ADDRESS_PER_SECOND, RATE_PER_PRINCIPAL_PER_SECOND,
    REQUEST_TIMEOUT, TRUSTED_PROXIES_MAX,
};
pub use metrics::{log_write_errors, record_log_write_error, Metrics, ShedReason, METRICS_CONTENT_TYPE};
pub use ops::{RequestIds, READY_BOOK_TIMEOUT, REQUEST_ID_BYTES_MAX};
pub use outcome::outcome_unknown;
pub use payments::{
    CallbackSandbox, CallbackSink, CollectFuture, Collection, DeliverFuture, PayFuture, PaymentCallbacks,
    PaymentProvider, Payments, Payout, PayoutOutcome, ProviderError, SandboxPayouts, SandboxProvider, PAYMENT_JOBS_MAX,
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
    /// Rate limit per authenticated principal (player account or API key, however its
    /// credential is spelled); `None` turns it off.
    pub rate_limit_per_principal: Option<RateLimit>,
    /// Addresses (or CIDR ranges) of reverse proxies whose `Forwarded` / `X-Forwarded-For`
    /// name the client: per-address limits and login throttles then count the client, not the
    /// proxy. From any other peer the headers are ignored. Empty by default; at most
    /// `TRUSTED_PROXIES_MAX` entries.
    pub trusted_proxies: Vec<IpNet>,
    /// Password hashes (registrations, logins) computed at once: one argon2 hash holds 19 MiB
    /// while it runs. Defaults to the cores, at most `PASSWORD_HASH_WORKERS_MAX`.
    pub password_hash_workers: usize,
    /// Password hashes waiting for a worker; past it, 503 `overloaded` with `Retry-After`.
    pub password_hash_queue_max: usize,
    /// File keeping logged-out sessions until their access tokens expire, so that a restart
    /// does not revive them; `None` keeps them in memory only. `serve` uses
    /// `DIR/revoked-sessions`. Used by in-process edge state only (a shared store keeps them).
    pub revoked_sessions_path: Option<std::path::PathBuf>,
    /// Where rate-limit buckets, login throttles, refresh tokens, revocations and TOTP steps
    /// are kept: in this process (the default), or in Redis shared by several gateways
    /// (`serve --edge-state redis://...`).
    pub edge_state: EdgeStateConfig,
    /// How long one call to a shared edge-state store may take (`EDGE_STATE_TIMEOUT`).
    pub edge_state_timeout: Duration,
    /// Keys remembered per rate-limit table.
    pub rate_limit_keys_max: usize,
    /// HTTP requests handled at once; beyond it, 503 `overloaded` at once.
    pub http_in_flight_max: usize,
    /// How long a request may take before it is answered 503 `timeout`.
    pub request_timeout: Duration,
    /// Runs the feed hub's staleness watchdog (failovers between a provider's sources, stale
    /// and fresh transitions submitted to the book). On `serve`; off on a cluster gateway,
    /// where the feed role (`sportsbook feed`, one active per cluster) runs it: N gateways
    /// would submit each transition N times.
    pub feed_watchdog: bool,
    /// How feed providers are watched unless configured one by one (staleness limit, what
    /// happens to their markets when stale).
    pub feed_defaults: ProviderSettings,
    /// Limits of `GET /v1/stream` (subscriptions, connections, queues, heartbeats).
    pub stream: StreamConfig,
    /// The standing queue delay of the book beyond which new commands are shed (503).
    pub admission_target: Duration,
    /// Replies an interval needs before admission control judges it.
    pub admission_samples_min: u32,
    // Connections and `/metrics` (issue 11, items 3 and 14; `connections.rs`, `ops.rs`).
    /// Time a client has to send a complete request head (`HEADER_READ_TIMEOUT`).
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request (`KEEP_ALIVE_IDLE_TIMEOUT`).
    pub keep_alive_idle_timeout: Duration,
    /// HTTP connections open at once; at the cap the longest idle are closed, and with every
    /// one busy a new one is answered 503 (`CONNECTIONS_MAX`).
    pub connections_max: usize,
    /// A bearer token required on `/metrics` (`SPORTSBOOK_METRICS_KEY`). Without one, the
    /// main listener answers `/metrics` to loopback clients only.
    pub metrics_key: Option<String>,
    /// `/metrics` is served on its own listener (`serve_metrics`), not on the main one.
    pub metrics_listener_separate: bool,
    /// How old the exchange-rate table may get before `/readyz` warns `fx_rates_stale`.
    pub fx_rates_age_max: Duration,
    /// Who pays withdrawals out (`payments.rs`); the sandbox provider pays at once.
    pub payment_provider: Arc<dyn PaymentProvider>,
    /// How often open withdrawal holds without a payment job are looked for (and retried).
    pub payment_sweep_interval: Duration,
    /// How long the withdrawal route waits for the payment before answering with the hold.
    pub payment_wait: Duration,
    /// Deposits wait for the provider's signed callback (`payments.rs`, `callbacks.rs`);
    /// `None` (the default): they complete at once, as the sandbox always did.
    pub payment_callbacks: Option<PaymentCallbacks>,
    /// Identity verification: jurisdictions, the sandbox's answer, the webhooks' secret
    /// (`kyc.rs`). The default has no jurisdiction: the sandbox verifies every player at
    /// registration.
    pub kyc: KycSettings,
    /// The national self-exclusion register asked at registration and login (`register.rs`):
    /// off by default here; `serve` and the demo default to the sandbox with an empty list.
    pub exclusion_register: register::ExclusionRegisterConfig,
    /// How long one question to the register may take (`EXCLUSION_REGISTER_TIMEOUT`).
    pub exclusion_register_timeout: Duration,
    /// How long a login's `NotFound` is remembered (`EXCLUSION_REGISTER_CACHE_TTL`).
    pub exclusion_register_cache_ttl: Duration,
    /// Withdrawals above this amount (in the base currency) wait for a compliance or admin
    /// staff member's approval; at or below it the payments step approves them. `None` (the
    /// default): no approval step.
    pub withdrawal_approval_above: Option<domain::Money>,
    /// The read models the history routes serve from (bets, statements, the customer view,
    /// operator search), kept by a projector in this process; `None` (`serve --projector off`):
    /// those routes answer 503 `unavailable`.
    pub read_models: Option<projector::ReadModels>,
    /// How long a history read waits for the models to reach the reader's last write before
    /// answering 503 `unavailable` (`READ_YOUR_WRITES_WAIT`).
    pub read_your_writes_wait: Duration,
    /// Journal records the models may be behind before `/readyz` says `projector_lagging`
    /// (`PROJECTOR_LAG_READY_MAX`).
    pub projector_lag_ready_max: u64,
    /// The projector was turned off on purpose (`serve --projector off`): `/readyz` warns
    /// `projector_off` (the node still takes bets; history routes answer 503).
    pub projector_off_warning: bool,
    /// Cluster mode (`sportsbook gateway`): the cluster's state for `/readyz`, `/metrics` and
    /// `GET /v1/admin/cluster`; `None` on `serve`.
    pub cluster: Option<Arc<dyn ClusterStatus>>,
    /// Reloads the API key and staff caches when the book's change (its `engine_hook` must be
    /// among the engine's commit hooks). A cluster gateway needs it: keys and staff change
    /// through other gateways too.
    pub identity_watch: Option<IdentityWatch>,
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
            trusted_proxies: Vec::new(),
            password_hash_workers: password_hash_workers_default(),
            password_hash_queue_max: PASSWORD_HASH_QUEUE_MAX,
            revoked_sessions_path: None,
            edge_state: EdgeStateConfig::InProcess,
            edge_state_timeout: EDGE_STATE_TIMEOUT,
            rate_limit_keys_max: RATE_LIMIT_KEYS_MAX,
            http_in_flight_max: HTTP_IN_FLIGHT_MAX,
            request_timeout: REQUEST_TIMEOUT,
            feed_watchdog: true,
            feed_defaults: ProviderSettings::default(),
            stream: StreamConfig::default(),
            admission_target: ADMISSION_TARGET,
            admission_samples_min: ADMISSION_SAMPLES_MIN,
            header_read_timeout: HEADER_READ_TIMEOUT,
            keep_alive_idle_timeout: KEEP_ALIVE_IDLE_TIMEOUT,
            connections_max: CONNECTIONS_MAX,
            metrics_key: None,
            metrics_listener_separate: false,
            fx_rates_age_max: FX_RATES_AGE_MAX,
            payment_provider: Arc::new(SandboxProvider),
            payment_sweep_interval: PAYMENT_SWEEP_INTERVAL,
            payment_wait: PAYMENT_WAIT,
            payment_callbacks: None,
            kyc: KycSettings::default(),
            exclusion_register: register::ExclusionRegisterConfig::Off,
            exclusion_register_timeout: register::EXCLUSION_REGISTER_TIMEOUT,
            exclusion_register_cache_ttl: register::EXCLUSION_REGISTER_CACHE_TTL,
            withdrawal_approval_above: None,
            read_models: None,
            read_your_writes_wait: READ_YOUR_WRITES_WAIT,
            projector_lag_ready_max: PROJECTOR_LAG_READY_MAX,
            projector_off_warning: false,
            cluster: None,
            identity_watch: None,
        }
    }
}

pub(crate) struct Inner {
    engine: EngineHandle,
    config: GatewayConfig,
    auth: Auth,
    in_flight: Semaphore,
    metrics: Metrics,
    rate_limits: RateLimits,
    edge: Arc<EdgeState>,
    http_in_flight: Semaphore,
    feed: FeedHub,
    read_breaker: Breaker,
    admission: Admission,
    streams: Streams,
    payments: Payments,
    history: history::History,
    /// KYC webhook ids seen lately (`kyc.rs`).
    kyc_seen: callbacks::SeenCallbacks,
    /// The national self-exclusion register (`register.rs`).
    register: register::RegisterCheck,
    /// The book's `Config::idempotency_window_ms`, read at start (`SetIdempotencyWindow` is
    /// submitted only by `serve --idempotency-window`, before the gateway is built).
    idempotency_window_ms: std::sync::atomic::AtomicU64,
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
        let edge = Arc::new(edge_state(&config, &metrics)?);
        streams.start(engine.clone());
        let auth = Auth::new(AuthOptions {
            secret: &config.jwt_secret,
            access_ttl: config.access_token_ttl,
            bootstrap_key: config.admin_key.as_deref(),
            password_hash_workers: config.password_hash_workers,
            password_hash_queue_max: config.password_hash_queue_max,
            edge: Arc::clone(&edge),
        });
        let rate_limits = RateLimits::new(&config.trusted_proxies);
        let feed = FeedHub::new(engine.clone(), metrics.feed().clone(), config.feed_defaults);
        if config.feed_watchdog {
            feed.spawn_watchdog();
        }
        // The payments step resumes what a restart left open at once (`payments.rs`).
        let payments = Payments::new(engine.clone(), config.payment_provider.clone(), config.withdrawal_approval_above);
        let register = register::RegisterCheck::start(
            &config.exclusion_register,
            config.exclusion_register_timeout,
            config.exclusion_register_cache_ttl,
        )
        .await?;
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
            edge,
            streams,
            payments,
            history: history::History::new(),
            kyc_seen: callbacks::SeenCallbacks::default(),
            register,
            idempotency_window_ms: std::sync::atomic::AtomicU64::new(book::IDEMPOTENCY_WINDOW_DEFAULT_MS),
        }));
        // A provider in this process (the sandbox) calls back through the same route as a
        // remote one, verification included; it holds the state weakly.
        let weak = Arc::downgrade(&state.0);
        let provider_name = state.payments().provider().name().to_string();
        state.payments().provider().attach(Arc::new(move |body: Vec<u8>, signature: String| {
            let weak = weak.clone();
            let provider_name = provider_name.clone();
            Box::pin(async move {
                let Some(inner) = weak.upgrade() else { return };
                let mut headers = axum::http::HeaderMap::new();
                if let Ok(value) = axum::http::HeaderValue::from_str(&signature) {
                    headers.insert(callbacks::SIGNATURE_HEADER, value);
                }
                let (status, answer) =
                    payments::receive_callback(&AppState(inner), &provider_name, &headers, &body).await;
                if !status.is_success() {
                    tracing::warn!(%status, %answer, "the payment sandbox's callback was refused");
                }
            }) as payments::DeliverFuture
        }));
        state.payments().start(state.config().payment_sweep_interval);
        if let Some(watch) = &state.config().identity_watch {
            watch.spawn_reloader(Arc::downgrade(&state.0));
        }
        state.reload_api_keys().await?;
        state.reload_staff().await?;
        let window = state.read(|book| book.config().idempotency_window_ms).await?;
        state.0.idempotency_window_ms.store(window, std::sync::atomic::Ordering::Relaxed);
        Ok(state)
    }

    /// The book's idempotency window (`Config::idempotency_window_ms`).
    pub fn idempotency_window_ms(&self) -> u64 {
        self.0.idempotency_window_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn engine(&self) -> &EngineHandle {
        &self.0.engine
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.0.config
    }

    pub(crate) fn kyc(&self) -> &KycSettings {
        &self.0.config.kyc
    }

    pub(crate) fn kyc_seen(&self) -> &callbacks::SeenCallbacks {
        &self.0.kyc_seen
    }

    pub(crate) fn register(&self) -> &register::RegisterCheck {
        &self.0.register
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

    /// Read-your-writes bookkeeping of the history routes.
    pub(crate) fn history(&self) -> &history::History {
        &self.0.history
    }

    pub fn rate_limits(&self) -> &RateLimits {
        &self.0.rate_limits
    }

    /// Rate-limit buckets, login throttles, refresh tokens, revocations, TOTP steps.
    pub fn edge(&self) -> &Arc<EdgeState> {
        &self.0.edge
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

    pub async fn reload_staff(&self) -> Result<(), ApiError> {
        let staff = self.read(|book| book.staff().to_vec()).await?;
        self.auth().load_staff(&staff);
        Ok(())
    }

    /// Submits a command and waits for its durable reply. A full book is 503 at once, never a
    /// growing queue.
    pub async fn submit(&self, command: Command, origin: Origin) -> Result<Reply, ApiError> {
        self.submit_then(command, origin, |_, _| ()).await.map(|(reply, ())| reply)
    }

    /// `submit`, with `then(book, reply)` run on the sequencer thread right after the reply's
    /// batch is durable: one trip to the book for a command and what its answer shows. Keep
    /// `then` to copying what is needed; format it here, off the sequencer thread.
    pub async fn submit_then<R: Send + 'static>(
        &self,
        command: Command,
        origin: Origin,
        then: impl FnOnce(&Book, &Reply) -> R + Send + 'static,
    ) -> Result<(Reply, R), ApiError> {
        if !self.0.admission.admit() {
            self.metrics().record_shed(ShedReason::QueueDelay);
            return Err(ApiError::overloaded());
        }
        let _permit = self.0.in_flight.try_acquire().map_err(|_| ApiError::overloaded())?;
        let started = std::time::Instant::now();
        let receiver = self.engine().try_submit_then((command, origin), then)?;
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
            Ok(Ok(Ok(reply))) => {
                // Stored before the reply was sent: at or past this command's batch.
                let committed = self.engine().stats().committed_position.load(std::sync::atomic::Ordering::Acquire);
                outcome::Handed::record_position(committed);
                Ok(reply)
            }
            // A full disk refused the batch before anything of it was durable, and the book
            // was rebuilt without it: the outcome is known (not done), so 503 `unavailable`.
            Ok(Ok(Err(EngineError::StorageFull))) => Err(ApiError::from(EngineError::StorageFull)),
            // Cluster mode: no leader took the command (it reached no book): "retry shortly".
            Ok(Ok(Err(error @ EngineError::NoLeader(_)))) => {
                tracing::warn!(%error, "a command reached no book");
                Err(ApiError::from(error))
            }
            // Cluster mode: the leader decided the command and this gateway's replica did not
            // catch up in time to show it. It WAS done, so never 503 (a client retrying a
            // command without an idempotency key would do it twice): 504 `outcome_unknown`, as
            // for any command that reached the book without a reply to show; a retry with the
            // same idempotency key gets the reply.
            Ok(Ok(Err(error @ EngineError::ReplicaBehind { .. }))) => {
                tracing::warn!(%error, "a command was decided; the replica is too far behind to show it");
                Err(outcome_unknown())
            }
            // Refused before it was decided (too large for a journal record): not taken.
            Ok(Ok(Err(error @ (EngineError::NotTaken(_) | EngineError::CommandTooLarge { .. })))) => {
                Err(ApiError::from(error))
            }
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

/// The edge state `config` asks for. A Redis store connects lazily: a gateway starts while
/// Redis is away (`/readyz` warns `edge_state_unavailable`); a malformed URL or prefix is 500
/// here (`serve` checks them first).
fn edge_state(config: &GatewayConfig, metrics: &Metrics) -> Result<EdgeState, ApiError> {
    let mut settings = EdgeSettings::new(
        config.rate_limit_per_address,
        config.rate_limit_per_principal,
        config.access_token_ttl,
        config.refresh_token_ttl,
    );
    settings.rate_limit_keys_max = config.rate_limit_keys_max;
    Ok(match &config.edge_state {
        EdgeStateConfig::InProcess => {
            EdgeState::in_process(settings, config.revoked_sessions_path.as_deref(), metrics.clone())
        }
        EdgeStateConfig::Redis { url, prefix } => {
            let store = RedisEdge::new(url, prefix, settings).map_err(ApiError::internal)?;
            EdgeState::shared(Arc::new(store), settings, config.edge_state_timeout, metrics.clone())
        }
    })
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
        .merge(history::routes())
        .merge(feed::routes())
        .merge(degraded::routes())
        .merge(fx::routes())
        .merge(payments::routes())
        .merge(staff::routes())
        .merge(adjustments::routes())
        .merge(kyc::routes())
        .merge(reality::routes())
        .merge(monitoring::routes())
        .merge(cluster::routes())
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

impl GatewayConfig {
    /// The settings of a gateway whose engine is a replica forwarding commands to a cluster's
    /// leader (`sportsbook gateway`; the gateway tests' cluster mode): no feed watchdog (the
    /// feed role runs it, once per cluster), a reply wait covering the forward's retries
    /// through an election (`forward_retry_for`) and the replica's catch-up
    /// (`engine::REPLICA_CATCH_UP_WAIT_MAX`), and an identity watch reloading keys and staff
    /// changed through other gateways. Returns the watch: its `engine_hook` must be among the
    /// replica's commit hooks.
    pub fn for_replica(&mut self, forward_retry_for: Duration) -> IdentityWatch {
        self.feed_watchdog = false;
        // The request must wait for both, or a takeover would answer 504 while the forward
        // still retries (and may succeed) behind it, where `NoLeader` (503, "not done") was
        // the answer to give.
        self.book_reply_timeout = forward_retry_for + engine::REPLICA_CATCH_UP_WAIT_MAX + Duration::from_secs(1);
        let identity = IdentityWatch::new();
        self.identity_watch = Some(identity.clone());
        identity
    }

    fn connection_limits(&self) -> connections::ConnectionLimits {
        connections::ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.keep_alive_idle_timeout,
            connections_max: self.connections_max.max(1),
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, with the connection limits of the
/// config (`connections.rs`). On shutdown: no new connections, the stream's clients are told
/// to go (`going_away`), idle connections close and requests in progress finish; it returns
/// when every connection is gone (the caller bounds the wait).
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
    let limits = state.config().connection_limits();
    let metrics = state.metrics().clone();
    let socket_options = stream::socket_options(state.streams().config());
    connections::serve(listener, app(state), connections::ListenerKind::Main, limits, metrics, socket_options, shutdown)
        .await
}

/// Serves `/metrics` alone on `listener` (`serve --metrics-listen`) until `shutdown` completes,
/// with the same connection limits. Set `GatewayConfig::metrics_listener_separate` so that the
/// main listener stops answering it.
pub async fn serve_metrics(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config().connection_limits();
    let metrics = state.metrics().clone();
    let router = ops::metrics_routes().with_state(state);
    connections::serve(listener, router, connections::ListenerKind::Metrics, limits, metrics, |_: &mut _| {}, shutdown)
        .await
}
