//! Several verifyd processes on one PostgreSQL and one RabbitMQ.

use std::time::Duration;

use crate::helpers::{spawn_app, spawn_app_with};

#[actix_rt::test(system = "verifyd::system::System")]
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

/// A process stopped by SIGTERM while its outbox relay and expiry sweep hold a
/// transaction (both run every millisecond here) exits 0 without a panic on
/// its terminal: the tasks dropped with the actix system hand their pool
/// connections back inside the runtime (`verifyd::system`).
#[actix_rt::test(system = "verifyd::system::System")]
async fn sigterm_while_the_relay_and_the_sweep_hold_a_transaction_prints_no_panic() {
    let app = spawn_app_with(|c| c.amqp.dispatch_consumers = 0).await;
    for run in 0..5 {
        let log = std::env::temp_dir().join(format!("{}serve-sigterm-{run}.log", app.topology.prefix));
        let out = std::fs::File::create(&log).expect("serve log file");
        let err = out.try_clone().expect("serve log file");
        let mut child = app
            .verifyd_command(&["serve"])
            .env("RUST_LOG", "warn")
            .env("VERIFYD_RUNTIME__EXPIRY_INTERVAL_MS", "1")
            .env("VERIFYD_RUNTIME__RELAY_POLL_MS", "1")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("verifyd serve starts");
        actix_rt::time::sleep(Duration::from_millis(1500)).await;
        let sent = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(sent.expect("kill(1) runs").success(), "SIGTERM delivered");
        let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("joins").expect("serve exits");
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        assert!(status.success(), "run {run}: serve exits 0 on SIGTERM ({status}):\n{output}");
        assert!(!output.contains("panicked"), "run {run}: a panic on shutdown:\n{output}");
    }
}

/// A consumer cancelled by a graceful stop is stopped, not lost: no
/// `consumer lost for good` error for the on-call to chase, nothing counted
/// in `verifyd_consumers_lost_total`.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_graceful_stop_loses_no_consumer_and_logs_no_error() {
    let app = spawn_app().await;
    app.stop_consuming().await;
    let mine = |line: &&str| line.contains(&format!("queue={}", app.topology.prefix));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let ended = |l: &&str| l.contains("consumer stopped") || l.contains("lost for good");
    while !crate::helpers::captured_logs().lines().filter(mine).any(|l| ended(&l)) {
        assert!(std::time::Instant::now() < deadline, "no consumer's stream ended");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // The other consumers' streams end alongside.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let logs = crate::helpers::captured_logs();
    let lost: Vec<&str> = logs.lines().filter(mine).filter(|l| l.contains("lost for good")).collect();
    assert!(lost.is_empty(), "a stop logged lost consumers: {lost:#?}");
    assert!(logs.lines().filter(mine).any(|l| l.contains("consumer stopped")));
    assert_eq!(app.consumers_lost(), 0);
}
