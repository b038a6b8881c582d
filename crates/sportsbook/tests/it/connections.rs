//! `serve`'s connection limits and `/metrics` access, end to end on the real binary: the
//! metrics listener and key, and a server out of files (EMFILE) that keeps answering.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{request, Server};

#[test]
fn metrics_listen_serves_metrics_there_and_not_on_the_main_listener() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&dir.path().join("data"), &["--metrics-listen", "127.0.0.1:0"], &[]);
    let metrics_address = server
        .banner
        .iter()
        .find_map(|line| line.strip_prefix("metrics on http://"))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics line in {:?}", server.banner))
        .to_string();
    let (status, body) = server.get("/metrics", None);
    assert_eq!((status, &body["error"]["code"]), (404, &serde_json::json!("not_found")), "{body}");
    let (status, body) = request(&metrics_address, "GET", "/metrics", None, None);
    assert_eq!(status, 200, "{body}");
    assert!(body.as_str().is_some_and(|text| text.contains("sportsbook_http_connections ")), "{body}");
    assert_eq!(request(&metrics_address, "GET", "/healthz", None, None).0, 404);
    assert_eq!(server.get("/healthz", None).0, 200);
    let (status, log) = server.terminate();
    assert!(status.success(), "exit {status}; log:\n{log}");
}

#[test]
fn with_a_metrics_key_metrics_are_refused_without_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let key = "metrics-key-metrics-key-metrics-key-0123";
    let server = Server::start(&dir.path().join("data"), &[], &[("SPORTSBOOK_METRICS_KEY", key)]);
    let (status, body) = server.get("/metrics", None);
    assert_eq!((status, &body["error"]["code"]), (401, &serde_json::json!("unauthenticated")), "{body}");
    assert_eq!(server.get("/metrics", Some("not-the-key")).0, 401);
    let (status, body) = server.get("/metrics", Some(key));
    assert_eq!(status, 200, "{body}");
    // The contract stays public.
    assert_eq!(server.get("/openapi.json", None).0, 200);
}

/// Out of files: with `ulimit -n` far below the connection cap, idle clients take every file
/// the server has; accepting fails with EMFILE. The server must neither die nor spin, and must
/// close idle connections so that a new client is answered.
#[test]
fn out_of_files_the_server_closes_idle_connections_and_answers_new_clients() {
    const FILES: u32 = 128;
    const IDLE: usize = 300;
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("log")).expect("log file");
    let mut child = Command::new("sh")
        .args(["-c", &format!("ulimit -n {FILES} && exec \"$0\" \"$@\"")])
        .arg(env!("CARGO_BIN_EXE_sportsbook"))
        .args(["serve", "--listen", "127.0.0.1:0", "--header-read-timeout", "600", "--keep-alive-idle-timeout", "600"])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines.next().expect("the server printed its address").expect("line");
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();
    // More idle clients than the server has files.
    let idle: Vec<TcpStream> = (0..IDLE).map(|_| TcpStream::connect(&address).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    let (status, body) = request(&address, "GET", "/v1/events", None, None);
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    // Not spinning: over a second with every idle client still trying, well under a core.
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(pid) - cpu_before;
    let ticks_per_second = 100;
    assert!(spent < ticks_per_second / 2, "the server used {spent} ticks of CPU in about a second");
    assert!(child.try_wait().expect("wait").is_none(), "the server died");
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert!(log.contains("accepting a connection failed"), "no accept error logged:\n{log}");
    drop(idle);
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (in parentheses): utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').expect("command").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}
