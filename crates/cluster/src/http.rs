//! A book node's HTTP endpoints (every service has them): `/healthz` (the process answers),
//! `/readyz` (200 while it leads or follows, 503 while it starts, takes over or has stopped,
//! with the reason), and `/metrics` (Prometheus text: role, position, lease, takeovers).

use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::node::{NodeProbe, Role};

pub fn app(probe: NodeProbe) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probe)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(probe): State<NodeProbe>) -> impl IntoResponse {
    let status = probe.status();
    let ready = matches!(status.role, Role::Leader | Role::Follower);
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "role": status.role.as_str(),
        "node": status.node,
        "pid": status.pid,
        "position": status.position,
        "lease_expires_at_ms": status.lease_expires_at_ms,
        "failure": status.failure,
    });
    (code, Json(body))
}

async fn metrics(State(probe): State<NodeProbe>) -> impl IntoResponse {
    let status = probe.status();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    gauge(
        "sportsbook_book_leader",
        "1 while this node holds the lease and takes commands.",
        "gauge",
        u64::from(status.role == Role::Leader),
    );
    gauge(
        "sportsbook_book_follower",
        "1 while this node is a standby following the journal.",
        "gauge",
        u64::from(status.role == Role::Follower),
    );
    gauge(
        "sportsbook_book_position",
        "Journal position after the last record this node's book holds.",
        "gauge",
        status.position,
    );
    gauge(
        "sportsbook_book_lease_expires_at_seconds",
        "While leading: when the lease lapses unless renewed (Unix time).",
        "gauge",
        status.lease_expires_at_ms.unwrap_or(0) / 1000,
    );
    gauge("sportsbook_book_takeovers_total", "Times this node took the lease.", "counter", status.takeovers);
    gauge("sportsbook_book_step_downs_total", "Times this node stepped down.", "counter", status.step_downs);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Serves [`app`] on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, probe: NodeProbe) -> std::io::Result<()> {
    axum::serve(listener, app(probe)).await
}
