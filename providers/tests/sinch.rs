//! The Sinch client against a wiremock server answering with Sinch's real
//! request and response shapes: SMS batches (bearer token, JSON, 201) and
//! text-to-speech callouts (signed "Application" requests, 200 `callId`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use verifyd_providers::domain::{Channel, Code, Locale, PhoneNumber};
use verifyd_providers::sinch::{Sinch, SinchConfig};
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const PLAN: &str = "jd63jf88477ll123ab4567cd89012ef3";
const TOKEN: &str = "sms-api-token-42";
const APP_KEY: &str = "0fe1c1a8-1f8b-4f44-a6b4-4c2d0a1e2f3a";
/// A Voice application secret, base64 as the dashboard shows it.
const APP_SECRET: &str = "JViE5vDor0Sw3WllZka15Q==";
const FROM: &str = "+46700000000";
const TO: &str = "+46701234567";
const CODE: &str = "8302947";
const BODY: &str = "Your verifyd code is 8302947. It expires in 10 minutes.";
const BATCHES: &str = "/xms/v1/jd63jf88477ll123ab4567cd89012ef3/batches";
const CALLOUTS: &str = "/calling/v1/callouts";

fn config(server: &MockServer) -> SinchConfig {
    SinchConfig {
        base_url: server.uri(),
        voice_base_url: server.uri(),
        timeout: Duration::from_secs(2),
        ..SinchConfig::new(PLAN, TOKEN, FROM).with_voice(APP_KEY, APP_SECRET)
    }
}

fn sinch(config: SinchConfig) -> Sinch {
    Sinch::new(config).expect("client builds")
}

fn sms(validity: Duration) -> Sms {
    Sms { to: PhoneNumber::parse(TO).unwrap(), body: BODY.to_owned(), validity, reference: "att_1".to_owned() }
}

fn call(locale: &str) -> VoiceCall {
    VoiceCall {
        to: PhoneNumber::parse(TO).unwrap(),
        intro: "Your verifyd code is".to_owned(),
        code: Code::parse(CODE).unwrap(),
        repeat: 2,
        locale: Locale::parse(locale).unwrap(),
        reference: "att_2".to_owned(),
        script_url: None,
    }
}

/// The batch Sinch answers with (201).
fn batch_created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "id": "01FC66621XXXXX119Z8PMV1QPQ",
        "to": [TO],
        "from": FROM,
        "canceled": false,
        "body": BODY,
        "type": "mt_text",
        "created_at": "2026-03-02T10:00:00.000Z",
        "modified_at": "2026-03-02T10:00:00.000Z",
        "delivery_report": "none",
        "expire_at": "2026-03-02T10:10:00.000Z",
        "flash_message": false
    }))
}

fn call_created() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "callId": "adf92089-df2a-4f14-a377-1e975f588fe4" }))
}

/// The SMS API's 400/403 body.
fn sms_error(status: u16, code: &str, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "code": code, "text": text }))
}

/// The Voice API's error body.
fn voice_error(status: u16, code: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "errorCode": code,
        "message": message,
        "reference": "a2028355-5164-41b6-aae9-2b8a546e0784"
    }))
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.expect("recording is on");
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

fn json_body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

fn assert_leaks_nothing(error: &ProviderError) {
    let shown = format!("{error} {error:?}");
    for secret in [CODE, BODY, TOKEN, APP_SECRET, "8, 3, 0, 2"] {
        assert!(!shown.contains(secret), "{secret:?} in {shown}");
    }
}

fn assert_permanent(error: &ProviderError, expected: PermanentKind, expected_code: Option<i64>) {
    match error {
        ProviderError::Permanent { provider, kind, provider_code, .. } => {
            assert_eq!(provider, "sinch");
            assert_eq!(*kind, expected, "{error}");
            assert_eq!(*provider_code, expected_code, "{error}");
        }
        other => panic!("expected a permanent {expected:?}, got {other}"),
    }
}

