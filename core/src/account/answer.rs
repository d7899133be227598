//! Answering a challenge, and what passing one gives: the account's recent
//! failures guard (`guard_failures`), the challenge still open
//! (`open_challenge`), the typed answer tried against every factor and code
//! the account has (`check_answer`, `redeem_code`), a wrong answer counted
//! (`wrong_answer`), and a pass recorded with its signed proof (`pass`,
//! `passed_without_challenge` for a code typed outside a challenge). The
//! gate, enrolment and admin changes all answer through here.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use verifyd_providers::domain::Code;

use super::{AccountError, account_event, announce};
use crate::account::proof::{self, Claims};
use crate::account::rules::{GateSettings, Shape};
use crate::codes::backup::BACKUP_CODE_DIGITS;
use crate::codes::keys::CodeKeys;
use crate::codes::recovery::RecoveryCode;
use crate::codes::totp;
use crate::domain::challenge::ChallengeStatus;
use crate::domain::challenge::{AnsweredBy, Purpose};
use crate::domain::factor::FactorKind;
use crate::ids::{AccountId, Tenant, Who};
use crate::limits::{Refusal, Throttled};
use crate::outbox::contract::{Event, EventKind};
use crate::store::audit::{self, Entry};
use crate::store::backup_codes::{self, Kind};
use crate::store::challenges::{self, Challenge};
use crate::store::factors::{self, Factor};
use crate::store::verifications;
use crate::verification::Issuer;
use crate::verification::lifecycle::CheckOutcome;

/// Digits of an authenticator code.
const TOTP_DIGITS: usize = 6;

/// The account a request acts on, and the moment it acts: what each step of
/// answering, proving and sending a code takes.
#[derive(Debug, Clone, Copy)]
pub(super) struct At<'a> {
    pub tenant: &'a Tenant,
    pub account_id: &'a AccountId,
    pub now: DateTime<Utc>,
}

