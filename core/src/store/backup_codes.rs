//! The `backup_codes` table: per account one set of backup codes and one
//! recovery code, each code as an HMAC.

/// Which set a code belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Backup,
    Recovery,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::Recovery => "recovery",
        }
    }
}

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ids::AccountId;

/// Replaces the account's set (the old codes stop working in the same commit).
pub async fn replace(
    conn: &mut PgConnection,
    kind: Kind,
    tenant_id: Uuid,
    account_id: &AccountId,
    generation: Uuid,
    macs: &[Vec<u8>],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM backup_codes WHERE tenant_id = $1 AND account_id = $2 AND kind = $3")
        .bind(tenant_id)
        .bind(account_id.as_str())
        .bind(kind.as_str())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO backup_codes (tenant_id, account_id, kind, generation, code_mac, created_at)
         SELECT $1, $2, $6, $3, mac, $5 FROM unnest($4::bytea[]) AS mac",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .bind(generation)
    .bind(macs)
    .bind(now)
    .bind(kind.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// The id of the account's current set, if it has one.
pub async fn generation(
    conn: &mut PgConnection,
    kind: Kind,
    tenant_id: Uuid,
    account_id: &AccountId,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT generation FROM backup_codes WHERE tenant_id = $1 AND account_id = $2 AND kind = $3
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .bind(kind.as_str())
    .fetch_optional(conn)
    .await
}

/// Marks the code used if it is unused; of two parallel redemptions one wins.
/// Returns the codes left when it was redeemed, `None` when it was not.
pub async fn redeem(
    conn: &mut PgConnection,
    kind: Kind,
    tenant_id: Uuid,
    account_id: &AccountId,
    code_mac: &[u8],
    now: DateTime<Utc>,
) -> Result<Option<i64>, sqlx::Error> {
    let used: Option<bool> = sqlx::query_scalar(
        "UPDATE backup_codes SET used_at = $4
         WHERE tenant_id = $1 AND account_id = $2 AND kind = $5 AND code_mac = $3 AND used_at IS NULL
         RETURNING true",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .bind(code_mac)
    .bind(now)
    .bind(kind.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if used.is_none() {
        return Ok(None);
    }
    let (remaining, _) = status(&mut *conn, kind, tenant_id, account_id).await?;
    Ok(Some(remaining))
}

/// (unused codes left, when the set was generated)
pub async fn status(
    conn: &mut PgConnection,
    kind: Kind,
    tenant_id: Uuid,
    account_id: &AccountId,
) -> Result<(i64, Option<DateTime<Utc>>), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE used_at IS NULL), max(created_at) FROM backup_codes
         WHERE tenant_id = $1 AND account_id = $2 AND kind = $3",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .bind(kind.as_str())
    .fetch_one(conn)
    .await
}

/// Invalidates every backup and recovery code of the account; returns how many were unused.
pub async fn delete_all(conn: &mut PgConnection, tenant_id: Uuid, account_id: &AccountId) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM backup_codes WHERE tenant_id = $1 AND account_id = $2 AND used_at IS NULL")
        .bind(tenant_id)
        .bind(account_id.as_str())
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM backup_codes WHERE tenant_id = $1 AND account_id = $2")
        .bind(tenant_id)
        .bind(account_id.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
