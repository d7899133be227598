//! A tenant's branding (admin): `GET|PUT /v1/settings/branding` (the display
//! name) and `GET /v1/templates`, `GET|PUT|DELETE /v1/templates/{channel}/{locale}`
//! (its own SMS and voice texts). See docs/branding.md.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use verifyd_core::delivery::branding;
use verifyd_core::delivery::gsm7::{Cost, Encoding};
use verifyd_core::delivery::render;
use verifyd_core::delivery::template::{DisplayName, Template};
use verifyd_core::ids::Tenant;
use verifyd_core::store::branding::{self as store, StoredTemplate};
use verifyd_providers::domain::{Channel, Locale};

use super::AppState;
use super::auth::{Admin, Caller};
use super::json::Json;
use super::problem::{ApiError, Problem};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/settings/branding").route(web::get().to(get_branding)).route(web::put().to(put_branding)),
    )
    .service(web::resource("/v1/templates").route(web::get().to(list_templates)))
    .service(
        web::resource("/v1/templates/{channel}/{locale}")
            .route(web::get().to(get_template))
            .route(web::put().to(put_template))
            .route(web::delete().to(delete_template)),
    );
}

/// What the tenant's messages and authenticator entries are named.
#[derive(Debug, Serialize, ToSchema)]
pub struct BrandingView {
    /// The tenant's display name; null: none set.
    #[schema(example = "Acme Cloud")]
    display_name: Option<String>,
    /// What `{app}` says in texts and calls: the display name, else the
    /// deployment's `verification.app_name`.
    #[schema(example = "Acme Cloud")]
    app_name: String,
    /// The issuer authenticator apps show: the display name, else the tenant's name.
    #[schema(example = "Acme Cloud")]
    totp_issuer: String,
}

/// The display name: 1 to 64 characters (Unicode), none a control
/// character; surrounding white space is dropped. `null` (or leaving it
/// out: the body replaces the setting) removes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingBody {
    #[schema(example = "Acme Cloud", min_length = 1, max_length = 64)]
    display_name: Option<String>,
}

fn branding_view(state: &AppState, tenant: &Tenant, display_name: Option<String>) -> BrandingView {
    BrandingView {
        app_name: display_name.clone().unwrap_or_else(|| state.app_name.clone()),
        totp_issuer: display_name.clone().unwrap_or_else(|| tenant.name.clone()),
        display_name,
    }
}

// scope: admin
/// The tenant's display name, and what texts and authenticator apps show.
#[utoipa::path(get, path = "/v1/settings/branding", tag = "branding",
    operation_id = "get_branding",
    responses((status = 200, body = BrandingView)),
    security(("api_key" = ["admin"])))]
async fn get_branding(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Admin>,
) -> Result<HttpResponse, ApiError> {
    let name = branding::display_name(&state.pool, tenant.id).await?;
    Ok(HttpResponse::Ok().json(branding_view(&state, &tenant, name)))
}

// scope: admin
/// Set (or with `null` remove) the display name: the issuer of authenticator
/// enrolments from now on (entries made before keep theirs), `{app}` in
/// texts, and the name in built-in texts and calls. Audited as `branding.changed`.
#[utoipa::path(put, path = "/v1/settings/branding", tag = "branding",
    operation_id = "put_branding",
    request_body = BrandingBody,
    responses((status = 200, body = BrandingView),
        (status = 422, description = "A display name that is empty, too long or holds a control character (`invalid_field`, `field`: `display_name`)", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn put_branding(
    state: web::Data<AppState>,
    caller: Caller<Admin>,
    body: Json<BrandingBody>,
) -> Result<HttpResponse, ApiError> {
    let name = body
        .into_inner()
        .display_name
        .map(|n| DisplayName::parse(&n))
        .transpose()
        .map_err(|e| ApiError::field("display_name", e))?;
    branding::set_display_name(
        &state.pool,
        caller.tenant.id,
        name.as_ref(),
        &caller.as_actor()?,
        verifyd_core::timestamp::now(),
    )
    .await?;
    tracing::info!(tenant = %caller.tenant.name, api_key_id = %caller.key_id, "branding changed");
    let name = name.map(|n| n.as_str().to_owned());
    Ok(HttpResponse::Ok().json(branding_view(&state, &caller.tenant, name)))
}

/// Where a text comes from.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The tenant's own (of `template_locale`).
    Tenant,
    /// verifyd's text for the language (English where it has none).
    BuiltIn,
}

/// What an SMS text costs, for its longest rendering (a 10-digit code, the
/// longest way of saying the time left, the current display name).
#[derive(Debug, Serialize, ToSchema)]
pub struct SmsCost {
    /// `GSM-7` when every character is in the GSM 03.38 alphabet, else `UCS-2`.
    #[schema(value_type = String, example = "GSM-7")]
    encoding: Encoding,
    /// Segments it is sent (and billed) as: GSM-7 160 in one, 153 each
    /// beyond; UCS-2 70 in one, 67 each beyond.
    #[schema(example = 1)]
    segments: usize,
    /// Its length as the encoding counts it: septets (an extension
    /// character such as `€` takes two) or UTF-16 units.
    #[schema(example = 62)]
    length_max: usize,
}

impl From<Cost> for SmsCost {
    fn from(c: Cost) -> Self {
        SmsCost { encoding: c.encoding, segments: c.segments, length_max: c.length }
    }
}

/// A text as a send in `locale` uses it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    #[schema(example = "sms")]
    channel: String,
    #[schema(example = "pt-BR")]
    locale: String,
    source: Source,
    /// The locale of the tenant's template used: `locale`, or its base language.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "pt")]
    template_locale: Option<String>,
    /// The text as written, placeholders included.
    #[schema(example = "{app}: your code is {code}. It expires in {expires_in}.")]
    text: String,
    /// The text with a made-up code (`1234567`) and the configured lifetime.
    #[schema(example = "Acme Cloud: your code is 1234567. It expires in 10 minutes.")]
    example: String,
    /// For SMS: what its longest rendering costs.
    #[serde(skip_serializing_if = "Option::is_none")]
    sms: Option<SmsCost>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "verifyd_core::timestamp::option")]
    #[schema(value_type = Option<String>)]
    updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    /// The tenant's own texts, by channel and locale.
    templates: Vec<TemplateView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// The text removed; sends in its locale use the next one in line again.
    deleted: TemplateView,
}

