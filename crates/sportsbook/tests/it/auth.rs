//! Authentication against the real binary: a flood of registrations past the password hash
//! pool is shed with 503 `overloaded` and `Retry-After` while the resident memory stays flat
//! (each argon2 hash holds 19 MiB; unbounded, 150 concurrent registrations took 2.9 GB), and
//! `--trusted-proxy` decides whose `X-Forwarded-For` names the client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::server::Server;

/// Concurrent registrations fired at once.
const REGISTRATIONS: usize = 200;
/// Peak resident memory allowed, in MiB: the process at rest (about 35 MiB in a debug build)
/// and two workers' 19 MiB, with room to spare; far below one hash per request.
const PEAK_RESIDENT_MIB_MAX: u64 = 256;

/// `Vm...` of `/proc/<pid>/status`, in MiB.
fn memory_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|line| line.starts_with(field)).expect("field");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse::<u64>().ok()).expect("kiB") / 1024
}

/// POSTs a registration; returns the status, the `Retry-After` header and the body.
fn register(address: &str, index: usize) -> (u16, Option<String>, String) {
    let body = format!(
        r#"{{"username":"flood{index}","password":"correct horse battery staple","date_of_birth":"1990-01-01","country":"GB"}}"#
    );
    post(address, "/v1/auth/register", &body, &[])
}

/// POSTs a JSON body with extra header lines; returns the status, `Retry-After` and the body.
fn post(address: &str, path: &str, body: &str, headers: &[&str]) -> (u16, Option<String>, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let extra: String = headers.iter().map(|header| format!("{header}\r\n")).collect();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         {extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("receive");
    let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let retry_after = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("retry-after:").map(|value| value.trim().to_string()));
    (status, retry_after, payload.to_string())
}

#[test]
fn a_flood_of_registrations_is_shed_and_memory_stays_flat() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&dir.path().join("data"), &["--password-hash-workers", "2"], &[]);
    let pid = server.pid();
    let address = server.address.as_str();
    let answers: Vec<(u16, Option<String>, String)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..REGISTRATIONS).map(|index| scope.spawn(move || register(address, index))).collect();
        threads.into_iter().map(|thread| thread.join().expect("join")).collect()
    });
    let peak = memory_mib(pid, "VmHWM:");
    let created = answers.iter().filter(|(status, _, _)| *status == 201).count();
    let shed: Vec<_> = answers.iter().filter(|(status, _, _)| *status == 503).collect();
    for (status, _, body) in &answers {
        assert!(matches!(status, 201 | 503), "created or shed, never a hang or a 500: {status} {body}");
    }
    assert!(created > 0, "the pool registers what it admits");
    assert!(!shed.is_empty(), "{REGISTRATIONS} at once exceed two workers and the queue");
    for (_, retry_after, body) in shed {
        assert!(body.contains(r#""code":"overloaded""#), "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    assert!(peak <= PEAK_RESIDENT_MIB_MAX, "peak resident memory {peak} MiB after {REGISTRATIONS} registrations");
    // The server is healthy afterwards and a shed client gets in on retry.
    assert_eq!(register(address, REGISTRATIONS).0, 201);
}

#[test]
fn forwarded_for_names_the_client_only_from_a_trusted_proxy() {
    let login = r#"{"username":"nobody","password":"correct horse battery staple"}"#;
    let dir = tempfile::tempdir().expect("temporary directory");
    let behind_proxy = Server::start(&dir.path().join("proxied"), &["--trusted-proxy", "127.0.0.0/8"], &[]);
    let from = |client: &str| format!("X-Forwarded-For: {client}");
    for _ in 0..gateway::LOGIN_FAILURES_MAX {
        assert_eq!(post(&behind_proxy.address, "/v1/auth/login", login, &[&from("203.0.113.1")]).0, 401);
    }
    assert_eq!(post(&behind_proxy.address, "/v1/auth/login", login, &[&from("203.0.113.1")]).0, 429);
    assert_eq!(
        post(&behind_proxy.address, "/v1/auth/login", login, &[&from("203.0.113.2")]).0,
        401,
        "another client behind the proxy has its own throttle"
    );

    let direct = Server::start(&dir.path().join("direct"), &[], &[]);
    for index in 0..gateway::LOGIN_FAILURES_MAX {
        assert_eq!(post(&direct.address, "/v1/auth/login", login, &[&from(&format!("203.0.113.{index}"))]).0, 401);
    }
    let (status, _, body) = post(&direct.address, "/v1/auth/login", login, &[&from("198.51.100.77")]);
    assert_eq!(status, 429, "a client cannot pick its own address: {body}");
}
