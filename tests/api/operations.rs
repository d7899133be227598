//! What operators see and do, through the real path: a delivery fails through
//! every retry (HTTP in, RabbitMQ, the dispatch consumer, Twilio mocked),
//! becomes a dead letter recorded in PostgreSQL, is opened, replayed once the
//! provider recovers (delivered exactly once) or discarded, and every action
//! is audited with the acting key. The overview shows what every process knows.

use std::time::{Duration, Instant};
use verifyd_providers::testkit::Failure;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// Makes Twilio fail `tries` times with a 503, creates a verification, and
/// returns it with its dead letter (as `key` opens it).
async fn dead_lettered(app: &TestApp, key: &str, phone: &str) -> (String, Value) {
    app.twilio.fail_next(3, Failure::code(503, "20500")).await;
    let created = app.create_verification("ops-user", phone, "sms").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let letter = app.wait_for_dead_letter(key, |l| l["verification_id"] == id.as_str()).await;
    (id, letter)
}

async fn sms_to(app: &TestApp, phone: &str) -> usize {
    app.twilio.sent_sms().await.iter().filter(|s| s.to == phone).count()
}

/// Letters come one after another here: a circuit opening after five
/// failures in a row would hold the later ones back (deferred, not dead).
fn breaker_out_of_the_way(c: &mut verifyd::config::Config) {
    c.providers.breaker.failures_to_open = 1_000;
}

