//! The one mapping from errors to HTTP: RFC 9457 problem documents
//! (`application/problem+json`) with a stable machine-readable `type`.
//! Messages never carry a code, a key or an internal error text.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use verifyd_actors::abuse::Refused;
use verifyd_actors::abuse::number_type::NumberType;
use verifyd_actors::account_state::AccountError;
use verifyd_actors::lifecycle::Status;
use verifyd_actors::policy::PolicyRefusal;
use verifyd_actors::proof::ProofError;
use verifyd_actors::store::challenges::ChallengeStatus;
use verifyd_actors::throttle::{Scope, Throttled, retry_after_secs};
use verifyd_actors::verification::VerificationError;

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
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("not found")]
    NotFound,
    #[error("verification is {0}")]
    NotPending(Status),
    #[error("the idempotency key was already used for another phone number or account")]
    IdempotencyConflict,
    #[error(transparent)]
    Throttled(Throttled),
    #[error(transparent)]
    Refused(Refused),
    #[error("wrong or already used code")]
    InvalidCode { attempts_left: Option<i32> },
    #[error("too many wrong codes: the enrolment was abandoned; enrol again")]
    EnrolmentAbandoned,
    #[error("the factor is already active")]
    AlreadyActive,
    #[error("this action needs a password check made within the last {0} seconds (password_checked_at)")]
    FreshPasswordRequired(u64),
    #[error("the challenge is {}", .0.as_str())]
    ChallengeClosed(ChallengeStatus),
    #[error("the account has no active second factor to challenge")]
    NoFactor,
    #[error("this action needs a step-up: answer a challenge and pass its proof (step_up)")]
    StepUpRequired,
    #[error("the proof is not accepted: {0}")]
    InvalidProof(ProofError),
    #[error("this is the account's last factor and an organisation it belongs to makes two-factor mandatory")]
    LastFactorMandatory,
    #[error(transparent)]
    PolicyRefused(PolicyRefusal),
    #[error("the request is not signed by the provider ({0})")]
    BadSignature(&'static str),
    #[error("internal error")]
    Internal(String),
    #[error("service unavailable")]
    Unavailable,
}

impl ApiError {
    pub fn field(field: &'static str, message: impl ToString) -> Self {
        ApiError::InvalidField { field, message: message.to_string() }
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        ApiError::Internal(error.to_string())
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::ForbiddenScope { .. } => "forbidden_scope",
            ApiError::ForbiddenSource(_) => "forbidden_source",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::MalformedBody(_) => "malformed_body",
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::NotFound => "not_found",
            ApiError::NotPending(_) => "verification_not_pending",
            ApiError::IdempotencyConflict => "idempotency_conflict",
            ApiError::Throttled(_) => "throttled",
            ApiError::Refused(r) => r.kind(),
            ApiError::InvalidCode { .. } => "invalid_code",
            ApiError::EnrolmentAbandoned => "enrolment_abandoned",
            ApiError::AlreadyActive => "factor_already_active",
            ApiError::FreshPasswordRequired(_) => "fresh_password_check_required",
            ApiError::ChallengeClosed(_) => "challenge_closed",
            ApiError::NoFactor => "no_active_factor",
            ApiError::StepUpRequired => "step_up_required",
            ApiError::InvalidProof(_) => "invalid_proof",
            ApiError::LastFactorMandatory => "last_factor_mandatory",
            ApiError::PolicyRefused(PolicyRefusal::MandatoryIsFinal) => "policy_mandatory",
            ApiError::PolicyRefused(PolicyRefusal::SsoWithRequired) => "sso_with_required_policy",
            ApiError::BadSignature(_) => "invalid_signature",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable => "unavailable",
        }
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
            VerificationError::IdempotencyConflict => ApiError::IdempotencyConflict,
            VerificationError::Store(e) => ApiError::internal(e),
            VerificationError::Mailbox(e) => e.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NotFound => ApiError::NotFound,
            AccountError::WrongCode { attempts_left } => ApiError::InvalidCode { attempts_left: Some(attempts_left) },
            AccountError::EnrolmentAbandoned => ApiError::EnrolmentAbandoned,
            AccountError::AlreadyActive => ApiError::AlreadyActive,
            AccountError::ChallengeClosed(s) => ApiError::ChallengeClosed(s),
            AccountError::NoFactor => ApiError::NoFactor,
            AccountError::StepUpRequired => ApiError::StepUpRequired,
            AccountError::InvalidProof(e) => ApiError::InvalidProof(e),
            AccountError::LastFactorMandatory => ApiError::LastFactorMandatory,
            AccountError::Policy(p) => ApiError::PolicyRefused(p),
            AccountError::Verification(e) => e.into(),
            AccountError::Throttled(t) => ApiError::Throttled(t),
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

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::NotPending(_) | ApiError::IdempotencyConflict => StatusCode::CONFLICT,
            ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            // A number the channel cannot serve: the request, not a permission, is at fault.
            ApiError::Refused(Refused::NumberTypeNotAllowed { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            // The tenant's settings or a fraud block forbid it; retrying the same will not help.
            ApiError::Refused(_) => StatusCode::FORBIDDEN,
            ApiError::InvalidCode { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::EnrolmentAbandoned | ApiError::AlreadyActive => StatusCode::CONFLICT,
            ApiError::FreshPasswordRequired(_) | ApiError::StepUpRequired | ApiError::InvalidProof(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::ChallengeClosed(_)
            | ApiError::NoFactor
            | ApiError::LastFactorMandatory
            | ApiError::PolicyRefused(_) => StatusCode::CONFLICT,
            ApiError::BadSignature(_) | ApiError::ForbiddenScope { .. } | ApiError::ForbiddenSource(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
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
            country: None,
            channel: None,
            number_type: None,
            prefix: None,
            blocked_until: None,
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        match self {
            ApiError::InvalidField { field, .. } => body.field = Some(field),
            ApiError::ForbiddenScope { scope, .. } => body.required_scope = Some(*scope),
            ApiError::NotPending(s) => body.verification_status = Some(s.as_str()),
            ApiError::ChallengeClosed(s) => body.challenge_status = Some(s.as_str()),
            ApiError::InvalidCode { attempts_left: Some(left) } => body.attempts_left = Some(*left),
            ApiError::Throttled(t) => {
                let secs = retry_after_secs(t.retry_after);
                body.retry_after = Some(secs);
                body.scope = Some(t.scope);
                response.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            ApiError::Refused(Refused::DestinationNotAllowed { country, channel }) => {
                body.country = country.clone();
                body.channel = Some(channel.as_str());
            }
            ApiError::Refused(Refused::NumberTypeNotAllowed { number_type, channel }) => {
                body.number_type = Some(*number_type);
                body.channel = Some(channel.as_str());
            }
            ApiError::Refused(Refused::DestinationPrefixBlocked { prefix, blocked_until }) => {
                body.prefix = Some(prefix.as_str().to_owned());
                body.blocked_until = Some(*blocked_until);
            }
            ApiError::Unauthenticated => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            ApiError::Unavailable => {
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
    pub scope: Option<Scope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge_status: Option<&'static str>,
    /// The destination country refused (`destination_not_allowed`; absent for
    /// numbers outside any country).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// `sms` or `voice` (`destination_not_allowed`, `number_type_not_allowed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'static str>,
    /// The kind of number refused (`number_type_not_allowed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_type: Option<NumberType>,
    /// The blocked destination prefix (`destination_prefix_blocked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// When the block runs out unless an operator lifts it first (`destination_prefix_blocked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_until: Option<DateTime<Utc>>,
}
