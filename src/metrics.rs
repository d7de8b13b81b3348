//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Each [`Application`](crate::Application) has a recorder of its own, not the process-wide
//! one the `metrics` macros write to: the integration tests run many applications in one
//! process, and a shared recorder would add their numbers together (and one test's chain
//! head would overwrite another's). `metrics::with_local_recorder` does not help either: it
//! holds only for a synchronous closure on one thread, while these numbers are recorded in
//! spawned tasks (the audit writer, key refreshes, cache fetches). So the recorder's handles
//! are passed to each stage explicitly, registered once at start where the labels are known
//! (services, issuers, error codes), and recording on the hot path is an atomic add. Series
//! whose labels are known only per request (route and status, outcome, reason and rule) are
//! registered on first use and then found by a lookup that allocates nothing.
//!
//! Label values stay few: route templates (never raw paths), status codes, outcomes and
//! reasons as the audit log spells them, and names from the config (rules, issuers). Never a
//! subject, a request id, a token or a claim value. Callers hand over label codes, never
//! their own types: this module depends on no other module of the crate.

mod series;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ::metrics::{Counter, Gauge, Histogram, Key, Label, Recorder};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::task::JoinHandle;

pub(crate) use series::Service;
use series::{DURATION_BUCKETS, ROWS_BUCKETS, names};

/// The route label of a request no route matched: raw paths are the caller's to choose.
const UNMATCHED: &str = "unmatched";

/// Distinct (outcome, reason, rule) series at most; beyond them the reason is `other`, so
/// that an upstream inventing error codes cannot grow the exposition without bound.
const MAX_ISSUANCE_SERIES: usize = 1024;

/// How often histogram samples are folded in when nobody scrapes, so they stay bounded.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The content type of the text exposition format.
const EXPOSITION_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One application's metrics. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Metrics(Arc<Inner>);

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Every route template the router serves, so a matched path maps to a `'static` label.
    routes: Vec<&'static str>,
    request_seconds: HashMap<&'static str, Histogram>,
    requests: RwLock<HashMap<(&'static str, u16), Counter>>,
    issuances: RwLock<IssuanceSeries>,
    audit_queue_depth: [Gauge; 2],
    deny_list_age: Gauge,
    /// When this recorder was made: before the stored deny list is first read, its age
    /// counts from the start.
    started: Instant,
}

/// `issuances_total` by rule, then reason, then outcome: looked up by `&str` without
/// building a key.
#[derive(Default)]
struct IssuanceSeries {
    by_rule: HashMap<Box<str>, HashMap<Box<str>, ByOutcome>>,
    count: usize,
}

/// The counters of one rule and reason, one per outcome seen (there are a handful).
type ByOutcome = Vec<(&'static str, Counter)>;

/// The counter of `outcome` among `outcomes`.
fn of_outcome<'a>(outcomes: &'a ByOutcome, outcome: &str) -> Option<&'a Counter> {
    outcomes
        .iter()
        .find(|(label, _)| *label == outcome)
        .map(|(_, counter)| counter)
}

