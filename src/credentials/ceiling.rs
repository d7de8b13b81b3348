//! The upstream ceiling: at most so many calls to one AWS API at once and per second, so
//! that a burst of callers queues briefly here instead of becoming a throttling storm at AWS.
//!
//! Each key (an AWS account and region for ECR; the one STS endpoint) has its own lane: a
//! semaphore for the calls in flight and a GCRA rate limiter for the calls started per
//! second. A call waits for room at most `max_wait_ms`; beyond that it fails at once with
//! [`AwsErrorKind::Ceiling`], which the caller sees as 503 with `Retry-After`. Keys come from
//! the configured rules (roles' accounts, rules' regions), so the lanes stay few and are
//! never dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::CeilingConfig;
use super::{AwsError, AwsErrorKind};

/// Limits calls per key; cheap to share behind an `Arc`.
pub(super) struct Ceiling<K> {
    limits: CeilingConfig,
    lanes: Mutex<HashMap<K, Arc<Lane>>>,
}

struct Lane {
    in_flight: Arc<Semaphore>,
    started: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
}

/// Room for one call; dropping it frees the concurrency slot.
pub(super) struct Admission {
    _in_flight: OwnedSemaphorePermit,
}

impl<K: Hash + Eq + Clone> Ceiling<K> {
    pub(super) fn new(limits: CeilingConfig) -> Self {
        Self {
            limits,
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for room for one `operation` call under `key`, at most `max_wait_ms`.
    pub(super) async fn admit(
        &self,
        key: &K,
        operation: &'static str,
    ) -> Result<Admission, AwsError> {
        let lane = self.lane(key);
        let deadline = Instant::now() + Duration::from_millis(self.limits.max_wait_ms);
        let refused =
            |retry_after: Duration| AwsError::new(operation, AwsErrorKind::Ceiling { retry_after });
        // Concurrency first: a call that waits for a slot does not hold a rate cell meanwhile.
        let permit = tokio::time::timeout_at(deadline, lane.in_flight.clone().acquire_owned())
            .await
            .map_err(|_| refused(Duration::from_secs(1)))?
            .expect("the semaphore is never closed");
        loop {
            let clock = lane.started.clock();
            let wait = match lane.started.check() {
                Ok(()) => {
                    return Ok(Admission { _in_flight: permit });
                }
                Err(not_until) => not_until.wait_time_from(clock.now()),
            };
            if Instant::now() + wait > deadline {
                return Err(refused(wait));
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn lane(&self, key: &K) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().expect("no panics while holding the lock");
        lanes
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Lane::new(&self.limits)))
            .clone()
    }
}

impl Lane {
    fn new(limits: &CeilingConfig) -> Self {
        let at_least_one = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            in_flight: Arc::new(Semaphore::new(limits.max_concurrent as usize)),
            started: RateLimiter::direct(Quota::per_second(at_least_one(limits.per_second))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceiling(max_concurrent: u32, per_second: u32, max_wait_ms: u64) -> Ceiling<&'static str> {
        Ceiling::new(CeilingConfig {
            max_concurrent,
            per_second,
            max_wait_ms,
        })
    }

    #[tokio::test]
    async fn a_call_beyond_the_concurrency_waits_then_is_refused() {
        let ceiling = ceiling(1, 1000, 50);
        let held = ceiling.admit(&"a", "Op").await.expect("room for one");

        let refused = ceiling.admit(&"a", "Op").await.err().expect("no room");
        assert_eq!(refused.operation, "Op");
        assert_eq!(
            refused.kind,
            AwsErrorKind::Ceiling {
                retry_after: Duration::from_secs(1)
            }
        );

        // Another key has its own lane.
        ceiling.admit(&"b", "Op").await.expect("another lane");
        drop(held);
        ceiling
            .admit(&"a", "Op")
            .await
            .expect("the slot is free again");
    }

    #[tokio::test]
    async fn a_waiting_call_gets_the_slot_when_it_frees_in_time() {
        let ceiling = Arc::new(ceiling(1, 1000, 5_000));
        let held = ceiling.admit(&"a", "Op").await.unwrap();
        let waiter = tokio::spawn({
            let ceiling = ceiling.clone();
            async move { ceiling.admit(&"a", "Op").await.map(drop) }
        });
        tokio::task::yield_now().await;
        drop(held);
        waiter.await.unwrap().expect("admitted once the slot freed");
    }

    #[tokio::test]
    async fn calls_beyond_the_rate_are_refused_with_the_time_until_room() {
        let ceiling = ceiling(100, 1, 10);

        ceiling
            .admit(&"a", "Op")
            .await
            .expect("the first call of the second");
        let refused = ceiling
            .admit(&"a", "Op")
            .await
            .err()
            .expect("over the rate");
        let AwsErrorKind::Ceiling { retry_after } = refused.kind else {
            panic!("{refused:?}");
        };
        assert!(
            retry_after > Duration::from_millis(900) && retry_after <= Duration::from_secs(1),
            "the next cell of a 1/s rate: {retry_after:?}"
        );
    }
}
