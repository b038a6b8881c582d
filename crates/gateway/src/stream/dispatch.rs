//! The dispatcher: one task that owns the subscription index and the ring of retained updates,
//! serialises each update once and pushes it into the outbox of every interested connection.
//!
//! It reads two channels: the items from the sequencer thread (update batches and snapshot
//! results, in the sequencer's order) and control requests from the connections. Pushing into
//! an outbox never waits (see `outbox.rs`), so one slow client cannot hold up the others.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use book::{AccountId, Book, EventId, MarketId};
use engine::EngineHandle;
use tokio::sync::mpsc;

use super::outbox::{CloseReason, Frame, Outbox, Pushed};
use super::wire::{self, AccountSnapshot, BalanceView, Key};
use super::{Item, Shared, StreamConfig, Update, UpdateKind, STREAM_SNAPSHOT_BETS_MAX};
use crate::dto::{BetView, MarketView};
use crate::metrics::Metrics;

pub(crate) type ConnectionId = u64;

/// How often the dispatcher looks for a lost batch when no item arrives.
const RESYNC_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Requests from connections.
pub(crate) enum Control {
    Open { connection: ConnectionId, outbox: Arc<Outbox>, account: Option<AccountId> },
    Subscribe { connection: ConnectionId, keys: Vec<Key> },
    Unsubscribe { connection: ConnectionId, keys: Vec<Key> },
    Resume { connection: ConnectionId, seq: u64 },
    Close { connection: ConnectionId },
    CloseAll,
}

/// The result of a snapshot read, made on the sequencer thread.
pub(crate) struct SnapshotReady {
    connection: ConnectionId,
    /// The stream sequence as of the read: every update up to it is in the snapshot.
    seq: u64,
    keys: Vec<Key>,
    markets: Vec<MarketView>,
    account: Option<AccountSnapshot>,
    /// Keys naming nothing in the book.
    missing: Vec<Key>,
}

struct Connection {
    outbox: Arc<Outbox>,
    /// The player's own account, the only account this connection may subscribe to.
    account: Option<AccountId>,
    /// Subscribed and receiving deltas.
    live: HashSet<Key>,
    /// Subscribed, waiting for the snapshot: deltas for these are in the snapshot.
    pending: HashSet<Key>,
    /// Set by `resume` before any subscription: the next subscribe replays from here.
    resume_from: Option<u64>,
}

impl Connection {
    fn subscriptions(&self) -> usize {
        self.live.len() + self.pending.len()
    }

    fn error(&self, code: &str, message: &str) {
        let _ = self.outbox.push_with_seq(|seq| wire::error_json(seq, code, message));
    }
}

/// An update as retained for `resume`: its frame and where it goes.
struct Retained {
    seq: u64,
    keys: [Option<Key>; 2],
    frame: Frame,
}

pub(crate) struct Dispatcher {
    config: StreamConfig,
    shared: Arc<Shared>,
    metrics: Metrics,
    engine: EngineHandle,
    items: mpsc::Sender<Item>,
    connections: HashMap<ConnectionId, Connection>,
    /// Live subscriptions only, with the outbox they deliver to: an update goes to every
    /// outbox under its keys without looking the connection up. Pending subscriptions are not
    /// here (their deltas are in the snapshot to come).
    by_key: HashMap<Key, HashMap<ConnectionId, Arc<Outbox>>>,
    ring: VecDeque<Retained>,
    /// Every update after this sequence is in the ring or still to come: a resume from at
    /// least here can be served by replay.
    complete_after: u64,
    /// The highest sequence dispatched.
    last_seq: u64,
}

impl Dispatcher {
    pub fn new(
        config: StreamConfig,
        shared: Arc<Shared>,
        metrics: Metrics,
        engine: EngineHandle,
        items: mpsc::Sender<Item>,
    ) -> Dispatcher {
        let start = shared.current_seq();
        Dispatcher {
            config,
            shared,
            metrics,
            engine,
            items,
            connections: HashMap::new(),
            by_key: HashMap::new(),
            ring: VecDeque::new(),
            complete_after: start,
            last_seq: start,
        }
    }

