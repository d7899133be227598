//! `verifyd bench`: pushes N verifications through the real path (HTTP → verification
//! actor → PostgreSQL + outbox → RabbitMQ → dispatch → provider) against a local
//! mock of Twilio's Messages API, and, in the same run, a bare baseline that does
//! only what any queue-backed sender must: publish → consume → one HTTP POST to the
//! same mock → one row written. Both use the same consumer machinery, prefetch and
//! consumer counts. Each run uses its own database and queue prefix, removed after.
//!
//! By default all N start at once (a burst, `--concurrency` in flight); with
//! `--rate` both paths start them at a fixed rate (open loop: latency counts
//! from each request's scheduled start, so a slow server cannot slow the
//! load). `--check-rate` then checks every code the mock received, at that
//! rate. Each stage (create answered, create → provider, check answered)
//! is reported with p50 and p99, with the process's resident memory.
//!
//! With `--workers`, the full path runs as a deployment runs it, in child
//! processes (`processes.rs`); without, in this one. An interrupted run
//! removes what it made (`leftovers.rs`).

mod leftovers;
mod processes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use sqlx::PgPool;
use uuid::Uuid;
use verifyd_core::infra::consumer::{self, DeliveryHandler, Disposition};
use verifyd_core::limits::{Limit, Limits};
use verifyd_core::runtime::Role;
use verifyd_providers::twilio::TwilioConfig;

use verifyd_core::infra::amqp::Topology;

use self::leftovers::Leftovers;
use crate::app;
use crate::config::{Config, Providers};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Verifications per measurement.
    #[arg(long, default_value_t = 2000)]
    pub n: usize,
    /// Concurrent HTTP requests (full path) / unconfirmed publishes (baseline).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Dispatch consumer counts to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub consumers: Vec<usize>,
    /// Unacknowledged messages per consumer.
    #[arg(long, default_value_t = 8)]
    pub prefetch: u16,
    /// Time the mock provider takes to answer each request.
    #[arg(long, default_value_t = 50)]
    pub provider_latency_ms: u64,
    /// Leave out what every send of a tenant writes to one shared PostgreSQL
    /// row: the per-tenant and per-country buckets and the pumping guard's
    /// prefix counts (all bench phones share a prefix). Sizes what those hot
    /// rows cost; the defaults keep them.
    #[arg(long)]
    pub without_shared_rows: bool,
    /// Leave out only the pumping guard's prefix counts (one row per prefix
    /// and minute that every send to the prefix updates).
    #[arg(long)]
    pub without_pumping: bool,
    /// Measure verifyd only, with no baseline: for long runs that watch memory
    /// and latency, where a ratio is not the point.
    #[arg(long)]
    pub without_baseline: bool,
    /// Open loop: start this many verifications a second, whatever the
    /// answers (N in all), and measure latency from each one's scheduled
    /// start. Without it, all N start at once, `concurrency` at a time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// After the N codes reached the provider, check each one (the code the
    /// mock received), at this many checks a second (open loop).
    #[arg(long)]
    pub check_rate: Option<f64>,
    /// Run the full path as separate processes: one `verifyd serve` (HTTP,
    /// no dispatch) and this many `verifyd worker`s, each with the
    /// dispatch consumers being measured; comma separated to measure
    /// several counts. Each process's own memory is reported. Without it,
    /// everything runs in this process.
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<usize>,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub database_url: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
}

/// When the mock provider received a message for each destination, and the
/// code it carried.
#[derive(Default)]
struct Received {
    at: Mutex<HashMap<String, Instant>>,
    codes: Mutex<HashMap<String, String>>,
}

