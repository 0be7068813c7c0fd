//! One client connection, request by request: every head is read here
//! ([`head`]), the endpoint answers, and the answer is written by the
//! stream writer (an event stream, [`stream_writer`]) or by hyper
//! (everything else, [`via_hyper`]). After each request the connection
//! comes back here, so a subscribe that follows publishes on a keep-alive
//! connection (nginx's upstream `keepalive`) costs no more than one on a
//! fresh connection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use poem::http::Method;
use poem::http::uri::Scheme;
use poem::web::RemoteAddr;
use poem::{Body, Endpoint, Request, RequestParts, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::head::{self, BodyFraming, Head, RequestHead};
use super::stream_writer::{self, StreamEnd};
use super::via_hyper::{self, Answer, OneMessage};
use super::{EventSource, EventStreamMarker, ParkedConnection, Shared};

/// After refusing a head, the connection is read (and discarded) this long
/// before it closes, so that the client, still sending, reads the answer
/// instead of a reset (nginx's lingering close, shorter).
const LINGER_AFTER_REFUSAL: Duration = Duration::from_secs(1);

/// What a connection needs beside its socket, from its accept to its end:
/// kept in its task, or by its [`ParkedConnection`] while it has none.
pub(super) struct ConnectionContext {
    shared: Arc<Shared>,
    remote: RemoteAddr,
    /// Cancelled once the listener closes: the connection takes no new
    /// request (an idle one closes, a busy one after its answer or stream).
    stopping: CancellationToken,
    cut: CancellationToken,
    /// Keeps the accept loop's stop waiting for the connection while it is
    /// parked (no task of its own is tracked then).
    _tracked: TaskTrackerToken,
    /// Where a parked connection's task is spawned again.
    pub(super) runtime: Handle,
    /// The current stream's request allowed keep-alive.
    keep_alive: bool,
}

/// Serves the connection until it ends, or until `cut` (the grace after
/// stopping has run out).
///
/// A connection alternates between two phases, each one boxed future that
/// is dropped when its phase ends: reading heads and answering requests
/// ([`serve_requests`]), and writing an event stream ([`stream_response`]).
/// A stream, which may last for hours, so costs the writer's state and
/// not the request machinery's beside it; a stream whose source parks it
/// costs no task at all until it is resumed.
pub fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    stopping: CancellationToken,
    cut: CancellationToken,
    tracked: TaskTrackerToken,
) -> impl Future<Output = ()> + Send {
    // Converted before the future is made: what it captures it keeps for
    // the life of the connection (inside the connection's task), so it
    // captures the converted values only, not the arguments beside them.
    let context = Box::new(ConnectionContext {
        shared,
        remote: RemoteAddr(remote.into()),
        stopping,
        cut,
        _tracked: tracked,
        runtime: Handle::current(),
        keep_alive: true,
    });
    run(context, Phase::Requests(Next::Fresh(stream)))
}

/// Serves a parked connection again (see [`ParkedConnection::resume`]):
/// `unsent` first, then the source's frames.
pub(super) async fn resume(
    context: Box<ConnectionContext>,
    socket: std::net::TcpStream,
    unsent: Bytes,
    received: Vec<u8>,
    source: Pin<Box<dyn EventSource>>,
) {
    let Ok(stream) = TcpStream::from_std(socket) else {
        return;
    };
    let keep_alive = context.keep_alive;
    let start = StreamStart {
        stream,
        buffered: received,
        head: unsent,
        source,
        keep_alive,
    };
    run(context, Phase::Stream(start)).await;
}

/// Where [`run`] begins.
enum Phase {
    Requests(Next),
    Stream(StreamStart),
}

/// The connection's phases, from `phase` on, until it ends.
async fn run(mut context: Box<ConnectionContext>, mut phase: Phase) {
    loop {
        let start = match phase {
            Phase::Requests(next) => {
                let requests = Box::pin(serve_requests(
                    &context.shared,
                    next,
                    &context.remote,
                    &context.stopping,
                ));
                let start = tokio::select! {
                    start = requests => start,
                    _ = context.cut.cancelled() => return,
                };
                let Some(start) = start else { return };
                start
            }
            Phase::Stream(start) => start,
        };
        let keep_alive = start.keep_alive;
        let streaming = Box::pin(stream_response(&context.shared, start));
        let outcome = tokio::select! {
            outcome = streaming => outcome,
            _ = context.cut.cancelled() => return,
        };
        let io = match outcome {
            StreamOutcome::Ended => return,
            StreamOutcome::Finished(io) => io,
            StreamOutcome::Parked(stream, source) => {
                // Out of the runtime's reactor: the new holder watches
                // the socket itself.
                let Ok(socket) = stream.into_std() else {
                    return;
                };
                context.keep_alive = keep_alive;
                source.park(ParkedConnection::new(socket, *context));
                return;
            }
        };
        let (mut stream, buffered) = io.into_parts();
        if !keep_alive || context.stopping.is_cancelled() {
            let _ = stream.shutdown().await;
            return;
        }
        phase = Phase::Requests(Next::KeepAlive(stream, buffered));
    }
}

