//! One WebSocket connection: the upgrade (authentication and connection limits), a reader task
//! that parses client messages into dispatcher requests, and a writer that drains the outbox,
//! sends heartbeats and pings, and closes idle or slow connections with a reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::dispatch::{ConnectionId, Control};
use super::outbox::{CloseReason, Frame, Outbox};
use super::wire::{self, ClientMessage, Key, Refusal};
use super::{StreamConfig, Streams};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

/// `?token=`: the access token for clients that cannot set headers on a WebSocket upgrade
/// (browsers).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// A player's access token or an operator API key, when not in `Authorization`.
    token: Option<String>,
}

/// Open connections, in total and per principal.
pub(crate) struct Connections {
    total_max: usize,
    per_principal_max: usize,
    next_id: AtomicU64,
    open: Mutex<(usize, HashMap<String, usize>)>,
}

/// One admitted connection; dropping it gives the places back.
struct Admission {
    streams: Streams,
    principal: String,
    id: ConnectionId,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let connections = &self.streams.0.connections;
        if let Ok(mut open) = connections.open.lock() {
            open.0 = open.0.saturating_sub(1);
            if let Some(count) = open.1.get_mut(&self.principal) {
                *count -= 1;
                if *count == 0 {
                    open.1.remove(&self.principal);
                }
            }
        }
        self.streams.0.metrics.record_stream_connections(-1);
        if let Some(control) = self.streams.control() {
            let close = Control::Close { connection: self.id };
            if let Err(mpsc::error::TrySendError::Full(close)) = control.try_send(close) {
                // The dispatcher must hear of every close, or the connection's subscriptions
                // would stay in its index.
                tokio::spawn(async move {
                    let _ = control.send(close).await;
                });
            }
        }
    }
}

impl Connections {
    pub fn new(total_max: usize, per_principal_max: usize) -> Connections {
        Connections { total_max, per_principal_max, next_id: AtomicU64::new(1), open: Mutex::new((0, HashMap::new())) }
    }

    fn admit(streams: &Streams, principal: String) -> Result<Admission, ApiError> {
        let connections = &streams.0.connections;
        let mut open = connections.open.lock().map_err(ApiError::internal)?;
        if open.0 >= connections.total_max {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many stream connections on this server; retry shortly",
            )
            .retry_after(5));
        }
        let count = open.1.entry(principal.clone()).or_insert(0);
        if *count >= connections.per_principal_max {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections",
                format!("at most {} stream connections per credential", connections.per_principal_max),
            )
            .with("limit", connections.per_principal_max)
            .retry_after(1));
        }
        *count += 1;
        open.0 += 1;
        drop(open);
        streams.0.metrics.record_stream_connections(1);
        Ok(Admission { streams: streams.clone(), principal, id: connections.next_id.fetch_add(1, Ordering::Relaxed) })
    }
}

fn token<'a>(headers: &'a HeaderMap, query: &'a StreamQuery) -> Option<&'a str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    bearer.or(query.token.as_deref())
}

