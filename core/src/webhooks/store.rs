//! The `webhook_endpoints` and `webhook_deliveries` tables. Secrets are sealed
//! with the deployment's encryption key, bound to the endpoint's id, and only
//! opened by the deliverer to sign.

use std::time::Duration;

use actix::Addr;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{EndpointUrl, EventFilter, SigningSecret};
use crate::codes::keys::CodeKeys;
use crate::domain::webhook::DeliveryStatus;
use crate::ids::Who;
use crate::outbox::relay::{self, OutboxRelay};
use crate::store::{StoreError, audit, dead_letters};

/// The most endpoints one tenant holds.
pub const MAX_ENDPOINTS: i64 = 20;

/// An endpoint as a backend reads it: never a secret.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub url: EndpointUrl,
    pub filter: EventFilter,
    pub enabled: bool,
    /// `manual`, or `gone` (the receiver answered 410).
    pub disabled_reason: Option<String>,
    /// While the previous secret still signs: until when.
    pub previous_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: Uuid,
    tenant_id: Uuid,
    url: String,
    event_types: Vec<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    previous_expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<EndpointRow> for Endpoint {
    fn from(r: EndpointRow) -> Self {
        Endpoint {
            id: r.id,
            tenant_id: r.tenant_id,
            url: EndpointUrl::from_stored(r.url),
            filter: EventFilter::from_stored(r.event_types),
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
            previous_expires_at: r.previous_expires_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const COLUMNS: &str =
    "id, tenant_id, url, event_types, enabled, disabled_reason, previous_expires_at, created_at, updated_at";

pub use super::endpoint_url::host_of;

#[derive(Debug, thiserror::Error)]
pub enum WebhookStoreError {
    #[error("the tenant has {0} webhook endpoints, the most it may hold: delete one first")]
    TooMany(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for WebhookStoreError {
    fn from(e: sqlx::Error) -> Self {
        WebhookStoreError::Store(e.into())
    }
}

/// What a new endpoint is: where, which events, on or off.
#[derive(Debug, Clone, Copy)]
pub struct NewEndpoint<'a> {
    pub url: &'a EndpointUrl,
    pub filter: &'a EventFilter,
    pub enabled: bool,
}

/// A new endpoint and its secret (shown once). At most [`MAX_ENDPOINTS`] per
/// tenant, counted under a lock on the tenant's row so two creates cannot both
/// take the last place.
pub async fn create(
    pool: &PgPool,
    keys: &CodeKeys,
    tenant_id: Uuid,
    new: NewEndpoint<'_>,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<(Endpoint, SigningSecret), WebhookStoreError> {
    let NewEndpoint { url, filter, enabled } = new;
    let id = Uuid::new_v4();
    let secret = SigningSecret::generate();
    let sealed = keys.seal_bytes(id, secret.bytes());
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE").bind(tenant_id).execute(&mut *tx).await?;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(&mut *tx)
        .await?;
    if held >= MAX_ENDPOINTS {
        return Err(WebhookStoreError::TooMany(held));
    }
    let sql = format!(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, enabled, disabled_reason, secret_sealed,
             created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 THEN NULL ELSE 'manual' END, $6, $7, $7) RETURNING {COLUMNS}"
    );
    let row: EndpointRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant_id)
        .bind(url.as_str())
        .bind(filter.entries())
        .bind(enabled)
        .bind(&sealed)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    let detail = serde_json::json!({ "webhook_id": id, "host": url.host(), "event_types": filter.entries(),
        "enabled": enabled });
    audit::record_operation(&mut tx, Some(tenant_id), "webhook.created", who, detail, now).await?;
    tx.commit().await?;
    Ok((row.into(), secret))
}

pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<Endpoint>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id");
    let rows: Vec<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant_id).fetch_all(pool).await?;
    Ok(rows.into_iter().map(Endpoint::from).collect())
}

pub async fn get(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<Endpoint>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2");
    let row: Option<EndpointRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant_id).bind(id).fetch_optional(pool).await?;
    Ok(row.map(Endpoint::from))
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct Change<'a> {
    pub url: Option<&'a EndpointUrl>,
    pub filter: Option<&'a EventFilter>,
    pub enabled: Option<bool>,
}

