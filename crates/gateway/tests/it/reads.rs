//! History from the read models: the projector beside the engine (`harness::start_projector`),
//! read-your-writes, the operator's search routes and the customer view, and what the routes
//! answer when the projector is stopped or off.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{fresh_idempotency_key, spawn_app, spawn_app_without_projector, Player, TestApp, ADMIN_KEY};

async fn place(app: &TestApp, player: &Player, selection: &str, stake: &str) -> (String, u64) {
    let response = app
        .client
        .post(app.url("/v1/bets"))
        .bearer_auth(&player.access_token)
        .header("idempotency-key", fresh_idempotency_key())
        .json(&json!({"type": "single", "legs": [{"selection_id": selection, "price": "2.50"}], "stake": stake, "accept_price_changes": "any"}))
        .send()
        .await
        .expect("place");
    assert_eq!(response.status().as_u16(), 201);
    let position = response
        .headers()
        .get("x-journal-position")
        .expect("a write's answer carries X-Journal-Position")
        .to_str()
        .expect("ascii")
        .parse::<u64>()
        .expect("a position");
    let body: Value = response.json().await.expect("json");
    (body["id"].as_str().expect("id").to_string(), position)
}

async fn api_key(app: &TestApp, name: &str, scopes: &[&str]) -> String {
    let (status, body) =
        app.call("POST", "/v1/admin/api-keys", Some(ADMIN_KEY), Some(json!({"name": name, "scopes": scopes}))).await;
    assert_eq!(status, 201, "api key: {body}");
    body["key"].as_str().expect("key").to_string()
}

#[tokio::test]
async fn a_bet_placed_is_read_at_once_every_time() {
    let app = spawn_app().await;
    let player = app.funded_player("rywalice", "500.00").await;
    let (_, _, selections) = app.football_match("Read v Write").await;
    let mut last_position = 0;
    for round in 0..40 {
        let (bet, position) = place(&app, &player, &selections[0], "1.00").await;
        assert!(position > last_position, "positions grow: {position} after {last_position}");
        last_position = position;
        // At once, with no hint: the read waits for the models to hold the write.
        let (status, found) = app.call("GET", &format!("/v1/bets/{bet}"), Some(&player.access_token), None).await;
        assert_eq!(status, 200, "round {round}: {found}");
        assert_eq!(found["id"], bet.as_str());
        assert_eq!(found["status"], "accepted");
        let (status, page) = app.call("GET", "/v1/bets?limit=1", Some(&player.access_token), None).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["items"][0]["id"], bet.as_str(), "round {round}: newest first");
        let (status, statement) =
            app.call("GET", "/v1/wallet/transactions?limit=1", Some(&player.access_token), None).await;
        assert_eq!(status, 200, "{statement}");
        assert_eq!(statement["items"][0]["type"], "stake");
        assert_eq!(statement["items"][0]["bet_id"], bet.as_str());
    }
    // An operator reading right after the player's write sees it too (reads wait for every
    // write acknowledged before them, not only the reader's own).
    let (bet, position) = place(&app, &player, &selections[1], "2.00").await;
    let (status, found) = app
        .call_with("GET", "/v1/admin/bets?limit=1", Some(ADMIN_KEY), None, &[("x-min-position", &position.to_string())])
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["items"][0]["id"], bet.as_str());
    app.stop().await;
}

#[tokio::test]
async fn a_bad_min_position_is_refused_and_a_future_one_is_the_journal_end() {
    let app = spawn_app().await;
    let player = app.funded_player("minpos", "10.00").await;
    for bad in ["-1", "abc", "1.5", "", "999999999999999999999999"] {
        let (status, body) =
            app.call_with("GET", "/v1/bets", Some(&player.access_token), None, &[("x-min-position", bad)]).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
    }
    // Past the journal's end: waited for as the end, so answered.
    let (status, body) = app
        .call_with("GET", "/v1/bets", Some(&player.access_token), None, &[("x-min-position", "18446744073709551615")])
        .await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_stopped_projector_makes_reads_answer_unavailable_after_the_bound() {
    let mut app = spawn_app().await;
    let player = app.funded_player("stopped", "50.00").await;
    let (_, _, selections) = app.football_match("Stop v Go").await;
    let (status, _) = app.call("GET", "/v1/bets", Some(&player.access_token), None).await;
    assert_eq!(status, 200);
    // The projector is stopped; the models keep what they hold.
    let projector = app.projector.take().expect("the harness runs a projector");
    tokio::task::spawn_blocking(move || projector.stop()).await.expect("join");
    let (status, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "bets are still taken: {body}");
    assert_eq!(body["warnings"], json!(["projector_failed"]), "{body}");
    assert_eq!(body["projector"]["state"], "stopped", "{body}");
    // A new write: the models can never reach it.
    let (bet, _) = place(&app, &player, &selections[0], "1.00").await;
    let started = Instant::now();
    let response = app
        .client
        .get(app.url(&format!("/v1/bets/{bet}")))
        .bearer_auth(&player.access_token)
        .send()
        .await
        .expect("read");
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().get("retry-after").is_some(), "503 carries Retry-After");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    app.stop().await;
}

