use std::path::PathBuf;
use std::process::Command;

use crate::helpers::TestApp;

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// The paths openapi.yaml documents (keys directly under `paths:`).
fn documented_paths() -> Vec<String> {
    let spec = std::fs::read_to_string(repo_file("openapi.yaml")).unwrap();
    spec.lines()
        .skip_while(|l| *l != "paths:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .filter(|l| l.starts_with("  /") && l.ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':').to_owned())
        .collect()
}

#[test]
fn openapi_yaml_is_a_valid_openapi_3_document() {
    let validator = std::env::var_os("OPENAPI_SPEC_VALIDATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_file(".venv/bin/openapi-spec-validator"));
    let output = Command::new(&validator)
        .arg(repo_file("openapi.yaml"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} ({e}); run scripts/test.sh, which installs it",
                validator.display()
            )
        });
    assert!(
        output.status.success(),
        "openapi.yaml is invalid:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn openapi_yaml_documents_exactly_the_served_paths() {
    let app = TestApp::spawn().await;
    let documented = documented_paths();
    let served = [
        "/v1/ecr/authorization-token",
        "/v1/whoami",
        "/v1/audit/issuances",
        "/v1/audit/lookup",
        "/healthz",
        "/readyz",
    ];

    assert_eq!(documented.len(), served.len(), "documented: {documented:?}");
    for path in served {
        assert!(
            documented.iter().any(|d| d == path),
            "{path} is served but not documented"
        );
    }
    for path in &documented {
        let status = app
            .http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .send()
            .await
            .unwrap()
            .status();
        let get = app.get(path).await.status();
        assert!(
            status != 404 || get != 404,
            "{path} is documented but not served"
        );
    }
}