/// How the connection comes to [`serve_requests`].
enum Next {
    /// Just accepted: its first head is due `header_read_timeout` after
    /// the accept.
    Fresh(TcpStream),
    /// After a response, with whatever was read beyond it: the connection
    /// may idle `keep_alive_timeout` for its next request, whose head is
    /// then due `header_read_timeout` after its first byte.
    KeepAlive(TcpStream, Vec<u8>),
}

/// Reads heads and answers requests until one is answered with an event
/// stream (returned for the stream writer) or the connection ends (`None`).
async fn serve_requests(
    shared: &Shared,
    next: Next,
    remote: &RemoteAddr,
    stopping: &CancellationToken,
) -> Option<StreamStart> {
    // Bytes read but not yet used; empty (and unallocated) between requests.
    let (mut stream, mut buffered, mut after_response) = match next {
        Next::Fresh(stream) => (stream, Vec::new(), false),
        Next::KeepAlive(stream, buffered) => (stream, buffered, true),
    };
    loop {
        if after_response && buffered.is_empty() {
            // Release the head's buffer while the connection idles.
            buffered = Vec::new();
            let keep_alive = shared.settings.keep_alive_timeout;
            let next_request = tokio::select! {
                // A request that has begun to arrive is still served.
                biased;
                arrived = Box::pin(first_byte_within(&stream, keep_alive)) => arrived,
                _ = stopping.cancelled() => return None,
            };
            if !next_request {
                let _ = stream.shutdown().await;
                return None;
            }
        }
        after_response = true;
        let deadline = Instant::now() + shared.settings.header_read_timeout;
        // Every await of this loop but the cheap ones is on a boxed future:
        // this future is as large as its largest state.
        // A request under way is read and answered even when stopping has
        // begun (the answer then closes the connection): the client sent it
        // to an open listener. A fresh connection's counts as under way, as
        // its client sends at once. The head's deadline bounds this, and the
        // stop's cut ends a head still unread after the grace.
        let head = Box::pin(head::read(&stream, &mut buffered, deadline)).await;
        let request = match head {
            Ok(Head::Request(request)) => request,
            Ok(Head::Closed) => return None,
            Ok(Head::HandToHyper) => {
                let io = OneMessage::new(stream, buffered, 0);
                Box::pin(via_hyper::serve_rest_of_connection(
                    shared,
                    io,
                    remote.clone(),
                    stopping,
                ))
                .await;
                return None;
            }
            Err(error) => {
                Box::pin(refuse(stream, (shared.settings.refusal)(error))).await;
                return None;
            }
        };
        let answered = Box::pin(answer(
            shared,
            stream,
            buffered,
            request,
            remote.clone(),
            stopping,
        ))
        .await;
        let (next, keep_alive) = match answered {
            Answered::Next(next, keep_alive) => (next, keep_alive),
            Answered::Stream(start) => return Some(start),
        };
        let io = next?;
        (stream, buffered) = io.into_parts();
        if !keep_alive || stopping.is_cancelled() {
            let _ = stream.shutdown().await;
            return None;
        }
    }
}

/// Waits for the first byte of a kept-alive connection's next request;
/// `false` when the client closes, or sends nothing for `idle` (the
/// connection is then closed: a proxy's pool of idle upstream connections
/// must drop them first, see `limits.keep_alive_timeout`). Peeks, so the
/// byte stays for the head.
async fn first_byte_within(stream: &TcpStream, idle: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(idle, stream.peek(&mut byte)).await,
        Ok(Ok(1))
    )
}

/// What one request came to.
enum Answered {
    /// Answered by hyper; the connection comes back for its next head
    /// (`None`: it has ended). Carries the request's keep-alive.
    Next(Option<OneMessage>, bool),
    /// An event stream for the stream writer.
    Stream(StreamStart),
}

/// Everything the stream writer needs of a streaming response, and nothing
/// more: the request, the response and their headers are gone by then.
struct StreamStart {
    stream: TcpStream,
    buffered: Vec<u8>,
    head: Bytes,
    source: Pin<Box<dyn EventSource>>,
    keep_alive: bool,
}

