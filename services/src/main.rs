//! `verifyd`: serve | worker | migrate | keys create/list/rotate/revoke | queues | overview |
//! dead-letters list/show/replay/discard | bench | openapi.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use verifyd::api_keys::{AllowedSources, KeySpec, Scopes, operator};
use verifyd::config::Config;
use verifyd::{api_keys, app, bench, telemetry};
use verifyd_core::runtime::Role;
use verifyd_core::store::tenants;

#[derive(Parser)]
#[command(name = "verifyd", version, about = "Self-hosted phone verification and two-factor service")]
struct Cli {
    /// TOML configuration file (environment variables VERIFYD_* override it).
    #[arg(long, env = "VERIFYD_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "VERIFYD_LOG_JSON", global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP API, AMQP request intake, verification and expiry actors, and delivery.
    Serve,
    /// Delivery consumers only; run as many as you like.
    Worker,
    /// Create the database if needed, apply migrations, exit.
    Migrate,
    /// API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Depth, consumers and oldest waiting age of every verifyd queue.
    Queues {
        #[arg(long)]
        json: bool,
    },
    /// Health across every process: queues, dead letters, providers (success,
    /// latency, errors, circuits, pacing), conversion, blocks, processes.
    Overview {
        #[arg(long)]
        json: bool,
    },
    /// Dead letters: list, show, replay, discard (as the deployment's operator).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(verifyd::cli::DeadLetters),
    /// Load test: push verifications through the real path against a local mock
    /// provider and compare with a bare baseline.
    Bench(bench::Args),
    /// Print the OpenAPI document of the HTTP API (what `GET /openapi.json` serves).
    Openapi,
    /// For tests in any language: a stand-in for a provider's API (the test
    /// kit's mock) with `GET /_mock/messages` to read the codes it received.
    /// Reads no configuration; refused with VERIFYD_MODE=production.
    #[command(name = "mock-provider")]
    MockProvider(verifyd::mock_provider::Args),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key for a tenant (created if new), or with --operator a
    /// deployment operator key (no tenant; operator endpoints and console only).
    /// The key is printed once.
    Create {
        /// Tenant name: lowercase letters, digits and '-', up to 63 characters.
        #[arg(long, required_unless_present = "operator", conflicts_with = "operator")]
        tenant: Option<String>,
        /// A deployment operator key instead of a tenant's.
        #[arg(long)]
        operator: bool,
        #[arg(long)]
        label: Option<String>,
        /// What the key may call: verify, enrol, admin, ops (comma-separated or repeated).
        #[arg(long, value_delimiter = ',', default_value = "verify,enrol")]
        scope: Vec<String>,
        /// Networks the key is accepted from (10.0.0.0/8, comma-separated or
        /// repeated); none: anywhere.
        #[arg(long, value_delimiter = ',')]
        cidr: Vec<String>,
    },
    /// List a tenant's keys, or with --operator the operator keys (never their secrets).
    List {
        #[arg(long, required_unless_present = "operator", conflicts_with = "operator")]
        tenant: Option<String>,
        #[arg(long)]
        operator: bool,
    },
    /// Issue a new key with the same tenant, label, scopes and networks; the
    /// old one keeps working for the grace period. The new key is printed once.
    Rotate {
        key_id: String,
        /// How long the old key stays valid: 30s, 15m, 24h, 7d (at most 30 days).
        #[arg(long, default_value = "24h")]
        grace: String,
    },
    /// Revoke a key. Running processes stop accepting it within http.key_cache_secs.
    Revoke { key_id: String },
}

#[actix_rt::main(system = "verifyd::system::System")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logs(cli.log_json);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM (what container runtimes send).
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}

/// Resolves when queue work is lost for good: a consumer whose recovery gave
/// up, or a connection that is errored or closed (not merely reconnecting).
/// The process then exits so its supervisor restarts it.
async fn delivery_lost(running: &app::Running) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let status = running.amqp.status();
        if running.core.health.lost() > 0 || status.errored() || status.closed() {
            return;
        }
    }
}

