//! The account-state actor: owns everything an account's two-factor life needs
//! — factors and their enrolment (`enrolment.rs`), backup and recovery codes,
//! the login gate and step-up (`gate.rs`), and the changes that need authority:
//! deleting a factor, the default factor, organisation policy, admin reset
//! (`admin.rs`). All three answer challenges and mint proofs through
//! `answer.rs`; the gate's pure rules are `rules.rs`, proofs' format
//! `proof.rs`, organisation policy `policy.rs`. Verification and dispatch feed
//! their results back here.
//!
//! Sharded by (tenant, account); each shard runs an account's requests one
//! after another, in arrival order (`infra/lanes.rs`). Every decision is made inside one PostgreSQL
//! transaction (with row or advisory locks where two requests could race), so
//! any number of processes give the same answers; every change a user should
//! hear about is an event on the outbox and an entry in the audit trail, written
//! in that same transaction.

mod admin;
mod answer;
mod enrolment;
mod gate;
pub mod policy;
pub mod proof;
pub mod rules;

pub use admin::{
    ActivateFactor, RemovalAuthority, RemoveFactor, Reset, ResetAccount, ResetAuthority, SetDefaultFactor, SetPolicy,
};
pub use answer::Passed;
pub use enrolment::{ConfirmTotp, Confirmed, EnrolTotp, GenerateBackupCodes, GenerateRecoveryCode};
pub use gate::{AnswerChallenge, ChallengeView, LoginOutcome, OpenChallenge, SendAgain, Sent};

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Code};

use crate::account::policy::PolicyRefusal;
use crate::account::proof::{Claims, ProofError};
use crate::account::rules::GateSettings;
use crate::codes::keys::CodeKeys;
use crate::codes::recovery::RecoveryCode;
use crate::codes::totp;
use crate::domain::challenge::AnsweredBy;
use crate::domain::challenge::ChallengeStatus;
use crate::ids::{AccountId, OrganisationId, Tenant, Who};
use crate::infra::lanes::{Lanes, Ordered};
use crate::outbox;
use crate::outbox::contract::{Event, EventKind};
use crate::outbox::relay::{self, OutboxRelay};
use crate::store::StoreError;
use crate::store::audit::{self, Entry};
use crate::store::challenges;
use crate::store::factors::{self, AccountTx, Factor};
use crate::store::verifications::{self, Verification};
use crate::verification::{ApprovedPhones, Issuer, StepUpProof, VerificationError};

/// One shard of account state. It owns the order of its accounts' requests:
/// a request starts only when the ones before it for the same account (or
/// organisation) have finished, so in process they never wait on each other's
/// locks in PostgreSQL, holding a connection; other accounts run alongside.
/// It also owns the reconcile timer on the one instance that runs it.
pub struct AccountStateActor {
    issuer: Arc<Issuer>,
    gate: GateSettings,
    lanes: Lanes<Owner>,
    /// One instance per process re-delivers approvals a crashed process left behind.
    reconcile: Option<Duration>,
    reconciling: bool,
}

/// Whose requests a shard keeps in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    Account(Uuid, String),
    Organisation(Uuid, String),
}

impl Owner {
    pub fn account(tenant: &Tenant, account_id: &AccountId) -> Self {
        Owner::Account(tenant.id, account_id.as_str().to_owned())
    }
}

impl AccountStateActor {
    pub fn new(issuer: Arc<Issuer>, gate: GateSettings, reconcile: Option<Duration>) -> Self {
        AccountStateActor { issuer, gate, lanes: Lanes::default(), reconcile, reconciling: false }
    }

    fn deps(&self) -> Deps {
        Deps { issuer: self.issuer.clone(), gate: self.gate }
    }
}

/// What each request's plain function works with: the shard hands a copy to
/// every request, so none of them needs the actor or a mailbox.
#[derive(Clone)]
struct Deps {
    issuer: Arc<Issuer>,
    gate: GateSettings,
}

