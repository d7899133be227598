//! A verification's status and the part of it the lifecycle decides on
//! (`verification::lifecycle` holds the transitions).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::UnknownValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = VerificationStatus)]
pub enum Status {
    Pending,
    Approved,
    Expired,
    MaxAttemptsReached,
    /// The backend called it off: its code can no longer be used.
    Canceled,
    /// Its latest delivery failed for good (a provider refused the number, the
    /// carrier reported it undelivered, or verifyd gave up and dead-lettered
    /// it): the code never reached the person. Start a new verification, by
    /// the other channel or to another number.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Expired => "expired",
            Status::MaxAttemptsReached => "max_attempts_reached",
            Status::Canceled => "canceled",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Status::Pending),
            "approved" => Ok(Status::Approved),
            "expired" => Ok(Status::Expired),
            "max_attempts_reached" => Ok(Status::MaxAttemptsReached),
            "canceled" => Ok(Status::Canceled),
            "failed" => Ok(Status::Failed),
            other => Err(UnknownValue { what: "verification status", value: other.to_owned() }),
        }
    }
}

/// The part of a verification the lifecycle decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub status: Status,
    pub attempts: i32,
    pub max_attempts: i32,
    pub sends: i32,
    pub expires_at: DateTime<Utc>,
    pub last_sent_at: DateTime<Utc>,
}

impl State {
    /// The status a reader should see: a pending verification past its deadline
    /// is expired even before the sweep has written it.
    pub fn effective_status(&self, now: DateTime<Utc>) -> Status {
        if self.status == Status::Pending && now >= self.expires_at { Status::Expired } else { self.status }
    }

    pub fn attempts_left(&self) -> i32 {
        (self.max_attempts - self.attempts).max(0)
    }
}
