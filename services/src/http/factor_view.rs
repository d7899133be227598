//! How the API shows a factor: the domain's `Factor` as backends read it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;
use verifyd_core::domain::factor::{FactorKind, FactorStatus};
use verifyd_core::store::factors::Factor;

/// A factor as callers see it. Never holds a secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Factor)]
pub struct FactorView {
    id: Uuid,
    kind: FactorKind,
    /// A phone factor's number (E.164).
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    /// An email factor's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    status: FactorStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "verifyd_core::timestamp::option")]
    verified_at: Option<DateTime<Utc>>,
    /// Where a login challenge sends its code unless told otherwise.
    default: bool,
}

impl From<Factor> for FactorView {
    fn from(f: Factor) -> Self {
        let (phone, email) = match f.kind {
            FactorKind::Email => (None, f.destination),
            _ => (f.destination, None),
        };
        FactorView {
            id: f.id,
            kind: f.kind,
            phone,
            email,
            label: f.label,
            status: f.status,
            verified_at: f.verified_at,
            default: f.is_default,
        }
    }
}
