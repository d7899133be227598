//! The cross-process layer: the same buckets taken in PostgreSQL
//! (`verifyd_throttle_take`, migration 0005), inside the transaction that
//! records the send or the check, or alone for the rows every send of a
//! tenant shares; so the answer holds across any number of processes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::Throttled;
use super::buckets::Bucket;

/// The cross-process answer, inside the transaction that will record the send
/// or the check: takes one cell from every bucket, or from none.
pub async fn enforce_in_tx(
    conn: &mut PgConnection,
    buckets: &[Bucket],
    now: DateTime<Utc>,
) -> Result<Result<(), Throttled>, sqlx::Error> {
    take(conn, "SELECT refused_by, wait_secs FROM verifyd_throttle_take($1, $2, $3, $4)", buckets, 1, now).await
}

/// Takes `cells` cells from every bucket of `buckets` (all of them from all,
/// or nothing) in one statement, its own transaction, committed without
/// waiting for the WAL flush (`synchronous_commit = off`, set for that
/// transaction only): rows every send of a tenant shares are locked for one
/// statement rather than for a create's whole transaction and its flush. A
/// crash of PostgreSQL may forget the last fraction of a second of takes: the
/// limit is then briefly looser, never stricter. A lease (`lease.rs`) takes
/// several cells ahead; hand unused ones back with [`give_back`].
pub async fn take_alone(
    pool: &sqlx::PgPool,
    buckets: &[Bucket],
    cells: u32,
    now: DateTime<Utc>,
) -> Result<Result<(), Throttled>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let sql = "SELECT t.refused_by, t.wait_secs
               FROM set_config('synchronous_commit', 'off', true), verifyd_throttle_take($1, $2, $3, $4) AS t";
    take(&mut conn, sql, buckets, cells, now).await
}

async fn take(
    conn: &mut PgConnection,
    sql: &'static str,
    buckets: &[Bucket],
    cells: u32,
    now: DateTime<Utc>,
) -> Result<Result<(), Throttled>, sqlx::Error> {
    if buckets.is_empty() {
        return Ok(Ok(()));
    }
    let keys: Vec<Vec<u8>> = buckets.iter().map(|b| b.key.to_vec()).collect();
    // Taking n cells is one take whose emission is n cells' worth.
    let emission: Vec<f64> = buckets.iter().map(|b| b.limit.emission().as_secs_f64() * f64::from(cells)).collect();
    let window: Vec<f64> = buckets.iter().map(|b| b.limit.window().as_secs_f64()).collect();
    let (refused_by, wait): (i32, f64) =
        sqlx::query_as(sql).bind(&keys).bind(&emission).bind(&window).bind(now).fetch_one(&mut *conn).await?;
    let Some(bucket) = usize::try_from(refused_by).ok().and_then(|i| i.checked_sub(1)).and_then(|i| buckets.get(i))
    else {
        return Ok(Ok(()));
    };
    Ok(Err(Throttled::counted(bucket.scope, Duration::from_secs_f64(wait.max(0.0)))))
}

/// Returns `cells` cells to each bucket (the inverse of a take; a bucket
/// never fills past full), rows locked in key order as the take locks them;
/// one statement, committed as [`take_alone`] commits.
pub async fn give_back(
    pool: &sqlx::PgPool,
    buckets: &[Bucket],
    cells: u32,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if buckets.is_empty() || cells == 0 {
        return Ok(());
    }
    let keys: Vec<Vec<u8>> = buckets.iter().map(|b| b.key.to_vec()).collect();
    let emission: Vec<f64> = buckets.iter().map(|b| b.limit.emission().as_secs_f64() * f64::from(cells)).collect();
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
