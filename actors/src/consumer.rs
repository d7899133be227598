//! A queue consumer actor shared by the dispatch queues and the request intake:
//! manual ack, bounded prefetch, a channel in publisher-confirm mode for what the
//! handler publishes, and each delivery handled as its own future (so up to
//! `prefetch` are in flight per consumer). Consumers run on their own arbiters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::amqp::{PublishError, long_string, publish_confirmed};

/// What to do with a delivery once handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done (including: dead-lettered, or handed to a retry queue).
    Ack,
    /// Could not be handled now (database down…): back to the queue after a pause.
    Requeue,
}

pub trait DeliveryHandler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, channel: lapin::Channel, delivery: Delivery) -> BoxFuture<'static, Disposition>;
}

/// How many consumers a process started and how many still receive. A consumer
/// whose stream ends (channel or connection closed, queue deleted, consumer
/// cancelled by the broker) does not come back: readiness turns false and a
/// worker process exits, so the supervisor restarts it.
#[derive(Debug, Default)]
pub struct ConsumerHealth {
    expected: AtomicUsize,
    live: AtomicUsize,
}

impl ConsumerHealth {
    /// (live, expected)
    pub fn counts(&self) -> (usize, usize) {
        (self.live.load(Ordering::Relaxed), self.expected.load(Ordering::Relaxed))
    }

    pub fn all_live(&self) -> bool {
        let (live, expected) = self.counts();
        live == expected
    }
}

pub struct QueueConsumer<H: DeliveryHandler> {
    queue: String,
    channel: lapin::Channel,
    handler: Arc<H>,
    health: Arc<ConsumerHealth>,
    live: bool,
}

impl<H: DeliveryHandler> QueueConsumer<H> {
    /// The stream is over: stop counting as live. In-flight deliveries keep
    /// running to their end (their acks may fail; the broker then redelivers,
    /// and the job claim stops a second send).
    fn lost(&mut self, why: &str) {
        if std::mem::take(&mut self.live) {
            self.health.live.fetch_sub(1, Ordering::Relaxed);
            metrics::counter!("verifyd_consumers_lost_total").increment(1);
            tracing::error!(queue = %self.queue, why, "consumer lost");
        }
    }
}

impl<H: DeliveryHandler> Actor for QueueConsumer<H> {
    type Context = Context<Self>;
}

impl<H: DeliveryHandler> StreamHandler<Result<Delivery, lapin::Error>> for QueueConsumer<H> {
    fn handle(&mut self, item: Result<Delivery, lapin::Error>, ctx: &mut Self::Context) {
        let delivery = match item {
            Ok(delivery) => delivery,
            Err(error) => {
                self.lost(&error.to_string());
                return;
            }
        };
        let (handler, channel) = (self.handler.clone(), self.channel.clone());
        ctx.spawn(
            async move {
                let acker = delivery.acker.clone();
                let result = match handler.handle(channel, delivery).await {
                    Disposition::Ack => acker.ack(BasicAckOptions::default()).await,
                    Disposition::Requeue => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
                    }
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "ack/nack failed; the broker will redeliver");
                }
            }
            .into_actor(self),
        );
    }

    fn finished(&mut self, _: &mut Self::Context) {
        self.lost("stream ended");
    }
}

/// Starts `count` consumers of `queue` (0 is allowed: a process that does not
/// consume it), each with its own channel and arbiter.
/// Keep the returned arbiters for as long as the consumers should run.
pub async fn start<H: DeliveryHandler>(
    conn: &lapin::Connection,
    queue: &str,
    count: usize,
    prefetch: u16,
    handler: Arc<H>,
    health: &Arc<ConsumerHealth>,
) -> Result<Vec<Arbiter>, lapin::Error> {
    let mut arbiters = Vec::with_capacity(count);
    for index in 0..count {
        let channel = conn.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        channel.basic_qos(prefetch.max(1), BasicQosOptions::default()).await?;
        let tag = format!("verifyd-{}-{index}", std::process::id());
        let consumer = channel
            .basic_consume(queue.into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
            .await?;
        let arbiter = Arbiter::new();
        let (queue, handler, health) = (queue.to_owned(), handler.clone(), health.clone());
        health.expected.fetch_add(1, Ordering::Relaxed);
        health.live.fetch_add(1, Ordering::Relaxed);
        QueueConsumer::start_in_arbiter(&arbiter.handle(), move |ctx| {
            ctx.add_stream(consumer);
            QueueConsumer { queue, channel, handler, health, live: true }
        });
        arbiters.push(arbiter);
    }
    Ok(arbiters)
}

/// Moves a delivery to the dead-letter queue with the reason, keeping its body,
/// its headers and where it came from.
pub async fn dead_letter(
    channel: &lapin::Channel,
    dead_letters: &str,
    delivery: &Delivery,
    reason: &str,
) -> Result<(), PublishError> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert("x-verifyd-reason".into(), long_string(reason));
    headers.insert("x-verifyd-source-routing-key".into(), long_string(delivery.routing_key.as_str()));
    headers.insert("x-verifyd-source-exchange".into(), long_string(delivery.exchange.as_str()));
    headers.insert("x-verifyd-dead-lettered-at".into(), AMQPValue::LongString(chrono::Utc::now().to_rfc3339().into()));
    let props = delivery.properties.clone().with_headers(headers).with_delivery_mode(2);
    publish_confirmed(channel, "", dead_letters, &delivery.data, props).await?;
    metrics::counter!("verifyd_dead_lettered_total").increment(1);
    tracing::warn!(queue = %delivery.routing_key, reason, "message dead-lettered");
    Ok(())
}
