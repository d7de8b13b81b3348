//! A deny entry as written, in `[[deny]]` of the config or in the body of
//! `POST /v1/admin/deny`: both parse into [`EntrySpec`] here, and are checked here against
//! the config's names, so the two can never be held to different bars. *No I/O, and nothing
//! of the config file beyond the entry itself.*

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::Names;
use crate::policy::ClaimPatterns;

/// Longest `reason` of a deny entry, in characters.
const MAX_REASON_CHARS: usize = 500;

/// What a deny entry matches, and why. Every field given must match (issuer, subject, the
/// caller's first matching rule, each claim); at least one is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntrySpec {
    /// The issuer's configured name.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The `sub` claim: exact, a glob, `{ regex = "..." }`, or a list of them.
    #[serde(default)]
    pub subject: Option<ClaimPatterns>,
    /// The caller's first matching rule.
    #[serde(default)]
    pub rule: Option<String>,
    /// Claim name (or JSON pointer) to patterns, as in a rule's `claims`.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimPatterns>,
    /// Why, for the operators (never shown to the caller).
    #[serde(default)]
    pub reason: Option<String>,
}

/// One problem of an entry: the field it is in, as a path within the entry (empty for the
/// entry as a whole), and what is wrong.
pub(crate) type Problem = (String, String);

impl EntrySpec {
    /// What is wrong with this entry under a config with these issuers' and rules' names:
    /// an entry that names nothing, a name the config does not have, a pattern that does not
    /// compile, a reason too long or with control characters.
    pub(crate) fn problems(&self, issuers: &[&str], rules: &[&str]) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, field: &str, message: String| {
            if !ok {
                problems.push((field.to_owned(), message));
            }
        };
        check(
            self.issuer.is_some()
                || self.subject.is_some()
                || self.rule.is_some()
                || !self.claims.is_empty(),
            "",
            "name at least one of issuer, subject, rule, claims: an empty entry would deny everyone"
                .to_owned(),
        );
        if let Some(issuer) = &self.issuer {
            check(
                issuers.contains(&issuer.as_str()),
                "issuer",
                format!("unknown issuer {issuer:?} (known: {})", issuers.join(", ")),
            );
        }
        if let Some(rule) = &self.rule {
            check(
                rules.contains(&rule.as_str()),
                "rule",
                format!("no rule is named {rule:?}"),
            );
        }
        let subject = self
            .subject
            .iter()
            .map(|s| ("sub", "subject".to_owned(), s));
        let claims = (self.claims.iter()).map(|(c, p)| (c.as_str(), format!("claims.{c}"), p));
        for (claim, field, patterns) in subject.chain(claims) {
            for problem in patterns.compile(claim).err().into_iter().flatten() {
                check(false, &field, problem);
            }
        }
        if let Some(reason) = &self.reason {
            check(
                reason.chars().count() <= MAX_REASON_CHARS && !reason.chars().any(char::is_control),
                "reason",
                format!(
                    "must be at most {MAX_REASON_CHARS} characters, none of them control characters"
                ),
            );
        }
        problems
    }
}

/// The body of `POST /v1/admin/deny`: what to deny, why, and until when.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AddRequest {
    issuer: String,
    subject: Option<ClaimPatterns>,
    #[serde(default)]
    claims: BTreeMap<String, ClaimPatterns>,
    rule: Option<String>,
    reason: String,
    expires_at: Option<DateTime<Utc>>,
}

