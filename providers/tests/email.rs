//! The two email providers against their stand-ins: SMTP against a real SMTP
//! server on localhost ([`SmtpSink`]), SendGrid against [`SendGridMock`]
//! (wiremock, SendGrid's request, answer and error shapes).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use verifyd_providers::domain::{EmailAddress, Locale};
use verifyd_providers::sendgrid::SendGrid;
use verifyd_providers::smtp::{Smtp, SmtpConfig, SmtpTls};
use verifyd_providers::testkit::{Failure, SendGridMock, SmtpSink};
use verifyd_providers::{Email, ErrorKind, PermanentKind, Provider, ProviderError};

const FROM: &str = "codes@acme.example";
const TO: &str = "Ada.Lovelace@Bücher.example";
const CODE: &str = "8302947";

fn email() -> Email {
    Email {
        to: EmailAddress::parse(TO).unwrap(),
        from_name: "Acme".to_owned(),
        subject: "Votre code Acme : 8302947".to_owned(),
        text: format!("Votre code de vérification Acme est {CODE}.\nIl expire dans 10 minutes."),
        html: format!("<p>Votre code de vérification Acme est <strong>{CODE}</strong>.</p>"),
        locale: Locale::parse("fr").unwrap(),
        validity: Duration::from_secs(600),
        reference: "0f8c1e7a-4b7e-4d0e-9a51-2f6f3b8f1c11".to_owned(),
    }
}

#[tokio::test]
async fn smtp_delivers_a_multipart_message_with_auto_submitted_and_a_message_id_on_the_senders_domain() {
    let sink = SmtpSink::start().await;
    let smtp = Smtp::new(sink.config(FROM)).unwrap();
    assert!(smtp.supports(verifyd_providers::domain::Channel::Email));

    let sent = smtp.send_email(&email()).await.unwrap();

    assert_eq!(sent.provider, "smtp");
    assert_eq!(sent.message_id, "0f8c1e7a-4b7e-4d0e-9a51-2f6f3b8f1c11@acme.example");
    let received = sink.received().await;
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(message.envelope_from, FROM);
    assert_eq!(message.recipients, vec!["Ada.Lovelace@xn--bcher-kva.example".to_owned()]);
    assert_eq!(message.header("Auto-Submitted"), Some("auto-generated"));
    assert_eq!(message.header("X-Auto-Response-Suppress"), Some("All"));
    assert_eq!(message.header("Message-ID"), Some("<0f8c1e7a-4b7e-4d0e-9a51-2f6f3b8f1c11@acme.example>"));
    assert!(message.header("From").unwrap().contains("Acme") && message.header("From").unwrap().contains(FROM));
    assert!(message.header("Content-Type").unwrap().starts_with("multipart/alternative"));
    assert_eq!(message.subject, "Votre code Acme : 8302947");
    assert!(message.text.contains("vérification Acme est 8302947"), "{}", message.text);
    assert!(message.html.contains("<strong>8302947</strong>"), "{}", message.html);
    // Text first, then HTML (a client shows the last part it can render).
    assert!(message.raw.find("text/plain").unwrap() < message.raw.find("text/html").unwrap());
    assert_eq!(sink.code_sent_to("ada.lovelace@XN--BCHER-KVA.example").await, None, "the local part keeps its case");
    assert_eq!(sink.code_sent_to("Ada.Lovelace@xn--bcher-kva.example").await.as_deref(), Some(CODE));
}

#[tokio::test]
async fn smtp_refusals_are_sorted_by_reply_code() {
    let sink = SmtpSink::start().await;
    let smtp = Smtp::new(sink.config(FROM)).unwrap();
    sink.fail_next(1, Failure::Unavailable).await;
    sink.fail_next(1, Failure::InvalidNumber).await;
    sink.fail_next(1, Failure::Unauthorized).await;

    let busy = smtp.send_email(&email()).await.unwrap_err();
    assert!(busy.is_retryable(), "{busy}");
    assert_eq!(busy.provider_code(), Some(451));
    let unknown = smtp.send_email(&email()).await.unwrap_err();
    assert!(matches!(unknown, ProviderError::Permanent { kind: PermanentKind::InvalidNumber, .. }), "{unknown}");
    assert!(!unknown.to_string().contains(CODE));
    let shown = unknown.to_string();
    assert!(shown.contains("A***@xn--bcher-kva.example") && !shown.contains("Ada.Lovelace"), "{shown}");
    let login = smtp.send_email(&email()).await.unwrap_err();
    assert_eq!(login.kind(), ErrorKind::Configuration, "{login}");
    // 5.7.1 (relaying denied, a policy) lets another provider try; a
    // refused sender (5.1.8) is the configuration's, not the recipient's.
    sink.fail_next(1, Failure::code(550, "5.7.1 Relaying denied")).await;
    sink.fail_next(1, Failure::code(553, "5.1.8 <codes@acme.example>: Sender address rejected")).await;
    let relaying = smtp.send_email(&email()).await.unwrap_err();
    assert_eq!(relaying.kind(), ErrorKind::Rejected, "{relaying}");
    let sender = smtp.send_email(&email()).await.unwrap_err();
    assert_eq!(sender.kind(), ErrorKind::Configuration, "{sender}");
    // The connection survives refusals: the next message goes through.
    smtp.send_email(&email()).await.unwrap();
    assert_eq!(sink.received().await.len(), 1);
}

