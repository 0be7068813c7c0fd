//! What a run that lost something needs to say so that the loss can be
//! found: which subscriber missed which publish, the id the server gave
//! that publish and when it answered, and every connection the subscriber
//! had (the local port it reached the proxy from — the proxy's access log
//! names the upstream behind it —, the `Last-Event-ID` it resumed from, the
//! first and last events it got, how it ended). A count alone ("2 lost")
//! can't tell a loss at a resume from one in the middle of a stream.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

/// Connections kept per subscriber (the latest): a rolling restart moves a
/// subscriber a few times; a subscriber that reconnects all run long keeps
/// its recent history, which is where a loss at the end shows.
const CONNECTIONS_KEPT: usize = 12;
/// Subscribers with a loss described per worker, and missing publishes
/// named per subscriber: enough to see a pattern, bounded for huge runs.
pub const SUBSCRIBERS_DESCRIBED: usize = 5;
pub const MISSING_NAMED: usize = 20;

/// One event as the subscriber got it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The publish's number within its topic.
    pub seq: u64,
    /// The SSE id the server sent with it.
    pub id: String,
}

/// One connection of a subscriber, from its response head to its end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub opened_unix_ms: u64,
    /// The subscriber's side of the TCP connection (the proxy logs it as
    /// the client's port).
    pub local_port: u16,
    /// The `Last-Event-ID` sent; empty on the first connection.
    pub resumed_from: String,
    pub first: Option<Seen>,
    pub last: Option<Seen>,
    /// Events of this run's topic it carried, duplicates included.
    pub events: u64,
    pub ended_unix_ms: Option<u64>,
    pub end: Option<String>,
}

/// A subscriber's latest connections.
#[derive(Debug, Clone, Default)]
pub struct ConnectionLog {
    kept: VecDeque<Connection>,
    dropped: u64,
}

impl ConnectionLog {
    pub fn opened(&mut self, unix_ms: u64, local_port: u16, resumed_from: &[u8]) {
        if self.kept.len() == CONNECTIONS_KEPT {
            self.kept.pop_front();
            self.dropped += 1;
        }
        self.kept.push_back(Connection {
            opened_unix_ms: unix_ms,
            local_port,
            resumed_from: String::from_utf8_lossy(resumed_from).into_owned(),
            ..Connection::default()
        });
    }

    /// An event of the subscriber's topic arrived on the current connection.
    pub fn event(&mut self, seq: u64, id: &[u8]) {
        let Some(connection) = self.kept.back_mut() else {
            return;
        };
        connection.events += 1;
        let seen = || Seen {
            seq,
            id: String::from_utf8_lossy(id).into_owned(),
        };
        if connection.first.is_none() {
            connection.first = Some(seen());
        }
        match &mut connection.last {
            // Reuses the id's buffer: this runs for every event.
            Some(last) => {
                last.seq = seq;
                last.id.clear();
                last.id.push_str(&String::from_utf8_lossy(id));
            }
            None => connection.last = Some(seen()),
        }
    }

    pub fn ended(&mut self, unix_ms: u64, why: &str) {
        if let Some(connection) = self.kept.back_mut() {
            connection.ended_unix_ms = Some(unix_ms);
            connection.end = Some(why.to_owned());
        }
    }
}

/// A publish a subscriber never got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    pub seq: u64,
    /// The id the server answered the publish with, when it said one.
    #[serde(default)]
    pub id: Option<String>,
    /// When the publish was answered 2xx.
    #[serde(default)]
    pub answered_unix_ms: Option<u64>,
}

/// One subscriber that lost something, and its connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostBySubscriber {
    pub subscriber: usize,
    pub topic: u32,
    /// The first [`MISSING_NAMED`] of them.
    pub missing: Vec<Missing>,
    pub missing_total: u64,
    pub connections: Vec<Connection>,
    /// Earlier connections not kept.
    pub connections_dropped: u64,
}

impl LostBySubscriber {
    pub fn new(
        subscriber: usize,
        topic: u32,
        missing: impl Iterator<Item = u64>,
        log: &ConnectionLog,
    ) -> Self {
        let mut named = Vec::new();
        let mut total = 0;
        for seq in missing {
            total += 1;
            if named.len() < MISSING_NAMED {
                named.push(Missing {
                    seq,
                    ..Missing::default()
                });
            }
        }
        Self {
            subscriber,
            topic,
            missing: named,
            missing_total: total,
            connections: log.kept.iter().cloned().collect(),
            connections_dropped: log.dropped,
        }
    }
}

/// What the publisher learnt of one acked publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered {
    pub id: Option<String>,
    pub unix_ms: u64,
}

/// The workers' lost subscribers, each missing publish named by what the
/// publisher was answered (per topic).
pub fn gather<'a>(
    workers: impl Iterator<Item = &'a [LostBySubscriber]>,
    answers: Option<&[BTreeMap<u64, Answered>]>,
) -> Vec<LostBySubscriber> {
    let mut lost: Vec<_> = workers.flat_map(<[_]>::to_vec).collect();
    if let Some(answers) = answers {
        name_missing(&mut lost, answers);
    }
    lost
}

/// Fills in the server's id and the answer time of each missing publish.
fn name_missing(lost: &mut [LostBySubscriber], answers: &[BTreeMap<u64, Answered>]) {
    for subscriber in lost {
        let Some(topic) = answers.get(subscriber.topic as usize) else {
            continue;
        };
        for missing in &mut subscriber.missing {
            if let Some(answer) = topic.get(&missing.seq) {
                missing.id.clone_from(&answer.id);
                missing.answered_unix_ms = Some(answer.unix_ms);
            }
        }
    }
}

