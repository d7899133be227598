//! The reporter actor: owns this process's report timer. Every report interval
//! (and at once when a circuit opens or closes) it writes what only this
//! process knows — its consumers, what it took from each queue, its circuits —
//! to `processes`, adds its delivery counts to the per-minute statistics, and
//! now and then prunes what no window reads any more. On a graceful stop it
//! writes a last report and marks the process stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use crate::delivery::breaker::Circuit;
use crate::delivery::routing::Routes;
use crate::infra::consumer::ConsumerHealth;
use crate::store::processes::{self, CircuitReport, Consumers, Identity, Report, Taken};
use crate::store::{dead_letters, sessions};
pub use crate::telemetry::ReportNow;
use crate::telemetry::stats::Stats;

/// How often a process prunes old statistics, stale processes, expired console
/// sessions and long-resolved dead letters.
const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// Resolved dead letters are kept this long.
const RESOLVED_LETTERS_KEPT: TimeDelta = TimeDelta::days(30);
/// How long a finished webhook delivery stays listed (`GET /v1/webhooks/{id}/deliveries`).
const FINISHED_WEBHOOKS_KEPT: TimeDelta = TimeDelta::days(7);

pub struct ProcessReporter {
    pool: PgPool,
    identity: Identity,
    health: Arc<ConsumerHealth>,
    routes: Arc<Routes>,
    stats: Arc<Stats>,
    interval: Duration,
    last_prune: Option<Instant>,
    writing: bool,
    again: bool,
}

impl ProcessReporter {
    pub fn new(
        pool: PgPool,
        identity: Identity,
        health: Arc<ConsumerHealth>,
        routes: Arc<Routes>,
        stats: Arc<Stats>,
        interval: Duration,
    ) -> Self {
        ProcessReporter {
            pool,
            identity,
            health,
            routes,
            stats,
            interval,
            last_prune: None,
            writing: false,
            again: false,
        }
    }
}

/// This process's report as of now. Also sets the circuit gauges.
pub fn snapshot(health: &ConsumerHealth, routes: &Routes, now: DateTime<Utc>) -> Report {
    let (live, expected) = health.counts();
    let instant = Instant::now();
    let circuits = routes
        .breakers()
        .map(|(provider, breaker)| {
            let circuit = breaker.circuit(instant);
            metrics::gauge!("verifyd_provider_circuit_state", "provider" => provider.to_owned()).set(circuit.gauge());
            let (open_until, failures) = match circuit {
                Circuit::Open { reopens_in } => (Some(now + TimeDelta::from_std(reopens_in).unwrap_or_default()), 0),
                Circuit::Closed { failures } => (None, failures),
                Circuit::HalfOpen => (None, 0),
            };
            CircuitReport { provider: provider.to_owned(), state: circuit.as_str().to_owned(), open_until, failures }
        })
        .collect();
    let queues = health
        .marks()
        .into_iter()
        .map(|(queue, mark)| Taken {
            queue,
            taken: mark.taken,
            newest_published: mark.newest_published,
            last_taken: mark.last_taken,
        })
        .collect();
    Report {
        consumers: Consumers { live, expected, lost: health.lost(), in_flight: health.in_flight() },
        queues,
        circuits,
    }
}

#[derive(Message)]
#[rtype(result = "()")]
/// The process is stopping: a last report, then marked stopped.
pub struct Stopping;

impl Actor for ProcessReporter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.notify(ReportNow);
        ctx.run_interval(self.interval, |_, ctx| ctx.notify(ReportNow));
    }
}

impl Handler<ReportNow> for ProcessReporter {
    type Result = ();

    fn handle(&mut self, _: ReportNow, ctx: &mut Self::Context) {
        if self.writing {
            self.again = true;
            return;
        }
        self.writing = true;
        let prune = self.last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        if prune {
            self.last_prune = Some(Instant::now());
        }
        let (pool, identity, stats) = (self.pool.clone(), self.identity.clone(), self.stats.clone());
        let now = crate::timestamp::now();
        let report = snapshot(&self.health, &self.routes, now);
        let work = async move {
            let pending = stats.take();
            if let Err(error) = stats.flush(&pool, pending, now).await {
                tracing::warn!(%error, "could not write delivery statistics; kept for the next report");
            }
            if let Err(error) = processes::report(&pool, &identity, &report, now).await {
                tracing::warn!(%error, "could not write this process's report");
            }
            if prune {
                prune_old(&pool, now).await;
            }
        };
        ctx.spawn(work.into_actor(self).map(|(), act, ctx| {
            act.writing = false;
            if std::mem::take(&mut act.again) {
                ctx.notify(ReportNow);
            }
        }));
    }
}

impl Handler<Stopping> for ProcessReporter {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Stopping, _: &mut Self::Context) -> Self::Result {
        let (pool, identity, stats) = (self.pool.clone(), self.identity.clone(), self.stats.clone());
        let now = crate::timestamp::now();
        let report = snapshot(&self.health, &self.routes, now);
        Box::pin(
            async move {
                let _ = stats.flush(&pool, stats.take(), now).await;
                let written = processes::report(&pool, &identity, &report, now).await;
                if let Err(error) = written.and(processes::stopped(&pool, identity.id, now).await) {
                    tracing::warn!(%error, "could not mark this process stopped");
                }
            }
            .into_actor(self),
        )
    }
}

async fn prune_old(pool: &PgPool, now: DateTime<Utc>) {
    let results = [
        crate::telemetry::stats::prune(pool, now - TimeDelta::hours(2)).await,
        processes::prune(pool, now - TimeDelta::hours(24)).await,
        sessions::prune(pool, now).await,
        dead_letters::prune(pool, now - RESOLVED_LETTERS_KEPT).await.map(|_| ()),
        crate::webhooks::store::prune(pool, now - FINISHED_WEBHOOKS_KEPT).await.map(|_| ()),
    ];
    for error in results.into_iter().filter_map(Result::err) {
        tracing::warn!(%error, "pruning operations data failed; tried again later");
    }
}

/// This host's name, for the processes list.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
