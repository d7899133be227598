//! Delivery receipts from providers (status callbacks). They carry no API key:
//! each is authenticated the provider's way (Twilio: `X-Twilio-Signature`;
//! Vonage: the signed-webhook `sig`; Meta: `X-Hub-Signature-256`), read by the
//! provider's own module (`twilio::receipt`, `vonage::receipt`,
//! `meta::receipts`), then applied by
//! `verifyd_core::delivery::receipts`. Unknown message ids and statuses are
//! acknowledged and ignored, so providers do not retry them forever.

use actix_web::{HttpRequest, HttpResponse, web};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use verifyd_core::delivery::receipts::{self, Receipt};
use verifyd_providers::vonage::{SignatureMethod, verify_signed_callback};

use super::AppState;
use super::body::RawBody;
use super::problem::ApiError;

/// What the receipt endpoints need from configuration.
#[derive(Default)]
pub struct Receipts {
    pub twilio: Option<TwilioReceipts>,
    pub vonage: Option<VonageReceipts>,
    pub meta: Option<MetaReceipts>,
    pub fallback_to_voice: bool,
}

/// Meta signs its webhooks with the app secret, and confirms the
/// subscription with the verify token.
pub struct MetaReceipts {
    pub app_secret: SecretString,
    pub verify_token: Option<SecretString>,
}

/// Vonage signs receipts with the account's signature secret and method.
pub struct VonageReceipts {
    pub signature_secret: SecretString,
    pub method: SignatureMethod,
}

/// How far a signed receipt's `timestamp` may be from now.
const VONAGE_TOLERANCE: Duration = Duration::from_secs(300);

pub struct TwilioReceipts {
    pub auth_token: SecretString,
    /// The `StatusCallback` URL verifyd gives Twilio, exactly: Twilio signs it.
    pub url: String,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/callbacks/twilio", web::post().to(twilio))
        .route("/v1/callbacks/vonage", web::get().to(vonage))
        .route("/v1/callbacks/vonage", web::post().to(vonage))
        .route("/v1/callbacks/meta", web::get().to(meta_subscribe))
        .route("/v1/callbacks/meta", web::post().to(meta));
}

/// Meta's webhook subscription check: `hub.mode=subscribe`, the verify token
/// configured, and `hub.challenge` echoed as the body.
async fn meta_subscribe(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    use subtle::ConstantTimeEq;
    let Some(config) = &state.receipts.meta else {
        return Err(ApiError::NotFound);
    };
    let params = form_params(request.query_string().as_bytes(), "not a Meta webhook subscription")?;
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let token_matches = match (&config.verify_token, get("hub.verify_token")) {
        (Some(expected), Some(given)) => bool::from(expected.expose_secret().as_bytes().ct_eq(given.as_bytes())),
        _ => false,
    };
    match (get("hub.mode"), get("hub.challenge")) {
        (Some("subscribe"), Some(challenge)) if token_matches && challenge.len() <= 256 => {
            Ok(HttpResponse::Ok().content_type("text/plain").body(challenge.to_owned()))
        }
        _ => {
            metrics::counter!("verifyd_receipts_refused_total", "provider" => "meta").increment(1);
            Err(ApiError::BadSignature("hub.verify_token"))
        }
    }
}

/// Meta's WhatsApp webhooks: message statuses, signed over the raw body.
async fn meta(state: web::Data<AppState>, request: HttpRequest, body: RawBody) -> Result<HttpResponse, ApiError> {
    let Some(config) = &state.receipts.meta else {
        return Err(ApiError::NotFound);
    };
    let signature = request.headers().get("X-Hub-Signature-256").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !verifyd_providers::meta::verify_signature(&config.app_secret, &body, signature) {
        metrics::counter!("verifyd_receipts_refused_total", "provider" => "meta").increment(1);
        return Err(ApiError::BadSignature("X-Hub-Signature-256"));
    }
    let Some(receipts) = verifyd_providers::meta::receipts(&body) else {
        return Err(ApiError::MalformedBody("not a WhatsApp Business webhook".to_owned()));
    };
    for receipt in &receipts {
        apply(&state, receipt).await?;
    }
    Ok(HttpResponse::Ok().finish())
}

