//! Checks of `[[deny]]`, `[admin]` and `[reload]`; the deny entry check also holds entries
//! added through the API to the same bar.

use super::RawConfig as Config;
use super::rules::claim_patterns;
use super::{ConfigErrors, Findings};
use crate::config::DenyEntryConfig;

/// Longest `reason` of a deny entry, in characters.
const MAX_DENY_REASON_CHARS: usize = 500;

pub(super) fn operations(config: &Config, f: &mut Findings) {
    let issuers: Vec<&str> = config.issuers.iter().map(|i| i.name.as_str()).collect();
    let rules: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
    for (i, entry) in config.deny.iter().enumerate() {
        deny_entry(entry, &format!("deny[{i}]"), &issuers, &rules, f);
    }
    for (i, name) in config.admin.rules.iter().enumerate() {
        f.check(
            rules.contains(&name.as_str()),
            format!("admin.rules[{i}]"),
            format!("no rule is named {name:?}"),
        );
    }
    f.within(
        config.admin.deny_poll_interval_secs,
        1..=300,
        "admin.deny_poll_interval_secs",
    );
    // A bound no longer than the poll would call the list stale between two good reads.
    f.check(
        (1..=3600).contains(&config.admin.deny_max_staleness_secs)
            && config.admin.deny_max_staleness_secs > config.admin.deny_poll_interval_secs,
        "admin.deny_max_staleness_secs",
        "must be 1 to 3600, and more than deny_poll_interval_secs",
    );
    f.check(
        config.reload.watch_interval_secs <= 3600,
        "reload.watch_interval_secs",
        "must be 0 (off) to 3600",
    );
}

/// Checks one deny entry at `at`, given the issuers' and rules' names.
pub(crate) fn deny_entry_problems(
    entry: &DenyEntryConfig,
    at: &str,
    issuers: &[&str],
    rules: &[&str],
) -> Result<(), ConfigErrors> {
    let mut f = Findings::default();
    deny_entry(entry, at, issuers, rules, &mut f);
    f.into_result()
}

fn deny_entry(
    entry: &DenyEntryConfig,
    at: &str,
    issuers: &[&str],
    rules: &[&str],
    f: &mut Findings,
) {
    // The API's entries are the body itself: their fields have no prefix.
    let field = |name: &str| {
        if at.is_empty() {
            name.to_owned()
        } else {
            format!("{at}.{name}")
        }
    };
    f.check(
        entry.issuer.is_some()
            || entry.subject.is_some()
            || entry.rule.is_some()
            || !entry.claims.is_empty(),
        at,
        "name at least one of issuer, subject, rule, claims: an empty entry would deny everyone",
    );
    if let Some(issuer) = &entry.issuer {
        f.check(
            issuers.contains(&issuer.as_str()),
            field("issuer"),
            format!("unknown issuer {issuer:?} (known: {})", issuers.join(", ")),
        );
    }
    if let Some(rule) = &entry.rule {
        f.check(
            rules.contains(&rule.as_str()),
            field("rule"),
            format!("no rule is named {rule:?}"),
        );
    }
    if let Some(subject) = &entry.subject {
        claim_patterns("sub", subject, &field("subject"), f);
    }
    for (claim, patterns) in &entry.claims {
        claim_patterns(claim, patterns, &field(&format!("claims.{claim}")), f);
    }
    if let Some(reason) = &entry.reason {
        f.check(
            reason.chars().count() <= MAX_DENY_REASON_CHARS
                && !reason.chars().any(char::is_control),
            field("reason"),
            format!("must be at most {MAX_DENY_REASON_CHARS} characters, none of them control characters"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> DenyEntryConfig {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(text: &str) -> Vec<String> {
        match deny_entry_problems(&entry(text), "deny[0]", &["ci"], &["push"]) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(|(path, _)| path.to_owned()).collect(),
        }
    }

    #[test]
    fn deny_entries_are_checked_like_rules_claims() {
        assert_eq!(problems(r#"issuer = "ci""#), Vec::<String>::new());
        assert_eq!(
            problems(r#"subject = ["repo:a/*", { regex = "b.*" }]"#),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(""),
            ["deny[0]"],
            "an empty entry would deny everyone"
        );
        assert_eq!(problems(r#"issuer = "gitlab""#), ["deny[0].issuer"]);
        assert_eq!(problems(r#"rule = "pull""#), ["deny[0].rule"]);
        assert_eq!(problems(r#"subject = "repo:[a""#), ["deny[0].subject"]);
        assert_eq!(problems("subject = []"), ["deny[0].subject"]);
        assert_eq!(
            problems(r#"claims = { "/a//b" = "x" }"#),
            ["deny[0].claims./a//b"]
        );
        assert_eq!(
            problems("issuer = \"ci\"\nreason = \"a\\u0007\""),
            ["deny[0].reason"]
        );
        assert!(toml::from_str::<DenyEntryConfig>("subjects = \"x\"").is_err());
    }

    #[test]
    fn api_entries_name_their_fields_without_a_prefix() {
        let errors = deny_entry_problems(&entry(r#"issuer = "gitlab""#), "", &["ci"], &[])
            .unwrap_err()
            .one_line();
        assert!(errors.starts_with("issuer: unknown issuer"), "{errors}");
    }
}
