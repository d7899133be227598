//! [`WebhookReceiverMock`]: a gateway that receives verifyd's signed webhook
//! on localhost. Like a correct receiver it checks the signature and the
//! timestamp with [`verify_signature`] before anything else (401 otherwise),
//! checks the fields of the documented payload, answers `{"id":"…"}`,
//! remembers what it accepted and can read the code back.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{Failure, Faults, Inbox, Received, SentMessage, random_id, server_on, with_retry_after};
use crate::webhook::{DEFAULT_TOLERANCE, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookConfig, verify_signature};

/// Where the mock listens for messages, under [`WebhookReceiverMock::uri`].
pub const WEBHOOK_PATH: &str = "/verifyd/messages";
const PROVIDER: &str = "webhook";

/// An SMS the mock accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSms {
    /// The id the mock answered with.
    pub message_id: String,
    /// verifyd's reference (`id` of the payload).
    pub id: String,
    pub to: String,
    pub text: String,
    pub valid_for_secs: u64,
    pub sent_at: String,
    /// The `X-Verifyd-Timestamp` header.
    pub timestamp: String,
}

/// A call the mock accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCall {
    pub message_id: String,
    pub id: String,
    pub to: String,
    pub locale: String,
    pub intro: String,
    pub code: String,
    pub spoken: String,
    pub repeat: u8,
    pub sent_at: String,
    pub timestamp: String,
}

#[derive(Debug, Clone)]
enum Delivery {
    Sms(WebhookSms),
    Call(WebhookCall),
}

impl Received for Delivery {
    fn message(&self) -> SentMessage {
        match self {
            Delivery::Sms(sms) => SentMessage::sms(PROVIDER, &sms.message_id, &sms.to, &sms.text),
            Delivery::Call(call) => {
                let script = format!("{} {}", call.intro, call.spoken);
                SentMessage::call(PROVIDER, &call.message_id, &call.to, &script).with_code(Some(call.code.clone()))
            }
        }
    }
}

/// A webhook receiver on localhost that shares `secret` with verifyd; stops
/// when dropped.
pub struct WebhookReceiverMock {
    server: MockServer,
    secret: String,
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl WebhookReceiverMock {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start(secret: &str) -> Self {
        Self::on(server_on(None).await, secret).await
    }

    /// Starts on `listener` (a standalone mock on a known port).
    pub async fn start_on(listener: std::net::TcpListener, secret: &str) -> Self {
        Self::on(server_on(Some(listener)).await, secret).await
    }

    async fn on(server: MockServer, secret: &str) -> Self {
        let inbox = Inbox::default();
        let faults = Faults::default();
        let receive = Receive { secret: secret.to_owned(), inbox: inbox.clone(), faults: faults.clone() };
        Mock::given(method("POST"))
            .and(path(WEBHOOK_PATH))
            .respond_with(receive)
            .named("verifyd webhook receiver")
            .mount(&server)
            .await;
        WebhookReceiverMock { server, secret: secret.to_owned(), inbox, faults }
    }

    common_mock_api!();

    /// The URL to configure (`providers.webhook.url`): `uri()` + [`WEBHOOK_PATH`].
    pub fn url(&self) -> String {
        format!("{}{WEBHOOK_PATH}", self.server.uri())
    }

    /// A config pointing at the mock with its secret, both channels and a 5 s
    /// timeout. The secret must be long enough for `Webhook::new`.
    pub fn config(&self) -> WebhookConfig {
        WebhookConfig { timeout: Duration::from_secs(5), ..WebhookConfig::new(self.url(), self.secret.clone()) }
    }

    /// The SMS accepted so far, oldest first.
    pub async fn sent_sms(&self) -> Vec<WebhookSms> {
        let deliveries = self.inbox.all().into_iter();
        deliveries.filter_map(|d| if let Delivery::Sms(sms) = d { Some(sms) } else { None }).collect()
    }

    /// The calls accepted so far, oldest first.
    pub async fn placed_calls(&self) -> Vec<WebhookCall> {
        let deliveries = self.inbox.all().into_iter();
        deliveries.filter_map(|d| if let Delivery::Call(call) = d { Some(call) } else { None }).collect()
    }

    reads_codes_from_its_inbox!();
}

/// How the documented receiver answers `failure` (to a correctly signed request).
fn failure_response(failure: &Failure) -> ResponseTemplate {
    let (status, error) = match failure {
        Failure::Unavailable => (503, "unavailable"),
        Failure::Throttled { .. } => (429, "rate_limited"),
        Failure::InvalidNumber => (400, "invalid_number"),
        Failure::Unauthorized => (401, "unauthorized"),
        Failure::Code { status, code } => (*status, code.as_str()),
    };
    let response = ResponseTemplate::new(status).set_body_json(webhook_error_body(error, message_for(error)));
    with_retry_after(response, failure)
}

/// The documented error body: `{"error":…,"message":…}`.
pub fn webhook_error_body(error: &str, message: &str) -> Value {
    json!({ "error": error, "message": message })
}

fn message_for(error: &str) -> &'static str {
    match error {
        "invalid_number" => "The number does not exist",
        "region_not_allowed" => "Destination country is not enabled",
        "opted_out" => "The recipient opted out",
        "channel_not_supported" => "The number cannot receive this channel",
        "unauthorized" => "The signature does not verify",
        "rate_limited" => "Too many requests",
        "unavailable" => "The gateway is unavailable",
        _ => "Failure injected by WebhookReceiverMock",
    }
}

