//! The requests hyper serves: every one whose answer is not an event
//! stream, one request at a time (so that the next head on the connection
//! comes back to [`super::connection`]), and the rest of the connection for
//! what only hyper should handle.
//!
//! For one request hyper gets a [`OneMessage`]: the socket, with the bytes
//! already read replayed in front, that ends (reads as EOF) where the
//! request's body ends. hyper answers it, finds the connection "closed" on
//! its next read, and returns the socket without shutting it down
//! (`without_shutdown`). Half-close is allowed so that this EOF never
//! cancels the answer under way.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Shared;

/// A response body as hyper takes it from poem.
type HyperBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// The socket as hyper sees it while it serves one request.
pub struct OneMessage {
    /// Bytes read from the socket but not yet used; the front of it
    /// (`from_buffer` bytes) is this message.
    buffered: Vec<u8>,
    from_buffer: usize,
    /// The socket, limited to the rest of this message: the next
    /// request's bytes stay in the socket for the next head.
    stream: tokio::io::Take<TcpStream>,
}

impl OneMessage {
    /// `message_bytes` of head and body, starting at the front of
    /// `buffered`.
    pub fn new(stream: TcpStream, buffered: Vec<u8>, message_bytes: u64) -> Self {
        let from_buffer = usize::try_from(message_bytes)
            .unwrap_or(usize::MAX)
            .min(buffered.len());
        let from_socket = message_bytes - from_buffer as u64;
        Self {
            buffered,
            from_buffer,
            stream: tokio::io::AsyncReadExt::take(stream, from_socket),
        }
    }

    /// The socket and whatever was read beyond the message.
    pub fn into_parts(mut self) -> (TcpStream, Vec<u8>) {
        self.buffered.drain(..self.from_buffer);
        (self.stream.into_inner(), self.buffered)
    }

    fn socket(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.get_mut())
    }
}

impl AsyncRead for OneMessage {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.from_buffer > 0 {
            let take = this.from_buffer.min(out.remaining());
            out.put_slice(&this.buffered[..take]);
            this.buffered.drain(..take);
            this.from_buffer -= take;
            return Poll::Ready(Ok(()));
        }
        // At the end of the message the limit reads as EOF.
        Pin::new(&mut this.stream).poll_read(cx, out)
    }
}

impl AsyncWrite for OneMessage {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().socket().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().socket().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().socket().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().socket().poll_shutdown(cx)
    }
}

/// What hyper answers the one request with.
pub enum Answer {
    /// Already computed by the endpoint (a request without a body).
    Ready(Response),
    /// Whatever the endpoint says once hyper has read the request (its
    /// body comes through hyper).
    Endpoint,
}

/// Serves one request with hyper; gives the socket back for the next
/// request, or `None` when the connection is finished (an error, or the
/// server stopping).
pub async fn serve_one_request(
    shared: &Shared,
    io: OneMessage,
    answer: Answer,
    remote: RemoteAddr,
    stopping: &CancellationToken,
) -> Option<OneMessage> {
    // Taken by the first (and only) request hyper reads.
    let answer = std::cell::Cell::new(Some(answer));
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let prepared = match answer.take() {
            Some(Answer::Ready(response)) => Some(response),
            // `OneMessage` holds one request; a second can't arrive.
            _ => None,
        };
        let endpoint = shared.endpoint.clone();
        let request = poem_request(request, shared.local_addr.clone(), remote.clone());
        // Boxed: `without_shutdown` needs an `Unpin` service future.
        Box::pin(async move {
            let response = match prepared {
                Some(response) => response,
                None => endpoint.get_response(request).await,
            };
            Ok::<_, Infallible>(hyper::Response::<HyperBody>::from(response))
        })
    });
    let mut connection = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(TokioIo::new(io), service);
    let stop = stopping.cancelled();
    tokio::pin!(stop);
    let mut stopped = false;
    let served = std::future::poll_fn(|cx| {
        if !stopped && stop.as_mut().poll(cx).is_ready() {
            // Like poem's server: the request under way is answered, with
            // `Connection: close`, then the connection ends.
            stopped = true;
            Pin::new(&mut connection).graceful_shutdown();
        }
        connection.poll_without_shutdown(cx)
    })
    .await;
    if stopped || served.is_err() {
        return None;
    }
    let parts = connection.into_parts();
    debug_assert!(parts.read_buf.is_empty(), "hyper read past the message");
    Some(parts.io.into_inner())
}

/// Serves the rest of the connection with hyper (HTTP/2 with prior
/// knowledge, HTTP/1.0, chunked request bodies, upgrades). Streams served
/// here are written by hyper, which notices a closed peer itself.
pub async fn serve_rest_of_connection(
    shared: &Shared,
    io: OneMessage,
    remote: RemoteAddr,
    stopping: &CancellationToken,
) {
    let (stream, buffered) = io.into_parts();
    let rewound = Rewind {
        prefix: buffered,
        stream,
    };
    let endpoint = shared.endpoint.clone();
    let local = shared.local_addr.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let endpoint = endpoint.clone();
        let request = poem_request(request, local.clone(), remote.clone());
        async move {
            let response = endpoint.get_response(request).await;
            Ok::<_, Infallible>(hyper::Response::<HyperBody>::from(response))
        }
    });
    let io = TokioIo::new(rewound);
    if io.inner().prefix.starts_with(b"PRI ") {
        serve_http2(shared, io, service, stopping).await;
    } else {
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(shared.settings.header_read_timeout)
            .serve_connection(io, service)
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            _ = &mut connection => return,
            _ = stopping.cancelled() => connection.as_mut().graceful_shutdown(),
        }
        let _ = connection.await;
    }
}

