//! Starts a local cluster of `nats-server` processes with JetStream: for tests, and for a
//! development cluster on one machine. Every node listens on 127.0.0.1 on free ports, keeps
//! its JetStream files and its log under the directory given, and allows messages of the
//! journal's largest record ([`crate::SERVER_MAX_PAYLOAD_MIN`]).
//!
//! [`LocalCluster`] owns the processes: dropping it kills (SIGKILL) and reaps every node still
//! running, also while a panicking test unwinds. A process killed with SIGKILL itself cannot
//! run that, so its nodes are left running then.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the `nats-server` binary to run.
pub const NATS_SERVER_ENV: &str = "SPORTSBOOK_NATS_SERVER";

/// Where Debian's `nats-server` package installs the binary (`.ci/install-nats-server`).
pub const NATS_SERVER_DEFAULT: &str = "/usr/sbin/nats-server";

/// How long a node may take to listen, and the cluster to elect its JetStream meta leader.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts tried when a port chosen free was taken before the server bound it.
pub const START_ATTEMPTS: usize = 3;

/// `max_payload` of every node: the journal's largest record plus its headers, rounded up.
pub const NODE_MAX_PAYLOAD: usize = crate::SERVER_MAX_PAYLOAD_MIN.next_multiple_of(1024 * 1024);

/// Why a cluster could not be started or a node restarted.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "nats-server not found: set {NATS_SERVER_ENV} or install it (`bash .ci/install-nats-server`, Debian's \
         package `nats-server`); looked at {tried}"
    )]
    BinaryNotFound { tried: String },

    #[error("cannot start {}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("nats-server node {node} did not come up: {reason}; its log ({}):\n{log}", log_path.display())]
    NodeFailed { node: usize, reason: String, log_path: PathBuf, log: String },

    #[error("cluster set-up i/o error: {op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

/// One node's ports, files and process.
#[derive(Debug)]
struct Node {
    name: String,
    client_port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running local cluster. See the module documentation.
#[derive(Debug)]
pub struct LocalCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
}

/// The `nats-server` binary to run: [`NATS_SERVER_ENV`], else [`NATS_SERVER_DEFAULT`], else
/// the first `nats-server` on `PATH`.
pub fn nats_server_binary() -> Result<PathBuf, ClusterError> {
    if let Some(path) = std::env::var_os(NATS_SERVER_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ClusterError::BinaryNotFound { tried: format!("{NATS_SERVER_ENV}={}", path.display()) })
        };
    }
    let mut tried = vec![NATS_SERVER_DEFAULT.to_owned()];
    if Path::new(NATS_SERVER_DEFAULT).is_file() {
        return Ok(PathBuf::from(NATS_SERVER_DEFAULT));
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
    }
    Err(ClusterError::BinaryNotFound { tried: tried.join(", ") })
}

impl LocalCluster {
    /// Starts `nodes` nodes (1 for a single server, 3 for the replicated journal) with their
    /// files under `dir`, and waits until each listens and JetStream has a meta leader.
    pub fn start(dir: &Path, nodes: usize) -> Result<Self, ClusterError> {
        Self::start_with(&nats_server_binary()?, dir, nodes)
    }

