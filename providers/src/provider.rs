//! The contract every provider implements (SMS, voice, email), and the
//! messages it carries.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Channel, Code, EmailAddress, Locale, PhoneNumber};

/// An SMS ready to send. `body` holds the code, so `Debug` leaves it out.
#[derive(Clone)]
pub struct Sms {
    pub to: PhoneNumber,
    pub body: String,
    /// How long the code stays valid: providers that support it drop the message
    /// instead of delivering a stale code (Twilio `ValidityPeriod`, Vonage `ttl`).
    pub validity: Duration,
    /// verifyd's id of this delivery attempt, for providers that echo a reference.
    pub reference: String,
}

impl fmt::Debug for Sms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sms")
            .field("to", &self.to)
            .field("body", &format_args!("<{} chars>", self.body.chars().count()))
            .field("validity", &self.validity)
            .field("reference", &self.reference)
            .finish()
    }
}

/// An email ready to send: a plain-text and an HTML body of one message.
/// Both hold the code, so `Debug` leaves them out.
#[derive(Clone)]
pub struct Email {
    pub to: EmailAddress,
    /// The name shown beside the sender's address: the tenant's brand.
    pub from_name: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub locale: Locale,
    /// How long the code stays valid.
    pub validity: Duration,
    /// verifyd's id of this delivery attempt: the left part of the
    /// `Message-ID`, and echoed by providers that take a reference.
    pub reference: String,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("to", &self.to)
            .field("from_name", &self.from_name)
            .field("subject", &format_args!("<{} chars>", self.subject.chars().count()))
            .field("text", &format_args!("<{} chars>", self.text.chars().count()))
            .field("html", &format_args!("<{} chars>", self.html.chars().count()))
            .field("locale", &self.locale)
            .field("validity", &self.validity)
            .field("reference", &self.reference)
            .finish()
    }
}

impl Email {
    /// `<reference@domain>`: unique per delivery attempt (a retry of one job
    /// keeps it, so a receiving server can drop a duplicate), on the sender's
    /// own domain as RFC 5322 asks.
    pub fn message_id(&self, from: &EmailAddress) -> String {
        format!("<{}@{}>", self.reference, from.domain())
    }
}

/// A code by WhatsApp: an authentication template whose text WhatsApp
/// presets ("*{code}* is your verification code."), so verifyd sends the code
/// alone, and the template's language follows the locale.
#[derive(Clone)]
pub struct WhatsApp {
    pub to: PhoneNumber,
    pub code: Code,
    pub locale: Locale,
    /// How long the code stays valid.
    pub validity: Duration,
    pub reference: String,
}

impl fmt::Debug for WhatsApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhatsApp")
            .field("to", &self.to)
            .field("code", &self.code)
            .field("locale", &self.locale)
            .field("validity", &self.validity)
            .field("reference", &self.reference)
            .finish()
    }
}

/// A call that speaks the code: `intro`, then the digits one by one, `repeat` times
/// with a pause between readings.
#[derive(Clone)]
pub struct VoiceCall {
    pub to: PhoneNumber,
    pub intro: String,
    pub code: Code,
    pub repeat: u8,
    pub locale: Locale,
    pub reference: String,
    /// For providers that fetch a call's script from a URL instead of taking it
    /// inline (Plivo's `answer_url`): a signed, short-lived verifyd URL that
    /// serves this call's script. `None` when verifyd has no public URL.
    pub script_url: Option<String>,
}

/// The script link grants the code until it expires: `Debug` hides it.
impl fmt::Debug for VoiceCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VoiceCall")
            .field("to", &self.to)
            .field("intro", &self.intro)
            .field("code", &self.code)
            .field("repeat", &self.repeat)
            .field("locale", &self.locale)
            .field("reference", &self.reference)
            .field("script_url", &self.script_url.as_ref().map(|_| "<signed link>"))
            .finish()
    }
}

impl VoiceCall {
    /// "1, 2, 3, 4": commas make text-to-speech engines read digit by digit.
    pub fn spoken_digits(&self) -> String {
        let digits: Vec<String> = self.code.expose().chars().map(String::from).collect();
        digits.join(", ")
    }
}

