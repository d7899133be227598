//! The operations overview: one answer built from everything every process
//! knows. Queue depths come from the broker; how long the oldest message has
//! waited, from the marks consumers leave; dead letters, delivery statistics,
//! conversion and pumping blocks from PostgreSQL; circuits from each process's
//! latest report. Any process (or the CLI) gives the same overview.
//!
//! It costs a handful of small queries and one passive declare per queue,
//! nothing on the send path.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::ids::View;
use crate::infra::amqp::Topology;
use crate::store::attempts::{self, Recorded};
use crate::store::{StoreError, dead_letters, processes};
use crate::telemetry::stats::{self, ConversionRow, ProviderWindows, Window};

/// What the overview is asked for.
pub struct Inputs<'a> {
    pub pool: &'a PgPool,
    /// The broker, for queue depths; `None` leaves them out.
    pub amqp: Option<&'a lapin::Connection>,
    pub topology: &'a Topology,
    pub view: &'a View,
    /// Providers this deployment routes to, and the paced ones' rates.
    pub providers: Vec<String>,
    pub paced: HashMap<String, u32>,
    /// How often processes report: one not heard from for three of these is stale.
    pub report_interval: Duration,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overview {
    #[serde(with = "crate::timestamp")]
    pub generated_at: DateTime<Utc>,
    /// `deployment`, or the tenant an `ops` key of a tenant sees.
    pub view: String,
    pub queues: Vec<QueueHealth>,
    pub outbox: OutboxHealth,
    pub webhooks: WebhooksHealth,
    pub dead_letters: LettersHealth,
    pub providers: Vec<ProviderHealth>,
    pub conversion: Vec<ConversionRow>,
    pub blocked_prefixes: Vec<BlockedPrefix>,
    /// The latest failed delivery attempts, newest first.
    pub recent_failures: Vec<Recorded>,
    pub processes: Vec<ProcessHealth>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueHealth {
    pub queue: String,
    /// Messages ready for delivery (not counting those being handled).
    pub messages: u32,
    pub consumers: u32,
    /// How long the oldest waiting message has waited, at most: 0 when none
    /// waits; absent when no consumer has ever taken a timestamped message.
    pub oldest_age_secs: Option<f64>,
    /// The queue does not exist on the broker (never declared, or deleted).
    pub missing: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutboxHealth {
    /// Rows committed and not yet confirmed by the broker.
    pub rows: i64,
    pub oldest_age_secs: Option<f64>,
}

/// Webhook deliveries not yet delivered or given up on: on their way, waiting
/// to be retried, or behind an earlier event of the same verification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhooksHealth {
    pub pending: i64,
    pub oldest_pending_age_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LettersHealth {
    /// Dead letters waiting for an operator.
    pub waiting: i64,
    #[schema(value_type = Object)]
    pub by_reason: BTreeMap<String, i64>,
    #[serde(with = "crate::timestamp::option")]
    pub oldest_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderHealth {
    pub provider: String,
    #[serde(rename = "5m")]
    pub last_5m: Window,
    #[serde(rename = "60m")]
    pub last_60m: Window,
    /// Each running process's circuit for this provider.
    pub circuits: Vec<ProcessCircuit>,
    pub pacing: Option<Pacing>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProcessCircuit {
    pub process: String,
    pub host: String,
    pub role: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    #[serde(with = "crate::timestamp::option")]
    pub open_until: Option<DateTime<Utc>>,
    pub failures: u32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pacing {
    /// `providers.tps`: messages per second over all processes.
    pub tps: u32,
    /// Calls per second over the last minute.
    pub used_per_sec: f64,
    /// used_per_sec ÷ tps.
    pub use_ratio: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct BlockedPrefix {
    pub tenant: String,
    pub prefix: String,
    pub country: Option<String>,
    #[serde(with = "crate::timestamp")]
    pub blocked_at: DateTime<Utc>,
    #[serde(with = "crate::timestamp")]
    pub blocked_until: DateTime<Utc>,
    pub sent: i32,
    pub approved: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProcessHealth {
    pub id: String,
    pub role: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    #[serde(with = "crate::timestamp")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "crate::timestamp")]
    pub seen_at: DateTime<Utc>,
    /// `running`, `stale` (no report for three intervals: hung or killed) or `stopped`.
    pub state: String,
    pub consumers: processes::Consumers,
}

fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> f64 {
    ((now - then).num_milliseconds().max(0) as f64) / 1000.0
}

#[derive(Debug, thiserror::Error)]
pub enum OverviewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
}

impl From<sqlx::Error> for OverviewError {
    fn from(e: sqlx::Error) -> Self {
        OverviewError::Store(StoreError::Db(e))
    }
}

/// Every queue of the deployment: depth and consumers from the broker (passive
/// declares), the oldest waiting age from the consumers' marks. What the
/// overview, `verifyd queues`, `/v1/ops/queues` and the gauges show.
pub async fn queues(
    pool: &PgPool,
    amqp: &lapin::Connection,
    topology: &Topology,
    now: DateTime<Utc>,
) -> Result<Vec<QueueHealth>, OverviewError> {
    let marks: HashMap<String, DateTime<Utc>> = processes::marks(pool).await?.into_iter().collect();
    Ok(topology
        .depths(amqp)
        .await?
        .into_iter()
        .map(|(queue, messages, consumers)| {
            let missing = queue.ends_with(" (missing)");
            let oldest_age_secs = match (messages, marks.get(&queue)) {
                (0, _) => Some(0.0),
                (_, Some(mark)) => Some(age(now, *mark)),
                (_, None) => None,
            };
            QueueHealth { queue, messages, consumers, oldest_age_secs, missing }
        })
        .collect())
}

pub async fn build(i: Inputs<'_>) -> Result<Overview, OverviewError> {
    let (pool, view, now) = (i.pool, i.view, i.now);
    let queues = match i.amqp {
        Some(amqp) => queues(pool, amqp, i.topology, now).await?,
        None => Vec::new(),
    };
    let (rows, oldest): (i64, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT count(*), min(created_at) FROM outbox").fetch_one(pool).await?;
    let outbox = OutboxHealth { rows, oldest_age_secs: oldest.map(|t| age(now, t)) };
    let (pending, oldest) = crate::webhooks::store::backlog(pool, view.tenant_id()).await?;
    let webhooks = WebhooksHealth { pending, oldest_pending_age_secs: oldest.map(|t| age(now, t)) };

    let waiting = dead_letters::waiting(pool, view).await?;
    let dead_letters = LettersHealth {
        waiting: waiting.iter().map(|(_, n, _)| n).sum(),
        by_reason: waiting.iter().map(|(r, n, _)| (r.as_str().to_owned(), *n)).collect(),
        oldest_at: waiting.iter().map(|(_, _, at)| *at).min(),
    };

    let seen = processes::seen_since(pool, now - TimeDelta::hours(1)).await?;
    let stale_after = TimeDelta::from_std(i.report_interval * 3).unwrap_or(TimeDelta::seconds(15));
    let state = |p: &processes::Seen| match p.stopped_at {
        Some(_) => "stopped",
        None if now - p.seen_at > stale_after => "stale",
        None => "running",
    };
    let windows: HashMap<String, ProviderWindows> =
        stats::providers(pool, view, now).await?.into_iter().map(|w| (w.provider.clone(), w)).collect();
    let mut names: Vec<String> = i.providers.clone();
    names.extend(windows.keys().cloned());
    for p in &seen {
        names.extend(p.report.circuits.iter().map(|c| c.provider.clone()));
    }
    names.sort();
    names.dedup();
    let providers = names
        .into_iter()
        .map(|name| {
            let w = windows.get(&name);
            let circuits = seen
                .iter()
                .filter(|p| state(p) == "running")
                .flat_map(|p| {
                    p.report.circuits.iter().filter(|c| c.provider == name).map(|c| ProcessCircuit {
                        process: p.id.to_string(),
                        host: p.host.clone(),
                        role: p.role.clone(),
                        state: c.state.clone(),
                        open_until: c.open_until,
                        failures: c.failures,
                    })
                })
                .collect();
            let rate = w.map_or(0.0, |w| w.rate_per_sec);
            ProviderHealth {
                last_5m: w.map(|w| w.last_5m.clone()).unwrap_or_default(),
                last_60m: w.map(|w| w.last_60m.clone()).unwrap_or_default(),
                circuits,
                pacing: i.paced.get(&name).map(|tps| Pacing {
                    tps: *tps,
                    used_per_sec: rate,
                    use_ratio: rate / f64::from((*tps).max(1)),
                }),
                provider: name,
            }
        })
        .collect();

    let blocked_prefixes = blocks(pool, view, now).await?;
    let recent_failures = attempts::recent_failures(pool, view, 10).await?;
    let processes = seen
        .iter()
        .map(|p| ProcessHealth {
            id: p.id.to_string(),
            role: p.role.clone(),
            host: p.host.clone(),
            pid: p.pid,
            version: p.version.clone(),
            started_at: p.started_at,
            seen_at: p.seen_at,
            state: state(p).to_owned(),
            consumers: p.report.consumers.clone(),
        })
        .collect();
    Ok(Overview {
        generated_at: now,
        view: view.tenant_name().map_or_else(|| "deployment".to_owned(), str::to_owned),
        queues,
        outbox,
        webhooks,
        dead_letters,
        providers,
        conversion: stats::conversion(pool, view, now).await?,
        blocked_prefixes,
        recent_failures,
        processes,
    })
}

/// Prefix blocks in force, newest first.
pub async fn blocks(pool: &PgPool, view: &View, now: DateTime<Utc>) -> Result<Vec<BlockedPrefix>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.name AS tenant, b.prefix, b.country, b.blocked_at, b.blocked_until, b.sent, b.approved
         FROM prefix_blocks b JOIN tenants t ON t.id = b.tenant_id
         WHERE b.lifted_at IS NULL AND b.blocked_until > $2 AND ($1::uuid IS NULL OR b.tenant_id = $1)
         ORDER BY b.blocked_at DESC, b.prefix LIMIT 200",
    )
    .bind(view.tenant_id())
    .bind(now)
    .fetch_all(pool)
    .await
}
