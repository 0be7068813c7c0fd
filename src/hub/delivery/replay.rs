//! A subscription's replay from history: what it owes (a cursor per topic
//! through the live queues' watermark), read a page per topic at a time and
//! merged by id into the stream's writes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::{Delivery, UNPOSITIONED};
use crate::backplane::{History, PageLimit};
use crate::hub::ReplayTrigger;
use crate::hub::live_queues::SyncPoint;
use crate::model::{Event, EventId, GapReason, sse};

/// Times a replay starts over because the history it reads moved to
/// another epoch, and times one history read is tried. Resyncs follow
/// backplane reconnects, seconds apart, so a second attempt practically
/// always settles; past this the replay ends with a gap frame rather than
/// loop — except while the backplane is down, when it keeps its cursor
/// and waits for the backplane's resync (see [`Delivery::read_history`]).
pub(super) const MAX_REPLAY_ATTEMPTS: usize = 4;

/// Pause before reading history again after a read failed, times the
/// attempt (0.1 s, 0.2 s, 0.3 s). A backplane under a burst of resumes (a
/// drained replica's clients all arriving at once) can time a read out
/// once; the next usually succeeds, and a stream that waits a moment loses
/// nothing, where a `history_unavailable` gap would drop what history held.
pub(super) const HISTORY_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Bytes of history a replay holds at a time, over all its topics: each
/// topic's page gets an equal share, and at least one event. With the
/// memory backplane the pages share the stored events (the bound is on
/// what one read returns); with Redis they are what one read copies, so
/// this is also what a replaying subscriber costs the hub and Redis per
/// read, however long the history.
pub(super) const REPLAY_PAGE_BYTES: usize = 256 * 1024;

/// Most events in one topic's page (small events: the byte share would
/// allow thousands).
pub(super) const REPLAY_PAGE_EVENTS: usize = 256;

/// What one history read of a subscription of `topics` topics returns at most.
pub(super) fn page_limit(topics: usize) -> PageLimit {
    PageLimit {
        events: REPLAY_PAGE_EVENTS,
        bytes: (REPLAY_PAGE_BYTES / topics.max(1)).max(1),
    }
}

/// History owed to a subscriber, from its cursor through the watermark of
/// `sync`: read a page per topic at a time, and merged by id as the stream
/// is written.
pub(super) struct Replay {
    pub(super) trigger: ReplayTrigger,
    /// The last id the client has seen (its resume id at first), for gap frames.
    pub(super) last_seen: Option<EventId>,
    /// A gap frame to send before the next event (or at the end), with the
    /// last id before it.
    pub(super) gap: Option<(GapReason, Option<EventId>)>,
    /// What events missing from a page are reported as.
    pub(super) incomplete: GapReason,
    /// Where the live queues stood when the replay (re)started; it replays
    /// through `sync.watermark`, and later events arrive on the live queues.
    pub(super) sync: SyncPoint,
    /// One per topic, in the order of `Delivery::topics`.
    pub(super) pages: Vec<Page>,
    /// Times the replay started over for an epoch change under it.
    pub(super) restarts: usize,
    /// History couldn't be read while the backplane was down: the replay
    /// keeps the cursor and starts over from it at the backplane's resync
    /// (or the next live item), instead of skipping what history holds.
    pub(super) stalled: bool,
}

/// One topic's part of a replay.
#[derive(Default)]
pub(super) struct Page {
    /// Read and not yet delivered, in id order.
    pub(super) events: VecDeque<Arc<Event>>,
    /// Where the next read starts; `None`: read through the watermark.
    pub(super) next_after: Option<u64>,
}

impl Page {
    pub(super) fn wants_read(&self) -> bool {
        self.events.is_empty() && self.next_after.is_some()
    }
}

impl Replay {
    /// A topic's next event is unknown until its next page is read, and
    /// nothing can be merged past it before then.
    pub(super) fn wants_page(&self) -> bool {
        !self.stalled && self.pages.iter().any(Page::wants_read)
    }

