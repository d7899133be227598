//! The webhook provider: each SMS and call POSTed, signed, to the operator's
//! gateway, and its answer classified (`mod.rs` has the contract).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{DEFAULT_TIMEOUT, MIN_SECRET_BYTES, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::domain::Channel;
use crate::http;
use crate::http::Answer;
use crate::provider::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};

const NAME: &str = "webhook";
/// How much of the receiver's error `message` ends up in an error reason.
const MAX_MESSAGE_CHARS: usize = 200;
/// The longest receiver message id verifyd records.
const MAX_ID_CHARS: usize = 128;

/// Settings of the webhook provider (`timeout_ms` in milliseconds, default
/// 10 000; `channels` both by default; `headers` none by default).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where each message is POSTed. Use `https`: the body holds the code.
    pub url: String,
    /// The shared HMAC key, at least [`MIN_SECRET_BYTES`] bytes.
    pub secret: SecretString,
    /// The channels the receiving gateway delivers.
    #[serde(default = "default_channels")]
    pub channels: Vec<Channel>,
    /// Static headers added to every request (an API gateway's key, say).
    /// Values are treated as secrets; verifyd's own headers cannot be replaced.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretString>,
    #[serde(rename = "timeout_ms", default = "http::default_timeout", deserialize_with = "http::millis")]
    pub timeout: Duration,
}

impl WebhookConfig {
    /// Both channels, no extra header, the default timeout.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            secret: SecretString::from(secret.into()),
            channels: default_channels(),
            headers: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// SMS and voice: the gateway contract (`mod.rs`) has no email message.
fn default_channels() -> Vec<Channel> {
    vec![Channel::Sms, Channel::Voice]
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self.headers.keys().map(|name| format!("{name}: <redacted>")).collect();
        f.debug_struct("WebhookConfig")
            .field("url", &redacted_url(&self.url))
            .field("secret", &"<redacted>")
            .field("channels", &self.channels)
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The URL without what may carry a credential: the password and the query.
fn redacted_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("redacted"));
            }
            if parsed.query().is_some() {
                parsed.set_query(Some("redacted"));
            }
            parsed.to_string()
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

/// Why a [`WebhookConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    #[error("webhook url must be an absolute http:// or https:// URL")]
    Url,
    #[error("webhook secret has {0} bytes; at least {MIN_SECRET_BYTES} random bytes are needed")]
    SecretTooShort(usize),
    #[error("webhook channels must list \"sms\", \"voice\" or both (a gateway takes no email or WhatsApp)")]
    NoChannel,
    #[error("webhook header {0:?} is not a valid HTTP header, or is one verifyd sets itself")]
    Header(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The webhook client. Cheap to share: one connection pool per instance.
pub struct Webhook {
    config: WebhookConfig,
    url: reqwest::Url,
    headers: HeaderMap,
    client: reqwest::Client,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Webhook {
    pub fn new(config: WebhookConfig) -> Result<Self, WebhookConfigError> {
        let url = reqwest::Url::parse(&config.url).map_err(|_| WebhookConfigError::Url)?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(WebhookConfigError::Url);
        }
        let secret_len = config.secret.expose_secret().len();
        if secret_len < MIN_SECRET_BYTES {
            return Err(WebhookConfigError::SecretTooShort(secret_len));
        }
        if config.channels.is_empty() || config.channels.iter().any(|c| !matches!(c, Channel::Sms | Channel::Voice)) {
            return Err(WebhookConfigError::NoChannel);
        }
        let headers = extra_headers(&config.headers)?;
        let client = http::client(config.timeout)?;
        Ok(Webhook { config, url, headers, client })
    }

    /// Signs and POSTs `payload`. `secret` (the SMS text or the code) is kept out
    /// of any error reason.
    async fn deliver(
        &self,
        payload: &impl Serialize,
        now: SystemTime,
        reference: &str,
        secret: &str,
    ) -> Result<Sent, ProviderError> {
        let body = serde_json::to_vec(payload).map_err(|_| {
            ProviderError::permanent(NAME, PermanentKind::Configuration, "cannot encode the message as JSON", None)
        })?;
        let timestamp = unix_seconds(now).to_string();
        let signature = sign(self.config.secret.expose_secret().as_bytes(), &timestamp, &body);
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signature)
            .body(body);
        match http::send(NAME, request).await? {
            Answer::Accepted { body: Some(body), .. } => Ok(accepted(&body, reference)),
            Answer::Accepted { .. } => Ok(sent(reference)),
            Answer::Refused { status, retry_after, body } => Err(classify(status, retry_after, &body, secret)),
        }
    }

    fn refuse_unconfigured(&self, channel: Channel) -> Result<(), ProviderError> {
        if self.supports(channel) {
            return Ok(());
        }
        let reason = format!("the webhook is not configured for the {channel} channel");
        Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None))
    }
}

