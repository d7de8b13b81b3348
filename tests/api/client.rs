//! The client binary, `docker-credential-ecr-token-broker`, driven over its real stdin and
//! stdout protocols (docker's credential helper, kubelet's credential provider) against the
//! live broker. The broker's audit rows count the client's requests: one row per request,
//! so a cache hit is a run that adds none.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::helpers::{Fault, TestApp};

mod docker;
mod docker_login;
mod kubelet;
mod retries;
mod tls;

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

/// A JWT of the test issuer that no rule allows: another repository owner's.
fn stranger(app: &TestApp) -> String {
    app.issuer
        .token()
        .claim("repository_owner", "mallory")
        .sign()
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
