//! The one mapping from errors to HTTP: RFC 9457 problem documents
//! (`application/problem+json`) with a stable machine-readable `type`.
//! Messages never carry a code, a key or an internal error text.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use verifyd_core::abuse::Refused;
use verifyd_core::abuse::number_type::NumberType;
use verifyd_core::account::AccountError;
use verifyd_core::account::policy::PolicyRefusal;
use verifyd_core::domain::verification::Status;
use verifyd_core::limits::{Refusal, Throttled, retry_after_secs};
use verifyd_core::ops::letters::LetterError;
use verifyd_core::verification::VerificationError;

use crate::api_keys::{KeyError, Scope as KeyScope};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthenticated,
    #[error("{}", forbidden_scope_detail(.scope, .granting))]
    ForbiddenScope { scope: KeyScope, granting: bool },
    #[error("{0}")]
    ForbiddenSource(&'static str),
    #[error("{field}: {message}")]
    InvalidField { field: &'static str, message: String },
    #[error("malformed request body: {0}")]
    MalformedBody(String),
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("request headers larger than {0} bytes in all")]
    HeadersTooLarge(usize),
    #[error("request URL longer than {0} bytes")]
    UriTooLong(usize),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("not found")]
    NotFound,
    #[error("{0} is not allowed here: see the Allow header")]
    MethodNotAllowed(String),
    #[error("{}", not_pending_detail(.0))]
    NotPending(Status),
    #[error(transparent)]
    Throttled(Throttled),
    #[error(transparent)]
    Refused(Refused),
    /// One answer for every refused code, whatever the reason: a code right
    /// for another factor (or a used TOTP step) reads as a wrong one.
    #[error("the code is not accepted: it is wrong, used already, or not from the factor that must answer")]
    InvalidCode { attempts_left: Option<i32> },
    #[error("this action needs a password check made within the last {0} seconds (password_checked_at)")]
    FreshPasswordRequired(u64),
    #[error(
        "a reset needs the acting admin's authority: their own step-up proof (step_up), \
         or how they checked the user's identity (attestation)"
    )]
    ResetAuthorityRequired,
    /// A refusal of the verification flow, said in its own words (the
    /// idempotency conflict; the others have an answer of their own above).
    #[error(transparent)]
    Verification(VerificationError),
    /// A refusal of the account flow, said in its own words.
    #[error(transparent)]
    Account(AccountError),
    /// A refusal to act on a dead letter, said in its own words.
    #[error(transparent)]
    Letter(LetterError),
    #[error("the tenant has {0} webhook endpoints, the most it may hold: delete one first")]
    TooManyWebhooks(i64),
    #[error("the request is not signed by the provider ({0})")]
    BadSignature(&'static str),
    #[error("{0}")]
    Csrf(&'static str),
    #[error("internal error")]
    Internal(String),
    #[error("service unavailable")]
    Unavailable,
    /// More requests at once than `http.max_in_flight`: shed before any work.
    #[error("this process is handling {0} requests at once, the most it takes: retry in a second")]
    Overloaded(usize),
}

impl ApiError {
    pub fn field(field: &'static str, message: impl ToString) -> Self {
        ApiError::InvalidField { field, message: message.to_string() }
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        ApiError::Internal(error.to_string())
    }

    /// A body that is not the JSON expected. serde's own text names Rust types
    /// (`expected struct VerificationRequest`, `u8`) and quotes the values it
    /// refused (which may be a code): the detail keeps only where and what
    /// kind of mistake, the API's field names, and at most 64 characters of
    /// any name the caller sent.
    pub fn malformed_json(error: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let what = match error.classify() {
            Category::Io => "the body could not be read".to_owned(),
            Category::Syntax => "the body is not valid JSON".to_owned(),
            Category::Eof => "the body ends before its JSON does".to_owned(),
            Category::Data => json_data_error(&error.to_string()),
        };
        // A body read into a JSON value first and then into its type has no
        // position (line 0): only a syntax error has one worth saying.
        match error.line() {
            0 => ApiError::MalformedBody(what),
            line => ApiError::MalformedBody(format!("{what} (line {line}, column {})", error.column())),
        }
    }

    /// The stable machine-readable name (`error`, and the end of `type`).
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::ForbiddenScope { .. } => "forbidden_scope",
            ApiError::ForbiddenSource(_) => "forbidden_source",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::MalformedBody(_) => "malformed_body",
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::HeadersTooLarge(_) => "headers_too_large",
            ApiError::UriTooLong(_) => "uri_too_long",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::NotPending(_) => "verification_not_pending",
            ApiError::Throttled(_) => "throttled",
            ApiError::Refused(r) => r.kind(),
            ApiError::InvalidCode { .. } => "invalid_code",
            ApiError::FreshPasswordRequired(_) => "fresh_password_check_required",
            ApiError::ResetAuthorityRequired => "step_up_required",
            ApiError::Verification(_) => "idempotency_conflict",
            ApiError::Account(e) => account_problem(e).0,
            ApiError::Letter(LetterError::Resolved { .. }) => "dead_letter_resolved",
            ApiError::Letter(_) => "dead_letter_not_replayable",
            ApiError::TooManyWebhooks(_) => "too_many_webhooks",
            ApiError::BadSignature(_) => "invalid_signature",
            ApiError::Csrf(_) => "csrf_failed",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable => "unavailable",
            ApiError::Overloaded(_) => "overloaded",
        }
    }
}

