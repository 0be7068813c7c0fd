//! `GET /metrics`: the hub's metrics in the Prometheus text format, or in
//! OpenMetrics when the scraper asks for it (Prometheus does).

use poem::http::header;
use poem::web::Data;
use poem::{IntoResponse, Response};
use poem_openapi::param::Header;
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::credentials::MetricsCredential;
use super::error::ApiError;
use crate::auth::Authenticator;
use crate::hub::Hub;
use crate::metrics::{OPENMETRICS_TEXT, PROMETHEUS_TEXT};

/// A metrics exposition and the content type it is written in.
pub struct MetricsText {
    text: String,
    content_type: &'static str,
}

impl Payload for MetricsText {
    const CONTENT_TYPE: &'static str = "text/plain";

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "Prometheus text format 0.0.4, or OpenMetrics 1.0 when the request's \
                 Accept names application/openmetrics-text",
            ),
            ..MetaSchema::new("string")
        }))
    }
}

impl IntoResponse for MetricsText {
    fn into_response(self) -> Response {
        Response::builder()
            .header(header::CONTENT_TYPE, self.content_type)
            .body(self.text)
    }
}

#[derive(ApiResponse)]
pub enum MetricsResponse {
    #[oai(status = 200)]
    Ok(MetricsText),
}

pub struct MetricsApi;

#[OpenApi(tag = "ApiTags::Operations")]
impl MetricsApi {
    /// Metrics (Prometheus)
    ///
    /// Every metric is described in the book's metrics page
    /// (`docs/src/operations/metrics.md`). Topic names never appear as label
    /// values.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(
        &self,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        credential: MetricsCredential,
        /// `application/openmetrics-text` selects OpenMetrics.
        #[oai(name = "Accept")]
        accept: Header<Option<String>>,
    ) -> Result<MetricsResponse, ApiError> {
        auth.authorize_metrics(credential.0.as_ref())?;
        let openmetrics = accept
            .0
            .is_some_and(|accept| accept.contains("application/openmetrics-text"));
        Ok(MetricsResponse::Ok(MetricsText {
            text: hub.render_metrics(openmetrics),
            content_type: if openmetrics {
                OPENMETRICS_TEXT
            } else {
                PROMETHEUS_TEXT
            },
        }))
    }
}
