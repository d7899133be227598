//! Bad input gets a clear 4xx with a machine-readable error and changes nothing.

use serde_json::json;

use crate::helpers::spawn_app;

#[actix_rt::test(system = "verifyd::system::System")]
async fn malformed_phone_numbers_are_422_naming_the_field() {
    let app = spawn_app().await;
    for phone in ["4155552671", "+1 415 555 2671", "+1555", "+999123456789", "", "tel:+14155552671"] {
        let r = app.create_verification("u", phone, "sms").await;
        assert_eq!(r.status, 422, "{phone:?}: {:?}", r.body);
        assert_eq!(r.body["error"], "invalid_field");
        assert_eq!(r.body["field"], "phone");
        assert_eq!(r.headers["content-type"], "application/problem+json");
    }
    let r = app.create_verification("u", "+14155552671", "whatsapp").await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("channel")));
    // A phone is not where an email code goes: the field that does not belong is named.
    let r = app.create_verification("u", "+14155552671", "email").await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("phone")));
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

#[actix_rt::test(system = "verifyd::system::System")]
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

#[actix_rt::test(system = "verifyd::system::System")]
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

#[actix_rt::test(system = "verifyd::system::System")]
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

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_code_sent_as_a_number_is_refused_without_being_echoed() {
    let app = spawn_app().await;
    let created = app.create_verification("u", "+14155552682", "sms").await;
    let id = created.body["id"].as_str().unwrap();
    let r = app.post_json(&format!("/v1/verifications/{id}/check"), &json!({ "code": 7654321 })).await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("malformed_body")));
    assert!(r.body["detail"].as_str().unwrap().contains("`code` must be a string"));
    assert!(!r.body.to_string().contains("7654321"), "the typed code came back: {}", r.body);
}

#[actix_rt::test(system = "verifyd::system::System")]
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

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_idempotency_key_reused_for_another_phone_is_409() {
    let app = spawn_app().await;
    let first = json!({ "account_id": "u", "phone": "+14155552684", "channel": "sms", "idempotency_key": "k1" });
    assert_eq!(app.post_json("/v1/verifications", &first).await.status, 201);
    let other = json!({ "account_id": "u", "phone": "+14155552685", "channel": "sms", "idempotency_key": "k1" });
    let r = app.post_json("/v1/verifications", &other).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["error"], "idempotency_conflict");
}

/// A body is a JSON object: serde would fill a struct from an array by
/// position, so `["acct", "+1…", "sms"]` created a verification and
/// `[null, null]` emptied the geo permissions.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_json_array_is_no_body_and_changes_nothing() {
    let app = spawn_app().await;
    let r = app.post_raw("/v1/verifications", "application/json", r#"["acct","+14156901375","sms"]"#).await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("malformed_body")), "{:?}", r.body);
    assert_eq!(r.body["detail"], "malformed request body: the body must be a JSON object, not an array");
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(none, 0, "no verification from an array");

    let set = app.put_json("/v1/settings/geo-permissions", &json!({ "sms": ["GB"] })).await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    let r = app.put_json("/v1/settings/geo-permissions", &json!([null, null])).await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("malformed_body")));
    assert_eq!(app.get("/v1/settings/geo-permissions").await.body["sms"], json!(["GB"]), "the lists are kept");

    let enrolled = app.post_json("/v1/accounts/ada/factors/totp", &json!({})).await;
    let factor = enrolled.body["factor"]["id"].as_str().unwrap().to_owned();
    let r = app.post_json(&format!("/v1/accounts/ada/factors/{factor}/confirm"), &json!(["966891"])).await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("malformed_body")));
    let factors = app.get("/v1/accounts/ada/factors").await.body["factors"].clone();
    assert_eq!(factors[0]["status"], "pending", "{factors}");
}

/// PostgreSQL refuses NUL in text: a NUL anywhere in a body is refused at
/// the edge, naming where, instead of a 500 from the store.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_nul_in_any_text_is_400_naming_the_field_never_500() {
    let app = spawn_app().await;
    let reset =
        app.post_json("/v1/accounts/ada/reset", &json!({ "actor": "admin-1", "reason": "lost\u{0}phone" })).await;
    assert_eq!((reset.status, reset.body["error"].as_str()), (400, Some("malformed_body")), "{:?}", reset.body);
    assert!(reset.body["detail"].as_str().unwrap().contains("`reason` holds a NUL"), "{:?}", reset.body);
    let body = json!({ "account_id": "u", "phone": "+14155552671", "channel": "sms", "idempotency_key": "k\u{0}" });
    let r = app.post_json("/v1/verifications", &body).await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("malformed_body")), "{:?}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("`idempotency_key`"));
    let r = app.post_json("/v1/api-keys", &json!({ "scopes": ["verify"], "label": "a\u{0}" })).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(app.twilio.sent_sms().await.is_empty());
}

/// A value of the wrong JSON type is a malformed body, whichever field it is:
/// a phone or a code sent as a number alike, and the number is not quoted.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_number_where_text_belongs_is_400_for_phone_and_code_alike() {
    let app = spawn_app().await;
    let phone = app
        .post_json("/v1/verifications", &json!({ "account_id": "u", "phone": 14155552671_u64, "channel": "sms" }))
        .await;
    assert_eq!((phone.status, phone.body["error"].as_str()), (400, Some("malformed_body")));
    let created = app.create_verification("u", "+14155552671", "sms").await;
    let id = created.body["id"].as_str().unwrap();
    let code = app.post_json(&format!("/v1/verifications/{id}/check"), &json!({ "code": 1234567 })).await;
    assert_eq!((code.status, code.body["error"].as_str()), (400, Some("malformed_body")), "{:?}", code.body);
    assert!(!code.body["detail"].as_str().unwrap().contains("1234567"));
    let attempts = app.get(&format!("/v1/verifications/{id}")).await.body["attempts"].clone();
    assert_eq!(attempts, 0, "a malformed check is no attempt");
}
