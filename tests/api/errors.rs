//! Bad input gets a clear 4xx with a machine-readable error and changes nothing.

use serde_json::json;

use crate::helpers::spawn_app;

#[actix_rt::test]
async fn malformed_phone_numbers_are_422_naming_the_field() {
    let app = spawn_app().await;
    for phone in ["4155552671", "+1 415 555 2671", "+1555", "+999123456789", "", "tel:+14155552671"] {
        let r = app.create_verification("u", phone, "sms").await;
        assert_eq!(r.status, 422, "{phone:?}: {:?}", r.body);
        assert_eq!(r.body["error"], "invalid_field");
        assert_eq!(r.body["field"], "phone");
        assert_eq!(r.headers["content-type"], "application/problem+json");
    }
    let r = app.create_verification("u", "+14155552671", "email").await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("channel")));
    let r = app.create_verification("", "+14155552671", "sms").await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("account_id")));
    let r = app
        .post_json(
            "/v1/verifications",
            &json!({ "account_id": "u", "phone": "+14155552671", "channel": "sms", "code_length": 11 }),
        )
        .await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("code_length")));
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(none, 0);
    assert!(app.twilio.sent_sms().await.is_empty());
}

#[actix_rt::test]
async fn malformed_json_is_400_and_unknown_fields_are_refused() {
    let app = spawn_app().await;
    let r = app.post_raw("/v1/verifications", "application/json", "{\"account_id\": ").await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["error"], "malformed_body");
    let r = app.post_raw("/v1/verifications", "text/plain", "hello").await;
    assert_eq!(r.status, 415);
    assert_eq!(r.body["error"], "unsupported_media_type");
    let r = app
        .post_json(
            "/v1/verifications",
            &json!({ "account_id": "u", "phone": "+14155552671", "channel": "sms", "code": "1234567" }),
        )
        .await;
    assert_eq!(r.status, 400, "a caller cannot choose the code: {:?}", r.body);
    let big = format!("{{\"account_id\": \"{}\"}}", "x".repeat(20_000));
    let r = app.post_raw("/v1/verifications", "application/json", big).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
}

#[actix_rt::test]
async fn checks_refuse_codes_that_are_not_digits() {
    let app = spawn_app().await;
    let created = app.create_verification("u", "+14155552671", "sms").await;
    let id = created.body["id"].as_str().unwrap();
    for code in ["abc", "12", "12345678901", ""] {
        let r = app.check(id, code).await;
        assert_eq!(r.status, 422, "{code:?}");
        assert_eq!(r.body["field"], "code");
    }
    // Refused input does not use up attempts.
    assert_eq!(app.get(&format!("/v1/verifications/{id}")).await.body["attempts_left"], 5);
}

#[actix_rt::test]
async fn requests_without_a_valid_key_are_401_and_unknown_ids_404() {
    let app = spawn_app().await;
    let body = json!({ "account_id": "u", "phone": "+14155552671", "channel": "sms" });
    let r = app.client.post(app.url("/v1/verifications")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    for key in ["nope", "vk_000000000000.secret", &format!("{}x", app.api_key)] {
        let r = app.post_json_as(key, "/v1/verifications", &body).await;
        assert_eq!(r.status, 401, "{key}");
        assert_eq!(r.body["error"], "unauthenticated");
    }
    assert_eq!(app.get("/v1/verifications/not-a-uuid").await.status, 404);
    assert_eq!(app.get(&format!("/v1/verifications/{}", uuid::Uuid::new_v4())).await.status, 404);
    let health = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[actix_rt::test]
async fn a_code_sent_as_a_number_is_refused_without_being_echoed() {
    let app = spawn_app().await;
    let created = app.create_verification("u", "+14155552682", "sms").await;
    let id = created.body["id"].as_str().unwrap();
    let r = app.post_json(&format!("/v1/verifications/{id}/check"), &json!({ "code": 7654321 })).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["field"], "code");
    assert!(!r.body.to_string().contains("7654321"), "the typed code came back: {}", r.body);
}

#[actix_rt::test]
async fn a_resend_with_a_bad_body_is_refused_not_guessed() {
    let app = spawn_app().await;
    let created = app.create_verification("u", "+14155552683", "sms").await;
    let id = created.body["id"].as_str().unwrap();
    let path = format!("/v1/verifications/{id}/resend");
    let r = app.post_json(&path, &json!({ "chanel": "voice" })).await;
    assert_eq!(r.status, 400, "a misspelt field is not a resend by SMS: {:?}", r.body);
    let r = app.post_json(&path, &json!({ "channel": "fax" })).await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("channel")));
    assert_eq!(app.get(&format!("/v1/verifications/{id}")).await.body["sends"], 1);
    // No body at all is a plain resend.
    let r = app.client.post(app.url(&path)).bearer_auth(&app.api_key).send().await.unwrap();
    assert_eq!(r.status(), 202);
}

#[actix_rt::test]
async fn an_idempotency_key_reused_for_another_phone_is_409() {
    let app = spawn_app().await;
    let first = json!({ "account_id": "u", "phone": "+14155552684", "channel": "sms", "idempotency_key": "k1" });
    assert_eq!(app.post_json("/v1/verifications", &first).await.status, 201);
    let other = json!({ "account_id": "u", "phone": "+14155552685", "channel": "sms", "idempotency_key": "k1" });
    let r = app.post_json("/v1/verifications", &other).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["error"], "idempotency_conflict");
}
