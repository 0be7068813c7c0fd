//! The in-memory backplane: one process, ids from a counter, history in a
//! bounded queue per topic.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::{self, BoxFuture};
use tokio_util::sync::CancellationToken;

use super::{Backplane, BackplaneError, FanOut, History, PageLimit};
use crate::hub::{Event, EventDraft, EventId, TopicName};

/// Longest pause between two sweeps of expired history.
const EXPIRY_SWEEP_MAX: Duration = Duration::from_secs(30);
/// Shortest pause between two sweeps, for very short `history.ttl`s.
const EXPIRY_SWEEP_MIN: Duration = Duration::from_millis(10);

/// History bounds, from `history.size` and `history.ttl`.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    pub size: usize,
    pub ttl: Duration,
}

pub struct MemoryBackplane {
    /// Random per process: ids from before a restart have another epoch.
    epoch: u64,
    limits: HistoryLimits,
    /// The local fan-out, called under `state`'s lock so that events reach
    /// the live queues in id order across topics (multi-topic resume relies
    /// on it). It never blocks, so the lock is held for microseconds.
    fan_out: Arc<dyn FanOut>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_seq: u64,
    topics: HashMap<TopicName, TopicHistory>,
    /// Highest sequence number ever evicted from a topic whose history was
    /// later dropped entirely; a resume on such a topic from before this
    /// point may have missed events.
    forgotten_through: u64,
}

#[derive(Default)]
struct TopicHistory {
    /// Each event with the monotonic instant it was accepted at (expiry
    /// follows this process's clock, not the wall clock the event carries).
    events: VecDeque<(Instant, Arc<Event>)>,
    /// Sequence number of the newest event evicted from this topic (0: none).
    evicted_through: u64,
}

impl MemoryBackplane {
    pub fn new(limits: HistoryLimits, fan_out: Arc<dyn FanOut>) -> Self {
        // The epoch only has to differ between runs; the clock and a random
        // part make a collision practically impossible, and keeping it to
        // 32 bits keeps ids short on the wire.
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // Never 0, which names the position of a backplane not yet connected.
        let epoch = ((clock ^ fastrand::u64(..)) & 0xffff_ffff).max(1);
        // Nothing came before: the live queues start at the epoch's origin.
        fan_out.resync(EventId::new(epoch, 0));
        Self {
            epoch,
            limits,
            fan_out,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent (every
        // mutation is a push or pop), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops expired events everywhere and forgets topics left empty, so idle
    /// topics don't hold memory. Called periodically by [`Backplane::run`].
    pub fn expire(&self, now: Instant) {
        let mut state = self.state();
        let state = &mut *state;
        let mut forgotten = state.forgotten_through;
        state.topics.retain(|_, topic| {
            topic.evict(self.limits, now);
            if topic.events.is_empty() {
                forgotten = forgotten.max(topic.evicted_through);
                false
            } else {
                true
            }
        });
        state.forgotten_through = forgotten;
    }

    /// Topics with retained history (for tests and metrics).
    pub fn topic_count(&self) -> usize {
        self.state().topics.len()
    }
}

impl TopicHistory {
    fn evict(&mut self, limits: HistoryLimits, now: Instant) {
        while let Some((accepted_at, oldest)) = self.events.front() {
            let too_many = self.events.len() > limits.size;
            let too_old = now.saturating_duration_since(*accepted_at) > limits.ttl;
            if !(too_many || too_old) {
                break;
            }
            self.evicted_through = oldest.id.seq;
            self.events.pop_front();
        }
    }
}

/// The first page of `held` (shared, not copied), and where the next one
/// starts if anything is left.
fn page<'a>(
    mut held: impl ExactSizeIterator<Item = &'a (Instant, Arc<Event>)>,
    limit: PageLimit,
) -> (Vec<Arc<Event>>, Option<u64>) {
    let mut events = Vec::with_capacity(held.len().min(limit.events));
    let mut bytes = 0;
    while !limit.is_full(events.len(), bytes) {
        let Some((_, event)) = held.next() else {
            return (events, None);
        };
        bytes += event.frame.len();
        events.push(event.clone());
    }
    let next_after = (held.len() > 0).then(|| events.last().map_or(0, |e| e.id.seq));
    (events, next_after)
}

impl Backplane for MemoryBackplane {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn last_id(&self) -> BoxFuture<'_, Result<EventId, BackplaneError>> {
        let last = EventId::new(self.epoch, self.state().last_seq);
        Box::pin(future::ready(Ok(last)))
    }

    fn publish(
        &self,
        drafts: Vec<EventDraft>,
    ) -> BoxFuture<'_, Result<Vec<Arc<Event>>, BackplaneError>> {
        let now = Instant::now();
        let wall_clock = SystemTime::now();
        let mut state = self.state();
        let mut accepted = Vec::with_capacity(drafts.len());
        for draft in drafts {
            state.last_seq += 1;
            let event = Event::accept(draft, EventId::new(self.epoch, state.last_seq), wall_clock);
            let forgotten_through = state.forgotten_through;
            // A topic created anew may have had events before it was
            // forgotten: assume the worst about those.
            let topic = state
                .topics
                .entry(event.topic.clone())
                .or_insert_with(|| TopicHistory {
                    events: VecDeque::new(),
                    evicted_through: forgotten_through,
                });
            topic.events.push_back((now, event.clone()));
            topic.evict(self.limits, now);
            accepted.push(event);
        }
        // contract: fan-out order — under the lock that assigned the ids, so
        // calls are serialized and in id order across topics.
        self.fan_out.fan_out(&accepted);
        drop(state);
        Box::pin(future::ready(Ok(accepted)))
    }

