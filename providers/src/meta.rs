//! Meta's WhatsApp Cloud API, for codes by WhatsApp.
//!
//! - `POST {base}/{version}/{phone_number_id}/messages` with `Authorization:
//!   Bearer <access token>` and `{"messaging_product":"whatsapp",
//!   "recipient_type":"individual","to":"<digits>","type":"template",
//!   "template":{"name","language":{"code"},"components":[…]}}`.
//!   A code goes in an *authentication* template: WhatsApp presets its text
//!   ("*{{1}}* is your verification code."), so the code is the body's one
//!   parameter, and again the parameter of its copy-code button (a `url`
//!   button at index 0 once the template is created).
//!   <https://developers.facebook.com/docs/whatsapp/business-management-api/authentication-templates/copy-code-button-authentication-templates>.
//! - Success is `200` `{"messaging_product":"whatsapp","contacts":[{"input",
//!   "wa_id"}],"messages":[{"id":"wamid.…"}]}`.
//! - Errors are `{"error":{"message","type","code","error_subcode",
//!   "error_data":{"details"},"fbtrace_id"}}`; the `code` decides (rate limits
//!   4, 80007, 130429, 131056 and service errors 1, 2, 131000, 131016, 133004
//!   are retryable; 131026, "message undeliverable", is a number that is not
//!   on WhatsApp).
//!   <https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes>.
//!
//! - Delivery receipts are Meta's webhooks: a `POST` of `{"object":
//!   "whatsapp_business_account","entry":[{"changes":[{"field":"messages",
//!   "value":{"statuses":[{"id":"wamid.…","status":"sent"|"delivered"|"read"|
//!   "failed","errors":[{"code"}]}]}}]}]}`, signed `X-Hub-Signature-256:
//!   sha256=<hex HMAC-SHA256 of the raw body under the app secret>`
//!   ([`verify_signature`], [`receipts`]); the subscription is confirmed by a
//!   `GET` echoing `hub.challenge` when `hub.verify_token` matches.
//!   <https://developers.facebook.com/docs/graph-api/webhooks/getting-started>.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::{Channel, Locale};
use crate::http::{self, Answer};
use crate::provider::{PermanentKind, Provider, ProviderError, Sent, WhatsApp};
use crate::receipt::{Receipt, ReceiptStatus};

const NAME: &str = "meta";
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
pub const DEFAULT_API_VERSION: &str = "v23.0";
pub use crate::http::DEFAULT_TIMEOUT;
const MAX_ERROR_CHARS: usize = 200;

/// Settings of the Meta WhatsApp provider.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaConfig {
    /// A system user's access token with `whatsapp_business_messaging`.
    pub access_token: SecretString,
    /// The id of the WhatsApp business phone number that sends.
    pub phone_number_id: String,
    /// The name of an approved authentication template with a copy-code button.
    pub template: String,
    /// The template language used for locales `languages` does not name (`en_US`).
    #[serde(default = "default_language")]
    pub language: String,
    /// A template language per verifyd locale or language: `{ es = "es", pt-BR = "pt_BR" }`.
    #[serde(default)]
    pub languages: BTreeMap<String, String>,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(rename = "timeout_ms", default = "http::default_timeout", deserialize_with = "http::millis")]
    pub timeout: Duration,
    /// The Meta app's secret: delivery receipts (`/v1/callbacks/meta`) are
    /// accepted only when it is set, signed with it.
    #[serde(default)]
    pub app_secret: Option<SecretString>,
    /// The token Meta echoes when the webhook subscription is set up.
    #[serde(default)]
    pub verify_token: Option<SecretString>,
}

fn default_language() -> String {
    "en_US".to_owned()
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

impl MetaConfig {
    pub fn new(
        access_token: impl Into<String>,
        phone_number_id: impl Into<String>,
        template: impl Into<String>,
    ) -> Self {
        MetaConfig {
            access_token: SecretString::from(access_token.into()),
            phone_number_id: phone_number_id.into(),
            template: template.into(),
            language: default_language(),
            languages: BTreeMap::new(),
            base_url: default_base_url(),
            api_version: default_api_version(),
            timeout: DEFAULT_TIMEOUT,
            app_secret: None,
            verify_token: None,
        }
    }

    /// The template language for `locale`: its own entry, its language's, or the default.
    pub fn language_for(&self, locale: &Locale) -> &str {
        self.languages
            .get(locale.as_str())
            .or_else(|| self.languages.get(locale.language()))
            .map_or(self.language.as_str(), String::as_str)
    }
}

/// The Meta WhatsApp client. Cheap to share: one connection pool per instance.
#[derive(Debug)]
pub struct Meta {
    config: MetaConfig,
    client: reqwest::Client,
}

impl Meta {
    pub fn new(config: MetaConfig) -> Result<Self, reqwest::Error> {
        let client = http::client(config.timeout)?;
        Ok(Meta { config, client })
    }

    fn url(&self) -> String {
        let base = self.config.base_url.trim_end_matches('/');
        format!("{base}/{}/{}/messages", self.config.api_version, self.config.phone_number_id)
    }
}

/// The message body of one code: the template with the code in its body and
/// its copy-code button.
pub fn request_body(message: &WhatsApp, config: &MetaConfig) -> Value {
    let code = message.code.expose();
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.to.digits(),
        "type": "template",
        "biz_opaque_callback_data": message.reference,
        "template": {
            "name": config.template,
            "language": { "code": config.language_for(&message.locale) },
            "components": [
                { "type": "body", "parameters": [{ "type": "text", "text": code }] },
                { "type": "button", "sub_type": "url", "index": "0", "parameters": [{ "type": "text", "text": code }] },
            ],
        },
    })
}

