//! Per-account lockout with backoff for wrong verification codes. After
//! `after_wrong` wrong codes in a row over all of an account's verifications,
//! its checks are refused for `base_secs`, doubling with each further lockout up
//! to `max_secs`; a correct code clears the count. The rules are pure
//! functions of the record and `now` (`Lockout`); the record is PostgreSQL's
//! (`store::lockouts`), read and written under the verification's
//! transaction, so every process sees the same lockout.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Refusal, Throttled};
use crate::ids::AccountId;
use crate::store::lockouts;

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

/// A lockout that starts: the how-manieth it is, and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub nth: u32,
    pub until: DateTime<Utc>,
}

impl Lockout {
    pub fn is_on(&self) -> bool {
        self.after_wrong > 0
    }

    /// How long the `nth` lockout (1-based) lasts.
    pub fn duration(&self, nth: u32) -> Duration {
        let doublings = nth.saturating_sub(1).min(30);
        let secs = self.base_secs.saturating_mul(1u64 << doublings).min(self.max_secs.max(self.base_secs));
        Duration::from_secs(secs)
    }

    /// After a wrong code, with `failures` wrong codes in a row now and
    /// `lockouts` so far: the lockout that starts at `now`, if one does.
    pub fn after_wrong_code(&self, failures: u32, lockouts: u32, now: DateTime<Utc>) -> Option<Locked> {
        if !self.is_on() || failures < self.after_wrong {
            return None;
        }
        let nth = lockouts.saturating_add(1);
        let until = now + chrono::Duration::from_std(self.duration(nth)).unwrap_or(chrono::Duration::days(1));
        Some(Locked { nth, until })
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
    if !settings.is_on() {
        return Ok(Ok(()));
    }
    Ok(match lockouts::locked_until(conn, tenant_id, account, now).await? {
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
    if !settings.is_on() {
        return Ok(());
    }
    if correct {
        return lockouts::clear(conn, tenant_id, account).await;
    }
    let (failures, so_far) = lockouts::count_wrong(conn, tenant_id, account, now).await?;
    let count = |n: i32| u32::try_from(n).unwrap_or(0);
    if let Some(locked) = settings.after_wrong_code(count(failures), count(so_far), now) {
        lockouts::lock(conn, tenant_id, account, locked.until).await?;
        tracing::warn!(%tenant_id, lockout = locked.nth, secs = settings.duration(locked.nth).as_secs(),
            "account locked out after wrong codes in a row");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn each_lockout_doubles_up_to_the_cap() {
        let l = Lockout { after_wrong: 10, base_secs: 300, max_secs: 3_600 };
        let secs: Vec<u64> = (1..=6).map(|n| l.duration(n).as_secs()).collect();
        assert_eq!(secs, [300, 600, 1_200, 2_400, 3_600, 3_600]);
        assert_eq!(l.duration(u32::MAX).as_secs(), 3_600);
    }

    #[test]
    fn the_after_wrong_th_wrong_code_in_a_row_starts_the_next_lockout() {
        let l = Lockout { after_wrong: 3, base_secs: 300, max_secs: 3_600 };
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        assert_eq!(l.after_wrong_code(2, 0, now), None, "two wrong codes lock nothing");
        assert_eq!(l.after_wrong_code(3, 0, now), Some(Locked { nth: 1, until: now + chrono::Duration::seconds(300) }));
        assert_eq!(
            l.after_wrong_code(3, 2, now),
            Some(Locked { nth: 3, until: now + chrono::Duration::seconds(1_200) })
        );
        let off = Lockout { after_wrong: 0, ..l };
        assert_eq!(off.after_wrong_code(u32::MAX, 0, now), None, "0 turns lockout off");
    }
}
