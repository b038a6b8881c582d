//! History from the read models: the routes that list what happened (a player's bets and
//! statement, the operator's bet search, account search and the customer view) read the models
//! the projector keeps (`crates/projector`), never the book. Open state that decisions use (a
//! wallet's balance and holds, limits and their usage) still comes from the book.
//!
//! **Read-your-writes.** Every response to a request whose command reached the journal carries
//! `X-Journal-Position`: the journal position its durable reply was seen at (at or past the
//! command's batch). A history read first takes the journal's committed position at the moment
//! it arrives (`EngineStats::committed_position`, stored before any reply of a batch is sent)
//! and waits until the projector has committed past `max(that, X-Min-Position)`, at most
//! [`READ_YOUR_WRITES_WAIT`]; then it answers 503 `unavailable` with `Retry-After` rather than
//! stale data. So a read sees every write acknowledged before it began, whoever made it: the
//! player's own bet, the operator's settlement of it, the in-play delay that accepted it, a
//! payment completed in the background. (Waiting only for the reader's own last write would
//! miss the others, which the book used to show at once.) `X-Min-Position` lets a client that
//! wrote through another gateway carry its position; a position past this journal's end is
//! waited for as the journal's end.
//!
//! With the projector off (`serve --projector off`), stopped or failed, these routes answer 503
//! `unavailable` saying so; `/readyz` gives the reason.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::routing::get;
use axum::Router;
use book::{scopes, AccountId, BetId, EventId, MarketId, SelectionId, TransferId};
use domain::{Currency, Money, Odds};
use projector::query::{Filter, Query as ModelQuery};
use projector::schema::{Value, ACCOUNTS, BETS, BET_LEGS, STATEMENTS};
use projector::{ProjectorError, ProjectorState, ReadModels, Store};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::dto::{parse_id, parse_money, BetView, LegView, Page, PageQuery};
use crate::error::{ApiError, Json};
use crate::players::{LimitsView, TransactionView, WalletView};
use crate::time::{format_rfc3339, parse_rfc3339};
use crate::AppState;

/// How long a history read waits for the read models to reach the reader's last write (or
/// `X-Min-Position`) before answering 503 `unavailable`.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(2);
/// How often a cluster gateway looks whether its replica reached a read's `X-Min-Position`.
pub const REPLICA_POSITION_POLL: Duration = Duration::from_millis(2);
/// Journal records the read models may be behind the journal before `/readyz` says
/// `projector_lagging`.
pub const PROJECTOR_LAG_READY_MAX: u64 = 10_000;
/// Recent bets and transactions in the customer view.
pub const ACCOUNT_RECENT_ITEMS: usize = 20;
/// Bytes of an account search's `q`.
pub const ACCOUNT_QUERY_BYTES_MAX: usize = 100;
/// The header every write's answer carries: its journal position.
pub const JOURNAL_POSITION_HEADER: &str = "x-journal-position";
/// The header a reader may send: read only once the models are at this journal position.
pub const MIN_POSITION_HEADER: &str = "x-min-position";

/// Read-your-writes bookkeeping: the position header of writes.
pub struct History;

impl History {
    pub(crate) fn new() -> History {
        History
    }

    /// The request's command is durable below `position`: tell the client.
    pub(crate) fn record_write(&self, position: u64, headers: &mut HeaderMap) {
        headers.insert(HeaderName::from_static(JOURNAL_POSITION_HEADER), HeaderValue::from(position));
    }
}

fn projector_unavailable(message: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
}

pub(crate) fn store_error(error: ProjectorError) -> ApiError {
    tracing::warn!(%error, "a read-model query failed");
    projector_unavailable("the read models could not be read; retry shortly".to_string()).retry_after(1)
}

impl AppState {
    /// The read models once they hold every write acknowledged before this read arrived and the
    /// `X-Min-Position` asked for; 503 `unavailable` when the projector is off or failed, or
    /// does not get there within `read_your_writes_wait`.
    pub(crate) async fn read_models(&self, headers: &HeaderMap) -> Result<ReadModels, ApiError> {
        // First: every reply sent before this point is below it.
        let journal_end = self.engine().stats().committed_position.load(Ordering::Acquire);
        let asked = match headers.get(MIN_POSITION_HEADER) {
            None => 0,
            Some(value) => value
                .to_str()
                .ok()
                .filter(|text| !text.is_empty() && text.len() <= 20 && text.bytes().all(|byte| byte.is_ascii_digit()))
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid("X-Min-Position must be a journal position (digits)")
                        .with("field", MIN_POSITION_HEADER)
                })?,
        };
        let Some(models) = self.config().read_models.clone() else {
            return Err(projector_unavailable(
                "history is served from the read models and the projector is off (serve --projector off)".to_string(),
            )
            .retry_after(60));
        };
        match models.published().state() {
            ProjectorState::Failed(reason) => {
                return Err(projector_unavailable(format!("the projector stopped: {reason}")).retry_after(5))
            }
            ProjectorState::Stopped => {
                return Err(projector_unavailable("the projector is stopped".to_string()).retry_after(5))
            }
            ProjectorState::Starting | ProjectorState::Running => {}
        }
        let mut committed = self.engine().stats().committed_position.load(Ordering::Acquire);
        if asked > committed && self.config().cluster.is_some() {
            // A cluster gateway's replica may not hold yet a write another gateway acknowledged
            // (`X-Journal-Position` there): it is stored, and the replica follows the journal,
            // so wait for it (bounded) before clamping to it.
            let deadline = tokio::time::Instant::now() + self.config().read_your_writes_wait;
            while committed < asked && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(REPLICA_POSITION_POLL).await;
                committed = self.engine().stats().committed_position.load(Ordering::Acquire);
            }
        }
        let target = journal_end.max(asked.min(committed));
        let metrics = self.metrics();
        if models.published().position() >= target {
            metrics.record_read_wait("immediate");
            return Ok(models);
        }
        if models.published().wait_for(target, self.config().read_your_writes_wait).await {
            metrics.record_read_wait("waited");
            return Ok(models);
        }
        metrics.record_read_wait("timed_out");
        Err(projector_unavailable(format!(
            "the read models are at journal position {}, behind this read's position {target}; retry shortly",
            models.published().position()
        ))
        .retry_after(1)
        .with("position", target)
        .with("models_position", models.published().position()))
    }
}

