//! Leases on the buckets every send of a tenant shares (its own, its
//! destination country's). Taken one cell per send, those two rows were the
//! most written rows of the send path: every create of a tenant updated them,
//! one after the other (1.35 ms a take in the profile of issue 16, most of it
//! waiting for the row). A process now takes a few cells at once and hands
//! them to its next sends from memory.
//!
//! The limit still holds across processes: every cell is taken in PostgreSQL
//! before a send uses it. What changes is who is refused first: cells a
//! process holds are not available to the others for up to [`HELD_FOR`], so a
//! tenant may be refused up to `processes × lease` sends early. The lease is
//! a hundredth of the smallest limit of the set (at most [`MAX_CELLS`]), so
//! that error stays under 1 % per process; a limit under 200 is taken a cell
//! at a time, exactly as before. Unused cells go back when the next send of
//! the set finds the lease run out, or when the process stops gracefully; a
//! killed process's cells drain with the bucket, as any taken cell does.
//! Decision 185.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::Throttled;
use super::buckets::Bucket;
use super::postgres;

/// Cells taken at once, at most.
pub const MAX_CELLS: u32 = 32;
/// How long a process keeps cells it has not used.
pub const HELD_FOR: Duration = Duration::from_secs(1);

struct Held {
    left: u32,
    until: Instant,
    buckets: Vec<Bucket>,
}

/// This process's leases, one per set of shared buckets.
#[derive(Default)]
pub struct SharedLeases {
    held: Mutex<HashMap<Vec<[u8; 32]>, Held>>,
}

/// Cells to take at once for `buckets`: a hundredth of the smallest limit.
pub fn lease_size(buckets: &[Bucket]) -> u32 {
    let smallest = buckets.iter().map(|b| b.limit.count).min().unwrap_or(0);
    (smallest / 100).clamp(1, MAX_CELLS)
}

fn set_of(buckets: &[Bucket]) -> Vec<[u8; 32]> {
    buckets.iter().map(|b| b.key).collect()
}

impl SharedLeases {
    /// Takes a cell from every bucket of the set: from this process's lease
    /// when it holds one, otherwise from PostgreSQL, a lease's worth at once
    /// (a cell alone when that many are not left, so the last cells of a
    /// limit are given exactly as before).
    pub async fn take(
        &self,
        pool: &PgPool,
        buckets: &[Bucket],
        now: DateTime<Utc>,
    ) -> Result<Result<(), Throttled>, sqlx::Error> {
        let size = lease_size(buckets);
        if buckets.is_empty() || size <= 1 {
            return postgres::take_alone(pool, buckets, 1, now).await;
        }
        let set = set_of(buckets);
        let ran_out = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            match held.get_mut(&set) {
                Some(lease) if lease.left > 0 && lease.until > Instant::now() => {
                    lease.left -= 1;
                    return Ok(Ok(()));
                }
                Some(_) => held.remove(&set),
                None => None,
            }
        };
        if let Some(old) = ran_out {
            self.hand_back(pool, &old, now).await;
        }
        match postgres::take_alone(pool, buckets, size, now).await? {
            Ok(()) => {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                let lease = held.entry(set).or_insert_with(|| Held {
                    left: 0,
                    until: Instant::now() + HELD_FOR,
                    buckets: buckets.to_vec(),
                });
                // Another send of the set may have taken a lease meanwhile: both count.
                lease.left += size - 1;
                Ok(Ok(()))
            }
            Err(_) => postgres::take_alone(pool, buckets, 1, now).await,
        }
    }

    /// Returns a cell a send took and did not use: to this process's lease
    /// while it holds one, otherwise to PostgreSQL.
    pub async fn give_back(&self, pool: &PgPool, buckets: &[Bucket], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        if lease_size(buckets) > 1 {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(lease) = held.get_mut(&set_of(buckets))
                && lease.until > Instant::now()
            {
                lease.left += 1;
                return Ok(());
            }
        }
        postgres::give_back(pool, buckets, 1, now).await
    }

    /// Hands every lease's unused cells back to PostgreSQL (a graceful stop).
    pub async fn release_all(&self, pool: &PgPool, now: DateTime<Utc>) {
        let all: Vec<Held> = self.held.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, h)| h).collect();
        for lease in all {
            self.hand_back(pool, &lease, now).await;
        }
    }

    async fn hand_back(&self, pool: &PgPool, lease: &Held, now: DateTime<Utc>) {
        if let Err(error) = postgres::give_back(pool, &lease.buckets, lease.left, now).await {
            tracing::warn!(%error, cells = lease.left, "could not hand back a lease's unused throttle cells");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Limit, Limits, Send};
    use verifyd_providers::domain::Destination;

    fn shared(per_tenant: Limit, per_country: Limit) -> Vec<Bucket> {
        let limits = Limits { per_tenant, per_country, ..Limits::default() };
        let to = Destination::Phone(verifyd_providers::domain::PhoneNumber::parse("+447400123456").unwrap());
        let account = crate::ids::AccountId::parse("acct").unwrap();
        let send = Send { tenant_id: uuid::Uuid::nil(), to: &to, account: &account, ip: None };
        crate::limits::split_shared(limits.send_buckets(&send)).1
    }

    #[test]
    fn a_lease_is_a_hundredth_of_the_smallest_limit_and_small_limits_take_one_cell() {
        assert_eq!(lease_size(&shared(Limit::new(6_000, 600), Limit::new(1_000, 600))), 10);
        assert_eq!(lease_size(&shared(Limit::new(1_000_000, 600), Limit::new(1_000_000, 600))), MAX_CELLS);
        assert_eq!(lease_size(&shared(Limit::new(6_000, 600), Limit::new(150, 600))), 1);
        assert_eq!(lease_size(&shared(Limit::new(3, 600), Limit::new(1_000, 600))), 1);
    }
}
