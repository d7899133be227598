//! `verifyd dead-letters list|show|replay|discard` and `verifyd overview`: the
//! operator endpoints from a shell, as the deployment's operator (the actor in
//! the audit trail is `cli:<USER>`). Each takes `--json` for the same JSON the
//! HTTP API answers.

use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use verifyd_core::ids::View;
use verifyd_core::ops::letters::{self, LetterError};
use verifyd_core::ops::overview::Overview;
use verifyd_core::store::dead_letters;

use crate::api_keys::console_operator;
use crate::app;
use crate::config::Config;
use crate::ops::{FilterArgs, LetterDetail, LetterView};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterFlags {
    /// Only this tenant's letters.
    #[arg(long)]
    pub tenant: Option<String>,
    /// sms or voice.
    #[arg(long)]
    pub channel: Option<String>,
    /// A reason kind: retries_exhausted, malformed, unknown_verification, sealed_code,
    /// unknown_tenant, invalid_request, too_large, idempotency_conflict, other.
    #[arg(long)]
    pub reason: Option<String>,
    /// Dead-lettered at least this long ago: 90, 30s, 15m, 2h, 7d.
    #[arg(long)]
    pub older_than: Option<String>,
    /// Dead-lettered less than this long ago.
    #[arg(long)]
    pub newer_than: Option<String>,
}

impl FilterFlags {
    fn args(&self, status: Option<String>) -> FilterArgs {
        FilterArgs {
            tenant: self.tenant.clone(),
            channel: self.channel.clone(),
            reason: self.reason.clone(),
            status,
            older_than: self.older_than.clone(),
            newer_than: self.newer_than.clone(),
        }
    }

