//! Liveness, readiness and Prometheus metrics: no API key (probes and scrapers
//! carry none). `serve` answers them on `http.bind`, a `worker` on
//! `metrics.worker_bind`, so every process can be scraped.
//!
//! Before each scrape (at most every two seconds) the deployment-wide gauges
//! are refreshed: queue depths, consumers and oldest waiting ages, the outbox,
//! dead letters waiting per reason. Every process exports the same values for
//! those (dashboards take `max`); its own consumers and circuits are its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use verifyd_core::dead_letter::Reason;
use verifyd_core::delivery::routing::Routes;
use verifyd_core::ids::View;
use verifyd_core::infra::amqp::Topology;
use verifyd_core::infra::consumer::ConsumerHealth;
use verifyd_core::store::dead_letters;

/// What the probes read.
pub struct Probes {
    pub pool: PgPool,
    pub amqp: Arc<lapin::Connection>,
    pub health: Arc<ConsumerHealth>,
    pub topology: Topology,
    pub routes: Arc<Routes>,
    pub metrics: Option<PrometheusHandle>,
    /// `metrics.token`: the bearer token `/metrics` asks for, when set.
    pub token: Option<SecretString>,
    refreshed: Mutex<Option<Instant>>,
}

impl Probes {
    pub fn new(
        pool: PgPool,
        amqp: Arc<lapin::Connection>,
        health: Arc<ConsumerHealth>,
        topology: Topology,
        routes: Arc<Routes>,
        metrics: Option<PrometheusHandle>,
        token: Option<SecretString>,
    ) -> Probes {
        Probes { pool, amqp, health, topology, routes, metrics, token, refreshed: Mutex::new(None) }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)));
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// 200 when PostgreSQL answers, the RabbitMQ connection is up and every queue
/// consumer this process started still receives.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready: `database`, `rabbitmq` and `consumers` (live, expected)"),
        (status = 503, description = "Not ready; the same body says what is missing")))]
pub async fn readyz(probes: web::Data<Probes>) -> HttpResponse {
    let database = sqlx::query("SELECT 1").execute(&probes.pool).await.is_ok();
    let rabbitmq = probes.amqp.status().connected();
    let (live, expected) = probes.health.counts();
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

/// Prometheus metrics (text exposition format): every metric with `# HELP`,
/// every series from the start.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn metrics(req: HttpRequest, probes: web::Data<Probes>) -> HttpResponse {
    let Some(handle) = &probes.metrics else {
        return HttpResponse::NotFound().finish();
    };
    if let Some(token) = &probes.token {
        let presented = super::operator::bearer(&req);
        let matches =
            presented.is_some_and(|p| bool::from(p.expose_secret().as_bytes().ct_eq(token.expose_secret().as_bytes())));
        if !matches {
            return HttpResponse::Unauthorized().insert_header(("WWW-Authenticate", "Bearer")).finish();
        }
    }
    let due = {
        let mut last = probes.refreshed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = last.is_none_or(|at| at.elapsed() >= Duration::from_secs(2));
        if due {
            *last = Some(Instant::now());
        }
        due
    };
    if due {
        refresh(&probes).await;
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(handle.render())
}

/// Sets the gauges that are read rather than counted.
async fn refresh(p: &Probes) {
    let (live, expected) = p.health.counts();
    metrics::gauge!("verifyd_consumers_live").set(live as f64);
    metrics::gauge!("verifyd_consumers_expected").set(expected as f64);
    // This process's circuits.
    verifyd_core::ops::reporter::snapshot(&p.health, &p.routes, verifyd_core::timestamp::now());
    let now = verifyd_core::timestamp::now();
    match verifyd_core::ops::overview::queues(&p.pool, &p.amqp, &p.topology, now).await {
        Ok(queues) => {
            for q in queues.into_iter().filter(|q| !q.missing) {
                // NaN while unknown (messages wait, none was ever taken).
                let oldest = q.oldest_age_secs.unwrap_or(f64::NAN);
                metrics::gauge!("verifyd_queue_messages", "queue" => q.queue.clone()).set(f64::from(q.messages));
                metrics::gauge!("verifyd_queue_consumers", "queue" => q.queue.clone()).set(f64::from(q.consumers));
                metrics::gauge!("verifyd_queue_oldest_age_seconds", "queue" => q.queue).set(oldest);
            }
        }
        Err(error) => tracing::warn!(%error, "metrics: queue depths unavailable"),
    }
    let outbox: Result<(i64, Option<chrono::DateTime<Utc>>), _> =
        sqlx::query_as("SELECT count(*), min(created_at) FROM outbox").fetch_one(&p.pool).await;
    if let Ok((rows, oldest)) = outbox {
        metrics::gauge!("verifyd_outbox_rows").set(rows as f64);
        let age = oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        metrics::gauge!("verifyd_outbox_oldest_age_seconds").set(age);
    }
    if let Ok((pending, oldest)) = verifyd_core::webhooks::store::backlog(&p.pool, None).await {
        metrics::gauge!("verifyd_webhook_pending").set(pending as f64);
        let age = oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        metrics::gauge!("verifyd_webhook_oldest_pending_age_seconds").set(age);
    }
    if let Ok(waiting) = dead_letters::waiting(&p.pool, &View::Deployment).await {
        for reason in Reason::ALL {
            let n = waiting.iter().find(|(r, _, _)| *r == reason).map_or(0, |(_, n, _)| *n);
            metrics::gauge!("verifyd_dead_letters", "reason" => reason.as_str()).set(n as f64);
        }
    }
}
