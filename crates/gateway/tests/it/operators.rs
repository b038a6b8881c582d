//! Black-box tests of the operator routes: fixtures, prices, market status, in-play, risk,
//! exposure, settlement and API keys, with their authorisation and validation errors.

use serde_json::{json, Value};

use crate::harness::{now_ms, spawn_app, Player, TestApp, ADMIN_KEY};

/// Creates an API key with `scopes` (by the bootstrap admin key) and returns its body.
async fn api_key(app: &TestApp, name: &str, scopes: &[&str]) -> Value {
    let (status, body) =
        app.call("POST", "/v1/admin/api-keys", Some(ADMIN_KEY), Some(json!({"name": name, "scopes": scopes}))).await;
    assert_eq!(status, 201, "api key: {body}");
    body
}

fn key_of(body: &Value) -> String {
    body["key"].as_str().expect("key").to_string()
}

/// Places a single at `price` with no price changes accepted.
async fn bet(app: &TestApp, player: &Player, selection: &str, price: &str, stake: &str) -> (u16, Value) {
    app.call(
        "POST",
        "/v1/bets",
        Some(&player.access_token),
        Some(json!({"type": "single", "legs": [{"selection_id": selection, "price": price}], "stake": stake,
                    "accept_price_changes": "none"})),
    )
    .await
}

/// Registers a player, returning the account id, and logs in with a deposit of `amount`.
async fn player_with_account(app: &TestApp, username: &str, amount: &str) -> (Player, String) {
    let (status, registered) = app
        .call(
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({"username": username, "password": "correct horse battery staple",
                        "date_of_birth": "1990-05-17", "country": "GB", "currency": "EUR"})),
        )
        .await;
    assert_eq!(status, 201, "register: {registered}");
    let account = registered["id"].as_str().expect("account id").to_string();
    let (status, tokens) = app
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"username": username, "password": "correct horse battery staple"})),
        )
        .await;
    assert_eq!(status, 200, "login: {tokens}");
    let player = Player {
        access_token: tokens["access_token"].as_str().expect("access token").to_string(),
        refresh_token: tokens["refresh_token"].as_str().expect("refresh token").to_string(),
        username: username.to_string(),
    };
    let (status, body) = app
        .call(
            "POST",
            "/v1/wallet/deposits",
            Some(&player.access_token),
            Some(json!({"amount": amount, "payment_ref": format!("t-{}", crate::harness::fresh_idempotency_key())})),
        )
        .await;
    assert_eq!(status, 201, "deposit: {body}");
    (player, account)
}

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

