//! The docker credential helper: get, list, erase, store and version, the cache behind
//! them, and how refusals reach docker and the person.

use crate::helpers::{ROLE_ACCOUNT, fingerprint};

use super::*;

#[tokio::test]
async fn get_answers_with_the_issued_credential_and_then_from_the_cache() {
    // Arrange
    let (app, jwt, machine) = broker_and_caller().await;

    // Act
    let first = machine.get(HOST, &[&jwt]).await;

    // Assert: the answer is the credential the broker issued and audited
    let password = format!("{ROLE_ACCOUNT}-auth-token");
    assert_eq!(
        first,
        json!({"ServerURL": HOST, "Username": "AWS", "Secret": password})
    );
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "issued");
    assert_eq!(
        rows[0]["proxy_endpoints"],
        json!([format!("https://{HOST}")])
    );
    assert_eq!(
        rows[0]["token_fingerprints"],
        json!([fingerprint(&authorization_token(&first))])
    );
    assert!(
        rows[0]["user_agent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("ecr-token-broker-client/")),
        "{}",
        rows[0]["user_agent"]
    );

    // Act: again, and with docker's other spelling of the host
    let second = machine.get(HOST, &[&jwt, &password]).await;
    let spelled = machine.get(&format!("https://{HOST}"), &[&jwt]).await;

    // Assert: both from the cache, with no request to the broker
    assert_eq!(second, first);
    assert_eq!(spelled["ServerURL"], format!("https://{HOST}"));
    assert_eq!(spelled["Secret"], first["Secret"]);
    assert_eq!(
        app.audit_rows().await.len(),
        1,
        "a cache hit makes no request"
    );

    // Assert: the cache is private and holds no JWT
    let cache = machine.cache_dir();
    assert_eq!(mode(&cache), 0o700);
    let files: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
    assert!(!std::fs::read_to_string(&files[0]).unwrap().contains(&jwt));
}

#[tokio::test]
async fn list_shows_cached_hosts_and_erase_forgets_them() {
    // Arrange
    let (app, jwt, machine) = broker_and_caller().await;
    let listing = async || {
        let output = machine.run(&["list"], "").await;
        assert_quiet(&output, &[&jwt]);
        assert!(output.status.success());
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    assert_eq!(listing().await, json!({}));
    machine.get(HOST, &[&jwt]).await;

    // Act / Assert: list
    assert_eq!(listing().await, json!({HOST: "AWS"}));

    // Act / Assert: erase, after which get asks the broker again
    let erased = machine.run(&["erase"], &format!("https://{HOST}\n")).await;
    assert_quiet(&erased, &[&jwt]);
    assert!(erased.status.success());
    assert_eq!(text(&erased.stdout), "");
    assert_eq!(listing().await, json!({}));
    machine.get(HOST, &[&jwt]).await;
    assert_eq!(app.audit_rows().await.len(), 2);

    // Act / Assert: store is refused, and the password it was given goes nowhere
    let stored = machine
        .run(
            &["store"],
            &json!({"ServerURL": HOST, "Username": "AWS", "Secret": "hunter2-secret"}).to_string(),
        )
        .await;
    let message = one_line_failure(&stored, &["hunter2-secret"]);
    assert!(message.contains("store is not supported"), "{message}");
    assert!(!text(&stored.stdout).contains("hunter2-secret"));
    assert!(text(&stored.stdout).starts_with("store is not supported"));

    // Act / Assert: version, in docker-credential-helpers' format
    let version = machine.run(&["version"], "").await;
    assert_quiet(&version, &[&jwt]);
    assert_eq!(
        text(&version.stdout),
        "docker-credential-ecr-token-broker (ecr-token-broker-client) 0.1.0\n"
    );
}

#[tokio::test]
async fn a_cache_directory_others_can_open_is_not_used() {
    // Arrange
    let (app, jwt, machine) = broker_and_caller().await;
    let cache = machine.cache_dir();
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Act
    let output = machine.run(&["get"], HOST).await;

    // Assert: the credential, one warning line, and nothing written
    assert!(output.status.success(), "{}", text(&output.stdout));
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let password = answer["Secret"].as_str().unwrap();
    assert_no_secret(&output, &[&jwt, password]);
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("{BINARY}: warning: ")) && stderr.contains("mode 0755"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
    assert_eq!(mode(&cache), 0o755, "left as it was");
    assert_eq!(app.audit_rows().await.len(), 1);
}

#[tokio::test]
async fn other_registries_are_not_found_and_refused_callers_fail_clearly() {
    // Arrange
    let (app, jwt, machine) = broker_and_caller().await;

    // Act / Assert: a registry that is not ECR's is docker's "not found", with no request
    for server_url in ["https://index.docker.io/v1/", "ghcr.io"] {
        let output = machine.run(&["get"], server_url).await;
        assert_quiet(&output, &[&jwt]);
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            text(&output.stdout),
            "credentials not found in native keychain\n"
        );
    }
    assert!(app.audit_rows().await.is_empty());

    // Act / Assert: a caller no rule allows
    let stranger = stranger(&app);
    std::fs::write(machine.token_file(), &stranger).unwrap();
    let denied = machine.run(&["get"], HOST).await;
    let message = one_line_failure(&denied, &[&stranger]);
    assert!(
        message.contains("the broker refused the request (403)"),
        "{message}"
    );
    // docker shows the helper's stdout: the same message is there.
    assert_eq!(
        text(&denied.stdout).trim_end(),
        message.strip_prefix(&format!("{BINARY}: ")).unwrap()
    );
    let request_id = message
        .rsplit_once("(request id ")
        .and_then(|(_, id)| id.strip_suffix(')'))
        .unwrap_or_else(|| panic!("the message names the request id: {message}"));
    assert_eq!(app.audit_row(request_id).await["outcome"], "denied");

    // Act / Assert: an allowed caller asking for a registry its rule does not name
    std::fs::write(machine.token_file(), &jwt).unwrap();
    let outside = machine
        .run(&["get"], "999988887777.dkr.ecr.us-east-1.amazonaws.com")
        .await;
    let message = one_line_failure(&outside, &[&jwt]);
    assert!(message.contains("(403)"), "{message}");

    // Act / Assert: an expired JWT
    let expired = app.issuer.token().shifted(-7200).sign();
    std::fs::write(machine.token_file(), &expired).unwrap();
    let refused = machine.run(&["get"], HOST).await;
    let message = one_line_failure(&refused, &[&expired]);
    assert!(message.contains("(401)"), "{message}");

    // Act / Assert: the kubelet provider refused: nothing on stdout, one line on stderr
    std::fs::write(machine.token_file(), &stranger).unwrap();
    let request = json!({
        "apiVersion": KUBELET_API, "kind": "CredentialProviderRequest",
        "image": format!("{HOST}/team-a/api:1.0"),
    });
    let kubelet = machine
        .run(&["kubelet-credential-provider"], &request.to_string())
        .await;
    let message = one_line_failure(&kubelet, &[&stranger]);
    assert!(message.contains("(403)"), "{message}");
    assert_eq!(text(&kubelet.stdout), "");

    // Nothing was cached for any of them.
    assert!(
        !machine.cache_dir().exists()
            || std::fs::read_dir(machine.cache_dir()).unwrap().count() == 0
    );
}
