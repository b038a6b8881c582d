//! The Unified Odds Feed adapter: XML messages as the provider's schema (`UnifiedFeed.xsd`)
//! defines them — `odds_change`, `bet_stop`, `bet_settlement`, `bet_cancel`,
//! `rollback_bet_settlement`, `rollback_bet_cancel`, `fixture_change`, `alive` and
//! `snapshot_complete` — translated into the book's feed messages, and the routing keys they
//! are published under.
//!
//! The translator is stateless: the same XML always gives the same feed message, so a message
//! the book refused leaves nothing behind, and the book alone decides what is new.
//!
//! The rules (each one a unit test below):
//! - **No sequence.** The schema has none: messages go to the book with `sequence` 0 and the
//!   book de-duplicates them by content (a redelivered message applies once) and orders odds by
//!   the producer's `timestamp` per market. `request_id` (recovery replays) is not part of the
//!   content, so a replayed message the book already has is a duplicate too.
//! - **Markets** are keyed by `id` and `specifiers` (`18|total=2.5`), outcomes by `id` (a
//!   number or a URN). An `odds_change` lists markets with their `status` (1 active, 0
//!   inactive, -1 suspended, -2 handed over, -3 settled, -4 cancelled; absent means active)
//!   and outcomes with optional `odds` and `active`; an outcome without odds is listed, not
//!   priced, and is not a refusal. Outcomes priced later become selections then.
//! - **Odds of any precision**: the book keeps four decimal places; more are cut off toward
//!   1.0 (rounded down), so a price never pays more than the provider offered. Odds at or
//!   below 1.0 (nothing to win) leave the outcome unpriced, with a refusal.
//! - **Settlement**: `result` 1 wins, 0 loses, -1 (undecided) settles nothing: a market with an
//!   undecided outcome is refused whole, so no outcome of it is settled by default.
//!   `void_factor` 1 voids the outcome, 0.5 refunds half the stake and settles the rest by
//!   `result`; `dead_heat_factor` is taken as the unit fraction `1/n` it stands for (the
//!   provider writes 1/3 as `0.333…`), any other value is refused.
//! - **`bet_cancel`** without `start_time`/`end_time` voids every bet on the market; with
//!   them, only bets placed in `[start_time, end_time)`. `rollback_bet_cancel` withdraws the
//!   same cancellation.
//! - **`bet_stop`** suspends the event's markets in its `groups` (`all`: every market), by the
//!   groups of the provider's market descriptions (`in_groups`; a market without a known
//!   description is in every group, and without descriptions loaded every market stops: more
//!   than asked, never less). `market_status` 0 (inactive) or -1 (suspended) both suspend;
//!   another value is counted `unknown_market_status` and suspends too.
//! - **`fixture_change`**: change types 1 (new), 2 (date and time), 4 (format) and 5
//!   (coverage) announce the event and move its start to `start_time`; 3 (cancelled) also
//!   stops its markets (the provider's `bet_cancel` messages void the bets).
//! - **Unknown** message types and elements are skipped and counted, never an error.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, RwLock};

use book::{FeedItem, FeedMarket, FeedMarketStatus, FeedMessage, FeedOutcome, FeedResult, Outcome};
use domain::{Odds, Ratio};

use crate::names::{EventNames, Fixture, Namer};

/// Fixtures kept in memory per provider (the cache on disk keeps them all); beyond it the
/// oldest half is dropped.
pub const FIXTURES_IN_MEMORY_MAX: usize = 65_536;

/// Names of a UOF provider's markets, outcomes and events: the market descriptions (API, cache
/// or the bundled file) and the fixtures fetched so far (fetched off the translate path; an
/// event without one is named by its URN until it arrives).
#[derive(Debug)]
pub struct UofNames {
    pub namer: Namer,
    fixtures: RwLock<HashMap<String, Arc<Fixture>>>,
}

impl UofNames {
    pub fn new(namer: Namer) -> UofNames {
        UofNames { namer, fixtures: RwLock::new(HashMap::new()) }
    }

    pub fn fixture(&self, urn: &str) -> Option<Arc<Fixture>> {
        self.fixtures.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(urn).cloned()
    }

    pub fn set_fixture(&self, fixture: Fixture) {
        let mut fixtures = self.fixtures.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if fixtures.len() >= FIXTURES_IN_MEMORY_MAX {
            let drop: Vec<String> = fixtures.keys().take(FIXTURES_IN_MEMORY_MAX / 2).cloned().collect();
            for urn in drop {
                fixtures.remove(&urn);
            }
        }
        fixtures.insert(fixture.id.clone(), Arc::new(fixture));
    }

    fn event_names(&self, urn: &str) -> EventNames {
        self.fixture(urn).map(|fixture| EventNames::from(fixture.as_ref())).unwrap_or_default()
    }
}

