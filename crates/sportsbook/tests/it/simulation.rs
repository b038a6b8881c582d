//! The demo simulation on a manual clock: fixtures kick off, go in play, end and are settled;
//! the catalog is replenished but never grows past its cap; the ledger stays exact; a restart
//! takes the catalog over. Plus the pure parts: results and the price ladder.

use book::{EventState, MarketStatus, Outcome, SelectionId};
use domain::{Odds, Ratio};
use engine::{Clock, EngineHandle, EngineOptions, ManualClock};
use sportsbook::pricing::{self, football_outlook, ladder};
use sportsbook::simulation::{football_results, race_results, Simulation, SimulationOptions};

/// 2025-06-15T12:00:00Z
const T0: u64 = 1_749_988_800_000;

fn open(dir: &std::path::Path, clock: &ManualClock) -> EngineHandle {
    engine::open_data_dir(dir, book::Config::default(), Box::new(clock.clone()), EngineOptions::default())
        .expect("open the data directory")
        .0
}

fn options() -> SimulationOptions {
    SimulationOptions {
        seed: 42,
        tick_ms: 500,
        // A match in under a minute of simulated time keeps the test short.
        match_minute_ms: 400,
        race_duration_ms: 20_000,
        fixtures_active_max: 8,
        ..SimulationOptions::default()
    }
}

/// Steps the simulation for `millis` of simulated time; returns the most fixtures it held.
fn run_for(simulation: &mut Simulation, engine: &EngineHandle, clock: &ManualClock, millis: u64) -> usize {
    let tick = simulation.options().tick_ms;
    let mut most = 0;
    for _ in 0..millis / tick {
        clock.advance(tick);
        simulation.step(engine, clock.now_ms()).expect("the engine runs");
        most = most.max(simulation.fixtures_active());
    }
    most
}

#[test]
fn the_simulation_plays_fixtures_through_to_settlement_within_its_bounds() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    let mut simulation = Simulation::new(options());
    simulation.seed(&engine, clock.now_ms()).expect("seed");
    let seeded = simulation.fixtures_active();
    assert_eq!(seeded, 6);
    let most = run_for(&mut simulation, &engine, &clock, 16 * 60_000);
    let stats = simulation.stats();
    assert!(most <= 8, "{most} fixtures at once");
    assert!(stats.kick_offs >= 6, "{stats:?}");
    assert!(stats.goals > 0, "{stats:?}");
    assert!(stats.price_updates > 100, "{stats:?}");
    assert!(stats.fixtures_created > 6, "the catalog is replenished: {stats:?}");
    assert!(stats.bets_placed > 50, "{stats:?}");
    assert!(stats.markets_settled >= 12, "{stats:?}");

    let (checked, summary) = engine
        .read(|book| {
            let ended: Vec<_> = book.events().iter().filter(|event| event.state == EventState::Ended).collect();
            let unsettled: Vec<String> = ended
                .iter()
                .flat_map(|event| event.markets.iter())
                .filter_map(|market| book.market(*market))
                .filter(|market| market.status != MarketStatus::Settled)
                .map(|market| market.id.to_string())
                .collect();
            let race_places = book
                .markets()
                .iter()
                .filter(|market| market.each_way.is_some() && market.status == MarketStatus::Settled)
                .flat_map(|market| market.results.iter())
                .filter(|result| result.outcome == Outcome::Place)
                .count();
            let half_results = book
                .markets()
                .iter()
                .filter(|market| market.kind == "asian_handicap" && market.status == MarketStatus::Settled)
                .filter(|market| market.results.iter().any(|result| result.void_factor == Ratio::HALF))
                .count();
            let settled_bets =
                book.bets().iter().filter(|bet| !matches!(bet.status.as_str(), "accepted" | "pending")).count();
            let in_play_seen = book.events().iter().any(|event| event.state != EventState::Scheduled);
            (book.check_invariants(), (ended.len(), unsettled, race_places, half_results, settled_bets, in_play_seen))
        })
        .expect("read");
    checked.expect("the book's invariants hold");
    let (ended, unsettled, race_places, half_results, settled_bets, in_play_seen) = summary;
    assert!(ended >= 6, "{ended} events ended");
    assert!(unsettled.is_empty(), "ended events with unsettled markets: {unsettled:?}");
    assert!(race_places >= 2, "each-way place results: {race_places}");
    // With this seed at least one match is drawn: the quarter line settles by halves.
    assert!(half_results >= 1, "no Asian handicap settled on a draw");
    assert!(settled_bets > 0);
    assert!(in_play_seen);
    engine.shutdown();
}

