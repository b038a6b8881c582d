//! Real transports on both sides of a feed.
//!
//! Our side (sources, reporting to a `SourceHandle`):
//! - `follow_websocket`: follows a provider's WebSocket stream of JSON messages; asks for a
//!   recovery with `{"op": "recover", "after", "request_id"}`;
//! - `follow_amqp_source`: consumes Unified Odds Feed XML as the provider's SDKs do
//!   (`AmqpSource`): `amqps://` with the broker's certificate and host name checked against
//!   the system's roots plus a configured CA file, the customer's virtual host from the URL's
//!   path; it never declares the provider's exchange, it binds a private queue to the existing
//!   exchange with routing-key filters (`uof::Interest`); a missing exchange is the broker's
//!   `NOT_FOUND`, a refused certificate rustls's error, each logged as it is and counted by code
//!   (`AmqpFailure`), then retried after a jittered, doubling back-off (`amqp_backoff`).
//!   `follow_amqp` is it with every message and the system's roots. Routing keys are parsed; `alive`, `product_down`, `snapshot_complete` and the
//!   messages applied drive each producer's recovery in the hub, which asks the provider's
//!   HTTP API for recoveries (never the broker). With names configured, an event's fixture is
//!   fetched off the message path the first time it is seen and after a `fixture_change`.
//!
//! Both reconnect with back-off until their task is aborted.
//!
//! The provider's side, for the simulator and tests: `WebSocketProvider` and `AmqpProvider`
//! publish feed messages and hand recovery requests back. `AmqpProvider` declares its exchange
//! durable (a topic exchange, as the provider's is) and publishes schema-true XML under real
//! routing keys.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use book::FeedMessage;
use futures_util::{SinkExt, StreamExt};
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;

use crate::json::{JsonMessage, FEED_BATCH_MAX};
use crate::names::NameStore;
use crate::runtime::{Control, SourceHandle};
use crate::uof::{self, Interest, Producer, RoutingKey, UofEvent, UofNames, UofTranslator};

/// The provider's pre-match producer (Betradar Ctrl); the others publish as live producers.
pub const PREMATCH_PRODUCT: u32 = 3;
/// The sport id the simulated provider's routing keys carry (soccer).
pub const SIMULATED_SPORT_ID: u32 = 1;
/// Back-off between reconnection attempts.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(250);
/// Bytes of one WebSocket frame from a provider.
pub const WEBSOCKET_FRAME_BYTES_MAX: usize = 4 << 20;
/// Messages buffered per provider-side subscriber before it is dropped as too slow.
pub const PROVIDER_QUEUE_MAX: usize = 65_536;

/// Parses one frame: a message or an array of messages.
pub fn parse_frame(text: &str) -> Result<Vec<JsonMessage>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|error| error.to_string())?;
    let messages: Vec<JsonMessage> = if value.is_array() {
        serde_json::from_value(value).map_err(|error| error.to_string())?
    } else {
        vec![serde_json::from_value(value).map_err(|error| error.to_string())?]
    };
    if messages.len() > FEED_BATCH_MAX {
        return Err(format!("more than {FEED_BATCH_MAX} messages in a frame"));
    }
    Ok(messages)
}

async fn deliver_json(source: &SourceHandle, messages: Vec<JsonMessage>) {
    for message in messages {
        if message.is_heartbeat() {
            source.alive();
            continue;
        }
        match message.to_book() {
            Ok(message) => source.message(message).await,
            Err(error) => source.invalid(&error.to_string()),
        }
    }
}

/// Query parameters of a source URL whose values are settings, not secrets (the AMQP URI
/// parameters); every other parameter's value may be a credential (`?token=`, `?key=`, a
/// signature) and is never logged.
const URL_SETTINGS_SHOWN: [&str; 5] = ["heartbeat", "connection_timeout", "channel_max", "frame_max", "auth_mechanism"];

