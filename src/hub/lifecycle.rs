//! The hub's side of a graceful drain: what is still accepted, and when each
//! open stream ends. The sequence itself (signal, delay, deadline) is run by
//! the shutdown module; this module only holds the state every task reads.
//!
//! Phases: `Serving` → `Draining` (readiness fails, everything else works) →
//! `Closing` (publishes get 503, subscribes are shed, open streams end one by
//! one, spread over `drain.spread`) → streams cut at `drain.timeout`.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Phase {
    Serving,
    /// Readiness says 503 so load balancers stop routing here; the hub still
    /// accepts publishes and subscribes.
    Draining,
    /// Nothing new is accepted; open streams are being ended.
    Closing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

pub struct Lifecycle {
    phase: AtomicU8,
    /// Publishes under way. Closing waits for them, so that every event
    /// answered 2xx is in the live queues before streams start to end.
    publishes: TaskTracker,
    /// Open streams, so the drain can tell when the last one has ended.
    streams: TaskTracker,
    /// Cancelled when streams should start their staggered close.
    closing: CancellationToken,
    /// Cancelled at the drain deadline: every stream ends now.
    cut: CancellationToken,
    /// How the closes are spread; set once when closing begins.
    plan: Mutex<Option<ClosePlan>>,
    /// Streams that have taken their close slot (assigns evenly spaced slots).
    slots_taken: AtomicUsize,
}

#[derive(Debug, Clone, Copy)]
struct ClosePlan {
    start: Instant,
    spread: Duration,
    streams: usize,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            phase: AtomicU8::new(Phase::Serving as u8),
            publishes: TaskTracker::new(),
            streams: TaskTracker::new(),
            closing: CancellationToken::new(),
            cut: CancellationToken::new(),
            plan: Mutex::new(None),
            slots_taken: AtomicUsize::new(0),
        }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            0 => Phase::Serving,
            1 => Phase::Draining,
            _ => Phase::Closing,
        }
    }

    /// Readiness fails from now on; nothing else changes yet.
    pub fn begin_draining(&self) {
        let _ = self.phase.compare_exchange(
            Phase::Serving as u8,
            Phase::Draining as u8,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Stops accepting publishes and subscribes, then waits for the
    /// publishes under way to finish.
    pub async fn stop_accepting(&self) {
        self.phase.store(Phase::Closing as u8, Ordering::SeqCst);
        self.publishes.close();
        self.publishes.wait().await;
    }

    /// Marks one publish as under way, or `None` when publishes are closed.
    /// Holding the token keeps closing from starting until the publish has
    /// reached the live queues.
    pub fn publish_token(&self) -> Option<TaskTrackerToken> {
        let token = self.publishes.token();
        // Checked after taking the token: `stop_accepting` sets the phase
        // before it waits, so either it sees this token or we see Closing.
        (self.phase() != Phase::Closing).then_some(token)
    }

    /// Registers an open stream; dropped when the stream ends.
    pub fn stream_token(&self) -> TaskTrackerToken {
        self.streams.token()
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Starts the staggered close of `streams` open streams over `spread`.
    pub fn close_streams(&self, spread: Duration) {
        let streams = self.open_streams();
        *self.plan() = Some(ClosePlan {
            start: Instant::now(),
            spread,
            streams,
        });
        self.streams.close();
        self.closing.cancel();
    }

    /// Ends every stream at once (the drain deadline).
    pub fn cut_streams(&self) {
        self.streams.close();
        self.closing.cancel();
        self.cut.cancel();
    }

    /// Resolves when every stream registered with [`Self::stream_token`] has ended.
    pub async fn streams_ended(&self) {
        self.streams.wait().await;
    }

    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    pub fn cut(&self) -> &CancellationToken {
        &self.cut
    }

    /// The instant at which the calling stream should end: slot `k` of `n`
    /// is at `start + spread * k / n`, so ends are spaced evenly.
    pub fn close_slot(&self) -> Instant {
        let Some(plan) = *self.plan() else {
            return Instant::now();
        };
        let slot = self.slots_taken.fetch_add(1, Ordering::Relaxed);
        let streams = plan.streams.max(1);
        let fraction = (slot.min(streams - 1)) as f64 / streams as f64;
        plan.start + plan.spread.mul_f64(fraction)
    }

    fn plan(&self) -> MutexGuard<'_, Option<ClosePlan>> {
        self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }
}
