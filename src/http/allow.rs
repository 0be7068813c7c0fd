//! The `Allow` header of a 405 answer (RFC 9110 §15.5.6: a 405 must list the
//! methods the resource supports). poem's router knows a path has other
//! methods but does not say which; the spec's operations do.

use std::sync::Arc;

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

/// The methods of each route, as the spec lists them.
pub struct AllowedMethods {
    routes: Arc<Vec<RouteMethods>>,
}

struct RouteMethods {
    /// Path segments; `None` is a `{parameter}` that matches any segment.
    segments: Vec<Option<String>>,
    allow: HeaderValue,
}

impl AllowedMethods {
    /// `operations`: every (path as the spec writes it, method).
    pub fn new(operations: impl IntoIterator<Item = (String, Method)>) -> Self {
        let mut by_path: Vec<(String, Vec<Method>)> = Vec::new();
        for (path, method) in operations {
            match by_path.iter_mut().find(|(known, _)| *known == path) {
                Some((_, methods)) => methods.push(method),
                None => by_path.push((path, vec![method])),
            }
        }
        let routes = by_path
            .into_iter()
            .map(|(path, mut methods)| {
                // poem answers HEAD for every GET route.
                if methods.contains(&Method::GET) {
                    methods.push(Method::HEAD);
                }
                let allow = methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                RouteMethods {
                    segments: path
                        .split('/')
                        .map(|segment| (!segment.starts_with('{')).then(|| segment.to_owned()))
                        .collect(),
                    allow: HeaderValue::from_str(&allow).expect("method names are header-safe"),
                }
            })
            .collect();
        Self {
            routes: Arc::new(routes),
        }
    }

    fn allow_for(&self, path: &str) -> Option<&HeaderValue> {
        let segments: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .find(|route| {
                route.segments.len() == segments.len()
                    && route
                        .segments
                        .iter()
                        .zip(&segments)
                        .all(|(expected, actual)| expected.as_deref().is_none_or(|e| e == *actual))
            })
            .map(|route| &route.allow)
    }
}

impl<E: Endpoint> Middleware<E> for AllowedMethods {
    type Output = AllowEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        AllowEndpoint {
            inner,
            allowed: AllowedMethods {
                routes: self.routes.clone(),
            },
        }
    }
}

pub struct AllowEndpoint<E> {
    inner: E,
    allowed: AllowedMethods,
}

impl<E: Endpoint> Endpoint for AllowEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> Result<Self::Output> {
        let path = request.uri().path().to_owned();
        let mut response = self.inner.call(request).await?.into_response();
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(allow) = self.allowed.allow_for(&path)
        {
            response.headers_mut().insert(header::ALLOW, allow.clone());
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_405_lists_the_methods_of_the_matching_route() {
        let allowed = AllowedMethods::new([
            ("/v1/events".to_owned(), Method::POST),
            ("/v1/events".to_owned(), Method::GET),
            ("/v1/topics/{topic}/events".to_owned(), Method::POST),
        ]);
        assert_eq!(allowed.allow_for("/v1/events").unwrap(), "POST, GET, HEAD");
        assert_eq!(
            allowed.allow_for("/v1/topics/orders.42/events").unwrap(),
            "POST"
        );
        assert!(allowed.allow_for("/v1/topics/a/b/events").is_none());
        assert!(allowed.allow_for("/nowhere").is_none());
    }
}
