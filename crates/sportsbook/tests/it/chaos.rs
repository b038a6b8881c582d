//! Process-level faults of the read side: the real `serve` (with its in-process projector) and a
//! standalone `sportsbook projector --follow` (into a store of its own) run beside clients that
//! place bets and deposit, and a seeded schedule kills them with SIGKILL at random moments:
//!
//! - `kill_serve`: the server dies, and the projector inside it with it; restarted;
//! - `kill_projector`: the standalone projector dies while the server keeps taking bets;
//!   restarted after a while, it catches up;
//! - `kill_both`: both at the same moment.
//!
//! Every fault kind comes up in every run (the first rounds are a seeded order of all of them,
//! the rest drawn). At the end both stores, resumed to the end of the journal, must equal a
//! `--rebuild` from scratch (`store digest`), every acknowledged bet and deposit must be in
//! the read models exactly once with its account and amount, and each player's statement must
//! end at the wallet the API reports. `SPORTSBOOK_CHAOS_SEED` picks another schedule.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use projector::schema::{Value, ACCOUNTS, BETS, STATEMENTS};
use projector::{SqliteStore, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::crash::{gateway_time_in_a_day, parse_cents, request_with_key};
use crate::server::{binary, request, Server};

const ADMIN_KEY: &str = "sk_chaos_test_admin_key";
const CLIENTS: usize = 3;
const ROUNDS: usize = 5;
const SEED_DEFAULT: u64 = 12;

/// The process faults of the read side, each exercised in every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    Serve,
    Projector,
    Both,
}

const PROCESS_FAULTS: [Kill; 3] = [Kill::Serve, Kill::Projector, Kill::Both];

/// The rounds of a run: every fault once in a seeded order, then seeded draws; each with the
/// milliseconds of load before it strikes.
fn schedule(rng: &mut StdRng) -> Vec<(Kill, u64)> {
    let mut faults = PROCESS_FAULTS.to_vec();
    for index in (1..faults.len()).rev() {
        faults.swap(index, rng.random_range(0..=index));
    }
    while faults.len() < ROUNDS {
        faults.push(PROCESS_FAULTS[rng.random_range(0..PROCESS_FAULTS.len())]);
    }
    faults.into_iter().map(|fault| (fault, rng.random_range(150..900))).collect()
}

fn start_server(data: &Path) -> Server {
    Server::start(
        data,
        &[],
        &[("SPORTSBOOK_ADMIN_KEY", ADMIN_KEY), ("SPORTSBOOK_JWT_SECRET", "chaos-test-secret-chaos-test-secret-0123")],
    )
}

/// `sportsbook projector --follow` into its own store, transactions of `commit_rows` rows.
fn start_projector(data: &Path, store: &Path, commit_rows: u64) -> Child {
    binary()
        .args(["projector", "--follow", "--commit-rows", &commit_rows.to_string(), "--store"])
        .arg(format!("sqlite:{}", store.display()))
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the projector")
}

fn kill_dash_nine(child: &mut Child) {
    let killed = std::process::Command::new("kill").arg("-KILL").arg(child.id().to_string()).status().expect("kill");
    assert!(killed.success());
    child.wait().expect("reap");
}

/// Runs `sportsbook projector --digest` with `args`; returns the digest it printed.
fn projector_digest(data: &Path, args: &[&str]) -> String {
    let output =
        binary().arg("projector").args(args).args(["--digest", "--data-dir"]).arg(data).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "projector {args:?}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("store digest "))
        .unwrap_or_else(|| panic!("no digest in {stdout}"))
        .to_owned()
}

/// What a client sent and whether it was acknowledged (with the id the server gave).
#[derive(Clone, Debug)]
struct Sent {
    client: usize,
    deposit: bool,
    acknowledged: Option<String>,
}

fn id_number(id: &str) -> i64 {
    id.rsplit('_').next().and_then(|digits| digits.parse().ok()).unwrap_or_else(|| panic!("not an id: {id}"))
}

