//! Builds a running `serve` or `worker` from a `Config`: database (created and
//! migrated when asked), RabbitMQ, providers, actors, HTTP server. Used by `main`
//! and by the integration tests, so tests start the real thing.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::postgres::PgPool;
use verifyd_core::infra::amqp::Topology;
use verifyd_core::infra::consumer::{self, Consumers};
use verifyd_core::ops::reporter::Stopping;
use verifyd_core::runtime::{Core, Role, Settings};
use verifyd_core::telemetry::catalog;
use verifyd_core::verification::Policy;
use verifyd_core::verification::lifecycle::ResendPolicy;
use verifyd_providers::domain::CodeLength;

use crate::api_keys::Authenticator;
use crate::config::Config;
use crate::http::body::BodyLimit;
use crate::http::limits::RequestLimits;
use crate::http::probes::Probes;
use crate::http::{self, AppState};
use crate::intake::Intake;

/// Connects to PostgreSQL (each attempt logged with its cause), creating the
/// database if it does not exist, and migrates when `migrate` is set.
pub async fn database(config: &Config, migrate: bool) -> anyhow::Result<PgPool> {
    let db = &config.database;
    let pool = crate::connect::postgres(&db.url, db.max_connections, db.connect_attempts, true).await?;
    if migrate {
        verifyd_core::MIGRATOR.run(&pool).await.context("running migrations")?;
    }
    Ok(pool)
}

/// Connects to RabbitMQ (each attempt logged with its cause); the connection
/// then recovers in place after later outages.
pub async fn rabbitmq(config: &Config) -> anyhow::Result<lapin::Connection> {
    // Recover in place when the broker goes away (restart, network cut, a
    // forced close): reconnect with exponential backoff and jitter, then
    // re-declare channels, QoS, confirm mode and consumers. Deliveries that
    // were in flight are redelivered by the broker; job claims stop a
    // second send.
    let props = lapin::ConnectionProperties::default()
        .with_connection_name(format!("verifyd {}", config.amqp.prefix).into())
        .enable_auto_recover()
        .configure_backoff(|backoff| {
            backoff
                .with_min_delay(Duration::from_millis(250))
                .with_max_delay(Duration::from_secs(10))
                .with_jitter()
                .with_max_times(config.amqp.reconnect_attempts)
        });
    Ok(crate::connect::rabbitmq(&config.amqp.url, config.amqp.connect_attempts, props).await?)
}

pub fn settings(config: &Config) -> anyhow::Result<Settings> {
    let v = &config.verification;
    Ok(Settings {
        policy: Policy {
            app_name: v.app_name.clone(),
            code_length: CodeLength::new(v.code_length).context("verification.code_length")?,
            ttl: Duration::from_secs(v.ttl_secs),
            max_attempts: v.max_attempts,
            resend: ResendPolicy { max_sends: v.max_sends, interval: Duration::from_secs(v.resend_interval_secs) },
        },
        gate: config.gate,
        limits: config.throttle.clone(),
        abuse: config.abuse.clone(),
        topology: Topology::new(config.amqp.prefix.clone(), config.retry_delays())
            .with_webhook_retries(config.webhooks.retry_delays()),
        shards: config.runtime.shard_count(),
        dispatch_consumers: config.amqp.dispatch_consumers,
        prefetch: config.amqp.prefetch,
        expiry_interval: Duration::from_millis(config.runtime.expiry_interval_ms),
        relay_poll: Duration::from_millis(config.runtime.relay_poll_ms),
        reconcile_interval: Duration::from_millis(config.runtime.reconcile_interval_ms),
        fallback_to_voice: config.providers.fallback_to_voice,
        claim_lease: Duration::from_millis(config.runtime.claim_lease_ms),
        public_url: config.http.public_url.clone(),
        report_interval: Duration::from_millis(config.runtime.report_interval_ms),
        dead_letter_consumers: config.amqp.dead_letter_consumers,
        webhook_consumers: config.webhooks.consumers,
        webhook_timeout: Duration::from_millis(config.webhooks.timeout_ms),
    })
}