#[tokio::test]
async fn smtp_to_a_closed_port_is_retryable_and_a_login_without_tls_is_refused_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = SmtpConfig {
        port: Some(port),
        tls: SmtpTls::None,
        timeout: Duration::from_secs(2),
        ..SmtpConfig::new("127.0.0.1", EmailAddress::parse(FROM).unwrap())
    };
    let error = Smtp::new(config.clone()).unwrap().send_email(&email()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unreachable, "{error}");

    let login = SmtpConfig { username: Some("relay".into()), password: Some("s3cret-password".into()), ..config };
    let refused = Smtp::new(login.clone()).unwrap_err().to_string();
    assert!(refused.contains("needs TLS"), "{refused}");
    assert!(!format!("{login:?}").contains("s3cret-password"));
}

#[tokio::test]
async fn sendgrid_sends_text_then_html_with_tracking_off_and_reads_the_message_id_header() {
    let mock = SendGridMock::start().await;
    let sendgrid = SendGrid::new(mock.config("SG.test-key", FROM)).unwrap();

    let sent = sendgrid.send_email(&email()).await.unwrap();

    let emails = mock.sent_emails().await;
    assert_eq!(emails.len(), 1);
    let received = &emails[0];
    assert_eq!(sent.provider, "sendgrid");
    assert_eq!(sent.message_id, received.id);
    assert_eq!(received.api_key, "SG.test-key");
    assert_eq!(received.to, "Ada.Lovelace@xn--bcher-kva.example");
    assert_eq!(received.from, FROM);
    assert_eq!(received.from_name.as_deref(), Some("Acme"));
    assert!(received.text.contains(CODE) && received.html.contains(CODE));
    assert_eq!(received.headers["Auto-Submitted"], "auto-generated");
    assert_eq!(received.headers["Message-ID"], "<0f8c1e7a-4b7e-4d0e-9a51-2f6f3b8f1c11@acme.example>");
    assert_eq!(received.tracking_settings["click_tracking"]["enable"], json!(false));
    assert_eq!(received.tracking_settings["open_tracking"]["enable"], json!(false));
    assert_eq!(received.custom_args["verifyd_reference"], "0f8c1e7a-4b7e-4d0e-9a51-2f6f3b8f1c11");
    assert_eq!(mock.code_sent_to("Ada.Lovelace@xn--bcher-kva.example").await.as_deref(), Some(CODE));
}

#[tokio::test]
async fn sendgrid_errors_keep_their_meaning() {
    let mock = SendGridMock::start().await;
    let sendgrid = SendGrid::new(mock.config("SG.test-key", FROM)).unwrap();
    mock.fail_next(1, Failure::Throttled { retry_after: Duration::from_secs(20) }).await;
    mock.fail_next(1, Failure::InvalidNumber).await;
    mock.fail_next(1, Failure::Unauthorized).await;
    mock.fail_next(1, Failure::Unavailable).await;

    let throttled = sendgrid.send_email(&email()).await.unwrap_err();
    assert_eq!(throttled.kind(), ErrorKind::Throttled);
    let wait = throttled.retry_after().unwrap();
    assert!((Duration::from_secs(18)..=Duration::from_secs(21)).contains(&wait), "{wait:?}");
    let invalid = sendgrid.send_email(&email()).await.unwrap_err();
    assert_eq!(invalid.kind(), ErrorKind::InvalidNumber, "{invalid}");
    let unauthorized = sendgrid.send_email(&email()).await.unwrap_err();
    assert_eq!(unauthorized.kind(), ErrorKind::Configuration);
    let down = sendgrid.send_email(&email()).await.unwrap_err();
    assert_eq!(down.kind(), ErrorKind::Unavailable, "{down}");
    assert!(mock.sent().await.is_empty());
}
