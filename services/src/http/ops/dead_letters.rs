//! Dead letters as operators handle them: list (filtered, paged), open, replay
//! one or a filtered set, discard one or a filtered set with a reason. Lists
//! read the `dead_letters` table, never the queue. Every action is audited
//! with the acting key; a tenant's key sees and acts on its own letters only.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use verifyd_core::ops::letters::{self, LetterError, MAX_BATCH, Replayed};
use verifyd_core::outbox::relay::Kick;
use verifyd_core::store::dead_letters;

use crate::http::body::RawBody;
use crate::http::json::Json;
use crate::http::operator::Operator;
use crate::http::problem::{ApiError, Problem};
use crate::http::{AppState, path_id};
use crate::ops::{BadFilter, FilterArgs, FilterError, LetterDetail, LetterView};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/ops/dead-letters").route(web::get().to(list)))
        .service(web::resource("/v1/ops/dead-letters/replay").route(web::post().to(replay_matching)))
        .service(web::resource("/v1/ops/dead-letters/discard").route(web::post().to(discard_matching)))
        .service(web::resource("/v1/ops/dead-letters/{id}").route(web::get().to(show)))
        .service(web::resource("/v1/ops/dead-letters/{id}/replay").route(web::post().to(replay)))
        .service(web::resource("/v1/ops/dead-letters/{id}/discard").route(web::post().to(discard)));
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> Self {
        match e {
            FilterError::Bad(BadFilter { field, message }) => ApiError::InvalidField { field, message },
            FilterError::UnknownTenant => ApiError::NotFound,
            FilterError::Store(e) => ApiError::internal(e),
        }
    }
}

/// The filter's fields, then paging (serde's `flatten` does not mix with
/// refusing unknown fields, so they are spelled out).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    tenant: Option<String>,
    channel: Option<String>,
    reason: Option<String>,
    status: Option<String>,
    older_than: Option<String>,
    newer_than: Option<String>,
    after: Option<Uuid>,
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LetterPage {
    /// Newest first.
    dead_letters: Vec<LetterView>,
    /// Pass as `after` for the next page; null on the last.
    next_after: Option<Uuid>,
}

/// Dead letters, newest first: waiting ones by default (`status=all` for
/// every one), filtered by tenant, channel, reason and age.
#[utoipa::path(get, operation_id = "list_dead_letters", path = "/v1/ops/dead-letters", tag = "operations",
    params(FilterArgs, ("after" = Option<Uuid>, Query, description = "The previous page's `next_after`"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200; 50 by default")),
    responses((status = 200, body = LetterPage), (status = 404, description = "`tenant` names no tenant the key may see", body = Problem), (status = 422, description = "A bad filter (`field` names it)", body = Problem)),
    security(("api_key" = ["ops"])))]
async fn list(
    state: web::Data<AppState>,
    op: Operator,
    query: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let ListParams { tenant, channel, reason, status, older_than, newer_than, after, limit } = query.into_inner();
    let filter = FilterArgs { tenant, channel, reason, status, older_than, newer_than };
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 200"));
    }
    let filter = filter.parse(&state.pool, &op.view, verifyd_core::timestamp::now()).await?;
    let letters = dead_letters::list(&state.pool, &op.view, &filter, after, limit).await?;
    let next_after = (letters.len() as i64 == limit).then(|| letters.last().map(|l| l.id)).flatten();
    let dead_letters = letters.iter().map(LetterView::from).collect();
    Ok(HttpResponse::Ok().json(LetterPage { dead_letters, next_after }))
}

/// One dead letter: why, where its verification stands, every delivery
/// attempt with provider, error kind and time, the first and last failure,
/// whether it can be replayed, and its message (numbers masked).
#[utoipa::path(get, path = "/v1/ops/dead-letters/{id}", tag = "operations",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = LetterDetail), (status = 404, description = "No such letter for this key", body = Problem)),
    security(("api_key" = ["ops"])))]
async fn show(state: web::Data<AppState>, op: Operator, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    let opened =
        letters::open(&state.pool, &op.view, id, verifyd_core::timestamp::now()).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(LetterDetail::from(opened)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayAnswer {
    replayed: Replayed,
}

/// Sends a dead letter again: its job is re-armed under a new id and goes
/// through the dispatch queue once more (a second replay is refused). A
/// verification that ended or expired is refused with why.
#[utoipa::path(post, path = "/v1/ops/dead-letters/{id}/replay", tag = "operations",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ReplayAnswer),
        (status = 404, body = Problem),
        (status = 409, description = "`dead_letter_resolved` (replayed or discarded already), `dead_letter_not_replayable`, or `verification_not_pending` (`verification_status` says how it ended)", body = Problem)),
    security(("api_key" = ["ops"])))]
