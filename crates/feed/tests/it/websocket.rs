//! The supervisor over real WebSocket connections to simulated providers: failover from a
//! killed primary to the backup, a silent feed suspending its markets until a recovery
//! snapshot reopens them, and duplicated and reordered messages leaving the newest prices.

use std::time::Duration;

use book::{MarketStatus, Rejection, StaleMode};
use feed::simulator::{Chaos, FeedSimulator, SimulatorConfig};
use feed::transport::{follow_websocket, WebSocketProvider};
use feed::ProviderSettings;

use crate::support::{single, wall_ms, Stack};

const STALE_AFTER: Duration = Duration::from_millis(600);

fn settings() -> ProviderSettings {
    ProviderSettings { stale_after: STALE_AFTER, on_stale: StaleMode::Suspend }
}

async fn provider() -> (WebSocketProvider, tokio::sync::mpsc::Receiver<feed::transport::RecoveryRequest>) {
    WebSocketProvider::bind("127.0.0.1:0".parse().expect("address")).await.expect("bind a provider")
}

/// Every market of the simulator's fixtures is in the book.
async fn until_markets(stack: &Stack, simulator: &FeedSimulator) {
    let markets = simulator.markets();
    let provider = simulator.provider().to_string();
    stack
        .until("markets created", move |book| {
            markets.iter().all(|(event, market)| book.feed().market(&provider, event, market).is_some())
        })
        .await;
}

/// The book shows the simulator's current prices.
async fn until_prices(stack: &Stack, simulator: &FeedSimulator) {
    let prices = simulator.prices();
    let provider = simulator.provider().to_string();
    stack
        .until("prices current", move |book| {
            prices.iter().all(|(event, market, outcome, price)| {
                let feed = book.feed();
                feed.market(&provider, event, market)
                    .and_then(|id| feed.selection(id, outcome))
                    .and_then(|selection| book.selection(selection))
                    .is_some_and(|selection| selection.price == *price)
            })
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_over_to_the_backup() {
    let stack = Stack::start(settings());
    let (primary, _) = provider().await;
    let (backup, mut backup_recoveries) = provider().await;
    stack.hub.configure("sim", settings());
    let sources = [
        tokio::spawn(follow_websocket(stack.hub.add_source("sim", "primary"), primary.url())),
        tokio::spawn(follow_websocket(stack.hub.add_source("sim", "backup"), backup.url())),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut simulator = FeedSimulator::new(SimulatorConfig::new("sim", 3, 11));
    let opening = simulator.start(wall_ms());
    primary.publish(&opening);
    backup.publish(&opening);
    until_markets(&stack, &simulator).await;
    assert_eq!(stack.hub.providers()[0].active_source, "primary");

    primary.kill();
    // The backup keeps sending heartbeats and prices; the primary is silent.
    for _ in 0..20 {
        backup.alive("sim", wall_ms());
        if let Some(message) = simulator.price_change(wall_ms()) {
            backup.publish(&[message]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_prices(&stack, &simulator).await;
    let view = &stack.hub.providers()[0];
    assert_eq!((view.active_source.as_str(), view.stale), ("backup", false));
    let recovery =
        tokio::time::timeout(Duration::from_secs(5), backup_recoveries.recv()).await.expect("a recovery request");
    assert!(recovery.is_some(), "the backup is asked for a recovery when it takes over");
    let failovers = stack
        .hub
        .metrics()
        .switches
        .get_or_create(&feed::metrics::SwitchLabel { provider: "sim".into(), kind: "failover".into() })
        .get();
    assert_eq!(failovers, 1);
    for source in sources {
        source.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_feed_suspends_its_markets_and_a_recovery_reopens_them() {
    let stack = Stack::start(settings());
    let (primary, mut recoveries) = provider().await;
    let source = tokio::spawn(follow_websocket(stack.hub.add_source("sim", "primary"), primary.url()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut simulator = FeedSimulator::new(SimulatorConfig::new("sim", 2, 5));
    primary.publish(&simulator.start(wall_ms()));
    until_markets(&stack, &simulator).await;
    let player = stack.funded_player();
    let (event, market) = simulator.markets()[0].clone();
    let (selection, price) = stack.read(move |book| {
        let market = book.feed().market("sim", &event, &market).expect("market");
        let selection = book.market(market).expect("market").selections[0];
        (selection, book.selection(selection).expect("selection").price)
    });
    let bet = move || single(player, selection, price, 100);

    // Silence: no heartbeats, no messages.
    stack
        .until("markets suspended", move |book| {
            book.market(book.selection(selection).expect("s").market).expect("m").status == MarketStatus::Suspended
        })
        .await;
    assert_eq!(stack.hub.stale_providers(), vec!["sim".to_string()]);
    assert_eq!(stack.submit(bet()), Err(Rejection::MarketSuspended));

    // The provider is back: heartbeats make it fresh, the hub asks for a recovery, and the
    // snapshot reopens the markets.
    while recoveries.try_recv().is_ok() {}
    primary.alive("sim", wall_ms());
    let request =
        tokio::time::timeout(Duration::from_secs(5), recoveries.recv()).await.expect("recovery request").expect("open");
    assert!(request.request_id > 0);
    primary.publish(&simulator.snapshot(wall_ms()));
    for _ in 0..10 {
        primary.alive("sim", wall_ms());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack
        .until("markets reopened", move |book| {
            book.market(book.selection(selection).expect("s").market).expect("m").status == MarketStatus::Open
        })
        .await;
    assert!(matches!(stack.submit(bet()), Ok(book::Ack::BetPlaced { .. })));
    assert!(stack.hub.stale_providers().is_empty());
    source.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_messages_leave_the_newest_prices() {
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend });
    let (primary, _) = provider().await;
    let source = tokio::spawn(follow_websocket(stack.hub.add_source("sim", "primary"), primary.url()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut config = SimulatorConfig::new("sim", 2, 9);
    config.chaos = Chaos { drop: 0.0, duplicate: 0.2, reorder: 0.3, delay: 0.1 };
    let mut simulator = FeedSimulator::new(config);
    primary.publish(&simulator.start(wall_ms()));
    until_markets(&stack, &simulator).await;
    let mut sent = 0;
    for round in 0..30 {
        let batch: Vec<_> = (0..10).filter_map(|_| simulator.price_change(wall_ms() + round)).collect();
        sent += batch.len();
        let disordered = simulator.disorder(batch);
        primary.publish(&disordered);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Flush a message the reordering may still hold.
    primary.publish(&simulator.disorder(Vec::new()));
    let last = simulator.price_change(wall_ms() + 1_000).expect("a price change");
    primary.publish(&[last]);
    until_prices(&stack, &simulator).await;
    let counts = |outcome: &str| {
        stack
            .hub
            .metrics()
            .messages
            .get_or_create(&feed::metrics::OutcomeLabel { provider: "sim".into(), outcome: outcome.into() })
            .get()
    };
    assert!(sent > 250);
    assert!(counts("duplicate") > 0, "duplicates were recognised");
    source.abort();
}
