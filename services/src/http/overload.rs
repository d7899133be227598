//! A bound on the requests one `serve` process works on at once
//! (`http.max_in_flight`). Past it, a request is answered `503 overloaded`
//! with `Retry-After: 1` at once, before authentication or any database
//! work: under more load than it can serve, the process sheds the excess
//! instead of queueing it, so latency and memory stay bounded (each queued
//! request held its connection and buffers while it waited for a database
//! connection: memory grew with the backlog, docs/benchmarks.md). The probes
//! and `/metrics` are not counted: an overloaded process still tells its
//! orchestrator it is alive and Prometheus what it is doing.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};
use tokio::sync::Semaphore;

use super::problem::ApiError;

/// The permits of `http.max_in_flight`, shared by every HTTP worker thread
/// (none when it is 0: no bound).
#[derive(Clone)]
pub struct InFlight {
    permits: Option<Arc<Semaphore>>,
    max: usize,
}

impl InFlight {
    pub fn new(max: usize) -> InFlight {
        InFlight { permits: (max > 0).then(|| Arc::new(Semaphore::new(max))), max }
    }
}

/// Paths answered however busy the process is.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Middleware (`middleware::from_fn`): takes a permit for the request's
/// handling, or answers `503 overloaded` without one.
pub async fn shed(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let bound = req.app_data::<InFlight>().filter(|_| !exempt(req.path()));
    let Some((permits, max)) = bound.and_then(|b| Some((b.permits.clone()?, b.max))) else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    // Held until the handler has answered.
    let Ok(_permit) = permits.try_acquire_owned() else {
        metrics::counter!("verifyd_http_shed_total").increment(1);
        return Ok(req.into_response(ApiError::Overloaded(max).error_response()).map_into_right_body());
    };
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}
