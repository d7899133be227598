//! Vonage (Nexmo) SMS API: `POST https://rest.nexmo.com/sms/json`, form-encoded,
//! with `api_key` and `api_secret` in the form.
//!
//! Vonage answers HTTP 200 even when it refuses a message: the outcome is the
//! `status` of each entry in `messages`. `"0"` is accepted; 1 (throttled), 5
//! (internal error) and 10 (too many binds) are worth a retry; every other
//! status is permanent.
//! - <https://developer.vonage.com/en/api/sms>
//! - <https://developer.vonage.com/en/messaging/sms/guides/troubleshooting-sms>
//!
//! Voice goes through the Voice API with a JWT-signed NCCO `talk` action (in
//! module `voice`); it needs a Vonage application (`application_id` and its
//! `private_key`). Delivery receipts can be signed: [`verify_signed_callback`]
//! checks them and [`parse_dlr`] reads them (module `signing`).

mod signing;
mod voice;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::Channel;
use crate::http;
use crate::http::Answer;
use crate::provider::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};
use crate::receipt::{Receipt, ReceiptStatus};

pub use signing::{CallbackError, Dlr, DlrStatus, SignatureMethod, parse_dlr, signature, verify_signed_callback};

const NAME: &str = "vonage";
pub const DEFAULT_BASE_URL: &str = "https://rest.nexmo.com";
/// The Voice API (`/v1/calls`).
pub const DEFAULT_VOICE_BASE_URL: &str = "https://api.nexmo.com";
/// `client-ref` is at most 40 characters.
const MAX_CLIENT_REF: usize = 40;
const MAX_TEXT_CHARS: usize = 1600;

/// Settings of the Vonage provider (`providers.vonage` in configuration;
/// `timeout_ms` in milliseconds, default 10 000). Voice needs
/// `application_id` and `private_key` (the PEM of the Vonage application);
/// signed delivery receipts need `signature_secret` and the
/// `signature_method` chosen in the dashboard.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// The Vonage application that places calls.
    #[serde(default)]
    pub application_id: Option<String>,
    /// The application's RSA private key, PEM.
    #[serde(default)]
    pub private_key: Option<SecretString>,
    /// Caller number for calls (digits); `from` when absent, which must then
    /// be a number rather than an alphanumeric sender id.
    #[serde(default)]
    pub voice_from: Option<String>,
    #[serde(default = "default_voice_base_url")]
    pub voice_base_url: String,
    /// Where Vonage posts call events; the application's event URL when absent.
    #[serde(default)]
    pub event_url: Option<String>,
    /// The account's signature secret, to check signed delivery receipts.
    #[serde(default)]
    pub signature_secret: Option<SecretString>,
    #[serde(default)]
    pub signature_method: SignatureMethod,
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
            application_id: None,
            private_key: None,
            voice_from: None,
            voice_base_url: default_voice_base_url(),
            event_url: None,
            signature_secret: None,
            signature_method: SignatureMethod::default(),
            timeout: http::DEFAULT_TIMEOUT,
        }
    }

    /// The same, with the Vonage application (id and PEM private key) that places calls.
    pub fn with_voice(mut self, application_id: impl Into<String>, private_key_pem: impl Into<String>) -> Self {
        self.application_id = Some(application_id.into());
        self.private_key = Some(SecretString::from(private_key_pem.into()));
        self
    }
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_voice_base_url() -> String {
    DEFAULT_VOICE_BASE_URL.to_owned()
}

/// The Vonage client. Cheap to share: one connection pool per instance.
pub struct Vonage {
    config: VonageConfig,
    client: reqwest::Client,
    /// The application's key, parsed once; the error says why it is unusable.
    signing_key: Option<Result<jsonwebtoken::EncodingKey, String>>,
}