/// `url` as a log may show it: the password of its user information (`scheme://user:password@
/// host…`) and the value of every query parameter that is not a known setting replaced by
/// `***`. The provider's credential travels in one or the other (an AMQP URL's password, a
/// WebSocket URL's access token), and a log is read by more people than the configuration.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after_authority) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let (before_fragment, fragment) = match after_authority.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (after_authority, None),
    };
    let mut shown = format!("{scheme}://{authority}");
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            shown.push_str(path);
            shown.push('?');
            let parameters: Vec<String> = query
                .split('&')
                .map(|parameter| match parameter.split_once('=') {
                    Some((name, _)) if URL_SETTINGS_SHOWN.contains(&name) => parameter.to_string(),
                    Some((name, _)) => format!("{name}=***"),
                    None => parameter.to_string(),
                })
                .collect();
            shown.push_str(&parameters.join("&"));
        }
        None => shown.push_str(before_fragment),
    }
    if let Some(fragment) = fragment {
        shown.push('#');
        shown.push_str(fragment);
    }
    shown
}

/// Follows a provider's WebSocket stream until the task is aborted. The URL is logged
/// redacted (`redact_url`).
pub async fn follow_websocket(mut source: SourceHandle, url: String) {
    let shown = redact_url(&url);
    let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    config.max_message_size = Some(WEBSOCKET_FRAME_BYTES_MAX);
    config.max_frame_size = Some(WEBSOCKET_FRAME_BYTES_MAX);
    loop {
        match tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false).await {
            Ok((stream, _)) => {
                tracing::info!(provider = source.provider(), url = %shown, "feed websocket connected");
                let (mut sink, mut stream) = stream.split();
                source.connected();
                loop {
                    tokio::select! {
                        frame = stream.next() => match frame {
                            Some(Ok(Message::Text(text))) => match parse_frame(&text) {
                                Ok(messages) => deliver_json(&source, messages).await,
                                Err(error) => source.invalid(&error),
                            },
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                            Some(Ok(_)) => {}
                        },
                        control = source.controls.recv() => {
                            let Some(Control::Recover { after, request_id }) = control else { break };
                            let request = serde_json::json!({"op": "recover", "after": after, "request_id": request_id});
                            if sink.send(Message::text(request.to_string())).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                tracing::warn!(provider = source.provider(), url = %shown, "feed websocket lost");
                source.disconnected();
            }
            Err(error) => {
                tracing::debug!(provider = source.provider(), url = %shown, %error, "feed websocket connect failed");
            }
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn amqp_channel(url: &str) -> Result<(Connection, Channel), lapin::Error> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// Bytes of a CA file (`--feed-ca`): PEM certificates, far below this.
pub const CA_FILE_BYTES_MAX: u64 = 1 << 20;

/// An AMQP source of Unified Odds Feed messages, as the provider's SDKs connect: where the
/// broker is, the exchange to bind to (it must exist), what to consume, and the certificates
/// trusted for `amqps://` besides the system's roots.
#[derive(Clone)]
pub struct AmqpSource {
    /// `amqp://` or `amqps://USER:PASS@HOST[:PORT]/VHOST`: the customer's virtual host is the
    /// URL's path, percent-encoded (`%2f` is `/`); `amqps://` checks the broker's certificate
    /// against `HOST`.
    pub url: String,
    pub exchange: String,
    pub interest: Interest,
    /// PEM certificates of extra trusted CAs (`AmqpSource::read_ca_file`).
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for AmqpSource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL holds the broker's password: not shown.
        formatter
            .debug_struct("AmqpSource")
            .field("exchange", &self.exchange)
            .field("interest", &self.interest)
            .field("ca", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl AmqpSource {
    /// Every message of `exchange`, the system's roots only.
    pub fn new(url: impl Into<String>, exchange: impl Into<String>) -> AmqpSource {
        AmqpSource { url: url.into(), exchange: exchange.into(), interest: Interest::All, ca_pem: None }
    }

    pub fn with_interest(mut self, interest: Interest) -> AmqpSource {
        self.interest = interest;
        self
    }

    pub fn with_ca_pem(mut self, pem: Option<String>) -> AmqpSource {
        self.ca_pem = pem;
        self
    }

    /// Reads a CA file: readable, at most `CA_FILE_BYTES_MAX`, at least one PEM certificate.
    pub fn read_ca_file(path: &std::path::Path) -> Result<String, String> {
        let shown = path.display();
        let size = std::fs::metadata(path).map_err(|error| format!("the CA file {shown}: {error}"))?.len();
        if size > CA_FILE_BYTES_MAX {
            return Err(format!("the CA file {shown} is over {CA_FILE_BYTES_MAX} bytes"));
        }
        let pem = std::fs::read_to_string(path).map_err(|error| format!("the CA file {shown}: {error}"))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!("the CA file {shown} holds no PEM certificate"));
        }
        Ok(pem)
    }
}

/// Why an AMQP session could not start or ended: a stable code (metric label) and the error
/// as the broker or the TLS layer gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpFailure {
    /// `not_found`, `access_refused`, `precondition_failed`, `not_allowed` (virtual host),
    /// `invalid_path`, `tls_certificate`, `tls`, `io`, `protocol_<reply code>`, `other`.
    pub code: String,
    pub detail: String,
}

impl std::fmt::Display for AmqpFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.code, self.detail)
    }
}

impl AmqpFailure {
    pub fn of(error: &lapin::Error) -> AmqpFailure {
        AmqpFailure { code: failure_code(error), detail: error.to_string() }
    }
}

fn failure_code(error: &lapin::Error) -> String {
    match error {
        lapin::Error::ProtocolError(amqp) => match amqp.get_id() {
            404 => "not_found".to_string(),
            403 => "access_refused".to_string(),
            406 => "precondition_failed".to_string(),
            530 => "not_allowed".to_string(),
            402 => "invalid_path".to_string(),
            id => format!("protocol_{id}"),
        },
        lapin::Error::IOError(io) => {
            // A TLS failure is a rustls error somewhere down the I/O error's sources.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = io.get_ref().map(|inner| inner as _);
            while let Some(current) = cause {
                if let Some(tls) = current.downcast_ref::<rustls::Error>() {
                    return match tls {
                        rustls::Error::InvalidCertificate(_) => "tls_certificate".to_string(),
                        _ => "tls".to_string(),
                    };
                }
                cause = current.source();
            }
            "io".to_string()
        }
        _ => "other".to_string(),
    }
}

/// Connects as the source says (TLS for `amqps://`, with the CA file's certificates trusted
/// besides the system's roots) and opens a channel.
pub async fn amqp_connect(source: &AmqpSource) -> Result<(Connection, Channel), AmqpFailure> {
    let tls = lapin::tcp::OwnedTLSConfig { identity: None, cert_chain: source.ca_pem.clone() };
    let connection = Connection::connect_with_config(&source.url, ConnectionProperties::default(), tls)
        .await
        .map_err(|error| AmqpFailure::of(&error))?;
    let channel = connection.create_channel().await.map_err(|error| AmqpFailure::of(&error))?;
    Ok((connection, channel))
}

/// Declares an exchange of ours (the simulated provider's): a durable topic exchange, as the
/// provider's own is.
async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), lapin::Error> {
    let options = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel.exchange_declare(exchange, ExchangeKind::Topic, options, FieldTable::default()).await
}

