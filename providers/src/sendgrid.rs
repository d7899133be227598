//! Twilio SendGrid's v3 Mail Send API for email.
//!
//! - `POST {base}/v3/mail/send` with `Authorization: Bearer <API key>` and
//!   `{"personalizations":[{"to":[{"email"}]}],"from":{"email","name"},
//!   "subject","content":[{"type":"text/plain","value"},{"type":"text/html",
//!   "value"}],"headers":{…},"custom_args":{…},"tracking_settings":{…}}`;
//!   text/plain must come before text/html.
//!   <https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send>.
//! - Success is `202 Accepted` with an empty body; the message id is the
//!   `X-Message-Id` header.
//! - Errors: `{"errors":[{"message","field","help"}]}` with 400 (validation),
//!   401 (bad key), 403 (no permission, unverified sender), 413 (too large);
//!   429 with `X-RateLimit-Reset` (Unix seconds); 5xx are retryable.
//!   <https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors>.
//!
//! Click and open tracking are turned off: a code email must not carry
//! rewritten links or a tracking pixel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::{Channel, EmailAddress, mask_addresses};
use crate::http;
use crate::provider::{Email, PermanentKind, Provider, ProviderError, Sent};

const NAME: &str = "sendgrid";
pub const DEFAULT_BASE_URL: &str = "https://api.sendgrid.com";
pub use crate::http::DEFAULT_TIMEOUT;
/// How much of SendGrid's message ends up in an error reason.
const MAX_ERROR_CHARS: usize = 200;

/// Settings of the SendGrid provider. `timeout_ms` as for every HTTP
/// provider; `base_url` defaults to `https://api.sendgrid.com` (the EU
/// subuser region is `https://api.eu.sendgrid.com`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendGridConfig {
    pub api_key: SecretString,
    /// The sender: a verified single sender or an address on an
    /// authenticated domain of the SendGrid account.
    pub from: EmailAddress,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(rename = "timeout_ms", default = "http::default_timeout", deserialize_with = "http::millis")]
    pub timeout: Duration,
}

