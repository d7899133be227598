//! The dispatch actor: one `QueueConsumer` per dispatch queue consumer, handing
//! each job to this module's `Dispatcher`. For a job it loads the verification,
//! skips it if the code is no longer valid, opens the sealed code, renders the
//! SMS or call, tries the channel's providers in order, records every attempt,
//! announces the result through the outbox, reports to account state, and acks.
//!
//! Retryable failures go to a delay queue (`retry.n`) and come back; when the
//! delays are used up, or a message is malformed, it goes to the dead-letter
//! queue with the reason. Nothing is acked before its outcome is in PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use sqlx::PgPool;
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Destination};
use verifyd_providers::{ErrorKind, PermanentKind, Provider, ProviderError, Sent};

use crate::codes::keys::CodeKeys;
use crate::dead_letter::Reason;
use crate::delivery::branding;
use crate::delivery::breaker::Admission;
use crate::delivery::pacing::{self, Slot};
use crate::delivery::receipts;
use crate::delivery::recorder::{AttemptRecorder, Record, RecordError};
use crate::delivery::render::{self, Rendering};
use crate::delivery::routing::Routes;
use crate::delivery::voice_script;
use crate::domain::verification::Status;
use crate::infra::amqp::{Topology, jittered, json_properties, publish_confirmed};
use crate::infra::consumer::{DeliveryHandler, Disposition, Letter, dead_letter};
use crate::outbox;
use crate::outbox::contract::{DispatchJob, Event, EventKind};
use crate::outbox::relay::{Kick, OutboxRelay};
use crate::store::attempts::{self, Attempt, Claim, Outcome, Recording};
use crate::store::dead_letters::{self, NewLetter};
use crate::store::verifications::{self, Verification};
use crate::telemetry::ReportNow;
use crate::telemetry::catalog;
use crate::telemetry::stats::Stats;

pub struct Dispatcher {
    pub pool: PgPool,
    pub keys: Arc<CodeKeys>,
    pub routes: Arc<Routes>,
    pub topology: Topology,
    pub app_name: String,
    pub relay: Addr<OutboxRelay>,
    /// When the provider says the number cannot receive SMS (a landline), send
    /// the code by voice instead (once per verification).
    pub fallback_to_voice: bool,
    /// How long a consumer holds a job it is delivering; longer than every
    /// provider's timeout together. A holder that dies loses the claim after this.
    pub claim_lease: Duration,
    /// Where providers reach this deployment's HTTP API (`http.public_url`).
    pub public_url: Option<String>,
    /// This process's delivery counts for the operations overview.
    pub stats: Arc<Stats>,
    /// Told when a circuit opens or closes, so every overview sees it at once.
    pub reporter: Option<Recipient<ReportNow>>,
    /// Writes final attempts in batches (group commit).
    pub recorder: Addr<AttemptRecorder>,
}

