//! A restart on an existing data directory, as an operator sees it through bets: a Unified
//! Odds Feed provider's market left open by the previous run refuses bets from the moment the
//! hub is configured until the `snapshot_complete` of the recovery the new run asked for (live
//! prices and a `snapshot_complete` of another request reopen nothing), then takes them; a
//! producer first heard of after that recovery has its markets held until its own recovery
//! completes; a JSON provider, which has no such recovery, takes bets at once after a restart.

use std::sync::Arc;
use std::time::Duration;

use book::{Ack, BetStatus, MarketStatus, Rejection, StaleMode};
use feed::names::{MarketDescriptions, Namer};
use feed::provider_api::ProviderApi;
use feed::simulator::{FeedSimulator, SimulatorConfig};
use feed::transport::{follow_amqp, follow_websocket, AmqpProvider, RecoveryRequest, WebSocketProvider};
use feed::uof::UofNames;
use feed::uof_api::{ApiSettings, UofApi};
use feed::{ProviderSettings, UofSettings};
use tokio::sync::mpsc::Receiver;

use crate::amqp::{alive_of, exchange, live, send, RABBITMQ, TOKEN};
use crate::support::{single, wall_ms, Stack};

pub(crate) const EVENT: &str = "sr:match:1";
/// An event of the pre-match producer (3), which the restarted run first hears of after its
/// start recovery.
pub(crate) const PREMATCH_EVENT: &str = "sr:match:31";

pub(crate) fn settings() -> ProviderSettings {
    ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend }
}

/// The hub's provider `uof` as `serve` configures it: the stand-in's API, recovery points
/// stored in `state`.
pub(crate) fn configure(stack: &Stack, api: &ProviderApi, state: &std::path::Path) {
    stack.hub.configure_uof(
        "uof",
        UofSettings {
            api: Some(UofApi::new(ApiSettings::new(api.base_url(), TOKEN)).expect("API settings")),
            state_dir: Some(state.to_path_buf()),
            names: Some(Arc::new(UofNames::new(Namer::new(MarketDescriptions::bundled())))),
            ..UofSettings::default()
        },
    );
}

pub(crate) fn bet(stack: &Stack, player: book::AccountId, event: &'static str) -> book::Reply {
    let (selection, price) = stack.read(move |book| {
        let market = book.feed().market("uof", event, "1").expect("market");
        let selection = book.feed().selection(market, "1").expect("outcome 1");
        (selection, book.selection(selection).expect("selection").price)
    });
    stack.submit(single(player, selection, price, 100))
}

pub(crate) fn accepted(reply: &book::Reply) -> bool {
    matches!(reply, Ok(Ack::BetPlaced { status: BetStatus::Accepted, .. }))
}

pub(crate) fn status(stack: &Stack, event: &'static str) -> MarketStatus {
    stack.read(move |book| book.market(book.feed().market("uof", event, "1").expect("market")).expect("m").status)
}

pub(crate) fn producer_view(stack: &Stack, product: u32) -> Option<feed::runtime::ProducerView> {
    let view = stack.hub.providers().into_iter().find(|view| view.provider == "uof")?;
    view.producers.into_iter().find(|producer| producer.product == product)
}

