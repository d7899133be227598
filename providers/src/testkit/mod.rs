//! Stand-ins for the provider APIs, for verifyd's own integration tests and for
//! backend teams testing against verifyd without sending real messages.
//!
//! Each mock is a local HTTP server (wiremock) that answers like the provider's
//! real API: it checks credentials and required fields the way the provider
//! does, answers with a realistic resource, remembers what it accepted and can
//! read the code back. Every mock has the same names (docs/testing.md):
//!
//! | | |
//! |---|---|
//! | `start()`, `start_on(listener)` | start on a free port, or on a listener of yours |
//! | `uri()` | where it listens: the provider's `base_url` in verifyd's config |
//! | `config(…)` | a provider config pointing at the mock (arguments per provider) |
//! | `sent()` | every message accepted, oldest first, as [`SentMessage`] (`to`, `text`, `code()`) |
//! | `sent_sms()`, `placed_calls()` | the same with every field the provider received (`TwilioSms`, `VonageCall`, …) |
//! | `code_sent_to`, `wait_for_code`, `wait_for_next_code`, `deliveries_to` | read codes by phone number |
//! | `fail_next(n, Failure::…)`, `fail_for(duration, Failure::…)` | the next `n` sends (SMS and calls together), or every send for a while, get the provider's real error |
//! | `set_latency(d)` | answer every send after `d` |
//! | `clear()` | forget what was accepted and every failure still to come |
//! | `mount_control_api()` | `GET`/`DELETE /_mock/messages`, `POST /_mock/fail-next` over HTTP (what `verifyd mock-provider` serves) |
//!
//! - [`TwilioMock`]: Messages.json and Calls.json (inline TwiML).
//! - [`PlivoMock`]: Message/ and Call/; a call's script is fetched from its
//!   `answer_url` when a test reads the code, as Plivo does on answer
//!   ([`PlivoMock::host_script`] serves one when there is no verifyd server).
//! - [`TelnyxMock`]: /v2/messages and connection-scoped TeXML calls (inline TeXML).
//! - [`SinchMock`]: SMS batches and signed text-to-speech callouts.
//! - [`VonageMock`]: `/sms/json` and `/v1/calls` (JWT checked against a
//!   test-only key pair); it also signs delivery receipts like Vonage.
//! - [`WebhookReceiverMock`]: a backend's gateway behind verifyd's signed webhook.
//! - [`SendGridMock`]: SendGrid's v3 Mail Send (`202` with `X-Message-Id`).
//! - [`MetaMock`]: Meta's WhatsApp Cloud API (authentication templates).
//! - [`SmtpSink`]: not HTTP but a real SMTP server on localhost that keeps
//!   each message (envelope, headers, decoded parts); the same reading and
//!   failure methods, failures answered at `RCPT TO`.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use verifyd_providers::testkit::{Failure, TwilioMock};
//! use verifyd_providers::twilio::Twilio;
//!
//! let twilio_mock = TwilioMock::start().await;
//! let provider = Twilio::new(twilio_mock.config("AC123", "token", "+15005550006")).unwrap();
//! // ... send a code through verifyd to +14155552671 ...
//! let code = twilio_mock.wait_for_code("+14155552671", Duration::from_secs(2)).await;
//! twilio_mock.fail_next(1, Failure::InvalidNumber).await;
//! # }
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub use crate::domain::Channel;

/// What every mock has whatever its provider: see the module documentation.
/// Needs the fields `server: MockServer`, `inbox: Inbox<_>` and `faults: Faults`.
/// `start()` and `start_on(listener)` of a mock whose `async fn on(server)`
/// mounts its routes on a wiremock server.
macro_rules! starts_on_a_wiremock_server {
    () => {
        /// Starts on a free port of 127.0.0.1.
        pub async fn start() -> Self {
            Self::on($crate::testkit::server_on(None).await).await
        }

        /// Starts on `listener` (a standalone mock on a known port).
        pub async fn start_on(listener: std::net::TcpListener) -> Self {
            Self::on($crate::testkit::server_on(Some(listener)).await).await
        }
    };
}