/// Graceful stop: no new deliveries, then the jobs in hand finish (up to
/// `runtime.shutdown_grace_ms`); any left return to their queue.
async fn stop_consuming(running: &app::Running, config: &Config) {
    let grace = std::time::Duration::from_millis(config.runtime.shutdown_grace_ms);
    tracing::info!(?grace, "stopping: no new deliveries; finishing the jobs in hand");
    match running.stop_consuming(grace).await {
        0 => tracing::info!("stopped: every job in hand finished"),
        left => tracing::warn!(left, "stopped with jobs unfinished; they return to their queue"),
    }
}

fn valid_tenant_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let pool = app::database(config, true).await?;
    match command {
        KeysCommand::Create { operator: true, label, cidr, .. } => {
            let sources = AllowedSources::parse(&cidr)?;
            let issued = operator::create(&pool, label.as_deref(), &sources, &api_keys::console_operator()).await?;
            eprintln!("Deployment operator key (shown once; store it now):");
            eprintln!("{}", operator::describe(&issued.info));
            println!("{}", issued.secret());
        }
        KeysCommand::Create { tenant, label, scope, cidr, .. } => {
            let tenant = tenant.context("give --tenant (or --operator)")?;
            anyhow::ensure!(
                valid_tenant_name(&tenant),
                "tenant name must be lowercase letters, digits and '-' (max 63)"
            );
            let scopes = Scopes::parse(&scope)?;
            anyhow::ensure!(!scopes.is_empty(), "give at least one --scope");
            let sources = AllowedSources::parse(&cidr)?;
            let spec = KeySpec { label, scopes, sources };
            let (tenant, issued) = api_keys::create(&pool, &tenant, &spec, &api_keys::console_operator()).await?;
            eprintln!("API key for tenant {:?} (shown once; store it now):", tenant.name);
            eprintln!("{}", api_keys::describe(&issued.info));
            println!("{}", issued.secret());
        }
        KeysCommand::List { operator: true, .. } => {
            for key in operator::list(&pool).await? {
                println!("{}", operator::describe(&key));
            }
        }
        KeysCommand::List { tenant, .. } => {
            let tenant = tenant.context("give --tenant (or --operator)")?;
            let tenant = tenants::by_name(&pool, &tenant).await?.context("no tenant of that name")?;
            for key in api_keys::list(&pool, &tenant).await? {
                println!("{}", api_keys::describe(&key));
            }
        }
        KeysCommand::Rotate { key_id, grace } if key_id.starts_with(operator::PREFIX) => {
            let grace = api_keys::parse_grace(&grace)?;
            let rotated = operator::rotate(&pool, &key_id, grace, &api_keys::console_operator())
                .await?
                .context("no live operator key (not revoked or expired) with that id")?;
            eprintln!("{}", operator::describe(&rotated.previous));
            eprintln!("New operator key (shown once; store it now):");
            eprintln!("{}", operator::describe(&rotated.issued.info));
            println!("{}", rotated.issued.secret());
        }
        KeysCommand::Rotate { key_id, grace } => {
            let grace = api_keys::parse_grace(&grace)?;
            let rotated = api_keys::rotate_any(&pool, &key_id, grace, &api_keys::console_operator())
                .await?
                .context("no live key (not revoked or expired) with that id")?;
            eprintln!("{}", api_keys::describe(&rotated.previous));
            eprintln!("New key (shown once; store it now):");
            eprintln!("{}", api_keys::describe(&rotated.issued.info));
            println!("{}", rotated.issued.secret());
        }
        KeysCommand::Revoke { key_id } if key_id.starts_with(operator::PREFIX) => {
            let revoked = operator::revoke(&pool, &key_id, &api_keys::console_operator())
                .await?
                .context("no operator key with that id")?;
            eprintln!(
                "revoked; running processes stop accepting it within http.key_cache_secs ({} s), and its console sessions end",
                config.http.key_cache_secs
            );
            println!("{}", operator::describe(&revoked));
        }
        KeysCommand::Revoke { key_id } => {
            let revoked = api_keys::revoke_any(&pool, &key_id, &api_keys::console_operator())
                .await?
                .context("no key with that id")?;
            eprintln!(
                "revoked; running processes stop accepting it within http.key_cache_secs ({} s)",
                config.http.key_cache_secs
            );
            println!("{}", api_keys::describe(&revoked));
        }
    }
    Ok(())
}

