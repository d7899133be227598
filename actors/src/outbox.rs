//! The transactional outbox: rows written in the same transaction as the state
//! change they announce, published by the relay (`relay.rs`) with publisher
//! confirms and deleted only after the broker confirmed them.

use sqlx::PgConnection;

use crate::contract::{DispatchJob, Event};
use crate::ids::ReplyTo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The events topic exchange; routing key `<tenant>.<event>`.
    Event,
    /// A dispatch queue; routing key = the channel.
    Dispatch,
    /// A caller's `reply_to` queue through the default exchange.
    Reply,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Event => "event",
            Target::Dispatch => "dispatch",
            Target::Reply => "reply",
        }
    }
}

async fn put(
    conn: &mut PgConnection,
    target: Target,
    routing_key: &str,
    payload: serde_json::Value,
    correlation_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (target, routing_key, payload, correlation_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(target.as_str())
    .bind(routing_key)
    .bind(payload)
    .bind(correlation_id)
    .execute(conn)
    .await?;
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    // Our own derive(Serialize) types with string keys always serialise.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Queues an event, and a copy to the request's `reply_to` queue when it has one.
pub async fn event(
    conn: &mut PgConnection,
    event: &Event,
    reply: Option<&ReplyTo>,
) -> Result<(), sqlx::Error> {
    let payload = to_json(event);
    if let Some(reply) = reply {
        put(
            &mut *conn,
            Target::Reply,
            &reply.queue,
            payload.clone(),
            reply.correlation_id.as_deref(),
        )
        .await?;
    }
    put(conn, Target::Event, &event.routing_key(), payload, None).await
}

pub async fn dispatch(conn: &mut PgConnection, job: &DispatchJob) -> Result<(), sqlx::Error> {
    put(
        conn,
        Target::Dispatch,
        job.channel.as_str(),
        to_json(job),
        None,
    )
    .await
}
