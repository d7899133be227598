//! The in-process layer: one governor keyed limiter per scope (and per
//! country override), lock-free and shared by every shard that issues codes,
//! answering a flood without a database round trip; the `Housekeeping` actor
//! owns their housekeeping timer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, RateLimiter};

use super::buckets::{Bucket, Lane};
use super::{Limits, Scope, Throttled};

/// The in-process limiters, one keyed limiter per scope; lock-free and shared
/// by every shard that issues codes.
pub struct Limiters {
    by_scope: HashMap<Scope, DefaultKeyedRateLimiter<[u8; 32]>>,
    /// One per `per_country_overrides` entry, in its order (`Lane::Override`).
    overrides: Vec<DefaultKeyedRateLimiter<[u8; 32]>>,
    /// Made once: a new quanta clock per call re-reads the CPU's features
    /// (CPUID, a trap to the hypervisor on a VM), which showed in profiles.
    clock: DefaultClock,
}

impl Limiters {
    pub fn new(limits: &Limits) -> Self {
        let by_scope =
            Scope::ALL.into_iter().filter_map(|s| Some((s, RateLimiter::keyed(limits.of(s)?.quota())))).collect();
        let overrides = limits.per_country_overrides.values().map(|l| RateLimiter::keyed(l.quota())).collect();
        Limiters { by_scope, overrides, clock: DefaultClock::default() }
    }

    fn limiter(&self, bucket: &Bucket) -> Option<&DefaultKeyedRateLimiter<[u8; 32]>> {
        match bucket.lane {
            Lane::Scope => self.by_scope.get(&bucket.scope),
            Lane::Override(i) => self.overrides.get(i),
        }
    }

    /// Takes a cell from each bucket in turn; the first that is empty refuses
    /// (and is counted in `verifyd_throttled_total`).
    pub fn admit(&self, buckets: &[Bucket]) -> Result<(), Throttled> {
        let now = self.clock.now();
        for bucket in buckets {
            if let Some(limiter) = self.limiter(bucket) {
                limiter
                    .check_key(&bucket.key)
                    .map_err(|not_until| Throttled::counted(bucket.scope, not_until.wait_time_from(now)))?;
            }
        }
        Ok(())
    }

    /// Drops keys whose limiter is back to full, so memory follows recent traffic.
    pub(super) fn housekeeping(&self) {
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

/// Owns the limiters' housekeeping timer: once a minute, drops keys whose
/// limiter is back to full and reports how many remain. One per process.
pub struct Housekeeping {
    limiters: Arc<Limiters>,
    every: Duration,
}

impl Housekeeping {
    pub fn new(limiters: Arc<Limiters>) -> Self {
        Housekeeping { limiters, every: Duration::from_secs(60) }
    }
}

impl Actor for Housekeeping {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.every, |act, _| {
            act.limiters.housekeeping();
            metrics::gauge!("verifyd_throttle_keys").set(act.limiters.len() as f64);
        });
    }
}
