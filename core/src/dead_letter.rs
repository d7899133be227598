//! Why a message was dead-lettered: a closed list, written with each dead letter
//! (`x-verifyd-reason-kind`) next to the reason in words (`x-verifyd-reason`), so
//! that letters can be filtered, counted and alerted on by kind.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Every provider kept failing in a retryable way through every retry delay.
    RetriesExhausted,
    /// The message does not parse (a dispatch job or a request).
    Malformed,
    /// A dispatch job for a verification that does not exist.
    UnknownVerification,
    /// The code of the verification does not open with this deployment's
    /// encryption key (the key was changed).
    SealedCode,
    /// A request whose routing key names no tenant.
    UnknownTenant,
    /// A request that parses but is not valid (a field, `reply_to`).
    InvalidRequest,
    /// A request larger than `amqp.max_request_bytes`, refused unread.
    TooLarge,
    /// A request whose idempotency key was used for another phone or account.
    IdempotencyConflict,
    /// A webhook receiver refused a delivery for good (a 4xx other than 408
    /// and 429, or 410 Gone, which also disables its endpoint).
    ReceiverRefused,
    /// A letter from before kinds were recorded, or from another sender.
    Other,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::RetriesExhausted,
        Reason::Malformed,
        Reason::UnknownVerification,
        Reason::SealedCode,
        Reason::UnknownTenant,
        Reason::InvalidRequest,
        Reason::TooLarge,
        Reason::IdempotencyConflict,
        Reason::ReceiverRefused,
        Reason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::Malformed => "malformed",
            Reason::UnknownVerification => "unknown_verification",
            Reason::SealedCode => "sealed_code",
            Reason::UnknownTenant => "unknown_tenant",
            Reason::InvalidRequest => "invalid_request",
            Reason::TooLarge => "too_large",
            Reason::IdempotencyConflict => "idempotency_conflict",
            Reason::ReceiverRefused => "receiver_refused",
            Reason::Other => "other",
        }
    }

    pub fn parse(stored: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == stored)
    }

    /// The kind of a letter that carries only its reason in words (dead-lettered
    /// before kinds were recorded): the texts verifyd has always written.
    pub fn from_text(reason: &str) -> Reason {
        let starts = |p: &str| reason.starts_with(p);
        if starts("retries exhausted") {
            Reason::RetriesExhausted
        } else if starts("malformed") {
            Reason::Malformed
        } else if reason.starts_with("verification ") && reason.ends_with("does not exist") {
            Reason::UnknownVerification
        } else if starts("sealed code") {
            Reason::SealedCode
        } else if starts("unknown tenant") {
            Reason::UnknownTenant
        } else if starts("invalid request") || starts("reply_to") {
            Reason::InvalidRequest
        } else if starts("request too large") {
            Reason::TooLarge
        } else if reason.contains("idempotency key") {
            Reason::IdempotencyConflict
        } else {
            Reason::Other
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_old_texts_are_classified() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Reason::from_text("retries exhausted after 3 tries: twilio …"), Reason::RetriesExhausted);
        assert_eq!(Reason::from_text("malformed dispatch job: expected value"), Reason::Malformed);
        assert_eq!(
            Reason::from_text("verification 00000000-0000-4000-8000-000000000000 does not exist"),
            Reason::UnknownVerification
        );
        assert_eq!(Reason::from_text("unknown tenant \"x\" (the routing key …)"), Reason::UnknownTenant);
        assert_eq!(Reason::from_text("request too large: 20000 bytes"), Reason::TooLarge);
        assert_eq!(Reason::from_text("whatever an operator wrote"), Reason::Other);
    }
}
