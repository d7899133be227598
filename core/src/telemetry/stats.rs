//! Delivery statistics every process adds up: provider calls (with error kinds
//! and a latency histogram) and conversion (verifications started and approved),
//! per minute. Each process counts in memory (a map lookup under a mutex per
//! event, nothing on the wire) and the reporter adds its counts to the
//! per-minute rows in PostgreSQL every report interval, so the overview that
//! any process answers covers every process. A process that dies loses at
//! most one interval of counts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;
use verifyd_providers::ErrorKind;
use verifyd_providers::domain::Channel;

use crate::ids::View;

/// Upper bounds of the latency buckets, in milliseconds; one more bucket holds
/// everything slower. The same bounds, in seconds, are the Prometheus buckets
/// of `verifyd_provider_latency_seconds`.
pub const LATENCY_BOUNDS_MS: [u32; 9] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000];
const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;
const KINDS: usize = ErrorKind::ALL.len();

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CallKey {
    minute: DateTime<Utc>,
    tenant_id: Uuid,
    provider: String,
    channel: Channel,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Calls {
    calls: u32,
    accepted: u32,
    errors: [u32; KINDS],
    latency: [u32; BUCKETS],
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConversionKey {
    minute: DateTime<Utc>,
    tenant_id: Uuid,
    channel: Channel,
    country: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Conversion {
    sent: u32,
    approved: u32,
}

/// Counts not yet written to PostgreSQL.
#[derive(Debug, Default)]
pub struct Pending {
    calls: HashMap<CallKey, Calls>,
    conversion: HashMap<ConversionKey, Conversion>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.conversion.is_empty()
    }

    /// Puts back counts a failed write could not store, dropping those older
    /// than any window reads.
    fn merge(&mut self, other: Pending, keep_after: DateTime<Utc>) {
        for (k, v) in other.calls.into_iter().filter(|(k, _)| k.minute >= keep_after) {
            let into = self.calls.entry(k).or_default();
            into.calls += v.calls;
            into.accepted += v.accepted;
            add(&mut into.errors, &v.errors);
            add(&mut into.latency, &v.latency);
        }
        for (k, v) in other.conversion.into_iter().filter(|(k, _)| k.minute >= keep_after) {
            let into = self.conversion.entry(k).or_default();
            into.sent += v.sent;
            into.approved += v.approved;
        }
    }
}

fn add<const N: usize>(into: &mut [u32; N], from: &[u32; N]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

fn minute(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

fn bucket(latency: Duration) -> usize {
    let ms = latency.as_millis();
    LATENCY_BOUNDS_MS.iter().position(|b| ms <= u128::from(*b)).unwrap_or(BUCKETS - 1)
}

/// This process's counts since the last write.
#[derive(Debug, Default)]
pub struct Stats {
    pending: Mutex<Pending>,
}

impl Stats {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One call to a provider: accepted (`Ok`) or failed with a kind.
    pub fn record_call(
        &self,
        at: DateTime<Utc>,
        tenant_id: Uuid,
        provider: &str,
        channel: Channel,
        result: Result<(), ErrorKind>,
        latency: Duration,
    ) {
        let key = CallKey { minute: minute(at), tenant_id, provider: provider.to_owned(), channel };
        let mut pending = self.pending();
        let calls = pending.calls.entry(key).or_default();
        calls.calls += 1;
        match result {
            Ok(()) => calls.accepted += 1,
            Err(kind) => calls.errors[kind.index()] += 1,
        }
        calls.latency[bucket(latency)] += 1;
    }

    /// A verification started (its first code asked for).
    pub fn record_started(&self, at: DateTime<Utc>, tenant_id: Uuid, channel: Channel, country: Option<&str>) {
        self.conversion(at, tenant_id, channel, country, |c| c.sent += 1);
    }

    /// A verification approved.
    pub fn record_approved(&self, at: DateTime<Utc>, tenant_id: Uuid, channel: Channel, country: Option<&str>) {
        self.conversion(at, tenant_id, channel, country, |c| c.approved += 1);
    }

    fn conversion(
        &self,
        at: DateTime<Utc>,
        tenant_id: Uuid,
        channel: Channel,
        country: Option<&str>,
        count: impl FnOnce(&mut Conversion),
    ) {
        let key = ConversionKey { minute: minute(at), tenant_id, channel, country: country.unwrap_or("").to_owned() };
        count(self.pending().conversion.entry(key).or_default());
    }

    /// Takes the counts to write.
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending())
    }

    /// Writes `pending` into the per-minute rows (adding to what other
    /// processes wrote). On failure the counts are kept for the next try.
    pub async fn flush(&self, pool: &PgPool, pending: Pending, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        if pending.is_empty() {
            return Ok(());
        }
        match write(pool, &pending).await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.pending().merge(pending, now - TimeDelta::hours(1));
                Err(error)
            }
        }
    }
}

