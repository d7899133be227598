//! [`VonageMock`]: Vonage's SMS API (`/sms/json`) and Voice API (`/v1/calls`)
//! on localhost. SMS: form fields and `api_key`/`api_secret` checked, always
//! HTTP 200 with a per-part `status`, like Vonage. Calls: the bearer JWT must
//! verify (RS256) with the public half of the test key the mock hands out and
//! carry the mock's `application_id`, `iat` and `jti`; 201 with Vonage's body.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{
    Failure, Faults, Inbox, Received, SentMessage, bearer_token, decode_form, random_id, random_uuid, with_retry_after,
};
use crate::vonage::{SignatureMethod, VonageConfig, signature};

const SMS_PATH: &str = "/sms/json";
const CALLS_PATH: &str = "/v1/calls";
const PROVIDER: &str = "vonage";
/// The Vonage application every mock knows.
pub const VONAGE_MOCK_APPLICATION_ID: &str = "0c5a1d2e-7f3b-4a6c-9e8d-1b2c3d4e5f60";
/// A key pair generated for tests only (see `providers/tests/fixtures/README.md`):
/// the private half goes into the configs the mock hands out.
pub const VONAGE_TEST_PRIVATE_KEY: &str =
    include_str!("../../tests/fixtures/TEST-ONLY-vonage-application-private-key.pem");
const VONAGE_TEST_PUBLIC_KEY: &str = include_str!("../../tests/fixtures/TEST-ONLY-vonage-application-public-key.pem");

/// An SMS the mock accepted (status `"0"`); a long text split in parts is one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VonageSms {
    /// The `message-id` of the first part.
    pub message_id: String,
    pub api_key: String,
    pub from: String,
    pub to: String,
    pub text: String,
    /// `type` (`text`, `unicode`), when sent.
    pub kind: Option<String>,
    pub ttl: Option<u64>,
    pub client_ref: Option<String>,
    pub callback: Option<String>,
    pub parts: usize,
}

/// A call the mock accepted (answered 201).
#[derive(Debug, Clone, PartialEq)]
pub struct VonageCall {
    pub uuid: String,
    /// `application_id` of the JWT.
    pub application_id: String,
    /// Seconds between the JWT's `iat` and `exp` (`None` without `exp`).
    pub token_lifetime: Option<u64>,
    pub to: String,
    pub from: String,
    pub ncco: Value,
    /// The `text` of every `talk` action, joined by newlines.
    pub talk_text: String,
    pub language: Option<String>,
    pub talk_loop: Option<u64>,
    pub event_url: Option<String>,
}

#[derive(Debug, Clone)]
enum Delivery {
    Sms(VonageSms),
    Call(VonageCall),
}

impl Received for Delivery {
    fn message(&self) -> SentMessage {
        match self {
            Delivery::Sms(sms) => SentMessage::sms(PROVIDER, &sms.message_id, &sms.to, &sms.text),
            Delivery::Call(call) => SentMessage::call(PROVIDER, &call.uuid, &call.to, &call.talk_text),
        }
    }
}

/// Vonage's SMS and Voice APIs on localhost. Accepts any `api_key` with a
/// non-empty `api_secret`; calls need a JWT of [`VONAGE_MOCK_APPLICATION_ID`]
/// signed with [`VONAGE_TEST_PRIVATE_KEY`]. Stops when dropped.
pub struct VonageMock {
    server: MockServer,
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl VonageMock {
    starts_on_a_wiremock_server!();

    async fn on(server: MockServer) -> Self {
        let inbox = Inbox::default();
        let faults = Faults::default();
        Mock::given(method("POST"))
            .and(path(SMS_PATH))
            .respond_with(AcceptSms { inbox: inbox.clone(), faults: faults.clone() })
            .named("Vonage /sms/json")
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(CALLS_PATH))
            .respond_with(AcceptCall { inbox: inbox.clone(), faults: faults.clone() })
            .named("Vonage /v1/calls")
            .mount(&server)
            .await;
        VonageMock { server, inbox, faults }
    }

    // `uri()` is both `VonageConfig::base_url` and `voice_base_url`.
    common_mock_api!();

    /// A config pointing both APIs at the mock, with the mock's application and
    /// test key and a 5 s timeout. `from` must be a number for calls (or set
    /// `voice_from`).
    pub fn config(&self, api_key: &str, api_secret: &str, from: &str) -> VonageConfig {
        VonageConfig {
            base_url: self.uri(),
            voice_base_url: self.uri(),
            timeout: Duration::from_secs(5),
            ..VonageConfig::new(api_key, api_secret, from)
                .with_voice(VONAGE_MOCK_APPLICATION_ID, VONAGE_TEST_PRIVATE_KEY)
        }
    }

