//! Codes by email: a request over HTTP or AMQP, through RabbitMQ, to a real
//! SMTP server on localhost (`SmtpSink`) or to SendGrid's API (`SendGridMock`),
//! and the code read from the message approves the verification.

use std::time::Duration;

use lapin::BasicProperties;
use serde_json::{Value, json};
use verifyd_providers::testkit::{Failure, SendGridMock, SmtpSink};

use crate::helpers::{TestApp, captured_logs, mentions, spawn_app, spawn_app_with};

const FROM: &str = "codes@acme.example";
const TIMEOUT: Duration = Duration::from_secs(10);

async fn app_with_smtp() -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let smtp = sink.config(FROM);
    let app = spawn_app_with(move |config| {
        config.providers.smtp = Some(smtp);
        config.providers.email = vec!["smtp".into()];
    })
    .await;
    (app, sink)
}

async fn create_email(app: &TestApp, account: &str, email: &str) -> crate::helpers::Reply {
    app.post_json("/v1/verifications", &json!({ "account_id": account, "email": email, "channel": "email" })).await
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_email_code_goes_through_the_smtp_relay_and_approves_the_verification() {
    let (app, sink) = app_with_smtp().await;
    let mut events = app.capture_events("#").await;

    let created = create_email(&app, "ada", "Ada.Lovelace@Bücher.example").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["channel"], "email");
    assert_eq!(created.body["to"], "Ada.Lovelace@xn--bcher-kva.example", "the domain in its ASCII form");
    let id = created.body["id"].as_str().unwrap().to_owned();

    let code = sink.wait_for_code("Ada.Lovelace@xn--bcher-kva.example", TIMEOUT).await.expect("an email arrives");
    assert_eq!(code.len(), 7);
    let message = sink.received().await.remove(0);
    assert_eq!(message.envelope_from, FROM);
    assert_eq!(message.header("Auto-Submitted"), Some("auto-generated"));
    let message_id = message.header("Message-ID").unwrap();
    assert!(message_id.starts_with('<') && message_id.ends_with("@acme.example>"), "{message_id}");
    assert_eq!(message.subject, "Your Acme verification code", "the subject names the app, never the code");
    assert!(message.text.contains(&format!("Your Acme verification code is {code}")), "{}", message.text);
    assert!(message.html.contains(&format!(">{code}</strong>")), "{}", message.html);

    let delivered = events.wait_for_event("verification.delivered", TIMEOUT).await;
    assert_eq!(delivered["provider"], "smtp");
    assert_eq!(delivered["channel"], "email");
    let checked = app.check(&id, &code).await;
    assert_eq!(checked.body["status"], "approved", "{:?}", checked.body);
    let read = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(read.body["delivery"]["channel"], "email");
    // The approved address is the account's first factor, and the answer a step-up proof.
    assert!(checked.body["proof"].is_string(), "{:?}", checked.body);
    let factors = app.get("/v1/accounts/ada/factors").await.body["factors"].clone();
    assert_eq!(factors[0]["kind"], "email", "{factors:?}");
    assert_eq!(factors[0]["email"], "Ada.Lovelace@xn--bcher-kva.example");
    assert!(factors[0].get("phone").is_none());
    let added = events.wait_for_event("factor.added", TIMEOUT).await;
    assert_eq!(added["factor_kind"], "email");
}

