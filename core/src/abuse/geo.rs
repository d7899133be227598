//! Geo permissions: which destination countries a tenant may send codes to, per
//! channel. A tenant's own list (in PostgreSQL) wins; a tenant without one for a
//! channel gets the configured default; no default means every country.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::Channel;

/// A set of ISO 3166-1 alpha-2 regions the numbering plan knows, upper case,
/// sorted. Empty is allowed: nothing may be sent by that channel.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Countries(BTreeSet<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ISO 3166-1 alpha-2 country code the numbering plan knows")]
pub struct CountryError(pub String);

/// At most this many countries in one list (there are fewer than 250).
const MAX_COUNTRIES: usize = 300;

/// An ISO 3166-1 alpha-2 code, in capitals, that libphonenumber has a
/// numbering plan for.
pub fn is_known_country(code: &str) -> bool {
    code.len() == 2
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && phonenumber::metadata::DATABASE.by_id(code).is_some()
}

impl Countries {
    pub fn parse<S: AsRef<str>>(codes: &[S]) -> Result<Self, CountryError> {
        if codes.len() > MAX_COUNTRIES {
            return Err(CountryError(format!("{} entries", codes.len())));
        }
        let mut set = BTreeSet::new();
        for raw in codes {
            let code = raw.as_ref();
            if !is_known_country(code) {
                return Err(CountryError(raw.as_ref().to_owned()));
            }
            set.insert(code.to_owned());
        }
        Ok(Countries(set))
    }

    /// A list a tenant wrote (it was checked then); kept as stored.
    fn from_stored(codes: Vec<String>) -> Self {
        Countries(codes.into_iter().collect())
    }

    /// Numbers without a country (international networks such as +800, +882)
    /// are in no list.
    pub fn contains(&self, country: Option<&str>) -> bool {
        country.is_some_and(|c| self.0.contains(c))
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

impl<'de> Deserialize<'de> for Countries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        Countries::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Allow-lists per channel; `None` for a channel means "not restricted here":
/// for a tenant, use the default; for the default, every country.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GeoPermissions {
    #[schema(value_type = Option<Vec<String>>, example = json!(["GB", "FR"]))]
    pub sms: Option<Countries>,
    #[schema(value_type = Option<Vec<String>>, example = json!(["GB"]))]
    pub voice: Option<Countries>,
    #[schema(value_type = Option<Vec<String>>, example = json!(["BR", "IN"]))]
    pub whatsapp: Option<Countries>,
}

impl GeoPermissions {
    /// A tenant's stored lists (NULL: the default applies to that channel).
    pub fn from_stored(sms: Option<Vec<String>>, voice: Option<Vec<String>>, whatsapp: Option<Vec<String>>) -> Self {
        GeoPermissions {
            sms: sms.map(Countries::from_stored),
            voice: voice.map(Countries::from_stored),
            whatsapp: whatsapp.map(Countries::from_stored),
        }
    }

    pub fn for_channel(&self, channel: Channel) -> Option<&Countries> {
        match channel {
            Channel::Sms => self.sms.as_ref(),
            Channel::Voice => self.voice.as_ref(),
            Channel::Whatsapp => self.whatsapp.as_ref(),
            // An address has no country.
            Channel::Email => None,
        }
    }
}

/// May `channel` reach `country` for a tenant with `own` lists, given the
/// configured `default`?
pub fn allowed(own: &GeoPermissions, default: &GeoPermissions, channel: Channel, country: Option<&str>) -> bool {
    match own.for_channel(channel).or(default.for_channel(channel)) {
        Some(list) => list.contains(country),
        None => true,
    }
}

/// A tenant's own lists (both `None` when it has set none).
pub async fn load(conn: &mut PgConnection, tenant_id: Uuid) -> Result<GeoPermissions, sqlx::Error> {
    /// A channel's stored list: NULL for "the default applies".
    type List = Option<Vec<String>>;
    let row: Option<(List, List, List)> =
        sqlx::query_as("SELECT sms, voice, whatsapp FROM geo_permissions WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(conn)
            .await?;
    let (sms, voice, whatsapp) = row.unwrap_or_default();
    Ok(GeoPermissions::from_stored(sms, voice, whatsapp))
}

pub async fn save(conn: &mut PgConnection, tenant_id: Uuid, geo: &GeoPermissions) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO geo_permissions (tenant_id, sms, voice, whatsapp, updated_at) VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (tenant_id) DO UPDATE SET sms = EXCLUDED.sms, voice = EXCLUDED.voice,
             whatsapp = EXCLUDED.whatsapp, updated_at = now()",
    )
    .bind(tenant_id)
    .bind(geo.sms.as_ref().map(Countries::to_vec))
    .bind(geo.voice.as_ref().map(Countries::to_vec))
    .bind(geo.whatsapp.as_ref().map(Countries::to_vec))
    .execute(conn)
    .await?;
    Ok(())
}

