//! The `operator_keys` table: deployment operator keys, tied to no tenant. As
//! for tenant keys, the secret is stored as its SHA-256 only and only `live`
//! reads the hash back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// A key as it is listed: everything but its hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperatorKeyRow {
    pub key_id: String,
    pub label: Option<String>,
    pub allowed_cidrs: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

const ROW: &str = "key_id, label, allowed_cidrs, created_at, expires_at, revoked_at, last_used_at";

/// What the authenticator needs of a live key. No `Debug`: it holds the hash.
#[derive(sqlx::FromRow)]
pub struct LiveOperatorKey {
    pub secret_hash: Vec<u8>,
    pub allowed_cidrs: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    conn: &mut PgConnection,
    key_id: &str,
    secret_hash: &[u8],
    label: Option<&str>,
    allowed_cidrs: &[String],
) -> Result<OperatorKeyRow, sqlx::Error> {
    let sql = format!(
        "INSERT INTO operator_keys (key_id, secret_hash, label, allowed_cidrs) VALUES ($1, $2, $3, $4) RETURNING {ROW}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(key_id)
        .bind(secret_hash)
        .bind(label)
        .bind(allowed_cidrs)
        .fetch_one(conn)
        .await
}

pub async fn live(pool: &PgPool, key_id: &str) -> Result<Option<LiveOperatorKey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT secret_hash, allowed_cidrs, expires_at FROM operator_keys
         WHERE key_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await
}

pub async fn list(pool: &PgPool) -> Result<Vec<OperatorKeyRow>, sqlx::Error> {
    let sql = format!("SELECT {ROW} FROM operator_keys ORDER BY created_at, key_id");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await
}

/// Revokes a key; `None` when there is none, else whether this call revoked it.
pub async fn revoke(conn: &mut PgConnection, key_id: &str) -> Result<Option<(OperatorKeyRow, bool)>, sqlx::Error> {
    let sql =
        format!("UPDATE operator_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL RETURNING {ROW}");
    if let Some(row) = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(key_id).fetch_optional(&mut *conn).await? {
        return Ok(Some((row, true)));
    }
    let sql = format!("SELECT {ROW} FROM operator_keys WHERE key_id = $1");
    let existing: Option<OperatorKeyRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(key_id).fetch_optional(conn).await?;
    Ok(existing.map(|row| (row, false)))
}

/// A new key with the old one's label and networks; the old one expires after
/// `grace`. `None` when there is no such live key. Returns (old, new).
pub async fn rotate(
    tx: &mut PgConnection,
    old_key_id: &str,
    new_key_id: &str,
    new_secret_hash: &[u8],
    grace: Duration,
) -> Result<Option<(OperatorKeyRow, OperatorKeyRow)>, sqlx::Error> {
    let locked: Option<String> = sqlx::query_scalar(
        "SELECT key_id FROM operator_keys
         WHERE key_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) FOR UPDATE",
    )
    .bind(old_key_id)
    .fetch_optional(&mut *tx)
    .await?;
    if locked.is_none() {
        return Ok(None);
    }
    let insert = format!(
        "INSERT INTO operator_keys (key_id, secret_hash, label, allowed_cidrs)
         SELECT $1, $2, label, allowed_cidrs FROM operator_keys WHERE key_id = $3 RETURNING {ROW}"
    );
    let new: OperatorKeyRow = sqlx::query_as(sqlx::AssertSqlSafe(insert))
        .bind(new_key_id)
        .bind(new_secret_hash)
        .bind(old_key_id)
        .fetch_one(&mut *tx)
        .await?;
    let expire = format!(
        "UPDATE operator_keys
         SET expires_at = least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $2))
         WHERE key_id = $1 RETURNING {ROW}"
    );
    let old: OperatorKeyRow = sqlx::query_as(sqlx::AssertSqlSafe(expire))
        .bind(old_key_id)
        .bind(grace.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
    Ok(Some((old, new)))
}

pub async fn touch(pool: &PgPool, key_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE operator_keys SET last_used_at = now() WHERE key_id = $1").bind(key_id).execute(pool).await?;
    Ok(())
}
