//! Graceful drain, run once a shutdown signal arrives:
//! 1. readiness turns 503, everything else serves on for `drain.delay`;
//! 2. the listener closes and the hub stops accepting; publishes under way
//!    finish (later ones get 503, subscribes are shed with a `retry:` hint);
//! 3. every open stream gets what was accepted, a jittered `retry:` hint and
//!    a clean end, the ends spread evenly over `drain.spread`;
//! 4. at `drain.timeout` (from the signal) whatever is left is ended at once.
//!
//! A second signal exits at once (see [`Signals`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
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
}
