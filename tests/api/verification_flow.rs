//! A phone verification over HTTP, from request to approved factor.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TWILIO_FROM, TWILIO_SID, spawn_app, spawn_app_with};

const PHONE: &str = "+14155552671";

fn wrong(code: &str) -> String {
    // Same length, different digits.
    code.chars().map(|c| if c == '9' { '0' } else { char::from(c as u8 + 1) }).collect()
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn sms_code_reaches_twilio_and_approves_and_the_phone_becomes_a_factor() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.#", app.tenant)).await;

    let created = app.create_verification("user-1", PHONE, "sms").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["status"], "pending");
    assert_eq!(created.body["channel"], "sms");
    assert_eq!(created.body["attempts_left"], 5);
    assert!(created.body.get("code").is_none());
    let id = created.body["id"].as_str().unwrap().to_owned();

    let code = app.code_sent_to(PHONE).await;
    assert_eq!(code.len(), 7);
    let sms = app.twilio.sent_sms().await;
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0].to, PHONE);
    assert_eq!(sms[0].from, TWILIO_FROM);
    assert_eq!(sms[0].auth_user, TWILIO_SID);
    assert_eq!(sms[0].body, format!("Your Acme verification code is {code}. It expires in 10 minutes."));
    let validity = sms[0].validity_period.expect("ValidityPeriod set");
    assert!((590..=600).contains(&validity), "ValidityPeriod {validity}");

    let checked = app.check(&id, &code).await;
    assert_eq!(checked.status, 200, "{:?}", checked.body);
    assert_eq!(checked.body["status"], "approved");

    // The check answers after account state recorded the phone.
    let factors = app.get("/v1/accounts/user-1/factors").await;
    assert_eq!(factors.status, 200);
    let list = factors.body["factors"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{:?}", factors.body);
    assert_eq!(list[0]["kind"], "sms");
    assert_eq!(list[0]["phone"], PHONE);
    assert_eq!(list[0]["status"], "active");

    // A used code cannot be used again.
    let again = app.check(&id, &code).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error"], "verification_not_pending");
    assert_eq!(again.body["verification_status"], "approved");

    for name in ["verification.created", "verification.delivered", "verification.approved", "factor.added"] {
        let event = events.wait_for_event(name, Duration::from_secs(10)).await;
        assert_eq!(event["tenant"], app.tenant.as_str());
        assert_eq!(event["account_id"], "user-1");
    }
    let attempts: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT outcome, provider, provider_message_id FROM delivery_attempts")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].0.as_str(), attempts[0].1.as_str()), ("sent", "twilio"));
    assert_eq!(attempts[0].2.as_deref(), Some(sms[0].sid.as_str()));
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn voice_call_speaks_the_digits_twice_and_the_code_approves() {
    let app = spawn_app().await;
    let created = app.create_verification("user-v", PHONE, "voice").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let code = app.code_sent_to(PHONE).await;
    let calls = app.twilio.placed_calls().await;
    assert_eq!(calls.len(), 1);
    assert!(app.twilio.sent_sms().await.is_empty());
    let spaced = code.chars().map(String::from).collect::<Vec<_>>().join(", ");
    let twiml = &calls[0].twiml;
    assert_eq!(twiml.matches(&spaced).count(), 2, "digits read twice: {twiml}");
    assert!(twiml.contains("<Pause length=\"1\"/>"), "{twiml}");
    assert!(twiml.contains("Your Acme verification code is"), "{twiml}");

    let checked = app.check(&id, &code).await;
    assert_eq!(checked.body["status"], "approved");
    let factors = app.get("/v1/accounts/user-v/factors").await;
    assert_eq!(factors.body["factors"][0]["kind"], "voice");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn wrong_codes_count_down_and_the_fifth_ends_the_verification() {
    let app = spawn_app().await;
    let created = app.create_verification("user-2", PHONE, "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = app.code_sent_to(PHONE).await;
    let bad = wrong(&code);

    for left in (1..=4).rev() {
        let r = app.check(&id, &bad).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["status"], "pending");
        assert_eq!(r.body["attempts_left"], left);
    }
    let fifth = app.check(&id, &bad).await;
    assert_eq!(fifth.body["status"], "max_attempts_reached");
    assert_eq!(fifth.body["attempts_left"], 0);

    // Now even the right code is refused.
    let right = app.check(&id, &code).await;
    assert_eq!(right.status, 409);
    assert_eq!(right.body["verification_status"], "max_attempts_reached");
    let factors = app.get("/v1/accounts/user-2/factors").await;
    assert_eq!(factors.body["factors"], json!([]));
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn resend_sends_the_same_code_and_keeps_the_deadline() {
    let app = spawn_app().await;
    let created = app.create_verification("user-3", PHONE, "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let first = app.code_sent_to(PHONE).await;

    let resent = app.post_json(&format!("/v1/verifications/{id}/resend"), &json!({})).await;
    assert_eq!(resent.status, 202, "{:?}", resent.body);
    assert_eq!(resent.body["sends"], 2);
    assert_eq!(resent.body["expires_at"], created.body["expires_at"]);

    // The same code again, then by voice when asked.
    for _ in 0..100 {
        if app.twilio.sent_sms().await.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sms = app.twilio.sent_sms().await;
    assert_eq!(sms.len(), 2);
    assert!(sms[1].body.contains(&first), "resent SMS carries the same code");

    let by_voice = app.post_json(&format!("/v1/verifications/{id}/resend"), &json!({ "channel": "voice" })).await;
    assert_eq!(by_voice.status, 202);
    assert_eq!(by_voice.body["channel"], "sms", "the verification keeps its channel");
    for _ in 0..100 {
        if !app.twilio.placed_calls().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = app.twilio.placed_calls().await;
    let spaced = first.chars().map(String::from).collect::<Vec<_>>().join(", ");
    assert!(calls[0].twiml.contains(&spaced));

    assert_eq!(app.check(&id, &first).await.body["status"], "approved");
}

/// A resend by voice calls this once; the verification stays an SMS
/// verification (reads, events, the stored row), and the factor its approval
/// makes is an SMS factor.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_resend_by_voice_changes_that_send_only_not_the_verification_or_its_factor() {
    let app = spawn_app().await;
    let mut jobs = app.tap_dispatch().await;
    let mut events = app.capture_events(&format!("{}.#", app.tenant)).await;
    let created = app.create_verification("user-rv", PHONE, "sms").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = app.code_sent_to(PHONE).await;

    let by_voice = app.post_json(&format!("/v1/verifications/{id}/resend"), &json!({ "channel": "voice" })).await;
    assert_eq!(by_voice.status, 202, "{:?}", by_voice.body);
    assert_eq!((by_voice.body["channel"].as_str(), by_voice.body["sends"].as_i64()), (Some("sms"), Some(2)));
    // This send goes by voice: its job, its call, its attempt.
    let code_by_voice = app.next_code_to(PHONE, 1).await;
    assert_eq!(code_by_voice, code, "the same code, spoken");
    let calls = app.twilio.placed_calls().await;
    assert_eq!((calls.len(), app.twilio.sent_sms().await.len()), (1, 1));
    let routed: Vec<String> =
        jobs.drain(Duration::from_millis(500)).await.iter().map(|m| m.routing_key.clone()).collect();
    assert_eq!(routed, ["sms", "voice"]);
    let mut delivered = Vec::new();
    for _ in 0..50 {
        let all = events.drain(Duration::from_millis(200)).await;
        delivered = all.iter().map(|m| m.json()).filter(|e| e["event"] == "verification.delivered").collect();
        if delivered.len() == 2 {
            break;
        }
    }
    let channels: Vec<&str> = delivered.iter().map(|e| e["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["sms", "voice"], "each delivery names its own channel");

    // The verification is still by SMS, read or stored.
    assert_eq!(app.get(&format!("/v1/verifications/{id}")).await.body["channel"], "sms");
    let stored: String = sqlx::query_scalar("SELECT channel FROM verifications WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "sms");
    let attempts: Vec<String> = sqlx::query_scalar("SELECT channel FROM delivery_attempts ORDER BY created_at")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(attempts, ["sms", "voice"]);

    // Approved, it becomes an SMS factor; its events say sms.
    let checked = app.check(&id, &code).await;
    assert_eq!((checked.body["status"].as_str(), checked.body["channel"].as_str()), (Some("approved"), Some("sms")));
    let factors = app.get("/v1/accounts/user-rv/factors").await.body["factors"].clone();
    assert_eq!(factors.as_array().unwrap().len(), 1, "{factors:?}");
    assert_eq!((factors[0]["kind"].as_str(), factors[0]["phone"].as_str()), (Some("sms"), Some(PHONE)));
    let approved = events.wait_for_event("verification.approved", Duration::from_secs(10)).await;
    assert_eq!(approved["channel"], "sms");
    assert_eq!(events.wait_for_event("factor.added", Duration::from_secs(10)).await["factor_kind"], "sms");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn resends_are_throttled_with_retry_after() {
    let app = spawn_app_with(|c| {
        c.verification.resend_interval_secs = 30;
    })
    .await;
    let created = app.create_verification("user-4", PHONE, "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let r = app.post_json(&format!("/v1/verifications/{id}/resend"), &json!({})).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.body["error"], "throttled");
    assert_eq!(r.body["scope"], "verification");
    let retry_after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry_after), "Retry-After {retry_after}");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn more_than_five_codes_to_one_phone_in_ten_minutes_are_refused() {
    let app = spawn_app().await;
    for n in 0..5 {
        let r = app.create_verification(&format!("acct-{n}"), PHONE, "sms").await;
        assert_eq!(r.status, 201, "send {n}: {:?}", r.body);
    }
    let sixth = app.create_verification("acct-6", PHONE, "sms").await;
    assert_eq!(sixth.status, 429, "{:?}", sixth.body);
    assert_eq!(sixth.body["scope"], "phone");
    assert!(sixth.headers.contains_key("retry-after"));
    // Another number is not affected.
    assert_eq!(app.create_verification("acct-6", "+14155552672", "sms").await.status, 201);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_unchecked_verification_expires_on_its_own() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.verification.expired", app.tenant)).await;
    let created = app.create_verification("user-5", PHONE, "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = app.code_sent_to(PHONE).await;
    // Ten minutes pass: move the deadline instead of waiting.
    sqlx::query("UPDATE verifications SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();

    let event = events.wait_for_event("verification.expired", Duration::from_secs(10)).await;
    assert_eq!(event["verification_id"], id.as_str());
    let stored: String = sqlx::query_scalar("SELECT status FROM verifications WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "expired");
    assert_eq!(app.get(&format!("/v1/verifications/{id}")).await.body["status"], "expired");
    let late = app.check(&id, &code).await;
    assert_eq!(late.status, 409);
    assert_eq!(late.body["verification_status"], "expired");
}

/// The answer to a check made past the deadline, and the `verification.expired`
/// events of the tenant, once the outbox is quiet.
async fn late_check(app: &crate::helpers::TestApp, account: &str, swept: bool) -> (u16, serde_json::Value, usize) {
    let mut events = app.capture_events(&format!("{}.verification.expired", app.tenant)).await;
    let created = app.create_verification(account, PHONE, "sms").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = app.code_sent_to(PHONE).await;
    if swept {
        events.wait_for_event("verification.expired", Duration::from_secs(10)).await;
    } else {
        // Two seconds of TTL, and a little more; nothing has expired it.
        tokio::time::sleep(Duration::from_millis(2_300)).await;
        let status: String = sqlx::query_scalar("SELECT status FROM verifications WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(status, "pending", "no sweep has run");
    }
    let late = app.check(&id, &code).await;
    let stored: String = sqlx::query_scalar("SELECT status FROM verifications WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "expired", "the deadline is recorded either way");
    assert_eq!(app.get(&format!("/v1/verifications/{id}")).await.body["status"], "expired");
    let expired = events.drain(Duration::from_millis(1_000)).await.len();
    (late.status, late.body, expired)
}

/// Past its deadline a right code is refused with `409 verification_not_pending`
/// (`expired`), whether the check is the first to see the deadline or the
/// expiry sweep wrote it already: a terminal answer does not depend on timing.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_check_after_the_deadline_is_409_expired_whether_or_not_the_sweep_ran() {
    // No sweep during this test: the check itself meets the deadline.
    let unswept = spawn_app_with(|c| {
        c.verification.ttl_secs = 2;
        c.runtime.expiry_interval_ms = 3_600_000;
    })
    .await;
    let (status, before_sweep, events) = late_check(&unswept, "user-late-1", false).await;
    assert_eq!(status, 409, "{before_sweep:?}");
    assert_eq!(events, 1, "the check announces the expiry, once");

    // The sweep runs every 200 ms: it has expired the verification first.
    let swept = spawn_app_with(|c| c.verification.ttl_secs = 2).await;
    let (status, after_sweep, events) = late_check(&swept, "user-late-2", true).await;
    assert_eq!(status, 409, "{after_sweep:?}");
    assert_eq!(events, 1, "the sweep announced the expiry, once");

    for body in [&before_sweep, &after_sweep] {
        assert_eq!(body["error"], "verification_not_pending");
        assert_eq!(body["verification_status"], "expired");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("expired"), "{detail}");
    }
    assert_eq!(before_sweep["detail"], after_sweep["detail"]);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_same_idempotency_key_gives_the_same_verification_and_one_sms() {
    let app = spawn_app().await;
    let mut jobs = app.tap_dispatch().await;
    let body = json!({ "account_id": "user-6", "phone": PHONE, "channel": "sms", "idempotency_key": "req-1" });
    let first = app.post_json("/v1/verifications", &body).await;
    let second = app.post_json("/v1/verifications", &body).await;
    assert_eq!(first.status, 201);
    assert_eq!(second.status, 200);
    assert_eq!(first.body["id"], second.body["id"]);
    app.code_sent_to(PHONE).await;
    assert_eq!(jobs.drain(Duration::from_millis(500)).await.len(), 1, "one delivery job");
    assert_eq!(app.twilio.sent_sms().await.len(), 1);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_canceled_verification_sends_nothing_still_queued_and_refuses_its_code() {
    // No dispatch in this process: the job waits in RabbitMQ until a worker starts.
    let mut app = spawn_app_with(|c| c.amqp.dispatch_consumers = 0).await;
    let mut events = app.capture_events(&format!("{}.verification.*", app.tenant)).await;
    let created = app.create_verification("user-cancel", PHONE, "sms").await;
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let canceled = app.post_json(&format!("/v1/verifications/{id}/cancel"), &json!({})).await;
    assert_eq!((canceled.status, canceled.body["status"].as_str()), (200, Some("canceled")), "{:?}", canceled.body);
    assert_eq!(app.get(&format!("/v1/verifications/{id}")).await.body["status"], "canceled");
    let event = events.wait_for_event("verification.canceled", Duration::from_secs(10)).await;
    assert_eq!((event["verification_id"].as_str(), event["status"].as_str()), (Some(id.as_str()), Some("canceled")));

    // The queued job reaches a worker and is dropped: nothing goes to Twilio.
    app.start_worker_process().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let skipped: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM delivery_attempts WHERE verification_id = $1::uuid AND outcome = 'skipped'",
        )
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if skipped == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the worker never took the canceled job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app.twilio.sent_sms().await.is_empty(), "no code for a canceled verification");

    // Its code is refused like an ended verification's, and so are a resend and a second cancel.
    for path in ["check", "resend", "cancel"] {
        let body = if path == "check" { json!({ "code": "1234567" }) } else { json!({}) };
        let refused = app.post_json(&format!("/v1/verifications/{id}/{path}"), &body).await;
        assert_eq!(refused.status, 409, "{path}: {:?}", refused.body);
        assert_eq!(refused.body["verification_status"], "canceled", "{path}");
    }
    let unknown = app.post_json(&format!("/v1/verifications/{}/cancel", uuid::Uuid::new_v4()), &json!({})).await;
    assert_eq!(unknown.status, 404);
}
