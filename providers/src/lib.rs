//! Domain types shared by all of verifyd, the [`Provider`] trait, and the
//! provider clients that speak each SMS/voice API.

pub mod console;
pub mod domain;
mod http;
pub mod provider;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod twilio;
pub mod vonage;

pub use provider::{PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall};
