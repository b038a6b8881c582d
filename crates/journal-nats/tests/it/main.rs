//! Integration tests of the JetStream journal against real `nats-server` processes that each
//! test starts (3 clustered nodes unless it says otherwise) and kills when it ends, also on a
//! panic. They fail, saying why, when `nats-server` is missing or does not start.

mod cluster;
mod conformance;
mod fencing;

use journal::{Journal, Position};
use journal_nats::cluster::LocalCluster;
use journal_nats::{NatsJournal, NatsJournalOptions};
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

/// Options for `stream` on every node of the cluster, with as many replicas as nodes.
pub fn options(cluster: &LocalCluster, stream: &str) -> NatsJournalOptions {
    let mut options = NatsJournalOptions::new(cluster.urls());
    options.stream = stream.to_owned();
    options.subject = format!("journal.{stream}");
    options.replicas = cluster.len();
    options
}

pub fn open(options: &NatsJournalOptions) -> NatsJournal {
    NatsJournal::open(options.clone()).unwrap_or_else(|err| panic!("open the JetStream journal: {err}"))
}

pub fn read_all(journal: &impl Journal, from: Position) -> Vec<(Position, Vec<u8>)> {
    let mut got = Vec::new();
    journal
        .read_from(from, &mut |position, payload| {
            got.push((position, payload.to_vec()));
            Ok(())
        })
        .unwrap_or_else(|err| panic!("read_from({from}): {err}"));
    got
}

/// The payload of record `i` in the tests that append numbered records.
pub fn numbered(i: u64) -> Vec<u8> {
    let mut payload = i.to_le_bytes().to_vec();
    payload.extend(std::iter::repeat_n(i as u8, (i % 97) as usize));
    payload
}
