//! `sportsbook admin`: keys issued offline on a data directory, refused while a server holds
//! it, and usable once the server starts again.

use crate::server::{binary, Server};

fn admin(args: &[&str], data: &std::path::Path) -> std::process::Output {
    binary().arg("admin").args(args).arg("--data-dir").arg(data).output().expect("admin runs")
}

#[test]
fn create_key_refuses_while_a_server_runs_and_works_after_it_stops() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let server = Server::start(&data, &[], &[]);
    let refused = admin(&["create-key", "--scope", "trading,settlement", "--name", "ops"], &data);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(server.terminate().0.success());

    let created = admin(&["create-key", "--scope", "trading,settlement", "--name", "ops"], &data);
    let stdout = String::from_utf8_lossy(&created.stdout);
    assert!(created.status.success(), "{stdout}{}", String::from_utf8_lossy(&created.stderr));
    let key = stdout.lines().find(|line| line.starts_with("sk_")).expect("the key is printed").to_string();
    assert!(stdout.contains("trading,settlement"), "{stdout}");

    let listed = admin(&["list-keys"], &data);
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success());
    assert!(listing.contains("ops") && listing.contains("trading,settlement"), "{listing}");
    assert!(!listing.contains(&key), "the key itself is never listed");

    let compliance = admin(&["create-key", "--scope", "compliance", "--name", "auditor"], &data);
    assert!(compliance.status.success());
    let compliance_stdout = String::from_utf8_lossy(&compliance.stdout);
    let compliance_key = compliance_stdout.lines().find(|line| line.starts_with("sk_")).expect("the key is printed");

    let restarted = Server::start(&data, &[], &[]);
    let (status, body) = restarted.get("/v1/admin/exposure", Some(&key));
    assert_eq!(status, 200, "{body}");
    let (status, _) = restarted.get("/v1/admin/exposure", Some(compliance_key));
    assert_eq!(status, 403, "exposure needs the trading scope");
    assert!(restarted.terminate().0.success());
}

#[test]
fn create_key_rejects_unknown_scopes_and_missing_directories() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data directory");
    let unknown = admin(&["create-key", "--scope", "trading,god", "--name", "x"], &data);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown scope `god`"));
    let missing = admin(&["list-keys"], &dir.path().join("nowhere"));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no data directory"));
}
