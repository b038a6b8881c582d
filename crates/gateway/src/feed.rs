//! `POST /v1/feed/messages` (scope `feed`): a provider pushes a batch of normalised feed
//! messages (`feed::json`). Each message goes to the book in order and gets its own result:
//! applied, a duplicate (its sequence was applied before), stale (older odds than those
//! applied), partial (some items refused) or refused, with the refusals' codes. A batch
//! whose JSON is malformed is refused whole; a message that is well formed but invalid (bad
//! odds, sequence 0) is refused alone.

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::Router;
use book::{scopes, Ack, FeedApplied, Reply};
use feed::json::{JsonMessage, FEED_BATCH_MAX};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Json};
use crate::{AppState, Principal};

/// Bytes of one feed batch: a full odds snapshot of a busy event fits.
pub const FEED_BODY_BYTES_MAX: usize = 4 << 20;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/feed/messages", post(push_messages)).layer(DefaultBodyLimit::max(FEED_BODY_BYTES_MAX))
}

/// A batch of feed messages. Each message: `{"provider", "sequence", "timestamp" (ms),
/// "items": [{"type": "fixture" | "market" | "odds_change" | "bet_stop" | "in_play" | "ended"
/// | "settlement" | "cancel" | "rollback" | "snapshot_complete" | "alive", ...}]}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedBatch {
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<JsonMessage>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedItemRefusal {
    /// Position of the item in its message.
    pub item: u32,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedResultView {
    pub sequence: u64,
    /// `applied`, `duplicate`, `stale`, `partial`, `refused` or `heartbeat`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused_items: Vec<FeedItemRefusal>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedBatchResult {
    pub results: Vec<FeedResultView>,
}

fn result_view(sequence: u64, reply: &Reply) -> FeedResultView {
    let mut view = FeedResultView {
        sequence,
        status: feed::runtime::outcome_label(reply).to_string(),
        code: None,
        message: None,
        refused_items: Vec::new(),
    };
    match reply {
        Ok(Ack::Feed(FeedApplied { ignored, .. })) => {
            view.refused_items = ignored
                .iter()
                .map(|(item, rejection)| FeedItemRefusal {
                    item: *item,
                    code: rejection.code().to_string(),
                    message: rejection.to_string(),
                })
                .collect();
        }
        Ok(_) => {}
        Err(rejection) => {
            view.code = Some(rejection.code().to_string());
            view.message = Some(rejection.to_string());
        }
    }
    view
}

/// `POST /v1/feed/messages` (feed).
#[utoipa::path(
    post,
    path = "/v1/feed/messages",
    tag = "feed",
    summary = "Push feed messages",
    description = "A batch of normalised feed messages from one or more providers, applied in order. \
        Messages are de-duplicated by provider and sequence; odds older than those applied are ignored. \
        A message whose items are all `alive` is a heartbeat. Pushing keeps the provider fresh; a provider \
        silent for longer than its staleness limit has its markets suspended (or delayed) until its \
        `snapshot_complete`. Scope: `feed`.",
    security(("bearer" = [])),
    request_body = FeedBatch,
    responses(
        (status = 200, description = "One result per message, in order", body = FeedBatchResult),
        (status = 400, description = "Malformed body or unknown field, or more than 1,000 messages \
            (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not an API key with the `feed` scope (`forbidden`)", body = ApiError),
        (status = 413, description = "Body over 4 MiB (`payload_too_large`), or a message larger than a \
            journal record can hold (`command_too_large`)", body = ApiError),
        (status = 415, description = "Not `Content-Type: application/json` (`unsupported_media_type`)", body = ApiError),
    ),
)]
pub(crate) async fn push_messages(
    principal: Principal,
    State(state): State<AppState>,
    body: Result<Json<FeedBatch>, ApiError>,
) -> Result<Json<FeedBatchResult>, ApiError> {
    principal.require_scope(scopes::FEED)?;
    let Json(batch) = body?;
    if batch.messages.len() > FEED_BATCH_MAX {
        return Err(ApiError::invalid(format!("messages: at most {FEED_BATCH_MAX}")).with("field", "messages"));
    }
    let hub = state.feed();
    // Submit everything first (the book keeps the order), then collect the replies: one
    // batch is one group commit, not one sync per message.
    let mut pending = Vec::with_capacity(batch.messages.len());
    for message in &batch.messages {
        if message.is_heartbeat() {
            hub.touch_http(&message.provider);
            pending.push((message.sequence, Err(("heartbeat", None))));
            continue;
        }
        // Ids and names are bounded before the book: a refused message never reaches the journal.
        let checked = message.to_book().and_then(|book_message| {
            book_message.check_text().map_err(::feed::FeedError::invalid).map(|()| book_message)
        });
        match checked {
            Ok(book_message) => {
                let timestamp = book_message.timestamp;
                let provider = book_message.provider.clone();
                let receiver = hub.push(book_message, principal.actor())?;
                pending.push((message.sequence, Ok((provider, timestamp, receiver))));
            }
            Err(error) => {
                hub.metrics().count(&message.provider, "invalid");
                pending.push((message.sequence, Err(("refused", Some(error)))));
            }
        }
    }
    let mut results = Vec::with_capacity(pending.len());
    for (sequence, entry) in pending {
        results.push(match entry {
            Ok((provider, timestamp, receiver)) => {
                let reply = state.durable_reply(receiver).await?;
                hub.record(&provider, timestamp, &reply);
                result_view(sequence, &reply)
            }
            Err((status, error)) => FeedResultView {
                sequence,
                status: status.to_string(),
                code: error.as_ref().map(|error| error.code.to_string()),
                message: error.map(|error| error.message),
                refused_items: Vec::new(),
            },
        });
    }
    Ok(Json(FeedBatchResult { results }))
}
