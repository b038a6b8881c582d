//! `sportsbook dev-cluster --data-dir DIR`: a whole cluster on this machine, as child processes
//! of this one (issue 15 item 4): 3 `nats-server` nodes (`journal_nats::cluster::LocalCluster`:
//! free ports, the binary found as the tests find it), a book leader and a hot standby
//! (`sportsbook book`), 2 gateways (`--gateways N`; `sportsbook gateway`, edge state in Redis under a key
//! prefix derived from DIR), and the feed role (`sportsbook feed --demo`: the simulated
//! provider and the demo's seeded catalog and simulation).
//!
//! Progress goes to standard error while it starts; then standard output gets one JSON line
//! per process (`{"role": "nats" | "book" | "gateway" | "feed", "pid", "url"?}`) and `ready`.
//! The admin key (`DIR/admin-key`) and the JWT secret (`DIR/jwt-secret`), generated at the
//! first start and kept, are shared by every gateway; the admin key and the demo player's
//! credentials are printed on standard error, like the demo's. Each child logs to
//! `DIR/logs/NAME.log`.
//!
//! Supervision: a child that exits on its own is reported on standard error (the others keep
//! running: killing the leader to watch the standby take over is what a development cluster is
//! for); with `--restart-books` an exited book node is started again (`DevCluster::restart`),
//! for the failover benchmark (`sportsbook bench-failover`). Ctrl-C or SIGTERM stops the children in order, each with SIGTERM and a grace period
//! (then SIGKILL): the feed first (nothing more is submitted), then the gateways, the book's
//! standbys, the leader, and last the NATS nodes (SIGTERM: JetStream flushes its files). The
//! children run in their own process group, so a terminal's Ctrl-C reaches this process only
//! and the order holds; `sportsbook` children also get `SIGTERM` from the kernel should this
//! process die without stopping them (`SPORTSBOOK_PARENT_PID`, see `die_with_parent`); NATS
//! nodes left by a `dev-cluster` killed with SIGKILL are stopped by the next one on DIR
//! (`stop_leftover_nats`). One `dev-cluster` runs per DIR (`RunningMark`).
//!
//! The projector (`sportsbook projector --nats ... --store postgres://... --follow`) writes the
//! read models into PostgreSQL (`--postgres`, a schema derived from DIR), and every gateway
//! serves history, audit and reports from them (`--read-models`).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use journal_nats::cluster::LocalCluster;

use crate::serve::ShutdownSignals;

/// NATS nodes of the cluster (the journal's stream has 3 replicas).
pub const NATS_NODES: usize = 3;
/// Book processes: the leader and one hot standby.
pub const BOOK_NODES: usize = 2;
/// Gateways unless `--gateways` says otherwise.
pub const GATEWAYS: usize = 2;
/// `--gateways` at most: each is a process with its own replica of the book.
pub const GATEWAYS_MAX: usize = 16;
/// Redis of the gateways' edge state unless `--redis` says otherwise.
pub const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379";
/// PostgreSQL of the projector's read models unless `--postgres` says otherwise.
pub const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The generated admin key's file in DIR.
pub const ADMIN_KEY_FILE_NAME: &str = "admin-key";
/// How long one child may take to print its line and become ready.
pub const CHILD_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one child may take to stop after SIGTERM before it is killed.
pub const CHILD_STOP_GRACE: Duration = Duration::from_secs(20);
/// How often the supervisor looks at its children.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(200);
/// The environment variable naming the process whose death a child follows (`die_with_parent`).
pub const PARENT_PID_ENV: &str = "SPORTSBOOK_PARENT_PID";

#[derive(Clone, Debug)]
pub struct DevClusterOptions {
    pub data_dir: PathBuf,
    /// `redis://HOST[:PORT][/DB]` of the gateways' edge state.
    pub redis: String,
    /// PostgreSQL of the projector's read models (for the projector's role entry).
    pub postgres: String,
    /// `--feed-source` values for the feed role, as given (`NAME=uof+AMQP_URL#EXCHANGE`, ...).
    pub feed_sources: Vec<String>,
    /// Seed of the simulated provider and the demo simulation.
    pub seed: Option<u64>,
    /// Gateways to start (1 to [`GATEWAYS_MAX`]).
    pub gateways: usize,
    /// The gateways' rate limits off (`--rate-limit-per-address off --rate-limit-per-credential
    /// off`): benchmarks send everything from one address.
    pub no_rate_limits: bool,
    /// A book node that exits on its own is started again (same id and directory: it recovers
    /// and rejoins as a follower), for the failover benchmark.
    pub restart_books: bool,
}

