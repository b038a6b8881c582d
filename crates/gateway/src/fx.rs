//! The operator's exchange rates (scope `trading`): `PUT /v1/admin/fx-rates`
//! `{"base": "EUR", "rates": {"JPY": "160.00"}}` (1 unit of base = that many units) and
//! `GET /v1/admin/fx-rates`. The book decides the table (`book/src/fx.rs`), so it is journaled,
//! versioned, audited and survives restarts; each bet records the rate it was converted with.
//!
//! A table older than `GatewayConfig::fx_rates_age_max` is a `/readyz` warning
//! (`fx_rates_stale`): the book keeps converting with it, but the operator should know.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use book::{scopes, Command, FxTable, Timestamp};
use domain::{Currency, ExchangeRate};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Json};
use crate::time::format_rfc3339;
use crate::{AppState, Principal};

/// How old the exchange-rate table may get before `/readyz` warns: rates move daily, and an
/// operator is expected to refresh them at least that often.
pub const FX_RATES_AGE_MAX: Duration = Duration::from_secs(24 * 3_600);

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/admin/fx-rates", get(fx_rates).put(set_fx_rates))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FxRatesRequest {
    /// The base currency: every risk setting (stake and payout limits, liability caps) is in it.
    /// It can change only before the first market exists.
    #[schema(example = "EUR")]
    pub base: String,
    /// Currency code to units of it bought by 1 unit of the base, an exact decimal with at most
    /// 8 places. The whole table is replaced: a currency left out has no rate, and its players
    /// cannot bet (`fx_rate_missing`).
    #[schema(value_type = BTreeMap<String, String>, example = json!({"JPY": "160.00", "GBP": "0.85"}))]
    pub rates: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FxRatesView {
    #[schema(example = "EUR")]
    pub base: String,
    /// 0 before any table was set; each `PUT` adds one. Every bet records the version it was
    /// converted with.
    pub version: u64,
    /// When the table was set (null before the first `PUT`).
    #[schema(required = true)]
    pub set_at: Option<String>,
    #[schema(value_type = BTreeMap<String, String>, example = json!({"JPY": "160.00"}))]
    pub rates: BTreeMap<String, String>,
}

/// The request as a book command; malformed codes or rates are 400 naming the field.
pub fn fx_rates_command(request: &FxRatesRequest) -> Result<Command, ApiError> {
    let currency = |code: &str, field: &str| {
        Currency::parse(code)
            .map_err(|_| ApiError::invalid(format!("{field}: unknown currency {code:?}")).with("field", field))
    };
    let base = currency(&request.base, "base")?;
    let mut rates = Vec::with_capacity(request.rates.len());
    for (code, text) in &request.rates {
        let field = format!("rates.{code}");
        let listed = currency(code, "rates")?;
        let rate = ExchangeRate::parse(text)
            .map_err(|error| ApiError::invalid(format!("{field}: {error}")).with("field", field.as_str()))?;
        rates.push((listed, rate));
    }
    Ok(Command::SetFxRates { base, rates })
}

fn view(table: &FxTable) -> FxRatesView {
    FxRatesView {
        base: table.base.to_string(),
        version: table.version,
        set_at: (table.version > 0).then(|| format_rfc3339(table.set_at)),
        rates: table.rates.iter().map(|(currency, rate)| (currency.to_string(), rate.to_string())).collect(),
    }
}

/// Whether a table set at `set_at` (book time, Unix milliseconds) is older than `age_max` at
/// `now`; a book that never had a table has nothing stale.
pub(crate) fn is_stale(version: u64, set_at: Timestamp, now: Timestamp, age_max: Duration) -> bool {
    version > 0 && now.saturating_sub(set_at) > u64::try_from(age_max.as_millis()).unwrap_or(u64::MAX)
}

/// `GET /v1/admin/fx-rates` (trading).
#[utoipa::path(
    get,
    path = "/v1/admin/fx-rates",
    tag = "operators",
    summary = "Exchange rates",
    description = "The base currency and the rates in force: 1 unit of base = that many units. Scope: `trading`.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The table", body = FxRatesView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn fx_rates(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<FxRatesView>, ApiError> {
    principal.require_scope(scopes::TRADING)?;
    Ok(Json(state.read(|book| view(book.fx())).await?))
}

/// `PUT /v1/admin/fx-rates` (trading).
#[utoipa::path(
    put,
    path = "/v1/admin/fx-rates",
    tag = "operators",
    summary = "Set the exchange rates",
    description = "Replaces the table (a new version): 1 unit of `base` = `rates[code]` units. Limits set in the \
        base currency apply to bets in other currencies through these rates: a cap converted into a player's \
        currency rounds down, a minimum stake up, and a bet's liability converted into the base rounds up, with \
        the rate recorded on the bet. Scope: `trading`.",
    security(("bearer" = [])),
    request_body = FxRatesRequest,
    responses(
        (status = 200, description = "The table now", body = FxRatesView),
        (status = 400, description = "Malformed body, unknown field or currency, or a malformed rate \
            (`invalid_request`, names the `field`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 413, description = "Body over the size limit (`payload_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)", body = ApiError),
        (status = 422, description = "A rate for the base currency, or a new base once a market exists \
            (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn set_fx_rates(
    principal: Principal,
    State(state): State<AppState>,
    body: Result<Json<FxRatesRequest>, ApiError>,
) -> Result<Json<FxRatesView>, ApiError> {
    principal.require_scope(scopes::TRADING)?;
    let Json(request) = body?;
    let command = fx_rates_command(&request)?;
    // The table as this command left it, read right after its batch (a later PUT cannot slip in).
    let (reply, table) = state.submit_then(command, principal.origin(), |book, _| book.fx().clone()).await?;
    reply.map_err(|rejection| ApiError::from_rejection(&rejection, Currency::EUR))?;
    Ok(Json(view(&table)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_stale_only_once_set_and_older_than_the_limit() {
        let hour = Duration::from_secs(3_600);
        assert!(!is_stale(0, 0, u64::MAX, hour));
        assert!(!is_stale(1, 1_000, 1_000 + 3_600_000, hour));
        assert!(is_stale(1, 1_000, 1_001 + 3_600_000, hour));
        assert!(!is_stale(1, 5_000, 1_000, hour), "a clock behind the book is not stale");
    }
}
