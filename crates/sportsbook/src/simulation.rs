//! The demo's live trading floor: a simulation that runs next to the server and trades the
//! catalog through the engine like an operator's trader and feed would.
//!
//! Prices random-walk; fixtures kick off at their start times and go in play with a bet delay;
//! goals suspend a match's markets for a moment and reprice them; matches and races end and are
//! settled (with the Asian quarter line's half results and each-way place results); new
//! fixtures replace finished ones so the catalog never runs dry; a few simulated punters bet.
//!
//! `Simulation::step(engine, now)` does one tick at the time it is given, so a test drives it
//! on a `ManualClock` and `spawn` drives it on the real one from its own thread (every submit
//! blocks until the command is durable, which must never happen on the async runtime).
//! Everything is bounded: at most `fixtures_active_max` fixtures, `PRICE_MOVES_PER_TICK_MAX`
//! repriced fixtures and one punter bet per tick, and finished fixtures are dropped.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use book::{
    AccountId, Ack, BetKind, Command, EachWayTerms, Event, EventId, EventState, LegRequest, Market, MarketAction,
    MarketId, MarketStatus, NewSelection, Outcome, PlaceBet, PricePolicy, Rejection, ResultRequest, Selection,
    SelectionId,
};
use domain::{Currency, Money, Odds, Ratio};
use engine::{Clock, EngineError, EngineHandle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::names::{FOOTBALL_LEAGUES, HORSES, RACECOURSES, TENNIS_PLAYERS, TENNIS_TOURNAMENTS};
use crate::pricing;

/// Fixtures repriced by the random walk in one tick (in-play time decay comes on top).
pub const PRICE_MOVES_PER_TICK_MAX: usize = 2;
/// Simulated punters (accounts without credentials) that bet on the catalog.
pub const PUNTERS_MAX: usize = 20;
/// Attempts at drawing two teams or players that are not already playing.
const PAIRING_ATTEMPTS_MAX: usize = 16;
/// What each punter gets on opening, and again whenever a stake is refused for lack of funds.
const PUNTER_FUNDING_MINOR: i64 = 50_000;
/// Stakes of the simulated punters, in minor units.
const PUNTER_STAKE_MINOR: (i64, i64) = (100, 2_500);
const MINUTE_MS: u64 = 60_000;
/// A football match: two halves of 45 minutes with 15 of half time between them.
const HALF_MINUTES: f64 = 45.0;
const HALF_TIME_MINUTES: f64 = 15.0;
const FULL_TIME_MINUTES: f64 = 90.0;

#[derive(Clone, Debug)]
pub struct SimulationOptions {
    pub seed: u64,
    /// Real milliseconds between two steps.
    pub tick_ms: u64,
    /// Real milliseconds of one minute of a match: the simulation plays matches faster than
    /// life so a visitor sees kick-off, goals, full time and settlement in a few minutes.
    pub match_minute_ms: u64,
    /// How long a goal keeps a match's markets suspended.
    pub goal_suspension_ms: u64,
    /// From the off to the result of a race.
    pub race_duration_ms: u64,
    /// Fixtures scheduled or in play at once.
    pub fixtures_active_max: usize,
    /// Least time between two new fixtures.
    pub fixture_interval_ms: u64,
    /// New fixtures start between these many milliseconds after they are created.
    pub lead_time_ms_min: u64,
    pub lead_time_ms_max: u64,
    /// Time between two bets of the simulated punters (0: no punters).
    pub punter_bet_interval_ms: u64,
    /// In-play bet delay of the matches.
    pub bet_delay_seconds: u32,
}

impl Default for SimulationOptions {
    fn default() -> SimulationOptions {
        SimulationOptions {
            seed: 0,
            tick_ms: 400,
            match_minute_ms: 3_000,
            goal_suspension_ms: 6_000,
            race_duration_ms: 45_000,
            fixtures_active_max: 10,
            fixture_interval_ms: 30_000,
            lead_time_ms_min: 2 * MINUTE_MS,
            lead_time_ms_max: 7 * MINUTE_MS,
            punter_bet_interval_ms: 1_500,
            bet_delay_seconds: 5,
        }
    }
}

/// What the simulation has done so far, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimulationStats {
    pub fixtures_created: u64,
    pub kick_offs: u64,
    pub goals: u64,
    pub price_updates: u64,
    pub markets_settled: u64,
    pub bets_placed: u64,
    pub rejections: u64,
}

#[derive(Clone, Debug)]
struct TradedMarket {
    id: MarketId,
    selections: Vec<SelectionId>,
    prices: Vec<Odds>,
    /// Suspended by the simulation (a goal, the off of a race); it resumes them itself.
    suspended: bool,
    /// Decided before the end (three goals decide the total): stays suspended until settled.
    decided: bool,
    /// Settled or voided already (by an operator, or before a restart): left alone.
    resulted: bool,
}

#[derive(Clone, Debug)]
struct Football {
    home: String,
    away: String,
    /// Goals per 90 minutes each side would score at its usual strength.
    base_rates: [f64; 2],
    /// The random walk of each side's strength, as a log factor on its base rate.
    form: [f64; 2],
    score: [u32; 2],
    /// Match minute of the previous step (goals are drawn for the minutes in between).
    minute: f64,
    stoppage_minutes: u32,
}