/// A wrapped account refusal's name and status, in one exhaustive match: a
/// new `AccountError` variant does not compile until both are chosen.
fn account_problem(e: &AccountError) -> (&'static str, StatusCode) {
    use StatusCode as S;
    match e {
        AccountError::EnrolmentAbandoned => ("enrolment_abandoned", S::CONFLICT),
        AccountError::AlreadyActive => ("factor_already_active", S::CONFLICT),
        AccountError::ChallengeClosed(_) => ("challenge_closed", S::CONFLICT),
        AccountError::NoFactor => ("no_active_factor", S::CONFLICT),
        AccountError::StepUpRequired => ("step_up_required", S::FORBIDDEN),
        AccountError::InvalidProof(_) => ("invalid_proof", S::FORBIDDEN),
        AccountError::LastFactorMandatory => ("last_factor_mandatory", S::CONFLICT),
        AccountError::Policy(PolicyRefusal::MandatoryIsFinal) => ("policy_mandatory", S::CONFLICT),
        AccountError::Policy(PolicyRefusal::SsoWithRequired) => ("sso_with_required_policy", S::CONFLICT),
        AccountError::TooManyFactors(_) => ("too_many_factors", S::CONFLICT),
        // Never wrapped: `From<AccountError>` answers these as other variants.
        AccountError::NotFound
        | AccountError::WrongCode { .. }
        | AccountError::Throttled(_)
        | AccountError::Verification(_)
        | AccountError::Store(_)
        | AccountError::Totp(_)
        | AccountError::Sealed => ("internal", S::INTERNAL_SERVER_ERROR),
    }
}

/// Why a verification takes no more codes (or sends), in words.
fn not_pending_detail(status: &Status) -> &'static str {
    match status {
        Status::Expired => "the verification has expired: its code can no longer be used; start a new verification",
        Status::Approved => "the verification is approved already: its code cannot be used again",
        Status::MaxAttemptsReached => "the verification ended after too many wrong codes; start a new verification",
        Status::Canceled => "the verification was canceled: its code can no longer be used; start a new verification",
        Status::Failed => {
            "the code could not be delivered (see `delivery` on the verification): start a new verification, \
             by the other channel or to another number"
        }
        Status::Pending => "the verification is still pending",
    }
}

