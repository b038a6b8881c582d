//! `sportsbook bench-cluster`: embedded against cluster, and the gateway curve, in one run
//! (issue 15 item 5).
//!
//! It starts `sportsbook serve` (the embedded default) as a child, offers it one open-loop
//! `steady` load (`loadgen`, in this process), and stops it; then it starts `sportsbook
//! dev-cluster --gateways N --no-rate-limits` and offers the same load spread round-robin over
//! the first 1, 2, ... N gateways, one run each on the same cluster. Every figure comes from
//! the same `loadgen` code against the same workload in the same hour, and the table prints
//! each cluster run against the embedded one (accepted bets/s and p99 as ratios).
//!
//! Rate limits are off on both (`serve --rate-limit-per-address off
//! --rate-limit-per-credential off`, `dev-cluster --no-rate-limits`): the load comes from one
//! address and a few hundred players. The read side runs on both as each runs it by default
//! (`serve`: the projector in the process on SQLite; `dev-cluster`: the projector role on
//! PostgreSQL). The children's logs are in `DIR/logs`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde::Serialize;

/// Gateways of the curve at most (each run offers the same load over one more gateway).
pub const GATEWAYS_MAX: usize = 8;
/// How long `serve` may take to answer `/readyz`, and `dev-cluster` to print `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);
/// Pause between two runs on the same target (its queues drain, the projector catches up).
const SETTLE: Duration = Duration::from_secs(3);

/// What `sportsbook bench-cluster` is asked.
#[derive(Clone, Debug)]
pub struct BenchClusterOptions {
    /// Working directory: `embedded/`, `cluster/`, `logs/` are made in it (emptied first).
    pub data_dir: PathBuf,
    /// Bets per second offered in every run.
    pub rate: f64,
    /// Seconds of each run.
    pub duration: f64,
    /// The curve's last point: 1 to [`GATEWAYS_MAX`].
    pub gateways: usize,
    pub players: usize,
    pub markets: usize,
    /// Skip the embedded run (the table then has no ratios).
    pub no_embedded: bool,
    /// The result as JSON.
    pub out: Option<PathBuf>,
}

/// One run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct RunFigures {
    pub name: String,
    pub gateways: usize,
    pub offered_per_second: f64,
    pub accepted: u64,
    pub accepted_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// 429/503 answers, all codes.
    pub shed: u64,
    /// Business rejections, all codes.
    pub rejected: u64,
    /// Timeouts, transport errors and answers the API does not promise.
    pub failed: u64,
    /// `/proc/loadavg`'s one-minute figure before and after the run.
    pub load_before: f64,
    pub load_after: f64,
    /// Against the embedded run: accepted/s ÷ embedded's, p99 ÷ embedded's.
    pub throughput_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
}

/// The JSON result.
#[derive(Debug, Serialize)]
pub struct BenchClusterResult {
    pub machine: loadgen::Machine,
    pub rate: f64,
    pub duration_s: f64,
    pub runs: Vec<RunFigures>,
}

pub fn run(options: &BenchClusterOptions) -> anyhow::Result<()> {
    if !(1..=GATEWAYS_MAX).contains(&options.gateways) {
        bail!("--gateways {}: must be 1 to {GATEWAYS_MAX}", options.gateways);
    }
    let positive = |value: f64| value > 0.0 && value.is_finite();
    if !positive(options.rate) || !positive(options.duration) {
        bail!("--rate and --duration must be positive");
    }
    let dir = &options.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    for sub in ["embedded", "cluster"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("emptying {}", path.display()))?;
        }
    }
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).context("creating the logs directory")?;
    let exe = std::env::current_exe().context("finding this executable")?;

    let mut runs = Vec::new();
    if !options.no_embedded {
        runs.push(embedded_run(&exe, &dir, &logs, options)?);
    }
    runs.extend(cluster_runs(&exe, &dir, &logs, options)?);
    if let Some(base) = runs.iter().find(|run| run.gateways == 0).cloned() {
        for run in runs.iter_mut().filter(|run| run.gateways > 0) {
            run.throughput_ratio = ratio(run.accepted_per_second, base.accepted_per_second);
            run.p99_ratio = ratio(run.p99_ms, base.p99_ms);
        }
    }
    print!("{}", table(&runs, options));
    let result =
        BenchClusterResult { machine: loadgen::machine(), rate: options.rate, duration_s: options.duration, runs };
    if let Some(out) = &options.out {
        let text = serde_json::to_string_pretty(&result).context("encoding the result")?;
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
        println!("result: {}", out.display());
    }
    Ok(())
}

