//! Authenticator-app enrolment, backup codes and the recovery code:
//! `/v1/accounts/{account_id}/factors/totp`, `/factors/{id}/confirm`,
//! `/backup-codes` and `/recovery-code`. They are used at the login gate.

use super::factor_view::FactorView;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use verifyd_core::account::{ConfirmTotp, EnrolTotp, GenerateBackupCodes, GenerateRecoveryCode};
use verifyd_core::ids::{AccountId, Label, Who};
use verifyd_core::store::backup_codes;
use verifyd_providers::domain::Code;

use super::auth::{Caller, Enrol};
use super::download::{Download, prefers_text};
use super::json::Json;
use super::problem::{ApiError, Problem};
use super::{AppState, ProofField, account_id, path_id, typed, who};

/// How recent the backend's password check must be for backup codes.
const FRESH_PASSWORD_SECS: u64 = 300;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/accounts/{account_id}/factors/totp").route(web::post().to(enrol_totp)))
        .service(web::resource("/v1/accounts/{account_id}/factors/{factor_id}/confirm").route(web::post().to(confirm)))
        .service(
            web::resource("/v1/accounts/{account_id}/backup-codes")
                .route(web::post().to(generate_backup_codes))
                .route(web::get().to(backup_code_status)),
        )
        .service(
            web::resource("/v1/accounts/{account_id}/recovery-code").route(web::post().to(generate_recovery_code)),
        );
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolBody {
    /// The account name the authenticator app shows (the account id by default).
    #[serde(default)]
    #[schema(example = "ada@example.com")]
    label: Option<String>,
}

/// What the person needs to add the authenticator: shown this once only.
#[derive(Serialize, ToSchema)]
pub struct Enrolment {
    /// `pending` until the first correct code.
    factor: FactorView,
    /// `otpauth://totp/<tenant>:<label>?secret=…&issuer=<tenant>`
    otpauth_uri: String,
    /// The secret in base32, in groups of four, for typing.
    key: String,
    /// The QR code of the URI, a PNG in base64.
    qr_png_base64: String,
}

/// An activated factor, with a step-up proof when it is the account's first.
#[derive(Serialize, ToSchema)]
pub struct ConfirmedView {
    factor: FactorView,
    /// The step-up proof, as a challenge's answer gives it (`proof`): pass
    /// it as `step_up` to a restricted action.
    #[serde(skip_serializing_if = "Option::is_none")]
    proof: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "verifyd_core::timestamp::option")]
    proof_expires_at: Option<DateTime<Utc>>,
}

/// A new set of backup codes: shown this once only.
#[derive(Serialize, ToSchema)]
pub struct BackupCodes {
    #[schema(example = json!(["40285163", "79911824"]))]
    codes: Vec<String>,
    remaining: usize,
    #[serde(with = "verifyd_core::timestamp")]
    generated_at: DateTime<Utc>,
    /// The same codes as a file to save: offer it for download from this
    /// answer (asking again would make a new set and kill these).
    download: Download,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupCodeStatus {
    /// Unused codes of the current set.
    remaining: i64,
    #[serde(with = "verifyd_core::timestamp::option")]
    generated_at: Option<DateTime<Utc>>,
}

/// A new recovery code: shown this once only.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodeView {
    #[schema(example = "7K2M-Q9XD-3HPA-TW5E")]
    recovery_code: String,
    #[serde(with = "verifyd_core::timestamp")]
    generated_at: DateTime<Utc>,
    /// The same code as a file to save (asking again would replace it).
    download: Download,
}

/// Start an authenticator-app enrolment: a 160-bit secret as an `otpauth://`
/// URI, a QR code and a key to type. The factor is `pending` until confirmed.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/factors/totp", tag = "factors",
    params(("account_id" = String, Path)), request_body = EnrolBody,
    responses((status = 201, body = Enrolment),
        (status = 409, description = "The account holds 20 factors already (`too_many_factors`)", body = Problem),
        (status = 422, body = Problem)),
    security(("api_key" = ["enrol"])))]
