//! Vonage Voice API: a call whose NCCO `talk` action reads the code.
//!
//! `POST https://api.nexmo.com/v1/calls` with `Authorization: Bearer <JWT>`
//! (RS256 with the application's private key; claims `application_id`, `iat`,
//! `jti`, `exp`) and
//! `{"to":[{"type":"phone","number":"447700900000"}],"from":{"type":"phone","number":"…"},"ncco":[{"action":"talk","text":"<speak>…</speak>","language":"en-US","loop":2}],"event_url":["…"]}`;
//! Vonage answers 201 `{"uuid","status":"started","direction":"outbound","conversation_uuid"}`.
//! Errors are problem documents: `{"type","title","detail","instance","invalid_parameters"?}`.
//! - <https://developer.vonage.com/en/api/voice#createCall>
//! - <https://developer.vonage.com/en/voice/voice-api/ncco-reference#talk>
//! - <https://developer.vonage.com/en/voice/voice-api/concepts/customizing-tts> (SSML in `text`)
//! - <https://developer.vonage.com/en/getting-started/concepts/authentication#json-web-tokens>
//! - <https://github.com/Nexmo/api-specification/blob/master/definitions/voice.yml>

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::NAME;
use crate::domain::Locale;
use crate::http;
use crate::provider::{PermanentKind, ProviderError, VoiceCall};
use crate::ssml;

pub(super) const CALLS_PATH: &str = "/v1/calls";
/// A token only has to outlive one request.
const TOKEN_LIFETIME: Duration = Duration::from_secs(120);
const MAX_DETAIL_CHARS: usize = 200;

/// Text-to-speech languages the Voice API lists (those of the `ll-RR` form verifyd's locales can name).
const LANGUAGES: &[&str] = &[
    "ar", "ca-ES", "cs-CZ", "cy-GB", "da-DK", "de-DE", "el-GR", "en-AU", "en-GB", "en-IN", "en-US", "en-ZA", "es-ES",
    "es-MX", "es-US", "eu-ES", "fi-FI", "fr-CA", "fr-FR", "he-IL", "hi-IN", "hu-HU", "id-ID", "is-IS", "it-IT",
    "ja-JP", "ko-KR", "nb-NO", "nl-NL", "pl-PL", "pt-BR", "pt-PT", "ro-RO", "ru-RU", "sk-SK", "sv-SE", "th-TH",
    "tr-TR", "uk-UA", "vi-VN",
];
const PREFERRED: &[(&str, &str)] = &[
    ("en", "en-US"),
    ("es", "es-ES"),
    ("fr", "fr-FR"),
    ("pt", "pt-BR"),
    ("no", "nb-NO"),
    ("nb", "nb-NO"),
    ("zh", "cmn-CN"),
];

/// The claims of the application JWT Vonage asks for.
#[derive(Serialize)]
struct Claims {
    application_id: String,
    iat: u64,
    jti: String,
    exp: u64,
}

/// Parses the application's PEM key once.
pub(super) fn signing_key(pem: &SecretString) -> Result<EncodingKey, String> {
    EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
        .map_err(|_| "private_key is not an RSA private key in PEM (the key file of the Vonage application)".to_owned())
}

/// A fresh RS256 token for one request.
pub(super) fn token(key: &EncodingKey, application_id: &str, now: SystemTime) -> Result<String, String> {
    let iat = now.duration_since(UNIX_EPOCH).map_err(|_| "the clock is before 1970".to_owned())?.as_secs();
    let claims =
        Claims { application_id: application_id.to_owned(), iat, jti: jti(), exp: iat + TOKEN_LIFETIME.as_secs() };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key)
        .map_err(|e| format!("cannot sign the Vonage token: {e}"))
}

/// A random token id, so Vonage can refuse a replayed token.
fn jti() -> String {
    use rand::RngExt;
    let n: u128 = rand::rng().random();
    format!("{n:032x}")
}

/// The caller number as Vonage wants it: 7 to 15 digits, no `+`.
pub(super) fn caller(from: &str) -> Result<String, String> {
    let digits = from.trim().trim_start_matches('+');
    if (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits.to_owned())
    } else {
        Err("calls need a Vonage number as caller: set voice_from (or from) to its digits".to_owned())
    }
}

/// The call: one `talk` action looped `repeat` times, verifyd's event URL if set.
pub(super) fn body(call: &VoiceCall, from: &str, event_url: Option<&str>) -> Value {
    let mut body = json!({
        "to": [{ "type": "phone", "number": call.to.digits() }],
        "from": { "type": "phone", "number": from },
        "ncco": [{
            "action": "talk",
            "text": talk_text(call),
            "language": language(&call.locale),
            "loop": call.repeat.max(1),
        }],
    });
    if let Some(url) = event_url {
        body["event_url"] = json!([url]);
    }
    body
}

