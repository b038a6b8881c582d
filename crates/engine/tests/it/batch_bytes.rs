//! Batches bounded in bytes: the sequencer ends a batch before the command that would take its
//! record past the journal's `payload_bytes_max`, that command starts the next batch, and a
//! command no batch can hold is refused undecided while the engine goes on.
//!
//! The journal is the real file journal behind a wrapper that reports and enforces a smaller
//! record limit, the way the JetStream backend enforces its 31 MiB: an append over it fails with
//! `RecordTooLarge`, which would stop the engine.

use std::sync::atomic::Ordering;
use std::sync::mpsc;

use book::{Ack, Command, Config, Origin};
use domain::{Currency, Money};
use engine::{recover, EngineError, EngineHandle, EngineOptions, ManualClock, Outcome, Submission};
use journal::{FileJournal, FileJournalOptions, Journal, JournalError, MemoryJournal, Position};
use proptest::prelude::*;

use crate::workload::START;

/// A journal whose records hold at most `payload_bytes_max` bytes.
struct CappedJournal<J> {
    inner: J,
    payload_bytes_max: usize,
}

impl<J: Journal> Journal for CappedJournal<J> {
    fn append(&mut self, payload: &[u8]) -> Result<Position, JournalError> {
        if payload.len() > self.payload_bytes_max {
            return Err(JournalError::RecordTooLarge { len: payload.len(), max: self.payload_bytes_max });
        }
        self.inner.append(payload)
    }

    fn next_position(&self) -> Position {
        self.inner.next_position()
    }

    fn payload_bytes_max(&self) -> usize {
        self.payload_bytes_max
    }

    fn read_from(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        self.inner.read_from(from, visit)
    }
}

fn start(journal: impl Journal + 'static, payload_bytes_max: usize) -> Result<EngineHandle, EngineError> {
    let recovered = recover(&journal, None, Config::default()).expect("recover");
    let journal = CappedJournal { inner: journal, payload_bytes_max };
    EngineHandle::start(Box::new(journal), None, recovered, Box::new(ManualClock::new(START)), EngineOptions::default())
}

fn open_file_journal(dir: &std::path::Path) -> FileJournal {
    FileJournal::open(dir, FileJournalOptions::default()).expect("open the file journal").0
}

/// Holds the sequencer on a read until the returned sender is dropped, so that everything
/// submitted meanwhile waits in the inbox and is drained at once.
fn hold_sequencer(engine: &EngineHandle) -> mpsc::Sender<()> {
    let (release, released) = mpsc::channel::<()>();
    let (holding, held) = mpsc::channel::<()>();
    let _view = engine
        .read_async(move |_book| {
            let _ = holding.send(());
            let _ = released.recv();
        })
        .expect("read queued");
    held.recv().expect("the sequencer runs the read");
    release
}

/// A deposit of `minor` with an origin whose reason pads its entry to about `reason_bytes`.
fn deposit(minor: i64, reason_bytes: usize) -> Submission {
    let command = Command::Deposit {
        account: book::AccountId(1),
        amount: Money::from_minor(minor),
        payment_ref: format!("psp-{minor}"),
        idempotency: None,
    };
    let origin = Origin::system("test").with_reason(Some("r".repeat(reason_bytes)));
    Submission { command, origin }
}

fn entry_bytes(submission: &Submission) -> usize {
    codec::encode_batch_entry(&submission.command, &submission.origin, &mut Vec::new())
}

/// Every record from position `from` on, decoded.
fn batches(journal: &dyn Journal, from: Position) -> Vec<(usize, codec::Batch)> {
    let mut batches = Vec::new();
    journal
        .read_from(from, &mut |_position, payload| {
            batches.push((payload.len(), codec::decode_batch(payload).expect("a batch")));
            Ok(())
        })
        .expect("read the journal");
    batches
}

/// Submits `submissions` while the sequencer is held, so that one drain takes them all, and
/// returns their outcomes in order.
fn submit_together(engine: &EngineHandle, submissions: &[Submission]) -> Vec<Outcome> {
    let release = hold_sequencer(engine);
    let receivers: Vec<_> =
        submissions.iter().map(|submission| engine.try_submit(submission.clone()).expect("queued")).collect();
    drop(release);
    receivers.into_iter().map(|receiver| receiver.recv().expect("an outcome")).collect()
}

