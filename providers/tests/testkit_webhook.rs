//! The webhook client against `testkit::WebhookReceiverMock`, and the mock's
//! own promises: it refuses what a careful receiver refuses.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "testkit")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use verifyd_providers::domain::{Code, Locale, PhoneNumber};
use verifyd_providers::testkit::{Failure, WEBHOOK_PATH, WebhookReceiverMock, webhook_error_body};
use verifyd_providers::webhook::{Webhook, WebhookConfig, sign};
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sms, VoiceCall};

const SECRET: &str = "whsec-0123456789abcdef0123456789abcdef";
const TO: &str = "+14155552671";

fn sms(code: &str) -> Sms {
    Sms {
        to: PhoneNumber::parse(TO).unwrap(),
        body: format!("Your verifyd code is {code}. Valid for 10 minutes."),
        validity: Duration::from_secs(600),
        reference: "att_1".to_owned(),
    }
}

fn call(code: &str) -> VoiceCall {
    VoiceCall {
        to: PhoneNumber::parse(TO).unwrap(),
        intro: "Your code is".to_owned(),
        code: Code::parse(code).unwrap(),
        repeat: 2,
        locale: Locale::parse("en").unwrap(),
        reference: "att_2".to_owned(),
        script_url: None,
    }
}

fn kind(error: &ProviderError) -> Option<PermanentKind> {
    match error {
        ProviderError::Permanent { kind, .. } => Some(*kind),
        ProviderError::Retryable { .. } => None,
    }
}

#[tokio::test]
async fn mock_receives_signed_messages_and_reads_the_code_back() {
    let mock = WebhookReceiverMock::start(SECRET).await;
    let webhook = Webhook::new(mock.config()).unwrap();

    let sent = webhook.send_sms(&sms("4820193")).await.unwrap();
    assert!(sent.message_id.starts_with("msg_") && sent.message_id.len() == 28, "{sent:?}");
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some("4820193"));
    assert_eq!(mock.code_sent_to("+1 415 555 2671").await.as_deref(), Some("4820193"));
    assert_eq!(mock.code_sent_to("+14155550000").await, None);
    let captured = mock.sent_sms().await;
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0].message_id, sent.message_id);
    assert_eq!((captured[0].id.as_str(), captured[0].to.as_str()), ("att_1", TO));
    assert_eq!(captured[0].valid_for_secs, 600);

    let seen = mock.deliveries_to(TO).await;
    webhook.place_call(&call("0571")).await.unwrap();
    assert_eq!(mock.wait_for_next_code(TO, seen, Duration::from_secs(1)).await.as_deref(), Some("0571"));
    let calls = mock.placed_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].spoken.as_str(), calls[0].repeat, calls[0].locale.as_str()), ("0, 5, 7, 1", 2, "en"));
    assert_eq!(mock.wait_for_code(TO, Duration::from_millis(100)).await.as_deref(), Some("0571"));
}

#[tokio::test]
async fn injected_failures_map_like_documented_then_stop() {
    let mock = WebhookReceiverMock::start(SECRET).await;
    let webhook = Webhook::new(mock.config()).unwrap();

    mock.fail_next(1, Failure::code(503, "rejected")).await;
    assert!(webhook.send_sms(&sms("1111")).await.unwrap_err().is_retryable());
    mock.fail_next(1, Failure::InvalidNumber).await;
    assert_eq!(kind(&webhook.send_sms(&sms("2222")).await.unwrap_err()), Some(PermanentKind::InvalidNumber));
    mock.fail_next(2, Failure::code(400, "opted_out")).await;
    for _ in 0..2 {
        assert_eq!(kind(&webhook.send_sms(&sms("3333")).await.unwrap_err()), Some(PermanentKind::OptedOut));
    }
    mock.fail_next(1, Failure::Throttled { retry_after: Duration::from_secs(3) }).await;
    assert_eq!(webhook.send_sms(&sms("4444")).await.unwrap_err().retry_after(), Some(Duration::from_secs(3)));

    webhook.send_sms(&sms("5555")).await.unwrap();
    assert_eq!(mock.sent_sms().await.len(), 1, "refused messages are not captured");
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some("5555"));
}

