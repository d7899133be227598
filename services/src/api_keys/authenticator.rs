//! Checks presented keys. Live keys are remembered for `ttl` so a busy caller
//! does not cost a database round trip per request. Only keys that exist are
//! kept (memory is bounded by the number of keys, not by what callers send);
//! the secret is still compared, in constant time, on every request, and a
//! rotated key's expiry is checked on every request, so the grace ends on
//! time. A revocation takes effect at once in the process that evicts the key
//! (`evict`), and within `ttl` in the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use verifyd_core::ids::Tenant;
use verifyd_core::store::{CorruptRow, api_keys, operator_keys};

use super::{AllowedSources, KeyError, Scopes, hash, split};

/// Who a key speaks for: a tenant, with scopes, or the deployment's operators.
#[derive(Debug, Clone)]
pub enum Principal {
    Tenant(Authenticated),
    /// A deployment operator key: only the operator endpoints and the console.
    Operator {
        key_id: String,
        sources: AllowedSources,
    },
}

impl Principal {
    pub fn key_id(&self) -> &str {
        match self {
            Principal::Tenant(k) => &k.key_id,
            Principal::Operator { key_id, .. } => key_id,
        }
    }

    pub fn sources(&self) -> &AllowedSources {
        match self {
            Principal::Tenant(k) => &k.sources,
            Principal::Operator { sources, .. } => sources,
        }
    }
}

/// A key that passed: what it may do and from where. Holds no secret.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub tenant: Tenant,
    pub key_id: String,
    pub scopes: Scopes,
    pub sources: AllowedSources,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRejected {
    #[error("malformed API key")]
    Malformed,
    #[error("unknown, expired or revoked API key")]
    Unknown,
}

/// A live key as read from the database. No `Debug`: it holds the hash.
struct Cached {
    hash: Vec<u8>,
    key: Principal,
    expires_at: Option<DateTime<Utc>>,
    loaded: Instant,
    /// Whether this process recorded the key's use since it was loaded.
    touched: bool,
}

enum Entry {
    Live(Cached),
    /// Evicted at: a load that started before must not put the key back.
    Evicted(Instant),
}

pub struct Authenticator {
    pool: PgPool,
    ttl: Duration,
    cache: Mutex<HashMap<String, Entry>>,
}

impl Authenticator {
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        Authenticator { pool, ttl, cache: Mutex::new(HashMap::new()) }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget a key at once (after it was revoked or rotated here).
    pub fn evict(&self, key_id: &str) {
        let now = Instant::now();
        let mut cache = self.cache();
        cache.retain(|_, e| !matches!(e, Entry::Evicted(at) if now.duration_since(*at) > self.ttl));
        cache.insert(key_id.to_owned(), Entry::Evicted(now));
    }

    pub async fn authenticate(&self, presented: &SecretString) -> Result<Result<Principal, KeyRejected>, KeyError> {
        let Some((key_id, secret)) = split(presented.expose_secret()) else {
            return Ok(Err(KeyRejected::Malformed));
        };
        let Some((stored, key, touched)) = self.live(key_id).await? else {
            return Ok(Err(KeyRejected::Unknown));
        };
        if !bool::from(hash(secret).ct_eq(&stored)) {
            return Ok(Err(KeyRejected::Unknown));
        }
        if !touched {
            self.touch(key_id).await;
        }
        Ok(Ok(key))
    }

    /// A key that is still live, without its secret: what a console session
    /// checks on every request (the key that signed in may have been revoked).
    pub async fn still_live(&self, key_id: &str) -> Result<Option<Principal>, KeyError> {
        Ok(self.live(key_id).await?.map(|(_, key, _)| key))
    }

    /// The cached (or freshly read) hash and principal of a live key, and
    /// whether its use was recorded since it was loaded.
    async fn live(&self, key_id: &str) -> Result<Option<(Vec<u8>, Principal, bool)>, KeyError> {
        let cached = match self.cache().get(key_id) {
            Some(Entry::Live(c)) if c.loaded.elapsed() < self.ttl => {
                Some((c.hash.clone(), c.key.clone(), c.expires_at, c.touched))
            }
            _ => None,
        };
        let (stored, key, expires_at, touched) = match cached {
            Some(entry) => entry,
            None => {
                let started = Instant::now();
                let Some((hash, key, expires_at)) = self.load(key_id).await? else {
                    self.forget(key_id);
                    return Ok(None);
                };
                let mut cache = self.cache();
                let evicted_since = matches!(cache.get(key_id), Some(Entry::Evicted(at)) if *at >= started);
                if !evicted_since {
                    let entry = Cached {
                        hash: hash.clone(),
                        key: key.clone(),
                        expires_at,
                        loaded: Instant::now(),
                        touched: false,
                    };
                    cache.insert(key_id.to_owned(), Entry::Live(entry));
                }
                (hash, key, expires_at, false)
            }
        };
        if expires_at.is_some_and(|at| at <= verifyd_core::timestamp::now()) {
            self.forget(key_id);
            return Ok(None);
        }
        Ok(Some((stored, key, touched)))
    }

    /// A live key from its table: `vo_` keys are the deployment's operators'.
    async fn load(&self, key_id: &str) -> Result<Option<(Vec<u8>, Principal, Option<DateTime<Utc>>)>, KeyError> {
        if key_id.starts_with(super::operator::PREFIX) {
            let Some(row) = operator_keys::live(&self.pool, key_id).await? else {
                return Ok(None);
            };
            let corrupt = |reason: String| CorruptRow { table: "operator_keys", id: key_id.to_owned(), reason };
            let sources = AllowedSources::parse(&row.allowed_cidrs).map_err(|e| corrupt(e.to_string()))?;
            let key = Principal::Operator { key_id: key_id.to_owned(), sources };
            return Ok(Some((row.secret_hash, key, row.expires_at)));
        }
        let Some(row) = api_keys::live(&self.pool, key_id).await? else {
            return Ok(None);
        };
        let key = Principal::Tenant(authenticated(key_id, &row)?);
        Ok(Some((row.secret_hash, key, row.expires_at)))
    }

    /// Drops a live entry (an evicted mark stays).
    fn forget(&self, key_id: &str) {
        let mut cache = self.cache();
        if matches!(cache.get(key_id), Some(Entry::Live(_))) {
            cache.remove(key_id);
        }
    }

    /// `last_used_at`, at most once per cache period per process: a failure
    /// to record it does not refuse the request. Awaited, so the request's own
    /// use is visible to what it reads (a listing shows the key that asked).
    async fn touch(&self, key_id: &str) {
        if let Some(Entry::Live(c)) = self.cache().get_mut(key_id) {
            c.touched = true;
        }
        let touched = if key_id.starts_with(super::operator::PREFIX) {
            operator_keys::touch(&self.pool, key_id).await
        } else {
            api_keys::touch(&self.pool, key_id).await
        };
        if let Err(error) = touched {
            tracing::warn!(key_id, %error, "could not record the API key's last use");
        }
    }
}

fn authenticated(key_id: &str, row: &api_keys::LiveKey) -> Result<Authenticated, KeyError> {
    let corrupt = |reason: String| CorruptRow { table: "api_keys", id: key_id.to_owned(), reason };
    Ok(Authenticated {
        tenant: row.tenant(),
        key_id: key_id.to_owned(),
        scopes: Scopes::parse(&row.scopes).map_err(|e| corrupt(e.to_string()))?,
        sources: AllowedSources::parse(&row.allowed_cidrs).map_err(|e| corrupt(e.to_string()))?,
    })
}
