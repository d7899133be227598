//! The `verifications` and `sends` tables.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Destination, Locale};

use super::branding::{self, ForSend, TEMPLATE_COLUMNS};
use super::{CorruptRow, StoreError};
use crate::domain::verification::{State, Status};
use crate::ids::{AccountId, ReplyTo};
use crate::outbox::contract::{Event, EventKind};

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: Uuid,
    tenant_name: String,
    account_id: String,
    destination: String,
    channel: String,
    locale: String,
    status: String,
    code_mac: Vec<u8>,
    code_sealed: Vec<u8>,
    attempts: i32,
    max_attempts: i32,
    sends: i32,
    reply_to: Option<String>,
    correlation_id: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    last_sent_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    api_key_id: Option<String>,
    delivery_job_id: Option<Uuid>,
}

/// A verification as the domain sees it. The code is present only as its MAC and
/// its sealed form; `Debug` prints neither.
#[derive(Clone)]
pub struct Verification {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_name: String,
    pub account_id: AccountId,
    /// A phone for SMS and voice, an email address for email.
    pub to: Destination,
    pub channel: Channel,
    pub locale: Locale,
    pub state: State,
    pub code_mac: Vec<u8>,
    pub code_sealed: Vec<u8>,
    pub reply: Option<ReplyTo>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The API key that asked for it; `None` for an AMQP request.
    pub api_key_id: Option<String>,
    /// The delivery job queued last (by the create, a resend, a voice
    /// fallback or a replay): only its permanent failure ends the verification.
    /// `None` for rows written before verifyd recorded it.
    pub delivery_job_id: Option<Uuid>,
}

impl std::fmt::Debug for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verification")
            .field("id", &self.id)
            .field("tenant", &self.tenant_name)
            .field("to", &self.to)
            .field("channel", &self.channel)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Verification {
    /// An event about this verification, at `now`, to which the caller adds
    /// its status and details.
    pub fn event(&self, kind: EventKind, now: DateTime<Utc>) -> Event {
        Event {
            event_id: Uuid::new_v4(),
            event: kind,
            tenant: self.tenant_name.clone(),
            occurred_at: now,
            verification_id: Some(self.id),
            account_id: self.account_id.as_str().to_owned(),
            to: Some(self.to.as_str().to_owned()),
            channel: Some(self.channel),
            status: None,
            detail: serde_json::Map::new(),
        }
    }
}

impl TryFrom<Row> for Verification {
    type Error = CorruptRow;

    fn try_from(r: Row) -> Result<Self, CorruptRow> {
        let corrupt = |reason: String| CorruptRow { table: "verifications", id: r.id.to_string(), reason };
        let channel: Channel = r.channel.parse().map_err(|_| corrupt(format!("channel {:?}", r.channel)))?;
        Ok(Verification {
            account_id: AccountId::parse(&r.account_id).map_err(|e| corrupt(e.to_string()))?,
            channel,
            to: Destination::from_stored(channel.destination(), &r.destination).map_err(|e| corrupt(e.to_string()))?,
            locale: Locale::parse(&r.locale).map_err(|e| corrupt(e.to_string()))?,
            state: State {
                status: r.status.parse::<Status>().map_err(|e| corrupt(e.to_string()))?,
                attempts: r.attempts,
                max_attempts: r.max_attempts,
                sends: r.sends,
                expires_at: r.expires_at,
                last_sent_at: r.last_sent_at,
            },
            reply: r.reply_to.map(|queue| ReplyTo { queue, correlation_id: r.correlation_id }),
            id: r.id,
            tenant_id: r.tenant_id,
            tenant_name: r.tenant_name,
            code_mac: r.code_mac,
            code_sealed: r.code_sealed,
            created_at: r.created_at,
            completed_at: r.completed_at,
            api_key_id: r.api_key_id,
            delivery_job_id: r.delivery_job_id,
        })
    }
}