#[test]
fn a_restarted_simulation_takes_over_the_catalog_and_finishes_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    let mut simulation = Simulation::new(options());
    simulation.seed(&engine, clock.now_ms()).expect("seed");
    // Stop with matches in play.
    run_for(&mut simulation, &engine, &clock, 90_000);
    let active = simulation.events();
    engine.shutdown();

    let engine = open(dir.path(), &clock);
    let mut resumed = Simulation::new(SimulationOptions { seed: 43, ..options() });
    resumed.adopt(&engine, clock.now_ms()).expect("adopt");
    assert_eq!(resumed.events(), active, "every simulated fixture is taken over");
    run_for(&mut resumed, &engine, &clock, 12 * 60_000);
    let states = engine
        .read(move |book| active.iter().map(|event| book.events()[event.index()].state).collect::<Vec<_>>())
        .expect("read");
    assert!(states.iter().all(|state| *state == EventState::Ended), "{states:?}");
    engine.shutdown();
}

fn ids(first: u64, count: u64) -> Vec<SelectionId> {
    (first..first + count).map(SelectionId).collect()
}

#[test]
fn football_results_settle_the_quarter_line_by_halves_on_a_draw() {
    let (result, total, handicap) = (ids(1, 3), ids(4, 2), ids(6, 2));
    let [one_x_two, over_under, asian] = football_results([1, 1], &result, &total, &handicap);
    assert_eq!(one_x_two.len(), 1);
    assert_eq!((one_x_two[0].selection, one_x_two[0].outcome), (SelectionId(2), Outcome::Win));
    assert_eq!((over_under[0].selection, over_under[0].outcome), (SelectionId(5), Outcome::Win), "1-1 is under 2.5");
    let halves: Vec<_> = asian.iter().map(|result| (result.selection, result.outcome, result.void_factor)).collect();
    assert_eq!(
        halves,
        vec![(SelectionId(6), Outcome::Lose, Some(Ratio::HALF)), (SelectionId(7), Outcome::Win, Some(Ratio::HALF))]
    );

    let [one_x_two, over_under, asian] = football_results([2, 1], &result, &total, &handicap);
    assert_eq!(one_x_two[0].selection, SelectionId(1));
    assert_eq!(over_under[0].selection, SelectionId(4), "three goals are over 2.5");
    assert_eq!(asian.len(), 1);
    assert_eq!((asian[0].selection, asian[0].void_factor), (SelectionId(6), None));

    let [one_x_two, _, asian] = football_results([0, 3], &result, &total, &handicap);
    assert_eq!(one_x_two[0].selection, SelectionId(3));
    assert_eq!(asian[0].selection, SelectionId(7));
}

#[test]
fn race_results_pay_three_places_and_share_a_dead_heat_for_third() {
    let runners = ids(10, 8);
    let order = [4, 2, 7, 0, 1, 3, 5, 6];
    let results = race_results(&order, &runners, false);
    let summary: Vec<_> = results.iter().map(|result| (result.selection.0, result.outcome, result.dead_heat)).collect();
    assert_eq!(summary, vec![(14, Outcome::Win, None), (12, Outcome::Place, None), (17, Outcome::Place, None)]);
    let results = race_results(&order, &runners, true);
    let summary: Vec<_> = results.iter().map(|result| (result.selection.0, result.outcome, result.dead_heat)).collect();
    assert_eq!(
        summary,
        vec![
            (14, Outcome::Win, None),
            (12, Outcome::Place, None),
            (17, Outcome::Place, Some(Ratio::HALF)),
            (10, Outcome::Place, Some(Ratio::HALF)),
        ]
    );
}

#[test]
fn prices_sit_on_the_ladder_and_carry_the_margin() {
    let decimal = |odds: Odds| odds.decimal();
    assert_eq!(decimal(ladder(1.013)), "1.01");
    assert_eq!(decimal(ladder(0.5)), "1.01");
    assert_eq!(decimal(ladder(2.51)), "2.52");
    assert_eq!(decimal(ladder(3.33)), "3.35");
    assert_eq!(decimal(ladder(7.1)), "7.20");
    assert_eq!(decimal(ladder(f64::INFINITY)), "1.01");
    assert_eq!(decimal(ladder(5_000.0)), "1000.00");

    let outlook = football_outlook([1.5, 1.1], 1.0, [0, 0]);
    let sum = outlook.home + outlook.draw + outlook.away;
    assert!((sum - 1.0).abs() < 1e-9, "{outlook:?}");
    assert!(outlook.home > outlook.away);
    // Late on with a two-goal lead the result is nearly certain.
    let late = football_outlook([1.5, 1.1], 0.02, [2, 0]);
    assert!(late.home > 0.99 && late.over < 0.1, "{late:?}");
    for prices in pricing::football_prices(outlook) {
        let book: f64 = prices.iter().map(|odds| pricing::implied_probability(*odds)).sum();
        assert!(book > 1.0 && book < 1.12, "overround {book} of {prices:?}");
    }
}
