//! Junk cannot starve real callers: a flood of requests without a token or with a forged
//! one is charged to its client address (429) and its audit records go to a bounded lane
//! that is shed first, counted in aggregate rows, while every real caller is issued a token.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TestApp, wait_for};

/// Concurrent flooding clients, and requests each.
const FLOODERS: usize = 200;
const PER_FLOODER: usize = 40;

/// The client addresses the flood claims through the (trusted) loopback proxy.
fn flood_addr(flooder: usize) -> String {
    format!("198.51.100.{}", flooder % 20)
}

#[tokio::test]
async fn a_flood_of_junk_is_limited_and_shed_while_real_callers_are_served() {
    // Arrange: a refusal lane of 8 records, shed refusals reported every second, and the
    // test itself as the trusted proxy naming the flood's client addresses.
    let app = TestApp::builder()
        .server(r#"trusted_proxies = ["127.0.0.1/32"]"#)
        .audit("refusal_queue_capacity = 8\nshed_report_interval_secs = 1")
        .limits(
            "[rate_limit]\nper_second = 100000\nburst = 100000\n\
             unauthenticated = { per_second = 10, burst = 50 }\n",
        )
        .spawn()
        .await;
    let mut forged = app.token();
    forged.truncate(forged.len() - 8);
    forged.push_str("AAAAAAAA");
    let app = Arc::new(app);
    let answered = Arc::new(AtomicUsize::new(0));

    // Act: the flood, at full speed, and 20 real callers once it is under way.
    let flood: Vec<_> = (0..FLOODERS)
        .map(|flooder| {
            let (app, forged, answered) = (app.clone(), forged.clone(), answered.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::with_capacity(PER_FLOODER);
                for i in 0..PER_FLOODER {
                    let mut request = app
                        .http
                        .post(app.url("/v1/ecr/authorization-token"))
                        .header("x-forwarded-for", flood_addr(flooder));
                    if i % 2 == 0 {
                        request = request.bearer_auth(&forged);
                    }
                    let status = request.send().await.map(|r| r.status().as_u16());
                    answered.fetch_add(1, Ordering::Relaxed);
                    statuses.push(status.map_err(|e| e.to_string()));
                }
                statuses
            })
        })
        .collect();
    wait_for(Duration::from_secs(30), async || {
        (answered.load(Ordering::Relaxed) >= FLOODERS).then_some(())
    })
    .await
    .expect("the flood is answered");
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let (app, token) = (app.clone(), app.token());
            tokio::spawn(async move { app.issue(Some(&token), None).await.status().as_u16() })
        })
        .collect();
    let mut real = Vec::new();
    for caller in callers {
        real.push(caller.await.unwrap());
    }
    let mut flood_statuses = Vec::new();
    for flooder in flood {
        flood_statuses.extend(flooder.await.unwrap());
    }

    // Assert: every real caller got a token, the flood only 401 and 429.
    assert!(real.iter().all(|s| *s == 200), "real callers: {real:?}");
    let limited = flood_statuses.iter().filter(|s| **s == Ok(429)).count();
    let refused = flood_statuses.iter().filter(|s| **s == Ok(401)).count();
    assert_eq!(
        limited + refused,
        FLOODERS * PER_FLOODER,
        "the flood gets 401 or 429 only: {:?}",
        flood_statuses
            .iter()
            .filter(|s| !matches!(s, Ok(401 | 429)))
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(
        limited > 0,
        "client addresses ran out of failed authentications"
    );

    // Every flood request is either its own row or counted in an aggregate row, once the
    // last report is written.
    let flood_addrs: HashSet<String> = (0..20).map(flood_addr).collect();
    let accounted = wait_for(Duration::from_secs(30), async || {
        let rows = app.audit_rows().await;
        let own = rows
            .iter()
            .filter(|r| r["shed"].is_null())
            .filter(|r| {
                r["client_addr"]
                    .as_str()
                    .is_some_and(|a| flood_addrs.contains(a))
            })
            .count();
        let aggregates: Vec<Value> = rows.into_iter().filter(|r| !r["shed"].is_null()).collect();
        let shed: u64 = aggregates
            .iter()
            .map(|r| r["shed"]["count"].as_u64().unwrap())
            .sum();
        (own + shed as usize == FLOODERS * PER_FLOODER).then_some((own, shed, aggregates))
    })
    .await;
    let (own, shed, aggregates) = accounted.expect("every flood request is a row or counted");
    eprintln!(
        "flood: {} requests, {limited} got 429; {own} rows of their own, {shed} shed in {} aggregate rows",
        FLOODERS * PER_FLOODER,
        aggregates.len()
    );
    assert!(shed > 0, "the refusal lane overflowed and was shed");
    let metrics = crate::metrics::scrape(&app.url("/metrics")).await;
    assert_eq!(
        metrics.get("ecr_token_broker_audit_shed_refusals_total", &[]),
        shed as f64,
        "every shed refusal is counted in the metrics as in the aggregate rows"
    );
    for aggregate in &aggregates {
        assert_eq!(aggregate["outcome"], "denied");
        assert_eq!(aggregate["reason"], "shed");
        let summary = &aggregate["shed"];
        assert!(
            summary["since"].as_str() <= summary["until"].as_str(),
            "{summary}"
        );
        for client in summary["clients"].as_array().unwrap() {
            assert!(
                flood_addrs.contains(client["key"].as_str().unwrap()),
                "{summary}"
            );
        }
        for reason in summary["reasons"].as_array().unwrap() {
            let reason = reason["key"].as_str().unwrap();
            assert!(
                reason.starts_with("invalid_token:") || reason == "rate_limited:unauthenticated",
                "{summary}"
            );
        }
    }
    let issued = app
        .audit_rows()
        .await
        .iter()
        .filter(|r| r["outcome"] == "issued")
        .count();
    assert_eq!(issued, 20, "an issued credential's row is never shed");
    // The aggregate rows are links of the chain like any other: read back, they hash as
    // written.
    crate::chain::verifies(&app.database_url, &[]).await;
}
