//! `GET /metrics` through the real HTTP API, parsed by Prometheus's own Python client
//! (`prometheus_client.parser`), as a scraper would read it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::cli::{BASE, CI_ISSUER, assert_mentions, refused_config};
use crate::helpers::{
    Fault, Operation, TestApp, UNREACHABLE_ISSUER, assert_problem, free_port, request_id,
};

/// Parses the exposition with `prometheus_client` and prints every sample as JSON.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type,
                        "name": s.name, "labels": s.labels, "value": s.value})
json.dump(samples, sys.stdout, allow_nan=False)
"#;

#[derive(Debug, Deserialize)]
struct Sample {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    value: f64,
}

/// One scrape: the text as served and its samples as Prometheus parsed them.
pub(crate) struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The sum of the samples named `name` that carry every one of `labels`; `None` when
    /// there is no such sample.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// Like [`Scrape::value`], but the sample must exist.
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{}", self.text))
    }

    /// The type Prometheus read for the family of the sample `name`.
    fn kind(&self, name: &str) -> &str {
        self.samples
            .iter()
            .find(|s| s.name == name)
            .map_or("", |s| s.kind.as_str())
    }
}

fn python() -> PathBuf {
    std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// Scrapes `url` and parses what it served.
pub(crate) async fn scrape(url: &str) -> Scrape {
    let response = reqwest::get(url).await.expect("scrape");
    assert_eq!(response.status(), 200, "{url}");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let python = python();
    let mut child = Command::new(&python)
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "running {} ({e}); run scripts/test.sh, which installs it",
                python.display()
            )
        });
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client could not parse /metrics:\n{}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples = serde_json::from_slice(&output.stdout).expect("the parser's JSON");
    Scrape { text, samples }
}

const ISSUE_ROUTE: &str = "/v1/ecr/authorization-token";
const RULE: &str = "acme-main";

