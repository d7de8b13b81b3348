use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use ecr_token_broker::endpoints;

use crate::helpers::TestApp;

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// openapi.yaml, parsed.
fn spec() -> serde_json::Value {
    let text = std::fs::read_to_string(repo_file("openapi.yaml")).unwrap();
    serde_saphyr::from_str(&text).expect("openapi.yaml is YAML")
}

/// What openapi.yaml documents: each operation as (method, path), from the method keys under
/// each path under `paths`.
fn documented_operations() -> BTreeSet<(String, String)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let spec = spec();
    let mut operations = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if METHODS.contains(&method.as_str()) {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

/// What the router serves, from the same registrations that build it.
fn served_operations() -> BTreeSet<(String, String)> {
    endpoints()
        .into_iter()
        .map(|e| (e.method.to_string(), e.path.to_owned()))
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
async fn openapi_yaml_documents_exactly_the_served_operations() {
    let documented = documented_operations();
    let served = served_operations();

    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in openapi.yaml: {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        unserved.is_empty(),
        "in openapi.yaml but not served: {unserved:?}"
    );

    // The running service answers each one with its handler, not a 404 or 405: the list
    // describes the router the service really runs.
    let app = TestApp::spawn().await;
    for (method, path) in &served {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let status = app
            .http
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status != 404 && status != 405,
            "{method} {path} is listed but answered {status}"
        );
    }
}

#[tokio::test]
async fn the_service_serves_the_spec_it_was_built_with_as_yaml_and_as_json() {
    let app = TestApp::spawn().await;

    let yaml = app.get("/openapi.yaml").await;
    assert_eq!(yaml.status(), 200);
    assert_eq!(yaml.headers()["content-type"], "application/yaml");
    let yaml = yaml.text().await.unwrap();
    let json = app.get("/openapi.json").await;
    assert_eq!(json.status(), 200);
    assert_eq!(json.headers()["content-type"], "application/json");
    let json: serde_json::Value = json.json().await.unwrap();

    assert_eq!(
        yaml,
        std::fs::read_to_string(repo_file("openapi.yaml")).unwrap()
    );
    let from_yaml: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(json, from_yaml);
    assert_eq!(json, spec());
}

/// schemathesis against the live service, with a token the default rule accepts: examples,
/// boundary values and fuzzed requests for every documented operation, with every check
/// (no 5xx, every response as documented, schema-valid requests accepted, invalid ones
/// refused). The token's rule administers the audit log and the deny list, so that those
/// operations are exercised beyond their 403.
///
/// Reproducible by default: a fixed seed and a fixed number of examples per operation (not a
/// time budget, which would make the cases depend on the machine's speed), so a failure here
/// replays on any machine. `scripts/fuzz.sh` runs it long with a random seed instead, through
/// `SCHEMATHESIS_SEED` and `SCHEMATHESIS_MAX_TIME`.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_undocumented_response() {
    let schemathesis = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_file(".venv/bin/schemathesis"));
    let app = TestApp::builder()
        .admin_rules(&["acme-main"])
        .extra_config("[admin]\nrules = [\"acme-main\"]\n")
        .spawn()
        .await;
    let authorization = format!("Authorization: Bearer {}", app.token());
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".to_owned());
    let budget = match std::env::var("SCHEMATHESIS_MAX_TIME") {
        Ok(secs) => ["--max-time".to_owned(), secs],
        Err(_) => ["--max-examples".to_owned(), "200".to_owned()],
    };
    eprintln!("schemathesis: --seed {seed} {}", budget.join(" "));
    let work_dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(&schemathesis)
        .current_dir(work_dir.path())
        .env(
            "SCHEMATHESIS_HOOKS",
            repo_file("tests/schemathesis_hooks.py"),
        )
        .args(["--no-color", "--config-file"])
        .arg(repo_file("schemathesis.toml"))
        .args(["run", &app.url("/openapi.yaml"), "--url", &app.address])
        .args(["-H", &authorization])
        .args(["--checks", "all", "--phases", "examples,coverage,fuzzing"])
        .args(["--generation-database", "none", "--seed", &seed])
        .args(&budget)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "running {} ({e}); run scripts/test.sh, which installs it",
                schemathesis.display()
            )
        });
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis (--seed {seed}) found failures:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // How much it tried, for the long run's record.
    let cases = report
        .lines()
        .skip_while(|l| !l.starts_with("Test cases:"))
        .nth(1);
    eprintln!("schemathesis: {}", cases.unwrap_or("no summary").trim());
}
