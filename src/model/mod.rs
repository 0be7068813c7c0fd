//! The vocabulary every part shares: topics, ids, events, trace context and
//! the SSE wire format. Imports nothing of ours.

pub mod event;
pub mod event_id;
pub mod sse;
pub mod topic;

use sse as encoder;
