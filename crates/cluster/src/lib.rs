//! Cluster mode of the book (issue 15 item 2): one leader and hot standbys over NATS JetStream.
//!
//! - [`lease`]: who should lead, a key in a JetStream key-value bucket taken with `create`,
//!   renewed by compare-and-set on its revision, lapsing on the servers' clock.
//! - [`node`]: `BookNode`, the `sportsbook book` role. A standby recovers (local snapshot and
//!   the replicated journal), then follows the journal record by record exactly as recovery
//!   replays it (`engine::Replica`), writing snapshots of its warm book. On taking the lease it
//!   reads to the journal's end, appends a leader marker (an empty batch: the journal fences
//!   the deposed leader from then on), and starts the sequencer on that book.
//! - [`protocol`] and [`client`]: gateways submit commands over NATS request/reply to
//!   whichever node leads (`BookClient`), retrying with the same idempotency key.
//! - [`gateway`]: `GatewayReplica`, a cluster gateway's local read replica (an engine replica
//!   fed from the journal, commands forwarded to the leader).
//! - [`registry`]: every node publishes its pid, role and position, and `BookClient::cluster`
//!   reads them with the lease (`GET /v1/admin/cluster`).
//! - [`status`] (feature `gateway-status`): `ReplicaStatus`, what a cluster gateway's
//!   `/readyz`, `/metrics` and `GET /v1/admin/cluster` say of the cluster.

pub mod client;
pub mod gateway;
pub mod http;
pub mod lease;
pub mod node;
pub mod protocol;
pub mod registry;
#[cfg(feature = "gateway-status")]
pub mod status;

pub use client::{BookClient, BookClientOptions, ClientError};
pub use gateway::{
    GatewayHealth, GatewayReplica, GatewayReplicaOptions, REPLICA_LAG_READY_MAX, REPLICA_LAG_READY_MAX_RECORDS,
};
pub use lease::{Lease, LeaseRecord, LEASE_DEFAULT};
pub use node::{BookNode, BookNodeOptions, NodeStatus, Role};
pub use registry::{ClusterView, NodeInfo, ROLE_FEED, ROLE_FEED_STANDBY, ROLE_GATEWAY};
#[cfg(feature = "gateway-status")]
pub use status::ReplicaStatus;

/// Why the cluster's machinery failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("NATS: {op}: {reason}")]
    Nats { op: &'static str, reason: String },
    #[error("engine: {0}")]
    Engine(#[from] engine::EngineError),
    #[error("journal: {0}")]
    Journal(#[from] journal::JournalError),
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl ClusterError {
    pub(crate) fn nats(op: &'static str, error: impl std::fmt::Display) -> ClusterError {
        ClusterError::Nats { op, reason: error.to_string() }
    }
}
