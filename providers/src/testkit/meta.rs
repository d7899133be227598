//! [`MetaMock`]: Meta's WhatsApp Cloud API (`POST /{version}/{phone_number_id}/messages`)
//! on localhost. It checks the Bearer token and what a template message needs
//! (`messaging_product: whatsapp`, `type: template`, `to` in digits, a
//! template name and language, the body parameter), answers like Meta
//! (`{"messaging_product","contacts":[{"input","wa_id"}],"messages":[{"id":"wamid.…"}]}`),
//! refuses like Meta (`{"error":{"message","type","code","fbtrace_id"}}`), and
//! remembers what it accepted.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{Failure, Faults, Inbox, Received, SentMessage, bearer_token, random_id};
use crate::meta::MetaConfig;

const PROVIDER: &str = "meta";

/// A template message the mock accepted (answered 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaMessage {
    /// The `wamid.…` it answered with.
    pub id: String,
    pub access_token: String,
    /// The phone number id in the path.
    pub phone_number_id: String,
    /// Digits, as sent (no `+`).
    pub to: String,
    pub template: String,
    pub language: String,
    /// The body's first parameter: the code.
    pub code: String,
    /// The copy-code button's parameter (the code again), if sent.
    pub button_code: Option<String>,
    pub body: Value,
}

impl Received for MetaMessage {
    fn message(&self) -> SentMessage {
        let text = format!("*{}* is your verification code.", self.code);
        SentMessage::whatsapp(PROVIDER, &self.id, &format!("+{}", self.to), &text, Some(self.code.clone()))
    }
}

/// A WhatsApp Cloud API on localhost. Accepts any non-empty token; stops when dropped.
pub struct MetaMock {
    server: MockServer,
    inbox: Inbox<MetaMessage>,
    faults: Faults,
}

impl MetaMock {
    starts_on_a_wiremock_server!();

    async fn on(server: MockServer) -> Self {
        let inbox = Inbox::default();
        let faults = Faults::default();
        Mock::given(method("POST"))
            .and(path_regex(r"^/v[0-9.]+/[^/]+/messages$"))
            .respond_with(Accept { inbox: inbox.clone(), faults: faults.clone() })
            .named("WhatsApp Cloud API messages")
            .mount(&server)
            .await;
        MetaMock { server, inbox, faults }
    }

    common_mock_api!();

    /// A config pointing at the mock: `phone_number_id` and the template name.
    pub fn config(&self, access_token: &str, phone_number_id: &str, template: &str) -> MetaConfig {
        MetaConfig {
            base_url: self.uri(),
            timeout: Duration::from_secs(5),
            ..MetaConfig::new(access_token, phone_number_id, template)
        }
    }

    /// The messages accepted so far, oldest first, with every field Meta received.
    pub async fn sent_messages(&self) -> Vec<MetaMessage> {
        self.inbox.all()
    }

    reads_codes_from_its_inbox!();
}

/// Meta's error body.
pub fn meta_error_body(code: i64, message: &str) -> Value {
    json!({ "error": {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "error_data": { "messaging_product": "whatsapp", "details": message },
        "fbtrace_id": "AZWpvq9bXhTnQ7Kp3ZxF2Lh",
    } })
}

fn failure_response(failure: &Failure) -> ResponseTemplate {
    let (status, code, message) = match failure {
        Failure::Unavailable => (500, 131000, "Something went wrong".to_owned()),
        Failure::Throttled { .. } => (400, 130429, "Rate limit hit".to_owned()),
        Failure::InvalidNumber => (400, 131026, "Message undeliverable".to_owned()),
        Failure::Unauthorized => (401, 190, "Invalid OAuth access token - Cannot parse access token".to_owned()),
        Failure::Code { status, code } => {
            (*status, code.parse().unwrap_or(100), "Failure injected by MetaMock".to_owned())
        }
    };
    ResponseTemplate::new(status).set_body_json(meta_error_body(code, &format!("({code}) {message}")))
}

struct Accept {
    inbox: Inbox<MetaMessage>,
    faults: Faults,
}

fn invalid(message: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(meta_error_body(100, &format!("(#100) {message}")))
}

impl Respond for Accept {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(failure) = self.faults.take() {
            return failure_response(&failure);
        }
        let Some(access_token) = bearer_token(request) else {
            return failure_response(&Failure::Unauthorized);
        };
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return invalid("The parameter messaging_product is required.");
        };
        if body["messaging_product"] != "whatsapp" {
            return invalid("The parameter messaging_product is required.");
        }
        let to = body["to"].as_str().unwrap_or_default().to_owned();
        if to.is_empty() || !to.bytes().all(|b| b.is_ascii_digit()) {
            return invalid("Invalid parameter: to");
        }
        if body["type"] != "template" {
            return ResponseTemplate::new(400).set_body_json(meta_error_body(
                131047,
                "(#131047) Re-engagement message: more than 24 hours have passed since the recipient last replied",
            ));
        }
        let template = body["template"]["name"].as_str().unwrap_or_default().to_owned();
        let language = body["template"]["language"]["code"].as_str().unwrap_or_default().to_owned();
        if template.is_empty() || language.is_empty() {
            return invalid("Template name and language are required.");
        }
        let components = body["template"]["components"].as_array().cloned().unwrap_or_default();
        let parameter = |kind: &str| {
            components
                .iter()
                .find(|c| c["type"] == kind)
                .and_then(|c| c["parameters"][0]["text"].as_str())
                .map(str::to_owned)
        };
        let Some(code) = parameter("body") else {
            return ResponseTemplate::new(400).set_body_json(meta_error_body(
                132000,
                "(#132000) Number of parameters does not match the expected number of params",
            ));
        };
        let message = MetaMessage {
            id: format!("wamid.{}", random_id("HBgL", 28)),
            access_token,
            phone_number_id: request.url.path().split('/').nth(2).unwrap_or_default().to_owned(),
            to: to.clone(),
            template,
            language,
            code,
            button_code: parameter("button"),
            body,
        };
        let answer = json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": to, "wa_id": to }],
            "messages": [{ "id": message.id, "message_status": "accepted" }],
        });
        self.inbox.push(message);
        ResponseTemplate::new(200).set_body_json(answer).set_delay(self.faults.latency())
    }
}