#[async_trait]
impl Provider for Meta {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Whatsapp
    }

    async fn send_whatsapp(&self, message: &WhatsApp) -> Result<Sent, ProviderError> {
        let body = request_body(message, &self.config);
        tracing::debug!(to = %message.to.masked(), reference = %message.reference, "meta: sending WhatsApp template");
        let request = self.client.post(self.url()).bearer_auth(self.config.access_token.expose_secret()).json(&body);
        match http::send(NAME, request).await? {
            Answer::Accepted { status, body } => Ok(accepted(status, body.as_deref())),
            Answer::Refused { status, retry_after, body } => {
                Err(classify(status, retry_after, &body, message.code.expose()))
            }
        }
    }
}

fn accepted(status: StatusCode, body: Option<&[u8]>) -> Sent {
    let id = body
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| v["messages"][0]["id"].as_str().map(str::to_owned))
        .filter(|id| (1..=256).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()));
    match id {
        Some(message_id) => Sent { provider: NAME.to_owned(), message_id },
        None => {
            tracing::warn!(%status, "meta: accepted without a message id");
            Sent { provider: NAME.to_owned(), message_id: "unknown".to_owned() }
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ApiError,
}

#[derive(Deserialize)]
struct ApiError {
    message: Option<String>,
    code: Option<i64>,
    error_data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    details: Option<String>,
}

fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8], code_sent: &str) -> ProviderError {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok().map(|b| b.error);
    let code = parsed.as_ref().and_then(|e| e.code);
    let reason = describe(status, parsed.as_ref(), code, code_sent);
    let throttled = matches!(code, Some(4 | 80007 | 130429 | 131048 | 131056 | 133016));
    if throttled || status == StatusCode::TOO_MANY_REQUESTS {
        // Meta gives no Retry-After: a throttled answer says so, for the kind.
        let reason = format!("{reason} (429, rate limited)");
        return ProviderError::retryable(NAME, reason, code, retry_after);
    }
    if status.is_server_error() || matches!(code, Some(1 | 2 | 131000 | 131016 | 133004)) {
        return ProviderError::retryable(NAME, reason, code, retry_after);
    }
    let kind = match code {
        // Not on WhatsApp (or an old client): SMS or a call may still reach it.
        Some(131026) => PermanentKind::ChannelNotSupported,
        // The token, permissions, the business account, the template or its parameters.
        Some(
            0
            | 3
            | 10
            | 190
            | 200..=299
            | 368
            | 131030
            | 131031
            | 131042
            | 131051
            | 132000
            | 132001
            | 132005
            | 132007
            | 132012
            | 132015
            | 132016
            | 133010
            | 135000,
        ) => PermanentKind::Configuration,
        _ if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => PermanentKind::Configuration,
        _ if status.is_client_error() => PermanentKind::Rejected,
        _ => PermanentKind::Configuration,
    };
    ProviderError::permanent(NAME, kind, reason, code)
}

/// "HTTP 400 Bad Request, Meta error 131026: Message undeliverable". Meta's
/// texts lose any echo of the code and every digit, and are shortened.
fn describe(status: StatusCode, error: Option<&ApiError>, code: Option<i64>, code_sent: &str) -> String {
    let Some(error) = error else {
        return format!("HTTP {status} with a non-JSON body");
    };
    let mut reason = format!("HTTP {status}");
    if let Some(code) = code {
        reason.push_str(&format!(", Meta error {code}"));
    }
    let details = error.error_data.as_ref().and_then(|d| d.details.as_deref());
    for text in [error.message.as_deref(), details].into_iter().flatten().filter(|t| !t.trim().is_empty()) {
        reason.push_str(": ");
        reason.push_str(&http::safe_text(text, code_sent, MAX_ERROR_CHARS));
    }
    reason
}

