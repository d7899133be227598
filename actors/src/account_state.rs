//! The account-state actor: owns what verifyd knows about an account's second
//! factors. In this version it records verified phones (from the verification
//! actor) and takes delivery reports (from dispatch); enrolment, the login gate,
//! backup/recovery codes and policy grow here. Sharded by (tenant, account).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use verifyd_providers::domain::Channel;

use crate::contract::{Event, EventKind};
use crate::ids::{AccountId, Tenant};
use crate::keys::CodeKeys;
use crate::outbox;
use crate::recovery::RecoveryCode;
use crate::relay::{Kick, OutboxRelay};
use crate::store::StoreError;
use crate::store::backup_codes::{self, Kind};
use crate::store::factors::{self, Factor};
use crate::store::verifications::{self, Verification};
use crate::totp::{self, Enrolment};
use verifyd_providers::domain::{Code, CodeLength};

pub struct AccountStateActor {
    pool: PgPool,
    relay: Addr<OutboxRelay>,
    keys: Arc<CodeKeys>,
    /// One instance per process re-delivers approvals a crashed process left behind.
    reconcile: Option<Duration>,
    reconciling: bool,
}

impl AccountStateActor {
    pub fn new(pool: PgPool, relay: Addr<OutboxRelay>, keys: Arc<CodeKeys>, reconcile: Option<Duration>) -> Self {
        AccountStateActor { pool, relay, keys, reconcile, reconciling: false }
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

/// Why an account-state request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no such factor for this account")]
    NotFound,
    #[error("wrong code")]
    WrongCode { attempts_left: i32 },
    #[error("too many wrong codes: the enrolment was abandoned; enrol again")]
    EnrolmentAbandoned,
    #[error("the factor is already active")]
    AlreadyActive,
    #[error("invalid or already used code")]
    InvalidCode,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Totp(#[from] totp::TotpError),
    #[error("the stored secret does not open with this key")]
    Sealed,
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        AccountError::Store(StoreError::Db(e))
    }
}

/// Wrong confirmation codes allowed before a pending enrolment is dropped.
const MAX_CONFIRM_ATTEMPTS: i32 = 5;
/// Codes in a backup set, and their length.
pub const BACKUP_CODES: usize = 10;
const BACKUP_CODE_DIGITS: u8 = 8;

/// Starts an authenticator-app enrolment: a pending factor and what the person
/// needs to add it to the app. The secret is returned only here.
#[derive(Debug, Message)]
#[rtype(result = "Result<(Factor, Enrolment), AccountError>")]
pub struct EnrolTotp {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub label: Option<String>,
}

/// The first correct code activates a pending authenticator factor.
#[derive(Message)]
#[rtype(result = "Result<Factor, AccountError>")]
pub struct ConfirmTotp {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub factor_id: Uuid,
    pub code: String,
    pub now: DateTime<Utc>,
}

/// A new set of backup codes; the old set stops working. The caller has checked
/// that the person's password was verified just now.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Code>, AccountError>")]
pub struct GenerateBackupCodes {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub now: DateTime<Utc>,
}

/// Uses one backup code; returns how many are left.
#[derive(Debug, Message)]
#[rtype(result = "Result<i64, AccountError>")]
pub struct RedeemBackupCode {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub code: Code,
    pub now: DateTime<Utc>,
}

fn account_event(kind: EventKind, tenant: &Tenant, account_id: &AccountId, now: DateTime<Utc>) -> Event {
    Event {
        event_id: Uuid::new_v4(),
        event: kind,
        tenant: tenant.name.clone(),
        occurred_at: now,
        verification_id: None,
        account_id: account_id.as_str().to_owned(),
        to: None,
        channel: None,
        status: None,
        detail: serde_json::Map::new(),
    }
}

impl Handler<EnrolTotp> for AccountStateActor {
    type Result = ResponseFuture<Result<(Factor, Enrolment), AccountError>>;

