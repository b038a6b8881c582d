//! Wire shapes of the API: what requests may contain (unknown fields rejected) and how book
//! state is rendered (money and odds as strings, ids as opaque strings, times in RFC 3339).
//! Domain types derive no serialization; this module owns the JSON.

use axum::http::HeaderMap;
use book::{Bet, Book, Market, Selection};
use domain::{Currency, Money, Odds};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::time::format_rfc3339;
use crate::{PAGE_ITEMS_DEFAULT, PAGE_ITEMS_MAX};

/// Bytes of an `Idempotency-Key` header.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = book::constants::IDEMPOTENCY_KEY_BYTES_MAX;

/// Parses an id such as `bet_12` with its prefix; anything else is 404 (ids are opaque).
pub fn parse_id(text: &str, prefix: &str, what: &str) -> Result<u64, ApiError> {
    text.strip_prefix(prefix)
        .filter(|digits| !digits.is_empty() && digits.len() <= 19 && digits.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found(what))
}

pub fn parse_money(currency: Currency, text: &str, field: &str) -> Result<Money, ApiError> {
    currency.parse_amount(text).map_err(|error| ApiError::invalid(format!("{field}: {error}")).with("field", field))
}

pub fn parse_odds(text: &str, field: &str) -> Result<Odds, ApiError> {
    Odds::parse(text).map_err(|error| ApiError::invalid(format!("{field}: {error}")).with("field", field))
}

/// The `Idempotency-Key` header with the hash of the body it came with. Every write that moves
/// money or places a bet requires one (`../shared/API.md`): without it a client that times out
/// cannot learn whether its request happened, and a blind retry could do it twice. A missing
/// key is 400 `idempotency_key_required`.
pub fn idempotency(headers: &HeaderMap, body: &[u8]) -> Result<book::Idempotency, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "idempotency_key_required",
            "this write moves money or places a bet: send an Idempotency-Key header (1 to 128 bytes of visible \
             ASCII), and the same key when retrying",
        ));
    };
    let key = value.to_str().map_err(|_| ApiError::invalid("Idempotency-Key must be visible ASCII"))?;
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(ApiError::invalid("Idempotency-Key must be 1 to 128 bytes"));
    }
    Ok(book::Idempotency { key: key.to_string(), body_hash: codec::body_hash(body) })
}

/// A price in every format the API shows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PriceView {
    /// Decimal odds, the exact price paid: `"2.50"`.
    pub price: String,
    pub fractional: String,
    pub american: String,
}