/// `GET /v1/stream`.
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "stream",
    summary = "Live prices and account updates (WebSocket)",
    description = "Upgrades to a WebSocket (RFC 6455). The credential is `Authorization: Bearer` or `?token=`: a \
        player's access token (markets, events and the player's own account) or an operator API key (markets and \
        events).\n\n\
        Client to server, JSON text messages: `{\"op\": \"subscribe\", \"markets\": [ids]}`, `{\"op\": \"subscribe\", \
        \"events\": [ids]}`, `{\"op\": \"subscribe\", \"account\": true}` (the three may be combined in one \
        message), `{\"op\": \"unsubscribe\", ...}` with the same shapes, and `{\"op\": \"resume\", \"seq\": N}` before \
        the first subscribe: if the server still retains every update after `N`, the next subscribe replays the \
        missed ones instead of sending a snapshot.\n\n\
        Server to client, each with a `type` and a `seq` that never decreases on a connection: `snapshot` \
        (`markets` as `GET /v1/markets/{id}` shows them, and `account`: the wallet and open bets), then deltas with \
        a higher `seq`: `price` (`market_id`, `event_id`, `selection_id`, `price`, `price_version`), \
        `market_status` (`market_id`, `event_id`, `status`, `in_play`), `bet` (`bet_id`, `status`, `payout`?, \
        `rejection_code`?), `balance` (the wallet as `GET /v1/wallet` shows it), `reality_check` \
        (`session_started_at`, `time_played_seconds`, `net_position`: a reality check fell due; bets pause until \
        `POST /v1/reality-check/acknowledge`); `heartbeat` every 10 s; and \
        `error` (`code`, `message`) with the codes `invalid_request`, `too_many_subscriptions`, `forbidden`, \
        `not_found`, `rate_limited` and `overloaded`.\n\n\
        A slow client gets conflated prices (the latest per selection); if it falls further behind it is closed \
        with code 1008 and reason `slow_consumer`. A connection that answers no ping for 30 s is closed with \
        `idle_timeout`.",
    params(StreamQuery),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "An unknown query parameter (`invalid_request`)", body = ApiError),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 426, description = "Not a WebSocket upgrade request (`upgrade_required`)", body = ApiError),
        (status = 429, description = "Too many stream connections for this credential (`too_many_connections`) or \
            too many requests (`rate_limited`)",
            body = ApiError, headers(("Retry-After" = u64, description = "Whole seconds to wait before retrying"))),
    ),
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match accept(state, headers, query, upgrade).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn accept(
    state: AppState,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let principal = token(&headers, &query).ok_or_else(ApiError::unauthenticated)?;
    let principal = state.auth().authenticate(principal).await?;
    let upgrade = upgrade.map_err(|rejection| {
        let mut error = ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            format!("GET /v1/stream is a WebSocket: {}", rejection.body_text()),
        );
        error.details.insert("upgrade".to_string(), "websocket".into());
        error
    })?;
    let streams = state.streams().clone();
    let admission = Connections::admit(&streams, principal.label())?;
    let config = streams.config().clone();
    let mut response = upgrade
        .max_message_size(config.client_message_bytes_max)
        .max_frame_size(config.client_message_bytes_max)
        .on_upgrade(move |socket| run(socket, streams, principal, admission));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn run(socket: WebSocket, streams: Streams, principal: Principal, admission: Admission) {
    let Some(control) = streams.control() else { return };
    let config = streams.config().clone();
    let outbox = Arc::new(Outbox::new(&config, streams.0.shared.current_seq()));
    let account = match principal {
        Principal::Player { account, .. } => Some(account),
        Principal::Operator { .. } | Principal::Staff { .. } => None,
    };
    let id = admission.id;
    if control.send(Control::Open { connection: id, outbox: Arc::clone(&outbox), account }).await.is_err() {
        return;
    }
    let (sink, source) = socket.split();
    let heard = Arc::new(Mutex::new(Instant::now()));
    let mut writer =
        tokio::spawn(write(sink, Arc::clone(&outbox), config.clone(), streams.clone(), Arc::clone(&heard)));
    let reader = read(source, &outbox, &config, &control, id, account, &heard);
    tokio::select! {
        _ = reader => {
            // The client left: stop writing too.
            writer.abort();
        }
        // The writer closed the connection (slow consumer, idle, shutdown) or lost the socket.
        _ = &mut writer => {}
    }
    drop(admission);
}

/// A token bucket over the client's messages.
struct Bucket {
    tokens: f64,
    per_second: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_second).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn read(
    mut source: SplitStream<WebSocket>,
    outbox: &Outbox,
    config: &StreamConfig,
    control: &mpsc::Sender<Control>,
    connection: ConnectionId,
    account: Option<book::AccountId>,
    heard: &Mutex<Instant>,
) {
    let burst = f64::from(config.client_messages_burst.max(1));
    let mut bucket =
        Bucket { tokens: burst, per_second: f64::from(config.client_messages_per_second), burst, last: Instant::now() };
    let refuse = |refusal: Refusal| {
        let _ = outbox.push_with_seq(|seq| wire::error_json(seq, refusal.code, &refusal.message));
    };
    while let Some(Ok(message)) = source.next().await {
        if let Ok(mut heard) = heard.lock() {
            *heard = Instant::now();
        }
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                refuse(Refusal::invalid("messages are JSON text, not binary"));
                continue;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return,
        };
        if !bucket.take() {
            refuse(Refusal {
                code: "rate_limited",
                message: format!("at most {} messages a second", config.client_messages_per_second),
            });
            continue;
        }
        let request = match wire::parse_client_message(text.as_str(), config.subscriptions_max) {
            Ok(ClientMessage::Subscribe(subscription)) => match keys(&subscription, account) {
                Ok(keys) => Control::Subscribe { connection, keys },
                Err(refusal) => {
                    refuse(refusal);
                    continue;
                }
            },
            Ok(ClientMessage::Unsubscribe(subscription)) => {
                Control::Unsubscribe { connection, keys: keys(&subscription, account).unwrap_or_default() }
            }
            Ok(ClientMessage::Resume { seq }) => Control::Resume { connection, seq },
            Err(refusal) => {
                refuse(refusal);
                continue;
            }
        };
        if control.send(request).await.is_err() {
            return;
        }
    }
}