/// Bytes of one XML message.
pub const UOF_MESSAGE_BYTES_MAX: usize = 1 << 20;
/// The highest number of competitors in a dead heat the adapter maps (`dead_heat_factor`
/// 1/n).
pub const DEAD_HEAT_COMPETITORS_MAX: u32 = 1000;

/// Why (part of) a message was refused, with a stable reason code for counting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `xml`, `too_large`, `missing_attribute`, `bad_number`, `odds_malformed`,
    /// `odds_out_of_range`, `undecided_result`, `bad_void_factor`, `bad_dead_heat_factor`,
    /// `unknown_market_status`, `unknown_change_type`, `unknown_element`, `routing_key`,
    /// `not_utf8`.
    pub reason: &'static str,
    pub detail: String,
}

impl Refusal {
    fn new(reason: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal { reason, detail: detail.into() }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.reason, self.detail)
    }
}

/// What one XML message means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UofEvent {
    /// A producer heartbeat; `subscribed == false` means the producer lost our session and
    /// the session must recover.
    Alive { product: u32, timestamp: u64, subscribed: bool },
    /// The end of the recovery replay asked for with `request_id`; `message` carries the
    /// book's `SnapshotComplete`.
    SnapshotComplete { product: u32, request_id: u64, message: FeedMessage },
    /// A message for the book from producer `product`.
    Feed { product: u32, message: FeedMessage },
    /// `<product_down product=".."/>`: the producer is down and must recover.
    ProductDown { product: u32 },
    /// A message type the schema this adapter follows does not define: skipped.
    Unknown { kind: String },
}

/// A translated message and the parts of it that were refused (the rest still applies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translation {
    pub event: UofEvent,
    pub refused: Vec<Refusal>,
    /// A `bet_stop` naming market groups (none of them `all`), when market descriptions are
    /// loaded: its `BetStop` item lists no market yet and is to be narrowed to the event's
    /// markets in those groups (`in_groups`) by whoever knows the event's markets (the
    /// transport asks the book). `None`: the item stands as it is.
    pub groups: Option<Vec<String>>,
}

/// Whether a market (its key, `id` or `id|specifiers`) belongs to one of `groups` by its
/// description. A market without a known description counts as in every group: a bet stop
/// stops more than asked rather than less.
pub fn in_groups(descriptions: &crate::names::MarketDescriptions, market_key: &str, groups: &[String]) -> bool {
    let id = market_key.split_once('|').map_or(market_key, |(id, _)| id);
    match id.parse::<u32>().ok().and_then(|id| descriptions.get(id)) {
        Some(description) => description.groups.iter().any(|group| groups.contains(group)),
        None => true,
    }
}

/// The parts of a routing key: `{priority}.{pre}.{live}.{message_type}.{sport_id}.{urn_type}.
/// {event_id}.{node_id}`, `-` for a part that does not apply (`hi.-.live.odds_change.1.sr:match.
/// 1234.-`; system messages are `-.-.-.alive.-.-.-.-`). Older keys lack the node part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingKey {
    /// `hi` or `lo`; `None` for `-`.
    pub priority: Option<String>,
    /// For pre-match interest.
    pub pre: bool,
    /// For live interest.
    pub live: bool,
    pub message_type: String,
    pub sport_id: Option<u32>,
    /// The event's URN (`sr:match:1234`).
    pub event: Option<String>,
    pub node_id: Option<String>,
}

impl RoutingKey {
    pub fn parse(key: &str) -> Result<RoutingKey, Refusal> {
        let parts: Vec<&str> = key.split('.').collect();
        if !(parts.len() == 7 || parts.len() == 8) {
            return Err(Refusal::new("routing_key", format!("{key:?} does not have 7 or 8 parts")));
        }
        let given = |part: &str| (part != "-").then(|| part.to_string());
        let flag = |part: &str, word: &str| match part {
            "-" => Ok(false),
            found if found == word => Ok(true),
            other => Err(Refusal::new("routing_key", format!("{other:?} where {word:?} or \"-\" goes in {key:?}"))),
        };
        let priority = given(parts[0]);
        if priority.as_deref().is_some_and(|priority| priority != "hi" && priority != "lo") {
            return Err(Refusal::new("routing_key", format!("priority {:?} in {key:?}", parts[0])));
        }
        let sport_id = match parts[4] {
            "-" => None,
            text => Some(text.parse().map_err(|_| Refusal::new("routing_key", format!("sport {text:?} in {key:?}")))?),
        };
        let event = match (parts[5], parts[6]) {
            ("-", "-") => None,
            (urn_type, id) => Some(format!("{urn_type}:{id}")),
        };
        if parts[3].is_empty() || parts[3] == "-" {
            return Err(Refusal::new("routing_key", format!("no message type in {key:?}")));
        }
        Ok(RoutingKey {
            priority,
            pre: flag(parts[1], "pre")?,
            live: flag(parts[2], "live")?,
            message_type: parts[3].to_string(),
            sport_id,
            event,
            node_id: parts.get(7).and_then(|part| given(part)),
        })
    }

