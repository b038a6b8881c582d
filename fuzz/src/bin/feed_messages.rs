//! Feed messages (`feed::json`, `feed::uof`): the first byte picks the form, the rest is a
//! provider's message. JSON either parses or is an error; what parses and converts to the
//! book's form converts back and forth to the same message; Unified Odds Feed XML (optionally
//! preceded by a routing-key line) either translates or is an error, translates the same way
//! twice, and a routing key that parses renders back to the same parts. Every message the book
//! gets (first a fixture and a market so that items reach real markets, then the fuzzed one) is
//! decided with a listed code and leaves every invariant of the book intact, feed mapping
//! included; a message given twice is a duplicate the second time and changes nothing (by
//! sequence for JSON, by content for the sequence-less UOF messages).

#![no_main]

use book::{Command, FeedItem, FeedMessage, FeedSelection};
use domain::Odds;
use feed::json::JsonMessage;
use feed::uof::{RoutingKey, UofEvent, UofTranslator};
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
    let message = if form % 2 == 0 {
        let Ok(message) = serde_json::from_str::<JsonMessage>(text) else { return };
        let Ok(converted) = message.to_book() else { return };
        let again = JsonMessage::from_book(&converted).to_book().expect("a converted message converts again");
        assert_eq!(again, converted, "{text:?}");
        converted
    } else {
        let (routing, xml) = match text.split_once('\n') {
            Some((key, xml)) if !key.starts_with('<') => (RoutingKey::parse(key).ok(), xml),
            _ => (None, text),
        };
        if let Some(key) = &routing {
            assert_eq!(RoutingKey::parse(&key.render()).as_ref(), Ok(key), "a routing key renders back");
        }
        let translator = UofTranslator::new("uof", 5);
        let translated = translator.translate(xml, routing.as_ref());
        assert_eq!(translated, translator.translate(xml, routing.as_ref()), "translation is deterministic");
        match translated {
            Ok(translation) => match translation.event {
                UofEvent::Feed { message, .. } | UofEvent::SnapshotComplete { message, .. } => {
                    assert_eq!(message.sequence, 0, "UOF messages carry no sequence");
                    message
                }
                UofEvent::Alive { .. } | UofEvent::ProductDown { .. } | UofEvent::Unknown { .. } => return,
            },
            Err(_) => return,
        }
    };
    let _ = apply_and_check(&mut book, &Command::Feed(message.clone()));
    // The same message again is a duplicate, changing nothing.
    let before = codec::digest(&book);
    let reply = apply_and_check(&mut book, &Command::Feed(message));
    if let Ok(book::Ack::Feed(applied)) = reply {
        assert!(applied.duplicate, "a message applied twice");
        assert_eq!(codec::digest(&book), before, "a duplicate changed the book");
    }
});