/// Serves an HTTP/2 connection until it ends, the server stops, or no
/// stream has been open for `keep_alive_timeout` (`header_read_timeout`
/// before the first one). hyper has no idle timeout of its own: without
/// this a client that sends the preface and nothing more, or one that
/// keeps an idle connection and answers pings, would hold its descriptor
/// for good.
async fn serve_http2<S>(
    shared: &Shared,
    io: TokioIo<Rewind>,
    service: S,
    stopping: &CancellationToken,
) where
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<HyperBody>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let open = OpenStreams::new();
    let counted = {
        let open = open.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            // Held by the stream until hyper drops its response body.
            let stream = open.enter();
            let response = service.call(request);
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(response.map(|body| CountedBody {
                    body,
                    _stream: stream,
                }))
            }
        })
    };
    let settings = shared.settings;
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .serve_connection(io, counted);
    tokio::pin!(connection);
    tokio::select! {
        _ = &mut connection => return,
        _ = stopping.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
            return;
        }
        _ = open.idle_for(settings.header_read_timeout, settings.keep_alive_timeout) => {}
    }
    // GOAWAY. hyper then waits for the client's answer to a ping (or, during
    // the handshake, for the handshake), which a hostile client never
    // sends: once nothing is open for a moment more, the connection goes.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = &mut connection => {}
        _ = open.idle_for(GOAWAY_GRACE, GOAWAY_GRACE) => {}
    }
}

/// How long an idle HTTP/2 connection told to go away (GOAWAY) is given
/// to finish before it is dropped.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// How many streams of an HTTP/2 connection are open: a stream counts from
/// the moment its request reaches the service until hyper drops its
/// response body (answered in full, reset, or the connection gone).
#[derive(Clone)]
struct OpenStreams(Arc<watch::Sender<StreamCount>>);

#[derive(Debug, Default, Clone, Copy)]
struct StreamCount {
    open: usize,
    /// Whether any stream has been opened yet.
    any: bool,
}

impl OpenStreams {
    fn new() -> Self {
        Self(Arc::new(watch::Sender::new(StreamCount::default())))
    }

    fn enter(&self) -> OpenStream {
        self.0.send_modify(|count| {
            count.open += 1;
            count.any = true;
        });
        OpenStream(self.0.clone())
    }

    /// Resolves once no stream has been open for `before_first` (while
    /// none has ever been) or `between` (after that).
    async fn idle_for(&self, before_first: Duration, between: Duration) {
        let mut changes = self.0.subscribe();
        loop {
            // The sender lives in `self`: this never fails.
            let any = match changes.wait_for(|count| count.open == 0).await {
                Ok(count) => count.any,
                Err(_) => return,
            };
            let limit = if any { between } else { before_first };
            tokio::select! {
                _ = tokio::time::sleep(limit) => return,
                _ = changes.changed() => {}
            }
        }
    }
}

/// One open stream, for as long as it lives.
struct OpenStream(Arc<watch::Sender<StreamCount>>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.send_modify(|count| count.open -= 1);
    }
}

/// A response body that keeps its stream counted while hyper holds it.
struct CountedBody {
    body: HyperBody,
    _stream: OpenStream,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

fn poem_request(
    request: hyper::Request<Incoming>,
    local: LocalAddr,
    remote: RemoteAddr,
) -> Request {
    Request::from((request, local, remote, Scheme::HTTP))
}

/// The socket with bytes already read put back in front.
struct Rewind {
    prefix: Vec<u8>,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let take = this.prefix.len().min(out.remaining());
            out.put_slice(&this.prefix[..take]);
            this.prefix.drain(..take);
            if this.prefix.is_empty() {
                this.prefix = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, out)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE_FIRST: Duration = Duration::from_secs(1);
    const BETWEEN: Duration = Duration::from_secs(75);

    /// Whether `idle_for` has resolved by `after` (time is paused: sleeps
    /// advance it at once).
    async fn idle_by(open: &OpenStreams, after: Duration) -> bool {
        tokio::time::timeout(after, open.idle_for(BEFORE_FIRST, BETWEEN))
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_stream_is_idle_after_the_first_limit() {
        let open = OpenStreams::new();
        assert!(idle_by(&open, BEFORE_FIRST + Duration::from_millis(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_stream_holds_the_connection_and_the_idle_time_starts_when_it_ends() {
        let open = OpenStreams::new();
        let idle = open.idle_for(BEFORE_FIRST, BETWEEN);
        tokio::pin!(idle);
        let stream = open.enter();
        // Open for far longer than either limit: never idle.
        assert!(
            tokio::time::timeout(BETWEEN * 4, &mut idle).await.is_err(),
            "idle while a stream was open"
        );
        drop(stream);
        // After a stream, the longer limit applies.
        assert!(
            tokio::time::timeout(BETWEEN - Duration::from_secs(1), &mut idle)
                .await
                .is_err()
        );
        assert!(
            tokio::time::timeout(Duration::from_secs(2), &mut idle)
                .await
                .is_ok()
        );
    }
}
