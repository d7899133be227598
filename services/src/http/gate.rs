//! The login gate and step-up:
//! `POST /v1/accounts/{account_id}/login` and `/step-up` open a challenge (or
//! answer `open` / `enrolment_required`), `/challenges/{id}/answer` takes a
//! code, `/challenges/{id}/send` sends the code again, and
//! `POST /v1/proofs/verify` tells a backend whether a proof still stands.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use verifyd_actors::account_state::{AnswerChallenge, ChallengeView, LoginOutcome, OpenChallenge, SendAgain, Sent};
use verifyd_actors::gate::Purpose;
use verifyd_actors::ids::AccountId;
use verifyd_actors::proof;
use verifyd_actors::store::challenges;
use verifyd_actors::store::factors::Factor;
use verifyd_providers::domain::{Channel, Locale, PhoneNumber};

use super::auth::Caller;
use super::problem::ApiError;
use super::{AppState, ProofField, account_id, path_id, typed, who};

/// The organisation a login is for when the backend names none.
pub const DEFAULT_ORGANISATION: &str = "default";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/accounts/{account_id}/login").route(web::post().to(login)))
        .service(web::resource("/v1/accounts/{account_id}/step-up").route(web::post().to(step_up)))
        .service(web::resource("/v1/accounts/{account_id}/challenges/{challenge_id}").route(web::get().to(get)))
        .service(
            web::resource("/v1/accounts/{account_id}/challenges/{challenge_id}/answer").route(web::post().to(answer)),
        )
        .service(web::resource("/v1/accounts/{account_id}/challenges/{challenge_id}/send").route(web::post().to(send)))
        .service(web::resource("/v1/proofs/verify").route(web::post().to(verify_proof)));
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    /// Login only: the organisation whose policy applies.
    #[serde(default)]
    organisation_id: Option<String>,
    /// Send the code to this factor rather than the default one.
    #[serde(default)]
    factor_id: Option<Uuid>,
    /// For a phone factor: `sms` or `voice`, whatever the factor's own kind.
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    locale: Option<String>,
}

/// A body may be absent: `{}` is assumed.
fn optional_body<T: serde::de::DeserializeOwned + Default>(bytes: &web::Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedBody(e.to_string()))
}

fn organisation(raw: Option<String>) -> Result<String, ApiError> {
    let org = raw.unwrap_or_else(|| DEFAULT_ORGANISATION.to_owned());
    if org.is_empty() || org.len() > 128 || org.chars().any(char::is_control) {
        return Err(ApiError::field("organisation_id", "must be 1 to 128 printable characters"));
    }
    Ok(org)
}

fn channel(raw: Option<&str>) -> Result<Option<Channel>, ApiError> {
    raw.map(str::parse::<Channel>).transpose().map_err(|e| ApiError::field("channel", e))
}

fn locale(raw: Option<&str>) -> Result<Locale, ApiError> {
    Ok(raw.map(Locale::parse).transpose().map_err(|e| ApiError::field("locale", e))?.unwrap_or_default())
}

/// A factor as a challenge lists it: a phone shows only its last two digits.
#[derive(Debug, Serialize)]
struct FactorChoice {
    id: Uuid,
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    default: bool,
}

impl From<&Factor> for FactorChoice {
    fn from(f: &Factor) -> Self {
        let to = f.phone.as_deref().map(|p| PhoneNumber::from_stored(p).map(|n| n.masked()).unwrap_or_default());
        FactorChoice { id: f.id, kind: f.kind.clone(), to, label: f.label.clone(), default: f.is_default }
    }
}

fn sent_json(sent: &Sent) -> serde_json::Value {
    json!({
        "factor_id": sent.factor_id,
        "channel": sent.channel,
        "to": sent.to,
        "verification_id": sent.verification_id,
        "sends": sent.sends,
    })
}

fn challenge_json(view: &ChallengeView) -> serde_json::Value {
    let c = &view.challenge;
    let factors: Vec<FactorChoice> = view.factors.iter().map(FactorChoice::from).collect();
    json!({
        "id": c.id,
        "purpose": c.purpose,
        "status": c.status,
        "expires_at": c.expires_at,
        "attempts_left": c.attempts_left(),
        "factors": factors,
        "backup_codes_left": view.backup_codes_left,
        "recovery_code": view.recovery_code,
        "sent": view.sent.as_ref().map(sent_json),
        "send_throttled": view.send_throttled.map(|t| json!({
            "scope": t.scope,
            "retry_after": t.retry_after.as_secs() + u64::from(t.retry_after.subsec_nanos() > 0),
        })),
    })
}

