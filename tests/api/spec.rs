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
