//! Changes that need authority, and the audit trail. A user's own factor
//! changes (`DELETE /v1/accounts/{account_id}/factors/{factor_id}`,
//! `PUT …/factors/{factor_id}/default`, `POST …/activate`) take that user's
//! step-up and the `enrol` scope; an admin's (`POST /v1/accounts/{account_id}/reset`,
//! `GET|PUT /v1/organisations/{organisation_id}/policy`) and the audit trail
//! (`GET /v1/audit`, `GET /v1/accounts/{account_id}/audit`,
//! `GET /v1/organisations/{organisation_id}/audit`) take the `admin` scope.

use super::factor_view::FactorView;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use verifyd_core::account::{
    AccountError, ActivateFactor, RemovalAuthority, RemoveFactor, ResetAccount, ResetAuthority, SetDefaultFactor,
    SetPolicy,
};
use verifyd_core::domain::policy::TwoFactorPolicy;
use verifyd_core::store::audit::{self, Record};
use verifyd_core::store::organisations;

use super::auth::{Admin, Caller, Enrol};
use super::json::Json;
use super::problem::{ApiError, Problem};
use super::{AppState, ProofField, account_id, organisation_id, path_id, typed, who};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/accounts/{account_id}/factors/{factor_id}").route(web::delete().to(remove_factor)))
        .service(
            web::resource("/v1/accounts/{account_id}/factors/{factor_id}/default").route(web::put().to(set_default)),
        )
        .service(
            web::resource("/v1/accounts/{account_id}/factors/{factor_id}/activate").route(web::post().to(activate)),
        )
        .service(web::resource("/v1/accounts/{account_id}/reset").route(web::post().to(reset)))
        .service(web::resource("/v1/audit").route(web::get().to(tenant_audit)))
        .service(web::resource("/v1/accounts/{account_id}/audit").route(web::get().to(account_audit)))
        .service(
            web::resource("/v1/organisations/{organisation_id}/policy")
                .route(web::get().to(get_policy))
                .route(web::put().to(put_policy)),
        )
        .service(web::resource("/v1/organisations/{organisation_id}/audit").route(web::get().to(organisation_audit)));
}

/// Deleting a factor takes either a step-up proof, or a code of that very
/// factor answering a step-up challenge opened for it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveBody {
    #[serde(default)]
    step_up: Option<ProofField>,
    #[serde(default)]
    challenge_id: Option<Uuid>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    code: Option<serde_json::Value>,
    /// Who removes it (the account itself when absent), for the audit trail.
    #[serde(default)]
    actor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    removed: FactorView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FactorBody {
    factor: FactorView,
}

/// Delete a factor: with a fresh step-up proof, or with the factor's own code
/// answering a step-up challenge opened for it (`POST …/step-up` with its
/// `factor_id`). Refused for the last factor while an organisation of the
/// account is `mandatory`.
#[utoipa::path(delete, path = "/v1/accounts/{account_id}/factors/{factor_id}", tag = "factors",
    params(("account_id" = String, Path), ("factor_id" = Uuid, Path)), request_body = RemoveBody,
    responses((status = 200, body = Removed),
        (status = 403, description = "`step_up_required` or `invalid_proof`", body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "`last_factor_mandatory`, `challenge_closed`", body = Problem),
        (status = 422, description = "Wrong code (`attempts_left`) or neither authority given", body = Problem),
        (status = 429, description = "Too many wrong answers lately (`wrong_answers`)", body = Problem)),
    security(("api_key" = ["enrol"])))]
async fn remove_factor(
    state: web::Data<AppState>,
    Caller { tenant, key_id, .. }: Caller<Enrol>,
    path: web::Path<(String, String)>,
    body: Json<RemoveBody>,
) -> Result<HttpResponse, ApiError> {
    let (raw_account, raw_factor) = path.into_inner();
    let (account_id, factor_id) = (account_id(&raw_account)?, path_id(&raw_factor)?);
    let body = body.into_inner();
    let authority = match (body.step_up, body.challenge_id, &body.code) {
        (Some(proof), None, None) => Some(RemovalAuthority::Proof(proof.0)),
        (None, Some(challenge_id), Some(code)) => {
            Some(RemovalAuthority::Code { challenge_id, code: typed(code)?.to_owned() })
        }
        // Enough for a pending factor; an active one answers step_up_required.
        (None, None, None) => None,
        _ => {
            return Err(ApiError::field(
                "step_up",
                "give either a step-up proof (step_up) or the factor's code with its challenge (challenge_id, code)",
            ));
        }
    };
    let msg = RemoveFactor {
        tenant: tenant.clone(),
        account_id: account_id.clone(),
        factor_id,
        authority,
        who: who(body.actor, Some(&account_id), key_id)?,
        now: verifyd_core::timestamp::now(),
    };
    let factor = state.account_state(&tenant, &account_id).send(msg).await??;
    Ok(HttpResponse::Ok().json(Removed { removed: factor.into() }))
}