// ---- rows to views ----------------------------------------------------------------------------

fn int(row: &[Value], index: usize) -> i64 {
    row[index].int().unwrap_or(0)
}

fn id(row: &[Value], index: usize) -> u64 {
    u64::try_from(int(row, index)).unwrap_or(0)
}

fn text(row: &[Value], index: usize) -> &str {
    row[index].text().unwrap_or("")
}

fn currency_of(code: &str) -> Result<Currency, ApiError> {
    Currency::parse(code)
        .map_err(|_| ApiError::internal(format!("a read-model row holds an unknown currency {code:?}")))
}

fn odds(scaled: i64) -> String {
    u32::try_from(scaled).ok().and_then(|scaled| Odds::from_scaled(scaled).ok()).map_or_else(String::new, Odds::decimal)
}

/// Bets with their legs, as a page query returned them.
struct BetRows {
    bets: Vec<Vec<Value>>,
    legs: BTreeMap<i64, Vec<Vec<Value>>>,
}

/// The legs of `bets`, by bet id, in leg order.
fn legs_of(store: &mut dyn Store, bets: &[Vec<Value>]) -> Result<BTreeMap<i64, Vec<Vec<Value>>>, ProjectorError> {
    let mut legs: BTreeMap<i64, Vec<Vec<Value>>> = BTreeMap::new();
    if bets.is_empty() {
        return Ok(legs);
    }
    let ids: Vec<Value> = bets.iter().map(|bet| bet[0].clone()).collect();
    // A bet has at most `book::LEGS_MAX` legs.
    let rows = store.select(&ModelQuery {
        table: &BET_LEGS,
        filters: vec![Filter::In("bet", ids, true)],
        order: vec![("bet", false), ("leg", false)],
        limit: projector::query::QUERY_ROWS_MAX,
    })?;
    for row in rows {
        legs.entry(int(&row, 0)).or_default().push(row);
    }
    Ok(legs)
}

fn select_bets(store: &mut dyn Store, query: &ModelQuery) -> Result<BetRows, ProjectorError> {
    let bets = store.select(query)?;
    let legs = legs_of(store, &bets)?;
    Ok(BetRows { bets, legs })
}

/// A bet row and its legs as `GET /v1/bets/{id}` shows it (the book's `BetView::of` with
/// `as_placed = false`).
fn bet_view(bet: &[Value], legs: &[Vec<Value>]) -> Result<BetView, ApiError> {
    let column = |name| BETS.index_of(name);
    let currency = currency_of(text(bet, column("currency")))?;
    let kind = text(bet, column("kind"));
    let (kind, system) = match kind {
        "single" | "multiple" => (kind.to_string(), None),
        system => ("system".to_string(), Some(system.to_string())),
    };
    let money = |name| currency.format(Money::from_minor(int(bet, column(name))));
    let leg_column = |name| BET_LEGS.index_of(name);
    Ok(BetView {
        id: BetId(id(bet, column("id"))).to_string(),
        status: text(bet, column("status")).to_string(),
        kind,
        system,
        each_way: bet[column("each_way")].bool().unwrap_or(false),
        legs: legs
            .iter()
            .map(|leg| LegView {
                selection_id: SelectionId(id(leg, leg_column("selection"))).to_string(),
                market_id: MarketId(id(leg, leg_column("market"))).to_string(),
                event_id: EventId(id(leg, leg_column("event"))).to_string(),
                price: odds(int(leg, leg_column("odds"))),
                requested_price: odds(int(leg, leg_column("requested_odds"))),
                price_taken: text(leg, leg_column("taken")).to_string(),
                price_version: id(leg, leg_column("price_version")),
                result: leg[leg_column("result")].text().map(str::to_string),
            })
            .collect(),
        stake: money("stake_per_line"),
        lines: u32::try_from(int(bet, column("line_count"))).unwrap_or(0),
        total_stake: money("total_stake"),
        potential_payout: money("potential_payout"),
        accept_price_changes: text(bet, column("policy")).to_string(),
        placed_at: format_rfc3339(id(bet, column("placed_at"))),
        payout: bet[column("payout")].int().map(|payout| currency.format(Money::from_minor(payout))),
        settled_at: bet[column("settled_at")].int().map(|at| format_rfc3339(u64::try_from(at).unwrap_or(0))),
        rejection_code: bet[column("rejection")].text().map(str::to_string),
    })
}

