//! Producers tracked one by one over the real RabbitMQ: a producer that goes down (its
//! `product_down`, or its `alive` falling silent while another producer still speaks) suspends
//! only the markets it owns, and its own recovery brings them back; the other producer's markets
//! stay open throughout; while it is down its prices still move but its markets stay suspended
//! until its `snapshot_complete` (or, while the provider is stale, the one that ends the
//! staleness). `bet_stop` stops only the markets of its `groups`. Messages are
//! schema-true, under real routing keys.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use book::{Ack, BetStatus, MarketStatus, Rejection, StaleMode};
use feed::recovery::RecoveryConfig;
use feed::transport::{follow_amqp, AmqpProvider};
use feed::uof_api::{ApiSettings, UofApi};
use feed::{ProviderSettings, UofSettings};

use crate::amqp::{alive_of, exchange, live, prematch, provider, recover, send, RABBITMQ, TOKEN};
use crate::support::{single, wall_ms, Stack};

/// The pre-match producer (3) prices `PREMATCH_EVENT`; the live producer (1) prices
/// `LIVE_EVENT`.
const PREMATCH_EVENT: &str = "sr:match:31";
const LIVE_EVENT: &str = "sr:match:11";

fn odds_change(product: u32, event: &str, status: &str, request_id: Option<u64>) -> String {
    priced(product, event, status, "2.10", request_id)
}

