//! [`TelnyxMock`]: Telnyx's Messaging API (`/v2/messages`) and connection-scoped
//! TeXML calls (`/v2/texml/calls/{connection_id}`) on localhost. It checks the
//! Bearer key and the JSON fields the way Telnyx documents them, answers with
//! Telnyx's bodies (and its `{"errors":[…]}` refusals), and remembers what it
//! accepted. Calls carry their TeXML inline, so codes are read from it directly.

use std::time::Duration;

use serde_json::{Map, Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{Failure, Faults, Inbox, Received, SentMessage, bearer_token, random_uuid, with_retry_after};
use crate::gsm;
use crate::telnyx::TelnyxConfig;

const MESSAGES_PATH: &str = r"^/v2/messages$";
const CALLS_PATH: &str = r"^/v2/texml/calls/[^/]+$";
const PROVIDER: &str = "telnyx";
/// `received_at` of every message the mock creates.
const DATE: &str = "2026-03-02T10:00:00.000+00:00";

/// An SMS the mock accepted (answered 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelnyxSms {
    pub id: String,
    /// The Bearer token of the request.
    pub api_key: String,
    /// Empty when the request sent through a messaging profile without `from`.
    pub from: String,
    pub to: String,
    pub text: String,
    pub messaging_profile_id: Option<String>,
    pub webhook_url: Option<String>,
}

/// A TeXML call the mock accepted (answered 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelnyxCall {
    pub call_sid: String,
    pub api_key: String,
    /// The connection id in the request path.
    pub connection_id: String,
    pub from: String,
    pub to: String,
    /// The inline `Texml`, empty when the request gave none.
    pub texml: String,
    pub url: Option<String>,
}

#[derive(Debug, Clone)]
enum Delivery {
    Sms(TelnyxSms),
    Call(TelnyxCall),
}

impl Received for Delivery {
    fn message(&self) -> SentMessage {
        match self {
            Delivery::Sms(sms) => SentMessage::sms(PROVIDER, &sms.id, &sms.to, &sms.text),
            Delivery::Call(call) => SentMessage::call(PROVIDER, &call.call_sid, &call.to, &call.texml),
        }
    }
}