#[tokio::test]
async fn a_client_with_another_secret_is_refused_as_a_configuration_error() {
    let mock = WebhookReceiverMock::start(SECRET).await;
    let wrong = WebhookConfig::new(mock.url(), "whsec-not-the-receivers-secret-at-all!");
    let error = Webhook::new(wrong).unwrap().send_sms(&sms("4820193")).await.unwrap_err();
    assert_eq!(kind(&error), Some(PermanentKind::Configuration), "{error}");
    assert_eq!(mock.deliveries_to(TO).await, 0);
}

#[tokio::test]
async fn forged_stale_or_unsigned_requests_get_401_with_the_documented_body() {
    let mock = WebhookReceiverMock::start(SECRET).await;
    let client = reqwest::Client::new();
    let url = format!("{}{WEBHOOK_PATH}", mock.uri());
    let body = serde_json::to_vec(&json!({
        "id": "att_9", "channel": "sms", "to": TO, "text": "Your code is 1234",
        "valid_for_secs": 600, "sent_at": "2026-03-02T10:00:00Z",
    }))
    .unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let post = |timestamp: u64, signature: String, body: Vec<u8>| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-verifyd-timestamp", timestamp.to_string())
            .header("x-verifyd-signature", signature)
            .body(body)
            .send()
    };

    let fresh = sign(SECRET.as_bytes(), &now.to_string(), &body);
    let stale_at = now - 3600;
    let stale = sign(SECRET.as_bytes(), &stale_at.to_string(), &body);
    let forged = sign(b"whsec-an-attacker-guess-of-the-secret", &now.to_string(), &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    for (timestamp, signature, body) in
        [(stale_at, stale, body.clone()), (now, forged, body.clone()), (now, fresh.clone(), tampered)]
    {
        let response = post(timestamp, signature, body).await.unwrap();
        assert_eq!(response.status(), 401);
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"], "unauthorized");
        assert!(error["message"].is_string());
    }
    let unsigned = client.post(&url).header("content-type", "application/json").body(body.clone()).send();
    assert_eq!(unsigned.await.unwrap().status(), 401);
    assert_eq!(mock.deliveries_to(TO).await, 0);

    let accepted = post(now, fresh, body).await.unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some("1234"));
}

#[tokio::test]
async fn the_mock_checks_the_payload_like_a_receiver_would() {
    let mock = WebhookReceiverMock::start(SECRET).await;
    let client = reqwest::Client::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
    let cases = [
        (
            json!({"id": "a", "channel": "sms", "to": "4155552671", "text": "1234", "valid_for_secs": 1,
                "sent_at": "2026-03-02T10:00:00Z"}),
            "invalid_number",
        ),
        (
            json!({"id": "a", "channel": "sms", "to": TO, "valid_for_secs": 1, "sent_at": "2026-03-02T10:00:00Z"}),
            "rejected",
        ),
        (
            json!({"id": "a", "channel": "voice", "to": TO, "locale": "en", "intro": "", "code": "1234",
                "spoken": "1234", "repeat": 1, "sent_at": "2026-03-02T10:00:00Z"}),
            "rejected",
        ),
        (json!({"id": "a", "channel": "fax", "to": TO, "sent_at": "2026-03-02T10:00:00Z"}), "rejected"),
    ];
    for (payload, expected) in cases {
        let body = serde_json::to_vec(&payload).unwrap();
        let response = client
            .post(mock.url())
            .header("content-type", "application/json")
            .header("x-verifyd-timestamp", &now)
            .header("x-verifyd-signature", sign(SECRET.as_bytes(), &now, &body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{payload}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"], expected, "{payload}");
    }
    assert_eq!(webhook_error_body("opted_out", "STOP"), json!({"error": "opted_out", "message": "STOP"}));
    assert!(mock.sent_sms().await.is_empty() && mock.placed_calls().await.is_empty());
}
