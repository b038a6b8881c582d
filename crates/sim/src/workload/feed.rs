//! A provider's messages, as a Unified Odds Feed producer publishes them: schema-shaped XML
//! (no sequence attribute) under real routing keys, written here by hand. With each document
//! goes the feed message the workload means by it, worked out on its own terms: the simulator
//! puts the XML through the feed's translator (`feed::uof`), which must give exactly that
//! message, and the book gets the translation.
//!
//! Fixtures (`fixture_change`), markets and prices (`odds_change`: new markets, new outcomes,
//! inactive outcomes, every market status, odds written with more than four decimal places,
//! odds older than those applied), settlements (`bet_settlement` with `void_factor` 1 and 0.5
//! and `dead_heat_factor` 1/2, 1/3, 1/4, now and then an undecided outcome, which settles
//! nothing), `rollback_bet_settlement`, `bet_cancel` for the whole market or a time window
//! whose ends are bets' placement times (both ends, one end only, an empty window), and
//! `rollback_bet_cancel`; now and then a message delivered again.

use std::fmt::Write as _;

use book::{FeedItem, FeedMarket, FeedMarketStatus, FeedMessage, FeedOutcome, FeedResult, MarketStatus, Outcome};
use domain::{Odds, Ratio};

use super::{FeedDelivery, Op, Step, Workload, ODDS_SCALED_MAX, PRICES};
use crate::auditor::Auditor;

/// The provider's name in the book.
pub const PROVIDER: &str = "uof";
/// The sport id of every event's routing key: the translator names the sport from it.
const SPORT_ID: u32 = 1;
/// Feed fixtures not yet ended that the workload keeps around.
pub const FEED_EVENTS_MIN: usize = 3;
/// Feed markets per fixture at most.
const MARKETS_PER_EVENT: usize = 3;
/// Deliveries remembered to send again.
const SENT_MAX: usize = 16;

/// A feed market the workload knows: the provider's event and market ids and the book's id.
struct Known {
    event: String,
    key: String,
    market: u64,
}

fn known_markets(auditor: &Auditor) -> Vec<Known> {
    auditor
        .feed
        .markets
        .iter()
        .map(|((_, event, key), &market)| Known { event: event.clone(), key: key.clone(), market })
        .collect()
}

/// The provider's outcome ids of a market with their selections, in selection order.
fn outcomes_of(auditor: &Auditor, market: u64) -> Vec<(String, u64)> {
    let mut outcomes: Vec<(String, u64)> = auditor
        .feed
        .selections
        .range((market, String::new())..)
        .take_while(|((owner, _), _)| *owner == market)
        .map(|((_, outcome), &selection)| (outcome.clone(), selection))
        .collect();
    outcomes.sort_by_key(|(_, selection)| *selection);
    outcomes
}

/// The event number of a URN `sr:match:N`.
fn number_of(urn: &str) -> &str {
    urn.rsplit(':').next().unwrap_or(urn)
}

