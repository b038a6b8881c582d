//! Which producers a UOF provider waits for at a start: the active producers of the provider's
//! producers list (`GET {api}/v1/descriptions/producers.xml`, served by the stand-in), over the
//! real RabbitMQ. A producer never stored but listed active is waited for after a restart (and
//! recovers in full, while a stored point older than its window is clamped into it); a stored
//! producer the list shows inactive does not keep the provider stale; while the list cannot be
//! fetched the provider stays stale, and recovers once it can.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use book::{MarketStatus, Rejection};
use feed::names::{MarketDescriptions, Namer};
use feed::producers::ProducerDescription;
use feed::provider_api::ProviderApi;
use feed::recovery::RecoveryConfig;
use feed::transport::{follow_amqp, AmqpProvider, RecoveryRequest};
use feed::uof::UofNames;
use feed::uof_api::{ApiSettings, UofApi};
use feed::UofSettings;
use tokio::sync::mpsc::Receiver;

use crate::amqp::{alive_of, exchange, live, send, RABBITMQ, TOKEN};
use crate::restart::{
    accepted, bet, configure, prematch_routing, priced, producer_view, reschedule, settings, snapshot_complete, status,
    EVENT, PREMATCH_EVENT,
};
use crate::support::{wall_ms, Stack};

fn listed(id: u32, path: &str, active: bool, window_minutes: u32) -> ProducerDescription {
    ProducerDescription {
        id,
        name: path.to_uppercase(),
        description: format!("producer {id}"),
        api_url: format!("http://127.0.0.1/v1/{path}/"),
        active,
        scope: if id == 1 { "live" } else { "prematch" }.to_string(),
        stateful_recovery_window_in_minutes: Some(window_minutes),
    }
}

async fn rabbit(name: &str) -> (String, AmqpProvider) {
    let exchange = exchange(name);
    let provider = AmqpProvider::connect(RABBITMQ, &exchange, 1).await.unwrap_or_else(|error| {
        panic!("RabbitMQ must run on 127.0.0.1:5672 with guest/guest for the UOF adapter tests: {error}")
    });
    (exchange, provider)
}

