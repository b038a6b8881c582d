//! The sportsbook target: sets up players and markets through the public API, places bets
//! with `POST /v1/bets`, and (with `--price-route admin`) moves prices through the operator
//! route while bets flow; the feed route's setup and price driver are in `provider.rs`.
//!
//! Setup creates its own catalog instead of betting on whatever the demo seeded, so the number
//! of markets, their prices and which ones are hot (Zipf rank → market) are the same as the
//! PostgreSQL baseline's, and a run does not depend on what the demo simulation is doing.
//! One market per event (a match result with three selections), so a multiple's legs on
//! distinct markets are always on distinct events.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{self, StreamExt};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use crate::driver::{progress_bar, Target};
use crate::provider::FeedProvider;
use crate::stats::Outcome;
use crate::subscribers::{SendTimes, SubscriberOptions};
use crate::workload::{
    format_money, format_price, BetKind, BetSpec, Leg, PriceMoves, PriceTable, Workload, SELECTIONS_PER_MARKET,
};
use crate::LoadgenError;

/// Players and markets a run may set up.
pub const PLAYERS_MAX: usize = 10_000;
pub const MARKETS_MAX: usize = 10_000;
/// Registrations and logins in flight during setup: each costs the server an argon2 hash
/// (tens of milliseconds of one core), so more would only queue on its blocking pool.
const SETUP_PASSWORD_CONCURRENCY: usize = 4;
/// Other setup requests in flight (deposits, events, markets).
const SETUP_CONCURRENCY: usize = 32;
/// The largest deposit the book takes by default (`book::Config::deposit_max`, EUR 100,000).
const DEPOSIT_MINOR_MAX: u64 = 10_000_000;
/// Deposits per player at most; a run needing more funds gets `insufficient_funds` rejections.
const DEPOSITS_PER_PLAYER_MAX: u64 = 100;
/// Players get this many times the stakes the run is expected to take from them.
const FUNDING_MARGIN: f64 = 2.0;
/// How long one setup or background request may take: a registration waits for an argon2 hash
/// on a machine that may be busy, and must not fail on the bets' shorter `--timeout`.
const SETUP_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Access tokens live 15 minutes (`GatewayConfig::access_token_ttl`); refresh well before.
const TOKEN_REFRESH_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Refuses anything but a loopback address: the generator is for this machine's own server.
pub fn check_loopback(base_url: &str) -> Result<(), LoadgenError> {
    let url =
        reqwest::Url::parse(base_url).map_err(|error| LoadgenError::Config(format!("--url {base_url}: {error}")))?;
    if url.scheme() != "http" {
        return Err(LoadgenError::Config(format!("--url {base_url}: only http:// to 127.0.0.1 is supported")));
    }
    let host = url.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    let loopback = match host.parse::<IpAddr>() {
        Ok(address) => address.is_loopback(),
        Err(_) => host == "localhost",
    };
    if !loopback {
        return Err(LoadgenError::Config(format!(
            "--url {base_url}: the load generator only targets this machine (127.0.0.1, ::1 or localhost)"
        )));
    }
    Ok(())
}

/// How the run creates its markets and moves their prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceRoute {
    /// As an odds provider: fixtures, markets and `odds_change` messages on
    /// `POST /v1/feed/messages`, batched, with heartbeats.
    Feed,
    /// As an operator: `POST /v1/admin/events`, `.../markets` and one
    /// `PUT /v1/admin/markets/{id}/prices` at a time.
    Admin,
}

#[derive(Clone, Debug)]
pub struct SportsbookOptions {
    /// Setup, prices, subscribers and the first share of the bets go here.
    pub base_url: String,
    /// More base URLs of the same sportsbook (other gateways of a cluster): bets are spread
    /// round-robin per request over `base_url` and these; empty for one server.
    pub extra_urls: Vec<String>,
    pub admin_key: String,
    pub players: usize,
    /// Price changes per second, hot markets most.
    pub price_updates_per_second: f64,
    pub price_route: PriceRoute,
    /// Feed route: one request carries the changes due in this interval.
    pub feed_batch: Duration,
    pub subscribers: SubscriberOptions,
    pub concurrency: usize,
    pub request_timeout: Duration,
    pub progress: bool,
}

