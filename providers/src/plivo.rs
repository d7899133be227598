//! Plivo SMS and Voice, REST API v1: JSON POSTs authenticated with HTTP Basic
//! `auth_id:auth_token`.
//!
//! - SMS: `POST {base}/v1/Account/{auth_id}/Message/` with `{"src","dst","text",
//!   "url","method","message_expiry"}` → 202 `{"api_id","message":"message(s)
//!   queued","message_uuid":["…"]}`.
//!   <https://www.plivo.com/docs/messaging/api/message/send-a-message>;
//!   `message_expiry` (5–10 799 s) drops a message still queued when the code
//!   has expired: <https://support.plivo.com/hc/en-us/articles/14814454609561-Message-Expiry>.
//! - Voice: `POST {base}/v1/Account/{auth_id}/Call/` with `{"from","to",
//!   "answer_url","answer_method","ring_timeout","time_limit","hangup_url",
//!   "hangup_method"}` → 201 `{"api_id","message":"call fired","request_uuid"}`.
//!   <https://www.plivo.com/docs/voice/api/call/make-a-call>. Plivo takes no
//!   inline script: when the call is answered it fetches Plivo XML from
//!   `answer_url`, so calls need a verifyd URL serving [`answer_xml`]
//!   ([`VoiceCall::script_url`]). `<Speak>` and `<Wait>`:
//!   <https://plivo.com/docs/voice/xml/audio-output>.
//! - Errors: `{"api_id":"…","error":"…"}` with 400 (a parameter is missing or
//!   invalid), 401 (authentication), 404, 405, 429 (rate limited) or 500:
//!   <https://docs.plivo.com/docs/messaging/api/response>,
//!   <https://plivo.com/docs/messaging/api/response/response-examples>. Plivo
//!   gives no numeric code at request time, so a 400 is classified by its text
//!   (e.g. `'1111111' is not a valid phone number.`); codes like 30 (spam) or
//!   50 (invalid destination) only arrive later, in status callbacks.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Locale};
use crate::http::Answer;
use crate::provider::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};
use crate::{gsm, http, xml};

const NAME: &str = "plivo";
pub const DEFAULT_BASE_URL: &str = "https://api.plivo.com";
pub use crate::http::DEFAULT_TIMEOUT;
/// Plivo's `text` limits: 1 600 characters in GSM 7-bit, 737 in UCS-2.
const MAX_GSM_CHARS: usize = 1600;
const MAX_UCS2_CHARS: usize = 737;
/// `message_expiry` bounds, in seconds.
const EXPIRY_SECS: std::ops::RangeInclusive<u64> = 5..=10_799;
/// How long the phone rings before Plivo gives up (Plivo's default is 120 s,
/// long past the point where a person expects a code call).
const RING_TIMEOUT_SECS: u32 = 60;
/// A cap on the answered call: reading a code takes well under a minute, and a
/// script that loops by mistake must not bill for hours (Plivo's default is 4 h).
const TIME_LIMIT_SECS: u32 = 180;
/// How much of Plivo's error text ends up in an error reason.
const MAX_ERROR_CHARS: usize = 200;

/// Settings of the Plivo provider.
///
/// In configuration files the timeout is the integer field `timeout_ms`
/// (milliseconds, default 10 000); `base_url` defaults to `https://api.plivo.com`
/// and `status_callback` to none.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlivoConfig {
    pub auth_id: String,
    pub auth_token: SecretString,
    /// Sender and caller id: a Plivo number (country code and digits, a leading
    /// `+` is dropped) or, for SMS where allowed, an alphanumeric sender id.
    pub from: String,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Where Plivo POSTs message status updates (`url`) and call hang-ups
    /// (`hangup_url`).
    #[serde(default)]
    pub status_callback: Option<String>,
    #[serde(rename = "timeout_ms", default = "http::default_timeout", deserialize_with = "http::millis")]
    pub timeout: Duration,
}

