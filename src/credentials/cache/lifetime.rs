//! When a cached credential may still be served and when to start renewing it, with jitter so a
//! burst of entries does not renew all at once. Pure timing: it holds no credential.

use std::time::Duration;

use tokio::time::Instant;

/// How far a refresh moment may stray from `refresh_fraction`, as a share of it: entries
/// filled in the same burst then renew spread out instead of all at once.
const JITTER: f64 = 0.1;

/// When a cached credential may be served and when to renew it, on the runtime's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lifetime {
    /// Served before this; from then on less than the minimum is left.
    pub(super) usable_until: Instant,
    /// A request from this moment on starts a refresh in the background.
    pub(super) refresh_at: Instant,
    /// After a failed refresh, the next attempt waits this long.
    pub(super) retry_every: Duration,
}

impl Lifetime {
    /// The lifetime of a credential fetched at `now` that expires after `life`. `None` when
    /// it has no more than `min_remaining` left: it goes to the requests that waited for
    /// it, and is never kept. `jitter` is uniform in `[-1, 1]`.
    pub(super) fn new(
        now: Instant,
        life: Duration,
        min_remaining: Duration,
        refresh_fraction: f64,
        jitter: f64,
    ) -> Option<Self> {
        let window = life.checked_sub(min_remaining).filter(|w| !w.is_zero())?;
        let fraction = (refresh_fraction * (1.0 + JITTER * jitter.clamp(-1.0, 1.0))).min(0.99);
        Some(Self {
            usable_until: now + window,
            refresh_at: now + window.mul_f64(fraction),
            retry_every: (window / 10).clamp(Duration::from_secs(1), Duration::from_secs(30)),
        })
    }

    /// Whether it may still be handed out.
    pub(super) fn usable(&self, now: Instant) -> bool {
        now < self.usable_until
    }

    /// Whether a request now should start renewing it.
    pub(super) fn due(&self, now: Instant) -> bool {
        now >= self.refresh_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(300);

    #[test]
    fn refreshes_around_the_fraction_of_the_time_it_may_be_served() {
        let now = Instant::now();
        let life = Duration::from_secs(900);
        for (jitter, expected) in [(0.0, 300), (1.0, 330), (-1.0, 270)] {
            let l = Lifetime::new(now, life, MIN, 0.5, jitter).unwrap();
            assert_eq!(l.usable_until, now + Duration::from_secs(600));
            assert_eq!(l.refresh_at, now + Duration::from_secs(expected));
        }
    }

    #[test]
    fn the_refresh_always_comes_before_the_entry_stops_being_served() {
        let now = Instant::now();
        let l = Lifetime::new(now, Duration::from_secs(1000), MIN, 0.95, 1.0).unwrap();
        assert!(l.refresh_at < l.usable_until);
    }

    #[test]
    fn a_credential_with_no_more_than_the_minimum_left_is_not_kept() {
        let now = Instant::now();
        assert_eq!(Lifetime::new(now, MIN, MIN, 0.5, 0.0), None);
        assert_eq!(Lifetime::new(now, Duration::ZERO, MIN, 0.5, 0.0), None);
        assert!(Lifetime::new(now, MIN + Duration::from_secs(1), MIN, 0.5, 0.0).is_some());
    }

    #[test]
    fn usable_and_due_follow_the_clock() {
        let now = Instant::now();
        let l = Lifetime::new(now, Duration::from_secs(900), MIN, 0.5, 0.0).unwrap();
        assert!(l.usable(now) && !l.due(now));
        assert!(l.usable(now + Duration::from_secs(300)) && l.due(now + Duration::from_secs(300)));
        assert!(!l.usable(now + Duration::from_secs(600)));
    }

    #[test]
    fn failed_refreshes_are_retried_at_a_tenth_of_the_window_within_bounds() {
        let now = Instant::now();
        let retry = |life| {
            Lifetime::new(now, Duration::from_secs(life), MIN, 0.5, 0.0)
                .unwrap()
                .retry_every
        };
        assert_eq!(retry(900), Duration::from_secs(30));
        assert_eq!(retry(400), Duration::from_secs(10));
        assert_eq!(retry(301), Duration::from_secs(1));
    }
}
