//! Email over SMTP, to the deployment's own relay (Postfix, Amazon SES,
//! Mailgun, Postmark, … all take SMTP submission), through `lettre` with
//! rustls.
//!
//! - `tls = "starttls"` (port 587 by default) upgrades the connection and
//!   refuses to go on without TLS; `"tls"` (port 465) is TLS from the first
//!   byte; `"none"` (port 25) is plain text, for a relay on localhost or a
//!   test sink only.
//! - Each message is `multipart/alternative`: text/plain first, then
//!   text/html, both quoted-printable, with `Auto-Submitted: auto-generated`
//!   (RFC 3834: no vacation replies), `X-Auto-Response-Suppress: All` and a
//!   `Message-ID` of the attempt's reference on the sender's domain.
//! - A `4xx` reply is retryable, a `5xx` is not. Which `5xx` it is, the
//!   enhanced status code says (RFC 3463; lettre does not tell which command
//!   was answered): `5.1.x` and `5.2.x` are about the recipient's address or
//!   mailbox, so no other provider is asked, except `5.1.7`/`5.1.8`, the
//!   sender's; a refused login (`530`, `534`, `535`, `5.7.8`) is the
//!   configuration's; any other refusal (`5.7.1` relaying denied, a policy)
//!   lets the next provider try. The relay's text is kept with digits and
//!   addresses masked: it quotes the recipient.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::{Channel, EmailAddress, mask_addresses};
use crate::http;
use crate::provider::{Email, PermanentKind, Provider, ProviderError, Sent};

const NAME: &str = "smtp";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ERROR_CHARS: usize = 200;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    #[default]
    Starttls,
    /// TLS from the start, "implicit TLS" (port 465).
    Tls,
    /// No TLS at all: a relay on localhost or a test sink only.
    None,
}

impl SmtpTls {
    fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// Settings of the SMTP provider. `timeout_ms` bounds each SMTP command.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults to the `tls` mode's port: 587, 465 or 25.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// Both or neither: the login, by PLAIN or LOGIN (over TLS only).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    /// The envelope sender and the `From` address.
    pub from: EmailAddress,
    #[serde(rename = "timeout_ms", default = "default_timeout", deserialize_with = "http::millis")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port())
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SmtpConfig {
    /// A relay at `host` with STARTTLS on port 587, no login.
    pub fn new(host: impl Into<String>, from: EmailAddress) -> Self {
        SmtpConfig {
            host: host.into(),
            port: None,
            tls: SmtpTls::default(),
            username: None,
            password: None,
            from,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.tls.default_port())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("smtp: username and password go together")]
    HalfLogin,
    #[error("smtp: a login needs TLS (tls = \"starttls\" or \"tls\"): the password would cross the network in clear")]
    LoginWithoutTls,
    #[error("smtp: cannot set up TLS for {0:?}: {1}")]
    Tls(String, String),
}

/// The SMTP client: a pool of connections to one relay.
pub struct Smtp {
    from: EmailAddress,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp").field("from", &self.from).finish_non_exhaustive()
    }
}

impl Smtp {
    pub fn new(config: SmtpConfig) -> Result<Self, SmtpConfigError> {
        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let parameters = TlsParameters::new(config.host.clone())
                    .map_err(|e| SmtpConfigError::Tls(config.host.clone(), e.to_string()))?;
                if mode == SmtpTls::Starttls { Tls::Required(parameters) } else { Tls::Wrapper(parameters) }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port())
            .tls(tls)
            .timeout(Some(config.timeout))
            .hello_name(ClientId::Domain(config.from.domain().to_owned()));
        match (&config.username, &config.password) {
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => return Err(SmtpConfigError::HalfLogin),
            (Some(_), Some(_)) if config.tls == SmtpTls::None => return Err(SmtpConfigError::LoginWithoutTls),
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(user.clone(), password.expose_secret().to_owned()));
            }
        }
        Ok(Smtp { from: config.from, transport: builder.build() })
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834).
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// `X-Auto-Response-Suppress: All`: Exchange's out-of-office replies too.
#[derive(Clone)]
struct AutoResponseSuppress;

impl Header for AutoResponseSuppress {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoResponseSuppress)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".to_owned())
    }
}

