//! The registry of book nodes: every node puts its id, pid, role and journal position into a
//! key-value bucket every [`REGISTRY_INTERVAL`]; values live [`REGISTRY_VALUE_AGE`], so a node
//! that died leaves the registry on its own. With the lease it answers "who leads, who
//! follows, where is each" (`GET /v1/admin/cluster`) without asking any node.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::lease::{LeaseRecord, LEASE_KEY};
use crate::ClusterError;

/// Bucket of the registry unless the options say otherwise.
pub const REGISTRY_BUCKET_DEFAULT: &str = "sportsbook_book_nodes";

/// How often a node refreshes its entry.
pub const REGISTRY_INTERVAL: Duration = Duration::from_secs(1);

/// How long an entry lives unless refreshed: a node gone this long is no longer listed.
pub const REGISTRY_VALUE_AGE: Duration = Duration::from_secs(5);

/// The role of a gateway's entry (`sportsbook gateway` registers too).
pub const ROLE_GATEWAY: &str = "gateway";

/// The role of the feed process that holds the feed lease and feeds the book (`sportsbook feed`).
pub const ROLE_FEED: &str = "feed";

/// The role of a feed process waiting for the feed lease (a hot standby of the feed role).
pub const ROLE_FEED_STANDBY: &str = "feed_standby";

/// Nodes listed at most (the registry of a healthy cluster holds a handful).
pub const REGISTRY_NODES_MAX: usize = 64;

const _: () = assert!(REGISTRY_VALUE_AGE.as_millis() >= 3 * REGISTRY_INTERVAL.as_millis());

/// One node's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: String,
    pub pid: u32,
    /// A book node's `starting`, `follower`, `leader`, `stopped`; or [`ROLE_GATEWAY`].
    pub role: String,
    /// Journal position after the last record its book holds.
    pub position: u64,
    /// Its `/healthz`, `/readyz`, `/metrics` address, when it serves them.
    pub url: Option<String>,
    /// Wall-clock time of the entry, milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

/// The cluster as the lease and the registry show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// The lease's holder, if any, with its registry entry when it has one.
    pub leader: Option<(LeaseRecord, Option<NodeInfo>)>,
    /// Every other book node in the registry, by id.
    pub followers: Vec<NodeInfo>,
    /// The gateways in the registry, by id.
    pub gateways: Vec<NodeInfo>,
    /// The feed processes in the registry (roles [`ROLE_FEED`] and [`ROLE_FEED_STANDBY`]), by id.
    pub feeds: Vec<NodeInfo>,
}

/// The registry bucket.
#[derive(Clone)]
pub struct Registry {
    store: kv::Store,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    pub async fn open(
        jetstream: &async_nats::jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<Registry, ClusterError> {
        let store =
            crate::lease::open_bucket(jetstream, bucket, REGISTRY_VALUE_AGE, replicas, "the book nodes").await?;
        Ok(Registry { store })
    }

    pub async fn publish(&self, info: &NodeInfo) -> Result<(), ClusterError> {
        let value = serde_json::to_vec(info).expect("a node entry serialises");
        self.store
            .put(&info.node, Bytes::from(value))
            .await
            .map_err(|err| ClusterError::nats("publish a node", err))?;
        Ok(())
    }

    /// Removes a node's entry (a clean stop).
    pub async fn remove(&self, node: &str) -> Result<(), ClusterError> {
        self.store.delete(node).await.map_err(|err| ClusterError::nats("remove a node", err))
    }

    /// Every node listed, by id (at most [`REGISTRY_NODES_MAX`]).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let mut keys = match self.store.keys().await {
            Ok(keys) => keys,
            Err(err) => return Err(ClusterError::nats("list the nodes", err)),
        };
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|err| ClusterError::nats("list the nodes", err))?);
            if names.len() >= REGISTRY_NODES_MAX {
                break;
            }
        }
        let mut nodes = Vec::new();
        for name in names {
            let entry = self.store.entry(name).await.map_err(|err| ClusterError::nats("read a node", err))?;
            if let Some(entry) = entry.filter(|entry| entry.operation == Operation::Put) {
                if let Ok(info) = serde_json::from_slice::<NodeInfo>(&entry.value) {
                    nodes.push(info);
                }
            }
        }
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(nodes)
    }
}

/// The lease and the registry, read with a client that is not a node (a gateway).
pub(crate) async fn cluster_view(
    jetstream: &async_nats::jetstream::Context,
    lease_bucket: &str,
    registry_bucket: &str,
) -> Result<ClusterView, ClusterError> {
    let lease_store =
        jetstream.get_key_value(lease_bucket).await.map_err(|err| ClusterError::nats("open the lease", err))?;
    let holder = match lease_store.entry(LEASE_KEY).await.map_err(|err| ClusterError::nats("read the lease", err))? {
        Some(entry) if entry.operation == Operation::Put => serde_json::from_slice::<LeaseRecord>(&entry.value).ok(),
        _ => None,
    };
    let store =
        jetstream.get_key_value(registry_bucket).await.map_err(|err| ClusterError::nats("open the registry", err))?;
    let nodes = Registry { store }.nodes().await?;
    let (gateways, others): (Vec<NodeInfo>, Vec<NodeInfo>) =
        nodes.into_iter().partition(|node| node.role == ROLE_GATEWAY);
    let (feeds, books): (Vec<NodeInfo>, Vec<NodeInfo>) =
        others.into_iter().partition(|node| node.role == ROLE_FEED || node.role == ROLE_FEED_STANDBY);
    let (leaders, followers): (Vec<NodeInfo>, Vec<NodeInfo>) =
        books.into_iter().partition(|node| holder.as_ref().is_some_and(|lease| lease.node == node.node));
    Ok(ClusterView { leader: holder.map(|lease| (lease, leaders.into_iter().next())), followers, gateways, feeds })
}
