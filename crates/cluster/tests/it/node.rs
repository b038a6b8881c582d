//! Book nodes in this process against a real 3-node NATS cluster: one leader elected, standbys
//! that follow, submissions over request/reply, a hand-over when the leader stops, and every
//! replica's book equal to the journal's. (Killing and pausing a leader process: the
//! `sportsbook` crate's `cluster` tests.)

use std::path::Path;
use std::time::{Duration, Instant};

use book::{Ack, Command, Idempotency, Origin};
use cluster::{BookClient, BookClientOptions, BookNode, BookNodeOptions, ClusterView, Role};
use domain::{Currency, Money};
use engine::Submission;
use journal_nats::cluster::LocalCluster;
use journal_nats::{NatsJournal, NatsJournalOptions};
use tempfile::TempDir;

use crate::{runtime, start_cluster};

fn node_options(cluster: &LocalCluster, dir: &Path, name: &str) -> BookNodeOptions {
    let mut options = BookNodeOptions::new(cluster.urls(), dir.join(name));
    options.node_id = name.to_owned();
    options.lease = Duration::from_secs(2);
    options.snapshot_every_commands = 40;
    options
}

async fn wait_for_cluster(client: &BookClient, followers: usize) -> ClusterView {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(view) = client.cluster().await {
            let leader_listed =
                view.leader.as_ref().is_some_and(|(_, info)| info.as_ref().is_some_and(|i| i.role == "leader"));
            if leader_listed && view.followers.iter().filter(|f| f.role == "follower").count() == followers {
                return view;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader with {followers} followers within 60 s: {:?}",
            client.cluster().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn deposit(account: book::AccountId, i: u64) -> Submission {
    Submission {
        command: Command::Deposit {
            account,
            amount: Money::from_minor(100 + i as i64),
            payment_ref: format!("psp-{i}"),
            idempotency: Some(Idempotency { key: format!("deposit-{i}"), body_hash: i }),
        },
        origin: Origin::system("test"),
    }
}

#[test]
fn one_leader_serves_standbys_follow_and_a_stopped_leader_hands_over() {
    let test = start_cluster(3);
    let dir = TempDir::new().expect("temporary directory");
    let mut nodes: Vec<Option<BookNode>> = ["book-a", "book-b", "book-c"]
        .iter()
        .map(|name| Some(BookNode::start(node_options(&test.cluster, dir.path(), name)).expect("start a node")))
        .collect();
    let runtime = runtime();
    let client =
        runtime.block_on(BookClient::connect(BookClientOptions::new(test.cluster.urls()))).expect("connect a client");
    let view = runtime.block_on(wait_for_cluster(&client, 2));
    let (lease, _) = view.leader.expect("a leader");
    assert_eq!(lease.pid, std::process::id());
    let leader_index =
        ["book-a", "book-b", "book-c"].iter().position(|name| *name == lease.node).expect("a node of ours");
    assert_eq!(nodes[leader_index].as_ref().expect("running").status().role, Role::Leader);

    let opened =
        runtime.block_on(client.submit(&Command::OpenAccount { currency: Currency::EUR }.into())).expect("an answer");
    let Ok(Ack::AccountOpened(account)) = opened else { panic!("open: {opened:?}") };
    let mut expected = 0i64;
    for i in 0..60 {
        let reply = runtime.block_on(client.submit(&deposit(account, i))).expect("an answer");
        assert!(matches!(reply, Ok(Ack::Transfer(_))), "{reply:?}");
        expected += 100 + i as i64;
    }
    // A retry with the same key is answered with the first reply and moves no money.
    let retried = runtime.block_on(client.submit(&deposit(account, 0))).expect("an answer");
    assert!(matches!(retried, Ok(Ack::Transfer(_))), "{retried:?}");

    // The leader stops cleanly: it releases the lease and a standby takes over at once.
    let stopping = Instant::now();
    nodes[leader_index].take().expect("running").stop().expect("a clean stop");
    let mut handed_over = None;
    for i in 60..120 {
        let reply = runtime.block_on(client.submit(&deposit(account, i))).expect("an answer");
        assert!(matches!(reply, Ok(Ack::Transfer(_))), "{reply:?}");
        handed_over.get_or_insert_with(|| stopping.elapsed());
        expected += 100 + i as i64;
    }
    println!("after a clean stop, the next deposit was answered {:?} later", handed_over.expect("measured"));
    let view = runtime.block_on(wait_for_cluster(&client, 1));
    assert_ne!(view.leader.expect("a leader").0.node, lease.node);

    // Every replica, and a book recovered from the journal alone, agree at one position.
    let mut journal_options = NatsJournalOptions::new(test.cluster.urls());
    journal_options.replicas = 3;
    let reader = NatsJournal::open(journal_options).expect("open the journal");
    let end = reader.stream_next_position().expect("the journal's end");
    let recovered = engine::recover(&reader, None, book::Config::default()).expect("recover from the journal");
    assert_eq!(recovered.report.position, end);
    let wallet = recovered.book.wallet(account).expect("the account");
    assert_eq!(wallet.balance.minor(), expected, "every acknowledged deposit exactly once");
    recovered.book.ledger().verify().expect("the ledger balances");
    let journal_digest = codec::digest(&recovered.book);
    let names: Vec<String> = nodes.iter().flatten().map(|node| node.status().node).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in &names {
        loop {
            let status = runtime.block_on(client.node_status(name)).expect("a status");
            if status.position == end {
                assert_eq!(status.digest.as_deref(), Some(journal_digest.as_str()), "{name} differs at {end}");
                break;
            }
            assert!(Instant::now() < deadline, "{name} stayed at {} of {end}", status.position);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The standby wrote snapshots of its own (every 40 commands) beside the leader's.
    let follower_dir = nodes
        .iter()
        .flatten()
        .find(|node| node.status().role == Role::Follower)
        .map(|node| dir.path().join(node.status().node).join("snapshots"))
        .expect("a follower");
    let snapshots = std::fs::read_dir(&follower_dir).expect("the follower's snapshots").count();
    assert!(snapshots > 0, "the follower wrote no snapshot in {}", follower_dir.display());
    for node in nodes.into_iter().flatten() {
        node.stop().expect("a clean stop");
    }
}
