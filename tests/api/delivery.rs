//! What dispatch does when Twilio fails: retries what may succeed later, gives up
//! on what cannot, records every attempt and tells the backend.

use std::time::Duration;
use verifyd_core::outbox::{Row, Target};
use verifyd_core::store::attempts::{self, Outcome, Recording};
use verifyd_providers::domain::Channel;
use verifyd_providers::testkit::Failure;

use crate::helpers::spawn_app;

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_invalid_number_at_twilio_fails_once_without_retry_and_is_announced() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.verification.delivery_failed", app.tenant)).await;
    app.twilio.fail_next(1, Failure::InvalidNumber).await;
    let created = app.create_verification("u", "+14155552677", "sms").await;
    let id = created.body["id"].as_str().unwrap();

    let failed = events.wait_for_event("verification.delivery_failed", Duration::from_secs(10)).await;
    assert_eq!(failed["verification_id"], id);
    assert!(failed["reason"].as_str().unwrap().contains("InvalidNumber"), "{failed}");
    app.delivery_settled().await;
    let outcomes: Vec<String> = sqlx::query_scalar("SELECT outcome FROM delivery_attempts ORDER BY created_at")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(outcomes, ["permanent_error"]);
    assert!(app.twilio.sent_sms().await.is_empty(), "no retry of a permanent failure");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn twilio_outages_are_retried_through_the_delay_queues() {
    let app = spawn_app().await;
    app.twilio.fail_next(2, Failure::code(503, "20500")).await;
    let created = app.create_verification("u", "+14155552678", "sms").await;
    let id = created.body["id"].as_str().unwrap();
    let code = app.code_sent_to("+14155552678").await;
    assert_eq!(app.check(id, &code).await.body["status"], "approved");
    // The SMS reaches Twilio a moment before dispatch records it.
    let mut outcomes: Vec<String> = Vec::new();
    for _ in 0..100 {
        outcomes = sqlx::query_scalar("SELECT outcome FROM delivery_attempts ORDER BY created_at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
        if outcomes.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outcomes, ["retryable_error", "retryable_error", "sent"]);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn when_retries_run_out_the_job_is_dead_lettered_with_its_reason() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.verification.delivery_failed", app.tenant)).await;
    app.twilio.fail_next(3, Failure::code(429, "20429")).await;
    let created = app.create_verification("u", "+14155552679", "sms").await;
    let id = created.body["id"].as_str().unwrap();

    let letter = app.wait_for_dead_letter(&app.api_key, |l| l["verification_id"] == id).await;
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.starts_with("retries exhausted after 3 tries"), "{reason}");
    assert_eq!(letter["reason_kind"], "retries_exhausted");
    let body: serde_json::Value = serde_json::from_str(letter["body"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(body["verification_id"], id, "the job as it was queued");
    let failed = events.wait_for_event("verification.delivery_failed", Duration::from_secs(10)).await;
    assert_eq!(failed["verification_id"], id);
    assert!(app.twilio.sent_sms().await.is_empty());
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_job_left_in_the_outbox_by_a_dead_process_is_still_delivered() {
    let app = spawn_app().await;
    let created = app.create_verification("u", "+14155552680", "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = app.code_sent_to("+14155552680").await;

    // What a process that committed a resend and died before publishing leaves
    // behind: a committed outbox row nobody kicked the relay for.
    let job =
        serde_json::json!({ "job_id": uuid::Uuid::new_v4(), "verification_id": id, "channel": "voice", "retry": 0 });
    sqlx::query("INSERT INTO outbox (target, routing_key, payload) VALUES ('dispatch', 'voice', $1)")
        .bind(&job)
        .execute(&app.pool)
        .await
        .unwrap();

    for _ in 0..200 {
        if !app.twilio.placed_calls().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = app.twilio.placed_calls().await;
    assert_eq!(calls.len(), 1, "the relay's poll published the orphaned job");
    let spaced = code.chars().map(String::from).collect::<Vec<_>>().join(", ");
    assert!(calls[0].twiml.contains(&spaced), "the same code, by voice");
    // The delivery's own event is written to the outbox too; every row drains.
    let mut left = -1i64;
    for _ in 0..100 {
        left = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&app.pool).await.unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "published rows are deleted");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_malformed_dispatch_job_is_dead_lettered_with_its_parse_error() {
    let app = spawn_app().await;
    let operator = app.operator_key().await;
    let ch = app.amqp.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let garbage = br#"{"verification_id": "not-a-uuid"}"#;
    ch.basic_publish(
        app.topology.dispatch_exchange().as_str().into(),
        "sms".into(),
        Default::default(),
        garbage,
        lapin::BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let letter = app.wait_for_dead_letter(&operator, |l| l["reason_kind"] == "malformed").await;
    assert_eq!(letter["body"]["text"].as_str().unwrap().as_bytes(), garbage);
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.starts_with("malformed dispatch job:"), "{reason}");
    assert_eq!(letter["source_queue"], app.topology.dispatch_queue(verifyd_providers::domain::Channel::Sms).as_str());
    assert_eq!((letter["replayable"].as_bool(), letter.get("tenant")), (Some(false), None), "{letter}");
    assert!(app.twilio.sent_sms().await.is_empty());
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn two_copies_of_one_job_send_one_sms() {
    let app = spawn_app().await;
    let created = app.create_verification("u", "+14155552686", "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    app.code_sent_to("+14155552686").await;

    // What a relay republish after a lost confirm looks like: the same job twice.
    let job =
        serde_json::json!({ "job_id": uuid::Uuid::new_v4(), "verification_id": id, "channel": "sms", "retry": 0 });
    let ch = app.amqp.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    for _ in 0..2 {
        ch.basic_publish(
            app.topology.dispatch_exchange().as_str().into(),
            "sms".into(),
            Default::default(),
            job.to_string().as_bytes(),
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    // Both copies are handled within the first retry delay (200 ms in tests).
    let mut finished = 0i64;
    for _ in 0..100 {
        finished = sqlx::query_scalar(
            "SELECT count(*) FROM delivery_attempts WHERE job_id = $1 AND outcome IN ('sent', 'skipped', 'permanent_error')",
        )
            .bind(job["job_id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if finished == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(finished, 1);
    app.delivery_settled().await;
    assert_eq!(app.twilio.sent_sms().await.len(), 2, "the original send and one for the job: not three");
}

/// Vonage as the SMS provider, through the real path: HTTP in, RabbitMQ, the
/// dispatch consumer, Vonage's SMS API (wiremock, its real form and answer).
#[actix_rt::test(system = "verifyd::system::System")]
async fn an_sms_goes_out_through_vonage_when_it_is_the_configured_provider() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let vonage = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "message-count": "1",
            "messages": [{ "to": "447911123456", "message-id": "0A00000012345678", "status": "0",
                "remaining-balance": "3.1", "message-price": "0.0333", "network": "23410" }]
        })))
        .mount(&vonage)
        .await;
    let uri = vonage.uri();
    let app = crate::helpers::spawn_app_with(move |c| {
        c.providers.sms = vec!["vonage".into()];
        c.providers.vonage = Some(verifyd_providers::vonage::VonageConfig {
            base_url: uri,
            ..verifyd_providers::vonage::VonageConfig::new("key-1", "secret-1", "Acme")
        });
    })
    .await;
    let created = app.create_verification("uma", "+447911123456", "sms").await;
    assert_eq!(created.status, 201, "{:?}", created.body);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let form = loop {
        let requests = vonage.received_requests().await.unwrap();
        if let Some(r) = requests.first() {
            let mut url = r.url.clone();
            url.set_query(Some(std::str::from_utf8(&r.body).unwrap()));
            break url.query_pairs().into_owned().collect::<std::collections::HashMap<String, String>>();
        }
        assert!(std::time::Instant::now() < deadline, "no SMS reached Vonage within 10 s");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((form["to"].as_str(), form["from"].as_str()), ("447911123456", "Acme"));
    let code: String = form["text"].chars().filter(char::is_ascii_digit).take(7).collect();
    assert_eq!(code.len(), 7, "{}", form["text"]);
    let checked = app.check(created.body["id"].as_str().unwrap(), &code).await;
    assert_eq!(checked.body["status"], "approved");
    // The attempt is recorded once Vonage's answer is in: wait for it.
    let attempt = loop {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT provider, provider_message_id FROM delivery_attempts WHERE outcome = 'sent' LIMIT 1",
        )
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        if let Some(row) = row {
            break row;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt recorded within 10 s");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(attempt, ("vonage".to_owned(), Some("0A00000012345678".to_owned())));
}

/// The SMS texts the mocked Twilio received, once `count` arrived.
async fn sms_bodies(app: &crate::helpers::TestApp, count: usize) -> Vec<String> {
    for _ in 0..200 {
        let sms = app.twilio.sent_sms().await;
        if sms.len() >= count {
            return sms.into_iter().map(|s| s.body).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} SMS reached Twilio within 10 s");
}

/// The time left is "1 minute", "2 minutes", and in seconds below a minute,
/// in every language: read from what the provider received.
#[actix_rt::test(system = "verifyd::system::System")]
async fn the_sms_says_1_minute_2_minutes_or_seconds_in_its_language() {
    let one_minute = crate::helpers::spawn_app_with(|c| c.verification.ttl_secs = 60).await;
    let en = one_minute.create_verification("u-en", "+14155552681", "sms").await;
    assert_eq!(en.status, 201, "{:?}", en.body);
    let es = serde_json::json!({ "account_id": "u-es", "phone": "+14155552682", "channel": "sms", "locale": "es" });
    assert_eq!(one_minute.post_json("/v1/verifications", &es).await.status, 201);
    let de = serde_json::json!({ "account_id": "u-de", "phone": "+14155552683", "channel": "sms", "locale": "de" });
    assert_eq!(one_minute.post_json("/v1/verifications", &de).await.status, 201);
    let bodies = sms_bodies(&one_minute, 3).await;
    assert!(bodies.iter().any(|b| b.ends_with("It expires in 1 minute.")), "{bodies:?}");
    assert!(bodies.iter().any(|b| b.ends_with("Caduca en 1 minuto.")), "{bodies:?}");
    assert!(bodies.iter().any(|b| b.ends_with("Er läuft in 1 Minute ab.")), "{bodies:?}");

    let two_minutes = crate::helpers::spawn_app_with(|c| c.verification.ttl_secs = 120).await;
    assert_eq!(two_minutes.create_verification("u", "+14155552684", "sms").await.status, 201);
    let bodies = sms_bodies(&two_minutes, 1).await;
    assert!(bodies[0].ends_with("It expires in 2 minutes."), "{bodies:?}");

    let seconds = crate::helpers::spawn_app_with(|c| c.verification.ttl_secs = 30).await;
    let fr = serde_json::json!({ "account_id": "u-fr", "phone": "+14155552685", "channel": "sms", "locale": "fr" });
    assert_eq!(seconds.post_json("/v1/verifications", &fr).await.status, 201);
    assert_eq!(seconds.create_verification("u", "+14155552686", "sms").await.status, 201);
    let bodies = sms_bodies(&seconds, 2).await;
    assert!(bodies.iter().any(|b| b.ends_with("It expires in 30 seconds.")), "{bodies:?}");
    assert!(bodies.iter().any(|b| b.ends_with("Il expire dans 30 secondes.")), "{bodies:?}");
}

/// A final attempt as dispatch records it, announced by one event that
/// carries `marker`.
fn recording(
    tenant: &str,
    tenant_id: uuid::Uuid,
    verification_id: uuid::Uuid,
    job_id: uuid::Uuid,
    marker: &str,
) -> Recording {
    Recording {
        job_id,
        verification_id,
        tenant_id,
        channel: Channel::Sms,
        provider: Some("twilio".into()),
        provider_message_id: Some(format!("SM{marker}")),
        outcome: Outcome::Sent,
        error: None,
        error_kind: None,
        latency_ms: Some(5),
        requested_at: None,
        announce: vec![Row {
            target: Target::Event,
            routing_key: format!("{tenant}.verification.delivered"),
            payload: serde_json::json!({ "event": "verification.delivered", "marker": marker }),
            correlation_id: None,
        }],
    }
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn final_attempts_written_in_one_batch_record_a_job_once_and_announce_only_what_was_recorded() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.verification.delivered", app.tenant)).await;
    let created = app.create_verification("batch-user", "+14155552671", "sms").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    events.wait_for_event("verification.delivered", Duration::from_secs(10)).await;
    let id: uuid::Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
    let tenant_id: uuid::Uuid = sqlx::query_scalar("SELECT tenant_id FROM verifications WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();

    // Two copies of one job in one batch, beside another job: the first copy
    // and the other job are recorded, the second copy is not.
    let (job, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let mut conn = app.pool.acquire().await.unwrap();
    let batch = [
        recording(&app.tenant, tenant_id, id, job, "first"),
        recording(&app.tenant, tenant_id, id, job, "second"),
        recording(&app.tenant, tenant_id, id, other, "other"),
    ];
    assert_eq!(attempts::record_many(&mut conn, &batch).await.unwrap(), vec![true, false, true]);
    // A later copy of a job that has its final attempt is not recorded either.
    let late = [recording(&app.tenant, tenant_id, id, job, "late")];
    assert_eq!(attempts::record_many(&mut conn, &late).await.unwrap(), vec![false]);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts WHERE job_id = $1")
        .bind(job)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);

    // Only what was recorded is announced, each once.
    app.delivery_settled().await;
    let markers: Vec<String> = events
        .drain(Duration::from_millis(500))
        .await
        .iter()
        .filter_map(|m| m.json()["marker"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(markers, vec!["first".to_owned(), "other".to_owned()]);
}