fn key_id(key: &str) -> &str {
    key.split('.').next().unwrap()
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_exhausted_job_is_listed_opened_replayed_once_after_the_provider_recovers_and_audited() {
    let app = spawn_app().await;
    let operator = app.operator_key().await;
    let phone = "+14155552690";
    let (verification_id, letter) = dead_lettered(&app, &operator, phone).await;

    // Listed with its reason, and opened with every attempt.
    assert_eq!(letter["reason_kind"], "retries_exhausted");
    assert_eq!(letter["status"], "dead");
    assert_eq!(letter["tenant"], app.tenant.as_str());
    assert_eq!(letter["channel"], "sms");
    assert_eq!(letter["replayable"], true, "{letter}");
    assert_eq!(letter["verification"]["status"], "failed", "giving up ended it; a replay reopens it");
    assert_eq!(letter["verification"]["to"], "+*********90", "masked");
    let attempts = letter["attempts"].as_array().unwrap();
    let tried: Vec<(&str, &str, &str)> = attempts
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap_or("-"),
                a["outcome"].as_str().unwrap(),
                a["error_kind"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        tried,
        [
            ("twilio", "retryable_error", "unavailable"),
            ("twilio", "retryable_error", "unavailable"),
            ("twilio", "retryable_error", "unavailable"),
            ("-", "permanent_error", "unavailable"),
        ]
    );
    let (first, last) = (letter["first_failure_at"].as_str().unwrap(), letter["last_failure_at"].as_str().unwrap());
    assert!(first <= last, "{first} .. {last}");
    assert_eq!(sms_to(&app, phone).await, 0);

    // The waiting list and the overview count it; filters narrow.
    let waiting = app.get_as(&operator, "/v1/ops/dead-letters?reason=retries_exhausted&channel=sms").await;
    assert_eq!(waiting.body["dead_letters"].as_array().unwrap().len(), 1);
    let none = app.get_as(&operator, "/v1/ops/dead-letters?reason=malformed").await;
    assert!(none.body["dead_letters"].as_array().unwrap().is_empty());
    let young = app.get_as(&operator, "/v1/ops/dead-letters?older_than=1h").await;
    assert!(young.body["dead_letters"].as_array().unwrap().is_empty(), "not an hour old yet");
    let bad = app.get_as(&operator, "/v1/ops/dead-letters?reason=bogus").await;
    assert_eq!((bad.status, bad.body["field"].as_str()), (422, Some("reason")));
    let overview = app.get_as(&operator, "/v1/ops/overview").await;
    assert_eq!(overview.body["dead_letters"]["by_reason"]["retries_exhausted"], 1, "{}", overview.body);

    // The provider is back (its failures are used up): replay sends the code once.
    let id = letter["id"].as_str().unwrap();
    let replayed = app.post_json_as(&operator, &format!("/v1/ops/dead-letters/{id}/replay"), &json!({})).await;
    assert_eq!(replayed.status, 200, "{:?}", replayed.body);
    let new_job = replayed.body["replayed"]["job_id"].as_str().unwrap().to_owned();
    assert_ne!(new_job, letter["job_id"].as_str().unwrap(), "the job is re-armed under a new id");
    let code = app.code_sent_to(phone).await;
    assert_eq!(app.check(&verification_id, &code).await.body["status"], "approved");

    // Twice is refused, and sends nothing more.
    let again = app.post_json_as(&operator, &format!("/v1/ops/dead-letters/{id}/replay"), &json!({})).await;
    assert_eq!((again.status, again.body["error"].as_str()), (409, Some("dead_letter_resolved")), "{:?}", again.body);
    assert_eq!(again.body["dead_letter_status"], "replayed");
    app.delivery_settled().await;
    assert_eq!(sms_to(&app, phone).await, 1, "delivered exactly once");

    // The letter now says what became of it, and the delivery history shows the replay's attempt.
    let opened = app.get_as(&operator, &format!("/v1/ops/dead-letters/{id}")).await.body;
    assert_eq!(
        (opened["status"].as_str(), opened["resolved_by"].as_str()),
        (Some("replayed"), Some(key_id(&operator)))
    );
    assert_eq!(opened["replay_job_id"], new_job.as_str());
    assert_eq!(opened["replayable"], false);
    let sent: Vec<&Value> = opened["attempts"].as_array().unwrap().iter().filter(|a| a["outcome"] == "sent").collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["job_id"], new_job.as_str());
    let history = app.get_as(&operator, &format!("/v1/ops/deliveries?verification_id={verification_id}")).await;
    assert_eq!(history.body["attempts"].as_array().unwrap().len(), 5);
    let waiting = app.get_as(&operator, "/v1/ops/dead-letters").await;
    assert!(waiting.body["dead_letters"].as_array().unwrap().is_empty(), "no longer waiting");

    // Audited with the acting key, for operators and for the tenant.
    let audit = app.get_as(&operator, "/v1/ops/audit").await;
    let entry = &audit.body["entries"][0];
    assert_eq!(entry["action"], "dead_letter.replayed");
    assert_eq!(
        (entry["actor"].as_str(), entry["api_key_id"].as_str()),
        (Some(key_id(&operator)), Some(key_id(&operator)))
    );
    assert_eq!(entry["detail"]["dead_letter_id"], id);
    assert_eq!(entry["detail"]["new_job_id"], new_job.as_str());
    assert_eq!(entry["tenant"], app.tenant.as_str());
    let tenant_audit = app.get("/v1/audit").await;
    assert!(
        tenant_audit.body["entries"].as_array().unwrap().iter().any(|e| e["action"] == "dead_letter.replayed"),
        "the tenant's own trail shows it: {}",
        tenant_audit.body
    );
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn discard_puts_a_letter_aside_and_a_discard_racing_a_replay_has_one_winner() {
    let app = spawn_app_with(breaker_out_of_the_way).await;
    let operator = app.operator_key().await;
    let (_, first) = dead_lettered(&app, &operator, "+14155552691").await;
    let first_id = first["id"].as_str().unwrap();

    let no_reason = app.post_json_as(&operator, &format!("/v1/ops/dead-letters/{first_id}/discard"), &json!({})).await;
    assert_eq!(no_reason.status, 400, "a discard says why: {:?}", no_reason.body);
    let blank = app
        .post_json_as(&operator, &format!("/v1/ops/dead-letters/{first_id}/discard"), &json!({ "reason": "  " }))
        .await;
    assert_eq!((blank.status, blank.body["field"].as_str()), (422, Some("reason")));
    let discarded = app
        .post_json_as(
            &operator,
            &format!("/v1/ops/dead-letters/{first_id}/discard"),
            &json!({ "reason": "user asked for a new code instead" }),
        )
        .await;
    assert_eq!(discarded.status, 200, "{:?}", discarded.body);
    assert_eq!(discarded.body["discarded"]["status"], "discarded");
    let waiting = app.get_as(&operator, "/v1/ops/dead-letters").await;
    assert!(waiting.body["dead_letters"].as_array().unwrap().is_empty(), "discarded letters are not waiting");
    let kept = app.get_as(&operator, "/v1/ops/dead-letters?status=discarded").await;
    assert_eq!(kept.body["dead_letters"][0]["resolution"], "user asked for a new code instead");
    let replay = app.post_json_as(&operator, &format!("/v1/ops/dead-letters/{first_id}/replay"), &json!({})).await;
    assert_eq!((replay.status, replay.body["dead_letter_status"].as_str()), (409, Some("discarded")));

    // A replay and a discard of one letter at once: one wins, the other is refused.
    let phone = "+14155552692";
    let (_, second) = dead_lettered(&app, &operator, phone).await;
    let second_id = second["id"].as_str().unwrap();
    let replay_path = format!("/v1/ops/dead-letters/{second_id}/replay");
    let discard_path = format!("/v1/ops/dead-letters/{second_id}/discard");
    let (empty, race) = (json!({}), json!({ "reason": "race" }));
    let (replayed, discarded) = tokio::join!(
        app.post_json_as(&operator, &replay_path, &empty),
        app.post_json_as(&operator, &discard_path, &race),
    );
    let mut statuses = [replayed.status, discarded.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{:?} / {:?}", replayed.body, discarded.body);
    app.delivery_settled().await;
    let expected = usize::from(replayed.status == 200);
    assert_eq!(sms_to(&app, phone).await, expected, "sent once if the replay won, never if the discard did");

    // Ids that name nothing.
    for path in ["/v1/ops/dead-letters/00000000-0000-4000-8000-000000000000", "/v1/ops/dead-letters/not-an-id"] {
        assert_eq!(app.get_as(&operator, path).await.status, 404);
        assert_eq!(app.post_json_as(&operator, &format!("{path}/replay"), &json!({})).await.status, 404);
    }
    let audit = app.get_as(&operator, "/v1/ops/audit").await;
    let actions: Vec<&str> =
        audit.body["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "dead_letter.discarded").count(),
        1 + usize::from(discarded.status == 200)
    );
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_letter_whose_verification_expired_is_not_replayed_and_says_why() {
    let app = spawn_app_with(|c| c.verification.ttl_secs = 3).await;
    let operator = app.operator_key().await;
    let (_, letter) = dead_lettered(&app, &operator, "+14155552693").await;
    let id = letter["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let replay = app.post_json_as(&operator, &format!("/v1/ops/dead-letters/{id}/replay"), &json!({})).await;
    assert_eq!(replay.status, 409, "{:?}", replay.body);
    assert_eq!(
        (replay.body["error"].as_str(), replay.body["verification_status"].as_str()),
        (Some("verification_not_pending"), Some("expired"))
    );
    let opened = app.get_as(&operator, &format!("/v1/ops/dead-letters/{id}")).await.body;
    assert_eq!((opened["status"].as_str(), opened["replayable"].as_bool()), (Some("dead"), Some(false)));
    assert_eq!(opened["not_replayable"], "its verification is expired");

    // A filtered replay refuses it the same way, one by one.
    let batch =
        app.post_json_as(&operator, "/v1/ops/dead-letters/replay", &json!({ "reason": "retries_exhausted" })).await;
    assert_eq!(batch.status, 200, "{:?}", batch.body);
    assert!(batch.body["done"].as_array().unwrap().is_empty());
    assert_eq!(batch.body["refused"][0]["error"], "verification_not_pending");
    assert!(app.twilio.sent_sms().await.is_empty());
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_tenant_ops_key_sees_and_acts_on_its_own_letters_only() {
    let app = spawn_app().await;
    let operator = app.operator_key().await;
    let (_, letter) = dead_lettered(&app, &operator, "+14155552694").await;
    let id = letter["id"].as_str().unwrap();
    let other = app.other_tenant(&format!("other-{}", &app.tenant[1..9])).await;

    let seen = app.get_as(&other, &format!("/v1/ops/dead-letters/{id}")).await;
    assert_eq!(seen.status, 404, "another tenant's letter does not exist for it");
    let replay = app.post_json_as(&other, &format!("/v1/ops/dead-letters/{id}/replay"), &json!({})).await;
    assert_eq!(replay.status, 404);
    let discard =
        app.post_json_as(&other, &format!("/v1/ops/dead-letters/{id}/discard"), &json!({ "reason": "x" })).await;
    assert_eq!(discard.status, 404);
    let batch = app.post_json_as(&other, "/v1/ops/dead-letters/replay", &json!({})).await;
    assert!(batch.body["done"].as_array().unwrap().is_empty());
    assert!(app.dead_letters_as(&other).await.is_empty());
    let paged = app.get_as(&other, &format!("/v1/ops/dead-letters?status=all&after={id}")).await;
    assert!(paged.body["dead_letters"].as_array().unwrap().is_empty(), "another tenant's id is no cursor");
    let named = app.get_as(&other, &format!("/v1/ops/dead-letters?tenant={}", app.tenant)).await;
    assert_eq!(named.status, 404, "another tenant's name reads as no tenant: {:?}", named.body);
    let overview = app.get_as(&other, "/v1/ops/overview").await;
    assert_eq!(overview.body["view"], format!("other-{}", &app.tenant[1..9]).as_str());
    assert_eq!(overview.body["dead_letters"]["waiting"], 0);
    assert!(overview.body["recent_failures"].as_array().unwrap().is_empty(), "not the other tenant's failures");

    // The owner's ops key sees it; a key without `ops` does not reach the page at all.
    assert_eq!(app.get(&format!("/v1/ops/dead-letters/{id}")).await.status, 200);
    let spec = verifyd::api_keys::KeySpec {
        label: None,
        scopes: verifyd::api_keys::Scopes::parse(&["verify"]).unwrap(),
        sources: Default::default(),
    };
    let tenant = verifyd_core::store::tenants::by_name(&app.pool, &app.tenant).await.unwrap().unwrap();
    let verify_only =
        verifyd::api_keys::issue(&app.pool, &tenant, &spec, &verifyd::api_keys::console_operator()).await.unwrap();
    let refused = app.get_as(verify_only.secret(), "/v1/ops/overview").await;
    assert_eq!((refused.status, refused.body["required_scope"].as_str()), (403, Some("ops")));
    // An operator key reaches the operator endpoints, nothing else.
    let create = app
        .post_json_as(
            &operator,
            "/v1/verifications",
            &json!({ "account_id": "a", "phone": "+14155552699", "channel": "sms" }),
        )
        .await;
    assert_eq!((create.status, create.body["error"].as_str()), (403, Some("forbidden_scope")));
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_overview_shows_a_providers_circuit_opening_in_two_processes() {
    let mut app = spawn_app_with(|c| {
        c.providers.breaker =
            verifyd_core::delivery::breaker::BreakerSettings { failures_to_open: 2, open_for: Duration::from_secs(60) };
    })
    .await;
    let operator = app.operator_key().await;
    app.start_worker_process().await;
    // Twilio is down for good.
    app.twilio.fail_next(10_000, Failure::code(503, "20500")).await;
    for n in 0..12 {
        let created = app.create_verification(&format!("c{n}"), &format!("+1415555{:04}", 2700 + n), "sms").await;
        assert_eq!(created.status, 201);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let (overview, twilio) = loop {
        let overview = app.get_as(&operator, "/v1/ops/overview").await.body;
        let twilio =
            overview["providers"].as_array().unwrap().iter().find(|p| p["provider"] == "twilio").cloned().unwrap();
        let open: Vec<&Value> =
            twilio["circuits"].as_array().unwrap().iter().filter(|c| c["state"] == "open").collect();
        let roles: std::collections::BTreeSet<&str> = open.iter().filter_map(|c| c["role"].as_str()).collect();
        if roles.len() == 2 {
            break (overview, twilio);
        }
        assert!(Instant::now() < deadline, "the circuit did not show open in both processes: {twilio}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for circuit in twilio["circuits"].as_array().unwrap() {
        assert!(circuit["open_until"].as_str().is_some(), "{circuit}");
    }
    let processes: Vec<&str> =
        overview["processes"].as_array().unwrap().iter().filter_map(|p| p["role"].as_str()).collect();
    assert!(processes.contains(&"serve") && processes.contains(&"worker"), "{processes:?}");
    // Counted across both processes: every call failed, as unavailable.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let overview = app.get_as(&operator, "/v1/ops/overview").await.body;
        let twilio =
            overview["providers"].as_array().unwrap().iter().find(|p| p["provider"] == "twilio").cloned().unwrap();
        let window = &twilio["5m"];
        if window["sends"].as_i64().unwrap_or(0) >= 4 {
            assert_eq!(window["accepted"], 0);
            assert_eq!(window["success_rate"], 0.0);
            assert_eq!(window["errors"]["unavailable"], window["sends"], "{window}");
            assert!(window["p95_ms"].as_f64().is_some());
            break;
        }
        assert!(Instant::now() < deadline, "calls were not counted: {window}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let queues = app.get_as(&operator, "/v1/ops/queues").await;
    let sms = queues.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == app.topology.dispatch_queue(verifyd_providers::domain::Channel::Sms).as_str())
        .cloned()
        .unwrap();
    assert_eq!(sms["consumers"], 4, "two consumers in each process");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_cli_lists_shows_replays_and_discards_dead_letters_as_the_operator() {
    let app = spawn_app_with(breaker_out_of_the_way).await;
    let operator = app.operator_key().await;
    let phone = "+14155552696";
    let (verification_id, letter) = dead_lettered(&app, &operator, phone).await;
    let id = letter["id"].as_str().unwrap();

    let listed = app.run_cli(&["dead-letters", "list", "--json"]).await;
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["dead_letters"][0]["id"], id);
    let human = app.run_cli(&["dead-letters", "list", "--reason", "retries_exhausted"]).await;
    assert!(String::from_utf8_lossy(&human.stdout).contains(id));
    let shown = app.run_cli(&["dead-letters", "show", id, "--json"]).await;
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 4);
    let missing = app.run_cli(&["dead-letters", "show", "00000000-0000-4000-8000-000000000000"]).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no dead letter with that id"));

    let replayed = app.run_cli(&["dead-letters", "replay", id]).await;
    assert!(replayed.status.success(), "{}", String::from_utf8_lossy(&replayed.stderr));
    assert!(String::from_utf8_lossy(&replayed.stdout).contains(&format!("replayed {id}")));
    // The running serve's relay publishes what the CLI queued.
    let code = app.code_sent_to(phone).await;
    assert_eq!(app.check(&verification_id, &code).await.body["status"], "approved");
    let twice = app.run_cli(&["dead-letters", "replay", id]).await;
    assert!(!twice.status.success(), "a second replay is refused");
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("replayed already"),
        "{}",
        String::from_utf8_lossy(&twice.stderr)
    );

    let (_, other) = dead_lettered(&app, &operator, "+14155552697").await;
    let other_id = other["id"].as_str().unwrap();
    let discarded = app
        .run_cli(&[
            "dead-letters",
            "discard",
            "--reason",
            "retries_exhausted",
            "--because",
            "number ported away",
            "--json",
        ])
        .await;
    assert!(discarded.status.success(), "{}", String::from_utf8_lossy(&discarded.stderr));
    let discarded: Value = serde_json::from_slice(&discarded.stdout).unwrap();
    assert_eq!(discarded["discarded"][0]["id"], other_id);
    let audit = app.get_as(&operator, "/v1/ops/audit").await;
    let actors: Vec<&str> =
        audit.body["entries"].as_array().unwrap().iter().filter_map(|e| e["actor"].as_str()).collect();
    assert_eq!(&actors[..2], ["cli:ops-tester", "cli:ops-tester"], "discard and replay at the console: {actors:?}");
    let actions: Vec<&str> =
        audit.body["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["dead_letter.discarded", "dead_letter.replayed", "operator_key.created"]);

    let overview = app.run_cli(&["overview", "--json"]).await;
    assert!(overview.status.success(), "{}", String::from_utf8_lossy(&overview.stderr));
    let overview: Value = serde_json::from_slice(&overview.stdout).unwrap();
    assert_eq!(overview["view"], "deployment");
    assert!(overview["processes"].as_array().unwrap().iter().any(|p| p["role"] == "serve" && p["state"] == "running"));
    let queues = app.run_cli(&["queues", "--json"]).await;
    let queues: Value = serde_json::from_slice(&queues.stdout).unwrap();
    assert!(queues["queues"].as_array().unwrap().iter().all(|q| q["oldest_age_secs"].is_number()), "{queues}");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_letter_dead_lettered_by_an_earlier_version_is_recorded_once_and_replayable() {
    use lapin::types::{AMQPValue, FieldTable};

    let app = spawn_app().await;
    let operator = app.operator_key().await;
    // A verification whose job an earlier verifyd gave up on: its letter has a
    // reason in words only, no id and no kind.
    let phone = "+14155552689";
    let created = app.create_verification("legacy", phone, "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    app.code_sent_to(phone).await;
    let job = json!({ "job_id": uuid::Uuid::new_v4(), "verification_id": id, "channel": "sms", "retry": 2 });
    let mut headers = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(s.into());
    headers
        .insert("x-verifyd-reason".into(), text("retries exhausted after 3 tries: twilio is temporarily unavailable"));
    headers.insert("x-verifyd-source-routing-key".into(), text("sms"));
    headers.insert("x-verifyd-source-exchange".into(), text(&app.topology.dispatch_exchange()));
    headers.insert("x-verifyd-dead-lettered-at".into(), text("2026-12-01T10:00:00+00:00"));
    let ch = app.amqp.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    for _ in 0..2 {
        // The same letter twice, as a redelivery would bring it.
        let props = lapin::BasicProperties::default().with_headers(headers.clone());
        ch.basic_publish(
            "".into(),
            app.topology.dead_letters().as_str().into(),
            Default::default(),
            job.to_string().as_bytes(),
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }

    let letter = app.wait_for_dead_letter(&operator, |l| l["verification_id"] == id.as_str()).await;
    assert_eq!(letter["reason_kind"], "retries_exhausted", "classified from its words");
    assert_eq!(letter["tenant"], app.tenant.as_str());
    assert_eq!(letter["dead_lettered_at"], "2026-12-01T10:00:00.000000Z");
    assert_eq!(letter["replayable"], true);
    app.delivery_settled().await;
    assert_eq!(app.dead_letters_as(&operator).await.len(), 1, "recorded once");
    let _ = &letter;

    // A letter from another sender, with what PostgreSQL cannot store (NUL) in
    // its headers: recorded all the same, not requeued for ever.
    let mut odd = FieldTable::default();
    odd.insert("x-verifyd-reason".into(), text("bad\0reason"));
    let props = lapin::BasicProperties::default().with_headers(odd).with_content_type("text/\0plain".into());
    ch.basic_publish("".into(), app.topology.dead_letters().as_str().into(), Default::default(), b"\0\xff", props)
        .await
        .unwrap()
        .await
        .unwrap();
    let other = app.wait_for_dead_letter(&operator, |l| l["reason_kind"] == "other").await;
    assert_eq!(other["reason"], "bad\u{fffd}reason");
    assert_eq!(other["source_queue"], "unknown");
    assert_eq!(other["body"]["bytes"], 2);

    let replayed = app
        .post_json_as(&operator, &format!("/v1/ops/dead-letters/{}/replay", letter["id"].as_str().unwrap()), &json!({}))
        .await;
    assert_eq!(replayed.status, 200, "{:?}", replayed.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sms_to(&app, phone).await < 2 {
        assert!(Instant::now() < deadline, "the replay did not send");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