    /// The topic whose next event has the lowest id.
    pub(super) fn next_topic(&self) -> Option<usize> {
        self.pages
            .iter()
            .enumerate()
            .filter_map(|(index, page)| page.events.front().map(|e| (e.id.seq, index)))
            .min()
            .map(|(_, index)| index)
    }

    pub(super) fn take_page(&mut self, index: usize, history: History) {
        if !history.complete {
            // Before the next event: every event delivered so far precedes
            // what this topic lost (its page was used up before this read).
            self.gap.get_or_insert((self.incomplete, self.last_seen));
        }
        let watermark = self.sync.watermark;
        let page = &mut self.pages[index];
        page.events
            .extend(history.events.into_iter().filter(|e| e.id.seq <= watermark));
        page.next_after = history.next_after.filter(|&after| after < watermark);
    }

    /// Gives up on the rest of a topic's history, with a gap frame.
    pub(super) fn abandon(&mut self, index: usize) {
        self.gap
            .get_or_insert((GapReason::HistoryUnavailable, self.last_seen));
        self.pages[index].next_after = None;
    }

    pub(super) fn stall(&mut self) {
        self.stalled = true;
        for page in &mut self.pages {
            // Read again from the cursor when the replay resumes.
            page.events = VecDeque::new();
        }
    }
}

impl Delivery {
    /// Starts sending every event of the topics after the cursor that
    /// history holds, preceded by a gap frame when `gap` is set or history
    /// can't cover it all, and reads the first pages. The rest goes out a
    /// write at a time through [`Self::next_chunk`]; once it has, everything
    /// up to the live queues' watermark is accounted for.
    pub(super) async fn replay(
        &mut self,
        trigger: ReplayTrigger,
        last_seen: Option<EventId>,
        gap: Option<GapReason>,
    ) {
        self.observer.replayed(trigger);
        let incomplete = match trigger {
            ReplayTrigger::Lagged => GapReason::Lagged,
            ReplayTrigger::Resume | ReplayTrigger::Resync => GapReason::HistoryExceeded,
        };
        let mut replay = Box::new(Replay {
            trigger,
            last_seen,
            gap: gap.map(|reason| (reason, last_seen)),
            incomplete,
            sync: self.queues.sync_point(),
            pages: self.topics.iter().map(|_| Page::default()).collect(),
            restarts: 0,
            stalled: false,
        });
        self.position(&mut replay);
        self.replay = Some(replay);
        self.read_history().await;
    }

    /// (Re)starts `replay` from the cursor, through where the live queues
    /// stand now.
    pub(super) fn position(&mut self, replay: &mut Replay) {
        // Read before history: every event at or below its watermark is in
        // history or was evicted (then reported); later ones arrive on the
        // live queues.
        let sync = self.queues.sync_point();
        if self.cursor.epoch == UNPOSITIONED && sync.epoch != UNPOSITIONED {
            // Opened before the backplane first reached its server: this
            // stream was promised nothing before now; it joins live.
            self.cursor = EventId::new(sync.epoch, sync.watermark);
        } else if self.cursor.epoch != sync.epoch {
            // contract: resync — history started over under this stream
            // (or the client's id is of an epoch this replica hasn't
            // reached): one gap frame, then the new epoch from its start.
            replay
                .gap
                .get_or_insert((GapReason::EpochChanged, replay.last_seen));
            self.cursor = EventId::new(sync.epoch, 0);
        }
        replay.sync = sync;
        replay.stalled = false;
        for page in &mut replay.pages {
            page.events.clear();
            page.next_after = Some(self.cursor.seq);
        }
        // Live events read but not yet written are in history too.
        self.ready.clear();
    }

