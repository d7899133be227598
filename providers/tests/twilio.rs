//! The Twilio client against a wiremock server that answers with Twilio's real
//! request and response shapes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use verifyd_providers::domain::{Code, Locale, PhoneNumber};
use verifyd_providers::twilio::{Twilio, TwilioConfig};
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};
use wiremock::matchers::{basic_auth, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "auth-token-42";
const FROM: &str = "+15005550006";
const TO: &str = "+14155552671";
const CODE: &str = "8302947";
const BODY: &str = "Your verifyd code is 8302947. It expires in 10 minutes.";
const MESSAGES: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";
const CALLS: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json";

fn config(server: &MockServer) -> TwilioConfig {
    TwilioConfig { base_url: server.uri(), timeout: Duration::from_secs(2), ..TwilioConfig::new(SID, TOKEN, FROM) }
}

fn twilio(config: TwilioConfig) -> Twilio {
    Twilio::new(config).expect("client builds")
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

fn message_created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "sid": "SM5f3e1c0b2a4d4e6f8a9b0c1d2e3f4a5b",
        "status": "queued",
        "to": TO,
        "from": FROM,
        "error_code": null,
        "error_message": null,
    }))
}

fn call_created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "sid": "CA5f3e1c0b2a4d4e6f8a9b0c1d2e3f4a5b",
        "status": "queued",
        "to": TO,
        "from": FROM,
    }))
}

fn twilio_error(status: u16, code: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
}

/// The form fields of a request, decoded by the `url` crate (independently of
/// the testkit's decoder).
fn form(request: &Request) -> HashMap<String, String> {
    let mut url = request.url.clone();
    url.set_query(Some(std::str::from_utf8(&request.body).expect("utf-8 form")));
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let fields: HashMap<String, String> = pairs.iter().cloned().collect();
    assert_eq!(fields.len(), pairs.len(), "no field is sent twice");
    fields
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
    let error = twilio(config(&server)).send_sms(&sms(Duration::from_secs(600))).await.expect_err("Twilio refused");
    assert_leaks_nothing(&error);
    error
}

fn assert_leaks_nothing(error: &ProviderError) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(CODE), "{shown}");
    assert!(!shown.contains(BODY), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
}

fn assert_permanent(error: &ProviderError, expected: PermanentKind, expected_code: i64) {
    match error {
        ProviderError::Permanent { provider, kind, provider_code, .. } => {
            assert_eq!(provider, "twilio");
            assert_eq!(*kind, expected, "{error}");
            assert_eq!(*provider_code, Some(expected_code));
        }
        other => panic!("expected a permanent {expected:?}, got {other}"),
    }
}

#[tokio::test]
async fn sms_is_a_form_post_to_the_account_messages_with_basic_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(basic_auth(SID, TOKEN))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(message_created())
        .expect(1)
        .mount(&server)
        .await;

    let sent = twilio(config(&server)).send_sms(&sms(Duration::from_secs(600))).await.unwrap();

    assert_eq!(
        sent,
        Sent { provider: "twilio".to_owned(), message_id: "SM5f3e1c0b2a4d4e6f8a9b0c1d2e3f4a5b".to_owned() }
    );
    let fields = form(&only_request(&server).await);
    assert_eq!(fields["To"], TO);
    assert_eq!(fields["From"], FROM);
    assert_eq!(fields["Body"], BODY);
    assert_eq!(fields["ValidityPeriod"], "600");
    assert!(!fields.contains_key("StatusCallback"));
    assert_eq!(fields.len(), 4);
}

#[tokio::test]
async fn status_callback_is_sent_when_configured() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(MESSAGES)).respond_with(message_created()).mount(&server).await;
    Mock::given(method("POST")).and(path(CALLS)).respond_with(call_created()).mount(&server).await;
    let callback = "https://verifyd.example.com/callbacks/twilio?x=1&y=2";
    let twilio = twilio(TwilioConfig { status_callback: Some(callback.to_owned()), ..config(&server) });

    twilio.send_sms(&sms(Duration::from_secs(600))).await.unwrap();
    twilio.place_call(&call("en")).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(form(request)["StatusCallback"], callback);
    }
}

