//! Where a key may be used from: a list of networks (CIDR), or anywhere when
//! the list is empty.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedSources(Vec<IpNet>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a network (10.0.0.0/8, 2001:db8::/32) or an address")]
pub struct BadCidr(pub String);

impl AllowedSources {
    /// Networks as given (`10.0.0.0/8`, `2001:db8::/32`) or single addresses
    /// (`192.0.2.7`). Bits right of the prefix are cleared (`10.1.2.3/8` is
    /// `10.0.0.0/8`); repeats are dropped.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<AllowedSources, BadCidr> {
        let mut nets: Vec<IpNet> = Vec::with_capacity(items.len());
        for item in items {
            let raw = item.as_ref();
            let net = raw
                .parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| raw.parse::<IpAddr>().map(|ip| IpNet::from(canonical(ip))))
                .map_err(|_| BadCidr(raw.to_owned()))?;
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        Ok(AllowedSources(nets))
    }

    pub fn anywhere(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a request from `client` is accepted. An unknown address is
    /// accepted only by a key without a list.
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        match client {
            _ if self.anywhere() => true,
            Some(ip) => {
                let ip = canonical(ip);
                self.0.iter().any(|net| net.contains(&ip))
            }
            None => false,
        }
    }

    /// Whether every address `self` allows is also allowed by `outer`.
    pub fn within(&self, outer: &AllowedSources) -> bool {
        outer.anywhere() || (!self.anywhere() && self.0.iter().all(|n| outer.0.iter().any(|o| o.contains(n))))
    }

    /// As stored and shown: `10.0.0.0/8`.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// `::ffff:10.1.2.3` (an IPv4 peer on a dual-stack socket) is `10.1.2.3`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_empty_list_allows_anywhere() {
        let any = AllowedSources::default();
        assert!(any.allows(ip("203.0.113.9")) && any.allows(None));
    }

    #[test]
    fn a_list_allows_only_its_networks() {
        let tens = AllowedSources::parse(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]).unwrap();
        assert!(tens.allows(ip("10.200.1.1")));
        assert!(tens.allows(ip("::ffff:10.0.0.1")), "IPv4-mapped addresses are IPv4");
        assert!(tens.allows(ip("2001:db8::1")));
        assert!(tens.allows(ip("192.0.2.7")));
        assert!(!tens.allows(ip("192.0.2.8")));
        assert!(!tens.allows(ip("127.0.0.1")));
        assert!(!tens.allows(None));
    }

    #[test]
    fn parsing_normalises_and_refuses_garbage() {
        let parsed = AllowedSources::parse(&["10.1.2.3/8", "10.0.0.0/8", "::1"]).unwrap();
        assert_eq!(parsed.names(), ["10.0.0.0/8", "::1/128"]);
        assert_eq!(AllowedSources::parse(&["10.0.0.0/33"]), Err(BadCidr("10.0.0.0/33".into())));
        assert_eq!(AllowedSources::parse(&["example.com"]), Err(BadCidr("example.com".into())));
        assert_eq!(AllowedSources::parse(&[" 10.0.0.0/8"]), Err(BadCidr(" 10.0.0.0/8".into())), "as the document says");
    }

    #[test]
    fn within_means_no_wider() {
        let tens = AllowedSources::parse(&["10.0.0.0/8"]).unwrap();
        let narrow = AllowedSources::parse(&["10.1.0.0/16", "10.2.3.4"]).unwrap();
        let other = AllowedSources::parse(&["10.1.0.0/16", "172.16.0.0/12"]).unwrap();
        let any = AllowedSources::default();
        assert!(narrow.within(&tens));
        assert!(!other.within(&tens));
        assert!(!any.within(&tens), "anywhere is wider than any list");
        assert!(tens.within(&any) && any.within(&any));
    }
}