    fn handle(&mut self, msg: EnrolTotp, _: &mut Self::Context) -> Self::Result {
        let (pool, keys) = (self.pool.clone(), self.keys.clone());
        Box::pin(async move {
            let id = Uuid::new_v4();
            let secret = totp::new_secret();
            let label = msg.label.as_deref().unwrap_or(msg.account_id.as_str());
            let enrolment = totp::enrolment(&secret, &msg.tenant.name, label)?;
            let sealed = keys.seal_bytes(id, &secret);
            let mut conn = pool.acquire().await?;
            let factor =
                factors::insert_totp(&mut conn, id, msg.tenant.id, &msg.account_id, msg.label.as_deref(), &sealed)
                    .await?;
            tracing::info!(tenant = %msg.tenant.name, factor_id = %id, "authenticator enrolment started");
            Ok((factor, enrolment))
        })
    }
}

impl Handler<ConfirmTotp> for AccountStateActor {
    type Result = ResponseFuture<Result<Factor, AccountError>>;

    fn handle(&mut self, msg: ConfirmTotp, _: &mut Self::Context) -> Self::Result {
        let (pool, keys, relay) = (self.pool.clone(), self.keys.clone(), self.relay.clone());
        Box::pin(async move {
            let mut tx = pool.begin().await?;
            let state = factors::lock_totp(&mut tx, msg.tenant.id, &msg.account_id, msg.factor_id)
                .await?
                .ok_or(AccountError::NotFound)?;
            if state.status == "active" {
                return Err(AccountError::AlreadyActive);
            }
            let secret = keys.open_bytes(msg.factor_id, &state.totp_sealed).map_err(|_| AccountError::Sealed)?;
            let unix = u64::try_from(msg.now.timestamp()).unwrap_or_default();
            let Some(step) = totp::accept(&secret, &msg.code, unix, state.totp_last_step) else {
                let attempts = factors::count_wrong_confirmation(&mut tx, msg.factor_id).await?;
                if attempts >= MAX_CONFIRM_ATTEMPTS {
                    factors::delete(&mut tx, msg.factor_id).await?;
                    tx.commit().await?;
                    return Err(AccountError::EnrolmentAbandoned);
                }
                tx.commit().await?;
                return Err(AccountError::WrongCode { attempts_left: MAX_CONFIRM_ATTEMPTS - attempts });
            };
            let factor = factors::accept_totp(&mut tx, msg.factor_id, step, msg.now).await?;
            let event = account_event(EventKind::FactorAdded, &msg.tenant, &msg.account_id, msg.now)
                .with("factor_id", factor.id.to_string())
                .with("factor_kind", "totp");
            outbox::event(&mut tx, &event, None).await?;
            tx.commit().await?;
            relay.do_send(Kick);
            tracing::info!(tenant = %msg.tenant.name, factor_id = %factor.id, "authenticator factor active");
            Ok(factor)
        })
    }
}

impl Handler<GenerateBackupCodes> for AccountStateActor {
    type Result = ResponseFuture<Result<Vec<Code>, AccountError>>;

    fn handle(&mut self, msg: GenerateBackupCodes, _: &mut Self::Context) -> Self::Result {
        let store = self.code_store();
        Box::pin(async move {
            let length = CodeLength::new(BACKUP_CODE_DIGITS).unwrap_or_default();
            let mut codes: Vec<Code> = Vec::with_capacity(BACKUP_CODES);
            while codes.len() < BACKUP_CODES {
                let code = Code::generate(length);
                if !codes.iter().any(|c| c.ct_eq(&code)) {
                    codes.push(code);
                }
            }
            let secrets: Vec<&str> = codes.iter().map(Code::expose).collect();
            let event = account_event(EventKind::BackupCodesGenerated, &msg.tenant, &msg.account_id, msg.now)
                .with("remaining", BACKUP_CODES);
            store.replace_codes(Kind::Backup, &msg.tenant, &msg.account_id, &secrets, event, msg.now).await?;
            Ok(codes)
        })
    }
}

impl Handler<RedeemBackupCode> for AccountStateActor {
    type Result = ResponseFuture<Result<i64, AccountError>>;

