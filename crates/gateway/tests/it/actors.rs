//! Who did what: every command in the audit trail carries its `actor` (a player, an API key,
//! a feed adapter, the system; staff in `staff.rs`) and the `reason` an operator gave; a
//! journal written in the previous batch format still replays, its commands shown as the
//! system actor `unrecorded`.

use std::time::Duration;

use book::Command;
use gateway::{GatewayConfig, ProviderSettings};
use serde_json::{json, Value};

use crate::harness::{now_ms, spawn_app, spawn_app_on, TestApp, ADMIN_KEY};

/// Every command of the audit trail, oldest first (one page: these tests write few). A 503
/// (the read models busy on a loaded machine, with `Retry-After`) is asked again.
pub async fn audited(app: &TestApp) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let (status, page) = app.call("GET", "/v1/admin/audit?limit=200", Some(ADMIN_KEY), None).await;
        if status == 503 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(status, 200, "{page}");
        break page;
    };
    assert_eq!(page["next_cursor"], Value::Null, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .flat_map(|batch| batch["commands"].as_array().expect("commands").iter().cloned())
        .collect()
}

/// The actor of the last command of `kind`.
pub fn actor_of(commands: &[Value], kind: &str) -> Value {
    commands.iter().rev().find(|command| command["type"] == kind).unwrap_or_else(|| panic!("no {kind}"))["actor"]
        .clone()
}

fn actor(kind: &str, id: &str) -> Value {
    json!({"kind": kind, "id": id})
}

async fn ok(app: &TestApp, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let (status, answer) = app.call(method, path, Some(token), body).await;
    assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
    answer
}

