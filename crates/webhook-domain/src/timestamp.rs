//! The envelope's `ts`: RFC 3339, UTC, exactly six fractional digits, `Z`
//! (`2023-07-06T12:01:19.769427Z`), as the Identus agent writes it.
//!
//! RFC 3339 writes four-digit years, so a `Timestamp` lies in the years 0000 to 9999 in UTC:
//! whatever it holds can be written and read back.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::macros::{datetime, format_description};
use time::{OffsetDateTime, UtcOffset};

const ENVELOPE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The first and last instants RFC 3339 can write in UTC.
const EARLIEST: OffsetDateTime = datetime!(0000-01-01 00:00 UTC);
const LATEST: OffsetDateTime = datetime!(9999-12-31 23:59:59.999_999_999 UTC);

/// Why a text is not a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimestampError {
    #[error("{0}")]
    Syntax(#[from] time::error::Parse),
    /// Valid where it was written, but its offset carries it out of the years 0000 to 9999 in
    /// UTC (`9999-12-31T23:30:00-01:00`).
    #[error("is outside the years 0000 to 9999 once converted to UTC")]
    OutOfRange,
}

/// A point in time in UTC with microsecond precision: what the envelope can carry, no more.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Converts to UTC and truncates to whole microseconds. A time outside the years 0000 to
    /// 9999 in UTC becomes the nearest end of that range (only times from a corrupt source or a
    /// hostile offset get there).
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        // `to_offset` panics when UTC falls outside what `time` represents, which an offset can
        // cause at the very ends of the range.
        let utc = match at.checked_to_offset(UtcOffset::UTC) {
            Some(utc) => utc.clamp(EARLIEST, LATEST),
            None if at.offset().is_negative() => LATEST,
            None => EARLIEST,
        };
        let micros = utc.microsecond();
        // `micros * 1000` is below one second, so the replacement cannot fail.
        Self(utc.replace_nanosecond(micros * 1_000).unwrap_or(utc))
    }

    /// Parses any RFC 3339 time, then normalises it as [`Timestamp::from_datetime`] does.
    ///
    /// # Errors
    /// [`TimestampError::Syntax`] for text that is not RFC 3339, and
    /// [`TimestampError::OutOfRange`] for a time outside the years 0000 to 9999 in UTC.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let at = OffsetDateTime::parse(text, &Rfc3339)?;
        match at.checked_to_offset(UtcOffset::UTC) {
            Some(utc) if (EARLIEST..=LATEST).contains(&utc) => Ok(Self::from_datetime(utc)),
            _ => Err(TimestampError::OutOfRange),
        }
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

    // Caught by the `timestamp` fuzz target's round-trip property: an offset can carry a time
    // that is valid where it was written past the year 9999 (or before 0000) in UTC.
    #[test]
    fn parse_refuses_times_outside_four_digit_years_in_utc() {
        for text in ["9999-12-31T23:30:00-01:00", "0000-01-01T00:30:00+01:00"] {
            assert_eq!(
                Timestamp::parse(text),
                Err(TimestampError::OutOfRange),
                "{text}"
            );
        }
        let message = serde_json::from_str::<Timestamp>("\"9999-12-31T23:30:00-01:00\"")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("ts: "), "{message}");
        assert!(message.contains("0000 to 9999"), "{message}");
        let latest = Timestamp::parse("9999-12-31T23:30:00+01:00").unwrap();
        assert_eq!(latest.to_string(), "9999-12-31T22:30:00.000000Z");
        let earliest = Timestamp::parse("0000-01-01T00:00:00Z").unwrap();
        assert_eq!(earliest.to_string(), "0000-01-01T00:00:00.000000Z");
        assert_eq!(Timestamp::parse(&earliest.to_string()), Ok(earliest));
    }

    #[test]
    fn from_datetime_clamps_to_what_rfc3339_can_write() {
        let cases = [
            (
                datetime!(9999-12-31 23:30 -01:00),
                "9999-12-31T23:59:59.999999Z",
            ),
            (
                datetime!(0000-01-01 00:30 +01:00),
                "0000-01-01T00:00:00.000000Z",
            ),
            (
                datetime!(-0001-06-01 00:00 UTC),
                "0000-01-01T00:00:00.000000Z",
            ),
        ];
        for (at, expected) in cases {
            let ts = Timestamp::from_datetime(at);
            assert_eq!(ts.to_string(), expected, "{at}");
            assert_eq!(Timestamp::parse(expected), Ok(ts));
        }
    }
}