    fn handle(&mut self, msg: RedeemBackupCode, _: &mut Self::Context) -> Self::Result {
        let store = self.code_store();
        Box::pin(async move {
            let (tenant, account_id) = (&msg.tenant, &msg.account_id);
            store.redeem_code(Kind::Backup, tenant, account_id, msg.code.expose(), msg.now).await
        })
    }
}
/// A new recovery code; the old one stops working. The caller has checked that
/// the person's password was verified just now.
#[derive(Debug, Message)]
#[rtype(result = "Result<RecoveryCode, AccountError>")]
pub struct GenerateRecoveryCode {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub now: DateTime<Utc>,
}

/// Uses the recovery code (once).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), AccountError>")]
pub struct RedeemRecoveryCode {
    pub tenant: Tenant,
    pub account_id: AccountId,
    pub code: RecoveryCode,
    pub now: DateTime<Utc>,
}

impl Handler<GenerateRecoveryCode> for AccountStateActor {
    type Result = ResponseFuture<Result<RecoveryCode, AccountError>>;

    fn handle(&mut self, msg: GenerateRecoveryCode, _: &mut Self::Context) -> Self::Result {
        let store = self.code_store();
        Box::pin(async move {
            let code = RecoveryCode::generate();
            let event = account_event(EventKind::RecoveryCodeGenerated, &msg.tenant, &msg.account_id, msg.now);
            let (tenant, account_id) = (&msg.tenant, &msg.account_id);
            store.replace_codes(Kind::Recovery, tenant, account_id, &[code.expose()], event, msg.now).await?;
            Ok(code)
        })
    }
}

impl Handler<RedeemRecoveryCode> for AccountStateActor {
    type Result = ResponseFuture<Result<(), AccountError>>;

    fn handle(&mut self, msg: RedeemRecoveryCode, _: &mut Self::Context) -> Self::Result {
        let store = self.code_store();
        Box::pin(async move {
            let (tenant, account_id) = (&msg.tenant, &msg.account_id);
            store.redeem_code(Kind::Recovery, tenant, account_id, msg.code.expose(), msg.now).await?;
            Ok(())
        })
    }
}

/// What the single-use code handlers work with.
struct CodeStore {
    pool: PgPool,
    keys: Arc<CodeKeys>,
    relay: Addr<OutboxRelay>,
}

impl AccountStateActor {
    fn code_store(&self) -> CodeStore {
        CodeStore { pool: self.pool.clone(), keys: self.keys.clone(), relay: self.relay.clone() }
    }
}

impl CodeStore {
    /// Stores a new set of one kind (replacing the old set) and announces it.
    async fn replace_codes(
        &self,
        kind: Kind,
        tenant: &Tenant,
        account_id: &AccountId,
        secrets: &[&str],
        event: Event,
        now: DateTime<Utc>,
    ) -> Result<(), AccountError> {
        let generation = Uuid::new_v4();
        let macs: Vec<Vec<u8>> = secrets.iter().map(|s| self.keys.mac_bytes(generation, s.as_bytes())).collect();
        let mut tx = self.pool.begin().await?;
        backup_codes::replace(&mut tx, kind, tenant.id, account_id, generation, &macs, now).await?;
        outbox::event(&mut tx, &event, None).await?;
        tx.commit().await?;
        self.relay.do_send(Kick);
        tracing::info!(tenant = %tenant.name, kind = ?kind, "single-use codes generated");
        Ok(())
    }

    /// Uses one code of a kind, once; returns how many of the set are left.
    async fn redeem_code(
        &self,
        kind: Kind,
        tenant: &Tenant,
        account_id: &AccountId,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, AccountError> {
        let generation = backup_codes::generation(&self.pool, kind, tenant.id, account_id)
            .await?
            .ok_or(AccountError::InvalidCode)?;
        let mac = self.keys.mac_bytes(generation, secret.as_bytes());
        let mut tx = self.pool.begin().await?;
        let remaining = backup_codes::redeem(&mut tx, kind, tenant.id, account_id, &mac, now)
            .await?
            .ok_or(AccountError::InvalidCode)?;
        let event = match kind {
            Kind::Backup => {
                account_event(EventKind::BackupCodeUsed, tenant, account_id, now).with("remaining", remaining)
            }
            Kind::Recovery => account_event(EventKind::RecoveryCodeUsed, tenant, account_id, now),
        };
        outbox::event(&mut tx, &event, None).await?;
        tx.commit().await?;
        self.relay.do_send(Kick);
        tracing::info!(tenant = %tenant.name, kind = ?kind, "single-use code redeemed");
        Ok(remaining)
    }
}
