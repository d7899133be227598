//! Twilio Programmable Messaging and Voice, REST API 2010-04-01.
//!
//! SMS go to `Messages.json`, calls to `Calls.json` with inline TwiML; both are
//! form-encoded POSTs authenticated with HTTP Basic `AccountSid:AuthToken`.
//! WhatsApp goes to `Messages.json` too, with `To`/`From` as
//! `whatsapp:+<E.164>` and an approved authentication template as
//! `ContentSid` with the code as `ContentVariables` `{"1":"<code>"}`
//! (<https://www.twilio.com/docs/whatsapp/api>,
//! <https://www.twilio.com/docs/content/authentication-templates>).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::{Channel, Locale};
use crate::http::Answer;
use crate::provider::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall, WhatsApp};
use crate::receipt::{Receipt, ReceiptStatus};
use crate::{http, xml};

const NAME: &str = "twilio";
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";
pub use crate::http::DEFAULT_TIMEOUT;
/// Twilio refuses longer `Body` values (error 21617).
const MAX_BODY_CHARS: usize = 1600;
/// Twilio refuses longer inline `Twiml` (error 32018).
const MAX_TWIML_CHARS: usize = 4000;
/// `ValidityPeriod` bounds, in seconds.
const VALIDITY_SECS: std::ops::RangeInclusive<u64> = 1..=36_000;
/// How much of Twilio's error `message` ends up in an error reason.
const MAX_MESSAGE_CHARS: usize = 200;

/// Settings of the Twilio provider.
///
/// In configuration files the timeout is the integer field `timeout_ms`
/// (milliseconds, default 10 000); `base_url` defaults to `https://api.twilio.com`
/// and `status_callback` to none.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: SecretString,
    /// Sender: a Twilio number in E.164 or an alphanumeric sender id.
    pub from: String,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Where Twilio posts delivery status updates.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// WhatsApp through Twilio: offered only when set.
    #[serde(default)]
    pub whatsapp: Option<TwilioWhatsApp>,
    #[serde(rename = "timeout_ms", default = "http::default_timeout", deserialize_with = "http::millis")]
    pub timeout: Duration,
}

