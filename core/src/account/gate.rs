//! The login gate and step-up: open a challenge (sending an SMS or voice code
//! when the chosen factor is a phone), send again, and answer it with a code
//! from any active factor, a backup code or the recovery code.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Code, Locale, PhoneNumber};

use super::enrolment::{BACKUP_CODE_DIGITS, redeem_code};
use super::{AccountError, AccountStateActor, account_event, announce};
use crate::abuse::Refused;
use crate::account::policy::TwoFactorPolicy;
use crate::account::proof::{self, Claims};
use crate::account::rules::{self as rules, AnsweredBy, Decision, GateSettings, Purpose, Shape};
use crate::codes::keys::CodeKeys;
use crate::codes::recovery::RecoveryCode;
use crate::codes::totp;
use crate::delivery::contract::EventKind;
use crate::delivery::relay::Kick;
use crate::ids::{AccountId, Tenant, Who};
use crate::limits::{Scope, Throttled};
use crate::store::audit::{self, Entry};
use crate::store::backup_codes::{self, Kind};
use crate::store::challenges::{self, Challenge, ChallengeStatus};
use crate::store::factors::{self, Factor};
use crate::store::organisations;
use crate::store::{CorruptRow, StoreError, verifications};
use crate::verification::lifecycle::CheckOutcome;
use crate::verification::{Issuer, Request, SharedBuckets, VerificationError, stored_precision};

/// Digits of an authenticator code.
const TOTP_DIGITS: usize = 6;

/// "May this user in?" after the backend checked the password (`Login`), or
/// "prove it again" before a restricted action (`StepUp`).
#[derive(Debug, Message)]
#[rtype(result = "Result<LoginOutcome, AccountError>")]
pub struct OpenChallenge {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub purpose: Purpose,
    /// The organisation being logged into; its policy decides a login.
    pub organisation_id: String,
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

/// A passed challenge and the proof of it.
/// No `Debug`: it holds a credential.
pub struct Passed {
    pub challenge_id: Uuid,
    pub purpose: Purpose,
    pub answered_by: AnsweredBy,
    pub factor_id: Option<Uuid>,
    pub proof: String,
    pub proof_expires_at: DateTime<Utc>,
    /// After a backup code: how many are left.
    pub backup_codes_left: Option<i64>,
}

impl Handler<OpenChallenge> for AccountStateActor {
    type Result = ResponseFuture<Result<LoginOutcome, AccountError>>;

    fn handle(&mut self, msg: OpenChallenge, _: &mut Self::Context) -> Self::Result {
        let (issuer, settings) = (self.issuer.clone(), self.gate);
        Box::pin(async move {
            let now = stored_precision(msg.now);
            let mut tx = issuer.pool.begin().await?;
            let (tenant, account_id) = (&msg.tenant, &msg.account_id);
            let mut policy = None;
            // The account lock first, as everywhere: a reset or a factor change
            // cannot interleave with the factors read here.
            factors::lock_account(&mut tx, tenant.id, account_id).await?;
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
                account_id: account_id.as_str().to_owned(),
                organisation_id: msg.organisation_id.clone(),
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
            let sent = if target.is_phone() {
                let key = msg.api_key_id.clone();
                match send_code(&mut tx, &issuer, tenant, account_id, target, msg.channel, &msg.locale, key, now).await
                {
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
                    Err(other) => return Err(other),
                }
            } else {
                None
            };
            challenges::insert(&mut tx, &challenge).await?;
            let (backup_codes_left, _) = backup_codes::status(&mut tx, Kind::Backup, tenant.id, account_id).await?;
            let (recovery_left, _) = backup_codes::status(&mut tx, Kind::Recovery, tenant.id, account_id).await?;
            tx.commit().await?;
            if sent.is_some() {
                issuer.relay.do_send(Kick);
            }
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
            })))
        })
    }
}

impl Handler<SendAgain> for AccountStateActor {
    type Result = ResponseFuture<Result<Sent, AccountError>>;