/// `<speak>intro, pause, digits, pause</speak>`: the trailing pause separates
/// the readings `loop` repeats.
fn talk_text(call: &VoiceCall) -> String {
    format!("<speak>{}{}</speak>", ssml::reading(&ssml::escape(&call.intro), call), ssml::BETWEEN_READINGS)
}

fn language(locale: &Locale) -> &'static str {
    ssml::pick_language(locale, LANGUAGES, PREFERRED)
}

/// The `uuid` of a created call, if it looks like one.
pub(super) fn created_uuid(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let uuid = value.get("uuid")?.as_str()?;
    let plausible = (1..=64).contains(&uuid.len()) && uuid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    plausible.then(|| uuid.to_owned())
}

/// Vonage's problem document.
#[derive(Deserialize, Default)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    invalid_parameters: Vec<InvalidParameter>,
}

#[derive(Deserialize)]
struct InvalidParameter {
    #[serde(default)]
    name: String,
}

/// Maps a Voice API error answer; `secret` (the code) never reaches the reason.
pub(super) fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8], secret: &str) -> ProviderError {
    let problem = serde_json::from_slice::<Problem>(body).unwrap_or_default();
    let mut reason = format!("HTTP {status}");
    for text in [&problem.title, &problem.detail].into_iter().flatten().filter(|t| !t.trim().is_empty()) {
        reason.push_str(": ");
        reason.push_str(&http::safe_text(text, secret, MAX_DETAIL_CHARS));
    }
    let names: Vec<String> = problem.invalid_parameters.iter().map(|p| field_name(&p.name)).collect();
    if !names.is_empty() {
        reason.push_str(&format!(" (invalid: {})", names.join(", ")));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return ProviderError::retryable(NAME, reason, None, retry_after);
    }
    let about_the_number = names.iter().any(|n| n == "to" || n.starts_with("to[") || n.starts_with("to."));
    let kind = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY if about_the_number => PermanentKind::InvalidNumber,
        // 401: the JWT or application; 402: low balance; 403: not provisioned.
        StatusCode::UNAUTHORIZED | StatusCode::PAYMENT_REQUIRED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
            PermanentKind::Configuration
        }
        status if status.is_client_error() => PermanentKind::Rejected,
        // 1xx/3xx: `voice_base_url` does not point at the Voice API.
        _ => PermanentKind::Configuration,
    };
    ProviderError::permanent(NAME, kind, reason, None)
}

/// A field name as Vonage reports it (`to[0].number`), without anything else.
fn field_name(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric() || "_.[]-".contains(*c)).take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Code, PhoneNumber};

    fn call(intro: &str, repeat: u8, locale: &str) -> VoiceCall {
        VoiceCall {
            to: PhoneNumber::parse("+447911123456").unwrap(),
            intro: intro.to_owned(),
            code: Code::parse("4096").unwrap(),
            repeat,
            locale: Locale::parse(locale).unwrap(),
            reference: "att_3".to_owned(),
            script_url: None,
        }
    }

    #[test]
    fn talk_reads_intro_then_digits_and_pauses_before_the_next_loop() {
        assert_eq!(
            talk_text(&call("Your code is <b> & co", 2, "en")),
            r#"<speak>Your code is &lt;b&gt; &amp; co<break time="500ms"/>4, 0, 9, 6<break time="1s"/></speak>"#
        );
        let body = body(&call("Hi", 0, "fr"), "447700900001", None);
        assert_eq!(body["ncco"][0]["loop"], 1, "read at least once");
        assert_eq!(body["ncco"][0]["language"], "fr-FR");
        assert_eq!(body["to"], json!([{"type": "phone", "number": "447911123456"}]));
        assert!(body.get("event_url").is_none());
    }

    #[test]
    fn languages_fall_back_to_a_vonage_voice() {
        for (tag, want) in [("en", "en-US"), ("en-GB", "en-GB"), ("pt", "pt-BR"), ("de", "de-DE"), ("ja", "ja-JP")] {
            assert_eq!(language(&Locale::parse(tag).unwrap()), want, "{tag}");
        }
        assert_eq!(language(&Locale::parse("en-NZ").unwrap()), "en-US");
        assert_eq!(language(&Locale::parse("xx").unwrap()), "en-US");
    }

    #[test]
    fn caller_must_be_a_number() {
        assert_eq!(caller("+447700900001").as_deref(), Ok("447700900001"));
        assert!(caller("verifyd").is_err());
        assert!(caller("123").is_err());
    }

    #[test]
    fn a_bad_pem_is_a_configuration_error() {
        assert!(signing_key(&SecretString::from("not a key".to_owned())).is_err());
    }
}
