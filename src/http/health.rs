//! Liveness and readiness probes.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::error::ApiError;
use crate::auth::Authenticator;
use crate::hub::{Hub, Phase};

#[derive(Debug, Object)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: String,
    /// Open SSE streams on this process.
    pub subscribers: u64,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    #[oai(status = 200)]
    Ok(Json<Status>),
}

pub struct HealthApi;

#[OpenApi(tag = "ApiTags::Operations")]
impl HealthApi {
    /// Liveness
    ///
    /// 200 while the process serves HTTP, draining included: a draining pod
    /// must not be restarted.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self, hub: Data<&Hub>) -> HealthResponse {
        HealthResponse::Ok(Json(Status {
            status: "ok".to_owned(),
            subscribers: hub.subscriber_count() as u64,
        }))
    }

    /// Readiness
    ///
    /// 503 from the moment a drain starts (so load balancers stop sending
    /// new clients), while the backplane is unreachable, and until a JWKS
    /// named by URL has been read once.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(
        &self,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
    ) -> Result<HealthResponse, ApiError> {
        if hub.is_ready() && auth.is_ready() {
            return Ok(HealthResponse::Ok(Json(Status {
                status: "ready".to_owned(),
                subscribers: hub.subscriber_count() as u64,
            })));
        }
        Err(if hub.lifecycle().phase() != Phase::Serving {
            ApiError::unavailable("draining", "the hub is draining before shutdown")
        } else if !auth.is_ready() {
            ApiError::unavailable(
                "keys-unavailable",
                "the JWKS (auth.jwt.jwks) has not been read yet",
            )
        } else {
            ApiError::unavailable("backplane-unavailable", "the backplane is unreachable")
        })
    }
}
