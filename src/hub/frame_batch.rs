//! Gathering frames into one write.

use bytes::{BufMut, Bytes, BytesMut};

/// Most bytes gathered into one write. Large enough to carry a burst in one
/// syscall, small enough that one subscriber can't hold much memory.
pub(super) const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Frames gathered into one write. A single frame goes out as the shared
/// `Bytes` itself (no copy); several are copied into one buffer that is
/// reused from batch to batch.
#[derive(Default)]
pub(super) struct FrameBatch {
    single: Option<Bytes>,
    buffer: BytesMut,
}

impl FrameBatch {
    pub(super) fn push(&mut self, frame: &Bytes) {
        if self.buffer.is_empty() {
            match self.single.take() {
                None => {
                    self.single = Some(frame.clone());
                    return;
                }
                Some(first) => self.buffer.put_slice(&first),
            }
        }
        self.buffer.put_slice(frame);
    }

    /// Bytes gathered so far.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.single.as_ref().map_or(0, Bytes::len) + self.buffer.len()
    }

    pub(super) fn is_full(&self) -> bool {
        self.buffer.len() >= MAX_BATCH_BYTES
    }

    pub(super) fn finish(&mut self) -> Option<Bytes> {
        if let Some(single) = self.single.take() {
            return Some(single);
        }
        (!self.buffer.is_empty()).then(|| self.buffer.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_goes_out_without_a_copy() {
        let frame = Bytes::from_static(b"id: 1-1\ndata: x\n\n");
        let mut batch = FrameBatch::default();
        batch.push(&frame);
        let out = batch.finish().unwrap();
        assert_eq!(out.as_ptr(), frame.as_ptr(), "the shared frame itself");
        assert!(batch.finish().is_none());
    }

    #[test]
    fn several_frames_are_joined_in_order() {
        let mut batch = FrameBatch::default();
        for frame in [&b"a\n\n"[..], b"b\n\n", b"c\n\n"] {
            batch.push(&Bytes::copy_from_slice(frame));
        }
        assert_eq!(&batch.finish().unwrap()[..], b"a\n\nb\n\nc\n\n");
        assert!(batch.finish().is_none(), "empty after a finish");
    }
}
