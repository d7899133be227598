//! The rules of the login gate, apart from any storage: what a login gets, what
//! a challenge is for and what answered it. The account-state actor applies
//! them (`gate.rs` beside this file).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::policy::TwoFactorPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateSettings {
    /// How long a challenge can be answered.
    pub challenge_ttl_secs: u64,
    /// Wrong answers before a challenge fails.
    pub max_attempts: i32,
    /// How long a proof is valid, and so how fresh a step-up must be.
    pub proof_ttl_secs: u64,
    /// Wrong answers an account may give, over all its challenges, within
    /// `failure_window_secs`; past that, challenges are refused until the
    /// window moves on (so 5 tries per challenge cannot be multiplied by
    /// opening more challenges).
    pub max_failures: i64,
    pub failure_window_secs: u64,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            challenge_ttl_secs: 600,
            max_attempts: 5,
            proof_ttl_secs: 300,
            max_failures: 10,
            failure_window_secs: 3600,
        }
    }
}

impl GateSettings {
    pub fn challenge_ttl(&self) -> Duration {
        Duration::from_secs(self.challenge_ttl_secs.max(1))
    }

    pub fn proof_ttl(&self) -> Duration {
        Duration::from_secs(self.proof_ttl_secs.max(1))
    }

    pub fn failure_window(&self) -> Duration {
        Duration::from_secs(self.failure_window_secs.max(1))
    }
}

/// The gate's answer to "may this user in?" before any code is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// No second factor is needed.
    Open,
    /// The user holds an active factor: they must answer a challenge.
    Challenge,
    /// The organisation requires two-factor and the user has no factor.
    EnrolmentRequired,
}

/// A user who enrolled is always challenged, whatever the policy; a user who did
/// not is let in unless the organisation requires a factor.
pub fn decide(policy: TwoFactorPolicy, active_factors: usize) -> Decision {
    match (active_factors, policy.requires_factor()) {
        (0, false) => Decision::Open,
        (0, true) => Decision::EnrolmentRequired,
        _ => Decision::Challenge,
    }
}

/// What a typed answer can be, by its shape alone; the gate tries each
/// candidate the account actually has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub digits: Option<usize>,
    pub recovery: bool,
}

impl Shape {
    pub fn of(typed: &str) -> Shape {
        let digits = (!typed.is_empty() && typed.bytes().all(|b| b.is_ascii_digit())).then_some(typed.len());
        let recovery = crate::codes::recovery::RecoveryCode::parse(typed).is_ok();
        Shape { digits, recovery }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolled_users_are_challenged_whatever_the_policy() {
        for policy in [TwoFactorPolicy::Optional, TwoFactorPolicy::Required, TwoFactorPolicy::Mandatory] {
            assert_eq!(decide(policy, 1), Decision::Challenge);
        }
        assert_eq!(decide(TwoFactorPolicy::Optional, 0), Decision::Open);
        assert_eq!(decide(TwoFactorPolicy::Required, 0), Decision::EnrolmentRequired);
        assert_eq!(decide(TwoFactorPolicy::Mandatory, 0), Decision::EnrolmentRequired);
    }

    #[test]
    fn answers_are_told_apart_by_shape() {
        assert_eq!(Shape::of("123456"), Shape { digits: Some(6), recovery: false });
        assert_eq!(Shape::of("12345678").digits, Some(8));
        assert!(Shape::of("ABCD-EFGH-JKMN-PQRS").recovery);
        assert_eq!(Shape::of("").digits, None);
        assert_eq!(Shape::of("12a4").digits, None);
    }
}