impl TwilioConfig {
    /// A config for the real API with the default timeout and no status callback.
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<String>, from: impl Into<String>) -> Self {
        TwilioConfig {
            account_sid: account_sid.into(),
            auth_token: SecretString::from(auth_token.into()),
            from: from.into(),
            base_url: default_base_url(),
            status_callback: None,
            whatsapp: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// `[providers.twilio.whatsapp]`: the WhatsApp sender and its approved
/// authentication template.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioWhatsApp {
    /// The WhatsApp sender registered on the account, `+E.164`.
    pub from: String,
    /// The Content API template (`HX…`) of an approved authentication
    /// template whose variable `1` is the code.
    pub content_sid: String,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

/// The Twilio client. Cheap to share: one connection pool per instance.
#[derive(Debug)]
pub struct Twilio {
    config: TwilioConfig,
    client: reqwest::Client,
}

impl Twilio {
    pub fn new(config: TwilioConfig) -> Result<Self, reqwest::Error> {
        let client = http::client(config.timeout)?;
        Ok(Twilio { config, client })
    }

    fn endpoint(&self, resource: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/{resource}.json",
            self.config.base_url.trim_end_matches('/'),
            self.config.account_sid
        )
    }

    /// POSTs `form` to `resource` and turns the answer into a message sid or an
    /// error. `secret` (the SMS body or the code) is kept out of any error reason.
    async fn create(&self, resource: &str, form: &[(&str, &str)], secret: &str) -> Result<Sent, ProviderError> {
        let request = self
            .client
            .post(self.endpoint(resource))
            .basic_auth(&self.config.account_sid, Some(self.config.auth_token.expose_secret()))
            .form(form);
        match http::send(NAME, request).await? {
            Answer::Accepted { status, body: Some(body) } => Ok(created(status, &body)),
            Answer::Accepted { .. } => Ok(unknown_sid()),
            Answer::Refused { status, retry_after, body } => Err(classify(status, retry_after, &body, secret)),
        }
    }
}

#[async_trait]
impl Provider for Twilio {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, channel: Channel) -> bool {
        match channel {
            Channel::Sms | Channel::Voice => true,
            Channel::Whatsapp => self.config.whatsapp.is_some(),
            Channel::Email => false,
        }
    }

    async fn send_whatsapp(&self, message: &WhatsApp) -> Result<Sent, ProviderError> {
        let Some(whatsapp) = &self.config.whatsapp else {
            let reason = "Twilio WhatsApp needs [providers.twilio.whatsapp] (from, content_sid)";
            return Err(ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None));
        };
        let code = message.code.expose();
        let to = format!("whatsapp:{}", message.to.e164());
        let from = format!("whatsapp:{}", whatsapp.from);
        let variables = serde_json::json!({ "1": code }).to_string();
        let validity = validity_period(message.validity).to_string();
        let mut form = vec![
            ("To", to.as_str()),
            ("From", from.as_str()),
            ("ContentSid", whatsapp.content_sid.as_str()),
            ("ContentVariables", variables.as_str()),
            ("ValidityPeriod", validity.as_str()),
        ];
        if let Some(callback) = &self.config.status_callback {
            form.push(("StatusCallback", callback));
        }
        tracing::debug!(to = %message.to.masked(), reference = %message.reference, "twilio: sending WhatsApp");
        self.create("Messages", &form, code).await
    }

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, ProviderError> {
        let chars = sms.body.chars().count();
        if chars > MAX_BODY_CHARS {
            return Err(ProviderError::permanent(
                NAME,
                PermanentKind::Configuration,
                format!("SMS body has {chars} characters, Twilio accepts at most {MAX_BODY_CHARS}"),
                None,
            ));
        }
        let validity = validity_period(sms.validity).to_string();
        let mut form = vec![
            ("To", sms.to.e164()),
            ("From", self.config.from.as_str()),
            ("Body", sms.body.as_str()),
            ("ValidityPeriod", validity.as_str()),
        ];
        if let Some(callback) = &self.config.status_callback {
            form.push(("StatusCallback", callback));
        }
        tracing::debug!(to = %sms.to.masked(), reference = %sms.reference, "twilio: sending SMS");
        self.create("Messages", &form, &sms.body).await
    }

    async fn place_call(&self, call: &VoiceCall) -> Result<Sent, ProviderError> {
        let twiml = twiml(call);
        let chars = twiml.chars().count();
        if chars > MAX_TWIML_CHARS {
            return Err(ProviderError::permanent(
                NAME,
                PermanentKind::Configuration,
                format!("call TwiML has {chars} characters, over Twilio's {MAX_TWIML_CHARS}"),
                None,
            ));
        }
        let mut form = vec![("To", call.to.e164()), ("From", self.config.from.as_str()), ("Twiml", twiml.as_str())];
        if let Some(callback) = &self.config.status_callback {
            form.push(("StatusCallback", callback));
        }
        tracing::debug!(to = %call.to.masked(), reference = %call.reference, "twilio: placing call");
        self.create("Calls", &form, call.code.expose()).await
    }
}

/// `ValidityPeriod`: the code's remaining lifetime in whole seconds, within Twilio's bounds.
fn validity_period(validity: Duration) -> u64 {
    validity.as_secs().clamp(*VALIDITY_SECS.start(), *VALIDITY_SECS.end())
}

/// The `language` of `<Say>`: Twilio wants a region, so bare languages get the
/// most common one.
fn say_language(locale: &Locale) -> &str {
    match locale.as_str() {
        "en" => "en-US",
        "es" => "es-ES",
        "fr" => "fr-FR",
        "de" => "de-DE",
        "pt" => "pt-BR",
        "ja" => "ja-JP",
        tag => tag,
    }
}