async fn replay(state: web::Data<AppState>, op: Operator, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    let replayed = letters::replay(&state.pool, &op.view, id, &op.who()?, verifyd_core::timestamp::now()).await?;
    state.core.relay.do_send(Kick);
    Ok(HttpResponse::Ok().json(ReplayAnswer { replayed }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscardBody {
    /// Why it is put aside (1–500 characters), kept with the letter and audited.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u0009\u000b-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u0009\u000b-\u001f\u007f-\u009f]*$"
    )]
    reason: String,
}

fn discard_reason(raw: &str) -> Result<&str, ApiError> {
    let reason = raw.trim();
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::field("reason", "must be 1 to 500 printable characters"));
    }
    Ok(reason)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiscardAnswer {
    discarded: LetterView,
}

/// Puts a dead letter aside for good, with a reason.
#[utoipa::path(post, path = "/v1/ops/dead-letters/{id}/discard", tag = "operations",
    params(("id" = Uuid, Path)), request_body = DiscardBody,
    responses((status = 200, body = DiscardAnswer), (status = 404, body = Problem),
        (status = 409, description = "`dead_letter_resolved`", body = Problem),
        (status = 422, description = "`reason` missing or too long", body = Problem)),
    security(("api_key" = ["ops"])))]
async fn discard(
    state: web::Data<AppState>,
    op: Operator,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path)?;
    let body: DiscardBody = serde_json::from_slice(&body).map_err(|e| ApiError::malformed_json(&e))?;
    let reason = discard_reason(&body.reason)?;
    let letter =
        letters::discard(&state.pool, &op.view, id, &op.who()?, reason, verifyd_core::timestamp::now()).await?;
    Ok(HttpResponse::Ok().json(DiscardAnswer { discarded: LetterView::from(&letter) }))
}

/// Which waiting letters to act on: every field narrows, none is all.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// A tenant's name (deployment operators only).
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    tenant: Option<String>,
    /// `sms` or `voice`.
    #[serde(default)]
    #[schema(value_type = Option<verifyd_providers::domain::Channel>)]
    channel: Option<String>,
    /// A reason kind (`retries_exhausted`, …).
    #[serde(default)]
    #[schema(value_type = Option<verifyd_core::dead_letter::Reason>)]
    reason: Option<String>,
    /// Dead-lettered at least this long ago (`90`, `30s`, `15m`, `2h`, `7d`).
    #[serde(default)]
    #[schema(pattern = "^[0-9]{1,12}[smhd]?$")]
    older_than: Option<String>,
    /// Dead-lettered less than this long ago.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{1,12}[smhd]?$")]
    newer_than: Option<String>,
    /// At most this many letters, oldest first (1 to 500; 100 by default).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Which waiting letters to discard, and why: every filter narrows, none is all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscardBatchBody {
    /// A tenant's name (deployment operators only).
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    tenant: Option<String>,
    /// `sms` or `voice`.
    #[serde(default)]
    #[schema(value_type = Option<verifyd_providers::domain::Channel>)]
    channel: Option<String>,
    /// A reason kind (`retries_exhausted`, …).
    #[serde(default)]
    #[schema(value_type = Option<verifyd_core::dead_letter::Reason>)]
    reason: Option<String>,
    /// Dead-lettered at least this long ago (`90`, `30s`, `15m`, `2h`, `7d`).
    #[serde(default)]
    #[schema(pattern = "^[0-9]{1,12}[smhd]?$")]
    older_than: Option<String>,
    /// Dead-lettered less than this long ago.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{1,12}[smhd]?$")]
    newer_than: Option<String>,
    /// At most this many letters, oldest first (1 to 500; 100 by default).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Why (1–500 characters), kept with each letter and audited.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u0009\u000b-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u0009\u000b-\u001f\u007f-\u009f]*$"
    )]
    discard_reason: String,
}

impl DiscardBatchBody {
    fn split(self) -> (BatchBody, String) {
        let DiscardBatchBody { tenant, channel, reason, older_than, newer_than, limit, discard_reason } = self;
        (BatchBody { tenant, channel, reason, older_than, newer_than, limit }, discard_reason)
    }
}

