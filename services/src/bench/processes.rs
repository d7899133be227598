//! `verifyd bench --workers K`: the full path as separate processes, as a
//! deployment runs it: one `verifyd serve` (HTTP, intake, the outbox; no
//! dispatch consumers) and K `verifyd worker`s, each with the run's dispatch
//! consumers, all children of this process running its own executable
//! against the run's scratch database and queue prefix. Measures whether
//! throughput grows with workers, and each process's own resident memory
//! apart from the bench's client and mock.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use secrecy::ExposeSecret as _;
use verifyd_core::infra::amqp::Topology;
use verifyd_providers::domain::Channel;

use super::Args;
use super::leftovers::Leftovers;
use crate::config::Secrets;

/// What the children share: where the run's data lives and what they call.
pub struct Setup<'a> {
    pub args: &'a Args,
    pub database_url: &'a str,
    pub prefix: &'a str,
    pub mock_url: &'a str,
    pub consumers: usize,
}

/// The running children: `serve` first, then the workers.
pub struct Children {
    pub port: u16,
    /// `(label, pid)` of each child, for the memory samples.
    pub pids: Vec<(String, u32)>,
}

/// A TOML basic string of `s`: JSON's string escapes are TOML's.
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The configuration every child reads, with fresh secrets: the same
/// settings `bench_config` (mod.rs) gives the in-process run, kept in step
/// with it by hand.
fn config_toml(setup: &Setup<'_>, port: u16) -> String {
    let secrets = Secrets::random();
    let unlimited = "count = 1000000\nwindow_secs = 600";
    let off = "count = 0\nwindow_secs = 1";
    let shared = if setup.args.without_shared_rows { off } else { unlimited };
    let pumping = !(setup.args.without_pumping || setup.args.without_shared_rows);
    format!(
        r#"mode = "development"

[http]
bind = {bind}

[database]
url = {database}
max_connections = 20

[amqp]
url = {amqp}
prefix = {prefix}
prefetch = {prefetch}
dispatch_consumers = {consumers}

[metrics]
worker_bind = ""

[secrets]
code_hmac_key = {hmac}
encryption_key = {encryption}

[throttle.per_phone]
{unlimited}
[throttle.per_account]
{unlimited}
[throttle.per_ip]
{unlimited}
[throttle.checks_per_account]
{unlimited}
[throttle.per_country]
{shared}
[throttle.per_tenant]
{shared}

[abuse.pumping]
enabled = {pumping}

[providers]
sms = ["twilio"]
voice = ["twilio"]

[providers.twilio]
account_sid = "ACbench"
auth_token = "bench-token"
from = "+15005550006"
base_url = {mock}
"#,
        bind = quoted(&format!("127.0.0.1:{port}")),
        database = quoted(setup.database_url),
        amqp = quoted(&setup.args.amqp_url),
        prefix = quoted(setup.prefix),
        prefetch = setup.args.prefetch,
        consumers = setup.consumers,
        hmac = quoted(secrets.code_hmac_key.expose_secret()),
        encryption = quoted(secrets.encryption_key.expose_secret()),
        mock = quoted(setup.mock_url),
    )
}

/// A port nobody listens on now (the child binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn(
    leftovers: &Leftovers,
    dir: &Path,
    config: &Path,
    role: &str,
    label: &str,
    env: &[(&str, String)],
) -> anyhow::Result<u32> {
    let log_path = dir.join(format!("{label}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut command = Command::new(std::env::current_exe()?);
    // The file says everything: a VERIFYD_* variable of the bench's own
    // environment would override it (a real database's URL, say).
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VERIFYD_") {
            command.env_remove(name);
        }
    }
    let child: Child = command
        .arg("--config")
        .arg(config)
        .arg(role)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting verifyd {role}"))?;
    Ok(leftovers.child(child, log_path))
}

/// Starts `serve`, waits until it answers, then the workers, and waits until
/// every worker's dispatch consumers are on the SMS queue.
pub async fn start(setup: &Setup<'_>, workers: usize, leftovers: &Leftovers) -> anyhow::Result<Children> {
    // The configuration holds the run's keys and the services' credentials:
    // the directory is the bench user's alone, and goes with the run.
    let dir = std::env::temp_dir().join(format!("verifyd-bench-{}", setup.prefix.trim_end_matches('.')));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    leftovers.directory(dir.clone());
    let port = free_port()?;
    let config = dir.join("verifyd.toml");
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&config)?;
    file.write_all(config_toml(setup, port).as_bytes())?;
    drop(file);

    let serve = spawn(leftovers, &dir, &config, "serve", "serve", &[("VERIFYD_AMQP__DISPATCH_CONSUMERS", "0".into())])?;
    let mut pids = vec![("serve".to_owned(), serve)];
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answered = client.get(format!("http://127.0.0.1:{port}/healthz")).send().await;
        if answered.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        leftovers.ensure_running(serve)?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "verifyd serve did not answer within 60 s{}",
            leftovers.log_of(serve)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in 1..=workers {
        let label = format!("worker {w}");
        pids.push((label.clone(), spawn(leftovers, &dir, &config, "worker", &label.replace(' ', "-"), &[])?));
    }

    let amqp = lapin::Connection::connect(&setup.args.amqp_url, lapin::ConnectionProperties::default()).await?;
    let queue = Topology::new(setup.prefix, Vec::new()).dispatch_queue(Channel::Sms);
    let want = (workers * setup.consumers) as u32;
    loop {
        // A fresh channel each time: a failed passive declare closes its channel.
        let ch = amqp.create_channel().await?;
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let consumers = ch
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .map_or(0, |q| q.consumer_count());
        let _ = ch.close(200, "counted".into()).await;
        if consumers >= want {
            break;
        }
        for (_, pid) in &pids {
            leftovers.ensure_running(*pid)?;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{consumers} of {want} dispatch consumers started within 60 s{}",
            pids.iter().map(|(_, pid)| leftovers.log_of(*pid)).collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = amqp.close(200, "consumers counted".into()).await;
    Ok(Children { port, pids })
}
