//! Builds a running `serve` or `worker` from a `Config`: database (created and
//! migrated when asked), RabbitMQ, providers, actors, HTTP server. Used by `main`
//! and by the integration tests, so tests start the real thing.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgPool, PgPoolOptions};
use verifyd_actors::amqp::Topology;
use verifyd_actors::consumer;
use verifyd_actors::dispatch::ProviderSet;
use verifyd_actors::lifecycle::ResendPolicy;
use verifyd_actors::runtime::{Core, Role, Settings};
use verifyd_actors::verification::Policy;
use verifyd_providers::Provider;
use verifyd_providers::console::ConsoleProvider;
use verifyd_providers::domain::{Channel, CodeLength};
use verifyd_providers::twilio::Twilio;
use verifyd_providers::vonage::Vonage;

use crate::api_keys::Authenticator;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::intake::Intake;

/// Connects to PostgreSQL, creating the database if it does not exist, and
/// migrates when `migrate` is set.
pub async fn database(config: &Config, migrate: bool) -> anyhow::Result<PgPool> {
    let url = &config.database.url;
    if !sqlx::Postgres::database_exists(url)
        .await
        .context("PostgreSQL is not reachable at database.url; start it (e.g. pg_ctlcluster <version> main start)")?
    {
        sqlx::Postgres::create_database(url).await.context("creating the database")?;
    }
    let pool = PgPoolOptions::new()
        .max_connections(config.database.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    if migrate {
        verifyd_actors::MIGRATOR.run(&pool).await.context("running migrations")?;
    }
    Ok(pool)
}

pub async fn rabbitmq(config: &Config) -> anyhow::Result<lapin::Connection> {
    let props = lapin::ConnectionProperties::default().with_connection_name("verifyd".into());
    lapin::Connection::connect(&config.amqp.url, props)
        .await
        .context("RabbitMQ is not reachable at amqp.url; start it (e.g. rabbitmq-server -detached)")
}

pub fn providers(config: &Config) -> anyhow::Result<ProviderSet> {
    let mut set = ProviderSet::default();
    let twilio = match &config.providers.twilio {
        Some(cfg) => Some(Arc::new(Twilio::new(cfg.clone()).context("building the Twilio client")?)),
        None => None,
    };
    let vonage = match &config.providers.vonage {
        Some(cfg) => Some(Arc::new(Vonage::new(cfg.clone()).context("building the Vonage client")?)),
        None => None,
    };
    let console = Arc::new(ConsoleProvider::new());
    for (channel, names) in [(Channel::Sms, &config.providers.sms), (Channel::Voice, &config.providers.voice)] {
        for name in names {
            match (name.as_str(), &twilio, &vonage) {
                ("twilio", Some(t), _) => set.add(channel, t.clone()),
                ("vonage", _, Some(v)) if v.supports(channel) => set.add(channel, v.clone()),
                ("vonage", _, Some(_)) => anyhow::bail!("provider \"vonage\" does not place {channel} calls yet"),
                ("console", _, _) => set.add(channel, console.clone()),
                (other, _, _) => anyhow::bail!("provider {other:?} is not configured"),
            }
        }
    }
    Ok(set)
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
        limits: config.throttle,
        topology: Topology::new(config.amqp.prefix.clone(), config.retry_delays()),
        shards: config.runtime.shard_count(),
        dispatch_consumers: config.amqp.dispatch_consumers,
        prefetch: config.amqp.prefetch,
        expiry_interval: Duration::from_millis(config.runtime.expiry_interval_ms),
        relay_poll: Duration::from_millis(config.runtime.relay_poll_ms),
        reconcile_interval: Duration::from_millis(config.runtime.reconcile_interval_ms),
    })
}

/// A started process: keep it alive as long as the process should run.
pub struct Running {
    pub port: Option<u16>,
    pub server: Option<actix_web::dev::Server>,
    pub core: Arc<Core>,
    pub amqp: Arc<lapin::Connection>,
    _intake: Vec<Arbiter>,
}

pub async fn start(config: &Config, role: Role, metrics: Option<PrometheusHandle>) -> anyhow::Result<Running> {
    let pool = database(config, config.database.migrate_on_start).await?;
    let amqp = Arc::new(rabbitmq(config).await?);
    let keys = Arc::new(config.secrets.code_keys()?);
    let settings = settings(config)?;
    let topology = settings.topology.clone();
    let core = Arc::new(Core::start(role, settings, pool.clone(), amqp.clone(), keys, providers(config)?).await?);

    if role == Role::Worker {
        return Ok(Running { port: None, server: None, core, amqp, _intake: Vec::new() });
    }

    let verification = core.verification.clone().context("serve role starts the verification actor")?;
    let intake = Arc::new(Intake { pool: pool.clone(), verification, topology: topology.clone() });
    let intake_arbiters = consumer::start(
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
    let state = web::Data::new(AppState { pool, core: core.clone(), amqp: amqp.clone(), metrics, keys });
    let max_body = config.http.max_body_bytes;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::default().limit(max_body))
            .wrap(middleware::Logger::new("%a \"%r\" %s %b %Dms"))
            .configure(http::configure(max_body))
    })
    .listen(listener)?
    .shutdown_timeout(10);
    if config.http.workers > 0 {
        server = server.workers(config.http.workers);
    }
    tracing::info!(port, "verifyd serving HTTP");
    Ok(Running { port: Some(port), server: Some(server.run()), core, amqp, _intake: intake_arbiters })
}