/// `headers` from the config, checked once. Values are marked sensitive so
/// they never show in a `Debug` of the request.
fn extra_headers(configured: &BTreeMap<String, SecretString>) -> Result<HeaderMap, WebhookConfigError> {
    let reserved = [CONTENT_TYPE.as_str(), "content-length", "host", "transfer-encoding"];
    let mut headers = HeaderMap::new();
    for (name, value) in configured {
        let invalid = || WebhookConfigError::Header(name.clone());
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        if reserved.contains(&header.as_str()) || header.as_str().starts_with("x-verifyd-") {
            return Err(invalid());
        }
        let mut value = HeaderValue::from_str(value.expose_secret()).map_err(|_| invalid())?;
        value.set_sensitive(true);
        headers.insert(header, value);
    }
    Ok(headers)
}

/// The body of an SMS request.
#[derive(Serialize)]
struct SmsPayload<'a> {
    id: &'a str,
    channel: Channel,
    to: &'a str,
    text: &'a str,
    valid_for_secs: u64,
    sent_at: String,
}

/// The body of a call request.
#[derive(Serialize)]
struct CallPayload<'a> {
    id: &'a str,
    channel: Channel,
    to: &'a str,
    locale: &'a str,
    intro: &'a str,
    code: &'a str,
    spoken: String,
    repeat: u8,
    sent_at: String,
}

#[async_trait]
impl Provider for Webhook {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, channel: Channel) -> bool {
        self.config.channels.contains(&channel)
    }

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, ProviderError> {
        self.refuse_unconfigured(Channel::Sms)?;
        let now = SystemTime::now();
        let payload = SmsPayload {
            id: &sms.reference,
            channel: Channel::Sms,
            to: sms.to.e164(),
            text: &sms.body,
            valid_for_secs: sms.validity.as_secs(),
            sent_at: rfc3339(now),
        };
        tracing::debug!(to = %sms.to.masked(), reference = %sms.reference, "webhook: sending SMS");
        self.deliver(&payload, now, &sms.reference, &sms.body).await
    }

    async fn place_call(&self, call: &VoiceCall) -> Result<Sent, ProviderError> {
        self.refuse_unconfigured(Channel::Voice)?;
        let now = SystemTime::now();
        let payload = CallPayload {
            id: &call.reference,
            channel: Channel::Voice,
            to: call.to.e164(),
            locale: call.locale.as_str(),
            intro: call.intro.trim(),
            code: call.code.expose(),
            spoken: call.spoken_digits(),
            repeat: call.repeat.max(1),
            sent_at: rfc3339(now),
        };
        tracing::debug!(to = %call.to.masked(), reference = %call.reference, "webhook: placing call");
        self.deliver(&payload, now, &call.reference, call.code.expose()).await
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// `2026-03-02T10:00:00Z`: UTC, whole seconds, like the timestamp header.
fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Deserialize)]
struct AcceptedBody {
    id: Option<String>,
}

/// The documented error body: `{"error":"invalid_number","message":"…"}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
    message: Option<String>,
}

/// A 2xx: the receiver's `id` when it gave a usable one, else ours.
fn accepted(body: &[u8], reference: &str) -> Sent {
    let id = serde_json::from_slice::<AcceptedBody>(body).ok().and_then(|b| b.id).filter(|id| is_message_id(id));
    match id {
        Some(id) => Sent { provider: NAME.to_owned(), message_id: id },
        None => sent(reference),
    }
}

