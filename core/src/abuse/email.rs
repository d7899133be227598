//! Email destinations: the disposable-domain list. An address at a domain
//! that hands out throwaway mailboxes proves nothing about a person, so no
//! code is sent there (the pumping guard is for phones: nobody bills per email).

use serde::{Deserialize, Deserializer};
use verifyd_providers::domain::EmailAddress;

/// Well-known throwaway-mailbox services, used unless `abuse.disposable_email_domains`
/// is set (an empty list turns the check off).
const DEFAULT: &[&str] = &[
    "10minutemail.com",
    "discard.email",
    "dispostable.com",
    "getnada.com",
    "guerrillamail.com",
    "mailinator.com",
    "maildrop.cc",
    "sharklasers.com",
    "temp-mail.org",
    "throwawaymail.com",
    "trashmail.com",
    "yopmail.com",
];

/// Domains whose addresses get no code; a subdomain of one is refused too.
/// Kept in the form addresses are: lowercase ASCII (`xn--…` for an IDN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisposableDomains(Vec<String>);

impl Default for DisposableDomains {
    fn default() -> Self {
        DisposableDomains(DEFAULT.iter().map(|d| (*d).to_owned()).collect())
    }
}

impl DisposableDomains {
    /// Each entry must be a domain an address could have.
    pub fn parse(domains: &[String]) -> Result<Self, String> {
        let ascii = domains
            .iter()
            .map(|d| {
                EmailAddress::parse(&format!("x@{}", d.trim()))
                    .map(|a| a.domain().to_owned())
                    .map_err(|_| format!("abuse.disposable_email_domains: {d:?} is not a domain name"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DisposableDomains(ascii))
    }

    pub fn refuses(&self, email: &EmailAddress) -> bool {
        let domain = email.domain();
        self.0.iter().any(|d| domain == d || domain.strip_suffix(d.as_str()).is_some_and(|rest| rest.ends_with('.')))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for DisposableDomains {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DisposableDomains::parse(&Vec::<String>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(address: &str) -> EmailAddress {
        EmailAddress::parse(address).unwrap()
    }

    #[test]
    fn refuses_a_listed_domain_and_its_subdomains_only() {
        let list = DisposableDomains::default();
        assert!(list.refuses(&email("x@mailinator.com")));
        assert!(list.refuses(&email("x@eu.MAILINATOR.com")));
        assert!(!list.refuses(&email("x@notmailinator.com")));
        assert!(!list.refuses(&email("x@gmail.com")));
        let own = DisposableDomains::parse(&["Bücher.example".to_owned()]).unwrap();
        assert!(own.refuses(&email("x@bücher.example")));
        assert!(DisposableDomains::parse(&["not a domain".to_owned()]).is_err());
        assert!(DisposableDomains::parse(&[]).unwrap().is_empty());
    }
}
