//! `WholeSeconds`: a wait or a window as `Retry-After` and the `RateLimit` fields carry it.
//! Knows nothing of who makes a client wait or why.

use std::fmt;
use std::time::Duration;

/// A duration in whole seconds, rounded up, and never 0: a `Retry-After: 0` would invite a
/// retry straight into the same refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WholeSeconds(u64);

impl WholeSeconds {
    /// The number of seconds, at least 1.
    pub(crate) fn get(self) -> u64 {
        self.0
    }
}

impl From<Duration> for WholeSeconds {
    fn from(wait: Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self(secs.max(1))
    }
}

impl fmt::Display for WholeSeconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole_seconds(wait: Duration) -> u64 {
        WholeSeconds::from(wait).get()
    }

    #[test]
    fn waits_round_up_to_whole_seconds_and_never_to_zero() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
    }
}
