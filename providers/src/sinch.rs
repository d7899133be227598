//! Sinch: SMS through the SMS REST API (batches) and voice through the Voice
//! API's text-to-speech callouts.
//!
//! SMS: `POST {base_url}/xms/v1/{service_plan_id}/batches` with
//! `Authorization: Bearer <API token>` and JSON
//! `{"to":["+E.164"],"from","body","expire_at","client_reference","delivery_report","callback_url"}`;
//! Sinch answers 201 with the batch (`id`, `to`, `body`, `expire_at`, …). The
//! base URL is regional: `https://us.sms.api.sinch.com` (default),
//! `https://eu.sms.api.sinch.com`, `https://au.sms.api.sinch.com`,
//! `https://br.sms.api.sinch.com`, `https://ca.sms.api.sinch.com`; use the
//! region of the service plan. 400 and 403 carry
//! `{"code":"syntax_invalid_parameter_format","text":"…"}`.
//! - <https://developers.sinch.com/docs/sms/api-reference/sms/batches>
//! - <https://developers.sinch.com/docs/sms/api-reference/status-codes>
//! - <https://community.sinch.com/t5/SMS/Common-SMS-HTTP-Statuses-and-Codes-Explained/ta-p/14163>
//!
//! Voice: module `callout` (`POST https://calling.api.sinch.com/calling/v1/callouts`,
//! `ttsCallout`, signed with the application key and secret).

mod callout;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::domain::Channel;
use crate::http;
use crate::http::Answer;
use crate::provider::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};

pub(crate) use callout::application_signature;

const NAME: &str = "sinch";
/// The SMS API of the US region; other regions swap `us` for `eu`, `au`, `br` or `ca`.
pub const DEFAULT_BASE_URL: &str = "https://us.sms.api.sinch.com";
/// The global Voice API endpoint.
pub const DEFAULT_VOICE_BASE_URL: &str = "https://calling.api.sinch.com";
/// Sinch refuses longer `body` values.
const MAX_BODY_CHARS: usize = 2000;
/// `client_reference` and `callback_url` are at most 2048 characters.
const MAX_REFERENCE_CHARS: usize = 2048;
/// `expire_at` may be at most three days after sending.
const MAX_VALIDITY: Duration = Duration::from_secs(3 * 24 * 3600);
/// How much of Sinch's error text ends up in an error reason.
const MAX_TEXT_CHARS: usize = 200;

/// Settings of the Sinch provider (`providers.sinch` in configuration;
/// `timeout_ms` in milliseconds, default 10 000). Voice needs
/// `application_key` and `application_secret` (a Voice app of the dashboard);
/// without them the provider serves SMS only.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinchConfig {
    pub service_plan_id: String,
    /// The SMS API token of the service plan.
    pub api_token: SecretString,
    /// Sender: a number, short code or alphanumeric id. Sinch requires it
    /// unless the account has an automatic default originator.
    #[serde(default)]
    pub from: Option<String>,
    /// The SMS API of the service plan's region.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Where Sinch posts per-recipient delivery reports.
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub application_key: Option<String>,
    /// The Voice application's secret, base64 as the dashboard shows it.
    #[serde(default)]
    pub application_secret: Option<SecretString>,
    /// Caller id shown on calls (E.164); Sinch picks one when absent.
    #[serde(default)]
    pub cli: Option<String>,
    #[serde(default = "default_voice_base_url")]
    pub voice_base_url: String,
    #[serde(rename = "timeout_ms", default = "http::default_timeout", deserialize_with = "http::millis")]
    pub timeout: Duration,
}

impl SinchConfig {
    /// SMS only, US region, default timeout, no delivery reports.
    pub fn new(service_plan_id: impl Into<String>, api_token: impl Into<String>, from: impl Into<String>) -> Self {
        SinchConfig {
            service_plan_id: service_plan_id.into(),
            api_token: SecretString::from(api_token.into()),
            from: Some(from.into()),
            base_url: default_base_url(),
            callback_url: None,
            application_key: None,
            application_secret: None,
            cli: None,
            voice_base_url: default_voice_base_url(),
            timeout: http::DEFAULT_TIMEOUT,
        }
    }

    /// The same, with the Voice application that places calls.
    pub fn with_voice(mut self, application_key: impl Into<String>, application_secret: impl Into<String>) -> Self {
        self.application_key = Some(application_key.into());
        self.application_secret = Some(SecretString::from(application_secret.into()));
        self
    }
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_voice_base_url() -> String {
    DEFAULT_VOICE_BASE_URL.to_owned()
}

/// The Sinch client. Cheap to share: one connection pool per instance.
#[derive(Debug)]
pub struct Sinch {
    config: SinchConfig,
    client: reqwest::Client,
}

impl Sinch {
    pub fn new(config: SinchConfig) -> Result<Self, reqwest::Error> {
        Ok(Sinch { client: http::client(config.timeout)?, config })
    }

