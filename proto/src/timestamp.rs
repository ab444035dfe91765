//! `google.protobuf.Timestamp` with its canonical JSON form: RFC 3339 in UTC (`Z`), always
//! with nine fractional digits, e.g. `2026-11-30T12:00:00.000000042Z`.
//!
//! The generated code uses this type instead of `prost-types`' so the JSON mapping can be
//! implemented here (a foreign type could not get serde impls).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds and nanoseconds since the Unix epoch (UTC), as in `google/protobuf/timestamp.proto`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// 0 to 999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// From nanoseconds since the Unix epoch.
    pub fn from_unix_ns(ns: i128) -> Self {
        Timestamp {
            seconds: ns.div_euclid(1_000_000_000) as i64,
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn unix_ns(&self) -> i128 {
        i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// The instant, when it is a valid timestamp at or after the epoch.
    pub fn system_time(&self) -> Option<SystemTime> {
        let secs = u64::try_from(self.seconds).ok()?;
        let nanos = u32::try_from(self.nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)?;
        UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
    }

    /// RFC 3339, UTC, nanoseconds.
    pub fn to_rfc3339(&self) -> Option<String> {
        // humantime formats years 1970..=9999, the range wall clocks here can have.
        self.system_time()
            .filter(|t| {
                t.duration_since(UNIX_EPOCH)
                    .is_ok_and(|d| d.as_secs() < 253_402_300_800)
            })
            .map(|t| humantime::format_rfc3339_nanos(t).to_string())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.to_rfc3339().ok_or_else(|| {
            serde::ser::Error::custom(format!(
                "timestamp {}s {}ns is out of the RFC 3339 range",
                self.seconds, self.nanos
            ))
        })?;
        s.serialize_str(&text)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let t = humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)?;
        let since = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| serde::de::Error::custom("timestamp before 1970"))?;
        Ok(Timestamp {
            seconds: since.as_secs() as i64,
            nanos: since.subsec_nanos() as i32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_rfc3339_utc_with_nanoseconds() {
        let t = Timestamp::from_unix_ns(1_764_504_000_000_000_042);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#""2025-11-30T12:00:00.000000042Z""#);
        let back: Timestamp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.unix_ns(), 1_764_504_000_000_000_042);
        let whole = Timestamp::from_unix_ns(1_000_000_000);
        assert_eq!(
            serde_json::to_string(&whole).unwrap(),
            r#""1970-01-01T00:00:01.000000000Z""#
        );
    }

    #[test]
    fn out_of_range_is_an_error_not_a_wrong_date() {
        assert!(serde_json::to_string(&Timestamp::from_unix_ns(-1)).is_err());
        let bad = Timestamp {
            seconds: 1,
            nanos: 1_000_000_000,
        };
        assert!(serde_json::to_string(&bad).is_err());
    }
}