impl PriceView {
    pub fn of(odds: Odds) -> PriceView {
        PriceView { price: odds.decimal(), fractional: odds.fractional(), american: odds.american() }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SelectionView {
    pub id: String,
    pub name: String,
    pub price: String,
    pub fractional: String,
    pub american: String,
    pub price_version: u64,
}

impl SelectionView {
    pub fn of(selection: &Selection) -> SelectionView {
        let price = PriceView::of(selection.price);
        SelectionView {
            id: selection.id.to_string(),
            name: selection.name.clone(),
            price: price.price,
            fractional: price.fractional,
            american: price.american,
            price_version: selection.price_version,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EachWayView {
    pub places: u32,
    /// The fraction of the odds the place part pays: `"1/5"`.
    pub fraction: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MarketView {
    pub id: String,
    pub event_id: String,
    pub name: String,
    pub kind: String,
    /// `open`, `suspended`, `closed`, `settled` or `voided`.
    pub status: String,
    pub in_play: bool,
    /// Prices may be behind: the market's feed is stale and the operator chose to keep it open
    /// with cached odds; bets wait out a delay before they are accepted.
    pub delayed: bool,
    #[schema(required = true)]
    pub each_way: Option<EachWayView>,
    pub selections: Vec<SelectionView>,
}

impl MarketView {
    pub fn of(book: &Book, market: &Market) -> MarketView {
        MarketView {
            id: market.id.to_string(),
            event_id: market.event.to_string(),
            name: market.name.clone(),
            kind: market.kind.clone(),
            status: market.status.as_str().to_string(),
            in_play: market.in_play,
            delayed: book.is_delayed(market.id),
            each_way: market
                .each_way
                .map(|terms| EachWayView { places: terms.places, fraction: terms.fraction.to_string() }),
            selections: market.selections.iter().filter_map(|id| book.selection(*id)).map(SelectionView::of).collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: String,
    pub name: String,
    pub sport: String,
    pub competition: String,
    pub starts_at: String,
    /// `scheduled`, `in_play` or `ended`.
    pub state: String,
    pub markets: Vec<MarketView>,
}

impl EventView {
    pub fn of(book: &Book, event: &book::Event) -> EventView {
        EventView {
            id: event.id.to_string(),
            name: event.name.clone(),
            sport: event.sport.clone(),
            competition: event.competition.clone(),
            starts_at: format_rfc3339(event.starts_at),
            state: match event.state {
                book::EventState::Scheduled => "scheduled",
                book::EventState::InPlay => "in_play",
                book::EventState::Ended => "ended",
            }
            .to_string(),
            markets: event
                .markets
                .iter()
                .filter_map(|id| book.market(*id))
                .map(|market| MarketView::of(book, market))
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LegView {
    pub selection_id: String,
    pub market_id: String,
    pub event_id: String,
    /// The price the leg is bound to (what it pays).
    pub price: String,
    /// The price the bettor asked for.
    pub requested_price: String,
    /// `requested`, `better` or `changed`.
    pub price_taken: String,
    pub price_version: u64,
    /// The leg's result once its market is resulted: `win`, `lose`, `void`, `place`.
    #[schema(required = true)]
    pub result: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BetView {
    pub id: String,
    pub status: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The system kind for system bets.
    #[schema(required = true)]
    pub system: Option<String>,
    pub each_way: bool,
    pub legs: Vec<LegView>,
    /// Per line.
    pub stake: String,
    pub lines: u32,
    pub total_stake: String,
    pub potential_payout: String,
    pub accept_price_changes: String,
    pub placed_at: String,
    /// Amount paid at settlement or cash-out.
    #[schema(required = true)]
    pub payout: Option<String>,
    #[schema(required = true)]
    pub settled_at: Option<String>,
    /// Why a pending bet was rejected when its delay ended.
    #[schema(required = true)]
    pub rejection_code: Option<String>,
}

impl BetView {
    /// Renders a bet. `as_placed` shows the status it was first given, so that a retried
    /// placement gets the same body as the first.
    pub fn of(bet: &Bet, currency: Currency, as_placed: bool) -> BetView {
        let (kind, system) = match bet.kind {
            book::BetKind::Single => ("single", None),
            book::BetKind::Multiple => ("multiple", None),
            book::BetKind::System(system) => ("system", Some(system.as_str().to_string())),
        };
        let settlement = bet.settlement.filter(|_| !as_placed);
        BetView {
            id: bet.id.to_string(),
            status: if as_placed { bet.placed_status } else { bet.status }.as_str().to_string(),
            kind: kind.to_string(),
            system,
            each_way: bet.each_way,
            legs: bet
                .legs
                .iter()
                .map(|leg| LegView {
                    selection_id: leg.selection.to_string(),
                    market_id: leg.market.to_string(),
                    event_id: leg.event.to_string(),
                    price: leg.odds.decimal(),
                    requested_price: leg.requested.decimal(),
                    price_taken: leg.taken.as_str().to_string(),
                    price_version: leg.price_version,
                    result: if as_placed { None } else { leg.result.map(|result| result.outcome.as_str().to_string()) },
                })
                .collect(),
            stake: currency.format(bet.stake_per_line),
            lines: bet.line_count,
            total_stake: currency.format(bet.total_stake),
            potential_payout: currency.format(bet.potential_payout),
            accept_price_changes: bet.policy.as_str().to_string(),
            placed_at: format_rfc3339(bet.placed_at),
            payout: settlement.map(|settlement| currency.format(settlement.payout)),
            settled_at: settlement.map(|settlement| format_rfc3339(settlement.at)),
            rejection_code: if as_placed { None } else { bet.rejection.map(str::to_string) },
        }
    }
}

/// `?limit=&cursor=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The `Idempotency-Key` header of the writes that move money or place bets: the same key
/// with the same body returns the first response again; with another body it is 422
/// `idempotency_key_reused`. Required: without it the write is 400 `idempotency_key_required`.
/// Only documents the header, which `idempotency` reads.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(dead_code, reason = "documents the header read by `idempotency`")]
pub struct IdempotencyKey {
    /// 1 to 128 bytes of visible ASCII, kept at least 24 hours. Required; retry a request
    /// answered 504 `outcome_unknown` with the same key.
    #[param(
        rename = "Idempotency-Key",
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 128,
        pattern = "^[!-~]{1,128}$",
        example = "6f1c2a9e-7d55-4a8e-9f0b-3c1d2e4f5a6b"
    )]
    key: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(PAGE_ITEMS_DEFAULT),
            Some(limit) if (1..=PAGE_ITEMS_MAX).contains(&limit) => Ok(limit),
            Some(_) => Err(ApiError::invalid(format!("limit must be 1 to {PAGE_ITEMS_MAX}"))),
        }
    }

    /// The cursor is the opaque id of the last item of the previous page.
    pub fn after(&self, prefix: &str) -> Result<Option<u64>, ApiError> {
        match &self.cursor {
            None => Ok(None),
            Some(cursor) => {
                parse_id(cursor, prefix, "cursor").map(Some).map_err(|_| ApiError::invalid("unknown cursor"))
            }
        }
    }
}

/// A page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The `cursor` of the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}
