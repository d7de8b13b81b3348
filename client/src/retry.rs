//! When to ask the broker again after a 429 or 503: as `Retry-After` says when it says so,
//! otherwise after an exponential, jittered backoff; never more than [`MAX_ATTEMPTS`] times
//! and never past the call's deadline.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

/// Attempts per call, the first included.
pub(crate) const MAX_ATTEMPTS: u32 = 5;
/// The first backoff when the broker gives no `Retry-After`; it doubles per attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// No single wait is longer, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// How long `Retry-After` (RFC 9110 §10.2.3) asks to wait at `now`: delay-seconds or an
/// HTTP-date; a date in the past means at once. `None` when the value is neither.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly many digits are still "a long time", not "no advice".
        return Some(value.parse().map_or(MAX_WAIT, Duration::from_secs));
    }
    let date = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    let now = DateTime::<Utc>::from(now);
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

/// The wait before attempt `attempt + 1` after attempt `attempt` (counting from 1) was
/// answered 429 or 503, or `None` when no attempt is left or the wait would end after
/// `remaining`. `jitter` in [0, 1) spreads clients that failed together.
pub(crate) fn next_wait(
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
    remaining: Duration,
) -> Option<Duration> {
    if attempt >= MAX_ATTEMPTS {
        return None;
    }
    let wait = match retry_after {
        Some(advice) => advice,
        None => {
            let backoff = FIRST_BACKOFF.saturating_mul(1 << (attempt - 1).min(16));
            // Half the backoff fixed and half random ("equal jitter").
            backoff / 2 + backoff.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
        }
    }
    .min(MAX_WAIT);
    (wait < remaining).then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().into()
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_WAIT)
        );
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let now = at("2026-11-23T21:04:05Z");
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 21:04:35 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 21:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn unreadable_retry_after_is_no_advice() {
        let now = SystemTime::now();
        for value in ["", "-1", "1.5", "soon", "Mon, 99 Nov 2026"] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn the_advice_is_followed_within_the_bounds() {
        let plenty = Duration::from_secs(600);
        assert_eq!(
            next_wait(1, Some(Duration::from_secs(2)), 0.9, plenty),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            next_wait(1, Some(Duration::from_secs(3600)), 0.0, plenty),
            Some(MAX_WAIT)
        );
        // A wait the deadline cannot hold is not started.
        assert_eq!(
            next_wait(1, Some(Duration::from_secs(5)), 0.0, Duration::from_secs(4)),
            None
        );
        assert_eq!(
            next_wait(MAX_ATTEMPTS, Some(Duration::ZERO), 0.0, plenty),
            None
        );
    }

    #[test]
    fn without_advice_the_backoff_doubles_with_jitter() {
        let plenty = Duration::from_secs(600);
        let waits: Vec<Duration> = (1..MAX_ATTEMPTS)
            .map(|attempt| next_wait(attempt, None, 0.0, plenty).unwrap())
            .collect();
        assert_eq!(
            waits,
            [125, 250, 500, 1000].map(Duration::from_millis).to_vec()
        );
        assert_eq!(
            next_wait(1, None, 0.999_999, plenty).unwrap().as_millis(),
            249
        );
    }
}
