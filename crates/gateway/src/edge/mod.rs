//! Edge state: what the gateway remembers between requests that is not the book's: rate-limit
//! buckets per client address and per credential, login throttles, refresh tokens, sessions
//! revoked at logout and the TOTP steps staff logins used.
//!
//! `EdgeStore` is the small interface; `LocalEdge` keeps it in this process (the embedded
//! default, as before), `RedisEdge` in Redis so that several gateways behind a balancer behave
//! as one: a rate of N/s per address is N/s over all of them, a session revoked on one is
//! refused by the others at the next request, and login failures count wherever they happen.
//!
//! `EdgeState` wraps a store with the failure policy of a shared one (every call bounded by
//! `GatewayConfig::edge_state_timeout`, `EDGE_STATE_TIMEOUT` by default, behind a circuit
//! breaker), decided per kind of state:
//! - rate limits fail open onto an in-process limiter with the same limits (per gateway, so up
//!   to one limit per gateway in total while the store is away);
//! - login throttles fall back to the in-process throttle (per gateway likewise);
//! - session checks fail closed: a request whose access token names a session is answered 503
//!   `unavailable` when the store cannot say it was not revoked, and refresh, logout, a login's
//!   new refresh token and a staff TOTP step are 503 too: a revoked token must never work, and
//!   a logout must never be acknowledged without being recorded. API keys (no session) are
//!   unaffected.
//!
//! `/readyz` warns `edge_state_unavailable` (a warning, not a reason: the gateways share the
//! store, so failing readiness would take every one out of the balancer at once while feeds,
//! operators and API-key traffic still work).

mod local;
mod redis;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use book::{AccountId, StaffId};
use domain::Currency;

pub use self::local::LocalEdge;
pub use self::redis::{check_key_prefix, check_redis_url, RedisEdge};
use crate::auth::{LoginKey, PrincipalKey};
use crate::breaker::{Admit, Breaker, BREAKER_FAILURES};
use crate::error::ApiError;
use crate::limits::{RateLimit, RATE_LIMIT_KEYS_MAX};
use crate::metrics::Metrics;

/// How long a call to a shared edge-state store may take before the gateway gives up on it
/// and applies the failure policy. Every request makes one such call, so it is short.
pub const EDGE_STATE_TIMEOUT: Duration = Duration::from_millis(50);
/// How long a breaker opened by failing calls sends edge state straight to the fallbacks
/// before one call probes the store again.
pub const EDGE_STATE_BREAKER_OPEN_FOR: Duration = Duration::from_secs(1);
/// How long a login attempt being verified counts against its key in a shared store if its
/// gateway never settles it (a crash): long past any password verification.
pub const LOGIN_RESERVATION_TTL: Duration = Duration::from_secs(60);
/// How long the last TOTP step of a staff member is remembered: codes are accepted one step
/// (30 s) either side of now, so an older step can never match again.
pub const TOTP_STEP_MEMORY: Duration = Duration::from_secs(10 * 60);
/// The default prefix of every key of a shared store (`--edge-state-prefix`).
pub const EDGE_KEY_PREFIX_DEFAULT: &str = "sportsbook:edge:";
/// Bytes of a key prefix.
pub const EDGE_KEY_PREFIX_BYTES_MAX: usize = 64;

/// A login session: 128 random bits, in hex in the access token's `sid` claim.
pub type SessionId = u128;
/// SHA-256 of a refresh token: stores never see the token itself.
pub type TokenHash = [u8; 32];

/// An error of the store itself (unreachable, too slow, a reply it could not read), never a
/// decision.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("edge state store: {0}")]
    Store(String),
    #[error("edge state store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("edge state store is failing: its breaker is open")]
    BreakerOpen,
}

pub type EdgeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, EdgeError>> + Send + 'a>>;

/// What a refresh token grants: a new token pair of its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshGrant {
    pub account: AccountId,
    pub currency: Currency,
    pub session: SessionId,
}

/// The answer to one request's admission: whether its session was revoked, and whether its
/// buckets had room (else how long to wait).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    pub session_revoked: bool,
    pub rate: Result<(), Duration>,
}

/// How a login attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Clears the key's failures.
    Succeeded,
    /// Counts as a failure.
    Failed,
    /// Neither: the attempt never reached a verdict (the hash pool was full, the client left).
    Released,
}