fn bet_views(rows: &BetRows) -> Result<Vec<BetView>, ApiError> {
    rows.bets.iter().map(|bet| bet_view(bet, rows.legs.get(&int(bet, 0)).map_or(&[], Vec::as_slice))).collect()
}

/// A statement row as `GET /v1/wallet/transactions` shows it.
fn transaction_view(row: &[Value], currency: Currency) -> TransactionView {
    let column = |name| STATEMENTS.index_of(name);
    let status = text(row, column("status")).to_string();
    // The pending transfer a `posts`/`voids` entry completes is the transfer's; the statement
    // row keeps what the player sees, the transfer row the rest.
    TransactionView {
        id: TransferId(id(row, column("transfer"))).to_string(),
        kind: text(row, column("code")).to_string(),
        amount: currency.format(Money::from_minor(int(row, column("amount")))),
        status,
        pending_id: None,
        bet_id: row[column("bet")].int().map(|bet| BetId(u64::try_from(bet).unwrap_or(0)).to_string()),
        created_at: format_rfc3339(id(row, column("at"))),
    }
}

/// The pending transfers that `posts`/`voids` statement rows complete, by transfer id.
fn pending_ids(store: &mut dyn Store, rows: &[Vec<Value>]) -> Result<BTreeMap<i64, i64>, ProjectorError> {
    let status = STATEMENTS.index_of("status");
    let completing: Vec<Value> = rows
        .iter()
        .filter(|row| matches!(row[status].text(), Some("posts" | "voids")))
        .map(|row| row[STATEMENTS.index_of("transfer")].clone())
        .collect();
    if completing.is_empty() {
        return Ok(BTreeMap::new());
    }
    let transfers = store.select(&ModelQuery {
        table: &projector::schema::TRANSFERS,
        filters: vec![Filter::In("id", completing, true)],
        order: vec![("id", false)],
        limit: projector::query::QUERY_ROWS_MAX,
    })?;
    let pending = projector::schema::TRANSFERS.index_of("pending_id");
    Ok(transfers.iter().filter_map(|row| Some((int(row, 0), row[pending].int()?))).collect())
}

fn transaction_views(rows: &[Vec<Value>], pending: &BTreeMap<i64, i64>, currency: Currency) -> Vec<TransactionView> {
    let transfer = STATEMENTS.index_of("transfer");
    rows.iter()
        .map(|row| {
            let mut view = transaction_view(row, currency);
            view.pending_id = pending
                .get(&int(row, transfer))
                .map(|pending| TransferId(u64::try_from(*pending).unwrap_or(0)).to_string());
            view
        })
        .collect()
}

/// Statement rows with the pending transfers they complete.
struct StatementRows {
    rows: Vec<Vec<Value>>,
    pending: BTreeMap<i64, i64>,
}

fn select_statement(store: &mut dyn Store, query: &ModelQuery) -> Result<StatementRows, ProjectorError> {
    let rows = store.select(query)?;
    let pending = pending_ids(store, &rows)?;
    Ok(StatementRows { rows, pending })
}

fn open_statuses() -> Vec<Value> {
    vec![Value::from("pending"), Value::from("accepted")]
}

fn statement_query(account: AccountId, before: Option<u64>, limit: usize) -> ModelQuery {
    let mut filters = vec![Filter::Eq("account", Value::Int(account.0 as i64))];
    if let Some(before) = before {
        filters.push(Filter::Lt("transfer", Value::Int(before as i64)));
    }
    ModelQuery { table: &STATEMENTS, filters, order: vec![("transfer", true)], limit }
}

fn player_bets_query(account: AccountId, before: Option<u64>, open: Option<bool>, limit: usize) -> ModelQuery {
    let mut filters = vec![Filter::Eq("account", Value::Int(account.0 as i64))];
    if let Some(before) = before {
        filters.push(Filter::Lt("id", Value::Int(before as i64)));
    }
    if let Some(open) = open {
        filters.push(Filter::In("status", open_statuses(), open));
    }
    ModelQuery { table: &BETS, filters, order: vec![("id", true)], limit }
}

// ---- the player's routes (handlers in `players.rs`) -------------------------------------------

