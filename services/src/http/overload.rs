//! A bound on the requests one `serve` process works on at once
//! (`http.max_in_flight`). Past it, a request is answered `503 overloaded`
//! with `Retry-After: 1` at once, before its handler does any work: under
//! more load than it can serve, the process sheds the excess instead of
//! queueing it, so latency and memory stay bounded (each queued request held
//! its connection and buffers while it waited for a database connection:
//! memory grew with the backlog, docs/benchmarks.md).
//!
//! Only requests that presented a live API key or console session are
//! counted (the credentials are settled first, `credentials.rs`). Anyone
//! can open connections and send a body slowly: counting anonymous requests
//! would let someone without a key hold every permit and shut the API. What
//! is left uncounted does no work for anyone without a key (it is refused
//! `401`), or must not be refused for load: the probes and `/metrics` (an
//! overloaded process is still alive and watched), the providers' receipts
//! and voice scripts (a shed receipt may be lost, a shed script leaves a
//! call silent), the console's page.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};
use tokio::sync::Semaphore;

use super::credentials;
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

/// Middleware (`middleware::from_fn`, inside `credentials::authenticate_first`):
/// takes a permit for the handling of a request with live credentials, or
/// answers `503 overloaded` without one.
pub async fn shed(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let bound = req.app_data::<InFlight>().filter(|_| credentials::presented_live(&req));
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
