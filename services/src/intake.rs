//! The AMQP request intake: consumes `<prefix>requests`, where backends publish
//! `VerificationRequest`s with their tenant's name as routing key (restrict each
//! backend's broker user to its routing key with RabbitMQ topic permissions).
//! Outcomes come back as events, and to `reply_to` with the `correlation_id`.
//! A request that cannot be parsed goes to dead letters with the reason and a
//! `verification.rejected` event; one refused by a throttle or an abuse
//! defence gets the event only.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;
use verifyd_core::dead_letter::Reason;
use verifyd_core::ids::{ReplyTo, Tenant};
use verifyd_core::infra::amqp::{PublishError, Topology, json_properties, publish_confirmed};
use verifyd_core::infra::consumer::{DeliveryHandler, Disposition, Letter, dead_letter};
use verifyd_core::infra::shards::Shards;
use verifyd_core::outbox::contract::VerificationRequest;
use verifyd_core::store::tenants;
use verifyd_core::verification::{Create, Request, VerificationActor, VerificationError};

use crate::http::verifications::parse_request;

pub struct Intake {
    pub pool: PgPool,
    pub verification: Shards<VerificationActor>,
    pub topology: Topology,
    /// `amqp.max_request_bytes`.
    pub max_request_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
enum IntakeError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Verification(VerificationError),
}

impl DeliveryHandler for Intake {
    fn handle(self: Arc<Self>, channel: lapin::Channel, delivery: Delivery) -> BoxFuture<'static, Disposition> {
        Box::pin(async move {
            match self.process(&channel, &delivery).await {
                Ok(()) => Disposition::Ack,
                Err(error) => {
                    tracing::warn!(%error, "request intake: not handled now; requeued");
                    Disposition::Requeue
                }
            }
        })
    }
}

/// Reads a request message's body: the JSON `VerificationRequest`, parsed into
/// domain types like the HTTP body. The error is the reason given to the
/// sender and kept with the dead letter; it never quotes the JSON parser's
/// internals (see `ApiError::malformed_json`).
pub fn decode(body: &[u8], message_id: Option<String>) -> Result<Request, String> {
    crate::http::json::parse::<VerificationRequest>(body)
        .map_err(|e| format!("malformed request: {e}"))
        .and_then(|r| parse_request(r, message_id).map_err(|e| format!("invalid request: {e}")))
}