#[test]
fn commands_past_the_record_limit_are_cut_into_several_batches_applied_in_order() {
    const PAYLOAD_BYTES_MAX: usize = 4_096;
    let dir = tempfile::tempdir().unwrap();
    let engine = start(open_file_journal(dir.path()), PAYLOAD_BYTES_MAX).expect("start");
    engine.submit(Command::OpenAccount { currency: Currency::EUR }).expect("durable").expect("opened");
    let after_setup = engine.stats().committed_position.load(Ordering::Acquire);
    // About 440 bytes each: 9 fit in a record of 4 KiB, 100 need 12 records.
    let submissions: Vec<Submission> = (1..=100).map(|minor| deposit(minor, 400)).collect();
    let outcomes = submit_together(&engine, &submissions);
    let mut expected_balance = 0;
    for (minor, outcome) in (1..=100).zip(&outcomes) {
        expected_balance += minor;
        assert!(matches!(outcome, Ok(Ok(Ack::Transfer(_)))), "deposit {minor}: {outcome:?}");
    }
    let balance = engine.read(|book| book.wallet(book::AccountId(1)).map(|wallet| wallet.balance)).unwrap();
    assert_eq!(balance, Some(Money::from_minor(expected_balance)));
    assert!(!engine.stats().stopped.load(Ordering::SeqCst));
    let live = engine.read(codec::digest).unwrap();
    engine.shutdown();

    let journal = open_file_journal(dir.path());
    let written = batches(&journal, after_setup);
    let room = PAYLOAD_BYTES_MAX - codec::BATCH_HEADER_BYTES;
    let entries: usize = submissions.iter().map(entry_bytes).sum();
    assert!(entries > 10 * room, "the test needs commands worth many records: {entries} bytes");
    assert!(written.len() > entries / room, "{} batches for {entries} bytes", written.len());
    let mut next_sequence = written[0].1.first_sequence;
    let taken: Vec<&Command> = written.iter().flat_map(|(_, batch)| &batch.commands).collect();
    let expected: Vec<&Command> = submissions.iter().map(|submission| &submission.command).collect();
    assert_eq!(taken, expected, "every command once, in submission order");
    for (index, (bytes, batch)) in written.iter().enumerate() {
        assert!(*bytes <= PAYLOAD_BYTES_MAX, "batch {index}: {bytes} bytes");
        assert_eq!(batch.first_sequence, next_sequence, "batch {index}");
        next_sequence += batch.commands.len() as u64;
        // The cut is where the next command would not fit: a batch is never ended early.
        if let Some((_, next)) = written.get(index + 1) {
            let first_next = Submission { command: next.commands[0].clone(), origin: next.origins[0].clone() };
            assert!(bytes + entry_bytes(&first_next) > PAYLOAD_BYTES_MAX, "batch {index} was cut early");
        }
    }
    // Recovery replays the cut batches to the same book.
    let recovered = recover(&journal, None, Config::default()).expect("recover");
    assert_eq!(codec::digest(&recovered.book), live);
}

