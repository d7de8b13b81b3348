//! `check-config` warns of GitHub Actions rules and deny entries that match names without the
//! ids that pin them: since 2026-06-18 new repositories' `sub` carries ids, and names change
//! hands.

use super::{BASE, run, stderr};

const GITHUB_ISSUER: &str = r#"
[[issuers]]
name = "github-actions"
issuer = "https://token.actions.githubusercontent.com"
jwks_uri = "https://token.actions.githubusercontent.com/.well-known/jwks"
audiences = ["ecr-token-broker"]
algorithms = ["RS256"]
"#;

fn rule(name: &str, claims: &str) -> String {
    format!(
        "\n[[rules]]\nname = \"{name}\"\nissuer = \"github-actions\"\nclaims = {claims}\n\
         role_arn = \"arn:aws:iam::123456789012:role/ecr-ci\"\nregions = [\"eu-west-1\"]\n"
    )
}

/// Runs `check-config` on `text`, which it must accept; returns its warning lines.
fn warnings(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let output = run(&["check-config", path.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains(": ok ("));
    stderr(&output)
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn names_without_ids_are_warned_of_one_line_per_rule_or_deny_entry() {
    let text = format!(
        "{BASE}{GITHUB_ISSUER}{}{}{}{}",
        rule(
            "by-name",
            r#"{ repository_owner = "acme", ref = "refs/heads/main", sub = "repo:acme/*" }"#
        ),
        rule("one-repository", r#"{ repository = "acme/api" }"#),
        rule(
            "by-id",
            r#"{ repository_owner_id = "123456789", ref = "refs/tags/*" }"#
        ),
        r#"
[[deny]]
issuer = "github-actions"
subject = "repo:acme/leaky-repo:*"
reason = "INC-4711"

[[deny]]
issuer = "github-actions"
claims = { repository_id = "987654321" }
reason = "INC-4711"
"#
    );
    let warnings = warnings(&text);
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("warning: rules[0] (by-name): matches GitHub Actions' sub and repository_owner by name alone"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("repository_owner_id (for repository_owner)"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].starts_with("warning: rules[1] (one-repository)")
            && warnings[1].contains("repository_id (for repository)"),
        "{}",
        warnings[1]
    );
    assert!(
        warnings[2].starts_with("warning: deny[0]: matches GitHub Actions' sub by name alone")
            && warnings[2].contains("repository_id or repository_owner_id (for sub)"),
        "{}",
        warnings[2]
    );
}

#[test]
fn the_shipped_configs_key_github_on_ids() {
    let root = env!("CARGO_MANIFEST_DIR");
    for config in [
        "deploy/config.example.toml",
        "deploy/overlays/production/config.toml",
    ] {
        let output = run(
            &["check-config", &format!("{root}/{config}")],
            &super::DEPLOYED_SECRETS,
        );
        assert!(output.status.success(), "{config}: {}", stderr(&output));
        assert!(
            !stderr(&output).contains("warning:"),
            "{config}: {}",
            stderr(&output)
        );
    }
}
