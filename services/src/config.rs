//! Configuration: defaults, then the TOML file given with `--config`, then
//! `VERIFYD_*` environment variables (`__` separates levels:
//! `VERIFYD_DATABASE__URL`). Secrets have no default: the service refuses to start
//! without them. An unknown key in the file or an unknown `VERIFYD_*` variable
//! stops the start too (see `strict`): a misspelt key would otherwise be
//! ignored and its default used without a word.

pub mod strict;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use figment::Figment;
use figment::providers::{Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use verifyd_core::abuse::AbuseSettings;
use verifyd_core::account::rules::GateSettings;
use verifyd_core::delivery::breaker::BreakerSettings;
use verifyd_core::delivery::routing::RouteError;
use verifyd_core::limits::Limits;
use verifyd_providers::domain::Channel;
use verifyd_providers::inbox::InboxConfig;
use verifyd_providers::meta::MetaConfig;
use verifyd_providers::plivo::PlivoConfig;
use verifyd_providers::sendgrid::SendGridConfig;
use verifyd_providers::sinch::SinchConfig;
use verifyd_providers::smtp::SmtpConfig;
use verifyd_providers::telnyx::TelnyxConfig;
use verifyd_providers::twilio::TwilioConfig;
use verifyd_providers::vonage::VonageConfig;
use verifyd_providers::webhook::WebhookConfig;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Development,
    Production,
}

/// The secrets committed in `verifyd.dev.toml`: public, so never for real data.
pub const DEV_CODE_HMAC_KEY: &str = "qS+OEAO603L8NZlbmPgN6ZyUsGtWNZlv49glBuzdKi0=";
pub const DEV_ENCRYPTION_KEY: &str = "Rysc7MMesm/JBiYWUKVrzzOAm5IIuFROYmPNQziNyw4=";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Geo permissions, number types, the SMS-pumping guard.
    #[serde(default)]
    pub abuse: AbuseSettings,
    /// The metrics endpoint of workers, and the `tenant` label's bound.
    #[serde(default)]
    pub metrics: Metrics,
    /// The operator console at `/ops`.
    #[serde(default)]
    pub console: Console,
    /// Event webhooks to backends: timeout, retries, consumers.
    #[serde(default)]
    pub webhooks: Webhooks,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Webhooks {
    /// How long one POST to an endpoint may take (connect and answer); a
    /// slower receiver's attempt counts as failed and is retried.
    pub timeout_ms: u64,
    /// Delay before each retry of a failed delivery; after the last one the
    /// delivery is a dead letter.
    pub retry_delays_ms: Vec<u64>,
    /// Consumers of the webhooks queue in each process (each handles up to
    /// `amqp.prefetch` deliveries at once).
    pub consumers: usize,
    /// Accept `http://` endpoint URLs (only `https://` otherwise). Off in
    /// production mode whatever this says.
    pub allow_http: bool,
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            timeout_ms: 10_000,
            // 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about 28 hours in all.
            retry_delays_ms: vec![5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000],
            consumers: 2,
            allow_http: true,
        }
    }
}

