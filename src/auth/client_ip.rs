//! Which address a request comes from: the socket peer, unless the peer is a trusted proxy; then
//! the right-most `X-Forwarded-For` entry that is not a trusted proxy. Entries left of that one
//! were written by whoever the client was, so they are never believed.

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

pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|header| header.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return ip,
            // A garbled entry: stop at the last address we could trust.
            Err(_) => return client,
        }
    }
    client
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
            client_ip(ip("203.0.113.9"), &["198.51.100.1"], &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = parse_cidrs(&["10.0.0.0/8".into(), "192.0.2.7".into()]).expect("cidrs");
        // The client forged the first entry; the proxies appended the real one.
        let forwarded = ["1.1.1.1, 198.51.100.23", "192.0.2.7"];
        assert_eq!(
            client_ip(ip("10.1.2.3"), &forwarded, &trusted),
            ip("198.51.100.23")
        );
        assert_eq!(client_ip(ip("10.1.2.3"), &[], &trusted), ip("10.1.2.3"));
    }

    #[test]
    fn bad_cidrs_are_named() {
        let err = parse_cidrs(&["10.0.0.0/33".into()]).expect_err("invalid");
        assert!(err.contains("10.0.0.0/33"));
    }
}
