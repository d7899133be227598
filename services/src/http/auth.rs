//! `Authorization: Bearer <api key>` → the tenant the request acts for.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use secrecy::{ExposeSecret, SecretString};
use verifyd_actors::ids::Tenant;

use super::AppState;
use super::problem::ApiError;

/// The authenticated tenant of a request, and the id (public part) of the API
/// key it came with, for the audit trail.
pub struct Caller(pub Tenant, pub String);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let presented = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| SecretString::from(v.trim().to_owned()));
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let presented = presented.ok_or(ApiError::Unauthenticated)?;
            let key_id = presented.expose_secret().split_once('.').map(|(id, _)| id.to_owned()).unwrap_or_default();
            match state.keys.authenticate(&presented).await? {
                Ok(tenant) => Ok(Caller(tenant, key_id)),
                Err(_) => Err(ApiError::Unauthenticated),
            }
        })
    }
}
