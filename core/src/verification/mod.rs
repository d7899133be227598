//! The verification actor: issues codes, checks them, counts attempts, applies the
//! deadline (the rules themselves are in `lifecycle.rs`). Runs as shards: a
//! create goes to its account's shard, a check, resend or cancel to its
//! verification's, and each shard runs one subject's requests in arrival order.
//! All state is in PostgreSQL and every change is one transaction with the
//! outbox rows that announce it.

pub mod expiry;
pub mod lifecycle;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Code, CodeLength, Locale, PhoneNumber};

use crate::abuse::{Abuse, Outgoing, Refused, Sending};
use crate::codes::keys::CodeKeys;
use crate::ids::{AccountId, ReplyTo, Tenant};
use crate::infra::lanes::{Lanes, Ordered};
use crate::limits::lockout;
use crate::limits::{self, Limiters, Limits, Refusal, Throttled};
use crate::outbox;
use crate::outbox::contract::{DispatchJob, EventKind};
use crate::outbox::relay::{self, OutboxRelay};
use crate::store::StoreError;
use crate::store::verifications::{self as store, NewVerification, Verification};
use crate::telemetry::catalog;
use crate::telemetry::stats::Stats;
use crate::verification::lifecycle::{CheckOutcome, ResendPolicy, ResendRefusal, State, Status};

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
    pub relay: Addr<OutboxRelay>,
    pub abuse: Arc<Abuse>,
    /// Conversion counts for the operations overview.
    pub stats: Arc<Stats>,
}

pub struct Deps {
    pub issuer: Arc<Issuer>,
    /// What the account flow does with an approved phone (wired by the runtime).
    pub approved_phones: Arc<dyn ApprovedPhones>,
}

/// A step-up proof and when it expires.
pub type StepUpProof = (String, DateTime<Utc>);

/// What becomes of a phone whose verification was approved: the account flow
/// records it as a factor and, when it is the account's first, answers a
/// step-up proof and its expiry. The verification flow calls it and does not
/// know the account flow (which depends on this one, for codes).
pub trait ApprovedPhones: Send + Sync {
    fn record<'a>(
        &'a self,
        verification: &'a Verification,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Option<StepUpProof>, String>>;
}

/// One shard of the verification service. It owns the order of its
/// requests: creates for one account, and checks, resends and cancels of one
/// verification, run one after another in arrival order, so they never queue
/// on each other's row locks in PostgreSQL holding a connection; other
/// accounts and verifications run alongside. The work itself is the plain
/// functions below (`create`, `check`, `resend`, `cancel`).
pub struct VerificationActor {
    deps: Arc<Deps>,
    lanes: Lanes<Subject>,
}

/// Whose requests a verification shard keeps in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Account(Uuid, String),
    Verification(Uuid),
}

impl VerificationActor {
    pub fn new(deps: Arc<Deps>) -> Self {
        VerificationActor { deps, lanes: Lanes::default() }
    }
}

impl Ordered for VerificationActor {
    type Lane = Subject;

    fn lanes(&mut self) -> &mut Lanes<Subject> {
        &mut self.lanes
    }
}

impl Actor for VerificationActor {
    type Context = Context<Self>;
}

#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    #[error("verification not found")]
    NotFound,
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("verification is {0}")]
    NotPending(Status),
    #[error("the idempotency key was already used for another phone number or account")]
    IdempotencyConflict,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal mailbox error: {0}")]
    Mailbox(#[from] MailboxError),
}

impl From<sqlx::Error> for VerificationError {
    fn from(e: sqlx::Error) -> Self {
        VerificationError::Store(StoreError::Db(e))
    }
}

/// Start a verification: make a code, store it protected, queue its delivery.
#[derive(Debug, Message)]
#[rtype(result = "Result<Created, VerificationError>")]
pub struct Create {
    pub tenant: Tenant,
    pub request: Request,
    pub reply: Option<ReplyTo>,
    pub now: DateTime<Utc>,
}

/// A verification request parsed into domain types, whichever edge it came in by
/// (HTTP or AMQP).
#[derive(Debug, Clone)]
pub struct Request {
    pub account_id: AccountId,
    pub phone: PhoneNumber,
    pub channel: Channel,
    pub locale: Locale,
    pub code_length: Option<CodeLength>,
    pub idempotency_key: Option<String>,
    /// The end user's address as the backend saw it, for the per-IP limit.
    pub end_user_ip: Option<IpAddr>,
    /// The API key the request came with (HTTP); `None` over AMQP, where the
    /// broker authenticates the backend. Audited with the factor an approval makes.
    pub api_key_id: Option<String>,
}