/// The text: placeholders `{code}` (required; in a voice text, last), `{app}`
/// and `{expires_in}`; `{{` and `}}` write a brace. SMS: at most 1000
/// characters, new lines allowed, its longest rendering at most 10 segments;
/// voice: at most 500 characters, the call reads the text before `{code}`,
/// then the digits one by one, twice.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    #[schema(example = "{app}: your code is {code}. It expires in {expires_in}.", min_length = 1, max_length = 1000)]
    text: String,
}

struct Ctx<'a> {
    state: &'a AppState,
    app: &'a str,
}

impl Ctx<'_> {
    /// `stored`: the tenant's template's locale and when it was saved; `None`
    /// for a built-in text.
    fn view(
        &self,
        channel: Channel,
        locale: &Locale,
        template: &Template,
        stored: Option<(&str, Option<DateTime<Utc>>)>,
    ) -> TemplateView {
        let state = self.state;
        TemplateView {
            channel: channel.as_str().to_owned(),
            locale: locale.as_str().to_owned(),
            source: if stored.is_some() { Source::Tenant } else { Source::BuiltIn },
            template_locale: stored.map(|(l, _)| l.to_owned()),
            text: template.source().to_owned(),
            example: render::example(template, channel, self.app, state.code_ttl, locale),
            sms: (channel == Channel::Sms)
                .then(|| render::sms_cost(template, self.app, state.longest_code_ttl, locale).into()),
            updated_at: stored.and_then(|(_, at)| at),
        }
    }

    /// A stored text's view, in its own locale. One that no longer parses (a
    /// hand edit; sends use the built-in text instead) shows as plain text.
    fn stored_view(&self, s: &StoredTemplate) -> Option<TemplateView> {
        let channel: Channel = s.channel.parse().ok()?;
        let locale = Locale::parse(&s.locale).ok()?;
        let template = Template::parse(&s.body, channel, &locale, render::knows_durations(&locale))
            .unwrap_or_else(|_| Template::literal(&s.body));
        Some(self.view(channel, &locale, &template, Some((&s.locale, Some(s.updated_at)))))
    }
}

fn pair(path: &(String, String)) -> Result<(Channel, Locale), ApiError> {
    let channel = path.0.parse().map_err(|_| ApiError::field("channel", "must be `sms`, `voice` or `email`"))?;
    let locale = Locale::parse(&path.1).map_err(|e| ApiError::field("locale", e))?;
    Ok((channel, locale))
}

async fn app_name(state: &AppState, tenant: &Tenant) -> Result<String, ApiError> {
    Ok(branding::display_name(&state.pool, tenant.id).await?.unwrap_or_else(|| state.app_name.clone()))
}

// scope: admin
/// The tenant's own SMS and voice texts.
#[utoipa::path(get, path = "/v1/templates", tag = "branding",
    operation_id = "list_templates",
    responses((status = 200, body = TemplateList)),
    security(("api_key" = ["admin"])))]
async fn list_templates(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Admin>,
) -> Result<HttpResponse, ApiError> {
    let app = app_name(&state, &tenant).await?;
    let ctx = Ctx { state: &state, app: &app };
    let stored = store::templates(&state.pool, tenant.id).await?;
    let templates = stored.iter().filter_map(|s| ctx.stored_view(s)).collect();
    Ok(HttpResponse::Ok().json(TemplateList { templates }))
}