/// A step-up proof, and who acts.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpBody {
    /// Left out, the answer is `403 step_up_required`, as for every other
    /// restricted action.
    #[serde(default)]
    step_up: Option<ProofField>,
    #[serde(default)]
    actor: Option<String>,
}

/// Make a factor the default (where login codes go). Needs a step-up.
#[utoipa::path(put, path = "/v1/accounts/{account_id}/factors/{factor_id}/default", tag = "factors",
    params(("account_id" = String, Path), ("factor_id" = Uuid, Path)), request_body = StepUpBody,
    responses((status = 200, body = FactorBody), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("api_key" = ["enrol"])))]
async fn set_default(
    state: web::Data<AppState>,
    Caller { tenant, key_id, .. }: Caller<Enrol>,
    path: web::Path<(String, String)>,
    body: Json<StepUpBody>,
) -> Result<HttpResponse, ApiError> {
    let (raw_account, raw_factor) = path.into_inner();
    let (account_id, factor_id) = (account_id(&raw_account)?, path_id(&raw_factor)?);
    let body = body.into_inner();
    let msg = SetDefaultFactor {
        tenant: tenant.clone(),
        account_id: account_id.clone(),
        factor_id,
        proof: body.step_up.ok_or(ApiError::Account(AccountError::StepUpRequired))?.0,
        who: who(body.actor, Some(&account_id), key_id)?,
        now: verifyd_core::timestamp::now(),
    };
    let factor = state.account_state(&tenant, &account_id).send(msg).await??;
    Ok(HttpResponse::Ok().json(FactorBody { factor: factor.into() }))
}

/// A phone verified while the account already had an active factor is
/// `pending` until a step-up from an existing factor activates it.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/factors/{factor_id}/activate", tag = "factors",
    params(("account_id" = String, Path), ("factor_id" = Uuid, Path)), request_body = ActivateBody,
    responses((status = 200, body = FactorBody), (status = 403, body = Problem),
        (status = 404, description = "No such pending phone factor", body = Problem)),
    security(("api_key" = ["enrol"])))]
async fn activate(
    state: web::Data<AppState>,
    Caller { tenant, key_id, .. }: Caller<Enrol>,
    path: web::Path<(String, String)>,
    body: Json<ActivateBody>,
) -> Result<HttpResponse, ApiError> {
    let (raw_account, raw_factor) = path.into_inner();
    let (account_id, factor_id) = (account_id(&raw_account)?, path_id(&raw_factor)?);
    let body = body.into_inner();
    let msg = ActivateFactor {
        tenant: tenant.clone(),
        account_id: account_id.clone(),
        factor_id,
        proof: body.step_up.map(|p| p.0),
        who: who(body.actor, Some(&account_id), key_id)?,
        now: verifyd_core::timestamp::now(),
    };
    let factor = state.account_state(&tenant, &account_id).send(msg).await??;
    Ok(HttpResponse::Ok().json(FactorBody { factor: factor.into() }))
}

/// A step-up proof from an active factor (not needed when the account has none).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    #[serde(default)]
    step_up: Option<ProofField>,
    #[serde(default)]
    actor: Option<String>,
}

