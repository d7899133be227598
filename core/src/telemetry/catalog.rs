//! Every metric verifyd exports: its name, type, help text and labels, with the
//! values each label takes. At start a process describes them all (`# HELP`)
//! and registers every series at zero, so dashboards and alerts see the whole
//! set on a fresh process, not only what already happened.
//!
//! Labels stay bounded: channels, providers, queues, kinds and outcomes are
//! closed lists; `tenant` names at most `metrics.tenant_label_limit` tenants
//! (those first seen by the process), every other tenant counts as `other`.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use verifyd_providers::ErrorKind;
use verifyd_providers::domain::Channel;

use crate::dead_letter::Reason;
use crate::limits::Refusal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The values a label takes.
#[derive(Debug, Clone, Copy)]
pub enum Values {
    Channel,
    /// The providers this process routes to.
    Provider,
    /// The tenants named so far (bounded), and `other`.
    Tenant,
    /// This deployment's queue names.
    Queue,
    ErrorKind,
    DeadLetterReason,
    ThrottleScope,
    Fixed(&'static [&'static str]),
}

pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [(&'static str, Values)],
}

const fn counter(name: &'static str, help: &'static str, labels: &'static [(&'static str, Values)]) -> Metric {
    Metric { name, kind: Kind::Counter, help, labels }
}
const fn gauge(name: &'static str, help: &'static str, labels: &'static [(&'static str, Values)]) -> Metric {
    Metric { name, kind: Kind::Gauge, help, labels }
}
const fn histogram(name: &'static str, help: &'static str, labels: &'static [(&'static str, Values)]) -> Metric {
    Metric { name, kind: Kind::Histogram, help, labels }
}

const CHANNEL: (&str, Values) = ("channel", Values::Channel);
const PROVIDER: (&str, Values) = ("provider", Values::Provider);
const TENANT: (&str, Values) = ("tenant", Values::Tenant);
const QUEUE: (&str, Values) = ("queue", Values::Queue);
const RECEIPT_PROVIDER: (&str, Values) = ("provider", Values::Fixed(&["twilio", "vonage", "meta"]));

/// Attempt outcomes of a provider call.
pub const CALL_OUTCOMES: &[&str] = &["accepted", "retryable_error", "refused", "permanent_error"];

/// What a webhook receiver made of one POST.
pub const WEBHOOK_OUTCOMES: &[&str] = &["accepted", "retryable_error", "refused"];

