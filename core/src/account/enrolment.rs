//! Enrolment: authenticator apps (TOTP), backup codes and the recovery code.
//! Verified phones become factors through `PhoneRecorder` (mod.rs).

use actix::prelude::*;

use super::answer::{At, Proofs};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use verifyd_providers::domain::{Code, CodeLength};

use super::{AccountError, Deps, account_event, announce, answer, factor_event, has_active_factor, require_step_up};
use crate::codes::backup::{BACKUP_CODE_DIGITS, BACKUP_CODES};
use crate::codes::keys::CodeKeys;
use crate::codes::recovery::RecoveryCode;
use crate::codes::totp::{self, Enrolment};
use crate::domain::challenge::AnsweredBy;
use crate::domain::factor::FactorStatus;
use crate::ids::{AccountId, Label, Tenant, Who};
use crate::outbox::contract::EventKind;
use crate::outbox::relay::{self};
use crate::store::backup_codes::{self, Kind};
use crate::store::factors::{self, AccountTx, Factor};

/// Wrong confirmation codes allowed before a pending enrolment is dropped.
const MAX_CONFIRM_ATTEMPTS: i32 = 5;

/// Starts an authenticator-app enrolment: a pending factor and what the person
/// needs to add it to the app. The secret is returned only here.
#[derive(Debug, Message)]
#[rtype(result = "Result<(Factor, Enrolment), AccountError>")]
pub struct EnrolTotp {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub label: Option<Label>,
}

/// The first correct code activates a pending authenticator factor.
#[derive(Message)]
#[rtype(result = "Result<Confirmed, AccountError>")]
pub struct ConfirmTotp {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub factor_id: Uuid,
    pub code: String,
    /// Needed when the account already has an active factor.
    pub proof: Option<String>,
    pub who: Who,
    pub now: DateTime<Utc>,
}

/// An activated factor. When it is the account's first, the correct code just
/// typed counts as a passed step-up, so the proof lets the backend go straight
/// on to backup codes.
pub struct Confirmed {
    pub factor: Factor,
    pub proof: Option<(String, DateTime<Utc>)>,
}

/// A new set of backup codes; the old set stops working. The caller has checked
/// that the person's password was verified just now; an account that already
/// has a factor also needs a step-up proof.
#[derive(Message)]
#[rtype(result = "Result<Vec<Code>, AccountError>")]
pub struct GenerateBackupCodes {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub proof: Option<String>,
    pub who: Who,
    pub now: DateTime<Utc>,
}

/// A new recovery code; the old one stops working. Same authority as backup codes.
#[derive(Message)]
#[rtype(result = "Result<RecoveryCode, AccountError>")]
pub struct GenerateRecoveryCode {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub proof: Option<String>,
    pub who: Who,
    pub now: DateTime<Utc>,
}

pub(super) async fn enrol_totp(deps: Deps, msg: EnrolTotp) -> Result<(Factor, Enrolment), AccountError> {
    let issuer = deps.issuer;
    let id = Uuid::new_v4();
    let secret = totp::new_secret();
    let label = msg.label.as_ref().map_or(msg.account_id.as_str(), Label::as_str);
    // The app shows the tenant's display name, else its slug.
    let shown = crate::delivery::branding::display_name(&issuer.pool, msg.tenant.id).await?;
    let enrolment = totp::enrolment(&secret, shown.as_deref().unwrap_or(&msg.tenant.name), label)?;
    let sealed = issuer.keys.seal_bytes(id, &secret);
    let mut tx = AccountTx::begin(&issuer.pool, msg.tenant.id, &msg.account_id).await?;
    if factors::count(&mut tx, msg.tenant.id, &msg.account_id).await? >= factors::MAX_PER_ACCOUNT {
        return Err(AccountError::TooManyFactors(factors::MAX_PER_ACCOUNT));
    }
    let factor = factors::insert_totp(&mut tx, id, msg.tenant.id, &msg.account_id, msg.label.as_ref(), &sealed).await?;
    tx.commit().await?;
    tracing::info!(tenant = %msg.tenant.name, factor_id = %id, "authenticator enrolment started");
    Ok((factor, enrolment))
}