/// A reset names the admin who does it and how they stand behind it: their
/// own step-up proof (checked), or their attestation (recorded as theirs).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// The admin who resets the user: their account id in this tenant.
    actor: String,
    /// A step-up proof of `actor`'s own account, from a challenge they
    /// passed just now (`POST /v1/accounts/{actor}/step-up`).
    #[serde(default)]
    step_up: Option<ProofField>,
    /// Instead of `step_up`, for an admin without a second factor here: how
    /// the user's identity was checked (e.g. "ID checked on a video call,
    /// ticket 4411"), 1 to 500 characters, kept in the audit trail and the
    /// `account.reset` event with the key that sent it.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    attestation: Option<String>,
    /// Why, for the audit trail (at most 500 characters).
    #[serde(default)]
    #[schema(max_length = 500)]
    reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResetView {
    account_id: String,
    /// Active factors removed; pending enrolments go too, uncounted (the user
    /// was never told of them).
    factors_removed: u64,
    /// Unused backup and recovery codes that stopped working.
    codes_invalidated: u64,
}

/// Admin reset: every factor, backup code and the recovery code of the user
/// go, and so do earlier proofs. The next login answers `enrolment_required`
/// where policy requires two-factor, `open` elsewhere. The acting admin
/// (`actor`) gives either their own step-up proof or an attestation; without
/// either the answer is `403 step_up_required`.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/reset", tag = "organisations",
    params(("account_id" = String, Path)), request_body = ResetBody,
    responses((status = 200, body = ResetView),
        (status = 403, description = "Neither `step_up` nor `attestation` (`step_up_required`), or a proof that \
            is not `actor`'s (`invalid_proof`)", body = Problem),
        (status = 422, body = Problem)),
    security(("api_key" = ["admin"])))]
async fn reset(
    state: web::Data<AppState>,
    Caller { tenant, key_id, .. }: Caller<Admin>,
    path: web::Path<String>,
    body: Json<ResetBody>,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let body = body.into_inner();
    if body.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(ApiError::field("reason", "must be at most 500 characters"));
    }
    let who = who(Some(body.actor), None, key_id)?;
    let authority = match (body.step_up, body.attestation) {
        (Some(proof), None) => ResetAuthority::StepUp(proof.0),
        (None, Some(statement)) => {
            let blank = |c: char| c.is_whitespace() || c.is_control();
            if statement.chars().all(blank) || statement.chars().count() > 500 {
                return Err(ApiError::field("attestation", "must be 1 to 500 characters"));
            }
            ResetAuthority::Attestation(statement)
        }
        (None, None) => return Err(ApiError::ResetAuthorityRequired),
        (Some(_), Some(_)) => {
            return Err(ApiError::field("attestation", "give either step_up or attestation, not both"));
        }
    };
    let msg = ResetAccount {
        tenant: tenant.clone(),
        account_id: account_id.clone(),
        reason: body.reason,
        authority,
        who,
        now: verifyd_core::timestamp::now(),
    };
    let reset = state.account_state(&tenant, &account_id).send(msg).await??;
    Ok(HttpResponse::Ok().json(ResetView {
        account_id: account_id.as_str().to_owned(),
        factors_removed: reset.factors_removed,
        codes_invalidated: reset.codes_invalidated,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    organisation_id: String,
    policy: TwoFactorPolicy,
    sso_enabled: bool,
}

/// An organisation's two-factor policy (`optional` with SSO allowed until set).
#[utoipa::path(get, path = "/v1/organisations/{organisation_id}/policy", tag = "organisations",
    params(("organisation_id" = String, Path)),
    responses((status = 200, body = PolicyView)),
    security(("api_key" = ["admin"])))]