/// What a provider answered when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub provider: String,
    pub message_id: String,
}

/// Why a permanent failure is permanent: what the caller should do differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermanentKind {
    /// The number does not exist or is malformed for the provider.
    InvalidNumber,
    /// The destination country is not enabled on the provider account.
    RegionNotAllowed,
    /// The recipient opted out (STOP).
    OptedOut,
    /// The number cannot receive this channel (landline for SMS): try another channel.
    ChannelNotSupported,
    /// verifyd's credentials or sender are wrong: an operator must act.
    Configuration,
    /// Any other refusal of this message.
    Rejected,
}

impl PermanentKind {
    /// True when the refusal is about the destination itself (no provider can
    /// deliver this message there), false when it is about this provider
    /// (its account, its geo permissions, its filters): then the next provider
    /// of the route may still deliver it.
    pub fn is_about_the_number(self) -> bool {
        matches!(self, PermanentKind::InvalidNumber | PermanentKind::OptedOut | PermanentKind::ChannelNotSupported)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Try again later (possibly on another provider): throttling, 5xx, timeouts.
    #[error("{provider} is temporarily unavailable: {reason}")]
    Retryable { provider: String, reason: String, provider_code: Option<i64>, retry_after: Option<Duration> },
    /// Sending this message again to the same provider will fail again.
    #[error("{provider} refused the message ({kind:?}): {reason}")]
    Permanent { provider: String, kind: PermanentKind, reason: String, provider_code: Option<i64> },
}

/// What kind of failure a provider error is, as operators count them: a
/// closed list, so it can label metrics and fill dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No answer in time.
    Timeout,
    /// No connection (refused, DNS, TLS).
    Unreachable,
    /// The provider asked us to slow down (429, its own throttling codes).
    Throttled,
    /// Any other temporary failure (5xx, a retryable provider code).
    Unavailable,
    InvalidNumber,
    RegionNotAllowed,
    OptedOut,
    ChannelNotSupported,
    Configuration,
    Rejected,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Timeout,
        ErrorKind::Unreachable,
        ErrorKind::Throttled,
        ErrorKind::Unavailable,
        ErrorKind::InvalidNumber,
        ErrorKind::RegionNotAllowed,
        ErrorKind::OptedOut,
        ErrorKind::ChannelNotSupported,
        ErrorKind::Configuration,
        ErrorKind::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::InvalidNumber => "invalid_number",
            ErrorKind::RegionNotAllowed => "region_not_allowed",
            ErrorKind::OptedOut => "opted_out",
            ErrorKind::ChannelNotSupported => "channel_not_supported",
            ErrorKind::Configuration => "configuration",
            ErrorKind::Rejected => "rejected",
        }
    }

    pub fn parse(stored: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == stored)
    }

    /// Its place in `ALL` (the order of stored per-kind counts).
    pub fn index(self) -> usize {
        ErrorKind::ALL.iter().position(|k| *k == self).unwrap_or_default()
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ProviderError {
    /// `provider` refused this message for good.
    pub fn permanent(
        provider: &str,
        kind: PermanentKind,
        reason: impl Into<String>,
        provider_code: Option<i64>,
    ) -> Self {
        ProviderError::Permanent { provider: provider.to_owned(), kind, reason: reason.into(), provider_code }
    }

    /// `provider` could not take this message now; `retry_after` when it said when to come back.
    pub fn retryable(
        provider: &str,
        reason: impl Into<String>,
        provider_code: Option<i64>,
        retry_after: Option<Duration>,
    ) -> Self {
        ProviderError::Retryable { provider: provider.to_owned(), reason: reason.into(), provider_code, retry_after }
    }
}

impl ProviderError {
    /// The kind of this failure. A retryable one is told apart by what every
    /// client writes (`http::transport_error`: "request timed out", "could not
    /// connect"; an HTTP 429 status or a `Retry-After`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProviderError::Retryable { reason, retry_after, provider_code, .. } => {
                if reason.starts_with("request timed out") {
                    ErrorKind::Timeout
                } else if reason.starts_with("could not connect") {
                    ErrorKind::Unreachable
                } else if retry_after.is_some()
                    || reason.contains("429")
                    || *provider_code == Some(429)
                    || reason.contains("circuit open")
                    || reason.contains("configured rate")
                {
                    ErrorKind::Throttled
                } else {
                    ErrorKind::Unavailable
                }
            }
            ProviderError::Permanent { kind, .. } => match kind {
                PermanentKind::InvalidNumber => ErrorKind::InvalidNumber,
                PermanentKind::RegionNotAllowed => ErrorKind::RegionNotAllowed,
                PermanentKind::OptedOut => ErrorKind::OptedOut,
                PermanentKind::ChannelNotSupported => ErrorKind::ChannelNotSupported,
                PermanentKind::Configuration => ErrorKind::Configuration,
                PermanentKind::Rejected => ErrorKind::Rejected,
            },
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Retryable { .. })
    }

    /// How long the provider asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Retryable { retry_after, .. } => *retry_after,
            ProviderError::Permanent { .. } => None,
        }
    }

    pub fn provider_code(&self) -> Option<i64> {
        match self {
            ProviderError::Retryable { provider_code, .. } | ProviderError::Permanent { provider_code, .. } => {
                *provider_code
            }
        }
    }
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Stable name used in config, metrics and the attempts table.
    fn name(&self) -> &str;

    fn supports(&self, channel: Channel) -> bool;

    // Each send has a default that refuses: routing hands a provider only
    // the channels it `supports`, so a provider implements those alone.

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, ProviderError> {
        Err(not_offered(self.name(), Channel::Sms, &sms.to.masked()))
    }

    async fn place_call(&self, call: &VoiceCall) -> Result<Sent, ProviderError> {
        Err(not_offered(self.name(), Channel::Voice, &call.to.masked()))
    }

    /// Sends a WhatsApp authentication template.
    async fn send_whatsapp(&self, message: &WhatsApp) -> Result<Sent, ProviderError> {
        Err(not_offered(self.name(), Channel::Whatsapp, &message.to.masked()))
    }

    async fn send_email(&self, email: &Email) -> Result<Sent, ProviderError> {
        Err(not_offered(self.name(), Channel::Email, &email.to.masked()))
    }
}

