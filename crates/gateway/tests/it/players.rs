//! The player journey and the errors of player routes, over a real socket.

use serde_json::{json, Value};

use crate::harness::{spawn_app, spawn_app_on, TestApp, ADMIN_KEY};

fn bet(selection: &str, price: &str, stake: &str) -> Value {
    json!({"type": "single", "legs": [{"selection_id": selection, "price": price}], "stake": stake, "accept_price_changes": "none"})
}

async fn wallet(app: &TestApp, token: &str) -> Value {
    let (status, wallet) = app.call("GET", "/v1/wallet", Some(token), None).await;
    assert_eq!(status, 200, "{wallet}");
    wallet
}

#[tokio::test]
async fn the_full_journey_register_deposit_bet_settle_withdraw() {
    let app = spawn_app().await;
    let player = app.funded_player("alice", "100.00").await;
    assert_eq!(player.username, "alice");
    let (status, _) =
        app.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": player.refresh_token}))).await;
    assert_eq!(status, 200, "the login's refresh token works");
    let (_, market, selections) = app.football_match("Arsenal v Spurs").await;

    let (status, placed) =
        app.call("POST", "/v1/bets", Some(&player.access_token), Some(bet(&selections[0], "2.50", "10.00"))).await;
    assert_eq!(status, 201, "{placed}");
    assert_eq!(placed["status"], "accepted");
    assert_eq!(placed["legs"][0]["price"], "2.50");
    assert_eq!(placed["total_stake"], "10.00");
    assert_eq!(placed["potential_payout"], "25.00");
    assert_eq!(
        wallet(&app, &player.access_token).await,
        json!({
            "currency": "EUR", "balance": "90.00", "available": "90.00", "pending_stakes": "10.00", "debt": "0.00"
        })
    );

    let (status, settled) = app
        .call(
            "POST",
            &format!("/v1/admin/markets/{market}/settle"),
            Some(ADMIN_KEY),
            Some(json!({"results": [{"selection_id": selections[0], "outcome": "win"}]})),
        )
        .await;
    assert_eq!(status, 200, "{settled}");
    let bet_id = placed["id"].as_str().unwrap();
    let (_, won) = app.call("GET", &format!("/v1/bets/{bet_id}"), Some(&player.access_token), None).await;
    assert_eq!(won["status"], "won");
    assert_eq!(won["payout"], "25.00");
    assert_eq!(wallet(&app, &player.access_token).await["balance"], "115.00");

    let (status, withdrawal) =
        app.call("POST", "/v1/wallet/withdrawals", Some(&player.access_token), Some(json!({"amount": "115.00"}))).await;
    assert_eq!(status, 201, "{withdrawal}");
    assert_eq!(withdrawal["amount"], "-115.00");
    let (status, refused) =
        app.call("POST", "/v1/wallet/withdrawals", Some(&player.access_token), Some(json!({"amount": "0.01"}))).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (422, Some("insufficient_funds")));
    assert_eq!(wallet(&app, &player.access_token).await["balance"], "0.00");

    let (status, statement) = app.call("GET", "/v1/wallet/transactions", Some(&player.access_token), None).await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> =
        statement["items"].as_array().unwrap().iter().map(|item| item["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["withdrawal", "withdrawal", "payout", "stake", "stake", "deposit"], "{statement}");
}

#[tokio::test]
async fn every_bet_rejection_has_its_status_and_code() {
    let app = spawn_app().await;
    let player = app.funded_player("bob", "50.00").await;
    let token = player.access_token.as_str();
    let (event, market, selections) = app.football_match("Leeds v Hull").await;
    let (_, _, other) = app.football_match("Lens v Lille").await;
    let app_ref = &app;
    let place = |body: Value| async move { app_ref.call("POST", "/v1/bets", Some(token), Some(body)).await };
    let code = |(status, body): (u16, Value)| (status, body["error"]["code"].as_str().unwrap_or_default().to_string());

    let (status, body) = place(bet(&selections[0], "2.40", "1.00")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["error"]["current_price"].as_str()),
        (409, Some("price_changed"), Some("2.50"))
    );
    assert_eq!(code(place(bet("sel_999", "2.50", "1.00")).await), (409, "selection_unavailable".into()));
    assert_eq!(code(place(bet(&selections[0], "2.50", "60.00")).await), (422, "insufficient_funds".into()));
    let (status, body) = place(bet(&selections[0], "2.50", "0.05")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["error"]["min_stake"].as_str()),
        (422, Some("stake_too_low"), Some("0.10"))
    );
    let multiple = json!({"type": "multiple", "legs": [{"selection_id": selections[0], "price": "2.50"}, {"selection_id": selections[1], "price": "3.20"}], "stake": "1.00"});
    assert_eq!(code(place(multiple).await), (422, "invalid_bet".into()));
    let too_many: Vec<Value> = (0..21).map(|_| json!({"selection_id": other[0], "price": "2.50"})).collect();
    assert_eq!(
        code(place(json!({"type": "multiple", "legs": too_many, "stake": "1.00"})).await),
        (422, "invalid_bet".into())
    );
    assert_eq!(
        code(place(json!({"type": "single", "legs": [], "stake": "1.00", "surprise": true})).await),
        (400, "invalid_request".into())
    );
    assert_eq!(code(place(bet(&selections[0], "2.50", "1.001")).await), (400, "invalid_request".into()));

    let (status, _) = app
        .call(
            "PUT",
            &format!("/v1/admin/markets/{market}/risk"),
            Some(ADMIN_KEY),
            Some(json!({"max_stake": "5.00", "liability_cap": "20.00"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = place(bet(&selections[0], "2.50", "6.00")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["error"]["max_stake"].as_str()),
        (422, Some("stake_too_high"), Some("5.00"))
    );
    assert_eq!(place(bet(&selections[0], "2.50", "5.00")).await.0, 201);
    assert_eq!(place(bet(&selections[0], "2.50", "5.00")).await.0, 201);
    assert_eq!(code(place(bet(&selections[0], "2.50", "5.00")).await), (422, "liability_limit".into()));

    let (status, _) = app.call("PUT", "/v1/limits", Some(token), Some(json!({"stake": {"day": "12.00"}}))).await;
    assert_eq!(status, 200);
    let (status, body) = place(bet(&other[0], "2.50", "3.00")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["error"]["limit"].as_str()),
        (422, Some("limit_reached"), Some("stake"))
    );

    assert_eq!(app.call("POST", &format!("/v1/admin/markets/{market}/suspend"), Some(ADMIN_KEY), None).await.0, 200);
    assert_eq!(code(place(bet(&selections[1], "3.20", "1.00")).await), (409, "market_suspended".into()));
    assert_eq!(app.call("POST", &format!("/v1/admin/markets/{market}/close"), Some(ADMIN_KEY), None).await.0, 200);
    assert_eq!(code(place(bet(&selections[1], "3.20", "1.00")).await), (409, "market_closed".into()));
    let _ = event;

    let other_player = app.funded_player("carol", "10.00").await;
    let (status, _) = app
        .call(
            "PUT",
            &format!("/v1/admin/accounts/{}/risk", account_of(&app, &other_player.access_token).await),
            Some(ADMIN_KEY),
            Some(json!({"frozen": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) =
        app.call("POST", "/v1/bets", Some(&other_player.access_token), Some(bet(&other[0], "2.50", "1.00"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("account_frozen")));

    let excluded = app.funded_player("dave", "10.00").await;
    assert_eq!(
        app.call("POST", "/v1/self-exclusion", Some(&excluded.access_token), Some(json!({"days": 182}))).await.0,
        200
    );
    let (status, body) =
        app.call("POST", "/v1/bets", Some(&excluded.access_token), Some(bet(&other[0], "2.50", "1.00"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("self_excluded")));
    let timed_out = app.funded_player("erin", "10.00").await;
    assert_eq!(
        app.call("POST", "/v1/time-out", Some(&timed_out.access_token), Some(json!({"hours": 24}))).await.0,
        200
    );
    let (status, body) =
        app.call("POST", "/v1/bets", Some(&timed_out.access_token), Some(bet(&other[0], "2.50", "1.00"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("timed_out")));
    let (status, _) = app
        .call("POST", "/v1/wallet/withdrawals", Some(&timed_out.access_token), Some(json!({"amount": "1.00"})))
        .await;
    assert_eq!(status, 201, "withdrawals stay possible during a time-out");
}

/// The account id behind a player token, from the player's own bet list... or the register
/// response: here from the statement of the first deposit is not enough, so ask the wallet
/// owner's registration again through login metadata.
async fn account_of(app: &TestApp, token: &str) -> String {
    let (_, statement) = app.call("GET", "/v1/wallet/transactions", Some(token), None).await;
    let (_, bets) = app.call("GET", "/v1/bets", Some(token), None).await;
    let _ = (statement, bets);
    // The token's subject is the account id.
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64_url_decode(payload);
    let claims: Value = serde_json::from_slice(&bytes).expect("claims");
    claims["sub"].as_str().expect("subject").to_string()
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes() {
        let Some(value) = alphabet.iter().position(|candidate| *candidate == byte) else { continue };
        bits = (bits << 6) | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[tokio::test]
async fn players_see_only_their_own_bets_and_operators_routes_need_keys() {
    let app = spawn_app().await;
    let alice = app.funded_player("alice", "20.00").await;
    let mallory = app.funded_player("mallory", "20.00").await;
    let (_, market, selections) = app.football_match("Roma v Lazio").await;
    let (_, placed) =
        app.call("POST", "/v1/bets", Some(&alice.access_token), Some(bet(&selections[0], "2.50", "1.00"))).await;
    let id = placed["id"].as_str().unwrap();
    let (status, body) = app.call("GET", &format!("/v1/bets/{id}"), Some(&mallory.access_token), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (_, listed) = app.call("GET", "/v1/bets", Some(&mallory.access_token), None).await;
    assert_eq!(listed["items"], json!([]));
    let (status, body) = app.call("GET", &format!("/v1/bets/{id}/cashout"), Some(&mallory.access_token), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));

    let settle = json!({"results": [{"selection_id": selections[0], "outcome": "win"}]});
    let (status, body) = app
        .call("POST", &format!("/v1/admin/markets/{market}/settle"), Some(&alice.access_token), Some(settle.clone()))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")));
    let (status, body) =
        app.call("POST", &format!("/v1/admin/markets/{market}/settle"), None, Some(settle.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")));
    let (status, body) =
        app.call("POST", &format!("/v1/admin/markets/{market}/settle"), Some("sk_wrong"), Some(settle)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")));
    let (status, _) = app.call("GET", "/v1/wallet", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 403, "an operator key is not a player");
    let (status, _) = app.call("GET", "/v1/wallet", Some("not.a.jwt"), None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn fifty_concurrent_identical_requests_make_exactly_one_bet() {
    let app = spawn_app().await;
    let player = app.funded_player("frank", "100.00").await;
    let (_, _, selections) = app.football_match("Derby").await;
    let body = bet(&selections[0], "2.50", "10.00");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (client, url, token, body) =
            (app.client.clone(), app.url("/v1/bets"), player.access_token.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "derby-1")
                .json(&body)
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }));
    }
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.expect("task"));
    }
    let first = &responses[0];
    for response in &responses {
        assert_eq!(response, first, "every retry gets the first response");
    }
    assert_eq!(first.0, 201);
    let (_, listed) = app.call("GET", "/v1/bets", Some(&player.access_token), None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(wallet(&app, &player.access_token).await["balance"], "90.00");
    // The same key with another body.
    let (status, reused) = app
        .call_with(
            "POST",
            "/v1/bets",
            Some(&player.access_token),
            Some(bet(&selections[0], "2.50", "11.00")),
            &[("Idempotency-Key", "derby-1")],
        )
        .await;
    assert_eq!((status, reused["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));
    // Deposits too.
    let deposit = json!({"amount": "5.00", "payment_ref": "psp-1"});
    let first = app
        .call_with(
            "POST",
            "/v1/wallet/deposits",
            Some(&player.access_token),
            Some(deposit.clone()),
            &[("Idempotency-Key", "dep-1")],
        )
        .await;
    let again = app
        .call_with(
            "POST",
            "/v1/wallet/deposits",
            Some(&player.access_token),
            Some(deposit),
            &[("Idempotency-Key", "dep-1")],
        )
        .await;
    assert_eq!(first, again);
    assert_eq!(wallet(&app, &player.access_token).await["balance"], "95.00");
}

#[tokio::test]
async fn a_restart_on_the_same_data_dir_keeps_accounts_bets_and_balances() {
    let app = spawn_app().await;
    let player = app.funded_player("grace", "30.00").await;
    let (_, _, selections) = app.football_match("Milan v Inter").await;
    let (_, placed) =
        app.call("POST", "/v1/bets", Some(&player.access_token), Some(bet(&selections[1], "3.20", "7.50"))).await;
    let before = wallet(&app, &player.access_token).await;
    let (path, dir) = app.stop().await;

    let app =
        spawn_app_on(&path, dir, gateway::GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec())).await;
    // The same signing secret: the old access token still works; logging in works too.
    assert_eq!(wallet(&app, &player.access_token).await, before);
    let (status, tokens) = app
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"username": "GRACE", "password": "correct horse battery staple"})),
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    let (_, listed) = app.call("GET", "/v1/bets", Some(tokens["access_token"].as_str().unwrap()), None).await;
    assert_eq!(listed["items"][0]["id"], placed["id"]);
    assert_eq!(listed["items"][0]["total_stake"], "7.50");
}

#[tokio::test]
async fn registration_login_refresh_and_logout() {
    let app = spawn_app().await;
    let register = |username: &str, date_of_birth: &str| json!({"username": username, "password": "correct horse battery staple", "date_of_birth": date_of_birth, "country": "GB", "currency": "EUR"});
    let (status, created) = app.call("POST", "/v1/auth/register", None, Some(register("heidi", "1991-02-03"))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["username"], "heidi");
    assert!(created["id"].as_str().unwrap().starts_with("acc_"));
    let (status, body) = app.call("POST", "/v1/auth/register", None, Some(register("Heidi", "1991-02-03"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("username_taken")));
    let (status, body) = app.call("POST", "/v1/auth/register", None, Some(register("ivan", "2015-01-01"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("underage")));
    let (status, body) = app
        .call(
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({"username": "judy", "password": "short", "date_of_birth": "1990-01-01", "country": "GB"})),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")));

    let login = json!({"username": "heidi", "password": "correct horse battery staple"});
    let (status, tokens) = app.call("POST", "/v1/auth/login", None, Some(login)).await;
    assert_eq!(status, 200);
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let (status, rotated) =
        app.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh_token}))).await;
    assert_eq!(status, 200);
    let (status, _) = app.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh_token}))).await;
    assert_eq!(status, 401, "a rotated refresh token stops working");
    let new_refresh = rotated["refresh_token"].as_str().unwrap();
    assert_eq!(app.call("POST", "/v1/auth/logout", None, Some(json!({"refresh_token": new_refresh}))).await.0, 204);
    assert_eq!(app.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": new_refresh}))).await.0, 401);

    for _ in 0..5 {
        let (status, _) = app
            .call("POST", "/v1/auth/login", None, Some(json!({"username": "heidi", "password": "wrong password!"})))
            .await;
        assert_eq!(status, 401);
    }
    let (status, body) = app
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"username": "heidi", "password": "correct horse battery staple"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "throttled after repeated failures"
    );
}

#[tokio::test]
async fn cash_out_quote_then_accept() {
    let app = spawn_app().await;
    let player = app.funded_player("ken", "50.00").await;
    let (_, market, selections) = app.football_match("Celtic v Rangers").await;
    let (_, placed) =
        app.call("POST", "/v1/bets", Some(&player.access_token), Some(bet(&selections[0], "2.50", "10.00"))).await;
    let id = placed["id"].as_str().unwrap();
    let prices = json!({"prices": [{"selection_id": selections[0], "price": "1.25"}]});
    assert_eq!(
        app.call("PUT", &format!("/v1/admin/markets/{market}/prices"), Some(ADMIN_KEY), Some(prices)).await.0,
        200
    );
    let (status, quote) = app.call("GET", &format!("/v1/bets/{id}/cashout"), Some(&player.access_token), None).await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!(quote["amount"], "19.00");
    let (status, cashed) = app
        .call(
            "POST",
            &format!("/v1/bets/{id}/cashout"),
            Some(&player.access_token),
            Some(json!({"quote_id": quote["quote_id"]})),
        )
        .await;
    assert_eq!(status, 200, "{cashed}");
    assert_eq!(cashed["amount"], "19.00");
    let (_, shown) = app.call("GET", &format!("/v1/bets/{id}"), Some(&player.access_token), None).await;
    assert_eq!(shown["status"], "cashed_out");
    assert_eq!(wallet(&app, &player.access_token).await["balance"], "59.00");
}

#[tokio::test]
async fn limits_decrease_at_once_and_increase_after_cooling_off() {
    let app = spawn_app().await;
    let player = app.funded_player("leo", "10.00").await;
    let token = player.access_token.as_str();
    let (status, limits) = app.call("PUT", "/v1/limits", Some(token), Some(json!({"deposit": {"day": "20.00"}}))).await;
    assert_eq!(status, 200, "{limits}");
    assert_eq!(limits["deposit"]["day"]["value"], "20.00");
    assert_eq!(limits["deposit"]["day"]["used"], "10.00");
    let (status, body) = app
        .call("POST", "/v1/wallet/deposits", Some(token), Some(json!({"amount": "10.01", "payment_ref": "x"})))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["error"]["limit"].as_str()),
        (422, Some("limit_reached"), Some("deposit"))
    );
    let (_, limits) = app.call("PUT", "/v1/limits", Some(token), Some(json!({"deposit": {"day": null}}))).await;
    assert_eq!(limits["deposit"]["day"]["value"], "20.00", "a removal waits out the cooling-off");
    assert!(limits["deposit"]["day"]["pending"]["effective_at"].is_string());
    let (status, _) = app.call("PUT", "/v1/limits", Some(token), Some(json!({"deposit": {"fortnight": "1.00"}}))).await;
    assert_eq!(status, 400);
}
