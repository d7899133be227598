//! An organisation's two-factor policy and settings, as stored
//! (`account::policy` holds the rules for changing them).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `optional`: each user decides. `required`: users without a factor must enrol
/// at their next login, and SSO is off. `mandatory`: like `required`, and it can
/// never be turned off, nor can a user delete their last factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TwoFactorPolicy {
    #[default]
    Optional,
    Required,
    Mandatory,
}

impl TwoFactorPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TwoFactorPolicy::Optional => "optional",
            TwoFactorPolicy::Required => "required",
            TwoFactorPolicy::Mandatory => "mandatory",
        }
    }

    /// Whether a user of the organisation must hold a second factor.
    pub fn requires_factor(self) -> bool {
        self != TwoFactorPolicy::Optional
    }
}

impl fmt::Display for TwoFactorPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("policy must be optional, required or mandatory")]
pub struct PolicyParseError;

impl FromStr for TwoFactorPolicy {
    type Err = PolicyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "optional" => Ok(TwoFactorPolicy::Optional),
            "required" => Ok(TwoFactorPolicy::Required),
            "mandatory" => Ok(TwoFactorPolicy::Mandatory),
            _ => Err(PolicyParseError),
        }
    }
}

/// An organisation's settings as stored; an organisation never set up is
/// `optional` with SSO allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub policy: TwoFactorPolicy,
    pub sso_enabled: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { policy: TwoFactorPolicy::Optional, sso_enabled: true }
    }
}
