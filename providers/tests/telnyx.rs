//! The Telnyx client against a wiremock server that answers with Telnyx's real
//! request and response shapes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use verifyd_providers::domain::{Channel, Code, Locale, PhoneNumber};
use verifyd_providers::telnyx::{Telnyx, TelnyxConfig, texml};
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const API_KEY: &str = "KEY0184F1A2B3C4D5E6_abcdefghijkl";
const FROM: &str = "+15005550006";
const TO: &str = "+14155552671";
const CODE: &str = "8302947";
const BODY: &str = "Your verifyd code is 8302947. It expires in 10 minutes.";
const CONNECTION: &str = "1494404757140276705";
const MESSAGES: &str = "/v2/messages";
const CALLS: &str = "/v2/texml/calls/1494404757140276705";
const MESSAGE_ID: &str = "40385f64-5717-4562-b3fc-2c963f66afa6";
const CALL_SID: &str = "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ";

fn config(server: &MockServer) -> TelnyxConfig {
    TelnyxConfig {
        base_url: server.uri(),
        timeout: Duration::from_secs(2),
        texml_connection_id: Some(CONNECTION.to_owned()),
        ..TelnyxConfig::new(API_KEY, FROM)
    }
}

fn telnyx(config: TelnyxConfig) -> Telnyx {
    Telnyx::new(config).expect("client builds")
}

fn sms() -> Sms {
    Sms {
        to: PhoneNumber::parse(TO).unwrap(),
        body: BODY.to_owned(),
        validity: Duration::from_secs(600),
        reference: "att_1".to_owned(),
    }
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

/// The answer to `POST /v2/messages`, as Telnyx documents it.
fn message_created() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "data": {
        "record_type": "message",
        "direction": "outbound",
        "id": MESSAGE_ID,
        "type": "SMS",
        "messaging_profile_id": "4000eba1-a0c0-4563-9925-b25e842a7cb6",
        "from": { "phone_number": FROM, "carrier": "TELNYX LLC", "line_type": "VoIP" },
        "to": [{ "phone_number": TO, "status": "queued", "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless" }],
        "text": BODY,
        "media": [],
        "encoding": "GSM-7",
        "parts": 1,
        "tags": [],
        "cost": null,
        "errors": [],
    }}))
}

/// The flat answer of a connection-scoped TeXML call.
fn call_queued() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({ "call_sid": CALL_SID, "from": FROM, "to": TO, "status": "queued" }))
}

fn telnyx_error(status: u16, code: &str, title: &str, detail: &str, pointer: Option<&str>) -> ResponseTemplate {
    let mut error = json!({
        "code": code,
        "title": title,
        "detail": detail,
        "meta": { "url": format!("https://developers.telnyx.com/docs/overview/errors/{code}") },
    });
    if let Some(pointer) = pointer {
        error["source"] = json!({ "pointer": pointer });
    }
    ResponseTemplate::new(status).set_body_json(json!({ "errors": [error] }))
}

fn json_body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.expect("recording is on");
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

async fn sms_error(response: ResponseTemplate) -> ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(response).mount(&server).await;
    let error = telnyx(config(&server)).send_sms(&sms()).await.expect_err("Telnyx refused");
    assert_leaks_nothing(&error);
    error
}

fn assert_leaks_nothing(error: &ProviderError) {
    let shown = format!("{error} {error:?}");
    for leak in [CODE, BODY, API_KEY, "8, 3, 0"] {
        assert!(!shown.contains(leak), "{leak:?} in {shown}");
    }
}

fn assert_permanent(error: &ProviderError, expected: PermanentKind, expected_code: Option<i64>) {
    match error {
        ProviderError::Permanent { provider, kind, provider_code, .. } => {
            assert_eq!(provider, "telnyx");
            assert_eq!(*kind, expected, "{error}");
            assert_eq!(*provider_code, expected_code, "{error}");
        }
        other => panic!("expected a permanent {expected:?}, got {other}"),
    }
}

