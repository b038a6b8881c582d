//! Fan-out benchmark of `GET /v1/stream` (run with `cargo bench -p gateway --bench stream`).
//!
//! Two processes on the same machine, so that each stays under the open-file limit (10,000
//! client sockets and 10,000 server sockets do not fit a 20,000 `ulimit -n` together):
//!
//! - this process (the server): the engine on a temporary data directory (file journal,
//!   fdatasync per batch) and the gateway on a real socket; it runs the load process and waits;
//! - the load process (this binary again, `STREAM_BENCH_ROLE=load`) plays the odds provider and
//!   the subscribers. As the provider it creates fixtures and markets through the native feed
//!   route `POST /v1/feed/messages`, then pushes odds changes there at a constant rate: every
//!   `STREAM_BENCH_BATCH_MS` (default 10) one request carrying the changes of that interval, one
//!   feed message (one sequence) per change, as a push provider batches its stream; and an
//!   `alive` heartbeat every second, so the provider never goes stale. As the subscribers it
//!   opens WebSocket connections and measures, for every price delivered, the delay from the
//!   moment the request carrying that change was sent to the moment the subscriber read it.
//!
//! Each change sets a price that is unique in the run (its number, in ten-thousandths), so a
//! subscriber knows which change it received from the price alone, whatever the book did with
//! versions, and a conflated (skipped) price is simply never seen.
//!
//! Two shapes, each measured with `BASELINE_SUBSCRIBERS` and then with
//! `STREAM_BENCH_SUBSCRIBERS` (default 10,000) subscribers in the same run:
//!
//! - `spread`: `SPREAD_MARKETS` markets; each subscriber watches one (round robin), so a change
//!   reaches about 10 of 10,000 subscribers (the match page a bettor has open);
//! - `hot`: `HOT_MARKETS` markets plus one hot market; each subscriber watches one of the
//!   markets and the hot one, and one change in `HOT_EVERY` is on the hot market, so a change
//!   reaches about 199 of 10,000 subscribers on average.
//!
//! `STREAM_BENCH_SHAPE` (`spread`, `hot` or `both`, the default) picks the shapes,
//! `STREAM_BENCH_SECONDS` (default 10) and `STREAM_BENCH_RATE` (changes a second, default
//! 1,000) the load, and `STREAM_BENCH_SENDER=admin` sends each change as its own
//! `PUT /v1/admin/markets/{id}/prices` instead of through the feed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{EngineOptions, SystemClock};
use futures_util::{SinkExt, StreamExt};
use gateway::{AppState, GatewayConfig};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

const ADMIN_KEY: &str = "sk_bench_admin";
/// The provider's name in feed messages.
const PROVIDER: &str = "bench";
const SPREAD_MARKETS: usize = 1_000;
const HOT_MARKETS: usize = 100;
const HOT_EVERY: u64 = 100;
const BASELINE_SUBSCRIBERS: usize = 100;
/// Handshakes in flight while opening subscribers.
const CONNECT_CONCURRENCY: usize = 64;
/// A subscriber's read buffer (a price message is about 200 bytes).
const CLIENT_READ_BUFFER_BYTES: usize = 4 * 1024;
/// Feed messages per request while creating the catalog.
const SETUP_BATCH: usize = 100;
/// Distinct prices a change can set (2.0000 to 9.9999): change `n` sets price `2 + (n mod
/// PRICE_CODES) / 10,000`, so changes are told apart by price as long as a run sends fewer.
const PRICE_CODES: u64 = 80_000;
const PRICE_TICKS_BASE: u64 = 20_000;
/// How long to wait for the last deliveries once they stop coming.
const SETTLE: Duration = Duration::from_secs(1);
const SETTLE_MAX: Duration = Duration::from_secs(30);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    if std::env::var("STREAM_BENCH_ROLE").as_deref() == Ok("load") {
        runtime.block_on(load());
    } else {
        runtime.block_on(server());
    }
}

// ---- the server process ------------------------------------------------------------------