    /// The key a producer publishes a message under.
    pub fn render(&self) -> String {
        let dash = |part: Option<&str>| part.unwrap_or("-").to_string();
        let (urn_type, id) = match self.event.as_deref().and_then(|event| event.rsplit_once(':')) {
            Some((urn_type, id)) => (urn_type.replace('.', "_"), id.replace('.', "_")),
            None => ("-".to_string(), "-".to_string()),
        };
        format!(
            "{}.{}.{}.{}.{}.{urn_type}.{id}.{}",
            dash(self.priority.as_deref()),
            if self.pre { "pre" } else { "-" },
            if self.live { "live" } else { "-" },
            self.message_type,
            self.sport_id.map_or("-".to_string(), |sport| sport.to_string()),
            dash(self.node_id.as_deref()),
        )
    }
}

/// What a session consumes: the routing-key patterns its queue is bound with, as the
/// provider's SDKs bind them (`MessageInterest`). Every interest but `All` also binds the
/// system messages (`-.-.-.#`: `alive`, `snapshot_complete`, `product_down`), which drive the
/// producers' recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// Every message (`#`).
    All,
    /// Live messages (routing keys `*.*.live.…`).
    Live,
    /// Pre-match messages (`*.pre.*.…`).
    Prematch,
    /// High-priority messages (`hi.…`).
    HiPriority,
    /// Low-priority messages (`lo.…`).
    LoPriority,
}

impl Interest {
    /// The names `Interest::parse` reads, in order.
    pub const NAMES: [&'static str; 5] = ["all", "live", "prematch", "hi", "lo"];

    pub fn bindings(self) -> &'static [&'static str] {
        match self {
            Interest::All => &["#"],
            Interest::Live => &["*.*.live.#", "-.-.-.#"],
            Interest::Prematch => &["*.pre.*.#", "-.-.-.#"],
            Interest::HiPriority => &["hi.#", "-.-.-.#"],
            Interest::LoPriority => &["lo.#", "-.-.-.#"],
        }
    }

    /// `all`, `live`, `prematch`, `hi` or `lo`.
    pub fn parse(text: &str) -> Result<Interest, String> {
        Ok(match text {
            "all" => Interest::All,
            "live" => Interest::Live,
            "prematch" => Interest::Prematch,
            "hi" => Interest::HiPriority,
            "lo" => Interest::LoPriority,
            _ => return Err(format!("{text:?} is not a UOF interest (one of {})", Interest::NAMES.join(", "))),
        })
    }
}

type Node<'a, 'input> = roxmltree::Node<'a, 'input>;

fn attr<'a>(node: Node<'a, '_>, name: &str) -> Result<&'a str, Refusal> {
    node.attribute(name)
        .ok_or_else(|| Refusal::new("missing_attribute", format!("<{}> lacks {name}", node.tag_name().name())))
}

fn number<T: std::str::FromStr>(node: Node<'_, '_>, name: &str) -> Result<T, Refusal> {
    let text = attr(node, name)?;
    text.parse().map_err(|_| Refusal::new("bad_number", format!("<{}> {name}={text:?}", node.tag_name().name())))
}

fn optional_number<T: std::str::FromStr>(node: Node<'_, '_>, name: &str) -> Result<Option<T>, Refusal> {
    node.attribute(name).map(|_| number(node, name)).transpose()
}

/// Decimal odds of any precision, rounded down to the book's four places: never more than the
/// provider offered. `None` for odds at or below 1.0 (or above the book's maximum).
pub fn odds_rounded_down(text: &str) -> Result<Option<Odds>, Refusal> {
    let malformed = || Refusal::new("odds_malformed", format!("odds={text:?}"));
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || (text.contains('.') && fraction.is_empty()) {
        return Err(malformed());
    }
    let cut = &fraction[..fraction.len().min(4)];
    let rounded = if cut.is_empty() { whole.to_string() } else { format!("{whole}.{cut}") };
    let whole = whole.trim_start_matches('0');
    if whole.len() > 6 {
        return Ok(None);
    }
    Ok(Odds::parse_decimal(&rounded).ok())
}

/// `dead_heat_factor` as the unit fraction it stands for.
fn dead_heat(text: &str) -> Result<Ratio, Refusal> {
    let refused = || Refusal::new("bad_dead_heat_factor", format!("dead_heat_factor={text:?}"));
    let factor: f64 = text.parse().map_err(|_| refused())?;
    if !(factor > 0.0 && factor <= 1.0) {
        return Err(refused());
    }
    let competitors = (1.0 / factor).round();
    if competitors < 1.0 || competitors > f64::from(DEAD_HEAT_COMPETITORS_MAX) {
        return Err(refused());
    }
    if (factor * competitors - 1.0).abs() > 1e-4 {
        return Err(refused());
    }
    Ratio::new(1, competitors as u32).map_err(|_| refused())
}

