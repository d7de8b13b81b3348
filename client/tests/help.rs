//! The binary's command line as a person meets it: `--help` documents every setting.

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_docker-credential-ecr-token-broker");

#[test]
fn help_names_every_action_and_environment_variable() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "get",
        "store",
        "erase",
        "list",
        "version",
        "kubelet-credential-provider",
        "ECR_TOKEN_BROKER_URL",
        "ECR_TOKEN_BROKER_JWT ",
        "ECR_TOKEN_BROKER_JWT_FILE",
        "ECR_TOKEN_BROKER_JWT_COMMAND",
        "ECR_TOKEN_BROKER_ACCESS",
        "ECR_TOKEN_BROKER_REPOSITORIES",
        "ECR_TOKEN_BROKER_DURATION_SECONDS",
        "ECR_TOKEN_BROKER_CACHE_DIR",
        "ECR_TOKEN_BROKER_CA_FILE",
        "ECR_TOKEN_BROKER_TIMEOUT_SECONDS",
        "ECR_TOKEN_BROKER_IGNORE_DOCKER_LOGIN",
        "ECR_TOKEN_BROKER_CLIENT_CONFIG",
        "configure",
        "[registries.\"HOST\"]",
        "credHelpers",
    ] {
        assert!(
            help.contains(expected),
            "--help lacks {expected:?}:\n{help}"
        );
    }
}

#[test]
fn an_unknown_action_fails() {
    let output = Command::new(BINARY).arg("frobnicate").output().unwrap();
    assert!(!output.status.success());
}