async fn get_policy(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Admin>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let org = organisation_id(&path)?;
    let mut conn = state.pool.acquire().await?;
    let settings = organisations::settings(&mut conn, tenant.id, &org, false).await.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(PolicyView {
        organisation_id: org.as_str().to_owned(),
        policy: settings.policy,
        sso_enabled: settings.sso_enabled,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    #[schema(value_type = TwoFactorPolicy, example = "required")]
    policy: String,
    #[serde(default)]
    sso_enabled: Option<bool>,
    /// The admin who makes the change; turning two-factor off needs their step-up.
    actor: String,
    #[serde(default)]
    step_up: Option<ProofField>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyChangeView {
    organisation_id: String,
    policy: TwoFactorPolicy,
    previous_policy: TwoFactorPolicy,
    sso_enabled: bool,
    /// This change turned SSO off (two-factor became required).
    sso_disabled: bool,
    changed: bool,
}

/// Set an organisation's policy. `required` turns SSO off (and says so);
/// users' factors are never touched. Turning two-factor off needs the acting
/// admin's step-up; `mandatory` can never be turned off.
#[utoipa::path(put, path = "/v1/organisations/{organisation_id}/policy", tag = "organisations",
    params(("organisation_id" = String, Path)), request_body = PolicyBody,
    responses((status = 200, body = PolicyChangeView),
        (status = 403, description = "`step_up_required` or `invalid_proof`", body = Problem),
        (status = 409, description = "`policy_mandatory` or `sso_with_required_policy`", body = Problem),
        (status = 422, body = Problem)),
    security(("api_key" = ["admin"])))]
async fn put_policy(
    state: web::Data<AppState>,
    Caller { tenant, key_id, .. }: Caller<Admin>,
    path: web::Path<String>,
    body: Json<PolicyBody>,
) -> Result<HttpResponse, ApiError> {
    let org = organisation_id(&path)?;
    let body = body.into_inner();
    let policy: TwoFactorPolicy = body.policy.parse().map_err(|e| ApiError::field("policy", e))?;
    let msg = SetPolicy {
        tenant: tenant.clone(),
        organisation_id: org.clone(),
        policy,
        sso_enabled: body.sso_enabled,
        proof: body.step_up.map(|p| p.0),
        who: who(Some(body.actor), None, key_id)?,
        now: verifyd_core::timestamp::now(),
    };
    // Policy changes of one organisation go through one shard, in order.
    let shard = state.core.account_state.pick(&(tenant.id, "organisation", org.as_str()));
    let change = shard.send(msg).await??;
    Ok(HttpResponse::Ok().json(PolicyChangeView {
        organisation_id: org.as_str().to_owned(),
        policy: change.after.policy,
        previous_policy: change.before.policy,
        sso_enabled: change.after.sso_enabled,
        sso_disabled: change.disables_sso,
        changed: change.after != change.before,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Entries older than this id (the previous page's `next_before`).
    #[serde(default)]
    before: Option<i64>,
    /// 1 to 500; 50 by default.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Audit entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    entries: Vec<Record>,
    /// Pass as `before` for the next page; null on the last.
    next_before: Option<i64>,
}

async fn audit_page(
    state: &AppState,
    tenant_id: Uuid,
    subject: audit::Subject<'_>,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let limit = page.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 500"));
    }
    let entries = audit::list(&state.pool, tenant_id, subject, page.before, limit).await?;
    let next = (entries.len() as i64 == limit).then(|| entries.last().map(|e| e.id)).flatten();
    Ok(HttpResponse::Ok().json(AuditPage { entries, next_before: next }))
}

/// Every security-relevant change to an account: who (`actor`, `api_key_id`),
/// what (`action`, `detail`), when.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/audit", tag = "audit",
    params(("account_id" = String, Path), Page),
    responses((status = 200, body = AuditPage), (status = 422, body = Problem)),
    security(("api_key" = ["admin"])))]
async fn account_audit(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Admin>,
    path: web::Path<String>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    audit_page(&state, tenant.id, audit::Subject::Account(&account_id), page.into_inner()).await
}

/// Changes to the tenant as a whole: API keys created, rotated and revoked
/// (`api_key.*`), geo permissions set (`geo_permissions.changed`), prefix
/// blocks set by the pumping guard and lifted (`prefix_block.blocked`, `.lifted`). `actor` is the calling API key, or
/// `cli[:user]` for `verifyd keys` at a console.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(Page),
    responses((status = 200, body = AuditPage), (status = 422, body = Problem)),
    security(("api_key" = ["admin"])))]
async fn tenant_audit(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Admin>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    audit_page(&state, tenant.id, audit::Subject::Tenant, page.into_inner()).await
}

/// Policy changes of an organisation, and logins into it.
#[utoipa::path(get, path = "/v1/organisations/{organisation_id}/audit", tag = "audit",
    params(("organisation_id" = String, Path), Page),
    responses((status = 200, body = AuditPage), (status = 422, body = Problem)),
    security(("api_key" = ["admin"])))]
async fn organisation_audit(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Admin>,
    path: web::Path<String>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let org = organisation_id(&path)?;
    audit_page(&state, tenant.id, audit::Subject::Organisation(&org), page.into_inner()).await
}