/// A send by a channel the provider does not offer: a configuration error
/// (routing never asks for one; a caller that does is wrong).
fn not_offered(provider: &str, channel: Channel, to: &str) -> ProviderError {
    let reason = format!("{provider} does not send {channel}");
    tracing::error!(to, "{reason}");
    ProviderError::permanent(provider, PermanentKind::Configuration, reason, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retryable(reason: &str, retry_after: Option<Duration>) -> ProviderError {
        ProviderError::Retryable { provider: "p".into(), reason: reason.into(), provider_code: None, retry_after }
    }

    #[test]
    fn every_error_has_one_kind_from_a_closed_list() {
        assert_eq!(retryable("request timed out: operation timed out", None).kind(), ErrorKind::Timeout);
        assert_eq!(retryable("could not connect: tcp connect error", None).kind(), ErrorKind::Unreachable);
        assert_eq!(retryable("HTTP 429 Too Many Requests, Twilio error 20429", None).kind(), ErrorKind::Throttled);
        assert_eq!(
            retryable("HTTP 503 Service Unavailable", Some(Duration::from_secs(3))).kind(),
            ErrorKind::Throttled
        );
        assert_eq!(retryable("HTTP 503 Service Unavailable", None).kind(), ErrorKind::Unavailable);
        let permanent = ProviderError::Permanent {
            provider: "p".into(),
            kind: PermanentKind::OptedOut,
            reason: "stop".into(),
            provider_code: Some(21610),
        };
        assert_eq!(permanent.kind(), ErrorKind::OptedOut);
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
            assert_eq!(ErrorKind::ALL[kind.index()], kind);
        }
    }
}
