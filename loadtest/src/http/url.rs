//! The few URLs the harness talks to: `http://host[:port]/path?query`.
//!
//! A full URL crate would be overkill: the harness only needs the socket
//! address to dial and the request target to write, and it speaks plain
//! HTTP/1.1 (TLS would measure the cipher, not the fan-out).

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;

const DEFAULT_HTTP_PORT: u16 = 80;

/// An `http://` URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port` as written, for the `Host` header.
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`: the request target.
    pub target: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<Self> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("{url:?}: only http:// URLs are supported");
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], rest[at..].to_owned()),
            Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() {
            bail!("{url:?}: missing host");
        }
        let (host, port) = split_host_port(authority).with_context(|| format!("{url:?}"))?;
        Ok(Self {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            target,
        })
    }

    /// Resolves the host once; every connection of a run dials the same address.
    pub async fn resolve(&self) -> Result<SocketAddr> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        tokio::net::lookup_host((host, self.port))
            .await
            .with_context(|| format!("resolving {}", self.host))?
            .next()
            .with_context(|| format!("{} resolves to no address", self.host))
    }
}

fn split_host_port(authority: &str) -> Result<(&str, u16)> {
    // An IPv6 literal carries colons of its own: `[::1]:8080`.
    let port_colon = match authority.rfind(']') {
        Some(bracket) => authority[bracket..].find(':').map(|at| bracket + at),
        None => authority.rfind(':'),
    };
    match port_colon {
        Some(at) => {
            let port = authority[at + 1..]
                .parse()
                .with_context(|| format!("bad port in {authority:?}"))?;
            Ok((&authority[..at], port))
        }
        None => Ok((authority, DEFAULT_HTTP_PORT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_port_and_target() {
        let url = HttpUrl::parse("http://127.0.0.1:8080/v1/events?topic=a").unwrap();
        assert_eq!(url.host, "127.0.0.1");
        assert_eq!(url.port, 8080);
        assert_eq!(url.authority, "127.0.0.1:8080");
        assert_eq!(url.target, "/v1/events?topic=a");
    }

    #[test]
    fn defaults_port_and_path() {
        let url = HttpUrl::parse("http://localhost").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.target.as_str()),
            ("localhost", 80, "/")
        );
        let url = HttpUrl::parse("http://localhost?x=1").unwrap();
        assert_eq!(url.target, "/?x=1");
    }

    #[test]
    fn accepts_ipv6_literals() {
        let url = HttpUrl::parse("http://[::1]:9000/sub/a").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("[::1]", 9000));
    }

    #[test]
    fn rejects_other_schemes_and_bad_ports() {
        assert!(HttpUrl::parse("https://example.org/").is_err());
        assert!(HttpUrl::parse("http://host:port/").is_err());
        assert!(HttpUrl::parse("http:///path").is_err());
    }
}
