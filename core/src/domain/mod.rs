//! The words verifyd's rows hold and its flows decide with: a verification's
//! status, a factor's kind, a challenge's purpose, an organisation's policy.
//! Pure values with no I/O; they import nothing of the core. The store decodes
//! rows into them (`store`), the flows decide with them (`verification`,
//! `account`) and the HTTP edge shows them, so none of those needs another.

pub mod challenge;
pub mod factor;
pub mod policy;
pub mod verification;
pub mod webhook;

/// A stored or typed name its enum does not have.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}
