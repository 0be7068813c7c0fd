//! Request body limit (`limits.max_body_bytes`), for chunked bodies too.
//!
//! poem's `SizeLimit` only reads `Content-Length` and refuses requests
//! without it; publishers that stream a chunked body must be bounded as well.

use poem::http::StatusCode;
use poem::{Endpoint, Middleware, Request, Result};

use super::error::ApiError;

pub struct BodyLimit {
    pub max_bytes: usize,
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint {
            inner,
            max_bytes: self.max_bytes,
        }
    }
}

pub struct BodyLimitEndpoint<E> {
    inner: E,
    max_bytes: usize,
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
            Some(_) => {}
            None if !chunked => return self.inner.call(request).await,
            None => {
                let body = request.take_body();
                let bytes =
                    body.into_bytes_limit(self.max_bytes)
                        .await
                        .map_err(|error| match error {
                            poem::error::ReadBodyError::PayloadTooLarge => self.too_large(),
                            other => ApiError::bad_request(
                                "unreadable-body",
                                format!("the request body could not be read: {other}"),
                            ),
                        })?;
                request.set_body(bytes);
            }
        }
        self.inner.call(request).await
    }
}