/// The limits a store enforces, fixed when it is built.
#[derive(Clone, Copy, Debug)]
pub struct EdgeSettings {
    pub per_address: Option<RateLimit>,
    pub per_principal: Option<RateLimit>,
    /// Keys per in-process rate-limit table (a shared store expires its keys instead).
    pub rate_limit_keys_max: usize,
    pub login_failures_max: u32,
    pub login_window: Duration,
    /// How long a refresh token works.
    pub refresh_ttl: Duration,
    /// How long a revocation is kept: past the last access token of the session.
    pub revocation_ttl: Duration,
}

impl EdgeSettings {
    pub fn new(
        per_address: Option<RateLimit>,
        per_principal: Option<RateLimit>,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> EdgeSettings {
        EdgeSettings {
            per_address,
            per_principal,
            rate_limit_keys_max: RATE_LIMIT_KEYS_MAX,
            login_failures_max: crate::auth::LOGIN_FAILURES_MAX,
            login_window: crate::auth::LOGIN_WINDOW,
            refresh_ttl,
            // `exp` is whole seconds after `iat`: the newest token of a session logged out now
            // expires at the latest one second after `access_ttl`.
            revocation_ttl: access_ttl + Duration::from_secs(1),
        }
    }
}

/// Where edge state is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdgeStateConfig {
    /// In this process (the default): nothing to run, one gateway.
    InProcess,
    /// In Redis (`redis://host:port[/db]`), every key under `prefix`.
    Redis { url: String, prefix: String },
}

/// One kind of call, for metrics (a bounded label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeOp {
    Admit,
    LoginReserve,
    LoginSettle,
    RefreshPut,
    RefreshTake,
    Revoke,
    TotpStep,
    Ping,
}

impl EdgeOp {
    pub const ALL: [EdgeOp; 8] = [
        EdgeOp::Admit,
        EdgeOp::LoginReserve,
        EdgeOp::LoginSettle,
        EdgeOp::RefreshPut,
        EdgeOp::RefreshTake,
        EdgeOp::Revoke,
        EdgeOp::TotpStep,
        EdgeOp::Ping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EdgeOp::Admit => "admit",
            EdgeOp::LoginReserve => "login_reserve",
            EdgeOp::LoginSettle => "login_settle",
            EdgeOp::RefreshPut => "refresh_put",
            EdgeOp::RefreshTake => "refresh_take",
            EdgeOp::Revoke => "revoke",
            EdgeOp::TotpStep => "totp_step",
            EdgeOp::Ping => "ping",
        }
    }
}

/// The edge state a gateway keeps, in this process or shared with other gateways. Every
/// method is one atomic step of the store: a check and the update it allows happen together,
/// whichever gateways call at once.
pub trait EdgeStore: Send + Sync + 'static {
    /// Admits one request: says whether `session` (when the credential names one) was revoked,
    /// and takes one request from the bucket of `address`, then from the bucket of `principal`
    /// (skipped when the session was revoked: a revoked token must not spend its owner's
    /// requests), stopping at the first without room.
    fn admit(
        &self,
        session: Option<SessionId>,
        address: Option<IpAddr>,
        principal: Option<PrincipalKey>,
    ) -> EdgeFuture<'_, Checked>;

    /// Reserves one login attempt for `key`, counted as a failure until settled: a reservation
    /// id, or how long to wait when the failures and the attempts in flight reach
    /// `EdgeSettings::login_failures_max` in the window.
    fn reserve_login(&self, key: LoginKey) -> EdgeFuture<'_, Result<u64, Duration>>;

    fn settle_login(&self, key: LoginKey, reservation: u64, outcome: LoginOutcome) -> EdgeFuture<'_, ()>;

    /// Keeps a refresh token for `EdgeSettings::refresh_ttl`.
    fn put_refresh(&self, token: TokenHash, grant: RefreshGrant) -> EdgeFuture<'_, ()>;

    /// Takes a refresh token (it works once): its grant, or `None` when it is unknown, used,
    /// expired or its session was revoked.
    fn take_refresh(&self, token: TokenHash) -> EdgeFuture<'_, Option<RefreshGrant>>;

    /// Logs out: takes the refresh token and revokes its session for
    /// `EdgeSettings::revocation_ttl`, in one step. An unknown token revokes nothing.
    fn revoke(&self, token: TokenHash) -> EdgeFuture<'_, ()>;

    /// Revokes `session` for `ttl` (at least a second): a session with no refresh token, a
    /// staff member's login, logged out with its access token.
    fn revoke_session(&self, session: SessionId, ttl: Duration) -> EdgeFuture<'_, ()>;

    /// Records that `staff` logged in with the TOTP code of `step`: false when that step or a
    /// later one was already used (a code works once).
    fn use_totp_step(&self, staff: StaffId, step: u64) -> EdgeFuture<'_, bool>;

    /// Whether the store answers.
    fn ping(&self) -> EdgeFuture<'_, ()>;
}

