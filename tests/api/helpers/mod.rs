//! `spawn_app()`: starts the real verifyd (HTTP, actors, consumers) in this test's
//! actix system, against the real PostgreSQL and RabbitMQ, with Twilio mocked by
//! wiremock. Each app has its own database and its own queue/exchange prefix, and
//! removes both when dropped, so tests run in parallel and leave nothing behind.
//!
//! By concern: calling the API (`http`), flows to reach a state (`flows`),
//! RabbitMQ taps and publishing (`amqp`), more processes and the CLI
//! (`processes`), keys and tenants (`tenants`), operators' views (`ops`),
//! captured logs (`logs`).

mod amqp;
mod flows;
mod http;
mod logs;
mod ops;
mod processes;
mod tenants;

pub use flows::*;
pub use http::Reply;
use logs::log_buffer;
pub use logs::{captured_logs, mentions};

use lapin::{Connection, ConnectionProperties};
use sqlx::PgPool;
use uuid::Uuid;
use verifyd::app::{self, Running};
use verifyd::config::{Config, Providers, Runtime};
use verifyd_core::infra::amqp::Topology;
use verifyd_core::runtime::Role;
use verifyd_providers::testkit::TwilioMock;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "test-auth-token";

/// A documented path (`/v1/accounts/{account_id}/…`) with every parameter
/// filled by a well-formed value, for tests that call each documented route.
pub fn concrete_path(path: &str) -> String {
    const ID: &str = "00000000-0000-4000-8000-000000000000";
    path.replace("{account_id}", "ada")
        .replace("{organisation_id}", "acme")
        .replace("{id}", ID)
        .replace("{factor_id}", ID)
        .replace("{challenge_id}", ID)
        .replace("{key_id}", "vk_000000000000")
}
pub const TWILIO_FROM: &str = "+15005550006";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub api_key: String,
    pub tenant: String,
    pub twilio: TwilioMock,
    pub pool: PgPool,
    pub topology: Topology,
    pub amqp: Connection,
    pub config: Config,
    db_name: String,
    running: Option<Running>,
    others: Vec<Running>,
    children: Vec<std::process::Child>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an app after `tweak` has adjusted the test configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    log_buffer();
    let id = Uuid::new_v4().simple().to_string();
    let db_name = format!("verifyd_test_{id}");
    let twilio = TwilioMock::start().await;
    let mut config =
        Config::local(&format!("postgres://postgres@127.0.0.1:5432/{db_name}"), AMQP_URL, &format!("test.{id}."));
    config.http.workers = 2;
    config.database.max_connections = 10;
    config.amqp.prefetch = 16;
    config.amqp.dispatch_consumers = 2;
    config.amqp.request_consumers = 1;
    config.amqp.retry_delays_ms = vec![200, 400];
    config.verification.app_name = "Acme".into();
    config.verification.resend_interval_secs = 0;
    config.providers = Providers {
        sms: vec!["twilio".into()],
        voice: vec!["twilio".into()],
        twilio: Some(twilio.config(TWILIO_SID, TWILIO_TOKEN, TWILIO_FROM)),
        ..Providers::default()
    };
    config.runtime = Runtime {
        shards: 2,
        expiry_interval_ms: 200,
        relay_poll_ms: 200,
        reconcile_interval_ms: 1_000,
        // Longer than the mocked providers' 5 s timeout; short enough that a job
        // held by a killed process is taken over within the test.
        claim_lease_ms: 6_000,
        shutdown_grace_ms: 5_000,
        // Reports (circuits, consumers, delivery counts) every 300 ms, so the
        // overview catches up within a test.
        report_interval_ms: 300,
    };
    tweak(&mut config);
    config.validate().expect("test configuration is valid");

    if let Err(error) = sqlx::PgPool::connect(PG_ADMIN_URL).await {
        panic!(
            "PostgreSQL is not reachable at 127.0.0.1:5432 ({error}). Start it with: \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        );
    }
    let amqp = match Connection::connect(AMQP_URL, ConnectionProperties::default()).await {
        Ok(c) => c,
        Err(error) => {
            panic!("RabbitMQ is not reachable at 127.0.0.1:5672 ({error}). Start it with: rabbitmq-server -detached")
        }
    };

    let mut running = app::start(&config, Role::Serve, None).await.expect("verifyd starts");
    let port = running.port.expect("serve listens");
    let server = running.server.take().expect("serve has a server");
    actix_rt::spawn(server);

    let pool = running.core.pool.clone();
    let tenant = format!("t{}", &id[..12]);
    // Every scope, from anywhere: what keys made before scopes existed have.
    let spec = verifyd::api_keys::KeySpec::unrestricted(Some("tests"));
    let (_, key) = verifyd::api_keys::create(&pool, &tenant, &spec, &verifyd::api_keys::console_operator())
        .await
        .expect("api key");
    let topology = running.core.topology.clone();
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        api_key: key.secret().to_owned(),
        tenant,
        twilio,
        pool,

        topology,
        amqp,
        config,
        db_name,
        running: Some(running),
        others: Vec::new(),
        children: Vec::new(),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.others.clear();
        drop(self.running.take());
        let db_name = self.db_name.clone();
        let topology = self.topology.clone();
        // Teardown runs on its own runtime so it also works while a failed test unwinds.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(conn) = Connection::connect(AMQP_URL, ConnectionProperties::default()).await
                    && let Ok(ch) = conn.create_channel().await
                {
                    topology.delete(&ch).await;
                    let _ = conn.close(200, "test done".into()).await;
                }
                if let Ok(pool) = sqlx::PgPool::connect(PG_ADMIN_URL).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