/// A private queue bound to an existing exchange with routing-key patterns. The exchange is
/// never declared here: binding to one that does not exist fails with the broker's error.
async fn subscribe(channel: &Channel, exchange: &str, bindings: &[&str]) -> Result<lapin::Consumer, lapin::Error> {
    let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
    let queue = channel.queue_declare("", options, FieldTable::default()).await?;
    for binding in bindings {
        channel
            .queue_bind(queue.name().as_str(), exchange, binding, QueueBindOptions::default(), FieldTable::default())
            .await?;
    }
    let options = BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() };
    channel.basic_consume(queue.name().as_str(), "", options, FieldTable::default()).await
}

/// The longest back-off between reconnection attempts of an AMQP session.
pub const AMQP_RECONNECT_DELAY_MAX: Duration = Duration::from_secs(30);

/// The back-off before reconnection attempt `attempt` (0: the first after a failure):
/// `RECONNECT_DELAY` doubled per attempt up to `AMQP_RECONNECT_DELAY_MAX`, then a random
/// point in its upper half (jitter: sessions that failed together do not retry together).
pub fn amqp_backoff(attempt: u32, random: impl FnOnce(u64) -> u64) -> Duration {
    let ceiling = RECONNECT_DELAY.saturating_mul(1 << attempt.min(16)).min(AMQP_RECONNECT_DELAY_MAX);
    let half = ceiling.as_millis() as u64 / 2;
    Duration::from_millis(half + random(half + 1).min(half))
}

