//! The code issuer: what issuing, resending and checking a code takes, inside
//! the caller's transaction (the limits, the abuse checks, the rows and the
//! outbox messages). The verification service uses it, and so does the login
//! gate, which issues and checks codes inside its own transactions.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Code, CodeLength};

use crate::abuse::{Abuse, Outgoing, Sending};
use crate::codes::keys::CodeKeys;
use crate::domain::verification::{State, Status};
use crate::ids::{ReplyTo, Tenant};
use crate::limits::lockout;
use crate::limits::{self, Limiters, Limits, Refusal, SharedLeases, Throttled};
use crate::outbox;
use crate::outbox::contract::{DispatchJob, EventKind};
use crate::outbox::relay::OutboxRelay;
use crate::store::verifications::{self as store, NewVerification, Verification};
use crate::telemetry::catalog;
use crate::telemetry::stats::Stats;
use crate::verification::lifecycle::{CheckOutcome, ResendPolicy, ResendRefusal};

use super::lifecycle;
use super::{Checked, Request, Resent, VerificationError};

#[derive(Debug, Clone)]
pub struct Policy {
    pub app_name: String,
    pub code_length: CodeLength,
    pub ttl: Duration,
    pub max_attempts: i32,
    pub resend: ResendPolicy,
}

/// What issuing and checking a code needs. The verification actor uses it, and
/// so does the login gate (account state), which issues and checks codes inside
/// its own transactions.
pub struct Issuer {
    pub pool: PgPool,
    pub keys: Arc<CodeKeys>,
    pub policy: Policy,
    pub limits: Limits,
    /// The in-process layer of the limits, shared by every shard.
    pub limiters: Arc<Limiters>,
    /// Cells of the shared buckets taken ahead (`limits/lease.rs`).
    pub leases: Arc<SharedLeases>,
    pub relay: Addr<OutboxRelay>,
    pub abuse: Arc<Abuse>,
    /// Conversion counts for the operations overview.
    pub stats: Arc<Stats>,
    /// The channels some provider is configured for: a code by any other is
    /// refused before anything is stored.
    pub served: Vec<Channel>,
}

/// Where a send's shared buckets (its country's, its tenant's) are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedBuckets {
    /// Already, before the transaction ([`Issuer::take_shared`]).
    Taken,
    /// Inside the transaction, last (a caller that holds a transaction open
    /// already must not wait for a second connection).
    InTx,
}