/// A session check that could not be made: the request is answered 503 when its handler needs
/// the principal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionUnverified;

/// The gateway's edge state: a store and the failure policy around it (see the module).
pub struct EdgeState {
    /// A shared store; `None` keeps everything in `local`.
    shared: Option<Arc<dyn EdgeStore>>,
    /// The in-process store: all of the state without a shared store, else where rate limits
    /// and login throttles go while the shared one fails.
    local: Arc<LocalEdge>,
    breaker: Breaker,
    timeout: Duration,
    metrics: Metrics,
}

impl EdgeState {
    /// Edge state in this process; `revoked_sessions_path` keeps revocations across restarts.
    pub fn in_process(
        settings: EdgeSettings,
        revoked_sessions_path: Option<&std::path::Path>,
        metrics: Metrics,
    ) -> Self {
        EdgeState {
            shared: None,
            local: Arc::new(LocalEdge::new(settings, revoked_sessions_path)),
            breaker: Breaker::new(BREAKER_FAILURES, EDGE_STATE_BREAKER_OPEN_FOR),
            timeout: EDGE_STATE_TIMEOUT,
            metrics,
        }
    }

    /// Edge state in a shared store, with in-process fallbacks for rate limits and logins.
    pub fn shared(store: Arc<dyn EdgeStore>, settings: EdgeSettings, timeout: Duration, metrics: Metrics) -> Self {
        EdgeState {
            shared: Some(store),
            local: Arc::new(LocalEdge::new(settings, None)),
            breaker: Breaker::new(BREAKER_FAILURES, EDGE_STATE_BREAKER_OPEN_FOR),
            timeout,
            metrics,
        }
    }

