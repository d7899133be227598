//! Starts the actors of one process and wires them together. `serve` runs all
//! of them; `worker` runs delivery consumers and what they report to.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use lapin::options::ConfirmSelectOptions;
use sqlx::PgPool;
use verifyd_providers::domain::Channel;

use crate::abuse::{Abuse, AbuseSettings};
use crate::account::rules::GateSettings;
use crate::account::{AccountStateActor, PhoneRecorder};
use crate::codes::keys::CodeKeys;
use crate::delivery::dispatch::Dispatcher;
use crate::delivery::parked::ParkedReceipts;
use crate::delivery::recorder::AttemptRecorder;
use crate::delivery::routing::Routes;
use crate::infra::amqp::Topology;
use crate::infra::consumer::{self, ConsumerHealth, Consumers};
use crate::infra::shards::Shards;
use crate::limits::{self, Limiters, Limits};
use crate::ops::keeper::DeadLetterKeeper;
use crate::ops::reporter::{self, ProcessReporter};
use crate::outbox::relay::OutboxRelay;
use crate::store::processes::Identity;
use crate::telemetry::stats::Stats;
use crate::verification::expiry::ExpiryActor;
use crate::verification::{self, Issuer, Policy, VerificationActor};
use crate::webhooks::deliverer::WebhookDeliverer;

