//! Which address a request comes from: the socket peer, unless the peer is a trusted proxy; then
//! the right-most `X-Forwarded-For` entry that is not a trusted proxy. Entries left of that one
//! were written by whoever the client was, so they are never believed.
//!
//! Fails closed: a hop that is not an IP address (not text, empty, garbage) reached while walking
//! from the right means the client cannot be told, and the answer is `None`, never the address of
//! the proxy that forwarded it (which an allow-list may well admit).

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses CIDRs (a bare address is a /32 or /128), naming the one that fails.
pub fn parse_cidrs(items: &[String]) -> Result<Vec<IpNet>, String> {
    items
        .iter()
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an IP address or CIDR range"))
        })
        .collect()
}

/// The client's address from the peer and the raw `X-Forwarded-For` header lines (bytes, since a
/// client may send any byte and a proxy appends to it as it is); `None` when a malformed hop stands
/// where the client's address should be.
/// Whether `client` is known and inside one of `nets`. An unknown client is outside any list;
/// callers decide what an empty list means (for both allow-lists: anyone).
pub fn within(nets: &[IpNet], client: Option<IpAddr>) -> bool {
    client.is_some_and(|ip| nets.iter().any(|net| net.contains(&ip)))
}

pub fn client_ip(peer: IpAddr, forwarded_for: &[&[u8]], trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|header| header.split(|b| *b == b','))
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(&ip) => client = ip,
            Some(ip) => return Some(ip),
            // Whoever wrote this hop is the client or lies about it: nobody can be named.
            None => return None,
        }
    }
    Some(client)
}

fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(hop).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = parse_cidrs(&["10.0.0.0/8".into()]).expect("cidrs");
        assert_eq!(
            client_ip(ip("203.0.113.9"), &[b"198.51.100.1"], &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &[b"\xff"], &trusted),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = parse_cidrs(&["10.0.0.0/8".into(), "192.0.2.7".into()]).expect("cidrs");
        // The client forged the first entry; the proxies appended the real one.
        let forwarded: [&[u8]; 2] = [b"1.1.1.1, 198.51.100.23", b"192.0.2.7"];
        assert_eq!(
            client_ip(ip("10.1.2.3"), &forwarded, &trusted),
            Some(ip("198.51.100.23"))
        );
        assert_eq!(
            client_ip(ip("10.1.2.3"), &[], &trusted),
            Some(ip("10.1.2.3"))
        );
    }

    #[test]
    fn a_malformed_hop_where_the_client_should_be_names_nobody() {
        let trusted = parse_cidrs(&["10.0.0.0/8".into()]).expect("cidrs");
        let peer = ip("10.1.2.3");
        for garbled in [
            &b"\xff"[..],
            b"\xff, 10.0.0.9",
            b"",
            b"203.0.113.7,",
            b"not-an-address",
            b"10.0.0.9, ,10.0.0.8",
        ] {
            assert_eq!(client_ip(peer, &[garbled], &trusted), None, "{garbled:?}");
        }
        // A garbled hop left of the client's address was the client's own writing: ignored.
        assert_eq!(
            client_ip(peer, &[b"\xff, 203.0.113.7"], &trusted),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn bad_cidrs_are_named() {
        let err = parse_cidrs(&["10.0.0.0/33".into()]).expect_err("invalid");
        assert!(err.contains("10.0.0.0/33"));
    }
}
