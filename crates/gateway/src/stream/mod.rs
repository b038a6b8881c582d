//! `GET /v1/stream`: prices, market status and the player's own account, live over WebSocket.
//!
//! Three stages, each owning its data and none waiting on the next:
//!
//! 1. **The hook** (`Streams::engine_hook`) runs on the sequencer thread after each durable
//!    batch. It turns the batch's book events into `Update`s, reading from the book what a
//!    subscriber needs (a market's event, an account's wallet after the batch), stamps each with
//!    the next stream sequence, and `try_send`s the batch to the dispatcher. No JSON, no lock,
//!    no waiting: if the channel is full the batch is counted as lost and every connection is
//!    resynchronised with fresh snapshots instead of silently missing it.
//! 2. **The dispatcher** (`dispatch.rs`), one task, owns the subscription index (by market,
//!    event, account), the ring of retained updates for `resume`, and serialises each update
//!    once, pushing the shared frame into every interested connection's outbox.
//! 3. **Each connection** (`connection.rs`) has an `Outbox` (bounded, prices conflated when
//!    behind, closed as `slow_consumer` when non-conflatable messages overflow) drained by a
//!    writer task, and a reader task that parses client messages.
//!
//! Snapshots are book reads issued by the dispatcher after it registered the subscription. The
//! read runs on the sequencer between batches and sends its result through the same channel as
//! the updates, so the dispatcher sees it exactly between the batches it sits between: every
//! update before it is in the snapshot, every update after it is newer. No update is missed
//! or delivered twice, and sequences on a connection never go down.

pub(crate) mod connection;
mod dispatch;
mod outbox;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use book::{AccountId, AccountKind, BetStatus, Book, BookEvent, EventId, MarketId, MarketStatus, SelectionId};
use domain::{Currency, Money, Odds};
use engine::{CommitHook, Committed, EngineHandle};
use tokio::sync::mpsc;

pub(crate) use connection::stream;

use crate::metrics::Metrics;

