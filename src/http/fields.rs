//! Request fields whose OpenAPI schema states the rule the hub enforces, so
//! the spec a client (or a fuzzer) reads matches what the server accepts.
//!
//! Each type only checks the JSON type here; the rule itself is checked
//! where the field becomes a domain value ([`super::publish::draft`]), so a
//! value of the right type but breaking the rule keeps its precise status
//! and problem type (`invalid-topic` 400, `invalid-event-type` 422, …)
//! instead of poem-openapi's generic parse error.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

use crate::model::{EVENT_TYPE_MAX_CHARS, RESERVED_EVENT_TYPES, TOPIC_MAX_CHARS};

/// `TopicName`'s alphabet as an ECMA-262 pattern (what OpenAPI uses).
const TOPIC_PATTERN: &str = "^[A-Za-z0-9._:~-]+$";

/// `EventType`'s rule as an ECMA-262 pattern: not one of the hub's own
/// event types ([`RESERVED_EVENT_TYPES`], a negative lookahead), and no
/// character that would end the `event:` line.
fn event_type_pattern() -> String {
    format!(
        "^(?!(?:{})$)[^\\r\\n\\u0000]+$",
        RESERVED_EVENT_TYPES.join("|")
    )
}

/// Longest `retry` an event may set on clients, in milliseconds: a minute.
/// The hub's own hint is a few seconds (`stream.retry`, 3 s, jittered up to
/// twice that when it ends a stream); a publisher may ask for more, e.g. to
/// spread reconnects around a maintenance, but not for long: a `retry` stays
/// in force until the client's next reconnect (a new stream starts with the
/// hub's own `retry:` again), so this bounds what one event can cost every
/// subscriber of its topic to a minute without a stream after a drop
/// (events of that minute are replayed from history on the resume). Before,
/// a day was accepted: one forged event kept every client away for a day.
pub const MAX_EVENT_RETRY_MS: u64 = 60_000;

/// Each request type poem-openapi names in its parse errors (by
/// `Type::name`), as the field a user wrote and the form it takes, with an
/// example: what `error::payload_message` says instead of the type name.
pub fn field_and_form(type_name: &str) -> Option<(&'static str, &'static str)> {
    Some(match type_name {
        "integer(retry-ms)" => (
            "`retry`",
            "a whole number of milliseconds from 0 to 60000, e.g. 3000 (usually left out)",
        ),
        "string(event-type)" => ("`event`", "a string, e.g. \"order\""),
        "string(topic)" => ("`topic`", "a topic name in a string, e.g. \"orders.42\""),
        "list_BatchItem" => (
            "`events`",
            "a list of events, e.g. [{\"topic\": \"orders.42\", \"data\": {\"status\": \"shipped\"}}]",
        ),
        "BatchItem" => (
            "each of `events`",
            "an object, e.g. {\"topic\": \"orders.42\", \"data\": {\"status\": \"shipped\"}}",
        ),
        "PublishRequest" => (
            "the body",
            "a JSON object, e.g. {\"event\": \"order\", \"data\": {\"status\": \"shipped\"}}",
        ),
        "BatchRequest" => (
            "the body",
            "a JSON object, e.g. {\"events\": [{\"topic\": \"orders.42\", \"data\": {\"status\": \"shipped\"}}]}",
        ),
        _ => return None,
    })
}

/// Implements the poem-openapi traits of a newtype over a JSON value that
/// documents `schema` and parses any value `accept` takes.
macro_rules! documented_field {
    ($name:ident, $raw:ty, $type_name:literal, $schema:expr, $accept:expr) => {
        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = $raw;
            type RawElementValueType = $raw;

            fn name() -> Cow<'static, str> {
                $type_name.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new($schema))
            }

            fn as_raw_value(&self) -> Option<&$raw> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a $raw> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                let accept: fn(Value) -> Option<$raw> = $accept;
                match value {
                    Some(value) => match accept(value.clone()) {
                        Some(raw) => Ok(Self(raw)),
                        None => Err(ParseError::expected_type(value)),
                    },
                    None => Err(ParseError::expected_input()),
                }
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                serde_json::to_value(&self.0).ok()
            }
        }
    };
}

fn string_only(value: Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text),
        _ => None,
    }
}