const COLUMNS: &str = "v.id, v.tenant_id, t.name AS tenant_name, v.account_id, v.destination, v.channel,
        v.locale, v.status, v.code_mac, v.code_sealed, v.attempts, v.max_attempts, v.sends,
        v.reply_to, v.correlation_id, v.created_at, v.expires_at, v.last_sent_at, v.completed_at, v.api_key_id,
        v.delivery_job_id";
const FROM: &str = "FROM verifications v JOIN tenants t ON t.id = v.tenant_id";

/// The rows of a batch that convert; one corrupt row is logged and skipped
/// instead of stopping every batch after it.
fn readable(rows: Vec<Row>) -> Vec<Verification> {
    rows.into_iter()
        .filter_map(|row| {
            Verification::try_from(row)
                .inspect_err(|error| tracing::error!(%error, "skipping an unreadable verification row"))
                .ok()
        })
        .collect()
}

fn convert(row: Option<Row>) -> Result<Option<Verification>, StoreError> {
    Ok(row.map(Verification::try_from).transpose()?)
}

pub struct NewVerification<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub account_id: &'a AccountId,
    pub to: &'a Destination,
    pub channel: Channel,
    pub locale: &'a Locale,
    pub code_mac: &'a [u8],
    pub code_sealed: &'a [u8],
    pub code_length: u8,
    pub max_attempts: i32,
    pub idempotency_key: Option<&'a str>,
    pub reply: Option<&'a ReplyTo>,
    pub api_key_id: Option<&'a str>,
    /// The job that sends the first code.
    pub delivery_job_id: Uuid,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Inserts unless the tenant already used the idempotency key; returns whether
/// a row was inserted.
pub async fn insert(conn: &mut PgConnection, v: &NewVerification<'_>) -> Result<bool, sqlx::Error> {
    let inserted: i64 = sqlx::query_scalar(
        "WITH v AS (
            INSERT INTO verifications (id, tenant_id, account_id, destination, channel, locale, status, code_mac,
                code_sealed, code_length, max_attempts, idempotency_key, reply_to, correlation_id,
                created_at, expires_at, last_sent_at, api_key_id, delivery_job_id, delivery_channel)
            VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $11, $12, $13, $14, $15, $14, $16, $17, $5)
            ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
            RETURNING id
         )
         SELECT count(*) FROM v",
    )
    .bind(v.id)
    .bind(v.tenant_id)
    .bind(v.account_id.as_str())
    .bind(v.to.as_str())
    .bind(v.channel.as_str())
    .bind(v.locale.as_str())
    .bind(v.code_mac)
    .bind(v.code_sealed)
    .bind(i16::from(v.code_length))
    .bind(v.max_attempts)
    .bind(v.idempotency_key)
    .bind(v.reply.map(|r| r.queue.as_str()))
    .bind(v.reply.and_then(|r| r.correlation_id.as_deref()))
    .bind(v.now)
    .bind(v.expires_at)
    .bind(v.api_key_id)
    .bind(v.delivery_job_id)
    .fetch_one(conn)
    .await?;
    Ok(inserted == 1)
}

pub async fn by_idempotency_key(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    key: &str,
) -> Result<Option<Verification>, StoreError> {
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE v.tenant_id = $1 AND v.idempotency_key = $2");
    convert(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant_id).bind(key).fetch_optional(conn).await?)
}

/// Serialises the requests that carry one idempotency key for one tenant,
/// across processes, until the caller's transaction ends.
pub async fn lock_idempotency_key(conn: &mut PgConnection, tenant_id: Uuid, key: &str) -> Result<(), StoreError> {
    let lock = super::keys::lock_key(&["idempotency", &tenant_id.to_string(), key]);
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(lock).execute(conn).await?;
    Ok(())
}

/// Reads one verification of one tenant; another tenant's id reads as absent.
pub async fn get(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<Verification>, StoreError> {
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE v.id = $1 AND v.tenant_id = $2");
    convert(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant_id).fetch_optional(pool).await?)
}