pub(crate) struct Player {
    /// The current access token as a ready header value, and the refresh token.
    access: RwLock<(HeaderValue, String)>,
}

impl Player {
    /// `Bearer <access token>`, as it is now.
    pub(crate) fn authorization(&self) -> HeaderValue {
        self.access.read().unwrap_or_else(|poisoned| poisoned.into_inner()).0.clone()
    }
}

pub(crate) struct Market {
    pub(crate) id: String,
    pub(crate) selections: [String; SELECTIONS_PER_MARKET],
}

/// What setup built.
#[derive(Clone, Debug, Serialize)]
pub struct SetupReport {
    pub players: usize,
    pub markets: usize,
    pub price_route: PriceRoute,
    pub deposits_per_player: u64,
    pub deposit_minor: u64,
    pub seconds: f64,
}

/// Examples of retries answered differently kept for the report.
const DIFFERENT_ANSWER_EXAMPLES_MAX: usize = 10;

/// Idempotent retries: a bet sent again with the same key must get the first answer back.
#[derive(Debug, Default)]
struct RetryCounters {
    sent: AtomicU64,
    same_answer: AtomicU64,
    after_shed: AtomicU64,
    different_answer: AtomicU64,
    failed: AtomicU64,
    different_examples: std::sync::Mutex<Vec<String>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RetryReport {
    pub sent: u64,
    /// The retry got the first answer again, byte for byte.
    pub same_answer: u64,
    /// The first answer was not final: shed (429/503: it never reached the book) or 504
    /// `outcome_unknown` (it reached the book, the gateway gave up waiting for it), so the
    /// retry is the first final answer and nothing is compared.
    pub after_shed: u64,
    /// The first answer was final and the retry got another one: an idempotency violation.
    pub different_answer: u64,
    /// The retry itself failed (timeout, transport, shed).
    pub failed: u64,
    /// A few of the differences: first status and code → retry status and code.
    pub different_examples: Vec<String>,
}

pub struct SportsbookTarget {
    client: Client,
    base_url: String,
    /// `POST /v1/bets` of each base URL, taken in turn (`next_bets_url`).
    bets_urls: Vec<String>,
    next_bets_url: AtomicUsize,
    run_id: String,
    players: Vec<Player>,
    markets: Vec<Market>,
    prices: Arc<PriceTable>,
    retries: RetryCounters,
    feed: Option<Arc<FeedProvider>>,
}

impl SportsbookTarget {
    /// Registers, logs in and funds the players and creates the markets.
    pub async fn setup(
        options: &SportsbookOptions,
        workload: &Workload,
        prices: Arc<PriceTable>,
        expected_bets: u64,
    ) -> Result<(SportsbookTarget, SetupReport), LoadgenError> {
        check_loopback(&options.base_url)?;
        for url in &options.extra_urls {
            check_loopback(url)?;
        }
        if !(1..=PLAYERS_MAX).contains(&options.players) {
            return Err(LoadgenError::Config(format!("--players must be 1 to {PLAYERS_MAX}")));
        }
        let markets = workload.options().markets;
        if !(1..=MARKETS_MAX).contains(&markets) {
            return Err(LoadgenError::Config(format!("--markets must be 1 to {MARKETS_MAX}")));
        }
        let started = std::time::Instant::now();
        let base_url = options.base_url.trim_end_matches('/').to_string();
        let client = Client::builder()
            .pool_max_idle_per_host(options.concurrency)
            .tcp_nodelay(true)
            .timeout(options.request_timeout)
            .build()
            .map_err(|error| LoadgenError::Setup(format!("building the HTTP client: {error}")))?;
        let base_urls: Vec<String> = std::iter::once(base_url.clone())
            .chain(options.extra_urls.iter().map(|url| url.trim_end_matches('/').to_string()))
            .collect();
        for url in &base_urls {
            let health = client.get(format!("{url}/healthz")).send().await;
            if !health.as_ref().is_ok_and(|response| response.status().is_success()) {
                return Err(LoadgenError::Setup(format!(
                    "{url}/healthz does not answer 200 ({health:?}); is `sportsbook serve` running there?"
                )));
            }
        }
        // Usernames unique per run, so runs can follow each other on one server.
        let run_id = format!("{:x}", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis()));
        let setup = Setup { client: &client, base_url: &base_url, admin_key: &options.admin_key };