fn forbidden_scope_detail(scope: &KeyScope, granting: &bool) -> String {
    if *granting {
        format!("this API key cannot grant the `{scope}` scope: it does not hold it")
    } else {
        format!("this API key lacks the `{scope}` scope this request needs")
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        ApiError::internal(e)
    }
}

impl From<VerificationError> for ApiError {
    fn from(e: VerificationError) -> Self {
        match e {
            VerificationError::NotFound => ApiError::NotFound,
            VerificationError::Throttled(t) => ApiError::Throttled(t),
            VerificationError::Refused(r) => ApiError::Refused(r),
            VerificationError::NotPending(s) => ApiError::NotPending(s),
            e @ VerificationError::IdempotencyConflict => ApiError::Verification(e),
            e @ (VerificationError::ChannelMismatch(_) | VerificationError::ChannelNotServed(_)) => {
                ApiError::field("channel", e)
            }
            VerificationError::Store(e) => ApiError::internal(e),
            VerificationError::Mailbox(e) => e.into(),
        }
    }
}

impl From<LetterError> for ApiError {
    fn from(e: LetterError) -> Self {
        match e {
            LetterError::NotFound => ApiError::NotFound,
            LetterError::VerificationEnded(status) => ApiError::NotPending(status),
            LetterError::Store(e) => ApiError::internal(e),
            e @ (LetterError::Resolved { .. } | LetterError::NotReplayable(_)) => ApiError::Letter(e),
        }
    }
}

impl From<verifyd_core::store::StoreError> for ApiError {
    fn from(e: verifyd_core::store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NotFound => ApiError::NotFound,
            AccountError::WrongCode { attempts_left } => ApiError::InvalidCode { attempts_left: Some(attempts_left) },
            AccountError::Verification(e) => e.into(),
            AccountError::Throttled(t) => ApiError::Throttled(t),
            e @ (AccountError::EnrolmentAbandoned
            | AccountError::AlreadyActive
            | AccountError::ChallengeClosed(_)
            | AccountError::NoFactor
            | AccountError::StepUpRequired
            | AccountError::InvalidProof(_)
            | AccountError::LastFactorMandatory
            | AccountError::Policy(_)
            | AccountError::TooManyFactors(_)) => ApiError::Account(e),
            other => ApiError::internal(other),
        }
    }
}

/// An actor's mailbox is full or closed: the process is overloaded or stopping.
impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        ApiError::Unavailable
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}