async fn write(pool: &PgPool, pending: &Pending) -> Result<(), sqlx::Error> {
    let calls: Vec<serde_json::Value> = pending
        .calls
        .iter()
        .map(|(k, v)| {
            serde_json::json!({
                "minute": k.minute, "tenant_id": k.tenant_id, "provider": k.provider, "channel": k.channel.as_str(),
                "calls": v.calls, "accepted": v.accepted, "errors": v.errors, "latency": v.latency,
            })
        })
        .collect();
    let conversion: Vec<serde_json::Value> = pending
        .conversion
        .iter()
        .map(|(k, v)| {
            serde_json::json!({
                "minute": k.minute, "tenant_id": k.tenant_id, "channel": k.channel.as_str(), "country": k.country,
                "sent": v.sent, "approved": v.approved,
            })
        })
        .collect();
    let mut tx = pool.begin().await?;
    if !calls.is_empty() {
        sqlx::query(
            "INSERT INTO provider_minutes AS p (minute, tenant_id, provider, channel, calls, accepted, errors, latency)
             SELECT (r->>'minute')::timestamptz, (r->>'tenant_id')::uuid, r->>'provider', r->>'channel',
                    (r->>'calls')::integer, (r->>'accepted')::integer,
                    ARRAY(SELECT e::integer FROM jsonb_array_elements_text(r->'errors') e),
                    ARRAY(SELECT l::integer FROM jsonb_array_elements_text(r->'latency') l)
             FROM jsonb_array_elements($1) AS r
             ON CONFLICT (minute, tenant_id, provider, channel) DO UPDATE SET
                calls = p.calls + EXCLUDED.calls,
                accepted = p.accepted + EXCLUDED.accepted,
                errors = verifyd_merge_counts(p.errors, EXCLUDED.errors),
                latency = verifyd_merge_counts(p.latency, EXCLUDED.latency)",
        )
        .bind(serde_json::Value::Array(calls))
        .execute(&mut *tx)
        .await?;
    }
    if !conversion.is_empty() {
        sqlx::query(
            "INSERT INTO conversion_minutes AS c (minute, tenant_id, channel, country, sent, approved)
             SELECT (r->>'minute')::timestamptz, (r->>'tenant_id')::uuid, r->>'channel', r->>'country',
                    (r->>'sent')::integer, (r->>'approved')::integer
             FROM jsonb_array_elements($1) AS r
             ON CONFLICT (minute, tenant_id, channel, country) DO UPDATE SET
                sent = c.sent + EXCLUDED.sent, approved = c.approved + EXCLUDED.approved",
        )
        .bind(serde_json::Value::Array(conversion))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Forgets minutes no window reads any more.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM provider_minutes WHERE minute < $1").bind(before).execute(pool).await?;
    sqlx::query("DELETE FROM conversion_minutes WHERE minute < $1").bind(before).execute(pool).await?;
    Ok(())
}

/// A provider over one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Window {
    /// Calls made to the provider.
    pub sends: i64,
    pub accepted: i64,
    /// accepted ÷ sends; absent without sends.
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Failed calls by kind (only kinds that occurred).
    #[schema(value_type = Object)]
    pub errors: std::collections::BTreeMap<String, i64>,
}

impl Window {
    fn from_counts(sends: i64, accepted: i64, errors: &[i64], latency: &[i64]) -> Window {
        let errors = ErrorKind::ALL
            .iter()
            .zip(errors)
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.as_str().to_owned(), *n))
            .collect();
        Window {
            sends,
            accepted,
            success_rate: (sends > 0).then(|| accepted as f64 / sends as f64),
            p50_ms: quantile(latency, 0.5),
            p95_ms: quantile(latency, 0.95),
            errors,
        }
    }
}

