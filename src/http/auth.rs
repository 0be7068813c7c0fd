//! Bearer keys for the publish routes, compared in constant time.

use poem::Request;
use poem::http::{StatusCode, header};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The accepted publish keys; empty means publishing is open.
#[derive(Clone, Default)]
pub struct PublishKeys(Vec<Vec<u8>>);

impl std::fmt::Debug for PublishKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys themselves.
        write!(f, "PublishKeys({} keys)", self.0.len())
    }
}

impl PublishKeys {
    pub fn new(keys: Vec<String>) -> Self {
        Self(keys.into_iter().map(String::into_bytes).collect())
    }

    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks `Authorization: Bearer <key>` against every key, without an
    /// early exit, so timing says nothing about which key nearly matched.
    pub fn authorize(&self, request: &Request) -> Result<(), ApiError> {
        if self.is_open() {
            return Ok(());
        }
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "publishing needs `Authorization: Bearer <key>` with a key from auth.publish_keys",
                )
            })?;
        let matched = self.0.iter().fold(subtle::Choice::from(0), |found, key| {
            found | key.as_slice().ct_eq(presented.trim().as_bytes())
        });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer key is not one of auth.publish_keys",
            ))
        }
    }
}