/// The key of a market: `id`, or `id|specifiers` when it has specifiers.
fn market_key(node: Node<'_, '_>) -> Result<String, Refusal> {
    let id = attr(node, "id")?;
    Ok(match node.attribute("specifiers").filter(|text| !text.is_empty()) {
        Some(specifiers) => format!("{id}|{specifiers}"),
        None => id.to_string(),
    })
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('|').unwrap_or((key, ""))
}

/// Groups of one `bet_stop` taken into account; more are ignored (a market in none of the
/// first ones is not stopped by them).
pub const BET_STOP_GROUPS_MAX: usize = 64;

/// Placeholder names without market descriptions: a few well-known markets by id.
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

fn children<'a, 'input>(node: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children().filter(Node::is_element)
}

/// Counts the children of `node` not among `known`.
fn unknown_children(node: Node<'_, '_>, known: &[&str], refused: &mut Vec<Refusal>) {
    for child in children(node) {
        let name = child.tag_name().name();
        if !known.contains(&name) {
            refused.push(Refusal::new("unknown_element", format!("<{name}> in <{}>", node.tag_name().name())));
        }
    }
}

/// Translates XML messages of one provider.
#[derive(Debug)]
pub struct UofTranslator {
    provider: String,
    /// The bet delay of an event that goes live.
    in_play_delay_seconds: u32,
    /// Descriptions and fixtures; `None`: placeholder names.
    names: Option<Arc<UofNames>>,
}

impl UofTranslator {
    pub fn new(provider: &str, in_play_delay_seconds: u32) -> UofTranslator {
        UofTranslator { provider: provider.to_string(), in_play_delay_seconds, names: None }
    }

    /// Names markets, outcomes and events from the provider's descriptions and fixtures.
    /// The descriptions and fixtures it names with, if any.
    pub fn names(&self) -> Option<&Arc<UofNames>> {
        self.names.as_ref()
    }

    pub fn with_names(mut self, names: Option<Arc<UofNames>>) -> UofTranslator {
        self.names = names;
        self
    }

    /// Translates one message. `routing` is the key it was published under, if known (its
    /// sport id names the sport of an event first seen in an odds change).
    pub fn translate(&self, xml: &str, routing: Option<&RoutingKey>) -> Result<Translation, Refusal> {
        if xml.len() > UOF_MESSAGE_BYTES_MAX {
            return Err(Refusal::new("too_large", format!("{} bytes", xml.len())));
        }
        let document = roxmltree::Document::parse(xml).map_err(|error| Refusal::new("xml", error.to_string()))?;
        let root = document.root_element();
        let kind = root.tag_name().name();
        let mut refused = Vec::new();
        let mut groups = None;
        let event = match kind {
            "alive" => UofEvent::Alive {
                product: number(root, "product")?,
                timestamp: number(root, "timestamp")?,
                subscribed: number::<i64>(root, "subscribed")? != 0,
            },
            "snapshot_complete" => {
                let product = number(root, "product")?;
                let request_id = number(root, "request_id")?;
                UofEvent::SnapshotComplete {
                    product,
                    request_id,
                    message: self.message(number(root, "timestamp")?, vec![FeedItem::SnapshotComplete]),
                }
            }
            "odds_change"
            | "bet_stop"
            | "bet_settlement"
            | "bet_cancel"
            | "rollback_bet_settlement"
            | "rollback_bet_cancel"
            | "fixture_change" => {
                let product = number(root, "product")?;
                let timestamp = number(root, "timestamp")?;
                let event = attr(root, "event_id")?.to_string();
                let items = self.items(kind, root, &event, timestamp, routing, &mut refused)?;
                if kind == "bet_stop" && self.names.is_some() {
                    let named: Vec<String> = attr(root, "groups")?
                        .split('|')
                        .filter(|group| !group.is_empty())
                        .map(str::to_string)
                        .take(BET_STOP_GROUPS_MAX)
                        .collect();
                    if !named.is_empty() && !named.iter().any(|group| group == "all") {
                        groups = Some(named);
                    }
                }
                UofEvent::Feed { product, message: self.message(timestamp, items) }
            }
            "product_down" => UofEvent::ProductDown { product: number(root, "product")? },
            other => UofEvent::Unknown { kind: other.to_string() },
        };
        Ok(Translation { event, refused, groups })
    }

    fn message(&self, timestamp: u64, items: Vec<FeedItem>) -> FeedMessage {
        FeedMessage { provider: self.provider.clone(), sequence: 0, timestamp, items }
    }

