//! The login gate and step-up: open a challenge (sending an SMS or voice code
//! when the chosen factor is a phone), send again, and answer it with a code
//! from any active factor, a backup code or the recovery code.

use actix::prelude::*;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Locale};

use super::answer::{At, Passed, Proofs, check_answer, guard_failures, open_challenge, pass, wrong_answer};
use super::{AccountError, Deps};
use crate::abuse::Refused;
use crate::account::rules::{self as rules, Decision};
use crate::domain::challenge::ChallengeStatus;
use crate::domain::challenge::Purpose;
use crate::domain::policy::TwoFactorPolicy;
use crate::ids::{AccountId, OrganisationId, Tenant, Who};
use crate::limits::Throttled;
use crate::outbox::relay;
use crate::store::backup_codes::{self, Kind};
use crate::store::challenges::{self, Challenge};
use crate::store::factors::{self, AccountTx, Factor};
use crate::store::organisations;
use crate::store::{CorruptRow, StoreError, verifications};
use crate::verification::{Issuer, Request, SharedBuckets, VerificationError};

/// "May this user in?" after the backend checked the password (`Login`), or
/// "prove it again" before a restricted action (`StepUp`).
#[derive(Debug, Message)]
#[rtype(result = "Result<LoginOutcome, AccountError>")]
pub struct OpenChallenge {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub purpose: Purpose,
    /// The organisation being logged into; its policy decides a login.
    pub organisation_id: OrganisationId,
    /// The factor to send a code to; the default factor otherwise.
    pub send_to: Option<Uuid>,
    /// Call instead of text (or the other way round) a phone factor.
    pub channel: Option<Channel>,
    pub locale: Locale,
    /// The API key the backend asked with, recorded on the code's verification.
    pub api_key_id: Option<String>,
    pub now: DateTime<Utc>,
}

#[derive(Debug)]
pub enum LoginOutcome {
    Open { policy: TwoFactorPolicy },
    EnrolmentRequired { policy: TwoFactorPolicy, sso_enabled: bool },
    Challenge(Box<ChallengeView>),
}

/// An open challenge as the backend shows it to the person.
#[derive(Debug)]
pub struct ChallengeView {
    pub challenge: Challenge,
    pub policy: Option<TwoFactorPolicy>,
    /// The active factors that can answer it.
    pub factors: Vec<Factor>,
    pub backup_codes_left: i64,
    pub recovery_code: bool,
    pub sent: Option<Sent>,
    /// The code could not be sent now: the limit that was hit.
    pub send_throttled: Option<Throttled>,
    /// Set when the phone may not be sent a code at all (see [`Refused`]).
    pub send_refused: Option<Refused>,
    /// Set when no provider is configured for the factor's own channel (an
    /// email factor on a deployment without `providers.email`, say).
    pub send_unavailable: Option<Channel>,
}

/// Where a code went.
#[derive(Debug, Clone)]
pub struct Sent {
    pub factor_id: Uuid,
    pub verification_id: Uuid,
    pub channel: Channel,
    /// Masked: the last two digits.
    pub to: String,
    pub sends: i32,
}

/// Sends the code again (the same code while its verification is pending), or
/// to another phone factor, or by the other channel.
#[derive(Debug, Message)]
#[rtype(result = "Result<Sent, AccountError>")]
pub struct SendAgain {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub challenge_id: Uuid,
    pub factor_id: Option<Uuid>,
    pub channel: Option<Channel>,
    pub locale: Locale,
    /// The API key the backend asked with, recorded on a new code's verification.
    pub api_key_id: Option<String>,
    pub now: DateTime<Utc>,
}

/// What the person typed in answer to a challenge. No `Debug`: it holds a code.
#[derive(Message)]
#[rtype(result = "Result<Passed, AccountError>")]
pub struct AnswerChallenge {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub challenge_id: Uuid,
    pub typed: String,
    /// Only this factor may answer (a backup or recovery code then cannot).
    pub factor_id: Option<Uuid>,
    pub who: Who,
    pub now: DateTime<Utc>,
}