    fn voice_credentials(&self) -> Option<(&str, &SecretString)> {
        Some((self.config.application_key.as_deref()?, self.config.application_secret.as_ref()?))
    }
}

#[async_trait]
impl Provider for Sinch {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, channel: Channel) -> bool {
        match channel {
            Channel::Sms => true,
            Channel::Voice => self.voice_credentials().is_some(),
            Channel::Email | Channel::Whatsapp => false,
        }
    }

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, ProviderError> {
        let chars = sms.body.chars().count();
        if chars > MAX_BODY_CHARS {
            let reason = format!("SMS body has {chars} characters, Sinch accepts at most {MAX_BODY_CHARS}");
            return Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None));
        }
        // The plan id goes into the path: anything but letters and digits would
        // send the request (and the code) to another resource.
        let plan = &self.config.service_plan_id;
        if plan.is_empty() || !plan.bytes().all(|b| b.is_ascii_alphanumeric()) {
            let reason = "service_plan_id must be letters and digits only".to_owned();
            return Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None));
        }
        let body = batch(&self.config, sms, chrono::Utc::now());
        tracing::debug!(to = %sms.to.masked(), reference = %sms.reference, "sinch: sending SMS");
        let url = format!("{}/xms/v1/{plan}/batches", self.config.base_url.trim_end_matches('/'));
        let request = self.client.post(url).bearer_auth(self.config.api_token.expose_secret()).json(&body);
        send(request, "id", &sms.body, classify_sms).await
    }

    async fn place_call(&self, call: &VoiceCall) -> Result<Sent, ProviderError> {
        let Some((key, secret)) = self.voice_credentials() else {
            let reason = "voice needs application_key and application_secret".to_owned();
            return Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None));
        };
        let body = callout::body(call, self.config.cli.as_deref());
        let body = serde_json::to_vec(&body).map_err(|e| {
            ProviderError::permanent(
                NAME,
                PermanentKind::Configuration,
                format!("cannot encode the callout: {e}"),
                None,
            )
        })?;
        let timestamp = callout::timestamp(chrono::Utc::now());
        let signature =
            application_signature(secret.expose_secret(), &body, callout::CONTENT_TYPE, &timestamp, callout::PATH)
                .ok_or_else(|| {
                    let reason = "application_secret is not base64 (copy it from the dashboard)".to_owned();
                    ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None)
                })?;
        tracing::debug!(to = %call.to.masked(), reference = %call.reference, "sinch: placing call");
        let url = format!("{}{}", self.config.voice_base_url.trim_end_matches('/'), callout::PATH);
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, callout::CONTENT_TYPE)
            .header("x-timestamp", timestamp)
            .header(reqwest::header::AUTHORIZATION, format!("Application {key}:{signature}"))
            .body(body);
        send(request, "callId", call.code.expose(), callout::classify).await
    }
}

/// The batch for one SMS: E.164 recipient, the code's lifetime as
/// `expire_at`, verifyd's reference, and per-recipient delivery reports when
/// a callback URL is set.
fn batch(config: &SinchConfig, sms: &Sms, now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let validity = sms.validity.clamp(Duration::from_secs(1), MAX_VALIDITY);
    let expire_at = now + chrono::Duration::from_std(validity).unwrap_or(chrono::Duration::seconds(1));
    let mut body = json!({
        "to": [sms.to.e164()],
        "body": sms.body,
        "expire_at": expire_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "client_reference": sms.reference.chars().take(MAX_REFERENCE_CHARS).collect::<String>(),
    });
    if let Some(from) = &config.from {
        body["from"] = json!(from);
    }
    if let Some(callback) = &config.callback_url {
        body["delivery_report"] = json!("per_recipient");
        body["callback_url"] = json!(callback);
    }
    body
}

type Classify = fn(StatusCode, Option<Duration>, &[u8], &str) -> ProviderError;

/// Sends the request and turns the answer into the created resource's id
/// (`id_field`) or an error. `secret` (the SMS body or the code) never reaches
/// an error reason.
async fn send(
    request: reqwest::RequestBuilder,
    id_field: &str,
    secret: &str,
    classify: Classify,
) -> Result<Sent, ProviderError> {
    match http::send(NAME, request).await? {
        Answer::Accepted { status, body } => {
            let id = body.and_then(|body| created_id(&body, id_field));
            if id.is_none() {
                tracing::warn!(%status, "sinch: accepted without a usable id");
            }
            Ok(Sent { provider: NAME.to_owned(), message_id: id.unwrap_or_else(|| "unknown".to_owned()) })
        }
        Answer::Refused { status, retry_after, body } => Err(classify(status, retry_after, &body, secret)),
    }
}

