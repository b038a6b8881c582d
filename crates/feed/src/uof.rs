//! A Sportradar-UOF-style XML adapter: `odds_change`, `bet_stop`, `bet_settlement`,
//! `bet_cancel`, `rollback_bet_settlement`, `rollback_bet_cancel`, `alive`, `snapshot_complete`
//! and `fixture_change`, translated into the book's feed messages.
//!
//! Where this differs from Sportradar's feed, on purpose:
//! - every message carries a `sequence` attribute (per producer, from 1): the book de-duplicates
//!   by it, across the primary and backup connections;
//! - market and outcome names come from a small built-in table (1 = 1X2, 18 = total) instead of
//!   the market-descriptions API, and `fixture_change` may carry `name`, `sport` and
//!   `competition` attributes instead of a fixture fetched from the API.
//!
//! Markets are keyed by `id` and `specifiers` (`18|total=2.5`), outcomes by their `id`.

use std::collections::HashSet;
use std::fmt::Write;

use book::{FeedItem, FeedMessage, FeedOdds, FeedResult, FeedSelection, Outcome};
use domain::{Odds, Ratio};

use crate::error::FeedError;

/// Bytes of one XML message.
pub const UOF_MESSAGE_BYTES_MAX: usize = 1 << 20;

/// What one XML message means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UofEvent {
    /// A producer heartbeat; `subscribed == false` means the session must recover.
    Alive {
        product: u32,
        subscribed: bool,
    },
    Feed(FeedMessage),
}

/// Translates XML messages of one provider. Remembers which fixtures and markets it has
/// announced to the book, so that an `odds_change` for a new market first creates it.
#[derive(Debug)]
pub struct UofTranslator {
    provider: String,
    /// The bet delay of an event that goes live.
    in_play_delay_seconds: u32,
    events: HashSet<String>,
    markets: HashSet<(String, String)>,
}

fn attr<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Result<&'a str, FeedError> {
    node.attribute(name).ok_or_else(|| FeedError::invalid(format!("<{}> lacks {name}", node.tag_name().name())))
}

fn number<T: std::str::FromStr>(node: roxmltree::Node<'_, '_>, name: &str) -> Result<T, FeedError> {
    let text = attr(node, name)?;
    text.parse()
        .map_err(|_| FeedError::invalid(format!("<{}> {name}={text:?} is not a number", node.tag_name().name())))
}

fn factor(node: roxmltree::Node<'_, '_>, name: &str) -> Result<Option<Ratio>, FeedError> {
    node.attribute(name)
        .map(|text| Ratio::parse(text).map_err(|_| FeedError::invalid(format!("{name}={text:?} is not a factor"))))
        .transpose()
}

/// The key of a market: `id`, or `id|specifiers` when it has specifiers.
fn market_key(node: roxmltree::Node<'_, '_>) -> Result<String, FeedError> {
    let id = attr(node, "id")?;
    Ok(match node.attribute("specifiers").filter(|text| !text.is_empty()) {
        Some(specifiers) => format!("{id}|{specifiers}"),
        None => id.to_string(),
    })
}

fn market_name(key: &str) -> (String, String) {
    let (id, specifiers) = key.split_once('|').unwrap_or((key, ""));
    match id {
        "1" => ("1X2".to_string(), "1x2".to_string()),
        "18" => (format!("Total {}", specifiers.trim_start_matches("total=")), "total".to_string()),
        _ => (format!("Market {key}"), format!("uof:{id}")),
    }
}

fn outcome_name(market: &str, outcome: &str) -> String {
    let id = market.split_once('|').map_or(market, |(id, _)| id);
    match (id, outcome) {
        ("1", "1") => "Home".to_string(),
        ("1", "2") => "Draw".to_string(),
        ("1", "3") => "Away".to_string(),
        ("18", "12") => "Over".to_string(),
        ("18", "13") => "Under".to_string(),
        _ => format!("Outcome {outcome}"),
    }
}