async fn server() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = GatewayConfig::new(b"bench-secret-bench-secret-bench-secret".to_vec());
    config.admin_key = Some(ADMIN_KEY.to_string());
    // The benchmark measures fan-out, not the rate limiter or the per-credential cap: every
    // subscriber uses the one operator key.
    config.rate_limit_per_address = None;
    config.rate_limit_per_principal = None;
    config.stream.connections_per_principal_max = 100_000;
    let metrics = gateway::Metrics::new();
    let streams = gateway::Streams::new(&config, &metrics);
    let options =
        EngineOptions { on_commit: vec![metrics.engine_hook(), streams.engine_hook()], ..EngineOptions::default() };
    let path = dir.path().to_path_buf();
    let (engine, _) = tokio::task::spawn_blocking(move || {
        engine::open_data_dir(&path, book::Config::default(), Box::new(SystemClock), options)
    })
    .await
    .expect("join")
    .expect("open");
    let state = AppState::new(engine.clone(), config, metrics, streams).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = gateway::serve(listener, state, std::future::pending()).await;
    });
    println!("server: {address}, engine (file journal) and gateway in this process");
    let executable = std::env::current_exe().expect("this executable");
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(executable)
            .env("STREAM_BENCH_ROLE", "load")
            .env("STREAM_BENCH_ADDRESS", address.to_string())
            .status()
    })
    .await
    .expect("join")
    .expect("run the load process");
    assert!(status.success(), "load process failed: {status}");
    tokio::task::spawn_blocking(move || engine.shutdown()).await.expect("join");
}

// ---- the provider ------------------------------------------------------------------------

/// A market as the provider names it and as the book does.
#[derive(Clone, Debug)]
struct BenchMarket {
    /// Provider ids.
    event: String,
    market: String,
    /// Book ids.
    market_id: String,
    selection_ids: [String; 2],
}

const OUTCOMES: [&str; 2] = ["home", "away"];

/// One price change to send.
#[derive(Clone, Debug)]
struct PriceChange {
    market: BenchMarket,
    side: usize,
    price: String,
}

/// For each change of a request, whether the book applied it (`false`: `stale`, `duplicate`
/// or refused; a stale change is one that arrived after a newer one for its market, which the
/// book rightly ignores).
type Sent = Vec<bool>;

/// How changes reach the book: one call carries the changes of one batch interval.
type SendPrice =
    Arc<dyn Fn(Vec<PriceChange>) -> Pin<Box<dyn Future<Output = Result<Sent, String>> + Send>> + Send + Sync>;

/// The provider's message sequence, shared by odds and heartbeats.
struct Provider {
    client: reqwest::Client,
    url: String,
    sequence: AtomicU64,
}

impl Provider {
    fn message(&self, items: Value) -> Value {
        let timestamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        json!({"provider": PROVIDER, "sequence": self.sequence.fetch_add(1, Ordering::Relaxed) + 1, "timestamp": timestamp, "items": items})
    }

    async fn push(&self, messages: Vec<Value>) -> Result<Sent, String> {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"messages": messages}))
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body: Value = response.json().await.map_err(|error| error.to_string())?;
        Ok(body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|result| matches!(result["status"].as_str(), Some("applied" | "heartbeat")))
            .collect())
    }
}

/// The default: `POST /v1/feed/messages`, one feed message (`odds_change`) per change.
fn feed_sender(provider: Arc<Provider>) -> SendPrice {
    Arc::new(move |changes: Vec<PriceChange>| {
        let provider = Arc::clone(&provider);
        let messages: Vec<Value> = changes
            .iter()
            .map(|change| {
                provider.message(json!([{"type": "odds_change", "event": change.market.event, "markets": [
                    {"market": change.market.market, "prices": [{"selection": OUTCOMES[change.side], "price": change.price}]}
                ]}]))
            })
            .collect();
        Box::pin(async move { provider.push(messages).await })
    })
}

/// `PUT /v1/admin/markets/{id}/prices`, one request per change (the operator's route).
fn admin_sender(base: String) -> SendPrice {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    Arc::new(move |changes: Vec<PriceChange>| {
        let (client, base) = (client.clone(), base.clone());
        Box::pin(async move {
            let requests = changes.into_iter().map(|change| {
                client
                    .put(format!("{base}/v1/admin/markets/{}/prices", change.market.market_id))
                    .bearer_auth(ADMIN_KEY)
                    .json(&json!({"prices": [{"selection_id": change.market.selection_ids[change.side], "price": change.price}]}))
                    .send()
            });
            let mut sent = Sent::new();
            for response in futures_util::future::join_all(requests).await {
                sent.push(response.map_err(|error| error.to_string())?.status().is_success());
            }
            Ok(sent)
        })
    })
}

