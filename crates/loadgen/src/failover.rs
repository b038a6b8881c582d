//! `sportsbook bench-failover`: failover time of a cluster's book under load (issue 15 item 5).
//!
//! Against the gateways of a running cluster (`sportsbook dev-cluster --restart-books`, whose
//! supervisor starts a killed book node again as a follower), it keeps bets flowing at a
//! constant rate, round-robin over the gateways, each bet retried with its idempotency key
//! until it gets a final answer (as a client of a cluster must). Then, `--kills` times: it
//! finds the leader (`GET /v1/admin/cluster`), `kill -9`s it, measures the time from the kill to
//! the first bet accepted by a request sent after the kill (the failover time) and the longest
//! stretch without any accepted bet around the kill (the outage window), and waits until the
//! killed node is back as a follower and caught up before the next kill.
//!
//! At the end it checks what the benchmark is also for: every acknowledged bet is readable on a
//! gateway (`GET /v1/bets/{id}`, none lost), and no bet was applied twice: every bet stakes
//! exactly [`STAKE_MINOR`] and prices never move on the run's own markets, so each player's
//! `pending_stakes` must be [`STAKE_MINOR`] times the bets acknowledged to it, plus at most the
//! bets whose outcome stayed unknown (given up after `--bet-deadline`). A mismatch fails the
//! run (`LoadgenError::Check`); the timings are reported, never asserted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args as ClapArgs;
use futures_util::stream::{self, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, Method};
use serde::Serialize;
use serde_json::{json, Value};

use crate::http::{check_loopback, with_causes, Player, Setup};
use crate::LoadgenError;

/// Every bet's stake (EUR 1.00): the wallets' `pending_stakes` then count the bets exactly.
pub const STAKE_MINOR: u64 = 100;
/// The price of every selection of the run's markets (never moved).
const PRICE: &str = "2.00";
/// Kills at most in one run.
pub const KILLS_MAX: u32 = 1_000;
/// Bets per second at most.
pub const RATE_MAX: f64 = 5_000.0;
/// Players and markets at most (each player costs two argon2 hashes at setup).
pub const PLAYERS_MAX: usize = 1_000;
pub const MARKETS_MAX: usize = 1_000;
/// One HTTP attempt's timeout; a bet is retried with its key after it.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between two attempts of one bet.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How often the cluster view and the acknowledgements are looked at.
const POLL: Duration = Duration::from_millis(10);
const VIEW_POLL: Duration = Duration::from_millis(200);
/// Reads of the final check in flight at once.
const CHECK_CONCURRENCY: usize = 16;
/// Attempts of one read of the final check (a gateway may be briefly unready).
const CHECK_ATTEMPTS: u32 = 50;