impl Issuer {
    /// Takes the send's shared buckets in PostgreSQL before its transaction,
    /// so their rows are not locked for all of it. `Ok(buckets)` to hand to
    /// [`Issuer::give_back`] if the send does not happen.
    pub async fn take_shared(
        &self,
        send: &limits::Send<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<limits::Bucket>, VerificationError> {
        let (_, shared) = limits::split_shared(self.limits.send_buckets(send));
        self.leases.take(&self.pool, &shared, now).await??;
        Ok(shared)
    }

    /// Hands back what [`Issuer::take_shared`] took for a send that did not
    /// happen. Best effort: a failure only leaves the limit a cell stricter.
    pub async fn give_back(&self, shared: &[limits::Bucket], now: DateTime<Utc>) {
        if let Err(e) = self.leases.give_back(&self.pool, shared, now).await {
            tracing::warn!(error = %e, "could not hand back a refused send's shared throttle cells");
        }
    }

    /// The in-process throttle's answer (no database round trip); the limits are
    /// enforced again, across processes, inside `issue_in_tx`.
    pub async fn admit(&self, send: &limits::Send<'_>) -> Result<(), VerificationError> {
        Ok(self.limiters.admit(&self.limits.send_buckets(send))?)
    }

    /// Inside the caller's transaction: enforce the send limits, store a new
    /// verification with its code protected, and queue its delivery and the
    /// `verification.created` event. `None` when the request's idempotency key
    /// was taken meanwhile (the transaction must then be rolled back).
    pub async fn issue_in_tx(
        &self,
        tx: &mut PgConnection,
        tenant: &Tenant,
        request: Request,
        reply: Option<ReplyTo>,
        now: DateTime<Utc>,
        shared_buckets: SharedBuckets,
    ) -> Result<Option<Verification>, VerificationError> {
        if request.channel.destination() != request.to.kind() {
            return Err(VerificationError::ChannelMismatch(request.channel));
        }
        if !self.served.contains(&request.channel) {
            return Err(VerificationError::ChannelNotServed(request.channel));
        }
        let policy = &self.policy;
        let id = Uuid::new_v4();
        let job_id = Uuid::new_v4();
        let code_length = request.code_length.unwrap_or(policy.code_length);
        let code = Code::generate(code_length);
        let code_mac = self.keys.mac(id, &code);
        let code_sealed = self.keys.seal(id, &code);
        drop(code);
        let expires_at = now + policy.ttl;
        let send = limits::Send {
            tenant_id: tenant.id,
            to: &request.to,
            account: &request.account_id,
            ip: request.end_user_ip,
        };
        // The destination's, account's and IP's buckets first; the ones every send of
        // the tenant shares (its country's, its own) last: their rows stay
        // locked until the commit, so they are taken as late as possible. An
        // error after a write leaves the transaction to be rolled back.
        let (own, shared) = limits::split_shared(self.limits.send_buckets(&send));
        limits::enforce_in_tx(&mut *tx, &own, now).await??;
        let inserted = store::insert(
            &mut *tx,
            &NewVerification {
                id,
                tenant_id: tenant.id,
                account_id: &request.account_id,
                to: &request.to,
                channel: request.channel,
                locale: &request.locale,
                code_mac: &code_mac,
                code_sealed: &code_sealed,
                code_length: code_length.get(),
                max_attempts: policy.max_attempts,
                idempotency_key: request.idempotency_key.as_deref(),
                reply: reply.as_ref(),
                api_key_id: request.api_key_id.as_deref(),
                delivery_job_id: job_id,
                now,
                expires_at,
            },
        )
        .await?;
        if !inserted {
            return Ok(None);
        }
        let verification = Verification {
            id,
            tenant_id: tenant.id,
            tenant_name: tenant.name.clone(),
            account_id: request.account_id,
            to: request.to,
            channel: request.channel,
            locale: request.locale,
            state: State {
                status: Status::Pending,
                attempts: 0,
                max_attempts: policy.max_attempts,
                sends: 1,
                expires_at,
                last_sent_at: now,
            },
            code_mac,
            code_sealed,
            reply,
            created_at: now,
            completed_at: None,
            api_key_id: request.api_key_id,
            delivery_job_id: Some(job_id),
        };
        let job = DispatchJob { job_id, verification_id: id, channel: verification.channel, retry: 0 };
        let event = verification
            .event(EventKind::Created, now)
            .status(Status::Pending.as_str())
            .with("expires_at", crate::timestamp::format(expires_at));
        let mut rows = vec![outbox::dispatch_row(&job)];
        rows.extend(outbox::event_rows(&event, verification.reply.as_ref()));
        outbox::put(&mut *tx, &rows).await?;
        if shared_buckets == SharedBuckets::InTx {
            limits::enforce_in_tx(&mut *tx, &shared, now).await??;
        }
        // Last: a send the guard counts (in its batched tally) is one that
        // nothing after refuses.
        let (to, channel) = (&verification.to, verification.channel);
        let out = Outgoing { to, channel, sending: Sending::New };
        self.abuse.enforce_in_tx(&mut *tx, tenant.id, &tenant.name, out, now).await??;
        let (tenant, channel) = (catalog::tenant_label(&tenant.name), verification.channel);
        metrics::counter!("verifyd_verifications_created_total", "tenant" => tenant, "channel" => channel.as_str())
            .increment(1);
        self.stats.record_started(now, verification.tenant_id, channel, verification.to.country());
        Ok(Some(verification))
    }

    /// Inside the caller's transaction: send the same code again if the resend
    /// rules and the send limits allow it. Another `channel` applies to this
    /// send only: the verification keeps its own, and so does the factor an
    /// approval makes of it.
    pub async fn resend_in_tx(
        &self,
        tx: &mut PgConnection,
        tenant_id: Uuid,
        id: Uuid,
        channel: Option<Channel>,
        now: DateTime<Utc>,
        shared_buckets: SharedBuckets,
    ) -> Result<Resent, VerificationError> {
        let mut v = store::lock(&mut *tx, tenant_id, id).await?.ok_or(VerificationError::NotFound)?;
        if let Some(asked) = channel.filter(|c| c.destination() != v.to.kind()) {
            return Err(VerificationError::ChannelMismatch(asked));
        }
        if let Some(asked) = channel.filter(|c| !self.served.contains(c)) {
            return Err(VerificationError::ChannelNotServed(asked));
        }
        lifecycle::resend(&v.state, &self.policy.resend, now).map_err(|r| refused(r, &v, now))?;
        let send = limits::Send { tenant_id: v.tenant_id, to: &v.to, account: &v.account_id, ip: None };
        let (own, shared) = limits::split_shared(self.limits.send_buckets(&send));
        limits::enforce_in_tx(&mut *tx, &own, now).await??;
        let channel = channel.unwrap_or(v.channel);
        self.abuse
            .enforce_in_tx(
                &mut *tx,
                v.tenant_id,
                &v.tenant_name,
                Outgoing { to: &v.to, channel, sending: Sending::Again },
                now,
            )
            .await??;
        let job = DispatchJob { job_id: Uuid::new_v4(), verification_id: v.id, channel, retry: 0 };
        store::save_resend(&mut *tx, v.id, &job, now).await?;
        outbox::dispatch(&mut *tx, &job).await?;
        if shared_buckets == SharedBuckets::InTx {
            limits::enforce_in_tx(&mut *tx, &shared, now).await??;
        }
        v.state.sends += 1;
        v.state.last_sent_at = now;
        v.delivery_job_id = Some(job.job_id);
        Ok(Resent { verification: v, channel })
    }

    /// Inside the caller's transaction: compare a typed code with a
    /// verification's, count the attempt and queue the event that announces the
    /// outcome. A verification that is no longer pending is left untouched.
    pub async fn check_in_tx(
        &self,
        tx: &mut PgConnection,
        tenant_id: Uuid,
        id: Uuid,
        code: &Code,
        now: DateTime<Utc>,
    ) -> Result<Checked, VerificationError> {
        let mut v = store::lock(&mut *tx, tenant_id, id).await?.ok_or(VerificationError::NotFound)?;
        // Past its deadline a verification is expired whether or not the sweep
        // has written it: such a check is not throttled either way.
        if v.state.effective_status(now) == Status::Pending {
            // Checks per account, over all its verifications; a refused check
            // rolls back and costs the verification no attempt.
            limits::enforce_in_tx(&mut *tx, &self.limits.check_buckets(v.tenant_id, &v.account_id), now).await??;
            lockout::guard(&mut *tx, &self.limits.lockout, v.tenant_id, &v.account_id, now).await??;
        }
        let matches = self.keys.matches(v.id, code, &v.code_mac);
        let outcome = lifecycle::check(&v.state, matches, now);
        let (attempts, event) = match outcome {
            CheckOutcome::NotPending(_) => return Ok(Checked { verification: v, outcome, proof: None }),
            CheckOutcome::Approved => (v.state.attempts, EventKind::Approved),
            CheckOutcome::Wrong { attempts } => (attempts, EventKind::CheckFailed),
            CheckOutcome::MaxAttemptsReached { attempts } => (attempts, EventKind::MaxAttemptsReached),
            CheckOutcome::Expired => (v.state.attempts, EventKind::Expired),
        };
        let status = outcome.status();
        if matches!(
            outcome,
            CheckOutcome::Approved | CheckOutcome::Wrong { .. } | CheckOutcome::MaxAttemptsReached { .. }
        ) {
            let correct = outcome == CheckOutcome::Approved;
            lockout::record(&mut *tx, &self.limits.lockout, v.tenant_id, &v.account_id, correct, now).await?;
        }
        store::save_check(&mut *tx, v.id, status, attempts, now).await?;
        if outcome == CheckOutcome::Approved {
            self.abuse.record_approval_in_tx(&mut *tx, v.tenant_id, &v.to, v.channel, v.created_at).await?;
            let tenant = catalog::tenant_label(&v.tenant_name);
            metrics::counter!("verifyd_verifications_approved_total", "tenant" => tenant, "channel" => v.channel.as_str())
                .increment(1);
            self.stats.record_approved(now, v.tenant_id, v.channel, v.to.country());
        }
        v.state.status = status;
        v.state.attempts = attempts;
        if status != Status::Pending {
            v.completed_at = Some(now);
        }
        let event = v.event(event, now).status(status.as_str()).with("attempts_left", v.state.attempts_left());
        outbox::event(tx, &event, v.reply.as_ref()).await?;
        metrics::counter!("verifyd_checks_total", "outcome" => status.as_str()).increment(1);
        Ok(Checked { verification: v, outcome, proof: None })
    }
}

pub(super) fn refused(refusal: ResendRefusal, v: &Verification, now: DateTime<Utc>) -> VerificationError {
    match refusal {
        ResendRefusal::NotPending(status) => VerificationError::NotPending(status),
        ResendRefusal::TooSoon { retry_after } => Throttled::counted(Refusal::Verification, retry_after).into(),
        ResendRefusal::TooManySends => {
            // No more sends for this verification: a new one is possible once it ends.
            let retry_after = (v.state.expires_at - now).to_std().unwrap_or_default().max(Duration::from_secs(1));
            Throttled::counted(Refusal::Verification, retry_after).into()
        }
    }
}
