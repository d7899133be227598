//! Stand-ins for the provider APIs, for verifyd's own integration tests and for
//! backend teams testing against verifyd without sending real messages.
//!
//! [`TwilioMock`] is a local HTTP server that answers like Twilio's REST API:
//! it checks HTTP Basic credentials and the required form fields, answers 201 with
//! a realistic resource, remembers what it accepted and can read the code back.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use verifyd_providers::testkit::TwilioMock;
//! use verifyd_providers::twilio::Twilio;
//!
//! let twilio_mock = TwilioMock::start().await;
//! let provider = Twilio::new(twilio_mock.config("AC123", "token", "+15005550006")).unwrap();
//! // ... send a code through verifyd to +14155552671 ...
//! let code = twilio_mock.wait_for_code("+14155552671", Duration::from_secs(2)).await;
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rand::RngExt;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::twilio::TwilioConfig;

const MESSAGES_PATH: &str = r"^/2010-04-01/Accounts/[^/]+/Messages\.json$";
const CALLS_PATH: &str = r"^/2010-04-01/Accounts/[^/]+/Calls\.json$";
const ANY_PATH: &str = r"^/2010-04-01/Accounts/[^/]+/(Messages|Calls)\.json$";
/// `date_created` of every resource the mock creates.
const DATE: &str = "Mon, 02 Mar 2026 10:00:00 +0000";
const POLL_EVERY: Duration = Duration::from_millis(20);

/// An SMS the mock accepted (answered 201).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedSms {
    pub sid: String,
    /// The AccountSid in the request path.
    pub account_sid: String,
    /// The HTTP Basic user name (the AccountSid, or an API key `SK…`).
    pub auth_user: String,
    pub to: String,
    /// Empty when the request used `MessagingServiceSid` instead.
    pub from: String,
    pub body: String,
    pub validity_period: Option<u32>,
    pub status_callback: Option<String>,
}

/// A call the mock accepted (answered 201).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedCall {
    pub sid: String,
    pub account_sid: String,
    pub auth_user: String,
    pub to: String,
    pub from: String,
    /// Empty when the request gave a `Url` instead.
    pub twiml: String,
    pub url: Option<String>,
    pub status_callback: Option<String>,
}

#[derive(Debug, Clone)]
enum Delivery {
    Sms(CapturedSms),
    Call(CapturedCall),
}

impl Delivery {
    fn to(&self) -> &str {
        match self {
            Delivery::Sms(sms) => &sms.to,
            Delivery::Call(call) => &call.to,
        }
    }

    /// The code in an SMS body, or the digits a call reads one by one.
    fn code(&self) -> Option<String> {
        match self {
            Delivery::Sms(sms) => last_digit_run(&sms.body),
            Delivery::Call(call) => spoken_digits(&call.twiml),
        }
    }
}

type Deliveries = Arc<Mutex<Vec<Delivery>>>;

/// A Twilio REST API on localhost. Accepts any AccountSid with any non-empty
/// token; stops when dropped.
pub struct TwilioMock {
    server: MockServer,
    deliveries: Deliveries,
}

