//! `listen`: the address the hub binds to, an IP address or a host name
//! with a port (`127.0.0.1:8080`, `[::]:8080`, `localhost:8090`). A host
//! name is resolved when the hub binds, not when the configuration is read,
//! so `--print-config` shows what was written.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a `listen` value looks like, for error messages.
pub const LISTEN_EXAMPLES: &str =
    "HOST:PORT, e.g. \"127.0.0.1:8080\", \"0.0.0.0:8080\", \"[::]:8080\" or \"localhost:8080\"";

/// A host (IP address or name) and a port; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ListenAddress {
    /// An IP address (IPv6 without brackets) or a host name.
    host: String,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an address to listen on; expected {LISTEN_EXAMPLES}")]
pub struct InvalidListenAddress {
    value: String,
}

impl ListenAddress {
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket addresses the host resolves to (an IP address is itself).
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let addresses: Vec<SocketAddr> = self.to_socket_addrs()?.collect();
        if addresses.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.host),
            ));
        }
        Ok(addresses)
    }
}

impl From<SocketAddr> for ListenAddress {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl FromStr for ListenAddress {
    type Err = InvalidListenAddress;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let invalid = || InvalidListenAddress {
            value: text.to_owned(),
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        // A DNS name (RFC 1123 labels); anything else with a colon or a
        // bracket was meant as an IP address and is not one.
        let is_name = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !is_name {
            return Err(invalid());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl TryFrom<String> for ListenAddress {
    type Error = InvalidListenAddress;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<ListenAddress> for String {
    fn from(address: ListenAddress) -> Self {
        address.to_string()
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl ToSocketAddrs for ListenAddress {
    type Iter = std::vec::IntoIter<SocketAddr>;

    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        (self.host.as_str(), self.port).to_socket_addrs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_and_host_names_are_accepted() {
        for (text, host, port) in [
            ("127.0.0.1:8080", "127.0.0.1", 8080),
            ("[::]:8080", "::", 8080),
            ("localhost:8090", "localhost", 8090),
            ("ssehub.default.svc:80", "ssehub.default.svc", 80),
        ] {
            let address: ListenAddress = text.parse().unwrap();
            assert_eq!((address.host(), address.port()), (host, port), "{text}");
            assert_eq!(address.to_string(), text);
        }
    }

    #[test]
    fn what_is_no_address_is_refused_with_examples() {
        for text in [
            "localhost",
            "localhost:http",
            ":8080",
            "local host:80",
            "[::1:80",
            "a..b:1",
        ] {
            let error = text.parse::<ListenAddress>().unwrap_err().to_string();
            assert!(error.contains("\"localhost:8080\""), "{text}: {error}");
        }
    }

    #[test]
    fn localhost_resolves_to_a_loopback_address() {
        let address: ListenAddress = "localhost:0".parse().unwrap();
        let resolved = address.resolve().unwrap();
        assert!(
            resolved.iter().all(|addr| addr.ip().is_loopback()),
            "{resolved:?}"
        );
    }
}
