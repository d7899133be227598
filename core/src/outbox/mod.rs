//! The transactional outbox, how every flow announces what it did: rows
//! written in the same transaction as the state change they announce
//! (this file), published by the relay (`relay.rs`) with publisher confirms
//! and deleted only after the broker confirmed them; what the messages are is
//! the queue contract (`contract.rs`: dispatch jobs and events). It knows no
//! flow.

pub mod contract;
pub mod relay;

use sqlx::PgConnection;

use self::contract::{DispatchJob, Event};
use crate::ids::ReplyTo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The events topic exchange; routing key `<tenant>.<event>`.
    Event,
    /// A dispatch queue; routing key = the channel.
    Dispatch,
    /// A caller's `reply_to` queue through the default exchange.
    Reply,
    /// Work for the webhook consumers: `<prefix>webhooks` through the default
    /// exchange (the routing key is unused). Written by the `outbox` trigger
    /// that fans events out to webhook endpoints, and by the webhook consumers.
    Webhook,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Event => "event",
            Target::Dispatch => "dispatch",
            Target::Reply => "reply",
            Target::Webhook => "webhook",
        }
    }
}

/// One outbox row.
pub struct Row {
    pub target: Target,
    pub routing_key: String,
    pub payload: serde_json::Value,
    pub correlation_id: Option<String>,
}

/// Writes rows in one statement.
pub async fn put(conn: &mut PgConnection, rows: &[Row]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let targets: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.routing_key.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = rows.iter().map(|r| &r.payload).collect();
    let correlations: Vec<Option<&str>> = rows.iter().map(|r| r.correlation_id.as_deref()).collect();
    sqlx::query(
        "INSERT INTO outbox (target, routing_key, payload, correlation_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[])",
    )
    .bind(&targets)
    .bind(&keys)
    .bind(&payloads)
    .bind(&correlations)
    .execute(conn)
    .await?;
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    // Our own derive(Serialize) types with string keys always serialise.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The rows announcing an event: to the events exchange, and a copy to the
/// request's `reply_to` queue when it has one.
pub fn event_rows(event: &Event, reply: Option<&ReplyTo>) -> Vec<Row> {
    let payload = to_json(event);
    let mut rows = Vec::with_capacity(2);
    if let Some(reply) = reply {
        rows.push(Row {
            target: Target::Reply,
            routing_key: reply.queue.clone(),
            payload: payload.clone(),
            correlation_id: reply.correlation_id.clone(),
        });
    }
    rows.push(Row { target: Target::Event, routing_key: event.routing_key(), payload, correlation_id: None });
    rows
}

pub fn dispatch_row(job: &DispatchJob) -> Row {
    Row {
        target: Target::Dispatch,
        routing_key: job.channel.as_str().to_owned(),
        payload: to_json(job),
        correlation_id: None,
    }
}

/// Queues an event (and its reply copy).
pub async fn event(conn: &mut PgConnection, event: &Event, reply: Option<&ReplyTo>) -> Result<(), sqlx::Error> {
    put(conn, &event_rows(event, reply)).await
}

pub async fn dispatch(conn: &mut PgConnection, job: &DispatchJob) -> Result<(), sqlx::Error> {
    put(conn, &[dispatch_row(job)]).await
}
