//! Verification requests published to RabbitMQ instead of HTTP.

use std::time::Duration;

use lapin::BasicProperties;
use serde_json::json;

use crate::helpers::spawn_app;

const PHONE: &str = "+14155552673";

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_published_request_is_delivered_and_its_outcomes_reach_reply_to() {
    let app = spawn_app().await;
    let (reply_to, mut replies) = app.reply_queue().await;
    let body = json!({ "account_id": "amqp-user", "phone": PHONE, "channel": "sms" }).to_string();
    let props = BasicProperties::default()
        .with_reply_to(reply_to.as_str().into())
        .with_correlation_id("corr-42".into())
        .with_message_id("msg-1".into())
        .with_content_type("application/json".into());
    app.publish_request(&app.tenant, body.as_bytes(), props.clone()).await;

    let created = replies.next(Duration::from_secs(10)).await.expect("a reply");
    assert_eq!(created.properties.correlation_id().as_ref().map(|c| c.as_str()), Some("corr-42"));
    let created = created.json();
    assert_eq!(created["event"], "verification.created");
    let id = created["verification_id"].as_str().unwrap().to_owned();

    let code = app.code_sent_to(PHONE).await;
    let delivered = replies.wait_for_event("verification.delivered", Duration::from_secs(10)).await;
    assert_eq!(delivered["verification_id"], id.as_str());
    assert_eq!(delivered["provider"], "twilio");

    // The redelivered (or re-published) request creates nothing new.
    app.publish_request(&app.tenant, body.as_bytes(), props).await;
    app.delivery_settled().await;

    let checked = app.check(&id, &code).await;
    assert_eq!(checked.body["status"], "approved");
    let approved = replies.wait_for_event("verification.approved", Duration::from_secs(10)).await;
    assert_eq!(approved["verification_id"], id.as_str());

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(count, 1, "same message_id, same verification");
    assert_eq!(app.twilio.sent_sms().await.len(), 1);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn malformed_requests_go_to_dead_letters_with_the_reason() {
    let app = spawn_app().await;
    let operator = app.operator_key().await;
    let mut rejected = app.capture_events(&format!("{}.verification.rejected", app.tenant)).await;

    app.publish_request(&app.tenant, b"{not json", BasicProperties::default()).await;
    let letter = app.wait_for_dead_letter(&operator, |l| l["reason_kind"] == "malformed").await;
    assert_eq!(letter["body"]["text"], "{not json");
    assert_eq!(letter["tenant"], app.tenant.as_str(), "the routing key named the tenant");
    assert_eq!(letter["source_queue"], app.topology.requests_queue().as_str());
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.starts_with("malformed request:"), "{reason}");
    assert_eq!(letter["replayable"], false, "{letter}");
    assert_eq!(rejected.next(Duration::from_secs(10)).await.expect("event").json()["error"], "invalid_request");

    // An array is no request, even one that fits the fields by position.
    app.publish_request(&app.tenant, br#"["acct","+14156901375","sms"]"#, BasicProperties::default()).await;
    let array = |l: &serde_json::Value| l["reason"].as_str().is_some_and(|r| r.contains("not an array"));
    let letter = app.wait_for_dead_letter(&operator, array).await;
    assert_eq!(letter["body"]["text"], r#"["acct","+*********75","sms"]"#, "kept, its number masked");
    assert_eq!(letter["reason_kind"], "malformed");
    assert_eq!(rejected.next(Duration::from_secs(10)).await.expect("event").json()["error"], "invalid_request");

    let bad_phone = json!({ "account_id": "u", "phone": "555-0100", "channel": "sms" }).to_string();
    app.publish_request(&app.tenant, bad_phone.as_bytes(), BasicProperties::default()).await;
    let letter = app.wait_for_dead_letter(&operator, |l| l["reason_kind"] == "invalid_request").await;
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("phone"), "{reason}");

    app.publish_request("no-such-tenant", b"{}", BasicProperties::default()).await;
    let letter = app.wait_for_dead_letter(&operator, |l| l["reason_kind"] == "unknown_tenant").await;
    assert!(letter["reason"].as_str().unwrap().contains("unknown tenant"));
    assert!(letter.get("tenant").is_none(), "no tenant owns it: {letter}");
    // A letter of no tenant is the deployment operator's alone.
    let tenant_view = app.dead_letters_as(&app.api_key).await;
    assert_eq!(tenant_view.len(), 3, "the tenant's ops key sees its own three letters: {tenant_view:?}");

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(count, 0);
    assert!(app.twilio.sent_sms().await.is_empty());
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_reply_to_naming_someone_elses_queue_is_refused() {
    let app = spawn_app().await;
    let body = json!({ "account_id": "u", "phone": PHONE, "channel": "sms" }).to_string();
    let props = BasicProperties::default().with_reply_to("billing-events".into()).with_message_id("m-2".into());
    app.publish_request(&app.tenant, body.as_bytes(), props).await;

    let letter = app.wait_for_dead_letter(&app.api_key, |l| l["reason_kind"] == "invalid_request").await;
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.starts_with("reply_to must be"), "{reason}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(count, 0);
}
