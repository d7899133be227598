//! Operator endpoints under `/v1/ops` (an operator key, a tenant key with the
//! `ops` scope, or the console's session; see `http::operator`): queues, the
//! overview, dead letters, deliveries and the operators' audit trail.

pub mod dead_letters;
pub mod deliveries;

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use verifyd_actors::ops::overview::Overview;
use verifyd_actors::store::processes;

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
pub struct QueueDepth {
    queue: String,
    /// Messages ready for delivery.
    messages: u32,
    consumers: u32,
    /// At most how long the oldest waiting message has waited (0 when none
    /// waits; null when no consumer has taken a timestamped message yet).
    oldest_age_secs: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queues {
    queues: Vec<QueueDepth>,
}

/// Depth, consumers and oldest waiting age of every verifyd queue of the
/// deployment (what `verifyd queues` prints). It shows the whole deployment,
/// whichever key asks.
#[utoipa::path(get, path = "/v1/ops/queues", tag = "operations",
    responses((status = 200, body = Queues), (status = 403, description = "`forbidden_scope`", body = Problem)),
    security(("api_key" = ["ops"])))]
async fn queues(state: web::Data<AppState>, _: Operator) -> Result<HttpResponse, ApiError> {
    let depths = state.core.topology.depths(&state.amqp).await.map_err(ApiError::internal)?;
    let marks = processes::marks(&state.pool).await?;
    let now = Utc::now();
    let queues = depths
        .into_iter()
        .map(|(queue, messages, consumers)| {
            let oldest_age_secs = match (messages, marks.iter().find(|(q, _)| *q == queue)) {
                (0, _) => Some(0.0),
                (_, Some((_, at))) => Some((now - *at).num_milliseconds().max(0) as f64 / 1000.0),
                (_, None) => None,
            };
            QueueDepth { queue, messages, consumers, oldest_age_secs }
        })
        .collect();
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
