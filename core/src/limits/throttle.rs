//! Send and check throttles, keyed by destination phone, account, end-user IP,
//! destination country and tenant, plus checks per account.
//!
//! Every limit is a GCRA bucket ("`count` per `window`": `count` at once, then
//! one more every `window / count`), the algorithm governor implements. Two
//! layers use the same buckets: the throttle actor answers from in-process
//! governor limiters (no database round trip for the flood case), and
//! `enforce_in_tx` takes from the same buckets in PostgreSQL
//! (`verifyd_throttle_take`, migration 0005) inside the transaction that
//! records the send, so the answer holds across any number of processes. A
//! refusal names its scope and how long to wait (governor's `NotUntil`, or the
//! same arithmetic in PostgreSQL).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;
use verifyd_providers::domain::PhoneNumber;

use crate::ids::AccountId;

/// `count` events per `window_secs`; a `count` of 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub count: u32,
    pub window_secs: u64,
}

impl Limit {
    pub const fn new(count: u32, window_secs: u64) -> Self {
        Limit { count, window_secs }
    }

    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs.max(1))
    }

    pub fn is_off(&self) -> bool {
        self.count == 0
    }

    /// How often one cell comes back: window / count.
    fn emission(&self) -> Duration {
        (self.window() / self.count.max(1)).max(Duration::from_micros(1))
    }

    /// `count` at once, then one more every window/count.
    fn quota(&self) -> Quota {
        let burst = NonZeroU32::new(self.count.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(self.emission()).unwrap_or_else(|| Quota::per_second(burst)).allow_burst(burst)
    }
}

/// The configured limits (`[throttle]`). Defaults follow Twilio Verify's where
/// it has one (5 sends per phone per 10 minutes).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Codes sent to one phone number (create and resend).
    pub per_phone: Limit,
    /// Codes sent for one account.
    pub per_account: Limit,
    /// New verifications asked for one end-user IP address (`end_user_ip`).
    pub per_ip: Limit,
    /// Codes sent to one destination country, per tenant.
    pub per_country: Limit,
    /// `per_country` for named destination countries (ISO 3166-1 alpha-2, in
    /// capitals): more for a home market, less for a risky one; `count = 0`
    /// lifts the limit there (geo permissions refuse a country outright).
    pub per_country_overrides: BTreeMap<String, Limit>,
    /// Codes sent by one tenant in all.
    pub per_tenant: Limit,
    /// Code checks for one account, over all its verifications.
    pub checks_per_account: Limit,
    /// Wrong codes in a row that lock an account's checks, with backoff.
    pub lockout: crate::limits::lockout::Lockout,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_phone: Limit::new(5, 600),
            per_account: Limit::new(10, 600),
            per_ip: Limit::new(20, 600),
            per_country: Limit::new(1_000, 600),
            per_country_overrides: BTreeMap::new(),
            per_tenant: Limit::new(6_000, 600),
            checks_per_account: Limit::new(30, 3_600),
            lockout: crate::limits::lockout::Lockout::default(),
        }
    }
}

impl Limits {
    /// No limit at all (load tests).
    pub fn off() -> Self {
        let off = Limit::new(0, 1);
        Limits {
            per_phone: off,
            per_account: off,
            per_ip: off,
            per_country: off,
            per_country_overrides: BTreeMap::new(),
            per_tenant: off,
            checks_per_account: off,
            lockout: crate::limits::lockout::Lockout { after_wrong: 0, ..Default::default() },
        }
    }

    fn of(&self, scope: Scope) -> Option<Limit> {
        let limit = match scope {
            Scope::Phone => self.per_phone,
            Scope::Account => self.per_account,
            Scope::Ip => self.per_ip,
            Scope::Country => self.per_country,
            Scope::Tenant => self.per_tenant,
            Scope::Checks => self.checks_per_account,
            Scope::Verification | Scope::WrongAnswers | Scope::Lockout => return None,
        };
        (!limit.is_off()).then_some(limit)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ThrottleScope)]