/// The id Sinch gave the batch or call: a short run of letters, digits and dashes.
fn created_id(body: &[u8], field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = value.get(field)?.as_str()?;
    let plausible = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    plausible.then(|| id.to_owned())
}

/// The SMS API's error body for 400 and 403: `{"code":"…","text":"…"}`.
#[derive(Deserialize)]
struct SmsError {
    code: Option<String>,
    text: Option<String>,
}

/// Maps an SMS API error answer, as the status-codes page documents it.
fn classify_sms(status: StatusCode, retry_after: Option<Duration>, body: &[u8], secret: &str) -> ProviderError {
    let error = serde_json::from_slice::<SmsError>(body).ok();
    let code = error.as_ref().and_then(|e| e.code.as_deref()).map(error_code).unwrap_or_default();
    let text = error.as_ref().and_then(|e| e.text.as_deref()).unwrap_or_default();
    let mut reason = format!("HTTP {status}");
    if !code.is_empty() {
        reason.push_str(&format!(", Sinch error {code}"));
    }
    if !text.trim().is_empty() {
        reason.push_str(": ");
        reason.push_str(&http::safe_text(text, secret, MAX_TEXT_CHARS));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return ProviderError::retryable(NAME, reason, None, retry_after);
    }
    let kind = match (status, code.as_str()) {
        // The recipient is not a valid MSISDN: Sinch says so in the text.
        (StatusCode::BAD_REQUEST, "syntax_invalid_parameter_format") if names_the_recipient(text) => {
            PermanentKind::InvalidNumber
        }
        // A number type (landline, …) that cannot get SMS in its region.
        (StatusCode::FORBIDDEN, "illegal_number_type") => PermanentKind::ChannelNotSupported,
        // blocked_account, missing_callback_url, a wrong token or plan: the operator must act.
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND, _) => PermanentKind::Configuration,
        (status, _) if status.is_client_error() => PermanentKind::Rejected,
        // 1xx/3xx: `base_url` does not point at the Sinch API.
        _ => PermanentKind::Configuration,
    };
    ProviderError::permanent(NAME, kind, reason, None)
}

/// Sinch's error codes are snake_case words; anything else is not quoted.
fn error_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_lowercase() || *c == '_').take(64).collect()
}

/// Whether an invalid-format text is about the recipient rather than another field.
fn names_the_recipient(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["msisdn", "recipient", "phone number", "'to'", "\"to\"", "to[", "e.164", "e164"].iter().any(|w| text.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PhoneNumber;

    fn sms(validity: Duration) -> Sms {
        Sms {
            to: PhoneNumber::parse("+46701234567").unwrap(),
            body: "Your code is 123456".to_owned(),
            validity,
            reference: "att_1".to_owned(),
        }
    }

    #[test]
    fn expire_at_is_the_codes_lifetime_within_sinchs_three_days() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z").unwrap().to_utc();
        let config = SinchConfig::new("plan", "token", "verifyd");
        let body = batch(&config, &sms(Duration::from_secs(600)), now);
        assert_eq!(body["expire_at"], "2026-03-02T10:10:00.000Z");
        let body = batch(&config, &sms(Duration::from_secs(30 * 24 * 3600)), now);
        assert_eq!(body["expire_at"], "2026-03-05T10:00:00.000Z");
        assert!(body.get("callback_url").is_none() && body.get("delivery_report").is_none());
    }

    #[test]
    fn config_debug_hides_both_secrets() {
        let config = SinchConfig::new("plan", "t0ken-value", "verifyd").with_voice("app-key", "c2VjcmV0LXZhbHVl");
        let debug = format!("{config:?}");
        assert!(!debug.contains("t0ken-value") && !debug.contains("c2VjcmV0LXZhbHVl"), "{debug}");
    }

    #[test]
    fn only_ids_that_look_like_ids_are_kept() {
        assert_eq!(
            created_id(br#"{"id":"01FC66621XXXXX119Z8PMV1QPQ"}"#, "id").as_deref(),
            Some("01FC66621XXXXX119Z8PMV1QPQ")
        );
        assert_eq!(created_id(br#"{"id":"a b"}"#, "id"), None);
        assert_eq!(created_id(b"not json", "id"), None);
    }
}
