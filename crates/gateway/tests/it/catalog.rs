//! Black-box tests of the catalog reads: events and markets for any caller, filters,
//! pagination and the errors of malformed queries and unknown ids.

use serde_json::{json, Value};

use crate::harness::{spawn_app, TestApp, ADMIN_KEY};

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    app.call("GET", path, None, None).await
}

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|item| item["id"].as_str().expect("id").to_string()).collect()
}

#[tokio::test]
async fn events_and_markets_with_prices_for_anyone() {
    let app = spawn_app().await;
    let (event, market, selections) = app.football_match("Arsenal v Chelsea").await;

    let (status, page) = get(&app, "/v1/events").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(ids(&page), [event.as_str()]);
    let shown = &page["items"][0];
    assert_eq!(shown["name"], "Arsenal v Chelsea");
    assert_eq!(shown["sport"], "football");
    assert_eq!(shown["state"], "scheduled");
    assert!(shown["starts_at"].as_str().expect("starts_at").ends_with('Z'), "{shown}");
    let shown_market = &shown["markets"][0];
    assert_eq!(shown_market["id"], market.as_str());
    assert_eq!(shown_market["status"], "open");
    assert_eq!(shown_market["in_play"], false);
    assert_eq!(shown_market["delayed"], false);
    assert_eq!(
        shown_market["selections"][0],
        json!({"id": selections[0], "name": "Home", "price": "2.50", "fractional": "3/2", "american": "+150",
               "price_version": 1})
    );

    let (status, one) = get(&app, &format!("/v1/events/{event}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(&one, shown);

    let (status, shown_market) = get(&app, &format!("/v1/markets/{market}")).await;
    assert_eq!(status, 200, "{shown_market}");
    assert_eq!(shown_market, shown["markets"][0]);
    assert_eq!(shown_market["event_id"], event.as_str());
    assert_eq!(shown_market["selections"].as_array().expect("selections").len(), 3);

    // A new price shows with its new version.
    let (status, body) = app
        .call(
            "PUT",
            &format!("/v1/admin/markets/{market}/prices"),
            Some(ADMIN_KEY),
            Some(json!({"prices": [{"selection_id": selections[2], "price": "3.00"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, shown_market) = get(&app, &format!("/v1/markets/{market}")).await;
    assert_eq!(shown_market["selections"][2]["price"], "3.00");
    assert_eq!(shown_market["selections"][2]["price_version"], 2);

    // A credential is not needed, and a bad one is not looked at.
    for token in ["not-a-token", "sk_unknown", ADMIN_KEY] {
        let (status, body) = app.call("GET", &format!("/v1/markets/{market}"), Some(token), None).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = app.call("GET", "/v1/events", Some(token), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let player = app.player("browser").await;
    let (status, body) = app.call("GET", &format!("/v1/events/{event}"), Some(&player.access_token), None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn events_page_by_cursor_to_a_null_cursor() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for name in ["One", "Two", "Three", "Four"] {
        created.push(app.football_match(name).await.0);
    }

    let mut seen = Vec::new();
    let mut path = "/v1/events?limit=1".to_string();
    for _ in 0..10 {
        let (status, page) = get(&app, &path).await;
        assert_eq!(status, 200, "{page}");
        let page_ids = ids(&page);
        assert_eq!(page_ids.len(), 1, "{page}");
        seen.extend(page_ids);
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/events?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, created);

    let (status, page) = get(&app, "/v1/events?limit=3").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), created[..3]);
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let (status, page) = get(&app, &format!("/v1/events?limit=3&cursor={cursor}")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), created[3..]);
    assert_eq!(page["next_cursor"], Value::Null);

    // A page exactly as long as what is left ends the walk too.
    let (status, page) = get(&app, "/v1/events?limit=4").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().expect("items").len(), 4);
    assert_eq!(page["next_cursor"], Value::Null);
}

#[tokio::test]
async fn events_filter_by_sport_and_state() {
    let app = spawn_app().await;
    let (first, _, _) = app.football_match("One").await;
    let (second, _, _) = app.football_match("Two").await;
    let (status, tennis) = app
        .call(
            "POST",
            "/v1/admin/events",
            Some(ADMIN_KEY),
            Some(json!({"name": "Sinner v Alcaraz", "sport": "tennis", "starts_at": "2030-01-01T12:00:00Z"})),
        )
        .await;
    assert_eq!(status, 201, "{tennis}");
    let tennis = tennis["id"].as_str().expect("id").to_string();
    let (status, body) = app
        .call(
            "POST",
            &format!("/v1/admin/events/{second}/in-play"),
            Some(ADMIN_KEY),
            Some(json!({"bet_delay_seconds": 0})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (_, page) = get(&app, "/v1/events?sport=tennis").await;
    assert_eq!(ids(&page), [tennis.as_str()]);
    let (_, page) = get(&app, "/v1/events?sport=Football").await;
    assert_eq!(ids(&page), [first.as_str(), second.as_str()]);
    let (_, page) = get(&app, "/v1/events?state=in_play").await;
    assert_eq!(ids(&page), [second.as_str()]);
    assert_eq!(page["items"][0]["state"], "in_play");
    let (_, page) = get(&app, "/v1/events?state=scheduled&sport=football").await;
    assert_eq!(ids(&page), [first.as_str()]);
    let (_, page) = get(&app, "/v1/events?state=ended").await;
    assert_eq!(ids(&page), Vec::<String>::new());
    assert_eq!(page["next_cursor"], Value::Null);

    // Filters hold across pages: the cursor skips the events that do not match.
    let (_, page) = get(&app, "/v1/events?state=scheduled&limit=1").await;
    assert_eq!(ids(&page), [first.as_str()]);
    let cursor = page["next_cursor"].as_str().expect("cursor").to_string();
    let (_, page) = get(&app, &format!("/v1/events?state=scheduled&limit=1&cursor={cursor}")).await;
    assert_eq!(ids(&page), [tennis.as_str()]);
    assert_eq!(page["next_cursor"], Value::Null);
}

#[tokio::test]
async fn malformed_queries_and_unknown_ids() {
    let app = spawn_app().await;
    let (event, market, selections) = app.football_match("One").await;

    for query in
        ["state=postponed", "colour=red", "limit=0", "limit=201", "limit=ten", "cursor=mkt_1", "cursor=garbage"]
    {
        let (status, body) = get(&app, &format!("/v1/events?{query}")).await;
        assert_error(status, &body, 400, "invalid_request");
    }

    for path in [
        "/v1/events/evt_999".to_string(),
        "/v1/events/evt_0".to_string(),
        "/v1/events/nonsense".to_string(),
        format!("/v1/events/{market}"),
        "/v1/markets/mkt_999".to_string(),
        "/v1/markets/mkt_".to_string(),
        format!("/v1/markets/{event}"),
        format!("/v1/markets/{}", selections[0]),
        "/v1/markets/mkt_99999999999999999999999".to_string(),
    ] {
        let (status, body) = get(&app, &path).await;
        assert_error(status, &body, 404, "not_found");
    }
}
