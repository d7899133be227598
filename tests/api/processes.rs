//! Several verifyd processes on one PostgreSQL and one RabbitMQ.

use std::time::Duration;

use crate::helpers::spawn_app_with;

#[actix_rt::test]
async fn a_separate_worker_process_delivers_what_serve_accepted() {
    // This serve delivers nothing itself: only the worker process consumes.
    let mut app = spawn_app_with(|c| c.amqp.dispatch_consumers = 0).await;
    let worker_log = app.start_worker_process().await;
    let mut events = app.capture_events(&format!("{}.verification.delivered", app.tenant)).await;

    let created = app.create_verification("two-procs", "+14155552681", "sms").await;
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = app.code_sent_to("+14155552681").await;
    assert_eq!(app.check(&id, &code).await.body["status"], "approved");

    // The worker recorded the attempt and its relay published the event.
    let delivered = events.wait_for_event("verification.delivered", Duration::from_secs(10)).await;
    assert_eq!(delivered["verification_id"], id.as_str());
    let provider: String = sqlx::query_scalar("SELECT provider FROM delivery_attempts WHERE outcome = 'sent'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(provider, "twilio");

    let log = std::fs::read_to_string(&worker_log).unwrap();
    assert!(log.contains("dispatch finished"), "the worker did the delivery:\n{log}");
    assert!(!log.contains(&code), "the worker process logged the code");
    assert!(!log.contains("test-auth-token"), "the worker process logged the Twilio token");
    let _ = std::fs::remove_file(worker_log);
}
