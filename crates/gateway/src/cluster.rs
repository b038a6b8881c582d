//! The gateway in cluster mode (`sportsbook gateway`): what it shows of the cluster, and the
//! API key and staff caches kept fresh from the replicated journal.
//!
//! The book is reached the same way in both modes: through an `engine::EngineHandle`, either
//! the in-process sequencer (`serve`) or a replica engine that follows the replicated journal
//! and forwards commands to the leader (`cluster::GatewayReplica`). What differs is only here:
//! [`ClusterStatus`] (implemented by the binary over `GatewayReplica`, so that this crate needs
//! no NATS) feeds `/readyz`, `/metrics` and `GET /v1/admin/cluster`; without one (`serve`) that
//! route answers with this process as the only node.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use book::{scopes, BookEvent};
use engine::{CommitHook, Committed};
use serde::Serialize;
use tokio::sync::Notify;

use crate::error::{ApiError, Json};
use crate::time::format_rfc3339;
use crate::{AppState, Principal};

/// The cluster as a gateway sees it: the lease, the registry, its replica.
pub trait ClusterStatus: std::fmt::Debug + Send + Sync + 'static {
    /// Why this gateway should take no traffic now (`no_leader`, `replica_lagging`,
    /// `nats_down`, `replica_failed`); empty when ready.
    fn unready_reasons(&self) -> Vec<&'static str>;
    /// Its lines for `/metrics`, in the OpenMetrics text format (`# TYPE` lines included).
    fn encode_metrics(&self, out: &mut String);
    /// The leader, the followers and the gateways (`GET /v1/admin/cluster`).
    fn view(&self) -> Pin<Box<dyn Future<Output = Result<ClusterView, String>> + Send + '_>>;
}

/// `GET /v1/admin/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// The book node holding the lease; null while none does (an election is under way).
    #[schema(required = true)]
    pub leader: Option<LeaderView>,
    /// The other book nodes (hot standbys), by id.
    pub followers: Vec<FollowerView>,
    /// The gateways, by id.
    pub gateways: Vec<GatewayView>,
    /// The feed processes (`sportsbook feed`), by id: the one holding the feed lease
    /// (`active`) and its hot standbys. Empty on `serve`, whose feed runs in the process.
    pub feeds: Vec<FeedView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LeaderView {
    pub pid: u32,
    /// Journal position after the last record its book holds (as of its last lease renewal).
    pub position: u64,
    /// When the lease lapses unless renewed (RFC 3339); null on `serve`, which has no lease.
    #[schema(required = true)]
    pub lease_expires_at: Option<String>,
    /// The node's id in the registry.
    pub node: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FollowerView {
    pub pid: u32,
    pub position: u64,
    pub node: String,
    /// `follower`, or `starting` while it recovers or takes over.
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GatewayView {
    /// Its public address; null when it was not given one.
    #[schema(required = true)]
    pub url: Option<String>,
    pub pid: u32,
    pub node: String,
    /// Journal position its replica has applied.
    pub position: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FeedView {
    /// Its `/healthz`, `/readyz`, `/metrics` address; null when it was not given one.
    #[schema(required = true)]
    pub url: Option<String>,
    pub pid: u32,
    pub node: String,
    /// It holds the feed lease: its adapters feed the book. A standby waits for the lease.
    pub active: bool,
    /// Journal position its replica has applied.
    pub position: u64,
}

/// Formats a lease expiry (Unix milliseconds).
pub fn lease_expiry(unix_ms: u64) -> String {
    format_rfc3339(unix_ms)
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/admin/cluster", get(cluster))
}

/// `GET /v1/admin/cluster` (admin).
#[utoipa::path(
    get,
    path = "/v1/admin/cluster",
    tag = "operators",
    summary = "The cluster",
    description = "Who leads the book, who follows, the gateways and the feed processes, with pids and journal positions, from the \
        lease and the registry (each node refreshes its entry every second; one gone 5 s is no longer listed). \
        On `sportsbook serve` the book runs in this process: it is the leader, with no lease \
        (`lease_expires_at` null), no followers, and itself as the one gateway (`url` null). A cluster gateway \
        that cannot read the registry (NATS down) answers 503 `unavailable`. Scope: `admin`.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cluster", body = ClusterView),
        (status = 401, description = "No valid credential (`unauthenticated`)", body = ApiError),
        (status = 403, description = "Not a credential with the `admin` scope (`forbidden`)", body = ApiError),
    ),
)]
pub(crate) async fn cluster(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<ClusterView>, ApiError> {
    principal.require_scope(scopes::ADMIN)?;
    match &state.config().cluster {
        Some(status) => status.view().await.map(Json).map_err(|reason| {
            tracing::warn!(%reason, "cannot read the cluster's registry");
            ApiError::unavailable()
        }),
        None => {
            let pid = std::process::id();
            let position = state.engine().stats().committed_position.load(Ordering::Acquire);
            Ok(Json(ClusterView {
                leader: Some(LeaderView { pid, position, lease_expires_at: None, node: "serve".into() }),
                followers: Vec::new(),
                gateways: vec![GatewayView { url: None, pid, node: "serve".into(), position }],
                feeds: Vec::new(),
            }))
        }
    }
}

/// Reloads the API key and staff caches when the book's keys or staff change, whoever changed
/// them. `serve` reloads after its own routes; a cluster gateway also sees changes made through
/// other gateways, from the replicated journal: a key revoked anywhere stops working here as
/// soon as the replica applies the revocation.
#[derive(Clone, Debug, Default)]
pub struct IdentityWatch(Arc<Notify>);

impl IdentityWatch {
    pub fn new() -> IdentityWatch {
        IdentityWatch::default()
    }

    /// The commit hook: it only notifies (never blocks the replica's thread).
    pub fn engine_hook(&self) -> CommitHook {
        let notify = Arc::clone(&self.0);
        Box::new(move |committed: &Committed<'_>| {
            if committed.events.iter().any(|event| matches!(event, BookEvent::ApiKeysChanged | BookEvent::StaffChanged))
            {
                notify.notify_one();
            }
        })
    }

    /// Reloads the caches on every notification, until the state is dropped.
    pub(crate) fn spawn_reloader(&self, state: std::sync::Weak<crate::Inner>) {
        let notify = Arc::clone(&self.0);
        tokio::spawn(async move {
            loop {
                notify.notified().await;
                let Some(inner) = state.upgrade() else { return };
                let state = AppState(inner);
                if let Err(error) = state.reload_api_keys().await {
                    tracing::warn!(?error, "cannot reload the API keys");
                }
                if let Err(error) = state.reload_staff().await {
                    tracing::warn!(?error, "cannot reload the staff");
                }
            }
        });
    }
}
