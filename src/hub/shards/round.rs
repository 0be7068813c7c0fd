//! One round of a writer shard's writes: a topic's items to each of its
//! streams (see `shard`).

use tokio::time::Instant;

use crate::hub::HubMetrics;
use crate::hub::delivery::Catchup;
use crate::hub::live_queues::{Live, LiveQueues};
use crate::hub::subscription::ParkedStream;
use crate::server::{MAX_SEND_FRAMES, ParkedConnection, Sent};

/// One round of writes of a topic's items to its streams: the clock read
/// once for all of them, and their deliveries counted in the metrics once.
pub(super) struct Round<'a> {
    queues: &'a LiveQueues,
    now: Instant,
    events: u64,
    bytes: usize,
}

impl<'a> Round<'a> {
    pub(super) fn new(queues: &'a LiveQueues) -> Self {
        Self {
            queues,
            now: Instant::now(),
            events: 0,
            bytes: 0,
        }
    }

    /// Writes the events among `items` that `stream` takes, as one chunk
    /// per [`MAX_SEND_FRAMES`]; `owed` is set (and writing stops) where an
    /// item sends the stream back to history.
    pub(super) fn write(
        &mut self,
        stream: &mut ParkedStream,
        connection: &mut ParkedConnection,
        items: &[Live],
        owed: &mut Option<Catchup>,
    ) -> Sent {
        let mut frames: [&[u8]; MAX_SEND_FRAMES] = [&[]; MAX_SEND_FRAMES];
        let mut count = 0;
        let mut bytes = 0;
        for item in items.iter().take(MAX_SEND_FRAMES) {
            match stream.take_pushed(item, self.queues) {
                Ok(true) => {
                    if let Live::Event(event) = item {
                        frames[count] = &event.frame;
                        bytes += event.frame.len();
                        count += 1;
                    }
                }
                Ok(false) => {}
                Err(catchup) => {
                    *owed = Some(catchup);
                    break;
                }
            }
        }
        if count == 0 {
            return Sent::All;
        }
        let sent = connection.send(&frames[..count]);
        if sent != Sent::Failed {
            self.events += stream.wrote_events(bytes, self.now);
            self.bytes += bytes;
        }
        sent
    }

    pub(super) fn count(self, metrics: &HubMetrics) {
        metrics.delivered(self.events, self.bytes);
    }
}
