//! What a backend reads about a code's delivery: `delivery` on the
//! verification (queued → sent → delivered, or how it failed), the attempts
//! behind it, and a verification that ends `failed` when its latest send
//! failed for good. The real path: HTTP in, RabbitMQ, dispatch, Twilio's
//! mock, its signed receipts, PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use verifyd_providers::testkit::Failure;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::routing::{US, post_receipt, wait_for_count, with_receipts};

/// Reads the verification until `done` holds of it (15 s at most).
async fn verification_until(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let read = app.get(&format!("/v1/verifications/{id}")).await;
        assert_eq!(read.status, 200, "{:?}", read.body);
        if done(&read.body) {
            return read.body;
        }
        assert!(Instant::now() < deadline, "not reached within 15 s: {}", read.body);
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state(v: &Value) -> &str {
    v["delivery"]["state"].as_str().unwrap_or("-")
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_backend_follows_its_code_from_queued_to_delivered_and_reads_every_attempt() {
    let app = spawn_app_with(|c| {
        c.amqp.dispatch_consumers = 0;
        with_receipts(c, false)
    })
    .await;
    let created = app.create_verification("uma", US, "sms").await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["delivery"], json!({ "state": "queued", "channel": "sms" }), "nobody took the job yet");
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(state(&app.get(&format!("/v1/verifications/{id}")).await.body), "queued");
    let listed = app.get(&format!("/v1/verifications/{id}/attempts")).await;
    assert_eq!((listed.status, &listed.body), (200, &json!({ "attempts": [] })));

    let mut app = app;
    app.start_worker_process().await;
    app.code_sent_to(US).await;
    let sent = verification_until(&app, &id, |v| state(v) == "sent").await;
    assert_eq!(sent["delivery"]["provider"], "twilio");
    assert_eq!(sent["status"], "pending");
    assert!(sent["delivery"]["updated_at"].is_string(), "{sent}");

    let sid = app.twilio.sent_sms().await[0].sid.clone();
    let delivered = [("MessageSid", sid.as_str()), ("MessageStatus", "delivered")];
    assert_eq!(post_receipt(&app, &delivered, None).await, 204);
    let read = verification_until(&app, &id, |v| state(v) == "delivered").await;
    assert_eq!(read["delivery"]["provider"], "twilio");
    assert!(read["delivery"].get("reason").is_none(), "{read}");

    let attempts = app.get(&format!("/v1/verifications/{id}/attempts")).await.body;
    let attempts = attempts["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let a = &attempts[0];
    assert_eq!((a["provider"].as_str(), a["outcome"].as_str()), (Some("twilio"), Some("sent")));
    assert_eq!((a["channel"].as_str(), a["receipt_status"].as_str()), (Some("sms"), Some("delivered")));
    assert!(a.get("error").is_none() && a.get("to").is_none(), "no free text, no number: {a}");

    // Another tenant's key reads neither.
    let other = app.other_tenant("other").await;
    assert_eq!(app.get_as(&other, &format!("/v1/verifications/{id}/attempts")).await.status, 404);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_invalid_number_ends_the_verification_failed_and_its_code_is_refused() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.verification.delivery_failed", app.tenant)).await;
    // 21211: "The 'To' number is not a valid phone number."
    app.twilio.fail_next(1, Failure::InvalidNumber).await;
    let id = app.create_verification("uma", "+14155552677", "sms").await.body["id"].as_str().unwrap().to_owned();

    let failed = events.wait_for_event("verification.delivery_failed", Duration::from_secs(10)).await;
    assert_eq!(failed["verification_id"], id.as_str());
    assert_eq!(failed["status"], "failed", "the event says the verification ended: {failed}");
    let read = verification_until(&app, &id, |v| v["status"] == "failed").await;
    assert_eq!(
        read["delivery"],
        json!({ "state": "failed", "channel": "sms", "provider": "twilio", "reason": "invalid_number",
                "updated_at": read["delivery"]["updated_at"] })
    );
    assert!(read["completed_at"].is_string(), "{read}");

    // It ended: no code is taken, no resend goes out, it cannot be canceled.
    for (path, body) in [("check", json!({ "code": "1234567" })), ("resend", json!({})), ("cancel", json!({}))] {
        let refused = app.post_json(&format!("/v1/verifications/{id}/{path}"), &body).await;
        assert_eq!(refused.status, 409, "{path}: {:?}", refused.body);
        assert_eq!(refused.body["error"], "verification_not_pending");
        assert_eq!(refused.body["verification_status"], "failed", "{path}");
    }
    let attempts = app.get(&format!("/v1/verifications/{id}/attempts")).await.body;
    assert_eq!(attempts["attempts"][0]["outcome"], "permanent_error");
    assert_eq!(attempts["attempts"][0]["reason"], "invalid_number");
    assert!(app.twilio.sent_sms().await.is_empty());
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_undelivered_sms_ends_the_verification_unless_a_call_follows() {
    for fallback in [false, true] {
        let app = spawn_app_with(|c| with_receipts(c, fallback)).await;
        let mut events = app.capture_events(&format!("{}.verification.delivery_failed", app.tenant)).await;
        let id = app.create_verification("uma", US, "sms").await.body["id"].as_str().unwrap().to_owned();
        app.code_sent_to(US).await;
        wait_for_count(&app, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent'", 1).await;
        let sid = app.twilio.sent_sms().await[0].sid.clone();

        let undelivered = [("MessageSid", sid.as_str()), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")];
        assert_eq!(post_receipt(&app, &undelivered, None).await, 204);
        let failed = events.wait_for_event("verification.delivery_failed", Duration::from_secs(10)).await;
        if fallback {
            assert_eq!(failed["status"], "pending", "{failed}");
            let read =
                verification_until(&app, &id, |v| v["delivery"]["channel"] == "voice" && state(v) == "sent").await;
            assert_eq!(read["status"], "pending", "the call carries the code: {read}");
            assert_eq!(app.twilio.placed_calls().await.len(), 1);
        } else {
            assert_eq!(failed["status"], "failed", "{failed}");
            let read = verification_until(&app, &id, |v| v["status"] == "failed").await;
            assert_eq!(read["delivery"]["state"], "undelivered");
            assert_eq!(read["delivery"]["reason"], "undelivered");
            assert_eq!(read["delivery"]["error_code"], "30003");
        }
    }
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_dead_lettered_send_fails_the_verification_until_an_operator_replays_it() {
    let app = spawn_app().await;
    let operator = app.operator_key().await;
    let phone = "+14155552679";
    app.twilio.fail_next(3, Failure::code(429, "20429")).await;
    let id = app.create_verification("uma", phone, "sms").await.body["id"].as_str().unwrap().to_owned();
    let letter = app.wait_for_dead_letter(&operator, |l| l["verification_id"] == id.as_str()).await;

    let read = verification_until(&app, &id, |v| v["status"] == "failed").await;
    assert_eq!(read["delivery"]["state"], "dead_lettered");
    assert_eq!(read["delivery"]["reason"], "retries_exhausted");
    let resend = app.post_json(&format!("/v1/verifications/{id}/resend"), &json!({})).await;
    assert_eq!((resend.status, resend.body["verification_status"].as_str()), (409, Some("failed")));

    // The provider is back: the replay reopens the verification and sends its code once.
    let letter_id = letter["id"].as_str().unwrap();
    let replayed = app.post_json_as(&operator, &format!("/v1/ops/dead-letters/{letter_id}/replay"), &json!({})).await;
    assert_eq!(replayed.status, 200, "{:?}", replayed.body);
    let code = app.code_sent_to(phone).await;
    let read = verification_until(&app, &id, |v| state(v) == "sent").await;
    assert_eq!(read["status"], "pending");
    assert!(read.get("completed_at").is_none(), "{read}");
    assert_eq!(app.check(&id, &code).await.body["status"], "approved");
}