async fn enrol_totp(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Enrol>,
    path: web::Path<String>,
    body: Json<EnrolBody>,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let label =
        body.into_inner().label.as_deref().map(Label::parse).transpose().map_err(|e| ApiError::field("label", e))?;
    let shard = state.account_state(&tenant, &account_id);
    let (factor, enrolment) = shard.send(EnrolTotp { tenant, account_id, label }).await??;
    // The only time the secret leaves verifyd: for the person to scan or type.
    Ok(HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(Enrolment {
        factor: factor.into(),
        otpauth_uri: enrolment.uri.clone(),
        key: enrolment.key_grouped.clone(),
        qr_png_base64: base64::engine::general_purpose::STANDARD.encode(&enrolment.qr_png),
    }))
}

/// The first authenticator code; with another factor already active, also a
/// step-up proof from it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// The 6 digits the app shows.
    #[schema(value_type = String, example = "492817")]
    code: serde_json::Value,
    #[serde(default)]
    step_up: Option<ProofField>,
}

/// Activate a pending authenticator with its first correct code (5 wrong
/// codes abandon the enrolment). With another factor already active, a
/// step-up proof from it is needed too.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/factors/{factor_id}/confirm", tag = "factors",
    params(("account_id" = String, Path), ("factor_id" = Uuid, Path)), request_body = ConfirmBody,
    responses((status = 200, body = ConfirmedView),
        (status = 403, description = "`step_up_required`", body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "`factor_already_active` or `enrolment_abandoned`", body = Problem),
        (status = 422, description = "Wrong code (`attempts_left`)", body = Problem)),
    security(("api_key" = ["enrol"])))]
async fn confirm(
    state: web::Data<AppState>,
    Caller { tenant, key_id, .. }: Caller<Enrol>,
    path: web::Path<(String, String)>,
    body: Json<ConfirmBody>,
) -> Result<HttpResponse, ApiError> {
    let (raw_account, raw_factor) = path.into_inner();
    let account_id = account_id(&raw_account)?;
    let factor_id = path_id(&raw_factor)?;
    let body = body.into_inner();
    let code: String = typed(&body.code)?.chars().filter(|c| *c != ' ').collect();
    let proof = body.step_up.map(|p| p.0);
    let shard = state.account_state(&tenant, &account_id);
    let who = who(None, Some(&account_id), key_id)?;
    let msg = ConfirmTotp { tenant, account_id, factor_id, code, proof, who, now: verifyd_core::timestamp::now() };
    let confirmed = shard.send(msg).await??;
    // The account's first factor: the code just typed is a fresh second factor,
    // and its proof a step-up (for backup codes right after enrolment, say).
    let (proof, proof_expires_at) = confirmed.proof.map_or((None, None), |(p, at)| (Some(p), Some(at)));
    let view = ConfirmedView { factor: confirmed.factor.into(), proof, proof_expires_at };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(view))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    /// When the backend last verified the person's password.
    password_checked_at: DateTime<Utc>,
    /// Needed once the account has an active factor: new codes get past it.
    #[serde(default)]
    step_up: Option<ProofField>,
    #[serde(default)]
    actor: Option<String>,
}

impl GenerateBody {
    /// The step-up proof and who acts, once the password check is fresh: a
    /// check older than five minutes (or in the future) is not.
    fn authority(
        self,
        account_id: &AccountId,
        key_id: String,
        now: DateTime<Utc>,
    ) -> Result<(Option<String>, Who), ApiError> {
        let age = now.signed_duration_since(self.password_checked_at).num_seconds();
        if age < -5 || age > i64::try_from(FRESH_PASSWORD_SECS).unwrap_or(i64::MAX) {
            return Err(ApiError::FreshPasswordRequired(FRESH_PASSWORD_SECS));
        }
        Ok((self.step_up.map(|p| p.0), who(self.actor, Some(account_id), key_id)?))
    }
}

