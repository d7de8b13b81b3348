//! The client binary, `docker-credential-ecr-token-broker`, driven over its real stdin and
//! stdout protocols (docker's credential helper, kubelet's credential provider) against the
//! live broker. The broker's audit rows count the client's requests: one row per request,
//! so a cache hit is a run that adds none.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::helpers::{Fault, ROLE_ACCOUNT, TestApp, fingerprint, free_port};

/// A host the default rule allows (its account, its first region).
const HOST: &str = "111122223333.dkr.ecr.us-east-1.amazonaws.com";
const BINARY: &str = "docker-credential-ecr-token-broker";
const KUBELET_API: &str = "credentialprovider.kubelet.k8s.io/v1";

/// The client binary, built beside this test binary by `cargo build -p
/// ecr-token-broker-client` (scripts/test.sh does that first; so does a plain `cargo test`,
/// the client being a default member of the workspace).
fn client_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/api-… → target/<profile>/
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir.join(BINARY);
    assert!(
        binary.is_file(),
        "the client binary {} is missing: build it with \
         `cargo build --locked -p ecr-token-broker-client` (scripts/test.sh does), or run \
         the tests with a plain `cargo test`",
        binary.display()
    );
    binary
}

/// A machine the client runs on: its own cache directory, a token file, and the
/// environment the client sees (nothing of the test's own).
struct Machine {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Machine {
    /// A machine whose client talks to `broker` as the caller of `jwt`, read from a file.
    fn new(broker: &str, jwt: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let machine = Self {
            dir,
            env: Vec::new(),
        };
        std::fs::write(machine.token_file(), jwt).expect("write the token file");
        let token_file = machine.token_file().display().to_string();
        let cache_dir = machine.cache_dir().display().to_string();
        machine
            .set("ECR_TOKEN_BROKER_URL", broker)
            .set("ECR_TOKEN_BROKER_JWT_FILE", &token_file)
            .set("ECR_TOKEN_BROKER_CACHE_DIR", &cache_dir)
    }

    /// Sets (or, with an empty value, unsets) one variable of the client's environment.
    fn set(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache/ecr-token-broker")
    }

    /// Runs the client with `args`, `stdin` as its input.
    async fn run(&self, args: &[&str], stdin: &str) -> Output {
        self.run_program(&client_binary(), args, stdin).await
    }

    async fn run_program(&self, program: &Path, args: &[&str], stdin: &str) -> Output {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the client binary");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("the client finishes")
            .expect("the client runs")
    }

