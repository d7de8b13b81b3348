mod assume_role;
mod immutable_subjects;
mod tls_settings;

use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_ecr-token-broker");

pub(crate) fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BINARY)
        .args(args)
        .env_remove("ECR_TOKEN_BROKER_CONFIG")
        .env_remove("ECR_TOKEN_BROKER_DATABASE_URL")
        .env_remove("ECR_TOKEN_BROKER_FINGERPRINT_KEY")
        .env_remove("ECR_TOKEN_BROKER_CHAIN_KEY")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .expect("run the binary")
}

/// The sections every config needs before its issuers and rules.
pub(crate) const BASE: &str = r#"
[database]
url = "postgres://localhost/x"

[audit]
fingerprint_key_id = "k1"
fingerprint_key = "0123456789abcdef0123456789abcdef"
chain_key = "fedcba9876543210fedcba9876543210"
"#;

/// One issuer, for configs whose rules are under test.
pub(crate) const CI_ISSUER: &str = r#"
[[issuers]]
name = "ci"
issuer = "https://ci.example.com"
jwks_uri = "https://ci.example.com/jwks"
audiences = ["ecr-token-broker"]
algorithms = ["RS256"]
"#;

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `check-config` on `text`, which it must refuse; returns what it printed.
pub(crate) fn refused_config(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let output = run(&["check-config", path.to_str().unwrap()], &[]);
    assert!(!output.status.success(), "check-config accepted:\n{text}");
    stderr(&output)
}

/// Asserts that check-config's `message` names every one of `expected`.
pub(crate) fn assert_mentions(message: &str, expected: &[&str]) {
    for expected in expected {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
}

/// The ConfigMap carries the example config as its `config.toml`, so that what is checked
/// here is what deploys.
#[test]
fn the_configmap_ships_the_example_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/deploy/config.example.toml")).unwrap();
    let manifest = std::fs::read_to_string(format!("{root}/deploy/k8s/configmap.yaml")).unwrap();
    let (_, block) = manifest
        .split_once("  config.toml: |\n")
        .expect("the ConfigMap has a config.toml block");
    let shipped: String = block
        .lines()
        .map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line)))
        .collect();
    assert!(
        shipped == example,
        "deploy/k8s/configmap.yaml's config.toml differs from deploy/config.example.toml"
    );
}

/// The secrets a deployed config takes from the environment.
const DEPLOYED_SECRETS: [(&str, &str); 3] = [
    (
        "ECR_TOKEN_BROKER_DATABASE_URL",
        "postgres://broker@db.internal/ecr_token_broker?sslmode=verify-full&sslrootcert=/etc/ecr-token-broker/db-ca.pem",
    ),
    (
        "ECR_TOKEN_BROKER_FINGERPRINT_KEY",
        "0123456789abcdef0123456789abcdef",
    ),
    (
        "ECR_TOKEN_BROKER_CHAIN_KEY",
        "fedcba9876543210fedcba9876543210",
    ),
];

#[test]
fn check_config_accepts_the_shipped_example_with_secrets_from_the_environment() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/config.example.toml");
    let secrets = DEPLOYED_SECRETS;

    let ok = run(&["check-config", example], &secrets);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains(": ok ("));

    let missing_key = run(&["check-config", example], &secrets[..1]);
    assert!(!missing_key.status.success());
    assert!(
        stderr(&missing_key).contains("audit.fingerprint_key"),
        "{}",
        stderr(&missing_key)
    );
}

/// The production overlay replaces the example config with its own, which must be valid too.
#[test]
fn check_config_accepts_the_production_overlay_config() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/overlays/production/config.toml"
    );
    let ok = run(&["check-config", config], &DEPLOYED_SECRETS);
    assert!(ok.status.success(), "{}", stderr(&ok));

    // Its own database URL, without the Secret's over it, verifies the server too.
    let own_url = run(&["check-config", config], &DEPLOYED_SECRETS[1..]);
    assert!(own_url.status.success(), "{}", stderr(&own_url));
    assert!(
        !stderr(&own_url).contains("warning"),
        "{}",
        stderr(&own_url)
    );
}

/// The TLS overlay's config is the production overlay's plus `[server.tls]`, naming the files
/// where the overlay mounts the Certificate's Secret, so the two cannot drift apart.
#[test]
fn the_tls_overlay_config_is_production_with_server_tls() {
    let root = env!("CARGO_MANIFEST_DIR");
    let read = |path: &str| std::fs::read_to_string(format!("{root}/{path}")).unwrap();
    let production: toml::Table = read("deploy/overlays/production/config.toml")
        .parse()
        .unwrap();
    let mut with_tls: toml::Table = read("deploy/overlays/tls/config.toml").parse().unwrap();

    let tls = with_tls["server"]
        .as_table_mut()
        .unwrap()
        .remove("tls")
        .expect("[server.tls]");

    assert_eq!(with_tls, production);
    assert_eq!(
        tls["cert_file"].as_str(),
        Some("/etc/ecr-token-broker-tls/tls.crt")
    );
    assert_eq!(
        tls["key_file"].as_str(),
        Some("/etc/ecr-token-broker-tls/tls.key")
    );
    assert!(
        read("deploy/overlays/tls/deployment.yaml")
            .contains("mountPath: /etc/ecr-token-broker-tls\n")
    );
}

