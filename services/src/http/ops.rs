//! Liveness, readiness and Prometheus metrics.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
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