/// One verification, whichever its tenant: for links verifyd signed itself.
pub async fn get_any_tenant(pool: &PgPool, id: Uuid) -> Result<Option<Verification>, StoreError> {
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE v.id = $1");
    convert(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?)
}

/// Reads and row-locks one verification of one tenant until the transaction ends.
pub async fn lock(conn: &mut PgConnection, tenant_id: Uuid, id: Uuid) -> Result<Option<Verification>, StoreError> {
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE v.id = $1 AND v.tenant_id = $2 FOR UPDATE OF v");
    convert(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant_id).fetch_optional(conn).await?)
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    #[sqlx(flatten)]
    row: Row,
    #[sqlx(flatten)]
    branding: ForSend,
    acquired: bool,
    refused_by: Vec<String>,
}

/// What dispatch reads with its claim: the verification, the tenant's texts
/// for the channel, and the providers that refused this job before (they are
/// not asked again).
pub struct ForDispatch {
    pub verification: Verification,
    pub branding: ForSend,
    pub refused_by: Vec<String>,
}

/// For delivery workers: claims the job for `lease` (see `attempts::claim`) and
/// reads its verification, with the tenant's display name and its template for
/// a send by `channel` in the verification's locale, in one statement.
/// Returns whether the claim was acquired, and the verification (`None`: it
/// does not exist).
///
/// The claim commits without waiting for the WAL flush (decision 186): it
/// keeps two live copies of a job from both sending, which row locks do
/// whether or not it is on disk. After a PostgreSQL crash a lost claim lets a
/// copy send at once, a kept one after its lease: the same second send,
/// sooner. The attempt that follows commits durably, and flushes the claim.
pub async fn claim_for_dispatch(
    pool: &PgPool,
    id: Uuid,
    job_id: Uuid,
    channel: Channel,
    lease: std::time::Duration,
) -> Result<(bool, Option<ForDispatch>), StoreError> {
    let sql = format!(
        "WITH claim AS (
            INSERT INTO dispatch_claims (job_id, claimed_until) VALUES ($2, now() + make_interval(secs => $3))
            ON CONFLICT (job_id) DO UPDATE SET claimed_until = EXCLUDED.claimed_until
                WHERE dispatch_claims.claimed_until < now()
                  AND NOT EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.job_id = EXCLUDED.job_id
                                  AND a.outcome IN ('sent', 'permanent_error', 'skipped'))
            RETURNING true
         )
         SELECT {COLUMNS}, {TEMPLATE_COLUMNS}, EXISTS (SELECT 1 FROM claim) AS acquired,
                ARRAY(SELECT DISTINCT a.provider FROM delivery_attempts a
                      WHERE a.job_id = $2 AND a.outcome = 'refused' AND a.provider IS NOT NULL) AS refused_by
         {FROM} {}
         CROSS JOIN set_config('synchronous_commit', 'off', true) AS async_commit
         WHERE v.id = $1",
        branding::lateral("$4", "v.locale")
    );
    let row: Option<ClaimedRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(job_id)
        .bind(lease.as_secs_f64())
        .bind(channel.as_str())
        .fetch_optional(pool)
        .await?;
    match row {
        None => Ok((false, None)),
        Some(ClaimedRow { row, branding, acquired, refused_by }) => {
            Ok((acquired, Some(ForDispatch { verification: Verification::try_from(row)?, branding, refused_by })))
        }
    }
}