    /// The SMS accepted so far, oldest first.
    pub async fn sent_sms(&self) -> Vec<VonageSms> {
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
    pub async fn placed_calls(&self) -> Vec<VonageCall> {
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

    /// The parameters of the delivery receipt Vonage would post for `sms`,
    /// signed like Vonage signs them (`timestamp` from `now`, `sig`): to
    /// test a receipts endpoint.
    pub fn signed_receipt(
        &self,
        sms: &VonageSms,
        status: &str,
        err_code: &str,
        signature_secret: &str,
        signature_method: SignatureMethod,
        now: SystemTime,
    ) -> Vec<(String, String)> {
        let timestamp = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut params: Vec<(String, String)> = [
            ("msisdn", sms.to.clone()),
            ("to", sms.from.clone()),
            ("network-code", "23410".to_owned()),
            ("messageId", sms.message_id.clone()),
            ("price", "0.03330000".to_owned()),
            ("status", status.to_owned()),
            ("scts", "2603021000".to_owned()),
            ("err-code", err_code.to_owned()),
            ("api-key", sms.api_key.clone()),
            ("message-timestamp", "2026-03-02 10:00:00".to_owned()),
            ("timestamp", timestamp.to_string()),
            ("nonce", random_uuid()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(client_ref) = &sms.client_ref {
            params.push(("client-ref".to_owned(), client_ref.clone()));
        }
        let sig = signature(&params, signature_secret.as_bytes(), signature_method);
        params.push(("sig".to_owned(), sig));
        params
    }
}

/// How Vonage's SMS API answers `failure`: HTTP 200 with a refused `status`,
/// except throttling (429) and an outage (503).
fn sms_failure(failure: &Failure) -> ResponseTemplate {
    let status = match failure {
        Failure::Unavailable => return ResponseTemplate::new(503).set_body_json(problem_for(503)),
        Failure::Throttled { .. } => {
            return with_retry_after(ResponseTemplate::new(429).set_body_json(problem_for(429)), failure);
        }
        Failure::InvalidNumber => "3",
        Failure::Unauthorized => "4",
        Failure::Code { code, .. } => code.as_str(),
    };
    ResponseTemplate::new(200).set_body_json(vonage_sms_refusal(status, sms_text_for(status)))
}

/// How Vonage's Voice API answers `failure`: its problem document.
fn call_failure(failure: &Failure) -> ResponseTemplate {
    let status = match failure {
        Failure::Unavailable => 503,
        Failure::Throttled { .. } => 429,
        Failure::InvalidNumber => 400,
        Failure::Unauthorized => 401,
        Failure::Code { status, .. } => *status,
    };
    let mut body = problem_for(status);
    if *failure == Failure::InvalidNumber {
        body["invalid_parameters"] = json!([{ "name": "to[0].number", "reason": "Invalid number" }]);
    }
    with_retry_after(ResponseTemplate::new(status).set_body_json(body), failure)
}

/// A refused SMS as Vonage answers it: HTTP 200, one entry with `status` and `error-text`.
pub fn vonage_sms_refusal(status: &str, error_text: &str) -> Value {
    json!({ "message-count": "1", "messages": [{ "status": status, "error-text": error_text }] })
}

fn sms_text_for(status: &str) -> &'static str {
    match status {
        "1" => "Throughput Rate Exceeded - please wait [ 30 ] and retry",
        "2" => "Missing params",
        "3" => "Invalid to parameter",
        "4" => "Bad Credentials",
        "5" => "Internal Error",
        "6" => "Invalid Message",
        "7" => "Number barred.",
        "8" => "Partner account barred.",
        "9" => "Partner quota exceeded",
        "10" => "Too many existing binds",
        "15" => "Illegal Sender Address - rejected",
        _ => "Failure injected by VonageMock",
    }
}

/// Vonage's problem document for an HTTP status (400 carries `invalid_parameters`).
pub fn vonage_problem(status: u16, kind: &str, title: &str, detail: &str) -> Value {
    let mut body = json!({
        "type": format!("https://developer.nexmo.com/api-errors#{kind}"),
        "title": title,
        "detail": detail,
        "instance": random_id("", 32),
    });
    if status == 400 {
        body["invalid_parameters"] = json!([]);
    }
    body
}

fn problem_for(status: u16) -> Value {
    match status {
        400 => vonage_problem(status, "bad-request", "Bad Request", "The request failed due to validation errors"),
        401 => vonage_problem(status, "unauthorized", "Unauthorized", "You did not provide correct credentials."),
        402 => vonage_problem(
            status,
            "low-balance",
            "Low balance",
            "This request could not be performed due to your account balance being low.",
        ),
        403 => vonage_problem(
            status,
            "unprovisioned",
            "Authorisation error",
            "Account is not provisioned for the Voice API",
        ),
        429 => vonage_problem(status, "throttled", "Throttled", "Rate limit hit. Please wait and try again."),
        _ => vonage_problem(status, "internal-error", "Internal Error", "Failure injected by VonageMock"),
    }
}

/// Validates `/sms/json` like Vonage does and records what it accepts.
struct AcceptSms {
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl Respond for AcceptSms {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(failure) = self.faults.take() {
            return sms_failure(&failure);
        }
        // Vonage takes the parameters from the query string or the form.
        let mut params: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
        params.extend(decode_form(&request.body));
        match accept_sms(&params) {
            Ok((sms, body)) => {
                self.inbox.push(Delivery::Sms(sms));
                ResponseTemplate::new(200).set_body_json(body).set_delay(self.faults.latency())
            }
            Err((status, text)) => ResponseTemplate::new(200).set_body_json(vonage_sms_refusal(status, &text)),
        }
    }
}

fn accept_sms(params: &[(String, String)]) -> Result<(VonageSms, Value), (&'static str, String)> {
    let get = |name: &str| params.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str());
    let missing = |name: &str| ("2", format!("Missing {name}"));
    let api_key = get("api_key").ok_or_else(|| missing("api_key"))?;
    if get("api_secret").is_none() && get("sig").is_none() {
        return Err(("4", "Bad Credentials".to_owned()));
    }
    let from = get("from").ok_or_else(|| missing("from"))?;
    let to = get("to").ok_or_else(|| missing("to"))?;
    let digits = to.strip_prefix('+').unwrap_or(to);
    if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(("3", "Invalid to parameter".to_owned()));
    }
    let kind = get("type");
    if !matches!(kind, None | Some("text" | "unicode")) {
        return Err(("2", "Invalid type".to_owned()));
    }
    let text = get("text").ok_or_else(|| missing("text"))?;
    let ttl = match get("ttl") {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| ("2", "Invalid ttl".to_owned()))?),
    };
    let client_ref = get("client-ref");
    if client_ref.is_some_and(|r| r.chars().count() > 40) {
        return Err(("2", "client-ref is longer than 40 characters".to_owned()));
    }
    let parts = parts(text, kind == Some("unicode"));
    let ids: Vec<String> = (0..parts).map(|_| random_id("", 16).to_ascii_uppercase()).collect();
    let messages: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({
                "to": digits,
                "message-id": id,
                "status": "0",
                "remaining-balance": "3.14159265",
                "message-price": "0.03330000",
                "network": "23410",
            })
        })
        .collect();
    let sms = VonageSms {
        message_id: ids.first().cloned().unwrap_or_default(),
        api_key: api_key.to_owned(),
        from: from.to_owned(),
        to: digits.to_owned(),
        text: text.to_owned(),
        kind: kind.map(str::to_owned),
        ttl,
        client_ref: client_ref.map(str::to_owned),
        callback: get("callback").map(str::to_owned),
        parts,
    };
    Ok((sms, json!({ "message-count": parts.to_string(), "messages": messages })))
}

