//! A signed, generic webhook: verifyd POSTs each SMS and each call as JSON to an
//! operator's own gateway, which delivers it however it likes. This is how an
//! SMS/voice provider verifyd has no client for gets plugged in.
//!
//! # The request
//!
//! `POST <url>` with `Content-Type: application/json` and one of these bodies
//! (`id` is verifyd's reference of the delivery attempt, unique per attempt:
//! receivers can use it to drop a duplicate):
//!
//! ```json
//! {"id":"att_1","channel":"sms","to":"+14155552671",
//!  "text":"Your code is 8302947","valid_for_secs":600,"sent_at":"2026-03-02T10:00:00Z"}
//!
//! {"id":"att_2","channel":"voice","to":"+14155552671","locale":"en",
//!  "intro":"Your code is","code":"8302947","spoken":"8, 3, 0, 2, 9, 4, 7","repeat":2,
//!  "sent_at":"2026-03-02T10:00:00Z"}
//! ```
//!
//! - `text`: the full SMS to deliver as is; it should not be delivered after
//!   `sent_at + valid_for_secs` (the code has expired by then).
//! - `locale`: a BCP 47 tag (`en`, `pt-BR`) for the text-to-speech voice; map it
//!   to your engine's voices and fall back to `en-US`.
//! - Read `intro`, then `spoken` (the digits one by one: commas make TTS engines
//!   pause between them), `repeat` times (at least 1) with a short pause
//!   between readings. `code` is the same digits, for gateways that build their
//!   own script.
//! - `sent_at`: RFC 3339, UTC, whole seconds: the same instant as the timestamp
//!   header.
//!
//! # The signature
//!
//! Every request carries two headers:
//!
//! - `X-Verifyd-Timestamp: <unix seconds>` (decimal digits only), and
//! - `X-Verifyd-Signature: v1=<hex>`, where `<hex>` is the lowercase hex of
//!   HMAC-SHA256 keyed with the shared secret (its bytes as configured, UTF-8)
//!   over the ASCII timestamp exactly as in the header, a `.`, and the raw request
//!   body bytes exactly as received: `HMAC-SHA256(secret, "1772445600.{\"id\":…}")`.
//!
//! A receiver recomputes the HMAC over the *raw* body (before any JSON parsing),
//! compares it in constant time, and refuses a timestamp more than 5 minutes
//! from its own clock, so a captured request cannot be replayed later. The
//! header may hold several comma-separated `scheme=value` entries: a receiver
//! accepts the request when any `v1` entry matches and ignores other schemes
//! (room for a future `v2` or for a secret rotation). [`verify_signature`] does
//! all of this for Rust receivers. This is the scheme of Stripe's
//! `Stripe-Signature` (`"{t}.{payload}"`, `v1`, 300 s tolerance,
//! <https://docs.stripe.com/webhooks#verify-manually>) with the timestamp in its
//! own header like Slack's `X-Slack-Request-Timestamp` and a `v…=` hex prefix
//! like `X-Slack-Signature`
//! (<https://api.slack.com/authentication/verifying-requests-from-slack>).
//!
//! # The answer
//!
//! - Any `2xx`: accepted. A JSON body `{"id":"…"}` gives the receiver's message
//!   id (recorded by verifyd); without one, verifyd's `id` is used.
//! - `429`, `408`, `5xx`, a timeout or a connection failure: verifyd tries again
//!   later or on another provider, honouring `Retry-After` (seconds).
//! - `401`/`403`: the signature or the secret is wrong: an operator must act.
//! - Any other `4xx`: a permanent refusal of this message, described by
//!   `{"error":"<code>","message":"<free text>"}` where `<code>` is one of
//!   `invalid_number` (no such number), `region_not_allowed` (the destination
//!   country is not enabled on the gateway), `opted_out` (the recipient said
//!   STOP / is blocked), `channel_not_supported` (landline for SMS, no voice for
//!   this number: verifyd may try the other channel) or `rejected` (anything
//!   else; also what an unknown code or a missing body means). With 401/403,
//!   send `"error":"unauthorized"`: the status decides.
//!   `message` must not quote the SMS text or the code (verifyd masks digits
//!   in it anyway).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::Channel;
use crate::http;
use crate::http::Answer;
use crate::provider::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};

const NAME: &str = "webhook";
pub use crate::http::DEFAULT_TIMEOUT;
/// The header with the request's unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "X-Verifyd-Timestamp";
/// The header with `v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "X-Verifyd-Signature";
/// The signature scheme verifyd writes and [`verify_signature`] checks.
pub const SIGNATURE_SCHEME: &str = "v1";
/// A shorter secret could be guessed offline from one signed request.
pub const MIN_SECRET_BYTES: usize = 32;
/// How far from the receiver's clock a timestamp may be (Stripe's default).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// How much of the receiver's error `message` ends up in an error reason.
const MAX_MESSAGE_CHARS: usize = 200;
/// The longest receiver message id verifyd records.
const MAX_ID_CHARS: usize = 128;

