//! Which address a request comes from, for the per-address rate limits.
//!
//! Behind nginx (or any proxy) the peer of every connection is the proxy, so
//! the client is named in `X-Forwarded-For`. That header is written by
//! whoever sent the request, so it is only believed for hops we trust: when
//! the peer is one of `rate_limits.trusted_proxies`, the list is read from
//! the right (the hop nearest to us) and the first address that is not a
//! trusted proxy is the client. An untrusted peer is the client itself, and
//! whatever it claims in the header is ignored. nginx's
//! `proxy_add_x_forwarded_for` (in `nginx/ssehub.conf`) appends the address
//! it saw, so this finds the real client through any chain of proxies we run.
//!
//! IPv6 clients are keyed by their /64: one host usually holds a whole /64,
//! so a per-address limit on single v6 addresses would be no limit at all.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

/// Prefix length an IPv6 client is keyed by (one subscriber network).
const IPV6_CLIENT_PREFIX: u8 = 64;

/// Proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`) or single addresses (`127.0.0.1`).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is not an address or a CIDR (e.g. 10.0.0.0/8)"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address: `peer` unless it is a trusted proxy, then the
    /// nearest untrusted hop of `forwarded_for` (every `X-Forwarded-For`
    /// header, in order).
    pub fn client_address<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops = forwarded_for.rev().flat_map(|header| header.rsplit(','));
        for hop in hops {
            match hop.trim().parse::<IpAddr>() {
                Ok(address) => {
                    client = address.to_canonical();
                    if !self.trusts(client) {
                        break;
                    }
                }
                // Garbage from beyond the trusted hops: stop at the last
                // hop we could read.
                Err(_) => break,
            }
        }
        client
    }
}

/// The key a client is rate limited by: its address, or its /64 for IPv6.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - u32::from(IPV6_CLIENT_PREFIX));
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let proxies = proxies(&["10.0.0.0/8"]);
        let client = proxies.client_address(ip("203.0.113.9"), ["198.51.100.1"].into_iter());
        assert_eq!(client, ip("203.0.113.9"));
        let nobody = TrustedProxies::default();
        assert_eq!(
            nobody.client_address(ip("127.0.0.1"), ["198.51.100.1"].into_iter()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let proxies = proxies(&["10.0.0.0/8", "127.0.0.1"]);
        // The client forged the first entry; nginx appended the real one.
        let client = proxies.client_address(
            ip("127.0.0.1"),
            ["1.2.3.4, 203.0.113.9", "10.1.2.3"].into_iter(),
        );
        assert_eq!(client, ip("203.0.113.9"));
        // Only trusted hops: the farthest one is all we know.
        let client = proxies.client_address(ip("127.0.0.1"), ["10.1.2.3"].into_iter());
        assert_eq!(client, ip("10.1.2.3"));
        let client = proxies.client_address(ip("127.0.0.1"), std::iter::empty());
        assert_eq!(client, ip("127.0.0.1"));
        let client =
            proxies.client_address(ip("::ffff:127.0.0.1"), ["garbage, 203.0.113.7"].into_iter());
        assert_eq!(client, ip("203.0.113.7"));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(client_key(ip("203.0.113.9")), ip("203.0.113.9"));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["nginx".into()]).is_err());
    }
}
