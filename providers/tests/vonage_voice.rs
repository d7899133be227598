//! The Vonage Voice API client against a wiremock server answering with
//! Vonage's real shapes: `POST /v1/calls` with an RS256 application JWT and an
//! NCCO `talk` action, 201 `{"uuid",…}`, problem documents on errors.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use verifyd_providers::domain::{Channel, Code, Locale, PhoneNumber};
use verifyd_providers::vonage::{SignatureMethod, Vonage, VonageConfig};
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sms, VoiceCall};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A key pair made for these tests only (see fixtures/README.md).
const PRIVATE_KEY: &str = include_str!("fixtures/TEST-ONLY-vonage-application-private-key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/TEST-ONLY-vonage-application-public-key.pem");
const APPLICATION_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const FROM: &str = "447700900001";
const TO: &str = "+447911123456";
const CODE: &str = "4096";

fn config(server: &MockServer) -> VonageConfig {
    VonageConfig {
        base_url: server.uri(),
        voice_base_url: server.uri(),
        event_url: Some("https://verifyd.example/events/vonage".into()),
        timeout: Duration::from_secs(2),
        ..VonageConfig::new("abcd1234", "s3cr3t-secret", FROM).with_voice(APPLICATION_ID, PRIVATE_KEY)
    }
}

fn vonage(config: VonageConfig) -> Vonage {
    Vonage::new(config).expect("client builds")
}

fn call(locale: &str) -> VoiceCall {
    VoiceCall {
        to: PhoneNumber::parse(TO).unwrap(),
        intro: "Your verifyd code is".to_owned(),
        code: Code::parse(CODE).unwrap(),
        repeat: 2,
        locale: Locale::parse(locale).unwrap(),
        reference: "att_7".to_owned(),
        script_url: None,
    }
}

fn call_created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "uuid": "63f61863-4a51-4f6b-86e1-46edebcf9356",
        "status": "started",
        "direction": "outbound",
        "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22"
    }))
}

/// Vonage's problem document.
fn problem(status: u16, kind: &str, title: &str, detail: &str, invalid: Value) -> ResponseTemplate {
    let mut body = json!({
        "type": format!("https://developer.nexmo.com/api-errors#{kind}"),
        "title": title,
        "detail": detail,
        "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf"
    });
    if !invalid.is_null() {
        body["invalid_parameters"] = invalid;
    }
    ResponseTemplate::new(status).set_body_json(body)
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.expect("recording is on");
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

#[derive(Deserialize)]
struct Claims {
    application_id: String,
    iat: u64,
    jti: String,
    exp: u64,
}

/// The claims of the request's bearer token, which must verify with the
/// application's public key.
fn verified_claims(request: &Request) -> Claims {
    let authorization = request.headers["authorization"].to_str().unwrap();
    let token = authorization.strip_prefix("Bearer ").expect("a bearer token");
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    let key = DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims = HashSet::from(["exp".to_owned(), "iat".to_owned()]);
    jsonwebtoken::decode::<Claims>(token, &key, &validation).expect("the JWT verifies").claims
}

fn assert_leaks_nothing(error: &ProviderError) {
    let shown = format!("{error} {error:?}");
    for secret in [CODE, "4, 0, 9, 6", "s3cr3t-secret", "PRIVATE KEY"] {
        assert!(!shown.contains(secret), "{secret:?} in {shown}");
    }
}

async fn call_refused(response: ResponseTemplate) -> ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(response).mount(&server).await;
    let error = vonage(config(&server)).place_call(&call("en")).await.expect_err("Vonage refused");
    assert_leaks_nothing(&error);
    error
}

fn assert_permanent(error: &ProviderError, expected: PermanentKind) {
    match error {
        ProviderError::Permanent { provider, kind, .. } => {
            assert_eq!(provider, "vonage");
            assert_eq!(*kind, expected, "{error}");
        }
        other => panic!("expected a permanent {expected:?}, got {other}"),
    }
}