pub(super) async fn open(deps: Deps, msg: OpenChallenge) -> Result<LoginOutcome, AccountError> {
    let Deps { issuer, gate: settings } = deps;
    let now = msg.now;
    let (tenant, account_id) = (&msg.tenant, &msg.account_id);
    let at = At { tenant, account_id, now };
    let mut policy = None;
    // The account lock first, as everywhere: a reset or a factor change
    // cannot interleave with the factors read here.
    let mut tx = AccountTx::begin(&issuer.pool, tenant.id, account_id).await?;
    guard_failures(&mut tx, &settings, tenant, account_id, now).await?;
    let active: Vec<Factor> =
        factors::list(&mut tx, tenant.id, account_id).await?.into_iter().filter(Factor::is_active).collect();
    let decision = match msg.purpose {
        Purpose::Login => {
            let org = organisations::settings(&mut tx, tenant.id, &msg.organisation_id, false).await?;
            organisations::record_membership(&mut tx, tenant.id, &msg.organisation_id, account_id, now).await?;
            policy = Some(org.policy);
            match rules::decide(org.policy, active.len()) {
                Decision::Open => Err(LoginOutcome::Open { policy: org.policy }),
                Decision::EnrolmentRequired => {
                    Err(LoginOutcome::EnrolmentRequired { policy: org.policy, sso_enabled: org.sso_enabled })
                }
                Decision::Challenge => Ok(()),
            }
        }
        Purpose::StepUp if active.is_empty() => return Err(AccountError::NoFactor),
        Purpose::StepUp => Ok(()),
    };
    if let Err(outcome) = decision {
        tx.commit().await?;
        return Ok(outcome);
    }
    let target = match msg.send_to {
        Some(id) => active.iter().find(|f| f.id == id).ok_or(AccountError::NotFound)?,
        None => active.iter().find(|f| f.is_default).unwrap_or(&active[0]),
    };
    let mut challenge = Challenge {
        id: Uuid::new_v4(),
        tenant_id: tenant.id,
        account_id: account_id.clone(),
        organisation_id: Some(msg.organisation_id.clone()),
        purpose: msg.purpose,
        status: ChallengeStatus::Pending,
        verification_id: None,
        sent_factor_id: None,
        attempts: 0,
        max_attempts: settings.max_attempts,
        created_at: now,
        expires_at: now + settings.challenge_ttl(),
    };
    let mut send_throttled = None;
    let mut send_refused = None;
    let mut send_unavailable = None;
    let sent = if target.receives_codes() {
        let key = msg.api_key_id.clone();
        match send_code(&mut tx, &issuer, at, target, msg.channel, &msg.locale, key).await {
            Ok(sent) => {
                challenge.verification_id = Some(sent.verification_id);
                challenge.sent_factor_id = Some(target.id);
                Some(sent)
            }
            // No code now (too many sent to this phone or account): the
            // challenge still opens, for another factor, a backup or
            // recovery code, or a send once the limit allows.
            Err(AccountError::Verification(VerificationError::Throttled(t))) => {
                send_throttled = Some(t);
                None
            }
            // No code to this phone at all (geo permissions, number
            // type, a pumping block): the login is not bricked either;
            // another factor, a backup or recovery code can answer.
            Err(AccountError::Verification(VerificationError::Refused(r))) => {
                send_refused = Some(r);
                None
            }
            // No provider for the factor's own channel: an operator's matter,
            // and the login is not bricked by it either. A channel the
            // backend asked for that cannot be served is its request's fault.
            Err(AccountError::Verification(VerificationError::ChannelNotServed(channel))) if msg.channel.is_none() => {
                send_unavailable = Some(channel);
                None
            }
            Err(other) => return Err(other),
        }
    } else {
        None
    };
    challenges::insert(&mut tx, &challenge).await?;
    let (backup_codes_left, _) = backup_codes::status(&mut tx, Kind::Backup, tenant.id, account_id).await?;
    let (recovery_left, _) = backup_codes::status(&mut tx, Kind::Recovery, tenant.id, account_id).await?;
    relay::commit_if(tx, &issuer.relay, sent.is_some()).await?;
    metrics::counter!("verifyd_challenges_opened_total", "purpose" => msg.purpose.as_str()).increment(1);
    tracing::info!(tenant = %tenant.name, challenge_id = %challenge.id, purpose = msg.purpose.as_str(),
        sent = sent.is_some(), "challenge opened");
    Ok(LoginOutcome::Challenge(Box::new(ChallengeView {
        challenge,
        policy,
        factors: active,
        backup_codes_left,
        recovery_code: recovery_left > 0,
        sent,
        send_throttled,
        send_refused,
        send_unavailable,
    })))
}

pub(super) async fn send_again(deps: Deps, msg: SendAgain) -> Result<Sent, AccountError> {
    let issuer = deps.issuer;
    let now = msg.now;
    let (tenant, account_id) = (&msg.tenant, &msg.account_id);
    let at = At { tenant, account_id, now };
    let mut tx = AccountTx::begin(&issuer.pool, tenant.id, account_id).await?;
    let c = open_challenge(&mut tx, tenant, account_id, msg.challenge_id, now).await?;
    let target_id = msg.factor_id.or(c.sent_factor_id);
    let active: Vec<Factor> =
        factors::list(&mut tx, tenant.id, account_id).await?.into_iter().filter(Factor::is_active).collect();
    let target = match target_id {
        Some(id) => active.iter().find(|f| f.id == id),
        None => {
            active.iter().find(|f| f.is_default && f.receives_codes()).or(active.iter().find(|f| f.receives_codes()))
        }
    }
    .filter(|f| f.receives_codes())
    .ok_or(AccountError::NotFound)?;
    let same_code = c.verification_id.filter(|_| c.sent_factor_id == Some(target.id));
    let sent = match same_code {
        Some(vid) => {
            match issuer.resend_in_tx(&mut tx, tenant.id, vid, msg.channel, now, SharedBuckets::InTx).await {
                Ok(resent) => Some(Sent {
                    factor_id: target.id,
                    verification_id: resent.verification.id,
                    channel: resent.channel,
                    to: resent.verification.to.masked(),
                    sends: resent.verification.state.sends,
                }),
                // Its code is spent (expired, too many tries): a new one follows.
                Err(VerificationError::NotPending(_)) => None,
                Err(other) => return Err(other.into()),
            }
        }
        None => None,
    };
    let sent = match sent {
        Some(sent) => sent,
        None => {
            let key = msg.api_key_id.clone();
            let sent = send_code(&mut tx, &issuer, at, target, msg.channel, &msg.locale, key).await?;
            challenges::set_sent(&mut tx, c.id, sent.verification_id, target.id).await?;
            sent
        }
    };
    relay::commit(tx, &issuer.relay).await?;
    tracing::info!(tenant = %tenant.name, challenge_id = %c.id, channel = %sent.channel, "challenge code sent");
    Ok(sent)
}

