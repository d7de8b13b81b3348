//! The cache's timing on a paused clock: single flight, refresh ahead, minimum life, stale
//! on error, bounds. Fetches are counted fakes; the AWS calls are tested end to end in
//! tests/api/cache.rs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::*;
use crate::domain::RoleSessionName;

const MIN_REMAINING: Duration = Duration::from_secs(300);
/// With the settings below, a 900-second credential is served for 600 seconds and renewed
/// after 270 to 330 of them.
const LIFE: Duration = Duration::from_secs(900);

fn cache(max_entries: usize) -> Arc<CredentialCache> {
    Arc::new(CredentialCache::new(
        CacheSettings {
            max_entries,
            min_remaining: MIN_REMAINING,
            refresh_fraction: 0.5,
            wait: Duration::from_secs(30),
        },
        CacheMetrics::default(),
    ))
}

fn key(n: u8) -> CacheKey {
    CacheKey([n; 32])
}

/// Whom the tests' entries belong to, unless a test says otherwise.
const OWNER: CachedOwner<'static> = CachedOwner {
    rule: "r",
    issuer: "ci",
    subject: Some("alice"),
};

fn issued(life: Duration) -> Issued {
    Issued {
        data: Vec::new(),
        session_name: RoleSessionName::for_caller("test", "0123456789ab"),
        expires_at: chrono::Utc::now() + life,
    }
}

fn throttled() -> AwsError {
    AwsError::new("AssumeRole", AwsErrorKind::Throttled)
}

/// A fake AWS: counts its calls, takes `latency`, answers `answer`.
#[derive(Clone)]
struct Upstream {
    calls: Arc<AtomicUsize>,
    latency: Duration,
    life: Duration,
    failing: Option<AwsError>,
}

impl Upstream {
    fn new() -> Self {
        Self {
            calls: Arc::new(AtomicUsize::new(0)),
            latency: Duration::from_millis(50),
            life: LIFE,
            failing: None,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn fetch(&self) -> impl FnOnce() -> BoxFuture<'static, Result<Issued, AwsError>> + use<> {
        let this = self.clone();
        move || {
            this.calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(this.latency).await;
                match this.failing {
                    Some(error) => Err(error),
                    None => Ok(issued(this.life)),
                }
            }
            .boxed()
        }
    }
}

async fn get(cache: &Arc<CredentialCache>, upstream: &Upstream) -> Result<Served, AwsError> {
    cache.get(key(1), OWNER, upstream.fetch()).await
}

/// Lets spawned fetches run to completion on the paused clock.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_share_one_fetch() {
    let cache = cache(100);
    let upstream = Upstream::new();

    let answers = futures::future::join_all((0..500).map(|_| get(&cache, &upstream))).await;

    assert_eq!(upstream.calls(), 1);
    let answers: Vec<Served> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(answers.iter().filter(|s| !s.from_cache).count(), 1);
    assert!(
        answers
            .iter()
            .all(|s| Arc::ptr_eq(&s.issued, &answers[0].issued))
    );
}

#[tokio::test(start_paused = true)]
async fn a_repeated_request_is_served_from_the_cache() {
    let cache = cache(100);
    let upstream = Upstream::new();
    let first = get(&cache, &upstream).await.unwrap();

    tokio::time::advance(Duration::from_secs(200)).await;
    let second = get(&cache, &upstream).await.unwrap();

    assert_eq!(upstream.calls(), 1);
    assert!(!first.from_cache && second.from_cache);
    assert!(Arc::ptr_eq(&first.issued, &second.issued));
    assert!(second.hidden_error.is_none());
}

