//! Black-box tests of money in every currency: the operator's exchange rates
//! (`PUT`/`GET /v1/admin/fx-rates`), risk limits set in the base currency applied to EUR, GBP,
//! JPY, KRW and BHD players on one market through those rates, exposure per currency with base
//! totals, and a stale table as a `/readyz` warning.

use std::time::Duration;

use gateway::GatewayConfig;
use serde_json::{json, Value};

use crate::harness::{now_ms, spawn_app, spawn_app_on, Player, TestApp, ADMIN_KEY};

/// Registers a player holding `currency`, logs in and deposits `amount` (in that currency).
async fn player_in(app: &TestApp, username: &str, currency: &str, amount: &str) -> Player {
    let player = registered(app, username, currency).await;
    let (status, body) = deposit(app, &player, amount).await;
    assert_eq!(status, 201, "deposit {username}: {body}");
    player
}

/// Registers a player holding `currency` and logs in.
async fn registered(app: &TestApp, username: &str, currency: &str) -> Player {
    let password = "correct horse battery staple";
    let (status, body) = app
        .call(
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({"username": username, "password": password, "date_of_birth": "1990-05-17",
                        "country": "GB", "currency": currency})),
        )
        .await;
    assert_eq!(status, 201, "register {username}: {body}");
    let (status, tokens) =
        app.call("POST", "/v1/auth/login", None, Some(json!({"username": username, "password": password}))).await;
    assert_eq!(status, 200, "login {username}: {tokens}");
    Player {
        access_token: tokens["access_token"].as_str().expect("access token").to_string(),
        refresh_token: tokens["refresh_token"].as_str().expect("refresh token").to_string(),
        username: username.to_string(),
    }
}

/// Deposits `amount` (in the player's currency) under a fresh key and payment reference.
async fn deposit(app: &TestApp, player: &Player, amount: &str) -> (u16, Value) {
    let key = format!("deposit-{}-{amount}-{}", player.username, now_ms());
    app.call_with(
        "POST",
        "/v1/wallet/deposits",
        Some(&player.access_token),
        Some(json!({"amount": amount, "payment_ref": key})),
        &[("Idempotency-Key", &key)],
    )
    .await
}

/// Places a single at `price` with no price changes accepted, under a fresh idempotency key.
async fn bet(app: &TestApp, player: &Player, selection: &str, price: &str, stake: &str) -> (u16, Value) {
    let key = format!("bet-{}-{selection}-{stake}-{}", player.username, now_ms());
    app.call_with(
        "POST",
        "/v1/bets",
        Some(&player.access_token),
        Some(json!({"type": "single", "legs": [{"selection_id": selection, "price": price}], "stake": stake,
                    "accept_price_changes": "none"})),
        &[("Idempotency-Key", &key)],
    )
    .await
}

/// A market on a new event with the given (name, price) selections; returns its id and the
/// selection ids.
async fn market(app: &TestApp, event_name: &str, selections: &[(&str, &str)]) -> (String, Vec<String>) {
    let starts_at = gateway::format_rfc3339(now_ms() + 86_400_000);
    let (status, event) = app
        .call(
            "POST",
            "/v1/admin/events",
            Some(ADMIN_KEY),
            Some(json!({"name": event_name, "sport": "football", "starts_at": starts_at})),
        )
        .await;
    assert_eq!(status, 201, "event: {event}");
    let selections: Vec<Value> = selections.iter().map(|(name, price)| json!({"name": name, "price": price})).collect();
    let path = format!("/v1/admin/events/{}/markets", event["id"].as_str().expect("event id"));
    let (status, market) =
        app.call("POST", &path, Some(ADMIN_KEY), Some(json!({"name": event_name, "selections": selections}))).await;
    assert_eq!(status, 201, "market: {market}");
    let ids = market["selections"]
        .as_array()
        .expect("selections")
        .iter()
        .map(|selection| selection["id"].as_str().expect("selection id").to_string())
        .collect();
    (market["id"].as_str().expect("market id").to_string(), ids)
}

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

async fn put_rates(app: &TestApp, body: Value) -> (u16, Value) {
    app.call("PUT", "/v1/admin/fx-rates", Some(ADMIN_KEY), Some(body)).await
}

