//! One OpenAPI path entry per path, whichever group of routes declares its
//! operations.
//!
//! poem-openapi writes one `paths` entry per path of each `#[OpenApi]` impl;
//! when two impls share a path (publish's `POST /v1/events` and subscribe's
//! `GET /v1/events`), the spec gets the key twice and JSON readers keep only
//! the last, so an operation vanishes from `/openapi.json` while it is still
//! routed. [`MergedPaths`] folds the operations of a shared path into one
//! entry; routing is left to the wrapped APIs unchanged.

use std::collections::HashMap;

use poem::endpoint::BoxEndpoint;
use poem::http::Method;
use poem_openapi::OpenApi;
use poem_openapi::registry::{MetaApi, MetaPath, Registry};

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
