//! Authenticator-app enrolment, backup codes and the recovery code:
//! `/v1/accounts/{account_id}/factors/totp`, `/factors/{id}/confirm`,
//! `/backup-codes` and `/recovery-code`. They are used at the login gate.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use verifyd_actors::account_state::{ConfirmTotp, EnrolTotp, GenerateBackupCodes, GenerateRecoveryCode};
use verifyd_actors::store::backup_codes;
use verifyd_providers::domain::Code;

use super::auth::Caller;
use super::problem::ApiError;
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolBody {
    #[serde(default)]
    label: Option<String>,
}

async fn enrol_totp(
    state: web::Data<AppState>,
    Caller(tenant, _): Caller,
    path: web::Path<String>,
    body: web::Json<EnrolBody>,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let label = body.into_inner().label;
    if let Some(l) = &label
        && (l.is_empty() || l.len() > 128 || l.chars().any(char::is_control))
    {
        return Err(ApiError::field("label", "must be 1 to 128 printable characters"));
    }
    let shard = state.account_state(&tenant, &account_id);
    let (factor, enrolment) = shard.send(EnrolTotp { tenant, account_id, label }).await??;
    // The only time the secret leaves verifyd: for the person to scan or type.
    Ok(HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({
        "factor": factor,
        "otpauth_uri": enrolment.uri,
        "key": enrolment.key_grouped,
        "qr_png_base64": base64::engine::general_purpose::STANDARD.encode(&enrolment.qr_png),
    })))
}

/// The first authenticator code; with another factor already active, also a
/// step-up proof from it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    code: serde_json::Value,
    #[serde(default)]
    step_up: Option<ProofField>,
}

async fn confirm(
    state: web::Data<AppState>,
    Caller(tenant, key_id): Caller,
    path: web::Path<(String, String)>,
    body: web::Json<ConfirmBody>,
) -> Result<HttpResponse, ApiError> {
    let (raw_account, raw_factor) = path.into_inner();
    let account_id = account_id(&raw_account)?;
    let factor_id = path_id(&raw_factor)?;
    let body = body.into_inner();
    let code: String = typed(&body.code)?.chars().filter(|c| *c != ' ').collect();
    let proof = body.step_up.map(|p| p.0);
    let shard = state.account_state(&tenant, &account_id);
    let who = who(None, Some(&account_id), key_id)?;
    let msg = ConfirmTotp { tenant, account_id, factor_id, code, proof, who, now: Utc::now() };
    let confirmed = shard.send(msg).await??;
    let mut out = json!({ "factor": confirmed.factor });
    // The account's first factor: the code just typed is a fresh second factor,
    // and its proof a step-up (for backup codes right after enrolment, say).
    if let Some((proof, expires_at)) = confirmed.proof {
        out["step_up"] = json!(proof);
        out["step_up_expires_at"] = json!(expires_at);
    }
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateBody {
    /// When the backend last verified the person's password.
    password_checked_at: DateTime<Utc>,
    /// Needed once the account has an active factor: new codes get past it.
    #[serde(default)]
    step_up: Option<ProofField>,
    #[serde(default)]
    actor: Option<String>,
}

/// A password check older than five minutes (or in the future) is not fresh.
fn require_fresh_password(body: &GenerateBody, now: DateTime<Utc>) -> Result<(), ApiError> {
    let age = now.signed_duration_since(body.password_checked_at).num_seconds();
    if age < -5 || age > i64::try_from(FRESH_PASSWORD_SECS).unwrap_or(i64::MAX) {
        return Err(ApiError::FreshPasswordRequired(FRESH_PASSWORD_SECS));
    }
    Ok(())
}

async fn generate_backup_codes(
    state: web::Data<AppState>,
    Caller(tenant, key_id): Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<GenerateBody>,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let now = Utc::now();
    require_fresh_password(&body, now)?;
    let shard = state.account_state(&tenant, &account_id);
    let GenerateBody { step_up, actor, .. } = body.into_inner();
    let who = who(actor, Some(&account_id), key_id)?;
    let proof = step_up.map(|p| p.0);
    let codes = shard.send(GenerateBackupCodes { tenant, account_id: account_id.clone(), proof, who, now }).await??;
    let codes: Vec<&str> = codes.iter().map(Code::expose).collect();
    let wants_text =
        req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/plain"));
    let mut response = HttpResponse::Created();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if wants_text {
        // The downloadable file: a header line, then one code per line.
        let mut text = format!(
            "Backup codes for {} (generated {}). Each code works once; keep them somewhere safe.\n",
            account_id.as_str(),
            now.format("%Y-%m-%d %H:%M UTC")
        );
        for code in &codes {
            text.push_str(code);
            text.push('\n');
        }
        return Ok(response
            .content_type("text/plain; charset=utf-8")
            .insert_header((header::CONTENT_DISPOSITION, "attachment; filename=\"backup-codes.txt\""))
            .body(text));
    }
    Ok(response.json(json!({ "codes": codes, "remaining": codes.len(), "generated_at": now })))
}

async fn backup_code_status(
    state: web::Data<AppState>,
    Caller(tenant, _): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let mut conn = state.pool.acquire().await?;
    let (remaining, generated_at) =
        backup_codes::status(&mut conn, backup_codes::Kind::Backup, tenant.id, &account_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "remaining": remaining, "generated_at": generated_at })))
}

async fn generate_recovery_code(
    state: web::Data<AppState>,
    Caller(tenant, key_id): Caller,
    path: web::Path<String>,
    body: web::Json<GenerateBody>,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let now = Utc::now();
    require_fresh_password(&body, now)?;
    let shard = state.account_state(&tenant, &account_id);
    let GenerateBody { step_up, actor, .. } = body.into_inner();
    let who = who(actor, Some(&account_id), key_id)?;
    let proof = step_up.map(|p| p.0);
    let code = shard.send(GenerateRecoveryCode { tenant, account_id, proof, who, now }).await??;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "recovery_code": code.grouped(), "generated_at": now })))
}
