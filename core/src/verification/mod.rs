//! Verifications: the actor that orders requests (this file), the service
//! that creates, checks, resends and cancels (`service.rs`), the code issuer
//! it and the login gate share (`issuer.rs`), the pure rules (`lifecycle.rs`)
//! and the expiry timer (`expiry.rs`). Runs as shards: a
//! create goes to its account's shard, a check, resend or cancel to its
//! verification's, and each shard runs one subject's requests in arrival order.
//! All state is in PostgreSQL and every change is one transaction with the
//! outbox rows that announce it.

pub mod expiry;
mod issuer;
pub mod lifecycle;
mod service;

pub use issuer::{Issuer, Policy, SharedBuckets};

use std::net::IpAddr;
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Code, CodeLength, Destination, Locale};

use crate::abuse::Refused;
use crate::domain::verification::Status;
use crate::ids::{AccountId, ReplyTo, Tenant};
use crate::infra::lanes::{Lanes, Ordered};
use crate::limits::Throttled;
use crate::store::StoreError;
use crate::store::verifications::Verification;
use crate::verification::lifecycle::CheckOutcome;

pub struct Deps {
    pub issuer: Arc<Issuer>,
    /// What the account flow does with an approved phone (wired by the runtime).
    pub approved_phones: Arc<dyn ApprovedPhones>,
}

/// A step-up proof and when it expires.
pub type StepUpProof = (String, DateTime<Utc>);

/// What becomes of a phone whose verification was approved: the account flow
/// records it as a factor and, when it is the account's first, answers a
/// step-up proof and its expiry. The verification flow calls it and does not
/// know the account flow (which depends on this one, for codes).
pub trait ApprovedPhones: Send + Sync {
    fn record<'a>(
        &'a self,
        verification: &'a Verification,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Option<StepUpProof>, String>>;
}

/// One shard of the verification service. It owns the order of its
/// requests: creates for one account, and checks, resends and cancels of one
/// verification, run one after another in arrival order, so they never queue
/// on each other's row locks in PostgreSQL holding a connection; other
/// accounts and verifications run alongside. The work itself is the plain
/// functions below (`create`, `check`, `resend`, `cancel`).
pub struct VerificationActor {
    deps: Arc<Deps>,
    lanes: Lanes<Subject>,
}

/// Whose requests a verification shard keeps in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Account(Uuid, String),
    Verification(Uuid),
}

impl VerificationActor {
    pub fn new(deps: Arc<Deps>) -> Self {
        VerificationActor { deps, lanes: Lanes::default() }
    }
}

impl Ordered for VerificationActor {
    type Lane = Subject;

    fn lanes(&mut self) -> &mut Lanes<Subject> {
        &mut self.lanes
    }
}

impl Actor for VerificationActor {
    type Context = Context<Self>;
}

#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    #[error("verification not found")]
    NotFound,
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("verification is {0}")]
    NotPending(Status),
    #[error("{0} cannot reach this verification's destination (a phone for sms and voice, an address for email)")]
    ChannelMismatch(Channel),
    #[error("no provider is configured for {0} (providers.{0})")]
    ChannelNotServed(Channel),
    #[error("the idempotency key was already used for another destination or account")]
    IdempotencyConflict,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal mailbox error: {0}")]
    Mailbox(#[from] MailboxError),
}

impl From<sqlx::Error> for VerificationError {
    fn from(e: sqlx::Error) -> Self {
        VerificationError::Store(StoreError::Db(e))
    }
}

/// Start a verification: make a code, store it protected, queue its delivery.
#[derive(Debug, Message)]
#[rtype(result = "Result<Created, VerificationError>")]
pub struct Create {
    pub tenant: Tenant,
    pub request: Request,
    pub reply: Option<ReplyTo>,
    pub now: DateTime<Utc>,
}

/// A verification request parsed into domain types, whichever edge it came in by
/// (HTTP or AMQP).
#[derive(Debug, Clone)]
pub struct Request {
    pub account_id: AccountId,
    /// Where the code goes: a phone for SMS and voice, an address for email
    /// (the edge checks the two fit).
    pub to: Destination,
    pub channel: Channel,
    pub locale: Locale,
    pub code_length: Option<CodeLength>,
    pub idempotency_key: Option<String>,
    /// The end user's address as the backend saw it, for the per-IP limit.
    pub end_user_ip: Option<IpAddr>,
    /// The API key the request came with (HTTP); `None` over AMQP, where the
    /// broker authenticates the backend. Audited with the factor an approval makes.
    pub api_key_id: Option<String>,
}

#[derive(Debug)]
pub struct Created {
    pub verification: Verification,
    /// The idempotency key was used before: this is the earlier verification.
    pub replayed: bool,
}

/// Check what the person typed.
#[derive(Debug, Message)]
#[rtype(result = "Result<Checked, VerificationError>")]
pub struct Check {
    pub tenant: Tenant,
    pub id: Uuid,
    pub code: Code,
    pub now: DateTime<Utc>,
}

#[derive(Debug)]
pub struct Checked {
    pub verification: Verification,
    pub outcome: CheckOutcome,
    /// A step-up proof and its expiry, when this approval made the phone the
    /// account's first factor (see `account::PhoneRecorded`).
    pub proof: Option<(String, DateTime<Utc>)>,
}

/// Send the same code again, optionally by another channel (for this send only).
#[derive(Debug, Message)]
#[rtype(result = "Result<Resent, VerificationError>")]
pub struct Resend {
    pub tenant: Tenant,
    pub id: Uuid,
    pub channel: Option<Channel>,
    pub now: DateTime<Utc>,
}

/// A send of the same code again.
#[derive(Debug)]
pub struct Resent {
    /// The verification, its own channel unchanged.
    pub verification: Verification,
    /// The channel this send goes by: the one asked for, else the verification's.
    pub channel: Channel,
}

/// Call a pending verification off: its code can no longer be used, and
/// dispatch drops its queued deliveries when it reaches them.
#[derive(Debug, Message)]
#[rtype(result = "Result<Verification, VerificationError>")]
pub struct Cancel {
    pub tenant: Tenant,
    pub id: Uuid,
    pub now: DateTime<Utc>,
}

impl Handler<Cancel> for VerificationActor {
    type Result = ResponseActFuture<Self, Result<Verification, VerificationError>>;

    fn handle(&mut self, msg: Cancel, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.in_order(Subject::Verification(msg.id), async move { service::cancel(&deps, msg).await })
    }
}

impl Handler<Create> for VerificationActor {
    type Result = ResponseActFuture<Self, Result<Created, VerificationError>>;

    fn handle(&mut self, msg: Create, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.in_order(Subject::Account(msg.tenant.id, msg.request.account_id.as_str().to_owned()), async move {
            service::create(&deps, msg).await
        })
    }
}

impl Handler<Check> for VerificationActor {
    type Result = ResponseActFuture<Self, Result<Checked, VerificationError>>;

    fn handle(&mut self, msg: Check, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.in_order(Subject::Verification(msg.id), async move { service::check(&deps, msg).await })
    }
}

impl Handler<Resend> for VerificationActor {
    type Result = ResponseActFuture<Self, Result<Resent, VerificationError>>;

    fn handle(&mut self, msg: Resend, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.in_order(Subject::Verification(msg.id), async move { service::resend(&deps, msg).await })
    }
}
