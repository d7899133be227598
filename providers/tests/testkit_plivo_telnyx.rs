//! The Plivo and Telnyx clients against `testkit::PlivoMock` and
//! `testkit::TelnyxMock`, and the mocks' own promises.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "testkit")]

use std::time::Duration;

use serde_json::{Value, json};
use verifyd_providers::domain::{Code, Locale, PhoneNumber};
use verifyd_providers::plivo::Plivo;
use verifyd_providers::telnyx::Telnyx;
use verifyd_providers::testkit::{Failure, PlivoMock, TelnyxMock, plivo_error_body, telnyx_error_body};
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sms, VoiceCall};

const AUTH_ID: &str = "MAODUZYTQ0Y2FMYJBLOW";
const API_KEY: &str = "KEY0184F1A2B3C4D5E6";
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

fn permanent_kind(error: &ProviderError) -> PermanentKind {
    match error {
        ProviderError::Permanent { kind, .. } => *kind,
        other => panic!("expected a permanent error, got {other}"),
    }
}

#[tokio::test]
async fn plivo_mock_captures_sms_and_reads_the_code_back() {
    let mock = PlivoMock::start().await;
    let plivo = Plivo::new(mock.config(AUTH_ID, "token", FROM)).unwrap();

    let sent = plivo.send_sms(&sms("4820193")).await.unwrap();

    assert_eq!(sent.message_id.len(), 36, "a UUID: {sent:?}");
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some("4820193"));
    assert_eq!(mock.code_sent_to("+1 415 555 2671").await.as_deref(), Some("4820193"));
    let captured = mock.sent_sms().await;
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0].message_uuid, sent.message_id);
    assert_eq!((captured[0].src.as_str(), captured[0].dst.as_str()), ("15005550006", "14155552671"));
    assert_eq!(captured[0].auth_id, AUTH_ID);
    assert_eq!(captured[0].message_expiry, Some(600));
    assert_eq!(captured[0].url, None);
}

#[tokio::test]
async fn plivo_mock_answers_calls_by_fetching_the_script_url() {
    let mock = PlivoMock::start().await;
    let plivo = Plivo::new(mock.config(AUTH_ID, "token", FROM)).unwrap();
    let mut voice = call("0571");
    voice.script_url = Some(mock.host_script(&voice).await);

    let placed = plivo.place_call(&voice).await.unwrap();

    assert_eq!(mock.wait_for_code(TO, Duration::from_secs(2)).await.as_deref(), Some("0571"));
    let calls = mock.placed_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].request_uuid, placed.message_id);
    assert_eq!(Some(calls[0].answer_url.as_str()), voice.script_url.as_deref());
    assert_eq!(calls[0].answer_method, "POST");
    assert_eq!(calls[0].script.as_deref(), Some(verifyd_providers::plivo::answer_xml(&voice).as_str()));
    let fetched = mock.server().received_requests().await.unwrap();
    let script_fetch =
        fetched.iter().find(|r| r.url.path().starts_with("/verifyd-scripts/")).expect("answer_url fetched");
    let form = String::from_utf8_lossy(&script_fetch.body);
    assert!(form.contains("CallUUID=") && form.contains("Direction=outbound"), "{form}");
}

#[tokio::test]
async fn plivo_mock_waits_for_a_call_placed_concurrently() {
    let mock = PlivoMock::start().await;
    let plivo = Plivo::new(mock.config(AUTH_ID, "token", FROM)).unwrap();
    let mut voice = call("918273");
    voice.script_url = Some(mock.host_script(&voice).await);

    let placer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        plivo.place_call(&voice).await
    });
    assert_eq!(mock.wait_for_code(TO, Duration::from_secs(5)).await.as_deref(), Some("918273"));
    placer.await.unwrap().unwrap();
    assert_eq!(mock.wait_for_next_code(TO, 1, Duration::from_millis(60)).await, None);
}

#[tokio::test]
async fn plivo_mock_injects_failures_then_recovers() {
    let mock = PlivoMock::start().await;
    let plivo = Plivo::new(mock.config(AUTH_ID, "token", FROM)).unwrap();

    mock.fail_next(1, Failure::Unavailable).await;
    assert!(plivo.send_sms(&sms("1111")).await.unwrap_err().is_retryable());
    mock.fail_next(1, Failure::code(400, "'14155552671' is not a valid phone number.")).await;
    let error = plivo.send_sms(&sms("2222")).await.unwrap_err();
    assert_eq!(permanent_kind(&error), PermanentKind::InvalidNumber);
    mock.fail_next(1, Failure::Throttled { retry_after: Duration::from_secs(3) }).await;
    assert_eq!(plivo.send_sms(&sms("3333")).await.unwrap_err().retry_after(), Some(Duration::from_secs(3)));

    plivo.send_sms(&sms("4444")).await.unwrap();
    assert_eq!(mock.sent_sms().await.len(), 1, "refused messages are not captured");
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some("4444"));
}

