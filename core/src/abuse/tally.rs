//! The pumping guard's counts, written in batches. Every send to a prefix
//! adds to one `prefix_stats` row (per tenant, prefix and minute); written in
//! each send's own transaction, that row made every send to the prefix wait
//! for the one before it to commit (a hot row: one create per WAL flush, about
//! 250 a second on one disk). The guard only judges minutes whose sends are
//! all older than its grace period (60 s by default), so a count need not be
//! in PostgreSQL before then: this actor owns the counts not yet written and
//! adds them to their rows in one statement every [`FLUSH_EVERY`].
//!
//! What that costs: a `kill -9` forgets the counts of the last flush interval
//! at most (the guard is that much looser); a count whose transaction then
//! rolls back stays counted. Decision 184. With `grace_secs = 0` the guard
//! judges the current minute, so `abuse` counts in the transaction instead.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::pumping::Prefix;

/// How often pending counts are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Cell {
    tenant_id: Uuid,
    prefix: String,
    minute: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    sent: i32,
    approved: i32,
}

#[derive(Message)]
#[rtype(result = "()")]
/// One send (`sent`) or approval (`approved`) in `minute` (the send's minute).
pub struct Count {
    pub tenant_id: Uuid,
    pub prefix: Prefix,
    pub minute: DateTime<Utc>,
    pub sent: i32,
    pub approved: i32,
}

#[derive(Message)]
#[rtype(result = "()")]
/// This process blocked or lifted the prefix and cleared its rows: the counts
/// it holds for it go too (they led to the block).
pub struct Clear {
    pub tenant_id: Uuid,
    pub prefix: Prefix,
}

#[derive(Message)]
#[rtype(result = "()")]
/// Write what is pending now; answers once it is written (a graceful stop).
pub struct Flush;

pub struct PrefixTally {
    pool: PgPool,
    pending: HashMap<Cell, Counts>,
    writing: bool,
}

impl PrefixTally {
    pub fn new(pool: PgPool) -> Self {
        PrefixTally { pool, pending: HashMap::new(), writing: false }
    }

    fn write(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.pending.is_empty() {
            return;
        }
        self.writing = true;
        let batch = std::mem::take(&mut self.pending);
        let pool = self.pool.clone();
        ctx
            .spawn(async move { (write(&pool, &batch).await, batch) }.into_actor(self).map(|(written, batch), act, _| {
            act.writing = false;
            if let Err(error) = written {
                tracing::warn!(%error, cells = batch.len(), "pumping guard: counts not written, kept for the next try");
                for (cell, counts) in batch {
                    let kept = act.pending.entry(cell).or_default();
                    kept.sent = kept.sent.saturating_add(counts.sent);
                    kept.approved = kept.approved.saturating_add(counts.approved);
                }
            }
        }));
    }
}

/// Adds every cell's counts to its row, in one statement; rows are locked in
/// key order, so two processes flushing at once never deadlock. A cell of a
/// tenant deleted meanwhile is dropped.
async fn write(pool: &PgPool, batch: &HashMap<Cell, Counts>) -> Result<(), sqlx::Error> {
    let mut cells: Vec<(&Cell, &Counts)> = batch.iter().collect();
    cells.sort_by(|a, b| (a.0.tenant_id, &a.0.prefix, a.0.minute).cmp(&(b.0.tenant_id, &b.0.prefix, b.0.minute)));
    let tenants: Vec<Uuid> = cells.iter().map(|(c, _)| c.tenant_id).collect();
    let prefixes: Vec<&str> = cells.iter().map(|(c, _)| c.prefix.as_str()).collect();
    let minutes: Vec<DateTime<Utc>> = cells.iter().map(|(c, _)| c.minute).collect();
    let sent: Vec<i32> = cells.iter().map(|(_, n)| n.sent).collect();
    let approved: Vec<i32> = cells.iter().map(|(_, n)| n.approved).collect();
    sqlx::query(
        "INSERT INTO prefix_stats (tenant_id, prefix, minute, sent, approved)
         SELECT u.t, u.p, u.m, u.s, u.a
         FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::int[], $5::int[]) WITH ORDINALITY AS u(t, p, m, s, a, n)
         JOIN tenants ON tenants.id = u.t
         ORDER BY u.n
         ON CONFLICT (tenant_id, prefix, minute) DO UPDATE
             SET sent = prefix_stats.sent + EXCLUDED.sent, approved = prefix_stats.approved + EXCLUDED.approved",
    )
    .bind(&tenants)
    .bind(&prefixes)
    .bind(&minutes)
    .bind(&sent)
    .bind(&approved)
    .execute(pool)
    .await?;
    Ok(())
}

impl Actor for PrefixTally {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(FLUSH_EVERY, |act, ctx| act.write(ctx));
    }
}

impl Handler<Count> for PrefixTally {
    type Result = ();

    fn handle(&mut self, count: Count, _: &mut Self::Context) {
        let cell = Cell { tenant_id: count.tenant_id, prefix: count.prefix.as_str().to_owned(), minute: count.minute };
        let counts = self.pending.entry(cell).or_default();
        counts.sent = counts.sent.saturating_add(count.sent);
        counts.approved = counts.approved.saturating_add(count.approved);
    }
}

impl Handler<Clear> for PrefixTally {
    type Result = ();

    fn handle(&mut self, clear: Clear, _: &mut Self::Context) {
        self.pending.retain(|cell, _| !(cell.tenant_id == clear.tenant_id && cell.prefix == clear.prefix.as_str()));
    }
}

impl Handler<Flush> for PrefixTally {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let batch = std::mem::take(&mut self.pending);
        let pool = self.pool.clone();
        Box::pin(
            async move {
                if !batch.is_empty()
                    && let Err(error) = write(&pool, &batch).await
                {
                    tracing::warn!(%error, cells = batch.len(), "pumping guard: last counts not written");
                }
            }
            .into_actor(self),
        )
    }
}
