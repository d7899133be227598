//! The dispatch actor: one `QueueConsumer` per dispatch queue consumer, handing
//! each job to this module's `Dispatcher`. For a job it loads the verification,
//! skips it if the code is no longer valid, opens the sealed code, renders the
//! SMS or call, tries the channel's providers in order, records every attempt,
//! announces the result through the outbox, reports to account state, and acks.
//!
//! Retryable failures go to a delay queue (`retry.n`) and come back; when the
//! delays are used up, or a message is malformed, it goes to the dead-letter
//! queue with the reason. Nothing is acked before its outcome is in PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use sqlx::PgPool;
use verifyd_providers::domain::Channel;
use verifyd_providers::{Provider, ProviderError, Sent};

use crate::account_state::{AccountStateActor, DeliveryReport};
use crate::amqp::{Topology, json_properties, publish_confirmed};
use crate::consumer::{DeliveryHandler, Disposition, dead_letter};
use crate::contract::{DispatchJob, Event, EventKind};
use crate::keys::CodeKeys;
use crate::lifecycle::Status;
use crate::outbox;
use crate::relay::{Kick, OutboxRelay};
use crate::render::{self, Rendering};
use crate::shards::Shards;
use crate::store::attempts::{self, Attempt, Claim, Outcome};
use crate::store::verifications::{self, Verification};

/// How long a consumer holds a job it is delivering; longer than every provider's
/// timeout together. A holder that dies loses the claim after this.
const CLAIM_LEASE: Duration = Duration::from_secs(120);

/// Providers per channel, in the order they are tried.
#[derive(Default, Clone)]
pub struct ProviderSet {
    by_channel: HashMap<Channel, Vec<Arc<dyn Provider>>>,
}

impl ProviderSet {
    pub fn add(&mut self, channel: Channel, provider: Arc<dyn Provider>) {
        self.by_channel.entry(channel).or_default().push(provider);
    }

    pub fn for_channel(&self, channel: Channel) -> &[Arc<dyn Provider>] {
        self.by_channel.get(&channel).map(Vec::as_slice).unwrap_or_default()
    }
}

pub struct Dispatcher {
    pub pool: PgPool,
    pub keys: Arc<CodeKeys>,
    pub providers: ProviderSet,
    pub topology: Topology,
    pub app_name: String,
    pub account_state: Shards<AccountStateActor>,
    pub relay: Addr<OutboxRelay>,
}

impl DeliveryHandler for Dispatcher {
    fn handle(self: Arc<Self>, channel: lapin::Channel, delivery: Delivery) -> BoxFuture<'static, Disposition> {
        Box::pin(async move {
            match self.process(&channel, &delivery).await {
                Ok(()) => Disposition::Ack,
                Err(error) => {
                    tracing::warn!(%error, "dispatch: job not handled now; requeued");
                    metrics::counter!("verifyd_dispatch_requeued_total").increment(1);
                    Disposition::Requeue
                }
            }
        })
    }
}

/// Failures that leave the job in the queue for later (the outcome is not stored).
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Publish(#[from] crate::amqp::PublishError),
}

enum Delivered {
    Sent(Sent, u128),
    Failed { error: ProviderError, provider: Option<String> },
    AllRetryable(ProviderError),
}