/// The `q` quantile of a latency histogram, interpolated within its bucket as
/// Prometheus' `histogram_quantile` does; the open last bucket answers its
/// lower bound.
pub fn quantile(counts: &[i64], q: f64) -> Option<f64> {
    let total: i64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0i64;
    for (i, n) in counts.iter().enumerate() {
        if *n > 0 && (seen + n) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { f64::from(LATENCY_BOUNDS_MS[i - 1]) };
            let Some(upper) = LATENCY_BOUNDS_MS.get(i).map(|b| f64::from(*b)) else {
                return Some(lower);
            };
            let within = (rank - seen as f64) / *n as f64;
            return Some(lower + (upper - lower) * within);
        }
        seen += n;
    }
    LATENCY_BOUNDS_MS.last().map(|b| f64::from(*b))
}

/// A provider's calls over the last 5 and 60 minutes (whole minutes, the
/// current one included), for one channel or all.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderWindows {
    pub provider: String,
    #[serde(rename = "5m")]
    pub last_5m: Window,
    #[serde(rename = "60m")]
    pub last_60m: Window,
    /// Calls in the last whole minute and the current one, per second.
    pub rate_per_sec: f64,
}

#[derive(sqlx::FromRow)]
struct ProviderRow {
    provider: String,
    sends_5: i64,
    accepted_5: i64,
    errors_5: Option<Vec<i64>>,
    latency_5: Option<Vec<i64>>,
    sends_60: i64,
    accepted_60: i64,
    errors_60: Option<Vec<i64>>,
    latency_60: Option<Vec<i64>>,
    recent: i64,
    recent_secs: f64,
}

pub async fn providers(pool: &PgPool, view: &View, now: DateTime<Utc>) -> Result<Vec<ProviderWindows>, sqlx::Error> {
    let this = minute(now);
    let rows: Vec<ProviderRow> = sqlx::query_as(
        "SELECT provider,
            coalesce(sum(calls) FILTER (WHERE minute > $2 - interval '5 minutes'), 0)::bigint AS sends_5,
            coalesce(sum(accepted) FILTER (WHERE minute > $2 - interval '5 minutes'), 0)::bigint AS accepted_5,
            verifyd_sum_counts(errors) FILTER (WHERE minute > $2 - interval '5 minutes') AS errors_5,
            verifyd_sum_counts(latency) FILTER (WHERE minute > $2 - interval '5 minutes') AS latency_5,
            coalesce(sum(calls), 0)::bigint AS sends_60,
            coalesce(sum(accepted), 0)::bigint AS accepted_60,
            verifyd_sum_counts(errors) AS errors_60,
            verifyd_sum_counts(latency) AS latency_60,
            coalesce(sum(calls) FILTER (WHERE minute >= $2 - interval '1 minute'), 0)::bigint AS recent,
            extract(epoch FROM $3 - ($2 - interval '1 minute'))::float8 AS recent_secs
         FROM provider_minutes
         WHERE minute > $2 - interval '60 minutes' AND ($1::uuid IS NULL OR tenant_id = $1)
         GROUP BY provider ORDER BY provider",
    )
    .bind(view.tenant_id())
    .bind(this)
    .bind(now)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let empty = Vec::new();
            ProviderWindows {
                last_5m: Window::from_counts(
                    r.sends_5,
                    r.accepted_5,
                    r.errors_5.as_ref().unwrap_or(&empty),
                    r.latency_5.as_ref().unwrap_or(&empty),
                ),
                last_60m: Window::from_counts(
                    r.sends_60,
                    r.accepted_60,
                    r.errors_60.as_ref().unwrap_or(&empty),
                    r.latency_60.as_ref().unwrap_or(&empty),
                ),
                rate_per_sec: if r.recent_secs > 0.0 { r.recent as f64 / r.recent_secs } else { 0.0 },
                provider: r.provider,
            }
        })
        .collect())
}

/// Verifications started and approved over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Converted {
    pub sent: i64,
    pub approved: i64,
    /// approved ÷ sent; absent without sends.
    pub rate: Option<f64>,
}