fn keys(subscription: &wire::Subscription, account: Option<book::AccountId>) -> Result<Vec<Key>, Refusal> {
    let mut keys: Vec<Key> = subscription.markets.iter().map(|market| Key::Market(*market)).collect();
    keys.extend(subscription.events.iter().map(|event| Key::Event(*event)));
    if subscription.account {
        let account = account.ok_or_else(|| Refusal {
            code: "forbidden",
            message: "only a player token has an account to subscribe to".to_string(),
        })?;
        keys.push(Key::Account(account));
    }
    Ok(keys)
}

async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    outbox: Arc<Outbox>,
    config: StreamConfig,
    streams: Streams,
    heard: Arc<Mutex<Instant>>,
) {
    let metrics = &streams.0.metrics;
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + config.heartbeat_interval, config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut frames: Vec<Frame> = Vec::new();
    let frames_max = config.write_frames_max.max(1);
    loop {
        tokio::select! {
            _ = outbox.changed() => loop {
                // At most `write_frames_max` frames per write: the rest wait in the outbox, where
                // a newer price can still replace them, instead of in tungstenite's buffer
                // behind a write the client is not reading.
                let closed = outbox.drain(&mut frames, frames_max);
                let more = frames.len() == frames_max;
                if !frames.is_empty() {
                    // Feed every frame, then flush once: one write for a burst of updates, and
                    // one timer for the whole write rather than one per frame.
                    let written = tokio::time::timeout(config.write_timeout, async {
                        for frame in &frames {
                            sink.feed(Message::Text(frame.text.clone())).await?;
                        }
                        sink.flush().await
                    })
                    .await;
                    if !matches!(written, Ok(Ok(()))) {
                        return;
                    }
                    // One lag observation per write: its oldest frame's, the one that waited
                    // longest. Observing every frame took a lock shared by every connection.
                    let oldest = frames.iter().filter_map(|frame| frame.committed_at).min();
                    metrics.record_stream_sent(frames.len() as u64, oldest.map(|at| at.elapsed().as_secs_f64()));
                    frames.clear();
                }
                if let Some(reason) = closed {
                    close(&mut sink, reason, &config).await;
                    return;
                }
                if !more {
                    // The queue was empty when drained; the next push wakes `changed`.
                    break;
                }
                // A backlog: let HTTP requests and other connections run between its writes.
                tokio::task::yield_now().await;
            },
            _ = heartbeat.tick() => {
                let idle = heard.lock().map(|heard| heard.elapsed()).unwrap_or_default();
                if idle > config.idle_timeout {
                    outbox.close(CloseReason::IdleTimeout);
                    continue;
                }
                let _ = outbox.push_with_seq(wire::heartbeat_json);
                let ping = tokio::time::timeout(config.write_timeout, sink.send(Message::Ping(Default::default()))).await;
                if !matches!(ping, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
}

async fn close(sink: &mut SplitSink<WebSocket, Message>, reason: CloseReason, config: &StreamConfig) {
    let frame = CloseFrame { code: reason.code(), reason: Utf8Bytes::from_static(reason.as_str()) };
    let _ = tokio::time::timeout(config.write_timeout, sink.send(Message::Close(Some(frame)))).await;
    let _ = tokio::time::timeout(config.write_timeout, sink.close()).await;
}
