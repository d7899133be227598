//! RabbitMQ as a backend or an operator sees it: taps on the events exchange
//! and the dispatch queues, reply queues, publishing requests, and dropping
//! every connection.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::Value;
use uuid::Uuid;

use super::TestApp;

impl TestApp {
    /// Has RabbitMQ close every connection of this app's processes (named
    /// `verifyd <prefix>`), as a broker restart or a network cut does for
    /// each client. Returns how many it closed.
    pub fn force_close_amqp_connections(&self) -> usize {
        let name = format!("verifyd {}", self.topology.prefix);
        let listed = std::process::Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .expect("rabbitmqctl runs (RabbitMQ's CLI must be on PATH)");
        let listing = String::from_utf8_lossy(&listed.stdout);
        let pids: Vec<&str> = listing
            .lines()
            .filter(|line| line.contains(&format!("\"{name}\"")))
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        for pid in &pids {
            let closed = std::process::Command::new("rabbitmqctl")
                .args(["-q", "close_connection", pid, "fault test: connection forced closed"])
                .status()
                .expect("rabbitmqctl runs");
            assert!(closed.success(), "rabbitmqctl close_connection {pid} failed");
        }
        pids.len()
    }

    /// A new channel and a server-named queue that lives as long as the test's
    /// AMQP connection.
    async fn private_queue(&self) -> (lapin::Channel, String) {
        let ch = self.amqp.create_channel().await.expect("channel");
        let queue = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .expect("private queue");
        let name = queue.name().as_str().to_owned();
        (ch, name)
    }

    /// A queue bound to the events exchange (all tenants' events with `#`),
    /// deleted with the test's AMQP connection.
    pub async fn capture_events(&self, binding: &str) -> Capture {
        let (ch, name) = self.private_queue().await;
        ch.queue_bind(
            name.as_str().into(),
            self.topology.events_exchange().into(),
            binding.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind capture queue");
        Capture::consume(ch, name).await
    }

    /// A private queue for `reply_to`, named as verifyd allows
    /// (`<prefix>reply.<tenant>.<anything>`), and its name.
    pub async fn reply_queue(&self) -> (String, Capture) {
        let name = format!("{}reply.{}.{}", self.topology.prefix, self.tenant, Uuid::new_v4().simple());
        let ch = self.amqp.create_channel().await.expect("channel");
        ch.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("reply queue");
        (name.clone(), Capture::consume(ch, name).await)
    }

    /// A copy of everything published to the dispatch exchange.
    pub async fn tap_dispatch(&self) -> Capture {
        let (ch, name) = self.private_queue().await;
        for key in ["sms", "voice"] {
            ch.queue_bind(
                name.as_str().into(),
                self.topology.dispatch_exchange().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind tap");
        }
        Capture::consume(ch, name).await
    }

    /// Publishes a raw request as a backend would.
    pub async fn publish_request(&self, routing_key: &str, body: &[u8], props: BasicProperties) {
        let ch = self.amqp.create_channel().await.expect("channel");
        ch.confirm_select(Default::default()).await.expect("confirms");
        ch.basic_publish(
            self.topology.requests_exchange().into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
}

/// Messages received on one queue. Everything received is kept, so waiting for
/// one event never loses another that arrived first.
pub struct Capture {
    rx: tokio::sync::mpsc::UnboundedReceiver<Message>,
    received: Vec<Message>,
    _channel: lapin::Channel,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl Message {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON message")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn event(&self) -> Option<String> {
        serde_json::from_slice::<Value>(&self.body).ok()?.get("event")?.as_str().map(str::to_owned)
    }
}

impl Capture {
    async fn consume(ch: lapin::Channel, queue: String) -> Capture {
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions { no_ack: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        actix_rt::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let message = Message {
                    routing_key: d.routing_key.as_str().to_owned(),
                    body: d.data.clone(),
                    properties: d.properties.clone(),
                };
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        Capture { rx, received: Vec::new(), _channel: ch }
    }

    /// The next message to arrive (also kept for `drain`).
    pub async fn next(&mut self, timeout: Duration) -> Option<Message> {
        let message = tokio::time::timeout(timeout, self.rx.recv()).await.ok().flatten()?;
        self.received.push(message.clone());
        Some(message)
    }

    /// The first message, received before or now, whose JSON `event` is `name`.
    pub async fn wait_for_event(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = self.received.iter().find(|m| m.event().as_deref() == Some(name)) {
                return found.json();
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.next(left).await.is_none() {
                let seen: Vec<_> = self.received.iter().filter_map(Message::event).collect();
                panic!("no {name} event within {timeout:?}; received {seen:?}");
            }
        }
    }

    /// Everything received so far and until `quiet` passes with nothing new.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Message> {
        while self.next(quiet).await.is_some() {}
        self.received.clone()
    }
}

impl TestApp {
    /// Waits until delivery has nothing left to do: the outbox is published,
    /// no request, dispatch, retry or dead-letter queue holds a ready message,
    /// no consumer of the test's serve processes is handling one, and no job
    /// is claimed without a final outcome, twice in a row 100 ms apart. A test
    /// that asserts "nothing (more) went out" waits for this instead of
    /// sleeping: it returns as soon as the pipeline is empty. (A message on
    /// its way from the broker to a consumer is in neither count; two quiet
    /// checks apart make missing one unlikely, not impossible.)
    pub async fn delivery_settled(&self) {
        let ch = self.amqp.create_channel().await.expect("channel");
        let queues: Vec<String> = self.topology.queues().into_iter().filter(|q| !q.contains("webhooks")).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut quiet_checks = 0;
        while quiet_checks < 2 {
            assert!(tokio::time::Instant::now() < deadline, "delivery did not settle within 20 s");
            let mut busy: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM outbox)
                      + (SELECT count(*) FROM dispatch_claims c WHERE c.claimed_until > now()
                         AND NOT EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.job_id = c.job_id
                                         AND a.outcome IN ('sent', 'permanent_error', 'skipped')))",
            )
            .fetch_one(&self.pool)
            .await
            .expect("outbox and claims");
            for queue in &queues {
                let passive = QueueDeclareOptions { passive: true, ..Default::default() };
                let q = ch.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await.expect("queue");
                busy += i64::from(q.message_count());
            }
            let handling: usize = self.running.iter().chain(&self.others).map(|r| r.core.health.in_flight()).sum();
            busy += i64::try_from(handling).unwrap_or(i64::MAX);
            quiet_checks = if busy == 0 { quiet_checks + 1 } else { 0 };
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
