use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An email address a code can be sent to: `local@domain`, parsed once at
/// the edge. The local part is an RFC 5322 dot-atom in ASCII (1–64 octets,
/// kept as typed: only the receiving server may fold its case); the domain
/// has at least two labels and may be internationalised, and is kept in its
/// lowercase ASCII form (`xn--…` for an IDN, by UTS #46 with the STD3 rules),
/// which is what SMTP, the providers and the per-domain limits use. The whole
/// address is at most 254 octets (RFC 5321's path limit). Quoted local parts,
/// comments, IP literals and non-ASCII local parts (SMTPUTF8) are refused:
/// few providers deliver them, and a code must arrive.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    address: String,
    at: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmailParseError {
    #[error("email must be one address of the form local@domain")]
    Shape,
    #[error(
        "email's part before the @ must be 1 to 64 letters, digits, dots (not first, last or doubled) or !#$%&'*+/=?^_`{{|}}~-"
    )]
    Local,
    #[error("email's domain must be a domain name with at least two labels")]
    Domain,
    #[error("email must be at most 254 characters")]
    TooLong,
}

const MAX_ADDRESS: usize = 254;
const MAX_LOCAL: usize = 64;

fn atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b)
}

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, EmailParseError> {
        let (local, domain) = input.rsplit_once('@').ok_or(EmailParseError::Shape)?;
        if local.is_empty() || domain.is_empty() || local.contains('@') {
            return Err(EmailParseError::Shape);
        }
        if local.len() > MAX_LOCAL
            || !local.bytes().all(|b| atext(b) || b == b'.')
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(EmailParseError::Local);
        }
        let domain = ascii_domain(domain)?;
        let address = format!("{local}@{domain}");
        if address.len() > MAX_ADDRESS {
            return Err(EmailParseError::TooLong);
        }
        Ok(EmailAddress { at: local.len(), address })
    }

    /// `ada@example.com`, the domain in its ASCII form.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    pub fn local_part(&self) -> &str {
        &self.address[..self.at]
    }

    /// The domain in lowercase ASCII (`xn--bcher-kva.example` for
    /// `bücher.example`): what per-domain limits and the disposable list key on.
    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }

    /// The address with the local part hidden but its first character: for
    /// logs and spans (`a***@example.com`).
    pub fn masked(&self) -> String {
        let first = self.local_part().chars().next().unwrap_or('*');
        format!("{first}***@{}", self.domain())
    }
}

/// Every `local@domain.tld`: the local part hidden but its first character,
/// as `EmailAddress::masked` writes addresses in logs (`a***@example.com`).
pub fn mask_addresses(text: &str) -> String {
    let local_char = |c: char| c.is_alphanumeric() || ".!#$%&'*+/=?^_`{|}~-".contains(c);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut start = 0;
    for at in (0..chars.len()).filter(|i| chars[*i] == '@') {
        let mut local = at;
        while local > start && local_char(chars[local - 1]) {
            local -= 1;
        }
        let domain: String =
            chars[at + 1..].iter().take_while(|c| c.is_alphanumeric() || **c == '-' || **c == '.').collect();
        if local == at || !domain.contains('.') {
            continue;
        }
        out.extend(&chars[start..=local]);
        out.push_str("***");
        start = at;
    }
    out.extend(&chars[start..]);
    out
}

/// The domain's ASCII form, refused when it is not a domain name one can
/// send mail to: no IP literal, no single label, no all-numeric top label.
fn ascii_domain(domain: &str) -> Result<String, EmailParseError> {
    if domain.starts_with('[') || domain.ends_with('.') || domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EmailParseError::Domain);
    }
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| EmailParseError::Domain)?;
    let labels: Vec<&str> = ascii.split('.').collect();
    let top = labels.last().copied().unwrap_or_default();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) || top.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EmailParseError::Domain);
    }
    Ok(ascii)
}

/// Debug shows the masked form so a `{:?}` in a log line never carries the address.
impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.masked())
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

impl FromStr for EmailAddress {
    type Err = EmailParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EmailAddress::parse(s)
    }
}

impl Serialize for EmailAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.address)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        EmailAddress::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_local_part_as_typed_and_lowercases_the_domain() {
        let a = EmailAddress::parse("Ada.Lovelace+2fa@Example.COM").unwrap();
        assert_eq!(a.as_str(), "Ada.Lovelace+2fa@example.com");
        assert_eq!((a.local_part(), a.domain()), ("Ada.Lovelace+2fa", "example.com"));
        assert_eq!(EmailAddress::parse("o'brien@mail.example.ie").unwrap().local_part(), "o'brien");
    }

    #[test]
    fn an_internationalised_domain_is_kept_in_its_ascii_form() {
        let a = EmailAddress::parse("kunde@bücher.example").unwrap();
        assert_eq!(a.domain(), "xn--bcher-kva.example");
        assert_eq!(a, EmailAddress::parse("kunde@xn--bcher-kva.example").unwrap(), "one address, two spellings");
        assert_eq!(EmailAddress::parse("user@例え.テスト").unwrap().domain(), "xn--r8jz45g.xn--zckzah");
    }

    #[test]
    fn refuses_what_is_not_one_plain_address() {
        for (bad, why) in [
            ("", EmailParseError::Shape),
            ("ada", EmailParseError::Shape),
            ("@example.com", EmailParseError::Shape),
            ("ada@", EmailParseError::Shape),
            ("a@b@example.com", EmailParseError::Shape),
            (".ada@example.com", EmailParseError::Local),
            ("ada.@example.com", EmailParseError::Local),
            ("a..da@example.com", EmailParseError::Local),
            ("\"ada\"@example.com", EmailParseError::Local),
            ("ada lovelace@example.com", EmailParseError::Local),
            ("adä@example.com", EmailParseError::Local),
            (" ada@example.com", EmailParseError::Local),
            ("ada@localhost", EmailParseError::Domain),
            ("ada@[192.0.2.1]", EmailParseError::Domain),
            ("ada@192.0.2.1", EmailParseError::Domain),
            ("ada@example.com.", EmailParseError::Domain),
            ("ada@exa mple.com", EmailParseError::Domain),
            ("ada@example.com ", EmailParseError::Domain),
            ("ada@-example.com", EmailParseError::Domain),
            ("ada@exa_mple.com", EmailParseError::Domain),
            ("ada@example..com", EmailParseError::Domain),
        ] {
            assert_eq!(EmailAddress::parse(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn length_limits_are_those_of_smtp() {
        let local = "a".repeat(64);
        assert!(EmailAddress::parse(&format!("{local}@example.com")).is_ok());
        assert_eq!(EmailAddress::parse(&format!("a{local}@example.com")), Err(EmailParseError::Local));
        let label = "d".repeat(63);
        let domain = format!("{label}.{label}.{label}.example");
        assert!(EmailAddress::parse(&format!("{local}@{domain}")).is_err(), "over 254 octets in all");
        assert_eq!(EmailAddress::parse(&format!("ada@{}.example", "d".repeat(64))), Err(EmailParseError::Domain));
    }

    #[test]
    fn masks_for_logs() {
        let a = EmailAddress::parse("ada.lovelace@example.com").unwrap();
        assert_eq!(a.masked(), "a***@example.com");
        assert!(!format!("{a:?}").contains("lovelace"));
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"ada.lovelace@example.com\"");
        assert!(serde_json::from_str::<EmailAddress>("\"not an address\"").is_err());
    }
}
