//! API keys: `vk_<12 hex>.<43 base64url chars>`. The part before the dot names
//! the key (it is looked up); the part after is 256 random bits, stored only as
//! its SHA-256 and compared in constant time. Keys are shown once, when they
//! are created or rotated.
//!
//! A key has scopes (what it may call, see `scopes`) and optionally source
//! networks (where it may be used from). Rotation issues a new key with the
//! same tenant, label, scopes and networks and lets the old one live for a
//! grace period; revocation ends a key at once.

mod authenticator;
pub mod operator;
mod scopes;
mod sources;

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use verifyd_core::ids::{AccountId, Tenant, Who};
use verifyd_core::store::audit::{self, Entry};
use verifyd_core::store::{CorruptRow, api_keys, tenants};

pub use authenticator::{Authenticated, Authenticator, KeyRejected, Principal};
pub use scopes::{Scope, Scopes, UnknownScope};
pub use sources::{AllowedSources, BadCidr, canonical};

/// How long a rotated key keeps working unless told otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// The longest grace a rotation may give the old key.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// `vk_<12 hex>` (a tenant's) or `vo_<12 hex>` (an operator's) and the
/// secret, if the presented key has the right shape.
fn split(presented: &str) -> Option<(&str, &str)> {
    let (key_id, secret) = presented.split_once('.')?;
    let id_ok = valid_key_id(key_id) || operator::valid_key_id(key_id);
    (id_ok && !secret.is_empty() && secret.len() <= 64).then_some((key_id, secret))
}

