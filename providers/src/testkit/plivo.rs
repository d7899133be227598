//! [`PlivoMock`]: Plivo's REST API (Message and Call) on localhost. It checks
//! HTTP Basic credentials and the JSON fields the way Plivo documents them,
//! answers 202/201 with Plivo's bodies, and remembers what it accepted.
//!
//! A Plivo call carries no script: Plivo fetches Plivo XML from `answer_url`
//! once the phone is answered. The mock does the same the first time a test
//! asks for a code (or calls [`PlivoMock::answer_calls`]): it POSTs Plivo's
//! call parameters to `answer_url` and reads the digits from the XML it gets.
//! That fetch uses reqwest, so it needs a tokio runtime (tokio or actix tests).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{
    Failure, Faults, Inbox, Received, SentMessage, basic_credentials, lock, random_id, random_uuid, with_retry_after,
};
use crate::plivo::{PlivoConfig, answer_xml};
use crate::{VoiceCall, gsm};

const MESSAGE_PATH: &str = r"^/v1/Account/[^/]+/Message/$";
const CALL_PATH: &str = r"^/v1/Account/[^/]+/Call/$";
const PROVIDER: &str = "plivo";
/// Where [`PlivoMock::host_script`] serves call scripts.
const SCRIPT_PREFIX: &str = "/verifyd-scripts/";
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// An SMS the mock accepted (answered 202). One per destination of `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlivoSms {
    pub message_uuid: String,
    /// The auth id in the request path (also the Basic user name).
    pub auth_id: String,
    /// Sanitized as Plivo does: only letters and digits.
    pub src: String,
    /// Sanitized as Plivo does: digits only, country code first.
    pub dst: String,
    pub text: String,
    pub message_expiry: Option<u64>,
    /// Status callback URL and its method.
    pub url: Option<String>,
    pub method: Option<String>,
}

/// A call the mock accepted (answered 201).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlivoCall {
    pub request_uuid: String,
    pub auth_id: String,
    pub from: String,
    pub to: String,
    pub answer_url: String,
    /// `POST` unless the request said `GET`.
    pub answer_method: String,
    pub ring_timeout: Option<u64>,
    pub time_limit: Option<u64>,
    pub hangup_url: Option<String>,
    /// The Plivo XML `answer_url` served when the mock answered the call;
    /// `None` until then, or when fetching it failed.
    pub script: Option<String>,
}

/// What became of a call's `answer_url`.
#[derive(Debug, Clone)]
enum Answer {
    Ringing,
    Script(String),
    Failed,
}

#[derive(Debug, Clone)]
enum Delivery {
    Sms(PlivoSms),
    Call(PlivoCall, Arc<Mutex<Answer>>),
}

impl Received for Delivery {
    /// A call's text is its script once fetched, empty until then.
    fn message(&self) -> SentMessage {
        match self {
            Delivery::Sms(sms) => SentMessage::sms(PROVIDER, &sms.message_uuid, &sms.dst, &sms.text),
            Delivery::Call(call, answer) => {
                let script = match &*lock(answer) {
                    Answer::Script(xml) => xml.clone(),
                    Answer::Ringing | Answer::Failed => String::new(),
                };
                SentMessage::call(PROVIDER, &call.request_uuid, &call.to, &script)
            }
        }
    }
}

/// A Plivo REST API on localhost. Accepts any auth id with any non-empty
/// token; stops when dropped.
pub struct PlivoMock {
    server: MockServer,
    inbox: Inbox<Delivery>,
    faults: Faults,
    http: reqwest::Client,
}

impl PlivoMock {
    starts_on_a_wiremock_server!();