impl PlivoConfig {
    /// A config for the real API with the default timeout and no status callback.
    pub fn new(auth_id: impl Into<String>, auth_token: impl Into<String>, from: impl Into<String>) -> Self {
        PlivoConfig {
            auth_id: auth_id.into(),
            auth_token: SecretString::from(auth_token.into()),
            from: from.into(),
            base_url: default_base_url(),
            status_callback: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

/// The Plivo client. Cheap to share: one connection pool per instance.
#[derive(Debug)]
pub struct Plivo {
    config: PlivoConfig,
    client: reqwest::Client,
}

/// `POST …/Message/`: what verifyd sends (Plivo's other fields keep their defaults).
#[derive(Serialize)]
struct MessageRequest<'a> {
    src: &'a str,
    dst: &'a str,
    text: &'a str,
    message_expiry: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
}

/// `POST …/Call/`.
#[derive(Serialize)]
struct CallRequest<'a> {
    from: &'a str,
    to: &'a str,
    answer_url: &'a str,
    answer_method: &'a str,
    ring_timeout: u32,
    time_limit: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    hangup_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hangup_method: Option<&'a str>,
}

/// What the message may quote back in an error, kept out of error reasons.
struct Secrets<'a> {
    /// The SMS text or the code.
    content: &'a str,
    /// A signed script URL: whoever holds it can hear the code.
    url: Option<&'a str>,
}

impl Plivo {
    pub fn new(config: PlivoConfig) -> Result<Self, reqwest::Error> {
        let client = http::client(config.timeout)?;
        Ok(Plivo { config, client })
    }

    fn endpoint(&self, resource: &str) -> String {
        format!("{}/v1/Account/{}/{resource}/", self.config.base_url.trim_end_matches('/'), self.config.auth_id)
    }

    /// The sender as Plivo stores it: without the `+` it would strip anyway.
    fn from(&self) -> &str {
        self.config.from.trim().trim_start_matches('+')
    }

    /// POSTs `body` to `resource` and turns the answer into an id or an error.
    async fn create<T: Serialize>(
        &self,
        resource: &str,
        body: &T,
        to_digits: &str,
        secrets: Secrets<'_>,
    ) -> Result<Sent, ProviderError> {
        let request = self
            .client
            .post(self.endpoint(resource))
            .basic_auth(&self.config.auth_id, Some(self.config.auth_token.expose_secret()))
            .json(body);
        let (status, retry_after, body) = match http::send(NAME, request).await? {
            Answer::Accepted { status, body: Some(body) } => return Ok(accepted(status, &body)),
            Answer::Accepted { .. } => return Ok(unknown_id()),
            Answer::Refused { status, retry_after, body } => (status, retry_after, body),
        };
        let error = serde_json::from_slice::<ErrorBody>(&body).ok();
        let reason = describe(status, error.as_ref(), &secrets);
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(ProviderError::retryable(NAME, reason, None, retry_after));
        }
        let text = error.and_then(|e| e.error).unwrap_or_default();
        Err(ProviderError::permanent(NAME, permanent_kind(status, &text, to_digits, self.from()), reason, None))
    }
}

#[async_trait]
impl Provider for Plivo {
    fn name(&self) -> &str {
        NAME
    }

    /// Voice needs a script URL on each call; without one `place_call` says so.
    fn supports(&self, channel: Channel) -> bool {
        matches!(channel, Channel::Sms | Channel::Voice)
    }

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, ProviderError> {
        let chars = sms.body.chars().count();
        let max = if gsm::is_gsm7(&sms.body) { MAX_GSM_CHARS } else { MAX_UCS2_CHARS };
        if chars > max {
            let reason = format!("SMS text has {chars} characters, Plivo accepts at most {max} in its encoding");
            return Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None));
        }
        let callback = self.config.status_callback.as_deref();
        let request = MessageRequest {
            src: self.from(),
            dst: sms.to.digits(),
            text: &sms.body,
            message_expiry: message_expiry(sms.validity),
            url: callback,
            method: callback.map(|_| "POST"),
        };
        tracing::debug!(to = %sms.to.masked(), reference = %sms.reference, "plivo: sending SMS");
        self.create("Message", &request, sms.to.digits(), Secrets { content: &sms.body, url: None }).await
    }

    async fn place_call(&self, call: &VoiceCall) -> Result<Sent, ProviderError> {
        let Some(script_url) = call.script_url.as_deref() else {
            let reason = "Plivo fetches the call script from a URL: verifyd needs http.public_url for Plivo voice";
            return Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason.to_owned(), None));
        };
        let callback = self.config.status_callback.as_deref();
        let request = CallRequest {
            from: self.from(),
            to: call.to.digits(),
            answer_url: script_url,
            // POST keeps Plivo's call parameters out of the signed URL's query.
            answer_method: "POST",
            ring_timeout: RING_TIMEOUT_SECS,
            time_limit: TIME_LIMIT_SECS,
            hangup_url: callback,
            hangup_method: callback.map(|_| "POST"),
        };
        tracing::debug!(to = %call.to.masked(), reference = %call.reference, "plivo: placing call");
        let secrets = Secrets { content: call.code.expose(), url: Some(script_url) };
        self.create("Call", &request, call.to.digits(), secrets).await
    }
}