    /// Whether the store is shared (and so may fail).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Runs one call of a shared store: bounded by the timeout, behind the breaker, timed and
    /// counted. In-process calls cannot fail and go straight through.
    async fn call<'a, T>(
        &'a self,
        op: EdgeOp,
        call: impl FnOnce(&'a dyn EdgeStore) -> EdgeFuture<'a, T>,
    ) -> Result<T, EdgeError> {
        let Some(shared) = &self.shared else {
            return call(self.local.as_ref()).await;
        };
        if let Admit::Refuse(_) = self.breaker.admit() {
            self.metrics.record_edge_error(op);
            return Err(EdgeError::BreakerOpen);
        }
        // A call dropped before its verdict (the client went away) must not leave a probe
        // of the half-open breaker outstanding for ever.
        let mut verdict = Verdict { breaker: &self.breaker, given: false };
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, call(shared.as_ref())).await {
            Ok(result) => result,
            Err(_) => Err(EdgeError::Timeout(self.timeout)),
        };
        verdict.given = true;
        self.metrics.record_edge_call(op, started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => self.breaker.success(),
            Err(error) => {
                self.metrics.record_edge_error(op);
                if self.breaker.failure() {
                    tracing::warn!(%error, open_for = ?EDGE_STATE_BREAKER_OPEN_FOR, "edge state store failing: breaker open");
                    self.metrics.record_breaker_open("edge_state");
                } else {
                    tracing::debug!(%error, op = op.as_str(), "edge state store call failed");
                }
            }
        }
        result
    }

    fn fallback(&self) -> &LocalEdge {
        &self.local
    }

    /// Admits a request (see `EdgeStore::admit`). A shared store that fails: the rate limits
    /// of the fallback decide, and a session is `Err(SessionUnverified)`.
    pub(crate) async fn admit(
        &self,
        session: Option<SessionId>,
        address: Option<IpAddr>,
        principal: Option<PrincipalKey>,
    ) -> (Result<bool, SessionUnverified>, Result<(), Duration>) {
        match self.call(EdgeOp::Admit, |store| store.admit(session, address, principal)).await {
            Ok(checked) => (Ok(checked.session_revoked), checked.rate),
            Err(_) => {
                let rate = self.fallback().rate_check(address, principal);
                (if session.is_some() { Err(SessionUnverified) } else { Ok(false) }, rate)
            }
        }
    }

    /// Whether `session` was revoked; 503 when it cannot be told. No bucket is taken.
    pub(crate) async fn session_revoked(&self, session: SessionId) -> Result<bool, ApiError> {
        match self.call(EdgeOp::Admit, |store| store.admit(Some(session), None, None)).await {
            Ok(checked) => Ok(checked.session_revoked),
            Err(_) => Err(unavailable()),
        }
    }

    /// Reserves a login attempt (`EdgeStore::reserve_login`); a failing shared store reserves
    /// on the in-process throttle instead. 429 `rate_limited` when throttled.
    pub async fn reserve_login(self: &Arc<Self>, key: LoginKey) -> Result<LoginReservation, ApiError> {
        let (reserved, on_fallback) = match self.call(EdgeOp::LoginReserve, |store| store.reserve_login(key)).await {
            Ok(reserved) => (reserved, false),
            Err(_) => (self.fallback().reserve_login_now(key), true),
        };
        match reserved {
            Ok(id) => Ok(LoginReservation { edge: Arc::clone(self), key, id, on_fallback, settled: false }),
            Err(wait) => Err(ApiError::rate_limited(wait.as_secs().max(1))),
        }
    }

    async fn settle_login(&self, key: LoginKey, id: u64, on_fallback: bool, outcome: LoginOutcome) {
        if on_fallback {
            self.fallback().settle_login_now(key, id, outcome);
            return;
        }
        // Lost, the attempt stops counting when its reservation expires (`LOGIN_RESERVATION_TTL`),
        // and a failure is not counted.
        let _ = self.call(EdgeOp::LoginSettle, |store| store.settle_login(key, id, outcome)).await;
    }

    pub async fn put_refresh(&self, token: TokenHash, grant: RefreshGrant) -> Result<(), ApiError> {
        self.call(EdgeOp::RefreshPut, |store| store.put_refresh(token, grant)).await.map_err(|_| unavailable())
    }

    pub async fn take_refresh(&self, token: TokenHash) -> Result<Option<RefreshGrant>, ApiError> {
        self.call(EdgeOp::RefreshTake, |store| store.take_refresh(token)).await.map_err(|_| unavailable())
    }

    pub async fn revoke(&self, token: TokenHash) -> Result<(), ApiError> {
        self.call(EdgeOp::Revoke, |store| store.revoke(token)).await.map_err(|_| unavailable())
    }

    pub async fn revoke_session(&self, session: SessionId, ttl: Duration) -> Result<(), ApiError> {
        self.call(EdgeOp::Revoke, |store| store.revoke_session(session, ttl)).await.map_err(|_| unavailable())
    }

    pub async fn use_totp_step(&self, staff: StaffId, step: u64) -> Result<bool, ApiError> {
        self.call(EdgeOp::TotpStep, |store| store.use_totp_step(staff, step)).await.map_err(|_| unavailable())
    }

    /// `/readyz`'s warning: `edge_state_unavailable` when a shared store does not answer a
    /// ping (or its breaker is open).
    pub async fn readiness_warning(&self) -> Option<&'static str> {
        if !self.is_shared() {
            return None;
        }
        self.call(EdgeOp::Ping, |store| store.ping()).await.err().map(|_| "edge_state_unavailable")
    }
}

/// Releases the breaker's probe turn if a call ends without a verdict.
struct Verdict<'a> {
    breaker: &'a Breaker,
    given: bool,
}

impl Drop for Verdict<'_> {
    fn drop(&mut self) {
        if !self.given {
            self.breaker.release();
        }
    }
}

/// 503 `unavailable`: the edge state store cannot answer, and the request cannot be decided
/// safely without it.
pub(crate) fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "session state is unreachable: this credential cannot be checked now; retry shortly",
    )
    .retry_after(1)
}

/// One login attempt counted in the throttle until it is settled: `succeeded` clears the key's
/// failures, `failed` keeps it as a failure; dropped unsettled (the hash pool was full, the
/// client went away) it is released without counting.
pub struct LoginReservation {
    edge: Arc<EdgeState>,
    key: LoginKey,
    id: u64,
    on_fallback: bool,
    settled: bool,
}

impl LoginReservation {
    pub async fn succeeded(mut self) {
        self.settled = true;
        self.edge.settle_login(self.key, self.id, self.on_fallback, LoginOutcome::Succeeded).await;
    }

    pub async fn failed(mut self) {
        self.settled = true;
        self.edge.settle_login(self.key, self.id, self.on_fallback, LoginOutcome::Failed).await;
    }
}

impl Drop for LoginReservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (edge, key, id) = (Arc::clone(&self.edge), self.key, self.id);
        if self.on_fallback || !edge.is_shared() {
            edge.local.settle_login_now(key, id, LoginOutcome::Released);
            return;
        }
        // A shared store is only reached asynchronously; without a runtime the reservation
        // expires on its own (`LOGIN_RESERVATION_TTL`).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { edge.settle_login(key, id, false, LoginOutcome::Released).await });
        }
    }
}