    async fn on(server: MockServer) -> Self {
        let inbox = Inbox::default();
        let faults = Faults::default();
        for (path, resource) in [(MESSAGE_PATH, Resource::Message), (CALL_PATH, Resource::Call)] {
            Mock::given(method("POST"))
                .and(path_regex(path))
                .respond_with(Accept { resource, inbox: inbox.clone(), faults: faults.clone() })
                .named(format!("Plivo {resource:?}"))
                .mount(&server)
                .await;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        PlivoMock { server, inbox, faults, http }
    }

    common_mock_api!();

    /// A config pointing at the mock, with a 5 s timeout and no status callback.
    pub fn config(&self, auth_id: &str, auth_token: &str, from: &str) -> PlivoConfig {
        PlivoConfig {
            base_url: self.uri(),
            timeout: Duration::from_secs(5),
            ..PlivoConfig::new(auth_id, auth_token, from)
        }
    }

    /// Serves [`answer_xml`] of `call` from the mock itself and returns its URL:
    /// a stand-in for the signed verifyd URL, for tests without a verifyd
    /// server. Put it in `call.script_url`.
    pub async fn host_script(&self, call: &VoiceCall) -> String {
        let path = format!("{SCRIPT_PREFIX}{}", random_id("", 16));
        Mock::given(wiremock::matchers::path(path.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_raw(answer_xml(call), "application/xml"))
            .named("verifyd call script")
            .mount(&self.server)
            .await;
        format!("{}{path}", self.uri())
    }

    /// The SMS accepted so far, oldest first.
    pub async fn sent_sms(&self) -> Vec<PlivoSms> {
        self.inbox
            .all()
            .into_iter()
            .filter_map(|d| match d {
                Delivery::Sms(sms) => Some(sms),
                Delivery::Call(..) => None,
            })
            .collect()
    }

    /// The calls accepted so far, oldest first, answered first (see
    /// [`answer_calls`](Self::answer_calls)) so `script` is filled in.
    pub async fn placed_calls(&self) -> Vec<PlivoCall> {
        self.answer_calls().await;
        self.inbox
            .all()
            .into_iter()
            .filter_map(|d| match d {
                Delivery::Call(mut call, answer) => {
                    call.script = match &*lock(&answer) {
                        Answer::Script(xml) => Some(xml.clone()),
                        Answer::Ringing | Answer::Failed => None,
                    };
                    Some(call)
                }
                Delivery::Sms(_) => None,
            })
            .collect()
    }

    /// Picks up every call not answered yet: fetches its `answer_url` the way
    /// Plivo does (with `CallUUID`, `From`, `To`, `CallStatus`, `Direction`,
    /// `Event` as a form for POST or a query for GET) and keeps the XML. A
    /// failed fetch is not retried.
    pub async fn answer_calls(&self) {
        for delivery in self.inbox.all() {
            let Delivery::Call(call, answer) = delivery else { continue };
            if !matches!(*lock(&answer), Answer::Ringing) {
                continue;
            }
            let result = self.fetch_script(&call).await;
            *lock(&answer) = result.map_or(Answer::Failed, Answer::Script);
        }
    }

    async fn fetch_script(&self, call: &PlivoCall) -> Option<String> {
        let params = [
            ("CallUUID", call.request_uuid.as_str()),
            ("From", call.from.as_str()),
            ("To", call.to.as_str()),
            ("CallStatus", "in-progress"),
            ("Direction", "outbound"),
            ("Event", "StartApp"),
        ];
        let request = if call.answer_method == "GET" {
            let mut url = reqwest::Url::parse(&call.answer_url).ok()?;
            url.query_pairs_mut().extend_pairs(params);
            self.http.get(url)
        } else {
            self.http.post(&call.answer_url).form(&params)
        };
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    /// Every message accepted so far, oldest first, calls answered first.
    pub async fn sent(&self) -> Vec<SentMessage> {
        self.answer_calls().await;
        self.inbox.messages()
    }

    /// The code in the latest SMS or answered call to `phone` (compared by its
    /// digits, so "+1 415 555 2671" finds "14155552671").
    pub async fn code_sent_to(&self, phone: &str) -> Option<String> {
        self.answer_calls().await;
        self.inbox.code_sent_to(phone)
    }

    /// How many SMS and calls reached `phone` so far.
    pub async fn deliveries_to(&self, phone: &str) -> usize {
        self.inbox.deliveries_to(phone)
    }

    /// Waits for a delivery to `phone` beyond the first `seen` ones and returns
    /// its code, answering calls as they come in.
    pub async fn wait_for_next_code(&self, phone: &str, seen: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.answer_calls().await;
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(code) = self.inbox.wait_for_next_code(phone, seen, WAIT_SLICE.min(left)).await {
                return Some(code);
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Polls every 20 ms until a code for `phone` shows up or `timeout` passes.
    pub async fn wait_for_code(&self, phone: &str, timeout: Duration) -> Option<String> {
        self.wait_for_next_code(phone, 0, timeout).await
    }
}

/// How Plivo answers `failure`.
fn failure_response(failure: &Failure) -> ResponseTemplate {
    let (status, error) = match failure {
        Failure::Unavailable => (500, "internal server error"),
        Failure::Throttled { .. } => (429, "rate_limit_exceeded"),
        Failure::InvalidNumber => (400, "dst is not a valid phone number."),
        Failure::Unauthorized => (401, "authentication_failed"),
        Failure::Code { status, code } => (*status, code.as_str()),
    };
    with_retry_after(ResponseTemplate::new(status).set_body_json(plivo_error_body(error)), failure)
}

/// Plivo's error body: `{"api_id":"…","error":"…"}`.
pub fn plivo_error_body(error: &str) -> Value {
    json!({ "api_id": random_uuid(), "error": error })
}

#[derive(Debug, Clone, Copy)]
enum Resource {
    Message,
    Call,
}

/// Validates a create request like Plivo does and records what it accepts.
struct Accept {
    resource: Resource,
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl Respond for Accept {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(failure) = self.faults.take() {
            return failure_response(&failure);
        }
        let accepted = authenticate(request).and_then(|auth_id| {
            let body = json_body(request)?;
            match self.resource {
                Resource::Message => accept_message(auth_id, &body),
                Resource::Call => accept_call(auth_id, &body),
            }
        });
        match accepted {
            Ok((deliveries, status, body)) => {
                for delivery in deliveries {
                    self.inbox.push(delivery);
                }
                ResponseTemplate::new(status).set_body_json(body).set_delay(self.faults.latency())
            }
            Err((status, error)) => ResponseTemplate::new(status).set_body_json(plivo_error_body(&error)),
        }
    }
}

/// An HTTP status and Plivo's `error` text.
type Refusal = (u16, String);
type Accepted = (Vec<Delivery>, u16, Value);

fn bad(error: impl Into<String>) -> Refusal {
    (400, error.into())
}

/// The auth id of the path, which must be the Basic user, with a non-empty token.
fn authenticate(request: &Request) -> Result<String, Refusal> {
    let auth_id = request.url.path().split('/').nth(3).unwrap_or_default().to_owned();
    match basic_credentials(request) {
        Some((user, token)) if user == auth_id && !token.is_empty() => Ok(auth_id),
        _ => Err((401, "authentication_failed".to_owned())),
    }
}

fn json_body(request: &Request) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(body)) => Ok(body),
        _ => Err(bad("invalid_parameter: the request body is not a JSON object")),
    }
}

/// A string field (numbers are accepted as Plivo's SDKs send some as numbers),
/// `None` when absent or empty.
fn text(body: &Map<String, Value>, name: &str) -> Option<String> {
    match body.get(name)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn required(body: &Map<String, Value>, name: &str) -> Result<String, Refusal> {
    text(body, name).ok_or_else(|| bad(format!("{name} parameter is missing")))
}

/// An optional non-negative integer field, given as a number or a numeric string.
fn integer(body: &Map<String, Value>, name: &str) -> Result<Option<u64>, Refusal> {
    match text(body, name) {
        None => Ok(None),
        Some(raw) => raw.parse().map(Some).map_err(|_| bad(format!("{name} must be a non-negative integer"))),
    }
}

/// Plivo strips `/ - . + ( )` and spaces; what is left must be a number with
/// its country code, at most 14 digits.
fn phone_number(raw: &str) -> Result<String, Refusal> {
    let digits: String = raw.chars().filter(|c| !"/-.+() ".contains(*c)).collect();
    let valid =
        (7..=14).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if valid { Ok(digits) } else { Err(bad(format!("'{raw}' is not a valid phone number."))) }
}

/// A sender keeps only letters and digits: a number (at most 14 digits) or an
/// alphanumeric id (at most 11 characters).
fn sender(raw: &str) -> Result<String, Refusal> {
    let kept: String = raw.chars().filter(char::is_ascii_alphanumeric).collect();
    let numeric = kept.bytes().all(|b| b.is_ascii_digit());
    let valid = !kept.is_empty() && if numeric { kept.len() <= 14 } else { kept.len() <= 11 };
    if valid { Ok(kept) } else { Err(bad(format!("invalid src '{raw}'"))) }
}

fn callback(body: &Map<String, Value>, url: &str, method: &str) -> Result<(Option<String>, Option<String>), Refusal> {
    let url =
        text(body, url).map(|u| if is_url(&u) { Ok(u) } else { Err(bad(format!("invalid {url}"))) }).transpose()?;
    let method = text(body, method)
        .map(|m| if m == "GET" || m == "POST" { Ok(m) } else { Err(bad(format!("{method} must be GET or POST"))) })
        .transpose()?;
    Ok((url, method))
}

fn is_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

fn accept_message(auth_id: String, body: &Map<String, Value>) -> Result<Accepted, Refusal> {
    let dst = required(body, "dst")?;
    let src = match (text(body, "src"), text(body, "powerpack_uuid")) {
        (Some(_), Some(_)) => return Err(bad("Both powerpack_uuid and src cannot be specified")),
        (None, None) => return Err(bad("src parameter is missing")),
        (Some(src), None) => sender(&src)?,
        (None, Some(_)) => String::new(),
    };
    let text_value = required(body, "text")?;
    let chars = text_value.chars().count();
    let max = if gsm::is_gsm7(&text_value) { 1600 } else { 737 };
    if chars > max {
        return Err(bad(format!("text exceeds the maximum of {max} characters")));
    }
    let message_expiry = integer(body, "message_expiry")?;
    if message_expiry.is_some_and(|secs| !(5..=10_799).contains(&secs)) {
        return Err(bad("message_expiry must be between 5 and 10799 seconds"));
    }
    let (url, method) = callback(body, "url", "method")?;
    let destinations = dst.split('<').map(phone_number).collect::<Result<Vec<_>, _>>()?;
    if destinations.contains(&src) {
        return Err(bad("src and dst cannot be same"));
    }
    let deliveries: Vec<PlivoSms> = destinations
        .into_iter()
        .map(|dst| PlivoSms {
            message_uuid: random_uuid(),
            auth_id: auth_id.clone(),
            src: src.clone(),
            dst,
            text: text_value.clone(),
            message_expiry,
            url: url.clone(),
            method: method.clone(),
        })
        .collect();
    let uuids: Vec<&str> = deliveries.iter().map(|d| d.message_uuid.as_str()).collect();
    let answer = json!({ "api_id": random_uuid(), "message": "message(s) queued", "message_uuid": uuids });
    Ok((deliveries.into_iter().map(Delivery::Sms).collect(), 202, answer))
}

fn accept_call(auth_id: String, body: &Map<String, Value>) -> Result<Accepted, Refusal> {
    let from = phone_number(&required(body, "from")?)?;
    let to = required(body, "to")?;
    let to = if to.starts_with("sip:") { to } else { phone_number(&to)? };
    let answer_url = required(body, "answer_url")?;
    if !is_url(&answer_url) {
        return Err(bad("invalid answer_url"));
    }
    let answer_method = text(body, "answer_method").unwrap_or_else(|| "POST".to_owned());
    if answer_method != "GET" && answer_method != "POST" {
        return Err(bad("answer_method must be GET or POST"));
    }
    let (hangup_url, _) = callback(body, "hangup_url", "hangup_method")?;
    let call = PlivoCall {
        request_uuid: random_uuid(),
        auth_id,
        from,
        to,
        answer_url,
        answer_method,
        ring_timeout: integer(body, "ring_timeout")?,
        time_limit: integer(body, "time_limit")?,
        hangup_url,
        script: None,
    };
    let answer = json!({ "api_id": random_uuid(), "message": "call fired", "request_uuid": call.request_uuid });
    Ok((vec![Delivery::Call(call, Arc::new(Mutex::new(Answer::Ringing)))], 201, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_sanitized_like_plivo() {
        assert_eq!(phone_number("+1 (415) 555-2671").unwrap(), "14155552671");
        assert!(phone_number("1111").is_err());
        assert!(phone_number("0044123456789").is_err());
        assert_eq!(sender("+1-500-555-0006").unwrap(), "15005550006");
        assert_eq!(sender("Verify-D").unwrap(), "VerifyD");
        assert!(sender("VeryLongSenderId").is_err());
    }
}
