//! The data directory against a bad disk, with the real binary: a flipped byte in the last
//! journal record is corruption (the server refuses to start, names the position and the
//! repair command, and changes nothing), `verify` never writes, `repair` keeps a copy of what it
//! cuts and never lets a position below a snapshot be reused, and every file is owner-only.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{binary, Server};

const JWT_SECRET: &str = "journal-test-secret-journal-test-secret-01";
const PASSWORD: &str = "journal test password";
/// How long a server that must refuse to start may take to exit.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(60);

fn start(data: &Path) -> Server {
    Server::start(data, &[], &[("SPORTSBOOK_JWT_SECRET", JWT_SECRET)])
}

/// A POST with an idempotency key (deposits need one).
fn post_with_key(server: &Server, path: &str, token: &str, body: &Value, key: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&server.address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.address,
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, payload) = text.split_once("\r\n\r\n").expect("a response");
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("status");
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

fn register(server: &Server) -> String {
    let (status, body) = server.post(
        "/v1/auth/register",
        None,
        &json!({"username": "ledger", "password": PASSWORD, "date_of_birth": "1990-01-01", "country": "GB"}),
    );
    assert_eq!(status, 201, "{body}");
    server.login("ledger", PASSWORD)
}

fn deposit(server: &Server, token: &str, amount: &str, key: &str) {
    let body = json!({"amount": amount, "payment_ref": format!("ref-{key}")});
    let (status, reply) = post_with_key(server, "/v1/wallet/deposits", token, &body, key);
    assert_eq!(status, 201, "deposit {amount}: {reply}");
}

fn balance(server: &Server, token: &str) -> String {
    let (status, wallet) = server.get("/v1/wallet", Some(token));
    assert_eq!(status, 200, "{wallet}");
    wallet["balance"].as_str().expect("balance").to_string()
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.insert(path.clone(), std::fs::read(&path).expect("read"));
            }
        }
    }
    found
}

/// Flips one byte in the middle of the last record of the journal; returns its position.
fn corrupt_last_record(data: &Path) -> u64 {
    let journal = data.join("journal");
    let segment = journal::testing::last_segment(&journal).expect("a segment");
    let last = *journal::testing::record_spans(&segment).expect("spans").last().expect("a record");
    journal::testing::flip_byte(&segment, last.offset + last.len / 2).expect("flip");
    last.position
}

/// Runs the binary with `args`, killing it after `REFUSE_TIMEOUT`.
fn run(args: &[&str], data: &Path) -> Output {
    let mut child = binary()
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("SPORTSBOOK_JWT_SECRET", JWT_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + REFUSE_TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`sportsbook {}` did not exit", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Issue 11 item 8, first scenario: an acknowledged 77.00 deposit, then a flipped byte in the
/// last record. `verify` and `serve` refuse (non-zero) and leave every byte as it was.
#[test]
fn a_flipped_byte_in_the_last_record_stops_the_start_and_verify_changes_nothing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let server = start(&data);
    let token = register(&server);
    deposit(&server, &token, "77.00", "deposit-77");
    server.kill();
    let position = corrupt_last_record(&data);
    let before = files(&data);

    let verified = run(&["verify"], &data);
    assert!(!verified.status.success(), "verify passed a corrupt journal: {}", text(&verified));
    assert!(text(&verified).contains("corrupt"), "{}", text(&verified));
    assert_eq!(files(&data), before, "verify changed the data directory");

    let served = run(&["serve", "--listen", "127.0.0.1:0"], &data);
    let said = text(&served);
    assert!(!served.status.success(), "the server started on a corrupt journal: {said}");
    assert!(said.contains(&format!("position {position}")), "{said}");
    assert!(said.contains(&format!("--truncate-at {position}")), "{said}");
    assert_eq!(files(&data), before, "a refused start changed the data directory");
}

/// `verify` of a healthy, stopped data directory: passes and writes nothing (no snapshot, no
/// cut, no new file).
#[test]
fn verify_leaves_a_healthy_data_directory_byte_identical() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let server = start(&data);
    let token = register(&server);
    deposit(&server, &token, "10.00", "deposit-10");
    server.kill();
    let before = files(&data);
    let verified = run(&["verify"], &data);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains("invariants hold"), "{}", text(&verified));
    assert_eq!(files(&data), before, "verify changed the data directory");
}