#[tokio::test(start_paused = true)]
async fn nothing_is_renewed_before_the_refresh_moment() {
    let cache = cache(100);
    let upstream = Upstream::new();
    get(&cache, &upstream).await.unwrap();

    tokio::time::advance(Duration::from_secs(265)).await;
    get(&cache, &upstream).await.unwrap();
    settle().await;

    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn past_the_refresh_moment_the_cached_answer_is_served_and_renewed_in_the_background() {
    let cache = cache(100);
    let upstream = Upstream::new();
    let first = get(&cache, &upstream).await.unwrap();

    tokio::time::advance(Duration::from_secs(335)).await;
    let during = get(&cache, &upstream).await.unwrap();
    let also_during = get(&cache, &upstream).await.unwrap();
    settle().await;
    let after = get(&cache, &upstream).await.unwrap();

    assert!(Arc::ptr_eq(&during.issued, &first.issued));
    assert!(Arc::ptr_eq(&also_during.issued, &first.issued));
    assert_eq!(upstream.calls(), 2, "one refresh, however many requests");
    assert!(after.from_cache && !Arc::ptr_eq(&after.issued, &first.issued));
    assert!(after.issued.expires_at > first.issued.expires_at);
}

#[tokio::test(start_paused = true)]
async fn an_entry_with_no_more_than_the_minimum_left_is_never_served() {
    let cache = cache(100);
    let mut upstream = Upstream::new();
    let first = get(&cache, &upstream).await.unwrap();
    upstream.failing = Some(throttled());

    // 600 s in, 300 s of its 900 are left: the minimum, so it may not be served.
    tokio::time::advance(Duration::from_secs(600)).await;
    let error = get(&cache, &upstream).await.unwrap_err();

    assert_eq!(error.kind, AwsErrorKind::Throttled);
    upstream.failing = None;
    let fresh = get(&cache, &upstream).await.unwrap();
    assert!(!fresh.from_cache && !Arc::ptr_eq(&fresh.issued, &first.issued));
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_is_hidden_by_the_cached_answer_and_retried_later() {
    let cache = cache(100);
    let mut upstream = Upstream::new();
    let first = get(&cache, &upstream).await.unwrap();
    upstream.failing = Some(throttled());

    tokio::time::advance(Duration::from_secs(335)).await;
    let triggering = get(&cache, &upstream).await.unwrap();
    settle().await;
    let hiding = get(&cache, &upstream).await.unwrap();
    settle().await;

    assert!(triggering.hidden_error.is_none());
    assert!(Arc::ptr_eq(&hiding.issued, &first.issued) && hiding.from_cache);
    assert_eq!(
        hiding
            .hidden_error
            .as_ref()
            .map(AwsError::reason)
            .as_deref(),
        Some("aws_throttled:AssumeRole")
    );
    assert_eq!(
        upstream.calls(),
        2,
        "no second attempt before the retry delay"
    );

    // A failed refresh waits a tenth of the 600 s window, at most 30 s.
    tokio::time::advance(Duration::from_secs(30)).await;
    upstream.failing = None;
    get(&cache, &upstream).await.unwrap();
    settle().await;
    let renewed = get(&cache, &upstream).await.unwrap();

    assert_eq!(upstream.calls(), 3);
    assert!(!Arc::ptr_eq(&renewed.issued, &first.issued));
    assert!(renewed.hidden_error.is_none());
}

#[tokio::test(start_paused = true)]
async fn without_a_usable_entry_every_waiter_gets_the_failure() {
    let cache = cache(100);
    let mut upstream = Upstream::new();
    upstream.failing = Some(throttled());

    let answers = futures::future::join_all((0..10).map(|_| get(&cache, &upstream))).await;

    assert_eq!(upstream.calls(), 1);
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().unwrap_err().kind == AwsErrorKind::Throttled)
    );
    assert!(cache.is_empty(), "a failure is not cached");
    get(&cache, &upstream).await.unwrap_err();
    assert_eq!(upstream.calls(), 2, "the next request asks again");
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_fetch_is_bounded() {
    let cache = cache(100);
    let mut upstream = Upstream::new();
    upstream.latency = Duration::from_secs(60);

    let error = get(&cache, &upstream).await.unwrap_err();

    assert_eq!(error.kind, AwsErrorKind::Timeout);
    assert_eq!(
        error.reason(),
        "aws_timeout:AssumeRole/GetAuthorizationToken"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fetch_outlives_the_request_that_started_it() {
    let cache = cache(100);
    let upstream = Upstream::new();
    let started = tokio::spawn({
        let (cache, upstream) = (cache.clone(), upstream.clone());
        async move { get(&cache, &upstream).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    started.abort();

    settle().await;
    let later = get(&cache, &upstream).await.unwrap();

    assert_eq!(upstream.calls(), 1);
    assert!(later.from_cache);
}

#[tokio::test(start_paused = true)]
async fn a_credential_too_short_lived_to_keep_is_handed_out_but_not_kept() {
    let cache = cache(100);
    let mut upstream = Upstream::new();
    upstream.life = MIN_REMAINING;

    let first = get(&cache, &upstream).await.unwrap();
    let second = get(&cache, &upstream).await.unwrap();

    assert!(!first.from_cache && !second.from_cache);
    assert_eq!(upstream.calls(), 2);
    assert!(cache.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fetch_ends_its_flight() {
    let cache = cache(100);
    let upstream = Upstream::new();

    fn buggy() -> Result<Issued, AwsError> {
        panic!("a bug in a fetch")
    }

    let error = cache
        .get(key(1), OWNER, || async { buggy() })
        .await
        .unwrap_err();

    assert_eq!(error.kind, AwsErrorKind::Unavailable);
    assert!(!get(&cache, &upstream).await.unwrap().from_cache);
}

#[tokio::test(start_paused = true)]
async fn the_cache_holds_at_most_max_entries_keys() {
    let cache = cache(32);
    let upstream = Upstream::new();

    for n in 0..=255 {
        cache.get(key(n), OWNER, upstream.fetch()).await.unwrap();
        assert!(cache.len() <= 32, "{} keys after {n}", cache.len());
    }

    let newest = cache.get(key(255), OWNER, upstream.fetch()).await.unwrap();
    assert!(newest.from_cache, "the newest key is kept");
}

#[tokio::test(start_paused = true)]
async fn the_entries_closest_to_their_end_are_evicted_first() {
    let cache = cache(2);
    let upstream = Upstream::new();
    cache.get(key(1), OWNER, upstream.fetch()).await.unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    cache.get(key(2), OWNER, upstream.fetch()).await.unwrap();

    cache.get(key(3), OWNER, upstream.fetch()).await.unwrap();

    assert!(
        cache
            .get(key(2), OWNER, upstream.fetch())
            .await
            .unwrap()
            .from_cache
    );
    assert!(
        cache
            .get(key(3), OWNER, upstream.fetch())
            .await
            .unwrap()
            .from_cache
    );
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn expired_entries_are_swept() {
    let cache = cache(100);
    let upstream = Upstream::new();
    for n in 0..10 {
        cache.get(key(n), OWNER, upstream.fetch()).await.unwrap();
    }
    let sweeper = cache.spawn_sweeper(Duration::from_secs(30));

    tokio::time::advance(Duration::from_secs(590)).await;
    settle().await;
    assert_eq!(cache.len(), 10, "still usable");
    tokio::time::advance(Duration::from_secs(60)).await;
    settle().await;

    assert!(cache.is_empty());
    sweeper.abort();
}

#[tokio::test(start_paused = true)]
async fn forgetting_an_owner_drops_its_entries_and_a_fetch_under_way_stays_out() {
    let cache = cache(100);
    let upstream = Upstream::new();
    let bob = CachedOwner {
        subject: Some("bob"),
        ..OWNER
    };
    cache.get(key(1), OWNER, upstream.fetch()).await.unwrap();
    cache.get(key(2), bob, upstream.fetch()).await.unwrap();
    // A fetch of alice's under way when she is denied.
    let slow = Upstream {
        latency: Duration::from_secs(5),
        ..upstream.clone()
    };
    let in_flight = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move { cache.get(key(3), OWNER, slow.fetch()).await })
    };
    tokio::task::yield_now().await;

    let dropped = cache.forget(|owner| owner.subject == Some("alice"));

    assert_eq!(dropped, 2);
    assert!(
        in_flight.await.unwrap().is_ok(),
        "the waiting request gets its answer"
    );
    settle().await;
    assert_eq!(
        cache.len(),
        1,
        "only bob's entry is left; the finished fetch was not kept"
    );
    let again = cache.get(key(1), OWNER, upstream.fetch()).await.unwrap();
    assert!(
        !again.from_cache,
        "alice's credential is fetched anew, not served"
    );
}
