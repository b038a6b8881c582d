//! The soak through HTTP against a running `sportsbook serve`: players registered, logged in
//! and funded through the API (`POST /v1/wallet/deposits`, again when low), markets created
//! with `POST /v1/admin/events` and `.../markets`, settled with
//! `POST /v1/admin/markets/{id}/settle`, bets placed with `POST /v1/bets` (each with its own
//! `Idempotency-Key`, as a client sends it).
//!
//! What the server tells: its resident memory from `/proc/PID/status` (`--server-pid`, or the
//! one process whose command line holds `serve` and the URL's port), and from `/metrics` the
//! longest sequencer pause per scrape (`sportsbook_sequencer_pause_seconds_interval_max`: this
//! generator must be its only scraper), snapshots by writer, and the projector's lag and rows
//! when the server exports them (`sportsbook_projector_lag_records`,
//! `sportsbook_projector_lag_seconds`, `sportsbook_projector_rows_total`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method};
use serde::Serialize;
use serde_json::{json, Value};

use super::{process_memory, MarketIds, SoakBet, SoakTarget, TargetSample, SELECTIONS};
use crate::http::{check_loopback, with_causes, Player, Setup, PLAYERS_MAX};
use crate::stats::Outcome;
use crate::workload::{format_money, format_price};
use crate::LoadgenError;

/// Time allowed for one scrape of `/metrics`.
const METRICS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct HttpTargetOptions {
    pub base_url: String,
    /// `/metrics` (default: on the base URL).
    pub metrics_url: Option<String>,
    /// `SPORTSBOOK_METRICS_KEY`, when the server requires one.
    pub metrics_key: Option<String>,
    pub admin_key: String,
    pub players: usize,
    pub concurrency: usize,
    pub request_timeout: Duration,
    /// The server's process, for its memory; `None`: looked for by command line.
    pub server_pid: Option<u32>,
    pub progress: bool,
}

/// What setup built, for the result file.
#[derive(Clone, Debug, Serialize)]
pub struct HttpSetup {
    pub base_url: String,
    pub metrics_url: String,
    pub players: usize,
    pub server_pid: Option<u32>,
    pub setup_seconds: f64,
}

pub struct HttpTarget {
    client: Client,
    base_url: String,
    bets_url: String,
    metrics_url: String,
    metrics_key: Option<String>,
    admin_key: String,
    run_id: String,
    players: Arc<Vec<Player>>,
    server_pid: Option<u32>,
    stop_refresh: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("HttpTarget").field("base_url", &self.base_url).finish()
    }
}

/// The one process whose command line holds `serve` and `:PORT` (Linux), if exactly one does.
pub fn find_server_pid(base_url: &str) -> Option<u32> {
    let port = reqwest::Url::parse(base_url).ok()?.port_or_known_default()?;
    let needle = format!(":{port}");
    let own = std::process::id();
    let found: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|bytes| {
                let words: Vec<String> =
                    bytes.split(|byte| *byte == 0).map(|word| String::from_utf8_lossy(word).into_owned()).collect();
                words.iter().any(|word| word == "serve") && words.iter().any(|word| word.ends_with(&needle))
            })
        })
        .collect();
    match found.as_slice() {
        [pid] => Some(*pid),
        _ => None,
    }
}

impl HttpTarget {
    /// Registers and logs in the players (their deposits are the soak's own).
    pub async fn open(options: &HttpTargetOptions) -> Result<(HttpTarget, HttpSetup), LoadgenError> {
        check_loopback(&options.base_url)?;
        if !(1..=PLAYERS_MAX).contains(&options.players) {
            return Err(LoadgenError::Config(format!("--players must be 1 to {PLAYERS_MAX} over HTTP")));
        }
        let began = std::time::Instant::now();
        let base_url = options.base_url.trim_end_matches('/').to_string();
        let metrics_url = options.metrics_url.clone().unwrap_or_else(|| format!("{base_url}/metrics"));
        check_loopback(&metrics_url)?;
        let client = Client::builder()
            .pool_max_idle_per_host(options.concurrency)
            .tcp_nodelay(true)
            .timeout(options.request_timeout)
            .build()
            .map_err(|error| LoadgenError::Setup(format!("building the HTTP client: {error}")))?;
        let health = client.get(format!("{base_url}/healthz")).send().await;
        if !health.as_ref().is_ok_and(|response| response.status().is_success()) {
            return Err(LoadgenError::Setup(format!(
                "{base_url}/healthz does not answer 200 ({health:?}); is `sportsbook serve` running there?"
            )));
        }
        let run_id =
            format!("s{:x}", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis()));
        let progress = crate::driver::progress_bar(options.progress, options.players as u64, "players");
        let players =
            Setup::new(&client, &base_url, &options.admin_key).players(&run_id, options.players, 0, &progress).await?;
        progress.finish_and_clear();
        let players = Arc::new(players);
        let (stop_refresh, stopped) = tokio::sync::watch::channel(false);
        {
            let (client, base_url, players) = (client.clone(), base_url.clone(), players.clone());
            tokio::spawn(async move { crate::http::refresh_players(&client, &base_url, &players, stopped).await });
        }
        let server_pid = options.server_pid.or_else(|| find_server_pid(&base_url));
        let setup = HttpSetup {
            base_url: base_url.clone(),
            metrics_url: metrics_url.clone(),
            players: players.len(),
            server_pid,
            setup_seconds: began.elapsed().as_secs_f64(),
        };
        let target = HttpTarget {
            bets_url: format!("{base_url}/v1/bets"),
            client,
            base_url,
            metrics_url,
            metrics_key: options.metrics_key.clone(),
            admin_key: options.admin_key.clone(),
            run_id,
            players,
            server_pid,
            stop_refresh,
        };
        Ok((target, setup))
    }

    /// Stops refreshing the players' tokens.
    pub fn finish(&self) {
        let _ = self.stop_refresh.send(true);
    }

    fn setup(&self) -> Setup<'_> {
        Setup::new(&self.client, &self.base_url, &self.admin_key)
    }
}