/// Checks a request like a careful receiver and records what it accepts.
struct Receive {
    secret: String,
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl Respond for Receive {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Err(refusal) = authenticate(&self.secret, request) {
            return refusal.response();
        }
        if let Some(failure) = self.faults.take() {
            return failure_response(&failure);
        }
        let timestamp = header(request, TIMESTAMP_HEADER).unwrap_or_default().to_owned();
        match accept(&request.body, timestamp) {
            Ok(delivery) => {
                let message_id = match &delivery {
                    Delivery::Sms(sms) => sms.message_id.clone(),
                    Delivery::Call(call) => call.message_id.clone(),
                };
                self.inbox.push(delivery);
                ResponseTemplate::new(200).set_body_json(json!({ "id": message_id })).set_delay(self.faults.latency())
            }
            Err(refusal) => refusal.response(),
        }
    }
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

/// What the receiver answers to a request it refuses: the status and the
/// documented error body.
struct Refusal {
    status: u16,
    error: &'static str,
    message: String,
}

impl Refusal {
    fn response(&self) -> ResponseTemplate {
        ResponseTemplate::new(self.status).set_body_json(webhook_error_body(self.error, &self.message))
    }
}

fn refuse(status: u16, error: &'static str, message: &str) -> Refusal {
    Refusal { status, error, message: message.to_owned() }
}

/// A JSON body, a timestamp and a signature that verifies, or 415/401.
fn authenticate(secret: &str, request: &Request) -> Result<(), Refusal> {
    let json = header(request, "content-type").is_some_and(|v| v.trim().starts_with("application/json"));
    if !json {
        return Err(refuse(415, "rejected", "Content-Type must be application/json"));
    }
    let (Some(timestamp), Some(signature)) = (header(request, TIMESTAMP_HEADER), header(request, SIGNATURE_HEADER))
    else {
        return Err(refuse(401, "unauthorized", "Missing signature headers"));
    };
    verify_signature(secret.as_bytes(), timestamp, &request.body, signature, SystemTime::now(), DEFAULT_TOLERANCE)
        .map_err(|error| refuse(401, "unauthorized", &format!("Signature refused: {error}")))
}

/// The documented payload, both channels' fields optional until checked.
#[derive(Deserialize)]
struct Payload {
    id: Option<String>,
    channel: Option<String>,
    to: Option<String>,
    text: Option<String>,
    valid_for_secs: Option<u64>,
    locale: Option<String>,
    intro: Option<String>,
    code: Option<String>,
    spoken: Option<String>,
    repeat: Option<u8>,
    sent_at: Option<String>,
}

fn accept(body: &[u8], timestamp: String) -> Result<Delivery, Refusal> {
    let payload: Payload =
        serde_json::from_slice(body).map_err(|_| refuse(400, "rejected", "The body is not the documented JSON"))?;
    let missing = |field: &str| refuse(400, "rejected", &format!("Missing field: {field}"));
    let id = payload.id.filter(|id| !id.is_empty()).ok_or_else(|| missing("id"))?;
    let to = payload.to.ok_or_else(|| missing("to"))?;
    if !is_e164(&to) {
        return Err(refuse(400, "invalid_number", "The 'to' number is not in E.164 form"));
    }
    let sent_at = payload.sent_at.filter(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok());
    let sent_at = sent_at.ok_or_else(|| missing("sent_at (RFC 3339)"))?;
    let message_id = random_id("msg_", 24);
    match payload.channel.as_deref() {
        Some("sms") => {
            let text = payload.text.filter(|t| !t.is_empty()).ok_or_else(|| missing("text"))?;
            let valid_for_secs = payload.valid_for_secs.ok_or_else(|| missing("valid_for_secs"))?;
            Ok(Delivery::Sms(WebhookSms { message_id, id, to, text, valid_for_secs, sent_at, timestamp }))
        }
        Some("voice") => {
            let locale = payload.locale.filter(|l| !l.is_empty()).ok_or_else(|| missing("locale"))?;
            let intro = payload.intro.ok_or_else(|| missing("intro"))?;
            let code = payload.code.ok_or_else(|| missing("code"))?;
            if !(4..=10).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refuse(400, "rejected", "The code must be 4 to 10 digits"));
            }
            let spoken = payload.spoken.ok_or_else(|| missing("spoken"))?;
            let expected: Vec<String> = code.chars().map(String::from).collect();
            if spoken != expected.join(", ") {
                return Err(refuse(400, "rejected", "'spoken' does not read the code digit by digit"));
            }
            let repeat = payload.repeat.filter(|r| *r >= 1).ok_or_else(|| missing("repeat (at least 1)"))?;
            Ok(Delivery::Call(WebhookCall {
                message_id,
                id,
                to,
                locale,
                intro,
                code,
                spoken,
                repeat,
                sent_at,
                timestamp,
            }))
        }
        _ => Err(refuse(400, "rejected", "channel must be \"sms\" or \"voice\"")),
    }
}

fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
    })
}
