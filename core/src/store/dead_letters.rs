//! The `dead_letters` table: a record of every message verifyd gave up on, and
//! what an operator did about it (replayed, discarded). Rows are written by the
//! dead-letter keeper, or by dispatch itself in the transaction that records the
//! job's final attempt; they are read by operators, never by the send path.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::Channel;

use super::{CorruptRow, StoreError};
use crate::dead_letter::Reason;
use crate::ids::View;

/// The most of a message's body a letter keeps.
pub const MAX_BODY: usize = 64 * 1024;

/// A letter to record.
pub struct NewLetter<'a> {
    pub id: Uuid,
    pub letter_key: &'a str,
    pub tenant_id: Option<Uuid>,
    pub verification_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub channel: Option<Channel>,
    pub source_queue: &'a str,
    pub kind: Reason,
    pub reason: &'a str,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
    pub dead_lettered_at: DateTime<Utc>,
    /// For a webhook delivery given up on: its id (`webhook_deliveries`).
    pub webhook_delivery_id: Option<Uuid>,
}

/// Records a letter once: `false` when one with the same key is already there.
pub async fn insert(conn: &mut PgConnection, l: &NewLetter<'_>) -> Result<bool, sqlx::Error> {
    let body = &l.body[..l.body.len().min(MAX_BODY)];
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO dead_letters (id, letter_key, tenant_id, verification_id, job_id, channel, source_queue,
             reason_kind, reason, body, content_type, dead_lettered_at, webhook_delivery_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (letter_key) DO NOTHING RETURNING id",
    )
    .bind(l.id)
    .bind(l.letter_key)
    .bind(l.tenant_id)
    .bind(l.verification_id)
    .bind(l.job_id)
    .bind(l.channel.map(Channel::as_str))
    .bind(l.source_queue)
    .bind(l.kind.as_str())
    .bind(l.reason)
    .bind(body)
    .bind(l.content_type)
    .bind(l.dead_lettered_at)
    .bind(l.webhook_delivery_id)
    .fetch_optional(conn)
    .await?;
    Ok(inserted.is_some())
}

/// Where a letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = LetterStatus)]
pub enum Status {
    /// Waiting for an operator.
    Dead,
    /// Sent again: its job was re-armed (`replay_job_id`).
    Replayed,
    /// Put aside by an operator, with a reason.
    Discarded,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Dead, Status::Replayed, Status::Discarded];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Dead => "dead",
            Status::Replayed => "replayed",
            Status::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: Option<Uuid>,
    tenant_name: Option<String>,
    verification_id: Option<Uuid>,
    job_id: Option<Uuid>,
    channel: Option<String>,
    source_queue: String,
    reason_kind: String,
    reason: String,
    body: Vec<u8>,
    content_type: Option<String>,
    dead_lettered_at: DateTime<Utc>,
    status: String,
    resolved_at: Option<DateTime<Utc>>,
    resolved_by: Option<String>,
    resolution: Option<String>,
    replay_job_id: Option<Uuid>,
    webhook_delivery_id: Option<Uuid>,
}

/// A dead letter as operators read it.
#[derive(Debug, Clone)]
pub struct Letter {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub tenant: Option<String>,
    pub verification_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub channel: Option<Channel>,
    pub source_queue: String,
    pub kind: Reason,
    pub reason: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub dead_lettered_at: DateTime<Utc>,
    pub status: Status,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    pub replay_job_id: Option<Uuid>,
    /// A webhook delivery given up on (replayed by delivering it again).
    pub webhook_delivery_id: Option<Uuid>,
}

impl TryFrom<Row> for Letter {
    type Error = CorruptRow;

    fn try_from(r: Row) -> Result<Self, CorruptRow> {
        let corrupt = |reason: String| CorruptRow { table: "dead_letters", id: r.id.to_string(), reason };
        let channel = match r.channel.as_deref() {
            Some(c) => Some(c.parse::<Channel>().map_err(|_| corrupt(format!("channel {c:?}")))?),
            None => None,
        };
        Ok(Letter {
            kind: Reason::parse(&r.reason_kind).ok_or_else(|| corrupt(format!("reason_kind {:?}", r.reason_kind)))?,
            status: Status::parse(&r.status).ok_or_else(|| corrupt(format!("status {:?}", r.status)))?,
            channel,
            id: r.id,
            tenant_id: r.tenant_id,
            tenant: r.tenant_name,
            verification_id: r.verification_id,
            job_id: r.job_id,
            source_queue: r.source_queue,
            reason: r.reason,
            body: r.body,
            content_type: r.content_type,
            dead_lettered_at: r.dead_lettered_at,
            resolved_at: r.resolved_at,
            resolved_by: r.resolved_by,
            resolution: r.resolution,
            replay_job_id: r.replay_job_id,
            webhook_delivery_id: r.webhook_delivery_id,
        })
    }
}

const COLUMNS: &str = "d.id, d.tenant_id, t.name AS tenant_name, d.verification_id, d.job_id, d.channel,
    d.source_queue, d.reason_kind, d.reason, d.body, d.content_type, d.dead_lettered_at, d.status,
    d.resolved_at, d.resolved_by, d.resolution, d.replay_job_id, d.webhook_delivery_id";