    pub async fn run(mut self, mut items: mpsc::Receiver<Item>, mut control: mpsc::Receiver<Control>) {
        let mut check = tokio::time::interval(RESYNC_CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Control first: a subscription registered before the next batch is dispatched
                // gets that batch's deltas (or they are in its snapshot).
                biased;
                request = control.recv() => match request {
                    Some(request) => self.control(request),
                    None => return,
                },
                item = items.recv() => match item {
                    Some(item) => {
                        self.resync_if_lost();
                        self.item(item);
                    }
                    None => return,
                },
                _ = check.tick() => self.resync_if_lost(),
            }
        }
    }

    fn control(&mut self, request: Control) {
        match request {
            Control::Open { connection, outbox, account } => {
                self.connections.insert(
                    connection,
                    Connection { outbox, account, live: HashSet::new(), pending: HashSet::new(), resume_from: None },
                );
            }
            Control::Subscribe { connection, keys } => self.subscribe(connection, keys),
            Control::Unsubscribe { connection, keys } => {
                let Some(state) = self.connections.get_mut(&connection) else { return };
                let mut removed = 0;
                for key in keys {
                    if state.live.remove(&key) {
                        removed += 1;
                        unindex(&mut self.by_key, key, connection);
                    } else if state.pending.remove(&key) {
                        removed += 1;
                    }
                }
                self.metrics.record_stream_subscriptions(-(removed as i64));
            }
            Control::Resume { connection, seq } => {
                let Some(state) = self.connections.get_mut(&connection) else { return };
                if state.subscriptions() > 0 {
                    state.error("invalid_request", "resume must come before the first subscribe on a connection");
                } else {
                    state.resume_from = Some(seq);
                }
            }
            Control::Close { connection } => {
                if let Some(state) = self.connections.remove(&connection) {
                    for key in &state.live {
                        unindex(&mut self.by_key, *key, connection);
                    }
                    self.metrics.record_stream_subscriptions(-(state.subscriptions() as i64));
                }
            }
            Control::CloseAll => {
                for state in self.connections.values() {
                    state.outbox.close(CloseReason::GoingAway);
                }
            }
        }
    }

    fn subscribe(&mut self, connection: ConnectionId, keys: Vec<Key>) {
        let Some(state) = self.connections.get_mut(&connection) else { return };
        if let Some(Key::Account(account)) = keys.iter().find(|key| matches!(key, Key::Account(_))) {
            if state.account != Some(*account) {
                state.error("forbidden", "only a player token may subscribe to its own account");
                return;
            }
        }
        let new: Vec<Key> =
            keys.into_iter().filter(|key| !state.live.contains(key) && !state.pending.contains(key)).collect();
        if new.is_empty() {
            return;
        }
        if state.subscriptions() + new.len() > self.config.subscriptions_max {
            let message = format!("at most {} subscriptions per connection", self.config.subscriptions_max);
            state.error("too_many_subscriptions", &message);
            return;
        }
        self.metrics.record_stream_subscriptions(new.len() as i64);
        // A resume that the ring still covers is served by replaying what was missed.
        let resume_from = state.resume_from.take();
        if let Some(from) = resume_from.filter(|from| *from >= self.complete_after && *from <= self.last_seq) {
            let now = Instant::now();
            for retained in self.ring.iter().filter(|retained| retained.seq > from) {
                if retained.keys.iter().flatten().any(|key| new.contains(key)) {
                    deliver(&state.outbox, retained.frame.clone(), now, &self.metrics);
                }
            }
            for key in &new {
                self.by_key.entry(*key).or_default().insert(connection, Arc::clone(&state.outbox));
            }
            state.live.extend(new);
            return;
        }
        state.pending.extend(new.iter().copied());
        self.request_snapshot(connection, new);
    }

    /// Asks the sequencer for a snapshot of `keys`. The read sends its result down the items
    /// channel, behind every batch committed before it.
    fn request_snapshot(&mut self, connection: ConnectionId, keys: Vec<Key>) {
        let shared = Arc::clone(&self.shared);
        let items = self.items.clone();
        let currency_of = keys.clone();
        let read = move |book: &Book| {
            let seq = shared.current_seq();
            let ready = snapshot(book, connection, seq, currency_of);
            if items.try_send(Item::Snapshot(ready)).is_err() {
                shared.resync_needed.store(true, Ordering::Release);
            }
        };
        if self.engine.read_async(read).is_err() {
            // The book is overloaded or stopped: say so and forget these subscriptions; the
            // client may subscribe again.
            if let Some(state) = self.connections.get_mut(&connection) {
                state.error("overloaded", "the book is busy; subscribe again shortly");
                // Pending subscriptions are not in the index yet.
                for key in &keys {
                    state.pending.remove(key);
                }
                self.metrics.record_stream_subscriptions(-(keys.len() as i64));
            }
        }
    }

    fn item(&mut self, item: Item) {
        match item {
            Item::Updates { committed_at, updates } => {
                // One clock read for the batch: it is queued everywhere within a moment.
                let now = Instant::now();
                for update in updates {
                    self.dispatch(update, committed_at, now);
                }
            }
            Item::Snapshot(ready) => self.snapshot_ready(ready),
        }
    }

    fn dispatch(&mut self, update: Update, committed_at: Instant, now: Instant) {
        let seq = update.seq;
        self.last_seq = self.last_seq.max(seq);
        let (keys, frame) = render(&update, committed_at);
        // The index holds live subscriptions only: a pending one gets this in its snapshot.
        let first = keys[0].and_then(|key| self.by_key.get(&key));
        for outbox in first.into_iter().flat_map(HashMap::values) {
            deliver(outbox, frame.clone(), now, &self.metrics);
        }
        if let Some(second) = keys[1].and_then(|key| self.by_key.get(&key)) {
            // Subscribed to both the market and its event: one copy.
            for (connection, outbox) in second {
                if !first.is_some_and(|first| first.contains_key(connection)) {
                    deliver(outbox, frame.clone(), now, &self.metrics);
                }
            }
        }
        self.ring.push_back(Retained { seq, keys, frame });
        while self.ring.len() > self.config.retained_updates_max {
            if let Some(evicted) = self.ring.pop_front() {
                self.complete_after = evicted.seq;
            }
        }
    }

    fn snapshot_ready(&mut self, ready: SnapshotReady) {
        let Some(state) = self.connections.get_mut(&ready.connection) else { return };
        // Only keys still pending: an unsubscribe may have come first.
        let keys: Vec<Key> = ready.keys.iter().copied().filter(|key| state.pending.remove(key)).collect();
        if keys.is_empty() {
            return;
        }
        let message = wire::SnapshotMessage {
            kind: "snapshot",
            seq: ready.seq,
            markets: &ready.markets,
            account: ready.account.as_ref(),
        };
        let text = wire::to_json(&message);
        deliver(
            &state.outbox,
            Frame { text: Utf8Bytes::from(text), seq: ready.seq, committed_at: None, selection: None },
            Instant::now(),
            &self.metrics,
        );
        let mut missing = 0;
        for key in keys {
            if ready.missing.contains(&key) {
                missing += 1;
                let message = match key {
                    Key::Market(market) => format!("market {market} not found"),
                    Key::Event(event) => format!("event {event} not found"),
                    Key::Account(account) => format!("account {account} not found"),
                };
                state.error("not_found", &message);
            } else {
                state.live.insert(key);
                self.by_key.entry(key).or_default().insert(ready.connection, Arc::clone(&state.outbox));
            }
        }
        self.metrics.record_stream_subscriptions(-missing);
    }

    /// After a lost batch or snapshot, nobody can trust their state: every subscription of
    /// every connection gets a fresh snapshot, and resumes from before now are refused.
    fn resync_if_lost(&mut self) {
        if !self.shared.resync_needed.swap(false, Ordering::Acquire) {
            return;
        }
        self.ring.clear();
        self.complete_after = self.shared.current_seq();
        self.last_seq = self.last_seq.max(self.complete_after);
        let connections: Vec<ConnectionId> = self.connections.keys().copied().collect();
        for connection in connections {
            let Some(state) = self.connections.get_mut(&connection) else { continue };
            for key in &state.live {
                unindex(&mut self.by_key, *key, connection);
            }
            let keys: Vec<Key> = state.live.drain().chain(state.pending.drain()).collect();
            if keys.is_empty() {
                continue;
            }
            state.pending.extend(keys.iter().copied());
            self.metrics.record_stream_resync();
            self.request_snapshot(connection, keys);
        }
    }
}