impl Football {
    fn rates(&self) -> [f64; 2] {
        [self.base_rates[0] * self.form[0].exp(), self.base_rates[1] * self.form[1].exp()]
    }
}

#[derive(Clone, Debug)]
struct Tennis {
    players: [String; 2],
    /// Log-odds that the first player wins.
    logit: f64,
    length_minutes: u32,
    minute: f64,
}

#[derive(Clone, Debug)]
struct Race {
    /// Log-strength of each runner, in selection order.
    strengths: Vec<f64>,
}

#[derive(Clone, Debug)]
enum Model {
    Football(Football),
    Tennis(Tennis),
    Race(Race),
}

#[derive(Clone, Debug)]
struct Fixture {
    event: EventId,
    name: String,
    starts_at: u64,
    in_running: bool,
    /// When the markets the simulation suspended open again.
    resume_at: Option<u64>,
    /// The match minute last priced in play (time decay reprices once a minute).
    priced_minute: u32,
    markets: Vec<TradedMarket>,
    model: Model,
    /// Ended in the book; its markets still need results (a restart between the two).
    ended: bool,
}

impl Fixture {
    fn players(&self) -> Vec<&str> {
        match &self.model {
            Model::Football(football) => vec![&football.home, &football.away],
            Model::Tennis(tennis) => vec![&tennis.players[0], &tennis.players[1]],
            Model::Race(_) => Vec::new(),
        }
    }

    fn prices(&self, now: u64, match_minute_ms: u64) -> Vec<Vec<Odds>> {
        match &self.model {
            Model::Football(football) => {
                let remaining = if self.in_running {
                    1.0 - football_minute(self.starts_at, now, match_minute_ms).min(FULL_TIME_MINUTES)
                        / FULL_TIME_MINUTES
                } else {
                    1.0
                };
                pricing::football_prices(pricing::football_outlook(football.rates(), remaining, football.score))
                    .to_vec()
            }
            Model::Tennis(tennis) => vec![pricing::tennis_prices(tennis.logit)],
            Model::Race(race) => vec![pricing::race_prices(&race.strengths)],
        }
    }
}