#[tokio::test]
async fn sms_is_a_json_post_to_v2_messages_with_the_bearer_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(header("authorization", format!("Bearer {API_KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .respond_with(message_created())
        .expect(1)
        .mount(&server)
        .await;

    let sent = telnyx(config(&server)).send_sms(&sms()).await.unwrap();

    assert_eq!(sent, Sent { provider: "telnyx".to_owned(), message_id: MESSAGE_ID.to_owned() });
    let body = json_body(&only_request(&server).await);
    assert_eq!(body, json!({ "from": FROM, "to": TO, "text": BODY }), "no validity field: Telnyx has none");
}

#[tokio::test]
async fn messaging_profile_and_webhook_are_sent_when_configured() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(MESSAGES)).respond_with(message_created()).mount(&server).await;
    let webhook = "https://verifyd.example.com/callbacks/telnyx";
    let telnyx = telnyx(TelnyxConfig {
        messaging_profile_id: Some("4000eba1-a0c0-4563-9925-b25e842a7cb6".to_owned()),
        webhook_url: Some(webhook.to_owned()),
        ..config(&server)
    });

    telnyx.send_sms(&sms()).await.unwrap();

    let body = json_body(&only_request(&server).await);
    assert_eq!(body["messaging_profile_id"], "4000eba1-a0c0-4563-9925-b25e842a7cb6");
    assert_eq!(body["webhook_url"], webhook);
}

