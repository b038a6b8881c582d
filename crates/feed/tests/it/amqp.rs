//! The UOF-style adapter against the real RabbitMQ on 127.0.0.1:5672 (guest/guest; it runs on
//! every machine of this project, and these tests fail, naming it, when it does not).

use std::time::Duration;

use book::{Ack, BetStatus, MarketStatus, Rejection, StaleMode};
use feed::transport::{follow_amqp, AmqpProvider, RecoveryRequest};
use feed::ProviderSettings;
use tokio::sync::mpsc::Receiver;

use crate::support::{single, wall_ms, Stack};

const RABBITMQ: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

async fn provider(exchange: &str) -> (AmqpProvider, Receiver<RecoveryRequest>) {
    AmqpProvider::connect(RABBITMQ, exchange, 1).await.unwrap_or_else(|error| {
        panic!("RabbitMQ must run on 127.0.0.1:5672 with guest/guest for the UOF adapter tests: {error}")
    })
}

fn exchange(name: &str) -> String {
    format!("uof-test-{name}-{}-{}", std::process::id(), wall_ms())
}

struct Match {
    sequence: u64,
}

impl Match {
    fn next(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }
}

async fn send(provider: &AmqpProvider, routing: &str, xml: String) {
    provider.send(routing, &xml).await.expect("publish");
}

/// A player with money, and a bet on the home outcome of `sr:match:1`'s 1X2.
fn bet_on_home(stack: &Stack) -> (book::AccountId, book::BetId) {
    let player = stack.funded_player();
    let (selection, price) = stack.read(|book| {
        let market = book.feed().market("uof", "sr:match:1", "1").expect("market");
        let selection = book.feed().selection(market, "1").expect("home");
        (selection, book.selection(selection).expect("selection").price)
    });
    let reply = stack.submit(single(player, selection, price, 1_000));
    let Ok(Ack::BetPlaced { bet, status: BetStatus::Accepted }) = reply else { panic!("bet {reply:?}") };
    (player, bet)
}