/// Subscriptions (markets, events and the account, each counting one) per connection.
pub const STREAM_SUBSCRIPTIONS_MAX: usize = 256;
/// WebSocket connections open at once per principal (player or API key); beyond it the
/// upgrade is refused with 429 `too_many_connections`.
pub const STREAM_CONNECTIONS_PER_PRINCIPAL_MAX: usize = 16;
/// WebSocket connections open at once on this gateway; beyond it 503 `overloaded`.
pub const STREAM_CONNECTIONS_MAX: usize = 50_000;
/// Messages queued for one connection before its prices conflate (latest per selection).
pub const STREAM_QUEUE_MESSAGES_MAX: usize = 1_024;
/// Messages other than prices (bets, balances, market status, errors) queued for one connection
/// before it is closed as `slow_consumer`. Prices never overflow: behind the soft limit there
/// is at most one per selection.
pub const STREAM_QUEUE_MESSAGES_HARD_MAX: usize = 4_096;
/// A connection is behind, and its prices conflate, once the oldest message in its queue has
/// waited this long: a client that cannot keep up gets the latest price per selection at most
/// about this late (plus what its socket buffers hold), rather than a queue of old ones.
pub const STREAM_PRICE_AGE_MAX: Duration = Duration::from_millis(250);
/// Frames the writer takes from the queue for one socket write. What it cannot write yet stays
/// in the queue, where it can still be conflated; the writer yields to the runtime between
/// writes, so one connection's backlog cannot hold up HTTP requests or other connections.
pub const STREAM_WRITE_FRAMES_MAX: usize = 64;
/// `SO_SNDBUF` of accepted sockets (Linux doubles it for its bookkeeping, and stops
/// autotuning it). Unbounded, the kernel grows it to megabytes, which hold tens of seconds of
/// prices for a client that has fallen behind: the socket write succeeds, the outbox stays
/// short and nothing conflates. 32 KiB is a few hundred price messages. The gateway cannot
/// tell a stream from an HTTP request at accept, so HTTP responses get it too: they are small,
/// and a larger one takes a few more writes.
pub const STREAM_SOCKET_SEND_BUFFER_BYTES: usize = 32 * 1024;
/// Updates retained for `resume`.
pub const STREAM_RETAINED_UPDATES_MAX: usize = 65_536;
/// Batches of updates (and snapshot reads) waiting for the dispatcher; beyond it updates are
/// lost and every connection resynchronises.
pub const STREAM_DISPATCH_BATCHES_MAX: usize = 4_096;
/// Client requests (subscribe, unsubscribe, resume, close) waiting for the dispatcher.
pub const STREAM_CONTROL_MAX: usize = 16_384;
/// Bytes of one client message (and frame); larger ones close the connection (1009).
pub const STREAM_CLIENT_MESSAGE_BYTES_MAX: usize = 16 * 1024;
/// Client messages per second per connection, with a burst; beyond it `rate_limited`.
pub const STREAM_CLIENT_MESSAGES_PER_SECOND: u32 = 10;
pub const STREAM_CLIENT_MESSAGES_BURST: u32 = 20;
/// A `heartbeat` message and a ping this often.
pub const STREAM_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// A connection that sent nothing (not even a pong) for this long is closed (`idle_timeout`).
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A socket write that takes longer than this drops the connection (the client stopped
/// reading and its buffers are full).
pub const STREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open bets in an account snapshot (the newest).
pub const STREAM_SNAPSHOT_BETS_MAX: usize = 200;

const _: () = assert!(STREAM_QUEUE_MESSAGES_MAX < STREAM_QUEUE_MESSAGES_HARD_MAX);
// The writer takes less than a queue's worth at a time, so a backlog stays conflatable.
const _: () = assert!(0 < STREAM_WRITE_FRAMES_MAX && STREAM_WRITE_FRAMES_MAX < STREAM_QUEUE_MESSAGES_MAX);
// Conflation by age starts long before a stuck write drops the connection.
const _: () = assert!(STREAM_PRICE_AGE_MAX.as_millis() < STREAM_WRITE_TIMEOUT.as_millis());
const _: () = assert!(STREAM_HEARTBEAT_INTERVAL.as_millis() < STREAM_IDLE_TIMEOUT.as_millis());
// A snapshot of every subscription of a connection fits in its queue with room to spare.
const _: () = assert!(STREAM_SUBSCRIPTIONS_MAX < STREAM_QUEUE_MESSAGES_MAX);

/// The stream's limits, in `GatewayConfig::stream`.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub subscriptions_max: usize,
    pub connections_per_principal_max: usize,
    pub connections_max: usize,
    pub queue_messages_max: usize,
    pub queue_messages_hard_max: usize,
    pub price_age_max: Duration,
    pub write_frames_max: usize,
    /// `None` leaves the kernel's autotuning alone.
    pub socket_send_buffer_bytes: Option<usize>,
    pub retained_updates_max: usize,
    pub dispatch_batches_max: usize,
    pub client_message_bytes_max: usize,
    pub client_messages_per_second: u32,
    pub client_messages_burst: u32,
    pub heartbeat_interval: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for StreamConfig {
    fn default() -> StreamConfig {
        StreamConfig {
            subscriptions_max: STREAM_SUBSCRIPTIONS_MAX,
            connections_per_principal_max: STREAM_CONNECTIONS_PER_PRINCIPAL_MAX,
            connections_max: STREAM_CONNECTIONS_MAX,
            queue_messages_max: STREAM_QUEUE_MESSAGES_MAX,
            queue_messages_hard_max: STREAM_QUEUE_MESSAGES_HARD_MAX,
            price_age_max: STREAM_PRICE_AGE_MAX,
            write_frames_max: STREAM_WRITE_FRAMES_MAX,
            socket_send_buffer_bytes: Some(STREAM_SOCKET_SEND_BUFFER_BYTES),
            retained_updates_max: STREAM_RETAINED_UPDATES_MAX,
            dispatch_batches_max: STREAM_DISPATCH_BATCHES_MAX,
            client_message_bytes_max: STREAM_CLIENT_MESSAGE_BYTES_MAX,
            client_messages_per_second: STREAM_CLIENT_MESSAGES_PER_SECOND,
            client_messages_burst: STREAM_CLIENT_MESSAGES_BURST,
            heartbeat_interval: STREAM_HEARTBEAT_INTERVAL,
            idle_timeout: STREAM_IDLE_TIMEOUT,
            write_timeout: STREAM_WRITE_TIMEOUT,
        }
    }
}

/// What `serve` does to every accepted socket, before it knows whether the connection becomes
/// a stream:
/// - `SO_SNDBUF` bounded to `socket_send_buffer_bytes`, so a client that falls behind fills
///   the kernel's buffers within a few hundred messages and the rest waits in its outbox, where
///   prices conflate (see `outbox.rs`), instead of seconds of old prices in the kernel;
/// - `TCP_NODELAY`: hyper and axum leave Nagle's algorithm on, under which a small write waits
///   for the client's acknowledgement of the previous one (which the client may delay by up to
///   40 ms) whenever data is in flight: a second price right after a first would be late.
///   Frames are already batched per write (see `connection.rs`).
///
/// A failure is logged and the connection served anyway, with the kernel's defaults.
pub(crate) fn socket_options(config: &StreamConfig) -> impl FnMut(&mut tokio::net::TcpStream) + Send + 'static {
    let send_buffer_bytes = config.socket_send_buffer_bytes;
    move |stream: &mut tokio::net::TcpStream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on an accepted socket");
        }
        if let Some(bytes) = send_buffer_bytes {
            if let Err(error) = socket2::SockRef::from(&*stream).set_send_buffer_size(bytes) {
                tracing::debug!(%error, bytes, "could not set SO_SNDBUF on an accepted socket");
            }
        }
    }
}

