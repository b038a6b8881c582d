//! API request bodies (`gateway::requests`): the first byte picks the route, the rest is the
//! body. Every body either gives a command or an error with a stable code and a 4xx status;
//! the same body always gives the same answer; and a command, applied to a small book, gets an
//! ack or a rejection with a listed code and leaves every invariant of the book intact.

#![no_main]

use book::{AccountId, Command, MarketId};
use domain::Currency;
use gateway::requests::{self, REQUEST_ERROR_CODES};
use gateway::ApiError;
use libfuzzer_sys::fuzz_target;
use sportsbook_fuzz::{apply_and_check, small_book};

fn parse(route: u8, body: &[u8]) -> Result<Command, ApiError> {
    let eur = Currency::EUR;
    let jpy = Currency::parse("JPY").expect("JPY");
    match route % 6 {
        0 => requests::place_bet(body, AccountId(1), eur).map(Command::PlaceBet),
        1 => requests::place_bet(body, AccountId(2), jpy).map(Command::PlaceBet),
        2 => requests::deposit(body, AccountId(1), eur).map(|(command, _instrument)| command),
        3 => requests::deposit(body, AccountId(2), jpy).map(|(command, _instrument)| command),
        4 => requests::withdrawal(body, AccountId(1), eur),
        _ => requests::settle(body, MarketId(1 + u64::from(route / 6 % 2))),
    }
}

fn summary(result: &Result<Command, ApiError>) -> String {
    match result {
        Ok(command) => format!("{command:?}"),
        Err(error) => format!("{} {} {}", error.status, error.code, error.message),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else { return };
    let result = parse(route, body);
    assert_eq!(summary(&result), summary(&parse(route, body)), "the same body answered twice differently");
    match result {
        Err(error) => {
            assert!(REQUEST_ERROR_CODES.contains(&error.code), "unstable code {:?}", error.code);
            assert!(error.status.is_client_error(), "{} for {}", error.status, error.code);
            assert!(!error.message.is_empty());
        }
        Ok(command) => {
            // Any reply will do: `apply_and_check` holds it and the book to their contracts.
            let mut book = small_book();
            let _reply = apply_and_check(&mut book, &command);
        }
    }
});
