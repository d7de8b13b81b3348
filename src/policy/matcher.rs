//! `ClaimMatcher`: one claim (by name or JSON pointer) against its compiled patterns, exact, glob
//! or regex, any of which may match. A missing claim never matches.

use globset::{Glob, GlobMatcher};
use regex::Regex;
use serde_json::{Map, Value};

use serde::{Deserialize, Serialize};

use super::{ClaimPath, InvalidPointer};

/// One claim pattern as written in the config: a string (exact, or a glob when it contains
/// `*`, `?` or `[`), or `{ regex = "..." }` (anchored at both ends).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum ClaimPattern {
    /// Exact value or glob.
    Text(String),
    /// A regular expression.
    Regex(RegexPattern),
}

/// `{ regex = "..." }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegexPattern {
    /// The expression; it must match the whole value.
    pub regex: String,
}

/// One pattern or a list of patterns, any of which may match.
///
/// The list is tried first: serde reads a struct from a sequence too, so `["v*"]` tried as
/// one pattern would become the regex `v*`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum ClaimPatterns {
    /// Any of these patterns.
    AnyOf(Vec<ClaimPattern>),
    /// A single pattern.
    One(ClaimPattern),
}

impl ClaimPatterns {
    /// The patterns as a slice.
    pub(crate) fn as_slice(&self) -> &[ClaimPattern] {
        match self {
            Self::One(p) => std::slice::from_ref(p),
            Self::AnyOf(ps) => ps,
        }
    }

    /// Compiles these patterns for `claim`, or says every reason they cannot be: an empty
    /// list, which could never match, is one.
    pub(crate) fn compile(&self, claim: &str) -> Result<ClaimMatcher, Vec<String>> {
        let mut problems = Vec::new();
        if self.as_slice().is_empty() {
            problems.push("an empty list can never match".to_owned());
        }
        match ClaimMatcher::new(claim, self.as_slice()) {
            Ok(matcher) if problems.is_empty() => Ok(matcher),
            Ok(_) => Err(problems),
            Err(e) => {
                problems.push(e.to_string());
                Err(problems)
            }
        }
    }
}

/// A claim matcher that does not compile.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvalidPattern {
    /// A pattern that does not compile.
    #[error("pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern as written.
        pattern: String,
        /// Why it does not compile.
        reason: String,
    },
    /// The claim is a JSON pointer that does not parse.
    #[error(transparent)]
    Claim(#[from] InvalidPointer),
    /// A claim name or pattern holds NUL, which no stored deny entry can hold (Postgres
    /// refuses it in text and JSON); a regex can still match one as `\x00`.
    #[error("{0:?}: must not contain NUL (a regex may match it as \\x00)")]
    Nul(String),
}

/// One compiled pattern.
#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    Glob(GlobMatcher),
    Regex(Regex),
}

impl Pattern {
    fn new(pattern: &ClaimPattern) -> Result<Self, InvalidPattern> {
        let invalid = |pattern: &str, reason: String| InvalidPattern::Pattern {
            pattern: pattern.to_owned(),
            reason,
        };
        match pattern {
            ClaimPattern::Text(text) if !text.contains(['*', '?', '[']) => {
                Ok(Self::Exact(text.clone()))
            }
            // `*` crosses `/` on purpose: claims such as `repo:acme/api:ref:refs/heads/main`
            // are opaque strings, not paths.
            ClaimPattern::Text(glob) => Glob::new(glob)
                .map(|g| Self::Glob(g.compile_matcher()))
                .map_err(|e| invalid(glob, e.kind().to_string())),
            // Anchored, so that `acme` cannot match `not-acme-at-all`.
            ClaimPattern::Regex(r) => Regex::new(&format!("^(?:{})$", r.regex))
                .map(Self::Regex)
                .map_err(|e| invalid(&r.regex, e.to_string())),
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(expected) => expected == value,
            Self::Glob(glob) => glob.is_match(value),
            Self::Regex(regex) => regex.is_match(value),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Exact(text) => format!("{text:?}"),
            Self::Glob(glob) => format!("glob {:?}", glob.glob().glob()),
            Self::Regex(regex) => format!("regex {:?}", regex.as_str()),
        }
    }
}

/// Why a claim did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// The claim (name or JSON pointer) as the rule names it.
    pub claim: String,
    /// What the rule expected, and that the token did not have it.
    pub reason: String,
}

/// Matches one claim of a token against any of its patterns.
#[derive(Debug, Clone)]
pub(crate) struct ClaimMatcher {
    claim: ClaimPath,
    patterns: Vec<Pattern>,
}

