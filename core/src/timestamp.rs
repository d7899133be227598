//! One way to write a moment, in every answer, event and audit detail:
//! RFC 3339 in UTC with `Z` and exactly six fraction digits (what PostgreSQL
//! keeps), e.g. `2026-12-02T15:32:19.123456Z`. A value read back from the
//! database is written exactly as it was when it was first answered.
//!
//! Struct fields use it with `#[serde(with = "verifyd_core::timestamp")]` (or
//! `timestamp::option` for an `Option`); JSON built by hand uses [`format`].
//!
//! [`now`] is verifyd's one clock. An edge (an HTTP handler, the AMQP intake,
//! a timer's tick) reads it once and passes the moment in; the core never reads
//! the time itself. `clippy.toml` (in `core/` and `services/`) refuses
//! `Utc::now()` anywhere else.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// The current moment at the precision PostgreSQL keeps (microseconds), so
/// what a caller is answered now equals what it reads back later.
#[allow(clippy::disallowed_methods)] // the one place that reads the system clock
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// `2026-12-02T15:32:19.123456Z`: sub-microsecond digits are dropped.
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*t))
}

/// Any RFC 3339 moment (what [`format`] writes, and older records).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    DateTime::<Utc>::deserialize(d)
}

/// The same for an optional moment: `null` when absent.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::format(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn always_six_digits_and_z() {
        let whole = Utc.with_ymd_and_hms(2026, 12, 2, 15, 32, 19).unwrap();
        assert_eq!(format(whole), "2026-12-02T15:32:19.000000Z");
        let nanos = whole + chrono::TimeDelta::nanoseconds(123_456_789);
        assert_eq!(format(nanos), "2026-12-02T15:32:19.123456Z");
        let millis = whole + chrono::TimeDelta::milliseconds(120);
        assert_eq!(format(millis), "2026-12-02T15:32:19.120000Z");
    }

    #[test]
    fn reads_what_it_writes_and_offsets() {
        let t: DateTime<Utc> = deserialize(serde_json::json!("2026-12-02T15:32:19.123456Z")).unwrap();
        assert_eq!(format(t), "2026-12-02T15:32:19.123456Z");
        let t: DateTime<Utc> = deserialize(serde_json::json!("2026-12-02T16:32:19+01:00")).unwrap();
        assert_eq!(format(t), "2026-12-02T15:32:19.000000Z");
    }
}
