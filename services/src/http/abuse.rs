//! Abuse settings and what the pumping guard did:
//! `GET|PUT /v1/settings/geo-permissions` (admin) and
//! `GET /v1/abuse/blocked-prefixes`, `DELETE /v1/abuse/blocked-prefixes/{prefix}` (ops).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use verifyd_core::abuse::geo::{Countries, GeoPermissions};
use verifyd_core::abuse::pumping::{Block, Prefix};

use super::AppState;
use super::auth::{Admin, Caller, Ops};
use super::json::Json;
use super::problem::{ApiError, Problem};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/settings/geo-permissions")
            .route(web::get().to(get_geo_permissions))
            .route(web::put().to(put_geo_permissions)),
    )
    .service(web::resource("/v1/abuse/blocked-prefixes").route(web::get().to(blocked_prefixes)))
    .service(web::resource("/v1/abuse/blocked-prefixes/{prefix}").route(web::delete().to(lift_block)));
}

/// The tenant's destination countries per channel (ISO 3166-1 alpha-2).
#[derive(Debug, Serialize, ToSchema)]
pub struct GeoView {
    /// The tenant's SMS list; null: `default.sms` applies.
    #[schema(value_type = Option<Vec<String>>, example = json!(["GB", "FR"]))]
    sms: Option<Countries>,
    /// The tenant's voice list; null: `default.voice` applies.
    #[schema(value_type = Option<Vec<String>>, example = json!(["GB"]))]
    voice: Option<Countries>,
    /// The tenant's WhatsApp list; null: `default.whatsapp` applies.
    #[schema(value_type = Option<Vec<String>>, example = json!(["BR", "IN"]))]
    whatsapp: Option<Countries>,
    /// The deployment's defaults (`abuse.default_countries`); null: every country.
    default: GeoPermissions,
}

/// New lists; a channel that is null or absent goes back to the default, an
/// empty list allows no destination at all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoBody {
    #[serde(default)]
    #[schema(example = json!(["GB", "FR"]))]
    sms: Option<Vec<String>>,
    #[serde(default)]
    #[schema(example = json!(["GB"]))]
    voice: Option<Vec<String>>,
    #[serde(default)]
    #[schema(example = json!(["BR", "IN"]))]
    whatsapp: Option<Vec<String>>,
}

fn geo_view(state: &AppState, own: GeoPermissions) -> GeoView {
    GeoView {
        sms: own.sms,
        voice: own.voice,
        whatsapp: own.whatsapp,
        default: state.core.abuse.settings().default_countries.clone(),
    }
}

// scope: admin
/// The destination countries this tenant may send codes to, per channel.
#[utoipa::path(get, path = "/v1/settings/geo-permissions", tag = "abuse",
    responses((status = 200, body = GeoView)),
    security(("api_key" = ["admin"])))]
async fn get_geo_permissions(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Admin>,
) -> Result<HttpResponse, ApiError> {
    let own = state.core.abuse.geo_permissions(tenant.id).await?;
    Ok(HttpResponse::Ok().json(geo_view(&state, own)))
}

