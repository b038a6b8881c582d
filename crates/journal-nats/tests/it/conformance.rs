//! The journal conformance suite against the JetStream backend: on a 3-node cluster with 3
//! replicas, and on a single server with 1.

use journal::conformance::{run_all, JournalHarness};
use journal::Journal;
use journal_nats::{NatsJournal, NatsJournalOptions, PAYLOAD_BYTES_MAX};

use crate::{open, options, read_all, start_cluster};

struct NatsHarness {
    options: NatsJournalOptions,
    opened: usize,
}

impl JournalHarness for NatsHarness {
    type J = NatsJournal;

    /// Every open is a new writer (a fresh writer id), as after a restart.
    fn open(&mut self) -> NatsJournal {
        self.opened += 1;
        open(&self.options)
    }
}

#[test]
fn jetstream_journal_on_three_replicas_conforms() {
    let cluster = start_cluster(3);
    let mut harness = NatsHarness { options: options(&cluster.cluster, "CONFORMANCE"), opened: 0 };
    run_all(&mut harness);
    assert!(harness.opened > 5, "the suite reopens the journal many times, got {}", harness.opened);

    // The largest record this journal allows round trips through a 3-way replicated stream,
    // also once every server has read it back from its files (all killed and restarted; a
    // process crash loses nothing the servers wrote, synced or not).
    let mut journal = open(&harness.options);
    assert_eq!(journal.payload_bytes_max(), PAYLOAD_BYTES_MAX);
    let largest: Vec<u8> = (0..PAYLOAD_BYTES_MAX).map(|i| (i % 251) as u8).collect();
    let position = journal.append(&largest).expect("append the largest record");
    let after = journal.append(b"after the largest").expect("append after the largest record");
    drop(journal);
    let mut cluster = cluster;
    cluster.cluster.restart_all().unwrap_or_else(|err| panic!("restart the cluster: {err}"));
    let journal = open(&harness.options);
    assert_eq!(journal.next_position(), after + 1);
    let got = read_all(&journal, position);
    assert_eq!(got.len(), 2);
    assert!(got[0].1 == largest, "the largest record came back different");
    assert_eq!(got[1].1, b"after the largest");
}

#[test]
fn jetstream_journal_on_a_single_server_conforms() {
    let cluster = start_cluster(1);
    let options = options(&cluster.cluster, "SINGLE");
    assert_eq!(options.replicas, 1);
    run_all(&mut NatsHarness { options, opened: 0 });
}
