//! The Sinch and Vonage clients against `testkit::SinchMock` and
//! `testkit::VonageMock`, and the mocks' own promises: they refuse what the
//! real APIs refuse (a bad signature, a foreign JWT) and read codes back.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "testkit")]

use std::time::{Duration, SystemTime};

use verifyd_providers::domain::{Code, Locale, PhoneNumber};
use verifyd_providers::sinch::{Sinch, SinchConfig};
use verifyd_providers::testkit::{
    Failure, SINCH_MOCK_APPLICATION_KEY, SinchMock, VONAGE_MOCK_APPLICATION_ID, VonageMock, vonage_sms_refusal,
};
use verifyd_providers::vonage::{SignatureMethod, Vonage, VonageConfig, parse_dlr, verify_signed_callback};
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sms, VoiceCall};

const TO: &str = "+46701234567";
const UK: &str = "+447911123456";

fn sms(to: &str, code: &str) -> Sms {
    Sms {
        to: PhoneNumber::parse(to).unwrap(),
        body: format!("Your verifyd code is {code}. Valid for 10 minutes."),
        validity: Duration::from_secs(600),
        reference: "att_1".to_owned(),
    }
}

fn call(to: &str, code: &str) -> VoiceCall {
    VoiceCall {
        to: PhoneNumber::parse(to).unwrap(),
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
async fn sinch_mock_captures_batches_and_callouts_and_reads_the_codes_back() {
    let mock = SinchMock::start().await;
    let sinch = Sinch::new(mock.config("plan42", "token", "+46700000000")).unwrap();

    let sent = sinch.send_sms(&sms(TO, "482019")).await.unwrap();
    assert_eq!(sent.message_id.len(), 26, "a batch id: {sent:?}");
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some("482019"));
    let batches = mock.sent_sms().await;
    assert_eq!(batches.len(), 1);
    assert_eq!((batches[0].id.as_str(), batches[0].service_plan_id.as_str()), (sent.message_id.as_str(), "plan42"));
    assert_eq!(batches[0].to, [TO]);
    assert_eq!(batches[0].client_reference.as_deref(), Some("att_1"));
    assert!(batches[0].expire_at.is_some());

    let placed = sinch.place_call(&call(TO, "0571")).await.unwrap();
    let calls = mock.placed_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].call_id, placed.message_id);
    assert_eq!(
        (calls[0].auth_scheme.as_str(), calls[0].application_key.as_str()),
        ("Application", SINCH_MOCK_APPLICATION_KEY)
    );
    assert_eq!(calls[0].locale.as_deref(), Some("en-US"));
    assert_eq!(mock.wait_for_code(TO, Duration::from_millis(100)).await.as_deref(), Some("0571"));
    assert_eq!(mock.deliveries_to(TO).await, 2);
}

#[tokio::test]
async fn sinch_mock_injects_documented_failures_then_recovers() {
    let mock = SinchMock::start().await;
    let sinch = Sinch::new(mock.config("plan42", "token", "+46700000000")).unwrap();

    mock.fail_next(1, Failure::code(403, "illegal_number_type")).await;
    let error = sinch.send_sms(&sms(TO, "1111")).await.unwrap_err();
    assert_eq!(kind(&error), Some(PermanentKind::ChannelNotSupported));
    mock.fail_next(1, Failure::Unavailable).await;
    assert!(sinch.send_sms(&sms(TO, "2222")).await.unwrap_err().is_retryable());
    mock.fail_next(1, Failure::code(400, "40005")).await;
    assert_eq!(kind(&sinch.place_call(&call(TO, "3333")).await.unwrap_err()), Some(PermanentKind::InvalidNumber));
    // Counted together: the next SMS and the next call.
    mock.fail_next(2, Failure::Throttled { retry_after: Duration::from_secs(2) }).await;
    assert_eq!(sinch.send_sms(&sms(TO, "4444")).await.unwrap_err().retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(sinch.place_call(&call(TO, "5555")).await.unwrap_err().retry_after(), Some(Duration::from_secs(2)));

    sinch.send_sms(&sms(TO, "6666")).await.unwrap();
    assert_eq!(mock.sent_sms().await.len(), 1, "refused messages are not captured");
    let seen = mock.deliveries_to(TO).await;
    sinch.send_sms(&sms(TO, "7777")).await.unwrap();
    assert_eq!(mock.wait_for_next_code(TO, seen, Duration::from_millis(200)).await.as_deref(), Some("7777"));
}

#[tokio::test]
async fn sinch_mock_refuses_a_callout_signed_with_another_secret() {
    let mock = SinchMock::start().await;
    let forged = SinchConfig {
        application_secret: Some("b3RoZXItc2VjcmV0".to_owned().into()),
        ..mock.config("plan42", "token", "+46700000000")
    };
    let error = Sinch::new(forged).unwrap().place_call(&call(TO, "0571")).await.unwrap_err();
    assert_eq!(kind(&error), Some(PermanentKind::Configuration), "{error}");
    assert_eq!(error.provider_code(), Some(40100));
    assert!(mock.placed_calls().await.is_empty());
}

#[tokio::test]
async fn vonage_mock_captures_sms_and_calls_and_reads_the_codes_back() {
    let mock = VonageMock::start().await;
    let vonage = Vonage::new(mock.config("abcd1234", "s3cr3t", "447700900001")).unwrap();

    let sent = vonage.send_sms(&sms(UK, "902114")).await.unwrap();
    let captured = mock.sent_sms().await;
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0].message_id, sent.message_id);
    assert_eq!((captured[0].to.as_str(), captured[0].api_key.as_str()), ("447911123456", "abcd1234"));
    assert_eq!((captured[0].ttl, captured[0].client_ref.as_deref()), (Some(600_000), Some("att_1")));
    assert_eq!(mock.code_sent_to(UK).await.as_deref(), Some("902114"));

    let placed = vonage.place_call(&call(UK, "3141")).await.unwrap();
    let calls = mock.placed_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].uuid, placed.message_id);
    assert_eq!(calls[0].application_id, VONAGE_MOCK_APPLICATION_ID);
    assert!(calls[0].token_lifetime.is_some_and(|secs| secs <= 300), "{:?}", calls[0].token_lifetime);
    assert_eq!((calls[0].language.as_deref(), calls[0].talk_loop), (Some("en-US"), Some(2)));
    assert_eq!(mock.wait_for_code(UK, Duration::from_millis(100)).await.as_deref(), Some("3141"));
}