/// `message_expiry`: the code's remaining lifetime in whole seconds, within Plivo's bounds.
fn message_expiry(validity: Duration) -> u64 {
    validity.as_secs().clamp(*EXPIRY_SECS.start(), *EXPIRY_SECS.end())
}

/// The `voice` and `language` of `<Speak>` for a locale. Plivo's basic WOMAN
/// voice covers the languages of its table; Portuguese (Portugal) exists only
/// as MAN; a few more languages only through Amazon Polly voices. Anything
/// else is read in US English rather than failing the call.
fn speak_voice(locale: &Locale) -> (&'static str, &'static str) {
    const WOMAN: [&str; 15] = [
        "da-DK", "nl-NL", "en-AU", "en-GB", "en-US", "fr-FR", "fr-CA", "de-DE", "it-IT", "pl-PL", "pt-BR", "ru-RU",
        "es-ES", "es-US", "sv-SE",
    ];
    if let Some(tag) = WOMAN.iter().find(|tag| **tag == locale.as_str()) {
        return ("WOMAN", tag);
    }
    match (locale.as_str(), locale.language()) {
        ("pt-PT", _) => ("MAN", "pt-PT"),
        (_, "en") => ("WOMAN", "en-US"),
        (_, "es") => ("WOMAN", "es-ES"),
        (_, "fr") => ("WOMAN", "fr-FR"),
        (_, "de") => ("WOMAN", "de-DE"),
        (_, "pt") => ("WOMAN", "pt-BR"),
        (_, "it") => ("WOMAN", "it-IT"),
        (_, "nl") => ("WOMAN", "nl-NL"),
        (_, "da") => ("WOMAN", "da-DK"),
        (_, "pl") => ("WOMAN", "pl-PL"),
        (_, "ru") => ("WOMAN", "ru-RU"),
        (_, "sv") => ("WOMAN", "sv-SE"),
        (_, "ja") => ("Polly.Mizuki", "ja-JP"),
        (_, "ko") => ("Polly.Seoyeon", "ko-KR"),
        (_, "zh") => ("Polly.Zhiyu", "cmn-CN"),
        (_, "hi") => ("Polly.Aditi", "hi-IN"),
        (_, "tr") => ("Polly.Filiz", "tr-TR"),
        _ => ("WOMAN", "en-US"),
    }
}

