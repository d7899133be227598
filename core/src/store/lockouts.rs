//! The `account_lockouts` table: an account's wrong codes in a row, its
//! lockouts so far and until when it is locked. Read and written under the
//! verification's transaction; the rules are `limits::lockout`.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ids::AccountId;

/// Until when the account's checks are locked, if they still are at `now`.
pub async fn locked_until(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account: &AccountId,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(sqlx::query_scalar(
        "SELECT locked_until FROM account_lockouts WHERE tenant_id = $1 AND account_id = $2 AND locked_until > $3",
    )
    .bind(tenant_id)
    .bind(account.as_str())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?
    .flatten())
}

/// A correct code: the account's record is gone.
pub async fn clear(conn: &mut PgConnection, tenant_id: Uuid, account: &AccountId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM account_lockouts WHERE tenant_id = $1 AND account_id = $2")
        .bind(tenant_id)
        .bind(account.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A wrong code counted: the wrong codes in a row now, and the lockouts so far.
pub async fn count_wrong(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account: &AccountId,
    now: DateTime<Utc>,
) -> Result<(i32, i32), sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO account_lockouts (tenant_id, account_id, failures, updated_at) VALUES ($1, $2, 1, $3)
         ON CONFLICT (tenant_id, account_id) DO UPDATE
           SET failures = account_lockouts.failures + 1, updated_at = $3
         RETURNING failures, lockouts",
    )
    .bind(tenant_id)
    .bind(account.as_str())
    .bind(now)
    .fetch_one(&mut *conn)
    .await
}

/// Starts a lockout: the count starts again, the lockouts go up by one.
pub async fn lock(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account: &AccountId,
    until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE account_lockouts SET failures = 0, lockouts = lockouts + 1, locked_until = $3
         WHERE tenant_id = $1 AND account_id = $2",
    )
    .bind(tenant_id)
    .bind(account.as_str())
    .bind(until)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
