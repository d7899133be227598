//! The login gate and step-up:
//! `POST /v1/accounts/{account_id}/login` and `/step-up` open a challenge (or
//! answer `open` / `enrolment_required`), `/challenges/{id}/answer` takes a
//! code, `/challenges/{id}/send` sends the code again, and
//! `POST /v1/proofs/verify` tells a backend whether a proof still stands.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use verifyd_core::abuse::Refused;
use verifyd_core::account::proof;
use verifyd_core::account::rules::Decision;
use verifyd_core::account::{AccountError, AnswerChallenge, LoginOutcome, OpenChallenge, SendAgain, Sent};
use verifyd_core::domain::challenge::ChallengeStatus;
use verifyd_core::domain::challenge::{AnsweredBy, Purpose};
use verifyd_core::domain::factor::FactorKind;
use verifyd_core::domain::policy::TwoFactorPolicy;
use verifyd_core::ids::{AccountId, OrganisationId};
use verifyd_core::limits::Refusal;
use verifyd_core::store::challenges;
use verifyd_core::store::factors::Factor;
use verifyd_providers::domain::{Channel, Locale};

use super::auth::{Caller, Verify};
use super::body::RawBody;
use super::json::Json;
use super::problem::{ApiError, Problem, RefusalFields};
use super::{AppState, ProofField, account_id, optional_body, organisation_id, path_id, typed, who};

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

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    /// Login only: the organisation whose policy applies.
    #[serde(default)]
    organisation_id: Option<String>,
    /// Send the code to this factor rather than the default one.
    #[serde(default)]
    factor_id: Option<Uuid>,
    /// For a phone factor: `sms` or `voice`, whatever the factor's own kind; an email factor takes `email` only.
    #[serde(default)]
    #[schema(value_type = Option<verifyd_providers::domain::Channel>)]
    channel: Option<String>,
    /// Language of the SMS or call: `en`, `es`, `fr`, `de`, `pt`, `ja`.
    #[serde(default)]
    locale: Option<String>,
}

/// A step-up challenge's body: a login's without `organisation_id` (a step-up
/// is for the account, not an organisation, so the field is unknown here).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpOpenBody {
    /// Send the code to this factor rather than the default one.
    #[serde(default)]
    factor_id: Option<Uuid>,
    /// For a phone factor: `sms` or `voice`, whatever the factor's own kind; an email factor takes `email` only.
    #[serde(default)]
    #[schema(value_type = Option<verifyd_providers::domain::Channel>)]
    channel: Option<String>,
    /// Language of the SMS or call: `en`, `es`, `fr`, `de`, `pt`, `ja`.
    #[serde(default)]
    locale: Option<String>,
}

impl From<StepUpOpenBody> for OpenBody {
    fn from(b: StepUpOpenBody) -> Self {
        OpenBody { organisation_id: None, factor_id: b.factor_id, channel: b.channel, locale: b.locale }
    }
}

fn organisation(raw: Option<String>) -> Result<OrganisationId, ApiError> {
    organisation_id(raw.as_deref().unwrap_or(DEFAULT_ORGANISATION))
}

fn channel(raw: Option<&str>) -> Result<Option<Channel>, ApiError> {
    raw.map(str::parse::<Channel>).transpose().map_err(|e| ApiError::field("channel", e))
}

fn locale(raw: Option<&str>) -> Result<Locale, ApiError> {
    Ok(raw.map(Locale::parse).transpose().map_err(|e| ApiError::field("locale", e))?.unwrap_or_default())
}

/// A factor as a challenge lists it: a phone shows only its last two digits,
/// an address its first letter and its domain.
#[derive(Debug, Serialize, ToSchema)]
pub struct FactorChoice {
    id: Uuid,
    kind: FactorKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "+*********71")]
    to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    default: bool,
}

impl From<&Factor> for FactorChoice {
    fn from(f: &Factor) -> Self {
        let to = f.destination().map(|d| d.map(|d| d.masked()).unwrap_or_default());
        FactorChoice { id: f.id, kind: f.kind, to, label: f.label.clone(), default: f.is_default }
    }
}

/// Where a challenge code went.
#[derive(Debug, Serialize, ToSchema)]
pub struct SentView {
    factor_id: Uuid,
    /// `sms`, `voice` or `email`.
    #[schema(value_type = String)]
    channel: Channel,
    /// The phone, masked.
    to: String,
    /// The verification carrying the code (readable at `/v1/verifications/{id}`).
    verification_id: Uuid,
    /// Sends of this code so far.
    sends: i32,
}

impl From<&Sent> for SentView {
    fn from(s: &Sent) -> Self {
        SentView {
            factor_id: s.factor_id,
            channel: s.channel,
            to: s.to.clone(),
            verification_id: s.verification_id,
            sends: s.sends,
        }
    }
}

