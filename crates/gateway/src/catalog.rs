//! Catalog reads: events and markets with their selections and current prices. Open to every
//! caller: no credential is needed, and one that is sent is not looked at.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::Router;
use book::{EventState, MarketId};
use serde::Deserialize;

use crate::dto::{parse_id, EventView, MarketView, Page, PageQuery};
use crate::error::{ApiError, Json};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/markets/{id}", get(get_market))
}

/// `?limit=&cursor=&sport=&state=`; any other field is 400 `invalid_request`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Items per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only events of this sport (compared without regard to ASCII case).
    pub sport: Option<String>,
    /// Only events in this state.
    pub state: Option<EventStateFilter>,
}

#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStateFilter {
    Scheduled,
    InPlay,
    Ended,
}

impl EventStateFilter {
    fn state(self) -> EventState {
        match self {
            EventStateFilter::Scheduled => EventState::Scheduled,
            EventStateFilter::InPlay => EventState::InPlay,
            EventStateFilter::Ended => EventState::Ended,
        }
    }
}

/// `GET /v1/events`: events in the order they were created, each with its markets.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "catalog",
    summary = "Events",
    description = "Events in the order they were created, each with its markets. No credential needed.",
    params(EventsQuery),
    responses(
        (status = 200, description = "Events in the order they were created, each with its markets, selections and \
            current prices", body = Page<EventView>),
        (status = 400, description = "Bad `limit`, `cursor` or `state`, or an unknown parameter \
            (`invalid_request`)", body = ApiError),
    ),
)]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<Page<EventView>>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let page = PageQuery { limit: query.limit, cursor: query.cursor };
    let limit = page.limit()?;
    let after = page.after("evt_")?;
    let sport = query.sport;
    let wanted = query.state.map(EventStateFilter::state);
    let page = state
        .read(move |book| {
            // Event ids are dense from 1, so the events after the cursor's id start at that index.
            let start = after.map_or(0, |id| usize::try_from(id).unwrap_or(usize::MAX));
            let mut matching = book.events().range_from(start).filter(|event| {
                sport.as_deref().is_none_or(|sport| event.sport.eq_ignore_ascii_case(sport))
                    && wanted.is_none_or(|wanted| event.state == wanted)
            });
            let items: Vec<EventView> = matching.by_ref().take(limit).map(|event| EventView::of(book, event)).collect();
            // Look one past the page so the last page says so with a null cursor.
            let more = items.len() == limit && matching.next().is_some();
            let next_cursor = if more { items.last().map(|event| event.id.clone()) } else { None };
            Page { items, next_cursor }
        })
        .await?;
    Ok(Json(page))
}

/// `GET /v1/events/{id}`.
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "catalog",
    summary = "An event",
    description = "No credential needed.",
    params(("id" = String, Path, description = "An event id", example = "evt_1")),
    responses(
        (status = 200, description = "The event with its markets, selections and current prices", body = EventView),
        (status = 404, description = "No such event (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn get_event(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EventView>, ApiError> {
    let id = path_id(path, "evt_", "event")?;
    let index = usize::try_from(id - 1).unwrap_or(usize::MAX);
    state
        .read(move |book| book.events().get(index).map(|event| EventView::of(book, event)))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("event"))
}

/// `GET /v1/markets/{id}`.
#[utoipa::path(
    get,
    path = "/v1/markets/{id}",
    tag = "catalog",
    summary = "A market",
    description = "No credential needed.",
    params(("id" = String, Path, description = "A market id", example = "mkt_1")),
    responses(
        (status = 200, description = "The market with its status, selections and current prices", body = MarketView),
        (status = 404, description = "No such market (`not_found`)", body = ApiError),
    ),
)]
pub(crate) async fn get_market(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MarketView>, ApiError> {
    let market = MarketId(path_id(path, "mkt_", "market")?);
    state
        .read(move |book| book.market(market).map(|found| MarketView::of(book, found)))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("market"))
}

/// The id in the path; a malformed one is 404 like an unknown one (ids are opaque).
fn path_id(path: Result<Path<String>, PathRejection>, prefix: &str, what: &str) -> Result<u64, ApiError> {
    let Path(text) = path.map_err(|_| ApiError::not_found(what))?;
    parse_id(&text, prefix, what)
}
