//! The HTTP API. Handlers parse into domain types and talk to actors; every
//! error leaves through `problem::ApiError`.

pub mod abuse;
pub mod accounts;
pub mod admin;
pub mod api_keys;
pub mod auth;
pub mod body;
pub mod branding;
pub mod callbacks;
pub mod client_addr;
pub mod console;
pub mod credentials;
pub mod dev;
pub mod download;
pub mod enrolment;
pub mod factor_view;
pub mod fallback;
pub mod gate;
pub mod json;
pub mod limits;
pub mod openapi;
pub mod operator;
pub mod ops;
pub mod overload;
pub mod probes;
pub mod problem;
pub mod verifications;
pub mod voice_scripts;
pub mod webhooks;

use std::sync::Arc;

use actix::Addr;
use actix_web::web;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;
use verifyd_core::account::AccountStateActor;
use verifyd_core::ids::{AccountId, OrganisationId, Tenant, Who};
use verifyd_core::infra::shards::Shards;
use verifyd_core::runtime::Core;
use verifyd_core::verification::VerificationActor;

use problem::ApiError;

pub struct AppState {
    pub pool: PgPool,
    pub core: Arc<Core>,
    pub amqp: Arc<lapin::Connection>,
    pub keys: crate::api_keys::Authenticator,
    /// Peers whose `X-Forwarded-For` is believed (`http.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub receipts: callbacks::Receipts,
    /// `verification.app_name`: named in texts and calls of tenants without a
    /// display name.
    pub app_name: String,
    /// `verification.ttl_secs`: the time left an example text says.
    pub code_ttl: std::time::Duration,
    /// The longest a code lives (a verification's or a challenge's): what an
    /// SMS template's longest rendering is counted for.
    pub longest_code_ttl: std::time::Duration,
    /// The operator console's settings.
    pub console: crate::config::Console,
    /// `http.public_url`: the console's cookie is `Secure` behind HTTPS.
    pub public_url: Option<String>,
    /// `runtime.report_interval_ms`: the overview's idea of a stale process.
    pub report_interval_ms: u64,
    /// What a webhook endpoint's URL may be (`http://` and private
    /// addresses in development mode only).
    pub webhook_urls: verifyd_core::webhooks::UrlRules,
}

impl AppState {
    pub fn verification(&self) -> Result<&Shards<VerificationActor>, ApiError> {
        self.core.verification.as_ref().ok_or(ApiError::Unavailable)
    }

    /// The account-state shard that owns this tenant's account.
    pub fn account_state(&self, tenant: &Tenant, account_id: &AccountId) -> &Addr<AccountStateActor> {
        self.core.account_state.pick(&(tenant.id, account_id.as_str()))
    }
}

/// A body carrying what a person typed (a verification code, an authenticator
/// code, a backup or recovery code). It is read as any JSON value, so a
/// malformed one (a number, say) is refused with a fixed message instead of the
/// JSON parser's error text, which quotes the value; no `Debug`, so it cannot
/// reach a log line.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    /// What the person typed.
    #[schema(value_type = String, example = "4821736")]
    code: serde_json::Value,
}

impl CodeBody {
    pub fn typed(&self) -> Result<&str, ApiError> {
        typed(&self.code)
    }
}

/// A typed code from a JSON value read as such (see `CodeBody`).
pub fn typed(code: &serde_json::Value) -> Result<&str, ApiError> {
    match code {
        serde_json::Value::String(code) => Ok(code.as_str()),
        _ => Err(ApiError::MalformedBody("`code` must be a string: a code is typed, and may start with 0".to_owned())),
    }
}

/// The account id in a path.
pub fn account_id(raw: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(raw).map_err(|e| ApiError::field("account_id", e))
}

/// An organisation id: 1 to 128 printable characters.
pub fn organisation_id(raw: &str) -> Result<OrganisationId, ApiError> {
    OrganisationId::parse(raw).map_err(|e| ApiError::field("organisation_id", e))
}

/// A body that may be absent (or only white space): the default is assumed;
/// anything else must parse.
pub fn optional_body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    json::parse(bytes)
}

/// An id in a path: anything that is not one of ours names nothing.
pub fn path_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound)
}

/// Who acts, for the audit trail: `actor` as the backend names the person (the
/// account itself when absent), and the API key's id.
pub fn who(actor: Option<String>, account: Option<&AccountId>, key_id: String) -> Result<Who, ApiError> {
    let actor = match (actor, account) {
        (Some(a), _) => {
            AccountId::parse(&a).map_err(|_| ApiError::field("actor", "must be 1 to 128 printable characters"))?
        }
        (None, Some(account)) => account.clone(),
        (None, None) => return Err(ApiError::field("actor", "is required: who makes this change")),
    };
    Ok(Who { actor, api_key_id: Some(key_id) })
}

/// A step-up proof as a body carries it. No `Debug`: it is a credential.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "vp1.eyJ0ZW5hbnRfaWQiOi….Xk3…")]
pub struct ProofField(pub String);

/// A query string the operation cannot read. serde's message quotes what
/// was sent (an unknown parameter's name, a value): only what the operation
/// expects is kept.
fn query_problem(e: &actix_web::error::QueryPayloadError) -> ApiError {
    let text = e.to_string();
    let expected = text.find("expected").map(|i| text[i..].trim_end_matches('.').to_owned());
    let message = match (text.contains("unknown field"), expected) {
        (true, Some(expected)) => format!("an unknown parameter; {expected}"),
        (_, Some(expected)) => format!("a parameter that cannot be read; {expected}"),
        (_, None) => "a parameter that cannot be read".to_owned(),
    };
    ApiError::field("query", message)
}

/// Every route. JSON bodies are read by `json::Json`, bounded by the app's
/// `PayloadConfig` (`http.max_body_bytes`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    {
        let path = web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into());
        let query = web::QueryConfig::default().error_handler(|e, _| query_problem(&e).into());
        cfg.app_data(path).app_data(query);
        verifications::routes(cfg);
        accounts::routes(cfg);
        enrolment::routes(cfg);
        gate::routes(cfg);
        admin::routes(cfg);
        api_keys::routes(cfg);
        ops::routes(cfg);
        probes::routes(cfg);
        console::routes(cfg);
        abuse::routes(cfg);
        branding::routes(cfg);
        callbacks::routes(cfg);
        voice_scripts::routes(cfg);
        webhooks::routes(cfg);
        openapi::routes(cfg);
    }
}
