//! How the UOF adapter connects, as the provider's SDKs do, against the real RabbitMQ on
//! 127.0.0.1:5672: `amqps://` through a real TLS endpoint started here (a tokio-rustls
//! terminator in front of the broker, its certificate issued by a test CA made with `rcgen`),
//! the customer's virtual host from the URL (made with `rabbitmqctl`), routing-key filters,
//! and a missing exchange (the broker's NOT_FOUND, retried with back-off, never declared).

use std::time::Duration;

use book::StaleMode;
use feed::transport::{amqp_backoff, amqp_session, follow_amqp_source, AmqpSource};
use feed::uof::Interest;
use feed::ProviderSettings;

use crate::amqp::{exchange, live, odds_change, prematch, provider, provider_at, recover, send, EVENT, RABBITMQ};
use crate::support::{wall_ms, Stack};
use crate::tls::{certificates, test_ca, tls_terminator, TlsTerminator};

const BROKER: &str = "127.0.0.1:5672";

fn settings() -> ProviderSettings {
    ProviderSettings { stale_after: Duration::from_secs(30), on_stale: StaleMode::Suspend }
}

fn amqps(host: &str, terminator: &TlsTerminator) -> String {
    format!("amqps://guest:guest@{host}:{}/%2f", terminator.address.port())
}

