//! The `processes` and `queue_marks` tables: what each running process reports
//! of itself (its consumers, its providers' circuits), and per queue the newest
//! message any process has taken, from which the overview bounds how long the
//! oldest waiting message has waited.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// Who a process is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub id: Uuid,
    /// `serve` or `worker`.
    pub role: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    #[serde(with = "crate::timestamp")]
    pub started_at: DateTime<Utc>,
}

/// What a process knows that no other can.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Report {
    pub consumers: Consumers,
    /// What it took from each queue.
    pub queues: Vec<Taken>,
    /// Its circuit per provider.
    pub circuits: Vec<CircuitReport>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Consumers {
    pub live: usize,
    pub expected: usize,
    /// Consumers whose recovery gave up (the process exits soon).
    pub lost: usize,
    pub in_flight: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Taken {
    pub queue: String,
    pub taken: u64,
    #[serde(with = "crate::timestamp::option", default)]
    pub newest_published: Option<DateTime<Utc>>,
    #[serde(with = "crate::timestamp::option", default)]
    pub last_taken: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CircuitReport {
    pub provider: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// When an open circuit lets a trial through.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::timestamp::option", default)]
    pub open_until: Option<DateTime<Utc>>,
    /// Retryable failures in a row (closed circuits).
    pub failures: u32,
}

/// Writes the process's report (and marks it running).
pub async fn report(pool: &PgPool, who: &Identity, report: &Report, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let json = serde_json::to_value(report).unwrap_or_default();
    sqlx::query(
        "INSERT INTO processes (id, role, host, pid, version, started_at, seen_at, report)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET seen_at = EXCLUDED.seen_at, report = EXCLUDED.report, stopped_at = NULL",
    )
    .bind(who.id)
    .bind(&who.role)
    .bind(&who.host)
    .bind(who.pid)
    .bind(&who.version)
    .bind(who.started_at)
    .bind(now)
    .bind(json)
    .execute(pool)
    .await?;
    let marked: Vec<&Taken> = report.queues.iter().filter(|t| t.newest_published.is_some()).collect();
    if !marked.is_empty() {
        let queues: Vec<&str> = marked.iter().map(|t| t.queue.as_str()).collect();
        let newest: Vec<DateTime<Utc>> = marked.iter().filter_map(|t| t.newest_published).collect();
        let taken: Vec<DateTime<Utc>> = marked.iter().map(|t| t.last_taken.unwrap_or(now)).collect();
        sqlx::query(
            "INSERT INTO queue_marks AS m (queue, newest_taken_at, taken_at)
             SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
             ON CONFLICT (queue) DO UPDATE SET
                newest_taken_at = greatest(m.newest_taken_at, EXCLUDED.newest_taken_at),
                taken_at = greatest(m.taken_at, EXCLUDED.taken_at)",
        )
        .bind(&queues)
        .bind(&newest)
        .bind(&taken)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// A graceful stop: the row stays, marked stopped, until pruned.
pub async fn stopped(pool: &PgPool, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE processes SET stopped_at = $2, seen_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

/// A process as the overview lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Seen {
    pub id: Uuid,
    pub role: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub seen_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub report: sqlx::types::Json<Report>,
}

/// Processes seen since `since`, newest start first.
pub async fn seen_since(pool: &PgPool, since: DateTime<Utc>) -> Result<Vec<Seen>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, role, host, pid, version, started_at, seen_at, stopped_at, report FROM processes
         WHERE seen_at >= $1 ORDER BY started_at DESC, id",
    )
    .bind(since)
    .fetch_all(pool)
    .await
}

/// Per queue, the newest publication time any process has taken.
pub async fn marks(pool: &PgPool) -> Result<Vec<(String, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as("SELECT queue, newest_taken_at FROM queue_marks").fetch_all(pool).await
}

/// Forgets processes not seen since `before`.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM processes WHERE seen_at < $1").bind(before).execute(pool).await?;
    Ok(())
}
