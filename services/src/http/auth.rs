//! `Authorization: Bearer <api key>` → the tenant the request acts for, once
//! the key is known, used from an allowed address and holds the route's scope.
//!
//! The scope is part of the extractor's type: a handler takes `Caller<Verify>`,
//! `Caller<Enrol>`, `Caller<Admin>` or `Caller<Ops>`, and `Caller` alone does
//! not compile, so no route can forget to say which scope it needs.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use verifyd_core::ids::{AccountId, Tenant, Who};

use super::credentials::{self, Presented};
use super::problem::ApiError;
use super::{AppState, client_addr};
use crate::api_keys::{AllowedSources, Principal, Scope, Scopes};

/// The scope a route needs, as a type.
pub trait RequiredScope {
    const SCOPE: Scope;
}

/// Verifications, login, step-up, challenges, proofs.
pub enum Verify {}
/// Enrolling factors, backup and recovery codes, reading factors.
pub enum Enrol {}
/// Factor removal and changes, resets, policy, audit, API keys.
pub enum Admin {}
/// Operator endpoints (`/v1/ops/…`).
pub enum Ops {}

impl RequiredScope for Verify {
    const SCOPE: Scope = Scope::Verify;
}
impl RequiredScope for Enrol {
    const SCOPE: Scope = Scope::Enrol;
}
impl RequiredScope for Admin {
    const SCOPE: Scope = Scope::Admin;
}
impl RequiredScope for Ops {
    const SCOPE: Scope = Scope::Ops;
}

/// The authenticated tenant of a request, the id (public part) of the API key
/// it came with (for the audit trail), and what that key holds.
pub struct Caller<S: RequiredScope> {
    pub tenant: Tenant,
    pub key_id: String,
    pub scopes: Scopes,
    pub sources: AllowedSources,
    _scope: PhantomData<fn() -> S>,
}

impl<S: RequiredScope> Caller<S> {
    /// The calling key as the actor of a tenant-wide change (keys, settings,
    /// blocks): such calls act for the backend, not for a named person.
    pub fn as_actor(&self) -> Result<Who, ApiError> {
        let actor = AccountId::parse(&self.key_id).map_err(|_| ApiError::Unauthenticated)?;
        Ok(Who { actor, api_key_id: Some(self.key_id.clone()) })
    }
}

impl<S: RequiredScope> FromRequest for Caller<S> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let req = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            // Only a key in the `Authorization` header; a console session
            // reaches the operator endpoints alone.
            let key = match credentials::of(&req, &state).await? {
                Some(Presented::Key(Principal::Tenant(key))) => key,
                // A deployment operator key reaches only the operator endpoints.
                Some(Presented::Key(Principal::Operator { .. })) => {
                    return Err(ApiError::ForbiddenScope { scope: S::SCOPE, granting: false });
                }
                Some(Presented::Session { .. }) | None => return Err(ApiError::Unauthenticated),
            };
            // The client's address matters only to a key with source networks.
            let client = (!key.sources.anywhere()).then(|| client_addr::of(&req, &state.trusted_proxies)).flatten();
            if !key.sources.allows(client) {
                let client = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
                tracing::warn!(key_id = %key.key_id, %client, "API key refused: used from outside its allowed networks");
                return Err(ApiError::ForbiddenSource("this API key is not accepted from this address"));
            }
            if !key.scopes.contains(S::SCOPE) {
                return Err(ApiError::ForbiddenScope { scope: S::SCOPE, granting: false });
            }
            Ok(Caller {
                tenant: key.tenant,
                key_id: key.key_id,
                scopes: key.scopes,
                sources: key.sources,
                _scope: PhantomData,
            })
        })
    }
}
