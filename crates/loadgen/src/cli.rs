//! The command line of `sportsbook loadgen`: flags to `Options`, then the run, the summary on
//! standard output, and the JSON and SVG files.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, ValueEnum};

use crate::driver::{OpenLoopOptions, CONCURRENCY_MAX};
use crate::http::{PriceRoute, SportsbookOptions};
use crate::postgres::PostgresOptions;
use crate::provider::{FEED_BATCH_MAX, FEED_BATCH_MIN};
use crate::schedule::{DerbyShape, ProfileKind};
use crate::soak::engine::{EngineTarget, EngineTargetOptions, StoreChoice};
use crate::soak::http::{HttpTarget, HttpTargetOptions};
use crate::subscribers::SubscriberOptions;
use crate::workload::{BetMix, WorkloadOptions};
use crate::{LoadgenError, Options, TargetKind};

/// Players when --players is not given: over HTTP, and through the engine (no passwords).
const PLAYERS_DEFAULT: usize = 200;
const ENGINE_PLAYERS_DEFAULT: usize = 10_000;
/// The soak's rate when --rate is not given: the 20,000 bets a second.
const SOAK_RATE_DEFAULT: f64 = 20_000.0;
/// The environment variable the server takes its bootstrap operator key from.
const ADMIN_KEY_ENV: &str = "SPORTSBOOK_ADMIN_KEY";
/// The environment variable the server takes the `/metrics` bearer key from.
const METRICS_KEY_ENV: &str = "SPORTSBOOK_METRICS_KEY";

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TargetArg {
    /// The sportsbook over HTTP at --url.
    Sportsbook,
    /// The PostgreSQL one-transaction-per-bet baseline at --pg.
    PostgresBaseline,
    /// The sportsbook, then the baseline with the same schedule and bets; prints the ratios.
    Both,
    /// The engine in this process, no HTTP: the file journal and snapshots as `serve` sets them
    /// up, the projector following (soak profile only).
    Engine,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PriceRouteArg {
    /// As an odds provider: fixtures, markets and batched odds_change messages on POST /v1/feed/messages.
    Feed,
    /// As an operator: markets on /v1/admin/events, one PUT /v1/admin/markets/{id}/prices at a time.
    Admin,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProfileArg {
    /// A constant rate (default 20,000/s for 30 s).
    Steady,
    /// A base rate (default 1,500/s), a ramp to --spike-factor times it, a hold, a decay, calm again.
    Derby,
    /// Markets opened, bet on and settled in a cycle, players depositing again when low, the
    /// open bets held about constant (--open-bets); reported per 10 s window against the aims of
    /// issue 12. Runs --requests-max bets (or --duration) at --rate (default 20,000/s; 0: flat
    /// out), over HTTP or through the engine in this process (--target engine).
    Soak,
}

/// Flags of `sportsbook loadgen`.
#[derive(Clone, Debug, ClapArgs)]
pub struct Args {
    #[arg(long, value_enum, default_value = "sportsbook")]
    pub target: TargetArg,
    #[arg(long, value_enum, default_value = "steady")]
    pub profile: ProfileArg,
    /// Bets per second (the derby's base rate).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of a steady or soak run.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Derby: the spike's rate as a multiple of the base rate.
    #[arg(long, default_value_t = 15.0)]
    pub spike_factor: f64,
    /// Derby: seconds at the base rate before the spike, and again after it.
    #[arg(long, default_value_t = 10.0)]
    pub calm_seconds: f64,
    /// Derby: seconds from the base rate to the spike.
    #[arg(long, default_value_t = 5.0)]
    pub ramp_seconds: f64,
    /// Derby: seconds at the spike rate.
    #[arg(long, default_value_t = 20.0)]
    pub hold_seconds: f64,
    /// Derby: seconds from the spike back to the base rate.
    #[arg(long, default_value_t = 10.0)]
    pub decay_seconds: f64,
    /// Requests in the run at most, whatever rate and duration say.
    #[arg(long, default_value_t = 10_000_000)]
    pub requests_max: u64,
    /// Requests in flight at once; beyond it, requests wait in the generator and are late.
    #[arg(long, default_value_t = 2_048)]
    pub concurrency: usize,
    /// Seconds before an unanswered request counts as a timeout.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// The sportsbook's base URL (loopback only). Repeat it for the gateways of a cluster: bets
    /// are spread over them round-robin per request; setup, prices and subscribers use the
    /// first. The soak takes one.
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    pub urls: Vec<String>,
    /// An operator key with the trading scope (default: $SPORTSBOOK_ADMIN_KEY).
    #[arg(long)]
    pub admin_key: Option<String>,
    /// Players registered, logged in and funded before the run (each costs an argon2 hash);
    /// default 200, and 10,000 accounts for the soak through the engine.
    #[arg(long)]
    pub players: Option<usize>,
    /// Markets created (one event each), ranked by Zipf popularity; the baseline gets as many rows.
    #[arg(long, default_value_t = 1_000)]
    pub markets: usize,
    /// Zipf exponent of market popularity (1.2: the five hottest of 1,000 take about 47%).
    #[arg(long, default_value_t = 1.2)]
    pub zipf: f64,
    /// Price changes per second while bets flow (a market's three prices each), hot markets most.
    #[arg(long, default_value_t = 50.0)]
    pub price_updates: f64,
    /// How markets are created and prices moved: through the feed, as an odds provider, or
    /// through the operator API.
    #[arg(long, value_enum, default_value = "feed")]
    pub price_route: PriceRouteArg,
    /// Feed route: one request every this many milliseconds carries the changes due by then,
    /// each request sent without waiting for the last.
    #[arg(long, default_value_t = 100)]
    pub feed_batch_ms: u64,
    /// WebSocket subscribers on GET /v1/stream reading prices (players' tokens, at most 16
    /// connections per player); 0 for none.
    #[arg(long, default_value_t = 200)]
    pub subscribers: usize,
    /// Markets each subscriber watches, drawn by the same Zipf popularity as the bets.
    #[arg(long, default_value_t = 4)]
    pub subscriber_markets: usize,
    #[arg(long, default_value_t = 10)]
    pub multiple_percent: u32,
    #[arg(long, default_value_t = 5)]
    pub system_percent: u32,
    /// Bets sent a second time with the same Idempotency-Key.
    #[arg(long, default_value_t = 2)]
    pub retry_percent: u32,
    /// Seed of the workload: the same seed gives the same bets in the same order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// PostgreSQL connection string of the baseline (local only).
    #[arg(long, default_value = "host=127.0.0.1 port=5432 user=postgres dbname=test")]
    pub pg: String,
    /// Connections of the baseline's pool (the baseline's README measures 8 and 64).
    #[arg(long, default_value_t = 64)]
    pub pg_pool: usize,
    /// Wallet rows of the baseline (its schema.sql has 100,000).
    #[arg(long, default_value_t = 100_000)]
    pub pg_wallets: u32,
    /// Soak: bets open at any time, about (each market takes 2 × this ÷ --live-markets bets,
    /// then is settled and replaced).
    #[arg(long, default_value_t = 100_000)]
    pub open_bets: u64,
    /// Soak: markets taking bets at any time.
    #[arg(long, default_value_t = 200)]
    pub live_markets: usize,
    /// Soak: seconds per report window (one progress line each).
    #[arg(long, default_value_t = 10)]
    pub window_seconds: u64,
    /// Soak through the engine: the data directory (must be empty or new; default: a temporary
    /// one, removed at the end).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Soak through the engine: the projector's store: `sqlite` (in the data directory),
    /// `sqlite:PATH`, a `postgres://` URL (its schema --pg-schema is emptied first), or `off`.
    #[arg(long, default_value = "sqlite")]
    pub store: String,
    /// Soak through the engine: the PostgreSQL schema of the read models.
    #[arg(long, default_value = "loadgen_soak")]
    pub pg_schema: String,
    /// Soak through the engine: a snapshot every this many commands (`serve`'s default), 0 for
    /// none but the last.
    #[arg(long, default_value_t = 1_000_000)]
    pub snapshot_every: u64,
    /// Soak through the engine: settled bets leave the book this long after settlement
    /// (`serve --resettlement-window`), e.g. `5s`, `10m`, `7d`.
    #[arg(long)]
    pub resettlement_window: Option<String>,
    /// Soak through the engine: the book remembers idempotency keys this long
    /// (`serve --idempotency-window`, 10 minutes by default), e.g. `60s`. Each key costs about
    /// 85 bytes in each of the two books (the book, the projector's follower book), so past a
    /// few minutes the keys set the memory.
    #[arg(long)]
    pub idempotency_window: Option<String>,
    /// Soak through the engine: the nice value of the projector's threads (Linux; 0 as in
    /// `serve`, higher leaves the cores to the sequencer first).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub projector_nice: i32,
    /// Soak through the engine: the most commands the sequencer decides in one batch
    /// (`EngineOptions::batch_commands_max`, 1 to the default 4,096).
    #[arg(long, default_value_t = engine::BATCH_COMMANDS_MAX_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(1..=engine::BATCH_COMMANDS_MAX_DEFAULT as u64))]
    pub batch_commands_max: u64,
    /// Soak over HTTP: the server's process id, for its resident memory (default: the one
    /// process whose command line holds `serve` and the URL's port).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Soak over HTTP: where the server serves `/metrics` (default: on --url); the key, if it
    /// needs one, from $SPORTSBOOK_METRICS_KEY.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Soak: stop sending when the resident memory (of this process through the engine, of the
    /// server over HTTP) passes this many MiB; 0 for no limit. A guard for a shared machine.
    #[arg(long, default_value_t = 8_192)]
    pub rss_max_mib: u64,
    /// Write the result as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the plot here (default: --out with .svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn seconds(value: f64, flag: &str) -> Result<Duration, LoadgenError> {
    Duration::try_from_secs_f64(value).map_err(|_| LoadgenError::Config(format!("--{flag} {value}: not a duration")))
}

/// How many times `--url` may be given.
pub const URLS_MAX: usize = 64;

impl Args {
    /// The first `--url` and the others, each given once at most.
    pub fn base_urls(&self) -> Result<(String, Vec<String>), LoadgenError> {
        if self.urls.len() > URLS_MAX {
            return Err(LoadgenError::Config(format!("--url is given {} times; at most {URLS_MAX}", self.urls.len())));
        }
        let normalized: Vec<String> = self.urls.iter().map(|url| url.trim_end_matches('/').to_string()).collect();
        for (index, url) in normalized.iter().enumerate() {
            if normalized[..index].contains(url) {
                return Err(LoadgenError::Config(format!("--url {url} is given twice")));
            }
        }
        let mut urls = normalized.into_iter();
        let first = urls.next().ok_or_else(|| LoadgenError::Config("--url: give at least one".to_string()))?;
        Ok((first, urls.collect()))
    }

    /// The one `--url` of a profile that takes one.
    fn single_url(&self) -> Result<String, LoadgenError> {
        match self.base_urls()? {
            (url, extra) if extra.is_empty() => Ok(url),
            _ => Err(LoadgenError::Config("the soak takes one --url".to_string())),
        }
    }

    pub fn options(&self) -> Result<Options, LoadgenError> {
        let profile = match self.profile {
            ProfileArg::Steady => ProfileKind::Steady,
            ProfileArg::Derby => ProfileKind::Derby,
            ProfileArg::Soak => ProfileKind::Soak,
        };
        if profile == ProfileKind::Derby && self.duration.is_some() {
            return Err(LoadgenError::Config(
                "--duration is for steady and soak; a derby is shaped by --calm/ramp/hold/decay-seconds".to_string(),
            ));
        }
        if !(1..=CONCURRENCY_MAX).contains(&self.concurrency) {
            return Err(LoadgenError::Config(format!("--concurrency must be 1 to {CONCURRENCY_MAX}")));
        }
        if self.multiple_percent + self.system_percent > 100 || self.retry_percent > 100 {
            return Err(LoadgenError::Config("percentages must add up to at most 100".to_string()));
        }
        if !(self.zipf >= 0.0 && self.zipf <= 10.0) {
            return Err(LoadgenError::Config("--zipf must be 0 to 10".to_string()));
        }
        let derby = DerbyShape {
            spike_factor: self.spike_factor,
            calm: seconds(self.calm_seconds, "calm-seconds")?,
            ramp: seconds(self.ramp_seconds, "ramp-seconds")?,
            hold: seconds(self.hold_seconds, "hold-seconds")?,
            decay: seconds(self.decay_seconds, "decay-seconds")?,
        };
        let duration = self.duration.map(|value| seconds(value, "duration")).transpose()?;
        let target = match self.target {
            TargetArg::Sportsbook => TargetKind::Sportsbook,
            TargetArg::PostgresBaseline => TargetKind::PostgresBaseline,
            TargetArg::Both => TargetKind::Both,
            TargetArg::Engine => {
                return Err(LoadgenError::Config("--target engine is for the soak profile only".to_string()))
            }
        };
        let admin_key = self.admin_key.clone().or_else(|| std::env::var(ADMIN_KEY_ENV).ok());
        if target != TargetKind::PostgresBaseline && admin_key.is_none() {
            return Err(LoadgenError::Config(format!(
                "the sportsbook target creates markets: give --admin-key or set {ADMIN_KEY_ENV} to the server's key"
            )));
        }
        let (base_url, extra_urls) = self.base_urls()?;
        if target != TargetKind::PostgresBaseline {
            crate::http::check_loopback(&base_url)?;
            for url in &extra_urls {
                crate::http::check_loopback(url)?;
            }
        }
        let request_timeout = seconds(self.timeout, "timeout")?;
        let players = self.players.unwrap_or(PLAYERS_DEFAULT);
        let connections_max = players.saturating_mul(crate::subscribers::CONNECTIONS_PER_PLAYER_MAX);
        if self.subscribers > connections_max {
            return Err(LoadgenError::Config(format!(
                "--subscribers {} is more than {connections_max}: the server allows {} stream connections per \
                 player; raise --players",
                self.subscribers,
                crate::subscribers::CONNECTIONS_PER_PLAYER_MAX
            )));
        }
        let feed_batch = Duration::from_millis(self.feed_batch_ms);
        if !(FEED_BATCH_MIN..=FEED_BATCH_MAX).contains(&feed_batch) {
            return Err(LoadgenError::Config(format!(
                "--feed-batch-ms must be {} to {}",
                FEED_BATCH_MIN.as_millis(),
                FEED_BATCH_MAX.as_millis()
            )));
        }
        Ok(Options {
            target,
            profile,
            phases: Options::phases_of(profile, self.rate, duration, &derby),
            requests_max: self.requests_max,
            workload: WorkloadOptions {
                seed: self.seed,
                markets: self.markets,
                zipf_exponent: self.zipf,
                mix: BetMix {
                    multiple_percent: self.multiple_percent,
                    system_percent: self.system_percent,
                    retry_percent: self.retry_percent,
                    ..BetMix::default()
                },
                ..WorkloadOptions::default()
            },
            sportsbook: SportsbookOptions {
                base_url,
                extra_urls,
                admin_key: admin_key.unwrap_or_default(),
                players,
                price_updates_per_second: self.price_updates,
                price_route: match self.price_route {
                    PriceRouteArg::Feed => PriceRoute::Feed,
                    PriceRouteArg::Admin => PriceRoute::Admin,
                },
                feed_batch,
                subscribers: SubscriberOptions { count: self.subscribers, markets_each: self.subscriber_markets },
                concurrency: self.concurrency,
                request_timeout,
                progress: !self.quiet,
            },
            postgres: PostgresOptions {
                connection: self.pg.clone(),
                pool_connections: self.pg_pool,
                wallets: self.pg_wallets,
                markets: self.markets,
            },
            open_loop: OpenLoopOptions {
                concurrency: self.concurrency,
                request_timeout,
                send_grace: Duration::from_secs(5),
                progress: !self.quiet,
            },
        })
    }
}

/// `sportsbook loadgen`: runs, prints the summary, writes the files.
pub fn run(args: &Args) -> Result<(), LoadgenError> {
    if matches!(args.profile, ProfileArg::Soak) {
        return run_soak(args);
    }
    let options = args.options()?;
    let result = crate::run_blocking(&options)?;
    print!("{}", crate::summary(&result));
    let plot = args.plot.clone().or_else(|| args.out.as_ref().map(|out| out.with_extension("svg")));
    crate::write_outputs(&result, args.out.as_deref(), plot.as_deref())?;
    if let Some(out) = &args.out {
        println!("\nresult: {}", out.display());
    }
    if let Some(plot) = &plot {
        println!("plot: {}", plot.display());
    }
    Ok(())
}

/// `5s`, `10m`, `2h`, `7d`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{text}`: expected a number and a unit (5s, 10m, 7d)"))?;
    let unit_seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: the unit must be ms, s, m, h or d")),
    };
    number.checked_mul(unit_seconds).map(Duration::from_secs).ok_or_else(|| format!("`{text}`: too long"))
}

