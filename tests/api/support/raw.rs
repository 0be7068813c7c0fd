//! A raw TCP client for what an HTTP library won't do on purpose: heads
//! split across packets, pipelined requests, bytes after a head, clients
//! that never read, never finish, or vanish.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawClient {
    pub stream: TcpStream,
    /// Everything read so far.
    pub received: Vec<u8>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connect"),
            received: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.expect("send");
    }

    /// Reads until `needle` has been received `times` times in all, or
    /// panics after `wait` with what arrived.
    pub async fn read_until_count(&mut self, needle: &str, times: usize, wait: Duration) -> String {
        let found = tokio::time::timeout(wait, async {
            loop {
                if count(&self.received, needle.as_bytes()) >= times {
                    return true;
                }
                let mut chunk = [0u8; 16 * 1024];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(read) => self.received.extend_from_slice(&chunk[..read]),
                }
            }
        })
        .await
        .unwrap_or(false);
        let text = self.text();
        assert!(
            found,
            "{needle:?} not received {times} time(s); got:\n{text}"
        );
        text
    }

    pub async fn read_until(&mut self, needle: &str, wait: Duration) -> String {
        self.read_until_count(needle, 1, wait).await
    }

    /// Reads until the server closes the connection (or `wait` passes:
    /// then `false`).
    pub async fn read_to_close(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, async {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => self.received.extend_from_slice(&chunk[..read]),
                }
            }
        })
        .await
        .is_ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count()
}

/// `GET` of an event stream, as one request head.
pub fn subscribe_head(query: &str) -> String {
    format!("GET /v1/events?{query} HTTP/1.1\r\nHost: hub\r\nAccept: text/event-stream\r\n\r\n")
}

/// A publish of `{"data": data}` to `topic`, as one request with its body.
pub fn publish_request(topic: &str, data: &str) -> String {
    let body = serde_json::json!({ "data": data }).to_string();
    format!(
        "POST /v1/topics/{topic}/events HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}