fn unindex(by_key: &mut HashMap<Key, HashMap<ConnectionId, Arc<Outbox>>>, key: Key, connection: ConnectionId) {
    if let Some(connections) = by_key.get_mut(&key) {
        connections.remove(&connection);
        if connections.is_empty() {
            by_key.remove(&key);
        }
    }
}

fn deliver(outbox: &Outbox, frame: Frame, now: Instant, metrics: &Metrics) {
    match outbox.push(frame, now) {
        Pushed::Queued | Pushed::Closed => {}
        Pushed::Conflated { replaced } => metrics.record_stream_conflated(replaced as u64),
        Pushed::Overflowed { dropped } => metrics.record_stream_slow_consumer(dropped as u64),
    }
}

/// The keys an update is routed by, and its frame, serialised once.
fn render(update: &Update, committed_at: Instant) -> ([Option<Key>; 2], Frame) {
    let seq = update.seq;
    let mut selection = None;
    let (keys, text) = match &update.kind {
        UpdateKind::Price { event, market, selection: id, price, version } => {
            selection = Some(*id);
            let message = wire::PriceMessage {
                kind: "price",
                seq,
                market_id: &market.to_string(),
                event_id: &event.to_string(),
                selection_id: &id.to_string(),
                price: &price.decimal(),
                price_version: *version,
            };
            ([Some(Key::Market(*market)), Some(Key::Event(*event))], wire::to_json(&message))
        }
        UpdateKind::MarketStatus { event, market, status, in_play } => {
            let message = wire::MarketStatusMessage {
                kind: "market_status",
                seq,
                market_id: &market.to_string(),
                event_id: &event.to_string(),
                status: status.as_str(),
                in_play: *in_play,
            };
            ([Some(Key::Market(*market)), Some(Key::Event(*event))], wire::to_json(&message))
        }
        UpdateKind::Bet { account, currency, bet, status, payout, rejection } => {
            let message = wire::BetMessage {
                kind: "bet",
                seq,
                bet_id: &bet.to_string(),
                status: status.as_str(),
                payout: payout.map(|payout| currency.format(payout)),
                rejection_code: *rejection,
            };
            ([Some(Key::Account(*account)), None], wire::to_json(&message))
        }
        UpdateKind::Balance { account, wallet } => {
            let message = wire::BalanceMessage { kind: "balance", seq, balance: BalanceView::of(wallet) };
            ([Some(Key::Account(*account)), None], wire::to_json(&message))
        }
        UpdateKind::RealityCheck { account, currency, session_started_at, time_played_ms, net_minor } => {
            let message = wire::RealityCheckMessage {
                kind: "reality_check",
                seq,
                session_started_at: crate::time::format_rfc3339(*session_started_at),
                time_played_seconds: time_played_ms / 1_000,
                net_position: crate::reality::signed_money(*currency, *net_minor),
            };
            ([Some(Key::Account(*account)), None], wire::to_json(&message))
        }
    };
    (keys, Frame { text: Utf8Bytes::from(text), seq, committed_at: Some(committed_at), selection })
}

