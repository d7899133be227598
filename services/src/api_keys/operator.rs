//! Deployment operator keys: `vo_<12 hex>.<43 base64url chars>`, made with
//! `verifyd keys create --operator`. They belong to no tenant and reach only
//! the operator endpoints (`/v1/ops/…`) and the console, where they see every
//! tenant. As for tenant keys, the secret is shown once and stored as its
//! SHA-256; creating, rotating and revoking one is audited.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::PgPool;
use verifyd_core::ids::Who;
use verifyd_core::store::{CorruptRow, audit, operator_keys, sessions};

use super::{AllowedSources, KeyError, generate_with, hash};

pub const PREFIX: &str = "vo_";

/// `vo_` and 12 lowercase hex digits.
pub fn valid_key_id(key_id: &str) -> bool {
    key_id.len() == 15
        && key_id.starts_with(PREFIX)
        && key_id[3..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An operator key as listed: never its secret or hash.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorKeyInfo {
    pub key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub allowed_cidrs: Vec<String>,
    #[serde(with = "verifyd_core::timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "verifyd_core::timestamp::option")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(with = "verifyd_core::timestamp::option")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(with = "verifyd_core::timestamp::option")]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TryFrom<operator_keys::OperatorKeyRow> for OperatorKeyInfo {
    type Error = CorruptRow;

    fn try_from(row: operator_keys::OperatorKeyRow) -> Result<Self, CorruptRow> {
        let allowed_cidrs = AllowedSources::parse(&row.allowed_cidrs)
            .map_err(|e| CorruptRow { table: "operator_keys", id: row.key_id.clone(), reason: e.to_string() })?
            .names();
        Ok(OperatorKeyInfo {
            key_id: row.key_id,
            label: row.label,
            allowed_cidrs,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
        })
    }
}

/// A key just made. No `Debug`: it holds the key.
pub struct IssuedOperatorKey {
    pub info: OperatorKeyInfo,
    key: SecretString,
}

impl IssuedOperatorKey {
    pub fn secret(&self) -> &str {
        self.key.expose_secret()
    }
}

fn detail(key: &OperatorKeyInfo, new_key_id: Option<&str>) -> serde_json::Value {
    let mut detail =
        serde_json::json!({ "key_id": key.key_id, "label": key.label, "allowed_cidrs": key.allowed_cidrs });
    if let Some(expires_at) = key.expires_at {
        detail["expires_at"] = serde_json::json!(verifyd_core::timestamp::format(expires_at));
    }
    if let Some(new_key_id) = new_key_id {
        detail["new_key_id"] = serde_json::json!(new_key_id);
    }
    detail
}

pub async fn create(
    pool: &PgPool,
    label: Option<&str>,
    sources: &AllowedSources,
    who: &Who,
) -> Result<IssuedOperatorKey, KeyError> {
    let (key_id, secret) = generate_with(PREFIX);
    let mut tx = pool.begin().await?;
    let row = operator_keys::insert(&mut tx, &key_id, &hash(&secret), label, &sources.names()).await?;
    let info = OperatorKeyInfo::try_from(row)?;
    audit::record_operation(
        &mut tx,
        None,
        "operator_key.created",
        who,
        detail(&info, None),
        verifyd_core::timestamp::now(),
    )
    .await?;
    tx.commit().await?;
    Ok(IssuedOperatorKey { info, key: SecretString::from(format!("{key_id}.{secret}")) })
}

pub async fn list(pool: &PgPool) -> Result<Vec<OperatorKeyInfo>, KeyError> {
    let rows = operator_keys::list(pool).await?;
    Ok(rows.into_iter().map(OperatorKeyInfo::try_from).collect::<Result<_, _>>()?)
}

pub struct RotatedOperatorKey {
    pub previous: OperatorKeyInfo,
    pub issued: IssuedOperatorKey,
}

pub async fn rotate(
    pool: &PgPool,
    key_id: &str,
    grace: Duration,
    who: &Who,
) -> Result<Option<RotatedOperatorKey>, KeyError> {
    let (new_id, secret) = generate_with(PREFIX);
    let mut tx = pool.begin().await?;
    let Some((old, new)) = operator_keys::rotate(&mut tx, key_id, &new_id, &hash(&secret), grace).await? else {
        return Ok(None);
    };
    let previous = OperatorKeyInfo::try_from(old)?;
    audit::record_operation(
        &mut tx,
        None,
        "operator_key.rotated",
        who,
        detail(&previous, Some(&new_id)),
        verifyd_core::timestamp::now(),
    )
    .await?;
    tx.commit().await?;
    let issued = IssuedOperatorKey { info: new.try_into()?, key: SecretString::from(format!("{new_id}.{secret}")) };
    Ok(Some(RotatedOperatorKey { previous, issued }))
}

/// Revokes a key and ends the console sessions it opened.
pub async fn revoke(pool: &PgPool, key_id: &str, who: &Who) -> Result<Option<OperatorKeyInfo>, KeyError> {
    let mut tx = pool.begin().await?;
    let Some((row, revoked_now)) = operator_keys::revoke(&mut tx, key_id).await? else {
        return Ok(None);
    };
    let info = OperatorKeyInfo::try_from(row)?;
    if revoked_now {
        audit::record_operation(
            &mut tx,
            None,
            "operator_key.revoked",
            who,
            detail(&info, None),
            verifyd_core::timestamp::now(),
        )
        .await?;
        sessions::delete_for_key(&mut tx, key_id).await?;
    }
    tx.commit().await?;
    Ok(Some(info))
}

/// A key as the CLI prints it; the secret is printed separately, once.
pub fn describe(key: &OperatorKeyInfo) -> String {
    let times = [Some(key.created_at), key.expires_at, key.revoked_at, key.last_used_at];
    format!("{}  operator  {}", key.key_id, super::standing(key.label.as_deref(), &key.allowed_cidrs, times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_key_ids_have_their_own_prefix() {
        let (id, secret) = generate_with(PREFIX);
        assert!(valid_key_id(&id), "{id}");
        assert!(!super::super::valid_key_id(&id), "not a tenant key id");
        assert_eq!(super::super::split(&format!("{id}.{secret}")), Some((id.as_str(), secret.as_str())));
        assert!(!valid_key_id("vk_0123456789ab"));
    }
}