pub(super) async fn answer_challenge(deps: Deps, msg: AnswerChallenge) -> Result<Passed, AccountError> {
    let Deps { issuer, gate: settings } = deps;
    let now = msg.now;
    let (tenant, account_id) = (&msg.tenant, &msg.account_id);
    let at = At { tenant, account_id, now };
    // Locks in one order everywhere: the account, then the challenge,
    // then the factor or code rows.
    let mut tx = AccountTx::begin(&issuer.pool, tenant.id, account_id).await?;
    let c = match open_challenge(&mut tx, tenant, account_id, msg.challenge_id, now).await {
        Err(AccountError::ChallengeClosed(ChallengeStatus::Expired)) => {
            // Keep the expiry that open_challenge wrote.
            tx.commit().await?;
            return Err(AccountError::ChallengeClosed(ChallengeStatus::Expired));
        }
        other => other?,
    };
    guard_failures(&mut tx, &settings, tenant, account_id, now).await?;
    let answer = check_answer(&mut tx, &issuer, at, &c, &msg.typed, msg.factor_id, &msg.who).await?;
    drop(msg.typed);
    let Some(answer) = answer else {
        let attempts_left = wrong_answer(&mut tx, at, &c, &msg.who).await?;
        relay::commit(tx, &issuer.relay).await?;
        return Err(AccountError::WrongCode { attempts_left });
    };
    let passed = pass(&mut tx, Proofs { keys: &issuer.keys, settings: &settings }, at, &c, answer, &msg.who).await?;
    relay::commit(tx, &issuer.relay).await?;
    metrics::counter!("verifyd_challenges_passed_total", "answered_by" => passed.answered_by.as_str()).increment(1);
    tracing::info!(tenant = %tenant.name, challenge_id = %c.id, answered_by = %passed.answered_by,
        "challenge passed");
    Ok(passed)
}

/// Issues a verification to a phone factor inside the caller's transaction.
async fn send_code(
    tx: &mut PgConnection,
    issuer: &Issuer,
    at: At<'_>,
    factor: &Factor,
    channel: Option<Channel>,
    locale: &Locale,
    api_key_id: Option<String>,
) -> Result<Sent, AccountError> {
    let At { tenant, account_id, now } = at;
    let corrupt = |reason: String| {
        AccountError::Store(StoreError::Corrupt(CorruptRow { table: "factors", id: factor.id.to_string(), reason }))
    };
    let to = factor
        .destination()
        .ok_or_else(|| corrupt(format!("a {} factor receives no code", factor.kind)))?
        .map_err(|e| corrupt(e.to_string()))?;
    let channel = match channel {
        Some(c) => c,
        None => factor.kind.channel().ok_or_else(|| corrupt(format!("a {} factor has no channel", factor.kind)))?,
    };
    issuer.admit(&crate::limits::Send { tenant_id: tenant.id, to: &to, account: account_id, ip: None }).await?;
    let request = Request {
        account_id: account_id.clone(),
        to,
        channel,
        locale: locale.clone(),
        code_length: None,
        idempotency_key: None,
        end_user_ip: None,
        api_key_id,
    };
    // A savepoint: a refusal after the verification's rows were written (the
    // abuse checks, the tenant's shared limits) undoes them and leaves the
    // challenge's transaction usable.
    let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
    let issued = issuer.issue_in_tx(&mut savepoint, tenant, request, None, now, SharedBuckets::InTx).await;
    let v = match issued {
        Ok(Some(v)) => {
            // A challenge's code proves a factor the account has: its approval
            // records none, however it is checked (see `record_phone`).
            verifications::mark_factor_recorded(&mut savepoint, v.id).await?;
            savepoint.commit().await?;
            v
        }
        Ok(None) => return Err(corrupt("a verification without idempotency key was not stored".into())),
        Err(e) => {
            savepoint.rollback().await?;
            return Err(e.into());
        }
    };
    Ok(Sent { factor_id: factor.id, verification_id: v.id, channel, to: v.to.masked(), sends: v.state.sends })
}