/// Hands one delivery to the hub: parses its routing key and translates its XML; refusals are
/// logged and counted by reason.
pub async fn deliver_uof(source: &SourceHandle, translator: &UofTranslator, routing_key: &str, body: &[u8]) {
    let routing = match RoutingKey::parse(routing_key) {
        Ok(routing) => Some(routing),
        Err(refusal) => {
            // The body still says what it is; the key only adds the sport.
            source.item_refused(refusal.reason, &refusal.detail);
            None
        }
    };
    let Ok(xml) = std::str::from_utf8(body) else {
        source.refused("not_utf8", "message is not UTF-8");
        return;
    };
    let translation = match translator.translate(xml, routing.as_ref()) {
        Ok(translation) => translation,
        Err(refusal) => {
            source.refused(refusal.reason, &refusal.detail);
            return;
        }
    };
    for refusal in &translation.refused {
        source.item_refused(refusal.reason, &refusal.detail);
    }
    let mut event = translation.event;
    if let (Some(groups), Some(names), UofEvent::Feed { message, .. }) =
        (&translation.groups, translator.names(), &mut event)
    {
        narrow_bet_stop(source, names, groups, message).await;
    }
    match event {
        UofEvent::Alive { product, timestamp, subscribed } => source.producer_alive(product, timestamp, subscribed),
        UofEvent::SnapshotComplete { product, request_id, message } => {
            source.snapshot_complete(product, request_id, message).await;
        }
        UofEvent::ProductDown { product } => source.product_down(product),
        UofEvent::Feed { product, message } => {
            if !message.items.is_empty() {
                source.producer_message(product, message).await;
            }
        }
        UofEvent::Unknown { kind } => source.item_refused("unknown_message", &format!("<{kind}> skipped")),
    }
}

/// Narrows a `bet_stop`'s `BetStop` items (which list no market: all of the event's) to the
/// event's markets in `groups`, as the book has them; an item left with no market is dropped
/// (nothing of those groups to stop). If the book cannot be read, the item stops every market.
async fn narrow_bet_stop(source: &SourceHandle, names: &UofNames, groups: &[String], message: &mut FeedMessage) {
    let mut narrowed = Vec::with_capacity(message.items.len());
    for item in std::mem::take(&mut message.items) {
        match item {
            book::FeedItem::BetStop { event, markets } if markets.is_empty() => {
                let Some(keys) = source.market_keys(&event).await else {
                    // Unknown markets: all of them stop, more than asked rather than less.
                    narrowed.push(book::FeedItem::BetStop { event, markets });
                    continue;
                };
                let markets: Vec<String> =
                    keys.into_iter().filter(|key| uof::in_groups(names.namer.descriptions(), key, groups)).collect();
                if markets.is_empty() {
                    tracing::debug!(provider = source.provider(), %event, ?groups, "bet_stop: no market of those groups");
                } else {
                    narrowed.push(book::FeedItem::BetStop { event, markets });
                }
            }
            other => narrowed.push(other),
        }
    }
    message.items = narrowed;
}

