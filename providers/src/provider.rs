//! The contract every SMS/voice provider implements, and the messages it carries.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Channel, Code, Locale, PhoneNumber};

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

impl ProviderError {
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

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, ProviderError>;

    async fn place_call(&self, call: &VoiceCall) -> Result<Sent, ProviderError>;
}
