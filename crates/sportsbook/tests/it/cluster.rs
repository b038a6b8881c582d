//! Cluster mode (issue 15 item 2): `sportsbook book` processes on a real 3-node NATS cluster
//! (started here; the test fails saying why when `nats-server` is missing). The leader is
//! killed with SIGKILL under load, and paused with SIGSTOP past its lease; clients submit keyed
//! deposits through `cluster::BookClient`, retrying with the same key. Checked each time: a
//! standby serves within 5 s, every acknowledged deposit is in the journal exactly once (one
//! transfer per key, the one acknowledged), the ledger balances, and every replica's state
//! digest equals that of a book replayed from the journal alone.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use book::{AccountId, Ack, Book, Command, Idempotency, Origin, TransferId};
use cluster::{BookClient, BookClientOptions, ClusterView};
use engine::Submission;
use journal::Journal;
use journal_nats::cluster::LocalCluster;
use journal_nats::{NatsJournal, NatsJournalOptions};
use tempfile::TempDir;

use crate::server::binary;

const LEASE: &str = "2s";
const LOAD_CLIENTS: u64 = 6;
const FAILOVER_MAX: Duration = Duration::from_secs(5);

pub(crate) struct BookProcess {
    child: Child,
    pub(crate) node: String,
    log: PathBuf,
}

impl BookProcess {
    pub(crate) fn start(cluster: &LocalCluster, dir: &Path, node: &str) -> BookProcess {
        let log = dir.join(format!("{node}-{}.log", unique()));
        let stderr = std::fs::File::create(&log).expect("a log file");
        let mut child = binary()
            .args(["book", "--nats", &cluster.urls().join(","), "--lease", LEASE, "--node-id", node])
            .args(["--snapshot-every", "300", "--data-dir"])
            .arg(dir.join(node))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start `sportsbook book`");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("its first line");
        assert!(line.contains(r#""role": "book""#) && line.contains(node), "unexpected first line {line:?}");
        BookProcess { child, node: node.to_owned(), log }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal the book process");
    }
}

impl Drop for BookProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
}

/// Waits until the lease names a leader whose registry entry says so, with `followers`
/// standbys following. On failure, says what the cluster looks like and what each of `books`
/// logged (a standby that never joins says why only there).
async fn wait_for_cluster(
    client: &BookClient,
    books: &[BookProcess],
    followers: usize,
    not: Option<&str>,
) -> ClusterView {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(view) = client.cluster().await {
            let leader_ok = view.leader.as_ref().is_some_and(|(lease, info)| {
                Some(lease.node.as_str()) != not && info.as_ref().is_some_and(|info| info.role == "leader")
            });
            if leader_ok && view.followers.iter().filter(|node| node.role == "follower").count() == followers {
                return view;
            }
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = books.iter().map(|book| format!("--- {}:\n{}", book.node, book.log())).collect();
            panic!("no leader with {followers} followers: {:?}\n{}", client.cluster().await, logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn deposit(account: AccountId, i: u64) -> Submission {
    Submission {
        command: Command::Deposit {
            account,
            amount: domain::Money::from_minor(100 + i as i64),
            payment_ref: format!("psp-{i}"),
            idempotency: Some(Idempotency { key: format!("deposit-{i}"), body_hash: i }),
        },
        origin: Origin::system("cluster-test"),
    }
}

/// One acknowledged deposit: its number, the transfer the book answered with, when its first
/// attempt was sent and when the answer came.
#[derive(Clone, Copy, Debug)]
struct Acked {
    i: u64,
    transfer: TransferId,
    sent: Instant,
    answered: Instant,
}

/// Clients submitting keyed deposits until `stop`, each retried with its key until answered.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(runtime: &tokio::runtime::Runtime, client: &BookClient, account: AccountId) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicU64::new(0));
        let tasks = (0..LOAD_CLIENTS)
            .map(|_| {
                let (stop, acked, next, client) = (stop.clone(), acked.clone(), next.clone(), client.clone());
                runtime.spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let sent = Instant::now();
                        let reply = client.submit(&deposit(account, i)).await;
                        match reply {
                            Ok(Ok(Ack::Transfer(transfer))) => {
                                acked.lock().expect("acked").push(Acked { i, transfer, sent, answered: Instant::now() })
                            }
                            other => panic!("deposit {i} was not acknowledged: {other:?}"),
                        }
                    }
                })
            })
            .collect();
        Load { stop, acked, tasks }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().expect("acked").len()
    }

    fn wait_for_acks(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.acked_count() < count {
            assert!(Instant::now() < deadline, "only {} deposits acknowledged", self.acked_count());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(self, runtime: &tokio::runtime::Runtime) -> Vec<Acked> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            runtime.block_on(task).expect("a load client panicked");
        }
        let acked = self.acked.lock().expect("acked").clone();
        acked
    }
}

