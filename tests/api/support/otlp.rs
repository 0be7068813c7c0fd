//! A test OTLP receiver: a gRPC `TraceService` (tonic, with
//! opentelemetry-proto's generated server) or an HTTP endpoint that decodes
//! protobuf `ExportTraceServiceRequest`s (prost). Both keep every span they
//! receive with the `service.name` of its resource.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One received span, flattened for assertions.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service_name: String,
    pub name: String,
    pub kind: i32,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub trace_state: String,
    pub attributes: HashMap<String, String>,
    /// `(trace id, span id)` of each link.
    pub links: Vec<(String, String)>,
    pub start_nanos: u64,
    pub end_nanos: u64,
}

/// OpenTelemetry's `SpanKind` numbers.
pub const KIND_INTERNAL: i32 = 1;
pub const KIND_SERVER: i32 = 2;

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> &str {
        self.attributes
            .get(key)
            .unwrap_or_else(|| panic!("span {} has no attribute {key}: {self:#?}", self.name))
    }

    pub fn attribute_number(&self, key: &str) -> i64 {
        self.attribute(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} of {} is not a number", self.name))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    /// The value of `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_env(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

pub struct Collector {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// How many export requests arrived.
    exports: Arc<Mutex<usize>>,
    server: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub async fn start(protocol: Protocol) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let store = Store::default();
        let server = match protocol {
            Protocol::Grpc => {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let service = TraceServiceServer::new(store.clone());
                tokio::spawn(async move {
                    tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                            listener,
                        ))
                        .await
                        .expect("gRPC receiver");
                })
            }
            Protocol::HttpProtobuf => {
                let store = store.clone();
                let endpoint = poem::Route::new().at(
                    "/v1/traces",
                    poem::post(poem::endpoint::make(move |request: poem::Request| {
                        let store = store.clone();
                        async move { export_over_http(&store, request).await }
                    })),
                );
                let acceptor = poem::listener::TcpAcceptor::from_std(listener).unwrap();
                tokio::spawn(async move {
                    poem::Server::new_with_acceptor(acceptor)
                        .run(endpoint)
                        .await
                        .expect("HTTP receiver");
                })
            }
        };
        Self {
            addr,
            spans: store.spans,
            exports: store.exports,
            server,
        }
    }

    /// The base URL to give `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    pub fn exports(&self) -> usize {
        *self.exports.lock().unwrap()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone, Default)]
struct Store {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    exports: Arc<Mutex<usize>>,
}

impl Store {
    fn keep(&self, request: ExportTraceServiceRequest) {
        *self.exports.lock().unwrap() += 1;
        let mut kept = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| attributes(&resource.attributes).remove("service.name"))
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    kept.push(flatten(&service_name, span));
                }
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.keep(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn export_over_http(store: &Store, mut request: poem::Request) -> poem::Response {
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type != "application/x-protobuf" {
        return poem::Response::builder()
            .status(poem::http::StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .body(format!("expected protobuf, got {content_type}"));
    }
    let body = request.take_body().into_bytes().await.unwrap();
    match ExportTraceServiceRequest::decode(body) {
        Ok(export) => {
            store.keep(export);
            poem::Response::builder()
                .content_type("application/x-protobuf")
                .body(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Err(error) => poem::Response::builder()
            .status(poem::http::StatusCode::BAD_REQUEST)
            .body(error.to_string()),
    }
}

fn attributes(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|pair| {
            let value = match pair.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(text)) => text.clone(),
                Some(AnyValue::IntValue(number)) => number.to_string(),
                Some(AnyValue::BoolValue(flag)) => flag.to_string(),
                Some(AnyValue::DoubleValue(number)) => number.to_string(),
                other => format!("{other:?}"),
            };
            (pair.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn flatten(service_name: &str, span: Span) -> ReceivedSpan {
    ReceivedSpan {
        service_name: service_name.to_owned(),
        name: span.name,
        kind: span.kind,
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        parent_span_id: hex(&span.parent_span_id),
        trace_state: span.trace_state,
        attributes: attributes(&span.attributes),
        links: span
            .links
            .iter()
            .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
            .collect(),
        start_nanos: span.start_time_unix_nano,
        end_nanos: span.end_time_unix_nano,
    }
}
