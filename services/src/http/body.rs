//! Request bodies read as bytes (provider receipts, bodies that may be
//! absent). They are bounded like JSON bodies (`http.max_body_bytes`, through
//! the app's `PayloadConfig`), and a body over the limit is a 413 problem
//! document rather than actix-web's plain-text answer.

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use super::problem::ApiError;

/// The body, whole.
pub struct RawBody(pub web::Bytes);

/// The largest body accepted, in bytes: the app's `http.max_body_bytes`,
/// given to extractors as app data so their errors can say it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // Without app data, actix-web's own default limit applies (256 KiB).
        let limit = req.app_data::<BodyLimit>().map_or(256 * 1024, |l| l.0);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            bytes.await.map(RawBody).map_err(|e| match e.as_error::<PayloadError>() {
                Some(PayloadError::Overflow) => ApiError::TooLarge(limit),
                _ => ApiError::MalformedBody("the body could not be read".to_owned()),
            })
        })
    }
}

impl std::ops::Deref for RawBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}
