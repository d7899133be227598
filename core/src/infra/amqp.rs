//! RabbitMQ names and topology. Every name starts with a configurable prefix so
//! several environments (or test runs) can share one broker.
//!
//! * `<p>requests` (topic exchange) → `<p>requests` (quorum queue, bound `#`):
//!   verification requests from backends, routing key = tenant name.
//! * `<p>dispatch` (direct exchange) → `<p>dispatch.sms`, `<p>dispatch.voice`
//!   (quorum queues, bound by channel name): delivery jobs, one queue per channel
//!   so they scale and throttle apart. Operators may bind an extra queue to the
//!   exchange to watch jobs.
//! * `<p>dispatch.<channel>.retry.<n>` (quorum queues with a message TTL that
//!   dead-letter back to the dispatch exchange): the n-th retry delay.
//! * `<p>dead_letters` (quorum queue): messages verifyd gave up on, with the
//!   reason in the `x-verifyd-reason` header.
//! * `<p>events` (topic exchange): outcomes, routing key `<tenant>.<event>`.
//! * `<p>webhooks` (quorum queue, published to through the default exchange):
//!   webhook deliveries to make, one message per delivery id; its retry queues
//!   `<p>webhooks.retry.<n>` dead-letter back to it after their delay.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel as AmqpChannel, ExchangeKind};
use verifyd_providers::domain::Channel;

#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    /// Delay of each retry level, shortest first.
    pub retry_delays: Vec<Duration>,
    /// Delay of each retry of a webhook delivery (`webhooks.retry_delays_ms`).
    pub webhook_retry_delays: Vec<Duration>,
}

impl Topology {
    /// A topology without webhook retries (a failed delivery is dead-lettered
    /// at once); give them with [`Topology::with_webhook_retries`].
    pub fn new(prefix: impl Into<String>, retry_delays: Vec<Duration>) -> Self {
        Topology { prefix: prefix.into(), retry_delays, webhook_retry_delays: Vec::new() }
    }

    pub fn with_webhook_retries(mut self, delays: Vec<Duration>) -> Self {
        self.webhook_retry_delays = delays;
        self
    }

    pub fn webhooks_queue(&self) -> String {
        format!("{}webhooks", self.prefix)
    }
    /// The queue of the `level`-th webhook retry delay (0 for the first).
    pub fn webhook_retry_queue(&self, level: usize) -> String {
        format!("{}webhooks.retry.{}", self.prefix, level + 1)
    }
    /// The level (0 for `….retry.1`) of one of the webhook retry queues.
    pub fn webhook_retry_level_of(&self, queue: &str) -> Option<usize> {
        (0..self.webhook_retry_delays.len()).find(|level| self.webhook_retry_queue(*level) == queue)
    }

    pub fn requests_exchange(&self) -> String {
        format!("{}requests", self.prefix)
    }
    pub fn requests_queue(&self) -> String {
        format!("{}requests", self.prefix)
    }
    pub fn dispatch_exchange(&self) -> String {
        format!("{}dispatch", self.prefix)
    }
    pub fn events_exchange(&self) -> String {
        format!("{}events", self.prefix)
    }
    pub fn dispatch_queue(&self, channel: Channel) -> String {
        format!("{}dispatch.{}", self.prefix, channel.as_str())
    }
    pub fn retry_queue(&self, channel: Channel, level: usize) -> String {
        format!("{}dispatch.{}.retry.{}", self.prefix, channel.as_str(), level + 1)
    }
    pub fn dead_letters(&self) -> String {
        format!("{}dead_letters", self.prefix)
    }

    /// The retry queue for the given retry count, or `None` when retries are used up.
    pub fn retry_level(&self, retry: u32) -> Option<usize> {
        let level = usize::try_from(retry).ok()?;
        (level < self.retry_delays.len()).then_some(level)
    }

    /// Every queue name, for operators and for test teardown.
    pub fn queues(&self) -> Vec<String> {
        let mut names = vec![self.requests_queue(), self.dead_letters()];
        for channel in Channel::ALL {
            names.push(self.dispatch_queue(channel));
            for level in 0..self.retry_delays.len() {
                names.push(self.retry_queue(channel, level));
            }
        }
        names.push(self.webhooks_queue());
        for level in 0..self.webhook_retry_delays.len() {
            names.push(self.webhook_retry_queue(level));
        }
        names
    }