/// A page of the player's bets, newest first (`GET /v1/bets`).
pub(crate) async fn player_bets(
    state: &AppState,
    headers: &HeaderMap,
    account: AccountId,
    open: Option<bool>,
    page: &PageQuery,
) -> Result<Page<BetView>, ApiError> {
    let limit = page.limit()?;
    let before = page.after("bet_")?;
    let models = state.read_models(headers).await?;
    // One more than a page tells whether another follows.
    let query = player_bets_query(account, before, open, limit + 1);
    let rows = models.query(move |store| select_bets(store, &query)).await.map_err(store_error)?;
    let mut items = bet_views(&rows)?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if more { items.last().map(|item| item.id.clone()) } else { None };
    Ok(Page { items, next_cursor })
}

/// One of the player's bets (`GET /v1/bets/{id}`); another player's is 404.
pub(crate) async fn player_bet(
    state: &AppState,
    headers: &HeaderMap,
    account: AccountId,
    bet: BetId,
) -> Result<BetView, ApiError> {
    let models = state.read_models(headers).await?;
    let query = ModelQuery {
        table: &BETS,
        filters: vec![Filter::Eq("id", Value::Int(bet.0 as i64)), Filter::Eq("account", Value::Int(account.0 as i64))],
        order: Vec::new(),
        limit: 1,
    };
    let rows = models.query(move |store| select_bets(store, &query)).await.map_err(store_error)?;
    bet_views(&rows)?.into_iter().next().ok_or_else(|| ApiError::not_found("bet"))
}

/// A page of the player's statement, newest first (`GET /v1/wallet/transactions`).
pub(crate) async fn player_transactions(
    state: &AppState,
    headers: &HeaderMap,
    account: AccountId,
    currency: Currency,
    page: &PageQuery,
) -> Result<Page<TransactionView>, ApiError> {
    let limit = page.limit()?;
    let before = page.after("trf_")?;
    let models = state.read_models(headers).await?;
    let query = statement_query(account, before, limit + 1);
    let rows = models.query(move |store| select_statement(store, &query)).await.map_err(store_error)?;
    let mut items = transaction_views(&rows.rows, &rows.pending, currency);
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if more { items.last().map(|item| item.id.clone()) } else { None };
    Ok(Page { items, next_cursor })
}

// ---- operator routes --------------------------------------------------------------------------

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/bets", get(search_bets))
        .route("/v1/admin/accounts", get(search_accounts))
        .route("/v1/admin/accounts/{id}", get(customer_view))
}

/// `GET /v1/admin/bets` filters. Ids are the API's (`acc_1`, `evt_1`, `mkt_1`); times RFC 3339
/// UTC, windows `[from, to)`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdminBetsQuery {
    /// The player's account id.
    #[param(example = "acc_1")]
    pub player: Option<String>,
    /// Bets with a leg on this event.
    #[param(example = "evt_1")]
    pub event: Option<String>,
    /// Bets with a leg on this market.
    #[param(example = "mkt_1")]
    pub market: Option<String>,
    /// A bet status (`pending`, `accepted`, `rejected`, `won`, `lost`, `void`, `half_won`,
    /// `half_lost`, `cashed_out`), or `open` (pending or accepted) or `settled` (anything else).
    #[param(example = "accepted")]
    pub status: Option<String>,
    /// Placed at or after.
    #[param(example = "2026-11-01T00:00:00Z")]
    pub placed_from: Option<String>,
    /// Placed before.
    pub placed_to: Option<String>,
    /// Settled (last) at or after.
    pub settled_from: Option<String>,
    /// Settled (last) before.
    pub settled_to: Option<String>,
    /// Total stake at least this, in `currency`: bets in that currency only.
    #[param(example = "10.00", pattern = r"^[0-9]{1,18}(\.[0-9]+)?$")]
    pub min_stake: Option<String>,
    /// Bets in this currency (ISO code). `min_stake` is read in it; without it, in the player's
    /// currency (with `player`) or EUR.
    #[param(example = "EUR")]
    pub currency: Option<String>,
    /// Items per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A bet in the operator's search: the player's view of it and whose it is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminBetView {
    #[schema(example = "acc_1")]
    pub player_id: String,
    #[serde(flatten)]
    pub bet: BetView,
}

const BET_STATUSES: [&str; 9] =
    ["pending", "accepted", "rejected", "won", "lost", "void", "half_won", "half_lost", "cashed_out"];

fn filter_id(value: Option<&str>, prefix: &str, field: &str) -> Result<Option<u64>, ApiError> {
    value
        .map(|text| {
            parse_id(text, prefix, field)
                .map_err(|_| ApiError::invalid(format!("{field}: expected an id like {prefix}1")).with("field", field))
        })
        .transpose()
}

fn filter_time(value: Option<&str>, field: &str) -> Result<Option<u64>, ApiError> {
    value
        .map(|text| {
            parse_rfc3339(text).ok_or_else(|| {
                ApiError::invalid(format!("{field}: expected an RFC 3339 UTC time")).with("field", field)
            })
        })
        .transpose()
}

fn window(from: Option<u64>, to: Option<u64>, field: &str) -> Result<(), ApiError> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => {
            Err(ApiError::invalid(format!("{field}: the window ends before it begins")).with("field", field))
        }
        _ => Ok(()),
    }
}

