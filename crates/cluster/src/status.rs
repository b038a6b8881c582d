//! A cluster gateway's [`gateway::ClusterStatus`]: what `/readyz`, `/metrics` and
//! `GET /v1/admin/cluster` say of the cluster, from its [`GatewayReplica`]. Behind the
//! `gateway-status` feature, so the book and feed roles link no gateway; `sportsbook gateway`
//! and the gateway's test harness in cluster mode install the same one.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;

use gateway::ClusterStatus;

use crate::GatewayReplica;

/// The cluster as `/readyz`, `/metrics` and `GET /v1/admin/cluster` show it.
#[derive(Debug)]
pub struct ReplicaStatus(Arc<GatewayReplica>, Option<Arc<projector::Published>>);

impl ReplicaStatus {
    /// `published`: the read models' position as this gateway sees it, when it serves them
    /// (their lag is then exported too).
    pub fn new(replica: Arc<GatewayReplica>, published: Option<Arc<projector::Published>>) -> ReplicaStatus {
        ReplicaStatus(replica, published)
    }
}

impl ClusterStatus for ReplicaStatus {
    fn unready_reasons(&self) -> Vec<&'static str> {
        let health = self.0.health();
        let mut reasons = Vec::new();
        if !health.nats_connected {
            reasons.push("nats_down");
        }
        if !health.leader_known {
            reasons.push("no_leader");
        }
        if health.lag_records > crate::REPLICA_LAG_READY_MAX_RECORDS
            || health.lag_seconds > crate::REPLICA_LAG_READY_MAX.as_secs_f64()
        {
            reasons.push("replica_lagging");
        }
        if health.replica_failed.is_some() {
            reasons.push("replica_failed");
        }
        reasons
    }

    fn encode_metrics(&self, out: &mut String) {
        let health = self.0.health();
        let gauges = [
            (
                "sportsbook_replica_position",
                "Journal position the gateway's replica has applied.",
                health.position as f64,
            ),
            (
                "sportsbook_replica_lag_records",
                "Journal records stored and not yet applied by the replica.",
                health.lag_records as f64,
            ),
            (
                "sportsbook_replica_lag_seconds",
                "Age of the replica's state while records wait (0 when caught up).",
                health.lag_seconds,
            ),
            (
                "sportsbook_cluster_leader_known",
                "1 while a book node holds the lease.",
                f64::from(u8::from(health.leader_known)),
            ),
            (
                "sportsbook_nats_connected",
                "1 while the NATS connection is up.",
                f64::from(u8::from(health.nats_connected)),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
        }
        if let Some(published) = &self.1 {
            // How old the models' state is while records wait: the wall clock minus the book
            // time of the last batch they hold (the replica's lag in seconds, measured alike).
            let behind = health.position > published.position();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as u64);
            let seconds = if behind { now.saturating_sub(published.book_time()) as f64 / 1_000.0 } else { 0.0 };
            let name = "sportsbook_projector_lag_seconds";
            let _ = write!(
                out,
                "# HELP {name} Age of the read models' state while records wait (0 when caught up).\n# TYPE {name} \
                 gauge\n{name} {seconds}\n"
            );
        }
        let name = "sportsbook_cluster_leader_changes";
        let _ = write!(
            out,
            "# HELP {name} Changes of the lease's holder seen.\n# TYPE {name} counter\n{name}_total {}\n",
            health.leader_changes
        );
        let name = "sportsbook_book_submit_seconds";
        let _ = write!(
            out,
            "# HELP {name} Time from forwarding a command to the leader's answer.\n# TYPE {name} histogram\n"
        );
        for (bound, count) in &health.submit_buckets {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = write!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}\n",
            health.submit_count, health.submit_seconds_total, health.submit_count
        );
    }

    fn view(&self) -> Pin<Box<dyn std::future::Future<Output = Result<gateway::ClusterView, String>> + Send + '_>> {
        Box::pin(async move {
            let view = self.0.cluster().await.map_err(|error| error.to_string())?;
            Ok(gateway::ClusterView {
                leader: view.leader.map(|(lease, info)| gateway::LeaderView {
                    pid: lease.pid,
                    // The registry's entry is refreshed more often than the lease.
                    position: info.map_or(lease.position, |info| info.position.max(lease.position)),
                    lease_expires_at: Some(gateway::lease_expiry(lease.renewed_at_ms + lease.lease_ms)),
                    node: lease.node,
                }),
                followers: view
                    .followers
                    .into_iter()
                    .map(|node| gateway::FollowerView {
                        pid: node.pid,
                        position: node.position,
                        node: node.node,
                        role: node.role,
                    })
                    .collect(),
                gateways: view
                    .gateways
                    .into_iter()
                    .map(|node| gateway::GatewayView {
                        url: node.url,
                        pid: node.pid,
                        node: node.node,
                        position: node.position,
                    })
                    .collect(),
                feeds: view
                    .feeds
                    .into_iter()
                    .map(|node| gateway::FeedView {
                        active: node.role == crate::ROLE_FEED,
                        url: node.url,
                        pid: node.pid,
                        node: node.node,
                        position: node.position,
                    })
                    .collect(),
            })
        })
    }
}