/// How long after `event` the first deposit whose first attempt was sent after it was
/// answered: only a new leader can have answered it.
fn served_after(acked: &[Acked], event: Instant) -> Duration {
    acked
        .iter()
        .filter(|ack| ack.sent > event)
        .map(|ack| ack.answered - event)
        .min()
        .expect("a deposit sent after the event was acknowledged")
}

/// Replays the journal from its start, as recovery does, and checks every acknowledged deposit
/// is in the book exactly once: each key decided once, with the transfer acknowledged, and the
/// balance their sum. Returns the book's digest and the journal's end.
fn check_journal(cluster: &LocalCluster, account: AccountId, acked: &[Acked]) -> (String, u64) {
    let mut options = NatsJournalOptions::new(cluster.urls());
    options.replicas = 3;
    let reader = NatsJournal::open(options).expect("open the journal");
    let mut book = Book::new(book::Config::default());
    let mut decided: BTreeMap<String, Vec<TransferId>> = BTreeMap::new();
    let mut events = Vec::new();
    let mut markers = 0;
    reader
        .read_from(0, &mut |_, payload| {
            let batch = codec::decode_batch(payload).expect("a batch");
            markers += usize::from(batch.commands.is_empty());
            for command in &batch.commands {
                let reply = book.apply(batch.timestamp, command, &mut events);
                if let (Command::Deposit { idempotency: Some(key), .. }, Ok(Ack::Transfer(transfer))) =
                    (command, &reply)
                {
                    let transfers = decided.entry(key.key.clone()).or_default();
                    if !transfers.contains(transfer) {
                        transfers.push(*transfer);
                    }
                }
            }
            Ok(())
        })
        .expect("read the journal");
    assert!(markers >= 2, "every takeover appends a leader marker; found {markers}");
    let mut expected = 0i64;
    for ack in acked {
        let transfers = decided.get(&format!("deposit-{}", ack.i)).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            transfers,
            [ack.transfer],
            "deposit {} decided {transfers:?}, acknowledged {:?}",
            ack.i,
            ack.transfer
        );
        expected += 100 + ack.i as i64;
    }
    assert_eq!(decided.len(), acked.len(), "deposits in the journal that nobody acknowledged");
    assert_eq!(book.wallet(account).expect("the account").balance.minor(), expected);
    book.ledger().verify().expect("the ledger balances");
    book.check_invariants().expect("the book's invariants hold");
    (codec::digest(&book), reader.stream_next_position().expect("the journal's end"))
}

