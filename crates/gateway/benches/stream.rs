//! Fan-out benchmark of `GET /v1/stream` (run with `cargo bench -p gateway --bench stream`).
//!
//! Two processes on the same machine, so that each stays under the open-file limit (10,000
//! client sockets and 10,000 server sockets do not fit a 20,000 `ulimit -n` together):
//!
//! - this process (the server): the engine on a temporary data directory (file journal,
//!   fdatasync per batch) and the gateway on a real socket; it creates `MARKETS` markets of two
//!   selections plus one hot market, then runs the load process and waits for it;
//! - the load process (this binary again, `STREAM_BENCH_ROLE=load`): opens the subscribers, each
//!   subscribed to one of the `MARKETS` markets (round robin) and to the hot market, then sends
//!   price changes at a constant rate through `PUT /v1/admin/markets/{id}/prices` (a change hits
//!   the hot market once in `HOT_EVERY`), and measures the delay from sending each change to
//!   each subscriber receiving it.
//!
//! The baseline in the same run is the same load with `BASELINE_SUBSCRIBERS` subscribers.
//! `STREAM_BENCH_SUBSCRIBERS` (default 10,000), `STREAM_BENCH_SECONDS` (default 10) and
//! `STREAM_BENCH_RATE` (changes a second, default 1,000) change the shape.

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
use tokio_tungstenite::tungstenite::Message;

const ADMIN_KEY: &str = "sk_bench_admin";
const MARKETS: usize = 100;
const HOT_EVERY: u64 = 100;
const BASELINE_SUBSCRIBERS: usize = 100;
/// Handshakes in flight while opening subscribers.
const CONNECT_CONCURRENCY: usize = 64;
/// Send times kept per selection, indexed by price version.
const VERSIONS_KEPT: usize = 4_096;

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

    let client = reqwest::Client::new();
    let base = format!("http://{address}");
    let starts_at = gateway::format_rfc3339(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
            + 86_400_000,
    );
    // The hot market first, then the others: "market:selection:selection:version" each.
    let mut markets = Vec::new();
    for index in 0..=MARKETS {
        let event: Value = client
            .post(format!("{base}/v1/admin/events"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"name": format!("Match {index}"), "sport": "football", "starts_at": starts_at}))
            .send()
            .await
            .expect("event")
            .json()
            .await
            .expect("event body");
        let market: Value = client
            .post(format!("{base}/v1/admin/events/{}/markets", event["id"].as_str().expect("event id")))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"name": "Winner", "selections": [{"name": "Home", "price": "2.00"}, {"name": "Away", "price": "2.00"}]}))
            .send()
            .await
            .expect("market")
            .json()
            .await
            .expect("market body");
        let selections = market["selections"].as_array().expect("selections");
        markets.push(format!(
            "{}:{}:{}:{}",
            market["id"].as_str().expect("id"),
            selections[0]["id"].as_str().expect("id"),
            selections[1]["id"].as_str().expect("id"),
            selections[0]["price_version"].as_u64().expect("version"),
        ));
    }
    println!("server: {address}, {} markets (one hot), engine and gateway in this process", markets.len());
    let executable = std::env::current_exe().expect("this executable");
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(executable)
            .env("STREAM_BENCH_ROLE", "load")
            .env("STREAM_BENCH_ADDRESS", address.to_string())
            .env("STREAM_BENCH_MARKETS", markets.join(","))
            .status()
    })
    .await
    .expect("join")
    .expect("run the load process");
    assert!(status.success(), "load process failed: {status}");
    tokio::task::spawn_blocking(move || engine.shutdown()).await.expect("join");
}

// ---- the load process --------------------------------------------------------------------

#[derive(Clone, Debug)]
struct BenchMarket {
    market: String,
    selections: [String; 2],
    selection_ids: [usize; 2],
}

/// One price change to send.
#[derive(Clone, Debug)]
pub struct PriceChange {
    pub market_id: String,
    pub selection_id: String,
    pub price: String,
}

/// How a change reaches the book: `PUT /v1/admin/markets/{id}/prices` here; the feed route
/// (`POST /v1/feed/messages`) can be swapped in with another function of this type.
type SendPrice = Arc<dyn Fn(PriceChange) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

