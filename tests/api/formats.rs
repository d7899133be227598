//! One way to write a moment in every answer and every event: RFC 3339 in
//! UTC, `Z`, exactly six fraction digits, the same value whichever route reads it.

use std::time::Duration;

use serde_json::{Value, json};
use totp_rs::Totp;

use crate::helpers::{TestApp, spawn_app};

const PHONE: &str = "+14155552691";

/// True for `2026-12-02T15:32:19.123456Z` and nothing else: the text is
/// what `verifyd_core::timestamp` writes for the moment it reads as.
fn is_canonical(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s)
        .is_ok_and(|t| verifyd_core::timestamp::format(t.with_timezone(&chrono::Utc)) == s)
}

/// Every string in `value` that starts like a date, with where it was found.
fn moments(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) if s.len() >= 11 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' => {
            found.push((at.to_owned(), s.clone()))
        }
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| moments(v, &format!("{at}[{i}]"), found)),
        Value::Object(map) => map.iter().for_each(|(k, v)| moments(v, &format!("{at}.{k}"), found)),
        _ => {}
    }
}

fn assert_canonical(what: &str, value: &Value) -> usize {
    let mut found = Vec::new();
    moments(value, what, &mut found);
    let bad: Vec<_> = found.iter().filter(|(_, s)| !is_canonical(s)).collect();
    assert!(bad.is_empty(), "timestamps not written as 2026-12-02T15:32:19.123456Z: {bad:?}");
    found.len()
}

async fn read(app: &TestApp, key: &str, path: &str) -> Value {
    let r = app.get_as(key, path).await;
    assert_eq!(r.status, 200, "GET {path}: {:?}", r.body);
    r.body
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn every_timestamp_in_answers_and_events_is_utc_with_six_fraction_digits() {
    let app = spawn_app().await;
    let operator = app.operator_key().await;
    let mut events = app.capture_events("#").await;
    let mut seen = 0;

    let created = app.create_verification("ada", PHONE, "sms").await;
    assert_eq!(created.status, 201);
    seen += assert_canonical("POST /v1/verifications", &created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let read_back = read(&app, &app.api_key, &format!("/v1/verifications/{id}")).await;
    seen += assert_canonical("GET /v1/verifications/{id}", &read_back);
    assert_eq!(created.body["expires_at"], read_back["expires_at"], "one moment, one text");
    let code = app.code_sent_to(PHONE).await;
    let checked = app.check(&id, &code).await;
    seen += assert_canonical("check", &checked.body);

    let enrolled = app.post_json("/v1/accounts/ada/factors/totp", &json!({})).await;
    seen += assert_canonical("enrol totp", &enrolled.body);
    let uri = enrolled.body["otpauth_uri"].as_str().unwrap().to_owned();
    let factor = enrolled.body["factor"]["id"].as_str().unwrap().to_owned();
    let totp = Totp::from_url(&uri).unwrap().generate_current().to_string();
    let confirmed =
        app.post_json(&format!("/v1/accounts/ada/factors/{factor}/confirm"), &json!({ "code": totp })).await;
    seen += assert_canonical("confirm", &confirmed.body);
    seen += assert_canonical("factors", &read(&app, &app.api_key, "/v1/accounts/ada/factors").await);

    let login = app.post_json("/v1/accounts/ada/login", &json!({})).await;
    seen += assert_canonical("login", &login.body);
    let made = app.post_json("/v1/api-keys", &json!({ "scopes": ["verify"] })).await;
    seen += assert_canonical("POST /v1/api-keys", &made.body);
    seen += assert_canonical("GET /v1/api-keys", &read(&app, &app.api_key, "/v1/api-keys").await);
    seen += assert_canonical("audit", &read(&app, &app.api_key, "/v1/audit").await);
    seen += assert_canonical("account audit", &read(&app, &app.api_key, "/v1/accounts/ada/audit").await);
    seen += assert_canonical("overview", &read(&app, &operator, "/v1/ops/overview").await);
    seen += assert_canonical(
        "deliveries",
        &read(&app, &operator, &format!("/v1/ops/deliveries?verification_id={id}")).await,
    );

    let mut in_events = 0;
    for message in events.drain(Duration::from_millis(800)).await {
        in_events += assert_canonical(&format!("event {}", message.routing_key), &message.json());
    }
    assert!(in_events >= 4, "events carry their moments ({in_events} seen)");
    assert!(seen >= 15, "the answers above carry moments ({seen} seen)");
}
