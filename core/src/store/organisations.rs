//! The `organisations` and `memberships` tables: each organisation's two-factor
//! policy, and which organisations an account logs into.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::policy::{Settings, TwoFactorPolicy};
use crate::ids::{AccountId, OrganisationId};
use crate::store::CorruptRow;

pub async fn settings(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    organisation_id: &OrganisationId,
    for_update: bool,
) -> Result<Settings, super::StoreError> {
    let sql = format!(
        "SELECT policy, sso_enabled FROM organisations WHERE tenant_id = $1 AND organisation_id = $2{}",
        if for_update { " FOR UPDATE" } else { "" }
    );
    let row: Option<(String, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(organisation_id.as_str())
        .fetch_optional(conn)
        .await?;
    let Some((policy, sso_enabled)) = row else {
        return Ok(Settings::default());
    };
    let policy: TwoFactorPolicy = policy.parse().map_err(|e: crate::domain::policy::PolicyParseError| CorruptRow {
        table: "organisations",
        id: organisation_id.as_str().to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Settings { policy, sso_enabled })
}

/// Serialises changes to one organisation's policy (the row may not exist yet).
pub async fn lock(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    organisation_id: &OrganisationId,
) -> Result<(), sqlx::Error> {
    let key = super::keys::lock_key(&["organisation", &tenant_id.to_string(), organisation_id.as_str()]);
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key).execute(conn).await?;
    Ok(())
}

pub async fn save(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    organisation_id: &OrganisationId,
    settings: Settings,
    updated_by: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO organisations (tenant_id, organisation_id, policy, sso_enabled, updated_at, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, organisation_id) DO UPDATE
         SET policy = EXCLUDED.policy, sso_enabled = EXCLUDED.sso_enabled,
             updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
    )
    .bind(tenant_id)
    .bind(organisation_id.as_str())
    .bind(settings.policy.as_str())
    .bind(settings.sso_enabled)
    .bind(now)
    .bind(updated_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// Notes that the account logs into the organisation.
pub async fn record_membership(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    organisation_id: &OrganisationId,
    account_id: &AccountId,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO memberships (tenant_id, organisation_id, account_id, last_login_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, account_id, organisation_id) DO UPDATE SET last_login_at = EXCLUDED.last_login_at",
    )
    .bind(tenant_id)
    .bind(organisation_id.as_str())
    .bind(account_id.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The strictest policy among the organisations the account logs into.
pub async fn strictest_for_account(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
) -> Result<TwoFactorPolicy, sqlx::Error> {
    let policies: Vec<TwoFactorPolicy> = sqlx::query_scalar(
        "SELECT o.policy FROM memberships m
         JOIN organisations o ON o.tenant_id = m.tenant_id AND o.organisation_id = m.organisation_id
         WHERE m.tenant_id = $1 AND m.account_id = $2",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .fetch_all(conn)
    .await?;
    Ok(policies.into_iter().max_by_key(|p| *p as u8).unwrap_or_default())
}
