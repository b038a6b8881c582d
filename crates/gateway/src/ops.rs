//! Operations: the health, readiness, metrics and OpenAPI document routes, and what every
//! request carries for operators: a request id (taken from `x-request-id` or made here, echoed
//! in the response), a `tracing` span with method, route, status and latency, and the HTTP
//! metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::Span;

use crate::connections::ListenerKind;
use crate::error::ApiError;
use crate::metrics::{METRICS_CONTENT_TYPE, ROUTE_UNMATCHED};
use crate::AppState;

/// How long `/readyz` waits for the book to answer a read before calling it unready.
pub const READY_BOOK_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes of a client's `x-request-id`; longer or non-printable ids are replaced by our own.
pub const REQUEST_ID_BYTES_MAX: usize = 128;

pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// `/metrics` alone: the router of the metrics listener (`serve_metrics`).
pub fn metrics_routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics)).fallback(|| async { ApiError::not_found("route") })
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
}

/// The body of `/healthz` and `/readyz`. Only documents the JSON that the handlers build.
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "documents the JSON built by `healthz` and `readyz`")]
pub struct Health {
    /// `ok`, or `unavailable` from `/readyz`.
    #[schema(example = "ok")]
    status: String,
    /// Why `/readyz` is unavailable: `journal_failed`, `storage_full` (the journal's disk is
    /// full: commands are refused until there is room, then taken again without a restart),
    /// `book_stopped`, `book_unresponsive`, `book_overloaded` or `feed_stale`; on a cluster
    /// gateway also `no_leader` (no book node holds the lease), `replica_lagging` (its replica
    /// is more than `REPLICA_LAG_READY_MAX_RECORDS` records or `REPLICA_LAG_READY_MAX` behind
    /// the journal), `nats_down`, `replica_failed`. Absent when ready.
    reasons: Option<Vec<String>>,
    /// With `feed_stale`: the providers with no fresh source.
    stale_providers: Option<Vec<String>>,
    /// What an operator should look at without taking the node out of service:
    /// `fx_rates_stale` (the exchange-rate table is older than the configured limit),
    /// `journal_archive_failing` (journal retention failed `ARCHIVE_FAILURES_WARN` times in a
    /// row; the segments stay in the live journal). Absent when there is none.
    warnings: Option<Vec<String>>,
    /// With `fx_rates_stale`: the table's age in seconds.
    fx_rates_age_seconds: Option<u64>,
    /// With `journal_archive_failing`: failed archiver runs in a row.
    journal_archive_failures: Option<u64>,
}

/// The process is up and serving HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    description = "The process is up and serving HTTP.",
    responses((status = 200, description = "The process is up", body = Health)),
)]
pub(crate) async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

/// Ready to take traffic: the book has not stopped on a journal failure (so the journal is
/// writable) and answers a read promptly. The read goes straight to the engine, not through
/// the gateway's in-flight bound, so that a busy gateway is not reported as a broken one.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness",
    description = "Ready to take traffic: the journal is writable, the book answers promptly and no feed \
        provider is stale. An exchange-rate table older than the configured age is a warning \
        (`warnings: [\"fx_rates_stale\"]`, `fx_rates_age_seconds`), not a reason to be unready; so is \
        journal retention failing repeatedly (`journal_archive_failing`, `journal_archive_failures`), and a shared \
        edge-state store (`serve --edge-state redis://...`) that does not answer (`edge_state_unavailable`: rate \
        limits and login throttles fall back to this gateway's own, and requests with a player's access token, \
        refreshes, logouts and staff logins answer 503 `unavailable` until it is back).",
    responses(
        (status = 200, description = "Ready to take traffic", body = Health),
        (status = 503, description = "Not ready, with the `reasons` (this body, not an `Error`; no \
            `Retry-After`)", body = Health),
    ),
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let mut reasons: Vec<&'static str> = Vec::new();
    if state.engine().stats().stopped.load(Ordering::SeqCst) {
        reasons.push("journal_failed");
    }
    if state.engine().stats().storage_full.load(Ordering::SeqCst) {
        reasons.push("storage_full");
    }
    let mut fx_table = None;
    match state.engine().read_async(|book| (book.fx().version, book.fx().set_at)) {
        Ok(receiver) => match tokio::time::timeout(READY_BOOK_TIMEOUT, receiver).await {
            Ok(Ok(table)) => fx_table = Some(table),
            // The sequencer drops reads once stopped; that reason is already given.
            Ok(Err(_)) if !reasons.is_empty() => {}
            Ok(Err(_)) => reasons.push("book_stopped"),
            Err(_) => reasons.push("book_unresponsive"),
        },
        Err(engine::EngineError::Overloaded) => reasons.push("book_overloaded"),
        Err(_) => reasons.push("book_stopped"),
    }
    let stale = state.feed().stale_providers();
    if !stale.is_empty() {
        reasons.push("feed_stale");
    }
    if let Some(cluster) = &state.config().cluster {
        reasons.extend(cluster.unready_reasons());
    }
    // The read side: history routes serve from the models.
    let projector = projector_readiness(&state);
    if let Some(reason) = projector.reason {
        reasons.push(reason);
    }
    // Warnings: the node still takes traffic.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    let fx_stale = fx_table
        .filter(|(version, set_at)| crate::fx::is_stale(*version, *set_at, now, state.config().fx_rates_age_max));
    let mut body = if reasons.is_empty() {
        json!({"status": "ok"})
    } else {
        let mut body = json!({"status": "unavailable", "reasons": reasons});
        if !stale.is_empty() {
            body["stale_providers"] = json!(stale);
        }
        body
    };
    let mut warnings: Vec<&'static str> = Vec::new();
    if let Some((_, set_at)) = fx_stale {
        warnings.push("fx_rates_stale");
        body["fx_rates_age_seconds"] = json!(now.saturating_sub(set_at) / 1_000);
    }
    if let Some(warning) = projector.warning {
        warnings.push(warning);
    }
    // A warning, not a reason: every gateway shares the store (`edge/`).
    if let Some(warning) = state.edge().readiness_warning().await {
        warnings.push(warning);
    }
    let archive_failures = state.engine().stats().journal_archive_failures_consecutive.load(Ordering::Relaxed);
    if archive_failures >= engine::ARCHIVE_FAILURES_WARN {
        // Archiving is housekeeping: the live journal keeps the segments, so it only warns.
        warnings.push("journal_archive_failing");
        body["journal_archive_failures"] = json!(archive_failures);
    }
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    if let Some(detail) = projector.detail {
        body["projector"] = detail;
    }
    let status = if reasons.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// What `/readyz` says of the projector.