    fn handle(&mut self, msg: SendAgain, _: &mut Self::Context) -> Self::Result {
        let issuer = self.issuer.clone();
        Box::pin(async move {
            let now = stored_precision(msg.now);
            let (tenant, account_id) = (&msg.tenant, &msg.account_id);
            let mut tx = issuer.pool.begin().await?;
            factors::lock_account(&mut tx, tenant.id, account_id).await?;
            let c = open_challenge(&mut tx, tenant, account_id, msg.challenge_id, now).await?;
            let target_id = msg.factor_id.or(c.sent_factor_id);
            let active: Vec<Factor> =
                factors::list(&mut tx, tenant.id, account_id).await?.into_iter().filter(Factor::is_active).collect();
            let target = match target_id {
                Some(id) => active.iter().find(|f| f.id == id),
                None => active.iter().find(|f| f.is_default && f.is_phone()).or(active.iter().find(|f| f.is_phone())),
            }
            .filter(|f| f.is_phone())
            .ok_or(AccountError::NotFound)?;
            let same_code = c.verification_id.filter(|_| c.sent_factor_id == Some(target.id));
            let sent = match same_code {
                Some(vid) => {
                    match issuer.resend_in_tx(&mut tx, tenant.id, vid, msg.channel, now, SharedBuckets::InTx).await {
                        Ok(resent) => Some(Sent {
                            factor_id: target.id,
                            verification_id: resent.verification.id,
                            channel: resent.channel,
                            to: resent.verification.phone.masked(),
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
                    let sent =
                        send_code(&mut tx, &issuer, tenant, account_id, target, msg.channel, &msg.locale, key, now)
                            .await?;
                    challenges::set_sent(&mut tx, c.id, sent.verification_id, target.id).await?;
                    sent
                }
            };
            tx.commit().await?;
            issuer.relay.do_send(Kick);
            tracing::info!(tenant = %tenant.name, challenge_id = %c.id, channel = %sent.channel, "challenge code sent");
            Ok(sent)
        })
    }
}

impl Handler<AnswerChallenge> for AccountStateActor {
    type Result = ResponseFuture<Result<Passed, AccountError>>;

    fn handle(&mut self, msg: AnswerChallenge, _: &mut Self::Context) -> Self::Result {
        let (issuer, settings) = (self.issuer.clone(), self.gate);
        Box::pin(async move {
            let now = stored_precision(msg.now);
            let (tenant, account_id) = (&msg.tenant, &msg.account_id);
            let mut tx = issuer.pool.begin().await?;
            // Locks in one order everywhere: the account, then the challenge,
            // then the factor or code rows.
            factors::lock_account(&mut tx, tenant.id, account_id).await?;
            let c = match open_challenge(&mut tx, tenant, account_id, msg.challenge_id, now).await {
                Err(AccountError::ChallengeClosed(ChallengeStatus::Expired)) => {
                    // Keep the expiry that open_challenge wrote.
                    tx.commit().await?;
                    return Err(AccountError::ChallengeClosed(ChallengeStatus::Expired));
                }
                other => other?,
            };
            guard_failures(&mut tx, &settings, tenant, account_id, now).await?;
            let answer =
                check_answer(&mut tx, &issuer, tenant, account_id, &c, &msg.typed, msg.factor_id, &msg.who, now)
                    .await?;
            drop(msg.typed);
            let Some(answer) = answer else {
                let attempts_left = wrong_answer(&mut tx, tenant, account_id, &c, &msg.who, now).await?;
                tx.commit().await?;
                issuer.relay.do_send(Kick);
                return Err(AccountError::WrongCode { attempts_left });
            };
            let passed = pass(&mut tx, &issuer.keys, &settings, tenant, account_id, &c, answer, &msg.who, now).await?;
            tx.commit().await?;
            issuer.relay.do_send(Kick);
            metrics::counter!("verifyd_challenges_passed_total", "answered_by" => passed.answered_by.as_str())
                .increment(1);
            tracing::info!(tenant = %tenant.name, challenge_id = %c.id, answered_by = %passed.answered_by,
                "challenge passed");
            Ok(passed)
        })
    }
}

/// Refuses when the account gave too many wrong answers lately, over all its
/// challenges: the limit holds across processes (it is counted in PostgreSQL).
pub(super) async fn guard_failures(
    tx: &mut PgConnection,
    settings: &GateSettings,
    tenant: &Tenant,
    account_id: &AccountId,
    now: DateTime<Utc>,
) -> Result<(), AccountError> {
    let window = chrono::Duration::from_std(settings.failure_window()).unwrap_or(chrono::Duration::hours(1));
    let (failures, oldest) = challenges::recent_failures(tx, tenant.id, account_id, now - window).await?;
    if failures < settings.max_failures {
        return Ok(());
    }
    let retry_after = oldest.map(|t| (t + window - now).to_std().unwrap_or_default()).unwrap_or_default();
    metrics::counter!("verifyd_throttled_total", "scope" => crate::limits::Scope::WrongAnswers.as_str()).increment(1);
    Err(Throttled { scope: Scope::WrongAnswers, retry_after: retry_after.max(std::time::Duration::from_secs(1)) }
        .into())
}

/// The challenge, locked, if it can still be answered. One past its deadline is
/// marked expired (the caller commits that).
pub(super) async fn open_challenge(
    tx: &mut PgConnection,
    tenant: &Tenant,
    account_id: &AccountId,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Challenge, AccountError> {
    let c = challenges::lock(&mut *tx, tenant.id, account_id, id).await?.ok_or(AccountError::NotFound)?;
    if c.status != ChallengeStatus::Pending {
        return Err(AccountError::ChallengeClosed(c.status));
    }
    if now >= c.expires_at {
        challenges::expire(tx, c.id, now).await?;
        return Err(AccountError::ChallengeClosed(ChallengeStatus::Expired));
    }
    Ok(c)
}

/// Issues a verification to a phone factor inside the caller's transaction.
#[allow(clippy::too_many_arguments)]
async fn send_code(
    tx: &mut PgConnection,
    issuer: &Issuer,
    tenant: &Tenant,
    account_id: &AccountId,
    factor: &Factor,
    channel: Option<Channel>,
    locale: &Locale,
    api_key_id: Option<String>,
    now: DateTime<Utc>,
) -> Result<Sent, AccountError> {
    let corrupt = |reason: String| {
        AccountError::Store(StoreError::Corrupt(CorruptRow { table: "factors", id: factor.id.to_string(), reason }))
    };
    let phone =
        PhoneNumber::from_stored(factor.phone.as_deref().unwrap_or_default()).map_err(|e| corrupt(e.to_string()))?;
    let channel = match channel {
        Some(c) => c,
        None => factor.kind.parse::<Channel>().map_err(|e| corrupt(e.to_string()))?,
    };
    issuer.admit(&crate::limits::Send { tenant_id: tenant.id, phone: &phone, account: account_id, ip: None }).await?;
    let request = Request {
        account_id: account_id.clone(),
        phone,
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
    Ok(Sent { factor_id: factor.id, verification_id: v.id, channel, to: v.phone.masked(), sends: v.state.sends })
}

/// What answered a challenge.
pub(super) struct Answer {
    pub by: AnsweredBy,
    pub factor_id: Option<Uuid>,
    pub backup_codes_left: Option<i64>,
}

/// Tries the typed answer against what the account has, in the caller's
/// transaction: the code sent to a phone, each authenticator app (a time step
/// once accepted is refused again), an unused backup code, the recovery code.
/// With `only` set, only that factor may answer: another factor's code is not
/// even tried (its time step stays unused), and the answer is refused as a
/// wrong one, counting an attempt and saying nothing of where it was valid.
/// Single use holds under concurrency: each candidate is decided under its
/// row lock.
#[allow(clippy::too_many_arguments)]
pub(super) async fn check_answer(
    tx: &mut PgConnection,
    issuer: &Issuer,
    tenant: &Tenant,
    account_id: &AccountId,
    c: &Challenge,
    typed: &str,
    only: Option<Uuid>,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<Option<Answer>, AccountError> {
    let compact: String = typed.chars().filter(|ch| !ch.is_whitespace() && *ch != '-').collect();
    let shape = Shape::of(&compact);
    let allowed = |id: Uuid| only.is_none_or(|o| o == id);
    let active: Vec<Factor> =
        factors::list(&mut *tx, tenant.id, account_id).await?.into_iter().filter(Factor::is_active).collect();

    // The code sent to a phone counts only while that phone is still a factor.
    if let (Some(vid), Some(fid), Some(digits)) = (c.verification_id, c.sent_factor_id, shape.digits)
        && allowed(fid)
        && active.iter().any(|f| f.id == fid)
        && digits == usize::from(issuer.policy.code_length.get())
        && let Ok(code) = Code::parse(&compact)
    {
        let checked = issuer.check_in_tx(&mut *tx, tenant.id, vid, &code, now).await?;
        if checked.outcome == CheckOutcome::Approved {
            verifications::mark_factor_recorded(&mut *tx, vid).await?;
            return Ok(Some(Answer { by: AnsweredBy::Phone, factor_id: Some(fid), backup_codes_left: None }));
        }
    }

    if shape.digits == Some(TOTP_DIGITS) {
        for app in active.iter().filter(|f| f.kind == "totp" && allowed(f.id)) {
            let Some(state) = factors::lock_totp(&mut *tx, tenant.id, account_id, app.id).await? else { continue };
            let secret = issuer.keys.open_bytes(app.id, &state.totp_sealed).map_err(|_| AccountError::Sealed)?;
            let unix = u64::try_from(now.timestamp()).unwrap_or_default();
            if let Some(step) = totp::accept(&secret, &compact, unix, state.totp_last_step) {
                factors::accept_totp(&mut *tx, app.id, step, now).await?;
                return Ok(Some(Answer { by: AnsweredBy::Totp, factor_id: Some(app.id), backup_codes_left: None }));
            }
        }
    }

    if only.is_some() {
        return Ok(None);
    }
    if shape.digits == Some(BACKUP_CODE_DIGITS)
        && let Some(left) =
            redeem_code(&mut *tx, &issuer.keys, Kind::Backup, tenant, account_id, &compact, who, now).await?
    {
        return Ok(Some(Answer { by: AnsweredBy::BackupCode, factor_id: None, backup_codes_left: Some(left) }));
    }
    if shape.recovery
        && let Ok(code) = RecoveryCode::parse(&compact)
        && redeem_code(&mut *tx, &issuer.keys, Kind::Recovery, tenant, account_id, code.expose(), who, now)
            .await?
            .is_some()
    {
        return Ok(Some(Answer { by: AnsweredBy::RecoveryCode, factor_id: None, backup_codes_left: None }));
    }
    Ok(None)
}

/// Counts a wrong answer; the last one allowed fails the challenge and tells
/// the user (an event: someone may be trying their password). Returns the
/// attempts left.
pub(super) async fn wrong_answer(
    tx: &mut PgConnection,
    tenant: &Tenant,
    account_id: &AccountId,
    c: &Challenge,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<i32, AccountError> {
    let attempts = challenges::count_wrong(&mut *tx, c, now).await?;
    if attempts >= c.max_attempts {
        let event = account_event(EventKind::ChallengeFailed, tenant, account_id, now)
            .with("challenge_id", c.id.to_string())
            .with("purpose", c.purpose.as_str())
            .with("attempts", attempts)
            .with("organisation_id", c.organisation_id.clone());
        announce(tx, tenant.id, &event, Some(&c.organisation_id), who).await?;
        metrics::counter!("verifyd_challenges_failed_total", "purpose" => c.purpose.as_str()).increment(1);
    }
    Ok((c.max_attempts - attempts).max(0))
}

/// Marks the challenge passed, audits it and signs the proof.
#[allow(clippy::too_many_arguments)]
pub(super) async fn pass(
    tx: &mut PgConnection,
    keys: &CodeKeys,
    settings: &GateSettings,
    tenant: &Tenant,
    account_id: &AccountId,
    c: &Challenge,
    answer: Answer,
    who: &Who,
    now: DateTime<Utc>,
) -> Result<Passed, AccountError> {
    challenges::pass(&mut *tx, c.id, answer.by, answer.factor_id, now).await?;
    let detail = serde_json::json!({
        "challenge_id": c.id,
        "purpose": c.purpose,
        "answered_by": answer.by,
        "factor_id": answer.factor_id,
    });
    let entry = Entry {
        tenant_id: tenant.id,
        account_id: Some(account_id.as_str()),
        organisation_id: Some(&c.organisation_id),
        action: "challenge.passed",
        who,
        detail,
        at: now,
    };
    audit::record(tx, entry).await?;
    let (proof, claims) = sign(keys, settings, tenant, account_id, c.id, c.purpose, answer.by, answer.factor_id, now);
    Ok(Passed {
        challenge_id: c.id,
        purpose: c.purpose,
        answered_by: answer.by,
        factor_id: answer.factor_id,
        proof,
        proof_expires_at: claims.expires(),
        backup_codes_left: answer.backup_codes_left,
    })
}

#[allow(clippy::too_many_arguments)]
fn sign(
    keys: &CodeKeys,
    settings: &GateSettings,
    tenant: &Tenant,
    account_id: &AccountId,
    challenge_id: Uuid,
    purpose: Purpose,
    by: AnsweredBy,
    factor_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> (String, Claims) {
    let ttl = i64::try_from(settings.proof_ttl().as_secs()).unwrap_or(300);
    let claims = Claims {
        tenant_id: tenant.id,
        account_id: account_id.as_str().to_owned(),
        challenge_id,
        purpose,
        answered_by: by,
        factor_id,
        issued_at: now.timestamp(),
        expires_at: now.timestamp() + ttl,
    };
    (proof::sign(keys, &claims), claims)
}

/// A correct code typed outside any challenge (confirming a new authenticator)
/// is a fresh second factor too: it is recorded as a passed step-up challenge,
/// and its proof returned.
#[allow(clippy::too_many_arguments)]
pub(super) async fn passed_without_challenge(
    tx: &mut PgConnection,
    keys: &CodeKeys,
    settings: &GateSettings,
    tenant: &Tenant,
    account_id: &AccountId,
    by: AnsweredBy,
    factor_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(String, Claims), AccountError> {
    let challenge = Challenge {
        id: Uuid::new_v4(),
        tenant_id: tenant.id,
        account_id: account_id.as_str().to_owned(),
        organisation_id: String::new(),
        purpose: Purpose::StepUp,
        status: ChallengeStatus::Pending,
        verification_id: None,
        sent_factor_id: None,
        attempts: 0,
        max_attempts: settings.max_attempts,
        created_at: now,
        expires_at: now,
    };
    challenges::insert(&mut *tx, &challenge).await?;
    challenges::pass(tx, challenge.id, by, factor_id, now).await?;
    Ok(sign(keys, settings, tenant, account_id, challenge.id, Purpose::StepUp, by, factor_id, now))
}
