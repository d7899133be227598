//! The Twilio client against `testkit::TwilioMock`, and the mock's own promises.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "testkit")]

use std::time::Duration;

use verifyd_providers::domain::{Code, Locale, PhoneNumber};
use verifyd_providers::testkit::{Channel, Failure, TwilioMock, twilio_error_body};
use verifyd_providers::twilio::Twilio;
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sms, VoiceCall};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const FROM: &str = "+15005550006";
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

#[tokio::test]
async fn mock_captures_what_twilio_would_deliver_and_reads_the_code_back() {
    let mock = TwilioMock::start().await;
    let twilio = Twilio::new(mock.config(SID, "token", FROM)).unwrap();

    let sent = twilio.send_sms(&sms("4820193")).await.unwrap();
    assert!(sent.message_id.starts_with("SM") && sent.message_id.len() == 34, "{sent:?}");
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some("4820193"));
    assert_eq!(mock.code_sent_to("+1 415 555 2671").await.as_deref(), Some("4820193"));
    assert_eq!(mock.code_sent_to("+14155550000").await, None);

    let captured = mock.sent_sms().await;
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0].sid, sent.message_id);
    assert_eq!((captured[0].to.as_str(), captured[0].from.as_str()), (TO, FROM));
    assert_eq!(captured[0].auth_user, SID);
    assert_eq!(captured[0].account_sid, SID);
    assert_eq!(captured[0].validity_period, Some(600));
    assert_eq!(captured[0].status_callback, None);

    let placed = twilio.place_call(&call("0571")).await.unwrap();
    assert!(placed.message_id.starts_with("CA"));
    assert_eq!(mock.placed_calls().await.len(), 1);
    assert_eq!(mock.wait_for_code(TO, Duration::from_millis(100)).await.as_deref(), Some("0571"));

    // Failures injected for the next request only, then back to normal.
    mock.fail_next(1, Failure::Unavailable).await;
    assert!(twilio.send_sms(&sms("1111")).await.unwrap_err().is_retryable());
    mock.fail_next(1, Failure::InvalidNumber).await;
    let error = twilio.send_sms(&sms("2222")).await.unwrap_err();
    assert!(matches!(error, ProviderError::Permanent { kind: PermanentKind::InvalidNumber, .. }));
    mock.fail_next(1, Failure::Throttled { retry_after: Duration::from_secs(3) }).await;
    match twilio.send_sms(&sms("3333")).await.unwrap_err() {
        ProviderError::Retryable { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3)))
        }
        other => panic!("expected retryable, got {other}"),
    }
    twilio.send_sms(&sms("4444")).await.unwrap();
    assert_eq!(mock.sent_sms().await.len(), 2, "refused messages are not captured");
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some("4444"));

    // The same, whatever the provider: every message with its code.
    let sent = mock.sent().await;
    assert_eq!(
        sent.iter().map(|m| (m.channel, m.code())).collect::<Vec<_>>(),
        [
            (Channel::Sms, Some("4820193".to_owned())),
            (Channel::Voice, Some("0571".to_owned())),
            (Channel::Sms, Some("4444".to_owned())),
        ]
    );
    assert!(sent.iter().all(|m| m.provider == "twilio" && m.is_to(TO)));
    mock.clear().await;
    assert!(mock.sent().await.is_empty());
}

#[tokio::test]
async fn wait_for_code_sees_a_code_sent_concurrently_and_gives_up_in_time() {
    let mock = TwilioMock::start().await;
    let twilio = Twilio::new(mock.config(SID, "token", FROM)).unwrap();

    let started = std::time::Instant::now();
    assert_eq!(mock.wait_for_code(TO, Duration::from_millis(60)).await, None);
    assert!(started.elapsed() >= Duration::from_millis(60));

    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        twilio.send_sms(&sms("918273")).await
    });
    let code = mock.wait_for_code(TO, Duration::from_secs(5)).await;
    assert_eq!(code.as_deref(), Some("918273"));
    sender.await.unwrap().unwrap();
}

