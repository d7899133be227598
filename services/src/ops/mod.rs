//! Operator work shared by the HTTP endpoints (`/v1/ops/…`), the console and
//! the CLI (`verifyd dead-letters …`, `verifyd overview`): dead-letter filters
//! parsed from what an operator writes, and the JSON shapes all three show
//! (the CLI itself is `cli.rs`, beside this folder).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;
use verifyd_core::dead_letter::Reason;
use verifyd_core::delivery::routing::Routes;
use verifyd_core::ids::View;
use verifyd_core::infra::amqp::Topology;
use verifyd_core::ops::letters::{Opened, VerificationState};
use verifyd_core::ops::overview::{self, Inputs, Overview, OverviewError};
use verifyd_core::store::attempts::Recorded;
use verifyd_core::store::dead_letters::{Filter, Letter, Status};
use verifyd_core::store::tenants;
use verifyd_providers::domain::{Channel, mask_addresses};

/// A filter as an operator writes it (query string, JSON body, CLI flags).
#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FilterArgs {
    /// A tenant's name (deployment operators only; a tenant's key sees its own).
    #[serde(default)]
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub tenant: Option<String>,
    /// `sms` or `voice`.
    #[serde(default)]
    #[param(value_type = Option<Channel>)]
    #[schema(value_type = Option<Channel>)]
    pub channel: Option<String>,
    /// A reason kind: `retries_exhausted`, `malformed`, `unknown_verification`,
    /// `sealed_code`, `unknown_tenant`, `invalid_request`, `too_large`,
    /// `idempotency_conflict`, `other`.
    #[serde(default)]
    #[param(value_type = Option<Reason>)]
    #[schema(value_type = Option<Reason>)]
    pub reason: Option<String>,
    /// `dead` (the default: waiting for an operator), `replayed`, `discarded` or `all`.
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^(dead|replayed|discarded|all)$")]
    #[schema(value_type = Option<String>, pattern = "^(dead|replayed|discarded|all)$")]
    pub status: Option<String>,
    /// Dead-lettered at least this long ago: `90`, `30s`, `15m`, `2h`, `7d`.
    #[serde(default)]
    #[param(pattern = "^[0-9]{1,12}[smhd]?$")]
    #[schema(pattern = "^[0-9]{1,12}[smhd]?$")]
    pub older_than: Option<String>,
    /// Dead-lettered less than this long ago.
    #[serde(default)]
    #[param(pattern = "^[0-9]{1,12}[smhd]?$")]
    #[schema(pattern = "^[0-9]{1,12}[smhd]?$")]
    pub newer_than: Option<String>,
}

/// What is wrong with a filter, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadFilter {
    pub field: &'static str,
    pub message: String,
}

/// A filter that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(transparent)]
    Bad(#[from] BadFilter),
    /// No tenant of that name the caller may see (a tenant's key sees its own
    /// only): the same answer whether the name exists or not.
    #[error("no tenant of that name")]
    UnknownTenant,
    #[error("database: {0}")]
    Store(#[from] sqlx::Error),
}

fn bad(field: &'static str, message: impl Into<String>) -> BadFilter {
    BadFilter { field, message: message.into() }
}

/// Tenant names are lowercase letters, digits and '-' (as `keys create` makes them).
fn tenant_name(name: &str) -> Result<&str, BadFilter> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    ok.then_some(name).ok_or_else(|| bad("tenant", "not a tenant name (lowercase letters, digits and '-')"))
}

/// `90`, `30s`, `15m`, `2h`, `7d`: an age.
pub fn parse_age(input: &str) -> Option<Duration> {
    let (digits, per) = match input.as_bytes().last()? {
        b's' => (&input[..input.len() - 1], 1),
        b'm' => (&input[..input.len() - 1], 60),
        b'h' => (&input[..input.len() - 1], 3600),
        b'd' => (&input[..input.len() - 1], 86_400),
        _ => (input, 1),
    };
    // 1 to 12 digits and nothing else (`u64::from_str` would take a `+`).
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(per).map(Duration::from_secs)
}