fn odds_change(sequence: u64, home: &str, status: &str) -> String {
    format!(
        r#"<odds_change product="1" event_id="sr:match:1" timestamp="{}" sequence="{sequence}"><odds>
        <market id="1" status="{status}"><outcome id="1" odds="{home}" active="1"/><outcome id="2" odds="3.4" active="1"/>
        <outcome id="3" odds="3.1" active="1"/></market></odds></odds_change>"#,
        wall_ms()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uof_odds_bet_stop_settlement_and_rollback_over_rabbitmq() {
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend });
    let exchange = exchange("flow");
    let (provider, mut recoveries) = provider(&exchange).await;
    let source =
        tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 1, 5));
    // On connecting, the adapter asks the producer for a recovery.
    let request =
        tokio::time::timeout(Duration::from_secs(10), recoveries.recv()).await.expect("a recovery request on connect");
    assert!(request.is_some());
    let mut game = Match { sequence: 0 };

    let sequence = game.next();
    send(&provider, "hi.-.live.fixture_change.1.sr:match.1", format!(
        r#"<fixture_change product="1" event_id="sr:match:1" timestamp="{}" sequence="{sequence}" start_time="{}" name="Derby" sport="football"/>"#,
        wall_ms(),
        wall_ms() + 3_600_000
    ))
    .await;
    send(&provider, "hi.-.live.odds_change.1.sr:match.1", odds_change(game.next(), "2.10", "1")).await;
    stack.until("market priced", |book| book.feed().market("uof", "sr:match:1", "1").is_some()).await;
    let name =
        stack.read(|book| book.events()[book.feed().event("uof", "sr:match:1").expect("event").index()].name.clone());
    assert_eq!(name, "Derby");
    let (player, bet) = bet_on_home(&stack);

    // A bet stop blocks bets at once.
    let sequence = game.next();
    send(
        &provider,
        "hi.-.live.bet_stop.1.sr:match.1",
        format!(
            r#"<bet_stop product="1" event_id="sr:match:1" timestamp="{}" sequence="{sequence}" groups="all"/>"#,
            wall_ms()
        ),
    )
    .await;
    stack
        .until("suspended", |book| {
            book.market(book.feed().market("uof", "sr:match:1", "1").expect("m")).expect("m").status
                == MarketStatus::Suspended
        })
        .await;
    let selection = stack
        .read(|book| book.feed().selection(book.feed().market("uof", "sr:match:1", "1").expect("m"), "1").expect("s"));
    let price = stack.read(move |book| book.selection(selection).expect("s").price);
    let refused = stack.submit(single(player, selection, price, 100));
    assert_eq!(refused, Err(Rejection::MarketSuspended));

    // Settlement: home wins; the bet pays 10.00 × 2.10.
    let before = stack.read(move |book| book.wallet(player).expect("wallet").balance.minor());
    let sequence = game.next();
    send(&provider, "hi.-.live.bet_settlement.1.sr:match.1", format!(
        r#"<bet_settlement product="1" event_id="sr:match:1" timestamp="{}" sequence="{sequence}" certainty="2"><outcomes>
        <market id="1"><outcome id="1" result="1"/><outcome id="2" result="0"/><outcome id="3" result="0"/></market>
        </outcomes></bet_settlement>"#,
        wall_ms()
    ))
    .await;
    stack.until("settled", move |book| book.bet(bet).expect("bet").status == BetStatus::Won).await;
    assert_eq!(stack.read(move |book| book.wallet(player).expect("wallet").balance.minor()), before + 2_100);

    // Rollback: the bet is open again and the payout is taken back exactly.
    let sequence = game.next();
    send(&provider, "hi.-.live.rollback_bet_settlement.1.sr:match.1", format!(
        r#"<rollback_bet_settlement product="1" event_id="sr:match:1" timestamp="{}" sequence="{sequence}"><market id="1"/></rollback_bet_settlement>"#,
        wall_ms()
    ))
    .await;
    stack.until("rolled back", move |book| book.bet(bet).expect("bet").status == BetStatus::Accepted).await;
    assert_eq!(stack.read(move |book| book.wallet(player).expect("wallet").balance.minor()), before);

    // The same settlement delivered twice (a redelivery) applies once.
    let sequence = game.next();
    let settle = format!(
        r#"<bet_settlement product="1" event_id="sr:match:1" timestamp="{}" sequence="{sequence}" certainty="2"><outcomes>
        <market id="1"><outcome id="1" result="0"/><outcome id="2" result="1"/><outcome id="3" result="0"/></market>
        </outcomes></bet_settlement>"#,
        wall_ms()
    );
    send(&provider, "hi.-.live.bet_settlement.1.sr:match.1", settle.clone()).await;
    send(&provider, "hi.-.live.bet_settlement.1.sr:match.1", settle).await;
    stack.until("lost", move |book| book.bet(bet).expect("bet").status == BetStatus::Lost).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let duplicates = stack
        .hub
        .metrics()
        .messages
        .get_or_create(&feed::metrics::OutcomeLabel { provider: "uof".into(), outcome: "duplicate".into() })
        .get();
    assert_eq!(duplicates, 1);
    assert_eq!(stack.read(move |book| book.wallet(player).expect("wallet").balance.minor()), before);
    source.abort();
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_stops_sending_alive_is_down_until_its_recovery_completes() {
    let stack =
        Stack::start(ProviderSettings { stale_after: Duration::from_millis(800), on_stale: StaleMode::Suspend });
    let exchange = exchange("alive");
    let (provider, mut recoveries) = provider(&exchange).await;
    let source =
        tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 1, 5));
    tokio::time::timeout(Duration::from_secs(10), recoveries.recv()).await.expect("a recovery request on connect");
    let mut game = Match { sequence: 0 };
    send(&provider, "hi.-.live.odds_change.1.sr:match.1", odds_change(game.next(), "2.10", "1")).await;
    provider.alive(wall_ms(), true).await.expect("alive");
    stack.until("market priced", |book| book.feed().market("uof", "sr:match:1", "1").is_some()).await;
    let market = stack.read(|book| book.feed().market("uof", "sr:match:1", "1").expect("m"));
    // No more alive messages: the producer is down and its markets are suspended.
    stack.until("suspended", move |book| book.market(market).expect("m").status == MarketStatus::Suspended).await;
    assert_eq!(stack.hub.stale_providers(), vec!["uof".to_string()]);
    // It comes back: alive again, a recovery is requested, the snapshot reopens the market.
    while recoveries.try_recv().is_ok() {}
    provider.alive(wall_ms(), true).await.expect("alive");
    let request =
        tokio::time::timeout(Duration::from_secs(10), recoveries.recv()).await.expect("recovery").expect("open");
    send(&provider, "hi.-.live.odds_change.1.sr:match.1", odds_change(game.next(), "2.20", "1")).await;
    let sequence = game.next();
    send(
        &provider,
        "-.-.-.snapshot_complete.-.-.-",
        format!(
            r#"<snapshot_complete product="1" request_id="{}" timestamp="{}" sequence="{sequence}"/>"#,
            request.request_id,
            wall_ms()
        ),
    )
    .await;
    for _ in 0..5 {
        provider.alive(wall_ms(), true).await.expect("alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.until("reopened", move |book| book.market(market).expect("m").status == MarketStatus::Open).await;
    let home = stack
        .read(move |book| book.selection(book.market(market).expect("m").selections[0]).expect("s").price.decimal());
    assert_eq!(home, "2.20");
    source.abort();
    provider.close().await;
}
