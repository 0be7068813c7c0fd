//! Incremental `text/event-stream` parser (WHATWG HTML §9.2.6), trimmed to
//! what the harness checks: `data`, `id` and `event`, plus the two things a
//! reconnecting client keeps across connections, the last event id and the
//! `retry:` reconnection time. Input may be split anywhere; a line cut by a
//! read waits in a small buffer that keeps its capacity, so a steady stream
//! allocates nothing.

use std::fmt;
use std::time::Duration;

/// A dispatched event; borrows the parser's buffers until the next `feed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// Empty for the default type, `message`.
    pub event_type: &'a [u8],
    pub data: &'a [u8],
    /// The last event id seen on the stream (ids persist across events).
    pub last_event_id: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseTooLarge {
    pub limit_bytes: usize,
}

impl fmt::Display for SseTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SSE line or event larger than {} bytes",
            self.limit_bytes
        )
    }
}

impl std::error::Error for SseTooLarge {}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug)]
pub struct SseParser {
    /// Start of a line whose end has not arrived yet.
    partial_line: Vec<u8>,
    data: Vec<u8>,
    event_type: Vec<u8>,
    /// The spec's "last event ID buffer": set by `id:` lines.
    id_buffer: Vec<u8>,
    /// The event source's last event ID: the buffer as it was when the last
    /// event was dispatched. An `id:` of an event cut off by the connection's
    /// end never gets here, so a reconnect never skips that event.
    dispatched_event_id: Vec<u8>,
    /// The previous input ended with CR; an LF starting the next one belongs to it.
    after_cr: bool,
    /// No line has ended yet: a BOM may only open the stream's first line.
    at_stream_start: bool,
    /// The last valid `retry:` field, in ms: how long to wait before
    /// reconnecting. Like `last_event_id`, it outlives the connection.
    reconnection_time_ms: Option<u64>,
    /// Comment lines seen (heartbeats and stream-open comments).
    pub comments: u64,
    /// Guards memory against a runaway line or event.
    limit_bytes: usize,
}

impl SseParser {
    pub fn new(limit_bytes: usize) -> Self {
        Self {
            partial_line: Vec::new(),
            data: Vec::new(),
            event_type: Vec::new(),
            id_buffer: Vec::new(),
            dispatched_event_id: Vec::new(),
            after_cr: false,
            at_stream_start: true,
            reconnection_time_ms: None,
            comments: 0,
            limit_bytes,
        }
    }

    /// The id of the last dispatched event, to send as `Last-Event-ID` on reconnect.
    pub fn last_event_id(&self) -> &[u8] {
        &self.dispatched_event_id
    }

    /// The reconnection time the server asked for with `retry:`, if any.
    pub fn reconnection_time(&self) -> Option<Duration> {
        self.reconnection_time_ms.map(Duration::from_millis)
    }

    /// Starts a new connection's stream: what was cut off with the old one
    /// (a partial line, an undispatched event) is dropped, as EventSource
    /// does; the last event id and reconnection time are kept.
    pub fn reset_for_new_connection(&mut self) {
        self.partial_line.clear();
        self.data.clear();
        self.event_type.clear();
        self.id_buffer.clone_from(&self.dispatched_event_id);
        self.after_cr = false;
        self.at_stream_start = true;
    }

