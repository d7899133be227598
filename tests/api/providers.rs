//! Each provider through the real path: HTTP in, RabbitMQ, the dispatch
//! consumer, the provider's API (its test-kit mock), the code checked back.

use std::time::Duration;

use crate::helpers::{TestApp, spawn_app_with};

const UK: &str = "+447911123456";

async fn verify_with(app: &TestApp, channel: &str, code_of: impl AsyncFnOnce() -> Option<String>) {
    let created = app.create_verification("uma", UK, channel).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let code = code_of().await.expect("the provider received the code");
    let checked = app.check(created.body["id"].as_str().unwrap(), &code).await;
    assert_eq!(checked.body["status"], "approved", "{:?}", checked.body);
}

/// Plivo reads a call's script from `answer_url`: verifyd gives it a signed link
/// to its own API, which serves Plivo XML while the code is valid.
#[actix_rt::test(system = "verifyd::system::System")]
async fn plivo_calls_fetch_their_script_from_a_signed_verifyd_link() {
    let plivo = verifyd_providers::testkit::PlivoMock::start().await;
    let config = plivo.config("MAXXXXXXXXXXXXXXXXXX", "plivo-token", "+14155550100");
    // The public URL must be known before start: take a free port for it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app_with(move |c| {
        c.http.bind = format!("127.0.0.1:{port}");
        c.http.public_url = Some(format!("http://127.0.0.1:{port}"));
        c.providers.plivo = Some(config);
        c.providers.voice = vec!["plivo".into()];
    })
    .await;
    verify_with(&app, "voice", async || plivo.wait_for_code(UK, Duration::from_secs(10)).await).await;

    let call = plivo.placed_calls().await.pop().unwrap();
    let link = call.answer_url.clone();
    assert!(link.starts_with(&format!("http://127.0.0.1:{port}/v1/voice-scripts/")), "{link}");
    // The link dies with the code: the verification is approved now.
    let after = app.client.post(&link).send().await.unwrap();
    assert_eq!(after.status(), 409);
    // A link for another verification, with this one's signature, gets nothing.
    let token = link.rsplit('/').next().unwrap();
    let other = format!("{}{}", uuid::Uuid::new_v4().simple(), &token[32..]);
    let forged = link.replace(token, &other);
    assert_eq!(app.client.post(&forged).send().await.unwrap().status(), 404);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn telnyx_sends_the_sms() {
    let telnyx = verifyd_providers::testkit::TelnyxMock::start().await;
    let config = telnyx.config("KEY0123456789", "+14155550100");
    let app = spawn_app_with(move |c| {
        c.providers.telnyx = Some(config);
        c.providers.sms = vec!["telnyx".into()];
    })
    .await;
    verify_with(&app, "sms", async || telnyx.wait_for_code(UK, Duration::from_secs(10)).await).await;
    assert_eq!(telnyx.sent_sms().await.len(), 1);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_signed_webhook_gateway_receives_the_sms() {
    let gateway =
        verifyd_providers::testkit::WebhookReceiverMock::start("a-webhook-secret-of-at-least-32-bytes!").await;
    let config = gateway.config();
    let app = spawn_app_with(move |c| {
        c.providers.webhook = Some(config);
        c.providers.sms = vec!["webhook".into()];
    })
    .await;
    // The mock answers 401 to anything not signed with the secret.
    verify_with(&app, "sms", async || gateway.wait_for_code(UK, Duration::from_secs(10)).await).await;
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_dev_inbox_keeps_the_message_readable_in_a_file() {
    let path = std::env::temp_dir().join(format!("verifyd-inbox-{}.jsonl", uuid::Uuid::new_v4().simple()));
    let inbox = verifyd_providers::inbox::InboxReader::new(&path);
    let config = verifyd_providers::inbox::InboxConfig::new(&path);
    let app = spawn_app_with(move |c| {
        c.providers.inbox = Some(config);
        c.providers.sms = vec!["inbox".into()];
    })
    .await;
    verify_with(&app, "sms", async || inbox.wait_for_code(UK, Duration::from_secs(10)).await.unwrap()).await;
    let _ = std::fs::remove_file(&path);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn sinch_sends_the_sms_and_reads_the_call() {
    use verifyd_providers::testkit::{SINCH_MOCK_APPLICATION_KEY, SINCH_MOCK_APPLICATION_SECRET, SinchMock};
    let sinch = SinchMock::start().await;
    let config = sinch
        .config("plan1234", "sinch-token", "+14155550100")
        .with_voice(SINCH_MOCK_APPLICATION_KEY, SINCH_MOCK_APPLICATION_SECRET);
    let app = spawn_app_with(move |c| {
        c.providers.sinch = Some(config);
        c.providers.sms = vec!["sinch".into()];
        c.providers.voice = vec!["sinch".into()];
    })
    .await;
    verify_with(&app, "sms", async || sinch.wait_for_code(UK, Duration::from_secs(10)).await).await;
    let seen = sinch.deliveries_to(UK).await;
    let created = app.create_verification("vic", UK, "voice").await;
    let code = sinch.wait_for_next_code(UK, seen, Duration::from_secs(10)).await.expect("a callout");
    let checked = app.check(created.body["id"].as_str().unwrap(), &code).await;
    assert_eq!(checked.body["status"], "approved");
}

/// Vonage calls carry an RS256 JWT and an NCCO talk action; Vonage's signed
/// delivery receipts reach `/v1/callbacks/vonage` and an unsigned one is refused.
#[actix_rt::test(system = "verifyd::system::System")]
async fn vonage_calls_read_the_code_and_its_signed_receipts_update_the_attempt() {
    use verifyd_providers::testkit::VonageMock;
    use verifyd_providers::vonage::SignatureMethod;
    const SECRET: &str = "vonage-signature-secret";
    let vonage = VonageMock::start().await;
    let mut config = vonage.config("key-1", "secret-1", "447700900001");
    config.signature_secret = Some(SECRET.to_owned().into());
    config.signature_method = SignatureMethod::HmacSha256;
    let app = spawn_app_with(move |c| {
        c.providers.vonage = Some(config);
        c.providers.sms = vec!["vonage".into()];
        c.providers.voice = vec!["vonage".into()];
    })
    .await;
    verify_with(&app, "voice", async || vonage.wait_for_code(UK, Duration::from_secs(10)).await).await;

    let created = app.create_verification("sam", UK, "sms").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let sms = loop {
        if let Some(sms) = vonage.sent_sms().await.pop() {
            break sms;
        }
        assert!(std::time::Instant::now() < deadline, "no SMS reached Vonage");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    // The attempt row is written once Vonage's answer is in.
    let id: uuid::Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
    let receipt = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT receipt_status FROM delivery_attempts WHERE verification_id = $1 AND outcome = 'sent'",
        )
        .bind(id)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
    };
    while receipt().await.is_none() {
        assert!(std::time::Instant::now() < deadline, "no attempt recorded");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let url = app.url("/v1/callbacks/vonage");
    let signed = vonage.signed_receipt(
        &sms,
        "delivered",
        "0",
        SECRET,
        SignatureMethod::HmacSha256,
        std::time::SystemTime::now(),
    );
    let mut forged = signed.clone();
    forged.retain(|(k, _)| k != "sig");
    assert_eq!(app.client.post(&url).form(&forged).send().await.unwrap().status(), 403);
    assert_eq!(receipt().await, Some(None), "an unsigned receipt changes nothing");
    assert_eq!(app.client.post(&url).form(&signed).send().await.unwrap().status(), 204);
    assert_eq!(receipt().await, Some(Some("delivered".to_owned())));
}