/// A job given up on: recorded as a dead letter in the transaction of its
/// final attempt, then moved to the dead-letter queue under the same id.
struct GiveUp<'a> {
    kind: Reason,
    reason: &'a str,
    error_kind: Option<ErrorKind>,
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
    Publish(#[from] crate::infra::amqp::PublishError),
    #[error(transparent)]
    Record(#[from] RecordError),
}

enum Delivered {
    Sent(Sent, u128),
    Failed {
        error: ProviderError,
        provider: Option<String>,
    },
    /// No provider delivered it now, and at least one may later. `attempted`:
    /// a provider was called (false when every circuit was open).
    AllRetryable {
        error: ProviderError,
        retry_after: Option<Duration>,
        attempted: bool,
    },
}

impl Dispatcher {
    async fn process(&self, amqp: &lapin::Channel, delivery: &Delivery) -> Result<(), DispatchError> {
        // When the code was asked for: the relay stamps each job with its
        // outbox row's time, and retries keep the stamp.
        let requested_at =
            delivery.properties.timestamp().and_then(|t| DateTime::from_timestamp(i64::try_from(t).ok()?, 0));
        let job: DispatchJob = match serde_json::from_slice(&delivery.data) {
            Ok(job) => job,
            Err(error) => {
                let reason = format!("malformed dispatch job: {error}");
                return Ok(dead_letter(
                    amqp,
                    &self.topology.dead_letters(),
                    delivery,
                    &Letter::of(delivery, Reason::Malformed, &reason),
                )
                .await?);
            }
        };
        // Two copies of one job (a relay republish after a lost confirm, a
        // redelivery after a crash) must not both reach the provider: claim the
        // job and read its verification in one statement.
        let (acquired, v) = verifications::claim_for_dispatch(
            &self.pool,
            job.verification_id,
            job.job_id,
            job.channel,
            self.claim_lease,
        )
        .await?;
        let Some(verifications::ForDispatch { verification: v, branding, refused_by }) = v else {
            let reason = format!("verification {} does not exist", job.verification_id);
            return Ok(dead_letter(
                amqp,
                &self.topology.dead_letters(),
                delivery,
                &Letter::of(delivery, Reason::UnknownVerification, &reason),
            )
            .await?);
        };
        if !acquired {
            let mut conn = self.pool.acquire().await?;
            match attempts::claim_state(&mut conn, job.job_id).await? {
                Claim::Finished => {
                    // A redelivery or a republished copy. A dead letter is sent
                    // again with `verifyd dead-letters replay`, which re-arms it.
                    tracing::info!(job_id = %job.job_id, verification_id = %job.verification_id,
                        "copy of a job that already finished: dropped, not sent again \
                         (to resend a dead letter, replay it: `verifyd dead-letters replay`)");
                    metrics::counter!("verifyd_dispatch_duplicates_total", "channel" => job.channel.as_str())
                        .increment(1);
                    return Ok(());
                }
                Claim::HeldElsewhere => {
                    // Look again after the first retry delay: by then the other copy
                    // has finished, or its holder died and the lease ran out.
                    tracing::debug!(job_id = %job.job_id, "job is being delivered elsewhere; deferred");
                    return self.defer(amqp, &job, 0, delivery).await;
                }
            }
        }
        let now = crate::timestamp::now();
        let status = v.state.effective_status(now);
        if status != Status::Pending {
            // Never deliver a code that can no longer be used.
            let reason = format!("verification is {status}");
            let done = Done { outcome: Outcome::Skipped, error: Some(&reason), requested_at, ..Done::default() };
            self.finish(&job, &v, done, None).await?;
            return Ok(());
        }
        let Ok(code) = self.keys.open(v.id, &v.code_sealed) else {
            let reason = "sealed code does not open: was the encryption key changed?";
            let give_up = GiveUp { kind: Reason::SealedCode, reason, error_kind: None };
            return self.give_up(amqp, delivery, &job, &v, give_up, requested_at).await;
        };
        let brand = branding::resolve(branding, job.channel, &self.app_name);
        let rendering = || Rendering {
            app_name: &brand.app,
            template: brand.template.as_ref(),
            locale: &v.locale,
            code: &code,
            valid_for: (v.state.expires_at - now).to_std().unwrap_or_default(),
            reference: job.job_id.to_string(),
            script_url: match (&self.public_url, job.channel) {
                (Some(base), Channel::Voice) => Some(voice_script::link(&self.keys, base, v.id, v.state.expires_at)),
                _ => None,
            },
        };
        let result = match (job.channel, &v.to) {
            (Channel::Sms, Destination::Phone(to)) => {
                let sms = render::sms(rendering(), to);
                self.try_providers(&job, &v, &refused_by, requested_at, |p| {
                    let sms = sms.clone();
                    async move { p.send_sms(&sms).await }
                })
                .await?
            }
            (Channel::Voice, Destination::Phone(to)) => {
                let call = render::voice(rendering(), to);
                self.try_providers(&job, &v, &refused_by, requested_at, |p| {
                    let call = call.clone();
                    async move { p.place_call(&call).await }
                })
                .await?
            }
            (Channel::Whatsapp, Destination::Phone(to)) => {
                let message = render::whatsapp(rendering(), to);
                self.try_providers(&job, &v, &refused_by, requested_at, |p| {
                    let message = message.clone();
                    async move { p.send_whatsapp(&message).await }
                })
                .await?
            }
            (Channel::Email, Destination::Email(to)) => {
                let email = render::email(rendering(), to);
                self.try_providers(&job, &v, &refused_by, requested_at, |p| {
                    let email = email.clone();
                    async move { p.send_email(&email).await }
                })
                .await?
            }
            (channel, to) => {
                // The edge and the database both refuse such a pair: a job
                // carrying one was not written by verifyd.
                let reason = format!("{channel} cannot reach {}", to.masked());
                let give_up = GiveUp { kind: Reason::Malformed, reason: &reason, error_kind: None };
                return self.give_up(amqp, delivery, &job, &v, give_up, requested_at).await;
            }
        };
        drop(code);

        match result {
            Delivered::Sent(sent, latency) => {
                let latency = i32::try_from(latency).unwrap_or(i32::MAX);
                if let Some(asked) = requested_at {
                    let waited = (crate::timestamp::now() - asked).to_std().unwrap_or_default();
                    metrics::histogram!("verifyd_request_to_accepted_seconds", "channel" => job.channel.as_str())
                        .record(waited.as_secs_f64());
                }
                let done = Done {
                    outcome: Outcome::Sent,
                    provider: Some(sent.provider.as_str()),
                    message_id: Some(sent.message_id.as_str()),
                    latency_ms: Some(latency),
                    requested_at,
                    ..Done::default()
                };
                self.finish(&job, &v, done, None).await?;
                Ok(())
            }
            Delivered::Failed { error, provider } => {
                let landline =
                    matches!(error, ProviderError::Permanent { kind: PermanentKind::ChannelNotSupported, .. });
                let fallback = self.fallback_to_voice && job.channel == Channel::Sms && landline;
                let reason = error.to_string();
                let done = Done {
                    outcome: Outcome::PermanentError,
                    provider: provider.as_deref(),
                    error: Some(&reason),
                    error_kind: Some(error.kind()),
                    requested_at,
                    fallback,
                    ..Done::default()
                };
                self.finish(&job, &v, done, None).await?;
                Ok(())
            }
            Delivered::AllRetryable { retry_after, attempted: false, .. } => {
                // Every provider's circuit is open: nothing was tried, so no retry
                // is spent. Wait about until a circuit lets a trial through; the
                // code's expiry bounds how long the job can wait in all.
                let last = self.topology.retry_delays.len().saturating_sub(1);
                let level = self.level_for(0, retry_after).unwrap_or(last);
                let mut conn = self.pool.acquire().await?;
                attempts::release(&mut conn, job.job_id).await?;
                self.defer(amqp, &job, level, delivery).await?;
                metrics::counter!("verifyd_dispatch_deferred_total", "channel" => job.channel.as_str()).increment(1);
                Ok(())
            }
            Delivered::AllRetryable { error, retry_after, attempted: true } => {
                match self.topology.retry_level(job.retry) {
                    Some(level) => {
                        // Wait at least what a provider asked for (Retry-After): skip
                        // to the first retry queue that long, if there is one.
                        let level = self.level_for(level, retry_after).unwrap_or(level);
                        let mut conn = self.pool.acquire().await?;
                        attempts::release(&mut conn, job.job_id).await?;
                        let next = DispatchJob { retry: u32::try_from(level + 1).unwrap_or(u32::MAX), ..job.clone() };
                        self.defer(amqp, &next, level, delivery).await?;
                        metrics::counter!("verifyd_dispatch_retries_total", "channel" => job.channel.as_str())
                            .increment(1);
                        tracing::warn!(job_id = %job.job_id, verification_id = %v.id, to = %v.to.masked(),
                            retry = next.retry, kind = error.kind().as_str(), %error, "delivery will be retried");
                        Ok(())
                    }
                    None => {
                        let reason = format!("retries exhausted after {} tries: {error}", job.retry + 1);
                        let give_up =
                            GiveUp { kind: Reason::RetriesExhausted, reason: &reason, error_kind: Some(error.kind()) };
                        self.give_up(amqp, delivery, &job, &v, give_up, requested_at).await
                    }
                }
            }
        }
    }

    /// The first retry level from `from` whose delay covers `wait`.
    fn level_for(&self, from: usize, wait: Option<Duration>) -> Option<usize> {
        let wait = wait?;
        (from..self.topology.retry_delays.len()).find(|l| self.topology.retry_delays[*l] >= wait)
    }

    /// Puts a job in the retry queue of `level`. It comes back after that
    /// queue's delay with jitter: a random 50–100 % of it (per-message TTL; the
    /// queue's own TTL bounds it), so jobs that failed together do not all
    /// come back in the same instant.
    async fn defer(
        &self,
        amqp: &lapin::Channel,
        job: &DispatchJob,
        level: usize,
        delivery: &Delivery,
    ) -> Result<(), DispatchError> {
        let body = serde_json::to_vec(job).unwrap_or_default();
        let queue = self.topology.retry_queue(job.channel, level);
        let delay = self.topology.retry_delays.get(level).copied().unwrap_or_default();
        let mut properties = json_properties().with_expiration(jittered(delay).as_millis().to_string().into());
        // The request time travels with the job through its retries.
        if let Some(stamp) = delivery.properties.timestamp() {
            properties = properties.with_timestamp(*stamp);
        }
        publish_confirmed(amqp, "", &queue, &body, properties).await?;
        Ok(())
    }

    /// Tries the providers routed for this destination in order until one
    /// accepts, and records every attempt:
    /// * a provider whose circuit is open is skipped;
    /// * a retryable failure (5xx, 429, timeout) counts against the provider's
    ///   breaker and the next provider is tried;
    /// * a refusal about the destination (invalid number, opted out, landline)
    ///   ends the job: no provider could deliver it;
    /// * any other refusal (the provider's account, geo permissions, filters)
    ///   moves on to the next provider, and that provider is not asked again
    ///   for this job on a retry.
    async fn try_providers<F, Fut>(
        &self,
        job: &DispatchJob,
        v: &Verification,
        refused_before: &[String],
        requested_at: Option<DateTime<Utc>>,
        send: F,
    ) -> Result<Delivered, DispatchError>
    where
        F: Fn(Arc<dyn Provider>) -> Fut,
        Fut: std::future::Future<Output = Result<Sent, ProviderError>>,
    {
        let providers = self.routes.for_destination(job.channel, &v.to);
        // Read with the claim, whatever `retry` says (deferred copies keep it):
        // a provider that refused this job is never asked again.
        let mut retryable = None;
        let mut retry_after: Option<Duration> = None;
        let mut refusal = None;
        let mut attempted = false;
        // Until the first skipped circuit lets a trial through.
        let mut reopens: Option<Duration> = None;
        for provider in providers {
            let name = provider.name();
            if refused_before.iter().any(|p| p == name) {
                continue;
            }
            let breaker = self.routes.breaker(name);
            if let Some(b) = breaker.filter(|b| b.admit(Instant::now()) == Admission::Skip) {
                metrics::counter!("verifyd_provider_skipped_total", "provider" => name.to_owned()).increment(1);
                let wait = b.opens_in(Instant::now());
                reopens = Some(reopens.map_or(wait, |r| r.min(wait)));
                retryable.get_or_insert_with(|| ProviderError::Retryable {
                    provider: name.to_owned(),
                    reason: "circuit open after repeated failures".to_owned(),
                    provider_code: None,
                    retry_after: None,
                });
                continue;
            }
            if let Some(tps) = self.routes.tps(name) {
                match pacing::reserve(&self.pool, name, tps, crate::timestamp::now()).await? {
                    Slot::After(wait) if wait.is_zero() => {}
                    Slot::After(wait) => tokio::time::sleep(wait).await,
                    Slot::Full { frees_in } => {
                        metrics::counter!("verifyd_provider_paced_total", "provider" => name.to_owned()).increment(1);
                        reopens = Some(reopens.map_or(frees_in, |r| r.min(frees_in)));
                        retryable.get_or_insert_with(|| ProviderError::Retryable {
                            provider: name.to_owned(),
                            reason: "provider at its configured rate (providers.tps)".to_owned(),
                            provider_code: None,
                            retry_after: None,
                        });
                        continue;
                    }
                }
            }
            attempted = true;
            let started = Instant::now();
            let result = send(provider.clone()).await;
            let elapsed = started.elapsed();
            let latency = i32::try_from(elapsed.as_millis()).unwrap_or(i32::MAX);
            let error = match result {
                Ok(sent) => {
                    self.called(v, name, job.channel, Ok(()), elapsed);
                    if breaker.is_some_and(|b| b.is_open(Instant::now())) {
                        // A trial went through: the circuit closes.
                        breaker.inspect(|b| b.succeeded());
                        self.circuit_changed(name, "closed");
                    } else {
                        breaker.inspect(|b| b.succeeded());
                    }
                    return Ok(Delivered::Sent(sent, elapsed.as_millis()));
                }
                Err(error) => error,
            };
            self.called(v, name, job.channel, Err(&error), elapsed);
            tracing::warn!(provider = name, kind = error.kind().as_str(), to = %v.to.masked(), job_id = %job.job_id,
                channel = %job.channel, latency_ms = latency, %error, "provider call failed");
            let outcome = match &error {
                ProviderError::Retryable { .. } => {
                    if breaker.is_some_and(|b| b.failed(Instant::now())) {
                        metrics::counter!("verifyd_provider_circuit_opened_total", "provider" => name.to_owned())
                            .increment(1);
                        tracing::warn!(provider = name, "circuit opened: provider skipped for a while");
                        self.circuit_changed(name, "open");
                    }
                    Outcome::RetryableError
                }
                ProviderError::Permanent { kind, .. } => {
                    // The provider answered: it is up.
                    breaker.inspect(|b| b.succeeded());
                    if kind.is_about_the_number() {
                        return Ok(Delivered::Failed { error, provider: Some(name.to_owned()) });
                    }
                    Outcome::Refused
                }
            };
            let mut conn = self.pool.acquire().await?;
            let attempt = Attempt {
                job_id: job.job_id,
                verification_id: v.id,
                tenant_id: v.tenant_id,
                channel: job.channel,
                provider: Some(name),
                provider_message_id: None,
                outcome,
                error: Some(&error.to_string()),
                error_kind: Some(error.kind()),
                latency_ms: Some(latency),
                requested_at,
            };
            attempts::record(&mut conn, &attempt, Vec::new()).await?;
            if outcome == Outcome::Refused {
                refusal = Some((error, name.to_owned()));
            } else {
                retry_after = retry_after.max(error.retry_after());
                retryable = Some(error);
            }
        }
        Ok(match (retryable, refusal) {
            (Some(error), _) if attempted => Delivered::AllRetryable { error, retry_after, attempted },
            (Some(error), _) => Delivered::AllRetryable { error, retry_after: reopens, attempted },
            (None, Some((error, provider))) => Delivered::Failed { error, provider: Some(provider) },
            (None, None) => Delivered::Failed {
                error: ProviderError::Permanent {
                    provider: "verifyd".into(),
                    kind: PermanentKind::Configuration,
                    reason: if refused_before.is_empty() {
                        format!("no provider is configured for {} to {}", job.channel, v.to.masked())
                    } else {
                        "every provider of the route refused this message".to_owned()
                    },
                    provider_code: None,
                },
                provider: None,
            },
        })
    }

    /// One provider call, counted for the overview and the metrics.
    fn called(
        &self,
        v: &Verification,
        provider: &str,
        channel: Channel,
        result: Result<(), &ProviderError>,
        took: Duration,
    ) {
        let kind = result.map_err(ProviderError::kind);
        self.stats.record_call(crate::timestamp::now(), v.tenant_id, provider, channel, kind, took);
        let outcome = match result {
            Ok(()) => "accepted",
            Err(ProviderError::Retryable { .. }) => "retryable_error",
            Err(ProviderError::Permanent { kind, .. }) if kind.is_about_the_number() => "permanent_error",
            Err(ProviderError::Permanent { .. }) => "refused",
        };
        metrics::histogram!("verifyd_provider_latency_seconds", "provider" => provider.to_owned(),
            "channel" => channel.as_str(), "outcome" => outcome)
        .record(took.as_secs_f64());
        if let Err(kind) = kind {
            metrics::counter!("verifyd_provider_errors_total", "provider" => provider.to_owned(), "kind" => kind.as_str())
                .increment(1);
        }
    }

    /// A circuit opened or closed: the gauge now, and every overview at the next report.
    fn circuit_changed(&self, provider: &str, state: &'static str) {
        let value = if state == "open" { 2.0 } else { 0.0 };
        metrics::gauge!("verifyd_provider_circuit_state", "provider" => provider.to_owned()).set(value);
        if let Some(reporter) = &self.reporter {
            reporter.do_send(ReportNow);
        }
    }

    /// Gives up on a job: its final attempt and its dead letter are recorded in
    /// one transaction (with the `delivery_failed` event), then the message moves
    /// to the dead-letter queue under the letter's id.
    async fn give_up(
        &self,
        amqp: &lapin::Channel,
        delivery: &Delivery,
        job: &DispatchJob,
        v: &Verification,
        give_up: GiveUp<'_>,
        requested_at: Option<DateTime<Utc>>,
    ) -> Result<(), DispatchError> {
        // One job has one letter: the same id however often it is given up on.
        let letter_id = Uuid::new_v5(&job.job_id, give_up.kind.as_str().as_bytes());
        let key = letter_id.to_string();
        let queue = self.topology.dispatch_queue(job.channel);
        let content_type = delivery.properties.content_type().as_ref().map(|c| c.as_str().to_owned());
        let letter = NewLetter {
            id: letter_id,
            letter_key: &key,
            tenant_id: Some(v.tenant_id),
            verification_id: Some(v.id),
            job_id: Some(job.job_id),
            channel: Some(job.channel),
            source_queue: &queue,
            kind: give_up.kind,
            reason: give_up.reason,
            body: &delivery.data,
            content_type: content_type.as_deref(),
            dead_lettered_at: crate::timestamp::now(),
            webhook_delivery_id: None,
        };
        let done = Done {
            outcome: Outcome::PermanentError,
            error: Some(give_up.reason),
            error_kind: give_up.error_kind,
            requested_at,
            ..Done::default()
        };
        if !self.finish(job, v, done, Some(&letter)).await? {
            // Another copy of this job reached its final outcome first (a
            // redelivery, a taken-over claim): it is not a dead letter.
            return Ok(());
        }
        let letter = Letter { id: letter_id, kind: give_up.kind, reason: give_up.reason };
        Ok(dead_letter(amqp, &self.topology.dead_letters(), delivery, &letter).await?)
    }

    /// Records the final attempt of a job and announces it atomically. With
    /// `fallback`, the same transaction also queues the code by voice (once per
    /// verification, while it is pending) and the event says so; with a
    /// letter, the job's dead letter is recorded with it. Returns whether this
    /// copy recorded the job's outcome (false: another copy did first).
    async fn finish(
        &self,
        job: &DispatchJob,
        v: &Verification,
        done: Done<'_>,
        letter: Option<&NewLetter<'_>>,
    ) -> Result<bool, DispatchError> {
        let Done { outcome, provider, message_id, error, error_kind, latency_ms, requested_at, fallback } = done;
        let now = crate::timestamp::now();
        let event = match outcome {
            Outcome::Sent => Some(
                v.event(EventKind::Delivered, now)
                    .with("provider", provider.unwrap_or_default())
                    .with("provider_message_id", message_id.unwrap_or_default()),
            ),
            Outcome::PermanentError => {
                Some(v.event(EventKind::DeliveryFailed, now).with("reason", error.unwrap_or_default()))
            }
            Outcome::Skipped | Outcome::RetryableError | Outcome::Refused => None,
        }
        .map(|event| Event { channel: Some(job.channel), ..event });
        let attempt = Attempt {
            job_id: job.job_id,
            verification_id: v.id,
            tenant_id: v.tenant_id,
            channel: job.channel,
            provider,
            provider_message_id: message_id,
            outcome,
            error,
            error_kind,
            latency_ms,
            requested_at,
        };
        let announce =
            |event: Option<&Event>| event.map(|e| outbox::event_rows(e, v.reply.as_ref())).unwrap_or_default();
        let failed = outcome == Outcome::PermanentError;
        let recorded = if fallback || letter.is_some() || failed {
            let mut tx = self.pool.begin().await?;
            let locked = verifications::lock(&mut tx, v.tenant_id, v.id).await?;
            let fell_back = match (fallback, &locked) {
                (true, Some(locked)) => receipts::fall_back_to_voice(&mut tx, locked, now).await?,
                _ => false,
            };
            // This job was the verification's last hope unless a fallback or a
            // newer send (a resend) is on its way: then it ends `failed`.
            let ended = failed
                && !fell_back
                && locked.is_some()
                && verifications::fail_delivery(&mut tx, v.id, job.job_id, now).await?;
            let status_after = match (ended, &locked) {
                (true, _) => Some(Status::Failed),
                (false, Some(locked)) => Some(locked.state.effective_status(now)),
                (false, None) => None,
            };
            let event = event.clone().map(|e| if fell_back { e.with("fallback", Channel::Voice.as_str()) } else { e });
            let event = event.map(|e| match status_after {
                Some(status) if failed => e.status(status.as_str()),
                _ => e,
            });
            let recorded = attempts::record(&mut tx, &attempt, announce(event.as_ref())).await?;
            if recorded {
                if let Some(letter) = letter {
                    dead_letters::insert(&mut tx, letter).await?;
                }
                tx.commit().await?;
            }
            recorded
        } else {
            // The common end, a message sent: written with the other
            // consumers' in one commit, answered once that commit is done.
            let recording = Recording::of(&attempt, announce(event.as_ref()));
            self.recorder.send(Record(recording)).await.map_err(|_| RecordError::Stopped)??
        };
        if !recorded {
            // A redelivered copy of this job finished first.
            return Ok(false);
        }
        if event.is_some() {
            self.relay.do_send(Kick);
            let reported = if outcome == Outcome::Sent { "delivered" } else { "failed" };
            metrics::counter!("verifyd_delivery_reports_total", "channel" => job.channel.as_str(), "outcome" => reported)
                .increment(1);
        }
        let tenant = catalog::tenant_label(&v.tenant_name);
        metrics::counter!("verifyd_dispatch_total", "tenant" => tenant, "channel" => job.channel.as_str(),
            "outcome" => outcome.as_str())
        .increment(1);
        if outcome == Outcome::Sent {
            tracing::info!(job_id = %job.job_id, verification_id = %v.id, to = %v.to.masked(), channel = %job.channel,
                outcome = outcome.as_str(), provider = provider.unwrap_or("-"), "dispatch finished");
        } else {
            tracing::warn!(job_id = %job.job_id, verification_id = %v.id, to = %v.to.masked(), channel = %job.channel,
                outcome = outcome.as_str(), provider = provider.unwrap_or("-"), kind = error_kind.map_or("-", ErrorKind::as_str),
                reason = error.unwrap_or("-"), "dispatch finished without delivering");
        }
        Ok(true)
    }
}

/// What a job's final attempt records.
struct Done<'a> {
    outcome: Outcome,
    provider: Option<&'a str>,
    message_id: Option<&'a str>,
    error: Option<&'a str>,
    error_kind: Option<ErrorKind>,
    latency_ms: Option<i32>,
    requested_at: Option<DateTime<Utc>>,
    fallback: bool,
}

impl Default for Done<'_> {
    fn default() -> Self {
        Done {
            outcome: Outcome::Skipped,
            provider: None,
            message_id: None,
            error: None,
            error_kind: None,
            latency_ms: None,
            requested_at: None,
            fallback: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_all_of_the_delay() {
        let delay = Duration::from_secs(30);
        let samples: Vec<Duration> = (0..1000).map(|_| jittered(delay)).collect();
        assert!(samples.iter().all(|d| *d >= delay / 2 && *d <= delay));
        let distinct: std::collections::HashSet<_> = samples.iter().map(Duration::as_millis).collect();
        assert!(distinct.len() > 100, "jitter spreads retries out");
    }
}
