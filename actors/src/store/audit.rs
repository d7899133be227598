//! The `audit_log` table: who changed what, when. Written in the same
//! transaction as the change (and the event that announces it).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::ids::Who;

/// One security-relevant change.
pub struct Entry<'a> {
    pub tenant_id: Uuid,
    pub account_id: Option<&'a str>,
    pub organisation_id: Option<&'a str>,
    pub action: &'a str,
    pub who: &'a Who,
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

pub async fn record(conn: &mut PgConnection, e: Entry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, account_id, organisation_id, action, actor, api_key_id, detail, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.tenant_id)
    .bind(e.account_id)
    .bind(e.organisation_id)
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
    pub occurred_at: DateTime<Utc>,
}

/// Which entries to read: one account's, or one organisation's.
pub enum Subject<'a> {
    Account(&'a str),
    Organisation(&'a str),
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
        Subject::Account(a) => ("account_id = $2", Some(a)),
        Subject::Organisation(o) => ("organisation_id = $2", Some(o)),
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
