//! Writes HTTP/1.1 request heads (and bodies) into one buffer, so each
//! request leaves in a single `write_all`.

use super::url::HttpUrl;

/// A header sent with every request of one kind, e.g. `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl Header {
    /// Parses `Name: value` as given on the command line.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("header {text:?} is not `Name: value`"))?;
        let name = name.trim();
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            anyhow::bail!("header {text:?} has an invalid name");
        }
        Ok(Self {
            name: name.to_owned(),
            value: value.trim().to_owned(),
        })
    }
}

/// `GET` of an SSE stream. `Cache-Control: no-cache` is what EventSource
/// sends; some servers switch to streaming mode on `Accept` alone. A
/// reconnect carries the last event id seen, as EventSource does.
pub fn sse_get(url: &HttpUrl, headers: &[Header], last_event_id: &[u8]) -> Vec<u8> {
    let mut request = head("GET", url, headers);
    if !last_event_id.is_empty() {
        request.extend_from_slice(b"Last-Event-ID: ");
        request.extend_from_slice(last_event_id);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n");
    request
}

/// `POST` with a body and its content type, on a keep-alive connection.
pub fn post(url: &HttpUrl, content_type: &str, body: &[u8], headers: &[Header]) -> Vec<u8> {
    let mut request = head("POST", url, headers);
    request.extend_from_slice(
        format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    request.extend_from_slice(body);
    request
}

fn head(method: &str, url: &HttpUrl, headers: &[Header]) -> Vec<u8> {
    let mut request = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\n",
        url.target, url.authority
    )
    .into_bytes();
    for header in headers {
        request.extend_from_slice(format!("{}: {}\r\n", header.name, header.value).as_bytes());
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_sse_get_with_extra_headers() {
        let url = HttpUrl::parse("http://127.0.0.1:8081/sub/a").unwrap();
        let request = sse_get(
            &url,
            &[Header::parse("Authorization: Bearer k").unwrap()],
            b"",
        );
        assert_eq!(
            String::from_utf8(request).unwrap(),
            "GET /sub/a HTTP/1.1\r\nHost: 127.0.0.1:8081\r\nAuthorization: Bearer k\r\n\
             Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        );
    }

    #[test]
    fn a_reconnect_sends_the_last_event_id() {
        let url = HttpUrl::parse("http://h:1/sub/a").unwrap();
        let request = String::from_utf8(sse_get(&url, &[], b"3-41")).unwrap();
        assert!(
            request.contains("\r\nLast-Event-ID: 3-41\r\nAccept: text/event-stream\r\n"),
            "{request}"
        );
    }

    #[test]
    fn writes_a_post_with_length_and_body() {
        let url = HttpUrl::parse("http://h:1/pub/a").unwrap();
        let request = post(&url, "text/plain", b"abc", &[]);
        assert_eq!(
            String::from_utf8(request).unwrap(),
            "POST /pub/a HTTP/1.1\r\nHost: h:1\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc"
        );
    }

    #[test]
    fn header_parsing_trims_and_validates() {
        assert_eq!(
            Header::parse(" X-Key :  v a ").unwrap(),
            Header {
                name: "X-Key".into(),
                value: "v a".into()
            }
        );
        assert!(Header::parse("no colon").is_err());
        assert!(Header::parse("bad name: v").is_err());
    }
}