macro_rules! common_mock_api {
    () => {
        /// Where the mock listens (`http://127.0.0.1:PORT`): the provider's
        /// `base_url` in verifyd's configuration.
        pub fn uri(&self) -> String {
            self.server.uri()
        }

        /// The underlying server, to mount extra mocks or read raw requests.
        pub fn server(&self) -> &wiremock::MockServer {
            &self.server
        }

        /// The next `n` sends (SMS and calls counted together) get `failure`,
        /// answered as this provider answers it. Failures queue up in order.
        pub async fn fail_next(&self, n: u64, failure: $crate::testkit::Failure) {
            self.faults.fail_next(n, failure);
        }

        /// Every send for the next `duration` gets `failure` (an outage of a
        /// known length, whatever the traffic).
        pub fn fail_for(&self, duration: std::time::Duration, failure: $crate::testkit::Failure) {
            self.faults.fail_for(duration, failure);
        }

        /// From now on every accepted send is answered after `latency` (it is
        /// recorded when the request arrives): a slow provider.
        pub fn set_latency(&self, latency: std::time::Duration) {
            self.faults.set_latency(latency);
        }

        /// Forgets every message accepted, every failure still to come and the latency.
        pub async fn clear(&self) {
            self.inbox.clear();
            self.faults.clear();
        }

        /// Serves the control API on the mock's own port: `GET /_mock/messages`
        /// (`?to=` filters by number), `DELETE /_mock/messages`, `POST
        /// /_mock/fail-next`. See docs/testing.md.
        pub async fn mount_control_api(&self) {
            $crate::testkit::mount_control_api(&self.server, PROVIDER, self.inbox.clone(), self.faults.clone()).await;
        }
    };
}

/// The code-reading methods of a mock whose inbox knows every code as soon
/// as the request arrives (see [`Inbox`]).
macro_rules! reads_codes_from_its_inbox {
    () => {
        /// Every message accepted so far, oldest first, whatever its channel.
        pub async fn sent(&self) -> Vec<$crate::testkit::SentMessage> {
            self.inbox.messages()
        }

        /// The code in the latest SMS or call to `phone` (compared by its digits, so
        /// "+1 415 555 2671" finds "14155552671").
        pub async fn code_sent_to(&self, phone: &str) -> Option<String> {
            self.inbox.code_sent_to(phone)
        }

        /// How many SMS and calls reached `phone` so far.
        pub async fn deliveries_to(&self, phone: &str) -> usize {
            self.inbox.deliveries_to(phone)
        }

        /// Waits for a delivery to `phone` beyond the first `seen` ones and returns
        /// its code: the way to read the *next* code sent to a number that already
        /// got one.
        pub async fn wait_for_next_code(&self, phone: &str, seen: usize, timeout: Duration) -> Option<String> {
            self.inbox.wait_for_next_code(phone, seen, timeout).await
        }

        /// Polls every 20 ms until a code for `phone` shows up or `timeout` passes.
        /// Works on any async runtime.
        pub async fn wait_for_code(&self, phone: &str, timeout: Duration) -> Option<String> {
            self.inbox.wait_for_code(phone, timeout).await
        }
    };
}

mod meta;
mod plivo;
mod sendgrid;
mod sinch;
mod smtp;
mod telnyx;
mod twilio;
mod vonage;
mod webhook;

pub use meta::{MetaMessage, MetaMock, meta_error_body};
pub use plivo::{PlivoCall, PlivoMock, PlivoSms, plivo_error_body};
pub use sendgrid::{SendGridEmail, SendGridMock, sendgrid_error_body};
pub use sinch::{
    SINCH_MOCK_APPLICATION_KEY, SINCH_MOCK_APPLICATION_SECRET, SinchCall, SinchMock, SinchSms, sinch_sms_error_body,
    sinch_voice_error_body,
};
pub use smtp::{SmtpEmail, SmtpSink};
pub use telnyx::{TelnyxCall, TelnyxMock, TelnyxSms, telnyx_error_body};
pub use twilio::{TwilioCall, TwilioMock, TwilioSms, twilio_error_body};
pub use vonage::{
    VONAGE_MOCK_APPLICATION_ID, VONAGE_TEST_PRIVATE_KEY, VonageCall, VonageMock, VonageSms, vonage_problem,
    vonage_sms_refusal,
};
pub use webhook::{WEBHOOK_PATH, WebhookCall, WebhookReceiverMock, WebhookSms, webhook_error_body};

const POLL_EVERY: Duration = Duration::from_millis(20);

/// A wiremock server on a free port, or on `listener` (a standalone mock
/// provider, which records no raw request: it may run for days).
pub(crate) async fn server_on(listener: Option<std::net::TcpListener>) -> MockServer {
    match listener {
        None => MockServer::start().await,
        Some(listener) => MockServer::builder().listener(listener).disable_request_recording().start().await,
    }
}

