//! The OpenAPI document of the HTTP API, generated from the handlers'
//! annotations (utoipa) and served at `GET /openapi.json`. `verifyd openapi`
//! prints it; `docs/openapi.json` is that output, and a test keeps the two equal.

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

mod conform;

use super::{
    abuse, accounts, admin, api_keys, branding, enrolment, gate, ops, probes, problem, verifications, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "verifyd",
        description = "Phone verification and two-factor authentication: codes by SMS and voice, \
            authenticator apps, backup and recovery codes, a login gate, step-up, organisation policy \
            and an audit trail. Every error is an RFC 9457 problem document (`Problem`) whose `error` \
            field is stable.",
        license(name = "Apache-2.0")
    ),
    paths(
        verifications::create, verifications::get, verifications::check, verifications::resend,
        verifications::cancel, verifications::attempts,
        accounts::factors,
        enrolment::enrol_totp, enrolment::confirm, enrolment::generate_backup_codes,
        enrolment::backup_code_status, enrolment::generate_recovery_code,
        gate::login, gate::step_up, gate::get, gate::answer, gate::send, gate::verify_proof,
        admin::remove_factor, admin::set_default, admin::activate, admin::reset,
        admin::get_policy, admin::put_policy, admin::tenant_audit, admin::account_audit, admin::organisation_audit,
        api_keys::list, api_keys::create, api_keys::rotate, api_keys::revoke,
        probes::healthz, probes::readyz, probes::metrics, ops::queues, ops::overview,
        ops::dead_letters::list, ops::dead_letters::show, ops::dead_letters::replay, ops::dead_letters::discard,
        ops::dead_letters::replay_matching, ops::dead_letters::discard_matching,
        ops::deliveries::deliveries, ops::deliveries::operations,
        abuse::get_geo_permissions, abuse::put_geo_permissions, abuse::blocked_prefixes, abuse::lift_block,
        branding::get_branding, branding::put_branding, branding::list_templates, branding::get_template,
        branding::put_template, branding::delete_template,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete, webhooks::rotate,
        webhooks::deliveries,
    ),
    components(schemas(problem::Problem)),
    modifiers(&BearerKey),
    tags(
        (name = "verifications", description = "Prove that a person owns a phone number or an email address"),
        (name = "factors", description = "Enrol and manage second factors, backup and recovery codes"),
        (name = "login gate", description = "May this user in? Challenges, answers and proofs"),
        (name = "organisations", description = "Two-factor policy and admin reset"),
        (name = "audit", description = "Who changed what, when"),
        (name = "api keys", description = "The tenant's API keys: list, create, rotate, revoke"),
        (name = "operations", description = "Health, metrics and operator endpoints"),
        (name = "abuse", description = "Geo permissions and destination prefixes blocked as SMS pumping"),
        (name = "branding", description = "The tenant's display name and its own SMS and voice texts"),
        (name = "webhooks", description = "Endpoints that receive the tenant's events over HTTPS, signed per Standard Webhooks"),
    )
)]
pub struct ApiDoc;

/// `Authorization: Bearer vk_<id>.<secret>` (see `verifyd keys create`). Each
/// operation lists the one scope it needs as the requirement's role.
struct BearerKey;

const SCOPES: &str = "An API key, `vk_<id>.<secret>`. Each operation names the one scope the key \
    must hold: `verify` (verifications, login, step-up, challenges, proofs), `enrol` (a user's \
    own factors with that user's step-up: adding, removing, the default, backup and recovery \
    codes, reading factors), `admin` (resets, policy, audit, API keys, branding and templates, webhooks), `ops` (operator endpoints under `/v1/ops`, cut down to the \
    key's tenant). A deployment operator key, `vo_<id>.<secret>` (`verifyd keys create --operator`), \
    reaches the operator endpoints for every tenant and nothing else. A key without the scope is \
    answered `403 forbidden_scope` (`required_scope` names it); a key used from outside its \
    `allowed_cidrs` is answered `403 forbidden_source`.";

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("vk_<id>.<secret>")
                .description(Some(SCOPES))
                .build(),
        );
        openapi.components.get_or_insert_with(Default::default).add_security_scheme("api_key", scheme);
    }
}

/// The document as served and as committed in `docs/openapi.json`: the
/// handlers' annotations, with what the layers in front of them answer
/// (`conform`).
pub fn document() -> String {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
            conform::conform(&mut doc);
            let mut json = serde_json::to_string_pretty(&doc).unwrap_or_default();
            json.push('\n');
            json
        })
        .clone()
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(serve));
}

async fn serve() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document())
}