/// A Telnyx API on localhost. Accepts any non-empty API key; stops when dropped.
pub struct TelnyxMock {
    server: MockServer,
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl TelnyxMock {
    starts_on_a_wiremock_server!();

    async fn on(server: MockServer) -> Self {
        let inbox = Inbox::default();
        let faults = Faults::default();
        for (path, resource) in [(MESSAGES_PATH, Resource::Messages), (CALLS_PATH, Resource::Calls)] {
            Mock::given(method("POST"))
                .and(path_regex(path))
                .respond_with(Accept { resource, inbox: inbox.clone(), faults: faults.clone() })
                .named(format!("Telnyx {resource:?}"))
                .mount(&server)
                .await;
        }
        TelnyxMock { server, inbox, faults }
    }

    common_mock_api!();

    /// A config pointing at the mock with a 5 s timeout; voice is enabled
    /// through the TeXML connection `texml-connection`.
    pub fn config(&self, api_key: &str, from: &str) -> TelnyxConfig {
        TelnyxConfig {
            base_url: self.uri(),
            timeout: Duration::from_secs(5),
            texml_connection_id: Some("texml-connection".to_owned()),
            ..TelnyxConfig::new(api_key, from)
        }
    }

    /// The SMS accepted so far, oldest first.
    pub async fn sent_sms(&self) -> Vec<TelnyxSms> {
        self.inbox
            .all()
            .into_iter()
            .filter_map(|d| match d {
                Delivery::Sms(sms) => Some(sms),
                Delivery::Call(_) => None,
            })
            .collect()
    }

    /// The calls accepted so far, oldest first.
    pub async fn placed_calls(&self) -> Vec<TelnyxCall> {
        self.inbox
            .all()
            .into_iter()
            .filter_map(|d| match d {
                Delivery::Call(call) => Some(call),
                Delivery::Sms(_) => None,
            })
            .collect()
    }

    reads_codes_from_its_inbox!();
}

/// How Telnyx answers `failure`.
fn failure_response(failure: &Failure) -> ResponseTemplate {
    let (status, code) = match failure {
        Failure::Unavailable => (503, "10007"),
        Failure::Throttled { .. } => (429, "10011"),
        Failure::InvalidNumber => (422, "40310"),
        Failure::Unauthorized => (401, "10009"),
        Failure::Code { status, code } => (*status, code.as_str()),
    };
    let (title, detail) = text_for(code);
    let response = ResponseTemplate::new(status).set_body_json(telnyx_error_body(code, title, detail, None));
    with_retry_after(response, failure)
}

/// Telnyx's error body: `{"errors":[{"code","title","detail","source"?,"meta"}]}`.
pub fn telnyx_error_body(code: &str, title: &str, detail: &str, pointer: Option<&str>) -> Value {
    let mut error = json!({
        "code": code,
        "title": title,
        "detail": detail,
        "meta": { "url": format!("https://developers.telnyx.com/docs/overview/errors/{code}") },
    });
    if let Some(pointer) = pointer {
        error["source"] = json!({ "pointer": pointer });
    }
    json!({ "errors": [error] })
}

/// Title and detail of the codes tests inject most.
fn text_for(code: &str) -> (&'static str, &'static str) {
    match code {
        "10007" => ("Unexpected error", "An unexpected error occured."),
        "10009" => (
            "Authentication failed",
            "The required authentication headers were either invalid or not included in the request.",
        ),
        "10011" => ("Too many requests", "You have exceeded the maximum number of allowed requests."),
        "10016" => {
            ("Phone number must be in +E.164 format", "The specified phone number parameter must be in +E.164 format.")
        }
        "20100" => ("Insufficient funds", "The account does not have enough funds."),
        "40001" => ("Not routable", "The destination number is either a landline or a non-routable wireless number."),
        "40300" => ("Blocked due to STOP message", "Messages cannot be sent due to an existing block rule."),
        "40305" => ("Invalid 'from' address", "The 'from' address is not a valid number on your account."),
        "40309" => {
            ("Invalid destination region", "The destination region is not whitelisted on the messaging profile.")
        }
        "40310" => ("Invalid 'to' address", "The 'to' address is invalid."),
        "40318" => ("Message queue full", "The sender's message queue is full."),
        _ => ("Failure injected by TelnyxMock", "Failure injected by TelnyxMock"),
    }
}

#[derive(Debug, Clone, Copy)]
enum Resource {
    Messages,
    Calls,
}

/// Validates a create request like Telnyx does and records what it accepts.
struct Accept {
    resource: Resource,
    inbox: Inbox<Delivery>,
    faults: Faults,
}

/// An HTTP status and Telnyx's error body.
struct Refusal {
    status: u16,
    body: Value,
}

fn refuse(status: u16, code: &str, title: &str, detail: &str, pointer: Option<&str>) -> Refusal {
    Refusal { status, body: telnyx_error_body(code, title, detail, pointer) }
}

fn missing(field: &str) -> Refusal {
    let detail = format!("The '{}' parameter is required.", field.trim_start_matches('/'));
    refuse(422, "10004", "Missing required parameter", &detail, Some(field))
}

impl Respond for Accept {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(failure) = self.faults.take() {
            return failure_response(&failure);
        }
        let accepted = authenticate(request).and_then(|api_key| {
            let body = json_body(request)?;
            match self.resource {
                Resource::Messages => accept_message(api_key, &body),
                Resource::Calls => {
                    let connection_id = request.url.path().rsplit('/').next().unwrap_or_default().to_owned();
                    accept_call(api_key, connection_id, &body)
                }
            }
        });
        match accepted {
            Ok((delivery, answer)) => {
                self.inbox.push(delivery);
                ResponseTemplate::new(200).set_body_json(answer).set_delay(self.faults.latency())
            }
            Err(Refusal { status, body }) => ResponseTemplate::new(status).set_body_json(body),
        }
    }
}

fn authenticate(request: &Request) -> Result<String, Refusal> {
    bearer_token(request).ok_or_else(|| {
        let (title, detail) = text_for("10009");
        refuse(401, "10009", title, detail, None)
    })
}

fn json_body(request: &Request) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(body)) => Ok(body),
        _ => Err(refuse(400, "10015", "Bad Request", "The request failed because it was not well-formed.", None)),
    }
}

/// A non-empty string field; names are case-sensitive.
fn text(body: &Map<String, Value>, name: &str) -> Option<String> {
    body.get(name).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_owned)
}

fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
    })
}

/// US/CA short codes: 5 or 6 digits.
fn is_short_code(number: &str) -> bool {
    (5..=6).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit())
}