    fn history<'a>(
        &'a self,
        topic: &'a TopicName,
        after_seq: u64,
        limit: PageLimit,
    ) -> BoxFuture<'a, Result<History, BackplaneError>> {
        let now = Instant::now();
        let mut state = self.state();
        let forgotten_through = state.forgotten_through;
        let history = match state.topics.get_mut(topic) {
            None => History {
                epoch: self.epoch,
                events: Vec::new(),
                complete: after_seq >= forgotten_through,
                next_after: None,
            },
            Some(topic) => {
                topic.evict(self.limits, now);
                // Sequence numbers increase along the queue: binary search.
                let start = topic.events.partition_point(|(_, e)| e.id.seq <= after_seq);
                let (events, next_after) = page(topic.events.range(start..), limit);
                History {
                    epoch: self.epoch,
                    events,
                    complete: after_seq >= topic.evicted_through,
                    next_after,
                }
            }
        };
        Box::pin(future::ready(Ok(history)))
    }

    fn run(self: Arc<Self>, stop: CancellationToken) -> BoxFuture<'static, ()> {
        let every = (self.limits.ttl / 4).clamp(EXPIRY_SWEEP_MIN, EXPIRY_SWEEP_MAX);
        Box::pin(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = ticks.tick() => self.expire(Instant::now()),
                    _ = stop.cancelled() => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::EventDraft;

    struct Discard;
    impl FanOut for Discard {
        fn fan_out(&self, _: &[Arc<Event>]) {}
        fn resync(&self, _: EventId) {}
    }

    fn backplane(size: usize, ttl: Duration) -> MemoryBackplane {
        MemoryBackplane::new(HistoryLimits { size, ttl }, Arc::new(Discard))
    }

    fn draft(topic: &str) -> EventDraft {
        EventDraft {
            topic: TopicName::parse(topic).unwrap(),
            event_type: None,
            retry: None,
            data: "x".into(),
            trace: None,
        }
    }

    fn publish(backplane: &MemoryBackplane, topic: &str) -> EventId {
        futures_util::FutureExt::now_or_never(backplane.publish(vec![draft(topic)]))
            .unwrap()
            .unwrap()[0]
            .id
    }

    fn history(backplane: &MemoryBackplane, topic: &str, after: u64) -> History {
        let all = PageLimit {
            events: usize::MAX,
            bytes: usize::MAX,
        };
        history_page(backplane, topic, after, all)
    }

    fn history_page(
        backplane: &MemoryBackplane,
        topic: &str,
        after: u64,
        limit: PageLimit,
    ) -> History {
        let topic = TopicName::parse(topic).unwrap();
        futures_util::FutureExt::now_or_never(backplane.history(&topic, after, limit))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn history_is_read_in_pages_by_count_and_bytes() {
        let backplane = backplane(10, Duration::from_secs(60));
        let ids: Vec<_> = (0..5).map(|_| publish(&backplane, "t")).collect();
        let by_count = PageLimit {
            events: 2,
            bytes: usize::MAX,
        };
        let first = history_page(&backplane, "t", 0, by_count);
        assert_eq!(
            first.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            ids[..2]
        );
        assert_eq!(first.next_after, Some(ids[1].seq));
        let last = history_page(&backplane, "t", ids[3].seq, by_count);
        assert_eq!(last.events.len(), 1);
        assert_eq!(last.next_after, None, "nothing after the last event");
        // One byte: each page still holds one event.
        let by_bytes = PageLimit {
            events: usize::MAX,
            bytes: 1,
        };
        let one = history_page(&backplane, "t", ids[0].seq, by_bytes);
        assert_eq!(one.events.len(), 1);
        assert_eq!(one.events[0].id, ids[1]);
        assert_eq!(one.next_after, Some(ids[1].seq));
    }

    #[test]
    fn ids_increase_across_topics() {
        let backplane = backplane(10, Duration::from_secs(60));
        let a = publish(&backplane, "a");
        let b = publish(&backplane, "b");
        assert!(a < b && a.epoch == backplane.epoch());
    }

    #[test]
    fn history_is_bounded_by_count_and_reports_the_gap() {
        let backplane = backplane(3, Duration::from_secs(60));
        let ids: Vec<_> = (0..5).map(|_| publish(&backplane, "t")).collect();
        let full = history(&backplane, "t", ids[1].seq);
        assert!(full.complete);
        assert_eq!(full.events.len(), 3);
        let short = history(&backplane, "t", ids[0].seq);
        assert!(!short.complete, "event 2 was evicted");
        assert_eq!(short.events[0].id, ids[2]);
    }

    #[test]
    fn expiry_forgets_topics_but_not_their_gaps() {
        let backplane = backplane(10, Duration::from_millis(1));
        let first = publish(&backplane, "t");
        std::thread::sleep(Duration::from_millis(5));
        backplane.expire(Instant::now());
        assert_eq!(backplane.topic_count(), 0);
        assert!(!history(&backplane, "t", 0).complete);
        assert!(history(&backplane, "t", first.seq).complete);
    }
}