#[tokio::test]
async fn a_projector_behind_a_write_times_out_with_unavailable() {
    // The projector runs but the read asks for a position it can only reach after the next
    // write: the read waits `READ_YOUR_WRITES_WAIT` and answers 503 `unavailable`. Reached by
    // stopping the projector, writing, and reading with the write's position.
    let mut app = spawn_app().await;
    let player = app.funded_player("behind", "50.00").await;
    let (_, _, selections) = app.football_match("Lag v Lead").await;
    let projector = app.projector.take().expect("projector");
    let published = projector.published().clone();
    tokio::task::spawn_blocking(move || projector.stop()).await.expect("join");
    let before = published.position();
    let (_, position) = place(&app, &player, &selections[0], "1.00").await;
    assert!(position > before);
    let started = Instant::now();
    let (status, body) = app.call("GET", "/v1/bets", Some(&player.access_token), None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(started.elapsed() < gateway::READ_YOUR_WRITES_WAIT + Duration::from_secs(5));
    app.stop().await;
}

#[tokio::test]
async fn with_the_projector_off_history_answers_unavailable_and_readyz_says_why() {
    let app = spawn_app_without_projector().await;
    let player = app.funded_player("offline", "10.00").await;
    for path in ["/v1/bets", "/v1/bets/bet_1", "/v1/wallet/transactions"] {
        let (status, body) = app.call("GET", path, Some(&player.access_token), None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(body["error"]["message"].as_str().expect("message").contains("projector is off"), "{body}");
    }
    for path in ["/v1/admin/bets", "/v1/admin/accounts?q=off", "/v1/admin/accounts/acc_1"] {
        let (status, body) = app.call("GET", path, Some(ADMIN_KEY), None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unavailable");
    }
    // Bets are still taken: the node is ready, with a warning.
    let (status, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["warnings"], json!(["projector_off"]), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn operators_search_bets_by_player_market_status_time_and_stake_in_pages() {
    let app = spawn_app().await;
    let alice = app.funded_player("searchalice", "500.00").await;
    let bob = app.funded_player("searchbob", "500.00").await;
    let (event_a, market_a, selections_a) = app.football_match("Alpha v Beta").await;
    let (_, market_b, selections_b) = app.football_match("Gamma v Delta").await;
    let started = crate::harness::now_ms();
    let mut alice_bets = Vec::new();
    for stake in ["1.00", "5.00", "20.00"] {
        alice_bets.push(place(&app, &alice, &selections_a[0], stake).await.0);
    }
    let (bob_bet, _) = place(&app, &bob, &selections_b[1], "7.00").await;
    let trader = api_key(&app, "desk", &["trading"]).await;
    let compliance = api_key(&app, "audit", &["compliance"]).await;
    let settlement = api_key(&app, "settler", &["settlement"]).await;

    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| item["id"].as_str().expect("id").to_string())
            .collect()
    };
    let (status, all) = app.call("GET", "/v1/admin/bets", Some(&trader), None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all), [bob_bet.clone(), alice_bets[2].clone(), alice_bets[1].clone(), alice_bets[0].clone()]);
    assert!(all["items"][0]["player_id"].as_str().expect("player_id").starts_with("acc_"));
    assert_eq!(all["items"][0]["legs"][0]["market_id"], market_b.as_str());

    let alice_id = all["items"][1]["player_id"].as_str().expect("player").to_string();
    let (_, by_player) = app.call("GET", &format!("/v1/admin/bets?player={alice_id}"), Some(&compliance), None).await;
    assert_eq!(ids(&by_player).len(), 3);
    let (_, by_market) = app.call("GET", &format!("/v1/admin/bets?market={market_b}"), Some(&trader), None).await;
    assert_eq!(ids(&by_market), std::slice::from_ref(&bob_bet));
    let (_, by_event) = app.call("GET", &format!("/v1/admin/bets?event={event_a}"), Some(&trader), None).await;
    assert_eq!(ids(&by_event).len(), 3);
    let (_, by_stake) = app.call("GET", "/v1/admin/bets?min_stake=5.00", Some(&trader), None).await;
    assert_eq!(ids(&by_stake), [bob_bet.clone(), alice_bets[2].clone(), alice_bets[1].clone()]);
    let placed_from = gateway::format_rfc3339(started.saturating_sub(60_000));
    let (_, window) =
        app.call("GET", &format!("/v1/admin/bets?placed_from={placed_from}&status=open"), Some(&trader), None).await;
    assert_eq!(ids(&window).len(), 4, "{window}");
    let (_, settled) = app.call("GET", "/v1/admin/bets?status=won", Some(&trader), None).await;
    assert!(ids(&settled).is_empty());

    // Settle market A: Home wins; the search sees it at once.
    let (status, body) = app
        .call(
            "POST",
            &format!("/v1/admin/markets/{market_a}/settle"),
            Some(ADMIN_KEY),
            Some(json!({"results": [
                {"selection_id": selections_a[0], "outcome": "win"},
                {"selection_id": selections_a[1], "outcome": "lose"},
                {"selection_id": selections_a[2], "outcome": "lose"}
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, won) =
        app.call("GET", "/v1/admin/bets?status=won&settled_from=2020-01-01T00:00:00Z", Some(&trader), None).await;
    assert_eq!(ids(&won).len(), 3, "{won}");
    assert_eq!(won["items"][0]["payout"], "50.00");

    // Pages of one, by cursor, cover everything once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/admin/bets?limit=1&cursor={cursor}"),
            None => "/v1/admin/bets?limit=1".to_string(),
        };
        let (status, page) = app.call("GET", &path, Some(&trader), None).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids(&all));

    // Scopes and bad filters.
    let (status, _) = app.call("GET", "/v1/admin/bets", Some(&settlement), None).await;
    assert_eq!(status, 403);
    let (status, _) = app.call("GET", "/v1/admin/bets", Some(&alice.access_token), None).await;
    assert_eq!(status, 403);
    for bad in [
        "player=7",
        "market=evt_1",
        "status=maybe",
        "placed_from=yesterday",
        "placed_from=2026-02-01T00:00:00Z&placed_to=2026-01-01T00:00:00Z",
        "min_stake=1.001",
        "currency=XXX",
        "limit=0",
        "cursor=bet_x",
        "unknown=1",
    ] {
        let (status, body) = app.call("GET", &format!("/v1/admin/bets?{bad}"), Some(&trader), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{bad}");
    }
    app.stop().await;
}

#[tokio::test]
async fn operators_find_accounts_and_see_the_customer_view() {
    let app = spawn_app().await;
    let carol = app.funded_player("carolsearch", "100.00").await;
    let _carl = app.player("carlsearch").await;
    let _dave = app.player("davesearch").await;
    let (_, _, selections) = app.football_match("View v Model").await;
    let (bet, _) = place(&app, &carol, &selections[0], "4.00").await;
    let (status, body) = app.call("POST", "/v1/time-out", Some(&carol.access_token), Some(json!({"hours": 24}))).await;
    assert_eq!(status, 200, "{body}");
    let support = api_key(&app, "support", &["compliance"]).await;

    let (status, found) = app.call("GET", "/v1/admin/accounts?q=CAR", Some(&support), None).await;
    assert_eq!(status, 200, "{found}");
    let names: Vec<&str> =
        found["items"].as_array().expect("items").iter().map(|item| item["username"].as_str().expect("name")).collect();
    assert_eq!(names, ["carolsearch", "carlsearch"]);
    assert_eq!(found["items"][0]["status"], "timed_out");
    assert_eq!(found["items"][1]["status"], "active");
    let carol_id = found["items"][0]["id"].as_str().expect("id").to_string();
    let (_, by_id) = app.call("GET", &format!("/v1/admin/accounts?q={carol_id}"), Some(&support), None).await;
    assert_eq!(by_id["items"][0]["username"], "carolsearch");
    let (_, first) = app.call("GET", "/v1/admin/accounts?q=car&limit=1", Some(&support), None).await;
    assert_eq!(first["items"].as_array().expect("items").len(), 1);
    let cursor = first["next_cursor"].as_str().expect("another page").to_string();
    let (_, second) =
        app.call("GET", &format!("/v1/admin/accounts?q=car&limit=1&cursor={cursor}"), Some(&support), None).await;
    assert_eq!(second["items"][0]["username"], "carlsearch");
    assert_eq!(second["next_cursor"], Value::Null);
    let (_, none) = app.call("GET", "/v1/admin/accounts?q=100%25", Some(&support), None).await;
    assert_eq!(none["items"], json!([]), "pattern characters match literally");
    for bad in ["", "?q=", &format!("?q={}", "x".repeat(101))] {
        let (status, _) = app.call("GET", &format!("/v1/admin/accounts{bad}"), Some(&support), None).await;
        assert_eq!(status, 400, "{bad}");
    }

    let (status, view) = app.call("GET", &format!("/v1/admin/accounts/{carol_id}"), Some(&support), None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["username"], "carolsearch");
    assert_eq!(view["wallet"]["balance"], "96.00");
    assert_eq!(view["wallet"]["pending_stakes"], "4.00");
    assert_eq!(view["frozen"], false);
    assert!(view["timed_out_until"].is_string(), "{view}");
    assert_eq!(view["self_excluded_until"], Value::Null);
    assert_eq!(view["kyc"]["status"], "age_verified");
    assert_eq!(view["limits"]["deposit"]["day"]["used"], "100.00");
    assert_eq!(view["bets"][0]["id"], bet.as_str());
    let types: Vec<&str> = view["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .map(|item| item["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["stake", "deposit"]);
    // The customer view's bet is the player's own view of it.
    let (_, own) = app.call("GET", &format!("/v1/bets/{bet}"), Some(&carol.access_token), None).await;
    assert_eq!(view["bets"][0], own);

    let (status, _) = app.call("GET", "/v1/admin/accounts/acc_999", Some(&support), None).await;
    assert_eq!(status, 404);
    let (status, _) = app.call("GET", "/v1/admin/accounts/nope", Some(&support), None).await;
    assert_eq!(status, 404);
    let (status, _) = app.call("GET", &format!("/v1/admin/accounts/{carol_id}"), Some(&carol.access_token), None).await;
    assert_eq!(status, 403);
    app.stop().await;
}

#[tokio::test]
async fn metrics_show_the_projector_position_and_lag() {
    let app = spawn_app().await;
    let player = app.funded_player("metered", "10.00").await;
    let (status, _) = app.call("GET", "/v1/wallet/transactions", Some(&player.access_token), None).await;
    assert_eq!(status, 200);
    let text = app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let value = |name: &str| -> i64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{name} missing"))
            .trim()
            .parse()
            .expect("integer")
    };
    let journal = value("sportsbook_journal_position");
    let position = value("sportsbook_projector_position");
    assert!(journal >= 2 && position >= 2, "{journal} {position}");
    assert_eq!(value("sportsbook_projector_lag_records"), journal - position);
    assert_eq!(value("sportsbook_projector_up"), 1);
    assert!(text.contains("sportsbook_history_read_waits_total{reason=\"timed_out\"} 0"), "{text}");
    app.stop().await;
}

/// Reports and the audit trail read the models too, with the same read-your-writes: a write
/// acknowledged before the read is in it, at once.
#[tokio::test]
async fn reports_and_the_audit_trail_read_their_writes_at_once() {
    let app = spawn_app().await;
    let player = app.funded_player("reporter", "500.00").await;
    let (_, _, selections) = app.football_match("Report v Read").await;
    for round in 1..=12u64 {
        place(&app, &player, &selections[0], "1.00").await;
        let (status, turnover) = app.call("GET", "/v1/admin/reports/turnover", Some(ADMIN_KEY), None).await;
        assert_eq!(status, 200, "{turnover}");
        assert_eq!(turnover["currencies"][0]["bets_placed"], json!(round), "round {round}: {turnover}");
        assert_eq!(turnover["base_total"]["stakes_placed"], format!("{round}.00"), "{turnover}");
        let (status, audit) = app.call("GET", "/v1/admin/audit?limit=200", Some(ADMIN_KEY), None).await;
        assert_eq!(status, 200, "{audit}");
        let placed = audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .flat_map(|batch| batch["commands"].as_array().expect("commands").iter())
            .filter(|command| command["type"] == "place_bet")
            .count();
        assert_eq!(placed as u64, round, "round {round}");
    }
    // A limit set is in the rg-events report at once, as a measure in force and as an event.
    let limits = json!({"stake": {"week": "100.00"}});
    let (status, body) = app.call("PUT", "/v1/limits", Some(&player.access_token), Some(limits)).await;
    assert_eq!(status, 200, "{body}");
    let (status, report) = app.call("GET", "/v1/admin/reports/rg-events", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["accounts"][0]["limits"],
        json!([{"kind": "stake", "period": "week", "value": "100.00", "pending": null}]),
        "{report}"
    );
    assert_eq!(report["events"][0]["type"], "set_limits", "{report}");
    app.stop().await;
}

/// With the projector off, the reports and the audit listing served from the models answer
/// `unavailable`; liabilities (open state, from the book) and `?verify=true` (the journal) do not
/// need it.
#[tokio::test]
async fn with_the_projector_off_reports_and_the_audit_listing_answer_unavailable() {
    let app = spawn_app_without_projector().await;
    for path in [
        "/v1/admin/reports/turnover",
        "/v1/admin/reports/ggr",
        "/v1/admin/reports/rg-events",
        "/v1/admin/reports/turnover?format=csv",
        "/v1/admin/audit",
    ] {
        let (status, body) = app.call("GET", path, Some(ADMIN_KEY), None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
    }
    for path in ["/v1/admin/reports/liabilities", "/v1/admin/audit?verify=true"] {
        let (status, body) = app.call("GET", path, Some(ADMIN_KEY), None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    app.stop().await;
}