fn e164(body: &Map<String, Value>, name: &str, pointer: &str) -> Result<String, Refusal> {
    let number = text(body, name).ok_or_else(|| missing(pointer))?;
    if is_e164(&number) || is_short_code(&number) || number.starts_with("sip:") {
        return Ok(number);
    }
    let (title, detail) = text_for("10016");
    Err(refuse(422, "10016", title, detail, Some(pointer)))
}

fn url(body: &Map<String, Value>, name: &str) -> Result<Option<String>, Refusal> {
    match text(body, name) {
        None => Ok(None),
        Some(url) if (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 2000 => Ok(Some(url)),
        Some(_) => Err(refuse(
            422,
            "10003",
            "Invalid URL",
            "The URL provided was invalid, malformed, or too long.",
            Some(&format!("/{name}")),
        )),
    }
}

fn accept_message(api_key: String, body: &Map<String, Value>) -> Result<(Delivery, Value), Refusal> {
    let to = e164(body, "to", "/to")?;
    if to.starts_with("sip:") {
        let (title, detail) = text_for("40310");
        return Err(refuse(400, "40310", title, detail, Some("/to")));
    }
    let from = text(body, "from");
    let messaging_profile_id = text(body, "messaging_profile_id");
    if from.is_none() && messaging_profile_id.is_none() {
        return Err(missing("/from"));
    }
    let text_value = text(body, "text").unwrap_or_default();
    if text_value.is_empty() && body.get("media_urls").is_none() {
        return Err(refuse(400, "40316", "No content provided for message", "The message has no text.", Some("/text")));
    }
    if text_value.chars().count() > 1600 {
        return Err(refuse(
            400,
            "40302",
            "Message too large",
            "SMS text is limited to 1600 characters.",
            Some("/text"),
        ));
    }
    let sms = TelnyxSms {
        id: random_uuid(),
        api_key,
        from: from.unwrap_or_default(),
        to,
        text: text_value,
        messaging_profile_id,
        webhook_url: url(body, "webhook_url")?,
    };
    let (encoding, parts) = encoding_and_parts(&sms.text);
    let answer = json!({ "data": {
        "record_type": "message",
        "direction": "outbound",
        "id": sms.id,
        "type": "SMS",
        "messaging_profile_id": sms.messaging_profile_id,
        "from": { "phone_number": sms.from, "carrier": "Telnyx", "line_type": "Wireless" },
        "to": [{ "phone_number": sms.to, "status": "queued", "carrier": "T-Mobile USA", "line_type": "Wireless" }],
        "text": sms.text,
        "media": [],
        "webhook_url": sms.webhook_url,
        "webhook_failover_url": null,
        "encoding": encoding,
        "parts": parts,
        "tags": [],
        "cost": null,
        "received_at": DATE,
        "sent_at": null,
        "completed_at": null,
        "valid_until": null,
        "errors": [],
    }});
    Ok((Delivery::Sms(sms), answer))
}

fn accept_call(
    api_key: String,
    connection_id: String,
    body: &Map<String, Value>,
) -> Result<(Delivery, Value), Refusal> {
    let from = e164(body, "From", "/From")?;
    let to = e164(body, "To", "/To")?;
    if let Some(method) = text(body, "Method").filter(|m| m != "GET" && m != "POST") {
        let detail = format!("Method must be GET or POST, not {method}.");
        return Err(refuse(422, "10015", "Bad Request", &detail, Some("/Method")));
    }
    let call = TelnyxCall {
        call_sid: format!("v3:{}", super::random_id("", 32)),
        api_key,
        connection_id,
        from,
        to,
        texml: text(body, "Texml").unwrap_or_default(),
        url: url(body, "Url")?,
    };
    let answer = json!({ "call_sid": call.call_sid, "from": call.from, "to": call.to, "status": "queued" });
    Ok((Delivery::Call(call), answer))
}

/// GSM-7 at 160/153 characters a part, UCS-2 at 70/67.
fn encoding_and_parts(text: &str) -> (&'static str, usize) {
    let (encoding, single, multi) = if gsm::is_gsm7(text) { ("GSM-7", 160, 153) } else { ("UCS-2", 70, 67) };
    let len = text.chars().count();
    (encoding, if len <= single { 1 } else { len.div_ceil(multi) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parts_by_encoding() {
        assert_eq!(encoding_and_parts(&"a".repeat(160)), ("GSM-7", 1));
        assert_eq!(encoding_and_parts(&"a".repeat(161)), ("GSM-7", 2));
        assert_eq!(encoding_and_parts(&"認".repeat(71)), ("UCS-2", 2));
    }
}
