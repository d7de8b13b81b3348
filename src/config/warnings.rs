//! What `check-config` warns of without refusing the file: settings that load and work
//! today, but leave a gap an operator should close: a database reached without checking
//! its certificate, and the names below.
//!
//! GitHub Actions' names are not identities. Since 2026-06-18 a repository created, renamed
//! or transferred on github.com gets a `sub` with its owner's and its own ids
//! (`repo:OWNER-OWNERID/REPO-REPOID:...`), so a rule matching the name form of `sub` refuses
//! it, and a deny entry matching it lets it through. And a name can be given up and taken by
//! someone else, so `repository` and `repository_owner` alone may come to match a stranger.
//! The ids (`repository_id`, `repository_owner_id`) are in every token and never change.

use std::fmt;

use super::Config;
use crate::kill_switch::EntrySpec;
use crate::policy::ClaimPath;

/// The `iss` of GitHub Actions' tokens on github.com; an enterprise's own issuer adds a path
/// to it.
const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// Name claims of a GitHub Actions token, each with the id claims that pin what it names.
const NAME_CLAIMS: [(&str, &[&str]); 3] = [
    ("sub", &["repository_id", "repository_owner_id"]),
    ("repository", &["repository_id"]),
    ("repository_owner", &["repository_owner_id"]),
];

/// One warning, at the path of the entry it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Warning {
    /// Where, as `check-config` names places: `rules[0] (ci-main)`, `deny[1]`.
    pub at: String,
    /// What is wrong and what to do, on one line.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

impl Config {
    /// Everything `check-config` warns of, in file order; none stops the file from loading.
    pub(crate) fn warnings(&self) -> Vec<Warning> {
        let github: Vec<&str> = self
            .issuers
            .iter()
            .filter(|i| is_github_actions(&i.issuer))
            .map(|i| i.name.as_str())
            .collect();
        let mut warnings: Vec<Warning> = self.database_tls().into_iter().collect();
        for (i, rule) in self.rules.iter().enumerate() {
            if github.contains(&rule.issuer.as_str()) {
                let at = format!("rules[{i}] ({})", rule.name);
                warnings.extend(names_alone(at, rule.claim_names()));
            }
        }
        for (i, entry) in self.deny.iter().enumerate() {
            if self.deny_reaches(entry, &github) {
                let subject = entry.subject.as_ref().map(|_| "sub");
                let claims = entry.claims.keys().map(String::as_str);
                warnings.extend(names_alone(
                    format!("deny[{i}]"),
                    subject.into_iter().chain(claims),
                ));
            }
        }
        warnings
    }

    /// Logs each of [`Config::warnings`] once, for a service that loads this config without
    /// anyone having run `check-config` on it (a ConfigMap applied and reloaded).
    pub(crate) fn log_warnings(&self) {
        for warning in self.warnings() {
            tracing::warn!(at = %warning.at, warning = %warning.message, "config warning");
        }
    }

    /// A database beyond this host reached without checking its certificate: whoever can
    /// answer for its address (a hijacked DNS name, a hop on the path) could read or rewrite
    /// the audit log unnoticed. The URL is never quoted, as it may hold a password.
    fn database_tls(&self) -> Option<Warning> {
        use sqlx::postgres::PgSslMode;
        let options = self.database.connect_options().ok()?;
        let host = options.get_host();
        let loopback = options.get_socket().is_some()
            || host.starts_with('/')
            || host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let mode = options.get_ssl_mode();
        if loopback || matches!(mode, PgSslMode::VerifyFull | PgSslMode::VerifyCa) {
            return None;
        }
        Some(Warning {
            at: "database.url".to_owned(),
            message: format!(
                "the database at {host} is reached without verifying its certificate \
                 (sslmode={}); add sslmode=verify-full&sslrootcert=<CA file> to the URL",
                ssl_mode_name(mode)
            ),
        })
    }

    /// Whether a deny entry can refuse callers of one of the `github` issuers: it names one,
    /// or names no issuer and either no rule or a rule of one.
    fn deny_reaches(&self, entry: &EntrySpec, github: &[&str]) -> bool {
        match (&entry.issuer, &entry.rule) {
            (Some(issuer), _) => github.contains(&issuer.as_str()),
            (None, None) => !github.is_empty(),
            (None, Some(rule)) => self
                .rules
                .iter()
                .any(|r| &r.name == rule && github.contains(&r.issuer.as_str())),
        }
    }
}

/// Whether `iss` is GitHub Actions' on github.com, the only one with immutable subjects.
/// `sslmode` as the URL spells it.
fn ssl_mode_name(mode: sqlx::postgres::PgSslMode) -> &'static str {
    use sqlx::postgres::PgSslMode;
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

