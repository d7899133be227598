//! What a process says when it starts, and when it cannot: every connection
//! attempt with its cause, a clear last line and a non-zero exit after the
//! configured attempts; the start-up summary; the development secrets.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::helpers::{TestApp, spawn_app};

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("its address").port()
}

fn run(app: &TestApp, args: &[&str], env: &[(&str, String)]) -> (Output, Duration) {
    let mut command = app.verifyd_command(args);
    command.env("RUST_LOG", "info");
    for (k, v) in env {
        command.env(k, v);
    }
    let started = Instant::now();
    let output = command.output().expect("verifyd runs");
    (output, started.elapsed())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_closed_rabbitmq_port_fails_within_the_attempts_and_says_why() {
    let app = spawn_app().await;
    let port = closed_port();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    for command in [&["queues"][..], &["worker"][..]] {
        let (output, took) =
            run(&app, command, &[("VERIFYD_AMQP__URL", url.clone()), ("VERIFYD_AMQP__CONNECT_ATTEMPTS", "3".into())]);
        let log = stderr(&output);
        assert!(!output.status.success(), "{command:?} exits non-zero:\n{log}");
        assert!(took < Duration::from_secs(15), "{command:?} gave up in {took:?}, not after minutes");
        let attempts =
            log.lines().filter(|l| l.contains("connection attempt failed") && l.contains("connection refused")).count();
        assert_eq!(attempts, 2, "each failed attempt before the last is logged with its cause:\n{log}");
        let last = log.lines().last().unwrap_or_default();
        assert!(
            last.contains(&format!("RabbitMQ at 127.0.0.1:{port}: connection refused"))
                && last.contains("gave up after 3 attempts")
                && last.contains("rabbitmq-server -detached"),
            "one clear last line: {last}"
        );
        assert!(!log.contains("guest:guest"), "no password in the log");
    }
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn wrong_rabbitmq_credentials_are_reported_as_such_at_once() {
    let app = spawn_app().await;
    let (output, took) = run(
        &app,
        &["queues"],
        &[
            ("VERIFYD_AMQP__URL", "amqp://guest:not-the-password@127.0.0.1:5672/%2f".into()),
            ("VERIFYD_AMQP__CONNECT_ATTEMPTS", "5".into()),
        ],
    );
    let log = stderr(&output);
    assert!(!output.status.success());
    let last = log.lines().find(|l| l.contains("gave up after")).unwrap_or_default();
    assert!(last.contains("RabbitMQ at 127.0.0.1:5672: authentication failed"), "{log}");
    assert!(last.contains("gave up after 1 attempt"), "waiting does not fix a password: {last}");
    assert!(took < Duration::from_secs(10));
    assert!(!log.contains("not-the-password"), "the password stays out of the log");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_closed_postgresql_port_fails_within_the_attempts_and_says_why() {
    let app = spawn_app().await;
    let port = closed_port();
    let (output, took) = run(
        &app,
        &["migrate"],
        &[
            ("VERIFYD_DATABASE__URL", format!("postgres://postgres:pg-secret@127.0.0.1:{port}/verifyd")),
            ("VERIFYD_DATABASE__CONNECT_ATTEMPTS", "2".into()),
        ],
    );
    let log = stderr(&output);
    assert!(!output.status.success());
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(log.matches("connection attempt failed").count(), 1, "{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(last.contains(&format!("PostgreSQL at 127.0.0.1:{port}: connection refused")), "{last}");
    assert!(last.contains("gave up after 2 attempts"), "{last}");
    assert!(!log.contains("pg-secret"));
}

/// A configuration `serve` would refuse stops `migrate` before it touches
/// PostgreSQL: a deploy that migrates first is not left with a migrated
/// database behind a release that cannot start.
#[actix_rt::test(system = "verifyd::system::System")]
async fn migrate_refuses_a_provider_configuration_serve_would_refuse_before_touching_the_database() {
    let app = spawn_app().await;
    let fresh = format!("{}_never_created", app.topology.prefix.trim_end_matches('.'));
    let (base, _) = app.config.database.url.rsplit_once('/').expect("a database URL");
    let (output, _) = run(
        &app,
        &["migrate"],
        &[("VERIFYD_DATABASE__URL", format!("{base}/{fresh}")), ("VERIFYD_PROVIDERS__SMS", "[\"nosuch\"]".into())],
    );
    let log = stderr(&output);
    assert!(!output.status.success(), "{log}");
    assert!(log.contains("nosuch"), "the refusal names the provider: {log}");
    let created: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&fresh)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(created, 0, "migrate created no database");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn start_up_names_the_mode_providers_routes_and_consumers_and_warns_about_dev_secrets() {
    let mut app = spawn_app().await;
    let log = app.start_worker_process().await;
    // Its consumers attach a moment before it writes the summary.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("listening") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for expected in [
        "verifyd starting",
        "role=\"worker\"",
        "mode=\"development\"",
        "route=sms: twilio",
        "route=voice: twilio",
        "dispatch_per_channel=2",
        "dead_letters=1",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from the start-up log:\n{text}");
    }
    assert!(!text.contains("DEVELOPMENT SECRETS"), "random test secrets are not the committed ones");

    // The committed development secrets: loud in development, refused in production.
    let dev = [
        ("VERIFYD_SECRETS__CODE_HMAC_KEY", format!("\"{}\"", verifyd::config::DEV_CODE_HMAC_KEY)),
        ("VERIFYD_SECRETS__ENCRYPTION_KEY", format!("\"{}\"", verifyd::config::DEV_ENCRYPTION_KEY)),
    ];
    let mut production = dev.to_vec();
    production.push(("VERIFYD_MODE", "production".into()));
    let (refused, _) = run(&app, &["worker"], &production);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("production mode refuses the development secrets"), "{}", stderr(&refused));
    let path = std::env::temp_dir().join(format!("{}dev-secrets.log", app.topology.prefix));
    let file = std::fs::File::create(&path).unwrap();
    let mut command = app.verifyd_command(&["worker"]);
    command.env("RUST_LOG", "info").stdout(std::process::Stdio::null()).stderr(file);
    for (k, v) in &dev {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let warned = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("queue consumers") || Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&path);
    assert!(warned.contains("DEVELOPMENT SECRETS IN USE"), "{warned}");
    assert!(!warned.contains(verifyd::config::DEV_CODE_HMAC_KEY), "the warning does not print the secret");
}
