//! The expiry actor: moves pending verifications past their deadline to
//! `expired` and announces it, and expires unanswered challenges, in batches, every `interval`. Several processes
//! may sweep at once; `SKIP LOCKED` keeps them off each other's rows.

use std::time::Duration;

use actix::prelude::*;
use sqlx::PgPool;

use crate::outbox;
use crate::outbox::contract::EventKind;
use crate::outbox::relay::{self, OutboxRelay};
use crate::store::StoreError;
use crate::store::{challenges, verifications};

const BATCH: i64 = 500;
/// Pruning old send records and job claims is housekeeping: once a minute is
/// plenty, and it keeps two DELETEs per second per process off the database.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub struct ExpiryActor {
    pool: PgPool,
    relay: Addr<OutboxRelay>,
    interval: Duration,
    last_prune: Option<std::time::Instant>,
}

impl ExpiryActor {
    pub fn new(pool: PgPool, relay: Addr<OutboxRelay>, interval: Duration) -> Self {
        ExpiryActor { pool, relay, interval, last_prune: None }
    }
}

impl Actor for ExpiryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        crate::infra::sweep::every(ctx, self.interval, "expiry sweep", |act: &mut Self| {
            let due = act.last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
            if due {
                act.last_prune = Some(std::time::Instant::now());
            }
            let (pool, relay) = (act.pool.clone(), act.relay.clone());
            async move {
                let expired = sweep(&pool, &relay).await?;
                if due {
                    prune(&pool).await?;
                }
                Ok::<_, StoreError>(expired)
            }
        });
    }
}

/// Deletes what no duplicate check or limit can need any more: job claims
/// older than a day (any copy of such a job finds its verification long
/// expired and is skipped), old challenges, full throttle buckets. A bounded
/// batch per tick keeps each statement short.
pub async fn prune(pool: &PgPool) -> Result<(), StoreError> {
    let now = crate::timestamp::now();
    sqlx::query(
        "DELETE FROM dispatch_claims WHERE job_id IN (
            SELECT job_id FROM dispatch_claims WHERE created_at < $1 LIMIT 5000)",
    )
    .bind(now - chrono::Duration::days(1))
    .execute(pool)
    .await?;
    challenges::prune(pool, now - chrono::Duration::days(1)).await?;
    crate::limits::prune(pool, now).await?;
    Ok(())
}

/// Expires everything due now; returns how many verifications it expired.
pub async fn sweep(pool: &PgPool, relay: &Addr<OutboxRelay>) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let now = crate::timestamp::now();
        let mut tx = pool.begin().await?;
        let expired = verifications::expire_due(&mut tx, now, BATCH).await?;
        for v in &expired {
            let event =
                v.event(EventKind::Expired, now).status("expired").with("attempts_left", v.state.attempts_left());
            outbox::event(&mut tx, &event, v.reply.as_ref()).await?;
        }
        let challenges_expired = challenges::expire_due(&mut tx, now, BATCH).await?;
        relay::commit_if(tx, relay, !expired.is_empty()).await?;
        total += expired.len();
        if !expired.is_empty() {
            metrics::counter!("verifyd_verifications_expired_total").increment(expired.len() as u64);
        }
        if (expired.len() as i64) < BATCH && (challenges_expired as i64) < BATCH {
            return Ok(total);
        }
    }
}
