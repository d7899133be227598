//! Provider pacing: at most `tps` messages per second to one provider, over all
//! processes. Each send reserves the next free slot in a GCRA bucket in
//! PostgreSQL (`throttle_buckets`, the throttles' table): a slot within
//! `MAX_WAIT` is taken and waited for; a later one is not taken, and the
//! provider is skipped for this job like one whose circuit is open (the job
//! fails over, or waits in a retry queue without spending a retry).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The longest a dispatch consumer holds a job waiting for its slot.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// When this send may go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    /// Reserved: go after this wait (zero when a slot is free now).
    After(Duration),
    /// The provider is at its rate for longer than `MAX_WAIT`: nothing reserved.
    Full { frees_in: Duration },
}

/// The same digest as a throttle bucket's key (scope, then parts).
fn key(provider: &str) -> Vec<u8> {
    crate::store::keys::digest(&["provider", provider]).to_vec()
}

/// Reserves one send to `provider`, paced at `tps` per second with a burst of `tps`.
pub async fn reserve(pool: &PgPool, provider: &str, tps: u32, now: DateTime<Utc>) -> Result<Slot, sqlx::Error> {
    let emission = 1.0 / f64::from(tps.max(1));
    let max_wait = MAX_WAIT.as_secs_f64();
    // The new tat is max(tat, now) + T; the send may go when tat − now ≤ 1 s
    // (the burst window), i.e. after (tat − now − 1 s) seconds.
    let reserved: Option<f64> = sqlx::query_scalar(
        "INSERT INTO throttle_buckets AS b (key, tat) VALUES ($1, $2 + make_interval(secs => $3))
         ON CONFLICT (key) DO UPDATE SET tat = greatest(b.tat, $2) + make_interval(secs => $3)
           WHERE extract(epoch FROM greatest(b.tat, $2) + make_interval(secs => $3) - $2)::float8 - 1.0 <= $4
         RETURNING extract(epoch FROM tat - $2)::float8 - 1.0",
    )
    .bind(key(provider))
    .bind(now)
    .bind(emission)
    .bind(max_wait)
    .fetch_optional(pool)
    .await?;
    if let Some(wait) = reserved {
        return Ok(Slot::After(Duration::from_secs_f64(wait.max(0.0))));
    }
    let frees_in: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM tat - $2)::float8 - 1.0 FROM throttle_buckets WHERE key = $1")
            .bind(key(provider))
            .bind(now)
            .fetch_optional(pool)
            .await?
            .unwrap_or(0.0);
    Ok(Slot::Full { frees_in: Duration::from_secs_f64((frees_in + emission - max_wait).max(emission)) })
}