#[derive(Debug)]
pub struct Created {
    pub verification: Verification,
    /// The idempotency key was used before: this is the earlier verification.
    pub replayed: bool,
}

/// Check what the person typed.
#[derive(Debug, Message)]
#[rtype(result = "Result<Checked, VerificationError>")]
pub struct Check {
    pub tenant: Tenant,
    pub id: Uuid,
    pub code: Code,
    pub now: DateTime<Utc>,
}

#[derive(Debug)]
pub struct Checked {
    pub verification: Verification,
    pub outcome: CheckOutcome,
    /// A step-up proof and its expiry, when this approval made the phone the
    /// account's first factor (see `account::PhoneRecorded`).
    pub proof: Option<(String, DateTime<Utc>)>,
}

/// Send the same code again, optionally by another channel (for this send only).
#[derive(Debug, Message)]
#[rtype(result = "Result<Resent, VerificationError>")]
pub struct Resend {
    pub tenant: Tenant,
    pub id: Uuid,
    pub channel: Option<Channel>,
    pub now: DateTime<Utc>,
}

/// A send of the same code again.
#[derive(Debug)]
pub struct Resent {
    /// The verification, its own channel unchanged.
    pub verification: Verification,
    /// The channel this send goes by: the one asked for, else the verification's.
    pub channel: Channel,
}

/// Call a pending verification off: its code can no longer be used, and
/// dispatch drops its queued deliveries when it reaches them.
#[derive(Debug, Message)]
#[rtype(result = "Result<Verification, VerificationError>")]
pub struct Cancel {
    pub tenant: Tenant,
    pub id: Uuid,
    pub now: DateTime<Utc>,
}

impl Handler<Cancel> for VerificationActor {
    type Result = ResponseActFuture<Self, Result<Verification, VerificationError>>;

    fn handle(&mut self, msg: Cancel, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.in_order(Subject::Verification(msg.id), async move { cancel(&deps, msg).await })
    }
}

impl Handler<Create> for VerificationActor {
    type Result = ResponseActFuture<Self, Result<Created, VerificationError>>;

    fn handle(&mut self, msg: Create, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.in_order(Subject::Account(msg.tenant.id, msg.request.account_id.as_str().to_owned()), async move {
            create(&deps, msg).await
        })
    }
}

impl Handler<Check> for VerificationActor {
    type Result = ResponseActFuture<Self, Result<Checked, VerificationError>>;

    fn handle(&mut self, msg: Check, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.in_order(Subject::Verification(msg.id), async move { check(&deps, msg).await })
    }
}

impl Handler<Resend> for VerificationActor {
    type Result = ResponseActFuture<Self, Result<Resent, VerificationError>>;