/// A started process: keep it alive as long as the process should run.
pub struct Running {
    pub port: Option<u16>,
    pub server: Option<actix_web::dev::Server>,
    pub core: Arc<Core>,
    pub amqp: Arc<lapin::Connection>,
    intake: Consumers,
}

impl Running {
    /// Graceful stop of queue work: no new deliveries (requests or delivery
    /// jobs), then up to `grace` for those being handled to finish and be
    /// acked. Returns how many were left unfinished (they are redelivered).
    pub async fn stop_consuming(&self, grace: Duration) -> usize {
        self.intake.cancel().await;
        self.core.consumers.cancel().await;
        let left = self.core.health.wait_idle(grace).await;
        self.core.abuse.flush().await;
        self.core.leases.release_all(&self.core.pool, verifyd_core::timestamp::now()).await;
        // A last report (and the last delivery counts); the overview then
        // shows this process stopped rather than stale.
        let _ = self.core.reporter.send(Stopping).await;
        left
    }
}

/// Describes every metric and registers every series at zero.
async fn install_metrics(config: &Config, role: Role, core: &Core) {
    let limit = config.metrics.tenant_label_limit;
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM tenants ORDER BY created_at, name LIMIT $1")
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&core.pool)
        .await
        .unwrap_or_default();
    let known = catalog::Known {
        providers: core.routes.breakers().map(|(name, _)| name.to_owned()).collect(),
        queues: core.topology.queues(),
        role: if role == Role::Serve { "serve" } else { "worker" },
    };
    catalog::install(known, &names, limit);
}