/// Tenants' lists as read a moment ago, for the pre-check before a
/// transaction. The check inside the transaction reads PostgreSQL, so a stale
/// entry can only refuse early what a change made in another process within
/// `ttl` now allows.
pub struct GeoCache {
    ttl: Duration,
    entries: Mutex<HashMap<Uuid, (Instant, GeoPermissions)>>,
}

/// Entries kept before expired ones are dropped.
const CACHE_SWEEP_AT: usize = 10_000;

impl GeoCache {
    pub fn new(ttl: Duration) -> Self {
        GeoCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub async fn get(&self, pool: &PgPool, tenant_id: Uuid) -> Result<GeoPermissions, sqlx::Error> {
        if let Some((at, geo)) = self.lock().get(&tenant_id)
            && at.elapsed() < self.ttl
        {
            return Ok(geo.clone());
        }
        let mut conn = pool.acquire().await?;
        let geo = load(&mut conn, tenant_id).await?;
        self.put(tenant_id, geo.clone());
        Ok(geo)
    }

    pub fn put(&self, tenant_id: Uuid, geo: GeoPermissions) {
        let mut entries = self.lock();
        if entries.len() >= CACHE_SWEEP_AT {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        entries.insert(tenant_id, (Instant::now(), geo));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Instant, GeoPermissions)>> {
        // A panic while holding it cannot leave the map half-written.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(codes: &[&str]) -> Option<Countries> {
        Some(Countries::parse(codes).unwrap())
    }

    #[test]
    fn country_codes_are_exact_and_checked_against_the_plan() {
        let c = Countries::parse(&["GB", "FR", "GB"]).unwrap();
        assert_eq!(c.to_vec(), vec!["FR".to_owned(), "GB".to_owned()]);
        for bad in ["UK", "XX", "GBR", "", "001", "g1", "gb", " FR"] {
            assert!(Countries::parse(&[bad]).is_err(), "{bad:?}");
        }
        assert!(Countries::parse::<&str>(&[]).unwrap().to_vec().is_empty());
    }

    #[test]
    fn a_tenant_list_wins_over_the_default_which_wins_over_everything() {
        let none = GeoPermissions::default();
        assert!(allowed(&none, &none, Channel::Sms, Some("NG")));
        assert!(allowed(&none, &none, Channel::Sms, None), "no list at all: every number");

        let default = GeoPermissions { sms: list(&["GB", "US"]), voice: None, whatsapp: list(&["BR"]) };
        assert!(allowed(&none, &default, Channel::Sms, Some("GB")));
        assert!(!allowed(&none, &default, Channel::Sms, Some("NG")));
        assert!(!allowed(&none, &default, Channel::Sms, None), "a list names no international network");
        assert!(allowed(&none, &default, Channel::Voice, Some("NG")), "voice has no default list");

        let own = GeoPermissions { sms: list(&["NG"]), voice: list(&[]), whatsapp: None };
        assert!(allowed(&own, &default, Channel::Sms, Some("NG")));
        assert!(!allowed(&own, &default, Channel::Sms, Some("GB")));
        assert!(!allowed(&own, &default, Channel::Voice, Some("GB")), "an empty list closes the channel");
        assert!(allowed(&own, &default, Channel::Whatsapp, Some("BR")), "WhatsApp keeps its own list");
        assert!(!allowed(&own, &default, Channel::Whatsapp, Some("NG")));
    }
}