pub const METRICS: &[Metric] = &[
    counter(
        "verifyd_verifications_created_total",
        "Verifications started (their first code queued).",
        &[TENANT, CHANNEL],
    ),
    counter("verifyd_verifications_approved_total", "Verifications approved by a correct code.", &[TENANT, CHANNEL]),
    counter("verifyd_verifications_expired_total", "Verifications ended by their deadline before a correct code.", &[]),
    counter(
        "verifyd_checks_total",
        "Code checks, by the status they left the verification in.",
        &[("outcome", Values::Fixed(&["approved", "pending", "max_attempts_reached", "expired"]))],
    ),
    counter("verifyd_resends_total", "Codes sent again for a verification.", &[CHANNEL]),
    counter(
        "verifyd_http_shed_total",
        "HTTP requests answered 503 overloaded at once: more were in flight than http.max_in_flight.",
        &[],
    ),
    counter(
        "verifyd_dispatch_total",
        "Delivery jobs finished, by final outcome.",
        &[TENANT, CHANNEL, ("outcome", Values::Fixed(&["sent", "permanent_error", "skipped"]))],
    ),
    counter(
        "verifyd_dispatch_retries_total",
        "Delivery jobs put in a retry queue after a retryable failure.",
        &[CHANNEL],
    ),
    counter(
        "verifyd_dispatch_deferred_total",
        "Delivery jobs put off without spending a retry (every provider's circuit open or paced).",
        &[CHANNEL],
    ),
    counter(
        "verifyd_dispatch_requeued_total",
        "Deliveries returned to their queue because they could not be handled now (database down).",
        &[],
    ),
    counter(
        "verifyd_dispatch_duplicates_total",
        "Copies of delivery jobs that had already finished, dropped without sending (replay dead letters with `verifyd dead-letters replay`).",
        &[CHANNEL],
    ),
    counter(
        "verifyd_provider_errors_total",
        "Failed provider calls, by error kind.",
        &[PROVIDER, ("kind", Values::ErrorKind)],
    ),
    counter("verifyd_provider_skipped_total", "Provider calls skipped because its circuit was open.", &[PROVIDER]),
    counter("verifyd_provider_paced_total", "Provider calls put off because it was at providers.tps.", &[PROVIDER]),
    counter("verifyd_provider_circuit_opened_total", "Times this process opened a provider's circuit.", &[PROVIDER]),
    counter(
        "verifyd_receipts_total",
        "Delivery receipts applied, by status.",
        &[RECEIPT_PROVIDER, ("status", Values::Fixed(&["queued", "sent", "delivered", "undelivered", "failed"]))],
    ),
    counter(
        "verifyd_receipts_refused_total",
        "Delivery receipts refused for a bad or missing signature.",
        &[RECEIPT_PROVIDER],
    ),
    counter(
        "verifyd_receipts_parked_total",
        "Delivery receipts that came before verifyd recorded their message's send, kept to be applied when it is.",
        &[RECEIPT_PROVIDER],
    ),
    counter(
        "verifyd_receipts_unmatched_total",
        "Parked delivery receipts dropped after ten minutes with no send of theirs recorded.",
        &[],
    ),
    counter(
        "verifyd_fallbacks_total",
        "Codes sent again by another channel after an undeliverable SMS.",
        &[("to", Values::Fixed(&["voice"]))],
    ),
    counter("verifyd_consumers_recovered_total", "Queue consumers that came back after a broker outage.", &[]),
    counter("verifyd_consumers_lost_total", "Queue consumers whose recovery gave up.", &[]),
    counter(
        "verifyd_dead_lettered_total",
        "Messages this process moved to the dead-letter queue, by reason.",
        &[("reason", Values::DeadLetterReason)],
    ),
    counter(
        "verifyd_dead_letter_actions_total",
        "Dead letters replayed or discarded by an operator.",
        &[("action", Values::Fixed(&["replayed", "discarded"]))],
    ),
    counter("verifyd_outbox_published_total", "Outbox rows published and confirmed by the broker.", &[]),
    counter("verifyd_outbox_errors_total", "Outbox batches that failed to publish (retried).", &[]),
    counter(
        "verifyd_throttled_total",
        "Requests refused by a limit, by its scope.",
        &[("scope", Values::ThrottleScope)],
    ),
    counter(
        "verifyd_abuse_refused_total",
        "Sends refused by the abuse defences, by reason.",
        &[(
            "reason",
            Values::Fixed(&[
                "destination_not_allowed",
                "number_type_not_allowed",
                "destination_prefix_blocked",
                "disposable_email",
            ]),
        )],
    ),
    counter("verifyd_prefix_blocks_total", "Destination prefixes blocked by the pumping guard.", &[]),
    counter(
        "verifyd_challenges_opened_total",
        "Login and step-up challenges opened.",
        &[("purpose", Values::Fixed(&["login", "step_up"]))],
    ),
    counter(
        "verifyd_challenges_passed_total",
        "Challenges passed, by what answered them.",
        &[("answered_by", Values::Fixed(&["phone", "email", "totp", "backup_code", "recovery_code"]))],
    ),
    counter(
        "verifyd_challenges_failed_total",
        "Challenges failed by too many wrong answers.",
        &[("purpose", Values::Fixed(&["login", "step_up"]))],
    ),
    counter(
        "verifyd_delivery_reports_total",
        "Delivery jobs finished with an event, by outcome: delivered (a provider accepted it) or failed.",
        &[CHANNEL, ("outcome", Values::Fixed(&["delivered", "failed"]))],
    ),
    counter("verifyd_requests_rejected_total", "AMQP verification requests answered with verification.rejected.", &[]),
    counter(
        "verifyd_voice_scripts_served_total",
        "Call scripts served to providers that fetch them.",
        &[("provider", Values::Fixed(&["plivo"]))],
    ),
    counter(
        "verifyd_webhook_attempts_total",
        "POSTs to webhook endpoints, by what the receiver made of them.",
        &[("outcome", Values::Fixed(WEBHOOK_OUTCOMES))],
    ),
    counter(
        "verifyd_webhook_deliveries_total",
        "Webhook deliveries finished: delivered, dead (a dead letter) or skipped (endpoint disabled).",
        &[("outcome", Values::Fixed(&["delivered", "dead", "skipped"]))],
    ),
    counter("verifyd_webhook_retries_total", "Webhook deliveries put in a retry queue after a failed POST.", &[]),
    counter(
        "verifyd_webhook_waits_total",
        "Webhook deliveries put off because an earlier event of the same verification or account is not delivered yet.",
        &[],
    ),
    counter(
        "verifyd_webhook_endpoints_disabled_total",
        "Webhook endpoints turned off because their receiver answered 410 Gone.",
        &[],
    ),
    gauge(
        "verifyd_queue_messages",
        "Messages ready in each queue (deployment-wide: the same in every process; use max).",
        &[QUEUE],
    ),
    gauge("verifyd_queue_consumers", "Consumers attached to each queue (deployment-wide; use max).", &[QUEUE]),
    gauge(
        "verifyd_queue_oldest_age_seconds",
        "At most how long the oldest waiting message of each queue has waited (deployment-wide; use max).",
        &[QUEUE],
    ),
    gauge("verifyd_outbox_rows", "Outbox rows not yet confirmed by the broker (deployment-wide; use max).", &[]),
    gauge("verifyd_outbox_oldest_age_seconds", "Age of the oldest outbox row (deployment-wide; use max).", &[]),
    gauge(
        "verifyd_dead_letters",
        "Dead letters waiting for an operator, by reason (deployment-wide; use max).",
        &[("reason", Values::DeadLetterReason)],
    ),
    gauge(
        "verifyd_webhook_pending",
        "Webhook deliveries not yet delivered or given up on (deployment-wide; use max).",
        &[],
    ),
    gauge(
        "verifyd_webhook_oldest_pending_age_seconds",
        "Age of the oldest webhook delivery still pending (deployment-wide; use max).",
        &[],
    ),
    gauge(
        "verifyd_provider_circuit_state",
        "This process's circuit for each provider: 0 closed, 1 half-open (one trial decides), 2 open.",
        &[PROVIDER],
    ),
    gauge("verifyd_throttle_keys", "Keys held by this process's in-memory limiters.", &[]),
    gauge("verifyd_consumers_live", "Queue consumers of this process receiving now.", &[]),
    gauge("verifyd_consumers_expected", "Queue consumers this process started.", &[]),
    gauge(
        "verifyd_build_info",
        "1, labelled with this process's version and role.",
        &[("version", Values::Fixed(&[env!("CARGO_PKG_VERSION")])), ("role", Values::Fixed(&["serve", "worker"]))],
    ),
    histogram(
        "verifyd_provider_latency_seconds",
        "Time a provider took to answer a call, by outcome.",
        &[PROVIDER, CHANNEL, ("outcome", Values::Fixed(CALL_OUTCOMES))],
    ),
    histogram(
        "verifyd_webhook_latency_seconds",
        "Time a webhook receiver took to answer a POST, by outcome.",
        &[("outcome", Values::Fixed(WEBHOOK_OUTCOMES))],
    ),
    histogram(
        "verifyd_request_to_accepted_seconds",
        "From a code being asked for (create or resend) to a provider accepting its message.",
        &[CHANNEL],
    ),
    histogram(
        "verifyd_request_to_delivered_seconds",
        "From a code being asked for to the provider's receipt saying it was delivered.",
        &[CHANNEL, RECEIPT_PROVIDER],
    ),
];

