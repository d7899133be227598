//! [`TwilioMock`]: Twilio's REST API (Messages.json and Calls.json) on localhost.
//! It checks HTTP Basic credentials and the required form fields, answers 201
//! with a realistic resource, remembers what it accepted and can read the code
//! back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{
    Failure, Faults, Inbox, Received, SentMessage, basic_credentials, decode_form, random_id, with_retry_after,
};
use crate::twilio::TwilioConfig;

const MESSAGES_PATH: &str = r"^/2010-04-01/Accounts/[^/]+/Messages\.json$";
const CALLS_PATH: &str = r"^/2010-04-01/Accounts/[^/]+/Calls\.json$";
const PROVIDER: &str = "twilio";
/// `date_created` of every resource the mock creates.
const DATE: &str = "Mon, 02 Mar 2026 10:00:00 +0000";

/// An SMS the mock accepted (answered 201).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioSms {
    pub sid: String,
    /// The AccountSid in the request path.
    pub account_sid: String,
    /// The HTTP Basic user name (the AccountSid, or an API key `SK…`).
    pub auth_user: String,
    /// `+E.164`, without the `whatsapp:` of a WhatsApp message.
    pub to: String,
    /// Empty when the request used `MessagingServiceSid` instead.
    pub from: String,
    pub body: String,
    /// A WhatsApp message (`To` was `whatsapp:+…`).
    pub whatsapp: bool,
    /// The Content API template and its variables (`{"1":"<code>"}`).
    pub content_sid: Option<String>,
    pub content_variables: Option<String>,
    pub validity_period: Option<u32>,
    pub status_callback: Option<String>,
    /// When the request reached the mock (before any configured latency).
    pub received_at: Instant,
}

/// A call the mock accepted (answered 201).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioCall {
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
    Sms(TwilioSms),
    Call(TwilioCall),
}

impl Received for Delivery {
    fn message(&self) -> SentMessage {
        match self {
            Delivery::Sms(sms) if sms.whatsapp => {
                let variables = sms.content_variables.as_deref().unwrap_or_default();
                let code =
                    serde_json::from_str::<Value>(variables).ok().and_then(|v| v["1"].as_str().map(str::to_owned));
                SentMessage::whatsapp(PROVIDER, &sms.sid, &sms.to, variables, code)
            }
            Delivery::Sms(sms) => SentMessage::sms(PROVIDER, &sms.sid, &sms.to, &sms.body),
            Delivery::Call(call) => SentMessage::call(PROVIDER, &call.sid, &call.to, &call.twiml),
        }
    }
}

/// A Twilio REST API on localhost. Accepts any AccountSid with any non-empty
/// token; stops when dropped.
pub struct TwilioMock {
    server: MockServer,
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl TwilioMock {
    starts_on_a_wiremock_server!();

    async fn on(server: MockServer) -> Self {
        let inbox = Inbox::default();
        let faults = Faults::default();
        for (path, resource) in [(MESSAGES_PATH, Resource::Messages), (CALLS_PATH, Resource::Calls)] {
            Mock::given(method("POST"))
                .and(path_regex(path))
                .respond_with(Accept { resource, inbox: inbox.clone(), faults: faults.clone() })
                .named(format!("Twilio {resource:?}.json"))
                .mount(&server)
                .await;
        }
        TwilioMock { server, inbox, faults }
    }

    common_mock_api!();

    /// A config pointing at the mock, with a 5 s timeout and no status callback.
    pub fn config(&self, account_sid: &str, auth_token: &str, from: &str) -> TwilioConfig {
        TwilioConfig {
            base_url: self.uri(),
            timeout: Duration::from_secs(5),
            ..TwilioConfig::new(account_sid, auth_token, from)
        }
    }

    /// The SMS accepted so far, oldest first, with every field Twilio received.
    pub async fn sent_sms(&self) -> Vec<TwilioSms> {
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
    pub async fn placed_calls(&self) -> Vec<TwilioCall> {
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

/// How Twilio answers `failure`.
fn failure_response(failure: &Failure) -> ResponseTemplate {
    let (status, code) = match failure {
        Failure::Unavailable => (500, 20500),
        Failure::Throttled { .. } => (429, 20429),
        Failure::InvalidNumber => (400, 21211),
        Failure::Unauthorized => (401, 20003),
        Failure::Code { status, code } => (*status, code.parse().unwrap_or(0)),
    };
    let response = ResponseTemplate::new(status).set_body_json(twilio_error_body(code, message_for(code), status));
    with_retry_after(response, failure)
}

/// Twilio's error body: `{"code":…,"message":…,"more_info":…,"status":…}`.
pub fn twilio_error_body(code: i64, message: &str, status: u16) -> Value {
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
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl Respond for Accept {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(failure) = self.faults.take() {
            return failure_response(&failure);
        }
        let accepted = authenticate(request).and_then(|(account_sid, auth_user)| {
            let form = Form(decode_form(&request.body));
            match self.resource {
                Resource::Messages => accept_sms(account_sid, auth_user, &form),
                Resource::Calls => accept_call(account_sid, auth_user, &form),
            }
        });
        match accepted {
            Ok((delivery, resource)) => {
                self.inbox.push(delivery);
                ResponseTemplate::new(201).set_body_json(resource).set_delay(self.faults.latency())
            }
            Err(Refusal { status, code, message }) => {
                ResponseTemplate::new(status).set_body_json(twilio_error_body(code, &message, status))
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
    let Some((user, password)) = basic_credentials(request) else {
        return Err(refuse(401, 20003, "Authenticate"));
    };
    if password.is_empty() || (user != account_sid && !user.starts_with("SK")) {
        return Err(refuse(401, 20003, "Authenticate"));
    }
    Ok((account_sid, user))
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
    let (to, whatsapp) = match to.strip_prefix("whatsapp:") {
        Some(number) => (number, true),
        None => (to, false),
    };
    if !is_e164(to) {
        return Err(refuse(400, 21211, &format!("The 'To' number {to} is not a valid phone number.")));
    }
    let from = form.get("From");
    if whatsapp && !from.is_some_and(|f| f.starts_with("whatsapp:+")) {
        return Err(refuse(400, 63007, "Twilio could not find a Channel with the specified From address"));
    }
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
    let sms = TwilioSms {
        sid: sid("SM"),
        account_sid,
        auth_user,
        to: to.to_owned(),
        from: from.unwrap_or_default().to_owned(),
        body: body.to_owned(),
        whatsapp,
        content_sid: form.get("ContentSid").map(str::to_owned),
        content_variables: form.get("ContentVariables").map(str::to_owned),
        validity_period,
        status_callback: form.get("StatusCallback").map(str::to_owned),
        received_at: Instant::now(),
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
    let call = TwilioCall {
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
    random_id(prefix, 32)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_segments() {
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"é".repeat(71)), 2);
    }
}
