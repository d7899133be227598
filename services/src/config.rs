//! Configuration: defaults, then the TOML file given with `--config`, then
//! `VERIFYD_*` environment variables (`__` separates levels:
//! `VERIFYD_DATABASE__URL`). Secrets have no default: the service refuses to start
//! without them.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use verifyd_actors::gate::GateSettings;
use verifyd_actors::throttle::Limits;
use verifyd_providers::twilio::TwilioConfig;
use verifyd_providers::vonage::VonageConfig;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub amqp: Amqp,
    pub secrets: Secrets,
    #[serde(default)]
    pub verification: Verification,
    #[serde(default)]
    pub throttle: Limits,
    /// The login gate: challenge lifetime and attempts, proof lifetime.
    #[serde(default)]
    pub gate: GateSettings,
    #[serde(default)]
    pub providers: Providers,
    #[serde(default)]
    pub runtime: Runtime,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Http {
    pub bind: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// actix-web worker threads; 0 = one per core.
    pub workers: usize,
    /// How long a checked API key is remembered; a revocation takes effect within it.
    pub key_cache_secs: u64,
}

impl Default for Http {
    fn default() -> Self {
        Http { bind: "127.0.0.1:8080".into(), max_body_bytes: 16 * 1024, workers: 0, key_cache_secs: 5 }
    }
}

#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Database {
    pub url: String,
    pub max_connections: u32,
    pub migrate_on_start: bool,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: "postgres://postgres@127.0.0.1:5432/verifyd".into(),
            max_connections: 20,
            migrate_on_start: true,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Amqp {
    pub url: String,
    /// Put before every queue and exchange name.
    pub prefix: String,
    /// Unacknowledged deliveries per consumer.
    pub prefetch: u16,
    /// Consumers per dispatch queue in each process.
    pub dispatch_consumers: usize,
    /// Consumers of the requests queue in each `serve` process.
    pub request_consumers: usize,
    /// Delay of each retry of a delivery that failed in a retryable way.
    pub retry_delays_ms: Vec<u64>,
}

impl Default for Amqp {
    fn default() -> Self {
        Amqp {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefix: "verifyd.".into(),
            prefetch: 32,
            dispatch_consumers: 4,
            request_consumers: 2,
            retry_delays_ms: vec![5_000, 30_000, 120_000],
        }
    }
}

/// A connection URL with its password replaced, for `Debug`.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

impl std::fmt::Debug for Amqp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Amqp")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("prefetch", &self.prefetch)
            .field("dispatch_consumers", &self.dispatch_consumers)
            .field("request_consumers", &self.request_consumers)
            .field("retry_delays_ms", &self.retry_delays_ms)
            .finish()
    }
}

#[derive(Clone, Deserialize)]
pub struct Secrets {
    /// Base64 of 32 random bytes: the HMAC key codes are stored under.
    pub code_hmac_key: SecretString,
    /// Base64 of 32 random bytes: the AES-256-GCM key sealed codes are stored under.
    pub encryption_key: SecretString,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("secrets.{0} must be base64 of exactly 32 bytes")]
    Key(&'static str),
    #[error("provider {0:?} is listed but not configured (add a [providers.{0}] section)")]
    MissingProvider(String),
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    #[error("provider {0:?} does not place voice calls yet; list it under providers.sms only")]
    VoiceUnsupported(String),
    #[error("the console provider prints codes and is refused in production mode")]
    ConsoleInProduction,
    #[error("verification.code_length must be between 4 and 10")]
    CodeLength,
}

impl Secrets {
    fn decode(name: &'static str, value: &SecretString) -> Result<Vec<u8>, ConfigError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.expose_secret().trim())
            .map_err(|_| ConfigError::Key(name))?;
        if bytes.len() != 32 {
            return Err(ConfigError::Key(name));
        }
        Ok(bytes)
    }