pub async fn save_check(
    conn: &mut PgConnection,
    id: Uuid,
    status: Status,
    attempts: i32,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE verifications SET status = $2, attempts = $3,
            completed_at = CASE WHEN $2 = 'pending' THEN NULL ELSE $4 END
         WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(attempts)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts one more send. The channel is the verification's own whatever this
/// send goes by: a call asked for once changes neither the verification nor
/// the factor its approval makes.
/// `job` is the send's job, which becomes the verification's latest.
pub async fn save_resend(
    conn: &mut PgConnection,
    id: Uuid,
    job: &crate::outbox::contract::DispatchJob,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE verifications SET sends = sends + 1, last_sent_at = $2, delivery_job_id = $3, delivery_channel = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .bind(job.job_id)
    .bind(job.channel.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes `job` the verification's latest delivery job (a fallback or a
/// replay queued it), reopening a verification that its previous job's
/// failure had ended, while its deadline has not passed.
pub async fn arm_delivery(
    conn: &mut PgConnection,
    id: Uuid,
    job: &crate::outbox::contract::DispatchJob,
    reopen: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE verifications SET delivery_job_id = $2, delivery_channel = $3,
            status = CASE WHEN $4 AND status = 'failed' THEN 'pending' ELSE status END,
            completed_at = CASE WHEN $4 AND status = 'failed' THEN NULL ELSE completed_at END
         WHERE id = $1",
    )
    .bind(id)
    .bind(job.job_id)
    .bind(job.channel.as_str())
    .bind(reopen)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends a pending verification whose latest job (`job_id`) failed for good.
/// Returns whether it did (false: a newer job was queued meanwhile, or the
/// verification had ended already).
pub async fn fail_delivery(
    conn: &mut PgConnection,
    id: Uuid,
    job_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let ended: Option<bool> = sqlx::query_scalar(
        "UPDATE verifications SET status = 'failed', completed_at = $3
         WHERE id = $1 AND status = 'pending' AND expires_at > $3
           AND (delivery_job_id = $2 OR delivery_job_id IS NULL)
         RETURNING true",
    )
    .bind(id)
    .bind(job_id)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(ended.unwrap_or(false))
}

/// Moves up to `limit` pending verifications past their deadline to `expired`,
/// skipping rows another process holds, and returns them.
pub async fn expire_due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Verification>, StoreError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "WITH due AS (
            SELECT id FROM verifications WHERE status = 'pending' AND expires_at <= $1
            ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         UPDATE verifications v SET status = 'expired', completed_at = $1 FROM due WHERE v.id = due.id
         RETURNING v.id",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE v.id = ANY($1)");
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&ids).fetch_all(conn).await?;
    Ok(readable(rows))
}

/// Approved verifications whose factor was not recorded (the process died in
/// between), older than `before`.
pub async fn unrecorded_approvals(
    pool: &PgPool,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Verification>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} {FROM} WHERE v.status = 'approved' AND NOT v.factor_recorded AND v.completed_at < $1
         ORDER BY v.completed_at LIMIT $2"
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(before).bind(limit).fetch_all(pool).await?;
    Ok(readable(rows))
}

/// Takes the recording of an approval's factor: true once, for the first
/// caller; false when it was recorded already, or was never to be (a
/// challenge's code, an approval an admin reset overtook).
pub async fn claim_factor_recording(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let claimed: Option<bool> = sqlx::query_scalar(
        "UPDATE verifications SET factor_recorded = true WHERE id = $1 AND NOT factor_recorded RETURNING true",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(claimed.is_some())
}

pub async fn mark_factor_recorded(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE verifications SET factor_recorded = true WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}

/// An admin reset: ends every pending verification of the account (returned,
/// to be announced as expired) and marks its approvals not yet recorded as
/// recorded, so no code in flight becomes a factor after the reset.
pub async fn end_pending_for_account(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    account_id: &AccountId,
    now: DateTime<Utc>,
) -> Result<Vec<Verification>, StoreError> {
    sqlx::query(
        "UPDATE verifications SET factor_recorded = true
         WHERE tenant_id = $1 AND account_id = $2 AND status = 'approved' AND NOT factor_recorded",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .execute(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE verifications SET status = 'expired', completed_at = $3
         WHERE tenant_id = $1 AND account_id = $2 AND status = 'pending' RETURNING id",
    )
    .bind(tenant_id)
    .bind(account_id.as_str())
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE v.id = ANY($1)");
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&ids).fetch_all(conn).await?;
    Ok(readable(rows))
}
