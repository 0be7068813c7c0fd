//! Request body limits: size (`limits.max_body_bytes`), for chunked bodies
//! too, and time (`limits.body_read_timeout`).
//!
//! poem's `SizeLimit` only reads `Content-Length` and refuses requests
//! without it; publishers that stream a chunked body must be bounded as well.
//! Every body is read in full here, within the deadline, before a handler
//! sees it: a body trickled byte by byte or cut half-way is refused as a
//! whole (408, 400), so nothing of it is ever accepted.

use poem::http::StatusCode;
use poem::{Endpoint, Middleware, Request, Result};

use super::error::ApiError;

pub struct BodyLimit {
    pub max_bytes: usize,
    pub read_timeout: std::time::Duration,
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint {
            inner,
            max_bytes: self.max_bytes,
            read_timeout: self.read_timeout,
        }
    }
}

pub struct BodyLimitEndpoint<E> {
    inner: E,
    max_bytes: usize,
    read_timeout: std::time::Duration,
}

impl<E: Endpoint> BodyLimitEndpoint<E> {
    fn too_large(&self) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!(
                "the request body is over {} bytes (limits.max_body_bytes); split the batch",
                self.max_bytes
            ),
        )
    }
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut request: Request) -> Result<Self::Output> {
        // Bodiless requests (every GET) pass untouched: SSE streams must not
        // wait on a body read.
        let declared = request
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let chunked = request
            .headers()
            .get(poem::http::header::TRANSFER_ENCODING)
            .is_some();
        match declared {
            Some(length) if length > self.max_bytes as u64 => return Err(self.too_large().into()),
            Some(0) => return self.inner.call(request).await,
            Some(_) => {}
            None if !chunked => return self.inner.call(request).await,
            None => {}
        }
        let body = request.take_body();
        let read = tokio::time::timeout(self.read_timeout, body.into_bytes_limit(self.max_bytes));
        let bytes = match read.await {
            Err(_elapsed) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body-timeout",
                    format!(
                        "the request body did not arrive in full within {} (limits.body_read_timeout); nothing was accepted",
                        humantime::format_duration(self.read_timeout)
                    ),
                )
                .into());
            }
            Ok(Err(poem::error::ReadBodyError::PayloadTooLarge)) => {
                return Err(self.too_large().into());
            }
            Ok(Err(other)) => {
                return Err(ApiError::bad_request(
                    "unreadable-body",
                    format!("the request body could not be read: {other}; nothing was accepted"),
                )
                .into());
            }
            Ok(Ok(bytes)) => bytes,
        };
        request.set_body(bytes);
        self.inner.call(request).await
    }
}
