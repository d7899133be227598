//! The verification service: create, check, resend and cancel, as plain
//! functions of their message and the shared dependencies. The actor (in
//! `mod.rs`) only orders the calls; nothing here needs a mailbox.

use crate::limits;
use crate::outbox;
use crate::outbox::contract::EventKind;
use crate::outbox::relay;
use crate::store::verifications::{self as store, Verification};

use super::issuer::{SharedBuckets, refused};
use super::lifecycle::{self, CheckOutcome};
use super::{Cancel, Check, Checked, Create, Created, Deps, Resend, Resent, VerificationError};
use crate::domain::verification::Status;

/// The answer to a repeated idempotency key: the earlier verification, if the
/// request is the same one (same destination, same account).
fn replay(existing: Verification, msg: &Create) -> Result<Created, VerificationError> {
    if existing.to != msg.request.to || existing.account_id != msg.request.account_id {
        return Err(VerificationError::IdempotencyConflict);
    }
    Ok(Created { verification: existing, replayed: true })
}

pub(super) async fn create(deps: &Deps, msg: Create) -> Result<Created, VerificationError> {
    match msg.request.idempotency_key.clone() {
        Some(key) => create_once(deps, msg, &key).await,
        None => create_new(deps, msg).await,
    }
}

/// A request without an idempotency key: the shared buckets are taken before
/// the transaction, so their rows stay locked only briefly.
async fn create_new(deps: &Deps, msg: Create) -> Result<Created, VerificationError> {
    let issuer = &deps.issuer;
    issuer.abuse.precheck(msg.tenant.id, &msg.request.to, msg.request.channel).await??;
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
    issuer.abuse.precheck(msg.tenant.id, &msg.request.to, msg.request.channel).await??;
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
        to: &msg.request.to,
        account: &msg.request.account_id,
        ip: msg.request.end_user_ip,
    }
}

/// After the commit: log the new verification.
fn announce(verification: Verification) -> Created {
    tracing::info!(verification_id = %verification.id, tenant = %verification.tenant_name,
        to = %verification.to.masked(), channel = %verification.channel, "verification created");
    Created { verification, replayed: false }
}

pub(super) async fn cancel(deps: &Deps, msg: Cancel) -> Result<Verification, VerificationError> {
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

pub(super) async fn check(deps: &Deps, msg: Check) -> Result<Checked, VerificationError> {
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

pub(super) async fn resend(deps: &Deps, msg: Resend) -> Result<Resent, VerificationError> {
    let issuer = &deps.issuer;
    // Refuse cheaply without a lock, then ask the throttle, then decide under the lock.
    let v = store::get(&issuer.pool, msg.tenant.id, msg.id).await?.ok_or(VerificationError::NotFound)?;
    lifecycle::resend(&v.state, &issuer.policy.resend, msg.now).map_err(|r| refused(r, &v, msg.now))?;
    issuer.abuse.precheck(msg.tenant.id, &v.to, msg.channel.unwrap_or(v.channel)).await??;
    issuer.admit(&limits::Send { tenant_id: msg.tenant.id, to: &v.to, account: &v.account_id, ip: None }).await?;
    let shared = issuer
        .take_shared(&limits::Send { tenant_id: v.tenant_id, to: &v.to, account: &v.account_id, ip: None }, msg.now)
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