/// Creates `count` fixtures with one two-way market each through the feed, and finds the ids
/// the book gave them.
async fn create_markets(provider: &Provider, base: &str, count: usize) -> Vec<BenchMarket> {
    let starts_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
            + 86_400_000;
    let indices: Vec<usize> = (0..count).collect();
    for chunk in indices.chunks(SETUP_BATCH) {
        let messages = chunk
            .iter()
            .map(|index| {
                provider.message(json!([
                    {"type": "fixture", "event": format!("e{index}"), "name": format!("Bench {index}"), "sport": "football", "starts_at": starts_at},
                    {"type": "market", "event": format!("e{index}"), "market": "winner", "name": "Winner", "kind": "winner",
                     "selections": [{"id": OUTCOMES[0], "name": "Home", "price": "2.00"}, {"id": OUTCOMES[1], "name": "Away", "price": "2.00"}]}
                ]))
            })
            .collect();
        let sent = provider.push(messages).await.expect("create fixtures");
        assert!(sent.iter().all(|applied| *applied), "a fixture was refused");
    }
    // The book's ids, from the catalog (events in creation order, 200 a page).
    let mut found: HashMap<String, (String, [String; 2])> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/events?limit=200");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = provider.client.get(url).send().await.expect("events").json().await.expect("events body");
        for event in page["items"].as_array().expect("items") {
            let market = &event["markets"][0];
            let selection = |side: usize| market["selections"][side]["id"].as_str().expect("selection id").to_string();
            found.insert(
                event["name"].as_str().expect("name").to_string(),
                (market["id"].as_str().expect("market id").to_string(), [selection(0), selection(1)]),
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    (0..count)
        .map(|index| {
            let (market_id, selection_ids) = found.remove(&format!("Bench {index}")).expect("a created market");
            BenchMarket { event: format!("e{index}"), market: "winner".to_string(), market_id, selection_ids }
        })
        .collect()
}

// ---- the load process --------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Spread,
    Hot,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Spread => "spread",
            Shape::Hot => "hot",
        }
    }
}

/// Where changes go and who watches what, for one shape.
struct Plan<'a> {
    shape: Shape,
    /// Normal markets; in `hot`, the hot market is `hot`.
    markets: &'a [BenchMarket],
    hot: &'a BenchMarket,
    /// Changes to normal markets so far (picks the next market round robin).
    normal_changes: u64,
    /// Changes in this phase so far.
    changes: u64,
}

impl Plan<'_> {
    fn subscription(&self, subscriber: usize) -> Vec<&str> {
        let market = self.markets[subscriber % self.markets.len()].market_id.as_str();
        match self.shape {
            Shape::Spread => vec![market],
            Shape::Hot => vec![market, self.hot.market_id.as_str()],
        }
    }

    /// The next change's market and side, and how many of `subscribers` watch it.
    fn next(&mut self, subscribers: usize) -> (&BenchMarket, usize, u64) {
        self.changes += 1;
        if self.shape == Shape::Hot && self.changes.is_multiple_of(HOT_EVERY) {
            let side = ((self.changes / HOT_EVERY) % 2) as usize;
            return (self.hot, side, subscribers as u64);
        }
        self.normal_changes += 1;
        let count = self.markets.len();
        let index = (self.normal_changes as usize) % count;
        let side = ((self.normal_changes / count as u64) % 2) as usize;
        let watchers = (subscribers / count) as u64 + u64::from(index < subscribers % count);
        (&self.markets[index], side, watchers)
    }
}

/// Send times by price code (nanoseconds since `epoch`, 0 = not sent).
struct SendTimes {
    epoch: Instant,
    slots: Vec<AtomicU64>,
}

