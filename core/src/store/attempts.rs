//! The `delivery_attempts` table: one row per hand-off to a provider.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::ErrorKind;
use verifyd_providers::domain::{Channel, Destination};

use crate::ids::View;
use crate::outbox;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    RetryableError,
    PermanentError,
    /// Not sent because the verification was no longer pending or past its deadline.
    Skipped,
    /// This provider refused the message for a reason of its own (its account,
    /// its geo permissions); the job went on to the next provider. Not final.
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::RetryableError => "retryable_error",
            Outcome::PermanentError => "permanent_error",
            Outcome::Skipped => "skipped",
            Outcome::Refused => "refused",
        }
    }
}

pub struct Attempt<'a> {
    pub job_id: Uuid,
    pub verification_id: Uuid,
    pub tenant_id: Uuid,
    pub channel: Channel,
    pub provider: Option<&'a str>,
    pub provider_message_id: Option<&'a str>,
    pub outcome: Outcome,
    pub error: Option<&'a str>,
    /// The kind of `error` (`ErrorKind::as_str`), for counting and filtering.
    pub error_kind: Option<ErrorKind>,
    pub latency_ms: Option<i32>,
    /// When the message was asked for (the job's AMQP timestamp), for
    /// request → delivered times.
    pub requested_at: Option<DateTime<Utc>>,
}

/// Records an attempt and, only if it was recorded, the outbox rows announcing
/// it, in one statement (so one round trip, and atomic without a transaction):
/// [`record_many`] of one. A job has at most one final attempt (sent,
/// permanent error or skipped); a second one, from a redelivery, is ignored
/// and `false` returned.
pub async fn record(conn: &mut PgConnection, a: &Attempt<'_>, announce: Vec<outbox::Row>) -> Result<bool, sqlx::Error> {
    let recorded = record_many(conn, &[Recording::of(a, announce)]).await?;
    Ok(recorded.first().copied().unwrap_or(false))
}

/// An attempt and the rows announcing it, owned, to be recorded with others
/// by [`record_many`].
pub struct Recording {
    pub job_id: Uuid,
    pub verification_id: Uuid,
    pub tenant_id: Uuid,
    pub channel: Channel,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub error_kind: Option<ErrorKind>,
    pub latency_ms: Option<i32>,
    pub requested_at: Option<DateTime<Utc>>,
    pub announce: Vec<outbox::Row>,
}

impl Recording {
    pub fn of(a: &Attempt<'_>, announce: Vec<outbox::Row>) -> Recording {
        Recording {
            job_id: a.job_id,
            verification_id: a.verification_id,
            tenant_id: a.tenant_id,
            channel: a.channel,
            provider: a.provider.map(str::to_owned),
            provider_message_id: a.provider_message_id.map(str::to_owned),
            outcome: a.outcome,
            error: a.error.map(str::to_owned),
            error_kind: a.error_kind,
            latency_ms: a.latency_ms,
            requested_at: a.requested_at,
            announce,
        }
    }
}

/// Records many attempts, each with the rows announcing it, in one statement:
/// what [`record`] does for one, for each, answered in order. An attempt is
/// not recorded (`false`, and its rows not written) when it is the second
/// final attempt of its job, whether the first was recorded before or earlier
/// in the same batch (two copies of a redelivered job).
pub async fn record_many(conn: &mut PgConnection, items: &[Recording]) -> Result<Vec<bool>, sqlx::Error> {
    let ids: Vec<Uuid> = items.iter().map(|_| Uuid::new_v4()).collect();
    let column = |f: fn(&Recording) -> Option<&str>| items.iter().map(f).collect::<Vec<_>>();
    let (providers, messages, errors) = (
        column(|r| r.provider.as_deref()),
        column(|r| r.provider_message_id.as_deref()),
        column(|r| r.error.as_deref()),
    );
    let kinds = column(|r| r.error_kind.map(ErrorKind::as_str));
    let rows: Vec<(Uuid, &outbox::Row)> =
        ids.iter().zip(items).flat_map(|(id, r)| r.announce.iter().map(move |row| (*id, row))).collect();
    let recorded: Vec<Uuid> = sqlx::query_scalar(
        "WITH attempt AS (
            INSERT INTO delivery_attempts (id, job_id, verification_id, tenant_id, channel, provider,
                provider_message_id, outcome, error, latency_ms, error_kind, requested_at)
            SELECT u.id, u.job_id, u.verification_id, u.tenant_id, u.channel, u.provider,
                u.provider_message_id, u.outcome, u.error, u.latency_ms, u.error_kind, u.requested_at
            FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::int[], $11::text[], $12::timestamptz[])
                 WITH ORDINALITY AS u(id, job_id, verification_id, tenant_id, channel, provider,
                     provider_message_id, outcome, error, latency_ms, error_kind, requested_at, n)
            ORDER BY u.n
            ON CONFLICT (job_id) WHERE outcome IN ('sent', 'permanent_error', 'skipped') DO NOTHING
            RETURNING id
         ), announced AS (
            INSERT INTO outbox (target, routing_key, payload, correlation_id)
            SELECT r.target, r.routing_key, r.payload, r.correlation_id
            FROM unnest($13::uuid[], $14::text[], $15::text[], $16::jsonb[], $17::text[])
                 WITH ORDINALITY AS r(attempt_id, target, routing_key, payload, correlation_id, n)
            WHERE r.attempt_id IN (SELECT id FROM attempt)
            ORDER BY r.n
         )
         SELECT id FROM attempt",
    )
    .bind(&ids)
    .bind(items.iter().map(|r| r.job_id).collect::<Vec<_>>())
    .bind(items.iter().map(|r| r.verification_id).collect::<Vec<_>>())
    .bind(items.iter().map(|r| r.tenant_id).collect::<Vec<_>>())
    .bind(items.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>())
    .bind(&providers)
    .bind(&messages)
    .bind(items.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>())
    .bind(&errors)
    .bind(items.iter().map(|r| r.latency_ms).collect::<Vec<_>>())
    .bind(&kinds)
    .bind(items.iter().map(|r| r.requested_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.target.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.routing_key.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| &r.payload).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.correlation_id.as_deref()).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    Ok(ids.iter().map(|id| recorded.contains(id)).collect())
}

