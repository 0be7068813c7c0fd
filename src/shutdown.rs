//! Graceful drain, run once a shutdown signal arrives:
//! 1. readiness turns 503, everything else serves on for `drain.delay`;
//! 2. the listener closes and the hub stops accepting; publishes under way
//!    finish (later ones get 503, subscribes are shed with a `retry:` hint);
//! 3. every open stream gets what was accepted, a jittered `retry:` hint and
//!    a clean end, the ends spread evenly over `drain.spread`;
//! 4. at `drain.timeout` (from the signal) whatever is left is ended at once;
//!
//! then what served is stopped, in order (see [`Running`]). A second signal
//! exits at once (see [`Signals::drain_on_first`]).
//!
//! This module owns the sequence; what it stops is handed to it as tokens
//! and task handles, and the exit as a closure (the exit codes are main's).

use std::future::Future;
use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::setting::InvalidSetting;

/// Readiness turns 503 and the hub keeps serving this long, so load
/// balancers stop routing new clients here before anything closes.
pub const DRAIN_DELAY_DEFAULT: Duration = Duration::from_secs(5);
/// Stream closes are spread over this window so that clients reconnect to
/// the other replicas gradually instead of in one storm.
pub const DRAIN_SPREAD_DEFAULT: Duration = Duration::from_secs(10);
/// Hard deadline from the signal to exit; Kubernetes' grace period must be
/// longer than this plus the preStop delay.
pub const DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// The drain's timing (`drain.*`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DrainConfig {
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    #[serde(with = "humantime_serde")]
    pub spread: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self {
            delay: DRAIN_DELAY_DEFAULT,
            spread: DRAIN_SPREAD_DEFAULT,
            timeout: DRAIN_TIMEOUT_DEFAULT,
        }
    }
}

impl DrainConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.timeout < self.delay {
            return Err(InvalidSetting::new(
                "drain.timeout",
                format!(
                    "must be at least drain.delay ({})",
                    humantime::format_duration(self.delay)
                ),
            ));
        }
        Ok(())
    }
}

/// After the deadline, streams still get this long to write their last
/// frames before the connections are dropped.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// What happened to the streams, for the log and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Streams open when the drain began.
    pub streams_at_signal: usize,
    /// Streams that ended in their spread slot.
    pub streams_closed: usize,
    /// Streams ended at the deadline.
    pub streams_cut: usize,
}

/// What serves until the drain, stopped after it in this order: the server
/// (its connections finish what they are doing, then close), the
/// backplane's background task (only now: streams got every event accepted
/// before the drain, and a Redis backplane delivers them through it; it is
/// awaited), the tasks that only need aborting (auth's JWKS refresh); then
/// the server task is awaited.
pub struct Running {
    /// Closes the listener, at step 2 of the drain.
    pub stop_accepting: CancellationToken,
    pub stop_server: CancellationToken,
    pub server: JoinHandle<()>,
    pub stop_backplane: CancellationToken,
    pub backplane: JoinHandle<()>,
    pub background: Vec<JoinHandle<()>>,
}

/// Waits for `signal`, drains `hub`, then stops what runs, in order;
/// returns once every connection is closed.
pub async fn drain_then_stop(
    hub: &Hub,
    config: &DrainConfig,
    signal: impl Future<Output = ()>,
    running: Running,
) -> io::Result<DrainReport> {
    signal.await;
    let report = drain(hub, config, &running.stop_accepting).await;
    stop(running).await?;
    tracing::info!(
        closed = report.streams_closed,
        cut = report.streams_cut,
        "drain complete"
    );
    Ok(report)
}

/// The stop order after the drain (see [`Running`]).
async fn stop(running: Running) -> io::Result<()> {
    let Running {
        stop_server,
        server,
        stop_backplane,
        backplane,
        background,
        ..
    } = running;
    stop_server.cancel();
    stop_backplane.cancel();
    if let Err(error) = backplane.await {
        tracing::error!(%error, "the backplane task failed");
    }
    for task in background {
        task.abort();
    }
    server
        .await
        .map_err(|error| io::Error::other(format!("server task failed: {error}")))
}

pub async fn drain(
    hub: &Hub,
    config: &DrainConfig,
    stop_accepting: &CancellationToken,
) -> DrainReport {
    let lifecycle = hub.lifecycle();
    let deadline = Instant::now() + config.timeout;
    let streams_at_signal = lifecycle.open_streams();
    lifecycle.begin_draining();
    tracing::info!(
        open_streams = streams_at_signal,
        delay = %humantime::format_duration(config.delay),
        "drain 1/4: readiness now fails; still serving while load balancers catch up"
    );
    tokio::time::sleep_until((Instant::now() + config.delay).min(deadline)).await;

    stop_accepting.cancel();
    if timeout_at(deadline, lifecycle.stop_accepting())
        .await
        .is_err()
    {
        tracing::warn!("drain: publishes still under way at the deadline");
    }
    let streams = lifecycle.open_streams();
    tracing::info!(
        open_streams = streams,
        spread = %humantime::format_duration(config.spread),
        "drain 2/4: no new connections or publishes; closing streams"
    );
    lifecycle.close_streams(config.spread);

    let streams_cut = match timeout_at(deadline, lifecycle.streams_ended()).await {
        Ok(()) => {
            tracing::info!(closed = streams, "drain 3/4: every stream closed");
            0
        }
        Err(_) => {
            let left = lifecycle.open_streams();
            tracing::warn!(
                cut = left,
                "drain 3/4: drain.timeout reached; ending the remaining streams now"
            );
            lifecycle.cut_streams();
            let _ = tokio::time::timeout(CUT_GRACE, lifecycle.streams_ended()).await;
            left
        }
    };
    tracing::info!("drain 4/4: closing connections");
    DrainReport {
        streams_at_signal,
        streams_closed: streams.saturating_sub(streams_cut),
        streams_cut,
    }
}