// scope: admin
/// Set the destination countries this tenant may send codes to, per channel.
/// A send elsewhere is refused with `403 destination_not_allowed`. Another
/// process may take `abuse.cache_secs` to refuse early; the decision inside
/// its transaction follows at once.
#[utoipa::path(put, path = "/v1/settings/geo-permissions", tag = "abuse",
    request_body = GeoBody,
    responses((status = 200, body = GeoView),
        (status = 422, description = "An unknown country code (`invalid_field`, `field`: the channel)", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn put_geo_permissions(
    state: web::Data<AppState>,
    caller: Caller<Admin>,
    body: Json<GeoBody>,
) -> Result<HttpResponse, ApiError> {
    let GeoBody { sms, voice, whatsapp } = body.into_inner();
    let parse = |field: &'static str, list: Option<Vec<String>>| {
        list.map(|l| Countries::parse(&l)).transpose().map_err(|e| ApiError::field(field, e))
    };
    let lists = GeoPermissions {
        sms: parse("sms", sms)?,
        voice: parse("voice", voice)?,
        whatsapp: parse("whatsapp", whatsapp)?,
    };
    let (tenant, key_id) = (&caller.tenant, &caller.key_id);
    state.core.abuse.set_geo_permissions(tenant.id, lists.clone(), &caller.as_actor()?).await?;
    tracing::info!(tenant = %tenant.name, api_key_id = %key_id, sms = ?lists.sms.as_ref().map(Countries::to_vec),
        voice = ?lists.voice.as_ref().map(Countries::to_vec), whatsapp = ?lists.whatsapp.as_ref().map(Countries::to_vec),
        "geo permissions changed");
    Ok(HttpResponse::Ok().json(geo_view(&state, lists)))
}

/// A destination prefix blocked by the pumping guard.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockView {
    #[schema(example = "+447911")]
    prefix: String,
    /// ISO 3166-1 alpha-2, when the numbering plan tells it.
    country: Option<String>,
    #[serde(with = "verifyd_core::timestamp")]
    blocked_at: DateTime<Utc>,
    /// It runs out then, unless lifted first.
    #[serde(with = "verifyd_core::timestamp")]
    blocked_until: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "verifyd_core::timestamp::option")]
    lifted_at: Option<DateTime<Utc>>,
    /// Verifications sent to the prefix in the window when it was blocked …
    sent: i32,
    /// … and how many of them were approved.
    approved: i32,
}

impl From<Block> for BlockView {
    fn from(b: Block) -> Self {
        BlockView {
            prefix: b.prefix,
            country: b.country,
            blocked_at: b.blocked_at,
            blocked_until: b.blocked_until,
            lifted_at: b.lifted_at,
            sent: b.sent,
            approved: b.approved,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BlockList {
    blocked: Vec<BlockView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Lifted {
    lifted: BlockView,
}

// scope: ops
/// Destination prefixes blocked for this tenant now, newest first.
#[utoipa::path(get, path = "/v1/abuse/blocked-prefixes", tag = "abuse",
    responses((status = 200, body = BlockList)),
    security(("api_key" = ["ops"])))]
async fn blocked_prefixes(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Ops>,
) -> Result<HttpResponse, ApiError> {
    let blocks = state.core.abuse.blocked_prefixes(tenant.id, verifyd_core::timestamp::now()).await?;
    Ok(HttpResponse::Ok().json(BlockList { blocked: blocks.into_iter().map(BlockView::from).collect() }))
}

// scope: ops
/// Lift a block: sends to the prefix resume at once, and only what is sent
/// from now on counts towards another block.
#[utoipa::path(delete, path = "/v1/abuse/blocked-prefixes/{prefix}", tag = "abuse",
    params(("prefix" = String, Path, description = "`+447911` (URL-encoded `%2B447911`) or `447911`")),
    responses((status = 200, body = Lifted),
        (status = 404, description = "No block in force on that prefix", body = Problem),
        (status = 422, description = "Not a prefix (`invalid_field`)", body = Problem)),
    security(("api_key" = ["ops"])))]
async fn lift_block(
    state: web::Data<AppState>,
    caller: Caller<Ops>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let prefix = Prefix::parse(&path).map_err(|e| ApiError::field("prefix", e))?;
    let (tenant, key_id) = (&caller.tenant, &caller.key_id);
    let who = caller.as_actor()?;
    let lifted = state
        .core
        .abuse
        .lift(tenant.id, &prefix, verifyd_core::timestamp::now(), &who)
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(tenant = %tenant.name, api_key_id = %key_id, %prefix, "destination prefix block lifted by an operator");
    Ok(HttpResponse::Ok().json(Lifted { lifted: lifted.into() }))
}
