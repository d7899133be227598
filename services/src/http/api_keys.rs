//! Managing a tenant's API keys over HTTP (`admin` scope): list, create,
//! rotate, revoke. A key never grants more than it holds: a new or rotated key
//! may only have scopes, and be used from networks, that the calling key has.
//! Revoking needs no such check: it only takes access away.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

use super::auth::{Admin, Caller};
use super::body::RawBody;
use super::json::Json;
use super::problem::{ApiError, Problem};
use super::{AppState, optional_body};
use crate::api_keys::{self, AllowedSources, IssuedKey, KeyInfo, KeySpec, MAX_GRACE, Scopes};

/// More networks than this in one key is a mistake.
const MAX_CIDRS: usize = 64;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/api-keys").route(web::get().to(list)).route(web::post().to(create)))
        .service(web::resource("/v1/api-keys/{key_id}").route(web::delete().to(revoke)))
        .service(web::resource("/v1/api-keys/{key_id}/rotate").route(web::post().to(rotate)));
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    api_keys: Vec<KeyInfo>,
}

/// The tenant's API keys, revoked and expired ones included. Never a secret
/// or its hash.
#[utoipa::path(get, operation_id = "list_api_keys", path = "/v1/api-keys", tag = "api keys",
    responses((status = 200, body = KeyList), (status = 403, description = "`forbidden_scope`", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn list(state: web::Data<AppState>, Caller { tenant, .. }: Caller<Admin>) -> Result<HttpResponse, ApiError> {
    let api_keys = api_keys::list(&state.pool, &tenant).await?;
    Ok(HttpResponse::Ok().json(KeyList { api_keys }))
}

/// A new key: what it may do and where from.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    /// What the key is for (1–100 printable characters).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    label: Option<String>,
    /// At least one of `verify`, `enrol`, `admin`, `ops`; only scopes the calling key holds.
    #[schema(example = json!(["verify"]))]
    #[schema(value_type = Vec<crate::api_keys::Scope>, min_items = 1)]
    scopes: Vec<String>,
    /// Networks (`10.0.0.0/8`) or addresses the key is accepted from; empty or
    /// absent: anywhere. Must lie within the calling key's own networks.
    #[serde(default)]
    #[schema(example = json!(["10.0.0.0/8"]))]
    allowed_cidrs: Vec<String>,
}

/// A key just made: `key` is shown this once (`Cache-Control: no-store`). No
/// `Debug`: it holds the key.
#[derive(Serialize, ToSchema)]
pub struct Issued {
    /// The whole key, `vk_<id>.<secret>`: store it now.
    #[schema(example = "vk_3f9a1c0b7d2e.Q2hhbmdlIG1lIGluIHByb2R1Y3Rpb24hISEhISEhISEhIQ")]
    key: String,
    api_key: KeyInfo,
    /// After a rotation: the old key, valid until its `expires_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<KeyInfo>,
}

impl Issued {
    fn of(issued: IssuedKey, previous: Option<KeyInfo>) -> Issued {
        Issued { key: issued.secret().to_owned(), api_key: issued.info, previous }
    }

    fn created(self) -> HttpResponse {
        HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(self)
    }
}

/// Create a key for the caller's tenant.
#[utoipa::path(post, operation_id = "create_api_key", path = "/v1/api-keys", tag = "api keys", request_body = NewKeyBody,
    responses((status = 201, description = "The key, shown once", body = Issued),
        (status = 403, description = "`forbidden_scope`: the calling key lacks `admin`, or a scope it would grant", body = Problem),
        (status = 422, description = "`invalid_field`: `label`, `scopes` or `allowed_cidrs`", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn create(
    state: web::Data<AppState>,
    caller: Caller<Admin>,
    body: Json<NewKeyBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if let Some(l) = &body.label
        && (l.is_empty() || l.chars().count() > 100 || l.chars().any(char::is_control))
    {
        return Err(ApiError::field("label", "must be 1 to 100 printable characters"));
    }
    let scopes = Scopes::parse(&body.scopes).map_err(|e| ApiError::field("scopes", e))?;
    if scopes.is_empty() {
        return Err(ApiError::field("scopes", "name at least one of verify, enrol, admin, ops"));
    }
    if let Some(scope) = caller.scopes.missing_from(scopes) {
        return Err(ApiError::ForbiddenScope { scope, granting: true });
    }
    if body.allowed_cidrs.len() > MAX_CIDRS {
        return Err(ApiError::field("allowed_cidrs", format!("at most {MAX_CIDRS} networks")));
    }
    let sources = AllowedSources::parse(&body.allowed_cidrs).map_err(|e| ApiError::field("allowed_cidrs", e))?;
    if !sources.within(&caller.sources) {
        return Err(ApiError::field("allowed_cidrs", "must lie within the networks this API key is accepted from"));
    }
    let spec = KeySpec { label: body.label, scopes, sources };
    let issued = api_keys::issue(&state.pool, &caller.tenant, &spec, &caller.as_actor()?).await?;
    tracing::info!(key_id = %issued.info.key_id, by = %caller.key_id, scopes = %scopes, "API key created");
    Ok(Issued::of(issued, None).created())
}

/// How long the old key keeps working.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// Seconds the old key stays valid (default 86400, at most 30 days; 0 ends it now).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2_592_000)]
    grace_secs: Option<u64>,
}

fn key_id(raw: &str) -> Result<&str, ApiError> {
    api_keys::valid_key_id(raw).then_some(raw).ok_or(ApiError::NotFound)
}

/// Rotate a key: a new key with the same label, scopes and networks, and the
/// old one valid for `grace_secs` more (both work meanwhile; after it the old
/// one is refused as unknown).
#[utoipa::path(post, path = "/v1/api-keys/{key_id}/rotate", tag = "api keys",
    params(("key_id" = String, Path, example = "vk_3f9a1c0b7d2e")), request_body(content = Option<RotateBody>),
    responses((status = 201, description = "The new key, shown once, and the old one with its `expires_at`", body = Issued),
        (status = 403, description = "`forbidden_scope` or `forbidden_source`: the key to rotate holds more than the calling key", body = Problem),
        (status = 404, description = "No live key of this tenant has this id", body = Problem),
        (status = 422, description = "`grace_secs` out of range", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn rotate(
    state: web::Data<AppState>,
    caller: Caller<Admin>,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let key_id = key_id(&path)?;
    let body: RotateBody = optional_body(&body)?;
    let grace = body.grace_secs.map_or(api_keys::DEFAULT_GRACE, Duration::from_secs);
    if grace > MAX_GRACE {
        return Err(ApiError::field("grace_secs", format!("at most {}", MAX_GRACE.as_secs())));
    }
    let target = api_keys::get(&state.pool, &caller.tenant, key_id).await?.ok_or(ApiError::NotFound)?;
    if let Some(scope) = caller.scopes.missing_from(target.scopes) {
        return Err(ApiError::ForbiddenScope { scope, granting: true });
    }
    if !target.sources().within(&caller.sources) {
        return Err(ApiError::ForbiddenSource(
            "the key to rotate is accepted from networks this API key is not: it cannot rotate it",
        ));
    }
    let rotated = api_keys::rotate(&state.pool, &caller.tenant, key_id, grace, &caller.as_actor()?)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.keys.evict(key_id);
    tracing::info!(key_id, new_key_id = %rotated.issued.info.key_id, by = %caller.key_id, ?grace, "API key rotated");
    Ok(Issued::of(rotated.issued, Some(rotated.previous)).created())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    revoked: KeyInfo,
}

/// Revoke a key: refused from now on by this process, and by every other
/// within `http.key_cache_secs`. Revoking a revoked key changes nothing.
#[utoipa::path(delete, path = "/v1/api-keys/{key_id}", tag = "api keys",
    params(("key_id" = String, Path, example = "vk_3f9a1c0b7d2e")),
    responses((status = 200, body = Revoked),
        (status = 403, description = "`forbidden_scope`", body = Problem),
        (status = 404, description = "This tenant has no key with this id", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn revoke(
    state: web::Data<AppState>,
    caller: Caller<Admin>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key_id = key_id(&path)?;
    let revoked =
        api_keys::revoke(&state.pool, &caller.tenant, key_id, &caller.as_actor()?).await?.ok_or(ApiError::NotFound)?;
    state.keys.evict(key_id);
    tracing::info!(key_id, by = %caller.key_id, "API key revoked");
    Ok(HttpResponse::Ok().json(Revoked { revoked }))
}
