//! What the `mercure` target needs beyond URL and body templates: the
//! topic as a Mercure topic (an IRI, form-encoded into the query and the
//! body), the publisher's JWT, and the update id a Mercure hub answers a
//! publish with.
//!
//! The harness still matches deliveries by the payload token in `data`
//! (run, topic, sequence, schedule time), never by ids, so loss, order and
//! latency are judged as for any other target; the ids only travel as
//! `Last-Event-ID` on reconnect, whatever form the hub gives them
//! (`urn:ssehub:<id>` for the ones ssehub makes).

use anyhow::{Result, bail};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// The scenario's topic `lt-<run>-<i>` becomes the Mercure topic
/// `https://example.com/t/lt-<run>-<i>`: an absolute IRI, as Mercure
/// publishers use, that nobody else publishes to.
pub const TOPIC_URI_PREFIX: &str = "https://example.com/t/";

/// The template placeholder for [`encoded_topic_uri`].
pub const TOPIC_URI_PLACEHOLDER: &str = "{topic_uri}";

/// A publish id longer than this is no id a hub would make.
const UPDATE_ID_MAX_BYTES: usize = 1024;

/// The Mercure topic of a scenario topic, form-encoded
/// (`application/x-www-form-urlencoded`, as the query and the publish
/// body both are).
pub fn encoded_topic_uri(topic: &str) -> String {
    form_urlencoded::byte_serialize(format!("{TOPIC_URI_PREFIX}{topic}").as_bytes()).collect()
}

/// A draft-07 publisher token (HS256, as Mercure's `publisher_jwt` default)
/// allowed to publish to every topic: `{"mercure": {"publish": ["*"]}}`.
/// No `exp`: a Mercure hub checks it only when present, and a soak may
/// outlast any expiry picked here.
pub fn publisher_token(secret: &str) -> Result<String> {
    if secret.is_empty() {
        bail!("the Mercure publisher key is empty");
    }
    let claims = serde_json::json!({ "mercure": { "publish": ["*"] } });
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes())?,
    )?)
}

/// The update id in a Mercure hub's answer to a publish: the whole
/// `text/plain` body, one line, not empty. `Err` says what was wrong.
pub fn update_id<'a>(content_type: Option<&str>, body: &'a [u8]) -> Result<&'a str, String> {
    let media_type = content_type
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|media| media.eq_ignore_ascii_case("text/plain")) {
        return Err(format!(
            "the answer is {}, not text/plain",
            content_type.unwrap_or("without a Content-Type")
        ));
    }
    let id = std::str::from_utf8(body)
        .map_err(|_| "the id is not UTF-8".to_owned())?
        .trim();
    if id.is_empty() {
        return Err("the answer has no id".to_owned());
    }
    if id.len() > UPDATE_ID_MAX_BYTES || id.contains(['\r', '\n']) {
        return Err(format!(
            "the answer is no single-line id of at most {UPDATE_ID_MAX_BYTES} bytes"
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn topic_uris_are_form_encoded_and_read_back() {
        let encoded = encoded_topic_uri("lt-r1-2");
        assert_eq!(encoded, "https%3A%2F%2Fexample.com%2Ft%2Flt-r1-2");
        let query = format!("topic={encoded}");
        let decoded: Vec<_> = form_urlencoded::parse(query.as_bytes()).collect();
        assert_eq!(decoded[0].1, "https://example.com/t/lt-r1-2");
    }

    #[test]
    fn the_publisher_token_may_publish_everywhere() {
        let secret = "!ChangeThisMercureHubJWTSecretKey!";
        let token = publisher_token(secret).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(secret.as_bytes()).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.header.alg, Algorithm::HS256);
        assert_eq!(
            decoded.claims,
            serde_json::json!({ "mercure": { "publish": ["*"] } })
        );
        assert!(publisher_token("").is_err());
    }

    #[test]
    fn the_answer_is_a_text_plain_id() {
        assert_eq!(
            update_id(Some("text/plain; charset=utf-8"), b"urn:ssehub:5f3a9c21-1"),
            Ok("urn:ssehub:5f3a9c21-1")
        );
        assert_eq!(update_id(Some("Text/Plain"), b"book-1\n"), Ok("book-1"));
    }

    #[test]
    fn answers_without_an_id_are_named() {
        let error = update_id(Some("application/json"), b"{\"id\":1}").unwrap_err();
        assert!(error.contains("application/json"), "{error}");
        assert!(update_id(None, b"x").unwrap_err().contains("Content-Type"));
        assert!(update_id(Some("text/plain"), b" \r\n").is_err());
        assert!(update_id(Some("text/plain"), b"a\nb").is_err());
        assert!(update_id(Some("text/plain"), &[0xff, 0xfe]).is_err());
        assert!(update_id(Some("text/plain"), &[b'a'; 2000]).is_err());
    }
}
