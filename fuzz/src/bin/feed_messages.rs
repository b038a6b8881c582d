//! Feed messages (`feed::json`, `feed::uof`): the first byte picks the form, the rest is a
//! provider's message. JSON either parses or is an error; what parses and converts to the
//! book's form converts back and forth to the same message; UOF-style XML either translates
//! or is an error. Every message the book gets (first a fixture and a market so that items
//! reach real markets, then the fuzzed one) is decided with a listed code and leaves every
//! invariant of the book intact, feed mapping included.

#![no_main]

use book::{Command, FeedItem, FeedMessage, FeedSelection};
use domain::Odds;
use feed::json::JsonMessage;
use feed::uof::{UofEvent, UofTranslator};
use libfuzzer_sys::fuzz_target;
use sportsbook_fuzz::{apply_and_check, small_book, NOW_MS};

/// A book where provider `p` (JSON) and `uof` (XML) each have fixture `e` with market `m`
/// (outcomes `1` and `2`), and the UOF translator knows them.
fn fed_book() -> book::Book {
    let mut book = small_book();
    for provider in ["p", "uof"] {
        let items = vec![
            FeedItem::Fixture {
                event: "e".into(),
                name: "Fed".into(),
                sport: "football".into(),
                competition: String::new(),
                starts_at: NOW_MS + 86_400_000,
            },
            FeedItem::Market {
                event: "e".into(),
                market: "m".into(),
                name: "Match".into(),
                kind: String::new(),
                selections: ["1", "2"]
                    .iter()
                    .map(|id| FeedSelection {
                        id: (*id).into(),
                        name: format!("Outcome {id}"),
                        price: Odds::parse("2.0").expect("odds"),
                    })
                    .collect(),
                each_way: None,
            },
        ];
        let message = FeedMessage { provider: provider.into(), sequence: 1, timestamp: NOW_MS, items };
        assert!(apply_and_check(&mut book, &Command::Feed(message)).is_ok());
    }
    book
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, body)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(body) else { return };
    let mut book = fed_book();
    if form % 2 == 0 {
        let Ok(message) = serde_json::from_str::<JsonMessage>(text) else { return };
        let Ok(converted) = message.to_book() else { return };
        let again = JsonMessage::from_book(&converted).to_book().expect("a converted message converts again");
        assert_eq!(again, converted, "{text:?}");
        let _ = apply_and_check(&mut book, &Command::Feed(converted.clone()));
        // The same message again is a duplicate, changing nothing.
        let before = codec::digest(&book);
        let reply = apply_and_check(&mut book, &Command::Feed(converted));
        if let Ok(book::Ack::Feed(applied)) = reply {
            assert!(applied.duplicate, "a sequence applied twice");
            assert_eq!(codec::digest(&book), before, "a duplicate changed the book");
        }
    } else {
        let mut translator = UofTranslator::new("uof", 5);
        match translator.translate(text) {
            Ok(UofEvent::Feed(message)) => {
                let _ = apply_and_check(&mut book, &Command::Feed(message));
            }
            Ok(UofEvent::Alive { .. }) | Err(_) => {}
        }
    }
});
