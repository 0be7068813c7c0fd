//! The spec at `/openapi.json` describes the same routes as the book's HTTP
//! API page, so a new user trying its routes in Swagger UI finds every one.

use std::collections::BTreeSet;

use crate::support::helpers::spawn_app;

/// Documented routes that serve the spec itself rather than being described
/// in it.
const SPEC_ITSELF: &[&str] = &["GET /docs", "GET /openapi.json"];

/// `METHOD /path` of every row of the route table of the HTTP API page.
fn documented_routes() -> BTreeSet<String> {
    let page = include_str!("../../docs/src/http-api.md");
    let table = page
        .lines()
        .skip_while(|line| !line.starts_with("| route |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'));
    let mut routes = BTreeSet::new();
    for row in table {
        let first_cell = row.split('|').nth(1).expect("a route cell");
        // A cell may hold several routes: `POST /a`, `GET /a`.
        for route in first_cell.split('`').skip(1).step_by(2) {
            let (method, path) = route.split_once(' ').expect("METHOD /path");
            // The query is an example of use, not part of the path.
            let path = path.split('?').next().unwrap();
            routes.insert(format!("{method} {path}"));
        }
    }
    routes
}

#[test]
fn the_documented_route_table_is_read() {
    let routes = documented_routes();
    assert!(routes.contains("POST /v1/events"), "{routes:?}");
    assert!(routes.contains("GET /v1/events"), "{routes:?}");
    assert!(routes.contains("GET /docs"), "{routes:?}");
}

#[tokio::test]
async fn the_spec_has_exactly_the_routes_the_docs_list() {
    let app = spawn_app().await;
    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut in_spec = BTreeSet::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            in_spec.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let mut in_docs = documented_routes();
    in_docs.retain(|route| !SPEC_ITSELF.contains(&route.as_str()));

    let missing_from_spec: Vec<_> = in_docs.difference(&in_spec).collect();
    assert!(
        missing_from_spec.is_empty(),
        "routes docs/src/http-api.md lists but /openapi.json does not: {missing_from_spec:?}"
    );
    let missing_from_docs: Vec<_> = in_spec.difference(&in_docs).collect();
    assert!(
        missing_from_docs.is_empty(),
        "operations in /openapi.json docs/src/http-api.md does not list: {missing_from_docs:?}"
    );
}

#[tokio::test]
async fn the_routes_that_serve_the_spec_answer() {
    let app = spawn_app().await;
    for route in SPEC_ITSELF {
        let path = route.split_once(' ').unwrap().1;
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{route}");
    }
}

/// What Swagger UI's "Try it out" sends unchanged is a realistic event
/// that leaves subscribers' reconnection alone.
#[tokio::test]
async fn the_publish_examples_are_safe_to_send_unchanged() {
    let app = spawn_app().await;
    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemas = &spec["components"]["schemas"];
    let example = schemas["PublishRequest"]["example"].clone();
    assert_eq!(
        example,
        serde_json::json!({"event": "order", "data": {"status": "shipped"}})
    );
    let retry = schemas["PublishRequest"]["properties"]["retry"]["description"]
        .as_str()
        .unwrap();
    assert!(
        retry.contains("milliseconds") && retry.contains("60000") && retry.contains("reconnect"),
        "{retry}"
    );
    let batch = schemas["BatchRequest"]["example"].clone();
    assert!(!batch.to_string().contains("retry"), "{batch}");

    let mut subscriber = app.subscribe(&["orders.42"]).await;
    let response = app.publish_raw("orders.42", example).await;
    assert_eq!(response.status(), 202);
    let event = subscriber.next().await;
    assert_eq!(event.event, "order");
    assert_eq!(event.data, r#"{"status":"shipped"}"#);
    assert_eq!(event.retry, None, "the example sets no retry");
    let response = app
        .client
        .post(app.url("/v1/events"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

/// Tags name what a user does; the stream routes say up front why Swagger
/// UI's "Execute" never completes, and what to run instead.
#[tokio::test]
async fn tags_name_what_users_do_and_stream_routes_say_what_to_run() {
    let app = spawn_app().await;
    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let tags: BTreeSet<&str> = spec["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        BTreeSet::from([
            "Console",
            "Mercure",
            "Operations",
            "Publish",
            "Subscribe",
            "Tutorial"
        ])
    );
    assert_eq!(spec["paths"]["/event-stream"]["get"]["tags"][0], "Tutorial");
    for path in ["/v1/events", "/event-stream", "/.well-known/mercure"] {
        let description = spec["paths"][path]["get"]["description"].as_str().unwrap();
        assert!(
            description.starts_with("**Swagger UI can't show this stream**"),
            "{path}: {description}"
        );
        assert!(
            description.contains("curl -N") && description.contains("EventSource"),
            "{path}: {description}"
        );
    }
}

/// The Mercure routes' schema says exactly what the hub refuses where
/// OpenAPI can say it (the API fuzzer checks that schema-violating input
/// is refused): no empty selector; one topic or several, none empty; a
/// `retry` of digits. What it can't say (at least one selector among the
/// four parameters, the characters and reserved values the spec forbids)
/// the description and the 400 say.
#[tokio::test]
async fn the_mercure_schema_says_what_the_hub_refuses() {
    let app = spawn_app().await;
    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let route = &spec["paths"]["/.well-known/mercure"];
    let parameters = route["get"]["parameters"].as_array().unwrap();
    for name in ["topic", "match", "match_exact", "match_urlpattern"] {
        let parameter = parameters
            .iter()
            .find(|parameter| parameter["name"] == name && parameter["in"] == "query")
            .unwrap_or_else(|| panic!("no query parameter {name}"));
        assert_eq!(parameter["required"], false, "{parameter}");
        assert_eq!(parameter["schema"]["type"], "array", "{parameter}");
        assert_eq!(parameter["schema"]["items"]["minLength"], 1, "{parameter}");
    }
    let form =
        &route["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
    assert_eq!(form["required"], serde_json::json!(["topic"]), "{form}");
    let topic = &form["properties"]["topic"]["anyOf"];
    assert_eq!(topic[0]["type"], "string", "{topic}");
    assert_eq!(topic[0]["minLength"], 1, "{topic}");
    assert_eq!(topic[1]["type"], "array", "{topic}");
    assert_eq!(topic[1]["minItems"], 1, "{topic}");
    assert_eq!(topic[1]["items"]["minLength"], 1, "{topic}");
    assert_eq!(
        form["properties"]["retry"]["pattern"], "^[0-9]{0,19}$",
        "{form}"
    );
}