const FROM: &str = "FROM dead_letters d LEFT JOIN tenants t ON t.id = d.tenant_id";

/// Which letters to list, replay or discard. Every field narrows; none is all.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub tenant_id: Option<Uuid>,
    pub channel: Option<Channel>,
    pub reason: Option<Reason>,
    /// `None`: every status.
    pub status: Option<Status>,
    /// Dead-lettered at or before this time (older than an age).
    pub dead_before: Option<DateTime<Utc>>,
    /// Dead-lettered after this time (younger than an age).
    pub dead_after: Option<DateTime<Utc>>,
}

/// Which end of the list comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// One page; `after` is the last id of the previous page (one the view may see).
pub async fn list(
    pool: &PgPool,
    view: &View,
    filter: &Filter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Letter>, StoreError> {
    page(pool, view, filter, after, limit, Order::NewestFirst).await
}

pub async fn page(
    pool: &PgPool,
    view: &View,
    filter: &Filter,
    after: Option<Uuid>,
    limit: i64,
    order: Order,
) -> Result<Vec<Letter>, StoreError> {
    let (cmp, dir) = match order {
        Order::NewestFirst => ("<", "DESC"),
        Order::OldestFirst => (">", "ASC"),
    };
    let sql = format!(
        "SELECT {COLUMNS} {FROM}
         WHERE ($1::uuid IS NULL OR d.tenant_id = $1)
           AND ($2::uuid IS NULL OR d.tenant_id = $2)
           AND ($3::text IS NULL OR d.channel = $3)
           AND ($4::text IS NULL OR d.reason_kind = $4)
           AND ($5::text IS NULL OR d.status = $5)
           AND ($6::timestamptz IS NULL OR d.dead_lettered_at <= $6)
           AND ($7::timestamptz IS NULL OR d.dead_lettered_at > $7)
           AND ($8::uuid IS NULL OR (d.dead_lettered_at, d.id) {cmp}
                (SELECT c.dead_lettered_at, c.id FROM dead_letters c
                 WHERE c.id = $8 AND ($1::uuid IS NULL OR c.tenant_id = $1)))
         ORDER BY d.dead_lettered_at {dir}, d.id {dir} LIMIT $9"
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(view.tenant_id())
        .bind(filter.tenant_id)
        .bind(filter.channel.map(Channel::as_str))
        .bind(filter.reason.map(Reason::as_str))
        .bind(filter.status.map(Status::as_str))
        .bind(filter.dead_before)
        .bind(filter.dead_after)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(Letter::try_from).collect::<Result<_, _>>()?)
}

/// One letter the view may see.
pub async fn get(pool: &PgPool, view: &View, id: Uuid) -> Result<Option<Letter>, StoreError> {
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE d.id = $1 AND ($2::uuid IS NULL OR d.tenant_id = $2)");
    let row: Option<Row> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(view.tenant_id()).fetch_optional(pool).await?;
    Ok(row.map(Letter::try_from).transpose()?)
}

/// The same, locked until the caller's transaction ends: a replay and a discard
/// of one letter take turns, and the second sees what the first did.
pub async fn lock(conn: &mut PgConnection, view: &View, id: Uuid) -> Result<Option<Letter>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} {FROM} WHERE d.id = $1 AND ($2::uuid IS NULL OR d.tenant_id = $2) FOR UPDATE OF d");
    let row: Option<Row> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(view.tenant_id()).fetch_optional(conn).await?;
    Ok(row.map(Letter::try_from).transpose()?)
}

/// Ends a dead letter's wait (in the caller's transaction, the row locked).
pub async fn resolve(
    conn: &mut PgConnection,
    id: Uuid,
    status: Status,
    by: &str,
    resolution: Option<&str>,
    replay_job_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dead_letters SET status = $2, resolved_at = $3, resolved_by = $4, resolution = $5, replay_job_id = $6
         WHERE id = $1 AND status = 'dead'",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(now)
    .bind(by)
    .bind(resolution)
    .bind(replay_job_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Letters waiting for an operator, per reason, and when the oldest arrived.
pub async fn waiting(pool: &PgPool, view: &View) -> Result<Vec<(Reason, i64, DateTime<Utc>)>, StoreError> {
    let rows: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT reason_kind, count(*), min(dead_lettered_at) FROM dead_letters
         WHERE status = 'dead' AND ($1::uuid IS NULL OR tenant_id = $1)
         GROUP BY reason_kind ORDER BY reason_kind",
    )
    .bind(view.tenant_id())
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(kind, n, oldest)| {
            let reason = Reason::parse(&kind).ok_or_else(|| CorruptRow {
                table: "dead_letters",
                id: "-".into(),
                reason: format!("reason_kind {kind:?}"),
            })?;
            Ok((reason, n, oldest))
        })
        .collect()
}

/// Forgets letters an operator dealt with more than `retention` ago.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM dead_letters WHERE status <> 'dead' AND resolved_at < $1")
        .bind(before)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