    pub fn exchanges(&self) -> Vec<String> {
        vec![self.requests_exchange(), self.events_exchange(), self.dispatch_exchange()]
    }

    /// (queue, ready messages, consumers) for every queue, read with passive
    /// declares (which change nothing).
    pub async fn depths(&self, conn: &lapin::Connection) -> Result<Vec<(String, u32, u32)>, lapin::Error> {
        let mut out = Vec::new();
        for name in self.queues() {
            // A failed passive declare closes the channel: one channel per queue.
            let ch = conn.create_channel().await?;
            let opts = QueueDeclareOptions { passive: true, ..Default::default() };
            match ch.queue_declare(name.as_str().into(), opts, FieldTable::default()).await {
                Ok(q) => out.push((name, q.message_count(), q.consumer_count())),
                Err(_) => out.push((format!("{name} (missing)"), 0, 0)),
            }
        }
        Ok(out)
    }

    /// Deletes every queue and exchange of this prefix (test and benchmark
    /// teardown; an operator retiring an environment). Errors are ignored: what
    /// is already gone stays gone.
    pub async fn delete(&self, ch: &AmqpChannel) {
        for queue in self.queues() {
            let _ = ch.queue_delete(queue.as_str().into(), Default::default()).await;
        }
        for exchange in self.exchanges() {
            let _ = ch.exchange_delete(exchange.as_str().into(), Default::default()).await;
        }
    }

    /// Declares everything (idempotent; every process does it on start).
    ///
    /// A queue or exchange that already exists with other arguments (a retry
    /// queue declared under another `x-message-ttl`, a classic queue where
    /// verifyd declares a quorum one) is refused by RabbitMQ with 406
    /// PRECONDITION_FAILED, which closes the channel. Each refusal is read
    /// (which argument, what the broker holds, what was declared) and the rest
    /// is still checked on a fresh channel, so one start names every queue to
    /// fix, not only the first.
    pub async fn declare(&self, conn: &lapin::Connection) -> Result<(), DeclareError> {
        let mut ch = conn.create_channel().await?;
        let mut refused = Vec::new();
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        for (exchange, kind) in [
            (self.requests_exchange(), ExchangeKind::Topic),
            (self.events_exchange(), ExchangeKind::Topic),
            (self.dispatch_exchange(), ExchangeKind::Direct),
        ] {
            let declared = ch.exchange_declare(exchange.as_str().into(), kind, durable, FieldTable::default()).await;
            settle(conn, &mut ch, declared, &mut refused).await?;
        }
        let declared = declare_queue(&ch, &self.requests_queue(), quorum()).await;
        if settle(conn, &mut ch, declared, &mut refused).await? {
            bind(&ch, &self.requests_queue(), &self.requests_exchange(), "#").await?;
        }
        let declared = declare_queue(&ch, &self.dead_letters(), quorum()).await;
        settle(conn, &mut ch, declared, &mut refused).await?;
        for channel in Channel::ALL {
            let declared = declare_queue(&ch, &self.dispatch_queue(channel), quorum()).await;
            if settle(conn, &mut ch, declared, &mut refused).await? {
                bind(&ch, &self.dispatch_queue(channel), &self.dispatch_exchange(), channel.as_str()).await?;
            }
            for (level, delay) in self.retry_delays.iter().enumerate() {
                let mut args = quorum();
                let ttl = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
                args.insert("x-message-ttl".into(), AMQPValue::LongUInt(ttl));
                args.insert("x-dead-letter-exchange".into(), long_string(&self.dispatch_exchange()));
                args.insert("x-dead-letter-routing-key".into(), long_string(channel.as_str()));
                // A job moves back from its retry queue by dead-lettering. A
                // quorum queue dead-letters at most once by default: a job that
                // expired while RabbitMQ restarted could be lost. At least once
                // (RabbitMQ ≥ 3.10) needs `reject-publish` overflow; no length
                // limit is set, so nothing is ever refused for it.
                args.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
                args.insert("x-overflow".into(), long_string("reject-publish"));
                let declared = declare_queue(&ch, &self.retry_queue(channel, level), args).await;
                settle(conn, &mut ch, declared, &mut refused).await?;
            }
        }
        let declared = declare_queue(&ch, &self.webhooks_queue(), quorum()).await;
        settle(conn, &mut ch, declared, &mut refused).await?;
        for (level, delay) in self.webhook_retry_delays.iter().enumerate() {
            // As the dispatch retry queues, back through the default exchange.
            let mut args = quorum();
            let ttl = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongUInt(ttl));
            args.insert("x-dead-letter-exchange".into(), long_string(""));
            args.insert("x-dead-letter-routing-key".into(), long_string(&self.webhooks_queue()));
            args.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
            args.insert("x-overflow".into(), long_string("reject-publish"));
            let declared = declare_queue(&ch, &self.webhook_retry_queue(level), args).await;
            settle(conn, &mut ch, declared, &mut refused).await?;
        }
        let _ = ch.close(200, "declared".into()).await;
        if refused.is_empty() { Ok(()) } else { Err(DeclareError::Inequivalent(refused)) }
    }

    /// The retry level (0 for `….retry.1`) of one of this topology's retry queues.
    pub fn retry_level_of(&self, queue: &str) -> Option<usize> {
        Channel::ALL
            .into_iter()
            .flat_map(|channel| (0..self.retry_delays.len()).map(move |level| (channel, level)))
            .find(|(channel, level)| self.retry_queue(*channel, *level) == queue)
            .map(|(_, level)| level)
    }
}