/// Runs `poke` and scrapes until `done` holds, for at most 20 seconds (the service works in
/// the background: the writer commits, key sets load, the cache renews on access).
async fn scrape_until(
    url: &str,
    mut poke: impl AsyncFnMut(),
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let started = Instant::now();
    loop {
        poke().await;
        let scrape = scrape(url).await;
        if done(&scrape) {
            return scrape;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never came true:\n{}",
            scrape.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_count_issuances_refusals_and_aws_faults_and_name_no_caller() {
    let app = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .extra_issuers(UNREACHABLE_ISSUER)
        .keys_stay_unloaded("down")
        .spawn()
        .await;
    let metrics = app.url("/metrics");
    let before = scrape(&metrics).await;
    assert_eq!(
        before.get(
            "ecr_token_broker_upstream_calls_total",
            &[("service", "sts")]
        ),
        0.0
    );
    assert_eq!(before.get("ecr_token_broker_cache_hits_total", &[]), 0.0);
    assert_eq!(
        before.get("ecr_token_broker_audit_shed_refusals_total", &[]),
        0.0
    );
    assert_eq!(
        before.get("ecr_token_broker_audit_queue_depth", &[("lane", "records")]),
        0.0
    );
    assert_eq!(
        before.get(
            "ecr_token_broker_audit_queue_depth",
            &[("lane", "refusals")]
        ),
        0.0
    );
    assert!(before.get("ecr_token_broker_jwks_fetches_total", &[("issuer", "test")]) >= 1.0);
    assert_eq!(
        before.get(
            "ecr_token_broker_jwks_fetch_failures_total",
            &[("issuer", "test")]
        ),
        0.0
    );

    // Issued twice: the second from the cache.
    let token = app.token();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = app.issue(Some(&token), None).await;
        assert_eq!(response.status(), 200);
        ids.push(request_id(&response));
    }
    // Refused: no token (401), and a token no rule maps (403).
    let response = app.issue(None, None).await;
    ids.push(request_id(&response));
    assert_problem(response, 401, "invalid-token").await;
    let stranger = app
        .issuer
        .token()
        .claim("sub", "repo:evil/secret-subject:ref:refs/heads/main")
        .claim("repository_owner", "evil")
        .sign();
    let response = app.issue(Some(&stranger), None).await;
    ids.push(request_id(&response));
    assert_problem(response, 403, "forbidden").await;
    // An AWS fault: STS throttles a caller with nothing cached.
    app.proxy().set_faults(vec![
        Fault::RealisticExpiry,
        Fault::throttling(Operation::AssumeRole),
    ]);
    let other = app
        .issuer
        .token()
        .claim("sub", "repo:acme/other-subject:ref:refs/heads/main")
        .sign();
    let response = app.issue(Some(&other), None).await;
    ids.push(request_id(&response));
    assert_problem(response, 503, "aws-throttled").await;
    assert_eq!(app.get("/no/such/path").await.status(), 404);

    let after = scrape_until(
        &metrics,
        async || {},
        |s| {
            s.value(
                "ecr_token_broker_jwks_fetch_failures_total",
                &[("issuer", "down")],
            ) >= Some(1.0)
        },
    )
    .await;

    let issuances = |outcome, reason, rule| {
        after.get(
            "ecr_token_broker_issuances_total",
            &[("outcome", outcome), ("reason", reason), ("rule", rule)],
        )
    };
    assert_eq!(issuances("issued", "issued", RULE), 2.0);
    assert_eq!(issuances("denied", "invalid_token:missing_token", ""), 1.0);
    assert_eq!(issuances("denied", "no_matching_rule", ""), 1.0);
    assert_eq!(issuances("error", "aws_throttled:AssumeRole", RULE), 1.0);
    assert_eq!(after.kind("ecr_token_broker_issuances_total"), "counter");

    let requests = |route, status| {
        after.get(
            "ecr_token_broker_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests(ISSUE_ROUTE, "200"), 2.0);
    assert_eq!(requests(ISSUE_ROUTE, "401"), 1.0);
    assert_eq!(requests(ISSUE_ROUTE, "403"), 1.0);
    assert_eq!(requests(ISSUE_ROUTE, "503"), 1.0);
    assert_eq!(requests("unmatched", "404"), 1.0);
    assert!(requests("/metrics", "200") >= 1.0);
    assert!(
        !after.text.contains("/no/such/path"),
        "raw paths are never labels"
    );
    assert_eq!(
        after.kind("ecr_token_broker_http_request_duration_seconds_bucket"),
        "histogram"
    );
    assert_eq!(
        after.get(
            "ecr_token_broker_http_request_duration_seconds_count",
            &[("route", ISSUE_ROUTE)]
        ),
        5.0
    );

    // One AssumeRole and one GetAuthorizationToken for the first caller, one throttled
    // AssumeRole for the other.
    let sts = [("service", "sts"), ("operation", "AssumeRole")];
    let ecr = [("service", "ecr"), ("operation", "GetAuthorizationToken")];
    assert_eq!(
        after.get("ecr_token_broker_upstream_calls_total", &sts),
        2.0
    );
    assert_eq!(
        after.get("ecr_token_broker_upstream_calls_total", &ecr),
        1.0
    );
    assert_eq!(
        after.get(
            "ecr_token_broker_upstream_call_duration_seconds_count",
            &sts
        ),
        2.0
    );
    assert_eq!(
        after.get(
            "ecr_token_broker_upstream_call_duration_seconds_count",
            &ecr
        ),
        1.0
    );
    assert_eq!(
        after.get(
            "ecr_token_broker_upstream_errors_total",
            &[("service", "sts"), ("code", "throttled")]
        ),
        1.0
    );
    assert_eq!(
        after.get(
            "ecr_token_broker_upstream_errors_total",
            &[("service", "ecr")]
        ),
        0.0
    );
    assert_eq!(
        after.get("ecr_token_broker_upstream_ceiling_refusals_total", &[]),
        0.0
    );

    assert_eq!(after.get("ecr_token_broker_cache_misses_total", &[]), 2.0);
    assert_eq!(after.get("ecr_token_broker_cache_hits_total", &[]), 1.0);

    // Every decision was committed; the chain head is the last row's id.
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 5);
    let head = rows
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .max()
        .unwrap();
    assert_eq!(
        after.get("ecr_token_broker_audit_chain_head_id", &[]),
        head as f64
    );
    assert_eq!(
        after.get("ecr_token_broker_audit_batch_rows_count", &[]),
        after.get("ecr_token_broker_audit_commit_duration_seconds_count", &[])
    );
    assert_eq!(after.get("ecr_token_broker_audit_batch_rows_sum", &[]), 5.0);
    assert_eq!(
        after.get("ecr_token_broker_audit_commit_failures_total", &[]),
        0.0
    );

    assert!(after.get("ecr_token_broker_jwks_fetches_total", &[("issuer", "down")]) >= 1.0);

    // No caller, request id or token is ever a label value.
    for secret in [
        "repo:acme/api:ref:refs/heads/main",
        "secret-subject",
        "other-subject",
        "octocat",
        token.as_str(),
    ]
    .iter()
    .copied()
    .chain(ids.iter().map(String::as_str))
    {
        assert!(!after.text.contains(secret), "{secret} appears in /metrics");
    }
}

#[tokio::test]
async fn a_renewal_that_fails_is_counted_as_a_refresh_and_stale_serves() {
    let app = TestApp::builder()
        .cache("min_remaining_secs = 2\nrefresh_fraction = 0.3")
        .fault(Fault::ExpiresIn(Duration::from_secs(8)))
        .spawn()
        .await;
    let token = app.token();
    assert_eq!(app.issue(Some(&token), None).await.status(), 200);
    app.proxy().set_faults(vec![
        Fault::ExpiresIn(Duration::from_secs(8)),
        Fault::throttling(Operation::AssumeRole),
    ]);

    // Ask until an answer hid the failed renewal.
    let metrics = app.url("/metrics");
    let after = scrape_until(
        &metrics,
        async || assert_eq!(app.issue(Some(&token), None).await.status(), 200),
        |s| s.get("ecr_token_broker_cache_stale_serves_total", &[]) >= 1.0,
    )
    .await;
    assert!(after.get("ecr_token_broker_cache_refreshes_total", &[]) >= 1.0);
    assert!(
        after.get(
            "ecr_token_broker_upstream_errors_total",
            &[("service", "sts"), ("code", "throttled")]
        ) >= 1.0
    );
    assert_eq!(after.get("ecr_token_broker_cache_misses_total", &[]), 1.0);
    assert_eq!(
        after.get(
            "ecr_token_broker_issuances_total",
            &[("outcome", "issued"), ("rule", RULE)]
        ),
        after.get("ecr_token_broker_cache_hits_total", &[]) + 1.0
    );
}

#[tokio::test]
async fn a_separate_listen_address_serves_metrics_alone() {
    let port = free_port();
    let app = TestApp::builder()
        .extra_config(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"))
        .spawn()
        .await;
    let metrics = format!("http://127.0.0.1:{port}");

    assert_problem(app.get("/metrics").await, 404, "not-found").await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let response = reqwest::get(format!("{metrics}/healthz")).await.unwrap();
    assert_problem(response, 404, "not-found").await;

    let scrape = scrape(&format!("{metrics}/metrics")).await;
    let requests = |route, status| {
        scrape.get(
            "ecr_token_broker_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("/healthz", "200"), 1.0);
    assert_eq!(requests("unmatched", "404"), 2.0);
}

#[test]
fn check_config_refuses_metrics_on_the_main_listen_address() {
    let message = refused_config(&format!(
        "[server]\nlisten = \"0.0.0.0:8080\"\n\n[metrics]\nlisten = \"0.0.0.0:8080\"\n{BASE}{CI_ISSUER}"
    ));
    assert_mentions(
        &message,
        &["metrics.listen: 0.0.0.0:8080 is server.listen too"],
    );
}

#[tokio::test]
async fn the_binary_serves_metrics_on_its_own_port() {
    let port = free_port();
    let service = TestApp::builder()
        .extra_config(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"))
        .spawn_process()
        .await;
    let token = service.issuer.token().sign();

    let issued = service.issue(&token).await;
    assert_eq!(issued.status(), 200);

    let scrape = scrape(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(
        scrape.get(
            "ecr_token_broker_issuances_total",
            &[("outcome", "issued"), ("rule", RULE)]
        ),
        1.0
    );
    assert!(!scrape.text.contains("repo:acme/api"), "{}", scrape.text);
    let main = reqwest::get(format!("{}/metrics", service.address))
        .await
        .unwrap();
    assert_problem(main, 404, "not-found").await;
}
