//! The SMS-pumping guard. Fraudsters make a service send codes to number ranges
//! whose operator pays them per message, and never type a code in. So: per
//! tenant and destination prefix, count verifications sent and approved over a
//! sliding window (`prefix_stats`, one row per minute, added to in batches by
//! `tally.rs`, or in the transaction of the send and of the approval when the
//! grace period is 0). When the sends reach a volume
//! floor and the share approved is below a threshold, the prefix is blocked for
//! the tenant (`prefix_blocks`) until the block runs out or an operator lifts it.
//!
//! Approvals count in the minute their verification was sent (its cohort), so
//! the ratio compares like with like; sends younger than `grace_secs` are left
//! out, because nobody has typed their code yet. Blocking and lifting clear the
//! prefix's counts: what led to a block is not held against the prefix again.
//!
//! Sends to one prefix in one minute update one row. Counted in their own
//! transactions (grace 0), they take turns on it and each counts the ones
//! before it; counted by the tally, a flush adds a batch of them at once.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use verifyd_providers::domain::PhoneNumber;

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PumpingSettings {
    pub enabled: bool,
    /// The sliding window the conversion is measured over.
    pub window_secs: u64,
    /// National digits after the country code that make a prefix
    /// (4: `+44 7911…` and `+1 4155…` are one prefix each).
    pub prefix_digits: u8,
    /// Verifications sent in the window before a prefix can be judged.
    pub min_volume: u32,
    /// Below this share of approved verifications, the prefix is blocked.
    pub min_conversion: f64,
    pub block_secs: u64,
    /// Sends younger than this are not judged yet (people take time to type).
    pub grace_secs: u64,
}

impl Default for PumpingSettings {
    fn default() -> Self {
        PumpingSettings {
            enabled: true,
            window_secs: 3_600,
            prefix_digits: 4,
            min_volume: 30,
            min_conversion: 0.2,
            block_secs: 3_600,
            grace_secs: 60,
        }
    }
}

impl PumpingSettings {
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.window_secs < 60 {
            return Err("abuse.pumping.window_secs must be at least 60 (the buckets are minutes)");
        }
        if self.prefix_digits > 8 {
            return Err("abuse.pumping.prefix_digits must be 0 to 8");
        }
        if self.min_volume == 0 {
            return Err("abuse.pumping.min_volume must be at least 1");
        }
        if !(self.min_conversion > 0.0 && self.min_conversion <= 1.0) {
            return Err("abuse.pumping.min_conversion must be above 0 and at most 1");
        }
        if self.block_secs == 0 {
            return Err("abuse.pumping.block_secs must be at least 1");
        }
        if self.grace_secs >= self.window_secs {
            return Err("abuse.pumping.grace_secs must be shorter than window_secs");
        }
        Ok(())
    }

    pub fn window(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.window_secs).unwrap_or(i64::MAX / 1_000))
    }

    fn grace(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.grace_secs).unwrap_or(0))
    }

    /// The latest minute bucket whose sends are all older than the grace
    /// period. A bucket is labelled with its first second but holds a minute
    /// of sends, so it is judged only once its last second is `grace` old
    /// (with no grace, every bucket, this one included).
    pub fn judged_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.grace_secs == 0 { now } else { now - self.grace() - chrono::Duration::minutes(1) }
    }

    fn block(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.block_secs).unwrap_or(i64::MAX / 1_000))
    }
}

/// A destination prefix: `+`, the country calling code and the first national
/// digits (`+447911`). Never a whole number unless the number is that short.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Prefix(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a prefix is '+' and 1 to 15 digits")]
pub struct PrefixError;

impl Prefix {
    /// The prefix of `phone`: its country code and `digits` national digits.
    pub fn of(phone: &PhoneNumber, digits: u8) -> Prefix {
        let all = phone.digits();
        let code_len = phonenumber::parse(None, phone.e164())
            .map(|p| p.code().value().to_string().len())
            .unwrap_or_else(|_| country_code_len(all));
        let end = (code_len + usize::from(digits)).min(all.len());
        Prefix(format!("+{}", &all[..end]))
    }

