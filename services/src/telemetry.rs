//! Logs (tracing, human or JSON) and the Prometheus recorder.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use verifyd_core::telemetry::catalog;

pub fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,lapin=warn"));
    // Logs go to stderr: what a command prints on stdout (a key, `--json`) stays clean.
    // Colours only on a terminal: log files and container logs get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = if json { builder.json().try_init() } else { builder.try_init() };
    if let Err(error) = result {
        eprintln!("logging already initialised: {error}");
    }
}

/// Installs the global metrics recorder; `None` if one is already installed.
/// Latencies are true histograms (buckets a dashboard can add up across
/// processes), not summaries.
pub fn init_metrics() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("verifyd_provider_latency_seconds".into()), &catalog::latency_buckets())
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("verifyd_request_to_accepted_seconds".into()),
                catalog::JOURNEY_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("verifyd_request_to_delivered_seconds".into()),
                catalog::JOURNEY_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("verifyd_webhook_latency_seconds".into()),
                &catalog::latency_buckets(),
            )
        });
    match builder {
        Ok(builder) => builder.install_recorder().ok(),
        Err(error) => {
            tracing::error!(%error, "metrics: bad histogram buckets; no metrics");
            None
        }
    }
}