fn address(email: &EmailAddress) -> Result<Address, ProviderError> {
    Address::new(email.local_part(), email.domain()).map_err(|e| {
        ProviderError::permanent(NAME, PermanentKind::InvalidNumber, format!("address refused: {e}"), None)
    })
}

fn part(content_type: ContentType, body: &str) -> SinglePart {
    SinglePart::builder().header(content_type).header(ContentTransferEncoding::QuotedPrintable).body(body.to_owned())
}

/// The message as it goes on the wire.
pub fn message(email: &Email, from: &EmailAddress) -> Result<Message, ProviderError> {
    let sender = Mailbox::new(Some(email.from_name.clone()), address(from)?);
    let body = MultiPart::alternative()
        .singlepart(part(ContentType::TEXT_PLAIN, &email.text))
        .singlepart(part(ContentType::TEXT_HTML, &email.html));
    Message::builder()
        .from(sender)
        .to(Mailbox::new(None, address(&email.to)?))
        .subject(email.subject.clone())
        .message_id(Some(email.message_id(from)))
        .header(AutoSubmitted)
        .header(AutoResponseSuppress)
        .multipart(body)
        .map_err(|e| ProviderError::permanent(NAME, PermanentKind::Configuration, format!("cannot build: {e}"), None))
}

#[async_trait]
impl Provider for Smtp {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Email
    }

    async fn send_email(&self, email: &Email) -> Result<Sent, ProviderError> {
        let message = message(email, &self.from)?;
        tracing::debug!(to = %email.to.masked(), reference = %email.reference, "smtp: sending email");
        match self.transport.send(message).await {
            Ok(_) => {
                let id = email.message_id(&self.from);
                Ok(Sent { provider: NAME.to_owned(), message_id: id.trim_matches(['<', '>']).to_owned() })
            }
            Err(error) => Err(classify(&error)),
        }
    }
}

/// The reply code's three digits, when the relay answered.
fn reply_code(error: &lettre::transport::smtp::Error) -> Option<i64> {
    error.status().and_then(|code| code.to_string().parse().ok())
}

/// The enhanced status code (`5.1.1`) a reply's text carries: class,
/// subject and detail.
fn enhanced_status(text: &str) -> Option<(u16, u16, u16)> {
    text.split(|c: char| c.is_whitespace() || c == ':').find_map(|token| {
        let mut parts = token.split('.');
        let class = parts.next()?.parse().ok().filter(|c| matches!(c, 2 | 4 | 5))?;
        let subject = parts.next()?.parse().ok().filter(|s| *s < 1000)?;
        let detail = parts.next()?.parse().ok().filter(|d| *d < 1000)?;
        parts.next().is_none().then_some((class, subject, detail))
    })
}

fn classify(error: &lettre::transport::smtp::Error) -> ProviderError {
    let raw = error.to_string();
    // The relay's text quotes the recipient: addresses and digits are masked.
    let text = http::truncate(&http::mask_digits(&mask_addresses(&raw)), MAX_ERROR_CHARS);
    let code = reply_code(error);
    if error.is_client() {
        let reason = format!("the relay and verifyd do not agree (check tls, username, password): {text}");
        return ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None);
    }
    if error.is_timeout() {
        return ProviderError::retryable(NAME, format!("request timed out: {text}"), None, None);
    }
    if error.is_transient() {
        return ProviderError::retryable(NAME, format!("SMTP {}: {text}", code.unwrap_or_default()), code, None);
    }
    if error.is_permanent() {
        let kind = match (enhanced_status(&raw), code) {
            // Bad sender address or sender's system: verifyd's `from`.
            (Some((5, 1, 7 | 8)), _) => PermanentKind::Configuration,
            // Bad destination mailbox, system or syntax; mailbox disabled or full.
            (Some((5, 1 | 2, _)), _) => PermanentKind::InvalidNumber,
            // The login: required, too weak, or refused.
            (Some((5, 7, 8 | 9)), _) | (_, Some(530 | 534 | 535 | 538)) => PermanentKind::Configuration,
            _ => PermanentKind::Rejected,
        };
        return ProviderError::permanent(NAME, kind, format!("SMTP {}: {text}", code.unwrap_or_default()), code);
    }
    if error.is_tls() {
        let reason = format!("TLS with the relay failed (check host and tls): {text}");
        return ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None);
    }
    // No reply: the connection could not be made or was lost.
    ProviderError::retryable(NAME, format!("could not connect: {text}"), None, None)
}