/// The two-factor experience that begins with an email: a code sent to the
/// user's address before the 2FA settings open (a step-up), and the login
/// gate under a `required` policy answered by an email code.
#[actix_rt::test(system = "verifyd::system::System")]
async fn an_email_factor_answers_step_up_and_login_challenges() {
    let (app, sink) = app_with_smtp().await;
    let to = "eve@example.com";
    let created = create_email(&app, "eve", to).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = sink.wait_for_code(to, TIMEOUT).await.unwrap();
    assert_eq!(app.check(&id, &code).await.body["status"], "approved");
    let factor_id = app.get("/v1/accounts/eve/factors").await.body["factors"][0]["id"].as_str().unwrap().to_owned();

    // Before the 2FA settings open: a code to the address.
    let step_up = app.post_json("/v1/accounts/eve/step-up", &json!({})).await;
    assert_eq!(step_up.status, 200, "{:?}", step_up.body);
    let challenge = &step_up.body["challenge"];
    assert_eq!(challenge["sent"]["channel"], "email", "{challenge:?}");
    assert_eq!(challenge["sent"]["to"], "e***@example.com");
    assert_eq!(challenge["factors"][0]["to"], "e***@example.com", "a challenge shows the address masked");
    let challenge_id = challenge["id"].as_str().unwrap().to_owned();
    let code = sink.wait_for_next_code(to, 1, TIMEOUT).await.expect("the step-up code by email");
    let answer = |challenge: String, code: String| {
        let path = format!("/v1/accounts/eve/challenges/{challenge}/answer");
        let app = &app;
        async move { app.post_json(&path, &json!({ "code": code })).await }
    };
    let passed = answer(challenge_id, code).await;
    assert_eq!((passed.body["decision"].as_str(), passed.body["answered_by"].as_str()), (Some("open"), Some("email")));
    assert_eq!(passed.body["factor_id"], factor_id.as_str());
    let proof = passed.body["proof"].as_str().unwrap().to_owned();
    let verified = app.post_json("/v1/proofs/verify", &json!({ "proof": proof })).await;
    assert_eq!((verified.status, verified.body["account_id"].as_str()), (200, Some("eve")), "{:?}", verified.body);

    // Login under a required policy: challenged, answered by the emailed code.
    let policy = json!({ "policy": "required", "actor": "admin-1" });
    assert_eq!(app.put_json("/v1/organisations/acme/policy", &policy).await.status, 200);
    let login = app.post_json("/v1/accounts/eve/login", &json!({ "organisation_id": "acme" })).await;
    assert_eq!(login.body["decision"], "challenge", "{:?}", login.body);
    // An email factor is not called or texted.
    let by_sms = app
        .post_json(
            &format!("/v1/accounts/eve/challenges/{}/send", login.body["challenge"]["id"].as_str().unwrap()),
            &json!({ "channel": "sms" }),
        )
        .await;
    assert_eq!((by_sms.status, by_sms.body["field"].as_str()), (422, Some("channel")), "{:?}", by_sms.body);
    let code = sink.wait_for_next_code(to, 2, TIMEOUT).await.expect("the login code by email");
    let passed = answer(login.body["challenge"]["id"].as_str().unwrap().to_owned(), code).await;
    assert_eq!(passed.body["answered_by"], "email", "{:?}", passed.body);
}

