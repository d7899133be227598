//! `/v1/verifications`: start, read, check and resend verifications of a
//! phone (SMS, voice) or an email address.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use verifyd_core::delivery::status::{self, Delivery};
use verifyd_core::domain::verification::Status;
use verifyd_core::ids::AccountId;
use verifyd_core::outbox::contract::VerificationRequest;
use verifyd_core::store::attempts;
use verifyd_core::store::verifications::{self as store, Verification};
use verifyd_core::verification::{Cancel, Check, Create, Request, Resend};
use verifyd_providers::domain::{
    Channel, Code, CodeLength, Destination, DestinationKind, EmailAddress, Locale, PhoneNumber,
};

use super::auth::{Caller, Verify};
use super::body::RawBody;
use super::json::Json;
use super::problem::{ApiError, Problem};
use super::{AppState, CodeBody, optional_body, path_id};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/verifications").route(web::post().to(create)))
        .service(web::resource("/v1/verifications/{id}").route(web::get().to(get)))
        .service(web::resource("/v1/verifications/{id}/check").route(web::post().to(check)))
        .service(web::resource("/v1/verifications/{id}/resend").route(web::post().to(resend)))
        .service(web::resource("/v1/verifications/{id}/cancel").route(web::post().to(cancel)))
        .service(web::resource("/v1/verifications/{id}/attempts").route(web::get().to(attempts)));
}

/// What a backend reads about a verification. Never the code.
#[derive(Serialize, ToSchema)]
#[schema(as = Verification)]
pub struct View {
    pub id: Uuid,
    pub status: Status,
    pub account_id: String,
    /// E.164 for `sms` and `voice`, the address for `email`.
    pub to: String,
    pub channel: Channel,
    pub locale: String,
    pub attempts: i32,
    pub attempts_left: i32,
    pub max_attempts: i32,
    pub sends: i32,
    #[serde(with = "verifyd_core::timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "verifyd_core::timestamp")]
    pub expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "verifyd_core::timestamp::option")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Where the latest send stands. When it failed for good, the
    /// verification is `failed` (unless a fallback or a resend is on its way).
    pub delivery: Delivery,
    /// Only in the answer to the check that approved the account's first
    /// factor: a step-up proof, as confirming a first authenticator gives,
    /// so the recovery code can be shown right away (pass it as `step_up`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "verifyd_core::timestamp::option")]
    pub proof_expires_at: Option<DateTime<Utc>>,
}

impl View {
    pub fn of(v: &Verification, delivery: Delivery, now: DateTime<Utc>) -> Self {
        View {
            delivery,
            proof: None,
            proof_expires_at: None,
            id: v.id,
            status: v.state.effective_status(now),
            account_id: v.account_id.as_str().to_owned(),
            to: v.to.as_str().to_owned(),
            channel: v.channel,
            locale: v.locale.as_str().to_owned(),
            attempts: v.state.attempts,
            attempts_left: v.state.attempts_left(),
            max_attempts: v.state.max_attempts,
            sends: v.state.sends,
            created_at: v.created_at,
            expires_at: v.state.expires_at,
            completed_at: v.completed_at,
        }
    }
}

/// Parses a request (the same body over HTTP and AMQP); `fallback_key` is the
/// `Idempotency-Key` header or the AMQP `message_id`, used when the body has none.
pub fn parse_request(request: VerificationRequest, fallback_key: Option<String>) -> Result<Request, ApiError> {
    let VerificationRequest { account_id, phone, email, channel, locale, code_length, idempotency_key, end_user_ip } =
        request;
    let idempotency_key = idempotency_key.or(fallback_key);
    if let Some(key) = &idempotency_key
        && (key.is_empty() || key.chars().count() > 255)
    {
        return Err(ApiError::field("idempotency_key", "must be 1 to 255 characters"));
    }
    let account_id = AccountId::parse(&account_id).map_err(|e| ApiError::field("account_id", e))?;
    let channel: Channel = channel.parse().map_err(|e| ApiError::field("channel", e))?;
    Ok(Request {
        account_id,
        to: destination(channel, phone, email)?,
        channel,
        locale: locale
            .as_deref()
            .map(Locale::parse)
            .transpose()
            .map_err(|e| ApiError::field("locale", e))?
            .unwrap_or_default(),
        code_length: code_length.map(CodeLength::new).transpose().map_err(|e| ApiError::field("code_length", e))?,
        idempotency_key,
        end_user_ip: end_user_ip
            .as_deref()
            .map(|ip| ip.parse::<std::net::IpAddr>())
            .transpose()
            .map_err(|_| ApiError::field("end_user_ip", "must be an IPv4 or IPv6 address"))?,
        api_key_id: None,
    })
}

