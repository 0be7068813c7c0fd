//! The stream writer: once the endpoint has answered a subscribe with an
//! event stream, this writes the response head and the stream's frames to
//! the socket itself, HTTP/1.1 chunked, exactly as hyper would have, with
//! no HTTP machinery (buffers, dispatcher) left behind per stream.
//!
//! - Everything the stream has ready goes out in one vectored write: the
//!   frames waiting (up to [`MAX_WRITE_BYTES`]) become one chunk, so a
//!   subscriber that fell behind catches up in one syscall.
//! - With `stream.coalesce` set, a stream that wrote less than that long
//!   ago holds what arrives until the window has passed, then writes it
//!   all at once: a busy stream makes one write per window instead of one
//!   per event (the syscall and the client's wake-up are most of a
//!   delivery's cost). While it holds it doesn't look at its queue, so
//!   events published meanwhile don't wake it either. A stream quiet for
//!   longer than the window writes at once: only busy streams pay the
//!   latency.
//! - The read half is watched while the stream runs: EOF or an error means
//!   the client is gone, and the stream (its slot, its queues) ends at once,
//!   not at the next write. Bytes the client sends meanwhile (a pipelined
//!   request) are kept for after the stream.
//! - A socket that accepts nothing for `stream.write_timeout` ends the
//!   stream: a subscriber that stopped reading can't hold its slot forever.
//!   Until then the hub holds at most one write's worth of frames for it
//!   (invariant: a slow subscriber never slows anyone else — it only falls
//!   behind on its own queue cursor).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use poem::http::{HeaderMap, StatusCode, header};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::EventSource;
use super::head::MAX_REQUEST_HEAD_BYTES;

/// Most bytes of frames gathered into one write; the hub's own batches are
/// as large, so one of them is never split.
pub const MAX_WRITE_BYTES: usize = 64 * 1024;
/// Most frames gathered into one write (each is one `iovec`; Linux takes
/// 1024 per call).
const MAX_WRITE_FRAMES: usize = 64;
/// Bytes read per look at the read half. Usually the read finds nothing
/// or EOF; a pipelined request is read in pieces this size.
const READ_PROBE_BYTES: usize = 512;
/// Ends the chunked body (RFC 9112 §7.1).
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
const CRLF: &[u8] = b"\r\n";

/// How a stream's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The stream finished and its last chunk was written: the connection
    /// may carry another request.
    Finished,
    /// EOF or an error on the socket.
    PeerGone,
    /// The socket accepted nothing for `stream.write_timeout`.
    WriteTimedOut,
    /// The body failed; the client sees the connection close without the
    /// last chunk, as hyper does.
    BodyFailed,
    /// Everything is written, nothing is ready, and the source wants the
    /// connection (see [`EventSource::park`]).
    Park,
}

/// The head of a streaming response, byte for byte what hyper writes for
/// it: status line, the response's headers in order, `connection: close`
/// when the connection ends after it, `transfer-encoding`, `date`.
pub fn response_head(status: StatusCode, headers: &HeaderMap, keep_alive: bool) -> Bytes {
    let mut head = BytesMut::with_capacity(256);
    head.put_slice(b"HTTP/1.1 ");
    head.put_slice(status.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.put_slice(CRLF);
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        head.put_slice(name.as_str().as_bytes());
        head.put_slice(b": ");
        head.put_slice(value.as_bytes());
        head.put_slice(CRLF);
    }
    if !keep_alive && !super::head::has_token(headers, header::CONNECTION, "close") {
        head.put_slice(b"connection: close\r\n");
    }
    head.put_slice(b"transfer-encoding: chunked\r\n");
    if !headers.contains_key(header::DATE) {
        head.put_slice(b"date: ");
        head.put_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        head.put_slice(CRLF);
    }
    head.put_slice(CRLF);
    head.freeze()
}

