//! The client against the broker's own HTTPS listener under a private CA: refused without
//! the CA, trusted with it from `ECR_TOKEN_BROKER_CA_FILE` or the config file's `ca_file`,
//! as the docker credential helper and as the kubelet provider alike.

use crate::helpers::audit_rows_in;
use crate::helpers::tls::{TestCa, client_trusting};
use crate::tls_listener::https_service;

use super::*;

#[tokio::test]
async fn the_client_trusts_a_broker_under_a_private_ca_only_with_its_ca_file() {
    // Arrange
    let ca = TestCa::new("broker CA");
    let (service, _secret) = https_service(
        &ca.server_cert(&["IP:127.0.0.1", "DNS:localhost"]),
        "",
        client_trusting(&ca).build().unwrap(),
    )
    .await;
    let jwt = service.issuer.token().sign();
    let machine = Machine::new(&service.address, &jwt);
    let config_file = machine.dir.path().join("client.toml");
    std::fs::write(&config_file, format!("ca_file = {:?}\n", ca.cert.display())).unwrap();
    let ca_file = ca.cert.display().to_string();
    let kubelet_request = json!({
        "apiVersion": KUBELET_API,
        "kind": "CredentialProviderRequest",
        "image": format!("{HOST}/team-a/api:1.0"),
    })
    .to_string();

    // Act
    let without = machine.run(&["get"], &format!("{HOST}\n")).await;
    let kubelet_without = machine
        .run(&["kubelet-credential-provider"], &kubelet_request)
        .await;
    let from_env = machine
        .set("ECR_TOKEN_BROKER_CA_FILE", &ca_file)
        .set("ECR_TOKEN_BROKER_CACHE_DIR", "");
    let with_env = from_env.run(&["get"], &format!("{HOST}\n")).await;
    let kubelet_with_env = from_env
        .run(&["kubelet-credential-provider"], &kubelet_request)
        .await;
    let from_file = Machine::new(&service.address, &jwt)
        .set(
            "ECR_TOKEN_BROKER_CLIENT_CONFIG",
            &config_file.display().to_string(),
        )
        .set("ECR_TOKEN_BROKER_CACHE_DIR", "");
    let with_file = from_file.run(&["get"], &format!("{HOST}\n")).await;

    // Assert
    let refused = one_line_failure(&without, &[&jwt]);
    assert!(refused.contains("certificate"), "{refused}");
    assert!(!kubelet_without.status.success());
    for output in [&with_env, &kubelet_with_env, &with_file] {
        assert_quiet(output, &[&jwt]);
        assert!(output.status.success(), "{}", text(&output.stdout));
    }
    let answer: Value = serde_json::from_slice(&with_env.stdout).unwrap();
    assert_eq!(answer["Username"], "AWS");
    let rows = audit_rows_in(&service.database_url).await;
    assert_eq!(
        rows.len(),
        3,
        "one issuance per trusted run, none refused: {rows:?}"
    );
}