/// One message a mock accepted, the same for every provider: where it went,
/// what it said, and the code in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// `twilio`, `vonage`, `plivo`, `sinch`, `telnyx`, `webhook`, `sendgrid` or `smtp`.
    pub provider: &'static str,
    /// The message id the mock answered with (Twilio's `SM…`/`CA…` sid, …).
    pub id: String,
    pub channel: Channel,
    /// The destination as the provider received it (`+E.164` or bare digits).
    pub to: String,
    /// The SMS text, or the call's script (TwiML, NCCO text, XML…); empty for
    /// a call whose script is not fetched yet.
    pub text: String,
    code: Option<String>,
}

impl SentMessage {
    pub(crate) fn sms(provider: &'static str, id: &str, to: &str, text: &str) -> Self {
        let code = code_in_text(text);
        SentMessage {
            provider,
            id: id.to_owned(),
            channel: Channel::Sms,
            to: to.to_owned(),
            text: text.to_owned(),
            code,
        }
    }

    pub(crate) fn call(provider: &'static str, id: &str, to: &str, script: &str) -> Self {
        let code = code_in_speech(script);
        let to = to.to_owned();
        SentMessage { provider, id: id.to_owned(), channel: Channel::Voice, to, text: script.to_owned(), code }
    }

    /// A WhatsApp template: its text is what the provider received (the
    /// template's variables), its code the one the template carries.
    pub(crate) fn whatsapp(provider: &'static str, id: &str, to: &str, text: &str, code: Option<String>) -> Self {
        SentMessage {
            provider,
            id: id.to_owned(),
            channel: Channel::Whatsapp,
            to: to.to_owned(),
            text: text.to_owned(),
            code,
        }
    }

    /// An email: the code is read from its plain-text body.
    pub(crate) fn email(provider: &'static str, id: &str, to: &str, text: &str) -> Self {
        let code = code_in_text(text);
        SentMessage {
            provider,
            id: id.to_owned(),
            channel: Channel::Email,
            to: to.to_owned(),
            text: text.to_owned(),
            code,
        }
    }

    pub(crate) fn with_code(mut self, code: Option<String>) -> Self {
        self.code = code;
        self
    }

    /// The code the person would read or hear: the last run of 4 to 10 digits
    /// of an SMS, the digits a call reads one by one.
    pub fn code(&self) -> Option<String> {
        self.code.clone()
    }

    /// Whether it went to `destination`: a phone compared by digits ("+1 415
    /// 555 2671" is "14155552671"), an email address whole, its domain in any
    /// case.
    pub fn is_to(&self, destination: &str) -> bool {
        match (self.to.rsplit_once('@'), destination.rsplit_once('@')) {
            (Some((local, domain)), Some((their_local, their_domain))) => {
                local == their_local && domain.eq_ignore_ascii_case(their_domain)
            }
            (None, None) => digits_of(&self.to) == digits_of(destination),
            _ => false,
        }
    }

    /// The JSON the control API answers with (`GET /_mock/messages`).
    pub fn to_json(&self) -> Value {
        json!({
            "provider": self.provider,
            "id": self.id,
            "channel": self.channel,
            "to": self.to,
            "text": self.text,
            "code": self.code,
        })
    }
}

/// One message a mock accepted, in the mock's own type.
pub trait Received: Clone + Send + 'static {
    /// The same as every provider's mock describes it.
    fn message(&self) -> SentMessage;
}

/// A provider error to answer a send with, in the provider's own words:
/// each mock turns it into the status, body and headers its provider sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The provider is down: a 5xx (Vonage SMS: status `5`). Retryable.
    Unavailable,
    /// Too many requests: 429 with `Retry-After` (Twilio 20429, Telnyx 10011, …). Retryable.
    Throttled { retry_after: Duration },
    /// The destination is not a valid number (Twilio 21211, Vonage `3`, …). Permanent.
    InvalidNumber,
    /// The credentials are refused (Twilio 20003, Vonage `4`, 401). Permanent;
    /// verifyd moves on to the next provider.
    Unauthorized,
    /// Any other error of the provider: the HTTP `status` and the provider's
    /// own `code` (Twilio `21610`, Vonage SMS status `7` (HTTP 200), Plivo's
    /// error text, Sinch's `code`, Telnyx's `40300`, the webhook's `error`).
    Code { status: u16, code: String },
}