/// The Plivo XML a call's `answer_url` must serve: the intro, then the digits
/// one by one, `repeat` times (at least once) with a one-second `<Wait>`
/// between readings. verifyd serves it at [`VoiceCall::script_url`].
pub fn answer_xml(call: &VoiceCall) -> String {
    let (voice, language) = speak_voice(&call.locale);
    let speak = format!(r#"<Speak voice="{voice}" language="{language}">"#);
    xml::call_script(call, &speak, "</Speak>", r#"<Wait length="1"/>"#)
}

/// A 2xx answer: `message_uuid[0]` of a message, `request_uuid` of a call.
#[derive(Deserialize)]
struct AcceptedBody {
    #[serde(default)]
    message_uuid: Vec<String>,
    request_uuid: Option<String>,
}

/// Plivo's error body: `{"api_id":"…","error":"…"}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
}

fn accepted(status: StatusCode, body: &[u8]) -> Sent {
    let id = serde_json::from_slice::<AcceptedBody>(body)
        .ok()
        .and_then(|body| body.message_uuid.into_iter().next().or(body.request_uuid))
        .filter(|id| is_uuid_like(id));
    match id {
        Some(id) => Sent { provider: NAME.to_owned(), message_id: id },
        None => {
            // The body is not quoted: it may echo the request.
            tracing::warn!(%status, "plivo: accepted without a usable message id");
            unknown_id()
        }
    }
}

/// Plivo's ids are UUIDs; accept any short run of hex digits and dashes.
fn is_uuid_like(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn unknown_id() -> Sent {
    Sent { provider: NAME.to_owned(), message_id: "unknown".to_owned() }
}

/// Why Plivo refused, from the status and, for a 400, its text. `to_digits` and
/// `from` tell which number a "'…' is not a valid phone number" is about.
fn permanent_kind(status: StatusCode, text: &str, to_digits: &str, from: &str) -> PermanentKind {
    match status.as_u16() {
        // 402 is not documented; a payment problem is the operator's to fix.
        401..=405 => PermanentKind::Configuration,
        400 | 406..=499 => refusal_kind(text, to_digits, from),
        // 1xx/3xx: `base_url` does not point at the Plivo API.
        _ => PermanentKind::Configuration,
    }
}

/// Classifies the text of a refused request.
fn refusal_kind(text: &str, to_digits: &str, from: &str) -> PermanentKind {
    let lower = text.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let quoted: Vec<&str> = text.split(|c: char| !c.is_ascii_digit()).filter(|run| run.len() >= 3).collect();
    let names_to = quoted.contains(&to_digits);
    let names_from = !from.is_empty() && quoted.contains(&from);
    if (names_from && !names_to)
        || has(&["src", "source", "powerpack", "caller id", "answer_url", "hangup_url", "insufficient", "credit"])
        || has(&["balance", "auth", "subaccount", "sender", "not verified", "unverified"])
    {
        return PermanentKind::Configuration;
    }
    if has(&["opted out", "opt-out", "opted-out", "unsubscribed"]) {
        return PermanentKind::OptedOut;
    }
    if has(&["landline", "not sms", "sms-enabled", "not capable"]) {
        return PermanentKind::ChannelNotSupported;
    }
    if has(&["country", "region", "geo permission", "not enabled", "not permitted"]) {
        return PermanentKind::RegionNotAllowed;
    }
    if names_to || has(&["dst", "destination", "not a valid phone number", "invalid number", "'to'", "to number"]) {
        return PermanentKind::InvalidNumber;
    }
    PermanentKind::Rejected
}

/// "HTTP 400 Bad Request: '***********' is not a valid phone number." Only the
/// status carries digits of verifyd's making; Plivo's text loses the script URL
/// and the message or code it may quote, then every digit, then is shortened.
fn describe(status: StatusCode, error: Option<&ErrorBody>, secrets: &Secrets<'_>) -> String {
    let Some(error) = error else {
        return format!("HTTP {status} with a non-JSON body");
    };
    match error.error.as_deref().filter(|e| !e.trim().is_empty()) {
        Some(text) => {
            let text = match secrets.url {
                Some(url) if !url.is_empty() => text.replace(url, "<script url>"),
                _ => text.to_owned(),
            };
            format!("HTTP {status}: {}", http::safe_text(&text, secrets.content, MAX_ERROR_CHARS))
        }
        None => format!("HTTP {status}"),
    }
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
            script_url: Some("https://verifyd.example.com/voice/script?sig=abc".to_owned()),
        }
    }

    #[test]
    fn locales_map_to_plivo_voices_with_a_us_english_fallback() {
        let cases = [
            ("en", ("WOMAN", "en-US")),
            ("en-GB", ("WOMAN", "en-GB")),
            ("en-IE", ("WOMAN", "en-US")),
            ("es", ("WOMAN", "es-ES")),
            ("es-US", ("WOMAN", "es-US")),
            ("fr-CA", ("WOMAN", "fr-CA")),
            ("de", ("WOMAN", "de-DE")),
            ("pt", ("WOMAN", "pt-BR")),
            ("pt-PT", ("MAN", "pt-PT")),
            ("ja", ("Polly.Mizuki", "ja-JP")),
            ("fi", ("WOMAN", "en-US")),
        ];
        for (tag, expected) in cases {
            assert_eq!(speak_voice(&Locale::parse(tag).unwrap()), expected, "{tag}");
        }
    }

    #[test]
    fn answer_xml_reads_intro_and_digits_with_waits_between() {
        let xml = answer_xml(&call("Your code is", "1234", 2, "en"));
        let reading = r#"<Speak voice="WOMAN" language="en-US">Your code is</Speak><Speak voice="WOMAN" language="en-US">1, 2, 3, 4</Speak>"#;
        assert_eq!(
            xml,
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response>{reading}<Wait length="1"/>{reading}</Response>"#
            )
        );
    }

    #[test]
    fn answer_xml_escapes_the_intro_reads_once_at_least_and_skips_an_empty_intro() {
        let xml = answer_xml(&call("Tom & <Jerry>", "987654", 0, "fr"));
        assert!(xml.contains(r#"<Speak voice="WOMAN" language="fr-FR">Tom &amp; &lt;Jerry&gt;</Speak>"#), "{xml}");
        assert_eq!(xml.matches("9, 8, 7, 6, 5, 4").count(), 1);
        assert!(!xml.contains("<Wait"));
        assert_eq!(answer_xml(&call(" ", "1234", 1, "en")).matches("<Speak").count(), 1);
    }

    #[test]
    fn expiry_is_clamped_to_plivo_bounds() {
        assert_eq!(message_expiry(Duration::from_secs(1)), 5);
        assert_eq!(message_expiry(Duration::from_secs(600)), 600);
        assert_eq!(message_expiry(Duration::from_secs(86_400)), 10_799);
    }

    #[test]
    fn refusals_are_classified_by_text_and_by_the_number_they_name() {
        let kind = |text| refusal_kind(text, "14155552671", "15005550006");
        assert_eq!(kind("'14155552671' is not a valid phone number."), PermanentKind::InvalidNumber);
        assert_eq!(kind("'15005550006' is not a valid phone number."), PermanentKind::Configuration);
        assert_eq!(kind("invalid dst"), PermanentKind::InvalidNumber);
        assert_eq!(kind("src parameter not present"), PermanentKind::Configuration);
        assert_eq!(kind("Insufficient credit to send the message"), PermanentKind::Configuration);
        assert_eq!(kind("answer_url parameter is missing"), PermanentKind::Configuration);
        assert_eq!(kind("destination country is not enabled for SMS"), PermanentKind::RegionNotAllowed);
        assert_eq!(kind("recipient has opted out"), PermanentKind::OptedOut);
        assert_eq!(kind("something else"), PermanentKind::Rejected);
    }

    #[test]
    fn a_2xx_is_accepted_with_or_without_an_id() {
        let sent = accepted(
            StatusCode::ACCEPTED,
            br#"{"api_id":"x","message":"message(s) queued","message_uuid":["db3ce55a-7f1d-11e1-8ea7-1231380bc196"]}"#,
        );
        assert_eq!(sent.message_id, "db3ce55a-7f1d-11e1-8ea7-1231380bc196");
        let sent = accepted(
            StatusCode::CREATED,
            br#"{"api_id":"x","message":"call fired","request_uuid":"75b26856-8638-11e0-802c-6d99d509954e"}"#,
        );
        assert_eq!(sent.message_id, "75b26856-8638-11e0-802c-6d99d509954e");
        for body in [&b"OK"[..], b"", br#"{"message_uuid":[]}"#, br#"{"request_uuid":"a b"}"#] {
            assert_eq!(accepted(StatusCode::OK, body).message_id, "unknown");
        }
    }

    #[test]
    fn debug_never_shows_the_token_and_timeout_is_read_in_ms() {
        let config: PlivoConfig = serde_json::from_value(serde_json::json!({
            "auth_id": "MAXXXXXXXXXXXXXXXXXX",
            "auth_token": "s3cr3t-token",
            "from": "+15005550006",
            "timeout_ms": 2500
        }))
        .unwrap();
        assert_eq!(config.timeout, Duration::from_millis(2500));
        assert_eq!(config.base_url, DEFAULT_BASE_URL);
        assert!(config.status_callback.is_none());
        assert!(!format!("{config:?}").contains("s3cr3t-token"));
    }
}
