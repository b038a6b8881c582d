//! `sportsbook projector` as a process: killed with SIGKILL in the middle of a projection, run
//! again it resumes where its store says, and its models equal a `--rebuild` (by digest).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use projector::{SqliteStore, Store};

use crate::server::binary;

fn digest_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("store digest "))
        .unwrap_or_else(|| panic!("no digest in {stdout}"))
        .to_owned()
}

#[test]
fn a_projector_killed_mid_run_resumes_to_the_models_of_a_rebuild() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let demo = binary().args(["demo", "--bets", "6000", "--data-dir"]).arg(&data).output().expect("runs");
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));

    let mut child = binary()
        .args(["projector", "--commit-rows", "200", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the projector");
    // Kill it as soon as it has committed something, while it is still going.
    let store_path = data.join("projector").join(projector::SQLITE_FILE_NAME);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the projector committed nothing within a minute");
        assert!(child.try_wait().expect("wait").is_none(), "the projector finished before it could be killed");
        let committed = SqliteStore::open(&store_path)
            .ok()
            .and_then(|mut store| projector::store::checkpoint(&mut store as &mut dyn Store).ok().flatten());
        if committed.is_some_and(|checkpoint| checkpoint.next_position > 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = Command::new("kill").arg("-KILL").arg(child.id().to_string()).status().expect("kill");
    assert!(killed.success());
    child.wait().expect("reap");

    let resumed = binary().args(["projector", "--digest", "--data-dir"]).arg(&data).output().expect("runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&resumed.stdout), String::from_utf8_lossy(&resumed.stderr));
    assert!(resumed.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("resumed at journal position"), "{stderr}");
    assert!(!stdout.contains("(0 batches"), "the killed run had not finished: {stdout}");

    let rebuilt =
        binary().args(["projector", "--rebuild", "--digest", "--data-dir"]).arg(&data).output().expect("runs");
    let rebuilt_out = String::from_utf8_lossy(&rebuilt.stdout);
    assert!(rebuilt.status.success(), "{rebuilt_out}");
    assert!(String::from_utf8_lossy(&rebuilt.stderr).contains("from journal position 0"));
    assert_eq!(digest_of(&stdout), digest_of(&rebuilt_out), "resumed after SIGKILL = rebuilt from scratch");
}

#[test]
fn the_projector_refuses_what_is_not_a_data_directory_and_a_bad_store() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let output = binary().args(["projector", "--data-dir"]).arg(dir.path()).output().expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("has no journal"));
    let output =
        binary().args(["projector", "--store", "mysql://x", "--data-dir"]).arg(dir.path()).output().expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected `sqlite`"));
}

#[test]
fn the_nats_projector_refuses_a_data_directory_beside_nats_the_embedded_store_and_a_bad_stream() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let run = |args: &[&str]| {
        let output = binary().arg("projector").args(args).output().expect("runs");
        assert!(!output.status.success(), "{args:?} should be refused");
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let data_dir = dir.path().to_str().expect("a UTF-8 path");
    let both = run(&["--nats", "nats://127.0.0.1:1", "--data-dir", data_dir]);
    assert!(both.contains("cannot be used with"), "{both}");
    let neither = run(&[]);
    assert!(neither.contains("--data-dir"), "{neither}");
    let embedded = run(&["--nats", "nats://127.0.0.1:1"]);
    assert!(embedded.contains("give --store sqlite:PATH or a postgres:// URL"), "{embedded}");
    let stream = run(&["--nats", "nats://127.0.0.1:1", "--store", "sqlite:/nonexistent/x.db", "--stream", "a.b"]);
    assert!(stream.contains("stream name"), "{stream}");
    let nats_only = run(&["--data-dir", data_dir, "--listen", "127.0.0.1:0"]);
    assert!(nats_only.contains("--nats"), "{nats_only}");
}

/// The models' rows of `table` in the SQLite store of a data directory (empty until created).
fn sqlite_rows(data: &std::path::Path, table: &projector::schema::Table) -> Vec<Vec<projector::schema::Value>> {
    let path = data.join("projector").join(projector::SQLITE_FILE_NAME);
    if !path.exists() {
        return Vec::new();
    }
    SqliteStore::open(&path).and_then(|mut store| store.rows(table)).unwrap_or_default()
}

/// The names of a process's threads (Linux).
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

#[test]
fn serve_runs_the_projector_beside_the_engine_by_default() {
    use projector::schema::{Value, ACCOUNTS, BETS};
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let server = crate::server::Server::start(&data, &["--demo", "--seed", "3"], &[]);
    // The demo seeds its player; the simulation bets. Both reach the read models while the
    // server runs (the projector reads the journal the engine holds locked).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let demo_player = sqlite_rows(&data, &ACCOUNTS)
            .iter()
            .any(|row| row[ACCOUNTS.index_of("username")] == Value::Text("demo".into()));
        if demo_player && !sqlite_rows(&data, &BETS).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the read models never showed the demo player and a bet:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The projector's follower book writes the periodic snapshots: no snapshot follower runs.
    let threads = thread_names(server.pid());
    assert!(threads.iter().any(|name| name == "projector"), "{threads:?}");
    assert!(!threads.iter().any(|name| name == "book-snapshots"), "{threads:?}");
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("projector following the journal"), "{log}");

    // After the server stopped, the standalone projector finds the store it kept.
    let resumed = binary().args(["projector", "--digest", "--data-dir"]).arg(&data).output().expect("runs");
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{stdout}");
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("resumed at journal position"));
    let rebuilt =
        binary().args(["projector", "--rebuild", "--digest", "--data-dir"]).arg(&data).output().expect("runs");
    assert_eq!(digest_of(&stdout), digest_of(&String::from_utf8_lossy(&rebuilt.stdout)));
}

#[test]
fn serve_with_the_projector_off_keeps_no_read_models() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let server = crate::server::Server::start(&data, &["--projector", "off"], &[]);
    let (status, _) = server.get("/healthz", None);
    assert_eq!(status, 200);
    // Without a projector, the engine's snapshot follower writes the periodic snapshots.
    let threads = thread_names(server.pid());
    assert!(threads.iter().any(|name| name == "book-snapshots"), "{threads:?}");
    assert!(!threads.iter().any(|name| name == "projector"), "{threads:?}");
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(!data.join("projector").exists());
}