struct ProjectorReadiness {
    /// `projector_lagging` (more than `GatewayConfig::projector_lag_ready_max` records behind):
    /// the node is not ready.
    reason: Option<&'static str>,
    /// `projector_off` or `projector_failed` (failed or stopped; a failing store is retried):
    /// history routes answer 503, the node still takes bets.
    warning: Option<&'static str>,
    detail: Option<serde_json::Value>,
}

fn projector_readiness(state: &AppState) -> ProjectorReadiness {
    let journal = state.engine().stats().committed_position.load(Ordering::Acquire);
    let Some(models) = &state.config().read_models else {
        // Library users without a projector (tests of other parts) are not told about it.
        let off = state.config().projector_off_warning;
        return ProjectorReadiness {
            reason: None,
            warning: off.then_some("projector_off"),
            detail: off.then(|| {
                json!({"state": "off", "message": "history routes answer 503 unavailable: the projector is off (serve --projector off)"})
            }),
        };
    };
    let published = models.published();
    let position = published.position();
    let lag = journal.saturating_sub(position);
    let reason = (lag > state.config().projector_lag_ready_max).then_some("projector_lagging");
    let (warning, name, message) = match published.state() {
        // The node still takes bets; history answers 503 until the projector is back.
        projector::ProjectorState::Failed(message) => (Some("projector_failed"), "failed", Some(message)),
        projector::ProjectorState::Stopped => (Some("projector_failed"), "stopped", None),
        projector::ProjectorState::Starting => (None, "starting", None),
        projector::ProjectorState::Running => (None, "running", None),
    };
    let mut detail = json!({"state": name, "position": position, "lag_records": lag});
    if let Some(message) = message {
        detail["message"] = json!(message);
    }
    ProjectorReadiness { reason, warning, detail: Some(detail).filter(|_| reason.is_some() || warning.is_some()) }
}

/// Prometheus scrape in the OpenMetrics text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Metrics",
    description = "Prometheus metrics in the OpenMetrics text format. Not public: with a metrics key \
        configured (`SPORTSBOOK_METRICS_KEY`) it takes `Authorization: Bearer <key>`; without one, the main \
        listener answers loopback clients only (and no request carrying a forwarding header). With \
        `--metrics-listen` it is served on that address instead, and the main listener answers 404.",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus metrics in the OpenMetrics text \
            format", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "A metrics key is configured and the request does not carry it \
            (`unauthenticated`)", body = ApiError),
        (status = 403, description = "No metrics key is configured and the client is not on a loopback \
            address (`forbidden`)", body = ApiError),
        (status = 404, description = "`/metrics` is served on its own listener (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn metrics(State(state): State<AppState>, request: Request) -> Response {
    if let Some(refused) = metrics_refusal(&state, &request) {
        return refused;
    }
    state.metrics().set_breaker_state("book_reads", state.read_breaker().state().gauge());
    state.metrics().set_breaker_state("edge_state", state.edge().breaker().state().gauge());
    let journal = state.engine().stats().committed_position.load(Ordering::Acquire);
    let models = state.config().read_models.as_ref().map(|models| {
        let published = models.published();
        (published.position(), published.state() == projector::ProjectorState::Running)
    });
    state.metrics().set_projector(journal, models);
    let mut text = state.metrics().encode(state.engine().stats());
    if let Some(cluster) = &state.config().cluster {
        // The OpenMetrics text ends with `# EOF`: the cluster's families go before it.
        let end = text.rfind("# EOF").unwrap_or(text.len());
        let mut families = String::new();
        cluster.encode_metrics(&mut families);
        text.insert_str(end, &families);
    }
    ([(header::CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE))], text).into_response()
}

