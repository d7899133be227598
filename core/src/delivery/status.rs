//! Where a verification's latest delivery stands, as a backend reads it: one
//! state derived from the latest job's attempts, receipt, claim and dead
//! letter (nothing extra is written on the send path), and a safe reason:
//! an error kind, never a provider's free text.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;
use verifyd_providers::domain::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for a delivery worker (first try, or between retries).
    Queued,
    /// A worker is handing it to a provider right now.
    Sending,
    /// A provider accepted it; no receipt yet (or the receipt said `sent`).
    Sent,
    /// The provider's receipt says it reached the phone.
    Delivered,
    /// The carrier could not deliver it (receipt).
    Undelivered,
    /// A provider refused it for good, or its receipt says it failed.
    Failed,
    /// verifyd gave up (retries exhausted): operators can replay it.
    DeadLettered,
    /// Not sent: the verification had ended before a worker took the job.
    Skipped,
}

/// A verification's latest delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub state: DeliveryState,
    /// The channel of the latest send (a resend or a fallback may use the other one).
    pub channel: Channel,
    /// The provider that last handled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Why it failed or waits for a retry: an error kind (`invalid_number`,
    /// `opted_out`, `region_not_allowed`, `channel_not_supported`, `rejected`,
    /// `configuration`, `timeout`, `unreachable`, `throttled`, `unavailable`),
    /// a receipt's `undelivered` or `failed`, or why verifyd gave up
    /// (`retries_exhausted`, `sealed_code`). Never a provider's own text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The carrier's or provider's error code from a receipt, as it wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// When this state was reached; absent while the first try is queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::timestamp::option")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Delivery {
    /// What a send just queued reads as.
    pub fn queued(channel: Channel) -> Self {
        Delivery {
            state: DeliveryState::Queued,
            channel,
            provider: None,
            reason: None,
            error_code: None,
            updated_at: None,
        }
    }

    /// The state of the latest job from what was recorded of it.
    pub fn of(latest: &Latest) -> Self {
        let mut delivery = Delivery::queued(latest.channel.parse().unwrap_or(Channel::Sms));
        if let Some(kind) = &latest.letter_kind {
            // Given up on: the attempt that recorded it carries no provider.
            delivery.state = DeliveryState::DeadLettered;
            delivery.reason = Some(kind.clone());
            delivery.updated_at = latest.attempted_at;
            delivery.provider = latest.provider.clone();
            return delivery;
        }
        let Some(outcome) = latest.outcome.as_deref() else {
            if latest.claimed {
                delivery.state = DeliveryState::Sending;
            }
            return delivery;
        };
        delivery.provider = latest.provider.clone();
        delivery.updated_at = latest.attempted_at;
        match outcome {
            "sent" => {
                delivery.state = match latest.receipt_status.as_deref() {
                    Some("delivered") => DeliveryState::Delivered,
                    Some("undelivered") => DeliveryState::Undelivered,
                    Some("failed") => DeliveryState::Failed,
                    _ => DeliveryState::Sent,
                };
                if matches!(delivery.state, DeliveryState::Undelivered | DeliveryState::Failed) {
                    delivery.reason = latest.receipt_status.clone();
                    delivery.error_code = latest.receipt_error_code.clone();
                }
                if latest.receipt_status.is_some() {
                    delivery.updated_at = latest.receipt_at.or(latest.attempted_at);
                }
            }
            "permanent_error" => {
                delivery.state = DeliveryState::Failed;
                delivery.reason = latest.error_kind.clone();
            }
            "skipped" => delivery.state = DeliveryState::Skipped,
            // A retryable failure or one provider's refusal: the job goes on.
            _ => {
                delivery.state = if latest.claimed { DeliveryState::Sending } else { DeliveryState::Queued };
                delivery.reason = latest.error_kind.clone();
            }
        }
        delivery
    }
}

/// What was recorded of a verification's latest job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Latest {
    /// `sms` or `voice` (the column's CHECK allows no other).
    pub channel: String,
    pub outcome: Option<String>,
    pub provider: Option<String>,
    pub error_kind: Option<String>,
    pub receipt_status: Option<String>,
    pub receipt_error_code: Option<String>,
    pub attempted_at: Option<DateTime<Utc>>,
    pub receipt_at: Option<DateTime<Utc>>,
    pub claimed: bool,
    pub letter_kind: Option<String>,
}

