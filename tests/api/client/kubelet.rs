//! The kubelet image credential provider, and the example CredentialProviderConfig.

use chrono::{DateTime, Utc};

use crate::helpers::ROLE_ACCOUNT;

use super::*;

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

/// A JSON array of strings.
fn strings(array: &Value) -> Vec<&str> {
    array
        .as_array()
        .expect("an array")
        .iter()
        .map(|s| s.as_str().expect("a string"))
        .collect()
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
    let globs = strings(&provider["matchImages"]);
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
    let args = strings(&provider["args"]);
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
