//! The stream's messages: what a client may send (parsed by hand so that every unknown op,
//! field or id is an `invalid_request` error naming it) and what the server sends, rendered
//! with the REST API's formatting (ids, money and odds as strings).

use book::{AccountId, EventId, MarketId};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::dto::{parse_id, BetView, MarketView};

/// What a subscription is to: the keys of the dispatcher's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    Market(MarketId),
    Event(EventId),
    Account(AccountId),
}

/// A parsed client message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientMessage {
    Subscribe(Subscription),
    Unsubscribe(Subscription),
    Resume { seq: u64 },
}

/// The body of `subscribe` and `unsubscribe`: any of the three, at least one.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub markets: Vec<MarketId>,
    pub events: Vec<EventId>,
    pub account: bool,
}

/// A refusal of a client message: the stable code and a message for people.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn invalid(message: impl Into<String>) -> Refusal {
        Refusal { code: "invalid_request", message: message.into() }
    }
}

/// Parses one text message. `ids_max` bounds each id list (a longer list could never fit the
/// subscription limit, so it is refused before any id is parsed).
pub(crate) fn parse_client_message(text: &str, ids_max: usize) -> Result<ClientMessage, Refusal> {
    let value: Value =
        serde_json::from_str(text).map_err(|error| Refusal::invalid(format!("not a JSON message: {error}")))?;
    let Value::Object(object) = value else { return Err(Refusal::invalid("a message is a JSON object")) };
    let op = match object.get("op") {
        Some(Value::String(op)) => op.as_str(),
        Some(_) => return Err(Refusal::invalid("op must be a string")),
        None => return Err(Refusal::invalid("op is required: subscribe, unsubscribe or resume")),
    };
    match op {
        "subscribe" => parse_subscription(&object, ids_max).map(ClientMessage::Subscribe),
        "unsubscribe" => parse_subscription(&object, ids_max).map(ClientMessage::Unsubscribe),
        "resume" => {
            only_fields(&object, &["op", "seq"])?;
            let seq = object
                .get("seq")
                .and_then(Value::as_u64)
                .ok_or_else(|| Refusal::invalid("resume: seq must be a non-negative integer"))?;
            Ok(ClientMessage::Resume { seq })
        }
        other => Err(Refusal::invalid(format!("unknown op {other:?}: subscribe, unsubscribe or resume"))),
    }
}

fn only_fields(object: &Map<String, Value>, allowed: &[&str]) -> Result<(), Refusal> {
    match object.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(unknown) => Err(Refusal::invalid(format!("unknown field {unknown:?}"))),
        None => Ok(()),
    }
}

fn parse_subscription(object: &Map<String, Value>, ids_max: usize) -> Result<Subscription, Refusal> {
    only_fields(object, &["op", "markets", "events", "account"])?;
    let mut subscription = Subscription {
        markets: parse_ids(object, "markets", "mkt_", ids_max)?.into_iter().map(MarketId).collect(),
        events: parse_ids(object, "events", "evt_", ids_max)?.into_iter().map(EventId).collect(),
        account: false,
    };
    match object.get("account") {
        None => {}
        Some(Value::Bool(account)) => subscription.account = *account,
        Some(_) => return Err(Refusal::invalid("account must be true or false")),
    }
    if subscription.markets.is_empty() && subscription.events.is_empty() && !subscription.account {
        return Err(Refusal::invalid("name at least one of markets, events or account: true"));
    }
    Ok(subscription)
}

fn parse_ids(object: &Map<String, Value>, field: &str, prefix: &str, ids_max: usize) -> Result<Vec<u64>, Refusal> {
    let Some(value) = object.get(field) else { return Ok(Vec::new()) };
    let Value::Array(items) = value else { return Err(Refusal::invalid(format!("{field} must be an array of ids"))) };
    if items.len() > ids_max {
        return Err(Refusal {
            code: "too_many_subscriptions",
            message: format!("{field}: at most {ids_max} subscriptions per connection"),
        });
    }
    let mut ids = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let id = item
            .as_str()
            .and_then(|text| parse_id(text, prefix, field).ok())
            .ok_or_else(|| Refusal::invalid(format!("{field}[{index}]: not a {prefix}... id")))?;
        ids.push(id);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

// ---- server to client ---------------------------------------------------------------------

#[derive(Serialize)]
pub(crate) struct PriceMessage<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u64,
    pub market_id: &'a str,
    pub event_id: &'a str,
    pub selection_id: &'a str,
    pub price: &'a str,
    pub price_version: u64,
}

#[derive(Serialize)]
pub(crate) struct MarketStatusMessage<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u64,
    pub market_id: &'a str,
    pub event_id: &'a str,
    pub status: &'static str,
    pub in_play: bool,
}