pub async fn update(
    pool: &PgPool,
    tenant_id: Uuid,
    id: Uuid,
    change: &Change<'_>,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<Option<Endpoint>, StoreError> {
    let mut tx = pool.begin().await?;
    let sql = format!(
        "UPDATE webhook_endpoints SET url = coalesce($3, url), event_types = coalesce($4, event_types),
             enabled = coalesce($5, enabled),
             disabled_reason = CASE WHEN $5 IS NULL THEN disabled_reason WHEN $5 THEN NULL ELSE 'manual' END,
             updated_at = $6
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    );
    let row: Option<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(id)
        .bind(change.url.map(EndpointUrl::as_str))
        .bind(change.filter.map(EventFilter::entries))
        .bind(change.enabled)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let detail = serde_json::json!({ "webhook_id": id, "host": host_of(&row.url), "url_changed": change.url.is_some(),
        "event_types": row.event_types, "enabled": row.enabled });
    audit::record_operation(&mut tx, Some(tenant_id), "webhook.updated", who, detail, now).await?;
    tx.commit().await?;
    Ok(Some(row.into()))
}

/// Deletes an endpoint and the deliveries still waiting for it.
pub async fn delete(
    pool: &PgPool,
    tenant_id: Uuid,
    id: Uuid,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<Option<Endpoint>, StoreError> {
    let mut tx = pool.begin().await?;
    let sql = format!("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}");
    let row: Option<EndpointRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant_id).bind(id).fetch_optional(&mut *tx).await?;
    let Some(row) = row else { return Ok(None) };
    let detail = serde_json::json!({ "webhook_id": id, "host": host_of(&row.url) });
    audit::record_operation(&mut tx, Some(tenant_id), "webhook.deleted", who, detail, now).await?;
    tx.commit().await?;
    Ok(Some(row.into()))
}

/// A new secret; the current one keeps signing beside it for `overlap` (none
/// when zero). The sealed secret moves as it is: both are bound to the id.
pub async fn rotate(
    pool: &PgPool,
    keys: &CodeKeys,
    tenant_id: Uuid,
    id: Uuid,
    overlap: Duration,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<Option<(Endpoint, SigningSecret)>, StoreError> {
    let secret = SigningSecret::generate();
    let sealed = keys.seal_bytes(id, secret.bytes());
    let until = (!overlap.is_zero())
        .then(|| now + chrono::Duration::from_std(overlap).unwrap_or_else(|_| chrono::Duration::days(30)));
    let mut tx = pool.begin().await?;
    let sql = format!(
        "UPDATE webhook_endpoints SET previous_sealed = CASE WHEN $4::timestamptz IS NULL THEN NULL ELSE secret_sealed END,
             previous_expires_at = $4, secret_sealed = $3, updated_at = $5
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    );
    let row: Option<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(id)
        .bind(&sealed)
        .bind(until)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let detail = serde_json::json!({ "webhook_id": id, "previous_expires_at": until.map(crate::timestamp::format) });
    audit::record_operation(&mut tx, Some(tenant_id), "webhook.secret_rotated", who, detail, now).await?;
    tx.commit().await?;
    Ok(Some((row.into(), secret)))
}

/// A delivery claimed for one attempt, with what posting it needs.
#[derive(sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub seq: i64,
    pub endpoint_id: Uuid,
    pub tenant_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub lane: String,
    pub payload: serde_json::Value,
    /// Attempts made before this one.
    pub attempts: i32,
    pub url: String,
    pub enabled: bool,
    pub secret_sealed: Vec<u8>,
    pub previous_sealed: Option<Vec<u8>>,
    pub previous_expires_at: Option<DateTime<Utc>>,
}

/// Why a delivery was not claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotClaimed {
    /// Delivered, dead, skipped, or gone with its endpoint: nothing to do.
    Finished,
    /// An earlier delivery of its lane is pending, with the attempts it has
    /// had: that one's outcome queues this one.
    Waiting { head_attempts: i32 },
    /// Another consumer holds it (until its lease ends).
    HeldElsewhere,
}

