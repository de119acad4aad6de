//! Latency percentiles and rates: the arithmetic of the report, kept apart from the I/O.

use serde::Serialize;

/// The nearest-rank percentile `p` (0 to 100) of ascending `sorted` values: the smallest value
/// with at least `p` percent of the values at or below it. `None` for no values.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// End-to-end latencies (publish start to receipt) in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Latency {
    pub(crate) samples: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latency {
    /// The summary of latencies given in nanoseconds, in any order; `None` for none.
    pub(crate) fn of(mut nanos: Vec<u64>) -> Option<Self> {
        nanos.sort_unstable();
        let ms = |p: f64| percentile(&nanos, p).map(|n| n as f64 / 1e6);
        Some(Self {
            samples: nanos.len(),
            p50_ms: ms(50.0)?,
            p95_ms: ms(95.0)?,
            p99_ms: ms(99.0)?,
            max_ms: ms(100.0)?,
        })
    }
}

/// `count` per second over `nanos` nanoseconds; `None` over no time.
pub(crate) fn per_second(count: u64, nanos: u64) -> Option<f64> {
    (nanos > 0).then(|| count as f64 * 1e9 / nanos as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 95.0), Some(95));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&values, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn latency_summary_sorts_and_converts_to_milliseconds() {
        let nanos = vec![4_000_000, 1_000_000, 3_000_000, 2_000_000];
        let latency = Latency::of(nanos).unwrap();
        assert_eq!(latency.samples, 4);
        assert!((latency.p50_ms - 2.0).abs() < 1e-9);
        assert!((latency.p99_ms - 4.0).abs() < 1e-9);
        assert!((latency.max_ms - 4.0).abs() < 1e-9);
        assert_eq!(Latency::of(Vec::new()), None);
    }

    #[test]
    fn rates_need_time() {
        assert_eq!(per_second(500, 250_000_000), Some(2000.0));
        assert_eq!(per_second(5, 0), None);
    }
}