/// The request each of `products` waits on now, by the stand-in's record of it (its path
/// names the producer), once they have settled (a request sent before the consumer was bound
/// is asked again once it is). Sends `alive`s meanwhile and drains the stand-in's queue.
async fn pending_requests(
    stack: &Stack,
    provider: &AmqpProvider,
    api: &ProviderApi,
    queue: &mut Receiver<RecoveryRequest>,
    products: &[u32],
) -> BTreeMap<u32, u64> {
    let path = |product: u32| if product == 1 { "liveodds" } else { "pre" };
    let current = || -> Option<BTreeMap<u32, u64>> {
        let received = api.received();
        products
            .iter()
            .map(|product| {
                let id = producer_view(stack, *product)?.recovering?;
                received.iter().any(|r| r.request_id == id && r.producer == path(*product)).then_some((*product, id))
            })
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        for product in products {
            alive_of(provider, *product).await;
        }
        while queue.try_recv().is_ok() {}
        if let Some(ids) = current() {
            if stack.hub.metrics().producer_changes_of("uof", products[0], "recovery") > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if current() == Some(ids.clone()) {
                    return ids;
                }
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "producers {products:?} never waited on requests");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn until_up(stack: &Stack, product: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while producer_view(stack, product).is_none_or(|view| view.down) {
        assert!(tokio::time::Instant::now() < deadline, "producer {product} never up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_open(stack: &Stack, event: &'static str) {
    stack
        .until(&format!("{event} open"), move |book| {
            book.feed()
                .market("uof", event, "1")
                .is_some_and(|m| book.market(m).expect("m").status == MarketStatus::Open)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_never_stored_but_listed_active_is_waited_for_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, state) = (dir.path().join("data"), dir.path().join("uof"));
    let (exchange, provider) = rabbit("listed").await;
    let (api, mut queue) = ProviderApi::bind("127.0.0.1:0".parse().expect("address"), TOKEN).await.expect("API");
    // The live producer's window is an hour; the pre-match one's 72 h.
    api.set_producers(Some(vec![listed(1, "liveodds", true, 60), listed(3, "pre", true, 4320)]));

    // The first run: both producers recover and price a market each; bets are taken.
    let player = {
        let stack = Stack::start_in(&data, settings());
        configure(&stack, &api, &state);
        let source =
            tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.into(), exchange.clone(), 5));
        let ids = pending_requests(&stack, &provider, &api, &mut queue, &[1, 3]).await;
        for (product, id) in &ids {
            send(&provider, "-.-.-.snapshot_complete.-.-.-.-", snapshot_complete(*product, *id)).await;
        }
        send(&provider, &live("odds_change"), priced(1, EVENT, "2.10", None)).await;
        send(&provider, &prematch_routing("odds_change"), priced(3, PREMATCH_EVENT, "1.90", None)).await;
        until_open(&stack, EVENT).await;
        until_open(&stack, PREMATCH_EVENT).await;
        reschedule(&stack, &provider, 1, EVENT, &live("fixture_change")).await;
        reschedule(&stack, &provider, 3, PREMATCH_EVENT, &prematch_routing("fixture_change")).await;
        let player = stack.funded_player();
        assert!(accepted(&bet(&stack, player, EVENT)));
        assert!(accepted(&bet(&stack, player, PREMATCH_EVENT)));
        source.abort();
        let _ = source.await;
        player
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // What a run that died within a second of the pre-match producer's first recovery (or a
    // data directory from before the list) leaves: only the live producer's point, two days
    // old, beyond its one-hour window.
    let two_days_ago = wall_ms() - 2 * 86_400_000;
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(state.join("recovery-uof.txt"), format!("1 {two_days_ago}\n")).expect("stored point");

    let stack = Stack::start_in(&data, settings());
    configure(&stack, &api, &state);
    assert_eq!(bet(&stack, player, EVENT), Err(Rejection::MarketSuspended));
    assert_eq!(bet(&stack, player, PREMATCH_EVENT), Err(Rejection::MarketSuspended));
    let source =
        tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.into(), exchange.clone(), 5));
    let ids = pending_requests(&stack, &provider, &api, &mut queue, &[1, 3]).await;
    let received = api.received();
    let request_of = |id: u64| received.iter().find(|r| r.request_id == id).expect("received").clone();
    let live_after = request_of(ids[&1]).after.expect("the live producer asks from its stored point");
    assert!(
        live_after >= wall_ms() - 3_600_000 && live_after <= wall_ms(),
        "a point older than the window is clamped into it: {live_after}"
    );
    assert_eq!(request_of(ids[&3]).after, None, "never stored: a full recovery");

    // The live producer's recovery completes: the pre-match producer, never stored, is still
    // waited for, so both markets (and the provider) stay stale.
    send(&provider, "-.-.-.snapshot_complete.-.-.-.-", snapshot_complete(1, ids[&1])).await;
    until_up(&stack, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bet(&stack, player, PREMATCH_EVENT), Err(Rejection::MarketSuspended), "waits for its producer");
    assert_eq!(bet(&stack, player, EVENT), Err(Rejection::MarketSuspended));
    assert_eq!(stack.hub.stale_providers(), vec!["uof".to_string()]);

    // Its replay and snapshot_complete: both markets reopen.
    send(&provider, &prematch_routing("odds_change"), priced(3, PREMATCH_EVENT, "1.95", Some(ids[&3]))).await;
    send(&provider, "-.-.-.snapshot_complete.-.-.-.-", snapshot_complete(3, ids[&3])).await;
    until_open(&stack, PREMATCH_EVENT).await;
    until_open(&stack, EVENT).await;
    assert!(accepted(&bet(&stack, player, PREMATCH_EVENT)));
    assert!(accepted(&bet(&stack, player, EVENT)));
    assert!(stack.hub.stale_providers().is_empty());
    source.abort();
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_producer_the_list_shows_inactive_does_not_keep_the_provider_stale() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, state) = (dir.path().join("data"), dir.path().join("uof"));
    let (exchange, provider) = rabbit("inactive").await;
    let (api, mut queue) = ProviderApi::bind("127.0.0.1:0".parse().expect("address"), TOKEN).await.expect("API");
    api.set_producers(Some(vec![listed(1, "liveodds", true, 4320), listed(4, "betpal", false, 4320)]));
    let recent = wall_ms() - 60_000;
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(state.join("recovery-uof.txt"), format!("1 {recent}\n4 {recent}\n")).expect("stored points");

    let stack = Stack::start_in(&data, settings());
    configure(&stack, &api, &state);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stack.hub.metrics().producer_lists_of("uof", "fetched") == 0 || producer_view(&stack, 4).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the inactive stored producer never dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let source =
        tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.into(), exchange.clone(), 5));
    let ids = pending_requests(&stack, &provider, &api, &mut queue, &[1]).await;
    assert_eq!(api.received().iter().find(|r| r.request_id == ids[&1]).expect("received").after, Some(recent));
    send(&provider, &live("odds_change"), priced(1, EVENT, "2.10", Some(ids[&1]))).await;
    send(&provider, "-.-.-.snapshot_complete.-.-.-.-", snapshot_complete(1, ids[&1])).await;
    until_open(&stack, EVENT).await;
    assert!(stack.hub.stale_providers().is_empty(), "the inactive producer is not waited for");
    reschedule(&stack, &provider, 1, EVENT, &live("fixture_change")).await;
    let player = stack.funded_player();
    assert!(accepted(&bet(&stack, player, EVENT)));
    assert!(producer_view(&stack, 4).is_none(), "never heard of: not recovered either");
    source.abort();
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_producers_list_keeps_the_provider_stale_until_it_comes_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (exchange, provider) = rabbit("unlisted").await;
    let (api, mut queue) = ProviderApi::bind("127.0.0.1:0".parse().expect("address"), TOKEN).await.expect("API");
    api.set_producers(None);
    let stack = Stack::start_in(dir.path(), settings());
    // The list is asked again after 200 ms, doubling to 1 s.
    let recovery = RecoveryConfig {
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        ..RecoveryConfig::default()
    };
    stack.hub.configure_uof(
        "uof",
        UofSettings {
            api: Some(UofApi::new(ApiSettings::new(api.base_url(), TOKEN)).expect("API settings")),
            recovery,
            names: Some(Arc::new(UofNames::new(Namer::new(MarketDescriptions::bundled())))),
            ..UofSettings::default()
        },
    );
    let source =
        tokio::spawn(follow_amqp(stack.hub.add_source("uof", "primary"), RABBITMQ.into(), exchange.clone(), 5));
    // The live producer, heard of, recovers; its market is priced and rescheduled.
    let ids = pending_requests(&stack, &provider, &api, &mut queue, &[1]).await;
    send(&provider, "-.-.-.snapshot_complete.-.-.-.-", snapshot_complete(1, ids[&1])).await;
    until_up(&stack, 1).await;
    send(&provider, &live("odds_change"), priced(1, EVENT, "2.10", None)).await;
    stack.until("the market", |book| book.feed().market("uof", EVENT, "1").is_some()).await;
    reschedule(&stack, &provider, 1, EVENT, &live("fixture_change")).await;
    let player = stack.funded_player();

    // Without the list nothing says which producers to wait for: stale, bets refused, the
    // failures counted and asked again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stack.hub.metrics().producer_lists_of("uof", "status") < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the list is not asked again");
        alive_of(&provider, 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&stack, EVENT), MarketStatus::Suspended);
    assert_eq!(bet(&stack, player, EVENT), Err(Rejection::MarketSuspended));
    assert_eq!(stack.hub.stale_providers(), vec!["uof".to_string()]);
    assert_eq!(stack.hub.metrics().producer_lists_of("uof", "fetched"), 0);

    // The list back: the live producer is all it lists, and it is up: the market reopens.
    api.set_producers(Some(vec![listed(1, "liveodds", true, 4320)]));
    until_open(&stack, EVENT).await;
    assert!(accepted(&bet(&stack, player, EVENT)));
    assert!(stack.hub.stale_providers().is_empty());
    assert_eq!(stack.hub.metrics().producer_lists_of("uof", "fetched"), 1);
    source.abort();
    provider.close().await;
}