impl FilterArgs {
    pub async fn parse(&self, pool: &PgPool, view: &View, now: DateTime<Utc>) -> Result<Filter, FilterError> {
        let tenant_id = match (&self.tenant, view) {
            (None, _) => None,
            (Some(name), View::Tenant(own)) if *name == own.name => Some(own.id),
            (Some(_), View::Tenant(_)) => return Err(FilterError::UnknownTenant),
            (Some(name), View::Deployment) => {
                Some(tenants::by_name(pool, tenant_name(name)?).await?.ok_or(FilterError::UnknownTenant)?.id)
            }
        };
        let channel = match self.channel.as_deref() {
            None => None,
            Some(c) => Some(c.parse::<Channel>().map_err(|_| bad("channel", "must be sms or voice"))?),
        };
        let reason = match self.reason.as_deref() {
            None => None,
            Some(r) => {
                Some(Reason::parse(r).ok_or_else(|| bad("reason", "not a reason kind (see the documentation)"))?)
            }
        };
        let status = match self.status.as_deref() {
            None => Some(Status::Dead),
            Some("all") => None,
            Some(s) => Some(Status::parse(s).ok_or_else(|| bad("status", "must be dead, replayed, discarded or all"))?),
        };
        let age = |field: &'static str, raw: &Option<String>| -> Result<Option<DateTime<Utc>>, BadFilter> {
            match raw {
                None => Ok(None),
                Some(raw) => {
                    let age = parse_age(raw).ok_or_else(|| bad(field, "an age such as 90, 30s, 15m, 2h or 7d"))?;
                    // No letter is older than 1970 (and PostgreSQL's calendar ends).
                    let since = TimeDelta::from_std(age).ok().and_then(|age| now.checked_sub_signed(age));
                    Ok(Some(since.map_or(DateTime::UNIX_EPOCH, |t| t.max(DateTime::UNIX_EPOCH))))
                }
            }
        };
        Ok(Filter {
            tenant_id,
            channel,
            reason,
            status,
            dead_before: age("older_than", &self.older_than)?,
            dead_after: age("newer_than", &self.newer_than)?,
        })
    }
}

/// A dead letter in a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LetterView {
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The queue it was taken from.
    pub source_queue: String,
    /// Why, in a word (`retries_exhausted`, `malformed`, …).
    pub reason_kind: Reason,
    /// Why, in words.
    pub reason: String,
    #[serde(with = "verifyd_core::timestamp")]
    pub dead_lettered_at: DateTime<Utc>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "verifyd_core::timestamp::option")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// The key (or `cli:<user>`) that replayed or discarded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// The reason given for a discard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// The job a replay queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_job_id: Option<Uuid>,
    /// A webhook delivery given up on (`GET /v1/webhooks/{id}/deliveries`
    /// lists it); a replay delivers it again under the same `webhook-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_delivery_id: Option<Uuid>,
}

impl From<&Letter> for LetterView {
    fn from(l: &Letter) -> Self {
        LetterView {
            id: l.id,
            tenant: l.tenant.clone(),
            verification_id: l.verification_id,
            job_id: l.job_id,
            channel: l.channel.map(|c| c.as_str().to_owned()),
            source_queue: l.source_queue.clone(),
            reason_kind: l.kind,
            reason: l.reason.clone(),
            dead_lettered_at: l.dead_lettered_at,
            status: l.status,
            resolved_at: l.resolved_at,
            resolved_by: l.resolved_by.clone(),
            resolution: l.resolution.clone(),
            replay_job_id: l.replay_job_id,
            webhook_delivery_id: l.webhook_delivery_id,
        }
    }
}

/// The message a letter holds, as far as it can be shown: its first 4 KiB as
/// text (bytes that are not UTF-8 replaced, numbers in E.164 and email
/// addresses masked).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Body {
    pub bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub text: String,
    pub truncated: bool,
}

