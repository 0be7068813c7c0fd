//! ssehub's own HTTP/1 front: the accept loop, request heads read here, and
//! event streams written without an HTTP server behind them.
//!
//! # How a stream is served
//! 1. [`accept`] takes the connection and spawns its task (one per
//!    connection, nothing else).
//! 2. [`connection`] reads each request head with [`head`] (`httparse`,
//!    within `limits.header_read_timeout` and [`head::MAX_REQUEST_HEAD_BYTES`])
//!    and builds the poem `Request` from it. Between requests a connection
//!    may idle for `limits.keep_alive_timeout`; the next head's own timeout
//!    starts at its first byte. Routing, middleware (CORS, body
//!    limit, spans, metrics, auth, shedding) and handlers are the poem
//!    endpoint's, unchanged: this module never looks at paths.
//! 3. A request without a body is answered by the endpoint right there. If
//!    the response carries an [`EventStreamMarker`], [`stream_writer`]
//!    writes its head and frames to the socket itself; the connection then
//!    costs its socket, its task, the stream's own state and no HTTP
//!    buffers. Any other response, and every request with a body, is
//!    written by hyper ([`via_hyper`]), one request at a time, and the
//!    connection comes back for its next head (keep-alive, pipelining).
//!    The request loop and the writer are two phases of the connection's
//!    task, each a boxed future dropped when its phase ends, so a stream
//!    holds the writer's state only. With `stream.coalesce` the writer
//!    gathers a busy stream's frames for that long after each write.
//!    When the writer has written everything and the stream's source
//!    ([`EventSource`]) has nothing ready, the source may take the
//!    connection over ([`EventSource::park`], a [`ParkedConnection`]): the
//!    connection's task ends, and the source's holder (the hub's writer
//!    shards) writes chunks and watches the socket until it gives the
//!    connection back to a task ([`ParkedConnection::resume`]).
//! 4. What only hyper should handle (HTTP/2 with prior knowledge, HTTP/1.0,
//!    chunked request bodies, upgrades) is handed to hyper for the rest of
//!    the connection. An HTTP/2 connection is closed once no stream has been
//!    open for `limits.keep_alive_timeout` (`limits.header_read_timeout`
//!    before its first stream: a preface alone holds nothing for long).
//!
//! # The stream marker
//! [`EventStreamMarker`] is the one contract between the routes and this
//! module: a response whose extensions hold it is a `200` whose body is a
//! stream of SSE frames (the marker's [`EventSource`]; the body reads the
//! same source for anything else that reads the response) that lasts until
//! it ends (drain, a shed hint,
//! an expired credential — whatever ends it, the route decides) or the
//! client leaves. The stream writer sends it chunked, as hyper would; a route
//! that sets the marker must not set `Content-Length`. Responses without the
//! marker are never touched here.

mod accept;
mod connection;
mod event_source;
pub mod head;
pub mod listen_address;
pub mod listener;
mod parked;
mod stream_writer;
mod via_hyper;

use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::BoxEndpoint;
use poem::web::LocalAddr;
use poem::{EndpointExt, IntoEndpoint, Response};
use tokio_util::sync::CancellationToken;

pub use head::HeadError;

pub use listen_address::{InvalidListenAddress, LISTEN_EXAMPLES, ListenAddress};
pub use listener::DrainingAcceptor;

pub use event_source::{
    EventSource, EventStreamMarker, FramesSource, ParkedConnection, Received, Sent,
};
pub use parked::MAX_SEND_FRAMES;

/// The server's own limits.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// `limits.header_read_timeout`: a request head must be complete this
    /// long after the accept, or after its first byte on a kept-alive
    /// connection.
    pub header_read_timeout: Duration,
    /// `limits.keep_alive_timeout`: how long a connection may sit idle
    /// between requests (HTTP/1.1) or with no stream open (HTTP/2).
    pub keep_alive_timeout: Duration,
    /// `stream.write_timeout`; `None` waits forever.
    pub write_timeout: Option<Duration>,
    /// `stream.coalesce`; `None` writes every frame at once.
    pub coalesce: Option<Duration>,
    /// The answer to a request head that can't be served (400, 408, 414,
    /// 431), rendered by the HTTP layer so that every error has one shape;
    /// the server writes it and closes the connection.
    pub refusal: fn(HeadError) -> Response,
}

/// What every connection task shares.
struct Shared {
    endpoint: Arc<BoxEndpoint<'static, Response>>,
    local_addr: LocalAddr,
    settings: ServerSettings,
}

/// Serves connections from `acceptor` until `stop` is cancelled; then open
/// connections finish what they are doing (idle ones close at once) and,
/// after `close_grace`, whatever is left is dropped.
pub async fn serve(
    acceptor: DrainingAcceptor,
    endpoint: impl IntoEndpoint<Endpoint: 'static>,
    settings: ServerSettings,
    stop: CancellationToken,
    close_grace: Duration,
) {
    let shared = Arc::new(Shared {
        endpoint: Arc::new(endpoint.into_endpoint().map_to_response().boxed()),
        local_addr: LocalAddr(acceptor.local_addr().into()),
        settings,
    });
    accept::run(acceptor, shared, stop, close_grace).await;
}
