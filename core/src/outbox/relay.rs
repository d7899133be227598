//! The outbox relay: publishes outbox rows to RabbitMQ and deletes them once the
//! broker has confirmed them. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so
//! every process runs a relay and none publishes a row another is publishing; a
//! process that dies mid-batch leaves its rows for the next relay (at-least-once).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use lapin::types::ShortString;
use sqlx::PgPool;

use crate::infra::amqp::{PublishError, Topology, json_properties};
use crate::outbox::Target;

const BATCH: i64 = 500;

#[derive(Message)]
#[rtype(result = "()")]
/// Work may be waiting: publish now (merged while a run is in progress).
pub struct Kick;

/// Commits a transaction that wrote outbox rows and wakes the relay, so they
/// are published now rather than at its next poll (`runtime.relay_poll_ms`).
pub async fn commit<'c>(
    tx: impl Into<sqlx::Transaction<'c, sqlx::Postgres>>,
    relay: &Addr<OutboxRelay>,
) -> Result<(), sqlx::Error> {
    tx.into().commit().await?;
    relay.do_send(Kick);
    Ok(())
}

/// Commits, and wakes the relay only when the transaction `wrote` outbox rows
/// (a path that writes them on some branches only), so a commit that
/// announced nothing does not send the relay looking.
pub async fn commit_if<'c>(
    tx: impl Into<sqlx::Transaction<'c, sqlx::Postgres>>,
    relay: &Addr<OutboxRelay>,
    wrote: bool,
) -> Result<(), sqlx::Error> {
    if wrote { commit(tx, relay).await } else { tx.into().commit().await }
}

pub struct OutboxRelay {
    pool: PgPool,
    amqp: Arc<lapin::Connection>,
    channel: lapin::Channel,
    topology: Topology,
    poll: Duration,
    running: bool,
    again: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("AMQP error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker did not confirm within {0:?}")]
    Timeout(Duration),
}

/// How long a batch may wait for the broker before it is given up (and its rows,
/// still in the outbox, retried): flow control or a memory alarm must not hold
/// the batch's row locks and connection forever.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

impl OutboxRelay {
    /// `channel` must be in confirm mode.
    pub fn new(
        pool: PgPool,
        amqp: Arc<lapin::Connection>,
        channel: lapin::Channel,
        topology: Topology,
        poll: Duration,
    ) -> Self {
        OutboxRelay { pool, amqp, channel, topology, poll, running: false, again: false }
    }
}

impl Actor for OutboxRelay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.notify(Kick);
        ctx.run_interval(self.poll, |_, ctx| ctx.notify(Kick));
    }
}

impl Handler<Kick> for OutboxRelay {
    type Result = ();

    fn handle(&mut self, _: Kick, ctx: &mut Self::Context) {
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        let (pool, amqp, channel, topology) =
            (self.pool.clone(), self.amqp.clone(), self.channel.clone(), self.topology.clone());
        let run = async move {
            // A channel the broker closed (after an error) is replaced, so the
            // outbox keeps draining as long as the connection lives.
            let channel = if channel.status().connected() { channel } else { reopen(&amqp).await? };
            let result = drain(&pool, &channel, &topology).await;
            Ok::<_, RelayError>((channel, result))
        };
        ctx.spawn(run.into_actor(self).map(|outcome, act, ctx| {
            act.running = false;
            let result = match outcome {
                Ok((channel, result)) => {
                    act.channel = channel;
                    result
                }
                Err(error) => Err(error),
            };
            if let Err(error) = result {
                tracing::warn!(%error, "outbox relay: batch not published, will retry");
                metrics::counter!("verifyd_outbox_errors_total").increment(1);
            }
            if std::mem::take(&mut act.again) {
                ctx.notify(Kick);
            }
        }));
    }
}

async fn reopen(amqp: &lapin::Connection) -> Result<lapin::Channel, RelayError> {
    let channel = amqp.create_channel().await?;
    channel.confirm_select(lapin::options::ConfirmSelectOptions::default()).await?;
    tracing::info!("outbox relay: channel reopened");
    Ok(channel)
}

async fn drain(pool: &PgPool, channel: &lapin::Channel, topology: &Topology) -> Result<(), RelayError> {
    while publish_batch(pool, channel, topology).await? == BATCH {}
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    target: String,
    routing_key: String,
    payload: serde_json::Value,
    correlation_id: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// Publishes one batch; returns how many rows it took.
pub async fn publish_batch(pool: &PgPool, channel: &lapin::Channel, topology: &Topology) -> Result<i64, RelayError> {
    let mut tx = pool.begin().await?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, target, routing_key, payload, correlation_id, created_at FROM outbox
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut confirms = Vec::with_capacity(rows.len());
    for row in &rows {
        let (exchange, routing_key) = match row.target.as_str() {
            t if t == Target::Event.as_str() => (topology.events_exchange(), row.routing_key.clone()),
            t if t == Target::Dispatch.as_str() => (topology.dispatch_exchange(), row.routing_key.clone()),
            t if t == Target::Webhook.as_str() => (String::new(), topology.webhooks_queue()),
            _ => (String::new(), row.routing_key.clone()),
        };
        // Stamped with the time of the change it announces: consumers learn how
        // long a message waited, and dispatch how long a code took to go out.
        let stamp = u64::try_from(row.created_at.timestamp()).unwrap_or_default();
        let mut props = json_properties().with_timestamp(stamp);
        if let Some(correlation_id) = &row.correlation_id {
            props = props.with_correlation_id(ShortString::from(correlation_id.as_str()));
        }
        let body = serde_json::to_vec(&row.payload).unwrap_or_default();
        let publish = channel.basic_publish(
            exchange.as_str().into(),
            routing_key.as_str().into(),
            Default::default(),
            &body,
            props,
        );
        let confirm = tokio::time::timeout(CONFIRM_TIMEOUT, publish)
            .await
            .map_err(|_| RelayError::Timeout(CONFIRM_TIMEOUT))??;
        confirms.push((routing_key, confirm));
    }
    for (routing_key, confirm) in confirms {
        let confirmed = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| RelayError::Timeout(CONFIRM_TIMEOUT))??;
        if let lapin::Confirmation::Nack(_) = confirmed {
            return Err(PublishError::Nacked(routing_key).into());
        }
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
    tx.commit().await?;
    metrics::counter!("verifyd_outbox_published_total").increment(ids.len() as u64);
    Ok(rows.len() as i64)
}
