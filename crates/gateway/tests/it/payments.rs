//! Money under hostile and unlucky clients (issue 11, items 5, 6, 7 and 9): withdrawals whose
//! clients hang up, a journal too slow to answer in time, writes without an idempotency key,
//! payment references credited twice, and refused requests that grew the journal.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use book::Command;
use engine::{EngineOptions, SystemClock};
use gateway::{GatewayConfig, Metrics, PayFuture, PaymentProvider, Payout, PayoutOutcome, ProviderError, Streams};
use journal::{Journal, JournalError, MemoryJournal, Position};
use serde_json::{json, Value};

use crate::harness::{serve_engine, spawn_app, spawn_app_on, TestApp, ADMIN_KEY};

fn config() -> GatewayConfig {
    GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec())
}

/// Registers and logs in a player; returns the account id (`acc_N`) and the access token.
async fn player(app: &TestApp, username: &str) -> (String, String) {
    let password = "correct horse battery staple";
    let (status, registered) = app
        .call(
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({"username": username, "password": password, "date_of_birth": "1990-05-17", "country": "GB"})),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    let (status, tokens) =
        app.call("POST", "/v1/auth/login", None, Some(json!({"username": username, "password": password}))).await;
    assert_eq!(status, 200, "{tokens}");
    (registered["id"].as_str().expect("id").to_string(), tokens["access_token"].as_str().expect("token").to_string())
}

async fn wallet(app: &TestApp, token: &str) -> Value {
    let (status, wallet) = app.call("GET", "/v1/wallet", Some(token), None).await;
    assert_eq!(status, 200, "{wallet}");
    wallet
}

async fn deposit(app: &TestApp, token: &str, amount: &str, payment_ref: &str) -> (u16, Value) {
    app.call("POST", "/v1/wallet/deposits", Some(token), Some(json!({"amount": amount, "payment_ref": payment_ref})))
        .await
}