/// Reads the latest job of one verification (`None`: no such verification).
/// The job is the one recorded on the verification; rows from before it was
/// recorded use their latest attempt of any job.
pub async fn latest(pool: &PgPool, verification_id: Uuid) -> Result<Option<Delivery>, sqlx::Error> {
    let row: Option<Latest> = sqlx::query_as(
        "SELECT COALESCE(v.delivery_channel, v.channel) AS channel,
                a.outcome, a.provider, a.error_kind, a.receipt_status, a.receipt_error_code,
                a.created_at AS attempted_at, a.receipt_at,
                EXISTS (SELECT 1 FROM dispatch_claims c
                        WHERE c.job_id = COALESCE(v.delivery_job_id, a.job_id) AND c.claimed_until > now()) AS claimed,
                (SELECT d.reason_kind FROM dead_letters d WHERE d.job_id = COALESCE(v.delivery_job_id, a.job_id)
                 ORDER BY d.dead_lettered_at DESC LIMIT 1) AS letter_kind
         FROM verifications v
         LEFT JOIN LATERAL (
            SELECT a.job_id, a.outcome, a.provider, a.error_kind, a.receipt_status, a.receipt_error_code,
                   a.created_at, a.receipt_at
            FROM delivery_attempts a
            WHERE a.verification_id = v.id AND (v.delivery_job_id IS NULL OR a.job_id = v.delivery_job_id)
            ORDER BY a.created_at DESC, a.id DESC LIMIT 1
         ) a ON true
         WHERE v.id = $1",
    )
    .bind(verification_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|latest| Delivery::of(&latest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(outcome: Option<&str>) -> Latest {
        Latest {
            channel: "sms".to_owned(),
            outcome: outcome.map(str::to_owned),
            provider: outcome.map(|_| "twilio".to_owned()),
            error_kind: None,
            receipt_status: None,
            receipt_error_code: None,
            attempted_at: outcome.map(|_| crate::timestamp::now()),
            receipt_at: None,
            claimed: false,
            letter_kind: None,
        }
    }

    #[test]
    fn a_job_nobody_tried_is_queued_or_sending_while_claimed() {
        assert_eq!(Delivery::of(&latest(None)), Delivery::queued(Channel::Sms));
        let claimed = Latest { claimed: true, ..latest(None) };
        assert_eq!(Delivery::of(&claimed).state, DeliveryState::Sending);
    }

    #[test]
    fn a_retry_waits_queued_with_the_kind_of_its_last_failure() {
        let retrying = Latest { error_kind: Some("timeout".to_owned()), ..latest(Some("retryable_error")) };
        let d = Delivery::of(&retrying);
        assert_eq!((d.state, d.reason.as_deref()), (DeliveryState::Queued, Some("timeout")));
    }

    #[test]
    fn receipts_move_a_sent_message_on_and_failures_say_why() {
        let sent = latest(Some("sent"));
        assert_eq!(Delivery::of(&sent).state, DeliveryState::Sent);
        let delivered = Latest { receipt_status: Some("delivered".to_owned()), ..sent.clone() };
        assert_eq!(Delivery::of(&delivered).state, DeliveryState::Delivered);
        let undelivered = Latest {
            receipt_status: Some("undelivered".to_owned()),
            receipt_error_code: Some("30003".to_owned()),
            ..sent
        };
        let d = Delivery::of(&undelivered);
        assert_eq!(
            (d.state, d.reason.as_deref(), d.error_code.as_deref()),
            (DeliveryState::Undelivered, Some("undelivered"), Some("30003"))
        );
    }

    #[test]
    fn a_refusal_fails_and_a_letter_wins_over_the_attempt_that_recorded_it() {
        let refused = Latest { error_kind: Some("invalid_number".to_owned()), ..latest(Some("permanent_error")) };
        let d = Delivery::of(&refused);
        assert_eq!((d.state, d.reason.as_deref()), (DeliveryState::Failed, Some("invalid_number")));
        let lettered = Latest { letter_kind: Some("retries_exhausted".to_owned()), ..refused };
        let d = Delivery::of(&lettered);
        assert_eq!((d.state, d.reason.as_deref()), (DeliveryState::DeadLettered, Some("retries_exhausted")));
        assert_eq!(Delivery::of(&latest(Some("skipped"))).state, DeliveryState::Skipped);
    }
}
