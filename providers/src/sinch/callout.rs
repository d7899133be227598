//! Sinch Voice API text-to-speech callouts.
//!
//! `POST https://calling.api.sinch.com/calling/v1/callouts` with
//! `{"method":"ttsCallout","ttsCallout":{"cli","destination":{"type":"number","endpoint":"+E.164"},"locale","prompts","custom"}}`;
//! Sinch answers 200 `{"callId":"…"}`. `prompts` takes
//! `#ssml[<speak>…</speak>]`, which gives the pauses between readings.
//! Requests are signed with the application key and secret ("Application"
//! scheme, the one Sinch recommends for production: it binds the body and a
//! timestamp); errors are `{"errorCode":40001,"message":"…","reference":"…"}`.
//! - <https://developers.sinch.com/docs/voice/api-reference/voice/tag/Callouts> (security: Basic or Application)
//! - <https://developers.sinch.com/docs/voice/api-reference/authentication/signed-request>
//! - <https://developers.sinch.com/docs/voice/api-reference/errors>
//! - <https://community.sinch.com/t5/Voice-API/How-do-I-add-a-pause-to-the-beginning-of-a-text-to-speech/ta-p/9918>

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::NAME;
use crate::domain::Locale;
use crate::http;
use crate::provider::{PermanentKind, ProviderError, VoiceCall};
use crate::ssml;

pub(super) const PATH: &str = "/calling/v1/callouts";
/// Signed as sent: the signature covers the exact content type.
pub(super) const CONTENT_TYPE: &str = "application/json; charset=UTF-8";
/// How much of Sinch's error message ends up in an error reason.
const MAX_MESSAGE_CHARS: usize = 200;

/// Text-to-speech locales Sinch voices speak (a common subset of its list).
const LOCALES: &[&str] = &[
    "cy-GB", "da-DK", "de-DE", "en-AU", "en-GB", "en-IN", "en-US", "es-ES", "es-MX", "es-US", "fr-CA", "fr-FR",
    "is-IS", "it-IT", "ja-JP", "ko-KR", "nb-NO", "nl-NL", "pl-PL", "pt-BR", "pt-PT", "ro-RO", "ru-RU", "sv-SE",
    "tr-TR",
];
const PREFERRED: &[(&str, &str)] =
    &[("en", "en-US"), ("es", "es-ES"), ("fr", "fr-FR"), ("pt", "pt-BR"), ("no", "nb-NO"), ("nb", "nb-NO")];

/// The callout: the code read `repeat` times, verifyd's reference in `custom`
/// (Sinch echoes it in call events).
pub(super) fn body(call: &VoiceCall, cli: Option<&str>) -> Value {
    let mut tts = json!({
        "destination": { "type": "number", "endpoint": call.to.e164() },
        "locale": locale(&call.locale),
        "prompts": prompts(call),
        "custom": call.reference,
    });
    if let Some(cli) = cli {
        tts["cli"] = json!(cli);
    }
    json!({ "method": "ttsCallout", "ttsCallout": tts })
}

fn locale(locale: &Locale) -> &'static str {
    ssml::pick_language(locale, LOCALES, PREFERRED)
}

/// `#ssml[<speak>intro, pause, digits — pause — intro, pause, digits</speak>]`,
/// read at least once.
fn prompts(call: &VoiceCall) -> String {
    let reading = ssml::reading(&prompt_safe(&call.intro), call);
    let readings = vec![reading; usize::from(call.repeat.max(1))];
    format!("#ssml[<speak>{}</speak>]", readings.join(ssml::BETWEEN_READINGS))
}

/// The intro without what could end the prompt (`]`, `;` between prompts) or
/// open markup: XML entities would bring `;` back, so those characters become
/// spaces instead of being escaped.
fn prompt_safe(intro: &str) -> String {
    intro.chars().map(|c| if "&<>\"[];".contains(c) || c.is_control() { ' ' } else { c }).collect()
}

/// `x-timestamp`: ISO 8601 in UTC; Sinch refuses requests too far from its clock.
pub(super) fn timestamp(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The signature of Sinch's "Application" scheme:
/// `Base64(HMAC-SHA256(Base64-Decode(secret), "POST\n" + Base64(MD5(body)) + "\n" + content type + "\n" + "x-timestamp:" + timestamp + "\n" + path))`.
/// `None` when the secret is not base64.
pub(crate) fn application_signature(
    secret: &str,
    body: &[u8],
    content_type: &str,
    timestamp: &str,
    path: &str,
) -> Option<String> {
    let key = STANDARD.decode(secret.trim()).ok()?;
    let content_md5 = if body.is_empty() { String::new() } else { STANDARD.encode(Md5::digest(body)) };
    let to_sign = format!("POST\n{content_md5}\n{content_type}\nx-timestamp:{timestamp}\n{path}");
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).ok()?;
    mac.update(to_sign.as_bytes());
    Some(STANDARD.encode(mac.finalize().into_bytes()))
}