/// The destination the channel needs, and no other: `phone` for SMS and
/// voice, `email` for email.
fn destination(channel: Channel, phone: Option<String>, email: Option<String>) -> Result<Destination, ApiError> {
    match (channel.destination(), phone, email) {
        (DestinationKind::Phone, Some(phone), None) => {
            Ok(PhoneNumber::parse(&phone).map_err(|e| ApiError::field("phone", e))?.into())
        }
        (DestinationKind::Email, None, Some(email)) => {
            Ok(EmailAddress::parse(&email).map_err(|e| ApiError::field("email", e))?.into())
        }
        (DestinationKind::Phone, _, Some(_)) => {
            Err(ApiError::field("email", format!("must be absent for channel {channel}: its code goes to `phone`")))
        }
        (DestinationKind::Email, Some(_), _) => {
            Err(ApiError::field("phone", "must be absent for channel email: its code goes to `email`"))
        }
        (DestinationKind::Phone, None, None) => {
            Err(ApiError::field("phone", format!("is required for channel {channel}")))
        }
        (DestinationKind::Email, None, None) => Err(ApiError::field("email", "is required for channel email")),
    }
}

/// Start a verification: a code goes to the phone by SMS or voice call, or
/// to the email address by email.
#[utoipa::path(post, operation_id = "create_verification", path = "/v1/verifications", tag = "verifications",
    request_body = VerificationRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key, same verification (one message sent)")),
    responses(
        (status = 201, description = "Created; the code is on its way", body = View),
        (status = 200, description = "The idempotency key was seen before: the earlier verification", body = View),
        (status = 409, description = "Idempotency key used for another destination or account", body = Problem),
        (status = 422, description = "A field does not parse (`invalid_field`)", body = Problem),
        (status = 429, description = "Throttled (`Retry-After`)", body = Problem)),
    security(("api_key" = ["verify"])))]
async fn create(
    state: web::Data<AppState>,
    Caller { tenant, key_id, .. }: Caller<Verify>,
    req: actix_web::HttpRequest,
    body: Json<VerificationRequest>,
) -> Result<HttpResponse, ApiError> {
    let header_key = req
        .headers()
        .get("Idempotency-Key")
        .map(|v| v.to_str().map(str::to_owned).map_err(|_| ApiError::field("idempotency_key", "header is not text")))
        .transpose()?;
    let mut parsed = parse_request(body.into_inner(), header_key)?;
    parsed.api_key_id = Some(key_id);
    let now = verifyd_core::timestamp::now();
    let shard = state.verification()?.pick(&(tenant.id, parsed.account_id.as_str().to_owned()));
    let created = shard.send(Create { tenant, request: parsed, reply: None, now }).await??;
    let view = if created.replayed {
        read(&state, &created.verification, now).await?
    } else {
        View::of(&created.verification, Delivery::queued(created.verification.channel), now)
    };
    let mut response = if created.replayed { HttpResponse::Ok() } else { HttpResponse::Created() };
    Ok(response.insert_header(("Location", format!("/v1/verifications/{}", view.id))).json(view))
}

/// Read a verification.
#[utoipa::path(get, operation_id = "get_verification", path = "/v1/verifications/{id}", tag = "verifications",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = View), (status = 404, body = Problem)),
    security(("api_key" = ["verify"])))]
async fn get(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Verify>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    let v = store::get(&state.pool, tenant.id, id).await.map_err(ApiError::internal)?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(read(&state, &v, verifyd_core::timestamp::now()).await?))
}

/// A verification with its latest delivery read from the store.
async fn read(state: &AppState, v: &Verification, now: DateTime<Utc>) -> Result<View, ApiError> {
    let delivery = status::latest(&state.pool, v.id)
        .await
        .map_err(ApiError::internal)?
        .unwrap_or_else(|| Delivery::queued(v.channel));
    Ok(View::of(v, delivery, now))
}

/// Check what the person typed.
///
/// The answer's `status` is `approved`, still `pending` (wrong code,
/// `attempts_left`) or `max_attempts_reached` (this was the last wrong code
/// allowed). A verification that has ended answers `409
/// verification_not_pending` with its `verification_status`: already approved,
/// out of attempts, or `expired` — from the deadline on, whether or not the
/// expiry sweep has run yet.
#[utoipa::path(post, path = "/v1/verifications/{id}/check", tag = "verifications",
    params(("id" = Uuid, Path)), request_body = CodeBody,
    responses((status = 200, description = "Checked: `approved`, `pending` (wrong code) or `max_attempts_reached`",
            body = View),
        (status = 404, body = Problem),
        (status = 409, description = "The verification has ended (`verification_not_pending`): \
            `verification_status` is `approved`, `max_attempts_reached` or `expired` (the deadline passed)",
            body = Problem),
        (status = 422, description = "The code is not digits (`invalid_field`)", body = Problem)),
    security(("api_key" = ["verify"])))]
