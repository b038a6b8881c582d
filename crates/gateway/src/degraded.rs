//! The operator's degraded-mode switches (scope `trading`), for a derby night or a feed
//! outage. The book decides them (`book/src/degraded.rs`), so they are journaled, audited and
//! survive restarts:
//!
//! - `PUT /v1/admin/trading-mode` `{"pre_match_only"?, "cached_odds"?}`: refuse in-play bets;
//!   flag every market `delayed` and make every bet wait out a delay;
//! - `GET /v1/admin/trading-mode`;
//! - `PUT /v1/admin/markets/{id}/throttle` `{"bets_per_second": n | null}`: a market's
//!   acceptance throttle; beyond it bets get 429 `market_throttled` with `Retry-After`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::Router;
use book::{scopes, Command, MarketId, Rejection};
use serde::{Deserialize, Serialize};

use crate::dto::parse_id;
use crate::error::{ApiError, Json};
use crate::{AppState, Principal};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/trading-mode", get(trading_mode).put(set_trading_mode))
        .route("/v1/admin/markets/{id}/throttle", put(set_market_throttle))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TradingModeRequest {
    /// Refuse bets on markets in play (`market_suspended`); pre-match betting goes on.
    pub pre_match_only: Option<bool>,
    /// Serve cached odds: every market is `delayed` and every bet waits out a delay before it
    /// stands (and is re-checked against the price then).
    pub cached_odds: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TradingModeView {
    pub pre_match_only: bool,
    pub cached_odds: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThrottleRequest {
    /// Bets a second the market accepts (a one-second burst), 1 to 1,000,000; `null` removes
    /// the throttle.
    #[schema(required = true, minimum = 1, maximum = 1_000_000)]
    #[serde(deserialize_with = "required_nullable")]
    pub bets_per_second: Option<u32>,
}

/// A field that must be sent, as a value or `null`.
fn required_nullable<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    Option::<u32>::deserialize(deserializer)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ThrottleView {
    pub market_id: String,
    #[schema(required = true)]
    pub bets_per_second: Option<u32>,
}

async fn mode_view(state: &AppState) -> Result<TradingModeView, ApiError> {
    let mode = state.read(|book| book.degraded().mode()).await?;
    Ok(TradingModeView { pre_match_only: mode.pre_match_only, cached_odds: mode.cached_odds })
}

/// `GET /v1/admin/trading-mode` (trading).
#[utoipa::path(
    get,
    path = "/v1/admin/trading-mode",
    tag = "operators",
    summary = "Degraded-mode switches",
    description = "Whether the book takes pre-match bets only and whether it serves cached odds. Scope: `trading`.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The switches", body = TradingModeView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn trading_mode(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<TradingModeView>, ApiError> {
    principal.require_scope(scopes::TRADING)?;
    Ok(Json(mode_view(&state).await?))
}

/// `PUT /v1/admin/trading-mode` (trading).
#[utoipa::path(
    put,
    path = "/v1/admin/trading-mode",
    tag = "operators",
    summary = "Switch degraded modes",
    description = "Pre-match only (in-play bets refused with `market_suspended`) and cached odds (every \
        market `delayed`, every bet waits out a delay). A switch not sent is left as it is. Scope: `trading`.",
    security(("bearer" = [])),
    request_body = TradingModeRequest,
    responses(
        (status = 200, description = "The switches now", body = TradingModeView),
        (status = 400, description = "Malformed body or unknown field (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn set_trading_mode(
    principal: Principal,
    State(state): State<AppState>,
    body: Result<Json<TradingModeRequest>, ApiError>,
) -> Result<Json<TradingModeView>, ApiError> {
    principal.require_scope(scopes::TRADING)?;
    let Json(request) = body?;
    let command = Command::SetTradingMode { pre_match_only: request.pre_match_only, cached_odds: request.cached_odds };
    state
        .submit(command, principal.origin())
        .await?
        .map_err(|rejection| ApiError::from_rejection(&rejection, domain::Currency::EUR))?;
    Ok(Json(mode_view(&state).await?))
}

/// `PUT /v1/admin/markets/{id}/throttle` (trading).
#[utoipa::path(
    put,
    path = "/v1/admin/markets/{id}/throttle",
    tag = "operators",
    summary = "Throttle a market",
    description = "At most `bets_per_second` bets a second on the market (a token bucket on book time with a \
        one-second burst); beyond it bets are refused with 429 `market_throttled` and `Retry-After`. `null` \
        removes the throttle. Scope: `trading`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A market id", example = "mkt_1")),
    request_body = ThrottleRequest,
    responses(
        (status = 200, description = "The market's throttle now", body = ThrottleView),
        (status = 400, description = "Malformed body or unknown field (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such market (`not_found`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "0 or above 1,000,000 bets a second (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn set_market_throttle(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<ThrottleRequest>, ApiError>,
) -> Result<Json<ThrottleView>, ApiError> {
    principal.require_scope(scopes::TRADING)?;
    let Json(request) = body?;
    let Path(text) = path.map_err(|_| ApiError::not_found("market"))?;
    let market = MarketId(parse_id(&text, "mkt_", "market")?);
    let command = Command::SetMarketThrottle { market, bets_per_second: request.bets_per_second };
    state.submit(command, principal.origin()).await?.map_err(|rejection| match rejection {
        Rejection::UnknownMarket => ApiError::not_found("market"),
        other => ApiError::from_rejection(&other, domain::Currency::EUR),
    })?;
    let bets_per_second = state.read(move |book| book.degraded().throttle(market)).await?;
    Ok(Json(ThrottleView { market_id: market.to_string(), bets_per_second }))
}