impl Webhooks {
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays_ms.iter().map(|ms| Duration::from_millis(*ms)).collect()
    }
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// Where a `worker` serves `/metrics`, `/healthz` and `/readyz` (`serve`
    /// serves them on `http.bind`); empty: nowhere.
    pub worker_bind: String,
    /// Tenants named in the `tenant` label (the first this process sees);
    /// the others are counted as `other`.
    pub tenant_label_limit: usize,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>` (set
    /// it when `http.bind` is reachable by more than your Prometheus: the
    /// metrics name tenants and their volumes).
    pub token: Option<SecretString>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { worker_bind: "127.0.0.1:9091".into(), tenant_label_limit: 50, token: None }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("worker_bind", &self.worker_bind)
            .field("tenant_label_limit", &self.tenant_label_limit)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Console {
    /// Serve the console page at `/ops` (the `/v1/ops` API stays either way).
    pub enabled: bool,
    /// How long a console sign-in lasts.
    pub session_ttl_secs: u64,
}

impl Default for Console {
    fn default() -> Self {
        Console { enabled: true, session_ttl_secs: 8 * 3600 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    pub bind: String,
    /// Largest request body accepted, in bytes (JSON, forms, receipts).
    pub max_body_bytes: usize,
    /// Longest URL (path and query) accepted, in bytes: longer is 414.
    pub max_url_bytes: usize,
    /// Largest header block accepted, in bytes: larger is 431.
    pub max_header_bytes: usize,
    /// actix-web worker threads; 0 = one per core.
    pub workers: usize,
    /// Requests with live credentials handled at once by this process, over
    /// all workers; past it such a request is answered `503 overloaded` at
    /// once (http/overload.rs). 0: no bound.
    pub max_in_flight: usize,
    /// How long a checked API key is remembered; a revocation takes effect within it.
    pub key_cache_secs: u64,
    /// Reverse proxies (CIDR) whose `X-Forwarded-For` is believed when they are
    /// the TCP peer; empty: the peer is always the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The base URL providers reach this deployment at (`https://verifyd.example.com`):
    /// providers that fetch a call's script (Plivo) are given signed links under it.
    pub public_url: Option<String>,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 16 * 1024,
            max_url_bytes: 4 * 1024,
            max_header_bytes: 8 * 1024,
            workers: 0,
            max_in_flight: 256,
            key_cache_secs: 5,
            trusted_proxies: Vec::new(),
            public_url: None,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Database {
    pub url: String,
    pub max_connections: u32,
    pub migrate_on_start: bool,
    /// Connection tries at start (backoff 0.5 s doubling to 5 s), each logged
    /// with its cause, before the process gives up with one clear line.
    pub connect_attempts: u32,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: "postgres://postgres@127.0.0.1:5432/verifyd".into(),
            max_connections: 20,
            migrate_on_start: true,
            connect_attempts: 10,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// Reconnection tries (backoff 0.25 s doubling to 10 s, with jitter) after
    /// the broker goes away, before the process gives up on it.
    pub reconnect_attempts: usize,
    /// Largest request message accepted on the requests queue, in bytes:
    /// larger ones are dead-lettered unread, with the reason.
    pub max_request_bytes: usize,
    /// Connection tries at start (backoff 0.5 s doubling to 5 s), each logged
    /// with its cause, before the process gives up with one clear line.
    pub connect_attempts: u32,
    /// Consumers of the dead-letter queue per process (they record letters in
    /// PostgreSQL for operators).
    pub dead_letter_consumers: usize,
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
            reconnect_attempts: 60,
            max_request_bytes: 16 * 1024,
            connect_attempts: 10,
            dead_letter_consumers: 1,
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
            .field("connect_attempts", &self.connect_attempts)
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
            .field("reconnect_attempts", &self.reconnect_attempts)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("connect_attempts", &self.connect_attempts)
            .field("dead_letter_consumers", &self.dead_letter_consumers)
            .finish()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Never the value of a setting: values may be secrets.
    #[error("configuration: {0}")]
    Load(String),
    #[error("secrets.{0} must be base64 of exactly 32 bytes")]
    Key(&'static str),
    #[error("provider {0:?} is listed but not configured (add a [providers.{0}] section)")]
    MissingProvider(String),
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    #[error("providers: {0}")]
    Route(#[from] RouteError),
    #[error("provider {0:?}: cannot build its HTTP client: {1}")]
    Client(&'static str, String),
    #[error("the {0} provider exposes codes (development only) and is refused in production mode")]
    DevelopmentOnly(&'static str),
    #[error("verification.code_length must be between 4 and 10")]
    CodeLength,
    #[error("amqp.retry_delays_ms needs at least one delay, each above 0: deferred jobs go to these queues")]
    RetryDelays,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{0}")]
    Throttle(String),
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

    pub fn code_keys(&self) -> Result<verifyd_core::codes::keys::CodeKeys, ConfigError> {
        let mac = Self::decode("code_hmac_key", &self.code_hmac_key)?;
        let enc = Self::decode("encryption_key", &self.encryption_key)?;
        verifyd_core::codes::keys::CodeKeys::new(&mac, &enc).map_err(|_| ConfigError::Key("encryption_key"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
#[serde(default, deny_unknown_fields)]
pub struct Providers {
    /// Provider names tried in order for SMS to destinations no route matches.
    pub sms: Vec<String>,
    /// Provider names tried in order for voice calls to destinations no route matches.
    pub voice: Vec<String>,
    /// Provider names tried in order for email (`smtp`, `sendgrid`); none by
    /// default, and then `channel: "email"` is refused (`422`, field `channel`).
    pub email: Vec<String>,
    /// Provider names tried in order for WhatsApp to destinations no route
    /// matches (`meta`, `twilio` with `[providers.twilio.whatsapp]`); none by
    /// default, and then `channel: "whatsapp"` is refused.
    pub whatsapp: Vec<String>,
    /// Ordered provider lists for destinations by E.164 prefix (the longest
    /// matching prefix of the channel wins).
    pub routes: Vec<RouteConfig>,
    /// Messages per second a provider may be sent, over all processes
    /// (`{ twilio = 30 }`); a send over it waits up to 1 s for its slot, else
    /// the provider is skipped for that job like one whose circuit is open.
    pub tps: std::collections::HashMap<String, u32>,
    /// When an SMS cannot be delivered (the receipt says undelivered or failed,
    /// or the provider says the number cannot receive SMS), send the same code
    /// once by voice call while the verification is pending.
    pub fallback_to_voice: bool,
    /// Per-provider circuit breaker.
    pub breaker: BreakerSettings,
    pub twilio: Option<TwilioConfig>,
    pub vonage: Option<VonageConfig>,
    pub plivo: Option<PlivoConfig>,
    pub sinch: Option<SinchConfig>,
    pub telnyx: Option<TelnyxConfig>,
    /// Email through an SMTP relay (`host`, `port`, `tls`, `username`, `password`, `from`).
    pub smtp: Option<SmtpConfig>,
    /// Email through SendGrid's v3 Mail Send API (`api_key`, `from`).
    pub sendgrid: Option<SendGridConfig>,
    /// WhatsApp through Meta's Cloud API (`access_token`, `phone_number_id`, `template`).
    pub meta: Option<MetaConfig>,
    /// A gateway of your own: signed JSON POSTs (see `providers/src/webhook/mod.rs`).
    pub webhook: Option<WebhookConfig>,
    /// Development only: messages appended to a JSON-lines file, codes included.
    pub inbox: Option<InboxConfig>,
}

/// `localhost` or a loopback address: a relay on this host.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The providers that show codes to whoever reads the terminal or the file
/// (`console`, `inbox`): production refuses them, when loading and when
/// building (`routes::build`).
pub fn development_only(name: &str) -> Option<&'static str> {
    match name {
        "console" => Some("console"),
        "inbox" => Some("inbox"),
        _ => None,
    }
}

impl Providers {
    /// Every provider name the lists and routes use, with the channel it serves.
    pub fn named(&self) -> impl Iterator<Item = (Channel, &str)> {
        let defaults = self.sms.iter().map(|n| (Channel::Sms, n));
        let defaults = defaults
            .chain(self.voice.iter().map(|n| (Channel::Voice, n)))
            .chain(self.email.iter().map(|n| (Channel::Email, n)))
            .chain(self.whatsapp.iter().map(|n| (Channel::Whatsapp, n)));
        let routed = self.routes.iter().flat_map(|r| r.providers.iter().map(move |n| (r.channel, n)));
        defaults.chain(routed).map(|(channel, name)| (channel, name.as_str()))
    }
}

/// `[[providers.routes]]`: `channel = "sms"`, `prefix = "+44"`, `providers = ["vonage", "twilio"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub channel: Channel,
    pub prefix: String,
    pub providers: Vec<String>,
}

impl Default for Providers {
    fn default() -> Self {
        Providers {
            sms: vec!["console".into()],
            voice: vec!["console".into()],
            email: Vec::new(),
            whatsapp: Vec::new(),
            routes: Vec::new(),
            tps: std::collections::HashMap::new(),
            fallback_to_voice: false,
            breaker: BreakerSettings::default(),
            twilio: None,
            vonage: None,
            plivo: None,
            sinch: None,
            telnyx: None,
            smtp: None,
            sendgrid: None,
            meta: None,
            webhook: None,
            inbox: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Runtime {
    /// Instances of each sharded actor; 0 = one per core.
    pub shards: usize,
    pub expiry_interval_ms: u64,
    pub relay_poll_ms: u64,
    pub reconcile_interval_ms: u64,
    /// How long a delivery job stays claimed by the process delivering it: a
    /// job whose process died is taken over after this. Must exceed the
    /// timeouts of a route's providers together.
    pub claim_lease_ms: u64,
    /// On SIGTERM, how long a process waits for the delivery jobs and requests
    /// in hand to finish before it exits (the rest return to their queue).
    pub shutdown_grace_ms: u64,
    /// How often each process reports its consumers and circuits and writes
    /// its delivery counts (the operations overview is this fresh).
    pub report_interval_ms: u64,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            shards: 0,
            expiry_interval_ms: 1_000,
            relay_poll_ms: 500,
            reconcile_interval_ms: 30_000,
            claim_lease_ms: 120_000,
            shutdown_grace_ms: 20_000,
            report_interval_ms: 5_000,
        }
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
            abuse: AbuseSettings::default(),
            metrics: Metrics::default(),
            console: Console::default(),
            webhooks: Webhooks::default(),
        }
    }

    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, std::env::vars_os())
    }

    /// `load` with the environment given: defaults, then `file`, then the
    /// `VERIFYD_*` variables of `vars`. Unknown keys and variables are refused
    /// by name (with the key they are closest to); no value is ever shown.
    pub fn load_from(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> Result<Config, ConfigError> {
        let vars = strict::env_vars(vars).map_err(|refused| ConfigError::Load(refused.join("; ")))?;
        strict::refuse_unknown_variables::<Config>(&vars).map_err(|refused| ConfigError::Load(refused.join("; ")))?;
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(strict::EnvSource(&vars));
        let config: Config =
            figment.extract().map_err(|error| ConfigError::Load(strict::explain(error, &figment, file, &vars)))?;
        config.validate()?;
        Ok(config)
    }

    /// Whether either secret is one committed in `verifyd.dev.toml`.
    pub fn uses_dev_secrets(&self) -> bool {
        let s = &self.secrets;
        s.code_hmac_key.expose_secret().trim() == DEV_CODE_HMAC_KEY
            || s.encryption_key.expose_secret().trim() == DEV_ENCRYPTION_KEY
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.secrets.code_keys()?;
        if self.mode == Mode::Production && self.uses_dev_secrets() {
            return Err(ConfigError::Invalid(
                "production mode refuses the development secrets committed in verifyd.dev.toml: set \
                 VERIFYD_SECRETS__CODE_HMAC_KEY and VERIFYD_SECRETS__ENCRYPTION_KEY from a secret store",
            ));
        }
        if !(4..=10).contains(&self.verification.code_length) {
            return Err(ConfigError::CodeLength);
        }
        if self.amqp.retry_delays_ms.is_empty() || self.amqp.retry_delays_ms.contains(&0) {
            return Err(ConfigError::RetryDelays);
        }
        let http = &self.http;
        if http.max_body_bytes < 1024 || self.amqp.max_request_bytes < 1024 {
            return Err(ConfigError::Invalid("http.max_body_bytes and amqp.max_request_bytes must be at least 1024"));
        }
        if self.amqp.connect_attempts == 0 || self.database.connect_attempts == 0 {
            return Err(ConfigError::Invalid("amqp.connect_attempts and database.connect_attempts must be at least 1"));
        }
        if !(60..=30 * 86_400).contains(&self.console.session_ttl_secs) {
            return Err(ConfigError::Invalid("console.session_ttl_secs must be 60 to 2592000 (30 days)"));
        }
        let w = &self.webhooks;
        if w.retry_delays_ms.is_empty() || w.retry_delays_ms.contains(&0) || w.retry_delays_ms.len() > 20 {
            return Err(ConfigError::Invalid("webhooks.retry_delays_ms needs 1 to 20 delays, each above 0"));
        }
        if !(100..=120_000).contains(&w.timeout_ms) {
            return Err(ConfigError::Invalid("webhooks.timeout_ms must be 100 to 120000"));
        }
        if self.runtime.report_interval_ms < 100 {
            return Err(ConfigError::Invalid("runtime.report_interval_ms must be at least 100"));
        }
        if http.max_url_bytes < 256 || http.max_header_bytes < 1024 {
            return Err(ConfigError::Invalid("http.max_url_bytes must be at least 256, http.max_header_bytes 1024"));
        }
        // The development providers show codes to whoever reads the terminal
        // or the file: production refuses them when loading, before anything runs.
        if self.mode == Mode::Production
            && let Some(name) = self.providers.named().find_map(|(_, name)| development_only(name))
        {
            return Err(ConfigError::DevelopmentOnly(name));
        }
        let plivo_calls = self.providers.named().any(|(channel, name)| channel == Channel::Voice && name == "plivo");
        match self.http.public_url.as_deref() {
            None if plivo_calls => {
                return Err(ConfigError::Invalid("plivo places calls through a script link: set http.public_url"));
            }
            Some(url) if self.mode == Mode::Production && !url.starts_with("https://") => {
                return Err(ConfigError::Invalid(
                    "http.public_url must be https:// in production: script links carry codes",
                ));
            }
            _ => {}
        }
        self.validate_channel_providers()?;
        self.abuse.validate().map_err(ConfigError::Invalid)?;
        self.throttle.validate().map_err(ConfigError::Throttle)?;
        Ok(())
    }

    /// The email and WhatsApp providers' settings that would expose codes or
    /// let anyone forge a receipt.
    fn validate_channel_providers(&self) -> Result<(), ConfigError> {
        if let Some(smtp) = &self.providers.smtp
            && smtp.tls == verifyd_providers::smtp::SmtpTls::None
            && self.mode == Mode::Production
            && !is_loopback(&smtp.host)
        {
            return Err(ConfigError::Invalid(
                "providers.smtp.tls = \"none\" is for a relay on this host only in production: codes would cross the network in clear",
            ));
        }
        if let Some(meta) = &self.providers.meta {
            let short = |s: &Option<SecretString>| s.as_ref().is_some_and(|s| s.expose_secret().trim().len() < 8);
            if short(&meta.app_secret) || short(&meta.verify_token) {
                return Err(ConfigError::Invalid(
                    "providers.meta.app_secret and verify_token must be at least 8 characters: anyone can sign with an empty one",
                ));
            }
        }
        Ok(())
    }

    pub fn retry_delays(&self) -> Vec<Duration> {
        self.amqp.retry_delays_ms.iter().map(|ms| Duration::from_millis(*ms)).collect()
    }

    /// What webhook endpoint URLs may be: `http://` (with `webhooks.allow_http`)
    /// and this machine's or a private network's addresses in development mode only.
    pub fn webhook_url_rules(&self) -> verifyd_core::webhooks::UrlRules {
        let dev = self.mode == Mode::Development;
        verifyd_core::webhooks::UrlRules { allow_http: dev && self.webhooks.allow_http, allow_private: dev }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_plain_smtp_to_another_host_and_short_meta_secrets() {
        let from = verifyd_providers::domain::EmailAddress::parse("codes@acme.example").unwrap();
        let mut config = Config::local("postgres://x@127.0.0.1/x", "amqp://127.0.0.1", "p.");
        config.providers.sms = vec![];
        config.providers.voice = vec![];
        config.secrets.code_hmac_key = SecretString::from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned());
        config.secrets.encryption_key = SecretString::from("HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=".to_owned());
        let mut smtp = verifyd_providers::smtp::SmtpConfig::new("smtp.example.net", from);
        smtp.tls = verifyd_providers::smtp::SmtpTls::None;
        config.providers.smtp = Some(smtp.clone());
        assert!(config.validate().is_ok(), "development mode may use a test sink anywhere");
        config.mode = Mode::Production;
        let refused = config.validate().unwrap_err().to_string();
        assert!(refused.contains("providers.smtp.tls"), "{refused}");
        config.providers.smtp = Some(verifyd_providers::smtp::SmtpConfig { host: "127.0.0.1".into(), ..smtp });
        assert!(config.validate().is_ok(), "a relay on this host");
        let mut meta = verifyd_providers::meta::MetaConfig::new("token", "1065", "verifyd_code");
        meta.app_secret = Some(SecretString::from(String::new()));
        config.providers.meta = Some(meta);
        assert!(config.validate().unwrap_err().to_string().contains("providers.meta.app_secret"));
    }

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

    fn env(list: &[(&str, &str)]) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        list.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    fn dev_file() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../verifyd.dev.toml"))
    }

    fn refusal(result: Result<Config, ConfigError>) -> String {
        match result {
            Err(ConfigError::Load(message)) => message,
            other => panic!("refused at load, not {other:?}"),
        }
    }

    #[test]
    fn unknown_keys_and_variables_are_refused_by_name_with_the_closest_key_and_no_value() {
        let secret = "hunter2-not-to-be-shown";
        let shown = refusal(Config::load_from(
            Some(dev_file()),
            env(&[("VERIFYD_DATABSE__URL", secret), ("VERIFYD_AMQP__PREFIXX", secret), ("VERIFYD_LOG_JSON", "1")]),
        ));
        assert!(shown.contains("`databse.url` from environment variable VERIFYD_DATABSE__URL: did you mean `database.url` (VERIFYD_DATABASE__URL)?"), "{shown}");
        assert!(shown.contains("did you mean `amqp.prefix` (VERIFYD_AMQP__PREFIX)?"), "{shown}");
        let shown = refusal(Config::load_from(
            Some(dev_file()),
            env(&[("VERIFYD_THROTTLE__PER_PHONE__WINDOW_SEC", "1"), ("VERIFYD_PROVIDERS__BREAKER__OPEN_FOR", "1")]),
        ));
        assert!(shown.contains("did you mean `throttle.per_phone.window_secs`"), "{shown}");
        assert!(shown.contains("did you mean `providers.breaker.open_for_ms`"), "{shown}");

        let file = std::env::temp_dir().join(format!("verifyd-strict-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(
            &file,
            format!("[providers.webhook]\nurl = \"https://gw\"\nsecret = \"{secret}\"\nheaderz = {{}}\n"),
        )
        .unwrap();
        let shown = refusal(Config::load_from(Some(&file), env(&[])));
        assert!(shown.contains(&format!("unknown configuration key `providers.webhook.headerz` in {}: did you mean `providers.webhook.headers`?", file.display())), "{shown}");
        std::fs::write(&file, format!("[secrets]\ncode_hmac_key = 7\nencryption_key = [\"{secret}\"]\n")).unwrap();
        let shown = refusal(Config::load_from(Some(&file), env(&[])));
        assert!(
            shown.contains("`secrets.code_hmac_key` in") && shown.contains("found an integer (value not shown)"),
            "{shown}"
        );
        std::fs::write(&file, "[abuse.default_countries]\nsms = [\"UK\"]\n").unwrap();
        let shown = refusal(Config::load_from(Some(&file), env(&[])));
        assert!(
            shown.contains("`abuse.default_countries.sms`") && !shown.contains("UK"),
            "free text has the value blanked: {shown}"
        );
        let _ = std::fs::remove_file(&file);
        assert!(!shown.contains(secret));
    }

    /// Every `VERIFYD_*` name the repository sets or documents (compose, the
    /// Dockerfile, CI, scripts, docs, the test suite) is one verifyd accepts.
    #[test]
    fn every_variable_the_repository_sets_or_documents_is_accepted() {
        let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let mut files = vec![
            root.join("README.md"),
            root.join("compose.yaml"),
            root.join("compose.dev.yaml"),
            root.join("Dockerfile"),
            root.join(".ci/run"),
            // What `verifyd mock-provider` tells to set.
            root.join("services/src/mock_provider.rs"),
        ];
        for dir in ["scripts", "scripts/contract", "docs", "tests/api"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                // That file's variables are misspelt on purpose.
                if path.is_file() && !path.ends_with("strict_config.rs") {
                    files.push(path);
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for (at, _) in text.match_indices(strict::PREFIX) {
                let name: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                // `VERIFYD_<SECTION>__<KEY>`, `VERIFYD_PROVIDERS__TWILIO__…`: not names.
                if !name.ends_with('_') {
                    names.insert((name, file.clone()));
                }
            }
        }
        assert!(names.len() > 20, "the scan finds the variables: {names:?}");
        for (name, file) in names {
            // The docs' examples of refused variables.
            if ["VERIFYD_DATABSE__URL", "VERIFYD_DATABASE____URL"].contains(&name.as_str()) {
                continue;
            }
            let vars = strict::env_vars(env(&[(&name, "1")])).unwrap_or_else(|e| panic!("{name} in {file:?}: {e:?}"));
            let checked = strict::refuse_unknown_variables::<Config>(&vars);
            assert!(checked.is_ok(), "{name} in {file:?} would be refused: {checked:?}");
        }
    }

    #[test]
    fn the_dev_file_spells_out_the_abuse_defaults_and_bad_values_stop_the_start() {
        let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../verifyd.dev.toml"));
        let config = Config::load(Some(file)).expect("verifyd.dev.toml loads");
        assert_eq!(config.abuse, AbuseSettings::default());

        let mut config = Config::local("postgres://db/v", "amqp://mq/%2f", "p.");
        config.abuse.pumping.min_conversion = 1.5;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid(m)) if m.contains("min_conversion")));
        let bad_country: Result<AbuseSettings, _> =
            Figment::from(Toml::string("[default_countries]\nsms = [\"UK\"]")).extract();
        assert!(bad_country.is_err(), "UK is not an ISO 3166-1 code (GB is)");
        let bad_type: Result<AbuseSettings, _> =
            Figment::from(Toml::string("[refused_number_types]\nsms = [\"premium\"]")).extract();
        assert!(bad_type.is_err());
    }
}