    fn any(&self) -> bool {
        self.tenant.is_some()
            || self.channel.is_some()
            || self.reason.is_some()
            || self.older_than.is_some()
            || self.newer_than.is_some()
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum DeadLetters {
    /// Dead letters, newest first (waiting ones unless --status says otherwise).
    List {
        #[command(flatten)]
        filter: FilterFlags,
        /// dead (default), replayed, discarded or all.
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1-200).
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// The next page: the last id of the previous one.
        #[arg(long)]
        after: Option<Uuid>,
        #[arg(long)]
        json: bool,
    },
    /// One letter: its reason, verification, every attempt, and its message.
    Show {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Send a letter again (its job is re-armed), or every waiting letter a filter matches.
    Replay {
        /// The letter; or give filter flags (at least one) for every matching letter.
        id: Option<Uuid>,
        #[command(flatten)]
        filter: FilterFlags,
        /// With filter flags: at most this many, oldest first (1-500).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Put a letter aside for good with a reason, or every waiting letter a filter matches.
    Discard {
        id: Option<Uuid>,
        /// Why (kept with the letter and in the audit trail).
        #[arg(long = "because", value_name = "TEXT")]
        because: String,
        #[command(flatten)]
        filter: FilterFlags,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn short(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_letters(letters: &[LetterView]) {
    println!(
        "{:<36}  {:<19}  {:<16}  {:<5}  {:<20}  {:<9}  reason",
        "id", "dead-lettered", "tenant", "chan", "kind", "status"
    );
    for l in letters {
        println!(
            "{:<36}  {:<19}  {:<16}  {:<5}  {:<20}  {:<9}  {}",
            l.id,
            when(Some(l.dead_lettered_at)),
            short(l.tenant.as_deref().unwrap_or("-"), 16),
            l.channel.as_deref().unwrap_or("-"),
            l.reason_kind.as_str(),
            l.status.as_str(),
            short(&l.reason, 80)
        );
    }
    if letters.is_empty() {
        println!("(none)");
    }
}

fn print_detail(d: &LetterDetail) {
    let l = &d.letter;
    println!("dead letter      {}", l.id);
    println!(
        "status           {}{}",
        l.status.as_str(),
        l.resolved_by.as_ref().map_or(String::new(), |by| format!(" by {by} at {}", when(l.resolved_at)))
    );
    if let Some(resolution) = &l.resolution {
        println!("because          {resolution}");
    }
    println!("tenant           {}", l.tenant.as_deref().unwrap_or("-"));
    println!("queue            {}", l.source_queue);
    println!("reason           {} — {}", l.reason_kind.as_str(), l.reason);
    println!("dead-lettered    {}", when(Some(l.dead_lettered_at)));
    println!("first failure    {}", when(d.first_failure_at));
    println!("last failure     {}", when(d.last_failure_at));
    if let Some(v) = &d.verification {
        println!(
            "verification     {} ({}, {} to {}, account {}, expires {})",
            l.verification_id.map(|v| v.to_string()).unwrap_or_default(),
            v.status,
            v.channel,
            v.to,
            v.account_id,
            when(Some(v.expires_at))
        );
    }
    match &d.not_replayable {
        None => println!("replayable       yes: verifyd dead-letters replay {}", l.id),
        Some(why) => println!("replayable       no: {why}"),
    }
    println!("attempts         {}", d.attempts.len());
    for a in &d.attempts {
        println!(
            "  {}  {:<8}  {:<16}  {:<14}  {:>6}  {}",
            when(Some(a.at)),
            a.provider.as_deref().unwrap_or("-"),
            a.outcome,
            a.error_kind.as_deref().unwrap_or("-"),
            a.latency_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms")),
            short(a.error.as_deref().unwrap_or(""), 70)
        );
    }
    println!("message          {}", short(&d.body.text, 300));
}

/// What a refused action says, one line.
fn refused(id: Uuid, error: &LetterError) -> String {
    format!("{id}: {error}")
}

pub async fn run(config: &Config, command: DeadLetters) -> anyhow::Result<()> {
    let pool = app::database(config, false).await?;
    let view = View::Deployment;
    let now = verifyd_core::timestamp::now();
    match command {
        DeadLetters::List { filter, status, limit, after, json } => {
            anyhow::ensure!((1..=200).contains(&limit), "--limit must be 1 to 200");
            let parsed = filter.args(status).parse(&pool, &view, now).await?;
            let found = dead_letters::list(&pool, &view, &parsed, after, limit).await?;
            let views: Vec<LetterView> = found.iter().map(LetterView::from).collect();
            if json {
                let next = (views.len() as i64 == limit).then(|| views.last().map(|l| l.id)).flatten();
                print_json(&serde_json::json!({ "dead_letters": views, "next_after": next }))
            } else {
                print_letters(&views);
                Ok(())
            }
        }
        DeadLetters::Show { id, json } => {
            let opened = letters::open(&pool, &view, id, now).await?.context("no dead letter with that id")?;
            let detail = LetterDetail::from(opened);
            if json {
                print_json(&detail)
            } else {
                print_detail(&detail);
                Ok(())
            }
        }
        DeadLetters::Replay { id, filter, limit, json } => {
            let who = console_operator();
            let targets = targets(&pool, &view, id, &filter, limit, now).await?;
            let outcome =
                each(targets, |target| letters::replay(&pool, &view, target, &who, verifyd_core::timestamp::now()))
                    .await?;
            outcome.report(json, "replayed", |r| match (r.verification_id, r.job_id, r.webhook_delivery_id) {
                (Some(v), Some(job), _) => format!("replayed {} (verification {v}, new job {job})", r.id),
                (_, _, Some(delivery)) => format!("replayed {} (webhook delivery {delivery}, same webhook-id)", r.id),
                _ => format!("replayed {}", r.id),
            })?;
            if !outcome.done.is_empty() && !json {
                eprintln!("queued in the outbox: a running verifyd publishes it within runtime.relay_poll_ms");
            }
            outcome.ok("replayed")
        }
        DeadLetters::Discard { id, because, filter, limit, json } => {
            let because = because.trim();
            anyhow::ensure!(
                !because.is_empty() && because.chars().count() <= 500,
                "--because must be 1 to 500 characters"
            );
            let who = console_operator();
            let targets = targets(&pool, &view, id, &filter, limit, now).await?;
            let (pool, view, who) = (&pool, &view, &who);
            let outcome = each(targets, |target| async move {
                letters::discard(pool, view, target, who, because, verifyd_core::timestamp::now())
                    .await
                    .map(|l| LetterView::from(&l))
            })
            .await?;
            outcome.report(json, "discarded", |l| format!("discarded {}", l.id))?;
            outcome.ok("discarded")
        }
    }
}

/// What an action on several letters did: each letter on its own.
struct Outcome<T> {
    done: Vec<T>,
    refused: Vec<(Uuid, LetterError)>,
}

/// Acts on each letter in turn; a refusal is that letter's, a database error stops all.
async fn each<T, F, Fut>(targets: Vec<Uuid>, mut act: F) -> anyhow::Result<Outcome<T>>
where
    F: FnMut(Uuid) -> Fut,
    Fut: std::future::Future<Output = Result<T, LetterError>>,
{
    let mut outcome = Outcome { done: Vec::new(), refused: Vec::new() };
    for target in targets {
        match act(target).await {
            Ok(done) => outcome.done.push(done),
            Err(LetterError::Store(e)) => return Err(e.into()),
            Err(e) => outcome.refused.push((target, e)),
        }
    }
    Ok(outcome)
}

impl<T: serde::Serialize> Outcome<T> {
    fn report(&self, json: bool, verb: &str, line: impl Fn(&T) -> String) -> anyhow::Result<()> {
        if json {
            let refused: Vec<_> =
                self.refused.iter().map(|(id, e)| serde_json::json!({ "id": id, "detail": e.to_string() })).collect();
            return print_json(&serde_json::json!({ verb: self.done, "refused": refused }));
        }
        for done in &self.done {
            println!("{}", line(done));
        }
        for (id, e) in &self.refused {
            eprintln!("not {verb}: {}", refused(*id, e));
        }
        Ok(())
    }

    /// Fails when nothing was done and something was refused.
    fn ok(&self, verb: &str) -> anyhow::Result<()> {
        if self.done.is_empty() && !self.refused.is_empty() {
            bail!("nothing was {verb}");
        }
        Ok(())
    }
}

/// One letter by id, or every waiting letter the filter flags match.
async fn targets(
    pool: &sqlx::PgPool,
    view: &View,
    id: Option<Uuid>,
    filter: &FilterFlags,
    limit: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Uuid>> {
    match (id, filter.any()) {
        (Some(id), false) => Ok(vec![id]),
        (Some(_), true) => bail!("give a letter id or filter flags, not both"),
        (None, false) => bail!(
            "give a letter id, or filter flags (--reason, --tenant, --channel, --older-than, --newer-than) for every matching letter"
        ),
        (None, true) => {
            anyhow::ensure!((1..=letters::MAX_BATCH).contains(&limit), "--limit must be 1 to 500");
            let parsed = filter.args(None).parse(pool, view, now).await?;
            Ok(letters::matching(pool, view, &parsed, limit).await?.into_iter().map(|l| l.id).collect())
        }
    }
}

/// `verifyd overview`: what every process knows, from PostgreSQL and the broker.
pub async fn overview(config: &Config, json: bool) -> anyhow::Result<()> {
    let routes = crate::routes::build(config)?;
    let pool = app::database(config, false).await?;
    let amqp = app::rabbitmq(config).await?;
    let settings = app::settings(config)?;
    let interval = Duration::from_millis(config.runtime.report_interval_ms);
    let overview =
        crate::ops::overview(&pool, Some(&amqp), &settings.topology, &routes, interval, &View::Deployment).await?;
    let _ = amqp.close(200, "done".into()).await;
    if json {
        return print_json(&overview);
    }
    print_overview(&overview);
    Ok(())
}

fn secs(age: Option<f64>) -> String {
    match age {
        None => "?".to_owned(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.0}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

fn pct(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}ms"))
}

fn print_overview(o: &Overview) {
    println!("verifyd overview ({}) at {}", o.view, when(Some(o.generated_at)));
    println!("\nqueues");
    println!("  {:<44} {:>8} {:>9} {:>8}", "queue", "messages", "consumers", "oldest");
    for q in &o.queues {
        println!("  {:<44} {:>8} {:>9} {:>8}", q.queue, q.messages, q.consumers, secs(q.oldest_age_secs));
    }
    let outbox_age = if o.outbox.rows == 0 { Some(0.0) } else { o.outbox.oldest_age_secs };
    println!("  {:<44} {:>8} {:>9} {:>8}", "(outbox)", o.outbox.rows, "-", secs(outbox_age));
    let webhook_age = if o.webhooks.pending == 0 { Some(0.0) } else { o.webhooks.oldest_pending_age_secs };
    println!("  {:<44} {:>8} {:>9} {:>8}", "(webhook deliveries pending)", o.webhooks.pending, "-", secs(webhook_age));
    println!("\ndead letters waiting: {}", o.dead_letters.waiting);
    for (reason, n) in &o.dead_letters.by_reason {
        println!("  {reason:<24} {n}");
    }
    println!("\nproviders (last 5 min | last 60 min)");
    for p in &o.providers {
        let (a, b) = (&p.last_5m, &p.last_60m);
        println!(
            "  {:<10} sends {:>5} ok {:>6} p50 {:>7} p95 {:>7} | sends {:>6} ok {:>6} p50 {:>7} p95 {:>7}",
            p.provider,
            a.sends,
            pct(a.success_rate),
            ms(a.p50_ms),
            ms(a.p95_ms),
            b.sends,
            pct(b.success_rate),
            ms(b.p50_ms),
            ms(b.p95_ms)
        );
        if !b.errors.is_empty() {
            let errors: Vec<String> = b.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!("             errors (60 min): {}", errors.join(", "));
        }
        for c in &p.circuits {
            let until = c.open_until.map_or(String::new(), |t| format!(" until {}", when(Some(t))));
            println!("             circuit {} on {} {} ({}){until}", c.state, c.role, c.host, short(&c.process, 8));
        }
        if let Some(pacing) = &p.pacing {
            println!(
                "             paced at {}/s, using {:.1}/s ({:.0}%)",
                pacing.tps,
                pacing.used_per_sec,
                pacing.use_ratio * 100.0
            );
        }
    }
    if !o.conversion.is_empty() {
        println!("\nconversion (approved ÷ sent, last 60 min)");
        for c in &o.conversion {
            println!(
                "  {:<5} {:<4} {:>6} / {:<6} {}",
                c.channel,
                c.country.as_deref().unwrap_or("-"),
                c.last_60m.approved,
                c.last_60m.sent,
                pct(c.last_60m.rate)
            );
        }
    }
    if !o.blocked_prefixes.is_empty() {
        println!("\nblocked prefixes");
        for b in &o.blocked_prefixes {
            println!(
                "  {:<16} {:<10} until {}  ({} sent, {} approved)",
                b.tenant,
                b.prefix,
                when(Some(b.blocked_until)),
                b.sent,
                b.approved
            );
        }
    }
    println!("\nprocesses");
    for p in &o.processes {
        println!(
            "  {:<8} {:<7} {:<20} pid {:<7} {:<8} consumers {}/{}  seen {}",
            short(&p.id, 8),
            p.role,
            short(&p.host, 20),
            p.pid,
            p.state,
            p.consumers.live,
            p.consumers.expected,
            when(Some(p.seen_at))
        );
    }
}