    /// `get` for `server_url`, which must succeed: the answer's JSON.
    async fn get(&self, server_url: &str, secrets: &[&str]) -> Value {
        let output = self.run(&["get"], &format!("{server_url}\n")).await;
        assert_quiet(&output, secrets);
        assert!(
            output.status.success(),
            "get failed: {}",
            text(&output.stdout)
        );
        serde_json::from_slice(&output.stdout).expect("get prints JSON")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that stderr is empty and that neither stream holds any of `secrets`.
fn assert_quiet(output: &Output, secrets: &[&str]) {
    assert_eq!(text(&output.stderr), "", "stderr");
    assert_no_secret(output, secrets);
}

/// Asserts that stderr holds none of `secrets` (a JWT, a password).
fn assert_no_secret(output: &Output, secrets: &[&str]) {
    let stderr = text(&output.stderr);
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(!stderr.contains(secret), "stderr holds a secret: {stderr}");
    }
}

/// Asserts a failure whose message is one line on stderr, prefixed with the binary's name,
/// and returns it.
fn one_line_failure(output: &Output, secrets: &[&str]) -> String {
    assert_eq!(output.status.code(), Some(1), "exit status");
    assert_no_secret(output, secrets);
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.starts_with(&format!("{BINARY}: ")), "{stderr}");
    stderr.trim_end().to_owned()
}

/// The password's authorization token, as the broker issued and fingerprinted it.
fn authorization_token(answer: &Value) -> String {
    let user = answer["Username"].as_str().unwrap();
    let password = answer["Secret"].as_str().unwrap();
    STANDARD.encode(format!("{user}:{password}"))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A broker whose ECR tokens live twelve hours, as real ECR's do (moto's expired long ago),
/// the default caller's JWT, and a machine whose client reads it from a file.
async fn broker_and_caller() -> (TestApp, String, Machine) {
    let app = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .spawn()
        .await;
    let jwt = app.token();
    let machine = Machine::new(&app.address, &jwt);
    (app, jwt, machine)
}

#[tokio::test]
async fn get_answers_with_the_issued_credential_and_then_from_the_cache() {
    // Arrange
    let (app, jwt, machine) = broker_and_caller().await;

    // Act
    let first = machine.get(HOST, &[&jwt]).await;

    // Assert: the answer is the credential the broker issued and audited
    let password = format!("{ROLE_ACCOUNT}-auth-token");
    assert_eq!(
        first,
        json!({"ServerURL": HOST, "Username": "AWS", "Secret": password})
    );
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "issued");
    assert_eq!(
        rows[0]["proxy_endpoints"],
        json!([format!("https://{HOST}")])
    );
    assert_eq!(
        rows[0]["token_fingerprints"],
        json!([fingerprint(&authorization_token(&first))])
    );
    assert!(
        rows[0]["user_agent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("ecr-token-broker-client/")),
        "{}",
        rows[0]["user_agent"]
    );

    // Act: again, and with docker's other spelling of the host
    let second = machine.get(HOST, &[&jwt, &password]).await;
    let spelled = machine.get(&format!("https://{HOST}"), &[&jwt]).await;

    // Assert: both from the cache, with no request to the broker
    assert_eq!(second, first);
    assert_eq!(spelled["ServerURL"], format!("https://{HOST}"));
    assert_eq!(spelled["Secret"], first["Secret"]);
    assert_eq!(
        app.audit_rows().await.len(),
        1,
        "a cache hit makes no request"
    );

    // Assert: the cache is private and holds no JWT
    let cache = machine.cache_dir();
    assert_eq!(mode(&cache), 0o700);
    let files: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
    assert!(!std::fs::read_to_string(&files[0]).unwrap().contains(&jwt));
}

#[tokio::test]
async fn list_shows_cached_hosts_and_erase_forgets_them() {
    // Arrange
    let (app, jwt, machine) = broker_and_caller().await;
    let listing = async || {
        let output = machine.run(&["list"], "").await;
        assert_quiet(&output, &[&jwt]);
        assert!(output.status.success());
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    assert_eq!(listing().await, json!({}));
    machine.get(HOST, &[&jwt]).await;

    // Act / Assert: list
    assert_eq!(listing().await, json!({HOST: "AWS"}));

    // Act / Assert: erase, after which get asks the broker again
    let erased = machine.run(&["erase"], &format!("https://{HOST}\n")).await;
    assert_quiet(&erased, &[&jwt]);
    assert!(erased.status.success());
    assert_eq!(text(&erased.stdout), "");
    assert_eq!(listing().await, json!({}));
    machine.get(HOST, &[&jwt]).await;
    assert_eq!(app.audit_rows().await.len(), 2);

    // Act / Assert: store is refused, and the password it was given goes nowhere
    let stored = machine
        .run(
            &["store"],
            &json!({"ServerURL": HOST, "Username": "AWS", "Secret": "hunter2-secret"}).to_string(),
        )
        .await;
    let message = one_line_failure(&stored, &["hunter2-secret"]);
    assert!(message.contains("store is not supported"), "{message}");
    assert!(!text(&stored.stdout).contains("hunter2-secret"));
    assert!(text(&stored.stdout).starts_with("store is not supported"));

    // Act / Assert: version, in docker-credential-helpers' format
    let version = machine.run(&["version"], "").await;
    assert_quiet(&version, &[&jwt]);
    assert_eq!(
        text(&version.stdout),
        "docker-credential-ecr-token-broker (ecr-token-broker-client) 0.1.0\n"
    );
}

#[tokio::test]
async fn a_cache_directory_others_can_open_is_not_used() {
    // Arrange
    let (app, jwt, machine) = broker_and_caller().await;
    let cache = machine.cache_dir();
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Act
    let output = machine.run(&["get"], HOST).await;

    // Assert: the credential, one warning line, and nothing written
    assert!(output.status.success(), "{}", text(&output.stdout));
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let password = answer["Secret"].as_str().unwrap();
    assert_no_secret(&output, &[&jwt, password]);
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("{BINARY}: warning: ")) && stderr.contains("mode 0755"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
    assert_eq!(mode(&cache), 0o755, "left as it was");
    assert_eq!(app.audit_rows().await.len(), 1);
}

#[tokio::test]
async fn the_kubelet_provider_answers_a_request_keyed_by_registry_for_half_the_life() {
    // Arrange: the JWT from a command this time
    let (app, jwt, machine) = broker_and_caller().await;
    let command = format!("cat '{}'", machine.token_file().display());
    let machine = machine
        .set("ECR_TOKEN_BROKER_JWT_FILE", "")
        .set("ECR_TOKEN_BROKER_JWT_COMMAND", &command);
    let request = json!({
        "apiVersion": KUBELET_API,
        "kind": "CredentialProviderRequest",
        "image": format!("{HOST}/team-a/api:1.0"),
    })
    .to_string();

    // Act
    let before = Utc::now();
    let output = machine
        .run(&["kubelet-credential-provider"], &request)
        .await;

    // Assert
    assert_quiet(&output, &[&jwt]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    let response: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(response["kind"], "CredentialProviderResponse");
    assert_eq!(response["apiVersion"], KUBELET_API);
    assert_eq!(response["cacheKeyType"], "Registry");
    assert_eq!(
        response["auth"],
        json!({HOST: {"username": "AWS", "password": format!("{ROLE_ACCOUNT}-auth-token")}})
    );
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 1);
    let expires_at: DateTime<Utc> = rows[0]["expires_at"].as_str().unwrap().parse().unwrap();
    let half_life = |from: DateTime<Utc>| (expires_at - from).num_seconds() / 2;
    let cache_duration: i64 = response["cacheDuration"]
        .as_str()
        .and_then(|d| d.strip_suffix('s'))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("cacheDuration in seconds: {}", response["cacheDuration"]));
    // Half the life left when the broker answered: between then and now.
    assert!(
        (half_life(Utc::now()) - 1..=half_life(before)).contains(&cache_duration),
        "cacheDuration {cache_duration}s, expiry {expires_at}"
    );
    assert!(
        cache_duration > 600,
        "the rule's 1800 s session: {cache_duration}"
    );

    // Act: the same binary under the provider's own name, with no argument
    let linked = machine
        .dir
        .path()
        .join("ecr-token-broker-credential-provider");
    std::os::unix::fs::symlink(client_binary(), &linked).unwrap();
    let again = machine.run_program(&linked, &[], &request).await;

    // Assert: the same answer, from the cache
    assert_quiet(&again, &[&jwt]);
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["auth"], response["auth"]);
    assert_eq!(app.audit_rows().await.len(), 1);
}

