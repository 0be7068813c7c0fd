//! A browser's CORS preflight to a hub with CORS off (`cors.allowed_origins`
//! empty). Without this, the `OPTIONS` found no route method and got a 405
//! "route does not take that method", and nothing said why the page's
//! request failed. Now it is answered `403 cors-disabled` naming the
//! setting — 403, not 405: the method is not what is wrong, the origin is
//! not allowed; either way the browser sees no CORS success and blocks the
//! page's request — and the log says so once per origin.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use super::error::ApiError;

/// Origins whose refused preflight was logged; past this many, no more
/// are: a page probing with made-up origins can't flood the log or grow
/// the set.
const LOGGED_ORIGINS_MAX: usize = 64;
/// The longest origin written to the log or a detail, in bytes.
const ORIGIN_SHOWN_MAX_BYTES: usize = 200;

/// Answers preflights while CORS is off; everything else passes through.
#[derive(Default)]
pub struct CorsOff {
    logged: Arc<Mutex<HashSet<String>>>,
}

impl<E: Endpoint> Middleware<E> for CorsOff {
    type Output = CorsOffEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        CorsOffEndpoint {
            inner,
            logged: self.logged.clone(),
        }
    }
}

pub struct CorsOffEndpoint<E> {
    inner: E,
    logged: Arc<Mutex<HashSet<String>>>,
}

impl<E: Endpoint> Endpoint for CorsOffEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> Result<Self::Output> {
        let is_preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .map(|origin| shown(&String::from_utf8_lossy(origin.as_bytes())));
        match origin {
            Some(origin) if is_preflight => {
                self.log_once(&origin);
                Ok(refusal(&origin).into_response())
            }
            _ => Ok(self.inner.call(request).await?.into_response()),
        }
    }
}

impl<E> CorsOffEndpoint<E> {
    fn log_once(&self, origin: &str) {
        let mut logged = self
            .logged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if logged.len() < LOGGED_ORIGINS_MAX && logged.insert(origin.to_owned()) {
            tracing::warn!(
                origin,
                "a browser page of another origin tried to call the hub, and CORS is off: \
                 its request is blocked; to allow it, set cors.allowed_origins \
                 (logged once per origin)"
            );
        }
    }
}

fn refusal(origin: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cors-disabled",
        format!(
            "a CORS preflight from origin {origin:?}, and CORS is off on this hub: pages of \
             other origins can't call it; to allow this one, set cors.allowed_origins = \
             [{origin:?}] (in the environment: SSEHUB_CORS__ALLOWED_ORIGINS='[{origin:?}]')"
        ),
    )
}

/// `origin` cut to [`ORIGIN_SHOWN_MAX_BYTES`] on a character boundary.
fn shown(origin: &str) -> String {
    let mut end = origin.len().min(ORIGIN_SHOWN_MAX_BYTES);
    while !origin.is_char_boundary(end) {
        end -= 1;
    }
    origin[..end].to_owned()
}
