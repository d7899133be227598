//! Identifiers that arrive from callers, parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The caller's own id for one of its users: 1–128 printable characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("account_id must be 1 to 128 printable characters")]
pub struct AccountIdError;

impl AccountId {
    pub fn parse(input: &str) -> Result<Self, AccountIdError> {
        if input.is_empty() || input.chars().count() > 128 || input.chars().any(char::is_control) {
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
}