/// Prometheus buckets (seconds) of provider latency: the overview's latency
/// buckets.
pub fn latency_buckets() -> Vec<f64> {
    super::stats::LATENCY_BOUNDS_MS.iter().map(|ms| f64::from(*ms) / 1000.0).collect()
}

/// Prometheus buckets (seconds) of request → accepted and request → delivered.
pub const JOURNEY_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// What label values exist in this process.
pub struct Known {
    pub providers: Vec<String>,
    pub queues: Vec<String>,
    pub role: &'static str,
}

struct TenantLabels {
    limit: usize,
    named: BTreeSet<String>,
}

fn tenants() -> &'static Mutex<TenantLabels> {
    static TENANTS: OnceLock<Mutex<TenantLabels>> = OnceLock::new();
    TENANTS.get_or_init(|| Mutex::new(TenantLabels { limit: 50, named: BTreeSet::new() }))
}

fn known() -> &'static Mutex<Option<Known>> {
    static KNOWN: OnceLock<Mutex<Option<Known>>> = OnceLock::new();
    KNOWN.get_or_init(|| Mutex::new(None))
}

/// The `tenant` label of a tenant: its name while fewer than the limit are
/// named (a newly named tenant gets its series registered at zero), else `other`.
pub fn tenant_label(name: &str) -> String {
    let mut t = tenants().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if t.named.contains(name) {
        return name.to_owned();
    }
    if t.named.len() >= t.limit {
        return "other".to_owned();
    }
    t.named.insert(name.to_owned());
    drop(t);
    if let Some(k) = known().lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
        register(k, Some(name));
    }
    name.to_owned()
}

