//! A connection whose event stream has been taken over by its source (see
//! [`EventSource::park`](super::EventSource::park)): no task serves it until
//! [`ParkedConnection::resume`]. Its holder writes frames with
//! [`ParkedConnection::send`] (HTTP/1.1 chunks, as the stream writer makes
//! them) and watches the read half with [`ParkedConnection::read`].

use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;

use bytes::{BufMut, BytesMut};

use super::EventSource;
use super::connection::{self, ConnectionContext};
use super::head::MAX_REQUEST_HEAD_BYTES;

/// Most frames in one [`ParkedConnection::send`] (one `iovec` each, plus
/// the chunk's size line and end).
pub const MAX_SEND_FRAMES: usize = 64;
const CRLF: &[u8] = b"\r\n";

/// What [`ParkedConnection::send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Every byte is in the socket.
    All,
    /// The socket is full: what it didn't take is kept, and so is
    /// everything sent from now on, for [`ParkedConnection::resume`].
    Blocked,
    /// The socket failed: the client is gone.
    Failed,
}

/// What [`ParkedConnection::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Nothing,
    /// EOF or an error: the client is gone.
    Closed,
    /// The client sent bytes (a pipelined request); they are kept for
    /// [`ParkedConnection::resume`].
    Bytes,
}

/// See the module documentation. In C order: what each send reads (the
/// socket, whether bytes wait) comes first.
#[repr(C)]
pub struct ParkedConnection {
    socket: std::net::TcpStream,
    /// Chunks the socket hasn't taken yet: written first on resume.
    unsent: BytesMut,
    /// What the client sent while parked.
    received: Vec<u8>,
    /// Held inline, not in the task's box: a parked stream leaves nothing
    /// of its connection's opening on the heap (see `hub::shards`).
    context: ConnectionContext,
}

impl ParkedConnection {
    pub(super) fn new(socket: std::net::TcpStream, context: ConnectionContext) -> Self {
        Self {
            socket,
            unsent: BytesMut::new(),
            received: Vec::new(),
            context,
        }
    }

    /// The socket (non-blocking), to register for readiness.
    pub fn socket(&self) -> &std::net::TcpStream {
        &self.socket
    }

    /// Whether bytes wait to be written (then everything sent is kept).
    pub fn is_blocked(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Writes `frames` (at most [`MAX_SEND_FRAMES`]) as one chunk, in one
    /// vectored write.
    pub fn send(&mut self, frames: &[&[u8]]) -> Sent {
        let len: usize = frames.iter().map(|frame| frame.len()).sum();
        if len == 0 {
            return Sent::All;
        }
        let mut size_line = [0u8; 18];
        let size_len = {
            let mut line = &mut size_line[..];
            let _ = write!(line, "{len:x}\r\n");
            18 - line.len()
        };
        let size_line = &size_line[..size_len];
        if self.is_blocked() {
            self.keep(size_line, frames, 0);
            return Sent::Blocked;
        }
        let mut slices = [IoSlice::new(&[]); MAX_SEND_FRAMES + 2];
        let mut count = 0;
        for part in std::iter::once(size_line)
            .chain(frames.iter().copied())
            .chain(std::iter::once(CRLF))
            .take(MAX_SEND_FRAMES + 2)
        {
            slices[count] = IoSlice::new(part);
            count += 1;
        }
        let total = size_len + len + CRLF.len();
        loop {
            match (&self.socket).write_vectored(&slices[..count]) {
                Ok(written) if written == total => return Sent::All,
                Ok(0) => return Sent::Failed,
                Ok(written) => {
                    self.keep(size_line, frames, written);
                    return Sent::Blocked;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.keep(size_line, frames, 0);
                    return Sent::Blocked;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Sent::Failed,
            }
        }
    }

    /// Keeps the chunk of `frames` minus its first `skip` bytes.
    fn keep(&mut self, size_line: &[u8], frames: &[&[u8]], skip: usize) {
        keep_chunk(&mut self.unsent, size_line, frames, skip);
    }

    /// Reads what the client sent, until the socket has nothing more.
    pub fn read(&mut self) -> Received {
        let mut probe = [0u8; 512];
        loop {
            let room = MAX_REQUEST_HEAD_BYTES.saturating_sub(self.received.len());
            if room == 0 {
                return Received::Bytes;
            }
            let room = room.min(probe.len());
            match (&self.socket).read(&mut probe[..room]) {
                Ok(0) => return Received::Closed,
                Ok(read) => self.received.extend_from_slice(&probe[..read]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return if self.received.is_empty() {
                        Received::Nothing
                    } else {
                        Received::Bytes
                    };
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Received::Closed,
            }
        }
    }

    /// Gives the connection back to a task of its own: what the socket
    /// didn't take is written first, then `source`'s frames; afterwards the
    /// connection serves requests again as any other.
    pub fn resume(self, source: Pin<Box<dyn EventSource>>) {
        let Self {
            socket,
            unsent,
            received,
            context,
        } = self;
        let runtime = context.runtime.clone();
        runtime.spawn(connection::resume(
            Box::new(context),
            socket,
            unsent.freeze(),
            received,
            source,
        ));
    }
}

/// Appends the chunk (`size_line`, `frames`, CRLF) to `unsent`, minus its
/// first `skip` bytes (those the socket took).
fn keep_chunk(unsent: &mut BytesMut, size_line: &[u8], frames: &[&[u8]], mut skip: usize) {
    for part in std::iter::once(size_line)
        .chain(frames.iter().copied())
        .chain(std::iter::once(CRLF))
    {
        if skip >= part.len() {
            skip -= part.len();
        } else {
            unsent.put_slice(&part[skip..]);
            skip = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_chunk_is_kept_from_where_the_socket_stopped() {
        let frames: [&[u8]; 2] = [b"data: a\n\n", b"data: b\n\n"];
        let mut unsent = BytesMut::new();
        keep_chunk(&mut unsent, b"12\r\n", &frames, 0);
        assert_eq!(&unsent[..], b"12\r\ndata: a\n\ndata: b\n\n\r\n");
        unsent.clear();
        keep_chunk(&mut unsent, b"12\r\n", &frames, 7);
        assert_eq!(&unsent[..], b"a: a\n\ndata: b\n\n\r\n");
        // A second chunk after a blocked one follows it whole.
        keep_chunk(&mut unsent, b"3\r\n", &[b"x\n\n"], 0);
        assert!(unsent.ends_with(b"\r\n3\r\nx\n\n\r\n"));
    }
}