/// Claims a delivery for `lease` when it is pending, unheld, and the head of
/// its lane (no pending delivery of the same endpoint and lane before it).
pub async fn claim(pool: &PgPool, id: Uuid, lease: Duration) -> Result<Result<Claimed, NotClaimed>, sqlx::Error> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let claimed: Option<Claimed> = sqlx::query_as(
        "WITH c AS (
            UPDATE webhook_deliveries d SET claimed_until = now() + $2 * interval '1 millisecond'
            WHERE d.id = $1 AND d.status = 'pending' AND (d.claimed_until IS NULL OR d.claimed_until < now())
              AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id
                  AND p.lane = d.lane AND p.status = 'pending' AND p.seq < d.seq)
            RETURNING d.id, d.seq, d.endpoint_id, d.tenant_id, d.event_id, d.event_type, d.lane, d.payload, d.attempts
         )
         SELECT c.*, e.url, e.enabled, e.secret_sealed, e.previous_sealed, e.previous_expires_at
         FROM c JOIN webhook_endpoints e ON e.id = c.endpoint_id",
    )
    .bind(id)
    .bind(lease_ms)
    .fetch_optional(pool)
    .await?;
    if let Some(claimed) = claimed {
        return Ok(Ok(claimed));
    }
    let state: Option<(DeliveryStatus, Option<i32>)> = sqlx::query_as(
        "SELECT d.status,
                (SELECT p.attempts FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id AND p.lane = d.lane
                    AND p.status = 'pending' AND p.seq < d.seq ORDER BY p.seq LIMIT 1)
         FROM webhook_deliveries d WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(Err(match state {
        None => NotClaimed::Finished,
        Some((status, _)) if status != DeliveryStatus::Pending => NotClaimed::Finished,
        Some((_, Some(head_attempts))) => NotClaimed::Waiting { head_attempts },
        // Held, or claimable a moment from now (a lease that just ran out).
        Some((_, None)) => NotClaimed::HeldElsewhere,
    }))
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    Delivered,
    Dead,
    Skipped,
}

impl Final {
    pub fn status(self) -> DeliveryStatus {
        match self {
            Final::Delivered => DeliveryStatus::Delivered,
            Final::Dead => DeliveryStatus::Dead,
            Final::Skipped => DeliveryStatus::Skipped,
        }
    }
}

/// The outcome of an attempt, recorded in one transaction.
pub struct Record<'a> {
    /// `None`: it will be retried (the claim is released).
    pub end: Option<Final>,
    /// Whether an attempt was made (a skip makes none).
    pub attempted: bool,
    pub http_status: Option<u16>,
    pub error: Option<&'a str>,
    /// With `Final::Dead`: the letter an operator sees.
    pub letter: Option<dead_letters::NewLetter<'a>>,
    /// The receiver answered 410: the endpoint is disabled (`gone`).
    pub disable_endpoint: bool,
}

/// Records an attempt; when the delivery ended, queues its lane's next
/// pending delivery (through the outbox, and wakes the relay) in the same transaction. `false` when
/// the delivery was no longer pending (another copy finished it).
pub async fn record(
    pool: &PgPool,
    relay: &Addr<OutboxRelay>,
    claimed: &Claimed,
    r: &Record<'_>,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let status = r.end.map_or(DeliveryStatus::Pending, Final::status);
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, attempts = attempts + $3, last_status = coalesce($4, last_status),
             last_error = CASE WHEN $3 = 1 THEN $5 ELSE last_error END, claimed_until = NULL,
             finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(claimed.id)
    .bind(status.as_str())
    .bind(i32::from(r.attempted))
    .bind(r.http_status.map(i32::from))
    .bind(r.error)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    if r.end.is_some() {
        queue_next(&mut tx, claimed.endpoint_id, &claimed.lane, claimed.seq).await?;
    }
    if let Some(letter) = &r.letter {
        dead_letters::insert(&mut tx, letter).await?;
    }
    if r.disable_endpoint {
        sqlx::query(
            "UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'gone', updated_at = now()
             WHERE id = $1 AND enabled",
        )
        .bind(claimed.endpoint_id)
        .execute(&mut *tx)
        .await?;
    }
    // The lane's next delivery is in the outbox: publish it now.
    relay::commit(tx, relay).await?;
    Ok(true)
}