/// Issue 11 item 8, second scenario: a clean stop (snapshot at the end), a flipped byte in the
/// last record, then the operator's repair, a 25.00 deposit and kill -9. The snapshot holds the
/// cut record, the journal continues at the snapshot's position, and after the restart both
/// deposits are there: no position below the snapshot was reused.
#[test]
fn repair_below_a_snapshot_loses_nothing_and_a_deposit_after_it_survives_kill_dash_nine() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let server = start(&data);
    let token = register(&server);
    deposit(&server, &token, "77.00", "deposit-77");
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    let position = corrupt_last_record(&data);

    let refused = run(&["serve", "--listen", "127.0.0.1:0"], &data);
    assert!(!refused.status.success(), "{}", text(&refused));
    let repaired = run(&["repair", "--truncate-at", &position.to_string()], &data);
    assert!(repaired.status.success(), "{}", text(&repaired));
    assert!(text(&repaired).contains("nothing acknowledged is lost"), "{}", text(&repaired));
    let copies: Vec<PathBuf> = std::fs::read_dir(&data)
        .expect("data dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("journal-cut-")))
        .collect();
    assert_eq!(copies.len(), 1, "the repair keeps a copy of what it cut");

    let server = start(&data);
    let token = server.login("ledger", PASSWORD);
    assert_eq!(balance(&server, &token), "77.00");
    deposit(&server, &token, "25.00", "deposit-25");
    server.kill();
    let server = start(&data);
    let token = server.login("ledger", PASSWORD);
    assert_eq!(balance(&server, &token), "102.00", "the deposit after the repair was lost");
}

/// Issue 11 item 16: the data directory, journal/ and snapshots/ are 0700, and every file the
/// server creates in them (segments, LOCK, snapshots, the generated JWT secret) is 0600; a
/// looser data directory is tightened on start.
#[test]
fn data_directory_files_are_owner_only() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // No SPORTSBOOK_JWT_SECRET: the server generates DIR/jwt-secret.
    let server = Server::start(&data, &[], &[]);
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    let mode = |path: &Path| std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    for sub in ["", "journal", "snapshots"] {
        assert_eq!(mode(&data.join(sub)), 0o700, "{sub}/");
    }
    let created = files(&data);
    assert!(created.keys().any(|path| path.ends_with("jwt-secret")));
    assert!(created.keys().any(|path| path.extension().is_some_and(|ext| ext == "seg")));
    assert!(created.keys().any(|path| path.to_string_lossy().contains("snapshot-")));
    for path in created.keys() {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
}

/// Unmounts a test file system when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts a tmpfs of `size` at `path` (root only); `None` where that is not allowed.
fn mount_tmpfs(path: &Path, size: &str) -> Option<Mounted> {
    std::fs::create_dir_all(path).expect("mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
        .arg(path)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    mounted.then(|| Mounted(path.to_owned()))
}

/// Fills the file system holding `dir` with a file, up to ENOSPC; returns the file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0x5Au8; 4096];
    loop {
        if let Err(error) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            assert_eq!(error.raw_os_error(), Some(28), "expected ENOSPC: {error}");
            return path;
        }
    }
}

/// Issue 11 item 10 (the journal half), on a real full disk: the data directory on a 4 MiB
/// tmpfs, filled up. Deposits go on until one needs a new page: it answers 503 (`unavailable`),
/// `/readyz` says `storage_full`, the server stays up; once the filler is removed the same
/// deposit succeeds without a restart, and after kill -9 and a restart the balance holds
/// exactly the acknowledged deposits. Needs root to mount; elsewhere it fails saying so.
#[test]
fn a_full_data_disk_answers_503_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let Some(_mounted) = mount_tmpfs(&data, "4m") else {
        panic!("this test mounts a 4 MiB tmpfs for a real full disk and needs root (as the project's machines and CI run); `mount -t tmpfs` failed");
    };
    let server = start(&data);
    let token = register(&server);
    deposit(&server, &token, "10.00", "before-full");
    let filler = fill(&data);

    // The segment's last page still has room for a few records: deposit until one needs a
    // new page and finds none.
    let mut acknowledged = 0u64;
    let (key, body) = loop {
        let key = format!("while-full-{acknowledged}");
        let body = json!({"amount": "1.00", "payment_ref": format!("ref-{key}")});
        let (status, reply) = post_with_key(&server, "/v1/wallet/deposits", &token, &body, &key);
        if status == 503 {
            assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
            break (key, body);
        }
        assert_eq!(status, 201, "{reply}");
        acknowledged += 1;
        assert!(acknowledged < 1_000, "the disk never filled up");
    };
    let (status, ready) = server.get("/readyz", None);
    assert_eq!(status, 503, "{ready}");
    assert!(ready["reasons"].as_array().expect("reasons").iter().any(|reason| reason == "storage_full"), "{ready}");
    let expected = |extra: u64| format!("{}.00", 10 + acknowledged + extra);
    assert_eq!(balance(&server, &token), expected(0));

    std::fs::remove_file(&filler).expect("make room");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, reply) = post_with_key(&server, "/v1/wallet/deposits", &token, &body, &key);
        if status == 201 {
            break;
        }
        assert_eq!(status, 503, "{reply}");
        assert!(Instant::now() < deadline, "the server never resumed after space came back: {reply}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(balance(&server, &token), expected(1));
    let (status, ready) = server.get("/readyz", None);
    assert_eq!(status, 200, "{ready}");
    server.kill();
    let server = start(&data);
    let token = server.login("ledger", PASSWORD);
    assert_eq!(balance(&server, &token), expected(1));
    server.kill();
}
