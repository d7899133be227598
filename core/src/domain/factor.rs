//! What a factor is and whether it can answer yet.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use verifyd_providers::domain::Channel;

use super::UnknownValue;

/// What a factor is: a phone reached by SMS or by voice call, an email
/// address, or an authenticator app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    Sms,
    Voice,
    Totp,
    Email,
    /// A phone reached by WhatsApp.
    Whatsapp,
}

impl FactorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Sms => "sms",
            FactorKind::Voice => "voice",
            FactorKind::Totp => "totp",
            FactorKind::Email => "email",
            FactorKind::Whatsapp => "whatsapp",
        }
    }

    /// The channel a factor's codes go by (a phone's, an address's); `None`
    /// for an authenticator, which makes its own.
    pub fn channel(self) -> Option<Channel> {
        match self {
            FactorKind::Sms => Some(Channel::Sms),
            FactorKind::Voice => Some(Channel::Voice),
            FactorKind::Email => Some(Channel::Email),
            FactorKind::Whatsapp => Some(Channel::Whatsapp),
            FactorKind::Totp => None,
        }
    }

    /// The factor a verification by `channel` makes when it is approved.
    pub fn of_channel(channel: Channel) -> FactorKind {
        match channel {
            Channel::Sms => FactorKind::Sms,
            Channel::Voice => FactorKind::Voice,
            Channel::Email => FactorKind::Email,
            Channel::Whatsapp => FactorKind::Whatsapp,
        }
    }
}

impl FromStr for FactorKind {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sms" => Ok(FactorKind::Sms),
            "voice" => Ok(FactorKind::Voice),
            "totp" => Ok(FactorKind::Totp),
            "email" => Ok(FactorKind::Email),
            "whatsapp" => Ok(FactorKind::Whatsapp),
            other => Err(UnknownValue { what: "factor kind", value: other.to_owned() }),
        }
    }
}

impl fmt::Display for FactorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a factor can answer yet: an authenticator is `pending` until its
/// first code confirms it (a phone factor recorded by a step-up's approval,
/// until a step-up activates it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FactorStatus {
    Pending,
    Active,
}

impl FactorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorStatus::Pending => "pending",
            FactorStatus::Active => "active",
        }
    }
}

impl FromStr for FactorStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(FactorStatus::Pending),
            "active" => Ok(FactorStatus::Active),
            other => Err(UnknownValue { what: "factor status", value: other.to_owned() }),
        }
    }
}