/// Where a missing publish falls among a subscriber's connections, by its
/// number: inside one connection's range (a hole in a stream), between
/// two (lost at the resume), or outside all of them.
pub fn place(seq: u64, connections: &[Connection]) -> String {
    let mut before = None;
    for (index, connection) in connections.iter().enumerate() {
        let (Some(first), Some(last)) = (&connection.first, &connection.last) else {
            continue;
        };
        if first.seq <= seq && seq <= last.seq {
            return format!("inside connection #{}", index + 1);
        }
        if seq < first.seq {
            return match before {
                Some(previous) => format!(
                    "between connections #{previous} and #{} (at the resume)",
                    index + 1
                ),
                None => format!("before connection #{}", index + 1),
            };
        }
        before = Some(index + 1);
    }
    match before {
        Some(previous) => format!("after connection #{previous}, the last with events"),
        None => "on no connection with events".to_owned(),
    }
}

/// `hh:mm:ss.mmm` UTC, as the servers' logs write their times.
pub fn clock(unix_ms: u64) -> String {
    let day_ms = unix_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1_000 % 60,
        day_ms % 1_000
    )
}

/// The lines printed under the run's table for each subscriber that lost
/// something.
pub fn describe(lost: &[LostBySubscriber]) -> String {
    let mut out = String::new();
    for subscriber in lost {
        let _ = writeln!(
            out,
            "  lost: subscriber {} (topic {}) missed {} publish(es):",
            subscriber.subscriber, subscriber.topic, subscriber.missing_total
        );
        for missing in &subscriber.missing {
            let _ = writeln!(
                out,
                "    seq {} id {} answered {}: {}",
                missing.seq,
                missing.id.as_deref().unwrap_or("?"),
                missing.answered_unix_ms.map_or("?".to_owned(), clock),
                place(missing.seq, &subscriber.connections)
            );
        }
        if subscriber.connections_dropped > 0 {
            let _ = writeln!(
                out,
                "    ({} earlier connections not kept)",
                subscriber.connections_dropped
            );
        }
        for (index, c) in subscriber.connections.iter().enumerate() {
            let seen = |s: &Option<Seen>| {
                s.as_ref()
                    .map_or("-".to_owned(), |s| format!("seq {} id {}", s.seq, s.id))
            };
            let _ = writeln!(
                out,
                "    connection #{} from port {} at {}, Last-Event-ID {:?}: {} events, first {}, last {}; ended {} ({})",
                index + 1,
                c.local_port,
                clock(c.opened_unix_ms),
                c.resumed_from,
                c.events,
                seen(&c.first),
                seen(&c.last),
                c.ended_unix_ms.map_or("-".to_owned(), clock),
                c.end.as_deref().unwrap_or("still open"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(first: u64, last: u64) -> Connection {
        Connection {
            first: Some(Seen {
                seq: first,
                id: format!("1-{first}"),
            }),
            last: Some(Seen {
                seq: last,
                id: format!("1-{last}"),
            }),
            ..Connection::default()
        }
    }

    #[test]
    fn a_missing_publish_is_placed_among_the_connections() {
        let connections = [connection(0, 10), Connection::default(), connection(12, 20)];
        assert_eq!(place(5, &connections), "inside connection #1");
        assert_eq!(
            place(11, &connections),
            "between connections #1 and #3 (at the resume)"
        );
        assert_eq!(
            place(21, &connections),
            "after connection #3, the last with events"
        );
        assert_eq!(place(3, &connections[2..]), "before connection #1");
        assert_eq!(place(3, &[]), "on no connection with events");
    }

    #[test]
    fn the_log_keeps_the_latest_connections_and_their_first_and_last_events() {
        let mut log = ConnectionLog::default();
        for n in 0..CONNECTIONS_KEPT as u64 + 2 {
            log.opened(n, 1000 + n as u16, format!("1-{n}").as_bytes());
            log.event(n * 10, b"a");
            log.event(n * 10 + 1, b"b");
            log.ended(n + 1, "server ended the response");
        }
        assert_eq!(log.dropped, 2);
        let last = log.kept.back().unwrap();
        assert_eq!(last.resumed_from, format!("1-{}", CONNECTIONS_KEPT + 1));
        assert_eq!(last.first.as_ref().unwrap().id, "a");
        assert_eq!(last.last.as_ref().unwrap().id, "b");
        assert_eq!(last.events, 2);
        let lost = LostBySubscriber::new(7, 1, [3, 4].into_iter(), &log);
        assert_eq!(
            (lost.missing_total, lost.connections.len()),
            (2, CONNECTIONS_KEPT)
        );
    }

    #[test]
    fn missing_publishes_get_the_servers_ids() {
        let log = ConnectionLog::default();
        let mut lost = [LostBySubscriber::new(0, 1, (0..30).step_by(2), &log)];
        assert_eq!(
            (lost[0].missing.len(), lost[0].missing_total),
            (MISSING_NAMED.min(15), 15)
        );
        let mut topic = BTreeMap::new();
        topic.insert(
            4,
            Answered {
                id: Some("1-99".to_owned()),
                unix_ms: 3_723_004,
            },
        );
        name_missing(&mut lost, &[BTreeMap::new(), topic]);
        assert_eq!(lost[0].missing[2].id.as_deref(), Some("1-99"));
        assert_eq!(lost[0].missing[1].id, None);
        let text = describe(&lost);
        assert!(
            text.contains("seq 4 id 1-99 answered 01:02:03.004"),
            "{text}"
        );
    }
}
