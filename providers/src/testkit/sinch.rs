//! [`SinchMock`]: Sinch's SMS REST API (batches) and Voice API (callouts) on
//! localhost. It checks the bearer token, the callout signature and the
//! fields Sinch requires, answers Sinch's success bodies, remembers what it
//! accepted and can read the code back.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{
    Failure, Faults, Inbox, Received, SentMessage, basic_credentials, bearer_token, random_id, random_uuid,
    with_retry_after,
};
use crate::sinch::{SinchConfig, application_signature};

const BATCHES_PATH: &str = r"^/xms/v1/[^/]+/batches$";
const CALLOUTS_PATH: &str = "/calling/v1/callouts";
const PROVIDER: &str = "sinch";
/// The Voice application every mock knows.
pub const SINCH_MOCK_APPLICATION_KEY: &str = "6f1c8a52-3d4e-4b7a-9c21-5e8f0a1b2c3d";
/// Its secret, base64 like the dashboard shows it.
pub const SINCH_MOCK_APPLICATION_SECRET: &str = "dGVzdC1vbmx5LXNpbmNoLXNlY3JldA==";
/// How far `x-timestamp` may be from the mock's clock.
const TIMESTAMP_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A batch the mock accepted (answered 201).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinchSms {
    pub id: String,
    /// The service plan id in the request path.
    pub service_plan_id: String,
    pub to: Vec<String>,
    pub from: Option<String>,
    pub body: String,
    pub expire_at: Option<String>,
    pub client_reference: Option<String>,
    pub delivery_report: Option<String>,
    pub callback_url: Option<String>,
}

/// A text-to-speech callout the mock accepted (answered 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinchCall {
    pub call_id: String,
    /// `"Application"` (signed) or `"Basic"`.
    pub auth_scheme: String,
    pub application_key: String,
    pub destination: String,
    pub cli: Option<String>,
    pub locale: Option<String>,
    pub text: Option<String>,
    pub prompts: Option<String>,
    pub custom: Option<String>,
}

#[derive(Debug, Clone)]
enum Delivery {
    Sms(SinchSms),
    Call(SinchCall),
}

impl Received for Delivery {
    fn message(&self) -> SentMessage {
        match self {
            Delivery::Sms(batch) => {
                let to = batch.to.first().map(String::as_str).unwrap_or_default();
                SentMessage::sms(PROVIDER, &batch.id, to, &batch.body)
            }
            Delivery::Call(call) => {
                let script = call.prompts.as_deref().or(call.text.as_deref()).unwrap_or_default();
                SentMessage::call(PROVIDER, &call.call_id, &call.destination, script)
            }
        }
    }
}

/// Sinch's SMS and Voice APIs on localhost. Accepts any service plan with any
/// non-empty token; callouts must be signed (or Basic-authenticated) with
/// [`SINCH_MOCK_APPLICATION_KEY`] and [`SINCH_MOCK_APPLICATION_SECRET`].
/// Stops when dropped.
pub struct SinchMock {
    server: MockServer,
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl SinchMock {
    starts_on_a_wiremock_server!();

    async fn on(server: MockServer) -> Self {
        let inbox = Inbox::default();
        let faults = Faults::default();
        Mock::given(method("POST"))
            .and(path_regex(BATCHES_PATH))
            .respond_with(AcceptBatch { inbox: inbox.clone(), faults: faults.clone() })
            .named("Sinch batches")
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(CALLOUTS_PATH))
            .respond_with(AcceptCallout { inbox: inbox.clone(), faults: faults.clone() })
            .named("Sinch callouts")
            .mount(&server)
            .await;
        SinchMock { server, inbox, faults }
    }

    // `uri()` is both `SinchConfig::base_url` and `voice_base_url`.
    common_mock_api!();

    /// A config pointing both APIs at the mock, with the mock's Voice
    /// application and a 5 s timeout.
    pub fn config(&self, service_plan_id: &str, api_token: &str, from: &str) -> SinchConfig {
        SinchConfig {
            base_url: self.uri(),
            voice_base_url: self.uri(),
            timeout: Duration::from_secs(5),
            ..SinchConfig::new(service_plan_id, api_token, from)
                .with_voice(SINCH_MOCK_APPLICATION_KEY, SINCH_MOCK_APPLICATION_SECRET)
        }
    }