// scope: admin
/// The text a send by `channel` in `locale` uses: the tenant's template of
/// that locale, else of its base language (`pt` for `pt-BR`), else the
/// built-in text.
#[utoipa::path(get, path = "/v1/templates/{channel}/{locale}", tag = "branding",
    operation_id = "get_template",
    params(("channel" = String, Path, description = "`sms`, `voice` or `email`"),
        ("locale" = String, Path, description = "`en`, `pt-BR`, …")),
    responses((status = 200, body = TemplateView)),
    security(("api_key" = ["admin"])))]
async fn get_template(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Admin>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (channel, locale) = pair(&path)?;
    let row = store::for_send(&state.pool, tenant.id, channel, &locale).await?;
    let app = row.display_name.clone().unwrap_or_else(|| state.app_name.clone());
    let ctx = Ctx { state: &state, app: &app };
    let template_locale = row.template_locale.clone();
    let view = match branding::resolve(row, channel, &app).template {
        Some(template) => ctx.view(channel, &locale, &template, template_locale.as_deref().map(|l| (l, None))),
        None => ctx.view(channel, &locale, &render::built_in(channel, &locale), None),
    };
    Ok(HttpResponse::Ok().json(view))
}

// scope: admin
/// Save the tenant's text for `channel` in `locale`, checked first: a
/// missing `{code}`, an unknown placeholder, a control character, a voice
/// text that does not end with `{code}`, a text too long, or an SMS whose
/// longest rendering takes more than 10 segments is refused, naming `text`.
/// The answer says what the SMS costs. Audited as `template.saved`.
#[utoipa::path(put, path = "/v1/templates/{channel}/{locale}", tag = "branding",
    operation_id = "put_template",
    params(("channel" = String, Path, description = "`sms`, `voice` or `email`"),
        ("locale" = String, Path, description = "`en`, `pt-BR`, …")),
    request_body = TemplateBody,
    responses((status = 200, body = TemplateView),
        (status = 422, description = "A text the service refuses (`invalid_field`, `field`: `text`), or a bad `channel` or `locale`", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn put_template(
    state: web::Data<AppState>,
    caller: Caller<Admin>,
    path: web::Path<(String, String)>,
    body: Json<TemplateBody>,
) -> Result<HttpResponse, ApiError> {
    let (channel, locale) = pair(&path)?;
    let text = body.into_inner().text;
    let template = Template::parse(&text, channel, &locale, render::knows_durations(&locale))
        .map_err(|e| ApiError::field("text", e))?;
    let app = app_name(&state, &caller.tenant).await?;
    if channel == Channel::Sms {
        let cost = render::sms_cost(&template, &app, state.longest_code_ttl, &locale);
        if cost.segments > verifyd_core::delivery::template::MAX_SEGMENTS {
            return Err(ApiError::field(
                "text",
                verifyd_core::delivery::template::TemplateError::TooManySegments(cost.segments),
            ));
        }
    }
    let who = caller.as_actor()?;
    let saved = branding::save_template(
        &state.pool,
        caller.tenant.id,
        channel,
        &locale,
        &template,
        &who,
        verifyd_core::timestamp::now(),
    )
    .await?;
    tracing::info!(tenant = %caller.tenant.name, api_key_id = %caller.key_id, %channel, %locale, "template saved");
    let ctx = Ctx { state: &state, app: &app };
    Ok(HttpResponse::Ok().json(ctx.view(channel, &locale, &template, Some((&saved.locale, Some(saved.updated_at))))))
}

// scope: admin
/// Remove the tenant's text for `channel` in `locale`: sends in it use the
/// base language's template, else the built-in text again. Audited as
/// `template.deleted`.
#[utoipa::path(delete, path = "/v1/templates/{channel}/{locale}", tag = "branding",
    operation_id = "delete_template",
    params(("channel" = String, Path, description = "`sms`, `voice` or `email`"),
        ("locale" = String, Path, description = "`en`, `pt-BR`, …")),
    responses((status = 200, body = Deleted),
        (status = 404, description = "The tenant has no text of its own there (`not_found`)", body = Problem)),
    security(("api_key" = ["admin"])))]
async fn delete_template(
    state: web::Data<AppState>,
    caller: Caller<Admin>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (channel, locale) = pair(&path)?;
    let who = caller.as_actor()?;
    let deleted = branding::delete_template(
        &state.pool,
        caller.tenant.id,
        channel,
        &locale,
        &who,
        verifyd_core::timestamp::now(),
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    tracing::info!(tenant = %caller.tenant.name, api_key_id = %caller.key_id, %channel, %locale, "template deleted");
    let app = app_name(&state, &caller.tenant).await?;
    let ctx = Ctx { state: &state, app: &app };
    let view = ctx.stored_view(&deleted).ok_or_else(|| ApiError::internal("deleted template row unreadable"))?;
    Ok(HttpResponse::Ok().json(Deleted { deleted: view }))
}