fn ids_of(ids: &MarketIds) -> Result<(&String, &[String; SELECTIONS]), String> {
    match ids {
        MarketIds::Http { market, selections } => Ok((market, selections)),
        MarketIds::Engine { .. } => Err("an engine market given to the HTTP target".to_string()),
    }
}

/// The API's error code of an answer, or `http_STATUS`.
fn code_of(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|body| body["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("http_{status}"))
}

/// Series of a Prometheus text exposition: the sum over labels of every series named `name`
/// (with or without labels), or their maximum.
fn metric(text: &str, name: &str, combine: fn(f64, f64) -> f64) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let bare = series.split('{').next()?;
            (bare == name).then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .reduce(combine)
}

impl SoakTarget for HttpTarget {
    fn name(&self) -> &'static str {
        "http"
    }

    fn player_count(&self) -> usize {
        self.players.len()
    }

    fn place(this: &Arc<Self>, bet: SoakBet) -> impl std::future::Future<Output = Outcome> + Send + 'static {
        let this = this.clone();
        async move {
            let mut legs = Vec::with_capacity(bet.legs.len());
            for (slot, selection) in &bet.legs {
                let Ok((_, selections)) = ids_of(&slot.ids) else {
                    return Outcome::Unexpected { code: "engine_market".to_string() };
                };
                legs.push(format!(
                    r#"{{"selection_id":"{}","price":"{}"}}"#,
                    selections[*selection],
                    format_price(slot.prices[*selection])
                ));
            }
            let kind = if legs.len() == 1 { "single" } else { "multiple" };
            let body = format!(
                r#"{{"type":"{kind}","legs":[{}],"stake":"{}","accept_price_changes":"none"}}"#,
                legs.join(","),
                format_money(bet.stake_minor)
            );
            let authorization = this.players[bet.player].authorization();
            let sent = this
                .client
                .post(&this.bets_url)
                .header(AUTHORIZATION, authorization)
                .header(CONTENT_TYPE, "application/json")
                .header("idempotency-key", format!("soak-{}-{}", this.run_id, bet.sequence))
                .body(body)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) if error.is_timeout() => return Outcome::Timeout,
                Err(_) => return Outcome::Transport,
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok());
            let body = match response.bytes().await {
                Ok(body) => body,
                Err(error) if error.is_timeout() => return Outcome::Timeout,
                Err(_) => return Outcome::Transport,
            };
            match status {
                201 => Outcome::Accepted,
                202 => Outcome::Pending,
                429 | 503 => Outcome::Shed { code: code_of(status, &body), retry_after_seconds: retry_after },
                504 => Outcome::Timeout,
                400..=499 => Outcome::Rejected { code: code_of(status, &body) },
                _ => Outcome::Unexpected { code: code_of(status, &body) },
            }
        }
    }

    fn deposit(
        this: &Arc<Self>,
        player: usize,
        amount_minor: i64,
        number: u64,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let this = this.clone();
        async move {
            let body = json!({
                "amount": format_money(u64::try_from(amount_minor).unwrap_or(0)),
                "payment_ref": format!("soak-{}-{player}-{number}", this.run_id)
            });
            let token = this.players[player].authorization();
            let token = token.to_str().unwrap_or_default().trim_start_matches("Bearer ").to_string();
            this.setup().call(Method::POST, "/v1/wallet/deposits", Some(&token), body).await.map(|_| ())
        }
    }

    fn open_market(
        this: &Arc<Self>,
        index: u64,
    ) -> impl std::future::Future<Output = Result<MarketIds, String>> + Send + 'static {
        let this = this.clone();
        async move {
            let setup = this.setup();
            let starts_at = crate::http::rfc3339(SystemTime::now() + Duration::from_secs(86_400));
            let event = json!({
                "name": format!("Soak {} match {index}", this.run_id), "sport": "football",
                "competition": "Soak", "starts_at": starts_at
            });
            let event = setup.call(Method::POST, "/v1/admin/events", Some(&this.admin_key), event).await?;
            let event_id = event["id"].as_str().ok_or("event: no id")?;
            let selections: Vec<Value> = ["Home", "Draw", "Away"]
                .iter()
                .zip(super::market_prices(index))
                .map(|(name, price)| json!({"name": name, "price": format_price(price)}))
                .collect();
            let path = format!("/v1/admin/events/{event_id}/markets");
            let market = json!({"name": "Match result", "selections": selections});
            let market = setup.call(Method::POST, &path, Some(&this.admin_key), market).await?;
            let id = market["id"].as_str().ok_or("market: no id")?.to_string();
            let ids: Vec<String> = market["selections"]
                .as_array()
                .ok_or("market: no selections")?
                .iter()
                .filter_map(|selection| selection["id"].as_str().map(str::to_string))
                .collect();
            let selections: [String; SELECTIONS] =
                ids.try_into().map_err(|_| "market: not three selections".to_string())?;
            Ok(MarketIds::Http { market: id, selections })
        }
    }

    fn settle_market(
        this: &Arc<Self>,
        ids: MarketIds,
        winner: usize,
    ) -> impl std::future::Future<Output = Result<u64, String>> + Send + 'static {
        let this = this.clone();
        async move {
            let (market, selections) = ids_of(&ids)?;
            let results: Vec<Value> = selections
                .iter()
                .enumerate()
                .map(|(index, id)| json!({"selection_id": id, "outcome": if index == winner { "win" } else { "lose" }}))
                .collect();
            let path = format!("/v1/admin/markets/{market}/settle");
            let settled =
                this.setup().call(Method::POST, &path, Some(&this.admin_key), json!({"results": results})).await?;
            Ok(settled["bets_settled"].as_u64().unwrap_or(0))
        }
    }

    fn sample(this: &Arc<Self>) -> impl std::future::Future<Output = TargetSample> + Send + 'static {
        let this = this.clone();
        async move {
            let (rss_bytes, hwm_bytes) =
                if this.server_pid.is_some() { process_memory(this.server_pid) } else { (None, None) };
            let mut request = this.client.get(&this.metrics_url).timeout(METRICS_TIMEOUT);
            if let Some(key) = &this.metrics_key {
                if let Ok(value) = HeaderValue::from_str(&format!("Bearer {key}")) {
                    request = request.header(AUTHORIZATION, value);
                }
            }
            let text = match request.send().await {
                Ok(response) if response.status().is_success() => response.text().await.unwrap_or_default(),
                Ok(response) => {
                    eprintln!("soak: {} answered {}", this.metrics_url, response.status());
                    String::new()
                }
                Err(error) => {
                    eprintln!("soak: {}: {}", this.metrics_url, with_causes(&error));
                    String::new()
                }
            };
            let seconds = |value: f64| Duration::try_from_secs_f64(value.max(0.0)).unwrap_or_default();
            TargetSample {
                rss_bytes,
                hwm_bytes,
                pause_max: metric(&text, "sportsbook_sequencer_pause_seconds_interval_max", f64::max).map(seconds),
                work_max: metric(&text, "sportsbook_sequencer_work_seconds_interval_max", f64::max).map(seconds),
                // Not exported by the server.
                cpu_max: None,
                snapshots: metric(&text, "sportsbook_snapshots_total", |a, b| a + b).map(|count| count as u64),
                snapshot_max: metric(&text, "sportsbook_snapshot_seconds_max", f64::max).map(seconds),
                lag_records: metric(&text, "sportsbook_projector_lag_records", f64::max).map(|lag| lag as u64),
                lag: metric(&text, "sportsbook_projector_lag_seconds", f64::max).map(seconds),
                projector_rows: metric(&text, "sportsbook_projector_rows_total", |a, b| a + b).map(|rows| rows as u64),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_series() {
        let text = "# HELP x\nsportsbook_snapshots_total{writer=\"follower\"} 3\n\
                    sportsbook_snapshots_total{writer=\"sequencer\"} 1\n\
                    sportsbook_sequencer_pause_seconds_interval_max 0.0042\n\
                    sportsbook_snapshot_seconds_max{writer=\"follower\"} 1.5\n\
                    sportsbook_snapshot_seconds_max{writer=\"sequencer\"} 0.5\n";
        assert_eq!(metric(text, "sportsbook_snapshots_total", |a, b| a + b), Some(4.0));
        assert_eq!(metric(text, "sportsbook_snapshot_seconds_max", f64::max), Some(1.5));
        assert_eq!(metric(text, "sportsbook_sequencer_pause_seconds_interval_max", f64::max), Some(0.0042));
        assert_eq!(metric(text, "sportsbook_sequencer_pause_seconds", f64::max), None);
    }
}