fn admin_bets_filters(query: &AdminBetsQuery, player_currency: Option<Currency>) -> Result<Vec<Filter>, ApiError> {
    let int = |value: u64| Value::Int(i64::try_from(value).unwrap_or(i64::MAX));
    let mut filters = Vec::new();
    if let Some(player) = filter_id(query.player.as_deref(), "acc_", "player")? {
        filters.push(Filter::Eq("account", int(player)));
    }
    if let Some(event) = filter_id(query.event.as_deref(), "evt_", "event")? {
        filters.push(Filter::HasLeg("event", int(event)));
    }
    if let Some(market) = filter_id(query.market.as_deref(), "mkt_", "market")? {
        filters.push(Filter::HasLeg("market", int(market)));
    }
    match query.status.as_deref() {
        None => {}
        Some("open") => filters.push(Filter::In("status", open_statuses(), true)),
        Some("settled") => filters.push(Filter::In("status", open_statuses(), false)),
        Some(status) if BET_STATUSES.contains(&status) => filters.push(Filter::Eq("status", Value::from(status))),
        Some(_) => {
            return Err(ApiError::invalid(format!("status: one of open, settled, {}", BET_STATUSES.join(", ")))
                .with("field", "status"))
        }
    }
    let placed = (
        filter_time(query.placed_from.as_deref(), "placed_from")?,
        filter_time(query.placed_to.as_deref(), "placed_to")?,
    );
    window(placed.0, placed.1, "placed_to")?;
    let settled = (
        filter_time(query.settled_from.as_deref(), "settled_from")?,
        filter_time(query.settled_to.as_deref(), "settled_to")?,
    );
    window(settled.0, settled.1, "settled_to")?;
    if let Some(from) = placed.0 {
        filters.push(Filter::Ge("placed_at", int(from)));
    }
    if let Some(to) = placed.1 {
        filters.push(Filter::Lt("placed_at", int(to)));
    }
    if let Some(from) = settled.0 {
        filters.push(Filter::Ge("settled_at", int(from)));
    }
    if let Some(to) = settled.1 {
        filters.push(Filter::Lt("settled_at", int(to)));
    }
    let currency = match query.currency.as_deref() {
        Some(code) => Some(Currency::parse(code).map_err(|_| {
            ApiError::invalid("currency: an ISO 4217 code this server knows").with("field", "currency")
        })?),
        None => None,
    };
    if let Some(currency) = currency {
        filters.push(Filter::Eq("currency", Value::from(currency.code())));
    }
    if let Some(min_stake) = query.min_stake.as_deref() {
        let currency = match currency.or(player_currency) {
            Some(currency) => currency,
            None => Currency::parse("EUR").map_err(ApiError::internal)?,
        };
        let stake = parse_money(currency, min_stake, "min_stake")?;
        if query.currency.is_none() {
            filters.push(Filter::Eq("currency", Value::from(currency.code())));
        }
        filters.push(Filter::Ge("total_stake", Value::Int(stake.minor())));
    }
    Ok(filters)
}

