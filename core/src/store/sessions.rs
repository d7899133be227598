//! The `console_sessions` table: signed-in operator console sessions. The
//! browser holds a random token in a cookie; only its SHA-256 is stored, with
//! the key that signed in (checked again on every request) and the expiry.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

pub async fn insert(
    pool: &PgPool,
    token_hash: &[u8],
    key_id: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO console_sessions (token_hash, key_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(token_hash)
        .bind(key_id)
        .bind(now)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// The key and expiry of a live session.
pub async fn live(
    pool: &PgPool,
    token_hash: &[u8],
    now: DateTime<Utc>,
) -> Result<Option<(String, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as("SELECT key_id, expires_at FROM console_sessions WHERE token_hash = $1 AND expires_at > $2")
        .bind(token_hash)
        .bind(now)
        .fetch_optional(pool)
        .await
}

pub async fn delete(pool: &PgPool, token_hash: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1").bind(token_hash).execute(pool).await?;
    Ok(())
}

/// Ends every session a key opened (the key was revoked or rotated away).
pub async fn delete_for_key(conn: &mut sqlx::PgConnection, key_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM console_sessions WHERE key_id = $1").bind(key_id).execute(conn).await?;
    Ok(())
}

pub async fn prune(pool: &PgPool, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1").bind(now).execute(pool).await?;
    Ok(())
}
