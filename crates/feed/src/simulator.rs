//! A simulated odds provider: fixtures with a 1X2 and a total-goals market, prices on a random
//! walk, kick-offs that take events in play, goals that stop betting and reprice, and full time
//! that settles. It speaks in the book's feed messages; transports render them as JSON or UOF
//! XML. `Chaos` drops, duplicates, reorders and delays messages on request, the way real feeds misbehave.
//!
//! Seeded and driven by the caller's clock: the same seed and the same times give the same
//! messages, so tests can reproduce what they saw.

use book::{FeedItem, FeedMessage, FeedOdds, FeedResult, FeedSelection, Outcome};
use domain::Odds;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Match length in simulated minutes; one step is one minute of an event in play.
const MATCH_MINUTES: u32 = 90;
/// Lowest and highest price the walk produces, in hundredths.
const PRICE_MIN: u32 = 102;
const PRICE_MAX: u32 = 5_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Chaos {
    /// Probability that a message is dropped.
    pub drop: f64,
    /// Probability that a message is sent twice.
    pub duplicate: f64,
    /// Probability that a message swaps places with the next one.
    pub reorder: f64,
    /// Probability that a message is held back and sent after 2 to `DELAY_MESSAGES_MAX` later
    /// ones (a slow path at the provider).
    pub delay: f64,
}

impl Chaos {
    pub const NONE: Chaos = Chaos { drop: 0.0, duplicate: 0.0, reorder: 0.0, delay: 0.0 };
}

/// The most later messages a delayed message waits for.
pub const DELAY_MESSAGES_MAX: u32 = 20;

#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    pub provider: String,
    pub fixtures: usize,
    pub seed: u64,
    /// Bet delay of events in play.
    pub in_play_delay_seconds: u32,
    /// Probability per step that a scheduled fixture kicks off.
    pub kick_off: f64,
    /// Probability per in-play step that a goal is scored.
    pub goal: f64,
    pub chaos: Chaos,
    /// Fixture ids are this prefix and a number: a provider never reuses an id.
    pub id_prefix: String,
    /// The first message's sequence is one more than this: a provider's sequences keep
    /// increasing across its restarts (the book remembers the highest it applied).
    pub sequence_after: u64,
}

