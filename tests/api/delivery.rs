//! What dispatch does when Twilio fails: retries what may succeed later, gives up
//! on what cannot, records every attempt and tells the backend.

use std::time::Duration;

use crate::helpers::spawn_app;

#[actix_rt::test]
async fn an_invalid_number_at_twilio_fails_once_without_retry_and_is_announced() {
    let app = spawn_app().await;
    let mut events = app
        .capture_events(&format!("{}.verification.delivery_failed", app.tenant))
        .await;
    app.twilio.fail_next(400, 21211, 1).await;
    let created = app.create_verification("u", "+14155552677", "sms").await;
    let id = created.body["id"].as_str().unwrap();

    let failed = events
        .wait_for_event("verification.delivery_failed", Duration::from_secs(10))
        .await;
    assert_eq!(failed["verification_id"], id);
    assert!(
        failed["reason"].as_str().unwrap().contains("InvalidNumber"),
        "{failed}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM delivery_attempts ORDER BY created_at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(outcomes, ["permanent_error"]);
    assert!(
        app.twilio.sent_sms().await.is_empty(),
        "no retry of a permanent failure"
    );
}

#[actix_rt::test]
async fn twilio_outages_are_retried_through_the_delay_queues() {
    let app = spawn_app().await;
    app.twilio.fail_next(503, 20500, 2).await;
    let created = app.create_verification("u", "+14155552678", "sms").await;
    let id = created.body["id"].as_str().unwrap();
    let code = app.code_sent_to("+14155552678").await;
    assert_eq!(app.check(id, &code).await.body["status"], "approved");
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM delivery_attempts ORDER BY created_at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(outcomes, ["retryable_error", "retryable_error", "sent"]);
}

#[actix_rt::test]
async fn when_retries_run_out_the_job_is_dead_lettered_with_its_reason() {
    let app = spawn_app().await;
    let mut dead = app.dead_letters().await;
    let mut events = app
        .capture_events(&format!("{}.verification.delivery_failed", app.tenant))
        .await;
    app.twilio.fail_next(429, 20429, 3).await;
    let created = app.create_verification("u", "+14155552679", "sms").await;
    let id = created.body["id"].as_str().unwrap();

    let letter = dead
        .next(Duration::from_secs(15))
        .await
        .expect("dead letter");
    let reason = letter.header("x-verifyd-reason").unwrap();
    assert!(
        reason.starts_with("retries exhausted after 3 tries"),
        "{reason}"
    );
    assert_eq!(letter.json()["verification_id"], id);
    let failed = events
        .wait_for_event("verification.delivery_failed", Duration::from_secs(10))
        .await;
    assert_eq!(failed["verification_id"], id);
    assert!(app.twilio.sent_sms().await.is_empty());
}
