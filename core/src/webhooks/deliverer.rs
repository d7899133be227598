//! The consumer of `<prefix>webhooks`: one message names one delivery. The
//! delivery is claimed only when it is the head of its lane, so the events of
//! one verification reach an endpoint in the order they were recorded, a later
//! one waiting while an earlier one is retried. Each attempt is one POST with
//! `webhooks.timeout_ms`; its outcome is recorded, with the message queueing
//! the lane's next delivery, before the message is acked. Retries wait in
//! `<prefix>webhooks.retry.<n>`; after the last one the delivery is a dead
//! letter an operator can replay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::store::{self, Claimed, Final, NotClaimed, Record};
use super::{SigningSecret, message_id, signature_header};
use crate::codes::keys::CodeKeys;
use crate::dead_letter::Reason;
use crate::infra::amqp::{PublishError, Topology, jittered, json_properties, publish_confirmed};
use crate::infra::consumer::{DeliveryHandler, Disposition, Letter, dead_letter};
use crate::outbox::relay::OutboxRelay;
use crate::store::dead_letters::NewLetter;

/// The body of a message on `<prefix>webhooks` and its retry queues.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookJob {
    pub delivery_id: Uuid,
}

pub struct WebhookDeliverer {
    pool: PgPool,
    keys: Arc<CodeKeys>,
    topology: Topology,
    relay: Addr<OutboxRelay>,
    client: reqwest::Client,
    timeout: Duration,
    /// How long one consumer holds a delivery: longer than a request can take.
    lease: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("no webhook retry queue is configured (webhooks.retry_delays_ms)")]
    NoRetryQueue,
}

/// What a receiver made of one POST.
#[derive(Debug)]
enum Answer {
    Accepted(u16),
    /// 408, 429, 5xx, a timeout or a connection that failed: try again later.
    Retryable {
        status: Option<u16>,
        error: String,
    },
    /// Any other answer: the receiver will not take this message as it is.
    Refused {
        status: u16,
    },
}

impl WebhookDeliverer {
    pub fn new(
        pool: PgPool,
        keys: Arc<CodeKeys>,
        topology: Topology,
        relay: Addr<OutboxRelay>,
        timeout: Duration,
        claim_lease: Duration,
    ) -> Result<Self, reqwest::Error> {
        // Redirects are not followed: the endpoint is the URL the tenant gave.
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("verifyd-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        // A claim outlives the longest POST by `runtime.claim_lease_ms`: a
        // process killed mid-POST leaves its delivery to another after that.
        let lease = timeout + claim_lease;
        Ok(WebhookDeliverer { pool, keys, topology, relay, client, timeout, lease })
    }
}

impl DeliveryHandler for WebhookDeliverer {
    fn handle(self: Arc<Self>, channel: lapin::Channel, delivery: Delivery) -> BoxFuture<'static, Disposition> {
        Box::pin(async move {
            match self.process(&channel, &delivery).await {
                Ok(()) => Disposition::Ack,
                Err(error) => {
                    tracing::warn!(%error, "webhooks: delivery not handled now; requeued");
                    Disposition::Requeue
                }
            }
        })
    }
}