/// `id="18" specifiers="total=2.5"` of a market key `18|total=2.5`.
fn market_attrs(key: &str) -> String {
    match key.split_once('|') {
        Some((id, specifiers)) => format!(r#"id="{id}" specifiers="{specifiers}""#),
        None => format!(r#"id="{key}""#),
    }
}

/// The names the translator gives without market descriptions (its placeholders).
fn market_names(key: &str) -> (String, String) {
    let (id, specifiers) = key.split_once('|').unwrap_or((key, ""));
    match id {
        "1" => ("1X2".into(), "1x2".into()),
        "18" => (format!("Total {}", specifiers.trim_start_matches("total=")), "total".into()),
        _ => (format!("Market {key}"), format!("uof:{id}")),
    }
}

fn outcome_name(key: &str, outcome: &str) -> String {
    let id = key.split_once('|').map_or(key, |(id, _)| id);
    match (id, outcome) {
        ("1", "1") => "Home".into(),
        ("1", "2") => "Draw".into(),
        ("1", "3") => "Away".into(),
        ("18", "12") => "Over".into(),
        ("18", "13") => "Under".into(),
        _ => format!("Outcome {outcome}"),
    }
}

/// Decimal odds as a provider writes them: trailing zeros dropped, and now and then more than
/// four places (which the book's rule cuts off: the odds meant are still `scaled`).
fn odds_text(scaled: u32, extra: Option<u64>) -> String {
    let mut text = format!("{}.{:04}", scaled / 10_000, scaled % 10_000);
    match extra {
        Some(digits) => {
            let _ = write!(text, "{digits}");
        }
        None => {
            while text.ends_with('0') {
                text.pop();
            }
            if text.ends_with('.') {
                text.pop();
            }
        }
    }
    text
}

fn odds(scaled: u32) -> Odds {
    Odds::from_scaled(scaled).expect("the workload's prices are valid odds")
}

impl Workload {
    fn producer(&mut self) -> (u32, bool) {
        if self.rng.chance(1, 2) {
            (1, true)
        } else {
            (3, false)
        }
    }

    fn routing(live: bool, kind: &str, event: &str) -> String {
        let number = number_of(event);
        if live {
            format!("hi.-.live.{kind}.{SPORT_ID}.sr:match.{number}.-")
        } else {
            format!("lo.pre.-.{kind}.{SPORT_ID}.sr:match.{number}.-")
        }
    }

    fn delivery(
        &mut self,
        label: &'static str,
        kind: &str,
        event: &str,
        xml: String,
        (timestamp, items): (u64, Vec<FeedItem>),
        refused: Vec<&'static str>,
    ) -> Step {
        let (product, live) = self.producer();
        let xml = xml.replace("{product}", &product.to_string());
        let expected = FeedMessage { provider: PROVIDER.to_string(), sequence: 0, timestamp, items };
        let delivery = FeedDelivery { routing: Self::routing(live, kind, event), xml, product, expected, refused };
        if self.feed_sent.len() == SENT_MAX {
            self.feed_sent.pop_front();
        }
        self.feed_sent.push_back(delivery.clone());
        Step { label, op: Op::Feed(delivery) }
    }

    /// The next feed step, or `None` when there is nothing for it to be about.
    pub(super) fn feed_step(&mut self, auditor: &Auditor, choice: usize) -> Option<Step> {
        let live_feed: Vec<(u64, String)> = auditor
            .events
            .iter()
            .filter(|event| event.state != book::EventState::Ended)
            .filter_map(|event| event.feed.clone().map(|urn| (event.id, urn)))
            .collect();
        if live_feed.len() < FEED_EVENTS_MIN || choice == 0 {
            return Some(self.feed_fixture(auditor));
        }
        if let Some((_, urn)) =
            live_feed.iter().find(|(event, _)| auditor.events[*event as usize - 1].markets.is_empty())
        {
            return Some(self.feed_new_market(auditor, &urn.clone()));
        }
        let markets = known_markets(auditor);
        if markets.is_empty() {
            return None;
        }
        Some(match choice {
            1 => {
                let (_, urn) = self.rng.pick(&live_feed).cloned().expect("live feed events");
                self.feed_new_market(auditor, &urn)
            }
            2 => self.feed_odds(auditor, &markets),
            3 => self.feed_settle(auditor, &markets),
            4 => self.feed_rollback(auditor, &markets),
            5 => self.feed_cancel(auditor, &markets),
            6 => self.feed_rollback_cancel(auditor, &markets),
            7 => match self.rng.pick(self.feed_sent.make_contiguous()).cloned() {
                Some(delivery) => Step { label: "feed.redelivered", op: Op::Feed(delivery) },
                None => self.feed_odds(auditor, &markets),
            },
            _ => {
                let (_, urn) = self.rng.pick(&live_feed).cloned().expect("live feed events");
                self.feed_fixture_change(auditor, &urn)
            }
        })
    }

    /// A new fixture (`fixture_change` type 1) starting later.
    fn feed_fixture(&mut self, auditor: &Auditor) -> Step {
        self.feed_events_issued += 1;
        let urn = format!("sr:match:{}", 90_000 + self.feed_events_issued);
        let starts_at = auditor.now + self.rng.between(600_000, 4 * 3_600_000);
        let xml = format!(
            r#"<fixture_change product="{{product}}" event_id="{urn}" timestamp="{}" change_type="1" start_time="{starts_at}"/>"#,
            auditor.now
        );
        let item = announce(&urn, starts_at, true);
        self.delivery("feed.fixture", "fixture_change", &urn, xml, (auditor.now, vec![item]), Vec::new())
    }

    /// A fixture's start moved (`fixture_change` type 2), now and then into the past.
    fn feed_fixture_change(&mut self, auditor: &Auditor, urn: &str) -> Step {
        let starts_at = if self.rng.chance(1, 5) {
            auditor.now.saturating_sub(self.rng.between(1, 600_000))
        } else {
            auditor.now + self.rng.between(60_000, 3_600_000)
        };
        let xml = format!(
            r#"<fixture_change product="{{product}}" event_id="{urn}" timestamp="{}" change_type="2" start_time="{starts_at}"/>"#,
            auditor.now
        );
        let item = announce(urn, starts_at, true);
        self.delivery("feed.fixture_change", "fixture_change", urn, xml, (auditor.now, vec![item]), Vec::new())
    }

    /// An `odds_change` that lists a market the book does not have yet.
    fn feed_new_market(&mut self, auditor: &Auditor, urn: &str) -> Step {
        let existing: Vec<String> =
            auditor.feed.markets.keys().filter(|(_, owner, _)| owner == urn).map(|(_, _, key)| key.clone()).collect();
        let candidates = ["1", "18|total=2.5", "18|total=3.5", "40", "41"];
        let fresh: Vec<&str> = candidates.iter().copied().filter(|key| !existing.iter().any(|k| k == key)).collect();
        let key = match self.rng.pick(&fresh) {
            Some(key) if existing.len() < MARKETS_PER_EVENT => (*key).to_string(),
            // Listed again: the market exists, so this is a price update.
            _ => existing.first().cloned().unwrap_or_else(|| "1".to_string()),
        };
        let ids: Vec<String> = match key.split_once('|').map_or(key.as_str(), |(id, _)| id) {
            "1" => vec!["1".into(), "2".into(), "3".into()],
            "18" => vec!["12".into(), "13".into()],
            _ => (1..=self.rng.between(3, 7)).map(|runner| format!("sr:competitor:{}", 100 + runner)).collect(),
        };
        let outcomes: Vec<(String, Option<u32>, bool)> = ids
            .into_iter()
            .map(|id| {
                let price =
                    if ids_short(&key) { PRICES[3 + self.rng.index(10)] } else { PRICES[7 + self.rng.index(14)] };
                // An outcome listed without odds becomes a selection when first priced.
                let priced = !self.rng.chance(1, 12);
                (id, priced.then_some(price), !self.rng.chance(1, 25))
            })
            .collect();
        self.odds_change("feed.market", urn, &key, &outcomes, 1, auditor.now)
    }

    /// New prices for a feed market (its known outcomes, now and then one more), with a
    /// status; now and then stamped before the last odds applied (stale).
    fn feed_odds(&mut self, auditor: &Auditor, markets: &[Known]) -> Step {
        let open: Vec<&Known> =
            markets.iter().filter(|known| !auditor.markets[known.market as usize - 1].is_resulted()).collect();
        let known = match self.rng.pick(&open) {
            Some(known) => *known,
            None => self.rng.pick(markets).expect("markets exist"),
        };
        let mut outcomes: Vec<(String, Option<u32>, bool)> = outcomes_of(auditor, known.market)
            .into_iter()
            .map(|(id, selection)| {
                let current = auditor.selections[selection as usize - 1].price;
                let price = match self.rng.below(10) {
                    0..=2 => current,
                    3 => PRICES[3 + self.rng.index(15)],
                    _ => {
                        let step = (current / 25).max(1);
                        if self.rng.chance(1, 2) {
                            (current + step).min(ODDS_SCALED_MAX)
                        } else {
                            (current - step).max(10_001)
                        }
                    }
                };
                let priced = !self.rng.chance(1, 20);
                (id, priced.then_some(price), !self.rng.chance(1, 20))
            })
            .collect();
        if self.rng.chance(1, 20) {
            outcomes.push((format!("{}", 200 + outcomes.len()), Some(PRICES[4 + self.rng.index(12)]), true));
        }
        let status = [1, 1, 1, 1, 1, 1, -1, -1, 0, -3, -4][self.rng.index(11)];
        let last = auditor.feed.stamps.get(&known.market).copied().unwrap_or(0);
        let timestamp =
            if self.rng.chance(1, 12) && last > 60_000 { last - self.rng.between(1, 60_000) } else { auditor.now };
        let (event, key) = (known.event.clone(), known.key.clone());
        self.odds_change("feed.odds", &event, &key, &outcomes, status, timestamp)
    }

    fn odds_change(
        &mut self,
        label: &'static str,
        urn: &str,
        key: &str,
        outcomes: &[(String, Option<u32>, bool)],
        status: i64,
        timestamp: u64,
    ) -> Step {
        let mut body = format!(r#"<market {} status="{status}">"#, market_attrs(key));
        let mut listed = Vec::new();
        for (id, price, active) in outcomes {
            let _ = write!(body, r#"<outcome id="{id}""#);
            if let Some(price) = price {
                let extra = self.rng.chance(1, 6).then(|| self.rng.between(1, 999_999));
                let _ = write!(body, r#" odds="{}""#, odds_text(*price, extra));
            }
            let _ = write!(body, r#" active="{}"/>"#, u8::from(*active));
            listed.push(FeedOutcome {
                id: id.clone(),
                name: outcome_name(key, id),
                odds: price.map(odds),
                active: *active,
            });
        }
        body.push_str("</market>");
        let xml = format!(
            r#"<odds_change product="{{product}}" event_id="{urn}" timestamp="{timestamp}"><odds>{body}</odds></odds_change>"#
        );
        let (name, kind) = market_names(key);
        let market = FeedMarket {
            market: key.to_string(),
            name,
            kind,
            status: FeedMarketStatus::from_code(status).expect("a schema status"),
            outcomes: listed,
        };
        let items =
            vec![announce(urn, timestamp, false), FeedItem::Markets { event: urn.to_string(), markets: vec![market] }];
        self.delivery(label, "odds_change", urn, xml, (timestamp, items), Vec::new())
    }

    /// Markets to result: mostly ones with bets that are not resulted, some resulted ones, and
    /// now and then a market the provider never listed.
    fn pick_market(&mut self, auditor: &Auditor, markets: &[Known], resulted: bool) -> (String, String, u64) {
        let preferred: Vec<&Known> = markets
            .iter()
            .filter(|known| {
                let found = &auditor.markets[known.market as usize - 1];
                found.is_resulted() == resulted && !found.bets.is_empty()
            })
            .collect();
        let known = match self.rng.pick(&preferred) {
            Some(known) if self.rng.chance(4, 5) => *known,
            _ => self.rng.pick(markets).expect("markets exist"),
        };
        if self.rng.chance(1, 40) {
            return (known.event.clone(), "999".to_string(), 0);
        }
        (known.event.clone(), known.key.clone(), known.market)
    }

    /// A `bet_settlement` of one market.
    fn feed_settle(&mut self, auditor: &Auditor, markets: &[Known]) -> Step {
        let resulted = self.rng.chance(1, 6);
        let (urn, key, market) = self.pick_market(auditor, markets, resulted);
        let mut ids: Vec<String> = outcomes_of(auditor, market).into_iter().map(|(id, _)| id).collect();
        if ids.is_empty() {
            ids.push("1".into());
        }
        for index in (1..ids.len()).rev() {
            ids.swap(index, self.rng.index(index + 1));
        }
        // (outcome, result attribute, void_factor text, dead_heat_factor text)
        let mut lines: Vec<(String, &str, Option<&str>, Option<&str>)> = ids
            .iter()
            .enumerate()
            .map(|(index, id)| (id.clone(), if index == 0 { "1" } else { "0" }, None, None))
            .collect();
        let mut refused = Vec::new();
        match self.rng.below(100) {
            0..=29 => {}
            30..=49 if ids.len() >= 2 => {
                let ways = (2 + self.rng.index(3)).min(ids.len());
                let text = ["0.5", "0.3333333333", "0.25"][ways - 2];
                for line in lines.iter_mut().take(ways) {
                    line.1 = "1";
                    line.3 = Some(text);
                }
            }
            50..=59 => lines[0].3 = Some("1"),
            60..=69 if ids.len() >= 2 => {
                lines[0].2 = Some("0.5");
                if self.rng.chance(1, 2) {
                    lines[1].2 = Some("0.5");
                }
            }
            70..=79 if ids.len() >= 2 => lines[1].2 = Some("1"),
            80..=84 => {
                for line in &mut lines {
                    line.2 = Some("1");
                }
            }
            85..=89 => lines.truncate(1),
            90..=91 => {
                lines[0].1 = "-1";
                refused.push("undecided_result");
            }
            92 => lines.push(("777".into(), "0", None, None)),
            _ => {}
        }
        let mut body = format!("<market {}>", market_attrs(&key));
        let mut results = Vec::new();
        for (id, result, void_factor, dead_heat) in &lines {
            let _ = write!(body, r#"<outcome id="{id}" result="{result}""#);
            if let Some(void_factor) = void_factor {
                let _ = write!(body, r#" void_factor="{void_factor}""#);
            }
            if let Some(dead_heat) = dead_heat {
                let _ = write!(body, r#" dead_heat_factor="{dead_heat}""#);
            }
            body.push_str("/>");
            let won = *result == "1";
            let (outcome, void_factor) = match *void_factor {
                Some("1") => (Outcome::Void, None),
                Some(_) => (if won { Outcome::Win } else { Outcome::Lose }, Some(Ratio::HALF)),
                None => (if won { Outcome::Win } else { Outcome::Lose }, None),
            };
            let dead_heat = dead_heat.map(|text| match text {
                "1" => Ratio::ONE,
                "0.5" => Ratio::HALF,
                "0.3333333333" => Ratio::new(1, 3).expect("a third"),
                _ => Ratio::new(1, 4).expect("a quarter"),
            });
            results.push(FeedResult { selection: id.clone(), outcome, dead_heat, void_factor });
        }
        body.push_str("</market>");
        let xml = format!(
            r#"<bet_settlement product="{{product}}" event_id="{urn}" timestamp="{}" certainty="2"><outcomes>{body}</outcomes></bet_settlement>"#,
            auditor.now
        );
        let items = if refused.is_empty() {
            vec![FeedItem::Settlement { event: urn.clone(), market: key, results }]
        } else {
            Vec::new()
        };
        let label = if refused.is_empty() { "feed.settlement" } else { "feed.settlement_undecided" };
        self.delivery(label, "bet_settlement", &urn, xml, (auditor.now, items), refused)
    }

    /// A `rollback_bet_settlement`, mostly of a resulted market.
    fn feed_rollback(&mut self, auditor: &Auditor, markets: &[Known]) -> Step {
        let resulted = !self.rng.chance(1, 8);
        let (urn, key, _) = self.pick_market(auditor, markets, resulted);
        let xml = format!(
            r#"<rollback_bet_settlement product="{{product}}" event_id="{urn}" timestamp="{}"><market {}/></rollback_bet_settlement>"#,
            auditor.now,
            market_attrs(&key)
        );
        let items = vec![FeedItem::Rollback { event: urn.clone(), market: key }];
        self.delivery("feed.rollback", "rollback_bet_settlement", &urn, xml, (auditor.now, items), Vec::new())
    }

    /// A `bet_cancel`: the whole market, or a window whose ends are placement times of bets on
    /// it (exactly, or a millisecond either side), one end left out now and then.
    fn feed_cancel(&mut self, auditor: &Auditor, markets: &[Known]) -> Step {
        let (urn, key, market) = self.pick_market(auditor, markets, false);
        let mut times: Vec<u64> = auditor
            .market(market)
            .map(|found| found.bets.iter().map(|bet| auditor.bets[*bet as usize - 1].placed_at).collect())
            .unwrap_or_default();
        times.push(auditor.now);
        let at = |rng: &mut crate::rng::Rng| {
            let time = *rng.pick(&times).expect("not empty");
            match rng.below(4) {
                0 => time.saturating_sub(1),
                1 => time + 1,
                _ => time,
            }
        };
        let (from, to) = match self.rng.below(100) {
            0..=24 => (None, None),
            25..=79 => {
                let (a, b) = (at(&mut self.rng), at(&mut self.rng));
                (Some(a.min(b)), Some(a.max(b)))
            }
            80..=89 => (None, Some(at(&mut self.rng))),
            90..=95 => (Some(at(&mut self.rng)), None),
            _ => {
                let a = at(&mut self.rng);
                (Some(a), Some(a))
            }
        };
        let xml = format!(
            r#"<bet_cancel product="{{product}}" event_id="{urn}" timestamp="{}"{}><market {} void_reason="1"/></bet_cancel>"#,
            auditor.now,
            window_attrs(from, to),
            market_attrs(&key)
        );
        let items = vec![FeedItem::CancelWindow { event: urn.clone(), market: key, from, to }];
        let label = if from.is_none() && to.is_none() { "feed.cancel" } else { "feed.cancel_window" };
        self.delivery(label, "bet_cancel", &urn, xml, (auditor.now, items), Vec::new())
    }

    /// A `rollback_bet_cancel` of a window in force, of a cancelled market, or of nothing.
    fn feed_rollback_cancel(&mut self, auditor: &Auditor, markets: &[Known]) -> Step {
        let windowed: Vec<(u64, (u64, u64))> = auditor
            .feed
            .windows
            .iter()
            .flat_map(|(market, windows)| windows.iter().map(move |window| (*market, *window)))
            .collect();
        let voided: Vec<u64> = markets
            .iter()
            .map(|known| known.market)
            .filter(|market| auditor.markets[*market as usize - 1].status == MarketStatus::Voided)
            .collect();
        let (market, from, to) = match (self.rng.below(10), self.rng.pick(&windowed).copied(), self.rng.pick(&voided)) {
            (0..=5, Some((market, (from, to))), _) => {
                (market, (from != 0).then_some(from), (to != u64::MAX).then_some(to))
            }
            (6..=8, _, Some(&market)) => (market, None, None),
            _ => {
                let (_, _, market) = self.pick_market(auditor, markets, true);
                let from = auditor.now.saturating_sub(self.rng.between(1, 1_000));
                (market, Some(from), Some(auditor.now))
            }
        };
        let Some(known) = markets.iter().find(|known| known.market == market) else {
            return self.feed_odds(auditor, markets);
        };
        let (urn, key) = (known.event.clone(), known.key.clone());
        let xml = format!(
            r#"<rollback_bet_cancel product="{{product}}" event_id="{urn}" timestamp="{}"{}><market {}/></rollback_bet_cancel>"#,
            auditor.now,
            window_attrs(from, to),
            market_attrs(&key)
        );
        let items = vec![FeedItem::RollbackCancel { event: urn.clone(), market: key, from, to }];
        self.delivery("feed.rollback_cancel", "rollback_bet_cancel", &urn, xml, (auditor.now, items), Vec::new())
    }
}

/// Whether a market has few outcomes (short prices) or a field (long ones).
fn ids_short(key: &str) -> bool {
    key == "1" || key.starts_with("18|")
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

/// The `Announce` the translator makes of a message about an event: named by its URN until a
/// fixture names it, the sport from the routing key.
fn announce(urn: &str, starts_at: u64, reschedule: bool) -> FeedItem {
    FeedItem::Announce {
        event: urn.to_string(),
        name: urn.to_string(),
        sport: format!("sr:sport:{SPORT_ID}"),
        competition: String::new(),
        starts_at,
        reschedule,
    }
}
