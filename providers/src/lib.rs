//! Domain types shared by all of verifyd, the [`Provider`] trait, the
//! provider clients that speak each SMS, voice and email API, and the one shape their
//! delivery receipts are read into ([`receipt`]).

pub mod console;
pub mod domain;
mod gsm;
mod http;
pub mod inbox;
pub mod meta;
pub mod plivo;
pub mod provider;
pub mod receipt;
pub mod sendgrid;
pub mod sinch;
pub mod smtp;
mod ssml;
pub mod telnyx;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod twilio;
pub mod vonage;
pub mod webhook;
mod xml;

pub use http::chain as http_error_chain;
pub use provider::{Email, ErrorKind, PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall, WhatsApp};
/// Escapes text for XML and HTML content and attribute values (the email's HTML part uses it too).
pub use xml::escape as escape_markup;