impl WebhookDeliverer {
    async fn process(&self, amqp: &lapin::Channel, delivery: &Delivery) -> Result<(), WebhookError> {
        let job: WebhookJob = match serde_json::from_slice(&delivery.data) {
            Ok(job) => job,
            Err(error) => {
                let reason = format!("malformed webhook job: {error}");
                let letter = Letter::of(delivery, Reason::Malformed, &reason);
                return Ok(dead_letter(amqp, &self.topology.dead_letters(), delivery, &letter).await?);
            }
        };
        let claimed = match store::claim(&self.pool, job.delivery_id, self.lease).await? {
            Ok(claimed) => claimed,
            // Finished by another copy: nothing to do.
            Err(NotClaimed::Finished) => return Ok(()),
            // Waiting behind an earlier delivery of its lane: look again
            // later, the longer the head has been failing. The head's outcome
            // queues it too, but may have been recorded before this row was
            // committed, so this copy is kept, not dropped (decision 133).
            Err(NotClaimed::Waiting { head_attempts }) => {
                metrics::counter!("verifyd_webhook_waits_total").increment(1);
                let levels = self.topology.webhook_retry_delays.len().max(1);
                let level = usize::try_from(head_attempts).unwrap_or(0).saturating_sub(1).min(levels - 1);
                return self.defer(amqp, job.delivery_id, level).await;
            }
            // Held by another consumer: look again after the first delay.
            Err(NotClaimed::HeldElsewhere) => return self.defer(amqp, job.delivery_id, 0).await,
        };
        if !claimed.enabled {
            let skip = Record {
                end: Some(Final::Skipped),
                attempted: false,
                http_status: None,
                error: None,
                letter: None,
                disable_endpoint: false,
            };
            if store::record(&self.pool, &self.relay, &claimed, &skip).await? {
                metrics::counter!("verifyd_webhook_deliveries_total", "outcome" => "skipped").increment(1);
            }
            return Ok(());
        }
        let Some((current, previous)) = self.secrets(&claimed) else {
            let reason = format!(
                "the signing secret of webhook {} does not open: was the encryption key changed?",
                claimed.endpoint_id
            );
            return self.give_up(&claimed, Reason::SealedCode, &reason, None, false).await;
        };
        let body = serde_json::to_vec(&claimed.payload).unwrap_or_default();
        let msg_id = message_id(claimed.id);
        let timestamp = crate::timestamp::now().timestamp();
        let signature = signature_header(&current, previous.as_ref(), &msg_id, timestamp, &body);
        drop((current, previous));
        let started = Instant::now();
        let answer = self.post(&claimed.url, &msg_id, timestamp, &signature, body).await;
        let outcome = match answer {
            Answer::Accepted(_) => "accepted",
            Answer::Retryable { .. } => "retryable_error",
            Answer::Refused { .. } => "refused",
        };
        metrics::counter!("verifyd_webhook_attempts_total", "outcome" => outcome).increment(1);
        metrics::histogram!("verifyd_webhook_latency_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        let host = store::host_of(&claimed.url);
        match answer {
            Answer::Accepted(status) => {
                let done = Record {
                    end: Some(Final::Delivered),
                    attempted: true,
                    http_status: Some(status),
                    error: None,
                    letter: None,
                    disable_endpoint: false,
                };
                if store::record(&self.pool, &self.relay, &claimed, &done).await? {
                    metrics::counter!("verifyd_webhook_deliveries_total", "outcome" => "delivered").increment(1);
                    tracing::info!(webhook_id = %msg_id, endpoint_id = %claimed.endpoint_id, %host,
                        event = %claimed.event_type, attempt = claimed.attempts + 1, status, "webhook delivered");
                }
                Ok(())
            }
            Answer::Refused { status } => {
                let gone = status == 410;
                let reason = format!(
                    "the receiver refused it: HTTP {status} (webhook {} at {host}){}",
                    claimed.endpoint_id,
                    if gone { "; 410 Gone: the endpoint is disabled" } else { "" }
                );
                if gone {
                    metrics::counter!("verifyd_webhook_endpoints_disabled_total").increment(1);
                }
                self.give_up(&claimed, Reason::ReceiverRefused, &reason, Some(status), gone).await
            }
            Answer::Retryable { status, error } => {
                let level = usize::try_from(claimed.attempts).unwrap_or(usize::MAX);
                if level >= self.topology.webhook_retry_delays.len() {
                    let reason = format!(
                        "retries exhausted after {} tries: {error} (webhook {} at {host})",
                        claimed.attempts + 1,
                        claimed.endpoint_id
                    );
                    return self.give_up(&claimed, Reason::RetriesExhausted, &reason, status, false).await;
                }
                let retry = Record {
                    end: None,
                    attempted: true,
                    http_status: status,
                    error: Some(&error),
                    letter: None,
                    disable_endpoint: false,
                };
                if store::record(&self.pool, &self.relay, &claimed, &retry).await? {
                    self.defer(amqp, claimed.id, level).await?;
                    metrics::counter!("verifyd_webhook_retries_total").increment(1);
                    tracing::warn!(webhook_id = %msg_id, endpoint_id = %claimed.endpoint_id, %host,
                        event = %claimed.event_type, attempt = claimed.attempts + 1, %error, "webhook will be retried");
                }
                Ok(())
            }
        }
    }

    /// The current secret, and the previous one while its overlap lasts.
    fn secrets(&self, claimed: &Claimed) -> Option<(SigningSecret, Option<SigningSecret>)> {
        let current =
            SigningSecret::from_bytes(self.keys.open_bytes(claimed.endpoint_id, &claimed.secret_sealed).ok()?);
        let previous = match (&claimed.previous_sealed, claimed.previous_expires_at) {
            (Some(sealed), Some(until)) if until > crate::timestamp::now() => {
                Some(SigningSecret::from_bytes(self.keys.open_bytes(claimed.endpoint_id, sealed).ok()?))
            }
            _ => None,
        };
        Some((current, previous))
    }

    async fn post(&self, url: &str, msg_id: &str, timestamp: i64, signature: &str, body: Vec<u8>) -> Answer {
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                let code = status.as_u16();
                if status.is_success() {
                    Answer::Accepted(code)
                } else if code == 408 || code == 429 || status.is_server_error() {
                    Answer::Retryable { status: Some(code), error: format!("HTTP {status}") }
                } else {
                    Answer::Refused { status: code }
                }
            }
            Err(error) if error.is_timeout() => Answer::Retryable {
                status: None,
                error: format!("no answer within {} ms (webhooks.timeout_ms)", self.timeout.as_millis()),
            },
            // Without the URL: its path or query may carry the receiver's token.
            Err(error) => {
                let error = verifyd_providers::http_error_chain(&error.without_url()).chars().take(300).collect();
                Answer::Retryable { status: None, error }
            }
        }
    }

    /// Ends a delivery as a dead letter (recorded with the outcome), and
    /// moves its lane on.
    async fn give_up(
        &self,
        claimed: &Claimed,
        kind: Reason,
        reason: &str,
        status: Option<u16>,
        gone: bool,
    ) -> Result<(), WebhookError> {
        let body = serde_json::to_vec(&serde_json::json!({
            "delivery_id": claimed.id, "webhook_id": message_id(claimed.id), "endpoint_id": claimed.endpoint_id,
            "event": claimed.event_type, "event_id": claimed.event_id,
        }))
        .unwrap_or_default();
        let id = Uuid::new_v4();
        let key = format!("webhook:{id}");
        let queue = self.topology.webhooks_queue();
        let letter = NewLetter {
            id,
            letter_key: &key,
            tenant_id: Some(claimed.tenant_id),
            verification_id: None,
            job_id: None,
            channel: None,
            source_queue: &queue,
            kind,
            reason,
            body: &body,
            content_type: Some("application/json"),
            dead_lettered_at: crate::timestamp::now(),
            webhook_delivery_id: Some(claimed.id),
        };
        let attempted = kind != Reason::SealedCode;
        let dead = Record {
            end: Some(Final::Dead),
            attempted,
            http_status: status,
            error: Some(reason),
            letter: Some(letter),
            disable_endpoint: gone,
        };
        if store::record(&self.pool, &self.relay, claimed, &dead).await? {
            metrics::counter!("verifyd_webhook_deliveries_total", "outcome" => "dead").increment(1);
            metrics::counter!("verifyd_dead_lettered_total", "reason" => kind.as_str()).increment(1);
            tracing::warn!(webhook_id = %message_id(claimed.id), endpoint_id = %claimed.endpoint_id,
                event = %claimed.event_type, letter_id = %id, reason_kind = kind.as_str(), reason,
                "webhook delivery dead-lettered");
        }
        Ok(())
    }

    /// Puts a delivery's message in the webhook retry queue of `level`; it
    /// comes back after a random 50–100 % of that delay.
    async fn defer(&self, amqp: &lapin::Channel, delivery_id: Uuid, level: usize) -> Result<(), WebhookError> {
        let delay = *self.topology.webhook_retry_delays.get(level).ok_or(WebhookError::NoRetryQueue)?;
        let body = serde_json::to_vec(&WebhookJob { delivery_id }).unwrap_or_default();
        let queue = self.topology.webhook_retry_queue(level);
        let properties = json_properties().with_expiration(jittered(delay).as_millis().to_string().into());
        publish_confirmed(amqp, "", &queue, &body, properties).await?;
        Ok(())
    }
}
