//! Liveness and readiness probes.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::error::ApiError;
use super::mercure::MercureRoute;
use crate::auth::Authenticator;
use crate::hub::{Hub, Readiness};

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
    /// named by URL (`auth.jwt.jwks`, `mercure.*_jwt.key`) has been read once.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(
        &self,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        mercure: Data<&MercureRoute>,
    ) -> Result<HealthResponse, ApiError> {
        let keys_read = auth.is_ready() && mercure.keys_are_loaded();
        match unready(hub.readiness(), keys_read) {
            None => Ok(HealthResponse::Ok(Json(Status {
                status: "ready".to_owned(),
                subscribers: hub.subscriber_count() as u64,
            }))),
            Some((problem, detail)) => Err(ApiError::unavailable(problem, detail)),
        }
    }
}

/// Why this process is not ready (problem type, detail), or `None`: the
/// one place the hub's reasons and auth's (a JWKS named by URL not read
/// yet) are combined. A drain wins over everything; the keys come before a
/// backplane outage.
fn unready(hub: Readiness, keys_read: bool) -> Option<(&'static str, &'static str)> {
    match (hub, keys_read) {
        (Readiness::Ready, true) => None,
        (Readiness::Draining, _) => Some(("draining", "the hub is draining before shutdown")),
        (_, false) => Some((
            "keys-unavailable",
            "a JWKS named by URL (auth.jwt.jwks, mercure.*_jwt.key) has not been read yet",
        )),
        (Readiness::BackplaneUnavailable, true) => {
            Some(("backplane-unavailable", "the backplane is unreachable"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_wins_then_the_keys_then_the_backplane() {
        let problem = |hub, keys| unready(hub, keys).map(|(problem, _)| problem);
        assert_eq!(problem(Readiness::Ready, true), None);
        assert_eq!(problem(Readiness::Draining, false), Some("draining"));
        assert_eq!(problem(Readiness::Draining, true), Some("draining"));
        assert_eq!(problem(Readiness::Ready, false), Some("keys-unavailable"));
        assert_eq!(
            problem(Readiness::BackplaneUnavailable, false),
            Some("keys-unavailable")
        );
        assert_eq!(
            problem(Readiness::BackplaneUnavailable, true),
            Some("backplane-unavailable")
        );
    }
}