fn admin_prices_sender(base: String) -> SendPrice {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    Arc::new(move |change: PriceChange| {
        let client = client.clone();
        let url = format!("{base}/v1/admin/markets/{}/prices", change.market_id);
        Box::pin(async move {
            let response = client
                .put(url)
                .bearer_auth(ADMIN_KEY)
                .json(&json!({"prices": [{"selection_id": change.selection_id, "price": change.price}]}))
                .send()
                .await
                .map_err(|error| error.to_string())?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("status {}", response.status()))
            }
        })
    })
}

fn id_number(id: &str) -> usize {
    id.rsplit('_').next().and_then(|digits| digits.parse().ok()).expect("an id")
}

/// Send times (nanoseconds since `epoch`, 0 = not sent) by selection id and price version.
struct SendTimes {
    epoch: Instant,
    slots: Vec<AtomicU64>,
}

impl SendTimes {
    fn slot(&self, selection: usize, version: u64) -> &AtomicU64 {
        &self.slots[selection * VERSIONS_KEPT + (version as usize % VERSIONS_KEPT)]
    }
}

struct Phase {
    delays: Histogram<u64>,
    delivered: u64,
    expected: u64,
    seconds: f64,
}

async fn load() {
    let address = std::env::var("STREAM_BENCH_ADDRESS").expect("address");
    let markets: Vec<BenchMarket> = std::env::var("STREAM_BENCH_MARKETS")
        .expect("markets")
        .split(',')
        .map(|entry| {
            let parts: Vec<&str> = entry.split(':').collect();
            BenchMarket {
                market: parts[0].to_string(),
                selections: [parts[1].to_string(), parts[2].to_string()],
                selection_ids: [id_number(parts[1]), id_number(parts[2])],
            }
        })
        .collect();
    let subscribers = env_number("STREAM_BENCH_SUBSCRIBERS", 10_000) as usize;
    let seconds = env_number("STREAM_BENCH_SECONDS", 10);
    let rate = env_number("STREAM_BENCH_RATE", 1_000);
    let base = format!("http://{address}");
    let sender = admin_prices_sender(base.clone());
    let largest = markets.iter().flat_map(|market| market.selection_ids).max().expect("markets");
    let times = Arc::new(SendTimes {
        epoch: Instant::now(),
        slots: (0..(largest + 1) * VERSIONS_KEPT).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut versions: Vec<u64> = vec![0; largest + 1];
    // Every selection starts at the version the server reported.
    let initial: Vec<u64> = std::env::var("STREAM_BENCH_MARKETS")
        .expect("markets")
        .split(',')
        .map(|entry| entry.rsplit(':').next().and_then(|version| version.parse().ok()).expect("version"))
        .collect();
    for (market, version) in markets.iter().zip(&initial) {
        for selection in market.selection_ids {
            versions[selection] = *version;
        }
    }
    println!(
        "load: {} markets of 2 selections + 1 hot market; each subscriber on one market (round robin) and the hot \
         one; {rate} price changes/s through PUT /v1/admin/markets/{{id}}/prices, 1 in {HOT_EVERY} on the hot market",
        markets.len() - 1
    );
    let mut counter = 0u64;
    let baseline = phase(
        &address,
        &markets,
        BASELINE_SUBSCRIBERS,
        5.min(seconds),
        rate,
        &sender,
        &times,
        &mut versions,
        &mut counter,
    )
    .await;
    report("baseline", BASELINE_SUBSCRIBERS, &baseline);
    let full =
        phase(&address, &markets, subscribers, seconds, rate, &sender, &times, &mut versions, &mut counter).await;
    report("fan-out", subscribers, &full);
    let ratio = full.delays.value_at_quantile(0.99) as f64 / baseline.delays.value_at_quantile(0.99).max(1) as f64;
    println!("  p99 with {subscribers} subscribers vs {BASELINE_SUBSCRIBERS}: {ratio:.1}x");
    let text = reqwest::get(format!("{base}/metrics")).await.expect("metrics").text().await.expect("metrics text");
    for name in [
        "sportsbook_stream_messages_total",
        "sportsbook_stream_conflated_total",
        "sportsbook_stream_dropped_total",
        "sportsbook_stream_slow_consumers_total",
        "sportsbook_stream_resyncs_total",
    ] {
        let value = text.lines().find_map(|line| line.strip_prefix(name).map(str::trim)).unwrap_or("?");
        println!("  server {name}: {value}");
    }
}

fn report(name: &str, subscribers: usize, phase: &Phase) {
    let micros = |quantile: f64| Duration::from_micros(phase.delays.value_at_quantile(quantile));
    println!(
        "{name}: {subscribers} subscribers, {:.0} messages/s delivered ({} of {} expected)\n  delay send->receive: p50 {:.2?}  p99 {:.2?}  p99.9 {:.2?}  max {:.2?}",
        phase.delivered as f64 / phase.seconds,
        phase.delivered,
        phase.expected,
        micros(0.5),
        micros(0.99),
        micros(0.999),
        Duration::from_micros(phase.delays.max()),
    );
}

#[allow(clippy::too_many_arguments)]
async fn phase(
    address: &str,
    markets: &[BenchMarket],
    subscribers: usize,
    seconds: u64,
    rate: u64,
    sender: &SendPrice,
    times: &Arc<SendTimes>,
    versions: &mut [u64],
    counter: &mut u64,
) -> Phase {
    let hot = &markets[0];
    let normal = &markets[1..];
    println!("opening {subscribers} subscribers ...");
    let opened = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::with_capacity(subscribers);
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    for index in 0..subscribers {
        let url = format!("ws://{address}/v1/stream?token={ADMIN_KEY}");
        let subscribe =
            json!({"op": "subscribe", "markets": [normal[index % normal.len()].market, hot.market]}).to_string();
        let (times, delivered, ready, stop, gate) =
            (Arc::clone(times), Arc::clone(&delivered), Arc::clone(&ready), Arc::clone(&stop), Arc::clone(&gate));
        tasks.push(tokio::spawn(async move {
            let mut permit = Some(gate.acquire_owned().await.expect("gate"));
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
            socket.send(Message::text(subscribe)).await.expect("subscribe");
            let mut delays: Vec<u64> = Vec::new();
            let mut count = 0u64;
            let mut stopped = std::pin::pin!(stop.notified());
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    message = socket.next() => {
                        let Some(Ok(Message::Text(text))) = message else {
                            if matches!(message, Some(Ok(_))) { continue }
                            break;
                        };
                        let received = times.epoch.elapsed().as_nanos() as u64;
                        let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
                        match value["type"].as_str() {
                            Some("snapshot") => {
                                ready.fetch_add(1, Ordering::Relaxed);
                                // Subscribed: let the next handshake start.
                                permit.take();
                            }
                            Some("price") => {
                                let selection = value["selection_id"].as_str().map(id_number).unwrap_or(0);
                                let version = value["price_version"].as_u64().unwrap_or(0);
                                let sent = times.slot(selection, version).load(Ordering::Relaxed);
                                if sent > 0 && received > sent {
                                    delays.push((received - sent) / 1_000);
                                }
                                count += 1;
                            }
                            _ => {}
                        }
                    }
                }
            }
            delivered.fetch_add(count, Ordering::Relaxed);
            delays
        }));
    }
    while ready.load(Ordering::Relaxed) < subscribers {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("  {subscribers} subscribed in {:.2?}; sending {rate} changes/s for {seconds} s ...", opened.elapsed());
    // Constant rate: one change every 1/rate seconds, each sent without waiting for the last.
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = seconds * rate;
    let mut expected = 0u64;
    let mut in_flight = Vec::with_capacity(total as usize);
    let started = Instant::now();
    for _ in 0..total {
        tick.tick().await;
        *counter += 1;
        let n = *counter;
        let (market, receivers) = if n.is_multiple_of(HOT_EVERY) {
            (hot, subscribers as u64)
        } else {
            let index = (n as usize) % normal.len();
            (&normal[index], (subscribers as u64 / normal.len() as u64) + u64::from(index < subscribers % normal.len()))
        };
        let side = ((n / markets.len() as u64) % 2) as usize;
        let selection = market.selection_ids[side];
        versions[selection] += 1;
        times.slot(selection, versions[selection]).store(times.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
        expected += receivers;
        let change = PriceChange {
            market_id: market.market.clone(),
            selection_id: market.selections[side].clone(),
            price: format!("{}.{:02}", 2 + (n / 100) % 8, n % 100),
        };
        in_flight.push(tokio::spawn(sender(change)));
    }
    for request in in_flight {
        if let Ok(Err(error)) = request.await {
            eprintln!("a price change failed: {error}");
        }
    }
    let sending = started.elapsed();
    // Let the last deliveries arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.notify_waiters();
    let mut delays = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for task in tasks {
        for delay in task.await.expect("subscriber") {
            let _ = delays.record(delay.max(1));
        }
    }
    Phase { delays, delivered: delivered.load(Ordering::Relaxed), expected, seconds: sending.as_secs_f64() }
}