impl Failure {
    /// [`Failure::Code`].
    pub fn code(status: u16, code: impl Into<String>) -> Self {
        Failure::Code { status, code: code.into() }
    }

    /// The failure asked for by `POST /_mock/fail-next`:
    /// `{"failure": "unavailable" | "throttled" | "invalid_number" |
    /// "unauthorized" | "code", "retry_after_secs"?, "status"?, "code"?}`.
    pub fn from_json(body: &Value) -> Result<Self, String> {
        let kind = body["failure"].as_str().ok_or("`failure` is missing")?;
        Ok(match kind {
            "unavailable" => Failure::Unavailable,
            "throttled" => {
                let secs = body.get("retry_after_secs").map_or(Some(1), Value::as_u64);
                let secs = secs.ok_or("`retry_after_secs` must be a whole number")?;
                Failure::Throttled { retry_after: Duration::from_secs(secs) }
            }
            "invalid_number" => Failure::InvalidNumber,
            "unauthorized" => Failure::Unauthorized,
            "code" => {
                let status = body["status"].as_u64().and_then(|s| u16::try_from(s).ok());
                let status = status.filter(|s| (200..600).contains(s)).ok_or("`status` must be an HTTP status")?;
                let code = match &body["code"] {
                    Value::String(code) => code.clone(),
                    Value::Number(code) => code.to_string(),
                    _ => return Err("`code` must be the provider's error code".to_owned()),
                };
                Failure::Code { status, code }
            }
            _ => {
                return Err(format!(
                    "unknown failure {kind:?}: unavailable, throttled, invalid_number, unauthorized or code"
                ));
            }
        })
    }

    /// The `Retry-After` of a throttled answer, in seconds.
    pub(crate) fn retry_after_secs(&self) -> Option<String> {
        match self {
            Failure::Throttled { retry_after } => Some(retry_after.as_secs().to_string()),
            _ => None,
        }
    }
}

/// Sets `Retry-After` on a throttled answer.
pub(crate) fn with_retry_after(response: ResponseTemplate, failure: &Failure) -> ResponseTemplate {
    match failure.retry_after_secs() {
        Some(secs) => response.insert_header("Retry-After", secs.as_str()),
        None => response,
    }
}

/// The failures still to come and the latency of a mock, shared by its responders.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<FaultState>>);

#[derive(Default)]
struct FaultState {
    next: VecDeque<(Failure, u64)>,
    outage: Option<(Instant, Failure)>,
    latency: Duration,
}

impl Faults {
    pub(crate) fn fail_next(&self, n: u64, failure: Failure) {
        if n > 0 {
            lock(&self.0).next.push_back((failure, n));
        }
    }

    pub(crate) fn fail_for(&self, duration: Duration, failure: Failure) {
        lock(&self.0).outage = Some((Instant::now() + duration, failure));
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        lock(&self.0).latency = latency;
    }

    pub(crate) fn latency(&self) -> Duration {
        lock(&self.0).latency
    }

    pub(crate) fn clear(&self) {
        *lock(&self.0) = FaultState::default();
    }

    /// The failure the send arriving now gets, if any: an outage first, then
    /// the next of `fail_next`'s.
    pub(crate) fn take(&self) -> Option<Failure> {
        let mut state = lock(&self.0);
        if let Some((until, failure)) = &state.outage {
            if Instant::now() < *until {
                return Some(failure.clone());
            }
            state.outage = None;
        }
        let (failure, remaining) = state.next.front_mut()?;
        let failure = failure.clone();
        *remaining -= 1;
        if *remaining == 0 {
            state.next.pop_front();
        }
        Some(failure)
    }
}

pub(crate) const CONTROL_MESSAGES: &str = "/_mock/messages";
pub(crate) const CONTROL_FAIL_NEXT: &str = "/_mock/fail-next";

pub(crate) async fn mount_control_api<D: Received + Sync>(
    server: &MockServer,
    provider: &'static str,
    inbox: Inbox<D>,
    faults: Faults,
) {
    let control = Control { provider, inbox, faults };
    for (verb, route) in [("GET", CONTROL_MESSAGES), ("DELETE", CONTROL_MESSAGES), ("POST", CONTROL_FAIL_NEXT)] {
        Mock::given(method(verb))
            .and(path(route))
            .respond_with(control.clone())
            .named(format!("control {verb} {route}"))
            .with_priority(1)
            .mount(server)
            .await;
    }
}

/// The control API of a mock: read and forget what it accepted, make sends fail.
struct Control<D> {
    provider: &'static str,
    inbox: Inbox<D>,
    faults: Faults,
}