    pub fn code_keys(&self) -> Result<verifyd_actors::keys::CodeKeys, ConfigError> {
        let mac = Self::decode("code_hmac_key", &self.code_hmac_key)?;
        let enc = Self::decode("encryption_key", &self.encryption_key)?;
        verifyd_actors::keys::CodeKeys::new(&mac, &enc).map_err(|_| ConfigError::Key("encryption_key"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Verification {
    /// Names the service in SMS texts and calls.
    pub app_name: String,
    pub code_length: u8,
    pub ttl_secs: u64,
    pub max_attempts: i32,
    /// Sends per verification, the first included.
    pub max_sends: i32,
    pub resend_interval_secs: u64,
}

impl Default for Verification {
    fn default() -> Self {
        Verification {
            app_name: "verifyd".into(),
            code_length: 7,
            ttl_secs: 600,
            max_attempts: 5,
            max_sends: 5,
            resend_interval_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Providers {
    /// Provider names tried in order for SMS.
    pub sms: Vec<String>,
    /// Provider names tried in order for voice calls.
    pub voice: Vec<String>,
    pub twilio: Option<TwilioConfig>,
    /// SMS only for now (see `providers/src/vonage.rs`).
    pub vonage: Option<VonageConfig>,
}

impl Default for Providers {
    fn default() -> Self {
        Providers { sms: vec!["console".into()], voice: vec!["console".into()], twilio: None, vonage: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Runtime {
    /// Instances of each sharded actor; 0 = one per core.
    pub shards: usize,
    pub expiry_interval_ms: u64,
    pub relay_poll_ms: u64,
    pub reconcile_interval_ms: u64,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime { shards: 0, expiry_interval_ms: 1_000, relay_poll_ms: 500, reconcile_interval_ms: 30_000 }
    }
}

impl Runtime {
    pub fn shard_count(&self) -> usize {
        if self.shards == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { self.shards }
    }
}

impl Secrets {
    /// Fresh random keys: for tests and benchmarks, never for data that must survive.
    pub fn random() -> Secrets {
        use rand::RngExt;
        let key = || {
            let bytes: [u8; 32] = rand::rng().random();
            SecretString::from(base64::engine::general_purpose::STANDARD.encode(bytes))
        };
        Secrets { code_hmac_key: key(), encryption_key: key() }
    }
}

impl Config {
    /// A configuration against local services with random secrets and the given
    /// database and queue prefix: what tests and the load tool start from.
    pub fn local(database_url: &str, amqp_url: &str, prefix: &str) -> Config {
        Config {
            mode: Mode::Development,
            http: Http { bind: "127.0.0.1:0".into(), ..Http::default() },
            database: Database { url: database_url.into(), ..Database::default() },
            amqp: Amqp { url: amqp_url.into(), prefix: prefix.into(), ..Amqp::default() },
            secrets: Secrets::random(),
            verification: Verification::default(),
            throttle: Limits::default(),
            gate: GateSettings::default(),
            providers: Providers::default(),
            runtime: Runtime::default(),
        }
    }

    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(Env::prefixed("VERIFYD_").split("__"));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.secrets.code_keys()?;
        if !(4..=10).contains(&self.verification.code_length) {
            return Err(ConfigError::CodeLength);
        }
        for name in self.providers.sms.iter().chain(&self.providers.voice) {
            match name.as_str() {
                "console" if self.mode == Mode::Production => {
                    return Err(ConfigError::ConsoleInProduction);
                }
                "console" => {}
                "twilio" if self.providers.twilio.is_none() => {
                    return Err(ConfigError::MissingProvider(name.clone()));
                }
                "twilio" => {}
                "vonage" if self.providers.vonage.is_none() => {
                    return Err(ConfigError::MissingProvider(name.clone()));
                }
                "vonage" => {}
                other => return Err(ConfigError::UnknownProvider(other.to_owned())),
            }
        }
        if self.providers.voice.iter().any(|p| p == "vonage") {
            return Err(ConfigError::VoiceUnsupported("vonage".into()));
        }
        Ok(())
    }

    pub fn retry_delays(&self) -> Vec<Duration> {
        self.amqp.retry_delays_ms.iter().map(|ms| Duration::from_millis(*ms)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_passwords_or_keys() {
        let mut config =
            Config::local("postgres://app:pg-secret@db:5432/verifyd", "amqp://svc:mq-secret@mq:5672/%2f", "p.");
        config.providers.twilio = Some(TwilioConfig::new("AC1", "twilio-token", "+15005550006"));
        let shown = format!("{config:?}");
        for secret in ["pg-secret", "mq-secret", "twilio-token"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("postgres://app:<redacted>@db:5432/verifyd"));
        assert!(!shown.contains(config.secrets.code_hmac_key.expose_secret()));
    }
}
