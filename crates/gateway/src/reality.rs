//! Reality checks at the edge: `PUT|GET /v1/reality-check` (the interval and the session's
//! time played and net position) and `POST /v1/reality-check/acknowledge`, for clients that
//! do not hold the stream (those that do get a `reality_check` message when one falls due).
//! The book decides everything (`book::RealityChecks`); this file only renders it.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use book::{AccountId, Book, Command, Timestamp};
use domain::{Currency, Money};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{ApiError, Json};
use crate::time::format_rfc3339;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/reality-check", get(get_reality_check).put(put_reality_check))
        .route("/v1/reality-check/acknowledge", post(acknowledge))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RealityCheckRequest {
    /// Minutes between checks, 10 to 240; `null` stops the checks. Required.
    #[serde(default, deserialize_with = "crate::players::present")]
    #[schema(value_type = Option<u32>, required = true, minimum = 10, maximum = 240, example = 30)]
    pub interval_minutes: Option<Option<u32>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RealityCheckView {
    /// `null` when the player chose no reality checks.
    #[schema(required = true)]
    pub interval_minutes: Option<u32>,
    /// When the session started (the last login, or the choice of an interval).
    #[schema(required = true)]
    pub session_started_at: Option<String>,
    #[schema(required = true)]
    pub time_played_seconds: Option<u64>,
    /// Returns less stakes since the session started, a money string: negative when lost.
    #[schema(required = true, example = "-12.50")]
    pub net_position: Option<String>,
    /// A check fell due and is not acknowledged: bets are refused (403 `reality_check_due`).
    pub due: bool,
    /// When the next check falls due; `null` while one is due (it is scheduled at the
    /// acknowledgement) or without checks.
    #[schema(required = true)]
    pub next_due_at: Option<String>,
}

/// Book time, or the wall clock when it is later (book time moves only with commands).
fn now_ms(book: &Book) -> Timestamp {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    book.now().max(wall)
}

/// A signed amount as a money string of `currency` (`-12.50`).
pub(crate) fn signed_money(currency: Currency, minor: i64) -> String {
    let text = currency.format(Money::from_minor(minor.unsigned_abs().min(i64::MAX as u64) as i64));
    if minor < 0 {
        format!("-{text}")
    } else {
        text
    }
}

pub(crate) fn view(book: &Book, account: AccountId, currency: Currency) -> RealityCheckView {
    let Some(check) = book.reality_checks().get(account) else {
        return RealityCheckView {
            interval_minutes: None,
            session_started_at: None,
            time_played_seconds: None,
            net_position: None,
            due: false,
            next_due_at: None,
        };
    };
    RealityCheckView {
        interval_minutes: Some(check.interval_minutes),
        session_started_at: Some(format_rfc3339(check.session_started_at)),
        time_played_seconds: Some(now_ms(book).saturating_sub(check.session_started_at) / 1_000),
        net_position: Some(signed_money(currency, check.net_minor)),
        due: check.due,
        next_due_at: check.next_due_at.map(format_rfc3339),
    }
}

async fn current(state: &AppState, account: AccountId, currency: Currency) -> Result<RealityCheckView, ApiError> {
    state.read(move |book| view(book, account, currency)).await
}

#[utoipa::path(
    get,
    path = "/v1/reality-check",
    tag = "players",
    summary = "The reality check",
    description = "The interval the player chose, the session's start, time played and net position (returns less \
        stakes since the session started), whether a check is due and when the next one falls due.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The reality check (all `null` but `due` without one)", body = RealityCheckView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn get_reality_check(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<RealityCheckView>, ApiError> {
    let (account, currency) = principal.player()?;
    Ok(Json(current(&state, account, currency).await?))
}

#[utoipa::path(
    put,
    path = "/v1/reality-check",
    tag = "players",
    summary = "Choose the reality check interval",
    description = "Every `interval_minutes` (10 to 240) of a session the player is told, on the stream and here, how \
        long they have played and their net position, and bets pause (403 `reality_check_due`) until they \
        acknowledge. A first choice starts a session now; a change counts the new interval from now; `null` stops \
        the checks. A login starts a new session.",
    security(("bearer" = [])),
    request_body = RealityCheckRequest,
    responses(
        (status = 200, description = "The reality check now", body = RealityCheckView),
        (status = 400, description = "Malformed body, unknown or missing field (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`), or `null` while a check is due \
            (`reality_check_due`: it is acknowledged first)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "Interval out of range (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn put_reality_check(
    State(state): State<AppState>,
    principal: Principal,
    Json(request): Json<RealityCheckRequest>,
) -> Result<Json<RealityCheckView>, ApiError> {
    let (account, currency) = principal.player()?;
    let Some(interval_minutes) = request.interval_minutes else {
        return Err(
            ApiError::invalid("interval_minutes is required (null stops the checks)").with("field", "interval_minutes")
        );
    };
    let command = Command::SetRealityCheck { account, interval_minutes };
    let (reply, view) =
        state.submit_then(command, principal.origin(), move |book, _| view(book, account, currency)).await?;
    reply.map_err(|rejection| ApiError::from_rejection(&rejection, currency))?;
    Ok(Json(view))
}

#[utoipa::path(
    post,
    path = "/v1/reality-check/acknowledge",
    tag = "players",
    summary = "Acknowledge the reality check",
    description = "Acknowledges the check that fell due: bets are accepted again and the next check falls due an \
        interval from now.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Acknowledged; the reality check now", body = RealityCheckView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a player token (`forbidden`)", body = ApiError),
        (status = 409, description = "No check is due (`no_reality_check_due`)", body = ApiError),
    ),
)]
pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<RealityCheckView>, ApiError> {
    let (account, currency) = principal.player()?;
    let command = Command::AcknowledgeRealityCheck { account };
    let (reply, view) =
        state.submit_then(command, principal.origin(), move |book, _| view(book, account, currency)).await?;
    reply.map_err(|rejection| ApiError::from_rejection(&rejection, currency))?;
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_positions_are_signed_money_strings() {
        assert_eq!(signed_money(Currency::EUR, -1_250), "-12.50");
        assert_eq!(signed_money(Currency::EUR, 1_000), "10.00");
        assert_eq!(signed_money(Currency::EUR, 0), "0.00");
        assert_eq!(signed_money(Currency::EUR, -5), "-0.05");
    }
}
