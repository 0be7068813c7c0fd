//! What a route hands the stream writer: an [`EventSource`] (the stream's
//! SSE frames), in the response's [`EventStreamMarker`].
//!
//! A source may also take its connection over while it is idle
//! ([`EventSource::park`]): the connection's task ends, and whoever holds
//! the [`ParkedConnection`] writes frames to the socket directly until it
//! gives the connection back to a task ([`ParkedConnection::resume`]).
//! The hub's writer shards park idle streams this way (`hub::shards`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

pub use super::parked::{ParkedConnection, Received, Sent};

/// The frames of one event stream, already SSE-encoded.
pub trait EventSource: Send + 'static {
    /// The next bytes to write; `None` ends the stream.
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>>;

    /// Whether [`Self::park`] would take the connection now. Asked when
    /// the writer has written everything and the source has nothing ready.
    fn wants_connection(&self) -> bool {
        false
    }

    /// Takes the connection over (only called after
    /// [`Self::wants_connection`] said yes).
    fn park(self: Pin<Box<Self>>, connection: ParkedConnection);
}

/// Any stream of frames, as a source that never parks.
pub struct FramesSource<S>(pub S);

impl<S: Stream<Item = Bytes> + Send + Unpin + 'static> EventSource for FramesSource<S> {
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        Pin::new(&mut self.0).poll_next(cx)
    }

    /// Never asked for: it doesn't want the connection.
    fn park(self: Pin<Box<Self>>, connection: ParkedConnection) {
        connection.resume(self);
    }
}

/// A source in a shared slot: the stream writer takes it out; whatever
/// else reads the response (poem's test client, a `HEAD`) gets its frames
/// through the body instead.
type SourceSlot = Arc<Mutex<Option<Pin<Box<dyn EventSource>>>>>;

/// Set in a response's extensions by the routes that return an event
/// stream (see the module documentation of `server`): the stream's source.
#[derive(Clone)]
pub struct EventStreamMarker(SourceSlot);

impl EventStreamMarker {
    /// The marker for `source`, and a body that reads the same source if
    /// the stream writer never takes it.
    pub fn new(
        source: Pin<Box<dyn EventSource>>,
    ) -> (Self, impl Stream<Item = io::Result<Bytes>> + Send + 'static) {
        let slot: SourceSlot = Arc::new(Mutex::new(Some(source)));
        let body = SlotFrames {
            slot: slot.clone(),
            source: None,
        };
        (Self(slot), body)
    }

    /// The source, unless the body has begun reading it.
    pub(super) fn take(&self) -> Option<Pin<Box<dyn EventSource>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl std::fmt::Debug for EventStreamMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStreamMarker")
    }
}

/// The body's view of the slot: takes the source on its first poll.
struct SlotFrames {
    slot: SourceSlot,
    source: Option<Pin<Box<dyn EventSource>>>,
}

impl Stream for SlotFrames {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.source.is_none() {
            let taken = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            match taken {
                Some(source) => self.source = Some(source),
                None => return Poll::Ready(None),
            }
        }
        let source = self.source.as_mut().expect("taken above");
        source.as_mut().poll_frame(cx).map(|frame| frame.map(Ok))
    }
}
