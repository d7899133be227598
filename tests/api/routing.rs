//! Routing by destination, failover between providers, circuit breakers,
//! delivery receipts and the fallback to voice, through the real path: HTTP in,
//! RabbitMQ, the dispatch consumer, the providers' APIs (wiremock), PostgreSQL.

use std::time::{Duration, Instant};
use verifyd_providers::testkit::Failure;

use serde_json::Value;
use verifyd_providers::testkit::VonageMock;

use crate::helpers::{TWILIO_TOKEN, TestApp, spawn_app_with};

const UK: &str = "+447911123456";
pub(crate) const US: &str = "+14155552671";
pub(crate) const RECEIPT_URL: &str = "https://verifyd.example.com/v1/callbacks/twilio";

/// The test kit's Vonage (its real SMS API shape), accepting every message.
async fn vonage() -> VonageMock {
    VonageMock::start().await
}

/// `(to, text)` of every SMS Vonage received, oldest first.
async fn vonage_texts(vonage: &VonageMock) -> Vec<(String, String)> {
    vonage.sent_sms().await.into_iter().map(|sms| (sms.to, sms.text)).collect()
}

fn vonage_config(vonage: &VonageMock) -> verifyd_providers::vonage::VonageConfig {
    vonage.config("key-1", "secret-1", "Acme")
}

/// An app whose SMS go to Twilio first and Vonage behind it.
async fn twilio_then_vonage(vonage: &VonageMock, tweak: impl FnOnce(&mut verifyd::config::Config)) -> TestApp {
    let config = vonage_config(vonage);
    spawn_app_with(move |c| {
        c.providers.vonage = Some(config);
        c.providers.sms = vec!["twilio".into(), "vonage".into()];
        tweak(c);
    })
    .await
}

/// Waits until `query` (a count) reaches `n`.
pub(crate) async fn wait_for_count(app: &TestApp, query: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query)).fetch_one(&app.pool).await.unwrap();
        if count >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{query}: {count} of {n} within 15 s");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(provider, outcome)` of every attempt of one verification, in order.
