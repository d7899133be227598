//! The dead-letter keeper: consumes `<prefix>dead_letters` (one consumer per
//! process) and records each letter in the `dead_letters` table, so that
//! operators list and open letters from PostgreSQL and no listing ever drains
//! or reorders a queue. A letter is acked only once recorded; recording is
//! idempotent on the letter's id, so a redelivered letter is recorded once,
//! and dispatch's own letters (already recorded in the transaction of the
//! job's final attempt) are only acknowledged.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::dead_letter::Reason;
use crate::infra::amqp::{Topology, header_str};
use crate::infra::consumer::{DeliveryHandler, Disposition};
use crate::outbox::contract::DispatchJob;
use crate::store::dead_letters::{self, NewLetter};
use crate::store::tenants;

pub struct DeadLetterKeeper {
    pub pool: PgPool,
    pub topology: Topology,
}

impl DeliveryHandler for DeadLetterKeeper {
    fn handle(self: Arc<Self>, _: lapin::Channel, delivery: Delivery) -> BoxFuture<'static, Disposition> {
        Box::pin(async move {
            match self.record(&delivery).await {
                Ok(()) => Disposition::Ack,
                Err(error) => {
                    tracing::warn!(%error, "dead-letter keeper: letter not recorded now; requeued");
                    Disposition::Requeue
                }
            }
        })
    }
}

/// What a letter's headers say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Headers {
    pub id: Option<String>,
    pub reason: String,
    pub kind: Reason,
    pub source_routing_key: Option<String>,
    pub source_exchange: Option<String>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
}

/// Text from a message, fit for a PostgreSQL text column: no NUL (which
/// PostgreSQL refuses), at most `max` characters.
fn text(raw: &str, max: usize) -> String {
    raw.chars().map(|c| if c == '\0' { '\u{fffd}' } else { c }).take(max).collect()
}

impl Headers {
    pub fn of(props: &lapin::BasicProperties) -> Headers {
        let header = |name: &str| header_str(props, name).map(|v| text(&v, 2000));
        let reason = header("x-verifyd-reason").unwrap_or_else(|| "no reason recorded".to_owned());
        let kind = header("x-verifyd-reason-kind")
            .and_then(|k| Reason::parse(&k))
            .unwrap_or_else(|| Reason::from_text(&reason));
        Headers {
            id: header("x-verifyd-dead-letter-id").map(|id| text(&id, 100)),
            kind,
            reason,
            source_routing_key: header("x-verifyd-source-routing-key").map(|k| text(&k, 255)),
            source_exchange: header("x-verifyd-source-exchange").map(|k| text(&k, 255)),
            dead_lettered_at: header("x-verifyd-dead-lettered-at")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.to_utc()),
        }
    }

    /// The letter's key: its id, or for a letter without one (dead-lettered
    /// before ids, or by another sender) a digest of what it holds, so that
    /// its redeliveries are still recorded once.
    pub fn key(&self, body: &[u8]) -> String {
        if let Some(id) = &self.id {
            return id.clone();
        }
        let mut digest = Sha256::new();
        for part in [
            self.reason.as_bytes(),
            self.source_routing_key.as_deref().unwrap_or_default().as_bytes(),
            self.dead_lettered_at.map(|t| t.to_rfc3339()).unwrap_or_default().as_bytes(),
            body,
        ] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        format!("sha256:{}", hex::encode(digest.finalize()))
    }
}