/// Queues the lane's next pending delivery after `seq`, if there is one.
async fn queue_next(conn: &mut PgConnection, endpoint_id: Uuid, lane: &str, seq: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (target, routing_key, payload)
         SELECT 'webhook', '', jsonb_build_object('delivery_id', id) FROM webhook_deliveries
         WHERE endpoint_id = $1 AND lane = $2 AND status = 'pending' AND seq > $3 ORDER BY seq LIMIT 1",
    )
    .bind(endpoint_id)
    .bind(lane)
    .bind(seq)
    .execute(conn)
    .await?;
    Ok(())
}

/// Why a dead delivery cannot be delivered again now, if it cannot: its
/// endpoint is gone or off, or it is not dead. With `lock`, its row stays
/// locked for the caller's transaction (a replay).
pub async fn replay_refusal(
    conn: &mut PgConnection,
    delivery_id: Uuid,
    lock: bool,
) -> Result<Option<&'static str>, sqlx::Error> {
    let sql = if lock {
        "SELECT d.status, e.enabled FROM webhook_deliveries d
         LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1 FOR UPDATE OF d"
    } else {
        "SELECT d.status, e.enabled FROM webhook_deliveries d
         LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1"
    };
    let row: Option<(DeliveryStatus, Option<bool>)> =
        sqlx::query_as(sql).bind(delivery_id).fetch_optional(&mut *conn).await?;
    Ok(match row {
        None | Some((_, None)) => Some("its webhook endpoint was deleted"),
        Some((_, Some(false))) => Some("its webhook endpoint is disabled: enable it first"),
        Some((status, _)) if status != DeliveryStatus::Dead => Some("its delivery is not dead"),
        Some(_) => None,
    })
}

/// A dead delivery made pending again (an operator's replay), with the
/// message that queues it, in the caller's transaction. Its `webhook-id`
/// stays; its attempts start again. Refused with why when it cannot be.
pub async fn rearm(conn: &mut PgConnection, delivery_id: Uuid) -> Result<Result<(), &'static str>, sqlx::Error> {
    if let Some(why) = replay_refusal(conn, delivery_id, true).await? {
        return Ok(Err(why));
    }
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, claimed_until = NULL, finished_at = NULL
         WHERE id = $1",
    )
    .bind(delivery_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO outbox (target, routing_key, payload)
         VALUES ('webhook', '', jsonb_build_object('delivery_id', $1::uuid))",
    )
    .bind(delivery_id)
    .execute(&mut *conn)
    .await?;
    Ok(Ok(()))
}

/// Pending deliveries (deployment-wide, or one tenant's): how many, and the
/// age of the oldest.
pub async fn backlog(pool: &PgPool, tenant_id: Option<Uuid>) -> Result<(i64, Option<DateTime<Utc>>), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), min(created_at) FROM webhook_deliveries
         WHERE status = 'pending' AND ($1::uuid IS NULL OR tenant_id = $1)",
    )
    .bind(tenant_id)
    .fetch_one(pool)
    .await
}

/// One delivery as a backend reads it: what was sent where, and how it went.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// An endpoint's deliveries, newest first, at most `limit`, optionally of one status.
pub async fn deliveries(
    pool: &PgPool,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    status: Option<DeliveryStatus>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, event_id, event_type, status, attempts, last_status, last_error, created_at, finished_at
         FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2 AND ($3::text IS NULL OR status = $3)
         ORDER BY seq DESC LIMIT $4",
    )
    .bind(tenant_id)
    .bind(endpoint_id)
    .bind(status.map(DeliveryStatus::as_str))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Deletes deliveries that finished before `before` (delivered or skipped), and
/// dead ones whose letter is no longer waiting (replayed deliveries are
/// pending again, so they stay). At most 10 000 a call.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM webhook_deliveries WHERE id IN (
             SELECT d.id FROM webhook_deliveries d
             WHERE d.status <> 'pending' AND d.finished_at < $1
               AND NOT EXISTS (SELECT 1 FROM dead_letters l WHERE l.webhook_delivery_id = d.id AND l.status = 'dead')
             LIMIT 10000)",
    )
    .bind(before)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