impl TwilioMock {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let deliveries = Deliveries::default();
        for (path, resource) in [(MESSAGES_PATH, Resource::Messages), (CALLS_PATH, Resource::Calls)] {
            Mock::given(method("POST"))
                .and(path_regex(path))
                .respond_with(Accept { resource, deliveries: Arc::clone(&deliveries) })
                .named(format!("Twilio {resource:?}.json"))
                .mount(&server)
                .await;
        }
        TwilioMock { server, deliveries }
    }

    /// Where the mock listens, to use as `TwilioConfig::base_url`.
    pub fn base_url(&self) -> String {
        self.server.uri()
    }

    /// The underlying server, to mount extra mocks.
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    /// A config pointing at the mock, with a 5 s timeout and no status callback.
    pub fn config(&self, account_sid: &str, auth_token: &str, from: &str) -> TwilioConfig {
        TwilioConfig {
            base_url: self.base_url(),
            timeout: Duration::from_secs(5),
            ..TwilioConfig::new(account_sid, auth_token, from)
        }
    }

    /// The SMS accepted so far, oldest first.
    pub async fn sent_sms(&self) -> Vec<CapturedSms> {
        let deliveries = lock(&self.deliveries);
        deliveries
            .iter()
            .filter_map(|d| match d {
                Delivery::Sms(sms) => Some(sms.clone()),
                Delivery::Call(_) => None,
            })
            .collect()
    }

    /// The calls accepted so far, oldest first.
    pub async fn placed_calls(&self) -> Vec<CapturedCall> {
        let deliveries = lock(&self.deliveries);
        deliveries
            .iter()
            .filter_map(|d| match d {
                Delivery::Call(call) => Some(call.clone()),
                Delivery::Sms(_) => None,
            })
            .collect()
    }

    /// The code in the latest SMS or call to `phone` (compared by its digits, so
    /// "+1 415 555 2671" finds "+14155552671"): the last run of 4 to 10 digits
    /// of an SMS body, or the digits a call reads out one by one ("1, 2, 3, 4").
    pub async fn code_sent_to(&self, phone: &str) -> Option<String> {
        let wanted = digits_of(phone);
        let deliveries = lock(&self.deliveries);
        deliveries.iter().rev().find(|d| digits_of(d.to()) == wanted)?.code()
    }

    /// How many SMS and calls reached `phone` so far.
    pub async fn deliveries_to(&self, phone: &str) -> usize {
        let wanted = digits_of(phone);
        lock(&self.deliveries).iter().filter(|d| digits_of(d.to()) == wanted).count()
    }

    /// Waits for a delivery to `phone` beyond the first `seen` ones (see
    /// [`deliveries_to`](Self::deliveries_to)) and returns its code: the way to
    /// read the *next* code sent to a number that already got one.
    pub async fn wait_for_next_code(&self, phone: &str, seen: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.deliveries_to(phone).await > seen {
                return self.code_sent_to(phone).await;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            Sleep::new(POLL_EVERY.min(deadline - now)).await;
        }
    }

    /// Polls [`code_sent_to`](Self::code_sent_to) every 20 ms until a code shows
    /// up or `timeout` passes. Works on any async runtime.
    pub async fn wait_for_code(&self, phone: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.code_sent_to(phone).await {
                return Some(code);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            Sleep::new(POLL_EVERY.min(deadline - now)).await;
        }
    }

    /// The next `n` requests to Messages.json or Calls.json (counted together)
    /// get HTTP `status` with Twilio's error body for `twilio_code`. `status`
    /// must be a valid HTTP status.
    pub async fn fail_next(&self, status: u16, twilio_code: i64, n: u64) {
        let body = error_body(twilio_code, message_for(twilio_code), status);
        self.mount_failure(ResponseTemplate::new(status).set_body_json(body), n).await;
    }

    /// The next `n` requests get 429 with code 20429 and `Retry-After` in seconds.
    pub async fn throttle_next(&self, retry_after: Duration, n: u64) {
        let body = error_body(20429, message_for(20429), 429);
        let response = ResponseTemplate::new(429)
            .insert_header("Retry-After", retry_after.as_secs().to_string().as_str())
            .set_body_json(body);
        self.mount_failure(response, n).await;
    }

    async fn mount_failure(&self, response: ResponseTemplate, n: u64) {
        if n == 0 {
            return;
        }
        Mock::given(method("POST"))
            .and(path_regex(ANY_PATH))
            .respond_with(response)
            .up_to_n_times(n)
            .with_priority(1)
            .named("Twilio injected failure")
            .mount(&self.server)
            .await;
    }
}

/// Twilio's error body: `{"code":…,"message":…,"more_info":…,"status":…}`.
pub fn error_body(code: i64, message: &str, status: u16) -> Value {
    json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    })
}

fn message_for(code: i64) -> &'static str {
    match code {
        14107 => "SMS send rate limit exceeded",
        20003 => "Authenticate",
        20429 => "Too Many Requests",
        20500 => "An internal server error has occurred",
        21211 => "The 'To' number is not a valid phone number.",
        21408 => "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
        21608 => "The number is unverified. Trial accounts cannot send messages to unverified numbers",
        21610 => "Attempt to send to unsubscribed recipient",
        21614 => "'To' number is not a valid mobile number",
        21635 => "The 'To' number is a landline",
        _ => "Failure injected by TwilioMock",
    }
}

#[derive(Debug, Clone, Copy)]
enum Resource {
    Messages,
    Calls,
}

/// Validates a create request like Twilio does and records what it accepts.
struct Accept {
    resource: Resource,
    deliveries: Deliveries,
}

