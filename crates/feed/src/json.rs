//! The native JSON feed: what `POST /v1/feed/messages` takes and what a provider's WebSocket
//! stream sends. One message is one provider message (one sequence) with items in order:
//!
//! ```json
//! {"provider": "sim", "sequence": 42, "timestamp": 1764064800123,
//!  "items": [{"type": "odds_change", "event": "m1",
//!             "markets": [{"market": "1x2", "prices": [{"selection": "home", "price": "2.10"}]}]}]}
//! ```
//!
//! Prices are decimal odds strings, factors decimal strings (`"0.5"`), times milliseconds since
//! the epoch. A message whose only items are `alive` is a heartbeat: it proves the source is
//! live and never reaches the book.

use book::{EachWayTerms, FeedItem, FeedMessage, FeedOdds, FeedResult, FeedSelection, Outcome};
use domain::{Odds, Ratio};
use serde::{Deserialize, Serialize};

use crate::error::FeedError;

/// Messages in one `POST /v1/feed/messages` body or one WebSocket frame.
pub const FEED_BATCH_MAX: usize = 1_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonMessage {
    pub provider: String,
    pub sequence: u64,
    pub timestamp: u64,
    pub items: Vec<JsonItem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum JsonItem {
    Fixture {
        event: String,
        name: String,
        sport: String,
        #[serde(default)]
        competition: String,
        starts_at: u64,
    },
    Market {
        event: String,
        market: String,
        name: String,
        #[serde(default)]
        kind: String,
        selections: Vec<JsonSelection>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        each_way: Option<JsonEachWay>,
    },
    OddsChange {
        event: String,
        markets: Vec<JsonOdds>,
    },
    BetStop {
        event: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        markets: Vec<String>,
    },
    InPlay {
        event: String,
        #[serde(default)]
        bet_delay_seconds: u32,
    },
    Ended {
        event: String,
    },
    Settlement {
        event: String,
        market: String,
        results: Vec<JsonResult>,
    },
    Cancel {
        event: String,
        market: String,
    },
    Rollback {
        event: String,
        market: String,
    },
    SnapshotComplete {},
    /// A heartbeat.
    Alive {},
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSelection {
    pub id: String,
    pub name: String,
    pub price: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonEachWay {
    pub places: u32,
    pub fraction: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonOdds {
    pub market: String,
    pub prices: Vec<JsonPrice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonPrice {
    pub selection: String,
    pub price: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonResult {
    pub selection: String,
    /// `win`, `lose`, `void` or `place`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_heat_factor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub void_factor: Option<String>,
}

fn odds(text: &str) -> Result<Odds, FeedError> {
    Odds::parse_decimal(text).map_err(|_| FeedError::invalid(format!("price {text:?} is not decimal odds")))
}

fn ratio(text: &str, what: &str) -> Result<Ratio, FeedError> {
    Ratio::parse(text).map_err(|_| FeedError::invalid(format!("{what} {text:?} is not a decimal factor")))
}

fn outcome(text: &str) -> Result<Outcome, FeedError> {
    match text {
        "win" => Ok(Outcome::Win),
        "lose" => Ok(Outcome::Lose),
        "void" => Ok(Outcome::Void),
        "place" => Ok(Outcome::Place),
        _ => Err(FeedError::invalid(format!("outcome {text:?} is not win, lose, void or place"))),
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Win => "win",
        Outcome::Lose => "lose",
        Outcome::Void => "void",
        Outcome::Place => "place",
    }
}

impl JsonMessage {
    /// Whether the message only proves the source is alive.
    pub fn is_heartbeat(&self) -> bool {
        self.items.iter().all(|item| matches!(item, JsonItem::Alive {}))
    }

    /// The book's form of the message; heartbeats (`alive` items) are left out.
    pub fn to_book(&self) -> Result<FeedMessage, FeedError> {
        if self.provider.is_empty() || self.provider.len() > 200 {
            return Err(FeedError::invalid("provider is 1 to 200 bytes"));
        }
        if self.sequence == 0 {
            return Err(FeedError::invalid("sequence starts at 1"));
        }
        let mut items = Vec::with_capacity(self.items.len());
        for item in &self.items {
            items.push(match item {
                JsonItem::Alive {} => continue,
                JsonItem::Fixture { event, name, sport, competition, starts_at } => FeedItem::Fixture {
                    event: event.clone(),
                    name: name.clone(),
                    sport: sport.clone(),
                    competition: competition.clone(),
                    starts_at: *starts_at,
                },
                JsonItem::Market { event, market, name, kind, selections, each_way } => FeedItem::Market {
                    event: event.clone(),
                    market: market.clone(),
                    name: name.clone(),
                    kind: kind.clone(),
                    selections: selections
                        .iter()
                        .map(|selection| {
                            Ok(FeedSelection {
                                id: selection.id.clone(),
                                name: selection.name.clone(),
                                price: odds(&selection.price)?,
                            })
                        })
                        .collect::<Result<_, FeedError>>()?,
                    each_way: match each_way {
                        Some(terms) => Some(EachWayTerms {
                            places: terms.places,
                            fraction: ratio(&terms.fraction, "each-way fraction")?,
                        }),
                        None => None,
                    },
                },
                JsonItem::OddsChange { event, markets } => FeedItem::Odds {
                    event: event.clone(),
                    markets: markets
                        .iter()
                        .map(|market| {
                            Ok(FeedOdds {
                                market: market.market.clone(),
                                prices: market
                                    .prices
                                    .iter()
                                    .map(|price| Ok((price.selection.clone(), odds(&price.price)?)))
                                    .collect::<Result<_, FeedError>>()?,
                                active: market.active,
                            })
                        })
                        .collect::<Result<_, FeedError>>()?,
                },
                JsonItem::BetStop { event, markets } => {
                    FeedItem::BetStop { event: event.clone(), markets: markets.clone() }
                }
                JsonItem::InPlay { event, bet_delay_seconds } => {
                    FeedItem::InPlay { event: event.clone(), bet_delay_seconds: *bet_delay_seconds }
                }
                JsonItem::Ended { event } => FeedItem::Ended { event: event.clone() },
                JsonItem::Settlement { event, market, results } => FeedItem::Settlement {
                    event: event.clone(),
                    market: market.clone(),
                    results: results
                        .iter()
                        .map(|result| {
                            Ok(FeedResult {
                                selection: result.selection.clone(),
                                outcome: outcome(&result.outcome)?,
                                dead_heat: result
                                    .dead_heat_factor
                                    .as_deref()
                                    .map(|text| ratio(text, "dead_heat_factor"))
                                    .transpose()?,
                                void_factor: result
                                    .void_factor
                                    .as_deref()
                                    .map(|text| ratio(text, "void_factor"))
                                    .transpose()?,
                            })
                        })
                        .collect::<Result<_, FeedError>>()?,
                },
                JsonItem::Cancel { event, market } => FeedItem::Cancel { event: event.clone(), market: market.clone() },
                JsonItem::Rollback { event, market } => {
                    FeedItem::Rollback { event: event.clone(), market: market.clone() }
                }
                JsonItem::SnapshotComplete {} => FeedItem::SnapshotComplete,
            });
        }
        Ok(FeedMessage { provider: self.provider.clone(), sequence: self.sequence, timestamp: self.timestamp, items })
    }

    /// The JSON form of a book feed message (what a simulated provider sends). Items of the
    /// Unified Odds Feed adapter (`Announce`, `Markets`, `CancelWindow`, `RollbackCancel`)
    /// have no JSON form and are left out.
    pub fn from_book(message: &FeedMessage) -> JsonMessage {
        let items = message
            .items
            .iter()
            .filter_map(|item| -> Option<JsonItem> {
                Some(match item {
                    FeedItem::Fixture { event, name, sport, competition, starts_at } => JsonItem::Fixture {
                        event: event.clone(),
                        name: name.clone(),
                        sport: sport.clone(),
                        competition: competition.clone(),
                        starts_at: *starts_at,
                    },
                    FeedItem::Market { event, market, name, kind, selections, each_way } => JsonItem::Market {
                        event: event.clone(),
                        market: market.clone(),
                        name: name.clone(),
                        kind: kind.clone(),
                        selections: selections
                            .iter()
                            .map(|selection| JsonSelection {
                                id: selection.id.clone(),
                                name: selection.name.clone(),
                                price: selection.price.decimal(),
                            })
                            .collect(),
                        each_way: each_way
                            .map(|terms| JsonEachWay { places: terms.places, fraction: terms.fraction.to_string() }),
                    },
                    FeedItem::Odds { event, markets } => JsonItem::OddsChange {
                        event: event.clone(),
                        markets: markets
                            .iter()
                            .map(|odds| JsonOdds {
                                market: odds.market.clone(),
                                prices: odds
                                    .prices
                                    .iter()
                                    .map(|(selection, price)| JsonPrice {
                                        selection: selection.clone(),
                                        price: price.decimal(),
                                    })
                                    .collect(),
                                active: odds.active,
                            })
                            .collect(),
                    },
                    FeedItem::BetStop { event, markets } => {
                        JsonItem::BetStop { event: event.clone(), markets: markets.clone() }
                    }
                    FeedItem::InPlay { event, bet_delay_seconds } => {
                        JsonItem::InPlay { event: event.clone(), bet_delay_seconds: *bet_delay_seconds }
                    }
                    FeedItem::Ended { event } => JsonItem::Ended { event: event.clone() },
                    FeedItem::Settlement { event, market, results } => JsonItem::Settlement {
                        event: event.clone(),
                        market: market.clone(),
                        results: results
                            .iter()
                            .map(|result| JsonResult {
                                selection: result.selection.clone(),
                                outcome: outcome_name(result.outcome).to_string(),
                                dead_heat_factor: result.dead_heat.map(|factor| factor.to_string()),
                                void_factor: result.void_factor.map(|factor| factor.to_string()),
                            })
                            .collect(),
                    },
                    FeedItem::Cancel { event, market } => {
                        JsonItem::Cancel { event: event.clone(), market: market.clone() }
                    }
                    FeedItem::Rollback { event, market } => {
                        JsonItem::Rollback { event: event.clone(), market: market.clone() }
                    }
                    FeedItem::SnapshotComplete => JsonItem::SnapshotComplete {},
                    // The Unified Odds Feed's items have no JSON form.
                    FeedItem::Announce { .. }
                    | FeedItem::Markets { .. }
                    | FeedItem::CancelWindow { .. }
                    | FeedItem::RollbackCancel { .. } => return None,
                })
            })
            .collect();
        JsonMessage {
            provider: message.provider.clone(),
            sequence: message.sequence,
            timestamp: message.timestamp,
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_round_trips_through_the_book_form() {
        let text = r#"{"provider":"p","sequence":7,"timestamp":1000,"items":[
            {"type":"fixture","event":"e","name":"A v B","sport":"football","competition":"L","starts_at":5000},
            {"type":"market","event":"e","market":"m","name":"Match","kind":"1x2",
             "selections":[{"id":"1","name":"A","price":"2.5"},{"id":"2","name":"B","price":"1.8"}],
             "each_way":{"places":3,"fraction":"0.2"}},
            {"type":"odds_change","event":"e","markets":[{"market":"m","prices":[{"selection":"1","price":"2.6"}],"active":true}]},
            {"type":"bet_stop","event":"e"},
            {"type":"in_play","event":"e","bet_delay_seconds":5},
            {"type":"ended","event":"e"},
            {"type":"settlement","event":"e","market":"m","results":[{"selection":"1","outcome":"win","dead_heat_factor":"0.5"}]},
            {"type":"cancel","event":"e","market":"m"},
            {"type":"rollback","event":"e","market":"m"},
            {"type":"snapshot_complete"}]}"#;
        let message: JsonMessage = serde_json::from_str(text).expect("parse");
        let book = message.to_book().expect("valid");
        assert_eq!(book.items.len(), 10);
        let back = JsonMessage::from_book(&book);
        assert_eq!(back.to_book().expect("valid"), book);
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let parse = |item: &str| {
            let text = format!(r#"{{"provider":"p","sequence":1,"timestamp":1,"items":[{item}]}}"#);
            serde_json::from_str::<JsonMessage>(&text)
                .map_err(|error| error.to_string())
                .and_then(|message| message.to_book().map(|_| ()).map_err(|error| error.to_string()))
        };
        assert!(parse(r#"{"type":"odds_change","event":"e","markets":[{"market":"m","prices":[{"selection":"1","price":"0.5"}]}]}"#)
            .unwrap_err()
            .contains("not decimal odds"));
        assert!(parse(
            r#"{"type":"settlement","event":"e","market":"m","results":[{"selection":"1","outcome":"won"}]}"#
        )
        .unwrap_err()
        .contains("outcome"));
        assert!(parse(r#"{"type":"teleport","event":"e"}"#).is_err());
        assert!(parse(r#"{"type":"ended","event":"e","extra":1}"#).is_err());
        assert!(parse(r#"{"type":"alive"}"#).is_ok());
    }
}