    /// A prefix as an operator types it (`+447911` or `447911`).
    pub fn parse(raw: &str) -> Result<Prefix, PrefixError> {
        let digits = raw.trim().strip_prefix('+').unwrap_or(raw.trim());
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PrefixError);
        }
        Ok(Prefix(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The country code length of E.164 digits the numbering plan could not parse
/// (a stored number after a plan change): ITU assigns 1-digit codes only to
/// zones 1 and 7, and 2-digit codes to the listed ones; the rest have 3.
fn country_code_len(digits: &str) -> usize {
    const TWO: [&str; 44] = [
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49",
        "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81", "82", "84",
        "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if TWO.iter().any(|c| digits.starts_with(c)) {
        2
    } else {
        3
    }
}

/// Verifications sent to a prefix in the window, and how many of them were approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conversion {
    pub sent: i64,
    pub approved: i64,
}

impl Conversion {
    /// Approved over sent; 1 with nothing sent.
    pub fn rate(&self) -> f64 {
        if self.sent <= 0 { 1.0 } else { self.approved as f64 / self.sent as f64 }
    }

    /// Enough volume, and too few approved: block.
    pub fn trips(&self, settings: &PumpingSettings) -> bool {
        self.sent >= i64::from(settings.min_volume) && self.rate() < settings.min_conversion
    }
}

/// The start of `t`'s minute: the bucket it counts in.
pub fn minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(t)
}

/// A block on a prefix for a tenant, as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Block {
    pub prefix: String,
    pub country: Option<String>,
    pub blocked_at: DateTime<Utc>,
    pub blocked_until: DateTime<Utc>,
    pub lifted_at: Option<DateTime<Utc>>,
    pub sent: i32,
    pub approved: i32,
}

impl Block {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.lifted_at.is_none() && self.blocked_until > now
    }
}

