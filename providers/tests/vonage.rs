//! The Vonage SMS client against a wiremock server answering with Vonage's real
//! request and response shapes (HTTP 200 with a per-message `status`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use verifyd_providers::domain::{Channel, PhoneNumber};
use verifyd_providers::vonage::{Vonage, VonageConfig};
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sms};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const BODY: &str = "Your verifyd code is 8302947. It expires in 10 minutes.";

fn vonage(server: &MockServer) -> Vonage {
    let config = VonageConfig {
        base_url: server.uri(),
        timeout: Duration::from_secs(1),
        callback: Some("https://verifyd.example/callbacks/vonage".into()),
        ..VonageConfig::new("abcd1234", "s3cr3t-secret", "verifyd")
    };
    Vonage::new(config).unwrap()
}

fn sms(body: &str) -> Sms {
    Sms {
        to: PhoneNumber::parse("+447911123456").unwrap(),
        body: body.to_owned(),
        validity: Duration::from_secs(540),
        reference: "5c7b0a5e-57e1-4c8e-9f4a-8e1f7d2b9c33-attempt".to_owned(),
    }
}

fn accepted(message_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "message-count": "1",
        "messages": [{
            "to": "447911123456",
            "message-id": message_id,
            "status": "0",
            "remaining-balance": "3.14159265",
            "message-price": "0.03330000",
            "network": "23410"
        }]
    }))
}

fn refused(status: &str, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "message-count": "1",
        "messages": [{ "status": status, "error-text": text }]
    }))
}

fn form(request: &Request) -> HashMap<String, String> {
    let mut url = request.url.clone();
    url.set_query(Some(std::str::from_utf8(&request.body).expect("utf-8 form")));
    url.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn an_sms_is_posted_in_vonages_form_and_its_message_id_returned() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/sms/json")).respond_with(accepted("0A0000000123ABCD1")).mount(&server).await;
    let sent = vonage(&server).send_sms(&sms(BODY)).await.unwrap();
    assert_eq!((sent.provider.as_str(), sent.message_id.as_str()), ("vonage", "0A0000000123ABCD1"));

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].headers["content-type"], "application/x-www-form-urlencoded");
    let f = form(&requests[0]);
    assert_eq!(f["api_key"], "abcd1234");
    assert_eq!(f["api_secret"], "s3cr3t-secret");
    assert_eq!(f["to"], "447911123456", "digits, no +");
    assert_eq!(f["from"], "verifyd");
    assert_eq!(f["text"], BODY);
    assert_eq!(f["ttl"], "540000", "the code's remaining lifetime, in ms");
    assert_eq!(f["client-ref"].chars().count(), 40, "client-ref is cut to 40 characters");
    assert_eq!(f["callback"], "https://verifyd.example/callbacks/vonage");
    assert!(!f.contains_key("type"), "GSM text needs no type");
}

#[tokio::test]
async fn text_outside_gsm_goes_as_unicode() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/sms/json")).respond_with(accepted("id-1")).mount(&server).await;
    vonage(&server).send_sms(&sms("verifyd の認証コードは 8302947 です。")).await.unwrap();
    let f = form(&server.received_requests().await.unwrap()[0]);
    assert_eq!(f["type"], "unicode");
}

#[tokio::test]
async fn each_documented_status_maps_to_retry_or_the_right_refusal() {
    let cases: [(&str, &str, Option<PermanentKind>); 8] = [
        ("1", "Throughput Rate Exceeded - please wait [ 30 ] and retry", None),
        ("5", "Internal Error", None),
        ("10", "Too many existing binds", None),
        ("3", "Invalid to parameter", Some(PermanentKind::InvalidNumber)),
        ("4", "Bad Credentials", Some(PermanentKind::Configuration)),
        ("7", "Number barred.", Some(PermanentKind::OptedOut)),
        ("9", "Quota Exceeded - rejected", Some(PermanentKind::Configuration)),
        ("6", "Invalid Message", Some(PermanentKind::Rejected)),
    ];
    for (status, text, want) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(refused(status, text)).mount(&server).await;
        let error = vonage(&server).send_sms(&sms(BODY)).await.unwrap_err();
        assert_eq!(error.provider_code(), status.parse().ok(), "status {status}");
        match (want, &error) {
            (None, ProviderError::Retryable { .. }) => {}
            (Some(kind), ProviderError::Permanent { kind: got, .. }) => assert_eq!(*got, kind, "status {status}"),
            _ => panic!("status {status}: {error:?}"),
        }
    }
}

#[tokio::test]
async fn an_error_text_quoting_the_message_never_carries_the_code() {
    let server = MockServer::start().await;
    let text = format!("Invalid Message: {BODY}");
    Mock::given(method("POST")).respond_with(refused("6", &text)).mount(&server).await;
    let error = vonage(&server).send_sms(&sms(BODY)).await.unwrap_err();
    assert!(!error.to_string().contains("8302947"), "{error}");
}

#[tokio::test]
async fn server_errors_and_timeouts_are_retryable_and_voice_is_not_served() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).up_to_n_times(1).mount(&server).await;
    Mock::given(method("POST")).respond_with(accepted("late").set_delay(Duration::from_secs(3))).mount(&server).await;
    let client = vonage(&server);
    assert!(client.send_sms(&sms(BODY)).await.unwrap_err().is_retryable(), "503");
    assert!(client.send_sms(&sms(BODY)).await.unwrap_err().is_retryable(), "timeout");
    assert!(client.supports(Channel::Sms) && !client.supports(Channel::Voice));
}
