//! The replica engine (a cluster gateway's read replica): commands forwarded to a leader engine,
//! replies delivered once the replica applied their batch, reads and hooks on the replica,
//! bounded waits, a record that does not replay stops it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use book::{Ack, Command, Config};
use domain::{Currency, Money};
use engine::{
    EngineError, EngineHandle, EngineOptions, Forward, ForwardDone, Forwarded, ManualClock, Recovered,
    ReplicaEngineOptions, ReplicaFeed, Submission,
};
use journal::{Journal, MemoryJournal};

use crate::workload::{setup, START};

fn empty() -> Recovered {
    Recovered {
        book: book::Book::new(Config::default()),
        report: engine::RecoveryReport {
            position: 0,
            next_sequence: 0,
            snapshot_position: None,
            replayed_batches: 0,
            replayed_commands: 0,
            truncated_bytes: 0,
            chain_head: engine::CHAIN_HEAD_GENESIS,
            skipped_snapshots: 0,
        },
        skipped_snapshots: Vec::new(),
    }
}

/// Forwards to an in-process leader engine on a thread per command, as the cluster's client
/// does over NATS: the answer carries the position after the command's batch.
struct ToLeader(EngineHandle);

impl Forward for ToLeader {
    fn forward(&self, submission: Submission, done: ForwardDone) {
        let leader = self.0.clone();
        std::thread::spawn(move || {
            let result = leader
                .submit(submission)
                .map(|reply| Forwarded { reply, position: leader.stats().committed_position.load(Ordering::Acquire) });
            done(result);
        });
    }
}