/// What a child must show before the next one starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ready {
    /// `/readyz` answers 200.
    Readyz,
    /// `/readyz` answers 200 and says the feed role holds the lease (`"feed": "active"`).
    FeedActive,
}

/// One child to start: its role (the JSON line's), a name (its log, its id), its arguments.
#[derive(Debug)]
struct RoleSpec {
    role: &'static str,
    name: String,
    args: Vec<OsString>,
    env: Vec<(&'static str, OsString)>,
    ready: Ready,
}

/// A running child.
#[derive(Debug)]
struct Running {
    role: &'static str,
    name: String,
    child: Child,
    url: Option<String>,
    /// Reported as gone (on its own or stopped).
    gone: bool,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The cluster being started or run: stops whatever it started when dropped, so that an error
/// half way leaves no process behind.
struct DevCluster {
    options: DevClusterOptions,
    dir: PathBuf,
    nats: Option<LocalCluster>,
    /// Reported NATS nodes that died.
    nats_gone: Vec<bool>,
    children: Vec<Running>,
    admin_key: String,
    edge_prefix: String,
    schema: String,
    /// The NATS nodes' client URLs, comma-separated (for a book started again).
    nats_urls: String,
}

pub fn run(options: DevClusterOptions) -> anyhow::Result<()> {
    if !(1..=GATEWAYS_MAX).contains(&options.gateways) {
        bail!("--gateways {}: must be 1 to {GATEWAYS_MAX}", options.gateways);
    }
    // First: a Ctrl-C from now on is ours to handle (children are stopped in order).
    let signals_runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the signal handler")?;
    let mut signals = signals_runtime.block_on(async { ShutdownSignals::install() });
    let dir = options.data_dir.clone();
    crate::secure_data_dir(&dir)?;
    let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    std::fs::create_dir_all(dir.join("logs")).context("creating the logs directory")?;
    let admin_key = admin_key(&dir)?;
    let (_, source) = crate::secrets::jwt_secret(None, None, &dir)?;
    progress(&format!("JWT secret: {source}"));
    check_redis(&options.redis)?;
    let _running = RunningMark::take(&dir)?;
    stop_leftover_nats(&dir);
    let digest = gateway::sha256_hex(dir.to_string_lossy().as_bytes());
    let mut cluster = DevCluster {
        edge_prefix: format!("sportsbook-dev-{}:", &digest[..12]),
        schema: format!("dev_{}", &digest[..12]),
        options,
        dir,
        nats: None,
        nats_gone: vec![false; NATS_NODES],
        children: Vec::new(),
        admin_key,
        nats_urls: String::new(),
    };
    let started = cluster.start(&signals_runtime, &mut signals);
    match started {
        Ok(true) => {}
        Ok(false) => {
            cluster.stop();
            return Ok(());
        }
        Err(error) => {
            progress(&format!("start failed: {error:#}"));
            cluster.stop();
            return Err(error);
        }
    }
    cluster.announce()?;
    let signal = cluster.supervise(&signals_runtime, &mut signals);
    progress(&format!("{signal}: stopping the cluster"));
    cluster.stop();
    progress("stopped");
    Ok(())
}

fn progress(text: &str) {
    crate::output::print_text_stderr(&format!("dev-cluster: {text}\n"));
}

/// The admin key kept in DIR, generated at the first start (mode 0600).
fn admin_key(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(ADMIN_KEY_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim().to_string();
            crate::secrets::admin_key(Some(key.clone()))
                .with_context(|| format!("the admin key in {}", path.display()))?;
            return Ok(key);
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    let key = format!("{}{}", gateway::API_KEY_PREFIX, gateway::random_token());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(format!("{key}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    progress(&format!("generated the admin key into {}", path.display()));
    Ok(key)
}

/// Refuses to start without the gateways' Redis (a gateway would start and fall back to
/// per-process limits; a development cluster should say at once what is missing).
fn check_redis(url: &str) -> anyhow::Result<()> {
    gateway::check_redis_url(url).map_err(|error| anyhow::anyhow!("--redis: {error}"))?;
    let rest = url.trim_start_matches("redis://");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let address = if host_port.contains(':') { host_port.to_string() } else { format!("{host_port}:6379") };
    let answer = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect(&address)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"PING\r\n")?;
        let mut buffer = [0u8; 64];
        let read = stream.read(&mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer[..read]).into_owned())
    })();
    match answer {
        Ok(answer) if answer.starts_with("+PONG") || answer.starts_with("-NOAUTH") => Ok(()),
        Ok(answer) => bail!("Redis at {address} (--redis) answered PING with {:?}", answer.trim()),
        Err(error) => bail!(
            "Redis is not reachable at {address} (--redis {url}): {error}; the gateways keep their edge state there"
        ),
    }
}

impl DevCluster {
    fn binary() -> anyhow::Result<PathBuf> {
        std::env::current_exe().context("finding this sportsbook binary")
    }

