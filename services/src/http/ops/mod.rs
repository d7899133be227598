//! Operator endpoints under `/v1/ops` (an operator key, a tenant key with the
//! `ops` scope, or the console's session; see `http::operator`): queues, the
//! overview, dead letters, deliveries and the operators' audit trail.

pub mod dead_letters;
pub mod deliveries;

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;
use verifyd_core::ops::overview::{self, Overview, QueueHealth};

use super::AppState;
use super::operator::Operator;
use super::problem::{ApiError, Problem};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/ops/queues").route(web::get().to(queues)))
        .service(web::resource("/v1/ops/overview").route(web::get().to(overview)));
    dead_letters::routes(cfg);
    deliveries::routes(cfg);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queues {
    queues: Vec<QueueHealth>,
}

/// Depth, consumers and oldest waiting age of every verifyd queue of the
/// deployment (what `verifyd queues` prints). It shows the whole deployment,
/// whichever key asks. `oldest_age_secs` is at most how long the oldest
/// waiting message has waited (0 when none waits; null when no consumer has
/// taken a timestamped message yet).
#[utoipa::path(get, path = "/v1/ops/queues", tag = "operations",
    responses((status = 200, body = Queues), (status = 403, description = "`forbidden_scope`", body = Problem)),
    security(("api_key" = ["ops"])))]
async fn queues(state: web::Data<AppState>, _: Operator) -> Result<HttpResponse, ApiError> {
    let queues = overview::queues(&state.pool, &state.amqp, &state.core.topology, verifyd_core::timestamp::now())
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(Queues { queues }))
}

/// Everything every process knows, in one answer: per queue the depth,
/// consumers and oldest waiting age; the outbox; dead letters by reason; per
/// provider over the last 5 and 60 minutes the sends, success rate, p50/p95
/// latency and errors by kind, each running process's circuit and the pacing
/// use; conversion per channel and country; prefix blocks in force; recent
/// failures; and the processes. A tenant's key sees its own tenant's
/// deliveries, letters, conversion and blocks.
#[utoipa::path(get, path = "/v1/ops/overview", tag = "operations",
    responses((status = 200, body = Overview), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("api_key" = ["ops"])))]
async fn overview(state: web::Data<AppState>, op: Operator) -> Result<HttpResponse, ApiError> {
    let overview = crate::ops::overview(
        &state.pool,
        Some(&state.amqp),
        &state.core.topology,
        &state.core.routes,
        Duration::from_millis(state.report_interval_ms),
        &op.view,
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(overview))
}
