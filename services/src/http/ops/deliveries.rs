//! Delivery history for operators: one verification's attempts, or the latest
//! failures everywhere; and the audit trail of operator actions.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use verifyd_core::store::attempts::{self, Recorded};
use verifyd_core::store::audit::{self, Operation};

use crate::http::AppState;
use crate::http::operator::Operator;
use crate::http::problem::{ApiError, Problem};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/ops/deliveries").route(web::get().to(deliveries)))
        .service(web::resource("/v1/ops/audit").route(web::get().to(operations)));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// One verification's attempts, oldest first; without it, the latest
    /// failed attempts, newest first.
    verification_id: Option<Uuid>,
    /// 1 to 200 (failures only); 50 by default.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deliveries {
    attempts: Vec<Recorded>,
}

/// Delivery attempts: provider, outcome, error kind, latency, receipt, time
/// and the destination masked; never the message.
#[utoipa::path(get, path = "/v1/ops/deliveries", tag = "operations",
    params(DeliveryParams),
    responses((status = 200, body = Deliveries), (status = 422, body = Problem)),
    security(("api_key" = ["ops"])))]
async fn deliveries(
    state: web::Data<AppState>,
    op: Operator,
    query: web::Query<DeliveryParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 200"));
    }
    let attempts = match query.verification_id {
        Some(id) => attempts::history(&state.pool, &op.view, id).await?,
        None => attempts::recent_failures(&state.pool, &op.view, limit).await?,
    };
    Ok(HttpResponse::Ok().json(Deliveries { attempts }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Entries older than this id (the previous page's `next_before`).
    before: Option<i64>,
    /// 1 to 500; 50 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperationsPage {
    entries: Vec<Operation>,
    next_before: Option<i64>,
}

/// What operators did, newest first: dead letters replayed and discarded
/// (`dead_letter.*`), operator keys created, rotated and revoked
/// (`operator_key.*`), each with the acting key.
#[utoipa::path(get, path = "/v1/ops/audit", tag = "operations",
    params(AuditParams),
    responses((status = 200, body = OperationsPage), (status = 422, body = Problem)),
    security(("api_key" = ["ops"])))]
async fn operations(
    state: web::Data<AppState>,
    op: Operator,
    query: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 500"));
    }
    let entries = audit::operations(&state.pool, op.view.tenant_id(), query.before, limit).await?;
    let next_before = (entries.len() as i64 == limit).then(|| entries.last().map(|e| e.id)).flatten();
    Ok(HttpResponse::Ok().json(OperationsPage { entries, next_before }))
}