/// Waits until every withdrawal hold of the player is completed (`available == balance`).
async fn until_settled(app: &TestApp, token: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        // A read behind a slow journal may be shed (503); ask again.
        let (status, wallet) = app.call("GET", "/v1/wallet", Some(token), None).await;
        assert!(status == 200 || status == 503, "{wallet}");
        if status == 200 && wallet["available"] == wallet["balance"] {
            return wallet;
        }
        assert!(Instant::now() < deadline, "holds still pending: {wallet}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn account_number(id: &str) -> u64 {
    id.strip_prefix("acc_").and_then(|digits| digits.parse().ok()).expect("acc_N")
}

/// Item 5: fifty withdrawals whose clients close their sockets right after sending. Before, the
/// handler was dropped between placing the hold and completing it, and 49 holds stayed
/// pending for ever; now every hold the book placed is paid out.
#[tokio::test]
async fn withdrawals_whose_clients_hang_up_are_all_paid_out() {
    let app = spawn_app().await;
    let (_, token) = player(&app, "hangup").await;
    assert_eq!(deposit(&app, &token, "100.00", "psp-hangup").await.0, 201);
    let address = app.address;
    let senders: Vec<_> = (0..50)
        .map(|index| {
            let token = token.clone();
            std::thread::spawn(move || {
                let body = r#"{"amount": "1.00"}"#;
                let request = format!(
                    "POST /v1/wallet/withdrawals HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
                     Idempotency-Key: hangup-{index}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let mut stream = std::net::TcpStream::connect(address).expect("connect");
                stream.write_all(request.as_bytes()).expect("write");
                // Gone before any answer.
                drop(stream);
            })
        })
        .collect();
    for sender in senders {
        sender.join().expect("sender");
    }
    // Every hold placed is paid: the statement comes to as many completions as holds, and
    // stays so.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut settled_since: Option<Instant> = None;
    let (holds, paid) = loop {
        let (_, statement) = app.call("GET", "/v1/wallet/transactions?limit=200", Some(&token), None).await;
        let items = statement["items"].as_array().expect("items");
        let count = |status: &str| items.iter().filter(|item| item["status"] == status).count();
        let (holds, paid) = (count("pending"), count("posts"));
        if holds > 0 && holds == paid {
            let since = *settled_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(500) {
                break (holds, paid);
            }
        } else {
            settled_since = None;
        }
        assert!(Instant::now() < deadline, "holds left pending: {holds} holds, {paid} paid: {statement}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let wallet = wallet(&app, &token).await;
    assert_eq!(wallet["available"], wallet["balance"], "{wallet}");
    assert_eq!(wallet["balance"], format!("{}.00", 100 - paid), "{holds} holds: {wallet}");
}

/// Item 5: a hold left open when the process stopped (a crash between placing it and paying
/// it) is paid out when the gateway starts again.
#[tokio::test]
async fn a_withdrawal_hold_open_at_a_restart_is_paid_out_on_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut quiet = config();
    // No sweep after the one at start: the hold stays open while this process runs.
    quiet.payment_sweep_interval = Duration::from_secs(3_600);
    let app = spawn_app_on(&path, Some(dir), quiet).await;
    let (account, token) = player(&app, "restarted").await;
    assert_eq!(deposit(&app, &token, "100.00", "psp-restart").await.0, 201);
    // The hold alone, as if the process died right after the book placed it.
    let engine = app.engine.clone();
    let hold = Command::Withdraw {
        account: book::AccountId(account_number(&account)),
        amount: domain::Money::from_minor(2_500),
        idempotency: None,
    };
    let reply = tokio::task::spawn_blocking(move || engine.submit(hold)).await.expect("join").expect("durable");
    assert!(reply.is_ok(), "{reply:?}");
    let before = wallet(&app, &token).await;
    assert_eq!((&before["balance"], &before["available"]), (&json!("100.00"), &json!("75.00")));
    let (status, pending) = app.call("GET", "/v1/admin/payments?status=pending", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["items"].as_array().expect("items").len(), 1, "{pending}");
    assert_eq!(pending["items"][0]["amount"], "25.00");
    let (path, dir) = app.stop().await;

    let app = spawn_app_on(&path, dir, config()).await;
    let after = until_settled(&app, &token, Duration::from_secs(10)).await;
    assert_eq!(after["balance"], "75.00", "{after}");
    let (_, pending) = app.call("GET", "/v1/admin/payments", Some(ADMIN_KEY), None).await;
    assert_eq!(pending["items"], json!([]), "{pending}");
}

/// A provider that cannot be reached: every payout fails to get an answer.
#[derive(Debug)]
struct UnreachableProvider;

impl PaymentProvider for UnreachableProvider {
    fn pay(&self, _payout: Payout) -> PayFuture<'_> {
        Box::pin(async { Err::<PayoutOutcome, _>(ProviderError("connection refused".to_string())) })
    }
}

/// Item 5: a payment the provider never answers stays pending, is listed with its failed
/// attempts, and an operator resolves it by hand, once.
#[tokio::test]
async fn a_stuck_payment_is_listed_and_resolved_by_an_operator() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = config();
    config.payment_provider = Arc::new(UnreachableProvider);
    config.payment_sweep_interval = Duration::from_millis(50);
    config.payment_wait = Duration::from_millis(200);
    let app = spawn_app_on(&path, Some(dir), config).await;
    let (account, token) = player(&app, "stuck").await;
    assert_eq!(deposit(&app, &token, "100.00", "psp-stuck").await.0, 201);
    let (status, held) =
        app.call("POST", "/v1/wallet/withdrawals", Some(&token), Some(json!({"amount": "30.00"}))).await;
    assert_eq!(status, 201, "{held}");
    let (status, failed) =
        app.call("POST", "/v1/wallet/withdrawals", Some(&token), Some(json!({"amount": "20.00"}))).await;
    assert_eq!(status, 201, "{failed}");
    let wallet_now = wallet(&app, &token).await;
    assert_eq!((&wallet_now["balance"], &wallet_now["available"]), (&json!("100.00"), &json!("50.00")));
    // The sweep retries; the attempts show.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let (status, listed) = app.call("GET", "/v1/admin/payments?status=pending", Some(ADMIN_KEY), None).await;
        assert_eq!(status, 200, "{listed}");
        if listed["items"][0]["attempts"].as_u64().unwrap_or(0) >= 2 {
            break listed;
        }
        assert!(Instant::now() < deadline, "no retries: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{listed}");
    assert_eq!(items[0]["id"], held["id"]);
    assert_eq!(items[0]["account_id"], account.as_str());
    assert_eq!(items[0]["last_error"], "connection refused");
    // Players may not look; other statuses are not listed.
    assert_eq!(app.call("GET", "/v1/admin/payments", Some(&token), None).await.0, 403);
    assert_eq!(app.call("GET", "/v1/admin/payments?status=paid", Some(ADMIN_KEY), None).await.0, 400);

    let resolve = |id: &Value, outcome: &str| {
        let path = format!("/v1/admin/payments/{}/resolve", id.as_str().expect("id"));
        let body = json!({"outcome": outcome, "reason": "checked in the provider's dashboard"});
        let app = &app;
        async move { app.call("POST", &path, Some(ADMIN_KEY), Some(body)).await }
    };
    let (status, paid) = resolve(&held["id"], "paid").await;
    assert_eq!((status, &paid["status"]), (200, &json!("paid")), "{paid}");
    let (status, voided) = resolve(&failed["id"], "failed").await;
    assert_eq!((status, &voided["status"]), (200, &json!("failed")), "{voided}");
    let (status, again) = resolve(&held["id"], "failed").await;
    assert_eq!((status, &again["error"]["code"]), (409, &json!("payment_not_pending")), "{again}");
    assert_eq!(resolve(&json!("trf_999999"), "paid").await.0, 404);
    let (status, refused) = app
        .call(
            "POST",
            &format!("/v1/admin/payments/{}/resolve", held["id"].as_str().expect("id")),
            Some(ADMIN_KEY),
            Some(json!({"outcome": "paid", "reason": "x".repeat(book::constants::REASON_BYTES_MAX + 1)})),
        )
        .await;
    assert_eq!((status, &refused["error"]["code"]), (400, &json!("invalid_request")), "{refused}");
    // The 30.00 left, the 20.00 is the player's again.
    let wallet_after = wallet(&app, &token).await;
    assert_eq!((&wallet_after["balance"], &wallet_after["available"]), (&json!("70.00"), &json!("70.00")));
    let (_, listed) = app.call("GET", "/v1/admin/payments", Some(ADMIN_KEY), None).await;
    assert_eq!(listed["items"], json!([]));
}

// ---- item 6: idempotency keys required, and "outcome unknown" ---------------------------------

/// Item 6: every write that moves money or places a bet refuses a request without an
/// `Idempotency-Key`, before it reaches the book.
#[tokio::test]
async fn writes_that_move_money_require_an_idempotency_key() {
    let app = spawn_app().await;
    let (_, token) = player(&app, "keyless").await;
    assert_eq!(deposit(&app, &token, "50.00", "psp-keyless").await.0, 201);
    let (_, _, selections) = app.football_match("Keyless FC v Retry Town").await;
    let bet = json!({"type": "single", "legs": [{"selection_id": selections[0], "price": "2.50"}], "stake": "1.00"});
    let (status, placed) = app.call("POST", "/v1/bets", Some(&token), Some(bet.clone())).await;
    assert_eq!(status, 201, "{placed}");
    let cashout = format!("/v1/bets/{}/cashout", placed["id"].as_str().expect("id"));
    for (path, body) in [
        ("/v1/wallet/deposits", json!({"amount": "5.00", "payment_ref": "psp-no-key"})),
        ("/v1/wallet/withdrawals", json!({"amount": "5.00"})),
        ("/v1/bets", bet),
        (cashout.as_str(), json!({"quote_id": "quo_1"})),
    ] {
        let response = app.client.post(app.url(path)).bearer_auth(&token).json(&body).send().await.expect("request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("json");
        assert_eq!((status, &body["error"]["code"]), (400, &json!("idempotency_key_required")), "{path}: {body}");
    }
    let wallet = wallet(&app, &token).await;
    assert_eq!((&wallet["balance"], &wallet["available"]), (&json!("49.00"), &json!("49.00")));
}

/// A journal whose appends (write and sync) take as long as the test says.
struct SlowJournal {
    inner: MemoryJournal,
    delay_ms: Arc<AtomicU64>,
}

impl Journal for SlowJournal {
    fn append(&mut self, payload: &[u8]) -> Result<Position, JournalError> {
        std::thread::sleep(Duration::from_millis(self.delay_ms.load(Ordering::Relaxed)));
        self.inner.append(payload)
    }

    fn next_position(&self) -> Position {
        self.inner.next_position()
    }

    fn read_from(
        &self,
        from: Position,
        visit: &mut dyn FnMut(Position, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        self.inner.read_from(from, visit)
    }
}

async fn spawn_on_slow_journal(mut config: GatewayConfig) -> (TestApp, Arc<AtomicU64>) {
    config.admin_key = Some(ADMIN_KEY.to_string());
    let delay_ms = Arc::new(AtomicU64::new(0));
    let journal = SlowJournal { inner: MemoryJournal::new(), delay_ms: delay_ms.clone() };
    let metrics = Metrics::new();
    let streams = Streams::new(&config, &metrics);
    let recovered = engine::recover(&journal, None, book::Config::default()).expect("recover");
    let options =
        EngineOptions { on_commit: vec![metrics.engine_hook(), streams.engine_hook()], ..EngineOptions::default() };
    let engine =
        engine::EngineHandle::start(Box::new(journal), None, recovered, Box::new(SystemClock), options).expect("start");
    let app = serve_engine(engine, std::env::temp_dir(), None, config, metrics, streams).await;
    (app, delay_ms)
}

/// Item 6: with the journal's sync slowed past the reply timeout, a withdrawal is answered 504
/// `outcome_unknown` (it reached the book: not 503 "retry"), it commits anyway, and the retry
/// with the same key returns that first outcome: one withdrawal, never two. The same when the
/// request's own deadline ends the wait.
#[tokio::test]
async fn a_write_stuck_behind_a_slow_journal_is_outcome_unknown_and_its_retry_returns_the_first_outcome() {
    for deadline in ["book_reply_timeout", "request_timeout"] {
        let mut config = config();
        // Registration hashes a password: the request's deadline must leave time for it.
        let slow_ms = if deadline == "book_reply_timeout" {
            config.book_reply_timeout = Duration::from_millis(300);
            1_500
        } else {
            config.request_timeout = Duration::from_secs(5);
            6_000
        };
        let (app, delay_ms) = spawn_on_slow_journal(config).await;
        let (_, token) = player(&app, "slowsync").await;
        assert_eq!(deposit(&app, &token, "100.00", "psp-slow").await.0, 201);
        delay_ms.store(slow_ms, Ordering::Relaxed);
        let key = [("Idempotency-Key", "slow-withdrawal-1")];
        let body = json!({"amount": "10.00"});
        let response = app
            .client
            .post(app.url("/v1/wallet/withdrawals"))
            .bearer_auth(&token)
            .header(key[0].0, key[0].1)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 504, "{deadline}");
        assert_eq!(response.headers().get("retry-after").map(|value| value.to_str().expect("ascii")), Some("1"));
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["error"]["code"], "outcome_unknown", "{deadline}: {answer}");
        delay_ms.store(0, Ordering::Relaxed);
        // It happened: the hold is placed and paid out once the journal catches up.
        let settled = until_settled(&app, &token, Duration::from_secs(10)).await;
        assert_eq!(settled["balance"], "90.00", "{deadline}: {settled}");
        let (status, retried) =
            app.call_with("POST", "/v1/wallet/withdrawals", Some(&token), Some(body.clone()), &key).await;
        assert_eq!(status, 201, "{deadline}: {retried}");
        let (status, again) = app.call_with("POST", "/v1/wallet/withdrawals", Some(&token), Some(body), &key).await;
        assert_eq!((status, &again), (201, &retried), "{deadline}");
        let settled = until_settled(&app, &token, Duration::from_secs(10)).await;
        assert_eq!(settled["balance"], "90.00", "{deadline}: one withdrawal, never two: {settled}");
        app.stop().await;
    }
}

// ---- item 7: a payment reference credits at most once -----------------------------------------

/// Item 7: ten deposits with one payment reference and ten different keys credited 500.00;
/// now the first credits and the others are 409 `duplicate_payment_ref`, across a restart.
#[tokio::test]
async fn a_payment_reference_credits_at_most_once_across_restarts() {
    let app = spawn_app().await;
    let (_, token) = player(&app, "oneref").await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let (status, answer) = deposit(&app, &token, "50.00", "psp-same-ref").await;
        if status != 201 {
            assert_eq!(answer["error"]["code"], "duplicate_payment_ref", "{answer}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(wallet(&app, &token).await["balance"], "50.00");
    // Another reference credits; another player may use the same one (references are per
    // account: the provider tells whose payment it is).
    assert_eq!(deposit(&app, &token, "5.00", "psp-other-ref").await.0, 201);
    let (_, someone_else) = player(&app, "otherref").await;
    assert_eq!(deposit(&app, &someone_else, "5.00", "psp-same-ref").await.0, 201);
    let (path, dir) = app.stop().await;

    let app = spawn_app_on(&path, dir, config()).await;
    let (status, answer) = deposit(&app, &token, "50.00", "psp-same-ref").await;
    assert_eq!((status, &answer["error"]["code"]), (409, &json!("duplicate_payment_ref")), "{answer}");
    assert_eq!(wallet(&app, &token).await["balance"], "55.00");
}

// ---- item 9: refused requests do not grow the journal -------------------------------------------

/// Bytes of every file under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            let metadata = entry.metadata().expect("metadata");
            if metadata.is_dir() {
                bytes_under(&entry.path())
            } else {
                metadata.len()
            }
        })
        .sum()
}

