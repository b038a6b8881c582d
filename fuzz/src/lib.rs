//! Helpers shared by the fuzz targets in `src/bin/`: a small book to apply fuzzed commands to,
//! and the checks every decoded or parsed value must pass.

use book::{AccountId, Book, Command, Config, NewSelection, Reply};
use domain::{Currency, Money, Odds};

/// The time the helper book runs at: 2026-11-25T12:00:00Z.
pub const NOW_MS: u64 = 1_795_608_000_000;

/// A book with two funded players (`acc_1` in EUR, `acc_2` in JPY at 160 yen to the euro), an event with a 1X2
/// market (`sel_1..3`) and a second event with a winner market (`sel_4..5`), so that fuzzed
/// commands reach the book's real checks rather than stopping at unknown ids.
pub fn small_book() -> Book {
    let mut book = Book::new(Config::default());
    let odds = |text: &str| Odds::parse(text).expect("valid odds");
    let commands = [
        // JPY bets need a rate against the base currency (EUR) to meet the book's limits.
        Command::SetFxRates {
            base: Currency::EUR,
            rates: vec![(Currency::parse("JPY").expect("JPY"), domain::ExchangeRate::parse("160.00").expect("rate"))],
        },
        Command::OpenAccount { currency: Currency::EUR },
        Command::OpenAccount { currency: Currency::parse("JPY").expect("JPY") },
        Command::Deposit {
            account: AccountId(1),
            amount: Money::from_minor(100_000),
            payment_ref: "seed".into(),
            idempotency: None,
        },
        Command::Deposit {
            account: AccountId(2),
            amount: Money::from_minor(100_000),
            payment_ref: "seed".into(),
            idempotency: None,
        },
        Command::CreateEvent {
            name: "Derby".into(),
            sport: "football".into(),
            competition: String::new(),
            starts_at: NOW_MS + 86_400_000,
        },
        Command::CreateMarket {
            event: book::EventId(1),
            name: "1X2".into(),
            kind: String::new(),
            selections: ["2.50", "3.20", "2.80"]
                .iter()
                .zip(["Home", "Draw", "Away"])
                .map(|(price, name)| NewSelection { name: name.into(), price: odds(price) })
                .collect(),
            each_way: None,
        },
        Command::CreateEvent {
            name: "Cup".into(),
            sport: "football".into(),
            competition: String::new(),
            starts_at: NOW_MS + 86_400_000,
        },
        Command::CreateMarket {
            event: book::EventId(2),
            name: "Winner".into(),
            kind: String::new(),
            selections: vec![
                NewSelection { name: "A".into(), price: odds("1.50") },
                NewSelection { name: "B".into(), price: odds("1000") },
            ],
            each_way: None,
        },
    ];
    let mut events = Vec::new();
    for command in &commands {
        let reply = book.apply(NOW_MS, command, &mut events);
        assert!(reply.is_ok(), "setting up the fuzz book: {command:?} gave {reply:?}");
    }
    book
}

/// Applies a command the way the sequencer would and holds the book to its contract: the
/// reply is an ack or a rejection with a listed code, and every invariant still holds.
pub fn apply_and_check(book: &mut Book, command: &Command) -> Reply {
    let mut events = Vec::new();
    let reply = book.apply(NOW_MS + 1, command, &mut events);
    if let Err(rejection) = &reply {
        assert!(book::intern_code(rejection.code()).is_some(), "unlisted rejection code {rejection:?}");
    }
    if let Err(violation) = book.check_invariants() {
        panic!("{command:?} broke an invariant: {violation}");
    }
    reply
}
