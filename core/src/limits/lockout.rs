//! Per-account lockout with backoff for wrong verification codes. After
//! `after_wrong` wrong codes in a row over all of an account's verifications,
//! its checks are refused for `base_secs`, doubling with each further lockout up
//! to `max_secs`; a correct code clears the count. Held in PostgreSQL
//! (`account_lockouts`) and decided under the verification's transaction, so
//! every process sees the same lockout.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Refusal, Throttled};
use crate::ids::AccountId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lockout {
    /// Wrong codes in a row that lock the account's checks; 0 turns lockout off.
    pub after_wrong: u32,
    /// The first lockout; each next one doubles.
    pub base_secs: u64,
    /// The longest lockout.
    pub max_secs: u64,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout { after_wrong: 10, base_secs: 300, max_secs: 86_400 }
    }
}

impl Lockout {
    /// How long the `nth` lockout (1-based) lasts.
    pub fn duration(&self, nth: u32) -> Duration {
        let doublings = nth.saturating_sub(1).min(30);
        let secs = self.base_secs.saturating_mul(1u64 << doublings).min(self.max_secs.max(self.base_secs));
        Duration::from_secs(secs)
    }
}

/// Refuses while the account is locked out.
pub async fn guard(
    conn: &mut PgConnection,
    settings: &Lockout,
    tenant_id: Uuid,
    account: &AccountId,
    now: DateTime<Utc>,
) -> Result<Result<(), Throttled>, sqlx::Error> {
    if settings.after_wrong == 0 {
        return Ok(Ok(()));
    }
    let until: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT locked_until FROM account_lockouts WHERE tenant_id = $1 AND account_id = $2 AND locked_until > $3",
    )
    .bind(tenant_id)
    .bind(account.as_str())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    Ok(match until {
        Some(until) => Err(Throttled::counted(Refusal::Lockout, (until - now).to_std().unwrap_or_default())),
        None => Ok(()),
    })
}

/// Records a check's result: a wrong code counts (and may start a lockout),
/// a correct one clears the record.
pub async fn record(
    conn: &mut PgConnection,
    settings: &Lockout,
    tenant_id: Uuid,
    account: &AccountId,
    correct: bool,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if settings.after_wrong == 0 {
        return Ok(());
    }
    if correct {
        sqlx::query("DELETE FROM account_lockouts WHERE tenant_id = $1 AND account_id = $2")
            .bind(tenant_id)
            .bind(account.as_str())
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    let (failures, lockouts): (i32, i32) = sqlx::query_as(
        "INSERT INTO account_lockouts (tenant_id, account_id, failures, updated_at) VALUES ($1, $2, 1, $3)
         ON CONFLICT (tenant_id, account_id) DO UPDATE
           SET failures = account_lockouts.failures + 1, updated_at = $3
         RETURNING failures, lockouts",
    )
    .bind(tenant_id)
    .bind(account.as_str())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    if u32::try_from(failures).unwrap_or(0) >= settings.after_wrong {
        let nth = u32::try_from(lockouts).unwrap_or(0) + 1;
        let until = now + chrono::Duration::from_std(settings.duration(nth)).unwrap_or(chrono::Duration::days(1));
        sqlx::query(
            "UPDATE account_lockouts SET failures = 0, lockouts = lockouts + 1, locked_until = $3
             WHERE tenant_id = $1 AND account_id = $2",
        )
        .bind(tenant_id)
        .bind(account.as_str())
        .bind(until)
        .execute(&mut *conn)
        .await?;
        tracing::warn!(%tenant_id, lockout = nth, secs = settings.duration(nth).as_secs(),
            "account locked out after wrong codes in a row");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lockout_doubles_up_to_the_cap() {
        let l = Lockout { after_wrong: 10, base_secs: 300, max_secs: 3_600 };
        let secs: Vec<u64> = (1..=6).map(|n| l.duration(n).as_secs()).collect();
        assert_eq!(secs, [300, 600, 1_200, 2_400, 3_600, 3_600]);
        assert_eq!(l.duration(u32::MAX).as_secs(), 3_600);
    }
}