/// Each message waits its turn on its lane (the account, or the organisation
/// whose policy it changes), then runs as a plain function of `Deps` and the
/// message, in `enrolment.rs`, `gate.rs`, `admin.rs` or below.
macro_rules! ordered {
    ($($msg:ident => $run:path, $out:ty, |$m:ident| $lane:expr;)*) => {$(
        impl Handler<$msg> for AccountStateActor {
            type Result = ResponseActFuture<Self, Result<$out, AccountError>>;

            fn handle(&mut self, $m: $msg, _: &mut Self::Context) -> Self::Result {
                let lane = $lane;
                let deps = self.deps();
                self.in_order(lane, $run(deps, $m))
            }
        }
    )*};
}

ordered! {
    EnrolTotp => enrolment::enrol_totp, (Factor, totp::Enrolment), |m| Owner::account(&m.tenant, &m.account_id);
    ConfirmTotp => enrolment::confirm_totp, Confirmed, |m| Owner::account(&m.tenant, &m.account_id);
    GenerateBackupCodes => enrolment::generate_backup_codes, Vec<Code>, |m| Owner::account(&m.tenant, &m.account_id);
    GenerateRecoveryCode => enrolment::generate_recovery_code, RecoveryCode, |m| Owner::account(&m.tenant, &m.account_id);
    OpenChallenge => gate::open, LoginOutcome, |m| Owner::account(&m.tenant, &m.account_id);
    SendAgain => gate::send_again, Sent, |m| Owner::account(&m.tenant, &m.account_id);
    AnswerChallenge => gate::answer_challenge, Passed, |m| Owner::account(&m.tenant, &m.account_id);
    RemoveFactor => admin::remove_factor, Factor, |m| Owner::account(&m.tenant, &m.account_id);
    SetDefaultFactor => admin::set_default_factor, Factor, |m| Owner::account(&m.tenant, &m.account_id);
    ActivateFactor => admin::activate_factor, Factor, |m| Owner::account(&m.tenant, &m.account_id);
    SetPolicy => admin::set_policy, policy::Change, |m| Owner::Organisation(m.tenant.id, m.organisation_id.as_str().to_owned());
    ResetAccount => admin::reset_account, Reset, |m| Owner::account(&m.tenant, &m.account_id);
    ListFactors => list_factors, Vec<Factor>, |m| Owner::Account(m.tenant_id, m.account_id.as_str().to_owned());
}

impl Ordered for AccountStateActor {
    type Lane = Owner;

    fn lanes(&mut self) -> &mut Lanes<Owner> {
        &mut self.lanes
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
                let issuer = act.issuer.clone();
                ctx.spawn(async move { reconcile(&issuer.pool, &issuer.relay).await }.into_actor(act).map(
                    |result, act, _| {
                        act.reconciling = false;
                        if let Err(error) = result {
                            tracing::warn!(%error, "account state: reconcile pass failed");
                        }
                    },
                ));
            });
        }
    }
}