impl Converted {
    fn new(sent: i64, approved: i64) -> Self {
        Converted { sent, approved, rate: (sent > 0).then(|| approved as f64 / sent as f64) }
    }
}

/// Conversion per channel and destination country.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversionRow {
    pub channel: String,
    /// ISO 3166-1 alpha-2; absent for numbers outside any country.
    pub country: Option<String>,
    #[serde(rename = "5m")]
    pub last_5m: Converted,
    #[serde(rename = "60m")]
    pub last_60m: Converted,
}

pub async fn conversion(pool: &PgPool, view: &View, now: DateTime<Utc>) -> Result<Vec<ConversionRow>, sqlx::Error> {
    let rows: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT channel, country,
            coalesce(sum(sent) FILTER (WHERE minute > $2 - interval '5 minutes'), 0)::bigint,
            coalesce(sum(approved) FILTER (WHERE minute > $2 - interval '5 minutes'), 0)::bigint,
            coalesce(sum(sent), 0)::bigint, coalesce(sum(approved), 0)::bigint
         FROM conversion_minutes
         WHERE minute > $2 - interval '60 minutes' AND ($1::uuid IS NULL OR tenant_id = $1)
         GROUP BY channel, country ORDER BY sum(sent) DESC, channel, country",
    )
    .bind(view.tenant_id())
    .bind(minute(now))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(channel, country, s5, a5, s60, a60)| ConversionRow {
            channel,
            country: (!country.is_empty()).then_some(country),
            last_5m: Converted::new(s5, a5),
            last_60m: Converted::new(s60, a60),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_bucket() {
        assert_eq!(bucket(Duration::from_millis(0)), 0);
        assert_eq!(bucket(Duration::from_millis(50)), 0);
        assert_eq!(bucket(Duration::from_millis(51)), 1);
        assert_eq!(bucket(Duration::from_secs(30)), 8);
        assert_eq!(bucket(Duration::from_secs(31)), 9);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let mut counts = [0i64; BUCKETS];
        assert_eq!(quantile(&counts, 0.5), None);
        // 100 calls between 50 and 100 ms: the median is halfway.
        counts[1] = 100;
        assert_eq!(quantile(&counts, 0.5), Some(75.0));
        assert_eq!(quantile(&counts, 0.95), Some(97.5));
        // 90 fast and 10 in the open bucket: p95 answers the last bound.
        let mut counts = [0i64; BUCKETS];
        counts[0] = 90;
        counts[BUCKETS - 1] = 10;
        assert_eq!(quantile(&counts, 0.5).map(f64::round), Some(28.0));
        assert_eq!(quantile(&counts, 0.95), Some(30_000.0));
    }

    #[test]
    fn counts_add_up_per_minute_and_kind() {
        let stats = Stats::default();
        let at = DateTime::parse_from_rfc3339("2026-12-02T10:00:30Z").unwrap().to_utc();
        let tenant = Uuid::new_v4();
        stats.record_call(at, tenant, "twilio", Channel::Sms, Ok(()), Duration::from_millis(80));
        stats.record_call(at, tenant, "twilio", Channel::Sms, Err(ErrorKind::Timeout), Duration::from_secs(10));
        stats.record_started(at, tenant, Channel::Sms, Some("GB"));
        stats.record_approved(at, tenant, Channel::Sms, Some("GB"));
        let pending = stats.take();
        assert!(stats.take().is_empty(), "taken once");
        let calls = pending.calls.values().next().unwrap();
        assert_eq!((calls.calls, calls.accepted), (2, 1));
        assert_eq!(calls.errors[ErrorKind::Timeout.index()], 1);
        assert_eq!(calls.latency[1] + calls.latency[7], 2);
        let key = pending.calls.keys().next().unwrap();
        assert_eq!(key.minute.to_rfc3339(), "2026-12-02T10:00:00+00:00");
        assert_eq!(pending.conversion.values().next(), Some(&Conversion { sent: 1, approved: 1 }));

        // A failed write puts counts back, except minutes no window reads.
        let mut kept = Pending::default();
        kept.merge(pending, at + TimeDelta::hours(2));
        assert!(kept.is_empty());
    }
}
