//! Changes that need authority: deleting a factor (with that factor's code or a
//! step-up), changing the default factor (step-up), an organisation's policy
//! (turning it off needs the admin's step-up), and an admin's reset of a user.

use actix::prelude::*;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::answer::{At, Proofs, check_answer, guard_failures, open_challenge, pass, wrong_answer};
use super::{AccountError, Deps, account_event, announce, factor_event, has_active_factor, require_step_up};
use crate::account::policy::{self, Change};
use crate::domain::challenge::Purpose;
use crate::domain::policy::TwoFactorPolicy;
use crate::ids::{AccountId, OrganisationId, Tenant, Who};
use crate::outbox;
use crate::outbox::contract::EventKind;
use crate::outbox::relay::{self};
use crate::store::factors::{self, AccountTx, Factor};
use crate::store::{backup_codes, challenges, organisations, verifications};

/// Deletes a factor. No `Debug`: it may hold a code.
#[derive(Message)]
#[rtype(result = "Result<Factor, AccountError>")]
pub struct RemoveFactor {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub factor_id: Uuid,
    /// None: only for a pending factor.
    pub authority: Option<RemovalAuthority>,
    pub who: Who,
    pub now: DateTime<Utc>,
}

/// What allows a factor to be deleted.
pub enum RemovalAuthority {
    /// A fresh step-up proof.
    Proof(String),
    /// A code of the factor itself, answering a step-up challenge opened for
    /// it (for a phone, that is where its code was sent).
    Code { challenge_id: Uuid, code: String },
}

/// Activates a phone verified while the account already had an active factor.
#[derive(Message)]
#[rtype(result = "Result<Factor, AccountError>")]
pub struct ActivateFactor {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub factor_id: Uuid,
    /// Needed while the account has an active factor.
    pub proof: Option<String>,
    pub who: Who,
    pub now: DateTime<Utc>,
}

#[derive(Message)]
#[rtype(result = "Result<Factor, AccountError>")]
pub struct SetDefaultFactor {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub factor_id: Uuid,
    pub proof: String,
    pub who: Who,
    pub now: DateTime<Utc>,
}

/// Sets an organisation's policy. `who.actor` is the admin; turning two-factor
/// off needs that admin's step-up proof.
#[derive(Message)]
#[rtype(result = "Result<Change, AccountError>")]
pub struct SetPolicy {
    pub tenant: Tenant,
    pub organisation_id: OrganisationId,
    pub policy: TwoFactorPolicy,
    pub sso_enabled: Option<bool>,
    pub proof: Option<String>,
    pub who: Who,
    pub now: DateTime<Utc>,
}

/// An admin clears a user's two-factor state: every factor, the backup codes,
/// the recovery code, and the challenges (so earlier proofs stop working).
#[derive(Debug, Message)]
#[rtype(result = "Result<Reset, AccountError>")]
pub struct ResetAccount {
    pub tenant: Tenant,
    pub account_id: AccountId,
    /// Why, as the admin put it (audited, and in the event).
    pub reason: Option<String>,
    /// What makes `who.actor` accountable for it.
    pub authority: ResetAuthority,
    pub who: Who,
    pub now: DateTime<Utc>,
}

/// How the admin who resets a user stands behind it: the service checks the
/// first; the second is on record, with the key that sent it.
#[derive(Debug, Clone)]
pub enum ResetAuthority {
    /// A step-up proof of the admin's own account (`who.actor`): they just
    /// passed their own second factor.
    StepUp(String),
    /// The admin's statement of how the user's identity was checked
    /// (e.g. "ID checked on a video call, ticket 4411"), for an admin
    /// without an account of their own in this tenant.
    Attestation(String),
}