    /// The children in start order. Stopped in reverse, the book's leader last of the books.
    /// The projector comes after the books (it opens the journal's stream, which the first
    /// book creates) and before the gateways that read its models.
    fn roles(&self, nats: &str) -> Vec<RoleSpec> {
        let args = |items: &[&str]| items.iter().map(OsString::from).collect::<Vec<_>>();
        let mut roles = Vec::new();
        for i in 1..=BOOK_NODES {
            let name = format!("book-{i}");
            let mut book = args(&["book", "--nats", nats, "--node-id", &name, "--listen", "127.0.0.1:0"]);
            book.extend([OsString::from("--data-dir"), self.dir.join(&name).into_os_string()]);
            roles.push(RoleSpec { role: "book", name, args: book, env: Vec::new(), ready: Ready::Readyz });
        }
        let mut projector = args(&["projector", "--nats", nats, "--store", &self.options.postgres]);
        projector.extend(args(&["--schema", &self.schema, "--follow", "--listen", "127.0.0.1:0"]));
        // A restart replays the projector's book from book-1's newest snapshot, not from 0.
        projector.extend([OsString::from("--snapshots-from"), self.dir.join("book-1").into_os_string()]);
        roles.push(RoleSpec {
            role: "projector",
            name: "projector".into(),
            args: projector,
            env: Vec::new(),
            ready: Ready::Readyz,
        });
        let secret = self.dir.join(crate::secrets::JWT_SECRET_FILE_NAME).into_os_string();
        for i in 1..=self.options.gateways {
            let name = format!("gateway-{i}");
            let mut gateway = args(&["gateway", "--nats", nats, "--gateway-id", &name, "--listen", "127.0.0.1:0"]);
            gateway.extend(args(&["--edge-state", &self.options.redis, "--edge-state-prefix", &self.edge_prefix]));
            gateway.extend(args(&["--read-models", &self.options.postgres, "--read-models-schema", &self.schema]));
            gateway.extend([OsString::from("--data-dir"), self.dir.join(&name).into_os_string()]);
            if self.options.no_rate_limits {
                gateway.extend(args(&["--rate-limit-per-address", "off", "--rate-limit-per-credential", "off"]));
            }
            roles.push(RoleSpec {
                role: "gateway",
                name,
                args: gateway,
                env: vec![
                    (crate::secrets::JWT_SECRET_FILE_ENV, secret.clone()),
                    (crate::secrets::ADMIN_KEY_ENV, OsString::from(&self.admin_key)),
                ],
                ready: Ready::Readyz,
            });
        }
        let mut feed = args(&["feed", "--nats", nats, "--node-id", "feed-1", "--listen", "127.0.0.1:0", "--demo"]);
        feed.extend([OsString::from("--data-dir"), self.dir.join("feed").into_os_string()]);
        if let Some(seed) = self.options.seed {
            feed.extend(args(&["--seed", &seed.to_string()]));
        }
        for source in &self.options.feed_sources {
            feed.extend(args(&["--feed-source", source]));
        }
        roles.push(RoleSpec {
            role: "feed",
            name: "feed-1".into(),
            args: feed,
            env: Vec::new(),
            ready: Ready::FeedActive,
        });
        roles
    }