/// The minute of a football match that kicked off at `kick_off`, half time included.
fn football_minute(kick_off: u64, now: u64, match_minute_ms: u64) -> f64 {
    let clock = now.saturating_sub(kick_off) as f64 / match_minute_ms.max(1) as f64;
    if clock < HALF_MINUTES {
        clock
    } else if clock < HALF_MINUTES + HALF_TIME_MINUTES {
        HALF_MINUTES
    } else {
        clock - HALF_TIME_MINUTES
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let uniform: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let angle: f64 = rng.random::<f64>();
    (-2.0 * uniform.ln()).sqrt() * (std::f64::consts::TAU * angle).cos()
}

fn poisson_draw(rng: &mut StdRng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut product: f64 = rng.random();
    let mut count = 0;
    while product > limit && count < 20 {
        product *= rng.random::<f64>();
        count += 1;
    }
    count
}

fn result(selection: SelectionId, outcome: Outcome) -> ResultRequest {
    ResultRequest { selection, outcome, dead_heat: None, void_factor: None }
}

/// Results of the three football markets (match result, total goals 2.5, Asian handicap
/// -0.25) for a final score. A draw settles the quarter line half and half: home -0.25 half
/// lost, away +0.25 half won, each with the other half refunded (void factor 1/2).
pub fn football_results(
    score: [u32; 2],
    result_market: &[SelectionId],
    total_market: &[SelectionId],
    handicap_market: &[SelectionId],
) -> [Vec<ResultRequest>; 3] {
    let winner = match score[0].cmp(&score[1]) {
        std::cmp::Ordering::Greater => 0,
        std::cmp::Ordering::Equal => 1,
        std::cmp::Ordering::Less => 2,
    };
    let total = if score[0] + score[1] >= 3 { 0 } else { 1 };
    let half = Some(Ratio::HALF);
    let handicap = match winner {
        0 => vec![result(handicap_market[0], Outcome::Win)],
        1 => vec![
            ResultRequest { selection: handicap_market[0], outcome: Outcome::Lose, dead_heat: None, void_factor: half },
            ResultRequest { selection: handicap_market[1], outcome: Outcome::Win, dead_heat: None, void_factor: half },
        ],
        _ => vec![result(handicap_market[1], Outcome::Win)],
    };
    [vec![result(result_market[winner], Outcome::Win)], vec![result(total_market[total], Outcome::Win)], handicap]
}

/// Results of an each-way race from the finishing order (indexes into `runners`): the winner
/// wins, second and third are placed (each-way terms pay three places); with `dead_heat_for_third`
/// the third and fourth share the last place, each at a dead-heat factor of 1/2.
pub fn race_results(order: &[usize], runners: &[SelectionId], dead_heat_for_third: bool) -> Vec<ResultRequest> {
    let mut results = Vec::with_capacity(4);
    for (position, &runner) in order.iter().enumerate().take(3) {
        let outcome = if position == 0 { Outcome::Win } else { Outcome::Place };
        results.push(result(runners[runner], outcome));
    }
    if dead_heat_for_third && order.len() > 3 {
        let dead_heat = Some(Ratio::HALF);
        results[2].dead_heat = dead_heat;
        results.push(ResultRequest {
            selection: runners[order[3]],
            outcome: Outcome::Place,
            dead_heat,
            void_factor: None,
        });
    }
    results
}

/// The finishing order of a race: runners drawn one by one with their win probabilities among
/// those still running (Plackett-Luce).
fn finishing_order(rng: &mut StdRng, strengths: &[f64]) -> Vec<usize> {
    let mut running: Vec<usize> = (0..strengths.len()).collect();
    let mut order = Vec::with_capacity(strengths.len());
    while !running.is_empty() {
        let remaining: Vec<f64> = running.iter().map(|&runner| strengths[runner]).collect();
        let probabilities = pricing::race_probabilities(&remaining);
        let mut draw: f64 = rng.random();
        let mut chosen = running.len() - 1;
        for (index, probability) in probabilities.iter().enumerate() {
            if draw < *probability {
                chosen = index;
                break;
            }
            draw -= probability;
        }
        order.push(running.remove(chosen));
    }
    order
}

/// Runners of a race.
const RUNNERS: usize = 8;
const EACH_WAY_PLACES: u32 = 3;

/// A market to create: its name, kind, selection names and each-way terms.
struct MarketShape {
    name: String,
    kind: &'static str,
    selections: Vec<String>,
    each_way: Option<EachWayTerms>,
}

/// A fixture to create.
#[derive(Clone, Debug)]
enum FixtureSpec {
    Football { competition: &'static str, home: String, away: String, rates: [f64; 2] },
    Tennis { tournament: &'static str, players: [String; 2], logit: f64 },
    Race { course: &'static str, runners: Vec<(String, f64)> },
}

/// `HH:MM` (UTC) of a timestamp: races are named after their off time.
fn clock_time(timestamp: u64) -> String {
    let minutes = (timestamp / MINUTE_MS) % (24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The reply of a command the simulation submitted: `None` for a business rejection, which is
/// logged and counted (an operator may have closed or settled a market under the simulation).
type Submitted = Result<Option<Ack>, EngineError>;

pub struct Simulation {
    options: SimulationOptions,
    rng: StdRng,
    fixtures: Vec<Fixture>,
    punters: Vec<AccountId>,
    next_fixture_at: u64,
    next_bet_at: u64,
    stats: SimulationStats,
}

impl Simulation {
    pub fn new(options: SimulationOptions) -> Simulation {
        Simulation {
            rng: StdRng::seed_from_u64(options.seed),
            options,
            fixtures: Vec::new(),
            punters: Vec::new(),
            next_fixture_at: 0,
            next_bet_at: 0,
            stats: SimulationStats::default(),
        }
    }

    pub fn options(&self) -> &SimulationOptions {
        &self.options
    }

    pub fn stats(&self) -> SimulationStats {
        self.stats
    }

    /// Fixtures the simulation trades now (scheduled, in play, or ended awaiting results).
    pub fn fixtures_active(&self) -> usize {
        self.fixtures.len()
    }

    /// The events the simulation trades now.
    pub fn events(&self) -> Vec<EventId> {
        self.fixtures.iter().map(|fixture| fixture.event).collect()
    }

    fn submit(&mut self, engine: &EngineHandle, command: Command) -> Submitted {
        match engine.submit((command, book::Origin::system("simulation"))) {
            Ok(Ok(ack)) => Ok(Some(ack)),
            Ok(Err(rejection)) => {
                self.stats.rejections += 1;
                tracing::debug!(code = rejection.code(), "simulation command rejected");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Seeds the demo's first catalog: matches that kick off one to eight minutes from `now`,
    /// a tennis match and a horse race with each-way terms, and the funded punters.
    pub fn seed(&mut self, engine: &EngineHandle, now: u64) -> Result<(), EngineError> {
        let seeded = [
            (
                1,
                FixtureSpec::Football {
                    competition: "Premier League",
                    home: "Arsenal".into(),
                    away: "Tottenham".into(),
                    rates: [1.7, 1.2],
                },
            ),
            (
                2,
                FixtureSpec::Tennis {
                    tournament: "ATP Finals",
                    players: ["Sinner".into(), "Alcaraz".into()],
                    logit: 0.15,
                },
            ),
            (
                3,
                FixtureSpec::Football {
                    competition: "Premier League",
                    home: "Liverpool".into(),
                    away: "Everton".into(),
                    rates: [2.0, 0.9],
                },
            ),
            (4, self.race_spec_at("Cheltenham")),
            (
                6,
                FixtureSpec::Football {
                    competition: "La Liga",
                    home: "Real Madrid".into(),
                    away: "Barcelona".into(),
                    rates: [1.5, 1.5],
                },
            ),
            (
                8,
                FixtureSpec::Football {
                    competition: "Serie A",
                    home: "Inter".into(),
                    away: "Milan".into(),
                    rates: [1.4, 1.1],
                },
            ),
        ];
        for (minutes, spec) in seeded {
            self.create_fixture(engine, spec, now + minutes * MINUTE_MS)?;
        }
        self.open_punters(engine)?;
        self.next_fixture_at = now + self.options.fixture_interval_ms;
        Ok(())
    }

    fn open_punters(&mut self, engine: &EngineHandle) -> Result<(), EngineError> {
        if self.options.punter_bet_interval_ms == 0 {
            return Ok(());
        }
        while self.punters.len() < PUNTERS_MAX {
            let Some(Ack::AccountOpened(account)) =
                self.submit(engine, Command::OpenAccount { currency: Currency::EUR })?
            else {
                break;
            };
            self.punters.push(account);
            self.fund(engine, account)?;
        }
        Ok(())
    }

    fn fund(&mut self, engine: &EngineHandle, account: AccountId) -> Result<(), EngineError> {
        // A payment reference credits an account once: each funding is a payment of its own,
        // named after the ledger's length (unique, and across restarts too).
        let transfers = engine.read(|book| book.ledger().transfers().len())?;
        self.submit(
            engine,
            Command::Deposit {
                account,
                amount: Money::from_minor(PUNTER_FUNDING_MINOR),
                payment_ref: format!("simulation-{account}-{transfers}"),
                idempotency: None,
            },
        )?;
        Ok(())
    }

    /// Takes over a catalog from an earlier run of the simulation: fixtures not yet ended (and
    /// ended ones whose markets still need results) whose markets have the shapes the
    /// simulation creates, and the punters. Scores do not survive a restart: matches resume
    /// at 0-0 from their current prices.
    pub fn adopt(&mut self, engine: &EngineHandle, now: u64) -> Result<(), EngineError> {
        type Snapshot = (Vec<(Event, Vec<(Market, Vec<Selection>)>)>, Vec<AccountId>);
        let (events, punters): Snapshot = engine.read(|book| {
            let events = book
                .events()
                .iter()
                .filter(|event| {
                    event.state != EventState::Ended
                        || event.markets.iter().any(|market| {
                            book.market(*market).is_some_and(|market| market.status == MarketStatus::Closed)
                        })
                })
                .map(|event| {
                    let markets = event
                        .markets
                        .iter()
                        .filter_map(|market| book.market(*market))
                        .map(|market| {
                            let selections =
                                market.selections.iter().filter_map(|selection| book.selection(*selection)).cloned();
                            (market.clone(), selections.collect())
                        })
                        .collect();
                    (event.clone(), markets)
                })
                .collect();
            let punters = book
                .players()
                .iter()
                .filter(|player| player.profile.is_none())
                .map(|player| player.id)
                .take(PUNTERS_MAX)
                .collect();
            (events, punters)
        })?;
        for (event, markets) in events {
            if self.fixtures.len() >= self.options.fixtures_active_max {
                break;
            }
            match self.recognise(&event, &markets, now) {
                Some(fixture) => {
                    tracing::info!(event = %fixture.event, name = %fixture.name, "simulation adopted a fixture");
                    self.fixtures.push(fixture);
                }
                None => tracing::debug!(event = %event.id, name = %event.name, "not a simulated fixture; left alone"),
            }
        }
        self.punters = punters;
        self.open_punters(engine)?;
        self.next_fixture_at = now;
        Ok(())
    }

    /// Rebuilds a fixture from the book, if its markets have a shape the simulation trades.
    fn recognise(&mut self, event: &Event, markets: &[(Market, Vec<Selection>)], now: u64) -> Option<Fixture> {
        let traded = |market: &Market, selections: &[Selection]| TradedMarket {
            id: market.id,
            selections: market.selections.clone(),
            prices: selections.iter().map(|selection| selection.price).collect(),
            suspended: event.state == EventState::InPlay && market.status == MarketStatus::Suspended,
            decided: market.status.is_resulted(),
            resulted: market.status.is_resulted(),
        };
        let kinds: Vec<(&str, usize)> =
            markets.iter().map(|(market, selections)| (market.kind.as_str(), selections.len())).collect();
        let probability =
            |selections: &[Selection], index: usize| pricing::implied_probability(selections[index].price);
        let model = match (event.sport.as_str(), kinds.as_slice()) {
            ("football", [("1x2", 3), ("over_under", 2), ("asian_handicap", 2)]) => {
                let (home, away) = event.name.split_once(" v ")?;
                let selections = &markets[0].1;
                let (home_probability, away_probability) = (probability(selections, 0), probability(selections, 2));
                let share = home_probability / (home_probability + away_probability);
                let mut football = Football {
                    home: home.to_string(),
                    away: away.to_string(),
                    base_rates: [(2.6 * share).max(0.2), (2.6 * (1.0 - share)).max(0.2)],
                    form: [0.0, 0.0],
                    score: [0, 0],
                    // Goals are drawn from here on, not for the minutes the server was down.
                    minute: football_minute(event.starts_at, now, self.options.match_minute_ms),
                    stoppage_minutes: self.rng.random_range(1..=5),
                };
                if event.state == EventState::Ended {
                    // The result was not recorded before the restart: play the match out now.
                    let rates = football.rates();
                    football.score = [poisson_draw(&mut self.rng, rates[0]), poisson_draw(&mut self.rng, rates[1])];
                }
                Model::Football(football)
            }
            ("tennis", [("winner", 2)]) => {
                let (first, second) = event.name.split_once(" v ")?;
                let selections = &markets[0].1;
                let first_probability =
                    probability(selections, 0) / (probability(selections, 0) + probability(selections, 1));
                Model::Tennis(Tennis {
                    players: [first.to_string(), second.to_string()],
                    logit: (first_probability / (1.0 - first_probability)).ln(),
                    length_minutes: self.rng.random_range(70..=140),
                    minute: 0.0,
                })
            }
            ("horse_racing", [("winner", _)]) if markets[0].0.each_way.is_some() => Model::Race(Race {
                strengths: markets[0]
                    .1
                    .iter()
                    .map(|selection| pricing::implied_probability(selection.price).ln())
                    .collect(),
            }),
            _ => return None,
        };
        let is_race = matches!(model, Model::Race(_));
        let in_running = event.state == EventState::InPlay || (is_race && now >= event.starts_at);
        let markets: Vec<TradedMarket> =
            markets.iter().map(|(market, selections)| traded(market, selections)).collect();
        let suspended = markets.iter().any(|market| market.suspended);
        Some(Fixture {
            event: event.id,
            name: event.name.clone(),
            starts_at: event.starts_at,
            in_running,
            resume_at: (suspended && !is_race).then_some(now),
            priced_minute: 0,
            markets,
            model,
            ended: event.state == EventState::Ended,
        })
    }

    /// One tick at `now`: new fixtures, kick-offs, goals, price moves, results, a punter's bet.
    /// An `Err` means the engine has stopped; business rejections are counted and skipped.
    pub fn step(&mut self, engine: &EngineHandle, now: u64) -> Result<(), EngineError> {
        self.replenish(engine, now)?;
        for index in 0..self.fixtures.len() {
            self.advance(engine, index, now)?;
        }
        self.fixtures.retain(|fixture| !(fixture.ended && fixture.markets.is_empty()));
        self.move_prices(engine, now)?;
        self.punt(engine, now)?;
        debug_assert!(self.fixtures.len() <= self.options.fixtures_active_max.max(1));
        Ok(())
    }

    fn replenish(&mut self, engine: &EngineHandle, now: u64) -> Result<(), EngineError> {
        if self.fixtures.len() >= self.options.fixtures_active_max || now < self.next_fixture_at {
            return Ok(());
        }
        self.next_fixture_at = now + self.options.fixture_interval_ms;
        let lead_time = self.rng.random_range(
            self.options.lead_time_ms_min..=self.options.lead_time_ms_max.max(self.options.lead_time_ms_min),
        );
        let starts_at = now + lead_time;
        let spec = match self.rng.random_range(0..10) {
            0..=5 => self.football_spec(),
            6..=7 => self.tennis_spec(),
            _ => {
                let course = RACECOURSES[self.rng.random_range(0..RACECOURSES.len())];
                Some(self.race_spec_at(course))
            }
        };
        match spec {
            Some(spec) => self.create_fixture(engine, spec, starts_at),
            None => Ok(()),
        }
    }

    fn busy(&self) -> Vec<&str> {
        self.fixtures.iter().flat_map(Fixture::players).collect()
    }

    fn pair(&mut self, pool: &[&str]) -> Option<[String; 2]> {
        for _ in 0..PAIRING_ATTEMPTS_MAX {
            let first = pool[self.rng.random_range(0..pool.len())];
            let second = pool[self.rng.random_range(0..pool.len())];
            let busy = self.busy();
            if first != second && !busy.contains(&first) && !busy.contains(&second) {
                return Some([first.to_string(), second.to_string()]);
            }
        }
        None
    }

    fn football_spec(&mut self) -> Option<FixtureSpec> {
        let (competition, teams) = FOOTBALL_LEAGUES[self.rng.random_range(0..FOOTBALL_LEAGUES.len())];
        let [home, away] = self.pair(teams)?;
        let rates = [1.45 * (0.25 * normal(&mut self.rng)).exp(), 1.15 * (0.25 * normal(&mut self.rng)).exp()];
        Some(FixtureSpec::Football { competition, home, away, rates })
    }

    fn tennis_spec(&mut self) -> Option<FixtureSpec> {
        let tournament = TENNIS_TOURNAMENTS[self.rng.random_range(0..TENNIS_TOURNAMENTS.len())];
        let players = self.pair(&TENNIS_PLAYERS)?;
        Some(FixtureSpec::Tennis { tournament, players, logit: 0.8 * normal(&mut self.rng) })
    }

    fn race_spec_at(&mut self, course: &'static str) -> FixtureSpec {
        let mut pool: Vec<&str> = HORSES.to_vec();
        let mut runners = Vec::with_capacity(RUNNERS);
        while runners.len() < RUNNERS && !pool.is_empty() {
            let horse = pool.swap_remove(self.rng.random_range(0..pool.len()));
            runners.push((horse.to_string(), 0.7 * normal(&mut self.rng)));
        }
        FixtureSpec::Race { course, runners }
    }

    fn create_fixture(&mut self, engine: &EngineHandle, spec: FixtureSpec, starts_at: u64) -> Result<(), EngineError> {
        let (name, sport, competition) = match &spec {
            FixtureSpec::Football { competition, home, away, .. } => {
                (format!("{home} v {away}"), "football", *competition)
            }
            FixtureSpec::Tennis { tournament, players, .. } => {
                (format!("{} v {}", players[0], players[1]), "tennis", *tournament)
            }
            FixtureSpec::Race { course, .. } => {
                (format!("{course} {}", clock_time(starts_at)), "horse_racing", *course)
            }
        };
        let created = self.submit(
            engine,
            Command::CreateEvent {
                name: name.clone(),
                sport: sport.into(),
                competition: competition.into(),
                starts_at,
            },
        )?;
        let Some(Ack::EventCreated(event)) = created else {
            tracing::warn!(%name, "simulation could not create a fixture");
            return Ok(());
        };
        let shape = |name: &str, kind: &'static str, selections: Vec<String>, each_way| MarketShape {
            name: name.to_string(),
            kind,
            selections,
            each_way,
        };
        let (model, shapes) = match spec {
            FixtureSpec::Football { home, away, rates, .. } => {
                let shapes = vec![
                    shape("Match result", "1x2", vec![home.clone(), "Draw".to_string(), away.clone()], None),
                    shape("Total goals 2.5", "over_under", vec!["Over 2.5".to_string(), "Under 2.5".to_string()], None),
                    shape(
                        "Asian handicap -0.25",
                        "asian_handicap",
                        vec![format!("{home} -0.25"), format!("{away} +0.25")],
                        None,
                    ),
                ];
                let football = Football {
                    home,
                    away,
                    base_rates: rates,
                    form: [0.0, 0.0],
                    score: [0, 0],
                    minute: 0.0,
                    stoppage_minutes: self.rng.random_range(1..=5),
                };
                (Model::Football(football), shapes)
            }
            FixtureSpec::Tennis { players, logit, .. } => {
                let shapes = vec![shape("Match winner", "winner", players.to_vec(), None)];
                let length_minutes = self.rng.random_range(70..=140);
                (Model::Tennis(Tennis { players, logit, length_minutes, minute: 0.0 }), shapes)
            }
            FixtureSpec::Race { runners, .. } => {
                let terms = EachWayTerms { places: EACH_WAY_PLACES, fraction: Ratio::new(1, 5).unwrap_or(Ratio::ONE) };
                let names = runners.iter().map(|(name, _)| name.clone()).collect();
                let strengths = runners.iter().map(|(_, strength)| *strength).collect();
                (Model::Race(Race { strengths }), vec![shape("Win or each way", "winner", names, Some(terms))])
            }
        };
        let mut fixture = Fixture {
            event,
            name: name.clone(),
            starts_at,
            in_running: false,
            resume_at: None,
            priced_minute: 0,
            markets: Vec::new(),
            model,
            ended: false,
        };
        let prices = fixture.prices(starts_at, self.options.match_minute_ms);
        let market_count = shapes.len();
        for (MarketShape { name: market_name, kind, selections, each_way }, prices) in shapes.into_iter().zip(prices) {
            let selections = selections
                .into_iter()
                .zip(prices.iter())
                .map(|(name, price)| NewSelection { name, price: *price })
                .collect();
            let created = self.submit(
                engine,
                Command::CreateMarket { event, name: market_name, kind: kind.into(), selections, each_way },
            )?;
            if let Some(Ack::MarketCreated { market, selections }) = created {
                fixture.markets.push(TradedMarket {
                    id: market,
                    selections,
                    prices,
                    suspended: false,
                    decided: false,
                    resulted: false,
                });
            }
        }
        if fixture.markets.len() != market_count {
            tracing::warn!(%event, %name, "simulation could not create every market; the fixture is left alone");
            return Ok(());
        }
        tracing::info!(%event, %name, sport, starts_at = %gateway::format_rfc3339(starts_at), "fixture created");
        self.stats.fixtures_created += 1;
        self.fixtures.push(fixture);
        Ok(())
    }

    fn advance(&mut self, engine: &EngineHandle, index: usize, now: u64) -> Result<(), EngineError> {
        if self.fixtures[index].ended {
            return self.finish(engine, index);
        }
        if !self.fixtures[index].in_running {
            if now >= self.fixtures[index].starts_at {
                self.kick_off(engine, index)?;
            }
            return Ok(());
        }
        if self.fixtures[index].resume_at.is_some_and(|at| now >= at) {
            self.resume(engine, index, now)?;
        }
        let (match_minute_ms, race_duration_ms) = (self.options.match_minute_ms, self.options.race_duration_ms);
        let fixture = &mut self.fixtures[index];
        let mut goal = None;
        let over = match &mut fixture.model {
            Model::Football(football) => {
                let minute = football_minute(fixture.starts_at, now, match_minute_ms);
                let elapsed = (minute - football.minute).max(0.0);
                football.minute = minute;
                let rates = football.rates();
                for (side, rate) in rates.iter().enumerate() {
                    if self.rng.random::<f64>() < rate * elapsed / FULL_TIME_MINUTES {
                        football.score[side] += 1;
                        goal = Some(side);
                    }
                }
                minute >= FULL_TIME_MINUTES + f64::from(football.stoppage_minutes)
            }
            Model::Tennis(tennis) => {
                tennis.minute = now.saturating_sub(fixture.starts_at) as f64 / match_minute_ms.max(1) as f64;
                // In play the match swings far more than before it.
                tennis.logit += 0.08 * normal(&mut self.rng);
                tennis.minute >= f64::from(tennis.length_minutes)
            }
            Model::Race(_) => now >= fixture.starts_at + race_duration_ms,
        };
        if over {
            return self.finish(engine, index);
        }
        if let Some(side) = goal {
            return self.goal(engine, index, side, now);
        }
        let minute = match &self.fixtures[index].model {
            Model::Football(football) => football.minute as u32,
            Model::Tennis(tennis) => tennis.minute as u32,
            Model::Race(_) => 0,
        };
        if minute > self.fixtures[index].priced_minute && self.fixtures[index].resume_at.is_none() {
            self.fixtures[index].priced_minute = minute;
            self.reprice(engine, index, now)?;
        }
        Ok(())
    }

    fn kick_off(&mut self, engine: &EngineHandle, index: usize) -> Result<(), EngineError> {
        let fixture = &self.fixtures[index];
        let (event, name) = (fixture.event, fixture.name.clone());
        if matches!(fixture.model, Model::Race(_)) {
            // Races are not traded in running: the market is suspended at the off.
            self.suspend(engine, index)?;
            tracing::info!(%event, %name, "they're off");
        } else {
            let bet_delay_seconds = self.options.bet_delay_seconds;
            self.submit(engine, Command::SetInPlay { event, bet_delay_seconds })?;
            tracing::info!(%event, %name, bet_delay_seconds, "kick-off: in play");
        }
        self.fixtures[index].in_running = true;
        self.stats.kick_offs += 1;
        Ok(())
    }

    /// Suspends every market of the fixture that is not suspended yet.
    fn suspend(&mut self, engine: &EngineHandle, index: usize) -> Result<(), EngineError> {
        let markets: Vec<MarketId> =
            self.fixtures[index].markets.iter().filter(|market| !market.suspended).map(|market| market.id).collect();
        for market in markets {
            self.submit(engine, Command::SetMarketStatus { market, action: MarketAction::Suspend })?;
        }
        for market in &mut self.fixtures[index].markets {
            market.suspended = true;
        }
        Ok(())
    }

    fn goal(&mut self, engine: &EngineHandle, index: usize, side: usize, now: u64) -> Result<(), EngineError> {
        self.suspend(engine, index)?;
        let fixture = &mut self.fixtures[index];
        fixture.resume_at = Some(now + self.options.goal_suspension_ms);
        if let Model::Football(football) = &fixture.model {
            let scorer = if side == 0 { &football.home } else { &football.away };
            tracing::info!(
                event = %fixture.event,
                name = %fixture.name,
                minute = football.minute as u32,
                score = %format!("{}-{}", football.score[0], football.score[1]),
                %scorer,
                "goal: markets suspended"
            );
            // Three goals decide the total: that market stays suspended until it is settled.
            if football.score[0] + football.score[1] >= 3 {
                if let Some(total) = fixture.markets.get_mut(1) {
                    total.decided = true;
                }
            }
        }
        self.stats.goals += 1;
        Ok(())
    }

    fn resume(&mut self, engine: &EngineHandle, index: usize, now: u64) -> Result<(), EngineError> {
        self.fixtures[index].resume_at = None;
        self.reprice(engine, index, now)?;
        let markets: Vec<MarketId> = self.fixtures[index]
            .markets
            .iter()
            .filter(|market| market.suspended && !market.decided)
            .map(|market| market.id)
            .collect();
        for market in markets {
            self.submit(engine, Command::SetMarketStatus { market, action: MarketAction::Resume })?;
        }
        for market in &mut self.fixtures[index].markets {
            market.suspended = market.decided;
        }
        Ok(())
    }

    /// Publishes the model's prices for every market whose prices moved on the ladder.
    fn reprice(&mut self, engine: &EngineHandle, index: usize, now: u64) -> Result<(), EngineError> {
        let prices = self.fixtures[index].prices(now, self.options.match_minute_ms);
        for (market_index, prices) in prices.into_iter().enumerate() {
            let Some(market) = self.fixtures[index].markets.get(market_index) else { continue };
            if market.decided || market.prices == prices {
                continue;
            }
            let moved: Vec<(SelectionId, Odds)> = market
                .selections
                .iter()
                .zip(prices.iter().zip(&market.prices))
                .filter(|(_, (new, old))| new != old)
                .map(|(selection, (new, _))| (*selection, *new))
                .collect();
            let market_id = market.id;
            if self.submit(engine, Command::SetPrices { market: market_id, prices: moved })?.is_some() {
                self.fixtures[index].markets[market_index].prices = prices;
                self.stats.price_updates += 1;
            }
        }
        Ok(())
    }

    /// The random walk: a few fixtures' models drift a little each tick and are repriced.
    fn move_prices(&mut self, engine: &EngineHandle, now: u64) -> Result<(), EngineError> {
        let movable: Vec<usize> = (0..self.fixtures.len())
            .filter(|&index| {
                let fixture = &self.fixtures[index];
                !fixture.ended
                    && fixture.resume_at.is_none()
                    && !(fixture.in_running && matches!(fixture.model, Model::Race(_)))
            })
            .collect();
        let moves = movable.len().min(PRICE_MOVES_PER_TICK_MAX);
        for _ in 0..moves {
            let index = movable[self.rng.random_range(0..movable.len())];
            match &mut self.fixtures[index].model {
                Model::Football(football) => {
                    for form in &mut football.form {
                        // Mean-reverting, so strengths wander but stay believable.
                        *form = 0.98 * *form + 0.03 * normal(&mut self.rng);
                    }
                }
                Model::Tennis(tennis) => tennis.logit += 0.03 * normal(&mut self.rng),
                Model::Race(race) => {
                    for strength in &mut race.strengths {
                        *strength += 0.04 * normal(&mut self.rng);
                    }
                }
            }
            self.reprice(engine, index, now)?;
        }
        Ok(())
    }

    /// Ends the event and settles its markets from the model's result.
    fn finish(&mut self, engine: &EngineHandle, index: usize) -> Result<(), EngineError> {
        let event = self.fixtures[index].event;
        self.submit(engine, Command::EndEvent { event })?;
        self.fixtures[index].ended = true;
        let fixture = &self.fixtures[index];
        let selections = |market: usize| fixture.markets.get(market).map(|market| market.selections.clone());
        let results: Vec<Vec<ResultRequest>> = match &fixture.model {
            Model::Football(football) => {
                let (Some(result), Some(total), Some(handicap)) = (selections(0), selections(1), selections(2)) else {
                    self.fixtures[index].markets.clear();
                    return Ok(());
                };
                tracing::info!(
                    %event,
                    name = %fixture.name,
                    score = %format!("{}-{}", football.score[0], football.score[1]),
                    "full time"
                );
                football_results(football.score, &result, &total, &handicap).to_vec()
            }
            Model::Tennis(tennis) => {
                let first_wins = self.rng.random::<f64>() < pricing::logistic(tennis.logit);
                let winner = usize::from(!first_wins);
                tracing::info!(%event, name = %fixture.name, winner = %tennis.players[winner], "game, set and match");
                let Some(players) = selections(0) else {
                    self.fixtures[index].markets.clear();
                    return Ok(());
                };
                vec![vec![result(players[winner], Outcome::Win)]]
            }
            Model::Race(race) => {
                let order = finishing_order(&mut self.rng, &race.strengths);
                let dead_heat = self.rng.random_range(0..10) == 0;
                let Some(runners) = selections(0) else {
                    self.fixtures[index].markets.clear();
                    return Ok(());
                };
                tracing::info!(%event, name = %fixture.name, dead_heat, "race result");
                vec![race_results(&order, &runners, dead_heat)]
            }
        };
        let markets: Vec<(MarketId, bool)> =
            self.fixtures[index].markets.iter().map(|market| (market.id, market.resulted)).collect();
        for ((market, resulted), results) in markets.into_iter().zip(results) {
            if resulted {
                continue;
            }
            if let Some(Ack::Settled { bets }) = self.submit(engine, Command::SettleMarket { market, results })? {
                tracing::info!(%market, bets, "market settled");
                self.stats.markets_settled += 1;
            }
        }
        self.fixtures[index].markets.clear();
        Ok(())
    }

    /// One simulated punter bets on a random open market at its current price.
    fn punt(&mut self, engine: &EngineHandle, now: u64) -> Result<(), EngineError> {
        if self.options.punter_bet_interval_ms == 0 || self.punters.is_empty() || now < self.next_bet_at {
            return Ok(());
        }
        self.next_bet_at = now + self.options.punter_bet_interval_ms;
        let open: Vec<(usize, usize)> = self
            .fixtures
            .iter()
            .enumerate()
            .filter(|(_, fixture)| !fixture.ended && fixture.resume_at.is_none())
            .flat_map(|(index, fixture)| {
                fixture
                    .markets
                    .iter()
                    .enumerate()
                    .filter(|(_, market)| !market.suspended)
                    .map(move |(market_index, _)| (index, market_index))
            })
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let (index, market_index) = open[self.rng.random_range(0..open.len())];
        let market = &self.fixtures[index].markets[market_index];
        let pick = self.rng.random_range(0..market.selections.len());
        let each_way = matches!(self.fixtures[index].model, Model::Race(_)) && self.rng.random_range(0..3) == 0;
        let account = self.punters[self.rng.random_range(0..self.punters.len())];
        let stake = Money::from_minor(self.rng.random_range(PUNTER_STAKE_MINOR.0..=PUNTER_STAKE_MINOR.1) / 100 * 100);
        let command = Command::PlaceBet(PlaceBet {
            account,
            kind: BetKind::Single,
            legs: vec![LegRequest { selection: market.selections[pick], price: market.prices[pick] }],
            stake,
            each_way,
            policy: PricePolicy::Any,
            idempotency: None,
        });
        match engine.submit((command, book::Origin::system("simulation"))) {
            Ok(Ok(_)) => self.stats.bets_placed += 1,
            Ok(Err(Rejection::InsufficientFunds)) => self.fund(engine, account)?,
            Ok(Err(rejection)) => {
                self.stats.rejections += 1;
                tracing::debug!(code = rejection.code(), "simulated bet rejected");
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }
}

/// The simulation running on its own thread.
pub struct SimulationHandle {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<SimulationStats>,
}

impl SimulationHandle {
    /// Stops the simulation after its current step and waits for it.
    pub fn stop(self) -> SimulationStats {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// Runs `simulation` on a thread of its own, one step every `tick_ms` of `clock`, until stopped
/// or until the engine stops.
pub fn spawn(
    mut simulation: Simulation,
    engine: EngineHandle,
    clock: Box<dyn Clock>,
) -> std::io::Result<SimulationHandle> {
    let (stop, stopped) = mpsc::channel::<()>();
    let tick = Duration::from_millis(simulation.options().tick_ms.max(1));
    let thread = std::thread::Builder::new().name("demo-simulation".to_string()).spawn(move || {
        loop {
            if let Err(error) = simulation.step(&engine, clock.now_ms()) {
                tracing::warn!(%error, "simulation stopped: the engine refused its commands");
                break;
            }
            match stopped.recv_timeout(tick) {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        simulation.stats()
    })?;
    Ok(SimulationHandle { stop, thread })
}