impl Args {
    /// The soak's own options from the flags.
    pub fn soak_options(&self) -> Result<crate::soak::SoakOptions, LoadgenError> {
        let engine = matches!(self.target, TargetArg::Engine);
        let rate = self.rate.unwrap_or(SOAK_RATE_DEFAULT);
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(LoadgenError::Config(format!("--rate {rate}: must be 0 (flat out) or more")));
        }
        let options = crate::soak::SoakOptions {
            rate: (rate > 0.0).then_some(rate),
            bets: self.requests_max,
            duration: self.duration.map(|value| seconds(value, "duration")).transpose()?,
            open_bets: self.open_bets,
            live_markets: self.live_markets,
            players: self.players.unwrap_or(if engine { ENGINE_PLAYERS_DEFAULT } else { PLAYERS_DEFAULT }),
            multiple_percent: self.multiple_percent,
            stake_minor_min: WorkloadOptions::default().stake_minor_min,
            stake_minor_max: WorkloadOptions::default().stake_minor_max,
            concurrency: self.concurrency,
            request_timeout: seconds(self.timeout, "timeout")?,
            window: Duration::from_secs(self.window_seconds),
            sample_every: if engine { Duration::from_millis(100) } else { Duration::from_secs(1) },
            seed: self.seed,
            rss_max_bytes: (self.rss_max_mib > 0).then(|| self.rss_max_mib.saturating_mul(1 << 20)),
            progress: !self.quiet,
        };
        options.check()?;
        Ok(options)
    }
}

