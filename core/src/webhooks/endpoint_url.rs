//! The URL of a webhook endpoint, parsed once where it enters: `https://`
//! (plain `http://` only where the deployment allows it, in development), a
//! host, no user name or password, no fragment, at most 2048 bytes. In
//! production a host that names this machine or a private network as an
//! address (`127.0.0.1`, `10.…`, `[::1]`, `localhost`) is refused, so an API
//! key cannot point verifyd's POSTs at its own neighbours. A name that
//! resolves to such an address is not caught here (decision 131).

use std::net::IpAddr;

/// The longest URL an endpoint may have.
pub const MAX_LEN: usize = 2048;

/// What the deployment lets an endpoint URL be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlRules {
    /// `http://` accepted (development mode with `webhooks.allow_http`).
    pub allow_http: bool,
    /// Loopback, private and link-local addresses accepted (development mode).
    pub allow_private: bool,
}

impl UrlRules {
    pub const PRODUCTION: UrlRules = UrlRules { allow_http: false, allow_private: false };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    pub fn parse(text: &str, rules: UrlRules) -> Result<EndpointUrl, &'static str> {
        if text.len() > MAX_LEN {
            return Err("at most 2048 bytes");
        }
        let url = reqwest::Url::parse(text).map_err(|_| "not an absolute URL (https://host/path)")?;
        match url.scheme() {
            "https" => {}
            "http" if rules.allow_http => {}
            "http" => return Err("must be https:// (http:// is accepted in development mode only)"),
            _ => return Err("must be an https:// URL"),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not hold a user name or password: put a token in the path or query instead");
        }
        if url.fragment().is_some() {
            return Err("must not have a #fragment");
        }
        let Some(host) = url.host_str() else { return Err("must name a host") };
        if !rules.allow_private {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let near = match bare.parse::<IpAddr>() {
                Ok(ip) => is_near(ip),
                Err(_) => {
                    let d = bare.trim_end_matches('.').to_ascii_lowercase();
                    d == "localhost" || d.ends_with(".localhost")
                }
            };
            if near {
                return Err("must not be this machine or a private network (loopback, private, link-local)");
            }
        }
        // As written back (a `/` added, a name lowercased or punycoded), it
        // must still fit.
        let url: String = url.into();
        if url.len() > MAX_LEN {
            return Err("at most 2048 bytes");
        }
        Ok(EndpointUrl(url))
    }

    /// An endpoint URL read back from the database (parsed when it was saved).
    pub fn from_stored(text: String) -> EndpointUrl {
        EndpointUrl(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its host, for logs and audit: the path or query may carry the receiver's token.
    pub fn host(&self) -> String {
        host_of(&self.0)
    }
}

/// The host of a URL, or `-`.
pub fn host_of(url: &str) -> String {
    reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_else(|| "-".to_owned())
}

/// Loopback, private, link-local, unspecified or otherwise not a public address.
fn is_near(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let first = a.segments()[0];
            a.is_loopback()
                || a.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || a.to_ipv4_mapped().is_some_and(|v4| is_near(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: UrlRules = UrlRules { allow_http: true, allow_private: true };

    #[test]
    fn production_takes_public_https_only() {
        let ok = EndpointUrl::parse("https://hooks.example.com/verifyd?token=abc", UrlRules::PRODUCTION);
        assert_eq!(ok.map(|u| u.host()), Ok("hooks.example.com".to_owned()));
        for bad in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#x",
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://192.168.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://localhost:8080/",
            "https://api.localhost/",
            "hooks.example.com/path",
        ] {
            assert!(EndpointUrl::parse(bad, UrlRules::PRODUCTION).is_err(), "{bad} must be refused");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_LEN));
        assert!(EndpointUrl::parse(&long, UrlRules::PRODUCTION).is_err());
        // 2048 as written, 2049 once the path's `/` is added.
        let grows = format!("https://example.com?{}", "a".repeat(MAX_LEN - 20));
        assert_eq!(grows.len(), MAX_LEN);
        assert!(EndpointUrl::parse(&grows, UrlRules::PRODUCTION).is_err());
    }

    #[test]
    fn development_may_reach_a_local_receiver() {
        let url = EndpointUrl::parse("http://127.0.0.1:9000/hook", DEV).map(|u| u.as_str().to_owned());
        assert_eq!(url, Ok("http://127.0.0.1:9000/hook".to_owned()));
        assert!(EndpointUrl::parse("https://u@127.0.0.1/", DEV).is_err(), "credentials never");
    }
}
