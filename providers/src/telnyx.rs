//! Telnyx Messaging API v2 for SMS and TeXML for voice, both JSON with
//! `Authorization: Bearer <API key>`.
//!
//! - SMS: `POST {base}/v2/messages` with `{"from","to","text",
//!   "messaging_profile_id"?,"webhook_url"?}` → 200 `{"data":{"id":"…",
//!   "record_type":"message",…}}`.
//!   <https://developers.telnyx.com/docs/messaging/messages/send-message>; the
//!   request fields are those of Telnyx's own client (`MessageSendParams` in
//!   team-telnyx/telnyx-python). Telnyx takes no per-message validity (the
//!   answer's `valid_until` is read-only), so `Sms::validity` is not sent.
//! - Voice: `POST {base}/v2/texml/calls/{connection_id}` with `{"From","To",
//!   "Texml"}` (names are case-sensitive) → `{"call_sid","from","to",
//!   "status":"queued"}`, a flat object without `data`.
//!   <https://developers.telnyx.com/api-reference/texml-rest-commands/create-a-connection-scoped-texml-call>.
//!   The script travels inline, so no verifyd URL is needed; `<Say
//!   voice="alice" language="…">` speaks the call's locale:
//!   <https://developers.telnyx.com/docs/voice/programmable-voice/texml-verbs/say>.
//! - Errors: `{"errors":[{"code":"40310","title":"Invalid 'to' address",
//!   "detail":"…","source":{"pointer":"/to"}}]}`, codes as strings; the HTTP
//!   status of a refusal varies (400, 403, 422), so the code decides.
//!   <https://developers.telnyx.com/docs/messaging/messages/error-codes>,
//!   <https://support.telnyx.com/en/articles/6505121-telnyx-messaging-error-codes>.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Channel, Locale};
use crate::http::Answer;
use crate::provider::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};
use crate::{http, xml};

const NAME: &str = "telnyx";
pub const DEFAULT_BASE_URL: &str = "https://api.telnyx.com";
pub use crate::http::DEFAULT_TIMEOUT;
/// Telnyx refuses longer SMS `text`.
const MAX_TEXT_CHARS: usize = 1600;
/// How much of Telnyx's title and detail ends up in an error reason.
const MAX_ERROR_CHARS: usize = 200;

/// Settings of the Telnyx provider.
///
/// In configuration files the timeout is the integer field `timeout_ms`
/// (milliseconds, default 10 000); `base_url` defaults to `https://api.telnyx.com`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelnyxConfig {
    pub api_key: SecretString,
    /// Sender and caller id: a Telnyx number in `+E.164` (or, for SMS, an
    /// alphanumeric sender id, which also needs `messaging_profile_id`).
    pub from: String,
    /// Sends through this messaging profile (number pools, alphanumeric senders).
    #[serde(default)]
    pub messaging_profile_id: Option<String>,
    /// The connection id of the TeXML application that places calls. Voice is
    /// offered only when it is set.
    #[serde(default)]
    pub texml_connection_id: Option<String>,
    /// Where Telnyx posts delivery receipts (`webhook_url`); the messaging
    /// profile's webhooks apply when unset.
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(rename = "timeout_ms", default = "http::default_timeout", deserialize_with = "http::millis")]
    pub timeout: Duration,
}