fn values(v: Values, k: &Known, tenant: Option<&str>) -> Vec<String> {
    let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
    match v {
        Values::Channel => Channel::ALL.iter().map(|c| c.as_str().to_owned()).collect(),
        Values::Provider => k.providers.clone(),
        Values::Tenant => match tenant {
            Some(t) => vec![t.to_owned()],
            None => {
                let t = tenants().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                t.named.iter().cloned().chain(["other".to_owned()]).collect()
            }
        },
        Values::Queue => k.queues.clone(),
        Values::ErrorKind => ErrorKind::ALL.iter().map(|e| e.as_str().to_owned()).collect(),
        Values::DeadLetterReason => Reason::ALL.iter().map(|r| r.as_str().to_owned()).collect(),
        Values::ThrottleScope => Refusal::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
        Values::Fixed(list) => owned(list),
    }
}

/// Every combination of a metric's label values.
fn series(m: &Metric, k: &Known, tenant: Option<&str>) -> Vec<Vec<(&'static str, String)>> {
    let mut all: Vec<Vec<(&'static str, String)>> = vec![Vec::new()];
    for (label, v) in m.labels {
        let vals = values(*v, k, tenant);
        all = all
            .into_iter()
            .flat_map(|prefix| {
                vals.iter().map(move |val| {
                    let mut s = prefix.clone();
                    s.push((*label, val.clone()));
                    s
                })
            })
            .collect();
    }
    all
}

fn register(k: &Known, tenant: Option<&str>) {
    for m in METRICS {
        let tenanted = m.labels.iter().any(|(_, v)| matches!(v, Values::Tenant));
        if tenant.is_some() && !tenanted {
            continue;
        }
        for labels in series(m, k, tenant) {
            let labels: Vec<metrics::Label> = labels.into_iter().map(|(l, v)| metrics::Label::new(l, v)).collect();
            match m.kind {
                Kind::Counter => metrics::counter!(m.name, labels).increment(0),
                Kind::Gauge => {
                    // Build info is 1 for this process's own version and role only.
                    if m.name == "verifyd_build_info" {
                        if labels.iter().any(|l| l.key() == "role" && l.value() == k.role) {
                            metrics::gauge!(m.name, labels).set(1.0);
                        }
                    } else {
                        metrics::gauge!(m.name, labels).set(0.0);
                    }
                }
                Kind::Histogram => {
                    // Registering is enough for the exporter to render its buckets at zero.
                    let _ = metrics::histogram!(m.name, labels);
                }
            }
        }
    }
}

/// Describes every metric and registers every series at zero (call once per
/// process, after the recorder is installed). `tenants`: the tenants to name
/// first (those that exist), up to `limit`.
pub fn install(k: Known, tenants_at_start: &[String], limit: usize) {
    for m in METRICS {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
    {
        let mut t = tenants().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.limit = limit;
        for name in tenants_at_start.iter().take(limit) {
            t.named.insert(name.clone());
        }
    }
    register(&k, None);
    *known().lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(k);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prometheus_names_with_help() {
        let mut seen = BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("verifyd_"), "{}", m.name);
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert!(!m.help.is_empty() && m.help.ends_with('.'), "{}", m.name);
        }
    }

    #[test]
    fn series_are_every_combination_of_bounded_values() {
        let k = Known { providers: vec!["twilio".into(), "vonage".into()], queues: vec!["q".into()], role: "serve" };
        let dispatch = METRICS.iter().find(|m| m.name == "verifyd_dispatch_total").unwrap();
        let one_tenant = series(dispatch, &k, Some("acme"));
        assert_eq!(one_tenant.len(), 4 * 3, "channel × outcome for one tenant");
        let errors = METRICS.iter().find(|m| m.name == "verifyd_provider_errors_total").unwrap();
        assert_eq!(series(errors, &k, None).len(), 2 * ErrorKind::ALL.len());
    }
}