/// What became of one declaration: `Ok(true)` declared, `Ok(false)` refused
/// for inequivalent arguments (recorded in `refused`; `ch` is replaced by a
/// fresh channel, the broker having closed it), `Err` anything else.
async fn settle(
    conn: &lapin::Connection,
    ch: &mut AmqpChannel,
    declared: Result<(), lapin::Error>,
    refused: &mut Vec<Inequivalent>,
) -> Result<bool, DeclareError> {
    let error = match declared {
        Ok(()) => return Ok(true),
        Err(error) => error,
    };
    let lapin::ErrorKind::ProtocolError(amqp) = error.kind() else { return Err(error.into()) };
    if amqp.get_id() != 406 {
        return Err(error.into());
    }
    let text = amqp.get_message().as_str();
    let Some(inequivalent) = Inequivalent::parse(text) else {
        return Err(DeclareError::Refused(text.to_owned()));
    };
    refused.push(inequivalent);
    *ch = conn.create_channel().await?;
    Ok(false)
}

/// A queue or exchange that exists with another argument than verifyd
/// declares, read from RabbitMQ's 406 reply: "PRECONDITION_FAILED -
/// inequivalent arg 'x-message-ttl' for queue 'verifyd.dispatch.sms.retry.1'
/// in vhost '/': received the value '2000' of type 'signedint' but current is
/// the value '1000' of type 'signedint'".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inequivalent {
    /// `queue` or `exchange`.
    pub kind: String,
    pub name: String,
    pub vhost: String,
    pub argument: String,
    /// What the broker holds.
    pub existing: String,
    /// What this process declared.
    pub wanted: String,
}

impl Inequivalent {
    pub fn parse(text: &str) -> Option<Inequivalent> {
        let rest = &text[text.find("inequivalent arg '")? + "inequivalent arg '".len()..];
        let (argument, rest) = rest.split_once("' for ")?;
        let (kind, rest) = rest.split_once(" '")?;
        let (name, rest) = rest.split_once("' in vhost '")?;
        let (vhost, rest) = rest.split_once("': received ")?;
        let (wanted, existing) = rest.split_once(" but current is ")?;
        // "the value '2000' of type 'signedint'", or "'true'", or "none".
        let value = |v: &str| {
            let v = v.trim().trim_start_matches("the value ");
            let v = v.split(" of type '").next().unwrap_or(v);
            v.trim_matches('\'').to_owned()
        };
        Some(Inequivalent {
            kind: kind.to_owned(),
            name: name.to_owned(),
            vhost: vhost.to_owned(),
            argument: argument.to_owned(),
            existing: value(existing),
            wanted: value(wanted),
        })
    }
}

