//! Identifiers that arrive from callers, parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// 1 to 128 characters, none of them a control character: the shape of every
/// name a caller gives verifyd for its own things.
fn printable(input: &str) -> bool {
    !input.is_empty() && input.chars().count() <= 128 && !input.chars().any(char::is_control)
}

/// The caller's own id for one of its users: 1–128 printable characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("account_id must be 1 to 128 printable characters")]
pub struct AccountIdError;

impl AccountId {
    pub fn parse(input: &str) -> Result<Self, AccountIdError> {
        if !printable(input) {
            return Err(AccountIdError);
        }
        Ok(AccountId(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.0)
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        AccountId::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A caller's name for one of its things: 1–128 printable characters, parsed
/// once at the edge.
macro_rules! printable_name {
    ($(#[$doc:meta])* $name:ident, $error:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        #[derive(Debug, thiserror::Error, PartialEq, Eq)]
        #[error("must be 1 to 128 printable characters")]
        pub struct $error;

        impl $name {
            pub fn parse(input: &str) -> Result<Self, $error> {
                if !printable(input) {
                    return Err($error);
                }
                Ok($name(input.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

printable_name!(
    /// The caller's own id for an organisation its accounts belong to (whose
    /// policy decides whether a login needs a second factor).
    OrganisationId,
    OrganisationIdError
);

printable_name!(
    /// The name an authenticator app shows for a factor.
    Label,
    LabelError
);

/// The tenant a request acts for, as established by its API key (HTTP) or the
/// routing key it was published with (AMQP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
}

/// Who made a change, for the audit trail: the person as the backend names them
/// (the user themself, or an admin), and the API key the backend called with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub actor: AccountId,
    pub api_key_id: Option<String>,
}

/// Where the outcome of an AMQP request goes besides the events exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub queue: String,
    pub correlation_id: Option<String>,
}

/// Whose operations a caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// A deployment operator key: every tenant, and what belongs to none
    /// (a malformed message, an unknown tenant's request).
    Deployment,
    /// A tenant key with the `ops` scope: that tenant's letters and deliveries only.
    Tenant(Tenant),
}

impl View {
    /// The tenant every query is cut down to, if any.
    pub fn tenant_id(&self) -> Option<Uuid> {
        match self {
            View::Deployment => None,
            View::Tenant(t) => Some(t.id),
        }
    }

    pub fn tenant_name(&self) -> Option<&str> {
        match self {
            View::Deployment => None,
            View::Tenant(t) => Some(&t.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_bounded_and_printable() {
        assert!(AccountId::parse("user-42").is_ok());
        assert!(AccountId::parse("").is_err());
        assert!(AccountId::parse(&"x".repeat(129)).is_err());
        assert!(AccountId::parse("a\nb").is_err());
    }

    #[test]
    fn organisation_ids_and_labels_have_the_same_shape() {
        assert!(OrganisationId::parse("acme-eu").is_ok());
        assert!(OrganisationId::parse("").is_err());
        assert!(OrganisationId::parse("a\u{0}b").is_err());
        assert!(Label::parse(&"é".repeat(128)).is_ok(), "characters, not bytes");
        assert!(Label::parse(&"é".repeat(129)).is_err());
        assert!(Label::parse("Ada\t").is_err());
    }
}
