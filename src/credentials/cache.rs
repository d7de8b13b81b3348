//! Issued credentials, kept for as long as they may be served.
//!
//! - **Single flight:** while a key's credential is being fetched, every other request for
//!   it waits for that one fetch (bounded by `wait`) instead of calling AWS itself. The
//!   fetch runs on its own task, so it completes and fills the cache even when the request
//!   that started it goes away.
//! - **Truthful lifetime:** an entry is served only while more than `min_remaining` of its
//!   effective expiry is left, never after.
//! - **Refresh ahead:** the first request after `refresh_fraction` of that serving window
//!   (with jitter) gets the cached answer at once and starts a fetch in the background.
//! - **Stale on error:** when that refresh fails, the entry keeps being served for the rest
//!   of its window, each answer naming the hidden failure, and the refresh is retried later.
//! - **Bounded:** at most `max_entries` keys; entries past their window are swept away.
//!
//! The map's lock is held only to look up or update a slot, never across an await.

mod key;
mod lifetime;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{AwsError, AwsErrorKind, Issued};
use crate::metrics::CacheMetrics;
use lifetime::Lifetime;

pub(crate) use key::{CacheKey, CallerScope};

/// Whose a cached credential is, as far as the cache knows: what a deny entry is matched
/// against to drop the credentials it reaches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CachedOwner<'a> {
    /// The rule it was issued under.
    pub rule: &'a str,
    /// The issuer of its caller (or of the rule, for a shared entry).
    pub issuer: &'a str,
    /// The caller's subject; `None` for an entry shared by several callers.
    pub subject: Option<&'a str>,
}

/// The operation named when a request gives up waiting for another request's fetch.
const WAITING: &str = "AssumeRole/GetAuthorizationToken";

/// How the cache keeps and renews entries.
#[derive(Debug, Clone)]
pub(crate) struct CacheSettings {
    /// Most keys kept at once.
    pub max_entries: usize,
    /// An entry with no more than this left is never served.
    pub min_remaining: Duration,
    /// Share of an entry's serving window after which it is renewed.
    pub refresh_fraction: f64,
    /// Longest a request waits for a fetch another request started.
    pub wait: Duration,
}

/// A credential handed to one request.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// The credential.
    pub issued: Arc<Issued>,
    /// False only for the request whose own AWS calls produced it.
    pub from_cache: bool,
    /// The failure of the latest refresh, when a cached entry was served in spite of it.
    pub hidden_error: Option<AwsError>,
}

type Fetched = Result<Arc<Issued>, AwsError>;
type Flight = Shared<BoxFuture<'static, Fetched>>;

/// Whom a slot's credential was issued to, so that the kill switch can find it: the key
/// itself is a digest.
struct Owner {
    rule: Box<str>,
    issuer: Box<str>,
    subject: Option<Box<str>>,
}

impl Owner {
    fn new(owner: CachedOwner<'_>) -> Self {
        Self {
            rule: owner.rule.into(),
            issuer: owner.issuer.into(),
            subject: owner.subject.map(Into::into),
        }
    }

    fn as_ref(&self) -> CachedOwner<'_> {
        CachedOwner {
            rule: &self.rule,
            issuer: &self.issuer,
            subject: self.subject.as_deref(),
        }
    }
}

/// One key's state: its credential, the fetch under way, the latest refresh failure.
struct Slot {
    owner: Owner,
    entry: Option<(Arc<Issued>, Lifetime)>,
    flight: Option<Flight>,
    failed: Option<AwsError>,
    retry_at: Option<Instant>,
}

impl Slot {
    fn new(owner: CachedOwner<'_>) -> Self {
        Self {
            owner: Owner::new(owner),
            entry: None,
            flight: None,
            failed: None,
            retry_at: None,
        }
    }

    fn usable(&self, now: Instant) -> Option<&(Arc<Issued>, Lifetime)> {
        self.entry.as_ref().filter(|(_, l)| l.usable(now))
    }

    /// An entry that can no longer be served and no fetch that would renew it.
    fn dead(&self, now: Instant) -> bool {
        self.flight.is_none() && self.usable(now).is_none()
    }
}

/// The credential cache. Cheap to share behind an `Arc`.
pub(crate) struct CredentialCache {
    slots: Mutex<HashMap<CacheKey, Slot>>,
    settings: CacheSettings,
    metrics: CacheMetrics,
}

