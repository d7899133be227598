//! Call scripts for providers that fetch them (Plivo's `answer_url`). The link
//! (`verifyd_core::delivery::voice_script`) is signed and expires with the code; the
//! script is served only while the verification is pending. No API key: the
//! signed link is the authority, and the access log skips this path.

use actix_web::{HttpResponse, web};
use verifyd_core::delivery::branding;
use verifyd_core::delivery::render::{self, Rendering};
use verifyd_core::delivery::voice_script;
use verifyd_core::domain::verification::Status;
use verifyd_core::store::branding as store;
use verifyd_core::store::verifications;
use verifyd_providers::domain::Channel;

use super::AppState;
use super::problem::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let path = format!("{}/{{token}}", voice_script::PATH);
    cfg.route(&path, web::post().to(plivo)).route(&path, web::get().to(plivo));
}

/// Plivo XML for the call (Plivo POSTs its call parameters; they are not needed).
async fn plivo(state: web::Data<AppState>, token: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let now = verifyd_core::timestamp::now();
    let id = voice_script::verify(&state.core.keys, &token, now).map_err(|_| ApiError::NotFound)?;
    let v =
        verifications::get_any_tenant(&state.pool, id).await.map_err(ApiError::internal)?.ok_or(ApiError::NotFound)?;
    let status = v.state.effective_status(now);
    if status != Status::Pending {
        return Err(ApiError::NotPending(status));
    }
    let code =
        state.core.keys.open(v.id, &v.code_sealed).map_err(|_| ApiError::internal("sealed code does not open"))?;
    // The call's text as dispatch chose it: the tenant's, in the verification's locale.
    let brand = store::for_send(&state.pool, v.tenant_id, Channel::Voice, &v.locale).await?;
    let brand = branding::resolve(brand, Channel::Voice, &state.app_name);
    // Only a phone is called; an email verification has no call to script.
    let phone = v.to.phone().ok_or(ApiError::NotFound)?;
    let call = render::voice(
        Rendering {
            app_name: &brand.app,
            template: brand.template.as_ref(),
            locale: &v.locale,
            code: &code,
            valid_for: (v.state.expires_at - now).to_std().unwrap_or_default(),
            reference: v.id.to_string(),
            script_url: None,
        },
        phone,
    );
    metrics::counter!("verifyd_voice_scripts_served_total", "provider" => "plivo").increment(1);
    Ok(HttpResponse::Ok().content_type("application/xml").body(verifyd_providers::plivo::answer_xml(&call)))
}