#[test]
fn the_read_models_survive_kill_dash_nine_of_the_server_and_the_projector_exactly_once() {
    let seed = std::env::var("SPORTSBOOK_CHAOS_SEED").ok().and_then(|text| text.parse().ok()).unwrap_or(SEED_DEFAULT);
    let mut rng = StdRng::seed_from_u64(seed);
    let rounds = schedule(&mut rng);
    println!("chaos seed {seed}: {rounds:?}");
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let standalone_store = dir.path().join("standalone.sqlite3");
    let mut server = start_server(&data);

    let (status, event) = request(
        &server.address,
        "POST",
        "/v1/admin/events",
        Some(ADMIN_KEY),
        Some(&json!({"name": "Chaos Derby", "sport": "football", "starts_at": gateway_time_in_a_day()})),
    );
    assert_eq!(status, 201, "{event}");
    let event_id = event["id"].as_str().expect("event id").to_string();
    let (status, market) = request(
        &server.address,
        "POST",
        &format!("/v1/admin/events/{event_id}/markets"),
        Some(ADMIN_KEY),
        Some(
            &json!({"name": "Match result", "selections": [{"name": "Home", "price": "2.00"}, {"name": "Away", "price": "3.00"}]}),
        ),
    );
    assert_eq!(status, 201, "{market}");
    let selections: Vec<String> = market["selections"]
        .as_array()
        .expect("selections")
        .iter()
        .map(|selection| selection["id"].as_str().expect("id").to_string())
        .collect();
    let usernames: Vec<String> = (0..CLIENTS).map(|client| format!("chaos{client}")).collect();
    let mut tokens = Vec::new();
    for username in &usernames {
        let (status, body) = server.post(
            "/v1/auth/register",
            None,
            &json!({"username": username, "password": "chaos test password", "date_of_birth": "1990-01-01", "country": "GB"}),
        );
        assert_eq!(status, 201, "{body}");
        tokens.push(server.login(username, "chaos test password"));
    }

    let mut projector = Some(start_projector(&data, &standalone_store, rng.random_range(1..400)));
    let log: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::new()));
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for (round, (fault, delay_ms)) in rounds.iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (address, token, stop, log, selections) = (
                    server.address.clone(),
                    tokens[client].clone(),
                    Arc::clone(&stop),
                    Arc::clone(&log),
                    selections.clone(),
                );
                std::thread::spawn(move || {
                    let mut step = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        step += 1;
                        let deposit = step % 3 == 1;
                        let (path, body) = if deposit {
                            ("/v1/wallet/deposits", json!({"amount": "5.00", "payment_ref": format!("chaos-{round}-{client}-{step}")}))
                        } else {
                            (
                                "/v1/bets",
                                json!({"type": "single", "legs": [{"selection_id": selections[(step % 2) as usize], "price": "2.00"}], "stake": "1.00", "accept_price_changes": "any"}),
                            )
                        };
                        let key = format!("chaos-{round}-{client}-{step}");
                        let mut sent = Sent { client, deposit, acknowledged: None };
                        match request_with_key(&address, path, &token, &body, &key) {
                            Some((201 | 202, answer)) => sent.acknowledged = answer["id"].as_str().map(str::to_string),
                            Some((429 | 503, _)) => std::thread::sleep(Duration::from_millis(20)),
                            Some((422, answer)) if answer["error"]["code"] == "insufficient_funds" => {}
                            Some((status, answer)) => panic!("unexpected answer {status}: {answer}"),
                            None => {}
                        }
                        log.lock().expect("log").push(sent);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(*delay_ms));
        *counts
            .entry(match fault {
                Kill::Serve => "kill_serve",
                Kill::Projector => "kill_projector",
                Kill::Both => "kill_both",
            })
            .or_default() += 1;
        match fault {
            Kill::Serve => {
                stop.store(true, Ordering::Relaxed);
                server.kill();
                server = start_server(&data);
            }
            Kill::Projector => {
                kill_dash_nine(projector.as_mut().expect("a projector"));
                // The server keeps taking bets while the projector is down, then it catches up.
                std::thread::sleep(Duration::from_millis(rng.random_range(100..500)));
                stop.store(true, Ordering::Relaxed);
                projector = Some(start_projector(&data, &standalone_store, rng.random_range(1..400)));
            }
            Kill::Both => {
                stop.store(true, Ordering::Relaxed);
                kill_dash_nine(projector.as_mut().expect("a projector"));
                server.kill();
                server = start_server(&data);
                projector = Some(start_projector(&data, &standalone_store, rng.random_range(1..400)));
            }
        }
        for client in clients {
            client.join().expect("client thread");
        }
    }

    // The wallets the API reports, with no more writes after them.
    let mut wallets = Vec::new();
    for token in &tokens {
        let (status, wallet) = loop {
            match server.get("/v1/wallet", Some(token)) {
                (429 | 503, _) => std::thread::sleep(Duration::from_millis(50)),
                answer => break answer,
            }
        };
        assert_eq!(status, 200, "{wallet}");
        wallets.push(parse_cents(wallet["balance"].as_str().expect("balance")));
    }
    let (status, server_log) = server.terminate();
    assert!(status.success(), "{server_log}");
    // A last kill of the standalone projector, wherever it is; both stores then resume to the
    // end of the journal and must equal a rebuild from scratch.
    kill_dash_nine(projector.as_mut().expect("a projector"));
    let standalone = format!("sqlite:{}", standalone_store.display());
    let in_process = projector_digest(&data, &[]);
    let resumed = projector_digest(&data, &["--store", &standalone]);
    let rebuilt_store = format!("sqlite:{}", dir.path().join("rebuilt.sqlite3").display());
    let rebuilt = projector_digest(&data, &["--rebuild", "--store", &rebuilt_store]);
    assert_eq!(in_process, rebuilt, "the in-process projector's models (killed with serve) = a rebuild");
    assert_eq!(resumed, rebuilt, "the standalone projector's models (killed -9) = a rebuild");

    // Exactly once: every acknowledged bet and deposit, with its account and amount.
    let mut store = SqliteStore::open(&data.join("projector").join(projector::SQLITE_FILE_NAME)).expect("the store");
    let accounts = store.rows(&ACCOUNTS).expect("accounts");
    let account_of: Vec<i64> = usernames
        .iter()
        .map(|username| {
            accounts
                .iter()
                .find(|row| row[ACCOUNTS.index_of("username")] == Value::from(username.clone()))
                .and_then(|row| row[0].int())
                .unwrap_or_else(|| panic!("{username} is not in the accounts model"))
        })
        .collect();
    let bets = store.rows(&BETS).expect("bets");
    let statements = store.rows(&STATEMENTS).expect("statements");
    let entries = log.lock().expect("log").clone();
    let (mut acknowledged, mut unacknowledged_bets) = (0, 0);
    for sent in &entries {
        let Some(id) = &sent.acknowledged else {
            unacknowledged_bets += u64::from(!sent.deposit);
            continue;
        };
        acknowledged += 1;
        let account = Value::Int(account_of[sent.client]);
        if sent.deposit {
            let rows: Vec<_> = statements
                .iter()
                .filter(|row| row[STATEMENTS.index_of("transfer")] == Value::Int(id_number(id)))
                .collect();
            assert_eq!(rows.len(), 1, "deposit {id} in the statements: {rows:?}");
            assert_eq!(rows[0][STATEMENTS.index_of("account")], account);
            assert_eq!(rows[0][STATEMENTS.index_of("code")], Value::from("deposit"));
            assert_eq!(rows[0][STATEMENTS.index_of("amount")], Value::Int(500));
        } else {
            let rows: Vec<_> = bets.iter().filter(|row| row[0] == Value::Int(id_number(id))).collect();
            assert_eq!(rows.len(), 1, "bet {id} in the bets model: {rows:?}");
            assert_eq!(rows[0][BETS.index_of("account")], account);
            assert_eq!(rows[0][BETS.index_of("total_stake")], Value::Int(100));
        }
    }
    let acknowledged_bets = entries.iter().filter(|sent| !sent.deposit && sent.acknowledged.is_some()).count() as u64;
    let client_bets = bets.iter().filter(|row| account_of.iter().any(|id| row[1] == Value::Int(*id))).count() as u64;
    assert!(
        (acknowledged_bets..=acknowledged_bets + unacknowledged_bets).contains(&client_bets),
        "{client_bets} bets in the model: {acknowledged_bets} acknowledged, {unacknowledged_bets} not"
    );
    // Each statement ends at the wallet the API reported.
    for (client, balance) in wallets.iter().enumerate() {
        let last = statements
            .iter()
            .filter(|row| row[0] == Value::Int(account_of[client]))
            .max_by_key(|row| row[1].int())
            .map_or(0, |row| row[STATEMENTS.index_of("balance_after")].int().unwrap_or(i64::MIN));
        assert_eq!(last, *balance, "the statement of chaos{client} ends at the wallet's balance");
    }
    assert!(acknowledged > 0, "nothing was acknowledged");
    assert!(PROCESS_FAULTS.iter().all(|fault| rounds.iter().any(|(scheduled, _)| scheduled == fault)));
    println!(
        "chaos seed {seed}: {counts:?}, {} requests, {acknowledged} acknowledged, stores equal a rebuild ({rebuilt})",
        entries.len()
    );
}
