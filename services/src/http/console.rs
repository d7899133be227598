//! The operator console: one page at `/ops`, its script and style (embedded in
//! the binary: no CDN, nothing fetched elsewhere), and its sign-in.
//!
//! Signing in posts the key once, in a JSON body (never a URL, so never an
//! access log line); the answer sets a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` over HTTPS) and gives the page its CSRF token.
//! From then on the page calls the same `/v1/ops/…` API as any operator, with
//! the cookie, and sends the token with everything that changes something.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use verifyd_core::store::sessions;

use super::AppState;
use super::body::RawBody;
use super::operator::{CSRF_HEADER, cookie_name, csrf_token, same_origin, secure, session_token, token_hash, view_of};
use super::problem::ApiError;

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// Only the page's own script and style, no frames, no other origin.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(root)))
        .service(web::resource("/ops").route(web::get().to(page)))
        .service(web::resource("/ops/").route(web::get().to(page)))
        .service(web::resource("/ops/assets/console.js").route(web::get().to(script)))
        .service(web::resource("/ops/assets/console.css").route(web::get().to(style)))
        .service(
            web::resource("/ops/session")
                .route(web::post().to(sign_in))
                .route(web::get().to(session))
                .route(web::delete().to(sign_out)),
        );
}

fn hardened(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    response
}

async fn root(state: web::Data<AppState>) -> HttpResponse {
    if !state.console.enabled {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::SeeOther().insert_header((header::LOCATION, "/ops")).finish()
}

async fn page(state: web::Data<AppState>) -> HttpResponse {
    if !state.console.enabled {
        return HttpResponse::NotFound().finish();
    }
    hardened(HttpResponse::Ok())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/html; charset=utf-8")
        .body(PAGE)
}

async fn script() -> HttpResponse {
    hardened(HttpResponse::Ok())
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type("text/javascript; charset=utf-8")
        .body(SCRIPT)
}

async fn style() -> HttpResponse {
    hardened(HttpResponse::Ok())
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type("text/css; charset=utf-8")
        .body(STYLE)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: secrecy::SecretString,
}

/// What the page knows of its session.
#[derive(Serialize)]
struct SessionInfo {
    key_id: String,
    /// `deployment`, or the tenant's name.
    view: String,
    csrf_token: String,
    #[serde(with = "verifyd_core::timestamp")]
    expires_at: DateTime<Utc>,
}

fn cookie(token: &str, max_age: i64, secure: bool) -> String {
    let name = cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// The key's source networks allow this client.
fn from_allowed_source(
    req: &HttpRequest,
    state: &AppState,
    principal: &crate::api_keys::Principal,
) -> Result<(), ApiError> {
    let sources = principal.sources();
    let client = (!sources.anywhere()).then(|| super::client_addr::of(req, &state.trusted_proxies)).flatten();
    if sources.allows(client) {
        Ok(())
    } else {
        Err(ApiError::ForbiddenSource("this API key is not accepted from this address"))
    }
}

/// Signs in with an operator key (or a tenant's key with the `ops` scope).
async fn sign_in(req: HttpRequest, state: web::Data<AppState>, body: RawBody) -> Result<HttpResponse, ApiError> {
    if !state.console.enabled {
        return Err(ApiError::NotFound);
    }
    if !same_origin(&req) {
        return Err(ApiError::Csrf("the sign-in comes from another site"));
    }
    let body: SignIn =
        serde_json::from_slice(&body).map_err(|_| ApiError::MalformedBody("expected {\"key\": \"…\"}".into()))?;
    let principal = state.keys.authenticate(&body.key).await?.map_err(|_| ApiError::Unauthenticated)?;
    from_allowed_source(&req, &state, &principal)?;
    let (view, key_id) = view_of(principal)?;
    let bytes: [u8; 32] = rand::rng().random();
    let token = hex::encode(bytes);
    let now = verifyd_core::timestamp::now();
    let ttl = i64::try_from(state.console.session_ttl_secs).unwrap_or(i64::MAX);
    let expires_at = now + TimeDelta::seconds(ttl);
    sessions::insert(&state.pool, &token_hash(&token), &key_id, now, expires_at).await?;
    tracing::info!(key_id, view = view.tenant_name().unwrap_or("deployment"), "console sign-in");
    let info = SessionInfo {
        view: view.tenant_name().map_or_else(|| "deployment".to_owned(), str::to_owned),
        csrf_token: csrf_token(&state.core.keys, &token),
        key_id,
        expires_at,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, cookie(&token, ttl, secure(&req, state.public_url.as_deref()))))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(info))
}

/// The signed-in session, with its CSRF token: `401` when there is none.
async fn session(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.console.enabled {
        return Err(ApiError::NotFound);
    }
    let token = session_token(&req, state.public_url.as_deref()).ok_or(ApiError::Unauthenticated)?;
    let (key_id, expires_at) = sessions::live(&state.pool, &token_hash(&token), verifyd_core::timestamp::now())
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let principal = state.keys.still_live(&key_id).await?.ok_or(ApiError::Unauthenticated)?;
    from_allowed_source(&req, &state, &principal)?;
    let (view, key_id) = view_of(principal)?;
    let info = SessionInfo {
        view: view.tenant_name().map_or_else(|| "deployment".to_owned(), str::to_owned),
        csrf_token: csrf_token(&state.core.keys, &token),
        key_id,
        expires_at,
    };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(info))
}

/// Signs out: the session ends here and in every process.
async fn sign_out(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let token = session_token(&req, state.public_url.as_deref()).ok_or(ApiError::Unauthenticated)?;
    let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let expected = csrf_token(&state.core.keys, &token);
    if !same_origin(&req) || !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(ApiError::Csrf("missing or wrong X-CSRF-Token: reload the console"));
    }
    sessions::delete(&state.pool, &token_hash(&token)).await?;
    Ok(HttpResponse::NoContent()
        .insert_header((header::SET_COOKIE, cookie("", 0, secure(&req, state.public_url.as_deref()))))
        .finish())
}