/// The test SMS against a server that answers `response` to anything.
async fn sms_refused(response: ResponseTemplate) -> ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(response).mount(&server).await;
    let error = sinch(config(&server)).send_sms(&sms(Duration::from_secs(600))).await.expect_err("Sinch refused");
    assert_leaks_nothing(&error);
    error
}

/// The test call against a server that answers `response` to anything.
async fn call_refused(response: ResponseTemplate) -> ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(response).mount(&server).await;
    let error = sinch(config(&server)).place_call(&call("en")).await.expect_err("Sinch refused");
    assert_leaks_nothing(&error);
    error
}

#[tokio::test]
async fn sms_is_a_bearer_json_batch_to_the_service_plan() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(BATCHES))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(batch_created())
        .mount(&server)
        .await;

    let before = chrono::Utc::now();
    let sent = sinch(config(&server)).send_sms(&sms(Duration::from_secs(540))).await.unwrap();
    assert_eq!(sent, Sent { provider: "sinch".to_owned(), message_id: "01FC66621XXXXX119Z8PMV1QPQ".to_owned() });

    let request = only_request(&server).await;
    assert_eq!(request.headers["content-type"], "application/json");
    let body = json_body(&request);
    assert_eq!(body["to"], json!([TO]), "a list of E.164 numbers");
    assert_eq!(body["from"], FROM);
    assert_eq!(body["body"], BODY);
    assert_eq!(body["client_reference"], "att_1");
    assert!(body.get("callback_url").is_none() && body.get("delivery_report").is_none());
    let expire_at = chrono::DateTime::parse_from_rfc3339(body["expire_at"].as_str().unwrap()).unwrap().to_utc();
    let lifetime = (expire_at - before).num_seconds();
    assert!((538..=541).contains(&lifetime), "expire_at is the code's lifetime away: {lifetime}");
}

#[tokio::test]
async fn delivery_reports_are_asked_per_recipient_when_a_callback_is_set() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(BATCHES)).respond_with(batch_created()).mount(&server).await;
    let config = SinchConfig { callback_url: Some("https://verifyd.example/receipts/sinch".into()), ..config(&server) };
    sinch(config).send_sms(&sms(Duration::from_secs(600))).await.unwrap();
    let body = json_body(&only_request(&server).await);
    assert_eq!(body["delivery_report"], "per_recipient");
    assert_eq!(body["callback_url"], "https://verifyd.example/receipts/sinch");
}

#[tokio::test]
async fn without_a_sender_sinch_picks_its_default_originator() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(BATCHES)).respond_with(batch_created()).mount(&server).await;
    sinch(SinchConfig { from: None, ..config(&server) }).send_sms(&sms(Duration::from_secs(600))).await.unwrap();
    assert!(json_body(&only_request(&server).await).get("from").is_none());
}

#[tokio::test]
async fn sms_error_codes_map_to_retry_or_the_right_refusal() {
    let cases = [
        (400, "syntax_invalid_parameter_format", "Invalid MSISDN: '+4670'", PermanentKind::InvalidNumber),
        (400, "syntax_invalid_parameter_format", "expire_at: not a date", PermanentKind::Rejected),
        (400, "syntax_constraint_violation", "body: must not be null", PermanentKind::Rejected),
        (400, "syntax_invalid_json", "The JSON in the request is invalid", PermanentKind::Rejected),
        (401, "unauthorized", "Unauthorized", PermanentKind::Configuration),
        (403, "blocked_account", "The account is blocked", PermanentKind::Configuration),
        (403, "missing_callback_url", "No callback URL", PermanentKind::Configuration),
        (403, "illegal_number_type", "Illegal number type for the region", PermanentKind::ChannelNotSupported),
        (404, "not_found", "Service plan not found", PermanentKind::Configuration),
    ];
    for (status, code, text, kind) in cases {
        let error = sms_refused(sms_error(status, code, text)).await;
        assert_permanent(&error, kind, None);
        assert!(error.to_string().contains(code), "{error}");
    }
}

