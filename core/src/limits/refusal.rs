//! Why a request was refused by a limit, in words and in a word, and how long
//! to wait (what `Retry-After` carries).

use std::time::Duration;

use serde::Serialize;

/// What a token bucket counts: the throttle scopes, each with its setting in
/// `[throttle]` and its bucket in memory and in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Phone,
    Email,
    EmailDomain,
    Account,
    Ip,
    Country,
    Tenant,
    Checks,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::Phone,
        Scope::Email,
        Scope::EmailDomain,
        Scope::Account,
        Scope::Ip,
        Scope::Country,
        Scope::Tenant,
        Scope::Checks,
    ];

    /// The name keyed into a bucket's digest (so it never changes) and shown
    /// as the refusal's `scope`.
    pub fn as_str(self) -> &'static str {
        Refusal::from(self).as_str()
    }
}

/// Which limit refused a request: a throttle scope's bucket, or a rule that is
/// not a bucket (a verification's resend policy, a run of wrong answers, a
/// lockout). What problem documents, events and metrics call `scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ThrottleScope)]
pub enum Refusal {
    /// Codes sent to one phone number.
    Phone,
    /// Codes sent to one email address.
    Email,
    /// Codes sent to one email domain, per tenant.
    EmailDomain,
    /// Codes sent for one account.
    Account,
    /// Verifications asked for one end-user IP address.
    Ip,
    /// Codes sent to one destination country.
    Country,
    /// Codes sent by the tenant in all.
    Tenant,
    /// Code checks for one account.
    Checks,
    /// Sends of one verification (too soon, or too many).
    Verification,
    /// Wrong answers one account gave to its login and step-up challenges.
    WrongAnswers,
    /// Wrong verification codes in a row: the account's checks are locked out.
    Lockout,
}

impl From<Scope> for Refusal {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Phone => Refusal::Phone,
            Scope::Email => Refusal::Email,
            Scope::EmailDomain => Refusal::EmailDomain,
            Scope::Account => Refusal::Account,
            Scope::Ip => Refusal::Ip,
            Scope::Country => Refusal::Country,
            Scope::Tenant => Refusal::Tenant,
            Scope::Checks => Refusal::Checks,
        }
    }
}

impl Refusal {
    pub const ALL: [Refusal; 11] = [
        Refusal::Phone,
        Refusal::Email,
        Refusal::EmailDomain,
        Refusal::Account,
        Refusal::Ip,
        Refusal::Country,
        Refusal::Tenant,
        Refusal::Checks,
        Refusal::Verification,
        Refusal::WrongAnswers,
        Refusal::Lockout,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Refusal::Phone => "too many codes sent to this phone number",
            Refusal::Email => "too many codes sent to this email address",
            Refusal::EmailDomain => "too many codes sent to this email domain",
            Refusal::Account => "too many codes sent for this account",
            Refusal::Ip => "too many verifications asked from this end-user IP address",
            Refusal::Country => "too many codes sent to this destination country",
            Refusal::Tenant => "too many codes sent by this tenant",
            Refusal::Checks => "too many code checks for this account",
            Refusal::Verification => "this verification cannot send again yet",
            Refusal::WrongAnswers => "too many wrong answers for this account",
            Refusal::Lockout => "too many wrong codes in a row: this account's checks are locked for a while",
        }
    }

    /// The name in problem documents, events and the `scope` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Phone => "phone",
            Refusal::Email => "email",
            Refusal::EmailDomain => "email_domain",
            Refusal::Account => "account",
            Refusal::Ip => "ip",
            Refusal::Country => "country",
            Refusal::Tenant => "tenant",
            Refusal::Checks => "checks",
            Refusal::Verification => "verification",
            Refusal::WrongAnswers => "wrong_answers",
            Refusal::Lockout => "lockout",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}; retry after {} s", by.describe(), retry_after_secs(*retry_after))]
pub struct Throttled {
    pub by: Refusal,
    pub retry_after: Duration,
}

impl Throttled {
    /// A refusal by `by`, counted in `verifyd_throttled_total` (the one place
    /// that counts them).
    pub fn counted(by: impl Into<Refusal>, retry_after: Duration) -> Self {
        let by = by.into();
        metrics::counter!("verifyd_throttled_total", "scope" => by.as_str()).increment(1);
        Throttled { by, retry_after }
    }
}

/// Whole seconds to wait, rounded up, at least 1 (what `Retry-After` carries).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}