/// The answer to a request that may not scrape `/metrics`, `None` when it may. Who may
/// (`GatewayConfig::metrics_key`, `metrics_listener_separate`): with a key, whoever sends it as
/// a bearer token, on either listener; without one, any client of the metrics listener, and on
/// the main listener a client on a loopback address whose request carries no forwarding header
/// (a proxy on the same host relaying someone else).
fn metrics_refusal(state: &AppState, request: &Request) -> Option<Response> {
    let config = state.config();
    let listener = request.extensions().get::<ListenerKind>().copied().unwrap_or(ListenerKind::Main);
    if listener == ListenerKind::Main && config.metrics_listener_separate {
        return Some(ApiError::not_found("route").into_response());
    }
    if let Some(key) = &config.metrics_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if given.is_some_and(|given| same_secret(given, key)) {
            return None;
        }
        let mut refused = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "/metrics takes the metrics key as a bearer token",
        )
        .into_response();
        refused.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Some(refused);
    }
    if listener == ListenerKind::Metrics {
        return None;
    }
    let loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().to_canonical().is_loopback());
    let forwarded =
        ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|name| request.headers().contains_key(*name));
    if loopback && !forwarded {
        return None;
    }
    Some(
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "/metrics answers loopback clients only; set SPORTSBOOK_METRICS_KEY or --metrics-listen to scrape it from \
         elsewhere",
        )
        .into_response(),
    )
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (given, expected) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
    given.iter().zip(expected.iter()).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
}

/// This API's OpenAPI document, rendered once.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This document",
    description = "The OpenAPI document of this API.",
    responses((status = 200, description = "The OpenAPI 3.1 document of this \
        API", body = Object, content_type = "application/json")),
)]
pub(crate) async fn openapi_json() -> Response {
    static DOCUMENT: LazyLock<Result<String, String>> =
        LazyLock::new(|| crate::openapi::document().to_json().map_err(|error| error.to_string()));
    match &*DOCUMENT {
        Ok(text) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], text.as_str()).into_response()
        }
        Err(cause) => ApiError::internal(cause).into_response(),
    }
}

/// Request ids `<process prefix>-<counter>`: unique within the process, and across processes
/// with high probability, without a UUID dependency.
#[derive(Clone, Debug)]
pub struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl Default for RequestIds {
    fn default() -> RequestIds {
        RequestIds::new()
    }
}

impl RequestIds {
    pub fn new() -> RequestIds {
        let prefix = format!("{:08x}", rand::random::<u32>());
        RequestIds { prefix: prefix.into(), next: Arc::new(AtomicU64::new(1)) }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{number:012x}", self.prefix)).ok().map(RequestId::new)
    }
}

/// Drops a client's request id that is too long or not printable ASCII, so that one is made
/// instead: ids end up in logs and response headers.
pub fn drop_unfit_request_id<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    let fit = request.headers().get(&REQUEST_ID_HEADER).is_none_or(|value| {
        let bytes = value.as_bytes();
        !bytes.is_empty() && bytes.len() <= REQUEST_ID_BYTES_MAX && bytes.iter().all(u8::is_ascii_graphic)
    });
    if !fit {
        request.headers_mut().remove(&REQUEST_ID_HEADER);
    }
    request
}

/// The route template of a request (`/v1/bets/{id}`), never the raw path.
fn route_of<B>(request: &axum::http::Request<B>) -> &str {
    request.extensions().get::<MatchedPath>().map_or(ROUTE_UNMATCHED, MatchedPath::as_str)
}

/// The span of one request: every event logged while handling it carries these fields.
pub fn request_span<B>(request: &axum::http::Request<B>) -> Span {
    let request_id = request.headers().get(&REQUEST_ID_HEADER).and_then(|value| value.to_str().ok()).unwrap_or("");
    tracing::info_span!("request", method = %request.method(), route = route_of(request), request_id)
}

/// Logs the answer of a request, with its status and latency, in its span.
pub fn log_response<B>(response: &axum::http::Response<B>, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    // Microsecond resolution is plenty and keeps the number short.
    let latency_ms = latency.as_micros() as f64 / 1e3;
    tracing::info!(parent: span, status, latency_ms, "answered");
}

/// Middleware: counts every answered request by route template, method and status, and times
/// it, including requests refused by admission control.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_of(&request).to_string();
    let method = request.method().clone();
    let response = next.run(request).await;
    state.metrics().record_http(&route, &method, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}