    /// Parses the next bytes of the stream, calling `on_event` for each
    /// complete event.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        on_event: &mut impl FnMut(SseEvent<'_>),
    ) -> Result<(), SseTooLarge> {
        if self.after_cr && input.first() == Some(&b'\n') {
            input = &input[1..];
        }
        self.after_cr = false;
        while let Some(end) = memchr::memchr2(b'\n', b'\r', input) {
            if self.partial_line.is_empty() {
                self.process_line(&input[..end], on_event)?;
            } else {
                self.extend_partial(&input[..end])?;
                let line = std::mem::take(&mut self.partial_line);
                let result = self.process_line(&line, on_event);
                self.partial_line = line;
                self.partial_line.clear();
                result?;
            }
            let mut next = end + 1;
            if input[end] == b'\r' {
                match input.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            input = &input[next..];
        }
        self.extend_partial(input)
    }

    fn extend_partial(&mut self, bytes: &[u8]) -> Result<(), SseTooLarge> {
        if self.partial_line.len() + bytes.len() > self.limit_bytes {
            return Err(SseTooLarge {
                limit_bytes: self.limit_bytes,
            });
        }
        self.partial_line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(
        &mut self,
        mut line: &[u8],
        on_event: &mut impl FnMut(SseEvent<'_>),
    ) -> Result<(), SseTooLarge> {
        if std::mem::take(&mut self.at_stream_start) {
            line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(on_event);
            return Ok(());
        }
        if line[0] == b':' {
            self.comments += 1;
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.limit_bytes {
                    return Err(SseTooLarge {
                        limit_bytes: self.limit_bytes,
                    });
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.extend_from_slice(value);
            }
            b"id" if !value.contains(&0) => {
                self.id_buffer.clear();
                self.id_buffer.extend_from_slice(value);
            }
            // Only ASCII digits count (WHATWG); anything else is ignored.
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // More digits than a u64 holds: the longest wait we can express.
                self.reconnection_time_ms = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(u64::MAX),
                );
            }
            // Unknown fields change nothing the harness checks.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        // Even an event without data sets the last event ID (WHATWG, dispatch step 1).
        if self.dispatched_event_id != self.id_buffer {
            self.dispatched_event_id.clone_from(&self.id_buffer);
        }
        if !self.data.is_empty() {
            let data = &self.data[..self.data.len() - 1];
            let event_type = if self.event_type == b"message" {
                &b""[..]
            } else {
                &self.event_type
            };
            on_event(SseEvent {
                event_type,
                data,
                last_event_id: &self.id_buffer,
            });
        }
        self.data.clear();
        self.event_type.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    struct Owned {
        event_type: String,
        data: String,
        id: String,
    }

    fn parse_in_pieces(stream: &[u8], piece: usize) -> (Vec<Owned>, u64) {
        let mut parser = SseParser::new(1024);
        let mut events = Vec::new();
        for part in stream.chunks(piece) {
            parser
                .feed(part, &mut |event| {
                    events.push(Owned {
                        event_type: String::from_utf8(event.event_type.to_vec()).unwrap(),
                        data: String::from_utf8(event.data.to_vec()).unwrap(),
                        id: String::from_utf8(event.last_event_id.to_vec()).unwrap(),
                    })
                })
                .unwrap();
        }
        (events, parser.comments)
    }

    fn owned(event_type: &str, data: &str, id: &str) -> Owned {
        Owned {
            event_type: event_type.into(),
            data: data.into(),
            id: id.into(),
        }
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBFretry: 3000\n: ok\n\nid: 1\ndata: first\n\n\
        id: 2\r\nevent: gap\r\ndata: a\r\ndata:b\r\n\r\n: \n\n\
        data: no id change\rdata\r\rid: 3\nevent: message\ndata:  two spaces\n\n\
        data: unterminated";

    #[test]
    fn parses_fields_comments_and_line_endings() {
        let (events, comments) = parse_in_pieces(STREAM, STREAM.len());
        assert_eq!(
            events,
            vec![
                owned("", "first", "1"),
                owned("gap", "a\nb", "2"),
                owned("", "no id change\n", "2"),
                owned("", " two spaces", "3"),
            ]
        );
        assert_eq!(comments, 2);
    }

    #[test]
    fn parses_identically_at_every_split_size() {
        let (whole, _) = parse_in_pieces(STREAM, STREAM.len());
        for piece in 1..STREAM.len() {
            let (events, comments) = parse_in_pieces(STREAM, piece);
            assert_eq!(events, whole, "piece size {piece}");
            assert_eq!(comments, 2, "piece size {piece}");
        }
    }

    #[test]
    fn a_bom_opens_the_stream_only_once() {
        for piece in 1..6 {
            let (events, _) =
                parse_in_pieces(b"\xEF\xBB\xBFdata: x\n\n\xEF\xBB\xBFdata: y\n\n", piece);
            assert_eq!(events, vec![owned("", "x", "")], "piece size {piece}");
        }
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        let (events, _) = parse_in_pieces(b"id: 7\nevent: ping\n\nretry: 10\n\n", 64);
        assert!(events.is_empty());
    }

    #[test]
    fn id_with_nul_is_ignored_and_field_without_colon_is_empty() {
        let (events, _) = parse_in_pieces(b"id: 1\n\nid: a\0b\ndata\n\n", 64);
        assert_eq!(events, vec![owned("", "", "1")]);
    }

    #[test]
    fn retry_sets_the_reconnection_time_only_when_all_digits() {
        let mut parser = SseParser::new(1024);
        assert_eq!(parser.reconnection_time(), None);
        parser.feed(b"retry: 2500\n\n", &mut |_| {}).unwrap();
        assert_eq!(
            parser.reconnection_time(),
            Some(Duration::from_millis(2500))
        );
        parser
            .feed(b"retry: 10s\nretry:\nretry: -1\n\n", &mut |_| {})
            .unwrap();
        assert_eq!(
            parser.reconnection_time(),
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    fn a_new_connection_keeps_the_id_and_retry_but_drops_a_cut_event() {
        let mut parser = SseParser::new(1024);
        let mut events = Vec::new();
        parser
            .feed(
                b"retry: 700\nid: 5\ndata: whole\n\nid: 6\ndata: cut",
                &mut |event| events.push(event.data.to_vec()),
            )
            .unwrap();
        parser.reset_for_new_connection();
        assert_eq!(parser.last_event_id(), b"5");
        assert_eq!(parser.reconnection_time(), Some(Duration::from_millis(700)));
        parser
            .feed(b"\xEF\xBB\xBFid: 7\ndata: next\n\n", &mut |event| {
                events.push(event.data.to_vec())
            })
            .unwrap();
        assert_eq!(events, vec![b"whole".to_vec(), b"next".to_vec()]);
        assert_eq!(parser.last_event_id(), b"7");
    }

    #[test]
    fn oversized_lines_are_rejected() {
        let mut parser = SseParser::new(8);
        assert!(parser.feed(b"data: 0123456789", &mut |_| {}).is_err());
        let mut parser = SseParser::new(8);
        let result = parser.feed(b"data: 01234\ndata: 56789\n", &mut |_| {});
        assert_eq!(result, Err(SseTooLarge { limit_bytes: 8 }));
    }
}