/// `verifyd queues`: depth, consumers and the oldest waiting age per queue.
async fn queues(config: &Config, json: bool) -> anyhow::Result<()> {
    let amqp = app::rabbitmq(config).await?;
    let pool = app::database(config, false).await?;
    let settings = app::settings(config)?;
    let queues =
        verifyd_core::ops::overview::queues(&pool, &amqp, &settings.topology, verifyd_core::timestamp::now()).await?;
    let _ = amqp.close(200, "done".into()).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "queues": queues }))?);
        return Ok(());
    }
    println!("{:<48} {:>10} {:>10} {:>12}", "queue", "messages", "consumers", "oldest (s)");
    for q in queues {
        let oldest = q.oldest_age_secs.map_or_else(|| "?".to_owned(), |s| format!("{s:.0}"));
        println!("{:<48} {:>10} {:>10} {:>12}", q.queue, q.messages, q.consumers, oldest);
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Bench(args) = cli.command {
        return bench::run(args).await;
    }
    if let Command::Openapi = cli.command {
        print!("{}", verifyd::http::openapi::document());
        return Ok(());
    }
    if let Command::MockProvider(args) = cli.command {
        return verifyd::mock_provider::run(args).await;
    }
    let config = Config::load(cli.config.as_deref())?;
    // `serve` and `worker` build the provider registry before connecting
    // (`app::start`), `overview` because it shows the providers; every other
    // command checks it here, so a configuration `serve` would refuse stops
    // `migrate` too, before it touches the database.
    if !matches!(cli.command, Command::Serve | Command::Worker | Command::Overview { .. }) {
        verifyd::routes::build(&config)?;
    }
    match cli.command {
        Command::Serve => {
            let mut running = app::start(&config, Role::Serve, telemetry::init_metrics()).await?;
            // actix-web stops on SIGTERM/SIGINT itself: it stops accepting and
            // lets requests in progress finish (10 s). Queue work stops after it.
            let Some(server) = running.server.take() else { return Ok(()) };
            let handle = server.handle();
            tokio::select! {
                result = server => {
                    result?;
                    stop_consuming(&running, &config).await;
                    Ok(())
                }
                () = delivery_lost(&running) => {
                    handle.stop(true).await;
                    anyhow::bail!("lost a queue consumer or the RabbitMQ connection for good; exiting so the supervisor restarts serve")
                }
            }
        }
        Command::Worker => {
            let mut running = app::start(&config, Role::Worker, telemetry::init_metrics()).await?;
            // Probes and scrapes (metrics.worker_bind), stopped with the worker.
            let probes = running.server.take().map(|server| {
                let handle = server.handle();
                actix_rt::spawn(server);
                handle
            });
            tracing::info!("verifyd worker consuming delivery queues");
            let outcome = tokio::select! {
                signal = shutdown_signal() => {
                    signal?;
                    stop_consuming(&running, &config).await;
                    Ok(())
                }
                () = delivery_lost(&running) => Err(anyhow::anyhow!("lost a delivery consumer or the RabbitMQ connection; exiting so the supervisor restarts this worker")),
            };
            if let Some(handle) = probes {
                handle.stop(true).await;
            }
            outcome
        }
        Command::Migrate => {
            app::database(&config, true).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys(command) => keys(&config, command).await,
        Command::Queues { json } => queues(&config, json).await,
        Command::Overview { json } => verifyd::cli::overview(&config, json).await,
        Command::DeadLetters(command) => verifyd::cli::run(&config, command).await,
        Command::Bench(_) | Command::Openapi | Command::MockProvider(_) => unreachable!("handled above"),
    }
}
