//! The Unified Odds Feed adapter against the real RabbitMQ on 127.0.0.1:5672 (guest/guest; it
//! runs on every machine of this project, and these tests fail, naming it, when it does not).
//! Every message is shaped as the provider's schema has it (no sequence attribute) and
//! published under a real routing key to a durable topic exchange the adapter never declares.

use std::time::Duration;

use book::{Ack, BetStatus, FeedItem, FeedMessage, MarketStatus, Rejection, StaleMode};
use std::sync::Arc;

use feed::names::{MarketDescriptions, Namer};
use feed::provider_api::ProviderApi;
use feed::transport::{follow_amqp, AmqpProvider, RecoveryRequest};
use feed::uof::UofNames;
use feed::uof_api::{ApiSettings, UofApi};
use feed::{ProviderSettings, UofSettings};
use tokio::sync::mpsc::Receiver;

use crate::support::{single, wall_ms, Stack};

pub(crate) const RABBITMQ: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub(crate) const EVENT: &str = "sr:match:1";

pub(crate) const TOKEN: &str = "stand-in-token";

/// The provider: its durable exchange on RabbitMQ and its HTTP API (the stand-in that takes
/// recovery requests), with the hub's provider `uof` configured to recover through it and to
/// name markets from the bundled descriptions.
pub(crate) async fn provider(
    stack: &Stack,
    exchange: &str,
    product: u32,
) -> (AmqpProvider, ProviderApi, Receiver<RecoveryRequest>) {
    provider_at(stack, RABBITMQ, exchange, product).await
}

/// `provider` on the broker (and virtual host) of `url`.
pub(crate) async fn provider_at(
    stack: &Stack,
    url: &str,
    exchange: &str,
    product: u32,
) -> (AmqpProvider, ProviderApi, Receiver<RecoveryRequest>) {
    provider_listing(stack, url, exchange, product, feed::provider_api::default_producers()).await
}

/// The live (1) and pre-match (3) producers, both active, as the stand-in lists them.
pub(crate) fn live_and_prematch() -> Vec<feed::producers::ProducerDescription> {
    let mut producers = feed::provider_api::default_producers();
    producers.push(feed::producers::ProducerDescription {
        id: 3,
        name: "Ctrl".to_string(),
        description: "Betradar Ctrl".to_string(),
        api_url: "http://127.0.0.1/v1/pre/".to_string(),
        active: true,
        scope: "prematch".to_string(),
        stateful_recovery_window_in_minutes: Some(4320),
    });
    producers
}

/// `provider_at` with a stand-in whose producers list is `producers`.
pub(crate) async fn provider_listing(
    stack: &Stack,
    url: &str,
    exchange: &str,
    product: u32,
    producers: Vec<feed::producers::ProducerDescription>,
) -> (AmqpProvider, ProviderApi, Receiver<RecoveryRequest>) {
    let amqp = AmqpProvider::connect(url, exchange, product).await.unwrap_or_else(|error| {
        panic!("RabbitMQ must run on 127.0.0.1:5672 with guest/guest for the UOF adapter tests: {error}")
    });
    let (api, requests) =
        ProviderApi::bind("127.0.0.1:0".parse().expect("address"), TOKEN).await.expect("provider API");
    api.set_producers(Some(producers));
    let client = UofApi::new(ApiSettings::new(api.base_url(), TOKEN)).expect("API settings");
    stack.hub.configure_uof(
        "uof",
        UofSettings {
            api: Some(client),
            names: Some(Arc::new(UofNames::new(Namer::new(MarketDescriptions::bundled())))),
            ..UofSettings::default()
        },
    );
    (amqp, api, requests)
}

