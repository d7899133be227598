//! The code leaves verifyd only in the provider request: it is not in any table,
//! queue message or log line.

use std::time::Duration;
use verifyd_providers::testkit::Failure;

use serde_json::json;

use crate::helpers::{captured_logs, mentions, spawn_app};

#[actix_rt::test(system = "verifyd::system::System")]
async fn codes_never_appear_in_the_database_queues_or_logs() {
    let app = spawn_app().await;
    let mut events = app.capture_events("#").await;
    let mut jobs = app.tap_dispatch().await;
    // One delivery fails first (its error is stored and logged), then succeeds.
    app.twilio.fail_next(1, Failure::code(503, "20500")).await;

    let mut codes = Vec::new();
    for (n, (phone, channel)) in [("+14155552675", "sms"), ("+14155552676", "voice")].into_iter().enumerate() {
        let created = app.create_verification(&format!("secret-{n}"), phone, channel).await;
        let id = created.body["id"].as_str().unwrap().to_owned();
        let code = app.code_sent_to(phone).await;
        let resent = app.post_json(&format!("/v1/verifications/{id}/resend"), &json!({})).await;
        assert_eq!(resent.status, 202);
        let wrong: String = code.chars().rev().collect();
        if wrong != code {
            app.check(&id, &wrong).await;
        }
        assert_eq!(app.check(&id, &code).await.body["status"], "approved");
        codes.push(code);
    }
    events.wait_for_event("factor.added", Duration::from_secs(10)).await;
    let mut messages = events.drain(Duration::from_millis(800)).await;
    let job_messages = jobs.drain(Duration::from_millis(300)).await;
    assert!(job_messages.len() >= 4, "2 creates + 2 resends went through the dispatch exchange");
    messages.extend(job_messages);
    let retried: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts WHERE outcome = 'retryable_error'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(retried, 1, "the failure path was taken");

    let dump = app.database_dump().await;
    assert!(dump.contains("+14155552675"), "the dump is real: it holds the phone");
    let logs = captured_logs();
    assert!(logs.contains("verification created"), "logs were captured");
    assert!(logs.contains("POST /v1/verifications"), "the access log (log crate) was captured");

    for code in &codes {
        assert!(!dump.contains(code.as_str()), "code found in the database");
        for m in &messages {
            assert!(!m.text().contains(code.as_str()), "code found in a queue message on {}", m.routing_key);
        }
        assert!(!mentions(&logs, code), "code found in the logs");
    }
    assert!(!logs.contains(&app.api_key), "API key found in the logs");
    assert!(!logs.contains("+14155552675"), "full phone number in the logs (must be masked)");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_key_or_code_in_a_query_string_never_reaches_the_access_log() {
    let app = spawn_app().await;
    let created = app.create_verification("query-leak", "+14155552677", "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = app.code_sent_to("+14155552677").await;
    // A backend that puts secrets where they do not belong: refused, and not kept.
    let marker = format!("leak-{}", &app.tenant[1..9]);
    let url = app.url(&format!("/v1/verifications/{id}?api_key={}&code={code}&m={marker}", app.api_key));
    let refused = app.send(app.client.get(url)).await;
    assert_eq!(refused.status, 401, "a key in the query string is no credential");
    let listed = app.get(&format!("/v1/verifications/{id}?code={code}&m={marker}")).await;
    assert!(listed.status == 200 || listed.status == 422, "{:?}", listed.body);

    let logs = captured_logs();
    assert!(logs.contains(&format!("GET /v1/verifications/{id}")), "the access log saw both requests");
    assert!(!logs.contains(&marker), "the query string is not logged");
    assert!(!logs.contains(&app.api_key), "API key found in the logs");
    assert!(!logs.contains(&format!("code={code}")), "code found in the logs");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let request =
            app.client.get(app.url("/v1/api-keys")).header("Authorization", format!("{scheme} {}", app.api_key));
        let reply = app.send(request).await;
        assert_ne!(reply.status, 401, "{scheme}: {:?}", reply.body);
    }
}
