//! What a challenge is for, where it stands and what answered it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::UnknownValue;

/// Why a challenge was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// After the password, before the session.
    Login,
    /// Before a restricted action (changing or deleting a factor, new backup or
    /// recovery codes, turning policy off).
    StepUp,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Login => "login",
            Purpose::StepUp => "step_up",
        }
    }
}

impl FromStr for Purpose {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "login" => Ok(Purpose::Login),
            "step_up" => Ok(Purpose::StepUp),
            other => Err(UnknownValue { what: "challenge purpose", value: other.to_owned() }),
        }
    }
}

/// What answered a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    /// The code sent by SMS or voice call to a phone factor.
    Phone,
    /// The code sent to an email factor.
    Email,
    /// An authenticator app's code.
    Totp,
    BackupCode,
    RecoveryCode,
}

impl AnsweredBy {
    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Phone => "phone",
            AnsweredBy::Email => "email",
            AnsweredBy::Totp => "totp",
            AnsweredBy::BackupCode => "backup_code",
            AnsweredBy::RecoveryCode => "recovery_code",
        }
    }
}

impl fmt::Display for AnsweredBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a challenge stands: only a `pending` one can be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeStatus {
    Pending,
    Passed,
    Failed,
    Expired,
}

impl ChallengeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeStatus::Pending => "pending",
            ChallengeStatus::Passed => "passed",
            ChallengeStatus::Failed => "failed",
            ChallengeStatus::Expired => "expired",
        }
    }
}

impl FromStr for ChallengeStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(ChallengeStatus::Pending),
            "passed" => Ok(ChallengeStatus::Passed),
            "failed" => Ok(ChallengeStatus::Failed),
            "expired" => Ok(ChallengeStatus::Expired),
            other => Err(UnknownValue { what: "challenge status", value: other.to_owned() }),
        }
    }
}