impl Respond for Accept {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let accepted = authenticate(request).and_then(|(account_sid, auth_user)| {
            let form = Form(decode_form(&request.body));
            match self.resource {
                Resource::Messages => accept_sms(account_sid, auth_user, &form),
                Resource::Calls => accept_call(account_sid, auth_user, &form),
            }
        });
        match accepted {
            Ok((delivery, resource)) => {
                lock(&self.deliveries).push(delivery);
                ResponseTemplate::new(201).set_body_json(resource)
            }
            Err(Refusal { status, code, message }) => {
                ResponseTemplate::new(status).set_body_json(error_body(code, &message, status))
            }
        }
    }
}

/// What Twilio answers to a request it refuses.
struct Refusal {
    status: u16,
    code: i64,
    message: String,
}

fn refuse(status: u16, code: i64, message: &str) -> Refusal {
    Refusal { status, code, message: message.to_owned() }
}

/// `(AccountSid from the path, Basic user)`, or Twilio's 401 20003.
fn authenticate(request: &Request) -> Result<(String, String), Refusal> {
    let account_sid = request.url.path().split('/').nth(3).unwrap_or_default().to_owned();
    let credentials = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64_decode(b64.trim()))
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some((user, password)) = credentials.as_deref().and_then(|c| c.split_once(':')) else {
        return Err(refuse(401, 20003, "Authenticate"));
    };
    if password.is_empty() || (user != account_sid && !user.starts_with("SK")) {
        return Err(refuse(401, 20003, "Authenticate"));
    }
    Ok((account_sid, user.to_owned()))
}

struct Form(Vec<(String, String)>);

impl Form {
    /// The first non-empty value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }
}

fn accept_sms(account_sid: String, auth_user: String, form: &Form) -> Result<(Delivery, Value), Refusal> {
    let to = form.get("To").ok_or_else(|| refuse(400, 21604, "A 'To' phone number is required."))?;
    if !is_e164(to) {
        return Err(refuse(400, 21211, &format!("The 'To' number {to} is not a valid phone number.")));
    }
    let from = form.get("From");
    let service = form.get("MessagingServiceSid");
    if from.is_none() && service.is_none() {
        return Err(refuse(400, 21603, "A 'From' phone number is required."));
    }
    let body = form.get("Body").unwrap_or_default();
    if body.is_empty() && form.get("MediaUrl").is_none() && form.get("ContentSid").is_none() {
        return Err(refuse(400, 21602, "Message body is required."));
    }
    if body.chars().count() > 1600 {
        return Err(refuse(400, 21617, "The concatenated message body exceeds the 1600 character limit."));
    }
    let validity_period = match form.get("ValidityPeriod") {
        None => None,
        Some(raw) => match raw.parse::<u32>() {
            Ok(secs @ 1..=36_000) => Some(secs),
            _ => return Err(refuse(400, 21624, "Invalid validity period value")),
        },
    };
    let sms = CapturedSms {
        sid: sid("SM"),
        account_sid,
        auth_user,
        to: to.to_owned(),
        from: from.unwrap_or_default().to_owned(),
        body: body.to_owned(),
        validity_period,
        status_callback: form.get("StatusCallback").map(str::to_owned),
    };
    let uri = format!("/2010-04-01/Accounts/{}/Messages/{}", sms.account_sid, sms.sid);
    let resource = json!({
        "account_sid": sms.account_sid,
        "api_version": "2010-04-01",
        "body": sms.body,
        "date_created": DATE,
        "date_sent": null,
        "date_updated": DATE,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from,
        "messaging_service_sid": service,
        "num_media": "0",
        "num_segments": segments(&sms.body).to_string(),
        "price": null,
        "price_unit": "USD",
        "sid": sms.sid,
        "status": if from.is_some() { "queued" } else { "accepted" },
        "subresource_uris": { "media": format!("{uri}/Media.json") },
        "to": sms.to,
        "uri": format!("{uri}.json"),
    });
    Ok((Delivery::Sms(sms), resource))
}