/// Maps a Voice API error answer; `secret` (the code) never reaches the reason.
pub(super) fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8], secret: &str) -> ProviderError {
    let error: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // `errorCode` is documented as a string and shown as a number: take both.
    let code = match &error["errorCode"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let mut reason = format!("HTTP {status}");
    if let Some(code) = code {
        reason.push_str(&format!(", Sinch error {code}"));
    }
    if let Some(message) = error["message"].as_str().filter(|m| !m.trim().is_empty()) {
        reason.push_str(": ");
        reason.push_str(&http::safe_text(message, secret, MAX_MESSAGE_CHARS));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return ProviderError::retryable(NAME, reason, code, retry_after);
    }
    let kind = match code {
        // 40004: the application key is invalid.
        Some(40004) => PermanentKind::Configuration,
        // 40005: the destination is not a valid number (missing leading plus).
        Some(40005) => PermanentKind::InvalidNumber,
        _ if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) => {
            PermanentKind::Configuration
        }
        _ if status.is_client_error() => PermanentKind::Rejected,
        // 1xx/3xx: `voice_base_url` does not point at the Sinch API.
        _ => PermanentKind::Configuration,
    };
    ProviderError::permanent(NAME, kind, reason, code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Code, PhoneNumber};

    fn call(intro: &str, repeat: u8, locale: &str) -> VoiceCall {
        VoiceCall {
            to: PhoneNumber::parse("+46701234567").unwrap(),
            intro: intro.to_owned(),
            code: Code::parse("1234").unwrap(),
            repeat,
            locale: Locale::parse(locale).unwrap(),
            reference: "att_9".to_owned(),
            script_url: None,
        }
    }

    /// The worked example of Sinch's signed-request page: this body, content
    /// type, timestamp and secret sign to the documented value. (The page
    /// names `/calling/v1/callouts` but its signature is the one of the
    /// resource `/v1/sms/+46700000000` it showed before; the algorithm is the
    /// same.)
    #[test]
    fn signs_like_sinchs_documented_example() {
        let body = br#"{"message":"Hello world"}"#;
        let signature = application_signature(
            "JViE5vDor0Sw3WllZka15Q==",
            body,
            "application/json",
            "2014-06-04T13:41:58Z",
            "/v1/sms/+46700000000",
        );
        assert_eq!(signature.as_deref(), Some("qDXMwzfaxCRS849c/2R0hg0nphgdHciTo7OdM6MsdnM="));
        assert_eq!(application_signature("not base64!", body, "application/json", "t", PATH), None);
    }

    #[test]
    fn prompts_read_the_digits_repeat_times_with_pauses() {
        assert_eq!(
            prompts(&call("Your code is", 2, "en")),
            r#"#ssml[<speak>Your code is<break time="500ms"/>1, 2, 3, 4<break time="1s"/>Your code is<break time="500ms"/>1, 2, 3, 4</speak>]"#
        );
        assert_eq!(prompts(&call("", 0, "en")), "#ssml[<speak>1, 2, 3, 4</speak>]");
    }

    #[test]
    fn an_intro_cannot_end_the_prompt_or_open_markup() {
        let prompts = prompts(&call("a] b; <c> & \"d\" l'e", 1, "fr"));
        assert!(prompts.starts_with("#ssml[<speak>a  b   c     d  l'e<break"), "{prompts}");
        assert_eq!(prompts.matches(']').count(), 1);
    }

    #[test]
    fn locales_map_to_sinch_voices() {
        assert_eq!(locale(&Locale::parse("en").unwrap()), "en-US");
        assert_eq!(locale(&Locale::parse("pt-PT").unwrap()), "pt-PT");
        assert_eq!(locale(&Locale::parse("de").unwrap()), "de-DE");
        assert_eq!(locale(&Locale::parse("zz").unwrap()), "en-US");
        let body = body(&call("Hi", 1, "ja"), Some("+46700000000"));
        assert_eq!(body["ttsCallout"]["locale"], "ja-JP");
        assert_eq!(body["ttsCallout"]["cli"], "+46700000000");
        assert_eq!(body["ttsCallout"]["destination"], json!({"type": "number", "endpoint": "+46701234567"}));
    }
}