impl TelnyxConfig {
    /// A config for the real API, SMS only, with the default timeout.
    pub fn new(api_key: impl Into<String>, from: impl Into<String>) -> Self {
        TelnyxConfig {
            api_key: SecretString::from(api_key.into()),
            from: from.into(),
            messaging_profile_id: None,
            texml_connection_id: None,
            webhook_url: None,
            base_url: default_base_url(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

/// The Telnyx client. Cheap to share: one connection pool per instance.
#[derive(Debug)]
pub struct Telnyx {
    config: TelnyxConfig,
    client: reqwest::Client,
}

/// `POST /v2/messages`.
#[derive(Serialize)]
struct MessageRequest<'a> {
    from: &'a str,
    to: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    messaging_profile_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_url: Option<&'a str>,
}

/// `POST /v2/texml/calls/{connection_id}`: TeXML's Twilio-style field names.
#[derive(Serialize)]
struct CallRequest<'a> {
    #[serde(rename = "From")]
    from: &'a str,
    #[serde(rename = "To")]
    to: &'a str,
    #[serde(rename = "Texml")]
    texml: &'a str,
}

/// Which answer a create request gets: the id lives in a different place.
#[derive(Clone, Copy)]
enum Created {
    /// `{"data":{"id":…}}`
    Message,
    /// `{"call_sid":…}`
    Call,
}

impl Telnyx {
    pub fn new(config: TelnyxConfig) -> Result<Self, reqwest::Error> {
        let client = http::client(config.timeout)?;
        Ok(Telnyx { config, client })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// POSTs `body` and turns the answer into an id or an error; `secret` (the
    /// SMS text or the code) is kept out of error reasons.
    async fn create<T: Serialize>(
        &self,
        path: &str,
        body: &T,
        created: Created,
        secret: &str,
    ) -> Result<Sent, ProviderError> {
        let request = self.client.post(self.url(path)).bearer_auth(self.config.api_key.expose_secret()).json(body);
        match http::send(NAME, request).await? {
            Answer::Accepted { status, body: Some(body) } => Ok(accepted(status, &body, created)),
            Answer::Accepted { .. } => Ok(unknown_id()),
            Answer::Refused { status, retry_after, body } => Err(classify(status, retry_after, &body, secret)),
        }
    }
}

#[async_trait]
impl Provider for Telnyx {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, channel: Channel) -> bool {
        match channel {
            Channel::Sms => true,
            Channel::Voice => self.config.texml_connection_id.is_some(),
            Channel::Email | Channel::Whatsapp => false,
        }
    }

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, ProviderError> {
        let chars = sms.body.chars().count();
        if chars > MAX_TEXT_CHARS {
            let reason = format!("SMS text has {chars} characters, Telnyx accepts at most {MAX_TEXT_CHARS}");
            return Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None));
        }
        let request = MessageRequest {
            from: &self.config.from,
            to: sms.to.e164(),
            text: &sms.body,
            messaging_profile_id: self.config.messaging_profile_id.as_deref(),
            webhook_url: self.config.webhook_url.as_deref(),
        };
        tracing::debug!(to = %sms.to.masked(), reference = %sms.reference, "telnyx: sending SMS");
        self.create("messages", &request, Created::Message, &sms.body).await
    }

    async fn place_call(&self, call: &VoiceCall) -> Result<Sent, ProviderError> {
        let Some(connection_id) = self.config.texml_connection_id.as_deref() else {
            let reason = "Telnyx voice needs texml_connection_id (a TeXML application) in its configuration";
            return Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason.to_owned(), None));
        };
        let texml = texml(call);
        let request = CallRequest { from: &self.config.from, to: call.to.e164(), texml: &texml };
        tracing::debug!(to = %call.to.masked(), reference = %call.reference, "telnyx: placing call");
        let path = format!("texml/calls/{connection_id}");
        self.create(&path, &request, Created::Call, call.code.expose()).await
    }
}

/// The `language` of `<Say voice="alice">`: Telnyx's premium voices take a
/// region, so bare languages get the most common one, and a locale it does not
/// speak is read in US English rather than failing the call.
fn say_language(locale: &Locale) -> &'static str {
    const ALICE: [&str; 26] = [
        "da-DK", "de-DE", "en-AU", "en-CA", "en-GB", "en-IN", "en-US", "ca-ES", "es-ES", "es-MX", "fi-FI", "fr-CA",
        "fr-FR", "it-IT", "ja-JP", "ko-KR", "nb-NO", "nl-NL", "pl-PL", "pt-BR", "pt-PT", "ru-RU", "sv-SE", "zh-CN",
        "zh-HK", "zh-TW",
    ];
    if let Some(tag) = ALICE.iter().find(|tag| **tag == locale.as_str()) {
        return tag;
    }
    match locale.language() {
        "en" => "en-US",
        "es" => "es-ES",
        "fr" => "fr-FR",
        "de" => "de-DE",
        "pt" => "pt-BR",
        "ja" => "ja-JP",
        "it" => "it-IT",
        "nl" => "nl-NL",
        "da" => "da-DK",
        "pl" => "pl-PL",
        "ru" => "ru-RU",
        "sv" => "sv-SE",
        "fi" => "fi-FI",
        "ko" => "ko-KR",
        "nb" | "no" => "nb-NO",
        "zh" => "zh-CN",
        "ca" => "ca-ES",
        _ => "en-US",
    }
}

