//! The configured limits (`[throttle]`): each a GCRA bucket of `count` per
//! `window_secs` (`count` at once, then one more every `window / count`, as
//! governor computes it), and the lockout's settings.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

use super::Scope;
use super::lockout::Lockout;

/// `count` events per `window_secs`; a `count` of 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub count: u32,
    pub window_secs: u64,
}

impl Limit {
    pub const fn new(count: u32, window_secs: u64) -> Self {
        Limit { count, window_secs }
    }

    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs.max(1))
    }

    pub fn is_off(&self) -> bool {
        self.count == 0
    }

    /// How often one cell comes back: window / count.
    pub(super) fn emission(&self) -> Duration {
        (self.window() / self.count.max(1)).max(Duration::from_micros(1))
    }

    /// `count` at once, then one more every window/count.
    pub(super) fn quota(&self) -> Quota {
        let burst = NonZeroU32::new(self.count.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(self.emission()).unwrap_or_else(|| Quota::per_second(burst)).allow_burst(burst)
    }
}

/// The configured limits (`[throttle]`). Defaults follow Twilio Verify's where
/// it has one (5 sends per phone per 10 minutes).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Codes sent to one phone number (create and resend).
    pub per_phone: Limit,
    /// Codes sent to one email address (create and resend). The address is
    /// counted in lowercase without its `+tag`, so `Ada+1@x` and `ada@x` share it.
    pub per_email: Limit,
    /// Codes sent to one email domain, per tenant: a cap on a flood aimed
    /// at one provider's users (every mailbox at a victim's domain).
    pub per_email_domain: Limit,
    /// Codes sent for one account.
    pub per_account: Limit,
    /// New verifications asked for one end-user IP address (`end_user_ip`).
    pub per_ip: Limit,
    /// Codes sent to one destination country, per tenant.
    pub per_country: Limit,
    /// `per_country` for named destination countries (ISO 3166-1 alpha-2, in
    /// capitals): more for a home market, less for a risky one; `count = 0`
    /// lifts the limit there (geo permissions refuse a country outright).
    pub per_country_overrides: BTreeMap<String, Limit>,
    /// Codes sent by one tenant in all.
    pub per_tenant: Limit,
    /// Code checks for one account, over all its verifications.
    pub checks_per_account: Limit,
    /// Wrong codes in a row that lock an account's checks, with backoff.
    pub lockout: Lockout,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_phone: Limit::new(5, 600),
            per_email: Limit::new(5, 600),
            per_email_domain: Limit::new(1_000, 600),
            per_account: Limit::new(10, 600),
            per_ip: Limit::new(20, 600),
            per_country: Limit::new(1_000, 600),
            per_country_overrides: BTreeMap::new(),
            per_tenant: Limit::new(6_000, 600),
            checks_per_account: Limit::new(30, 3_600),
            lockout: Lockout::default(),
        }
    }
}

impl Limits {
    /// No limit at all (load tests).
    pub fn off() -> Self {
        let off = Limit::new(0, 1);
        Limits {
            per_phone: off,
            per_email: off,
            per_email_domain: off,
            per_account: off,
            per_ip: off,
            per_country: off,
            per_country_overrides: BTreeMap::new(),
            per_tenant: off,
            checks_per_account: off,
            lockout: Lockout { after_wrong: 0, ..Default::default() },
        }
    }

    pub(super) fn of(&self, scope: Scope) -> Option<Limit> {
        let limit = match scope {
            Scope::Phone => self.per_phone,
            Scope::Email => self.per_email,
            Scope::EmailDomain => self.per_email_domain,
            Scope::Account => self.per_account,
            Scope::Ip => self.per_ip,
            Scope::Country => self.per_country,
            Scope::Tenant => self.per_tenant,
            Scope::Checks => self.checks_per_account,
        };
        (!limit.is_off()).then_some(limit)
    }

    /// Checks `per_country_overrides` names known countries, written in
    /// capitals as phone numbers report them.
    pub fn validate(&self) -> Result<(), String> {
        for country in self.per_country_overrides.keys() {
            if !crate::abuse::geo::is_known_country(country) {
                return Err(format!(
                    "throttle.per_country_overrides: {country:?} is not an ISO 3166-1 alpha-2 code in capitals"
                ));
            }
        }
        Ok(())
    }
}
