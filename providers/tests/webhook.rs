//! The webhook client against a wiremock server: the exact request a receiver
//! gets, the signature it can verify, and how each documented answer maps.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use serde_json::{Value, json};
use verifyd_providers::domain::{Channel, Code, Locale, PhoneNumber};
use verifyd_providers::webhook::{
    DEFAULT_TOLERANCE, SignatureError, Webhook, WebhookConfig, WebhookConfigError, sign, verify_signature,
};
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "whsec-0123456789abcdef0123456789abcdef";
const HOOK: &str = "/hooks/verifyd";
const TO: &str = "+14155552671";
const CODE: &str = "8302947";
const BODY: &str = "Your verifyd code is 8302947. It expires in 10 minutes.";

fn config(server: &MockServer) -> WebhookConfig {
    WebhookConfig { timeout: Duration::from_secs(2), ..WebhookConfig::new(format!("{}{HOOK}", server.uri()), SECRET) }
}

fn webhook(config: WebhookConfig) -> Webhook {
    Webhook::new(config).expect("valid config")
}

fn sms() -> Sms {
    Sms {
        to: PhoneNumber::parse(TO).unwrap(),
        body: BODY.to_owned(),
        validity: Duration::from_secs(600),
        reference: "att_1".to_owned(),
    }
}

fn call() -> VoiceCall {
    VoiceCall {
        to: PhoneNumber::parse(TO).unwrap(),
        intro: " Your verifyd code is ".to_owned(),
        code: Code::parse(CODE).unwrap(),
        repeat: 2,
        locale: Locale::parse("pt-BR").unwrap(),
        reference: "att_2".to_owned(),
        script_url: None,
    }
}

fn ok(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "id": id }))
}

fn webhook_error(status: u16, error: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "error": error, "message": message }))
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.expect("recording is on");
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

fn header_of<'a>(request: &'a Request, name: &str) -> &'a str {
    request.headers.get(name).unwrap_or_else(|| panic!("{name} is sent")).to_str().unwrap()
}

/// Sends the test SMS to a server answering `response` to anything.
async fn sms_error(response: ResponseTemplate) -> ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(response).mount(&server).await;
    let error = webhook(config(&server)).send_sms(&sms()).await.expect_err("the receiver refused");
    assert_leaks_nothing(&error);
    error
}

fn assert_leaks_nothing(error: &ProviderError) {
    let shown = format!("{error} {error:?}");
    for leak in [CODE, BODY, SECRET, "8, 3, 0"] {
        assert!(!shown.contains(leak), "{leak:?} in {shown}");
    }
}

fn assert_permanent(error: &ProviderError, expected: PermanentKind) {
    match error {
        ProviderError::Permanent { provider, kind, provider_code, .. } => {
            assert_eq!(provider, "webhook");
            assert_eq!(*kind, expected, "{error}");
            assert_eq!(*provider_code, None);
        }
        other => panic!("expected a permanent {expected:?}, got {other}"),
    }
}