impl SendTimes {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

fn price_text(code: u64) -> String {
    let ticks = PRICE_TICKS_BASE + code % PRICE_CODES;
    format!("{}.{:04}", ticks / 10_000, ticks % 10_000)
}

/// The price code of a decimal price ("2.0513", "2.05", "3.1"), if it is one a change set.
fn price_code(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut ticks: u64 = whole.parse::<u64>().ok()? * 10_000;
    let mut scale = 1_000;
    for digit in fraction.bytes().take(4) {
        ticks += u64::from(digit.checked_sub(b'0')?) * scale;
        scale /= 10;
    }
    ticks.checked_sub(PRICE_TICKS_BASE).filter(|code| *code < PRICE_CODES)
}

/// The string value of `"name":"..."` in a server message, without parsing the whole message:
/// the server renders compact JSON and none of the fields the benchmark reads needs escaping.
fn string_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(name)? + name.len();
    let rest = &text[start..];
    Some(&rest[..rest.find('"')?])
}

/// What the server counts, before and after a phase.
#[derive(Clone, Copy, Debug, Default)]
struct ServerCounts {
    messages: f64,
    conflated: f64,
    dropped: f64,
    slow_consumers: f64,
    resyncs: f64,
}

async fn server_counts(client: &reqwest::Client, base: &str) -> ServerCounts {
    let text = client.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok()))
            .unwrap_or(f64::NAN)
    };
    ServerCounts {
        messages: value("sportsbook_stream_messages_total"),
        conflated: value("sportsbook_stream_conflated_total"),
        dropped: value("sportsbook_stream_dropped_total"),
        slow_consumers: value("sportsbook_stream_slow_consumers_total"),
        resyncs: value("sportsbook_stream_resyncs_total"),
    }
}

struct Options {
    address: String,
    base: String,
    rate: u64,
    batch: Duration,
    sender: SendPrice,
    times: Arc<SendTimes>,
    client: reqwest::Client,
}

struct Phase {
    delays: Histogram<u64>,
    delivered: u64,
    expected: u64,
    seconds: f64,
    not_applied: u64,
    /// From sending a request to its reply: the changes are durable in the book.
    replies: Histogram<u64>,
    server: ServerCounts,
}

async fn load() {
    let address = std::env::var("STREAM_BENCH_ADDRESS").expect("address");
    let base = format!("http://{address}");
    let subscribers = env_number("STREAM_BENCH_SUBSCRIBERS", 10_000) as usize;
    let seconds = env_number("STREAM_BENCH_SECONDS", 10);
    let rate = env_number("STREAM_BENCH_RATE", 1_000).max(1);
    let batch = Duration::from_millis(env_number("STREAM_BENCH_BATCH_MS", 10).max(1));
    let shapes = match std::env::var("STREAM_BENCH_SHAPE").as_deref() {
        Ok("spread") => vec![Shape::Spread],
        Ok("hot") => vec![Shape::Hot],
        Ok("both") | Err(_) => vec![Shape::Spread, Shape::Hot],
        Ok(other) => panic!("STREAM_BENCH_SHAPE={other}: spread, hot or both"),
    };
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    let provider = Arc::new(Provider {
        client: client.clone(),
        url: format!("{base}/v1/feed/messages"),
        sequence: AtomicU64::new(0),
    });
    let created = Instant::now();
    let markets = create_markets(&provider, &base, SPREAD_MARKETS.max(HOT_MARKETS) + 1).await;
    println!("load: {} fixtures and markets created through the feed in {:.2?}", markets.len(), created.elapsed());
    // A provider proves it is alive between odds, so the book never judges it stale.
    let heartbeats = {
        let provider = Arc::clone(&provider);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let alive = provider.message(json!([{"type": "alive"}]));
                if let Err(error) = provider.push(vec![alive]).await {
                    eprintln!("a heartbeat failed: {error}");
                }
            }
        })
    };
    let (sender, route) = if std::env::var("STREAM_BENCH_SENDER").as_deref() == Ok("admin") {
        (admin_sender(base.clone()), "PUT /v1/admin/markets/{id}/prices, one request per change")
    } else {
        (feed_sender(Arc::clone(&provider)), "POST /v1/feed/messages, one feed message per change")
    };
    let per_batch = rate as f64 * batch.as_secs_f64();
    println!(
        "load: {rate} price changes/s for {seconds} s through {route}, one request every {batch:?} \
         (~{per_batch:.0} changes each); delay from sending the request to a subscriber reading the change"
    );
    let options = Options {
        address,
        base,
        rate,
        batch,
        sender,
        times: Arc::new(SendTimes {
            epoch: Instant::now(),
            slots: (0..PRICE_CODES).map(|_| AtomicU64::new(0)).collect(),
        }),
        client,
    };
    let mut code = 0u64;
    let (hot, rest) = markets.split_last().expect("markets");
    for shape in shapes {
        let plan = |shape| Plan {
            shape,
            markets: match shape {
                Shape::Spread => &rest[..SPREAD_MARKETS],
                Shape::Hot => &rest[..HOT_MARKETS],
            },
            hot,
            normal_changes: 0,
            changes: 0,
        };
        match shape {
            Shape::Spread => println!(
                "\nshape spread: {SPREAD_MARKETS} markets of 2 selections; each subscriber watches one (round robin)"
            ),
            Shape::Hot => println!(
                "\nshape hot: {HOT_MARKETS} markets of 2 selections + 1 hot market; each subscriber watches one \
                 market (round robin) and the hot one; 1 change in {HOT_EVERY} is on the hot market"
            ),
        }
        let baseline = phase(&options, plan(shape), BASELINE_SUBSCRIBERS, 5.min(seconds), &mut code).await;
        report("baseline", BASELINE_SUBSCRIBERS, &baseline);
        let full = phase(&options, plan(shape), subscribers, seconds, &mut code).await;
        report("fan-out", subscribers, &full);
        let ratio = full.delays.value_at_quantile(0.99) as f64 / baseline.delays.value_at_quantile(0.99).max(1) as f64;
        println!("  {} p99 with {subscribers} subscribers vs {BASELINE_SUBSCRIBERS}: {ratio:.1}x", shape.name());
    }
    heartbeats.abort();
}

