//! Black-box tests of the `sportsbook` binary: the engine-only demo and verify here; `serve`,
//! `admin` and the demo simulation in their modules; the UOF demo (`feed-sim` and `serve`
//! over RabbitMQ) across a restart in `uof_feed`.

mod admin;
mod auth;
mod bounded;
mod chaos;
mod cluster;
mod cluster_gateways;
mod cluster_read_models;
mod connections;
mod crash;
mod dev_cluster;
mod feed_role;
mod journal;
mod logging;
mod projector;
mod retention;
mod serve;
mod server;
mod simulation;
mod tidy;
mod uof_feed;

use server::binary;

#[test]
fn the_demo_runs_and_recovers_the_same_book() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let output = binary().args(["demo", "--bets", "4000", "--data-dir"]).arg(&data).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "demo failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("same state digest"), "{stdout}");
    let verified = binary().args(["verify", "--data-dir"]).arg(&data).output().expect("runs");
    let verify_out = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{verify_out}");
    let digest = |text: &str| text.split_whitespace().last().map(str::to_string);
    assert_eq!(
        digest(stdout.lines().find(|line| line.contains("same state digest")).unwrap_or("")),
        digest(verify_out.trim())
    );
}

#[test]
fn the_demo_refuses_a_data_directory_that_holds_a_book() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let first = binary().args(["demo", "--bets", "500", "--data-dir"]).arg(dir.path()).output().expect("runs");
    assert!(first.status.success());
    let second = binary().args(["demo", "--bets", "500", "--data-dir"]).arg(dir.path()).output().expect("runs");
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already holds a book"));
}
