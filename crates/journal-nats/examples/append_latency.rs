//! Append latency of the JetStream journal on a local cluster this program starts (its files in
//! a temporary directory, every node killed at the end): sequential appends of one record size,
//! as the sequencer makes them (one at a time, each acknowledged before the next); then the
//! time to read them all back through a new journal, as recovery does.
//!
//!     cargo run --release -p journal-nats --example append_latency -- [NODES [RECORDS [BYTES]]]
//!
//! Defaults: 3 nodes (3 replicas), 10,000 records of 1,024 bytes.

use std::time::{Duration, Instant};

use journal::Journal;
use journal_nats::cluster::LocalCluster;
use journal_nats::{NatsJournal, NatsJournalOptions};

fn main() {
    let arg =
        |i: usize, default: usize| std::env::args().nth(i).map_or(default, |value| value.parse().expect("a number"));
    let (nodes, records, bytes) = (arg(1, 3), arg(2, 10_000), arg(3, 1024));
    let dir = std::env::temp_dir().join(format!("journal-nats-latency-{}", std::process::id()));
    let cluster = LocalCluster::start(&dir, nodes).unwrap_or_else(|err| panic!("cannot start nats-server: {err}"));
    let mut options = NatsJournalOptions::new(cluster.urls());
    options.replicas = nodes;
    let mut journal = NatsJournal::open(options.clone()).expect("open the journal");
    let payload = vec![0x5A; bytes];
    let mut latencies: Vec<Duration> = Vec::with_capacity(records);
    let began = Instant::now();
    for _ in 0..records {
        let started = Instant::now();
        journal.append(&payload).expect("append");
        latencies.push(started.elapsed());
    }
    let elapsed = began.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{nodes} nodes, {records} appends of {bytes} bytes: {:.0} appends/s, p50 {:?} p99 {:?} max {:?}",
        records as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
    // Reading everything back, as recovery replays the journal: a new writer, from position 0.
    drop(journal);
    let journal = NatsJournal::open(options).expect("reopen the journal");
    let began = Instant::now();
    let mut read = 0usize;
    journal
        .read_from(0, &mut |_, record| {
            read += record.len();
            Ok(())
        })
        .expect("read");
    let elapsed = began.elapsed();
    println!(
        "read back {records} records ({} MiB) in {elapsed:?}: {:.0} records/s",
        read >> 20,
        records as f64 / elapsed.as_secs_f64()
    );
    drop(journal);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
