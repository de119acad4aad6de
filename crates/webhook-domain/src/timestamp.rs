//! The envelope's `ts`: RFC 3339, UTC, exactly six fractional digits, `Z`
//! (`2023-07-06T12:01:19.769427Z`), as the Identus agent writes it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

const ENVELOPE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// A point in time in UTC with microsecond precision: what the envelope can carry, no more.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Converts to UTC and truncates to whole microseconds.
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let utc = at.to_offset(UtcOffset::UTC);
        let micros = utc.microsecond();
        // `micros * 1000` is below one second, so the replacement cannot fail.
        Self(utc.replace_nanosecond(micros * 1_000).unwrap_or(utc))
    }

    /// Parses any RFC 3339 time, then normalises it as [`Timestamp::from_datetime`] does.
    pub fn parse(text: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(text, &Rfc3339).map(Self::from_datetime)
    }

    /// The time inside.
    pub fn as_datetime(&self) -> OffsetDateTime {
        self.0
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(at: OffsetDateTime) -> Self {
        Self::from_datetime(at)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(ENVELOPE_FORMAT) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(|e| {
            serde::de::Error::custom(format_args!(
                "ts: {e}; expected RFC 3339 such as 2023-07-06T12:01:19.769427Z"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_utc_with_six_digits_and_z() {
        let ts = Timestamp::from_datetime(datetime!(2023-07-06 12:01:19.769427 UTC));
        assert_eq!(ts.to_string(), "2023-07-06T12:01:19.769427Z");
        let whole = Timestamp::from_datetime(datetime!(2023-07-06 12:01:19 UTC));
        assert_eq!(whole.to_string(), "2023-07-06T12:01:19.000000Z");
    }

    #[test]
    fn converts_offsets_to_utc_and_truncates_nanoseconds() {
        let ts = Timestamp::from_datetime(datetime!(2023-07-06 14:01:19.769427999 +02:00));
        assert_eq!(ts.to_string(), "2023-07-06T12:01:19.769427Z");
    }

    #[test]
    fn parses_rfc3339_and_round_trips() {
        let ts = Timestamp::parse("2023-07-06T12:01:19.769427Z").unwrap();
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(json, "\"2023-07-06T12:01:19.769427Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