/// Twilio's message and call status callbacks (form-encoded, signed).
async fn twilio(state: web::Data<AppState>, request: HttpRequest, body: RawBody) -> Result<HttpResponse, ApiError> {
    let Some(config) = &state.receipts.twilio else {
        return Err(ApiError::NotFound);
    };
    let signature = request.headers().get("X-Twilio-Signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let params = form_params(&body, "not a Twilio status callback")?;
    if !verifyd_providers::twilio::verify_request(&config.auth_token, &config.url, &params, signature) {
        metrics::counter!("verifyd_receipts_refused_total", "provider" => "twilio").increment(1);
        return Err(ApiError::BadSignature("X-Twilio-Signature"));
    }
    match verifyd_providers::twilio::receipt(&params) {
        Some(receipt) => apply(&state, &receipt).await,
        None => Ok(HttpResponse::NoContent().finish()),
    }
}

/// Vonage's SMS delivery receipts (DLR): query parameters (GET), a form or a
/// JSON object (POST), signed with `sig` and `timestamp` (Vonage's "signed
/// webhooks"). Unsigned receipts are refused: anyone could post one.
async fn vonage(state: web::Data<AppState>, request: HttpRequest, body: RawBody) -> Result<HttpResponse, ApiError> {
    let Some(config) = &state.receipts.vonage else {
        return Err(ApiError::NotFound);
    };
    let content_type = request.headers().get("content-type").and_then(|v| v.to_str().ok());
    let params = vonage_params(request.query_string(), content_type, &body)?;
    let now = std::time::SystemTime::now();
    let secret = config.signature_secret.expose_secret().as_bytes();
    if verify_signed_callback(&params, secret, config.method, now, VONAGE_TOLERANCE).is_err() {
        metrics::counter!("verifyd_receipts_refused_total", "provider" => "vonage").increment(1);
        return Err(ApiError::BadSignature("sig"));
    }
    match verifyd_providers::vonage::receipt(&params) {
        Some(receipt) => apply(&state, &receipt).await,
        None => Ok(HttpResponse::NoContent().finish()),
    }
}

/// A receipt's parameters from the query string (no body), a form or a flat
/// JSON object (by `content_type`).
pub fn vonage_params(query: &str, content_type: Option<&str>, body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    const NOT_A_DLR: &str = "not a Vonage delivery receipt";
    if body.is_empty() {
        return form_params(query.as_bytes(), NOT_A_DLR);
    }
    if content_type.is_some_and(|v| v.contains("json")) {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|_| ApiError::MalformedBody(NOT_A_DLR.into()))?;
        return Ok(object
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect());
    }
    form_params(body, NOT_A_DLR)
}

/// Name/value pairs of a form body or a query string, in order, repeats kept
/// (signatures cover every one).
pub fn form_params(body: &[u8], what: &str) -> Result<Vec<(String, String)>, ApiError> {
    let malformed = || ApiError::MalformedBody(what.to_owned());
    let text = std::str::from_utf8(body).map_err(|_| malformed())?;
    web::Query::<Vec<(String, String)>>::from_query(text).map(web::Query::into_inner).map_err(|_| malformed())
}

async fn apply(state: &AppState, receipt: &Receipt) -> Result<HttpResponse, ApiError> {
    let applied = receipts::apply(
        &state.pool,
        &state.core.relay,
        receipt,
        state.receipts.fallback_to_voice,
        verifyd_core::timestamp::now(),
    )
    .await
    .map_err(ApiError::internal)?;
    tracing::info!(provider = receipt.provider, message_id = %receipt.message_id, status = receipt.status.as_str(),
        outcome = ?applied, "delivery receipt");
    Ok(HttpResponse::NoContent().finish())
}
