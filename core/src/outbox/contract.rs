//! The messages verifyd puts on and takes off RabbitMQ. They carry ids and routing
//! data only: never a code, a key or a secret. `docs/queues.md` documents them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use verifyd_providers::domain::Channel;

/// One delivery to make: a message on `<prefix>dispatch.<channel>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchJob {
    pub job_id: Uuid,
    pub verification_id: Uuid,
    pub channel: Channel,
    /// 0 for the first try; incremented each time the job goes through a retry queue.
    #[serde(default)]
    pub retry: u32,
}

/// A verification request: the body of `POST /v1/verifications`, and of a message
/// on the requests exchange (routing key = tenant name). Fields are raw here and
/// parsed into domain types at the edge.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationRequest {
    /// The backend's own id for its user (1–128 printable characters).
    #[schema(example = "user-42", min_length = 1, max_length = 128, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    pub account_id: String,
    /// For `sms` and `voice`: E.164, or a number with its country code.
    #[serde(default)]
    #[schema(example = "+14155552671")]
    pub phone: Option<String>,
    /// For `email`: one address, `local@domain` (an internationalised domain
    /// is sent in its ASCII form); at most 254 characters.
    #[serde(default)]
    #[schema(example = "ada@example.com", max_length = 254)]
    pub email: Option<String>,
    /// `sms` or `voice` (to `phone`), `email` (to `email`).
    #[schema(value_type = verifyd_providers::domain::Channel, example = "sms")]
    pub channel: String,
    /// `en`, `es`, `fr`, `de`, `pt` or `ja` (and regional forms); `en` by default.
    #[serde(default)]
    pub locale: Option<String>,
    /// 4 to 10 digits; 7 by default.
    #[serde(default)]
    #[schema(minimum = 4, maximum = 10)]
    pub code_length: Option<u8>,
    /// Defaults to the AMQP `message_id`, so a redelivered request creates nothing new.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The end user's IP address as the backend saw it: counted by the per-IP
    /// limit (`throttle.per_ip`). Never stored.
    #[serde(default)]
    #[schema(example = "203.0.113.7")]
    pub end_user_ip: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventKind {
    #[serde(rename = "verification.created")]
    Created,
    #[serde(rename = "verification.delivered")]
    Delivered,
    #[serde(rename = "verification.delivery_failed")]
    DeliveryFailed,
    #[serde(rename = "verification.approved")]
    Approved,
    #[serde(rename = "verification.check_failed")]
    CheckFailed,
    #[serde(rename = "verification.max_attempts_reached")]
    MaxAttemptsReached,
    #[serde(rename = "verification.expired")]
    Expired,
    #[serde(rename = "verification.canceled")]
    Canceled,
    #[serde(rename = "verification.rejected")]
    Rejected,
    #[serde(rename = "factor.added")]
    FactorAdded,
    #[serde(rename = "backup_codes.generated")]
    BackupCodesGenerated,
    #[serde(rename = "backup_codes.used")]
    BackupCodeUsed,
    #[serde(rename = "recovery_code.generated")]
    RecoveryCodeGenerated,
    #[serde(rename = "recovery_code.used")]
    RecoveryCodeUsed,
    #[serde(rename = "factor.removed")]
    FactorRemoved,
    #[serde(rename = "factor.default_changed")]
    DefaultFactorChanged,
    #[serde(rename = "policy.changed")]
    PolicyChanged,
    #[serde(rename = "account.reset")]
    AccountReset,
    #[serde(rename = "challenge.failed")]
    ChallengeFailed,
    #[serde(rename = "abuse.prefix_blocked")]
    PrefixBlocked,
}

impl EventKind {
    /// Every kind, as webhook filters name them.
    pub const ALL: [EventKind; 20] = [
        EventKind::Created,
        EventKind::Delivered,
        EventKind::DeliveryFailed,
        EventKind::Approved,
        EventKind::CheckFailed,
        EventKind::MaxAttemptsReached,
        EventKind::Expired,
        EventKind::Canceled,
        EventKind::Rejected,
        EventKind::FactorAdded,
        EventKind::BackupCodesGenerated,
        EventKind::BackupCodeUsed,
        EventKind::RecoveryCodeGenerated,
        EventKind::RecoveryCodeUsed,
        EventKind::FactorRemoved,
        EventKind::DefaultFactorChanged,
        EventKind::PolicyChanged,
        EventKind::AccountReset,
        EventKind::ChallengeFailed,
        EventKind::PrefixBlocked,
    ];

    /// The family of the kind: what comes before the dot (`verification`, `factor`, …).
    pub fn family(self) -> &'static str {
        self.as_str().split('.').next().unwrap_or_default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "verification.created",
            EventKind::Delivered => "verification.delivered",
            EventKind::DeliveryFailed => "verification.delivery_failed",
            EventKind::Approved => "verification.approved",
            EventKind::CheckFailed => "verification.check_failed",
            EventKind::MaxAttemptsReached => "verification.max_attempts_reached",
            EventKind::Expired => "verification.expired",
            EventKind::Canceled => "verification.canceled",
            EventKind::Rejected => "verification.rejected",
            EventKind::FactorAdded => "factor.added",
            EventKind::BackupCodesGenerated => "backup_codes.generated",
            EventKind::BackupCodeUsed => "backup_codes.used",
            EventKind::RecoveryCodeGenerated => "recovery_code.generated",
            EventKind::RecoveryCodeUsed => "recovery_code.used",
            EventKind::FactorRemoved => "factor.removed",
            EventKind::DefaultFactorChanged => "factor.default_changed",
            EventKind::PolicyChanged => "policy.changed",
            EventKind::AccountReset => "account.reset",
            EventKind::ChallengeFailed => "challenge.failed",
            EventKind::PrefixBlocked => "abuse.prefix_blocked",
        }
    }
}

/// An event on the topic exchange `<prefix>events`, routing key `<tenant>.<event>`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub event_id: Uuid,
    pub event: EventKind,
    pub tenant: String,
    #[serde(with = "crate::timestamp")]
    pub occurred_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_id: Option<Uuid>,
    /// Empty (and left out) for tenant-wide events such as `abuse.prefix_blocked`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// Event-specific fields (attempts left, provider, error, factor id, …).
    #[serde(flatten)]
    pub detail: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    pub fn status(mut self, status: &'static str) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }

    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.tenant, self.event.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_serialises_as_its_name() {
        let names: std::collections::BTreeSet<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), EventKind::ALL.len());
        for kind in EventKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(kind.as_str()));
        }
    }

    #[test]
    fn dispatch_job_round_trips_and_refuses_extra_fields() {
        let job =
            DispatchJob { job_id: Uuid::new_v4(), verification_id: Uuid::new_v4(), channel: Channel::Voice, retry: 2 };
        let json = serde_json::to_string(&job).unwrap();
        assert_eq!(serde_json::from_str::<DispatchJob>(&json).unwrap(), job);
        let with_code = json.replace('}', ",\"code\":\"1234567\"}");
        assert!(serde_json::from_str::<DispatchJob>(&with_code).is_err());
    }
}