fn progress(text: &str) {
    crate::output::print_text_stderr(&format!("bench-cluster: {text}\n"));
}

fn ratio(ours: f64, base: f64) -> Option<f64> {
    (base > 0.0 && ours.is_finite()).then(|| ours / base)
}

fn embedded_run(exe: &Path, dir: &Path, logs: &Path, options: &BenchClusterOptions) -> anyhow::Result<RunFigures> {
    let admin_key = format!("{}{}", gateway::API_KEY_PREFIX, gateway::random_token());
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    progress(&format!("starting serve on {url} (log: {})", logs.join("embedded.log").display()));
    let log = std::fs::File::create(logs.join("embedded.log")).context("creating embedded.log")?;
    let child = Command::new(exe)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join("embedded"))
        .args(["--rate-limit-per-address", "off", "--rate-limit-per-credential", "off"])
        .env(crate::secrets::ADMIN_KEY_ENV, &admin_key)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cloning the log's handle")?)
        .stderr(log)
        .spawn()
        .context("starting serve")?;
    let mut child = Stopping(Some(child), "serve");
    wait_ready(&url, child.0.as_mut().expect("running"))?;
    let figures = offer(options, "serve (embedded)", 0, &[url], &admin_key);
    child.stop();
    figures
}

fn cluster_runs(exe: &Path, dir: &Path, logs: &Path, options: &BenchClusterOptions) -> anyhow::Result<Vec<RunFigures>> {
    let cluster_dir = dir.join("cluster");
    std::fs::create_dir_all(&cluster_dir).context("creating the cluster's directory")?;
    progress(&format!(
        "starting dev-cluster with {} gateways (its progress: {})",
        options.gateways,
        logs.join("dev-cluster.log").display()
    ));
    let log = std::fs::File::create(logs.join("dev-cluster.log")).context("creating dev-cluster.log")?;
    let child = Command::new(exe)
        .args(["dev-cluster", "--no-rate-limits", "--gateways", &options.gateways.to_string(), "--data-dir"])
        .arg(&cluster_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting dev-cluster")?;
    let mut child = Stopping(Some(child), "dev-cluster");
    let stdout = child.0.as_mut().and_then(|child| child.stdout.take()).context("dev-cluster's standard output")?;
    // Its JSON lines, then `ready`; read on a thread so that the wait has a deadline.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let mut urls = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines_rx.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => bail!("dev-cluster did not print `ready` within {START_TIMEOUT:?}: see its log"),
        };
        if line.trim() == "ready" {
            break;
        }
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
            if value["role"] == "gateway" {
                if let Some(url) = value["url"].as_str() {
                    urls.push(url.to_string());
                }
            }
        }
    }
    if urls.len() < options.gateways {
        bail!("dev-cluster named {} gateways; {} were asked for", urls.len(), options.gateways);
    }
    let key_path = cluster_dir.join(crate::dev_cluster::ADMIN_KEY_FILE_NAME);
    let admin_key = std::fs::read_to_string(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?
        .trim()
        .to_string();
    let mut runs = Vec::new();
    for gateways in 1..=options.gateways {
        let name = format!("cluster, {gateways} gateway{}", if gateways == 1 { "" } else { "s" });
        runs.push(offer(options, &name, gateways, &urls[..gateways], &admin_key)?);
        std::thread::sleep(SETTLE);
    }
    child.stop();
    Ok(runs)
}