async fn attempts(app: &TestApp, verification_id: &str) -> Vec<(String, String)> {
    let id: uuid::Uuid = verification_id.parse().unwrap();
    sqlx::query_as(
        "SELECT coalesce(provider, '-'), outcome FROM delivery_attempts WHERE verification_id = $1
         ORDER BY created_at, outcome DESC",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

async fn twilio_requests(app: &TestApp) -> usize {
    app.twilio.server().received_requests().await.unwrap_or_default().len()
}

fn id(reply: &crate::helpers::Reply) -> String {
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn uk_numbers_go_through_vonage_by_their_route_and_the_others_through_twilio() {
    let vonage = vonage().await;
    let config = vonage_config(&vonage);
    let app = spawn_app_with(move |c| {
        c.providers.vonage = Some(config);
        c.providers.routes = vec![verifyd::config::RouteConfig {
            channel: verifyd_providers::domain::Channel::Sms,
            prefix: "+44".into(),
            providers: vec!["vonage".into(), "twilio".into()],
        }];
    })
    .await;

    let uk = id(&app.create_verification("uma", UK, "sms").await);
    let us = id(&app.create_verification("sam", US, "sms").await);
    let us_code = app.code_sent_to(US).await;
    wait_for_count(&app, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent'", 2).await;

    let texts = vonage_texts(&vonage).await;
    assert_eq!(texts.len(), 1, "only the UK number went to Vonage");
    assert_eq!(texts[0].0, "447911123456");
    assert_eq!(app.twilio.deliveries_to(UK).await, 0, "the UK number never reached Twilio");
    assert_eq!(attempts(&app, &uk).await, [("vonage".to_owned(), "sent".to_owned())]);
    assert_eq!(attempts(&app, &us).await, [("twilio".to_owned(), "sent".to_owned())]);
    let uk_code: String = texts[0].1.chars().filter(char::is_ascii_digit).take(7).collect();
    assert_eq!(app.check(&uk, &uk_code).await.body["status"], "approved");
    assert_eq!(app.check(&us, &us_code).await.body["status"], "approved");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn when_twilio_fails_the_sms_fails_over_to_vonage_and_each_attempt_is_recorded() {
    let vonage = vonage().await;
    let app = twilio_then_vonage(&vonage, |_| {}).await;
    app.twilio.fail_next(1, Failure::code(503, "20500")).await;

    let v = id(&app.create_verification("uma", UK, "sms").await);
    wait_for_count(&app, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent'", 1).await;

    assert_eq!(
        attempts(&app, &v).await,
        [("twilio".to_owned(), "retryable_error".to_owned()), ("vonage".to_owned(), "sent".to_owned())]
    );
    let latencies: Vec<Option<i32>> =
        sqlx::query_scalar("SELECT latency_ms FROM delivery_attempts ORDER BY created_at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(latencies.iter().all(Option::is_some), "every attempt records its latency: {latencies:?}");
    assert_eq!(vonage_texts(&vonage).await.len(), 1, "one SMS reached the person");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn repeated_failures_open_twilio_s_circuit_and_later_messages_skip_it() {
    let vonage = vonage().await;
    let app = twilio_then_vonage(&vonage, |c| {
        c.providers.breaker.failures_to_open = 2;
        c.providers.breaker.open_for = Duration::from_secs(300);
    })
    .await;
    // Twilio is down for good.
    app.twilio.fail_next(1_000, Failure::Unavailable).await;

    for (n, phone) in
        ["+447911123451", "+447911123452", "+447911123453", "+447911123454", "+447911123455"].iter().enumerate()
    {
        id(&app.create_verification(&format!("user-{n}"), phone, "sms").await);
        // One at a time, so the breaker sees each failure before the next message.
        wait_for_count(&app, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent'", n as i64 + 1).await;
    }

    assert_eq!(vonage_texts(&vonage).await.len(), 5, "every message went out through Vonage");
    // Two failures opened the circuit: the three later messages never waited on Twilio.
    assert_eq!(twilio_requests(&app).await, 2, "Twilio was asked twice, then skipped");
    let failovers: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts WHERE provider = 'twilio'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(failovers, 2, "skipped providers leave no attempt row");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_provider_without_permission_for_the_region_hands_the_message_to_the_next_one() {
    let vonage = vonage().await;
    let app = twilio_then_vonage(&vonage, |_| {}).await;
    // 21408: "Permission to send an SMS has not been enabled for the region".
    app.twilio.fail_next(1, Failure::code(400, "21408")).await;

    let v = id(&app.create_verification("uma", UK, "sms").await);
    wait_for_count(&app, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent'", 1).await;
    assert_eq!(
        attempts(&app, &v).await,
        [("twilio".to_owned(), "refused".to_owned()), ("vonage".to_owned(), "sent".to_owned())]
    );
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_invalid_number_is_not_tried_on_another_provider() {
    let vonage = vonage().await;
    let app = twilio_then_vonage(&vonage, |_| {}).await;
    let mut events = app.capture_events("#").await;
    // 21211: "The 'To' number is not a valid phone number."
    app.twilio.fail_next(1, Failure::InvalidNumber).await;

    let v = id(&app.create_verification("uma", UK, "sms").await);
    let failed = events.wait_for_event("verification.delivery_failed", Duration::from_secs(15)).await;
    assert_eq!(failed["verification_id"], v.as_str());
    assert_eq!(attempts(&app, &v).await, [("twilio".to_owned(), "permanent_error".to_owned())]);
    assert!(vonage_texts(&vonage).await.is_empty(), "Vonage was not asked");
}

/// Twilio's status callback for `sid`, signed as Twilio signs it.
pub(crate) async fn post_receipt(app: &TestApp, params: &[(&str, &str)], signature: Option<&str>) -> u16 {
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let signed = verifyd_providers::twilio::request_signature(TWILIO_TOKEN, RECEIPT_URL, &params);
    let response = app
        .client
        .post(app.url("/v1/callbacks/twilio"))
        .header("X-Twilio-Signature", signature.unwrap_or(&signed))
        .form(&params)
        .send()
        .await
        .expect("verifyd answers");
    response.status().as_u16()
}

pub(crate) fn with_receipts(c: &mut verifyd::config::Config, fallback: bool) {
    if let Some(twilio) = c.providers.twilio.as_mut() {
        twilio.status_callback = Some(RECEIPT_URL.to_owned());
    }
    c.providers.fallback_to_voice = fallback;
}

async fn receipt_of(app: &TestApp, verification_id: &str) -> (Option<String>, Option<String>) {
    let id: uuid::Uuid = verification_id.parse().unwrap();
    sqlx::query_as(
        "SELECT receipt_status, receipt_error_code FROM delivery_attempts WHERE verification_id = $1 AND outcome = 'sent'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_signed_twilio_receipt_marks_the_sms_delivered_and_a_forged_one_changes_nothing() {
    let app = spawn_app_with(|c| with_receipts(c, false)).await;
    let v = id(&app.create_verification("uma", US, "sms").await);
    app.code_sent_to(US).await;
    wait_for_count(&app, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent'", 1).await;
    let sms = app.twilio.sent_sms().await;
    assert_eq!(sms[0].status_callback.as_deref(), Some(RECEIPT_URL), "Twilio is told where to report");
    let sid = sms[0].sid.clone();

    let forged = [("MessageSid", sid.as_str()), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")];
    assert_eq!(post_receipt(&app, &forged, Some("bm90IHR3aWxpbw==")).await, 403);
    assert_eq!(receipt_of(&app, &v).await, (None, None), "a forged receipt changes nothing");

    let sent = [("MessageSid", sid.as_str()), ("MessageStatus", "sent"), ("AccountSid", crate::helpers::TWILIO_SID)];
    assert_eq!(post_receipt(&app, &sent, None).await, 204);
    let delivered = [("MessageSid", sid.as_str()), ("MessageStatus", "delivered")];
    assert_eq!(post_receipt(&app, &delivered, None).await, 204);
    // A late "sent" arriving after "delivered" does not move it back.
    assert_eq!(post_receipt(&app, &sent, None).await, 204);
    assert_eq!(receipt_of(&app, &v).await, (Some("delivered".to_owned()), None));
    // Receipts for messages verifyd never sent are acknowledged and ignored.
    let unknown = [("MessageSid", "SM00000000000000000000000000000000"), ("MessageStatus", "delivered")];
    assert_eq!(post_receipt(&app, &unknown, None).await, 204);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_undelivered_sms_is_followed_by_one_voice_call_with_the_same_code() {
    let app = spawn_app_with(|c| with_receipts(c, true)).await;
    let mut events = app.capture_events("#").await;
    let v = id(&app.create_verification("uma", US, "sms").await);
    let code = app.code_sent_to(US).await;
    wait_for_count(&app, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent'", 1).await;
    let sid = app.twilio.sent_sms().await[0].sid.clone();

    let undelivered = [("MessageSid", sid.as_str()), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")];
    assert_eq!(post_receipt(&app, &undelivered, None).await, 204);
    let called = app.next_code_to(US, 1).await;
    assert_eq!(called, code, "the call reads the same code");
    let calls = app.twilio.placed_calls().await;
    assert_eq!(calls.len(), 1);
    assert!(calls[0].twiml.contains("<Say"), "{}", calls[0].twiml);

    let failed = events.wait_for_event("verification.delivery_failed", Duration::from_secs(10)).await;
    assert_eq!(failed["verification_id"], v.as_str());
    assert_eq!(failed["fallback"], "voice", "{failed}");
    assert_eq!(failed["provider_message_id"], sid.as_str());
    assert_eq!(receipt_of(&app, &v).await, (Some("undelivered".to_owned()), Some("30003".to_owned())));

    // The same receipt again (Twilio retries) and a "failed" after it: no second call.
    assert_eq!(post_receipt(&app, &undelivered, None).await, 204);
    let failed_too = [("MessageSid", sid.as_str()), ("MessageStatus", "failed"), ("ErrorCode", "30008")];
    assert_eq!(post_receipt(&app, &failed_too, None).await, 204);
    wait_for_count(&app, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent' AND channel = 'voice'", 1)
        .await;
    app.delivery_settled().await;
    assert_eq!(app.twilio.placed_calls().await.len(), 1, "one fallback call per verification");
    assert_eq!(app.check(&v, &code).await.body["status"], "approved");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_landline_gets_the_code_by_voice_when_fallback_is_on_and_a_failure_when_it_is_off() {
    for fallback in [true, false] {
        let app = spawn_app_with(|c| with_receipts(c, fallback)).await;
        let mut events = app.capture_events("#").await;
        // 21614: "'To' number is not a valid mobile number" (a landline).
        app.twilio.fail_next(1, Failure::code(400, "21614")).await;
        let v = id(&app.create_verification("uma", US, "sms").await);
        let failed: Value = events.wait_for_event("verification.delivery_failed", Duration::from_secs(15)).await;
        if fallback {
            assert_eq!(failed["fallback"], "voice", "{failed}");
            let code = app.code_sent_to(US).await;
            assert_eq!(app.twilio.placed_calls().await.len(), 1);
            assert_eq!(app.check(&v, &code).await.body["status"], "approved");
        } else {
            assert!(failed.get("fallback").is_none(), "{failed}");
            app.delivery_settled().await;
            assert!(app.twilio.placed_calls().await.is_empty());
        }
    }
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn jobs_wait_for_an_open_circuit_without_spending_retries_and_go_out_when_it_closes() {
    let app = spawn_app_with(|c| {
        c.providers.breaker.failures_to_open = 2;
        c.providers.breaker.open_for = Duration::from_secs(2);
        // Two retries only: waiting on the open circuit must not use them up.
        c.amqp.retry_delays_ms = vec![300, 3_000];
    })
    .await;
    app.twilio.fail_next(2, Failure::Unavailable).await;
    let first = id(&app.create_verification("user-0", "+447911123450", "sms").await);
    // Its two tries (first try and one retry) fail and open the circuit.
    wait_for_count(&app, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'retryable_error'", 2).await;
    let mut waiting = Vec::new();
    for n in 1..=5 {
        waiting.push(id(&app.create_verification(&format!("user-{n}"), &format!("+44791112345{n}"), "sms").await));
    }
    // Twilio is healthy again; after 2 s one trial closes the circuit and all go out.
    wait_for_count(&app, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent'", 6).await;
    for v in waiting.iter().chain([&first]) {
        let outcomes: Vec<String> = attempts(&app, v).await.into_iter().map(|(_, o)| o).collect();
        assert_eq!(outcomes.last().map(String::as_str), Some("sent"), "{v}: {outcomes:?}");
    }
}