async fn open(
    state: &AppState,
    caller: Caller,
    account_id: AccountId,
    purpose: Purpose,
    body: OpenBody,
) -> Result<HttpResponse, ApiError> {
    let Caller(tenant, _) = caller;
    let msg = OpenChallenge {
        tenant: tenant.clone(),
        account_id: account_id.clone(),
        purpose,
        organisation_id: organisation(body.organisation_id)?,
        send_to: body.factor_id,
        channel: channel(body.channel.as_deref())?,
        locale: locale(body.locale.as_deref())?,
        now: Utc::now(),
    };
    let organisation_id = msg.organisation_id.clone();
    let outcome = state.account_state(&tenant, &account_id).send(msg).await??;
    let body = match outcome {
        LoginOutcome::Open { policy } => {
            json!({ "decision": "open", "organisation_id": organisation_id, "policy": policy })
        }
        LoginOutcome::EnrolmentRequired { policy, sso_enabled } => json!({
            "decision": "enrolment_required",
            "organisation_id": organisation_id,
            "policy": policy,
            "sso_enabled": sso_enabled,
        }),
        LoginOutcome::Challenge(view) => {
            let mut body = json!({ "decision": "challenge", "challenge": challenge_json(&view) });
            if let Some(policy) = view.policy {
                body["organisation_id"] = json!(organisation_id);
                body["policy"] = json!(policy);
            }
            body
        }
    };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

async fn login(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let body: OpenBody = optional_body(&body)?;
    open(&state, caller, account_id, Purpose::Login, body).await
}

async fn step_up(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let body: OpenBody = optional_body(&body)?;
    if body.organisation_id.is_some() {
        return Err(ApiError::field("organisation_id", "a step-up is for the account, not an organisation"));
    }
    open(&state, caller, account_id, Purpose::StepUp, body).await
}

async fn get(
    state: web::Data<AppState>,
    Caller(tenant, _): Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_account, raw_id) = path.into_inner();
    let (account_id, id) = (account_id(&raw_account)?, path_id(&raw_id)?);
    let c = challenges::get(&state.pool, tenant.id, &account_id, id).await?.ok_or(ApiError::NotFound)?;
    let status = if c.status == challenges::ChallengeStatus::Pending && Utc::now() >= c.expires_at {
        challenges::ChallengeStatus::Expired
    } else {
        c.status
    };
    Ok(HttpResponse::Ok().json(json!({
        "id": c.id,
        "purpose": c.purpose,
        "status": status,
        "organisation_id": c.organisation_id,
        "attempts_left": c.attempts_left(),
        "created_at": c.created_at,
        "expires_at": c.expires_at,
    })))
}

/// An answer: the code, and optionally which factor it is from and who types it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    code: serde_json::Value,
    #[serde(default)]
    factor_id: Option<Uuid>,
}

async fn answer(
    state: web::Data<AppState>,
    Caller(tenant, key_id): Caller,
    path: web::Path<(String, String)>,
    body: web::Json<AnswerBody>,
) -> Result<HttpResponse, ApiError> {
    let (raw_account, raw_id) = path.into_inner();
    let (account_id, challenge_id) = (account_id(&raw_account)?, path_id(&raw_id)?);
    let typed = typed(&body.code)?;
    if typed.is_empty() || typed.len() > 64 {
        return Err(ApiError::InvalidCode { attempts_left: None });
    }
    let msg = AnswerChallenge {
        tenant: tenant.clone(),
        account_id: account_id.clone(),
        challenge_id,
        typed: typed.to_owned(),
        factor_id: body.factor_id,
        who: who(None, Some(&account_id), key_id)?,
        now: Utc::now(),
    };
    let passed = state.account_state(&tenant, &account_id).send(msg).await??;
    let mut out = json!({
        "status": "passed",
        "decision": "open",
        "challenge_id": passed.challenge_id,
        "purpose": passed.purpose,
        "answered_by": passed.answered_by,
        "proof": passed.proof,
        "proof_expires_at": passed.proof_expires_at,
    });
    if let Some(id) = passed.factor_id {
        out["factor_id"] = json!(id);
    }
    if let Some(left) = passed.backup_codes_left {
        out["backup_codes_left"] = json!(left);
    }
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(out))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    #[serde(default)]
    factor_id: Option<Uuid>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    locale: Option<String>,
}

async fn send(
    state: web::Data<AppState>,
    Caller(tenant, _): Caller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (raw_account, raw_id) = path.into_inner();
    let (account_id, challenge_id) = (account_id(&raw_account)?, path_id(&raw_id)?);
    let body: SendBody = optional_body(&body)?;
    let msg = SendAgain {
        tenant: tenant.clone(),
        account_id: account_id.clone(),
        challenge_id,
        factor_id: body.factor_id,
        channel: channel(body.channel.as_deref())?,
        locale: locale(body.locale.as_deref())?,
        now: Utc::now(),
    };
    let sent = state.account_state(&tenant, &account_id).send(msg).await??;
    Ok(HttpResponse::Accepted().json(json!({ "sent": sent_json(&sent) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    proof: ProofField,
}

/// A proof is valid while it is unexpired, signed by this deployment, issued to
/// the caller's tenant, and its challenge still stands (no reset since).
async fn verify_proof(
    state: web::Data<AppState>,
    Caller(tenant, _): Caller,
    body: web::Json<VerifyBody>,
) -> Result<HttpResponse, ApiError> {
    let now: DateTime<Utc> = Utc::now();
    let claims = proof::verify(&state.core.keys, &body.proof.0, now).map_err(ApiError::InvalidProof)?;
    if claims.tenant_id != tenant.id {
        return Err(ApiError::InvalidProof(proof::ProofError::BadSignature));
    }
    let account_id =
        AccountId::parse(&claims.account_id).map_err(|_| ApiError::InvalidProof(proof::ProofError::Malformed))?;
    let mut conn = state.pool.acquire().await?;
    if !challenges::is_passed(&mut conn, tenant.id, &account_id, claims.challenge_id).await? {
        return Err(ApiError::InvalidProof(proof::ProofError::Revoked));
    }
    Ok(HttpResponse::Ok().json(json!({
        "valid": true,
        "account_id": claims.account_id,
        "challenge_id": claims.challenge_id,
        "purpose": claims.purpose,
        "answered_by": claims.answered_by,
        "factor_id": claims.factor_id,
        "issued_at": claims.issued(),
        "expires_at": claims.expires(),
    })))
}