#[derive(Serialize)]
pub(crate) struct BetMessage<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u64,
    pub bet_id: &'a str,
    pub status: &'static str,
    /// Paid at settlement or cash-out; absent before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout: Option<String>,
    /// Why a pending bet was rejected when its in-play delay ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_code: Option<&'static str>,
}

/// The wallet as `GET /v1/wallet` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct BalanceView {
    pub currency: String,
    pub balance: String,
    pub available: String,
    pub pending_stakes: String,
    pub debt: String,
}

impl BalanceView {
    pub fn of(wallet: &book::Wallet) -> BalanceView {
        let currency = wallet.currency;
        BalanceView {
            currency: currency.code().to_string(),
            balance: currency.format(wallet.balance),
            available: currency.format(wallet.available),
            pending_stakes: currency.format(wallet.pending_stakes),
            debt: currency.format(wallet.debt),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct BalanceMessage {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u64,
    #[serde(flatten)]
    pub balance: BalanceView,
}

/// A reality check fell due (`reality_check`): the session's start, time played and net
/// position (returns less stakes, negative when lost). Bets pause until the player
/// acknowledges (`POST /v1/reality-check/acknowledge`).
#[derive(Serialize)]
pub(crate) struct RealityCheckMessage {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u64,
    pub session_started_at: String,
    pub time_played_seconds: u64,
    pub net_position: String,
}

/// The account part of a snapshot: the wallet and the open bets (newest first, bounded).
#[derive(Debug, Serialize)]
pub(crate) struct AccountSnapshot {
    #[serde(flatten)]
    pub balance: BalanceView,
    pub open_bets: Vec<BetView>,
}

#[derive(Serialize)]
pub(crate) struct SnapshotMessage<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Everything up to this sequence is in the snapshot; deltas after it follow.
    pub seq: u64,
    pub markets: &'a [MarketView],
    pub account: Option<&'a AccountSnapshot>,
}

#[derive(Serialize)]
pub(crate) struct ErrorMessage<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u64,
    pub code: &'a str,
    pub message: &'a str,
}

pub(crate) fn error_json(seq: u64, code: &str, message: &str) -> String {
    to_json(&ErrorMessage { kind: "error", seq, code, message })
}

pub(crate) fn heartbeat_json(seq: u64) -> String {
    format!(r#"{{"type":"heartbeat","seq":{seq}}}"#)
}

/// Serialising these shapes (strings, numbers, options) cannot fail.
pub(crate) fn to_json(message: &impl Serialize) -> String {
    serde_json::to_string(message).unwrap_or_else(|error| {
        tracing::error!(%error, "serialising a stream message");
        String::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientMessage, Refusal> {
        parse_client_message(text, 3)
    }

    #[test]
    fn subscriptions_and_resume_parse() {
        assert_eq!(
            parse(r#"{"op":"subscribe","markets":["mkt_2","mkt_1","mkt_2"]}"#),
            Ok(ClientMessage::Subscribe(Subscription {
                markets: vec![MarketId(1), MarketId(2)],
                ..Subscription::default()
            }))
        );
        assert_eq!(
            parse(r#"{"op":"unsubscribe","events":["evt_7"],"account":true}"#),
            Ok(ClientMessage::Unsubscribe(Subscription {
                events: vec![EventId(7)],
                account: true,
                ..Subscription::default()
            }))
        );
        assert_eq!(parse(r#"{"op":"resume","seq":42}"#), Ok(ClientMessage::Resume { seq: 42 }));
    }

    #[test]
    fn bad_messages_are_refused_with_a_code() {
        for (text, code) in [
            ("not json", "invalid_request"),
            ("[1]", "invalid_request"),
            (r#"{"markets":["mkt_1"]}"#, "invalid_request"),
            (r#"{"op":"dance"}"#, "invalid_request"),
            (r#"{"op":"subscribe"}"#, "invalid_request"),
            (r#"{"op":"subscribe","markets":["mkt_1"],"colour":"red"}"#, "invalid_request"),
            (r#"{"op":"subscribe","markets":["evt_1"]}"#, "invalid_request"),
            (r#"{"op":"subscribe","markets":"mkt_1"}"#, "invalid_request"),
            (r#"{"op":"subscribe","account":"yes"}"#, "invalid_request"),
            (r#"{"op":"resume","seq":-1}"#, "invalid_request"),
            (r#"{"op":"subscribe","markets":["mkt_1","mkt_2","mkt_3","mkt_4"]}"#, "too_many_subscriptions"),
        ] {
            assert_eq!(parse(text).map_err(|refusal| refusal.code), Err(code), "{text}");
        }
    }
}
