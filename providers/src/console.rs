//! A development provider that prints messages (SMS, calls, emails) to
//! stdout instead of sending them.

use async_trait::async_trait;
use rand::RngExt;

use crate::domain::Channel;
use crate::provider::{Email, Provider, ProviderError, Sent, Sms, VoiceCall, WhatsApp};

const NAME: &str = "console";

/// Prints each SMS body and each call script (codes included) to stdout.
/// For development only.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleProvider;

impl ConsoleProvider {
    pub fn new() -> Self {
        ConsoleProvider
    }
}

#[async_trait]
impl Provider for ConsoleProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, channel: Channel) -> bool {
        matches!(channel, Channel::Sms | Channel::Voice | Channel::Email | Channel::Whatsapp)
    }

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, ProviderError> {
        let sent = sent();
        println!("[console sms {}] to {}: {}", sent.message_id, sms.to, sms.body);
        Ok(sent)
    }

    async fn place_call(&self, call: &VoiceCall) -> Result<Sent, ProviderError> {
        let sent = sent();
        println!("[console call {}] to {} ({}): {}", sent.message_id, call.to, call.locale, script(call));
        Ok(sent)
    }

    /// What WhatsApp's authentication template would show.
    async fn send_whatsapp(&self, message: &WhatsApp) -> Result<Sent, ProviderError> {
        let sent = sent();
        let code = message.code.expose();
        println!(
            "[console whatsapp {}] to {} ({}): *{code}* is your verification code.",
            sent.message_id, message.to, message.locale
        );
        Ok(sent)
    }

    /// The subject and the plain-text part (the HTML part says the same).
    async fn send_email(&self, email: &Email) -> Result<Sent, ProviderError> {
        let sent = sent();
        let text = email.text.replace('\n', " / ");
        println!(
            "[console email {}] to {} ({}): {} / {}",
            sent.message_id, email.to, email.locale, email.subject, text
        );
        Ok(sent)
    }
}

/// What a text-to-speech engine would say: the intro and the digits, `repeat`
/// times (at least once).
fn script(call: &VoiceCall) -> String {
    let reading = format!("{} {}", call.intro.trim(), call.spoken_digits());
    vec![reading.trim().to_owned(); usize::from(call.repeat.max(1))].join(" ... ")
}

fn sent() -> Sent {
    let id: u64 = rand::rng().random();
    Sent { provider: NAME.to_owned(), message_id: format!("console-{id:016x}") }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{Code, Locale, PhoneNumber};

    fn to() -> PhoneNumber {
        PhoneNumber::parse("+14155552671").unwrap()
    }

    #[tokio::test]
    async fn sends_both_channels_with_random_ids() {
        let console = ConsoleProvider::new();
        assert_eq!(console.name(), "console");
        assert!(Channel::ALL.iter().all(|c| console.supports(*c)));
        let sms = Sms {
            to: to(),
            body: "Your code is 123456".to_owned(),
            validity: Duration::from_secs(600),
            reference: "att_1".to_owned(),
        };
        let first = console.send_sms(&sms).await.unwrap();
        let second = console.send_sms(&sms).await.unwrap();
        assert_eq!(first.provider, "console");
        let hex = first.message_id.strip_prefix("console-").unwrap();
        assert!(hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first.message_id, second.message_id);
    }

    #[tokio::test]
    async fn call_script_repeats_the_digits() {
        let call = VoiceCall {
            to: to(),
            intro: "Your code is".to_owned(),
            code: Code::parse("1234").unwrap(),
            repeat: 2,
            locale: Locale::default(),
            reference: "att_2".to_owned(),
            script_url: None,
        };
        assert_eq!(script(&call), "Your code is 1, 2, 3, 4 ... Your code is 1, 2, 3, 4");
        assert!(ConsoleProvider.place_call(&call).await.is_ok());
    }
}
