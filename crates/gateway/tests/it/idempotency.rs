//! Retries of keyed writes on both sides of the book's idempotency window: inside it the book
//! answers; after it the read models' first reply does, with the same answer and nothing
//! applied twice.

use serde_json::{json, Value};

use crate::harness::{spawn_app_with_book, TestApp};

const WINDOW_MS: u64 = 1_500;

fn bet(selection: &str, stake: &str) -> Value {
    json!({"type": "single", "legs": [{"selection_id": selection, "price": "2.50"}], "stake": stake, "accept_price_changes": "none"})
}

async fn keyed(app: &TestApp, token: &str, path: &str, body: Value, key: &str) -> (u16, Value) {
    app.call_with("POST", path, Some(token), Some(body), &[("Idempotency-Key", key)]).await
}

/// The book's account id of a registered player.
fn account_of(app: &TestApp, username: &str) -> book::AccountId {
    let username = username.to_string();
    app.engine
        .read(move |book| {
            book.players()
                .iter()
                .find(|player| player.profile.as_ref().is_some_and(|profile| profile.username == username))
                .map(|player| player.id)
        })
        .expect("read")
        .expect("the player")
}

#[tokio::test]
async fn retries_after_the_book_window_are_answered_from_the_read_models() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let config = gateway::GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    let book_config = book::Config { idempotency_window_ms: WINDOW_MS, ..book::Config::default() };
    let mut app = spawn_app_with_book(&path, Some(dir), config, book_config).await;
    let player = app.funded_player("late_retrier", "100.00").await;
    let token = player.access_token.clone();
    let account = account_of(&app, "late_retrier");
    let (_, _, selections) = app.football_match("Late FC v Retry United").await;

    // First requests: an accepted bet, a refused bet, a deposit and a withdrawal.
    let placed = keyed(&app, &token, "/v1/bets", bet(&selections[0], "10.00"), "bet-1").await;
    assert_eq!(placed.0, 201, "{}", placed.1);
    // The draw is at 3.20: a bet asking for 2.50 with no price changes accepted is refused.
    let refused = keyed(&app, &token, "/v1/bets", bet(&selections[1], "5.00"), "bet-2").await;
    assert_eq!((refused.0, refused.1["error"]["code"].as_str()), (409, Some("price_changed")));
    let deposit_body = json!({"amount": "7.00", "payment_ref": "psp-late-1"});
    let deposit = keyed(&app, &token, "/v1/wallet/deposits", deposit_body.clone(), "dep-1").await;
    assert_eq!(deposit.0, 201, "{}", deposit.1);
    let withdrawal = keyed(&app, &token, "/v1/wallet/withdrawals", json!({"amount": "3.00"}), "wd-1").await;
    assert_eq!(withdrawal.0, 201, "{}", withdrawal.1);

    // Inside the window the book answers.
    assert!(app.engine.read(move |book| book.remembered(account, "bet-1").is_some()).expect("read"));
    assert_eq!(keyed(&app, &token, "/v1/bets", bet(&selections[0], "10.00"), "bet-1").await, placed);
    let inside_reused = keyed(&app, &token, "/v1/bets", bet(&selections[0], "11.00"), "bet-1").await;
    assert_eq!((inside_reused.0, inside_reused.1["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));

    let (_, wallet_before) = app.call("GET", "/v1/wallet", Some(&token), None).await;
    tokio::time::sleep(std::time::Duration::from_millis(WINDOW_MS + 500)).await;
    // Something else moves book time on, so the book forgets the keys.
    let other = app.player("bystander").await;
    let _ = other;
    for key in ["bet-1", "bet-2", "dep-1", "wd-1"] {
        assert!(app.engine.read(move |book| book.remembered(account, key).is_none()).expect("read"), "{key}");
    }

    // After the window: the same answers, from the read models.
    assert_eq!(keyed(&app, &token, "/v1/bets", bet(&selections[0], "10.00"), "bet-1").await, placed);
    assert_eq!(keyed(&app, &token, "/v1/bets", bet(&selections[1], "5.00"), "bet-2").await, refused);
    assert_eq!(keyed(&app, &token, "/v1/wallet/deposits", deposit_body, "dep-1").await, deposit);
    assert_eq!(keyed(&app, &token, "/v1/wallet/withdrawals", json!({"amount": "3.00"}), "wd-1").await, withdrawal);
    // Another body after the window: the same code as inside it.
    let reused = keyed(&app, &token, "/v1/bets", bet(&selections[0], "11.00"), "bet-1").await;
    assert_eq!((reused.0, reused.1["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));
    let reused =
        keyed(&app, &token, "/v1/wallet/deposits", json!({"amount": "8.00", "payment_ref": "psp-late-2"}), "dep-1")
            .await;
    assert_eq!((reused.0, reused.1["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));
    // None of them reached the book: it does not know the keys again.
    for key in ["bet-1", "bet-2", "dep-1", "wd-1"] {
        assert!(app.engine.read(move |book| book.remembered(account, key).is_none()).expect("read"), "{key}");
    }

    // Nothing applied twice: one bet, the same wallet, one deposit and one withdrawal.
    let (_, wallet_after) = app.call("GET", "/v1/wallet", Some(&token), None).await;
    assert_eq!(wallet_after, wallet_before);
    assert_eq!(wallet_after["balance"], "94.00", "100 + 7 - 3 - 10 staked: {wallet_after}");
    let (status, bets) = app.call("GET", "/v1/bets", Some(&token), None).await;
    assert_eq!(status, 200, "{bets}");
    assert_eq!(bets["items"].as_array().expect("items").len(), 1, "{bets}");
    let (_, transactions) = app.call("GET", "/v1/wallet/transactions", Some(&token), None).await;
    let items = transactions["items"].as_array().expect("items");
    let count =
        |kind: &str, status: &str| items.iter().filter(|item| item["type"] == kind && item["status"] == status).count();
    assert_eq!(count("deposit", "posted"), 2, "the funding deposit and dep-1: {transactions}");
    assert_eq!(count("withdrawal", "pending"), 1, "one hold: {transactions}");
    assert_eq!(count("stake", "pending"), 1, "one stake: {transactions}");

    // A stopped projector's models still answer the keys they hold (a projector that runs
    // but is behind: `keyed_writes_wait_for_read_models_that_are_behind`).
    app.projector.take().expect("a projector").stop();
    let _ = app.player("after_the_stop").await;
    assert_eq!(keyed(&app, &token, "/v1/bets", bet(&selections[0], "10.00"), "bet-1").await, placed);
    app.stop().await;
}

#[tokio::test]
async fn keyed_writes_wait_for_read_models_that_are_behind() {
    // The models of a running projector that has published nothing yet (as right after a
    // start) are behind every write: a keyed write that misses waits for them, then is refused,
    // never decided on a gap.
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = gateway::GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    let store_path = projector::sqlite_path(&path);
    std::fs::create_dir_all(store_path.parent().expect("a parent")).expect("mkdir");
    drop(projector::SqliteStore::open(&store_path).expect("an empty store, migrated"));
    let published = projector::Published::new();
    published.set_state(projector::ProjectorState::Running);
    config.read_models = Some(projector::ReadModels::new(projector::ReadStore::Sqlite(store_path), published));
    let app = crate::harness::spawn_app_with_models(&path, Some(dir), config).await;
    let player = app.player("waiting_writer").await;
    let started = std::time::Instant::now();
    let (status, body) = keyed(
        &app,
        &player.access_token,
        "/v1/wallet/deposits",
        json!({"amount": "5.00", "payment_ref": "psp-wait"}),
        "dep-wait",
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(started.elapsed() >= gateway::KEYED_WRITE_MODELS_WAIT, "it waited for the models");
    let (_, wallet) = app.call("GET", "/v1/wallet", Some(&player.access_token), None).await;
    assert_eq!(wallet["balance"], "0.00", "nothing was deposited: {wallet}");
    app.stop().await;
}