/// Answers one request. Its own (boxed, short-lived) future: the request
/// and the response, large and borrowed on the way, would otherwise keep
/// their room in the connection's future for the life of a stream.
async fn answer(
    shared: &Shared,
    stream: TcpStream,
    mut buffered: Vec<u8>,
    request: RequestHead,
    remote: RemoteAddr,
    stopping: &CancellationToken,
) -> Answered {
    let RequestHead {
        parts,
        len,
        body,
        keep_alive,
    } = request;
    match body {
        BodyFraming::Length(bytes) => {
            // hyper reads the head again, and the body.
            drop(parts);
            let io = OneMessage::new(stream, buffered, len as u64 + bytes);
            let answer = Answer::Endpoint;
            let next = Box::pin(via_hyper::serve_one_request(
                shared, io, answer, remote, stopping,
            ))
            .await;
            Answered::Next(next, keep_alive)
        }
        BodyFraming::Empty => {
            let is_head = parts.method == Method::HEAD;
            let response = Box::pin(call_endpoint(shared, parts, remote.clone())).await;
            let source = if is_head {
                None
            } else {
                response
                    .extensions()
                    .get::<EventStreamMarker>()
                    .and_then(EventStreamMarker::take)
            };
            if let Some(source) = source {
                buffered.drain(..len);
                let head = stream_head(&response, keep_alive);
                Answered::Stream(StreamStart {
                    stream,
                    buffered,
                    head,
                    source,
                    keep_alive,
                })
            } else {
                let io = OneMessage::new(stream, buffered, len as u64);
                let answer = Answer::Ready(response);
                let next = Box::pin(via_hyper::serve_one_request(
                    shared, io, answer, remote, stopping,
                ))
                .await;
                Answered::Next(next, keep_alive)
            }
        }
    }
}

/// A request without a body, answered by the endpoint right here.
async fn call_endpoint(
    shared: &Shared,
    parts: poem::http::request::Parts,
    remote: RemoteAddr,
) -> Response {
    let parts = RequestParts::from((parts, shared.local_addr.clone(), remote, Scheme::HTTP));
    shared
        .endpoint
        .get_response(Request::from_parts(parts, Body::empty()))
        .await
}

/// The bytes of a streaming response's head (its body is the source).
fn stream_head(response: &Response, keep_alive: bool) -> Bytes {
    stream_writer::response_head(response.status(), response.headers(), keep_alive)
}

/// How a stream's phase of the connection ended.
enum StreamOutcome {
    /// The stream finished cleanly: the connection may carry a request.
    Finished(OneMessage),
    /// The connection is done.
    Ended,
    /// The source takes the connection over.
    Parked(TcpStream, Pin<Box<dyn EventSource>>),
}

/// Writes an event stream with the stream writer; gives the connection back
/// when the stream has finished cleanly, or to the source that parks it.
/// Not an `async fn`, which would keep `start` beside the parts taken from
/// it.
fn stream_response(
    shared: &Shared,
    start: StreamStart,
) -> impl Future<Output = StreamOutcome> + use<> {
    let StreamStart {
        stream,
        mut buffered,
        head,
        source,
        ..
    } = start;
    let timing = stream_writer::WriteTiming {
        write_timeout: shared.settings.write_timeout,
        coalesce: shared.settings.coalesce,
    };
    async move {
        if buffered.is_empty() {
            // The head's buffer is not kept for the life of the stream.
            buffered = Vec::new();
        }
        let mut source = Some(source);
        let end =
            stream_writer::write_stream(&stream, head, &mut source, &mut buffered, timing).await;
        match end {
            StreamEnd::Finished => StreamOutcome::Finished(OneMessage::new(stream, buffered, 0)),
            StreamEnd::Park => match source {
                Some(source) => StreamOutcome::Parked(stream, source),
                None => StreamOutcome::Ended,
            },
            StreamEnd::WriteTimedOut => {
                tracing::debug!(
                    target: "ssehub::http",
                    "a subscriber's socket accepted nothing for stream.write_timeout; stream ended"
                );
                StreamOutcome::Ended
            }
            StreamEnd::PeerGone | StreamEnd::BodyFailed => StreamOutcome::Ended,
        }
    }
}

/// Answers a head that can't be served with `response` (its problem
/// document), then closes the connection.
async fn refuse(mut stream: TcpStream, response: Response) {
    let (parts, body) = response.into_parts();
    let body = body.into_bytes().await.unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_str(),
        parts.status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            answer.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    answer.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\ndate: {}\r\n\r\n",
        body.len(),
        httpdate::fmt_http_date(std::time::SystemTime::now())
    ));
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(LINGER_AFTER_REFUSAL, write)
        .await
        .is_err()
    {
        return;
    }
    let linger = async {
        let mut discard = [0u8; 4096];
        while matches!(stream.read(&mut discard).await, Ok(read) if read > 0) {}
    };
    let _ = tokio::time::timeout(LINGER_AFTER_REFUSAL, linger).await;
}