/// Fetches the fixture of an event the translator has no fixture for (first seen, or after a
/// `fixture_change`), off the message path; the fixture names events and competitor outcomes
/// translated after it arrived.
fn fetch_fixture(
    names: &Arc<UofNames>,
    store: &Option<NameStore>,
    urn: &str,
    refresh: bool,
    pending: &Arc<Mutex<HashSet<String>>>,
) {
    let Some(store) = store.clone() else { return };
    if !refresh && names.fixture(urn).is_some() {
        return;
    }
    {
        let mut pending = pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if pending.len() >= FIXTURE_FETCHES_MAX || !pending.insert(urn.to_string()) {
            return;
        }
    }
    let names = names.clone();
    let pending = pending.clone();
    let urn = urn.to_string();
    tokio::spawn(async move {
        match store.fixture(&urn, refresh).await {
            Ok(fixture) => names.set_fixture(fixture),
            Err(error) => {
                tracing::warn!(event = %urn, %error, "feed fixture not fetched; the event keeps its URN name")
            }
        }
        pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&urn);
    });
}

/// Fixture fetches in flight at once per source.
pub const FIXTURE_FETCHES_MAX: usize = 256;

/// The event whose fixture a delivery calls for, from its routing key: any event message (the
/// fixture is fetched once), a `fixture_change` (fetched again).
fn fixture_wanted(routing_key: &str) -> Option<(String, bool)> {
    let key = RoutingKey::parse(routing_key).ok()?;
    let event = key.event?;
    Some((event, key.message_type == "fixture_change"))
}

/// Connects and binds a private queue to the source's exchange with its interest's patterns:
/// the session `follow_amqp_source` consumes from. A missing exchange is the broker's
/// `not_found`; nothing is declared but the queue.
pub async fn amqp_session(amqp: &AmqpSource) -> Result<(Connection, lapin::Consumer), AmqpFailure> {
    let (connection, channel) = amqp_connect(amqp).await?;
    match subscribe(&channel, &amqp.exchange, amqp.interest.bindings()).await {
        Ok(consumer) => Ok((connection, consumer)),
        Err(error) => {
            let _ = connection.close(200, "binding failed").await;
            Err(AmqpFailure::of(&error))
        }
    }
}

/// Consumes Unified Odds Feed XML from `exchange` on the broker at `url`, every message
/// (`Interest::All`), the system's roots trusted: `follow_amqp_source` with those settings.
pub async fn follow_amqp(source: SourceHandle, url: String, exchange: String, in_play_delay: u32) {
    follow_amqp_source(source, AmqpSource::new(url, exchange), in_play_delay).await
}

