//! The `challenges` table: login and step-up challenges, written only by the
//! account-state actor (and expired by the expiry actor).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{CorruptRow, StoreError};
use crate::domain::challenge::{AnsweredBy, ChallengeStatus, Purpose};
use crate::ids::{AccountId, OrganisationId};

#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub account_id: AccountId,
    /// The organisation a login was into; `None` for a code typed outside
    /// any challenge (confirming an authenticator), kept as `''`.
    pub organisation_id: Option<OrganisationId>,
    pub purpose: Purpose,
    pub status: ChallengeStatus,
    pub verification_id: Option<Uuid>,
    pub sent_factor_id: Option<Uuid>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Challenge {
    pub fn attempts_left(&self) -> i32 {
        (self.max_attempts - self.attempts).max(0)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: Uuid,
    account_id: String,
    organisation_id: String,
    purpose: Purpose,
    status: ChallengeStatus,
    verification_id: Option<Uuid>,
    sent_factor_id: Option<Uuid>,
    attempts: i32,
    max_attempts: i32,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl TryFrom<Row> for Challenge {
    type Error = CorruptRow;

    fn try_from(r: Row) -> Result<Self, CorruptRow> {
        let corrupt = |reason: String| CorruptRow { table: "challenges", id: r.id.to_string(), reason };
        Ok(Challenge {
            id: r.id,
            tenant_id: r.tenant_id,
            account_id: AccountId::parse(&r.account_id).map_err(|e| corrupt(e.to_string()))?,
            organisation_id: match r.organisation_id.as_str() {
                "" => None,
                id => Some(OrganisationId::parse(id).map_err(|e| corrupt(format!("organisation_id {e}")))?),
            },
            purpose: r.purpose,
            status: r.status,
            verification_id: r.verification_id,
            sent_factor_id: r.sent_factor_id,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }
}

const COLUMNS: &str = "id, tenant_id, account_id, organisation_id, purpose, status, verification_id, sent_factor_id,
    attempts, max_attempts, created_at, expires_at";

pub async fn insert(conn: &mut PgConnection, c: &Challenge) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO challenges (id, tenant_id, account_id, organisation_id, purpose, status, verification_id,
             sent_factor_id, attempts, max_attempts, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(c.id)
    .bind(c.tenant_id)
    .bind(c.account_id.as_str())
    .bind(c.organisation_id.as_ref().map_or("", OrganisationId::as_str))
    .bind(c.purpose.as_str())
    .bind(c.status.as_str())
    .bind(c.verification_id)
    .bind(c.sent_factor_id)
    .bind(c.attempts)
    .bind(c.max_attempts)
    .bind(c.created_at)
    .bind(c.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The challenge, row-locked until the transaction ends: answers to one
/// challenge are decided one after the other.
pub async fn lock(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
    id: Uuid,
) -> Result<Option<Challenge>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM challenges WHERE id = $1 AND tenant_id = $2 AND account_id = $3 FOR UPDATE");
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant_id)
        .bind(account_id.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Challenge::try_from).transpose()?)
}

pub async fn get(
    pool: &PgPool,
    tenant_id: Uuid,
    account_id: &AccountId,
    id: Uuid,
) -> Result<Option<Challenge>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM challenges WHERE id = $1 AND tenant_id = $2 AND account_id = $3");
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant_id)
        .bind(account_id.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(row.map(Challenge::try_from).transpose()?)
}

/// Points the challenge at a new verification (a code sent again, or to another factor).
pub async fn set_sent(
    conn: &mut PgConnection,
    id: Uuid,
    verification_id: Uuid,
    factor_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE challenges SET verification_id = $2, sent_factor_id = $3 WHERE id = $1")
        .bind(id)
        .bind(verification_id)
        .bind(factor_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn pass(
    conn: &mut PgConnection,
    id: Uuid,
    by: AnsweredBy,
    factor_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE challenges SET status = 'passed', passed_via = $2, passed_factor_id = $3, completed_at = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(by.as_str())
    .bind(factor_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts a wrong answer; the last one allowed fails the challenge.
pub async fn count_wrong(conn: &mut PgConnection, c: &Challenge, now: DateTime<Utc>) -> Result<i32, sqlx::Error> {
    let attempts = c.attempts + 1;
    let status = if attempts >= c.max_attempts { ChallengeStatus::Failed } else { ChallengeStatus::Pending };
    sqlx::query(
        "UPDATE challenges SET attempts = $2, status = $3,
             completed_at = CASE WHEN $3 = 'pending' THEN NULL ELSE $4 END
         WHERE id = $1",
    )
    .bind(c.id)
    .bind(attempts)
    .bind(status.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(attempts)
}

pub async fn expire(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE challenges SET status = 'expired', completed_at = $2 WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Wrong answers the account gave to challenges opened since `since` and after
/// its last passed challenge (a pass starts the count again), and when the
/// oldest of those challenges was opened.
pub async fn recent_failures(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
    since: DateTime<Utc>,
) -> Result<(i64, Option<DateTime<Utc>>), sqlx::Error> {
    sqlx::query_as(
        "SELECT coalesce(sum(attempts), 0)::bigint, min(created_at) FROM challenges
         WHERE tenant_id = $1 AND account_id = $2 AND created_at > $3 AND attempts > 0
           AND created_at > coalesce((SELECT max(completed_at) FROM challenges
                WHERE tenant_id = $1 AND account_id = $2 AND status = 'passed'), '-infinity')",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .bind(since)
    .fetch_one(conn)
    .await
}

/// Whether a proof's challenge still stands: passed, and not wiped by a reset.
pub async fn is_passed(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let found: Option<bool> = sqlx::query_scalar(
        "SELECT true FROM challenges WHERE id = $1 AND tenant_id = $2 AND account_id = $3 AND status = 'passed'",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(account_id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

pub async fn delete_for_account(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM challenges WHERE tenant_id = $1 AND account_id = $2")
        .bind(tenant_id)
        .bind(account_id.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Expires pending challenges past their deadline (a batch); returns how many.
pub async fn expire_due(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE challenges SET status = 'expired', completed_at = $1 WHERE id IN (
            SELECT id FROM challenges WHERE status = 'pending' AND expires_at <= $1
            ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(now)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes challenges older than `before`: no proof outlives a day.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM challenges WHERE id IN (SELECT id FROM challenges WHERE created_at < $1 LIMIT 5000)")
        .bind(before)
        .execute(pool)
        .await?;
    Ok(())
}