/// A process without an email provider still opens the challenge of an
/// account whose factor is an address, and says why no code went out: the
/// login is not bricked by an operator's configuration.
#[actix_rt::test(system = "verifyd::system::System")]
async fn without_an_email_provider_the_challenge_still_opens_and_says_why_no_code_went() {
    let (mut app, sink) = app_with_smtp().await;
    let created = create_email(&app, "ivy", "ivy@example.com").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = sink.wait_for_code("ivy@example.com", TIMEOUT).await.unwrap();
    assert_eq!(app.check(&id, &code).await.body["status"], "approved");
    let other = app.start_another_serve_with(|c| c.providers.email = vec![]).await;

    let login = app.post_json_at(&other, "/v1/accounts/ivy/step-up", &json!({})).await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    assert_eq!(login.body["challenge"]["send_unavailable"], "email", "{:?}", login.body);
    assert!(login.body["challenge"]["sent"].is_null());
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_request_published_on_rabbitmq_is_sent_by_sendgrid_and_a_resend_sends_the_same_code() {
    let sendgrid = SendGridMock::start().await;
    let config = sendgrid.config("SG.test-key", FROM);
    let app = spawn_app_with(move |c| {
        c.providers.sendgrid = Some(config);
        c.providers.email = vec!["sendgrid".into()];
    })
    .await;
    let (reply_to, mut replies) = app.reply_queue().await;
    let body = json!({ "account_id": "grace", "email": "grace@example.com", "channel": "email", "locale": "es" });
    let props = BasicProperties::default()
        .with_reply_to(reply_to.as_str().into())
        .with_message_id("email-1".into())
        .with_content_type("application/json".into());
    app.publish_request(&app.tenant, body.to_string().as_bytes(), props).await;

    let created = replies.wait_for_event("verification.created", TIMEOUT).await;
    assert_eq!(created["to"], "grace@example.com");
    let id = created["verification_id"].as_str().unwrap().to_owned();
    let code = sendgrid.wait_for_code("grace@example.com", TIMEOUT).await.expect("SendGrid got the email");
    let sent = sendgrid.sent_emails().await.remove(0);
    assert_eq!(sent.subject, "Tu código de verificación de Acme");
    assert_eq!(sent.from, FROM);
    assert_eq!(sent.from_name.as_deref(), Some("Acme"));
    assert_eq!(sent.tracking_settings["click_tracking"]["enable"], false);
    let delivered = replies.wait_for_event("verification.delivered", TIMEOUT).await;
    assert_eq!(delivered["provider"], "sendgrid");

    let resent = app.post_json(&format!("/v1/verifications/{id}/resend"), &json!({})).await;
    assert_eq!(resent.status, 202, "{:?}", resent.body);
    let again = sendgrid.wait_for_next_code("grace@example.com", 1, TIMEOUT).await.expect("a second email");
    assert_eq!(again, code, "a resend sends the same code");
    // A phone channel cannot reach an address.
    let by_sms = app.post_json(&format!("/v1/verifications/{id}/resend"), &json!({ "channel": "sms" })).await;
    assert_eq!((by_sms.status, by_sms.body["field"].as_str()), (422, Some("channel")), "{:?}", by_sms.body);

    assert_eq!(app.check(&id, &code).await.body["status"], "approved");
    replies.wait_for_event("verification.approved", TIMEOUT).await;
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn when_sendgrid_is_down_the_smtp_relay_delivers_the_code() {
    let sendgrid = SendGridMock::start().await;
    let sink = SmtpSink::start().await;
    let (sg, smtp) = (sendgrid.config("SG.test-key", FROM), sink.config(FROM));
    let app = spawn_app_with(move |c| {
        c.providers.sendgrid = Some(sg);
        c.providers.smtp = Some(smtp);
        c.providers.email = vec!["sendgrid".into(), "smtp".into()];
    })
    .await;
    sendgrid.fail_next(1, Failure::Unavailable).await;

    let created = create_email(&app, "alan", "alan@example.org").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = sink.wait_for_code("alan@example.org", TIMEOUT).await.expect("the relay delivered it");
    assert!(sendgrid.sent().await.is_empty());
    assert_eq!(
        app.attempts_of(&id, 2).await,
        [("sendgrid".to_owned(), "retryable_error".to_owned()), ("smtp".to_owned(), "sent".to_owned())]
    );
    assert_eq!(app.check(&id, &code).await.body["status"], "approved");

    // An address the relay refuses (550 5.1.1) is no one's: the job ends
    // there, without asking SendGrid (failed over on 5xx, never on the address).
    sink.fail_next(1, Failure::InvalidNumber).await;
    sendgrid.fail_next(1, Failure::Unavailable).await;
    let created = create_email(&app, "nobody", "nobody@example.org").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let failed = wait_for_status(&app, &id, "failed").await;
    assert_eq!(failed["delivery"]["reason"], "invalid_number", "{failed:?}");
    assert_eq!(
        app.attempts_of(&id, 2).await,
        [("sendgrid".to_owned(), "retryable_error".to_owned()), ("smtp".to_owned(), "permanent_error".to_owned())]
    );
}

/// The problem type's name (`…/problems/invalid_field` is `invalid_field`).
fn problem(body: &Value) -> &str {
    body["type"].as_str().and_then(|t| t.rsplit('/').next()).unwrap_or_default()
}

async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let read = app.get(&format!("/v1/verifications/{id}")).await;
        if read.body["status"] == status || std::time::Instant::now() > deadline {
            assert_eq!(read.body["status"], status, "{:?}", read.body);
            return read.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn bad_addresses_and_channels_that_do_not_fit_are_refused_with_the_field() {
    let (app, _sink) = app_with_smtp().await;
    for (body, field) in [
        (json!({ "account_id": "a", "email": "not-an-address", "channel": "email" }), "email"),
        (json!({ "account_id": "a", "email": "ada@localhost", "channel": "email" }), "email"),
        (json!({ "account_id": "a", "email": "a..b@example.com", "channel": "email" }), "email"),
        (json!({ "account_id": "a", "email": format!("{}@example.com", "a".repeat(65)), "channel": "email" }), "email"),
        (json!({ "account_id": "a", "email": format!("a@{}.com", "b".repeat(250)), "channel": "email" }), "email"),
        (json!({ "account_id": "a", "channel": "email" }), "email"),
        (
            json!({ "account_id": "a", "email": "ada@example.com", "phone": "+14155552671", "channel": "email" }),
            "phone",
        ),
        (json!({ "account_id": "a", "email": "ada@example.com", "channel": "sms" }), "email"),
        (json!({ "account_id": "a", "phone": "+14155552671", "channel": "whatsapp" }), "channel"),
    ] {
        let refused = app.post_json("/v1/verifications", &body).await;
        assert_eq!(refused.status, 422, "{body}: {:?}", refused.body);
        assert_eq!(problem(&refused.body), "invalid_field", "{body}");
        assert_eq!(refused.body["field"], field, "{body}: {:?}", refused.body);
    }
    let disposable = create_email(&app, "a", "someone@mailinator.com").await;
    assert_eq!((disposable.status, problem(&disposable.body)), (422, "disposable_email"), "{:?}", disposable.body);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(count, 0, "nothing refused was stored");

    // A deployment without an email provider says so instead of failing later.
    let without = spawn_app().await;
    let refused = create_email(&without, "a", "ada@example.com").await;
    assert_eq!((refused.status, refused.body["field"].as_str()), (422, Some("channel")), "{:?}", refused.body);
    assert!(refused.body["detail"].as_str().unwrap_or_default().contains("providers.email"), "{:?}", refused.body);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn one_mailbox_gets_five_codes_in_ten_minutes_whatever_its_case_or_tag() {
    let (app, sink) = app_with_smtp().await;
    let mut sent = 0;
    for (n, address) in
        ["ada@example.net", "Ada@example.net", "ada+1@example.net", "ADA+2@Example.NET", "ada@EXAMPLE.net"]
            .iter()
            .enumerate()
    {
        let created = create_email(&app, &format!("acct-{n}"), address).await;
        assert_eq!(created.status, 201, "{address}: {:?}", created.body);
        sent += 1;
    }
    let sixth = create_email(&app, "acct-6", "ada+6@example.net").await;
    assert_eq!(sixth.status, 429, "{:?}", sixth.body);
    assert_eq!(sixth.body["scope"], "email");
    assert!(
        create_email(&app, "acct-7", "grace@example.net").await.status == 201,
        "another mailbox has its own budget"
    );
    let deadline = std::time::Instant::now() + TIMEOUT;
    while sink.received().await.len() < sent + 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sink.received().await.len(), sent + 1);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_email_code_is_in_no_table_queue_message_or_log_line_and_the_address_is_masked() {
    let (app, sink) = app_with_smtp().await;
    let mut events = app.capture_events("#").await;
    let mut jobs = app.tap_dispatch().await;
    sink.fail_next(1, Failure::Unavailable).await;
    let created = create_email(&app, "secret-email", "private.person@example.com").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = sink.wait_for_code("private.person@example.com", TIMEOUT).await.expect("delivered after a retry");
    assert_eq!(app.check(&id, &code).await.body["status"], "approved");
    events.wait_for_event("verification.approved", TIMEOUT).await;
    let mut messages = events.drain(Duration::from_millis(500)).await;
    messages.extend(jobs.drain(Duration::from_millis(300)).await);

    let dump = app.database_dump().await;
    assert!(dump.contains("private.person@example.com"), "the dump is real: it holds the address");
    assert!(!dump.contains(&code), "code found in the database");
    for m in &messages {
        assert!(!m.text().contains(&code), "code found in a queue message on {}", m.routing_key);
    }
    let logs = captured_logs();
    assert!(logs.contains("verification created"), "logs were captured");
    assert!(!mentions(&logs, &code), "code found in the logs");
    assert!(!logs.contains("private.person@example.com"), "full address in the logs (must be masked)");
    assert!(logs.contains("p***@example.com"), "the masked address is logged");
}