/// Consumes Unified Odds Feed XML as `amqp` says until the task is aborted: a private queue
/// bound to the existing exchange with the interest's routing-key patterns. A failure (refused
/// connection, certificate, missing exchange, lost session) is logged as the broker or the TLS
/// layer gave it, counted by code (`sportsbook_feed_connection_errors`), and followed by a
/// reconnection after `amqp_backoff` (reset once a session is up).
pub async fn follow_amqp_source(mut source: SourceHandle, amqp: AmqpSource, in_play_delay: u32) {
    let names = source.uof_names();
    let translator = UofTranslator::new(source.provider(), in_play_delay).with_names(names.clone());
    let store = source.name_store();
    let pending: Arc<Mutex<HashSet<String>>> = Arc::default();
    let exchange = amqp.exchange.clone();
    let mut attempt = 0u32;
    loop {
        match amqp_session(&amqp).await {
            Ok((connection, mut consumer)) => {
                tracing::info!(provider = source.provider(), %exchange, interest = ?amqp.interest, "feed AMQP consumer connected");
                attempt = 0;
                source.connected();
                let reason = loop {
                    tokio::select! {
                        delivery = consumer.next() => match delivery {
                            Some(Ok(delivery)) => {
                                if let Some(names) = &names {
                                    if let Some((urn, refresh)) = fixture_wanted(delivery.routing_key.as_str()) {
                                        fetch_fixture(names, &store, &urn, refresh, &pending);
                                    }
                                }
                                deliver_uof(&source, &translator, delivery.routing_key.as_str(), &delivery.data).await;
                            }
                            Some(Err(error)) => break Some(AmqpFailure::of(&error)),
                            None => break Some(AmqpFailure { code: "consumer_ended".to_string(), detail: "the consumer ended".to_string() }),
                        },
                        // UOF producers recover through the provider's API (the hub sends those
                        // requests); the hub's source-level requests have nothing to do here.
                        control = source.controls.recv() => {
                            if control.is_none() { break None }
                        }
                    }
                };
                let Some(failure) = reason else {
                    let _ = connection.close(200, "the hub stopped").await;
                    return;
                };
                source.connection_failed(&failure.code);
                tracing::warn!(provider = source.provider(), %exchange, code = %failure.code, error = %failure.detail, "feed AMQP consumer lost");
                source.disconnected();
                let _ = connection.close(200, "reconnecting").await;
            }
            Err(failure) => {
                source.connection_failed(&failure.code);
                let retry = amqp_backoff(attempt, |n| rand::random_range(0..n.max(1)));
                tracing::error!(provider = source.provider(), %exchange, code = %failure.code, error = %failure.detail, retry_ms = retry.as_millis() as u64, "feed AMQP connect failed");
                tokio::time::sleep(retry).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
        }
        tokio::time::sleep(amqp_backoff(attempt, |n| rand::random_range(0..n.max(1)))).await;
        attempt = attempt.saturating_add(1);
    }
}

/// A recovery request a provider received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryRequest {
    pub after: u64,
    pub request_id: u64,
}

/// The provider's side of a WebSocket feed: every connected client gets every message.
#[derive(Debug)]
pub struct WebSocketProvider {
    address: SocketAddr,
    frames: broadcast::Sender<Arc<str>>,
    task: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl WebSocketProvider {
    /// Listens on `address`; recovery requests from clients arrive on the returned receiver.
    pub async fn bind(address: SocketAddr) -> std::io::Result<(WebSocketProvider, mpsc::Receiver<RecoveryRequest>)> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (frames, _) = broadcast::channel::<Arc<str>>(PROVIDER_QUEUE_MAX);
        let (recoveries, receiver) = mpsc::channel(64);
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let task = {
            let frames = frames.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let mut outgoing = frames.subscribe();
                    let recoveries = recoveries.clone();
                    let connection = tokio::spawn(async move {
                        let Ok(socket) = tokio_tungstenite::accept_async(stream).await else { return };
                        let (mut sink, mut stream) = socket.split();
                        loop {
                            tokio::select! {
                                frame = outgoing.recv() => match frame {
                                    Ok(frame) => {
                                        if sink.send(Message::text(frame.to_string())).await.is_err() {
                                            return;
                                        }
                                    }
                                    Err(_) => return,
                                },
                                incoming = stream.next() => match incoming {
                                    Some(Ok(Message::Text(text))) => {
                                        let request: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                                        if request["op"] == "recover" {
                                            let _ = recoveries.try_send(RecoveryRequest {
                                                after: request["after"].as_u64().unwrap_or(0),
                                                request_id: request["request_id"].as_u64().unwrap_or(0),
                                            });
                                        }
                                    }
                                    Some(Ok(_)) => {}
                                    _ => return,
                                },
                            }
                        }
                    });
                    connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(connection.abort_handle());
                }
            })
        };
        Ok((WebSocketProvider { address, frames, task, connections }, receiver))
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.address)
    }

    /// Sends messages to every connected client, as one frame.
    pub fn publish(&self, messages: &[FeedMessage]) {
        let batch: Vec<JsonMessage> = messages.iter().map(JsonMessage::from_book).collect();
        let frame = serde_json::to_string(&batch).unwrap_or_default();
        let _ = self.frames.send(Arc::from(frame));
    }

    pub fn alive(&self, provider: &str, timestamp: u64) {
        let frame = serde_json::json!({"provider": provider, "sequence": 1, "timestamp": timestamp, "items": [{"type": "alive"}]});
        let _ = self.frames.send(Arc::from(frame.to_string()));
    }

    /// Stops listening and drops every connection: a provider that died.
    pub fn kill(&self) {
        self.task.abort();
        for connection in self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).drain(..) {
            connection.abort();
        }
    }
}