/// Why no code was sent now.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendThrottled {
    scope: Refusal,
    /// Seconds until a code can be sent.
    retry_after: u64,
}

/// Why no code can be sent to the phone at all: the same `error` names and
/// fields as the problem a verification would get (`destination_not_allowed`,
/// `number_type_not_allowed`, `destination_prefix_blocked`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SendRefused {
    #[schema(example = "destination_not_allowed")]
    error: &'static str,
    detail: String,
    #[serde(flatten)]
    fields: RefusalFields,
}

impl From<&Refused> for SendRefused {
    fn from(r: &Refused) -> Self {
        SendRefused { error: r.kind(), detail: r.to_string(), fields: RefusalFields::from(r) }
    }
}

/// An open challenge as the backend shows it to the person.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeView {
    id: Uuid,
    purpose: Purpose,
    status: ChallengeStatus,
    #[serde(with = "verifyd_core::timestamp")]
    expires_at: DateTime<Utc>,
    attempts_left: i32,
    /// The active factors that can answer.
    factors: Vec<FactorChoice>,
    /// Unused backup codes (any one answers).
    backup_codes_left: i64,
    /// Whether the recovery code can answer.
    recovery_code: bool,
    /// Where the SMS or voice code went; null when the factor is an authenticator.
    sent: Option<SentView>,
    /// Set when a code should have gone out but a send limit was hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    send_throttled: Option<SendThrottled>,
    /// Set when the phone may not be sent a code at all (a setting or a fraud
    /// block); another factor, a backup or the recovery code can still answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    send_refused: Option<SendRefused>,
    /// Set when no provider is configured for the factor's channel (`email`,
    /// `whatsapp`, …): an operator must add one; another factor, a backup or
    /// the recovery code can still answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<verifyd_providers::domain::Channel>)]
    send_unavailable: Option<Channel>,
}

impl From<&verifyd_core::account::ChallengeView> for ChallengeView {
    fn from(view: &verifyd_core::account::ChallengeView) -> Self {
        let c = &view.challenge;
        ChallengeView {
            id: c.id,
            purpose: c.purpose,
            status: c.status,
            expires_at: c.expires_at,
            attempts_left: c.attempts_left(),
            factors: view.factors.iter().map(FactorChoice::from).collect(),
            backup_codes_left: view.backup_codes_left,
            recovery_code: view.recovery_code,
            sent: view.sent.as_ref().map(SentView::from),
            send_throttled: view.send_throttled.map(|t| SendThrottled {
                scope: t.by,
                retry_after: verifyd_core::limits::retry_after_secs(t.retry_after),
            }),
            send_refused: view.send_refused.as_ref().map(SendRefused::from),
            send_unavailable: view.send_unavailable,
        }
    }
}

/// The gate's answer: `open`, `challenge` (with the challenge) or
/// `enrolment_required`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GateAnswer {
    decision: Decision,
    /// Login only: the organisation whose policy applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    organisation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<TwoFactorPolicy>,
    /// With `enrolment_required`: whether the organisation allows SSO (it does
    /// not while two-factor is required).
    #[serde(skip_serializing_if = "Option::is_none")]
    sso_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge: Option<ChallengeView>,
}

async fn open(
    state: &AppState,
    caller: Caller<Verify>,
    account_id: AccountId,
    purpose: Purpose,
    body: OpenBody,
) -> Result<HttpResponse, ApiError> {
    let Caller { tenant, key_id, .. } = caller;
    let msg = OpenChallenge {
        tenant: tenant.clone(),
        account_id: account_id.clone(),
        purpose,
        organisation_id: organisation(body.organisation_id)?,
        send_to: body.factor_id,
        channel: channel(body.channel.as_deref())?,
        locale: locale(body.locale.as_deref())?,
        api_key_id: Some(key_id),
        now: verifyd_core::timestamp::now(),
    };
    let organisation_id = (purpose == Purpose::Login).then(|| msg.organisation_id.as_str().to_owned());
    let outcome = state.account_state(&tenant, &account_id).send(msg).await??;
    let answer = match outcome {
        LoginOutcome::Open { policy } => GateAnswer {
            decision: Decision::Open,
            organisation_id,
            policy: Some(policy),
            sso_enabled: None,
            challenge: None,
        },
        LoginOutcome::EnrolmentRequired { policy, sso_enabled } => GateAnswer {
            decision: Decision::EnrolmentRequired,
            organisation_id,
            policy: Some(policy),
            sso_enabled: Some(sso_enabled),
            challenge: None,
        },
        LoginOutcome::Challenge(view) => GateAnswer {
            decision: Decision::Challenge,
            organisation_id,
            policy: view.policy,
            sso_enabled: None,
            challenge: Some(ChallengeView::from(view.as_ref())),
        },
    };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(answer))
}