impl CredentialCache {
    /// An empty cache, counting its hits, misses, renewals and stale answers in `metrics`.
    pub(crate) fn new(settings: CacheSettings, metrics: CacheMetrics) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            settings,
            metrics,
        }
    }

    /// The credential for `key`, which `owner` describes: a cached one while it may be
    /// served, otherwise the result of `fetch`, or of the fetch another request already
    /// started for the same key. `fetch` is called only when this request has to start one.
    pub(crate) async fn get<F, Fut>(
        self: &Arc<Self>,
        key: CacheKey,
        owner: CachedOwner<'_>,
        fetch: F,
    ) -> Result<Served, AwsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Issued, AwsError>> + Send + 'static,
    {
        let now = Instant::now();
        let (flight, joined) = {
            let mut slots = self.lock();
            // The hit path: one lookup, a reference count, no allocation.
            if let Some(slot) = slots.get_mut(&key)
                && let Some((issued, lifetime)) = slot.usable(now).map(|(i, l)| (Arc::clone(i), *l))
            {
                let served = Served {
                    issued,
                    from_cache: true,
                    hidden_error: slot.failed.clone(),
                };
                let retry_due = slot.retry_at.is_none_or(|at| now >= at);
                if lifetime.due(now) && slot.flight.is_none() && retry_due {
                    slot.flight = Some(self.start(key, fetch()));
                    self.metrics.refreshes.increment(1);
                }
                self.metrics.hits.increment(1);
                if served.hidden_error.is_some() {
                    self.metrics.stale_serves.increment(1);
                }
                return Ok(served);
            }
            self.metrics.misses.increment(1);
            if !slots.contains_key(&key) && slots.len() >= self.settings.max_entries {
                self.make_room(&mut slots, now);
            }
            let slot = slots.entry(key).or_insert_with(|| Slot::new(owner));
            match &slot.flight {
                Some(flight) => (flight.clone(), true),
                None => {
                    let flight = self.start(key, fetch());
                    slot.flight = Some(flight.clone());
                    (flight, false)
                }
            }
        };
        match tokio::time::timeout(self.settings.wait, flight).await {
            Ok(fetched) => fetched.map(|issued| Served {
                issued,
                from_cache: joined,
                hidden_error: None,
            }),
            Err(_) => Err(AwsError::new(WAITING, AwsErrorKind::Timeout)),
        }
    }

    /// Runs `fetch` on its own task, which stores the result for `key` when it is done.
    fn start(
        self: &Arc<Self>,
        key: CacheKey,
        fetch: impl Future<Output = Result<Issued, AwsError>> + Send + 'static,
    ) -> Flight {
        let cache = Arc::clone(self);
        let task = tokio::spawn(async move {
            // A panic must still end the flight, or the key would wait on it for good.
            let fetched = std::panic::AssertUnwindSafe(fetch)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(AwsError::new(WAITING, AwsErrorKind::Unavailable)))
                .map(Arc::new);
            cache.finish(key, &fetched);
            fetched
        });
        async move {
            task.await
                .unwrap_or_else(|_| Err(AwsError::new(WAITING, AwsErrorKind::Unavailable)))
        }
        .boxed()
        .shared()
    }

    /// Stores a finished fetch: a credential that may be served replaces the entry; a
    /// failure leaves a still-usable entry in place, noted, and schedules a retry.
    fn finish(&self, key: CacheKey, fetched: &Fetched) {
        let now = Instant::now();
        let settings = &self.settings;
        let mut slots = self.lock();
        // Gone when the kill switch dropped it meanwhile: it must not come back.
        let Some(slot) = slots.get_mut(&key) else {
            return;
        };
        slot.flight = None;
        match fetched {
            Ok(issued) => {
                let life = (issued.expires_at - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default();
                let jitter = fastrand::f64() * 2.0 - 1.0;
                if let Some(lifetime) = Lifetime::new(
                    now,
                    life,
                    settings.min_remaining,
                    settings.refresh_fraction,
                    jitter,
                ) {
                    slot.entry = Some((Arc::clone(issued), lifetime));
                    slot.failed = None;
                    slot.retry_at = None;
                }
            }
            Err(error) => {
                if let Some((_, lifetime)) = slot.usable(now) {
                    tracing::warn!(
                        %error,
                        "renewing a cached credential failed; the cached one is served meanwhile"
                    );
                    slot.retry_at = Some(now + lifetime.retry_every);
                    slot.failed = Some(error.clone());
                }
            }
        }
        if slot.dead(now) {
            slots.remove(&key);
        }
    }

    /// Drops every entry whose owner `doomed` says, with any fetch under way for it (its
    /// waiting requests still get that fetch's answer, but the cache keeps nothing of it);
    /// returns how many.
    pub(crate) fn forget(&self, doomed: impl Fn(CachedOwner<'_>) -> bool) -> usize {
        let mut slots = self.lock();
        let before = slots.len();
        slots.retain(|_, slot| !doomed(slot.owner.as_ref()));
        before - slots.len()
    }

    /// Drops every entry that can no longer be served.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        self.lock().retain(|_, slot| !slot.dead(now));
    }

    /// Sweeps every `every`, so expired entries leave even when no new key arrives.
    pub(crate) fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> JoinHandle<()> {
        let cache = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match cache.upgrade() {
                    Some(cache) => cache.sweep(),
                    None => return,
                }
            }
        })
    }

    /// The number of keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is held.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frees room for one key: first everything that can no longer be served, then, if
    /// the cache is still full, the sixteenth of entries closest to the end of their
    /// window, so that a stream of new keys costs a scan only every so often. Keys with a
    /// fetch under way stay, so no waiting request loses its single flight.
    fn make_room(&self, slots: &mut HashMap<CacheKey, Slot>, now: Instant) {
        slots.retain(|_, slot| !slot.dead(now));
        if slots.len() < self.settings.max_entries {
            return;
        }
        let mut ends: Vec<Instant> = slots
            .values()
            .filter(|s| s.flight.is_none())
            .filter_map(|s| s.entry.as_ref().map(|(_, l)| l.usable_until))
            .collect();
        if ends.is_empty() {
            return;
        }
        let evict = (ends.len() / 16).max(1);
        let (_, cutoff, _) = ends.select_nth_unstable(evict - 1);
        let cutoff = *cutoff;
        let mut left = evict;
        slots.retain(|_, slot| {
            let early = slot.flight.is_none()
                && slot
                    .entry
                    .as_ref()
                    .is_some_and(|(_, l)| l.usable_until <= cutoff);
            if early && left > 0 {
                left -= 1;
                return false;
            }
            true
        });
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<CacheKey, Slot>> {
        // A panic while the lock was held leaves at worst a stale slot, which expires.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