    fn handle(&mut self, msg: Resend, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.in_order(Subject::Verification(msg.id), async move { resend(&deps, msg).await })
    }
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
        limits::take_alone(&self.pool, &shared, now).await??;
        Ok(shared)
    }

    /// Hands back what [`Issuer::take_shared`] took for a send that did not
    /// happen. Best effort: a failure only leaves the limit a cell stricter.
    pub async fn give_back(&self, shared: &[limits::Bucket], now: DateTime<Utc>) {
        if let Err(e) = limits::give_back(&self.pool, shared, now).await {
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
            phone: &request.phone,
            account: &request.account_id,
            ip: request.end_user_ip,
        };
        // The phone's, account's and IP's buckets first; the ones every send of
        // the tenant shares (its country's, its own) and the pumping counts
        // last: their rows stay locked until the commit, so they are taken as
        // late as possible. An error after a write leaves the transaction to
        // be rolled back.
        let (own, shared) = limits::split_shared(self.limits.send_buckets(&send));
        limits::enforce_in_tx(&mut *tx, &own, now).await??;
        let inserted = store::insert(
            &mut *tx,
            &NewVerification {
                id,
                tenant_id: tenant.id,
                account_id: &request.account_id,
                phone: &request.phone,
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
            phone: request.phone,
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
        let (phone, channel) = (&verification.phone, verification.channel);
        let out = Outgoing { phone, channel, sending: Sending::New };
        self.abuse.enforce_in_tx(&mut *tx, tenant.id, &tenant.name, out, now).await??;
        if shared_buckets == SharedBuckets::InTx {
            limits::enforce_in_tx(&mut *tx, &shared, now).await??;
        }
        let (tenant, channel) = (catalog::tenant_label(&tenant.name), verification.channel);
        metrics::counter!("verifyd_verifications_created_total", "tenant" => tenant, "channel" => channel.as_str())
            .increment(1);
        self.stats.record_started(now, verification.tenant_id, channel, verification.phone.country());
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
        lifecycle::resend(&v.state, &self.policy.resend, now).map_err(|r| refused(r, &v, now))?;
        let send = limits::Send { tenant_id: v.tenant_id, phone: &v.phone, account: &v.account_id, ip: None };
        let (own, shared) = limits::split_shared(self.limits.send_buckets(&send));
        limits::enforce_in_tx(&mut *tx, &own, now).await??;
        let channel = channel.unwrap_or(v.channel);
        self.abuse
            .enforce_in_tx(
                &mut *tx,
                v.tenant_id,
                &v.tenant_name,
                Outgoing { phone: &v.phone, channel, sending: Sending::Again },
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
            self.abuse.record_approval_in_tx(&mut *tx, v.tenant_id, &v.phone, v.created_at).await?;
            let tenant = catalog::tenant_label(&v.tenant_name);
            metrics::counter!("verifyd_verifications_approved_total", "tenant" => tenant, "channel" => v.channel.as_str())
                .increment(1);
            self.stats.record_approved(now, v.tenant_id, v.channel, v.phone.country());
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

/// The answer to a repeated idempotency key: the earlier verification, if the
/// request is the same one (same phone, same account).
fn replay(existing: Verification, msg: &Create) -> Result<Created, VerificationError> {
    if existing.phone.e164() != msg.request.phone.e164() || existing.account_id != msg.request.account_id {
        return Err(VerificationError::IdempotencyConflict);
    }
    Ok(Created { verification: existing, replayed: true })
}

async fn create(deps: &Deps, msg: Create) -> Result<Created, VerificationError> {
    match msg.request.idempotency_key.clone() {
        Some(key) => create_once(deps, msg, &key).await,
        None => create_new(deps, msg).await,
    }
}

/// A request without an idempotency key: the shared buckets are taken before
/// the transaction, so their rows stay locked only briefly.
async fn create_new(deps: &Deps, msg: Create) -> Result<Created, VerificationError> {
    let issuer = &deps.issuer;
    issuer.abuse.precheck(msg.tenant.id, &msg.request.phone, msg.request.channel).await??;
    let send = send_of(&msg);
    issuer.admit(&send).await?;
    let shared = issuer.take_shared(&send, msg.now).await?;
    let issued = async {
        let mut tx = issuer.pool.begin().await?;
        let issued = issuer
            .issue_in_tx(&mut tx, &msg.tenant, msg.request.clone(), msg.reply.clone(), msg.now, SharedBuckets::Taken)
            .await?;
        if issued.is_some() {
            relay::commit(tx, &issuer.relay).await?;
        }
        Ok::<_, VerificationError>(issued)
    }
    .await;
    match issued {
        Ok(Some(verification)) => Ok(announce(verification)),
        // Without a key there is no unique row to lose a race on.
        Ok(None) => {
            issuer.give_back(&shared, msg.now).await;
            Err(VerificationError::NotFound)
        }
        Err(e) => {
            issuer.give_back(&shared, msg.now).await;
            Err(e)
        }
    }
}

/// A request with an idempotency key. The key is locked for the tenant before
/// any limit is spent, so requests that race on one key wait for the first
/// and answer with its verification: they neither send again nor take the
/// phone's send budget (which refused some of them `429` before). The whole
/// send is one transaction on one connection, so a waiter holding a pooled
/// connection can never starve the request it waits for.
async fn create_once(deps: &Deps, msg: Create, key: &str) -> Result<Created, VerificationError> {
    let issuer = &deps.issuer;
    {
        let mut conn = issuer.pool.acquire().await?;
        if let Some(existing) = store::by_idempotency_key(&mut conn, msg.tenant.id, key).await? {
            return replay(existing, &msg);
        }
    }
    issuer.abuse.precheck(msg.tenant.id, &msg.request.phone, msg.request.channel).await??;
    let mut tx = issuer.pool.begin().await?;
    store::lock_idempotency_key(&mut tx, msg.tenant.id, key).await?;
    if let Some(existing) = store::by_idempotency_key(&mut tx, msg.tenant.id, key).await? {
        tx.rollback().await?;
        return replay(existing, &msg);
    }
    issuer.admit(&send_of(&msg)).await?;
    let issued = issuer
        .issue_in_tx(&mut tx, &msg.tenant, msg.request.clone(), msg.reply.clone(), msg.now, SharedBuckets::InTx)
        .await?;
    // Under the key's lock nobody else can have inserted it.
    let verification = issued.ok_or(VerificationError::IdempotencyConflict)?;
    relay::commit(tx, &issuer.relay).await?;
    Ok(announce(verification))
}

fn send_of(msg: &Create) -> limits::Send<'_> {
    limits::Send {
        tenant_id: msg.tenant.id,
        phone: &msg.request.phone,
        account: &msg.request.account_id,
        ip: msg.request.end_user_ip,
    }
}

/// After the commit: log the new verification.
fn announce(verification: Verification) -> Created {
    tracing::info!(verification_id = %verification.id, tenant = %verification.tenant_name,
        to = %verification.phone.masked(), channel = %verification.channel, "verification created");
    Created { verification, replayed: false }
}

async fn cancel(deps: &Deps, msg: Cancel) -> Result<Verification, VerificationError> {
    let issuer = &deps.issuer;
    let mut tx = issuer.pool.begin().await?;
    let mut v = store::lock(&mut tx, msg.tenant.id, msg.id).await?.ok_or(VerificationError::NotFound)?;
    // Judged by the deadline, as a check is: past it, the answer is `expired`.
    let status = v.state.effective_status(msg.now);
    if status != Status::Pending {
        tx.rollback().await?;
        return Err(VerificationError::NotPending(status));
    }
    store::save_check(&mut tx, v.id, Status::Canceled, v.state.attempts, msg.now).await?;
    v.state.status = Status::Canceled;
    v.completed_at = Some(msg.now);
    let event = v
        .event(EventKind::Canceled, msg.now)
        .status(Status::Canceled.as_str())
        .with("attempts_left", v.state.attempts_left());
    outbox::event(&mut tx, &event, v.reply.as_ref()).await?;
    relay::commit(tx, &issuer.relay).await?;
    tracing::info!(verification_id = %v.id, tenant = %v.tenant_name, "verification canceled");
    Ok(v)
}

async fn check(deps: &Deps, msg: Check) -> Result<Checked, VerificationError> {
    let issuer = &deps.issuer;
    let mut tx = issuer.pool.begin().await?;
    let checked = issuer.check_in_tx(&mut tx, msg.tenant.id, msg.id, &msg.code, msg.now).await?;
    drop(msg.code);
    if let CheckOutcome::NotPending(_) = checked.outcome {
        tx.rollback().await?;
        return Ok(checked);
    }
    relay::commit(tx, &issuer.relay).await?;
    let Checked { verification: v, outcome, .. } = checked;
    tracing::info!(verification_id = %v.id, tenant = %v.tenant_name, status = %v.state.status, "verification checked");

    if outcome == CheckOutcome::Approved {
        // The check answers after the factor is recorded, so a backend that reads
        // the account right after "approved" sees the phone. Should this process
        // die first, account state's reconcile pass records it later.
        match deps.approved_phones.record(&v, msg.now).await {
            Ok(proof) => return Ok(Checked { verification: v, outcome, proof }),
            Err(error) => tracing::warn!(verification_id = %v.id, %error, "factor not recorded yet; reconcile will"),
        }
    }
    Ok(Checked { verification: v, outcome, proof: None })
}

fn refused(refusal: ResendRefusal, v: &Verification, now: DateTime<Utc>) -> VerificationError {
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

async fn resend(deps: &Deps, msg: Resend) -> Result<Resent, VerificationError> {
    let issuer = &deps.issuer;
    // Refuse cheaply without a lock, then ask the throttle, then decide under the lock.
    let v = store::get(&issuer.pool, msg.tenant.id, msg.id).await?.ok_or(VerificationError::NotFound)?;
    lifecycle::resend(&v.state, &issuer.policy.resend, msg.now).map_err(|r| refused(r, &v, msg.now))?;
    issuer.abuse.precheck(msg.tenant.id, &v.phone, msg.channel.unwrap_or(v.channel)).await??;
    issuer.admit(&limits::Send { tenant_id: msg.tenant.id, phone: &v.phone, account: &v.account_id, ip: None }).await?;
    let shared = issuer
        .take_shared(
            &limits::Send { tenant_id: v.tenant_id, phone: &v.phone, account: &v.account_id, ip: None },
            msg.now,
        )
        .await?;
    let resent = async {
        let mut tx = issuer.pool.begin().await?;
        let v = issuer.resend_in_tx(&mut tx, msg.tenant.id, msg.id, msg.channel, msg.now, SharedBuckets::Taken).await?;
        relay::commit(tx, &issuer.relay).await?;
        Ok::<_, VerificationError>(v)
    }
    .await;
    let resent = match resent {
        Ok(resent) => resent,
        Err(e) => {
            issuer.give_back(&shared, msg.now).await;
            return Err(e);
        }
    };
    let (v, channel) = (&resent.verification, resent.channel);
    metrics::counter!("verifyd_resends_total", "channel" => channel.as_str()).increment(1);
    tracing::info!(verification_id = %v.id, tenant = %v.tenant_name, channel = %channel, "verification resent");
    Ok(resent)
}