    /// Starts everything; `Ok(false)` when a signal came first (what started is stopped by the
    /// caller).
    fn start(
        &mut self,
        signals_runtime: &tokio::runtime::Runtime,
        signals: &mut ShutdownSignals,
    ) -> anyhow::Result<bool> {
        let interrupted = |signals: &mut ShutdownSignals| {
            signals_runtime.block_on(async {
                tokio::select! {
                    signal = signals.recv() => Some(signal),
                    () = tokio::time::sleep(Duration::from_millis(1)) => None,
                }
            })
        };
        progress(&format!("starting {NATS_NODES} nats-server nodes in {}", self.dir.join("nats").display()));
        let nats = LocalCluster::start(&self.dir.join("nats"), NATS_NODES).context("starting the NATS nodes")?;
        let urls = nats.urls().join(",");
        progress(&format!("NATS: {urls}"));
        self.nats_urls = urls.clone();
        // For the next start, should this process die without stopping them (SIGKILL).
        let pids: String = (0..nats.len()).filter_map(|i| nats.pid(i)).map(|pid| format!("{pid}\n")).collect();
        std::fs::write(self.dir.join(NATS_PIDS_FILE_NAME), pids).context("writing the NATS nodes' pids")?;
        self.nats = Some(nats);
        progress(&format!(
            "gateways' edge state: {} under the prefix {:?}; read models: {} schema {}",
            self.options.redis,
            self.edge_prefix,
            redact(&self.options.postgres),
            self.schema
        ));
        for spec in self.roles(&urls) {
            if let Some(signal) = interrupted(signals) {
                progress(&format!("{signal} while starting"));
                return Ok(false);
            }
            progress(&format!("starting {} ({})", spec.name, spec.role));
            let running = self.spawn(&spec)?;
            let (name, pid) = (running.name.clone(), running.pid());
            self.children.push(running);
            self.wait_ready(self.children.len() - 1, spec.ready)?;
            progress(&format!("{name} ready (pid {pid})"));
        }
        Ok(true)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// Starts one child in its own process group, its standard error (and standard output after
    /// its first line) in its log, and reads its first line: `{"role", "pid", ..., "url"}`.
    fn spawn(&self, spec: &RoleSpec) -> anyhow::Result<Running> {
        use std::os::unix::process::CommandExt;
        let log_path = self.log_path(&spec.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = Command::new(Self::binary()?);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(name, value)| (name, value)))
            .env(PARENT_PID_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.try_clone().context("duplicating a log handle")?))
            .process_group(0);
        let mut child = command.spawn().with_context(|| format!("starting {}", spec.name))?;
        let stdout = child.stdout.take().context("the child's standard output")?;
        let (line_sender, first_line) = mpsc::channel::<String>();
        // Reads the first line for us, then copies whatever else the child prints to its log
        // (a child whose pipe filled up would block).
        std::thread::Builder::new()
            .name(format!("{}-stdout", spec.name))
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let _ = line_sender.send(line);
                let mut log = log;
                let _ = std::io::copy(&mut reader, &mut log);
            })
            .context("starting a reader thread")?;
        let mut running = Running { role: spec.role, name: spec.name.clone(), child, url: None, gone: false };
        let line = match first_line.recv_timeout(CHILD_START_TIMEOUT) {
            Ok(line) if !line.trim().is_empty() => line,
            Ok(_) | Err(_) => {
                let status = running.child.try_wait().ok().flatten();
                let _ = running.child.kill();
                let _ = running.child.wait();
                bail!(
                    "{} did not start ({}); its log {}:\n{}",
                    spec.name,
                    status.map_or_else(|| "no line on standard output".to_string(), |status| status.to_string()),
                    log_path.display(),
                    log_tail(&log_path)
                );
            }
        };
        let announced: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("{} printed {:?}, not its JSON line", spec.name, line.trim()))?;
        running.url = announced["url"].as_str().map(str::to_string);
        Ok(running)
    }

    fn wait_ready(&mut self, index: usize, ready: Ready) -> anyhow::Result<()> {
        let deadline = Instant::now() + CHILD_START_TIMEOUT;
        let log_path = self.log_path(&self.children[index].name);
        let running = &mut self.children[index];
        let url = running.url.clone().with_context(|| format!("{} printed no url", running.name))?;
        loop {
            if let Ok(Some(status)) = running.child.try_wait() {
                running.gone = true;
                bail!("{} exited with {status} while starting; its log:\n{}", running.name, log_tail(&log_path));
            }
            let last = match http_get(&url, "/readyz") {
                Ok((200, body)) => {
                    let active =
                        || serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|body| body["feed"] == "active");
                    if ready == Ready::Readyz || active() {
                        return Ok(());
                    }
                    body
                }
                Ok((status, body)) => format!("{status} {body}"),
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} not ready after {CHILD_START_TIMEOUT:?} (/readyz: {}); its log:\n{}",
                    running.name,
                    last.trim(),
                    log_tail(&log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One JSON line per process on standard output, then `ready`; the credentials on standard
    /// error.
    fn announce(&self) -> anyhow::Result<()> {
        let mut lines = String::new();
        if let Some(nats) = &self.nats {
            for i in 0..nats.len() {
                let pid = nats.pid(i).context("a NATS node is not running")?;
                lines.push_str(&format!(r#"{{"role": "nats", "pid": {pid}, "url": "{}"}}"#, nats.monitor_url(i)));
                lines.push('\n');
            }
        }
        for child in &self.children {
            // Roles are ours, URLs addresses: nothing to escape.
            let url = child.url.as_ref().map(|url| format!(r#", "url": "{url}""#)).unwrap_or_default();
            lines.push_str(&format!(r#"{{"role": "{}", "pid": {}{url}}}"#, child.role, child.pid()));
            lines.push('\n');
        }
        lines.push_str("ready\n");
        let mut text = String::from("\n");
        text.push_str(&format!(
            "admin key: {} (kept in {})\n",
            self.admin_key,
            self.dir.join(ADMIN_KEY_FILE_NAME).display()
        ));
        let credentials = self.dir.join("feed").join(crate::serve::DEMO_CREDENTIALS_FILE_NAME);
        match crate::serve::read_credentials(&credentials) {
            Some((username, password)) => {
                text.push_str(&format!("demo player: username {username} password {password}\n"))
            }
            None => text.push_str(&format!("demo player: not known (no {})\n", credentials.display())),
        }
        let gateways: Vec<&str> = self
            .children
            .iter()
            .filter(|child| child.role == "gateway")
            .filter_map(|child| child.url.as_deref())
            .collect();
        text.push_str(&format!("gateways: {}\nlogs: {}\n", gateways.join(" "), self.dir.join("logs").display()));
        if let Some(url) = gateways.first() {
            text.push_str(&format!(
                "try:\n  curl {url}/v1/events\n  curl -H 'authorization: Bearer {}' {url}/v1/admin/cluster\n",
                self.admin_key
            ));
        }
        text.push_str("Ctrl-C stops the cluster.\n\n");
        crate::output::print_text_stderr(&text);
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(lines.as_bytes()).and_then(|()| stdout.flush()).context("writing to standard output")?;
        Ok(())
    }

    /// Watches the children until a signal; reports each that exits on its own.
    fn supervise(&mut self, signals_runtime: &tokio::runtime::Runtime, signals: &mut ShutdownSignals) -> &'static str {
        loop {
            let signal = signals_runtime.block_on(async {
                tokio::select! {
                    signal = signals.recv() => Some(signal),
                    () = tokio::time::sleep(SUPERVISE_INTERVAL) => None,
                }
            });
            if let Some(signal) = signal {
                return signal;
            }
            let mut exited = Vec::new();
            for (index, child) in self.children.iter_mut().enumerate() {
                if child.gone {
                    continue;
                }
                if let Ok(Some(status)) = child.child.try_wait() {
                    child.gone = true;
                    exited.push(index);
                    progress(&format!(
                        "{} (pid {}) exited unexpectedly: {status}; its log: {}",
                        child.name,
                        child.child.id(),
                        self.dir.join("logs").join(format!("{}.log", child.name)).display()
                    ));
                }
            }
            if self.options.restart_books {
                for index in exited {
                    if self.children[index].role == "book" {
                        self.restart(index);
                    }
                }
            }
            if let Some(nats) = &mut self.nats {
                for (i, gone) in self.nats_gone.iter_mut().enumerate() {
                    if *gone {
                        continue;
                    }
                    if let Some(status) = nats.exit_status(i) {
                        *gone = true;
                        progress(&format!("nats-server {} exited unexpectedly: {status}", nats.name(i)));
                    }
                }
            }
        }
    }

    /// Stops every child in order (see the module documentation), then the NATS nodes. Safe to
    /// call more than once.
    fn stop(&mut self) {
        // Tiers, each stopped whole (SIGTERM to all of it, then waited for) before the next: the
        // feed, the gateways, the book's standbys, the leader.
        let of_role = |role: &str| -> Vec<usize> {
            (0..self.children.len()).rev().filter(|&i| self.children[i].role == role).collect()
        };
        let (books, leaders): (Vec<usize>, Vec<usize>) = of_role("book").into_iter().partition(|&i| !self.is_leader(i));
        let others: Vec<usize> = (0..self.children.len())
            .rev()
            .filter(|&i| !matches!(self.children[i].role, "feed" | "gateway" | "book"))
            .collect();
        for tier in [of_role("feed"), of_role("gateway"), others, books, leaders] {
            self.stop_tier(&tier);
        }
        if let Some(mut nats) = self.nats.take() {
            let running: Vec<(usize, u32)> = (0..nats.len()).filter_map(|i| nats.pid(i).map(|pid| (i, pid))).collect();
            for &(i, pid) in &running {
                progress(&format!("stopping nats-server {} (pid {pid})", nats.name(i)));
                if let Err(error) = terminate(pid) {
                    progress(&format!("cannot signal nats-server {}: {error}", nats.name(i)));
                }
            }
            for &(i, _) in &running {
                if !nats.wait_exit(i, CHILD_STOP_GRACE) {
                    progress(&format!("nats-server {} did not stop in time: killing it", nats.name(i)));
                    nats.kill(i);
                }
            }
            let _ = std::fs::remove_file(self.dir.join(NATS_PIDS_FILE_NAME));
        }
    }

    /// SIGTERM to each child of `tier` still running, then waits for each (SIGKILL past
    /// [`CHILD_STOP_GRACE`]).
    fn stop_tier(&mut self, tier: &[usize]) {
        let mut signalled = Vec::new();
        for &index in tier {
            let child = &mut self.children[index];
            if child.gone || matches!(child.child.try_wait(), Ok(Some(_))) {
                child.gone = true;
                continue;
            }
            progress(&format!("stopping {} (pid {})", child.name, child.child.id()));
            if let Err(error) = terminate(child.child.id()) {
                progress(&format!("cannot signal {}: {error}", child.name));
            }
            signalled.push(index);
        }
        let deadline = Instant::now() + CHILD_STOP_GRACE;
        for index in signalled {
            let child = &mut self.children[index];
            loop {
                match child.child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            progress(&format!("{} stopped with {status}", child.name));
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    Ok(None) | Err(_) => {
                        progress(&format!("{} did not stop in time: killing it", child.name));
                        let _ = child.child.kill();
                        let _ = child.child.wait();
                        break;
                    }
                }
            }
            child.gone = true;
        }
    }

    /// `--restart-books`: starts book node `index` again with its arguments (same node id and
    /// directory), in place of the exited one, and waits until it answers `/readyz`. A failure
    /// is reported and the node stays down (the supervisor goes on).
    fn restart(&mut self, index: usize) {
        let name = self.children[index].name.clone();
        let Some(spec) = self.roles(&self.nats_urls).into_iter().find(|spec| spec.name == name) else {
            return;
        };
        progress(&format!("starting {name} again (--restart-books)"));
        let restarted = self.spawn(&spec).and_then(|running| {
            let pid = running.pid();
            self.children[index] = running;
            self.wait_ready(index, spec.ready).map(|()| pid)
        });
        match restarted {
            Ok(pid) => progress(&format!("{name} ready again (pid {pid})")),
            Err(error) => progress(&format!("{name} did not start again: {error:#}")),
        }
    }

    fn is_leader(&self, index: usize) -> bool {
        let Some(url) = &self.children[index].url else { return false };
        match http_get(url, "/readyz") {
            Ok((_, body)) => {
                serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|body| body["role"] == "leader")
            }
            Err(_) => false,
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        // Only what `stop` has not stopped (an early return); quick: SIGKILL and reap.
        for child in &mut self.children {
            if !child.gone {
                let _ = child.child.kill();
                let _ = child.child.wait();
            }
        }
    }
}

/// The file in DIR naming the running `dev-cluster`'s pid.
pub const RUNNING_FILE_NAME: &str = "dev-cluster.pid";
/// The file in DIR naming the NATS nodes' pids, one a line.
pub const NATS_PIDS_FILE_NAME: &str = "nats.pids";

/// The command line of a process, NUL-separated arguments joined by spaces; `None` if it is gone.
fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|byte| *byte == 0).map(String::from_utf8_lossy).collect::<Vec<_>>().join(" "))
}

/// `DIR/dev-cluster.pid` while this command runs on DIR: a second `dev-cluster` on the same
/// directory (its processes would fight over the books' directories) is refused. Removed when
/// dropped; a mark left by a process that died (or whose pid is now another program's) is
/// taken over.
struct RunningMark(PathBuf);

impl RunningMark {
    fn take(dir: &Path) -> anyhow::Result<RunningMark> {
        let path = dir.join(RUNNING_FILE_NAME);
        if let Some(pid) = std::fs::read_to_string(&path).ok().and_then(|text| text.trim().parse::<u32>().ok()) {
            let ours = command_line(pid).is_some_and(|line| line.contains("dev-cluster"));
            if pid != std::process::id() && ours {
                bail!("another dev-cluster (pid {pid}) runs on {}; stop it first", dir.display());
            }
        }
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(RunningMark(path))
    }
}

impl Drop for RunningMark {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// NATS nodes a previous `dev-cluster` on DIR left running (it was killed with SIGKILL, which
/// it cannot handle): each pid of `DIR/nats.pids` whose command line names this directory's
/// node configuration is sent SIGTERM (then SIGKILL), so that the new nodes get their files.
/// Processes that are not those nodes are never touched.
fn stop_leftover_nats(dir: &Path) {
    let path = dir.join(NATS_PIDS_FILE_NAME);
    let Ok(text) = std::fs::read_to_string(&path) else { return };
    let config = dir.join("nats").to_string_lossy().into_owned();
    for pid in text.lines().filter_map(|line| line.trim().parse::<u32>().ok()) {
        let leftover = command_line(pid).is_some_and(|line| line.contains("nats-server") && line.contains(&config));
        if !leftover {
            continue;
        }
        progress(&format!("stopping nats-server pid {pid} left running by an earlier dev-cluster on this directory"));
        let _ = terminate(pid);
        let deadline = Instant::now() + CHILD_STOP_GRACE;
        while command_line(pid).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if command_line(pid).is_some() {
            if let Some(target) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// SIGTERM to a child.
pub(crate) fn terminate(pid: u32) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("not a process id"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).map_err(std::io::Error::from)
}

/// A `sportsbook` child started by `dev-cluster` ([`PARENT_PID_ENV`] set) asks the kernel for
/// SIGTERM when its parent dies, so that a `dev-cluster` killed with SIGKILL leaves no book,
/// gateway or feed running (it cannot do that for the `nats-server` nodes). If the parent is
/// already gone, the child stops at once.
pub fn die_with_parent() -> anyhow::Result<()> {
    let Some(parent) = std::env::var(PARENT_PID_ENV).ok().and_then(|pid| pid.parse::<i32>().ok()) else {
        return Ok(());
    };
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .context("asking for the parent's death signal")?;
    if rustix::process::getppid().map(rustix::process::Pid::as_raw_nonzero).map(i32::from) != Some(parent) {
        bail!("the dev-cluster process {parent} that started this one is gone");
    }
    Ok(())
}

/// A URL without its password, for progress lines.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The last lines of a log, for an error.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(30).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// A minimal HTTP/1.0 GET of `path` on `http://HOST:PORT`: status and body.
fn http_get(url: &str, path: &str) -> std::io::Result<(u16, String)> {
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {response:?}")))?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_progress_lines() {
        assert_eq!(super::redact("postgres://postgres@127.0.0.1:5432/test"), "postgres://postgres@127.0.0.1:5432/test");
        assert_eq!(super::redact("postgres://u:secret@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(super::redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