#[tokio::test]
async fn mock_refuses_what_twilio_refuses() {
    let mock = TwilioMock::start().await;
    let client = reqwest::Client::new();
    let url = format!("{}/2010-04-01/Accounts/{SID}/Messages.json", mock.uri());

    let response = client.post(&url).form(&[("To", TO), ("From", FROM), ("Body", "hi")]).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), twilio_error_body(20003, "Authenticate", 401));

    let refusals = [
        (vec![("From", FROM), ("Body", "hi")], 21604),
        (vec![("To", "4155552671"), ("From", FROM), ("Body", "hi")], 21211),
        (vec![("To", TO), ("Body", "hi")], 21603),
        (vec![("To", TO), ("From", FROM)], 21602),
        (vec![("To", TO), ("From", FROM), ("Body", "hi"), ("ValidityPeriod", "36001")], 21624),
    ];
    for (form, code) in refusals {
        let response = client.post(&url).basic_auth(SID, Some("token")).form(&form).send().await.unwrap();
        assert_eq!(response.status(), 400);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{form:?}");
    }

    let calls = format!("{}/2010-04-01/Accounts/{SID}/Calls.json", mock.uri());
    let response =
        client.post(&calls).basic_auth(SID, Some("token")).form(&[("To", TO), ("From", FROM)]).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(mock.sent_sms().await.is_empty() && mock.placed_calls().await.is_empty());
}

#[tokio::test]
async fn the_control_api_lists_codes_forgets_them_and_arms_failures() {
    let mock = TwilioMock::start().await;
    mock.mount_control_api().await;
    let twilio = Twilio::new(mock.config(SID, "token", FROM)).unwrap();
    let http = reqwest::Client::new();
    let messages = format!("{}/_mock/messages", mock.uri());

    twilio.send_sms(&sms("5550123")).await.unwrap();
    twilio.place_call(&call("0571")).await.unwrap();
    let listed: serde_json::Value = http.get(&messages).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["provider"], "twilio");
    let codes: Vec<&str> = listed["messages"].as_array().unwrap().iter().map(|m| m["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["5550123", "0571"]);
    assert_eq!(listed["messages"][1]["channel"], "voice");
    let filtered: serde_json::Value =
        http.get(format!("{messages}?to=%2B14155550000")).send().await.unwrap().json().await.unwrap();
    assert_eq!(filtered["messages"], serde_json::json!([]));

    assert_eq!(http.delete(&messages).send().await.unwrap().status(), 204);
    assert!(mock.sent().await.is_empty());

    let arm = serde_json::json!({"count": 2, "failure": "code", "status": 400, "code": 21610});
    let armed = http.post(format!("{}/_mock/fail-next", mock.uri())).json(&arm).send().await.unwrap();
    assert_eq!(armed.status(), 204);
    for _ in 0..2 {
        let error = twilio.send_sms(&sms("1111")).await.unwrap_err();
        assert!(matches!(error, ProviderError::Permanent { kind: PermanentKind::OptedOut, .. }), "{error}");
    }
    twilio.send_sms(&sms("2222")).await.unwrap();
    let throttle = serde_json::json!({"failure": "throttled", "retry_after_secs": 7});
    http.post(format!("{}/_mock/fail-next", mock.uri())).json(&throttle).send().await.unwrap();
    assert_eq!(twilio.send_sms(&sms("3333")).await.unwrap_err().retry_after(), Some(Duration::from_secs(7)));

    let refused = http.post(format!("{}/_mock/fail-next", mock.uri())).body("{").send().await.unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn an_outage_and_latency_apply_to_every_send_for_a_while() {
    let mock = TwilioMock::start().await;
    let twilio = Twilio::new(mock.config(SID, "token", FROM)).unwrap();
    // A first request sets the client up (TLS roots, connection): not timed.
    twilio.send_sms(&sms("1000")).await.unwrap();
    mock.fail_for(Duration::from_millis(800), Failure::Unavailable);
    assert!(twilio.send_sms(&sms("1111")).await.unwrap_err().is_retryable());
    assert!(twilio.place_call(&call("2222")).await.unwrap_err().is_retryable());
    tokio::time::sleep(Duration::from_millis(850)).await;
    mock.set_latency(Duration::from_millis(200));
    let started = std::time::Instant::now();
    twilio.send_sms(&sms("3333")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(mock.deliveries_to(TO).await, 2);
}
