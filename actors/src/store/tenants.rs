//! Tenants and API keys.

use sqlx::PgPool;
use uuid::Uuid;

use crate::ids::Tenant;

pub async fn create(pool: &PgPool, name: &str) -> Result<Tenant, sqlx::Error> {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO tenants (id, name) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
         RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok(Tenant { id, name: name.to_owned() })
}

pub async fn by_name(pool: &PgPool, name: &str) -> Result<Option<Tenant>, sqlx::Error> {
    let row: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, name FROM tenants WHERE name = $1").bind(name).fetch_optional(pool).await?;
    Ok(row.map(|(id, name)| Tenant { id, name }))
}

pub async fn insert_key(
    pool: &PgPool,
    tenant: &Tenant,
    key_id: &str,
    secret_hash: &[u8],
    label: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO api_keys (key_id, tenant_id, secret_hash, label) VALUES ($1, $2, $3, $4)")
        .bind(key_id)
        .bind(tenant.id)
        .bind(secret_hash)
        .bind(label)
        .execute(pool)
        .await?;
    Ok(())
}

/// The stored hash and tenant of a live (not revoked) key.
pub async fn live_key(pool: &PgPool, key_id: &str) -> Result<Option<(Vec<u8>, Tenant)>, sqlx::Error> {
    let row: Option<(Vec<u8>, Uuid, String)> = sqlx::query_as(
        "SELECT k.secret_hash, t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.key_id = $1 AND k.revoked_at IS NULL",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(hash, id, name)| (hash, Tenant { id, name })))
}
