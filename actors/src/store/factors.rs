//! The `factors` table, written only by the account-state actor.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::{Channel, PhoneNumber};

use crate::ids::AccountId;

/// A factor as callers see it. Never holds a secret.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Factor {
    pub id: Uuid,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, kind, phone, label, status, verified_at";

/// Adds an active phone factor; returns it and whether it is new.
pub async fn upsert_phone(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
    kind: Channel,
    phone: &PhoneNumber,
    verified_at: DateTime<Utc>,
) -> Result<(Factor, bool), sqlx::Error> {
    let sql = format!(
        "INSERT INTO factors (id, tenant_id, account_id, kind, phone, status, verified_at)
         VALUES ($1, $2, $3, $4, $5, 'active', $6)
         ON CONFLICT (tenant_id, account_id, kind, phone) DO NOTHING
         RETURNING {COLUMNS}"
    );
    let inserted: Option<Factor> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::new_v4())
        .bind(tenant_id)
        .bind(account_id.as_str())
        .bind(kind.as_str())
        .bind(phone.e164())
        .bind(verified_at)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(f) = inserted {
        return Ok((f, true));
    }
    let sql =
        format!("SELECT {COLUMNS} FROM factors WHERE tenant_id = $1 AND account_id = $2 AND kind = $3 AND phone = $4");
    let existing: Factor = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(account_id.as_str())
        .bind(kind.as_str())
        .bind(phone.e164())
        .fetch_one(conn)
        .await?;
    Ok((existing, false))
}

pub async fn list(pool: &PgPool, tenant_id: Uuid, account_id: &AccountId) -> Result<Vec<Factor>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM factors WHERE tenant_id = $1 AND account_id = $2 ORDER BY created_at, id");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant_id).bind(account_id.as_str()).fetch_all(pool).await
}

/// A pending authenticator-app factor with its sealed secret.
pub async fn insert_totp(
    conn: &mut PgConnection,
    id: Uuid,
    tenant_id: Uuid,
    account_id: &AccountId,
    label: Option<&str>,
    sealed_secret: &[u8],
) -> Result<Factor, sqlx::Error> {
    let sql = format!(
        "INSERT INTO factors (id, tenant_id, account_id, kind, label, status, totp_sealed)
         VALUES ($1, $2, $3, 'totp', $4, 'pending', $5) RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant_id)
        .bind(account_id.as_str())
        .bind(label)
        .bind(sealed_secret)
        .fetch_one(conn)
        .await
}

/// The TOTP state of one factor, row-locked until the transaction ends.
#[derive(sqlx::FromRow)]
pub struct TotpState {
    pub status: String,
    pub totp_sealed: Vec<u8>,
    pub totp_last_step: Option<i64>,
    pub confirm_attempts: i32,
}

pub async fn lock_totp(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
    id: Uuid,
) -> Result<Option<TotpState>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, totp_sealed, totp_last_step, confirm_attempts FROM factors
         WHERE id = $1 AND tenant_id = $2 AND account_id = $3 AND kind = 'totp' FOR UPDATE",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(account_id.as_str())
    .fetch_optional(conn)
    .await
}

/// Records an accepted TOTP step; a pending factor becomes active.
pub async fn accept_totp(
    conn: &mut PgConnection,
    id: Uuid,
    step: i64,
    now: DateTime<Utc>,
) -> Result<Factor, sqlx::Error> {
    let sql = format!(
        "UPDATE factors SET totp_last_step = $2, status = 'active', verified_at = coalesce(verified_at, $3)
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(step).bind(now).fetch_one(conn).await
}

/// Counts a wrong confirmation code; returns the attempts so far.
pub async fn count_wrong_confirmation(conn: &mut PgConnection, id: Uuid) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE factors SET confirm_attempts = confirm_attempts + 1 WHERE id = $1 RETURNING confirm_attempts",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM factors WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}