/// The block in force on a prefix, if any.
pub async fn active_block(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    prefix: &Prefix,
    now: DateTime<Utc>,
) -> Result<Option<Block>, sqlx::Error> {
    sqlx::query_as(
        "SELECT prefix, country, blocked_at, blocked_until, lifted_at, sent, approved
         FROM prefix_blocks WHERE tenant_id = $1 AND prefix = $2 AND lifted_at IS NULL AND blocked_until > $3",
    )
    .bind(tenant_id)
    .bind(prefix.as_str())
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// What a send to the prefix is judged by, in one read.
pub struct Looked {
    /// The tenant's geo lists (read here to save the send a round trip).
    pub geo: super::geo::GeoPermissions,
    /// The block in force on the prefix, if any.
    pub block: Option<Block>,
    /// The conversion of the judged part of the window (minutes whose sends
    /// are all older than the grace period).
    pub conversion: Conversion,
}

/// Reads [`Looked`] in one statement. It counts nothing: with a grace period
/// the send's own count goes through the batched tally.
pub async fn look(
    conn: &mut PgConnection,
    settings: &PumpingSettings,
    tenant_id: Uuid,
    prefix: &Prefix,
    now: DateTime<Utc>,
) -> Result<Looked, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        sent: i64,
        approved: i64,
        b_prefix: Option<String>,
        b_country: Option<String>,
        b_blocked_at: Option<DateTime<Utc>>,
        b_blocked_until: Option<DateTime<Utc>>,
        b_sent: Option<i32>,
        b_approved: Option<i32>,
        g_sms: Option<Vec<String>>,
        g_voice: Option<Vec<String>>,
        g_whatsapp: Option<Vec<String>>,
    }
    let row: Row = sqlx::query_as(
        "SELECT c.sent, c.approved, b.prefix AS b_prefix, b.country AS b_country, b.blocked_at AS b_blocked_at,
                b.blocked_until AS b_blocked_until, b.sent AS b_sent, b.approved AS b_approved,
                g.sms AS g_sms, g.voice AS g_voice, g.whatsapp AS g_whatsapp
         FROM (SELECT coalesce(sum(s.sent), 0)::bigint AS sent, coalesce(sum(s.approved), 0)::bigint AS approved
               FROM prefix_stats s
               WHERE s.tenant_id = $1 AND s.prefix = $2 AND s.minute >= $4 AND s.minute <= $5) c
         LEFT JOIN prefix_blocks b
             ON b.tenant_id = $1 AND b.prefix = $2 AND b.lifted_at IS NULL AND b.blocked_until > $3
         LEFT JOIN geo_permissions g ON g.tenant_id = $1",
    )
    .bind(tenant_id)
    .bind(prefix.as_str())
    .bind(now)
    .bind(minute(now - settings.window()))
    .bind(settings.judged_until(now))
    .fetch_one(conn)
    .await?;
    let block = match (row.b_prefix, row.b_blocked_at, row.b_blocked_until) {
        (Some(prefix), Some(blocked_at), Some(blocked_until)) => Some(Block {
            prefix,
            country: row.b_country,
            blocked_at,
            blocked_until,
            lifted_at: None,
            sent: row.b_sent.unwrap_or_default(),
            approved: row.b_approved.unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(Looked {
        geo: super::geo::GeoPermissions::from_stored(row.g_sms, row.g_voice, row.g_whatsapp),
        block,
        conversion: Conversion { sent: row.sent, approved: row.approved },
    })
}

/// Counts one verification sent now, and answers the conversion of the judged
/// part of the window: minutes whose sends are all older than the grace period
/// (this one included only when the grace period is 0).
pub async fn record_send(
    conn: &mut PgConnection,
    settings: &PumpingSettings,
    tenant_id: Uuid,
    prefix: &Prefix,
    now: DateTime<Utc>,
) -> Result<Conversion, sqlx::Error> {
    // The main query reads the table as it was before the CTE's upsert: this
    // minute's row is taken from the upsert, the others from the table.
    let (sent, approved): (i64, i64) = sqlx::query_as(
        "WITH up AS (
             INSERT INTO prefix_stats (tenant_id, prefix, minute, sent, approved) VALUES ($1, $2, $3, 1, 0)
             ON CONFLICT (tenant_id, prefix, minute) DO UPDATE SET sent = prefix_stats.sent + 1
             RETURNING minute, sent, approved)
         SELECT coalesce(sum(s.sent), 0)::bigint
                    + coalesce((SELECT sent FROM up WHERE minute >= $4 AND minute <= $5), 0),
                coalesce(sum(s.approved), 0)::bigint
                    + coalesce((SELECT approved FROM up WHERE minute >= $4 AND minute <= $5), 0)
         FROM prefix_stats s
         WHERE s.tenant_id = $1 AND s.prefix = $2 AND s.minute >= $4 AND s.minute <= $5 AND s.minute <> $3",
    )
    .bind(tenant_id)
    .bind(prefix.as_str())
    .bind(minute(now))
    .bind(minute(now - settings.window()))
    .bind(settings.judged_until(now))
    .fetch_one(conn)
    .await?;
    Ok(Conversion { sent, approved })
}

/// Counts an approval in the minute its verification was sent.
pub async fn record_approval(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    prefix: &Prefix,
    sent_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO prefix_stats (tenant_id, prefix, minute, sent, approved) VALUES ($1, $2, $3, 0, 1)
         ON CONFLICT (tenant_id, prefix, minute) DO UPDATE SET approved = prefix_stats.approved + 1",
    )
    .bind(tenant_id)
    .bind(prefix.as_str())
    .bind(minute(sent_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Blocks the prefix unless a block already stands (another transaction, in
/// any process, may have just written one): the conflict waits for it and
/// then leaves it alone. The block, when this call made it; its counts are
/// then cleared.
pub async fn block(
    conn: &mut PgConnection,
    settings: &PumpingSettings,
    tenant_id: Uuid,
    prefix: &Prefix,
    country: Option<&str>,
    conversion: Conversion,
    now: DateTime<Utc>,
) -> Result<Option<Block>, sqlx::Error> {
    let clamp = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
    let block: Option<Block> = sqlx::query_as(
        "INSERT INTO prefix_blocks (tenant_id, prefix, country, blocked_at, blocked_until, sent, approved)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, prefix) DO UPDATE SET country = EXCLUDED.country,
             blocked_at = EXCLUDED.blocked_at, blocked_until = EXCLUDED.blocked_until, lifted_at = NULL,
             sent = EXCLUDED.sent, approved = EXCLUDED.approved
         WHERE prefix_blocks.lifted_at IS NOT NULL OR prefix_blocks.blocked_until <= EXCLUDED.blocked_at
         RETURNING prefix, country, blocked_at, blocked_until, lifted_at, sent, approved",
    )
    .bind(tenant_id)
    .bind(prefix.as_str())
    .bind(country)
    .bind(now)
    .bind(now + settings.block())
    .bind(clamp(conversion.sent))
    .bind(clamp(conversion.approved))
    .fetch_optional(&mut *conn)
    .await?;
    if block.is_some() {
        clear(conn, tenant_id, prefix).await?;
    }
    Ok(block)
}

async fn clear(conn: &mut PgConnection, tenant_id: Uuid, prefix: &Prefix) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM prefix_stats WHERE tenant_id = $1 AND prefix = $2")
        .bind(tenant_id)
        .bind(prefix.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// A tenant's blocks in force, newest first.
pub async fn active_blocks(pool: &PgPool, tenant_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Block>, sqlx::Error> {
    sqlx::query_as(
        "SELECT prefix, country, blocked_at, blocked_until, lifted_at, sent, approved FROM prefix_blocks
         WHERE tenant_id = $1 AND lifted_at IS NULL AND blocked_until > $2
         ORDER BY blocked_at DESC, prefix",
    )
    .bind(tenant_id)
    .bind(now)
    .fetch_all(pool)
    .await
}

/// Lifts a block in force and clears the prefix's counts; `None` when there
/// is no block.
pub async fn lift(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    prefix: &Prefix,
    now: DateTime<Utc>,
) -> Result<Option<Block>, sqlx::Error> {
    let lifted: Option<Block> = sqlx::query_as(
        "UPDATE prefix_blocks SET lifted_at = $3
         WHERE tenant_id = $1 AND prefix = $2 AND lifted_at IS NULL AND blocked_until > $3
         RETURNING prefix, country, blocked_at, blocked_until, lifted_at, sent, approved",
    )
    .bind(tenant_id)
    .bind(prefix.as_str())
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if lifted.is_some() {
        clear(tx, tenant_id, prefix).await?;
    }
    Ok(lifted)
}

/// Deletes counts that left every window (a bounded batch).
pub async fn prune(pool: &PgPool, window: Duration) -> Result<(), sqlx::Error> {
    let before = crate::timestamp::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(1));
    sqlx::query(
        "DELETE FROM prefix_stats WHERE ctid IN (
             SELECT ctid FROM prefix_stats WHERE minute < $1 LIMIT 5000)",
    )
    .bind(minute(before))
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn phone(e164: &str) -> PhoneNumber {
        PhoneNumber::parse(e164).unwrap()
    }

    #[test]
    fn a_prefix_is_the_country_code_and_the_first_national_digits() {
        assert_eq!(Prefix::of(&phone("+447400123456"), 4).as_str(), "+447400");
        assert_eq!(Prefix::of(&phone("+14155552671"), 4).as_str(), "+14155");
        assert_eq!(Prefix::of(&phone("+353861234567"), 4).as_str(), "+3538612");
        assert_eq!(Prefix::of(&phone("+447400123456"), 0).as_str(), "+44");
        assert_eq!(Prefix::of(&phone("+447400123456"), 8).as_str(), "+4474001234");
        // Never longer than the number.
        let short = PhoneNumber::from_stored("+2901234").unwrap();
        assert_eq!(Prefix::of(&short, 8).as_str(), "+2901234");
    }

    #[test]
    fn stored_numbers_the_plan_cannot_parse_still_get_a_prefix() {
        assert_eq!(country_code_len("447911123456"), 2);
        assert_eq!(country_code_len("14155552671"), 1);
        assert_eq!(country_code_len("79161234567"), 1);
        assert_eq!(country_code_len("353861234567"), 3);
        assert_eq!(country_code_len("8821234567"), 3);
        let p = PhoneNumber::from_stored("+999123456789").unwrap();
        assert_eq!(Prefix::of(&p, 4).as_str(), "+9991234");
    }

    #[test]
    fn prefixes_typed_by_operators_parse() {
        assert_eq!(Prefix::parse("+447911").unwrap().as_str(), "+447911");
        assert_eq!(Prefix::parse("447911").unwrap().as_str(), "+447911");
        for bad in ["", "+", "+44 7911", "+44-7911", "abc", "+1234567890123456"] {
            assert_eq!(Prefix::parse(bad), Err(PrefixError), "{bad:?}");
        }
    }

    #[test]
    fn conversion_trips_only_with_volume_and_a_low_rate() {
        let s = PumpingSettings { min_volume: 30, min_conversion: 0.2, ..PumpingSettings::default() };
        let c = |sent, approved| Conversion { sent, approved };
        assert!(!c(29, 0).trips(&s), "below the volume floor");
        assert!(c(30, 0).trips(&s));
        assert!(c(30, 5).trips(&s), "5/30 = 0.17");
        assert!(!c(30, 6).trips(&s), "6/30 = 0.2 is not below 0.2");
        assert!(!c(100, 95).trips(&s));
        assert!(c(1000, 199).trips(&s));
        assert_eq!(c(0, 0).rate(), 1.0);
        assert_eq!(c(4, 1).rate(), 0.25);
    }

    #[test]
    fn a_block_stands_until_it_runs_out_or_is_lifted() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 30, 40).unwrap();
        assert_eq!(minute(now), Utc.with_ymd_and_hms(2026, 11, 23, 12, 30, 0).unwrap());
        let block = |until, lifted| Block {
            prefix: "+447911".into(),
            country: Some("GB".into()),
            blocked_at: Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap(),
            blocked_until: until,
            lifted_at: lifted,
            sent: 30,
            approved: 0,
        };
        let old = block(Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap(), None);
        assert!(!old.is_active(now));
        let lifted = block(
            Utc.with_ymd_and_hms(2026, 11, 23, 13, 0, 0).unwrap(),
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 12, 25, 30).unwrap()),
        );
        assert!(!lifted.is_active(now));
        let standing = block(Utc.with_ymd_and_hms(2026, 11, 23, 13, 0, 0).unwrap(), None);
        assert!(standing.is_active(now));
    }

    #[test]
    fn a_minute_is_judged_only_once_all_its_sends_are_past_the_grace() {
        let s = PumpingSettings { grace_secs: 60, ..PumpingSettings::default() };
        // Just after a minute turns, the minute before holds sends a second old.
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 7, 33, 0).unwrap() + chrono::Duration::milliseconds(100);
        let previous = Utc.with_ymd_and_hms(2026, 12, 2, 7, 32, 0).unwrap();
        assert!(previous > s.judged_until(now), "not judged yet");
        assert!(previous <= s.judged_until(now + chrono::Duration::seconds(60)), "judged a minute later");
        let none = PumpingSettings { grace_secs: 0, ..PumpingSettings::default() };
        assert_eq!(none.judged_until(now), now);
    }

    #[test]
    fn settings_are_checked() {
        assert!(PumpingSettings::default().validate().is_ok());
        let bad = [
            PumpingSettings { min_conversion: 0.0, ..Default::default() },
            PumpingSettings { min_conversion: 1.5, ..Default::default() },
            PumpingSettings { min_volume: 0, ..Default::default() },
            PumpingSettings { prefix_digits: 9, ..Default::default() },
            PumpingSettings { window_secs: 30, ..Default::default() },
            PumpingSettings { grace_secs: 3_600, ..Default::default() },
            PumpingSettings { block_secs: 0, ..Default::default() },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
    }
}