/// May this user in? Ask after the password was checked. `open`: no second
/// factor needed. `challenge`: a code was sent to the default phone factor (or
/// the one asked for), or an authenticator, backup or recovery code answers.
/// `enrolment_required`: the organisation requires two-factor and the user has none.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/login", tag = "login gate",
    params(("account_id" = String, Path)), request_body(content = Option<OpenBody>),
    responses((status = 200, body = GateAnswer),
        (status = 404, description = "`factor_id` is not an active factor of the account", body = Problem),
        (status = 429, description = "Too many wrong answers lately (`wrong_answers`)", body = Problem)),
    security(("api_key" = ["verify"])))]
async fn login(
    state: web::Data<AppState>,
    caller: Caller<Verify>,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let body: OpenBody = optional_body(&body)?;
    open(&state, caller, account_id, Purpose::Login, body).await
}

/// A challenge before a restricted action (changing or deleting a factor, new
/// backup or recovery codes, turning policy off). Its proof is the `step_up`
/// those requests take.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/step-up", tag = "login gate",
    params(("account_id" = String, Path)), request_body(content = Option<StepUpOpenBody>),
    responses((status = 200, body = GateAnswer),
        (status = 404, description = "`factor_id` is not an active factor of the account", body = Problem),
        (status = 409, description = "The account has no active factor (`no_active_factor`)", body = Problem),
        (status = 429, body = Problem)),
    security(("api_key" = ["verify"])))]
async fn step_up(
    state: web::Data<AppState>,
    caller: Caller<Verify>,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let body: StepUpOpenBody = optional_body(&body)?;
    open(&state, caller, account_id, Purpose::StepUp, body.into()).await
}

/// A challenge as it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeState {
    id: Uuid,
    purpose: Purpose,
    status: ChallengeStatus,
    organisation_id: String,
    attempts_left: i32,
    #[serde(with = "verifyd_core::timestamp")]
    created_at: DateTime<Utc>,
    #[serde(with = "verifyd_core::timestamp")]
    expires_at: DateTime<Utc>,
}

#[utoipa::path(get, operation_id = "get_challenge", path = "/v1/accounts/{account_id}/challenges/{challenge_id}", tag = "login gate",
    params(("account_id" = String, Path), ("challenge_id" = Uuid, Path)),
    responses((status = 200, body = ChallengeState), (status = 404, body = Problem)),
    security(("api_key" = ["verify"])))]
async fn get(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Verify>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_account, raw_id) = path.into_inner();
    let (account_id, id) = (account_id(&raw_account)?, path_id(&raw_id)?);
    let c = challenges::get(&state.pool, tenant.id, &account_id, id).await?.ok_or(ApiError::NotFound)?;
    let status = if c.status == ChallengeStatus::Pending && verifyd_core::timestamp::now() >= c.expires_at {
        ChallengeStatus::Expired
    } else {
        c.status
    };
    Ok(HttpResponse::Ok().json(ChallengeState {
        id: c.id,
        purpose: c.purpose,
        status,
        organisation_id: c.organisation_id.as_ref().map(|o| o.as_str().to_owned()).unwrap_or_default(),
        attempts_left: c.attempts_left(),
        created_at: c.created_at,
        expires_at: c.expires_at,
    }))
}

/// An answer: what the person typed (a code sent by SMS or voice, an
/// authenticator code, a backup code or the recovery code), and optionally the
/// only factor that may answer.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    #[schema(value_type = String, example = "492817")]
    code: serde_json::Value,
    #[serde(default)]
    factor_id: Option<Uuid>,
}

/// A passed challenge: the gate is open, and the proof says so.
#[derive(Serialize, ToSchema)]
pub struct PassedView {
    /// Always `passed`.
    status: &'static str,
    /// Always `open`.
    decision: Decision,
    challenge_id: Uuid,
    purpose: Purpose,
    answered_by: AnsweredBy,
    #[serde(skip_serializing_if = "Option::is_none")]
    factor_id: Option<Uuid>,
    /// Signed and short-lived: keep it with the session; restricted actions
    /// take it as `step_up` while it is fresh.
    proof: String,
    #[serde(with = "verifyd_core::timestamp")]
    proof_expires_at: DateTime<Utc>,
    /// After a backup code: how many are left.
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_codes_left: Option<i64>,
}