/// serde's message for a well-formed JSON document of the wrong shape,
/// without its position, rewritten as `ApiError::malformed_json` describes.
fn json_data_error(message: &str) -> String {
    let message = message.rsplit_once(" at line ").map_or(message, |(m, _)| m);
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "something else"));
            // `string "1234567"`, `integer `7``: the kind, not the value.
            let kind = found.split(['"', '`']).next().unwrap_or_default().trim();
            return format!("{}{kind}, expected {}", prefix, plain_expectation(expected));
        }
    }
    for prefix in ["unknown field ", "unknown variant ", "missing field ", "duplicate field "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // The name the caller sent between backticks, then serde's list of
            // the API's own names (`expected one of `a`, `b``).
            // The caller's name may hold backticks and commas itself, so the
            // split is at serde's last `, expected ` (nothing after it comes
            // from the caller), and the tail is shown only if it is made of
            // names alone.
            let (name, tail) = match rest.strip_prefix('`') {
                Some(r) => match r.rfind("`, expected ").or_else(|| r.rfind("`, there are no fields")) {
                    Some(i) => (&r[..i], &r[i + 1..]),
                    None => (r.strip_suffix('`').unwrap_or(r), ""),
                },
                None => (rest, ""),
            };
            let names_only = tail.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-`, ".contains(&b));
            let tail: String = if names_only { tail.chars().take(300).collect() } else { String::new() };
            // The caller's name is shown only if it could be a field name:
            // anything else would carry whatever the caller wrote.
            let looks_like_a_name = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            return if looks_like_a_name {
                format!("{prefix}`{name}`{tail}")
            } else {
                format!("{}{tail}", prefix.trim_end())
            };
        }
    }
    if let Some((length, expected)) = message.strip_prefix("invalid length ").and_then(|r| r.split_once(", expected "))
    {
        return format!("invalid length {length}, expected {}", plain_expectation(expected));
    }
    // The messages of the parsers behind serde (uuid, date), bounded.
    message.chars().take(200).collect()
}

/// What serde expected, in the API's words rather than Rust's.
fn plain_expectation(expected: &str) -> &str {
    match expected {
        e if e.starts_with("struct ") || e.starts_with("a map") => "a JSON object",
        e if e.starts_with("enum ") || e.starts_with("variant ") => "one of the documented values",
        "u8" => "a whole number from 0 to 255",
        "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number of at least 0",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        e if e.contains("::") => "another value",
        e => e,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotPending(_) | ApiError::Verification(_) => StatusCode::CONFLICT,
            ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            // A number the channel cannot serve: the request, not a permission, is at fault.
            ApiError::Refused(Refused::NumberTypeNotAllowed { .. } | Refused::DisposableEmail) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            // The tenant's settings or a fraud block forbid it; retrying the same will not help.
            ApiError::Refused(_) => StatusCode::FORBIDDEN,
            ApiError::InvalidCode { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::FreshPasswordRequired(_) | ApiError::ResetAuthorityRequired => StatusCode::FORBIDDEN,
            ApiError::Account(e) => account_problem(e).1,
            ApiError::TooManyWebhooks(_) => StatusCode::CONFLICT,
            ApiError::BadSignature(_)
            | ApiError::ForbiddenScope { .. }
            | ApiError::ForbiddenSource(_)
            | ApiError::Csrf(_) => StatusCode::FORBIDDEN,
            ApiError::Letter(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable | ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let detail = match self {
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error answered with 500");
                "an internal error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = Problem {
            kind: format!("https://verifyd.dev/problems/{}", self.kind()),
            error: self.kind(),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            field: None,
            required_scope: None,
            attempts_left: None,
            retry_after: None,
            scope: None,
            verification_status: None,
            challenge_status: None,
            dead_letter_status: None,
            refusal: RefusalFields::default(),
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        match self {
            ApiError::InvalidField { field, .. } => body.field = Some(field),
            ApiError::ForbiddenScope { scope, .. } => body.required_scope = Some(*scope),
            ApiError::NotPending(s) => body.verification_status = Some(s.as_str()),
            ApiError::Account(AccountError::ChallengeClosed(s)) => body.challenge_status = Some(s.as_str()),
            ApiError::Letter(LetterError::Resolved { status, .. }) => body.dead_letter_status = Some(status.as_str()),
            ApiError::InvalidCode { attempts_left: Some(left) } => body.attempts_left = Some(*left),
            ApiError::Throttled(t) => {
                let secs = retry_after_secs(t.retry_after);
                body.retry_after = Some(secs);
                body.scope = Some(t.by);
                response.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            ApiError::Refused(r) => body.refusal = RefusalFields::from(r),
            ApiError::Unauthenticated => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            ApiError::Unavailable | ApiError::Overloaded(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&body).unwrap_or_default())
    }
}

/// An error answer (RFC 9457, `application/problem+json`). `error` is the
/// stable machine-readable name; the other fields appear where they apply.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `https://verifyd.dev/problems/<error>`
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(example = "invalid_code")]
    pub error: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// The request field at fault (`invalid_field`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    /// The scope the API key lacks (`forbidden_scope`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "admin")]
    pub required_scope: Option<KeyScope>,
    /// Wrong codes still allowed (`invalid_code`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<i32>,
    /// Seconds to wait, as in the `Retry-After` header (`throttled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Which limit was hit (`throttled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Refusal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge_status: Option<&'static str>,
    /// What became of the dead letter (`dead_letter_resolved`): `replayed` or `discarded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_status: Option<&'static str>,
    #[serde(flatten)]
    pub refusal: RefusalFields,
}

