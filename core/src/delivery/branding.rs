//! A tenant's branding, as sends use it and as a backend changes it. Every
//! change is audited (`branding.changed`, `template.saved`,
//! `template.deleted`, in the tenant's trail) in its own transaction.
//!
//! A send reads the tenant's display name and template in the statement that
//! claims its job (`store::verifications::claim_for_dispatch`): a change is
//! seen by the next send, in every process, without a cache to invalidate.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Locale};

use crate::delivery::render;
use crate::delivery::template::{DisplayName, Template};
use crate::ids::Who;
use crate::store::audit::{self, Entry};
use crate::store::branding::{self as store, ForSend, StoredTemplate};

/// What a send names and says.
pub struct Resolved {
    /// The display name, else `verification.app_name`.
    pub app: String,
    /// The tenant's template; `None`: the built-in text.
    pub template: Option<Template>,
}

/// Reads a send's branding. A stored text that no longer parses (a hand
/// edit) falls back to the built-in text rather than holding the code back.
pub fn resolve(row: ForSend, channel: Channel, default_app: &str) -> Resolved {
    let template = match (row.template_locale, row.template_body) {
        (Some(locale), Some(body)) => match Locale::parse(&locale) {
            Ok(locale) => Template::parse(&body, channel, &locale, render::knows_durations(&locale))
                .inspect_err(|error| {
                    tracing::error!(%error, channel = %channel, %locale, "stored template unreadable: built-in text sent")
                })
                .ok(),
            Err(_) => None,
        },
        _ => None,
    };
    Resolved { app: row.display_name.unwrap_or_else(|| default_app.to_owned()), template }
}

pub async fn display_name(pool: &PgPool, tenant_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    store::display_name(&mut conn, tenant_id).await
}

/// Sets or (with `None`) removes the display name, audited as `branding.changed`.
pub async fn set_display_name(
    pool: &PgPool,
    tenant_id: Uuid,
    name: Option<&DisplayName>,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let name = name.map(DisplayName::as_str);
    let before = store::set_display_name(&mut tx, tenant_id, name).await?;
    if before.as_deref() != name {
        let detail = serde_json::json!({ "display_name": name, "previous": before });
        audit::record(&mut tx, Entry::tenant(tenant_id, "branding.changed", who, detail, now)).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn save_template(
    pool: &PgPool,
    tenant_id: Uuid,
    channel: Channel,
    locale: &Locale,
    template: &Template,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<StoredTemplate, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let saved = store::put_template(&mut tx, tenant_id, channel, locale, template.source(), now).await?;
    let detail =
        serde_json::json!({ "channel": channel.as_str(), "locale": locale.as_str(), "text": template.source() });
    audit::record(&mut tx, Entry::tenant(tenant_id, "template.saved", who, detail, now)).await?;
    tx.commit().await?;
    Ok(saved)
}

/// Removes the tenant's text: sends go back to the built-in one. `None`:
/// there was none.
pub async fn delete_template(
    pool: &PgPool,
    tenant_id: Uuid,
    channel: Channel,
    locale: &Locale,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<Option<StoredTemplate>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let deleted = store::delete_template(&mut tx, tenant_id, channel, locale).await?;
    if let Some(d) = &deleted {
        let detail = serde_json::json!({ "channel": d.channel, "locale": d.locale, "text": d.body });
        audit::record(&mut tx, Entry::tenant(tenant_id, "template.deleted", who, detail, now)).await?;
    }
    tx.commit().await?;
    Ok(deleted)
}
