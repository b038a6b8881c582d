//! HTTP benchmark (run with `cargo bench -p gateway`): single-bet latency sequentially
//! (p50/p99) and bets per second at 64 concurrent connections, through the real stack (engine
//! on a temporary data directory with fdatasync per batch, gateway on a real socket, a reqwest
//! client in the same process). The baseline measured in the same run is `GET /healthz` at the
//! same concurrency: the cost of HTTP alone, against which the bet path is compared.
//!
//! `BENCH_HTTP_SECONDS` (default 10) sets the length of the concurrent phase.

use std::time::{Duration, Instant};

use engine::{EngineOptions, SystemClock};
use gateway::{AppState, GatewayConfig};
use serde_json::{json, Value};

const CONNECTIONS: usize = 64;
const SEQUENTIAL_BETS: usize = 2_000;
const ADMIN_KEY: &str = "sk_bench_admin";

struct Stack {
    base: String,
    client: reqwest::Client,
    tokens: Vec<String>,
    selections: Vec<String>,
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    sorted.get(((sorted.len().max(1) - 1) as f64 * quantile) as usize).copied().unwrap_or_default()
}

async fn call(client: &reqwest::Client, url: String, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut request = if body.is_some() { client.post(url) } else { client.get(url) };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        // Money writes take an idempotency key; a fresh one for each request.
        request = request.json(&body).header("idempotency-key", fresh_key());
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn fresh_key() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!("bench-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

async fn start(dir: &std::path::Path) -> Stack {
    let mut config = GatewayConfig::new(b"bench-secret-bench-secret-bench-secret".to_vec());
    config.admin_key = Some(ADMIN_KEY.to_string());
    // The benchmark measures the book path, not the rate limiter.
    config.rate_limit_per_address = None;
    config.rate_limit_per_principal = None;
    let metrics = gateway::Metrics::new();
    let streams = gateway::Streams::new(&config, &metrics);
    let options =
        EngineOptions { on_commit: vec![metrics.engine_hook(), streams.engine_hook()], ..EngineOptions::default() };
    let path = dir.to_path_buf();
    let (engine, _) = tokio::task::spawn_blocking(move || {
        engine::open_data_dir(&path, book::Config::default(), Box::new(SystemClock), options)
    })
    .await
    .expect("join")
    .expect("open");
    let state = AppState::new(engine, config, metrics, streams).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = gateway::serve(listener, state, std::future::pending()).await;
    });
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().expect("client");

    println!("setting up: {CONNECTIONS} players (argon2 hashing takes a few seconds), 5 matches");
    let mut tokens = Vec::new();
    for index in 0..CONNECTIONS {
        let username = format!("bench{index}");
        let password = "bench password 123";
        let (status, body) = call(&client, format!("{base}/v1/auth/register"), None, Some(json!({
            "username": username, "password": password, "date_of_birth": "1990-01-01", "country": "GB", "currency": "EUR"
        }))).await;
        assert_eq!(status, 201, "{body}");
        let (_, login) = call(
            &client,
            format!("{base}/v1/auth/login"),
            None,
            Some(json!({"username": username, "password": password})),
        )
        .await;
        let token = login["access_token"].as_str().expect("token").to_string();
        let (status, body) = call(
            &client,
            format!("{base}/v1/wallet/deposits"),
            Some(&token),
            Some(json!({"amount": "100000.00", "payment_ref": format!("bench-{username}")})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        tokens.push(token);
    }
    let mut selections = Vec::new();
    let starts_at = gateway::format_rfc3339(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
            + 86_400_000,
    );
    for index in 0..5 {
        let (_, event) = call(
            &client,
            format!("{base}/v1/admin/events"),
            Some(ADMIN_KEY),
            Some(json!({"name": format!("Match {index}"), "sport": "football", "starts_at": starts_at})),
        )
        .await;
        let event_id = event["id"].as_str().expect("event id");
        let (_, market) = call(&client, format!("{base}/v1/admin/events/{event_id}/markets"), Some(ADMIN_KEY), Some(json!({
            "name": "Match result", "selections": [{"name": "Home", "price": "2.10"}, {"name": "Draw", "price": "3.40"}, {"name": "Away", "price": "3.60"}]
        }))).await;
        for selection in market["selections"].as_array().expect("selections") {
            selections.push(selection["id"].as_str().expect("id").to_string());
        }
    }
    Stack { base, client, tokens, selections }
}

fn bet_body(selection: &str) -> Value {
    json!({"type": "single", "legs": [{"selection_id": selection, "price": "2.00"}], "stake": "1.00", "accept_price_changes": "any"})
}

/// Runs `CONNECTIONS` loops for `duration`; returns the latencies of successful requests.
async fn concurrent(stack: &Stack, duration: Duration, bets: bool) -> (Vec<Duration>, u64) {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for connection in 0..CONNECTIONS {
        let client = stack.client.clone();
        let token = stack.tokens[connection].clone();
        let selections = stack.selections.clone();
        let base = stack.base.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            let mut sequence = connection;
            while Instant::now() < deadline {
                let started = Instant::now();
                let ok = if bets {
                    // 90% of bets on the first three selections: a hot market.
                    let selection = if sequence % 10 < 9 {
                        &selections[sequence % 3]
                    } else {
                        &selections[sequence % selections.len()]
                    };
                    let response = client
                        .post(format!("{base}/v1/bets"))
                        .bearer_auth(&token)
                        .header("idempotency-key", fresh_key())
                        .json(&bet_body(selection))
                        .send()
                        .await;
                    response.is_ok_and(|response| response.status().as_u16() == 201)
                } else {
                    let response = client.get(format!("{base}/healthz")).send().await;
                    response.is_ok_and(|response| response.status().is_success())
                };
                if ok {
                    latencies.push(started.elapsed());
                } else {
                    failures += 1;
                }
                sequence += CONNECTIONS;
            }
            (latencies, failures)
        }));
    }
    let mut all = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (latencies, failed) = task.await.expect("task");
        all.extend(latencies);
        failures += failed;
    }
    all.sort();
    (all, failures)
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_HTTP_SECONDS").ok().and_then(|value| value.parse().ok()).unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    runtime.block_on(async {
        let stack = start(dir.path()).await;

        println!("sequential: {SEQUENTIAL_BETS} single bets, one at a time ...");
        let mut latencies = Vec::with_capacity(SEQUENTIAL_BETS);
        for index in 0..SEQUENTIAL_BETS {
            let started = Instant::now();
            let (status, body) = call(
                &stack.client,
                format!("{}/v1/bets", stack.base),
                Some(&stack.tokens[0]),
                Some(bet_body(&stack.selections[index % 3])),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            latencies.push(started.elapsed());
        }
        latencies.sort();
        println!("  p50 {:.2?}  p99 {:.2?}", percentile(&latencies, 0.50), percentile(&latencies, 0.99));

        println!("baseline: GET /healthz at {CONNECTIONS} connections for 3 s ...");
        let (health, _) = concurrent(&stack, Duration::from_secs(3), false).await;
        let health_rate = health.len() as f64 / 3.0;
        println!(
            "  {health_rate:.0} requests/s  p50 {:.2?}  p99 {:.2?}",
            percentile(&health, 0.50),
            percentile(&health, 0.99)
        );

        println!("bets at {CONNECTIONS} connections for {seconds} s (90% on one hot market) ...");
        let (bets, failures) = concurrent(&stack, Duration::from_secs(seconds), true).await;
        let bet_rate = bets.len() as f64 / seconds as f64;
        println!(
            "  {bet_rate:.0} bets/s accepted and durable  p50 {:.2?}  p99 {:.2?}  ({failures} not accepted)",
            percentile(&bets, 0.50),
            percentile(&bets, 0.99)
        );
        println!("  bet path vs HTTP alone: {:.2}x of the /healthz rate", bet_rate / health_rate.max(1.0));
    });
}
