//! Integration tests of the cluster crate against real `nats-server` processes each test
//! starts (3 clustered nodes) and kills when it ends, also on a panic. They fail, saying why,
//! when `nats-server` is missing or does not start.

mod gateway;
mod lease;
mod node;

use journal_nats::cluster::LocalCluster;
use tempfile::TempDir;

/// A running cluster and the directory of its files (removed after the cluster is killed).
pub struct TestCluster {
    pub cluster: LocalCluster,
    _dir: TempDir,
}

pub fn start_cluster(nodes: usize) -> TestCluster {
    let dir = TempDir::new().expect("temporary directory");
    let cluster =
        LocalCluster::start(dir.path(), nodes).unwrap_or_else(|err| panic!("cannot start nats-server: {err}"));
    TestCluster { cluster, _dir: dir }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
}

pub async fn jetstream(cluster: &LocalCluster) -> async_nats::jetstream::Context {
    let client = async_nats::connect(cluster.urls()).await.expect("connect to the test cluster");
    async_nats::jetstream::new(client)
}
