//! Operator routes: fixtures, markets and prices, market status and in-play, risk settings,
//! exposure, settlement and API keys. Every route wants an operator API key holding one of the
//! scopes of `../shared/API.md` ("Operators"): no valid credential is 401, a player token or a
//! key without the scope is 403.
//!
//! The scope is checked before the path and the body are looked at, so a caller without it
//! learns nothing from their validation. Malformed input (odds, money, factors, ids in the body,
//! empty lists) is refused here with 400 `invalid_request` naming the field; everything else is
//! the book's decision.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::Router;
use book::{
    scopes, AccountId, Ack, ApiKeyId, Book, Command, EachWayTerms, EventId, MarketAction, MarketId, MarketRiskChange,
    NewSelection, Origin, Rejection, SelectionId,
};
use domain::{Currency, Money, Odds, Ratio};
use serde::{Deserialize, Deserializer, Serialize};

use crate::dto::{parse_id, parse_money, parse_odds, EventView, MarketView, PageQuery};
use crate::error::{ApiError, Json, OptionalJson};
use crate::time::parse_rfc3339;
use crate::{random_token, sha256_hex, AppState, Principal, API_KEY_PREFIX};

/// Operator commands' rejections carry no amounts (those that do, `stake_too_low` and
/// `stake_too_high`, answer bets), so the currency they are rendered with never shows.
const OPERATOR_REJECTION_CURRENCY: Currency = Currency::EUR;

/// Market kind when a request names none.
const MARKET_KIND_DEFAULT: &str = "other";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/events", post(create_event))
        .route("/v1/admin/events/{id}/markets", post(create_market))
        .route("/v1/admin/events/{id}/in-play", post(set_in_play))
        .route("/v1/admin/events/{id}/end", post(end_event))
        .route("/v1/admin/markets/{id}/prices", put(set_prices))
        .route("/v1/admin/markets/{id}/suspend", post(suspend_market))
        .route("/v1/admin/markets/{id}/resume", post(resume_market))
        .route("/v1/admin/markets/{id}/close", post(close_market))
        .route("/v1/admin/markets/{id}/risk", put(set_market_risk))
        .route("/v1/admin/markets/{id}/settle", post(settle_market))
        .route("/v1/admin/markets/{id}/unsettle", post(unsettle_market))
        .route("/v1/admin/markets/{id}/void", post(void_market))
        .route("/v1/admin/accounts/{id}/risk", put(set_account_risk))
        .route("/v1/admin/exposure", get(exposure))
        .route("/v1/admin/api-keys", post(create_api_key))
        .route("/v1/admin/api-keys/{id}", delete(revoke_api_key))
}

