//! Codes by WhatsApp: Twilio (`whatsapp:+…` addressing, a Content API
//! authentication template) and Meta's Cloud API (an authentication template
//! with a copy-code button), each against its mock's real shapes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use verifyd_providers::domain::{Channel, Code, Locale, PhoneNumber};
use verifyd_providers::meta::Meta;
use verifyd_providers::testkit::{Failure, MetaMock, TwilioMock};
use verifyd_providers::twilio::{Twilio, TwilioWhatsApp};
use verifyd_providers::{ErrorKind, Provider, WhatsApp};

const TO: &str = "+14155552671";
const CODE: &str = "8302947";

fn message(locale: &str) -> WhatsApp {
    WhatsApp {
        to: PhoneNumber::parse(TO).unwrap(),
        code: Code::parse(CODE).unwrap(),
        locale: Locale::parse(locale).unwrap(),
        validity: Duration::from_secs(600),
        reference: "job-1".to_owned(),
    }
}

#[tokio::test]
async fn twilio_sends_the_content_template_to_the_whatsapp_address() {
    let mock = TwilioMock::start().await;
    let mut config = mock.config("AC123", "token", "+15005550006");
    let plain = Twilio::new(config.clone()).unwrap();
    assert!(!plain.supports(Channel::Whatsapp), "WhatsApp only with a sender and a template");
    config.whatsapp =
        Some(TwilioWhatsApp { from: "+15005550007".into(), content_sid: "HXb5b62575e6e4ff6129ad7c8efe1f983e".into() });
    let twilio = Twilio::new(config).unwrap();
    assert!(twilio.supports(Channel::Whatsapp));

    let sent = twilio.send_whatsapp(&message("en")).await.unwrap();

    let received = mock.sent_sms().await.remove(0);
    assert_eq!(sent.message_id, received.sid);
    assert!(received.whatsapp);
    assert_eq!(received.to, TO);
    assert_eq!(received.from, "whatsapp:+15005550007");
    assert_eq!(received.content_sid.as_deref(), Some("HXb5b62575e6e4ff6129ad7c8efe1f983e"));
    assert_eq!(received.content_variables.as_deref(), Some(r#"{"1":"8302947"}"#));
    assert!(received.body.is_empty(), "the template carries the text");
    let read = mock.sent().await.remove(0);
    assert_eq!((read.channel, read.code().as_deref()), (Channel::Whatsapp, Some(CODE)));
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some(CODE));

    mock.fail_next(1, Failure::code(400, "63003")).await;
    let not_on_whatsapp = twilio.send_whatsapp(&message("en")).await.unwrap_err();
    assert_eq!(not_on_whatsapp.kind(), ErrorKind::ChannelNotSupported, "{not_on_whatsapp}");
}

#[tokio::test]
async fn meta_sends_an_authentication_template_with_the_code_in_its_body_and_copy_button() {
    let mock = MetaMock::start().await;
    let mut config = mock.config("EAAG-token", "106540352242922", "verifyd_code");
    config.languages.insert("es".into(), "es".into());
    let meta = Meta::new(config).unwrap();
    assert!(meta.supports(Channel::Whatsapp) && !meta.supports(Channel::Sms));

    let sent = meta.send_whatsapp(&message("es-MX")).await.unwrap();

    let received = mock.sent_messages().await.remove(0);
    assert_eq!(sent.message_id, received.id);
    assert!(received.id.starts_with("wamid."));
    assert_eq!(received.access_token, "EAAG-token");
    assert_eq!(received.phone_number_id, "106540352242922");
    assert_eq!(received.to, "14155552671");
    assert_eq!((received.template.as_str(), received.language.as_str()), ("verifyd_code", "es"));
    assert_eq!((received.code.as_str(), received.button_code.as_deref()), (CODE, Some(CODE)));
    assert_eq!(mock.code_sent_to(TO).await.as_deref(), Some(CODE));

    mock.fail_next(1, Failure::Unavailable).await;
    mock.fail_next(1, Failure::InvalidNumber).await;
    mock.fail_next(1, Failure::Unauthorized).await;
    mock.fail_next(1, Failure::Throttled { retry_after: Duration::from_secs(1) }).await;
    assert_eq!(meta.send_whatsapp(&message("en")).await.unwrap_err().kind(), ErrorKind::Unavailable);
    assert_eq!(meta.send_whatsapp(&message("en")).await.unwrap_err().kind(), ErrorKind::ChannelNotSupported);
    assert_eq!(meta.send_whatsapp(&message("en")).await.unwrap_err().kind(), ErrorKind::Configuration);
    let throttled = meta.send_whatsapp(&message("en")).await.unwrap_err();
    assert_eq!(throttled.kind(), ErrorKind::Throttled, "{throttled}");
    assert!(!throttled.to_string().contains(CODE));
}
