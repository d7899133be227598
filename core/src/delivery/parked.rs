//! The parked-receipts actor: applies receipts that arrived before the
//! attempt they name was recorded (`receipts::apply` parks them), every
//! `interval`, and drops those no attempt claimed within
//! [`receipts::PARKED_FOR`]. Each is applied in the transaction that deletes
//! it, so several processes may sweep at once and a receipt is applied once.

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::receipts::{self, Said};
use crate::outbox::relay::OutboxRelay;
use crate::store::StoreError;

const BATCH: i64 = 100;

pub struct ParkedReceipts {
    pool: PgPool,
    relay: Addr<OutboxRelay>,
    fallback_to_voice: bool,
    interval: Duration,
}

impl ParkedReceipts {
    pub fn new(pool: PgPool, relay: Addr<OutboxRelay>, fallback_to_voice: bool, interval: Duration) -> Self {
        ParkedReceipts { pool, relay, fallback_to_voice, interval }
    }
}

impl Actor for ParkedReceipts {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        crate::infra::sweep::every(ctx, self.interval, "applying parked receipts", |act: &mut Self| {
            let (pool, relay, fallback) = (act.pool.clone(), act.relay.clone(), act.fallback_to_voice);
            async move { sweep(&pool, &relay, fallback, crate::timestamp::now()).await }
        });
    }
}

/// Applies the parked receipts whose attempt now exists, oldest first, and
/// drops the expired ones. Returns how many it applied.
pub async fn sweep(
    pool: &PgPool,
    relay: &Addr<OutboxRelay>,
    fallback_to_voice: bool,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let parked_for = chrono::Duration::from_std(receipts::PARKED_FOR).unwrap_or_else(|_| chrono::Duration::minutes(10));
    let dropped = sqlx::query("DELETE FROM parked_receipts WHERE received_at < $1")
        .bind(now - parked_for)
        .execute(pool)
        .await?
        .rows_affected();
    if dropped > 0 {
        metrics::counter!("verifyd_receipts_unmatched_total").increment(dropped);
        tracing::info!(dropped, "receipts for messages verifyd never recorded were dropped");
    }
    let due: Vec<Said> = sqlx::query_as(
        "SELECT p.provider, p.provider_message_id, p.status, p.error_code FROM parked_receipts p
         WHERE EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.provider = p.provider
                       AND a.provider_message_id = p.provider_message_id AND a.outcome = 'sent')
         ORDER BY p.received_at LIMIT $1",
    )
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    let mut applied = 0;
    for said in &due {
        if let Some(outcome) = receipts::apply_parked(pool, relay, said, fallback_to_voice, now).await? {
            applied += 1;
            tracing::info!(provider = said.provider, message_id = %said.message_id, status = said.status,
                outcome = ?outcome, "parked delivery receipt applied");
        }
    }
    Ok(applied)
}
