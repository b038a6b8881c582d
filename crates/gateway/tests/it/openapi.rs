//! The OpenAPI document at `GET /openapi.json`: it parses, documents exactly the routes the
//! server serves (the list below, which is also checked against the `.route(...)` calls in the
//! gateway's source), every documented operation is routed on a running app, and every error
//! response is the `Error` schema with `Retry-After` where the client should wait.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};
use utoipa::openapi::OpenApi;

use crate::harness::{spawn_app, TestApp, ADMIN_KEY};

/// Every route of `gateway::app`, as method and path template.
const ROUTES: &[(&str, &str)] = &[
    // players
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/wallet"),
    ("POST", "/v1/wallet/deposits"),
    ("POST", "/v1/wallet/withdrawals"),
    ("GET", "/v1/wallet/transactions"),
    ("POST", "/v1/bets"),
    ("GET", "/v1/bets"),
    ("GET", "/v1/bets/{id}"),
    ("GET", "/v1/bets/{id}/cashout"),
    ("POST", "/v1/bets/{id}/cashout"),
    ("GET", "/v1/limits"),
    ("PUT", "/v1/limits"),
    ("POST", "/v1/self-exclusion"),
    ("POST", "/v1/time-out"),
    ("GET", "/v1/reality-check"),
    ("PUT", "/v1/reality-check"),
    ("POST", "/v1/reality-check/acknowledge"),
    // catalog
    ("GET", "/v1/events"),
    ("GET", "/v1/events/{id}"),
    ("GET", "/v1/markets/{id}"),
    // operators
    ("POST", "/v1/admin/events"),
    ("POST", "/v1/admin/events/{id}/markets"),
    ("POST", "/v1/admin/events/{id}/in-play"),
    ("POST", "/v1/admin/events/{id}/end"),
    ("PUT", "/v1/admin/markets/{id}/prices"),
    ("POST", "/v1/admin/markets/{id}/suspend"),
    ("POST", "/v1/admin/markets/{id}/resume"),
    ("POST", "/v1/admin/markets/{id}/close"),
    ("PUT", "/v1/admin/markets/{id}/risk"),
    ("POST", "/v1/admin/markets/{id}/settle"),
    ("POST", "/v1/admin/markets/{id}/unsettle"),
    ("POST", "/v1/admin/markets/{id}/void"),
    ("PUT", "/v1/admin/accounts/{id}/risk"),
    ("GET", "/v1/admin/exposure"),
    ("POST", "/v1/admin/api-keys"),
    ("DELETE", "/v1/admin/api-keys/{id}"),
    ("POST", "/v1/staff/login"),
    ("POST", "/v1/admin/staff"),
    ("POST", "/v1/admin/staff/{id}/disable"),
    ("POST", "/v1/staff/logout"),
    ("GET", "/v1/admin/staff"),
    ("PUT", "/v1/admin/staff/{id}/roles"),
    ("POST", "/v1/admin/accounts/{id}/adjustments"),
    ("GET", "/v1/admin/adjustments"),
    ("POST", "/v1/admin/adjustments/{id}/approve"),
    ("POST", "/v1/admin/adjustments/{id}/reject"),
    // compliance
    ("GET", "/v1/admin/audit"),
    ("GET", "/v1/admin/bets"),
    ("GET", "/v1/admin/accounts"),
    ("GET", "/v1/admin/accounts/{id}"),
    ("GET", "/v1/admin/payments"),
    ("POST", "/v1/admin/payments/{id}/resolve"),
    ("POST", "/v1/admin/payments/{id}/approve"),
    ("POST", "/v1/admin/payments/{id}/refuse"),
    ("POST", "/v1/payments/callbacks/{provider}"),
    ("POST", "/v1/kyc/callbacks/{provider}"),
    ("PUT", "/v1/admin/accounts/{id}/kyc"),
    ("GET", "/v1/players/me/kyc"),
    ("POST", "/v1/players/me/kyc"),
    ("POST", "/v1/feed/messages"),
    ("GET", "/v1/admin/trading-mode"),
    ("PUT", "/v1/admin/trading-mode"),
    ("PUT", "/v1/admin/markets/{id}/throttle"),
    ("GET", "/v1/admin/fx-rates"),
    ("GET", "/v1/admin/cluster"),
    ("PUT", "/v1/admin/fx-rates"),
    ("GET", "/v1/admin/reports/{name}"),
    // monitoring
    ("GET", "/v1/admin/monitoring-rules"),
    ("PUT", "/v1/admin/monitoring-rules"),
    ("GET", "/v1/admin/alerts"),
    ("GET", "/v1/admin/cases"),
    ("GET", "/v1/admin/cases/{id}"),
    ("POST", "/v1/admin/cases/{id}/actions"),
    ("GET", "/v1/admin/reports/suspicious-activity"),
    // stream
    ("GET", "/v1/stream"),
    // operations
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// Statuses whose body is the readiness report, not an `Error`.
const NOT_ERROR_BODIES: &[(&str, &str, &str)] = &[("GET", "/readyz", "503")];

fn route_set(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    routes.iter().map(|(method, path)| ((*method).to_string(), (*path).to_string())).collect()
}

async fn fetch_document(app: &TestApp) -> (Value, OpenApi) {
    let response = app.client.get(app.url("/openapi.json")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("content type").to_string();
    assert_eq!(content_type, "application/json");
    let text = response.text().await.expect("body");
    let value: Value = serde_json::from_str(&text).expect("the document is JSON");
    let document: OpenApi = serde_json::from_str(&text).expect("the document is an OpenAPI document");
    (value, document)
}

/// Every operation of the document as (method, path, operation).
fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&method.as_str()) {
                found.push((method.to_uppercase(), path.clone(), operation));
            }
        }
    }
    found
}

