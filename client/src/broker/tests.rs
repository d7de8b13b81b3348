//! The broker calls without a broker: the request body, decoding the token, refusing a wrong or
//! malformed answer without echoing it, refusals that carry the detail and request id but never the
//! JWT, and a CA file without certificates.

use super::*;

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let ca = ca.display().to_string();
    let settings = Settings::load(
        |name| match name {
            "ECR_TOKEN_BROKER_URL" => Some("https://broker.example.com".to_owned()),
            "ECR_TOKEN_BROKER_JWT" => Some("a.b.c".to_owned()),
            "ECR_TOKEN_BROKER_CA_FILE" => Some(ca.clone()),
            _ => None,
        },
        None,
    )
    .unwrap();
    let Err(error) = Broker::new(&settings) else {
        panic!("a CA file without certificates must be refused");
    };
    assert!(
        error.to_string().contains("holds no PEM certificate"),
        "{error}"
    );
}

fn host() -> EcrHost {
    EcrHost::from_server_url("111122223333.dkr.ecr.eu-west-1.amazonaws.com").unwrap()
}

#[test]
fn the_body_asks_for_exactly_the_host_and_the_narrowing() {
    assert_eq!(
        issue_body(&host(), &Narrowing::default()),
        json!({"registries": ["111122223333.dkr.ecr.eu-west-1.amazonaws.com"]})
    );
    let narrowing = Narrowing {
        access: Some("push".to_owned()),
        repositories: Some(vec!["team-a/*".to_owned()]),
        duration_seconds: Some(900),
    };
    assert_eq!(
        issue_body(&host(), &narrowing),
        json!({
            "registries": ["111122223333.dkr.ecr.eu-west-1.amazonaws.com"],
            "access": "push",
            "repositories": ["team-a/*"],
            "durationSeconds": 900,
        })
    );
}

fn answer(endpoint: &str, token: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "authorizationData": [{
            "authorizationToken": STANDARD.encode(token),
            "expiresAt": "2026-11-23T12:30:00Z",
            "proxyEndpoint": endpoint,
        }],
        "requestId": "r-1",
    }))
    .unwrap()
}

#[test]
fn the_token_decodes_to_user_and_password() {
    let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
        .unwrap()
        .into();
    let body = answer(
        "https://111122223333.dkr.ecr.eu-west-1.amazonaws.com",
        "AWS:pass:with:colons",
    );
    let c = credential_from(&body, &host(), now).unwrap();
    assert_eq!(c.username, "AWS");
    assert_eq!(c.password.expose_secret(), "pass:with:colons");
    assert_eq!(c.refresh_at.to_rfc3339(), "2026-11-23T12:15:00+00:00");
}

#[test]
fn a_wrong_or_malformed_answer_is_refused_without_echoing_it() {
    let now = Utc::now();
    let other = answer(
        "https://444455556666.dkr.ecr.eu-west-1.amazonaws.com",
        "AWS:secret-pw",
    );
    let message = credential_from(&other, &host(), now)
        .unwrap_err()
        .to_string();
    assert!(message.contains("no credential for"), "{message}");
    assert!(!message.contains("secret-pw"));
    let endpoint = "https://111122223333.dkr.ecr.eu-west-1.amazonaws.com";
    for token in ["no-colon-secret", ":secret", "AWS:"] {
        let message = credential_from(&answer(endpoint, token), &host(), now)
            .unwrap_err()
            .to_string();
        assert!(message.contains("USER:PASSWORD"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
    assert!(credential_from(b"<html>", &host(), now).is_err());
}

#[test]
fn refusals_carry_the_detail_and_request_id_but_not_the_jwt() {
    let jwt = SecretString::from("eyJ.jwt.sig".to_owned());
    let body = serde_json::to_vec(&json!({
        "type": "https://ecr-token-broker.dev/problems/forbidden",
        "title": "Forbidden", "status": 403,
        "detail": "no rule allows this caller\n(eyJ.jwt.sig)", "requestId": "req-9",
    }))
    .unwrap();
    let error = refusal(StatusCode::FORBIDDEN, &HeaderMap::new(), &body, &jwt);
    assert_eq!(
        error.to_string(),
        "the broker refused the request (403): no rule allows this caller \
         ([redacted]) (request id req-9)"
    );
    let mut headers = HeaderMap::new();
    headers.insert("x-request-id", "req-10".parse().unwrap());
    let error = refusal(StatusCode::BAD_GATEWAY, &headers, b"oops", &jwt);
    assert_eq!(
        error.to_string(),
        "the broker failed (502): Bad Gateway (request id req-10)"
    );
}

#[test]
fn whoami_gives_the_rule_s_registries_and_regions_or_why_there_are_none() {
    let allowed = serde_json::to_vec(&json!({
        "issuer": "ci", "subject": "s", "rule": "acme-main", "denied": false,
        "allowed": {"roleArn": "arn:aws:iam::111122223333:role/r", "regions": ["eu-west-1"],
                    "registryIds": ["111122223333"], "access": "pull", "repositories": [],
                    "maxDurationSeconds": 900, "sourceIdentity": null, "sessionTags": {}},
        "problem": null, "rules": [], "requestId": "req-1",
    }))
    .unwrap();
    assert_eq!(
        grant_from(&allowed).unwrap(),
        Grant {
            rule: "acme-main".to_owned(),
            registry_ids: vec!["111122223333".to_owned()],
            regions: vec!["eu-west-1".to_owned()],
        }
    );
    let none = serde_json::to_vec(&json!({
        "issuer": "ci", "subject": "s", "rule": null, "allowed": null, "denied": false,
        "problem": null, "rules": [], "requestId": "req-2",
    }))
    .unwrap();
    assert_eq!(
        grant_from(&none).unwrap_err().to_string(),
        "the broker allows this caller nothing: no rule matches this caller (request id req-2)"
    );
    let broken = serde_json::to_vec(&json!({
        "rule": "r", "allowed": null, "denied": false, "problem": "claim x is missing",
        "requestId": "req-3",
    }))
    .unwrap();
    assert!(
        grant_from(&broken)
            .unwrap_err()
            .to_string()
            .contains("rule r matches but cannot be applied: claim x is missing")
    );
    assert!(grant_from(b"<html>").is_err());
}
