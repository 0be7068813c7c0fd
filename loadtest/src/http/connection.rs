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

    /// Sends `request` and returns the response status once the body is read.
    /// On any error the connection is dropped and the next call reconnects.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<u16> {
        let result = self.try_exchange(request).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn try_exchange(&mut self, request: &[u8]) -> Result<u16> {
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
        let mut body = BodyDecoder::new(head.framing);
        let mut finished = body
            .decode_in_place(&mut self.buffer[head.head_len..filled])?
            .finished;
        while !finished {
            let read = stream.read(&mut self.buffer).await?;
            if read == 0 {
                // Until-close bodies end here; others were cut short, but the
                // status line already told us the outcome.
                self.stream = None;
                return Ok(head.status);
            }
            finished = body.decode_in_place(&mut self.buffer[..read])?.finished;
        }
        if !head.keep_alive {
            self.stream = None;
        }
        Ok(head.status)
    }
}
