//! The hub's reserved namespace: topics under the hub's own URL path
//! (`/.well-known/mercure` and `/.well-known/mercure/…`) name resources
//! only the hub makes (subscription events), so a publish naming one is
//! refused, whatever its token (draft-08, "Publication").
//!
//! The test is on the topic's path once resolved against the hub's URL by
//! the WHATWG URL parser (the one URL patterns use), whatever its scheme or
//! authority, so an absolute `https://hub.example/.well-known/mercure/…`,
//! a relative `mercure/subscriptions` and a disguised
//! `/.well-known/%6Dercure/../mercure/x` are all caught: the parser removes
//! dot-segments (`%2e` spellings included), and the percent-encoded
//! unreserved characters it leaves are decoded here before comparing.

use std::borrow::Cow;

use url::Url;

/// Whether `topic` addresses the namespace of the hub at `hub`. A topic
/// that is no URL reference, even relative to the hub's, addresses no hub
/// path and is not in it.
pub fn is_reserved_topic(topic: &str, hub: &Url) -> bool {
    let Ok(resolved) = hub.join(topic) else {
        return false;
    };
    let path = decode_unreserved(resolved.path());
    let hub_path = hub.path();
    path == hub_path
        || path
            .strip_prefix(hub_path)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `path` with each `%XX` that encodes an unreserved character (RFC 3986:
/// `A-Z a-z 0-9 - . _ ~`) decoded, and every other escape kept: `%2F` is
/// not a `/`, so `mercure%2Fx` stays one segment, as the spec reads it.
fn decode_unreserved(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())
            .filter(|byte| {
                byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
            });
        match escaped {
            Some(byte) => {
                decoded.push(char::from(byte));
                at += 3;
            }
            None => {
                // A URL's path is ASCII (the parser percent-encodes the rest).
                decoded.push(char::from(bytes[at]));
                at += 1;
            }
        }
    }
    Cow::Owned(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Url {
        Url::parse("https://hub.example/.well-known/mercure").unwrap()
    }

    #[test]
    fn the_hub_path_and_below_are_reserved_whatever_the_scheme_or_authority() {
        for topic in [
            "https://hub.example/.well-known/mercure",
            "https://hub.example/.well-known/mercure/subscriptions/a/b",
            "https://other.example/.well-known/mercure/subscriptions",
            "http://hub.example:8080/.well-known/mercure/",
            "/.well-known/mercure/subscriptions",
            "mercure/subscriptions",
            "mercure",
            "/.well-known/%6Dercure/x",
            "/.well-known/%6dercure",
            "/.well-known/mercure/../mercure/x",
            "/.well-known/x/%2e%2e/mercure/y",
            "/a/../.well-known/mercure/y",
            "foo:/.well-known/mercure/x",
        ] {
            assert!(is_reserved_topic(topic, &hub()), "{topic:?} passed");
        }
    }

    #[test]
    fn neighbours_of_the_namespace_are_not_reserved() {
        for topic in [
            "https://example.com/books/1",
            "https://hub.example/.well-known/mercurex",
            "https://hub.example/.well-known/mercure-other/x",
            "https://hub.example/.well-known/mercure%2Fsubscriptions",
            "https://hub.example/other/.well-known/mercure",
            "/.well-known/mercury",
            "chat",
            "urn:uuid:0b7e4b8e",
            "~mercure",
            "http://[::1",
        ] {
            assert!(!is_reserved_topic(topic, &hub()), "{topic:?} was refused");
        }
    }
}