/// What a step-up proof is signed with, and for how long it holds.
#[derive(Clone, Copy)]
pub(super) struct Proofs<'a> {
    pub keys: &'a CodeKeys,
    pub settings: &'a GateSettings,
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
    Err(Throttled::counted(Refusal::WrongAnswers, retry_after.max(std::time::Duration::from_secs(1))).into())
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
pub(super) async fn check_answer(
    tx: &mut PgConnection,
    issuer: &Issuer,
    at: At<'_>,
    c: &Challenge,
    typed: &str,
    only: Option<Uuid>,
    who: &Who,
) -> Result<Option<Answer>, AccountError> {
    let At { tenant, account_id, now } = at;
    let compact: String = typed.chars().filter(|ch| !ch.is_whitespace() && *ch != '-').collect();
    let shape = Shape::of(&compact);
    let allowed = |id: Uuid| only.is_none_or(|o| o == id);
    let active: Vec<Factor> =
        factors::list(&mut *tx, tenant.id, account_id).await?.into_iter().filter(Factor::is_active).collect();

    // The code sent to a phone or an address counts only while it is still a factor.
    if let (Some(vid), Some(fid), Some(digits)) = (c.verification_id, c.sent_factor_id, shape.digits)
        && allowed(fid)
        && let Some(sent_to) = active.iter().find(|f| f.id == fid)
        && digits == usize::from(issuer.policy.code_length.get())
        && let Ok(code) = Code::parse(&compact)
    {
        let checked = issuer.check_in_tx(&mut *tx, tenant.id, vid, &code, now).await?;
        if checked.outcome == CheckOutcome::Approved {
            verifications::mark_factor_recorded(&mut *tx, vid).await?;
            let by = if sent_to.kind == FactorKind::Email { AnsweredBy::Email } else { AnsweredBy::Phone };
            return Ok(Some(Answer { by, factor_id: Some(fid), backup_codes_left: None }));
        }
    }

    if shape.digits == Some(TOTP_DIGITS) {
        for app in active.iter().filter(|f| f.kind == FactorKind::Totp && allowed(f.id)) {
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
        && let Some(left) = redeem_code(&mut *tx, &issuer.keys, Kind::Backup, at, &compact, who).await?
    {
        return Ok(Some(Answer { by: AnsweredBy::BackupCode, factor_id: None, backup_codes_left: Some(left) }));
    }
    if shape.recovery
        && let Ok(code) = RecoveryCode::parse(&compact)
        && redeem_code(&mut *tx, &issuer.keys, Kind::Recovery, at, code.expose(), who).await?.is_some()
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
    at: At<'_>,
    c: &Challenge,
    who: &Who,
) -> Result<i32, AccountError> {
    let At { tenant, account_id, now } = at;
    let attempts = challenges::count_wrong(&mut *tx, c, now).await?;
    if attempts >= c.max_attempts {
        let event = account_event(EventKind::ChallengeFailed, tenant, account_id, now)
            .with("challenge_id", c.id.to_string())
            .with("purpose", c.purpose.as_str())
            .with("attempts", attempts)
            .with("organisation_id", c.organisation_id.as_ref().map(|o| o.as_str()).unwrap_or_default());
        announce(tx, tenant.id, &event, c.organisation_id.as_ref(), who).await?;
        metrics::counter!("verifyd_challenges_failed_total", "purpose" => c.purpose.as_str()).increment(1);
    }
    Ok((c.max_attempts - attempts).max(0))
}

/// Marks the challenge passed, audits it and signs the proof.
pub(super) async fn pass(
    tx: &mut PgConnection,
    proofs: Proofs<'_>,
    at: At<'_>,
    c: &Challenge,
    answer: Answer,
    who: &Who,
) -> Result<Passed, AccountError> {
    let At { tenant, account_id, now } = at;
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
        organisation_id: c.organisation_id.as_ref(),
        action: "challenge.passed",
        who,
        detail,
        at: now,
    };
    audit::record(tx, entry).await?;
    let (proof, claims) = sign(proofs, at, c.id, c.purpose, answer.by, answer.factor_id);
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

fn sign(
    proofs: Proofs<'_>,
    at: At<'_>,
    challenge_id: Uuid,
    purpose: Purpose,
    by: AnsweredBy,
    factor_id: Option<Uuid>,
) -> (String, Claims) {
    let At { tenant, account_id, now } = at;
    let ttl = i64::try_from(proofs.settings.proof_ttl().as_secs()).unwrap_or(300);
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
    (proof::sign(proofs.keys, &claims), claims)
}

/// A correct code typed outside any challenge (confirming a new authenticator)
/// is a fresh second factor too: it is recorded as a passed step-up challenge,
/// and its proof returned.
pub(super) async fn passed_without_challenge(
    tx: &mut PgConnection,
    proofs: Proofs<'_>,
    at: At<'_>,
    by: AnsweredBy,
    factor_id: Option<Uuid>,
) -> Result<(String, Claims), AccountError> {
    let At { tenant, account_id, now } = at;
    let challenge = Challenge {
        id: Uuid::new_v4(),
        tenant_id: tenant.id,
        account_id: account_id.clone(),
        organisation_id: None,
        purpose: Purpose::StepUp,
        status: ChallengeStatus::Pending,
        verification_id: None,
        sent_factor_id: None,
        attempts: 0,
        max_attempts: proofs.settings.max_attempts,
        created_at: now,
        expires_at: now,
    };
    challenges::insert(&mut *tx, &challenge).await?;
    challenges::pass(tx, challenge.id, by, factor_id, now).await?;
    Ok(sign(proofs, at, challenge.id, Purpose::StepUp, by, factor_id))
}

/// Uses one code of a kind, once, in the caller's transaction, and announces it.
/// `None` when the code is not an unused one of the account's current set.
pub(super) async fn redeem_code(
    tx: &mut PgConnection,
    keys: &CodeKeys,
    kind: Kind,
    at: At<'_>,
    secret: &str,
    who: &Who,
) -> Result<Option<i64>, AccountError> {
    let At { tenant, account_id, now } = at;
    let Some(generation) = backup_codes::generation(&mut *tx, kind, tenant.id, account_id).await? else {
        return Ok(None);
    };
    let mac = keys.mac_bytes(generation, secret.as_bytes());
    let Some(remaining) = backup_codes::redeem(&mut *tx, kind, tenant.id, account_id, &mac, now).await? else {
        return Ok(None);
    };
    let event: Event = match kind {
        Kind::Backup => account_event(EventKind::BackupCodeUsed, tenant, account_id, now).with("remaining", remaining),
        Kind::Recovery => account_event(EventKind::RecoveryCodeUsed, tenant, account_id, now),
    };
    announce(tx, tenant.id, &event, None, who).await?;
    Ok(Some(remaining))
}
