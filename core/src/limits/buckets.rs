//! The buckets a send or a check takes from: one per limit that applies, keyed
//! by a digest of its scope and parts (so neither a number nor an address is
//! kept), in memory ([`super::memory`]) and in PostgreSQL ([`super::postgres`]).

use std::net::IpAddr;

use crate::store::keys::digest;
use uuid::Uuid;
use verifyd_providers::domain::{Destination, EmailAddress};

use super::{Limit, Limits, Scope};
use crate::ids::AccountId;

/// One bucket a request takes from: its scope, limit and key (a digest of the
/// scope and its parts, so neither a number nor an address is kept).
#[derive(Clone, Copy)]
pub struct Bucket {
    pub(super) scope: Scope,
    pub(super) limit: Limit,
    pub(super) key: [u8; 32],
    pub(super) lane: Lane,
}

/// Which in-process limiter holds a bucket: its scope's, or a country
/// override's (governor gives one quota per keyed limiter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    Scope,
    Override(usize),
}

impl Bucket {
    fn new(scope: Scope, limit: Limit, lane: Lane, parts: &[&str]) -> Self {
        let mut all = vec![scope.as_str()];
        all.extend_from_slice(parts);
        Bucket { scope, limit, key: digest(&all), lane }
    }
}

/// Who a send is for: everything a send limit is keyed by.
pub struct Send<'a> {
    pub tenant_id: Uuid,
    pub to: &'a Destination,
    pub account: &'a AccountId,
    /// The end user's address, when the backend passed it.
    pub ip: Option<IpAddr>,
}

impl Limits {
    /// The buckets one code sent takes from (limits turned off are left out).
    pub fn send_buckets(&self, send: &Send<'_>) -> Vec<Bucket> {
        let tenant = send.tenant_id.to_string();
        let ip = send.ip.map(|ip| ip.to_string());
        let phone = send.to.phone();
        let email = send.to.email();
        let country = phone.map(|p| p.country().unwrap_or("unknown"));
        let mailbox = email.map(mailbox);
        let keyed: [(Scope, Option<Vec<&str>>); 7] = [
            (Scope::Phone, phone.map(|p| vec![&tenant, p.e164()])),
            (Scope::Email, mailbox.as_deref().map(|m| vec![&tenant, m])),
            (Scope::EmailDomain, email.map(|e| vec![&tenant, e.domain()])),
            (Scope::Account, Some(vec![&tenant, send.account.as_str()])),
            (Scope::Ip, ip.as_deref().map(|ip| vec![&tenant, ip])),
            (Scope::Country, country.map(|c| vec![&tenant, c])),
            (Scope::Tenant, Some(vec![&tenant])),
        ];
        keyed
            .into_iter()
            .filter_map(|(scope, parts)| match scope {
                Scope::Country => self.country_bucket(country?, &parts?),
                _ => self.bucket(scope, &parts?),
            })
            .collect()
    }

    /// The bucket one code check takes from.
    pub fn check_buckets(&self, tenant_id: Uuid, account: &AccountId) -> Vec<Bucket> {
        self.bucket(Scope::Checks, &[&tenant_id.to_string(), account.as_str()]).into_iter().collect()
    }

    fn bucket(&self, scope: Scope, parts: &[&str]) -> Option<Bucket> {
        let limit = self.of(scope)?;
        Some(Bucket::new(scope, limit, Lane::Scope, parts))
    }

    /// The country bucket: its override's limit (and in-process lane) if it has one.
    fn country_bucket(&self, country: &str, parts: &[&str]) -> Option<Bucket> {
        match self.per_country_overrides.iter().enumerate().find(|(_, (c, _))| c.as_str() == country) {
            Some((i, (_, limit))) => {
                (!limit.is_off()).then(|| Bucket::new(Scope::Country, *limit, Lane::Override(i), parts))
            }
            None => self.bucket(Scope::Country, parts),
        }
    }
}

/// One mailbox as the per-address limit counts it: lowercase, without a
/// `+tag` (`Ada+news@x` is `ada@x`), so varying either does not buy codes.
fn mailbox(email: &EmailAddress) -> String {
    let local = email.local_part().split('+').next().unwrap_or_default();
    format!("{}@{}", local.to_ascii_lowercase(), email.domain())
}

/// Splits buckets into the ones a send has to itself (phone or address,
/// account, IP) and the ones many sends of a tenant share (country, email
/// domain, tenant): one row each,
/// which a lock held until a create's commit would serialise every send of
/// the tenant on. They are taken apart ([`take_alone`]) or last.
pub fn split_shared(buckets: Vec<Bucket>) -> (Vec<Bucket>, Vec<Bucket>) {
    buckets.into_iter().partition(|b| !matches!(b.scope, Scope::Country | Scope::EmailDomain | Scope::Tenant))
}
