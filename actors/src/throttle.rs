//! Send throttles, per destination phone and per account (first version).
//!
//! Two layers: the throttle actor answers from in-process governor limiters (no
//! database round trip for the flood case), and `enforce_in_tx` counts the `sends`
//! table under a transaction-scoped advisory lock, so the limit holds across any
//! number of processes. Both use the same limits.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;
use verifyd_providers::domain::PhoneNumber;

use crate::ids::AccountId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct Limit {
    pub count: u32,
    pub window_secs: u64,
}

impl Limit {
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs.max(1))
    }

    /// `count` at once, then one more every window/count.
    fn quota(&self) -> Quota {
        let burst = NonZeroU32::new(self.count.max(1)).unwrap_or(NonZeroU32::MIN);
        let period = self.window() / burst.get();
        Quota::with_period(period.max(Duration::from_millis(1)))
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst)
    }
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct Limits {
    pub per_phone: Limit,
    pub per_account: Limit,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { per_phone: Limit { count: 5, window_secs: 600 }, per_account: Limit { count: 10, window_secs: 600 } }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Codes sent to one phone number.
    Phone,
    /// Codes sent for one account.
    Account,
    /// Sends of one verification (too soon, or too many).
    Verification,
    /// Wrong answers one account gave to its login and step-up challenges.
    WrongAnswers,
}

impl Scope {
    pub fn describe(self) -> &'static str {
        match self {
            Scope::Phone => "too many codes sent to this phone number",
            Scope::Account => "too many codes sent for this account",
            Scope::Verification => "this verification cannot send again yet",
            Scope::WrongAnswers => "too many wrong answers for this account",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}; retry after {} s", scope.describe(), retry_after.as_secs().max(1))]
pub struct Throttled {
    pub scope: Scope,
    pub retry_after: Duration,
}

/// The in-process limiters; lock-free and shared by every throttle shard.
pub struct Limiters {
    per_phone: DefaultKeyedRateLimiter<(Uuid, String)>,
    per_account: DefaultKeyedRateLimiter<(Uuid, String)>,
}

impl Limiters {
    pub fn new(limits: Limits) -> Self {
        Limiters {
            per_phone: RateLimiter::keyed(limits.per_phone.quota()),
            per_account: RateLimiter::keyed(limits.per_account.quota()),
        }
    }

    fn check(&self, tenant: Uuid, phone: &PhoneNumber, account: &AccountId) -> Result<(), Throttled> {
        let now = DefaultClock::default().now();
        self.per_phone
            .check_key(&(tenant, phone.e164().to_owned()))
            .map_err(|not_until| Throttled { scope: Scope::Phone, retry_after: not_until.wait_time_from(now) })?;
        self.per_account
            .check_key(&(tenant, account.as_str().to_owned()))
            .map_err(|not_until| Throttled { scope: Scope::Account, retry_after: not_until.wait_time_from(now) })
    }

    /// Drops keys whose limiter is back to full, so memory follows recent traffic.
    fn housekeeping(&self) {
        self.per_phone.retain_recent();
        self.per_phone.shrink_to_fit();
        self.per_account.retain_recent();
        self.per_account.shrink_to_fit();
    }
}

/// May one more code be sent to this phone for this account?
#[derive(Message)]
#[rtype(result = "Result<(), Throttled>")]
pub struct Admit {
    pub tenant_id: Uuid,
    pub phone: PhoneNumber,
    pub account: AccountId,
}

pub struct ThrottleActor {
    limiters: Arc<Limiters>,
    housekeeping: bool,
}

impl ThrottleActor {
    /// Only one instance per process needs `housekeeping`.
    pub fn new(limiters: Arc<Limiters>, housekeeping: bool) -> Self {
        ThrottleActor { limiters, housekeeping }
    }
}

impl Actor for ThrottleActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.housekeeping {
            ctx.run_interval(Duration::from_secs(60), |act, _| act.limiters.housekeeping());
        }
    }
}