impl Dispatcher {
    async fn process(&self, amqp: &lapin::Channel, delivery: &Delivery) -> Result<(), DispatchError> {
        let job: DispatchJob = match serde_json::from_slice(&delivery.data) {
            Ok(job) => job,
            Err(error) => {
                let reason = format!("malformed dispatch job: {error}");
                return Ok(dead_letter(amqp, &self.topology.dead_letters(), delivery, &reason).await?);
            }
        };
        // Two copies of one job (a relay republish after a lost confirm, a
        // redelivery after a crash) must not both reach the provider: claim the
        // job and read its verification in one statement.
        let (acquired, v) =
            verifications::claim_for_dispatch(&self.pool, job.verification_id, job.job_id, CLAIM_LEASE).await?;
        let Some(v) = v else {
            let reason = format!("verification {} does not exist", job.verification_id);
            return Ok(dead_letter(amqp, &self.topology.dead_letters(), delivery, &reason).await?);
        };
        if !acquired {
            let mut conn = self.pool.acquire().await?;
            match attempts::claim_state(&mut conn, job.job_id).await? {
                Claim::Finished => {
                    tracing::debug!(job_id = %job.job_id, "duplicate of a finished job; dropped");
                    return Ok(());
                }
                Claim::HeldElsewhere => {
                    // Look again after the first retry delay: by then the other copy
                    // has finished, or its holder died and the lease ran out.
                    tracing::debug!(job_id = %job.job_id, "job is being delivered elsewhere; deferred");
                    return self.defer(amqp, &job, 0).await;
                }
            }
        }
        let now = Utc::now();
        let status = v.state.effective_status(now);
        if status != Status::Pending {
            // Never deliver a code that can no longer be used.
            self.finish(&job, &v, Outcome::Skipped, None, None, Some(&format!("verification is {status}")), None)
                .await?;
            return Ok(());
        }
        let Ok(code) = self.keys.open(v.id, &v.code_sealed) else {
            let reason = "sealed code does not open: was the encryption key changed?";
            self.fail(&job, &v, None, reason).await?;
            return Ok(dead_letter(amqp, &self.topology.dead_letters(), delivery, reason).await?);
        };
        let rendering = || Rendering {
            app_name: &self.app_name,
            to: &v.phone,
            locale: &v.locale,
            code: &code,
            valid_for: (v.state.expires_at - now).to_std().unwrap_or_default(),
            reference: job.job_id.to_string(),
        };
        let result = match job.channel {
            Channel::Sms => {
                let sms = render::sms(rendering());
                self.try_providers(&job, &v, |p| {
                    let sms = sms.clone();
                    async move { p.send_sms(&sms).await }
                })
                .await?
            }
            Channel::Voice => {
                let call = render::voice(rendering());
                self.try_providers(&job, &v, |p| {
                    let call = call.clone();
                    async move { p.place_call(&call).await }
                })
                .await?
            }
        };
        drop(code);

        match result {
            Delivered::Sent(sent, latency) => {
                let latency = i32::try_from(latency).unwrap_or(i32::MAX);
                self.finish(&job, &v, Outcome::Sent, Some(&sent.provider), Some(&sent.message_id), None, Some(latency))
                    .await?;
                Ok(())
            }
            Delivered::Failed { error, provider } => {
                self.fail(&job, &v, provider.as_deref(), &error.to_string()).await?;
                Ok(())
            }
            Delivered::AllRetryable(error) => match self.topology.retry_level(job.retry) {
                Some(level) => {
                    let mut conn = self.pool.acquire().await?;
                    attempts::release(&mut conn, job.job_id).await?;
                    let next = DispatchJob { retry: job.retry + 1, ..job.clone() };
                    self.defer(amqp, &next, level).await?;
                    metrics::counter!("verifyd_dispatch_retries_total", "channel" => job.channel.as_str()).increment(1);
                    tracing::info!(job_id = %job.job_id, retry = next.retry, %error, "delivery will be retried");
                    Ok(())
                }
                None => {
                    let reason = format!("retries exhausted after {} tries: {error}", job.retry + 1);
                    self.fail(&job, &v, None, &reason).await?;
                    Ok(dead_letter(amqp, &self.topology.dead_letters(), delivery, &reason).await?)
                }
            },
        }
    }

    /// Puts a job in the retry queue of `level`; it comes back after that delay.
    async fn defer(&self, amqp: &lapin::Channel, job: &DispatchJob, level: usize) -> Result<(), DispatchError> {
        let body = serde_json::to_vec(job).unwrap_or_default();
        let queue = self.topology.retry_queue(job.channel, level);
        publish_confirmed(amqp, "", &queue, &body, json_properties()).await?;
        Ok(())
    }