/// The `.route("path", get(handler).post(handler))` calls in the gateway's source.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(&directory).expect("src") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|extension| extension != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(\"") {
            let after = &rest[at + ".route(\"".len()..];
            let quote = after.find('"').expect("closing quote");
            let template = &after[..quote];
            // The method router runs to the parenthesis that closes `.route(`.
            let tail = &after[quote + 1..];
            let mut depth = 1;
            let mut close = tail.len();
            for (index, character) in tail.char_indices() {
                match character {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    close = index;
                    break;
                }
            }
            let router = &tail[..close];
            for method in ["get", "post", "put", "delete", "patch"] {
                let call = format!("{method}(");
                let mut search = router;
                while let Some(found) = search.find(&call) {
                    let before = search[..found].chars().next_back();
                    if before.is_none_or(|character| !(character.is_alphanumeric() || character == '_')) {
                        routes.insert((method.to_uppercase(), template.to_string()));
                    }
                    search = &search[found + call.len()..];
                }
            }
            rest = &tail[close..];
        }
    }
    routes
}

fn difference(left: &BTreeSet<(String, String)>, right: &BTreeSet<(String, String)>) -> Vec<String> {
    left.difference(right).map(|(method, path)| format!("{method} {path}")).collect()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_the_bearer_scheme_and_its_tags() {
    let app = spawn_app().await;
    let (value, document) = fetch_document(&app).await;
    assert!(value["openapi"].as_str().is_some_and(|version| version.starts_with("3.1")), "{}", value["openapi"]);
    assert_eq!(document.info.title, "sportsbook");
    assert_eq!(value["components"]["securitySchemes"]["bearer"]["type"], "http");
    assert_eq!(value["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let tags: BTreeSet<&str> =
        value["tags"].as_array().expect("tags").iter().map(|tag| tag["name"].as_str().expect("name")).collect();
    assert_eq!(
        tags,
        BTreeSet::from([
            "adjustments",
            "catalog",
            "feed",
            "kyc",
            "monitoring",
            "operations",
            "operators",
            "payments",
            "players",
            "staff",
            "stream"
        ])
    );
    for (method, path, operation) in operations(&value) {
        let tag = operation["tags"].as_array().and_then(|tags| tags.first()).and_then(Value::as_str);
        assert!(tag.is_some_and(|tag| tags.contains(tag)), "{method} {path} has no known tag");
        // Routes taking a credential say so; the `/v1/auth` routes, the staff login, the catalog,
        // operations and the payment provider's callbacks (signed instead) take none.
        let public = path.starts_with("/v1/auth/")
            || path == "/v1/staff/login"
            || tag == Some("payments")
            || tag == Some("kyc")
            || tag == Some("catalog")
            || tag == Some("operations");
        let secured = operation["security"] == json!([{"bearer": []}]);
        assert_eq!(secured, !public, "{method} {path}: security {}", operation["security"]);
    }
    // The documented bounds are the server's.
    for (path, method) in
        [("/v1/events", "get"), ("/v1/bets", "get"), ("/v1/wallet/transactions", "get"), ("/v1/admin/exposure", "get")]
    {
        let limit = value["paths"][path][method]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|parameter| parameter["name"] == "limit")
            .expect("limit");
        assert_eq!(limit["schema"]["maximum"], json!(gateway::PAGE_ITEMS_MAX), "{path}");
    }
    let schemas = &value["components"]["schemas"];
    let bounds = [
        ("PlaceBetRequest", "legs", "maxItems", book::constants::LEGS_MAX as u64),
        ("CreateMarketRequest", "selections", "maxItems", book::constants::SELECTIONS_PER_MARKET_MAX as u64),
        ("SetPricesRequest", "prices", "maxItems", book::constants::SELECTIONS_PER_MARKET_MAX as u64),
        ("SettleRequest", "results", "maxItems", book::constants::RESULTS_MAX as u64),
        ("InPlayRequest", "bet_delay_seconds", "maximum", u64::from(book::constants::BET_DELAY_SECONDS_MAX)),
        ("MarketRiskRequest", "in_play_delay_seconds", "maximum", u64::from(book::constants::BET_DELAY_SECONDS_MAX)),
        ("DepositRequest", "payment_ref", "maxLength", book::constants::NAME_BYTES_MAX as u64),
    ];
    for (schema, property, keyword, bound) in bounds {
        assert_eq!(schemas[schema]["properties"][property][keyword], json!(bound), "{schema}.{property} {keyword}");
    }
    for (path, operation) in [
        ("/v1/wallet/deposits", "post"),
        ("/v1/wallet/withdrawals", "post"),
        ("/v1/bets", "post"),
        ("/v1/bets/{id}/cashout", "post"),
    ] {
        let key = value["paths"][path][operation]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|parameter| parameter["name"] == "Idempotency-Key")
            .expect("Idempotency-Key");
        assert_eq!(key["in"], "header");
        assert_eq!(key["required"], true, "{path}: 400 idempotency_key_required without it");
        let unknown = &value["paths"][path][operation]["responses"]["504"];
        assert!(unknown["description"].as_str().is_some_and(|text| text.contains("outcome_unknown")), "{path}");
        assert_eq!(key["schema"]["maxLength"], json!(book::constants::IDEMPOTENCY_KEY_BYTES_MAX), "{path}");
    }
    let duplicate = &value["paths"]["/v1/wallet/deposits"]["post"]["responses"]["409"]["description"];
    assert!(duplicate.as_str().is_some_and(|text| text.contains("duplicate_payment_ref")), "{duplicate}");
    let metrics = &value["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
    assert!(metrics.get(gateway::METRICS_CONTENT_TYPE).is_some(), "{metrics}");
}

#[tokio::test]
async fn the_document_has_every_route_the_server_serves_and_no_other() {
    let app = spawn_app().await;
    let (value, _) = fetch_document(&app).await;
    let listed = route_set(ROUTES);
    assert_eq!(listed.len(), ROUTES.len(), "a route is listed twice");
    let in_source = routes_in_source();
    assert!(
        listed == in_source,
        "the list of routes and the gateway's `.route(...)` calls differ: listed only {:?}, in the source only {:?}",
        difference(&listed, &in_source),
        difference(&in_source, &listed)
    );
    let documented: BTreeSet<(String, String)> =
        operations(&value).into_iter().map(|(method, path, _)| (method, path)).collect();
    assert!(
        listed == documented,
        "served but not documented: {:?}; documented but not served: {:?}",
        difference(&listed, &documented),
        difference(&documented, &listed)
    );
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let (value, _) = fetch_document(&app).await;
    // Real resources, so that a 404 can only mean an unrouted path.
    let player = app.funded_player("openapi", "100.00").await;
    let (status, registered) = app
        .call(
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({
                "username": "other", "password": "correct horse battery staple", "date_of_birth": "1990-05-17",
                "country": "GB"
            })),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    let account = registered["id"].as_str().expect("account id").to_string();
    let (event, market, selections) = app.football_match("Docs v Tests").await;
    let (status, bet) = app
        .call(
            "POST",
            "/v1/bets",
            Some(&player.access_token),
            Some(
                json!({"type": "single", "legs": [{"selection_id": selections[0], "price": "2.50"}], "stake": "1.00"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{bet}");
    let bet = bet["id"].as_str().expect("bet id").to_string();
    let (status, key) = app
        .call("POST", "/v1/admin/api-keys", Some(ADMIN_KEY), Some(json!({"name": "doomed", "scopes": ["feed"]})))
        .await;
    assert_eq!(status, 201, "{key}");
    let key = key["id"].as_str().expect("key id").to_string();

    // The probe can tell an unrouted path and an unrouted method.
    assert_eq!(app.call("GET", "/v1/no-such-route", Some(ADMIN_KEY), None).await.0, 404);
    assert_eq!(app.call("DELETE", "/v1/events", Some(ADMIN_KEY), None).await.0, 405);

    for (method, template, operation) in operations(&value) {
        let id = if template.starts_with("/v1/bets/") {
            &bet
        } else if template.starts_with("/v1/events/") || template.starts_with("/v1/admin/events/") {
            &event
        } else if template.starts_with("/v1/markets/") || template.starts_with("/v1/admin/markets/") {
            &market
        } else if template.starts_with("/v1/admin/accounts/") {
            &account
        } else {
            &key
        };
        // Reports are named, not numbered.
        let path = template.replace("{id}", id).replace("{name}", "turnover").replace("{provider}", "sandbox");
        let token = match operation["tags"][0].as_str() {
            Some("players") => Some(player.access_token.as_str()),
            Some("operators") => Some(ADMIN_KEY),
            _ => None,
        };
        let body = operation.get("requestBody").map(|_| json!({}));
        let (status, answer) = app.call(&method, &path, token, body).await;
        assert!(status != 404 && status != 405, "{method} {path} ({template}) answered {status}: {answer}");
    }
}

#[tokio::test]
async fn every_error_response_is_the_error_schema() {
    let app = spawn_app().await;
    let (value, _) = fetch_document(&app).await;
    let error = &value["components"]["schemas"]["Error"];
    assert_eq!(error["required"], json!(["error"]), "{error}");
    assert_eq!(error["properties"]["error"]["required"], json!(["code", "message"]), "{error}");
    for (method, path, operation) in operations(&value) {
        let responses = operation["responses"].as_object().expect("responses");
        for status in ["429", "500", "503"] {
            assert!(responses.contains_key(status), "{method} {path} does not document {status}");
        }
        // Every body, even an optional one, can be malformed or hold an unknown field: the
        // extractor answers 400 (schemathesis found unsettle and void without it).
        if operation.get("requestBody").is_some() {
            assert!(responses.contains_key("400"), "{method} {path} takes a body and does not document 400");
        }
        for (status, response) in responses {
            let code: u16 = status.parse().expect("a status, not a range or `default`");
            if code < 400 || NOT_ERROR_BODIES.contains(&(method.as_str(), path.as_str(), status.as_str())) {
                continue;
            }
            let content = response["content"].as_object().expect("content");
            assert_eq!(content.keys().collect::<Vec<_>>(), ["application/json"], "{method} {path} {status}");
            assert_eq!(
                content["application/json"]["schema"],
                json!({"$ref": "#/components/schemas/Error"}),
                "{method} {path} {status}"
            );
            if code == 429 || code == 503 {
                assert!(response["headers"].get("Retry-After").is_some(), "{method} {path} {status}: no Retry-After");
            }
        }
    }
}

/// The keyed writes (bets, deposits, withdrawals, cash-out accept: the operations with the
/// `Idempotency-Key` header) document the 503 `unavailable` they give while the read models are
/// too far behind to tell whether the key was used; other operations keep the common 503.
#[tokio::test]
async fn keyed_writes_document_the_503_of_read_models_far_behind() {
    let app = spawn_app().await;
    let (value, _) = fetch_document(&app).await;
    let keyed: BTreeSet<(String, String)> = route_set(&[
        ("POST", "/v1/bets"),
        ("POST", "/v1/wallet/deposits"),
        ("POST", "/v1/wallet/withdrawals"),
        ("POST", "/v1/bets/{id}/cashout"),
        ("POST", "/v1/admin/accounts/{id}/adjustments"),
    ]);
    let mut found = BTreeSet::new();
    for (method, path, operation) in operations(&value) {
        let has_key = operation["parameters"]
            .as_array()
            .is_some_and(|parameters| parameters.iter().any(|parameter| parameter["name"] == "Idempotency-Key"));
        if NOT_ERROR_BODIES.contains(&(method.as_str(), path.as_str(), "503")) {
            continue;
        }
        let description = operation["responses"]["503"]["description"].as_str().expect("503 description");
        let about_models = description.contains("read models") && description.contains("`unavailable`");
        assert_eq!(about_models, has_key, "{method} {path}: {description}");
        assert!(operation["responses"]["503"]["headers"].get("Retry-After").is_some(), "{method} {path}");
        if has_key {
            found.insert((method, path));
        }
    }
    assert_eq!(found, keyed);
}
