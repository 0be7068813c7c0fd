//! Parses a response head with `httparse` and decides how the body is framed.

use anyhow::{Result, bail};

/// More headers than any SSE server or publish endpoint sends.
const MAX_RESPONSE_HEADERS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(u64),
    /// HTTP/1.0 style: the body ends when the server closes.
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
    /// The server will take another request on this connection.
    pub keep_alive: bool,
    pub content_type: Option<String>,
    /// Bytes of `buffer` that the head took; the body starts after them.
    pub head_len: usize,
}

/// Parses the head at the start of `buffer`; `None` when it is incomplete.
pub fn parse(buffer: &[u8]) -> Result<Option<ResponseHead>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buffer)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.unwrap_or_default();
    let mut chunked = false;
    let mut length = None;
    let mut keep_alive = response.version == Some(1);
    let mut content_type = None;
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or_default().trim();
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if header.name.eq_ignore_ascii_case("content-length") {
            match value.parse::<u64>() {
                Ok(len) => length = Some(len),
                Err(_) => bail!("bad Content-Length {value:?}"),
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            if value.contains("close") {
                keep_alive = false;
            } else if value.contains("keep-alive") {
                keep_alive = true;
            }
        } else if header.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        }
    }
    // RFC 9112 §6.3: chunked wins over Content-Length; 1xx/204/304 have no body.
    let framing = if chunked {
        Framing::Chunked
    } else if let Some(len) = length {
        Framing::Length(len)
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    Ok(Some(ResponseHead {
        status,
        framing,
        keep_alive,
        content_type,
        head_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_head_asks_for_more() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Ty").unwrap(), None);
    }

    #[test]
    fn chunked_stream_head() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n";
        let head = parse(raw).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.keep_alive);
        assert_eq!(head.content_type.as_deref(), Some("text/event-stream"));
        assert_eq!(&raw[head.head_len..], b"5\r\n");
    }

    #[test]
    fn length_and_connection_close() {
        let head =
            parse(b"HTTP/1.1 202 Accepted\r\nContent-Length: 12\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            (head.status, head.framing, head.keep_alive),
            (202, Framing::Length(12), false)
        );
    }

    #[test]
    fn no_length_means_until_close() {
        let head = parse(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(
            (head.framing, head.keep_alive),
            (Framing::UntilClose, false)
        );
        let head = parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.framing, head.keep_alive), (Framing::Length(0), true));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }
}