fn report(name: &str, subscribers: usize, phase: &Phase) {
    let micros = |quantile: f64| Duration::from_micros(phase.delays.value_at_quantile(quantile));
    println!(
        "{name}: {subscribers} subscribers, {:.0} messages/s delivered ({} of {} expected)\n  delay send->receive: \
         p50 {:.2?}  p99 {:.2?}  p99.9 {:.2?}  max {:.2?}\n  server: {} messages written, {} conflated, {} dropped, \
         {} slow consumers, {} resyncs; {} changes not applied by the book",
        phase.delivered as f64 / phase.seconds,
        phase.delivered,
        phase.expected,
        micros(0.5),
        micros(0.99),
        micros(0.999),
        Duration::from_micros(phase.delays.max()),
        phase.server.messages,
        phase.server.conflated,
        phase.server.dropped,
        phase.server.slow_consumers,
        phase.server.resyncs,
        phase.not_applied,
    );
    println!(
        "  feed request send->durable reply: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
        Duration::from_micros(phase.replies.value_at_quantile(0.5)),
        Duration::from_micros(phase.replies.value_at_quantile(0.99)),
        Duration::from_micros(phase.replies.max()),
    );
}

/// Opens `subscribers` subscribers, sends `seconds × rate` changes, and collects the delays.
async fn phase(options: &Options, mut plan: Plan<'_>, subscribers: usize, seconds: u64, code: &mut u64) -> Phase {
    println!("opening {subscribers} subscribers ...");
    let opened = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::with_capacity(subscribers);
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    for index in 0..subscribers {
        let url = format!("ws://{}/v1/stream?token={ADMIN_KEY}", options.address);
        let subscribe = json!({"op": "subscribe", "markets": plan.subscription(index)}).to_string();
        let (times, delivered, ready, stop, gate) = (
            Arc::clone(&options.times),
            Arc::clone(&delivered),
            Arc::clone(&ready),
            Arc::clone(&stop),
            Arc::clone(&gate),
        );
        tasks.push(tokio::spawn(async move {
            let mut permit = Some(gate.acquire_owned().await.expect("gate"));
            // A small read buffer: tungstenite zeroes the unused part of its read buffer before
            // every read (128 KiB by default), which was half the load process's time.
            let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER_BYTES);
            let (mut socket, _) =
                tokio_tungstenite::connect_async_with_config(url, Some(config), false).await.expect("connect");
            socket.send(Message::text(subscribe)).await.expect("subscribe");
            let mut delays: Vec<u64> = Vec::new();
            let mut stopped = std::pin::pin!(stop.notified());
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    message = socket.next() => {
                        let Some(Ok(Message::Text(text))) = message else {
                            if matches!(message, Some(Ok(_))) { continue }
                            break;
                        };
                        let received = times.now();
                        let text = text.as_str();
                        if text.starts_with(r#"{"type":"price""#) {
                            delivered.fetch_add(1, Ordering::Relaxed);
                            let Some(code) = string_field(text, r#""price":""#).and_then(price_code) else { continue };
                            let sent = times.slots[code as usize].load(Ordering::Relaxed);
                            if sent > 0 && received > sent {
                                delays.push((received - sent) / 1_000);
                            }
                        } else if text.starts_with(r#"{"type":"snapshot""#) && permit.is_some() {
                            ready.fetch_add(1, Ordering::Relaxed);
                            // Subscribed: let the next handshake start.
                            permit.take();
                        }
                    }
                }
            }
            delays
        }));
    }
    while ready.load(Ordering::Relaxed) < subscribers {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = server_counts(&options.client, &options.base).await;
    let total = seconds * options.rate;
    println!(
        "  {subscribers} subscribed in {:.2?}; sending {} changes/s for {seconds} s ...",
        opened.elapsed(),
        options.rate
    );
    // Constant rate: every batch interval, the changes due by then in one request, each
    // request sent without waiting for the last.
    let mut tick = tokio::time::interval(options.batch);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut expected = 0u64;
    let mut sent_changes = 0u64;
    let mut in_flight = Vec::new();
    let started = Instant::now();
    let mut progress_at = started + Duration::from_secs(1);
    let mut progress_delivered = 0;
    while sent_changes < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * options.rate as f64) as u64 + 1).min(total);
        let mut changes = Vec::new();
        let mut watchers = Vec::new();
        while sent_changes < due {
            sent_changes += 1;
            *code += 1;
            let (market, side, watching) = plan.next(subscribers);
            watchers.push(watching);
            changes.push((*code, PriceChange { market: market.clone(), side, price: price_text(*code) }));
        }
        if changes.is_empty() {
            continue;
        }
        let now = options.times.now();
        for (code, _) in &changes {
            options.times.slots[(*code % PRICE_CODES) as usize].store(now, Ordering::Relaxed);
        }
        let request = (options.sender)(changes.into_iter().map(|(_, change)| change).collect());
        in_flight.push((
            watchers,
            tokio::spawn(async move {
                let sent = Instant::now();
                let result = request.await;
                (sent.elapsed(), result)
            }),
        ));
        if Instant::now() >= progress_at {
            let now_delivered = delivered.load(Ordering::Relaxed);
            println!(
                "    {:>4.1} s: {sent_changes} changes sent, {} messages delivered in the last second",
                started.elapsed().as_secs_f64(),
                now_delivered - progress_delivered
            );
            progress_delivered = now_delivered;
            progress_at += Duration::from_secs(1);
        }
    }
    // Only changes the book applied are expected to reach anyone.
    let mut not_applied = 0;
    let mut replies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
    for (watchers, request) in in_flight {
        let (took, result) = request.await.expect("join");
        let _ = replies.record((took.as_micros() as u64).max(1));
        match result {
            Ok(sent) => {
                for (watching, applied) in watchers.iter().zip(sent) {
                    if applied {
                        expected += watching;
                    } else {
                        not_applied += 1;
                    }
                }
            }
            Err(error) => eprintln!("a price change failed: {error}"),
        }
    }
    let sending = started.elapsed();
    // Let the last deliveries arrive: until every expected one did, or none came for a while.
    let settle_started = Instant::now();
    let mut last = delivered.load(Ordering::Relaxed);
    while last < expected && settle_started.elapsed() < SETTLE_MAX {
        tokio::time::sleep(SETTLE).await;
        let now = delivered.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let after = server_counts(&options.client, &options.base).await;
    stop.notify_waiters();
    let mut delays = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
    for task in tasks {
        for delay in task.await.expect("subscriber") {
            let _ = delays.record(delay.max(1));
        }
    }
    Phase {
        delays,
        delivered: delivered.load(Ordering::Relaxed),
        expected,
        seconds: sending.as_secs_f64(),
        not_applied,
        replies,
        server: ServerCounts {
            messages: after.messages - before.messages,
            conflated: after.conflated - before.conflated,
            dropped: after.dropped - before.dropped,
            slow_consumers: after.slow_consumers - before.slow_consumers,
            resyncs: after.resyncs - before.resyncs,
        },
    }
}
