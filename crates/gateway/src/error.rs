//! The one mapping from failures to HTTP: every error is `{"error": {"code", "message", ...}}`
//! with a stable code and the status of `../shared/API.md`. Internal errors are logged, never
//! shown: the client sees `internal` and the request id.

use std::borrow::Cow;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use book::Rejection;
use domain::Currency;
use serde_json::{json, Map, Value};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Map<String, Value>,
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: Map::new(), retry_after_seconds: None }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.details.insert(key.to_string(), value.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after_seconds = Some(seconds);
        self
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "a valid bearer token or API key is required")
    }

    pub fn forbidden() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this credential may not do that")
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn overloaded() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the book is busy; retry shortly").retry_after(1)
    }

    pub fn unavailable() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the book is not accepting requests")
            .retry_after(5)
    }

    pub fn rate_limited(retry_after_seconds: u64) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests")
            .retry_after(retry_after_seconds)
    }

    /// An operational failure: logged with its cause, shown to the client without it.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    /// A book rejection with the status of the API contract and its details, with amounts in
    /// the player's currency.
    pub fn from_rejection(rejection: &Rejection, currency: Currency) -> ApiError {
        use StatusCode as S;
        let status = match rejection {
            Rejection::PriceChanged { .. }
            | Rejection::MarketSuspended
            | Rejection::MarketClosed
            | Rejection::SelectionUnavailable
            | Rejection::AlreadySettled
            | Rejection::NotSettled
            | Rejection::CashoutUnavailable { .. }
            | Rejection::QuoteExpired
            | Rejection::UsernameTaken => S::CONFLICT,
            // The payment was credited already: the same request again cannot succeed.
            Rejection::DuplicatePaymentRef => S::CONFLICT,
            // The market's results are final: past its resettlement window (it may have left
            // the book already). The same request cannot succeed later either.
            Rejection::ResettlementWindowClosed => S::CONFLICT,
            Rejection::SelfExcluded | Rejection::TimedOut | Rejection::AccountFrozen => S::FORBIDDEN,
            // Who may adjust and approve is the book's decision from the staff member's roles.
            Rejection::AdjustmentForbidden | Rejection::SelfApproval | Rejection::ApprovalLimit => S::FORBIDDEN,
            Rejection::AdjustmentNotPending => S::CONFLICT,
            // The provider's outcome contradicts what happened to the deposit already.
            Rejection::PaymentConflict => S::CONFLICT,
            Rejection::UnknownPayment => S::NOT_FOUND,
            // Too many deposits wait for the provider: retry later.
            Rejection::PaymentsBusy => S::SERVICE_UNAVAILABLE,
            // Identity verification first: the player can do something about it (verify).
            Rejection::KycRequired | Rejection::KycDepositCap { .. } => S::FORBIDDEN,
            Rejection::KycConflict => S::CONFLICT,
            // Play pauses until the player acknowledges the reality check (UKGC RTS 13).
            Rejection::RealityCheckDue => S::FORBIDDEN,
            Rejection::NoRealityCheckDue => S::CONFLICT,
            // The case queue (`monitoring.rs`): a case closed or a move its status forbids.
            Rejection::UnknownCase => S::NOT_FOUND,
            Rejection::CaseClosed | Rejection::InvalidTransition => S::CONFLICT,
            Rejection::UnknownAdjustment => S::NOT_FOUND,
            Rejection::MarketThrottled { .. } => S::TOO_MANY_REQUESTS,
            Rejection::UnknownAccount
            | Rejection::UnknownEvent
            | Rejection::UnknownMarket
            | Rejection::UnknownBet
            | Rejection::UnknownWithdrawal => S::NOT_FOUND,
            // Well-formed, but more money than the book can hold: retrying the same request
            // cannot succeed until balances change, like a limit.
            Rejection::AmountTooLarge => S::UNPROCESSABLE_ENTITY,
            _ => S::UNPROCESSABLE_ENTITY,
        };
        let message = match rejection {
            Rejection::InvalidBet { reason }
            | Rejection::InvalidRequest { reason }
            | Rejection::CashoutUnavailable { reason } => (*reason).to_string(),
            other => other.code().replace('_', " "),
        };
        let mut error = ApiError::new(status, rejection.code(), message);
        match rejection {
            Rejection::PriceChanged { selection, current_price } => {
                error =
                    error.with("selection_id", selection.to_string()).with("current_price", current_price.decimal());
            }
            Rejection::StakeTooLow { min_stake } => error = error.with("min_stake", currency.format(*min_stake)),
            Rejection::KycDepositCap { cap } => error = error.with("cap", currency.format(*cap)),
            Rejection::StakeTooHigh { max_stake } => error = error.with("max_stake", currency.format(*max_stake)),
            Rejection::FxRateMissing => error = error.with("currency", currency.code()),
            Rejection::LimitReached { limit, period } => {
                error = error.with("limit", limit.as_str()).with("period", period.as_str());
            }
            Rejection::MarketThrottled { retry_after_ms } => {
                error = error.retry_after(retry_after_ms.div_ceil(1_000).max(1));
            }
            _ => {}
        }
        error
    }
}

