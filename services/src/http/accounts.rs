//! `/v1/accounts/{account_id}/factors`: what account state knows of an account.

use super::factor_view::FactorView;
use actix_web::{HttpResponse, web};
use verifyd_core::account::ListFactors;

use super::auth::{Caller, Enrol};
use super::problem::ApiError;
use super::{AppState, account_id};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/accounts/{account_id}/factors").route(web::get().to(factors)));
}

/// An account's factors and their state.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Factors {
    account_id: String,
    factors: Vec<FactorView>,
}

/// The account's factors: verified phones (`sms`, `voice`) and authenticator
/// apps (`totp`), `pending` or `active`, one of them the default.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/factors", tag = "factors",
    params(("account_id" = String, Path)),
    responses((status = 200, body = Factors)),
    security(("api_key" = ["enrol"])))]
async fn factors(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Enrol>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account_id = account_id(&path)?;
    let shard = state.account_state(&tenant, &account_id);
    let factors = shard.send(ListFactors { tenant_id: tenant.id, account_id: account_id.clone() }).await??;
    Ok(HttpResponse::Ok().json(Factors {
        account_id: account_id.as_str().to_owned(),
        factors: factors.into_iter().map(FactorView::from).collect(),
    }))
}