#[tokio::test]
async fn validity_period_is_clamped_to_twilio_bounds() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(MESSAGES)).respond_with(message_created()).mount(&server).await;
    let twilio = twilio(config(&server));

    twilio.send_sms(&sms(Duration::from_millis(400))).await.unwrap();
    twilio.send_sms(&sms(Duration::from_secs(86_400))).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    let periods: Vec<String> = requests.iter().map(|r| form(r)["ValidityPeriod"].clone()).collect();
    assert_eq!(periods, ["1", "36000"]);
}

#[tokio::test]
async fn call_carries_twiml_that_reads_the_digits_twice() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CALLS))
        .and(basic_auth(SID, TOKEN))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(call_created())
        .expect(1)
        .mount(&server)
        .await;

    let sent = twilio(config(&server)).place_call(&call("en")).await.unwrap();

    assert_eq!(sent.message_id, "CA5f3e1c0b2a4d4e6f8a9b0c1d2e3f4a5b");
    let fields = form(&only_request(&server).await);
    assert_eq!(fields["To"], TO);
    assert_eq!(fields["From"], FROM);
    assert!(!fields.contains_key("Url"), "Twiml is ignored when Url is given");
    assert!(!fields.contains_key("StatusCallback"));
    let reading = r#"<Say language="en-US">Your verifyd code is</Say><Say language="en-US">8, 3, 0, 2, 9, 4, 7</Say>"#;
    assert_eq!(
        fields["Twiml"],
        format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{reading}<Pause length="1"/>{reading}</Response>"#)
    );
    assert!(fields["Twiml"].chars().count() <= 4000);
}

#[tokio::test]
async fn say_language_gets_a_region_for_bare_languages() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(CALLS)).respond_with(call_created()).mount(&server).await;
    let twilio = twilio(config(&server));

    for locale in ["pt", "es-MX", "ja"] {
        twilio.place_call(&call(locale)).await.unwrap();
    }

    let requests = server.received_requests().await.unwrap();
    let languages: Vec<String> = requests
        .iter()
        .map(|r| {
            let twiml = form(r)["Twiml"].clone();
            let start = twiml.find("language=\"").unwrap() + "language=\"".len();
            twiml[start..start + 5].to_owned()
        })
        .collect();
    assert_eq!(languages, ["pt-BR", "es-MX", "ja-JP"]);
}

#[tokio::test]
async fn twilio_error_codes_map_to_permanent_kinds() {
    let cases = [
        (400, 21211, "The 'To' number +14155552671 is not a valid phone number.", PermanentKind::InvalidNumber),
        (
            400,
            21408,
            "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: +14155552671.",
            PermanentKind::RegionNotAllowed,
        ),
        (400, 21610, "Attempt to send to unsubscribed recipient", PermanentKind::OptedOut),
        (400, 21614, "'To' number is not a valid mobile number", PermanentKind::ChannelNotSupported),
        (400, 21635, "'To' number cannot be a landline", PermanentKind::ChannelNotSupported),
        (401, 20003, "Authenticate", PermanentKind::Configuration),
        (
            400,
            21608,
            "The number is unverified. Trial accounts cannot send messages to unverified numbers",
            PermanentKind::Configuration,
        ),
        (
            400,
            21606,
            "The 'From' phone number provided is not a valid message-capable Twilio phone number",
            PermanentKind::Rejected,
        ),
    ];
    for (status, code, message, kind) in cases {
        let error = sms_error(twilio_error(status, code, message)).await;
        assert_permanent(&error, kind, code);
        assert!(!error.to_string().contains("4155552671"), "phone number echoed: {error}");
        let prefix = format!("HTTP {status} ");
        let message = reason(&error).split_once(&format!("Twilio error {code}: ")).unwrap().1;
        assert!(reason(&error).starts_with(&prefix), "{error}");
        assert!(!message.chars().any(|c| c.is_ascii_digit()), "{error}");
    }
}

