//! An organisation's two-factor policy and the rules for changing it.

use crate::domain::policy::{Settings, TwoFactorPolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    #[error("the organisation's policy is mandatory: two-factor authentication cannot be turned off")]
    MandatoryIsFinal,
    #[error("SSO cannot be enabled while two-factor authentication is required")]
    SsoWithRequired,
}

/// What a policy change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub before: Settings,
    pub after: Settings,
    /// Two-factor stops being required: a restricted action (needs step-up).
    pub turns_off: bool,
    /// SSO was on and this change turns it off.
    pub disables_sso: bool,
}

/// Decides a change. `sso` is what the caller asked for SSO, if anything; when
/// two-factor becomes required SSO is turned off (and the change says so).
/// Users' factors are never touched by a policy change.
pub fn change(before: Settings, to: TwoFactorPolicy, sso: Option<bool>) -> Result<Change, PolicyRefusal> {
    if before.policy == TwoFactorPolicy::Mandatory && to != TwoFactorPolicy::Mandatory {
        return Err(PolicyRefusal::MandatoryIsFinal);
    }
    if to.requires_factor() && sso == Some(true) {
        return Err(PolicyRefusal::SsoWithRequired);
    }
    let sso_enabled = if to.requires_factor() { false } else { sso.unwrap_or(before.sso_enabled) };
    let after = Settings { policy: to, sso_enabled };
    Ok(Change {
        before,
        after,
        turns_off: before.policy.requires_factor() && !to.requires_factor(),
        disables_sso: before.sso_enabled && !sso_enabled,
    })
}

#[cfg(test)]
mod tests {
    use super::TwoFactorPolicy::*;
    use super::*;

    #[test]
    fn requiring_two_factor_turns_sso_off_and_says_so() {
        let c = change(Settings::default(), Required, None).unwrap();
        assert_eq!(c.after, Settings { policy: Required, sso_enabled: false });
        assert!(c.disables_sso);
        assert!(!c.turns_off);
        assert_eq!(change(Settings::default(), Required, Some(true)), Err(PolicyRefusal::SsoWithRequired));
    }

    #[test]
    fn turning_required_off_is_restricted_and_keeps_sso_off_unless_asked() {
        let before = Settings { policy: Required, sso_enabled: false };
        let c = change(before, Optional, None).unwrap();
        assert!(c.turns_off);
        assert!(!c.after.sso_enabled);
        assert!(change(before, Optional, Some(true)).unwrap().after.sso_enabled);
        assert!(!change(before, Mandatory, None).unwrap().turns_off);
    }

    #[test]
    fn mandatory_cannot_be_turned_off() {
        let before = Settings { policy: Mandatory, sso_enabled: false };
        assert_eq!(change(before, Optional, None), Err(PolicyRefusal::MandatoryIsFinal));
        assert_eq!(change(before, Required, None), Err(PolicyRefusal::MandatoryIsFinal));
        assert!(change(before, Mandatory, None).is_ok());
    }
}
