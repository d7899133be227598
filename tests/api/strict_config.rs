//! Configuration that refuses what it does not know, through the real binary
//! as an operator starts it: a misspelt key in the file or a misspelt
//! `VERIFYD_*` variable stops the start, naming the key, where it came from
//! and the key it is closest to, and never the value (values may be secrets);
//! a retry delay changed under queues declared with the old one stops the
//! start naming the queue, the argument, both values, the setting and the fix.

use std::process::Output;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use verifyd_providers::domain::Channel;

use crate::helpers::{TestApp, spawn_app};

/// What a value that must never be printed looks like.
const SECRET: &str = "s3cret-Zq9vX2-must-not-be-printed";

/// Runs `verifyd` with `args` and the test deployment's environment, `env`
/// added (or overriding), off the test's thread (the app under test runs on it).
async fn run(app: &TestApp, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = app.verifyd_command(args);
    command.env("RUST_LOG", "info");
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::task::spawn_blocking(move || command.output()).await.expect("joins").expect("verifyd runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn refused(output: &Output) -> String {
    let log = stderr(output);
    assert!(!output.status.success(), "the start is refused:\n{log}");
    assert!(!log.contains(SECRET), "the value stays out of the message:\n{log}");
    log
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_misspelt_key_in_the_file_stops_the_start_naming_it_and_the_right_one_never_the_value() {
    let app = spawn_app().await;
    let file = std::env::temp_dir().join(format!("{}strict.toml", app.topology.prefix));
    let shown = file.display().to_string();
    let cases = [
        (
            format!("[database]\nurll = \"postgres://verifyd:{SECRET}@db/verifyd\"\n"),
            format!("unknown configuration key `database.urll` in {shown}: did you mean `database.url`?"),
        ),
        // Inside a provider's table (the twilio table is completed by the
        // test deployment's variables).
        (
            format!("[providers.twilio]\nauth_tokn = \"{SECRET}\"\n"),
            format!(
                "unknown configuration key `providers.twilio.auth_tokn` in {shown}: did you mean \
                 `providers.twilio.auth_token`?"
            ),
        ),
        (
            format!("[amqp]\nretry_delay_ms = [\"{SECRET}\"]\n"),
            format!("unknown configuration key `amqp.retry_delay_ms` in {shown}: did you mean `amqp.retry_delays_ms`?"),
        ),
        (format!("[databse]\nurl = \"{SECRET}\"\n"), "did you mean `database`?".to_owned()),
        // A known key with a value of the wrong kind: figment's own message
        // would quote the value.
        (
            format!("[database]\nmax_connections = \"{SECRET}\"\n"),
            format!("`database.max_connections` in {shown}: expected u32, found a string (value not shown)"),
        ),
        // A syntax error: the TOML parser's message quotes the line.
        (
            format!("[database]\nurl = \"postgres://verifyd:{SECRET}@db\" oops\n"),
            "TOML parse error at line 2".to_owned(),
        ),
    ];
    for (toml, expected) in cases {
        std::fs::write(&file, &toml).expect("config file written");
        let output = run(&app, &["migrate", "--config", &shown], &[]).await;
        let log = refused(&output);
        assert!(log.contains(&expected), "{expected:?} missing for\n{toml}\nfrom:\n{log}");
    }
    let _ = std::fs::remove_file(&file);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_misspelt_variable_stops_the_start_naming_it_and_the_right_one_never_the_value() {
    let app = spawn_app().await;
    let output = run(
        &app,
        &["migrate"],
        &[
            ("VERIFYD_DATABSE__URL", format!("postgres://verifyd:{SECRET}@db/verifyd")),
            ("VERIFYD_PROVIDERS__TWILIO__AUTH_TOKN", SECRET.to_owned()),
            ("VERIFYD_COLOUR", SECRET.to_owned()),
        ],
    )
    .await;
    let log = refused(&output);
    for expected in [
        "unknown configuration key `databse.url` from environment variable VERIFYD_DATABSE__URL: did you mean \
         `database.url` (VERIFYD_DATABASE__URL)?",
        "unknown configuration key `providers.twilio.auth_tokn` from environment variable \
         VERIFYD_PROVIDERS__TWILIO__AUTH_TOKN: did you mean `providers.twilio.auth_token` \
         (VERIFYD_PROVIDERS__TWILIO__AUTH_TOKEN)?",
        "unknown configuration key `colour` from environment variable VERIFYD_COLOUR",
    ] {
        assert!(log.contains(expected), "every misspelt variable is named at once: {expected:?} missing from:\n{log}");
    }

    // A known variable with a value of the wrong kind, and one with an empty level.
    for (name, expected) in [
        (
            "VERIFYD_DATABASE__MAX_CONNECTIONS",
            "`database.max_connections` from environment variable VERIFYD_DATABASE__MAX_CONNECTIONS: expected u32, \
             found a string (value not shown)",
        ),
        ("VERIFYD_DATABASE____URL", "environment variable VERIFYD_DATABASE____URL is not a configuration key"),
    ] {
        let output = run(&app, &["migrate"], &[(name, SECRET.to_owned())]).await;
        let log = refused(&output);
        assert!(log.contains(expected), "{expected:?} missing from:\n{log}");
    }

    // What verifyd reads outside the configuration, and what its tooling
    // sets, stays accepted.
    let file = std::env::temp_dir().join(format!("{}empty.toml", app.topology.prefix));
    std::fs::write(&file, "# nothing: the variables say it all\n").expect("config file written");
    let output = run(
        &app,
        &["migrate"],
        &[
            ("VERIFYD_CONFIG", file.display().to_string()),
            ("VERIFYD_LOG_JSON", "true".into()),
            ("VERIFYD_SCREENSHOTS", "docs/ops/screenshots".into()),
            ("VERIFYD_BIN", "target/debug/verifyd".into()),
        ],
    )
    .await;
    let _ = std::fs::remove_file(&file);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("migrations applied"));
    let misspelt = run(&app, &["migrate"], &[("VERIFYD_CONFG", "verifyd.toml".into())]).await;
    assert!(stderr(&misspelt).contains("did you mean VERIFYD_CONFIG?"), "{}", stderr(&misspelt));
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_changed_retry_delay_names_the_queue_the_argument_both_values_the_setting_and_the_fix() {
    // The test deployment declared its retry queues with delays [200, 400].
    let app = spawn_app().await;
    assert_eq!(app.config.amqp.retry_delays_ms, vec![200, 400]);
    let changed = [("VERIFYD_AMQP__RETRY_DELAYS_MS", "[300, 400]".to_owned())];
    let output = run(&app, &["worker"], &changed).await;
    let log = stderr(&output);
    assert!(!output.status.success(), "the worker refuses to start:\n{log}");
    let prefix = &app.topology.prefix;
    for channel in ["sms", "voice"] {
        let queue = format!("{prefix}dispatch.{channel}.retry.1");
        for expected in [
            format!("queue '{queue}' exists with x-message-ttl = 200, this configuration declares 300"),
            "set by amqp.retry_delays_ms (delay 1 of [300, 400], in ms)".to_owned(),
            format!("rabbitmqctl delete_queue {queue}"),
        ] {
            assert!(log.contains(&expected), "{expected:?} missing from:\n{log}");
        }
    }
    assert!(log.contains("406 PRECONDITION_FAILED") && log.contains("let the queue drain"), "{log}");
    assert!(!log.contains(&format!("{prefix}dispatch.sms.retry.2'")), "the unchanged delay is not named:\n{log}");

    // The fix as written (the queues are empty here): `rabbitmqctl
    // delete_queue`, then the next start declares them with the new delay.
    for channel in Channel::ALL {
        let queue = app.topology.retry_queue(channel, 0);
        let deleted = std::process::Command::new("rabbitmqctl")
            .args(["-q", "delete_queue", &queue])
            .output()
            .expect("rabbitmqctl runs (RabbitMQ's CLI must be on PATH)");
        assert!(deleted.status.success(), "{queue}: {}", String::from_utf8_lossy(&deleted.stderr));
    }
    let mut command = app.verifyd_command(&["worker"]);
    command.env(changed[0].0, &changed[0].1).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut worker = command.spawn().expect("verifyd worker starts");
    let sms = app.topology.dispatch_queue(Channel::Sms);
    let mut consumers = 0;
    for _ in 0..200 {
        let ch = app.amqp.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        consumers = ch
            .queue_declare(sms.as_str().into(), passive, FieldTable::default())
            .await
            .map_or(0, |q| q.consumer_count());
        // The app's own two consumers, then the worker's two.
        if consumers >= 4 || worker.try_wait().ok().flatten().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited = worker.try_wait().ok().flatten();
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(
        exited.is_none() && consumers >= 4,
        "with the queues re-declared the worker starts ({exited:?}, {consumers})"
    );
    // The app's teardown deletes every queue of its prefix, these included.
}