/// Writes `head`, then the source's frames as chunks, until the source
/// ends (then `source` is `None`), the peer goes away, the socket stalls
/// for `write_timeout`, or the source, idle, wants the connection. `after`
/// collects bytes the client sends meanwhile.
///
/// Not an `async fn`: that would keep its arguments beside the writer that
/// took them, for the life of the stream.
pub fn write_stream<'a>(
    stream: &'a TcpStream,
    head: Bytes,
    source: &'a mut Option<Pin<Box<dyn EventSource>>>,
    after: &'a mut Vec<u8>,
    timing: WriteTiming,
) -> impl Future<Output = StreamEnd> + 'a {
    let mut writer = Writer {
        stream,
        source,
        body_done: false,
        outgoing: Outgoing {
            head: Some(head),
            ..Outgoing::default()
        },
        after,
        watching_reads: true,
        timing,
        quiet_until: None,
        timer: None,
        armed: Armed::No,
    };
    std::future::poll_fn(move |cx| writer.poll(cx))
}

struct Writer<'a> {
    stream: &'a TcpStream,
    /// `None` once it has ended.
    source: &'a mut Option<Pin<Box<dyn EventSource>>>,
    body_done: bool,
    outgoing: Outgoing,
    after: &'a mut Vec<u8>,
    /// Off once `after` is full: then only a failed write notices a
    /// vanished client.
    watching_reads: bool,
    timing: WriteTiming,
    /// With `coalesce`: until when frames that arrive are held, not written.
    quiet_until: Option<Instant>,
    /// The one timer of the stream, allocated when first needed and reset
    /// from then on: a stall and a hold never overlap (a hold waits before
    /// a write begins, a stall while one is under way).
    timer: Option<Pin<Box<Sleep>>>,
    armed: Armed,
}

/// The stream's time limits: `stream.write_timeout` and `stream.coalesce`.
#[derive(Debug, Clone, Copy)]
pub struct WriteTiming {
    /// `None` waits for a stalled socket forever.
    pub write_timeout: Option<Duration>,
    /// `None` writes every frame as soon as the socket takes it.
    pub coalesce: Option<Duration>,
}

/// What the stream's timer is set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    No,
    /// The socket has accepted nothing since the timer was set.
    Stall,
    /// Frames wait for the coalescing window to pass.
    Hold,
}

impl Writer<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<StreamEnd> {
        loop {
            if let Some(end) = self.watch_reads(cx) {
                return Poll::Ready(end);
            }
            if self.armed == Armed::Hold {
                if self.poll_timer(cx).is_pending() {
                    return Poll::Pending;
                }
                self.armed = Armed::No;
            }
            // Frames join the next write until it has begun: the response
            // head goes out with the stream's first frames, a held write
            // with everything that came during the window.
            let gathering = self.outgoing.written == 0 && !self.outgoing.last_chunk;
            if gathering
                && !self.body_done
                && let Err(end) = self.gather(cx)
            {
                return Poll::Ready(end);
            }
            if self.outgoing.is_empty() {
                return if self.body_done {
                    Poll::Ready(StreamEnd::Finished)
                } else if self.may_park() {
                    Poll::Ready(StreamEnd::Park)
                } else {
                    Poll::Pending
                };
            }
            if self.hold(cx) {
                return Poll::Pending;
            }
            match self.write(cx) {
                Poll::Ready(Ok(())) => {
                    self.armed = Armed::No;
                    self.quiet_until = self.timing.coalesce.map(|window| Instant::now() + window);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(StreamEnd::PeerGone),
                Poll::Pending => return self.poll_stall(cx),
            }
        }
    }