async fn check(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Verify>,
    path: web::Path<String>,
    body: Json<CodeBody>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    let code = Code::parse(body.typed()?).map_err(|e| ApiError::field("code", e))?;
    let now = verifyd_core::timestamp::now();
    let shard = state.verification()?.pick(&id);
    let checked = shard.send(Check { tenant, id, code, now }).await??;
    // Expired by this check or earlier by the sweep: the same answer.
    if let Some(status) = checked.outcome.ended() {
        return Err(ApiError::NotPending(status));
    }
    let mut view = read(&state, &checked.verification, now).await?;
    let mut response = HttpResponse::Ok();
    if let Some((proof, expires_at)) = checked.proof {
        (view.proof, view.proof_expires_at) = (Some(proof), Some(expires_at));
        // A proof is a credential: no cache keeps it, as for a confirmation's.
        response.insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
    }
    Ok(response.json(view))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendBody {
    /// `sms` or `voice`, for this send only; the verification's channel when absent.
    #[serde(default)]
    #[schema(value_type = Option<verifyd_providers::domain::Channel>)]
    pub channel: Option<String>,
}

/// Send the same code again, optionally by the other channel.
///
/// The channel asked for applies to this send only: the verification keeps
/// its own (`channel` in the answer), and so does the factor an approval makes.
#[utoipa::path(post, path = "/v1/verifications/{id}/resend", tag = "verifications",
    params(("id" = Uuid, Path)), request_body(content = Option<ResendBody>),
    responses((status = 202, body = View),
        (status = 404, body = Problem),
        (status = 409, body = Problem),
        (status = 429, description = "Too soon or too many sends", body = Problem)),
    security(("api_key" = ["verify"])))]
async fn resend(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Verify>,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    // No body means "same channel".
    let body: ResendBody = optional_body(&body)?;
    let channel = body.channel.map(|c| c.parse::<Channel>()).transpose().map_err(|e| ApiError::field("channel", e))?;
    let now = verifyd_core::timestamp::now();
    let shard = state.verification()?.pick(&id);
    let resent = shard.send(Resend { tenant, id, channel, now }).await??;
    let view = View::of(&resent.verification, Delivery::queued(resent.channel), now);
    Ok(HttpResponse::Accepted().json(view))
}

/// Call a pending verification off (the person chose another way, or left):
/// it ends `canceled`, its code is refused from now on, and deliveries still
/// queued are dropped, not sent. `verification.canceled` is published.
#[utoipa::path(post, path = "/v1/verifications/{id}/cancel", tag = "verifications",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Canceled", body = View),
        (status = 404, body = Problem),
        (status = 409, description = "Approved, expired, out of attempts or canceled already (`verification_status`)", body = Problem)),
    security(("api_key" = ["verify"])))]
async fn cancel(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Verify>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    let now = verifyd_core::timestamp::now();
    let shard = state.verification()?.pick(&id);
    let canceled = shard.send(Cancel { tenant, id, now }).await??;
    Ok(HttpResponse::Ok().json(read(&state, &canceled, now).await?))
}

/// One hand-off of a verification's code to a provider, as its backend reads
/// it: never the message, never a provider's free text.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DeliveryAttempt)]
pub struct AttemptView {
    pub job_id: Uuid,
    pub channel: Channel,
    pub provider: Option<String>,
    /// `sent`, `retryable_error` (tried again later), `permanent_error`,
    /// `refused` (this provider only: the next one was tried) or `skipped`.
    pub outcome: String,
    /// The error kind, as in `delivery.reason`.
    pub reason: Option<String>,
    /// What the provider's receipt said last: `queued`, `sent`, `delivered`,
    /// `undelivered` or `failed`.
    pub receipt_status: Option<String>,
    pub latency_ms: Option<i32>,
    #[serde(with = "verifyd_core::timestamp")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptList {
    /// Oldest first.
    pub attempts: Vec<AttemptView>,
}

/// Every attempt at delivering a verification's code, oldest first: each
/// provider tried, retries, receipts. `delivery` on the verification sums
/// up the latest.
#[utoipa::path(get, operation_id = "list_delivery_attempts", path = "/v1/verifications/{id}/attempts",
    tag = "verifications", params(("id" = Uuid, Path)),
    responses((status = 200, body = AttemptList), (status = 404, body = Problem)),
    security(("api_key" = ["verify"])))]
async fn attempts(
    state: web::Data<AppState>,
    Caller { tenant, .. }: Caller<Verify>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    store::get(&state.pool, tenant.id, id).await.map_err(ApiError::internal)?.ok_or(ApiError::NotFound)?;
    let view = verifyd_core::ids::View::Tenant(tenant);
    let recorded = attempts::history(&state.pool, &view, id).await.map_err(ApiError::internal)?;
    let attempts = recorded
        .into_iter()
        .map(|a| AttemptView {
            job_id: a.job_id,
            channel: a.channel.parse().unwrap_or(Channel::Sms),
            provider: a.provider,
            outcome: a.outcome,
            reason: a.error_kind,
            receipt_status: a.receipt_status,
            latency_ms: a.latency_ms,
            at: a.at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(AttemptList { attempts }))
}
