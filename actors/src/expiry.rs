//! The expiry actor: moves pending verifications past their deadline to
//! `expired` and announces it, in batches, every `interval`. Several processes
//! may sweep at once; `SKIP LOCKED` keeps them off each other's rows.

use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use sqlx::PgPool;

use crate::contract::{Event, EventKind};
use crate::outbox;
use crate::relay::{Kick, OutboxRelay};
use crate::store::StoreError;
use crate::store::verifications;

const BATCH: i64 = 500;

pub struct ExpiryActor {
    pool: PgPool,
    relay: Addr<OutboxRelay>,
    interval: Duration,
    sweeping: bool,
}

impl ExpiryActor {
    pub fn new(pool: PgPool, relay: Addr<OutboxRelay>, interval: Duration) -> Self {
        ExpiryActor {
            pool,
            relay,
            interval,
            sweeping: false,
        }
    }
}

impl Actor for ExpiryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| {
            if act.sweeping {
                return;
            }
            act.sweeping = true;
            let (pool, relay) = (act.pool.clone(), act.relay.clone());
            ctx.spawn(
                async move { sweep(&pool, &relay).await }
                    .into_actor(act)
                    .map(|result, act, _| {
                        act.sweeping = false;
                        if let Err(error) = result {
                            tracing::warn!(%error, "expiry sweep failed; next tick retries");
                        }
                    }),
            );
        });
    }
}

/// Expires everything due now; returns how many verifications it expired.
pub async fn sweep(pool: &PgPool, relay: &Addr<OutboxRelay>) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let now = Utc::now();
        let mut tx = pool.begin().await?;
        let expired = verifications::expire_due(&mut tx, now, BATCH).await?;
        for v in &expired {
            let event = Event::for_verification(EventKind::Expired, v, now)
                .status("expired")
                .with("attempts_left", v.state.attempts_left());
            outbox::event(&mut tx, &event, v.reply.as_ref()).await?;
        }
        tx.commit().await?;
        total += expired.len();
        if !expired.is_empty() {
            relay.do_send(Kick);
            metrics::counter!("verifyd_verifications_expired_total")
                .increment(expired.len() as u64);
        }
        if (expired.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}
