//! A real `moto` server per test, on a free port, in its own working directory (its request
//! recorder writes there).

use std::path::PathBuf;
use std::process::Stdio;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// moto's default account: roles and users created without credentials live here.
pub const ACCOUNT: &str = "123456789012";

pub struct Moto {
    pub url: String,
    http: reqwest::Client,
    _child: Child,
    dir: tempfile::TempDir,
}

/// One request moto received, from its recorder.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub body: String,
}

impl Recorded {
    /// The form fields of a Query-protocol (STS, IAM) request.
    pub fn form(&self) -> Vec<(String, String)> {
        url_decode_form(&self.body)
    }

    pub fn field(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn action(&self) -> Option<String> {
        self.field("Action")
    }
}

fn form(params: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.query().unwrap_or_default().to_owned()
}

fn url_decode_form(body: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .expect("form body")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The `moto_server` of the virtualenv (`$MOTO_SERVER`); its `python` has the test tools.
pub fn moto_binary() -> PathBuf {
    std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"))
}

impl Moto {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for moto");
        let binary = moto_binary();
        let mut child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} failed ({e}); run scripts/test.sh, which installs moto",
                    binary.display()
                )
            });
        let stderr = child.stderr.take().expect("piped stderr");
        let stdout = child.stdout.take().expect("piped stdout");
        tokio::spawn(drain(BufReader::new(stdout)));
        let mut lines = BufReader::new(stderr).lines();
        let url = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("moto output") {
                if let Some(at) = line.find("http://127.0.0.1:") {
                    let url: String = line[at..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    return url;
                }
            }
            panic!("moto exited before it was ready");
        })
        .await
        .expect("moto did not start within 30 s");
        // Keep reading so moto never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            url,
            http: reqwest::Client::new(),
            _child: child,
            dir,
        }
    }

    pub async fn start_recording(&self) {
        self.post("/moto-api/recorder/start-recording", "").await;
    }

    /// Every request recorded since recording started.
    pub async fn recording(&self) -> Vec<Recorded> {
        // moto answers 500 instead of an empty recording until it has recorded something.
        if !self.dir.path().join("moto_recording").exists() {
            return Vec::new();
        }
        let text = self
            .http
            .get(format!("{}/moto-api/recorder/download-recording", self.url))
            .send()
            .await
            .expect("download recording")
            .text()
            .await
            .expect("recording text");
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let entry: serde_json::Value =
                    serde_json::from_str(line).expect("recording line is JSON");
                let raw = entry["body"].as_str().unwrap_or_default();
                let body = if entry["body_encoded"].as_bool().unwrap_or(false) {
                    String::from_utf8(
                        base64::engine::general_purpose::STANDARD
                            .decode(raw)
                            .expect("base64 body"),
                    )
                    .expect("utf-8 body")
                } else {
                    raw.to_owned()
                };
                Recorded { body }
            })
            .collect()
    }

    /// Recorded STS/IAM requests with this `Action`.
    pub async fn recorded_actions(&self, action: &str) -> Vec<Recorded> {
        self.recording()
            .await
            .into_iter()
            .filter(|r| r.action().as_deref() == Some(action))
            .collect()
    }

    /// Turns IAM enforcement on: from now on unknown keys and missing permissions are refused.
    pub async fn enforce_iam(&self) {
        let response = self
            .http
            .post(format!("{}/moto-api/reset-auth", self.url))
            .header("content-type", "text/plain")
            .body("0")
            .send()
            .await
            .expect("reset-auth");
        assert!(
            response.status().is_success(),
            "enabling IAM enforcement failed"
        );
    }

    /// An IAM Query API call, signed with a dummy key (moto checks nothing while enforcement
    /// is off). Returns the XML response.
    pub async fn iam(&self, params: &[(&str, &str)]) -> String {
        let response = self
            .http
            .post(format!("{}/", self.url))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[&[("Version", "2010-05-08")], params].concat()))
            .send()
            .await
            .expect("IAM call");
        let status = response.status();
        let text = response.text().await.expect("IAM response");
        assert!(status.is_success(), "IAM {params:?} failed: {text}");
        text
    }

    async fn post(&self, path: &str, body: &str) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .body(body.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert!(
            response.status().is_success(),
            "POST {path}: {}",
            response.status()
        );
    }
}

async fn drain<R: tokio::io::AsyncBufRead + Unpin>(reader: R) {
    let mut lines = reader.lines();
    while let Ok(Some(_)) = lines.next_line().await {}
}

/// The text between `<tag>` and `</tag>` in an XML answer.
pub fn xml_value(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..]
        .find(&format!("</{tag}>"))
        .expect("closing tag")
        + start;
    xml[start..end].to_owned()
}
