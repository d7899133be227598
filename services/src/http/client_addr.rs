//! The address a request comes from: the TCP peer, unless the peer is one of
//! `http.trusted_proxies`. Then `X-Forwarded-For` is read from the right, each
//! trusted proxy's entry skipped, and the first address that is not a trusted
//! proxy is the client: entries further left were written by whoever sent the
//! request, and could be anything. An entry that is not an address ends the
//! walk: the hop to its right is the client.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

use crate::api_keys::canonical;

/// The client address of a request; `None` when the peer is unknown.
pub fn of(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let forwarded: Vec<&str> = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
    Some(resolve(peer, &forwarded, trusted))
}

/// `forwarded`: the `X-Forwarded-For` header lines in the order received.
pub fn resolve(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = canonical(peer);
    if !is_trusted(&client) {
        return client;
    }
    for entry in forwarded.iter().rev().flat_map(|line| line.rsplit(',')) {
        let Ok(hop) = entry.trim().parse::<IpAddr>().map(canonical) else {
            break;
        };
        client = hop;
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(resolve(ip("203.0.113.5"), &["10.0.0.1"], &[]), ip("203.0.113.5"));
        assert_eq!(resolve(ip("203.0.113.5"), &["10.0.0.1"], &nets(&["127.0.0.0/8"])), ip("203.0.113.5"));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["127.0.0.0/8", "10.9.0.0/16"]);
        assert_eq!(resolve(ip("127.0.0.1"), &["198.51.100.7"], &trusted), ip("198.51.100.7"));
        // The left-most entry was written by the client: ignored.
        assert_eq!(resolve(ip("127.0.0.1"), &["6.6.6.6, 198.51.100.7, 10.9.1.1"], &trusted), ip("198.51.100.7"));
        // Several header lines read as one list.
        assert_eq!(resolve(ip("127.0.0.1"), &["6.6.6.6", "198.51.100.7", "10.9.1.1"], &trusted), ip("198.51.100.7"));
        // Every hop trusted: the left-most.
        assert_eq!(resolve(ip("127.0.0.1"), &["10.9.0.3, 10.9.1.1"], &trusted), ip("10.9.0.3"));
        // No header: the proxy itself.
        assert_eq!(resolve(ip("127.0.0.1"), &[], &trusted), ip("127.0.0.1"));
        // Garbage ends the walk at the last real hop.
        assert_eq!(resolve(ip("127.0.0.1"), &["198.51.100.7, nonsense, 10.9.1.1"], &trusted), ip("10.9.1.1"));
        assert_eq!(resolve(ip("::ffff:127.0.0.1"), &["::ffff:198.51.100.7"], &trusted), ip("198.51.100.7"));
    }
}