#[tokio::test]
async fn each_actor_kind_appears_in_the_audit_trail() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    config.feed_defaults =
        ProviderSettings { stale_after: Duration::from_millis(300), on_stale: book::StaleMode::Suspend };
    let app = spawn_app_on(&path, Some(dir), config).await;

    // A player registers (the system's registration: no account exists yet), then acts.
    let player = app.funded_player("actor.player", "40.00").await;
    let (status, wallet) = app.call("GET", "/v1/wallet", Some(&player.access_token), None).await;
    assert_eq!(status, 200, "{wallet}");
    let commands = audited(&app).await;
    let account = commands.iter().find(|command| command["type"] == "deposit").expect("deposit")["account_id"]
        .as_str()
        .expect("account")
        .to_string();
    assert_eq!(actor_of(&commands, "register_player"), actor("system", "registration"));
    assert_eq!(actor_of(&commands, "deposit"), actor("player", &account));

    // The bootstrap key, then a key it issued.
    let issued =
        ok(&app, "POST", "/v1/admin/api-keys", ADMIN_KEY, Some(json!({"name": "desk", "scopes": ["trading"]}))).await;
    let key = issued["key"].as_str().expect("key");
    let body = json!({"name": "Keyed v Event", "sport": "football", "starts_at": "2030-01-01T15:00:00Z"});
    ok(&app, "POST", "/v1/admin/events", key, Some(body)).await;

    // A withdrawal is the player's; the payment job that completes it is the system's.
    let (status, withdrawal) = app
        .call_with(
            "POST",
            "/v1/wallet/withdrawals",
            Some(&player.access_token),
            Some(json!({"amount": "5.00"})),
            &[("Idempotency-Key", "actor-withdrawal")],
        )
        .await;
    assert_eq!(status, 201, "{withdrawal}");

    // A feed pushed over HTTP is the key that pushed it; the adapter's watchdog, judging the
    // silent provider stale, is the feed itself.
    let message = json!({"provider": "acme", "sequence": 1, "timestamp": now_ms(), "items": [
        {"type": "fixture", "event": "m1", "name": "Fed v Feed", "sport": "football", "competition": "Cup",
         "starts_at": now_ms() + 86_400_000}]});
    ok(&app, "POST", "/v1/feed/messages", ADMIN_KEY, Some(json!({"messages": [message]}))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let commands = loop {
        let commands = audited(&app).await;
        if commands.iter().any(|command| command["type"] == "feed_health")
            && commands.iter().any(|command| command["type"] == "complete_withdrawal")
        {
            break commands;
        }
        assert!(std::time::Instant::now() < deadline, "no feed health or withdrawal completion: {commands:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(actor_of(&commands, "create_api_key"), actor("api_key", "bootstrap"));
    assert_eq!(actor_of(&commands, "create_event"), actor("api_key", issued["id"].as_str().expect("key id")));
    assert_eq!(actor_of(&commands, "withdraw"), actor("player", &account));
    assert_eq!(actor_of(&commands, "complete_withdrawal"), actor("system", "payments"));
    assert_eq!(actor_of(&commands, "feed"), actor("api_key", "bootstrap"));
    assert_eq!(actor_of(&commands, "feed_health"), actor("feed", "acme"));
    for command in &commands {
        let kind = command["actor"]["kind"].as_str().expect("every command has an actor kind");
        assert!(["staff", "api_key", "player", "feed", "system"].contains(&kind), "{command}");
        assert!(command["actor"]["id"].as_str().is_some_and(|id| !id.is_empty()), "{command}");
        assert!(command.get("reason").is_none(), "no reason was given: {command}");
    }
}

#[tokio::test]
async fn reasons_round_trip_on_settle_unsettle_void_and_account_risk() {
    let app = spawn_app().await;
    let player = app.funded_player("reasoned", "20.00").await;
    let (_, market, selections) = app.football_match("Reason v Cause").await;
    let settle = json!({"results": [{"selection_id": selections[0], "outcome": "win"}], "reason": "official result"});
    ok(&app, "POST", &format!("/v1/admin/markets/{market}/settle"), ADMIN_KEY, Some(settle)).await;
    let unsettle = json!({"reason": "wrong scorer reported"});
    ok(&app, "POST", &format!("/v1/admin/markets/{market}/unsettle"), ADMIN_KEY, Some(unsettle)).await;
    // The body of void and unsettle may be left out: no reason then.
    ok(&app, "POST", &format!("/v1/admin/markets/{market}/void"), ADMIN_KEY, None).await;
    let commands = audited(&app).await;
    let account = commands.iter().find(|command| command["type"] == "deposit").expect("deposit")["account_id"]
        .as_str()
        .expect("account")
        .to_string();
    let freeze = json!({"frozen": true, "reason": "bonus abuse under review"});
    ok(&app, "PUT", &format!("/v1/admin/accounts/{account}/risk"), ADMIN_KEY, Some(freeze)).await;
    let (_, other_market, _) = app.football_match("Second v Void").await;
    let void = json!({"reason": "match abandoned"});
    ok(&app, "POST", &format!("/v1/admin/markets/{other_market}/void"), ADMIN_KEY, Some(void)).await;

    let commands = audited(&app).await;
    let reasons: Vec<(String, Value)> = commands
        .iter()
        .filter(|command| {
            ["settle_market", "unsettle_market", "void_market", "set_account_risk"]
                .contains(&command["type"].as_str().expect("type"))
        })
        .map(|command| (command["type"].as_str().expect("type").to_string(), command["reason"].clone()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("settle_market".to_string(), json!("official result")),
            ("unsettle_market".to_string(), json!("wrong scorer reported")),
            ("void_market".to_string(), Value::Null),
            ("set_account_risk".to_string(), json!("bonus abuse under review")),
            ("void_market".to_string(), json!("match abandoned")),
        ]
    );
    assert_eq!(actor_of(&commands, "set_account_risk"), actor("api_key", "bootstrap"));
    let frozen = commands.iter().rev().find(|command| command["type"] == "set_account_risk").expect("freeze");
    assert_eq!(frozen["frozen"], json!(true), "{frozen}");
    drop(player);

    // A reason is 1 to 500 bytes; past that, or empty, nothing is submitted.
    for reason in [String::new(), "r".repeat(book::constants::REASON_BYTES_MAX + 1)] {
        let (status, body) = app
            .call(
                "POST",
                &format!("/v1/admin/markets/{other_market}/unsettle"),
                Some(ADMIN_KEY),
                Some(json!({"reason": reason})),
            )
            .await;
        let error = (status, body["error"]["code"].as_str(), body["error"]["field"].as_str());
        assert_eq!(error, (400, Some("invalid_request"), Some("reason")), "{body}");
    }
    let (status, body) = app
        .call(
            "POST",
            &format!("/v1/admin/markets/{other_market}/void"),
            Some(ADMIN_KEY),
            Some(json!({"reason": "x", "extra": 1})),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
    assert_eq!(audited(&app).await.len(), commands.len(), "refused requests reach no journal");
}

/// A batch in the layout of batch format 3 (before origins): version, first sequence, time,
/// reply digest, then the commands alone.
fn version_3_batch(first_sequence: u64, timestamp: u64, reply_digest: u64, commands: &[Command]) -> Vec<u8> {
    use codec::Wire;
    let mut bytes = vec![3u8];
    first_sequence.encode(&mut bytes);
    timestamp.encode(&mut bytes);
    reply_digest.encode(&mut bytes);
    commands.to_vec().encode(&mut bytes);
    bytes
}

#[tokio::test]
async fn a_journal_of_the_previous_batch_format_replays() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    // The journal an older build wrote: each batch decided by a book, as the sequencer does,
    // with its reply digest, in format 3.
    let at = now_ms() - 60_000;
    let batches: Vec<Vec<Command>> = vec![
        vec![Command::CreateEvent {
            name: "Old v Journal".to_string(),
            sport: "football".to_string(),
            competition: "Archive".to_string(),
            starts_at: at + 86_400_000,
        }],
        vec![Command::CreateMarket {
            event: book::EventId(1),
            name: "Match result".to_string(),
            kind: "1x2".to_string(),
            selections: vec![book::NewSelection {
                name: "Old".to_string(),
                price: domain::Odds::parse("2.00").expect("odds"),
            }],
            each_way: None,
        }],
        vec![Command::SetMarketStatus { market: book::MarketId(1), action: book::MarketAction::Suspend }],
    ];
    {
        let mut book = book::Book::new(book::Config::default());
        let (mut journal, _) =
            journal::file::FileJournal::open(&path.join("journal"), journal::file::FileJournalOptions::default())
                .expect("journal");
        let mut sequence = 0;
        for (index, commands) in batches.iter().enumerate() {
            let time = at + index as u64;
            let mut digest = 0;
            let mut scratch = Vec::new();
            for command in commands {
                let reply = book.apply(time, command, &mut Vec::new());
                assert!(reply.is_ok(), "{reply:?}");
                digest = codec::reply_digest(digest, &reply, &mut scratch);
            }
            journal::Journal::append(&mut journal, &version_3_batch(sequence, time, digest, commands)).expect("append");
            sequence += commands.len() as u64;
        }
    }

    let app = spawn_app_on(&path, Some(dir), GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec())).await;
    // The book replayed it: the market is there and suspended.
    let (status, market) = app.call("GET", "/v1/markets/mkt_1", None, None).await;
    assert_eq!((status, market["status"].as_str()), (200, Some("suspended")), "{market}");
    // New commands are journaled in the new format after the old ones, with their actors.
    ok(&app, "POST", "/v1/admin/markets/mkt_1/resume", ADMIN_KEY, None).await;
    let commands = audited(&app).await;
    let shown: Vec<(Value, Value)> =
        commands.iter().map(|command| (command["type"].clone(), command["actor"].clone())).collect();
    assert_eq!(
        shown,
        [
            (json!("create_event"), actor("system", "unrecorded")),
            (json!("create_market"), actor("system", "unrecorded")),
            (json!("set_market_status"), actor("system", "unrecorded")),
            (json!("set_market_status"), actor("api_key", "bootstrap")),
        ]
    );
    let (status, verified) = app.call("GET", "/v1/admin/audit?verify=true", Some(ADMIN_KEY), None).await;
    assert_eq!((status, &verified["verified"]), (200, &json!(true)), "{verified}");
}
