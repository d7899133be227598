//! A tenant's webhook endpoints (admin): create (the signing secret is shown
//! once), list, read, change (URL, event types, enabled), delete, rotate the
//! secret with an overlap, and read an endpoint's recent deliveries. Delivery
//! itself is in `verifyd_core::webhooks`; see docs/webhooks.md.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use verifyd_core::domain::webhook::DeliveryStatus;
use verifyd_core::webhooks::store::{self, Change, DeliveryRow, Endpoint, WebhookStoreError};
use verifyd_core::webhooks::{EndpointUrl, EventFilter, SigningSecret, message_id};

use super::auth::{Admin, Caller};
use super::body::RawBody;
use super::json::Json;
use super::problem::{ApiError, Problem};
use super::{AppState, optional_body, path_id};

/// The longest overlap a rotation may give the previous secret.
const MAX_OVERLAP_SECS: u64 = 30 * 86_400;
/// The overlap when none is asked for: a day.
const DEFAULT_OVERLAP_SECS: u64 = 86_400;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/webhooks").route(web::get().to(list)).route(web::post().to(create)))
        .service(
            web::resource("/v1/webhooks/{id}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
        )
        .service(web::resource("/v1/webhooks/{id}/rotate-secret").route(web::post().to(rotate)))
        .service(web::resource("/v1/webhooks/{id}/deliveries").route(web::get().to(deliveries)));
}

/// A webhook endpoint. Never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    id: Uuid,
    #[schema(example = "https://hooks.example.com/verifyd")]
    url: String,
    /// `*`, event names (`verification.approved`) and families (`factor.*`).
    #[schema(example = json!(["verification.*", "account.reset"]))]
    event_types: Vec<String>,
    enabled: bool,
    /// Why it is off: `manual` (turned off over the API) or `gone` (the
    /// receiver answered `410 Gone`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "manual")]
    disabled_reason: Option<String>,
    /// After a rotation: until when the previous secret signs too.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "verifyd_core::timestamp::option")]
    #[schema(value_type = Option<String>)]
    previous_secret_expires_at: Option<DateTime<Utc>>,
    #[serde(with = "verifyd_core::timestamp")]
    #[schema(value_type = String)]
    created_at: DateTime<Utc>,
    #[serde(with = "verifyd_core::timestamp")]
    #[schema(value_type = String)]
    updated_at: DateTime<Utc>,
}

impl From<Endpoint> for WebhookView {
    fn from(e: Endpoint) -> Self {
        WebhookView {
            id: e.id,
            url: e.url.as_str().to_owned(),
            event_types: e.filter.entries().to_vec(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            previous_secret_expires_at: e.previous_expires_at,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    webhooks: Vec<WebhookView>,
}

/// An endpoint and its signing secret, shown this once (`Cache-Control:
/// no-store`). No `Debug`: it holds the secret.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    webhook: WebhookView,
    /// `whsec_<base64>`: what a Standard Webhooks library verifies with. Store it now.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
}

fn with_secret(status: actix_web::http::StatusCode, endpoint: Endpoint, secret: &SigningSecret) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(WebhookWithSecret { webhook: endpoint.into(), secret: secret.serialised() })
}

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    /// `https://` (`http://` in development mode only), at most 2048 bytes,
    /// no user name or password; in production not an address of this
    /// machine or a private network.
    #[schema(example = "https://hooks.example.com/verifyd", max_length = 2048)]
    url: String,
    /// What it receives; `["*"]` (everything) when absent.
    #[serde(default)]
    #[schema(example = json!(["verification.*"]), min_items = 1, max_items = 50)]
    event_types: Option<Vec<String>>,
    /// `true` when absent.
    #[serde(default)]
    enabled: Option<bool>,
}

fn parse_url(state: &AppState, raw: &str) -> Result<EndpointUrl, ApiError> {
    EndpointUrl::parse(raw, state.webhook_urls).map_err(|e| ApiError::field("url", e))
}

fn parse_filter(entries: &[String]) -> Result<EventFilter, ApiError> {
    EventFilter::parse(entries).map_err(|e| ApiError::field("event_types", e))
}

impl From<WebhookStoreError> for ApiError {
    fn from(e: WebhookStoreError) -> Self {
        match e {
            WebhookStoreError::TooMany(n) => ApiError::TooManyWebhooks(n),
            WebhookStoreError::Store(e) => e.into(),
        }
    }
}

