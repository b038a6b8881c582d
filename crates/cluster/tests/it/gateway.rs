//! A gateway replica (`GatewayReplica`) beside a book leader in this process, on a real 3-node
//! NATS cluster: commands forwarded to the leader are answered once the replica holds them,
//! commit hooks see every record, the registry lists the gateway, and a gateway started later
//! recovers from its own snapshot and the journal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use book::{AccountId, Ack, Command, Idempotency, Origin};
use cluster::{BookNode, BookNodeOptions, GatewayReplica, GatewayReplicaOptions};
use domain::{Currency, Money};
use engine::Submission;
use tempfile::TempDir;

use crate::{runtime, start_cluster};

fn deposit(account: AccountId, i: u64) -> Submission {
    Submission {
        command: Command::Deposit {
            account,
            amount: Money::from_minor(100),
            payment_ref: format!("psp-{i}"),
            idempotency: Some(Idempotency { key: format!("gw-deposit-{i}"), body_hash: i }),
        },
        origin: Origin::system("test"),
    }
}

#[test]
fn a_gateway_replica_forwards_commands_and_shows_each_reply_on_a_book_that_holds_it() {
    let test = start_cluster(3);
    let dir = TempDir::new().expect("temporary directory");
    let mut node_options = BookNodeOptions::new(test.cluster.urls(), dir.path().join("book-a"));
    node_options.node_id = "book-a".into();
    node_options.lease = Duration::from_secs(2);
    let node = BookNode::start(node_options).expect("a book node");

    let records = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&records);
    let mut options = GatewayReplicaOptions::new(test.cluster.urls());
    options.gateway_id = "gateway-a".into();
    options.url = Some("http://127.0.0.1:1".into());
    options.data_dir = Some(dir.path().join("gateway-a"));
    let gateway = GatewayReplica::start(
        options.clone(),
        vec![Box::new(move |_: &engine::Committed<'_>| {
            seen.fetch_add(1, Ordering::Relaxed);
        })],
    )
    .expect("a gateway replica");
    let engine = gateway.engine().clone();
    let recovered_to = engine.stats().committed_position.load(Ordering::Acquire);
    // The first command waits for a leader (the client retries while none is subscribed).
    let opened = engine.submit(Command::OpenAccount { currency: Currency::EUR }).expect("an answer");
    let Ok(Ack::AccountOpened(account)) = opened else { panic!("{opened:?}") };
    for i in 0..30u64 {
        let receiver = engine
            .try_submit_then(deposit(account, i), move |book, _| book.wallet(account).expect("a wallet").balance)
            .expect("taken");
        let (reply, balance) = receiver.recv().expect("an outcome").expect("durable");
        assert!(matches!(reply, Ok(Ack::Transfer(_))), "{reply:?}");
        assert_eq!(balance.minor(), 100 * (i as i64 + 1), "the view is taken on a book holding the deposit");
    }
    // A retry of a decided key: the first reply, no money moved twice.
    let retried = engine.submit(deposit(account, 0)).expect("an answer");
    assert!(matches!(retried, Ok(Ack::Transfer(_))), "{retried:?}");
    assert_eq!(engine.read(move |book| book.wallet(account).unwrap().balance.minor()).unwrap(), 3_000);

    let runtime = runtime();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health = gateway.health();
        let view = runtime.block_on(gateway.cluster());
        let listed = view.as_ref().is_ok_and(|view| {
            view.gateways.iter().any(|g| g.node == "gateway-a" && g.url.as_deref() == Some("http://127.0.0.1:1"))
                && view.leader.as_ref().is_some_and(|(lease, _)| lease.node == "book-a")
                && view.followers.iter().all(|node| node.role != cluster::ROLE_GATEWAY)
        });
        if listed && health.leader_known && health.lag_records == 0 && health.stream_end == health.position {
            assert!(health.nats_connected);
            assert!(health.submit_count >= 32, "{health:?}");
            assert!(health.replica_failed.is_none());
            break;
        }
        assert!(Instant::now() < deadline, "health {health:?}, view {view:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let position = gateway.health().position;
    // Hooks ran once per record applied after recovery (the account, each deposit, the retry).
    assert_eq!(records.load(Ordering::Relaxed), position - recovered_to);
    let digest = engine.read(codec::digest).unwrap();
    let leader = node.status_with_digest();
    assert_eq!((leader.position, leader.digest.as_deref()), (position, Some(digest.as_str())));
    gateway.stop();

    // Started again, it recovers from its own snapshot (written at the stop) and reads on.
    let again = GatewayReplica::start(options, Vec::new()).expect("the gateway again");
    assert_eq!(again.engine().stats().committed_position.load(Ordering::Acquire), position);
    assert_eq!(again.engine().read(codec::digest).unwrap(), digest);
    let reply = again.engine().submit(deposit(account, 99)).expect("an answer");
    assert!(matches!(reply, Ok(Ack::Transfer(_))), "{reply:?}");
    assert_eq!(again.engine().read(move |book| book.wallet(account).unwrap().balance.minor()).unwrap(), 3_100);
    again.stop();
    node.stop().expect("a clean stop");
}
