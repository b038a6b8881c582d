//! The sequencer: group commit, replies only after durability, a failed sync stops the engine,
//! in-play delays end on the sequencer's timer.

use std::sync::atomic::Ordering;

use book::{Ack, BetStatus, Command, Config};
use engine::{recover, EngineError, EngineHandle, EngineOptions, ManualClock, Recovered};
use journal::{FaultPlan, FaultyJournal, MemoryJournal};

use crate::workload::{random_command, setup, Rng, START};

fn start(journal: Box<dyn journal::Journal>, clock: ManualClock) -> EngineHandle {
    let recovered =
        Recovered { book: book::Book::new(Config::default()), report: empty_report(), skipped_snapshots: Vec::new() };
    EngineHandle::start(journal, None, recovered, Box::new(clock), EngineOptions::default()).expect("start")
}

fn empty_report() -> engine::RecoveryReport {
    engine::RecoveryReport {
        position: 0,
        next_sequence: 0,
        snapshot_position: None,
        replayed_batches: 0,
        replayed_commands: 0,
        truncated_bytes: 0,
        chain_head: engine::CHAIN_HEAD_GENESIS,
        skipped_snapshots: 0,
    }
}

#[test]
fn concurrent_submitters_share_batches() {
    let journal = MemoryJournal::new();
    let engine = start(Box::new(journal.clone()), ManualClock::new(START));
    for command in setup() {
        engine.submit(command).unwrap().expect("accepted");
    }
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(thread);
                let receivers: Vec<_> =
                    (0..500).map(|_| engine.submit_waiting(random_command(&mut rng)).unwrap()).collect();
                for receiver in receivers {
                    let _reply = receiver.recv().unwrap().expect("durable");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = engine.stats();
    let commands = stats.commands.load(Ordering::Relaxed);
    let batches = stats.batches.load(Ordering::Relaxed);
    assert_eq!(commands, setup().len() as u64 + 4_000);
    assert!(batches < commands / 4, "group commit: {batches} batches for {commands} commands");
    let live = engine.read(codec::digest).unwrap();
    engine.shutdown();
    let replayed = recover(&journal, None, Config::default()).unwrap();
    assert_eq!(codec::digest(&replayed.book), live);
}

#[test]
fn a_failed_sync_is_never_acknowledged_and_stops_the_engine() {
    let memory = MemoryJournal::new();
    let setup_len = setup().len() as u64;
    // Every setup command is its own batch; the first workload batch fails to sync.
    let faulty = FaultyJournal::new(memory.clone(), FaultPlan::fail_sync_at(setup_len));
    let engine = start(Box::new(faulty), ManualClock::new(START));
    for command in setup() {
        engine.submit(command).unwrap().expect("accepted");
    }
    let acknowledged = engine.read(codec::digest).unwrap();
    let mut rng = Rng::new(9);
    let failed = engine.submit(random_command(&mut rng));
    assert!(matches!(failed, Err(EngineError::Stopped(_))), "{failed:?}");
    let later = engine.submit(Command::OpenAccount { currency: domain::Currency::EUR });
    assert!(matches!(later, Err(EngineError::Stopped(_))), "{later:?}");
    assert!(engine.stats().stopped.load(Ordering::SeqCst));
    engine.shutdown();
    // What is durable is exactly what was acknowledged.
    let recovered = recover(&memory, None, Config::default()).unwrap();
    assert_eq!(codec::digest(&recovered.book), acknowledged);
}

#[test]
fn the_sequencer_ends_in_play_delays_on_its_own() {
    let clock = ManualClock::new(START);
    let journal = MemoryJournal::new();
    let engine = start(Box::new(journal.clone()), clock.clone());
    for command in setup() {
        engine.submit(command).unwrap().expect("accepted");
    }
    engine.submit(Command::SetInPlay { event: book::EventId(1), bet_delay_seconds: 2 }).unwrap().expect("accepted");
    let placed = engine
        .submit(Command::PlaceBet(book::PlaceBet {
            account: book::AccountId(1),
            kind: book::BetKind::Single,
            legs: vec![book::LegRequest {
                selection: book::SelectionId(1),
                price: domain::Odds::parse("2.50").unwrap(),
            }],
            stake: domain::Money::from_minor(1_000),
            each_way: false,
            policy: book::PricePolicy::None,
            idempotency: None,
        }))
        .unwrap();
    let Ok(Ack::BetPlaced { bet, status: BetStatus::Pending }) = placed else { panic!("{placed:?}") };
    clock.advance(2_000);
    let mut status = BetStatus::Pending;
    for _ in 0..200 {
        status = engine.read(move |book| book.bet(bet).map(|bet| bet.status)).unwrap().unwrap();
        if status != BetStatus::Pending {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(status, BetStatus::Accepted);
    let live = engine.read(codec::digest).unwrap();
    engine.shutdown();
    assert_eq!(codec::digest(&recover(&journal, None, Config::default()).unwrap().book), live);
}

#[test]
fn a_full_inbox_sheds_load_instead_of_queueing() {
    let journal = MemoryJournal::new();
    let recovered =
        Recovered { book: book::Book::new(Config::default()), report: empty_report(), skipped_snapshots: Vec::new() };
    let options = EngineOptions { inbox_max: 4, ..EngineOptions::default() };
    let engine =
        EngineHandle::start(Box::new(journal), None, recovered, Box::new(ManualClock::new(START)), options).unwrap();
    // Hold the sequencer inside a read so nothing drains the inbox.
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let blocker = engine.clone();
    let reader = std::thread::spawn(move || blocker.read(move |_| wait.recv().ok()));
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut overloaded = 0;
    let mut accepted = Vec::new();
    for _ in 0..16 {
        match engine.try_submit(Command::OpenAccount { currency: domain::Currency::EUR }) {
            Ok(receiver) => accepted.push(receiver),
            Err(EngineError::Overloaded) => overloaded += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(overloaded >= 10, "{overloaded} shed");
    release.send(()).unwrap();
    reader.join().unwrap().unwrap();
    for receiver in accepted {
        assert!(receiver.recv().unwrap().is_ok());
    }
    engine.shutdown();
}

#[test]
fn every_commit_hook_sees_each_durable_batch_with_the_book_after_it() {
    use std::sync::{Arc, Mutex};
    // Two hooks, as the gateway installs them (metrics and the stream): both run, in order,
    // after every batch, and see the book with that batch applied.
    let seen: Arc<Mutex<Vec<(usize, u64, usize)>>> = Arc::default();
    let hook = |index: usize| -> engine::CommitHook {
        let seen = Arc::clone(&seen);
        Box::new(move |committed: &engine::Committed<'_>| {
            let markets = committed.book.markets().len();
            seen.lock().unwrap().push((index, committed.first_sequence, markets));
        })
    };
    let options = EngineOptions { on_commit: vec![hook(0), hook(1)], ..EngineOptions::default() };
    let recovered =
        Recovered { book: book::Book::new(Config::default()), report: empty_report(), skipped_snapshots: Vec::new() };
    let engine = EngineHandle::start(
        Box::new(MemoryJournal::new()),
        None,
        recovered,
        Box::new(ManualClock::new(START)),
        options,
    )
    .expect("start");
    let mut expected = Vec::new();
    for (sequence, command) in setup().into_iter().enumerate() {
        engine.submit(command).unwrap().expect("accepted");
        let markets = engine.read(|book| book.markets().len()).unwrap();
        expected.push((0, sequence as u64, markets));
        expected.push((1, sequence as u64, markets));
    }
    engine.shutdown();
    assert_eq!(*seen.lock().unwrap(), expected);
    assert!(expected.iter().any(|(_, _, markets)| *markets > 0), "the setup creates markets");
}

/// `try_submit_then` gives the durable reply and a view of the book as that batch left it, in
/// one trip; after a failed sync it gives the error and never shows the book.
#[test]
fn submit_then_reads_the_book_after_the_durable_batch_and_never_after_a_failed_one() {
    let memory = MemoryJournal::new();
    let faulty = FaultyJournal::new(memory.clone(), FaultPlan::fail_sync_at(2));
    let engine = start(Box::new(faulty), ManualClock::new(START));
    let Ok(Ack::AccountOpened(account)) =
        engine.submit(Command::OpenAccount { currency: domain::Currency::EUR }).unwrap()
    else {
        panic!("open")
    };
    let deposit = |minor| Command::Deposit {
        account,
        amount: domain::Money::from_minor(minor),
        payment_ref: "p".to_string(),
        idempotency: None,
    };
    let receiver = engine
        .try_submit_then(deposit(500), move |book, reply| {
            assert!(reply.is_ok(), "the view is built from the reply it comes with");
            book.wallet(account).map(|wallet| wallet.balance.minor())
        })
        .expect("submitted");
    let (reply, balance) = receiver.recv().expect("answered").expect("durable");
    assert!(matches!(reply, Ok(Ack::Transfer(_))), "{reply:?}");
    assert_eq!(balance, Some(500));
    // The third batch fails to sync: an error, and the closure never sees that book.
    let receiver = engine
        .try_submit_then(deposit(700), |_, _| -> u64 { panic!("a book that is not durable was shown") })
        .expect("submitted");
    assert!(matches!(receiver.recv().expect("answered"), Err(EngineError::Stopped(_))));
    engine.shutdown();
}

/// Issue 11 item 10: a full disk at write time refuses the batch with `StorageFull` (nothing
/// acknowledged, the book rebuilt without it), refuses commands while the disk stays full, and
/// resumes without a restart once the space check finds room. A failed sync still stops.
#[test]
fn a_full_disk_refuses_commands_then_resumes_without_a_restart() {
    let memory = MemoryJournal::new();
    let plan = FaultPlan::fail_sync_at(1).with_kind(journal::FaultKind::StorageFull).with_full_attempts(2);
    let faulty = FaultyJournal::new(memory.clone(), plan);
    let recovered =
        Recovered { book: book::Book::new(Config::default()), report: empty_report(), skipped_snapshots: Vec::new() };
    let retry = std::time::Duration::from_millis(300);
    let options = EngineOptions { storage_full_retry: retry, ..EngineOptions::default() };
    let engine =
        EngineHandle::start(Box::new(faulty), None, recovered, Box::new(ManualClock::new(START)), options).unwrap();
    let open = || engine.submit(Command::OpenAccount { currency: domain::Currency::EUR });
    let Ok(Ack::AccountOpened(first)) = open().unwrap() else { panic!("first account") };
    let before = engine.read(codec::digest).unwrap();
    assert!(matches!(open(), Err(EngineError::StorageFull)));
    assert!(engine.stats().storage_full.load(Ordering::SeqCst));
    assert!(!engine.stats().stopped.load(Ordering::SeqCst));
    // The refused account is not in the book: reads see the durable state only.
    assert_eq!(engine.read(codec::digest).unwrap(), before);
    assert!(matches!(open(), Err(EngineError::StorageFull)), "refused while the disk is full");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.stats().storage_full.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "the engine never found room again");
        std::thread::sleep(retry);
    }
    let Ok(Ack::AccountOpened(second)) = open().unwrap() else { panic!("second account") };
    assert_ne!(second, first);
    assert_eq!(engine.stats().storage_full_events.load(Ordering::Relaxed), 1);
    let live = engine.read(codec::digest).unwrap();
    engine.shutdown();
    assert_eq!(codec::digest(&recover(&memory, None, Config::default()).unwrap().book), live);
}
