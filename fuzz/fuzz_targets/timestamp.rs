//! `Timestamp::parse` (RFC 3339, any offset): it refuses an RFC 3339 time only when the time
//! falls outside the years 0000 to 9999 in UTC; an accepted time is UTC with whole
//! microseconds, is the same instant as the input up to the dropped nanoseconds, and writes in
//! the envelope's format (`2023-07-06T12:01:19.769427Z`) a text that parses back to itself,
//! also as JSON. `Timestamp::from_datetime` never panics and always writes that format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use webhook_domain::{Timestamp, TimestampError};

fuzz_target!(|text: &str| {
    let parsed = OffsetDateTime::parse(text, &Rfc3339);
    if let Ok(original) = parsed {
        // Whatever `time` holds, converting it must not panic and must stay writable.
        let written = Timestamp::from_datetime(original).to_string();
        assert_eq!(
            Timestamp::parse(&written).map(|ts| ts.to_string()),
            Ok(written.clone())
        );
    }
    let ts = match Timestamp::parse(text) {
        Ok(ts) => ts,
        Err(TimestampError::OutOfRange) => {
            let original = parsed.expect("out of range, yet not RFC 3339");
            let year = original
                .checked_to_offset(time::UtcOffset::UTC)
                .map(|utc| utc.year());
            assert!(
                year.is_none_or(|y| !(0..=9999).contains(&y)),
                "{text:?} refused"
            );
            return;
        }
        Err(TimestampError::Syntax(_)) => {
            assert!(parsed.is_err(), "{text:?} refused as not RFC 3339");
            return;
        }
    };
    let at = ts.as_datetime();
    assert!(at.offset().is_utc(), "{text:?} kept offset {}", at.offset());
    assert_eq!(at.nanosecond() % 1_000, 0, "{text:?} kept nanoseconds");
    let original = OffsetDateTime::parse(text, &Rfc3339).expect("accepted text is RFC 3339");
    let dropped = original - at;
    assert!(
        dropped >= time::Duration::ZERO && dropped < time::Duration::MICROSECOND,
        "{text:?}: {original} became {at}"
    );

    let written = ts.to_string();
    assert_eq!(
        written.len(),
        "2023-07-06T12:01:19.769427Z".len(),
        "{written}"
    );
    assert!(written.ends_with('Z'), "{written}");
    assert_eq!(
        Timestamp::parse(&written),
        Ok(ts),
        "{text:?} wrote {written}"
    );
    let json = serde_json::to_string(&ts).expect("a timestamp serialises");
    assert_eq!(
        serde_json::from_str::<Timestamp>(&json).ok(),
        Some(ts),
        "{json}"
    );
});
