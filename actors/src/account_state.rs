//! The account-state actor: owns what verifyd knows about an account's second
//! factors. In this version it records verified phones (from the verification
//! actor) and takes delivery reports (from dispatch); enrolment, the login gate,
//! backup/recovery codes and policy grow here. Sharded by (tenant, account).

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use verifyd_providers::domain::Channel;

use crate::contract::{Event, EventKind};
use crate::ids::AccountId;
use crate::outbox;
use crate::relay::{Kick, OutboxRelay};
use crate::store::StoreError;
use crate::store::factors::{self, Factor};
use crate::store::verifications::{self, Verification};

pub struct AccountStateActor {
    pool: PgPool,
    relay: Addr<OutboxRelay>,
    /// One instance per process re-delivers approvals a crashed process left behind.
    reconcile: Option<Duration>,
    reconciling: bool,
}

impl AccountStateActor {
    pub fn new(pool: PgPool, relay: Addr<OutboxRelay>, reconcile: Option<Duration>) -> Self {
        AccountStateActor { pool, relay, reconcile, reconciling: false }
    }
}

impl Actor for AccountStateActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(every) = self.reconcile {
            ctx.run_interval(every, |act, ctx| {
                if act.reconciling {
                    return;
                }
                act.reconciling = true;
                let (pool, relay) = (act.pool.clone(), act.relay.clone());
                ctx.spawn(async move { reconcile(&pool, &relay).await }.into_actor(act).map(|result, act, _| {
                    act.reconciling = false;
                    if let Err(error) = result {
                        tracing::warn!(%error, "account state: reconcile pass failed");
                    }
                }));
            });
        }
    }
}

/// A phone verification was approved: the phone becomes an active factor.
#[derive(Debug, Message)]
#[rtype(result = "Result<Factor, StoreError>")]
pub struct PhoneVerified {
    pub verification: Verification,
    pub now: DateTime<Utc>,
}

/// What dispatch learnt about a delivery.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DeliveryReport {
    pub tenant_id: Uuid,
    pub account_id: AccountId,
    pub verification_id: Uuid,
    pub channel: Channel,
    pub delivered: bool,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Factor>, StoreError>")]
pub struct ListFactors {
    pub tenant_id: Uuid,
    pub account_id: AccountId,
}

impl Handler<PhoneVerified> for AccountStateActor {
    type Result = ResponseFuture<Result<Factor, StoreError>>;

    fn handle(&mut self, msg: PhoneVerified, _: &mut Self::Context) -> Self::Result {
        let (pool, relay) = (self.pool.clone(), self.relay.clone());
        Box::pin(async move { record_phone(&pool, &relay, &msg.verification, msg.now).await })
    }
}

impl Handler<DeliveryReport> for AccountStateActor {
    type Result = ();

    fn handle(&mut self, msg: DeliveryReport, _: &mut Self::Context) {
        let outcome = if msg.delivered { "delivered" } else { "failed" };
        metrics::counter!("verifyd_delivery_reports_total", "channel" => msg.channel.as_str(), "outcome" => outcome)
            .increment(1);
        tracing::debug!(verification_id = %msg.verification_id, outcome, "delivery report");
    }
}

impl Handler<ListFactors> for AccountStateActor {
    type Result = ResponseFuture<Result<Vec<Factor>, StoreError>>;

    fn handle(&mut self, msg: ListFactors, _: &mut Self::Context) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move { Ok(factors::list(&pool, msg.tenant_id, &msg.account_id).await?) })
    }
}

async fn record_phone(
    pool: &PgPool,
    relay: &Addr<OutboxRelay>,
    v: &Verification,
    now: DateTime<Utc>,
) -> Result<Factor, StoreError> {
    let verified_at = v.completed_at.unwrap_or(now);
    let mut tx = pool.begin().await?;
    let (factor, added) =
        factors::upsert_phone(&mut tx, v.tenant_id, &v.account_id, v.channel, &v.phone, verified_at).await?;
    verifications::mark_factor_recorded(&mut tx, v.id).await?;
    if added {
        let event = Event::for_verification(EventKind::FactorAdded, v, now)
            .with("factor_id", factor.id.to_string())
            .with("factor_kind", factor.kind.clone());
        outbox::event(&mut tx, &event, None).await?;
    }
    tx.commit().await?;
    if added {
        relay.do_send(Kick);
        tracing::info!(tenant = %v.tenant_name, factor_id = %factor.id, kind = %factor.kind, "factor added");
    }
    Ok(factor)
}

async fn reconcile(pool: &PgPool, relay: &Addr<OutboxRelay>) -> Result<(), StoreError> {
    let now = Utc::now();
    let stale = verifications::unrecorded_approvals(pool, now - TimeDelta::seconds(10), 100).await?;
    for v in stale {
        // One failure does not hold up the others; the next pass retries it.
        if let Err(error) = record_phone(pool, relay, &v, now).await {
            tracing::warn!(verification_id = %v.id, %error, "factor not recorded; next pass retries");
        }
    }
    Ok(())
}
