//! Failed authentications counted per client address, so that one address cannot guess keys
//! at the speed of the server: after `limit` failures (401s) within `window`, the address gets
//! 429 until that window ends, before any key is looked up.
//!
//! The client is the TCP peer; `X-Forwarded-For` is not trusted (a client could name any
//! address in it). IPv6 clients are counted per /64, the block one host usually holds, and an
//! IPv4-mapped peer as its IPv4 address. Successful calls are never counted.
//!
//! What it must not do: grow without bound (at most [`MAX_TRACKED`] addresses are remembered;
//! expired windows are dropped first, then the oldest). It never reads the clock itself: the
//! callers pass `now`, so the tests below run whole windows without sleeping.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered at most: about 40 bytes each, so well under a megabyte.
pub(crate) const MAX_TRACKED: usize = 16_384;

/// The failure windows of recent client addresses.
#[derive(Debug)]
pub(crate) struct AuthFailures {
    /// Failures allowed per window; 0 turns the limit off.
    limit: u32,
    window: Duration,
    max_tracked: usize,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

/// One address's failures since `started`.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl AuthFailures {
    /// At most `limit` failures per address within `window`; `limit` 0 turns the limit off.
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self::bounded(limit, window, MAX_TRACKED)
    }

    fn bounded(limit: u32, window: Duration, max_tracked: usize) -> Self {
        Self {
            limit,
            window,
            max_tracked,
            windows: Mutex::default(),
        }
    }

    /// `Err(wait)` when `client` has used up its failures and its window ends in `wait`.
    pub(crate) fn admit(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.limit == 0 {
            return Ok(());
        }
        let key = counted_as(client);
        let Ok(windows) = self.windows.lock() else {
            return Ok(());
        };
        match windows.get(&key) {
            Some(w) if w.failures >= self.limit => {
                let ends = w.started + self.window;
                if ends > now { Err(ends - now) } else { Ok(()) }
            }
            _ => Ok(()),
        }
    }

    /// Counts one failed authentication of `client`.
    pub(crate) fn record(&self, client: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let key = counted_as(client);
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        if !windows.contains_key(&key) && windows.len() >= self.max_tracked {
            let window = self.window;
            windows.retain(|_, w| now.saturating_duration_since(w.started) < window);
            if windows.len() >= self.max_tracked {
                // Still full of live windows: the oldest makes room, so the newest guessers
                // stay counted.
                if let Some(oldest) = windows
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(ip, _)| *ip)
                {
                    windows.remove(&oldest);
                }
            }
        }
        let entry = windows.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.saturating_duration_since(entry.started) >= self.window {
            *entry = Window {
                started: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.windows.lock().map(|w| w.len()).unwrap_or_default()
    }
}

/// The key an address is counted under: IPv4 as is (also when mapped into IPv6), IPv6 by its
/// /64 prefix.
fn counted_as(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn the_failure_after_the_limit_is_refused_until_the_window_ends() {
        let failures = AuthFailures::new(3, WINDOW);
        let start = Instant::now();
        let client = ip("192.0.2.7");
        for n in 0..3 {
            assert_eq!(failures.admit(client, start), Ok(()), "failure {n}");
            failures.record(client, start + Duration::from_secs(n));
        }
        let later = start + Duration::from_secs(10);
        assert_eq!(failures.admit(client, later), Err(Duration::from_secs(50)));
        assert_eq!(failures.admit(ip("192.0.2.8"), later), Ok(()), "another");
        assert_eq!(
            failures.admit(client, start + WINDOW),
            Ok(()),
            "window over"
        );
        // A new window starts with the next failure.
        failures.record(client, start + WINDOW);
        assert_eq!(failures.admit(client, start + WINDOW), Ok(()));
    }

    #[test]
    fn a_limit_of_zero_turns_counting_off() {
        let failures = AuthFailures::new(0, WINDOW);
        let now = Instant::now();
        for _ in 0..100 {
            failures.record(ip("192.0.2.7"), now);
        }
        assert_eq!(failures.admit(ip("192.0.2.7"), now), Ok(()));
        assert_eq!(failures.tracked(), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ones_as_ipv4() {
        let failures = AuthFailures::new(2, WINDOW);
        let now = Instant::now();
        failures.record(ip("2001:db8:1:2::1"), now);
        failures.record(ip("2001:db8:1:2:ffff::9"), now);
        assert!(failures.admit(ip("2001:db8:1:2::77"), now).is_err());
        assert_eq!(failures.admit(ip("2001:db8:1:3::1"), now), Ok(()));
        failures.record(ip("::ffff:192.0.2.1"), now);
        failures.record(ip("192.0.2.1"), now);
        assert!(failures.admit(ip("192.0.2.1"), now).is_err());
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let failures = AuthFailures::bounded(1, WINDOW, 100);
        let start = Instant::now();
        for n in 0..1000u32 {
            let client = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            failures.record(client, start + Duration::from_millis(u64::from(n)));
            assert!(failures.tracked() <= 100);
        }
        // The newest addresses are still limited; the oldest made room.
        let last = start + Duration::from_millis(999);
        assert!(failures.admit(ip("10.0.3.231"), last).is_err());
        assert_eq!(failures.admit(ip("10.0.0.0"), last), Ok(()));
        // Once their windows are over, old entries are dropped before anything live.
        let much_later = start + WINDOW * 2;
        failures.record(ip("192.0.2.1"), much_later);
        assert_eq!(failures.tracked(), 1);
    }
}