/// Whole seconds since the epoch, now.
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn sms_is_a_signed_json_post_with_the_documented_fields() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK))
        .and(header("content-type", "application/json"))
        .respond_with(ok("gw-41"))
        .expect(1)
        .mount(&server)
        .await;
    let before = unix_now();

    let sent = webhook(config(&server)).send_sms(&sms()).await.unwrap();

    assert_eq!(sent, Sent { provider: "webhook".to_owned(), message_id: "gw-41".to_owned() });
    let request = only_request(&server).await;
    let timestamp = header_of(&request, "x-verifyd-timestamp");
    let seconds: u64 = timestamp.parse().unwrap();
    assert!((before..=unix_now()).contains(&seconds), "{timestamp}");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let sent_at = chrono::DateTime::from_timestamp(seconds as i64, 0).unwrap();
    assert_eq!(
        body,
        json!({
            "id": "att_1",
            "channel": "sms",
            "to": TO,
            "text": BODY,
            "valid_for_secs": 600,
            "sent_at": sent_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    );
    assert!(body["sent_at"].as_str().unwrap().ends_with('Z'));
    let signature = header_of(&request, "x-verifyd-signature");
    assert_eq!(signature, sign(SECRET.as_bytes(), timestamp, &request.body));
    assert_eq!(signature.len(), "v1=".len() + 64);
    assert!(request.headers.get("authorization").is_none());
}

#[tokio::test]
async fn call_carries_locale_intro_code_spoken_digits_and_repeat() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(HOOK)).respond_with(ok("gw-42")).mount(&server).await;

    let sent = webhook(config(&server)).place_call(&call()).await.unwrap();

    assert_eq!(sent.message_id, "gw-42");
    let request = only_request(&server).await;
    let mut body: Value = serde_json::from_slice(&request.body).unwrap();
    assert!(body["sent_at"].as_str().unwrap().ends_with('Z'));
    body.as_object_mut().unwrap().remove("sent_at");
    assert_eq!(
        body,
        json!({
            "id": "att_2",
            "channel": "voice",
            "to": TO,
            "locale": "pt-BR",
            "intro": "Your verifyd code is",
            "code": CODE,
            "spoken": "8, 3, 0, 2, 9, 4, 7",
            "repeat": 2,
        })
    );
    let timestamp = header_of(&request, "x-verifyd-timestamp");
    let signature = header_of(&request, "x-verifyd-signature");
    verify_signature(SECRET.as_bytes(), timestamp, &request.body, signature, SystemTime::now(), DEFAULT_TOLERANCE)
        .unwrap();
}

#[tokio::test]
async fn a_call_is_read_at_least_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ok("gw-43")).mount(&server).await;

    webhook(config(&server)).place_call(&VoiceCall { repeat: 0, ..call() }).await.unwrap();

    let body: Value = serde_json::from_slice(&only_request(&server).await.body).unwrap();
    assert_eq!(body["repeat"], 1);
}

#[tokio::test]
async fn the_signature_verifies_with_the_secret_only_on_the_body_sent_and_while_fresh() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ok("gw-44")).mount(&server).await;
    webhook(config(&server)).send_sms(&sms()).await.unwrap();
    let request = only_request(&server).await;
    let timestamp = header_of(&request, "x-verifyd-timestamp").to_owned();
    let signature = header_of(&request, "x-verifyd-signature").to_owned();
    let body = request.body.clone();
    let signed_at = UNIX_EPOCH + Duration::from_secs(timestamp.parse().unwrap());
    let verify = |secret: &str, timestamp: &str, body: &[u8], now: SystemTime| {
        verify_signature(secret.as_bytes(), timestamp, body, &signature, now, DEFAULT_TOLERANCE)
    };

    assert_eq!(verify(SECRET, &timestamp, &body, SystemTime::now()), Ok(()));
    assert_eq!(
        verify("whsec-another-secret-of-enough-length", &timestamp, &body, signed_at),
        Err(SignatureError::Mismatch)
    );
    let mut changed = body.clone();
    let at = String::from_utf8_lossy(&changed).find(CODE).unwrap();
    changed[at] = b'9';
    assert_eq!(verify(SECRET, &timestamp, &changed, signed_at), Err(SignatureError::Mismatch));
    let shifted = (timestamp.parse::<u64>().unwrap() - 600).to_string();
    assert_eq!(verify(SECRET, &shifted, &body, signed_at), Err(SignatureError::Mismatch), "the time is signed");

    // Within five minutes either way, then stale.
    assert_eq!(verify(SECRET, &timestamp, &body, signed_at + Duration::from_secs(300)), Ok(()));
    assert_eq!(verify(SECRET, &timestamp, &body, signed_at + Duration::from_secs(301)), Err(SignatureError::Stale));
    assert_eq!(verify(SECRET, &timestamp, &body, signed_at - Duration::from_secs(301)), Err(SignatureError::Stale));
    assert_eq!(
        verify_signature(SECRET.as_bytes(), &timestamp, &body, "v1=00", signed_at, DEFAULT_TOLERANCE),
        Err(SignatureError::NoSignature)
    );
}