/// Tails the leader's journal into the feed, as the cluster tails the stream; `paused` holds it.
fn tail(journal: MemoryJournal, feed: ReplicaFeed, paused: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut next = feed.position();
        while !stop.load(Ordering::SeqCst) {
            if !paused.load(Ordering::SeqCst) {
                let _ = journal.read_from(next, &mut |position, payload| {
                    feed.apply(position, payload.to_vec()).map_err(|_| journal::JournalError::Poisoned)?;
                    next = position + 1;
                    Ok(())
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

struct Pair {
    leader: EngineHandle,
    replica: EngineHandle,
    journal: MemoryJournal,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    events_seen: Arc<AtomicU64>,
    hook_positions: Arc<Mutex<Vec<u64>>>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.replica.shutdown();
        self.leader.shutdown();
    }
}

fn pair(catch_up_wait_max: Duration) -> Pair {
    let journal = MemoryJournal::new();
    let leader = EngineHandle::start(
        Box::new(journal.clone()),
        None,
        empty(),
        Box::new(ManualClock::new(START)),
        EngineOptions::default(),
    )
    .expect("leader");
    let events_seen = Arc::new(AtomicU64::new(0));
    let hook_positions = Arc::new(Mutex::new(Vec::new()));
    let (seen, positions) = (Arc::clone(&events_seen), Arc::clone(&hook_positions));
    let options = ReplicaEngineOptions {
        catch_up_wait_max,
        on_commit: vec![Box::new(move |committed: &engine::Committed<'_>| {
            seen.fetch_add(committed.events.len() as u64, Ordering::Relaxed);
            positions.lock().unwrap().push(committed.position);
        })],
        ..ReplicaEngineOptions::default()
    };
    let (replica, feed) = EngineHandle::start_replica(
        empty(),
        Box::new(journal.clone()),
        None,
        Box::new(ToLeader(leader.clone())),
        options,
    )
    .expect("replica");
    let paused = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    tail(journal.clone(), feed, Arc::clone(&paused), Arc::clone(&stop));
    Pair { leader, replica, journal, paused, stop, events_seen, hook_positions }
}

#[test]
fn a_replica_engine_forwards_commands_and_answers_once_it_applied_their_batch() {
    let pair = pair(Duration::from_secs(5));
    for command in setup() {
        pair.replica.submit(command).unwrap().expect("accepted");
    }
    // Each deposit's `then` runs on the replica's book with the deposit in it.
    for round in 1..=20u64 {
        let command = Command::Deposit {
            account: book::AccountId(1),
            amount: Money::from_minor(100),
            payment_ref: format!("more-{round}"),
            idempotency: None,
        };
        let receiver = pair
            .replica
            .try_submit_then(command, |book, _| book.wallet(book::AccountId(1)).expect("a wallet").balance)
            .unwrap();
        let (reply, balance) = receiver.recv().unwrap().expect("durable");
        assert!(matches!(reply, Ok(Ack::Transfer(_))), "{reply:?}");
        assert_eq!(balance, Money::from_minor(100_000 + 100 * round as i64));
        // And any read after the reply sees it too.
        let read = pair.replica.read(|book| book.wallet(book::AccountId(1)).expect("a wallet").balance).unwrap();
        assert_eq!(read, balance);
    }
    let opened = pair.replica.submit(Command::OpenAccount { currency: Currency::EUR }).unwrap();
    assert!(matches!(opened, Ok(Ack::AccountOpened(_))));
    // Same book, same chain, same records; hooks saw every record once, in order.
    let end = pair.leader.stats().committed_position.load(Ordering::Acquire);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pair.replica.stats().committed_position.load(Ordering::Acquire) < end {
        assert!(Instant::now() < deadline, "the replica did not catch up");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pair.replica.read(codec::digest).unwrap(), pair.leader.read(codec::digest).unwrap());
    assert_eq!(pair.replica.chain_head().unwrap(), pair.leader.chain_head().unwrap());
    assert_eq!(pair.replica.journal_page(0, 5).unwrap(), pair.leader.journal_page(0, 5).unwrap());
    assert!(pair.replica.verify_chain().unwrap().verified);
    assert_eq!(*pair.hook_positions.lock().unwrap(), (0..end).collect::<Vec<_>>());
    assert!(pair.events_seen.load(Ordering::Relaxed) > setup().len() as u64);
    assert_eq!(pair.journal.next_position(), end);
}

#[test]
fn a_reply_whose_batch_the_replica_does_not_reach_in_time_is_replica_behind_and_the_command_was_decided() {
    let pair = pair(Duration::from_millis(300));
    pair.replica.submit(Command::OpenAccount { currency: Currency::EUR }).unwrap().expect("opened");
    pair.paused.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let outcome = pair.replica.submit(Command::OpenAccount { currency: Currency::EUR });
    assert!(matches!(outcome, Err(EngineError::ReplicaBehind { needed: 2, at: 1 })), "{outcome:?}");
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    // It was decided by the leader; the replica shows it once it reads on.
    pair.paused.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pair.replica.read(|book| book.wallet(book::AccountId(2)).is_some()).unwrap() {
        assert!(Instant::now() < deadline, "the replica did not read on");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_record_that_does_not_replay_stops_the_replica_and_it_serves_nothing_after() {
    let leader_journal = MemoryJournal::new();
    let (replica, feed) = EngineHandle::start_replica(
        empty(),
        Box::new(leader_journal),
        None,
        Box::new(NoLeader),
        ReplicaEngineOptions::default(),
    )
    .unwrap();
    // A batch whose reply digest is not what the book decides.
    let mut record = Vec::new();
    let command = Command::OpenAccount { currency: Currency::EUR };
    let origin = book::Origin::system("test");
    codec::encode_batch(0, START, 12345, std::iter::once((&command, &origin)), &mut record);
    feed.apply(0, record).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !feed.stopped() {
        assert!(Instant::now() < deadline, "the replica did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(replica.stats().stop_reason.lock().unwrap().as_deref().unwrap().contains("replayed"));
    assert!(replica.read(|_| ()).is_err(), "a diverged replica answers no read");
    assert!(matches!(replica.submit(command), Err(EngineError::Stopped(_))));
    replica.shutdown();
}

#[test]
fn a_command_no_leader_takes_is_no_leader() {
    let (replica, _feed) = EngineHandle::start_replica(
        empty(),
        Box::new(MemoryJournal::new()),
        None,
        Box::new(NoLeader),
        ReplicaEngineOptions::default(),
    )
    .unwrap();
    let outcome = replica.submit(Command::OpenAccount { currency: Currency::EUR });
    assert!(matches!(outcome, Err(EngineError::NoLeader(_))), "{outcome:?}");
    replica.shutdown();
}

struct NoLeader;

impl Forward for NoLeader {
    fn forward(&self, _: Submission, done: ForwardDone) {
        done(Err(EngineError::NoLeader("nobody leads in this test".into())));
    }
}