fn accept_call(account_sid: String, auth_user: String, form: &Form) -> Result<(Delivery, Value), Refusal> {
    let to = form.get("To").ok_or_else(|| refuse(400, 21201, "No 'To' number is specified"))?;
    if !is_e164(to) {
        return Err(refuse(400, 21211, &format!("Invalid 'To' Phone Number: {to}")));
    }
    let from = form.get("From").ok_or_else(|| refuse(400, 21213, "No 'From' number is specified"))?;
    let url = form.get("Url");
    let twiml = form.get("Twiml").unwrap_or_default();
    if url.is_none() && twiml.is_empty() && form.get("ApplicationSid").is_none() {
        return Err(refuse(400, 21205, "Url parameter is required. Please provide Url or Twiml."));
    }
    if twiml.chars().count() > 4000 {
        return Err(refuse(400, 32018, "Twiml size exceeded maximum allowed value of 4000 characters"));
    }
    let call = CapturedCall {
        sid: sid("CA"),
        account_sid,
        auth_user,
        to: to.to_owned(),
        from: from.to_owned(),
        twiml: twiml.to_owned(),
        url: url.map(str::to_owned),
        status_callback: form.get("StatusCallback").map(str::to_owned),
    };
    let uri = format!("/2010-04-01/Accounts/{}/Calls/{}", call.account_sid, call.sid);
    let resource = json!({
        "account_sid": call.account_sid,
        "annotation": null,
        "answered_by": null,
        "api_version": "2010-04-01",
        "caller_name": null,
        "date_created": DATE,
        "date_updated": DATE,
        "direction": "outbound-api",
        "duration": null,
        "end_time": null,
        "forwarded_from": null,
        "from": call.from,
        "from_formatted": call.from,
        "group_sid": null,
        "parent_call_sid": null,
        "phone_number_sid": null,
        "price": null,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": call.sid,
        "start_time": null,
        "status": "queued",
        "subresource_uris": { "notifications": format!("{uri}/Notifications.json") },
        "to": call.to,
        "to_formatted": call.to,
        "trunk_sid": null,
        "uri": format!("{uri}.json"),
    });
    Ok((Delivery::Call(call), resource))
}

/// `SM…`/`CA…` followed by 32 hex digits, like Twilio's sids.
fn sid(prefix: &str) -> String {
    let n: u128 = rand::rng().random();
    format!("{prefix}{n:032x}")
}

fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
    })
}

/// Roughly how Twilio counts segments: 160/153 characters when the body is
/// ASCII (GSM-7), 70/67 UTF-16 units otherwise.
fn segments(body: &str) -> usize {
    let (len, single, multi) =
        if body.is_ascii() { (body.len(), 160, 153) } else { (body.encode_utf16().count(), 70, 67) };
    if len <= single { 1 } else { len.div_ceil(multi) }
}

fn digits_of(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// The last run of 4 to 10 consecutive ASCII digits.
fn last_digit_run(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit()).rfind(|run| (4..=10).contains(&run.len())).map(str::to_owned)
}

/// The digits of the last `<Say>` whose text is single digits separated by ", ".
fn spoken_digits(twiml: &str) -> Option<String> {
    twiml
        .split("</Say>")
        .filter_map(|chunk| chunk.rsplit_once('>').map(|(_, text)| text.trim()))
        .filter_map(|text| {
            let digits: Vec<&str> = text.split(", ").collect();
            let single_digits = digits.iter().all(|d| d.len() == 1 && d.bytes().all(|b| b.is_ascii_digit()));
            (single_digits && (4..=10).contains(&digits.len())).then(|| digits.concat())
        })
        .last()
}

/// `application/x-www-form-urlencoded` pairs, percent- and `+`-decoded.
fn decode_form(body: &[u8]) -> Vec<(String, String)> {
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

/// Standard base64 with optional padding, for the Basic credentials.
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
            let spawned = std::thread::Builder::new().name("twilio-mock-sleep".into()).spawn(move || {
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
    fn decodes_basic_credentials() {
        assert_eq!(base64_decode("QUMxMjM6dG9rZW4=").unwrap(), b"AC123:token");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("not base64!").is_none());
    }

    #[test]
    fn finds_codes_in_bodies_and_twiml() {
        assert_eq!(last_digit_run("Call 123 or use 4567890 (valid 10 min)").as_deref(), Some("4567890"));
        assert_eq!(last_digit_run("no code 123"), None);
        let twiml = r#"<Response><Say language="en-US">Your code is</Say><Say language="en-US">0, 4, 2, 7</Say><Pause length="1"/></Response>"#;
        assert_eq!(spoken_digits(twiml).as_deref(), Some("0427"));
        assert_eq!(spoken_digits("<Response><Say>1, 2</Say></Response>"), None);
    }

    #[test]
    fn counts_segments() {
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"é".repeat(71)), 2);
    }
}
