//! The HTTP surface: thin handlers that turn requests into hub calls and
//! domain results into responses. Routes, the OpenAPI spec and middleware
//! are assembled in [`routes`].

mod allow;
mod body_limit;
mod config;
pub mod console;
mod cors_off;
mod credentials;
mod error;
mod fields;
mod health;
mod idempotency;
mod mercure;
mod metrics;
mod publish;
mod publish_outcome;
mod request_span;
mod spec;
mod sse;
mod stats;
mod tutorial;

use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoEndpoint, Route};
use poem_openapi::{OpenApiService, Tags};

pub use config::{ConsoleConfig, CorsConfig, EventStreamConfig, validate as validate_config};
pub use error::{ApiError, PROBLEM_JSON, Problem, refusal};
pub use mercure::{
    MercureConfig, MercureDraft, MercureJwtConfig, MercureMintError, MercureMintRequest,
    MercureMinted, MercureSettings, mint as mint_mercure_token,
    validate as validate_mercure_config,
};
pub use stats::StatsContext;
pub use tutorial::TutorialTopic;

use crate::auth::Authenticator;
use crate::backplane::BackplaneKind;
use crate::hub::Hub;

#[derive(Tags)]
enum ApiTags {
    /// Send events to topics.
    Publish,
    /// Receive events over Server-Sent Events.
    Subscribe,
    /// The tutorial-compatible `/event-stream` routes: `{"message": "..."}`
    /// in, `event: message` frames out, on one topic (`event_stream.topic`).
    Tutorial,
    /// Probes and metrics for load balancers, orchestrators and monitoring.
    Operations,
    /// The browser console.
    Console,
    /// The Mercure protocol (on when `mercure.enabled`).
    Mercure,
}

/// What the routes need besides the hub.
pub struct HttpSettings {
    pub max_body_bytes: usize,
    /// `limits.max_events_per_request`.
    pub max_events_per_request: usize,
    pub body_read_timeout: std::time::Duration,
    pub cors: CorsConfig,
    pub authenticator: Authenticator,
    pub tutorial_topic: TutorialTopic,
    /// `console.enabled`.
    pub console: bool,
    /// The configured backplane, reported by `/v1/stats`.
    pub backplane: BackplaneKind,
    /// The Mercure protocol's settings; `None`: `mercure.enabled` is off.
    pub mercure: Option<MercureSettings>,
}

/// Every OpenAPI-described group of routes.
type Apis = (
    publish::PublishApi,
    sse::EventsApi,
    tutorial::TutorialApi,
    health::HealthApi,
    metrics::MetricsApi,
    stats::StatsApi,
    console::ConsoleApi,
    mercure::MercureApi,
);

/// The OpenAPI service.
pub fn api_service() -> OpenApiService<spec::MergedPaths<Apis>, ()> {
    OpenApiService::new(
        spec::MergedPaths((
            publish::PublishApi,
            sse::EventsApi,
            tutorial::TutorialApi,
            health::HealthApi,
            metrics::MetricsApi,
            stats::StatsApi,
            console::ConsoleApi,
            mercure::MercureApi,
        )),
        "ssehub",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Server-Sent Events fan-out hub: publish events over HTTP, subscribe over SSE, \
         resume after a reconnect with Last-Event-ID, with nothing lost silently.",
    )
}

/// The OpenAPI document as served at `/openapi.json` (and printed by
/// `--print-openapi`), for a hub that takes at most `max_events_per_request`
/// events per publish.
pub fn openapi_document(max_events_per_request: usize) -> String {
    spec::document(&api_service(), max_events_per_request)
}

/// Every route, the spec, Swagger UI, and the middleware around them.
pub fn routes(hub: Hub, settings: HttpSettings) -> impl Endpoint + 'static {
    let api = api_service();
    let document = spec::document(&api, settings.max_events_per_request);
    let docs = spec::swagger_ui_endpoint(&api, &document);
    let route = Route::new()
        .nest("/", api)
        .at("/openapi.json", spec::document_endpoint(document))
        .at("/docs", docs)
        .at("/console/:name", poem::get(console::asset));
    let observe = request_span::Observe::new(
        hub.metrics().clone(),
        <Apis as poem_openapi::OpenApi>::meta()
            .iter()
            .flat_map(|api| api.paths.iter().map(|path| path.path.clone())),
    );
    let endpoint = route
        .with(body_limit::BodyLimit {
            max_bytes: settings.max_body_bytes,
            read_timeout: settings.body_read_timeout,
        })
        .with(observe)
        .data(hub)
        .data(publish::MaxEventsPerRequest(
            settings.max_events_per_request,
        ))
        .data(settings.authenticator)
        .data(settings.tutorial_topic)
        .data(console::ConsoleEnabled(settings.console))
        .data(mercure::MercureRoute(
            settings.mercure.map(std::sync::Arc::new),
        ))
        .data(StatsContext {
            backplane: settings.backplane,
            started: std::time::Instant::now(),
        })
        .catch_all_error(|error| async move { error::problem_for_poem_error(error) })
        .with(allow::AllowedMethods::new(
            <Apis as poem_openapi::OpenApi>::meta()
                .into_iter()
                .flat_map(|api| api.paths)
                .flat_map(|path| {
                    path.operations
                        .into_iter()
                        .map(move |operation| (path.path.clone(), operation.method))
                }),
        ));
    let cors_off = settings.cors.allowed_origins.is_empty();
    endpoint
        .with_if(!cors_off, cors(&settings.cors))
        .with_if(cors_off, cors_off::CorsOff::default())
        .into_endpoint()
}

fn cors(config: &CorsConfig) -> Cors {
    let cors = Cors::new()
        .allow_credentials(config.allow_credentials)
        .allow_headers(["authorization", "content-type", "last-event-id"])
        .expose_headers(["retry-after"]);
    if config.allowed_origins.iter().any(|origin| origin == "*") {
        cors
    } else {
        cors.allow_origins(config.allowed_origins.iter().map(String::as_str))
    }
}