/// `sha256=<hex>`: the `X-Hub-Signature-256` Meta puts on a webhook body.
pub fn signature(app_secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is Meta's signature of `body`, compared in constant time.
pub fn verify_signature(app_secret: &SecretString, body: &[u8], header: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = signature(app_secret.expose_secret(), body);
    expected.as_bytes().ct_eq(header.trim().as_bytes()).into()
}

/// The receipts a (signed) webhook body carries: one per message status.
/// Other changes (incoming messages, template updates) carry none; `None`
/// when the body is not a WhatsApp webhook at all.
pub fn receipts(body: &[u8]) -> Option<Vec<Receipt>> {
    let hook: Value = serde_json::from_slice(body).ok()?;
    if hook["object"] != "whatsapp_business_account" {
        return None;
    }
    let entries = hook["entry"].as_array().cloned().unwrap_or_default();
    let statuses = entries
        .iter()
        .flat_map(|e| e["changes"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["field"] == "messages")
        .flat_map(|c| c["value"]["statuses"].as_array().cloned().unwrap_or_default());
    Some(
        statuses
            .filter_map(|s| {
                let status = match s["status"].as_str()? {
                    "sent" => ReceiptStatus::Sent,
                    "delivered" | "read" => ReceiptStatus::Delivered,
                    "failed" => ReceiptStatus::Failed,
                    _ => return None,
                };
                let error_code = s["errors"][0]["code"].as_i64().map(|c| c.to_string());
                Some(Receipt { provider: NAME, message_id: s["id"].as_str()?.to_owned(), status, error_code })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::domain::{Code, PhoneNumber};

    fn error(status: u16, code: i64, message: &str) -> ProviderError {
        let body =
            json!({ "error": { "message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbC" } });
        classify(StatusCode::from_u16(status).unwrap(), None, body.to_string().as_bytes(), "8302947")
    }

    #[test]
    fn the_code_decides_what_a_refusal_means() {
        assert_eq!(error(400, 131026, "Message undeliverable").kind(), ErrorKind::ChannelNotSupported);
        assert_eq!(error(400, 130429, "Rate limit hit").kind(), ErrorKind::Throttled);
        assert_eq!(error(400, 131000, "Something went wrong").kind(), ErrorKind::Unavailable);
        assert_eq!(error(401, 190, "Invalid OAuth access token").kind(), ErrorKind::Configuration);
        assert_eq!(
            error(404, 132001, "Template name does not exist in the translation").kind(),
            ErrorKind::Configuration
        );
        assert_eq!(error(400, 100, "Invalid parameter").kind(), ErrorKind::Rejected);
        let echoed = error(400, 100, "Parameter 8302947 is invalid").to_string();
        assert!(!echoed.contains("8302947"), "{echoed}");
    }

    #[test]
    fn receipts_are_read_from_signed_statuses() {
        let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": [
            { "field": "messages", "value": { "messaging_product": "whatsapp", "statuses": [
                { "id": "wamid.A", "status": "delivered", "timestamp": "1767225600", "recipient_id": "14155552671" },
                { "id": "wamid.B", "status": "failed", "errors": [{ "code": 131026, "title": "Message undeliverable" }] },
                { "id": "wamid.C", "status": "deleted" },
            ] } },
        ] }] })
        .to_string();
        let read = receipts(body.as_bytes()).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].message_id.as_str(), read[0].status), ("wamid.A", ReceiptStatus::Delivered));
        assert_eq!((read[1].status, read[1].error_code.as_deref()), (ReceiptStatus::Failed, Some("131026")));
        assert_eq!(receipts(br#"{"object":"page"}"#), None);
        let secret = SecretString::from("app-secret");
        let signed = signature("app-secret", body.as_bytes());
        assert!(verify_signature(&secret, body.as_bytes(), &signed));
        assert!(!verify_signature(&secret, b"{}", &signed));
    }

    #[test]
    fn the_template_carries_the_code_in_its_body_and_its_button() {
        let mut config = MetaConfig::new("token", "106540352242922", "verifyd_code");
        config.languages.insert("pt-BR".into(), "pt_BR".into());
        config.languages.insert("es".into(), "es".into());
        let message = WhatsApp {
            to: PhoneNumber::parse("+14155552671").unwrap(),
            code: Code::parse("8302947").unwrap(),
            locale: Locale::parse("es-MX").unwrap(),
            validity: Duration::from_secs(600),
            reference: "job-1".into(),
        };
        let body = request_body(&message, &config);
        assert_eq!(body["to"], "14155552671");
        assert_eq!(body["template"]["language"]["code"], "es");
        assert_eq!(body["template"]["components"][0]["parameters"][0]["text"], "8302947");
        assert_eq!(body["template"]["components"][1]["sub_type"], "url");
        assert_eq!(body["template"]["components"][1]["parameters"][0]["text"], "8302947");
        assert_eq!(config.language_for(&Locale::parse("pt-BR").unwrap()), "pt_BR");
        assert_eq!(config.language_for(&Locale::parse("ja").unwrap()), "en_US");
    }
}
