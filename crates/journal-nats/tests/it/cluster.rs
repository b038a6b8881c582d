//! The local cluster launcher: loud failures, and every process it started gone when it is
//! dropped, also during a panic.

use std::path::Path;

use journal_nats::cluster::{ClusterError, LocalCluster};
use tempfile::TempDir;

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would (the launcher reaps, so none).
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_missing_binary_fails_loudly_with_the_reason() {
    let dir = TempDir::new().unwrap();
    let err = LocalCluster::start_with(Path::new("/nonexistent/nats-server"), dir.path(), 3).unwrap_err();
    assert!(matches!(err, ClusterError::Spawn { .. }), "got {err:?}");
    assert!(err.to_string().contains("/nonexistent/nats-server"), "the error must name the binary: {err}");
}

#[test]
fn a_server_that_exits_fails_loudly_with_its_log() {
    // `false` exits at once, as a nats-server refusing its configuration would.
    let dir = TempDir::new().unwrap();
    let err = LocalCluster::start_with(Path::new("/bin/false"), dir.path(), 1).unwrap_err();
    match &err {
        ClusterError::NodeFailed { reason, .. } => assert!(reason.contains("exited"), "{err}"),
        other => panic!("expected NodeFailed, got {other:?}"),
    }
}

#[test]
fn dropping_the_cluster_kills_every_node_also_on_a_panic() {
    let dir = TempDir::new().unwrap();
    let started = std::panic::catch_unwind(|| {
        let cluster =
            LocalCluster::start(dir.path(), 3).unwrap_or_else(|err| panic!("cannot start nats-server: {err}"));
        let pids: Vec<u32> = (0..3).map(|i| cluster.pid(i).expect("running")).collect();
        assert!(pids.iter().all(|&pid| alive(pid)));
        std::panic::panic_any(pids);
    });
    let payload = started.expect_err("the closure panics");
    let pids = payload
        .downcast_ref::<Vec<u32>>()
        .unwrap_or_else(|| panic!("the cluster did not start: {:?}", payload.downcast_ref::<String>()));
    for pid in pids {
        assert!(!alive(*pid), "nats-server {pid} still runs after the panic");
    }
}