/// Waits until every node's book stands at `end` and checks its digest there.
fn check_replicas(runtime: &tokio::runtime::Runtime, client: &BookClient, nodes: &[&str], digest: &str, end: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for node in nodes {
        loop {
            let status = runtime.block_on(client.node_status(node)).expect("a node's status");
            if status.position == end {
                assert_eq!(status.digest.as_deref(), Some(digest), "{node}'s book differs at {end}");
                break;
            }
            assert!(Instant::now() < deadline, "{node} stayed at {} of {end}: {status:?}", status.position);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Every record from the first `successor` wrote on carries its writer id (`<node>-r<lease
/// revision>-<position>`): `deposed`, who wrote before it, appended nothing after.
async fn check_writers_after_takeover(cluster: &LocalCluster, successor: &str, deposed: &str) {
    let client = async_nats::connect(cluster.urls()).await.expect("connect");
    let stream = async_nats::jetstream::new(client)
        .get_stream(journal_nats::STREAM_DEFAULT)
        .await
        .expect("the journal's stream");
    let last = stream.get_info().await.expect("the stream's state").state.last_sequence;
    let mut writers = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.expect("a record");
        let id = message.headers.get("Nats-Msg-Id").map(|id| id.as_str().to_owned()).unwrap_or_default();
        writers.push(id.split("-r").next().unwrap_or_default().to_owned());
    }
    let first = writers.iter().position(|writer| writer == successor).expect("the successor appended");
    assert!(writers[..first].iter().all(|writer| writer == deposed), "{writers:?}");
    assert!(
        writers[first..].iter().all(|writer| writer == successor),
        "{deposed} appended after {successor}: {writers:?}"
    );
}

fn open_account(runtime: &tokio::runtime::Runtime, client: &BookClient) -> AccountId {
    let opened = runtime
        .block_on(client.submit(&Command::OpenAccount { currency: domain::Currency::EUR }.into()))
        .expect("an answer");
    let Ok(Ack::AccountOpened(account)) = opened else { panic!("open an account: {opened:?}") };
    account
}

pub(crate) fn start_nats(dir: &Path) -> LocalCluster {
    LocalCluster::start(&dir.join("nats"), 3).unwrap_or_else(|err| panic!("cannot start nats-server: {err}"))
}

fn client_for(runtime: &tokio::runtime::Runtime, cluster: &LocalCluster) -> BookClient {
    let mut options = BookClientOptions::new(cluster.urls());
    options.retry_for = Duration::from_secs(30);
    options.attempt_timeout = Duration::from_secs(1);
    runtime.block_on(BookClient::connect(options)).expect("connect a book client")
}

#[test]
fn kill_dash_nine_of_the_leader_under_load_a_standby_serves_within_5_s_and_nothing_is_lost_or_doubled() {
    let dir = TempDir::new().expect("temporary directory");
    let nats = start_nats(dir.path());
    let names = ["book-a", "book-b", "book-c"];
    let mut books: Vec<BookProcess> = names.iter().map(|name| BookProcess::start(&nats, dir.path(), name)).collect();
    let runtime = runtime();
    let client = client_for(&runtime, &nats);
    let view = runtime.block_on(wait_for_cluster(&client, &books, 2, None));
    let leader = view.leader.expect("a leader").0;
    let account = open_account(&runtime, &client);

    let load = Load::start(&runtime, &client, account);
    load.wait_for_acks(300, Duration::from_secs(60));
    let index = books.iter().position(|book| book.node == leader.node).expect("the leader is ours");
    assert_eq!(books[index].pid() as u32, leader.pid, "the lease names the leader's pid");
    let killed_at = Instant::now();
    books[index].child.kill().expect("SIGKILL the leader");
    let _ = books[index].child.wait();
    let acked_at_kill = load.acked_count();
    load.wait_for_acks(acked_at_kill + 300, Duration::from_secs(60));
    let acked = load.stop(&runtime);
    let failover = served_after(&acked, killed_at);
    println!(
        "SIGKILL of the leader {} under load: a standby served {failover:?} later ({} deposits acknowledged)",
        leader.node,
        acked.len()
    );
    assert!(failover < FAILOVER_MAX, "the first deposit after the kill was answered {failover:?} later");

    // The killed node comes back as a standby: its snapshots and the journal rebuild its book.
    books[index] = BookProcess::start(&nats, dir.path(), &leader.node);
    let view = runtime.block_on(wait_for_cluster(&client, &books, 2, Some(&leader.node)));
    assert!(view.followers.iter().any(|node| node.node == leader.node), "{view:?}");
    let (digest, end) = check_journal(&nats, account, &acked);
    check_replicas(&runtime, &client, &names, &digest, end);
    // The standbys wrote snapshots of their warm books (every 300 commands) as they followed.
    for node in names.iter().filter(|node| **node != leader.node) {
        let snapshots = std::fs::read_dir(dir.path().join(node).join("snapshots")).map(Iterator::count);
        assert!(snapshots.is_ok_and(|count| count > 0), "{node} wrote no snapshot");
    }
    for book in &books {
        assert!(!book.log().contains("panicked"), "{} panicked:\n{}", book.node, book.log());
    }
}

#[test]
fn a_leader_paused_past_its_lease_is_fenced_and_steps_down_when_it_resumes() {
    let dir = TempDir::new().expect("temporary directory");
    let nats = start_nats(dir.path());
    let names = ["book-p", "book-q"];
    let books: Vec<BookProcess> = names.iter().map(|name| BookProcess::start(&nats, dir.path(), name)).collect();
    let runtime = runtime();
    let client = client_for(&runtime, &nats);
    let leader = runtime.block_on(wait_for_cluster(&client, &books, 1, None)).leader.expect("a leader").0;
    let paused = books.iter().find(|book| book.node == leader.node).expect("the leader is ours");
    let account = open_account(&runtime, &client);

    let load = Load::start(&runtime, &client, account);
    load.wait_for_acks(100, Duration::from_secs(60));
    let paused_at = Instant::now();
    paused.signal(rustix::process::Signal::STOP);
    // Past its lease: the standby takes over and serves, while requests the queue group hands
    // the paused leader wait in its socket.
    let view = runtime.block_on(wait_for_cluster(&client, &books, 0, Some(&leader.node)));
    let new_leader = view.leader.expect("a new leader").0;
    let acked_at_takeover = load.acked_count();
    load.wait_for_acks(acked_at_takeover + 100, Duration::from_secs(60));
    let served = served_after(&load.acked.lock().expect("acked"), paused_at);
    println!("SIGSTOP of the leader {}: {} served {served:?} later", leader.node, new_leader.node);
    assert!(served < FAILOVER_MAX, "the first deposit after the pause was answered {served:?} later");

    paused.signal(rustix::process::Signal::CONT);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = runtime.block_on(client.node_status(&leader.node));
        if let Ok(status) = &status {
            if status.role == cluster::Role::Follower && status.step_downs > 0 {
                break status.clone();
            }
        }
        assert!(Instant::now() < deadline, "the resumed leader did not step down: {status:?}\n{}", paused.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    load.wait_for_acks(load.acked_count() + 100, Duration::from_secs(60));
    let acked = load.stop(&runtime);
    let log = paused.log();
    println!("the resumed leader stepped down: {:?}", status.last_step_down);
    assert!(log.contains("stepped down to follower"), "{log}");
    let reason = status.last_step_down.as_deref().unwrap_or_default();
    // Self-fenced on waking, the lease lost, or its appends refused by the journal: whichever
    // came first, it stepped down and never led again.
    assert!(
        ["self-fenced", "lease was lost", "fenced, another writer has appended"].iter().any(|why| reason.contains(why)),
        "{reason}"
    );
    assert_eq!(status.takeovers, 1);
    // It appended nothing after its successor's leader marker: every record from there on
    // carries the successor's writer id.
    runtime.block_on(check_writers_after_takeover(&nats, &new_leader.node, &leader.node));
    let (digest, end) = check_journal(&nats, account, &acked);
    check_replicas(&runtime, &client, &names, &digest, end);
}