type HmacSha256 = Hmac<Sha256>;

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

fn default_channels() -> Vec<Channel> {
    Channel::ALL.to_vec()
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
    #[error("webhook channels must list \"sms\", \"voice\" or both")]
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
        if config.channels.is_empty() {
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

/// The `X-Verifyd-Signature` value for a request: `v1=` and the lowercase hex
/// HMAC-SHA256, keyed with `secret`, of `timestamp`, `.` and `body`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("{SIGNATURE_SCHEME}={}", hex::encode(tag))
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The timestamp header is not a unix time in decimal seconds.
    #[error("the timestamp is not a unix time in seconds")]
    MalformedTimestamp,
    /// The signature header has no well-formed `v1=<64 hex digits>` entry.
    #[error("the signature header has no v1 signature")]
    NoSignature,
    /// No `v1` entry is the HMAC of this timestamp and body with this secret.
    #[error("the signature does not match the body and timestamp")]
    Mismatch,
    /// Authentic, but signed further from `now` than the tolerance: a replay,
    /// or clocks out of sync.
    #[error("the timestamp is outside the tolerance")]
    Stale,
}

/// Checks a request from verifyd's webhook: `timestamp` is the
/// `X-Verifyd-Timestamp` header, `header` the `X-Verifyd-Signature` header,
/// `body` the raw body bytes as received. Accepts when one `v1` entry of
/// `header` is the HMAC-SHA256 of `"{timestamp}.{body}"` keyed with `secret`
/// (compared in constant time) and `timestamp` is within `tolerance` of `now`
/// (either way: a timestamp from the future is refused too). Use
/// [`DEFAULT_TOLERANCE`] unless there is a reason not to.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let signed_at = parse_timestamp(timestamp)?;
    let candidates: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|entry| entry.trim().split_once('='))
        .filter(|(scheme, _)| *scheme == SIGNATURE_SCHEME)
        .filter_map(|(_, value)| hex::decode(value).ok())
        .filter(|tag| tag.len() == 32)
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let expected = mac(secret, timestamp, body);
    // Every candidate is checked, so the time taken does not say which matched.
    let matched = candidates.iter().fold(false, |matched, tag| expected.clone().verify_slice(tag).is_ok() | matched);
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let drift = match now.duration_since(signed_at) {
        Ok(age) => age,
        Err(ahead) => ahead.duration(),
    };
    if drift > tolerance {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

fn parse_timestamp(timestamp: &str) -> Result<SystemTime, SignatureError> {
    if timestamp.is_empty() || timestamp.len() > 19 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedTimestamp);
    }
    let seconds = timestamp.parse::<u64>().map_err(|_| SignatureError::MalformedTimestamp)?;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds)).ok_or(SignatureError::MalformedTimestamp)
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

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// Computed independently: `printf '1772445600.{"id":"a"}' | openssl dgst
    /// -sha256 -hmac 0123456789abcdef0123456789abcdef`.
    #[test]
    fn signs_timestamp_dot_body() {
        assert_eq!(
            sign(SECRET, "1772445600", br#"{"id":"a"}"#),
            "v1=01d1733d02df114b1645f48482b6d356ed9d87ae6285a809bd36ebe5548a551c"
        );
    }

    #[test]
    fn header_may_list_several_entries_and_other_schemes() {
        let now = UNIX_EPOCH + Duration::from_secs(1_772_445_600);
        let good = sign(SECRET, "1772445600", b"{}");
        let other = sign(b"another secret, also thirty-two bytes", "1772445600", b"{}");
        let header = format!("v0=abc, {other},{good} ,v2=ff");
        assert_eq!(verify_signature(SECRET, "1772445600", b"{}", &header, now, DEFAULT_TOLERANCE), Ok(()));
        assert_eq!(
            verify_signature(SECRET, "1772445600", b"{}", &other, now, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        for bad in ["", "v1=", "v1=zz", "v0=00", "sha256=abc", &good[3..]] {
            assert_eq!(
                verify_signature(SECRET, "1772445600", b"{}", bad, now, DEFAULT_TOLERANCE),
                Err(SignatureError::NoSignature),
                "{bad:?}"
            );
        }
        for bad in ["", "-1", " 1772445600", "1772445600.0", "99999999999999999999"] {
            assert_eq!(
                verify_signature(SECRET, bad, b"{}", &good, now, DEFAULT_TOLERANCE),
                Err(SignatureError::MalformedTimestamp),
                "{bad:?}"
            );
        }
    }

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