#[test]
fn a_command_no_batch_can_hold_is_refused_undecided_and_the_engine_goes_on() {
    const PAYLOAD_BYTES_MAX: usize = 2_048;
    let dir = tempfile::tempdir().unwrap();
    let engine = start(open_file_journal(dir.path()), PAYLOAD_BYTES_MAX).expect("start");
    engine.submit(Command::OpenAccount { currency: Currency::EUR }).expect("durable").expect("opened");
    let oversized = Submission {
        command: Command::Deposit {
            account: book::AccountId(1),
            amount: Money::from_minor(1_000_000),
            payment_ref: "x".repeat(PAYLOAD_BYTES_MAX),
            idempotency: None,
        },
        origin: Origin::system("test"),
    };
    let too_large = entry_bytes(&oversized);
    // Between two commands of the same drain, and alone.
    let outcomes = submit_together(&engine, &[deposit(1, 10), oversized.clone(), deposit(2, 10)]);
    assert!(matches!(outcomes[0], Ok(Ok(Ack::Transfer(_)))), "{:?}", outcomes[0]);
    match &outcomes[1] {
        Err(EngineError::CommandTooLarge { bytes, max }) => {
            assert_eq!((*bytes, *max), (too_large, PAYLOAD_BYTES_MAX - codec::BATCH_HEADER_BYTES));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(outcomes[2], Ok(Ok(Ack::Transfer(_)))), "{:?}", outcomes[2]);
    let alone = engine.submit(oversized.clone());
    assert!(matches!(alone, Err(EngineError::CommandTooLarge { .. })), "{alone:?}");
    let then = engine.try_submit_then(oversized, |_book, _reply| ()).expect("queued").recv().expect("an outcome");
    assert!(matches!(then, Err(EngineError::CommandTooLarge { .. })), "{then:?}");
    // Never decided: the balance holds only the two small deposits, and the engine takes more.
    engine.submit(deposit(4, 10)).expect("durable").expect("deposited");
    let balance = engine.read(|book| book.wallet(book::AccountId(1)).map(|wallet| wallet.balance)).unwrap();
    assert_eq!(balance, Some(Money::from_minor(7)));
    assert!(!engine.stats().stopped.load(Ordering::SeqCst));
    assert_eq!(engine.stats().commands.load(Ordering::Relaxed), 4);
    let live = engine.read(codec::digest).unwrap();
    engine.shutdown();
    let journal = open_file_journal(dir.path());
    let recovered = recover(&journal, None, Config::default()).expect("recover");
    assert_eq!(codec::digest(&recovered.book), live);
    assert_eq!(recovered.report.next_sequence, 4);
}

#[test]
fn a_journal_whose_records_cannot_hold_a_batch_header_is_refused_at_start() {
    let refused = start(MemoryJournal::new(), codec::BATCH_HEADER_BYTES);
    assert!(matches!(refused, Err(EngineError::Journal(JournalError::InvalidOptions { .. }))), "{refused:?}");
    let smallest = start(MemoryJournal::new(), codec::BATCH_HEADER_BYTES + 1).expect("start");
    // Nothing fits, so everything is refused, and the engine is still up.
    let outcome = smallest.submit(Command::OpenAccount { currency: Currency::EUR });
    assert!(matches!(outcome, Err(EngineError::CommandTooLarge { max: 1, .. })), "{outcome:?}");
    assert!(!smallest.stats().stopped.load(Ordering::SeqCst));
    smallest.shutdown();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the sizes and the limit: every command that fits alone is applied once, in
    /// order, every record is within the limit and every cut is at the first command that
    /// does not fit; the rest are refused.
    #[test]
    fn batches_are_cut_exactly_at_the_record_limit(
        payload_bytes_max in 256usize..3_000,
        reasons in prop::collection::vec(0usize..=500, 1..60),
    ) {
        let memory = MemoryJournal::new();
        let engine = start(memory.clone(), payload_bytes_max).expect("start");
        engine.submit(Command::OpenAccount { currency: Currency::EUR }).expect("durable").expect("opened");
        let submissions: Vec<Submission> =
            reasons.iter().enumerate().map(|(index, reason)| deposit(index as i64 + 1, *reason)).collect();
        let outcomes = submit_together(&engine, &submissions);
        let room = payload_bytes_max - codec::BATCH_HEADER_BYTES;
        let mut fitting = Vec::new();
        for (submission, outcome) in submissions.iter().zip(&outcomes) {
            if entry_bytes(submission) <= room {
                prop_assert!(matches!(outcome, Ok(Ok(Ack::Transfer(_)))), "{:?}", outcome);
                fitting.push(submission.command.clone());
            } else {
                prop_assert!(matches!(outcome, Err(EngineError::CommandTooLarge { .. })), "{:?}", outcome);
            }
        }
        let live = engine.read(codec::digest).unwrap();
        engine.shutdown();
        let written = batches(&memory, 1);
        let taken: Vec<Command> = written.iter().flat_map(|(_, batch)| batch.commands.clone()).collect();
        prop_assert_eq!(taken, fitting);
        for window in written.windows(2) {
            let ((bytes, _), (_, next)) = (&window[0], &window[1]);
            prop_assert!(*bytes <= payload_bytes_max);
            let first_next = Submission { command: next.commands[0].clone(), origin: next.origins[0].clone() };
            prop_assert!(bytes + entry_bytes(&first_next) > payload_bytes_max);
        }
        let recovered = recover(&memory, None, Config::default()).expect("recover");
        prop_assert_eq!(codec::digest(&recovered.book), live);
    }
}