#[tokio::test]
async fn the_kubelet_provider_uses_the_pod_s_token_when_kubelet_sends_one() {
    // Arrange: no JWT configured; kubelet (tokenAttributes) passes the pod's token
    let (app, _, machine) = broker_and_caller().await;
    let machine = machine.set("ECR_TOKEN_BROKER_JWT_FILE", "");
    let pod_token = app
        .issuer
        .token()
        .claim("sub", "system:serviceaccount:team-a:api")
        .sign();
    let request = |token: Option<&str>| {
        let mut request = json!({
            "apiVersion": KUBELET_API, "kind": "CredentialProviderRequest",
            "image": format!("{HOST}/team-a/api:1.0"),
            "serviceAccountAnnotations": {},
        });
        if let Some(token) = token {
            request["serviceAccountToken"] = json!(token);
        }
        request.to_string()
    };

    // Act
    let output = machine
        .run(&["kubelet-credential-provider"], &request(Some(&pod_token)))
        .await;

    // Assert: issued to the pod's identity
    assert_quiet(&output, &[&pod_token]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["subject"], "system:serviceaccount:team-a:api");

    // Act / Assert: without a token in the request or the environment, a clear refusal
    let output = machine
        .run(&["kubelet-credential-provider"], &request(None))
        .await;
    let message = one_line_failure(&output, &[&pod_token]);
    assert!(message.contains("no JWT"), "{message}");
}