#[tokio::test]
async fn the_receivers_id_is_kept_else_our_reference() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(202)).up_to_n_times(1).mount(&server).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).up_to_n_times(1).mount(&server).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "queued"})))
        .mount(&server)
        .await;
    let webhook = webhook(config(&server));

    // Any 2xx is accepted: retrying would send the code twice.
    for _ in 0..3 {
        let sent = webhook.send_sms(&sms()).await.unwrap();
        assert_eq!(sent, Sent { provider: "webhook".to_owned(), message_id: "att_1".to_owned() });
    }
}

#[tokio::test]
async fn documented_error_codes_map_to_permanent_kinds() {
    let cases = [
        (400, "invalid_number", "The number +14155552671 does not exist", PermanentKind::InvalidNumber),
        (422, "region_not_allowed", "US is not enabled", PermanentKind::RegionNotAllowed),
        (400, "opted_out", "The recipient replied STOP", PermanentKind::OptedOut),
        (400, "channel_not_supported", "Landline", PermanentKind::ChannelNotSupported),
        (400, "rejected", "Content filtered", PermanentKind::Rejected),
        (400, "something_new", "Unknown to verifyd", PermanentKind::Rejected),
        (404, "invalid_number", "Not found", PermanentKind::InvalidNumber),
    ];
    for (status, error, message, kind) in cases {
        let refused = sms_error(webhook_error(status, error, message)).await;
        assert_permanent(&refused, kind);
        let reason = refused.to_string();
        assert!(reason.contains(&format!("HTTP {status} ")), "{reason}");
        assert!(reason.contains(&format!("error {error}: ")), "{reason}");
        assert!(!reason.contains("4155552671"), "{reason}");
    }
}

#[tokio::test]
async fn auth_failures_are_configuration_errors_whatever_the_body() {
    for status in [401, 403] {
        let error = sms_error(webhook_error(status, "invalid_number", "Signature does not verify")).await;
        assert_permanent(&error, PermanentKind::Configuration);
        let error = sms_error(ResponseTemplate::new(status)).await;
        assert_permanent(&error, PermanentKind::Configuration);
    }
}

#[tokio::test]
async fn bodies_that_are_not_the_documented_json_are_rejections() {
    let error = sms_error(ResponseTemplate::new(400).set_body_string("Bad Request")).await;
    assert_permanent(&error, PermanentKind::Rejected);
    let error = sms_error(ResponseTemplate::new(400).set_body_json(json!({"error": 21211}))).await;
    assert_permanent(&error, PermanentKind::Rejected);
    let error = sms_error(webhook_error(400, "Weird Code!", "x")).await;
    assert!(error.to_string().contains("unrecognised error code"), "{error}");
    // A redirect is not followed: the URL is wrong.
    let error = sms_error(ResponseTemplate::new(302).insert_header("Location", "https://elsewhere.example")).await;
    assert_permanent(&error, PermanentKind::Configuration);
}

#[tokio::test]
async fn throttling_is_retryable_and_honours_retry_after() {
    let response = webhook_error(429, "rate_limited", "Slow down").insert_header("Retry-After", "7");
    match sms_error(response).await {
        ProviderError::Retryable { retry_after, provider_code, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert_eq!(provider_code, None);
        }
        other => panic!("expected retryable, got {other}"),
    }
    let error = sms_error(ResponseTemplate::new(408)).await;
    assert!(error.is_retryable(), "{error}");
}

#[tokio::test]
async fn server_errors_are_retryable() {
    for status in [500, 502, 503] {
        let error =
            sms_error(webhook_error(status, "rejected", "Upstream down").insert_header("Retry-After", "2")).await;
        assert!(error.is_retryable(), "{error}");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
    }
    let html = ResponseTemplate::new(502).set_body_raw("<html>502 Bad Gateway</html>", "text/html");
    assert!(sms_error(html).await.is_retryable());
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ok("late").set_delay(Duration::from_millis(1500))).mount(&server).await;
    let slow = webhook(WebhookConfig { timeout: Duration::from_millis(200), ..config(&server) });
    let error = slow.send_sms(&sms()).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
    assert_leaks_nothing(&error);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let error = webhook(WebhookConfig::new(url, SECRET)).place_call(&call()).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_leaks_nothing(&error);
}

