//! The Plivo client against a wiremock server that answers with Plivo's real
//! request and response shapes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use verifyd_providers::domain::{Channel, Code, Locale, PhoneNumber};
use verifyd_providers::plivo::{Plivo, PlivoConfig, answer_xml};
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};
use wiremock::matchers::{basic_auth, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const AUTH_ID: &str = "MAODUZYTQ0Y2FMYJBLOW";
const TOKEN: &str = "auth-token-42";
const FROM: &str = "+15005550006";
const TO: &str = "+14155552671";
const CODE: &str = "8302947";
const BODY: &str = "Your verifyd code is 8302947. It expires in 10 minutes.";
const MESSAGE: &str = "/v1/Account/MAODUZYTQ0Y2FMYJBLOW/Message/";
const CALL: &str = "/v1/Account/MAODUZYTQ0Y2FMYJBLOW/Call/";
const SCRIPT_URL: &str = "https://verifyd.example.com/v1/voice/script/att_2?exp=1767225600&sig=Zk9vYmFy";
const MESSAGE_UUID: &str = "db3ce55a-7f1d-11e1-8ea7-1231380bc196";
const REQUEST_UUID: &str = "75b26856-8638-11e0-802c-6d99d509954e";

fn config(server: &MockServer) -> PlivoConfig {
    PlivoConfig { base_url: server.uri(), timeout: Duration::from_secs(2), ..PlivoConfig::new(AUTH_ID, TOKEN, FROM) }
}

fn plivo(config: PlivoConfig) -> Plivo {
    Plivo::new(config).expect("client builds")
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
        script_url: Some(SCRIPT_URL.to_owned()),
    }
}

fn message_queued() -> ResponseTemplate {
    ResponseTemplate::new(202).set_body_json(json!({
        "api_id": "db342550-7f1d-11e1-8ea7-1231380bc196",
        "message": "message(s) queued",
        "message_uuid": [MESSAGE_UUID],
    }))
}

fn call_fired() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "api_id": "97ceeb52-58b6-11e1-86da-77300b68f8bb",
        "message": "call fired",
        "request_uuid": REQUEST_UUID,
    }))
}

/// Plivo's error body, as in its response examples.
fn plivo_error(status: u16, error: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "api_id": "97ceeb52-58b6-11e1-86da-77300b68f8bb",
        "error": error,
    }))
}

fn json_body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.expect("recording is on");
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

/// Sends the test SMS to a server that answers `response` for any request.
async fn sms_error(response: ResponseTemplate) -> ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(response).mount(&server).await;
    let error = plivo(config(&server)).send_sms(&sms(Duration::from_secs(600))).await.expect_err("Plivo refused");
    assert_leaks_nothing(&error);
    error
}

fn assert_leaks_nothing(error: &ProviderError) {
    let shown = format!("{error} {error:?}");
    for leak in [CODE, BODY, TOKEN, "sig=", "Zk9vYmFy"] {
        assert!(!shown.contains(leak), "{leak:?} in {shown}");
    }
}

fn kind(error: &ProviderError) -> PermanentKind {
    match error {
        ProviderError::Permanent { provider, kind, provider_code, .. } => {
            assert_eq!(provider, "plivo");
            assert_eq!(*provider_code, None, "Plivo has no numeric codes at request time");
            *kind
        }
        other => panic!("expected a permanent error, got {other}"),
    }
}

#[tokio::test]
async fn sms_is_a_json_post_to_the_account_message_resource_with_basic_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGE))
        .and(basic_auth(AUTH_ID, TOKEN))
        .and(header("content-type", "application/json"))
        .respond_with(message_queued())
        .expect(1)
        .mount(&server)
        .await;

    let sent = plivo(config(&server)).send_sms(&sms(Duration::from_secs(600))).await.unwrap();

    assert_eq!(sent, Sent { provider: "plivo".to_owned(), message_id: MESSAGE_UUID.to_owned() });
    let body = json_body(&only_request(&server).await);
    assert_eq!(
        body,
        json!({ "src": "15005550006", "dst": "14155552671", "text": BODY, "message_expiry": 600 }),
        "numbers without '+', the code's lifetime as message_expiry, no callback"
    );
}

#[tokio::test]
async fn status_callback_goes_to_url_and_hangup_url_as_post() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(MESSAGE)).respond_with(message_queued()).mount(&server).await;
    Mock::given(method("POST")).and(path(CALL)).respond_with(call_fired()).mount(&server).await;
    let callback = "https://verifyd.example.com/callbacks/plivo?x=1";
    let plivo = plivo(PlivoConfig { status_callback: Some(callback.to_owned()), ..config(&server) });

    plivo.send_sms(&sms(Duration::from_secs(600))).await.unwrap();
    plivo.place_call(&call("en")).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    let message = json_body(&requests[0]);
    assert_eq!((message["url"].as_str(), message["method"].as_str()), (Some(callback), Some("POST")));
    let call = json_body(&requests[1]);
    assert_eq!((call["hangup_url"].as_str(), call["hangup_method"].as_str()), (Some(callback), Some("POST")));
}

