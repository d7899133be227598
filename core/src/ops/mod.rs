//! What operators see and act on: dead letters kept as records (`keeper`,
//! `letters`), what each process reports of itself (`reporter`), delivery
//! statistics every process adds up (`stats`), the overview built from all of
//! it (`overview`), and the catalogue of metrics (`catalog`).
//!
//! A deployment operator sees everything; a tenant's `ops` key sees the same
//! pages cut down to its own tenant ([`View`]).

pub mod catalog;
pub mod keeper;
pub mod letters;
pub mod overview;
pub mod reason;
pub mod reporter;
pub mod stats;

use uuid::Uuid;

use crate::ids::Tenant;

/// Whose operations a caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// A deployment operator key: every tenant, and what belongs to none
    /// (a malformed message, an unknown tenant's request).
    Deployment,
    /// A tenant key with the `ops` scope: that tenant's letters and deliveries only.
    Tenant(Tenant),
}

impl View {
    /// The tenant every query is cut down to, if any.
    pub fn tenant_id(&self) -> Option<Uuid> {
        match self {
            View::Deployment => None,
            View::Tenant(t) => Some(t.id),
        }
    }

    pub fn tenant_name(&self) -> Option<&str> {
        match self {
            View::Deployment => None,
            View::Tenant(t) => Some(&t.name),
        }
    }
}