#[tokio::test]
async fn other_registries_are_not_found_and_refused_callers_fail_clearly() {
    // Arrange
    let (app, jwt, machine) = broker_and_caller().await;

    // Act / Assert: a registry that is not ECR's is docker's "not found", with no request
    for server_url in ["https://index.docker.io/v1/", "ghcr.io"] {
        let output = machine.run(&["get"], server_url).await;
        assert_quiet(&output, &[&jwt]);
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            text(&output.stdout),
            "credentials not found in native keychain\n"
        );
    }
    assert!(app.audit_rows().await.is_empty());

    // Act / Assert: a caller no rule allows
    let stranger = app
        .issuer
        .token()
        .claim("repository_owner", "mallory")
        .sign();
    std::fs::write(machine.token_file(), &stranger).unwrap();
    let denied = machine.run(&["get"], HOST).await;
    let message = one_line_failure(&denied, &[&stranger]);
    assert!(
        message.contains("the broker refused the request (403)"),
        "{message}"
    );
    // docker shows the helper's stdout: the same message is there.
    assert_eq!(
        text(&denied.stdout).trim_end(),
        message.strip_prefix(&format!("{BINARY}: ")).unwrap()
    );
    let request_id = message
        .rsplit_once("(request id ")
        .and_then(|(_, id)| id.strip_suffix(')'))
        .unwrap_or_else(|| panic!("the message names the request id: {message}"));
    assert_eq!(app.audit_row(request_id).await["outcome"], "denied");

    // Act / Assert: an allowed caller asking for a registry its rule does not name
    std::fs::write(machine.token_file(), &jwt).unwrap();
    let outside = machine
        .run(&["get"], "999988887777.dkr.ecr.us-east-1.amazonaws.com")
        .await;
    let message = one_line_failure(&outside, &[&jwt]);
    assert!(message.contains("(403)"), "{message}");

    // Act / Assert: an expired JWT
    let expired = app.issuer.token().shifted(-7200).sign();
    std::fs::write(machine.token_file(), &expired).unwrap();
    let refused = machine.run(&["get"], HOST).await;
    let message = one_line_failure(&refused, &[&expired]);
    assert!(message.contains("(401)"), "{message}");

    // Act / Assert: the kubelet provider refused: nothing on stdout, one line on stderr
    std::fs::write(machine.token_file(), &stranger).unwrap();
    let request = json!({
        "apiVersion": KUBELET_API, "kind": "CredentialProviderRequest",
        "image": format!("{HOST}/team-a/api:1.0"),
    });
    let kubelet = machine
        .run(&["kubelet-credential-provider"], &request.to_string())
        .await;
    let message = one_line_failure(&kubelet, &[&stranger]);
    assert!(message.contains("(403)"), "{message}");
    assert_eq!(text(&kubelet.stdout), "");

    // Nothing was cached for any of them.
    assert!(
        !machine.cache_dir().exists()
            || std::fs::read_dir(machine.cache_dir()).unwrap().count() == 0
    );
}