#[tokio::test]
async fn message_expiry_is_clamped_to_plivo_bounds() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(MESSAGE)).respond_with(message_queued()).mount(&server).await;
    let plivo = plivo(config(&server));

    plivo.send_sms(&sms(Duration::from_secs(2))).await.unwrap();
    plivo.send_sms(&sms(Duration::from_secs(86_400))).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    let expiries: Vec<Value> = requests.iter().map(|r| json_body(r)["message_expiry"].clone()).collect();
    assert_eq!(expiries, [json!(5), json!(10_799)]);
}

#[tokio::test]
async fn call_points_plivo_at_the_signed_script_url() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CALL))
        .and(basic_auth(AUTH_ID, TOKEN))
        .and(header("content-type", "application/json"))
        .respond_with(call_fired())
        .expect(1)
        .mount(&server)
        .await;

    let sent = plivo(config(&server)).place_call(&call("en")).await.unwrap();

    assert_eq!(sent, Sent { provider: "plivo".to_owned(), message_id: REQUEST_UUID.to_owned() });
    let body = json_body(&only_request(&server).await);
    assert_eq!(
        body,
        json!({
            "from": "15005550006",
            "to": "14155552671",
            "answer_url": SCRIPT_URL,
            "answer_method": "POST",
            "ring_timeout": 60,
            "time_limit": 180,
        })
    );
    assert!(!body.to_string().contains(CODE), "the code only travels in the script");
}

#[tokio::test]
async fn a_call_without_a_script_url_needs_a_public_url_and_sends_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(call_fired()).expect(0).mount(&server).await;

    let error = plivo(config(&server)).place_call(&VoiceCall { script_url: None, ..call("en") }).await.unwrap_err();

    assert_eq!(kind(&error), PermanentKind::Configuration);
    assert!(error.to_string().contains("http.public_url"), "{error}");
}