/// An entry an admin may add: checked against the running config, its issuer's `iss`
/// found.
#[derive(Debug)]
pub(crate) struct CheckedEntry {
    /// What it matches; `issuer` and `reason` are set.
    pub spec: EntrySpec,
    /// The `iss` of the issuer it names, which the stored entry is bound to.
    pub iss: String,
    /// When it stops denying, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

impl AddRequest {
    /// The entry, checked as a `[[deny]]` entry of the config is, and more: it names its
    /// issuer, a subject or claims, a reason, and an expiry yet to come. A refusal is one
    /// line, its fields named without a prefix: they are the body's own.
    pub(crate) fn check(self, names: &Names) -> Result<CheckedEntry, String> {
        if self.subject.is_none() && self.claims.is_empty() {
            return Err("name a subject or claims to deny (with the issuer)".to_owned());
        }
        if self.reason.trim().is_empty() {
            return Err("reason must not be empty".to_owned());
        }
        if self.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err("expiresAt must be in the future".to_owned());
        }
        let spec = EntrySpec {
            issuer: Some(self.issuer),
            subject: self.subject,
            rule: self.rule,
            claims: self.claims,
            reason: Some(self.reason),
        };
        let issuers: Vec<&str> = names.issuers.keys().map(String::as_str).collect();
        let rules: Vec<&str> = names.rules.iter().map(String::as_str).collect();
        let problems = spec.problems(&issuers, &rules);
        let iss = spec
            .issuer
            .as_ref()
            .and_then(|name| names.issuers.get(name));
        match (problems.is_empty(), iss) {
            (true, Some(iss)) => Ok(CheckedEntry {
                iss: iss.clone(),
                spec,
                expires_at: self.expires_at,
            }),
            _ => Err(one_line(&problems)),
        }
    }
}

/// Problems on one line, as a problem's detail wants them: `field: message; ...`, each
/// message's whitespace (a regex error's carets and line breaks) run together.
fn one_line(problems: &[Problem]) -> String {
    let mut line = Vec::with_capacity(problems.len());
    for (field, message) in problems {
        let words = crate::domain::one_line(message);
        line.push(match field.as_str() {
            "" => words,
            field => format!("{field}: {words}"),
        });
    }
    line.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> EntrySpec {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn fields(text: &str) -> Vec<String> {
        spec(text)
            .problems(&["ci"], &["push"])
            .into_iter()
            .map(|(field, _)| field)
            .collect()
    }

    #[test]
    fn entries_are_checked_like_rules_claims() {
        assert_eq!(fields(r#"issuer = "ci""#), Vec::<String>::new());
        assert_eq!(
            fields(r#"subject = ["repo:a/*", { regex = "b.*" }]"#),
            Vec::<String>::new()
        );
        assert_eq!(fields(""), [""], "an empty entry would deny everyone");
        assert_eq!(fields(r#"issuer = "gitlab""#), ["issuer"]);
        assert_eq!(fields(r#"rule = "pull""#), ["rule"]);
        assert_eq!(fields(r#"subject = "repo:[a""#), ["subject"]);
        assert_eq!(fields("subject = []"), ["subject"]);
        assert_eq!(fields(r#"claims = { "/a//b" = "x" }"#), ["claims./a//b"]);
        assert_eq!(fields("issuer = \"ci\"\nreason = \"a\\u0007\""), ["reason"]);
        assert!(toml::from_str::<EntrySpec>("subjects = \"x\"").is_err());
    }

    fn names() -> Names {
        Names {
            issuers: [("ci".to_owned(), "https://ci.example.com".to_owned())].into(),
            rules: vec!["push".to_owned()],
        }
    }

    fn add(body: serde_json::Value) -> Result<CheckedEntry, String> {
        serde_json::from_value::<AddRequest>(body)
            .unwrap()
            .check(&names())
    }

    #[test]
    fn an_added_entry_names_its_fields_without_a_prefix_on_one_line() {
        let refusal = add(serde_json::json!({
            "issuer": "gitlab", "subject": { "regex": "(" }, "reason": "r"
        }))
        .unwrap_err();
        assert!(
            refusal.starts_with("issuer: unknown issuer \"gitlab\" (known: ci); subject: "),
            "{refusal}"
        );
        assert!(!refusal.contains('\n'), "{refusal}");
    }

    #[test]
    fn an_added_entry_is_bound_to_its_issuers_iss() {
        let entry =
            add(serde_json::json!({"issuer": "ci", "subject": "a", "reason": "r"})).unwrap();
        assert_eq!(entry.iss, "https://ci.example.com");
        assert_eq!(entry.spec.reason.as_deref(), Some("r"));
    }
}
