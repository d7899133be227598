//! Bounds on a request's URL and header block, checked before routing.
//! actix-web itself refuses more than 96 headers or 128 KiB before the body
//! (431, connection closed); below that, these limits answer with a problem
//! document: 414 for a long URL, 431 for large headers.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};

use super::problem::ApiError;

/// `http.max_url_bytes` and `http.max_header_bytes`, as app data.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Path and query string, in bytes.
    pub max_url_bytes: usize,
    /// Every header's name and value, plus 4 bytes each for `: ` and CRLF.
    pub max_header_bytes: usize,
}

impl RequestLimits {
    /// The limit the request breaks, if any.
    pub fn check(&self, url_bytes: usize, header_bytes: usize) -> Result<(), ApiError> {
        if url_bytes > self.max_url_bytes {
            return Err(ApiError::UriTooLong(self.max_url_bytes));
        }
        if header_bytes > self.max_header_bytes {
            return Err(ApiError::HeadersTooLarge(self.max_header_bytes));
        }
        Ok(())
    }
}

/// Middleware (`middleware::from_fn`): refuses a request over the limits
/// before any handler or extractor reads it.
pub async fn enforce(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    if let Some(limits) = req.app_data::<RequestLimits>() {
        let url = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        let headers = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
        if let Err(refusal) = limits.check(url, headers) {
            return Ok(req.into_response(refusal.error_response()).map_into_right_body());
        }
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}
