//! Liveness, readiness and Prometheus metrics (no API key: probes and
//! scrapers carry none), and operator endpoints under `/v1/ops` (`ops` scope).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Caller, Ops};
use super::problem::{ApiError, Problem};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/v1/ops/queues", web::get().to(queues));
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// 200 when PostgreSQL answers, the RabbitMQ connection is up and every queue
/// consumer this process started still receives.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready: `database`, `rabbitmq` and `consumers` (live, expected)"),
        (status = 503, description = "Not ready; the same body says what is missing")))]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let rabbitmq = state.amqp.status().connected();
    let (live, expected) = state.core.health.counts();
    let consumers = live == expected;
    let body = json!({
        "database": database,
        "rabbitmq": rabbitmq,
        "consumers": { "live": live, "expected": expected },
    });
    if database && rabbitmq && consumers {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, body = String, content_type = "text/plain")))]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match &state.metrics {
        Some(handle) => HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(handle.render()),
        None => HttpResponse::NotFound().finish(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueDepth {
    queue: String,
    /// Messages ready for delivery.
    messages: u32,
    consumers: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queues {
    queues: Vec<QueueDepth>,
}

/// Depth and consumer count of every verifyd queue of the deployment (what
/// `verifyd queues` prints). For operators: it shows the whole deployment,
/// not one tenant.
#[utoipa::path(get, path = "/v1/ops/queues", tag = "operations",
    responses((status = 200, body = Queues), (status = 403, description = "`forbidden_scope`", body = Problem)),
    security(("api_key" = ["ops"])))]
async fn queues(state: web::Data<AppState>, _: Caller<Ops>) -> Result<HttpResponse, ApiError> {
    let depths = state.core.topology.depths(&state.amqp).await.map_err(ApiError::internal)?;
    let queues =
        depths.into_iter().map(|(queue, messages, consumers)| QueueDepth { queue, messages, consumers }).collect();
    Ok(HttpResponse::Ok().json(Queues { queues }))
}