impl DeadLetterKeeper {
    async fn record(&self, delivery: &Delivery) -> Result<(), sqlx::Error> {
        let headers = Headers::of(&delivery.properties);
        let key = headers.key(&delivery.data);
        let exchange = headers.source_exchange.as_deref().unwrap_or_default();
        let routing_key = headers.source_routing_key.as_deref().unwrap_or_default();
        let (mut tenant_id, mut verification_id, mut job_id, mut channel) = (None, None, None, None);
        let source_queue = if exchange == self.topology.dispatch_exchange() {
            if let Ok(job) = serde_json::from_slice::<DispatchJob>(&delivery.data) {
                tenant_id = sqlx::query_scalar("SELECT tenant_id FROM verifications WHERE id = $1")
                    .bind(job.verification_id)
                    .fetch_optional(&self.pool)
                    .await?;
                (verification_id, job_id, channel) = (Some(job.verification_id), Some(job.job_id), Some(job.channel));
            }
            match routing_key.parse() {
                Ok(channel) => self.topology.dispatch_queue(channel),
                Err(_) => format!("{exchange} ({routing_key})"),
            }
        } else if exchange == self.topology.requests_exchange() {
            tenant_id = tenants::by_name(&self.pool, routing_key).await?.map(|t| t.id);
            self.topology.requests_queue()
        } else if routing_key.is_empty() {
            "unknown".to_owned()
        } else {
            format!("{exchange} ({routing_key})")
        };
        let content_type = delivery.properties.content_type().as_ref().map(|c| text(c.as_str(), 255));
        let letter = NewLetter {
            id: Uuid::new_v4(),
            letter_key: &key,
            tenant_id,
            verification_id,
            job_id,
            channel,
            source_queue: &source_queue,
            kind: headers.kind,
            reason: &headers.reason,
            body: &delivery.data,
            content_type: content_type.as_deref(),
            dead_lettered_at: headers.dead_lettered_at.unwrap_or_else(crate::timestamp::now),
            webhook_delivery_id: None,
        };
        let mut conn = self.pool.acquire().await?;
        let recorded = match dead_letters::insert(&mut conn, &letter).await {
            // Data PostgreSQL refuses (a tenant deleted meanwhile, a value it
            // cannot store) would be refused on every redelivery: record what
            // can be, rather than requeue it forever.
            Err(sqlx::Error::Database(db)) if db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23")) => {
                tracing::error!(letter_id = %letter.id, code = db.code().as_deref().unwrap_or("-"),
                    "dead letter could not be recorded as it is; recording it without its tenant and job");
                let bare = NewLetter { tenant_id: None, verification_id: None, job_id: None, channel: None, ..letter };
                dead_letters::insert(&mut conn, &bare).await?
            }
            other => other?,
        };
        if recorded {
            tracing::warn!(letter_id = %letter.id, queue = %source_queue, reason_kind = headers.kind.as_str(),
                "dead letter recorded: see `verifyd dead-letters list`");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{AMQPValue, FieldTable};

    use super::*;

    fn props(headers: &[(&str, &str)]) -> lapin::BasicProperties {
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert((*k).into(), AMQPValue::LongString((*v).into()));
        }
        lapin::BasicProperties::default().with_headers(table)
    }

    #[test]
    fn a_letter_is_known_by_its_id_or_else_by_what_it_holds() {
        let with_id = Headers::of(&props(&[
            ("x-verifyd-dead-letter-id", "abc"),
            ("x-verifyd-reason", "retries exhausted after 3 tries: x"),
            ("x-verifyd-reason-kind", "retries_exhausted"),
        ]));
        assert_eq!(with_id.key(b"{}"), "abc");
        assert_eq!(with_id.kind, Reason::RetriesExhausted);

        let old = Headers::of(&props(&[
            ("x-verifyd-reason", "malformed dispatch job: expected value"),
            ("x-verifyd-dead-lettered-at", "2026-12-01T10:00:00+00:00"),
        ]));
        assert_eq!(old.kind, Reason::Malformed, "classified from its text");
        assert_eq!(old.key(b"x"), old.key(b"x"));
        assert_ne!(old.key(b"x"), old.key(b"y"));
        assert!(old.key(b"x").starts_with("sha256:"));
        assert_eq!(old.dead_lettered_at.map(|t| t.to_rfc3339()).as_deref(), Some("2026-12-01T10:00:00+00:00"));

        let bare = Headers::of(&lapin::BasicProperties::default());
        assert_eq!((bare.kind, bare.reason.as_str()), (Reason::Other, "no reason recorded"));
    }
}