#[tokio::test]
async fn vonage_mock_refuses_a_token_signed_with_another_key() {
    let mock = VonageMock::start().await;
    // A valid RSA key, but not the application's: the mock answers 401.
    let unrelated = include_str!("fixtures/TEST-ONLY-unrelated-private-key.pem");
    let forged = mock.config("k", "s", "447700900001").with_voice(VONAGE_MOCK_APPLICATION_ID, unrelated);
    let error = Vonage::new(forged).unwrap().place_call(&call(UK, "3141")).await.unwrap_err();
    assert_eq!(kind(&error), Some(PermanentKind::Configuration));
    assert!(error.to_string().contains("401"), "refused by the mock, not locally: {error}");

    let foreign_app = VonageConfig {
        application_id: Some("11111111-2222-4333-8444-555555555555".into()),
        ..mock.config("k", "s", "447700900001")
    };
    let error = Vonage::new(foreign_app).unwrap().place_call(&call(UK, "3141")).await.unwrap_err();
    assert_eq!(kind(&error), Some(PermanentKind::Configuration), "401 from the mock: {error}");
    assert!(mock.placed_calls().await.is_empty());
}

#[tokio::test]
async fn vonage_mock_injects_failures_then_recovers() {
    let mock = VonageMock::start().await;
    let vonage = Vonage::new(mock.config("abcd1234", "s3cr3t", "447700900001")).unwrap();

    mock.fail_next(1, Failure::InvalidNumber).await;
    assert_eq!(kind(&vonage.send_sms(&sms(UK, "1111")).await.unwrap_err()), Some(PermanentKind::InvalidNumber));
    mock.fail_next(1, Failure::code(200, "1")).await;
    assert!(vonage.send_sms(&sms(UK, "2222")).await.unwrap_err().is_retryable());
    mock.fail_next(1, Failure::code(402, "low-balance")).await;
    assert_eq!(kind(&vonage.place_call(&call(UK, "3333")).await.unwrap_err()), Some(PermanentKind::Configuration));
    mock.fail_next(2, Failure::Throttled { retry_after: Duration::from_secs(5) }).await;
    assert_eq!(vonage.place_call(&call(UK, "4444")).await.unwrap_err().retry_after(), Some(Duration::from_secs(5)));
    assert!(vonage.send_sms(&sms(UK, "5555")).await.unwrap_err().is_retryable());

    vonage.send_sms(&sms(UK, "6666")).await.unwrap();
    assert_eq!(mock.code_sent_to(UK).await.as_deref(), Some("6666"));
    assert_eq!(vonage_sms_refusal("7", "Number barred.")["messages"][0]["status"], "7");
}

#[tokio::test]
async fn vonage_mock_signs_receipts_that_verify_and_parse() {
    let mock = VonageMock::start().await;
    let vonage = Vonage::new(mock.config("abcd1234", "s3cr3t", "verifyd")).unwrap();
    vonage.send_sms(&sms(UK, "902114")).await.unwrap();
    let sent = mock.sent_sms().await.remove(0);

    let now = SystemTime::now();
    let secret = "receipt-signing-secret";
    let receipt = mock.signed_receipt(&sent, "delivered", "0", secret, SignatureMethod::HmacSha512, now);
    let verdict =
        verify_signed_callback(&receipt, secret.as_bytes(), SignatureMethod::HmacSha512, now, Duration::from_secs(300));
    assert_eq!(verdict, Ok(()));
    let dlr = parse_dlr(&receipt).unwrap();
    assert_eq!((dlr.message_id.as_str(), dlr.to.as_deref()), (sent.message_id.as_str(), Some("447911123456")));
    assert_eq!(dlr.client_ref.as_deref(), Some("att_1"));
}
