//! What an operator does with a dead letter: open it (the letter, its
//! verification, every delivery attempt), replay it (its job re-armed under a
//! new id through the outbox, so the message really goes out again, once), or
//! discard it with a reason. Each action is one transaction that locks the
//! letter, so a replay and a discard of one letter, or two replays, take turns
//! and the second is refused; each is audited with the acting key.
//!
//! ```text
//!   dead ──replay──▶ replayed      (a new job on the dispatch queue)
//!     └───discard──▶ discarded     (with the operator's reason)
//! ```

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::verification::Status as VerificationStatus;
use crate::ids::View;
use crate::ids::Who;
use crate::outbox;
use crate::outbox::contract::DispatchJob;
use crate::store::attempts::{self, Recorded};
use crate::store::dead_letters::{self, Filter, Letter, Status};
use crate::store::verifications::{self, Verification};
use crate::store::{StoreError, audit};

/// The most letters one filtered replay or discard acts on.
pub const MAX_BATCH: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    #[error("dead letter not found")]
    NotFound,
    #[error("the dead letter was {} already ({} by {})", .status.as_str(), crate::timestamp::format(*.at), .by)]
    Resolved { status: Status, at: DateTime<Utc>, by: String },
    #[error("this dead letter cannot be replayed: {0}")]
    NotReplayable(&'static str),
    #[error("the verification is {0}: its code can no longer be used, so it is not sent again")]
    VerificationEnded(VerificationStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for LetterError {
    fn from(e: sqlx::Error) -> Self {
        LetterError::Store(StoreError::Db(e))
    }
}

/// Why a letter cannot be replayed, when it cannot (whatever its verification).
pub fn unreplayable(letter: &Letter) -> Option<&'static str> {
    if letter.webhook_delivery_id.is_some() {
        return None;
    }
    match (letter.verification_id, letter.job_id) {
        (Some(_), Some(_)) => None,
        _ if letter.source_queue.ends_with("requests") => {
            Some("a request is not replayed: the backend sends it again (with its idempotency key, that is safe)")
        }
        _ => Some("the message is not a dispatch job verifyd can read"),
    }
}

/// Whether a letter's job may go out again for its verification `v`: while
/// it is pending, and when giving up on this very job ended it `failed`,
/// which the replay reopens (`Ok(true)`; its code and deadline unchanged)
/// before that deadline.
/// Any other end stands (`Err` with it).
fn may_send(v: &Verification, job_id: Uuid, now: DateTime<Utc>) -> Result<bool, VerificationStatus> {
    match v.state.effective_status(now) {
        VerificationStatus::Pending => Ok(false),
        // Past its deadline its code is of no use any more: expired, as a check would say.
        VerificationStatus::Failed if v.delivery_job_id == Some(job_id) && now >= v.state.expires_at => {
            Err(VerificationStatus::Expired)
        }
        VerificationStatus::Failed if v.delivery_job_id == Some(job_id) => Ok(true),
        ended => Err(ended),
    }
}

/// A replayed letter.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub id: Uuid,
    /// The verification of a dispatch job's letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_id: Option<Uuid>,
    /// The job that now carries the delivery (a dispatch job's letter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
    /// A webhook delivery's letter: the delivery, pending again under the
    /// same `webhook-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_delivery_id: Option<Uuid>,
}