/// How many parts Vonage splits a text into: 160/153 GSM characters, 70/67 for unicode.
fn parts(text: &str, unicode: bool) -> usize {
    let (len, single, multi) =
        if unicode { (text.encode_utf16().count(), 70, 67) } else { (text.chars().count(), 160, 153) };
    if len <= single { 1 } else { len.div_ceil(multi) }
}

/// The claims Vonage reads from an application JWT (`exp` is optional there).
#[derive(Deserialize)]
struct MockClaims {
    application_id: String,
    iat: u64,
    jti: String,
    #[serde(default)]
    exp: Option<u64>,
}

/// Validates `/v1/calls` like Vonage does and records what it accepts.
struct AcceptCall {
    inbox: Inbox<Delivery>,
    faults: Faults,
}

impl Respond for AcceptCall {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(failure) = self.faults.take() {
            return call_failure(&failure);
        }
        let accepted = authenticate(request).and_then(|claims| accept_call(claims, &request.body));
        match accepted {
            Ok(call) => {
                let uuid = call.uuid.clone();
                self.inbox.push(Delivery::Call(call));
                ResponseTemplate::new(201)
                    .set_body_json(json!({
                        "uuid": uuid,
                        "status": "started",
                        "direction": "outbound",
                        "conversation_uuid": format!("CON-{}", random_uuid()),
                    }))
                    .set_delay(self.faults.latency())
            }
            Err((status, body)) => ResponseTemplate::new(status).set_body_json(body),
        }
    }
}