pub(crate) async fn alive_of(provider: &AmqpProvider, product: u32) {
    let xml = format!(r#"<alive product="{product}" timestamp="{}" subscribed="1"/>"#, wall_ms());
    send(provider, "-.-.-.alive.-.-.-.-", xml).await;
}

/// Brings producers up as the provider's SDKs do: each one heard of (or listed active by the
/// provider's producers list) asks the provider's API for a recovery, and is up once the
/// `snapshot_complete` of that request arrives. The stand-in's queue does not say whose request
/// it is, so each request's `snapshot_complete` is sent for every product still down (only the
/// producer whose request it is takes it). Returns the requests, in the order they came.
pub(crate) async fn recover(
    stack: &Stack,
    provider: &AmqpProvider,
    recoveries: &mut Receiver<RecoveryRequest>,
    products: &[u32],
) -> Vec<RecoveryRequest> {
    let mut requests = Vec::new();
    let up = |product: u32| {
        let view = stack.hub.providers().into_iter().find(|view| view.provider == "uof").expect("uof");
        view.producers.iter().any(|p| p.product == product && !p.down)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let down: Vec<u32> = products.iter().copied().filter(|product| !up(*product)).collect();
        if down.is_empty() {
            return requests;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "producers never up: {:?}",
            stack.hub.providers().into_iter().find(|view| view.provider == "uof")
        );
        // Alive until the adapter is bound and the producer asks for its recovery.
        for product in &down {
            alive_of(provider, *product).await;
        }
        if let Ok(Some(request)) = tokio::time::timeout(Duration::from_millis(300), recoveries.recv()).await {
            for product in &down {
                send(
                    provider,
                    "-.-.-.snapshot_complete.-.-.-.-",
                    format!(
                        r#"<snapshot_complete request_id="{}" product="{product}" timestamp="{}"/>"#,
                        request.request_id,
                        wall_ms()
                    ),
                )
                .await;
            }
            requests.push(request);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn exchange(name: &str) -> String {
    format!("uof-test-{name}-{}-{}", std::process::id(), wall_ms())
}

pub(crate) async fn send(provider: &AmqpProvider, routing: &str, xml: String) {
    provider.send(routing, &xml).await.expect("publish");
}

pub(crate) fn live(kind: &str) -> String {
    format!("hi.-.live.{kind}.1.sr:match.1.-")
}

pub(crate) fn prematch(kind: &str) -> String {
    format!("lo.pre.-.{kind}.1.sr:match.1.-")
}

pub(crate) fn market_id(book: &book::Book, key: &str) -> book::MarketId {
    book.feed().market("uof", EVENT, key).expect("market")
}

pub(crate) fn status(stack: &Stack, key: &'static str) -> MarketStatus {
    stack.read(move |book| book.market(market_id(book, key)).expect("m").status)
}

/// A player with money, and a bet on outcome `outcome` of market 1.
pub(crate) fn bet_on(stack: &Stack, outcome: &'static str) -> (book::AccountId, book::BetId) {
    let player = stack.funded_player();
    let (selection, price) = stack.read(move |book| {
        let selection = book.feed().selection(market_id(book, "1"), outcome).expect("outcome");
        (selection, book.selection(selection).expect("selection").price)
    });
    let reply = stack.submit(single(player, selection, price, 1_000));
    let Ok(Ack::BetPlaced { bet, status: BetStatus::Accepted }) = reply else { panic!("bet {reply:?}") };
    (player, bet)
}

pub(crate) fn odds_change(product: u32, home: &str, status: &str) -> String {
    format!(
        r#"<odds_change product="{product}" event_id="{EVENT}" timestamp="{}"><sport_event_status status="0" match_status="0"/><odds>
        <market id="1" status="{status}"><market_metadata next_betstop="{}"/><outcome id="1" odds="{home}" active="1"/><outcome id="2" odds="3.4" active="1"/>
        <outcome id="3" active="1"/></market></odds></odds_change>"#,
        wall_ms(),
        wall_ms() + 60_000
    )
}

pub(crate) fn balance(stack: &Stack, player: book::AccountId) -> i64 {
    stack.read(move |book| book.wallet(player).expect("wallet").balance.minor())
}

pub(crate) fn refusals(stack: &Stack, reason: &str) -> u64 {
    stack.hub.metrics().refusals_of("uof", reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_type_and_market_status_over_rabbitmq() {
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend });
    let exchange = exchange("flow");
    // The provider's exchange exists (durable) before the adapter binds to it.
    let (provider, _api, mut recoveries) = provider(&stack, &exchange, 3).await;
    let source = tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 5));
    // Each producer heard of asks the provider's API for a recovery.
    recover(&stack, &provider, &mut recoveries, &[3, 1]).await;

    // fixture_change and a pre-match odds_change (product 3) whose outcome 3 has no odds yet.
    send(
        &provider,
        &prematch("fixture_change"),
        format!(
            r#"<fixture_change product="3" event_id="{EVENT}" timestamp="{}" change_type="1" start_time="{}"/>"#,
            wall_ms(),
            wall_ms() + 3_600_000
        ),
    )
    .await;
    send(&provider, &prematch("odds_change"), odds_change(3, "2.10", "1")).await;
    stack.until("market priced", |book| book.feed().market("uof", EVENT, "1").is_some()).await;
    assert_eq!(stack.read(|book| book.feed().selection(market_id(book, "1"), "3")), None);
    assert_eq!(refusals(&stack, "book_selection_unavailable"), 0, "an outcome without odds is no refusal");
    let (player, bet) = bet_on(&stack, "1");
    let before = balance(&stack, player);

    // Every market status, from the live producer (product 1).
    for (code, expected) in [
        ("0", MarketStatus::Suspended),
        ("1", MarketStatus::Open),
        ("-1", MarketStatus::Suspended),
        ("1", MarketStatus::Open),
        ("-3", MarketStatus::Suspended),
        ("1", MarketStatus::Open),
        ("-4", MarketStatus::Suspended),
        ("1", MarketStatus::Open),
    ] {
        send(&provider, &live("odds_change"), odds_change(1, "2.10", code)).await;
        stack
            .until("status followed", move |book| book.market(market_id(book, "1")).expect("m").status == expected)
            .await;
    }
    // Handed over (the pre-match producer hands it to live): its prices no longer count.
    send(&provider, &prematch("odds_change"), odds_change(3, "9.90", "-2")).await;
    // Outcome 3 priced later becomes a selection; a price of ten decimal places rounds down.
    send(
        &provider,
        &live("odds_change"),
        format!(
            r#"<odds_change product="1" event_id="{EVENT}" timestamp="{}"><odds><market id="1" status="1"><outcome id="1" odds="2.10" active="1"/><outcome id="2" odds="3.4" active="1"/><outcome id="3" odds="3.1234567891" active="1"/></market></odds></odds_change>"#,
            wall_ms()
        ),
    )
    .await;
    stack.until("outcome 3 priced", |book| book.feed().selection(market_id(book, "1"), "3").is_some()).await;
    let (home, away) = stack.read(|book| {
        let price = |outcome| {
            book.selection(book.feed().selection(market_id(book, "1"), outcome).expect("s")).expect("s").price.decimal()
        };
        (price("1"), price("3"))
    });
    assert_eq!((home.as_str(), away.as_str()), ("2.10", "3.1234"));

    // bet_stop with groups and market_status suspends; bets are refused.
    send(
        &provider,
        &live("bet_stop"),
        format!(
            r#"<bet_stop product="1" event_id="{EVENT}" timestamp="{}" groups="goals|all" market_status="-1"/>"#,
            wall_ms()
        ),
    )
    .await;
    stack
        .until("suspended", |book| book.market(market_id(book, "1")).expect("m").status == MarketStatus::Suspended)
        .await;
    let selection = stack.read(|book| book.feed().selection(market_id(book, "1"), "1").expect("s"));
    let price = stack.read(move |book| book.selection(selection).expect("s").price);
    assert_eq!(stack.submit(single(player, selection, price, 100)), Err(Rejection::MarketSuspended));

    // Settlement: home wins; the bet pays 10.00 × 2.10.
    let settlement = |home: u8| {
        format!(
            r#"<bet_settlement product="1" event_id="{EVENT}" timestamp="{}" certainty="2"><outcomes>
            <market id="1"><outcome id="1" result="{home}"/><outcome id="2" result="{}"/><outcome id="3" result="0"/></market>
            </outcomes></bet_settlement>"#,
            wall_ms(),
            1 - home
        )
    };
    send(&provider, &live("bet_settlement"), settlement(1)).await;
    stack.until("settled", move |book| book.bet(bet).expect("bet").status == BetStatus::Won).await;
    assert_eq!(balance(&stack, player), before + 2_100);

    // Rollback: the bet is open again and the payout is taken back exactly.
    send(
        &provider,
        &live("rollback_bet_settlement"),
        format!(r#"<rollback_bet_settlement product="1" event_id="{EVENT}" timestamp="{}"><market id="1"/></rollback_bet_settlement>"#, wall_ms()),
    )
    .await;
    stack.until("rolled back", move |book| book.bet(bet).expect("bet").status == BetStatus::Accepted).await;
    assert_eq!(balance(&stack, player), before);

    // bet_cancel for a window before the bet: the bet stands. Then one around it: void.
    let placed = stack.read(move |book| book.bet(bet).expect("bet").placed_at);
    send(
        &provider,
        &live("bet_cancel"),
        format!(r#"<bet_cancel product="1" event_id="{EVENT}" timestamp="{}" start_time="1" end_time="{placed}"><market id="1" void_reason="1"/></bet_cancel>"#, wall_ms()),
    )
    .await;
    send(
        &provider,
        &live("bet_cancel"),
        format!(r#"<bet_cancel product="1" event_id="{EVENT}" timestamp="{}" start_time="{placed}" end_time="{}"><market id="1" void_reason="1"/></bet_cancel>"#, wall_ms(), placed + 1),
    )
    .await;
    stack.until("void", move |book| book.bet(bet).expect("bet").status == BetStatus::Void).await;
    assert_eq!(balance(&stack, player), before + 1_000);
    // rollback_bet_cancel of that window reopens it.
    send(
        &provider,
        &live("rollback_bet_cancel"),
        format!(r#"<rollback_bet_cancel product="1" event_id="{EVENT}" timestamp="{}" start_time="{placed}" end_time="{}"><market id="1"/></rollback_bet_cancel>"#, wall_ms(), placed + 1),
    )
    .await;
    stack.until("reopened", move |book| book.bet(bet).expect("bet").status == BetStatus::Accepted).await;
    assert_eq!(balance(&stack, player), before);

    // The same settlement delivered twice (a redelivery) applies once; an undecided one
    // settles nothing and is counted.
    let settle = settlement(0);
    send(&provider, &live("bet_settlement"), settle.clone()).await;
    send(&provider, &live("bet_settlement"), settle).await;
    stack.until("lost", move |book| book.bet(bet).expect("bet").status == BetStatus::Lost).await;
    send(
        &provider,
        &live("bet_settlement"),
        format!(r#"<bet_settlement product="1" event_id="{EVENT}" timestamp="{}" certainty="1"><outcomes><market id="2"><outcome id="1" result="-1"/></market></outcomes></bet_settlement>"#, wall_ms()),
    )
    .await;
    // Unknown message types and elements are skipped with a count.
    send(
        &provider,
        &live("cashout"),
        format!(r#"<cashout product="1" event_id="{EVENT}" timestamp="{}"/>"#, wall_ms()),
    )
    .await;
    send(&provider, "not-a-key", r#"<alive product="1" timestamp="1" subscribed="1"/>"#.to_string()).await;
    send(&provider, &live("odds_change"), "<odds_change".to_string()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while refusals(&stack, "xml") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the malformed message was not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let duplicates = stack
        .hub
        .metrics()
        .messages
        .get_or_create(&feed::metrics::OutcomeLabel { provider: "uof".into(), outcome: "duplicate".into() })
        .get();
    assert_eq!(duplicates, 1);
    assert_eq!(balance(&stack, player), before, "lost: the stake held since placement is gone, nothing more");
    for reason in ["undecided_result", "unknown_message", "routing_key", "xml"] {
        assert_eq!(refusals(&stack, reason), 1, "{reason}");
    }
    // Factors and a window in force through a resettlement. Rolled back again, the bet is
    // cancelled by a window around it; a dead heat settled meanwhile leaves it void; the
    // window withdrawn, the dead heat pays it half (10.00 × 2.10 / 2); rolled back and
    // settled with a void factor of 0.5, half the stake comes back and half wins.
    let rollback = || {
        format!(
            r#"<rollback_bet_settlement product="1" event_id="{EVENT}" timestamp="{}"><market id="1"/></rollback_bet_settlement>"#,
            wall_ms()
        )
    };
    let home_wins = |factor: &str| {
        format!(
            r#"<bet_settlement product="1" event_id="{EVENT}" timestamp="{}" certainty="2"><outcomes><market id="1"><outcome id="1" result="1" {factor}/><outcome id="2" result="0"/><outcome id="3" result="0"/></market></outcomes></bet_settlement>"#,
            wall_ms()
        )
    };
    let window = format!(r#"start_time="{placed}" end_time="{}""#, placed + 1);
    send(&provider, &live("rollback_bet_settlement"), rollback()).await;
    stack.until("reopened after lost", move |book| book.bet(bet).expect("bet").status == BetStatus::Accepted).await;
    assert_eq!(balance(&stack, player), before);
    send(
        &provider,
        &live("bet_cancel"),
        format!(r#"<bet_cancel product="1" event_id="{EVENT}" timestamp="{}" {window}><market id="1" void_reason="1"/></bet_cancel>"#, wall_ms()),
    )
    .await;
    stack.until("void again", move |book| book.bet(bet).expect("bet").status == BetStatus::Void).await;
    assert_eq!(balance(&stack, player), before + 1_000);
    send(&provider, &live("bet_settlement"), home_wins(r#"dead_heat_factor="0.5""#)).await;
    stack
        .until("dead heat settled", |book| {
            book.market(market_id(book, "1")).expect("m").status == MarketStatus::Settled
        })
        .await;
    assert_eq!(stack.read(move |book| book.bet(bet).expect("bet").status), BetStatus::Void, "the window holds");
    assert_eq!(balance(&stack, player), before + 1_000);
    send(
        &provider,
        &live("rollback_bet_cancel"),
        format!(r#"<rollback_bet_cancel product="1" event_id="{EVENT}" timestamp="{}" {window}><market id="1"/></rollback_bet_cancel>"#, wall_ms()),
    )
    .await;
    stack.until("dead heat paid", move |book| book.bet(bet).expect("bet").status == BetStatus::Won).await;
    assert_eq!(balance(&stack, player), before + 1_050);
    send(&provider, &live("rollback_bet_settlement"), rollback()).await;
    stack
        .until("reopened after the dead heat", move |book| book.bet(bet).expect("bet").status == BetStatus::Accepted)
        .await;
    assert_eq!(balance(&stack, player), before);
    send(&provider, &live("bet_settlement"), home_wins(r#"void_factor="0.5""#)).await;
    stack.until("half won", move |book| book.bet(bet).expect("bet").status == BetStatus::HalfWon).await;
    assert_eq!(balance(&stack, player), before + 1_550);

    // A cancelled fixture stops its markets.
    send(
        &provider,
        &prematch("fixture_change"),
        format!(
            r#"<fixture_change product="3" event_id="{EVENT}" timestamp="{}" change_type="3" start_time="{}"/>"#,
            wall_ms(),
            wall_ms()
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status(&stack, "1"), MarketStatus::Settled, "a settled market stays settled");
    source.abort();
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alive_with_subscribed_0_takes_the_producer_down_until_its_snapshot_completes() {
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend });
    let exchange = exchange("subscribed");
    let (provider, _api, mut recoveries) = provider(&stack, &exchange, 1).await;
    let source = tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 5));
    recover(&stack, &provider, &mut recoveries, &[1]).await;
    send(&provider, &live("odds_change"), odds_change(1, "2.10", "1")).await;
    provider.alive(wall_ms(), true).await.expect("alive");
    stack.until("market priced", |book| book.feed().market("uof", EVENT, "1").is_some()).await;
    while recoveries.try_recv().is_ok() {}
    // The producer lost our session: down, markets suspended, recovery asked.
    provider.alive(wall_ms(), false).await.expect("alive");
    let request =
        tokio::time::timeout(Duration::from_secs(10), recoveries.recv()).await.expect("recovery").expect("open");
    stack
        .until("suspended", |book| book.market(market_id(book, "1")).expect("m").status == MarketStatus::Suspended)
        .await;
    let view = stack.hub.providers().into_iter().find(|view| view.provider == "uof").expect("uof");
    assert!(view.producers.iter().any(|producer| producer.product == 1 && producer.down), "{view:?}");
    // It is back, the replay arrives with the request id and ends with snapshot_complete.
    provider.alive(wall_ms(), true).await.expect("alive");
    let replay = odds_change(1, "2.20", "1")
        .replace(r#" timestamp="#, &format!(r#" request_id="{}" timestamp="#, request.request_id));
    send(&provider, &live("odds_change"), replay).await;
    let mut complete = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while status(&stack, "1") != MarketStatus::Open {
        assert!(tokio::time::Instant::now() < deadline, "never reopened");
        // Answer every recovery request (a fresh provider asks again).
        while let Ok(request) = recoveries.try_recv() {
            complete = request.request_id;
        }
        let request_id = if complete == 0 { request.request_id } else { complete };
        send(
            &provider,
            "-.-.-.snapshot_complete.-.-.-.-",
            format!(r#"<snapshot_complete request_id="{request_id}" product="1" timestamp="{}"/>"#, wall_ms()),
        )
        .await;
        provider.alive(wall_ms(), true).await.expect("alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let home = stack.read(|book| {
        book.selection(book.market(market_id(book, "1")).expect("m").selections[0]).expect("s").price.decimal()
    });
    assert_eq!(home, "2.20");
    source.abort();
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_stops_sending_alive_is_down_until_its_recovery_completes() {
    let stack =
        Stack::start(ProviderSettings { stale_after: Duration::from_millis(800), on_stale: StaleMode::Suspend });
    let exchange = exchange("alive");
    let (provider, _api, mut recoveries) = provider(&stack, &exchange, 1).await;
    let source = tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 5));
    recover(&stack, &provider, &mut recoveries, &[1]).await;
    send(&provider, &live("odds_change"), odds_change(1, "2.10", "1")).await;
    provider.alive(wall_ms(), true).await.expect("alive");
    stack.until("market priced", |book| book.feed().market("uof", EVENT, "1").is_some()).await;
    let market = stack.read(|book| market_id(book, "1"));
    // No more alive messages: the producer is down and its markets are suspended.
    stack.until("suspended", move |book| book.market(market).expect("m").status == MarketStatus::Suspended).await;
    assert_eq!(stack.hub.stale_providers(), vec!["uof".to_string()]);
    // The producer asks the provider's API for a recovery; alive again, the replay and the
    // snapshot of that request reopen the market.
    provider.alive(wall_ms(), true).await.expect("alive");
    let request =
        tokio::time::timeout(Duration::from_secs(10), recoveries.recv()).await.expect("recovery").expect("open");
    send(&provider, &live("odds_change"), odds_change(1, "2.20", "1")).await;
    send(
        &provider,
        "-.-.-.snapshot_complete.-.-.-.-",
        format!(r#"<snapshot_complete request_id="{}" product="1" timestamp="{}"/>"#, request.request_id, wall_ms()),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_binds_to_an_existing_durable_exchange_and_never_declares_one() {
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend });
    // No such exchange: the binding fails with the broker's error and nothing is created.
    let missing = exchange("missing");
    let source =
        tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), missing.clone(), 5));
    tokio::time::sleep(Duration::from_millis(600)).await;
    source.abort();
    // Declaring it passively proves it does not exist: the adapter declared nothing.
    let connection =
        lapin::Connection::connect(RABBITMQ, lapin::ConnectionProperties::default()).await.expect("rabbitmq");
    let channel = connection.create_channel().await.expect("channel");
    let passive = lapin::options::ExchangeDeclareOptions { passive: true, ..Default::default() };
    let found = channel
        .exchange_declare(&missing, lapin::ExchangeKind::Topic, passive, lapin::types::FieldTable::default())
        .await;
    assert!(found.is_err(), "the adapter must not declare the provider's exchange");
    // The simulated provider's exchange is durable: a durable passive-free declaration of the
    // same kind succeeds (a non-durable one would fail with PRECONDITION_FAILED).
    let existing = exchange("durable");
    let (provider, _api, _recoveries) = provider(&stack, &existing, 1).await;
    let channel = connection.create_channel().await.expect("channel");
    let durable = lapin::options::ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel
        .exchange_declare(&existing, lapin::ExchangeKind::Topic, durable, lapin::types::FieldTable::default())
        .await
        .expect("the provider's exchange is a durable topic exchange");
    let _ = connection.close(200, "done").await;
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_messages_published_by_the_provider_side_are_schema_true() {
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend });
    let exchange = exchange("sim");
    let (provider, _api, mut recoveries) = provider(&stack, &exchange, 1).await;
    let source = tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 5));
    // Bound, consuming and up once its first recovery completed.
    recover(&stack, &provider, &mut recoveries, &[1]).await;
    let mut simulator = feed::simulator::FeedSimulator::new(feed::simulator::SimulatorConfig::new("uof", 3, 7));
    let opening: Vec<FeedMessage> = simulator.start(wall_ms());
    assert!(!opening.is_empty());
    for message in &opening {
        provider.publish(message, None).await.expect("publish");
    }
    let markets = opening
        .iter()
        .flat_map(|message| &message.items)
        .filter(|item| matches!(item, FeedItem::Market { .. }))
        .count();
    stack
        .until("every simulated market arrives", move |book| {
            book.feed()
                .providers()
                .iter()
                .find(|provider| provider.name == "uof")
                .is_some_and(|p| p.markets.len() == markets)
        })
        .await;
    assert_eq!(stack.hub.metrics().refusals_of("uof", "missing_attribute"), 0);
    source.abort();
    provider.close().await;
}

/// The adapter over RabbitMQ with the provider's API stand-in, end to end: markets named from
/// the bundled descriptions; a silence takes the producer down and suspends its markets; the
/// recovery request reaches the API with `after` = the last provider timestamp applied; a
/// `snapshot_complete` of another request changes nothing, the one of that request reopens the
/// markets; the recovery point is stored, and a restart asks from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_recovers_through_the_provider_api_from_the_stored_point_with_named_markets() {
    let state = tempfile::tempdir().expect("temp dir");
    let settings = ProviderSettings { stale_after: Duration::from_millis(800), on_stale: StaleMode::Suspend };
    let stack = Stack::start(settings);
    let exchange = exchange("wire");
    let configure = |stack: &Stack, api: &ProviderApi| {
        let mut client = ApiSettings::new(api.base_url(), TOKEN);
        client.node_id = Some(7);
        stack.hub.configure_uof(
            "uof",
            UofSettings {
                api: Some(UofApi::new(client).expect("API settings")),
                state_dir: Some(state.path().to_path_buf()),
                names: Some(Arc::new(UofNames::new(Namer::new(MarketDescriptions::bundled())))),
                ..UofSettings::default()
            },
        );
    };
    let (provider, api, mut recoveries) = provider(&stack, &exchange, 1).await;
    configure(&stack, &api);
    let source =
        tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange.clone(), 5));
    let first = recover(&stack, &provider, &mut recoveries, &[1]).await;
    assert_eq!(first[0].after, 0, "nothing stored: a full recovery (no after)");
    assert_eq!(api.received()[0].after, None);
    assert_eq!(api.received()[0].node_id, Some(7));
    // A total-goals market, named from the bundled descriptions.
    let priced_at = wall_ms() + 5_000;
    let total = |at: u64, over: &str, request: Option<u64>| {
        let request = request.map_or(String::new(), |id| format!(r#" request_id="{id}""#));
        format!(
            r#"<odds_change product="1" event_id="{EVENT}" timestamp="{at}"{request}><odds><market id="18" specifiers="total=2.5" status="1"><outcome id="12" odds="{over}" active="1"/><outcome id="13" odds="1.85" active="1"/></market></odds></odds_change>"#
        )
    };
    send(&provider, &live("odds_change"), total(priced_at, "1.95", None)).await;
    let alive_at = priced_at + 10;
    send(&provider, "-.-.-.alive.-.-.-.-", format!(r#"<alive product="1" timestamp="{alive_at}" subscribed="1"/>"#))
        .await;
    stack.until("market priced", |book| book.feed().market("uof", EVENT, "18|total=2.5").is_some()).await;
    let (name, outcomes) = stack.read(|book| {
        let market = book.market(market_id(book, "18|total=2.5")).expect("market");
        let outcomes: Vec<String> =
            market.selections.iter().map(|id| book.selection(*id).expect("selection").name.clone()).collect();
        (market.name.clone(), outcomes)
    });
    assert_eq!(name, "Total");
    assert_eq!(outcomes, vec!["over 2.5".to_string(), "under 2.5".to_string()]);
    // A market the descriptions do not know falls back to a placeholder, counted.
    send(
        &provider,
        &live("odds_change"),
        format!(r#"<odds_change product="1" event_id="{EVENT}" timestamp="{}"><odds><market id="999999" status="1"><outcome id="1" odds="2.5"/></market></odds></odds_change>"#, priced_at + 1),
    )
    .await;
    stack.until("unknown market", |book| book.feed().market("uof", EVENT, "999999").is_some()).await;
    let fallbacks = || {
        let label = feed::metrics::FallbackLabel { provider: "uof".to_string(), reason: "unknown_market".to_string() };
        stack.hub.metrics().name_fallbacks.get_or_create(&label).get()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fallbacks() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "name fallbacks not exported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Silence: the source goes stale, the producer is down, its markets wait.
    let market = stack.read(|book| market_id(book, "18|total=2.5"));
    stack.until("suspended", move |book| book.market(market).expect("m").status == MarketStatus::Suspended).await;
    let request =
        tokio::time::timeout(Duration::from_secs(10), recoveries.recv()).await.expect("recovery").expect("open");
    assert_eq!(request.after, alive_at, "after = the last provider timestamp applied while up");
    let received = api.received().last().cloned().expect("received");
    assert_eq!((received.producer.as_str(), received.after), ("liveodds", Some(alive_at)));
    // Stored durably, atomically.
    let stored = state.path().join("recovery-uof.txt");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&stored).unwrap_or_default() != format!("1 {alive_at}\n") {
        assert!(tokio::time::Instant::now() < deadline, "recovery point not stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The provider replays; a snapshot_complete of another request reopens nothing.
    send(&provider, &live("odds_change"), total(wall_ms() + 6_000, "2.05", Some(request.request_id))).await;
    let complete =
        |id: u64| format!(r#"<snapshot_complete request_id="{id}" product="1" timestamp="{}"/>"#, wall_ms() + 7_000);
    send(&provider, "-.-.-.snapshot_complete.-.-.-.-", complete(request.request_id + 1_000)).await;
    alive_of(&provider, 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(stack.read(move |book| book.market(market).expect("m").status), MarketStatus::Suspended);
    send(&provider, "-.-.-.snapshot_complete.-.-.-.-", complete(request.request_id)).await;
    for _ in 0..5 {
        alive_of(&provider, 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.until("reopened", move |book| book.market(market).expect("m").status == MarketStatus::Open).await;
    let over = stack
        .read(move |book| book.selection(book.market(market).expect("m").selections[0]).expect("s").price.decimal());
    assert_eq!(over, "2.05");
    source.abort();
    drop(stack);
    // A restart asks from the stored point.
    let restarted = Stack::start(settings);
    let (_, api2, mut recoveries2) = crate::amqp::provider(&restarted, &exchange, 1).await;
    configure(&restarted, &api2);
    let source =
        tokio::spawn(follow_amqp(restarted.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 5));
    let again = recover(&restarted, &provider, &mut recoveries2, &[1]).await;
    assert!(again[0].after >= alive_at, "a restart recovers from the stored point: {again:?}");
    assert_eq!(api2.received()[0].after, Some(again[0].after));
    source.abort();
    provider.close().await;
}