impl SendGridConfig {
    pub fn new(api_key: impl Into<String>, from: EmailAddress) -> Self {
        SendGridConfig {
            api_key: SecretString::from(api_key.into()),
            from,
            base_url: default_base_url(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

/// The SendGrid client. Cheap to share: one connection pool per instance.
#[derive(Debug)]
pub struct SendGrid {
    config: SendGridConfig,
    client: reqwest::Client,
}

impl SendGrid {
    pub fn new(config: SendGridConfig) -> Result<Self, reqwest::Error> {
        let client = http::client(config.timeout)?;
        Ok(SendGrid { config, client })
    }

    fn url(&self) -> String {
        format!("{}/v3/mail/send", self.config.base_url.trim_end_matches('/'))
    }
}

/// The Mail Send body of one code email.
pub fn request_body(email: &Email, from: &EmailAddress) -> serde_json::Value {
    json!({
        "personalizations": [{ "to": [{ "email": email.to.as_str() }] }],
        "from": { "email": from.as_str(), "name": email.from_name },
        "subject": email.subject,
        "content": [
            { "type": "text/plain", "value": email.text },
            { "type": "text/html", "value": email.html },
        ],
        "headers": {
            "Auto-Submitted": "auto-generated",
            "X-Auto-Response-Suppress": "All",
            "Message-ID": email.message_id(from),
        },
        "custom_args": { "verifyd_reference": email.reference },
        "tracking_settings": {
            "click_tracking": { "enable": false, "enable_text": false },
            "open_tracking": { "enable": false },
            "subscription_tracking": { "enable": false },
        },
    })
}

#[async_trait]
impl Provider for SendGrid {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Email
    }

    async fn send_email(&self, email: &Email) -> Result<Sent, ProviderError> {
        let body = request_body(email, &self.config.from);
        tracing::debug!(to = %email.to.masked(), reference = %email.reference, "sendgrid: sending email");
        let request = self.client.post(self.url()).bearer_auth(self.config.api_key.expose_secret()).json(&body);
        let response = request.send().await.map_err(|e| http::transport_error(NAME, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_success() {
            return Ok(accepted(status, &headers));
        }
        let body = response.bytes().await.map_err(|e| http::transport_error(NAME, e))?;
        Err(classify(status, &headers, &body, now_unix()))
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn accepted(status: StatusCode, headers: &HeaderMap) -> Sent {
    let id = headers.get("x-message-id").and_then(|v| v.to_str().ok()).map(str::trim);
    match id.filter(|id| (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())) {
        Some(id) => Sent { provider: NAME.to_owned(), message_id: id.to_owned() },
        None => {
            tracing::warn!(%status, "sendgrid: accepted without an X-Message-Id");
            Sent { provider: NAME.to_owned(), message_id: "unknown".to_owned() }
        }
    }
}

#[derive(Deserialize, Serialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Deserialize, Serialize)]
struct ApiError {
    message: Option<String>,
    field: Option<String>,
}

/// How long a 429 asks to wait: `X-RateLimit-Reset` is the Unix time the
/// limit resets; `Retry-After` is read too, should a proxy add one.
fn retry_after(headers: &HeaderMap, now: u64) -> Option<Duration> {
    let reset = headers.get("x-ratelimit-reset").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    match reset {
        Some(reset) => Some(Duration::from_secs(u64::saturating_sub(reset, now).max(1))),
        None => http::retry_after(headers),
    }
}

fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], now: u64) -> ProviderError {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let error = parsed.as_ref().and_then(|b| b.errors.first());
    let reason = describe(status, parsed.is_some(), error);
    let code = Some(i64::from(status.as_u16()));
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return ProviderError::retryable(NAME, reason, code, retry_after(headers, now));
    }
    let field = error.and_then(|e| e.field.as_deref()).unwrap_or_default();
    let kind = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => PermanentKind::Configuration,
        // "The to email does not contain a valid address": about the
        // destination, so no other provider can deliver it either.
        StatusCode::BAD_REQUEST if field.contains(".to") => PermanentKind::InvalidNumber,
        StatusCode::BAD_REQUEST if field.starts_with("from") => PermanentKind::Configuration,
        StatusCode::PAYLOAD_TOO_LARGE => PermanentKind::Configuration,
        s if s.is_client_error() => PermanentKind::Rejected,
        // 1xx/3xx: `base_url` does not point at the SendGrid API.
        _ => PermanentKind::Configuration,
    };
    ProviderError::permanent(NAME, kind, reason, code)
}

/// "HTTP 400 Bad Request: The to email does not contain a valid address.
/// (field personalizations.0.to.0.email)". SendGrid's message may quote the
/// address or the content, so digits are masked and it is shortened.
fn describe(status: StatusCode, json: bool, error: Option<&ApiError>) -> String {
    if !json {
        return format!("HTTP {status} with a non-JSON body");
    }
    let mut reason = format!("HTTP {status}");
    if let Some(message) = error.and_then(|e| e.message.as_deref()).filter(|m| !m.trim().is_empty()) {
        reason.push_str(": ");
        reason.push_str(&http::truncate(&http::mask_digits(&mask_addresses(message)), MAX_ERROR_CHARS));
    }
    if let Some(field) = error.and_then(|e| e.field.as_deref()).filter(|f| !f.is_empty()) {
        reason.push_str(&format!(" (field {})", http::truncate(&http::mask_digits(field), 80)));
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn errors(message: &str, field: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&ErrorBody {
            errors: vec![ApiError { message: Some(message.to_owned()), field: field.map(str::to_owned) }],
        })
        .unwrap()
    }

    #[test]
    fn a_bad_recipient_is_about_the_destination_and_a_bad_sender_about_the_configuration() {
        let to = errors("The to email does not contain a valid address.", Some("personalizations.0.to.0.email"));
        let error = classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), &to, 0);
        assert_eq!(error.kind(), ErrorKind::InvalidNumber);
        assert!(error.to_string().contains("field personalizations.*.to.*.email"), "{error}");
        let from = errors("The from email does not contain a valid address.", Some("from.email"));
        assert_eq!(classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), &from, 0).kind(), ErrorKind::Configuration);
        let key = errors("The provided authorization grant is invalid, expired, or revoked", None);
        assert_eq!(classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), &key, 0).kind(), ErrorKind::Configuration);
    }

    #[test]
    fn too_many_requests_waits_until_the_limit_resets() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-reset", "1000030".parse().unwrap());
        let error = classify(StatusCode::TOO_MANY_REQUESTS, &headers, &errors("too many requests", None), 1_000_000);
        assert!(error.is_retryable());
        assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(error.kind(), ErrorKind::Throttled);
        let error = classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>", 0);
        assert!(error.is_retryable());
        assert_eq!(error.to_string(), "sendgrid is temporarily unavailable: HTTP 502 Bad Gateway with a non-JSON body");
    }
}