    fn items(
        &self,
        kind: &str,
        root: Node<'_, '_>,
        event: &str,
        timestamp: u64,
        routing: Option<&RoutingKey>,
        refused: &mut Vec<Refusal>,
    ) -> Result<Vec<FeedItem>, Refusal> {
        let mut items = Vec::new();
        let markets = |parent: Node<'_, '_>, refused: &mut Vec<Refusal>| {
            unknown_children(parent, &["market"], refused);
            children(parent).filter(|child| child.has_tag_name("market")).map(market_key).collect::<Result<Vec<_>, _>>()
        };
        let window = || -> Result<(Option<u64>, Option<u64>), Refusal> {
            Ok((optional_number(root, "start_time")?, optional_number(root, "end_time")?))
        };
        match kind {
            "fixture_change" => {
                let starts_at: u64 = number(root, "start_time")?;
                let change: Option<i64> = optional_number(root, "change_type")?;
                items.push(self.announce(event, starts_at, true, routing));
                match change {
                    None | Some(1 | 2 | 4 | 5) => {}
                    Some(3) => items.push(FeedItem::BetStop { event: event.to_string(), markets: Vec::new() }),
                    Some(other) => refused.push(Refusal::new("unknown_change_type", format!("change_type={other}"))),
                }
            }
            "odds_change" => self.odds_change(root, event, timestamp, routing, &mut items, refused)?,
            "bet_stop" => {
                attr(root, "groups")?;
                match optional_number::<i64>(root, "market_status")? {
                    None | Some(0 | -1) => {}
                    Some(other) => refused.push(Refusal::new(
                        "unknown_market_status",
                        format!("bet_stop market_status={other}: markets suspended"),
                    )),
                }
                items.push(FeedItem::BetStop { event: event.to_string(), markets: Vec::new() });
            }
            "bet_settlement" => {
                let certainty: i64 = number(root, "certainty")?;
                if !(certainty == 1 || certainty == 2) {
                    return Err(Refusal::new("bad_number", format!("certainty={certainty}")));
                }
                unknown_children(root, &["outcomes"], refused);
                for outcomes in children(root).filter(|child| child.has_tag_name("outcomes")) {
                    unknown_children(outcomes, &["market"], refused);
                    for market in children(outcomes).filter(|child| child.has_tag_name("market")) {
                        match self.settlement(market) {
                            Ok(results) => items.push(FeedItem::Settlement {
                                event: event.to_string(),
                                market: market_key(market)?,
                                results,
                            }),
                            Err(refusal) => refused.push(refusal),
                        }
                    }
                }
            }
            "bet_cancel" => {
                let (from, to) = window()?;
                for market in markets(root, refused)? {
                    items.push(FeedItem::CancelWindow { event: event.to_string(), market, from, to });
                }
            }
            "rollback_bet_cancel" => {
                let (from, to) = window()?;
                for market in markets(root, refused)? {
                    items.push(FeedItem::RollbackCancel { event: event.to_string(), market, from, to });
                }
            }
            "rollback_bet_settlement" => {
                for market in markets(root, refused)? {
                    items.push(FeedItem::Rollback { event: event.to_string(), market });
                }
            }
            _ => unreachable!("only feed message kinds reach items()"),
        }
        Ok(items)
    }

    fn announce(&self, event: &str, starts_at: u64, reschedule: bool, routing: Option<&RoutingKey>) -> FeedItem {
        let sport = routing.and_then(|key| key.sport_id).map_or("unknown".to_string(), |id| format!("sr:sport:{id}"));
        let fixture = self.names.as_ref().and_then(|names| names.fixture(event));
        match fixture {
            Some(fixture) => FeedItem::Announce {
                event: event.to_string(),
                name: fixture.name.clone(),
                sport: fixture.sport.clone().or_else(|| fixture.sport_id.clone()).unwrap_or(sport),
                competition: fixture.tournament.clone().unwrap_or_default(),
                // The fixture's start, unless it is not final or not given.
                starts_at: match fixture.start_time_ms {
                    Some(ms) if ms > 0 && !fixture.start_time_tbd => ms as u64,
                    _ => starts_at,
                },
                reschedule,
            },
            None => FeedItem::Announce {
                event: event.to_string(),
                name: event.to_string(),
                sport,
                competition: String::new(),
                starts_at,
                reschedule,
            },
        }
    }