impl Drop for WebSocketProvider {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The provider's side of a UOF-style AMQP feed: publishes XML to a durable topic exchange.
pub struct AmqpProvider {
    connection: Connection,
    channel: Channel,
    exchange: String,
    product: u32,
}

impl std::fmt::Debug for AmqpProvider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AmqpProvider").field("exchange", &self.exchange).finish_non_exhaustive()
    }
}

impl AmqpProvider {
    /// Connects and declares the exchange (durable topic). Recovery requests reach a provider
    /// through its HTTP API, not the broker: see `provider_api::ProviderApi`.
    pub async fn connect(url: &str, exchange: &str, product: u32) -> Result<AmqpProvider, lapin::Error> {
        let (connection, channel) = amqp_channel(url).await?;
        declare_exchange(&channel, exchange).await?;
        Ok(AmqpProvider { connection, channel, exchange: exchange.to_string(), product })
    }

    /// The producer this provider publishes as.
    pub fn producer(&self) -> Producer {
        Producer { product: self.product, live: self.product != PREMATCH_PRODUCT, sport_id: SIMULATED_SPORT_ID }
    }

    /// Publishes a message; `request_id` marks a recovery replay.
    pub async fn publish(&self, message: &FeedMessage, request_id: Option<u64>) -> Result<(), String> {
        for (routing, xml) in uof::render(message, self.producer(), request_id).map_err(|error| error.to_string())? {
            self.send(&routing, &xml).await?;
        }
        Ok(())
    }

    /// Publishes a raw XML message.
    pub async fn send(&self, routing: &str, xml: &str) -> Result<(), String> {
        self.channel
            .basic_publish(
                &self.exchange,
                routing,
                BasicPublishOptions::default(),
                xml.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    pub async fn alive(&self, timestamp: u64, subscribed: bool) -> Result<(), String> {
        let (routing, xml) = uof::render_alive(self.producer(), timestamp, subscribed);
        self.send(&routing, &xml).await
    }

    /// Closes the connection: a provider that died.
    pub async fn close(self) {
        let _ = self.connection.close(200, "provider stopped").await;
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_source_urls_credentials_never_reach_the_log() {
        // A token in the query string of a WebSocket URL, user:password in its authority.
        assert_eq!(
            redact_url("wss://feed.example:443/v1/stream?token=s3cret&sport=1"),
            "wss://feed.example:443/v1/stream?token=***&sport=***"
        );
        assert_eq!(redact_url("ws://reader:s3cret@127.0.0.1:9000/feed"), "ws://reader:***@127.0.0.1:9000/feed");
        assert_eq!(
            redact_url("wss://u:p@[::1]:9000/f?access_token=abc#x"),
            "wss://u:***@[::1]:9000/f?access_token=***#x"
        );
        // AMQP: the password goes, the connection settings stay readable.
        assert_eq!(
            redact_url("amqps://token123:s3cret@mq.example.com:5671/vhost?heartbeat=10&auth_mechanism=plain"),
            "amqps://token123:***@mq.example.com:5671/vhost?heartbeat=10&auth_mechanism=plain"
        );
        // Nothing secret: unchanged (a user without a password, an `@` in the path, a bare flag).
        for plain in ["ws://127.0.0.1:9000", "ws://reader@127.0.0.1:9000/feed", "ws://host/feed@x:y", "ws://h/?debug"] {
            assert_eq!(redact_url(plain), plain);
        }
        assert!(!redact_url("ws://h/?key=a%26b&token=").contains("a%26b"));
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
