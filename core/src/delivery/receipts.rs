//! Delivery receipts (providers' status callbacks) and the channel fallback.
//!
//! A receipt names a message by the provider's id. It moves the attempt that
//! sent it forward (queued → sent → delivered | undelivered | failed; a receipt
//! arriving late or twice never moves it back). When it says the SMS will not
//! arrive, `verification.delivery_failed` is announced, and with fallback on,
//! the same code goes out once by voice while the verification is pending;
//! without one, a failure of the verification's latest send ends it `failed`.
//! Everything a receipt changes is written in one transaction with its outbox
//! rows, so a crash loses nothing and a replayed receipt changes nothing.

use actix::Addr;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::Channel;

use crate::domain::verification::Status;
use crate::outbox;
use crate::outbox::contract::{DispatchJob, EventKind};
use crate::outbox::relay::{self, OutboxRelay};
use crate::store::StoreError;
use crate::store::verifications::{self, Verification};

pub use verifyd_providers::receipt::{Receipt, ReceiptStatus};

/// Receipts only move an attempt forward; the three final ones end it.
fn rank(status: ReceiptStatus) -> u8 {
    match status {
        ReceiptStatus::Queued => 0,
        ReceiptStatus::Sent => 1,
        ReceiptStatus::Delivered | ReceiptStatus::Undelivered | ReceiptStatus::Failed => 2,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// No message sent by verifyd has this id yet: the receipt is parked, and
    /// applied if the attempt appears within [`PARKED_FOR`] (`parked.rs`).
    Parked,
    /// No message sent by verifyd has this id (a parked receipt's attempt
    /// went away meanwhile).
    Unknown,
    /// The attempt already had this status or a later one.
    Stale,
    Updated {
        /// The code went out again by voice.
        fell_back: bool,
    },
}

/// How long a receipt whose message verifyd has not recorded (yet) is kept.
pub const PARKED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// A receipt's content, from a callback or read back from `parked_receipts`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Said {
    pub provider: String,
    #[sqlx(rename = "provider_message_id")]
    pub message_id: String,
    pub status: String,
    pub error_code: Option<String>,
}