    /// Reads the next page of each topic whose page is used up. A read
    /// that fails is tried again after a pause; one that keeps failing
    /// while the backplane is down stalls the replay with its cursor kept,
    /// and the replay starts over from there when the backplane resyncs
    /// (its reconnect always does) or a live item arrives: what history
    /// holds is replayed late, never skipped. Only a history that stays
    /// unreadable while the backplane is up (it answers, but not this
    /// read) is given up, with a `history_unavailable` gap frame.
    pub(in crate::hub) async fn read_history(&mut self) {
        let Some(mut replay) = self.replay.take() else {
            return;
        };
        let backplane = self.backplane.clone();
        let limit = page_limit(self.topics.len());
        let mut failures = 0;
        let mut index = 0;
        while index < self.topics.len() && !replay.stalled {
            let page = &replay.pages[index];
            let after = match page.next_after {
                Some(after) if page.events.is_empty() => after,
                _ => {
                    index += 1;
                    continue;
                }
            };
            match backplane.history(&self.topics[index], after, limit).await {
                Ok(history) if history.epoch == replay.sync.epoch => {
                    failures = 0;
                    replay.take_page(index, history);
                    index += 1;
                }
                Ok(_) if replay.restarts + 1 < MAX_REPLAY_ATTEMPTS => {
                    // contract: resync — history moved to another epoch
                    // under this replay: start over from the cursor, where
                    // the live queues stand now.
                    replay.restarts += 1;
                    self.position(&mut replay);
                    index = 0;
                }
                Ok(_) => {
                    replay.abandon(index);
                    index += 1;
                }
                Err(_) => {
                    failures += 1;
                    if failures < MAX_REPLAY_ATTEMPTS {
                        tokio::time::sleep(HISTORY_RETRY_PAUSE * failures as u32).await;
                    } else if self.queues.generation() != replay.sync.generation
                        && replay.restarts + 1 < MAX_REPLAY_ATTEMPTS
                    {
                        // The backplane reconnected (and resynced) while
                        // these reads failed: try again at its new position.
                        replay.restarts += 1;
                        failures = 0;
                        self.position(&mut replay);
                        index = 0;
                    } else if backplane.is_available() {
                        replay.abandon(index);
                        failures = 0;
                        index += 1;
                    } else {
                        // invariant: no silent loss — the cursor stays; the
                        // backplane's resync after its reconnect resumes it.
                        replay.stall();
                    }
                }
            }
        }
        self.replay = Some(replay);
    }

    /// Moves the replay's events into one write, in id order across topics,
    /// stopping at a full write or where a topic's next page must be read.
    pub(super) fn replay_batch(&mut self) {
        let Some(mut replay) = self.replay.take() else {
            return;
        };
        while !replay.stalled && !replay.wants_page() {
            // contract: fan-out order — history is per topic; the merge by
            // id (the lowest head first, each topic's next page read before
            // anything past its last event goes out) gives the order the
            // live queues would have given.
            let next = replay.next_topic();
            if let Some((reason, last_seen)) = replay.gap.take() {
                // invariant: no silent loss — the gap is announced before
                // any event that follows it.
                let first = next.map(|index| &replay.pages[index].events[0]);
                self.observer.gap(reason, first);
                let resumes_at = first.map(|event| event.id);
                self.batch
                    .push(&sse::gap_frame(reason.as_str(), last_seen, resumes_at));
            }
            let Some(index) = next else {
                self.end_replay(replay.sync);
                self.finish_batch();
                return;
            };
            let event = replay.pages[index].events.pop_front().expect("a head");
            self.deliver(&event);
            replay.last_seen = Some(self.cursor);
            if self.batch.is_full() {
                break;
            }
        }
        self.finish_batch();
        self.replay = Some(replay);
    }

    /// Everything through the replay's watermark is accounted for.
    pub(super) fn end_replay(&mut self, sync: SyncPoint) {
        self.cursor.seq = self.cursor.seq.max(sync.watermark);
        self.generation = sync.generation;
        let cursor = self.cursor;
        self.held
            .retain(|e| e.id.epoch == cursor.epoch && e.id.seq > cursor.seq);
    }
}