fn markets_of<'a, 'input>(node: roxmltree::Node<'a, 'input>) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> {
    node.descendants().filter(|child| child.has_tag_name("market"))
}

impl UofTranslator {
    pub fn new(provider: &str, in_play_delay_seconds: u32) -> UofTranslator {
        UofTranslator {
            provider: provider.to_string(),
            in_play_delay_seconds,
            events: HashSet::new(),
            markets: HashSet::new(),
        }
    }

    /// Forgets what was announced (after a reconnect the book may be newer than our memory;
    /// announcing again is harmless).
    pub fn forget(&mut self) {
        self.events.clear();
        self.markets.clear();
    }

    pub fn translate(&mut self, xml: &str) -> Result<UofEvent, FeedError> {
        if xml.len() > UOF_MESSAGE_BYTES_MAX {
            return Err(FeedError::invalid("XML message too large"));
        }
        let document = roxmltree::Document::parse(xml).map_err(|error| FeedError::invalid(format!("XML: {error}")))?;
        let root = document.root_element();
        let kind = root.tag_name().name();
        if kind == "alive" {
            return Ok(UofEvent::Alive {
                product: number(root, "product")?,
                subscribed: number::<i64>(root, "subscribed")? != 0,
            });
        }
        let sequence: u64 = number(root, "sequence")?;
        let timestamp: u64 = number(root, "timestamp")?;
        let mut items = Vec::new();
        match kind {
            "snapshot_complete" => items.push(FeedItem::SnapshotComplete),
            "fixture_change" => {
                let event = attr(root, "event_id")?.to_string();
                items.push(FeedItem::Fixture {
                    name: root.attribute("name").unwrap_or(&event).to_string(),
                    sport: root.attribute("sport").unwrap_or("unknown").to_string(),
                    competition: root.attribute("competition").unwrap_or("").to_string(),
                    starts_at: number(root, "start_time")?,
                    event: event.clone(),
                });
                self.events.insert(event);
            }
            "odds_change" => self.odds_change(root, &mut items)?,
            "bet_stop" => {
                let event = attr(root, "event_id")?.to_string();
                let markets = match root.attribute("groups") {
                    None | Some("all") => Vec::new(),
                    Some(groups) => groups.split('|').map(str::to_string).collect(),
                };
                items.push(FeedItem::BetStop { event, markets });
            }
            "bet_settlement" => {
                let event = attr(root, "event_id")?.to_string();
                for market in markets_of(root) {
                    let key = market_key(market)?;
                    let mut results = Vec::new();
                    for outcome in market.children().filter(|child| child.has_tag_name("outcome")) {
                        let void_factor = factor(outcome, "void_factor")?;
                        let won = number::<i64>(outcome, "result")? == 1;
                        let (result, void_factor) = match void_factor {
                            Some(factor) if factor.is_one() => (Outcome::Void, None),
                            other => (if won { Outcome::Win } else { Outcome::Lose }, other),
                        };
                        results.push(FeedResult {
                            selection: attr(outcome, "id")?.to_string(),
                            outcome: result,
                            dead_heat: factor(outcome, "dead_heat_factor")?,
                            void_factor,
                        });
                    }
                    items.push(FeedItem::Settlement { event: event.clone(), market: key, results });
                }
            }
            "bet_cancel" => {
                let event = attr(root, "event_id")?.to_string();
                for market in markets_of(root) {
                    items.push(FeedItem::Cancel { event: event.clone(), market: market_key(market)? });
                }
            }
            "rollback_bet_settlement" | "rollback_bet_cancel" => {
                let event = attr(root, "event_id")?.to_string();
                for market in markets_of(root) {
                    items.push(FeedItem::Rollback { event: event.clone(), market: market_key(market)? });
                }
            }
            other => return Err(FeedError::invalid(format!("unknown message <{other}>"))),
        }
        Ok(UofEvent::Feed(FeedMessage { provider: self.provider.clone(), sequence, timestamp, items }))
    }

