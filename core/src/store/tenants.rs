//! Tenants (their API keys are in `api_keys`).

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
