//! Limits on calls: each verified identity's token bucket for everything it sends and each
//! client network's for junk (429, counted in aggregate rows), and the ceiling on calls to
//! AWS (503, with an audit row); all with `Retry-After`.

use std::time::Duration;

use futures::future::join_all;

use crate::helpers::{
    DEFAULT_RULES, Fault, Operation, TestApp, assert_problem, request_id, wait_for,
};

/// A token of the default rule's caller with its own subject.
fn token_of(app: &TestApp, subject: &str) -> String {
    app.issuer.token().claim("sub", subject).sign()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_caller_over_its_limit_gets_429_with_rate_limit_fields_and_others_are_unaffected() {
    let app = TestApp::builder()
        .limits("[rate_limit]\nper_second = 0.01\nburst = 2\n")
        .audit("shed_report_interval_secs = 1")
        .spawn()
        .await;
    let alice = token_of(&app, "repo:acme/api:alice");

    for _ in 0..2 {
        assert_eq!(app.issue(Some(&alice), None).await.status(), 200);
    }
    let refused = app.issue(Some(&alice), None).await;

    let id = request_id(&refused);
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((90..=100).contains(&retry_after), "{retry_after}");
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        "\"per-caller\";q=2;w=200"
    );
    assert_eq!(
        header(&refused, "ratelimit"),
        format!("\"per-caller\";r=0;t={retry_after}")
    );
    assert_problem(refused, 429, "rate-limited").await;
    // However fast a caller sends, its 429s add no rows of their own: they are counted in
    // the next aggregate row.
    let aggregate = wait_for(Duration::from_secs(30), async || {
        app.audit_rows()
            .await
            .into_iter()
            .find(|r| !r["shed"].is_null())
    })
    .await
    .expect("the 429 is counted in an aggregate row");
    assert_eq!(aggregate["shed"]["count"], 1);
    assert_eq!(aggregate["shed"]["reasons"][0]["key"], "rate_limited");
    let rows = app.audit_rows().await;
    assert!(!rows.iter().any(|r| r["request_id"] == id.as_str()));
    assert_eq!(rows.iter().filter(|r| r["outcome"] == "issued").count(), 2);

    let bob = token_of(&app, "repo:acme/api:bob");
    assert_eq!(app.issue(Some(&bob), None).await.status(), 200);
}

#[tokio::test]
async fn a_rules_own_limit_replaces_the_global_one_for_its_callers() {
    let rules = format!(
        r#"
[[rules]]
name = "nightly"
issuer = "test"
claims = {{ repository_owner = "acme", ref = "refs/heads/nightly" }}
role_arn = "arn:aws:iam::111122223333:role/ecr-pull"
regions = ["us-east-1"]
rate_limit = {{ per_second = 0.01, burst = 1 }}
{DEFAULT_RULES}"#
    );
    let app = TestApp::builder()
        .rules(&rules)
        .limits("[rate_limit]\nper_second = 0.01\nburst = 3\n")
        .spawn()
        .await;
    let nightly = app.issuer.token().claim("ref", "refs/heads/nightly").sign();

    assert_eq!(app.issue(Some(&nightly), None).await.status(), 200);
    let refused = app.issue(Some(&nightly), None).await;
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        "\"per-caller\";q=1;w=100"
    );
    assert_problem(refused, 429, "rate-limited").await;

    // The same subject under the main rule spends the global bucket, not the rule's.
    let main = app.token();
    for _ in 0..3 {
        assert_eq!(app.issue(Some(&main), None).await.status(), 200);
    }
    assert_eq!(app.issue(Some(&main), None).await.status(), 429);
}

/// Fires `count` issuing requests at once, each from its own caller, and returns the
/// responses' statuses and request ids, with the `Retry-After` of every 503.
async fn burst(app: &TestApp, count: usize) -> Vec<(u16, String, Option<String>)> {
    let tokens: Vec<String> = (0..count)
        .map(|i| token_of(app, &format!("repo:acme/api:job-{i}")))
        .collect();
    let responses = join_all(tokens.iter().map(|t| app.issue(Some(t), None))).await;
    let mut answers = Vec::new();
    for response in responses {
        let status = response.status().as_u16();
        let id = request_id(&response);
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        if status == 503 {
            let body = assert_problem(response, 503, "upstream-ceiling").await;
            assert!(
                body["detail"].as_str().unwrap().contains("retry in"),
                "{body}"
            );
        }
        answers.push((status, id, retry_after));
    }
    answers
}

