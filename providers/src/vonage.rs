//! Vonage (Nexmo) SMS API: `POST https://rest.nexmo.com/sms/json`, form-encoded,
//! with `api_key` and `api_secret` in the form.
//!
//! Vonage answers HTTP 200 even when it refuses a message: the outcome is the
//! `status` of each entry in `messages`. `"0"` is accepted; 1 (throttled), 5
//! (internal error) and 10 (too many binds) are worth a retry; every other
//! status is permanent. Voice (the Voice API with a JWT-signed NCCO `talk`
//! action) is not implemented yet: this provider serves the SMS channel only.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::Channel;
use crate::http;
use crate::provider::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};

const NAME: &str = "vonage";
pub const DEFAULT_BASE_URL: &str = "https://rest.nexmo.com";
/// `client-ref` is at most 40 characters.
const MAX_CLIENT_REF: usize = 40;
const MAX_TEXT_CHARS: usize = 1600;

/// Settings of the Vonage provider (`providers.vonage` in configuration;
/// `timeout_ms` in milliseconds, default 10 000).
#[derive(Clone, Deserialize)]
pub struct VonageConfig {
    pub api_key: String,
    pub api_secret: SecretString,
    /// Sender: a Vonage number (digits) or an alphanumeric sender id.
    pub from: String,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Where Vonage posts delivery receipts.
    #[serde(default)]
    pub callback: Option<String>,
    #[serde(rename = "timeout_ms", default = "http::default_timeout", deserialize_with = "http::millis")]
    pub timeout: Duration,
}

impl VonageConfig {
    pub fn new(api_key: impl Into<String>, api_secret: impl Into<String>, from: impl Into<String>) -> Self {
        VonageConfig {
            api_key: api_key.into(),
            api_secret: SecretString::from(api_secret.into()),
            from: from.into(),
            base_url: default_base_url(),
            callback: None,
            timeout: http::DEFAULT_TIMEOUT,
        }
    }
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

impl fmt::Debug for VonageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VonageConfig")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("from", &self.from)
            .field("base_url", &self.base_url)
            .field("callback", &self.callback)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug)]
pub struct Vonage {
    config: VonageConfig,
    client: reqwest::Client,
}

impl Vonage {
    pub fn new(config: VonageConfig) -> Result<Self, reqwest::Error> {
        Ok(Vonage { client: http::client(config.timeout)?, config })
    }
}

/// `{"message-count":"1","messages":[{"to","message-id","status",…,"error-text"?}]}`
#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    status: String,
    #[serde(rename = "message-id", default)]
    message_id: Option<String>,
    #[serde(rename = "error-text", default)]
    error_text: Option<String>,
}

/// Text with only GSM-7 basic characters goes as `text`; anything else (accents
/// outside GSM, Japanese) needs `type=unicode`.
fn needs_unicode(text: &str) -> bool {
    const GSM: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    !text.chars().all(|c| GSM.contains(c))
}

#[async_trait]
impl Provider for Vonage {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Sms
    }

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, ProviderError> {
        let chars = sms.body.chars().count();
        if chars > MAX_TEXT_CHARS {
            let reason = format!("SMS text has {chars} characters, over {MAX_TEXT_CHARS}");
            return Err(permanent(PermanentKind::Configuration, reason, None));
        }
        // Vonage wants the number as digits, without the `+`.
        let to = sms.to.e164().trim_start_matches('+');
        // `ttl` in milliseconds: a code that expired is not delivered.
        let ttl = sms.validity.as_millis().clamp(20_000, 604_800_000).to_string();
        let reference: String = sms.reference.chars().take(MAX_CLIENT_REF).collect();
        let mut form = vec![
            ("api_key", self.config.api_key.as_str()),
            ("api_secret", self.config.api_secret.expose_secret()),
            ("from", self.config.from.as_str()),
            ("to", to),
            ("text", sms.body.as_str()),
            ("ttl", ttl.as_str()),
            ("client-ref", reference.as_str()),
        ];
        if needs_unicode(&sms.body) {
            form.push(("type", "unicode"));
        }
        if let Some(callback) = &self.config.callback {
            form.push(("callback", callback));
        }
        tracing::debug!(to = %sms.to.masked(), reference = %sms.reference, "vonage: sending SMS");
        let url = format!("{}/sms/json", self.config.base_url.trim_end_matches('/'));
        let response = self.client.post(url).form(&form).send().await.map_err(|e| http::transport_error(NAME, e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| http::transport_error(NAME, e))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(retryable(format!("HTTP {status}"), None));
        }
        if !status.is_success() {
            let kind = if status.as_u16() == 401 { PermanentKind::Configuration } else { PermanentKind::Rejected };
            return Err(permanent(kind, format!("HTTP {status}"), None));
        }
        let parsed: Response =
            serde_json::from_slice(&body).map_err(|_| retryable("the answer is not Vonage's JSON".to_owned(), None))?;
        let Some(first) = parsed.messages.first() else {
            return Err(retryable("the answer lists no message".to_owned(), None));
        };
        // A long text is split in parts, each with its own status: every part
        // must be accepted.
        if let Some(refused) = parsed.messages.iter().find(|m| m.status != "0") {
            return Err(classify(refused, &sms.body));
        }
        Ok(Sent { provider: NAME.to_owned(), message_id: first.message_id.clone().unwrap_or_default() })
    }

    async fn place_call(&self, _call: &VoiceCall) -> Result<Sent, ProviderError> {
        Err(permanent(
            PermanentKind::Configuration,
            "vonage serves SMS only in this version; list another provider for voice".to_owned(),
            None,
        ))
    }
}

/// A refused message's status, mapped as Vonage documents it.
fn classify(message: &Message, secret: &str) -> ProviderError {
    let code = message.status.parse::<i64>().ok();
    let text = message.error_text.as_deref().unwrap_or("no error text");
    // Error texts may quote the message: never let the code through.
    let text = http::safe_text(text, secret, 200);
    let reason = format!("status {}: {text}", message.status);
    match code {
        Some(1 | 5 | 10) => retryable(reason, code),
        Some(2 | 4 | 8 | 9 | 14 | 15) => permanent(PermanentKind::Configuration, reason, code),
        Some(3) => permanent(PermanentKind::InvalidNumber, reason, code),
        Some(7) => permanent(PermanentKind::OptedOut, reason, code),
        _ => permanent(PermanentKind::Rejected, reason, code),
    }
}

fn retryable(reason: String, provider_code: Option<i64>) -> ProviderError {
    ProviderError::Retryable { provider: NAME.to_owned(), reason, provider_code, retry_after: None }
}

fn permanent(kind: PermanentKind, reason: String, provider_code: Option<i64>) -> ProviderError {
    ProviderError::Permanent { provider: NAME.to_owned(), kind, reason, provider_code }
}