/// Re-arms a letter's job: a new dispatch job (new id, first try) for the same
/// verification and channel, queued through the outbox in the transaction that
/// marks the letter replayed. The verification must still be pending and
/// within its deadline. Kick the relay afterwards to publish at once.
pub async fn replay(
    pool: &PgPool,
    view: &View,
    id: Uuid,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<Replayed, LetterError> {
    let mut tx = pool.begin().await?;
    let letter = dead_letters::lock(&mut tx, view, id).await?.ok_or(LetterError::NotFound)?;
    still_dead(&letter)?;
    if let Some(delivery_id) = letter.webhook_delivery_id {
        return replay_webhook(tx, &letter, delivery_id, who, now).await;
    }
    if let Some(why) = unreplayable(&letter) {
        return Err(LetterError::NotReplayable(why));
    }
    let (Some(verification_id), Some(old_job), Some(tenant_id)) =
        (letter.verification_id, letter.job_id, letter.tenant_id)
    else {
        return Err(LetterError::NotReplayable("its verification no longer exists"));
    };
    let v = verifications::lock(&mut tx, tenant_id, verification_id)
        .await?
        .ok_or(LetterError::NotReplayable("its verification no longer exists"))?;
    let reopens = may_send(&v, old_job, now).map_err(LetterError::VerificationEnded)?;
    let channel = letter.channel.unwrap_or(v.channel);
    let job = DispatchJob { job_id: Uuid::new_v4(), verification_id, channel, retry: 0 };
    verifications::arm_delivery(&mut tx, verification_id, &job, reopens).await?;
    outbox::dispatch(&mut tx, &job).await?;
    dead_letters::resolve(&mut tx, id, Status::Replayed, who.actor.as_str(), None, Some(job.job_id), now).await?;
    let detail = serde_json::json!({
        "dead_letter_id": id, "verification_id": verification_id, "job_id": old_job,
        "new_job_id": job.job_id, "channel": channel.as_str(), "reason_kind": letter.kind.as_str(),
    });
    audit::record_operation(&mut tx, Some(tenant_id), "dead_letter.replayed", who, detail, now).await?;
    tx.commit().await?;
    metrics::counter!("verifyd_dead_letter_actions_total", "action" => "replayed").increment(1);
    tracing::info!(letter_id = %id, %verification_id, job_id = %job.job_id, actor = who.actor.as_str(),
        "dead letter replayed");
    Ok(Replayed { id, verification_id: Some(verification_id), job_id: Some(job.job_id), webhook_delivery_id: None })
}

/// Re-arms a webhook delivery's letter: the delivery is pending again (same
/// `webhook-id`, attempts from zero) and queued, in the transaction that marks
/// the letter replayed. Its endpoint must exist and be enabled.
async fn replay_webhook(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    letter: &Letter,
    delivery_id: Uuid,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<Replayed, LetterError> {
    crate::webhooks::store::rearm(&mut tx, delivery_id).await?.map_err(LetterError::NotReplayable)?;
    dead_letters::resolve(&mut tx, letter.id, Status::Replayed, who.actor.as_str(), None, None, now).await?;
    let detail = serde_json::json!({
        "dead_letter_id": letter.id, "webhook_delivery_id": delivery_id, "reason_kind": letter.kind.as_str(),
    });
    audit::record_operation(&mut tx, letter.tenant_id, "dead_letter.replayed", who, detail, now).await?;
    tx.commit().await?;
    metrics::counter!("verifyd_dead_letter_actions_total", "action" => "replayed").increment(1);
    tracing::info!(letter_id = %letter.id, %delivery_id, actor = who.actor.as_str(), "webhook dead letter replayed");
    Ok(Replayed { id: letter.id, verification_id: None, job_id: None, webhook_delivery_id: Some(delivery_id) })
}

/// Puts a letter aside for good, with the operator's reason.
pub async fn discard(
    pool: &PgPool,
    view: &View,
    id: Uuid,
    who: &Who,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Letter, LetterError> {
    let mut tx = pool.begin().await?;
    let mut letter = dead_letters::lock(&mut tx, view, id).await?.ok_or(LetterError::NotFound)?;
    still_dead(&letter)?;
    dead_letters::resolve(&mut tx, id, Status::Discarded, who.actor.as_str(), Some(reason), None, now).await?;
    let detail = serde_json::json!({
        "dead_letter_id": id, "verification_id": letter.verification_id, "job_id": letter.job_id,
        "reason_kind": letter.kind.as_str(), "reason": reason,
    });
    audit::record_operation(&mut tx, letter.tenant_id, "dead_letter.discarded", who, detail, now).await?;
    tx.commit().await?;
    metrics::counter!("verifyd_dead_letter_actions_total", "action" => "discarded").increment(1);
    tracing::info!(letter_id = %id, actor = who.actor.as_str(), "dead letter discarded");
    letter.status = Status::Discarded;
    letter.resolved_at = Some(now);
    letter.resolved_by = Some(who.actor.as_str().to_owned());
    letter.resolution = Some(reason.to_owned());
    Ok(letter)
}

fn still_dead(letter: &Letter) -> Result<(), LetterError> {
    match (letter.status, letter.resolved_at) {
        (Status::Dead, _) => Ok(()),
        (status, at) => Err(LetterError::Resolved {
            status,
            at: at.unwrap_or(letter.dead_lettered_at),
            by: letter.resolved_by.clone().unwrap_or_default(),
        }),
    }
}

/// The letters a filtered action takes: waiting ones only, oldest first.
pub async fn matching(pool: &PgPool, view: &View, filter: &Filter, limit: i64) -> Result<Vec<Letter>, StoreError> {
    let filter = Filter { status: Some(Status::Dead), ..filter.clone() };
    dead_letters::page(pool, view, &filter, None, limit.clamp(1, MAX_BATCH), dead_letters::Order::OldestFirst).await
}

/// A letter opened: the letter, where its verification stands, and every
/// attempt at delivering it (those of the replayed job included).
#[derive(Debug, Clone)]
pub struct Opened {
    pub letter: Letter,
    pub verification: Option<VerificationState>,
    pub attempts: Vec<Recorded>,
    /// Why it cannot be replayed now, if it cannot.
    pub not_replayable: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VerificationState {
    /// `pending`, `approved`, `expired`, `max_attempts_reached`, `canceled`
    /// or `failed` (as of now; a replay reopens a verification its letter failed).
    pub status: String,
    #[serde(with = "crate::timestamp")]
    pub expires_at: DateTime<Utc>,
    /// The destination, masked.
    pub to: String,
    pub channel: String,
    pub account_id: String,
}

impl Opened {
    /// The first and last failed attempt of the letter's own job.
    pub fn failures(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let mine = self
            .attempts
            .iter()
            .filter(|a| Some(a.job_id) == self.letter.job_id && a.outcome != "sent" && a.outcome != "skipped");
        let times: Vec<DateTime<Utc>> = mine.map(|a| a.at).collect();
        (times.iter().min().copied(), times.iter().max().copied())
    }
}

pub async fn open(pool: &PgPool, view: &View, id: Uuid, now: DateTime<Utc>) -> Result<Option<Opened>, LetterError> {
    let Some(letter) = dead_letters::get(pool, view, id).await? else {
        return Ok(None);
    };
    let (v, attempts) = match (letter.verification_id, letter.tenant_id) {
        (Some(vid), Some(tenant_id)) => {
            (verifications::get(pool, tenant_id, vid).await?, attempts::history(pool, view, vid).await?)
        }
        _ => (None, Vec::new()),
    };
    let not_replayable = if letter.status != Status::Dead {
        Some(format!("it was {} already", letter.status.as_str()))
    } else if let Some(delivery_id) = letter.webhook_delivery_id {
        let mut conn = pool.acquire().await?;
        crate::webhooks::store::replay_refusal(&mut conn, delivery_id, false).await?.map(str::to_owned)
    } else if let Some(why) = unreplayable(&letter) {
        Some(why.to_owned())
    } else {
        match (&v, letter.job_id) {
            (Some(v), Some(job_id)) => {
                may_send(v, job_id, now).err().map(|ended| format!("its verification is {ended}"))
            }
            _ => Some("its verification no longer exists".to_owned()),
        }
    };
    let verification = v.map(|v| VerificationState {
        status: v.state.effective_status(now).as_str().to_owned(),
        expires_at: v.state.expires_at,
        to: v.to.masked(),
        channel: v.channel.as_str().to_owned(),
        account_id: v.account_id.as_str().to_owned(),
    });
    Ok(Some(Opened { letter, verification, attempts, not_replayable }))
}