/// The TLS overlay's config passes `check-config` once the files it names are there (in the
/// pod, cert-manager's Secret; here, a certificate made for the test).
#[test]
fn check_config_accepts_the_tls_overlay_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let ca = crate::helpers::tls::TestCa::new("overlay-ca");
    let server = ca.server_cert(&["DNS:ecr-token-broker.example.com"]);
    let text = std::fs::read_to_string(format!("{root}/deploy/overlays/tls/config.toml"))
        .unwrap()
        .replace(
            "/etc/ecr-token-broker-tls/tls.crt",
            &server.cert.display().to_string(),
        )
        .replace(
            "/etc/ecr-token-broker-tls/tls.key",
            &server.key.display().to_string(),
        );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    let ok = run(
        &["check-config", config.to_str().unwrap()],
        &DEPLOYED_SECRETS,
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn check_config_names_the_location_of_every_problem() {
    let message = refused_config(&format!(
        "{BASE}{}",
        r#"
[[issuers]]
name = "ci"
issuer = "https://ci.example.com"
jwks_uri = "http://ci.example.com/jwks"
audiences = ["ecr-token-broker"]
algorithms = ["RS256", "HS256"]

[[rules]]
name = "r"
issuer = "nobody"
claims = { sub = "repo:[acme" }
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["us-east-1", "us-east-1"]
"#
    ));
    assert_mentions(
        &message,
        &[
            "issuers[0].jwks_uri",
            "issuers[0].algorithms",
            "rules[0].issuer: unknown issuer \"nobody\"",
            "rules[0].claims.sub",
            "rules[0].regions: us-east-1 is listed twice",
        ],
    );

    let message = refused_config("[server]\nlisten = \"0.0.0.0:8080\"\nbogus = 1\n");
    assert!(
        message.contains("line 3") && message.contains("bogus"),
        "{message}"
    );

    let message = refused_config("[[rules]]\nregions = [\"nowhere\"]\n");
    assert!(message.contains("not an AWS region code"), "{message}");
}

/// One run of `check-config` reports every mistake, wherever it is in the file, each under
/// its path there: the file is parsed in one pass that collects them all.
#[test]
fn check_config_reports_mistakes_in_every_section_in_one_run() {
    let message = refused_config(
        r#"
[server]
max_headers = 5
cors_allowed_origins = ["portal.example.com"]

[database]
url = "postgres://localhost/x"

[audit]
fingerprint_key_id = "not a key id"
fingerprint_key = "0123456789abcdef0123456789abcdef"
chain_key = "fedcba9876543210fedcba9876543210"

[audit_sink]
queue_capacity = 0

[rate_limit]
burst = 0

[[issuers]]
name = "ci"
issuer = "https://ci.example.com"
jwks_uri = "http://ci.example.com/jwks"
audiences = ["ecr-token-broker"]
algorithms = ["RS256"]

[[rules]]
name = "r"
issuer = "ci"
claims = { sub = "repo:[acme" }
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["us-east-1"]
"#,
    );
    assert_mentions(
        &message,
        &[
            "server.max_headers: must be 16 to 1000",
            "server.cors_allowed_origins[0]: \"portal.example.com\" is not an origin",
            "audit.fingerprint_key_id: must be 1 to 64 of [A-Za-z0-9._-]",
            "audit_sink.queue_capacity: must be 1 to 1000000",
            "rate_limit.burst: must be at least 1",
            "issuers[0].jwks_uri: \"http://ci.example.com/jwks\" must be an https:// URL",
            "rules[0].claims.sub: pattern \"repo:[acme\"",
        ],
    );
    assert!(message.contains("7 problems:"), "{message}");
}

#[test]
fn check_config_finds_rules_that_can_never_work() {
    let message = refused_config(&format!(
        "{BASE}{CI_ISSUER}{}",
        r#"
[[rules]]
name = "everyone"
issuer = "ci"
claims = { sub = "*" }
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["us-east-1", "cn-north-1"]
repositories = ["Team-A/*", "{repository}//x"]
session_tags = { "aws:owner" = "{sub}", repo = "{repository}" }
transitive_tag_keys = ["missing"]
external_id = "x"

[[rules]]
name = "main-only"
issuer = "ci"
audiences = ["some-other-audience"]
claims = { ref = "refs/heads/main" }
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["us-east-1"]
"#
    ));
    assert_mentions(
        &message,
        &[
            "rules[0].regions: cn-north-1 is in partition aws-cn, but the role is in aws",
            "rules[0].repositories[0]",
            "rules[0].repositories[1]",
            "rules[0].session_tags",
            "aws:",
            "missing",
            "rules[0].external_id",
            "rules[1].audiences",
            "rule \"main-only\" can never match: rule \"everyone\" before it",
        ],
    );

    for (template, problem) in [
        ("{repository", "column"),
        ("{bad name}", "column"),
        ("x}", "column"),
    ] {
        let message = refused_config(&format!(
            "[[rules]]\nname = \"r\"\nissuer = \"ci\"\nrole_arn = \"arn:aws:iam::123456789012:role/ecr\"\nregions = [\"us-east-1\"]\nrepositories = [\"{template}\"]\n"
        ));
        assert!(
            message.contains(problem) && message.contains("line 6"),
            "{template}: {message}"
        );
    }
    for (field, value, problem) in [
        (
            "role_arn",
            "\"arn:aws:iam::123:role/x\"",
            "not an IAM role ARN",
        ),
        ("session_duration_secs", "60", "900 to 43200"),
        ("regions", "[\"mars-1\"]", "not an AWS region code"),
    ] {
        let message = refused_config(&format!("[[rules]]\n{field} = {value}\n"));
        assert!(
            message.contains(problem) && message.contains("line 2"),
            "{field}: {message}"
        );
    }
}

#[test]
fn check_config_checks_the_cache_settings() {
    let message = refused_config(&format!(
        "{BASE}{CI_ISSUER}{}",
        r#"
[cache]
max_entries = 0
min_remaining_secs = 900
refresh_fraction = 1.0

[[rules]]
name = "short"
issuer = "ci"
claims = { sub = "a" }
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["us-east-1"]
session_duration_secs = 900

[[rules]]
name = "short-uncached"
issuer = "ci"
claims = { sub = "b" }
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["us-east-1"]
session_duration_secs = 900
cache = "off"

[[rules]]
name = "shared-by-nobody"
issuer = "ci"
claims = { sub = "c" }
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["us-east-1"]
session_duration_secs = 3600
cache = "shared"
"#
    ));
    assert_mentions(
        &message,
        &[
            "cache.max_entries: must be 1 to 1000000",
            "cache.refresh_fraction: must be 0.1 to 0.9",
            "rules[0].cache: sessions of 900 seconds never outlive [cache] min_remaining_secs = 900",
            "rules[2].cache: \"shared\" shares a credential between callers whose source identity",
        ],
    );
    assert!(!message.contains("rules[1]"), "{message}");

    let message = refused_config("[[rules]]\ncache = \"sometimes\"\n");
    assert!(
        message.contains("per-caller") && message.contains("line 2"),
        "{message}"
    );
}

#[test]
fn check_config_checks_the_kill_switch_and_reload_settings() {
    let message = refused_config(&format!(
        "{BASE}{CI_ISSUER}{}",
        r#"
[[rules]]
name = "push"
issuer = "ci"
claims = { sub = "a" }
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["us-east-1"]

[admin]
rules = ["push", "nope"]
deny_poll_interval_secs = 0
deny_max_staleness_secs = 0

[reload]
watch_interval_secs = 7200

[[deny]]
reason = "nothing named"

[[deny]]
issuer = "gitlab"
rule = "pull"
subject = "repo:[broken"
claims = { ref = [] }
"#
    ));
    assert_mentions(
        &message,
        &[
            "admin.rules[1]: no rule is named \"nope\"",
            "admin.deny_poll_interval_secs: must be 1 to 300",
            "admin.deny_max_staleness_secs: must be 1 to 3600, and more than deny_poll_interval_secs",
            "reload.watch_interval_secs: must be 0 (off) to 3600",
            "deny[0]: name at least one of issuer, subject, rule, claims",
            "deny[1].issuer: unknown issuer \"gitlab\"",
            "deny[1].rule: no rule is named \"pull\"",
            "deny[1].subject: pattern \"repo:[broken\"",
            "deny[1].claims.ref: an empty list can never match",
        ],
    );
    assert!(!message.contains("admin.rules[0]"), "{message}");
}

#[tokio::test]
async fn migrate_creates_the_schema_and_is_idempotent() {
    let url = crate::helpers::empty_database().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    // The database URL in BASE is overridden by the environment.
    std::fs::write(&config, format!("{BASE}{CI_ISSUER}")).unwrap();
    let env = [
        ("ECR_TOKEN_BROKER_DATABASE_URL", url.as_str()),
        ("ECR_TOKEN_BROKER_CONFIG", config.to_str().unwrap()),
    ];

    for _ in 0..2 {
        let output = run(&["migrate"], &env);
        assert!(output.status.success(), "{}", stderr(&output));
    }

    let db = sqlx::PgPool::connect(url.as_str()).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(count, 0);
}
