//! Retry policies, from both doors: the JSON form the API and storage read (first input byte
//! even) and `RetryPolicy::new` with arbitrary fields (odd). The validator accepts exactly the
//! policies within the documented bounds, the JSON form round-trips, and every accepted policy's
//! schedule keeps its promises: waits never exceed `MAX_INTERVAL` (or the cap), the attempts
//! never exceed `max_attempts`, the next attempt is never before now nor before a `Retry-After`,
//! and never after the first due time plus `max_age`.
#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use time::macros::datetime;
use webhook_domain::limits::{MAX_AGE_LIMIT, MAX_ATTEMPTS_LIMIT, MAX_INTERVAL};
use webhook_domain::{Backoff, Jitter, RetryPolicy, add_saturating};

#[derive(Debug, Arbitrary)]
enum Shape {
    Fixed { interval: Duration },
    Exponential { initial: Duration, cap: Duration },
    Schedule { delays: Vec<Duration> },
}

#[derive(Debug, Arbitrary)]
struct Fields {
    shape: Shape,
    max_attempts: u32,
    max_age: Option<Duration>,
}

/// The bounds of `RetryPolicy::new`, stated again as the oracle.
fn within_bounds(fields: &Fields) -> bool {
    let interval_ok = |d: &Duration| *d <= MAX_INTERVAL;
    let backoff_ok = match &fields.shape {
        Shape::Fixed { interval } => interval_ok(interval),
        Shape::Exponential { initial, cap } => {
            interval_ok(initial) && interval_ok(cap) && cap >= initial
        }
        Shape::Schedule { delays } => {
            (1..=MAX_ATTEMPTS_LIMIT as usize).contains(&delays.len())
                && delays.iter().all(interval_ok)
        }
    };
    backoff_ok
        && (1..=MAX_ATTEMPTS_LIMIT).contains(&fields.max_attempts)
        && fields
            .max_age
            .is_none_or(|age| !age.is_zero() && age <= MAX_AGE_LIMIT)
}

fn from_fields(fields: Fields) -> Option<RetryPolicy> {
    let expected = within_bounds(&fields);
    let backoff = match fields.shape {
        Shape::Fixed { interval } => Backoff::Fixed { interval },
        Shape::Exponential { initial, cap } => Backoff::Exponential { initial, cap },
        Shape::Schedule { delays } => Backoff::Schedule { delays },
    };
    let result = RetryPolicy::new(backoff, fields.max_attempts, fields.max_age);
    assert_eq!(result.is_ok(), expected, "{result:?}");
    if let Err(error) = &result {
        assert!(error.to_string().starts_with("retryPolicy."), "{error}");
    }
    result.ok()
}

fn from_json(json: &[u8]) -> Option<RetryPolicy> {
    let policy: RetryPolicy = serde_json::from_slice(json).ok()?;
    let written = serde_json::to_vec(&policy).expect("a policy serialises");
    let again: RetryPolicy = serde_json::from_slice(&written).expect("its JSON parses");
    assert_eq!(again, policy, "{}", String::from_utf8_lossy(&written));
    Some(policy)
}

const FIRST_DUE: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

fn check_schedule(policy: &RetryPolicy, u: &mut Unstructured<'_>) -> Option<()> {
    let max = policy.max_attempts();
    assert!((1..=MAX_ATTEMPTS_LIMIT).contains(&max));
    let ceiling = match policy.backoff() {
        Backoff::Exponential { cap, .. } => *cap,
        _ => MAX_INTERVAL,
    };
    let mut now = FIRST_DUE;
    for made in 0..=max {
        let jitter = Jitter::from_bits(u.arbitrary().ok()?);
        let retry_after: Option<Duration> = u.arbitrary().ok()?;
        let wait = policy.delay_after(made, jitter);
        assert!(
            wait <= ceiling,
            "wait {wait:?} after {made} over {ceiling:?}"
        );
        let next = policy.next_attempt(made, FIRST_DUE, now, retry_after, jitter);
        if made >= max {
            assert_eq!(next, None, "attempt {} allowed by {policy:?}", made + 1);
            break;
        }
        let Some(next) = next else {
            // Only the age limit may end the schedule before the attempts run out.
            let age = policy.max_age().expect("gave up early without a max age");
            assert!(
                add_saturating(now, wait.max(retry_after.unwrap_or_default()))
                    > add_saturating(FIRST_DUE, age)
            );
            break;
        };
        assert!(next >= now);
        assert!(next >= add_saturating(now, retry_after.unwrap_or_default()));
        assert!(next <= add_saturating(now, ceiling.max(retry_after.unwrap_or_default())));
        if let Some(age) = policy.max_age() {
            assert!(next <= add_saturating(FIRST_DUE, age));
        }
        now = next;
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&door, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    let policy = if door % 2 == 0 {
        from_json(rest)
    } else {
        Fields::arbitrary(&mut u).ok().and_then(from_fields)
    };
    if let Some(policy) = policy {
        check_schedule(&policy, &mut u);
    }
});