#[tokio::test]
async fn errors_never_echo_the_text_or_the_code() {
    let echo = format!("Refused '{BODY}'");
    let error = sms_error(webhook_error(400, "rejected", &echo)).await;
    assert_permanent(&error, PermanentKind::Rejected);

    let server = MockServer::start().await;
    let echo = format!("Cannot say {CODE} (8, 3, 0, 2, 9, 4, 7) to {TO}");
    Mock::given(method("POST")).respond_with(webhook_error(400, "invalid_number", &echo)).mount(&server).await;
    let error = webhook(config(&server)).place_call(&call()).await.unwrap_err();
    assert_permanent(&error, PermanentKind::InvalidNumber);
    assert_leaks_nothing(&error);
}

#[tokio::test]
async fn extra_headers_are_sent_but_cannot_replace_verifyds_own() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(header("x-api-key", "gateway-key")).respond_with(ok("gw")).mount(&server).await;
    let headers = BTreeMap::from([("X-Api-Key".to_owned(), SecretString::from("gateway-key"))]);
    webhook(WebhookConfig { headers, ..config(&server) }).send_sms(&sms()).await.unwrap();

    for name in ["X-Verifyd-Signature", "x-verifyd-timestamp", "Content-Type", "Host", "bad header"] {
        let headers = BTreeMap::from([(name.to_owned(), SecretString::from("x"))]);
        let refused = Webhook::new(WebhookConfig { headers, ..config(&server) });
        assert!(matches!(refused, Err(WebhookConfigError::Header(_))), "{name}");
    }
}

#[tokio::test]
async fn channels_limit_what_the_webhook_serves() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ok("gw")).mount(&server).await;
    let sms_only = webhook(WebhookConfig { channels: vec![Channel::Sms], ..config(&server) });

    assert!(sms_only.supports(Channel::Sms) && !sms_only.supports(Channel::Voice));
    let error = sms_only.place_call(&call()).await.unwrap_err();
    assert_permanent(&error, PermanentKind::Configuration);
    assert!(server.received_requests().await.unwrap().is_empty(), "nothing is sent");
    let both = webhook(config(&server));
    assert!(both.supports(Channel::Sms) && both.supports(Channel::Voice));
    assert!(!both.supports(Channel::Email), "the gateway contract has no email message");
    assert_eq!(both.name(), "webhook");
}

#[test]
fn a_short_secret_a_bad_url_or_no_channel_is_refused() {
    let short = Webhook::new(WebhookConfig::new("https://gw.example.com/hook", "x".repeat(31)));
    assert!(matches!(short, Err(WebhookConfigError::SecretTooShort(31))));
    assert!(Webhook::new(WebhookConfig::new("https://gw.example.com/hook", "x".repeat(32))).is_ok());
    for url in ["gw.example.com/hook", "ftp://gw.example.com/hook", "file:///tmp/hook", ""] {
        assert!(matches!(Webhook::new(WebhookConfig::new(url, SECRET)), Err(WebhookConfigError::Url)), "{url}");
    }
    let none = Webhook::new(WebhookConfig { channels: vec![], ..WebhookConfig::new("http://127.0.0.1:1/h", SECRET) });
    assert!(matches!(none, Err(WebhookConfigError::NoChannel)));
    let email = Webhook::new(WebhookConfig {
        channels: vec![Channel::Email],
        ..WebhookConfig::new("http://127.0.0.1:1/h", SECRET)
    });
    assert!(matches!(email, Err(WebhookConfigError::NoChannel)));
}

#[test]
fn config_reads_like_the_other_providers() {
    let config: WebhookConfig = serde_json::from_value(json!({
        "url": "https://gw.example.com/verifyd",
        "secret": SECRET,
        "channels": ["voice"],
        "timeout_ms": 1500
    }))
    .unwrap();
    assert_eq!(config.channels, [Channel::Voice]);
    assert_eq!(config.timeout, Duration::from_millis(1500));
    assert!(config.headers.is_empty());
    assert!(!format!("{config:?}").contains(SECRET));
    let defaults: WebhookConfig =
        serde_json::from_value(json!({"url": "https://gw.example.com/verifyd", "secret": SECRET})).unwrap();
    assert_eq!(defaults.channels, [Channel::Sms, Channel::Voice]);
    assert_eq!(defaults.timeout, Duration::from_secs(10));
}