#[tokio::test]
async fn throttling_is_retryable_and_honours_retry_after() {
    let response = twilio_error(429, 20429, "Too Many Requests").insert_header("Retry-After", "7");
    match sms_error(response).await {
        ProviderError::Retryable { retry_after, provider_code, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert_eq!(provider_code, Some(20429));
        }
        other => panic!("expected retryable, got {other}"),
    }

    let error = sms_error(twilio_error(400, 20429, "Too Many Requests")).await;
    assert!(error.is_retryable(), "{error}");
    let error = sms_error(twilio_error(400, 14107, "SMS send rate limit exceeded")).await;
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.provider_code(), Some(14107));
}

#[tokio::test]
async fn server_errors_are_retryable() {
    for status in [500, 503] {
        let error = sms_error(twilio_error(status, 20500, "An internal server error has occurred")).await;
        assert!(error.is_retryable(), "{error}");
    }
    let html =
        ResponseTemplate::new(502).set_body_raw("<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html");
    let error = sms_error(html).await;
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.provider_code(), None);
}

#[tokio::test]
async fn unexpected_bodies_do_not_panic() {
    let error = sms_error(ResponseTemplate::new(400).set_body_string("Bad Request")).await;
    assert!(matches!(error, ProviderError::Permanent { kind: PermanentKind::Rejected, provider_code: None, .. }));
    let error = sms_error(ResponseTemplate::new(400)).await;
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn any_2xx_is_accepted_even_without_a_sid() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(201).set_body_string("OK"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CALLS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "queued"})))
        .mount(&server)
        .await;
    let twilio = twilio(config(&server));

    // Retrying would send the code a second time.
    let sent = twilio.send_sms(&sms(Duration::from_secs(600))).await.expect("a 201 is accepted");
    assert_eq!(sent, Sent { provider: "twilio".to_owned(), message_id: "unknown".to_owned() });
    let sent = twilio.place_call(&call("en")).await.expect("a 200 is accepted");
    assert_eq!(sent.message_id, "unknown");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(message_created().set_delay(Duration::from_millis(1500)))
        .mount(&server)
        .await;
    let slow = twilio(TwilioConfig { timeout: Duration::from_millis(200), ..config(&server) });
    let error = slow.send_sms(&sms(Duration::from_secs(600))).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
    assert_leaks_nothing(&error);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = twilio(TwilioConfig { base_url, ..TwilioConfig::new(SID, TOKEN, FROM) });
    let error = unreachable.place_call(&call("en")).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_leaks_nothing(&error);
}

#[tokio::test]
async fn errors_never_echo_the_body_or_the_code() {
    let echo = format!("Message '{BODY}' was refused");
    let error = sms_error(twilio_error(400, 30007, &echo)).await;
    assert_permanent(&error, PermanentKind::Rejected, 30007);

    let server = MockServer::start().await;
    let echo = format!("Cannot read code {CODE} to {TO}");
    Mock::given(method("POST")).respond_with(twilio_error(400, 21211, &echo)).mount(&server).await;
    let error = twilio(config(&server)).place_call(&call("en")).await.unwrap_err();
    assert_permanent(&error, PermanentKind::InvalidNumber, 21211);
    assert_leaks_nothing(&error);
}

/// The reason of `error`, checked to equal what its Display shows.
fn reason(error: &ProviderError) -> &str {
    let reason = match error {
        ProviderError::Retryable { reason, .. } | ProviderError::Permanent { reason, .. } => reason,
    };
    assert!(error.to_string().ends_with(reason.as_str()), "{error}");
    reason
}

/// What follows Twilio's own numbers (status and error code) in a reason.
fn quoted_message<'a>(reason: &'a str, prefix: &str) -> &'a str {
    reason.strip_prefix(prefix).unwrap_or_else(|| panic!("{reason:?} starts with {prefix:?}"))
}