#[test]
fn answer_xml_speaks_the_locale_and_reads_the_digits_twice() {
    let reading = r#"<Speak voice="WOMAN" language="es-ES">Your verifyd code is</Speak><Speak voice="WOMAN" language="es-ES">8, 3, 0, 2, 9, 4, 7</Speak>"#;
    assert_eq!(
        answer_xml(&call("es")),
        format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{reading}<Wait length="1"/>{reading}</Response>"#)
    );
    assert!(answer_xml(&call("pt-PT")).contains(r#"<Speak voice="MAN" language="pt-PT">"#));
    assert!(answer_xml(&call("ja")).contains(r#"<Speak voice="Polly.Mizuki" language="ja-JP">"#));
    assert!(answer_xml(&call("sw")).contains(r#"<Speak voice="WOMAN" language="en-US">"#), "fallback");
}

#[tokio::test]
async fn plivo_errors_map_to_permanent_kinds() {
    let cases = [
        (400, "'14155552671' is not a valid phone number.", PermanentKind::InvalidNumber),
        (400, "invalid dst", PermanentKind::InvalidNumber),
        (400, "'15005550006' is not a valid phone number.", PermanentKind::Configuration),
        (400, "src parameter is missing", PermanentKind::Configuration),
        (400, "Insufficient credit to send message", PermanentKind::Configuration),
        (400, "Destination country is not enabled for this account", PermanentKind::RegionNotAllowed),
        (401, "authentication_failed", PermanentKind::Configuration),
        (402, "insufficient balance", PermanentKind::Configuration),
        (404, "not found", PermanentKind::Configuration),
        (400, "invalid_parameter", PermanentKind::Rejected),
    ];
    for (status, text, expected) in cases {
        let error = sms_error(plivo_error(status, text)).await;
        assert_eq!(kind(&error), expected, "{status} {text}: {error}");
        assert!(!error.to_string().contains("4155552671"), "phone number echoed: {error}");
        assert!(reason(&error).starts_with(&format!("HTTP {status} ")), "{error}");
    }
}

#[tokio::test]
async fn throttling_is_retryable_and_honours_retry_after() {
    let response = plivo_error(429, "rate_limit_exceeded").insert_header("Retry-After", "7");
    match sms_error(response).await {
        ProviderError::Retryable { retry_after, provider_code, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert_eq!(provider_code, None);
        }
        other => panic!("expected retryable, got {other}"),
    }
    let error = sms_error(plivo_error(429, "rate_limit_exceeded")).await;
    assert!(error.is_retryable() && error.retry_after().is_none(), "{error}");
}

#[tokio::test]
async fn server_errors_are_retryable() {
    for status in [500, 503] {
        let error = sms_error(plivo_error(status, "server error")).await;
        assert!(error.is_retryable(), "{error}");
    }
    let html = ResponseTemplate::new(502).set_body_raw("<html><h1>502 Bad Gateway</h1></html>", "text/html");
    let error = sms_error(html).await;
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("non-JSON"), "{error}");
}

#[tokio::test]
async fn unexpected_bodies_do_not_panic() {
    let error = sms_error(ResponseTemplate::new(400).set_body_string("Bad Request")).await;
    assert_eq!(kind(&error), PermanentKind::Rejected);
    let error = sms_error(ResponseTemplate::new(400).set_body_json(json!({"api_id": "x"}))).await;
    assert_eq!(kind(&error), PermanentKind::Rejected);
    let error = sms_error(ResponseTemplate::new(302)).await;
    assert_eq!(kind(&error), PermanentKind::Configuration, "a redirect means base_url is wrong");
}

#[tokio::test]
async fn any_2xx_is_accepted_even_without_an_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGE))
        .respond_with(ResponseTemplate::new(202).set_body_string("queued"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CALL))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"message": "call fired"})))
        .mount(&server)
        .await;
    let plivo = plivo(config(&server));

    // Retrying would send the code a second time.
    let sent = plivo.send_sms(&sms(Duration::from_secs(600))).await.expect("a 202 is accepted");
    assert_eq!(sent.message_id, "unknown");
    let sent = plivo.place_call(&call("en")).await.expect("a 201 is accepted");
    assert_eq!(sent.message_id, "unknown");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(message_queued().set_delay(Duration::from_millis(1500)))
        .mount(&server)
        .await;
    let slow = plivo(PlivoConfig { timeout: Duration::from_millis(200), ..config(&server) });
    let error = slow.send_sms(&sms(Duration::from_secs(600))).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
    assert_leaks_nothing(&error);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = plivo(PlivoConfig { base_url, ..PlivoConfig::new(AUTH_ID, TOKEN, FROM) });
    let error = unreachable.place_call(&call("en")).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_leaks_nothing(&error);
}

#[tokio::test]
async fn errors_never_echo_the_text_the_code_or_the_script_url() {
    let error = sms_error(plivo_error(400, &format!("invalid text '{BODY}'"))).await;
    assert_eq!(kind(&error), PermanentKind::Rejected);

    let server = MockServer::start().await;
    let echo = format!("invalid answer_url {SCRIPT_URL} for code {CODE}");
    Mock::given(method("POST")).respond_with(plivo_error(400, &echo)).mount(&server).await;
    let error = plivo(config(&server)).place_call(&call("en")).await.unwrap_err();
    assert_eq!(kind(&error), PermanentKind::Configuration);
    assert_leaks_nothing(&error);
    assert!(reason(&error).contains("<script url>"), "{error}");
}

#[tokio::test]
async fn oversized_texts_are_refused_before_any_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(message_queued()).expect(0).mount(&server).await;
    let plivo = plivo(config(&server));

    for body in ["x".repeat(1601), "認".repeat(738)] {
        let error = plivo.send_sms(&Sms { body, ..sms(Duration::from_secs(600)) }).await.unwrap_err();
        assert_eq!(kind(&error), PermanentKind::Configuration);
    }
}

#[tokio::test]
async fn texts_at_plivo_limits_are_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(MESSAGE)).respond_with(message_queued()).expect(2).mount(&server).await;
    let plivo = plivo(config(&server));

    for body in ["x".repeat(1600), "認".repeat(737)] {
        plivo.send_sms(&Sms { body, ..sms(Duration::from_secs(600)) }).await.unwrap();
    }
}

/// The reason of `error`, checked to equal what its Display shows.
fn reason(error: &ProviderError) -> &str {
    let reason = match error {
        ProviderError::Retryable { reason, .. } | ProviderError::Permanent { reason, .. } => reason,
    };
    assert!(error.to_string().ends_with(reason.as_str()), "{error}");
    reason
}

#[test]
fn provider_identity() {
    let plivo = plivo(PlivoConfig::new(AUTH_ID, TOKEN, FROM));
    assert_eq!(plivo.name(), "plivo");
    assert!(plivo.supports(Channel::Sms) && plivo.supports(Channel::Voice));
    assert!(!format!("{plivo:?}").contains(TOKEN));
}
