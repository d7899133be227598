//! `GET /v1/dev/messages`: the messages the dev inbox provider "sent",
//! **codes included**, so a developer (or a test in any language) can read
//! the code it was just sent without a phone.
//!
//! Development only, and only where it can work: the route is mounted when
//! `mode = "development"` and `providers.inbox` is configured. In production
//! mode (where the inbox provider is refused anyway) it is not mounted at
//! all, and answers the `404 not_found` problem of any unknown path. It is
//! left out of the OpenAPI document, which describes the production API.
//! It needs an API key with the `verify` scope; the inbox records no tenant,
//! so every tenant's messages are listed to any such key.

use std::path::PathBuf;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use verifyd_providers::domain::PhoneNumber;
use verifyd_providers::inbox::InboxReader;

use super::auth::{Caller, Verify};
use super::problem::ApiError;

/// Where the inbox provider writes (`providers.inbox.path`).
#[derive(Debug, Clone)]
pub struct DevInbox(pub PathBuf);

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/dev/messages").route(web::get().to(messages)));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesQuery {
    /// Only messages to this number (E.164).
    to: Option<String>,
    /// At most this many, newest first (1 to 500, default 50).
    limit: Option<usize>,
}

/// The newest messages first: `{"messages": [{"id","reference","channel","to",
/// "text"|"script","code","sent_at"}]}`, never cached.
async fn messages(
    inbox: web::Data<DevInbox>,
    _caller: Caller<Verify>,
    query: web::Query<MessagesQuery>,
) -> Result<HttpResponse, ApiError> {
    let MessagesQuery { to, limit } = query.into_inner();
    let to = to.map(|to| PhoneNumber::parse(&to).map_err(|e| ApiError::field("to", e))).transpose()?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::field("limit", format!("must be 1 to {MAX_LIMIT}")));
    }
    let reader = InboxReader::new(&inbox.0);
    let read = web::block(move || match &to {
        Some(to) => reader.messages_to(to.e164()),
        None => reader.messages(),
    })
    .await
    .map_err(ApiError::internal)?;
    let mut messages = read.map_err(|e| ApiError::internal(format!("reading the dev inbox: {e}")))?;
    messages.reverse();
    messages.truncate(limit);
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({ "messages": messages })))
}