impl Metrics {
    /// A fresh recorder; `routes` are the route templates the router serves.
    pub(crate) fn new(routes: impl IntoIterator<Item = &'static str>) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), DURATION_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_rows".to_owned()), ROWS_BUCKETS)
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        series::describe(&recorder);
        let handle = recorder.handle();
        let routes: Vec<&'static str> = routes.into_iter().chain([UNMATCHED]).collect();
        let histogram = |name, labels: &[(&'static str, &str)]| {
            register(&recorder, name, labels, Recorder::register_histogram)
        };
        let request_seconds = routes
            .iter()
            .map(|&route| {
                (
                    route,
                    histogram(names::HTTP_REQUEST_SECONDS, &[("route", route)]),
                )
            })
            .collect();
        let audit_queue_depth = ["records", "refusals"].map(|lane| {
            register(
                &recorder,
                names::AUDIT_QUEUE_DEPTH,
                &[("lane", lane)],
                Recorder::register_gauge,
            )
        });
        let deny_list_age = register(
            &recorder,
            names::DENY_LIST_AGE,
            &[],
            Recorder::register_gauge,
        );
        Self(Arc::new(Inner {
            recorder,
            handle,
            routes,
            request_seconds,
            requests: RwLock::default(),
            issuances: RwLock::default(),
            audit_queue_depth,
            deny_list_age,
            started: Instant::now(),
        }))
    }

    /// Folds histogram samples in every few seconds, for as long as the application runs.
    pub(crate) fn spawn_upkeep(&self) -> JoinHandle<()> {
        let handle = self.0.handle.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(UPKEEP_EVERY);
            loop {
                ticks.tick().await;
                handle.run_upkeep();
            }
        })
    }

    /// Counts one decision on the issuing endpoint, as its audit record says it: `outcome`
    /// and `reason` spelled as the record stores them.
    pub(crate) fn issuance(&self, outcome: &'static str, reason: &str, rule: Option<&str>) {
        let rule = rule.unwrap_or("");
        let found = {
            let series = read(&self.0.issuances);
            series
                .by_rule
                .get(rule)
                .and_then(|reasons| reasons.get(reason))
                .and_then(|outcomes| of_outcome(outcomes, outcome).cloned())
        };
        let counter = found.unwrap_or_else(|| self.register_issuance(outcome, reason, rule));
        counter.increment(1);
    }

    fn register_issuance(&self, outcome: &'static str, reason: &str, rule: &str) -> Counter {
        let mut series = write(&self.0.issuances);
        let exists = series
            .by_rule
            .get(rule)
            .and_then(|r| r.get(reason))
            .is_some_and(|o| of_outcome(o, outcome).is_some());
        let reason = if exists || series.count < MAX_ISSUANCE_SERIES {
            reason
        } else {
            "other"
        };
        let labels = [("outcome", outcome), ("reason", reason), ("rule", rule)];
        let outcomes = series
            .by_rule
            .entry(rule.into())
            .or_default()
            .entry(reason.into())
            .or_default();
        if let Some(counter) = of_outcome(outcomes, outcome) {
            return counter.clone();
        }
        let counter = register(
            &self.0.recorder,
            names::ISSUANCES,
            &labels,
            Recorder::register_counter,
        );
        outcomes.push((outcome, counter.clone()));
        series.count += 1;
        counter
    }

    /// Counts one finished HTTP request and its duration under its route template.
    fn request(&self, path: Option<&str>, status: u16, took: Duration) {
        let route = path
            .and_then(|p| self.0.routes.iter().find(|r| **r == p))
            .copied()
            .unwrap_or(UNMATCHED);
        if let Some(histogram) = self.0.request_seconds.get(route) {
            histogram.record(took);
        }
        let found = read(&self.0.requests).get(&(route, status)).cloned();
        let counter = found.unwrap_or_else(|| {
            write(&self.0.requests)
                .entry((route, status))
                .or_insert_with(|| {
                    let status = status.to_string();
                    register(
                        &self.0.recorder,
                        names::HTTP_REQUESTS,
                        &[("route", route), ("status", &status)],
                        Recorder::register_counter,
                    )
                })
                .clone()
        });
        counter.increment(1);
    }

    /// The handles the credential cache records with.
    pub(crate) fn cache(&self) -> CacheMetrics {
        let counter = |name| self.counter(name, &[]);
        CacheMetrics {
            hits: counter(names::CACHE_HITS),
            misses: counter(names::CACHE_MISSES),
            refreshes: counter(names::CACHE_REFRESHES),
            stale_serves: counter(names::CACHE_STALE_SERVES),
        }
    }

    /// The handles calls to `service` record with.
    pub(crate) fn upstream(&self, service: Service) -> UpstreamMetrics {
        let labels = [
            ("service", service.as_str()),
            ("operation", service.operation()),
        ];
        let errors = UPSTREAM_ERROR_CODES.map(|code| {
            self.counter(
                names::UPSTREAM_ERRORS,
                &[("service", service.as_str()), ("code", code)],
            )
        });
        UpstreamMetrics {
            calls: self.counter(names::UPSTREAM_CALLS, &labels),
            seconds: register(
                &self.0.recorder,
                names::UPSTREAM_SECONDS,
                &labels,
                Recorder::register_histogram,
            ),
            errors,
            ceiling_refusals: self.counter(names::UPSTREAM_CEILING_REFUSALS, &labels),
        }
    }

    /// The handles the audit writer records with.
    pub(crate) fn audit_writer(&self) -> WriterMetrics {
        let histogram = |name| register(&self.0.recorder, name, &[], Recorder::register_histogram);
        WriterMetrics {
            batch_rows: histogram(names::AUDIT_BATCH_ROWS),
            commit_seconds: histogram(names::AUDIT_COMMIT_SECONDS),
            commit_failures: self.counter(names::AUDIT_COMMIT_FAILURES, &[]),
            shed: self.counter(names::AUDIT_SHED, &[]),
            chain_head: register(
                &self.0.recorder,
                names::AUDIT_CHAIN_HEAD,
                &[],
                Recorder::register_gauge,
            ),
        }
    }

    /// The handles the key set of the issuer named `issuer` in the config records with.
    pub(crate) fn key_set(&self, issuer: &str) -> KeySetMetrics {
        let labels = [("issuer", issuer)];
        KeySetMetrics {
            fetches: self.counter(names::JWKS_FETCHES, &labels),
            failures: self.counter(names::JWKS_FAILURES, &labels),
        }
    }

    /// How many used `jti`s the replay cache of the issuer named `issuer` holds.
    pub(crate) fn jti_cache(&self, issuer: &str) -> Gauge {
        register(
            &self.0.recorder,
            names::JTI_CACHE_ENTRIES,
            &[("issuer", issuer)],
            Recorder::register_gauge,
        )
    }

    /// The exposition, with the queue depths and the age of the stored deny list, last
    /// read at `deny_list_read_at` (`None`: not yet), as they are now.
    pub(crate) fn render(
        &self,
        queue_depth: (usize, usize),
        deny_list_read_at: Option<Instant>,
    ) -> Response {
        let [records, refusals] = &self.0.audit_queue_depth;
        records.set(queue_depth.0 as f64);
        refusals.set(queue_depth.1 as f64);
        let read_at = deny_list_read_at.unwrap_or(self.0.started);
        self.0.deny_list_age.set(read_at.elapsed().as_secs_f64());
        let mut response = self.0.handle.render().into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(EXPOSITION_TYPE),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        register(&self.0.recorder, name, labels, Recorder::register_counter)
    }
}