/// One change a subscriber may want, with everything needed to route and render it.
#[derive(Clone, Debug)]
pub(crate) struct Update {
    pub seq: u64,
    pub kind: UpdateKind,
}

#[derive(Clone, Debug)]
pub(crate) enum UpdateKind {
    Price {
        event: EventId,
        market: MarketId,
        selection: SelectionId,
        price: Odds,
        version: u64,
    },
    MarketStatus {
        event: EventId,
        market: MarketId,
        status: MarketStatus,
        in_play: bool,
    },
    Bet {
        account: AccountId,
        currency: Currency,
        bet: book::BetId,
        status: BetStatus,
        payout: Option<Money>,
        rejection: Option<&'static str>,
    },
    Balance {
        account: AccountId,
        wallet: book::Wallet,
    },
    /// A reality check fell due: the session so far.
    RealityCheck {
        account: AccountId,
        currency: Currency,
        session_started_at: book::Timestamp,
        time_played_ms: u64,
        net_minor: i64,
    },
}

/// What flows from the sequencer thread to the dispatcher, in the sequencer's order.
pub(crate) enum Item {
    Updates { committed_at: Instant, updates: Vec<Update> },
    Snapshot(dispatch::SnapshotReady),
}

/// State shared by the hook, the snapshot reads and the dispatcher.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The last stream sequence given out. It starts at the wall clock in microseconds, so
    /// sequences keep increasing across restarts (as long as fewer than a million updates a
    /// second are published on average), and a `resume` with a sequence from an earlier
    /// process is recognised as too old.
    seq: AtomicU64,
    /// Set when an update or a snapshot could not be handed to the dispatcher.
    resync_needed: AtomicBool,
}

impl Shared {
    fn next_seq(&self) -> u64 {
        // Only the sequencer thread writes; others read.
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn current_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

/// The stream's hub: created before the engine (whose hook it provides), started by
/// `AppState::new`. Cheap to clone.
#[derive(Clone)]
pub struct Streams(Arc<StreamsInner>);

struct StreamsInner {
    config: StreamConfig,
    shared: Arc<Shared>,
    metrics: Metrics,
    items: mpsc::Sender<Item>,
    /// Taken by `start`.
    pending: Mutex<Option<mpsc::Receiver<Item>>>,
    control: Mutex<Option<mpsc::Sender<dispatch::Control>>>,
    connections: connection::Connections,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Streams").field("seq", &self.0.shared.current_seq()).finish_non_exhaustive()
    }
}

fn wall_clock_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_micros() as u64)
}