    /// Reads whatever the client sent: EOF or an error ends the stream.
    fn watch_reads(&mut self, cx: &mut Context<'_>) -> Option<StreamEnd> {
        while self.watching_reads {
            match self.stream.poll_read_ready(cx) {
                Poll::Pending => return None,
                Poll::Ready(Err(_)) => return Some(StreamEnd::PeerGone),
                Poll::Ready(Ok(())) => {}
            }
            let room = (MAX_REQUEST_HEAD_BYTES - self.after.len()).min(READ_PROBE_BYTES);
            if room == 0 {
                self.watching_reads = false;
                return None;
            }
            let mut probe = [0u8; READ_PROBE_BYTES];
            match self.stream.try_read(&mut probe[..room]) {
                Ok(0) => return Some(StreamEnd::PeerGone),
                Ok(read) => self.after.extend_from_slice(&probe[..read]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Some(StreamEnd::PeerGone),
            }
        }
        None
    }

    /// Whether the idle stream goes to its source: nothing held for
    /// later (a coalescing window, bytes the client sent) and the source
    /// wants it.
    fn may_park(&self) -> bool {
        self.armed == Armed::No
            && self.after.is_empty()
            && self.quiet_until.is_none()
            && self
                .source
                .as_ref()
                .is_some_and(|source| source.wants_connection())
    }

    /// Takes every frame the source has ready, up to one write's worth.
    fn gather(&mut self, cx: &mut Context<'_>) -> Result<(), StreamEnd> {
        let outgoing = &mut self.outgoing;
        let Some(source) = self.source.as_mut() else {
            return Err(StreamEnd::BodyFailed);
        };
        while outgoing.frame_count() < MAX_WRITE_FRAMES && outgoing.frames_len < MAX_WRITE_BYTES {
            match source.as_mut().poll_frame(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    self.body_done = true;
                    outgoing.last_chunk = true;
                    break;
                }
                Poll::Ready(Some(frame)) => {
                    if !frame.is_empty() {
                        outgoing.push(frame);
                    }
                }
            }
        }
        if self.body_done {
            // Ended: the source (a subscription's seat and queues) goes now.
            *self.source = None;
        }
        outgoing.seal();
        Ok(())
    }

