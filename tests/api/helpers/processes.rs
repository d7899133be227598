//! More verifyd processes beside the in-process serve: `worker` and `serve`
//! binaries started (and killed) by the test, and the CLI.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use secrecy::ExposeSecret;
use verifyd::app;
use verifyd_core::runtime::Role;

use super::{AMQP_URL, TestApp};

impl TestApp {
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

    /// The first step of this app's graceful stop, as SIGTERM takes it: its
    /// consumers are cancelled and what they hold is finished. Returns how
    /// many deliveries were still in flight after the grace.
    pub async fn stop_consuming(&self) -> usize {
        self.running.as_ref().expect("the app runs").stop_consuming(Duration::from_secs(5)).await
    }

    /// Consumers of this app whose recovery gave up (what the health check and
    /// `verifyd_consumers_lost_total` count).
    pub fn consumers_lost(&self) -> usize {
        self.running.as_ref().expect("the app runs").core.health.lost()
    }

    /// A second `serve` on the same database and queues (its own actors, its own
    /// in-process limiters); returns its base URL.
    pub async fn start_another_serve(&mut self) -> String {
        self.start_another_serve_with(|_| {}).await
    }

    /// A second `serve` on the same database and queues, its configuration
    /// changed by `tweak` (another provider list, say).
    pub async fn start_another_serve_with(&mut self, tweak: impl FnOnce(&mut verifyd::config::Config)) -> String {
        let mut config = self.config.clone();
        tweak(&mut config);
        config.database.migrate_on_start = false;
        let mut running = app::start(&config, Role::Serve, None).await.expect("second serve starts");
        let port = running.port.expect("serve listens");
        actix_rt::spawn(running.server.take().expect("serve has a server"));
        self.others.push(running);
        format!("http://127.0.0.1:{port}")
    }
}