/// What a refusal by the abuse defences tells besides its name: the same
/// fields in a problem document and in a challenge's `send_refused`.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RefusalFields {
    /// The destination country refused (`destination_not_allowed`; absent for
    /// numbers outside any country).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// `sms` or `voice` (`destination_not_allowed`, `number_type_not_allowed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "sms")]
    pub channel: Option<&'static str>,
    /// The kind of number refused (`number_type_not_allowed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_type: Option<NumberType>,
    /// The blocked destination prefix (`destination_prefix_blocked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// When the block runs out unless an operator lifts it first (`destination_prefix_blocked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "verifyd_core::timestamp::option")]
    pub blocked_until: Option<DateTime<Utc>>,
}

impl From<&Refused> for RefusalFields {
    fn from(r: &Refused) -> Self {
        match r {
            Refused::DestinationNotAllowed { country, channel } => {
                RefusalFields { country: country.clone(), channel: Some(channel.as_str()), ..Default::default() }
            }
            Refused::NumberTypeNotAllowed { number_type, channel } => {
                RefusalFields { number_type: Some(*number_type), channel: Some(channel.as_str()), ..Default::default() }
            }
            Refused::DestinationPrefixBlocked { prefix, blocked_until } => RefusalFields {
                prefix: Some(prefix.as_str().to_owned()),
                blocked_until: Some(*blocked_until),
                ..Default::default()
            },
            Refused::DisposableEmail => RefusalFields::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail<T: serde::de::DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        let error = serde_json::from_str::<T>(json).unwrap_err();
        ApiError::malformed_json(&error).to_string()
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        code: String,
        #[serde(default)]
        code_length: Option<u8>,
    }

    #[test]
    fn json_errors_keep_the_mistake_and_drop_rust_names_and_values() {
        let d = detail::<Body>(r#""7654321""#);
        assert_eq!(d, "malformed request body: invalid type: string, expected a JSON object (line 1, column 9)");
        let d = detail::<Body>(r#"{"code": 7654321}"#);
        assert_eq!(d, "malformed request body: invalid type: integer, expected a string (line 1, column 16)");
        let d = detail::<Body>(r#"{"code": "1", "code_length": 300}"#);
        assert!(d.contains("invalid value: integer, expected a whole number from 0 to 255"), "{d}");
        let d = detail::<Body>(r#"{"cod": "1"}"#);
        assert!(d.contains("unknown field `cod`, expected `code` or `code_length`"), "{d}");
        let d = detail::<Body>("{}");
        assert!(d.contains("missing field `code`"), "{d}");
        let d = detail::<Body>(&format!(r#"{{"{}": 1}}"#, "k".repeat(1000)));
        assert!(d.starts_with("malformed request body: unknown field, expected `code`") && d.len() < 300, "{d}");
        // Found by the amqp_request fuzz target: a name the caller made up is
        // not repeated (it carried `::`, and could carry anything).
        let d = detail::<Body>(r#"{"code_lengt?:: 6, ": 6}"#);
        assert_eq!(d, "malformed request body: unknown field, expected `code` or `code_length` (line 1, column 20)");
        // A name that holds serde's own punctuation does not shift the split.
        let d = detail::<Body>(r#"{"`x;::`, y": 1}"#);
        assert!(d.starts_with("malformed request body: unknown field, expected `code` or `code_length`"), "{d}");
        assert!(!d.contains("::"), "{d}");
        assert!(detail::<Body>("{").contains("ends before its JSON does"));
        assert!(detail::<Body>("{,}").contains("not valid JSON"));
        assert!(detail::<Vec<Body>>("[1]").ends_with("integer, expected a JSON object (line 1, column 2)"));
    }
}