/// Checks that a burst was partly refused at the ceiling, each refusal with `Retry-After`
/// and its audit row naming `operation`.
async fn assert_held_at_the_ceiling(
    app: &TestApp,
    answers: &[(u16, String, Option<String>)],
    operation: &str,
) {
    let issued = answers.iter().filter(|(s, ..)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, ..)| *s == 503).collect();
    assert!(issued >= 1, "{answers:?}");
    assert!(!refused.is_empty(), "{answers:?}");
    assert_eq!(issued + refused.len(), answers.len(), "{answers:?}");
    let metrics = crate::metrics::scrape(&app.url("/metrics")).await;
    let operation_label = [("operation", operation)];
    assert_eq!(
        metrics.get(
            "ecr_token_broker_upstream_ceiling_refusals_total",
            &operation_label
        ),
        refused.len() as f64,
        "each call held back at the ceiling is counted, and none was sent"
    );
    for (_, id, retry_after) in refused {
        assert_eq!(retry_after.as_deref(), Some("1"), "{answers:?}");
        let row = app.audit_row(id).await;
        assert_eq!(row["outcome"], "error");
        assert_eq!(row["reason"], format!("upstream_ceiling:{operation}"));
        assert_eq!(row["http_status"], 503);
    }
}

/// With room for one call at a time, a burst held at `operation`'s ceiling while AWS takes
/// its time answering: some callers get 503 at once, and AWS never sees two calls at once.
async fn assert_a_burst_is_held_at(ceiling: &str, operation: Operation, name: &str) {
    let app = TestApp::builder()
        .fault(Fault::Delay {
            operation,
            delay: Duration::from_millis(800),
        })
        .limits(&format!(
            "[aws.{ceiling}]\nmax_concurrent = 1\nper_second = 1000\nmax_wait_ms = 100\n"
        ))
        .spawn()
        .await;

    let answers = burst(&app, 8).await;

    assert_eq!(app.proxy().max_in_flight(operation), 1);
    assert_held_at_the_ceiling(&app, &answers, name).await;
}

#[tokio::test]
async fn a_burst_beyond_the_ecr_ceiling_gets_503s_instead_of_piling_onto_aws() {
    assert_a_burst_is_held_at(
        "ecr_ceiling",
        Operation::GetAuthorizationToken,
        "GetAuthorizationToken",
    )
    .await;
}

#[tokio::test]
async fn a_burst_beyond_the_sts_ceiling_gets_503s_instead_of_piling_onto_aws() {
    assert_a_burst_is_held_at("sts_ceiling", Operation::AssumeRole, "AssumeRole").await;
}

#[tokio::test]
async fn a_calls_per_second_ceiling_spreads_a_burst_out_within_the_wait() {
    // Two calls a second, and a wait long enough for the second cell but not the rest.
    let app = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .limits("[aws.sts_ceiling]\nmax_concurrent = 100\nper_second = 2\nmax_wait_ms = 700\n")
        .spawn()
        .await;

    let answers = burst(&app, 6).await;

    let issued = answers.iter().filter(|(s, ..)| *s == 200).count();
    assert!((2..=4).contains(&issued), "{answers:?}");
    assert_held_at_the_ceiling(&app, &answers, "AssumeRole").await;
}

