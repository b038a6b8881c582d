//! WebSocket subscribers on `GET /v1/stream`: players watching a few markets each (drawn by
//! the same Zipf popularity as the bets), reading prices while the bets and the price changes
//! flow, and the delay from sending the request that carried a change to a subscriber
//! reading it.
//!
//! Every price change of a run sets a price no other change set (`UniquePrices`), and the price
//! driver notes in `SendTimes` when it sent the request carrying each price, so a subscriber
//! knows which change a `price` message is from the price alone, whatever the book and the
//! stream did in between (a conflated price is simply never seen).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::http::SportsbookTarget;
use crate::stats::{latency_histogram, Percentiles, PHASE_SIGNIFICANT_DIGITS, SECOND_SIGNIFICANT_DIGITS};
use crate::workload::{parse_price, SplitMix64, Workload, PRICE_MAX};
use crate::LoadgenError;

/// Subscribers of a run at most.
pub const SUBSCRIBERS_MAX: usize = 10_000;
/// Markets one subscriber watches at most (the server allows 256 subscriptions a connection).
pub const SUBSCRIBER_MARKETS_MAX: usize = 64;
/// Stream connections the server allows per credential (`STREAM_CONNECTIONS_PER_PRINCIPAL_MAX`):
/// subscribers are spread over the players so that none has more.
pub const CONNECTIONS_PER_PLAYER_MAX: usize = 16;
/// Handshakes (and first snapshots) in flight while opening the subscribers.
const CONNECT_CONCURRENCY: usize = 32;
/// How long opening one subscriber, up to its first snapshot, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A subscriber's read buffer. tungstenite zeroes the unused part of its read buffer before
/// every socket read (128 KiB by default) and a price message is about 200 bytes: the fan-out
/// benchmark found that memset was half of its load process.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// A closed subscriber connects again after this, as a client would.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// Deliveries a subscriber keeps before handing them to the shared recorder in one lock.
const LOCAL_RECORDS_MAX: usize = 256;

/// When the request carrying each price was sent, by price (ten-thousandths), in nanoseconds
/// since `epoch` plus one (zero: no change set this price).
#[derive(Debug)]
pub struct SendTimes {
    epoch: Instant,
    slots: Vec<AtomicU64>,
}