#[tokio::test]
async fn a_call_carries_a_signed_application_jwt_and_a_talk_ncco() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/v1/calls")).respond_with(call_created()).mount(&server).await;

    let sent = vonage(config(&server)).place_call(&call("en")).await.unwrap();
    assert_eq!((sent.provider.as_str(), sent.message_id.as_str()), ("vonage", "63f61863-4a51-4f6b-86e1-46edebcf9356"));

    let request = only_request(&server).await;
    let claims = verified_claims(&request);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(claims.application_id, APPLICATION_ID);
    assert!(claims.iat.abs_diff(now) < 60, "iat is now");
    assert!(claims.exp > claims.iat && claims.exp - claims.iat <= 300, "a short-lived token");
    assert!(!claims.jti.is_empty());

    assert_eq!(request.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["to"], json!([{ "type": "phone", "number": "447911123456" }]), "digits, no +");
    assert_eq!(body["from"], json!({ "type": "phone", "number": FROM }));
    assert_eq!(body["event_url"], json!(["https://verifyd.example/events/vonage"]));
    assert_eq!(
        body["ncco"],
        json!([{
            "action": "talk",
            "text": "<speak>Your verifyd code is<break time=\"500ms\"/>4, 0, 9, 6<break time=\"1s\"/></speak>",
            "language": "en-US",
            "loop": 2
        }])
    );
}

#[tokio::test]
async fn every_call_gets_a_fresh_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(call_created()).mount(&server).await;
    let client = vonage(config(&server));
    client.place_call(&call("en")).await.unwrap();
    client.place_call(&call("en")).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_ne!(verified_claims(&requests[0]).jti, verified_claims(&requests[1]).jti);
}

#[tokio::test]
async fn talk_language_follows_the_locale_with_en_us_as_fallback() {
    for (tag, expected) in [
        ("es", "es-ES"),
        ("fr", "fr-FR"),
        ("de", "de-DE"),
        ("pt", "pt-BR"),
        ("ja", "ja-JP"),
        ("en-GB", "en-GB"),
        ("sw", "en-US"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(call_created()).mount(&server).await;
        vonage(config(&server)).place_call(&call(tag)).await.unwrap();
        let body: Value = serde_json::from_slice(&only_request(&server).await.body).unwrap();
        assert_eq!(body["ncco"][0]["language"], expected, "{tag}");
    }
}

#[tokio::test]
async fn voice_from_is_the_caller_and_an_alphanumeric_sender_cannot_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(call_created()).mount(&server).await;
    let alphanumeric = VonageConfig { from: "verifyd".into(), ..config(&server) };
    let error = vonage(alphanumeric.clone()).place_call(&call("en")).await.unwrap_err();
    assert_permanent(&error, PermanentKind::Configuration);
    assert!(server.received_requests().await.unwrap().is_empty());

    let with_voice_from = VonageConfig { voice_from: Some("+447700900002".into()), ..alphanumeric };
    vonage(with_voice_from).place_call(&call("en")).await.unwrap();
    let body: Value = serde_json::from_slice(&only_request(&server).await.body).unwrap();
    assert_eq!(body["from"]["number"], "447700900002");
}

#[tokio::test]
async fn voice_is_served_only_with_an_application_and_a_usable_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(call_created()).expect(0).mount(&server).await;
    let sms_only = vonage(VonageConfig { application_id: None, ..config(&server) });
    assert!(sms_only.supports(Channel::Sms) && !sms_only.supports(Channel::Voice));
    assert_permanent(&sms_only.place_call(&call("en")).await.unwrap_err(), PermanentKind::Configuration);

    let bad_key = vonage(config(&server).with_voice(APPLICATION_ID, "-----BEGIN PRIVATE KEY-----\nnope\n"));
    let error = bad_key.place_call(&call("en")).await.unwrap_err();
    assert_permanent(&error, PermanentKind::Configuration);
    assert_leaks_nothing(&error);
}