/// Inline TwiML that reads the intro and the digits `repeat` times (at least once),
/// with a one-second pause between readings.
fn twiml(call: &VoiceCall) -> String {
    let say = format!(r#"<Say language="{}">"#, xml::escape(say_language(&call.locale)));
    xml::call_script(call, &say, "</Say>", r#"<Pause length="1"/>"#)
}

#[derive(Deserialize)]
struct CreatedBody {
    sid: Option<String>,
}

/// Twilio's error body: `{"code":21211,"message":"…","more_info":"…","status":400}`.
#[derive(Deserialize)]
struct ErrorBody {
    code: Option<i64>,
    message: Option<String>,
}

/// A 2xx answer: the message was accepted, with or without a usable sid. Retrying
/// a 2xx could send the message (and its code) twice.
fn created(status: StatusCode, body: &[u8]) -> Sent {
    let sid =
        serde_json::from_slice::<CreatedBody>(body).ok().and_then(|created| created.sid).filter(|sid| is_sid(sid));
    match sid {
        Some(sid) => {
            tracing::debug!(%sid, "twilio: accepted");
            Sent { provider: NAME.to_owned(), message_id: sid }
        }
        None => {
            // The body is not quoted: it may echo the request.
            tracing::warn!(%status, "twilio: accepted without a usable message sid");
            unknown_sid()
        }
    }
}

/// What a Twilio sid looks like (`SM`/`CA` and 32 hex digits), loosely: a short
/// run of ASCII letters and digits.
fn is_sid(sid: &str) -> bool {
    (1..=64).contains(&sid.len()) && sid.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn unknown_sid() -> Sent {
    Sent { provider: NAME.to_owned(), message_id: "unknown".to_owned() }
}

/// Maps an error answer; `secret` (the SMS body or the code) never reaches the reason.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8], secret: &str) -> ProviderError {
    let error = serde_json::from_slice::<ErrorBody>(body).ok();
    let code = error.as_ref().and_then(|e| e.code);
    let reason = describe(status, error.as_ref(), secret);
    let throttled = status == StatusCode::TOO_MANY_REQUESTS || code == Some(20429);
    // 14107: the account's SMS rate limit; the next window will accept it.
    if throttled || status.is_server_error() || code == Some(14107) {
        return ProviderError::retryable(NAME, reason, code, retry_after);
    }
    ProviderError::permanent(NAME, permanent_kind(status, code), reason, code)
}

fn permanent_kind(status: StatusCode, code: Option<i64>) -> PermanentKind {
    match code {
        Some(21211) => PermanentKind::InvalidNumber,
        Some(21408) => PermanentKind::RegionNotAllowed,
        Some(21610) => PermanentKind::OptedOut,
        // 21614: not a mobile number; 21635: landline. Voice may still reach it.
        Some(21614 | 21635) => PermanentKind::ChannelNotSupported,
        // 63003: the To address is not on WhatsApp; SMS or a call may reach it.
        Some(63003) => PermanentKind::ChannelNotSupported,
        // 63007: no WhatsApp sender for From; 63016: outside the 24-hour
        // window (the content is not an approved template); 63027: template
        // rejected or paused.
        Some(63007 | 63016 | 63027) => PermanentKind::Configuration,
        // 20003: bad credentials; 20404: unknown AccountSid; 32018: TwiML too long.
        // 21608: a trial account may only send to verified numbers: the operator
        // has to upgrade the account, nothing the recipient can change.
        Some(20003 | 20404 | 21608 | 32018) => PermanentKind::Configuration,
        _ if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => PermanentKind::Configuration,
        _ if status.is_client_error() => PermanentKind::Rejected,
        // 1xx/3xx: `base_url` does not point at the Twilio API.
        _ => PermanentKind::Configuration,
    }
}

/// "HTTP 400 Bad Request, Twilio error 21211: The 'To' number +*********** is not …".
/// Only the status and Twilio's numeric code, formatted here, carry digits. Twilio's
/// message loses any echo of `secret`, then every digit (it may quote the code in
/// any form: the SMS body, the TwiML's "1, 2, 3", a phone number), then control
/// characters, and only then is shortened; a non-JSON body is not quoted at all.
fn describe(status: StatusCode, error: Option<&ErrorBody>, secret: &str) -> String {
    let Some(error) = error else {
        return format!("HTTP {status} with a non-JSON body");
    };
    let mut reason = format!("HTTP {status}");
    if let Some(code) = error.code {
        reason.push_str(&format!(", Twilio error {code}"));
    }
    if let Some(message) = error.message.as_deref().filter(|m| !m.trim().is_empty()) {
        reason.push_str(": ");
        reason.push_str(&http::safe_text(message, secret, MAX_MESSAGE_CHARS));
    }
    reason
}

/// The `X-Twilio-Signature` Twilio puts on a status callback to `url` (the
/// exact URL Twilio requested, query string included) with these form
/// parameters: base64 of HMAC-SHA1 keyed with the auth token over the URL
/// followed by every parameter's name and value, sorted by name.
/// <https://www.twilio.com/docs/usage/security#validating-requests>
pub fn request_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    // HMAC takes a key of any length.
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `header` (the request's `X-Twilio-Signature`) is Twilio's signature
/// of this callback, compared in constant time.
pub fn verify_request(auth_token: &SecretString, url: &str, params: &[(String, String)], header: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = request_signature(auth_token.expose_secret(), url, params);
    expected.as_bytes().ct_eq(header.trim().as_bytes()).into()
}

/// The receipt a Twilio status callback (message or call) reports, from its
/// form parameters (check `verify_request` first); `None` for one verifyd
/// ignores (no message or call sid, a status it does not track).
pub fn receipt(params: &[(String, String)]) -> Option<Receipt> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (sid, status) = match (get("MessageSid"), get("MessageStatus"), get("CallSid"), get("CallStatus")) {
        (Some(sid), Some(status), _, _) => message_status(status).map(|s| (sid, s)),
        (_, _, Some(sid), Some(status)) => call_status(status).map(|s| (sid, s)),
        _ => None,
    }?;
    Some(Receipt {
        provider: NAME,
        message_id: sid.to_owned(),
        status,
        error_code: get("ErrorCode").filter(|c| !c.is_empty()).map(str::to_owned),
    })
}

/// <https://www.twilio.com/docs/messaging/guides/track-outbound-message-status>
fn message_status(status: &str) -> Option<ReceiptStatus> {
    Some(match status {
        "accepted" | "scheduled" | "queued" => ReceiptStatus::Queued,
        "sending" | "sent" => ReceiptStatus::Sent,
        "delivered" | "read" => ReceiptStatus::Delivered,
        "undelivered" => ReceiptStatus::Undelivered,
        "failed" | "canceled" => ReceiptStatus::Failed,
        _ => return None,
    })
}

/// <https://www.twilio.com/docs/voice/api/call-resource#call-status-values>
fn call_status(status: &str) -> Option<ReceiptStatus> {
    Some(match status {
        "queued" | "initiated" | "ringing" => ReceiptStatus::Queued,
        "in-progress" => ReceiptStatus::Sent,
        "completed" => ReceiptStatus::Delivered,
        "busy" | "no-answer" => ReceiptStatus::Undelivered,
        "failed" | "canceled" => ReceiptStatus::Failed,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn receipts_of_messages_and_calls_read_into_one_shape() {
        let sms = receipt(&params(&[("MessageSid", "SM1"), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")]));
        assert_eq!(
            sms,
            Some(Receipt {
                provider: "twilio",
                message_id: "SM1".into(),
                status: ReceiptStatus::Undelivered,
                error_code: Some("30003".into()),
            })
        );
        let call = receipt(&params(&[("CallSid", "CA1"), ("CallStatus", "no-answer"), ("ErrorCode", "")])).unwrap();
        assert_eq!((call.message_id.as_str(), call.status, call.error_code), ("CA1", ReceiptStatus::Undelivered, None));
        assert_eq!(receipt(&params(&[("MessageSid", "SM1"), ("MessageStatus", "receiving")])), None);
        assert_eq!(receipt(&params(&[("MessageStatus", "delivered")])), None, "no sid");
    }

    /// The example of Twilio's security guide: this URL, these parameters and
    /// the auth token "12345" sign to "0/KCTR6DLpKmkAf8muzZqo1nDgQ=".
    #[test]
    fn signs_callbacks_like_twilio_documents() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(request_signature("12345", url, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        let token = SecretString::from("12345".to_owned());
        assert!(verify_request(&token, url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!verify_request(&token, url, &params[1..], "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!verify_request(&SecretString::from("54321".to_owned()), url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
    }
    use crate::domain::{Code, PhoneNumber};
    use crate::http::{mask_digits, truncate};

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
    fn bare_languages_get_a_region_and_tags_pass_through() {
        let cases = [
            ("en", "en-US"),
            ("es", "es-ES"),
            ("fr", "fr-FR"),
            ("de", "de-DE"),
            ("pt", "pt-BR"),
            ("ja", "ja-JP"),
            ("en-GB", "en-GB"),
            ("pt-PT", "pt-PT"),
            ("it", "it"),
        ];
        for (tag, expected) in cases {
            assert_eq!(say_language(&Locale::parse(tag).unwrap()), expected, "{tag}");
        }
    }

    #[test]
    fn twiml_reads_intro_and_digits_with_pauses_between() {
        let twiml = twiml(&call("Your code is", "1234", 2, "en"));
        let reading = r#"<Say language="en-US">Your code is</Say><Say language="en-US">1, 2, 3, 4</Say>"#;
        assert_eq!(
            twiml,
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response>{reading}<Pause length="1"/>{reading}</Response>"#
            )
        );
    }

    #[test]
    fn twiml_escapes_the_intro_and_reads_at_least_once() {
        let twiml = twiml(&call("Tom & Jerry's <b>\"code\"</b>\u{7}", "987654", 0, "fr"));
        assert!(
            twiml.contains(r#"<Say language="fr-FR">Tom &amp; Jerry&apos;s &lt;b&gt;&quot;code&quot;&lt;/b&gt;</Say>"#)
        );
        assert_eq!(twiml.matches("9, 8, 7, 6, 5, 4").count(), 1);
        assert!(!twiml.contains("<Pause"));
    }

    #[test]
    fn empty_intro_is_left_out() {
        let twiml = twiml(&call("  ", "1234", 1, "en"));
        assert_eq!(twiml.matches("<Say").count(), 1);
    }

    #[test]
    fn validity_is_clamped_to_twilio_bounds() {
        assert_eq!(validity_period(Duration::from_millis(300)), 1);
        assert_eq!(validity_period(Duration::from_secs(600)), 600);
        assert_eq!(validity_period(Duration::from_secs(90_000)), 36_000);
    }

    #[test]
    fn every_digit_is_masked_in_twilio_messages() {
        assert_eq!(
            mask_digits(" The 'To' number +15005550001 is not valid, see 123\n"),
            "The 'To' number +*********** is not valid, see ***"
        );
        assert_eq!(
            mask_digits("<Say>1, 2, 3, 4</Say>\r\nline\u{7}two \u{FF11}\u{0661}"),
            "<Say>*, *, *, *</Say>  line two **"
        );
    }

    #[test]
    fn truncation_cuts_on_a_char_boundary_after_masking() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("", 0), "");
        let error =
            ErrorBody { code: Some(21211), message: Some(format!("{}é12345678", "x".repeat(MAX_MESSAGE_CHARS - 4))) };
        let reason = describe(StatusCode::BAD_REQUEST, Some(&error), "");
        let message = reason.strip_prefix("HTTP 400 Bad Request, Twilio error 21211: ").unwrap();
        assert!(!message.chars().any(|c| c.is_ascii_digit()), "{reason}");
        assert!(message.ends_with("xé***…"), "{reason}");
    }

    #[test]
    fn a_2xx_is_accepted_with_or_without_a_sid() {
        let sent = created(StatusCode::CREATED, br#"{"sid":"SM0123456789abcdef0123456789abcdef"}"#);
        assert_eq!(sent.message_id, "SM0123456789abcdef0123456789abcdef");
        for body in [&b"OK"[..], b"", br#"{"sid":null}"#, br#"{"sid":""}"#, br#"{"sid":"a b"}"#] {
            assert_eq!(created(StatusCode::OK, body).message_id, "unknown");
        }
    }

    #[test]
    fn debug_never_shows_the_token_and_timeout_is_read_in_ms() {
        let config: TwilioConfig = serde_json::from_value(serde_json::json!({
            "account_sid": "AC123",
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