        let funds_needed = expected_bets as f64 * workload.mean_total_stake_minor() / options.players as f64;
        let deposits_per_player = ((funds_needed * FUNDING_MARGIN / DEPOSIT_MINOR_MAX as f64).ceil() as u64)
            .clamp(1, DEPOSITS_PER_PLAYER_MAX);
        let progress = progress_bar(options.progress, options.players as u64, "players");
        let players = setup.players(&run_id, options.players, deposits_per_player, &progress).await?;
        progress.finish_and_clear();
        let progress = progress_bar(options.progress, markets as u64, "markets");
        let (created, feed) = match options.price_route {
            PriceRoute::Admin => (setup.markets(&run_id, markets, &prices, &progress).await?, None),
            PriceRoute::Feed => {
                let provider = Arc::new(FeedProvider::new(client.clone(), &base_url, &options.admin_key));
                // Heartbeats from before the first fixture to the end of the run: a silent
                // provider's markets are suspended.
                provider.start_heartbeats();
                let created =
                    crate::provider::create_markets(&provider, &base_url, &run_id, markets, &prices, &progress).await?;
                (created, Some(provider))
            }
        };
        progress.finish_and_clear();
        let report = SetupReport {
            players: players.len(),
            markets: created.len(),
            price_route: options.price_route,
            deposits_per_player,
            deposit_minor: DEPOSIT_MINOR_MAX,
            seconds: started.elapsed().as_secs_f64(),
        };
        let target = SportsbookTarget {
            bets_urls: base_urls.iter().map(|url| format!("{url}/v1/bets")).collect(),
            next_bets_url: AtomicUsize::new(0),
            client,
            base_url,
            run_id,
            players,
            markets: created,
            prices,
            retries: RetryCounters::default(),
            feed,
        };
        Ok((target, report))
    }

    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// `Bearer <access token>` of player `index`, as it is now.
    pub fn player_authorization(&self, index: usize) -> HeaderValue {
        self.players[index].access.read().unwrap_or_else(|poisoned| poisoned.into_inner()).0.clone()
    }

    /// The book's id of the market of Zipf rank `rank`.
    pub fn market_id(&self, rank: usize) -> &str {
        &self.markets[rank].id
    }

    /// `ws://.../v1/stream` on the same server.
    pub fn stream_url(&self) -> String {
        format!("ws{}/v1/stream", self.base_url.trim_start_matches("http"))
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// The run's odds provider (the feed route).
    pub fn feed(&self) -> Option<&Arc<FeedProvider>> {
        self.feed.as_ref()
    }

    pub fn retry_report(&self) -> RetryReport {
        RetryReport {
            sent: self.retries.sent.load(Ordering::Relaxed),
            same_answer: self.retries.same_answer.load(Ordering::Relaxed),
            after_shed: self.retries.after_shed.load(Ordering::Relaxed),
            different_answer: self.retries.different_answer.load(Ordering::Relaxed),
            failed: self.retries.failed.load(Ordering::Relaxed),
            different_examples: self
                .retries
                .different_examples
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        }
    }

    fn body(&self, bet: &BetSpec) -> String {
        let legs: Vec<String> = bet
            .legs
            .iter()
            .map(|leg| {
                format!(
                    r#"{{"selection_id":"{}","price":"{}"}}"#,
                    self.markets[leg.market].selections[leg.selection],
                    format_price(self.prices.get(*leg))
                )
            })
            .collect();
        let (kind, system) = match bet.kind {
            BetKind::Single => ("single", String::new()),
            BetKind::Multiple => ("multiple", String::new()),
            BetKind::System(system) => ("system", format!(r#","system":"{}""#, system.as_str())),
        };
        format!(
            r#"{{"type":"{kind}"{system},"legs":[{}],"stake":"{}","accept_price_changes":"{}"}}"#,
            legs.join(","),
            format_money(bet.stake_minor),
            bet.policy.as_str()
        )
    }

    async fn send(&self, authorization: HeaderValue, key: &str, body: String) -> Result<Answer, Outcome> {
        // Round-robin per request: a retry goes to the next server, as a client behind a load
        // balancer would, so the shared idempotency is exercised too.
        let turn = self.next_bets_url.fetch_add(1, Ordering::Relaxed) % self.bets_urls.len();
        let response = self
            .client
            .post(&self.bets_urls[turn])
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_TYPE, "application/json")
            .header("idempotency-key", key)
            .body(body)
            .send()
            .await
            .map_err(|error| if error.is_timeout() { Outcome::Timeout } else { Outcome::Transport })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        let body = response
            .bytes()
            .await
            .map_err(|error| if error.is_timeout() { Outcome::Timeout } else { Outcome::Transport })?
            .to_vec();
        Ok(Answer { status, retry_after, body })
    }
}

struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Vec<u8>,
}

/// 429/503: shed before the book. 504 `outcome_unknown`: the bet reached the book but its
/// reply did not come in time; a retry with the same key learns the outcome.
fn is_shed(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 503 | 504)
}

