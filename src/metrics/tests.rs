//! What a scrape shows: unmatched paths counted under one label, issuances by outcome, reason and
//! rule with bounded series, queue depths, and upstream failures by kind.

use axum::body::to_bytes;

use super::*;
use crate::credentials::{AwsError, AwsErrorKind};

fn metrics() -> Metrics {
    Metrics::new(["/v1/ecr/authorization-token", "/healthz"])
}

async fn text(metrics: &Metrics) -> String {
    let body = metrics.render((3, 1), None).into_body();
    String::from_utf8(to_bytes(body, usize::MAX).await.unwrap().to_vec()).unwrap()
}

#[tokio::test]
async fn a_path_no_route_matched_is_counted_as_unmatched_never_by_itself() {
    let metrics = metrics();

    metrics.request(Some("/healthz"), 200, Duration::from_millis(2));
    metrics.request(Some("/repo:acme/secret"), 404, Duration::from_millis(1));
    metrics.request(None, 404, Duration::from_millis(1));

    let text = text(&metrics).await;
    assert!(
        text.contains(r#"ecr_token_broker_http_requests_total{route="/healthz",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ecr_token_broker_http_requests_total{route="unmatched",status="404"} 2"#),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains(r#"ecr_token_broker_http_request_duration_seconds_bucket{route="/healthz",le="0.0025"} 1"#), "{text}");
}

#[tokio::test]
async fn issuances_are_counted_by_outcome_reason_and_rule_and_the_series_are_bounded() {
    let metrics = metrics();

    metrics.issuance("issued", "issued", Some("ci"));
    metrics.issuance("issued", "issued", Some("ci"));
    metrics.issuance("denied", "no_matching_rule", None);
    for i in 0..MAX_ISSUANCE_SERIES + 10 {
        metrics.issuance(
            "error",
            &format!("aws_refused:AssumeRole:Code{i}"),
            Some("ci"),
        );
    }

    let text = text(&metrics).await;
    assert!(
        text.contains(
            r#"ecr_token_broker_issuances_total{outcome="issued",reason="issued",rule="ci"} 2"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"ecr_token_broker_issuances_total{outcome="denied",reason="no_matching_rule",rule=""} 1"#), "{text}");
    let series = text
        .lines()
        .filter(|l| l.starts_with("ecr_token_broker_issuances_total{"))
        .count();
    assert_eq!(
        series,
        MAX_ISSUANCE_SERIES + 1,
        "the cap and one `other` series"
    );
    assert!(
        text.contains(
            r#"ecr_token_broker_issuances_total{outcome="error",reason="other",rule="ci"} 12"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_scrape_reports_the_queue_depths_and_every_series_has_help() {
    let metrics = metrics();
    let _cache = metrics.cache();
    let _writer = metrics.audit_writer();

    let text = text(&metrics).await;
    assert!(
        text.contains(r#"ecr_token_broker_audit_queue_depth{lane="records"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ecr_token_broker_audit_queue_depth{lane="refusals"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("# HELP ecr_token_broker_cache_hits_total "),
        "{text}"
    );
    assert!(
        text.contains("# TYPE ecr_token_broker_audit_chain_head_id gauge"),
        "{text}"
    );
}

#[tokio::test]
async fn upstream_failures_are_counted_by_kind_and_ceiling_refusals_apart() {
    let metrics = metrics();
    let sts = metrics.upstream(Service::Sts);

    let refused = sts
        .call(async {
            Err::<(), _>(AwsError::new(
                "AssumeRole",
                AwsErrorKind::Refused {
                    code: "AccessDenied".into(),
                },
            ))
        })
        .await;
    assert!(refused.is_err());
    sts.failed(&AwsError::new(
        "AssumeRole",
        AwsErrorKind::Ceiling {
            retry_after: Duration::from_secs(1),
        },
    ));

    let text = text(&metrics).await;
    assert!(
        text.contains(
            r#"ecr_token_broker_upstream_calls_total{service="sts",operation="AssumeRole"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"ecr_token_broker_upstream_errors_total{service="sts",code="refused"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"ecr_token_broker_upstream_errors_total{service="sts",code="throttled"} 0"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"ecr_token_broker_upstream_ceiling_refusals_total{service="sts",operation="AssumeRole"} 1"#), "{text}");
    assert!(!text.contains("AccessDenied"), "{text}");
}