/// Flags of `sportsbook bench-failover`.
#[derive(Clone, Debug, ClapArgs)]
pub struct Args {
    /// A gateway's base URL (loopback only); repeat it for each gateway: bets go round-robin.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// An operator key with the admin scope (default: $SPORTSBOOK_ADMIN_KEY).
    #[arg(long)]
    pub admin_key: Option<String>,
    /// Leader kills.
    #[arg(long, default_value_t = 20)]
    pub kills: u32,
    /// Bets offered per second, all through the run.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 20)]
    pub players: usize,
    #[arg(long, default_value_t = 20)]
    pub markets: usize,
    /// Seconds of undisturbed flow before each kill (after the killed node caught up).
    #[arg(long, default_value_t = 2.0)]
    pub steady_seconds: f64,
    /// Seconds a kill may take until a bet is accepted again, and the killed node until it is
    /// back and caught up; past either the run stops with an error.
    #[arg(long, default_value_t = 120.0)]
    pub recovery_timeout: f64,
    /// Seconds one bet is retried with its key before its outcome counts as unknown.
    #[arg(long, default_value_t = 60.0)]
    pub bet_deadline: f64,
    /// Write the result as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// One acknowledged bet.
#[derive(Clone, Debug)]
struct Ack {
    player: usize,
    bet_id: String,
    /// When the attempt that got the 201 was sent, and when the 201 came.
    sent_at: Instant,
    accepted_at: Instant,
}

#[derive(Debug, Default)]
struct Flow {
    acks: Vec<Ack>,
    /// Bets given up after `--bet-deadline` without a final answer, per player.
    unknown: Vec<u64>,
    /// Final rejections by code.
    rejected: std::collections::BTreeMap<String, u64>,
    attempts: u64,
}

/// One kill's measurements.
#[derive(Clone, Debug, Serialize)]
pub struct KillReport {
    pub kill: u32,
    pub killed_pid: u32,
    pub killed_node: String,
    pub new_leader_pid: Option<u32>,
    /// From the kill to the first bet accepted by a request sent after it.
    pub failover_ms: f64,
    /// The longest time without an accepted bet, from a second before the kill to that bet.
    pub outage_window_ms: f64,
    /// From the kill until the killed node was back as a follower at the leader's position.
    pub rejoined_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Quantiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailoverReport {
    pub gateways: Vec<String>,
    pub rate: f64,
    pub kills: Vec<KillReport>,
    pub failover: Quantiles,
    pub outage_window: Quantiles,
    pub bets_acknowledged: u64,
    pub bets_unknown: u64,
    pub bets_rejected: std::collections::BTreeMap<String, u64>,
    pub attempts: u64,
    pub seconds: f64,
    /// Acknowledged bets not readable on a gateway.
    pub lost: u64,
    /// Bets the wallets hold beyond the acknowledged and unknown ones (applied twice).
    pub doubled: u64,
    /// Acknowledged bets the wallets do not hold (lost, seen from the money).
    pub missing_stakes: u64,
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn quantiles(values: impl Iterator<Item = f64>) -> Quantiles {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    Quantiles {
        p50_ms: quantile(&sorted, 0.50),
        p99_ms: quantile(&sorted, 0.99),
        max_ms: sorted.last().copied().unwrap_or(0.0),
    }
}

/// `"123.45"` → 12345 minor units; `None` if it is not such an amount.
pub fn parse_minor(text: &str) -> Option<u64> {
    let (units, cents) = text.split_once('.').unwrap_or((text, "00"));
    if units.is_empty() || cents.len() != 2 || !units.bytes().chain(cents.bytes()).all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    units.parse::<u64>().ok()?.checked_mul(100)?.checked_add(cents.parse::<u64>().ok()?)
}

/// What the final check found, from the per-player counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Discrepancy {
    pub doubled: u64,
    pub missing: u64,
}

/// Compares the bets a wallet holds (`pending_stakes` ÷ [`STAKE_MINOR`]) with what the run
/// knows: `acknowledged` must all be there, plus at most `unknown` more.
pub fn compare_wallet(pending_stakes_minor: u64, acknowledged: u64, unknown: u64) -> Discrepancy {
    let held = pending_stakes_minor / STAKE_MINOR;
    let uneven = u64::from(!pending_stakes_minor.is_multiple_of(STAKE_MINOR));
    Discrepancy {
        doubled: held.saturating_sub(acknowledged + unknown) + uneven,
        missing: acknowledged.saturating_sub(held),
    }
}

struct Bench {
    client: Client,
    gateways: Vec<String>,
    next_gateway: AtomicUsize,
    admin_key: String,
    players: Vec<Player>,
    /// Every selection of the run's markets (bets spread over them: less liability on each).
    selections: Vec<String>,
    run_id: String,
    flow: Mutex<Flow>,
    bet_deadline: Duration,
}

impl Bench {
    fn gateway(&self) -> &str {
        &self.gateways[self.next_gateway.fetch_add(1, Ordering::Relaxed) % self.gateways.len()]
    }