impl SimulatorConfig {
    pub fn new(provider: &str, fixtures: usize, seed: u64) -> SimulatorConfig {
        SimulatorConfig {
            provider: provider.to_string(),
            fixtures,
            seed,
            in_play_delay_seconds: 5,
            kick_off: 0.02,
            goal: 0.03,
            chaos: Chaos::NONE,
            id_prefix: "sim:match:".to_string(),
            sequence_after: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Scheduled,
    InPlay { minute: u32 },
    Ended,
}

#[derive(Clone, Debug)]
struct SimMarket {
    key: &'static str,
    /// Outcome id, name, price in hundredths.
    outcomes: Vec<(&'static str, &'static str, u32)>,
    suspended: bool,
}

#[derive(Clone, Debug)]
struct SimFixture {
    id: String,
    /// How the fixture was announced (name, sport, start).
    announcement: FeedItem,
    phase: Phase,
    score: (u32, u32),
    markets: Vec<SimMarket>,
}

#[derive(Debug)]
pub struct FeedSimulator {
    config: SimulatorConfig,
    rng: StdRng,
    sequence: u64,
    fixtures: Vec<SimFixture>,
    created: u64,
    /// A message held back to be sent after the next one (reordering).
    held: Option<FeedMessage>,
    /// Delayed messages, with how many later messages each still waits for.
    delayed: Vec<(u32, FeedMessage)>,
}

fn odds(hundredths: u32) -> Odds {
    Odds::from_scaled(hundredths * 100).unwrap_or(Odds::from_scaled(20_000).expect("2.00 is valid odds"))
}

impl FeedSimulator {
    pub fn new(config: SimulatorConfig) -> FeedSimulator {
        let rng = StdRng::seed_from_u64(config.seed);
        let sequence = config.sequence_after;
        FeedSimulator { config, rng, sequence, fixtures: Vec::new(), created: 0, held: None, delayed: Vec::new() }
    }

    pub fn provider(&self) -> &str {
        &self.config.provider
    }

    /// The last sequence handed out.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Provider ids of the fixtures and their markets, as the feed names them.
    pub fn markets(&self) -> Vec<(String, String)> {
        self.fixtures
            .iter()
            .filter(|fixture| fixture.phase != Phase::Ended)
            .flat_map(|fixture| fixture.markets.iter().map(|market| (fixture.id.clone(), market.key.to_string())))
            .collect()
    }

    /// The current price of every outcome of every market not yet finished, by provider ids:
    /// what the book should show once every message has arrived.
    pub fn prices(&self) -> Vec<(String, String, String, Odds)> {
        self.fixtures
            .iter()
            .filter(|fixture| fixture.phase != Phase::Ended)
            .flat_map(|fixture| {
                fixture.markets.iter().flat_map(move |market| {
                    market.outcomes.iter().map(move |(outcome, _, price)| {
                        (fixture.id.clone(), market.key.to_string(), outcome.to_string(), odds(*price))
                    })
                })
            })
            .collect()
    }

    fn message(&mut self, now: u64, items: Vec<FeedItem>) -> FeedMessage {
        self.sequence += 1;
        FeedMessage { provider: self.config.provider.clone(), sequence: self.sequence, timestamp: now, items }
    }

    fn new_fixture(&mut self, now: u64) -> Vec<FeedMessage> {
        self.created += 1;
        let id = format!("{}{}", self.config.id_prefix, self.created);
        let home = self.rng.random_range(150..400u32);
        let away = self.rng.random_range(150..400u32);
        let announcement = FeedItem::Fixture {
            event: id.clone(),
            name: format!("Sim {} v Sim {}", self.created * 2 - 1, self.created * 2),
            sport: "football".to_string(),
            competition: "Simulated League".to_string(),
            starts_at: now + 3_600_000,
        };
        let fixture = SimFixture {
            id: id.clone(),
            announcement: announcement.clone(),
            phase: Phase::Scheduled,
            score: (0, 0),
            markets: vec![
                SimMarket {
                    key: "1",
                    outcomes: vec![("1", "Home", home), ("2", "Draw", 330), ("3", "Away", away)],
                    suspended: false,
                },
                SimMarket {
                    key: "18|total=2.5",
                    outcomes: vec![("12", "Over", 190), ("13", "Under", 195)],
                    suspended: false,
                },
            ],
        };
        self.fixtures.push(fixture);
        let market_items = self.market_items(self.fixtures.len() - 1);
        vec![self.message(now, vec![announcement]), self.message(now, market_items)]
    }

    /// The fixture's markets with their current prices.
    fn market_items(&self, index: usize) -> Vec<FeedItem> {
        let fixture = &self.fixtures[index];
        fixture
            .markets
            .iter()
            .map(|market| FeedItem::Market {
                event: fixture.id.clone(),
                market: market.key.to_string(),
                name: if market.key == "1" { "1X2".to_string() } else { "Total 2.5".to_string() },
                kind: if market.key == "1" { "1x2".to_string() } else { "total".to_string() },
                selections: market
                    .outcomes
                    .iter()
                    .map(|(outcome, name, price)| FeedSelection {
                        id: outcome.to_string(),
                        name: name.to_string(),
                        price: odds(*price),
                    })
                    .collect(),
                each_way: None,
            })
            .collect()
    }

    /// Creates the fixtures: what a provider sends when a session starts.
    pub fn start(&mut self, now: u64) -> Vec<FeedMessage> {
        let mut out = Vec::new();
        for _ in 0..self.config.fixtures {
            out.extend(self.new_fixture(now));
        }
        out
    }

    /// A recovery: every fixture not finished (announced again, so that a consumer that
    /// missed the start learns it), its markets with their current prices and state, then
    /// `snapshot_complete`.
    pub fn snapshot(&mut self, now: u64) -> Vec<FeedMessage> {
        let mut out = Vec::new();
        for index in 0..self.fixtures.len() {
            if self.fixtures[index].phase == Phase::Ended {
                continue;
            }
            let announcement = self.fixtures[index].announcement.clone();
            out.push(self.message(now, vec![announcement]));
            let mut items = self.market_items(index);
            items.push(self.odds_item(index, None));
            if let Phase::InPlay { .. } = self.fixtures[index].phase {
                let (event, bet_delay_seconds) = (self.fixtures[index].id.clone(), self.config.in_play_delay_seconds);
                items.push(FeedItem::InPlay { event, bet_delay_seconds });
            }
            out.push(self.message(now, items));
        }
        out.push(self.message(now, vec![FeedItem::SnapshotComplete]));
        out
    }

    fn odds_item(&self, index: usize, only: Option<usize>) -> FeedItem {
        let fixture = &self.fixtures[index];
        FeedItem::Odds {
            event: fixture.id.clone(),
            markets: fixture
                .markets
                .iter()
                .enumerate()
                .filter(|(position, _)| only.is_none_or(|only| only == *position))
                .map(|(_, market)| FeedOdds {
                    market: market.key.to_string(),
                    prices: market.outcomes.iter().map(|(id, _, price)| (id.to_string(), odds(*price))).collect(),
                    active: Some(!market.suspended),
                })
                .collect(),
        }
    }

    /// One price change on a random open market: the bulk of any feed.
    pub fn price_change(&mut self, now: u64) -> Option<FeedMessage> {
        let open: Vec<(usize, usize)> = self
            .fixtures
            .iter()
            .enumerate()
            .filter(|(_, fixture)| fixture.phase != Phase::Ended)
            .flat_map(|(index, fixture)| {
                fixture
                    .markets
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| !m.suspended)
                    .map(move |(position, _)| (index, position))
            })
            .collect();
        if open.is_empty() {
            return None;
        }
        let (index, position) = open[self.rng.random_range(0..open.len())];
        for outcome in &mut self.fixtures[index].markets[position].outcomes {
            let step: i64 = self.rng.random_range(-6..=6);
            let moved = (i64::from(outcome.2) * (100 + step) / 100).clamp(i64::from(PRICE_MIN), i64::from(PRICE_MAX));
            outcome.2 = moved as u32;
        }
        let item = self.odds_item(index, Some(position));
        Some(self.message(now, vec![item]))
    }

    /// One minute of the match day: kick-offs, goals (bet stop, then repricing), full time
    /// (settlement) and new fixtures in place of finished ones. Chaos applies.
    pub fn step(&mut self, now: u64) -> Vec<FeedMessage> {
        let mut out = Vec::new();
        for index in 0..self.fixtures.len() {
            match self.fixtures[index].phase {
                Phase::Scheduled => {
                    if self.rng.random_bool(self.config.kick_off) {
                        self.fixtures[index].phase = Phase::InPlay { minute: 0 };
                        let event = self.fixtures[index].id.clone();
                        let delay = self.config.in_play_delay_seconds;
                        out.push(self.message(now, vec![FeedItem::InPlay { event, bet_delay_seconds: delay }]));
                    }
                }
                Phase::InPlay { minute } if minute >= MATCH_MINUTES => out.extend(self.full_time(index, now)),
                Phase::InPlay { minute } => {
                    self.fixtures[index].phase = Phase::InPlay { minute: minute + 1 };
                    let suspended = self.fixtures[index].markets.iter().any(|market| market.suspended);
                    if suspended {
                        // After a goal: reprice and reopen.
                        for market in &mut self.fixtures[index].markets {
                            market.suspended = false;
                        }
                        let item = self.odds_item(index, None);
                        out.push(self.message(now, vec![item]));
                    } else if self.rng.random_bool(self.config.goal) {
                        let home = self.rng.random_bool(0.5);
                        let fixture = &mut self.fixtures[index];
                        if home {
                            fixture.score.0 += 1;
                        } else {
                            fixture.score.1 += 1;
                        }
                        for market in &mut fixture.markets {
                            market.suspended = true;
                            for outcome in &mut market.outcomes {
                                let favoured =
                                    (home && outcome.0 == "1") || (!home && outcome.0 == "3") || outcome.0 == "12";
                                outcome.2 = if favoured {
                                    (outcome.2 * 2 / 3).max(PRICE_MIN)
                                } else {
                                    (outcome.2 * 3 / 2).min(PRICE_MAX)
                                };
                            }
                        }
                        let event = fixture.id.clone();
                        out.push(self.message(now, vec![FeedItem::BetStop { event, markets: Vec::new() }]));
                    }
                }
                Phase::Ended => {}
            }
        }
        self.fixtures.retain(|fixture| fixture.phase != Phase::Ended);
        while self.fixtures.len() < self.config.fixtures {
            out.extend(self.new_fixture(now));
        }
        self.disorder(out)
    }

    fn full_time(&mut self, index: usize, now: u64) -> Vec<FeedMessage> {
        let fixture = &mut self.fixtures[index];
        fixture.phase = Phase::Ended;
        let (home, away) = fixture.score;
        let event = fixture.id.clone();
        let winner = match home.cmp(&away) {
            std::cmp::Ordering::Greater => "1",
            std::cmp::Ordering::Equal => "2",
            std::cmp::Ordering::Less => "3",
        };
        let over = home + away > 2;
        let results = |market: &SimMarket| {
            market
                .outcomes
                .iter()
                .map(|(id, _, _)| FeedResult {
                    selection: id.to_string(),
                    outcome: if *id == winner || (*id == "12" && over) || (*id == "13" && !over) {
                        Outcome::Win
                    } else {
                        Outcome::Lose
                    },
                    dead_heat: None,
                    void_factor: None,
                })
                .collect::<Vec<_>>()
        };
        let settlements: Vec<FeedItem> = fixture
            .markets
            .iter()
            .map(|market| FeedItem::Settlement {
                event: event.clone(),
                market: market.key.to_string(),
                results: results(market),
            })
            .collect();
        let mut out = vec![self.message(now, vec![FeedItem::Ended { event }])];
        for settlement in settlements {
            out.push(self.message(now, vec![settlement]));
        }
        out
    }

    /// Drops, duplicates and reorders messages as `Chaos` says.
    pub fn disorder(&mut self, messages: Vec<FeedMessage>) -> Vec<FeedMessage> {
        let chaos = self.config.chaos.clone();
        if chaos == Chaos::NONE {
            return messages;
        }
        let mut out = Vec::with_capacity(messages.len());
        for message in messages {
            if self.rng.random_bool(chaos.drop) {
                continue;
            }
            if self.rng.random_bool(chaos.duplicate) {
                out.push(message.clone());
            }
            // Delayed messages come out once enough later ones have gone before them.
            for waiting in &mut self.delayed {
                waiting.0 = waiting.0.saturating_sub(1);
            }
            let due: Vec<FeedMessage> = {
                let (due, waiting): (Vec<_>, Vec<_>) = self.delayed.drain(..).partition(|(left, _)| *left == 0);
                self.delayed = waiting;
                due.into_iter().map(|(_, message)| message).collect()
            };
            if self.rng.random_bool(chaos.delay) {
                let wait = self.rng.random_range(2..=DELAY_MESSAGES_MAX);
                self.delayed.push((wait, message));
                out.extend(due);
                continue;
            }
            match self.held.take() {
                Some(held) => {
                    out.push(message);
                    out.push(held);
                }
                None if self.rng.random_bool(chaos.reorder) => self.held = Some(message),
                None => out.push(message),
            }
            out.extend(due);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_match_day_runs_from_fixtures_to_settlements_with_increasing_sequences() {
        let mut config = SimulatorConfig::new("sim", 3, 7);
        config.kick_off = 1.0;
        config.goal = 0.2;
        let mut simulator = FeedSimulator::new(config);
        let mut messages = simulator.start(0);
        for minute in 1..=200 {
            messages.extend(simulator.step(minute * 60_000));
            messages.extend(simulator.price_change(minute * 60_000));
        }
        let sequences: Vec<u64> = messages.iter().map(|message| message.sequence).collect();
        assert!(sequences.windows(2).all(|pair| pair[0] < pair[1]));
        let count =
            |pick: fn(&FeedItem) -> bool| messages.iter().flat_map(|m| &m.items).filter(|item| pick(item)).count();
        assert!(count(|item| matches!(item, FeedItem::InPlay { .. })) >= 3);
        assert!(count(|item| matches!(item, FeedItem::BetStop { .. })) >= 1);
        assert!(count(|item| matches!(item, FeedItem::Settlement { .. })) >= 6);
        assert!(count(|item| matches!(item, FeedItem::Fixture { .. })) >= 6, "finished fixtures are replaced");
    }

    #[test]
    fn chaos_drops_duplicates_reorders_and_delays() {
        let mut config = SimulatorConfig::new("sim", 2, 1);
        config.chaos = Chaos { drop: 0.1, duplicate: 0.1, reorder: 0.1, delay: 0.05 };
        let mut simulator = FeedSimulator::new(config);
        simulator.start(0);
        let sent: Vec<FeedMessage> = (0..500).filter_map(|step| simulator.price_change(step)).collect();
        let received = simulator.disorder(sent);
        let sequences: Vec<u64> = received.iter().map(|message| message.sequence).collect();
        assert!(sequences.len() < 560 && sequences.len() > 440);
        assert!(sequences.windows(2).any(|pair| pair[0] == pair[1]), "some duplicated");
        assert!(sequences.windows(2).any(|pair| pair[0] > pair[1]), "some reordered");
        assert!(sequences.iter().max() > Some(&(sequences.len() as u64 / 2)));
        // Reordering moves a message one place; delay moves it several.
        let mut highest = 0;
        let mut late = 0;
        for &sequence in &sequences {
            if sequence + 2 < highest {
                late += 1;
            }
            highest = highest.max(sequence);
        }
        assert!(late > 0, "some delayed behind several later messages");
    }
}