/// `vk_` and 12 lowercase hex digits.
pub fn valid_key_id(key_id: &str) -> bool {
    key_id.len() == 15
        && key_id.starts_with("vk_")
        && key_id[3..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new tenant key's id and secret.
fn generate() -> (String, String) {
    generate_with("vk_")
}

fn generate_with(prefix: &str) -> (String, String) {
    let id_bytes: [u8; 6] = rand::rng().random();
    let secret_bytes: [u8; 32] = rand::rng().random();
    (
        format!("{prefix}{}", hex::encode(id_bytes)),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Corrupt(#[from] CorruptRow),
}

/// What a new key may do and where from.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub label: Option<String>,
    pub scopes: Scopes,
    pub sources: AllowedSources,
}

impl KeySpec {
    /// Every scope, from anywhere: what keys made before scopes existed have.
    pub fn unrestricted(label: Option<&str>) -> KeySpec {
        KeySpec { label: label.map(str::to_owned), scopes: Scopes::all(), sources: AllowedSources::default() }
    }
}

/// A key as an admin sees it: never its secret or hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyInfo {
    #[schema(example = "vk_3f9a1c0b7d2e")]
    pub key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[schema(value_type = Vec<Scope>)]
    pub scopes: Scopes,
    /// Source networks the key is accepted from; empty: anywhere.
    #[schema(value_type = Vec<String>, example = json!(["10.0.0.0/8"]))]
    pub allowed_cidrs: Vec<String>,
    #[serde(with = "verifyd_core::timestamp")]
    pub created_at: DateTime<Utc>,
    /// Set by a rotation: the key is refused after it.
    #[serde(with = "verifyd_core::timestamp::option")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(with = "verifyd_core::timestamp::option")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// To within `http.key_cache_secs`.
    #[serde(with = "verifyd_core::timestamp::option")]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TryFrom<api_keys::KeyRow> for KeyInfo {
    type Error = CorruptRow;

    fn try_from(row: api_keys::KeyRow) -> Result<Self, CorruptRow> {
        let corrupt = |reason: String| CorruptRow { table: "api_keys", id: row.key_id.clone(), reason };
        let scopes = Scopes::parse(&row.scopes).map_err(|e| corrupt(e.to_string()))?;
        let allowed_cidrs = AllowedSources::parse(&row.allowed_cidrs).map_err(|e| corrupt(e.to_string()))?.names();
        Ok(KeyInfo {
            key_id: row.key_id,
            label: row.label,
            scopes,
            allowed_cidrs,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
        })
    }
}

impl KeyInfo {
    pub fn sources(&self) -> AllowedSources {
        AllowedSources::parse(&self.allowed_cidrs).unwrap_or_default()
    }
}

/// A key just made: the only time its secret exists outside the caller. No
/// `Debug`.
pub struct IssuedKey {
    pub info: KeyInfo,
    pub key: SecretString,
}

/// Creates the tenant if needed and a new key for it (the `keys create` command).
pub async fn create(
    pool: &PgPool,
    tenant_name: &str,
    spec: &KeySpec,
    who: &Who,
) -> Result<(Tenant, IssuedKey), KeyError> {
    let tenant = tenants::create(pool, tenant_name).await?;
    let issued = issue(pool, &tenant, spec, who).await?;
    Ok((tenant, issued))
}

/// A new key for a tenant, audited (`api_key.created`) in the same transaction.
pub async fn issue(pool: &PgPool, tenant: &Tenant, spec: &KeySpec, who: &Who) -> Result<IssuedKey, KeyError> {
    let (key_id, secret) = generate();
    let new = api_keys::NewKey {
        key_id: &key_id,
        secret_hash: &hash(&secret),
        label: spec.label.as_deref(),
        scopes: &spec.scopes.names(),
        allowed_cidrs: &spec.sources.names(),
    };
    let mut tx = pool.begin().await?;
    let row = api_keys::insert(&mut tx, tenant, &new).await?;
    let info = KeyInfo::try_from(row)?;
    audited(&mut tx, tenant, who, "api_key.created", &info, None).await?;
    tx.commit().await?;
    Ok(IssuedKey { info, key: SecretString::from(format!("{key_id}.{secret}")) })
}

/// The audit entry of a key change: the key's id and what it may do, never
/// its secret or hash.
async fn audited(
    conn: &mut PgConnection,
    tenant: &Tenant,
    who: &Who,
    action: &str,
    key: &KeyInfo,
    replaced_by: Option<&str>,
) -> Result<(), sqlx::Error> {
    let mut detail = serde_json::json!({
        "key_id": key.key_id,
        "label": key.label,
        "scopes": key.scopes.names(),
        "allowed_cidrs": key.allowed_cidrs,
    });
    if let Some(expires_at) = key.expires_at {
        detail["expires_at"] = serde_json::json!(verifyd_core::timestamp::format(expires_at));
    }
    if let Some(new_key_id) = replaced_by {
        detail["new_key_id"] = serde_json::json!(new_key_id);
    }
    let entry = Entry {
        tenant_id: tenant.id,
        account_id: None,
        organisation_id: None,
        action,
        who,
        detail,
        at: verifyd_core::timestamp::now(),
    };
    audit::record(conn, entry).await
}

/// Who acts when an operator runs `verifyd keys …` at a console: `cli`, or
/// `cli:<user>` when `USER` names one. No API key.
pub fn console_operator() -> Who {
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty());
    let actor = user.and_then(|u| AccountId::parse(&format!("cli:{u}")).ok());
    let actor = actor.or_else(|| AccountId::parse("cli").ok());
    Who { actor: actor.unwrap_or_else(|| unreachable!("\"cli\" is an account id")), api_key_id: None }
}

/// A tenant's keys, oldest first.
pub async fn list(pool: &PgPool, tenant: &Tenant) -> Result<Vec<KeyInfo>, KeyError> {
    let rows = api_keys::list(pool, tenant.id).await?;
    Ok(rows.into_iter().map(KeyInfo::try_from).collect::<Result<_, _>>()?)
}

/// One of a tenant's keys.
pub async fn get(pool: &PgPool, tenant: &Tenant, key_id: &str) -> Result<Option<KeyInfo>, KeyError> {
    Ok(api_keys::get(pool, tenant.id, key_id).await?.map(KeyInfo::try_from).transpose()?)
}

/// The outcome of a rotation: the old key (now expiring) and the new one.
pub struct Rotated {
    pub previous: KeyInfo,
    pub issued: IssuedKey,
}

/// Rotates a tenant's live key: `None` if it has no such key, or the key is
/// revoked or expired.
pub async fn rotate(
    pool: &PgPool,
    tenant: &Tenant,
    key_id: &str,
    grace: Duration,
    who: &Who,
) -> Result<Option<Rotated>, KeyError> {
    let (new_id, secret) = generate();
    let mut tx = pool.begin().await?;
    let Some((old, new)) = api_keys::rotate(&mut tx, tenant.id, key_id, &new_id, &hash(&secret), grace).await? else {
        return Ok(None);
    };
    let previous = KeyInfo::try_from(old)?;
    audited(&mut tx, tenant, who, "api_key.rotated", &previous, Some(&new_id)).await?;
    tx.commit().await?;
    let issued = IssuedKey { info: new.try_into()?, key: SecretString::from(format!("{new_id}.{secret}")) };
    Ok(Some(Rotated { previous, issued }))
}

/// Revokes a tenant's key: `None` if it has no such key. Audited
/// (`api_key.revoked`) unless the key was revoked already.
pub async fn revoke(pool: &PgPool, tenant: &Tenant, key_id: &str, who: &Who) -> Result<Option<KeyInfo>, KeyError> {
    let mut tx = pool.begin().await?;
    let Some((row, revoked_now)) = api_keys::revoke(&mut tx, tenant.id, key_id).await? else {
        return Ok(None);
    };
    let info = KeyInfo::try_from(row)?;
    if revoked_now {
        audited(&mut tx, tenant, who, "api_key.revoked", &info, None).await?;
    }
    tx.commit().await?;
    Ok(Some(info))
}

/// The tenant of a key, whichever it is: operator commands (`keys rotate`,
/// `keys revoke`) name a key alone.
pub async fn tenant_of(pool: &PgPool, key_id: &str) -> Result<Option<Tenant>, KeyError> {
    Ok(api_keys::tenant_of(pool, key_id).await?)
}

/// `keys revoke <key_id>`: revokes the key whatever its tenant. Other
/// processes stop accepting it within `http.key_cache_secs`.
pub async fn revoke_any(pool: &PgPool, key_id: &str, who: &Who) -> Result<Option<KeyInfo>, KeyError> {
    match tenant_of(pool, key_id).await? {
        Some(tenant) => revoke(pool, &tenant, key_id, who).await,
        None => Ok(None),
    }
}

/// `keys rotate <key_id>`: rotates the key whatever its tenant.
pub async fn rotate_any(pool: &PgPool, key_id: &str, grace: Duration, who: &Who) -> Result<Option<Rotated>, KeyError> {
    match tenant_of(pool, key_id).await? {
        Some(tenant) => rotate(pool, &tenant, key_id, grace, who).await,
        None => Ok(None),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("grace must be a number with s, m, h or d (30s, 15m, 24h, 7d), at most 30 days")]
pub struct BadGrace;

/// `30s`, `15m`, `24h`, `7d` or a number of seconds; at most `MAX_GRACE`.
pub fn parse_grace(input: &str) -> Result<Duration, BadGrace> {
    let input = input.trim();
    let (digits, unit) = match input.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&input[..i], c),
        _ => (input, 's'),
    };
    let n: u64 = digits.parse().map_err(|_| BadGrace)?;
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(BadGrace),
    };
    let grace = Duration::from_secs(n.checked_mul(per).ok_or(BadGrace)?);
    if grace > MAX_GRACE {
        return Err(BadGrace);
    }
    Ok(grace)
}