async fn until_errors(stack: &Stack, code: &str, at_least: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while stack.hub.metrics().connection_errors_of("uof", code) < at_least {
        assert!(tokio::time::Instant::now() < deadline, "no {code} connection error counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_with_the_ca_configured_connects_and_consumes() {
    let certificates = certificates();
    let terminator = tls_terminator(&certificates, BROKER.parse().expect("address")).await;
    let stack = Stack::start(settings());
    let exchange = exchange("tls");
    let (provider, _api, mut recoveries) = provider(&stack, &exchange, 1).await;
    let source = AmqpSource::new(amqps("localhost", &terminator), exchange.clone())
        .with_ca_pem(Some(certificates.ca_pem.clone()));
    let follower = tokio::spawn(follow_amqp_source(stack.hub.add_source("uof", "primary"), source, 5));
    // Messages published in the clear reach the adapter through TLS.
    recover(&stack, &provider, &mut recoveries, &[1]).await;
    send(&provider, &live("odds_change"), odds_change(1, "2.10", "1")).await;
    stack.until("market priced over amqps", |book| book.feed().market("uof", EVENT, "1").is_some()).await;
    assert_eq!(stack.hub.metrics().connection_errors_of("uof", "tls_certificate"), 0);
    follower.abort();
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_refuses_an_unknown_ca_and_a_wrong_host_name() {
    let certificates = certificates();
    let terminator = tls_terminator(&certificates, BROKER.parse().expect("address")).await;
    let exchange = exchange("tls-refused");
    let stack = Stack::start(settings());
    let (provider, _api, _recoveries) = provider(&stack, &exchange, 1).await;

    // The system's roots alone do not know the test CA.
    let unknown = AmqpSource::new(amqps("localhost", &terminator), exchange.clone());
    let failure = amqp_session(&unknown).await.expect_err("an unknown CA must be refused");
    assert_eq!(failure.code, "tls_certificate", "{failure}");
    assert!(failure.detail.contains("UnknownIssuer"), "{failure}");
    // Another CA configured: still unknown.
    let (other, _) = test_ca("another CA");
    let failure = amqp_session(&unknown.clone().with_ca_pem(Some(other.pem()))).await.expect_err("refused");
    assert_eq!(failure.code, "tls_certificate", "{failure}");
    // The right CA, the wrong host name: the certificate is for localhost, not 127.0.0.1.
    let wrong_host = AmqpSource::new(amqps("127.0.0.1", &terminator), exchange.clone())
        .with_ca_pem(Some(certificates.ca_pem.clone()));
    let failure = amqp_session(&wrong_host).await.expect_err("a wrong host name must be refused");
    assert_eq!(failure.code, "tls_certificate", "{failure}");
    assert!(failure.detail.contains("not valid for name \"127.0.0.1\""), "{failure}");

    // The adapter logs it, counts it and retries; it never connects.
    let follower = tokio::spawn(follow_amqp_source(stack.hub.add_source("uof", "primary"), unknown, 5));
    until_errors(&stack, "tls_certificate", 2).await;
    follower.abort();
    assert!(stack.read(|book| book.feed().market("uof", EVENT, "1").is_none()));
    provider.close().await;
}

/// A virtual host made for one test with `rabbitmqctl` (the tests run as root beside the
/// broker), deleted when dropped.
struct VirtualHost {
    name: String,
}

fn rabbitmqctl(arguments: &[&str]) {
    let output = std::process::Command::new("rabbitmqctl").args(arguments).output().unwrap_or_else(|error| {
        panic!("rabbitmqctl (beside the RabbitMQ on 127.0.0.1:5672, run as root) is needed to make a virtual host: {error}")
    });
    assert!(
        output.status.success(),
        "rabbitmqctl {arguments:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl VirtualHost {
    fn create() -> VirtualHost {
        let name = format!("sportsbook-test-{}-{}", std::process::id(), wall_ms());
        rabbitmqctl(&["add_vhost", &name]);
        let host = VirtualHost { name };
        rabbitmqctl(&["set_permissions", "-p", &host.name, "guest", ".*", ".*", ".*"]);
        host
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
}

impl Drop for VirtualHost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl").args(["delete_vhost", &self.name]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customers_virtual_host_comes_from_the_url() {
    let host = VirtualHost::create();
    let stack = Stack::start(settings());
    let exchange = exchange("vhost");
    let (provider, _api, mut recoveries) = provider_at(&stack, &host.url(), &exchange, 1).await;
    // The exchange is in that virtual host only: from `/` it is missing.
    let failure = amqp_session(&AmqpSource::new(RABBITMQ, exchange.clone())).await.expect_err("not in /");
    assert_eq!(failure.code, "not_found", "{failure}");
    let follower = tokio::spawn(follow_amqp_source(
        stack.hub.add_source("uof", "primary"),
        AmqpSource::new(host.url(), exchange.clone()),
        5,
    ));
    recover(&stack, &provider, &mut recoveries, &[1]).await;
    send(&provider, &live("odds_change"), odds_change(1, "2.10", "1")).await;
    stack.until("market priced from the virtual host", |book| book.feed().market("uof", EVENT, "1").is_some()).await;
    follower.abort();
    provider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_exchange_is_the_brokers_not_found_retried_with_backoff_and_never_declared() {
    let stack = Stack::start(settings());
    let missing = exchange("absent");
    let failure = amqp_session(&AmqpSource::new(RABBITMQ, missing.clone())).await.expect_err("no such exchange");
    assert_eq!(failure.code, "not_found", "{failure}");
    assert!(
        failure.detail.contains("NOT_FOUND") && failure.detail.contains(&missing),
        "as the broker said it: {failure}"
    );
    let follower = tokio::spawn(follow_amqp_source(
        stack.hub.add_source("uof", "primary"),
        AmqpSource::new(RABBITMQ, missing.clone()),
        5,
    ));
    // Back-off 250 ms doubling, each wait jittered to its upper half: in 1.5 s at most the
    // first attempt and three retries (at ≥ 0.125, 0.375, 0.875 s), and at least two.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let attempts = stack.hub.metrics().connection_errors_of("uof", "not_found");
    assert!((2..=4).contains(&attempts), "{attempts} attempts in 1.5 s");
    // Nothing was declared: a passive declaration still fails.
    let connection =
        lapin::Connection::connect(RABBITMQ, lapin::ConnectionProperties::default()).await.expect("rabbitmq");
    let channel = connection.create_channel().await.expect("channel");
    let passive = lapin::options::ExchangeDeclareOptions { passive: true, ..Default::default() };
    let found = channel
        .exchange_declare(&missing, lapin::ExchangeKind::Topic, passive, lapin::types::FieldTable::default())
        .await;
    assert!(found.is_err(), "the adapter must not declare the provider's exchange");
    let _ = connection.close(200, "done").await;
    // Once the provider's exchange exists, a retry binds to it.
    let (provider, _api, mut recoveries) = provider(&stack, &missing, 1).await;
    recover(&stack, &provider, &mut recoveries, &[1]).await;
    send(&provider, &live("odds_change"), odds_change(1, "2.10", "1")).await;
    stack.until("market priced after the retry", |book| book.feed().market("uof", EVENT, "1").is_some()).await;
    follower.abort();
    provider.close().await;
}

#[test]
fn the_backoff_doubles_to_its_ceiling_with_jitter_in_the_upper_half() {
    for attempt in 0..40 {
        let ceiling = (250u64 << attempt.min(16)).min(30_000);
        let low = amqp_backoff(attempt, |_| 0).as_millis() as u64;
        let high = amqp_backoff(attempt, |n| n - 1).as_millis() as u64;
        assert_eq!((low, high), (ceiling / 2, ceiling / 2 * 2), "attempt {attempt}");
        let any = amqp_backoff(attempt, |n| rand::random_range(0..n)).as_millis() as u64;
        assert!((low..=high).contains(&any));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bound_with_the_interests_routing_key_filters() {
    let stack = Stack::start(settings());
    let exchange = exchange("interest");
    let (provider, _api, mut recoveries) = provider(&stack, &exchange, 3).await;
    let source = AmqpSource::new(RABBITMQ, exchange.clone()).with_interest(Interest::Prematch);
    let follower = tokio::spawn(follow_amqp_source(stack.hub.add_source("uof", "primary"), source, 5));
    // System messages (alive, snapshot_complete) are bound whatever the interest.
    recover(&stack, &provider, &mut recoveries, &[3]).await;
    // A live message of another event never reaches the adapter; the pre-match one does.
    let other = odds_change(1, "2.50", "1").replace(EVENT, "sr:match:2");
    send(&provider, &live("odds_change").replace(".1.-", ".2.-"), other).await;
    send(&provider, &prematch("odds_change"), odds_change(3, "2.10", "1")).await;
    stack.until("pre-match market priced", |book| book.feed().market("uof", EVENT, "1").is_some()).await;
    // The live one was published first: had it been bound, it would have been applied.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(stack.read(|book| book.feed().market("uof", "sr:match:2", "1").is_none()));
    follower.abort();
    provider.close().await;
}

#[test]
fn a_ca_file_is_read_with_its_limits() {
    let dir = tempfile::tempdir().expect("dir");
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, certificates().ca_pem).expect("write");
    assert!(AmqpSource::read_ca_file(&good).expect("a PEM CA").contains("BEGIN CERTIFICATE"));
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate").expect("write");
    assert!(AmqpSource::read_ca_file(&empty).unwrap_err().contains("no PEM certificate"));
    assert!(AmqpSource::read_ca_file(&dir.path().join("missing.pem")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_and_an_unknown_virtual_host_are_the_brokers_errors_as_it_gave_them() {
    let wrong_password = AmqpSource::new("amqp://guest:wrong@127.0.0.1:5672/%2f", "any");
    let failure = amqp_session(&wrong_password).await.expect_err("a wrong password must be refused");
    assert_eq!(failure.code, "access_refused", "{failure}");
    assert!(failure.detail.contains("ACCESS_REFUSED"), "{failure}");
    let host = format!("sportsbook-test-none-{}", wall_ms());
    let unknown_host = AmqpSource::new(format!("amqp://guest:guest@127.0.0.1:5672/{host}"), "any");
    let failure = amqp_session(&unknown_host).await.expect_err("an unknown virtual host must be refused");
    assert_eq!(failure.code, "not_allowed", "{failure}");
    assert!(failure.detail.contains("NOT_ALLOWED") && failure.detail.contains(&host), "{failure}");
}
