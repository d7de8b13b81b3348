//! Retries of 429 and 503 answers, through a stub in front of the real broker.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::helpers::{ROLE_ACCOUNT, free_port};

use super::*;

/// An HTTP stub in front of the broker: it answers the first requests as scripted
/// (status, Retry-After) and passes the rest through, noting when each arrived and when
/// each scripted answer left.
#[derive(Clone)]
struct Stub {
    broker: String,
    script: Arc<Mutex<VecDeque<(StatusCode, &'static str)>>>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    answered: Arc<Mutex<Vec<Instant>>>,
    http: reqwest::Client,
}

impl Stub {
    /// Starts the stub; returns it and its URL.
    async fn start(broker: &str, script: &[(StatusCode, &'static str)]) -> (Self, String) {
        let stub = Self {
            broker: broker.to_owned(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            arrivals: Arc::default(),
            answered: Arc::default(),
            http: reqwest::Client::new(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = Router::new()
            .fallback(answer_or_forward)
            .with_state(stub.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (stub, url)
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }

    fn answered(&self) -> Vec<Instant> {
        self.answered.lock().unwrap().clone()
    }
}

async fn answer_or_forward(
    State(stub): State<Stub>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    stub.arrivals.lock().unwrap().push(Instant::now());
    let scripted = stub.script.lock().unwrap().pop_front();
    if let Some((status, retry_after)) = scripted {
        let problem = json!({
            "type": "https://ecr-token-broker.dev/problems/unavailable",
            "title": "Unavailable", "status": status.as_u16(),
            "detail": "the stub is busy", "requestId": "stub-request",
        });
        let response = (
            status,
            [
                (header::RETRY_AFTER, retry_after),
                (header::CONTENT_TYPE, "application/problem+json"),
            ],
            problem.to_string(),
        )
            .into_response();
        // Noted before the answer leaves, so that the next arrival, noted after it came,
        // is at least the client's wait later however slowly this task runs.
        stub.answered.lock().unwrap().push(Instant::now());
        return response;
    }
    let forwarded = stub
        .http
        .post(format!("{}{}", stub.broker, uri.path()))
        .header(
            header::AUTHORIZATION,
            headers[header::AUTHORIZATION].clone(),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("the broker answers");
    let status = StatusCode::from_u16(forwarded.status().as_u16()).unwrap();
    let content_type = forwarded.headers()[header::CONTENT_TYPE].clone();
    let body = forwarded.bytes().await.unwrap();
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[tokio::test]
async fn busy_answers_are_retried_as_retry_after_says() {
    // Arrange: a 503 and a 429, each asking for one second, then the real broker
    let app = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .spawn()
        .await;
    let jwt = app.token();
    let (stub, url) = Stub::start(
        &app.address,
        &[
            (StatusCode::SERVICE_UNAVAILABLE, "1"),
            (StatusCode::TOO_MANY_REQUESTS, "1"),
        ],
    )
    .await;
    let machine = Machine::new(&url, &jwt);

    // Act
    let answer = machine.get(HOST, &[&jwt]).await;

    // Assert: three attempts, each after the second asked for, and one issuance
    assert_eq!(answer["Secret"], format!("{ROLE_ACCOUNT}-auth-token"));
    let (arrivals, answered) = (stub.arrivals(), stub.answered());
    assert_eq!(arrivals.len(), 3, "two refusals, then the broker");
    assert_eq!(answered.len(), 2);
    for (refused, retried) in answered.iter().zip(&arrivals[1..]) {
        let gap = *retried - *refused;
        assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    }
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["outcome"], "issued");
}

#[tokio::test]
async fn retries_are_bounded_in_number_and_time() {
    let app = TestApp::spawn().await;
    let jwt = app.token();

    // Arrange / Act: the broker busy for good, asking to come back at once
    let (stub, url) =
        Stub::start(&app.address, &[(StatusCode::SERVICE_UNAVAILABLE, "0"); 20]).await;
    let busy = Machine::new(&url, &jwt).run(&["get"], HOST).await;

    // Assert: five attempts, then the broker's own words
    let message = one_line_failure(&busy, &[&jwt]);
    assert_eq!(stub.arrivals().len(), 5);
    assert_eq!(
        message,
        format!("{BINARY}: the broker failed (503): the stub is busy (request id stub-request)")
    );

    // Arrange / Act: a Retry-After longer than the call may take
    let (stub, url) = Stub::start(&app.address, &[(StatusCode::TOO_MANY_REQUESTS, "120")]).await;
    let machine = Machine::new(&url, &jwt).set("ECR_TOKEN_BROKER_TIMEOUT_SECONDS", "20");
    let started = Instant::now();
    let throttled = machine.run(&["get"], HOST).await;

    // Assert: it gives up at once rather than outwait its budget
    let message = one_line_failure(&throttled, &[&jwt]);
    assert!(message.contains("the broker failed (429)"), "{message}");
    assert_eq!(stub.arrivals().len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(app.audit_rows().await.is_empty());

    // Arrange / Act: nothing listening at all
    let closed = format!("http://127.0.0.1:{}", free_port());
    let unreachable = Machine::new(&closed, &jwt)
        .set("ECR_TOKEN_BROKER_TIMEOUT_SECONDS", "3")
        .run(&["get"], HOST)
        .await;
    let message = one_line_failure(&unreachable, &[&jwt]);
    assert!(message.contains("cannot connect"), "{message}");
}