// scope: admin
/// Add an endpoint. Every event of the tenant that its `event_types` match is
/// POSTed to it from now on, signed per Standard Webhooks with the secret in
/// this answer (the only time it is shown). Audited as `webhook.created`.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", operation_id = "create_webhook",
    request_body = NewWebhookBody,
    responses((status = 201, description = "The endpoint and its secret, shown once", body = WebhookWithSecret),
        (status = 409, description = "`too_many_webhooks`: the tenant holds 20 already", body = Problem),
        (status = 422, description = "`invalid_field`: `url` or `event_types`", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn create(
    state: web::Data<AppState>,
    caller: Caller<Admin>,
    body: Json<NewWebhookBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let url = parse_url(&state, &body.url)?;
    let filter = body.event_types.as_deref().map(parse_filter).transpose()?.unwrap_or_else(EventFilter::all);
    let enabled = body.enabled.unwrap_or(true);
    let who = caller.as_actor()?;
    let new = store::NewEndpoint { url: &url, filter: &filter, enabled };
    let (endpoint, secret) =
        store::create(&state.pool, &state.core.keys, caller.tenant.id, new, &who, verifyd_core::timestamp::now())
            .await?;
    tracing::info!(webhook_id = %endpoint.id, host = %url.host(), tenant = %caller.tenant.name,
        api_key_id = %caller.key_id, "webhook endpoint created");
    Ok(with_secret(actix_web::http::StatusCode::CREATED, endpoint, &secret))
}

// scope: admin
/// The tenant's endpoints, oldest first.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    responses((status = 200, body = WebhookList)),
    security(("api_key" = ["admin"])))]
async fn list(state: web::Data<AppState>, Caller { tenant, .. }: Caller<Admin>) -> Result<HttpResponse, ApiError> {
    let webhooks = store::list(&state.pool, tenant.id).await?.into_iter().map(WebhookView::from).collect();
    Ok(HttpResponse::Ok().json(WebhookList { webhooks }))
}

// scope: admin
/// One endpoint.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "get_webhook",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookView), (status = 404, body = Problem)),
    security(("api_key" = ["admin"])))]
async fn get(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Admin>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    let endpoint = store::get(&state.pool, tenant.id, id).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(WebhookView::from(endpoint)))
}

/// What to change; a field left out stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookChangeBody {
    #[serde(default)]
    #[schema(example = "https://hooks.example.com/verifyd", max_length = 2048)]
    url: Option<String>,
    #[serde(default)]
    #[schema(example = json!(["*"]), min_items = 1, max_items = 50)]
    event_types: Option<Vec<String>>,
    /// `false` turns it off (`disabled_reason: manual`): events from now on
    /// are not delivered to it, and deliveries still waiting are skipped.
    /// `true` turns it on again, also after a `410 Gone`.
    #[serde(default)]
    enabled: Option<bool>,
}

