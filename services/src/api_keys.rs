//! API keys: `vk_<12 hex>.<43 base64url chars>`. The part before the dot names
//! the key (it is looked up); the part after is 256 random bits, stored only as
//! its SHA-256 and compared in constant time. Keys are printed once, at creation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngExt;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use verifyd_actors::ids::Tenant;
use verifyd_actors::store::tenants;

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Creates the tenant if needed and a new key for it; returns the key, to be shown once.
pub async fn create(
    pool: &PgPool,
    tenant_name: &str,
    label: Option<&str>,
) -> Result<(Tenant, SecretString), sqlx::Error> {
    let tenant = tenants::create(pool, tenant_name).await?;
    let id_bytes: [u8; 6] = rand::rng().random();
    let secret_bytes: [u8; 32] = rand::rng().random();
    let key_id = format!("vk_{}", hex::encode(id_bytes));
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes);
    tenants::insert_key(pool, &tenant, &key_id, &hash(&secret), label).await?;
    Ok((tenant, SecretString::from(format!("{key_id}.{secret}"))))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRejected {
    #[error("malformed API key")]
    Malformed,
    #[error("unknown or revoked API key")]
    Unknown,
}

/// A live key's stored hash, its tenant, and when it was read.
type CachedKey = (Vec<u8>, Tenant, Instant);

/// Checks presented keys, remembering live keys for `ttl` so a busy caller does
/// not cost a database round trip per request. Only keys that exist are kept (so
/// memory is bounded by the number of keys, not by what callers send); the
/// secret is still compared, in constant time, on every request. A revoked key
/// stops working within `ttl`.
pub struct Authenticator {
    pool: PgPool,
    ttl: Duration,
    cache: Mutex<HashMap<String, CachedKey>>,
}

impl Authenticator {
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        Authenticator { pool, ttl, cache: Mutex::new(HashMap::new()) }
    }

    pub async fn authenticate(&self, presented: &SecretString) -> Result<Result<Tenant, KeyRejected>, sqlx::Error> {
        let Some((key_id, secret)) = presented.expose_secret().split_once('.') else {
            return Ok(Err(KeyRejected::Malformed));
        };
        if !key_id.starts_with("vk_") || key_id.len() != 15 || secret.is_empty() || secret.len() > 64 {
            return Ok(Err(KeyRejected::Malformed));
        }
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key_id)
            .and_then(|(hash, tenant, at)| (at.elapsed() < self.ttl).then(|| (hash.clone(), tenant.clone())));
        let (stored, tenant) = match cached {
            Some(entry) => entry,
            None => {
                let Some((stored, tenant)) = tenants::live_key(&self.pool, key_id).await? else {
                    self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(key_id);
                    return Ok(Err(KeyRejected::Unknown));
                };
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key_id.to_owned(), (stored.clone(), tenant.clone(), Instant::now()));
                (stored, tenant)
            }
        };
        if bool::from(hash(secret).ct_eq(&stored)) { Ok(Ok(tenant)) } else { Ok(Err(KeyRejected::Unknown)) }
    }
}