const SHOWN: usize = 4096;

/// `+` and 7 or more digits: every digit but the last two hidden, as
/// `PhoneNumber::masked` writes numbers in logs.
fn mask_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '+' {
            let digits: String = chars[i + 1..].iter().take_while(|c| c.is_ascii_digit()).collect();
            if digits.len() >= 7 {
                let n = digits.len();
                out.push('+');
                out.push_str(&"*".repeat(n - 2));
                out.push_str(&digits[n - 2..]);
                i += 1 + n;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

impl Body {
    pub fn of(letter: &Letter) -> Body {
        let shown = &letter.body[..letter.body.len().min(SHOWN)];
        Body {
            bytes: letter.body.len(),
            content_type: letter.content_type.clone(),
            text: mask_addresses(&mask_numbers(&String::from_utf8_lossy(shown))),
            truncated: letter.body.len() > SHOWN,
        }
    }
}

/// A dead letter opened.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LetterDetail {
    #[serde(flatten)]
    pub letter: LetterView,
    /// Where its verification stands now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationState>,
    /// Every delivery attempt of its verification, oldest first (a replay's too).
    pub attempts: Vec<Recorded>,
    /// The first and last failed attempt of its own job.
    #[serde(with = "verifyd_core::timestamp::option")]
    pub first_failure_at: Option<DateTime<Utc>>,
    #[serde(with = "verifyd_core::timestamp::option")]
    pub last_failure_at: Option<DateTime<Utc>>,
    pub replayable: bool,
    /// Why it cannot be replayed now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_replayable: Option<String>,
    pub body: Body,
}

impl From<Opened> for LetterDetail {
    fn from(o: Opened) -> Self {
        let (first, last) = o.failures();
        LetterDetail {
            letter: LetterView::from(&o.letter),
            body: Body::of(&o.letter),
            verification: o.verification,
            attempts: o.attempts,
            first_failure_at: first,
            last_failure_at: last,
            replayable: o.not_replayable.is_none(),
            not_replayable: o.not_replayable,
        }
    }
}

/// The overview of a view, as HTTP and the CLI give it.
pub async fn overview(
    pool: &PgPool,
    amqp: Option<&lapin::Connection>,
    topology: &Topology,
    routes: &Routes,
    report_interval: Duration,
    view: &View,
) -> Result<Overview, OverviewError> {
    let providers = routes.breakers().map(|(name, _)| name.to_owned()).collect();
    let paced: HashMap<String, u32> = routes.paced().clone();
    overview::build(Inputs {
        pool,
        amqp,
        topology,
        view,
        providers,
        paced,
        report_interval,
        now: verifyd_core::timestamp::now(),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_an_operator_writes_them() {
        assert_eq!(parse_age("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_age("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_age("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_age("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("1w"), None);
        assert_eq!(parse_age("-5m"), None);
        assert_eq!(parse_age(""), None);
        assert_eq!(parse_age("+5m"), None);
        assert_eq!(parse_age(" 5m"), None);
        assert_eq!(parse_age("1234567890123"), None, "at most 12 digits, as the document says");
        assert_eq!(parse_age("999999999999d"), Some(Duration::from_secs(999_999_999_999 * 86_400)));
    }

    #[test]
    fn numbers_in_shown_bodies_are_masked() {
        let body = r#"{"account_id":"a","phone":"+14155552671","channel":"sms"}"#;
        assert_eq!(mask_numbers(body), r#"{"account_id":"a","phone":"+*********71","channel":"sms"}"#);
        assert_eq!(mask_numbers("+44 7911"), "+44 7911", "short runs stay");
        let body = r#"{"account_id":"a","email":"Ada.Lovelace+x@example.com","channel":"email"}"#;
        assert_eq!(mask_addresses(body), r#"{"account_id":"a","email":"A***@example.com","channel":"email"}"#);
        assert_eq!(mask_addresses("a@b c@d.e @x.y user@localhost"), "a@b c***@d.e @x.y user@localhost");
    }
}
