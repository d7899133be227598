//! A queue consumer actor shared by the dispatch queues and the request intake:
//! manual ack, bounded prefetch, a channel in publisher-confirm mode for what the
//! handler publishes, and each delivery handled as its own future (so up to
//! `prefetch` are in flight per consumer). Consumers run on their own arbiters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};

use crate::dead_letter::Reason;
use crate::infra::amqp::{PublishError, long_string, publish_confirmed};

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

/// How many consumers a process started, how many receive right now, and how
/// many were lost for good. The connection recovers by itself (lapin's
/// auto-recovery: reconnect with backoff, then channels, QoS, confirms and
/// consumers are re-declared); while it does, a consumer is not live and
/// readiness is false. A consumer whose recovery fails is lost: a worker
/// process then exits, so its supervisor restarts it.
#[derive(Debug, Default)]
pub struct ConsumerHealth {
    expected: AtomicUsize,
    live: AtomicUsize,
    lost: AtomicUsize,
    /// Deliveries being handled right now (not yet acked or requeued).
    in_flight: AtomicUsize,
    /// Per queue: what this process took from it.
    marks: Mutex<HashMap<String, Mark>>,
}

/// What one process took from one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    /// Deliveries taken since the process started.
    pub taken: u64,
    /// The publication time (AMQP `timestamp`) of the newest message taken:
    /// every message still waiting was published after it.
    pub newest_published: Option<DateTime<Utc>>,
    pub last_taken: Option<DateTime<Utc>>,
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

    /// Consumers that stopped and will not come back in this process.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A delivery was taken from `queue`, published at `timestamp` (AMQP
    /// seconds since the epoch, when the publisher set it).
    fn took(&self, queue: &str, timestamp: Option<u64>, now: DateTime<Utc>) {
        let published = timestamp.and_then(|t| DateTime::from_timestamp(i64::try_from(t).ok()?, 0));
        let mut marks = self.marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mark = match marks.get_mut(queue) {
            Some(mark) => mark,
            None => marks.entry(queue.to_owned()).or_default(),
        };
        mark.taken += 1;
        mark.last_taken = Some(now);
        if published > mark.newest_published {
            mark.newest_published = published;
        }
    }

    /// What this process took from each queue.
    pub fn marks(&self) -> Vec<(String, Mark)> {
        let marks = self.marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all: Vec<_> = marks.iter().map(|(q, m)| (q.clone(), m.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

pub struct QueueConsumer<H: DeliveryHandler> {
    queue: String,
    channel: lapin::Channel,
    handler: Arc<H>,
    health: Arc<ConsumerHealth>,
    live: bool,
    gone: bool,
    /// Set by `Consumers::cancel`: the stream's end is then a stop, not a loss.
    stopping: Arc<AtomicBool>,
}

impl<H: DeliveryHandler> QueueConsumer<H> {
    /// The stream failed: stop counting as live. In-flight deliveries keep
    /// running to their end (their acks fail once the channel is gone; the
    /// broker then redelivers, and the job claim stops a second send).
    fn down(&mut self, why: &str) {
        if std::mem::take(&mut self.live) {
            self.health.live.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(queue = %self.queue, why, "consumer down");
        }
    }

    fn up(&mut self) {
        if !std::mem::replace(&mut self.live, true) {
            self.health.live.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("verifyd_consumers_recovered_total").increment(1);
            tracing::info!(queue = %self.queue, "consumer recovered");
        }
    }

    /// The stream ended because this process cancelled it (a graceful stop):
    /// no longer live, but nothing was lost and nobody needs to be paged.
    fn stopped(&mut self) {
        if std::mem::take(&mut self.live) {
            self.health.live.fetch_sub(1, Ordering::Relaxed);
            tracing::info!(queue = %self.queue, "consumer stopped");
        }
    }

    fn lost(&mut self, why: &str) {
        self.down(why);
        if !std::mem::replace(&mut self.gone, true) {
            self.health.lost.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("verifyd_consumers_lost_total").increment(1);
            tracing::error!(queue = %self.queue, why, "consumer lost for good");
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
                self.down(&error.to_string());
                // Wait for the connection's recovery; the same stream then
                // carries deliveries again.
                let channel = self.channel.clone();
                ctx.spawn(async move { channel.wait_for_recovery(error).await }.into_actor(self).map(
                    |recovered, act, _| match recovered {
                        Ok(()) => act.up(),
                        Err(error) => act.lost(&error.to_string()),
                    },
                ));
                return;
            }
        };
        let (handler, channel, health) = (self.handler.clone(), self.channel.clone(), self.health.clone());
        health.in_flight.fetch_add(1, Ordering::Relaxed);
        health.took(&self.queue, delivery.properties.timestamp().as_ref().copied(), crate::timestamp::now());
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
                health.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            .into_actor(self),
        );
    }

    fn finished(&mut self, _: &mut Self::Context) {
        if self.stopping.load(Ordering::Relaxed) {
            self.stopped();
        } else {
            self.lost("stream ended");
        }
    }
}

/// Running consumers: their arbiters (keep them for as long as the consumers
/// should run) and what stopping them needs.
#[derive(Default)]
pub struct Consumers {
    arbiters: Vec<Arbiter>,
    /// (channel, consumer tag, its stopping flag) of each consumer.
    tags: Vec<(lapin::Channel, String, Arc<AtomicBool>)>,
}

impl Consumers {
    pub fn extend(&mut self, other: Consumers) {
        self.arbiters.extend(other.arbiters);
        self.tags.extend(other.tags);
    }

    /// First step of a graceful stop: asks the broker to stop delivering to
    /// these consumers. Deliveries already received are still handled; wait for
    /// them with [`ConsumerHealth::wait_idle`].
    pub async fn cancel(&self) {
        for (channel, tag, stopping) in &self.tags {
            stopping.store(true, Ordering::Relaxed);
            if let Err(error) = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await {
                tracing::warn!(%error, tag, "could not cancel a consumer");
            }
        }
    }
}

impl ConsumerHealth {
    /// Waits up to `grace` for the deliveries being handled to finish and be
    /// acked; returns how many were still in flight. Those return to the queue
    /// when the connection closes (their claim makes a second copy wait).
    pub async fn wait_idle(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.in_flight()
    }
}

/// Starts `count` consumers of `queue` (0 is allowed: a process that does not
/// consume it), each with its own channel and arbiter.
pub async fn start<H: DeliveryHandler>(
    conn: &lapin::Connection,
    queue: &str,
    count: usize,
    prefetch: u16,
    handler: Arc<H>,
    health: &Arc<ConsumerHealth>,
) -> Result<Consumers, lapin::Error> {
    let mut started = Consumers::default();
    for index in 0..count {
        let channel = conn.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        channel.basic_qos(prefetch.max(1), BasicQosOptions::default()).await?;
        let tag = format!("verifyd-{}-{queue}-{index}", std::process::id());
        let consumer = channel
            .basic_consume(queue.into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
            .await?;
        let arbiter = Arbiter::new();
        let (queue, handler, health) = (queue.to_owned(), handler.clone(), health.clone());
        health.expected.fetch_add(1, Ordering::Relaxed);
        health.live.fetch_add(1, Ordering::Relaxed);
        let stopping = Arc::new(AtomicBool::new(false));
        started.tags.push((channel.clone(), tag, stopping.clone()));
        QueueConsumer::start_in_arbiter(&arbiter.handle(), move |ctx| {
            ctx.add_stream(consumer);
            QueueConsumer { queue, channel, handler, health, live: true, gone: false, stopping }
        });
        started.arbiters.push(arbiter);
    }
    Ok(started)
}

/// A message given up on: the letter's id (the keeper records it once under
/// it), why in a word, and why in words.
pub struct Letter<'a> {
    pub id: uuid::Uuid,
    pub kind: Reason,
    pub reason: &'a str,
}

/// The namespace of letter ids derived from their message.
const LETTERS: uuid::Uuid = uuid::Uuid::from_u128(0x7665_7269_6679_642d_6c65_7474_6572_7300);

impl<'a> Letter<'a> {
    /// The letter of a delivery. Its id is derived from what the message is
    /// (where it came from, its `message_id`, its body) and why it is given up
    /// on, so a copy redelivered after a lost ack and dead-lettered again is
    /// recorded once.
    pub fn of(delivery: &Delivery, kind: Reason, reason: &'a str) -> Self {
        use sha2::{Digest, Sha256};
        let message_id = delivery.properties.message_id().as_ref().map(|m| m.as_str().to_owned()).unwrap_or_default();
        let mut name = Vec::with_capacity(128);
        for part in [delivery.exchange.as_str(), delivery.routing_key.as_str(), kind.as_str(), message_id.as_str()] {
            name.extend_from_slice(part.as_bytes());
            name.push(0);
        }
        name.extend_from_slice(&Sha256::digest(&delivery.data));
        Letter { id: uuid::Uuid::new_v5(&LETTERS, &name), kind, reason }
    }
}

/// Moves a delivery to the dead-letter queue with the reason (in words and as a
/// kind), keeping its body, its headers and where it came from.
pub async fn dead_letter(
    channel: &lapin::Channel,
    dead_letters: &str,
    delivery: &Delivery,
    letter: &Letter<'_>,
) -> Result<(), PublishError> {
    let (kind, reason) = (letter.kind, letter.reason);
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert("x-verifyd-dead-letter-id".into(), long_string(&letter.id.to_string()));
    headers.insert("x-verifyd-reason".into(), long_string(reason));
    headers.insert("x-verifyd-reason-kind".into(), long_string(kind.as_str()));
    headers.insert("x-verifyd-source-routing-key".into(), long_string(delivery.routing_key.as_str()));
    headers.insert("x-verifyd-source-exchange".into(), long_string(delivery.exchange.as_str()));
    headers.insert(
        "x-verifyd-dead-lettered-at".into(),
        AMQPValue::LongString(crate::timestamp::format(crate::timestamp::now()).into()),
    );
    let props = delivery.properties.clone().with_headers(headers).with_delivery_mode(2);
    publish_confirmed(channel, "", dead_letters, &delivery.data, props).await?;
    metrics::counter!("verifyd_dead_lettered_total", "reason" => kind.as_str()).increment(1);
    tracing::warn!(queue = %delivery.routing_key, letter_id = %letter.id, reason_kind = kind.as_str(), reason,
        "message dead-lettered");
    Ok(())
}