/// Market 1 of `event` with `home` as outcome 1's odds.
fn priced(product: u32, event: &str, status: &str, home: &str, request_id: Option<u64>) -> String {
    let request = request_id.map(|id| format!(r#" request_id="{id}""#)).unwrap_or_default();
    format!(
        r#"<odds_change product="{product}" event_id="{event}" timestamp="{}"{request}><odds>
        <market id="1" status="{status}"><outcome id="1" odds="{home}" active="1"/><outcome id="2" odds="3.40" active="1"/><outcome id="3" odds="3.00" active="1"/></market>
        </odds></odds_change>"#,
        wall_ms()
    )
}

fn routing(product: u32, event: &str, kind: &str) -> String {
    let id = event.rsplit(':').next().expect("urn");
    let key = if product == 3 { prematch(kind) } else { live(kind) };
    key.replace("sr:match.1.", &format!("sr:match.{id}."))
}

fn status(stack: &Stack, event: &'static str) -> MarketStatus {
    stack.read(move |book| {
        let market = book.feed().market("uof", event, "1").expect("market");
        book.market(market).expect("m").status
    })
}

async fn until_status(stack: &Stack, event: &'static str, expected: MarketStatus) {
    stack
        .until(&format!("{event} {expected:?}"), move |book| {
            book.feed()
                .market("uof", event, "1")
                .is_some_and(|market| book.market(market).expect("m").status == expected)
        })
        .await;
}

fn changes(stack: &Stack, product: u32, kind: &str) -> u64 {
    stack.hub.metrics().producer_changes_of("uof", product, kind)
}

/// Both producers up, each with its market open.
async fn two_producers(
    stack: &Stack,
    provider: &feed::transport::AmqpProvider,
    recoveries: &mut tokio::sync::mpsc::Receiver<feed::transport::RecoveryRequest>,
) {
    recover(stack, provider, recoveries, &[3, 1]).await;
    send(provider, &routing(3, PREMATCH_EVENT, "odds_change"), odds_change(3, PREMATCH_EVENT, "1", None)).await;
    send(provider, &routing(1, LIVE_EVENT, "odds_change"), odds_change(1, LIVE_EVENT, "1", None)).await;
    until_status(stack, PREMATCH_EVENT, MarketStatus::Open).await;
    until_status(stack, LIVE_EVENT, MarketStatus::Open).await;
    let owners = stack.hub.market_owners("uof");
    assert_eq!(owners.get(&(PREMATCH_EVENT.to_string(), "1".to_string())), Some(&3));
    assert_eq!(owners.get(&(LIVE_EVENT.to_string(), "1".to_string())), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_down_suspends_only_that_producers_markets_and_its_recovery_brings_them_back() {
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend });
    let exchange = exchange("producers");
    let (provider, _api, mut recoveries) = provider(&stack, &exchange, 1).await;
    let source = tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 5));
    two_producers(&stack, &provider, &mut recoveries).await;
    while recoveries.try_recv().is_ok() {}
    let (recoveries_1, recoveries_3) = (changes(&stack, 1, "recovery"), changes(&stack, 3, "recovery"));

    // The live producer goes down: its market is suspended, the pre-match one stays open.
    send(&provider, "-.-.-.product_down.-.-.-.-", format!(r#"<product_down product="1" timestamp="{}"/>"#, wall_ms()))
        .await;
    until_status(&stack, LIVE_EVENT, MarketStatus::Suspended).await;
    assert_eq!(status(&stack, PREMATCH_EVENT), MarketStatus::Open);
    assert!(stack.hub.stale_providers().is_empty(), "one producer down is not the provider stale");
    let view = stack.hub.providers().into_iter().find(|view| view.provider == "uof").expect("uof");
    assert!(view.producers.iter().any(|p| p.product == 1 && p.down), "{view:?}");
    assert!(view.producers.iter().any(|p| p.product == 3 && !p.down), "{view:?}");
    assert_eq!(changes(&stack, 1, "markets_suspended"), 1);
    assert_eq!(changes(&stack, 3, "markets_suspended"), 0);

    // Its recovery, asked of the provider's API for product 1 only, brings its market back.
    let request =
        tokio::time::timeout(Duration::from_secs(10), recoveries.recv()).await.expect("recovery").expect("open");
    assert_eq!(changes(&stack, 1, "recovery"), recoveries_1 + 1);
    assert_eq!(changes(&stack, 3, "recovery"), recoveries_3, "the pre-match producer recovers nothing");
    send(&provider, &routing(1, LIVE_EVENT, "odds_change"), odds_change(1, LIVE_EVENT, "1", Some(request.request_id)))
        .await;
    send(
        &provider,
        "-.-.-.snapshot_complete.-.-.-.-",
        format!(r#"<snapshot_complete request_id="{}" product="1" timestamp="{}"/>"#, request.request_id, wall_ms()),
    )
    .await;
    until_status(&stack, LIVE_EVENT, MarketStatus::Open).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while changes(&stack, 1, "up") < 2 {
        assert!(tokio::time::Instant::now() < deadline, "producer 1 never up again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(changes(&stack, 1, "snapshot_complete"), 2, "its first recovery and this one");
    assert_eq!(status(&stack, PREMATCH_EVENT), MarketStatus::Open);
    assert_eq!(changes(&stack, 3, "down"), 0, "the pre-match producer never went down");
    // The recovery counts per producer, exported each second: two requests and two completed
    // replays for the live producer, one of each for the pre-match one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let recoveries = |product, kind| stack.hub.metrics().recoveries_of("uof", product, kind);
    while recoveries(1, "completed") < 2 {
        assert!(tokio::time::Instant::now() < deadline, "recovery counts never exported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((recoveries(1, "requests"), recoveries(1, "completed")), (2, 2));
    assert_eq!((recoveries(3, "requests"), recoveries(3, "completed")), (1, 1));
    assert_eq!(recoveries(1, "request_failures"), 0);
    source.abort();
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_producer_suspends_its_own_markets_while_the_other_speaks() {
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend });
    let exchange = exchange("silent");
    let (provider, api, mut recoveries) = provider(&stack, &exchange, 1).await;
    // The SDKs' inactivity of 20 s, shortened to 1 s.
    let recovery = RecoveryConfig { max_inactivity: Duration::from_secs(1), ..RecoveryConfig::default() };
    stack.hub.configure_uof(
        "uof",
        UofSettings {
            api: Some(UofApi::new(ApiSettings::new(api.base_url(), TOKEN)).expect("API")),
            recovery,
            ..UofSettings::default()
        },
    );
    // Both producers' alive every 200 ms, on a connection of their own, until told otherwise.
    let prematch_alive = Arc::new(AtomicBool::new(true));
    let heartbeat = {
        let alive = AmqpProvider::connect(RABBITMQ, &exchange, 1).await.expect("rabbitmq");
        let prematch_alive = prematch_alive.clone();
        tokio::spawn(async move {
            loop {
                alive_of(&alive, 1).await;
                if prematch_alive.load(Ordering::Relaxed) {
                    alive_of(&alive, 3).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let source =
        tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange.clone(), 5));
    // Both heard of through their alive ask for a recovery; each request's snapshot_complete is
    // sent for both products (only the producer whose request it is takes it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        while let Ok(request) = recoveries.try_recv() {
            for product in [1, 3] {
                let xml = format!(
                    r#"<snapshot_complete request_id="{}" product="{product}" timestamp="{}"/>"#,
                    request.request_id,
                    wall_ms()
                );
                send(&provider, "-.-.-.snapshot_complete.-.-.-.-", xml).await;
            }
        }
        let view = stack.hub.providers().into_iter().find(|view| view.provider == "uof").expect("uof");
        if view.producers.len() == 2 && view.producers.iter().all(|p| !p.down) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "producers never up: {view:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(&provider, &routing(3, PREMATCH_EVENT, "odds_change"), odds_change(3, PREMATCH_EVENT, "1", None)).await;
    send(&provider, &routing(1, LIVE_EVENT, "odds_change"), odds_change(1, LIVE_EVENT, "1", None)).await;
    until_status(&stack, PREMATCH_EVENT, MarketStatus::Open).await;
    until_status(&stack, LIVE_EVENT, MarketStatus::Open).await;
    assert_eq!(changes(&stack, 3, "down"), 0, "not down since it came up");

    // Only the live producer's alive keeps coming: the pre-match producer is down after 1 s,
    // its market suspended; the live market stays open.
    prematch_alive.store(false, Ordering::Relaxed);
    let request =
        tokio::time::timeout(Duration::from_secs(15), recoveries.recv()).await.expect("recovery").expect("open");
    until_status(&stack, PREMATCH_EVENT, MarketStatus::Suspended).await;
    assert_eq!(status(&stack, LIVE_EVENT), MarketStatus::Open);
    let view = stack.hub.providers().into_iter().find(|view| view.provider == "uof").expect("uof");
    assert!(view.producers.iter().any(|p| p.product == 3 && p.down), "{view:?}");
    assert!(view.producers.iter().any(|p| p.product == 1 && !p.down), "{view:?}");

    // Its alive back, the replay of that request and its snapshot bring its market back.
    prematch_alive.store(true, Ordering::Relaxed);
    send(
        &provider,
        &routing(3, PREMATCH_EVENT, "odds_change"),
        odds_change(3, PREMATCH_EVENT, "1", Some(request.request_id)),
    )
    .await;
    send(
        &provider,
        "-.-.-.snapshot_complete.-.-.-.-",
        format!(r#"<snapshot_complete request_id="{}" product="3" timestamp="{}"/>"#, request.request_id, wall_ms()),
    )
    .await;
    until_status(&stack, PREMATCH_EVENT, MarketStatus::Open).await;
    assert_eq!(status(&stack, LIVE_EVENT), MarketStatus::Open);
    assert_eq!(changes(&stack, 1, "markets_suspended"), 0);
    assert_eq!(changes(&stack, 1, "down"), 0, "the live producer never went down");
    heartbeat.abort();
    source.abort();
    provider.close().await;
}

/// One market's status by its key in `EVENT`.
fn status_of(stack: &Stack, key: &'static str) -> MarketStatus {
    stack.read(move |book| {
        let market = book.feed().market("uof", crate::amqp::EVENT, key).expect("market");
        book.market(market).expect("m").status
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bet_stop_stops_only_the_markets_of_its_groups_with_its_market_status() {
    use crate::amqp::EVENT;
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend });
    let exchange = exchange("groups");
    // The provider's descriptions name the groups: 1 and 18 are `regular_play`, 68 `1st_half`.
    let (provider, _api, mut recoveries) = provider(&stack, &exchange, 1).await;
    let source = tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 5));
    recover(&stack, &provider, &mut recoveries, &[1]).await;
    let open_all = || {
        format!(
            r#"<odds_change product="1" event_id="{EVENT}" timestamp="{}"><odds>
            <market id="1" status="1"><outcome id="1" odds="2.10" active="1"/><outcome id="2" odds="3.40" active="1"/><outcome id="3" odds="3.00" active="1"/></market>
            <market id="18" specifiers="total=2.5" status="1"><outcome id="12" odds="1.90" active="1"/><outcome id="13" odds="1.95" active="1"/></market>
            <market id="68" specifiers="total=1.5" status="1"><outcome id="12" odds="1.80" active="1"/><outcome id="13" odds="2.00" active="1"/></market>
            </odds></odds_change>"#,
            wall_ms()
        )
    };
    let all_open = |book: &book::Book| {
        ["1", "18|total=2.5", "68|total=1.5"].iter().all(|key| {
            book.feed()
                .market("uof", EVENT, key)
                .is_some_and(|m| book.market(m).expect("m").status == MarketStatus::Open)
        })
    };
    send(&provider, &live("odds_change"), open_all()).await;
    stack.until("three markets open", all_open).await;

    // First-half markets only, deactivated (market_status 0): 68 stops, 1 and 18 stay open.
    let bet_stop = |groups: &str, market_status: &str| {
        format!(
            r#"<bet_stop product="1" event_id="{EVENT}" timestamp="{}" groups="{groups}" market_status="{market_status}"/>"#,
            wall_ms()
        )
    };
    send(&provider, &live("bet_stop"), bet_stop("1st_half", "0")).await;
    stack
        .until("68 stopped", |book| {
            let market = book.feed().market("uof", EVENT, "68|total=1.5").expect("68");
            book.market(market).expect("m").status == MarketStatus::Suspended
        })
        .await;
    assert_eq!(status_of(&stack, "1"), MarketStatus::Open);
    assert_eq!(status_of(&stack, "18|total=2.5"), MarketStatus::Open);

    // A group none of the event's markets is in stops nothing; `regular_play`, suspended
    // (market_status -1), stops 1 and 18.
    send(&provider, &live("bet_stop"), bet_stop("corners", "-1")).await;
    // A later message of another event marks that the bet stop was handled (one queue, in order).
    let marker = crate::amqp::odds_change(1, "2.10", "1").replace(EVENT, "sr:match:77");
    send(&provider, &live("odds_change").replace(".1.-", ".77.-"), marker).await;
    stack.until("marker", |book| book.feed().market("uof", "sr:match:77", "1").is_some()).await;
    assert_eq!(status_of(&stack, "1"), MarketStatus::Open);
    assert_eq!(status_of(&stack, "18|total=2.5"), MarketStatus::Open);
    send(&provider, &live("bet_stop"), bet_stop("regular_play", "-1")).await;
    stack
        .until("1 and 18 stopped", |book| {
            ["1", "18|total=2.5"].iter().all(|key| {
                let market = book.feed().market("uof", EVENT, key).expect("market");
                book.market(market).expect("m").status == MarketStatus::Suspended
            })
        })
        .await;

    // The next odds_change reopens them; `all` stops every market again.
    send(&provider, &live("odds_change"), open_all()).await;
    stack.until("reopened", all_open).await;
    send(&provider, &live("bet_stop"), bet_stop("all", "-1")).await;
    stack
        .until("all stopped", |book| {
            book.feed()
                .markets_of("uof", EVENT)
                .all(|(_, market)| book.market(market).expect("m").status == MarketStatus::Suspended)
        })
        .await;
    assert_eq!(crate::amqp::refusals(&stack, "unknown_market_status"), 0);
    assert_eq!(crate::amqp::refusals(&stack, "book_unknown_market"), 0);
    source.abort();
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_market_handed_over_to_the_live_producer_is_the_live_producers_to_suspend() {
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend });
    let exchange = exchange("handover");
    let (provider, _api, mut recoveries) = provider(&stack, &exchange, 1).await;
    let source = tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 5));
    two_producers(&stack, &provider, &mut recoveries).await;
    // The pre-match producer hands its market over (-2); the live producer prices it.
    send(&provider, &routing(3, PREMATCH_EVENT, "odds_change"), odds_change(3, PREMATCH_EVENT, "-2", None)).await;
    send(&provider, &routing(1, PREMATCH_EVENT, "odds_change"), odds_change(1, PREMATCH_EVENT, "1", None)).await;
    let key = (PREMATCH_EVENT.to_string(), "1".to_string());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stack.hub.market_owners("uof").get(&key) != Some(&1) {
        assert!(tokio::time::Instant::now() < deadline, "never the live producer's");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The pre-match producer going down suspends nothing of it (it owns nothing now) ...
    send(&provider, "-.-.-.product_down.-.-.-.-", format!(r#"<product_down product="3" timestamp="{}"/>"#, wall_ms()))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !stack.hub.providers().iter().any(|view| view.producers.iter().any(|p| p.product == 3 && p.down)) {
        assert!(tokio::time::Instant::now() < deadline, "product 3 never down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status(&stack, PREMATCH_EVENT), MarketStatus::Open);
    assert_eq!(changes(&stack, 3, "markets_suspended"), 0);
    // ... the live producer going down suspends it, and its own live market.
    send(&provider, "-.-.-.product_down.-.-.-.-", format!(r#"<product_down product="1" timestamp="{}"/>"#, wall_ms()))
        .await;
    until_status(&stack, PREMATCH_EVENT, MarketStatus::Suspended).await;
    until_status(&stack, LIVE_EVENT, MarketStatus::Suspended).await;
    assert_eq!(changes(&stack, 1, "markets_suspended"), 2);
    source.abort();
    provider.close().await;
}

/// A third event the live producer prices, which it last says is inactive while it is down.
const LIVE_INACTIVE_EVENT: &str = "sr:match:12";

/// Outcome 1 of market 1 of `event`: its selection and the book's price (decimal).
fn home(stack: &Stack, event: &'static str) -> (book::SelectionId, domain::Odds) {
    stack.read(move |book| {
        let market = book.feed().market("uof", event, "1").expect("market");
        let selection = book.feed().selection(market, "1").expect("outcome 1");
        (selection, book.selection(selection).expect("selection").price)
    })
}

async fn until_home_price(stack: &Stack, event: &'static str, decimal: &'static str) {
    stack
        .until(&format!("{event} at {decimal}"), move |book| {
            let market = book.feed().market("uof", event, "1").expect("market");
            let selection = book.feed().selection(market, "1").expect("outcome 1");
            book.selection(selection).expect("selection").price.decimal() == decimal
        })
        .await;
}

fn bet(stack: &Stack, player: book::AccountId, event: &'static str) -> book::Reply {
    let (selection, price) = home(stack, event);
    stack.submit(single(player, selection, price, 100))
}

fn accepted(reply: &book::Reply) -> bool {
    matches!(reply, Ok(Ack::BetPlaced { status: BetStatus::Accepted, .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_producers_prices_move_but_its_markets_reopen_only_on_its_snapshot_complete() {
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend });
    let exchange = exchange("held");
    let (provider, _api, mut recoveries) = provider(&stack, &exchange, 1).await;
    let source = tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 5));
    two_producers(&stack, &provider, &mut recoveries).await;
    let live_inactive = routing(1, LIVE_INACTIVE_EVENT, "odds_change");
    send(&provider, &live_inactive, odds_change(1, LIVE_INACTIVE_EVENT, "1", None)).await;
    until_status(&stack, LIVE_INACTIVE_EVENT, MarketStatus::Open).await;
    // Each event starts in an hour (bets on an event past its start and not in play are refused).
    let starts_at = wall_ms() + 3_600_000;
    for (product, event) in [(3, PREMATCH_EVENT), (1, LIVE_EVENT), (1, LIVE_INACTIVE_EVENT)] {
        let xml = format!(
            r#"<fixture_change product="{product}" event_id="{event}" timestamp="{}" change_type="1" start_time="{starts_at}"/>"#,
            wall_ms()
        );
        send(&provider, &routing(product, event, "fixture_change"), xml).await;
        stack
            .until(&format!("{event} rescheduled"), move |book| {
                let id = book.feed().event("uof", event).expect("event");
                book.events().get(id.index()).expect("event").starts_at == starts_at
            })
            .await;
    }
    while recoveries.try_recv().is_ok() {}
    let player = stack.funded_player();

    send(&provider, "-.-.-.product_down.-.-.-.-", format!(r#"<product_down product="1" timestamp="{}"/>"#, wall_ms()))
        .await;
    until_status(&stack, LIVE_EVENT, MarketStatus::Suspended).await;
    until_status(&stack, LIVE_INACTIVE_EVENT, MarketStatus::Suspended).await;
    let request =
        tokio::time::timeout(Duration::from_secs(10), recoveries.recv()).await.expect("recovery").expect("open");

    // A live odds_change, active, while the producer is down: its price is the book's, its
    // market stays suspended; the other market it prices says inactive.
    send(&provider, &routing(1, LIVE_EVENT, "odds_change"), priced(1, LIVE_EVENT, "1", "2.50", None)).await;
    send(&provider, &live_inactive, priced(1, LIVE_INACTIVE_EVENT, "0", "2.20", None)).await;
    until_home_price(&stack, LIVE_EVENT, "2.50").await;
    until_home_price(&stack, LIVE_INACTIVE_EVENT, "2.20").await;
    assert_eq!(status(&stack, LIVE_EVENT), MarketStatus::Suspended);
    assert_eq!(bet(&stack, player, LIVE_EVENT), Err(Rejection::MarketSuspended));
    assert_eq!(status(&stack, PREMATCH_EVENT), MarketStatus::Open);
    let reply = bet(&stack, player, PREMATCH_EVENT);
    assert!(accepted(&reply), "the pre-match producer's market takes bets: {reply:?}");
    assert_eq!(changes(&stack, 1, "markets_held"), 1, "one active status held");

    // Its replay, active, still holds it; only the snapshot_complete that ends the producer's
    // recovery reopens it, at the replay's price. The market it last said was inactive stays
    // suspended.
    send(
        &provider,
        &routing(1, LIVE_EVENT, "odds_change"),
        priced(1, LIVE_EVENT, "1", "2.60", Some(request.request_id)),
    )
    .await;
    until_home_price(&stack, LIVE_EVENT, "2.60").await;
    assert_eq!(status(&stack, LIVE_EVENT), MarketStatus::Suspended);
    assert_eq!(bet(&stack, player, LIVE_EVENT), Err(Rejection::MarketSuspended));
    // A snapshot_complete of another request reopens nothing.
    send(
        &provider,
        "-.-.-.snapshot_complete.-.-.-.-",
        format!(
            r#"<snapshot_complete request_id="{}" product="1" timestamp="{}"/>"#,
            request.request_id + 1000,
            wall_ms()
        ),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while changes(&stack, 1, "stale_snapshot") < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the other request's snapshot never seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&stack, LIVE_EVENT), MarketStatus::Suspended);
    send(
        &provider,
        "-.-.-.snapshot_complete.-.-.-.-",
        format!(r#"<snapshot_complete request_id="{}" product="1" timestamp="{}"/>"#, request.request_id, wall_ms()),
    )
    .await;
    until_status(&stack, LIVE_EVENT, MarketStatus::Open).await;
    assert_eq!(home(&stack, LIVE_EVENT).1.decimal(), "2.60");
    let reply = bet(&stack, player, LIVE_EVENT);
    assert!(accepted(&reply), "the live producer's market takes bets again: {reply:?}");
    assert_eq!(status(&stack, LIVE_INACTIVE_EVENT), MarketStatus::Suspended, "last said inactive");
    assert_eq!(status(&stack, PREMATCH_EVENT), MarketStatus::Open);
    assert_eq!(changes(&stack, 1, "markets_reopened"), 1);
    assert_eq!(changes(&stack, 3, "markets_suspended") + changes(&stack, 3, "markets_held"), 0);

    // Up again, its prices and statuses apply as they come: a later price on the reopened
    // market is taken (not stale against the reopening), and its active status reopens the
    // other market.
    send(&provider, &routing(1, LIVE_EVENT, "odds_change"), priced(1, LIVE_EVENT, "1", "2.70", None)).await;
    send(&provider, &live_inactive, priced(1, LIVE_INACTIVE_EVENT, "1", "2.30", None)).await;
    until_home_price(&stack, LIVE_EVENT, "2.70").await;
    until_status(&stack, LIVE_INACTIVE_EVENT, MarketStatus::Open).await;
    assert_eq!(status(&stack, LIVE_EVENT), MarketStatus::Open);
    assert_eq!(changes(&stack, 1, "markets_held"), 2, "only while it was down");
    source.abort();
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_producers_markets_reopen_after_the_snapshot_that_ends_the_providers_staleness() {
    let stack = Stack::start(ProviderSettings { stale_after: Duration::from_secs(1), on_stale: StaleMode::Suspend });
    let exchange = exchange("heldstale");
    // The provider offers both producers: its staleness ends once both have recovered.
    let (provider, _api, mut recoveries) =
        crate::amqp::provider_listing(&stack, RABBITMQ, &exchange, 1, crate::amqp::live_and_prematch()).await;
    let source = tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.to_string(), exchange, 5));
    two_producers(&stack, &provider, &mut recoveries).await;
    while recoveries.try_recv().is_ok() {}

    // The live producer goes down (held); then the whole source falls silent: the provider is
    // stale, the pre-match producer recovers too.
    send(&provider, "-.-.-.product_down.-.-.-.-", format!(r#"<product_down product="1" timestamp="{}"/>"#, wall_ms()))
        .await;
    until_status(&stack, LIVE_EVENT, MarketStatus::Suspended).await;
    let live = tokio::time::timeout(Duration::from_secs(10), recoveries.recv()).await.expect("recovery").expect("open");
    until_status(&stack, PREMATCH_EVENT, MarketStatus::Suspended).await;
    assert_eq!(stack.hub.stale_providers(), vec!["uof".to_string()]);
    let prematch =
        tokio::time::timeout(Duration::from_secs(10), recoveries.recv()).await.expect("recovery").expect("open");
    let view = stack.hub.providers().into_iter().find(|view| view.provider == "uof").expect("uof");
    assert!(view.producers.iter().any(|p| p.product == 1 && p.recovering == Some(live.request_id)), "{view:?}");
    assert!(view.producers.iter().any(|p| p.product == 3 && p.recovering == Some(prematch.request_id)), "{view:?}");
    let snapshot = |request: u64, product: u32| {
        format!(r#"<snapshot_complete request_id="{request}" product="{product}" timestamp="{}"/>"#, wall_ms())
    };

    // The live producer's recovery ends first: the book still waits for the provider's
    // snapshot, so nothing reopens yet.
    send(&provider, "-.-.-.snapshot_complete.-.-.-.-", snapshot(live.request_id, 1)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while changes(&stack, 1, "up") < 2 {
        assert!(tokio::time::Instant::now() < deadline, "producer 1 never up again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status(&stack, LIVE_EVENT), MarketStatus::Suspended);
    assert_eq!(status(&stack, PREMATCH_EVENT), MarketStatus::Suspended);
    assert_eq!(changes(&stack, 1, "markets_reopened"), 0, "waits for the provider's snapshot");

    // The pre-match producer's ends the staleness: the book reopens what it held, and the live
    // producer's market reopens right after.
    send(&provider, "-.-.-.snapshot_complete.-.-.-.-", snapshot(prematch.request_id, 3)).await;
    until_status(&stack, PREMATCH_EVENT, MarketStatus::Open).await;
    until_status(&stack, LIVE_EVENT, MarketStatus::Open).await;
    assert_eq!(changes(&stack, 1, "markets_reopened"), 1);
    source.abort();
    provider.close().await;
}
