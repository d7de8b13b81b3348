//! The credential formats: the password for `docker login --password-stdin`, a Docker
//! config.json and a Kubernetes Secret, each decoded back to the token the JSON endpoint
//! issues for the same caller, through the same cache and the same audit log.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::helpers::{Fault, ROLE_ACCOUNT, SECOND_ACCOUNT, TestApp, assert_problem, request_id};

const HOST: &str = "111122223333.dkr.ecr.us-east-1.amazonaws.com";

/// `GET path` with the default caller's token and `query`.
async fn get(app: &TestApp, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
    let mut url = reqwest::Url::parse(&app.url(path)).unwrap();
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    app.http
        .get(url)
        .bearer_auth(app.token())
        .send()
        .await
        .expect("GET")
}

/// The token of a first JSON issue for the default caller, which the cache then holds.
async fn issued_token(app: &TestApp) -> String {
    let response = app.issue(Some(&app.token()), None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["authorizationData"][0]["authorizationToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn decode(base64: &str) -> String {
    String::from_utf8(STANDARD.decode(base64).unwrap()).unwrap()
}

/// A test app whose tokens live twelve hours, so that the cache serves them.
async fn caching_app() -> TestApp {
    TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .spawn()
        .await
}

/// Asserts the audit row of a credential answer: issued, from the cache, for `endpoints`,
/// and named by the answer's receipt.
async fn assert_issued_from_cache(app: &TestApp, id: &str, receipt: &str, endpoints: Value) {
    let row = app.audit_row(id).await;
    assert_eq!(
        receipt.split_once(':').map(|(id, _)| id),
        Some(row["id"].to_string().as_str()),
        "{receipt} names row {}",
        row["id"]
    );
    assert_eq!(row["outcome"], "issued", "{row}");
    assert_eq!(row["http_status"], 200);
    assert_eq!(row["rule"], "acme-main");
    assert_eq!(row["from_cache"], true, "{row}");
    assert_eq!(row["proxy_endpoints"], endpoints);
    assert_eq!(row["token_fingerprints"].as_array().unwrap().len(), 1);
}

/// Asserts the headers of a credential answer, and returns its audit receipt.
fn assert_credential_headers(response: &reqwest::Response, content_type: &str) -> String {
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["content-type"], content_type);
    response.headers()["audit-entry"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn login_password_is_the_password_of_the_cached_token() {
    let app = caching_app().await;
    let token = issued_token(&app).await;

    let response = get(&app, "/v1/ecr/login-password", &[]).await;

    assert_eq!(response.status(), 200);
    let receipt = assert_credential_headers(&response, "text/plain; charset=utf-8");
    let id = request_id(&response);
    let password = response.text().await.unwrap();
    assert_eq!(decode(&token), format!("AWS:{password}"));
    assert_eq!(password, format!("{ROLE_ACCOUNT}-auth-token"));
    assert_issued_from_cache(&app, &id, &receipt, json!([format!("https://{HOST}")])).await;
}

#[tokio::test]
async fn docker_config_holds_the_cached_token_under_the_registry_host() {
    let app = caching_app().await;
    let token = issued_token(&app).await;

    let response = get(&app, "/v1/ecr/docker-config", &[]).await;

    assert_eq!(response.status(), 200);
    let receipt = assert_credential_headers(&response, "application/json");
    let id = request_id(&response);
    let config: Value = response.json().await.unwrap();
    assert_eq!(config, json!({"auths": {HOST: {"auth": token}}}));
    assert_eq!(
        decode(config["auths"][HOST]["auth"].as_str().unwrap()),
        format!("AWS:{ROLE_ACCOUNT}-auth-token")
    );
    assert_issued_from_cache(&app, &id, &receipt, json!([format!("https://{HOST}")])).await;
}

#[tokio::test]
async fn repeated_registries_give_one_entry_per_host() {
    let app = TestApp::spawn().await;
    let other = format!("{SECOND_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com");

    let response = get(
        &app,
        "/v1/ecr/docker-config",
        &[
            ("registries", HOST),
            ("registries", &other),
            ("access", "pull"),
        ],
    )
    .await;

    assert_eq!(response.status(), 200);
    let config: Value = response.json().await.unwrap();
    let auths = config["auths"].as_object().unwrap();
    assert_eq!(auths.len(), 2, "{config}");
    for (host, account) in [(HOST, ROLE_ACCOUNT), (other.as_str(), SECOND_ACCOUNT)] {
        assert_eq!(
            decode(auths[host]["auth"].as_str().unwrap()),
            format!("AWS:{account}-auth-token")
        );
    }
}

fn kubernetes_validate() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/kubernetes-validate")
}

#[tokio::test]
async fn kubernetes_secret_is_a_valid_dockerconfigjson_secret_of_the_cached_token() {
    let app = caching_app().await;
    let token = issued_token(&app).await;

    let response = get(
        &app,
        "/v1/ecr/docker-config",
        &[
            ("format", "kubernetes-secret"),
            ("name", "ecr-pull.acme"),
            ("namespace", "team-a"),
        ],
    )
    .await;

    assert_eq!(response.status(), 200);
    let receipt = assert_credential_headers(&response, "application/json");
    let id = request_id(&response);
    let manifest = response.text().await.unwrap();
    let secret: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(secret["apiVersion"], "v1");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        secret["metadata"],
        json!({"name": "ecr-pull.acme", "namespace": "team-a"})
    );
    let config: Value = serde_json::from_str(&decode(
        secret["data"][".dockerconfigjson"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(config, json!({"auths": {HOST: {"auth": token}}}));
    assert_issued_from_cache(&app, &id, &receipt, json!([format!("https://{HOST}")])).await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.json");
    std::fs::write(&file, &manifest).unwrap();
    let output = std::process::Command::new(kubernetes_validate())
        .args(["--strict", "--quiet"])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate; scripts/test.sh installs it");
    assert!(
        output.status.success(),
        "kubernetes-validate refused the Secret:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The audit rows of refused requests: denied, bad_request, none issued.
async fn assert_refused_and_nothing_issued(app: &TestApp, ids: &[String]) {
    for id in ids {
        let row = app.audit_row(id).await;
        assert_eq!(row["outcome"], "denied", "{row}");
        assert_eq!(row["reason"], "bad_request", "{row}");
    }
    let issued = app
        .audit_rows()
        .await
        .into_iter()
        .filter(|r| r["outcome"] == "issued")
        .count();
    assert_eq!(issued, 0);
}

#[tokio::test]
async fn bad_secret_names_and_formats_are_refused_and_nothing_is_issued() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for (query, says) in [
        (
            &[("format", "kubernetes-secret"), ("name", "Ecr_Pull")][..],
            "\"Ecr_Pull\" is not a Kubernetes Secret name",
        ),
        (
            &[
                ("format", "kubernetes-secret"),
                ("name", "ecr"),
                ("namespace", "a.b"),
            ],
            "\"a.b\" is not a Kubernetes namespace",
        ),
        (
            &[("format", "kubernetes-secret")],
            "format=kubernetes-secret needs the Secret's name",
        ),
        (
            &[("name", "ecr")],
            "name and namespace are for format=kubernetes-secret",
        ),
        (&[("format", "yaml")], "format \"yaml\" is not one of"),
        (
            &[
                ("format", "kubernetes-secret"),
                ("name", "a"),
                ("name", "b"),
            ],
            "parameter `name` is given more than once",
        ),
    ] {
        let response = get(&app, "/v1/ecr/docker-config", query).await;
        ids.push(request_id(&response));
        let problem = assert_problem(response, 400, "bad-request").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("invalid query: ") && detail.contains(says),
            "{query:?}: {detail}"
        );
    }
    assert_refused_and_nothing_issued(&app, &ids).await;
}

#[tokio::test]
async fn login_password_asks_for_exactly_one_endpoint() {
    let app = TestApp::spawn().await;
    let other = format!("{SECOND_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com");

    let response = get(
        &app,
        "/v1/ecr/login-password",
        &[("registries", HOST), ("registries", &other)],
    )
    .await;

    let id = request_id(&response);
    let problem = assert_problem(response, 400, "bad-request").await;
    assert_eq!(
        problem["detail"],
        "invalid query: a password is for one registry endpoint, and this request asks for 2: \
         narrow it to one region and one registry, or one of registries"
    );
    assert_refused_and_nothing_issued(&app, &[id]).await;
}

#[tokio::test]
async fn a_query_is_read_and_refused_like_the_issue_body() {
    let app = TestApp::spawn().await;
    let asked = json!({"region": "ap-south-1", "registryIds": ["999999999999"], "access": "push"});
    let query = [
        ("region", "ap-south-1"),
        ("registryIds", "999999999999"),
        ("access", "push"),
    ];
    let by_body = assert_problem(
        app.issue(Some(&app.token()), Some(asked)).await,
        403,
        "forbidden",
    )
    .await["detail"]
        .clone();
    assert_eq!(
        by_body,
        "rule acme-main does not allow: region ap-south-1, registry 999999999999, access push (at most pull)"
    );

    for path in ["/v1/ecr/login-password", "/v1/ecr/docker-config"] {
        let response = get(&app, path, &query).await;
        let id = request_id(&response);
        let problem = assert_problem(response, 403, "forbidden").await;
        assert_eq!(problem["detail"], by_body, "{path}");
        let row = app.audit_row(&id).await;
        assert_eq!(row["outcome"], "denied");
        assert_eq!(row["reason"], "not_allowed");

        let malformed = get(&app, path, &[("registryIds", "12")]).await;
        let problem = assert_problem(malformed, 400, "bad-request").await;
        assert_eq!(
            problem["detail"], "invalid query: \"12\" is not a registry ID (twelve digits)",
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_formats_need_a_valid_token() {
    let app = TestApp::spawn().await;
    for path in ["/v1/ecr/login-password", "/v1/ecr/docker-config"] {
        let response = app.get(path).await;
        assert_problem(response, 401, "invalid-token").await;
    }
}