type CallRefusal = (u16, Value);

fn unauthorized() -> CallRefusal {
    (401, problem_for(401))
}

/// The claims of a bearer JWT that verifies with the test public key.
fn authenticate(request: &Request) -> Result<MockClaims, CallRefusal> {
    let token = bearer_token(request).ok_or_else(unauthorized)?;
    let key = DecodingKey::from_rsa_pem(VONAGE_TEST_PUBLIC_KEY.as_bytes()).map_err(|_| unauthorized())?;
    let mut validation = Validation::new(Algorithm::RS256);
    // Vonage needs application_id, iat and jti; exp is optional but checked when present.
    validation.required_spec_claims = HashSet::new();
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<MockClaims>(&token, &key, &validation).map_err(|_| unauthorized())?.claims;
    if claims.application_id != VONAGE_MOCK_APPLICATION_ID || claims.jti.is_empty() || claims.iat == 0 {
        return Err(unauthorized());
    }
    Ok(claims)
}

fn accept_call(claims: MockClaims, body: &[u8]) -> Result<VonageCall, CallRefusal> {
    let invalid = |name: &str, reason: &str| {
        let mut body = problem_for(400);
        body["invalid_parameters"] = json!([{ "name": name, "reason": reason }]);
        (400, body)
    };
    let request: Value = serde_json::from_slice(body).map_err(|_| invalid("body", "Invalid JSON"))?;
    let to = &request["to"][0];
    if to["type"].as_str() != Some("phone") {
        return Err(invalid("to[0].type", "Only phone endpoints are supported by this mock"));
    }
    let to =
        to["number"].as_str().filter(|n| is_e164_digits(n)).ok_or_else(|| invalid("to[0].number", "Invalid number"))?;
    let from = &request["from"];
    let from = from["number"]
        .as_str()
        .filter(|n| from["type"].as_str() == Some("phone") && is_e164_digits(n))
        .ok_or_else(|| invalid("from.number", "Invalid number"))?;
    let ncco = request["ncco"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid("ncco", "An NCCO (or answer_url) is required; this mock needs an NCCO"))?;
    let mut texts = Vec::new();
    for action in ncco {
        if action["action"].as_str() != Some("talk") {
            continue;
        }
        let text = action["text"]
            .as_str()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| invalid("ncco[0].text", "Required"))?;
        if !action["loop"].is_null() && action["loop"].as_u64().is_none() {
            return Err(invalid("ncco[0].loop", "Must be a non-negative integer"));
        }
        texts.push(text.to_owned());
    }
    let talk = ncco.iter().find(|a| a["action"].as_str() == Some("talk"));
    let event_url = match &request["event_url"] {
        Value::Null => None,
        Value::Array(urls) => Some(
            urls.first()
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("event_url", "Must be an array of URLs"))?
                .to_owned(),
        ),
        _ => return Err(invalid("event_url", "Must be an array of URLs")),
    };
    Ok(VonageCall {
        uuid: random_uuid(),
        application_id: claims.application_id,
        token_lifetime: claims.exp.map(|exp| exp.saturating_sub(claims.iat)),
        to: to.to_owned(),
        from: from.to_owned(),
        ncco: Value::Array(ncco.clone()),
        talk_text: texts.join("\n"),
        language: talk.and_then(|t| t["language"].as_str()).map(str::to_owned),
        talk_loop: talk.and_then(|t| t["loop"].as_u64()),
        event_url,
    })
}

/// Vonage's number form: 7 to 15 digits, no `+`.
fn is_e164_digits(number: &str) -> bool {
    (7..=15).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parts_like_vonage() {
        assert_eq!(parts(&"a".repeat(160), false), 1);
        assert_eq!(parts(&"a".repeat(161), false), 2);
        assert_eq!(parts(&"é".repeat(71), true), 2);
    }

    #[test]
    fn the_test_key_pair_is_a_pair() {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(VONAGE_TEST_PRIVATE_KEY.as_bytes()).unwrap();
        let claims = json!({"application_id": VONAGE_MOCK_APPLICATION_ID, "iat": 1, "jti": "x"});
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::RS256), &claims, &key).unwrap();
        let decoding = DecodingKey::from_rsa_pem(VONAGE_TEST_PUBLIC_KEY.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims = HashSet::new();
        assert!(jsonwebtoken::decode::<MockClaims>(&token, &decoding, &validation).is_ok());
    }
}
