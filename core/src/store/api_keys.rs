//! The `api_keys` table. A key's secret is stored only as its SHA-256
//! (`secret_hash`); only `live` reads it back, for the authenticator. Scopes and
//! source networks are text here: the service parses them at its edge.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::ids::Tenant;

/// A key to insert: the hash of its secret, never the secret.
pub struct NewKey<'a> {
    pub key_id: &'a str,
    pub secret_hash: &'a [u8],
    pub label: Option<&'a str>,
    pub scopes: &'a [String],
    pub allowed_cidrs: &'a [String],
}

/// A key as it is listed: everything but its secret and hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub key_id: String,
    pub tenant_id: Uuid,
    pub label: Option<String>,
    pub scopes: Vec<String>,
    pub allowed_cidrs: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

const ROW: &str = "key_id, tenant_id, label, scopes, allowed_cidrs, created_at, expires_at, revoked_at, last_used_at";

/// What the authenticator needs of a live key. No `Debug`: it holds the hash.
#[derive(sqlx::FromRow)]
pub struct LiveKey {
    pub secret_hash: Vec<u8>,
    pub tenant_id: Uuid,
    pub tenant_name: String,
    pub scopes: Vec<String>,
    pub allowed_cidrs: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl LiveKey {
    pub fn tenant(&self) -> Tenant {
        Tenant { id: self.tenant_id, name: self.tenant_name.clone() }
    }
}

pub async fn insert(conn: &mut PgConnection, tenant: &Tenant, key: &NewKey<'_>) -> Result<KeyRow, sqlx::Error> {
    let sql = format!(
        "INSERT INTO api_keys (key_id, tenant_id, secret_hash, label, scopes, allowed_cidrs)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ROW}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(key.key_id)
        .bind(tenant.id)
        .bind(key.secret_hash)
        .bind(key.label)
        .bind(key.scopes)
        .bind(key.allowed_cidrs)
        .fetch_one(conn)
        .await
}

/// A key that is neither revoked nor expired, with its tenant.
pub async fn live(pool: &PgPool, key_id: &str) -> Result<Option<LiveKey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.secret_hash, t.id AS tenant_id, t.name AS tenant_name, k.scopes, k.allowed_cidrs, k.expires_at
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.key_id = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await
}

/// A tenant's keys, oldest first, revoked and expired ones included.
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<KeyRow>, sqlx::Error> {
    let sql = format!("SELECT {ROW} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, key_id");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant_id).fetch_all(pool).await
}

/// One key of a tenant.
pub async fn get(pool: &PgPool, tenant_id: Uuid, key_id: &str) -> Result<Option<KeyRow>, sqlx::Error> {
    let sql = format!("SELECT {ROW} FROM api_keys WHERE tenant_id = $1 AND key_id = $2");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant_id).bind(key_id).fetch_optional(pool).await
}

/// The tenant a key belongs to, whatever its state (operator commands name a
/// key without its tenant).
pub async fn tenant_of(pool: &PgPool, key_id: &str) -> Result<Option<Tenant>, sqlx::Error> {
    let row: Option<(Uuid, String)> =
        sqlx::query_as("SELECT t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.key_id = $1")
            .bind(key_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(id, name)| Tenant { id, name }))
}

/// Revokes a tenant's key. `None` when the tenant has no such key; with it,
/// whether this call revoked it (a second revocation keeps the first time).
pub async fn revoke(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    key_id: &str,
) -> Result<Option<(KeyRow, bool)>, sqlx::Error> {
    let sql = format!(
        "UPDATE api_keys SET revoked_at = now()
         WHERE tenant_id = $1 AND key_id = $2 AND revoked_at IS NULL RETURNING {ROW}"
    );
    let revoked: Option<KeyRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant_id).bind(key_id).fetch_optional(&mut *conn).await?;
    if let Some(row) = revoked {
        return Ok(Some((row, true)));
    }
    let sql = format!("SELECT {ROW} FROM api_keys WHERE tenant_id = $1 AND key_id = $2");
    let existing: Option<KeyRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant_id).bind(key_id).fetch_optional(conn).await?;
    Ok(existing.map(|row| (row, false)))
}

/// Rotation, in the caller's transaction: a new key with the old one's label, scopes
/// and source networks, and the old key set to expire after `grace` (never
/// later than it already would). `None` when the tenant has no such live key.
/// Returns (old, new).
pub async fn rotate(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    old_key_id: &str,
    new_key_id: &str,
    new_secret_hash: &[u8],
    grace: Duration,
) -> Result<Option<(KeyRow, KeyRow)>, sqlx::Error> {
    let locked: Option<String> = sqlx::query_scalar(
        "SELECT key_id FROM api_keys
         WHERE tenant_id = $1 AND key_id = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
         FOR UPDATE",
    )
    .bind(tenant_id)
    .bind(old_key_id)
    .fetch_optional(&mut *tx)
    .await?;
    if locked.is_none() {
        return Ok(None);
    }
    let insert = format!(
        "INSERT INTO api_keys (key_id, tenant_id, secret_hash, label, scopes, allowed_cidrs)
         SELECT $1, tenant_id, $2, label, scopes, allowed_cidrs FROM api_keys WHERE key_id = $3
         RETURNING {ROW}"
    );
    let new: KeyRow = sqlx::query_as(sqlx::AssertSqlSafe(insert))
        .bind(new_key_id)
        .bind(new_secret_hash)
        .bind(old_key_id)
        .fetch_one(&mut *tx)
        .await?;
    let expire = format!(
        "UPDATE api_keys
         SET expires_at = least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $2))
         WHERE key_id = $1 RETURNING {ROW}"
    );
    let old: KeyRow = sqlx::query_as(sqlx::AssertSqlSafe(expire))
        .bind(old_key_id)
        .bind(grace.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
    Ok(Some((old, new)))
}

/// Records that a key was used just now.
pub async fn touch(pool: &PgPool, key_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE key_id = $1").bind(key_id).execute(pool).await?;
    Ok(())
}
