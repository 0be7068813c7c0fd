//! The listening socket: bound from config or inherited from the platform
//! (`LISTEN_FDS`, systemd-style socket activation), and an acceptor that
//! stops accepting when the drain says so.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use std::time::Instant;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// Pending connections the kernel queues for us. A reconnect wave after a
/// deploy brings thousands of clients at once; the default of 128 would
/// drop SYNs and add seconds of client backoff.
const LISTEN_BACKLOG: u32 = 4096;

/// Pause after a failed accept (e.g. out of file descriptors) before trying
/// again, instead of spinning on the error: 20 tries a second cost nothing
/// and pick up a freed descriptor within a blink.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// At most one log line per this while accepting keeps failing.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// File descriptors kept free for everything but client connections: the
/// listener, logs, outgoing connections (exporters, a backplane).
const RESERVED_FDS: u64 = 64;

/// Raises the soft open-file limit to the hard limit (every stream holds a
/// socket; the soft default of 1024 on many systems would cap the hub far
/// below `limits.max_subscribers`) and warns when the limit is still below
/// what the configured subscriber limit needs.
pub fn raise_open_file_limit(max_subscribers: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let needed = max_subscribers as u64 + RESERVED_FDS;
            if limit < needed {
                tracing::warn!(
                    open_file_limit = limit,
                    needed,
                    "the open-file limit is below limits.max_subscribers + {RESERVED_FDS}: \
                     subscribers beyond it will be refused by the kernel, not shed by the hub; \
                     lower limits.max_subscribers or raise the hard limit (ulimit -Hn)"
                );
            } else {
                tracing::debug!(open_file_limit = limit, "open-file limit");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

/// A socket passed by the platform (`LISTEN_FDS`), or a new one bound to `addr`.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let mut inherited = listenfd::ListenFd::from_env();
    if let Some(listener) = inherited.take_tcp_listener(0)? {
        listener.set_nonblocking(true)?;
        tracing::info!(addr = %listener.local_addr()?, "using the listening socket passed in LISTEN_FDS");
        return Ok(listener);
    }
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted hub must be able to bind while old connections linger in
    // TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)?.into_std()
}

/// Accepts connections until `stop` is cancelled, then closes the listening
/// socket (new connections are refused) while open ones go on.
pub struct DrainingAcceptor {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    stop: CancellationToken,
    failures: AcceptFailures,
}

impl DrainingAcceptor {
    pub fn new(listener: std::net::TcpListener, stop: CancellationToken) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener: Some(TcpListener::from_std(listener)?),
            local_addr,
            stop,
            failures: AcceptFailures::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Cancelled when the listener closes (the drain's second step).
    pub fn closing(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// The next connection; never returns once `stop` is cancelled.
    ///
    /// When accepting fails (out of file descriptors: the connection stays
    /// in the kernel's queue) it pauses before trying again, so the loop
    /// never spins, and logs once per [`ACCEPT_ERROR_LOG_INTERVAL`]; the
    /// connections already open are served meanwhile.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        while let Some(listener) = &self.listener {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        self.failures.recovered();
                        // Events are small and latency matters: don't let
                        // Nagle hold a frame back waiting for an ACK.
                        let _ = stream.set_nodelay(true);
                        return (stream, remote);
                    }
                    Err(error) => {
                        self.failures.failed(&error);
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                },
                _ = self.stop.cancelled() => {
                    self.listener = None;
                    tracing::info!("stopped accepting connections");
                }
            }
        }
        std::future::pending().await
    }
}

/// Failed accepts are logged once per interval, with how many there were,
/// instead of 20 lines a second while the process is out of descriptors.
/// A process that hovers at its limit flaps between failing and accepting;
/// both lines stay within one per interval then.
#[derive(Default)]
struct AcceptFailures {
    last_logged: Option<Instant>,
    since_logged: u64,
    /// A failure was logged and no recovery since.
    announced: bool,
}

impl AcceptFailures {
    fn failed(&mut self, error: &io::Error) {
        self.since_logged += 1;
        let due = self
            .last_logged
            .is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_INTERVAL);
        if due {
            tracing::warn!(
                %error,
                failed_accepts = self.since_logged,
                "accept failed; open connections are still served, new ones wait in the \
                 listen queue (retrying every {} ms, logged at most every {} s)",
                ACCEPT_ERROR_PAUSE.as_millis(),
                ACCEPT_ERROR_LOG_INTERVAL.as_secs()
            );
            self.last_logged = Some(Instant::now());
            self.since_logged = 0;
            self.announced = true;
        }
    }

    fn recovered(&mut self) {
        if std::mem::take(&mut self.announced) {
            tracing::info!("accepting connections again");
        }
    }
}