/// A topic name as sent (path segment or batch field).
#[derive(Debug, Clone)]
pub struct TopicField(pub String);

documented_field!(
    TopicField,
    String,
    "string(topic)",
    MetaSchema {
        min_length: Some(1),
        max_length: Some(TOPIC_MAX_CHARS),
        pattern: Some(TOPIC_PATTERN.to_owned()),
        ..MetaSchema::new("string")
    },
    string_only
);

impl ParseFromParameter for TopicField {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self(value.to_owned()))
    }
}

/// An `event` type as sent; `null` is the same as leaving it out (JSON
/// encoders of optional fields write either).
#[derive(Debug, Clone)]
pub struct EventTypeField(pub String);

documented_field!(
    EventTypeField,
    String,
    "string(event-type)",
    MetaSchema {
        min_length: Some(1),
        max_length: Some(EVENT_TYPE_MAX_CHARS),
        pattern: Some(event_type_pattern()),
        nullable: true,
        ..MetaSchema::new("string")
    },
    string_only
);

/// A `retry` in milliseconds as sent: any non-negative integer parses, one
/// over [`MAX_EVENT_RETRY_MS`] is refused later with its own message;
/// `null` is the same as leaving it out.
#[derive(Debug, Clone, Copy)]
pub struct RetryField(pub u64);

documented_field!(
    RetryField,
    u64,
    "integer(retry-ms)",
    MetaSchema {
        format: Some("int64"),
        minimum: Some(0.0),
        maximum: Some(MAX_EVENT_RETRY_MS as f64),
        nullable: true,
        ..MetaSchema::new("integer")
    },
    |value| value.as_u64()
);

/// The `events` of a batch: at least one (an empty batch is refused later
/// with `empty-batch`).
#[derive(Debug)]
pub struct BatchEvents<T>(pub Vec<T>);

impl<T: Type + ParseFromJSON + ToJSON> Type for BatchEvents<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Vec<T>;
    type RawElementValueType = T;

    fn name() -> Cow<'static, str> {
        format!("list_{}", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            items: Some(Box::new(T::schema_ref())),
            min_items: Some(1),
            ..MetaSchema::new("array")
        }))
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Vec<T>> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a T> + 'a> {
        Box::new(self.0.iter())
    }
}

impl<T: Type + ParseFromJSON + ToJSON> ParseFromJSON for BatchEvents<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Vec::<T>::parse_from_json(value)
            .map(Self)
            .map_err(ParseError::propagate)
    }
}

impl<T: Type + ParseFromJSON + ToJSON> ToJSON for BatchEvents<T> {
    fn to_json(&self) -> Option<Value> {
        self.0.to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The characters of a `^[...]+$` pattern's class (ranges expanded).
    fn class_of(pattern: &str) -> Vec<char> {
        let class: Vec<char> = pattern
            .strip_prefix("^[")
            .and_then(|rest| rest.strip_suffix("]+$"))
            .unwrap()
            .chars()
            .collect();
        let mut chars = Vec::new();
        let mut at = 0;
        while at < class.len() {
            if at + 2 < class.len() && class[at + 1] == '-' {
                chars.extend(class[at]..=class[at + 2]);
                at += 3;
            } else {
                chars.push(class[at]);
                at += 1;
            }
        }
        chars
    }

    #[test]
    fn the_documented_topic_pattern_is_the_topic_rule() {
        let documented = class_of(TOPIC_PATTERN);
        for byte in 0u8..=255 {
            let name = (byte as char).to_string();
            let by_rule = crate::model::TopicName::parse(&name).is_ok();
            assert_eq!(by_rule, documented.contains(&(byte as char)), "{name:?}");
        }
    }

    #[test]
    fn strings_stay_strings() {
        assert!(TopicField::parse_from_json(Some(Value::from(42))).is_err());
        assert!(EventTypeField::parse_from_json(Some(Value::Bool(true))).is_err());
        assert!(RetryField::parse_from_json(Some(Value::from(-1))).is_err());
        assert!(RetryField::parse_from_json(Some(Value::from(1.5))).is_err());
        assert_eq!(
            RetryField::parse_from_json(Some(Value::from(u64::MAX)))
                .unwrap()
                .0,
            u64::MAX
        );
    }
}