#[tokio::test]
async fn five_currencies_on_one_market_meet_the_base_limits_through_the_rates() {
    let app = spawn_app().await;
    let eur = player_in(&app, "euro", "EUR", "500.00").await;
    let krw = registered(&app, "won", "KRW").await;
    let (result, result_selections) = market(&app, "Arsenal v Spurs", &[("Home", "2.00"), ("Draw", "3.40")]).await;
    let (goals, goals_selections) = market(&app, "Leeds v Hull", &[("Over", "1.90"), ("Under", "1.90")]).await;
    let (home, over, under) = (&result_selections[0], &goals_selections[0], &goals_selections[1]);

    // No rate yet: limits in the base currency (the deposit cap, the stake limits) cannot be
    // applied to won, so won can neither deposit nor bet.
    let (status, body) = deposit(&app, &krw, "1000000").await;
    assert_error(status, &body, 422, "fx_rate_missing");
    assert_eq!(body["error"]["currency"], "KRW", "{body}");
    let (status, body) = bet(&app, &krw, home, "2.00", "10000").await;
    assert_error(status, &body, 422, "fx_rate_missing");
    assert_eq!(body["error"]["currency"], "KRW", "{body}");

    let (status, table) = app.call("GET", "/v1/admin/fx-rates", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(table, json!({"base": "EUR", "version": 0, "set_at": null, "rates": {}}));
    let rates = json!({"GBP": "0.85", "JPY": "160.00", "KRW": "1540.5", "BHD": "0.41"});
    let (status, table) = put_rates(&app, json!({"base": "EUR", "rates": rates})).await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["version"], 1, "{table}");
    assert_eq!(table["rates"], rates, "{table}");
    let gbp = player_in(&app, "pound", "GBP", "500.00").await;
    let jpy = player_in(&app, "yen", "JPY", "100000").await;
    let bhd = player_in(&app, "dinar", "BHD", "100.000").await;
    let (status, body) = deposit(&app, &krw, "1000000").await;
    assert_eq!(status, 201, "{body}");

    // Risk settings are in the base currency.
    let (status, risk) = app
        .call(
            "PUT",
            &format!("/v1/admin/markets/{result}/risk"),
            Some(ADMIN_KEY),
            Some(json!({"liability_cap": "100.00"})),
        )
        .await;
    assert_eq!(status, 200, "{risk}");
    assert_eq!(risk["currency"], "EUR", "{risk}");
    assert_eq!(risk["liability_cap"], "100.00", "{risk}");
    let (status, risk) = app
        .call("PUT", &format!("/v1/admin/markets/{goals}/risk"), Some(ADMIN_KEY), Some(json!({"max_stake": "100.00"})))
        .await;
    assert_eq!(status, 200, "{risk}");

    // ₩10,000 at evens is ₩10,000 of liability: €6.50 (6.4914 rounded up), not €100.00. The
    // EUR bettor keeps the rest of the cap, to the cent.
    let (status, body) = bet(&app, &krw, home, "2.00", "10000").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = bet(&app, &eur, home, "2.00", "93.51").await;
    assert_error(status, &body, 422, "liability_limit");
    let (status, body) = bet(&app, &eur, home, "2.00", "93.50").await;
    assert_eq!(status, 201, "{body}");

    // The €100.00 stake limit is ¥16,000, £85.00 and 41.000 BHD; a refusal shows it in the
    // bettor's currency.
    let (status, body) = bet(&app, &jpy, over, "1.90", "20000").await;
    assert_error(status, &body, 422, "stake_too_high");
    assert_eq!(body["error"]["max_stake"], "16000", "{body}");
    let (status, body) = bet(&app, &jpy, over, "1.90", "16001").await;
    assert_error(status, &body, 422, "stake_too_high");
    let (status, body) = bet(&app, &jpy, over, "1.90", "16000").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = bet(&app, &gbp, under, "1.90", "85.01").await;
    assert_error(status, &body, 422, "stake_too_high");
    assert_eq!(body["error"]["max_stake"], "85.00", "{body}");
    let (status, body) = bet(&app, &gbp, under, "1.90", "85.00").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = bet(&app, &bhd, under, "1.90", "41.001").await;
    assert_error(status, &body, 422, "stake_too_high");
    assert_eq!(body["error"]["max_stake"], "41.000", "{body}");
    let (status, body) = bet(&app, &bhd, under, "1.90", "10.000").await;
    assert_eq!(status, 201, "{body}");

    // Exposure: each currency's own amounts, and the base totals (each bet converted when
    // placed, rounded up): Over ¥14,400 = €90.00; Under £76.50 = €90.00 and 9.000 BHD =
    // €21.9512... = €21.96.
    let (status, exposure) = app.call("GET", "/v1/admin/exposure", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{exposure}");
    let amount = |currency: &str, liability: &str| json!({"currency": currency, "liability": liability});
    let expected_items = json!([
        {"market_id": result, "event_id": exposure["items"][0]["event_id"], "liability": "100.00", "currency": "EUR",
         "by_currency": [amount("EUR", "93.50"), amount("KRW", "10000")],
         "selections": [
            {"selection_id": home, "liability": "100.00", "currency": "EUR",
             "by_currency": [amount("EUR", "93.50"), amount("KRW", "10000")]},
            {"selection_id": result_selections[1], "liability": "0.00", "currency": "EUR", "by_currency": []},
         ]},
        {"market_id": goals, "event_id": exposure["items"][1]["event_id"], "liability": "111.96", "currency": "EUR",
         "by_currency": [amount("BHD", "9.000"), amount("GBP", "76.50"), amount("JPY", "14400")],
         "selections": [
            {"selection_id": over, "liability": "90.00", "currency": "EUR", "by_currency": [amount("JPY", "14400")]},
            {"selection_id": under, "liability": "111.96", "currency": "EUR",
             "by_currency": [amount("BHD", "9.000"), amount("GBP", "76.50")]},
         ]},
    ]);
    let expected_totals = json!([
        amount("BHD", "9.000"),
        amount("EUR", "93.50"),
        amount("GBP", "76.50"),
        amount("JPY", "14400"),
        amount("KRW", "10000"),
    ]);
    assert_eq!(
        exposure,
        json!({"items": expected_items, "next_cursor": null, "total": "211.96", "currency": "EUR",
               "total_by_currency": expected_totals, "fx_version": 1})
    );
    let (status, report) = app.call("GET", "/v1/admin/reports/liabilities", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["total_liability"], &report["currency"], &report["total_liability_by_currency"]),
        (&json!("211.96"), &json!("EUR"), &expected_totals),
        "{report}"
    );

    // New rates apply to new bets only: the open ones keep the rate they were placed at, so
    // the base totals do not move, and what leaves at settlement is exactly what came.
    let (status, table) = put_rates(&app, json!({"base": "EUR", "rates": {"JPY": "150", "KRW": "1000"}})).await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["version"], 2, "{table}");
    let (status, exposure) = app.call("GET", "/v1/admin/exposure", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{exposure}");
    assert_eq!((&exposure["total"], &exposure["fx_version"]), (&json!("211.96"), &json!(2)), "{exposure}");
    // GBP has no rate in version 2.
    let (status, body) = bet(&app, &gbp, over, "1.90", "1.00").await;
    assert_error(status, &body, 422, "fx_rate_missing");
    // ¥15,000 is now €100.00.
    let (status, body) = bet(&app, &jpy, over, "1.90", "16000").await;
    assert_error(status, &body, 422, "stake_too_high");
    assert_eq!(body["error"]["max_stake"], "15000", "{body}");
    for (market, winner) in [(&result, &result_selections[1]), (&goals, over)] {
        let (status, body) = app
            .call(
                "POST",
                &format!("/v1/admin/markets/{market}/settle"),
                Some(ADMIN_KEY),
                Some(json!({"results": [{"selection_id": winner, "outcome": "win"}]})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, exposure) = app.call("GET", "/v1/admin/exposure", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{exposure}");
    assert_eq!((&exposure["items"], &exposure["total"]), (&json!([]), &json!("0.00")), "{exposure}");
}

#[tokio::test]
async fn fx_rates_are_versioned_validated_and_for_traders_only() {
    let app = spawn_app().await;
    let (status, table) = put_rates(&app, json!({"base": "GBP", "rates": {"EUR": "1.17"}})).await;
    assert_eq!(status, 200, "{table}");
    assert_eq!((&table["base"], &table["version"]), (&json!("GBP"), &json!(1)), "{table}");
    let set_at = table["set_at"].as_str().expect("set_at").to_string();
    let (status, table) = put_rates(&app, json!({"base": "EUR", "rates": {"GBP": "0.8547", "JPY": "160.00"}})).await;
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["version"], 2, "{table}");
    assert!(table["set_at"].as_str().expect("set_at") >= set_at.as_str(), "{table}");
    let (status, got) = app.call("GET", "/v1/admin/fx-rates", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, table);

    for (body, field) in [
        (json!({"base": "XXX", "rates": {}}), "base"),
        (json!({"base": "EUR", "rates": {"ZZZ": "1"}}), "rates"),
        (json!({"base": "EUR", "rates": {"JPY": "abc"}}), "rates.JPY"),
        (json!({"base": "EUR", "rates": {"JPY": "0"}}), "rates.JPY"),
        (json!({"base": "EUR", "rates": {"JPY": "-160"}}), "rates.JPY"),
        (json!({"base": "EUR", "rates": {"JPY": "160.123456789"}}), "rates.JPY"),
        (json!({"base": "EUR", "rates": {"JPY": "1e3"}}), "rates.JPY"),
    ] {
        let (status, error) = put_rates(&app, body.clone()).await;
        assert_error(status, &error, 400, "invalid_request");
        assert_eq!(error["error"]["field"], field, "{body} {error}");
    }
    let (status, error) = put_rates(&app, json!({"base": "EUR", "rates": {"JPY": 160}})).await;
    assert_error(status, &error, 400, "invalid_request");
    let (status, error) = put_rates(&app, json!({"base": "EUR", "rates": {}, "extra": 1})).await;
    assert_error(status, &error, 400, "invalid_request");
    let (status, error) = put_rates(&app, json!({"base": "EUR", "rates": {"EUR": "1"}})).await;
    assert_error(status, &error, 422, "invalid_request");

    // Once a market exists its risk settings are amounts in the base: the base is fixed.
    market(&app, "Roma v Lazio", &[("Home", "2.00")]).await;
    let (status, error) = put_rates(&app, json!({"base": "GBP", "rates": {}})).await;
    assert_error(status, &error, 422, "invalid_request");
    let (status, got) = app.call("GET", "/v1/admin/fx-rates", Some(ADMIN_KEY), None).await;
    assert_eq!((status, &got["version"]), (200, &json!(2)), "{got}");

    // Journaled: the audit trail shows the tables as sent (the refused ones too: the book
    // decided them).
    let (status, audit) = app.call("GET", "/v1/admin/audit?limit=100", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{audit}");
    let tables: Vec<&Value> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .flat_map(|batch| batch["commands"].as_array().expect("commands"))
        .filter(|command| command["type"] == "set_fx_rates")
        .collect();
    assert_eq!(tables.len(), 4, "{audit}");
    assert_eq!((&tables[0]["base"], &tables[0]["rates"]), (&json!("GBP"), &json!({"EUR": "1.17"})), "{audit}");
    assert_eq!(tables[1]["base"], "EUR", "{audit}");
    assert_eq!(tables[1]["rates"], json!({"GBP": "0.8547", "JPY": "160.00"}), "{audit}");

    let player = player_in(&app, "punter", "EUR", "10.00").await;
    let (status, error) = app.call("GET", "/v1/admin/fx-rates", Some(&player.access_token), None).await;
    assert_error(status, &error, 403, "forbidden");
    let (status, error) = app
        .call("PUT", "/v1/admin/fx-rates", Some(&player.access_token), Some(json!({"base": "EUR", "rates": {}})))
        .await;
    assert_error(status, &error, 403, "forbidden");
    let (status, error) = app.call("GET", "/v1/admin/fx-rates", None, None).await;
    assert_error(status, &error, 401, "unauthenticated");
}

#[tokio::test]
async fn a_stale_exchange_rate_table_is_a_readyz_warning() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_path_buf();
    let mut config = GatewayConfig::new(b"test-secret-test-secret-test-secret".to_vec());
    config.fx_rates_age_max = Duration::from_millis(300);
    let app = spawn_app_on(&path, Some(dir), config).await;

    // No table yet: nothing to be stale.
    let (status, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!((status, &body), (200, &json!({"status": "ok"})));
    let (status, table) = put_rates(&app, json!({"base": "EUR", "rates": {"JPY": "160.00"}})).await;
    assert_eq!(status, 200, "{table}");
    let (status, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!((status, &body), (200, &json!({"status": "ok"})));

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (status, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "a stale rate warns without taking the node out: {body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["warnings"], json!(["fx_rates_stale"]), "{body}");
    assert!(body["fx_rates_age_seconds"].as_u64().is_some_and(|age| age >= 1), "{body}");

    // A fresh table clears it.
    let (status, table) = put_rates(&app, json!({"base": "EUR", "rates": {"JPY": "161.00"}})).await;
    assert_eq!(status, 200, "{table}");
    let (status, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!((status, &body), (200, &json!({"status": "ok"})));
}

/// The turnover and GGR reports keep each currency apart and add a total in the base currency:
/// each bet's money converted with the rate recorded on the bet when it was placed, one amount at
/// a time, rounded up to the cent. The deposit cap (€100,000.00 by default) is in the base
/// currency too, converted at the rate now and rounded down.
#[tokio::test]
async fn reports_total_in_the_base_currency_at_each_bets_rate_and_the_deposit_cap_converts() {
    let app = spawn_app().await;
    let (status, table) = put_rates(&app, json!({"base": "EUR", "rates": {"JPY": "160.00", "KRW": "1540.5"}})).await;
    assert_eq!(status, 200, "{table}");
    let eur = player_in(&app, "euro", "EUR", "500.00").await;
    let jpy = player_in(&app, "yen", "JPY", "100000").await;
    let krw = player_in(&app, "won", "KRW", "1000000").await;

    // €100,000.00 is ¥16,000,000: a yen more is refused, the cap itself accepted.
    let (status, body) = deposit(&app, &jpy, "16000001").await;
    assert_error(status, &body, 422, "invalid_request");
    let (status, body) = deposit(&app, &jpy, "16000000").await;
    assert_eq!(status, 201, "{body}");

    let (market_id, selections) = market(&app, "Arsenal v Spurs", &[("Home", "2.00"), ("Away", "3.00")]).await;
    let (home, away) = (&selections[0], &selections[1]);
    for (player, selection, price, stake) in [
        (&eur, home, "2.00", "10.00"),
        (&jpy, home, "2.00", "1000"),
        (&krw, away, "3.00", "10000"),
        (&krw, home, "2.00", "3333"),
    ] {
        let (status, body) = bet(&app, player, selection, price, stake).await;
        assert_eq!(status, 201, "{body}");
    }
    // The table changes before settlement: the reports keep each bet's placement rate.
    let (status, table) = put_rates(&app, json!({"base": "EUR", "rates": {"JPY": "100", "KRW": "1000"}})).await;
    assert_eq!(status, 200, "{table}");
    // ¥10,000,000 is the cap now.
    let (status, body) = deposit(&app, &jpy, "10000001").await;
    assert_error(status, &body, 422, "invalid_request");
    let (status, body) = deposit(&app, &jpy, "10000000").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .call(
            "POST",
            &format!("/v1/admin/markets/{market_id}/settle"),
            Some(ADMIN_KEY),
            Some(json!({"results": [{"selection_id": home, "outcome": "win"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // At 160.00 and 1540.5, rounded up to the cent one amount at a time: ¥1,000 = €6.25,
    // ¥2,000 = €12.50, ₩10,000 = €6.4914 = €6.50, ₩3,333 = €2.1636 = €2.17, ₩6,666 = €4.3271 =
    // €4.33. Stakes €10.00 + €6.25 + €6.50 + €2.17 = €24.92; payouts €20.00 + €12.50 + €4.33 =
    // €36.83.
    let turnover_line = |currency: &str, bets: u64, stakes: &str| {
        json!({"currency": currency, "bets_placed": bets, "stakes_placed": stakes, "bets_settled": bets,
               "stakes_settled": stakes})
    };
    let (status, report) = app.call("GET", "/v1/admin/reports/turnover", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["currencies"],
        json!([turnover_line("EUR", 1, "10.00"), turnover_line("JPY", 1, "1000"), turnover_line("KRW", 2, "13333")]),
        "{report}"
    );
    assert_eq!(report["base_total"], turnover_line("EUR", 4, "24.92"), "{report}");
    assert_eq!(report["missing_rates"], json!([]), "{report}");

    let zero = |currency: &str| if currency == "JPY" || currency == "KRW" { "0" } else { "0.00" };
    let ggr_line = |currency: &str, stakes: &str, payouts: &str, revenue: &str| {
        json!({"currency": currency, "stakes_settled": stakes, "payouts": payouts, "cashouts": zero(currency),
               "gross_gaming_revenue": revenue,
               "resettlements": {"payouts_reversed": zero(currency), "recognised_as_debt": zero(currency),
                                 "stakes_reversed": zero(currency), "adjustment": zero(currency)},
               "net_gaming_revenue": revenue})
    };
    let (status, report) = app.call("GET", "/v1/admin/reports/ggr", Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["currencies"],
        json!([
            ggr_line("EUR", "10.00", "20.00", "-10.00"),
            ggr_line("JPY", "1000", "2000", "-1000"),
            ggr_line("KRW", "13333", "6666", "6667"),
        ]),
        "{report}"
    );
    assert_eq!(report["base_total"], ggr_line("EUR", "24.92", "36.83", "-11.91"), "{report}");
    assert_eq!(report["missing_rates"], json!([]), "{report}");

    // The same as CSV: a row per currency, then the base total.
    let csv = |name: &str| {
        let url = app.url(&format!("/v1/admin/reports/{name}?format=csv"));
        async move {
            let response = reqwest::Client::new().get(url).bearer_auth(ADMIN_KEY).send().await.expect("request");
            assert_eq!(response.status().as_u16(), 200);
            let content_type = response.headers()["content-type"].to_str().expect("content type").to_string();
            assert_eq!(content_type, "text/csv; charset=utf-8");
            response.text().await.expect("body")
        }
    };
    assert_eq!(
        csv("turnover").await,
        "line,currency,bets_placed,stakes_placed,bets_settled,stakes_settled\r\n\
         currency,EUR,1,10.00,1,10.00\r\n\
         currency,JPY,1,1000,1,1000\r\n\
         currency,KRW,2,13333,2,13333\r\n\
         base_total,EUR,4,24.92,4,24.92\r\n"
    );
    assert_eq!(
        csv("ggr").await,
        "line,currency,stakes_settled,payouts,cashouts,gross_gaming_revenue,payouts_reversed,recognised_as_debt,\
         stakes_reversed,adjustment,net_gaming_revenue\r\n\
         currency,EUR,10.00,20.00,0.00,-10.00,0.00,0.00,0.00,0.00,-10.00\r\n\
         currency,JPY,1000,2000,0,-1000,0,0,0,0,-1000\r\n\
         currency,KRW,13333,6666,0,6667,0,0,0,0,6667\r\n\
         base_total,EUR,24.92,36.83,0.00,-11.91,0.00,0.00,0.00,0.00,-11.91\r\n"
    );
    // Every report has a CSV form (API.md), liabilities and rg-events included; an unknown
    // format is refused.
    for name in ["liabilities", "rg-events"] {
        let body = csv(name).await;
        assert!(body.starts_with("line,"), "{name}: {body}");
    }
    let (status, body) = app.call("GET", "/v1/admin/reports/turnover?format=xml", Some(ADMIN_KEY), None).await;
    assert_error(status, &body, 400, "invalid_request");
    assert_eq!(body["error"]["field"], "format", "{body}");
}
