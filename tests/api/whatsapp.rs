//! Codes by WhatsApp: a request over HTTP or AMQP, through RabbitMQ, to
//! Twilio's WhatsApp sender or Meta's Cloud API (their mocks), and the code
//! the template carried approves the verification.

use std::time::Duration;

use lapin::BasicProperties;
use serde_json::json;
use verifyd_providers::testkit::{Failure, MetaMock};
use verifyd_providers::twilio::TwilioWhatsApp;

use crate::helpers::spawn_app_with;

const TIMEOUT: Duration = Duration::from_secs(10);
const PHONE_NUMBER_ID: &str = "106540352242922";

fn twilio_whatsapp() -> TwilioWhatsApp {
    TwilioWhatsApp { from: "+15005550007".into(), content_sid: "HXb5b62575e6e4ff6129ad7c8efe1f983e".into() }
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_whatsapp_code_goes_through_twilio_and_makes_a_whatsapp_factor() {
    let app = spawn_app_with(|c| {
        if let Some(twilio) = c.providers.twilio.as_mut() {
            twilio.whatsapp = Some(twilio_whatsapp());
        }
        c.providers.whatsapp = vec!["twilio".into()];
    })
    .await;
    let phone = "+14155552690";
    let created = app
        .post_json("/v1/verifications", &json!({ "account_id": "wanda", "phone": phone, "channel": "whatsapp" }))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["channel"], "whatsapp");
    let id = created.body["id"].as_str().unwrap().to_owned();

    let code = app.twilio.wait_for_code(phone, TIMEOUT).await.expect("a WhatsApp message");
    let message = app.twilio.sent_sms().await.remove(0);
    assert!(message.whatsapp, "sent as WhatsApp, not as an SMS");
    assert_eq!(message.from, "whatsapp:+15005550007");
    assert_eq!(message.content_sid.as_deref(), Some("HXb5b62575e6e4ff6129ad7c8efe1f983e"));
    assert_eq!(message.content_variables, Some(format!(r#"{{"1":"{code}"}}"#)));

    let checked = app.check(&id, &code).await;
    assert_eq!(checked.body["status"], "approved", "{:?}", checked.body);
    let factors = app.get("/v1/accounts/wanda/factors").await.body["factors"].clone();
    assert_eq!((factors[0]["kind"].as_str(), factors[0]["phone"].as_str()), (Some("whatsapp"), Some(phone)));
    // A WhatsApp factor's login code goes by WhatsApp again, and answers the challenge.
    let login = app.post_json("/v1/accounts/wanda/login", &json!({ "organisation_id": "acme" })).await;
    assert_eq!(login.body["decision"], "challenge", "{:?}", login.body);
    assert_eq!(login.body["challenge"]["sent"]["channel"], "whatsapp", "{:?}", login.body);
    let code = app.twilio.wait_for_next_code(phone, 1, TIMEOUT).await.expect("the login code");
    let challenge = login.body["challenge"]["id"].as_str().unwrap();
    let passed =
        app.post_json(&format!("/v1/accounts/wanda/challenges/{challenge}/answer"), &json!({ "code": code })).await;
    assert_eq!((passed.body["decision"].as_str(), passed.body["answered_by"].as_str()), (Some("open"), Some("phone")));
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_published_request_fails_over_from_meta_to_twilio_and_a_number_not_on_whatsapp_fails_for_good() {
    let meta = MetaMock::start().await;
    let meta_config = meta.config("EAAG-test-token", PHONE_NUMBER_ID, "verifyd_code");
    let app = spawn_app_with(move |c| {
        c.providers.meta = Some(meta_config);
        if let Some(twilio) = c.providers.twilio.as_mut() {
            twilio.whatsapp = Some(twilio_whatsapp());
        }
        c.providers.whatsapp = vec!["meta".into(), "twilio".into()];
    })
    .await;

    // Meta's first answer is a service error: Twilio delivers the code.
    meta.fail_next(1, Failure::Unavailable).await;
    let (reply_to, mut replies) = app.reply_queue().await;
    let phone = "+14155552691";
    let body = json!({ "account_id": "wes", "phone": phone, "channel": "whatsapp" }).to_string();
    let props = BasicProperties::default()
        .with_reply_to(reply_to.as_str().into())
        .with_message_id("wa-1".into())
        .with_content_type("application/json".into());
    app.publish_request(&app.tenant, body.as_bytes(), props).await;
    let created = replies.wait_for_event("verification.created", TIMEOUT).await;
    let id = created["verification_id"].as_str().unwrap().to_owned();
    let code = app.twilio.wait_for_code(phone, TIMEOUT).await.expect("Twilio delivered it");
    assert_eq!(
        app.attempts_of(&id, 2).await,
        [("meta".to_owned(), "retryable_error".to_owned()), ("twilio".to_owned(), "sent".to_owned())]
    );
    assert_eq!(app.check(&id, &code).await.body["status"], "approved");

    // Meta delivers the next one itself, in the template language of the locale.
    let next = "+14155552692";
    let created = app
        .post_json(
            "/v1/verifications",
            &json!({ "account_id": "wes2", "phone": next, "channel": "whatsapp", "locale": "fr" }),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = meta.wait_for_code(next, TIMEOUT).await.expect("Meta delivered it");
    let sent = meta.sent_messages().await.remove(0);
    assert_eq!((sent.template.as_str(), sent.to.as_str()), ("verifyd_code", "14155552692"));
    assert_eq!(sent.button_code.as_deref(), Some(code.as_str()), "the copy-code button carries the code too");
    assert_eq!(app.check(&id, &code).await.body["status"], "approved");

    // "Message undeliverable" (131026): the number is not on WhatsApp. No
    // other WhatsApp provider is asked, and no SMS is sent in its place.
    meta.fail_next(1, Failure::InvalidNumber).await;
    let absent = "+14155552693";
    let created = app
        .post_json("/v1/verifications", &json!({ "account_id": "wes3", "phone": absent, "channel": "whatsapp" }))
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.attempts_of(&id, 1).await, [("meta".to_owned(), "permanent_error".to_owned())]);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let read = loop {
        let read = app.get(&format!("/v1/verifications/{id}")).await;
        if read.body["status"] == "failed" || std::time::Instant::now() > deadline {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(read.body["status"], "failed", "{:?}", read.body);
    assert_eq!(read.body["delivery"]["reason"], "channel_not_supported");
    assert_eq!(app.twilio.deliveries_to(absent).await, 0);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn whatsapp_keeps_geo_permissions_of_its_own_and_takes_no_tenant_template() {
    let app = spawn_app_with(|c| {
        if let Some(twilio) = c.providers.twilio.as_mut() {
            twilio.whatsapp = Some(twilio_whatsapp());
        }
        c.providers.whatsapp = vec!["twilio".into()];
    })
    .await;
    let set = app.put_json("/v1/settings/geo-permissions", &json!({ "whatsapp": ["GB"] })).await;
    assert_eq!((set.status, set.body["whatsapp"].clone()), (200, json!(["GB"])), "{:?}", set.body);
    let us = "+14155552694";
    let refused =
        app.post_json("/v1/verifications", &json!({ "account_id": "geo", "phone": us, "channel": "whatsapp" })).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (403, Some("destination_not_allowed")));
    assert_eq!(refused.body["channel"], "whatsapp");
    let by_sms =
        app.post_json("/v1/verifications", &json!({ "account_id": "geo", "phone": us, "channel": "sms" })).await;
    assert_eq!(by_sms.status, 201, "SMS keeps its own (default) list: {:?}", by_sms.body);

    let template = app.put_json("/v1/templates/whatsapp/en", &json!({ "text": "Code {code}" })).await;
    assert_eq!((template.status, template.body["field"].as_str()), (422, Some("text")), "{:?}", template.body);
    assert!(template.body["detail"].as_str().unwrap_or_default().contains("WhatsApp presets"), "{:?}", template.body);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn meta_delivery_statuses_are_signed_webhooks_that_move_the_delivery_forward() {
    let meta = MetaMock::start().await;
    let mut meta_config = meta.config("EAAG-test-token", PHONE_NUMBER_ID, "verifyd_code");
    meta_config.app_secret = Some("meta-app-secret".to_owned().into());
    meta_config.verify_token = Some("subscribe-me".to_owned().into());
    let app = spawn_app_with(move |c| {
        c.providers.meta = Some(meta_config);
        c.providers.whatsapp = vec!["meta".into()];
    })
    .await;
    let mut events = app.capture_events("#").await;

    // The subscription handshake echoes the challenge only for the right token.
    let url = |token: &str| {
        app.url(&format!("/v1/callbacks/meta?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"))
    };
    let ok = app.client.get(url("subscribe-me")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    assert_eq!(app.client.get(url("guess")).send().await.unwrap().status(), 403);

    let phones = ["+14155552695", "+14155552696"];
    let mut ids = Vec::new();
    for (n, phone) in phones.iter().enumerate() {
        let body = json!({ "account_id": format!("rx-{n}"), "phone": phone, "channel": "whatsapp" });
        let created = app.post_json("/v1/verifications", &body).await;
        ids.push(created.body["id"].as_str().unwrap().to_owned());
        meta.wait_for_code(phone, TIMEOUT).await.expect("sent");
    }
    let sent = meta.sent_messages().await;
    let wamid = |phone: &str| sent.iter().find(|m| format!("+{}", m.to) == phone).unwrap().id.clone();
    for id in &ids {
        app.attempts_of(id, 1).await;
    }

    let hook = |id: String, status: &str, error: Option<i64>| {
        let mut status = json!({ "id": id, "status": status, "timestamp": "1767225600", "recipient_id": "1" });
        if let Some(code) = error {
            status["errors"] = json!([{ "code": code, "title": "Message undeliverable" }]);
        }
        json!({ "object": "whatsapp_business_account", "entry": [{ "id": "102290129340398", "changes": [
            { "field": "messages", "value": { "messaging_product": "whatsapp", "statuses": [status] } }
        ] }] })
        .to_string()
    };
    let post = |body: String, signature: String| {
        let request = app
            .client
            .post(app.url("/v1/callbacks/meta"))
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", signature)
            .body(body);
        async move { request.send().await.unwrap().status() }
    };
    let delivered = hook(wamid(phones[0]), "delivered", None);
    assert_eq!(post(delivered.clone(), "sha256=00".into()).await, 403, "an unsigned status is refused");
    let signature = verifyd_providers::meta::signature("meta-app-secret", delivered.as_bytes());
    assert_eq!(post(delivered, signature).await, 200);
    let read = app.get(&format!("/v1/verifications/{}", ids[0])).await;
    assert_eq!(read.body["delivery"]["state"], "delivered", "{:?}", read.body);

    let failed = hook(wamid(phones[1]), "failed", Some(131026));
    let signature = verifyd_providers::meta::signature("meta-app-secret", failed.as_bytes());
    assert_eq!(post(failed, signature).await, 200);
    let event = events.wait_for_event("verification.delivery_failed", TIMEOUT).await;
    assert_eq!(event["verification_id"], ids[1].as_str(), "{event:?}");
    let read = app.get(&format!("/v1/verifications/{}", ids[1])).await;
    assert_eq!(read.body["delivery"]["error_code"], "131026", "{:?}", read.body);

    // A status that overtakes the record of its send (Meta has the message,
    // its answer to verifyd is still on the way) is kept, and applied once the
    // send is recorded.
    meta.set_latency(Duration::from_millis(1500));
    let phone = "+14155552697";
    let created = app
        .post_json("/v1/verifications", &json!({ "account_id": "rx-2", "phone": phone, "channel": "whatsapp" }))
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    meta.wait_for_code(phone, TIMEOUT).await.expect("sent");
    let early = meta.sent_messages().await.into_iter().find(|m| m.to == phone[1..]).unwrap().id;
    let delivered = hook(early, "delivered", None);
    let signature = verifyd_providers::meta::signature("meta-app-secret", delivered.as_bytes());
    assert_eq!(post(delivered, signature).await, 200);
    assert!(app.attempts_of(&id, 0).await.is_empty(), "the receipt came before the attempt was recorded");
    let read = app.wait_for_verification(&id, |v| v["delivery"]["state"] == "delivered").await;
    assert_eq!(read["delivery"]["provider"], "meta", "{read:?}");
    assert_eq!(app.attempts_of(&id, 1).await, vec![("meta".to_owned(), "sent".to_owned())]);
}