impl Answer {
    fn outcome(&self) -> Outcome {
        let code = || {
            serde_json::from_slice::<Value>(&self.body)
                .ok()
                .and_then(|body| body["error"]["code"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("http_{}", self.status.as_u16()))
        };
        match self.status.as_u16() {
            201 => Outcome::Accepted,
            202 => Outcome::Pending,
            429 | 503 => Outcome::Shed { code: code(), retry_after_seconds: self.retry_after },
            // `outcome_unknown`: no answer in time, like a client-side timeout.
            504 => Outcome::Timeout,
            400..=499 => Outcome::Rejected { code: code() },
            _ => Outcome::Unexpected { code: code() },
        }
    }
}

impl Target for SportsbookTarget {
    async fn place(&self, bet: BetSpec) -> Outcome {
        let player = &self.players[(bet.account_draw % self.players.len() as u64) as usize];
        let authorization = player.access.read().unwrap_or_else(|poisoned| poisoned.into_inner()).0.clone();
        let key = format!("{}-{}", self.run_id, bet.sequence);
        let body = self.body(&bet);
        let retry_body = bet.retry.then(|| body.clone());
        let first = match self.send(authorization.clone(), &key, body).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        if let Some(body) = retry_body {
            // The client did not trust the first answer and sends the same request again: the
            // book must answer with the first reply, not place a second bet. Not counted as a
            // bet or in the latency of the first.
            self.retries.sent.fetch_add(1, Ordering::Relaxed);
            let counter = match self.send(authorization, &key, body).await {
                Ok(_) if is_shed(first.status) => &self.retries.after_shed,
                Ok(again) if again.status == first.status && again.body == first.body => &self.retries.same_answer,
                Ok(again) if is_shed(again.status) => &self.retries.failed,
                Ok(again) => {
                    let mut examples =
                        self.retries.different_examples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if examples.len() < DIFFERENT_ANSWER_EXAMPLES_MAX {
                        examples.push(format!(
                            "{} {:?} -> {} {:?}",
                            first.status,
                            first.outcome(),
                            again.status,
                            again.outcome()
                        ));
                    }
                    &self.retries.different_answer
                }
                Err(_) => &self.retries.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        first.outcome()
    }
}

/// The HTTP calls of setup and of the background drivers, with their bodies.
pub(crate) struct Setup<'a> {
    client: &'a Client,
    base_url: &'a str,
    admin_key: &'a str,
}

impl<'a> Setup<'a> {
    pub(crate) fn new(client: &'a Client, base_url: &'a str, admin_key: &'a str) -> Setup<'a> {
        Setup { client, base_url, admin_key }
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Result<Value, String> {
        let mut request =
            self.client.request(method, format!("{}{path}", self.base_url)).json(&body).timeout(SETUP_REQUEST_TIMEOUT);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request = request.header("idempotency-key", format!("setup-{}", next_setup_key()));
        let response = request.send().await.map_err(|error| format!("{path}: {}", with_causes(&error)))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{path}: {status} {body}"))
        }
    }

    pub(crate) async fn players(
        &self,
        run_id: &str,
        count: usize,
        deposits_per_player: u64,
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<Player>, LoadgenError> {
        let password = format!("loadgen-{run_id}-password");
        let password = password.as_str();
        let logins = (0..count).map(|index| async move {
            let username = format!("lg{run_id}_{index}");
            let registration = json!({
                "username": username, "password": password, "date_of_birth": "1990-01-01",
                "country": "GB", "currency": "EUR"
            });
            self.call(Method::POST, "/v1/auth/register", None, registration).await?;
            let login = json!({"username": username, "password": password});
            let tokens = self.call(Method::POST, "/v1/auth/login", None, login).await?;
            let access = tokens["access_token"].as_str().ok_or("login: no access_token")?.to_string();
            let refresh = tokens["refresh_token"].as_str().ok_or("login: no refresh_token")?.to_string();
            progress.inc(1);
            Ok::<_, String>((access, refresh))
        });
        let tokens: Vec<(String, String)> = stream::iter(logins)
            .buffered(SETUP_PASSWORD_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(LoadgenError::Setup)?;
        // Deposits cost no hashing: many at once.
        let deposits = (0..count).flat_map(|player| (0..deposits_per_player).map(move |deposit| (player, deposit)));
        let tokens_ref = &tokens;
        let deposits = deposits.map(|(player, deposit)| async move {
            let body = json!({
                "amount": format_money(DEPOSIT_MINOR_MAX),
                "payment_ref": format!("loadgen-{run_id}-{player}-{deposit}")
            });
            self.call(Method::POST, "/v1/wallet/deposits", Some(&tokens_ref[player].0), body).await
        });
        stream::iter(deposits)
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(LoadgenError::Setup)?;
        tokens
            .into_iter()
            .map(|(access, refresh)| Ok(Player { access: RwLock::new((bearer(&access)?, refresh)) }))
            .collect()
    }

    async fn markets(
        &self,
        run_id: &str,
        count: usize,
        prices: &PriceTable,
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<Market>, LoadgenError> {
        // A day ahead: pre-match all run long.
        let starts_at = rfc3339(SystemTime::now() + Duration::from_secs(86_400));
        let starts_at = starts_at.as_str();
        let creations = (0..count).map(|rank| async move {
            let event = json!({
                "name": format!("Loadgen {run_id} match {rank}"), "sport": "football",
                "competition": "Loadgen", "starts_at": starts_at
            });
            let event = self.call(Method::POST, "/v1/admin/events", Some(self.admin_key), event).await?;
            let event_id = event["id"].as_str().ok_or("event: no id")?;
            let selections: Vec<Value> = ["Home", "Draw", "Away"]
                .iter()
                .enumerate()
                .map(|(selection, name)| {
                    json!({"name": name, "price": format_price(prices.get(Leg { market: rank, selection }))})
                })
                .collect();
            let path = format!("/v1/admin/events/{event_id}/markets");
            let market = json!({"name": "Match result", "selections": selections});
            let market = self.call(Method::POST, &path, Some(self.admin_key), market).await?;
            let id = market["id"].as_str().ok_or("market: no id")?.to_string();
            let ids: Vec<String> = market["selections"]
                .as_array()
                .ok_or("market: no selections")?
                .iter()
                .filter_map(|selection| selection["id"].as_str().map(str::to_string))
                .collect();
            let selections: [String; SELECTIONS_PER_MARKET] =
                ids.try_into().map_err(|_| "market: not three selections".to_string())?;
            progress.inc(1);
            Ok::<_, String>(Market { id, selections })
        });
        // In rank order: market i of the list is Zipf rank i.
        stream::iter(creations)
            .buffered(SETUP_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(LoadgenError::Setup)
    }
}

/// An error with its chain of causes: reqwest's own message ("error sending request") alone
/// does not say what went wrong.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn bearer(token: &str) -> Result<HeaderValue, LoadgenError> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| LoadgenError::Setup("the server issued a token that is not a header value".to_string()))
}

fn next_setup_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos() as u64);
    now ^ NEXT.fetch_add(1, Ordering::Relaxed).rotate_left(48)
}

/// RFC 3339 UTC with whole seconds, e.g. `2026-11-26T10:00:00Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3_600, rest % 3_600 / 60, rest % 60)
}

/// Moves prices while bets flow with `--price-route admin`: `PUT /v1/admin/markets/{id}/prices`
/// at a constant rate, one request at a time, markets drawn by the same Zipf popularity as the
/// bets (hot markets move most). Bets see a new price once the book has acknowledged it, so
/// some bets with policy `none` meet a price that moved in between and are rejected with
/// `price_changed`, as real bettors are. Each price is unique in the run and its send time
/// goes into `send_times`, for the subscribers.
pub async fn drive_prices(
    target: Arc<SportsbookTarget>,
    workload: Arc<Workload>,
    admin_key: String,
    per_second: f64,
    send_times: Arc<SendTimes>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> PriceDriverReport {
    let mut report = PriceDriverReport::default();
    if per_second <= 0.0 {
        return report;
    }
    let interval = Duration::from_secs_f64(1.0 / per_second);
    let mut moves = PriceMoves::new(workload.options().seed);
    let mut next = tokio::time::Instant::now();
    let setup = Setup { client: &target.client, base_url: &target.base_url, admin_key: &admin_key };
    while !*stop.borrow() {
        tokio::time::sleep_until(next).await;
        next += interval;
        let (market, moved) = moves.next(&workload, &target.prices);
        let prices: Vec<Value> = moved
            .iter()
            .enumerate()
            .map(|(selection, &price)| {
                json!({"selection_id": target.markets[market].selections[selection], "price": format_price(price)})
            })
            .collect();
        let path = format!("/v1/admin/markets/{}/prices", target.markets[market].id);
        report.sent += 1;
        send_times.mark(moved);
        match setup.call(Method::PUT, &path, Some(&admin_key), json!({"prices": prices})).await {
            Ok(_) => {
                report.applied += 1;
                for (selection, price) in moved.into_iter().enumerate() {
                    target.prices.set(Leg { market, selection }, price);
                }
            }
            Err(_) => report.failed += 1,
        }
    }
    report
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PriceDriverReport {
    pub sent: u64,
    pub applied: u64,
    pub failed: u64,
}

/// Keeps every player's access token fresh on runs longer than a token lives.
pub async fn refresh_tokens(target: Arc<SportsbookTarget>, stop: tokio::sync::watch::Receiver<bool>) {
    refresh_players(&target.client, &target.base_url, &target.players, stop).await;
}

/// Refreshes every player's access token every `TOKEN_REFRESH_INTERVAL` until `stop`.
pub(crate) async fn refresh_players(
    client: &Client,
    base_url: &str,
    players: &[Player],
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TOKEN_REFRESH_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        let setup = Setup { client, base_url, admin_key: "" };
        for player in players {
            let refresh = player.access.read().unwrap_or_else(|poisoned| poisoned.into_inner()).1.clone();
            let Ok(tokens) =
                setup.call(Method::POST, "/v1/auth/refresh", None, json!({"refresh_token": refresh})).await
            else {
                continue;
            };
            if let (Some(access), Some(refresh)) = (tokens["access_token"].as_str(), tokens["refresh_token"].as_str()) {
                if let Ok(header) = bearer(access) {
                    *player.access.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                        (header, refresh.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(check_loopback("http://127.0.0.1:8080").is_ok());
        assert!(check_loopback("http://127.0.0.9:1").is_ok());
        assert!(check_loopback("http://[::1]:8080").is_ok());
        assert!(check_loopback("http://localhost:8080/").is_ok());
        for refused in
            ["http://10.0.0.1:8080", "http://example.com", "https://127.0.0.1", "http://0.0.0.0:80", "nonsense"]
        {
            assert!(matches!(check_loopback(refused), Err(LoadgenError::Config(_))), "{refused}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_600_000)), "2026-11-25T09:46:40Z");
    }
}
