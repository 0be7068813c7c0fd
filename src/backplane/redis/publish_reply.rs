//! What the publish script (`scripts::PUBLISH_LUA`) answers, read into a
//! [`PublishReply`]: published, replayed from an idempotency record, or a
//! key reused for another request.

use crate::backplane::RecordedIds;
use crate::model::EventId;

/// What `PUBLISH_LUA` answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PublishReply {
    Published(Published),
    Replayed(RecordedIds),
    KeyReused,
}

/// A publish the script made: its ids are contiguous from `first`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Published {
    pub epoch: u64,
    pub first: u64,
    /// When Redis accepted it, ms of Redis's clock.
    pub accepted_ms: u64,
    pub evicted_for_topics: u64,
    pub evicted_for_bytes: u64,
}

/// `{'published', epoch, first, ms, evicted for topics, evicted for
/// bytes}`, `{'replayed', epoch, first, count}` or `{'key_reused'}`.
pub(super) fn parse_publish(reply: Vec<redis::Value>) -> Result<PublishReply, String> {
    use redis::FromRedisValue;
    let mut reply = reply.into_iter();
    let tag = reply.next().ok_or("empty reply")?;
    let tag = String::from_redis_value(tag).map_err(|e| e.to_string())?;
    // Integers come back as integers, strings of digits as strings: both read as u64.
    let mut number = |what: &str| -> Result<u64, String> {
        let value = reply.next().ok_or_else(|| format!("no {what}"))?;
        u64::from_redis_value(value).map_err(|e| format!("{what}: {e}"))
    };
    match tag.as_str() {
        "published" => Ok(PublishReply::Published(Published {
            epoch: number("epoch")?,
            first: number("first seq")?,
            accepted_ms: number("accepted ms")?,
            evicted_for_topics: number("evictions for max topics")?,
            evicted_for_bytes: number("evictions for max bytes")?,
        })),
        "replayed" => {
            let epoch = number("recorded epoch")?;
            let first = number("recorded first seq")?;
            let count = number("recorded count")?;
            Ok(PublishReply::Replayed(RecordedIds {
                first: EventId::new(epoch, first),
                count: count as usize,
            }))
        }
        "key_reused" => Ok(PublishReply::KeyReused),
        other => Err(format!("unknown answer {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::*;

    fn text(value: &str) -> Value {
        Value::BulkString(value.as_bytes().to_vec())
    }

    #[test]
    fn each_answer_of_the_script_is_read() {
        let published = vec![
            text("published"),
            text("7"),
            text("41"),
            text("1700000000000"),
            Value::Int(0),
            Value::Int(2),
        ];
        assert_eq!(
            parse_publish(published).unwrap(),
            PublishReply::Published(Published {
                epoch: 7,
                first: 41,
                accepted_ms: 1_700_000_000_000,
                evicted_for_topics: 0,
                evicted_for_bytes: 2,
            })
        );
        let replayed = vec![text("replayed"), text("7"), text("41"), text("3")];
        assert_eq!(
            parse_publish(replayed).unwrap(),
            PublishReply::Replayed(RecordedIds {
                first: EventId::new(7, 41),
                count: 3,
            })
        );
        assert_eq!(
            parse_publish(vec![text("key_reused")]).unwrap(),
            PublishReply::KeyReused
        );
        assert!(parse_publish(vec![text("what")]).is_err());
        assert!(parse_publish(vec![text("replayed"), text("7")]).is_err());
    }
}