#[tokio::test]
async fn twiml_quoted_by_twilio_never_carries_the_spoken_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CALLS))
        .respond_with(twilio_error(400, 12100, "Invalid TwiML: <Say>1, 2, 3, 4, 5, 6, 7</Say>"))
        .mount(&server)
        .await;
    let spoken = VoiceCall { code: Code::parse("1234567").unwrap(), ..call("en") };

    let error = twilio(config(&server)).place_call(&spoken).await.unwrap_err();

    assert_permanent(&error, PermanentKind::Rejected, 12100);
    let shown = format!("{error} {error:?}");
    for leak in ["1234567", "1, 2, 3", "5, 6, 7", "1,2,3"] {
        assert!(!shown.contains(leak), "{leak:?} in {shown}");
    }
    let reason = reason(&error);
    let message = quoted_message(reason, "HTTP 400 Bad Request, Twilio error 12100: ");
    assert_eq!(message, "Invalid TwiML: <Say>*, *, *, *, *, *, *</Say>");
}

#[tokio::test]
async fn twilio_echo_of_the_real_twiml_leaks_no_digit() {
    // Twilio quoting the whole TwiML it was sent, past the truncation point.
    let server = MockServer::start().await;
    let reading = "<Say language=\"en-US\">8, 3, 0, 2, 9, 4, 7</Say>";
    let echo = format!("Invalid TwiML: {}", [reading; 6].join("<Pause length=\"1\"/>"));
    Mock::given(method("POST")).respond_with(twilio_error(400, 12100, &echo)).mount(&server).await;

    let error = twilio(config(&server)).place_call(&call("en")).await.unwrap_err();

    assert_leaks_nothing(&error);
    let message = quoted_message(reason(&error), "HTTP 400 Bad Request, Twilio error 12100: ");
    assert!(!message.chars().any(|c| c.is_ascii_digit()), "{message}");
    assert!(!error.to_string().contains("8, 3, 0"), "{error}");
}

#[tokio::test]
async fn digits_at_the_truncation_boundary_are_masked() {
    // 200 characters are kept: the code straddles the cut.
    for offset in [190, 195, 197, 199, 200, 201] {
        let message = format!("{}{CODE} and the spoken {} too", "é".repeat(offset), "8, 3, 0, 2, 9, 4, 7");
        let error = sms_error(twilio_error(400, 30007, &message)).await;
        assert_permanent(&error, PermanentKind::Rejected, 30007);
        let message = quoted_message(reason(&error), "HTTP 400 Bad Request, Twilio error 30007: ");
        assert!(!message.chars().any(|c| c.is_ascii_digit()), "{offset}: {message}");
        assert!(message.chars().count() <= 201, "{offset}: {message}");
        for prefix in 1..CODE.len() {
            assert!(!message.ends_with(&CODE[..prefix]), "{offset}: {message}");
        }
    }
}

#[tokio::test]
async fn oversized_messages_are_refused_before_any_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(message_created()).expect(0).mount(&server).await;
    let twilio = twilio(config(&server));

    let long_sms = Sms { body: "x".repeat(1601), ..sms(Duration::from_secs(600)) };
    let error = twilio.send_sms(&long_sms).await.unwrap_err();
    assert!(matches!(error, ProviderError::Permanent { kind: PermanentKind::Configuration, .. }));

    let long_call = VoiceCall { intro: "Hello. ".repeat(300), ..call("en") };
    let error = twilio.place_call(&long_call).await.unwrap_err();
    assert!(matches!(error, ProviderError::Permanent { kind: PermanentKind::Configuration, .. }));
    assert_leaks_nothing(&error);
}

#[test]
fn provider_identity() {
    let twilio = twilio(TwilioConfig::new(SID, TOKEN, FROM));
    assert_eq!(twilio.name(), "twilio");
    assert!(twilio.supports(verifyd_providers::domain::Channel::Sms));
    assert!(twilio.supports(verifyd_providers::domain::Channel::Voice));
    assert!(!format!("{twilio:?}").contains(TOKEN));
}
