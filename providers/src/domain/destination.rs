use std::fmt;

use super::channel::DestinationKind;
use super::{EmailAddress, EmailParseError, PhoneNumber, PhoneParseError};

/// Where a code goes: a phone number (SMS, voice) or an email address. A
/// verification holds one; its channel says which kind.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Phone(PhoneNumber),
    Email(EmailAddress),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DestinationParseError {
    #[error(transparent)]
    Phone(#[from] PhoneParseError),
    #[error(transparent)]
    Email(#[from] EmailParseError),
}

impl Destination {
    pub fn kind(&self) -> DestinationKind {
        match self {
            Destination::Phone(_) => DestinationKind::Phone,
            Destination::Email(_) => DestinationKind::Email,
        }
    }

    /// The form stored and announced: `+E.164`, or the address with its
    /// domain in ASCII.
    pub fn as_str(&self) -> &str {
        match self {
            Destination::Phone(phone) => phone.e164(),
            Destination::Email(email) => email.as_str(),
        }
    }

    /// For logs: `+1415*****71`, `a***@example.com`.
    pub fn masked(&self) -> String {
        match self {
            Destination::Phone(phone) => phone.masked(),
            Destination::Email(email) => email.masked(),
        }
    }

    pub fn phone(&self) -> Option<&PhoneNumber> {
        match self {
            Destination::Phone(phone) => Some(phone),
            Destination::Email(_) => None,
        }
    }

    pub fn email(&self) -> Option<&EmailAddress> {
        match self {
            Destination::Email(email) => Some(email),
            Destination::Phone(_) => None,
        }
    }

    /// The destination country of a phone; `None` for an email address.
    pub fn country(&self) -> Option<&str> {
        self.phone().and_then(PhoneNumber::country)
    }

    /// Reads back what [`Destination::as_str`] stored, as `kind`.
    pub fn from_stored(kind: DestinationKind, stored: &str) -> Result<Self, DestinationParseError> {
        Ok(match kind {
            DestinationKind::Phone => Destination::Phone(PhoneNumber::from_stored(stored)?),
            DestinationKind::Email => Destination::Email(EmailAddress::parse(stored)?),
        })
    }
}

impl From<PhoneNumber> for Destination {
    fn from(phone: PhoneNumber) -> Self {
        Destination::Phone(phone)
    }
}

impl From<EmailAddress> for Destination {
    fn from(email: EmailAddress) -> Self {
        Destination::Email(email)
    }
}

/// Masked, like its parts.
impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Phone(phone) => phone.fmt(f),
            Destination::Email(email) => email.fmt(f),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_reads_back_each_kind() {
        let phone = Destination::from(PhoneNumber::parse("+14155552671").unwrap());
        let email = Destination::from(EmailAddress::parse("Ada@Bücher.example").unwrap());
        assert_eq!(email.as_str(), "Ada@xn--bcher-kva.example");
        for d in [&phone, &email] {
            assert_eq!(Destination::from_stored(d.kind(), d.as_str()).as_ref(), Ok(d));
        }
        assert_eq!(phone.country(), Some("US"));
        assert_eq!(email.country(), None);
        assert!(!format!("{email:?}").contains("Ada@"));
        assert!(Destination::from_stored(DestinationKind::Email, "+14155552671").is_err());
    }
}
