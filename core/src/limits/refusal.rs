//! Why a request was refused by a limit, in words and in a word, and how long
//! to wait (what `Retry-After` carries).

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ThrottleScope)]
pub enum Scope {
    /// Codes sent to one phone number.
    Phone,
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

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::Phone,
        Scope::Account,
        Scope::Ip,
        Scope::Country,
        Scope::Tenant,
        Scope::Checks,
        Scope::Verification,
        Scope::WrongAnswers,
        Scope::Lockout,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Scope::Phone => "too many codes sent to this phone number",
            Scope::Account => "too many codes sent for this account",
            Scope::Ip => "too many verifications asked from this end-user IP address",
            Scope::Country => "too many codes sent to this destination country",
            Scope::Tenant => "too many codes sent by this tenant",
            Scope::Checks => "too many code checks for this account",
            Scope::Verification => "this verification cannot send again yet",
            Scope::WrongAnswers => "too many wrong answers for this account",
            Scope::Lockout => "too many wrong codes in a row: this account's checks are locked for a while",
        }
    }

    /// The name in problem documents, events and the `scope` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Phone => "phone",
            Scope::Account => "account",
            Scope::Ip => "ip",
            Scope::Country => "country",
            Scope::Tenant => "tenant",
            Scope::Checks => "checks",
            Scope::Verification => "verification",
            Scope::WrongAnswers => "wrong_answers",
            Scope::Lockout => "lockout",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}; retry after {} s", scope.describe(), retry_after_secs(*retry_after))]
pub struct Throttled {
    pub scope: Scope,
    pub retry_after: Duration,
}

/// Whole seconds to wait, rounded up, at least 1 (what `Retry-After` carries).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}
