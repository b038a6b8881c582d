//! Fencing of deposed writers, de-duplication of retried appends, and the loss of one of the
//! three servers (SIGKILL) under appends.

use std::time::{Duration, Instant};

use journal::{Journal, JournalError, Position};
use journal_nats::NatsJournal;

use crate::{numbered, open, options, read_all, start_cluster};

fn append_numbered(journal: &mut NatsJournal, range: std::ops::Range<u64>) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in range {
        let started = Instant::now();
        let position = journal.append(&numbered(i)).unwrap_or_else(|err| panic!("append #{i}: {err}"));
        slowest = slowest.max(started.elapsed());
        assert_eq!(position, i, "append #{i} got position {position}");
    }
    slowest
}

fn assert_numbered(journal: &impl Journal, count: u64, when: &str) {
    let got = read_all(journal, 0);
    assert_eq!(got.len() as u64, count, "{when}: {} records read, {count} acknowledged", got.len());
    for (i, (position, payload)) in got.iter().enumerate() {
        assert_eq!(*position, i as Position, "{when}: out of order");
        assert!(*payload == numbered(i as u64), "{when}: record {i} differs");
    }
}

#[test]
fn a_writer_with_a_stale_expected_sequence_is_fenced() {
    let cluster = start_cluster(3);
    let options = options(&cluster.cluster, "FENCING");
    let mut old = open(&options);
    for i in 0..3u8 {
        old.append(&[b'o', i]).expect("append by the first writer");
    }
    // A new writer takes over (as a new leader would) and appends first.
    let mut new = open(&options);
    assert_eq!(new.next_position(), 3);
    assert_ne!(new.writer_id(), old.writer_id());
    assert_eq!(new.append(b"new 3").expect("append by the new writer"), 3);

    // The deposed writer still believes the journal ends at 3: refused, nothing written.
    match old.append(b"stale 3") {
        Err(JournalError::Fenced { position: 3, reason }) => {
            assert!(reason.contains("wrong last sequence"), "the reason names the stream's answer: {reason}");
            assert!(reason.contains("ends at position 4"), "the reason says where the stream ends: {reason}");
        }
        other => panic!("a stale writer must be fenced, got {other:?}"),
    }
    // And stays fenced, without appending anything later either.
    assert!(matches!(old.append(b"stale again"), Err(JournalError::Fenced { position: 3, .. })));
    assert_eq!(old.next_position(), 3);

    assert_eq!(new.append(b"new 4").expect("the new writer goes on"), 4);
    let payloads: Vec<Vec<u8>> = read_all(&new, 0).into_iter().map(|(_, payload)| payload).collect();
    assert_eq!(
        payloads,
        vec![b"o\0".to_vec(), b"o\x01".to_vec(), b"o\x02".to_vec(), b"new 3".to_vec(), b"new 4".to_vec()]
    );
    // The old writer reads what the new one wrote; reopened, it appends after it.
    assert_eq!(read_all(&old, 3).len(), 2);
    let mut reopened = open(&options);
    assert_eq!(reopened.append(b"after reopen").expect("a reopened writer appends"), 5);
}

#[test]
fn a_writer_that_has_not_appended_yet_is_fenced_by_one_that_has() {
    let cluster = start_cluster(3);
    let options = options(&cluster.cluster, "RACE");
    let mut first = open(&options);
    let mut second = open(&options);
    assert_eq!(first.append(b"first").expect("append"), 0);
    assert!(matches!(second.append(b"second"), Err(JournalError::Fenced { position: 0, .. })));
    assert_eq!(read_all(&first, 0), vec![(0, b"first".to_vec())]);
}

#[test]
fn a_retried_append_is_stored_once() {
    // Two journals with the same writer id at the same position send the same
    // de-duplication id: exactly what a retry after a lost answer sends.
    let cluster = start_cluster(3);
    let mut options = options(&cluster.cluster, "RETRY");
    options.writer_id = Some("writer-1".into());
    let mut first = open(&options);
    let mut retry = open(&options);
    assert_eq!(first.append(b"record").expect("append"), 0);
    assert_eq!(retry.append(b"record").expect("the retry is acknowledged as the same record"), 0);
    assert_eq!(read_all(&first, 0), vec![(0, b"record".to_vec())], "stored once");
    assert_eq!(first.append(b"next").expect("append"), 1);
}

#[test]
fn killing_one_of_three_servers_loses_no_acknowledged_record() {
    let mut cluster = start_cluster(3);
    let options = options(&cluster.cluster, "FAILOVER");
    let mut journal = open(&options);
    append_numbered(&mut journal, 0..300);

    // SIGKILL the stream's leader: the worst node to lose (an election, and the client may be
    // connected to it).
    let leader = journal.stream_cluster().expect("stream cluster").leader.expect("the stream has a leader");
    let first = cluster.cluster.index_of(&leader).expect("the leader is one of ours");
    cluster.cluster.kill(first);
    let started = Instant::now();
    let slowest = append_numbered(&mut journal, 300..600);
    eprintln!("after killing the leader {leader}: 300 appends in {:?}, the slowest {slowest:?}", started.elapsed());
    assert_numbered(&journal, 600, "after losing the leader");
    let new_leader = journal.stream_cluster().expect("stream cluster").leader.expect("a new leader");
    assert_ne!(new_leader, leader);

    // Bring it back; once it has caught up, lose another node: the records must be on the
    // restarted one too.
    cluster.cluster.restart(first).unwrap_or_else(|err| panic!("restart {leader}: {err}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = journal.stream_cluster().expect("stream cluster");
        let back = state.followers.iter().find(|follower| follower.name == leader);
        if back.is_some_and(|follower| follower.current && follower.lag == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "{leader} did not catch up within 30 s: {state:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = cluster.cluster.index_of(&new_leader).expect("ours");
    cluster.cluster.kill(second);
    append_numbered(&mut journal, 600..700);
    assert_numbered(&journal, 700, "after losing a second node, the first one restarted");

    // A new writer (a restarted engine) sees every acknowledged record and continues.
    drop(journal);
    let mut reopened = open(&options);
    assert_eq!(reopened.next_position(), 700);
    assert_numbered(&reopened, 700, "reopened");
    append_numbered(&mut reopened, 700..710);
}

#[test]
fn an_unanswered_append_poisons_the_journal_until_reopened() {
    let mut cluster = start_cluster(3);
    let mut options = options(&cluster.cluster, "POISON");
    options.append_timeout = Duration::from_secs(2);
    let mut journal = open(&options);
    append_numbered(&mut journal, 0..3);
    for node in 0..3 {
        cluster.cluster.kill(node);
    }
    let started = Instant::now();
    match journal.append(&numbered(3)) {
        Err(JournalError::Remote { op: "append", reason }) => {
            assert!(reason.contains("no answer within 2s"), "the reason says why: {reason}")
        }
        other => panic!("an append no server answers must fail with Remote, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "the append gave up after {:?}", started.elapsed());
    // Its outcome is unknown: nothing more is appended until a reopen reads the stream.
    assert!(matches!(journal.append(&numbered(3)), Err(JournalError::Poisoned)));
    assert_eq!(journal.next_position(), 3);
    drop(journal);

    cluster.cluster.restart_all().unwrap_or_else(|err| panic!("restart the cluster: {err}"));
    let mut reopened = open(&options);
    assert_eq!(reopened.next_position(), 3, "no server was up: the unanswered append was not stored");
    append_numbered(&mut reopened, 3..6);
    assert_numbered(&reopened, 6, "after the reopen");
}