    fn odds_change(&mut self, root: roxmltree::Node<'_, '_>, items: &mut Vec<FeedItem>) -> Result<(), FeedError> {
        let event = attr(root, "event_id")?.to_string();
        if self.events.insert(event.clone()) {
            // Announced once; a fixture the book already has is only renamed to itself when
            // a `fixture_change` never came, which is what its name would be anyway.
            items.push(FeedItem::Fixture {
                event: event.clone(),
                name: event.clone(),
                sport: "unknown".to_string(),
                competition: String::new(),
                starts_at: number(root, "timestamp")?,
            });
        }
        let mut odds = Vec::new();
        for market in markets_of(root) {
            let key = market_key(market)?;
            let mut prices = Vec::new();
            for outcome in market.children().filter(|child| child.has_tag_name("outcome")) {
                let Some(text) = outcome.attribute("odds") else { continue };
                let price = Odds::parse_decimal(text)
                    .map_err(|_| FeedError::invalid(format!("odds={text:?} is not decimal odds")))?;
                prices.push((attr(outcome, "id")?.to_string(), price));
            }
            if self.markets.insert((event.clone(), key.clone())) && !prices.is_empty() {
                let (name, kind) = market_name(&key);
                items.push(FeedItem::Market {
                    event: event.clone(),
                    market: key.clone(),
                    name,
                    kind,
                    selections: prices
                        .iter()
                        .map(|(id, price)| FeedSelection {
                            id: id.clone(),
                            name: outcome_name(&key, id),
                            price: *price,
                        })
                        .collect(),
                    each_way: None,
                });
            }
            let active = match market.attribute("status") {
                Some("1") => Some(true),
                Some(_) => Some(false),
                None => None,
            };
            odds.push(FeedOdds { market: key, prices, active });
        }
        if !odds.is_empty() {
            items.push(FeedItem::Odds { event: event.clone(), markets: odds });
        }
        match root
            .children()
            .find(|child| child.has_tag_name("sport_event_status"))
            .map(|status| status.attribute("status"))
        {
            Some(Some("1")) => items.push(FeedItem::InPlay { event, bet_delay_seconds: self.in_play_delay_seconds }),
            Some(Some("3" | "4")) => items.push(FeedItem::Ended { event }),
            _ => {}
        }
        Ok(())
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn market_attrs(key: &str) -> String {
    match key.split_once('|') {
        Some((id, specifiers)) => format!(r#"id="{}" specifiers="{}""#, escape(id), escape(specifiers)),
        None => format!(r#"id="{}""#, escape(key)),
    }
}

/// The XML a UOF-style producer sends for a feed message (the simulator's side), with the
/// routing key it is published under. One message becomes one XML document.
pub fn render(message: &FeedMessage, product: u32) -> Result<(String, String), FeedError> {
    let head = |tag: &str, event: Option<&str>| {
        let mut text =
            format!(r#"<{tag} product="{product}" sequence="{}" timestamp="{}""#, message.sequence, message.timestamp);
        if let Some(event) = event {
            let _ = write!(text, r#" event_id="{}""#, escape(event));
        }
        text
    };
    let routing = |kind: &str, event: &str| format!("hi.-.live.{kind}.1.{}", event.replace('.', "_"));
    let (first, rest) = message.items.split_first().ok_or_else(|| FeedError::invalid("nothing to render"))?;
    Ok(match first {
        FeedItem::Fixture { event, name, sport, competition, starts_at } => (
            routing("fixture_change", event),
            format!(
                r#"{} change_type="1" start_time="{starts_at}" name="{}" sport="{}" competition="{}"/>"#,
                head("fixture_change", Some(event)),
                escape(name),
                escape(sport),
                escape(competition)
            ),
        ),
        FeedItem::Market { event, .. }
        | FeedItem::Odds { event, .. }
        | FeedItem::InPlay { event, .. }
        | FeedItem::Ended { event } => {
            let mut body = String::new();
            let mut status = None;
            for item in std::iter::once(first).chain(rest) {
                match item {
                    FeedItem::Market { market, selections, .. } => {
                        let _ = write!(body, r#"<market {} status="1">"#, market_attrs(market));
                        for selection in selections {
                            let _ = write!(
                                body,
                                r#"<outcome id="{}" odds="{}" active="1"/>"#,
                                escape(&selection.id),
                                selection.price.decimal()
                            );
                        }
                        body.push_str("</market>");
                    }
                    FeedItem::Odds { markets, .. } => {
                        for odds in markets {
                            let state = match odds.active {
                                Some(false) => r#" status="-1""#,
                                Some(true) => r#" status="1""#,
                                None => "",
                            };
                            let _ = write!(body, r#"<market {}{state}>"#, market_attrs(&odds.market));
                            for (id, price) in &odds.prices {
                                let _ = write!(
                                    body,
                                    r#"<outcome id="{}" odds="{}" active="1"/>"#,
                                    escape(id),
                                    price.decimal()
                                );
                            }
                            body.push_str("</market>");
                        }
                    }
                    FeedItem::InPlay { .. } => status = Some(1),
                    FeedItem::Ended { .. } => status = Some(4),
                    other => return Err(FeedError::invalid(format!("cannot render {other:?} inside odds_change"))),
                }
            }
            let status = status.map(|status| format!(r#"<sport_event_status status="{status}"/>"#)).unwrap_or_default();
            (
                routing("odds_change", event),
                format!("{}>{status}<odds>{body}</odds></odds_change>", head("odds_change", Some(event))),
            )
        }
        FeedItem::BetStop { event, markets } => {
            let groups = if markets.is_empty() { "all".to_string() } else { markets.join("|") };
            (routing("bet_stop", event), format!(r#"{} groups="{}"/>"#, head("bet_stop", Some(event)), escape(&groups)))
        }
        FeedItem::Settlement { event, market, results } => {
            let mut body = format!("<market {}>", market_attrs(market));
            for result in results {
                let won = u8::from(matches!(result.outcome, Outcome::Win | Outcome::Place));
                let _ = write!(body, r#"<outcome id="{}" result="{won}""#, escape(&result.selection));
                let void = if result.outcome == Outcome::Void {
                    Some("1".to_string())
                } else {
                    result.void_factor.map(|f| f.to_string())
                };
                if let Some(void) = void {
                    let _ = write!(body, r#" void_factor="{void}""#);
                }
                if let Some(dead_heat) = result.dead_heat {
                    let _ = write!(body, r#" dead_heat_factor="{dead_heat}""#);
                }
                body.push_str("/>");
            }
            body.push_str("</market>");
            (
                routing("bet_settlement", event),
                format!(
                    r#"{} certainty="2"><outcomes>{body}</outcomes></bet_settlement>"#,
                    head("bet_settlement", Some(event))
                ),
            )
        }
        FeedItem::Cancel { event, market } => (
            routing("bet_cancel", event),
            format!(
                r#"{} void_reason="1"><market {}/></bet_cancel>"#,
                head("bet_cancel", Some(event)),
                market_attrs(market)
            ),
        ),
        FeedItem::Rollback { event, market } => (
            routing("rollback_bet_settlement", event),
            format!(
                r#"{}><market {}/></rollback_bet_settlement>"#,
                head("rollback_bet_settlement", Some(event)),
                market_attrs(market)
            ),
        ),
        FeedItem::SnapshotComplete => (
            "-.-.-.snapshot_complete.-.-.-".to_string(),
            format!(r#"{} request_id="{}"/>"#, head("snapshot_complete", None), message.sequence),
        ),
    })
}

/// An `alive` message.
pub fn render_alive(product: u32, timestamp: u64, subscribed: bool) -> (String, String) {
    (
        "-.-.-.alive.-.-.-".to_string(),
        format!(r#"<alive product="{product}" timestamp="{timestamp}" subscribed="{}"/>"#, u8::from(subscribed)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odds_change_creates_the_fixture_and_market_then_prices_them() {
        let mut translator = UofTranslator::new("uof", 5);
        let xml = r#"<odds_change product="1" event_id="sr:match:1" timestamp="1000" sequence="3">
            <sport_event_status status="1"/>
            <odds><market id="18" specifiers="total=2.5" status="1">
              <outcome id="12" odds="1.9" active="1"/><outcome id="13" odds="1.95" active="1"/>
            </market></odds></odds_change>"#;
        let UofEvent::Feed(message) = translator.translate(xml).expect("valid") else { panic!("not a feed message") };
        assert_eq!(message.sequence, 3);
        let kinds: Vec<&str> = message
            .items
            .iter()
            .map(|item| match item {
                FeedItem::Fixture { .. } => "fixture",
                FeedItem::Market { name, .. } => {
                    assert_eq!(name, "Total 2.5");
                    "market"
                }
                FeedItem::Odds { .. } => "odds",
                FeedItem::InPlay { .. } => "in_play",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["fixture", "market", "odds", "in_play"]);
        // The second time the market is known: only odds.
        let UofEvent::Feed(again) =
            translator.translate(&xml.replace("sequence=\"3\"", "sequence=\"4\"")).expect("valid")
        else {
            panic!("not a feed message")
        };
        assert_eq!(again.items.len(), 2);
    }

    #[test]
    fn settlements_map_void_and_dead_heat_factors() {
        let mut translator = UofTranslator::new("uof", 5);
        let xml = r#"<bet_settlement product="1" event_id="e" timestamp="5" sequence="9" certainty="2"><outcomes>
            <market id="1"><outcome id="1" result="1" dead_heat_factor="0.5"/><outcome id="2" result="0" void_factor="1"/>
            <outcome id="3" result="0" void_factor="0.5"/></market></outcomes></bet_settlement>"#;
        let UofEvent::Feed(message) = translator.translate(xml).expect("valid") else { panic!() };
        let FeedItem::Settlement { results, .. } = &message.items[0] else { panic!() };
        assert_eq!(results[0].outcome, Outcome::Win);
        assert_eq!(results[0].dead_heat, Some(Ratio::parse("0.5").unwrap()));
        assert_eq!(results[1].outcome, Outcome::Void);
        assert_eq!((results[2].outcome, results[2].void_factor), (Outcome::Lose, Some(Ratio::parse("0.5").unwrap())));
    }

    #[test]
    fn rendered_messages_translate_back_to_the_same_items() {
        let message = FeedMessage {
            provider: "uof".to_string(),
            sequence: 11,
            timestamp: 77,
            items: vec![FeedItem::Settlement {
                event: "e".to_string(),
                market: "18|total=2.5".to_string(),
                results: vec![FeedResult {
                    selection: "12".to_string(),
                    outcome: Outcome::Win,
                    dead_heat: None,
                    void_factor: None,
                }],
            }],
        };
        let (routing, xml) = render(&message, 1).expect("render");
        assert!(routing.contains("bet_settlement"));
        let UofEvent::Feed(back) = UofTranslator::new("uof", 5).translate(&xml).expect("valid") else { panic!() };
        assert_eq!(back, message);
        assert_eq!(
            UofTranslator::new("uof", 5).translate(&render_alive(1, 5, false).1).expect("valid"),
            UofEvent::Alive { product: 1, subscribed: false }
        );
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        let mut translator = UofTranslator::new("uof", 5);
        for bad in [
            "",
            "<odds_change",
            "<odds_change product=\"1\"/>",
            "<teleport sequence=\"1\" timestamp=\"1\"/>",
            r#"<odds_change event_id="e" sequence="x" timestamp="1"/>"#,
            r#"<odds_change event_id="e" sequence="1" timestamp="1"><odds><market id="1"><outcome id="1" odds="abc"/></market></odds></odds_change>"#,
        ] {
            assert!(translator.translate(bad).is_err(), "{bad}");
        }
    }
}