/// `sportsbook loadgen --profile soak`.
fn run_soak(args: &Args) -> Result<(), LoadgenError> {
    let options = args.soak_options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("loadgen")
        .build()
        .map_err(|error| LoadgenError::Config(format!("starting the tokio runtime: {error}")))?;
    let result = match args.target {
        TargetArg::Engine => {
            let store = match args.store.as_str() {
                "off" => None,
                "sqlite" => Some(StoreChoice::Sqlite(None)),
                value if value.starts_with("sqlite:") && value.len() > "sqlite:".len() => {
                    Some(StoreChoice::Sqlite(Some(PathBuf::from(&value["sqlite:".len()..]))))
                }
                value if value.starts_with("postgres://") || value.starts_with("postgresql://") => {
                    Some(StoreChoice::Postgres { url: value.to_string(), schema: args.pg_schema.clone() })
                }
                value => {
                    return Err(LoadgenError::Config(format!(
                        "--store `{value}`: expected sqlite, sqlite:PATH, a postgres:// URL or off"
                    )))
                }
            };
            let window = |flag: &str, value: &Option<String>| {
                value
                    .as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map_err(|error| LoadgenError::Config(format!("{flag} {error}")))
            };
            let resettlement_window = window("--resettlement-window", &args.resettlement_window)?;
            let idempotency_window = window("--idempotency-window", &args.idempotency_window)?;
            let engine_options = EngineTargetOptions {
                data_dir: args.data_dir.clone(),
                store,
                snapshot_every_commands: args.snapshot_every,
                resettlement_window,
                idempotency_window,
                projector_nice: args.projector_nice,
                batch_commands_max: args.batch_commands_max as usize,
                players: options.players,
                idempotency_keys: true,
            };
            if !args.quiet {
                eprintln!("soak: opening the engine and {} accounts ...", options.players);
            }
            let (target, setup) = EngineTarget::open(&engine_options)?;
            let target = std::sync::Arc::new(target);
            let setup = serde_json::to_value(&setup).unwrap_or_default();
            let result = runtime.block_on(crate::soak::run(target.clone(), &options, setup));
            if !args.quiet {
                eprintln!("soak: stopping the projector and the engine (the final snapshot) ...");
            }
            target.finish();
            result?
        }
        TargetArg::Sportsbook => {
            let admin_key = args.admin_key.clone().or_else(|| std::env::var(ADMIN_KEY_ENV).ok()).ok_or_else(|| {
                LoadgenError::Config(format!(
                    "the soak creates and settles markets: give --admin-key or set {ADMIN_KEY_ENV} to the server's key"
                ))
            })?;
            let http_options = HttpTargetOptions {
                base_url: args.single_url()?,
                metrics_url: args.metrics_url.clone(),
                metrics_key: std::env::var(METRICS_KEY_ENV).ok(),
                admin_key,
                players: options.players,
                concurrency: options.concurrency,
                request_timeout: options.request_timeout,
                server_pid: args.server_pid,
                progress: !args.quiet,
            };
            runtime.block_on(async {
                let (target, setup) = HttpTarget::open(&http_options).await?;
                if setup.server_pid.is_none() && !args.quiet {
                    eprintln!(
                        "soak: the server's process was not found: its memory is not reported (give --server-pid)"
                    );
                }
                let target = std::sync::Arc::new(target);
                let setup = serde_json::to_value(&setup).unwrap_or_default();
                let result = crate::soak::run(target.clone(), &options, setup).await;
                target.finish();
                result
            })?
        }
        TargetArg::PostgresBaseline | TargetArg::Both => {
            return Err(LoadgenError::Config(
                "the soak profile runs against the sportsbook (--target sportsbook) or the engine (--target engine)"
                    .to_string(),
            ))
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(5));
    print!("{}", crate::soak::summary(&result));
    if let Some(out) = &args.out {
        crate::soak::write_result(&result, out)?;
        println!("\nresult: {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(flags: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("loadgen").chain(flags.iter().copied())).expect("flags parse").args
    }

    #[test]
    fn url_repeated_spreads_over_gateways() {
        let args = parse(&["--url", "http://127.0.0.1:1/", "--url", "http://127.0.0.1:2", "--admin-key", "sk_x"]);
        let (first, extra) = args.base_urls().expect("two urls");
        assert_eq!(first, "http://127.0.0.1:1");
        assert_eq!(extra, vec!["http://127.0.0.1:2".to_string()]);
        let options = args.options().expect("options");
        assert_eq!(options.sportsbook.base_url, "http://127.0.0.1:1");
        assert_eq!(options.sportsbook.extra_urls, vec!["http://127.0.0.1:2".to_string()]);
        assert!(matches!(args.single_url(), Err(LoadgenError::Config(_))), "the soak takes one --url");
    }

    #[test]
    fn url_single_and_default_keep_their_behaviour() {
        let args = parse(&["--admin-key", "sk_x"]);
        assert_eq!(args.base_urls().expect("default").0, "http://127.0.0.1:8080");
        assert!(args.base_urls().expect("default").1.is_empty());
        let args = parse(&["--url", "http://127.0.0.1:9", "--admin-key", "sk_x"]);
        assert_eq!(args.single_url().expect("one url"), "http://127.0.0.1:9");
    }

    #[test]
    fn url_refused_when_repeated_or_not_loopback() {
        let args = parse(&["--url", "http://127.0.0.1:1", "--url", "http://127.0.0.1:1/", "--admin-key", "sk_x"]);
        assert!(matches!(args.base_urls(), Err(LoadgenError::Config(text)) if text.contains("twice")));
        let args = parse(&["--url", "http://127.0.0.1:1", "--url", "http://10.0.0.1:2", "--admin-key", "sk_x"]);
        assert!(matches!(args.options(), Err(LoadgenError::Config(text)) if text.contains("10.0.0.1")));
    }
}
