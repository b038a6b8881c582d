//! `sportsbook book`: one book process of a cluster (leader or hot standby, `cluster::BookNode`)
//! with `/healthz`, `/readyz` and `/metrics` on its listen address. It prints one JSON line on
//! standard output once it listens (`{"role": "book", "pid", "node", "url"}`), logs its
//! progress and role changes on standard error, and stops cleanly on Ctrl-C or SIGTERM (a
//! leader releases the lease, so a standby takes over at once).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cluster::{BookNode, BookNodeOptions};

use crate::serve::{init_logging, LogFormat, ShutdownSignals};

/// How often the process checks whether its node stopped on its own (failed).
const NODE_CHECK_INTERVAL: Duration = Duration::from_millis(200);

pub struct BookRoleOptions {
    pub nats: Vec<String>,
    pub data_dir: PathBuf,
    pub lease: Duration,
    pub listen: SocketAddr,
    pub node_id: Option<String>,
    pub replicas: usize,
    pub snapshot_every_commands: u64,
    pub log_format: LogFormat,
}

/// Parses a lease: a whole number of seconds (`3s`) or milliseconds (`2500ms`).
pub fn parse_lease(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit_ms) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(seconds) = text.strip_suffix('s') {
        (seconds, 1000)
    } else {
        return Err(format!("{text:?}: expected seconds or milliseconds, e.g. 3s or 2500ms"));
    };
    let number: u64 = number.parse().map_err(|_| format!("{text:?}: expected a whole number, e.g. 3s"))?;
    let lease = Duration::from_millis(number.saturating_mul(unit_ms));
    if !(cluster::lease::LEASE_MIN..=cluster::lease::LEASE_MAX).contains(&lease) {
        return Err(format!(
            "{text:?}: the lease is {:?} to {:?}",
            cluster::lease::LEASE_MIN,
            cluster::lease::LEASE_MAX
        ));
    }
    Ok(lease)
}

pub fn run(options: BookRoleOptions) -> anyhow::Result<()> {
    init_logging(options.log_format);
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("creating the data directory {}", options.data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("book-http")
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(options.listen))
        .with_context(|| format!("listening on {}", options.listen))?;
    let address = listener.local_addr().context("the listen address")?;
    let url = format!("http://{address}");
    let mut node_options = BookNodeOptions::new(options.nats, options.data_dir);
    if let Some(node_id) = options.node_id {
        node_options.node_id = node_id;
    }
    node_options.lease = options.lease;
    node_options.replicas = options.replicas;
    node_options.snapshot_every_commands = options.snapshot_every_commands;
    node_options.url = Some(url.clone());
    let node_id = node_options.node_id.clone();
    let node = BookNode::start(node_options)?;
    // The node id is letters, digits, '-' and '_' (validated), the URL an address: no escaping.
    println!(r#"{{"role": "book", "pid": {}, "node": "{node_id}", "url": "{url}"}}"#, std::process::id());
    tracing::info!(%url, node = %node_id, "book node listening for /healthz, /readyz, /metrics");
    let probe = node.probe();
    let finished = {
        let mut signals = runtime.block_on(async { ShutdownSignals::install() });
        runtime.block_on(async {
            let server = tokio::spawn(cluster::http::serve(listener, probe.clone()));
            let stopped_on_its_own = async {
                loop {
                    tokio::time::sleep(NODE_CHECK_INTERVAL).await;
                    if probe.status().role == cluster::Role::Stopped {
                        return;
                    }
                }
            };
            let finished = tokio::select! {
                signal = signals.recv() => {
                    tracing::info!(signal, "stopping the book node");
                    false
                }
                () = stopped_on_its_own => true,
            };
            server.abort();
            finished
        })
    };
    let stopped = node.stop();
    match stopped {
        Err(failure) => anyhow::bail!("the book node failed: {failure}"),
        Ok(()) if finished => anyhow::bail!("the book node stopped on its own"),
        Ok(()) => {
            tracing::info!("book node stopped");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn leases_parse_with_their_unit_and_bounds() {
        assert_eq!(super::parse_lease("3s"), Ok(std::time::Duration::from_secs(3)));
        assert_eq!(super::parse_lease("2500ms"), Ok(std::time::Duration::from_millis(2500)));
        assert!(super::parse_lease("3").is_err());
        assert!(super::parse_lease("10ms").is_err());
        assert!(super::parse_lease("1000s").is_err());
        assert!(super::parse_lease("s").is_err());
    }
}
