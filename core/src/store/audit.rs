//! The `audit_log` table: who changed what, when. Written in the same
//! transaction as the change (and the event that announces it).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::ids::{AccountId, OrganisationId, Who};

/// One security-relevant change.
pub struct Entry<'a> {
    pub tenant_id: Uuid,
    pub account_id: Option<&'a str>,
    pub organisation_id: Option<&'a OrganisationId>,
    pub action: &'a str,
    pub who: &'a Who,
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

impl<'a> Entry<'a> {
    /// An entry about the tenant as a whole (no account, no organisation).
    pub fn tenant(
        tenant_id: Uuid,
        action: &'a str,
        who: &'a Who,
        detail: serde_json::Value,
        at: DateTime<Utc>,
    ) -> Self {
        Entry { tenant_id, account_id: None, organisation_id: None, action, who, detail, at }
    }
}

pub async fn record(conn: &mut PgConnection, e: Entry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, account_id, organisation_id, action, actor, api_key_id, detail, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.tenant_id)
    .bind(e.account_id)
    .bind(e.organisation_id.map(OrganisationId::as_str))
    .bind(e.action)
    .bind(e.who.actor.as_str())
    .bind(e.who.api_key_id.as_deref())
    .bind(&e.detail)
    .bind(e.at)
    .execute(conn)
    .await?;
    Ok(())
}

/// An audit entry as a backend reads it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Record {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation_id: Option<String>,
    pub action: String,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    #[serde(with = "crate::timestamp")]
    pub occurred_at: DateTime<Utc>,
}

/// Which entries to read: one account's, or one organisation's.
pub enum Subject<'a> {
    Account(&'a AccountId),
    Organisation(&'a OrganisationId),
    /// Changes to the tenant as a whole: API keys, geo permissions, lifted
    /// prefix blocks (entries with neither an account nor an organisation).
    Tenant,
}

/// Newest first, entries older than `before` (an id) when paging.
pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    subject: Subject<'_>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Record>, sqlx::Error> {
    let (filter, value) = match subject {
        Subject::Account(a) => ("account_id = $2", Some(a.as_str())),
        Subject::Organisation(o) => ("organisation_id = $2", Some(o.as_str())),
        Subject::Tenant => ("account_id IS NULL AND organisation_id IS NULL AND $2::text IS NULL", None),
    };
    let sql = format!(
        "SELECT id, account_id, organisation_id, action, actor, api_key_id, detail, occurred_at FROM audit_log
         WHERE tenant_id = $1 AND {filter} AND id < $3 ORDER BY id DESC LIMIT $4"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(value)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// An operator's action (on a dead letter, an operator key): audited like the
/// rest, with the tenant whose data it touched, or none.
pub async fn record_operation(
    conn: &mut PgConnection,
    tenant_id: Option<Uuid>,
    action: &str,
    who: &Who,
    detail: serde_json::Value,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, action, actor, api_key_id, detail, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant_id)
    .bind(action)
    .bind(who.actor.as_str())
    .bind(who.api_key_id.as_deref())
    .bind(&detail)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// An operator action as operators read it back.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Operation {
    pub id: i64,
    /// The tenant whose data the action touched; absent for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub action: String,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    #[serde(with = "crate::timestamp")]
    pub occurred_at: DateTime<Utc>,
}

/// Operator actions (`dead_letter.*`, `operator_key.*`), newest first; a
/// tenant's view holds those on its own data only.
pub async fn operations(
    pool: &PgPool,
    tenant_id: Option<Uuid>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Operation>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.id, t.name AS tenant, a.action, a.actor, a.api_key_id, a.detail, a.occurred_at
         FROM audit_log a LEFT JOIN tenants t ON t.id = a.tenant_id
         WHERE (a.action LIKE 'dead_letter.%' OR a.action LIKE 'operator_key.%')
           AND ($1::uuid IS NULL OR a.tenant_id = $1) AND a.id < $2
         ORDER BY a.id DESC LIMIT $3",
    )
    .bind(tenant_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await
}