#[tokio::test]
async fn call_posts_inline_texml_to_the_texml_connection() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CALLS))
        .and(header("authorization", format!("Bearer {API_KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .respond_with(call_queued())
        .expect(1)
        .mount(&server)
        .await;

    let sent = telnyx(config(&server)).place_call(&call("en")).await.unwrap();

    assert_eq!(sent, Sent { provider: "telnyx".to_owned(), message_id: CALL_SID.to_owned() });
    let body = json_body(&only_request(&server).await);
    let reading = r#"<Say voice="alice" language="en-US">Your verifyd code is</Say><Say voice="alice" language="en-US">8, 3, 0, 2, 9, 4, 7</Say>"#;
    let expected_texml =
        format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{reading}<Pause length="1"/>{reading}</Response>"#);
    assert_eq!(body, json!({ "From": FROM, "To": TO, "Texml": expected_texml }), "TeXML names are case-sensitive");
}

#[test]
fn texml_speaks_the_locale_with_a_us_english_fallback() {
    assert!(texml(&call("ja")).contains(r#"<Say voice="alice" language="ja-JP">"#));
    assert!(texml(&call("pt-PT")).contains(r#"<Say voice="alice" language="pt-PT">"#));
    assert!(texml(&call("sw")).contains(r#"<Say voice="alice" language="en-US">"#));
}

#[tokio::test]
async fn voice_without_a_texml_connection_is_a_configuration_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(call_queued()).expect(0).mount(&server).await;
    let telnyx = telnyx(TelnyxConfig { texml_connection_id: None, ..config(&server) });

    assert!(!telnyx.supports(Channel::Voice));
    let error = telnyx.place_call(&call("en")).await.unwrap_err();
    assert_permanent(&error, PermanentKind::Configuration, None);
    assert!(error.to_string().contains("texml_connection_id"), "{error}");
}

#[tokio::test]
async fn telnyx_error_codes_map_to_permanent_kinds() {
    let cases = [
        (403, "40300", "Blocked due to STOP message", None, PermanentKind::OptedOut),
        (400, "40310", "Invalid 'to' address", Some("/to"), PermanentKind::InvalidNumber),
        (422, "10016", "Phone number must be in +E.164 format", Some("/to"), PermanentKind::InvalidNumber),
        (422, "10016", "Phone number must be in +E.164 format", Some("/from"), PermanentKind::Configuration),
        (400, "40001", "Not routable", None, PermanentKind::ChannelNotSupported),
        (400, "40301", "Unsupported message type for the 'to' address", None, PermanentKind::ChannelNotSupported),
        (400, "40309", "Invalid destination region", None, PermanentKind::RegionNotAllowed),
        (401, "10009", "Authentication failed", None, PermanentKind::Configuration),
        (403, "10010", "Authorization failed", None, PermanentKind::Configuration),
        (400, "40305", "Invalid 'from' address", Some("/from"), PermanentKind::Configuration),
        (400, "40312", "Messaging profile is disabled", None, PermanentKind::Configuration),
        (402, "20100", "Insufficient funds", None, PermanentKind::Configuration),
        (400, "40322", "Blocked due to content", None, PermanentKind::Rejected),
    ];
    for (status, code, title, pointer, kind) in cases {
        let detail = format!("{title} for +14155552671.");
        let error = sms_error(telnyx_error(status, code, title, &detail, pointer)).await;
        assert_permanent(&error, kind, Some(code.parse().unwrap()));
        assert!(!error.to_string().contains("4155552671"), "phone number echoed: {error}");
        let reason = reason(&error);
        let prefix = format!("HTTP {status} ");
        assert!(reason.starts_with(&prefix), "{reason}");
        let quoted = reason.split_once(&format!("Telnyx error {code}: ")).expect("code in reason").1;
        assert!(!quoted.chars().any(|c| c.is_ascii_digit()), "{reason}");
    }
}

#[tokio::test]
async fn throttling_is_retryable_and_honours_retry_after() {
    let response =
        telnyx_error(429, "10011", "Too many requests", "Slow down.", None).insert_header("Retry-After", "3");
    match sms_error(response).await {
        ProviderError::Retryable { retry_after, provider_code, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
            assert_eq!(provider_code, Some(10011));
        }
        other => panic!("expected retryable, got {other}"),
    }
    let error = sms_error(telnyx_error(400, "40318", "Message queue full", "Try later.", None)).await;
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.provider_code(), Some(40318));
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let error = sms_error(telnyx_error(500, "10007", "Unexpected error", "An unexpected error occured.", None)).await;
    assert!(error.is_retryable(), "{error}");
    let html = ResponseTemplate::new(503).set_body_raw("<html>Service Unavailable</html>", "text/html");
    let error = sms_error(html).await;
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.provider_code(), None);
}

#[tokio::test]
async fn unexpected_bodies_do_not_panic() {
    let error = sms_error(ResponseTemplate::new(400).set_body_string("Bad Request")).await;
    assert_permanent(&error, PermanentKind::Rejected, None);
    let error = sms_error(ResponseTemplate::new(422).set_body_json(json!({ "errors": [] }))).await;
    assert_permanent(&error, PermanentKind::Rejected, None);
    let error = sms_error(ResponseTemplate::new(400).set_body_json(json!({ "errors": [{ "code": 40310 }] }))).await;
    assert_permanent(&error, PermanentKind::InvalidNumber, Some(40310));
}

#[tokio::test]
async fn any_2xx_is_accepted_even_without_an_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": { "record_type": "message" } })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CALLS))
        .respond_with(ResponseTemplate::new(200).set_body_string("queued"))
        .mount(&server)
        .await;
    let telnyx = telnyx(config(&server));

    // Retrying would send the code a second time.
    assert_eq!(telnyx.send_sms(&sms()).await.unwrap().message_id, "unknown");
    assert_eq!(telnyx.place_call(&call("en")).await.unwrap().message_id, "unknown");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(message_created().set_delay(Duration::from_millis(1500)))
        .mount(&server)
        .await;
    let slow = telnyx(TelnyxConfig { timeout: Duration::from_millis(200), ..config(&server) });
    let error = slow.send_sms(&sms()).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
    assert_leaks_nothing(&error);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = telnyx(TelnyxConfig { base_url, ..config(&server) });
    let error = unreachable.place_call(&call("en")).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_leaks_nothing(&error);
}

#[tokio::test]
async fn errors_never_echo_the_text_or_the_spoken_code() {
    let detail = format!("Message '{BODY}' was refused");
    let error = sms_error(telnyx_error(400, "40009", "Invalid message body", &detail, Some("/text"))).await;
    assert_permanent(&error, PermanentKind::Rejected, Some(40009));

    let server = MockServer::start().await;
    let detail = "Invalid TeXML: <Say>8, 3, 0, 2, 9, 4, 7</Say>";
    Mock::given(method("POST"))
        .respond_with(telnyx_error(422, "10015", "Bad Request", detail, Some("/Texml")))
        .mount(&server)
        .await;
    let error = telnyx(config(&server)).place_call(&call("en")).await.unwrap_err();
    assert_permanent(&error, PermanentKind::Rejected, Some(10015));
    assert_leaks_nothing(&error);
}

#[tokio::test]
async fn oversized_texts_are_refused_before_any_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(message_created()).expect(0).mount(&server).await;

    let long = Sms { body: "x".repeat(1601), ..sms() };
    let error = telnyx(config(&server)).send_sms(&long).await.unwrap_err();
    assert_permanent(&error, PermanentKind::Configuration, None);
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
    let telnyx = telnyx(TelnyxConfig::new(API_KEY, FROM));
    assert_eq!(telnyx.name(), "telnyx");
    assert!(telnyx.supports(Channel::Sms));
    assert!(!format!("{telnyx:?}").contains(API_KEY));
}