/// One letter a batch could not act on, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Refusal {
    id: Uuid,
    /// The problem's `error` (`verification_not_pending`, `dead_letter_not_replayable`, …).
    error: String,
    detail: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    /// Replayed (or discarded) letters.
    done: Vec<Uuid>,
    refused: Vec<Refusal>,
}

/// One letter a batch action could not take, and why. An internal error is
/// logged and reported for that letter; the batch goes on, so what was done
/// is still said.
fn refusal(id: Uuid, error: LetterError) -> Refusal {
    let api = ApiError::from(error);
    let name = match &api {
        ApiError::Internal(cause) => {
            tracing::error!(letter_id = %id, %cause, "batch action on a dead letter failed");
            return Refusal {
                id,
                error: "internal".into(),
                detail: "an internal error occurred; it has been logged".into(),
            };
        }
        ApiError::NotPending(_) | ApiError::Letter(_) | ApiError::NotFound => api.kind(),
        _ => "refused",
    };
    Refusal { id, error: name.to_owned(), detail: api.to_string() }
}

async fn batch(state: &AppState, op: &Operator, body: BatchBody) -> Result<Vec<dead_letters::Letter>, ApiError> {
    let limit = body.limit.unwrap_or(100);
    if !(1..=MAX_BATCH).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 500"));
    }
    let args = FilterArgs {
        tenant: body.tenant.clone(),
        channel: body.channel.clone(),
        reason: body.reason.clone(),
        status: None,
        older_than: body.older_than.clone(),
        newer_than: body.newer_than.clone(),
    };
    let filter = args.parse(&state.pool, &op.view, verifyd_core::timestamp::now()).await?;
    Ok(letters::matching(&state.pool, &op.view, &filter, limit).await?)
}

/// Replays every waiting letter the filter matches (oldest first, up to
/// `limit`); letters whose verification ended are refused one by one, with why.
/// The body is required: `{}` (every waiting letter) is said, never implied.
#[utoipa::path(post, path = "/v1/ops/dead-letters/replay", tag = "operations",
    request_body = BatchBody,
    responses((status = 200, body = BatchAnswer), (status = 404, description = "`tenant` names no tenant the key may see", body = Problem), (status = 422, body = Problem)),
    security(("api_key" = ["ops"])))]
async fn replay_matching(
    state: web::Data<AppState>,
    op: Operator,
    body: Json<BatchBody>,
) -> Result<HttpResponse, ApiError> {
    let matching = batch(&state, &op, body.into_inner()).await?;
    let who = op.who()?;
    let (mut done, mut refused) = (Vec::new(), Vec::new());
    for letter in matching {
        match letters::replay(&state.pool, &op.view, letter.id, &who, verifyd_core::timestamp::now()).await {
            Ok(r) => done.push(r.id),
            Err(e) => refused.push(refusal(letter.id, e)),
        }
    }
    if !done.is_empty() {
        state.core.relay.do_send(Kick);
    }
    Ok(HttpResponse::Ok().json(BatchAnswer { done, refused }))
}

/// Discards every waiting letter the filter matches (oldest first, up to
/// `limit`), with `discard_reason`.
#[utoipa::path(post, path = "/v1/ops/dead-letters/discard", tag = "operations",
    request_body = DiscardBatchBody,
    responses((status = 200, body = BatchAnswer), (status = 404, description = "`tenant` names no tenant the key may see", body = Problem), (status = 422, body = Problem)),
    security(("api_key" = ["ops"])))]
async fn discard_matching(
    state: web::Data<AppState>,
    op: Operator,
    body: Json<DiscardBatchBody>,
) -> Result<HttpResponse, ApiError> {
    let (filter, discard) = body.into_inner().split();
    let reason = discard_reason(&discard)
        .map_err(|_| ApiError::field("discard_reason", "must be 1 to 500 printable characters"))?;
    let matching = batch(&state, &op, filter).await?;
    let who = op.who()?;
    let (mut done, mut refused) = (Vec::new(), Vec::new());
    for letter in matching {
        match letters::discard(&state.pool, &op.view, letter.id, &who, reason, verifyd_core::timestamp::now()).await {
            Ok(l) => done.push(l.id),
            Err(e) => refused.push(refusal(letter.id, e)),
        }
    }
    Ok(HttpResponse::Ok().json(BatchAnswer { done, refused }))
}