    /// Tries each provider of the channel in order until one accepts. Every
    /// retryable failure is recorded and the next provider is tried; a permanent
    /// failure stops (the same message would fail elsewhere too).
    async fn try_providers<F, Fut>(
        &self,
        job: &DispatchJob,
        v: &Verification,
        send: F,
    ) -> Result<Delivered, DispatchError>
    where
        F: Fn(Arc<dyn Provider>) -> Fut,
        Fut: std::future::Future<Output = Result<Sent, ProviderError>>,
    {
        let providers = self.providers.for_channel(job.channel);
        let mut last_error = None;
        for provider in providers {
            let started = Instant::now();
            match send(provider.clone()).await {
                Ok(sent) => return Ok(Delivered::Sent(sent, started.elapsed().as_millis())),
                Err(error) if error.is_retryable() => {
                    let latency = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
                    metrics::counter!("verifyd_provider_errors_total", "provider" => provider.name().to_owned(), "kind" => "retryable")
                        .increment(1);
                    let mut conn = self.pool.acquire().await?;
                    let attempt = Attempt {
                        job_id: job.job_id,
                        verification_id: v.id,
                        tenant_id: v.tenant_id,
                        channel: job.channel,
                        provider: Some(provider.name()),
                        provider_message_id: None,
                        outcome: Outcome::RetryableError,
                        error: Some(&error.to_string()),
                        latency_ms: Some(latency),
                    };
                    attempts::record(&mut conn, &attempt, &[]).await?;
                    last_error = Some(error);
                }
                Err(error) => {
                    metrics::counter!("verifyd_provider_errors_total", "provider" => provider.name().to_owned(), "kind" => "permanent")
                        .increment(1);
                    return Ok(Delivered::Failed { error, provider: Some(provider.name().to_owned()) });
                }
            }
        }
        Ok(match last_error {
            Some(error) => Delivered::AllRetryable(error),
            None => Delivered::Failed {
                error: ProviderError::Permanent {
                    provider: "verifyd".into(),
                    kind: verifyd_providers::PermanentKind::Configuration,
                    reason: format!("no provider is configured for {}", job.channel),
                    provider_code: None,
                },
                provider: None,
            },
        })
    }

    async fn fail(
        &self,
        job: &DispatchJob,
        v: &Verification,
        provider: Option<&str>,
        reason: &str,
    ) -> Result<(), DispatchError> {
        self.finish(job, v, Outcome::PermanentError, provider, None, Some(reason), None).await
    }

    /// Records the final attempt of a job and announces it, in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        job: &DispatchJob,
        v: &Verification,
        outcome: Outcome,
        provider: Option<&str>,
        message_id: Option<&str>,
        error: Option<&str>,
        latency_ms: Option<i32>,
    ) -> Result<(), DispatchError> {
        let now = Utc::now();
        let event = match outcome {
            Outcome::Sent => Some(
                Event::for_verification(EventKind::Delivered, v, now)
                    .with("provider", provider.unwrap_or_default())
                    .with("provider_message_id", message_id.unwrap_or_default()),
            ),
            Outcome::PermanentError => Some(
                Event::for_verification(EventKind::DeliveryFailed, v, now).with("reason", error.unwrap_or_default()),
            ),
            Outcome::Skipped | Outcome::RetryableError => None,
        }
        .map(|event| Event { channel: Some(job.channel), ..event });
        let announce = event.as_ref().map(|e| outbox::event_rows(e, v.reply.as_ref())).unwrap_or_default();
        let attempt = Attempt {
            job_id: job.job_id,
            verification_id: v.id,
            tenant_id: v.tenant_id,
            channel: job.channel,
            provider,
            provider_message_id: message_id,
            outcome,
            error,
            latency_ms,
        };
        let mut conn = self.pool.acquire().await?;
        if !attempts::record(&mut conn, &attempt, &announce).await? {
            // A redelivered copy of this job finished first.
            return Ok(());
        }
        if event.is_some() {
            self.relay.do_send(Kick);
            let delivered = outcome == Outcome::Sent;
            self.account_state.pick(&(v.tenant_id, v.account_id.as_str())).do_send(DeliveryReport {
                tenant_id: v.tenant_id,
                account_id: v.account_id.clone(),
                verification_id: v.id,
                channel: job.channel,
                delivered,
            });
        }
        metrics::counter!("verifyd_dispatch_total", "channel" => job.channel.as_str(), "outcome" => outcome.as_str())
            .increment(1);
        tracing::info!(job_id = %job.job_id, verification_id = %v.id, to = %v.phone.masked(), channel = %job.channel,
            outcome = outcome.as_str(), provider = provider.unwrap_or("-"), "dispatch finished");
        Ok(())
    }
}