impl From<engine::EngineError> for ApiError {
    fn from(error: engine::EngineError) -> ApiError {
        match error {
            engine::EngineError::Overloaded => ApiError::overloaded(),
            engine::EngineError::Stopped(reason) => {
                tracing::error!(%reason, "book stopped");
                ApiError::unavailable()
            }
            engine::EngineError::ShutDown => ApiError::unavailable(),
            // Nothing was journaled; the engine resumes by itself once the disk has room.
            engine::EngineError::StorageFull => ApiError::unavailable(),
            // Cluster mode: an election is under way (the command reached no book).
            engine::EngineError::NoLeader(_) => ApiError::unavailable().retry_after(1),
            // Cluster mode: the command was decided and this gateway's replica is too far
            // behind to show it (`submit` maps this to 504 `outcome_unknown` before it gets
            // here; a read that waited for its own write lands here).
            engine::EngineError::ReplicaBehind { .. } => ApiError::unavailable().retry_after(1),
            // Larger than a journal record can hold: the request is too large, like a body over
            // its limit, and was not taken.
            error @ engine::EngineError::CommandTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "command_too_large", error.to_string())
            }
            // Cluster mode: the leader refused the command before deciding it. Its common cause
            // is the size above (the leader's engine, or the protocol's request limit); the
            // other, a request the leader cannot decode, is a version skew its message names.
            // Either way it was not taken and a retry cannot succeed.
            engine::EngineError::NotTaken(message) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "command_too_large", message)
            }
            other => ApiError::internal(other),
        }
    }
}

/// The JSON of every error response, as `IntoResponse` renders it: the `Error` schema of the
/// OpenAPI document. Details besides `code` and `message` depend on the code (`current_price`,
/// `min_stake`, `field` ...), so the inner object allows more properties.
impl utoipa::PartialSchema for ApiError {
    fn schema() -> RefOr<Schema> {
        let text = |description: &str| ObjectBuilder::new().schema_type(Type::String).description(Some(description));
        let error = ObjectBuilder::new()
            .property("code", text("Stable snake_case code of the failure, such as `price_changed`."))
            .required("code")
            .property("message", text("Human text; not for matching."))
            .required("message")
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .description(Some("The code, the message and the details of this code."));
        ObjectBuilder::new()
            .property("error", error)
            .required("error")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl utoipa::ToSchema for ApiError {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Error")
    }
}

impl ApiError {
    /// The response body: `{"error": {"code", "message", ...details}}`.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.code));
        body.insert("message".into(), json!(self.message));
        body.extend(self.details.clone());
        json!({ "error": body })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// `axum::Json` whose rejections are API errors: malformed or unknown fields are 400
/// `invalid_request`, a body over the limit is 413 `payload_too_large`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// A JSON body that may be left out: no body (no `Content-Length`, or 0, and no
/// `Transfer-Encoding`) is `None`; a body is read like [`Json`].
#[derive(Debug, Clone, Default)]
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers();
        let has_body = headers.get(header::CONTENT_LENGTH).is_some_and(|length| length.as_bytes() != b"0")
            || headers.contains_key(header::TRANSFER_ENCODING);
        if !has_body {
            return Ok(OptionalJson(None));
        }
        Json::<T>::from_request(request, state).await.map(|Json(value)| OptionalJson(Some(value)))
    }
}

pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::BytesRejection(bytes) if bytes.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        }
        JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
        other => ApiError::invalid(other.body_text()),
    }
}

/// 415 `unsupported_media_type`, as `Json` answers without a JSON `Content-Type`.
pub fn unsupported_media_type() -> ApiError {
    ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send Content-Type: application/json")
}

/// Whether `Content-Type` says JSON, by the rule of `axum::Json`: `application/json` or
/// `application/<anything>+json`, with or without parameters.
pub fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else { return false };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

/// Middleware for handlers that read a JSON body as bytes: 415 unless it is declared JSON.
pub async fn require_json(request: Request, next: Next) -> Response {
    if is_json_content_type(request.headers()) {
        next.run(request).await
    } else {
        unsupported_media_type().into_response()
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_too_large_is_unprocessable_with_its_code() {
        let error = ApiError::from_rejection(&Rejection::AmountTooLarge, Currency::EUR);
        assert_eq!((error.status, error.code), (StatusCode::UNPROCESSABLE_ENTITY, "amount_too_large"));
    }

    /// A command no journal record can hold was not taken: 413 with its own code, not a 500.
    #[test]
    fn a_command_too_large_for_the_journal_is_payload_too_large_with_its_code() {
        let error = ApiError::from(engine::EngineError::CommandTooLarge { bytes: 40 << 20, max: 31 << 20 });
        assert_eq!((error.status, error.code), (StatusCode::PAYLOAD_TOO_LARGE, "command_too_large"));
    }
}