/// Waits for the request the producer is waiting on now (one sent before the consumer was
/// bound is asked again once it is), sending `alive`s meanwhile.
async fn pending_request(
    stack: &Stack,
    provider: &AmqpProvider,
    recoveries: &mut Receiver<RecoveryRequest>,
    product: u32,
) -> RecoveryRequest {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut latest = None;
    loop {
        alive_of(provider, product).await;
        while let Ok(request) = recoveries.try_recv() {
            latest = Some(request);
        }
        if let Some(request) = latest {
            let recovering = producer_view(stack, product).and_then(|view| view.recovering);
            if recovering == Some(request.request_id)
                && stack.hub.metrics().producer_changes_of("uof", product, "recovery") > 0
            {
                // Settled: the consumer is bound (an alive came through) and nothing newer came.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let recovering = producer_view(stack, product).and_then(|view| view.recovering);
                if recovering == Some(request.request_id) && recoveries.is_empty() {
                    return request;
                }
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "producer {product} never waited on a request");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn snapshot_complete(product: u32, request_id: u64) -> String {
    format!(r#"<snapshot_complete request_id="{request_id}" product="{product}" timestamp="{}"/>"#, wall_ms())
}

/// Market 1 of `event` priced by producer `product` (outcome 1 at `home`), active;
/// `request_id` marks a replay.
pub(crate) fn priced(product: u32, event: &str, home: &str, request_id: Option<u64>) -> String {
    let request = request_id.map(|id| format!(r#" request_id="{id}""#)).unwrap_or_default();
    format!(
        r#"<odds_change product="{product}" event_id="{event}" timestamp="{}"{request}><odds>
        <market id="1" status="1"><outcome id="1" odds="{home}" active="1"/><outcome id="2" odds="3.40" active="1"/><outcome id="3" odds="3.00" active="1"/></market>
        </odds></odds_change>"#,
        wall_ms()
    )
}

/// The event starts in an hour (bets on an event past its start and not in play are refused).
pub(crate) async fn reschedule(
    stack: &Stack,
    provider: &AmqpProvider,
    product: u32,
    event: &'static str,
    routing: &str,
) {
    let starts_at = wall_ms() + 3_600_000;
    let xml = format!(
        r#"<fixture_change product="{product}" event_id="{event}" timestamp="{}" change_type="1" start_time="{starts_at}"/>"#,
        wall_ms()
    );
    send(provider, routing, xml).await;
    stack
        .until(&format!("{event} rescheduled"), move |book| {
            let id = book.feed().event("uof", event).expect("event");
            book.events().get(id.index()).expect("event").starts_at == starts_at
        })
        .await;
}

pub(crate) fn prematch_routing(kind: &str) -> String {
    format!("lo.pre.-.{kind}.1.sr:match.31.-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_uof_providers_open_market_refuses_bets_until_its_recovery_completes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, state) = (dir.path().join("data"), dir.path().join("uof"));
    let exchange = exchange("restart");
    let provider = AmqpProvider::connect(RABBITMQ, &exchange, 1).await.unwrap_or_else(|error| {
        panic!("RabbitMQ must run on 127.0.0.1:5672 with guest/guest for the UOF adapter tests: {error}")
    });
    let (api, mut recoveries) =
        ProviderApi::bind("127.0.0.1:0".parse().expect("address"), TOKEN).await.expect("provider API");

    // The first run: the live producer recovers, prices the market, a bet is taken; its
    // recovery point is stored.
    let player = {
        let stack = Stack::start_in(&data, settings());
        configure(&stack, &api, &state);
        assert_eq!(stack.hub.stale_providers(), vec!["uof".to_string()], "a first start recovers too");
        let source =
            tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.into(), exchange.clone(), 5));
        let request = pending_request(&stack, &provider, &mut recoveries, 1).await;
        send(&provider, "-.-.-.snapshot_complete.-.-.-.-", snapshot_complete(1, request.request_id)).await;
        send(&provider, &live("odds_change"), priced(1, EVENT, "2.10", None)).await;
        stack
            .until("market open", |book| {
                book.feed()
                    .market("uof", EVENT, "1")
                    .is_some_and(|m| book.market(m).expect("m").status == MarketStatus::Open)
            })
            .await;
        assert!(stack.hub.stale_providers().is_empty());
        reschedule(&stack, &provider, 1, EVENT, &live("fixture_change")).await;
        let player = stack.funded_player();
        let reply = bet(&stack, player, EVENT);
        assert!(accepted(&reply), "the first run takes bets: {reply:?}");
        alive_of(&provider, 1).await;
        let stored = state.join("recovery-uof.txt");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&stored).unwrap_or_default().starts_with("1 ") {
            assert!(tokio::time::Instant::now() < deadline, "recovery point never stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        source.abort();
        let _ = source.await;
        player
    };
    while recoveries.try_recv().is_ok() {}

    // The restart: the market the first run left open refuses bets as soon as the hub knows
    // the provider, before its source even starts.
    let stack = Stack::start_in(&data, settings());
    assert_eq!(status(&stack, EVENT), MarketStatus::Open, "left open by the first run");
    assert!(accepted(&bet(&stack, player, EVENT)), "without the hub, the stale market takes bets");
    configure(&stack, &api, &state);
    assert_eq!(bet(&stack, player, EVENT), Err(Rejection::MarketSuspended));
    assert_eq!(stack.hub.stale_providers(), vec!["uof".to_string()], "/readyz says feed_stale");
    let view = producer_view(&stack, 1).expect("the producer of the previous run is known at start");
    assert!(view.down, "{view:?}");
    let source =
        tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.into(), exchange.clone(), 5));
    let request = pending_request(&stack, &provider, &mut recoveries, 1).await;
    assert!(request.after > 0, "the restart asks from the stored point: {request:?}");

    // Live prices while the replay runs, and a snapshot_complete of another request: still
    // refused.
    send(&provider, &live("odds_change"), priced(1, EVENT, "2.20", None)).await;
    send(&provider, "-.-.-.snapshot_complete.-.-.-.-", snapshot_complete(1, request.request_id + 1_000)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stack.hub.metrics().producer_changes_of("uof", 1, "stale_snapshot") < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the other request's snapshot_complete never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack
        .until("the live price applied", |book| {
            let market = book.feed().market("uof", EVENT, "1").expect("market");
            let selection = book.feed().selection(market, "1").expect("outcome 1");
            book.selection(selection).expect("selection").price.decimal() == "2.20"
        })
        .await;
    assert_eq!(bet(&stack, player, EVENT), Err(Rejection::MarketSuspended));
    assert_eq!(stack.hub.stale_providers(), vec!["uof".to_string()]);

    // The replay and its snapshot_complete: the market reopens and takes bets.
    send(&provider, &live("odds_change"), priced(1, EVENT, "2.30", Some(request.request_id))).await;
    send(&provider, "-.-.-.snapshot_complete.-.-.-.-", snapshot_complete(1, request.request_id)).await;
    stack
        .until("reopened", |book| {
            book.feed()
                .market("uof", EVENT, "1")
                .is_some_and(|m| book.market(m).expect("m").status == MarketStatus::Open)
        })
        .await;
    assert!(accepted(&bet(&stack, player, EVENT)), "open again after the recovery");
    assert!(stack.hub.stale_providers().is_empty());

    // A producer first heard of now: its active market is held until its own recovery.
    let heard = stack.hub.metrics().producer_changes_of("uof", 3, "recovery");
    send(&provider, &prematch_routing("odds_change"), priced(3, PREMATCH_EVENT, "1.90", None)).await;
    stack.until("the pre-match market", |book| book.feed().market("uof", PREMATCH_EVENT, "1").is_some()).await;
    reschedule(&stack, &provider, 3, PREMATCH_EVENT, &prematch_routing("fixture_change")).await;
    assert_eq!(status(&stack, PREMATCH_EVENT), MarketStatus::Suspended, "held: not recovered yet");
    assert_eq!(bet(&stack, player, PREMATCH_EVENT), Err(Rejection::MarketSuspended));
    let request = pending_request(&stack, &provider, &mut recoveries, 3).await;
    assert!(stack.hub.metrics().producer_changes_of("uof", 3, "recovery") > heard);
    assert_eq!(status(&stack, PREMATCH_EVENT), MarketStatus::Suspended);
    send(&provider, &prematch_routing("odds_change"), priced(3, PREMATCH_EVENT, "1.95", Some(request.request_id)))
        .await;
    send(&provider, "-.-.-.snapshot_complete.-.-.-.-", snapshot_complete(3, request.request_id)).await;
    stack
        .until("the pre-match market reopened", |book| {
            book.feed()
                .market("uof", PREMATCH_EVENT, "1")
                .is_some_and(|m| book.market(m).expect("m").status == MarketStatus::Open)
        })
        .await;
    assert!(accepted(&bet(&stack, player, PREMATCH_EVENT)));
    assert_eq!(status(&stack, EVENT), MarketStatus::Open, "the live producer's market stayed open");
    source.abort();
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_json_provider_takes_bets_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _recoveries) =
        WebSocketProvider::bind("127.0.0.1:0".parse().expect("address")).await.expect("bind a provider");
    let mut simulator = FeedSimulator::new(SimulatorConfig::new("sim", 1, 5));
    let opening = simulator.start(wall_ms());
    let (event, market) = simulator.markets()[0].clone();
    let selection_of = |stack: &Stack| {
        let (event, market) = (event.clone(), market.clone());
        stack.read(move |book| {
            let market = book.feed().market("sim", &event, &market).expect("market");
            let selection = book.market(market).expect("m").selections[0];
            (selection, book.selection(selection).expect("selection").price)
        })
    };
    let player = {
        let stack = Stack::start_in(dir.path(), settings());
        let source = tokio::spawn(follow_websocket(stack.hub.add_source("sim", "primary"), server.url()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.publish(&opening);
        let (event, market) = (event.clone(), market.clone());
        stack
            .until("the simulator's market", move |book| {
                book.feed()
                    .market("sim", &event, &market)
                    .is_some_and(|m| book.market(m).expect("m").status == MarketStatus::Open)
            })
            .await;
        let player = stack.funded_player();
        let (selection, price) = selection_of(&stack);
        assert!(accepted(&stack.submit(single(player, selection, price, 100))));
        source.abort();
        let _ = source.await;
        player
    };
    // The restart: the provider is followed again and never answers a recovery; its market
    // takes bets at once and goes on taking them.
    let stack = Stack::start_in(dir.path(), settings());
    let source = tokio::spawn(follow_websocket(stack.hub.add_source("sim", "primary"), server.url()));
    let (selection, price) = selection_of(&stack);
    assert!(accepted(&stack.submit(single(player, selection, price, 100))), "not stranded at start");
    for _ in 0..10 {
        server.alive("sim", wall_ms());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stack.hub.stale_providers().is_empty());
    let (selection, price) = selection_of(&stack);
    assert!(accepted(&stack.submit(single(player, selection, price, 100))), "not stranded after a second");
    source.abort();
}