/// Answer a challenge. A wrong code is a 422 with `attempts_left`; the last
/// wrong one fails the challenge and publishes `challenge.failed`.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/challenges/{challenge_id}/answer", tag = "login gate",
    params(("account_id" = String, Path), ("challenge_id" = Uuid, Path)), request_body = AnswerBody,
    responses((status = 200, body = PassedView),
        (status = 404, body = Problem),
        (status = 409, description = "Passed, failed or expired already (`challenge_closed`)", body = Problem),
        (status = 422, description = "Wrong code (`invalid_code`, `attempts_left`)", body = Problem),
        (status = 429, description = "Too many wrong answers lately (`wrong_answers`)", body = Problem)),
    security(("api_key" = ["verify"])))]
async fn answer(
    state: web::Data<AppState>,
    Caller { tenant, key_id, .. }: Caller<Verify>,
    path: web::Path<(String, String)>,
    body: Json<AnswerBody>,
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
        now: verifyd_core::timestamp::now(),
    };
    let passed = state.account_state(&tenant, &account_id).send(msg).await??;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(PassedView {
        status: "passed",
        decision: Decision::Open,
        challenge_id: passed.challenge_id,
        purpose: passed.purpose,
        answered_by: passed.answered_by,
        factor_id: passed.factor_id,
        proof: passed.proof,
        proof_expires_at: passed.proof_expires_at,
        backup_codes_left: passed.backup_codes_left,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// Another phone factor to send to.
    #[serde(default)]
    factor_id: Option<Uuid>,
    /// `sms`, `voice` or `email`.
    #[serde(default)]
    #[schema(value_type = Option<verifyd_providers::domain::Channel>)]
    channel: Option<String>,
    #[serde(default)]
    locale: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SendAgainView {
    sent: SentView,
}

/// Send the challenge's code again (the same code while it is valid, by SMS or
/// by voice), or a code to another phone factor.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/challenges/{challenge_id}/send", tag = "login gate",
    params(("account_id" = String, Path), ("challenge_id" = Uuid, Path)), request_body(content = Option<SendBody>),
    responses((status = 202, body = SendAgainView),
        (status = 404, description = "No such challenge, or no such active phone factor", body = Problem),
        (status = 409, body = Problem),
        (status = 429, body = Problem)),
    security(("api_key" = ["verify"])))]
async fn send(
    state: web::Data<AppState>,
    Caller { tenant, key_id, .. }: Caller<Verify>,
    path: web::Path<(String, String)>,
    body: RawBody,
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
        api_key_id: Some(key_id),
        now: verifyd_core::timestamp::now(),
    };
    let sent = state.account_state(&tenant, &account_id).send(msg).await??;
    Ok(HttpResponse::Accepted().json(SendAgainView { sent: SentView::from(&sent) }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    proof: ProofField,
}

/// What a valid proof says.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProofView {
    /// Always true (an invalid proof is a 403).
    valid: bool,
    account_id: String,
    challenge_id: Uuid,
    purpose: Purpose,
    answered_by: AnsweredBy,
    #[serde(skip_serializing_if = "Option::is_none")]
    factor_id: Option<Uuid>,
    #[serde(with = "verifyd_core::timestamp")]
    issued_at: DateTime<Utc>,
    #[serde(with = "verifyd_core::timestamp")]
    expires_at: DateTime<Utc>,
}

/// Does a proof still stand? Valid while unexpired, signed by this deployment,
/// issued to the caller's tenant, and its challenge not wiped by a reset.
#[utoipa::path(post, path = "/v1/proofs/verify", tag = "login gate", request_body = VerifyBody,
    responses((status = 200, body = ProofView),
        (status = 403, description = "Malformed, forged, expired or revoked (`invalid_proof`)", body = Problem)),
    security(("api_key" = ["verify"])))]
async fn verify_proof(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Verify>,
    body: Json<VerifyBody>,
) -> Result<HttpResponse, ApiError> {
    let now: DateTime<Utc> = verifyd_core::timestamp::now();
    let claims = proof::verify(&state.core.keys, &body.proof.0, now)
        .map_err(|e| ApiError::Account(AccountError::InvalidProof(e)))?;
    if claims.tenant_id != tenant.id {
        return Err(ApiError::Account(AccountError::InvalidProof(proof::ProofError::BadSignature)));
    }
    let account_id = AccountId::parse(&claims.account_id)
        .map_err(|_| ApiError::Account(AccountError::InvalidProof(proof::ProofError::Malformed)))?;
    let mut conn = state.pool.acquire().await?;
    if !challenges::is_passed(&mut conn, tenant.id, &account_id, claims.challenge_id).await? {
        return Err(ApiError::Account(AccountError::InvalidProof(proof::ProofError::Revoked)));
    }
    Ok(HttpResponse::Ok().json(ProofView {
        valid: true,
        account_id: claims.account_id.clone(),
        challenge_id: claims.challenge_id,
        purpose: claims.purpose,
        answered_by: claims.answered_by,
        factor_id: claims.factor_id,
        issued_at: claims.issued(),
        expires_at: claims.expires(),
    }))
}