pub async fn start(config: &Config, role: Role, metrics: Option<PrometheusHandle>) -> anyhow::Result<Running> {
    // Every provider name, section and route is checked before connecting.
    let routes = crate::routes::build(config)?;
    let pool = database(config, config.database.migrate_on_start).await?;
    let amqp = Arc::new(rabbitmq(config).await?);
    let keys = Arc::new(config.secrets.code_keys()?);
    let settings = settings(config)?;
    let topology = settings.topology.clone();
    let core = Core::start(role, settings, pool.clone(), amqp.clone(), keys, routes)
        .await
        .map_err(|error| crate::startup::explain_start(config, &topology, error))?;
    let core = Arc::new(core);
    if metrics.is_some() {
        install_metrics(config, role, &core).await;
    }
    let probes = web::Data::new(Probes::new(
        pool.clone(),
        amqp.clone(),
        core.health.clone(),
        topology.clone(),
        core.routes.clone(),
        metrics,
        config.metrics.token.clone(),
    ));

    if role == Role::Worker {
        let bind = config.metrics.worker_bind.trim();
        if bind.is_empty() {
            crate::startup::announce(config, role, &core.routes, None);
            return Ok(Running { port: None, server: None, core, amqp, intake: Consumers::default() });
        }
        // A worker answers probes and scrapes only.
        let listener = TcpListener::bind(bind).with_context(|| format!("binding metrics.worker_bind {bind}"))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(probes.clone())
                .configure(http::probes::routes)
                .wrap(middleware::from_fn(http::fallback::problems_for_bare_refusals))
                .default_service(web::to(http::fallback::not_routed))
        })
        .listen(listener)?
        .workers(1)
        .shutdown_timeout(5)
        .disable_signals()
        .run();
        let address = format!("{}:{port}", bind.rsplit_once(':').map_or(bind, |(host, _)| host));
        crate::startup::announce(config, role, &core.routes, Some(&address));
        return Ok(Running { port: Some(port), server: Some(server), core, amqp, intake: Consumers::default() });
    }

    let verification = core.verification.clone().context("serve role starts the verification actor")?;
    let intake = Arc::new(Intake {
        pool: pool.clone(),
        verification,
        topology: topology.clone(),
        max_request_bytes: config.amqp.max_request_bytes,
    });
    let intake = consumer::start(
        &amqp,
        &topology.requests_queue(),
        config.amqp.request_consumers,
        config.amqp.prefetch,
        intake,
        &core.health,
    )
    .await?;

    let listener = TcpListener::bind(&config.http.bind).with_context(|| format!("binding {}", config.http.bind))?;
    let port = listener.local_addr()?.port();
    let keys = Authenticator::new(pool.clone(), Duration::from_secs(config.http.key_cache_secs));
    let receipts = http::callbacks::Receipts {
        twilio: config.providers.twilio.as_ref().and_then(|t| {
            let url = t.status_callback.clone()?;
            Some(http::callbacks::TwilioReceipts { auth_token: t.auth_token.clone(), url })
        }),
        vonage: config.providers.vonage.as_ref().and_then(|v| {
            Some(http::callbacks::VonageReceipts {
                signature_secret: v.signature_secret.clone()?,
                method: v.signature_method,
            })
        }),
        meta: config.providers.meta.as_ref().and_then(|m| {
            Some(http::callbacks::MetaReceipts {
                app_secret: m.app_secret.clone()?,
                verify_token: m.verify_token.clone(),
            })
        }),
        fallback_to_voice: config.providers.fallback_to_voice,
    };
    let state = web::Data::new(AppState {
        pool,
        core: core.clone(),
        amqp: amqp.clone(),
        keys,
        trusted_proxies: config.http.trusted_proxies.clone(),
        receipts,
        app_name: config.verification.app_name.clone(),
        code_ttl: Duration::from_secs(config.verification.ttl_secs),
        longest_code_ttl: Duration::from_secs(config.verification.ttl_secs.max(config.gate.challenge_ttl_secs)),
        console: config.console.clone(),
        public_url: config.http.public_url.clone(),
        report_interval_ms: config.runtime.report_interval_ms,
        webhook_urls: config.webhook_url_rules(),
    });
    // `GET /v1/dev/messages`: development mode with the inbox provider only;
    // never mounted in production (http/dev.rs).
    let dev_inbox = match (config.mode, &config.providers.inbox) {
        (crate::config::Mode::Development, Some(inbox)) => {
            Some(web::Data::new(http::dev::DevInbox(inbox.path.clone())))
        }
        _ => None,
    };
    if dev_inbox.is_some() {
        tracing::warn!("development mode: GET /v1/dev/messages lists every code the inbox provider wrote");
    }
    let max_body = config.http.max_body_bytes;
    let in_flight = http::overload::InFlight::new(config.http.max_in_flight);
    let limits =
        RequestLimits { max_url_bytes: config.http.max_url_bytes, max_header_bytes: config.http.max_header_bytes };
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(probes.clone())
            .app_data(web::PayloadConfig::default().limit(max_body))
            .app_data(BodyLimit(max_body))
            .app_data(limits)
            .app_data(in_flight.clone())
            // Inside the credentials' check: only a request with live
            // credentials is counted, and shed (http/overload.rs).
            .wrap(middleware::from_fn(http::overload::shed))
            .wrap(middleware::from_fn(http::credentials::authenticate_first))
            .wrap(middleware::from_fn(http::fallback::problems_for_bare_refusals))
            .wrap(middleware::from_fn(http::limits::enforce))
            // Script links grant a code until they expire: keep them out of the
            // log. Only the path is logged, never a query string (where a
            // caller might put a key by mistake).
            .wrap(
                middleware::Logger::new("%a \"%{METHOD}xi %U\" %s %b %Dms")
                    .custom_request_replace("METHOD", |req| req.method().to_string())
                    .exclude_regex("^/v1/voice-scripts/"),
            )
            .configure(http::configure)
            .configure(|cfg| {
                if let Some(inbox) = &dev_inbox {
                    cfg.app_data(inbox.clone());
                    http::dev::routes(cfg);
                }
            })
            .default_service(web::to(http::fallback::not_routed))
    })
    .listen(listener)?
    .shutdown_timeout(10);
    if config.http.workers > 0 {
        server = server.workers(config.http.workers);
    }
    let address = format!("{}:{port}", config.http.bind.rsplit_once(':').map_or(config.http.bind.as_str(), |(h, _)| h));
    crate::startup::announce(config, role, &core.routes, Some(&address));
    tracing::info!(port, "verifyd serving HTTP");
    Ok(Running { port: Some(port), server: Some(server.run()), core, amqp, intake })
}