/// A new set of 10 backup codes of 8 digits (the old set dies). Needs a
/// password check made within 5 minutes, and a step-up once the account has
/// an active factor. `Accept: text/plain` gives the downloadable file; the
/// JSON answer holds it too (`download`), so a page offers it without asking
/// again (which would make a new set).
#[utoipa::path(post, path = "/v1/accounts/{account_id}/backup-codes", tag = "factors",
    params(("account_id" = String, Path)), request_body = GenerateBody,
    responses((status = 201, body = BackupCodes, content_type = "application/json"),
        (status = 201, description = "The file: a header line, a blank line, then one code per line", body = String,
            content_type = "text/plain"),
        (status = 403, description = "`fresh_password_check_required`, `step_up_required`, `invalid_proof`",
            body = Problem),
        (status = 409, description = "The account has no active factor yet (`no_active_factor`)", body = Problem)),
    security(("api_key" = ["enrol"])))]
async fn generate_backup_codes(
    state: web::Data<AppState>,
    Caller { tenant, key_id, .. }: Caller<Enrol>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Json<GenerateBody>,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let now = verifyd_core::timestamp::now();
    let (proof, who) = body.into_inner().authority(&account_id, key_id, now)?;
    let shard = state.account_state(&tenant, &account_id);
    let codes = shard.send(GenerateBackupCodes { tenant, account_id: account_id.clone(), proof, who, now }).await??;
    let codes: Vec<&str> = codes.iter().map(Code::expose).collect();
    let advice = "Each code works once, in place of your second factor; keep them somewhere safe.";
    let download = Download::of("backup-codes.txt", "Backup codes", account_id.as_str(), advice, now, &codes);
    let mut response = HttpResponse::Created();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if prefers_text(&req) {
        return Ok(download.respond(response));
    }
    let codes: Vec<String> = codes.iter().map(|c| (*c).to_owned()).collect();
    Ok(response.json(BackupCodes { remaining: codes.len(), codes, generated_at: now, download }))
}

/// How many backup codes are left.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/backup-codes", tag = "factors",
    params(("account_id" = String, Path)),
    responses((status = 200, body = BackupCodeStatus)),
    security(("api_key" = ["enrol"])))]
async fn backup_code_status(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Enrol>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let mut conn = state.pool.acquire().await?;
    let (remaining, generated_at) =
        backup_codes::status(&mut conn, backup_codes::Kind::Backup, tenant.id, &account_id).await?;
    Ok(HttpResponse::Ok().json(BackupCodeStatus { remaining, generated_at }))
}

/// A new recovery code (the old one dies), with the same authority as backup
/// codes. It answers a login challenge in place of any factor, once.
/// `Accept: text/plain` gives the downloadable file; the JSON answer holds it
/// too (`download`).
#[utoipa::path(post, path = "/v1/accounts/{account_id}/recovery-code", tag = "factors",
    params(("account_id" = String, Path)), request_body = GenerateBody,
    responses((status = 201, body = RecoveryCodeView, content_type = "application/json"),
        (status = 201, description = "The file: a header line, a blank line, then the code", body = String,
            content_type = "text/plain"),
        (status = 403, body = Problem),
        (status = 409, description = "`no_active_factor`", body = Problem)),
    security(("api_key" = ["enrol"])))]
async fn generate_recovery_code(
    state: web::Data<AppState>,
    Caller { tenant, key_id, .. }: Caller<Enrol>,
    req: HttpRequest,
    path: web::Path<String>,
    body: Json<GenerateBody>,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let now = verifyd_core::timestamp::now();
    let (proof, who) = body.into_inner().authority(&account_id, key_id, now)?;
    let shard = state.account_state(&tenant, &account_id);
    let account = account_id.as_str().to_owned();
    let code = shard.send(GenerateRecoveryCode { tenant, account_id, proof, who, now }).await??;
    let recovery_code = code.grouped();
    let advice = "It signs you in once if you lose every factor; keep it somewhere safe.";
    let download = Download::of("recovery-code.txt", "Recovery code", &account, advice, now, &[&recovery_code]);
    let mut response = HttpResponse::Created();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if prefers_text(&req) {
        return Ok(download.respond(response));
    }
    Ok(response.json(RecoveryCodeView { recovery_code, generated_at: now, download }))
}
