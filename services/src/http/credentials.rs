//! Who a request comes from, found out before anything else reads it.
//!
//! actix-web runs a handler's extractors side by side: a body that is not the
//! JSON expected would be refused (`400`, with the schema in the message)
//! while the key was still being looked up, so an unknown or revoked key
//! learnt about the API's bodies. `authenticate_first` (middleware) settles
//! the credentials first and leaves the outcome in the request's extensions;
//! `Caller` and `Operator` take it from there, so a request with a bad key is
//! `401` whatever else is wrong with it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, web};
use verifyd_core::store::sessions;

use super::AppState;
use super::operator::{bearer, session_token, token_hash};
use super::problem::ApiError;
use crate::api_keys::Principal;

/// What a request presented, once checked.
pub enum Presented {
    /// `Authorization: Bearer <key>`, a live key.
    Key(Principal),
    /// The console's session cookie, a live session of a live key; `token` is
    /// the session's, for the CSRF check.
    Session { principal: Principal, token: String },
}

/// The outcome, as the request's extensions carry it. `Ok(None)`: nothing
/// was presented.
struct Settled(Result<Option<Presented>, ApiError>);

/// Middleware (`middleware::from_fn`): settles the credentials of every
/// request before its handler's extractors run.
pub async fn authenticate_first(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>().cloned()
        && takes_credentials(req.path())
    {
        let settled = settle(req.request(), &state).await;
        req.extensions_mut().insert(Settled(settled));
    }
    next.call(req).await
}

/// Whether the request presented a live key or session, as the middleware
/// settled it (false before it ran, or for a route that takes none).
pub fn presented_live(req: &ServiceRequest) -> bool {
    matches!(req.extensions().get::<Settled>(), Some(Settled(Ok(Some(_)))))
}

/// Routes that never read credentials (the probes, the console's page and
/// assets): no session lookup in PostgreSQL for each of them. Anything else
/// settles first; a route left out here still settles in `of`.
fn takes_credentials(path: &str) -> bool {
    !(path.starts_with("/ops/assets/") || matches!(path, "/" | "/ops" | "/ops/" | "/healthz" | "/readyz"))
}

/// The request's credentials: as the middleware settled them, or (for an app
/// built without it) settled now.
pub async fn of(req: &HttpRequest, state: &AppState) -> Result<Option<Presented>, ApiError> {
    let settled = req.extensions_mut().remove::<Settled>();
    match settled {
        Some(Settled(outcome)) => outcome,
        None => settle(req, state).await,
    }
}

async fn settle(req: &HttpRequest, state: &AppState) -> Result<Option<Presented>, ApiError> {
    if let Some(presented) = bearer(req) {
        let principal = state.keys.authenticate(&presented).await?.map_err(|_| ApiError::Unauthenticated)?;
        return Ok(Some(Presented::Key(principal)));
    }
    let Some(token) = session_token(req, state.public_url.as_deref()) else {
        return Ok(None);
    };
    let (key_id, _) = sessions::live(&state.pool, &token_hash(&token), verifyd_core::timestamp::now())
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let principal = state.keys.still_live(&key_id).await?.ok_or(ApiError::Unauthenticated)?;
    Ok(Some(Presented::Session { principal, token }))
}