impl Streams {
    /// The hub for a gateway with `config` (its `stream` limits), counting into `metrics`.
    pub fn new(config: &crate::GatewayConfig, metrics: &Metrics) -> Streams {
        let config = config.stream.clone();
        let (items, receiver) = mpsc::channel(config.dispatch_batches_max.max(1));
        let shared =
            Arc::new(Shared { seq: AtomicU64::new(wall_clock_micros()), resync_needed: AtomicBool::new(false) });
        Streams(Arc::new(StreamsInner {
            connections: connection::Connections::new(config.connections_max, config.connections_per_principal_max),
            config,
            shared,
            metrics: metrics.clone(),
            items,
            pending: Mutex::new(Some(receiver)),
            control: Mutex::new(None),
        }))
    }

    pub fn config(&self) -> &StreamConfig {
        &self.0.config
    }

    /// The hook to add to `EngineOptions::on_commit`.
    pub fn engine_hook(&self) -> CommitHook {
        let mut hook = Hook {
            shared: Arc::clone(&self.0.shared),
            items: self.0.items.clone(),
            metrics: self.0.metrics.clone(),
            touched: Vec::new(),
        };
        Box::new(move |committed: &Committed<'_>| hook.on_commit(committed))
    }

    /// Starts the dispatcher on the current runtime (once; later calls do nothing).
    pub(crate) fn start(&self, engine: EngineHandle) {
        let Some(receiver) = self.0.pending.lock().ok().and_then(|mut pending| pending.take()) else { return };
        let (control, requests) = mpsc::channel(STREAM_CONTROL_MAX);
        if let Ok(mut slot) = self.0.control.lock() {
            *slot = Some(control);
        }
        let dispatcher = dispatch::Dispatcher::new(
            self.0.config.clone(),
            Arc::clone(&self.0.shared),
            self.0.metrics.clone(),
            engine,
            self.0.items.clone(),
        );
        tokio::spawn(dispatcher.run(receiver, requests));
    }

    fn control(&self) -> Option<mpsc::Sender<dispatch::Control>> {
        self.0.control.lock().ok().and_then(|control| control.clone())
    }

    /// Closes every connection with `going_away` (at shutdown).
    pub fn close_all(&self) {
        if let Some(control) = self.control() {
            let _ = control.try_send(dispatch::Control::CloseAll);
        }
    }
}

/// The part of the stream that runs on the sequencer thread.
struct Hook {
    shared: Arc<Shared>,
    items: mpsc::Sender<Item>,
    metrics: Metrics,
    /// Accounts whose wallet changed in the batch (reused between batches).
    touched: Vec<AccountId>,
}

impl Hook {
    fn on_commit(&mut self, committed: &Committed<'_>) {
        let book = committed.book;
        let mut updates = Vec::new();
        self.touched.clear();
        for event in committed.events {
            self.collect(book, event, &mut updates);
        }
        // One balance per account per batch: the wallet after the whole batch.
        self.touched.sort_unstable();
        self.touched.dedup();
        for account in &self.touched {
            if let Some(wallet) = book.wallet(*account) {
                updates.push(Update {
                    seq: self.shared.next_seq(),
                    kind: UpdateKind::Balance { account: *account, wallet },
                });
            }
        }
        if updates.is_empty() {
            return;
        }
        let count = updates.len() as u64;
        if self.items.try_send(Item::Updates { committed_at: Instant::now(), updates }).is_err() {
            // The dispatcher is behind (or gone): never wait here, the book would wait too.
            self.shared.resync_needed.store(true, Ordering::Release);
            self.metrics.record_stream_lost(count);
        }
    }

