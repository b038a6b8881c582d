//! The feed role (`sportsbook feed`, issue 15 item 3) on a real 3-node NATS cluster with one
//! book process (the test fails saying why when `nats-server` is missing): two feed processes
//! running the simulated provider; exactly one takes the feed lease and feeds the book, the
//! other stays a standby that submits nothing; after SIGKILL of the active one the standby
//! takes the lease and the provider's messages reach the book again, from it. Neither has a
//! message refused: the feed role forwards in submission order. Then the active one is paused
//! (SIGSTOP) past its lease: a third process takes over, and the paused one, continued, steps
//! down to standby.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use journal_nats::cluster::LocalCluster;
use journal_nats::{NatsJournal, NatsJournalOptions};
use serde_json::Value;
use tempfile::TempDir;

use crate::cluster::{start_nats, BookProcess};
use crate::cluster_gateways::request;
use crate::server::binary;

const FEED_LEASE: &str = "2s";
/// The simulated provider's name (`sportsbook::feeds::DEMO_PROVIDER`).
const PROVIDER: &str = "sim";
/// The simulated provider's messages the book refused (whole or in part).
const REFUSED: &str = "sportsbook_feed_messages_total{provider=\"sim\",outcome=\"refused\"}";

struct FeedProcess {
    child: Child,
    address: String,
    log: PathBuf,
}

impl FeedProcess {
    fn start(cluster: &LocalCluster, dir: &Path, name: &str) -> FeedProcess {
        let log = dir.join(format!("{name}.log"));
        let mut child = binary()
            .args(["feed", "--nats", &cluster.urls().join(","), "--node-id", name, "--lease", FEED_LEASE])
            .args(["--listen", "127.0.0.1:0", "--seed", "11", "--data-dir"])
            .arg(dir.join(name))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("start `sportsbook feed`");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("its first line");
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        let announced: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("unexpected first line {line:?}; log:\n{log_text}"));
        assert_eq!(announced["role"], "feed", "{line}");
        assert_eq!(announced["pid"].as_u64(), Some(u64::from(child.id())), "{line}");
        let address = announced["url"].as_str().expect("a url").trim_start_matches("http://").to_owned();
        FeedProcess { child, address, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal the feed process");
    }

    /// `active` or `standby`, from `/readyz`, once it answers 200.
    fn state(&self) -> Option<String> {
        let (status, body) = request(&self.address, "GET", "/readyz", None, None, None);
        (status == 200).then(|| body["feed"].as_str().unwrap_or_default().to_owned())
    }

    fn wait_state(&self, state: &str, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.state().as_deref() == Some(state) {
                return started.elapsed();
            }
            assert!(started.elapsed() < within, "not {state} within {within:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A counter or gauge of its `/metrics` (0 when absent).
    fn metric(&self, line_prefix: &str) -> f64 {
        let Ok(mut stream) = std::net::TcpStream::connect(&self.address) else { return 0.0 };
        use std::io::{Read, Write};
        let _ = write!(stream, "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.address);
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text.lines()
            .filter(|line| line.starts_with(line_prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for FeedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulated provider's highest sequence the book applied, from the journal alone.
fn highest_applied(cluster: &LocalCluster) -> u64 {
    let mut options = NatsJournalOptions::new(cluster.urls());
    options.replicas = 3;
    let reader = NatsJournal::open(options).expect("open the journal");
    let recovered = engine::recover(&reader, None, book::Config::default()).expect("replay the journal");
    recovered.book.feed().provider(PROVIDER).map_or(0, |provider| provider.highest)
}

#[test]
fn one_feed_process_feeds_the_other_stands_by_and_takes_over_after_a_kill_dash_nine_or_a_pause() {
    let dir = TempDir::new().expect("temporary directory");
    let nats = start_nats(dir.path());
    let _book = BookProcess::start(&nats, dir.path(), "book-a");
    let a = FeedProcess::start(&nats, dir.path(), "feed-a");
    a.wait_state("active", Duration::from_secs(60));
    let b = FeedProcess::start(&nats, dir.path(), "feed-b");
    b.wait_state("standby", Duration::from_secs(60));

    // A feeds the book; B, a standby, submits nothing and keeps standing by.
    let deadline = Instant::now() + Duration::from_secs(30);
    while highest_applied(&nats) == 0 {
        assert!(Instant::now() < deadline, "the active feed's messages never reached the book:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(b.state().as_deref(), Some("standby"), "{}", b.log());
    assert_eq!(b.metric("sportsbook_feed_messages_total"), 0.0, "a standby submits nothing");
    assert_eq!(b.metric("sportsbook_feed_active "), 0.0);
    assert_eq!(a.metric("sportsbook_feed_active "), 1.0);
    assert!(a.metric("sportsbook_feed_messages_total{provider=\"sim\",outcome=\"applied\"}") > 0.0);
    // Forwarded in order: no odds overtook the fixture or market that creates them.
    assert_eq!(a.metric(REFUSED), 0.0, "{}", a.log());

    // SIGKILL of the active feed: B takes the lease once it lapses, and feeds.
    let mut a = a;
    a.child.kill().expect("kill -9 the active feed");
    a.child.wait().expect("reap it");
    let at_kill = highest_applied(&nats);
    let took_over = b.wait_state("active", Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fed = at_kill;
    while fed <= at_kill {
        assert!(Instant::now() < deadline, "the standby never fed the book (highest {fed}):\n{}", b.log());
        std::thread::sleep(Duration::from_millis(200));
        fed = highest_applied(&nats);
    }
    assert!(b.metric("sportsbook_feed_messages_total{provider=\"sim\",outcome=\"applied\"}") > 0.0, "{}", b.log());
    assert_eq!(b.metric("sportsbook_feed_takeovers_total"), 1.0);
    assert_eq!(b.metric(REFUSED), 0.0, "{}", b.log());
    println!(
        "the standby took the feed lease {took_over:?} after the kill; the provider's sequence went {at_kill} -> {fed}"
    );

    // SIGSTOP of the active feed past its lease: a new standby takes over; on SIGCONT the paused
    // one learns it lost the lease and stops feeding (a standby again).
    let c = FeedProcess::start(&nats, dir.path(), "feed-c");
    c.wait_state("standby", Duration::from_secs(60));
    b.signal(rustix::process::Signal::STOP);
    let took_over = c.wait_state("active", Duration::from_secs(15));
    b.signal(rustix::process::Signal::CONT);
    let stepped_down = b.wait_state("standby", Duration::from_secs(10));
    assert_eq!(b.metric("sportsbook_feed_step_downs_total"), 1.0, "{}", b.log());
    assert_eq!(b.metric("sportsbook_feed_active "), 0.0);
    let log = b.log();
    assert!(log.contains("the feed lease was lost") || log.contains("could not be renewed in time"), "{log}");
    assert_eq!(c.state().as_deref(), Some("active"), "{}", c.log());
    println!("paused: the standby took over {took_over:?} after SIGSTOP; the paused one stood down {stepped_down:?} after SIGCONT");
}