#[tokio::test]
async fn call_errors_map_to_retry_or_the_right_refusal() {
    let invalid_to = json!([{ "name": "to[0].number", "reason": "Invalid number" }]);
    let error = call_refused(problem(400, "bad-request", "Bad Request", "Validation failed", invalid_to)).await;
    assert_permanent(&error, PermanentKind::InvalidNumber);
    assert!(error.to_string().contains("to[0].number"), "{error}");

    let invalid_ncco = json!([{ "name": "ncco[0].language", "reason": "Unsupported" }]);
    let error = call_refused(problem(400, "bad-request", "Bad Request", "Validation failed", invalid_ncco)).await;
    assert_permanent(&error, PermanentKind::Rejected);

    let unauthorized =
        problem(401, "unauthorized", "Unauthorized", "You did not provide correct credentials.", Value::Null);
    assert_permanent(&call_refused(unauthorized).await, PermanentKind::Configuration);
    let low_balance = problem(402, "low-balance", "Low balance", "Your account balance is low.", Value::Null);
    assert_permanent(&call_refused(low_balance).await, PermanentKind::Configuration);
    let unprovisioned = problem(403, "unprovisioned", "Authorisation error", "Not provisioned", Value::Null);
    assert_permanent(&call_refused(unprovisioned).await, PermanentKind::Configuration);

    let throttled =
        problem(429, "throttled", "Throttled", "Rate limit hit", Value::Null).insert_header("Retry-After", "4");
    let error = call_refused(throttled).await;
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(4)));
    for status in [500, 503] {
        assert!(call_refused(ResponseTemplate::new(status)).await.is_retryable(), "{status}");
    }
}

#[tokio::test]
async fn a_detail_quoting_the_ncco_never_carries_the_code() {
    let detail = "Invalid text: <speak>Your verifyd code is 4, 0, 9, 6 (4096)</speak>";
    let error = call_refused(problem(400, "bad-request", "Bad Request", detail, Value::Null)).await;
    assert_permanent(&error, PermanentKind::Rejected);
}

#[tokio::test]
async fn a_slow_voice_api_times_out_as_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(call_created().set_delay(Duration::from_millis(1500)))
        .mount(&server)
        .await;
    let slow = vonage(VonageConfig { timeout: Duration::from_millis(200), ..config(&server) });
    let error = slow.place_call(&call("en")).await.unwrap_err();
    assert!(error.is_retryable() && error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn a_throttled_sms_honours_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "9"))
        .mount(&server)
        .await;
    let sms = Sms {
        to: PhoneNumber::parse(TO).unwrap(),
        body: "Your code is 4096".to_owned(),
        validity: Duration::from_secs(600),
        reference: "att_8".to_owned(),
    };
    let error = vonage(config(&server)).send_sms(&sms).await.unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(9)));
}

#[test]
fn config_defaults_and_debug_hide_the_key_and_the_signature_secret() {
    let config: VonageConfig = serde_json::from_value(json!({
        "api_key": "abcd1234",
        "api_secret": "s3cr3t-secret",
        "from": FROM,
        "application_id": APPLICATION_ID,
        "private_key": PRIVATE_KEY,
        "signature_secret": "sig-secret-value",
        "signature_method": "md5hash"
    }))
    .unwrap();
    assert_eq!(config.voice_base_url, "https://api.nexmo.com");
    assert_eq!(config.signature_method, SignatureMethod::Md5Hash);
    assert!(config.event_url.is_none() && config.voice_from.is_none());
    let debug = format!("{:?}", vonage(config));
    for secret in ["s3cr3t-secret", "PRIVATE KEY", "sig-secret-value"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }

    let minimal: VonageConfig =
        serde_json::from_value(json!({ "api_key": "k", "api_secret": "s", "from": "verifyd" })).unwrap();
    assert_eq!(minimal.signature_method, SignatureMethod::HmacSha256, "sha256 unless told otherwise");
    assert!(!vonage(minimal).supports(Channel::Voice));
}
