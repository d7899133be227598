//! The code leaves verifyd only in the provider request: it is not in any table,
//! queue message or log line.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{captured_logs, spawn_app};

#[actix_rt::test]
async fn codes_never_appear_in_the_database_queues_or_logs() {
    let app = spawn_app().await;
    let mut events = app.capture_events("#").await;
    let mut jobs = app.tap_dispatch().await;
    // One delivery fails first (its error is stored and logged), then succeeds.
    app.twilio.fail_next(503, 20500, 1).await;

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

    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let mut dump = String::new();
    for table in &tables {
        let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t");
        let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&app.pool).await.unwrap();
        dump.push_str(&rows);
    }
    assert!(dump.contains("+14155552675"), "the dump is real: it holds the phone");
    let logs = captured_logs();
    assert!(logs.contains("verification created"), "logs were captured");
    assert!(logs.contains("POST /v1/verifications"), "the access log (log crate) was captured");

    for code in &codes {
        assert!(!dump.contains(code.as_str()), "code found in the database");
        for m in &messages {
            assert!(!m.text().contains(code.as_str()), "code found in a queue message on {}", m.routing_key);
        }
        assert!(!logs.contains(code.as_str()), "code found in the logs");
    }
    assert!(!logs.contains(&app.api_key), "API key found in the logs");
    assert!(!logs.contains("+14155552675"), "full phone number in the logs (must be masked)");
}