/// Reads what `keys` name, on the sequencer thread: bounded by the subscription limit, the
/// markets of an event (`MARKETS_PER_EVENT_MAX`) and `STREAM_SNAPSHOT_BETS_MAX`.
fn snapshot(book: &Book, connection: ConnectionId, seq: u64, keys: Vec<Key>) -> SnapshotReady {
    let mut markets = Vec::new();
    let mut account = None;
    let mut missing = Vec::new();
    let mut seen: HashSet<MarketId> = HashSet::new();
    for key in &keys {
        match *key {
            Key::Market(market) => match book.market(market) {
                Some(found) => {
                    if seen.insert(market) {
                        markets.push(MarketView::of(book, found));
                    }
                }
                None => missing.push(*key),
            },
            Key::Event(EventId(id)) => match book.events().get(EventId(id).index()).filter(|event| event.id.0 == id) {
                Some(event) => {
                    for found in event.markets.iter().filter_map(|market| book.market(*market)) {
                        if seen.insert(found.id) {
                            markets.push(MarketView::of(book, found));
                        }
                    }
                }
                None => missing.push(*key),
            },
            Key::Account(id) => match book.wallet(id) {
                Some(wallet) => {
                    let open_bets = book
                        .bets_of(id)
                        .iter()
                        .rev()
                        .filter_map(|bet| book.bet(*bet))
                        .filter(|bet| bet.status.is_open())
                        .take(STREAM_SNAPSHOT_BETS_MAX)
                        .map(|bet| BetView::of(&bet, wallet.currency, false))
                        .collect();
                    account = Some(AccountSnapshot { balance: BalanceView::of(&wallet), open_bets });
                }
                None => missing.push(*key),
            },
        }
    }
    SnapshotReady { connection, seq, keys, markets, account, missing }
}