/// A key as the CLI prints it; the secret is printed separately, once.
pub fn describe(key: &KeyInfo) -> String {
    format!(
        "{}  scopes={}  {}",
        key.key_id,
        key.scopes,
        standing(
            key.label.as_deref(),
            &key.allowed_cidrs,
            [Some(key.created_at), key.expires_at, key.revoked_at, key.last_used_at,]
        )
    )
}

/// Where a key may be used from, its label and its life (created, expires,
/// revoked, last used), as the CLI prints every kind of key.
pub(crate) fn standing(label: Option<&str>, cidrs: &[String], times: [Option<DateTime<Utc>>; 4]) -> String {
    let when =
        |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    let from = if cidrs.is_empty() { "anywhere".to_owned() } else { cidrs.join(",") };
    let [created, expires, revoked, last_used] = times.map(when);
    format!(
        "from={from}  label={}  created={created}  expires={expires}  revoked={revoked}  last_used={last_used}",
        label.unwrap_or("-")
    )
}

impl IssuedKey {
    pub fn secret(&self) -> &str {
        self.key.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shape() {
        let (id, secret) = generate();
        assert!(valid_key_id(&id), "{id}");
        let key = format!("{id}.{secret}");
        assert_eq!(split(&key), Some((id.as_str(), secret.as_str())));
        assert_eq!(split("vk_0123456789ab"), None);
        assert_eq!(split("vk_0123456789AB.x"), None);
        assert_eq!(split("xx_0123456789ab.x"), None);
        assert_eq!(split(&format!("{id}.{}", "a".repeat(65))), None);
    }

    #[test]
    fn grace_parses_with_units() {
        assert_eq!(parse_grace("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_grace("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_grace("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_grace("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_grace("30d"), Ok(MAX_GRACE));
        assert_eq!(parse_grace("31d"), Err(BadGrace));
        assert_eq!(parse_grace("1w"), Err(BadGrace));
        assert_eq!(parse_grace("h"), Err(BadGrace));
        assert_eq!(parse_grace("-1s"), Err(BadGrace));
    }
}
