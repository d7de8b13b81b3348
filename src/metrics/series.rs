//! Every series the service exposes: its name, type and help text, in one place.

use ::metrics::Recorder;
use metrics_exporter_prometheus::PrometheusRecorder;

/// Series names, each with the prefix `ecr_token_broker_`.
pub(crate) mod names {
    /// Counter: HTTP requests by `route` template and `status`.
    pub(crate) const HTTP_REQUESTS: &str = "ecr_token_broker_http_requests_total";
    /// Histogram: the whole request, by `route`.
    pub(crate) const HTTP_REQUEST_SECONDS: &str = "ecr_token_broker_http_request_duration_seconds";
    /// Counter: issuing decisions by `outcome`, `reason` and `rule`.
    pub(crate) const ISSUANCES: &str = "ecr_token_broker_issuances_total";
    /// Counter: AWS calls sent, by `service` and `operation`.
    pub(crate) const UPSTREAM_CALLS: &str = "ecr_token_broker_upstream_calls_total";
    /// Histogram: each AWS call, by `service` and `operation`.
    pub(crate) const UPSTREAM_SECONDS: &str = "ecr_token_broker_upstream_call_duration_seconds";
    /// Counter: failed AWS calls by `service` and `code`.
    pub(crate) const UPSTREAM_ERRORS: &str = "ecr_token_broker_upstream_errors_total";
    /// Counter: calls not sent because of the upstream ceiling.
    pub(crate) const UPSTREAM_CEILING_REFUSALS: &str =
        "ecr_token_broker_upstream_ceiling_refusals_total";
    /// Counter: answers from the credential cache.
    pub(crate) const CACHE_HITS: &str = "ecr_token_broker_cache_hits_total";
    /// Counter: requests the cache had nothing usable for.
    pub(crate) const CACHE_MISSES: &str = "ecr_token_broker_cache_misses_total";
    /// Counter: background renewals started.
    pub(crate) const CACHE_REFRESHES: &str = "ecr_token_broker_cache_refreshes_total";
    /// Counter: cached answers given while renewing failed.
    pub(crate) const CACHE_STALE_SERVES: &str = "ecr_token_broker_cache_stale_serves_total";
    /// Gauge: records waiting for the audit writer, by `lane`.
    pub(crate) const AUDIT_QUEUE_DEPTH: &str = "ecr_token_broker_audit_queue_depth";
    /// Histogram: rows per audit batch.
    pub(crate) const AUDIT_BATCH_ROWS: &str = "ecr_token_broker_audit_batch_rows";
    /// Histogram: each audit batch's commit.
    pub(crate) const AUDIT_COMMIT_SECONDS: &str = "ecr_token_broker_audit_commit_duration_seconds";
    /// Counter: audit batches that did not commit.
    pub(crate) const AUDIT_COMMIT_FAILURES: &str = "ecr_token_broker_audit_commit_failures_total";
    /// Counter: refusals shed into aggregate rows.
    pub(crate) const AUDIT_SHED: &str = "ecr_token_broker_audit_shed_refusals_total";
    /// Gauge: the id of the last audit row this process committed.
    pub(crate) const AUDIT_CHAIN_HEAD: &str = "ecr_token_broker_audit_chain_head_id";
    /// Gauge: seconds since the stored deny list was last read.
    pub(crate) const DENY_LIST_AGE: &str = "ecr_token_broker_deny_list_age_seconds";
    /// Counter: key set loads by `issuer`.
    pub(crate) const JWKS_FETCHES: &str = "ecr_token_broker_jwks_fetches_total";
    /// Counter: failed key set loads by `issuer`.
    pub(crate) const JWKS_FAILURES: &str = "ecr_token_broker_jwks_fetch_failures_total";
    /// Gauge: `jti`s the replay cache of an `issuer` that refuses replays holds.
    pub(crate) const JTI_CACHE_ENTRIES: &str = "ecr_token_broker_jti_cache_entries";
}

/// Bucket bounds of every `_seconds` histogram: from a cached answer to an AWS timeout.
pub(super) const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds of every `_rows` histogram, up to the largest `max_batch`.
pub(super) const ROWS_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// The AWS services the broker calls, each through one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// STS `AssumeRole`.
    Sts,
    /// ECR `GetAuthorizationToken`.
    Ecr,
}

impl Service {
    /// The `service` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Sts => "sts",
            Self::Ecr => "ecr",
        }
    }

    /// The `operation` label: the one operation the broker calls on it.
    pub(crate) fn operation(self) -> &'static str {
        match self {
            Self::Sts => "AssumeRole",
            Self::Ecr => "GetAuthorizationToken",
        }
    }
}

/// Gives every series its `# HELP` line.
pub(super) fn describe(recorder: &PrometheusRecorder) {
    use names::*;
    let counters = [
        (
            HTTP_REQUESTS,
            "HTTP requests by route template and status code",
        ),
        (
            ISSUANCES,
            "Decisions on the issuing endpoint by outcome, reason and rule, as audited",
        ),
        (UPSTREAM_CALLS, "AWS calls sent"),
        (UPSTREAM_ERRORS, "AWS calls that failed, by kind of failure"),
        (
            UPSTREAM_CEILING_REFUSALS,
            "AWS calls not sent: the upstream ceiling was reached",
        ),
        (CACHE_HITS, "Answers served from the credential cache"),
        (
            CACHE_MISSES,
            "Requests the credential cache had nothing usable for",
        ),
        (
            CACHE_REFRESHES,
            "Background renewals of cached credentials started",
        ),
        (
            CACHE_STALE_SERVES,
            "Cached credentials served while their renewal had failed",
        ),
        (AUDIT_COMMIT_FAILURES, "Audit batches that did not commit"),
        (
            AUDIT_SHED,
            "Refusals shed from the audit queue and counted in aggregate rows",
        ),
        (JWKS_FETCHES, "Attempts to load an issuer's signing keys"),
        (
            JWKS_FAILURES,
            "Failed attempts to load an issuer's signing keys",
        ),
    ];
    for (name, help) in counters {
        recorder.describe_counter(name.into(), None, help.into());
    }
    let histograms = [
        (
            HTTP_REQUEST_SECONDS,
            "Time to answer an HTTP request, by route template",
        ),
        (UPSTREAM_SECONDS, "Time of each AWS call"),
        (AUDIT_BATCH_ROWS, "Rows per audit batch"),
        (
            AUDIT_COMMIT_SECONDS,
            "Time to append and commit one audit batch",
        ),
    ];
    for (name, help) in histograms {
        recorder.describe_histogram(name.into(), None, help.into());
    }
    let gauges = [
        (
            AUDIT_QUEUE_DEPTH,
            "Audit records waiting for the writer, by lane",
        ),
        (
            AUDIT_CHAIN_HEAD,
            "Id of the last audit row this process committed",
        ),
        (
            JTI_CACHE_ENTRIES,
            "Used jtis remembered by the replay cache of an issuer that refuses replays",
        ),
        (
            DENY_LIST_AGE,
            "Seconds since this process last read the stored deny list (since it started, until the first read)",
        ),
    ];
    for (name, help) in gauges {
        recorder.describe_gauge(name.into(), None, help.into());
    }
}