/// The inline TeXML of a call: the intro, then the digits one by one, `repeat`
/// times (at least once) with a one-second pause between readings.
pub fn texml(call: &VoiceCall) -> String {
    let say = format!(r#"<Say voice="alice" language="{}">"#, say_language(&call.locale));
    xml::call_script(call, &say, "</Say>", r#"<Pause length="1"/>"#)
}

#[derive(Deserialize)]
struct MessageBody {
    data: Option<MessageData>,
}

#[derive(Deserialize)]
struct MessageData {
    id: Option<String>,
}

#[derive(Deserialize)]
struct CallBody {
    call_sid: Option<String>,
}

/// Telnyx's error body: `{"errors":[{"code","title","detail","source":{"pointer"}}]}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    /// A string of digits in practice; a number is accepted too.
    code: Option<Value>,
    title: Option<String>,
    detail: Option<String>,
    source: Option<ErrorSource>,
}

#[derive(Deserialize)]
struct ErrorSource {
    pointer: Option<String>,
}

impl ApiError {
    fn code(&self) -> Option<i64> {
        match self.code.as_ref()? {
            Value::String(code) => code.trim().parse().ok(),
            Value::Number(code) => code.as_i64(),
            _ => None,
        }
    }

    /// The request field the error is about, lowercased without the slash
    /// (`/to`, `/To` → `to`).
    fn field(&self) -> Option<String> {
        let pointer = self.source.as_ref()?.pointer.as_deref()?;
        Some(pointer.trim_start_matches('/').to_ascii_lowercase())
    }
}

fn accepted(status: StatusCode, body: &[u8], created: Created) -> Sent {
    let id = match created {
        Created::Message => serde_json::from_slice::<MessageBody>(body).ok().and_then(|b| b.data).and_then(|d| d.id),
        Created::Call => serde_json::from_slice::<CallBody>(body).ok().and_then(|b| b.call_sid),
    };
    match id.filter(|id| is_id(id)) {
        Some(id) => Sent { provider: NAME.to_owned(), message_id: id },
        None => {
            // The body is not quoted: it may echo the request.
            tracing::warn!(%status, "telnyx: accepted without a usable id");
            unknown_id()
        }
    }
}

/// Message ids are UUIDs, call sids look like `v3:…` (URL-safe base64).
fn is_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
}

fn unknown_id() -> Sent {
    Sent { provider: NAME.to_owned(), message_id: "unknown".to_owned() }
}

/// Maps an error answer from its first error's code; `secret` never reaches the reason.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8], secret: &str) -> ProviderError {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let error = parsed.as_ref().and_then(|b| b.errors.first());
    let code = error.and_then(ApiError::code);
    let reason = describe(status, parsed.is_some(), error, code, secret);
    // 10011: too many requests; 10007/10008: unexpected error, request timeout;
    // 40318: the sender's queue is full and will drain.
    if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || matches!(code, Some(10007 | 10008 | 10011 | 40318))
    {
        return ProviderError::retryable(NAME, reason, code, retry_after);
    }
    let field = error.and_then(ApiError::field);
    ProviderError::permanent(NAME, permanent_kind(status, code, field.as_deref()), reason, code)
}

fn permanent_kind(status: StatusCode, code: Option<i64>, field: Option<&str>) -> PermanentKind {
    match code {
        Some(40300) => PermanentKind::OptedOut,
        Some(40310 | 40012) => PermanentKind::InvalidNumber,
        // "Invalid phone number" / "must be in +E.164 format": about `to` or
        // `from` depending on the pointer; without one it may be either, and
        // another provider may still deliver.
        Some(10001 | 10002 | 10016) => match field {
            Some("to") => PermanentKind::InvalidNumber,
            Some("from") => PermanentKind::Configuration,
            _ => PermanentKind::Rejected,
        },
        // Not routable (landline), unsupported or incompatible message type for
        // the 'to' address: a call may still reach it.
        Some(40001 | 40301 | 40319) => PermanentKind::ChannelNotSupported,
        Some(40309) => PermanentKind::RegionNotAllowed,
        // Authentication, authorization, API key revoked or expired, account
        // inactive, blocked, unverified, feature off, out of funds.
        Some(10009 | 10010 | 20002 | 20006 | 20012..=20017 | 20100) => PermanentKind::Configuration,
        // Sender or messaging profile unusable, unregistered 10DLC / toll-free,
        // message too large for the configured template.
        Some(
            40010
            | 40013
            | 40100
            | 40150
            | 40151
            | 40302
            | 40305
            | 40306
            | 40308
            | 40311..=40315
            | 40320
            | 40321
            | 40328
            | 40329,
        ) => PermanentKind::Configuration,
        _ if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => PermanentKind::Configuration,
        _ if status.is_client_error() => PermanentKind::Rejected,
        // 1xx/3xx: `base_url` does not point at the Telnyx API.
        _ => PermanentKind::Configuration,
    }
}

