//! `parse_retry_after` on a target's `Retry-After` header: delay-seconds read as that many
//! seconds, an IMF-fixdate written for any instant reads back as the time until it (zero for a
//! past one), and any other text is handled without a panic.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use time::macros::{datetime, format_description};
use time::{OffsetDateTime, PrimitiveDateTime};
use webhook_domain::parse_retry_after;

const BASE: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

fuzz_target!(|input: (i32, u32, &str)| {
    let (now_offset, seconds, text) = input;
    let now = BASE + time::Duration::seconds(i64::from(now_offset));

    if let Some(wait) = parse_retry_after(text, now) {
        let trimmed = text.trim();
        if let Ok(secs) = trimmed.parse::<u64>() {
            assert_eq!(wait, Duration::from_secs(secs), "{text:?}");
        }
    }

    assert_eq!(
        parse_retry_after(&seconds.to_string(), now),
        Some(Duration::from_secs(u64::from(seconds)))
    );
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    // An instant up to about 68 years either side of `now`.
    let at = now + time::Duration::seconds(i64::from(seconds as i32));
    let date = PrimitiveDateTime::new(at.date(), at.time())
        .format(format)
        .expect("an IMF-fixdate formats");
    let expected = Duration::try_from(at - now).unwrap_or(Duration::ZERO);
    assert_eq!(parse_retry_after(&date, now), Some(expected), "{date}");
});