    fn flow(&self) -> std::sync::MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Places bet `sequence`, retrying with its key until a final answer or the deadline.
    async fn bet(&self, sequence: u64) {
        let player = (sequence % self.players.len() as u64) as usize;
        let selection = &self.selections[(sequence % self.selections.len() as u64) as usize];
        let key = format!("failover-{}-{sequence}", self.run_id);
        let body = format!(
            r#"{{"type":"single","legs":[{{"selection_id":"{selection}","price":"{PRICE}"}}],"stake":"1.00","accept_price_changes":"any"}}"#
        );
        let deadline = Instant::now() + self.bet_deadline;
        loop {
            let sent_at = Instant::now();
            self.flow().attempts += 1;
            let response = self
                .client
                .post(format!("{}/v1/bets", self.gateway()))
                .header(AUTHORIZATION, self.players[player].authorization())
                .header(CONTENT_TYPE, "application/json")
                .header("idempotency-key", &key)
                .body(body.clone())
                .send()
                .await;
            if let Ok(response) = response {
                let status = response.status().as_u16();
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                match status {
                    201 => {
                        let accepted_at = Instant::now();
                        let bet_id = answer["id"].as_str().unwrap_or_default().to_string();
                        self.flow().acks.push(Ack { player, bet_id, sent_at, accepted_at });
                        return;
                    }
                    // Shed, overloaded, no leader, outcome unknown: the same key again.
                    429 | 500..=599 => {}
                    _ => {
                        let code =
                            answer["error"]["code"].as_str().map_or_else(|| format!("http_{status}"), str::to_string);
                        *self.flow().rejected.entry(code).or_default() += 1;
                        return;
                    }
                }
            }
            if Instant::now() >= deadline {
                self.flow().unknown[player] += 1;
                return;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// `GET /v1/admin/cluster` on the gateways in turn until one answers.
    async fn view(&self) -> Option<Value> {
        for _ in 0..self.gateways.len() {
            let response = self
                .client
                .get(format!("{}/v1/admin/cluster", self.gateway()))
                .bearer_auth(&self.admin_key)
                .send()
                .await;
            if let Ok(response) = response {
                if response.status().is_success() {
                    if let Ok(view) = response.json::<Value>().await {
                        return Some(view);
                    }
                }
            }
        }
        None
    }

    /// A GET as `player` (or the admin), retried while gateways are briefly unready.
    async fn get(&self, path: &str, token: reqwest::header::HeaderValue) -> Result<(u16, Value), String> {
        let mut last = String::new();
        for _ in 0..CHECK_ATTEMPTS {
            match self.client.get(format!("{}{path}", self.gateway())).header(AUTHORIZATION, token.clone()).send().await
            {
                Ok(response) if response.status().as_u16() == 503 || response.status().as_u16() == 429 => {
                    last = format!("{}", response.status());
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    return Ok((status, response.json().await.unwrap_or(Value::Null)));
                }
                Err(error) => last = with_causes(&error),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{path}: {last}"))
    }
}

/// The leader's pid, node and position in a cluster view.
fn leader(view: &Value) -> Option<(u32, String, u64)> {
    let leader = &view["leader"];
    Some((
        u32::try_from(leader["pid"].as_u64()?).ok()?,
        leader["node"].as_str()?.to_string(),
        leader["position"].as_u64()?,
    ))
}

/// Followers serving as such: (pid, node, position).
fn followers(view: &Value) -> Vec<(u32, String, u64)> {
    view["followers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|node| node["role"] == "follower")
        .filter_map(|node| {
            Some((
                u32::try_from(node["pid"].as_u64()?).ok()?,
                node["node"].as_str()?.to_string(),
                node["position"].as_u64()?,
            ))
        })
        .collect()
}

/// Refuses to signal a process that is not a `sportsbook book` (a stale view's pid reused).
fn check_is_book(pid: u32) -> Result<(), LoadgenError> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|error| LoadgenError::Check(format!("leader pid {pid}: {error}")))?;
    let args: Vec<String> = raw.split(|byte| *byte == 0).map(|arg| String::from_utf8_lossy(arg).into_owned()).collect();
    let is_book =
        args.first().is_some_and(|program| program.ends_with("sportsbook")) && args.iter().any(|arg| arg == "book");
    if is_book {
        Ok(())
    } else {
        Err(LoadgenError::Check(format!("pid {pid} is not a `sportsbook book` process: {}", args.join(" "))))
    }
}

fn kill9(pid: u32) -> Result<(), LoadgenError> {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .map_err(|error| LoadgenError::Check(format!("running kill: {error}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(LoadgenError::Check(format!("kill -9 {pid}: {status}")))
    }
}

fn seconds(value: f64, flag: &str) -> Result<Duration, LoadgenError> {
    Duration::try_from_secs_f64(value).map_err(|_| LoadgenError::Config(format!("--{flag} {value}: not a duration")))
}

/// `sportsbook bench-failover`.
pub fn run(args: &Args) -> Result<(), LoadgenError> {
    if !(1..=KILLS_MAX).contains(&args.kills) {
        return Err(LoadgenError::Config(format!("--kills must be 1 to {KILLS_MAX}")));
    }
    if !(args.rate > 0.0 && args.rate <= RATE_MAX) {
        return Err(LoadgenError::Config(format!("--rate must be above 0 and at most {RATE_MAX}")));
    }
    if !(1..=PLAYERS_MAX).contains(&args.players) || !(1..=MARKETS_MAX).contains(&args.markets) {
        return Err(LoadgenError::Config(format!(
            "--players must be 1 to {PLAYERS_MAX} and --markets 1 to {MARKETS_MAX}"
        )));
    }
    let admin_key = args
        .admin_key
        .clone()
        .or_else(|| std::env::var("SPORTSBOOK_ADMIN_KEY").ok())
        .ok_or_else(|| LoadgenError::Config("give --admin-key or set SPORTSBOOK_ADMIN_KEY".to_string()))?;
    let gateways: Vec<String> = args.urls.iter().map(|url| url.trim_end_matches('/').to_string()).collect();
    for url in &gateways {
        check_loopback(url)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-failover")
        .build()
        .map_err(|error| LoadgenError::Config(format!("starting the tokio runtime: {error}")))?;
    let report = runtime.block_on(run_async(args, gateways, admin_key))?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    println!(
        "failover over {} kills: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; outage window p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        report.kills.len(),
        report.failover.p50_ms,
        report.failover.p99_ms,
        report.failover.max_ms,
        report.outage_window.p50_ms,
        report.outage_window.p99_ms,
        report.outage_window.max_ms
    );
    println!(
        "bets: {} acknowledged, {} unknown, rejected {:?}, {} attempts in {:.0} s; lost {}, doubled {}, missing stakes {}",
        report.bets_acknowledged,
        report.bets_unknown,
        report.bets_rejected,
        report.attempts,
        report.seconds,
        report.lost,
        report.doubled,
        report.missing_stakes
    );
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        std::fs::write(out, text).map_err(|source| LoadgenError::Output { path: out.display().to_string(), source })?;
        println!("result: {}", out.display());
    }
    if report.lost > 0 || report.doubled > 0 || report.missing_stakes > 0 {
        return Err(LoadgenError::Check(format!(
            "{} acknowledged bets lost, {} applied twice, {} acknowledged stakes missing from the wallets",
            report.lost, report.doubled, report.missing_stakes
        )));
    }
    Ok(())
}

async fn run_async(args: &Args, gateways: Vec<String>, admin_key: String) -> Result<FailoverReport, LoadgenError> {
    let started = Instant::now();
    let client = Client::builder()
        .tcp_nodelay(true)
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .map_err(|error| LoadgenError::Setup(format!("building the HTTP client: {error}")))?;
    let run_id = format!("{:x}", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis()));
    let setup = Setup::new(&client, &gateways[0], &admin_key);
    eprintln!("bench-failover: {} players, {} markets on {}", args.players, args.markets, gateways[0]);
    let hidden = indicatif::ProgressBar::hidden();
    // One deposit each, the largest the book takes (EUR 100,000: 100,000 bets).
    let players = setup.players(&run_id, args.players, 1, &hidden).await?;
    let starts_at = crate::http::rfc3339(SystemTime::now() + Duration::from_secs(86_400));
    let mut selections = Vec::with_capacity(args.markets * 3);
    for market in 0..args.markets {
        let event = json!({"name": format!("Failover {run_id} match {market}"), "sport": "football",
            "competition": "Failover bench", "starts_at": starts_at});
        let event =
            setup.call(Method::POST, "/v1/admin/events", Some(&admin_key), event).await.map_err(LoadgenError::Setup)?;
        let event_id = event["id"].as_str().ok_or_else(|| LoadgenError::Setup("event: no id".to_string()))?;
        let body = json!({"name": "Match result", "selections": [
            {"name": "Home", "price": PRICE}, {"name": "Draw", "price": PRICE}, {"name": "Away", "price": PRICE}]});
        let path = format!("/v1/admin/events/{event_id}/markets");
        let created = setup.call(Method::POST, &path, Some(&admin_key), body).await.map_err(LoadgenError::Setup)?;
        for selection in created["selections"].as_array().into_iter().flatten() {
            let id =
                selection["id"].as_str().ok_or_else(|| LoadgenError::Setup("market: no selection id".to_string()))?;
            selections.push(id.to_string());
        }
    }
    let bench = Arc::new(Bench {
        client,
        gateways: gateways.clone(),
        next_gateway: AtomicUsize::new(0),
        admin_key,
        flow: Mutex::new(Flow { unknown: vec![0; players.len()], ..Flow::default() }),
        players,
        selections,
        run_id,
        bet_deadline: seconds(args.bet_deadline, "bet-deadline")?,
    });
    let (stop, stop_receiver) = tokio::sync::watch::channel(false);
    let refresher = {
        let bench = bench.clone();
        let stop = stop_receiver.clone();
        tokio::spawn(async move {
            crate::http::refresh_players(&bench.client, &bench.gateways[0], &bench.players, stop).await;
        })
    };
    // The flow: one bet every 1/rate s, each in its own task (open loop).
    let sender = {
        let bench = bench.clone();
        let stop = stop_receiver.clone();
        let interval = Duration::from_secs_f64(1.0 / args.rate);
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            let mut next = tokio::time::Instant::now();
            let mut sequence = 0u64;
            while !*stop.borrow() {
                tokio::time::sleep_until(next).await;
                next += interval;
                let bench = bench.clone();
                tasks.spawn(async move { bench.bet(sequence).await });
                sequence += 1;
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        })
    };
    let recovery_timeout = seconds(args.recovery_timeout, "recovery-timeout")?;
    let steady = seconds(args.steady_seconds, "steady-seconds")?;
    let mut kills = Vec::new();
    let result = async {
        wait_healthy(&bench, None, recovery_timeout).await?;
        for kill in 1..=args.kills {
            tokio::time::sleep(steady).await;
            let view = bench.view().await.ok_or_else(|| LoadgenError::Check("no gateway answers /v1/admin/cluster".into()))?;
            let (pid, node, _) = leader(&view).ok_or_else(|| LoadgenError::Check(format!("no leader: {view}")))?;
            check_is_book(pid)?;
            eprintln!("bench-failover: kill {kill} of {}: kill -9 {pid} ({node}, the leader)", args.kills);
            kill9(pid)?;
            // After `kill` returned (the process is gone): requests sent before it may have
            // reached the old leader in time.
            let killed_at = Instant::now();
            // The first bet accepted by a request sent after the kill.
            let first = loop {
                let found = bench
                    .flow()
                    .acks
                    .iter()
                    .filter(|ack| ack.sent_at > killed_at)
                    .map(|ack| ack.accepted_at)
                    .min();
                if let Some(first) = found {
                    break first;
                }
                if killed_at.elapsed() > recovery_timeout {
                    return Err(LoadgenError::Check(format!("no bet accepted {recovery_timeout:?} after kill {kill}")));
                }
                tokio::time::sleep(POLL).await;
            };
            // Answers to requests sent before the kill may still come in: a moment for them.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let outage = {
                let flow = bench.flow();
                let from = killed_at.checked_sub(Duration::from_secs(1)).unwrap_or(killed_at);
                let mut times: Vec<Instant> = flow
                    .acks
                    .iter()
                    .map(|ack| ack.accepted_at)
                    .filter(|&at| at >= from && at <= first)
                    .collect();
                times.push(from);
                times.sort();
                times.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or_default()
            };
            let failover_ms = (first - killed_at).as_secs_f64() * 1e3;
            eprintln!(
                "bench-failover: kill {kill} of {}: failover {failover_ms:.0} ms, outage window {:.0} ms; waiting for {node} to rejoin",
                args.kills,
                outage.as_secs_f64() * 1e3
            );
            let new_leader = wait_healthy(&bench, Some((pid, node.clone())), recovery_timeout).await?;
            let report = KillReport {
                kill,
                killed_pid: pid,
                killed_node: node,
                new_leader_pid: new_leader,
                failover_ms,
                outage_window_ms: outage.as_secs_f64() * 1e3,
                rejoined_ms: killed_at.elapsed().as_secs_f64() * 1e3,
            };
            eprintln!(
                "bench-failover: kill {kill} of {}: leader pid {:?}, all book nodes back {:.1} s after the kill",
                args.kills,
                report.new_leader_pid,
                report.rejoined_ms / 1e3
            );
            kills.push(report);
        }
        Ok::<(), LoadgenError>(())
    }
    .await;
    eprintln!("bench-failover: stopping the flow (bets in flight get their final answers) ...");
    let _ = stop.send(true);
    let _ = sender.await;
    let _ = refresher.await;
    result?;
    // The timings first: a failing check below must not hide them.
    let failover = quantiles(kills.iter().map(|kill| kill.failover_ms));
    eprintln!(
        "bench-failover: {} kills: failover p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        kills.len(),
        failover.p50_ms,
        failover.p99_ms,
        failover.max_ms
    );
    let (lost, doubled, missing_stakes) = check(&bench).await?;
    let flow = bench.flow();
    Ok(FailoverReport {
        gateways,
        rate: args.rate,
        failover,
        outage_window: quantiles(kills.iter().map(|kill| kill.outage_window_ms)),
        kills,
        bets_acknowledged: flow.acks.len() as u64,
        bets_unknown: flow.unknown.iter().sum(),
        bets_rejected: flow.rejected.clone(),
        attempts: flow.attempts,
        seconds: started.elapsed().as_secs_f64(),
        lost,
        doubled,
        missing_stakes,
    })
}

/// Waits for a leader and a follower caught up to it; after a kill (`killed`: its pid and node),
/// for a leader other than the killed process and the killed node back (as the new leader, the
/// other node following, or as a follower) with a follower at the position the leader had when
/// both were first seen. Returns the leader's pid.
async fn wait_healthy(
    bench: &Bench,
    killed: Option<(u32, String)>,
    timeout: Duration,
) -> Result<Option<u32>, LoadgenError> {
    let since = Instant::now();
    let mut target: Option<u64> = None;
    let mut last = Value::Null;
    while since.elapsed() < timeout {
        if let Some(view) = bench.view().await {
            if let Some((leader_pid, leader_node, leader_position)) = leader(&view) {
                let back = followers(&view).into_iter().find(|(pid, node, _)| match &killed {
                    Some((killed_pid, killed_node)) => {
                        pid != killed_pid && *pid != leader_pid && (node == killed_node || leader_node == *killed_node)
                    }
                    None => true,
                });
                let leader_ok = killed.as_ref().is_none_or(|(killed_pid, _)| *killed_pid != leader_pid);
                if let (true, Some((_, _, position))) = (leader_ok, back) {
                    let wanted = *target.get_or_insert(leader_position);
                    if position >= wanted {
                        return Ok(Some(leader_pid));
                    }
                }
            }
            last = view;
        }
        tokio::time::sleep(VIEW_POLL).await;
    }
    Err(LoadgenError::Check(format!(
        "the cluster did not get a leader and a caught-up follower in {timeout:?}: {last}"
    )))
}

/// Every acknowledged bet readable, every wallet holding exactly the acknowledged stakes (plus
/// at most the unknown ones): (lost, doubled, missing stakes).
async fn check(bench: &Arc<Bench>) -> Result<(u64, u64, u64), LoadgenError> {
    let acks = bench.flow().acks.clone();
    // The wallets first: they come from the book, the bet reads from the read models.
    let (mut doubled, mut missing) = (0, 0);
    let unknown = bench.flow().unknown.clone();
    for (player, state) in bench.players.iter().enumerate() {
        let acknowledged = acks.iter().filter(|ack| ack.player == player).count() as u64;
        let (status, wallet) = bench.get("/v1/wallet", state.authorization()).await.map_err(LoadgenError::Check)?;
        let pending = wallet["pending_stakes"]
            .as_str()
            .and_then(parse_minor)
            .ok_or_else(|| LoadgenError::Check(format!("player {player}'s wallet: {status} {wallet}")))?;
        let found = compare_wallet(pending, acknowledged, unknown[player]);
        if found.doubled > 0 || found.missing > 0 {
            eprintln!(
                "bench-failover: player {player}: pending stakes {pending} minor for {acknowledged} acknowledged and {} unknown bets",
                unknown[player]
            );
        }
        doubled += found.doubled;
        missing += found.missing;
    }
    eprintln!("bench-failover: wallets: {doubled} bets applied twice, {missing} acknowledged stakes missing");
    // One read alone first: a cluster whose gateways cannot serve bet reads (no projector)
    // fails here at once, naming the cause, instead of retrying every bet.
    if let Some(ack) = acks.first() {
        let token = bench.players[ack.player].authorization();
        bench.get(&format!("/v1/bets/{}", ack.bet_id), token).await.map_err(|error| {
            LoadgenError::Check(format!("acknowledged bets cannot be read back (GET /v1/bets/{{id}}): {error}"))
        })?;
    }
    eprintln!("bench-failover: reading the {} acknowledged bets back ...", acks.len());
    let reads = acks.iter().map(|ack| {
        let bench = bench.clone();
        async move {
            let token = bench.players[ack.player].authorization();
            match bench.get(&format!("/v1/bets/{}", ack.bet_id), token).await {
                Ok((200, body)) if body["id"] == ack.bet_id.as_str() => Ok(false),
                Ok((status, body)) => {
                    eprintln!("bench-failover: bet {} lost: {status} {body}", ack.bet_id);
                    Ok(true)
                }
                Err(error) => Err(LoadgenError::Check(format!("reading bet {}: {error}", ack.bet_id))),
            }
        }
    });
    let lost = stream::iter(reads)
        .buffer_unordered(CHECK_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<bool>, _>>()?
        .into_iter()
        .filter(|lost| *lost)
        .count() as u64;
    Ok((lost, doubled, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(parse_minor("0.00"), Some(0));
        assert_eq!(parse_minor("123.45"), Some(12_345));
        assert_eq!(parse_minor("7"), Some(700));
        for bad in ["", ".5", "1.5", "1.234", "-1.00", "1,00", "x.00"] {
            assert_eq!(parse_minor(bad), None, "{bad}");
        }
    }

    #[test]
    fn wallet_comparison_finds_doubles_and_losses() {
        assert_eq!(compare_wallet(500, 5, 0), Discrepancy { doubled: 0, missing: 0 });
        // Unknown outcomes may or may not be there.
        assert_eq!(compare_wallet(600, 5, 2), Discrepancy { doubled: 0, missing: 0 });
        assert_eq!(compare_wallet(500, 5, 2), Discrepancy { doubled: 0, missing: 0 });
        // One bet applied twice.
        assert_eq!(compare_wallet(600, 5, 0), Discrepancy { doubled: 1, missing: 0 });
        // An acknowledged bet not in the wallet.
        assert_eq!(compare_wallet(400, 5, 0), Discrepancy { doubled: 0, missing: 1 });
        // Not a whole number of stakes: something else was taken.
        assert_eq!(compare_wallet(550, 5, 1), Discrepancy { doubled: 1, missing: 0 });
    }

    #[test]
    fn quantiles_nearest_rank() {
        let report = quantiles((1..=100).map(f64::from));
        assert_eq!((report.p50_ms, report.p99_ms, report.max_ms), (50.0, 99.0, 100.0));
        let report = quantiles([3.0, 1.0, 2.0].into_iter());
        assert_eq!((report.p50_ms, report.p99_ms, report.max_ms), (2.0, 3.0, 3.0));
    }

    #[test]
    fn cluster_view_leader_and_followers() {
        let view = json!({"leader": {"pid": 10, "node": "book-1", "position": 42, "lease_expires_at": null},
            "followers": [{"pid": 11, "node": "book-2", "position": 40, "role": "follower"},
                          {"pid": 12, "node": "book-3", "position": 0, "role": "starting"}]});
        assert_eq!(leader(&view), Some((10, "book-1".to_string(), 42)));
        assert_eq!(followers(&view), vec![(11, "book-2".to_string(), 40)]);
        assert_eq!(leader(&json!({"leader": null, "followers": []})), None);
    }
}
