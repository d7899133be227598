//! `verifyd mock-provider twilio --port 4010`: a stand-in for a provider's
//! API as a process of its own, for teams whose tests are not in Rust. It is
//! the test kit's mock (`verifyd_providers::testkit`) on a port of your
//! choosing: it speaks the provider's real API (paths, authentication,
//! fields, answers, error bodies), so verifyd's real provider client talks to
//! it, and it serves a control API next to it:
//!
//! - `GET /_mock/messages[?to=+E.164]`: `{"provider","messages":[{"provider",
//!   "id","channel","to","text","code"}]}`, oldest first, **codes included**;
//! - `DELETE /_mock/messages`: forget them (and every failure still to come);
//! - `POST /_mock/fail-next` `{"count":1,"failure":"unavailable"}` (or
//!   `throttled` with `retry_after_secs`, `invalid_number`, `unauthorized`,
//!   `code` with `status` and the provider's `code`): the next sends get the
//!   provider's real error.
//!
//! It reads no verifyd configuration and touches no database or queue. It
//! refuses to start when `VERIFYD_MODE=production` is in its environment: an
//! image configured for production never runs a provider that hands out
//! codes to anyone who asks.

use std::net::TcpListener;

use anyhow::Context;
use verifyd_providers::testkit::{
    SINCH_MOCK_APPLICATION_KEY, SINCH_MOCK_APPLICATION_SECRET, SinchMock, TelnyxMock, TwilioMock,
    VONAGE_MOCK_APPLICATION_ID, VonageMock,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MockedProvider {
    Twilio,
    Vonage,
    Telnyx,
    Sinch,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which provider's API to speak.
    #[arg(value_enum)]
    pub provider: MockedProvider,
    /// The port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 4010)]
    pub port: u16,
    /// The address to listen on (`0.0.0.0` in a container).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
}

/// Keeps the mock alive; dropping it stops the server.
enum Running {
    Twilio(TwilioMock),
    Vonage(VonageMock),
    Telnyx(TelnyxMock),
    Sinch(SinchMock),
}

/// Refused in an environment configured for production.
pub fn refuse_production(mode: Option<&str>) -> anyhow::Result<()> {
    let production = mode.is_some_and(|m| m.trim().trim_matches('"').eq_ignore_ascii_case("production"));
    anyhow::ensure!(
        !production,
        "verifyd mock-provider hands every code to anyone who asks: it does not run with VERIFYD_MODE=production"
    );
    Ok(())
}

/// What to put in verifyd's configuration to send through the mock at `url`.
fn how_to_use(provider: MockedProvider, url: &str) -> Vec<String> {
    match provider {
        MockedProvider::Twilio => vec![
            format!("VERIFYD_PROVIDERS__TWILIO__BASE_URL={url}"),
            "credentials: any account_sid (AC...) with any non-empty auth_token".to_owned(),
        ],
        MockedProvider::Vonage => vec![
            format!("VERIFYD_PROVIDERS__VONAGE__BASE_URL={url}"),
            format!("VERIFYD_PROVIDERS__VONAGE__VOICE_BASE_URL={url}"),
            "credentials: any api_key with any non-empty api_secret".to_owned(),
            format!(
                "voice: application_id {VONAGE_MOCK_APPLICATION_ID} with the TEST-ONLY private key of \
                 providers/tests/fixtures/TEST-ONLY-vonage-application-private-key.pem"
            ),
        ],
        MockedProvider::Telnyx => vec![
            format!("VERIFYD_PROVIDERS__TELNYX__BASE_URL={url}"),
            "credentials: any non-empty api_key; voice: any texml_connection_id".to_owned(),
        ],
        MockedProvider::Sinch => vec![
            format!("VERIFYD_PROVIDERS__SINCH__BASE_URL={url}"),
            format!("VERIFYD_PROVIDERS__SINCH__VOICE_BASE_URL={url}"),
            "credentials: any service_plan_id with any non-empty api_token".to_owned(),
            format!(
                "voice: application_key {SINCH_MOCK_APPLICATION_KEY}, application_secret {SINCH_MOCK_APPLICATION_SECRET}"
            ),
        ],
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    refuse_production(std::env::var("VERIFYD_MODE").ok().as_deref())?;
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    let running = match args.provider {
        MockedProvider::Twilio => Running::Twilio(TwilioMock::start_on(listener).await),
        MockedProvider::Vonage => Running::Vonage(VonageMock::start_on(listener).await),
        MockedProvider::Telnyx => Running::Telnyx(TelnyxMock::start_on(listener).await),
        MockedProvider::Sinch => Running::Sinch(SinchMock::start_on(listener).await),
    };
    match &running {
        Running::Twilio(mock) => mock.mount_control_api().await,
        Running::Vonage(mock) => mock.mount_control_api().await,
        Running::Telnyx(mock) => mock.mount_control_api().await,
        Running::Sinch(mock) => mock.mount_control_api().await,
    }
    let name = format!("{:?}", args.provider).to_lowercase();
    let url = format!("http://{address}");
    tracing::warn!(provider = %name, %url, "mock provider: every code it receives is readable at /_mock/messages; testing only");
    // One line a script can read, then how to point verifyd at it.
    println!("mock-provider {name} listening on {url}");
    for line in how_to_use(args.provider, &url) {
        println!("  {line}");
    }
    println!("  read codes: GET {url}/_mock/messages   forget: DELETE {url}/_mock/messages");
    println!("  fail next:  POST {url}/_mock/fail-next {{\"count\":1,\"failure\":\"unavailable\"}}");
    shutdown_signal().await.context("waiting for SIGTERM or Ctrl-C")?;
    drop(running);
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_it_whatever_the_spelling() {
        for mode in ["production", "Production", "\"production\"", " production "] {
            assert!(refuse_production(Some(mode)).is_err(), "{mode}");
        }
        for mode in [None, Some("development"), Some("")] {
            assert!(refuse_production(mode).is_ok(), "{mode:?}");
        }
    }
}
