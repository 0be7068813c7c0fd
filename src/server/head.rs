//! Reading one HTTP/1 request head off a connection, within a size limit and
//! a deadline, and parsing it (`httparse`) into the `http` types poem's
//! endpoint takes.
//!
//! Only the head is read here: bytes after it (a body, a pipelined request)
//! stay in the connection's buffer for whoever handles the request.

use std::io;

use poem::http::header::{self, HeaderName, HeaderValue};
use poem::http::{Method, Request, Uri, Version, request};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Largest request head (request line and headers) in bytes: nginx's
/// default `large_client_header_buffers` (4 × 8 KiB), which every proxy in
/// front of ssehub already enforces. A longer head is refused (414 or 431).
pub const MAX_REQUEST_HEAD_BYTES: usize = 32 * 1024;
/// Most header fields in one request: hyper's own default.
pub const MAX_HEADERS: usize = 100;
/// First allocation for a head. A browser's subscribe head with cookies is
/// 0.5–1 KiB, one through nginx about 300 bytes; bigger heads grow the
/// buffer by doubling.
const FIRST_READ_BYTES: usize = 1024;
/// The HTTP/2 connection preface (RFC 9113 §3.4): a client speaking h2c
/// with prior knowledge.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A parsed head the server knows how to take apart.
pub struct RequestHead {
    pub parts: request::Parts,
    /// Bytes of the head in the connection's buffer.
    pub len: usize,
    pub body: BodyFraming,
    /// HTTP/1.1 without `Connection: close`.
    pub keep_alive: bool,
}

/// How the request's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no `Content-Length`, or `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
}

/// What a connection's next bytes are.
// Returned once per request head and unpacked at once: boxing the large
// variant would only add an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Head {
    /// A request this module parsed.
    Request(RequestHead),
    /// Something hyper takes over for the rest of the connection: the
    /// HTTP/2 preface, HTTP/1.0, a chunked body, an upgrade, a
    /// `Content-Length` that is not one number. hyper's own rules (and its
    /// errors) apply to those.
    HandToHyper,
    /// The peer closed the connection, or went quiet for good before
    /// sending anything (not an error: keep-alive connections end so).
    Closed,
}

/// Why a head was refused; answered with a problem document
/// (`http::error`), then the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("the request line is longer than {MAX_REQUEST_HEAD_BYTES} bytes")]
    UriTooLong,
    #[error(
        "the request head is larger than {MAX_REQUEST_HEAD_BYTES} bytes or has more than {MAX_HEADERS} header fields"
    )]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    #[error("the request head did not arrive within limits.header_read_timeout")]
    TimedOut,
}

