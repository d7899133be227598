//! `spawn_app()`: starts the real verifyd (HTTP, actors, consumers) in this test's
//! actix system, against the real PostgreSQL and RabbitMQ, with Twilio mocked by
//! wiremock. Each app has its own database and its own queue/exchange prefix, and
//! removes both when dropped, so tests run in parallel and leave nothing behind.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use secrecy::ExposeSecret;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;
use verifyd::app::{self, Running};
use verifyd::config::{Config, Providers, Runtime};
use verifyd_core::infra::amqp::Topology;
use verifyd_core::infra::runtime::Role;
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

/// Everything every verifyd in this test binary logged (debug level and up).
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer_buffer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,hyper_util=info,h2=info,rustls=info,wiremock=info")
            .with_writer(move || LogWriter(writer_buffer.clone()))
            .with_ansi(false)
            .finish();
        // try_init also forwards the `log` crate (actix-web's access log, …).
        let _ = tracing_subscriber::util::SubscriberInitExt::try_init(subscriber);
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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

/// What a backend reads back from an HTTP call.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let response = req.send().await.expect("request reaches verifyd");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, headers, body }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post_json_as(&self.api_key, path, body).await
    }

    pub async fn post_json_as(&self, key: &str, path: &str, body: &Value) -> Reply {
        self.send(self.client.post(self.url(path)).bearer_auth(key).json(body)).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Reply {
        self.send(self.client.put(self.url(path)).bearer_auth(&self.api_key).json(body)).await
    }

    pub async fn delete_json(&self, path: &str, body: &Value) -> Reply {
        self.send(self.client.delete(self.url(path)).bearer_auth(&self.api_key).json(body)).await
    }

    /// A POST to another process of the same deployment (see `start_another_serve`).
    pub async fn post_json_at(&self, base: &str, path: &str, body: &Value) -> Reply {
        self.send(self.client.post(format!("{base}{path}")).bearer_auth(&self.api_key).json(body)).await
    }

    /// The next code sent to `phone`, once more than `seen` deliveries reached it.
    pub async fn next_code_to(&self, phone: &str, seen: usize) -> String {
        self.twilio
            .wait_for_next_code(phone, seen, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no new code reached Twilio for {phone} within 10 s"))
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Reply {
        let req = self.client.post(self.url(path)).bearer_auth(&self.api_key).header("Content-Type", content_type);
        self.send(req.body(body)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.get_as(&self.api_key, path).await
    }

    pub async fn get_as(&self, key: &str, path: &str) -> Reply {
        self.send(self.client.get(self.url(path)).bearer_auth(key)).await
    }

    pub async fn create_verification(&self, account: &str, phone: &str, channel: &str) -> Reply {
        let body = serde_json::json!({ "account_id": account, "phone": phone, "channel": channel });
        self.post_json("/v1/verifications", &body).await
    }

    pub async fn check(&self, id: &str, code: &str) -> Reply {
        self.post_json(&format!("/v1/verifications/{id}/check"), &serde_json::json!({ "code": code })).await
    }

    /// The code the mocked Twilio received for `phone` (SMS body or TwiML digits).
    pub async fn code_sent_to(&self, phone: &str) -> String {
        self.twilio
            .wait_for_code(phone, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no code reached Twilio for {phone} within 10 s"))
    }

    /// The real `verifyd` binary with `args`, configured the way compose does
    /// it (environment variables only), against this app's database, queues
    /// and mocked Twilio.
    pub fn verifyd_command(&self, args: &[&str]) -> std::process::Command {
        let quoted = |s: &str| format!("\"{s}\"");
        let twilio = self.config.providers.twilio.as_ref().expect("twilio configured");
        let breaker = self.config.providers.breaker;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_verifyd"));
        command
            .args(args)
            .env_clear()
            .env("RUST_LOG", "debug,hyper=info,hyper_util=info,h2=info,rustls=info")
            .env("VERIFYD_DATABASE__URL", &self.config.database.url)
            .env("VERIFYD_DATABASE__MIGRATE_ON_START", "false")
            .env("VERIFYD_AMQP__URL", AMQP_URL)
            .env("VERIFYD_AMQP__PREFIX", quoted(&self.topology.prefix))
            .env("VERIFYD_AMQP__DISPATCH_CONSUMERS", "2")
            .env("VERIFYD_AMQP__RETRY_DELAYS_MS", format!("{:?}", self.config.amqp.retry_delays_ms))
            .env("VERIFYD_RUNTIME__CLAIM_LEASE_MS", self.config.runtime.claim_lease_ms.to_string())
            .env("VERIFYD_WEBHOOKS__TIMEOUT_MS", self.config.webhooks.timeout_ms.to_string())
            .env("VERIFYD_WEBHOOKS__RETRY_DELAYS_MS", format!("{:?}", self.config.webhooks.retry_delays_ms))
            .env("VERIFYD_RUNTIME__REPORT_INTERVAL_MS", self.config.runtime.report_interval_ms.to_string())
            .env("VERIFYD_PROVIDERS__BREAKER__FAILURES_TO_OPEN", breaker.failures_to_open.to_string())
            .env("VERIFYD_PROVIDERS__BREAKER__OPEN_FOR_MS", breaker.open_for.as_millis().to_string())
            .env("VERIFYD_SECRETS__CODE_HMAC_KEY", quoted(self.config.secrets.code_hmac_key.expose_secret()))
            .env("VERIFYD_SECRETS__ENCRYPTION_KEY", quoted(self.config.secrets.encryption_key.expose_secret()))
            .env("VERIFYD_VERIFICATION__APP_NAME", "Acme")
            .env("VERIFYD_PROVIDERS__SMS", "[\"twilio\"]")
            .env("VERIFYD_PROVIDERS__VOICE", "[\"twilio\"]")
            .env("VERIFYD_PROVIDERS__TWILIO__ACCOUNT_SID", quoted(&twilio.account_sid))
            .env("VERIFYD_PROVIDERS__TWILIO__AUTH_TOKEN", quoted(twilio.auth_token.expose_secret()))
            .env("VERIFYD_PROVIDERS__TWILIO__FROM", quoted(&twilio.from))
            .env("VERIFYD_PROVIDERS__TWILIO__BASE_URL", quoted(&twilio.base_url))
            .env("VERIFYD_PROVIDERS__TWILIO__TIMEOUT_MS", twilio.timeout.as_millis().to_string())
            // Workers serve their metrics on a free port, so parallel tests never collide.
            .env("VERIFYD_METRICS__WORKER_BIND", "127.0.0.1:0")
            .env("VERIFYD_HTTP__BIND", "127.0.0.1:0");
        command
    }

    /// Runs a `verifyd` command (the CLI) to its end against this deployment.
    /// Off the test's thread: the app under test runs on that thread, and a
    /// blocked thread would stall its reporter and make it look hung.
    pub async fn run_cli(&self, args: &[&str]) -> std::process::Output {
        let mut command = self.verifyd_command(args);
        command.env("RUST_LOG", "warn").env("USER", "ops-tester");
        tokio::task::spawn_blocking(move || command.output()).await.expect("verifyd joins").expect("verifyd runs")
    }

    /// Starts the real `verifyd worker` binary as another process (see
    /// `verifyd_command`). Returns the file its output goes to, once its
    /// consumers are attached to the dispatch queues.
    pub async fn start_worker_process(&mut self) -> std::path::PathBuf {
        let log = std::env::temp_dir().join(format!("{}worker-{}.log", self.topology.prefix, self.children.len()));
        let out = std::fs::File::create(&log).expect("worker log file");
        let err = out.try_clone().expect("worker log file");
        let child = self.verifyd_command(&["worker"]).stdout(out).stderr(err).spawn().expect("verifyd worker starts");
        self.children.push(child);

        let ch = self.amqp.create_channel().await.expect("channel");
        for _ in 0..200 {
            let passive = QueueDeclareOptions { passive: true, ..Default::default() };
            let queue = self.topology.dispatch_queue(verifyd_providers::domain::Channel::Sms);
            if let Ok(q) = ch.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await
                && q.consumer_count() >= 2
            {
                return log;
            }
            if let Some(status) = self.children.last_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("verifyd worker exited with {status}:\n{output}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("verifyd worker did not attach its consumers within 10 s");
    }

    /// SIGKILLs every worker process this test started (no shutdown, no acks:
    /// what a crash or an OOM kill does) and reaps them.
    pub fn kill_worker_processes(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (what `docker stop` and Kubernetes send) to every worker
    /// process this test started and waits for each to exit; returns whether
    /// all exited successfully, and the time the slowest took.
    pub fn terminate_worker_processes(&mut self) -> (bool, Duration) {
        let started = std::time::Instant::now();
        let mut clean = true;
        for mut child in self.children.drain(..) {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill(1) runs");
            assert!(sent.success(), "SIGTERM delivered");
            clean &= child.wait().expect("worker exits").success();
        }
        (clean, started.elapsed())
    }

    /// Has RabbitMQ close every connection of this app's processes (named
    /// `verifyd <prefix>`), as a broker restart or a network cut does for
    /// each client. Returns how many it closed.
    pub fn force_close_amqp_connections(&self) -> usize {
        let name = format!("verifyd {}", self.topology.prefix);
        let listed = std::process::Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .expect("rabbitmqctl runs (RabbitMQ's CLI must be on PATH)");
        let listing = String::from_utf8_lossy(&listed.stdout);
        let pids: Vec<&str> = listing
            .lines()
            .filter(|line| line.contains(&format!("\"{name}\"")))
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        for pid in &pids {
            let closed = std::process::Command::new("rabbitmqctl")
                .args(["-q", "close_connection", pid, "fault test: connection forced closed"])
                .status()
                .expect("rabbitmqctl runs");
            assert!(closed.success(), "rabbitmqctl close_connection {pid} failed");
        }
        pids.len()
    }

    /// A second `serve` on the same database and queues (its own actors, its own
    /// in-process limiters); returns its base URL.
    pub async fn start_another_serve(&mut self) -> String {
        let mut config = self.config.clone();
        config.database.migrate_on_start = false;
        let mut running = app::start(&config, Role::Serve, None).await.expect("second serve starts");
        let port = running.port.expect("serve listens");
        actix_rt::spawn(running.server.take().expect("serve has a server"));
        self.others.push(running);
        format!("http://127.0.0.1:{port}")
    }

    /// Another tenant with its own key, on the same service.
    /// A new key of this app's tenant holding only `scopes`.
    pub async fn key_with_scopes(&self, scopes: &[&str]) -> String {
        let spec = verifyd::api_keys::KeySpec {
            label: None,
            scopes: verifyd::api_keys::Scopes::parse(scopes).expect("known scopes"),
            sources: Default::default(),
        };
        let tenant = verifyd_core::store::tenants::by_name(&self.pool, &self.tenant).await.unwrap().unwrap();
        let issued =
            verifyd::api_keys::issue(&self.pool, &tenant, &spec, &verifyd::api_keys::console_operator()).await.unwrap();
        issued.secret().to_owned()
    }

    pub async fn other_tenant(&self, name: &str) -> String {
        let spec = verifyd::api_keys::KeySpec::unrestricted(None);
        let (_, key) = verifyd::api_keys::create(&self.pool, name, &spec, &verifyd::api_keys::console_operator())
            .await
            .expect("api key");
        key.secret().to_owned()
    }

    /// A new channel and a server-named queue that lives as long as the test's
    /// AMQP connection.
    async fn private_queue(&self) -> (lapin::Channel, String) {
        let ch = self.amqp.create_channel().await.expect("channel");
        let queue = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .expect("private queue");
        let name = queue.name().as_str().to_owned();
        (ch, name)
    }

    /// A queue bound to the events exchange (all tenants' events with `#`),
    /// deleted with the test's AMQP connection.
    pub async fn capture_events(&self, binding: &str) -> Capture {
        let (ch, name) = self.private_queue().await;
        ch.queue_bind(
            name.as_str().into(),
            self.topology.events_exchange().into(),
            binding.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind capture queue");
        Capture::consume(ch, name).await
    }

    /// A private queue for `reply_to`, named as verifyd allows
    /// (`<prefix>reply.<tenant>.<anything>`), and its name.
    pub async fn reply_queue(&self) -> (String, Capture) {
        let name = format!("{}reply.{}.{}", self.topology.prefix, self.tenant, Uuid::new_v4().simple());
        let ch = self.amqp.create_channel().await.expect("channel");
        ch.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("reply queue");
        (name.clone(), Capture::consume(ch, name).await)
    }

    /// Waits until the requests queue has nothing ready or unacknowledged.
    pub async fn requests_drained(&self) {
        let ch = self.amqp.create_channel().await.expect("channel");
        for _ in 0..200 {
            let passive = QueueDeclareOptions { passive: true, ..Default::default() };
            let q = ch
                .queue_declare(self.topology.requests_queue().as_str().into(), passive, FieldTable::default())
                .await
                .expect("requests queue");
            // Ready messages are counted; unacknowledged ones are not, so wait
            // for a quiet moment after the queue empties.
            if q.message_count() == 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("requests queue did not drain");
    }

    /// A copy of everything published to the dispatch exchange.
    pub async fn tap_dispatch(&self) -> Capture {
        let (ch, name) = self.private_queue().await;
        for key in ["sms", "voice"] {
            ch.queue_bind(
                name.as_str().into(),
                self.topology.dispatch_exchange().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind tap");
        }
        Capture::consume(ch, name).await
    }

    /// A deployment operator key, made as `verifyd keys create --operator` makes one.
    pub async fn operator_key(&self) -> String {
        let sources = verifyd::api_keys::AllowedSources::default();
        let who = verifyd::api_keys::console_operator();
        let issued =
            verifyd::api_keys::operator::create(&self.pool, Some("tests"), &sources, &who).await.expect("operator key");
        issued.secret().to_owned()
    }

    /// The dead letters `key` sees (every status), newest first, as an
    /// operator lists them.
    pub async fn dead_letters_as(&self, key: &str) -> Vec<Value> {
        let page = self.get_as(key, "/v1/ops/dead-letters?status=all&limit=200").await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        page.body["dead_letters"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (10 s) for a dead letter `key` can see that `matches`, and
    /// returns it opened (`GET /v1/ops/dead-letters/{id}`).
    pub async fn wait_for_dead_letter(&self, key: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(found) = self.dead_letters_as(key).await.into_iter().find(|l| matches(l)) {
                let id = found["id"].as_str().expect("letter id");
                let opened = self.get_as(key, &format!("/v1/ops/dead-letters/{id}")).await;
                assert_eq!(opened.status, 200, "{:?}", opened.body);
                return opened.body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no such dead letter within 10 s: {:?}",
                self.dead_letters_as(key).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes a raw request as a backend would.
    pub async fn publish_request(&self, routing_key: &str, body: &[u8], props: BasicProperties) {
        let ch = self.amqp.create_channel().await.expect("channel");
        ch.confirm_select(Default::default()).await.expect("confirms");
        ch.basic_publish(
            self.topology.requests_exchange().into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
}

/// Messages received on one queue. Everything received is kept, so waiting for
/// one event never loses another that arrived first.
pub struct Capture {
    rx: tokio::sync::mpsc::UnboundedReceiver<Message>,
    received: Vec<Message>,
    _channel: lapin::Channel,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl Message {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON message")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn event(&self) -> Option<String> {
        serde_json::from_slice::<Value>(&self.body).ok()?.get("event")?.as_str().map(str::to_owned)
    }
}

impl Capture {
    async fn consume(ch: lapin::Channel, queue: String) -> Capture {
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions { no_ack: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        actix_rt::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let message = Message {
                    routing_key: d.routing_key.as_str().to_owned(),
                    body: d.data.clone(),
                    properties: d.properties.clone(),
                };
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        Capture { rx, received: Vec::new(), _channel: ch }
    }

    /// The next message to arrive (also kept for `drain`).
    pub async fn next(&mut self, timeout: Duration) -> Option<Message> {
        let message = tokio::time::timeout(timeout, self.rx.recv()).await.ok().flatten()?;
        self.received.push(message.clone());
        Some(message)
    }

    /// The first message, received before or now, whose JSON `event` is `name`.
    pub async fn wait_for_event(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = self.received.iter().find(|m| m.event().as_deref() == Some(name)) {
                return found.json();
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.next(left).await.is_none() {
                let seen: Vec<_> = self.received.iter().filter_map(Message::event).collect();
                panic!("no {name} event within {timeout:?}; received {seen:?}");
            }
        }
    }

    /// Everything received so far and until `quiet` passes with nothing new.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Message> {
        while self.next(quiet).await.is_some() {}
        self.received.clone()
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