/// Why an account-state request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no such factor or challenge for this account")]
    NotFound,
    #[error("wrong code")]
    WrongCode { attempts_left: i32 },
    #[error("too many wrong codes: the enrolment was abandoned; enrol again")]
    EnrolmentAbandoned,
    #[error("the factor is already active")]
    AlreadyActive,
    #[error("the challenge is {}", .0.as_str())]
    ChallengeClosed(ChallengeStatus),
    #[error("the account has no active second factor to challenge")]
    NoFactor,
    #[error("this action needs a step-up: answer a challenge and pass its proof (step_up)")]
    StepUpRequired,
    #[error("the proof is not accepted: {0}")]
    InvalidProof(ProofError),
    #[error(transparent)]
    Throttled(#[from] crate::limits::Throttled),
    #[error("this is the account's last factor and an organisation it belongs to makes two-factor mandatory")]
    LastFactorMandatory,
    #[error(transparent)]
    Policy(#[from] PolicyRefusal),
    #[error(transparent)]
    Verification(#[from] VerificationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Totp(#[from] totp::TotpError),
    #[error("the stored secret does not open with this key")]
    Sealed,
    #[error("the account already has {0} factors, the most it may hold: remove one first")]
    TooManyFactors(i64),
}

/// A request whose task failed (see `Ordered::in_order`): answered as the
/// verification flow answers a closed mailbox.
impl From<MailboxError> for AccountError {
    fn from(e: MailboxError) -> Self {
        AccountError::Verification(VerificationError::Mailbox(e))
    }
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        AccountError::Store(StoreError::Db(e))
    }
}

/// What an approval changed on the account.
#[derive(Debug, Default)]
pub struct PhoneRecorded {
    /// The phone factor (`None`: recorded already, or the code was a challenge's).
    pub factor: Option<Factor>,
    /// When the phone is the account's first factor, the code just typed is
    /// a fresh second factor as a first authenticator's confirmation is: a
    /// step-up proof (and when it expires), so the backend can show the
    /// recovery code right away, without sending another code.
    pub proof: Option<StepUpProof>,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Factor>, AccountError>")]
pub struct ListFactors {
    pub tenant_id: Uuid,
    pub account_id: AccountId,
}

/// Records approved phones for the verification flow, in the check's own
/// task: `record_phone` is one transaction under the account's lock, so an
/// actor hop would add a spawn and order nothing.
pub struct PhoneRecorder {
    pub issuer: Arc<Issuer>,
    pub gate: GateSettings,
}

impl ApprovedPhones for PhoneRecorder {
    fn record<'a>(
        &'a self,
        verification: &'a Verification,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Option<StepUpProof>, String>> {
        Box::pin(async move {
            let proofs = Some((&*self.issuer.keys, &self.gate));
            record_phone(&self.issuer.pool, &self.issuer.relay, verification, proofs, now)
                .await
                .map(|recorded| recorded.proof)
                .map_err(|e| e.to_string())
        })
    }
}

async fn list_factors(deps: Deps, msg: ListFactors) -> Result<Vec<Factor>, AccountError> {
    let mut conn = deps.issuer.pool.acquire().await?;
    Ok(factors::list(&mut conn, msg.tenant_id, &msg.account_id).await?)
}

/// Records an approved phone as a factor. With `proofs` (the check that
/// approved it is waiting for the answer), a first factor also mints the
/// step-up proof of `PhoneRecorded`; the reconcile pass has no one to give one to.
async fn record_phone(
    pool: &PgPool,
    relay: &Addr<OutboxRelay>,
    v: &Verification,
    proofs: Option<(&CodeKeys, &GateSettings)>,
    now: DateTime<Utc>,
) -> Result<PhoneRecorded, AccountError> {
    let verified_at = v.completed_at.unwrap_or(now);
    let mut tx = AccountTx::begin(pool, v.tenant_id, &v.account_id).await?;
    // Once per approval, and never for a code that was not to make a factor:
    // a challenge's (it proves a factor the account has, by whichever
    // channel that send took; checked through the verification API it must
    // not add a factor of that channel, nor bring back a deleted one), or one
    // an admin reset overtook.
    if !verifications::claim_factor_recording(&mut tx, v.id).await? {
        tx.commit().await?;
        return Ok(PhoneRecorded::default());
    }

    // The first factor is active at once. Next to an active factor, a new
    // phone waits for a step-up (`ActivateFactor`): whoever can verify a phone
    // must not thereby get past the factor the account already has.
    let first = !factors::has_active(&mut tx, v.tenant_id, &v.account_id).await?;
    let (mut factor, mut added) =
        factors::upsert_destination(&mut tx, v.tenant_id, &v.account_id, v.channel, &v.to, first, verified_at).await?;
    if first && !factor.is_active() {
        // Pending beside a factor that has gone since: verified again, it is the first now.
        if let Some(active) = factors::activate(&mut tx, v.tenant_id, &v.account_id, factor.id).await? {
            (factor, added) = (active, true);
        }
    }
    let mut proof = None;
    if added && factor.is_active() {
        factors::ensure_default(&mut tx).await?;
        // An account event like any other factor.added: no verification id,
        // number or channel (those are the verification's events').
        let tenant = Tenant { id: v.tenant_id, name: v.tenant_name.clone() };
        let event = factor_event(EventKind::FactorAdded, &tenant, &v.account_id, &factor, now);
        // The person enrolled, through the key that asked for the code.
        let who = Who { actor: v.account_id.clone(), api_key_id: v.api_key_id.clone() };
        announce(&mut tx, v.tenant_id, &event, None, &who).await?;
        if let (true, Some((keys, settings))) = (first, proofs) {
            let by = if v.channel == Channel::Email { AnsweredBy::Email } else { AnsweredBy::Phone };
            let at = answer::At { tenant: &tenant, account_id: &v.account_id, now };
            let (token, claims) =
                answer::passed_without_challenge(&mut tx, answer::Proofs { keys, settings }, at, by, Some(factor.id))
                    .await?;
            proof = Some((token, claims.expires()));
        }
    }
    let announced = added && factor.is_active();
    relay::commit_if(tx, relay, announced).await?;
    if announced {
        tracing::info!(tenant = %v.tenant_name, factor_id = %factor.id, kind = %factor.kind, "factor added");
    }
    Ok(PhoneRecorded { factor: Some(factor), proof })
}

async fn reconcile(pool: &PgPool, relay: &Addr<OutboxRelay>) -> Result<(), StoreError> {
    let now = crate::timestamp::now();
    let stale = verifications::unrecorded_approvals(pool, now - TimeDelta::seconds(10), 100).await?;
    for v in stale {
        // One failure does not hold up the others; the next pass retries it.
        if let Err(error) = record_phone(pool, relay, &v, None, now).await {
            tracing::warn!(verification_id = %v.id, %error, "factor not recorded; next pass retries");
        }
    }
    Ok(())
}

/// An event about one factor: its id and kind, for the user's email.
fn factor_event(
    kind: EventKind,
    tenant: &Tenant,
    account_id: &AccountId,
    factor: &Factor,
    now: DateTime<Utc>,
) -> Event {
    account_event(kind, tenant, account_id, now)
        .with("factor_id", factor.id.to_string())
        .with("factor_kind", factor.kind.as_str())
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

/// Announces a change in the caller's transaction: the event on the outbox (for
/// the backend to email the user) and the same facts in the audit trail, with
/// who made the change.
async fn announce(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    event: &Event,
    organisation_id: Option<&OrganisationId>,
    who: &Who,
) -> Result<(), sqlx::Error> {
    debug_assert!(
        event.verification_id.is_none() && event.to.is_none() && event.channel.is_none(),
        "an account event carries account fields only: {:?}",
        event.event
    );
    outbox::event(&mut *tx, event, None).await?;
    let entry = Entry {
        tenant_id,
        account_id: Some(event.account_id.as_str()),
        organisation_id,
        action: event.event.as_str(),
        who,
        detail: serde_json::Value::Object(event.detail.clone()),
        at: event.occurred_at,
    };
    audit::record(tx, entry).await
}

/// Whether the account holds an active factor: adding another one, or making
/// codes that get past it, then needs a step-up.
async fn has_active_factor(
    tx: &mut PgConnection,
    tenant: &Tenant,
    account_id: &AccountId,
) -> Result<bool, AccountError> {
    Ok(factors::has_active(tx, tenant.id, account_id).await?)
}

/// A restricted action goes ahead only with a fresh proof of a challenge this
/// account passed, which still stands (an admin reset deletes challenges).
async fn require_step_up(
    tx: &mut PgConnection,
    keys: &CodeKeys,
    tenant: &Tenant,
    account_id: &AccountId,
    proof: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Claims, AccountError> {
    let token = proof.ok_or(AccountError::StepUpRequired)?;
    let claims = proof::verify(keys, token, now).map_err(AccountError::InvalidProof)?;
    if claims.tenant_id != tenant.id || claims.account_id != account_id.as_str() {
        return Err(AccountError::InvalidProof(ProofError::OtherAccount));
    }
    if !challenges::is_passed(tx, tenant.id, account_id, claims.challenge_id).await? {
        return Err(AccountError::StepUpRequired);
    }
    Ok(claims)
}