impl Default for SendTimes {
    fn default() -> SendTimes {
        SendTimes { epoch: Instant::now(), slots: (0..=PRICE_MAX).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl SendTimes {
    /// The request carrying these prices is being sent now.
    pub fn mark(&self, prices: impl IntoIterator<Item = u32>) {
        let now = self.epoch.elapsed().as_nanos() as u64 + 1;
        for price in prices {
            if let Some(slot) = self.slots.get(price as usize) {
                slot.store(now, Ordering::Relaxed);
            }
        }
    }

    /// From sending the change that set `price` to `received`, if a change set it before then.
    fn delay(&self, price: u32, received: Instant) -> Option<Duration> {
        let sent = self.slots.get(price as usize)?.load(Ordering::Relaxed).checked_sub(1)?;
        let received = received.saturating_duration_since(self.epoch).as_nanos() as u64;
        received.checked_sub(sent).map(Duration::from_nanos)
    }
}

#[derive(Clone, Debug)]
pub struct SubscriberOptions {
    /// WebSocket clients; 0 for none.
    pub count: usize,
    /// Markets each one watches, distinct, drawn by Zipf popularity.
    pub markets_each: usize,
}

/// One delivery as a subscriber saw it.
#[derive(Clone, Copy, Debug)]
enum Delivery {
    /// Any message but a price.
    Other,
    /// A price and its delay, or none when no change of the run set that price.
    Price(Option<Duration>),
}

#[derive(Clone, Debug)]
struct PhaseStats {
    messages: u64,
    prices: u64,
    delays: Histogram<u64>,
}

#[derive(Clone, Debug)]
struct SecondStats {
    messages: u64,
    delays: Histogram<u64>,
}

/// Deliveries per phase and per second of the run, placed by when they were read.
#[derive(Debug)]
struct StreamRecorder {
    phase_names: Vec<String>,
    phase_bounds: Vec<(Duration, Duration)>,
    phases: Vec<PhaseStats>,
    seconds: Vec<SecondStats>,
    unmatched_prices: u64,
}

impl StreamRecorder {
    fn new(phases: &[(String, Duration, Duration)], horizon: Duration) -> StreamRecorder {
        let total = phases.last().map_or(Duration::ZERO, |phase| phase.2).max(horizon);
        StreamRecorder {
            phase_names: phases.iter().map(|phase| phase.0.clone()).collect(),
            phase_bounds: phases.iter().map(|phase| (phase.1, phase.2)).collect(),
            phases: phases
                .iter()
                .map(|_| PhaseStats { messages: 0, prices: 0, delays: latency_histogram(PHASE_SIGNIFICANT_DIGITS) })
                .collect(),
            seconds: (0..=total.as_secs())
                .map(|_| SecondStats { messages: 0, delays: latency_histogram(SECOND_SIGNIFICANT_DIGITS) })
                .collect(),
            unmatched_prices: 0,
        }
    }

    /// A delivery read `offset` after the start of the run. After the last phase it belongs to
    /// the last phase (the stream draining what the run sent).
    fn record(&mut self, offset: Duration, delivery: Delivery) {
        let phase = self.phase_bounds.iter().position(|(_, end)| offset < *end).unwrap_or(self.phases.len() - 1);
        let second = (offset.as_secs() as usize).min(self.seconds.len() - 1);
        let (phase, second) = (&mut self.phases[phase], &mut self.seconds[second]);
        phase.messages += 1;
        second.messages += 1;
        if let Delivery::Price(delay) = delivery {
            phase.prices += 1;
            match delay {
                Some(delay) => {
                    let micros = crate::stats::micros(delay);
                    let _ = phase.delays.record(micros);
                    let _ = second.delays.record(micros);
                }
                None => self.unmatched_prices += 1,
            }
        }
    }

    fn phase_report(name: &str, seconds: f64, stats: &PhaseStats) -> StreamPhaseReport {
        StreamPhaseReport {
            name: name.to_string(),
            messages: stats.messages,
            prices: stats.prices,
            messages_per_second: if seconds > 0.0 { stats.messages as f64 / seconds } else { 0.0 },
            delay_ms: Percentiles::of(&stats.delays),
        }
    }

    fn phase_reports(&self) -> Vec<StreamPhaseReport> {
        self.phases
            .iter()
            .zip(&self.phase_names)
            .zip(&self.phase_bounds)
            .map(|((stats, name), (start, end))| Self::phase_report(name, (*end - *start).as_secs_f64(), stats))
            .collect()
    }

    fn total_report(&self) -> StreamPhaseReport {
        let mut total = PhaseStats { messages: 0, prices: 0, delays: latency_histogram(PHASE_SIGNIFICANT_DIGITS) };
        for phase in &self.phases {
            total.messages += phase.messages;
            total.prices += phase.prices;
            total.delays.add(&phase.delays).expect("histograms of the same bounds add");
        }
        let seconds = self.phase_bounds.last().map_or(0.0, |bounds| bounds.1.as_secs_f64());
        Self::phase_report("total", seconds, &total)
    }

    fn second_reports(&self) -> Vec<StreamSecondReport> {
        let used = self.seconds.iter().rposition(|second| second.messages > 0).map_or(0, |last| last + 1);
        self.seconds[..used]
            .iter()
            .enumerate()
            .map(|(second, stats)| StreamSecondReport {
                second: second as u64,
                messages: stats.messages,
                delay_p50_ms: crate::stats::quantile_ms(&stats.delays, 0.50),
                delay_p99_ms: crate::stats::quantile_ms(&stats.delays, 0.99),
            })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamPhaseReport {
    pub name: String,
    /// Every message read (prices, snapshots, heartbeats, status changes, errors).
    pub messages: u64,
    pub prices: u64,
    pub messages_per_second: f64,
    /// From sending the request that carried a change to a subscriber reading it.
    pub delay_ms: Percentiles,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamSecondReport {
    pub second: u64,
    pub messages: u64,
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    pub subscribers: usize,
    pub markets_each: usize,
    /// Connections opened, the first ones included, and the reconnections among them.
    pub connections: u64,
    pub reconnections: u64,
    pub open_at_end: usize,
    pub total: StreamPhaseReport,
    pub phases: Vec<StreamPhaseReport>,
    pub seconds: Vec<StreamSecondReport>,
    /// Why connections ended or failed, and the `error` messages read, by reason: the close
    /// frame's reason (`slow_consumer`, `idle_timeout`, `going_away`), `error <code>`,
    /// `connect <status or error>`, `read error`, `end of stream`.
    pub closes: BTreeMap<String, u64>,
    /// Prices read that no change of the run set (or set only after they were read).
    pub unmatched_prices: u64,
}

/// What the subscriber tasks share.
struct Shared {
    send_times: Arc<SendTimes>,
    recorder: Mutex<StreamRecorder>,
    run_start: OnceLock<Instant>,
    closes: Mutex<BTreeMap<String, u64>>,
    messages: AtomicU64,
    open: AtomicUsize,
    connections: AtomicU64,
    reconnections: AtomicU64,
}

impl Shared {
    fn count_close(&self, reason: String) {
        *self.closes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(reason).or_insert(0) += 1;
    }

    fn flush(&self, records: &mut Vec<(Instant, Delivery)>) {
        let Some(start) = self.run_start.get() else {
            records.clear();
            return;
        };
        let mut recorder = self.recorder.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (received, delivery) in records.drain(..) {
            recorder.record(received.saturating_duration_since(*start), delivery);
        }
    }
}

/// The running subscribers.
pub struct Subscribers {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    stop: tokio::sync::watch::Sender<bool>,
    count: usize,
    markets_each: usize,
}

/// The markets subscriber `index` watches: distinct Zipf ranks from the seed and its index.
pub fn markets_of(workload: &Workload, index: usize, markets_each: usize) -> Vec<usize> {
    let wanted = markets_each.min(workload.options().markets);
    let mut random = SplitMix64::new(workload.options().seed ^ 0x5354_5245_414D ^ (index as u64).rotate_left(24));
    let mut markets: Vec<usize> = Vec::with_capacity(wanted);
    // Zipf draws first (a bettor watches the big matches), then the next ranks if the draws
    // keep hitting the same few markets of a small catalog.
    for _ in 0..wanted * 16 {
        if markets.len() == wanted {
            break;
        }
        let market = workload.zipf().sample(random.next_f64());
        if !markets.contains(&market) {
            markets.push(market);
        }
    }
    let mut next = 0;
    while markets.len() < wanted {
        if !markets.contains(&next) {
            markets.push(next);
        }
        next += 1;
    }
    markets
}

impl Subscribers {
    /// Connects every subscriber and waits for each one's first snapshot. `phases` and `horizon`
    /// are the run's, for placing deliveries by time.
    pub async fn open(
        target: &Arc<SportsbookTarget>,
        workload: &Workload,
        options: &SubscriberOptions,
        send_times: Arc<SendTimes>,
        phases: &[(String, Duration, Duration)],
        horizon: Duration,
    ) -> Result<Subscribers, LoadgenError> {
        let players = target.player_count();
        if options.count > SUBSCRIBERS_MAX {
            return Err(LoadgenError::Config(format!("--subscribers must be at most {SUBSCRIBERS_MAX}")));
        }
        if options.count > players * CONNECTIONS_PER_PLAYER_MAX {
            return Err(LoadgenError::Config(format!(
                "--subscribers {} over {players} players is more than the server's {CONNECTIONS_PER_PLAYER_MAX} \
                 stream connections per player: raise --players",
                options.count
            )));
        }
        if !(1..=SUBSCRIBER_MARKETS_MAX).contains(&options.markets_each) {
            return Err(LoadgenError::Config(format!("--subscriber-markets must be 1 to {SUBSCRIBER_MARKETS_MAX}")));
        }
        let shared = Arc::new(Shared {
            send_times,
            recorder: Mutex::new(StreamRecorder::new(phases, horizon)),
            run_start: OnceLock::new(),
            closes: Mutex::new(BTreeMap::new()),
            messages: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            reconnections: AtomicU64::new(0),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = JoinSet::new();
        let gate = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
        let mut readies = Vec::with_capacity(options.count);
        let url = target.stream_url();
        for index in 0..options.count {
            let markets: Vec<&str> = markets_of(workload, index, options.markets_each)
                .into_iter()
                .map(|rank| target.market_id(rank))
                .collect();
            let subscribe = serde_json::json!({"op": "subscribe", "markets": markets}).to_string();
            let (ready, is_ready) = tokio::sync::oneshot::channel();
            readies.push(is_ready);
            let subscriber = Subscriber {
                shared: shared.clone(),
                target: target.clone(),
                player: index % players,
                url: url.clone(),
                subscribe,
                stop: stopped.clone(),
            };
            let gate = gate.clone();
            tasks.spawn(async move {
                let permit = gate.acquire_owned().await.expect("the gate is never closed");
                subscriber.run(ready, permit).await;
            });
        }
        // In order: by the time one is waited for, the ones before it are in, so a timeout per
        // subscriber is a bound on a stuck one, not on the whole opening.
        for is_ready in readies {
            match tokio::time::timeout(CONNECT_TIMEOUT, is_ready).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => {
                    return Err(LoadgenError::Setup(format!("opening the stream subscribers: {error}")));
                }
                Ok(Err(_)) => {
                    return Err(LoadgenError::Setup("a stream subscriber ended before subscribing".to_string()))
                }
                Err(_) => {
                    return Err(LoadgenError::Setup(format!(
                        "a stream subscriber had no snapshot within {CONNECT_TIMEOUT:?} of subscribing"
                    )))
                }
            }
        }
        Ok(Subscribers { shared, tasks, stop, count: options.count, markets_each: options.markets_each })
    }

    /// Deliveries from now on are placed in the run's phases from `start`.
    pub fn start_run(&self, start: Instant) {
        let _ = self.shared.run_start.set(start);
    }

    /// Messages read so far and connections open, for the progress line.
    pub fn progress_handle(&self) -> impl Fn() -> (u64, usize) + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || (shared.messages.load(Ordering::Relaxed), shared.open.load(Ordering::Relaxed))
    }

    /// Stops every subscriber and reports.
    pub async fn finish(mut self) -> StreamReport {
        let open_at_end = self.shared.open.load(Ordering::Relaxed);
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let recorder = self.shared.recorder.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        StreamReport {
            subscribers: self.count,
            markets_each: self.markets_each,
            connections: self.shared.connections.load(Ordering::Relaxed),
            reconnections: self.shared.reconnections.load(Ordering::Relaxed),
            open_at_end,
            total: recorder.total_report(),
            phases: recorder.phase_reports(),
            seconds: recorder.second_reports(),
            closes: self.shared.closes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone(),
            unmatched_prices: recorder.unmatched_prices,
        }
    }
}

struct Subscriber {
    shared: Arc<Shared>,
    target: Arc<SportsbookTarget>,
    player: usize,
    url: String,
    subscribe: String,
    stop: tokio::sync::watch::Receiver<bool>,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Subscriber {
    /// Connects, subscribes, reads until stopped; connects again after a close. `ready` hears
    /// of the first snapshot (or why there was none) and `permit` is let go with it.
    async fn run(
        mut self,
        ready: tokio::sync::oneshot::Sender<Result<(), String>>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let mut ready = Some((ready, permit));
        let mut records: Vec<(Instant, Delivery)> = Vec::with_capacity(LOCAL_RECORDS_MAX);
        loop {
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await;
            let socket = match connected {
                Ok(Ok(socket)) => socket,
                Ok(Err(reason)) => {
                    self.shared.count_close(format!("connect {reason}"));
                    if let Some((ready, _)) = ready.take() {
                        let _ = ready.send(Err(reason));
                        return;
                    }
                    if self.pause().await {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    self.shared.count_close("connect timeout".to_string());
                    if let Some((ready, _)) = ready.take() {
                        let _ = ready.send(Err("no snapshot within the connect timeout".to_string()));
                        return;
                    }
                    if self.pause().await {
                        return;
                    }
                    continue;
                }
            };
            self.shared.open.fetch_add(1, Ordering::Relaxed);
            let stopped = self.read(socket, &mut ready, &mut records).await;
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            self.shared.flush(&mut records);
            if stopped || self.pause().await {
                return;
            }
        }
    }

    /// Waits before connecting again; true when the run stopped meanwhile.
    async fn pause(&mut self) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_AFTER) => {}
            _ = self.stop.changed() => {}
        }
        let stopped = *self.stop.borrow();
        if !stopped {
            self.shared.reconnections.fetch_add(1, Ordering::Relaxed);
        }
        stopped
    }

    async fn connect(&self) -> Result<Socket, String> {
        let mut request = self.url.as_str().into_client_request().map_err(|error| error.to_string())?;
        let authorization = self.target.player_authorization(self.player);
        let header = tokio_tungstenite::tungstenite::http::HeaderValue::from_bytes(authorization.as_bytes())
            .map_err(|error| error.to_string())?;
        request.headers_mut().insert("authorization", header);
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
        self.shared.connections.fetch_add(1, Ordering::Relaxed);
        let (mut socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true).await.map_err(
            |error| match error {
                tokio_tungstenite::tungstenite::Error::Http(response) => format!("HTTP {}", response.status()),
                other => other.to_string(),
            },
        )?;
        socket.send(Message::text(self.subscribe.clone())).await.map_err(|error| error.to_string())?;
        Ok(socket)
    }

    /// Reads until the connection ends (false) or the run stops (true).
    async fn read(
        &mut self,
        mut socket: Socket,
        ready: &mut Option<(tokio::sync::oneshot::Sender<Result<(), String>>, tokio::sync::OwnedSemaphorePermit)>,
        records: &mut Vec<(Instant, Delivery)>,
    ) -> bool {
        loop {
            let message = tokio::select! {
                message = socket.next() => message,
                _ = self.stop.changed() => {
                    let _ = socket.close(None).await;
                    return true;
                }
            };
            let received = Instant::now();
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    let reason = match frame {
                        Some(frame) if !frame.reason.is_empty() => frame.reason.to_string(),
                        Some(frame) => format!("close {}", u16::from(frame.code)),
                        None => "close without a reason".to_string(),
                    };
                    self.shared.count_close(reason);
                    return false;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) => {
                    self.shared.count_close("read error".to_string());
                    return false;
                }
                None => {
                    self.shared.count_close("end of stream".to_string());
                    return false;
                }
            };
            self.shared.messages.fetch_add(1, Ordering::Relaxed);
            let text = text.as_str();
            let delivery = if text.starts_with(r#"{"type":"price""#) {
                let price = string_field(text, r#""price":""#).and_then(parse_price);
                Delivery::Price(price.and_then(|price| self.shared.send_times.delay(price, received)))
            } else {
                if text.starts_with(r#"{"type":"snapshot""#) {
                    if let Some((ready, _permit)) = ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                } else if text.starts_with(r#"{"type":"error""#) {
                    let code = string_field(text, r#""code":""#).unwrap_or("unknown");
                    self.shared.count_close(format!("error {code}"));
                }
                Delivery::Other
            };
            records.push((received, delivery));
            if records.len() >= LOCAL_RECORDS_MAX {
                self.shared.flush(records);
            }
        }
    }
}

/// The string value of `"name":"..."` in a server message, without parsing the whole message:
/// the server renders compact JSON and the fields read here need no escaping.
fn string_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(name)? + name.len();
    let rest = &text[start..];
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::WorkloadOptions;

    #[test]
    fn a_price_is_found_without_parsing_the_message() {
        let text = r#"{"type":"price","seq":7,"market_id":"mkt_3","event_id":"evt_3","selection_id":"sel_9","price":"2.5013","price_version":4}"#;
        assert_eq!(string_field(text, r#""price":""#).and_then(parse_price), Some(25_013));
        assert_eq!(string_field(text, r#""code":""#), None);
    }

    #[test]
    fn deliveries_land_in_their_phase_and_second_with_their_delay() {
        let ms = Duration::from_millis;
        let phases = vec![("calm".to_string(), ms(0), ms(2_000)), ("spike".to_string(), ms(2_000), ms(3_000))];
        let mut recorder = StreamRecorder::new(&phases, ms(5_000));
        recorder.record(ms(500), Delivery::Price(Some(ms(4))));
        recorder.record(ms(1_500), Delivery::Other);
        recorder.record(ms(2_500), Delivery::Price(Some(ms(40))));
        recorder.record(ms(2_600), Delivery::Price(None));
        // After the schedule: the last phase, drained.
        recorder.record(ms(4_200), Delivery::Price(Some(ms(400))));
        let phases = recorder.phase_reports();
        assert_eq!((phases[0].messages, phases[0].prices), (2, 1));
        assert_eq!((phases[1].messages, phases[1].prices), (3, 3));
        assert!((phases[0].delay_ms.p50 - 4.0).abs() < 0.01, "{:?}", phases[0].delay_ms);
        assert_eq!(phases[1].delay_ms.count, 2);
        assert!((phases[0].messages_per_second - 1.0).abs() < 1e-9);
        assert_eq!(recorder.unmatched_prices, 1);
        let total = recorder.total_report();
        assert_eq!((total.messages, total.delay_ms.count), (5, 3));
        let seconds = recorder.second_reports();
        assert_eq!(seconds.len(), 5);
        assert_eq!(seconds.iter().map(|second| second.messages).collect::<Vec<_>>(), vec![1, 1, 2, 0, 1]);
    }

    #[test]
    fn send_times_tell_the_delay_of_a_price() {
        let times = SendTimes::default();
        let before = Instant::now();
        times.mark([25_013]);
        let later = Instant::now() + Duration::from_millis(30);
        let delay = times.delay(25_013, later).expect("sent");
        assert!(delay >= Duration::from_millis(30) && delay <= later - before, "{delay:?}");
        assert_eq!(times.delay(25_014, later), None, "never sent");
        assert_eq!(times.delay(PRICE_MAX + 1, later), None);
    }

    #[test]
    fn subscribers_watch_distinct_popular_markets() {
        let workload = Workload::new(WorkloadOptions { markets: 1_000, ..WorkloadOptions::default() });
        let mut hottest = 0;
        for index in 0..200 {
            let markets = markets_of(&workload, index, 4);
            let mut distinct = markets.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 4);
            hottest += usize::from(markets.contains(&0));
            assert_eq!(markets, markets_of(&workload, index, 4), "the same from the seed");
        }
        // The hottest market takes about a fifth of the draws: most subscribers watch it.
        assert!(hottest > 80, "{hottest}");
        let tiny = Workload::new(WorkloadOptions { markets: 3, zipf_exponent: 5.0, ..WorkloadOptions::default() });
        assert_eq!(markets_of(&tiny, 0, 8).len(), 3, "no more than the catalog has");
    }
}