#[tokio::test]
async fn plivo_mock_refuses_what_plivo_refuses() {
    let mock = PlivoMock::start().await;
    let client = reqwest::Client::new();
    let message = format!("{}/v1/Account/{AUTH_ID}/Message/", mock.uri());
    let valid = json!({ "src": "15005550006", "dst": "14155552671", "text": "hi" });

    let response = client.post(&message).json(&valid).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "authentication_failed");
    assert!(body["api_id"].is_string());
    let response = client.post(&message).basic_auth("MAOTHERACCOUNT000000", Some("t")).json(&valid).send().await;
    assert_eq!(response.unwrap().status(), 401, "the Basic user must own the path's account");

    let refusals = [
        json!({ "src": "15005550006", "text": "hi" }),
        json!({ "src": "15005550006", "dst": "1111", "text": "hi" }),
        json!({ "dst": "14155552671", "text": "hi" }),
        json!({ "src": "15005550006", "powerpack_uuid": "p", "dst": "14155552671", "text": "hi" }),
        json!({ "src": "15005550006", "dst": "14155552671" }),
        json!({ "src": "15005550006", "dst": "14155552671", "text": "hi", "message_expiry": 3 }),
        json!({ "src": "15005550006", "dst": "14155552671", "text": "hi", "url": "ftp://x" }),
        json!({ "src": "14155552671", "dst": "14155552671", "text": "hi" }),
    ];
    for body in refusals {
        let response = client.post(&message).basic_auth(AUTH_ID, Some("t")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert!(answer["error"].is_string(), "{answer}");
    }
    let invalid = client
        .post(&message)
        .basic_auth(AUTH_ID, Some("t"))
        .json(&json!({ "src": "15005550006", "dst": "1111", "text": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.json::<Value>().await.unwrap()["error"], "'1111' is not a valid phone number.");

    let calls = format!("{}/v1/Account/{AUTH_ID}/Call/", mock.uri());
    let no_answer_url = json!({ "from": "15005550006", "to": "14155552671" });
    let response = client.post(&calls).basic_auth(AUTH_ID, Some("t")).json(&no_answer_url).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "answer_url parameter is missing");
    assert!(mock.sent_sms().await.is_empty() && mock.placed_calls().await.is_empty());
    assert_eq!(plivo_error_body("x")["error"], "x");
}

#[tokio::test]
async fn telnyx_mock_captures_sms_and_calls_and_reads_the_code_back() {
    let mock = TelnyxMock::start().await;
    let telnyx = Telnyx::new(mock.config(API_KEY, FROM)).unwrap();

    let sent = telnyx.send_sms(&sms("4820193")).await.unwrap();
    assert_eq!(sent.message_id.len(), 36, "a UUID: {sent:?}");
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some("4820193"));
    let captured = mock.sent_sms().await;
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0].id, sent.message_id);
    assert_eq!((captured[0].from.as_str(), captured[0].to.as_str(), captured[0].api_key.as_str()), (FROM, TO, API_KEY));

    let placed = telnyx.place_call(&call("0571")).await.unwrap();
    assert!(placed.message_id.starts_with("v3:"), "{placed:?}");
    assert_eq!(mock.wait_for_next_code(TO, 1, Duration::from_millis(200)).await.as_deref(), Some("0571"));
    let calls = mock.placed_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].connection_id, "texml-connection");
    assert_eq!(calls[0].texml, verifyd_providers::telnyx::texml(&call("0571")));
    assert_eq!(mock.deliveries_to(TO).await, 2);
}

#[tokio::test]
async fn telnyx_mock_injects_failures_then_recovers() {
    let mock = TelnyxMock::start().await;
    let telnyx = Telnyx::new(mock.config(API_KEY, FROM)).unwrap();

    mock.fail_next(1, Failure::code(500, "10007")).await;
    assert!(telnyx.send_sms(&sms("1111")).await.unwrap_err().is_retryable());
    mock.fail_next(1, Failure::code(403, "40300")).await;
    let error = telnyx.send_sms(&sms("2222")).await.unwrap_err();
    assert_eq!(permanent_kind(&error), PermanentKind::OptedOut);
    assert_eq!(error.provider_code(), Some(40300));
    mock.fail_next(1, Failure::Throttled { retry_after: Duration::from_secs(3) }).await;
    assert_eq!(telnyx.place_call(&call("3333")).await.unwrap_err().retry_after(), Some(Duration::from_secs(3)));

    telnyx.send_sms(&sms("4444")).await.unwrap();
    assert_eq!(mock.sent_sms().await.len(), 1, "refused messages are not captured");
    assert!(mock.placed_calls().await.is_empty());
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some("4444"));
}

#[tokio::test]
async fn telnyx_mock_refuses_what_telnyx_refuses() {
    let mock = TelnyxMock::start().await;
    let client = reqwest::Client::new();
    let messages = format!("{}/v2/messages", mock.uri());

    let response = client.post(&messages).json(&json!({ "from": FROM, "to": TO, "text": "hi" })).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap()["errors"][0]["code"], "10009");

    let refusals = [
        (json!({ "from": FROM, "text": "hi" }), 422, "10004"),
        (json!({ "from": FROM, "to": "14155552671", "text": "hi" }), 422, "10016"),
        (json!({ "to": TO, "text": "hi" }), 422, "10004"),
        (json!({ "from": FROM, "to": TO }), 400, "40316"),
        (json!({ "from": FROM, "to": TO, "text": "x".repeat(1601) }), 400, "40302"),
        (json!({ "from": FROM, "to": TO, "text": "hi", "webhook_url": "not a url" }), 422, "10003"),
    ];
    for (body, status, code) in refusals {
        let response = client.post(&messages).bearer_auth(API_KEY).json(&body).send().await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        assert_eq!(response.json::<Value>().await.unwrap()["errors"][0]["code"], code, "{body}");
    }

    let calls = format!("{}/v2/texml/calls/1494404757140276705", mock.uri());
    let lower_case = json!({ "from": FROM, "to": TO, "Texml": "<Response/>" });
    let response = client.post(&calls).bearer_auth(API_KEY).json(&lower_case).send().await.unwrap();
    assert_eq!(response.status(), 422, "TeXML parameter names are case-sensitive");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["source"]["pointer"], "/From");
    assert!(mock.sent_sms().await.is_empty() && mock.placed_calls().await.is_empty());
    assert_eq!(telnyx_error_body("40300", "t", "d", None)["errors"][0]["code"], "40300");
}