/// Records every request's route, status and duration; outside the error rendering and the
/// timeout, so that their statuses are counted as the caller sees them.
pub(crate) async fn record_http(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let path = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    metrics.request(
        path.as_ref().map(MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

fn register<T>(
    recorder: &PrometheusRecorder,
    name: &'static str,
    labels: &[(&'static str, &str)],
    how: fn(&PrometheusRecorder, &Key, &::metrics::Metadata<'_>) -> T,
) -> T {
    let labels: Vec<Label> = labels
        .iter()
        .map(|&(k, v)| Label::new(k, v.to_owned()))
        .collect();
    let metadata =
        ::metrics::Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));
    how(recorder, &Key::from_parts(name, labels), &metadata)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // The maps only ever gain entries; a panic mid-insert leaves at worst one missing.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `code` label of a failed AWS call: the kind of failure, a fixed set whatever AWS
/// answers (a refusal's own AWS error code is in the audit record's reason).
const UPSTREAM_ERROR_CODES: [&str; 4] = ["timeout", "throttled", "refused", "unavailable"];

/// How a failed upstream call is counted: by one of [`UPSTREAM_ERROR_CODES`], or apart when
/// the ceiling held it back and nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamFailure {
    /// `timeout`: no answer in time.
    Timeout,
    /// `throttled`: asked to slow down.
    Throttled,
    /// `refused`: answered with an error.
    Refused,
    /// `unavailable`: not reached, or an unusable answer.
    Unavailable,
    /// Not sent: over the broker's own ceiling.
    Ceiling,
}

/// An upstream call's error, which says how it is counted.
pub(crate) trait CountedFailure {
    /// The kind of failure, as [`UpstreamMetrics`] counts it.
    fn upstream_failure(&self) -> UpstreamFailure;
}

/// What the credential cache counts.
#[derive(Clone)]
pub(crate) struct CacheMetrics {
    /// Answers from a cached credential.
    pub hits: Counter,
    /// Requests that found nothing to serve and fetched, or waited for a fetch.
    pub misses: Counter,
    /// Renewals started in the background while the cached credential was served.
    pub refreshes: Counter,
    /// Cached answers given while the latest renewal had failed.
    pub stale_serves: Counter,
}

impl Default for CacheMetrics {
    /// Records nothing.
    fn default() -> Self {
        Self {
            hits: Counter::noop(),
            misses: Counter::noop(),
            refreshes: Counter::noop(),
            stale_serves: Counter::noop(),
        }
    }
}

/// What calls to one AWS service count.
#[derive(Clone)]
pub(crate) struct UpstreamMetrics {
    calls: Counter,
    seconds: Histogram,
    errors: [Counter; 4],
    ceiling_refusals: Counter,
}

impl UpstreamMetrics {
    /// Times and counts one call that was sent.
    pub(crate) async fn call<T, E: CountedFailure>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.calls.increment(1);
        let started = Instant::now();
        let result = call.await;
        self.seconds.record(started.elapsed());
        if let Err(error) = &result {
            self.failed(error);
        }
        result
    }

    /// Counts a failure: a ceiling refusal (nothing was sent) or an error of a call.
    pub(crate) fn failed(&self, error: &impl CountedFailure) {
        let at = match error.upstream_failure() {
            UpstreamFailure::Ceiling => return self.ceiling_refusals.increment(1),
            UpstreamFailure::Timeout => 0,
            UpstreamFailure::Throttled => 1,
            UpstreamFailure::Refused => 2,
            UpstreamFailure::Unavailable => 3,
        };
        self.errors[at].increment(1);
    }
}

/// What the audit writer records.
#[derive(Clone, Debug)]
pub(crate) struct WriterMetrics {
    /// Rows per committed or failed batch.
    pub batch_rows: Histogram,
    /// How long each batch's append took.
    pub commit_seconds: Histogram,
    /// Batches that did not commit.
    pub commit_failures: Counter,
    /// Refusals shed because their lane was full.
    pub shed: Counter,
    /// The id of the last row this writer committed.
    pub chain_head: Gauge,
}

impl Default for WriterMetrics {
    /// Records nothing.
    fn default() -> Self {
        Self {
            batch_rows: Histogram::noop(),
            commit_seconds: Histogram::noop(),
            commit_failures: Counter::noop(),
            shed: Counter::noop(),
            chain_head: Gauge::noop(),
        }
    }
}

/// What one issuer's key set counts.
#[derive(Clone)]
pub(crate) struct KeySetMetrics {
    /// Attempts to load the keys.
    pub fetches: Counter,
    /// Attempts that failed.
    pub failures: Counter,
}

impl Default for KeySetMetrics {
    /// Records nothing.
    fn default() -> Self {
        Self {
            fetches: Counter::noop(),
            failures: Counter::noop(),
        }
    }
}

#[cfg(test)]
mod tests;