#[tokio::test]
async fn throttling_and_server_errors_are_retryable_and_honour_retry_after() {
    let throttled = sms_error(429, "too_many_requests", "Too many requests").insert_header("Retry-After", "7");
    let error = sms_refused(throttled).await;
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    for status in [500, 502, 503] {
        assert!(sms_refused(ResponseTemplate::new(status)).await.is_retryable(), "{status}");
    }
}

#[tokio::test]
async fn timeouts_are_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(batch_created().set_delay(Duration::from_millis(1500)))
        .mount(&server)
        .await;
    let slow = sinch(SinchConfig { timeout: Duration::from_millis(200), ..config(&server) });
    let error = slow.send_sms(&sms(Duration::from_secs(600))).await.unwrap_err();
    assert!(error.is_retryable() && error.to_string().contains("timed out"), "{error}");
    let error = slow.place_call(&call("en")).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
}

#[tokio::test]
async fn an_error_text_quoting_the_message_never_carries_the_code() {
    let error = sms_refused(sms_error(400, "syntax_constraint_violation", &format!("body '{BODY}' refused"))).await;
    assert!(error.to_string().ends_with("body '<redacted>' refused"), "{error}");
}

#[tokio::test]
async fn a_2xx_without_an_id_is_still_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(201).set_body_string("ok")).mount(&server).await;
    let sent = sinch(config(&server)).send_sms(&sms(Duration::from_secs(600))).await.unwrap();
    assert_eq!(sent.message_id, "unknown", "retrying would send the code twice");
}

#[tokio::test]
async fn oversized_bodies_and_unsafe_plan_ids_are_refused_before_any_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(batch_created()).expect(0).mount(&server).await;
    let long = Sms { body: "x".repeat(2001), ..sms(Duration::from_secs(600)) };
    let error = sinch(config(&server)).send_sms(&long).await.unwrap_err();
    assert_permanent(&error, PermanentKind::Configuration, None);
    let odd_plan = SinchConfig { service_plan_id: "../other".into(), ..config(&server) };
    let error = sinch(odd_plan).send_sms(&sms(Duration::from_secs(600))).await.unwrap_err();
    assert_permanent(&error, PermanentKind::Configuration, None);
}