pub enum Scope {
    /// Codes sent to one phone number.
    Phone,
    /// Codes sent for one account.
    Account,
    /// Verifications asked for one end-user IP address.
    Ip,
    /// Codes sent to one destination country.
    Country,
    /// Codes sent by the tenant in all.
    Tenant,
    /// Code checks for one account.
    Checks,
    /// Sends of one verification (too soon, or too many).
    Verification,
    /// Wrong answers one account gave to its login and step-up challenges.
    WrongAnswers,
    /// Wrong verification codes in a row: the account's checks are locked out.
    Lockout,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::Phone,
        Scope::Account,
        Scope::Ip,
        Scope::Country,
        Scope::Tenant,
        Scope::Checks,
        Scope::Verification,
        Scope::WrongAnswers,
        Scope::Lockout,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Scope::Phone => "too many codes sent to this phone number",
            Scope::Account => "too many codes sent for this account",
            Scope::Ip => "too many verifications asked from this end-user IP address",
            Scope::Country => "too many codes sent to this destination country",
            Scope::Tenant => "too many codes sent by this tenant",
            Scope::Checks => "too many code checks for this account",
            Scope::Verification => "this verification cannot send again yet",
            Scope::WrongAnswers => "too many wrong answers for this account",
            Scope::Lockout => "too many wrong codes in a row: this account's checks are locked for a while",
        }
    }

    /// The name in problem documents, events and the `scope` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Phone => "phone",
            Scope::Account => "account",
            Scope::Ip => "ip",
            Scope::Country => "country",
            Scope::Tenant => "tenant",
            Scope::Checks => "checks",
            Scope::Verification => "verification",
            Scope::WrongAnswers => "wrong_answers",
            Scope::Lockout => "lockout",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}; retry after {} s", scope.describe(), retry_after_secs(*retry_after))]
pub struct Throttled {
    pub scope: Scope,
    pub retry_after: Duration,
}

/// Whole seconds to wait, rounded up, at least 1 (what `Retry-After` carries).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// One bucket a request takes from: its scope, limit and key (a digest of the
/// scope and its parts, so neither a number nor an address is kept).
#[derive(Clone, Copy)]
pub struct Bucket {
    scope: Scope,
    limit: Limit,
    key: [u8; 32],
    lane: Lane,
}

/// Which in-process limiter holds a bucket: its scope's, or a country
/// override's (governor gives one quota per keyed limiter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
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

pub(crate) fn digest(parts: &[&str]) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0u8]);
    }
    digest.finalize().into()
}

/// Who a send is for: everything a send limit is keyed by.
pub struct Send<'a> {
    pub tenant_id: Uuid,
    pub phone: &'a PhoneNumber,
    pub account: &'a AccountId,
    /// The end user's address, when the backend passed it.
    pub ip: Option<IpAddr>,
}