impl fmt::Debug for Vonage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vonage").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Vonage {
    pub fn new(config: VonageConfig) -> Result<Self, reqwest::Error> {
        let signing_key = config.private_key.as_ref().map(voice::signing_key);
        if let Some(Err(reason)) = &signing_key {
            tracing::warn!(%reason, "vonage: private_key is unusable; calls will fail");
        }
        Ok(Vonage { client: http::client(config.timeout)?, config, signing_key })
    }

    /// Whether `sig` and `timestamp` of a delivery receipt are Vonage's, with
    /// the configured secret and method; [`CallbackError::NotConfigured`]
    /// without a `signature_secret`.
    pub fn verify_callback(
        &self,
        params: &[(String, String)],
        now: std::time::SystemTime,
        tolerance: Duration,
    ) -> Result<(), CallbackError> {
        let secret = self.config.signature_secret.as_ref().ok_or(CallbackError::NotConfigured)?;
        verify_signed_callback(params, secret.expose_secret().as_bytes(), self.config.signature_method, now, tolerance)
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
        match channel {
            Channel::Sms => true,
            Channel::Voice => self.config.application_id.is_some() && self.config.private_key.is_some(),
            Channel::Email | Channel::Whatsapp => false,
        }
    }

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, ProviderError> {
        let chars = sms.body.chars().count();
        if chars > MAX_TEXT_CHARS {
            let reason = format!("SMS text has {chars} characters, over {MAX_TEXT_CHARS}");
            return Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None));
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
        let retry_after = http::retry_after(response.headers());
        let body = response.bytes().await.map_err(|e| http::transport_error(NAME, e))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ProviderError::retryable(NAME, format!("HTTP {status}"), None, retry_after));
        }
        if !status.is_success() {
            let kind = if status.as_u16() == 401 { PermanentKind::Configuration } else { PermanentKind::Rejected };
            return Err(ProviderError::permanent(NAME, kind, format!("HTTP {status}"), None));
        }
        let parsed: Response = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::retryable(NAME, "the answer is not Vonage's JSON", None, None))?;
        let Some(first) = parsed.messages.first() else {
            return Err(ProviderError::retryable(NAME, "the answer lists no message", None, None));
        };
        // A long text is split in parts, each with its own status: every part
        // must be accepted.
        if let Some(refused) = parsed.messages.iter().find(|m| m.status != "0") {
            return Err(classify(refused, &sms.body));
        }
        Ok(Sent { provider: NAME.to_owned(), message_id: first.message_id.clone().unwrap_or_default() })
    }

    async fn place_call(&self, call: &VoiceCall) -> Result<Sent, ProviderError> {
        let (application_id, key) = match (&self.config.application_id, &self.signing_key) {
            (Some(id), Some(Ok(key))) => (id, key),
            (Some(_), Some(Err(reason))) => {
                return Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason.clone(), None));
            }
            _ => {
                let reason = "voice needs application_id and private_key".to_owned();
                return Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None));
            }
        };
        let from = voice::caller(self.config.voice_from.as_deref().unwrap_or(&self.config.from))
            .map_err(|reason| ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None))?;
        let token = voice::token(key, application_id, std::time::SystemTime::now())
            .map_err(|reason| ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None))?;
        let body = voice::body(call, &from, self.config.event_url.as_deref());
        tracing::debug!(to = %call.to.masked(), reference = %call.reference, "vonage: placing call");
        let url = format!("{}{}", self.config.voice_base_url.trim_end_matches('/'), voice::CALLS_PATH);
        match http::send(NAME, self.client.post(url).bearer_auth(token).json(&body)).await? {
            Answer::Accepted { status, body } => {
                let uuid = body.and_then(|body| voice::created_uuid(&body));
                if uuid.is_none() {
                    tracing::warn!(%status, "vonage: call created without a usable uuid");
                }
                Ok(Sent { provider: NAME.to_owned(), message_id: uuid.unwrap_or_else(|| "unknown".to_owned()) })
            }
            Answer::Refused { status, retry_after, body } => {
                Err(voice::classify(status, retry_after, &body, call.code.expose()))
            }
        }
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
        Some(1 | 5 | 10) => ProviderError::retryable(NAME, reason, code, None),
        Some(2 | 4 | 8 | 9 | 14 | 15) => ProviderError::permanent(NAME, PermanentKind::Configuration, reason, code),
        Some(3) => ProviderError::permanent(NAME, PermanentKind::InvalidNumber, reason, code),
        Some(7) => ProviderError::permanent(NAME, PermanentKind::OptedOut, reason, code),
        _ => ProviderError::permanent(NAME, PermanentKind::Rejected, reason, code),
    }
}

/// The receipt a Vonage delivery receipt (DLR) reports, from its parameters
/// (check `verify_signed_callback` first); `None` for one without a message id
/// or status, or with a status verifyd does not track.
pub fn receipt(params: &[(String, String)]) -> Option<Receipt> {
    let dlr = parse_dlr(params)?;
    let status = match dlr.status {
        DlrStatus::Accepted | DlrStatus::Buffered => ReceiptStatus::Sent,
        DlrStatus::Delivered => ReceiptStatus::Delivered,
        DlrStatus::Expired => ReceiptStatus::Undelivered,
        DlrStatus::Failed | DlrStatus::Rejected => ReceiptStatus::Failed,
        DlrStatus::Unknown | DlrStatus::Other(_) => return None,
    };
    Some(Receipt {
        provider: NAME,
        message_id: dlr.message_id,
        status,
        error_code: dlr.err_code.filter(|c| *c != 0).map(|c| c.to_string()),
    })
}