fn is_github_actions(iss: &str) -> bool {
    iss.strip_prefix(GITHUB_ACTIONS_ISSUER)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The warning for an entry at `at` matching these claims, if it matches a name claim without
/// one of the id claims that pin it.
fn names_alone<'a>(at: String, claims: impl Iterator<Item = &'a str>) -> Option<Warning> {
    // A claim written as a JSON pointer to a top-level claim (`/sub`) is that claim.
    let claims: Vec<String> = claims
        .filter_map(|c| {
            let path = ClaimPath::parse(c).ok()?;
            let mut keys = path.keys();
            match (keys.next(), keys.next()) {
                (Some(key), None) => Some(key.to_owned()),
                _ => None,
            }
        })
        .collect();
    let unpinned: Vec<(&str, &[&str])> = NAME_CLAIMS
        .into_iter()
        .filter(|(name, ids)| {
            claims.iter().any(|c| c == name) && !ids.iter().any(|id| claims.iter().any(|c| c == id))
        })
        .collect();
    if unpinned.is_empty() {
        return None;
    }
    let names = unpinned.iter().map(|(name, _)| *name).collect::<Vec<_>>();
    let ids = unpinned
        .iter()
        .map(|(name, ids)| format!("{} (for {name})", ids.join(" or ")))
        .collect::<Vec<_>>();
    Some(Warning {
        at,
        message: format!(
            "matches GitHub Actions' {} by name alone: repositories created, renamed or transferred since 2026-06-18 have the subject repo:OWNER-OWNERID/REPO-REPOID:..., and a name can pass to someone else; also match {}",
            names.join(" and "),
            ids.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TEST_BASE;

    /// An `[[issuers]]` entry whose keys are at `keys_path` under `url`.
    fn issuer(name: &str, url: &str, keys_path: &str) -> String {
        format!(
            "[[issuers]]\nname = \"{name}\"\nissuer = \"{url}\"\njwks_uri = \"{url}{keys_path}\"\n\
             audiences = [\"ecr-token-broker\"]\nalgorithms = [\"RS256\"]\n"
        )
    }

    fn config(extra: &str) -> Config {
        let text = format!(
            "{TEST_BASE}{}{}{extra}",
            issuer(
                "github",
                "https://token.actions.githubusercontent.com",
                "/.well-known/jwks"
            ),
            issuer(
                "gitlab",
                "https://gitlab.example.com",
                "/oauth/discovery/keys"
            ),
        );
        Config::parse(&text, |_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn rule(issuer: &str, name: &str, claims: &str) -> String {
        format!(
            "[[rules]]\nname = \"{name}\"\nissuer = \"{issuer}\"\nclaims = {claims}\n\
             role_arn = \"arn:aws:iam::123456789012:role/ecr\"\nregions = [\"us-east-1\"]\n"
        )
    }

    fn places(config: &Config) -> Vec<String> {
        config.warnings().into_iter().map(|w| w.at).collect()
    }

    #[test]
    fn github_names_without_their_ids_are_warned_of_once_per_rule() {
        let config = config(&[
            rule("github", "by-name", r#"{ repository_owner = "acme", sub = "repo:acme/*" }"#),
            rule("github", "pointer", r#"{ "/repository" = "acme/api" }"#),
            rule("github", "by-id", r#"{ repository_owner_id = "123", ref = "refs/heads/main" }"#),
            rule("github", "pinned", r#"{ repository_owner = "acme", repository_owner_id = "123", sub = "repo:acme/x*" }"#),
            rule("github", "half", r#"{ repository = "acme/api", repository_owner_id = "123" }"#),
            rule("gitlab", "not-github", r#"{ sub = "project_path:acme/*" }"#),
        ].concat());
        let warnings = config.warnings();
        assert_eq!(
            places(&config),
            [
                "rules[0] (by-name)",
                "rules[1] (pointer)",
                "rules[4] (half)"
            ]
        );
        let message = &warnings[0].message;
        assert!(
            message.starts_with("matches GitHub Actions' sub and repository_owner by name alone"),
            "{message}"
        );
        assert!(
            message.ends_with("also match repository_id or repository_owner_id (for sub), repository_owner_id (for repository_owner)"),
            "{message}"
        );
        assert!(
            warnings[2]
                .message
                .contains("repository_id (for repository)")
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn deny_entries_that_reach_github_callers_by_name_are_warned_of() {
        let config = config(&format!(
            r#"{}{}
[[deny]]
issuer = "github"
subject = "repo:acme/leaky-repo:*"

[[deny]]
issuer = "github"
claims = {{ repository_id = "987" }}

[[deny]]
rule = "ci"
claims = {{ repository_owner = "acme-contractor" }}

[[deny]]
issuer = "gitlab"
subject = "project_path:acme/leaky:*"

[[deny]]
rule = "cd"
subject = "project_path:acme/leaky:*"

[[deny]]
subject = "repo:acme/*"
"#,
            rule("github", "ci", r#"{ repository_owner_id = "123" }"#),
            rule("gitlab", "cd", r#"{ namespace_path = "acme" }"#),
        ));
        assert_eq!(places(&config), ["deny[0]", "deny[2]", "deny[5]"]);
    }

    #[test]
    fn an_enterprise_issuer_is_github_too() {
        assert!(is_github_actions(
            "https://token.actions.githubusercontent.com"
        ));
        assert!(is_github_actions(
            "https://token.actions.githubusercontent.com/acme-corp"
        ));
        assert!(!is_github_actions(
            "https://token.actions.githubusercontent.com.evil.example"
        ));
        assert!(!is_github_actions(
            "https://github.example.com/_services/token"
        ));
    }
}