/// `GET /v1/admin/bets` (trading or compliance): the operator's bet search.
#[utoipa::path(
    get,
    path = "/v1/admin/bets",
    tag = "operators",
    summary = "Search bets",
    description = "Bets from the read models, newest first, filtered by player, event, market, status, placement and \
        settlement windows and a least total stake; each item is the player's view of the bet with `player_id`. \
        Read-your-writes: waits (at most 2 s) until the models hold every write acknowledged before the read and \
        `X-Min-Position`, else 503 `unavailable`. \
        Scope: `trading` or `compliance`.",
    security(("bearer" = [])),
    params(AdminBetsQuery, MinPosition),
    responses(
        (status = 200, description = "A page of bets, newest first", body = Page<AdminBetView>),
        (status = 400, description = "A bad filter, `limit`, `cursor` or `X-Min-Position`, or an unknown parameter \
            (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn search_bets(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AdminBetsQuery>, QueryRejection>,
) -> Result<Json<Page<AdminBetView>>, ApiError> {
    principal.require_scope(scopes::TRADING | scopes::COMPLIANCE)?;
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let page = PageQuery { limit: query.limit, cursor: query.cursor.clone() };
    let limit = page.limit()?;
    let before = page.after("bet_")?;
    // Validate before waiting; the player's currency comes from the models.
    let _ = admin_bets_filters(&query, None)?;
    let player = filter_id(query.player.as_deref(), "acc_", "player")?;
    let models = state.read_models(&headers).await?;
    let player_currency = match (player, query.min_stake.is_some() && query.currency.is_none()) {
        (Some(player), true) => account_row(&models, AccountId(player)).await?.map(|row| text(&row, 1).to_string()),
        _ => None,
    };
    let player_currency = player_currency.as_deref().map(currency_of).transpose()?;
    let mut filters = admin_bets_filters(&query, player_currency)?;
    if let Some(before) = before {
        filters.push(Filter::Lt("id", Value::Int(i64::try_from(before).unwrap_or(i64::MAX))));
    }
    let model_query = ModelQuery { table: &BETS, filters, order: vec![("id", true)], limit: limit + 1 };
    let rows = models.query(move |store| select_bets(store, &model_query)).await.map_err(store_error)?;
    let account = BETS.index_of("account");
    let mut items = rows
        .bets
        .iter()
        .map(|bet| {
            Ok(AdminBetView {
                player_id: AccountId(id(bet, account)).to_string(),
                bet: bet_view(bet, rows.legs.get(&int(bet, 0)).map_or(&[], Vec::as_slice))?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if more { items.last().map(|item| item.bet.id.clone()) } else { None };
    Ok(Json(Page { items, next_cursor }))
}

async fn account_row(models: &ReadModels, account: AccountId) -> Result<Option<Vec<Value>>, ApiError> {
    let query = ModelQuery {
        table: &ACCOUNTS,
        filters: vec![Filter::Eq("id", Value::Int(i64::try_from(account.0).unwrap_or(i64::MAX)))],
        order: Vec::new(),
        limit: 1,
    };
    let rows = models.query(move |store| store.select(&query)).await.map_err(store_error)?;
    Ok(rows.into_iter().next())
}

/// `?q=&limit=&cursor=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountsQuery {
    /// An account id (`acc_7` or `7`) finds that account; other text finds usernames that
    /// start with it (case-insensitive). 1 to 100 bytes.
    #[param(example = "ali", min_length = 1, max_length = 100)]
    pub q: Option<String>,
    /// Items per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// An account in the operator's search.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountSummaryView {
    #[schema(example = "acc_1")]
    pub id: String,
    /// Null for an account opened without credentials.
    #[schema(required = true)]
    pub username: Option<String>,
    #[schema(example = "EUR")]
    pub currency: String,
    #[schema(required = true)]
    pub country: Option<String>,
    #[schema(required = true)]
    pub registered_at: Option<String>,
    /// `active`, `frozen`, `self_excluded` or `timed_out` (the first that applies, in that
    /// order of precedence: frozen first), now.
    #[schema(example = "active")]
    pub status: String,
    pub frozen: bool,
    #[schema(required = true)]
    pub self_excluded_until: Option<String>,
    #[schema(required = true)]
    pub timed_out_until: Option<String>,
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

fn account_summary(row: &[Value], now: u64) -> AccountSummaryView {
    let column = |name| ACCOUNTS.index_of(name);
    let frozen = row[column("frozen")].bool().unwrap_or(false);
    let until = |name| Some(id(row, column(name))).filter(|until| *until > now);
    let excluded = until("excluded_until");
    let timed_out = until("timed_out_until");
    let status = if frozen {
        "frozen"
    } else if excluded.is_some() {
        "self_excluded"
    } else if timed_out.is_some() {
        "timed_out"
    } else {
        "active"
    };
    AccountSummaryView {
        id: AccountId(id(row, column("id"))).to_string(),
        username: row[column("username")].text().map(str::to_string),
        currency: text(row, column("currency")).to_string(),
        country: row[column("country")].text().map(str::to_string),
        registered_at: row[column("registered_at")].int().map(|at| format_rfc3339(u64::try_from(at).unwrap_or(0))),
        status: status.to_string(),
        frozen,
        self_excluded_until: excluded.map(format_rfc3339),
        timed_out_until: timed_out.map(format_rfc3339),
    }
}

/// `GET /v1/admin/accounts?q=` (trading or compliance).
#[utoipa::path(
    get,
    path = "/v1/admin/accounts",
    tag = "operators",
    summary = "Search accounts",
    description = "Accounts from the read models: `q` an account id (`acc_7` or `7`) finds that account, other text \
        finds usernames starting with it (case-insensitive), in id order. Each carries its status now. Scope: \
        `trading` or `compliance`.",
    security(("bearer" = [])),
    params(AccountsQuery, MinPosition),
    responses(
        (status = 200, description = "A page of accounts, in id order", body = Page<AccountSummaryView>),
        (status = 400, description = "No or bad `q`, bad `limit`, `cursor` or `X-Min-Position`, or an unknown \
            parameter (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn search_accounts(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AccountsQuery>, QueryRejection>,
) -> Result<Json<Page<AccountSummaryView>>, ApiError> {
    principal.require_scope(scopes::TRADING | scopes::COMPLIANCE)?;
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let q = query.q.as_deref().map(str::trim).unwrap_or("");
    if q.is_empty() || q.len() > ACCOUNT_QUERY_BYTES_MAX {
        return Err(ApiError::invalid(format!("q: 1 to {ACCOUNT_QUERY_BYTES_MAX} bytes")).with("field", "q"));
    }
    let page = PageQuery { limit: query.limit, cursor: query.cursor.clone() };
    let limit = page.limit()?;
    let after = page.after("acc_")?;
    let by_id = q.strip_prefix("acc_").unwrap_or(q).parse::<u64>().ok().filter(|id| *id <= i64::MAX as u64);
    let mut filters = match by_id {
        Some(id) => vec![Filter::Eq("id", Value::Int(id as i64))],
        None => vec![Filter::Prefix("username", q.to_owned())],
    };
    if let Some(after) = after {
        filters.push(Filter::Ge("id", Value::Int(i64::try_from(after).unwrap_or(i64::MAX).saturating_add(1))));
    }
    let models = state.read_models(&headers).await?;
    let model_query = ModelQuery { table: &ACCOUNTS, filters, order: vec![("id", false)], limit: limit + 1 };
    let rows = models.query(move |store| store.select(&model_query)).await.map_err(store_error)?;
    let now = now_millis();
    let mut items: Vec<AccountSummaryView> = rows.iter().map(|row| account_summary(row, now)).collect();
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if more { items.last().map(|item| item.id.clone()) } else { None };
    Ok(Json(Page { items, next_cursor }))
}

/// What the server knows of a player's identity checks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KycView {
    /// `age_verified`: registered with a date of birth that passed the age check (18+);
    /// `none`: an account opened without registration. No document checks are kept.
    #[schema(example = "age_verified")]
    pub status: String,
    #[schema(required = true)]
    pub country: Option<String>,
    /// The identity verification (`unverified`, `pending`, `verified`, `rejected`, `expired`,
    /// with when and the provider's reference); null for an account the book does not track.
    #[schema(required = true)]
    pub verification: Option<crate::kyc::KycStateView>,
}

/// The customer view of `GET /v1/admin/accounts/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    #[serde(flatten)]
    pub account: AccountSummaryView,
    /// The wallet now (the book's).
    pub wallet: WalletView,
    /// Responsible-gambling limits and their usage now (the book's).
    pub limits: LimitsView,
    pub kyc: KycView,
    /// The most recent bets, newest first (at most 20; `GET /v1/admin/bets?player=` for more).
    pub bets: Vec<BetView>,
    /// The most recent statement entries, newest first (at most 20).
    pub transactions: Vec<TransactionView>,
    /// Payments on their way (the book's), oldest first: deposits waiting for the provider's
    /// callback and withdrawals not yet paid out (at most 20 of each).
    pub pending_payments: Vec<PendingPaymentView>,
    /// The account's case of the monitoring queue not closed, if any (`GET /v1/admin/cases/{id}`).
    #[schema(required = true)]
    pub open_case: Option<crate::monitoring::OpenCaseView>,
}

/// A deposit or withdrawal the provider has yet to confirm.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PendingPaymentView {
    /// The pending transfer's id.
    #[schema(example = "trf_12")]
    pub id: String,
    /// `deposit` or `withdrawal`.
    #[serde(rename = "type")]
    pub kind: String,
    pub amount: String,
    /// A withdrawal: `approved` or `awaiting` (an approval step is configured and it has none
    /// yet), else `not_required`; a deposit: `not_required`.
    pub approval: String,
    pub created_at: String,
}

/// `GET /v1/admin/accounts/{id}` (trading or compliance).
#[utoipa::path(
    get,
    path = "/v1/admin/accounts/{id}",
    tag = "operators",
    summary = "The customer view",
    description = "One account: identity and status, `wallet` and `limits` now (from the book: open state), \
        `kyc`, and the most recent bets and statement entries (from the read models). Scope: `trading` or \
        `compliance`.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "An account id", example = "acc_1"), MinPosition),
    responses(
        (status = 200, description = "The customer view", body = CustomerView),
        (status = 400, description = "A bad `X-Min-Position` (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the scope (`forbidden`)", body = ApiError),
        (status = 404, description = "No such account (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn customer_view(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CustomerView>, ApiError> {
    principal.require_scope(scopes::TRADING | scopes::COMPLIANCE)?;
    let Path(text_id) = path.map_err(|_| ApiError::not_found("account"))?;
    let account = AccountId(parse_id(&text_id, "acc_", "account")?);
    let models = state.read_models(&headers).await?;
    let row = account_row(&models, account).await?.ok_or_else(|| ApiError::not_found("account"))?;
    let currency = currency_of(text(&row, ACCOUNTS.index_of("currency")))?;
    let bets_query = player_bets_query(account, None, None, ACCOUNT_RECENT_ITEMS);
    let statement = statement_query(account, None, ACCOUNT_RECENT_ITEMS);
    let (bets, transactions) = models
        .query(move |store| Ok((select_bets(store, &bets_query)?, select_statement(store, &statement)?)))
        .await
        .map_err(store_error)?;
    let approvals = state.config().withdrawal_approval_above.is_some();
    let open_state = state
        .read(move |book| {
            let wallet = book.wallet(account)?;
            Some((
                wallet,
                crate::players::limits_view(book, account, currency)?,
                pending_payments(book, account, currency, approvals),
                crate::kyc::kyc_view(book, account, currency),
                crate::monitoring::open_case_of(book, account),
            ))
        })
        .await?;
    let (wallet, limits, pending_payments, verification, open_case) =
        open_state.ok_or_else(|| ApiError::not_found("account"))?;
    let summary = account_summary(&row, now_millis());
    let registered = row[ACCOUNTS.index_of("username")].text().is_some();
    Ok(Json(CustomerView {
        kyc: KycView {
            status: if registered { "age_verified" } else { "none" }.to_string(),
            country: summary.country.clone(),
            verification,
        },
        account: summary,
        wallet: WalletView {
            currency: currency.code().to_string(),
            balance: currency.format(wallet.balance),
            available: currency.format(wallet.available),
            pending_stakes: currency.format(wallet.pending_stakes),
            debt: currency.format(wallet.debt),
        },
        limits,
        bets: bet_views(&bets)?,
        transactions: transaction_views(&transactions.rows, &transactions.pending, currency),
        pending_payments,
        open_case,
    }))
}

/// The account's deposits waiting for the provider and withdrawal holds still open, oldest
/// first, at most `ACCOUNT_RECENT_ITEMS` of each.
fn pending_payments(
    book: &book::Book,
    account: AccountId,
    currency: Currency,
    approvals: bool,
) -> Vec<PendingPaymentView> {
    let view = |transfer: &book::Transfer, kind: &str, approval: &str| PendingPaymentView {
        id: transfer.id.to_string(),
        kind: kind.to_string(),
        amount: currency.format(transfer.amount),
        approval: approval.to_string(),
        created_at: format_rfc3339(transfer.timestamp),
    };
    let ledger = book.ledger();
    let mut views: Vec<PendingPaymentView> = book
        .payments()
        .pending_deposits()
        .filter(|deposit| deposit.account == account)
        .filter_map(|deposit| ledger.transfer(deposit.id))
        .take(ACCOUNT_RECENT_ITEMS)
        .map(|transfer| view(transfer, "deposit", "not_required"))
        .collect();
    let Some(player) = book.players().get(account.index()) else { return views };
    let withdrawals = ledger
        .postings_of(player.cash)
        .iter()
        .filter(|id| ledger.is_open_pending(**id))
        .filter_map(|id| ledger.transfer(*id))
        .filter(|transfer| transfer.code == book::TransferCode::Withdrawal)
        .take(ACCOUNT_RECENT_ITEMS)
        .map(|transfer| {
            let approval = match (approvals, book.payments().is_approved(transfer.id)) {
                (false, _) => "not_required",
                (true, true) => "approved",
                (true, false) => "awaiting",
            };
            view(transfer, "withdrawal", approval)
        });
    views.extend(withdrawals);
    views
}

/// The `X-Min-Position` header of the history routes. Only documents the header, which
/// `AppState::read_models` reads.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(dead_code, reason = "documents the header read by `AppState::read_models`")]
pub(crate) struct MinPosition {
    /// Answer only once the read models hold every journal record before this position (the
    /// `X-Journal-Position` of a write); waits at most 2 s, then 503 `unavailable`.
    #[param(rename = "X-Min-Position", required = false, nullable = false, pattern = "^[0-9]{1,19}$", example = "42")]
    position: Option<String>,
}

// ---- keyed writes answered from the models (`idempotency.rs`) ---------------------------------

impl AppState {
    /// A bet as its placement answered, from the models (the book's `BetView::of` with
    /// `as_placed`): for a retry answered from the models once the bet may have left the book.
    pub(crate) async fn placed_bet_from_models(&self, bet: BetId) -> Result<Option<BetView>, ApiError> {
        let Some(models) = self.config().read_models.clone() else { return Ok(None) };
        let rows = models
            .query(move |store| {
                select_bets(
                    store,
                    &ModelQuery {
                        table: &BETS,
                        filters: vec![Filter::Eq("id", Value::Int(bet.0 as i64))],
                        order: Vec::new(),
                        limit: 1,
                    },
                )
            })
            .await
            .map_err(store_error)?;
        let Some(row) = rows.bets.first() else { return Ok(None) };
        let mut view = bet_view(row, rows.legs.get(&int(row, 0)).map_or(&[], Vec::as_slice))?;
        view.status = text(row, BETS.index_of("placed_status")).to_string();
        view.payout = None;
        view.settled_at = None;
        view.rejection_code = None;
        for leg in &mut view.legs {
            leg.result = None;
        }
        Ok(Some(view))
    }

    /// A transfer of `account` as its statement shows it, from the models.
    pub(crate) async fn transfer_from_models(
        &self,
        account: AccountId,
        transfer: TransferId,
        currency: Currency,
    ) -> Result<Option<TransactionView>, ApiError> {
        let Some(models) = self.config().read_models.clone() else { return Ok(None) };
        let rows = models
            .query(move |store| {
                select_statement(
                    store,
                    &ModelQuery {
                        table: &STATEMENTS,
                        filters: vec![
                            Filter::Eq("account", Value::Int(account.0 as i64)),
                            Filter::Eq("transfer", Value::Int(transfer.0 as i64)),
                        ],
                        order: Vec::new(),
                        limit: 1,
                    },
                )
            })
            .await
            .map_err(store_error)?;
        Ok(transaction_views(&rows.rows, &rows.pending, currency).into_iter().next())
    }
}