impl<D> Clone for Control<D> {
    fn clone(&self) -> Self {
        Control { provider: self.provider, inbox: self.inbox.clone(), faults: self.faults.clone() }
    }
}

impl<D: Received + Sync> Respond for Control<D> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let bad = |detail: String| {
            ResponseTemplate::new(400).set_body_json(json!({ "error": "bad_request", "detail": detail }))
        };
        match (request.method.as_str(), request.url.path()) {
            ("DELETE", _) => {
                self.inbox.clear();
                self.faults.clear();
                ResponseTemplate::new(204)
            }
            ("GET", _) => {
                let to = request.url.query_pairs().find(|(k, _)| k == "to").map(|(_, v)| v.into_owned());
                let messages: Vec<Value> = self
                    .inbox
                    .messages()
                    .iter()
                    .filter(|m| to.as_deref().is_none_or(|to| m.is_to(to)))
                    .map(SentMessage::to_json)
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({ "provider": self.provider, "messages": messages }))
            }
            _ => {
                let body: Value = match serde_json::from_slice(&request.body) {
                    Ok(body @ Value::Object(_)) => body,
                    _ => return bad("the body must be a JSON object such as {\"failure\": \"unavailable\"}".to_owned()),
                };
                let count = match body.get("count") {
                    None => 1,
                    Some(count) => match count.as_u64() {
                        Some(count) => count,
                        None => return bad("`count` must be a whole number".to_owned()),
                    },
                };
                match Failure::from_json(&body) {
                    Ok(failure) => {
                        self.faults.fail_next(count, failure);
                        ResponseTemplate::new(204)
                    }
                    Err(detail) => bad(detail),
                }
            }
        }
    }
}

/// What a mock accepted, oldest first, shared between the mock's responders and
/// the test reading it.
pub struct Inbox<D> {
    deliveries: Arc<Mutex<Vec<D>>>,
}

impl<D> Clone for Inbox<D> {
    fn clone(&self) -> Self {
        Inbox { deliveries: Arc::clone(&self.deliveries) }
    }
}

impl<D> Default for Inbox<D> {
    fn default() -> Self {
        Inbox { deliveries: Arc::default() }
    }
}

impl<D: Received> Inbox<D> {
    pub fn push(&self, delivery: D) {
        lock(&self.deliveries).push(delivery);
    }

    /// Forgets everything accepted so far.
    pub fn clear(&self) {
        lock(&self.deliveries).clear();
    }

    /// Everything accepted so far as [`SentMessage`]s, oldest first.
    pub fn messages(&self) -> Vec<SentMessage> {
        lock(&self.deliveries).iter().map(Received::message).collect()
    }

    /// Everything accepted so far, oldest first.
    pub fn all(&self) -> Vec<D> {
        lock(&self.deliveries).clone()
    }

    /// The code in the latest delivery to `phone`, compared by digits (so
    /// "+1 415 555 2671" finds "14155552671").
    pub fn code_sent_to(&self, phone: &str) -> Option<String> {
        self.messages().into_iter().rev().find(|m| m.is_to(phone))?.code()
    }

    /// How many deliveries reached `phone` so far.
    pub fn deliveries_to(&self, phone: &str) -> usize {
        self.messages().iter().filter(|m| m.is_to(phone)).count()
    }

    /// Polls every 20 ms until a code for `phone` shows up or `timeout` passes.
    /// Works on any async runtime.
    pub async fn wait_for_code(&self, phone: &str, timeout: Duration) -> Option<String> {
        self.wait_for_next_code(phone, 0, timeout).await
    }

    /// Waits for a delivery to `phone` beyond the first `seen` ones and returns
    /// its code: the way to read the *next* code sent to a number that already
    /// got one.
    pub async fn wait_for_next_code(&self, phone: &str, seen: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.deliveries_to(phone) > seen {
                return self.code_sent_to(phone);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            Sleep::new(POLL_EVERY.min(deadline - now)).await;
        }
    }
}

pub(crate) fn digits_of(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// The last run of 4 to 10 consecutive ASCII digits: the code in an SMS body.
pub fn code_in_text(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit()).rfind(|run| (4..=10).contains(&run.len())).map(str::to_owned)
}