    fn settlement(&self, market: Node<'_, '_>) -> Result<Vec<FeedResult>, Refusal> {
        let key = market_key(market)?;
        let mut results = Vec::new();
        for outcome in children(market).filter(|child| child.has_tag_name("outcome")) {
            let id = attr(outcome, "id")?;
            let won = match number::<i64>(outcome, "result")? {
                1 => true,
                0 => false,
                -1 => {
                    return Err(Refusal::new(
                        "undecided_result",
                        format!("market {key} outcome {id} is undecided: the market is not settled"),
                    ))
                }
                other => return Err(Refusal::new("bad_number", format!("market {key} outcome {id} result={other}"))),
            };
            let void_factor = match outcome.attribute("void_factor") {
                None => None,
                Some(text) => match text.parse::<f64>() {
                    Ok(1.0) => Some(Ratio::ONE),
                    Ok(0.5) => Some(Ratio::HALF),
                    Ok(0.0) => None,
                    _ => return Err(Refusal::new("bad_void_factor", format!("market {key} void_factor={text:?}"))),
                },
            };
            let (result, void_factor) = match void_factor {
                Some(factor) if factor.is_one() => (Outcome::Void, None),
                other => (if won { Outcome::Win } else { Outcome::Lose }, other),
            };
            let dead_heat = outcome.attribute("dead_heat_factor").map(dead_heat).transpose()?;
            results.push(FeedResult { selection: id.to_string(), outcome: result, dead_heat, void_factor });
        }
        Ok(results)
    }