/// How often a serve process applies receipts that arrived before their send's record.
const PARKED_RECEIPTS_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP API, AMQP intake, verification, expiry, and delivery.
    Serve,
    /// Delivery consumers only.
    Worker,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: Policy,
    pub gate: GateSettings,
    pub limits: Limits,
    pub abuse: AbuseSettings,
    pub topology: Topology,
    /// Actor instances for the sharded actors (verification, account state, throttle).
    pub shards: usize,
    /// Consumers per dispatch queue (sms and voice each).
    pub dispatch_consumers: usize,
    pub prefetch: u16,
    pub expiry_interval: Duration,
    pub relay_poll: Duration,
    pub reconcile_interval: Duration,
    /// Send the code by voice when an SMS cannot be delivered.
    pub fallback_to_voice: bool,
    /// How long a delivery job stays claimed by the consumer delivering it.
    pub claim_lease: Duration,
    /// This deployment's public base URL, for links providers fetch.
    pub public_url: Option<String>,
    /// How often the process reports its consumers and circuits, and writes its
    /// delivery counts.
    pub report_interval: Duration,
    /// Consumers of the dead-letter queue (which record letters in PostgreSQL).
    pub dead_letter_consumers: usize,
    /// Consumers of the webhooks queue.
    pub webhook_consumers: usize,
    /// How long one webhook POST may take.
    pub webhook_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ: {0}")]
    Topology(#[from] crate::infra::amqp::DeclareError),
    #[error("webhooks: cannot build the HTTP client: {0}")]
    WebhookClient(#[from] reqwest::Error),
}

/// The running actors of a process; drop it only when the process stops.
pub struct Core {
    pub pool: PgPool,
    pub keys: Arc<CodeKeys>,
    pub topology: Topology,
    pub verification: Option<Shards<VerificationActor>>,
    pub account_state: Shards<AccountStateActor>,
    pub relay: Addr<OutboxRelay>,
    /// Geo permissions and prefix blocks, for the HTTP settings endpoints.
    pub abuse: Arc<Abuse>,
    /// Cells of the shared throttle buckets this process holds ahead; handed
    /// back on a graceful stop.
    pub leases: Arc<limits::SharedLeases>,
    /// Consumers of this process (dispatch here; the intake adds its own).
    pub health: Arc<ConsumerHealth>,
    _expiry: Option<Addr<ExpiryActor>>,
    _parked: Option<Addr<ParkedReceipts>>,
    _housekeeping: Addr<limits::Housekeeping>,
    /// This process's delivery consumers.
    pub consumers: Consumers,
    /// Providers, routes and their circuits.
    pub routes: Arc<Routes>,
    /// This process's delivery counts, written by the reporter.
    pub stats: Arc<Stats>,
    /// Writes this process's report; tell it `Stopping` on a graceful stop.
    pub reporter: Addr<ProcessReporter>,
    pub identity: Identity,
}

impl Core {
    pub async fn start(
        role: Role,
        settings: Settings,
        pool: PgPool,
        amqp: Arc<lapin::Connection>,
        keys: Arc<CodeKeys>,
        routes: Routes,
    ) -> Result<Core, StartError> {
        let routes = Arc::new(routes);
        let stats = Arc::new(Stats::default());
        let health = Arc::new(ConsumerHealth::default());
        let identity = Identity {
            id: uuid::Uuid::new_v4(),
            role: match role {
                Role::Serve => "serve",
                Role::Worker => "worker",
            }
            .to_owned(),
            host: reporter::hostname(),
            pid: i32::try_from(std::process::id()).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: crate::timestamp::now(),
        };
        let reporter = ProcessReporter::new(
            pool.clone(),
            identity.clone(),
            health.clone(),
            routes.clone(),
            stats.clone(),
            settings.report_interval,
        )
        .start();
        settings.topology.declare(&amqp).await?;

        let relay_channel = amqp.create_channel().await?;
        relay_channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let relay =
            OutboxRelay::new(pool.clone(), amqp.clone(), relay_channel, settings.topology.clone(), settings.relay_poll)
                .start();

        let limiters = Arc::new(Limiters::new(&settings.limits));
        let housekeeping = limits::Housekeeping::new(limiters.clone()).start();
        let abuse = Arc::new(Abuse::new(pool.clone(), settings.abuse.clone()));
        let leases = Arc::new(limits::SharedLeases::default());
        let issuer = Arc::new(Issuer {
            pool: pool.clone(),
            keys: keys.clone(),
            policy: settings.policy.clone(),
            limits: settings.limits.clone(),
            limiters,
            leases: leases.clone(),
            relay: relay.clone(),
            abuse: abuse.clone(),
            stats: stats.clone(),
            served: Channel::ALL.into_iter().filter(|c| routes.serves(*c)).collect(),
        });
        let reconcile = (role == Role::Serve).then_some(settings.reconcile_interval);
        let account_state = Shards::start(settings.shards, |i| {
            AccountStateActor::new(issuer.clone(), settings.gate, if i == 0 { reconcile } else { None })
        });

        let dispatcher = Arc::new(Dispatcher {
            pool: pool.clone(),
            keys: keys.clone(),
            routes: routes.clone(),
            topology: settings.topology.clone(),
            app_name: settings.policy.app_name.clone(),
            relay: relay.clone(),
            fallback_to_voice: settings.fallback_to_voice,
            claim_lease: settings.claim_lease,
            public_url: settings.public_url.clone(),
            stats: stats.clone(),
            reporter: Some(reporter.clone().recipient()),
            recorder: AttemptRecorder::new(pool.clone()).start(),
        });
        let mut consumers = Consumers::default();
        let keeper = Arc::new(DeadLetterKeeper { pool: pool.clone(), topology: settings.topology.clone() });
        let letters = settings.topology.dead_letters();
        consumers.extend(
            consumer::start(&amqp, &letters, settings.dead_letter_consumers, settings.prefetch, keeper, &health)
                .await?,
        );
        let webhooks = Arc::new(WebhookDeliverer::new(
            pool.clone(),
            keys.clone(),
            settings.topology.clone(),
            relay.clone(),
            settings.webhook_timeout,
            settings.claim_lease,
        )?);
        consumers.extend(
            consumer::start(
                &amqp,
                &settings.topology.webhooks_queue(),
                settings.webhook_consumers,
                settings.prefetch,
                webhooks,
                &health,
            )
            .await?,
        );
        for channel in Channel::ALL {
            let queue = settings.topology.dispatch_queue(channel);
            consumers.extend(
                consumer::start(
                    &amqp,
                    &queue,
                    settings.dispatch_consumers,
                    settings.prefetch,
                    dispatcher.clone(),
                    &health,
                )
                .await?,
            );
        }

        let (verification, expiry, parked) = match role {
            Role::Worker => (None, None, None),
            Role::Serve => {
                let approved_phones = Arc::new(PhoneRecorder { issuer: issuer.clone(), gate: settings.gate });
                let deps = Arc::new(verification::Deps { issuer, approved_phones });
                let verification = Shards::start(settings.shards, |_| VerificationActor::new(deps.clone()));
                let expiry = ExpiryActor::new(pool.clone(), relay.clone(), settings.expiry_interval).start();
                // Receipts reach the HTTP API, so the processes serving it apply parked ones.
                let parked =
                    ParkedReceipts::new(pool.clone(), relay.clone(), settings.fallback_to_voice, PARKED_RECEIPTS_EVERY)
                        .start();
                (Some(verification), Some(expiry), Some(parked))
            }
        };

        Ok(Core {
            pool,
            keys,
            topology: settings.topology,
            verification,
            account_state,
            relay,
            abuse,
            leases,
            health,
            _expiry: expiry,
            _parked: parked,
            _housekeeping: housekeeping,
            consumers,
            routes,
            stats,
            reporter,
            identity,
        })
    }
}
