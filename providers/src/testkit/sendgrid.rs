//! [`SendGridMock`]: SendGrid's v3 Mail Send (`POST /v3/mail/send`) on
//! localhost. It checks the Bearer key and the fields SendGrid requires
//! (personalizations with a `to`, `from.email`, `subject`, `content` with
//! text/plain before text/html), answers `202 Accepted` with an empty body and
//! an `X-Message-Id`, refuses like SendGrid (`{"errors":[{"message","field",
//! "help"}]}`), and remembers what it accepted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{Failure, Faults, Inbox, Received, SentMessage, bearer_token, random_id};
use crate::domain::EmailAddress;
use crate::sendgrid::SendGridConfig;

const PROVIDER: &str = "sendgrid";
const HELP: &str = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html";

/// An email the mock accepted (answered 202).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendGridEmail {
    /// The `X-Message-Id` it answered with.
    pub id: String,
    pub api_key: String,
    pub to: String,
    pub from: String,
    pub from_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// `headers` as sent (`Auto-Submitted`, `Message-ID`, …).
    pub headers: Value,
    pub tracking_settings: Value,
    pub custom_args: Value,
}

impl Received for SendGridEmail {
    fn message(&self) -> SentMessage {
        SentMessage::email(PROVIDER, &self.id, &self.to, &self.text)
    }
}

/// A SendGrid API on localhost. Accepts any non-empty API key; stops when dropped.
pub struct SendGridMock {
    server: MockServer,
    inbox: Inbox<SendGridEmail>,
    faults: Faults,
}

impl SendGridMock {
    starts_on_a_wiremock_server!();

    async fn on(server: MockServer) -> Self {
        let inbox = Inbox::default();
        let faults = Faults::default();
        Mock::given(method("POST"))
            .and(path("/v3/mail/send"))
            .respond_with(Accept { inbox: inbox.clone(), faults: faults.clone() })
            .named("SendGrid mail send")
            .mount(&server)
            .await;
        SendGridMock { server, inbox, faults }
    }

    common_mock_api!();

    /// A config pointing at the mock with a 5 s timeout.
    pub fn config(&self, api_key: &str, from: &str) -> SendGridConfig {
        let from = EmailAddress::parse(from).unwrap_or_else(|e| panic!("SendGridMock::config: {from:?}: {e}"));
        SendGridConfig { base_url: self.uri(), timeout: Duration::from_secs(5), ..SendGridConfig::new(api_key, from) }
    }

    /// The emails accepted so far, oldest first, with every field SendGrid received.
    pub async fn sent_emails(&self) -> Vec<SendGridEmail> {
        self.inbox.all()
    }

    reads_codes_from_its_inbox!();
}

/// SendGrid's error body.
pub fn sendgrid_error_body(message: &str, field: Option<&str>) -> Value {
    json!({ "errors": [{ "message": message, "field": field, "help": HELP }] })
}

fn failure_response(failure: &Failure) -> ResponseTemplate {
    match failure {
        Failure::Unavailable => {
            ResponseTemplate::new(503).set_body_string("<html><body>Service Unavailable</body></html>")
        }
        Failure::Throttled { retry_after } => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
            ResponseTemplate::new(429)
                .insert_header("X-RateLimit-Limit", "600")
                .insert_header("X-RateLimit-Remaining", "0")
                .insert_header("X-RateLimit-Reset", (now + retry_after.as_secs().max(1)).to_string().as_str())
                .set_body_json(sendgrid_error_body("too many requests", None))
        }
        Failure::InvalidNumber => ResponseTemplate::new(400).set_body_json(sendgrid_error_body(
            "The to email does not contain a valid address.",
            Some("personalizations.0.to.0.email"),
        )),
        Failure::Unauthorized => ResponseTemplate::new(401).set_body_json(sendgrid_error_body(
            "The provided authorization grant is invalid, expired, or revoked",
            None,
        )),
        Failure::Code { status, code } => ResponseTemplate::new(*status).set_body_json(sendgrid_error_body(code, None)),
    }
}

struct Accept {
    inbox: Inbox<SendGridEmail>,
    faults: Faults,
}

fn refuse(status: u16, message: &str, field: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(sendgrid_error_body(message, field))
}

fn string(value: &Value, pointer: &str) -> Option<String> {
    value.pointer(pointer).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_owned)
}

impl Respond for Accept {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(failure) = self.faults.take() {
            return failure_response(&failure);
        }
        let Some(api_key) = bearer_token(request) else {
            return refuse(401, "The provided authorization grant is invalid, expired, or revoked", None);
        };
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return refuse(400, "Bad Request", None);
        };
        let Some(to) = string(&body, "/personalizations/0/to/0/email") else {
            return refuse(
                400,
                "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
                Some("personalizations.0.to"),
            );
        };
        if EmailAddress::parse(&to).is_err() {
            return refuse(
                400,
                "The to email does not contain a valid address.",
                Some("personalizations.0.to.0.email"),
            );
        }
        let Some(from) = string(&body, "/from/email") else {
            return refuse(400, "The from email does not contain a valid address.", Some("from.email"));
        };
        let Some(subject) = string(&body, "/subject") else {
            return refuse(
                400,
                "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
                Some("subject"),
            );
        };
        let content = body["content"].as_array().cloned().unwrap_or_default();
        let of_type = |t: &str| content.iter().position(|c| c["type"] == t);
        let (Some(plain), html) = (of_type("text/plain"), of_type("text/html")) else {
            return refuse(
                400,
                "Unless a valid template_id is provided, the content parameter is required.",
                Some("content"),
            );
        };
        if html.is_some_and(|html| html < plain) {
            return refuse(
                400,
                "If present, text/plain content must be first, followed by text/html, followed by any other content.",
                Some("content"),
            );
        }
        let value = |i: Option<usize>| i.and_then(|i| content[i]["value"].as_str()).unwrap_or_default().to_owned();
        let email = SendGridEmail {
            id: random_id("", 22),
            api_key,
            to,
            from,
            from_name: string(&body, "/from/name"),
            subject,
            text: value(Some(plain)),
            html: value(html),
            headers: body["headers"].clone(),
            tracking_settings: body["tracking_settings"].clone(),
            custom_args: body["custom_args"].clone(),
        };
        let id = email.id.clone();
        self.inbox.push(email);
        ResponseTemplate::new(202).insert_header("X-Message-Id", id.as_str()).set_delay(self.faults.latency())
    }
}
