//! Stand-ins for the provider APIs, for verifyd's own integration tests and for
//! backend teams testing against verifyd without sending real messages.
//!
//! Each mock is a local HTTP server (wiremock) that answers like the provider's
//! real API: it checks credentials and required fields the way the provider
//! does, answers with a realistic resource, remembers what it accepted and can
//! read the code back. They all share [`Inbox`]: `code_sent_to`,
//! `wait_for_code`, `wait_for_next_code`, `deliveries_to`.
//!
//! - [`TwilioMock`]: Messages.json and Calls.json (inline TwiML).
//! - [`PlivoMock`]: Message/ and Call/; a call's script is fetched from its
//!   `answer_url` when a test reads the code, as Plivo does on answer
//!   ([`PlivoMock::host_script`] serves one when there is no verifyd server).
//! - [`TelnyxMock`]: /v2/messages and connection-scoped TeXML calls (inline TeXML).
//! - [`SinchMock`]: SMS batches and signed text-to-speech callouts.
//! - [`VonageMock`]: `/sms/json` and `/v1/calls` (JWT checked against a
//!   test-only key pair); it also signs delivery receipts like Vonage.
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

/// The four code-reading methods of a mock that keeps what it accepted in
/// its `inbox` field (see [`Inbox`]).
macro_rules! reads_codes_from_its_inbox {
    () => {
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

mod plivo;
mod sinch;
mod telnyx;
mod twilio;
mod vonage;
mod webhook;

pub use plivo::{PlivoCall, PlivoMock, PlivoSms, plivo_error_body};
pub use sinch::{
    SINCH_MOCK_APPLICATION_KEY, SINCH_MOCK_APPLICATION_SECRET, SinchBatch, SinchCallout, SinchMock, sms_error_body,
    voice_error_body,
};
pub use telnyx::{TelnyxCall, TelnyxMock, TelnyxSms, telnyx_error_body};
pub use twilio::{CapturedCall, CapturedSms, TwilioMock, error_body};
pub use vonage::{
    VONAGE_MOCK_APPLICATION_ID, VONAGE_TEST_PRIVATE_KEY, VonageCall, VonageMock, VonageSms, problem, sms_refusal,
};
pub use webhook::{WEBHOOK_PATH, WebhookCall, WebhookReceiverMock, WebhookSms, webhook_error_body};

const POLL_EVERY: Duration = Duration::from_millis(20);

/// One message a mock accepted: who it went to and where its code is.
pub trait Received: Clone + Send + 'static {
    /// The destination as the provider received it (`+E.164` or bare digits).
    fn to(&self) -> &str;
    /// The code the person would read or hear, if any.
    fn code(&self) -> Option<String>;
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

    /// Everything accepted so far, oldest first.
    pub fn all(&self) -> Vec<D> {
        lock(&self.deliveries).clone()
    }

    /// The code in the latest delivery to `phone`, compared by digits (so
    /// "+1 415 555 2671" finds "14155552671").
    pub fn code_sent_to(&self, phone: &str) -> Option<String> {
        let wanted = digits_of(phone);
        lock(&self.deliveries).iter().rev().find(|d| digits_of(d.to()) == wanted)?.code()
    }

    /// How many deliveries reached `phone` so far.
    pub fn deliveries_to(&self, phone: &str) -> usize {
        let wanted = digits_of(phone);
        lock(&self.deliveries).iter().filter(|d| digits_of(d.to()) == wanted).count()
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
