//! `tenants.display_name` and the `message_templates` table.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Locale};

/// A tenant's text as stored (validated when it was saved).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredTemplate {
    pub channel: String,
    pub locale: String,
    pub body: String,
    pub updated_at: DateTime<Utc>,
}

/// The tenant's template to use for a send in `$locale` by `$channel`: the
/// one of that locale, else of its base language. Joined laterally into the
/// statement that reads the verification (`TEMPLATE_COLUMNS` names it), so a
/// send reads its text without a round trip of its own.
pub(crate) fn lateral(channel: &str, locale: &str) -> String {
    format!(
        "LEFT JOIN LATERAL (
            SELECT m.locale AS template_locale, m.body AS template_body FROM message_templates m
            WHERE m.tenant_id = t.id AND m.channel = {channel}
              AND m.locale IN ({locale}, split_part({locale}, '-', 1))
            ORDER BY m.locale = {locale} DESC LIMIT 1
         ) tpl ON true"
    )
}

pub(crate) const TEMPLATE_COLUMNS: &str = "t.display_name, tpl.template_locale, tpl.template_body";

/// What a send needs of the tenant's branding, as read with its verification.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct ForSend {
    pub display_name: Option<String>,
    pub template_locale: Option<String>,
    pub template_body: Option<String>,
}

/// The branding a send by `channel` in `locale` uses, on its own (for a
/// call script a provider fetches later).
pub async fn for_send(
    pool: &PgPool,
    tenant_id: Uuid,
    channel: Channel,
    locale: &Locale,
) -> Result<ForSend, sqlx::Error> {
    let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM tenants t {} WHERE t.id = $1", lateral("$2", "$3"));
    let row: Option<ForSend> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(channel.as_str())
        .bind(locale.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(row.unwrap_or_default())
}

pub async fn display_name(conn: &mut PgConnection, tenant_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    let name: Option<Option<String>> = sqlx::query_scalar("SELECT display_name FROM tenants WHERE id = $1")
        .bind(tenant_id)
        .fetch_optional(conn)
        .await?;
    Ok(name.flatten())
}

/// Sets (or with `None` removes) the display name; returns the one before.
pub async fn set_display_name(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    name: Option<&str>,
) -> Result<Option<String>, sqlx::Error> {
    let before: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE tenants t SET display_name = $2 FROM (SELECT id, display_name FROM tenants WHERE id = $1 FOR UPDATE) old
         WHERE t.id = old.id RETURNING old.display_name",
    )
    .bind(tenant_id)
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(before.flatten())
}

pub async fn templates(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<StoredTemplate>, sqlx::Error> {
    sqlx::query_as(
        "SELECT channel, locale, body, updated_at FROM message_templates WHERE tenant_id = $1
         ORDER BY channel, locale",
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await
}

pub async fn put_template(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    channel: Channel,
    locale: &Locale,
    body: &str,
    now: DateTime<Utc>,
) -> Result<StoredTemplate, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO message_templates (tenant_id, channel, locale, body, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, channel, locale) DO UPDATE SET body = EXCLUDED.body, updated_at = EXCLUDED.updated_at
         RETURNING channel, locale, body, updated_at",
    )
    .bind(tenant_id)
    .bind(channel.as_str())
    .bind(locale.as_str())
    .bind(body)
    .bind(now)
    .fetch_one(conn)
    .await
}

pub async fn delete_template(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    channel: Channel,
    locale: &Locale,
) -> Result<Option<StoredTemplate>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM message_templates WHERE tenant_id = $1 AND channel = $2 AND locale = $3
         RETURNING channel, locale, body, updated_at",
    )
    .bind(tenant_id)
    .bind(channel.as_str())
    .bind(locale.as_str())
    .fetch_optional(conn)
    .await
}