/// The code a call script reads digit by digit: the last run of 4 to 10 single
/// digits separated by ", " (how verifyd spaces them), in plain text or inside
/// markup (TwiML, Plivo XML, SSML…).
pub fn code_in_speech(script: &str) -> Option<String> {
    script.split(['<', '>', '"', '.', ';', '\n']).rev().map(str::trim).find_map(|text| {
        let digits: Vec<&str> = text.split(", ").collect();
        let single_digits = digits.iter().all(|d| d.len() == 1 && d.bytes().all(|b| b.is_ascii_digit()));
        (single_digits && (4..=10).contains(&digits.len())).then(|| digits.concat())
    })
}

/// `application/x-www-form-urlencoded` pairs, percent- and `+`-decoded.
pub fn decode_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut parts = pair.splitn(2, |b| *b == b'=');
            let key = parts.next().unwrap_or_default();
            let value = parts.next().unwrap_or_default();
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => match input.get(i + 1..i + 3).and_then(hex_byte) {
                Some(byte) => {
                    out.push(byte);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(pair).ok()?;
    u8::from_str_radix(text, 16).ok()
}

/// `(user, password)` of an HTTP Basic `Authorization` header.
pub fn basic_credentials(request: &wiremock::Request) -> Option<(String, String)> {
    let raw = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64_decode(b64.trim()))
        .and_then(|raw| String::from_utf8(raw).ok())?;
    let (user, password) = raw.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(request: &wiremock::Request) -> Option<String> {
    let value = request.headers.get("authorization")?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// Standard base64 with optional padding.
fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in input.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A random id of `hex_digits` lowercase hex digits after `prefix`.
pub fn random_id(prefix: &str, hex_digits: usize) -> String {
    use rand::RngExt;
    let n: u128 = rand::rng().random();
    let hex = format!("{n:032x}");
    format!("{prefix}{}", &hex[..hex_digits.min(32)])
}

/// A random RFC 4122 version-4 UUID, as providers format message ids.
pub fn random_uuid() -> String {
    use rand::RngExt;
    let n: u128 = rand::rng().random();
    let n = (n & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A runtime-agnostic sleep: a helper thread wakes the task. Good enough for
/// polling in tests, and works under tokio, actix or anything else.
struct Sleep {
    duration: Duration,
    state: Arc<Mutex<SleepState>>,
    started: bool,
}

#[derive(Default)]
struct SleepState {
    done: bool,
    waker: Option<Waker>,
}

impl Sleep {
    fn new(duration: Duration) -> Self {
        Sleep { duration, state: Arc::default(), started: false }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut state = lock(&self.state);
            if state.done {
                return Poll::Ready(());
            }
            state.waker = Some(cx.waker().clone());
        }
        if !self.started {
            self.started = true;
            let state = Arc::clone(&self.state);
            let duration = self.duration;
            let spawned = std::thread::Builder::new().name("testkit-sleep".into()).spawn(move || {
                std::thread::sleep(duration);
                let mut state = lock(&state);
                state.done = true;
                if let Some(waker) = state.waker.take() {
                    waker.wake();
                }
            });
            if spawned.is_err() {
                // No thread to wake us: return now and let the caller poll again.
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms_like_reqwest_encodes_them() {
        let form = decode_form(b"To=%2B14155552671&Body=Your+code%3A+1234+%26+%C3%A9&Empty=&Flag");
        assert_eq!(
            form,
            [
                ("To".to_owned(), "+14155552671".to_owned()),
                ("Body".to_owned(), "Your code: 1234 & é".to_owned()),
                ("Empty".to_owned(), String::new()),
                ("Flag".to_owned(), String::new()),
            ]
        );
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz"), "%zz");
    }

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode("QUMxMjM6dG9rZW4=").unwrap(), b"AC123:token");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("not base64!").is_none());
    }

    #[test]
    fn finds_codes_in_bodies_and_scripts() {
        assert_eq!(code_in_text("Call 123 or use 4567890 (valid 10 min)").as_deref(), Some("4567890"));
        assert_eq!(code_in_text("no code 123"), None);
        let twiml = r#"<Response><Say language="en-US">Your code is</Say><Say language="en-US">0, 4, 2, 7</Say><Pause length="1"/></Response>"#;
        assert_eq!(code_in_speech(twiml).as_deref(), Some("0427"));
        assert_eq!(code_in_speech("Your code is. 0, 4, 2, 7. Again: 0, 4, 2, 7.").as_deref(), Some("0427"));
        assert_eq!(code_in_speech("<Response><Say>1, 2</Say></Response>"), None);
    }

    #[test]
    fn uuids_look_like_uuids() {
        let id = random_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}