pub(super) async fn confirm_totp(deps: Deps, msg: ConfirmTotp) -> Result<Confirmed, AccountError> {
    let Deps { issuer, gate: settings } = deps;
    let mut tx = AccountTx::begin(&issuer.pool, msg.tenant.id, &msg.account_id).await?;
    let state = factors::lock_totp(&mut tx, msg.tenant.id, &msg.account_id, msg.factor_id)
        .await?
        .ok_or(AccountError::NotFound)?;
    if state.status == FactorStatus::Active {
        return Err(AccountError::AlreadyActive);
    }
    // A second factor is added only by someone who can pass the first.
    let first = !has_active_factor(&mut tx, &msg.tenant, &msg.account_id).await?;
    if !first {
        let proof = msg.proof.as_deref();
        require_step_up(&mut tx, &issuer.keys, &msg.tenant, &msg.account_id, proof, msg.now).await?;
    }
    let secret = issuer.keys.open_bytes(msg.factor_id, &state.totp_sealed).map_err(|_| AccountError::Sealed)?;
    let unix = u64::try_from(msg.now.timestamp()).unwrap_or_default();
    let Some(step) = totp::accept(&secret, &msg.code, unix, state.totp_last_step) else {
        let attempts = factors::count_wrong_confirmation(&mut tx, msg.factor_id).await?;
        if attempts >= MAX_CONFIRM_ATTEMPTS {
            factors::delete(&mut tx, msg.factor_id).await?;
            tx.commit().await?;
            return Err(AccountError::EnrolmentAbandoned);
        }
        tx.commit().await?;
        return Err(AccountError::WrongCode { attempts_left: MAX_CONFIRM_ATTEMPTS - attempts });
    };
    let mut factor = factors::accept_totp(&mut tx, msg.factor_id, step, msg.now).await?;
    factor.is_default |= factors::ensure_default(&mut tx).await? == Some(factor.id);
    let event = factor_event(EventKind::FactorAdded, &msg.tenant, &msg.account_id, &factor, msg.now);
    announce(&mut tx, msg.tenant.id, &event, None, &msg.who).await?;
    let proof = if first {
        let proofs = Proofs { keys: &issuer.keys, settings: &settings };
        let at = At { tenant: &msg.tenant, account_id: &msg.account_id, now: msg.now };
        let (proof, claims) =
            answer::passed_without_challenge(&mut tx, proofs, at, AnsweredBy::Totp, Some(factor.id)).await?;
        Some((proof, claims.expires()))
    } else {
        None
    };
    relay::commit(tx, &issuer.relay).await?;
    tracing::info!(tenant = %msg.tenant.name, factor_id = %factor.id, "authenticator factor active");
    Ok(Confirmed { factor, proof })
}

pub(super) async fn generate_backup_codes(deps: Deps, msg: GenerateBackupCodes) -> Result<Vec<Code>, AccountError> {
    let issuer = deps.issuer;
    let length = CodeLength::new(BACKUP_CODE_DIGITS as u8).unwrap_or_default();
    let mut codes: Vec<Code> = Vec::with_capacity(BACKUP_CODES);
    while codes.len() < BACKUP_CODES {
        let code = Code::generate(length);
        if !codes.iter().any(|c| c.ct_eq(&code)) {
            codes.push(code);
        }
    }
    let secrets: Vec<&str> = codes.iter().map(Code::expose).collect();
    let event = account_event(EventKind::BackupCodesGenerated, &msg.tenant, &msg.account_id, msg.now)
        .with("remaining", BACKUP_CODES);
    // Serialised with resets and other regenerations of this account.
    let mut tx = AccountTx::begin(&issuer.pool, msg.tenant.id, &msg.account_id).await?;
    authorise_new_codes(&mut tx, &issuer.keys, &msg.tenant, &msg.account_id, msg.proof.as_deref(), msg.now).await?;
    replace_codes(&mut tx, &issuer.keys, Kind::Backup, &msg.tenant, &msg.account_id, &secrets, msg.now).await?;
    announce(&mut tx, msg.tenant.id, &event, None, &msg.who).await?;
    relay::commit(tx, &issuer.relay).await?;
    tracing::info!(tenant = %msg.tenant.name, "backup codes generated");
    Ok(codes)
}

pub(super) async fn generate_recovery_code(
    deps: Deps,
    msg: GenerateRecoveryCode,
) -> Result<RecoveryCode, AccountError> {
    let issuer = deps.issuer;
    let code = RecoveryCode::generate();
    let event = account_event(EventKind::RecoveryCodeGenerated, &msg.tenant, &msg.account_id, msg.now);
    // Serialised with resets and other regenerations of this account.
    let mut tx = AccountTx::begin(&issuer.pool, msg.tenant.id, &msg.account_id).await?;
    authorise_new_codes(&mut tx, &issuer.keys, &msg.tenant, &msg.account_id, msg.proof.as_deref(), msg.now).await?;
    let secrets = [code.expose()];
    replace_codes(&mut tx, &issuer.keys, Kind::Recovery, &msg.tenant, &msg.account_id, &secrets, msg.now).await?;
    announce(&mut tx, msg.tenant.id, &event, None, &msg.who).await?;
    relay::commit(tx, &issuer.relay).await?;
    tracing::info!(tenant = %msg.tenant.name, "recovery code generated");
    Ok(code)
}

/// Backup and recovery codes get past the second factor, so an account that has
/// one needs a step-up to make new ones; the fresh password check is the
/// caller's (HTTP) part.
async fn authorise_new_codes(
    tx: &mut PgConnection,
    keys: &CodeKeys,
    tenant: &Tenant,
    account_id: &AccountId,
    proof: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), AccountError> {
    // Codes made before any factor would let whoever knows the password past
    // the factor enrolled later: they are a fallback for a factor, so they
    // come after one.
    if !has_active_factor(&mut *tx, tenant, account_id).await? {
        return Err(AccountError::NoFactor);
    }
    require_step_up(tx, keys, tenant, account_id, proof, now).await?;
    Ok(())
}

/// Stores a new set of one kind, replacing the old set in the same transaction.
async fn replace_codes(
    tx: &mut PgConnection,
    keys: &CodeKeys,
    kind: Kind,
    tenant: &Tenant,
    account_id: &AccountId,
    secrets: &[&str],
    now: DateTime<Utc>,
) -> Result<(), AccountError> {
    let generation = Uuid::new_v4();
    let macs: Vec<Vec<u8>> = secrets.iter().map(|s| keys.mac_bytes(generation, s.as_bytes())).collect();
    backup_codes::replace(tx, kind, tenant.id, account_id, generation, &macs, now).await?;
    Ok(())
}