/// "HTTP 422 Unprocessable Entity, Telnyx error 40310: Invalid 'to' address:
/// The 'to' address +*********** is invalid." Only the status and the code,
/// formatted here, carry digits; Telnyx's title and detail lose any echo of
/// `secret`, every digit and control character, and are shortened.
fn describe(status: StatusCode, json: bool, error: Option<&ApiError>, code: Option<i64>, secret: &str) -> String {
    if !json {
        return format!("HTTP {status} with a non-JSON body");
    }
    let mut reason = format!("HTTP {status}");
    if let Some(code) = code {
        reason.push_str(&format!(", Telnyx error {code}"));
    }
    let texts = error.into_iter().flat_map(|e| [e.title.as_deref(), e.detail.as_deref()]).flatten();
    for text in texts.filter(|t| !t.trim().is_empty()) {
        reason.push_str(": ");
        reason.push_str(&http::safe_text(text, secret, MAX_ERROR_CHARS));
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Code, PhoneNumber};

    fn call(intro: &str, code: &str, repeat: u8, locale: &str) -> VoiceCall {
        VoiceCall {
            to: PhoneNumber::parse("+14155552671").unwrap(),
            intro: intro.to_owned(),
            code: Code::parse(code).unwrap(),
            repeat,
            locale: Locale::parse(locale).unwrap(),
            reference: "att_1".to_owned(),
            script_url: None,
        }
    }

    #[test]
    fn locales_map_to_alice_languages_with_a_us_english_fallback() {
        let cases = [
            ("en", "en-US"),
            ("en-GB", "en-GB"),
            ("en-IE", "en-US"),
            ("es-MX", "es-MX"),
            ("pt", "pt-BR"),
            ("pt-PT", "pt-PT"),
            ("ja", "ja-JP"),
            ("fr-BE", "fr-FR"),
            ("sw", "en-US"),
        ];
        for (tag, expected) in cases {
            assert_eq!(say_language(&Locale::parse(tag).unwrap()), expected, "{tag}");
        }
    }

    #[test]
    fn texml_reads_intro_and_digits_with_pauses_between() {
        let texml = texml(&call("Your code is", "1234", 2, "de"));
        let reading = r#"<Say voice="alice" language="de-DE">Your code is</Say><Say voice="alice" language="de-DE">1, 2, 3, 4</Say>"#;
        assert_eq!(
            texml,
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response>{reading}<Pause length="1"/>{reading}</Response>"#
            )
        );
    }

    #[test]
    fn texml_escapes_the_intro_and_reads_at_least_once() {
        let texml = texml(&call("A & B <c>", "987654", 0, "en"));
        assert!(texml.contains(">A &amp; B &lt;c&gt;</Say>"), "{texml}");
        assert_eq!(texml.matches("9, 8, 7, 6, 5, 4").count(), 1);
        assert!(!texml.contains("<Pause"));
    }

    #[test]
    fn invalid_phone_number_errors_follow_their_pointer() {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        assert_eq!(permanent_kind(status, Some(10002), Some("to")), PermanentKind::InvalidNumber);
        assert_eq!(permanent_kind(status, Some(10016), Some("from")), PermanentKind::Configuration);
        assert_eq!(permanent_kind(status, Some(10002), None), PermanentKind::Rejected);
        assert_eq!(permanent_kind(StatusCode::FORBIDDEN, Some(40300), None), PermanentKind::OptedOut);
        assert_eq!(permanent_kind(StatusCode::FORBIDDEN, None, None), PermanentKind::Configuration);
    }

    #[test]
    fn a_2xx_is_accepted_with_or_without_an_id() {
        let sent = accepted(
            StatusCode::OK,
            br#"{"data":{"id":"40385f64-5717-4562-b3fc-2c963f66afa6","record_type":"message"}}"#,
            Created::Message,
        );
        assert_eq!(sent.message_id, "40385f64-5717-4562-b3fc-2c963f66afa6");
        let sent = accepted(
            StatusCode::OK,
            br#"{"call_sid":"v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ","status":"queued"}"#,
            Created::Call,
        );
        assert_eq!(sent.message_id, "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ");
        for body in [&b"OK"[..], b"", br#"{"data":{}}"#, br#"{"data":{"id":"a b"}}"#] {
            assert_eq!(accepted(StatusCode::OK, body, Created::Message).message_id, "unknown");
        }
    }

    #[test]
    fn debug_never_shows_the_key_and_voice_needs_a_connection() {
        let config: TelnyxConfig = serde_json::from_value(serde_json::json!({
            "api_key": "KEY0123456789",
            "from": "+15005550006",
            "timeout_ms": 2500
        }))
        .unwrap();
        assert_eq!(config.timeout, Duration::from_millis(2500));
        assert_eq!(config.base_url, DEFAULT_BASE_URL);
        assert!(!format!("{config:?}").contains("KEY0123456789"));
        let telnyx = Telnyx::new(config.clone()).unwrap();
        assert!(telnyx.supports(Channel::Sms) && !telnyx.supports(Channel::Voice));
        let telnyx = Telnyx::new(TelnyxConfig { texml_connection_id: Some("1234".to_owned()), ..config }).unwrap();
        assert!(telnyx.supports(Channel::Voice));
    }
}