impl ResetAuthority {
    fn kind(&self) -> &'static str {
        match self {
            ResetAuthority::StepUp(_) => "step_up",
            ResetAuthority::Attestation(_) => "attestation",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Reset {
    pub factors_removed: u64,
    pub codes_invalidated: u64,
}

pub(super) async fn remove_factor(deps: Deps, msg: RemoveFactor) -> Result<Factor, AccountError> {
    let Deps { issuer, gate: settings } = deps;
    let now = msg.now;
    let (tenant, account_id) = (&msg.tenant, &msg.account_id);
    let at = At { tenant, account_id, now };
    let mut tx = AccountTx::begin(&issuer.pool, tenant.id, account_id).await?;
    let factor = factors::get(&mut tx, tenant.id, account_id, msg.factor_id).await?.ok_or(AccountError::NotFound)?;
    match msg.authority {
        // A pending factor grants nothing: it is dropped without authority.
        _ if !factor.is_active() => {}
        None => return Err(AccountError::StepUpRequired),
        Some(RemovalAuthority::Proof(proof)) => {
            require_step_up(&mut tx, &issuer.keys, tenant, account_id, Some(&proof), now).await?;
        }
        Some(RemovalAuthority::Code { challenge_id, code }) => {
            let c = open_challenge(&mut tx, tenant, account_id, challenge_id, now).await?;
            if c.purpose != Purpose::StepUp {
                return Err(AccountError::NotFound);
            }
            guard_failures(&mut tx, &settings, tenant, account_id, now).await?;
            let answer = check_answer(&mut tx, &issuer, at, &c, &code, Some(factor.id), &msg.who).await?;
            drop(code);
            let Some(answer) = answer else {
                let attempts_left = wrong_answer(&mut tx, at, &c, &msg.who).await?;
                relay::commit(tx, &issuer.relay).await?;
                return Err(AccountError::WrongCode { attempts_left });
            };
            pass(&mut tx, Proofs { keys: &issuer.keys, settings: &settings }, at, &c, answer, &msg.who).await?;
        }
    }
    let all = factors::list(&mut tx, tenant.id, account_id).await?;
    let last_active = factor.is_active() && all.iter().filter(|f| f.is_active()).count() == 1;
    if last_active
        && organisations::strictest_for_account(&mut tx, tenant.id, account_id).await? == TwoFactorPolicy::Mandatory
    {
        return Err(AccountError::LastFactorMandatory);
    }
    factors::delete(&mut tx, factor.id).await?;
    // Only an active factor was announced (factor.added): a pending one
    // (an authenticator never confirmed, a phone never activated) goes
    // without a word, as an abandoned enrolment does, and it cannot
    // have been the default.
    if factor.is_active() {
        let new_default = factors::ensure_default(&mut tx).await?;
        let event = factor_event(EventKind::FactorRemoved, tenant, account_id, &factor, now)
            .with("factors_left", all.iter().filter(|f| f.is_active() && f.id != factor.id).count());
        announce(&mut tx, tenant.id, &event, None, &msg.who).await?;
        if let Some(new) = new_default.and_then(|id| all.iter().find(|f| f.id == id)) {
            let event = factor_event(EventKind::DefaultFactorChanged, tenant, account_id, new, now)
                .with("because", "the default factor was removed");
            announce(&mut tx, tenant.id, &event, None, &msg.who).await?;
        }
    }
    relay::commit(tx, &issuer.relay).await?;
    tracing::info!(tenant = %tenant.name, factor_id = %factor.id, "factor removed");
    Ok(factor)
}

pub(super) async fn set_default_factor(deps: Deps, msg: SetDefaultFactor) -> Result<Factor, AccountError> {
    let issuer = deps.issuer;
    let now = msg.now;
    let (tenant, account_id) = (&msg.tenant, &msg.account_id);
    let mut tx = AccountTx::begin(&issuer.pool, tenant.id, account_id).await?;
    require_step_up(&mut tx, &issuer.keys, tenant, account_id, Some(&msg.proof), now).await?;
    let factor = factors::set_default(&mut tx, msg.factor_id).await?.ok_or(AccountError::NotFound)?;
    let event = factor_event(EventKind::DefaultFactorChanged, tenant, account_id, &factor, now);
    announce(&mut tx, tenant.id, &event, None, &msg.who).await?;
    relay::commit(tx, &issuer.relay).await?;
    Ok(factor)
}

pub(super) async fn activate_factor(deps: Deps, msg: ActivateFactor) -> Result<Factor, AccountError> {
    let issuer = deps.issuer;
    let now = msg.now;
    let (tenant, account_id) = (&msg.tenant, &msg.account_id);
    let mut tx = AccountTx::begin(&issuer.pool, tenant.id, account_id).await?;
    // Beside an active factor, only someone who passes it may add one.
    if has_active_factor(&mut tx, tenant, account_id).await? {
        require_step_up(&mut tx, &issuer.keys, tenant, account_id, msg.proof.as_deref(), now).await?;
    }
    let mut factor =
        factors::activate(&mut tx, tenant.id, account_id, msg.factor_id).await?.ok_or(AccountError::NotFound)?;
    factor.is_default |= factors::ensure_default(&mut tx).await? == Some(factor.id);
    let event = factor_event(EventKind::FactorAdded, tenant, account_id, &factor, now);
    announce(&mut tx, tenant.id, &event, None, &msg.who).await?;
    relay::commit(tx, &issuer.relay).await?;
    tracing::info!(tenant = %tenant.name, factor_id = %factor.id, "phone factor activated");
    Ok(factor)
}

pub(super) async fn set_policy(deps: Deps, msg: SetPolicy) -> Result<Change, AccountError> {
    let issuer = deps.issuer;
    let now = msg.now;
    let (tenant, org) = (&msg.tenant, &msg.organisation_id);
    let mut tx = issuer.pool.begin().await?;
    organisations::lock(&mut tx, tenant.id, org).await?;
    let before = organisations::settings(&mut tx, tenant.id, org, true).await?;
    let change = policy::change(before, msg.policy, msg.sso_enabled)?;
    if change.turns_off {
        require_step_up(&mut tx, &issuer.keys, tenant, &msg.who.actor, msg.proof.as_deref(), now).await?;
    }
    if change.after == change.before {
        return Ok(change);
    }
    organisations::save(&mut tx, tenant.id, org, change.after, msg.who.actor.as_str(), now).await?;
    let event = account_event(EventKind::PolicyChanged, tenant, &msg.who.actor, now)
        .with("organisation_id", org.as_str())
        .with("policy", change.after.policy.as_str())
        .with("previous_policy", change.before.policy.as_str())
        .with("sso_enabled", change.after.sso_enabled)
        .with("sso_disabled", change.disables_sso);
    announce(&mut tx, tenant.id, &event, Some(org), &msg.who).await?;
    relay::commit(tx, &issuer.relay).await?;
    tracing::info!(tenant = %tenant.name, policy = %change.after.policy, "organisation policy changed");
    Ok(change)
}

pub(super) async fn reset_account(deps: Deps, msg: ResetAccount) -> Result<Reset, AccountError> {
    let issuer = deps.issuer;
    let now = msg.now;
    let (tenant, account_id) = (&msg.tenant, &msg.account_id);
    let mut tx = AccountTx::begin(&issuer.pool, tenant.id, account_id).await?;
    if let ResetAuthority::StepUp(proof) = &msg.authority {
        require_step_up(&mut tx, &issuer.keys, tenant, &msg.who.actor, Some(proof), now).await?;
    }
    challenges::delete_for_account(&mut tx, tenant.id, account_id).await?;
    let factors_removed = factors::delete_all(&mut tx, tenant.id, account_id).await?;
    let codes_invalidated = backup_codes::delete_all(&mut tx, tenant.id, account_id).await?;
    // No code on its way (a challenge, a phone being enrolled) and no
    // approval not yet recorded may bring a factor back after the reset.
    let ended = verifications::end_pending_for_account(&mut tx, tenant.id, account_id, now).await?;
    for v in &ended {
        let event = v
            .event(EventKind::Expired, now)
            .status("expired")
            .with("attempts_left", v.state.attempts_left())
            .with("reason", "account_reset");
        outbox::event(&mut tx, &event, v.reply.as_ref()).await?;
    }
    let mut event = account_event(EventKind::AccountReset, tenant, account_id, now)
        .with("factors_removed", factors_removed)
        .with("codes_invalidated", codes_invalidated)
        .with("by", msg.who.actor.as_str())
        .with("authority", msg.authority.kind());
    if let Some(reason) = &msg.reason {
        event = event.with("reason", reason.clone());
    }
    if let ResetAuthority::Attestation(statement) = &msg.authority {
        event = event.with("attestation", statement.clone());
    }
    announce(&mut tx, tenant.id, &event, None, &msg.who).await?;
    relay::commit(tx, &issuer.relay).await?;
    tracing::info!(tenant = %tenant.name, factors_removed, "account reset by an admin");
    Ok(Reset { factors_removed, codes_invalidated })
}