    fn odds_change(
        &self,
        root: Node<'_, '_>,
        event: &str,
        timestamp: u64,
        routing: Option<&RoutingKey>,
        items: &mut Vec<FeedItem>,
        refused: &mut Vec<Refusal>,
    ) -> Result<(), Refusal> {
        // The start is unknown until a fixture arrives; an event first seen here starts now.
        items.push(self.announce(event, timestamp, false, routing));
        unknown_children(root, &["sport_event_status", "odds_generation_properties", "odds"], refused);
        let mut markets = Vec::new();
        let event_names = self.names.as_ref().map(|names| names.event_names(event));
        for odds in children(root).filter(|child| child.has_tag_name("odds")) {
            unknown_children(odds, &["market"], refused);
            for market in children(odds).filter(|child| child.has_tag_name("market")) {
                let key = market_key(market)?;
                unknown_children(market, &["market_metadata", "outcome"], refused);
                let status = match optional_number::<i64>(market, "status")? {
                    None => FeedMarketStatus::Active,
                    Some(code) => FeedMarketStatus::from_code(code).unwrap_or_else(|| {
                        refused.push(Refusal::new(
                            "unknown_market_status",
                            format!("market {key} status={code}: suspended"),
                        ));
                        FeedMarketStatus::Suspended
                    }),
                };
                let mut outcomes = Vec::new();
                for outcome in children(market).filter(|child| child.has_tag_name("outcome")) {
                    let id = attr(outcome, "id")?.to_string();
                    let odds = match outcome.attribute("odds") {
                        None => None,
                        Some(text) => match odds_rounded_down(text) {
                            Ok(Some(odds)) => Some(odds),
                            Ok(None) => {
                                refused.push(Refusal::new(
                                    "odds_out_of_range",
                                    format!("market {key} outcome {id} odds={text:?}: not offered"),
                                ));
                                None
                            }
                            Err(refusal) => {
                                refused.push(Refusal::new(
                                    refusal.reason,
                                    format!("market {key} outcome {id} {}: not offered", refusal.detail),
                                ));
                                None
                            }
                        },
                    };
                    let active = optional_number::<i64>(outcome, "active")?.is_none_or(|active| active != 0);
                    let name = match (&self.names, &event_names) {
                        (Some(names), Some(event_names)) => {
                            let (market_id, specifiers) = split_key(&key);
                            match market_id.parse::<u32>() {
                                Ok(market_id) => names.namer.outcome_name(market_id, &id, specifiers, event_names),
                                Err(_) => outcome_name(&key, &id),
                            }
                        }
                        _ => outcome_name(&key, &id),
                    };
                    outcomes.push(FeedOutcome { name, id, odds, active });
                }
                let (name, kind) = match (&self.names, &event_names) {
                    (Some(names), Some(event_names)) => {
                        let (market_id, specifiers) = split_key(&key);
                        match market_id.parse::<u32>() {
                            Ok(number) => {
                                (names.namer.market_name(number, specifiers, event_names), market_name(&key).1)
                            }
                            Err(_) => market_name(&key),
                        }
                    }
                    _ => market_name(&key),
                };
                markets.push(FeedMarket { market: key, name, kind, status, outcomes });
            }
        }
        if !markets.is_empty() {
            items.push(FeedItem::Markets { event: event.to_string(), markets });
        }
        if let Some(status) = children(root).find(|child| child.has_tag_name("sport_event_status")) {
            match number::<i64>(status, "status")? {
                1 => items
                    .push(FeedItem::InPlay { event: event.to_string(), bet_delay_seconds: self.in_play_delay_seconds }),
                3 | 4 => items.push(FeedItem::Ended { event: event.to_string() }),
                // Cancelled or abandoned: stop betting; the provider's bet_cancel voids.
                5 | 9 => items.push(FeedItem::BetStop { event: event.to_string(), markets: Vec::new() }),
                _ => {}
            }
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

/// How a producer publishes: its product id, whether it is live (live keys, high priority)
/// or pre-match, and the sport id of its events' routing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Producer {
    pub product: u32,
    pub live: bool,
    pub sport_id: u32,
}

impl Producer {
    fn routing(&self, message_type: &str, event: Option<&str>) -> String {
        RoutingKey {
            priority: Some(if self.live { "hi" } else { "lo" }.to_string()),
            pre: !self.live,
            live: self.live,
            message_type: message_type.to_string(),
            sport_id: event.map(|_| self.sport_id),
            event: event.map(str::to_string),
            node_id: None,
        }
        .render()
    }
}

fn window_attrs(from: Option<u64>, to: Option<u64>) -> String {
    let mut text = String::new();
    if let Some(from) = from {
        let _ = write!(text, r#" start_time="{from}""#);
    }
    if let Some(to) = to {
        let _ = write!(text, r#" end_time="{to}""#);
    }
    text
}

/// The XML documents a producer sends for a feed message (the simulator's side), each with
/// the routing key it is published under, as the provider's schema has it: no sequence. Items
/// that one `odds_change` carries (markets, prices, the event going live or ending, for one
/// event) go in one document; every other item is a document of its own. `request_id` marks a
/// recovery replay (and names the request a `snapshot_complete` ends).
pub fn render(
    message: &FeedMessage,
    producer: Producer,
    request_id: Option<u64>,
) -> Result<Vec<(String, String)>, Refusal> {
    let odds_event = |item: &FeedItem| match item {
        FeedItem::Market { event, .. }
        | FeedItem::Odds { event, .. }
        | FeedItem::Markets { event, .. }
        | FeedItem::InPlay { event, .. }
        | FeedItem::Ended { event } => Some(event.clone()),
        _ => None,
    };
    let mut documents = Vec::new();
    let mut run: Vec<FeedItem> = Vec::new();
    let flush = |run: &mut Vec<FeedItem>, documents: &mut Vec<(String, String)>| -> Result<(), Refusal> {
        if !run.is_empty() {
            let part = FeedMessage { items: std::mem::take(run), ..message.clone() };
            documents.push(render_one(&part, producer, request_id)?);
        }
        Ok(())
    };
    for item in &message.items {
        match odds_event(item) {
            Some(event) if run.first().and_then(odds_event).is_none_or(|first| first == event) => {
                run.push(item.clone());
            }
            Some(_) => {
                flush(&mut run, &mut documents)?;
                run.push(item.clone());
            }
            None => {
                flush(&mut run, &mut documents)?;
                run.push(item.clone());
                flush(&mut run, &mut documents)?;
            }
        }
    }
    flush(&mut run, &mut documents)?;
    Ok(documents)
}

fn render_one(message: &FeedMessage, producer: Producer, request_id: Option<u64>) -> Result<(String, String), Refusal> {
    let product = producer.product;
    let request = request_id.map(|id| format!(r#" request_id="{id}""#)).unwrap_or_default();
    let head = |tag: &str, event: &str| {
        format!(r#"<{tag} product="{product}" event_id="{}" timestamp="{}"{request}"#, escape(event), message.timestamp)
    };
    let (first, rest) = message.items.split_first().ok_or_else(|| Refusal::new("xml", "nothing to render"))?;
    let outcome = |body: &mut String, id: &str, odds: Option<Odds>, active: bool| {
        let _ = write!(body, r#"<outcome id="{}""#, escape(id));
        if let Some(odds) = odds {
            let _ = write!(body, r#" odds="{}""#, odds.decimal());
        }
        let _ = write!(body, r#" active="{}"/>"#, u8::from(active));
    };
    Ok(match first {
        FeedItem::Fixture { event, starts_at, .. } | FeedItem::Announce { event, starts_at, .. } => (
            producer.routing("fixture_change", Some(event)),
            format!(r#"{} change_type="1" start_time="{starts_at}"/>"#, head("fixture_change", event)),
        ),
        FeedItem::Market { event, .. }
        | FeedItem::Odds { event, .. }
        | FeedItem::Markets { event, .. }
        | FeedItem::InPlay { event, .. }
        | FeedItem::Ended { event } => {
            let mut body = String::new();
            let mut status = None;
            for item in std::iter::once(first).chain(rest) {
                match item {
                    FeedItem::Market { market, selections, .. } => {
                        let _ = write!(body, r#"<market {} status="1">"#, market_attrs(market));
                        for selection in selections {
                            outcome(&mut body, &selection.id, Some(selection.price), true);
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
                                outcome(&mut body, id, Some(*price), true);
                            }
                            body.push_str("</market>");
                        }
                    }
                    FeedItem::Markets { markets, .. } => {
                        for market in markets {
                            let _ = write!(
                                body,
                                r#"<market {} status="{}">"#,
                                market_attrs(&market.market),
                                market.status.code()
                            );
                            for listed in &market.outcomes {
                                outcome(&mut body, &listed.id, listed.odds, listed.active);
                            }
                            body.push_str("</market>");
                        }
                    }
                    FeedItem::InPlay { .. } => status = Some((1, 6)),
                    FeedItem::Ended { .. } => status = Some((4, 100)),
                    FeedItem::Announce { .. } => {}
                    other => {
                        return Err(Refusal::new("xml", format!("cannot render {other:?} inside odds_change")));
                    }
                }
            }
            let status = status
                .map(|(status, match_status)| {
                    format!(r#"<sport_event_status status="{status}" match_status="{match_status}"/>"#)
                })
                .unwrap_or_default();
            let odds = if body.is_empty() { String::new() } else { format!("<odds>{body}</odds>") };
            (
                producer.routing("odds_change", Some(event)),
                format!("{}>{status}{odds}</odds_change>", head("odds_change", event)),
            )
        }
        FeedItem::BetStop { event, .. } => (
            producer.routing("bet_stop", Some(event)),
            format!(r#"{} groups="all" market_status="-1"/>"#, head("bet_stop", event)),
        ),
        FeedItem::Settlement { event, market, results } => {
            let mut body = format!("<market {}>", market_attrs(market));
            for result in results {
                let won = u8::from(matches!(result.outcome, Outcome::Win | Outcome::Place));
                let _ = write!(body, r#"<outcome id="{}" result="{won}""#, escape(&result.selection));
                let void = if result.outcome == Outcome::Void {
                    Some("1".to_string())
                } else {
                    result.void_factor.filter(|factor| !factor.is_zero()).map(|factor| {
                        if factor == Ratio::HALF {
                            "0.5".to_string()
                        } else {
                            factor.to_string()
                        }
                    })
                };
                if let Some(void) = void {
                    let _ = write!(body, r#" void_factor="{void}""#);
                }
                if let Some(dead_heat) = result.dead_heat {
                    let factor = f64::from(dead_heat.num()) / f64::from(dead_heat.den());
                    let _ = write!(body, r#" dead_heat_factor="{factor}""#);
                }
                body.push_str("/>");
            }
            body.push_str("</market>");
            (
                producer.routing("bet_settlement", Some(event)),
                format!(
                    r#"{} certainty="2"><outcomes>{body}</outcomes></bet_settlement>"#,
                    head("bet_settlement", event)
                ),
            )
        }
        FeedItem::Cancel { event, market } => (
            producer.routing("bet_cancel", Some(event)),
            format!(r#"{}><market {} void_reason="1"/></bet_cancel>"#, head("bet_cancel", event), market_attrs(market)),
        ),
        FeedItem::CancelWindow { event, market, from, to } => (
            producer.routing("bet_cancel", Some(event)),
            format!(
                r#"{}{}><market {} void_reason="1"/></bet_cancel>"#,
                head("bet_cancel", event),
                window_attrs(*from, *to),
                market_attrs(market)
            ),
        ),
        FeedItem::RollbackCancel { event, market, from, to } => (
            producer.routing("rollback_bet_cancel", Some(event)),
            format!(
                r#"{}{}><market {}/></rollback_bet_cancel>"#,
                head("rollback_bet_cancel", event),
                window_attrs(*from, *to),
                market_attrs(market)
            ),
        ),
        FeedItem::Rollback { event, market } => (
            producer.routing("rollback_bet_settlement", Some(event)),
            format!(
                r#"{}><market {}/></rollback_bet_settlement>"#,
                head("rollback_bet_settlement", event),
                market_attrs(market)
            ),
        ),
        FeedItem::SnapshotComplete => (
            system_routing("snapshot_complete"),
            format!(
                r#"<snapshot_complete request_id="{}" product="{product}" timestamp="{}"/>"#,
                request_id.unwrap_or(0),
                message.timestamp
            ),
        ),
    })
}

/// The routing key of a system message (`-.-.-.alive.-.-.-.-`).
fn system_routing(message_type: &str) -> String {
    RoutingKey {
        priority: None,
        pre: false,
        live: false,
        message_type: message_type.to_string(),
        sport_id: None,
        event: None,
        node_id: None,
    }
    .render()
}

/// An `alive` message and its routing key.
pub fn render_alive(producer: Producer, timestamp: u64, subscribed: bool) -> (String, String) {
    (
        system_routing("alive"),
        format!(
            r#"<alive product="{}" timestamp="{timestamp}" subscribed="{}"/>"#,
            producer.product,
            u8::from(subscribed)
        ),
    )
}

#[cfg(test)]
mod tests;