impl Handler<Admit> for ThrottleActor {
    type Result = Result<(), Throttled>;

    fn handle(&mut self, msg: Admit, _: &mut Self::Context) -> Self::Result {
        let result = self.limiters.check(msg.tenant_id, &msg.phone, &msg.account);
        if let Err(t) = &result {
            metrics::counter!("verifyd_throttled_total", "scope" => format!("{:?}", t.scope)).increment(1);
        }
        result
    }
}

/// The advisory-lock key of a throttle key: the first 8 bytes of SHA-256, so every
/// process, whatever toolchain built it, takes the same lock.
pub(crate) fn lock_key(parts: &[&str]) -> i64 {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0u8]);
    }
    let bytes = digest.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(first)
}

/// The cross-process check, inside the transaction that will record the send.
/// Serialises sends per phone and per account with advisory locks, then counts.
pub async fn enforce_in_tx(
    conn: &mut PgConnection,
    limits: &Limits,
    tenant_id: Uuid,
    phone: &PhoneNumber,
    account: &AccountId,
    now: DateTime<Utc>,
) -> Result<Result<(), Throttled>, sqlx::Error> {
    let tenant = tenant_id.to_string();
    // Always phone then account, in every transaction: no lock-order deadlock.
    sqlx::query("SELECT pg_advisory_xact_lock($1), pg_advisory_xact_lock($2)")
        .bind(lock_key(&["sends", "phone", &tenant, phone.e164()]))
        .bind(lock_key(&["sends", "account_id", &tenant, account.as_str()]))
        .execute(&mut *conn)
        .await?;
    // A new statement (READ COMMITTED): it sees every send committed before the locks.
    let (phone_count, phone_oldest, account_count, account_oldest): (
        i64,
        Option<DateTime<Utc>>,
        i64,
        Option<DateTime<Utc>>,
    ) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE phone = $2 AND sent_at > $4),
                    min(sent_at) FILTER (WHERE phone = $2 AND sent_at > $4),
                    count(*) FILTER (WHERE account_id = $3 AND sent_at > $5),
                    min(sent_at) FILTER (WHERE account_id = $3 AND sent_at > $5)
             FROM sends WHERE tenant_id = $1
               AND ((phone = $2 AND sent_at > $4) OR (account_id = $3 AND sent_at > $5))",
    )
    .bind(tenant_id)
    .bind(phone.e164())
    .bind(account.as_str())
    .bind(now - limits.per_phone.window())
    .bind(now - limits.per_account.window())
    .fetch_one(&mut *conn)
    .await?;
    let checks = [
        (Scope::Phone, limits.per_phone, phone_count, phone_oldest),
        (Scope::Account, limits.per_account, account_count, account_oldest),
    ];
    for (scope, limit, count, oldest) in checks {
        if count >= i64::from(limit.count) {
            let free_at = oldest.unwrap_or(now) + limit.window();
            let retry_after = (free_at - now).to_std().unwrap_or_default().max(Duration::from_secs(1));
            return Ok(Err(Throttled { scope, retry_after }));
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn governor_allows_the_burst_then_says_how_long_to_wait() {
        let limits = Limits {
            per_phone: Limit { count: 3, window_secs: 600 },
            per_account: Limit { count: 100, window_secs: 600 },
        };
        let l = Limiters::new(limits);
        let tenant = Uuid::new_v4();
        let phone = PhoneNumber::parse("+14155552671").unwrap();
        let account = AccountId::parse("a").unwrap();
        for _ in 0..3 {
            assert!(l.check(tenant, &phone, &account).is_ok());
        }
        let t = l.check(tenant, &phone, &account).unwrap_err();
        assert_eq!(t.scope, Scope::Phone);
        assert!(t.retry_after > Duration::from_secs(190) && t.retry_after <= Duration::from_secs(200), "{t:?}");
        // Another tenant's identical phone has its own budget.
        assert!(l.check(Uuid::new_v4(), &phone, &account).is_ok());
    }
}