/// What the log says at the first signal: at a terminal (SIGINT is Ctrl-C)
/// a person is waiting, and should know the drain may take
/// `drain.timeout` and that a second Ctrl-C cuts it short.
fn first_signal_message(signal: &str) -> &'static str {
    if signal == "SIGINT" {
        "Ctrl-C: draining open streams (up to drain.timeout); press Ctrl-C again to exit at once"
    } else {
        "shutdown signal: draining (send it again to exit at once)"
    }
}

/// SIGTERM and SIGINT. The first starts the drain; a second one means the
/// operator (or kubelet) wants out now.
pub struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installed before serving so that a signal is never missed.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next signal and returns its name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    /// The drain's trigger: resolves at the first signal. The signals are
    /// listened to from now on, in a task: a second one means the operator
    /// (or kubelet) wants out now, and `exit_now` is called at once, the
    /// drain unfinished (main hands it its exit and code).
    pub fn drain_on_first(
        mut self,
        exit_now: impl FnOnce() + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let first = self.next().await;
            tracing::info!(signal = first, "{}", first_signal_message(first));
            let _ = first_tx.send(());
            let second = self.next().await;
            tracing::warn!(
                signal = second,
                "second signal: exiting now without finishing the drain"
            );
            exit_now();
        });
        async move {
            let _ = first_rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Pushes its name when dropped: an aborted task drops its future.
    struct DropNote(Arc<Mutex<Vec<&'static str>>>, &'static str);

    impl Drop for DropNote {
        fn drop(&mut self) {
            self.0.lock().unwrap().push(self.1);
        }
    }

    #[tokio::test]
    async fn after_the_drain_the_backplane_task_ends_before_background_tasks_are_aborted() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let stop_server = CancellationToken::new();
        let stop_backplane = CancellationToken::new();
        let server = tokio::spawn({
            let (stop, order) = (stop_server.clone(), order.clone());
            async move {
                stop.cancelled().await;
                order.lock().unwrap().push("server");
            }
        });
        let backplane = tokio::spawn({
            let (stop, order) = (stop_backplane.clone(), order.clone());
            async move {
                stop.cancelled().await;
                // Still running while the server stops: it delivers the
                // last events; it must have ended before anything is aborted.
                tokio::task::yield_now().await;
                order.lock().unwrap().push("backplane");
            }
        });
        let background = tokio::spawn({
            let note = DropNote(order.clone(), "background aborted");
            async move {
                let _note = note;
                std::future::pending::<()>().await;
            }
        });
        let running = Running {
            stop_accepting: CancellationToken::new(),
            stop_server: stop_server.clone(),
            server,
            stop_backplane: stop_backplane.clone(),
            backplane,
            background: vec![background],
        };
        tokio::time::timeout(Duration::from_secs(5), stop(running))
            .await
            .expect("stops")
            .expect("the server task ends cleanly");
        assert!(stop_server.is_cancelled() && stop_backplane.is_cancelled());
        // An abort drops the task's future when the runtime next runs it.
        tokio::time::timeout(Duration::from_secs(5), async {
            while order.lock().unwrap().len() < 3 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the background task is aborted");
        let order = order.lock().unwrap().clone();
        let at = |name| order.iter().position(|seen| *seen == name);
        assert!(at("server").is_some(), "{order:?}");
        assert!(at("backplane").is_some(), "{order:?}");
        assert!(at("backplane") < at("background aborted"), "{order:?}");
    }

    #[tokio::test]
    async fn the_first_signal_starts_the_drain_and_the_second_exits() {
        let signals = Signals::install().unwrap();
        let (exit_tx, mut exit_rx) = tokio::sync::oneshot::channel();
        let first = signals.drain_on_first(move || {
            let _ = exit_tx.send(());
        });
        let raise = || {
            // SAFETY: raising a signal this process handles (installed above).
            assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        };
        raise();
        tokio::time::timeout(Duration::from_secs(5), first)
            .await
            .expect("the first signal starts the drain");
        assert!(exit_rx.try_recv().is_err(), "one signal only drains");
        raise();
        tokio::time::timeout(Duration::from_secs(5), exit_rx)
            .await
            .expect("the second signal exits")
            .unwrap();
    }
}