impl Received {
    fn record(&self, to: String, body: &str) {
        if let Some(code) = code_in(body) {
            self.codes.lock().unwrap_or_else(|e| e.into_inner()).insert(to.clone(), code);
        }
        self.at.lock().unwrap_or_else(|e| e.into_inner()).entry(to).or_insert_with(Instant::now);
    }
    fn codes(&self) -> HashMap<String, String> {
        std::mem::take(&mut *self.codes.lock().unwrap_or_else(|e| e.into_inner()))
    }
    fn count(&self) -> usize {
        self.at.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    fn take(&self) -> HashMap<String, Instant> {
        std::mem::take(&mut *self.at.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

struct MockState {
    received: Arc<Received>,
    latency: Duration,
}

/// The code in a message's text: its first run of six or more digits.
fn code_in(body: &str) -> Option<String> {
    body.split(|c: char| !c.is_ascii_digit()).find(|run| run.len() >= 6).map(str::to_owned)
}

/// Twilio's Messages endpoint as the mock sees it: record `To`, wait, answer 201.
async fn mock_messages(state: web::Data<MockState>, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let to = form.get("To").cloned().unwrap_or_default();
    tokio::time::sleep(state.latency).await;
    state.received.record(to, form.get("Body").map(String::as_str).unwrap_or_default());
    let sid = format!("SM{}", Uuid::new_v4().simple());
    HttpResponse::Created().json(serde_json::json!({ "sid": sid, "status": "queued", "error_code": null }))
}

async fn start_mock(received: Arc<Received>, latency: Duration) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let state = web::Data::new(MockState { received, latency });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/2010-04-01/Accounts/{sid}/Messages.json", web::post().to(mock_messages))
    })
    .workers(1)
    .listen(listener)?
    .run();
    actix_rt::spawn(server);
    Ok(format!("http://127.0.0.1:{port}"))
}

#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

fn figures(started: &HashMap<String, Instant>, received: &HashMap<String, Instant>) -> anyhow::Result<Figures> {
    let first = started.values().min().context("nothing started")?;
    let last = received.values().max().context("nothing received")?;
    let mut latencies: Vec<f64> = started
        .iter()
        .filter_map(|(to, t0)| received.get(to).map(|t1| t1.duration_since(*t0).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| quantile(&latencies, p);
    Ok(Figures {
        per_second: received.len() as f64 / last.duration_since(*first).as_secs_f64(),
        p50_ms: pct(0.50),
        p95_ms: pct(0.95),
        p99_ms: pct(0.99),
    })
}

/// The `p` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Latencies of one stage, in milliseconds.
struct Stage {
    name: &'static str,
    ms: Vec<f64>,
}

impl Stage {
    fn new(name: &'static str, mut ms: Vec<f64>) -> Stage {
        ms.sort_by(f64::total_cmp);
        Stage { name, ms }
    }
}

/// What the full path measured beyond the throughput.
struct Report {
    /// `in one process`, or `serve + K workers`.
    shape: String,
    figures: Figures,
    stages: Vec<Stage>,
    /// Resident memory of each process measured, sampled every second:
    /// first, peak, last, in MiB. In one process that is the bench's own
    /// (server, consumers, bench client and mock together).
    rss_mib: Vec<(String, (f64, f64, f64))>,
    checks_per_second: Option<f64>,
    /// Requests answered `503 overloaded` (each retried after its `Retry-After`).
    shed: usize,
}

/// The resident set size in a `/proc/<pid>/status` file, in MiB (Linux; 0 elsewhere).
fn rss_mib_of(status_file: &str) -> f64 {
    let status = std::fs::read_to_string(status_file).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// POSTs `body` as a backend that honours `Retry-After` does: a request the
/// server shed (`503 overloaded`) is counted and sent again after the wait
/// it names, up to [`MOST_RETRIES`] times. Any other answer is returned.
async fn post_json(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &serde_json::Value,
    shed: &AtomicUsize,
) -> anyhow::Result<reqwest::Response> {
    for _ in 0..MOST_RETRIES {
        let response = client.post(url).bearer_auth(key).json(body).send().await?;
        if response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Ok(response);
        }
        let wait = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
        let problem: serde_json::Value = response.json().await.unwrap_or_default();
        anyhow::ensure!(problem["error"] == "overloaded", "answered 503 {}", problem["error"]);
        shed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    anyhow::bail!("shed {MOST_RETRIES} times in a row")
}

/// How often one request is sent again after `503 overloaded`.
const MOST_RETRIES: usize = 60;

/// Runs `n` requests made by `make`: open loop at `rate` a second when given
/// (each measured from its scheduled start), otherwise `concurrency` at a time.
/// Returns each request's output with its latency in ms.
async fn drive<T, F, Fut>(n: usize, rate: Option<f64>, concurrency: usize, make: F) -> anyhow::Result<Vec<(T, f64)>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    match rate {
        Some(rate) => {
            anyhow::ensure!(rate > 0.0, "--rate must be above 0");
            let t0 = tokio::time::Instant::now();
            // Finished requests are collected as they finish: a finished task
            // kept until the end holds its whole future, kilobytes each,
            // which would show as the server's memory growing.
            let mut tasks = tokio::task::JoinSet::new();
            let mut outs = Vec::with_capacity(n);
            for i in 0..n {
                let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due).await;
                let request = make(i);
                tasks.spawn(async move {
                    let out = request.await?;
                    Ok::<_, anyhow::Error>((out, due.elapsed().as_secs_f64() * 1000.0))
                });
                while let Some(done) = tasks.try_join_next() {
                    outs.push(done??);
                }
            }
            while let Some(done) = tasks.join_next().await {
                outs.push(done??);
            }
            Ok(outs)
        }
        None => futures_util::stream::iter(0..n)
            .map(|i| {
                let request = make(i);
                async move {
                    let t0 = Instant::now();
                    let out = request.await?;
                    Ok::<_, anyhow::Error>((out, t0.elapsed().as_secs_f64() * 1000.0))
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect(),
    }
}

/// US area codes the bench's numbers are in.
const AREAS: [u32; 20] =
    [415, 650, 212, 312, 617, 202, 305, 404, 503, 206, 213, 303, 512, 602, 702, 713, 718, 801, 808, 919];
/// Distinct numbers the bench can make: a run needs one per verification.
const PHONES: usize = AREAS.len() * 10_000;

/// Distinct valid numbers: +1 <area> 555 0000–9999.
fn phone(i: usize) -> String {
    format!("+1{}555{:04}", AREAS[(i / 10_000) % AREAS.len()], i % 10_000)
}

async fn wait_for(received: &Received, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while received.count() < n {
        anyhow::ensure!(Instant::now() < deadline, "only {} of {n} messages reached the provider", received.count());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// A new run id and the URL of its own database (registered to be dropped
/// with the run; it is created on first connect).
fn scratch_database(args: &Args, leftovers: &Leftovers) -> anyhow::Result<(String, String)> {
    let id = Uuid::new_v4().simple().to_string();
    let name = format!("verifyd_bench_{id}");
    let base = args.database_url.rsplit_once('/').map(|(b, _)| b).context("database url has no database part")?;
    leftovers.database(&name);
    Ok((id, format!("{base}/{name}")))
}

// ---- baseline ---------------------------------------------------------------

struct Baseline {
    client: reqwest::Client,
    url: String,
    pool: PgPool,
}

impl DeliveryHandler for Baseline {
    fn handle(self: Arc<Self>, _: lapin::Channel, delivery: Delivery) -> BoxFuture<'static, Disposition> {
        Box::pin(async move {
            let to = String::from_utf8_lossy(&delivery.data).into_owned();
            let sent = self.client.post(&self.url).form(&[("To", to.as_str()), ("Body", "baseline")]).send().await;
            let stored = sqlx::query("INSERT INTO bench_baseline (id, destination) VALUES ($1, $2)")
                .bind(Uuid::new_v4())
                .bind(&to)
                .execute(&self.pool)
                .await;
            if sent.is_ok() && stored.is_ok() { Disposition::Ack } else { Disposition::Requeue }
        })
    }
}

async fn run_baseline(
    args: &Args,
    consumers: usize,
    mock_url: &str,
    received: &Received,
    leftovers: &Leftovers,
) -> anyhow::Result<Figures> {
    let (id, url) = scratch_database(args, leftovers)?;
    let queue = format!("bench.{id}.baseline");
    leftovers.queue(&queue);
    let result = async {
        let mut config = Config::local(&url, &args.amqp_url, "");
        config.database.max_connections = 20;
        let pool = app::database(&config, false).await?;
        sqlx::query("CREATE TABLE bench_baseline (id uuid PRIMARY KEY, destination text NOT NULL, at timestamptz NOT NULL DEFAULT now())")
            .execute(&pool)
            .await?;
        let conn = app::rabbitmq(&config).await?;
        let ch = conn.create_channel().await?;
        let mut args_table = FieldTable::default();
        args_table.insert("x-queue-type".into(), verifyd_core::infra::amqp::long_string("quorum"));
        ch.queue_declare(queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, args_table)
            .await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let handler = Arc::new(Baseline {
            client: reqwest::Client::new(),
            url: format!("{mock_url}/2010-04-01/Accounts/ACbench/Messages.json"),
            pool: pool.clone(),
        });
        let health = Arc::new(consumer::ConsumerHealth::default());
        let started_consumers = consumer::start(&conn, &queue, consumers, args.prefetch, handler, &health).await?;

        let mut started = HashMap::with_capacity(args.n);
        let mut pending = futures_util::stream::FuturesUnordered::new();
        let t0 = tokio::time::Instant::now();
        for i in 0..args.n {
            // Open loop: published at the same rate as the full path's requests.
            if let Some(rate) = args.rate {
                tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
            }
            let to = phone(i);
            started.insert(to.clone(), Instant::now());
            let confirm = ch
                .basic_publish("".into(), queue.as_str().into(), Default::default(), to.as_bytes(), verifyd_core::infra::amqp::json_properties())
                .await?;
            pending.push(confirm);
            while pending.len() >= args.concurrency {
                pending.next().await.transpose()?;
            }
        }
        while pending.next().await.transpose()?.is_some() {}
        wait_for(received, args.n, Duration::from_secs(300)).await?;
        // Cancelled before the queue goes, so its deletion is not a lost consumer.
        started_consumers.cancel().await;
        let _ = ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
        let _ = conn.close(200, "bench done".into()).await;
        pool.close().await;
        figures(&started, &received.take())
    }
    .await;
    leftovers.remove(&args.database_url, &args.amqp_url).await;
    result
}

// ---- full path --------------------------------------------------------------

/// The configuration of the full path: everything on, no throttle in the way
/// of N sends to one tenant, Twilio at the mock.
fn bench_config(args: &Args, consumers: usize, database_url: &str, prefix: &str, mock_url: &str) -> Config {
    let mut config = Config::local(database_url, &args.amqp_url, prefix);
    config.amqp.dispatch_consumers = consumers;
    config.amqp.prefetch = args.prefetch;
    config.database.max_connections = 20;
    let unlimited = Limit { count: 1_000_000, window_secs: 600 };
    config.throttle = Limits {
        per_phone: unlimited,
        per_account: unlimited,
        per_ip: unlimited,
        per_country: unlimited,
        per_tenant: unlimited,
        checks_per_account: unlimited,
        ..Limits::default()
    };
    if args.without_pumping {
        config.abuse.pumping.enabled = false;
    }
    if args.without_shared_rows {
        config.throttle.per_country = Limit::new(0, 1);
        config.throttle.per_tenant = Limit::new(0, 1);
        config.abuse.pumping.enabled = false;
    }
    let mut twilio = TwilioConfig::new("ACbench", "bench-token", "+15005550006");
    twilio.base_url = mock_url.to_owned();
    config.providers = Providers {
        sms: vec!["twilio".into()],
        voice: vec!["twilio".into()],
        twilio: Some(twilio),
        ..Providers::default()
    };
    config
}

/// Where the full path runs.
enum Target {
    /// In this process, beside the bench's client and mock.
    Here(app::Running),
    /// As `verifyd serve` and workers, children of this process.
    Children(processes::Children),
}

impl Target {
    fn shape(&self) -> String {
        match self {
            Target::Here(_) => "in one process".to_owned(),
            Target::Children(c) => match c.pids.len() - 1 {
                1 => "serve + 1 worker".to_owned(),
                k => format!("serve + {k} workers"),
            },
        }
    }

    /// `(label, /proc status file)` of each process whose memory is sampled.
    fn memory_sources(&self) -> Vec<(String, String)> {
        match self {
            Target::Here(_) => vec![("bench process".to_owned(), "/proc/self/status".to_owned())],
            Target::Children(c) => {
                c.pids.iter().map(|(label, pid)| (label.clone(), format!("/proc/{pid}/status"))).collect()
            }
        }
    }
}

async fn run_verifyd(
    args: &Args,
    consumers: usize,
    workers: Option<usize>,
    mock_url: &str,
    received: &Received,
    leftovers: &Leftovers,
) -> anyhow::Result<Report> {
    let (id, url) = scratch_database(args, leftovers)?;
    let prefix = format!("bench.{id}.");
    let config = bench_config(args, consumers, &url, &prefix, mock_url);
    leftovers.topology(
        &Topology::new(prefix.clone(), config.retry_delays()).with_webhook_retries(config.webhooks.retry_delays()),
    );
    let result = async {
        let (target, port, pool) = match workers {
            None => {
                let mut running = app::start(&config, Role::Serve, None).await?;
                let port = running.port.context("serve listens")?;
                actix_rt::spawn(running.server.take().context("serve has a server")?);
                let pool = running.core.pool.clone();
                (Target::Here(running), port, pool)
            }
            Some(workers) => {
                let setup = processes::Setup { args, database_url: &url, prefix: &prefix, mock_url, consumers };
                let children = processes::start(&setup, workers, leftovers).await?;
                let port = children.port;
                (Target::Children(children), port, app::database(&config, false).await?)
            }
        };
        let spec = crate::api_keys::KeySpec {
            label: Some("bench".into()),
            scopes: crate::api_keys::Scopes::of(&[crate::api_keys::Scope::Verify]),
            sources: Default::default(),
        };
        let (_, issued) = crate::api_keys::create(&pool, "bench", &spec, &crate::api_keys::console_operator()).await?;
        let key = issued.secret().to_owned();
        let client = reqwest::Client::new();
        let endpoint = format!("http://127.0.0.1:{port}/v1/verifications");

        // Resident memory of each process, sampled every second while the run lasts.
        let sources = target.memory_sources();
        let rss = Arc::new(Mutex::new(vec![Vec::<f64>::new(); sources.len()]));
        let sampler = {
            let (rss, files): (_, Vec<String>) = (rss.clone(), sources.iter().map(|(_, f)| f.clone()).collect());
            actix_rt::spawn(async move {
                loop {
                    let now: Vec<f64> = files.iter().map(|f| rss_mib_of(f)).collect();
                    for (series, mib) in rss.lock().unwrap_or_else(|e| e.into_inner()).iter_mut().zip(now) {
                        series.push(mib);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        let shed = Arc::new(AtomicUsize::new(0));
        let created = drive(args.n, args.rate, args.concurrency, |i| {
            let (client, endpoint, key, shed) = (client.clone(), endpoint.clone(), key.clone(), shed.clone());
            async move {
                let to = phone(i);
                let t0 = Instant::now();
                let body = serde_json::json!({ "account_id": format!("bench-{i}"), "phone": to, "channel": "sms" });
                let response = post_json(&client, &endpoint, &key, &body, &shed).await?;
                anyhow::ensure!(response.status().as_u16() == 201, "create answered {}", response.status());
                let created: serde_json::Value = response.json().await?;
                let id = created["id"].as_str().context("create answered no id")?.to_owned();
                Ok::<_, anyhow::Error>((to, id, t0))
            }
        })
        .await?;
        // A create's answer is timed from its scheduled start (open loop), the
        // provider's receipt from the moment its request was sent.
        let mut started = HashMap::with_capacity(args.n);
        let mut ids = HashMap::with_capacity(args.n);
        let mut create_ms = Vec::with_capacity(args.n);
        for ((to, id, t0), ms) in created {
            started.insert(to.clone(), t0);
            ids.insert(to, id);
            create_ms.push(ms);
        }
        wait_for(received, args.n, Duration::from_secs(300)).await?;
        let arrived = received.take();
        let figures = figures(&started, &arrived)?;
        let to_provider: Vec<f64> = started
            .iter()
            .filter_map(|(to, t0)| arrived.get(to).map(|t1| t1.duration_since(*t0).as_secs_f64() * 1000.0))
            .collect();
        let mut stages =
            vec![Stage::new("create (HTTP answer)", create_ms), Stage::new("create → provider", to_provider)];
        let mut checks_per_second = None;
        if let Some(rate) = args.check_rate {
            let codes = received.codes();
            let checks: Vec<(String, String)> =
                ids.into_iter().filter_map(|(to, id)| codes.get(&to).map(|code| (id, code.clone()))).collect();
            anyhow::ensure!(
                checks.len() == args.n,
                "only {} of {} codes were read from the messages",
                checks.len(),
                args.n
            );
            let checks = Arc::new(checks);
            let t0 = Instant::now();
            let answered = drive(checks.len(), Some(rate), args.concurrency, |i| {
                let (client, key, checks, shed) = (client.clone(), key.clone(), checks.clone(), shed.clone());
                let url = format!("http://127.0.0.1:{port}/v1/verifications/{}/check", checks[i].0);
                async move {
                    let body = serde_json::json!({ "code": checks[i].1 });
                    let response = post_json(&client, &url, &key, &body, &shed).await?;
                    anyhow::ensure!(response.status().as_u16() == 200, "check answered {}", response.status());
                    let checked: serde_json::Value = response.json().await?;
                    anyhow::ensure!(checked["status"] == "approved", "check answered {}", checked["status"]);
                    Ok::<_, anyhow::Error>(())
                }
            })
            .await?;
            checks_per_second = Some(answered.len() as f64 / t0.elapsed().as_secs_f64());
            stages.push(Stage::new("check (HTTP answer)", answered.into_iter().map(|(_, ms)| ms).collect()));
        }
        sampler.abort();
        let rss = rss.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let rss_mib = sources
            .into_iter()
            .zip(rss)
            .map(|((label, _), series)| {
                let peak = series.iter().copied().fold(0.0, f64::max);
                (label, (series.first().copied().unwrap_or_default(), peak, series.last().copied().unwrap_or_default()))
            })
            .collect();
        let shape = target.shape();
        match target {
            Target::Here(running) => {
                running.stop_consuming(Duration::from_secs(5)).await;
                running.core.pool.close().await;
            }
            Target::Children(_) => {
                leftovers.stop_children();
                pool.close().await;
            }
        }
        let shed = shed.load(Ordering::Relaxed);
        Ok::<_, anyhow::Error>(Report { shape, figures, stages, rss_mib, checks_per_second, shed })
    }
    .await;
    leftovers.remove(&args.database_url, &args.amqp_url).await;
    result
}

/// Resolves when the bench is asked to stop: Ctrl-C or SIGTERM.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "Ctrl-C",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.n <= PHONES, "--n is at most {PHONES}: each verification needs a number of its own");
    anyhow::ensure!(!args.workers.contains(&0), "--workers counts processes: 1 or more");
    let leftovers = Leftovers::default();
    // Whatever ends the run, what it made goes: an interrupted run drops its
    // scratch database, queues and child processes too.
    let outcome = tokio::select! {
        outcome = measure(&args, &leftovers) => outcome,
        signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}: the run's databases, queues and processes are removed")),
    };
    leftovers.remove(&args.database_url, &args.amqp_url).await;
    outcome
}

async fn measure(args: &Args, leftovers: &Leftovers) -> anyhow::Result<()> {
    let received = Arc::new(Received::default());
    let mock = start_mock(received.clone(), Duration::from_millis(args.provider_latency_ms)).await?;
    println!(
        "verifyd bench: n={} concurrency={} prefetch={} provider latency={} ms, rate={}, check rate={}, cores={}",
        args.n,
        args.concurrency,
        args.prefetch,
        args.provider_latency_ms,
        args.rate.map_or("burst".to_owned(), |r| format!("{r}/s")),
        args.check_rate.map_or("no checks".to_owned(), |r| format!("{r}/s")),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let shapes: Vec<Option<usize>> =
        if args.workers.is_empty() { vec![None] } else { args.workers.iter().copied().map(Some).collect() };
    let mut reports = Vec::new();
    println!("| consumers | path | processes | verifications/s | p50 ms | p95 ms | p99 ms | vs baseline |");
    println!("|---:|---|---|---:|---:|---:|---:|---:|");
    for &consumers in &args.consumers {
        let base = match args.without_baseline {
            true => None,
            false => Some(run_baseline(args, consumers, &mock, &received, leftovers).await?),
        };
        let share =
            |f: &Figures| base.map_or("–".to_owned(), |b| format!("{:.0} %", 100.0 * f.per_second / b.per_second));
        if let Some(b) = &base {
            println!(
                "| {consumers} | baseline | one | {:.0} | {:.1} | {:.1} | {:.1} | {} |",
                b.per_second,
                b.p50_ms,
                b.p95_ms,
                b.p99_ms,
                share(b)
            );
        }
        for &workers in &shapes {
            let full = run_verifyd(args, consumers, workers, &mock, &received, leftovers).await?;
            let f = &full.figures;
            println!(
                "| {consumers} | verifyd | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} |",
                full.shape,
                f.per_second,
                f.p50_ms,
                f.p95_ms,
                f.p99_ms,
                share(f)
            );
            reports.push((consumers, full));
        }
    }
    println!();
    println!("| consumers | processes | verifyd stage | n | p50 ms | p99 ms | max ms |");
    println!("|---:|---|---|---:|---:|---:|---:|");
    for (consumers, report) in &reports {
        for stage in &report.stages {
            println!(
                "| {consumers} | {} | {} | {} | {:.1} | {:.1} | {:.1} |",
                report.shape,
                stage.name,
                stage.ms.len(),
                quantile(&stage.ms, 0.50),
                quantile(&stage.ms, 0.99),
                stage.ms.last().copied().unwrap_or(f64::NAN)
            );
        }
    }
    println!();
    println!("| consumers | processes | resident memory of | start MiB | peak MiB | end MiB |");
    println!("|---:|---|---|---:|---:|---:|");
    for (consumers, report) in &reports {
        for (label, (first, peak, last)) in &report.rss_mib {
            println!("| {consumers} | {} | {label} | {first:.1} | {peak:.1} | {last:.1} |", report.shape);
        }
    }
    for (consumers, report) in &reports {
        if let Some(c) = report.checks_per_second {
            println!("{consumers} consumers, {}: checks answered {c:.0}/s", report.shape);
        }
        if report.shed > 0 {
            println!(
                "{consumers} consumers, {}: {} requests answered 503 overloaded, each sent again after Retry-After",
                report.shape, report.shed
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_the_bench_makes_is_a_distinct_valid_phone() {
        let numbers: std::collections::HashSet<String> = (0..PHONES).step_by(997).map(phone).collect();
        assert_eq!(numbers.len(), PHONES.div_ceil(997));
        for area in 0..AREAS.len() {
            let number = phone(area * 10_000 + 4242);
            assert!(verifyd_providers::domain::PhoneNumber::parse(&number).is_ok(), "{number}");
        }
    }
}
