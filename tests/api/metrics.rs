//! Metrics fit for dashboards and alerts, read from the real binaries: every
//! metric is described (`# HELP`) and has its series from the start, serve and
//! worker both answer `/metrics`, refusals and deliveries are counted with
//! bounded labels, and the shipped alert rules and Grafana dashboard name only
//! metrics and labels that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// Metric name → the label names its series carry, from the text format.
#[derive(Debug, Default)]
struct Exposition {
    help: BTreeSet<String>,
    kinds: BTreeMap<String, String>,
    labels: BTreeMap<String, BTreeSet<String>>,
    series: Vec<(String, BTreeMap<String, String>, f64)>,
}

fn parse(text: &str) -> Exposition {
    let mut e = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            e.help.insert(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            e.kinds.insert(parts.next().unwrap().to_owned(), parts.next().unwrap_or_default().to_owned());
        } else if line.starts_with("verifyd_") {
            let (head, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (head, ""),
            };
            let mut map = BTreeMap::new();
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap();
                map.insert(k.to_owned(), v.trim_matches('"').to_owned());
            }
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| e.kinds.get(*b).is_some_and(|k| k == "histogram")))
                .unwrap_or(name);
            e.labels.entry(base.to_owned()).or_default().extend(map.keys().filter(|k| *k != "le").cloned());
            e.series.push((name.to_owned(), map, value.parse().unwrap_or(f64::NAN)));
        }
    }
    e
}

impl Exposition {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series
            .iter()
            .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| *v)
    }
}

/// A `verifyd` process started for this test, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `verifyd <role>` and returns it with the port it listens on (read
/// from its start-up log).
async fn start(app: &TestApp, role: &str) -> (Process, u16) {
    start_with(app, role, &[]).await
}