    fn collect(&mut self, book: &Book, event: &BookEvent, updates: &mut Vec<Update>) {
        let shared = &self.shared;
        match event {
            BookEvent::PriceChanged { market, selection, price, version } => {
                let Some(found) = book.market(*market) else { return };
                let kind = UpdateKind::Price {
                    event: found.event,
                    market: *market,
                    selection: *selection,
                    price: *price,
                    version: *version,
                };
                updates.push(Update { seq: shared.next_seq(), kind });
            }
            BookEvent::MarketStatusChanged { market, .. } | BookEvent::MarketCreated { market } => {
                if let Some(found) = book.market(*market) {
                    updates.push(Update { seq: shared.next_seq(), kind: market_status(found) });
                }
            }
            BookEvent::EventStateChanged { event, .. } => {
                // In play (or ended) changes every market of the event.
                let Some(found) = book.events().get(event.index()) else { return };
                for market in found.markets.iter().filter_map(|market| book.market(*market)) {
                    updates.push(Update { seq: shared.next_seq(), kind: market_status(market) });
                }
            }
            BookEvent::BetPlaced { bet, account, status } => self.bet(book, *bet, *account, *status, None, updates),
            BookEvent::BetStatusChanged { bet, account, status, payout } => {
                self.bet(book, *bet, *account, *status, Some(*payout), updates)
            }
            BookEvent::RealityCheckDue { account } => {
                let Some(check) = book.reality_checks().get(*account) else { return };
                let Some(player) = book.players().get(account.index()) else { return };
                let kind = UpdateKind::RealityCheck {
                    account: *account,
                    currency: player.currency,
                    session_started_at: check.session_started_at,
                    time_played_ms: book.now().saturating_sub(check.session_started_at),
                    net_minor: check.net_minor,
                };
                updates.push(Update { seq: shared.next_seq(), kind });
            }
            BookEvent::Transferred(transfer) => {
                for side in [transfer.debit, transfer.credit] {
                    if let AccountKind::PlayerCash(account) | AccountKind::PlayerDebt(account) =
                        book.ledger().account(side).kind
                    {
                        self.touched.push(account);
                    }
                }
            }
            _ => {}
        }
    }

    fn bet(
        &mut self,
        book: &Book,
        bet: book::BetId,
        account: AccountId,
        status: BetStatus,
        payout: Option<Money>,
        updates: &mut Vec<Update>,
    ) {
        let Some(wallet) = book.wallet(account) else { return };
        let rejection = book.bet(bet).and_then(|found| found.rejection);
        let payout = payout.filter(|_| status.is_settled_by_result() || status == BetStatus::CashedOut);
        updates.push(Update {
            seq: self.shared.next_seq(),
            kind: UpdateKind::Bet { account, currency: wallet.currency, bet, status, payout, rejection },
        });
        // A placement holds the stake without a posted transfer: the wallet changed anyway.
        self.touched.push(account);
    }
}

fn market_status(market: &book::Market) -> UpdateKind {
    UpdateKind::MarketStatus { event: market.event, market: market.id, status: market.status, in_play: market.in_play }
}

#[cfg(test)]
mod tests {
    use axum::serve::{Listener, ListenerExt};

    use super::*;

    /// Options are set on each accepted socket (not inherited from the listener): read them
    /// back from the server's side of a real connection.
    #[tokio::test]
    async fn accepted_sockets_get_a_bounded_send_buffer_and_no_delay() {
        // Neither the kernel's default (`tcp_wmem`) nor twice it.
        let set = 24 * 1024;
        let config = StreamConfig { socket_send_buffer_bytes: Some(set), ..StreamConfig::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mut listener = listener.tap_io(socket_options(&config));
        let client = tokio::net::TcpStream::connect(address);
        let ((accepted, _), client) = tokio::join!(Listener::accept(&mut listener), client);
        let _client = client.expect("connect");
        let bytes = socket2::SockRef::from(&accepted).send_buffer_size().expect("SO_SNDBUF");
        // Linux reports twice what was set (its bookkeeping overhead is included).
        assert_eq!(bytes, 2 * set);
        assert!(accepted.nodelay().expect("TCP_NODELAY"));
    }
}
