//! Drives sockets: reads a response head, and runs request/response
//! exchanges on a keep-alive connection for publishing.

use super::body::BodyDecoder;
use super::response::{self, ResponseHead};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until `buffer[..filled]` holds a complete response head. Body bytes
/// that arrived with it stay in `buffer[head.head_len..filled]`.
pub async fn read_head(
    stream: &mut TcpStream,
    buffer: &mut [u8],
    filled: &mut usize,
) -> Result<ResponseHead> {
    loop {
        if let Some(head) = response::parse(&buffer[..*filled])? {
            return Ok(head);
        }
        if *filled == buffer.len() {
            bail!("response head longer than {} bytes", buffer.len());
        }
        let read = stream.read(&mut buffer[*filled..]).await?;
        if read == 0 {
            bail!("connection closed before the response head");
        }
        *filled += read;
    }
}

/// Response head plus body of a publish: 8 KiB holds any sane ack.
const EXCHANGE_BUFFER_BYTES: usize = 8 * 1024;
/// The most of a response body [`KeepAliveConnection::exchange_keeping_body`]
/// keeps: answers read for their content (a Mercure update id) are short.
const KEPT_BODY_MAX_BYTES: usize = 2 * 1024;

/// A response whose body was kept (the first [`KEPT_BODY_MAX_BYTES`] of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// One keep-alive HTTP/1.1 connection that sends a request and reads the
/// whole response before the next (no pipelining, so a server's answer is
/// always matched to its request).
pub struct KeepAliveConnection {
    address: SocketAddr,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl KeepAliveConnection {
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            stream: None,
            buffer: vec![0; EXCHANGE_BUFFER_BYTES],
        }
    }

    /// Drops the socket (e.g. after a timeout left a response half read);
    /// the next exchange dials afresh.
    pub fn reset(&mut self) {
        self.stream = None;
    }

    /// Sends `request` and returns the response once its body is read, with
    /// the content type and the start of the body kept. On any error the
    /// connection is dropped and the next call reconnects.
    pub async fn exchange_keeping_body(&mut self, request: &[u8]) -> Result<Answer> {
        let mut answer = Answer::default();
        answer.status = self.exchange_into(request, Some(&mut answer)).await?;
        Ok(answer)
    }

    async fn exchange_into(&mut self, request: &[u8], answer: Option<&mut Answer>) -> Result<u16> {
        let result = self.try_exchange(request, answer).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn try_exchange(
        &mut self,
        request: &[u8],
        mut answer: Option<&mut Answer>,
    ) -> Result<u16> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.address)
                .await
                .with_context(|| format!("connecting to {}", self.address))?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(request).await?;
        let mut filled = 0;
        let head = read_head(stream, &mut self.buffer, &mut filled).await?;
        if let Some(answer) = answer.as_deref_mut() {
            answer.content_type.clone_from(&head.content_type);
        }
        let mut body = BodyDecoder::new(head.framing);
        let bytes = &mut self.buffer[head.head_len..filled];
        let decoded = body.decode_in_place(bytes)?;
        keep(answer.as_deref_mut(), &bytes[..decoded.data_len]);
        let mut finished = decoded.finished;
        while !finished {
            let read = stream.read(&mut self.buffer).await?;
            if read == 0 {
                // Until-close bodies end here; others were cut short, but the
                // status line already told us the outcome.
                self.stream = None;
                return Ok(head.status);
            }
            let decoded = body.decode_in_place(&mut self.buffer[..read])?;
            keep(answer.as_deref_mut(), &self.buffer[..decoded.data_len]);
            finished = decoded.finished;
        }
        if !head.keep_alive {
            self.stream = None;
        }
        Ok(head.status)
    }
}

/// Appends decoded body bytes to the kept answer, up to its bound.
fn keep(answer: Option<&mut Answer>, bytes: &[u8]) {
    if let Some(answer) = answer {
        let room = KEPT_BODY_MAX_BYTES.saturating_sub(answer.body.len());
        answer
            .body
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// On one accepted connection, answers each request read with the
    /// next response, written in the pieces given.
    async fn serve(responses: Vec<Vec<&'static [u8]>>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0; 4096];
            for pieces in responses {
                let _ = socket.read(&mut buffer).await.unwrap();
                for piece in pieces {
                    socket.write_all(piece).await.unwrap();
                    socket.flush().await.unwrap();
                }
            }
        });
        address
    }

    #[tokio::test]
    async fn keeps_the_body_of_a_length_and_a_chunked_answer() {
        let address = serve(vec![
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                  Content-Length: 14\r\n\r\nurn:ssehub:a-1",
            ],
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                  Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                b"2\r\nde\r\n0\r\n\r\n",
            ],
        ])
        .await;
        let mut connection = KeepAliveConnection::new(address);
        let request = b"POST / HTTP/1.1\r\n\r\n";
        let answer = connection.exchange_keeping_body(request).await.unwrap();
        assert_eq!(
            answer,
            Answer {
                status: 200,
                content_type: Some("text/plain; charset=utf-8".into()),
                body: b"urn:ssehub:a-1".to_vec(),
            }
        );
        let answer = connection.exchange_keeping_body(request).await.unwrap();
        assert_eq!(
            (answer.content_type.as_deref(), &answer.body[..]),
            (Some("text/plain"), &b"abcde"[..]),
            "the same keep-alive connection, the body across reads"
        );
    }

    #[test]
    fn kept_bodies_are_bounded() {
        let mut answer = Answer::default();
        keep(Some(&mut answer), &[b'a'; KEPT_BODY_MAX_BYTES - 1]);
        keep(Some(&mut answer), b"bcd");
        assert_eq!(answer.body.len(), KEPT_BODY_MAX_BYTES);
        assert_eq!(answer.body.last(), Some(&b'b'));
    }
}
