//! Abuse defences on every code sent: to a phone, geo permissions (`geo.rs`),
//! number types (`number_type.rs`) and the SMS-pumping guard (`pumping.rs`);
//! to an email address, the disposable-domain list (`email.rs`).
//!
//! The verification path calls in three places: `precheck` before its
//! transaction (cached lists and the number itself, no lock), `enforce_in_tx`
//! inside the transaction that records a send (authoritative: it reads
//! PostgreSQL, counts the send and may block a prefix), and
//! `record_approval_in_tx` inside the transaction that approves a code. The
//! pumping guard's counts are written in batches by `tally.rs` (in the
//! transaction itself only when the guard has no grace period).
//! A refusal is a `Refused`, which HTTP and the AMQP intake both report with
//! its `error` name.

pub mod email;
pub mod geo;
pub mod number_type;
pub mod pumping;
pub mod tally;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix::prelude::*;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::{Channel, Destination, PhoneNumber};

use crate::ids::{AccountId, Who};
use crate::outbox;
use crate::outbox::contract::{Event, EventKind};
use crate::store::audit::{self, Entry};
use email::DisposableDomains;
use geo::{GeoCache, GeoPermissions};
use number_type::NumberType;
use pumping::{Block, Conversion, Prefix, PumpingSettings};
use tally::PrefixTally;

/// The `abuse` configuration section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbuseSettings {
    /// Countries each channel may reach for tenants without their own list;
    /// absent: every country.
    pub default_countries: GeoPermissions,
    pub refused_number_types: RefusedTypes,
    pub pumping: PumpingSettings,
    /// Email domains that get no code (throwaway mailboxes); a built-in
    /// list of well-known ones by default, `[]` to send to every domain.
    pub disposable_email_domains: DisposableDomains,
    /// How long a process trusts its copy of a tenant's geo permissions for the
    /// pre-check (the check in the transaction always reads PostgreSQL).
    pub cache_secs: u64,
}

impl Default for AbuseSettings {
    fn default() -> Self {
        AbuseSettings {
            default_countries: GeoPermissions::default(),
            refused_number_types: RefusedTypes::default(),
            pumping: PumpingSettings::default(),
            disposable_email_domains: DisposableDomains::default(),
            cache_secs: 5,
        }
    }
}

impl AbuseSettings {
    pub fn validate(&self) -> Result<(), &'static str> {
        self.pumping.validate()
    }
}

/// Number types each channel refuses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefusedTypes {
    pub sms: Vec<NumberType>,
    pub voice: Vec<NumberType>,
    pub whatsapp: Vec<NumberType>,
}

impl Default for RefusedTypes {
    fn default() -> Self {
        RefusedTypes {
            sms: NumberType::sms_refused_by_default(),
            voice: NumberType::voice_refused_by_default(),
            whatsapp: NumberType::whatsapp_refused_by_default(),
        }
    }
}

impl RefusedTypes {
    fn refuses(&self, channel: Channel, t: NumberType) -> bool {
        match channel {
            Channel::Sms => self.sms.contains(&t),
            Channel::Voice => self.voice.contains(&t),
            Channel::Whatsapp => self.whatsapp.contains(&t),
            Channel::Email => false,
        }
    }
}

/// Why no code goes out. Serialised with `error` as the tag: the same names as
/// the HTTP problem types. Never carries the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum Refused {
    #[error("this tenant may not send {channel} codes to {}", .country.as_deref().unwrap_or("numbers outside any country"))]
    DestinationNotAllowed { country: Option<String>, channel: Channel },
    #[error("{channel} codes are not sent to {number_type} numbers")]
    NumberTypeNotAllowed { number_type: NumberType, channel: Channel },
    #[error(
        "codes to {prefix} are blocked until {}: too few of the codes sent there were entered \
         (suspected SMS pumping)",
        crate::timestamp::format(*.blocked_until)
    )]
    DestinationPrefixBlocked {
        prefix: Prefix,
        #[serde(with = "crate::timestamp")]
        blocked_until: DateTime<Utc>,
    },
    #[error("codes are not sent to disposable email addresses: ask for the person's own address")]
    DisposableEmail,
}