impl Intake {
    async fn process(&self, channel: &lapin::Channel, delivery: &Delivery) -> Result<(), IntakeError> {
        let tenant_name = delivery.routing_key.as_str();
        let Some(tenant) = tenants::by_name(&self.pool, tenant_name).await? else {
            let reason = format!("unknown tenant {tenant_name:?} (the routing key must be the tenant name)");
            return Ok(dead_letter(
                channel,
                &self.topology.dead_letters(),
                delivery,
                &Letter::of(delivery, Reason::UnknownTenant, &reason),
            )
            .await?);
        };
        let reply = delivery.properties.reply_to().as_ref().map(|q| ReplyTo {
            queue: q.as_str().to_owned(),
            correlation_id: delivery.properties.correlation_id().as_ref().map(|c| c.as_str().to_owned()),
        });
        // verifyd publishes replies with its own broker rights: a caller may only
        // name a queue of its own, or it could push events into anyone's queue.
        if let Some(r) = &reply
            && !self.reply_queue_allowed(&tenant, &r.queue)
        {
            let reason = format!(
                "reply_to must be {}reply.{}.<anything> or amq.rabbitmq.reply-to",
                self.topology.prefix, tenant.name
            );
            self.reject(channel, &tenant, None, json!({ "reason": reason, "error": "invalid_request" })).await?;
            return Ok(dead_letter(
                channel,
                &self.topology.dead_letters(),
                delivery,
                &Letter::of(delivery, Reason::InvalidRequest, &reason),
            )
            .await?);
        }
        // Refused unread: a parser is not handed more than an HTTP body may hold.
        if delivery.data.len() > self.max_request_bytes {
            let reason = format!(
                "request too large: {} bytes, the limit is {} (amqp.max_request_bytes)",
                delivery.data.len(),
                self.max_request_bytes
            );
            let detail = json!({ "reason": reason, "error": "request_too_large" });
            self.reject(channel, &tenant, reply.as_ref(), detail).await?;
            return Ok(dead_letter(
                channel,
                &self.topology.dead_letters(),
                delivery,
                &Letter::of(delivery, Reason::TooLarge, &reason),
            )
            .await?);
        }
        let message_id = delivery.properties.message_id().as_ref().map(|m| m.as_str().to_owned());

        let request = match decode(&delivery.data, message_id) {
            Ok(request) => request,
            Err(reason) => {
                self.reject(channel, &tenant, reply.as_ref(), json!({ "reason": reason, "error": "invalid_request" }))
                    .await?;
                let kind = Reason::from_text(&reason);
                return Ok(dead_letter(
                    channel,
                    &self.topology.dead_letters(),
                    delivery,
                    &Letter::of(delivery, kind, &reason),
                )
                .await?);
            }
        };
        let account_id = request.account_id.as_str().to_owned();
        let shard = self.verification.pick(&(tenant.id, account_id.clone()));
        let result = shard
            .send(Create { tenant: tenant.clone(), request, reply: reply.clone(), now: verifyd_core::timestamp::now() })
            .await
            .map_err(|e| IntakeError::Verification(e.into()))?;
        match result {
            Ok(_) => Ok(()),
            Err(VerificationError::Throttled(t)) => {
                let detail = json!({
                    "error": "throttled", "account_id": account_id, "scope": t.by,
                    "retry_after": verifyd_core::limits::retry_after_secs(t.retry_after),
                });
                self.reject(channel, &tenant, reply.as_ref(), detail).await?;
                Ok(())
            }
            Err(VerificationError::Refused(refused)) => {
                // Valid but refused (geo, number type, a blocked prefix): the
                // event only, with the names and fields HTTP answers with.
                let mut detail = json!({ "reason": refused.to_string(), "account_id": account_id });
                if let (Some(obj), Ok(serde_json::Value::Object(fields))) =
                    (detail.as_object_mut(), serde_json::to_value(&refused))
                {
                    obj.extend(fields);
                }
                self.reject(channel, &tenant, reply.as_ref(), detail).await?;
                Ok(())
            }
            Err(VerificationError::IdempotencyConflict) => {
                let reason = VerificationError::IdempotencyConflict.to_string();
                self.reject(
                    channel,
                    &tenant,
                    reply.as_ref(),
                    json!({ "reason": reason, "error": "idempotency_conflict" }),
                )
                .await?;
                Ok(dead_letter(
                    channel,
                    &self.topology.dead_letters(),
                    delivery,
                    &Letter::of(delivery, Reason::IdempotencyConflict, &reason),
                )
                .await?)
            }
            // A channel that cannot reach the destination, or that no provider
            // serves: the request is at fault, as a field that does not parse.
            Err(e @ (VerificationError::ChannelMismatch(_) | VerificationError::ChannelNotServed(_))) => {
                let reason = format!("invalid request: channel: {e}");
                self.reject(channel, &tenant, reply.as_ref(), json!({ "reason": reason, "error": "invalid_request" }))
                    .await?;
                Ok(dead_letter(
                    channel,
                    &self.topology.dead_letters(),
                    delivery,
                    &Letter::of(delivery, Reason::InvalidRequest, &reason),
                )
                .await?)
            }
            Err(other) => Err(IntakeError::Verification(other)),
        }
    }

    fn reply_queue_allowed(&self, tenant: &Tenant, queue: &str) -> bool {
        let own = format!("{}reply.{}.", self.topology.prefix, tenant.name);
        (queue.starts_with(&own) && queue.len() > own.len()) || queue.starts_with("amq.rabbitmq.reply-to")
    }

    /// Announces a request that created no verification (nothing to store, so it
    /// is published directly, with confirms).
    async fn reject(
        &self,
        channel: &lapin::Channel,
        tenant: &Tenant,
        reply: Option<&ReplyTo>,
        detail: serde_json::Value,
    ) -> Result<(), PublishError> {
        let mut event = json!({
            "event_id": Uuid::new_v4(),
            "event": "verification.rejected",
            "tenant": tenant.name,
            "occurred_at": verifyd_core::timestamp::format(verifyd_core::timestamp::now()),
        });
        if let (Some(obj), serde_json::Value::Object(extra)) = (event.as_object_mut(), detail) {
            obj.extend(extra);
        }
        let body = event.to_string();
        let routing_key = format!("{}.verification.rejected", tenant.name);
        publish_confirmed(channel, &self.topology.events_exchange(), &routing_key, body.as_bytes(), json_properties())
            .await?;
        if let Some(reply) = reply {
            let mut props = json_properties();
            if let Some(c) = &reply.correlation_id {
                props = props.with_correlation_id(c.as_str().into());
            }
            publish_confirmed(channel, "", &reply.queue, body.as_bytes(), props).await?;
        }
        metrics::counter!("verifyd_requests_rejected_total").increment(1);
        Ok(())
    }
}