// ---- requests ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEventRequest {
    #[schema(example = "Arsenal v Chelsea")]
    pub name: String,
    #[schema(example = "football")]
    pub sport: String,
    #[schema(example = "Premier League")]
    pub competition: Option<String>,
    /// RFC 3339 UTC: `"2026-11-25T20:00:00Z"`.
    #[schema(
        example = "2026-11-25T20:00:00Z",
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|\+00:00)$"
    )]
    pub starts_at: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMarketRequest {
    #[schema(example = "Match result")]
    pub name: String,
    /// Free text such as `1x2`, `over_under`, `winner`; `other` when absent.
    #[schema(example = "1x2")]
    pub kind: Option<String>,
    /// 1 to 64 selections.
    #[schema(min_items = 1, max_items = 64)]
    pub selections: Vec<NewSelectionRequest>,
    pub each_way: Option<EachWayRequest>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSelectionRequest {
    #[schema(example = "Home")]
    pub name: String,
    /// Odds: decimal `"2.50"`, fractional `"3/2"` or American `"+150"`.
    #[schema(example = "2.50", pattern = r"^([0-9]{1,6}(\.[0-9]{1,4})?|[0-9]{1,9}/[0-9]{1,9}|[+-][0-9]{3,9})$")]
    pub price: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EachWayRequest {
    #[schema(example = 3)]
    pub places: u32,
    /// The fraction of the odds the place part pays: `"1/5"` or `"0.2"`.
    #[schema(example = "1/5", pattern = r"^([0-9]{1,9}(\.[0-9]{1,6})?|[0-9]{1,9}/[0-9]{1,9})$")]
    pub fraction: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPricesRequest {
    #[schema(min_items = 1, max_items = 64)]
    pub prices: Vec<PriceRequest>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceRequest {
    #[schema(example = "sel_1")]
    pub selection_id: String,
    #[schema(example = "2.40", pattern = r"^([0-9]{1,6}(\.[0-9]{1,4})?|[0-9]{1,9}/[0-9]{1,9}|[+-][0-9]{3,9})$")]
    pub price: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InPlayRequest {
    /// Seconds a bet placed in play waits before it is decided, 0 to 60.
    #[schema(example = 5, maximum = 60)]
    pub bet_delay_seconds: u32,
}

/// Each field absent leaves the setting as it is; `null` clears it (the book's default, or no
/// cap). Money in EUR.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarketRiskRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub max_stake: Option<Option<String>>,
    /// Cap on the market's worst-case liability (its largest selection liability).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub liability_cap: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub selection_liability_cap: Option<Option<String>>,
    /// The market suspends itself when a selection's liability reaches this.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub suspend_at_liability: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, required = false, maximum = 60)]
    pub in_play_delay_seconds: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub max_payout: Option<Option<String>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`, by `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Absent or `null` fields leave the setting as it is.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRiskRequest {
    /// Scales the customer's maximum stake: `"0.5"`, `"1/3"`, `"1"`, at most `"100"`.
    #[schema(example = "0.5", pattern = r"^([0-9]{1,9}(\.[0-9]{1,6})?|[0-9]{1,9}/[0-9]{1,9})$")]
    pub stake_factor: Option<String>,
    pub frozen: Option<bool>,
    /// Why (a freeze, a stake factor): journaled with the change and shown in the audit trail.
    #[schema(example = "bonus abuse under review", max_length = 500)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleRequest {
    /// Selections not named lose.
    #[schema(min_items = 1, max_items = 64)]
    pub results: Vec<ResultRequestBody>,
    /// Why, shown in the audit trail (a resettlement's correction, say).
    #[schema(example = "official result", max_length = 500)]
    pub reason: Option<String>,
}

/// The optional body of `unsettle` and `void`: why, journaled with the command and shown in
/// the audit trail. The body may be left out.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    #[schema(example = "match abandoned", max_length = 500)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultRequestBody {
    #[schema(example = "sel_1")]
    pub selection_id: String,
    pub outcome: OutcomeName,
    /// `"0.5"` or `"1/3"`: in (0, 1]; 1 when absent.
    #[schema(example = "0.5", pattern = r"^([0-9]{1,9}(\.[0-9]{1,6})?|[0-9]{1,9}/[0-9]{1,9})$")]
    pub dead_heat_factor: Option<String>,
    /// The part of the stake refunded (`"0.5"` for an Asian quarter line); 0 when absent.
    #[schema(example = "0.5", pattern = r"^([0-9]{1,9}(\.[0-9]{1,6})?|[0-9]{1,9}/[0-9]{1,9})$")]
    pub void_factor: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeName {
    Win,
    Lose,
    Void,
    /// Placed within the each-way places without winning.
    Place,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    #[schema(example = "trading desk")]
    pub name: String,
    /// Any of `trading`, `settlement`, `feed`, `compliance`, `admin`.
    #[schema(example = json!(["trading"]), min_items = 1)]
    pub scopes: Vec<String>,
}

// ---- responses --------------------------------------------------------------------------------

/// A market's risk settings; `null` is the book's default, or no cap. Money in EUR.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MarketRiskView {
    pub market_id: String,
    /// The book's base currency: every amount here is in it, and applies to bets in other
    /// currencies through the exchange rates (`GET /v1/admin/fx-rates`).
    #[schema(example = "EUR")]
    pub currency: String,
    #[schema(required = true)]
    pub max_stake: Option<String>,
    #[schema(required = true)]
    pub liability_cap: Option<String>,
    #[schema(required = true)]
    pub selection_liability_cap: Option<String>,
    #[schema(required = true)]
    pub suspend_at_liability: Option<String>,
    #[schema(required = true)]
    pub in_play_delay_seconds: Option<u32>,
    #[schema(required = true)]
    pub max_payout: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountRiskView {
    pub account_id: String,
    pub stake_factor: String,
    pub frozen: bool,
}

/// Liability over open bets: what the house loses if a selection wins. Each amount carries its
/// `currency`: `liability` and `total` are in the base currency (each bet converted with the
/// rate in force when it was placed, rounded up), `by_currency` in each bettor's currency.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExposureView {
    /// Markets with a nonzero liability, in id order.
    pub items: Vec<MarketExposureView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    /// Sum of every market's base-currency liability over the whole book (not only this page).
    /// A multiple counts in each market it has a leg in.
    pub total: String,
    /// The base currency of `total`.
    #[schema(example = "EUR")]
    pub currency: String,
    /// Per bettor currency, the sum over markets of each market's worst case in that currency.
    pub total_by_currency: Vec<CurrencyAmountView>,
    /// The version of the exchange-rate table in force.
    pub fx_version: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MarketExposureView {
    pub market_id: String,
    pub event_id: String,
    /// The worst case in the base currency: the largest base liability of its selections.
    pub liability: String,
    /// The base currency.
    #[schema(example = "EUR")]
    pub currency: String,
    /// Per bettor currency, that currency's worst case over the selections.
    pub by_currency: Vec<CurrencyAmountView>,
    pub selections: Vec<SelectionExposureView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SelectionExposureView {
    pub selection_id: String,
    /// In the base currency.
    pub liability: String,
    /// The base currency.
    #[schema(example = "EUR")]
    pub currency: String,
    /// The liability of bets in each currency, in that currency.
    pub by_currency: Vec<CurrencyAmountView>,
}

/// An amount in a named currency.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CurrencyAmountView {
    #[schema(example = "JPY")]
    pub currency: String,
    #[schema(example = "20000")]
    pub liability: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettlementView {
    pub market_id: String,
    /// `open`, `suspended`, `closed`, `settled` or `voided`.
    pub status: String,
    /// Increases on every settlement, void and unsettlement.
    pub settlement_version: u32,
    /// Bets whose settlement changed (0 when the same results are sent again).
    pub bets_settled: u32,
}

/// A new API key. `key` is shown this once; the book keeps only its SHA-256.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyCreatedView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub key: String,
}

// ---- fixtures and markets ---------------------------------------------------------------------

/// `POST /v1/admin/events` (trading) → 201 event.
#[utoipa::path(
    post,
    path = "/v1/admin/events",
    tag = "operators",
    summary = "Create an event",
    description = "Creates a fixture. Scope: `trading`.",
    security(("bearer" = [])),
    request_body = CreateEventRequest,
    responses(
        (status = 201, description = "The new event (no markets yet)", body = EventView),
        (status = 400, description = "Malformed body, unknown field, bad `starts_at`, or a name, sport or \
            competition over 200 bytes (`invalid_request`, names the `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "A field the book refuses (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn create_event(
    principal: Principal,
    State(state): State<AppState>,
    body: Result<Json<CreateEventRequest>, ApiError>,
) -> Result<(StatusCode, Json<EventView>), ApiError> {
    principal.require_scope(scopes::TRADING)?;
    let Json(request) = body?;
    // Free text is bounded before the book, so a refused request never reaches the journal.
    let name_max = book::constants::NAME_BYTES_MAX;
    crate::requests::check_text(&request.name, "name", 1, name_max)?;
    crate::requests::check_text(&request.sport, "sport", 1, name_max)?;
    crate::requests::check_text(request.competition.as_deref().unwrap_or(""), "competition", 0, name_max)?;
    let starts_at = parse_rfc3339(&request.starts_at).ok_or_else(|| {
        ApiError::invalid("starts_at: not an RFC 3339 UTC time such as 2026-11-25T20:00:00Z").with("field", "starts_at")
    })?;
    let command = Command::CreateEvent {
        name: request.name,
        sport: request.sport,
        competition: request.competition.unwrap_or_default(),
        starts_at,
    };
    let event = match decide(&state, principal.origin(), command).await? {
        Ack::EventCreated(event) => event,
        other => return Err(unexpected(&other)),
    };
    Ok((StatusCode::CREATED, Json(event_view(&state, event).await?)))
}

/// `POST /v1/admin/events/{id}/markets` (trading) → 201 market with its selections.
#[utoipa::path(
    post,
    path = "/v1/admin/events/{id}/markets",
    tag = "operators",
    summary = "Create a market",
    description = "Creates a market with its selections and their first prices. Scope: `trading`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "An event id", example = "evt_1")),
    request_body = CreateMarketRequest,
    responses(
        (status = 201, description = "The new market with its selections", body = MarketView),
        (status = 400, description = "Malformed body, unknown field, bad odds or fraction, no or too many \
            selections, or a name or kind over 200 bytes (`invalid_request`, names the `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such event (`not_found`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "The book refuses it: the event has ended or has too many markets, a name is too \
            long ... (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn create_market(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<CreateMarketRequest>, ApiError>,
) -> Result<(StatusCode, Json<MarketView>), ApiError> {
    principal.require_scope(scopes::TRADING)?;
    let Json(request) = body?;
    let event = EventId(path_id(path, "evt_", "event")?);
    let selections_max = book::constants::SELECTIONS_PER_MARKET_MAX;
    if request.selections.is_empty() || request.selections.len() > selections_max {
        return Err(ApiError::invalid(format!("selections: a market has 1 to {selections_max} selections"))
            .with("field", "selections"));
    }
    let name_max = book::constants::NAME_BYTES_MAX;
    crate::requests::check_text(&request.name, "name", 1, name_max)?;
    crate::requests::check_text(request.kind.as_deref().unwrap_or(MARKET_KIND_DEFAULT), "kind", 0, name_max)?;
    let selections = request
        .selections
        .into_iter()
        .enumerate()
        .map(|(index, selection)| {
            crate::requests::check_text(&selection.name, &format!("selections[{index}].name"), 1, name_max)?;
            let price = parse_odds(&selection.price, &format!("selections[{index}].price"))?;
            Ok(NewSelection { name: selection.name, price })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let each_way = request
        .each_way
        .map(|terms| {
            let fraction = parse_ratio(&terms.fraction, "each_way.fraction")?;
            Ok::<_, ApiError>(EachWayTerms { places: terms.places, fraction })
        })
        .transpose()?;
    let command = Command::CreateMarket {
        event,
        name: request.name,
        kind: request.kind.unwrap_or_else(|| MARKET_KIND_DEFAULT.to_string()),
        selections,
        each_way,
    };
    let market = match decide(&state, principal.origin(), command).await? {
        Ack::MarketCreated { market, .. } => market,
        other => return Err(unexpected(&other)),
    };
    Ok((StatusCode::CREATED, Json(market_view(&state, market).await?)))
}

/// `PUT /v1/admin/markets/{id}/prices` (trading or feed): a changed price gets a new version.
#[utoipa::path(
    put,
    path = "/v1/admin/markets/{id}/prices",
    tag = "operators",
    summary = "Set prices",
    description = "Sets prices; a changed price gets a new price version. Scope: `trading` or `feed`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A market id", example = "mkt_1")),
    request_body = SetPricesRequest,
    responses(
        (status = 200, description = "The market with its new prices", body = MarketView),
        (status = 400, description = "Malformed body, unknown field, bad selection id or odds, or no or too many \
            prices (`invalid_request`, names the `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such market (`not_found`)", body = ApiError),
        (status = 409, description = "The market is closed (`market_closed`), or a selection is not in it \
            (`selection_unavailable`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "The book refuses it (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn set_prices(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<SetPricesRequest>, ApiError>,
) -> Result<Json<MarketView>, ApiError> {
    principal.require_scope(scopes::TRADING | scopes::FEED)?;
    let Json(request) = body?;
    let market = MarketId(path_id(path, "mkt_", "market")?);
    let prices_max = book::constants::SELECTIONS_PER_MARKET_MAX;
    if request.prices.is_empty() || request.prices.len() > prices_max {
        return Err(ApiError::invalid(format!("prices: 1 to {prices_max} prices")).with("field", "prices"));
    }
    let prices = request
        .prices
        .iter()
        .enumerate()
        .map(|(index, price)| {
            let selection = body_id(&price.selection_id, "sel_", &format!("prices[{index}].selection_id"))?;
            let odds: Odds = parse_odds(&price.price, &format!("prices[{index}].price"))?;
            Ok((SelectionId(selection), odds))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    decide(&state, principal.origin(), Command::SetPrices { market, prices }).await?;
    Ok(Json(market_view(&state, market).await?))
}

/// `POST /v1/admin/markets/{id}/suspend` (trading).
#[utoipa::path(
    post,
    path = "/v1/admin/markets/{id}/suspend",
    tag = "operators",
    summary = "Suspend a market",
    description = "Suspends the market: no bets until it resumes. Scope: `trading`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A market id", example = "mkt_1")),
    responses(
        (status = 200, description = "The market, suspended", body = MarketView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such market (`not_found`)", body = ApiError),
        (status = 409, description = "The market is closed, settled or voided (`market_closed`)", body = ApiError),
    ),
)]
pub(crate) async fn suspend_market(
    principal: Principal,
    state: State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MarketView>, ApiError> {
    change_market_status(principal, state, path, MarketAction::Suspend).await
}

/// `POST /v1/admin/markets/{id}/resume` (trading).
#[utoipa::path(
    post,
    path = "/v1/admin/markets/{id}/resume",
    tag = "operators",
    summary = "Resume a market",
    description = "Opens a suspended market again. Scope: `trading`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A market id", example = "mkt_1")),
    responses(
        (status = 200, description = "The market, open", body = MarketView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such market (`not_found`)", body = ApiError),
        (status = 409, description = "The market is closed, settled or voided (`market_closed`)", body = ApiError),
    ),
)]
pub(crate) async fn resume_market(
    principal: Principal,
    state: State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MarketView>, ApiError> {
    change_market_status(principal, state, path, MarketAction::Resume).await
}

/// `POST /v1/admin/markets/{id}/close` (trading): no more bets; results come later.
#[utoipa::path(
    post,
    path = "/v1/admin/markets/{id}/close",
    tag = "operators",
    summary = "Close a market",
    description = "Closes the market: no more bets; results come later. Closing a closed market changes nothing. \
        Scope: `trading`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A market id", example = "mkt_1")),
    responses(
        (status = 200, description = "The market, closed", body = MarketView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such market (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn close_market(
    principal: Principal,
    state: State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MarketView>, ApiError> {
    change_market_status(principal, state, path, MarketAction::Close).await
}

async fn change_market_status(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    action: MarketAction,
) -> Result<Json<MarketView>, ApiError> {
    principal.require_scope(scopes::TRADING)?;
    let market = MarketId(path_id(path, "mkt_", "market")?);
    decide(&state, principal.origin(), Command::SetMarketStatus { market, action }).await?;
    Ok(Json(market_view(&state, market).await?))
}

/// `POST /v1/admin/events/{id}/in-play` (trading or feed): the event and its markets go in
/// play, with a delay on bets.
#[utoipa::path(
    post,
    path = "/v1/admin/events/{id}/in-play",
    tag = "operators",
    summary = "Put an event in play",
    description = "Marks the event and its markets in play, with a delay on bets. Scope: `trading` or `feed`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "An event id", example = "evt_1")),
    request_body = InPlayRequest,
    responses(
        (status = 200, description = "The event, in play", body = EventView),
        (status = 400, description = "Malformed body or unknown field (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such event (`not_found`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "The event has ended, or the delay is above 60 seconds \
            (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn set_in_play(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<InPlayRequest>, ApiError>,
) -> Result<Json<EventView>, ApiError> {
    principal.require_scope(scopes::TRADING | scopes::FEED)?;
    let Json(request) = body?;
    let event = EventId(path_id(path, "evt_", "event")?);
    decide(&state, principal.origin(), Command::SetInPlay { event, bet_delay_seconds: request.bet_delay_seconds })
        .await?;
    Ok(Json(event_view(&state, event).await?))
}

/// `POST /v1/admin/events/{id}/end` (trading): the event ends and its open markets close.
#[utoipa::path(
    post,
    path = "/v1/admin/events/{id}/end",
    tag = "operators",
    summary = "End an event",
    description = "Ends the event; its open and suspended markets close. Scope: `trading`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "An event id", example = "evt_1")),
    responses(
        (status = 200, description = "The event, ended", body = EventView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such event (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn end_event(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EventView>, ApiError> {
    principal.require_scope(scopes::TRADING)?;
    let event = EventId(path_id(path, "evt_", "event")?);
    decide(&state, principal.origin(), Command::EndEvent { event }).await?;
    Ok(Json(event_view(&state, event).await?))
}

// ---- risk -------------------------------------------------------------------------------------

/// `PUT /v1/admin/markets/{id}/risk` (trading) → the market's risk settings after the change.
#[utoipa::path(
    put,
    path = "/v1/admin/markets/{id}/risk",
    tag = "operators",
    summary = "Set a market's risk settings",
    description = "Changes a market's risk settings: liability caps, maximum stake and payout, in-play delay. Scope: \
        `trading`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A market id", example = "mkt_1")),
    request_body = MarketRiskRequest,
    responses(
        (status = 200, description = "The market's risk settings after the change", body = MarketRiskView),
        (status = 400, description = "Malformed body, unknown field or bad money (`invalid_request`, names the \
            `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such market (`not_found`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "A negative amount or a delay above 60 seconds \
            (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn set_market_risk(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<MarketRiskRequest>, ApiError>,
) -> Result<Json<MarketRiskView>, ApiError> {
    principal.require_scope(scopes::TRADING)?;
    let Json(request) = body?;
    let market = MarketId(path_id(path, "mkt_", "market")?);
    // Risk settings are in the base currency, which is fixed once a market exists.
    let base = state.read(|book| book.fx().base).await?;
    let change = MarketRiskChange {
        max_stake: money_setting(base, request.max_stake, "max_stake")?,
        liability_cap: money_setting(base, request.liability_cap, "liability_cap")?,
        selection_liability_cap: money_setting(base, request.selection_liability_cap, "selection_liability_cap")?,
        suspend_at_liability: money_setting(base, request.suspend_at_liability, "suspend_at_liability")?,
        in_play_delay_seconds: request.in_play_delay_seconds,
        max_payout: money_setting(base, request.max_payout, "max_payout")?,
    };
    decide(&state, principal.origin(), Command::SetMarketRisk { market, change }).await?;
    let view = state
        .read(move |book| {
            book.market(market).map(|found| {
                let risk = found.risk;
                let base = book.fx().base;
                let money = |amount: Option<Money>| amount.map(|amount| base.format(amount));
                MarketRiskView {
                    market_id: market.to_string(),
                    currency: base.to_string(),
                    max_stake: money(risk.max_stake),
                    liability_cap: money(risk.liability_cap),
                    selection_liability_cap: money(risk.selection_liability_cap),
                    suspend_at_liability: money(risk.suspend_at_liability),
                    in_play_delay_seconds: risk.in_play_delay_seconds,
                    max_payout: money(risk.max_payout),
                }
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found("market"))?;
    Ok(Json(view))
}

/// A market's worst case, its largest selection liability; `None` when no selection has any.
/// One page of markets with open liability, after the market id `after`, and the cursor of the
/// next page (None on the last one). Shared by the exposure route and the liabilities report.
pub(crate) fn exposure_page(
    book: &Book,
    after: Option<u64>,
    limit: usize,
) -> (Vec<MarketExposureView>, Option<String>) {
    // Market ids are dense from 1, so the markets after the cursor's id start at that index.
    let start = after.map_or(0, |id| usize::try_from(id).unwrap_or(usize::MAX));
    let base = book.fx().base;
    let mut exposed = book.markets().range_from(start).filter_map(|market| {
        market_liability(book, market).map(|liability| MarketExposureView {
            market_id: market.id.to_string(),
            event_id: market.event.to_string(),
            liability: base.format(liability),
            currency: base.to_string(),
            by_currency: amounts_view(&market_liabilities_by_currency(book, market)),
            selections: market
                .selections
                .iter()
                .filter_map(|selection| book.selection(*selection))
                .map(|selection| SelectionExposureView {
                    selection_id: selection.id.to_string(),
                    liability: base.format(selection.liability),
                    currency: base.to_string(),
                    by_currency: amounts_view(&selection.liabilities),
                })
                .collect(),
        })
    });
    let items: Vec<MarketExposureView> = exposed.by_ref().take(limit).collect();
    // Look one past the page so the last page says so with a null cursor.
    let more = items.len() == limit && exposed.next().is_some();
    let next_cursor = if more { items.last().map(|market| market.market_id.clone()) } else { None };
    (items, next_cursor)
}

pub(crate) fn market_liability(book: &Book, market: &book::Market) -> Option<Money> {
    let liabilities = market.selections.iter().filter_map(|selection| book.selection(*selection)).map(|s| s.liability);
    if liabilities.clone().all(|liability| liability.minor() == 0) {
        return None;
    }
    liabilities.max()
}

/// A market's worst case in each bettor currency: per currency, the largest liability of its
/// selections in that currency (currencies with nothing at risk on any selection are left out).
pub(crate) fn market_liabilities_by_currency(book: &Book, market: &book::Market) -> Vec<(Currency, Money)> {
    let mut worst: std::collections::BTreeMap<Currency, Money> = std::collections::BTreeMap::new();
    for selection in market.selections.iter().filter_map(|selection| book.selection(*selection)) {
        for (currency, amount) in &selection.liabilities {
            let entry = worst.entry(*currency).or_insert(*amount);
            *entry = (*entry).max(*amount);
        }
    }
    worst.into_iter().collect()
}

pub(crate) fn amounts_view(amounts: &[(Currency, Money)]) -> Vec<CurrencyAmountView> {
    amounts
        .iter()
        .map(|(currency, amount)| CurrencyAmountView {
            currency: currency.to_string(),
            liability: currency.format(*amount),
        })
        .collect()
}

/// Per currency, the sum over every market of its worst case in that currency, summed wide.
pub(crate) fn total_by_currency(book: &Book) -> Vec<CurrencyAmountView> {
    let mut totals: std::collections::BTreeMap<Currency, i128> = std::collections::BTreeMap::new();
    for market in book.markets() {
        for (currency, amount) in market_liabilities_by_currency(book, market) {
            *totals.entry(currency).or_default() += i128::from(amount.minor());
        }
    }
    totals
        .into_iter()
        .map(|(currency, total)| CurrencyAmountView {
            currency: currency.to_string(),
            liability: crate::compliance::format_minor(currency, total),
        })
        .collect()
}

fn money_setting(
    base: Currency,
    value: Option<Option<String>>,
    field: &str,
) -> Result<Option<Option<Money>>, ApiError> {
    value.map(|inner| inner.map(|text| parse_money(base, &text, field)).transpose()).transpose()
}

/// `PUT /v1/admin/accounts/{id}/risk` (trading): stake factor and freeze of a customer.
#[utoipa::path(
    put,
    path = "/v1/admin/accounts/{id}/risk",
    tag = "operators",
    summary = "Set an account's risk settings",
    description = "Changes a customer's stake factor or freezes the account. A staff member must give a `reason`; \
        an API key may leave it out. Scope: `trading`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A player's account id", example = "acc_1")),
    request_body = AccountRiskRequest,
    responses(
        (status = 200, description = "The account's risk settings after the change", body = AccountRiskView),
        (status = 400, description = "Malformed body, unknown field or bad stake factor (`invalid_request`, names the \
            `field`), or a staff member gave no `reason` (`reason_required`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such account (`not_found`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "A stake factor above 100 (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn set_account_risk(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<AccountRiskRequest>, ApiError>,
) -> Result<Json<AccountRiskView>, ApiError> {
    principal.require_scope(scopes::TRADING)?;
    let Json(request) = body?;
    let account = AccountId(path_id(path, "acc_", "account")?);
    let stake_factor = request.stake_factor.map(|text| parse_ratio(&text, "stake_factor")).transpose()?;
    let origin = principal.origin().with_reason(required_reason(&principal, request.reason)?);
    decide(&state, origin, Command::SetAccountRisk { account, stake_factor, frozen: request.frozen }).await?;
    let view = state
        .read(move |book| {
            book.players().get(account.index()).map(|player| AccountRiskView {
                account_id: account.to_string(),
                stake_factor: player.stake_factor.to_string(),
                frozen: player.frozen,
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    Ok(Json(view))
}

/// `GET /v1/admin/exposure?limit=&cursor=` (trading): liability per market and selection over
/// open bets, only markets with some.
#[utoipa::path(
    get,
    path = "/v1/admin/exposure",
    tag = "operators",
    summary = "Exposure",
    description = "Liability per market and selection over open bets, only markets with some. Scope: `trading`.",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of markets with a liability, and the book's total", body = ExposureView),
        (status = 400, description = "Bad `limit` or `cursor`, or an unknown parameter \
            (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn exposure(
    principal: Principal,
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ExposureView>, ApiError> {
    principal.require_scope(scopes::TRADING)?;
    let Query(page) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let limit = page.limit()?;
    let after = page.after("mkt_")?;
    let view = state
        .read(move |book| {
            // Summed wide: each market's liability is within the money range, their sum need not be.
            let total: i128 = book
                .markets()
                .iter()
                .filter_map(|market| market_liability(book, market))
                .map(|liability| i128::from(liability.minor()))
                .sum();
            let (items, next_cursor) = exposure_page(book, after, limit);
            let base = book.fx().base;
            ExposureView {
                items,
                next_cursor,
                total: crate::compliance::format_minor(base, total),
                currency: base.to_string(),
                total_by_currency: total_by_currency(book),
                fx_version: book.fx().version,
            }
        })
        .await?;
    Ok(Json(view))
}

// ---- settlement -------------------------------------------------------------------------------

/// `POST /v1/admin/markets/{id}/settle` (settlement): results per selection; the rest lose.
/// Sending the same results again changes nothing.
#[utoipa::path(
    post,
    path = "/v1/admin/markets/{id}/settle",
    tag = "operators",
    summary = "Settle a market",
    description = "Settles the market with results per selection; selections not named lose. Sending the same results \
        again changes nothing. Scope: `settlement`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A market id", example = "mkt_1")),
    request_body = SettleRequest,
    responses(
        (status = 200, description = "The market, settled", body = SettlementView),
        (status = 400, description = "Malformed body, unknown field, bad selection id or factor, or no or too many \
            results (`invalid_request`, names the `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such market (`not_found`)", body = ApiError),
        (status = 409, description = "Already settled with other results (`already_settled`), a selection is not in \
            the market (`selection_unavailable`), or the market closed longer ago than the resettlement window \
            (`resettlement_window_closed`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "Results the book refuses: a selection resulted twice, `place` without each-way \
            terms, a factor out of range (`invalid_request`), or payouts that would take a balance past the money \
            maximum (`amount_too_large`; nothing changed)", body = ApiError),
    ),
)]
pub(crate) async fn settle_market(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<SettleRequest>, ApiError>,
) -> Result<Json<SettlementView>, ApiError> {
    principal.require_scope(scopes::SETTLEMENT)?;
    let Json(request) = body?;
    let market = MarketId(path_id(path, "mkt_", "market")?);
    let results = crate::requests::settle_results(&request)?;
    let origin = principal.origin().with_reason(crate::requests::reason(request.reason)?);
    resulted(&state, origin, market, Command::SettleMarket { market, results }).await
}

/// `POST /v1/admin/markets/{id}/unsettle` (settlement): reverses the settlement exactly; the
/// market is closed and its bets open again.
#[utoipa::path(
    post,
    path = "/v1/admin/markets/{id}/unsettle",
    tag = "operators",
    summary = "Unsettle a market",
    description = "Reverses the settlement exactly; the market is closed and its bets open again. The body (a \
        `reason`) may be left out by API keys; staff members must give one. Scope: `settlement`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A market id", example = "mkt_1")),
    request_body(content = ReasonRequest, description = "Optional: why", content_type = "application/json"),
    responses(
        (status = 200, description = "The market, closed again", body = SettlementView),
        (status = 400, description = "A body that is not the `reason` object: malformed, an unknown field, or a \
            `reason` too long (`invalid_request`), or a staff member gave no `reason` (`reason_required`)",
            body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such market (`not_found`)", body = ApiError),
        (status = 409, description = "The market is not settled (`not_settled`), or it was settled longer ago than \
            the resettlement window (`serve --resettlement-window`, 7 days by default): its results are final \
            (`resettlement_window_closed`)", body = ApiError),
        (status = 422, description = "Reopening its bets would take a balance, a debt or a liability past the \
            money maximum (`amount_too_large`); nothing changed", body = ApiError),
    ),
)]
pub(crate) async fn unsettle_market(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<OptionalJson<ReasonRequest>, ApiError>,
) -> Result<Json<SettlementView>, ApiError> {
    principal.require_scope(scopes::SETTLEMENT)?;
    let OptionalJson(request) = body?;
    let market = MarketId(path_id(path, "mkt_", "market")?);
    let reason = required_reason(&principal, request.unwrap_or_default().reason)?;
    resulted(&state, principal.origin().with_reason(reason), market, Command::UnsettleMarket { market }).await
}

/// `POST /v1/admin/markets/{id}/void` (settlement): every bet on the market is void.
#[utoipa::path(
    post,
    path = "/v1/admin/markets/{id}/void",
    tag = "operators",
    summary = "Void a market",
    description = "Voids every bet on the market. The body (a `reason`) may be left out by API keys; staff members must give one. Scope: `settlement`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A market id", example = "mkt_1")),
    request_body(content = ReasonRequest, description = "Optional: why", content_type = "application/json"),
    responses(
        (status = 200, description = "The market, voided", body = SettlementView),
        (status = 400, description = "A body that is not the `reason` object: malformed, an unknown field, or a \
            `reason` too long (`invalid_request`), or a staff member gave no `reason` (`reason_required`)",
            body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such market (`not_found`)", body = ApiError),
        (status = 409, description = "The market is settled; unsettle it first (`already_settled`), or it closed \
            longer ago than the resettlement window (`resettlement_window_closed`)", body = ApiError),
        (status = 422, description = "The refunds would take a balance past the money maximum \
            (`amount_too_large`); nothing changed", body = ApiError),
    ),
)]
pub(crate) async fn void_market(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<OptionalJson<ReasonRequest>, ApiError>,
) -> Result<Json<SettlementView>, ApiError> {
    principal.require_scope(scopes::SETTLEMENT)?;
    let OptionalJson(request) = body?;
    let market = MarketId(path_id(path, "mkt_", "market")?);
    let reason = required_reason(&principal, request.unwrap_or_default().reason)?;
    resulted(&state, principal.origin().with_reason(reason), market, Command::VoidMarket { market }).await
}

async fn resulted(
    state: &AppState,
    origin: Origin,
    market: MarketId,
    command: Command,
) -> Result<Json<SettlementView>, ApiError> {
    let bets_settled = match decide(state, origin, command).await? {
        Ack::Settled { bets } => bets,
        other => return Err(unexpected(&other)),
    };
    let view = state
        .read(move |book| {
            book.market(market).map(|found| SettlementView {
                market_id: market.to_string(),
                status: found.status.as_str().to_string(),
                settlement_version: found.settlement_version,
                bets_settled,
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found("market"))?;
    Ok(Json(view))
}

// ---- API keys ---------------------------------------------------------------------------------

/// `POST /v1/admin/api-keys` (admin) → 201 with the key, shown this once. It works at once.
#[utoipa::path(
    post,
    path = "/v1/admin/api-keys",
    tag = "operators",
    summary = "Create an API key",
    description = "Issues an operator API key; it works at once. Scope: `admin`.",
    security(("bearer" = [])),
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "The new key, shown this once", body = ApiKeyCreatedView),
        (status = 400, description = "Malformed body, unknown field, no or unknown scopes, or a name empty or over \
            200 bytes (`invalid_request`, names the `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` \
            (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "A key the book refuses (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn create_api_key(
    principal: Principal,
    State(state): State<AppState>,
    body: Result<Json<CreateApiKeyRequest>, ApiError>,
) -> Result<(StatusCode, Json<ApiKeyCreatedView>), ApiError> {
    principal.require_scope(scopes::ADMIN)?;
    let Json(request) = body?;
    crate::requests::check_text(&request.name, "name", 1, book::constants::API_KEY_NAME_BYTES_MAX)?;
    let mut scope_bits = 0u8;
    for name in &request.scopes {
        let (_, bit) = scopes::NAMES
            .iter()
            .find(|(known, _)| known == name)
            .ok_or_else(|| ApiError::invalid(format!("scopes: unknown scope {name:?}")).with("field", "scopes"))?;
        scope_bits |= bit;
    }
    if scope_bits == 0 {
        return Err(ApiError::invalid("scopes: name at least one scope").with("field", "scopes"));
    }
    let key = format!("{API_KEY_PREFIX}{}", random_token());
    let command =
        Command::CreateApiKey { name: request.name.clone(), key_hash: sha256_hex(key.as_bytes()), scopes: scope_bits };
    let id = match decide(&state, principal.origin(), command).await? {
        Ack::ApiKeyCreated(id) => id,
        other => return Err(unexpected(&other)),
    };
    state.reload_api_keys().await?;
    let scope_names =
        scopes::NAMES.iter().filter(|(_, bit)| scope_bits & bit != 0).map(|(name, _)| (*name).to_string()).collect();
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreatedView { id: id.to_string(), name: request.name, scopes: scope_names, key }),
    ))
}

/// `DELETE /v1/admin/api-keys/{id}` (admin) → 204; the key stops working at once.
#[utoipa::path(
    delete,
    path = "/v1/admin/api-keys/{id}",
    tag = "operators",
    summary = "Revoke an API key",
    description = "Revokes an operator API key; it stops working at once. Scope: `admin`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "An API key id", example = "key_1")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such API key (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn revoke_api_key(
    principal: Principal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    principal.require_scope(scopes::ADMIN)?;
    let key = ApiKeyId(path_id(path, "key_", "API key")?);
    // Keys are never deleted, only revoked, so one that exists now still exists at the revoke.
    let exists = state.read(move |book| book.api_keys().get(key.index()).is_some()).await?;
    if !exists {
        return Err(ApiError::not_found("API key"));
    }
    decide(&state, principal.origin(), Command::RevokeApiKey { key }).await?;
    // A failed reload is an error, not a 204: the revoked key would still be accepted.
    state.reload_api_keys().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- helpers ----------------------------------------------------------------------------------

/// Submits a command; a book rejection becomes its API error. Unknown ids come only from the
/// path in these routes, so they are 404 `not_found` like a malformed path id.
async fn decide(state: &AppState, origin: Origin, command: Command) -> Result<Ack, ApiError> {
    state.submit(command, origin).await?.map_err(|rejection| match rejection {
        Rejection::UnknownEvent => ApiError::not_found("event"),
        Rejection::UnknownMarket => ApiError::not_found("market"),
        Rejection::UnknownAccount => ApiError::not_found("account"),
        other => ApiError::from_rejection(&other, OPERATOR_REJECTION_CURRENCY),
    })
}

fn unexpected(ack: &Ack) -> ApiError {
    ApiError::internal(format!("unexpected reply from the book: {ack:?}"))
}

async fn event_view(state: &AppState, event: EventId) -> Result<EventView, ApiError> {
    state
        .read(move |book| book.events().get(event.index()).map(|found| EventView::of(book, found)))
        .await?
        .ok_or_else(|| ApiError::not_found("event"))
}

async fn market_view(state: &AppState, market: MarketId) -> Result<MarketView, ApiError> {
    state
        .read(move |book| book.market(market).map(|found| MarketView::of(book, found)))
        .await?
        .ok_or_else(|| ApiError::not_found("market"))
}

/// The id in the path; a malformed one is 404 like an unknown one (ids are opaque).
/// The reason of a void, a resettlement (unsettle) or an account risk change (a freeze, a
/// stake factor: a limit override): required of a staff member (400 `reason_required`),
/// optional for API keys, whose existing clients send none (`../shared/API.md`: "take an
/// optional `reason`"). Machines are named by their key; people must say why.
fn required_reason(principal: &Principal, reason: Option<String>) -> Result<Option<String>, ApiError> {
    let reason = crate::requests::reason(reason)?;
    if reason.is_none() && matches!(principal, Principal::Staff { .. }) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "reason_required",
            "a staff member gives a reason for voids, resettlements and account risk changes",
        )
        .with("field", "reason"));
    }
    Ok(reason)
}

fn path_id(path: Result<Path<String>, PathRejection>, prefix: &str, what: &str) -> Result<u64, ApiError> {
    let Path(text) = path.map_err(|_| ApiError::not_found(what))?;
    parse_id(&text, prefix, what)
}

/// An id in the body: a malformed one is 400 naming the field, not 404.
pub(crate) fn body_id(text: &str, prefix: &str, field: &str) -> Result<u64, ApiError> {
    parse_id(text, prefix, field)
        .map_err(|_| ApiError::invalid(format!("{field}: not an id such as {prefix}1")).with("field", field))
}

pub(crate) fn parse_ratio(text: &str, field: &str) -> Result<Ratio, ApiError> {
    Ratio::parse(text).map_err(|error| ApiError::invalid(format!("{field}: {error}")).with("field", field))
}
