//! Fault tests that fit in the test suite: workers killed mid-batch, the broker
//! dropping every connection. After each, every accepted verification reaches
//! exactly one final delivery outcome, nothing is lost, and duplicates (allowed
//! only across a crash) are counted. The long soak with RabbitMQ and PostgreSQL
//! restarts is `scripts/faults.sh` (docs/faults.md).

use std::time::{Duration, Instant};

use rand::RngExt;

use crate::helpers::{TestApp, spawn_app_with};

/// A valid UK mobile number per index.
fn phone(n: usize) -> String {
    format!("+4479111{n:05}")
}

async fn create(app: &TestApp, n: usize) -> String {
    let reply = app.create_verification(&format!("user-{n}"), &phone(n), "sms").await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// Waits until `n` verifications have their final delivery outcome.
async fn wait_until_all_delivered(app: &TestApp, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT verification_id) FROM delivery_attempts
             WHERE outcome IN ('sent', 'permanent_error', 'skipped')",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if done >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{done} of {n} verifications delivered within {within:?}");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every verification sent exactly once in the database, at least once at the
/// provider; returns how many extra SMS the provider received.
async fn duplicates(app: &TestApp, count: usize) -> usize {
    let outcomes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT outcome, count(*) FROM delivery_attempts WHERE outcome IN ('sent', 'permanent_error', 'skipped')
         GROUP BY outcome",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(outcomes, [("sent".to_owned(), count as i64)], "one final outcome per job, all sent");
    let mut extra = 0;
    for n in 0..count {
        let received = app.twilio.deliveries_to(&phone(n)).await;
        assert!(received >= 1, "{} never received its code", phone(n));
        extra += received - 1;
    }
    extra
}

/// The numbers that got a copy of their code while no kill could explain it:
/// every copy but the last must have reached the provider at most `in_flight`
/// before some kill.
fn unexplained_duplicates(
    sent: &[verifyd_providers::testkit::TwilioSms],
    kills: &[Instant],
    in_flight: Duration,
) -> Vec<String> {
    let mut by_phone: std::collections::BTreeMap<&str, Vec<Instant>> = Default::default();
    for sms in sent {
        by_phone.entry(sms.to.as_str()).or_default().push(sms.received_at);
    }
    by_phone
        .into_iter()
        .filter(|(_, copies)| {
            copies[..copies.len() - 1]
                .iter()
                .any(|&at| !kills.iter().any(|&kill| kill >= at && kill.duration_since(at) <= in_flight))
        })
        .map(|(phone, _)| phone.to_owned())
        .collect()
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn killing_workers_mid_batch_ten_times_loses_no_verification() {
    const ROUNDS: usize = 10;
    const PER_ROUND: usize = 20;
    // Only worker processes deliver; the provider takes 150 ms per message, so
    // each kill lands while messages are in flight.
    // A delivery test, not an abuse test: 200 codes to one UK prefix, none
    // ever checked, over more than the guard's grace is what it blocks.
    let mut app = spawn_app_with(|c| {
        c.amqp.dispatch_consumers = 0;
        c.abuse.pumping.enabled = false;
    })
    .await;
    app.twilio.set_latency(Duration::from_millis(150));

    let mut ids = Vec::new();
    let mut kills = Vec::new();
    for round in 0..ROUNDS {
        app.start_worker_process().await;
        for i in 0..PER_ROUND {
            ids.push(create(&app, round * PER_ROUND + i).await);
        }
        let pause = rand::rng().random_range(50..300);
        actix_rt::time::sleep(Duration::from_millis(pause)).await;
        app.kill_worker_processes();
        kills.push(Instant::now());
    }
    let after_kills = app.twilio.sent_sms().await.len();
    app.start_worker_process().await;
    // Jobs a killed worker held are taken over when their claim lease (6 s here) ends.
    wait_until_all_delivered(&app, ids.len() as i64, Duration::from_secs(90)).await;

    let extra = duplicates(&app, ids.len()).await;
    println!(
        "kill -9 x{ROUNDS}: {} verifications, {after_kills} SMS out before the last worker, {extra} duplicate SMS",
        ids.len()
    );
    // At-least-once only across a crash: a message sent again must have been in
    // flight when a worker was killed, i.e. the provider received the earlier copy
    // at most its latency (plus the commit, with slack for a busy machine) before
    // a kill. A copy sent while every worker lived means a claim was broken.
    let unexplained = unexplained_duplicates(&app.twilio.sent_sms().await, &kills, Duration::from_secs(2));
    assert!(unexplained.is_empty(), "sent again without a crash in flight: {unexplained:?}");
    // The codes that went out still work.
    let code = app.code_sent_to(&phone(0)).await;
    assert_eq!(app.check(&ids[0], &code).await.body["status"], "approved");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn when_the_broker_drops_every_connection_verifyd_reconnects_and_loses_nothing() {
    let app = spawn_app_with(|_| {}).await;
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(create(&app, n).await);
    }
    wait_until_all_delivered(&app, 10, Duration::from_secs(15)).await;

    let closed = app.force_close_amqp_connections();
    assert!(closed >= 1, "the app's connection is listed by RabbitMQ");
    // Readiness drops while the connection recovers, then comes back by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        let ready = app.get("/readyz").await;
        if ready.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not ready 30 s after the broker closed the connection: {:?}", ready.body);
    }
    // Requests accepted after the outage are delivered by the recovered consumers.
    let mut events = app.capture_events("#").await;
    for n in 10..20 {
        ids.push(create(&app, n).await);
    }
    wait_until_all_delivered(&app, 20, Duration::from_secs(30)).await;
    assert_eq!(duplicates(&app, 20).await, 0, "no crash, so no duplicate");
    events.wait_for_event("verification.delivered", Duration::from_secs(10)).await;
    let code = app.code_sent_to(&phone(15)).await;
    assert_eq!(app.check(&ids[15], &code).await.body["status"], "approved");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn sigterm_lets_a_worker_finish_the_jobs_in_hand_so_none_is_sent_twice() {
    let mut app = spawn_app_with(|c| c.amqp.dispatch_consumers = 0).await;
    app.twilio.set_latency(Duration::from_millis(400));
    app.start_worker_process().await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(create(&app, n).await);
    }
    // Wait until the provider is busy with some of them, then stop the worker.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.twilio.sent_sms().await.is_empty() {
        assert!(Instant::now() < deadline, "the worker started no delivery");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let (clean, took) = app.terminate_worker_processes();
    assert!(clean, "the worker exits 0 on SIGTERM");
    assert!(took < Duration::from_secs(5), "it stops within the grace period: {took:?}");

    // Everything the provider received before the stop is recorded as sent:
    // no job was abandoned between the provider's answer and the commit.
    let reached = app.twilio.sent_sms().await.len() as i64;
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(recorded, reached, "every message in flight finished before the worker exited");

    // The rest were never started and wait in the queue for the next worker.
    app.start_worker_process().await;
    wait_until_all_delivered(&app, ids.len() as i64, Duration::from_secs(30)).await;
    assert_eq!(duplicates(&app, ids.len()).await, 0, "a graceful stop sends nothing twice");
}