/// Item 9: a hundred deposits with a 60 KB `payment_ref` added 6.5 MB to the journal while
/// being refused. Every free-text field is now bounded before the book: requests over a limit
/// are 400 `invalid_request` naming the field, and the journal does not grow by a byte.
#[tokio::test]
async fn requests_refused_for_oversized_text_leave_the_journal_as_it_was() {
    let app = spawn_app().await;
    let (_, token) = player(&app, "bigref").await;
    assert_eq!(deposit(&app, &token, "10.00", "psp-bigref").await.0, 201);
    let (event, _, _) = app.football_match("Sized FC v Bounded Town").await;
    let journal = app.data_dir.join("journal");
    let before = bytes_under(&journal);
    let huge = "x".repeat(60_000);
    let long = "x".repeat(book::constants::NAME_BYTES_MAX + 1);
    for _ in 0..100 {
        let (status, answer) = deposit(&app, &token, "1.00", &huge).await;
        assert_eq!((status, &answer["error"]["field"]), (400, &json!("payment_ref")), "{answer}");
    }
    let event_path = format!("/v1/admin/events/{event}/markets");
    let starts_at = gateway::format_rfc3339(crate::harness::now_ms() + 86_400_000);
    let register = json!({"username": "longcountry", "password": "correct horse battery staple",
                          "date_of_birth": "1990-05-17", "country": long});
    let feed_message = json!({"messages": [{"provider": "sized", "sequence": 1, "timestamp": 1,
                                            "items": [{"type": "bet_stop", "event": long}]}]});
    let refused: Vec<(&str, &str, Option<&str>, Value, &str)> = vec![
        ("POST", "/v1/wallet/deposits", Some(&token), json!({"amount": "1.00", "payment_ref": ""}), "payment_ref"),
        ("POST", "/v1/auth/register", None, register, "country"),
        (
            "POST",
            "/v1/admin/events",
            Some(ADMIN_KEY),
            json!({"name": long, "sport": "football", "starts_at": starts_at}),
            "name",
        ),
        (
            "POST",
            "/v1/admin/events",
            Some(ADMIN_KEY),
            json!({"name": "E", "sport": long, "starts_at": starts_at}),
            "sport",
        ),
        (
            "POST",
            "/v1/admin/events",
            Some(ADMIN_KEY),
            json!({"name": "E", "sport": "football", "competition": long, "starts_at": starts_at}),
            "competition",
        ),
        (
            "POST",
            &event_path,
            Some(ADMIN_KEY),
            json!({"name": long, "selections": [{"name": "A", "price": "2.00"}]}),
            "name",
        ),
        (
            "POST",
            &event_path,
            Some(ADMIN_KEY),
            json!({"name": "M", "kind": long, "selections": [{"name": "A", "price": "2.00"}]}),
            "kind",
        ),
        (
            "POST",
            &event_path,
            Some(ADMIN_KEY),
            json!({"name": "M", "selections": [{"name": long, "price": "2.00"}]}),
            "selections[0].name",
        ),
        ("POST", "/v1/admin/api-keys", Some(ADMIN_KEY), json!({"name": long, "scopes": ["feed"]}), "name"),
    ];
    for (method, path, credential, body, field) in refused {
        let (status, answer) = app.call(method, path, credential, Some(body)).await;
        assert_eq!((status, &answer["error"]["field"]), (400, &json!(field)), "{path}: {answer}");
    }
    let (status, pushed) = app.call("POST", "/v1/feed/messages", Some(ADMIN_KEY), Some(feed_message)).await;
    assert_eq!(status, 200, "{pushed}");
    assert_eq!(pushed["results"][0]["status"], "refused", "{pushed}");
    assert_eq!(bytes_under(&journal), before, "refused requests reached the journal");
    // What the book refuses after it is well-formed (here: more than the balance) is journaled,
    // but each is small and bounded by the limits above.
    for _ in 0..100 {
        let (status, _) =
            app.call("POST", "/v1/wallet/withdrawals", Some(&token), Some(json!({"amount": "999.00"}))).await;
        assert_eq!(status, 422);
    }
    let grown = bytes_under(&journal) - before;
    assert!(grown < 100 * 1_024, "100 refused withdrawals added {grown} bytes");
}