/// An HTTP stub in front of the broker: it answers the first requests as scripted
/// (status, Retry-After) and passes the rest through, noting when each arrived.
#[derive(Clone)]
struct Stub {
    broker: String,
    script: Arc<Mutex<VecDeque<(StatusCode, &'static str)>>>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    http: reqwest::Client,
}

impl Stub {
    /// Starts the stub; returns it and its URL.
    async fn start(broker: &str, script: &[(StatusCode, &'static str)]) -> (Self, String) {
        let stub = Self {
            broker: broker.to_owned(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            arrivals: Arc::default(),
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
        return (
            status,
            [
                (header::RETRY_AFTER, retry_after),
                (header::CONTENT_TYPE, "application/problem+json"),
            ],
            problem.to_string(),
        )
            .into_response();
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
    let arrivals = stub.arrivals();
    assert_eq!(arrivals.len(), 3, "two refusals, then the broker");
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
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

/// kubelet's `matchImages` glob match for a registry host: as many DNS labels as the
/// pattern, each `*` standing for one whole label or the rest of a partial one.
fn kubelet_glob_matches(pattern: &str, host: &str) -> bool {
    fn label_matches(pattern: &str, label: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == label,
            Some((prefix, rest)) => {
                label.starts_with(prefix)
                    && (0..=label.len() - prefix.len())
                        .any(|skip| label_matches(rest, &label[prefix.len() + skip..]))
            }
        }
    }
    let (patterns, labels): (Vec<&str>, Vec<&str>) =
        (pattern.split('.').collect(), host.split('.').collect());
    patterns.len() == labels.len()
        && patterns
            .iter()
            .zip(&labels)
            .all(|(p, l)| label_matches(p, l))
}

/// deploy/kubelet/credential-provider-config.yaml as JSON. kubernetes-validate has no
/// schema for kubelet's CredentialProviderConfig, so its shape is checked here instead.
fn kubelet_config() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubelet/credential-provider-config.yaml");
    let python = crate::helpers::moto::moto_binary().with_file_name("python");
    let output = std::process::Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("running {} ({e}); run scripts/test.sh", python.display()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn the_example_kubelet_config_runs_the_provider_for_every_ecr_host() {
    // Arrange
    let config = kubelet_config();
    assert_eq!(config["apiVersion"], "kubelet.config.k8s.io/v1");
    assert_eq!(config["kind"], "CredentialProviderConfig");
    let providers = config["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 1);
    let provider = &providers[0];
    let fields: Vec<&str> = provider
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for field in &fields {
        assert!(
            [
                "name",
                "matchImages",
                "defaultCacheDuration",
                "apiVersion",
                "args",
                "env"
            ]
            .contains(field),
            "not a field of kubelet's CredentialProvider: {field}"
        );
    }
    assert_eq!(
        provider["name"], BINARY,
        "kubelet runs the binary by this name"
    );
    assert_eq!(provider["apiVersion"], KUBELET_API);
    let duration = provider["defaultCacheDuration"].as_str().unwrap();
    assert!(
        duration
            .strip_suffix('m')
            .is_some_and(|m| m.parse::<u32>().is_ok()),
        "a Go duration: {duration}"
    );

    // Assert: the globs cover every ECR endpoint kind and partition, and nothing else
    let globs: Vec<&str> = provider["matchImages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    for host in [
        HOST,
        "111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn",
        "111122223333.dkr.ecr.us-gov-west-1.amazonaws.com",
        "111122223333.dkr.ecr-fips.us-east-1.amazonaws.com",
        "111122223333.dkr-ecr.eu-west-1.on.aws",
        "111122223333.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
        "111122223333.dkr-ecr-fips.us-east-1.on.aws",
    ] {
        assert!(
            globs.iter().any(|g| kubelet_glob_matches(g, host)),
            "{host} is not matched by {globs:?}"
        );
    }
    for host in ["public.ecr.aws", "docker.io", "ghcr.io", "registry.k8s.io"] {
        assert!(
            !globs.iter().any(|g| kubelet_glob_matches(g, host)),
            "{host} must not be sent to the broker"
        );
    }

    // Act: the provider run as the config says, with its environment pointed at a live
    // broker and a token file of this test
    let (app, jwt, mut machine) = broker_and_caller().await;
    let args: Vec<&str> = provider["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let help = text(&machine.run(&["--help"], "").await.stdout);
    let token_file = machine.token_file().display().to_string();
    let cache_dir = machine.cache_dir().display().to_string();
    for variable in provider["env"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap();
        assert!(
            help.contains(&format!("  {name} ")),
            "{name} is not a setting --help documents"
        );
        let value = match name {
            "ECR_TOKEN_BROKER_URL" => app.address.as_str(),
            "ECR_TOKEN_BROKER_JWT_FILE" => token_file.as_str(),
            "ECR_TOKEN_BROKER_CACHE_DIR" => cache_dir.as_str(),
            _ => variable["value"].as_str().unwrap(),
        };
        machine = machine.set(name, value);
    }
    let request = json!({
        "apiVersion": KUBELET_API, "kind": "CredentialProviderRequest",
        "image": format!("{HOST}/team-a/api:1.0"),
    });
    let output = machine.run(&args, &request.to_string()).await;

    // Assert
    assert_quiet(&output, &[&jwt]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    let response: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(response["cacheKeyType"], "Registry");
    assert_eq!(response["auth"][HOST]["username"], "AWS");
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["access"], "pull");
}

#[test]
fn kubelet_globs_match_one_label_per_star() {
    assert!(kubelet_glob_matches("*.dkr.ecr.*.amazonaws.com", HOST));
    assert!(kubelet_glob_matches(
        "1111*.dkr.ecr.us-*.amazonaws.com",
        HOST
    ));
    assert!(!kubelet_glob_matches("*.amazonaws.com", HOST));
    assert!(!kubelet_glob_matches(
        "*.dkr.ecr.*.amazonaws.com",
        "a.b.dkr.ecr.x.amazonaws.com"
    ));
}