impl From<&Receipt> for Said {
    fn from(r: &Receipt) -> Self {
        Said {
            provider: r.provider.to_owned(),
            message_id: r.message_id.clone(),
            status: r.status.as_str().to_owned(),
            error_code: r.error_code.clone(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    id: Uuid,
    job_id: Uuid,
    verification_id: Uuid,
    tenant_id: Uuid,
    channel: String,
    receipt_status: Option<String>,
    requested_at: Option<DateTime<Utc>>,
}

/// What `apply_in` found for a receipt.
enum Found {
    /// No attempt sent this message (yet).
    NoAttempt,
    /// The attempt already had this status or a later one.
    Stale,
    Moved(Moved),
}

/// What a receipt moved, for the metrics written once it is committed.
struct Moved {
    channel: String,
    requested_at: Option<DateTime<Utc>>,
    fell_back: bool,
}

/// Applies a receipt. `fallback_to_voice`: whether an undelivered SMS is
/// followed by a call. A receipt for a message verifyd has not recorded is
/// parked in the same transaction, so a receipt that overtakes the record of
/// its send is not lost.
pub async fn apply(
    pool: &PgPool,
    relay: &Addr<OutboxRelay>,
    receipt: &Receipt,
    fallback_to_voice: bool,
    now: DateTime<Utc>,
) -> Result<Applied, StoreError> {
    let said = Said::from(receipt);
    let mut tx = pool.begin().await?;
    match apply_in(&mut tx, &said, receipt.status, fallback_to_voice, now).await? {
        Found::NoAttempt => {
            sqlx::query(
                "INSERT INTO parked_receipts (provider, provider_message_id, status, error_code, received_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&said.provider)
            .bind(&said.message_id)
            .bind(&said.status)
            .bind(&said.error_code)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            metrics::counter!("verifyd_receipts_parked_total", "provider" => receipt.provider).increment(1);
            Ok(Applied::Parked)
        }
        Found::Stale => Ok(Applied::Stale),
        Found::Moved(moved) => {
            relay::commit(tx, relay).await?;
            Ok(counted(&said, receipt.status, moved, now))
        }
    }
}

/// Applies a parked receipt, in the transaction that deletes it: `None` when
/// another process took it first.
pub async fn apply_parked(
    pool: &PgPool,
    relay: &Addr<OutboxRelay>,
    said: &Said,
    fallback_to_voice: bool,
    now: DateTime<Utc>,
) -> Result<Option<Applied>, StoreError> {
    let mut tx = pool.begin().await?;
    let taken: Option<bool> = sqlx::query_scalar(
        "DELETE FROM parked_receipts WHERE provider = $1 AND provider_message_id = $2 AND status = $3 RETURNING true",
    )
    .bind(&said.provider)
    .bind(&said.message_id)
    .bind(&said.status)
    .fetch_optional(&mut *tx)
    .await?;
    if taken.is_none() {
        return Ok(None);
    }
    // A status this version cannot read is dropped with the row, as unknown.
    let Some(status) = ReceiptStatus::parse(&said.status) else {
        tx.commit().await?;
        return Ok(Some(Applied::Unknown));
    };
    Ok(Some(match apply_in(&mut tx, said, status, fallback_to_voice, now).await? {
        Found::NoAttempt => {
            tx.commit().await?;
            Applied::Unknown
        }
        Found::Stale => {
            tx.commit().await?;
            Applied::Stale
        }
        Found::Moved(moved) => {
            relay::commit(tx, relay).await?;
            counted(said, status, moved, now)
        }
    }))
}

/// The metrics of a committed receipt.
fn counted(said: &Said, status: ReceiptStatus, moved: Moved, now: DateTime<Utc>) -> Applied {
    if let (ReceiptStatus::Delivered, Some(asked)) = (status, moved.requested_at) {
        let took = (now - asked).to_std().unwrap_or_default();
        metrics::histogram!("verifyd_request_to_delivered_seconds", "channel" => moved.channel,
            "provider" => said.provider.clone())
        .record(took.as_secs_f64());
    }
    metrics::counter!("verifyd_receipts_total", "provider" => said.provider.clone(), "status" => status.as_str())
        .increment(1);
    if moved.fell_back {
        metrics::counter!("verifyd_fallbacks_total", "to" => "voice").increment(1);
    }
    Applied::Updated { fell_back: moved.fell_back }
}

/// Moves the attempt that sent the message forward, in `tx`: `None` when no
/// attempt sent it, or that the receipt is stale.
async fn apply_in(
    tx: &mut PgConnection,
    said: &Said,
    status: ReceiptStatus,
    fallback_to_voice: bool,
    now: DateTime<Utc>,
) -> Result<Found, StoreError> {
    let attempt: Option<AttemptRow> = sqlx::query_as(
        "SELECT id, job_id, verification_id, tenant_id, channel, receipt_status, requested_at FROM delivery_attempts
         WHERE provider = $1 AND provider_message_id = $2 AND outcome = 'sent'
         FOR UPDATE",
    )
    .bind(&said.provider)
    .bind(&said.message_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(attempt) = attempt else {
        return Ok(Found::NoAttempt);
    };
    let current = attempt.receipt_status.as_deref().and_then(ReceiptStatus::parse);
    if current.is_some_and(|c| rank(c) >= rank(status)) {
        return Ok(Found::Stale);
    }
    sqlx::query(
        "UPDATE delivery_attempts SET receipt_status = $2, receipt_error_code = $3, receipt_at = $4 WHERE id = $1",
    )
    .bind(attempt.id)
    .bind(status.as_str())
    .bind(&said.error_code)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let mut fell_back = false;
    if status.is_failure() {
        // Lock the verification: a check, a resend or another receipt waits.
        // A failure reported after the person already used (or let expire) the
        // code tells the backend nothing worth acting on: record it, announce nothing.
        let locked = verifications::lock(&mut *tx, attempt.tenant_id, attempt.verification_id).await?;
        if let Some(v) = locked.filter(|v| v.state.effective_status(now) == Status::Pending) {
            let channel: Channel = attempt.channel.parse().unwrap_or(v.channel);
            let reason = match &said.error_code {
                Some(code) => format!("{} reports the message {} (error {code})", said.provider, status.as_str()),
                None => format!("{} reports the message {}", said.provider, status.as_str()),
            };
            let mut event = v
                .event(EventKind::DeliveryFailed, now)
                .with("provider", said.provider.as_str())
                .with("provider_message_id", said.message_id.as_str())
                .with("reason", reason);
            event.channel = Some(channel);
            if fallback_to_voice && channel == Channel::Sms {
                fell_back = fall_back_to_voice(&mut *tx, &v, now).await?;
                if fell_back {
                    event = event.with("fallback", Channel::Voice.as_str());
                }
            }
            // The latest send failing for good ends the verification; an
            // earlier one's receipt does not (a resend is on its way).
            let ended = !fell_back && verifications::fail_delivery(&mut *tx, v.id, attempt.job_id, now).await?;
            event = event.status(if ended { Status::Failed.as_str() } else { Status::Pending.as_str() });
            outbox::put(&mut *tx, &outbox::event_rows(&event, v.reply.as_ref())).await?;
        }
    }
    Ok(Found::Moved(Moved { channel: attempt.channel, requested_at: attempt.requested_at, fell_back }))
}

/// Queues the same code by voice, once per verification and only while it can
/// still be used. Returns whether it did. Run inside the caller's transaction,
/// with the verification row locked.
pub async fn fall_back_to_voice(
    conn: &mut PgConnection,
    v: &Verification,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    if v.state.effective_status(now) != Status::Pending {
        return Ok(false);
    }
    let first: bool = sqlx::query_scalar(
        "UPDATE verifications SET fallback_at = $2 WHERE id = $1 AND fallback_at IS NULL RETURNING true",
    )
    .bind(v.id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?
    .unwrap_or(false);
    if first {
        let job = DispatchJob { job_id: Uuid::new_v4(), verification_id: v.id, channel: Channel::Voice, retry: 0 };
        verifications::arm_delivery(&mut *conn, v.id, &job, false).await?;
        outbox::put(conn, &[outbox::dispatch_row(&job)]).await?;
        tracing::info!(verification_id = %v.id, to = %v.to.masked(), "SMS undeliverable: the code goes out by voice");
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_only_move_forward() {
        use ReceiptStatus::*;
        assert!(rank(Queued) < rank(Sent) && rank(Sent) < rank(Delivered));
        assert_eq!(rank(Delivered), rank(Undelivered));
        assert_eq!(rank(Delivered), rank(Failed));
    }
}