    /// The batches accepted so far, oldest first.
    pub async fn sent_sms(&self) -> Vec<SinchSms> {
        self.inbox
            .all()
            .into_iter()
            .filter_map(|d| match d {
                Delivery::Sms(batch) => Some(batch),
                Delivery::Call(_) => None,
            })
            .collect()
    }

    /// The callouts accepted so far, oldest first.
    pub async fn placed_calls(&self) -> Vec<SinchCall> {
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

/// How the SMS API answers `failure`.
fn sms_failure(failure: &Failure) -> ResponseTemplate {
    let (status, code) = match failure {
        Failure::Unavailable => (503, "internal_error"),
        Failure::Throttled { .. } => (429, "too_many_requests"),
        Failure::InvalidNumber => (400, "syntax_invalid_parameter_format"),
        Failure::Unauthorized => (401, "unauthorized"),
        Failure::Code { status, code } => (*status, code.as_str()),
    };
    let response = ResponseTemplate::new(status).set_body_json(sinch_sms_error_body(code, sms_text_for(code)));
    with_retry_after(response, failure)
}

/// How the Voice API answers `failure`.
fn call_failure(failure: &Failure) -> ResponseTemplate {
    let (status, code, message) = match failure {
        Failure::Unavailable => (503, 50000, "Internal error"),
        Failure::Throttled { .. } => (429, 42900, "Too many requests"),
        Failure::InvalidNumber => (400, 40003, "Invalid destination number"),
        Failure::Unauthorized => (401, 40100, "Invalid application key or signature"),
        Failure::Code { status, code } => (*status, code.parse().unwrap_or(0), "Failure injected"),
    };
    with_retry_after(ResponseTemplate::new(status).set_body_json(sinch_voice_error_body(code, message)), failure)
}

/// The SMS API's error body: `{"code":"syntax_invalid_parameter_format","text":"…"}`.
pub fn sinch_sms_error_body(code: &str, text: &str) -> Value {
    json!({ "code": code, "text": text })
}

/// The Voice API's error body: `{"errorCode":40001,"message":"…"}`.
pub fn sinch_voice_error_body(error_code: i64, message: &str) -> Value {
    json!({ "errorCode": error_code, "message": message, "reference": random_uuid() })
}

fn sms_text_for(code: &str) -> &'static str {
    match code {
        "syntax_invalid_json" => "The JSON in the request is invalid",
        "syntax_invalid_parameter_format" => "Invalid MSISDN in the to field",
        "syntax_constraint_violation" => "A required field is missing",
        "blocked_account" => "The account is blocked",
        "illegal_number_type" => "Illegal phone number type of MSISDN for the region",
        "missing_callback_url" => "A delivery report was requested but no callback URL is set",
        "internal_error" => "Internal error",
        "too_many_requests" => "Too many requests",
        "unauthorized" => "Unauthorized",
        _ => "Failure injected by SinchMock",
    }
}

/// Validates a batch like the SMS API does and records what it accepts.
struct AcceptBatch {
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl Respond for AcceptBatch {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(failure) = self.faults.take() {
            return sms_failure(&failure);
        }
        if bearer_token(request).is_none() {
            return ResponseTemplate::new(401).set_body_json(sinch_sms_error_body("unauthorized", "Unauthorized"));
        }
        let plan = request.url.path().split('/').nth(3).unwrap_or_default().to_owned();
        match accept_batch(plan, &request.body) {
            Ok((batch, resource)) => {
                self.inbox.push(Delivery::Sms(batch));
                ResponseTemplate::new(201).set_body_json(resource).set_delay(self.faults.latency())
            }
            Err((code, text)) => ResponseTemplate::new(400).set_body_json(sinch_sms_error_body(code, &text)),
        }
    }
}

type SmsRefusal = (&'static str, String);

fn accept_batch(service_plan_id: String, body: &[u8]) -> Result<(SinchSms, Value), SmsRefusal> {
    let request: Value = serde_json::from_slice(body)
        .ok()
        .filter(Value::is_object)
        .ok_or(("syntax_invalid_json", "The JSON in the request is invalid".to_owned()))?;
    let constraint = |text: &str| ("syntax_constraint_violation", text.to_owned());
    let format = |text: String| ("syntax_invalid_parameter_format", text);
    let to = request["to"].as_array().ok_or_else(|| constraint("to: must not be empty"))?;
    if to.is_empty() || to.len() > 1000 {
        return Err(constraint("to: size must be between 1 and 1000"));
    }
    let mut recipients = Vec::with_capacity(to.len());
    for recipient in to {
        let recipient = recipient.as_str().unwrap_or_default();
        if !is_msisdn(recipient) {
            return Err(format(format!("Invalid MSISDN in the to field: '{recipient}'")));
        }
        recipients.push(recipient.to_owned());
    }
    let text = request["body"].as_str().ok_or_else(|| constraint("body: must not be null"))?;
    if text.chars().count() > 2000 {
        return Err(constraint("body: size must be between 0 and 2000"));
    }
    if let Some(kind) = request.get("type").and_then(Value::as_str).filter(|t| *t != "mt_text") {
        return Err(format(format!("type: '{kind}' is not supported by this mock")));
    }
    let delivery_report = optional_str(&request, "delivery_report");
    if let Some(report) = &delivery_report
        && !["none", "summary", "full", "per_recipient", "per_recipient_final"].contains(&report.as_str())
    {
        return Err(format(format!("delivery_report: '{report}' is not a valid value")));
    }
    let expire_at = optional_str(&request, "expire_at");
    if let Some(at) = &expire_at
        && chrono::DateTime::parse_from_rfc3339(at).is_err()
    {
        return Err(format("expire_at: not an ISO-8601 date-time".to_owned()));
    }
    let client_reference = optional_str(&request, "client_reference");
    let callback_url = optional_str(&request, "callback_url");
    if client_reference.iter().chain(callback_url.iter()).any(|v| v.chars().count() > 2048) {
        return Err(constraint("client_reference and callback_url: at most 2048 characters"));
    }
    let batch = SinchSms {
        id: random_id("", 26).to_ascii_uppercase(),
        service_plan_id,
        to: recipients,
        from: optional_str(&request, "from"),
        body: text.to_owned(),
        expire_at,
        client_reference,
        delivery_report,
        callback_url,
    };
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let resource = json!({
        "id": batch.id,
        "to": batch.to,
        "from": batch.from,
        "canceled": false,
        "body": batch.body,
        "type": "mt_text",
        "created_at": now,
        "modified_at": now,
        "delivery_report": batch.delivery_report.as_deref().unwrap_or("none"),
        "expire_at": batch.expire_at,
        "callback_url": batch.callback_url,
        "client_reference": batch.client_reference,
        "flash_message": false,
        "feedback_enabled": false,
    });
    Ok((batch, resource))
}

fn optional_str(request: &Value, field: &str) -> Option<String> {
    request.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// An MSISDN: optional `+`, then 7 to 15 digits not starting with 0.
fn is_msisdn(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// Validates a callout like the Voice API does and records what it accepts.
struct AcceptCallout {
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl Respond for AcceptCallout {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(failure) = self.faults.take() {
            return call_failure(&failure);
        }
        let accepted = authenticate(request).and_then(|(scheme, key)| accept_callout(scheme, key, &request.body));
        match accepted {
            Ok(callout) => {
                let call_id = callout.call_id.clone();
                self.inbox.push(Delivery::Call(callout));
                ResponseTemplate::new(200).set_body_json(json!({ "callId": call_id })).set_delay(self.faults.latency())
            }
            Err((status, code, message)) => {
                ResponseTemplate::new(status).set_body_json(sinch_voice_error_body(code, &message))
            }
        }
    }
}

type VoiceRefusal = (u16, i64, String);

/// `(scheme, application key)` of a signed or Basic request with the mock's application.
fn authenticate(request: &Request) -> Result<(String, String), VoiceRefusal> {
    let unauthorized = |message: &str| (401, 40100, message.to_owned());
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some((user, password)) = basic_credentials(request) {
        if user != SINCH_MOCK_APPLICATION_KEY {
            return Err((400, 40004, "Bad request: Application key is invalid".to_owned()));
        }
        if password != SINCH_MOCK_APPLICATION_SECRET {
            return Err(unauthorized("Invalid credentials"));
        }
        return Ok(("Basic".to_owned(), user));
    }
    let authorization = header("authorization").ok_or_else(|| unauthorized("Authorization header missing"))?;
    let (key, signature) = authorization
        .strip_prefix("Application ")
        .and_then(|rest| rest.split_once(':'))
        .ok_or_else(|| unauthorized("Unsupported authorization scheme"))?;
    if key != SINCH_MOCK_APPLICATION_KEY {
        return Err((400, 40004, "Bad request: Application key is invalid".to_owned()));
    }
    let timestamp = header("x-timestamp").ok_or_else(|| unauthorized("x-timestamp header missing"))?;
    let sent = chrono::DateTime::parse_from_rfc3339(&timestamp).map_err(|_| unauthorized("Invalid x-timestamp"))?;
    let skew = (chrono::Utc::now() - sent.to_utc()).abs().to_std().unwrap_or(Duration::MAX);
    if skew > TIMESTAMP_WINDOW {
        return Err(unauthorized("x-timestamp is too far from the server time"));
    }
    let content_type = header("content-type").unwrap_or_default();
    let expected = application_signature(
        SINCH_MOCK_APPLICATION_SECRET,
        &request.body,
        &content_type,
        &timestamp,
        request.url.path(),
    );
    if expected.as_deref() != Some(signature) {
        return Err(unauthorized("Invalid signature"));
    }
    Ok(("Application".to_owned(), key.to_owned()))
}

fn accept_callout(auth_scheme: String, application_key: String, body: &[u8]) -> Result<SinchCall, VoiceRefusal> {
    let invalid = |message: &str| (400, 40001, message.to_owned());
    let missing = |message: &str| (400, 40002, message.to_owned());
    let request: Value = serde_json::from_slice(body).map_err(|_| invalid("Invalid parameters: invalid JSON"))?;
    match request["method"].as_str() {
        Some("ttsCallout") => {}
        Some("conferenceCallout" | "customCallout") => {
            return Err(invalid("Invalid parameters: SinchMock only places ttsCallout"));
        }
        _ => return Err(invalid("Method needs to be `ttsCallout`, `conferenceCallout`, or `customCallout`")),
    }
    let tts = request
        .get("ttsCallout")
        .filter(|t| t.is_object())
        .ok_or_else(|| missing("Bad request: TTS callout information missing"))?;
    let destination = &tts["destination"];
    if destination["type"].as_str() != Some("number") {
        return Err(invalid("Invalid parameters: destination type must be number"));
    }
    let endpoint =
        destination["endpoint"].as_str().ok_or_else(|| missing("Bad request: destination endpoint is missing"))?;
    if !endpoint.starts_with('+') || !is_msisdn(endpoint) {
        return Err((400, 40005, "Bad request: number missing leading plus or invalid".to_owned()));
    }
    let text = optional_str(tts, "text").filter(|t| !t.trim().is_empty());
    let prompts = optional_str(tts, "prompts").filter(|p| !p.trim().is_empty());
    if text.is_none() && prompts.is_none() {
        return Err(missing("Bad request: text or prompts is missing"));
    }
    Ok(SinchCall {
        call_id: random_uuid(),
        auth_scheme,
        application_key,
        destination: endpoint.to_owned(),
        cli: optional_str(tts, "cli"),
        locale: optional_str(tts, "locale"),
        text,
        prompts,
        custom: optional_str(tts, "custom"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msisdns_may_carry_a_plus() {
        assert!(is_msisdn("+46701234567") && is_msisdn("46701234567"));
        assert!(!is_msisdn("+0701234567") && !is_msisdn("+4670-123") && !is_msisdn(""));
    }

    #[test]
    fn a_batch_without_body_or_with_a_bad_recipient_is_refused() {
        let refused = accept_batch("plan".into(), br#"{"to":["+46701234567"]}"#).unwrap_err();
        assert_eq!(refused.0, "syntax_constraint_violation");
        let refused = accept_batch("plan".into(), br#"{"to":["07012"],"body":"x"}"#).unwrap_err();
        assert_eq!(refused.0, "syntax_invalid_parameter_format");
        let refused = accept_batch("plan".into(), b"[1]").unwrap_err();
        assert_eq!(refused.0, "syntax_invalid_json");
    }
}