async fn start_with(app: &TestApp, role: &str, env: &[(&str, &str)]) -> (Process, u16) {
    let log = std::env::temp_dir().join(format!("{}{role}-metrics.log", app.topology.prefix));
    let file = std::fs::File::create(&log).unwrap();
    let mut command = app.verifyd_command(&[role]);
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .expect("verifyd starts");
    let process = Process(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(port) = text
            .lines()
            .find(|l| l.contains("listening"))
            .and_then(|l| l.rsplit_once("127.0.0.1:"))
            .and_then(|(_, p)| p.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        {
            let _ = std::fs::remove_file(&log);
            return (process, port);
        }
        assert!(Instant::now() < deadline, "verifyd {role} did not start:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scrape(app: &TestApp, port: u16) -> Exposition {
    scrape_with(app, port, None).await
}

async fn scrape_with(app: &TestApp, port: u16, token: Option<&str>) -> Exposition {
    let mut request = app.client.get(format!("http://127.0.0.1:{port}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    parse(&response.text().await.unwrap())
}

/// Every `verifyd_*` metric an expression names, with the labels it selects on
/// or groups by.
fn referenced(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if expr[i..].starts_with("verifyd_")
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
        {
            let end = expr[i..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(expr.len(), |n| i + n);
            metrics.insert(expr[i..end].to_owned());
            i = end;
            continue;
        }
        i += 1;
    }
    // Selectors: {label="…", label=~"…"}; groupings: by (a, b), without (a).
    for selector in expr.split('{').skip(1) {
        let inner = selector.split('}').next().unwrap_or_default();
        for matcher in inner.split(',') {
            let name: String = matcher.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                labels.insert(name);
            }
        }
    }
    for keyword in ["by (", "without ("] {
        for group in expr.split(keyword).skip(1) {
            for name in group.split(')').next().unwrap_or_default().split(',') {
                labels.insert(name.trim().to_owned());
            }
        }
    }
    (metrics, labels)
}

fn check_expression(where_: &str, expr: &str, exposed: &Exposition) {
    let (metrics, labels) = referenced(expr);
    assert!(!metrics.is_empty(), "{where_}: names no verifyd metric: {expr}");
    // Labels Prometheus adds to every series, and histogram buckets' `le`.
    let mut allowed: BTreeSet<String> = ["instance", "job", "le"].iter().map(|s| (*s).to_owned()).collect();
    for m in &metrics {
        let base =
            ["_bucket", "_count", "_sum"].iter().find_map(|s| m.strip_suffix(s)).filter(|b| exposed.help.contains(*b));
        let base = base.unwrap_or(m);
        assert!(exposed.help.contains(base), "{where_}: {m} is not exported (expr: {expr})");
        allowed.extend(exposed.labels.get(base).cloned().unwrap_or_default());
    }
    for label in labels {
        assert!(allowed.contains(&label), "{where_}: label {label:?} is on none of {metrics:?} (expr: {expr})");
    }
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn every_metric_is_described_and_present_from_the_start_in_serve_and_worker() {
    // Only the binaries deliver (they have a metrics recorder; the in-process serve has none).
    let app = spawn_app_with(|c| c.amqp.dispatch_consumers = 0).await;
    let (_serve, port) = start(&app, "serve").await;
    let (_worker, worker_port) = start(&app, "worker").await;
    let serve = scrape(&app, port).await;
    let worker = scrape(&app, worker_port).await;

    let catalog: BTreeSet<String> =
        verifyd_core::telemetry::catalog::METRICS.iter().map(|m| m.name.to_owned()).collect();
    for exposed in [&serve, &worker] {
        assert_eq!(exposed.help, catalog, "# HELP for every metric, and no undescribed one");
        for m in verifyd_core::telemetry::catalog::METRICS {
            assert_eq!(exposed.kinds.get(m.name).map(String::as_str), Some(m.kind.as_str()), "{}", m.name);
            let labels: BTreeSet<String> = m.labels.iter().map(|(l, _)| (*l).to_owned()).collect();
            assert_eq!(
                exposed.labels.get(m.name).cloned().unwrap_or_default(),
                labels,
                "{}: its series carry its labels",
                m.name
            );
            assert!(
                exposed.series.iter().any(|(n, _, _)| n == m.name || n.starts_with(&format!("{}_", m.name))),
                "{} has series at start",
                m.name
            );
        }
    }
    // Labels are the bounded values: every provider, channel and error kind at zero.
    assert_eq!(serve.value("verifyd_provider_errors_total", &[("provider", "twilio"), ("kind", "timeout")]), Some(0.0));
    assert_eq!(
        serve.value("verifyd_throttled_total", &[("scope", "wrong_answers")]),
        Some(0.0),
        "snake_case, like every other label"
    );
    assert!(serve.value("verifyd_throttled_total", &[("scope", "WrongAnswers")]).is_none());
    assert_eq!(
        serve.value("verifyd_provider_latency_seconds_bucket", &[("provider", "twilio"), ("le", "0.25")]),
        Some(0.0),
        "a histogram"
    );
    assert_eq!(serve.value("verifyd_build_info", &[("role", "serve")]), Some(1.0));
    assert_eq!(worker.value("verifyd_build_info", &[("role", "worker")]), Some(1.0));
    let sms_queue = app.topology.dispatch_queue(verifyd_providers::domain::Channel::Sms);
    assert_eq!(
        serve.value("verifyd_queue_consumers", &[("queue", &sms_queue)]),
        Some(4.0),
        "the serve and worker binaries: 2 each"
    );
    assert_eq!(worker.value("verifyd_dead_letters", &[("reason", "retries_exhausted")]), Some(0.0));

    // Counted as it happens: a verification, its delivery, a refused resend.
    let created = app.run_cli(&["keys", "create", "--tenant", &app.tenant, "--scope", "verify"]).await;
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let body = json!({ "account_id": "m", "phone": "+14155552698", "channel": "sms" });
    let v: Value = app
        .client
        .post(url("/v1/verifications"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    app.code_sent_to("+14155552698").await;
    let resend = app
        .client
        .post(url(&format!("/v1/verifications/{}/resend", v["id"].as_str().unwrap())))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status(), 429, "a resend inside resend_interval_secs");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = scrape(&app, port).await;
        let created = now.value("verifyd_verifications_created_total", &[("tenant", &app.tenant), ("channel", "sms")]);
        let refused = now.value("verifyd_throttled_total", &[("scope", "verification")]);
        let sent = now
            .value("verifyd_dispatch_total", &[("tenant", &app.tenant), ("channel", "sms"), ("outcome", "sent")])
            .unwrap_or(0.0)
            + worker_value(&app, worker_port, &[("tenant", &app.tenant), ("channel", "sms"), ("outcome", "sent")])
                .await;
        if created == Some(1.0) && refused == Some(1.0) && sent >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "created {created:?}, resend refusals {refused:?}, sent {sent}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn worker_value(app: &TestApp, port: u16, labels: &[(&str, &str)]) -> f64 {
    scrape(app, port).await.value("verifyd_dispatch_total", labels).unwrap_or(0.0)
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_shipped_alerts_and_dashboard_name_only_metrics_and_labels_that_exist() {
    let app = spawn_app().await;
    // With metrics.token set, a scrape needs it.
    let (_serve, port) = start_with(&app, "serve", &[("VERIFYD_METRICS__TOKEN", "\"scrape-token-1\"")]).await;
    let refused = app.client.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let wrong = app.client.get(format!("http://127.0.0.1:{port}/metrics")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let exposed = scrape_with(&app, port, Some("scrape-token-1")).await;
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ops");

    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(docs.join("alerts.yml")).unwrap())
            .expect("alerts.yml is YAML");
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            assert!(alerts.insert(name.to_owned()), "{name} twice");
            let expr = rule["expr"].as_str().expect("expr");
            check_expression(name, expr, &exposed);
            assert!(rule["labels"]["severity"].as_str().is_some(), "{name}: severity");
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{name}: summary");
        }
    }
    for wanted in
        ["VerifydDeadLettersGrowing", "VerifydProviderErrorRate", "VerifydProviderCircuitOpen", "VerifydQueueBackedUp"]
    {
        assert!(alerts.contains(wanted), "{wanted} is shipped");
    }

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(docs.join("grafana-dashboard.json")).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            check_expression(title, target["expr"].as_str().unwrap(), &exposed);
        }
    }
}
