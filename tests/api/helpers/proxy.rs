//! A reverse proxy in front of moto that injects what moto cannot: realistic expiries,
//! AWS errors, throttling and delays, and counts the calls of each operation. The Host
//! header passes through unchanged, so SigV4 signatures stay valid.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::tls::{ServerCert, acceptor, serve_https};

/// Which AWS operation a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    AssumeRole,
    GetAuthorizationToken,
}

/// What the proxy does to matching requests.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Replace ECR's `expiresAt` with twelve hours from now, as real ECR answers.
    RealisticExpiry,
    /// Replace ECR's `expiresAt` with this long from now (whole seconds, as ECR answers).
    ExpiresIn(Duration),
    /// Answer `operation` with this status and AWS-style JSON/XML error code, without
    /// forwarding.
    Error {
        operation: Operation,
        status: u16,
        code: &'static str,
    },
    /// Hold `operation` this long before forwarding.
    Delay {
        operation: Operation,
        delay: Duration,
    },
}

impl Fault {
    /// `operation` answered with AWS's throttling error.
    pub fn throttling(operation: Operation) -> Self {
        Self::Error {
            operation,
            status: 400,
            code: "Throttling",
        }
    }
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    faults: Arc<Mutex<Vec<Fault>>>,
    calls: Arc<[AtomicUsize; 2]>,
    http: reqwest::Client,
    in_flight: Arc<Mutex<HashMap<Operation, InFlight>>>,
}

/// Calls of one operation being answered now, and the most there ever were at once.
#[derive(Debug, Default, Clone, Copy)]
struct InFlight {
    now: usize,
    max: usize,
}

/// Counts a call as in flight until dropped, however the handler ends.
struct InFlightGuard {
    operation: Operation,
    table: Arc<Mutex<HashMap<Operation, InFlight>>>,
}

impl InFlightGuard {
    fn enter(operation: Operation, table: &Arc<Mutex<HashMap<Operation, InFlight>>>) -> Self {
        let mut counts = table.lock().unwrap();
        let entry = counts.entry(operation).or_default();
        entry.now += 1;
        entry.max = entry.max.max(entry.now);
        Self {
            operation,
            table: table.clone(),
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Some(entry) = self.table.lock().unwrap().get_mut(&self.operation) {
            entry.now -= 1;
        }
    }
}

pub struct FaultProxy {
    pub url: String,
    faults: Arc<Mutex<Vec<Fault>>>,
    calls: Arc<[AtomicUsize; 2]>,
    server: tokio::task::JoinHandle<()>,
    in_flight: Arc<Mutex<HashMap<Operation, InFlight>>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: &str, faults: Vec<Fault>) -> Self {
        Self::start_with(upstream, faults, None).await
    }

    /// Serves HTTPS under `tls` instead of HTTP, as real AWS endpoints do: a client behind
    /// a proxy then tunnels to it with CONNECT.
    pub async fn start_with(upstream: &str, faults: Vec<Fault>, tls: Option<&ServerCert>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let in_flight = Arc::new(Mutex::new(HashMap::new()));
        let state = ProxyState {
            upstream: upstream.to_owned(),
            faults: Arc::new(Mutex::new(faults)),
            calls: Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]),
            http: reqwest::Client::new(),
            in_flight: in_flight.clone(),
        };
        let faults = state.faults.clone();
        let calls = state.calls.clone();
        let router = Router::new().fallback(forward).with_state(state);
        let server = match tls {
            None => tokio::spawn(async move {
                axum::serve(listener, router).await.expect("proxy serves");
            }),
            Some(cert) => tokio::spawn(serve_https(listener, router, acceptor(cert))),
        };
        Self {
            url,
            faults,
            calls,
            server,
            in_flight,
        }
    }

    /// The most `operation` calls the proxy was answering at the same time.
    pub fn max_in_flight(&self, operation: Operation) -> usize {
        self.in_flight
            .lock()
            .unwrap()
            .get(&operation)
            .map_or(0, |c| c.max)
    }

    /// Replaces what the proxy does from the next request on.
    pub fn set_faults(&self, faults: Vec<Fault>) {
        *self.faults.lock().unwrap() = faults;
    }

    /// How many calls of `operation` reached the proxy, faulted ones included.
    pub fn calls(&self, operation: Operation) -> usize {
        self.calls[operation as usize].load(Ordering::SeqCst)
    }
}

fn operation(headers: &HeaderMap, body: &[u8]) -> Option<Operation> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target.ends_with(".GetAuthorizationToken") {
        return Some(Operation::GetAuthorizationToken);
    }
    let body = std::str::from_utf8(body).unwrap_or_default();
    body.split('&')
        .any(|p| p == "Action=AssumeRole")
        .then_some(Operation::AssumeRole)
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("request body");
    let op = operation(&parts.headers, &body);
    let _in_flight = op.map(|op| InFlightGuard::enter(op, &state.in_flight));
    if let Some(op) = op {
        state.calls[op as usize].fetch_add(1, Ordering::SeqCst);
    }
    let faults = state.faults.lock().unwrap().clone();
    let mut expires_in = None;
    for fault in faults {
        match fault {
            Fault::Error {
                operation,
                status,
                code,
            } if Some(operation) == op => return aws_error(operation, status, code),
            Fault::Delay { operation, delay } if Some(operation) == op => {
                tokio::time::sleep(delay).await
            }
            // Real ECR tokens live 12 hours; moto answers a fixed date in 2015.
            Fault::RealisticExpiry => expires_in = Some(Duration::from_secs(12 * 3600)),
            Fault::ExpiresIn(life) => expires_in = Some(life),
            _ => {}
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = state
        .http
        .request(parts.method, format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.body(body).send().await.expect("moto answers");
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut bytes = answer.bytes().await.expect("moto body");
    if let Some(life) = expires_in
        && op == Some(Operation::GetAuthorizationToken)
        && status.is_success()
    {
        bytes = expiring_in(&bytes, life).into();
    }
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    response.body(Body::from(bytes)).unwrap()
}

fn expiring_in(body: &[u8], life: Duration) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(body).expect("ECR JSON");
    let expires_at = chrono::Utc::now().timestamp() + i64::try_from(life.as_secs()).unwrap();
    for data in json["authorizationData"]
        .as_array_mut()
        .expect("authorizationData")
    {
        data["expiresAt"] = expires_at.into();
    }
    serde_json::to_vec(&json).unwrap()
}

fn aws_error(operation: Operation, status: u16, code: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    match operation {
        Operation::GetAuthorizationToken => Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amzn-errortype", code)
            .body(Body::from(format!(r#"{{"__type":"{code}","message":"injected by the test proxy"}}"#)))
            .unwrap(),
        Operation::AssumeRole => Response::builder()
            .status(status)
            .header("content-type", "text/xml")
            .body(Body::from(format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                 <Code>{code}</Code><Message>injected by the test proxy</Message></Error>\
                 <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
            )))
            .unwrap(),
    }
}
