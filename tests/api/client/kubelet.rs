//! The kubelet image credential provider, and the example CredentialProviderConfig.

use chrono::{DateTime, Utc};

use crate::helpers::{ROLE_ACCOUNT, TestIssuer};

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

/// The documents of a YAML file in deploy/kubelet/, as JSON.
fn deploy_kubelet_yaml(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubelet")
        .join(name);
    let python = crate::helpers::moto::moto_binary().with_file_name("python");
    let output = std::process::Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
        ])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("running {} ({e}); run scripts/test.sh", python.display()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The one provider of an example CredentialProviderConfig, with the shape kubelet
/// requires checked: kubernetes-validate has no schema for that kind, and kubelet decodes
/// it strictly.
fn example_provider(name: &str) -> Value {
    let documents = deploy_kubelet_yaml(name);
    assert_eq!(documents.len(), 1, "{name}");
    let config = &documents[0];
    assert_eq!(config["apiVersion"], "kubelet.config.k8s.io/v1");
    assert_eq!(config["kind"], "CredentialProviderConfig");
    let providers = config["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 1);
    let provider = providers[0].clone();
    for field in provider.as_object().unwrap().keys() {
        assert!(
            [
                "name",
                "matchImages",
                "defaultCacheDuration",
                "apiVersion",
                "args",
                "env",
                "tokenAttributes",
            ]
            .contains(&field.as_str()),
            "{name}: not a field of kubelet's CredentialProvider: {field}"
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

    // The globs cover every ECR endpoint kind and partition, and nothing else.
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
            "{name}: {host} is not matched by {globs:?}"
        );
    }
    for host in ["public.ecr.aws", "docker.io", "ghcr.io", "registry.k8s.io"] {
        assert!(
            !globs.iter().any(|g| kubelet_glob_matches(g, host)),
            "{name}: {host} must not be sent to the broker"
        );
    }
    provider
}

/// `machine` with the environment `provider` sets, each variable one `--help` documents;
/// `local` gives this test's value for a variable that names something of the node.
async fn provider_environment(
    provider: &Value,
    mut machine: Machine,
    local: impl Fn(&str) -> Option<String>,
) -> Machine {
    let help = text(&machine.run(&["--help"], "").await.stdout);
    for variable in provider["env"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap();
        assert!(
            help.contains(&format!("  {name} ")),
            "{name} is not a setting --help documents"
        );
        let value = local(name).unwrap_or_else(|| variable["value"].as_str().unwrap().to_owned());
        machine = machine.set(name, &value);
    }
    machine
}

#[tokio::test]
async fn the_node_identity_example_runs_the_provider_for_every_ecr_host() {
    // Arrange
    let provider = example_provider("credential-provider-config-node.yaml");
    assert!(provider.get("tokenAttributes").is_none());

    // Act: the provider run as the config says, with its environment pointed at a live
    // broker and a token file of this test
    let (app, jwt, machine) = broker_and_caller().await;
    let token_file = machine.token_file().display().to_string();
    let cache_dir = machine.cache_dir().display().to_string();
    let address = app.address.clone();
    let machine = provider_environment(&provider, machine, |name| match name {
        "ECR_TOKEN_BROKER_URL" => Some(address.clone()),
        "ECR_TOKEN_BROKER_JWT_FILE" => Some(token_file.clone()),
        "ECR_TOKEN_BROKER_CACHE_DIR" => Some(cache_dir.clone()),
        _ => None,
    })
    .await;
    let request = json!({
        "apiVersion": KUBELET_API, "kind": "CredentialProviderRequest",
        "image": format!("{HOST}/team-a/api:1.0"),
    });
    let output = machine
        .run(&strings(&provider["args"]), &request.to_string())
        .await;

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

/// The example's registry, which its rule allows.
const CLUSTER_HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
/// The issuer URL in deploy/kubelet/broker-config.toml, replaced by a test issuer's.
const EXAMPLE_CLUSTER_ISSUER: &str =
    "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

/// A token as kubelet mints it for a pod of `namespace` running as service account
/// `service_account`, for `audience`: the API server's claim shape, by `cluster`.
fn pod_token(
    cluster: &TestIssuer,
    audience: &str,
    namespace: &str,
    service_account: &str,
) -> String {
    let mut token = cluster.token();
    for github in ["repository", "repository_owner", "ref", "actor"] {
        token = token.without(github);
    }
    token
        .claim("aud", json!([audience]))
        .claim(
            "sub",
            format!("system:serviceaccount:{namespace}:{service_account}"),
        )
        .claim("jti", uuid::Uuid::new_v4().to_string())
        .claim(
            "kubernetes.io",
            json!({
                "namespace": namespace,
                "node": {"name": "ip-10-0-1-17.eu-west-1.compute.internal",
                         "uid": "5c3e4d43-0f6c-4e6b-9c53-0b9e9b1f4a10"},
                "pod": {"name": format!("{service_account}-7d9f8b6c5d-x2k4q"),
                        "uid": uuid::Uuid::new_v4().to_string()},
                "serviceaccount": {"name": service_account,
                                   "uid": "0f7c1e1a-4a55-4a8b-8f0e-6a7f0e0c9b11"},
            }),
        )
        .sign()
}

#[tokio::test]
async fn pods_pull_as_their_service_account_with_the_example_configuration() {
    // Arrange: the example's kubelet config, node RBAC and broker config agree on one
    // audience
    let provider = example_provider("credential-provider-config.yaml");
    let attributes = provider["tokenAttributes"].as_object().unwrap();
    let mut keys: Vec<&str> = attributes.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cacheType",
            "requireServiceAccount",
            "serviceAccountTokenAudience"
        ]
    );
    assert_eq!(
        attributes["cacheType"], "ServiceAccount",
        "the rules look at the service account only"
    );
    assert_eq!(attributes["requireServiceAccount"], true);
    let audience = attributes["serviceAccountTokenAudience"].as_str().unwrap();
    for variable in provider["env"].as_array().unwrap() {
        assert!(
            !variable["name"]
                .as_str()
                .unwrap()
                .starts_with("ECR_TOKEN_BROKER_JWT"),
            "the pod's token is the caller's JWT: {variable}"
        );
    }
    let rbac = deploy_kubelet_yaml("node-token-audience-rbac.yaml");
    let role = rbac.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": [audience],
                "verbs": ["request-serviceaccounts-token-audience"]}])
    );
    let binding = rbac
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .unwrap();
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}])
    );
    let broker_config = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/kubelet/broker-config.toml"),
    )
    .unwrap();
    let parsed: toml::Table = toml::from_str(&broker_config).unwrap();
    assert_eq!(
        parsed["issuers"][0]["audiences"],
        toml::Value::Array(vec![audience.into()])
    );

    // Arrange: the broker with the example's issuer and rules, the issuer played by a test
    // issuer in the cluster's place
    let cluster = TestIssuer::start().await;
    assert!(broker_config.contains(EXAMPLE_CLUSTER_ISSUER));
    let app = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .rules("")
        .extra_issuers(&broker_config.replace(EXAMPLE_CLUSTER_ISSUER, &cluster.url))
        .spawn()
        .await;
    let machine = Machine::new(&app.address, "unused")
        .set("ECR_TOKEN_BROKER_JWT_FILE", "")
        .set("ECR_TOKEN_BROKER_CACHE_DIR", "");
    let address = app.address.clone();
    let machine = provider_environment(&provider, machine, |name| {
        (name == "ECR_TOKEN_BROKER_URL").then(|| address.clone())
    })
    .await;
    let args = strings(&provider["args"]);
    // What kubelet sends for a pod's image with tokenAttributes.
    let request = |image: &str, token: &str| {
        json!({
            "apiVersion": KUBELET_API, "kind": "CredentialProviderRequest", "image": image,
            "serviceAccountToken": token, "serviceAccountAnnotations": {},
        })
        .to_string()
    };
    let api = pod_token(&cluster, audience, "team-a", "api");

    // Act
    let output = machine
        .run(
            &args,
            &request(&format!("{CLUSTER_HOST}/team-a/api:1.0"), &api),
        )
        .await;

    // Assert: a credential for the registry, issued and audited as the pod's service
    // account, narrowed to its namespace's repositories
    assert_quiet(&output, &[&api]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    let response: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(response["cacheKeyType"], "Registry");
    assert_eq!(response["auth"][CLUSTER_HOST]["username"], "AWS");
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["outcome"], "issued");
    assert_eq!(row["rule"], "cluster-prod-pods");
    assert_eq!(row["issuer"], "cluster-prod");
    assert_eq!(row["subject"], "system:serviceaccount:team-a:api");
    assert_eq!(row["repositories"], json!(["team-a/*"]));
    assert_eq!(row["access"], "pull");
    assert!(
        row["session_name"]
            .as_str()
            .is_some_and(|name| name.starts_with("k8s-team-a-api")),
        "{row}"
    );

    // Act / Assert: a service account the rules do not name is refused, and audited as
    // itself; kubelet gets nothing on stdout and one line to log
    let other = pod_token(&cluster, audience, "team-a", "default");
    let refused = machine
        .run(
            &args,
            &request(&format!("{CLUSTER_HOST}/team-a/api:1.0"), &other),
        )
        .await;
    let message = one_line_failure(&refused, &[&other]);
    assert!(message.contains("(403)"), "{message}");
    assert_eq!(text(&refused.stdout), "");
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["outcome"], "denied");
    assert_eq!(rows[1]["subject"], "system:serviceaccount:team-a:default");

    // Act / Assert: an image that is not in ECR gets kubelet's "no credentials", without
    // a request
    let public = machine
        .run(&args, &request("docker.io/library/nginx:1.27", &api))
        .await;
    assert_quiet(&public, &[&api]);
    assert!(public.status.success(), "{}", text(&public.stdout));
    let response: Value = serde_json::from_slice(&public.stdout).unwrap();
    assert_eq!(response["auth"], json!({}));
    assert_eq!(response["cacheDuration"], "0s");
    assert_eq!(app.audit_rows().await.len(), 2);
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