    /// Writes until `outgoing` is empty (`Ready(Ok)`) or the socket is full.
    fn write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.outgoing.written < self.outgoing.total_len() {
            if self.stream.poll_write_ready(cx)?.is_pending() {
                return Poll::Pending;
            }
            let mut slices = [IoSlice::new(&[]); MAX_WRITE_FRAMES + 4];
            let count = self.outgoing.slices(&mut slices);
            match self.stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(written) => {
                    // Progress: the socket is slow, not stalled.
                    if self.armed == Armed::Stall {
                        self.armed = Armed::No;
                    }
                    self.outgoing.advance(written);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        self.outgoing.clear();
        Poll::Ready(Ok(()))
    }

    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<StreamEnd> {
        let Some(limit) = self.timing.write_timeout else {
            return Poll::Pending;
        };
        if self.armed != Armed::Stall {
            self.arm(Armed::Stall, Instant::now() + limit);
        }
        match self.poll_timer(cx) {
            Poll::Ready(()) => Poll::Ready(StreamEnd::WriteTimedOut),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the frames gathered wait for the coalescing window (then
    /// the timer is set and polled). Only frames wait: a write that
    /// carries the last chunk (the stream is ending) or has begun already
    /// goes on at once; the first write (the head) has no window before it.
    fn hold(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(until) = self.quiet_until else {
            return false;
        };
        if self.outgoing.written > 0 || self.outgoing.last_chunk || Instant::now() >= until {
            return false;
        }
        self.quiet_until = None;
        self.arm(Armed::Hold, until);
        if self.poll_timer(cx).is_ready() {
            self.armed = Armed::No;
            return false;
        }
        true
    }

    fn arm(&mut self, armed: Armed, deadline: Instant) {
        self.armed = armed;
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.timer {
            Some(timer) => timer.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

/// One write's worth: the response head (first write only), then the
/// frames as one chunk, then the last chunk when the body has ended.
#[derive(Default)]
struct Outgoing {
    head: Option<Bytes>,
    /// `{size:x}\r\n` for the frames; at most 16 hex digits.
    chunk_size: [u8; 18],
    chunk_size_len: usize,
    /// The frames of the chunk: the first inline (a stream's hub hands it
    /// one chunk per wake-up, so usually that is all), the rest in `more`,
    /// which is allocated only when a write gathers several.
    first: Option<Bytes>,
    more: Vec<Bytes>,
    frames_len: usize,
    last_chunk: bool,
    /// Bytes of the above already written.
    written: usize,
}

impl Outgoing {
    fn is_empty(&self) -> bool {
        self.head.is_none() && !self.has_frames() && !self.last_chunk
    }

    fn push(&mut self, frame: Bytes) {
        self.frames_len += frame.len();
        if self.first.is_none() {
            self.first = Some(frame);
        } else {
            self.more.push(frame);
        }
    }

    fn has_frames(&self) -> bool {
        self.first.is_some()
    }

    fn frame_count(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    /// Bytes of this write, written or not.
    fn total_len(&self) -> usize {
        let head = self.head.as_ref().map_or(0, Bytes::len);
        let chunk = if !self.has_frames() {
            0
        } else {
            self.chunk_size_len + self.frames_len + CRLF.len()
        };
        let last = if self.last_chunk { LAST_CHUNK.len() } else { 0 };
        head + chunk + last
    }

    /// Writes the chunk size line once the frames are gathered.
    fn seal(&mut self) {
        if !self.has_frames() {
            return;
        }
        let capacity = self.chunk_size.len();
        let mut line = &mut self.chunk_size[..];
        let _ = io::Write::write_fmt(&mut line, format_args!("{:x}\r\n", self.frames_len));
        let left = line.len();
        self.chunk_size_len = capacity - left;
    }

    /// Every part in order, as slices, minus what is written already.
    fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut skip = self.written;
        let mut count = 0;
        let mut push = |part: &'a [u8]| {
            if skip >= part.len() {
                skip -= part.len();
            } else {
                out[count] = IoSlice::new(&part[skip..]);
                skip = 0;
                count += 1;
            }
        };
        if let Some(head) = &self.head {
            push(head);
        }
        if let Some(first) = &self.first {
            push(&self.chunk_size[..self.chunk_size_len]);
            push(first);
            for frame in &self.more {
                push(frame);
            }
            push(CRLF);
        }
        if self.last_chunk {
            push(LAST_CHUNK);
        }
        count
    }

    fn advance(&mut self, written: usize) {
        self.written += written;
    }

    /// Everything written: the frames are released (the hub's buffers are
    /// shared with every other subscriber), the vector kept for the next
    /// write.
    fn clear(&mut self) {
        self.head = None;
        self.first = None;
        self.more.clear();
        self.frames_len = 0;
        self.last_chunk = false;
        self.written = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concat(outgoing: &Outgoing) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_WRITE_FRAMES + 4];
        let count = outgoing.slices(&mut slices);
        slices[..count].iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn waiting_frames_go_out_as_one_chunk_after_the_head() {
        let mut outgoing = Outgoing {
            head: Some(Bytes::from_static(b"HEAD\r\n\r\n")),
            ..Outgoing::default()
        };
        for frame in ["data: a\n\n", "data: bb\n\n"] {
            outgoing.push(Bytes::from_static(frame.as_bytes()));
        }
        outgoing.last_chunk = true;
        outgoing.seal();
        assert_eq!(
            concat(&outgoing),
            b"HEAD\r\n\r\n13\r\ndata: a\n\ndata: bb\n\n\r\n0\r\n\r\n"
        );
        outgoing.advance(9);
        assert_eq!(
            concat(&outgoing),
            b"3\r\ndata: a\n\ndata: bb\n\n\r\n0\r\n\r\n"
        );
        outgoing.clear();
        assert!(outgoing.is_empty());
    }

    #[test]
    fn the_head_reads_like_hypers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        headers.insert(header::CACHE_CONTROL, "no-cache".parse().unwrap());
        let head = response_head(StatusCode::OK, &headers, false);
        let text = std::str::from_utf8(&head).unwrap();
        assert!(
            text.starts_with(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                 connection: close\r\ntransfer-encoding: chunked\r\ndate: "
            ),
            "{text}"
        );
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
    }
}