/// One `steady` run of `loadgen` against `urls`.
fn offer(
    options: &BenchClusterOptions,
    name: &str,
    gateways: usize,
    urls: &[String],
    admin_key: &str,
) -> anyhow::Result<RunFigures> {
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        args: loadgen::cli::Args,
    }
    let mut flags: Vec<String> = ["loadgen", "--target", "sportsbook", "--profile", "steady", "--price-route", "admin"]
        .iter()
        .map(|text| text.to_string())
        .collect();
    for (flag, value) in [
        ("--rate", options.rate.to_string()),
        ("--duration", options.duration.to_string()),
        ("--players", options.players.to_string()),
        ("--markets", options.markets.to_string()),
        ("--price-updates", "0".to_string()),
        ("--subscribers", "0".to_string()),
        ("--admin-key", admin_key.to_string()),
    ] {
        flags.push(flag.to_string());
        flags.push(value);
    }
    for url in urls {
        flags.push("--url".to_string());
        flags.push(url.clone());
    }
    flags.push("--quiet".to_string());
    let args = Flags::try_parse_from(&flags).context("the loadgen flags")?.args;
    let loadgen_options = args.options().context("the loadgen options")?;
    progress(&format!("{name}: {} bets/s for {} s over {}", options.rate, options.duration, urls.join(" ")));
    let load_before = load_average();
    let result = loadgen::run_blocking(&loadgen_options).with_context(|| format!("the {name} run"))?;
    let load_after = load_average();
    let total = &result.runs.first().context("loadgen reported no run")?.total;
    let figures = RunFigures {
        name: name.to_string(),
        gateways,
        offered_per_second: options.rate,
        accepted: total.accepted,
        accepted_per_second: total.accepted_per_second,
        p50_ms: total.latency_ms.p50,
        p99_ms: total.latency_ms.p99,
        max_ms: total.latency_ms.max,
        shed: total.shed.values().sum(),
        rejected: total.rejections.values().sum(),
        failed: total.unexpected.values().sum::<u64>() + total.timeouts + total.transport_errors,
        load_before,
        load_after,
        throughput_ratio: None,
        p99_ratio: None,
    };
    progress(&format!(
        "{name}: {:.0} accepted/s, p50 {:.2} ms, p99 {:.2} ms, shed {}, failed {}",
        figures.accepted_per_second, figures.p50_ms, figures.p99_ms, figures.shed, figures.failed
    ));
    Ok(figures)
}

fn table(runs: &[RunFigures], options: &BenchClusterOptions) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "\nbench-cluster: {} bets/s offered for {} s per run, {} players, {} markets\n\n| run | load avg | \
         accepted/s | p50 ms | p99 ms | max ms | shed | rejected | failed | accepted/s ÷ embedded | p99 ÷ \
         embedded |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        options.rate, options.duration, options.players, options.markets
    );
    let shown = |value: Option<f64>| value.map_or_else(|| "—".to_string(), |value| format!("{value:.2}"));
    for run in runs {
        let _ = writeln!(
            out,
            "| {} | {:.1} → {:.1} | {:.0} | {:.2} | {:.2} | {:.0} | {} | {} | {} | {} | {} |",
            run.name,
            run.load_before,
            run.load_after,
            run.accepted_per_second,
            run.p50_ms,
            run.p99_ms,
            run.max_ms,
            run.shed,
            run.rejected,
            run.failed,
            shown(run.throughput_ratio),
            shown(run.p99_ratio),
        );
    }
    out
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|first| first.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("the free port")?.port())
}

/// Waits until `serve` answers `/readyz` with 200 (plain HTTP/1.1 over a socket).
fn wait_ready(url: &str, child: &mut Child) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("watching serve")? {
            bail!("serve exited while starting ({status}): see its log");
        }
        if let Ok(mut stream) = std::net::TcpStream::connect(address) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let request = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("serve was not ready within {START_TIMEOUT:?}: see its log");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child stopped with SIGTERM (killed after [`STOP_GRACE`]) when done, or when the run fails.
struct Stopping(Option<Child>, &'static str);

impl Stopping {
    fn stop(&mut self) {
        let Some(mut child) = self.0.take() else { return };
        progress(&format!("stopping {}", self.1));
        if crate::dev_cluster::terminate(child.id()).is_ok() {
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            progress(&format!("{} did not stop within {STOP_GRACE:?}: killing it", self.1));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Stopping {
    fn drop(&mut self) {
        self.stop();
    }
}