    /// [`LocalCluster::start`] with this binary.
    ///
    /// Ports are free when chosen but released for the servers, so another process may take
    /// one in between: a start that fails on a port in use is tried again on other ports (up
    /// to [`START_ATTEMPTS`] times), from empty JetStream directories.
    pub fn start_with(binary: &Path, dir: &Path, nodes: usize) -> Result<Self, ClusterError> {
        assert!(nodes >= 1, "a cluster needs at least one node");
        let mut attempt = 1;
        loop {
            match Self::start_once(binary, dir, nodes) {
                Err(ClusterError::NodeFailed { log, .. })
                    if attempt < START_ATTEMPTS && log.contains("address already in use") =>
                {
                    for i in 0..nodes {
                        let store = dir.join(format!("n{i}"));
                        if store.exists() {
                            fs::remove_dir_all(&store)
                                .map_err(|source| io(format!("remove {}", store.display()), source))?;
                        }
                        let log = dir.join(format!("n{i}.log"));
                        fs::remove_file(&log)
                            .or_else(|err| if err.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(err) })
                            .map_err(|source| io(format!("remove {}", log.display()), source))?;
                    }
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn start_once(binary: &Path, dir: &Path, nodes: usize) -> Result<Self, ClusterError> {
        fs::create_dir_all(dir).map_err(|source| io(format!("create {}", dir.display()), source))?;
        // Free ports: all taken at once so that they differ, then released for the servers.
        let listeners: Vec<TcpListener> = (0..nodes * 3)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .map_err(|source| io("find free ports".into(), source))?;
        let ports: Vec<u16> = listeners
            .iter()
            .map(|listener| listener.local_addr().map(|addr| addr.port()))
            .collect::<Result<_, _>>()
            .map_err(|source| io("find free ports".into(), source))?;
        drop(listeners);
        let route_ports: Vec<u16> = (0..nodes).map(|i| ports[3 * i + 2]).collect();
        let mut cluster = LocalCluster { binary: binary.to_owned(), nodes: Vec::with_capacity(nodes) };
        for i in 0..nodes {
            let name = format!("n{i}");
            let store = dir.join(&name);
            let config = dir.join(format!("{name}.conf"));
            let (client_port, http_port, route_port) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let mut text = format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{client_port}\"\nhttp: \"127.0.0.1:{http_port}\"\n\
                 max_payload: {NODE_MAX_PAYLOAD}\nmax_pending: {pending}\n\
                 jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 268435456\n}}\n",
                pending = 2 * NODE_MAX_PAYLOAD,
                store = store.display().to_string(),
            );
            if nodes > 1 {
                let routes: Vec<String> =
                    route_ports.iter().map(|port| format!("\"nats-route://127.0.0.1:{port}\"")).collect();
                text.push_str(&format!(
                    "cluster {{\n  name: sportsbook\n  listen: \"127.0.0.1:{route_port}\"\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                ));
            }
            fs::write(&config, text).map_err(|source| io(format!("write {}", config.display()), source))?;
            cluster.nodes.push(Node {
                name,
                client_port,
                http_port,
                config,
                log: dir.join(format!("n{i}.log")),
                child: None,
            });
        }
        for i in 0..nodes {
            cluster.spawn(i)?;
        }
        for i in 0..nodes {
            cluster.wait_listening(i)?;
        }
        for i in 0..nodes {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    /// Number of nodes, running or not.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never: it is started with at least one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Client URL of every node (`nats://127.0.0.1:PORT`), running or not.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// Client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Server name of node `i` (as JetStream reports stream leaders).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// Process id of node `i` while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Monitoring URL of node `i` (`http://127.0.0.1:PORT`: `/healthz`, `/varz`, `/jsz`).
    pub fn monitor_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].http_port)
    }

    /// How node `i` ended, once it has (reaped then); `None` while it runs or when it was not
    /// started. For a supervisor that reports a node dying on its own.
    pub fn exit_status(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let status = self.nodes[i].child.as_mut().and_then(|child| child.try_wait().ok().flatten());
        if status.is_some() {
            self.nodes[i].child = None;
        }
        status
    }

    /// Waits up to `timeout` for node `i` to exit (after a SIGTERM sent by the caller: a clean
    /// shutdown that flushes JetStream's files), reaping it; `false` if it still runs.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.nodes[i].child.as_mut().map(Child::try_wait) {
                None | Some(Ok(Some(_))) | Some(Err(_)) => {
                    self.nodes[i].child = None;
                    return true;
                }
                Some(Ok(None)) if Instant::now() >= deadline => return false,
                Some(Ok(None)) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Kills node `i` with SIGKILL (no clean shutdown) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            // Fails only when it has already exited; it is reaped either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its ports and files, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_listening(i)?;
        self.wait_healthy(i)
    }

    /// Kills every node (SIGKILL), starts them all again and waits until all are healthy:
    /// what a cluster-wide crash and restart of the processes looks like.
    pub fn restart_all(&mut self) -> Result<(), ClusterError> {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        for i in 0..self.nodes.len() {
            self.spawn(i)?;
        }
        for i in 0..self.nodes.len() {
            self.wait_listening(i)?;
        }
        for i in 0..self.nodes.len() {
            self.wait_healthy(i)?;
        }
        Ok(())
    }

    /// Node `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(&self.nodes[i].log).unwrap_or_else(|err| format!("(log unreadable: {err})"))
    }

    fn spawn(&mut self, i: usize) -> Result<(), ClusterError> {
        let node = &self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|source| io(format!("open {}", node.log.display()), source))?;
        let log_err = log.try_clone().map_err(|source| io("duplicate the log handle".into(), source))?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|source| ClusterError::Spawn { binary: self.binary.clone(), source })?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    fn failed(&self, i: usize, reason: String) -> ClusterError {
        let log = self.log(i);
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        ClusterError::NodeFailed { node: i, reason, log_path: self.nodes[i].log.clone(), log }
    }

    /// Fails when the process has exited.
    fn check_running(&mut self, i: usize) -> Result<(), ClusterError> {
        let status = match self.nodes[i].child.as_mut() {
            None => return Err(self.failed(i, "it is not running".into())),
            Some(child) => child.try_wait(),
        };
        match status {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.nodes[i].child = None;
                Err(self.failed(i, format!("it exited with {status}")))
            }
            Err(err) => Err(self.failed(i, format!("its status is unknown: {err}"))),
        }
    }

    fn wait_listening(&mut self, i: usize) -> Result<(), ClusterError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_running(i)?;
            if TcpStream::connect(("127.0.0.1", self.nodes[i].client_port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.failed(i, format!("not listening after {START_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the node's `/healthz` answers 200: JetStream is up and, in a cluster, the
    /// node knows the meta leader.
    fn wait_healthy(&mut self, i: usize) -> Result<(), ClusterError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_running(i)?;
            let last = match http_get(self.nodes[i].http_port, "/healthz") {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("/healthz answered {status}: {}", body.trim()),
                Err(err) => format!("/healthz: {err}"),
            };
            if Instant::now() > deadline {
                return Err(self.failed(i, format!("not healthy after {START_TIMEOUT:?} ({last})")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

fn io(op: String, source: std::io::Error) -> ClusterError {
    ClusterError::Io { op, source }
}

/// A minimal HTTP/1.0 GET on 127.0.0.1 (the monitoring port): status and body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
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