// scope: admin
/// Change an endpoint's URL, event types or whether it is on. Audited as
/// `webhook.updated` (with the host, never the whole URL).
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "update_webhook",
    params(("id" = Uuid, Path)), request_body = WebhookChangeBody,
    responses((status = 200, body = WebhookView), (status = 404, body = Problem),
        (status = 422, description = "`invalid_field`: `url` or `event_types`", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn update(
    state: web::Data<AppState>,
    caller: Caller<Admin>,
    path: web::Path<String>,
    body: Json<WebhookChangeBody>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    let body = body.into_inner();
    let url = body.url.as_deref().map(|u| parse_url(&state, u)).transpose()?;
    let filter = body.event_types.as_deref().map(parse_filter).transpose()?;
    let change = Change { url: url.as_ref(), filter: filter.as_ref(), enabled: body.enabled };
    let who = caller.as_actor()?;
    let endpoint = store::update(&state.pool, caller.tenant.id, id, &change, &who, verifyd_core::timestamp::now())
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(webhook_id = %id, enabled = endpoint.enabled, api_key_id = %caller.key_id, "webhook endpoint changed");
    Ok(HttpResponse::Ok().json(WebhookView::from(endpoint)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedWebhook {
    deleted: WebhookView,
}

// scope: admin
/// Delete an endpoint: nothing more is sent to it, deliveries still waiting
/// are dropped. Audited as `webhook.deleted`.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "delete_webhook",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = DeletedWebhook), (status = 404, body = Problem)),
    security(("api_key" = ["admin"])))]
async fn delete(
    state: web::Data<AppState>,
    caller: Caller<Admin>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    let who = caller.as_actor()?;
    let endpoint = store::delete(&state.pool, caller.tenant.id, id, &who, verifyd_core::timestamp::now())
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(webhook_id = %id, api_key_id = %caller.key_id, "webhook endpoint deleted");
    Ok(HttpResponse::Ok().json(DeletedWebhook { deleted: endpoint.into() }))
}

/// How long the previous secret keeps signing.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretBody {
    /// Seconds the previous secret signs beside the new one (default 86400,
    /// at most 30 days; 0 ends it now). Meanwhile `webhook-signature` holds
    /// both signatures, so a receiver can switch secrets whenever it likes.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2_592_000, example = 86400)]
    overlap_secs: Option<u64>,
}

// scope: admin
/// A new signing secret, shown once. The previous one keeps signing for
/// `overlap_secs`. Audited as `webhook.secret_rotated`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", operation_id = "rotate_webhook_secret",
    params(("id" = Uuid, Path)), request_body(content = Option<RotateSecretBody>),
    responses((status = 200, description = "The endpoint and its new secret, shown once", body = WebhookWithSecret),
        (status = 404, body = Problem),
        (status = 422, description = "`invalid_field`: `overlap_secs` out of range", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn rotate(
    state: web::Data<AppState>,
    caller: Caller<Admin>,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    let body: RotateSecretBody = optional_body(&body)?;
    let overlap = body.overlap_secs.unwrap_or(DEFAULT_OVERLAP_SECS);
    if overlap > MAX_OVERLAP_SECS {
        return Err(ApiError::field("overlap_secs", format!("at most {MAX_OVERLAP_SECS}")));
    }
    let who = caller.as_actor()?;
    let overlap = Duration::from_secs(overlap);
    let (endpoint, secret) = store::rotate(
        &state.pool,
        &state.core.keys,
        caller.tenant.id,
        id,
        overlap,
        &who,
        verifyd_core::timestamp::now(),
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    tracing::info!(webhook_id = %id, overlap_secs = overlap.as_secs(), api_key_id = %caller.key_id,
        "webhook secret rotated");
    Ok(with_secret(actix_web::http::StatusCode::OK, endpoint, &secret))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Only deliveries in this status.
    #[serde(default)]
    #[param(inline)]
    status: Option<DeliveryStatus>,
    /// 1 to 200; 50 by default.
    #[serde(default)]
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// One event to this endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDelivery {
    /// The `webhook-id` header: the same on every attempt and replay.
    #[schema(example = "msg_6b1f0c6e2f7a4b8c9d0e1f2a3b4c5d6e")]
    webhook_id: String,
    event_id: Uuid,
    #[schema(example = "verification.approved")]
    event: String,
    status: DeliveryStatus,
    attempts: i32,
    /// The HTTP status of the last answer, if one came.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 200)]
    last_status: Option<i32>,
    /// What went wrong the last time, if something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "HTTP 503 Service Unavailable")]
    last_error: Option<String>,
    #[serde(with = "verifyd_core::timestamp")]
    #[schema(value_type = String)]
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "verifyd_core::timestamp::option")]
    #[schema(value_type = Option<String>)]
    finished_at: Option<DateTime<Utc>>,
}

impl From<DeliveryRow> for WebhookDelivery {
    fn from(d: DeliveryRow) -> Self {
        WebhookDelivery {
            webhook_id: message_id(d.id),
            event_id: d.event_id,
            event: d.event_type,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            finished_at: d.finished_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryList {
    deliveries: Vec<WebhookDelivery>,
}

// scope: admin
/// An endpoint's deliveries, newest first: what was sent, how often, and
/// what the receiver answered.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "list_webhook_deliveries",
    params(("id" = Uuid, Path), DeliveryParams),
    responses((status = 200, body = WebhookDeliveryList), (status = 404, body = Problem),
        (status = 422, description = "`invalid_field`: `limit`", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn deliveries(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Admin>,
    path: web::Path<String>,
    query: web::Query<DeliveryParams>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    let DeliveryParams { status, limit } = query.into_inner();
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 200"));
    }
    store::get(&state.pool, tenant.id, id).await?.ok_or(ApiError::NotFound)?;
    let rows = store::deliveries(&state.pool, tenant.id, id, status, limit).await?;
    Ok(HttpResponse::Ok().json(WebhookDeliveryList { deliveries: rows.into_iter().map(Into::into).collect() }))
}
