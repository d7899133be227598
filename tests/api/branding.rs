//! A tenant's display name and its own SMS and voice texts, set over the API
//! and seen where a person sees them: the SMS and the call Twilio receives,
//! the authenticator app's issuer.

use serde_json::{Value, json};

use crate::helpers::{TestApp, captured_logs, mentions, spawn_app, spawn_app_with};

async fn sms_body_to(app: &TestApp, phone: &str) -> (String, String) {
    let code = app.code_sent_to(phone).await;
    let sms = app.twilio.sent_sms().await;
    let body = sms.iter().rev().find(|s| s.to == phone).expect("an SMS to the phone").body.clone();
    (code, body)
}

async fn put(app: &TestApp, path: &str, body: Value) -> crate::helpers::Reply {
    app.put_json(path, &body).await
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_sms_twilio_receives_is_the_tenants_template_with_the_code_and_the_right_plural() {
    // A 60-second code: "1 minute", the singular.
    let app = spawn_app_with(|c| c.verification.ttl_secs = 60).await;
    let branding = put(&app, "/v1/settings/branding", json!({ "display_name": "  Acme Cloud " })).await;
    assert_eq!(branding.status, 200, "{}", branding.body);
    assert_eq!(
        branding.body,
        json!({ "display_name": "Acme Cloud", "app_name": "Acme Cloud", "totp_issuer": "Acme Cloud" })
    );

    let saved =
        put(&app, "/v1/templates/sms/en", json!({ "text": "{app}: {code} is your code. Valid for {expires_in}." }))
            .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert_eq!(saved.body["source"], "tenant");
    assert_eq!(saved.body["template_locale"], "en");
    // Its longest text: "Acme Cloud: 0000000000 is your code. Valid for 55 seconds."
    assert_eq!(saved.body["sms"], json!({ "encoding": "GSM-7", "segments": 1, "length_max": 58 }));
    assert_eq!(saved.body["example"], "Acme Cloud: 1234567 is your code. Valid for 1 minute.");
    let pt = put(&app, "/v1/templates/sms/pt", json!({ "text": "{app}: o seu código é {code}, válido {expires_in}." }))
        .await;
    assert_eq!(pt.status, 200, "{}", pt.body);

    let created = app.create_verification("ada", "+14155550141", "sms").await;
    assert_eq!(created.status, 201, "{}", created.body);
    let (code, body) = sms_body_to(&app, "+14155550141").await;
    assert_eq!(body, format!("Acme Cloud: {code} is your code. Valid for 1 minute."));

    // pt-BR has no template of its own: the base language's, in Portuguese plurals.
    let body = json!({ "account_id": "bia", "phone": "+14155550142", "channel": "sms", "locale": "pt-BR" });
    assert_eq!(app.post_json("/v1/verifications", &body).await.status, 201);
    let (code, body) = sms_body_to(&app, "+14155550142").await;
    assert_eq!(body, format!("Acme Cloud: o seu código é {code}, válido 1 minuto."));
    let resolved = app.get("/v1/templates/sms/pt-BR").await;
    assert_eq!(
        (resolved.body["source"].clone(), resolved.body["template_locale"].clone()),
        (json!("tenant"), json!("pt"))
    );

    // French has none: the built-in text, naming the display name.
    let body = json!({ "account_id": "cy", "phone": "+14155550143", "channel": "sms", "locale": "fr" });
    assert_eq!(app.post_json("/v1/verifications", &body).await.status, 201);
    let (code, body) = sms_body_to(&app, "+14155550143").await;
    assert_eq!(body, format!("Votre code de vérification Acme Cloud est {code}. Il expire dans 1 minute."));

    assert!(!mentions(&captured_logs(), &code), "no code in the logs");
    let audit = app.get("/v1/audit").await;
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("template.") || a.starts_with("branding."))
        .collect();
    assert_eq!(actions, ["template.saved", "template.saved", "branding.changed"], "{}", audit.body);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_call_reads_the_voice_template_then_the_digits() {
    let app = spawn_app().await;
    put(&app, "/v1/settings/branding", json!({ "display_name": "Acme Cloud" })).await;
    let saved = put(&app, "/v1/templates/voice/en", json!({ "text": "This is {app}. Your code is {code}." })).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(saved.body.get("sms").is_none(), "no SMS figures for a call");
    assert_eq!(saved.body["example"], "This is Acme Cloud. Your code is 1, 2, 3, 4, 5, 6, 7");

    app.create_verification("ada", "+14155550151", "voice").await;
    let code = app.code_sent_to("+14155550151").await;
    let calls = app.twilio.placed_calls().await;
    let twiml = &calls.last().expect("a call").twiml;
    let digits = code.chars().map(String::from).collect::<Vec<_>>().join(", ");
    assert!(twiml.contains("This is Acme Cloud. Your code is</Say>"), "{twiml}");
    assert_eq!(twiml.matches(&digits).count(), 2, "read twice: {twiml}");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_authenticator_shows_the_display_name_as_issuer() {
    let app = spawn_app().await;
    let before = app.post_json("/v1/accounts/ada/factors/totp", &json!({ "label": "ada@example.com" })).await;
    let uri = before.body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with(&format!("otpauth://totp/{}:ada%40example.com?", app.tenant)), "{uri}");

    put(&app, "/v1/settings/branding", json!({ "display_name": "Acme Cloud ☁" })).await;
    let enrolled = app.post_json("/v1/accounts/bo/factors/totp", &json!({ "label": "bo@example.com" })).await;
    assert_eq!(enrolled.status, 201, "{}", enrolled.body);
    let uri = enrolled.body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Acme%20Cloud%20%E2%98%81:bo%40example.com?"), "{uri}");
    assert!(uri.contains("&issuer=Acme%20Cloud%20%E2%98%81"), "{uri}");
    let totp = totp_rs::Totp::from_url(uri).expect("an app reads it");
    assert_eq!(totp.issuer(), Some("Acme Cloud ☁"));
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_template_or_name_that_cannot_be_sent_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let refused = |reply: &crate::helpers::Reply, field: &str| {
        assert_eq!(reply.status, 422, "{}", reply.body);
        assert_eq!((reply.body["error"].as_str(), reply.body["field"].as_str()), (Some("invalid_field"), Some(field)));
        reply.body["detail"].as_str().unwrap_or_default().to_owned()
    };
    let detail = refused(&put(&app, "/v1/templates/sms/en", json!({ "text": "Welcome to {app}!" })).await, "text");
    assert!(detail.contains("{code}"), "{detail}");
    let detail = refused(&put(&app, "/v1/templates/sms/en", json!({ "text": "{code} for {name}" })).await, "text");
    assert!(detail.contains("`{name}`"), "{detail}");
    refused(&put(&app, "/v1/templates/voice/en", json!({ "text": "{code} is your code" })).await, "text");
    refused(&put(&app, "/v1/templates/sms/it", json!({ "text": "{code} scade in {expires_in}" })).await, "text");
    let long = format!("{{code}} {}", "ç".repeat(700));
    let detail = refused(&put(&app, "/v1/templates/sms/en", json!({ "text": long })).await, "text");
    assert!(detail.contains("11 SMS segments"), "{detail}");
    refused(&put(&app, "/v1/templates/sms/english", json!({ "text": "{code}" })).await, "locale");
    refused(&put(&app, "/v1/templates/fax/en", json!({ "text": "{code}" })).await, "channel");
    refused(&put(&app, "/v1/settings/branding", json!({ "display_name": "Acme\nCloud" })).await, "display_name");
    refused(&put(&app, "/v1/settings/branding", json!({ "display_name": "x".repeat(65) })).await, "display_name");
    assert_eq!(app.get("/v1/templates").await.body, json!({ "templates": [] }), "nothing was saved");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_answer_says_what_an_sms_costs() {
    let app = spawn_app().await;
    // The longest text is the 10-digit code, a space and 80 characters.
    let ucs2 = put(&app, "/v1/templates/sms/en", json!({ "text": format!("{{code}} {}", "ç".repeat(80)) })).await;
    assert_eq!(ucs2.body["sms"], json!({ "encoding": "UCS-2", "segments": 2, "length_max": 91 }), "{}", ucs2.body);
    let gsm = put(&app, "/v1/templates/sms/en", json!({ "text": format!("{{code}} {}", "c".repeat(80)) })).await;
    assert_eq!(gsm.body["sms"], json!({ "encoding": "GSM-7", "segments": 1, "length_max": 91 }));
    // `€` is in GSM-7's extension table: two septets.
    let euro = put(&app, "/v1/templates/sms/en", json!({ "text": "{code}: 1 €" })).await;
    assert_eq!(euro.body["sms"], json!({ "encoding": "GSM-7", "segments": 1, "length_max": 16 }));
    let built_in = app.get("/v1/templates/sms/ja").await;
    assert_eq!(built_in.body["source"], "built_in");
    assert_eq!(built_in.body["sms"]["encoding"], "UCS-2");
    let listed = app.get("/v1/templates").await;
    assert_eq!(listed.body["templates"].as_array().map(Vec::len), Some(1));
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn another_tenant_is_unaffected_and_a_deleted_template_gives_back_the_built_in_text() {
    let app = spawn_app().await;
    put(&app, "/v1/settings/branding", json!({ "display_name": "Acme Cloud" })).await;
    put(&app, "/v1/templates/sms/en", json!({ "text": "{app} code {code}" })).await;
    let other = app.other_tenant(&format!("{}-b", app.tenant)).await;

    let body = json!({ "account_id": "zed", "phone": "+14155550161", "channel": "sms" });
    assert_eq!(app.post_json_as(&other, "/v1/verifications", &body).await.status, 201);
    let (code, text) = sms_body_to(&app, "+14155550161").await;
    assert_eq!(text, format!("Your Acme verification code is {code}. It expires in 10 minutes."));
    assert_eq!(app.get_as(&other, "/v1/templates").await.body, json!({ "templates": [] }));
    let theirs = app.get_as(&other, "/v1/settings/branding").await.body;
    assert_eq!(theirs["display_name"], Value::Null);
    assert_eq!(theirs["app_name"], "Acme");
    let reply = app.send(app.client.delete(app.url("/v1/templates/sms/en")).bearer_auth(&other)).await;
    assert_eq!(reply.status, 404, "another tenant's template is not theirs to delete");

    app.create_verification("ada", "+14155550162", "sms").await;
    let (code, text) = sms_body_to(&app, "+14155550162").await;
    assert_eq!(text, format!("Acme Cloud code {code}"));

    let deleted = app.send(app.client.delete(app.url("/v1/templates/sms/en")).bearer_auth(&app.api_key)).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body["deleted"]["text"], "{app} code {code}");
    let again = app.send(app.client.delete(app.url("/v1/templates/sms/en")).bearer_auth(&app.api_key)).await;
    assert_eq!(again.status, 404);
    assert_eq!(app.get("/v1/templates/sms/en").await.body["source"], "built_in");

    app.create_verification("bo", "+14155550163", "sms").await;
    let (code, text) = sms_body_to(&app, "+14155550163").await;
    assert_eq!(text, format!("Your Acme Cloud verification code is {code}. It expires in 10 minutes."));

    let removed = put(&app, "/v1/settings/branding", json!({ "display_name": null })).await;
    assert_eq!(removed.body, json!({ "display_name": null, "app_name": "Acme", "totp_issuer": app.tenant }));
    app.create_verification("cy", "+14155550164", "sms").await;
    let (code, text) = sms_body_to(&app, "+14155550164").await;
    assert_eq!(text, format!("Your Acme verification code is {code}. It expires in 10 minutes."));
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn branding_needs_the_admin_scope() {
    let app = spawn_app().await;
    let verify_only =
        app.post_json("/v1/api-keys", &json!({ "scopes": ["verify", "enrol"], "label": "backend" })).await;
    let key = verify_only.body["key"].as_str().expect("a key").to_owned();
    let reply = app
        .send(app.client.put(app.url("/v1/templates/sms/en")).bearer_auth(&key).json(&json!({ "text": "{code}" })))
        .await;
    assert_eq!((reply.status, reply.body["required_scope"].clone()), (403, json!("admin")));
    let reply = app.get_as(&key, "/v1/settings/branding").await;
    assert_eq!(reply.status, 403);
}