impl std::fmt::Display for Inequivalent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} '{}' (vhost '{}') exists with {} = {} but is declared with {}",
            self.kind, self.name, self.vhost, self.argument, self.existing, self.wanted
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeclareError {
    #[error("{0}")]
    Amqp(#[from] lapin::Error),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Inequivalent(Vec<Inequivalent>),
    #[error("the broker refused a declaration: {0}")]
    Refused(String),
}

pub fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

async fn bind(ch: &AmqpChannel, queue: &str, exchange: &str, key: &str) -> Result<(), lapin::Error> {
    ch.queue_bind(queue.into(), exchange.into(), key.into(), QueueBindOptions::default(), FieldTable::default()).await
}

async fn declare_queue(ch: &AmqpChannel, name: &str, args: FieldTable) -> Result<(), lapin::Error> {
    let opts = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(name.into(), opts, args).await.map(drop)
}

/// Reads a string header (LongString or ShortString) of a delivery.
pub fn header_str(props: &lapin::BasicProperties, name: &str) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("AMQP error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused (nacked) a message for {0}")]
    Nacked(String),
}

/// A persistent JSON message.
pub fn json_properties() -> lapin::BasicProperties {
    lapin::BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into())
}

/// Publishes and waits for the broker's confirm (the channel must be in confirm mode).
pub async fn publish_confirmed(
    ch: &AmqpChannel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: lapin::BasicProperties,
) -> Result<(), PublishError> {
    let confirm =
        ch.basic_publish(exchange.into(), routing_key.into(), Default::default(), payload, properties).await?.await?;
    match confirm {
        lapin::Confirmation::Nack(_) => Err(PublishError::Nacked(routing_key.to_owned())),
        _ => Ok(()),
    }
}

/// A random 50–100 % of a retry queue's `delay` ("equal jitter"): the
/// per-message expiration of a dispatch or webhook retry, so retries of many
/// messages that failed together do not come back together.
pub fn jittered(delay: Duration) -> Duration {
    use rand::RngExt;
    delay.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_retry_levels_end() {
        let t = Topology::new("x.", vec![Duration::from_secs(1), Duration::from_secs(5)]);
        assert_eq!(t.dispatch_queue(Channel::Sms), "x.dispatch.sms");
        assert_eq!(t.retry_queue(Channel::Voice, 1), "x.dispatch.voice.retry.2");
        assert_eq!(t.retry_level(0), Some(0));
        assert_eq!(t.retry_level(2), None);
        assert!(t.queues().iter().all(|q| q.starts_with("x.")));
        // requests, dead letters; per channel (sms, voice, email, whatsapp) its queue and two
        // retry queues; webhooks and their retries.
        assert_eq!(t.queues().len(), 2 + 4 * 3 + 1);
        let t = t.with_webhook_retries(vec![Duration::from_secs(1)]);
        assert_eq!(t.queues().len(), 2 + 4 * 3 + 2);
        assert_eq!(t.webhook_retry_queue(0), "x.webhooks.retry.1");
        assert_eq!(t.webhook_retry_level_of("x.webhooks.retry.1"), Some(0));
        assert_eq!(t.retry_level_of("x.dispatch.voice.retry.2"), Some(1));
        assert_eq!(t.retry_level_of("x.dispatch.voice.retry.3"), None);
        assert_eq!(t.retry_level_of("x.dispatch.sms"), None);
    }

    #[test]
    fn refusals_for_inequivalent_arguments_are_read() {
        let text = "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'verifyd.dispatch.sms.retry.1' \
                    in vhost '/': received the value '2000' of type 'signedint' but current is the value '1000' of \
                    type 'signedint'";
        let read = Inequivalent::parse(text).expect("read");
        assert_eq!(
            read,
            Inequivalent {
                kind: "queue".into(),
                name: "verifyd.dispatch.sms.retry.1".into(),
                vhost: "/".into(),
                argument: "x-message-ttl".into(),
                existing: "1000".into(),
                wanted: "2000".into(),
            }
        );
        let durable = "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost 'prod': received \
                       'true' but current is 'false'";
        let read = Inequivalent::parse(durable).expect("read");
        assert_eq!((read.vhost.as_str(), read.existing.as_str(), read.wanted.as_str()), ("prod", "false", "true"));
        assert_eq!(Inequivalent::parse("PRECONDITION_FAILED - unknown delivery tag 1"), None);
    }
}