/// A validly signed stranger (no rule matches) and a denied caller: every request either
/// sends is charged to one budget, whichever endpoint and however malformed, and past it
/// their refusals add no rows of their own.
#[tokio::test]
async fn a_verified_stranger_has_one_budget_for_everything_and_adds_bounded_rows() {
    const BURST: usize = 4;
    let app = TestApp::builder()
        .limits(&format!(
            "[rate_limit]\nunadmitted = {{ per_second = 0.001, burst = {BURST} }}\n"
        ))
        .audit("shed_report_interval_secs = 1")
        .extra_config("[[deny]]\nsubject = \"repo:acme/leaky:*\"\nreason = \"leaked\"\n")
        .spawn()
        .await;
    let stranger = app
        .issuer
        .token()
        .claim("sub", "repo:evil/x:ref:refs/heads/main")
        .claim("repository_owner", "evil")
        .sign();
    let denied = token_of(&app, "repo:acme/leaky:ref:refs/heads/main");

    let mut refused_issues = 0;
    for (token, subject) in [
        (&stranger, "repo:evil/x:ref:refs/heads/main"),
        (&denied, "repo:acme/leaky:ref:refs/heads/main"),
    ] {
        let mut statuses = Vec::new();
        for i in 0..30 {
            let response = match i % 4 {
                0 => app.issue(Some(token), None).await,
                1 => {
                    app.issue(Some(token), Some(serde_json::json!({"access": 7})))
                        .await
                }
                2 => app.whoami(token).await,
                _ => app.audit_issuances(token, &[]).await,
            };
            if response.status() == 429 {
                refused_issues += u64::from(i % 4 < 2);
                assert_eq!(
                    header(&response, "ratelimit-policy"),
                    format!("\"unadmitted-per-caller\";q={BURST};w={}", BURST * 1000)
                );
                assert!(header(&response, "retry-after").parse::<u64>().unwrap() > 0);
                assert_problem(response, 429, "rate-limited").await;
                statuses.push(429);
            } else {
                statuses.push(response.status().as_u16());
            }
        }
        assert!(
            statuses[..BURST].iter().all(|&s| s != 429),
            "{subject}: {statuses:?}"
        );
        assert!(
            statuses[BURST..].iter().all(|&s| s == 429),
            "{subject}: one budget for every endpoint: {statuses:?}"
        );
        let own_rows = app
            .audit_rows()
            .await
            .into_iter()
            .filter(|r| r["subject"] == subject)
            .count();
        assert!(
            own_rows <= BURST,
            "{subject}: {own_rows} rows for {BURST} requests within its budget"
        );
    }

    // The real caller is unaffected, and everything refused past a budget is counted.
    assert_eq!(app.issue(Some(&app.token()), None).await.status(), 200);
    wait_for(Duration::from_secs(30), async || {
        let shed: u64 = app
            .audit_rows()
            .await
            .iter()
            .filter_map(|r| r["shed"]["count"].as_u64())
            .sum();
        // Refused reads and whoami calls are never audited.
        (shed == refused_issues).then_some(())
    })
    .await
    .expect("every refused issuing request is counted in an aggregate row");
}

/// An admitted caller's budget covers whatever it asks: reading its records and asking who
/// it is spend it as issuing does.
#[tokio::test]
async fn an_admitted_callers_reads_spend_its_budget_too() {
    let app = TestApp::builder()
        .limits("[rate_limit]\nper_second = 0.001\nburst = 3\n")
        .spawn()
        .await;
    let token = app.token();
    assert_eq!(app.whoami(&token).await.status(), 200);
    assert_eq!(app.audit_issuances(&token, &[]).await.status(), 200);
    assert_eq!(app.issue(Some(&token), None).await.status(), 200);
    let refused = app.issue(Some(&token), None).await;
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        "\"per-caller\";q=3;w=3000"
    );
    assert_problem(refused, 429, "rate-limited").await;
    assert_problem(app.whoami(&token).await, 429, "rate-limited").await;
}

/// Junk from one IPv6 /64 is one bucket, however many of its addresses it rotates through.
#[tokio::test]
async fn junk_from_rotating_ipv6_addresses_shares_its_networks_bucket() {
    let app = TestApp::builder()
        .server(r#"trusted_proxies = ["127.0.0.1/32"]"#)
        .limits("[rate_limit]\nunauthenticated = { per_second = 0.001, burst = 5 }\n")
        .spawn()
        .await;
    let junk = |addr: String| {
        app.http
            .post(app.url("/v1/ecr/authorization-token"))
            .header("x-forwarded-for", addr)
            .bearer_auth("not-a-jwt")
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..20u32 {
        let response = junk(format!("2001:db8:1:2:{:x}::{:x}", i * 7, i + 1))
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [429; 15], "{statuses:?}");
    // The same bucket on every endpoint behind a bearer token.
    let whoami = app
        .http
        .get(app.url("/v1/whoami"))
        .header("x-forwarded-for", "2001:db8:1:2::99")
        .bearer_auth("not-a-jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 429);
    // The next network has a bucket of its own.
    let other = junk("2001:db8:1:3::1".to_owned()).await.unwrap();
    assert_eq!(other.status(), 401);
}
