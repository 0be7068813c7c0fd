//! The OpenAPI document at `/openapi.json` (and in Swagger UI at `/docs`),
//! made to say exactly what the server does where poem-openapi's output
//! falls short.
//!
//! One path entry per path: poem-openapi writes one `paths` entry per path of each `#[OpenApi]` impl;
//! when two impls share a path (publish's `POST /v1/events` and subscribe's
//! `GET /v1/events`), the spec gets the key twice and JSON readers keep only
//! the last, so an operation vanishes from `/openapi.json` while it is still
//! routed. [`MergedPaths`] folds the operations of a shared path into one
//! entry; routing is left to the wrapped APIs unchanged.
//!
//! Closed request objects: the publish bodies refuse unknown fields (a
//! misspelt `evnet` must not be dropped silently), which poem-openapi's
//! `deny_unknown_fields` enforces but does not write into the schema; its
//! schema model can't express `additionalProperties: false`, so
//! [`document`] adds it to the finished document.
//!
//! The configured cap: a batch's `events` takes at most
//! `limits.max_events_per_request` items, a number known only at run time,
//! so [`document`] writes it as `maxItems` into the served document.

use std::collections::HashMap;

use poem::endpoint::{BoxEndpoint, make_sync};
use poem::http::Method;
use poem::web::Html;
use poem::{Endpoint, Response};
use poem_openapi::registry::{MetaApi, MetaPath, Registry};
use poem_openapi::{OpenApi, OpenApiService, Webhook};
use serde_json::Value;

/// Request schemas whose Rust type is `#[oai(deny_unknown_fields)]`.
const CLOSED_OBJECTS: &[&str] = &["PublishRequest", "BatchItem", "BatchRequest"];

/// The finished spec as JSON text, for a hub that takes at most
/// `max_events_per_request` events per publish.
pub fn document<T: OpenApi, W: Webhook>(
    service: &OpenApiService<T, W>,
    max_events_per_request: usize,
) -> String {
    let mut spec: Value =
        serde_json::from_str(&service.spec()).expect("poem-openapi writes valid JSON");
    let schemas = &mut spec["components"]["schemas"];
    for name in CLOSED_OBJECTS {
        let schema = schemas
            .get_mut(name)
            .unwrap_or_else(|| panic!("schema {name} is in the spec"));
        schema["additionalProperties"] = Value::Bool(false);
    }
    let batch_events = schemas
        .pointer_mut("/BatchRequest/properties/events")
        .expect("the batch schema has its `events`");
    batch_events["maxItems"] = Value::from(max_events_per_request);
    serde_json::to_string_pretty(&spec).expect("a JSON value serializes")
}

/// `GET /openapi.json`.
pub fn document_endpoint(document: String) -> impl Endpoint + 'static {
    make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(document.clone())
    })
}

/// `GET /docs`: poem-openapi's Swagger UI page, showing [`document`] in
/// place of the spec it would embed.
pub fn swagger_ui_endpoint<T: OpenApi, W: Webhook>(
    service: &OpenApiService<T, W>,
    document: &str,
) -> impl Endpoint + 'static {
    let page = service
        .swagger_ui_html()
        .replacen(&service.spec(), document, 1);
    make_sync(move |_| Html(page.clone()))
}

/// Wraps a group of APIs (a tuple of `#[OpenApi]` impls) so that its spec
/// lists each path once, with every operation declared for it.
pub struct MergedPaths<T>(pub T);

impl<T: OpenApi> OpenApi for MergedPaths<T> {
    fn meta() -> Vec<MetaApi> {
        let mut paths: Vec<MetaPath> = Vec::new();
        for path in T::meta().into_iter().flat_map(|api| api.paths) {
            match paths.iter_mut().find(|known| known.path == path.path) {
                Some(known) => known.operations.extend(path.operations),
                None => paths.push(path),
            }
        }
        vec![MetaApi { paths }]
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn add_routes(self, route_table: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {
        self.0.add_routes(route_table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_request_objects_say_so() {
        let spec: Value =
            serde_json::from_str(&document(&super::super::api_service(), 500)).unwrap();
        for name in CLOSED_OBJECTS {
            assert_eq!(
                spec["components"]["schemas"][name]["additionalProperties"], false,
                "{name}"
            );
        }
    }

    #[test]
    fn the_batch_states_the_configured_cap_as_max_items() {
        let spec: Value =
            serde_json::from_str(&document(&super::super::api_service(), 123)).unwrap();
        let events = &spec["components"]["schemas"]["BatchRequest"]["properties"]["events"];
        assert_eq!(events["maxItems"], 123, "{events}");
        assert_eq!(events["minItems"], 1, "{events}");
    }

    #[test]
    fn swagger_ui_shows_the_finished_document() {
        let service = super::super::api_service();
        let document = document(&service, 500);
        let page = service
            .swagger_ui_html()
            .replacen(&service.spec(), &document, 1);
        assert!(page.contains(&document));
        assert!(page.contains("\"additionalProperties\": false"));
    }

    #[test]
    fn a_path_shared_by_two_apis_keeps_both_operations() {
        let meta = <MergedPaths<super::super::Apis> as OpenApi>::meta();
        let events: Vec<_> = meta
            .iter()
            .flat_map(|api| &api.paths)
            .filter(|path| path.path == "/v1/events")
            .collect();
        assert_eq!(events.len(), 1, "one entry for /v1/events");
        let mut methods: Vec<_> = events[0]
            .operations
            .iter()
            .map(|operation| operation.method.to_string())
            .collect();
        methods.sort();
        assert_eq!(methods, ["GET", "POST"]);
    }
}