impl Limits {
    /// The buckets one code sent takes from (limits turned off are left out).
    pub fn send_buckets(&self, send: &Send<'_>) -> Vec<Bucket> {
        let tenant = send.tenant_id.to_string();
        let ip = send.ip.map(|ip| ip.to_string());
        let country = send.phone.country().unwrap_or("unknown");
        let keyed: [(Scope, Option<Vec<&str>>); 5] = [
            (Scope::Phone, Some(vec![&tenant, send.phone.e164()])),
            (Scope::Account, Some(vec![&tenant, send.account.as_str()])),
            (Scope::Ip, ip.as_deref().map(|ip| vec![&tenant, ip])),
            (Scope::Country, Some(vec![&tenant, country])),
            (Scope::Tenant, Some(vec![&tenant])),
        ];
        keyed
            .into_iter()
            .filter_map(|(scope, parts)| match scope {
                Scope::Country => self.country_bucket(country, &parts?),
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

    /// Checks `per_country_overrides` names known countries, written in
    /// capitals as phone numbers report them.
    pub fn validate(&self) -> Result<(), String> {
        for country in self.per_country_overrides.keys() {
            if !crate::abuse::geo::is_known_country(country) {
                return Err(format!(
                    "throttle.per_country_overrides: {country:?} is not an ISO 3166-1 alpha-2 code in capitals"
                ));
            }
        }
        Ok(())
    }
}

/// The in-process limiters, one keyed limiter per scope; lock-free and shared
/// by every throttle shard.
pub struct Limiters {
    by_scope: HashMap<Scope, DefaultKeyedRateLimiter<[u8; 32]>>,
    /// One per `per_country_overrides` entry, in its order (`Lane::Override`).
    overrides: Vec<DefaultKeyedRateLimiter<[u8; 32]>>,
}

impl Limiters {
    pub fn new(limits: &Limits) -> Self {
        let scopes = [Scope::Phone, Scope::Account, Scope::Ip, Scope::Country, Scope::Tenant, Scope::Checks];
        let by_scope =
            scopes.into_iter().filter_map(|s| Some((s, RateLimiter::keyed(limits.of(s)?.quota())))).collect();
        let overrides = limits.per_country_overrides.values().map(|l| RateLimiter::keyed(l.quota())).collect();
        Limiters { by_scope, overrides }
    }

    fn limiter(&self, bucket: &Bucket) -> Option<&DefaultKeyedRateLimiter<[u8; 32]>> {
        match bucket.lane {
            Lane::Scope => self.by_scope.get(&bucket.scope),
            Lane::Override(i) => self.overrides.get(i),
        }
    }

    /// Takes a cell from each bucket in turn; the first that is empty refuses.
    fn check(&self, buckets: &[Bucket]) -> Result<(), Throttled> {
        let now = DefaultClock::default().now();
        for bucket in buckets {
            if let Some(limiter) = self.limiter(bucket) {
                limiter.check_key(&bucket.key).map_err(|not_until| Throttled {
                    scope: bucket.scope,
                    retry_after: not_until.wait_time_from(now),
                })?;
            }
        }
        Ok(())
    }

    /// Drops keys whose limiter is back to full, so memory follows recent traffic.
    fn housekeeping(&self) {
        for limiter in self.by_scope.values().chain(&self.overrides) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keys held in memory, all scopes together.
    pub fn len(&self) -> usize {
        self.by_scope.values().chain(&self.overrides).map(|l| l.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// May these buckets give one more cell?
#[derive(Message)]
#[rtype(result = "Result<(), Throttled>")]
pub struct Admit {
    pub buckets: Vec<Bucket>,
}

pub struct ThrottleActor {
    limiters: Arc<Limiters>,
    housekeeping: bool,
}

impl ThrottleActor {
    /// Only one instance per process needs `housekeeping`.
    pub fn new(limiters: Arc<Limiters>, housekeeping: bool) -> Self {
        ThrottleActor { limiters, housekeeping }
    }
}

impl Actor for ThrottleActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.housekeeping {
            ctx.run_interval(Duration::from_secs(60), |act, _| {
                act.limiters.housekeeping();
                metrics::gauge!("verifyd_throttle_keys").set(act.limiters.len() as f64);
            });
        }
    }
}

impl Handler<Admit> for ThrottleActor {
    type Result = Result<(), Throttled>;

    fn handle(&mut self, msg: Admit, _: &mut Self::Context) -> Self::Result {
        let result = self.limiters.check(&msg.buckets);
        if let Err(t) = &result {
            metrics::counter!("verifyd_throttled_total", "scope" => t.scope.as_str()).increment(1);
        }
        result
    }
}

/// The advisory-lock key of a throttle key: the first 8 bytes of SHA-256, so every
/// process, whatever toolchain built it, takes the same lock.
pub(crate) fn lock_key(parts: &[&str]) -> i64 {
    let bytes = digest(parts);
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(first)
}

/// Splits buckets into the ones a send has to itself (phone, account, IP) and
/// the ones every send of a tenant shares (country, tenant): one row each,
/// which a lock held until a create's commit would serialise every send of
/// the tenant on. They are taken apart ([`take_alone`]) or last.
pub fn split_shared(buckets: Vec<Bucket>) -> (Vec<Bucket>, Vec<Bucket>) {
    buckets.into_iter().partition(|b| !matches!(b.scope, Scope::Country | Scope::Tenant))
}

/// The cross-process answer, inside the transaction that will record the send
/// or the check: takes one cell from every bucket, or from none.
pub async fn enforce_in_tx(
    conn: &mut PgConnection,
    buckets: &[Bucket],
    now: DateTime<Utc>,
) -> Result<Result<(), Throttled>, sqlx::Error> {
    take(conn, "SELECT refused_by, wait_secs FROM verifyd_throttle_take($1, $2, $3, $4)", buckets, now).await
}

/// Takes from `buckets` in one statement, its own transaction, committed
/// without waiting for the WAL flush (`synchronous_commit = off`, set for that
/// transaction only): rows every send of a tenant shares are locked for one
/// statement rather than for a create's whole transaction and its flush. A
/// crash of PostgreSQL may forget the last fraction of a second of takes: the
/// limit is then briefly looser, never stricter. Hand the cells back with
/// [`give_back`] if the send does not happen.
pub async fn take_alone(
    pool: &sqlx::PgPool,
    buckets: &[Bucket],
    now: DateTime<Utc>,
) -> Result<Result<(), Throttled>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let sql = "SELECT t.refused_by, t.wait_secs
               FROM set_config('synchronous_commit', 'off', true), verifyd_throttle_take($1, $2, $3, $4) AS t";
    take(&mut conn, sql, buckets, now).await
}

async fn take(
    conn: &mut PgConnection,
    sql: &'static str,
    buckets: &[Bucket],
    now: DateTime<Utc>,
) -> Result<Result<(), Throttled>, sqlx::Error> {
    if buckets.is_empty() {
        return Ok(Ok(()));
    }
    let keys: Vec<Vec<u8>> = buckets.iter().map(|b| b.key.to_vec()).collect();
    let emission: Vec<f64> = buckets.iter().map(|b| b.limit.emission().as_secs_f64()).collect();
    let window: Vec<f64> = buckets.iter().map(|b| b.limit.window().as_secs_f64()).collect();
    let (refused_by, wait): (i32, f64) =
        sqlx::query_as(sql).bind(&keys).bind(&emission).bind(&window).bind(now).fetch_one(&mut *conn).await?;
    let Some(bucket) = usize::try_from(refused_by).ok().and_then(|i| i.checked_sub(1)).and_then(|i| buckets.get(i))
    else {
        return Ok(Ok(()));
    };
    metrics::counter!("verifyd_throttled_total", "scope" => bucket.scope.as_str()).increment(1);
    Ok(Err(Throttled { scope: bucket.scope, retry_after: Duration::from_secs_f64(wait.max(0.0)) }))
}

/// Returns one cell to each bucket (the inverse of a take; a bucket never
/// fills past full), rows locked in key order as the take locks them; one
/// statement, committed as [`take_alone`] commits.
pub async fn give_back(pool: &sqlx::PgPool, buckets: &[Bucket], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    if buckets.is_empty() {
        return Ok(());
    }
    let keys: Vec<Vec<u8>> = buckets.iter().map(|b| b.key.to_vec()).collect();
    let emission: Vec<f64> = buckets.iter().map(|b| b.limit.emission().as_secs_f64()).collect();
    sqlx::query(
        "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),
              locked AS (SELECT key FROM throttle_buckets, async WHERE key = ANY($1) ORDER BY key FOR UPDATE OF throttle_buckets)
         UPDATE throttle_buckets b SET tat = greatest(b.tat - make_interval(secs => u.e), $3)
         FROM unnest($1::bytea[], $2::float8[]) AS u(k, e), locked
         WHERE b.key = u.k AND locked.key = u.k",
    )
    .bind(&keys)
    .bind(&emission)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes buckets that are full again (their row says nothing a missing row
/// would not); a bounded batch per call.
pub async fn prune(pool: &sqlx::PgPool, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM throttle_buckets WHERE key IN (
            SELECT key FROM throttle_buckets WHERE tat < $1 ORDER BY tat LIMIT 5000)",
    )
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send<'a>(tenant: Uuid, phone: &'a PhoneNumber, account: &'a AccountId) -> Send<'a> {
        Send { tenant_id: tenant, phone, account, ip: None }
    }

    #[test]
    fn governor_allows_the_burst_then_says_how_long_to_wait() {
        let limits = Limits { per_phone: Limit::new(3, 600), ..Limits::off() };
        let l = Limiters::new(&limits);
        let tenant = Uuid::new_v4();
        let phone = PhoneNumber::parse("+14155552671").unwrap();
        let account = AccountId::parse("a").unwrap();
        let buckets = limits.send_buckets(&send(tenant, &phone, &account));
        for _ in 0..3 {
            assert!(l.check(&buckets).is_ok());
        }
        let t = l.check(&buckets).unwrap_err();
        assert_eq!(t.scope, Scope::Phone);
        assert!(t.retry_after > Duration::from_secs(190) && t.retry_after <= Duration::from_secs(200), "{t:?}");
        // Another tenant's identical phone has its own budget.
        assert!(l.check(&limits.send_buckets(&send(Uuid::new_v4(), &phone, &account))).is_ok());
    }

    #[test]
    fn a_limit_turned_off_takes_no_bucket_and_no_ip_takes_no_ip_bucket() {
        let limits = Limits::default();
        let phone = PhoneNumber::parse("+447911123456").unwrap();
        let account = AccountId::parse("a").unwrap();
        let without_ip = limits.send_buckets(&send(Uuid::new_v4(), &phone, &account));
        assert_eq!(
            without_ip.iter().map(|b| b.scope).collect::<Vec<_>>(),
            [Scope::Phone, Scope::Account, Scope::Country, Scope::Tenant]
        );
        let with_ip = Send { ip: Some("203.0.113.7".parse().unwrap()), ..send(Uuid::new_v4(), &phone, &account) };
        assert_eq!(limits.send_buckets(&with_ip).len(), 5);
        assert!(Limits::off().send_buckets(&with_ip).is_empty());
    }

    #[test]
    fn a_country_override_has_its_own_quota_in_process_and_names_only_known_countries() {
        let mut limits = Limits { per_country: Limit::new(2, 600), ..Limits::off() };
        limits.per_country_overrides.insert("US".into(), Limit::new(4, 600));
        limits.per_country_overrides.insert("CA".into(), Limit::new(0, 600));
        assert_eq!(limits.validate(), Ok(()));
        let l = Limiters::new(&limits);
        let account = AccountId::parse("a").unwrap();
        let taken = |phone: &str| {
            let phone = PhoneNumber::parse(phone).unwrap();
            let buckets = limits.send_buckets(&send(Uuid::nil(), &phone, &account));
            (0..6).take_while(|_| l.check(&buckets).is_ok()).count()
        };
        assert_eq!(taken("+447911123456"), 2, "the default");
        assert_eq!(taken("+14155552671"), 4, "the override");
        assert_eq!(taken("+16135550123"), 6, "count 0 lifts the limit for that country");

        for bad in ["us", "UK", "XX", "USA"] {
            let mut limits = Limits::default();
            limits.per_country_overrides.insert(bad.into(), Limit::new(1, 60));
            assert!(limits.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_follows_recent_traffic() {
        let limits = Limits { per_phone: Limit::new(10, 1), ..Limits::off() };
        let l = Limiters::new(&limits);
        let account = AccountId::parse("a").unwrap();
        for n in 0..100 {
            let phone = PhoneNumber::parse(&format!("+4479111{n:05}")).unwrap();
            assert!(l.check(&limits.send_buckets(&send(Uuid::nil(), &phone, &account))).is_ok());
        }
        assert_eq!(l.len(), 100);
        // One cell comes back every 100 ms; governor forgets a key a cell after that.
        std::thread::sleep(Duration::from_millis(300));
        l.housekeeping();
        assert!(l.is_empty(), "full buckets are forgotten: {} left", l.len());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(119_001)), 120);
        assert_eq!(retry_after_secs(Duration::from_secs(120)), 120);
    }
}