/// Short, printable, without spaces: safe to store and show.
fn is_message_id(id: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&id.chars().count()) && id.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

fn sent(reference: &str) -> Sent {
    Sent { provider: NAME.to_owned(), message_id: reference.to_owned() }
}

/// Maps an error answer; `secret` (the SMS text or the code) never reaches the reason.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8], secret: &str) -> ProviderError {
    let error = serde_json::from_slice::<ErrorBody>(body).ok();
    let reason = describe(status, error.as_ref(), secret);
    let retry = matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT);
    if retry || status.is_server_error() {
        return ProviderError::retryable(NAME, reason, None, retry_after);
    }
    let kind = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => PermanentKind::Configuration,
        status if status.is_client_error() => error_kind(error.as_ref().and_then(|e| e.error.as_deref())),
        // 1xx/3xx (redirects are not followed): `url` does not point at a receiver.
        _ => PermanentKind::Configuration,
    };
    ProviderError::permanent(NAME, kind, reason, None)
}

fn error_kind(code: Option<&str>) -> PermanentKind {
    match code {
        Some("invalid_number") => PermanentKind::InvalidNumber,
        Some("region_not_allowed") => PermanentKind::RegionNotAllowed,
        Some("opted_out") => PermanentKind::OptedOut,
        Some("channel_not_supported") => PermanentKind::ChannelNotSupported,
        _ => PermanentKind::Rejected,
    }
}

/// "HTTP 400 Bad Request, error invalid_number: The number +*********** does not exist".
/// The error code is quoted only when it looks like one; the message loses any
/// echo of `secret` and every digit, and is shortened.
fn describe(status: StatusCode, error: Option<&ErrorBody>, secret: &str) -> String {
    let Some(error) = error else {
        return format!("HTTP {status} without the documented JSON error body");
    };
    let mut reason = format!("HTTP {status}");
    match error.error.as_deref() {
        Some(code) if looks_like_a_code(code) => reason.push_str(&format!(", error {code}")),
        Some(_) => reason.push_str(", unrecognised error code"),
        None => {}
    }
    if let Some(message) = error.message.as_deref().filter(|m| !m.trim().is_empty()) {
        reason.push_str(": ");
        reason.push_str(&http::safe_text(message, secret, MAX_MESSAGE_CHARS));
    }
    reason
}

/// `invalid_number` and its kin: short, lowercase letters and `_` only.
fn looks_like_a_code(code: &str) -> bool {
    (1..=40).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_ids_are_kept_only_when_printable_and_short() {
        assert_eq!(accepted(br#"{"id":"gw-123"}"#, "att_1").message_id, "gw-123");
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_ID_CHARS + 1));
        for body in [&b""[..], b"OK", br#"{"id":""}"#, br#"{"id":"a b"}"#, br#"{"id":7}"#, long.as_bytes()] {
            assert_eq!(accepted(body, "att_1").message_id, "att_1");
        }
    }

    #[test]
    fn debug_hides_the_secret_header_values_and_url_credentials() {
        let config: WebhookConfig = serde_json::from_value(serde_json::json!({
            "url": "https://user:pa55word@gw.example.com/sms?token=t0ken",
            "secret": "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t",
            "headers": {"X-Api-Key": "k3y-value"},
            "timeout_ms": 2500
        }))
        .unwrap();
        assert_eq!(config.timeout, Duration::from_millis(2500));
        assert_eq!(config.channels, [Channel::Sms, Channel::Voice]);
        let shown = format!("{config:?} {:?}", Webhook::new(config.clone()).unwrap());
        for leak in ["s3cr3t", "k3y-value", "pa55word", "t0ken"] {
            assert!(!shown.contains(leak), "{leak} in {shown}");
        }
        assert!(shown.contains("gw.example.com/sms") && shown.contains("X-Api-Key"), "{shown}");
    }
}