/// Why a consumer could not claim a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The job already reached its final outcome: this copy is a duplicate.
    Finished,
    /// Another consumer is delivering it right now.
    HeldElsewhere,
}

/// Where a job stands when this consumer could not claim it. Claims are taken
/// by `verifications::claim_for_dispatch` (with a lease; a claim whose lease ran
/// out because its holder died is taken over).
pub async fn claim_state(conn: &mut PgConnection, job_id: Uuid) -> Result<Claim, sqlx::Error> {
    let finished: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM delivery_attempts
         WHERE job_id = $1 AND outcome IN ('sent', 'permanent_error', 'skipped'))",
    )
    .bind(job_id)
    .fetch_one(conn)
    .await?;
    // Not finished: another consumer holds it, or released it a moment ago on
    // its way to a retry queue. Either way, look again later.
    Ok(if finished { Claim::Finished } else { Claim::HeldElsewhere })
}

/// Gives a claim up (the job goes to a retry queue and will be claimed again).
pub async fn release(conn: &mut PgConnection, job_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM dispatch_claims WHERE job_id = $1").bind(job_id).execute(conn).await?;
    Ok(())
}

/// One attempt as operators read it: never the message, never the number
/// unmasked.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Recorded {
    pub job_id: Uuid,
    pub verification_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub channel: String,
    pub provider: Option<String>,
    /// `sent`, `retryable_error`, `permanent_error`, `skipped` or `refused`.
    pub outcome: String,
    /// `timeout`, `unreachable`, `throttled`, `unavailable`, `invalid_number`, …
    pub error_kind: Option<String>,
    /// The error as verifyd recorded it (digits of provider texts masked).
    pub error: Option<String>,
    pub latency_ms: Option<i32>,
    pub provider_message_id: Option<String>,
    /// What the provider's delivery receipt said last.
    pub receipt_status: Option<String>,
    #[serde(with = "crate::timestamp")]
    pub at: DateTime<Utc>,
    /// The destination, masked (`+4479******56`, `a***@example.com`).
    #[sqlx(skip)]
    pub to: Option<String>,
    #[serde(skip)]
    destination: Option<String>,
}

impl Recorded {
    fn masked(mut self) -> Self {
        let kind = self.channel.parse::<Channel>().ok().map(Channel::destination);
        let destination = self.destination.take().zip(kind);
        self.to = destination.and_then(|(d, kind)| Destination::from_stored(kind, &d).ok()).map(|d| d.masked());
        self
    }
}

const RECORDED: &str = "a.job_id, a.verification_id, t.name AS tenant, a.channel, a.provider, a.outcome,
    a.error_kind, a.error, a.latency_ms, a.provider_message_id, a.receipt_status, a.created_at AS at,
    v.destination AS destination
    FROM delivery_attempts a JOIN tenants t ON t.id = a.tenant_id
    JOIN verifications v ON v.id = a.verification_id";

/// Every attempt at delivering one verification, oldest first.
pub async fn history(pool: &PgPool, view: &View, verification_id: Uuid) -> Result<Vec<Recorded>, sqlx::Error> {
    let sql = format!(
        "SELECT {RECORDED} WHERE a.verification_id = $1 AND ($2::uuid IS NULL OR a.tenant_id = $2)
         ORDER BY a.created_at, a.id"
    );
    let rows: Vec<Recorded> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(verification_id).bind(view.tenant_id()).fetch_all(pool).await?;
    Ok(rows.into_iter().map(Recorded::masked).collect())
}

/// The latest failed attempts (retryable, permanent, refused), newest first.
pub async fn recent_failures(pool: &PgPool, view: &View, limit: i64) -> Result<Vec<Recorded>, sqlx::Error> {
    let sql = format!(
        "SELECT {RECORDED} WHERE a.outcome IN ('retryable_error', 'permanent_error', 'refused')
           AND ($1::uuid IS NULL OR a.tenant_id = $1)
         ORDER BY a.created_at DESC LIMIT $2"
    );
    let rows: Vec<Recorded> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(view.tenant_id()).bind(limit).fetch_all(pool).await?;
    Ok(rows.into_iter().map(Recorded::masked).collect())
}
