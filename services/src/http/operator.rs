//! Who calls an operator endpoint (`/v1/ops/…`), and what they see:
//!
//! * a deployment operator key (`vo_…`, `verifyd keys create --operator`):
//!   everything, every tenant;
//! * a tenant's key with the `ops` scope: that tenant's dead letters and
//!   deliveries only (another tenant's letter is `404`, as if it did not exist);
//! * the console (`/ops`), signed in with either kind of key: a session cookie
//!   (`HttpOnly`, `SameSite=Strict`), and for every request that changes
//!   something an `X-CSRF-Token` header the page got at sign-in and an
//!   `Origin`, when sent, of this very host. The key itself never travels
//!   again after the sign-in, and never in a URL.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use verifyd_core::codes::keys::CodeKeys;
use verifyd_core::ids::View;
use verifyd_core::ids::{AccountId, Who};

use super::credentials::{self, Presented};
use super::problem::ApiError;
use super::{AppState, client_addr};
use crate::api_keys::{Principal, Scope};

/// The console's session cookie over plain HTTP (development).
pub const COOKIE: &str = "verifyd_console";
/// Over HTTPS: the `__Host-` prefix makes the browser refuse it from any other
/// host (a sibling subdomain cannot plant one) and insist on `Secure`, `Path=/`.
pub const SECURE_COOKIE: &str = "__Host-verifyd_console";

/// Whether the console runs behind HTTPS: this request's scheme (as a trusted
/// proxy forwards it) or the configured public URL.
pub fn secure(req: &HttpRequest, public_url: Option<&str>) -> bool {
    req.connection_info().scheme() == "https" || public_url.is_some_and(|u| u.starts_with("https://"))
}

/// The cookie's name for this request.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}
/// The header that proves a console request comes from the console page.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Binds CSRF tokens to their session under the server's MAC key.
const CSRF_CONTEXT: Uuid = Uuid::from_u128(0x6f70_735f_6373_7266_0000_0000_0000_0001);

/// How an operator call was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Key,
    Console,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Key => "api",
            Via::Console => "console",
        }
    }
}

pub struct Operator {
    pub view: View,
    pub key_id: String,
    pub via: Via,
}

impl Operator {
    /// The acting key, for the audit trail.
    pub fn who(&self) -> Result<Who, ApiError> {
        let actor = AccountId::parse(&self.key_id).map_err(|_| ApiError::Unauthenticated)?;
        Ok(Who { actor, api_key_id: Some(self.key_id.clone()) })
    }
}

/// The SHA-256 a session token is stored as.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The CSRF token of a session: derived from its token under the server key,
/// so nothing more is stored and a page of another session cannot use it.
pub fn csrf_token(keys: &CodeKeys, session_token: &str) -> String {
    hex::encode(keys.mac_bytes(CSRF_CONTEXT, session_token.as_bytes()))
}

/// `Authorization: Bearer …`, the scheme read case-insensitively.
pub fn bearer(req: &HttpRequest) -> Option<SecretString> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| SecretString::from(key.trim().to_owned()))
}

/// The session token in the request's `Cookie` header, if any: over HTTPS
/// only the `__Host-` cookie counts.
pub fn session_token(req: &HttpRequest, public_url: Option<&str>) -> Option<String> {
    let name = cookie_name(secure(req, public_url));
    req.headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|t| {
            !t.is_empty() && t.len() <= 128 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// An `Origin` header, when present, must be this host: a page elsewhere
/// cannot make the browser act with the console's cookie.
pub fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let host = req.connection_info().host().to_owned();
    origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(&host))
}

/// What a key may see at the operator endpoints.
pub fn view_of(principal: Principal) -> Result<(View, String), ApiError> {
    match principal {
        Principal::Operator { key_id, .. } => Ok((View::Deployment, key_id)),
        Principal::Tenant(k) if k.scopes.contains(Scope::Ops) => Ok((View::Tenant(k.tenant), k.key_id)),
        Principal::Tenant(_) => Err(ApiError::ForbiddenScope { scope: Scope::Ops, granting: false }),
    }
}

fn source_allowed(req: &HttpRequest, state: &AppState, principal: &Principal) -> Result<(), ApiError> {
    let sources = principal.sources();
    let client = (!sources.anywhere()).then(|| client_addr::of(req, &state.trusted_proxies)).flatten();
    if sources.allows(client) {
        return Ok(());
    }
    let client = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    tracing::warn!(key_id = principal.key_id(), %client, "operator key refused: used from outside its allowed networks");
    Err(ApiError::ForbiddenSource("this API key is not accepted from this address"))
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let req = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let (principal, token) = match credentials::of(&req, &state).await? {
                Some(Presented::Key(principal)) => {
                    source_allowed(&req, &state, &principal)?;
                    let (view, key_id) = view_of(principal)?;
                    return Ok(Operator { view, key_id, via: Via::Key });
                }
                Some(Presented::Session { principal, token }) => (principal, token),
                None => return Err(ApiError::Unauthenticated),
            };
            source_allowed(&req, &state, &principal)?;
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                if !same_origin(&req) {
                    return Err(ApiError::Csrf("the request comes from another site"));
                }
                let expected = csrf_token(&state.core.keys, &token);
                let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
                if !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
                    return Err(ApiError::Csrf("missing or wrong X-CSRF-Token: reload the console"));
                }
            }
            let (view, key_id) = view_of(principal)?;
            Ok(Operator { view, key_id, via: Via::Console })
        })
    }
}