impl ClaimMatcher {
    /// Compiles the patterns for `claim` (a claim name, or a JSON pointer such as
    /// `/realm_access/roles`); any of them may match.
    pub(crate) fn new(claim: &str, patterns: &[ClaimPattern]) -> Result<Self, InvalidPattern> {
        let texts = patterns.iter().map(|pattern| match pattern {
            ClaimPattern::Text(text) => text.as_str(),
            ClaimPattern::Regex(r) => r.regex.as_str(),
        });
        if let Some(nul) = std::iter::once(claim)
            .chain(texts)
            .find(|t| t.contains('\0'))
        {
            return Err(InvalidPattern::Nul(nul.to_owned()));
        }
        Ok(Self {
            claim: ClaimPath::parse(claim)?,
            patterns: patterns
                .iter()
                .map(Pattern::new)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Matches `aud` against these audiences exactly, even those holding glob characters.
    pub(crate) fn audiences(audiences: &[String]) -> Result<Self, InvalidPattern> {
        let patterns: Vec<ClaimPattern> = audiences
            .iter()
            .map(|a| ClaimPattern::Text(literal_glob(a)))
            .collect();
        Self::new("aud", &patterns)
    }

    /// The claim (name or JSON pointer) as written.
    pub(crate) fn claim(&self) -> &str {
        self.claim.as_str()
    }

    /// Whether the claims satisfy this matcher. A missing claim never matches; strings,
    /// numbers and booleans are compared as text; an array matches when any element does.
    pub(crate) fn matches(&self, claims: &Map<String, Value>) -> bool {
        self.explain(claims).is_ok()
    }

    /// Like [`ClaimMatcher::matches`], saying why not.
    pub(crate) fn explain(&self, claims: &Map<String, Value>) -> Result<(), Mismatch> {
        let mismatch = |reason: String| Mismatch {
            claim: self.claim.to_string(),
            reason,
        };
        let value = self
            .claim
            .resolve(claims)
            .ok_or_else(|| mismatch("the token has no such claim".to_owned()))?;
        if self.matches_value(value) {
            return Ok(());
        }
        let expected: Vec<String> = self.patterns.iter().map(Pattern::describe).collect();
        Err(mismatch(format!(
            "the value matches none of: {}",
            expected.join(", ")
        )))
    }

    fn matches_value(&self, value: &Value) -> bool {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(items) => {
                return items.iter().any(|v| !v.is_array() && self.matches_value(v));
            }
            Value::Null | Value::Object(_) => return false,
        };
        self.patterns.iter().any(|p| p.matches(&text))
    }
}

/// An audience is matched exactly, even if it contains glob characters.
fn literal_glob(audience: &str) -> String {
    if audience.contains(['*', '?', '[']) {
        audience
            .chars()
            .map(|c| {
                if "*?[]".contains(c) {
                    format!("[{c}]")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        audience.to_owned()
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn text(p: &str) -> ClaimPattern {
        ClaimPattern::Text(p.to_owned())
    }

    fn regex(p: &str) -> ClaimPattern {
        ClaimPattern::Regex(RegexPattern {
            regex: p.to_owned(),
        })
    }

    fn matcher(claim: &str, patterns: &[&str]) -> ClaimMatcher {
        let patterns: Vec<ClaimPattern> = patterns.iter().map(|p| text(p)).collect();
        ClaimMatcher::new(claim, &patterns).unwrap()
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn exact_values_match_only_themselves() {
        let m = matcher("repository_owner", &["acme"]);
        assert!(m.matches(&claims(json!({"repository_owner": "acme"}))));
        assert!(!m.matches(&claims(json!({"repository_owner": "acme-evil"}))));
        assert!(!m.matches(&claims(json!({"repository_owner": "ACME"}))));
        assert!(!m.matches(&claims(json!({}))));
    }

    #[test]
    fn globs_cross_slashes_and_stay_anchored() {
        let m = matcher("sub", &["repo:acme/*"]);
        assert!(m.matches(&claims(json!({"sub": "repo:acme/api:ref:refs/heads/main"}))));
        assert!(!m.matches(&claims(json!({"sub": "repo:acme-evil/api"}))));
        assert!(!m.matches(&claims(json!({"sub": "xrepo:acme/api"}))));
    }

    #[test]
    fn regexes_are_anchored() {
        let m = ClaimMatcher::new("sub", &[regex("repo:acme/(api|web):.*")]).unwrap();
        assert!(m.matches(&claims(json!({"sub": "repo:acme/api:ref:refs/heads/main"}))));
        assert!(!m.matches(&claims(json!({"sub": "x-repo:acme/api:ref"}))));
        let short = ClaimMatcher::new("owner", &[regex("acme")]).unwrap();
        assert!(!short.matches(&claims(json!({"owner": "not-acme-at-all"}))));
        // An alternation must not escape the anchors.
        let alternation = ClaimMatcher::new("owner", &[regex("acme|beta")]).unwrap();
        assert!(!alternation.matches(&claims(json!({"owner": "acme-evil"}))));
        assert!(alternation.matches(&claims(json!({"owner": "beta"}))));
    }

    #[test]
    fn a_list_means_any_of_and_may_mix_kinds() {
        let m = ClaimMatcher::new(
            "ref",
            &[
                text("refs/heads/main"),
                text("refs/tags/v*"),
                regex("refs/heads/release-[0-9]+"),
            ],
        )
        .unwrap();
        assert!(m.matches(&claims(json!({"ref": "refs/tags/v1.2"}))));
        assert!(m.matches(&claims(json!({"ref": "refs/heads/release-7"}))));
        assert!(!m.matches(&claims(json!({"ref": "refs/heads/dev"}))));
    }

    #[test]
    fn scalars_compare_as_text_and_arrays_as_any_element() {
        assert!(matcher("run_attempt", &["1"]).matches(&claims(json!({"run_attempt": 1}))));
        assert!(matcher("admin", &["true"]).matches(&claims(json!({"admin": true}))));
        let groups = matcher("groups", &["platform-*"]);
        assert!(groups.matches(&claims(json!({"groups": ["dev", "platform-ops"]}))));
        assert!(!groups.matches(&claims(json!({"groups": ["dev"]}))));
        assert!(!groups.matches(&claims(json!({"groups": {"platform-ops": true}}))));
        assert!(!matcher("x", &["*"]).matches(&claims(json!({"x": null}))));
    }

    #[test]
    fn json_pointers_reach_nested_claims() {
        let m = matcher("/realm_access/roles", &["ecr-push"]);
        assert!(m.matches(&claims(
            json!({"realm_access": {"roles": ["dev", "ecr-push"]}})
        )));
        assert!(!m.matches(&claims(json!({"realm_access": {"roles": ["dev"]}}))));
        assert!(!m.matches(&claims(json!({"realm_access": "ecr-push"}))));
        let escaped = matcher("/https:~1~1example.com~1team", &["platform"]);
        assert!(escaped.matches(&claims(json!({"https://example.com/team": "platform"}))));
        assert!(matches!(
            ClaimMatcher::new("/a//b", &[text("x")]),
            Err(InvalidPattern::Claim(_))
        ));
        assert!(matches!(
            ClaimMatcher::new("/a~2", &[text("x")]),
            Err(InvalidPattern::Claim(_))
        ));
    }

    #[test]
    fn explain_names_the_claim_and_the_expectation() {
        let m = matcher("ref", &["refs/heads/main"]);
        let missing = m.explain(&claims(json!({}))).unwrap_err();
        assert_eq!(missing.claim, "ref");
        assert!(missing.reason.contains("no such claim"));
        let wrong = m
            .explain(&claims(json!({"ref": "refs/heads/dev"})))
            .unwrap_err();
        assert!(
            wrong.reason.contains("\"refs/heads/main\""),
            "{}",
            wrong.reason
        );
    }

    #[test]
    fn broken_patterns_are_refused() {
        for broken in [text("repo:[acme"), regex("(unclosed")] {
            assert!(matches!(
                ClaimMatcher::new("sub", &[broken]),
                Err(InvalidPattern::Pattern { .. })
            ));
        }
    }

    #[test]
    fn nul_is_refused_in_names_and_patterns_but_a_regex_may_match_it() {
        for (claim, pattern) in [
            ("a\0", text("x")),
            ("/a/b\0", text("x")),
            ("sub", text("repo:\0*")),
            ("sub", regex("a\0")),
        ] {
            assert!(matches!(
                ClaimMatcher::new(claim, &[pattern]),
                Err(InvalidPattern::Nul(_))
            ));
        }
        let m = ClaimMatcher::new("sub", &[regex("a\\x00")]).unwrap();
        assert!(m.matches(&claims(json!({"sub": "a\u{0}"}))));
    }

    fn patterns(toml_value: &str) -> Vec<ClaimPattern> {
        let table: std::collections::BTreeMap<String, ClaimPatterns> =
            toml::from_str(&format!("claim = {toml_value}")).unwrap_or_else(|e| panic!("{e}"));
        table["claim"].as_slice().to_vec()
    }

    #[test]
    fn claim_patterns_read_as_written() {
        let text = |t: &str| ClaimPattern::Text(t.to_owned());
        assert_eq!(patterns(r#""v*""#), [text("v*")]);
        assert_eq!(patterns(r#"["v*"]"#), [text("v*")]);
        assert_eq!(patterns(r#"{ regex = "v.*" }"#), [regex("v.*")]);
        assert_eq!(patterns(r#"[{ regex = "v.*" }]"#), [regex("v.*")]);
        assert_eq!(
            patterns(r#"["main", { regex = "v.*" }]"#),
            [text("main"), regex("v.*")]
        );
        assert_eq!(patterns("[]"), []);
    }
}