/// Reads until `buffer` holds a complete head (or the peer closes, or
/// `deadline` passes) and parses it. `buffer` may already hold bytes (a
/// pipelined request); it is allocated only once bytes arrive, so an idle
/// keep-alive connection holds no buffer.
pub async fn read(
    stream: &TcpStream,
    buffer: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Head, HeadError> {
    // Where the search for the end of the head resumes: a head sent byte by
    // byte is scanned once, not once per byte.
    let mut scanned = 0;
    loop {
        if buffer.starts_with(HTTP2_PREFACE) {
            return Ok(Head::HandToHyper);
        }
        if let Some(end) = head_end(buffer, scanned) {
            return parse(&buffer[..end]);
        }
        scanned = buffer.len().saturating_sub(3);
        if buffer.len() >= MAX_REQUEST_HEAD_BYTES {
            return Err(too_large(buffer));
        }
        match tokio::time::timeout_at(deadline, fill(stream, buffer)).await {
            Err(_) if buffer.is_empty() => return Ok(Head::Closed),
            Err(_) => return Err(HeadError::TimedOut),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(Head::Closed),
            Ok(Ok(_)) => {}
        }
    }
}

/// One read into `buffer`'s spare room, growing it up to the head limit.
async fn fill(stream: &TcpStream, buffer: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        if buffer.capacity() == buffer.len() {
            let grow = buffer.len().max(FIRST_READ_BYTES);
            buffer.reserve_exact(grow.min(MAX_REQUEST_HEAD_BYTES - buffer.len()));
        }
        let room = buffer.capacity() - buffer.len();
        let start = buffer.len();
        buffer.resize(start + room, 0);
        match stream.try_read(&mut buffer[start..]) {
            Ok(read) => {
                buffer.truncate(start + read);
                return Ok(read);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => buffer.truncate(start),
            Err(error) => {
                buffer.truncate(start);
                return Err(error);
            }
        }
    }
}

/// Length of the head (through its blank line) if `buffer` holds all of it.
/// RFC 9112 §2.2 lets a server accept a bare LF as a line end; httparse
/// does, so both are looked for.
fn head_end(buffer: &[u8], from: usize) -> Option<usize> {
    let window = &buffer[from..];
    let crlf = memchr::memmem::find(window, b"\r\n\r\n").map(|at| at + 4);
    let lf = memchr::memmem::find(window, b"\n\n").map(|at| at + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(from + a.min(b)),
        (one, other) => one.or(other).map(|at| from + at),
    }
}

fn too_large(buffer: &[u8]) -> HeadError {
    if memchr::memchr(b'\n', buffer).is_none() {
        HeadError::UriTooLong
    } else {
        HeadError::TooLarge
    }
}

fn parse(head: &[u8]) -> Result<Head, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let len = match parsed.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err(HeadError::Malformed("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Ok(Head::HandToHyper),
        Err(error) => return Err(HeadError::Malformed(malformed(error))),
    };
    if parsed.version != Some(1) {
        // HTTP/1.0 has its own keep-alive and no chunked encoding.
        return Ok(Head::HandToHyper);
    }
    let method = parsed
        .method
        .and_then(|method| Method::from_bytes(method.as_bytes()).ok())
        .ok_or(HeadError::Malformed("invalid method"))?;
    let uri: Uri = parsed
        .path
        .and_then(|path| path.parse().ok())
        .ok_or(HeadError::Malformed("invalid request target"))?;
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .version(Version::HTTP_11)
        .body(())
        .map_err(|_| HeadError::Malformed("invalid request line"))?;
    let headers = request.headers_mut();
    headers.reserve(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    let (parts, ()) = request.into_parts();
    if parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts.headers.contains_key(header::UPGRADE)
    {
        return Ok(Head::HandToHyper);
    }
    let Some(body) = body_framing(&parts.headers) else {
        return Ok(Head::HandToHyper);
    };
    let keep_alive = !has_token(&parts.headers, header::CONNECTION, "close");
    Ok(Head::Request(RequestHead {
        parts,
        len,
        body,
        keep_alive,
    }))
}

/// `None` when `Content-Length` is not one well-formed number (repeated
/// with different values, or garbage): hyper refuses those its own way.
fn body_framing(headers: &poem::http::HeaderMap) -> Option<BodyFraming> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let this: u64 = value.to_str().ok()?.trim().parse().ok()?;
        if length.is_some_and(|seen| seen != this) {
            return None;
        }
        length = Some(this);
    }
    Some(match length {
        None | Some(0) => BodyFraming::Empty,
        Some(bytes) => BodyFraming::Length(bytes),
    })
}

/// Whether a comma-separated header (`Connection`) holds `token`.
pub fn has_token(headers: &poem::http::HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(token))
        })
    })
}

fn malformed(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status | httparse::Error::Token => "invalid request line",
        _ => "invalid request head",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &[u8]) -> RequestHead {
        match parse(head).expect("parses") {
            Head::Request(request) => request,
            _ => panic!("not a request head"),
        }
    }

    #[test]
    fn a_subscribe_head_becomes_request_parts() {
        let head = b"GET /v1/events?topic=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-2\r\n\r\nextra";
        let parsed = request(head);
        assert_eq!(parsed.len, head.len() - "extra".len());
        assert_eq!(parsed.parts.method, Method::GET);
        assert_eq!(parsed.parts.uri.query(), Some("topic=a"));
        assert_eq!(parsed.parts.headers["last-event-id"], "1-2");
        assert_eq!(parsed.body, BodyFraming::Empty);
        assert!(parsed.keep_alive);
    }

    #[test]
    fn connection_close_and_lengths_are_read() {
        let parsed = request(
            b"POST /v1/events HTTP/1.1\r\nConnection: keep-alive, close\r\nContent-Length: 12\r\n\r\n",
        );
        assert!(!parsed.keep_alive);
        assert_eq!(parsed.body, BodyFraming::Length(12));
    }

    #[test]
    fn what_hyper_handles_better_goes_to_hyper() {
        for head in [
            &b"GET / HTTP/1.0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        ] {
            assert!(matches!(parse(head), Ok(Head::HandToHyper)), "{head:?}");
        }
    }

    #[test]
    fn broken_heads_are_refused() {
        assert!(matches!(
            parse(b"GET /\x01 HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&many), Err(HeadError::TooLarge)));
    }

    #[test]
    fn the_end_of_a_head_is_found_across_reads() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(head_end(&head[..head.len() - 1], 0), None);
        assert_eq!(head_end(head, head.len() - 5), Some(head.len()));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\n", 0), Some(24));
    }
}