impl Refused {
    /// The stable name (`error` / problem type).
    pub fn kind(&self) -> &'static str {
        match self {
            Refused::DestinationNotAllowed { .. } => "destination_not_allowed",
            Refused::NumberTypeNotAllowed { .. } => "number_type_not_allowed",
            Refused::DestinationPrefixBlocked { .. } => "destination_prefix_blocked",
            Refused::DisposableEmail => "disposable_email",
        }
    }

    fn counted(self) -> Self {
        metrics::counter!("verifyd_abuse_refused_total", "reason" => self.kind()).increment(1);
        self
    }
}

/// Whether a send starts a verification (counted by the pumping guard) or
/// sends an existing one's code again (checked, not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    New,
    Again,
}

/// A send the defences judge: where to, by which channel, new or again.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub to: &'a Destination,
    pub channel: Channel,
    pub sending: Sending,
}

/// The abuse defences of one process; the state is in PostgreSQL.
pub struct Abuse {
    pool: PgPool,
    settings: AbuseSettings,
    geo: GeoCache,
    /// The pumping guard's counts not yet written (see `tally.rs`).
    tally: Addr<PrefixTally>,
    last_prune: Mutex<Option<Instant>>,
}

/// Old counts are deleted at most this often per process.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl Abuse {
    /// Starts the pumping guard's tally: call inside a running actix system.
    pub fn new(pool: PgPool, settings: AbuseSettings) -> Self {
        let geo = GeoCache::new(Duration::from_secs(settings.cache_secs));
        let tally = PrefixTally::new(pool.clone()).start();
        Abuse { pool, settings, geo, tally, last_prune: Mutex::new(None) }
    }

    /// Writes the pumping guard's pending counts (a graceful stop).
    pub async fn flush(&self) {
        let _ = self.tally.send(tally::Flush).await;
    }

    /// Whether this send's and approval's counts go through the batched tally
    /// rather than into their own transaction: whenever the guard judges only
    /// minutes past a grace period, which a count reaches long before.
    fn batched(&self) -> bool {
        self.settings.pumping.grace_secs > 0
    }

    pub fn settings(&self) -> &AbuseSettings {
        &self.settings
    }

    /// Geo and number type alone, for one tenant's lists.
    fn judge(&self, own: &GeoPermissions, phone: &PhoneNumber, channel: Channel) -> Result<(), Refused> {
        if !geo::allowed(own, &self.settings.default_countries, channel, phone.country()) {
            return Err(Refused::DestinationNotAllowed { country: phone.country().map(str::to_owned), channel });
        }
        let number_type = NumberType::of(phone);
        if self.settings.refused_number_types.refuses(channel, number_type) {
            return Err(Refused::NumberTypeNotAllowed { number_type, channel });
        }
        Ok(())
    }

    /// Before the transaction, without locks: for a phone, the tenant's
    /// cached geo lists and the number's type; for an email address, its domain.
    pub async fn precheck(
        &self,
        tenant_id: Uuid,
        to: &Destination,
        channel: Channel,
    ) -> Result<Result<(), Refused>, sqlx::Error> {
        let phone = match to {
            Destination::Phone(phone) => phone,
            Destination::Email(email) => return Ok(self.judge_email(email)),
        };
        let own = self.geo.get(&self.pool, tenant_id).await?;
        Ok(self.judge(&own, phone, channel).map_err(Refused::counted))
    }

    fn judge_email(&self, email: &verifyd_providers::domain::EmailAddress) -> Result<(), Refused> {
        match self.settings.disposable_email_domains.refuses(email) {
            true => Err(Refused::DisposableEmail.counted()),
            false => Ok(()),
        }
    }

    /// Inside the transaction that records a send: geo (read from PostgreSQL),
    /// number type, a block on the prefix; then, for a new verification, count
    /// it and block the prefix if its conversion fell too low. A block made
    /// here is announced through the outbox in the same transaction; this send
    /// still goes out, the next ones are refused.
    pub async fn enforce_in_tx(
        &self,
        tx: &mut PgConnection,
        tenant_id: Uuid,
        tenant_name: &str,
        out: Outgoing<'_>,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Refused>, sqlx::Error> {
        let Outgoing { to, channel, sending } = out;
        let phone = match to {
            Destination::Phone(phone) => phone,
            Destination::Email(email) => return Ok(self.judge_email(email)),
        };
        let settings = &self.settings.pumping;
        // WhatsApp bills the business per template, not the carrier per
        // message: nobody can pump it, so it is neither counted nor blocked.
        let guarded = settings.enabled && channel != Channel::Whatsapp;
        let prefix = Prefix::of(phone, settings.prefix_digits);
        // With the batched tally, the geo lists, the prefix's block and its
        // conversion are one read; otherwise the geo lists alone, first.
        let (own, looked) = if guarded && self.batched() {
            let looked = pumping::look(&mut *tx, settings, tenant_id, &prefix, now).await?;
            (looked.geo, Some((looked.block, looked.conversion)))
        } else {
            (geo::load(&mut *tx, tenant_id).await?, None)
        };
        self.geo.put(tenant_id, own.clone());
        if let Err(refused) = self.judge(&own, phone, channel) {
            return Ok(Err(refused.counted()));
        }
        if !guarded {
            return Ok(Ok(()));
        }
        let conversion = if let Some((block, conversion)) = looked {
            if let Some(block) = block {
                return Ok(Err(
                    Refused::DestinationPrefixBlocked { prefix, blocked_until: block.blocked_until }.counted()
                ));
            }
            if sending == Sending::Again {
                return Ok(Ok(()));
            }
            // Counted by the tally, not in this transaction.
            let minute = pumping::minute(now);
            self.tally.do_send(tally::Count { tenant_id, prefix: prefix.clone(), minute, sent: 1, approved: 0 });
            conversion
        } else {
            if let Some(block) = pumping::active_block(&mut *tx, tenant_id, &prefix, now).await? {
                return Ok(Err(
                    Refused::DestinationPrefixBlocked { prefix, blocked_until: block.blocked_until }.counted()
                ));
            }
            if sending == Sending::Again {
                return Ok(Ok(()));
            }
            pumping::record_send(&mut *tx, settings, tenant_id, &prefix, now).await?
        };
        self.prune_now_and_then();
        if conversion.trips(settings)
            && let Some(block) =
                pumping::block(&mut *tx, settings, tenant_id, &prefix, phone.country(), conversion, now).await?
        {
            self.tally.do_send(tally::Clear { tenant_id, prefix: prefix.clone() });
            self.announce(tx, tenant_id, tenant_name, &block, conversion, now).await?;
        }
        Ok(Ok(()))
    }

    /// Inside the transaction that approves a verification: count the approval
    /// with the verification's send (phones only: the guard counts no email).
    pub async fn record_approval_in_tx(
        &self,
        tx: &mut PgConnection,
        tenant_id: Uuid,
        to: &Destination,
        channel: Channel,
        sent_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let settings = &self.settings.pumping;
        let Some(phone) = to.phone().filter(|_| settings.enabled && channel != Channel::Whatsapp) else {
            return Ok(());
        };
        let prefix = Prefix::of(phone, settings.prefix_digits);
        if self.batched() {
            let minute = pumping::minute(sent_at);
            self.tally.do_send(tally::Count { tenant_id, prefix, minute, sent: 0, approved: 1 });
            return Ok(());
        }
        pumping::record_approval(tx, tenant_id, &prefix, sent_at).await
    }

    async fn announce(
        &self,
        tx: &mut PgConnection,
        tenant_id: Uuid,
        tenant_name: &str,
        block: &Block,
        conversion: Conversion,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let event = Event {
            event_id: Uuid::new_v4(),
            event: EventKind::PrefixBlocked,
            tenant: tenant_name.to_owned(),
            occurred_at: now,
            verification_id: None,
            account_id: String::new(),
            to: None,
            channel: None,
            status: None,
            detail: serde_json::Map::new(),
        }
        .with("prefix", block.prefix.clone())
        .with("country", block.country.clone())
        .with("sent", conversion.sent)
        .with("approved", conversion.approved)
        .with("conversion", (conversion.rate() * 1000.0).round() / 1000.0)
        .with("window_secs", self.settings.pumping.window_secs)
        .with("blocked_until", crate::timestamp::format(block.blocked_until));
        outbox::event(&mut *tx, &event, None).await?;
        // In the tenant's audit trail beside the lifts, so an operator reads
        // both ends of a block in one place.
        if let Ok(actor) = AccountId::parse(GUARD_ACTOR) {
            let who = Who { actor, api_key_id: None };
            let detail = serde_json::Value::Object(event.detail.clone());
            audit::record(tx, Entry::tenant(tenant_id, "prefix_block.blocked", &who, detail, now)).await?;
        }
        metrics::counter!("verifyd_prefix_blocks_total").increment(1);
        tracing::warn!(tenant = %tenant_name, prefix = %block.prefix, country = block.country.as_deref().unwrap_or("-"),
            sent = conversion.sent, approved = conversion.approved, blocked_until = %block.blocked_until,
            "destination prefix blocked: suspected SMS pumping");
        Ok(())
    }

    /// Deletes counts older than the window, once a minute, off the request path.
    fn prune_now_and_then(&self) {
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let pool = self.pool.clone();
        let window = Duration::from_secs(self.settings.pumping.window_secs);
        tokio::spawn(async move {
            if let Err(error) = pumping::prune(&pool, window).await {
                tracing::warn!(%error, "pruning prefix counts failed; the next send retries");
            }
        });
    }

    /// A tenant's own geo lists (`None` per channel: the default applies).
    pub async fn geo_permissions(&self, tenant_id: Uuid) -> Result<GeoPermissions, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        geo::load(&mut conn, tenant_id).await
    }

    /// Sets a tenant's lists, audited (`geo_permissions.changed`, with the new
    /// lists) in the same transaction.
    pub async fn set_geo_permissions(
        &self,
        tenant_id: Uuid,
        lists: GeoPermissions,
        who: &Who,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        geo::save(&mut tx, tenant_id, &lists).await?;
        let detail = serde_json::json!({
            "sms": lists.sms.as_ref().map(geo::Countries::to_vec),
            "voice": lists.voice.as_ref().map(geo::Countries::to_vec),
            "whatsapp": lists.whatsapp.as_ref().map(geo::Countries::to_vec),
        });
        audit::record(
            &mut tx,
            Entry::tenant(tenant_id, "geo_permissions.changed", who, detail, crate::timestamp::now()),
        )
        .await?;
        tx.commit().await?;
        self.geo.put(tenant_id, lists);
        Ok(())
    }

    pub async fn blocked_prefixes(&self, tenant_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Block>, sqlx::Error> {
        pumping::active_blocks(&self.pool, tenant_id, now).await
    }

    /// Lifts a block in force: sends to the prefix resume, and only what is
    /// sent from now on counts towards a new block.
    /// Audited (`prefix_block.lifted`, with the block's figures).
    pub async fn lift(
        &self,
        tenant_id: Uuid,
        prefix: &Prefix,
        now: DateTime<Utc>,
        who: &Who,
    ) -> Result<Option<Block>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let lifted = pumping::lift(&mut tx, tenant_id, prefix, now).await?;
        if let Some(b) = &lifted {
            self.tally.do_send(tally::Clear { tenant_id, prefix: prefix.clone() });
            let detail = serde_json::json!({
                "prefix": b.prefix, "country": b.country, "blocked_at": crate::timestamp::format(b.blocked_at),
                "blocked_until": crate::timestamp::format(b.blocked_until), "sent": b.sent, "approved": b.approved,
            });
            audit::record(&mut tx, Entry::tenant(tenant_id, "prefix_block.lifted", who, detail, now)).await?;
        }
        tx.commit().await?;
        Ok(lifted)
    }
}

/// The actor of the blocks the pumping guard decides.
const GUARD_ACTOR: &str = "verifyd:pumping-guard";
