//! The `factors` table, written only by the account-state actor.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::{Channel, PhoneNumber};

use crate::ids::AccountId;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Factor {
    pub id: Uuid,
    pub kind: String,
    pub phone: String,
    pub status: String,
    pub verified_at: DateTime<Utc>,
}

/// Adds an active phone factor; returns it and whether it is new.
pub async fn upsert_phone(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
    kind: Channel,
    phone: &PhoneNumber,
    verified_at: DateTime<Utc>,
) -> Result<(Factor, bool), sqlx::Error> {
    let inserted: Option<Factor> = sqlx::query_as(
        "INSERT INTO factors (id, tenant_id, account_id, kind, phone, status, verified_at)
         VALUES ($1, $2, $3, $4, $5, 'active', $6)
         ON CONFLICT (tenant_id, account_id, kind, phone) DO NOTHING
         RETURNING id, kind, phone, status, verified_at",
    )
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
    let existing: Factor = sqlx::query_as(
        "SELECT id, kind, phone, status, verified_at FROM factors
         WHERE tenant_id = $1 AND account_id = $2 AND kind = $3 AND phone = $4",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .bind(kind.as_str())
    .bind(phone.e164())
    .fetch_one(conn)
    .await?;
    Ok((existing, false))
}

pub async fn list(pool: &PgPool, tenant_id: Uuid, account_id: &AccountId) -> Result<Vec<Factor>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, phone, status, verified_at FROM factors
         WHERE tenant_id = $1 AND account_id = $2 ORDER BY created_at, id",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .fetch_all(pool)
    .await
}