/// Sinch's "Application" signature, computed here from the documented recipe
/// (independently of the client's code).
fn expected_signature(body: &[u8], content_type: &str, timestamp: &str) -> String {
    let content_md5 = STANDARD.encode(Md5::digest(body));
    let to_sign = format!("POST\n{content_md5}\n{content_type}\nx-timestamp:{timestamp}\n{CALLOUTS}");
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&STANDARD.decode(APP_SECRET).unwrap()).unwrap();
    mac.update(to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn a_call_is_a_signed_tts_callout_reading_the_digits_twice() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(CALLOUTS)).respond_with(call_created()).mount(&server).await;
    let client = sinch(SinchConfig { cli: Some(FROM.into()), ..config(&server) });

    let sent = client.place_call(&call("en")).await.unwrap();
    assert_eq!(sent.message_id, "adf92089-df2a-4f14-a377-1e975f588fe4");

    let request = only_request(&server).await;
    let content_type = request.headers["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let timestamp = request.headers["x-timestamp"].to_str().unwrap().to_owned();
    let sent_at = chrono::DateTime::parse_from_rfc3339(&timestamp).expect("ISO 8601").to_utc();
    assert!((chrono::Utc::now() - sent_at).num_seconds().abs() < 60);
    let authorization = request.headers["authorization"].to_str().unwrap();
    let expected = format!("Application {APP_KEY}:{}", expected_signature(&request.body, &content_type, &timestamp));
    assert_eq!(authorization, expected);

    let body = json_body(&request);
    assert_eq!(body["method"], "ttsCallout");
    let tts = &body["ttsCallout"];
    assert_eq!(tts["destination"], json!({ "type": "number", "endpoint": TO }));
    assert_eq!(tts["cli"], FROM);
    assert_eq!(tts["locale"], "en-US");
    assert_eq!(tts["custom"], "att_2");
    let reading = r#"Your verifyd code is<break time="500ms"/>8, 3, 0, 2, 9, 4, 7"#;
    assert_eq!(tts["prompts"], format!(r#"#ssml[<speak>{reading}<break time="1s"/>{reading}</speak>]"#));
}

#[tokio::test]
async fn call_locales_map_to_sinch_voices_with_en_us_as_fallback() {
    for (tag, expected) in [("en", "en-US"), ("fr", "fr-FR"), ("pt-PT", "pt-PT"), ("ja", "ja-JP"), ("sw", "en-US")] {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(call_created()).mount(&server).await;
        sinch(config(&server)).place_call(&call(tag)).await.unwrap();
        assert_eq!(json_body(&only_request(&server).await)["ttsCallout"]["locale"], expected, "{tag}");
    }
}

#[tokio::test]
async fn callout_error_codes_map_to_retry_or_the_right_refusal() {
    let cases = [
        (400, 40001, "Invalid parameters: destination", PermanentKind::Rejected),
        (400, 40002, "Bad request: TTS callout information missing", PermanentKind::Rejected),
        (400, 40004, "Bad request: Application key is invalid", PermanentKind::Configuration),
        (400, 40005, "Number missing leading plus", PermanentKind::InvalidNumber),
        (401, 40100, "Invalid signature", PermanentKind::Configuration),
        (403, 40300, "Forbidden", PermanentKind::Configuration),
    ];
    for (status, code, message, kind) in cases {
        let error = call_refused(voice_error(status, code, message)).await;
        assert_permanent(&error, kind, Some(code));
    }
    let error = call_refused(voice_error(503, 50300, "Service unavailable").insert_header("Retry-After", "3")).await;
    assert!(error.is_retryable());
    assert_eq!((error.provider_code(), error.retry_after()), (Some(50300), Some(Duration::from_secs(3))));
}

#[tokio::test]
async fn a_callout_error_quoting_the_prompt_never_carries_the_code() {
    let message = "Invalid prompts: #ssml[<speak>8, 3, 0, 2, 9, 4, 7</speak>] for 8302947";
    let error = call_refused(voice_error(400, 40001, message)).await;
    assert_permanent(&error, PermanentKind::Rejected, Some(40001));
}

#[tokio::test]
async fn voice_needs_the_application_and_a_base64_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(call_created()).expect(0).mount(&server).await;

    let sms_only = sinch(SinchConfig { application_key: None, application_secret: None, ..config(&server) });
    assert!(sms_only.supports(Channel::Sms) && !sms_only.supports(Channel::Voice));
    let error = sms_only.place_call(&call("en")).await.unwrap_err();
    assert_permanent(&error, PermanentKind::Configuration, None);

    let bad_secret = sinch(config(&server).with_voice(APP_KEY, "not base64!"));
    assert!(bad_secret.supports(Channel::Voice));
    let error = bad_secret.place_call(&call("en")).await.unwrap_err();
    assert_permanent(&error, PermanentKind::Configuration, None);
    assert_leaks_nothing(&error);
}

#[test]
fn config_reads_timeout_ms_defaults_to_the_us_region_and_hides_secrets() {
    let config: SinchConfig = serde_json::from_value(json!({
        "service_plan_id": PLAN,
        "api_token": TOKEN,
        "application_key": APP_KEY,
        "application_secret": APP_SECRET,
        "timeout_ms": 2500
    }))
    .unwrap();
    assert_eq!(config.timeout, Duration::from_millis(2500));
    assert_eq!(config.base_url, "https://us.sms.api.sinch.com");
    assert_eq!(config.voice_base_url, "https://calling.api.sinch.com");
    assert_eq!((config.from.as_deref(), config.callback_url.as_deref(), config.cli.as_deref()), (None, None, None));
    let debug = format!("{config:?}");
    assert!(!debug.contains(TOKEN) && !debug.contains(APP_SECRET), "{debug}");
    let sinch = sinch(config);
    assert_eq!(sinch.name(), "sinch");
    assert!(sinch.supports(Channel::Voice));
    assert!(!format!("{sinch:?}").contains(TOKEN));
}