#[tokio::test]
async fn creates_events_and_markets_returned_whole() {
    let app = spawn_app().await;
    let (status, event) = app
        .call(
            "POST",
            "/v1/admin/events",
            Some(ADMIN_KEY),
            Some(json!({"name": "Arsenal v Chelsea", "sport": "football", "competition": "Premier League",
                        "starts_at": "2030-05-01T15:00:00Z"})),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    let event_id = event["id"].as_str().expect("id");
    assert!(event_id.starts_with("evt_"), "{event}");
    assert_eq!(event["name"], "Arsenal v Chelsea");
    assert_eq!(event["sport"], "football");
    assert_eq!(event["competition"], "Premier League");
    assert_eq!(event["starts_at"], "2030-05-01T15:00:00.000Z");
    assert_eq!(event["state"], "scheduled");
    assert_eq!(event["markets"], json!([]));

    let (status, market) = app
        .call(
            "POST",
            &format!("/v1/admin/events/{event_id}/markets"),
            Some(ADMIN_KEY),
            Some(json!({"name": "Win", "kind": "winner", "selections": [
                {"name": "Galopin", "price": "3/1"}, {"name": "State Man", "price": "6.00"}
            ], "each_way": {"places": 3, "fraction": "1/5"}})),
        )
        .await;
    assert_eq!(status, 201, "{market}");
    assert!(market["id"].as_str().expect("id").starts_with("mkt_"));
    assert_eq!(market["event_id"], event_id);
    assert_eq!(market["status"], "open");
    assert_eq!(market["kind"], "winner");
    assert_eq!(market["in_play"], false);
    assert_eq!(market["each_way"]["places"], 3);
    let selections = market["selections"].as_array().expect("selections");
    assert_eq!(selections.len(), 2);
    assert!(selections[0]["id"].as_str().expect("id").starts_with("sel_"));
    assert_eq!(selections[0]["name"], "Galopin");
    assert_eq!(selections[0]["price"], "4.00");
    assert_eq!(selections[0]["fractional"], "3/1");
    assert_eq!(selections[0]["price_version"], 1);
    assert_eq!(selections[1]["price"], "6.00");

    // Without a competition or a kind.
    let (status, plain) = app
        .call(
            "POST",
            "/v1/admin/events",
            Some(ADMIN_KEY),
            Some(json!({"name": "A v B", "sport": "tennis", "starts_at": "2030-05-01T15:00:00+00:00"})),
        )
        .await;
    assert_eq!(status, 201, "{plain}");
    assert_eq!(plain["competition"], "");
    let market_id = market["id"].clone();
    let (status, market) = app
        .call(
            "POST",
            &format!("/v1/admin/events/{}/markets", plain["id"].as_str().expect("id")),
            Some(ADMIN_KEY),
            Some(json!({"name": "Match winner", "selections": [{"name": "A", "price": "1.80"}, {"name": "B", "price": "+100"}]})),
        )
        .await;
    assert_eq!(status, 201, "{market}");
    assert_eq!(market["kind"], "other");
    assert_eq!(market["each_way"], Value::Null);
    assert_eq!(market["selections"][1]["price"], "2.00");

    // The event now shows its market.
    let (status, shown) = app.call("GET", &format!("/v1/events/{event_id}"), None, None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["markets"][0]["id"], market_id);
    assert_eq!(shown["markets"][0]["selections"][1]["name"], "State Man");
}

#[tokio::test]
async fn prices_change_with_new_versions() {
    let app = spawn_app().await;
    let (_, market, selections) = app.football_match("Derby").await;
    let (status, updated) = app
        .call(
            "PUT",
            &format!("/v1/admin/markets/{market}/prices"),
            Some(ADMIN_KEY),
            Some(json!({"prices": [{"selection_id": selections[0], "price": "2.40"},
                                   {"selection_id": selections[1], "price": "3.20"}]})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["id"], market.as_str());
    assert_eq!(updated["selections"][0]["price"], "2.40");
    assert_eq!(updated["selections"][0]["price_version"], 2);
    // The same price is no change: its version stays.
    assert_eq!(updated["selections"][1]["price"], "3.20");
    assert_eq!(updated["selections"][1]["price_version"], 1);

    // A feed key may set prices but not suspend.
    let feed = key_of(&api_key(&app, "feed", &["feed"]).await);
    let (status, updated) = app
        .call(
            "PUT",
            &format!("/v1/admin/markets/{market}/prices"),
            Some(&feed),
            Some(json!({"prices": [{"selection_id": selections[0], "price": "2.30"}]})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["selections"][0]["price_version"], 3);
    let (status, body) = app.call("POST", &format!("/v1/admin/markets/{market}/suspend"), Some(&feed), None).await;
    assert_error(status, &body, 403, "forbidden");

    // A selection of another market is not in this one.
    let (_, _, other) = app.football_match("Other").await;
    let (status, body) = app
        .call(
            "PUT",
            &format!("/v1/admin/markets/{market}/prices"),
            Some(ADMIN_KEY),
            Some(json!({"prices": [{"selection_id": other[0], "price": "2.00"}]})),
        )
        .await;
    assert_error(status, &body, 409, "selection_unavailable");
}

#[tokio::test]
async fn suspended_market_refuses_bets_until_resumed_and_closed_for_good() {
    let app = spawn_app().await;
    let player = app.funded_player("suspense", "100.00").await;
    let (_, market, selections) = app.football_match("Derby").await;

    let (status, suspended) =
        app.call("POST", &format!("/v1/admin/markets/{market}/suspend"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{suspended}");
    assert_eq!(suspended["status"], "suspended");
    let (status, body) = bet(&app, &player, &selections[0], "2.50", "10.00").await;
    assert_error(status, &body, 409, "market_suspended");

    let (status, resumed) =
        app.call("POST", &format!("/v1/admin/markets/{market}/resume"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["status"], "open");
    let (status, body) = bet(&app, &player, &selections[0], "2.50", "10.00").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "accepted");

    let (status, closed) = app.call("POST", &format!("/v1/admin/markets/{market}/close"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["status"], "closed");
    let (status, body) = bet(&app, &player, &selections[0], "2.50", "10.00").await;
    assert_error(status, &body, 409, "market_closed");
    let (status, body) = app.call("POST", &format!("/v1/admin/markets/{market}/resume"), Some(ADMIN_KEY), None).await;
    assert_error(status, &body, 409, "market_closed");
}

#[tokio::test]
async fn in_play_then_end_closes_markets() {
    let app = spawn_app().await;
    let (event, market, _) = app.football_match("Derby").await;
    let (status, in_play) = app
        .call(
            "POST",
            &format!("/v1/admin/events/{event}/in-play"),
            Some(ADMIN_KEY),
            Some(json!({"bet_delay_seconds": 5})),
        )
        .await;
    assert_eq!(status, 200, "{in_play}");
    assert_eq!(in_play["state"], "in_play");
    assert_eq!(in_play["markets"][0]["in_play"], true);

    // A feed key may take an event in play, not end it.
    let feed = key_of(&api_key(&app, "feed", &["feed"]).await);
    let (status, body) = app
        .call("POST", &format!("/v1/admin/events/{event}/in-play"), Some(&feed), Some(json!({"bet_delay_seconds": 0})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.call("POST", &format!("/v1/admin/events/{event}/end"), Some(&feed), None).await;
    assert_error(status, &body, 403, "forbidden");

    let (status, body) = app
        .call(
            "POST",
            &format!("/v1/admin/events/{event}/in-play"),
            Some(ADMIN_KEY),
            Some(json!({"bet_delay_seconds": 61})),
        )
        .await;
    assert_eq!(body["error"]["code"], "invalid_request", "{status} {body}");

    let (status, ended) = app.call("POST", &format!("/v1/admin/events/{event}/end"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["state"], "ended");
    assert_eq!(ended["markets"][0]["id"], market.as_str());
    assert_eq!(ended["markets"][0]["status"], "closed");

    let (status, body) = app.call("POST", "/v1/admin/events/evt_999/end", Some(ADMIN_KEY), None).await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn market_risk_is_set_cleared_and_enforced() {
    let app = spawn_app().await;
    let player = app.funded_player("risky", "500.00").await;
    let (_, market, selections) = app.football_match("Derby").await;
    let path = format!("/v1/admin/markets/{market}/risk");

    let (status, risk) = app
        .call(
            "PUT",
            &path,
            Some(ADMIN_KEY),
            Some(json!({"max_stake": "50.00", "liability_cap": "10000", "in_play_delay_seconds": 7})),
        )
        .await;
    assert_eq!(status, 200, "{risk}");
    assert_eq!(
        risk,
        json!({"market_id": market, "currency": "EUR", "max_stake": "50.00", "liability_cap": "10000.00", "selection_liability_cap": null,
               "suspend_at_liability": null, "in_play_delay_seconds": 7, "max_payout": null})
    );

    let (status, body) = bet(&app, &player, &selections[0], "2.50", "60.00").await;
    assert_error(status, &body, 422, "stake_too_high");

    // null clears one setting; absent ones stay.
    let (status, risk) = app.call("PUT", &path, Some(ADMIN_KEY), Some(json!({"max_stake": null}))).await;
    assert_eq!(status, 200, "{risk}");
    assert_eq!(risk["max_stake"], Value::Null);
    assert_eq!(risk["liability_cap"], "10000.00");
    assert_eq!(risk["in_play_delay_seconds"], 7);

    let (status, body) = app.call("PUT", &path, Some(ADMIN_KEY), Some(json!({"max_stake": "1.234"}))).await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["field"], "max_stake");
    let (status, body) = app.call("PUT", &path, Some(ADMIN_KEY), Some(json!({"max_stakes": "1"}))).await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) =
        app.call("PUT", "/v1/admin/markets/mkt_999/risk", Some(ADMIN_KEY), Some(json!({"max_stake": "1"}))).await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn account_risk_freezes_and_scales_stakes() {
    let app = spawn_app().await;
    let (player, account) = player_with_account(&app, "sharp", "100.00").await;
    let (_, _, selections) = app.football_match("Derby").await;
    let path = format!("/v1/admin/accounts/{account}/risk");

    let (status, risk) = app.call("PUT", &path, Some(ADMIN_KEY), Some(json!({"stake_factor": "0.5"}))).await;
    assert_eq!(status, 200, "{risk}");
    assert_eq!(risk, json!({"account_id": account, "stake_factor": "0.5", "frozen": false}));
    let (status, risk) = app.call("PUT", &path, Some(ADMIN_KEY), Some(json!({"stake_factor": "1/3"}))).await;
    assert_eq!(status, 200, "{risk}");
    assert_eq!(risk["stake_factor"], "1/3");

    let (status, risk) = app.call("PUT", &path, Some(ADMIN_KEY), Some(json!({"frozen": true}))).await;
    assert_eq!(status, 200, "{risk}");
    assert_eq!(risk["frozen"], true);
    assert_eq!(risk["stake_factor"], "1/3");
    let (status, body) = bet(&app, &player, &selections[0], "2.50", "1.00").await;
    assert_error(status, &body, 403, "account_frozen");

    let (status, risk) = app.call("PUT", &path, Some(ADMIN_KEY), Some(json!({"frozen": false}))).await;
    assert_eq!(status, 200, "{risk}");
    let (status, body) = bet(&app, &player, &selections[0], "2.50", "1.00").await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = app.call("PUT", &path, Some(ADMIN_KEY), Some(json!({"stake_factor": "half"}))).await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["field"], "stake_factor");
    let (status, body) =
        app.call("PUT", "/v1/admin/accounts/acc_999/risk", Some(ADMIN_KEY), Some(json!({"frozen": true}))).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app.call("PUT", &path, Some(&player.access_token), Some(json!({"frozen": false}))).await;
    assert_error(status, &body, 403, "forbidden");
}

#[tokio::test]
async fn exposure_shows_liability_of_open_bets() {
    let app = spawn_app().await;
    let player = app.funded_player("punter", "100.00").await;
    let (event, market, selections) = app.football_match("Derby").await;
    let (_, quiet_market, _) = app.football_match("Quiet").await;

    let (status, exposure) = app.call("GET", "/v1/admin/exposure", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{exposure}");
    assert_eq!(
        exposure,
        json!({"items": [], "next_cursor": null, "total": "0.00", "currency": "EUR", "total_by_currency": [],
               "fx_version": 0})
    );

    // 10.00 at 2.50 on Home: the house loses 15.00 if Home wins.
    let (status, body) = bet(&app, &player, &selections[0], "2.50", "10.00").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = bet(&app, &player, &selections[1], "3.20", "5.00").await;
    assert_eq!(status, 201, "{body}");
    let (status, exposure) = app.call("GET", "/v1/admin/exposure", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{exposure}");
    assert_eq!(
        exposure,
        json!({"items": [{"market_id": market, "event_id": event, "liability": "15.00", "currency": "EUR",
                          "by_currency": [{"currency": "EUR", "liability": "15.00"}], "selections": [
            {"selection_id": selections[0], "liability": "15.00", "currency": "EUR",
             "by_currency": [{"currency": "EUR", "liability": "15.00"}]},
            {"selection_id": selections[1], "liability": "11.00", "currency": "EUR",
             "by_currency": [{"currency": "EUR", "liability": "11.00"}]},
            {"selection_id": selections[2], "liability": "0.00", "currency": "EUR", "by_currency": []},
        ]}], "next_cursor": null, "total": "15.00", "currency": "EUR",
        "total_by_currency": [{"currency": "EUR", "liability": "15.00"}], "fx_version": 0})
    );
    assert!(!exposure.to_string().contains(&quiet_market), "{exposure}");

    let (status, body) = app.call("GET", "/v1/admin/exposure?limit=0", Some(ADMIN_KEY), None).await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) = app.call("GET", "/v1/admin/exposure?page=2", Some(ADMIN_KEY), None).await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) = app.call("GET", "/v1/admin/exposure", Some(&player.access_token), None).await;
    assert_error(status, &body, 403, "forbidden");
}

#[tokio::test]
async fn exposure_pages_through_markets() {
    let app = spawn_app().await;
    let player = app.funded_player("punter", "100.00").await;
    let mut markets = Vec::new();
    for name in ["One", "Two", "Three"] {
        let (_, market, selections) = app.football_match(name).await;
        let (status, body) = bet(&app, &player, &selections[2], "2.80", "1.00").await;
        assert_eq!(status, 201, "{body}");
        markets.push(market);
    }
    let mut seen = Vec::new();
    let mut path = "/v1/admin/exposure?limit=2".to_string();
    loop {
        let (status, page) = app.call("GET", &path, Some(ADMIN_KEY), None).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], "5.40", "{page}");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["market_id"].as_str().expect("market id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/admin/exposure?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, markets);
}

#[tokio::test]
async fn settle_unsettle_and_void_move_bets() {
    let app = spawn_app().await;
    let player = app.funded_player("winner", "100.00").await;
    let (_, market, selections) = app.football_match("Derby").await;
    let (status, placed) = bet(&app, &player, &selections[0], "2.50", "10.00").await;
    assert_eq!(status, 201, "{placed}");
    let bet_id = placed["id"].as_str().expect("bet id").to_string();

    let results = json!({"results": [{"selection_id": selections[0], "outcome": "win"}]});
    let (status, settled) =
        app.call("POST", &format!("/v1/admin/markets/{market}/settle"), Some(ADMIN_KEY), Some(results.clone())).await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled, json!({"market_id": market, "status": "settled", "settlement_version": 1, "bets_settled": 1}));
    let shown = shown_bet(&app, &player, &bet_id).await;
    assert_eq!(shown["status"], "won", "{shown}");
    assert_eq!(shown["payout"], "25.00", "{shown}");

    // The same results again change nothing; different ones need an unsettle first.
    let (status, again) =
        app.call("POST", &format!("/v1/admin/markets/{market}/settle"), Some(ADMIN_KEY), Some(results)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["bets_settled"], 0);
    assert_eq!(again["settlement_version"], 1);
    let (status, body) = app
        .call(
            "POST",
            &format!("/v1/admin/markets/{market}/settle"),
            Some(ADMIN_KEY),
            Some(json!({"results": [{"selection_id": selections[1], "outcome": "win"}]})),
        )
        .await;
    assert_error(status, &body, 409, "already_settled");

    let (status, unsettled) =
        app.call("POST", &format!("/v1/admin/markets/{market}/unsettle"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{unsettled}");
    assert_eq!(unsettled, json!({"market_id": market, "status": "closed", "settlement_version": 2, "bets_settled": 1}));
    assert_eq!(shown_bet(&app, &player, &bet_id).await["status"], "accepted");
    let (status, body) = app.call("POST", &format!("/v1/admin/markets/{market}/unsettle"), Some(ADMIN_KEY), None).await;
    assert_error(status, &body, 409, "not_settled");

    let (status, voided) = app.call("POST", &format!("/v1/admin/markets/{market}/void"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{voided}");
    assert_eq!(voided, json!({"market_id": market, "status": "voided", "settlement_version": 3, "bets_settled": 1}));
    let shown = shown_bet(&app, &player, &bet_id).await;
    assert_eq!(shown["status"], "void", "{shown}");
    assert_eq!(shown["payout"], "10.00", "{shown}");
    let (status, wallet) = app.call("GET", "/v1/wallet", Some(&player.access_token), None).await;
    assert_eq!(status, 200, "{wallet}");
    assert_eq!(wallet["balance"], "100.00", "{wallet}");
}

async fn shown_bet(app: &TestApp, player: &Player, bet_id: &str) -> Value {
    let (status, body) = app.call("GET", &format!("/v1/bets/{bet_id}"), Some(&player.access_token), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn settlement_takes_dead_heat_and_void_factors() {
    let app = spawn_app().await;
    let player = app.funded_player("heat", "100.00").await;
    let (_, market, selections) = app.football_match("Derby").await;
    let (status, placed) = bet(&app, &player, &selections[0], "2.50", "12.00").await;
    assert_eq!(status, 201, "{placed}");
    let path = format!("/v1/admin/markets/{market}/settle");

    for (factor, field) in [("abc", "dead_heat_factor"), ("0.1234567", "void_factor")] {
        let (status, body) = app
            .call(
                "POST",
                &path,
                Some(ADMIN_KEY),
                Some(json!({"results": [{"selection_id": selections[0], "outcome": "win", field: factor}]})),
            )
            .await;
        assert_error(status, &body, 400, "invalid_request");
        assert_eq!(body["error"]["field"], format!("results[0].{field}"));
    }
    let (status, body) = app
        .call(
            "POST",
            &path,
            Some(ADMIN_KEY),
            Some(json!({"results": [{"selection_id": selections[0], "outcome": "draw"}]})),
        )
        .await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) = app.call("POST", &path, Some(ADMIN_KEY), Some(json!({"results": []}))).await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) = app
        .call("POST", &path, Some(ADMIN_KEY), Some(json!({"results": [{"selection_id": "Home", "outcome": "win"}]})))
        .await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["field"], "results[0].selection_id");

    // A three-way dead heat for first: a third of the stake at full odds, 12 × 1/3 × 2.5 = 10.
    let (status, settled) = app
        .call(
            "POST",
            &path,
            Some(ADMIN_KEY),
            Some(json!({"results": [{"selection_id": selections[0], "outcome": "win", "dead_heat_factor": "1/3"}]})),
        )
        .await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["bets_settled"], 1);
    let (status, bets) = app.call("GET", "/v1/bets", Some(&player.access_token), None).await;
    assert_eq!(status, 200, "{bets}");
    assert_eq!(bets["items"][0]["payout"], "10.00", "{bets}");
}

#[tokio::test]
async fn operator_routes_need_a_key_with_the_scope() {
    let app = spawn_app().await;
    let player = app.player("nosy").await;
    let (_, market, selections) = app.football_match("Derby").await;
    let settle = json!({"results": [{"selection_id": selections[0], "outcome": "win"}]});
    let settle_path = format!("/v1/admin/markets/{market}/settle");
    let event = json!({"name": "X v Y", "sport": "football", "starts_at": "2030-01-01T00:00:00Z"});

    // No credential, a made-up key, a garbage token: 401.
    for token in [None, Some("sk_not_a_key"), Some("not.a.jwt")] {
        let (status, body) = app.call("POST", "/v1/admin/events", token, Some(event.clone())).await;
        assert_error(status, &body, 401, "unauthenticated");
    }
    // A player: 403 on every operator route.
    for (method, path) in [
        ("POST", "/v1/admin/events".to_string()),
        ("POST", format!("/v1/admin/markets/{market}/suspend")),
        ("POST", settle_path.clone()),
        ("GET", "/v1/admin/exposure".to_string()),
        ("POST", "/v1/admin/api-keys".to_string()),
    ] {
        let body = if method == "POST" { Some(event.clone()) } else { None };
        let (status, body) = app.call(method, &path, Some(&player.access_token), body).await;
        assert_error(status, &body, 403, "forbidden");
    }

    // A trading key trades but cannot settle or create keys.
    let trading = api_key(&app, "desk", &["trading"]).await;
    assert_eq!(trading["name"], "desk");
    assert_eq!(trading["scopes"], json!(["trading"]));
    assert!(trading["id"].as_str().expect("id").starts_with("key_"));
    let trading_key = key_of(&trading);
    assert!(trading_key.starts_with("sk_"));
    let (status, body) = app.call("POST", "/v1/admin/events", Some(&trading_key), Some(event.clone())).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.call("POST", &settle_path, Some(&trading_key), Some(settle.clone())).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = app
        .call("POST", "/v1/admin/api-keys", Some(&trading_key), Some(json!({"name": "x", "scopes": ["trading"]})))
        .await;
    assert_error(status, &body, 403, "forbidden");

    // A settlement key settles but cannot trade.
    let settlement_key = key_of(&api_key(&app, "settler", &["settlement"]).await);
    let (status, body) = app.call("POST", "/v1/admin/events", Some(&settlement_key), Some(event.clone())).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = app.call("POST", &settle_path, Some(&settlement_key), Some(settle)).await;
    assert_eq!(status, 200, "{body}");

    // An admin key creates keys, and may revoke them: a revoked key is 401 at once.
    let admin_key = key_of(&api_key(&app, "admin", &["admin"]).await);
    let (status, created) = app
        .call(
            "POST",
            "/v1/admin/api-keys",
            Some(&admin_key),
            Some(json!({"name": "feed", "scopes": ["feed", "trading", "feed"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["scopes"], json!(["trading", "feed"]));
    let (status, body) = app.call("GET", "/v1/admin/exposure", Some(&key_of(&created)), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .call("DELETE", &format!("/v1/admin/api-keys/{}", trading["id"].as_str().expect("id")), Some(&admin_key), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = app.call("POST", "/v1/admin/events", Some(&trading_key), Some(event)).await;
    assert_error(status, &body, 401, "unauthenticated");
    let (status, body) = app.call("DELETE", "/v1/admin/api-keys/key_999", Some(&admin_key), None).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app.call("DELETE", "/v1/admin/api-keys/key_1", Some(&settlement_key), None).await;
    assert_error(status, &body, 403, "forbidden");

    // Scopes must be known and at least one.
    for scopes in [json!([]), json!(["root"])] {
        let (status, body) = app
            .call("POST", "/v1/admin/api-keys", Some(ADMIN_KEY), Some(json!({"name": "bad", "scopes": scopes})))
            .await;
        assert_error(status, &body, 400, "invalid_request");
        assert_eq!(body["error"]["field"], "scopes");
    }
}

#[tokio::test]
async fn malformed_operator_requests_are_refused() {
    let app = spawn_app().await;
    let (event, market, selections) = app.football_match("Derby").await;
    let starts_at = gateway::format_rfc3339(now_ms() + 3_600_000);

    let (status, body) = app
        .call(
            "POST",
            "/v1/admin/events",
            Some(ADMIN_KEY),
            Some(json!({"name": "X v Y", "sport": "football", "starts_at": starts_at, "venue": "Wembley"})),
        )
        .await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) = app
        .call(
            "POST",
            "/v1/admin/events",
            Some(ADMIN_KEY),
            Some(json!({"name": "X v Y", "sport": "football", "starts_at": "tomorrow"})),
        )
        .await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["field"], "starts_at");

    let markets = format!("/v1/admin/events/{event}/markets");
    let (status, body) = app
        .call(
            "POST",
            &markets,
            Some(ADMIN_KEY),
            Some(json!({"name": "Winner", "selections": [{"name": "A", "price": "2.00"}, {"name": "B", "price": "0.50"}]})),
        )
        .await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["field"], "selections[1].price");
    let (status, body) =
        app.call("POST", &markets, Some(ADMIN_KEY), Some(json!({"name": "Winner", "selections": []}))).await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["field"], "selections");
    let (status, body) = app
        .call(
            "POST",
            &markets,
            Some(ADMIN_KEY),
            Some(json!({"name": "Win", "selections": [{"name": "A", "price": "2.00"}],
                        "each_way": {"places": 3, "fraction": "a fifth"}})),
        )
        .await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["field"], "each_way.fraction");
    let one = json!({"name": "Winner", "selections": [{"name": "A", "price": "2.00"}]});
    for unknown in ["/v1/admin/events/evt_999/markets", "/v1/admin/events/nonsense/markets"] {
        let (status, body) = app.call("POST", unknown, Some(ADMIN_KEY), Some(one.clone())).await;
        assert_error(status, &body, 404, "not_found");
    }

    let prices = format!("/v1/admin/markets/{market}/prices");
    let (status, body) = app
        .call(
            "PUT",
            &prices,
            Some(ADMIN_KEY),
            Some(json!({"prices": [{"selection_id": selections[0], "price": "evens"}]})),
        )
        .await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["field"], "prices[0].price");
    let (status, body) = app
        .call("PUT", &prices, Some(ADMIN_KEY), Some(json!({"prices": [{"selection_id": "Home", "price": "2.00"}]})))
        .await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["field"], "prices[0].selection_id");
    let (status, body) = app.call("PUT", &prices, Some(ADMIN_KEY), Some(json!({"prices": []}))).await;
    assert_error(status, &body, 400, "invalid_request");

    for path in [
        "/v1/admin/markets/mkt_999/suspend",
        "/v1/admin/markets/mkt_0/resume",
        "/v1/admin/markets/999/close",
        "/v1/admin/markets/mkt_999/unsettle",
        "/v1/admin/markets/mkt_999/void",
    ] {
        let (status, body) = app.call("POST", path, Some(ADMIN_KEY), None).await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = app
        .call(
            "PUT",
            "/v1/admin/markets/mkt_999/prices",
            Some(ADMIN_KEY),
            Some(json!({"prices": [{"selection_id": selections[0], "price": "2.00"}]})),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app
        .call(
            "POST",
            "/v1/admin/markets/mkt_999/settle",
            Some(ADMIN_KEY),
            Some(json!({"results": [{"selection_id": selections[0], "outcome": "win"}]})),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
}
